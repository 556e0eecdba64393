"""From a video file (or an Aff-Wild2 video's aligned face images) to an Analysis (core.table).

    decode (core.video, in a background thread) -> MTCNN on batches, every k-th frame (core.faces)
    -> square crops of every face (112 px for DDAMFN, the CLIP size) -> embeddings per face (core.predict)
    -> after the last frame: face tracks, the subject's track -> core.predict.predict on its embeddings
    -> core.table.build: one row per decoded frame, with the run metadata beside it

Why embeddings of every face and not only the subject's: the subject (the largest face over the whole
video) is only known at the end, and frames are never kept; embeddings are 2 KB per face, so memory
grows with length only by N x 512 floats per model. Heads are linear, so running them at the end costs
nothing. Frames without the subject's face keep their row (face=False) and get values by core.predict's
rule (filled=True), or stay empty with `fill="none"` or when the video has no face at all.

The analysis is a generator of Steps (frames done, total, and now and then the table of the frames so
far) that ends with the Analysis; analyze_video / analyze_affwild2 run one to its end.
"""
from __future__ import annotations

import copy
import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version

import numpy as np
import pandas as pd

from core import faces as facelib
from core.analysis import (NO_FACE_NOTE, Analysis, AnalysisConfig, Detection, RunInfo, Source, Stride,
                           faceless_rule)
from core.fill import fill_gaps
from core.models import create_model
from core.models.ddamfn import INPUT_SIZE as DDAMFN_SIZE
from core.predict import LoadedModels, encode, predict
from core.predict import load_models as _load_models
from core.stages import Timer, TimedDetector, prefetch, timed
from core.table import BOX_DETECTED, CLIP_SCORED, DDAMFN_SCORED, FACE, FILLED, build, expr_outputs
from core.video import iter_frames, probe

BATCH_BYTES = 96 * 2**20     # decoded frames in one batch (a 4K video gets 3 frames a batch, 640x360 gets 32)
AFFWILD2_FPS = 30.0          # Aff-Wild2 videos are 30 fps; used for time_s when the raw video is absent

PARTIAL_EVERY_S = 3.0        # video_steps: a table of the frames so far this often
# Encoders run on every face frame unless the user asks for a stride (ddamfn_every / clip_every): then the
# face frames between get embeddings interpolated from the encoded ones, marked in the table. What a stride
# costs in agreement with every frame: benchmarks/fidelity.py, benchmarks/RESULTS.md.
SCORED_COLUMNS = {"ddamfn": DDAMFN_SCORED, "clip": CLIP_SCORED}


@dataclass(frozen=True)
class Step:
    """Where an analysis is: frames done of total, and every PARTIAL_EVERY_S the table of the frames so
    far (the final columns, the subject chosen on those frames) so that a page can draw the timeline as
    it fills in; None in between."""

    done: int
    total: int
    table: pd.DataFrame | None = None


def run_to_end(steps: Iterator) -> Analysis:
    """The Analysis a generator of Steps ends with."""
    for step in steps:
        if isinstance(step, Analysis):
            return step
    raise RuntimeError("the analysis ended without a result")


def load_models(config: AnalysisConfig | None = None, create=None) -> LoadedModels:
    """The configuration's models on its device (WeightsError on weights that cannot be used); create: a
    caching model builder (core.predict.load_models)."""
    config = config or AnalysisConfig()
    config.check()
    return _load_models(config.model_names(), config.weights, config.device, config.clip_model, config.prompt_sets,
                        create=create or create_model)


@functools.lru_cache(maxsize=2)
def _face_detector(device: str) -> facelib.FaceDetector:
    """MTCNN's networks, loaded once per device; each call sets its own detection settings on a copy."""
    return facelib.FaceDetector(device, batch_size=64 if device.startswith("cuda") else 16)


def detection_settings(config: AnalysisConfig) -> dict:
    """How faces are detected: every k-th frame, the smallest face (pixels of the frame) and the fixed
    longest side of the detection copy (None: set by the smallest face); the config's or core.faces'."""
    return {"every": config.detect_every if config.detect_every is not None else facelib.DEFAULT_DETECT_EVERY,
            "min_face_px": config.min_face_px if config.min_face_px is not None else facelib.DEFAULT_MIN_FACE_PX,
            "detect_size": config.detect_size}


