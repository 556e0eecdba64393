"""ABAW challenge metrics, computed as the organisers define them (pooled over all valid frames of a split).

- CCC with population moments; P_VA = (CCC_valence + CCC_arousal) / 2.
- P_EXPR = mean binary F1 over all 8 classes; a class that is neither predicted nor present scores 0
  (unlike scikit-learn's macro average, which leaves such classes out).
- P_AU = mean binary F1 over the 12 AUs at threshold 0.5 (or per-AU thresholds chosen on validation data).
- 7th ABAW multi-task score = P_VA + P_EXPR + P_AU.

Frames whose ground truth is missing (NaN, <NA>) or an invalid marker (-5 VA, -1 EXPR/AU) are left out.
A frame with valid ground truth but no prediction (NaN, <NA>) is never dropped silently: the scores refuse
it (ValueError), or, with allow_missing=True, score the other frames and count it in the result's
"missing_predictions" (frames with at least one such label). An undefined score (no valid frame, zero
variance, no positive anywhere) is 0.0, never NaN.

score_task / score_table are the one scorer of predictions against labels that the page's metrics, the
agreement figures, training and `python -m core.evaluate` share. They fix, once:
- the valid frames: VA where both values are valid, EXPR where the class is, AU where any AU is (each AU
  then on its own valid frames);
- the missing-prediction rule: a labelled frame without a prediction is left out of the figures and
  counted (TaskScore.missing); a figure from fewer than MIN_FRAMES scored frames is None ("n/a"), so a
  model without VA or AU heads gets "n/a", never 0;
- the AU policy: a table's AU decision columns, made by core.table at the thresholds of the checkpoint
  whose heads gave the AUs (its tuned ones when it records them, 0.5 otherwise: au_policy says which);
  arrays of probabilities are decided at the thresholds passed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from dataclasses import dataclass, field

from core.affwild2 import LABEL_COLUMNS
from core.labels import AUS, EXPRESSIONS, INVALID_AU, INVALID_EXPR, INVALID_VA, TASKS, VA_NAMES
from core.table import FRAME, GT_RENAME, TASK_COLUMNS, expr_outputs, output_expr

# Default per-AU threshold grid for optimise_au_thresholds.
THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.01), 2)
MIN_FRAMES = 2          # a figure from fewer scored frames is None ("n/a")


def _as_float(values, columns=None) -> np.ndarray:
    """Any array-like (numpy, list, pandas with <NA>) as float64, missing values as NaN."""
    if isinstance(values, pd.DataFrame) and columns is not None and set(columns) <= set(values.columns):
        values = values[list(columns)]
    if isinstance(values, (pd.DataFrame, pd.Series, pd.api.extensions.ExtensionArray)):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = np.where(pd.isna(arr), np.nan, arr)
    return arr.astype("float64")


def _same_length(pred: np.ndarray, gt: np.ndarray, what: str) -> None:
    if pred.shape[0] != gt.shape[0]:
        raise ValueError(f"{what}: predictions have {pred.shape[0]} frames, ground truth {gt.shape[0]}")


def _missing(pred_nan: np.ndarray, gt_valid: np.ndarray, what: str, allow_missing: bool) -> dict:
    """Frames (rows) with a valid label but no prediction: refused, or counted when allow_missing."""
    lacking = pred_nan & gt_valid
    if lacking.ndim == 2:
        lacking, gt_valid = lacking.any(axis=1), gt_valid.any(axis=1)
    n = int(lacking.sum())
    if allow_missing:
        return {"missing_predictions": n}
    if n:
        raise ValueError(f"{what}: {n} of {int(gt_valid.sum())} frames with ground truth have no prediction; "
                         "predict every frame, or pass allow_missing=True to score the rest and count them")
    return {}


def _ccc_valid(x: np.ndarray, y: np.ndarray) -> float:
    # A constant series has zero covariance with anything: CCC is 0 (also when both are constant, where
    # the formula is 0/0, and without float round-off passing for variance).
    if x.size == 0 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    mx, my = x.mean(), y.mean()
    vx, vy = x.var(), y.var()
    cov = ((x - mx) * (y - my)).mean()
    denom = vx + vy + (mx - my) ** 2
    return float(2 * cov / denom) if denom > 0 else 0.0


def _va_valid(gt: np.ndarray) -> np.ndarray:
    return ~np.isnan(gt) & (gt != INVALID_VA)


def ccc(pred, gt) -> float:
    """Concordance correlation coefficient of two 1-D series over the frames with valid ground truth;
    every such frame needs a prediction."""
    x, y = _as_float(pred).ravel(), _as_float(gt).ravel()
    _same_length(x, y, "ccc")
    keep = _va_valid(y)
    _missing(np.isnan(x), keep, "ccc", allow_missing=False)
    return _ccc_valid(x[keep], y[keep])


def va_scores(pred, gt, allow_missing: bool = False) -> dict:
    """CCC of valence and arousal and P_VA. pred, gt: (N, 2) arrays or tables with valence, arousal."""
    p, g = _as_float(pred, VA_NAMES), _as_float(gt, VA_NAMES)
    if p.ndim != 2 or p.shape[1:] != (2,) or g.shape[1:] != (2,):
        raise ValueError(f"va_scores needs (N, 2) inputs, got {p.shape} and {g.shape}")
    _same_length(p, g, "va_scores")
    missing = _missing(np.isnan(p), _va_valid(g), "va_scores", allow_missing)
    cv, ca = (ccc(p[~np.isnan(p[:, k]), k], g[~np.isnan(p[:, k]), k]) for k in range(2))
    return {"ccc_valence": cv, "ccc_arousal": ca, "p_va": (cv + ca) / 2, **missing}


def _f1(pred: np.ndarray, gt: np.ndarray) -> float:
    """Binary F1 of boolean arrays; 0.0 when there is no positive in either."""
    tp = np.sum(pred & gt)
    fp = np.sum(pred & ~gt)
    fn = np.sum(~pred & gt)
    denom = 2 * tp + fp + fn
    return float(2 * tp / denom) if denom > 0 else 0.0


def expr_scores(pred, gt, allow_missing: bool = False) -> dict:
    """Per-class F1 over the 8 Aff-Wild2 expressions and P_EXPR (their plain mean).

    pred: class indices (N,) (or a table with an "expression" column), or scores (N, 8) whose argmax is
    taken; gt: class indices (N,) or a table with an "expression" column.
    """
    p, g = _as_float(pred, ["expression"]), _as_float(gt, ["expression"]).ravel()
    if p.ndim == 2 and p.shape[1] != 1:
        if p.shape[1] != len(EXPRESSIONS):
            raise ValueError(f"expr_scores: scores need {len(EXPRESSIONS)} columns, got {p.shape[1]}")
        p = np.where(np.isnan(p).any(axis=1), np.nan, np.argmax(np.nan_to_num(p, nan=-np.inf), axis=1))
    p = p.ravel()
    _same_length(p, g, "expr_scores")
    valid = ~np.isnan(g) & (g != INVALID_EXPR)
    missing = _missing(np.isnan(p), valid, "expr_scores", allow_missing)
    keep = valid & ~np.isnan(p)
    p, g = p[keep], g[keep]
    for name, labels in (("predictions", p), ("ground truth", g)):
        bad = (labels != np.round(labels)) | (labels < 0) | (labels >= len(EXPRESSIONS))
        if bad.any():
            raise ValueError(f"expr_scores: {name} hold {labels[bad][0]!r}, not a class index 0..7")
    f1 = [_f1(p == c, g == c) for c in range(len(EXPRESSIONS))]
    return {"f1_per_class": f1, "p_expr": float(np.mean(f1)), **missing}


def _au_arrays(pred, gt, what: str, allow_missing: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    p, g = _as_float(pred, AUS), _as_float(gt, AUS)
    if p.ndim != 2 or p.shape[1:] != (len(AUS),) or g.shape[1:] != (len(AUS),):
        raise ValueError(f"{what} needs (N, {len(AUS)}) inputs, got {p.shape} and {g.shape}")
    _same_length(p, g, what)
    g = np.where(g == INVALID_AU, np.nan, g)
    if np.any(~np.isnan(g) & (g != 0) & (g != 1)):
        raise ValueError(f"{what}: ground truth AU values must be 0, 1 or invalid")
    return p, g, _missing(np.isnan(p), ~np.isnan(g), what, allow_missing)


def au_scores(pred, gt, thresholds=0.5, allow_missing: bool = False) -> dict:
    """Per-AU binary F1 and P_AU (their mean).

    pred: probabilities or 0/1 decisions (N, 12), positive where pred >= threshold; thresholds: one
    number or one per AU (e.g. from optimise_au_thresholds). gt: 0/1 (N, 12); each AU uses its own
    valid frames.
    """
    p, g, missing = _au_arrays(pred, gt, "au_scores", allow_missing)
    thr = np.broadcast_to(np.asarray(thresholds, dtype="float64"), (len(AUS),))
    f1 = []
    for k in range(len(AUS)):
        keep = ~np.isnan(p[:, k]) & ~np.isnan(g[:, k])
        f1.append(_f1(p[keep, k] >= thr[k], g[keep, k] == 1))
    return {"f1_per_au": f1, "p_au": float(np.mean(f1)), **missing}


def optimise_au_thresholds(probs, gt, grid=THRESHOLD_GRID) -> np.ndarray:
    """Per-AU decision thresholds that maximise each AU's F1 on (validation) data, by grid search.

    Ties go to the threshold nearest 0.5; an AU without valid frames keeps 0.5.
    """
    p, g, _ = _au_arrays(probs, gt, "optimise_au_thresholds")
    grid = np.asarray(grid, dtype="float64")
    # Try candidates nearest 0.5 first so that a strict ">" keeps the nearest one among equal scores.
    candidates = grid[np.argsort(np.abs(grid - 0.5), kind="stable")]
    best = np.full(len(AUS), 0.5)
    for k in range(len(AUS)):
        keep = ~np.isnan(p[:, k]) & ~np.isnan(g[:, k])
        if not keep.any():
            continue
        scores, truth = p[keep, k], g[keep, k] == 1
        top = -1.0
        for t in candidates:
            f = _f1(scores >= t, truth)
            if f > top:
                best[k], top = t, f
    return best


# ---------------------------------------------------------------------------------------------------
# The one scorer


@dataclass(frozen=True)
class TaskScore:
    """One output's figures for one task. values: ccc_valence, ccc_arousal, p_va / p_expr, f1_per_class /
    p_au, f1_per_au, each None ("n/a") when fewer than MIN_FRAMES frames could be scored. frames: frames
    with a valid label; missing: those of them without a prediction, left out of the values."""

    task: str
    values: dict = field(default_factory=dict)
    frames: int = 0
    missing: int = 0

    @property
    def scored(self) -> int:
        return self.frames - self.missing

    @property
    def main(self) -> float | None:
        """The task's ABAW figure: P_VA, P_EXPR or P_AU."""
        return self.values[f"p_{self.task}"]


