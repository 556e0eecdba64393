"""One calibrated score for the annotation audit, fitted on the user's own data.

A raw segment score (core/audit.py) means different things for EXPR swaps, AU runs and VA lags. To put them
on one scale the audit plants synthetic errors of every kind it looks for into a copy of the labels of part
of the videos, scores that copy with the same out-of-fold predictions (a planted frame's prediction comes
from a model that never saw its video, as for a real error), and fits, per task and suggestion kind, an
isotonic map (scikit-learn) from raw score to the share of suggestions that hit a planted stretch: the
estimated probability that a suggestion is wrong annotation. Suggestions on the copy that hit no plant count
as false alarms, real errors of those videos included, so the estimate errs low. The default report
threshold is the lowest calibrated score at which the copy's false alarms stay under `max_false_alarms` per
ten minutes of its unplanted annotation; recall and precision on the plants at that threshold are reported.
Real suggestions come from the unplanted labels only, so they never include planted frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from core.labels import AUS, EXPRESSIONS, VA_NAMES

PLANT_KINDS = {"expr": ("swap",), "au": ("flip", "stuck"), "va": ("offset", "sign", "lag", "stuck")}
MIN_GROUP = 20          # a task and kind with fewer calibration segments uses its task's pooled map


@dataclass(frozen=True)
class CalibrationSettings:
    rounds: int = 4                 # plant draws, each into a random half of the videos
    share: float = 0.08             # of a planted video's labelled frames per task put into plants (at least
                                    # two shortest plants' worth, so that short videos get one)
    min_frames: int = 8             # shortest plant ...
    max_s: float = 5.0              # ... and longest
    max_false_alarms: float = 1.0   # per ten minutes of clean annotation, at the default threshold
    seed: int = 0


def _valid_run(valid: np.ndarray, length: int, used: np.ndarray, rng) -> tuple[int, int] | None:
    """A random start of `length` valid, unused frames (5 frames clear of other plants), or None."""
    ok = valid & ~used
    window = np.convolve(ok.astype(int), np.ones(length, int), mode="valid") == length
    near = np.convolve(used.astype(int), np.ones(length + 10, int), mode="full")     # used frames within 5 of a run
    clear = near[length + 4:length + 4 + len(window)] == 0
    starts = np.flatnonzero(window & clear)
    if not len(starts):
        return None
    a = int(rng.choice(starts))
    return a, a + length - 1


def _plant_one(task: str, kind: str, y: np.ndarray, a: int, b: int, fps: float, rng) -> np.ndarray | None:
    """The stretch's new labels (y: the video's labels of the task, frames in order), None if the kind cannot
    show here (e.g. no sign to flip)."""
    part = y[a:b + 1].copy()
    if task == "expr":
        others = [k for k in range(len(EXPRESSIONS)) if k not in set(part.ravel().astype(int))]
        return np.full_like(part, rng.choice(others))
    if task == "au":
        j = int(rng.integers(len(AUS)))
        part[:, j] = 1 - part[:, j] if kind == "flip" else float(part[:, j].mean() < 0.5)
        return part
    if kind == "offset":
        d = int(rng.integers(2))
        part[:, d] = np.clip(part[:, d] + np.where(part[:, d].mean() < 0, 0.5, -0.5), -1, 1)
        return part
    if kind == "sign":
        return -part if np.abs(part).mean() >= 0.1 else None
    if kind == "lag":
        lag = int(round(fps * rng.uniform(0.5, 1.5)))
        return y[a - lag:b + 1 - lag].copy() if a >= lag and not np.isnan(y[a - lag:b + 1 - lag]).any() else None
    return np.repeat(part[:1], len(part), axis=0)       # stuck at its first value


def _columns(task: str) -> list[str]:
    return {"expr": ["expression"], "au": list(AUS), "va": list(VA_NAMES)}[task]


def plant(table: pd.DataFrame, videos, fps: dict, settings: CalibrationSettings, rng,
          tasks=tuple(PLANT_KINDS)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A copy of the label table with stretch errors of every kind planted into `videos` (each task: about
    settings.share of the video's labelled frames, at least 2 min_frames, lengths log-uniform from min_frames
    to max_s, at most a third of the video), and the
    plants (video, task, kind, start_frame, end_frame)."""
    out = table.copy()
    plants = []
    for video in videos:
        rows = np.flatnonzero(table["video"].to_numpy() == video)
        rows = rows[np.argsort(table["frame"].to_numpy()[rows], kind="stable")]
        rate = fps[video]
        for task in tasks:
            cols = _columns(task)
            y = out[cols].to_numpy(dtype="float64", na_value=np.nan)[rows]
            valid = ~np.isnan(y).any(axis=1) & (y >= 0).all(axis=1) if task != "va" else ~np.isnan(y).any(axis=1)
            budget = max(int(settings.share * valid.sum()), 2 * settings.min_frames)
            used = np.zeros(len(rows), bool)
            for _ in range(20):                     # tries; kinds that cannot show here are skipped
                longest = min(settings.max_s * rate, budget, len(rows) // 3)
                if longest < settings.min_frames:
                    break
                kind = str(rng.choice(PLANT_KINDS[task]))
                length = int(round(np.exp(rng.uniform(np.log(settings.min_frames), np.log(longest)))))
                if kind in ("lag", "stuck") and task == "va":
                    length = max(length, int(round(2 * rate)))        # shorter ones are what annotators do
                span = _valid_run(valid, length, used, rng) if length <= longest else None
                new = None if span is None else _plant_one(task, kind, y, *span, rate, rng)
                if new is None:
                    continue
                a, b = span
                y[a:b + 1] = new
                used[a:b + 1] = True
                budget -= length
                frames = table["frame"].to_numpy()[rows]
                plants.append({"video": video, "task": task, "kind": kind, "start_frame": int(frames[a]),
                               "end_frame": int(frames[b])})
            for j, col in enumerate(cols):
                values = out[col].to_numpy(dtype="float64", na_value=np.nan, copy=True)
                values[rows] = y[:, j]
                out[col] = pd.Series(values, index=out.index).astype(out[col].dtype)
    return out, pd.DataFrame(plants, columns=["video", "task", "kind", "start_frame", "end_frame"])


def hits(segments: pd.DataFrame, plants: pd.DataFrame) -> np.ndarray:
    """Per segment, whether it overlaps a plant of its video and task with intersection over union >= 0.5."""
    out = np.zeros(len(segments), bool)
    for i, s in enumerate(segments.itertuples(index=False)):
        p = plants[(plants["video"] == s.video) & (plants["task"] == s.task)]
        inter = np.minimum(p["end_frame"], s.end_frame) - np.maximum(p["start_frame"], s.start_frame) + 1
        union = np.maximum(p["end_frame"], s.end_frame) - np.minimum(p["start_frame"], s.start_frame) + 1
        out[i] = bool((np.maximum(inter, 0) / union >= 0.5).any())
    return out


@dataclass
class Calibration:
    """Raw score -> probability wrong, per (task, kind) (or task); the default threshold and what it means."""
    maps: dict
    threshold: float
    summary: dict

    def apply(self, segments: pd.DataFrame) -> np.ndarray:
        out = np.zeros(len(segments))
        for i, s in enumerate(segments.itertuples(index=False)):
            m = self.maps.get((s.task, s.kind), self.maps.get(s.task))
            out[i] = float(m.predict([s.score])[0]) if m is not None else 0.0
        return out


def _isotonic(raw: np.ndarray, hit: np.ndarray) -> IsotonicRegression:
    return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, hit.astype(float))


