"""Per-frame predictions aligned with a label table, and their ABAW metrics.

Predictions are numpy arrays per task over the table's rows, after the output activation: va (N,2) in
[-1,1], expr (N,8) probabilities, au (N,12) probabilities; NaN rows have no prediction. As in an ABAW
submission, a frame without a face image takes the prediction of the nearest frame of its video that has
one before it is scored, so the metrics cover every labelled frame.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from core.affwild2 import LABEL_COLUMNS
from core.device import inference_autocast
from core.metrics import au_scores, expr_scores, va_scores
from core.models.heads import TASK_DIMS
from training.data import FrameImages, target_arrays, valid_mask, video_rows


def empty(n: int, tasks) -> dict[str, np.ndarray]:
    return {t: np.full((n, TASK_DIMS[t]), np.nan, dtype=np.float32) for t in tasks}


def activate(out: dict, tasks) -> dict[str, np.ndarray]:
    """Model outputs (va already in [-1,1], expr/au logits) -> float32 numpy va, probabilities."""
    acts = {"va": lambda v: v, "expr": lambda v: v.softmax(-1), "au": torch.sigmoid}
    return {t: acts[t](out[t].float()).cpu().numpy() for t in tasks}


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


def fill_from_neighbours(table: pd.DataFrame, preds: dict) -> tuple[dict, int]:
    """Rows without a prediction take the nearest predicted frame of the same video (the earlier on a
    tie), as submissions do; returns the filled predictions and how many rows were filled."""
    out = {t: v.copy() for t, v in preds.items()}
    filled = np.zeros(len(table), dtype=bool)
    frames = table["frame"].to_numpy()
    for _, rows in video_rows(table).items():
        for t, v in out.items():
            have = ~np.isnan(v[rows]).any(axis=1)
            if have.all() or not have.any():
                continue
            src = rows[have]
            pos = np.searchsorted(frames[src], frames[rows[~have]])
            before = src[np.clip(pos - 1, 0, len(src) - 1)]
            after = src[np.clip(pos, 0, len(src) - 1)]
            nearer_after = np.abs(frames[after] - frames[rows[~have]]) < np.abs(frames[before] - frames[rows[~have]])
            v[rows[~have]] = v[np.where(nearer_after, after, before)]
            filled[rows[~have]] = True
    return out, int(filled.sum())


def abaw_metrics(table: pd.DataFrame, preds: dict, tasks, au_thresholds=0.5) -> dict:
    """ABAW scores of predictions against the table's labels; "score" is the sum of the tasks' P."""
    preds, filled = fill_from_neighbours(table, preds)
    targets = target_arrays(table)
    metrics, score = {"frames_filled": filled}, 0.0
    for task in tasks:
        keep = valid_mask(table, task) & ~np.isnan(preds[task]).any(axis=1)
        metrics[f"{task}_frames"] = int(keep.sum())
        if task == "va":
            s = va_scores(preds["va"][keep], targets["va"][keep])
            metrics.update(s)
            score += s["p_va"]
        elif task == "expr":
            s = expr_scores(preds["expr"][keep].argmax(axis=1), targets["expr"][keep])
            metrics.update(s)
            score += s["p_expr"]
        else:
            s = au_scores(preds["au"][keep], targets["au"][keep], au_thresholds)
            metrics.update(s)
            score += s["p_au"]
    metrics["score"] = score
    return metrics


def decisions(preds: dict, tasks, au_thresholds=0.5) -> pd.DataFrame:
    """Predictions as label columns (valence, arousal; expression index; AU 0/1), NaN where none."""
    cols = {}
    if "va" in tasks:
        cols.update({c: preds["va"][:, k] for k, c in enumerate(LABEL_COLUMNS["va"])})
    if "expr" in tasks:
        p = preds["expr"]
        cols["expression"] = np.where(np.isnan(p).any(axis=1), np.nan, np.nan_to_num(p, nan=-1).argmax(axis=1))
    if "au" in tasks:
        p = preds["au"]
        thr = np.broadcast_to(np.asarray(au_thresholds, dtype=np.float64), (p.shape[1],))
        for k, c in enumerate(LABEL_COLUMNS["au"]):
            cols[c] = np.where(np.isnan(p[:, k]), np.nan, (p[:, k] >= thr[k]).astype(np.float64))
    return pd.DataFrame(cols)
