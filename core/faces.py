"""Faces in video frames: MTCNN detection on batches, tracks that follow one person, square face crops.

- FaceDetector runs facenet-pytorch's MTCNN (its networks and weights, its batched `detect`) on the GPU
  when there is one. Frames are detected on a copy scaled so that the smallest face worth finding
  (`min_face_px`, in pixels of the original frame) is MTCNN's smallest (MTCNN_MIN_FACE px at its scale):
  the copy's size follows the frame, so a 40 px face in a 4K frame is found as in a 640x360 one. Boxes
  are scaled back; crops are always cut from the full frame.
- detect_stream detects every `every`-th frame of a decoded stream (plus the last one) and gives the
  frames in between boxes interpolated from the detected frames on either side: detection dominates
  the cost (PERFORMANCE.md) and faces move little in a few frames. Where the two detections disagree
  (a face appears or leaves, or moved sharply: IoU below REDETECT_IOU) the frames in between are
  detected too. Each frame says whether its boxes were detected or interpolated.
- track_faces links detections across frames into tracks (IoU, or centre distance after a short gap);
  choose_track picks the subject (largest face area summed over frames); every track's summary is kept
  so that a user can pick another person.
- crop_faces cuts a square around each box (10% margin, zero padding outside the frame, as the training
  crops in tests/datagen.py) and resizes it with area interpolation.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from core.device import pick_device
from core.video import FrameBatch

EMPTY_BOXES = np.zeros((0, 4), np.float32)
EMPTY_PROBS = np.zeros((0,), np.float32)
CROP_MARGIN = 0.1           # the square crop's side is (1 + margin) * the box's longer side
REDETECT_IOU = 0.5          # detections k frames apart overlapping less than this: detect the frames between
MTCNN_MIN_FACE = 20         # MTCNN's min_face_size (facenet-pytorch's default), in pixels of the detection copy
# The smallest face found, in pixels of the original frame: the detection copy is scaled by
# MTCNN_MIN_FACE / DEFAULT_MIN_FACE_PX (never up), so a 640x360 frame is detected at 320x180 as before and
# a 3840x2160 one at 1920x1080, where 40-120 px faces are found (tests/test_faces.py; cost in
# benchmarks/RESULTS.md). Detect every 4th frame; boxes in between are interpolated, or detected where the
# detections disagree: against stock MTCNN on every full frame this gave the same faces on every frame and
# the same mean IoU as every 2nd frame, with half the detector calls.
DEFAULT_MIN_FACE_PX = 40
DEFAULT_DETECT_EVERY = 4


class FaceDetector:
    """MTCNN on batches of equal-sized RGB frames.

    min_face_px: smallest face looked for, in pixels of the original frame (MTCNN_MIN_FACE: the full frame,
    stock MTCNN); detect_size: instead, a copy whose longest side is at most this many pixels;
    min_prob: detections below it are dropped (MTCNN's own last threshold is 0.7; 0.9 keeps faces, not
    face-like texture); batched_crops: run the stages with core.mtcnn_batched instead of stock `detect`
    (off by default: on the 2-core CPU it measured no faster; it targets the GPU).
    """

    def __init__(self, device="auto", min_face_px: float = DEFAULT_MIN_FACE_PX, detect_size: int | None = None,
                 min_prob: float = 0.9, thresholds=(0.6, 0.7, 0.7), batch_size: int = 32,
                 batched_crops: bool = False):
        from facenet_pytorch import MTCNN

        self.device = pick_device(device)
        self.min_face_px, self.detect_size = min_face_px, detect_size
        self.min_prob, self.batch_size, self.batched_crops = min_prob, batch_size, batched_crops
        self.mtcnn = MTCNN(min_face_size=MTCNN_MIN_FACE, thresholds=list(thresholds), keep_all=True,
                           select_largest=False, device=self.device).eval()

    @property
    def settings(self) -> dict:
        return {"detector": "MTCNN (facenet-pytorch)", "device": str(self.device),
                "min_face_px": self.min_face_px, "detect_size": self.detect_size,
                "mtcnn_min_face_size": self.mtcnn.min_face_size, "min_prob": self.min_prob,
                "thresholds": list(self.mtcnn.thresholds),
                "stages": "batched roi_align crops (core.mtcnn_batched)" if self.batched_crops else "stock detect"}

    def scale_for(self, height: int, width: int) -> float:
        """Factor from full frame to detection copy (at most 1.0: frames are never enlarged)."""
        if self.detect_size is not None:
            return min(1.0, self.detect_size / max(height, width))
        return min(1.0, self.mtcnn.min_face_size / self.min_face_px)

    @torch.no_grad()
    def detect(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per frame: boxes (k, 4) float32 x1, y1, x2, y2 in full-frame pixels, probs (k,) float32,
        sorted by probability (highest first); k = 0 where there is no face."""
        out = []
        for i in range(0, len(frames), self.batch_size):
            out.extend(self._detect_batch(frames[i:i + self.batch_size]))
        return out

    def _detect_batch(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        if not frames:
            return []
        h, w = frames[0].shape[:2]
        scale = self.scale_for(h, w)
        size = (round(h * scale), round(w * scale))
        if min(size) < self.mtcnn.min_face_size:         # smaller than the smallest face MTCNN looks for
            return [(EMPTY_BOXES, EMPTY_PROBS) for _ in frames]
        if self.device.type == "cuda":          # upload uint8, shrink on the GPU
            x = torch.from_numpy(np.stack(frames)).pin_memory().to(self.device, non_blocking=True)
            if scale != 1.0:
                x = F.interpolate(x.permute(0, 3, 1, 2).float(), size=size, mode="area").permute(0, 2, 3, 1)
        else:                                   # shrink each uint8 frame first: no full-size float copy
            if scale != 1.0:
                frames = [cv2.resize(f, size[::-1], interpolation=cv2.INTER_AREA) for f in frames]
            x = torch.from_numpy(np.stack(frames))
        if self.batched_crops:
            from core.mtcnn_batched import mtcnn_detect_batched

            found = mtcnn_detect_batched(self.mtcnn, x.to(self.device))
        else:
            boxes, probs = self.mtcnn.detect(x)
            found = [np.zeros((0, 5)) if b is None else np.column_stack([np.asarray(b, np.float32).reshape(-1, 4),
                                                                          np.asarray(p, np.float32).reshape(-1)])
                     for b, p in zip(boxes, probs)]
        result = []
        for f in found:
            f = np.asarray(f, np.float32).reshape(-1, 5)
            keep = f[:, 4] >= self.min_prob
            result.append((f[keep, :4] / scale, f[keep, 4]))
        return result


# ---------------------------------------------------------------------------------------------------
# Detection on a stream, every k-th frame


@dataclass
class FaceBatch:
    """Decoded frames with their faces: boxes[i] (k, 4), probs[i] (k,) for frame index[i]; detected[i]
    is False where the boxes were interpolated from the nearest detected frames."""

    index: np.ndarray
    time_s: np.ndarray
    frames: list[np.ndarray]
    boxes: list[np.ndarray]
    probs: list[np.ndarray]
    detected: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in a (n, 4) with every box in b (m, 4): (n, m)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)           # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def _greedy_pairs(score: np.ndarray, minimum: float) -> list[tuple[int, int]]:
    """One-to-one pairs (row, col) by descending score, each at least `minimum`."""
    pairs, used_r, used_c = [], set(), set()
    for flat in np.argsort(-score, axis=None, kind="stable"):
        r, c = np.unravel_index(flat, score.shape)
        if score[r, c] < minimum:
            break
        if r not in used_r and c not in used_c:
            pairs.append((int(r), int(c)))
            used_r.add(r)
            used_c.add(c)
    return pairs


