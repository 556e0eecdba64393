"""Analysing a video and keeping the analysis: the video to analyse (upload or Aff-Wild2), the pipeline
settings for the page's model choices, the analysis with its ground truth, the stored analyses and their
frames and face crops. No Gradio here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from core import pipeline
from core.affwild2 import AnnotationError, AnnotationTooLong, read_annotation
from core.attention import face_attention, is_flat, overlay
from core.faces import crop_face, resize_face
from core.models.clip import prompt_set
from core.models.ddamfn import INPUT_SIZE as DDAMFN_SIZE
from core.registry import by_label, label, labels, with_encoders
from core.analysis import Analysis, RunInfo
from core.table import (BOX_COLUMNS, BOX_DETECTED, FACE, FRAME, attach_ground_truth, frame_rate,
                        ground_truth_from_files, ground_truth_from_labels)
from core.video import FrameCache, VideoError, read_frames
from db.limits import FRAME_CACHE_MB
from core.weights import WeightsError
from db import repo
from webapp import results
from webapp.context import Context
from webapp.inputs import InputError, annotation_files, check_video, video_message
from webapp.models import Models

MODEL_CHOICES = labels()
DEFAULT_MODELS = (label("lstm"), label("clip"))
CROP_SIZE = 224
GALLERY_MAX = 24      # crops shown for a segment; longer segments are sampled evenly
FULL_FRAME_WIDTH = 640  # the whole frame in the frame view is shrunk to at most this width
BOX_COLORS = {"detected": (40, 200, 40), "interpolated": (255, 160, 0)}   # RGB, as the timeline's shading


@dataclass
class FrameView:
    """What the page shows of one frame."""

    crop: np.ndarray | None              # the face crop (CROP_SIZE), or without a face the shrunk frame
    full: np.ndarray | None              # the whole frame with the face box drawn (None: Aff-Wild2 images)
    model_crop: np.ndarray | None        # the 112x112 crop DDAMFN sees (None without a face)
    box: str | None                      # "detected" / "interpolated" (by the tracker), None without a box


@dataclass
class VideoItem:
    """A video to analyse and where its annotation comes from."""

    name: str                                   # Aff-Wild2 video id, or the upload's file name
    path: Path | None = None                    # the video file (None: Aff-Wild2 aligned images)
    annotation_files: dict[str, str] = field(default_factory=dict)   # task -> uploaded file

    @cached_property
    def key(self) -> str:
        """The video's database key: the Aff-Wild2 id, or the upload's content hash (read once per item:
        the run key and the stored analysis both need it)."""
        return self.name if self.path is None else repo.upload_key(self.path)


class Analyses:
    def __init__(self, ctx: Context, models: Models):
        self.ctx, self.models = ctx, models
        self.config = ctx.config
        self._overview: str | None = None
        self._lock = threading.Lock()
        self._decoded = FrameCache(FRAME_CACHE_MB * 2**20)

    # -- choosing a video -------------------------------------------------------------------------------
    def affwild2_item(self, video: str | None) -> VideoItem:
        if self.ctx.affwild2_index() is None:
            raise InputError("No Aff-Wild2 folder is configured (AFFECTLENS_AFFWILD2_ROOT).")
        if not video or video not in self.ctx.affwild2_videos():
            raise InputError("Choose an Aff-Wild2 video from the list.")
        return VideoItem(name=video)

    def upload_item(self, video: str | None, annotation_paths: list[str] | None) -> VideoItem:
        """An uploaded video within the limits, with its annotation files; an annotation whose length does
        not match the video's frames (counted from the container's packets) is refused now, before any
        model runs."""
        info = check_video(video, self.config.max_upload_mb, self.config.max_duration_s, self.config.max_frames)
        files = annotation_files(annotation_paths)
        try:
            if files:      # the exact count, from the container's packets: the same check as after the analysis
                ground_truth_from_files(files, info.frame_count)
        except AnnotationError as err:
            raise InputError(f"Annotation file problem: {err}") from None
        path = Path(info.path)
        return VideoItem(name=path.name, path=path, annotation_files=files)

    def analysis_config(self, choices: list[str], prompt_set_name: str | None,
                        model_id=None) -> pipeline.AnalysisConfig:
        """The pipeline settings for the page's model choices (core.registry labels), with the weights of
        a registered model (the models table) in place of the default for the card it runs as."""
        if not choices:
            raise InputError("Choose at least one model.")
        try:
            models = with_encoders([by_label(c).name for c in choices])
        except ValueError as err:
            raise InputError(str(err)) from None
        weights = {name: spec for name, spec in self.ctx.model_weights().items() if spec and name in models}
        if model_id:
            card, path = self.models.registered_weights(model_id)
            if card not in models:
                raise InputError(f"Model {model_id} runs as {label(card)}: tick it among the models.")
            weights[card] = path
        sets = (self.ctx.prompt_set_object(prompt_set_name or "basic"),) if "clip" in models else ()
        return pipeline.AnalysisConfig(models=models, weights=weights, prompt_sets=sets,
                                       clip_model=self.config.clip_model, device=self.config.device)

    def analyse(self, item: VideoItem, config: pipeline.AnalysisConfig, progress=None):
        """A generator: (frames done, total, table so far) every few seconds while the video is analysed
        with `config` (analysis_config; core.pipeline's steps, `progress` called with (done, total) after
        every batch), then the Analysis, its table with the ground truth attached and notes for the page
        (on ZeroGPU inside the GPU worker, which streams a generator's updates)."""
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
                    yield step.done, step.total, step.table
        except VideoError as err:
            raise InputError(video_message(err, item.path)) from None
        table = analysis.table
        if not table[FACE].any():
            raise InputError(f"No face was found in any of the {len(table)} frames of {item.name}: there is "
                             "nothing to analyse. Try a clip where the face is visible.")
        truth, analysis.notes = self.ground_truth(item, len(table))
        analysis.table = attach_ground_truth(table, truth)
        yield analysis

    def ground_truth(self, item: VideoItem, n_frames: int) -> tuple[pd.DataFrame | None, list[str]]:
        """gt_ columns for the item's frames, and notes for the page."""
        try:
            if item.path is None:
                labels = self.ctx.affwild2_index().video_frames(item.name)
                return ground_truth_from_labels(labels.set_index("frame").drop(columns="image_path"),
                                                n_frames, item.name)
            if item.annotation_files:
                return ground_truth_from_files(item.annotation_files, n_frames)
        except AnnotationError as err:
            raise InputError(f"Annotation file problem: {err}") from None
        return None, []

    @staticmethod
    def run_summary(run: RunInfo, name: str, notes: list[str]) -> str:
        """Which weights ran, on what, how fast; `untrained` in plain words when weights are random."""
        lines = [f"**{name}**: {run.frames} frames, {run.face_frames} with a face; ran on `{run.device}` in "
                 f"{run.timings.get('total', 0):.1f} s ({run.frames_per_s or 0:.1f} frames/s).", "",
                 *results.weights_table(run.models)]
        if run.untrained:
            lines += ["", "Outputs from **untrained** models come from random weights: they show how the app "
                          "works, not what the face expresses."]
        if run.face_frames < run.frames:
            lines += ["", f"Frames without a face (shaded grey): {run.faceless_predictions}."]
        if run.embedding_note:
            lines += ["", f"Face frames: {run.embedding_note}."]
        lines += [f"\n{note}" for note in notes]
        return "\n".join(lines)

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
        return "\n".join(["**Model weights**", "", *results.weights_table(models)])

    # -- frames and crops -------------------------------------------------------------------------------
    def face_crops(self, state: dict, frames: list[int]) -> dict[int, np.ndarray]:
        """Face crops (or, without a face, the shrunk whole frame) of the given frames."""
        table = state["table"].set_index(FRAME)
        frames = [f for f in frames if f in table.index]
        if state["path"] is None:   # Aff-Wild2: the aligned face images themselves
            return self._aligned_images(state, frames)
        images = self._frames(state["path"], frames)
        out = {}
        for f, image in images.items():
            if table.loc[f, FACE]:
                out[f] = crop_face(image, self._box(table, f), CROP_SIZE)
            else:
                out[f] = _shrink(image, CROP_SIZE)
        return out

    def frame_view(self, state: dict, frame: int) -> FrameView:
        """The crop, the whole frame with its face box, the crop DDAMFN sees and how the box was found."""
        table = state["table"].set_index(FRAME)
        if frame not in table.index:
            return FrameView(None, None, None, None)
        face = bool(table.loc[frame, FACE])
        if state["path"] is None:
            image = self._aligned_images(state, [frame]).get(frame)
            model_crop = resize_face(image, DDAMFN_SIZE) if image is not None and face else None
            return FrameView(image, None, model_crop, None)
        image = self._frames(state["path"], [frame]).get(frame)
        if image is None:
            return FrameView(None, None, None, None)
        if not face:
            return FrameView(_shrink(image, CROP_SIZE), _shrink(image, FULL_FRAME_WIDTH), None, None)
        box = self._box(table, frame)
        detected = table.loc[frame, BOX_DETECTED] if BOX_DETECTED in table else None
        kind = None if detected is None or pd.isna(detected) else "detected" if bool(detected) else "interpolated"
        return FrameView(crop_face(image, box, CROP_SIZE), draw_box(image, box, kind),
                         crop_face(image, box, DDAMFN_SIZE), kind)

    def attention(self, state: dict, view: FrameView) -> tuple[np.ndarray | None, str]:
        """DDAMFN's fused attention over the frame's face crop (one forward pass of the analysis's DDAMFN,
        on the CPU) and a sentence saying what it is, "untrained" for random weights."""
        if view.model_crop is None:
            return None, "No face in this frame: no attention map."
        model = self._ddamfn(state)
        if model is None:
            return None, "DDAMFN was not part of this analysis: no attention map."
        amap = face_attention(model.model, view.model_crop)
        display = view.crop if view.crop is not None and view.crop.shape[0] == view.crop.shape[1] else view.model_crop
        words = (f"DDAMFN's fused attention (max over its {model.model.net.num_head} heads, mean over 512 "
                 f"channels; 7x7 over the face) from {amap.min():.3f} to {amap.max():.3f}")
        words += (": flat, drawn as one tint on the 0-1 scale." if is_flat(amap) else
                  ", stretched: blue low, red high.")
        if model.info.untrained:
            words = "**untrained** (random weights: the map means nothing). " + words
        return overlay(display, amap), words

    def clip_phrases(self, state: dict) -> dict[str, dict[str, list[str]]]:
        """Prompt set name -> expression -> its class phrases, for the analysis's CLIP prompt sets."""
        out = {}
        for name in state["run"].config.prompt_set_names():
            try:
                out[name] = {e: list(p) for e, p in self.ctx.prompt_set_object(name).classes.items()}
            except InputError:            # a saved set deleted since: its phrases are unknown
                continue
        return out

    def _ddamfn(self, state: dict):
        """The analysis's DDAMFN (core.predict.LoadedModel) from its recorded configuration, loaded on
        the CPU (kept by the Context; the same object as the analysis's when it ran on the CPU); None
        when the analysis had no DDAMFN."""
        recorded = state["run"].config
        sets = []
        for name in recorded.prompt_set_names():
            try:
                sets.append(self.ctx.prompt_set_object(name))
            except InputError:
                continue
        config = dataclasses.replace(recorded, prompt_sets=tuple(sets), device="cpu")
        if "ddamfn" not in config.model_names():
            return None
        return self.ctx.loaded_models(config).models.get("ddamfn")

    def gallery(self, state: dict, start: int, end: int) -> list[tuple[np.ndarray, str]]:
        """Crops of a segment (at most GALLERY_MAX frames, evenly spaced), captioned by frame."""
        frames = sorted({int(f) for f in np.linspace(start, end, min(GALLERY_MAX, end - start + 1))})
        crops = self.face_crops(state, frames)
        return [(crops[f], f"frame {f}") for f in frames if f in crops]

    @staticmethod
    def _box(table: pd.DataFrame, frame: int) -> np.ndarray:
        return table.loc[frame, BOX_COLUMNS].to_numpy(dtype="float64")

    def _aligned_images(self, state: dict, frames: list[int]) -> dict[int, np.ndarray]:
        """Aff-Wild2's aligned face images (RGB) of the given frames that have one."""
        images = self.ctx.affwild2_index().video_frames(state["name"]).set_index("frame")["image_path"]
        return {f: cv2.cvtColor(cv2.imread(images[f]), cv2.COLOR_BGR2RGB) for f in frames
                if isinstance(images.get(f), str)}

    def _frames(self, path, frames: list[int]) -> dict[int, np.ndarray]:
        """The requested frames (RGB) through a cache of decoded frames bounded in bytes (core.video.FrameCache)."""
        return self._decoded.frames(path, frames, self._read_frames)

    @staticmethod
    def _read_frames(path, frames: list[int]) -> dict[int, np.ndarray]:
        """The requested frames (RGB), each decoded from the keyframe before it (core.video.read_frames)."""
        try:
            return read_frames(path, frames)
        except VideoError as err:
            raise InputError(video_message(err, path)) from None
        except IndexError:
            raise InputError(f"{Path(path).name} has fewer frames than its analysis: analyse it again.") from None

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

    def stored_analysis(self, run_key: str) -> tuple[Analysis, str] | None:
        """A stored Analysis and its video's key, or None (never analysed, or its files are gone)."""
        with self.ctx.read() as s:
            run = repo.find_run(s, run_key)
            found = (run.artifacts_dir, run.video.key) if run is not None and run.artifacts_dir else None
        analysis = self._load_stored(found[0]) if found is not None else None
        return (analysis, found[1]) if analysis is not None else None

    def _load_stored(self, folder: str) -> Analysis | None:
        """The Analysis kept in `folder` (relative to the data directory), or None when its files are gone."""
        path = self.config.data_dir / folder
        return Analysis.load(path) if (path / "table.parquet").is_file() else None

    def store_analysis(self, item: VideoItem, analysis: Analysis, run_key: str, weight_keys: dict,
                       user: str | None) -> tuple[str, list[str]]:
        """Keep the analysis under the data directory (table, run metadata, CLIP embeddings, and a copy of
        an uploaded video for frame views), register the video, its annotation files and the run; returns
        the video's database key and notes for the page."""
        table, run, key = analysis.table, analysis.run, item.key
        details = run.to_dict()
        folder = Path("analyses") / run_key[:32]
        analysis.save(self.config.data_dir / folder)
        if item.path is not None:
            self.stored_video(key, item.path)
        files = dict(item.annotation_files)
        if item.path is None:
            index = self.ctx.affwild2_index()
            files = {task: index.annotation_path(task, split, item.name)
                     for task, split in index.splits(item.name).items()}
        notes, storable = [], {}
        for task, path in files.items():     # read before the write transaction, which should be short
            try:
                read_annotation(path, task, max_frames=len(table))
                storable[task] = path
            except AnnotationTooLong:
                notes.append(f"{Path(path).name} has more lines than the video has frames: shown without its "
                             "last lines, but not stored for review (the database keeps annotations that fit "
                             "their video).")

        def work(s):
            video = repo.register_video(s, key, len(table), frame_rate(table), name=item.name)
            for task, path in storable.items():
                repo.import_annotations(s, video, task, path)
            repo.add_prediction_run(
                s, video, models=details["models"], device=run.device, table_path=str(folder / "table.parquet"),
                untrained=run.untrained, weights=dict(run.config.weights), details=details, run_key=run_key,
                artifacts_dir=str(folder), weight_hashes=weight_keys, created_by=user)
        self.ctx.write(work)
        return key, notes

    def stored_video(self, key: str, source: Path | None = None) -> Path | None:
        """The kept copy of an uploaded video (made from `source` the first time), so that any reviewer can
        see its frames after the uploader's session is gone; None for Aff-Wild2 videos."""
        if not key.startswith("sha256:"):
            return None
        folder = self.config.data_dir / "videos"
        found = sorted(folder.glob(key.removeprefix("sha256:") + ".*"))
        if found or source is None:
            return found[0] if found else None
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / (key.removeprefix("sha256:") + Path(source).suffix.lower())
        tmp = target.with_name("." + target.name + ".tmp")
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target

    def open_video(self, key: str) -> dict:
        """The review state of a stored video's newest analysis (no analysing again), for any reviewer."""
        with self.ctx.read() as s:
            try:
                run = repo.latest_run(s, key)
            except repo.ValidationError as err:
                raise InputError(str(err)) from None
            if run is None or not run.artifacts_dir:
                raise InputError(f"{run.video.name if run else key} has no stored analysis: analyse it first.")
            folder, name = run.artifacts_dir, run.video.name
        analysis = self._load_stored(folder)
        if analysis is None:
            raise InputError(f"The stored analysis of {name} is missing from the data folder: analyse it again.")
        path = self.stored_video(key)
        return {"key": key, "name": name, "path": str(path) if path else None, "table": analysis.table,
                "clip": analysis.clip_embeddings, "run": analysis.run}


def _shrink(image: np.ndarray, width: int) -> np.ndarray:
    """The image at most `width` wide, aspect kept."""
    h, w = image.shape[:2]
    if w <= width:
        return image
    return cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def draw_box(image: np.ndarray, box, kind: str | None) -> np.ndarray:
    """The whole frame (shrunk to FULL_FRAME_WIDTH) with the face box drawn: green where MTCNN detected
    it, amber where the tracker interpolated it between detections, with the word beside it."""
    small = _shrink(image, FULL_FRAME_WIDTH).copy()
    scale = small.shape[1] / image.shape[1]
    x1, y1, x2, y2 = (np.asarray(box, np.float64) * scale).round().astype(int)
    color = BOX_COLORS.get(kind or "detected")
    thick = max(2, small.shape[1] // 200)
    cv2.rectangle(small, (x1, y1), (x2, y2), color, thick)
    if kind:
        cv2.putText(small, kind, (x1, max(14, y1 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1 + thick // 2,
                    cv2.LINE_AA)
    return small