def _hit_plants(segments: pd.DataFrame, plants: pd.DataFrame) -> set:
    """(round, plant index) of the plants that some segment hits."""
    out = set()
    for s in segments.itertuples(index=False):
        p = plants[(plants["round"] == s.round) & (plants["video"] == s.video) & (plants["task"] == s.task)]
        inter = np.minimum(p["end_frame"], s.end_frame) - np.maximum(p["start_frame"], s.start_frame) + 1
        union = np.maximum(p["end_frame"], s.end_frame) - np.minimum(p["start_frame"], s.start_frame) + 1
        out |= {(s.round, i) for i in p.index[np.maximum(inter, 0) / union >= 0.5]}
    return out


def fit(found: pd.DataFrame, plants: pd.DataFrame, clean_minutes: float, settings: CalibrationSettings) -> Calibration:
    """The maps, the default threshold and its figures from the planted copies: found, their segments
    (task, kind, raw score, round, video, frames, hit); plants, every plant (with its round); clean_minutes,
    the planted videos' annotation summed over the rounds."""
    maps = {}
    for task, part in found.groupby("task"):
        maps[task] = _isotonic(part["score"].to_numpy(), part["hit"].to_numpy())
        for kind, sub in part.groupby("kind"):
            if len(sub) >= MIN_GROUP and 0 < sub["hit"].sum() < len(sub):
                maps[(task, kind)] = _isotonic(sub["score"].to_numpy(), sub["hit"].to_numpy())
    cal = Calibration(maps, 1.0, {})
    p = cal.apply(found)
    hit = found["hit"].to_numpy(bool)

    def alarms(above):
        return float((~hit & above).sum() / max(clean_minutes, 1e-9) * 10)

    threshold = 1.0
    for t in sorted(set(np.round(p, 6)), reverse=True):
        if alarms(p >= t) >= settings.max_false_alarms:
            break
        threshold = float(t)
    above = p >= threshold
    found_plants = _hit_plants(found[above], plants)
    recall = {f"{task}/{kind}": round(sum((r, i) in found_plants for i, r in zip(g.index, g["round"])) / len(g), 3)
              for (task, kind), g in plants.groupby(["task", "kind"])}
    cal.threshold = threshold
    cal.summary = {"threshold": round(threshold, 4),
                   "expected_precision": round(float(hit[above].mean()), 4) if above.any() else None,
                   "recall": recall, "false_alarms_per_10_min": round(alarms(above), 3),
                   "clean_minutes": round(clean_minutes, 2), "plants": int(len(plants)),
                   "segments": int(len(found)), "hits": int(hit.sum())}
    return cal