_FIGURES = {"va": ("ccc_valence", "ccc_arousal", "p_va"), "expr": ("f1_per_class", "p_expr"),
            "au": ("f1_per_au", "p_au")}


def score_task(task: str, pred, truth, au_thresholds=0.5) -> TaskScore:
    """Predictions against labels of one task, row by row. pred: va (N, 2); expr class indices (N,) or
    (N, 1), or probabilities (N, 8); au probabilities or 0/1 decisions (N, 12), positive at >= the
    thresholds (one number or one per AU). truth: the labels as core.affwild2 reads them, (N, 2) / (N,)
    or (N, 1) / (N, 12), NaN or the invalid marker where there is none."""
    p, g = _as_float(pred), _as_float(truth)
    if task == "va":
        labelled = _va_valid(g).all(axis=1)
    elif task == "expr":
        g = g.reshape(len(g), -1)[:, 0]
        labelled = ~np.isnan(g) & (g != INVALID_EXPR)
        if p.ndim == 2 and p.shape[1] == len(EXPRESSIONS):
            p = np.where(np.isnan(p).any(axis=1), np.nan, np.argmax(np.nan_to_num(p, nan=-np.inf), axis=1))
        p = p.reshape(len(p), -1)
    elif task == "au":
        labelled = ((~np.isnan(g)) & (g != INVALID_AU)).any(axis=1)
    else:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    _same_length(p, g, f"score_task({task})")
    keep = labelled & ~np.isnan(p).any(axis=1)
    frames, scored = int(labelled.sum()), int(keep.sum())
    values = dict.fromkeys(_FIGURES[task])
    if scored >= MIN_FRAMES:
        if task == "va":
            values = va_scores(p[keep], g[keep])
        elif task == "expr":
            values = expr_scores(p[keep, 0], g[keep])
        else:
            values = au_scores(p[keep], g[keep], au_thresholds)
    return TaskScore(task, {k: values[k] for k in _FIGURES[task]}, frames, frames - scored)