# ---------------------------------------------------------------------------------------------------
# Per-face embeddings


def _embed(loaded: LoadedModels, crops: dict[str, np.ndarray], timer: Timer) -> dict[str, np.ndarray]:
    """Embeddings of face crops per encoder ("ddamfn" (B, 512), "clip" (B, D) raw CLIP)."""
    out, t = {}, time.perf_counter()
    for name, batch in crops.items():
        out[name] = encode(loaded.models[name], batch) if len(batch) else np.zeros((0, loaded.encoders[name]), np.float32)
        t = timer.add(name, t)
    return out


def crop_sizes(loaded: LoadedModels) -> dict[str, int]:
    """Encoder -> the side of the square face crops it takes."""
    return {name: DDAMFN_SIZE if name == "ddamfn" else loaded.clip_size for name in loaded.encoders}


class _Faces:
    """Per-face records collected while streaming: frame, box, prob and embeddings per model."""

    def __init__(self, dims: dict[str, int]):
        self.frame, self.box, self.prob, self.detected = [], [], [], []
        self.scored: dict[str, list[np.ndarray]] = {k: [] for k in dims}
        self.emb: dict[str, list[np.ndarray]] = {k: [np.zeros((0, d), np.float32)] for k, d in dims.items()}

    def add(self, frames, boxes, probs, detected, emb: dict[str, np.ndarray], scored=None):
        """scored: encoder -> which faces it ran on (its other rows of emb are NaN); None: all."""
        self.frame.append(np.asarray(frames, np.int64))
        for k in self.scored:
            self.scored[k].append(np.asarray(scored[k], bool) if scored else np.ones(len(frames), bool))
        self.box.append(np.asarray(boxes, np.float64).reshape(-1, 4))
        self.prob.append(np.asarray(probs, np.float64))
        self.detected.append(np.asarray(detected, bool))
        for k, v in emb.items():
            self.emb[k].append(v.astype(np.float32, copy=False))

    def arrays(self):
        cat = lambda parts, shape, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(shape, dtype)  # noqa: E731
        emb = {k: np.concatenate(v) for k, v in self.emb.items()}
        return (cat(self.frame, (0,), np.int64), cat(self.box, (0, 4), np.float64), cat(self.prob, (0,), np.float64),
                cat(self.detected, (0,), bool), emb, {k: cat(v, (0,), bool) for k, v in self.scored.items()})


def _largest(boxes: np.ndarray, probs: np.ndarray, k: int):
    if len(boxes) <= k:
        return boxes, probs
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = np.sort(np.argsort(-area, kind="stable")[:k])
    return boxes[keep], probs[keep]


# ---------------------------------------------------------------------------------------------------
# Analysing a video file


def analyze_video(path, config: AnalysisConfig | None = None, *, loaded: LoadedModels | None = None) -> Analysis:
    """The Analysis of a video file (video_steps run to its end)."""
    return run_to_end(video_steps(path, config, loaded=loaded))


