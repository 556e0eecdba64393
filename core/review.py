"""Find the stretches of a video worth a reviewer's look, and rank them.

Works on one video's per-frame table (predictions joined with `gt_` annotation columns, as in the team
contract). Two families of suspicion:
- the model disagrees with the annotation for a while (VA error, expression mismatch, AU error);
- the annotation looks wrong by itself: sudden VA jumps, one- or two-frame expression flickers,
  VA held exactly constant for a long time, invalid gaps inside annotated stretches where a face was
  visible.
Each segment gets a score in [0, 1]; the queue is sorted by score, longest first on ties.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.labels import EXPRESSIONS
from core.table import AROUSAL, AU_DECISIONS, AU_PROBS, EXPR, EXPR_PROBS, FACE, FRAME, TIME, VALENCE, gt

SEGMENT_COLUMNS = ["task", "kind", "start_frame", "end_frame", "frames", "start_s", "end_s", "score",
                   "detail"]


@dataclass(frozen=True)
class ReviewSettings:
    va_error: float = 0.5      # mean |prediction - annotation| of V and A above this is a disagreement
    au_error: float = 0.5      # mean |probability - annotation| over the 12 AUs above this
    min_frames: int = 5        # shortest disagreement worth a look
    merge_gap: int = 3         # disagreement runs closer than this become one segment
    va_jump: float = 0.4       # |change| between consecutive annotated frames that counts as a jump
    expr_flicker: int = 3      # an expression label held fewer frames than this, between others
    constant_s: float = 10.0   # VA annotation unchanged for this long
    context: int = 5           # frames shown either side of a jump or flicker


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) positions, end inclusive, of the runs of True."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2])]


def _merge(runs: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in runs:
        if merged and start - merged[-1][1] <= gap:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _values(df: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(df[col], errors="coerce").astype("float64").to_numpy(dtype="float64", copy=True)


def _has(df: pd.DataFrame, *cols: str) -> bool:
    return all(c in df for c in cols)


def _va_disagreement(df, s):
    if not _has(df, VALENCE, AROUSAL, gt(VALENCE), gt(AROUSAL)):
        return []
    err = (np.abs(_values(df, VALENCE) - _values(df, gt(VALENCE)))
           + np.abs(_values(df, AROUSAL) - _values(df, gt(AROUSAL)))) / 2
    return _error_segments(err, s.va_error, s, "va", "mean |error| of V and A")


def _au_disagreement(df, s):
    if not _has(df, *AU_PROBS, *(gt(a) for a in AU_DECISIONS)):
        return []
    diffs = np.vstack([np.abs(_values(df, p) - _values(df, gt(a))) for p, a in zip(AU_PROBS, AU_DECISIONS)])
    counts = (~np.isnan(diffs)).sum(axis=0)
    err = np.where(counts > 0, np.nansum(diffs, axis=0) / np.maximum(counts, 1), np.nan)
    return _error_segments(err, s.au_error, s, "au", "mean |p - annotation| over AUs")


def _error_segments(err, threshold, s, task, what):
    bad = np.nan_to_num(err, nan=0.0) > threshold
    out = []
    for a, b in _merge(_runs(bad), s.merge_gap):
        if b - a + 1 >= s.min_frames:
            mean = float(np.nanmean(err[a:b + 1]))
            out.append((task, "disagreement", a, b, min(1.0, mean), f"{what} {mean:.2f}"))
    return out


def _expr_disagreement(df, s):
    if not _has(df, EXPR, gt(EXPR)):
        return []
    pred, truth = _values(df, EXPR), _values(df, gt(EXPR))
    valid = ~np.isnan(pred) & ~np.isnan(truth) & (truth >= 0)
    wrong = valid & (pred != truth)
    # Confidence the model gives the annotated class: low confidence on the annotation = more suspicious.
    probs = None
    if _has(df, *EXPR_PROBS):
        probs = np.vstack([_values(df, p) for p in EXPR_PROBS]).T
    out = []
    for a, b in _merge(_runs(wrong), s.merge_gap):
        if b - a + 1 < s.min_frames:
            continue
        rows = np.arange(a, b + 1)[wrong[a:b + 1]]
        if probs is not None:
            score = float(np.clip(1 - np.nanmean(probs[rows, truth[rows].astype(int)]), 0, 1))
        else:
            score = float(len(rows) / (b - a + 1))
        top = pd.Series(pred[rows].astype(int)).mode()[0]
        annotated = pd.Series(truth[rows].astype(int)).mode()[0]
        out.append(("expr", "disagreement", a, b, score,
                    f"annotated {EXPRESSIONS[annotated]}, model says {EXPRESSIONS[top]}"))
    return out


def _va_jumps(df, s):
    out = []
    n = len(df)
    for name in (VALENCE, AROUSAL):
        col = gt(name)
        if col not in df:
            continue
        v = _values(df, col)
        pos = np.flatnonzero(~np.isnan(v))
        if pos.size < 2:
            continue
        step = np.abs(np.diff(v[pos]))
        for i in np.flatnonzero(step > s.va_jump):
            a, b = pos[i], pos[i + 1]
            out.append(("va", "jump", max(0, a - s.context), min(n - 1, b + s.context),
                        float(min(1.0, step[i])), f"{name} jumps {v[a]:+.2f} -> {v[b]:+.2f}"))
    return out


def _va_constant(df, s, fps):
    if not _has(df, gt(VALENCE), gt(AROUSAL)):
        return []
    v, a = _values(df, gt(VALENCE)), _values(df, gt(AROUSAL))
    min_len = max(2, int(round(s.constant_s * fps)))
    same = np.zeros(len(df), dtype=bool)
    same[1:] = (v[1:] == v[:-1]) & (a[1:] == a[:-1])  # NaN never equals: invalid frames break runs
    out = []
    for start, end in _runs(same):
        start -= 1  # the first frame of the run is the one the next frames repeat
        length = end - start + 1
        if length >= min_len:
            out.append(("va", "constant", start, end, float(min(1.0, length / (2 * min_len))),
                        f"V={v[start]:+.2f} A={a[start]:+.2f} unchanged for {length / fps:.1f} s"))
    return out


def _expr_flicker(df, s):
    if gt(EXPR) not in df:
        return []
    g = _values(df, gt(EXPR))
    g[g < 0] = np.nan
    n = len(df)
    change = np.flatnonzero(np.diff(g) != 0)  # NaN transitions count as changes too
    bounds = np.concatenate([[0], change + 1, [n]])
    out = []
    for i in range(1, len(bounds) - 2):
        a, b = bounds[i], bounds[i + 1] - 1
        before, label, after = g[a - 1], g[a], g[b + 1]
        if np.isnan(label) or np.isnan(before) or np.isnan(after):
            continue
        length = b - a + 1
        if length < s.expr_flicker:
            out.append(("expr", "flicker", max(0, a - s.context), min(n - 1, b + s.context),
                        float(1 - length / (s.expr_flicker + 1)),
                        f"{EXPRESSIONS[int(label)]} for {length} frame(s) between "
                        f"{EXPRESSIONS[int(before)]} and {EXPRESSIONS[int(after)]}"))
    return out


def _gaps(df, s):
    face = df[FACE].astype(bool).to_numpy() if FACE in df else None
    tasks = {"va": [gt(VALENCE), gt(AROUSAL)], "expr": [gt(EXPR)], "au": [gt(a) for a in AU_DECISIONS]}
    out = []
    for task, cols in tasks.items():
        if not _has(df, *cols):
            continue
        values = np.vstack([_values(df, c) for c in cols])
        invalid = np.isnan(values).any(axis=0) | (values < (-1 if task == "va" else 0)).any(axis=0)
        for a, b in _runs(invalid):
            if a == 0 or b == len(df) - 1:
                continue  # only gaps with annotated frames on both sides
            if face is None:
                score = 0.5
            else:
                score = float(face[a:b + 1].mean())
                if score == 0:
                    continue  # no face visible: an invalid annotation is expected there
            out.append((task, "gap", a, b, score,
                        f"{b - a + 1} unannotated frame(s) inside annotated ones"))
    return out


def _merge_overlaps(found: list[tuple]) -> list[tuple]:
    """One segment per overlapping group of the same task and kind (e.g. the jump up and back down of a
    one-frame spike): the highest score, details joined."""
    out: list[tuple] = []
    for seg in sorted(found, key=lambda f: (f[0], f[1], f[2])):
        task, kind, a, b, score, detail = seg
        if out and out[-1][:2] == (task, kind) and a <= out[-1][3]:
            _, _, pa, pb, pscore, pdetail = out[-1]
            out[-1] = (task, kind, pa, max(b, pb), max(score, pscore), f"{pdetail}; {detail}")
        else:
            out.append(seg)
    return out


def suspicious_segments(df: pd.DataFrame, fps: float, settings: ReviewSettings = ReviewSettings()
                        ) -> pd.DataFrame:
    """Ranked segments (task, kind, start_frame, end_frame, frames, start_s, end_s, score, detail).

    `df` has one row per frame in order, with `frame`, `time_s`, optionally `face`, prediction columns
    and `gt_` annotation columns; any missing column just removes the checks that need it.
    """
    found = (_va_disagreement(df, settings) + _expr_disagreement(df, settings)
             + _au_disagreement(df, settings) + _va_jumps(df, settings) + _va_constant(df, settings, fps)
             + _expr_flicker(df, settings) + _gaps(df, settings))
    found = _merge_overlaps(found)
    frames = df[FRAME].to_numpy()
    times = pd.to_numeric(df[TIME]).to_numpy()
    rows = [dict(task=task, kind=kind, start_frame=int(frames[a]), end_frame=int(frames[b]),
                 frames=int(b - a + 1), start_s=round(float(times[a]), 3), end_s=round(float(times[b]), 3),
                 score=round(score, 3), detail=detail)
            for task, kind, a, b, score, detail in found]
    queue = pd.DataFrame(rows, columns=SEGMENT_COLUMNS)
    return queue.sort_values(["score", "frames"], ascending=False, kind="stable").reset_index(drop=True)