def table_truth(table: pd.DataFrame) -> pd.DataFrame:
    """The ground truth joined to a predictions table (its gt_ columns) as annotation columns by frame."""
    back = {gt: label for label, gt in GT_RENAME.items() if gt in table}
    return table.set_index(FRAME)[list(back)].rename(columns=back)


def score_table(table: pd.DataFrame, truth: pd.DataFrame | None = None, tasks=TASKS) -> dict[str, TaskScore]:
    """Every output of a predictions table (core.table: va, expr, au and each further expression output,
    keyed as core.table.expr_outputs names them) against labels, for the tasks that have labels.
    truth: annotation columns (core.affwild2.LABEL_COLUMNS) indexed by frame, frames the table lacks
    counting as missing; None: the table's own gt_ columns. AUs are the table's decisions (see au_policy)."""
    truth = table_truth(table) if truth is None else truth
    pred = table.set_index(FRAME).reindex(truth.index)
    out = {}
    for task in tasks:
        if not set(LABEL_COLUMNS[task]) <= set(truth.columns) or truth[LABEL_COLUMNS[task]].isna().all().all():
            continue
        labels = truth[LABEL_COLUMNS[task]]
        columns = {task: TASK_COLUMNS[task]}
        if task == "expr":
            columns.update({output: [output_expr(output)] for output in expr_outputs(table)})
        for output, cols in columns.items():
            if set(cols) <= set(pred.columns):
                out[output] = score_task(task, pred[cols], labels)
    return out


def au_policy(thresholds) -> str:
    """The AU decision thresholds of a run in words: 0.5, or the checkpoint's tuned ones."""
    thr = np.broadcast_to(np.asarray(thresholds, dtype="float64"), (len(AUS),))
    return "0.5" if np.all(thr == 0.5) else "the checkpoint's tuned thresholds"
