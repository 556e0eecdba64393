"""The commands that use a finished checkpoint: `evaluate` (ABAW metrics on a split), `thresholds`
(per-AU thresholds optimised on validation predictions, written into the checkpoint) and `predict`
(ABAW submission files).

A checkpoint predicts exactly as the app runs it: core.predict.load_models loads it with the encoder it
needs (an LSTM's recorded encoder, checked by content), the encoder's embeddings of the face images come
from the embedding cache (computed by core.predict.encode, extracted first where missing), and
core.predict.predict turns them into per-frame outputs, video by video.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.affwild2 import read_annotation
from core.analysis import FACELESS, faceless_rule
from core.affwild2_index import AffWild2Index
from core.jsonsafe import jsonable
from core.metrics import optimise_au_thresholds
from core import predict as core_predict
from core.registry import card, card_for_checkpoint
from core.table import decision_columns, write_submissions
from core.video import probe
from core.weights import WeightsError, load_checkpoint
from training import distributed
from training.config import UNTRAINED
from training.data import LabelSet, image_paths, load_labels, target_arrays, valid_mask, video_rows
from training.uploads import with_uploads
from training.extract import encoder_of, ensure_embeddings, video_images, videos_to_embed
from training.predictions import abaw_metrics, fill_faceless, merge

log = logging.getLogger(__name__)

class Predictor:
    """A checkpoint loaded through core.predict.load_models, ready to predict label tables."""

    def __init__(self, weights: str, cfg):
        self.cfg, self.weights = cfg, str(weights)
        self.device = distributed.setup(cfg.device)
        if self.weights == UNTRAINED:          # the baseline row: a random DDAMFN
            card, self.metadata = "ddamfn", {}
        else:
            ckpt = load_checkpoint(weights)
            self.metadata = ckpt.metadata
            card = card_for_checkpoint(ckpt.architecture, (self.metadata.get("embedding") or {}).get("encoder"))
            if card is None:
                raise WeightsError(f"{weights}: a {ckpt.architecture} checkpoint is not one training can evaluate")
        self.card = card
        self.loaded = core_predict.load_models(      # random weights: core.models' fixed seed, the same
            (card,), {} if self.weights == UNTRAINED else {card: self.weights}, self.device)   # in every process
        self.tasks = tuple(self.loaded.models[card].info.tasks)
        recorded = self.loaded.models[card].info.metadata.get("embedding") or {}
        self.encoders = {name: encoder_of("clip" if name == "clip" else "ddamfn",
                                          recorded.get("weights") if name != card else self.weights, m)
                         for name, m in self.loaded.models.items() if name in self.loaded.encoders}

    @property
    def au_thresholds(self):
        return self.loaded.au_thresholds

    def _outputs(self, outputs: dict) -> dict[str, np.ndarray]:
        """The task outputs of this checkpoint from core.predict's outputs."""
        own = card(self.card).outputs          # a CLIP adapter's or CLIP+LSTM's own output
        if own:
            return {"expr": outputs[next(iter(own))]}
        return {t: outputs[t] for t in self.tasks}

    def output_sources(self) -> dict[str, str]:
        """task -> the card whose outputs are this checkpoint's answers (as _outputs picks them)."""
        if card(self.card).outputs:
            return {"expr": self.card}
        sources = self.loaded.task_sources()
        return {t: sources[t] for t in self.tasks if t in sources}

    def predict(self, table: pd.DataFrame) -> dict[str, np.ndarray]:
        """Predictions for every row of a label table, video by video as the app predicts a video."""
        return merge(distributed.gather(self._predict_mine(table)), len(table), self.tasks)

    def predict_videos(self, table: pd.DataFrame):
        """(video, its rows in frame order, core.predict.Predictions) for this process's videos."""
        cfg = self.cfg
        rank, world = distributed.rank_and_world()
        videos = sorted(table["video"].unique())
        embeddings = {}
        for name, encoder in self.encoders.items():
            cache = ensure_embeddings(cfg.cache, encoder, cfg.root, videos, cfg.batch_size, cfg.workers, cfg.progress)
            embeddings[name] = cache.table_embeddings(table)
        frames, by_video = table["frame"].to_numpy(), video_rows(table)
        for video in videos[rank::world]:
            rows = by_video[video]
            rows = rows[np.argsort(frames[rows], kind="stable")]
            has = next(iter(embeddings.values()))[1][rows]
            emb = {name: e[rows][has] for name, (e, _) in embeddings.items()}
            yield video, rows, core_predict.predict(self.loaded, emb, has)

    def _predict_mine(self, table):
        rows, parts = [], {t: [] for t in self.tasks}
        for _, video_rows_, predictions in self.predict_videos(table):
            rows.append(video_rows_)
            for t, v in self._outputs(predictions.outputs).items():
                parts[t].append(v)
        if not rows:
            return np.zeros(0, np.int64), {t: np.zeros((0, 1)) for t in self.tasks}
        return np.concatenate(rows), {t: np.concatenate(v) for t, v in parts.items()}


