"""A small Aff-Wild2 copy for tests, in the exact layout of the real data, with real faces.

make_affwild2(root) writes:

    root/cropped_aligned/<video>/00001.jpg ...     112x112 face crops (MTCNN on ../shared/media videos);
                                                   frames without a face have no image, as in Aff-Wild2
    root/VA_Estimation_Challenge/{Train_Set,Validation_Set}/<video>.txt
    root/EXPR_Recognition_Challenge/...            (or EXPR_Classification_Challenge, the older name)
    root/AU_Detection_Challenge/...
    root/MTL_Challenge/{training,validation}_set_annotations.txt   7th ABAW multi-task files
    root/videos/<raw video>.mp4                    the source frames used, one line <-> one video frame

Videos (ABAW-style names "<id>-<fps>-<w>x<h>"):
    10-24-640x360, 11-24-640x360   two clips of WolfgangLanger_Pexels.mp4 (sad; smiling)
    12-30-640x360                  single_face.mp4
    13-30-960x540                  face_noface.mov from frame 48: the face leaves after 24 frames, so the
                                   later lines have no image
    14-30-960x640_left / _right    a two-subject video (raw file 14-30-960x640.mp4) made by panning over
                                   multi_face.jpg; _left is the left-most face, _right the right-most
Task membership differs per task (see SPLITS), as in Aff-Wild2. Images of frames 5-7 of 10-24-640x360 are
removed (lines without images on a video with a face), and blocks of frames carry the invalid markers
(INVALID_FRAMES).

The planted learnable signal (signal=...): every frame t has a shown state (class k_t, valence v_t,
arousal a_t, 12 AU bits) painted onto its crop, flip-symmetric so horizontal flips keep it:
    - expression: the face is tinted (55% face + 45% colour) with TINTS[k_t], the 8 corners of the RGB cube;
    - valence / arousal: the top / bottom 14 pixel rows are grey level round((v+1)/2*255) / same for a;
    - AU j: rows 16+6j .. 19+6j of the 8 left-most and 8 right-most columns are white if on, black if off.
signal="static": the labels are the state shown in the same frame (k changes every 4-10 frames, v and a
    drift smoothly); a frame-level model can learn them.
signal="temporal": the state is drawn anew every frame and the label of frame t is the state shown at
    frame t-lag (the first `lag` lines are invalid); only a model that sees earlier frames can learn it.
signal=None: the same labels as "static" (plausible, piecewise constant) with the crops untouched.
Frames without an image cannot show their state, so their labels are not learnable from images.
"""
from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from core.affwild2 import LABEL_COLUMNS, image_name, raw_video_name, write_annotation, write_mtl_csv
from core.labels import AUS, CHALLENGE_DIRS, EXPRESSIONS, SPLIT_DIRS, TASKS

MEDIA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "media"
CROP_SIZE = 112
MAX_FRAMES = 72  # the shortest source (single_face.mp4) has 72 frames
KEY_STEP = 4  # face detection runs on every 4th video frame (see _face_boxes)

# video name -> (source file, first source frame, face: None = the only one, "left"/"right" = outermost)
SOURCES = {
    "10-24-640x360": ("WolfgangLanger_Pexels.mp4", 0, None),
    "11-24-640x360": ("WolfgangLanger_Pexels.mp4", 400, None),
    "12-30-640x360": ("single_face.mp4", 0, None),
    "13-30-960x540": ("face_noface.mov", 48, None),
    "14-30-960x640_left": ("multi_face.jpg", 0, "left"),
    "14-30-960x640_right": ("multi_face.jpg", 0, "right"),
}
PAN_SIZE = (960, 640)  # width, height of the window panned over multi_face.jpg

SPLITS = {
    "va": {"train": ["10-24-640x360", "13-30-960x540", "14-30-960x640_left", "14-30-960x640_right"],
           "val": ["11-24-640x360", "12-30-640x360"]},
    "expr": {"train": ["10-24-640x360", "13-30-960x540", "14-30-960x640_left"],
             "val": ["11-24-640x360", "12-30-640x360"]},
    "au": {"train": ["10-24-640x360", "14-30-960x640_left", "14-30-960x640_right"],
           "val": ["11-24-640x360", "13-30-960x540"]},
}
# task -> video -> frames whose line carries the invalid marker
INVALID_FRAMES = {
    "va": {"10-24-640x360": range(30, 34)},
    "expr": {"11-24-640x360": range(0, 3)},
    "au": {"14-30-960x640_left": range(20, 25)},
}
REMOVED_IMAGES = {"10-24-640x360": (5, 6, 7)}

