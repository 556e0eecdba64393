"""Find the stretches of a video worth a reviewer's look, and rank them.

Works on one video's per-frame table (predictions joined with `gt_` annotation columns, as in the team
contract). Two families of suspicion:
- the model does not back the annotation over a stretch: the annotation audit's scorer (core/audit.py:
  cleanlab label quality for EXPR and AU, scaled VA residuals; kinds label, offset, sign, lag, stuck).
  When the model was trained on these very annotations it has learnt their errors and agrees with them:
  such in-sample evidence is weaker, and every such segment says so (python -m training audit gives
  out-of-fold evidence for a whole dataset);
- the annotation looks wrong by itself: sudden VA jumps, one- or two-frame expression flickers,
  VA held exactly constant for a long time, invalid gaps inside annotated stretches where a face was
  visible.
Each segment gets a score in [0, 1]; the queue is sorted by score, longest first on ties.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core import audit
from core.labels import EXPRESSIONS, TASKS
from core.table import AROUSAL, AU_DECISIONS, AU_PROBS, EXPR, EXPR_PROBS, FACE, FRAME, TIME, VALENCE, gt

SEGMENT_COLUMNS = ["task", "kind", "start_frame", "end_frame", "frames", "start_s", "end_s", "score",
                   "detail"]
IN_SAMPLE = "in-sample: the model was trained on these annotations, weaker evidence"


@dataclass(frozen=True)
class ReviewSettings:
    audit: audit.AuditSettings = field(default_factory=audit.AuditSettings)  # the model-vs-annotation scorer
    va_jump: float = 0.4       # |change| between consecutive annotated frames that counts as a jump
    expr_flicker: int = 3      # an expression label held fewer frames than this, between others
    constant_s: float = 10.0   # VA annotation unchanged for this long
    context: int = 5           # frames shown either side of a jump or flicker


def _values(df: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(df[col], errors="coerce").astype("float64").to_numpy(dtype="float64", copy=True)


def _has(df: pd.DataFrame, *cols: str) -> bool:
    return all(c in df for c in cols)


def _columns(df: pd.DataFrame, cols) -> np.ndarray:
    return np.column_stack([_values(df, c) for c in cols])


def _expr_probs(df: pd.DataFrame) -> np.ndarray:
    """The model's class probabilities; a table with only the predicted class gives it probability 1."""
    if _has(df, *EXPR_PROBS):
        return _columns(df, EXPR_PROBS)
    pred = _values(df, EXPR)
    probs = np.full((len(pred), len(EXPRESSIONS)), np.nan)
    ok = ~np.isnan(pred)
    probs[ok] = np.eye(len(EXPRESSIONS))[pred[ok].astype(int)]
    return probs


def _model_segments(df: pd.DataFrame, fps: float, s: ReviewSettings, in_sample: bool | None) -> list[tuple]:
    """The audit's segments of this video (VA residuals scaled within the video)."""
    found = []
    if _has(df, VALENCE, AROUSAL, gt(VALENCE), gt(AROUSAL)):
        y, p = _columns(df, [gt(VALENCE), gt(AROUSAL)]), _columns(df, [VALENCE, AROUSAL])
        q = audit.va_quality(y, p, floor=s.audit.va_floor)
        found += [("va", *seg) for seg in audit.va_segments(y, p, q, fps, s.audit)]
    if _has(df, EXPR, gt(EXPR)):
        labels, probs = _values(df, gt(EXPR)), _expr_probs(df)
        q = audit.expr_quality(labels, probs, s.audit.expr_method)
        found += [("expr", *seg) for seg in audit.expr_segments(labels, probs, q, s.audit)]
    if _has(df, *AU_PROBS, *(gt(a) for a in AU_DECISIONS)):
        labels, probs = _columns(df, [gt(a) for a in AU_DECISIONS]), _columns(df, AU_PROBS)
        _, per_au = audit.au_quality(labels, probs)
        found += [("au", *seg) for seg in audit.au_segments(labels, probs, per_au, s.audit)]
    note = f"; {IN_SAMPLE}" if in_sample else ""
    return [(task, kind, a, b, score, detail + note) for task, a, b, score, kind, _, detail in found]


def trained_videos(metadata: dict) -> set[str] | None:
    """The videos a model was trained on, from its checkpoint's training record: the training split's layout
    names and, for uploads trained through `--uploads`, their review-database keys (the layout names them
    `upload-<hex>`; its database_keys.json maps them back); None where the record does not say (no record,
    or its dataset is not here)."""
    from core.affwild2_index import AffWild2Index
    from training.uploads import database_keys

    config = ((metadata or {}).get("training") or {}).get("config") or {}
    root = config.get("root")
    if not root or not Path(root).is_dir():
        return None
    index = AffWild2Index(root)
    names = {v for task in config.get("tasks", TASKS) for v in index.videos(task, "train")}
    keys = database_keys(root)
    return names | {keys[n] for n in names if n in keys}


def trained_on(metadata: dict, video: str) -> bool | None:
    """Whether a model was trained on this video's annotations (video: a layout name or a database key):
    True / False, or None where the record does not say."""
    seen = trained_videos(metadata)
    return None if seen is None else video in seen


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
    for start, end in audit.runs(same):
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
        for a, b in audit.runs(invalid):
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


def suspicious_segments(df: pd.DataFrame, fps: float, settings: ReviewSettings = ReviewSettings(),
                        in_sample: bool | None = None) -> pd.DataFrame:
    """Ranked segments (task, kind, start_frame, end_frame, frames, start_s, end_s, score, detail).

    `df` has one row per frame in order, with `frame`, `time_s`, optionally `face`, prediction columns
    and `gt_` annotation columns; any missing column just removes the checks that need it. in_sample:
    whether the model was trained on these annotations (trained_on()); True marks its segments as such.
    """
    found = (_model_segments(df, fps, settings, in_sample) + _va_jumps(df, settings) + _va_constant(df, settings, fps)
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
