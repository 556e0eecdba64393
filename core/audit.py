"""Annotation audit: where are a dataset's annotations most likely wrong?

Two steps. Frame scores: a label quality in [0, 1] per annotated frame (1: the prediction backs the
label), from out-of-fold predictions (a model that never saw the frame's video, else it has learnt the
label's errors): EXPR by cleanlab's self-confidence or normalised margin, AU as multi-label by cleanlab
(per AU, then cleanlab's aggregate), VA from the residual against the prediction less its video's median,
scaled by the residuals' spread in the same fold. Segments: an annotation error in video is a stretch, so
low-quality frames become runs (small gaps merged, a minimum length) scored by the median suspicion (a few
noisy frames cannot carry or sink a stretch) -- for EXPR and AU less that of the same label elsewhere in the
video, since a model that fails on one face all along says nothing about one stretch --, each with a kind
and a suggested label; and the errors continuous VA
annotation is known for get their own detectors: an annotator's lag (the trace fits the prediction
better shifted in time), a trace stuck at one value while the face changes, a sign or offset error over
a stretch.

Inputs are the training label table (video, frame, valence, arousal, expression, AU1..AU26) and
predictions aligned with its rows ({task: (N, dim)}, NaN rows: none), as in training/predictions.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from cleanlab.multilabel_classification import rank as multilabel_rank
from cleanlab.rank import get_label_quality_scores
from scipy.special import erfc

from core.labels import AUS, EXPRESSIONS, VA_NAMES
from core.table import AU_PROBS, EXPR_PROBS

SEGMENT_COLUMNS = ["video", "task", "kind", "start_frame", "end_frame", "frames", "score", "suggested",
                   "detail"]


@dataclass(frozen=True)
class AuditSettings:
    suspicious: float = 0.7      # an EXPR / AU frame is suspicious when 1 - quality is above this
    va_suspicious: float = 0.99  # a VA frame (two residuals, a continuous scale) when above this
    min_frames: int = 8          # shortest stretch reported (a few frames are noise, not an error)
    merge_gap: int = 4           # suspicious runs this close (frames between) become one stretch
    report: float = 0.5          # segment score from which a suggestion is shown by default
    expr_method: str = "self_confidence"   # or "normalized_margin" (cleanlab.rank)
    va_floor: float = 0.05       # least residual spread: a near-perfect fold does not make noise an error
    lag_window_s: float = 3.0    # window over which the trace is correlated with the prediction
    max_lag_s: float = 1.5       # longest lag looked for
    min_lag_s: float = 0.3       # shorter shifts are within what annotators normally do
    lag_gain: float = 0.5        # share of the lost correlation that a shift must win back ...
    lag_min_gain: float = 0.1    # ... and at least this much correlation
    stuck_s: float = 2.0         # an unchanged trace for this long ...
    stuck_move: float = 0.1      # ... while the prediction moves (std) at least this much


# -- frame scores ------------------------------------------------------------------------------------


def _rows_with(values: np.ndarray) -> np.ndarray:
    return ~np.isnan(values.reshape(len(values), -1)).any(axis=1)


def expr_quality(labels: np.ndarray, probs: np.ndarray, method: str = "self_confidence") -> np.ndarray:
    """Per frame, cleanlab's label quality of the annotated class (NaN: no label or no prediction)."""
    labels = np.asarray(labels, dtype=np.float64)
    out = np.full(len(labels), np.nan)
    ok = ~np.isnan(labels) & (labels >= 0) & _rows_with(probs)
    if ok.any():
        p = np.clip(probs[ok].astype(np.float64), 1e-12, None)
        out[ok] = get_label_quality_scores(labels[ok].astype(int), p / p.sum(axis=1, keepdims=True),
                                           method=method)
    return out


