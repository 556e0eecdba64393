"""From a video file (or an Aff-Wild2 video's aligned face images) to the per-frame predictions table.

    decode (core.video, in a background thread) -> MTCNN on batches, every k-th frame (core.faces)
    -> square crops of every face (112 px for DDAMFN, the CLIP size) -> embeddings per face
    -> after the last frame: face tracks, the subject's track, heads / LSTM / zero-shot on its embeddings
    -> one row per decoded frame (columns in PREDICTION_COLUMNS order; df.attrs["run"] = run metadata)

Why embeddings of every face and not only the subject's: the subject (the largest face over the whole
video) is only known at the end, and frames are never kept; embeddings are 2 KB per face, so memory
grows with length only by N x 512 floats per model. Heads are linear, so running them at the end costs
nothing. Frames without the subject's face keep their row (face=False); their predictions are
interpolated from the nearest face frames (LSTM outputs: the LSTM's own, fed with the face mask) and
marked filled=True, or left empty (NaN) when the video has no face at all or `fill="none"`.
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import pandas as pd
import torch

from core import faces as facelib
from core.device import pick_device, run_batched
from core.labels import AUS, EXPRESSIONS
from core.models import LoadedModel, create_model
from core.models.clip import DEFAULT_MODEL as DEFAULT_CLIP_MODEL, ClipAdapter, prompt_set
from core.models.ddamfn import EMBED_DIM as DDAMFN_EMBED_DIM, INPUT_SIZE as DDAMFN_SIZE
from core.video import iter_frames, probe

MODEL_ORDER = ("ddamfn", "lstm", "clip", "clip-lstm")
_ALIASES = {"ddamfn-lstm": "lstm"}
_NEEDS = {"lstm": "ddamfn", "clip-lstm": "clip"}
BOX_COLUMNS = ["box_x1", "box_y1", "box_x2", "box_y2"]
BATCH_BYTES = 96 * 2**20     # decoded frames in one batch (a 4K video gets 3 frames a batch, 640x360 gets 32)
AFFWILD2_FPS = 30.0          # Aff-Wild2 videos are 30 fps; used for time_s when the raw video is absent

Progress = Callable[[int, int], None]


def prediction_columns(clip_sets: Iterable[str] = ()) -> list[str]:
    """The table's columns in order; clip_sets are the S of clip_<S>_... columns."""
    cols = ["frame", "time_s", "face", "face_prob", *BOX_COLUMNS, "filled", "valence", "arousal", "expr",
            "expr_name", *(f"p_{e}" for e in EXPRESSIONS), *(f"p_{a}" for a in AUS), *AUS]
    for s in clip_sets:
        cols += [f"clip_{s}_expr", *(f"clip_{s}_p_{e}" for e in EXPRESSIONS)]
    return cols


@dataclass
class AnalysisConfig:
    """What to run and how. models: any of "ddamfn", "lstm" (DDAMFN+LSTM), "clip" (zero-shot per
    prompt set, or a trained adapter when its weights are given), "clip-lstm"; a model named in
    `weights` is run even if not listed. weights: model name -> spec (core.weights); absent = random
    weights, reported as untrained. detect_every / detect_size: None picks every 2nd frame on a copy
    320 px long on both devices (real time on a 2-core CPU, and the same faces on CPU and GPU; see
    benchmarks/pipeline.py); batched_detection: MTCNN stages with batched crops (core.faces); fill:
    "interpolate" or "none" for faceless frames."""

    models: tuple[str, ...] = ("ddamfn",)
    weights: dict[str, str] = field(default_factory=dict)
    prompt_sets: tuple = ("basic",)
    clip_model: str = DEFAULT_CLIP_MODEL
    device: str = "auto"
    batch_size: int = 32             # frames per decoded batch (fewer for large frames, see BATCH_BYTES)
    detect_every: int | None = None
    detect_size: int | None = None
    min_face_prob: float = 0.9
    batched_detection: bool = False
    max_faces: int = 5               # faces per frame that get embeddings (the largest)
    track: int | None = None         # the subject's track id; None: the largest face over the video
    fill: str = "interpolate"
    lstm_window: int = 64
    lstm_stride: int = 32
    max_frames: int | None = None    # analyse only the first frames (benchmarks, previews)

    def model_names(self) -> tuple[str, ...]:
        names = {_ALIASES.get(m, m) for m in (*self.models, *self.weights)}
        unknown = sorted(names - set(MODEL_ORDER))
        if unknown:
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODEL_ORDER)}")
        names |= {_NEEDS[m] for m in names if m in _NEEDS}
        if not names:
            raise ValueError("no model chosen")
        return tuple(m for m in MODEL_ORDER if m in names)


