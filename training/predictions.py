"""Per-frame predictions aligned with a label table, and their ABAW metrics.

Predictions are numpy arrays per task over the table's rows, after core.predict's activation: va (N,2)
in [-1,1], expr (N,8) probabilities, au (N,12) probabilities; NaN rows have no prediction. Before scoring,
a frame without a face image gets values by core.fill's rule from the frames of its video that have
them (as the app and the submission files do), so the metrics cover every labelled frame.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from core.device import inference_autocast
from core.fill import fill_gaps
from core.affwild2 import LABEL_COLUMNS
from core.metrics import score_task
from core.models.heads import TASK_DIMS
from core.predict import activate as activate_outputs
from training.data import FrameImages, video_rows


def empty(n: int, tasks) -> dict[str, np.ndarray]:
    return {t: np.full((n, TASK_DIMS[t]), np.nan, dtype=np.float32) for t in tasks}


def activate(out: dict, tasks) -> dict[str, np.ndarray]:
    """The tasks' outputs after core.predict's activation."""
    return activate_outputs({t: out[t].float().cpu() for t in tasks})


def merge(parts: list[tuple[np.ndarray, dict]], n: int, tasks) -> dict[str, np.ndarray]:
    """Predictions of (rows, arrays) pieces (e.g. one per torchrun process) as one set over n rows."""
    preds = empty(n, tasks)
    for rows, arrays in parts:
        for t in tasks:
            preds[t][rows] = arrays[t]
    return preds


@torch.no_grad()
def predict_images(model, table: pd.DataFrame, rows: np.ndarray, tasks, device, batch_size=256, workers=2,
                   amp=True) -> dict[str, np.ndarray]:
    """A DDAMFN's outputs for the face images of `rows` (which must have images): {task: (len(rows), dim)}."""
    from core.models.ddamfn import preprocess

    model.eval()
    loader = DataLoader(FrameImages(table, rows), batch_size=batch_size, num_workers=workers,
                        pin_memory=device.type == "cuda")
    chunks = {t: [] for t in tasks}
    for batch in loader:
        x = preprocess(batch["image"].permute(0, 2, 3, 1), device)
        with inference_autocast(device, amp and device.type == "cuda"):
            out = model(x)
        for t, v in activate(out, tasks).items():
            chunks[t].append(v)
    return {t: np.concatenate(c) if c else np.zeros((0, TASK_DIMS[t]), np.float32) for t, c in chunks.items()}


@torch.no_grad()
def predict_embeddings(head, emb: np.ndarray, tasks, device, batch_size=4096) -> dict[str, np.ndarray]:
    """A frame-level head (embedding (B,D) -> outputs, in eval mode) over embeddings (n, D)."""
    chunks = {t: [] for t in tasks}
    for i in range(0, len(emb), batch_size):
        out = head(torch.from_numpy(emb[i:i + batch_size]).to(device))
        for t, v in activate(out, tasks).items():
            chunks[t].append(v)
    return {t: np.concatenate(c) if c else np.zeros((0, TASK_DIMS[t]), np.float32) for t, c in chunks.items()}


@torch.no_grad()
def predict_sequences(lstm, table: pd.DataFrame, videos, emb: np.ndarray, has: np.ndarray, tasks,
                      window: int, stride: int) -> tuple[np.ndarray, dict]:
    """A TemporalLSTM over whole videos (overlapping windows averaged): (rows, {task: arrays})."""
    lstm.eval()
    by_video = video_rows(table)
    rows = np.concatenate([by_video[v] for v in videos]) if len(videos) else np.zeros(0, np.int64)
    chunks = {t: [] for t in tasks}
    for v in videos:
        r = by_video[v]
        out = lstm.predict_video(emb[r], has[r], window=window, stride=stride)
        for t, a in activate(out, tasks).items():
            chunks[t].append(a)
    return rows, {t: np.concatenate(c) if c else np.zeros((0, TASK_DIMS[t]), np.float32) for t, c in chunks.items()}


def fill_faceless(table: pd.DataFrame, preds: dict) -> tuple[dict, int]:
    """Rows without a prediction get values from their video's predicted frames (core.fill, as the app
    fills faceless frames); returns the filled predictions and how many rows were filled."""
    out = {t: v.astype(np.float64) for t, v in preds.items()}
    filled = np.zeros(len(table), dtype=bool)
    frames = table["frame"].to_numpy()
    for _, rows in video_rows(table).items():
        rows = rows[np.argsort(frames[rows], kind="stable")]
        for t, v in out.items():
            have = ~np.isnan(v[rows]).any(axis=1)
            if have.all() or not have.any():
                continue
            v[rows] = fill_gaps(v[rows], have, frames[rows])
            filled[rows[~have]] = True
    return out, int(filled.sum())


def abaw_metrics(table: pd.DataFrame, preds: dict, tasks, au_thresholds=0.5) -> dict:
    """ABAW scores of predictions against the table's labels (core.metrics.score_task: the figures,
    "<task>_frames" scored and "<task>_missing" labelled frames still without a prediction after the
    fill); "score" is the sum of the tasks' P, a task that could not be scored adding nothing."""
    preds, filled = fill_faceless(table, preds)
    metrics, score = {"frames_filled": filled}, 0.0
    for task in tasks:
        s = score_task(task, preds[task], table[LABEL_COLUMNS[task]], au_thresholds)
        metrics.update({**s.values, f"{task}_frames": s.scored, f"{task}_missing": s.missing})
        score += s.main or 0.0
    metrics["score"] = score
    return metrics