def _labels(cfg, tasks) -> LabelSet:
    return load_labels(cfg.root, tasks, cfg.split, cfg.corrections, cfg.db)


def _tasks(cfg, predictor: Predictor) -> tuple[str, ...]:
    tasks = tuple(t for t in predictor.tasks if t in cfg.tasks)
    if not tasks:
        raise ValueError(f"{predictor.weights} predicts {', '.join(predictor.tasks)}; none of {', '.join(cfg.tasks)}")
    return tasks


def evaluate(cfg) -> dict:
    """The `evaluate` command: ABAW metrics of a checkpoint on a split (P_AU at 0.5, and with the
    checkpoint's optimised thresholds when it has them); with cfg.uploads, on the uploads' layout as training
    builds it (training.uploads)."""
    if cfg.uploads:
        cfg, _ = with_uploads(cfg)
    predictor = Predictor(cfg.weights, cfg)
    tasks = _tasks(cfg, predictor)
    labels = _labels(cfg, tasks)
    preds = predictor.predict(labels.table)
    result = {"weights": cfg.weights, "split": cfg.split, "tasks": list(tasks), "labels": labels.summary(),
              "metrics": abaw_metrics(labels.table, preds, tasks)}
    if "au" in tasks and predictor.metadata.get("au_thresholds"):
        opt = abaw_metrics(labels.table, preds, ("au",), predictor.au_thresholds)
        result["metrics"]["p_au_optimised"] = opt["p_au"]
        result["metrics"]["f1_per_au_optimised"] = opt["f1_per_au"]
        result["au_thresholds"] = list(predictor.au_thresholds)
    if cfg.out and distributed.is_main():
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out).write_text(json.dumps(result, indent=1))
    return result


def update_metadata(path, **values) -> None:
    """Add or replace top-level metadata entries of one of our checkpoint files (atomically)."""
    path = Path(path)
    obj = torch.load(path, map_location="cpu", weights_only=True)
    obj.setdefault("metadata", {}).update(values)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def thresholds(cfg) -> dict:
    """The `thresholds` command: per-AU thresholds maximising each AU's F1 on a split's predictions
    (validation by default), stored as metadata["au_thresholds"] in the checkpoint (or a copy at --out)."""
    if cfg.uploads:
        cfg, _ = with_uploads(cfg)
    predictor = Predictor(cfg.weights, cfg)
    if "au" not in predictor.tasks:
        raise ValueError(f"{cfg.weights} has no AU head")
    labels = _labels(cfg, ("au",))
    preds, _ = fill_faceless(labels.table, predictor.predict(labels.table))
    keep = valid_mask(labels.table, "au") & ~np.isnan(preds["au"]).any(axis=1)
    gt = target_arrays(labels.table)["au"][keep]
    found = optimise_au_thresholds(preds["au"][keep], gt)
    before = abaw_metrics(labels.table, preds, ("au",))["p_au"]
    after = abaw_metrics(labels.table, preds, ("au",), found)["p_au"]
    result = {"au_thresholds": [float(t) for t in found], "split": cfg.split, "p_au_at_0.5": before,
              "p_au_optimised": after, "frames": int(keep.sum()), "corrections": labels.corrections}
    if distributed.is_main():
        target = Path(cfg.out) if cfg.out else Path(cfg.weights)
        if target != Path(cfg.weights):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(Path(cfg.weights).read_bytes())
        update_metadata(target, au_thresholds=result["au_thresholds"],
                        au_thresholds_fit={k: v for k, v in result.items() if k != "au_thresholds"})
        result["checkpoint"] = str(target)
    return result