# ---------------------------------------------------------------------------------------------------
# Models


@dataclass
class LoadedModels:
    """Everything analyze_video runs, loaded once (the app keeps one per configuration)."""

    device: torch.device
    models: dict[str, LoadedModel]
    detector: facelib.FaceDetector   # its MTCNN networks; detection settings come from each call's config
    au_thresholds: np.ndarray

    @property
    def clip(self) -> LoadedModel | None:
        return self.models.get("clip")

    @property
    def clip_size(self) -> int:
        return self.clip.model.preprocessing["size"] if self.clip else 0

    @property
    def embedding_dims(self) -> dict[str, int]:
        """Width of the per-face embeddings that _embed returns, per encoder."""
        dims = {"ddamfn": DDAMFN_EMBED_DIM} if "ddamfn" in self.models else {}
        if self.clip:
            model = self.clip.model
            dims["clip"] = (model.clip if isinstance(model, ClipAdapter) else model).embed_dim
        return dims

    def describe(self) -> dict:
        return {name: {"source": m.info.source, "untrained": m.info.untrained,
                       "untrained_tasks": list(m.info.untrained_tasks), "tasks": list(m.info.tasks),
                       "metadata": _jsonable(m.info.metadata)} for name, m in self.models.items()}


def load_models(config: AnalysisConfig | None = None) -> LoadedModels:
    """Build the chosen models and the face detector on the chosen device (WeightsError on bad weights)."""
    config = config or AnalysisConfig()
    device = pick_device(config.device)
    models = {}
    for name in config.model_names():
        weights, options = config.weights.get(name), {}
        if name == "clip":
            options = {"model_name": config.clip_model}
        elif name == "clip-lstm" and weights is None:
            clip = models["clip"].model
            dim = clip.clip.embed_dim if isinstance(clip, ClipAdapter) else clip.embed_dim
            options = {"input_dim": dim, "tasks": ("expr",)}
        models[name] = create_model(name, weights=weights, device=device, **options)
    if "ddamfn" in models and device.type == "cuda":     # _embed feeds it channels_last batches
        models["ddamfn"].model.to(memory_format=torch.channels_last)
    if "clip" in models:                 # text embeddings of the prompt sets, computed once here
        clip = models["clip"].model
        for spec in config.prompt_sets:
            (clip.clip if isinstance(clip, ClipAdapter) else clip).text_embeddings(prompt_set(spec))
    detector = facelib.FaceDetector(device, batch_size=64 if device.type == "cuda" else 16)
    main = models.get("lstm") or models.get("ddamfn")
    thresholds = (main.info.metadata.get("au_thresholds") if main else None) or 0.5
    thresholds = np.broadcast_to(np.asarray(thresholds, np.float64), (len(AUS),)).copy()
    return LoadedModels(device, models, detector, thresholds)


DEFAULT_DETECT_EVERY = 2
DEFAULT_DETECT_SIZE = 320


def detection_settings(config: AnalysisConfig) -> tuple[int, int | None]:
    """(detect every k-th frame, longest side of the detection copy): the config's or the defaults."""
    every = config.detect_every if config.detect_every is not None else DEFAULT_DETECT_EVERY
    size = config.detect_size if config.detect_size is not None else DEFAULT_DETECT_SIZE
    return every, size


