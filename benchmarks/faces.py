"""Face detection at several frame sizes: time per detected frame and faces found against stock MTCNN.

    python -m benchmarks.faces [--frames 12]

For each frame size, the same frames through: the detection copy before issue 21 (longest side 320 px),
today's default (the copy set by core.faces.DEFAULT_MIN_FACE_PX) and stock facenet-pytorch MTCNN on the
full frame (the reference). 640x360 and 960x540 are the first frames of the sample videos; 1920x1080
and 3840x2160 are tests/datagen.small_face_frames (real faces of 40-120 px). Per setting: ms per frame
(each frame detected, no stride), frames with the face found, mean IoU with the stock boxes. One process,
the settings side by side; the load average is printed with every row.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from core.faces import MTCNN_MIN_FACE, FaceDetector, iou
from core.video import iter_frames
from tests.datagen import MEDIA_DIR, small_face_frames

SETTINGS = {"320 px copy (before)": {"detect_size": 320}, "default (min face 40 px)": {},
            "stock, full frame": {"min_face_px": MTCNN_MIN_FACE}}


def frames_of(size: str, n: int) -> list[np.ndarray]:
    if size == "640x360":
        return [f for b in iter_frames(MEDIA_DIR / "WolfgangLanger_Pexels.mp4", max_frames=n) for f in b.frames]
    if size == "960x540":
        return [f for b in iter_frames(MEDIA_DIR / "face_noface.mov", max_frames=n) for f in b.frames]
    width, height = map(int, size.split("x"))
    return small_face_frames(width, height, n)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--sizes", default="640x360,960x540,1920x1080,3840x2160")
    args = p.parse_args(argv)
    print("| frame | detection | copy | ms/frame | found | mean IoU vs stock | load |\n|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        frames = frames_of(size, args.frames)
        h, w = frames[0].shape[:2]
        found = {}
        for name, kwargs in reversed(SETTINGS.items()):          # stock first: the reference
            detector = FaceDetector("cpu", batch_size=1, **kwargs)
            detector.detect(frames[:1])                           # warm-up
            start = time.perf_counter()
            found[name] = [b for b, _ in detector.detect(frames)]
            ms = 1000 * (time.perf_counter() - start) / len(frames)
            stock = found["stock, full frame"]
            hits = sum(len(b) > 0 for b in found[name])
            overlap = np.mean([iou(a, b).max() if len(a) and len(b) else 0.0 for a, b in zip(stock, found[name])
                               if len(a)])
            scale = detector.scale_for(h, w)
            print(f"| {size} | {name} | {round(w * scale)}x{round(h * scale)} | {ms:.0f} | {hits}/{len(frames)} | "
                  f"{overlap:.3f} | {os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