def interpolate_boxes(a: tuple[int, np.ndarray, np.ndarray], b: tuple[int, np.ndarray, np.ndarray],
                      frames: Iterable[int], min_iou: float = 0.3) -> list[tuple[np.ndarray, np.ndarray]]:
    """Boxes for frames strictly between two detected frames a = (frame, boxes, probs) and b.

    A face found in both (IoU >= min_iou) moves linearly, with the lower of its two probabilities; a
    face found in only one of them is kept in the frames nearer to that one (it enters or leaves).
    """
    (fa, ba, pa), (fb, bb, pb) = a, b
    pairs = _greedy_pairs(iou(ba, bb), min_iou) if len(ba) and len(bb) else []
    only_a = [i for i in range(len(ba)) if i not in {r for r, _ in pairs}]
    only_b = [j for j in range(len(bb)) if j not in {c for _, c in pairs}]
    out = []
    for f in frames:
        w = (f - fa) / (fb - fa)
        boxes = [(1 - w) * ba[i] + w * bb[j] for i, j in pairs]
        probs = [min(pa[i], pb[j]) for i, j in pairs]
        near_a = f - fa <= fb - f
        for i in only_a if near_a else ():
            boxes.append(ba[i])
            probs.append(pa[i])
        for j in () if near_a else only_b:
            boxes.append(bb[j])
            probs.append(pb[j])
        out.append((np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(probs, np.float32)))
    return out


def agree(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], min_iou: float = REDETECT_IOU) -> bool:
    """Whether two detections (boxes, probs) a few frames apart hold the same faces in about the same
    places: as many faces, each paired with one overlapping it by at least min_iou."""
    if len(a[0]) != len(b[0]):
        return False
    return not len(a[0]) or len(_greedy_pairs(iou(a[0], b[0]), min_iou)) == len(a[0])


