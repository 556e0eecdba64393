"""Analysing a video and keeping the analysis: the video to analyse (upload or Aff-Wild2) with its
annotations read once, the pipeline settings for the page's model choices, and the analyse-or-reuse
workflow: an analysis already stored for the same video, models and weights is reopened instead of run
again; a new one is stored with the video's annotations before the ground truth is joined, so that
every tab shows the database's effective labels. No Gradio here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from core import pipeline
from core.affwild2 import AnnotationError, AnnotationTooLong, read_annotation
from core.models.clip import prompt_set
from core.registry import by_label, label, labels, with_encoders
from core.settings import KEPT_VIDEOS, kept_video
from core.analysis import Analysis, StaleAnalysis
from core.table import LENGTH_TOLERANCE, frame_rate, ground_truth_from_labels
from core.video import VideoError
from core.weights import WeightsError
from db import repo
from db.errors import CANNOT_WRITE_MESSAGE, unwritable
from webapp import results
from webapp.cleanup import ANALYSES
from webapp.context import Context
from webapp.inputs import InputError, annotation_files, check_video, video_message
from webapp.labels import Labels
from webapp.models import Models
from webapp.state import OpenVideo
from webapp.summary import base_names, public_run, run_summary

MODEL_CHOICES = labels()
DEFAULT_MODELS = (label("lstm"), label("clip"))
REUSED = "This video was analysed before with the same models and weights: the stored analysis is shown."


@dataclass(frozen=True)
class Annotation:
    """One annotation file of a video, read once."""

    task: str
    path: Path
    labels: pd.DataFrame             # as core.affwild2.read_annotation reads it (index "frame")

    @property
    def what(self) -> str:
        return f"{self.path.name} ({self.task.upper()})"


@dataclass
class VideoItem:
    """A video to analyse and its annotations."""

    name: str                                   # Aff-Wild2 video id, or the upload's file name
    path: Path | None = None                    # the video file (None: Aff-Wild2 aligned images)
    annotations: dict[str, Annotation] = field(default_factory=dict)   # task -> its annotation

    @cached_property
    def key(self) -> str:
        """The video's database key: the Aff-Wild2 id, or the upload's content hash (read once per item:
        the run key and the stored analysis both need it)."""
        return self.name if self.path is None else repo.upload_key(self.path)


@dataclass(frozen=True)
class Partial:
    """Frames done so far while a video is analysed, and their table."""

    done: int
    total: int
    table: pd.DataFrame


@dataclass(frozen=True)
class Analysed:
    """An analysis ready for the page: the open video, its run summary and the files to download."""

    video: OpenVideo
    summary: str
    downloads: list[Path]


def _read(task: str, path, n_frames: int) -> Annotation:
    """An annotation file read once; refused when it has more lines than the video has frames (plus the
    tolerance), at its first line too many."""
    path = Path(path)
    try:
        labels = read_annotation(path, task, max_frames=n_frames + LENGTH_TOLERANCE)
    except AnnotationTooLong:
        raise AnnotationError(f"{path.name} ({task.upper()})", None, f"more than {n_frames + LENGTH_TOLERANCE} "
                              f"annotated frames, but the video has {n_frames}: this annotation does not "
                              "belong to this video") from None
    return Annotation(task, path, labels)


class Analyses:
    def __init__(self, ctx: Context, models: Models, labels: Labels):
        self.ctx, self.models, self.labels = ctx, models, labels
        self.config = ctx.config
        self._overview: str | None = None
        self._lock = threading.Lock()       # the weights overview, made once

    # -- choosing a video -------------------------------------------------------------------------------
    def affwild2_item(self, video: str | None) -> VideoItem:
        index = self.ctx.affwild2_index()
        if index is None:
            raise InputError("No Aff-Wild2 folder is configured (AFFECTLENS_AFFWILD2_ROOT).")
        if not video or video not in self.ctx.affwild2_videos():
            raise InputError("Choose an Aff-Wild2 video from the list.")
        try:
            annotations = {task: Annotation(task, Path(path), read_annotation(path, task)) for task, path in
                           ((t, index.annotation_path(t, s, video)) for t, s in index.splits(video).items())}
        except AnnotationError as err:
            raise InputError(f"Annotation file problem: {err}") from None
        return VideoItem(name=video, annotations=annotations)

    def upload_item(self, video: str | None, annotation_paths: list[str] | None) -> VideoItem:
        """An uploaded video within the limits, with its annotation files read once; an annotation whose
        length does not match the video's frames (counted from the container's packets) is refused now,
        before any model runs."""
        info = check_video(video, self.config.max_upload_mb, self.config.max_duration_s, self.config.max_frames)
        try:
            annotations = {task: _read(task, path, info.frame_count)
                           for task, path in annotation_files(annotation_paths).items()}
            for a in annotations.values():
                ground_truth_from_labels(a.labels, info.frame_count, a.what)
        except AnnotationError as err:
            raise InputError(f"Annotation file problem: {err}") from None
        path = Path(info.path)
        return VideoItem(name=path.name, path=path, annotations=annotations)

    def analysis_config(self, choices: list[str], prompt_set_name: str | None,
                        model_id=None) -> pipeline.AnalysisConfig:
        """The pipeline settings for the page's model choices (core.registry labels), with the weights of
        a registered model (the models table) in place of the default for the card it runs as."""
        if not choices:
            raise InputError("Choose at least one model.")
        try:
            names = [by_label(c).name for c in choices]
        except ValueError as err:
            raise InputError(str(err)) from None
        return self.model_config(names, prompt_set_name, model_id)

    def model_config(self, names, prompt_set_name: str | None = None, model_id=None) -> pipeline.AnalysisConfig:
        """The pipeline settings for model cards (core.registry names) with the app's weights."""
        models = with_encoders(names)
        weights = {name: spec for name, spec in self.ctx.model_weights().items() if spec and name in models}
        if model_id:
            card, path = self.models.registered_weights(model_id)
            if card not in models:
                raise InputError(f"Model {model_id} runs as {label(card)}: tick it among the models.")
            weights[card] = path
        sets = (self.ctx.prompt_set_object(prompt_set_name or "basic"),) if "clip" in models else ()
        return pipeline.AnalysisConfig(models=models, weights=weights, prompt_sets=sets,
                                       clip_model=self.config.clip_model, device=self.config.device)

    # -- the workflow -----------------------------------------------------------------------------------
    def analyse_or_reuse(self, item: VideoItem, config: pipeline.AnalysisConfig, owner: str | None,
                         out_dir: Path, run: Callable | None = None, progress=None) -> Iterator[Partial | Analysed]:
        """A generator: Partial tables while the video is analysed, then the Analysed video. The stored
        analysis of the same video, models and weights is reopened at once instead. `run`: what runs the
        models (Analyses.analyse, on the GPU when the page has one)."""
        run_key, weight_keys = self.run_key(item, config)
        stored, key = self.stored_analysis(run_key), item.key
        if stored is not None:
            analysis = stored
            notes = self.store(item, analysis) + [REUSED]
        else:
            for step in (run or self.analyse)(item, config, progress):
                if isinstance(step, Analysis):
                    analysis = step
                    break
                yield step
            try:
                notes = self.store(item, analysis, run_key, weight_keys, owner)
            except Exception as err:
                if not unwritable(err):
                    raise
                key, notes = None, [f"{CANNOT_WRITE_MESSAGE} The analysis is shown but not stored: it cannot be "
                                    "reviewed, and analysing it again runs the models again."]
        yield self.present(analysis, key, item.name, item.path, owner, out_dir, notes)

    def present(self, analysis: Analysis, key: str | None, name: str, path, owner: str | None, out_dir: Path,
                notes: list[str]) -> Analysed:
        """An analysis as the page shows it, just analysed or opened from the database (one way, so the two
        cannot differ): the table with the effective labels, the run summary and the download files."""
        table = self.labels.labelled(key, analysis.table) if key else analysis.table
        video = OpenVideo.of(analysis, table, key, name, path, owner)
        try:
            downloads = results.write_downloads(Analysis(table, public_run(analysis.run), analysis.clip_embeddings),
                                                Path(name).stem, out_dir)
        except OSError as err:
            if not unwritable(err):
                raise
            downloads, notes = [], [*notes, "The server cannot write the download files: there are none."]
        return Analysed(video, run_summary(analysis.run, name, notes), downloads)

    def analyse(self, item: VideoItem, config: pipeline.AnalysisConfig, progress=None):
        """A generator: Partial tables every few seconds while the video is analysed with `config`
        (core.pipeline's steps; `progress` hears (done, total) after every batch), then the Analysis (on
        ZeroGPU inside the GPU worker, which streams a generator's updates)."""
        loaded = self.ctx.loaded_models(config)
        steps = (pipeline.affwild2_steps(self.ctx.affwild2_index(), item.name, config, loaded=loaded)
                 if item.path is None else pipeline.video_steps(item.path, config, loaded=loaded))
        try:
            for step in steps:
                if isinstance(step, Analysis):
                    analysis = step
                    break
                if progress:
                    progress(step.done, step.total)
                if step.table is not None:
                    yield Partial(step.done, step.total, step.table)
        except VideoError as err:
            raise InputError(video_message(err, item.path)) from None
        if analysis.run.no_face:
            raise InputError(f"No face was found in any of the {len(analysis.table)} frames of {item.name}: there "
                             "is nothing to analyse. Try a clip where the face is visible.")
        yield analysis

    def weights_overview(self) -> str:
        """For the page before any analysis: where each model's weights came from and whether they are
        trained, as the run summary says it. The page's models are loaded once for this, on the CPU (a
        ZeroGPU Space has a GPU only inside an analysis), and let go."""
        with self._lock:
            if self._overview is None:
                self._overview = self._describe_weights()
            return self._overview

    def _describe_weights(self) -> str:
        config = dataclasses.replace(self.analysis_config(list(MODEL_CHOICES), None), device="cpu")
        try:
            models = pipeline.load_models(config).describe()
        except WeightsError as err:
            return f"The model weights could not be loaded: {err}"
        return "\n".join(["**Model weights**", "", *results.weights_table(base_names(models))])

    def clip_phrases(self, video: OpenVideo) -> dict[str, dict[str, list[str]]]:
        """Prompt set name -> expression -> its class phrases, for the analysis's CLIP prompt sets."""
        out = {}
        for name in video.run.config.prompt_set_names():
            try:
                out[name] = {e: list(p) for e, p in self.ctx.prompt_set_object(name).classes.items()}
            except InputError:            # a saved set deleted since: its phrases are unknown
                continue
        return out

    # -- stored analyses --------------------------------------------------------------------------------
    def run_key(self, item: VideoItem, config: pipeline.AnalysisConfig) -> tuple[str, dict[str, str]]:
        """The content key of an analysis (video content, models, the content of their weights, settings)
        under which it is stored and found again, and the weights' content keys."""
        loaded = self.ctx.loaded_models(config)
        weight_keys = loaded.weight_keys()
        settings = {"video": item.key, "weights": weight_keys, "clip_model": config.clip_model, "fill": config.fill,
                    "prompt_sets": [prompt_set(p).key for p in config.prompt_sets],
                    "detection": pipeline.detection_settings(config),
                    "strides": pipeline.encoder_strides(config, pipeline.crop_sizes(loaded))}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
        return digest, weight_keys

    def stored_analysis(self, run_key: str) -> Analysis | None:
        """A stored Analysis, or None (never analysed, or its files are gone)."""
        with self.ctx.read() as s:
            run = repo.find_run(s, run_key)
            folder = run.artifacts_dir if run is not None else None
        try:
            return self._load_stored(folder) if folder else None
        except StaleAnalysis:             # an older AffectLens stored it: analyse again, store anew
            return None

    def _load_stored(self, folder: str) -> Analysis | None:
        """The Analysis kept in `folder` (relative to the data directory), or None when its files are gone;
        StaleAnalysis when an older AffectLens wrote it."""
        path = self.config.data_dir / folder
        return Analysis.load(path) if (path / "table.parquet").is_file() else None

    def store(self, item: VideoItem, analysis: Analysis, run_key: str | None = None, weight_keys=None,
              user: str | None = None) -> list[str]:
        """Register the video and its annotations (cut to its frames) and, for a new analysis (run_key),
        keep it under the data directory (table, run metadata, CLIP embeddings, a copy of an uploaded
        video for frame views) and register the run. Returns notes for the page."""
        table, run = analysis.table, analysis.run
        n, details = len(table), run.to_dict()
        notes = []
        try:
            for a in item.annotations.values():
                notes += ground_truth_from_labels(a.labels, n, a.what)[1]
        except AnnotationError as err:
            raise InputError(f"Annotation file problem: {err}") from None
        folder = Path(ANALYSES) / run_key[:32] if run_key else None
        if folder is not None:
            analysis.save(self.config.data_dir / folder)
            if item.path is not None:
                self.stored_video(item.key, item.path)

        def work(s):
            video = repo.register_video(s, item.key, n, frame_rate(table), name=item.name)
            for a in item.annotations.values():
                repo.import_annotations(s, video, a.task, a.path, labels=a.labels.iloc[:n])
            if folder is not None:
                repo.add_prediction_run(
                    s, video, models=details["models"], device=run.device, table_path=str(folder / "table.parquet"),
                    untrained=run.untrained, weights=dict(run.config.weights), details=details, run_key=run_key,
                    artifacts_dir=str(folder), weight_hashes=weight_keys, created_by=user)
        self.ctx.write(work)
        return notes

    def stored_video(self, key: str, source: Path | None = None) -> Path | None:
        """The kept copy of an uploaded video (made from `source` the first time), so that any reviewer can
        see its frames after the uploader's session is gone; None for Aff-Wild2 videos."""
        found = kept_video(self.config.data_dir, key)
        if found or source is None or not key.startswith("sha256:"):
            return found
        target = self.config.data_dir / KEPT_VIDEOS / (key.removeprefix("sha256:") + Path(source).suffix.lower())
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name("." + target.name + ".tmp")
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target

    def open_video(self, key: str, owner: str | None, out_dir: Path) -> Analysed:
        """A stored video's newest analysis (no analysing again), for any reviewer, shown as it was to the
        reviewer who analysed it (Analyses.present)."""
        with self.ctx.read() as s:
            try:
                run = repo.latest_run(s, key)
            except repo.ValidationError as err:
                raise InputError(str(err)) from None
            if run is None or not run.artifacts_dir:
                raise InputError(f"{run.video.name if run else key} has no stored analysis: analyse it first.")
            folder, name = run.artifacts_dir, run.video.name
            by = f" by {run.created_by.name}" if run.created_by else ""
            note = f"Opened from the database: analysed{by} on {run.created_at:%Y-%m-%d %H:%M} UTC."
        try:
            analysis = self._load_stored(folder)
        except StaleAnalysis:
            raise InputError(f"The stored analysis of {name} was made by an older AffectLens: analyse it again "
                             "(its flags, corrections and annotations are kept).") from None
        if analysis is None:
            raise InputError(f"The stored analysis of {name} is missing from the data folder: analyse it again.")
        return self.present(analysis, key, name, self.stored_video(key), owner, out_dir, [note])