def calibrate(table: pd.DataFrame, preds: dict, folds: np.ndarray, fps: dict, audit_settings,
              settings: CalibrationSettings = CalibrationSettings()) -> Calibration:
    """Plant, score with the same out-of-fold predictions and procedure as the real labels, fit."""
    from core.audit import find_segments, frame_scores

    rng = np.random.default_rng(settings.seed)
    videos = sorted(table["video"].unique())
    tasks = tuple(t for t in PLANT_KINDS if t in preds)
    found, plants, minutes = [], [], 0.0
    for r in range(settings.rounds):
        chosen = sorted(rng.choice(videos, size=max(1, len(videos) // 2), replace=False))
        planted, where = plant(table, chosen, fps, settings, rng, tasks)
        segments = find_segments(planted, preds, frame_scores(planted, preds, folds, audit_settings), fps,
                                 audit_settings)
        segments = segments[segments["video"].isin(chosen)].assign(round=r)
        found.append(segments.assign(hit=hits(segments, where)))
        plants.append(where.assign(round=r))
        for v in chosen:
            minutes += (table["video"] == v).sum() / fps[v] / 60
    plants = pd.concat(plants, ignore_index=True)
    return fit(pd.concat(found, ignore_index=True), plants, minutes, settings)


def rescore(segments: pd.DataFrame, cal: Calibration) -> pd.DataFrame:
    """The segments with score = the calibrated probability that the stretch is wrong (raw_score: the
    scorer's), best first."""
    out = segments.assign(raw_score=segments["score"], score=np.round(cal.apply(segments), 4))
    return out.sort_values(["score", "raw_score", "frames"], ascending=False, kind="stable").reset_index(drop=True)