def video_steps(path, config: AnalysisConfig | None = None, *, loaded: LoadedModels | None = None,
                partial_every_s: float = PARTIAL_EVERY_S) -> Iterator[Step | Analysis]:
    """The analysis of a video file (one table row per decoded frame), as a generator: a Step after
    every batch (total counted from the container's packets by core.video.probe, which refuses a
    truncated file before any model runs; a partial table every partial_every_s seconds), then the
    Analysis. `loaded` reuses models loaded by load_models(config). Raises VideoError for an unreadable
    video, WeightsError for unusable weights, ValueError for a bad config. A video without any face gives
    a table with face=False everywhere and empty predictions (RunInfo.no_face, and a note)."""
    config = config or AnalysisConfig()
    config.check()
    t_start = time.perf_counter()
    timer = Timer()
    info = probe(path)
    loaded = loaded or load_models(config)
    timer.add("load_models", t_start)
    total = info.frame_count if config.max_frames is None else min(info.frame_count, config.max_frames)
    faces, times, detected = _Faces(loaded.encoders), [], 0
    sizes = crop_sizes(loaded)
    n, shape = 0, (info.height, info.width)
    batch_size = max(1, min(config.batch_size, BATCH_BYTES // max(3 * info.width * info.height, 1)))
    decoded = prefetch(iter_frames(path, batch_size, config.max_frames), timer)
    every, detector = _detector(loaded, config)
    strides = encoder_strides(config, sizes)
    pickers = {name: _StridePicker(k) for name, k in strides.items()}
    last_partial = time.perf_counter()
    stream = facelib.detect_stream(timed(decoded, timer, "decode_wait"), TimedDetector(detector, timer), every)
    for batch in stream:
        t = time.perf_counter()
        shape = batch.frames[0].shape[:2]
        frames, boxes, probs, sources, was_detected = [], [], [], [], []
        for i in range(len(batch)):
            b, p = _largest(batch.boxes[i], batch.probs[i], config.max_faces)
            frames += [int(batch.index[i])] * len(b)
            was_detected += [bool(batch.detected[i])] * len(b)
            boxes.append(b)
            probs.append(p)
            sources += [batch.frames[i]] * len(b)
        boxes, probs = np.concatenate(boxes), np.concatenate(probs)
        scored = {name: picker.pick(frames, boxes) for name, picker in pickers.items()}
        crops = {name: facelib.crop_faces([s for s, k in zip(sources, scored[name]) if k], boxes[scored[name]], size)
                 for name, size in sizes.items()} if len(boxes) else {}
        t = timer.add("crop", t)
        emb = _embed(loaded, crops, timer) if len(boxes) else {}
        emb = {name: _spread(values, scored[name]) for name, values in emb.items()}   # unscored: NaN rows
        faces.add(frames, boxes, probs, was_detected, emb, scored)
        times.append(batch.time_s)
        detected += int(batch.detected.sum())
        n += len(batch)
        partial = None
        if time.perf_counter() - last_partial >= partial_every_s:
            t = time.perf_counter()
            partial = _video_result(loaded, config, Timer(), faces, times, n, shape, partial=True)[0]
            last_partial = timer.add("partial_tables", t)
        yield Step(n, max(total, n), partial)
    table, outputs_from, emb, tracks, chosen = _video_result(loaded, config, timer, faces, times, n, shape)
    yield Step(n, n)
    scored = {name: table[SCORED_COLUMNS[name]] for name in strides}
    run = _run_info(loaded, config, table, outputs_from, timer, t_start, source=Source("video", path=str(path)),
                    fps=info.fps, fps_source="video", video=info,
                    detection=Detection(detector.settings, every, detected, config.max_faces),
                    strides={name: Stride(k, int(scored[name].sum()), int(scored[name].notna().sum()))
                             for name, k in strides.items()},
                    tracks=tuple(tracks), track=chosen, track_from_user=config.track is not None)
    yield Analysis(table, run, emb.get("clip") if loaded.clip is not None else None)


def _video_result(loaded: LoadedModels, config: AnalysisConfig, timer: Timer, faces: "_Faces", times: list, n: int,
                  shape, partial: bool = False) -> tuple[pd.DataFrame, dict, dict, list, int | None]:
    """The table of the frames so far (tracks, the subject, predictions), which card gave each output,
    the subject's embeddings, the tracks and the subject. A partial result follows the largest face until
    the track the config asks for exists."""
    t = time.perf_counter()
    frame, box, prob, box_detected, emb, scored = faces.arrays()
    track_ids, tracks = facelib.track_faces(frame, box, prob, shape)
    track = config.track
    if partial and not any(tr.id == track for tr in tracks):
        track = None
    chosen = facelib.choose_track(tracks, track)
    rows = np.flatnonzero(track_ids == chosen) if chosen is not None else np.zeros(0, np.int64)
    timer.add("tracking", t)
    face = np.zeros(n, bool)
    face[frame[rows]] = True
    subject, marks = {}, {}
    for name, values in emb.items():                     # interpolate what an encoder's stride skipped
        subject[name] = (fill_gaps(values[rows], scored[name][rows], frame[rows]).astype(np.float32) if len(rows)
                         else values[rows])
        marks[name] = _detected_column(n, frame[rows], scored[name][rows])
    per_frame = lambda values, fill_value: _scatter(n, frame[rows], values[rows], fill_value)   # noqa: E731
    table, outputs_from = _table(loaded, config, timer, face, subject, np.concatenate(times) if times else np.zeros(0),
                                 face_prob=per_frame(prob, np.nan), boxes=per_frame(box, np.nan),
                                 box_detected=_detected_column(n, frame[rows], box_detected[rows]),
                                 ddamfn_scored=marks.get("ddamfn"), clip_scored=marks.get("clip"))
    return table, outputs_from, subject, tracks, chosen


class _StridePicker:
    """Which faces an encoder runs on at a stride of k frames: every face on frames k apart, and a face
    that no face encoded in the last k frames overlaps (it just appeared), so every face run gets one."""

    def __init__(self, every: int):
        self.every, self.recent = every, []       # recent: (frame, box) of scored faces

    def pick(self, frames: list[int], boxes: np.ndarray) -> np.ndarray:
        keep = np.zeros(len(frames), bool)
        for i, f in enumerate(frames):
            self.recent = [(g, b) for g, b in self.recent if f - g < self.every]
            covered = self.recent and facelib.iou(boxes[i:i + 1], np.stack([b for _, b in self.recent])).max() >= 0.3
            keep[i] = f % self.every == 0 or not covered
            if keep[i]:
                self.recent.append((f, boxes[i]))
        return keep


def encoder_strides(config: AnalysisConfig, encoders) -> dict[str, int]:
    """Encoder -> run it on every k-th frame (the config's; 1 unless a stride was asked for)."""
    asked = {"ddamfn": config.ddamfn_every, "clip": config.clip_every}
    return {name: asked[name] for name in encoders}


def _spread(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(rows.sum(), D) values placed at the True rows of a (len(rows), D) array, NaN elsewhere."""
    out = np.full((len(rows), values.shape[1]), np.nan, np.float32)
    out[rows] = values
    return out


def _scatter(n: int, frames: np.ndarray, values: np.ndarray, fill_value) -> np.ndarray:
    out = np.full((n, *values.shape[1:]), fill_value, dtype=np.float64)
    out[frames] = values
    return out


def _detected_column(n: int, frames: np.ndarray, detected: np.ndarray) -> list:
    out = [None] * n
    for f, d in zip(frames, detected):
        out[int(f)] = bool(d)
    return out


def _detector(loaded: LoadedModels, config: AnalysisConfig) -> tuple[int, facelib.FaceDetector]:
    """The loaded detector with this call's settings (a shallow copy: the MTCNN networks are shared)."""
    settings = detection_settings(config)
    detector = copy.copy(_face_detector(str(loaded.device)))
    detector.min_face_px, detector.detect_size = settings["min_face_px"], settings["detect_size"]
    detector.min_prob, detector.batched_crops = config.min_face_prob, config.batched_detection
    return settings["every"], detector


# ---------------------------------------------------------------------------------------------------
# Analysing an Aff-Wild2 video from its aligned face images


def analyze_affwild2(index, video: str, config: AnalysisConfig | None = None, *,
                     loaded: LoadedModels | None = None) -> Analysis:
    """The Analysis of an Aff-Wild2 video (affwild2_steps run to its end)."""
    return run_to_end(affwild2_steps(index, video, config, loaded=loaded))


def affwild2_steps(index, video: str, config: AnalysisConfig | None = None, *,
                   loaded: LoadedModels | None = None) -> Iterator[Step | Analysis]:
    """The analysis of an Aff-Wild2 video from its cropped_aligned images (no detection), one row per
    annotation line (frame i <-> image f"{i+1:05d}.jpg"; lines without an image have face=False), as a
    generator: a Step after every batch, then the Analysis.

    index: a core.affwild2_index.AffWild2Index (or its root folder). time_s = frame / fps of the raw video,
    or / 30 when the raw video is absent (RunInfo.fps_source says which). Boxes and face_prob are NaN.
    """
    from core.affwild2_index import AffWild2Index

    config = config or AnalysisConfig()
    config.check()
    index = index if isinstance(index, AffWild2Index) else AffWild2Index(index)
    t_start = time.perf_counter()
    timer = Timer()
    loaded = loaded or load_models(config)
    timer.add("load_models", t_start)
    frames = index.video_frames(video)
    paths = frames["image_path"].tolist()
    n = len(paths)
    raw = index.raw_video_path(video)
    fps, fps_source = (probe(raw).fps, f"raw video {raw}") if raw is not None else (AFFWILD2_FPS, "assumed")
    faces, unreadable = _Faces(loaded.encoders), []
    sizes = crop_sizes(loaded)
    have = [i for i, p in enumerate(paths) if p is not None]
    for start in range(0, len(have), config.batch_size):
        t = time.perf_counter()
        chunk, images = [], []
        for i in have[start:start + config.batch_size]:
            try:
                images.append(facelib.read_face_image(paths[i]))
            except OSError:
                unreadable.append(paths[i])
                continue
            chunk.append(i)
        t = timer.add("read_images", t)
        crops = {name: np.stack([facelib.resize_face(im, size) for im in images])
                 for name, size in sizes.items()} if images else {}
        timer.add("crop", t)
        emb = _embed(loaded, crops, timer) if chunk else {}
        faces.add(chunk, np.full((len(chunk), 4), np.nan), np.full(len(chunk), np.nan), np.zeros(len(chunk), bool),
                  emb)
        yield Step(have[start:start + config.batch_size][-1] + 1, n)
    face_frames, _, _, _, emb, _ = faces.arrays()
    face = np.zeros(n, bool)
    face[face_frames] = True
    table, outputs_from = _table(loaded, config, timer, face, emb, frames["frame"].to_numpy() / fps)
    yield Step(n, n)
    run = _run_info(loaded, config, table, outputs_from, timer, t_start,
                    source=Source("affwild2", root=str(index.root), video=video, splits=frames.attrs.get("splits", {})),
                    fps=fps, fps_source=fps_source, unreadable_images=tuple(unreadable))
    yield Analysis(table, run, emb.get("clip") if loaded.clip is not None else None)


# ---------------------------------------------------------------------------------------------------
# The table and how the run went


def _table(loaded: LoadedModels, config: AnalysisConfig, timer: Timer, face: np.ndarray, emb: dict[str, np.ndarray],
           time_s: np.ndarray, **face_data) -> tuple[pd.DataFrame, dict[str, str]]:
    """The table of the frames, and which card gave each output."""
    t = time.perf_counter()
    predictions = predict(loaded, emb, face, config.prompt_sets, fill=config.fill == "interpolate")
    table = build(predictions, time_s, loaded.au_thresholds, **face_data)
    timer.add("heads", t)
    return table, predictions.sources


def interpolated_counts(table: pd.DataFrame, encoders) -> dict:
    """How many frames of a table hold interpolated values, by what was interpolated (the columns that
    say which rows: box_detected, <encoder>_scored, filled), beside the frames every value rests on."""
    return {"frames": len(table), "face_frames": int(table[FACE].sum()),
            "boxes": int(table[BOX_DETECTED].eq(False).sum()),
            **{f"{name}_embeddings": int(table[SCORED_COLUMNS[name]].eq(False).sum()) for name in encoders},
            "faceless_filled": int(table[FILLED].sum())}


def _run_info(loaded: LoadedModels, config: AnalysisConfig, table: pd.DataFrame, outputs_from: dict, timer: Timer,
              t_start: float, **fields) -> RunInfo:
    n_face = int(table["face"].sum())
    faceless = faceless_rule(n_face, config.fill == "interpolate", outputs_from)
    return RunInfo(config=config, device=str(loaded.device), models=loaded.describe(), outputs_from=dict(outputs_from),
                   au_thresholds=tuple(float(t) for t in loaded.au_thresholds), windows=dict(loaded.windows),
                   expr_outputs=tuple(expr_outputs(table)), frames=len(table), face_frames=n_face, faceless=faceless,
                   timings={k: round(v, 4) for k, v in {**timer.seconds, "total": time.perf_counter() - t_start}.items()},
                   notes=((NO_FACE_NOTE,) if n_face == 0 else ()) + loaded.source_notes(),
                   interpolated=interpolated_counts(table, fields.get("strides", {})),
                   versions={p: version(p) for p in ("torch", "opencv-python-headless", "facenet-pytorch",
                                                     "open_clip_torch")}, **fields)


__all__ = ["Analysis", "AnalysisConfig", "LoadedModels", "RunInfo", "Step", "affwild2_steps", "analyze_affwild2",
           "analyze_video", "detection_settings", "load_models", "run_to_end", "video_steps"]
