"""Decode a video file into upright RGB frames, in batches, with each frame's index and true timestamp.

OpenCV's FFmpeg backend does the work. Three facts shape this module:
- Frames are counted by decoding: the container's frame count is only an estimate (no_face.mp4 says 98
  and holds 95; variable-frame-rate WebM can be off several times over).
- Timestamps come from the decoder (CAP_PROP_POS_MSEC is the frame's presentation time), so variable
  frame rate gives true times instead of index / fps.
- Rotation metadata (a phone's portrait video) is applied by OpenCV itself (CAP_PROP_ORIENTATION_AUTO is
  on by default); the frames match what FFmpeg shows, and VideoInfo.rotation reports the angle.
A file that cannot be opened, holds no frame, or stops decoding well before its stated duration
(truncated) raises VideoError with a one-line message.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# A decode that ends this long before the container's duration (and more than this fraction of it) is a
# truncated file, not the usual off-by-a-few-frames estimate.
TRUNCATION_MIN_S = 1.0
TRUNCATION_MIN_FRACTION = 0.1


class VideoError(ValueError):
    """The file is not a readable video; the message is one line that names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video. width/height are of the upright frames; rotation is the
    clockwise angle (0, 90, 180, 270) OpenCV applied; frame_count_estimate and duration_s are the
    container's estimates (the true count is what iter_frames yields)."""

    path: str
    fps: float
    width: int
    height: int
    rotation: int
    frame_count_estimate: int
    duration_s: float
    codec: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class FrameBatch:
    """Consecutive decoded frames: index (int64, 0-based), time_s (float64), frames (HxWx3 uint8 RGB)."""

    index: np.ndarray
    time_s: np.ndarray
    frames: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.frames)


def _open(path) -> cv2.VideoCapture:
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: cannot open as a video (not a video, unsupported, or truncated)")
    return cap


def _codec(cap: cv2.VideoCapture) -> str:
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC))
    text = fourcc.to_bytes(4, "little").decode("ascii", errors="replace").strip("\x00 ")
    return text or "unknown"


def _info(path, cap: cv2.VideoCapture) -> VideoInfo:
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    fps = fps if np.isfinite(fps) and fps > 0 else 0.0
    count = int(max(cap.get(cv2.CAP_PROP_FRAME_COUNT), 0))
    return VideoInfo(
        path=str(path),
        fps=fps,
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        rotation=int(cap.get(cv2.CAP_PROP_ORIENTATION_META)) % 360,
        frame_count_estimate=count,
        duration_s=count / fps if fps else 0.0,
        codec=_codec(cap),
    )


def probe(path) -> VideoInfo:
    """Open the file and read its container facts without decoding it; raises VideoError."""
    cap = _open(path)
    try:
        return _info(path, cap)
    finally:
        cap.release()


def iter_frames(path, batch_size: int = 64, max_frames: int | None = None) -> Iterator[FrameBatch]:
    """Decode the whole video (or its first max_frames frames) as batches of upright RGB frames.

    Only one batch is in memory at a time. A timestamp that is missing or goes backwards is replaced by
    the previous one plus 1/fps. Raises VideoError for an unreadable, frameless or truncated file
    (truncation is only known at the end, after the frames before it were yielded).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    cap = _open(path)
    try:
        info = _info(path, cap)
        step = 1.0 / (info.fps or 30.0)  # only used to repair a bad timestamp
        n, last_t = 0, None
        while max_frames is None or n < max_frames:
            want = batch_size if max_frames is None else min(batch_size, max_frames - n)
            frames, times = [], []
            for _ in range(want):
                ok, bgr = cap.read()
                if not ok:
                    break
                t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                if last_t is None:
                    t = t if np.isfinite(t) else 0.0
                elif not (np.isfinite(t) and t > last_t):
                    t = last_t + step
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                times.append(t)
                last_t = t
            if frames:
                yield FrameBatch(np.arange(n, n + len(frames), dtype=np.int64), np.asarray(times), frames)
                n += len(frames)
            if len(frames) < want:
                break
        if n == 0:
            raise VideoError(f"{path}: no frame could be decoded (corrupt or not a video)")
        if max_frames is None or n < max_frames:
            _check_complete(path, info, n, last_t + step)
    finally:
        cap.release()


def _check_complete(path, info: VideoInfo, n: int, decoded_s: float) -> None:
    missing = info.duration_s - decoded_s
    if missing > max(TRUNCATION_MIN_S, TRUNCATION_MIN_FRACTION * info.duration_s):
        raise VideoError(
            f"{path}: decoding stopped after {n} frames ({decoded_s:.1f} s of {info.duration_s:.1f} s): "
            "the file is truncated or corrupt"
        )

