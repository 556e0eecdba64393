"""The audit's scorers and segment step on planted examples: each kind of error is found where it was
planted, with its kind and suggested label, and clean data gives no suggestion at all."""
import numpy as np
import pandas as pd
import pytest

from core.audit import AuditSettings, find_segments, frame_scores, stretches
from core.labels import AUS

FPS = 30
N = 900


def iou(a, b):
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    return max(0, inter) / (max(a[1], b[1]) - min(a[0], b[0]) + 1)


def truth(seed=0):
    """One video's true labels and an out-of-fold-like prediction of them (a good, noisy model)."""
    rng = np.random.default_rng(seed)
    t = np.arange(N)
    va = np.stack([0.6 * np.sin(2 * np.pi * t / 150) + 0.2 * np.sin(2 * np.pi * t / 47),
                   0.5 * np.cos(2 * np.pi * t / 110)], axis=1)
    expr = np.repeat(rng.integers(0, 8, N // 60), 60)
    au = np.repeat(rng.random((N // 45, len(AUS))) < 0.3, 45, axis=0).astype(float)
    logits = 3.0 * np.eye(8)[expr] + rng.normal(0, 0.7, (N, 8))
    preds = {"va": va + rng.normal(0, 0.05, va.shape),
             "expr": np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True),
             "au": np.clip(0.8 * au + 0.1 + rng.normal(0, 0.08, au.shape), 0.01, 0.99)}
    return va, expr, au, preds


def table(va, expr, au):
    df = pd.DataFrame({"video": "v", "frame": np.arange(N), "valence": va[:, 0], "arousal": va[:, 1],
                       "expression": pd.array(expr, dtype="Int64")})
    for j, name in enumerate(AUS):
        df[name] = pd.array(au[:, j].astype(int), dtype="Int64")
    return df


def audit(df, preds):
    return find_segments(df, preds, frame_scores(df, preds), FPS)


def test_clean_annotations_give_no_suggestion():
    va, expr, au, preds = truth()
    assert audit(table(va, expr, au), preds).empty


def test_every_planted_kind_is_found_with_its_kind_and_suggested_label():
    va, expr, au, preds = truth()
    va, expr, au = va.copy(), expr.copy(), au.copy()
    true_class = int(expr[330])
    wrong = (true_class + 3) % 8
    expr[310:370] = wrong                                    # a 2 s class swap
    au[500:590, 4] = 1 - au[500:590, 4].max()                # AU6 stuck on (or off) over 3 s
    va[60:120, 0] += 0.5                                     # valence offset
    va[200:260] *= -1                                        # sign flip
    va[400:550] = va[370:520].copy()                         # 1 s lag
    va[650:750, 1] = va[650, 1]                              # arousal stuck
    found = audit(table(np.clip(va, -1, 1), expr, au), preds)
    planted = {("expr", "label", 310, 369, ("expression", true_class)),
               ("au", "stuck", 500, 589, (AUS[4], int(au[500, 4] == 0))),
               ("va", "offset", 60, 119, None), ("va", "sign", 200, 259, None),
               ("va", "lag", 400, 549, None), ("va", "stuck", 650, 749, None)}
    assert len(found) == len(planted)
    for task, kind, a, b, label in planted:
        hit = [r for r in found.itertuples() if r.task == task and iou((r.start_frame, r.end_frame), (a, b)) >= 0.5]
        assert len(hit) == 1, (task, kind, found)
        assert hit[0].kind == kind and hit[0].score >= AuditSettings().report
        if label is not None:
            assert hit[0].suggested == {label[0]: label[1]}
    lag = found[found["kind"] == "lag"].iloc[0]
    assert "+1.00 s (+30 frames)" in lag["detail"]
    assert found["score"].is_monotonic_decreasing


def test_a_few_noisy_frames_neither_make_nor_carry_a_stretch():
    settings = AuditSettings(min_frames=5, merge_gap=2)
    s = np.zeros(40)
    s[3] = s[35] = 1.0                                      # isolated spikes: no stretch
    assert stretches(s, 0.5, settings) == []
    s[10:20] = 0.95
    s[14] = 0.0                                             # a dip inside does not break it
    assert stretches(s, 0.5, settings) == [(10, 19, pytest.approx(0.95))]
    s[22:30] = 0.9                                          # two frames apart: one stretch, the median score
    assert stretches(s, 0.5, settings) == [(10, 29, pytest.approx(0.9))]


def test_unlabelled_frames_are_not_scored():
    va, expr, au, preds = truth()
    df = table(va, expr, au)
    df.loc[100:199, "expression"] = pd.NA
    df.loc[100:199, ["valence", "arousal"]] = np.nan
    scores = frame_scores(df, preds)
    assert np.isnan(scores["expr"][100:200]).all() and np.isnan(scores["va"][100:200]).all()
    assert not np.isnan(scores["expr"][:100]).any()
    assert audit(df, preds).empty