def detect_stream(batches: Iterable[FrameBatch], detector: FaceDetector, every: int = 1) -> Iterator[FaceBatch]:
    """Faces for every frame of a decoded stream, detecting frames whose index is a multiple of `every`
    and the last frame; the frames between two detected ones are held back (at most `every` - 1) and
    get interpolated boxes, or are detected as well where the two detections disagree (see agree).
    Yields FaceBatches in frame order."""
    if every < 1:
        raise ValueError("every must be at least 1")
    held: list[tuple[int, float, np.ndarray]] = []    # frames waiting for the next detected frame
    last = None                                       # (frame, boxes, probs) of the last detected frame
    for batch in batches:
        picks = [j for j, f in enumerate(batch.index) if f % every == 0]
        found = dict(zip(picks, detector.detect([batch.frames[j] for j in picks])))
        out = _Collector()
        for j, f in enumerate(batch.index):
            if j not in found:
                held.append((int(f), float(batch.time_s[j]), batch.frames[j]))
                continue
            current = (int(f), *found[j])
            out.add_between(held, last, current, detector)
            out.add(int(f), float(batch.time_s[j]), batch.frames[j], *found[j], detected=True)
            held, last = [], current
        if len(out):
            yield out.batch()
    if held:
        f, t, frame = held.pop()
        (boxes, probs), = detector.detect([frame])
        out = _Collector()
        out.add_between(held, last, (f, boxes, probs), detector)
        out.add(f, t, frame, boxes, probs, detected=True)
        yield out.batch()


class _Collector:
    """Accumulates frames with their boxes into one FaceBatch."""

    def __init__(self):
        self.rows = []

    def __len__(self):
        return len(self.rows)

    def add(self, f, t, frame, boxes, probs, detected):
        self.rows.append((f, t, frame, boxes, probs, detected))

    def add_between(self, held, last, current, detector):
        """The held frames between two detected ones: interpolated where they agree, else detected."""
        if not held:
            return
        if last is not None and agree(last[1:], current[1:]):
            found, detected = interpolate_boxes(last, current, [h[0] for h in held]), False
        else:
            found, detected = detector.detect([h[2] for h in held]), True
        for (f, t, frame), (boxes, probs) in zip(held, found):
            self.add(f, t, frame, boxes, probs, detected=detected)

    def batch(self) -> FaceBatch:
        f, t, frames, boxes, probs, detected = zip(*self.rows)
        return FaceBatch(np.asarray(f, np.int64), np.asarray(t, np.float64), list(frames), list(boxes),
                         list(probs), np.asarray(detected, bool))


# ---------------------------------------------------------------------------------------------------
# Tracks


@dataclass(frozen=True)
class Track:
    """One person's face through the video. area: mean box area as a fraction of the frame; box: mean
    box (x1, y1, x2, y2) in pixels; score: summed face area (fraction of frame) over its frames."""

    id: int
    first_frame: int
    last_frame: int
    n_frames: int
    mean_prob: float
    area: float
    box: tuple[float, float, float, float]
    score: float

    def as_dict(self) -> dict:
        return asdict(self)


def track_faces(frame: np.ndarray, boxes: np.ndarray, probs: np.ndarray, frame_shape: tuple[int, int],
                max_gap: int = 30, min_iou: float = 0.3, max_shift: float = 1.0) -> tuple[np.ndarray, list[Track]]:
    """Link detections into tracks.

    frame (M,) frame of each detection (non-decreasing), boxes (M, 4), probs (M,); frame_shape (h, w).
    A detection continues the track whose last box (seen at most max_gap frames before) overlaps it
    most (IoU >= min_iou) or, failing that, whose centre is within max_shift box sizes and whose size
    is within a factor 2; otherwise it starts a new track. Returns each detection's track id (M,) and
    the tracks, best first (track ids are 0, 1, ... in that order).
    """
    frame, boxes = np.asarray(frame, np.int64), np.asarray(boxes, np.float64).reshape(-1, 4)
    probs = np.asarray(probs, np.float64)
    raw_ids = np.full(len(frame), -1, np.int64)
    last_box, last_frame = [], []                     # per raw track
    starts = np.flatnonzero(np.r_[True, frame[1:] != frame[:-1]]) if len(frame) else []
    for s, e in zip(starts, list(starts[1:]) + [len(frame)]):
        f = frame[s]
        live = [k for k in range(len(last_box)) if f - last_frame[k] <= max_gap]
        dets = boxes[s:e]
        score = np.zeros((len(dets), len(live)))
        if live:
            prev = np.stack([last_box[k] for k in live])
            overlap = iou(dets, prev)
            near = _near(dets, prev, max_shift)
            score = np.where(overlap >= min_iou, 1.0 + overlap, np.where(near, 0.5, 0.0))
        for r, c in _greedy_pairs(score, 0.5) if live else []:
            raw_ids[s + r] = live[c]
        for r in range(len(dets)):
            if raw_ids[s + r] < 0:
                raw_ids[s + r] = len(last_box)
                last_box.append(None)
                last_frame.append(f)
            last_box[raw_ids[s + r]] = dets[r]
            last_frame[raw_ids[s + r]] = f
    tracks = [_summary(k, frame[raw_ids == k], boxes[raw_ids == k], probs[raw_ids == k], frame_shape)
              for k in range(len(last_box))]
    order = sorted(range(len(tracks)), key=lambda k: (-tracks[k].score, tracks[k].first_frame))
    renumber = np.empty(len(tracks), np.int64)
    renumber[order] = np.arange(len(tracks))
    tracks = [Track(**{**tracks[k].as_dict(), "id": int(renumber[k])}) for k in order]
    return (renumber[raw_ids] if len(raw_ids) else raw_ids), tracks