def _jsonable(value):
    """A JSON-safe copy (numpy arrays and other objects become lists or strings)."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


# ---------------------------------------------------------------------------------------------------
# Per-face embeddings


class _Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - since
        return now


@torch.no_grad()
def _embed(loaded: LoadedModels, crops_ddamfn: np.ndarray | None, crops_clip: np.ndarray | None,
           timer: _Timer) -> dict[str, np.ndarray]:
    """Embeddings of face crops: "ddamfn" (B, 512) and "clip" (B, D) (raw CLIP image embeddings, also
    under an adapter, whose adaptation is applied with the heads)."""
    out, gpu = {}, loaded.device.type == "cuda"
    t = time.perf_counter()
    if "ddamfn" in loaded.models and crops_ddamfn is not None:
        m = loaded.models["ddamfn"]
        out["ddamfn"] = run_batched(m.model.embed, m.preprocess(crops_ddamfn), amp=gpu, channels_last=gpu).numpy()
        t = timer.add("ddamfn", t)
    if loaded.clip and crops_clip is not None:
        m = loaded.clip
        encoder = m.model.clip if isinstance(m.model, ClipAdapter) else m.model
        out["clip"] = run_batched(encoder.encode_images, m.preprocess(crops_clip), amp=gpu).numpy()
        timer.add("clip", t)
    return out


class _Faces:
    """Per-face records collected while streaming: frame, box, prob and embeddings per model."""

    def __init__(self, dims: dict[str, int]):
        self.frame, self.box, self.prob = [], [], []
        self.emb: dict[str, list[np.ndarray]] = {k: [np.zeros((0, d), np.float32)] for k, d in dims.items()}

    def add(self, frames, boxes, probs, emb: dict[str, np.ndarray]):
        self.frame.append(np.asarray(frames, np.int64))
        self.box.append(np.asarray(boxes, np.float64).reshape(-1, 4))
        self.prob.append(np.asarray(probs, np.float64))
        for k, v in emb.items():
            self.emb[k].append(v.astype(np.float32, copy=False))

    def arrays(self):
        cat = lambda parts, shape: np.concatenate(parts) if parts else np.zeros(shape)    # noqa: E731
        emb = {k: np.concatenate(v) for k, v in self.emb.items()}
        return cat(self.frame, (0,)).astype(np.int64), cat(self.box, (0, 4)), cat(self.prob, (0,)), emb


def _largest(boxes: np.ndarray, probs: np.ndarray, k: int):
    if len(boxes) <= k:
        return boxes, probs
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = np.sort(np.argsort(-area, kind="stable")[:k])
    return boxes[keep], probs[keep]


# ---------------------------------------------------------------------------------------------------
# Decoding in a background thread


def _prefetch(batches: Iterator, timer: _Timer, depth: int = 2) -> Iterator:
    """Iterate `batches` in a worker thread, `depth` items ahead (OpenCV decodes without the GIL), so
    decoding overlaps detection and inference. Exceptions reach the consumer; stopping early stops
    the worker. The worker's busy time is recorded as timer.seconds["decode"]."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            t = time.perf_counter()
            for item in batches:
                t = timer.add("decode", t)
                if not put(item):
                    return
                t = time.perf_counter()
            put(done)
        except BaseException as e:       # handed to the consumer, which raises it
            put(e)
        finally:
            close = getattr(batches, "close", None)
            if close:
                close()

    worker = threading.Thread(target=work, name="decode", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


# ---------------------------------------------------------------------------------------------------
# Analysing a video file


def analyze_video(path, models: AnalysisConfig | None = None, progress: Progress | None = None, *,
                  loaded: LoadedModels | None = None) -> pd.DataFrame:
    """The per-frame predictions table of a video file (one row per decoded frame).

    `models` is the AnalysisConfig; `loaded` reuses models loaded by load_models(models). progress is
    called with (frames done, total) where total is the container's estimate until the end. Raises
    VideoError for an unreadable video, WeightsError for unusable weights, ValueError for a bad config.
    A video without any face gives a table with face=False everywhere and empty predictions
    (attrs["run"]["message"] says so).
    """
    config = models or AnalysisConfig()
    t_start = time.perf_counter()
    timer = _Timer()
    loaded = loaded or load_models(config)
    timer.add("load_models", t_start)
    info = probe(path)
    total = info.frame_count_estimate if config.max_frames is None else min(info.frame_count_estimate,
                                                                             config.max_frames)
    faces, times, detected = _Faces(loaded.embedding_dims), [], 0
    n, shape = 0, (info.height, info.width)
    batch_size = max(1, min(config.batch_size, BATCH_BYTES // max(3 * info.width * info.height, 1)))
    decoded = _prefetch(iter_frames(path, batch_size, config.max_frames), timer)
    every, detector = _detector(loaded, config)
    stream = facelib.detect_stream(_timed(decoded, timer, "decode_wait"), _TimedDetector(detector, timer), every)
    for batch in stream:
        t = time.perf_counter()
        shape = batch.frames[0].shape[:2]
        frames, boxes, probs, sources = [], [], [], []
        for i in range(len(batch)):
            b, p = _largest(batch.boxes[i], batch.probs[i], config.max_faces)
            frames += [int(batch.index[i])] * len(b)
            boxes.append(b)
            probs.append(p)
            sources += [batch.frames[i]] * len(b)
        boxes, probs = np.concatenate(boxes), np.concatenate(probs)
        crops_d = facelib.crop_faces(sources, boxes, DDAMFN_SIZE) if "ddamfn" in loaded.models and len(boxes) else None
        crops_c = facelib.crop_faces(sources, boxes, loaded.clip_size) if loaded.clip and len(boxes) else None
        t = timer.add("crop", t)
        emb = _embed(loaded, crops_d, crops_c, timer) if len(boxes) else {}
        faces.add(frames, boxes, probs, emb)
        times.append(batch.time_s)
        detected += int(batch.detected.sum())
        n += len(batch)
        if progress:
            progress(n, max(total, n))
    t = time.perf_counter()
    frame, box, prob, emb = faces.arrays()
    track_ids, tracks = facelib.track_faces(frame, box, prob, shape)
    chosen = facelib.choose_track(tracks, config.track)
    rows = np.flatnonzero(track_ids == chosen) if chosen is not None else np.zeros(0, np.int64)
    timer.add("tracking", t)
    df = _table(n, np.concatenate(times) if times else np.zeros(0), frame[rows], prob[rows], box[rows],
                {k: v[rows] for k, v in emb.items()}, loaded, config, timer)
    if progress:
        progress(n, n)
    seconds = {**timer.seconds, "total": time.perf_counter() - t_start}
    run = _run_metadata(loaded, config, df, seconds)
    run.update(
        source={"kind": "video", "path": str(path)},
        video={**info.as_dict(), "decoded_frames": n},
        detection={**detector.settings, "detect_every": every, "detected_frames": detected,
                   "max_faces": config.max_faces,
                   "between_detections": "boxes interpolated from the detected frames on either side"},
        tracks=[t.as_dict() for t in tracks],
        track=chosen,
        track_chosen_by="user" if config.track is not None else "largest face area summed over frames",
    )
    df.attrs["run"] = run
    return df


def _detector(loaded: LoadedModels, config: AnalysisConfig) -> tuple[int, facelib.FaceDetector]:
    """The loaded detector with this call's settings (a shallow copy: the MTCNN networks are shared)."""
    every, size = detection_settings(config)
    detector = copy.copy(loaded.detector)
    detector.detect_size, detector.min_prob = size, config.min_face_prob
    detector.batched_crops = config.batched_detection
    return every, detector


def _timed(batches: Iterable, timer: _Timer, stage: str) -> Iterator:
    """Record how long the consumer waits for each item."""
    it = iter(batches)
    while True:
        t = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            return
        timer.add(stage, t)
        yield item


class _TimedDetector:
    def __init__(self, detector: facelib.FaceDetector, timer: _Timer):
        self.detector, self.timer = detector, timer

    def detect(self, frames):
        t = time.perf_counter()
        out = self.detector.detect(frames)
        self.timer.add("detect", t)
        return out


# ---------------------------------------------------------------------------------------------------
# Analysing an Aff-Wild2 video from its aligned face images


def analyze_affwild2(index, video: str, models: AnalysisConfig | None = None, progress: Progress | None = None,
                     *, loaded: LoadedModels | None = None) -> pd.DataFrame:
    """Predictions for an Aff-Wild2 video from its cropped_aligned images (no detection), one row per
    annotation line (frame i <-> image f"{i+1:05d}.jpg"; lines without an image have face=False).

    index: a core.affwild2.AffWild2Index (or its root folder). time_s = frame / fps of the raw video,
    or / 30 when the raw video is absent (run["fps_source"] says which). Boxes and face_prob are NaN.
    """
    from core.affwild2 import AffWild2Index

    config = models or AnalysisConfig()
    index = index if isinstance(index, AffWild2Index) else AffWild2Index(index)
    t_start = time.perf_counter()
    timer = _Timer()
    loaded = loaded or load_models(config)
    timer.add("load_models", t_start)
    frames = index.video_frames(video)
    paths = frames["image_path"].tolist()
    n = len(paths)
    raw = index.raw_video_path(video)
    fps, fps_source = (probe(raw).fps, f"raw video {raw}") if raw is not None else (AFFWILD2_FPS, "assumed")
    faces, unreadable = _Faces(loaded.embedding_dims), []
    have = [i for i, p in enumerate(paths) if p is not None]
    done = 0
    for start in range(0, len(have), config.batch_size):
        t = time.perf_counter()
        chunk, images = [], []
        for i in have[start:start + config.batch_size]:
            image = cv2.imread(paths[i], cv2.IMREAD_COLOR)
            if image is None:
                unreadable.append(paths[i])
                continue
            chunk.append(i)
            images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        t = timer.add("read_images", t)
        crops_d = np.stack([_resize(im, DDAMFN_SIZE) for im in images]) if images else None
        crops_c = np.stack([_resize(im, loaded.clip_size) for im in images]) if images and loaded.clip else None
        timer.add("crop", t)
        emb = _embed(loaded, crops_d, crops_c, timer) if chunk else {}
        faces.add(chunk, np.full((len(chunk), 4), np.nan), np.full(len(chunk), np.nan), emb)
        done = have[start:start + config.batch_size][-1] + 1
        if progress:
            progress(done, n)
    frame, box, prob, emb = faces.arrays()
    df = _table(n, frames["frame"].to_numpy() / fps, frame, prob, box, emb, loaded, config, timer)
    if progress:
        progress(n, n)
    seconds = {**timer.seconds, "total": time.perf_counter() - t_start}
    run = _run_metadata(loaded, config, df, seconds)
    run.update(source={"kind": "affwild2", "root": str(index.root), "video": video,
                       "splits": frames.attrs.get("splits", {})},
               fps=fps, fps_source=fps_source, detection=None, tracks=[], track=None,
               unreadable_images=unreadable)
    df.attrs["run"] = run
    return df


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[:2] == (size, size):
        return image
    interp = cv2.INTER_AREA if max(image.shape[:2]) > size else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interp)


# ---------------------------------------------------------------------------------------------------
# The table


def _fill_rows(values: np.ndarray, face: np.ndarray, fill: bool) -> np.ndarray:
    """values (N, k) known on face rows; other rows interpolated linearly along the frame axis from
    the nearest face rows (the nearest one before the first / after the last), or NaN."""
    out = np.full(values.shape, np.nan)
    if not face.any():
        return out
    out[face] = values[face]
    if fill and not face.all():
        x = np.flatnonzero(face)
        gaps = np.flatnonzero(~face)
        for j in range(values.shape[1]):
            out[gaps, j] = np.interp(gaps, x, values[face, j])
    return out


def _heads(model: LoadedModel, emb: np.ndarray) -> dict[str, np.ndarray]:
    if not len(emb):
        return {}
    x = torch.as_tensor(emb).to(model.device)
    out = run_batched(model.model.heads, x, batch_size=4096, amp=False)
    return {k: v.numpy() for k, v in out.items() if k in ("va", "expr", "au")}


def _temporal(model: LoadedModel, emb: np.ndarray, face: np.ndarray, config: AnalysisConfig) -> dict[str, np.ndarray]:
    seq = np.zeros((len(face), emb.shape[1]), np.float32)
    seq[face] = emb
    out = model.model.predict_video(seq, face, window=config.lstm_window, stride=config.lstm_stride)
    return {k: v.numpy() for k, v in out.items()}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _expr_columns(probs: np.ndarray, prefix: str) -> dict[str, pd.Series]:
    """Int64 class (NA where probabilities are NaN) and the 8 probabilities."""
    valid = ~np.isnan(probs).any(axis=1)
    label = pd.array(np.where(valid, np.nan_to_num(probs).argmax(axis=1), 0), dtype="Int64")
    label[~valid] = pd.NA
    cols = {f"{prefix}expr": label}
    cols.update({f"{prefix}p_{e}": probs[:, i] for i, e in enumerate(EXPRESSIONS)})
    return cols


def _table(n: int, time_s: np.ndarray, face_frames: np.ndarray, face_prob: np.ndarray, face_box: np.ndarray,
           emb: dict[str, np.ndarray], loaded: LoadedModels, config: AnalysisConfig, timer: _Timer) -> pd.DataFrame:
    """Rows 0..n-1 from the subject's faces (face_frames ascending, one per frame) and their embeddings."""
    if config.fill not in ("interpolate", "none"):
        raise ValueError(f"fill must be 'interpolate' or 'none', got {config.fill!r}")
    t = time.perf_counter()
    fill = config.fill == "interpolate"
    face = np.zeros(n, bool)
    face[face_frames] = True
    any_face = bool(face.any())

    def per_frame(values: np.ndarray) -> np.ndarray:      # values on face rows -> (n, k) filled
        full = np.full((n, values.shape[1]), np.nan)
        full[face_frames] = values
        return _fill_rows(full, face, fill)

    def temporal_rows(values: np.ndarray) -> np.ndarray:   # LSTM output on every row -> as the fill says
        out = values.astype(np.float64)
        if not any_face:
            out[:] = np.nan
        elif not fill:
            out[~face] = np.nan
        return out

    nan = lambda k: np.full((n, k), np.nan)                                           # noqa: E731
    main = {}
    if "lstm" in loaded.models:
        if any_face:
            main = {k: temporal_rows(v) for k, v in
                    _temporal(loaded.models["lstm"], emb["ddamfn"], face, config).items()}
    elif "ddamfn" in loaded.models:
        main = {k: per_frame(v) for k, v in _heads(loaded.models["ddamfn"], emb["ddamfn"]).items()}
    va = main.get("va", nan(2))
    expr_p = _softmax(main["expr"]) if "expr" in main else nan(len(EXPRESSIONS))
    au_p = _sigmoid(main["au"]) if "au" in main else nan(len(AUS))

    cols = {"frame": np.arange(n, dtype=np.int64), "time_s": np.asarray(time_s, np.float64),
            "face": face, "face_prob": np.full(n, np.nan)}
    cols["face_prob"][face_frames] = face_prob
    boxes = nan(4)
    boxes[face_frames] = face_box
    cols.update({c: boxes[:, i] for i, c in enumerate(BOX_COLUMNS)})
    cols["filled"] = ~face & any_face & fill
    cols["valence"], cols["arousal"] = va[:, 0], va[:, 1]
    expr = _expr_columns(expr_p, "")
    cols["expr"] = expr.pop("expr")
    cols["expr_name"] = np.array([EXPRESSIONS[int(i)] if i is not pd.NA else None for i in cols["expr"]],
                                 dtype=object)
    cols.update(expr)
    cols.update({f"p_{a}": au_p[:, i] for i, a in enumerate(AUS)})
    decisions = pd.DataFrame(au_p >= loaded.au_thresholds, columns=list(AUS)).astype("Int64")
    decisions[np.isnan(au_p)] = pd.NA
    cols.update({a: decisions[a].array for a in AUS})
    cols.update(_clip_columns(loaded, config, emb, face, per_frame, temporal_rows, any_face))
    df = pd.DataFrame(cols)
    timer.add("heads", t)
    return df


def _clip_columns(loaded, config, emb, face, per_frame, temporal_rows, any_face) -> dict:
    """clip_<S>_expr and clip_<S>_p_<E> for each prompt set S (zero-shot), "adapter" (a trained
    adapter's own classes) and "lstm" (CLIP+LSTM)."""
    if not loaded.clip:
        return {}
    model = loaded.clip.model
    adapter = model if isinstance(model, ClipAdapter) else None
    zero_shot = adapter.clip if adapter else model
    raw = torch.as_tensor(emb["clip"]).to(loaded.device)
    cols = {}
    with torch.no_grad():
        for spec in config.prompt_sets:
            ps = prompt_set(spec)
            probs = zero_shot.zero_shot(raw, ps).cpu().numpy() if len(raw) else np.zeros((0, len(EXPRESSIONS)))
            cols.update(_expr_columns(per_frame(probs), f"clip_{ps.name}_"))
        features = raw
        if adapter:
            out = adapter.forward_embeddings(raw) if len(raw) else None
            probs = out["expr"].softmax(-1).cpu().numpy() if out else np.zeros((0, len(EXPRESSIONS)))
            cols.update(_expr_columns(per_frame(probs), "clip_adapter_"))
            features = out["embedding"] if out else raw
    if "clip-lstm" in loaded.models:
        n = len(face)
        probs = np.full((n, len(EXPRESSIONS)), np.nan)
        if any_face:
            out = _temporal(loaded.models["clip-lstm"], features.cpu().numpy(), face, config)
            probs = temporal_rows(_softmax(out["expr"]))
        cols.update(_expr_columns(probs, "clip_lstm_"))
    return cols


def clip_sets(df: pd.DataFrame) -> list[str]:
    """The S of the table's clip_<S>_expr columns, in order."""
    return [c[len("clip_"):-len("_expr")] for c in df.columns if c.startswith("clip_") and c.endswith("_expr")]


def _run_metadata(loaded: LoadedModels, config: AnalysisConfig, df: pd.DataFrame, seconds: dict) -> dict:
    from importlib.metadata import version

    n, n_face = len(df), int(df["face"].sum())
    main = "lstm" if "lstm" in loaded.models else "ddamfn" if "ddamfn" in loaded.models else None
    if n_face == 0:
        faceless = "empty (NaN): no face in any frame"
    elif config.fill == "interpolate":
        faceless = ("LSTM output over the face mask (filled=True)" if main == "lstm" else
                    "interpolated linearly from the nearest face frames (filled=True)")
    else:
        faceless = "empty (NaN)"
    run = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": _jsonable({**asdict(config), "prompt_sets": [prompt_set(p).name for p in config.prompt_sets]}),
        "device": str(loaded.device),
        "models": loaded.describe(),
        "untrained": any(m.info.untrained for m in loaded.models.values()),
        "main_outputs": main,
        "au_thresholds": loaded.au_thresholds.tolist(),
        "clip_sets": clip_sets(df),
        "frames": n,
        "face_frames": n_face,
        "faceless_predictions": faceless,
        "timings_s": {k: round(v, 4) for k, v in seconds.items()},
        "frames_per_s": round(n / seconds["total"], 2) if seconds["total"] > 0 else None,
        "versions": {p: version(p) for p in ("torch", "opencv-python-headless", "facenet-pytorch", "open_clip_torch")},
    }
    if n_face == 0:
        run["message"] = "no face was found in any frame: the table has face=False everywhere and no predictions"
    return run


__all__ = ["AnalysisConfig", "LoadedModels", "analyze_affwild2", "analyze_video", "clip_sets", "detection_settings",
           "load_models", "prediction_columns"]
