"""What the page's handlers call: the one place that talks to core/ (pipeline, faces, CLIP, review), db/
and training/, so that webapp/app.py only reads inputs and shapes outputs.

Expected failures (a file that is not a video, an annotation of the wrong length, no face, weights that
cannot be had, a review rule) come out as InputError with a sentence for the page.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from core import pipeline
from core.affwild2 import LABEL_COLUMNS, AffWild2Index, AnnotationError, read_annotation
from core.faces import crop_face
from core.labels import AUS, EXPRESSIONS, TASKS
from core.models.clip import DEFAULT_PROMPT_SETS, PromptSet, prompt_set
from core.predict import encode, zero_shot
from core.registry import CARDS, by_label, card_for_checkpoint, with_encoders
from core.table import (Analysis, align_ground_truth, attach_ground_truth, ground_truth_from_files,
                        ground_truth_from_labels, set_clip_output)
from core.review import suspicious_segments
from core.video import VideoError, iter_frames
from core.weights import WeightsError
from db import export, repo
from db.agreement import agreement_report
from db.engine import default_url, init_db, make_session_factory
from webapp import results
from webapp.config import AppConfig
from webapp.inputs import InputError, annotation_files, check_video, video_message

MODEL_CHOICES = tuple(card.label for card in CARDS.values())
DEFAULT_MODELS = ("DDAMFN+LSTM", "CLIP")
CROP_SIZE = 224
GALLERY_MAX = 24      # crops shown for a segment; longer segments are sampled evenly
LOADED_KEEP = 2       # model configurations kept in memory
HISTORY_COLUMNS = ("at", "reviewer", "action", "subject", "detail")
MODEL_COLUMNS = ["id", "name", "runs as", "tasks", "trained", "validation", "corrections", "by", "created"]
WAITING_COLUMNS = ["id", "video", "task", "frames", "proposed by", "note"]
AGREEMENT_COLUMNS = ["who", "task", "measure", "value", "frames"]


@dataclass
class VideoItem:
    """A video to analyse and where its annotation comes from."""

    name: str                                   # Aff-Wild2 video id, or the upload's file name
    path: Path | None = None                    # the video file (None: Aff-Wild2 aligned images)
    annotation_files: dict[str, str] = field(default_factory=dict)   # task -> uploaded file


class Services:
    def __init__(self, config: AppConfig):
        self.config = config
        self._index: AffWild2Index | None = None
        self._sessions = None
        self._loaded: OrderedDict[tuple, pipeline.LoadedModels] = OrderedDict()
        self._lock = threading.Lock()
        self._overview: str | None = None

    # -- choosing a video -------------------------------------------------------------------------------
    def affwild2_index(self) -> AffWild2Index | None:
        if self.config.affwild2_root is None:
            return None
        if self._index is None:
            self._index = AffWild2Index(self.config.affwild2_root)
        return self._index

    def affwild2_videos(self) -> list[str]:
        """Annotated Aff-Wild2 videos that have aligned face images in the configured root."""
        index = self.affwild2_index()
        return [v for v in index.all_videos() if index.image_dir(v) is not None] if index else []

    def affwild2_item(self, video: str | None) -> VideoItem:
        if self.affwild2_index() is None:
            raise InputError("No Aff-Wild2 folder is configured (AFFECTLENS_AFFWILD2_ROOT).")
        if not video or video not in self.affwild2_videos():
            raise InputError("Choose an Aff-Wild2 video from the list.")
        return VideoItem(name=video)

    def upload_item(self, video: str | None, annotation_paths: list[str] | None) -> VideoItem:
        """An uploaded video within the limits, with its annotation files. An annotation far longer or
        shorter than the container's frame estimate is refused now, before minutes of analysis; the
        exact check against the decoded frames follows the analysis."""
        info = check_video(video, self.config.max_upload_mb, self.config.max_duration_s)
        files = annotation_files(annotation_paths)
        estimate = info.frame_count_estimate
        try:
            if files:
                ground_truth_from_files(files, estimate, tolerance=max(10, estimate // 10))
        except AnnotationError as err:
            raise InputError(f"Annotation file problem: {err}") from None
        path = Path(info.path)
        return VideoItem(name=path.name, path=path, annotation_files=files)

    # -- models and analysis ----------------------------------------------------------------------------
    def model_weights(self) -> dict[str, str | None]:
        """The weights the app runs per model card (the environment's defaults; None: random)."""
        return {"ddamfn": self.config.weights_ddamfn, "lstm": self.config.weights_lstm,
                "clip": self.config.weights_clip, "clip-lstm": None}

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
        weights = {name: spec for name, spec in self.model_weights().items() if spec and name in models}
        if model_id:
            card, path = self.registered_weights(model_id)
            if card not in models:
                raise InputError(f"Model {model_id} runs as {CARDS[card].label}: tick it among the models.")
            weights[card] = path
        sets = (self.prompt_set_object(prompt_set_name or "basic"),) if "clip" in models else ()
        return pipeline.AnalysisConfig(models=models, weights=weights, prompt_sets=sets,
                                       clip_model=self.config.clip_model, device=self.config.device)

    def registered_weights(self, model_id) -> tuple[str, str]:
        """(card it runs as, checkpoint path) of a model in the models table."""
        with self.sessions().begin() as s:
            try:
                model = repo.get_model(s, int(model_id))
            except (repo.ValidationError, ValueError, TypeError):
                raise InputError(f"There is no model {model_id} in the models table.") from None
            architecture, path, encoder = model.architecture, model.path, (model.training or {}).get("encoder")
        card = card_for_checkpoint(architecture, encoder)
        if card is None or not Path(path).is_file():
            raise InputError(f"Model {model_id} ({path}) cannot be analysed with: "
                             + ("its file is gone." if card else f"a {architecture} checkpoint is no analysis model."))
        return card, path

    def model_list(self) -> pd.DataFrame:
        """The models table for the page: what each is, how far it was trained, its validation scores."""
        with self.sessions().begin() as s:
            rows = [{"id": m.id, "name": m.name, "runs as": m.architecture, "tasks": ", ".join(m.tasks),
                     "trained": (f"{m.trained_steps} steps, {(m.training or {}).get('frames_seen', '?')} frames"
                                 if m.trained_steps is not None else "unknown"),
                     "validation": ", ".join(f"{k} {v:.3f}" for k, v in (m.metrics or {}).items()
                                             if k in ("p_va", "p_expr", "p_au", "score") and v is not None),
                     "corrections": len(m.correction_ids), "by": m.started_by.name if m.started_by else "",
                     "created": m.created_at.strftime("%Y-%m-%d %H:%M")} for m in repo.list_models(s)]
        return pd.DataFrame(rows, columns=MODEL_COLUMNS)

    def model_choices(self) -> list[tuple[str, int]]:
        models = self.model_list()
        return [("the app's default weights", 0)] + [
            (f"{i}: {n} ({a}, {t})", int(i)) for i, n, a, t in zip(models["id"], models["name"], models["runs as"],
                                                                  models["trained"])]

    def loaded_models(self, config: pipeline.AnalysisConfig) -> pipeline.LoadedModels:
        """Models for a configuration, loaded once and kept (the few most recent configurations)."""
        key = (config.model_names(), tuple(sorted(config.weights.items())), config.clip_model, config.device,
               tuple(prompt_set(p).key for p in config.prompt_sets))
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            try:
                loaded = pipeline.load_models(config)
            except WeightsError as err:
                raise InputError(f"The model weights could not be loaded: {err}") from None
            self._loaded[key] = loaded
            while len(self._loaded) > LOADED_KEEP:
                self._loaded.popitem(last=False)
            return loaded

    def analyse(self, item: VideoItem, choices, prompt_set_name, model_id=None, progress=None) -> Analysis:
        """The Analysis, its table with the ground truth attached and notes for the page."""
        config = self.analysis_config(choices, prompt_set_name, model_id)
        loaded = self.loaded_models(config)
        try:
            if item.path is None:
                analysis = pipeline.analyze_affwild2(self.affwild2_index(), item.name, config, progress,
                                                     loaded=loaded)
            else:
                analysis = pipeline.analyze_video(item.path, config, progress, loaded=loaded)
        except VideoError as err:
            raise InputError(video_message(err, item.path)) from None
        table = analysis.table
        if not table["face"].any():
            raise InputError(f"No face was found in any of the {len(table)} frames of {item.name}: there is "
                             "nothing to analyse. Try a clip where the face is visible.")
        truth, analysis.notes = self.ground_truth(item, len(table))
        analysis.table = attach_ground_truth(table, truth)
        return analysis

    def ground_truth(self, item: VideoItem, n_frames: int) -> tuple[pd.DataFrame | None, list[str]]:
        """gt_ columns for the item's frames, and notes for the page."""
        try:
            if item.path is None:
                labels = self.affwild2_index().video_frames(item.name)
                return ground_truth_from_labels(labels.set_index("frame").drop(columns="image_path"),
                                                n_frames, item.name)
            if item.annotation_files:
                return ground_truth_from_files(item.annotation_files, n_frames)
        except AnnotationError as err:
            raise InputError(f"Annotation file problem: {err}") from None
        return None, []

    @staticmethod
    def run_summary(run: dict, name: str, notes: list[str]) -> str:
        """Which weights ran, on what, how fast; `untrained` in plain words when weights are random."""
        lines = [f"**{name}**: {run.get('frames', '?')} frames, {run.get('face_frames', '?')} with a "
                 f"face; ran on `{run.get('device', '?')}` in {run.get('timings_s', {}).get('total', 0):.1f} s "
                 f"({run.get('frames_per_s') or 0:.1f} frames/s).", "",
                 *results.weights_table(run.get("models", {}))]
        if run.get("untrained"):
            lines += ["", "Outputs from **untrained** models come from random weights: they show how the app "
                          "works, not what the face expresses."]
        if run.get("faceless_predictions") and run.get("face_frames", 0) < run.get("frames", 0):
            lines += ["", f"Frames without a face (shaded grey): {run['faceless_predictions']}."]
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
        table = state["table"].set_index("frame")
        frames = [f for f in frames if f in table.index]
        if state["path"] is None:   # Aff-Wild2: the aligned face images themselves
            images = self.affwild2_index().video_frames(state["name"]).set_index("frame")["image_path"]
            out = {}
            for f in frames:
                if isinstance(images.get(f), str):
                    out[f] = cv2.cvtColor(cv2.imread(images[f]), cv2.COLOR_BGR2RGB)
            return out
        images = self._read_frames(state["path"], frames)
        out = {}
        for f, image in images.items():
            if table.loc[f, "face"]:
                out[f] = crop_face(image, table.loc[f, ["box_x1", "box_y1", "box_x2", "box_y2"]].to_numpy(
                    dtype="float64"), CROP_SIZE)
            else:
                h, w = image.shape[:2]
                out[f] = cv2.resize(image, (CROP_SIZE, max(1, round(h * CROP_SIZE / w))),
                                    interpolation=cv2.INTER_AREA)
        return out

    def gallery(self, state: dict, start: int, end: int) -> list[tuple[np.ndarray, str]]:
        """Crops of a segment (at most GALLERY_MAX frames, evenly spaced), captioned by frame."""
        frames = sorted({int(f) for f in np.linspace(start, end, min(GALLERY_MAX, end - start + 1))})
        crops = self.face_crops(state, frames)
        return [(crops[f], f"frame {f}") for f in frames if f in crops]

    @staticmethod
    def _read_frames(path, frames: list[int]) -> dict[int, np.ndarray]:
        """The requested frames (RGB), decoding from the start up to the last one."""
        wanted, found = set(frames), {}
        if not frames:
            return found
        try:
            for batch in iter_frames(path, batch_size=64, max_frames=max(frames) + 1):
                found.update({int(i): im for i, im in zip(batch.index, batch.frames) if int(i) in wanted})
        except VideoError as err:
            raise InputError(video_message(err, path)) from None
        return found

    # -- CLIP prompt sets -------------------------------------------------------------------------------
    def compare_prompts(self, state: dict, sets: list[PromptSet], progress=None) -> tuple[pd.DataFrame, np.ndarray]:
        """The analysed video's table with clip_<S>_ columns for each prompt set: zero-shot CLIP
        (core.predict) on the CLIP image embeddings of the subject's face frames. The analysis keeps them
        when it ran CLIP (state["clip"]); otherwise they are computed once from the face crops and
        returned for the caller to keep, so that the next comparison only encodes prompts."""
        config = self.analysis_config(["CLIP"], None)
        loaded = self.loaded_models(config)
        table = state["table"]
        face = table["face"].to_numpy(dtype=bool)
        emb = state.get("clip")
        if emb is None:
            emb = self._clip_embeddings(state, loaded, progress)
        for ps in sets:
            probs = np.full((len(table), len(EXPRESSIONS)), np.nan)
            probs[face] = zero_shot(loaded.clip.model, emb, ps)
            table = set_clip_output(table, ps.name, probs)
        return table, emb

    def clip_untrained(self) -> bool:
        """Whether the CLIP the comparison runs has random weights (then every figure says so)."""
        return self.loaded_models(self.analysis_config(["CLIP"], None)).clip.info.untrained

    def _clip_embeddings(self, state, loaded, progress) -> np.ndarray:
        """Raw CLIP embeddings of the face frames' crops, 64 frames at a time (core.predict.encode)."""
        table = state["table"]
        face_frames = table.loc[table["face"].astype(bool), "frame"].to_numpy()
        size = loaded.clip_size
        chunks = []
        for start in range(0, len(face_frames), 64):
            part = [int(f) for f in face_frames[start:start + 64]]
            crops = self.face_crops(state, part)
            images = np.stack([cv2.resize(crops[f], (size, size), interpolation=cv2.INTER_AREA) for f in part])
            chunks.append(encode(loaded.clip, images, "clip"))
            if progress:
                progress(start + len(part), len(face_frames))
        return np.concatenate(chunks)

    @staticmethod
    def prompt_set_from_text(name: str, templates: list[str], classes: dict) -> PromptSet:
        try:
            return PromptSet(name, tuple(templates), classes)
        except ValueError as err:
            raise InputError(f"Prompt set: {err}") from None

    def prompt_set_names(self) -> list[str]:
        saved = [n for n in self._saved_prompt_sets() if n not in DEFAULT_PROMPT_SETS]
        return list(DEFAULT_PROMPT_SETS) + saved

    def prompt_set_object(self, name: str) -> PromptSet:
        if name in DEFAULT_PROMPT_SETS:
            return DEFAULT_PROMPT_SETS[name]
        saved = self._saved_prompt_sets()
        if name not in saved:
            raise InputError(f"No prompt set called {name!r}.")
        return saved[name]

    def _saved_prompt_sets(self) -> dict[str, PromptSet]:
        with self.sessions().begin() as s:
            return {row.name: prompt_set(row.to_dict()) for row in repo.list_prompt_sets(s)}

    def save_prompt_set(self, ps: PromptSet, user: str) -> int:
        """Store the set (a new version when the content changed); returns its version."""
        if ps.name in DEFAULT_PROMPT_SETS:
            raise InputError(f"{ps.name} is a built-in prompt set: save your edit under another name.")
        with self.sessions().begin() as s:
            repo.get_or_create_reviewer(s, user)
            return repo.save_prompt_set(s, ps.name, ps.templates, ps.classes, user).version

    # -- database ---------------------------------------------------------------------------------------
    def sessions(self):
        """The session factory; the schema is created or migrated on first use."""
        with self._lock:
            if self._sessions is None:
                self._sessions = make_session_factory(init_db(self.config.db_url))
        return self._sessions

    # -- stored analyses --------------------------------------------------------------------------------
    def run_key(self, item: VideoItem, config: pipeline.AnalysisConfig) -> tuple[str, dict[str, str]]:
        """The content key of an analysis (video content, models, the content of their weights, settings)
        under which it is stored and found again, and the weights' content keys."""
        weight_keys = self.loaded_models(config).weight_keys()
        video = item.name if item.path is None else repo.upload_key(item.path)
        settings = {"video": video, "weights": weight_keys, "clip_model": config.clip_model, "fill": config.fill,
                    "prompt_sets": [prompt_set(p).key for p in config.prompt_sets],
                    "detection": pipeline.detection_settings(config)}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
        return digest, weight_keys

    def stored_analysis(self, run_key: str) -> tuple[Analysis, str] | None:
        """A stored Analysis and its video's key, or None (never analysed, or its files are gone)."""
        with self.sessions().begin() as s:
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
        table, run = analysis.table, analysis.run
        key = item.name if item.path is None else repo.upload_key(item.path)
        folder = Path("analyses") / run_key[:32]
        analysis.save(self.config.data_dir / folder)
        if item.path is not None:
            self.stored_video(key, item.path)
        files = dict(item.annotation_files)
        if item.path is None:
            index = self.affwild2_index()
            files = {task: index.annotation_path(task, split, item.name)
                     for task, split in index.splits(item.name).items()}
        notes = []
        with self.sessions().begin() as s:
            video = repo.register_video(s, key, len(table), self.fps(table), name=item.name)
            for task, path in files.items():
                if len(read_annotation(path, task)) > video.frame_count:
                    notes.append(f"{Path(path).name} has more lines than the video has frames: shown, but not "
                                 "stored for review.")
                    continue
                repo.import_annotations(s, video, task, path)
            repo.add_prediction_run(
                s, video, models=run.get("models") or {"unknown": {}}, device=str(run.get("device", "unknown")),
                table_path=str(folder / "table.parquet"), untrained=bool(run.get("untrained", True)),
                weights=(run.get("config") or {}).get("weights"), details=run, run_key=run_key,
                artifacts_dir=str(folder), weight_hashes=weight_keys, created_by=user)
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
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        return target

    def open_video(self, key: str) -> dict:
        """The review state of a stored video's newest analysis (no analysing again), for any reviewer."""
        with self.sessions().begin() as s:
            try:
                run = repo.latest_run(s, key)
            except repo.ValidationError as err:
                raise InputError(str(err)) from None
            if run is None or not run.artifacts_dir:
                raise InputError(f"{run.video.name if run else key} has no stored analysis: analyse it first.")
            folder, name = run.artifacts_dir, run.video.name
        analysis = self._load_stored(folder)
        if analysis is None:
            raise InputError(f"The stored analysis of {name} is missing from {self.config.data_dir}: analyse it again.")
        path = self.stored_video(key)
        return {"key": key, "name": name, "path": str(path) if path else None, "table": analysis.table,
                "clip": analysis.clip_embeddings, "run": analysis.run}

    def video_list(self) -> pd.DataFrame:
        """Every video in the database with its runs, open flags, pending corrections and last activity."""
        with self.sessions().begin() as s:
            rows = repo.list_videos(s)
        out = pd.DataFrame(rows, columns=["name", "key", "frame_count", "runs", "open_flags", "pending_corrections",
                                          "last_activity"])
        out["last_activity"] = [t.strftime("%Y-%m-%d %H:%M:%S") if t else "" for t in out["last_activity"]]
        return out.rename(columns={"frame_count": "frames", "open_flags": "open flags",
                                   "pending_corrections": "waiting for a decision", "last_activity": "last activity"})

    def video_choices(self) -> list[tuple[str, str]]:
        """(file name, key) pairs for the "open a video" list: people see names, the page keeps keys."""
        videos = self.video_list()
        return [(f"{n} ({k.removeprefix('sha256:')[:8]})" if k.startswith("sha256:") else n, k)
                for n, k in zip(videos["name"], videos["key"])]

    def waiting_for(self, user: str) -> pd.DataFrame:
        """Corrections proposed by others that wait for a decision."""
        with self.sessions().begin() as s:
            rows = [{"id": c.id, "video": c.video.name, "task": c.task, "frames": f"{c.start_frame}-{c.end_frame}",
                     "proposed by": c.reviewer.name, "note": c.note} for c in repo.waiting_for(s, user)]
        return pd.DataFrame(rows, columns=WAITING_COLUMNS)

    def labelled_table(self, key: str, table: pd.DataFrame) -> pd.DataFrame:
        """The table with the effective labels (accepted corrections applied) as gt_ columns for each task
        whose annotation the database holds."""
        out = table.copy()
        with self.sessions().begin() as s:
            for task in TASKS:
                if repo.latest_annotation_set(s, key, task) is None:
                    continue
                labels = repo.effective_labels(s, key, task)
                truth = align_ground_truth(labels[LABEL_COLUMNS[task]], len(table))
                for col in truth.columns:
                    out[col] = truth[col].to_numpy()
        return out

    def flag(self, key, task, start, end, reason, note, user) -> int:
        with self.sessions().begin() as s:
            repo.get_or_create_reviewer(s, user)
            return repo.add_flag(s, key, task, start, end, reason, user, note=note).id

    def correct(self, key, task, start, end, value, note, user) -> int:
        with self.sessions().begin() as s:
            repo.get_or_create_reviewer(s, user)
            return repo.add_correction(s, key, task, start, end, value, user, note=note).id

    def decide(self, key: str | None, correction_id, accept: bool, comment: str, user: str) -> None:
        """Accept or reject a correction of the open video; every rule is checked before anything is written."""
        with self.sessions().begin() as s:
            repo.decide_correction(s, correction_id, video=key, reviewer=user, accept=accept, comment=comment or "")

    def revise(self, key: str | None, correction_id, accept: bool, reason: str, user: str) -> None:
        with self.sessions().begin() as s:
            repo.revise_decision(s, correction_id, video=key, reviewer=user, accept=accept, reason=reason or "")

    def flags(self, key: str) -> pd.DataFrame:
        with self.sessions().begin() as s:
            return export.flags_table(s, key).drop(columns=["video"], errors="ignore")

    def resolve_flag(self, key: str | None, flag_id, resolution: str, correction_id, note: str, user: str) -> None:
        with self.sessions().begin() as s:
            repo.resolve_flag(s, flag_id, video=key, reviewer=user, resolution=resolution,
                              correction_id=correction_id, note=note or "")

    def agreement(self, key: str, table: pd.DataFrame) -> pd.DataFrame:
        """The model against the annotation before and after accepted corrections, and the reviewers
        against each other, for the open video (db.agreement) as one readable table."""
        with self.sessions().begin() as s:
            report = agreement_report(s, key, table)
        rows = []

        def add(who, task, scores):
            for measure, value in scores.items():
                if measure != "frames":
                    rows.append({"who": who, "task": task, "measure": measure.replace("_", " "),
                                 "value": None if value is None else round(float(value), 3),
                                 "frames": scores.get("frames")})

        for task, stages in report.get("model", {}).items():
            for stage, scores in stages.items():
                add(f"model vs annotation, {stage} corrections", task, scores)
        for name, counts in report["reviewers"].items():
            add(name, "all", {"share of own corrections accepted": counts.get("share_accepted"),
                              "frames": counts.get("proposed")})
        for pair in report["pairs"]:
            for task in TASKS:
                if pair[task].get("frames"):
                    add(" and ".join(pair["reviewers"]), task, pair[task])
        return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)

    def corrections(self, key: str) -> pd.DataFrame:
        with self.sessions().begin() as s:
            return export.corrections_table(s, key).drop(columns=["video"])

    def history(self, key: str) -> pd.DataFrame:
        with self.sessions().begin() as s:
            rows = [{"at": e.created_at.strftime("%Y-%m-%d %H:%M:%S"), "reviewer": e.reviewer.name,
                     "action": e.action,
                     "subject": f"correction {e.correction_id}" if e.correction_id else f"flag {e.flag_id}",
                     "detail": json.dumps(e.detail)} for e in repo.history(s, video=key)]
        return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))

    def export(self, key: str, name: str, out_dir: Path) -> list[Path]:
        """Corrections and flags with their audit trail (JSON), and the effective labels of every task
        with a stored annotation as Aff-Wild2 files (flagged frames written as invalid)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = Path(name).stem
        with self.sessions().begin() as s:
            paths = [export.export_corrections(s, out_dir / f"{stem}_corrections.json", key),
                     export.export_flags(s, out_dir / f"{stem}_flags.json", key)]
            for task in TASKS:
                if repo.latest_annotation_set(s, key, task) is not None:
                    paths.append(export.export_annotations(s, key, task, out_dir / f"{stem}_{task.upper()}.txt"))
        return paths

    @staticmethod
    def fps(table: pd.DataFrame) -> float:
        return float(1.0 / np.median(np.diff(table["time_s"]))) if len(table) > 1 else 30.0

    # -- review queue -----------------------------------------------------------------------------------
    def review_queue(self, table: pd.DataFrame) -> pd.DataFrame:
        return suspicious_segments(table, fps=self.fps(table))

    @staticmethod
    def segment_labels(part: pd.DataFrame) -> pd.DataFrame:
        """Per-frame labels and predictions of a segment, readable (names instead of class indices)."""
        out = pd.DataFrame({"frame": part["frame"], "time_s": part["time_s"].round(3), "face": part["face"]})
        for col in ("valence", "gt_valence", "arousal", "gt_arousal"):
            if col in part:
                out[col] = part[col].round(3)
        for col in ("expr", "gt_expr"):
            if col in part:
                out[col] = [EXPRESSIONS[int(v)] if pd.notna(v) else "" for v in part[col]]
        for col, prefix in (("AUs", ""), ("gt_AUs", "gt_")):
            cols = [f"{prefix}{au}" for au in AUS]
            if all(c in part for c in cols):
                values = part[cols].to_numpy(dtype="float64", na_value=np.nan)
                out[col] = [" ".join(au for au, v in zip(AUS, row) if v == 1) for row in values]
        return out

    # -- retraining -------------------------------------------------------------------------------------
    def current_weights(self, model_kind: str) -> str | None:
        """The weights the app runs for a training model kind (what a retrained model is compared with)."""
        weights = self.model_weights()
        return {"ddamfn": weights["ddamfn"], "ddamfn-heads": weights["ddamfn"], "lstm": weights["lstm"],
                "clip-adapter": weights["clip"]}[model_kind]

    def retrain(self, preset: str, epochs: int, steps_per_epoch: int, batch_size: int, user: str) -> int:
        """Start a preset's training on the Aff-Wild2 root with the reviewers' effective labels (accepted
        corrections applied, flagged frames left out) as a job in its own process (training.jobs); the
        job evaluates the weights the app runs now first, for a before/after comparison. Returns its id."""
        from training import config as tconfig
        from training.jobs import COMPARE, submit

        if self.config.affwild2_root is None:
            raise InputError("Retraining needs the Aff-Wild2 folder: set AFFECTLENS_AFFWILD2_ROOT.")
        if preset not in tconfig.presets():
            raise InputError(f"Unknown training preset {preset!r}; choose one of {', '.join(tconfig.presets())}.")
        settings = dict(root=str(self.config.affwild2_root), device=self.config.device, progress=False, workers=0,
                        cache=str(self.config.data_dir / "embeddings"), out=str(self.config.runs_dir),
                        epochs=int(epochs), steps_per_epoch=int(steps_per_epoch), corrections=True)
        if batch_size:                                                   # 0: the preset's
            settings["batch_size"] = int(batch_size)
        cfg = tconfig.build(tconfig.TrainConfig, preset)
        start = self.start_weights(cfg.model, getattr(cfg, "encoder", None))
        if start:
            settings["weights"] = start
        if self.current_weights(cfg.model):
            settings[COMPARE] = self.current_weights(cfg.model)
        try:
            return submit(self.config.db_url or default_url(), preset, settings, user, self.config.runs_dir / "logs")
        except ValueError as err:
            raise InputError(f"Training settings: {err}") from None

    def start_weights(self, model_kind: str, encoder: str | None) -> str | None:
        """What a training run starts from, by what it trains on: DDAMFN fine-tunes the DDAMFN the app runs;
        heads and LSTMs train on the embeddings of their encoder (DDAMFN, or the CLIP / adapter the app runs);
        an adapter trains on the CLIP the app runs."""
        weights = self.model_weights()
        if model_kind == "clip-adapter" or encoder in ("clip", "clip-adapter"):
            return weights["clip"]
        return weights["ddamfn"]

    def job_status(self, job_id) -> tuple[str, pd.DataFrame, int | None]:
        """A retraining job as the page shows it: status, progress, time left, the error; when done the model
        it registered and the validation metrics before (the app's weights) and after."""
        with self.sessions().begin() as s:
            try:
                job = repo.get_job(s, int(job_id))
            except (repo.ValidationError, ValueError, TypeError):
                raise InputError(f"There is no retraining job {job_id}.") from None
            p, model = job.progress or {}, job.model
            lines = [f"**Job {job.id}** ({job.preset}, started by {job.started_by.name if job.started_by else '?'}): "
                     f"**{job.status}**."]
            if p:
                lines.append(f"Epoch {p.get('epoch', '?')}/{p.get('epochs', '?')}, step {p.get('step', '?')}/"
                             f"{p.get('steps', '?')}, loss {p.get('loss', float('nan')):.4f}, about "
                             f"{p.get('eta_s') or 0:.0f} s left.")
            if job.error:
                lines.append(f"It failed: {job.error}")
            if model is not None:
                lines.append(f"New model **{model.id}: {model.name}**, trained {model.trained_steps} steps on "
                             f"{(model.training or {}).get('frames_seen', '?')} frames. Pick it on the Analyse tab "
                             "(Weights) and analyse again to compare.")
            before, after = job.before_metrics or {}, job.after_metrics or {}
            model_id = model.id if model is not None else None
        names = [k for k, v in after.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        table = pd.DataFrame({"metric": names, "before": [before.get(k) for k in names],
                              "after": [after[k] for k in names]}, columns=["metric", "before", "after"])
        return "\n\n".join(lines), table, model_id