def _near(a: np.ndarray, b: np.ndarray, max_shift: float) -> np.ndarray:
    """(n, m): centres within max_shift box sizes and sizes within a factor 2."""
    size = lambda x: np.sqrt(np.clip(x[:, 2:] - x[:, :2], 1e-6, None).prod(-1))   # noqa: E731
    centre = lambda x: (x[:, :2] + x[:, 2:]) / 2                                   # noqa: E731
    sa, sb = size(a)[:, None], size(b)[None, :]
    dist = np.linalg.norm(centre(a)[:, None] - centre(b)[None], axis=-1)
    ratio = sa / sb
    return (dist <= max_shift * np.maximum(sa, sb)) & (ratio <= 2) & (ratio >= 0.5)


def _summary(k, frames, boxes, probs, frame_shape) -> Track:
    h, w = frame_shape
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None) / (h * w)
    return Track(id=k, first_frame=int(frames.min()), last_frame=int(frames.max()), n_frames=len(frames),
                 mean_prob=float(probs.mean()), area=float(areas.mean()),
                 box=tuple(float(v) for v in boxes.mean(axis=0)), score=float(areas.sum()))


def choose_track(tracks: list[Track], track: int | None = None) -> int | None:
    """The subject: `track` if given (ValueError if there is no such track), else the best-scoring
    (largest face area summed over frames; tracks are sorted best first); None without tracks."""
    if track is not None:
        if not any(t.id == track for t in tracks):
            raise ValueError(f"no face track {track}; the video has {len(tracks)} track(s)")
        return track
    return tracks[0].id if tracks else None


# ---------------------------------------------------------------------------------------------------
# Crops


def square_region(box, margin: float = CROP_MARGIN) -> tuple[int, int, int]:
    """(left, top, side) in pixels of the square crop around a box."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = (1 + margin) * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), max(int(round(side)), 1)


def crop_face(frame: np.ndarray, box, size: int, margin: float = CROP_MARGIN) -> np.ndarray:
    """One square crop (size, size, 3) uint8; parts outside the frame are black."""
    left, top, side = square_region(box, margin)
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = max(left, 0), max(top, 0), min(left + side, w), min(top + side, h)
    if (x1, y1, x2, y2) == (left, top, left + side, top + side):
        region = frame[y1:y2, x1:x2]
    else:
        region = np.zeros((side, side, 3), np.uint8)
        if x2 > x1 and y2 > y1:
            region[y1 - top:y2 - top, x1 - left:x2 - left] = frame[y1:y2, x1:x2]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(region, (size, size), interpolation=interp)


def crop_faces(frames: list[np.ndarray], boxes, size: int, margin: float = CROP_MARGIN) -> np.ndarray:
    """Crop box i from frames[i]: uint8 (B, size, size, 3)."""
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, (frame, box) in enumerate(zip(frames, boxes)):
        out[i] = crop_face(frame, box, size, margin)
    return out


def resize_face(image: np.ndarray, size: int) -> np.ndarray:
    """An already cut face image (e.g. an Aff-Wild2 aligned crop) as size x size: area interpolation to
    shrink, cubic to enlarge; the one resize used for such images by the pipeline and by training."""
    if image.shape[:2] == (size, size):
        return image
    interp = cv2.INTER_AREA if max(image.shape[:2]) > size else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interp)


def read_face_image(path, size: int | None = None) -> np.ndarray:
    """A face image file as uint8 RGB (resized to size x size when given); OSError when unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read image {path}")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return resize_face(image, size) if size else image