def au_quality(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per frame, per frame and AU) multi-label quality by cleanlab; NaN without a full label or prediction."""
    n, k = labels.shape
    frame, per_au = np.full(n, np.nan), np.full((n, k), np.nan)
    ok = _rows_with(labels) & _rows_with(probs)
    if ok.any():
        present = [list(np.flatnonzero(row > 0.5)) for row in labels[ok]]
        p = np.clip(probs[ok].astype(np.float64), 1e-6, 1 - 1e-6)
        frame[ok] = multilabel_rank.get_label_quality_scores(present, p)
        per_au[ok] = multilabel_rank.get_label_quality_scores_per_class(present, p)
    return frame, per_au


def va_quality(labels: np.ndarray, pred: np.ndarray, groups: np.ndarray | None = None,
               floor: float = 0.05, videos: np.ndarray | None = None) -> np.ndarray:
    """Per frame, the two-sided normal tail of the worse of V and A's residual, less its video's median
    residual (a model biased for one face all along says nothing about a stretch), in units of the robust
    spread (1.4826 MAD) of those residuals within the frame's group (its fold: each fold's model errs by its
    own amount); NaN without a label or prediction."""
    res = np.asarray(labels, dtype=np.float64) - np.asarray(pred, dtype=np.float64)
    ok = _rows_with(res)
    videos = np.zeros(len(res), dtype=np.int64) if videos is None else np.asarray(videos)
    for v in np.unique(videos):
        rows = (videos == v) & ok
        if rows.any():
            res[rows] -= np.median(res[rows], axis=0)
    groups = np.zeros(len(res), dtype=np.int64) if groups is None else np.asarray(groups)
    z = np.full(res.shape, np.nan)
    for g in np.unique(groups):
        rows = (groups == g) & ok
        if rows.any():
            r = res[rows]
            spread = np.maximum(1.4826 * np.median(np.abs(r), axis=0), floor)
            z[rows] = np.abs(r) / spread
    quality = erfc(np.nanmax(np.where(_rows_with(res)[:, None], z, 0.0), axis=1) / np.sqrt(2))
    return np.where(_rows_with(res), quality, np.nan)


# -- segments ----------------------------------------------------------------------------------------


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) positions, end inclusive, of the runs of True."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2])]


def stretches(suspicion: np.ndarray, threshold: float, settings: AuditSettings) -> list[tuple[int, int, float]]:
    """Runs where the running median of suspicion (over min_frames) is above threshold -- a few noisy
    frames neither start nor break one -- grown to the suspicious frames at its edges, gaps of up to
    merge_gap merged, at least min_frames long, each
    with its median suspicion over its scored frames: (start, end, score)."""
    s = np.asarray(suspicion, dtype=np.float64)
    smooth = pd.Series(s).rolling(settings.min_frames, center=True, min_periods=1).median().to_numpy()
    high = np.nan_to_num(s, nan=0.0) > threshold
    merged: list[list[int]] = []
    for a, b in runs(np.nan_to_num(smooth, nan=0.0) > threshold):
        while a > 0 and high[a - 1]:                 # the running median shaves the edges: grow them back
            a -= 1
        while b < len(s) - 1 and high[b + 1]:
            b += 1
        if merged and a - merged[-1][1] - 1 <= settings.merge_gap:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return [(a, b, float(np.nanmedian(s[a:b + 1]))) for a, b in merged
            if b - a + 1 >= settings.min_frames and not np.isnan(s[a:b + 1]).all()]


def _mode(values: np.ndarray) -> int:
    return int(pd.Series(values).mode().iloc[0])


def _contrast(suspicion: np.ndarray, labels: np.ndarray, a: int, b: int, label: int, score: float,
              reference: tuple[float, int] | None, settings: AuditSettings) -> float:
    """The stretch's score above the median suspicion of the frames with the same label elsewhere in the
    video -- a model that has trouble with this face and label all along says nothing about this stretch --;
    where the video has fewer than min_frames such frames, above their mean suspicion in the other videos
    (reference: (sum, count) of the label's suspicion over the dataset, this video included; None: 0)."""
    here = (labels == label) & ~np.isnan(suspicion)
    same = here.copy()
    same[a:b + 1] = False
    if same.sum() >= settings.min_frames:
        return max(0.0, score - float(np.median(suspicion[same])))
    total, count = reference or (0.0, 0)
    total, count = total - suspicion[here].sum(), count - here.sum()
    return max(0.0, score - (total / count if count > 0 else 0.0))


def _references(suspicion: np.ndarray, labels: np.ndarray, values) -> dict:
    """(sum, count) of the suspicion of the frames annotated with each value."""
    ok = ~np.isnan(suspicion)
    return {v: (float(suspicion[ok & (labels == v)].sum()), int((ok & (labels == v)).sum())) for v in values}


def expr_segments(labels, probs, quality, settings: AuditSettings, reference: dict | None = None) -> list[tuple]:
    """EXPR stretches whose label the prediction does not back, scored by their contrast with the same
    label elsewhere (_contrast; reference: class -> (sum, count) of its suspicion over the dataset);
    suggested: the most predicted class."""
    out = []
    suspicion = 1 - quality
    reference = reference or {}
    for a, b, score in stretches(suspicion, settings.suspicious, settings):
        keep = ~np.isnan(quality[a:b + 1])
        annotated = _mode(labels[a:b + 1][keep])
        suggested = _mode(np.nanargmax(probs[a:b + 1][keep], axis=1))
        score = _contrast(suspicion, labels, a, b, annotated, score, reference.get(annotated), settings)
        out.append((a, b, score, "label", {"expression": suggested},
                    f"annotated {EXPRESSIONS[annotated]}, predicted {EXPRESSIONS[suggested]}"))
    return out


def au_segments(labels, probs, per_au, settings: AuditSettings, reference: dict | None = None) -> list[tuple]:
    """Per AU, stretches where the prediction does not back the label (e.g. an AU stuck on or off), scored
    by their contrast with the same AU and state elsewhere (reference: (AU index, state) -> (sum, count)
    of its suspicion over the dataset); suggested: the predicted state of that AU."""
    out = []
    reference = reference or {}
    for j, au in enumerate(AUS):
        suspicion = 1 - per_au[:, j]
        for a, b, score in stretches(suspicion, settings.suspicious, settings):
            keep = ~np.isnan(per_au[a:b + 1, j])
            annotated = _mode(labels[a:b + 1, j][keep].astype(int))
            predicted = int(np.nanmedian(probs[a:b + 1, j][keep]) > 0.5)
            kind = "stuck" if np.ptp(labels[a:b + 1, j][keep]) == 0 else "label"
            score = _contrast(suspicion, labels[:, j], a, b, annotated, score, reference.get((j, annotated)),
                              settings)
            out.append((a, b, score, kind, {au: predicted},
                        f"{au} annotated {annotated}, predicted probability "
                        f"{float(np.nanmedian(probs[a:b + 1, j][keep])):.2f}"))
    return out


def _va_kind(y: np.ndarray, p: np.ndarray) -> tuple[str, str]:
    """What explains a VA stretch's disagreement best: a constant offset, a flipped sign, or neither."""
    ok = _rows_with(y) & _rows_with(p)
    y, p = y[ok], p[ok]
    offset = np.median(y - p, axis=0)
    errors = {"label": np.abs(y - p).mean(), "offset": np.abs(y - p - offset).mean(),
              "sign": np.abs(y + p).mean()}
    kind = min(errors, key=errors.get)
    if errors[kind] > 0.5 * errors["label"]:
        kind = "label"      # neither explains it well: a plain disagreement
    if kind == "offset":
        return kind, "offset " + ", ".join(f"{n} {o:+.2f}" for n, o in zip(VA_NAMES, offset))
    return kind, ("sign flipped" if kind == "sign" else f"mean |error| {errors['label']:.2f}")


def _suggested_va(p: np.ndarray) -> dict:
    med = np.clip(np.nanmedian(p, axis=0), -1, 1)
    return {"valence": round(float(med[0]), 3), "arousal": round(float(med[1]), 3)}


def va_segments(labels, pred, quality, fps: float, settings: AuditSettings) -> list[tuple]:
    """VA stretches: residual outliers (kind offset, sign or label), annotator lag, stuck traces.
    Of overlapping findings the one that explains most is kept: a named kind before a plain disagreement
    (a lagged trace also leaves residual outliers), then the higher score."""
    found = []
    for a, b, score in stretches(1 - quality, settings.va_suspicious, settings):
        kind, detail = _va_kind(labels[a:b + 1], pred[a:b + 1])
        found.append((a, b, score, kind, _suggested_va(pred[a:b + 1]), detail))
    found += lag_segments(labels, pred, fps, settings) + stuck_segments(labels, pred, fps, settings)
    kept: list[tuple] = []
    for seg in sorted(found, key=lambda f: (f[3] == "label", -f[2], f[0])):
        if all(seg[1] < k[0] or seg[0] > k[1] for k in kept):
            kept.append(seg)
    return sorted(kept, key=lambda f: f[0])


def lag_segments(labels, pred, fps: float, settings: AuditSettings) -> list[tuple]:
    """Stretches where the trace correlates much better with the prediction shifted in time: in a window
    of lag_window_s around each frame, the correlation r(L) of annotation(t) with prediction(t - L) for
    |L| <= max_lag_s; suspicion = the share of the lost correlation 1 - r(0) that the best shift wins back,
    where that shift is at least min_lag_s and wins back lag_gain of it and lag_min_gain or more. A lag is a property of a stretch
    at least half a window long."""
    window = max(3, int(round(settings.lag_window_s * fps)))
    max_lag, min_lag = int(round(settings.max_lag_s * fps)), max(1, int(round(settings.min_lag_s * fps)))
    out = []
    for d, name in enumerate(VA_NAMES):
        y = pd.Series(labels[:, d])
        p = pd.Series(pred[:, d])
        lags = np.arange(-max_lag, max_lag + 1)
        corr = np.vstack([_rolling_corr(y, p.shift(lag), window) for lag in lags])
        best = corr.argmax(axis=0)
        r0, rb = corr[max_lag], corr[best, np.arange(len(y))]
        won = (rb - r0) / np.maximum(1 - r0, 1e-6)
        flagged = (np.abs(lags[best]) >= min_lag) & (won >= settings.lag_gain) & (rb - r0 >= settings.lag_min_gain)
        suspicion = np.where(flagged, won, 0.0)
        longer = AuditSettings(min_frames=max(settings.min_frames, window // 2), merge_gap=settings.merge_gap)
        for a, b, score in stretches(suspicion, 0.0, longer):
            shift = int(np.median(lags[best[a:b + 1]]))
            out.append((a, b, score, "lag", _suggested_va(pred[a:b + 1]),
                        f"{name} lags the prediction by {shift / fps:+.2f} s ({shift:+d} frames)"))
    return out


def _rolling_corr(y: pd.Series, p: pd.Series, window: int, least_std: float = 0.01) -> np.ndarray:
    """Pearson correlation over a centred window; -1 where either side hardly moves there (the
    correlation of a flat stretch is noise)."""
    roll = dict(window=window, center=True, min_periods=window // 2)
    corr = y.rolling(**roll).corr(p).to_numpy()
    moving = (y.rolling(**roll).std().to_numpy() >= least_std) & (p.rolling(**roll).std().to_numpy() >= least_std)
    return np.where(moving & np.isfinite(corr), corr, -1.0)


def stuck_segments(labels, pred, fps: float, settings: AuditSettings) -> list[tuple]:
    """Stretches of at least stuck_s where V or A never changes while the prediction moves; scored by how
    much it moves (std / (2 stuck_move), at most 1)."""
    least = max(2, int(round(settings.stuck_s * fps)))
    out = []
    for d, name in enumerate(VA_NAMES):
        y = labels[:, d]
        same = np.zeros(len(y), dtype=bool)
        same[1:] = y[1:] == y[:-1]           # NaN never equals: unlabelled frames end a run
        for a, b in runs(same):
            a -= 1                            # the first frame is the one the others repeat
            move = float(np.nanstd(pred[a:b + 1, d]))
            if b - a + 1 >= least and move >= settings.stuck_move:
                out.append((a, b, min(1.0, move / (2 * settings.stuck_move)), "stuck",
                            _suggested_va(pred[a:b + 1]),
                            f"{name} held at {y[a]:+.2f} for {(b - a + 1) / fps:.1f} s; prediction std {move:.2f}"))
    return out


# -- a dataset ---------------------------------------------------------------------------------------


def frame_scores(table: pd.DataFrame, preds: dict, folds: np.ndarray | None = None,
                 settings: AuditSettings = AuditSettings()) -> dict[str, np.ndarray]:
    """Per task, quality (N,) over the table's rows (au also au_per (N, 12)); NaN where unscored."""
    out = {}
    if "expr" in preds:
        labels = table["expression"].to_numpy(dtype="float64", na_value=np.nan)
        out["expr"] = expr_quality(labels, preds["expr"], settings.expr_method)
    if "au" in preds:
        out["au"], out["au_per"] = au_quality(table[list(AUS)].to_numpy(dtype="float64", na_value=np.nan),
                                              preds["au"])
    if "va" in preds:
        out["va"] = va_quality(table[list(VA_NAMES)].to_numpy(dtype="float64", na_value=np.nan), preds["va"],
                               folds, settings.va_floor, table["video"].to_numpy())
    return out


def find_segments(table: pd.DataFrame, preds: dict, scores: dict, fps: dict | float = 30.0,
                  settings: AuditSettings = AuditSettings()) -> pd.DataFrame:
    """Suggested segments of every video (SEGMENT_COLUMNS), best first; frames are the table's frame
    numbers (a stretch spans table rows in frame order). fps: one rate or video -> rate."""
    rows = []
    frames_all = table["frame"].to_numpy()
    va_all = table[list(VA_NAMES)].to_numpy(dtype="float64", na_value=np.nan)
    au_all = table[list(AUS)].to_numpy(dtype="float64", na_value=np.nan)
    expr_all = table["expression"].to_numpy(dtype="float64", na_value=np.nan)
    refs = {}
    if "expr" in scores:
        refs["expr"] = _references(1 - scores["expr"], expr_all, range(len(EXPRESSIONS)))
    if "au" in scores:
        refs["au"] = {(j, v): r for j in range(len(AUS))
                      for v, r in _references(1 - scores["au_per"][:, j], au_all[:, j], (0, 1)).items()}
    order = table.sort_values(["video", "frame"], kind="stable")
    for video, idx in order.groupby("video", sort=False).groups.items():
        r = np.asarray(table.index.get_indexer(idx))
        rate = fps.get(video, 30.0) if isinstance(fps, dict) else fps
        found = []
        if "expr" in scores:
            found += [("expr", *s) for s in expr_segments(expr_all[r], preds["expr"][r], scores["expr"][r], settings,
                                                          refs["expr"])]
        if "au" in scores:
            found += [("au", *s) for s in au_segments(au_all[r], preds["au"][r], scores["au_per"][r], settings,
                                                      refs["au"])]
        if "va" in scores:
            found += [("va", *s) for s in va_segments(va_all[r], preds["va"][r].astype(np.float64),
                                                      scores["va"][r], rate, settings)]
        frames = frames_all[r]
        rows += [dict(video=video, task=task, kind=kind, start_frame=int(frames[a]), end_frame=int(frames[b]),
                      frames=int(b - a + 1), score=round(float(score), 4), suggested=suggested, detail=detail)
                 for task, a, b, score, kind, suggested, detail in found]
    queue = pd.DataFrame(rows, columns=SEGMENT_COLUMNS)
    return queue.sort_values(["score", "frames"], ascending=False, kind="stable").reset_index(drop=True)


def oof_frames(out_dir, video: str) -> pd.DataFrame:
    """One video's out-of-fold predictions from an audit run's oof.npz (its folder is the run's
    settings["out"]): frame, fold, valence, arousal, p_<expression>..., p_<AU>... (core.table's names),
    in frame order; the columns of the tasks the run audited."""
    with np.load(Path(out_dir) / "oof.npz") as z:
        rows = np.flatnonzero(z["video"] == video)
        out = pd.DataFrame({"frame": z["frame"][rows], "fold": z["fold"][rows]})
        names = {"va": list(VA_NAMES), "expr": EXPR_PROBS, "au": AU_PROBS}
        for task, cols in names.items():
            if task in z:
                out[cols] = z[task][rows]
    return out.sort_values("frame", kind="stable").reset_index(drop=True)