TINTS = np.array([[r, g, b] for r in (0, 255) for g in (0, 255) for b in (0, 255)], dtype=np.float32)
BAND = 14  # rows of the valence (top) and arousal (bottom) bands
AU_ROW0, AU_STEP, AU_HEIGHT, AU_WIDTH = 16, 6, 4, 8


@dataclass
class SyntheticAffWild2:
    """What make_affwild2 wrote: the root, which videos each task holds, and every video's labels.

    labels[video]: one row per annotation line (index frame) with has_image and the label columns as the
    annotation files hold them (NaN / <NA> where the line carries the invalid marker of that task).
    """

    root: Path
    signal: str | None
    expr_dir: str
    splits: dict[str, dict[str, list[str]]]
    labels: dict[str, pd.DataFrame] = field(default_factory=dict)
    raw_videos: dict[str, Path] = field(default_factory=dict)

    @property
    def videos(self) -> list[str]:
        return sorted(self.labels)


@functools.lru_cache(maxsize=1)
def _detector():
    from facenet_pytorch import MTCNN

    # Faces here are >= 60 pixels wide where detection runs; a larger minimum skips most of the pyramid.
    return MTCNN(keep_all=True, min_face_size=40, device="cpu")


def _read_frames(path: Path, start: int, n: int) -> list[np.ndarray]:
    """n RGB frames of a video from frame `start` on (fewer if the video ends)."""
    cap = cv2.VideoCapture(str(path))
    frames, index = [], 0
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            break
        if index >= start:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        index += 1
    cap.release()
    return frames


def _pan_offsets(photo_shape: tuple[int, ...], n: int) -> list[tuple[int, int]]:
    """Top-left corners of a slow camera pan over a still photo, one per frame."""
    w, h = PAN_SIZE
    dx, dy = photo_shape[1] - w, photo_shape[0] - h
    offsets = []
    for t in range(n):
        phase = t / max(n - 1, 1)
        offsets.append((round(dx * phase), round(dy * (0.5 + 0.5 * np.sin(2 * np.pi * phase)))))
    return offsets