def frames_to_predict(index: AffWild2Index, video: str) -> np.ndarray:
    """Frame numbers a submission lists for a video: its annotation lines when annotated; otherwise
    every frame a decoder yields from its raw video when present (core.video.probe, as the app counts
    frames); otherwise up to its last face image."""
    lengths = [len(read_annotation(index.annotation_path(t, s, video), t)) for t, s in index.splits(video).items()]
    if not lengths:
        raw = index.raw_video_path(video)
        if raw is not None:               # the frames a decoder yields, as the app counts them
            lengths.append(probe(raw).frame_count)
    frames, _ = video_images(index, video)
    if not lengths:
        if not len(frames):
            raise ValueError(f"{video}: no annotation, raw video or face image to predict")
        log.warning("%s: no annotation or raw video; listing frames up to the last face image", video)
        lengths.append(int(frames.max()) + 1)
    return np.arange(max(lengths), dtype=np.int64)


def predict(cfg) -> dict[str, Path]:
    """The `predict` command: one submission file per task (<out>/<task>.txt), every listed frame with
    a value (core.table.write_submissions)."""
    predictor = Predictor(cfg.weights, cfg)
    tasks = _tasks(cfg, predictor)
    index = AffWild2Index(cfg.root)
    videos = videos_to_embed(index, cfg.videos)
    parts = []
    for video in videos:
        frames = frames_to_predict(index, video)
        part = pd.DataFrame({"video": video, "frame": frames})
        part["image_path"] = image_paths(index, video, frames)
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    preds = predictor.predict(table)
    if not distributed.is_main():
        return {}
    outputs = {t: preds.get(t, np.full((len(table), n), np.nan)) for t, n in (("va", 2), ("expr", 8), ("au", 12))}
    tables = {}
    for video, rows in video_rows(table).items():
        columns = decision_columns({t: v[rows] for t, v in outputs.items()}, predictor.au_thresholds)
        tables[video] = pd.DataFrame({"frame": table["frame"].to_numpy()[rows], **columns})
    written = write_submissions(tables, cfg.out, tasks=tasks)
    if written:                # the submission files cannot say how they were made: a run JSON beside them
        face = table["image_path"].notna().to_numpy()
        faceless = faceless_rule(int(face.sum()), True, predictor.output_sources())
        run = {"command": "python -m training predict", "weights": predictor.weights,
               "models": predictor.loaded.describe(), "untrained": predictor.loaded.untrained, "tasks": list(tasks),
               "au_thresholds": predictor.au_thresholds.tolist(), "videos": videos, "frames": len(table),
               "face_frames": int(face.sum()), "encoded": "every face image (no stride)",
               "faceless": faceless, "faceless_predictions": FACELESS[faceless],
               "videos_without_face": sorted(v for v, rows in video_rows(table).items() if not face[rows].any()),
               "videos_without_face_get": "the neutral answer (core.affwild2.write_submission)"}
        written.append(Path(cfg.out) / "run.json")
        written[-1].write_text(json.dumps(jsonable(run), indent=1))
    log.info("wrote %s", ", ".join(str(p) for p in written))
    return {p.stem: p for p in written}
