"""The audit's calibration (core/audit_calibration.py): plants of every kind go only into the chosen videos'
copy, with lengths from 8 frames to 5 s; the isotonic map turns raw scores into the share of planted hits;
the default threshold keeps false alarms under 1 per 10 clean minutes; a whole calibration on planted
examples finds its plants and says its precision."""
import numpy as np
import pandas as pd

from core.audit import AuditSettings
from core.audit_calibration import PLANT_KINDS, CalibrationSettings, calibrate, fit, hits, plant, rescore
from core.labels import AUS, VA_NAMES
from tests.test_audit import FPS, N, table, truth


def two_videos(seed=0):
    parts, preds = [], {"va": [], "expr": [], "au": []}
    for i, video in enumerate(("a", "b")):
        va, expr, au, p = truth(seed + i)
        parts.append(table(va, expr, au).assign(video=video))
        for t in preds:
            preds[t].append(p[t])
    return pd.concat(parts, ignore_index=True), {t: np.concatenate(v) for t, v in preds.items()}


def test_plants_of_every_kind_go_only_into_the_chosen_videos():
    df, _ = two_videos()
    settings = CalibrationSettings(share=0.2)
    planted, plants = plant(df, ["a"], {"a": FPS, "b": FPS}, settings, np.random.default_rng(0))
    assert set(plants["video"]) == {"a"} and set(plants["task"]) == {"expr", "au", "va"}
    assert set(plants["kind"]) <= {k for kinds in PLANT_KINDS.values() for k in kinds}
    lengths = plants["end_frame"] - plants["start_frame"] + 1
    assert lengths.min() >= 8 and lengths.max() <= 2 * FPS * 5        # VA lag / stuck: at least 2 s
    b = df["video"] == "b"
    pd.testing.assert_frame_equal(planted[b], df[b])                   # the other video untouched
    cols = {"expr": ["expression"], "au": list(AUS), "va": list(VA_NAMES)}
    for task, c in cols.items():
        diff = (planted[c].astype("float64") != df[c].astype("float64")).any(axis=1).to_numpy()
        frames = set(df["frame"][diff & ~b.to_numpy()])
        inside = {f for p in plants[plants["task"] == task].itertuples() for f in range(p.start_frame, p.end_frame + 1)}
        assert frames <= inside and frames, task                       # changes only inside that task's plants
    assert planted.dtypes.equals(df.dtypes)


def test_a_segment_hits_a_plant_of_its_video_and_task_at_half_overlap():
    plants = pd.DataFrame([{"video": "a", "task": "expr", "kind": "swap", "start_frame": 10, "end_frame": 29}])
    segs = pd.DataFrame({"video": ["a", "a", "b", "a"], "task": ["expr", "expr", "expr", "va"],
                         "start_frame": [15, 25, 10, 10], "end_frame": [34, 44, 29, 29]})
    assert hits(segs, plants).tolist() == [True, False, False, False]      # IoU 0.6, 0.2; other video; task


def test_the_threshold_keeps_false_alarms_under_one_per_ten_clean_minutes():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    hit = [1, 1, 1, 0, 1, 0, 0, 0]
    found = pd.DataFrame({"video": "a", "task": "expr", "kind": "label", "score": scores, "hit": hit, "round": 0,
                          "start_frame": [100 * i for i in range(8)], "end_frame": [100 * i + 9 for i in range(8)]})
    plants = pd.DataFrame({"video": "a", "task": "expr", "kind": "swap", "round": 0,
                           "start_frame": [0, 100, 200, 400, 900], "end_frame": [9, 109, 209, 409, 909]})
    cal = fit(found, plants, clean_minutes=10.0, settings=CalibrationSettings())
    # isotonic: 1.0 above 0.7, 0.5 for 0.6 and 0.5 (one hit of two), 0 below
    assert cal.apply(found).tolist() == [1.0, 1.0, 1.0, 0.5, 0.5, 0.0, 0.0, 0.0]
    assert cal.threshold == 1.0                       # at 0.5 one false alarm in 10 minutes: not under 1
    assert cal.summary["expected_precision"] == 1.0 and cal.summary["false_alarms_per_10_min"] == 0.0
    assert cal.summary["recall"] == {"expr/swap": 0.6}
    twenty = fit(found, plants, clean_minutes=20.0, settings=CalibrationSettings())
    assert twenty.threshold == 0.5 and twenty.summary["expected_precision"] == 0.8    # 0.5 alarms per 10 min
    ranked = rescore(found.drop(columns="hit").assign(frames=10), twenty)
    assert ranked["raw_score"].tolist() == scores and ranked["score"].tolist()[:5] == [1.0, 1.0, 1.0, 0.5, 0.5]


def test_calibrating_on_planted_examples_finds_the_plants_and_says_its_precision():
    df, preds = two_videos()
    fps = {"a": FPS, "b": FPS}
    folds = np.repeat([0, 1], N)
    cal = calibrate(df, preds, folds, fps, AuditSettings(), CalibrationSettings(rounds=3, share=0.1))
    s = cal.summary
    assert s["plants"] > 10 and s["hits"] > 0 and s["clean_minutes"] == 3 * N / FPS / 60
    assert 0 < cal.threshold <= 1 and s["false_alarms_per_10_min"] < 1
    assert s["expected_precision"] >= 0.9
    assert {"expr/swap", "au/flip", "va/offset"} <= set(s["recall"]) <= {
        f"{task}/{kind}" for task, kinds in PLANT_KINDS.items() for kind in kinds}
    assert s["recall"]["expr/swap"] >= 0.5


def test_a_short_video_still_gets_plants_of_every_task():
    df, _ = two_videos()
    short = df[(df["video"] == "a") & (df["frame"] < 150)]
    _, plants = plant(short, ["a"], {"a": FPS}, CalibrationSettings(), np.random.default_rng(0))
    assert set(plants["task"]) == {"expr", "au", "va"}      # 8 % of 150 frames is under one 8-frame plant