def _read_photo(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def source_frames(video: str, n: int, media_dir: Path = MEDIA_DIR) -> list[np.ndarray]:
    """The raw RGB frames behind a generated video (identical for _left and _right)."""
    source, start, _ = SOURCES[video]
    if source.endswith(".jpg"):
        photo = _read_photo(media_dir / source)
        w, h = PAN_SIZE
        return [np.ascontiguousarray(photo[y : y + h, x : x + w]) for x, y in _pan_offsets(photo.shape, n)]
    frames = _read_frames(media_dir / source, start, n)
    if len(frames) < n:
        raise ValueError(f"{source} has only {len(frames)} frames from frame {start}; asked for {n}")
    return frames


def _square_crop(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """A square CROP_SIZE crop around a face box with a 10% margin (padded at the frame border)."""
    x1, y1, x2, y2 = box
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, 1.1 * max(x2 - x1, y2 - y1)
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    size = int(round(side))
    pad = size
    padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    crop = padded[top + pad : top + pad + size, left + pad : left + pad + size]
    return cv2.resize(crop, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)


@functools.lru_cache(maxsize=None)
def _face_boxes(source: str, start: int, n: int, media_dir: Path) -> tuple[np.ndarray, ...]:
    """Per source frame, face boxes (k, 4) in source-frame pixels (k = 0 where there is no face).

    A panned photo is detected once at full size and its boxes follow the pan. In a video only the largest
    face is kept; MTCNN runs on every KEY_STEP-th frame, boxes are interpolated between two keyframes that
    both show a face, and the frames between keyframes that disagree are detected one by one.
    """
    if source.endswith(".jpg"):
        photo = _read_photo(media_dir / source)
        (boxes,) = _detect([photo], width=photo.shape[1])
        return tuple(boxes - np.array([x, y, x, y]) for x, y in _pan_offsets(photo.shape, n))
    frames = _read_frames(media_dir / source, start, n)
    keys = sorted({*range(0, len(frames), KEY_STEP), len(frames) - 1})
    found = dict(zip(keys, map(_largest, _detect([frames[k] for k in keys]))))
    unsure = []
    for a, b in zip(keys, keys[1:]):
        if len(found[a]) and len(found[b]):
            for t in range(a + 1, b):
                w = (t - a) / (b - a)
                found[t] = (1 - w) * found[a] + w * found[b]
        else:
            unsure.extend(range(a + 1, b))
    if unsure:
        found.update(zip(unsure, map(_largest, _detect([frames[t] for t in unsure]))))
    return tuple(found[t] for t in range(len(frames)))


def _largest(boxes: np.ndarray) -> np.ndarray:
    if len(boxes) == 0:
        return boxes
    return boxes[[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]]


def _detect(frames: list[np.ndarray], width: int = 320) -> list[np.ndarray]:
    scale = width / frames[0].shape[1]
    small = [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in frames]
    found = []
    for b, p in zip(*_detector().detect(small)):
        if b is None:
            found.append(np.zeros((0, 4)))
        else:
            found.append(np.asarray(b, dtype=np.float64)[np.asarray(p, dtype=np.float64) >= 0.9] / scale)
    return found


@functools.lru_cache(maxsize=None)
def face_crops(video: str, n: int, media_dir: Path = MEDIA_DIR) -> tuple[np.ndarray | None, ...]:
    """Per frame, a 112x112 RGB crop of the video's subject, or None where MTCNN finds no face.

    The subject is the largest face, or the left-most / right-most one for a _left / _right video.
    Cached for the test session.
    """
    source, start, side = SOURCES[video]
    crops = []
    for frame, b in zip(source_frames(video, n, media_dir), _face_boxes(source, start, n, media_dir)):
        if len(b) == 0:
            crops.append(None)
            continue
        if side == "left":
            box = b[np.argmin(b[:, 0])]
        elif side == "right":
            box = b[np.argmax(b[:, 0])]
        else:
            (box,) = _largest(b)
        crops.append(_square_crop(frame, box))
    return tuple(crops)


def _piecewise_states(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Plausible labels: class and AUs constant over runs of 4-10 frames, valence/arousal drifting."""
    expression = np.empty(n, dtype=np.int64)
    aus = np.empty((n, len(AUS)), dtype=np.int64)
    t = 0
    while t < n:
        run = int(rng.integers(4, 11))
        expression[t : t + run] = rng.integers(0, len(EXPRESSIONS))
        aus[t : t + run] = rng.random(len(AUS)) < 0.35
        t += run
    walk = np.cumsum(rng.normal(0, 0.08, (n, 2)), axis=0) + rng.uniform(-0.5, 0.5, 2)
    va = np.clip(walk, -0.9, 0.9)
    return _state_table(va, expression, aus)


def _random_states(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """A new state every frame (for the temporal signal)."""
    va = np.round(rng.uniform(-0.9, 0.9, (n, 2)), 3)
    return _state_table(va, rng.integers(0, len(EXPRESSIONS), n), (rng.random((n, len(AUS))) < 0.4).astype(np.int64))


def _state_table(va: np.ndarray, expression: np.ndarray, aus: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame({"valence": np.round(va[:, 0], 4), "arousal": np.round(va[:, 1], 4)})
    df["expression"] = pd.array(expression, dtype="Int64")
    for j, name in enumerate(AUS):
        df[name] = pd.array(aus[:, j], dtype="Int64")
    df.index.name = "frame"
    return df


def grey_level(value: float) -> int:
    """Grey level that paints a valence or arousal value in [-1, 1] onto a crop."""
    return int(round((value + 1) / 2 * 255))


def paint_state(crop: np.ndarray, state: pd.Series) -> np.ndarray:
    """The crop with the state (expression tint, VA bands, AU marks) painted on; see the module docstring."""
    out = 0.55 * crop.astype(np.float32) + 0.45 * TINTS[int(state["expression"])]
    out[:BAND] = grey_level(state["valence"])
    out[-BAND:] = grey_level(state["arousal"])
    for j, name in enumerate(AUS):
        rows = slice(AU_ROW0 + AU_STEP * j, AU_ROW0 + AU_STEP * j + AU_HEIGHT)
        value = 255 if int(state[name]) else 0
        out[rows, :AU_WIDTH] = value
        out[rows, -AU_WIDTH:] = value
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _invalidate(labels: pd.DataFrame, task: str, frames) -> None:
    rows = labels.index.isin(list(frames))
    for name in LABEL_COLUMNS[task]:
        labels.loc[rows, name] = np.nan if task == "va" else pd.NA


def make_affwild2(
    root: Path,
    *,
    n_frames: int = 40,
    signal: str | None = None,
    lag: int = 2,
    expr_dir: str = "EXPR_Recognition_Challenge",
    raw_videos: bool = True,
    seed: int = 0,
    media_dir: Path = MEDIA_DIR,
) -> SyntheticAffWild2:
    """Write the small Aff-Wild2 copy described in the module docstring under root; return what it holds.

    n_frames: annotation lines per video (<= 72). signal: None, "static" or "temporal". lag: delay of the
    temporal signal in frames. expr_dir: one of CHALLENGE_DIRS["expr"]. raw_videos: also write videos/.
    """
    if signal not in (None, "static", "temporal"):
        raise ValueError(f"signal must be None, 'static' or 'temporal', not {signal!r}")
    if expr_dir not in CHALLENGE_DIRS["expr"]:
        raise ValueError(f"expr_dir must be one of {CHALLENGE_DIRS['expr']}")
    if not 1 <= n_frames <= MAX_FRAMES:
        raise ValueError(f"n_frames must be 1..{MAX_FRAMES}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    data = SyntheticAffWild2(root, signal, expr_dir, {t: {s: list(v) for s, v in sp.items()} for t, sp in SPLITS.items()})

    for video in SOURCES:
        crops = face_crops(video, n_frames, Path(media_dir))
        shown = _random_states(rng, n_frames) if signal == "temporal" else _piecewise_states(rng, n_frames)
        labels = shown.shift(lag) if signal == "temporal" else shown.copy()
        image_dir = root / "cropped_aligned" / video
        image_dir.mkdir(parents=True, exist_ok=True)
        has_image = np.zeros(n_frames, dtype=bool)
        for t, crop in enumerate(crops):
            if crop is None or t in REMOVED_IMAGES.get(video, ()):
                continue
            if signal is not None:
                crop = paint_state(crop, shown.iloc[t])
            cv2.imwrite(str(image_dir / image_name(t)), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            has_image[t] = True
        for task in TASKS:
            _invalidate(labels, task, INVALID_FRAMES[task].get(video, ()))
        labels.insert(0, "has_image", has_image)
        data.labels[video] = labels

    challenge = {"va": CHALLENGE_DIRS["va"][0], "expr": expr_dir, "au": CHALLENGE_DIRS["au"][0]}
    for task, splits in SPLITS.items():
        for split, videos in splits.items():
            for video in videos:
                path = root / challenge[task] / SPLIT_DIRS[split] / f"{video}.txt"
                write_annotation(data.labels[video], path, task)
    _write_mtl(data)
    if raw_videos:
        _write_raw_videos(data, n_frames, Path(media_dir))
    return data


def _write_mtl(data: SyntheticAffWild2) -> None:
    """7th ABAW multi-task files: frames with an image of every video annotated in the split for VA."""
    names = {"train": "training_set_annotations.txt", "val": "validation_set_annotations.txt"}
    for split, videos in SPLITS["va"].items():
        rows = []
        for video in videos:
            labels = data.labels[video]
            kept = labels[labels["has_image"]].drop(columns="has_image")
            kept.insert(0, "image", [f"{video}/{image_name(f)}" for f in kept.index])
            rows.append(kept)
        write_mtl_csv(pd.concat(rows), data.root / "MTL_Challenge" / names[split])


def _write_raw_videos(data: SyntheticAffWild2, n_frames: int, media_dir: Path) -> None:
    folder = data.root / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    for video in SOURCES:
        name = raw_video_name(video)
        path = folder / f"{name}.mp4"
        if name in data.raw_videos:
            continue
        frames = source_frames(video, n_frames, media_dir)
        fps = float(name.split("-")[1])
        height, width = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        data.raw_videos[name] = path


def copy_affwild2(source: SyntheticAffWild2, root: Path) -> SyntheticAffWild2:
    """A copy of a generated dataset under another root (for tests that change files)."""
    shutil.copytree(source.root, root, dirs_exist_ok=True)
    raw = {name: root / path.relative_to(source.root) for name, path in source.raw_videos.items()}
    labels = {video: df.copy() for video, df in source.labels.items()}
    return SyntheticAffWild2(Path(root), source.signal, source.expr_dir, source.splits, labels, raw)


def small_face_frames(width: int, height: int, n: int = 12, media_dir: Path = MEDIA_DIR) -> list[np.ndarray]:
    """Small real faces in large frames (n <= 15): the no-face video's first frame enlarged as the
    background, and every 30th frame of the Pexels clip (crying, then smiling) shrunk so that its face is
    40 px tall in the first frame, growing to 120 px in the last, drifting right by 0.5 % of the width a
    frame."""
    background = cv2.resize(_read_frames(media_dir / "no_face.mp4", 0, 1)[0], (width, height),
                            interpolation=cv2.INTER_CUBIC)
    sources = _read_frames(media_dir / "WolfgangLanger_Pexels.mp4", 0, 30 * n)[::30]
    face_height = 292.7                               # stock MTCNN's box on the clip's frames (640x360)
    frames = []
    for i, source in enumerate(sources):
        scale = (40 + 80 * i / (n - 1)) / face_height
        small = cv2.resize(source, (round(640 * scale), round(360 * scale)), interpolation=cv2.INTER_AREA)
        frame, x, y = background.copy(), width // 5 + i * width // 200, height // 3
        frame[y:y + small.shape[0], x:x + small.shape[1]] = small
        frames.append(frame)
    return frames
