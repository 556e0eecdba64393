"""The random-sample estimate (core/audit_sample.py): units cover every annotated frame once (overlapping
suggestions: the best-scored one owns the shared frames), a stratified draw per task and band, and the
Horvitz-Thompson estimate with its interval; in seeded simulations the interval covers the true count."""
import numpy as np
import pandas as pd
import pytest

from core.audit_sample import CLEAN, SampleSettings, band, draw, estimate, frames_per_task, units


def segments(rows):
    return pd.DataFrame(rows, columns=["video", "task", "start_frame", "end_frame", "score"])


def test_units_count_overlapping_frames_once_and_cut_the_rest_into_clean_stretches():
    segs = segments([("v", "expr", 10, 29, 0.6), ("v", "expr", 20, 39, 0.95), ("v", "va", 0, 9, 0.05)])
    annotated = {("v", "expr"): np.arange(100), ("v", "va"): np.r_[0:50, 60:100]}
    u = units(segs, annotated, SampleSettings(clean_frames=30))
    expr = u[u["task"] == "expr"]
    assert expr[["stratum", "start_frame", "end_frame", "own_frames", "segment"]].values.tolist() == [
        ["score 0.5-0.9", 10, 29, 10, 0], ["score 0.9-1.0", 20, 39, 20, 1],
        [CLEAN, 0, 9, 10, -1], [CLEAN, 40, 69, 30, -1], [CLEAN, 70, 99, 30, -1]]
    va = u[u["task"] == "va"]
    assert va[["stratum", "start_frame", "end_frame", "own_frames"]].values.tolist() == [
        ["score 0.0-0.1", 0, 9, 10], [CLEAN, 10, 49, 40], [CLEAN, 60, 99, 40]]   # a gap in the annotation ends one
    assert frames_per_task(u) == {"expr": 100, "va": 90}
    assert band(0.1) == "score 0.1-0.5" and band(1.0) == "score 0.9-1.0"


def test_the_estimate_is_horvitz_thompson_per_stratum_with_its_interval():
    sample = pd.DataFrame({"task": "expr", "stratum": ["a", "a", "b", "b"], "own_frames": [10, 30, 20, 20],
                           "N": [4, 4, 10, 10]})
    wrong = pd.Series([10.0, 0.0, 20.0, 5.0])
    got = estimate(sample, wrong, {"expr": 1000})
    # a: 4 * mean(10, 0) = 20, var 4^2 (1 - 2/4) 50 / 2 = 200; b: 10 * 12.5 = 125, var 100 (0.8) 112.5 / 2 = 4500
    half = 1.959964 * np.sqrt(4700)
    assert got["expr"] == {"frames": 1000, "wrong": 145.0, "low": round(145 - half, 1), "high": round(145 + half, 1)}
    assert got["all"] == got["expr"]
    assert estimate(sample, wrong.iloc[:2], {"expr": 1000})["expr"]["wrong"] is None     # stratum b unreviewed


def test_a_stratum_whose_reviews_all_agree_still_has_an_interval():
    sample = pd.DataFrame({"task": "au", "stratum": CLEAN, "own_frames": [60, 60], "N": [50, 50]})
    got = estimate(sample, pd.Series([0.0, 0.0]), {"au": 3000})["au"]
    # as if a third review had found 60 wrong: var of (0, 0, 60) = 1200; 50^2 (1 - 2/50) 1200 / 2
    assert (got["wrong"], got["low"]) == (0.0, 0.0)
    assert got["high"] == pytest.approx(1.96 * np.sqrt(2500 * 0.96 * 600), abs=0.2)


def test_seeded_samples_cover_the_true_wrong_frames():
    rng = np.random.default_rng(1)
    frames = {("v%d" % i, "expr"): np.arange(600) for i in range(20)}
    truth, rows = set(), []
    for (video, _), f in frames.items():           # errors found by suggestions, missed ones, false alarms
        for start in rng.choice(np.arange(0, 560, 50), size=4, replace=False):
            length, kind = int(rng.integers(8, 40)), rng.choice(["found", "missed", "false"])
            if kind != "false":
                truth |= {(video, x) for x in range(start, start + length)}
            if kind != "missed":
                rows.append((video, "expr", start, start + length - 1, rng.uniform(0.5, 1) if kind == "found"
                             else rng.uniform(0, 0.6)))
    everything = units(segments(rows), frames)
    covered = 0
    for seed in range(10):
        sample = draw(everything, SampleSettings(seed=seed, per_band=8, clean=25))
        wrong = pd.Series([sum((u.video, x) in truth for x in range(u.start_frame, u.end_frame + 1))
                           for u in sample.itertuples()], index=sample.index, dtype=float)
        got = estimate(sample, np.minimum(wrong, sample["own_frames"]), frames_per_task(everything))["expr"]
        covered += got["low"] <= len(truth) <= got["high"]
    assert covered >= 9
