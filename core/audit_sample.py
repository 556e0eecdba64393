"""An honest estimate of how much of a dataset's annotation is wrong, from a random sample of reviews.

Reviews of the best-scored suggestions first say nothing about the rest. Here the annotated frames of each
task are cut into sampling units that never overlap: each suggestion's own frames (a frame inside several
suggestions of a task belongs to the best-scored one, so overlaps count once) and, for the frames no
suggestion covers, clean stretches of `clean_frames`. Units are grouped into strata -- calibrated score bands
of the suggestions, and the clean frames -- per task, and a simple random sample is drawn in each stratum
(`per_band` suggestions, `clean` clean stretches). From the reviewed sample units' wrong frames the
stratified Horvitz-Thompson estimate of wrong frames per task is formed, with a normal interval; a stratum
whose reviews all agree gets the variance it would have with one review the other way (so four clean
"all right" reviews do not claim certainty).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

BANDS = (0.0, 0.1, 0.5, 0.9)       # lower edges of the calibrated score bands
CLEAN = "clean"     # the stratum of the frames no suggestion covers, and the kind of a drawn clean stretch
UNIT_COLUMNS = ["task", "stratum", "video", "start_frame", "end_frame", "own_frames", "score", "segment"]


@dataclass(frozen=True)
class SampleSettings:
    per_band: int = 10          # suggestions drawn per task and score band
    clean: int = 10             # clean stretches drawn per task
    clean_frames: int = 60      # frames per clean stretch
    level: float = 0.95
    seed: int = 0


def band(score: float) -> str:
    lower = max(b for b in BANDS if score >= b)
    upper = ([b for b in BANDS if b > lower] or [1.0])[0]
    return f"score {lower:.1f}-{upper:.1f}"


def units(segments: pd.DataFrame, annotated: dict, settings: SampleSettings = SampleSettings()) -> pd.DataFrame:
    """Every sampling unit (UNIT_COLUMNS): segments (video, task, start_frame, end_frame, score; best first
    or not) and annotated {(video, task): sorted array of annotated frame numbers}. segment: the segment's
    row label, -1 for a clean stretch; own_frames: its annotated frames no better suggestion holds."""
    rows = []
    for (video, task), frames in annotated.items():
        frames = np.asarray(frames)
        owner = np.full(len(frames), -1)
        mine = segments[(segments["video"] == video) & (segments["task"] == task)]
        for label, s in mine.sort_values("score", ascending=True, kind="stable").iterrows():
            owner[(frames >= s["start_frame"]) & (frames <= s["end_frame"])] = label    # the best last
        for label, s in mine.iterrows():
            own = int((owner == label).sum())
            if own:
                rows.append((task, band(s["score"]), video, int(s["start_frame"]), int(s["end_frame"]), own,
                             float(s["score"]), label))
        free = frames[owner == -1]
        breaks = np.flatnonzero(np.diff(free) != 1) + 1
        for run in np.split(free, breaks):
            for piece in np.array_split(run, max(1, round(len(run) / settings.clean_frames))) if len(run) else []:
                rows.append((task, CLEAN, video, int(piece[0]), int(piece[-1]), len(piece), 0.0, -1))
    return pd.DataFrame(rows, columns=UNIT_COLUMNS)


def draw(all_units: pd.DataFrame, settings: SampleSettings = SampleSettings()) -> pd.DataFrame:
    """A stratified simple random sample of the units: per task, per_band of each score band and `clean`
    clean stretches (all where a stratum holds fewer); with each unit's stratum size N and sample size n."""
    rng = np.random.default_rng(settings.seed)
    parts = []
    for (task, stratum), part in all_units.groupby(["task", "stratum"], sort=True):
        n = min(len(part), settings.clean if stratum == CLEAN else settings.per_band)
        chosen = part.iloc[np.sort(rng.choice(len(part), size=n, replace=False))]
        parts.append(chosen.assign(N=len(part), n=n))
    return pd.concat(parts) if parts else all_units.assign(N=0, n=0)


def frames_per_task(all_units: pd.DataFrame) -> dict:
    """task -> annotated frames (every frame is in exactly one unit of its task)."""
    return {t: int(f) for t, f in all_units.groupby("task")["own_frames"].sum().items()}


def estimate(sample: pd.DataFrame, wrong: pd.Series, frames: dict, level: float = 0.95) -> dict:
    """Per task and in all, the stratified Horvitz-Thompson estimate of wrong frames with its interval.

    sample: draw()'s units (task, stratum, own_frames, N); wrong: wrong frames of the sample units reviewed
    so far, by the sample's row label (a confirmed suggestion: its own frames; dismissed: 0), unreviewed
    units left out of their stratum's n; frames: task -> annotated frames. A stratum with no review yet
    makes its task's estimate unknown (None)."""
    z = norm.ppf(0.5 + level / 2)
    found = {}
    for task, drawn_of_task in sample.groupby("task"):
        total, var, known = 0.0, 0.0, True
        for _, drawn in drawn_of_task.groupby("stratum"):
            y = wrong.reindex(drawn.index).dropna().to_numpy(float)
            if not len(y):
                known = False
                continue
            big_n, n = int(drawn["N"].iloc[0]), len(y)
            total += big_n * y.mean()
            spread = y.var(ddof=1) if n > 1 else 0.0
            if np.ptp(y) == 0:          # all alike: as if one more review had gone the other way
                flipped = np.r_[y, 0.0 if y[0] else drawn["own_frames"].mean()]
                spread = max(spread, flipped.var(ddof=1))
            var += big_n ** 2 * (1 - n / big_n) * spread / n
        found[task] = (int(frames[task]), total if known else None, var)
    if found and all(t is not None for _, t, _ in found.values()):
        found["all"] = (sum(f for f, _, _ in found.values()), sum(t for _, t, _ in found.values()),
                        sum(v for _, _, v in found.values()))
    out = {}
    for task, (frames, total, var) in found.items():
        half = z * np.sqrt(var)
        out[task] = {"frames": frames, "wrong": None, "low": None, "high": None} if total is None else {
            "frames": frames, "wrong": round(total, 1), "low": round(max(0.0, total - half), 1),
            "high": round(min(frames, total + half), 1)}
    return out
