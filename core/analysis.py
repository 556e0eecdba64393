"""What an analysis is asked to do (AnalysisConfig), what it did (RunInfo) and what it produced (Analysis:
the per-frame table of core.table with its RunInfo and the CLIP embeddings a later step reuses).

RunInfo is typed: readers use its fields and properties, never its prose. It is written as the run JSON
(run.json beside a stored table, <out>.run.json of the command line, a run's details in the database) by
to_dict and read back by from_dict, so that stored analyses reopen.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.faces import Track
from core.jsonsafe import jsonable
from core.models.clip import DEFAULT_MODEL as CLIP_MODEL, prompt_set
from core import registry
from core.registry import with_encoders
from core.table import untrained_column
from core.video import VideoInfo

FILL_CHOICES = ("interpolate", "none")


@dataclass(frozen=True)
class AnalysisConfig:
    """What to run and how. models: card names of core.registry ("ddamfn", "lstm" (DDAMFN+LSTM), "clip"
    (zero-shot per prompt set, or a trained adapter when its weights are given), "clip-lstm"); a model
    named in `weights` is run even if not listed, and the encoders the chosen models read are added.
    weights: model name -> spec (core.weights); absent = random weights, reported as untrained.
    prompt_sets: PromptSets or their names. detect_every / min_face_px: None picks core.faces' defaults
    (detect every k-th frame; the smallest face found, in pixels of the frame, which sets the detection copy's
    size); detect_size: instead, a fixed longest side for the detection copy; batched_detection: MTCNN stages
    with batched crops (core.faces); ddamfn_every / clip_every: the encoder runs on every k-th frame only and
    the embeddings between are interpolated (default 1: every frame); fill: "interpolate" or "none" for
    faceless frames."""

    models: tuple[str, ...] = ("ddamfn",)
    weights: dict[str, str] = field(default_factory=dict)
    prompt_sets: tuple = ("basic",)
    clip_model: str = CLIP_MODEL
    device: str = "auto"
    batch_size: int = 32             # frames per decoded batch (fewer for large frames, core.pipeline.BATCH_BYTES)
    detect_every: int | None = None
    min_face_px: float | None = None
    detect_size: int | None = None
    min_face_prob: float = 0.9
    batched_detection: bool = False
    ddamfn_every: int = 1
    clip_every: int = 1
    max_faces: int = 5               # faces per frame that get embeddings (the largest)
    track: int | None = None         # the subject's track id; None: the largest face over the video
    fill: str = "interpolate"
    max_frames: int | None = None    # analyse only the first frames (benchmarks, previews)

    def model_names(self) -> tuple[str, ...]:
        return with_encoders([*self.models, *self.weights])

    def check(self) -> None:
        for name in ("ddamfn_every", "clip_every", "detect_every", "min_face_px", "detect_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.fill not in FILL_CHOICES:
            raise ValueError(f"fill must be one of {', '.join(FILL_CHOICES)}, got {self.fill!r}")
        self.model_names()

    def prompt_set_names(self) -> list[str]:
        return [p if isinstance(p, str) else prompt_set(p).name for p in self.prompt_sets]

    def to_dict(self) -> dict:
        return jsonable({**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                         "prompt_sets": self.prompt_set_names()})

    @classmethod
    def from_dict(cls, data: dict) -> "AnalysisConfig":
        """The config of a run JSON (prompt sets by name: resolve saved ones before loading models)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("models", "prompt_sets"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


@dataclass(frozen=True)
class ModelRun:
    """One model of a run: where its weights came from and which of its outputs are random."""

    source: str                      # weights spec, or "random"
    untrained: bool
    tasks: tuple[str, ...]
    untrained_tasks: tuple[str, ...] = ()
    metadata: dict = field(default_factory=dict)     # the checkpoint's


@dataclass(frozen=True)
class Stride:
    """An encoder's frame stride and how many of the subject's face frames it ran on."""

    every: int
    scored_frames: int
    face_frames: int


@dataclass(frozen=True)
class Detection:
    """Face detection of a video run: the detector's settings (core.faces.FaceDetector.settings), every
    k-th frame, how many frames it ran on, and how many faces per frame got embeddings."""

    settings: dict
    every: int
    detected_frames: int
    max_faces: int

    BETWEEN = ("boxes interpolated from the detected frames on either side (box_detected=False); where those "
               "disagree, detected too")


@dataclass(frozen=True)
class Source:
    """What was analysed: a video file, or an Aff-Wild2 video's aligned face images."""

    kind: str                            # "video" or "affwild2"
    path: str | None = None              # the video file
    root: str | None = None              # the Aff-Wild2 folder
    video: str | None = None             # the Aff-Wild2 video id
    splits: dict = field(default_factory=dict)   # Aff-Wild2: task -> split


# How frames without the subject's face got predictions (RunInfo.faceless), in words for people.
FACELESS = {
    "no-face": "empty (NaN): no face in any frame",
    "lstm": "LSTM output over the face mask (filled=True)",
    "interpolated": "interpolated linearly from the nearest face frames (filled=True)",
    "empty": "empty (NaN)",
}


def faceless_rule(face_frames: int, fill: bool, outputs_from: dict[str, str]) -> str:
    """The FACELESS key of a run from what made its main output (expression, else VA, else AU, else its
    one output): a temporal model's covers faceless frames itself (core.predict), a per-frame model's is
    interpolated. The app's analyses and `training predict`'s run JSON both say it from here."""
    main = next((outputs_from[t] for t in ("expr", "va", "au") if t in outputs_from),
                next(iter(outputs_from.values()), None))
    temporal = main is not None and registry.card(main).architecture == "lstm"
    return "no-face" if face_frames == 0 else "empty" if not fill else "lstm" if temporal else "interpolated"


NO_FACE_NOTE = "no face was found in any frame: the table has face=False everywhere and no predictions"


@dataclass(frozen=True)
class RunInfo:
    """How one analysis ran: its config, device, models, outputs, timings, frames, the faceless rule,
    encoder strides, face detection and tracks, and notes."""

    config: AnalysisConfig
    device: str
    models: dict[str, ModelRun]          # card name -> model
    outputs_from: dict[str, str]         # output (va, expr, au, clip_<set>, ...) -> card name
    au_thresholds: tuple[float, ...]     # of the checkpoint whose heads give the AU outputs
    windows: dict[str, dict]             # temporal card -> {window, stride}
    expr_outputs: tuple[str, ...]        # the table's expression outputs beside expr (core.table), in order
    frames: int
    face_frames: int
    faceless: str                        # a key of FACELESS
    timings: dict[str, float]            # stage -> seconds, with "total"
    source: Source
    fps: float
    fps_source: str                      # "video", "raw video <path>" or "assumed" (Aff-Wild2 without it)
    video: VideoInfo | None = None
    detection: Detection | None = None   # None: Aff-Wild2 aligned images
    strides: dict[str, Stride] = field(default_factory=dict)     # encoder -> its stride
    interpolated: dict[str, int] = field(default_factory=dict)   # what was interpolated, on how many frames
    tracks: tuple[Track, ...] = ()
    track: int | None = None             # the subject's track
    track_from_user: bool = False        # False: the largest face area summed over frames
    unreadable_images: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def untrained(self) -> bool:
        return any(m.untrained for m in self.models.values())

    def untrained_outputs(self) -> dict[str, bool]:
        """output -> whether it comes from random weights (the task's head, or the whole model)."""
        out = {}
        for output, card in self.outputs_from.items():
            model = self.models[card]
            out[output] = model.untrained and (output not in model.tasks or output in model.untrained_tasks)
        return out

    @property
    def main_outputs(self) -> str | None:
        """The card whose outputs fill the expression column (else va, au): the LSTM, or DDAMFN where the
        LSTM's heads are random and DDAMFN's trained (core.predict.LoadedModels.task_sources)."""
        return next((self.outputs_from[t] for t in ("expr", "va", "au") if t in self.outputs_from),
                    next((n for n in ("lstm", "ddamfn") if n in self.models), None))

    @property
    def no_face(self) -> bool:
        return self.face_frames == 0

    @property
    def faceless_predictions(self) -> str:
        return FACELESS[self.faceless]

    @property
    def frames_per_s(self) -> float | None:
        total = self.timings.get("total", 0.0)
        return round(self.frames / total, 2) if total > 0 else None

    @property
    def strided(self) -> bool:
        """Some encoder skipped face frames (their embeddings are interpolated)."""
        return any(s.every > 1 for s in self.strides.values())

    @property
    def embedding_note(self) -> str | None:
        """The encoder strides in words (None when the run had no strides: Aff-Wild2 images)."""
        if not self.strides:
            return None
        strided = {name: s.every for name, s in self.strides.items() if s.every > 1}
        if not strided:
            return "every face frame was encoded"
        nth = lambda k: f"{k}{'nd' if k == 2 else 'rd' if k == 3 else 'th'}"     # noqa: E731
        return ("encoders ran on a frame stride (" + ", ".join(f"{n} every {nth(k)} frame" for n, k in strided.items())
                + ", and on faces no recently encoded face overlapped); the face frames between have embeddings "
                "interpolated from the encoded ones (" + ", ".join(f"{n}_scored=False" for n in strided) + ")")

    def to_dict(self) -> dict:
        """The run JSON (also what people read: the faceless rule and strides in words beside the fields)."""
        return jsonable({
            "created": self.created, "source": dataclasses.asdict(self.source), "config": self.config.to_dict(),
            "device": self.device, "models": {n: dataclasses.asdict(m) for n, m in self.models.items()},
            "untrained": self.untrained, "outputs_from": self.outputs_from, "main_outputs": self.main_outputs,
            "au_thresholds": self.au_thresholds, "windows": self.windows, "expr_outputs": self.expr_outputs,
            "frames": self.frames, "face_frames": self.face_frames, "faceless": self.faceless,
            "faceless_predictions": self.faceless_predictions, "timings_s": self.timings,
            "frames_per_s": self.frames_per_s, "versions": self.versions, "fps": self.fps,
            "fps_source": self.fps_source, "video": self.video.as_dict() if self.video else None,
            "detection": None if self.detection is None else {
                **self.detection.settings, "detect_every": self.detection.every,
                "detected_frames": self.detection.detected_frames, "max_faces": self.detection.max_faces,
                "between_detections": Detection.BETWEEN},
            "tracks": [t.as_dict() for t in self.tracks], "track": self.track,
            "track_chosen_by": "user" if self.track_from_user else "largest face area summed over frames",
            "embedding_strides": {n: dataclasses.asdict(s) for n, s in self.strides.items()},
            "embedding_note": self.embedding_note, "interpolated": self.interpolated,
            "unreadable_images": self.unreadable_images, "notes": self.notes})

    @classmethod
    def from_dict(cls, data: dict) -> "RunInfo":
        """The RunInfo of a run JSON written by to_dict."""
        detection = data.get("detection")
        if detection is not None:
            fields = ("detect_every", "detected_frames", "max_faces", "between_detections")
            detection = Detection({k: v for k, v in detection.items() if k not in fields}, detection["detect_every"],
                                  detection["detected_frames"], detection["max_faces"])
        return cls(
            config=AnalysisConfig.from_dict(data["config"]), device=data["device"],
            models={n: ModelRun(m["source"], m["untrained"], tuple(m["tasks"]), tuple(m.get("untrained_tasks", ())),
                                m.get("metadata") or {}) for n, m in data["models"].items()},
            outputs_from=dict(data["outputs_from"]), au_thresholds=tuple(data["au_thresholds"]),
            windows=dict(data["windows"]), expr_outputs=tuple(data["expr_outputs"]), frames=data["frames"],
            face_frames=data["face_frames"], faceless=data["faceless"], timings=dict(data["timings_s"]),
            source=Source(**data["source"]), fps=data["fps"], fps_source=data["fps_source"],
            video=VideoInfo(**data["video"]) if data.get("video") else None, detection=detection,
            strides={n: Stride(**s) for n, s in data.get("embedding_strides", {}).items()},
            interpolated=dict(data.get("interpolated", {})),
            tracks=tuple(Track(**{**t, "box": tuple(t["box"])}) for t in data.get("tracks", ())),
            track=data.get("track"), track_from_user=data.get("track_chosen_by") == "user",
            unreadable_images=tuple(data.get("unreadable_images", ())), notes=tuple(data.get("notes", ())),
            created=data["created"], versions=dict(data.get("versions", {})))


@dataclass
class Analysis:
    """What one analysis produced: the table, how it ran, and what a later step reuses without decoding
    the video again: the subject's face boxes per frame (in the table) and the CLIP image embeddings of
    its face frames. notes: what the page says beside it (ground truth, storage)."""

    table: pd.DataFrame
    run: RunInfo
    clip_embeddings: np.ndarray | None = None        # (face frames, D) raw CLIP, in frame order
    notes: list[str] = field(default_factory=list)

    def export_table(self) -> pd.DataFrame:
        """The table as downloaded: an untrained_<output> column per output, so that a CSV says which of
        its outputs come from random weights (a trained DDAMFN+LSTM beside a random CLIP is not untrained)."""
        out = self.table.copy()
        for output, random in self.run.untrained_outputs().items():
            out[untrained_column(output)] = random
        return out

    def run_json(self) -> str:
        return json.dumps(self.run.to_dict(), indent=1)

    def save(self, folder) -> Path:
        """table.parquet, run.json and clip.npy in `folder`, each written atomically; when one cannot be
        written (a full disk) the others written here are removed too: no half of an analysis stays."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        parts = {"table.parquet": lambda f: self.table.to_parquet(f, index=False),
                 "run.json": lambda f: f.write(self.run_json().encode())}
        if self.clip_embeddings is not None:
            parts["clip.npy"] = lambda f: np.save(f, self.clip_embeddings.astype(np.float32))
        written = []
        try:
            for name, write in parts.items():
                _atomic(folder / name, write)
                written.append(folder / name)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        return folder

    @classmethod
    def load(cls, folder) -> "Analysis":
        """The analysis saved in `folder`; StaleAnalysis when an older AffectLens wrote its run.json (its
        run record lacks fields this one needs: the video is analysed again, nothing else is lost)."""
        folder = Path(folder)
        clip = folder / "clip.npy"
        try:
            run = RunInfo.from_dict(json.loads((folder / "run.json").read_text()))
        except (KeyError, TypeError) as err:
            raise StaleAnalysis(f"{folder.name}: stored by an older AffectLens ({err} missing or changed in its "
                                "run record)") from None
        return cls(pd.read_parquet(folder / "table.parquet"), run, np.load(clip) if clip.exists() else None)


class StaleAnalysis(ValueError):
    """A stored analysis in an older format: analyse the video again."""


def _atomic(path: Path, write) -> None:
    """write(binary file) into a temporary file, then put it in place: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
