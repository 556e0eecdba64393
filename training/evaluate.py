"""The commands that use a finished checkpoint: `evaluate` (ABAW metrics on a split), `thresholds`
(per-AU thresholds optimised on validation predictions, written into the checkpoint) and `predict`
(ABAW submission files).

A checkpoint predicts as the app runs it: DDAMFN from the face images; an LSTM from the cached
embeddings of the encoder recorded in its metadata (extracted first where missing); a CLIP adapter from
the cached embeddings of its CLIP.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from core.affwild2 import LABEL_COLUMNS, AffWild2Index, image_name, read_annotation, write_submission
from core.labels import TASKS
from core.metrics import optimise_au_thresholds
from core.weights import WeightsError, load_checkpoint
from training import distributed
from training.config import UNTRAINED
from training.data import LabelSet, image_paths, load_labels, target_arrays, valid_mask
from training.extract import clip_encoder, ensure_embeddings, load_encoder, video_images, videos_to_embed
from training.predictions import (abaw_metrics, decisions, fill_from_neighbours, merge, predict_embeddings,
                                  predict_images, predict_sequences)

log = logging.getLogger(__name__)


class Predictor:
    """A checkpoint loaded through core.models.create_model, ready to predict label tables."""

    def __init__(self, weights: str, cfg):
        from core.models import create_model

        self.cfg, self.weights = cfg, str(weights)
        self.device = distributed.setup(cfg.device)
        ckpt = None if self.weights == UNTRAINED else load_checkpoint(weights)    # UNTRAINED: the baseline row
        self.metadata = ckpt.metadata if ckpt else {}
        kind = {"ddamfn-upstream": "ddamfn"}.get(ckpt.architecture, ckpt.architecture) if ckpt else "ddamfn"
        if kind not in ("ddamfn", "lstm", "clip-adapter"):
            raise WeightsError(f"{weights}: a {ckpt.architecture} checkpoint is not one training can evaluate")
        self.kind = kind
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)              # random weights: the same in every run and torchrun process
            self.loaded = create_model(kind, weights if ckpt else None, device=self.device)
        self.model = self.loaded.model.eval()
        self.tasks = tuple(self.loaded.info.tasks)
        self.encoder = None
        if kind == "lstm":
            info = self.metadata.get("embedding") or {}
            if not info.get("weights"):
                raise WeightsError(f"{weights}: this LSTM checkpoint does not record its encoder")
            self.encoder = load_encoder(info["encoder"], info["weights"], self.device)
            if info.get("key") and info["key"] != self.encoder.key:
                raise WeightsError(f"{weights} was trained on embeddings {info['key']} of {info['weights']}, "
                                   f"which now gives {self.encoder.key}: the encoder weights changed")
            self.windows = self.metadata.get("windows") or {"window": 64, "stride": 32}
        elif kind == "clip-adapter":
            self.encoder = clip_encoder(self.model.clip, self.weights, self.device)

    @property
    def au_thresholds(self):
        return self.metadata.get("au_thresholds") or 0.5

    def predict(self, table: pd.DataFrame) -> dict[str, np.ndarray]:
        """Predictions for every row of a label table (NaN where a frame model has no image)."""
        cfg = self.cfg
        rank, world = distributed.rank_and_world()
        videos = sorted(table["video"].unique())
        mine = videos[rank::world]
        rows = np.flatnonzero(table["video"].isin(mine).to_numpy())
        if self.kind == "ddamfn":
            rows = rows[table["image_path"].notna().to_numpy()[rows]]
            part = rows, predict_images(self.model, table, rows, self.tasks, self.device, cfg.batch_size,
                                        cfg.workers, cfg.amp)
        else:
            cache = ensure_embeddings(cfg.cache, self.encoder, cfg.root, videos, cfg.batch_size, cfg.workers,
                                      cfg.amp, cfg.progress)
            emb, has = cache.table_embeddings(table)
            if self.kind == "lstm":
                part = predict_sequences(self.model, table, mine, emb, has, self.tasks,
                                         self.windows["window"], self.windows["stride"])
            else:
                rows = rows[has[rows]]
                part = rows, predict_embeddings(self.model.forward_embeddings, emb[rows], self.tasks, self.device)
        return merge(distributed.gather(part), len(table), self.tasks)


def _labels(cfg, tasks) -> LabelSet:
    return load_labels(cfg.root, tasks, cfg.split, cfg.corrections, cfg.db)


def _tasks(cfg, predictor: Predictor) -> tuple[str, ...]:
    tasks = tuple(t for t in predictor.tasks if t in cfg.tasks)
    if not tasks:
        raise ValueError(f"{predictor.weights} predicts {', '.join(predictor.tasks)}; none of {', '.join(cfg.tasks)}")
    return tasks


def evaluate(cfg) -> dict:
    """The `evaluate` command: ABAW metrics of a checkpoint on a split (P_AU at 0.5, and with the
    checkpoint's optimised thresholds when it has them)."""
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
    predictor = Predictor(cfg.weights, cfg)
    if "au" not in predictor.tasks:
        raise ValueError(f"{cfg.weights} has no AU head")
    labels = _labels(cfg, ("au",))
    preds, _ = fill_from_neighbours(labels.table, predictor.predict(labels.table))
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
    every frame of its raw video when present; otherwise up to its last face image."""
    lengths = [len(read_annotation(index.annotation_path(t, s, video), t)) for t, s in index.splits(video).items()]
    if not lengths:
        raw = index.raw_video_path(video)
        if raw is not None:
            cap = cv2.VideoCapture(str(raw))
            lengths.append(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
            cap.release()
    frames, _ = video_images(index, video)
    if not lengths:
        if not len(frames):
            raise ValueError(f"{video}: no annotation, raw video or face image to predict")
        log.warning("%s: no annotation or raw video; listing frames up to the last face image", video)
        lengths.append(int(frames.max()) + 1)
    return np.arange(max(lengths), dtype=np.int64)


def predict(cfg) -> dict[str, Path]:
    """The `predict` command: one submission file per task (<out>/<task>.txt; faceless frames filled
    from neighbours by core.affwild2.write_submission)."""
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
    for task in TASKS:
        for c in LABEL_COLUMNS[task]:
            table[c] = np.nan
    preds = predictor.predict(table)
    written = {}
    if distributed.is_main():
        values = decisions(preds, tasks, predictor.au_thresholds)
        values.insert(0, "image_location", [f"{v}/{image_name(f)}" for v, f in zip(table["video"], table["frame"])])
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        for task in tasks:
            path = out / f"{task}.txt"
            filled = write_submission(values[["image_location", *LABEL_COLUMNS[task]]], path, task)
            log.info("%s: %d rows, %d filled from neighbours", path, len(values), filled)
            written[task] = path
    return written
