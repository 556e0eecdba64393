"""ABAW metrics against independent computations: numpy formulas written here and scikit-learn."""
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from core.labels import AUS
from core.metrics import THRESHOLD_GRID, au_scores, ccc, expr_scores, optimise_au_thresholds, va_scores


def reference_ccc(x, y):
    """Lin's CCC from Pearson's r: 2 r s_x s_y / (s_x^2 + s_y^2 + (mean_x - mean_y)^2)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    r = np.corrcoef(x, y)[0, 1]
    sx, sy = x.std(), y.std()
    return 2 * r * sx * sy / (sx**2 + sy**2 + (x.mean() - y.mean()) ** 2)


def f1_by_counts(pred, truth):
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    tp, fp, fn = (pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum()
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


# --- CCC / VA ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_ccc_matches_the_formula_on_random_data(seed):
    rng = np.random.default_rng(seed)
    y = rng.uniform(-1, 1, 500)
    x = np.clip(0.6 * y + rng.normal(0.1 * seed, 0.3, 500), -1, 1)
    assert ccc(x, y) == pytest.approx(reference_ccc(x, y), abs=1e-12)
    assert ccc(x, y) == pytest.approx(ccc(y, x), abs=1e-12)


def test_ccc_known_values():
    x = np.linspace(-1, 1, 101)
    assert ccc(x, x) == pytest.approx(1.0)
    assert ccc(-x, x) == pytest.approx(-1.0)
    # Perfect correlation but a scale error: 2*0.5*var / (0.25 var + var) = 0.8.
    assert ccc(0.5 * x, x) == pytest.approx(0.8)
    # A shift lowers CCC though Pearson r stays 1.
    assert ccc(x + 0.5, x) < 1.0


@pytest.mark.parametrize(
    "pred, gt",
    [
        ([], []),
        ([0.3] * 10, [0.3] * 10),
        ([0.3] * 10, [0.1] * 10),
        ([0.2] * 10, list(np.linspace(-1, 1, 10))),
        (list(np.linspace(-1, 1, 10)), [0.5] * 10),
        ([0.4], [0.1]),
        ([0.1, 0.2, 0.3], [np.nan, np.nan, np.nan]),
        ([0.1, 0.2, 0.3], [-5, -5, -5]),
    ],
)
def test_ccc_is_zero_not_nan_when_undefined_or_constant(pred, gt):
    value = ccc(pred, gt)
    assert value == 0.0 and not math.isnan(value)


def test_ccc_ignores_invalid_frames_and_needs_a_prediction_for_every_valid_one():
    rng = np.random.default_rng(7)
    x, y = rng.uniform(-1, 1, 300), rng.uniform(-1, 1, 300)
    y_marked, x_missing = y.copy(), pd.array(x, dtype="Float64")
    y_marked[::7] = -5.0
    y_marked[1::7] = np.nan
    x_missing[::7] = pd.NA                       # no prediction where there is no label: fine
    keep = (np.arange(300) % 7 > 1)
    assert ccc(x_missing, y_marked) == pytest.approx(reference_ccc(x[keep], y[keep]), abs=1e-12)
    as_list = [None if pd.isna(v) else v for v in x_missing]
    assert ccc(pd.Series(as_list, dtype="Float64"), y_marked) == pytest.approx(reference_ccc(x[keep], y[keep]))
    x_missing[2::11] = pd.NA
    lacking = int(((np.arange(300) - 2) % 11 == 0)[keep].sum())
    with pytest.raises(ValueError, match=f"ccc: {lacking} of {keep.sum()} frames with ground truth have no prediction"):
        ccc(x_missing, y_marked)


def test_ccc_refuses_different_lengths():
    with pytest.raises(ValueError, match="frames"):
        ccc([0.1, 0.2], [0.1])


def test_va_scores_average_the_two_cccs_and_select_columns_by_name():
    rng = np.random.default_rng(3)
    gt = pd.DataFrame(rng.uniform(-1, 1, (400, 2)), columns=["valence", "arousal"])
    pred = gt + rng.normal(0, [0.2, 0.6], (400, 2))
    gt.iloc[10:20] = np.nan
    scores = va_scores(pred[["arousal", "valence"]], gt)  # columns swapped on purpose
    keep = gt["valence"].notna()
    cv = reference_ccc(pred["valence"][keep], gt["valence"][keep])
    ca = reference_ccc(pred["arousal"][keep], gt["arousal"][keep])
    assert scores["ccc_valence"] == pytest.approx(cv) and scores["ccc_arousal"] == pytest.approx(ca)
    assert scores["p_va"] == pytest.approx((cv + ca) / 2)
    assert scores["ccc_valence"] > scores["ccc_arousal"]
    arrays = va_scores(pred[["valence", "arousal"]].to_numpy(), gt.to_numpy())
    assert arrays == pytest.approx(scores)


def test_va_scores_refuse_missing_predictions_or_count_them_when_allowed():
    """The defect this guards against: 15 of 20 frames without prediction scored CCC 1.0 over the other 5."""
    gt = np.column_stack([np.linspace(-1, 1, 20), np.linspace(1, -1, 20)])
    pred = gt.copy()
    pred[5:] = np.nan
    with pytest.raises(ValueError, match="va_scores: 15 of 20 frames with ground truth have no prediction"):
        va_scores(pred, gt)
    scores = va_scores(pred, gt, allow_missing=True)
    assert scores["missing_predictions"] == 15 and scores["p_va"] == pytest.approx(1.0)
    pred[5:, 0] = gt[5:, 0]                                      # arousal alone missing: still a missing frame
    gt[5:10, 1] = np.nan                                         # ... except where arousal is not annotated
    assert va_scores(pred, gt, allow_missing=True)["missing_predictions"] == 10
    assert va_scores(gt, gt, allow_missing=True)["missing_predictions"] == 0
    assert "missing_predictions" not in va_scores(gt, gt)


def test_va_scores_on_empty_and_constant_inputs():
    assert va_scores(np.zeros((0, 2)), np.zeros((0, 2))) == {"ccc_valence": 0.0, "ccc_arousal": 0.0, "p_va": 0.0}
    assert va_scores(np.zeros((5, 2)), np.full((5, 2), -5.0))["p_va"] == 0.0
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        va_scores(np.zeros((5, 3)), np.zeros((5, 3)))


# --- EXPR -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_expr_f1_per_class_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 8, 600)
    pred = np.where(rng.random(600) < 0.5, gt, rng.integers(0, 8, 600))
    scores = expr_scores(pred, gt)
    expected = f1_score(gt, pred, labels=range(8), average=None, zero_division=0)
    np.testing.assert_allclose(scores["f1_per_class"], expected)
    assert scores["p_expr"] == pytest.approx(expected.mean())
    for c in range(8):
        assert scores["f1_per_class"][c] == pytest.approx(f1_by_counts(pred == c, gt == c))


def test_p_expr_counts_absent_classes_as_zero_unlike_sklearn_macro():
    rng = np.random.default_rng(11)
    gt = rng.integers(0, 5, 300)  # classes 5, 6, 7 never appear ...
    pred = np.where(rng.random(300) < 0.7, gt, rng.integers(0, 5, 300))  # ... and are never predicted
    scores = expr_scores(pred, gt)
    sklearn_macro = f1_score(gt, pred, average="macro")  # averages over the 5 labels it sees
    assert scores["f1_per_class"][5:] == [0.0, 0.0, 0.0]
    assert scores["p_expr"] == pytest.approx(sklearn_macro * 5 / 8)
    assert scores["p_expr"] < sklearn_macro


def test_expr_perfect_prediction_of_all_classes_is_one_and_invalid_frames_are_ignored():
    gt = pd.array(list(range(8)) * 5 + [-1, pd.NA, -1], dtype="Int64")
    pred = np.array(list(range(8)) * 5 + [3, 3, 4])
    assert expr_scores(pred, gt)["p_expr"] == pytest.approx(1.0)


def test_expr_takes_argmax_of_scores_and_refuses_or_counts_missing_predictions():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(200, 8))
    gt = rng.integers(0, 8, 200)
    assert expr_scores(logits, gt) == expr_scores(logits.argmax(1), gt)
    table = pd.DataFrame({"frame": np.arange(200), "expression": logits.argmax(1)})
    assert expr_scores(table, pd.DataFrame({"expression": gt})) == expr_scores(logits.argmax(1), gt)
    pred = pd.array(logits.argmax(1), dtype="Int64")
    pred[:20] = pd.NA
    with pytest.raises(ValueError, match="expr_scores: 20 of 200 frames with ground truth have no prediction"):
        expr_scores(pred, gt)
    scores = expr_scores(pred, gt, allow_missing=True)
    assert scores == {**expr_scores(logits.argmax(1)[20:], gt[20:]), "missing_predictions": 20}
    logits[:20, 3] = np.nan                                       # a score row with a NaN has no prediction
    assert expr_scores(logits, gt, allow_missing=True) == {**expr_scores(logits[20:], gt[20:]),
                                                           "missing_predictions": 20}


@pytest.mark.parametrize("gt", [[], [-1, -1, -1], [np.nan, np.nan, np.nan]])
def test_expr_with_no_valid_frame_is_zero(gt):
    scores = expr_scores([0] * len(gt), gt)
    assert scores["p_expr"] == 0.0 and scores["f1_per_class"] == [0.0] * 8


def test_expr_refuses_labels_outside_the_eight_classes():
    with pytest.raises(ValueError, match="class index"):
        expr_scores([0, 8], [0, 1])
    with pytest.raises(ValueError, match="class index"):
        expr_scores([0, 1], [0, 9])
    with pytest.raises(ValueError, match="frames"):
        expr_scores([0, 1, 2], [0, 1])


# --- AU ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_au_f1_matches_sklearn_per_au(seed):
    rng = np.random.default_rng(seed)
    gt = (rng.random((500, 12)) < rng.uniform(0.05, 0.6, 12)).astype(int)
    probs = np.clip(0.5 * gt + rng.uniform(0, 0.6, (500, 12)), 0, 1)
    scores = au_scores(probs, gt)
    expected = [f1_score(gt[:, k], probs[:, k] >= 0.5, zero_division=0) for k in range(12)]
    np.testing.assert_allclose(scores["f1_per_au"], expected)
    assert scores["p_au"] == pytest.approx(np.mean(expected))
    assert scores["p_au"] == pytest.approx(f1_score(gt, probs >= 0.5, average="macro", zero_division=0))


def test_au_per_au_thresholds_and_per_au_invalid_frames():
    rng = np.random.default_rng(9)
    gt = rng.integers(0, 2, (300, 12)).astype(float)
    probs = rng.random((300, 12))
    gt[:30, 0] = -1  # AU1 invalid on 30 frames only
    gt[100:110, :] = np.nan
    thresholds = np.linspace(0.2, 0.8, 12)
    scores = au_scores(pd.DataFrame(probs, columns=list(AUS)), gt, thresholds)
    for k in range(12):
        keep = ~np.isnan(gt[:, k]) & (gt[:, k] != -1)
        assert scores["f1_per_au"][k] == pytest.approx(f1_by_counts(probs[keep, k] >= thresholds[k], gt[keep, k] == 1))


def test_au_edge_cases_are_zero_not_nan():
    gt = np.zeros((50, 12), dtype=int)
    assert au_scores(np.zeros((50, 12)), gt)["p_au"] == 0.0  # no positive anywhere
    assert au_scores(np.zeros((0, 12)), np.zeros((0, 12)))["p_au"] == 0.0
    assert au_scores(np.ones((5, 12)), -np.ones((5, 12)))["p_au"] == 0.0
    gt[:, 0] = 1
    scores = au_scores(gt, gt)
    assert scores["f1_per_au"] == [1.0] + [0.0] * 11 and scores["p_au"] == pytest.approx(1 / 12)
    with pytest.raises(ValueError, match="0, 1 or invalid"):
        au_scores(np.zeros((2, 12)), np.full((2, 12), 2))
    with pytest.raises(ValueError, match=r"\(N, 12\)"):
        au_scores(np.zeros((2, 11)), np.zeros((2, 11)))


def test_au_missing_predictions_are_refused_or_counted_per_frame():
    rng = np.random.default_rng(2)
    gt = rng.integers(0, 2, (100, 12)).astype(float)
    probs = rng.random((100, 12))
    probs[:10, 0] = np.nan                                        # one AU missing on 10 frames
    probs[90:] = np.nan                                           # every AU missing on 10 frames ...
    gt[95:] = -1                                                  # ... of which 5 have no valid label
    for score in (au_scores, optimise_au_thresholds):
        with pytest.raises(ValueError, match="15 of 95 frames with ground truth have no prediction"):
            score(probs, gt)
    scores = au_scores(probs, gt, allow_missing=True)
    assert scores["missing_predictions"] == 15
    keep = ~np.isnan(probs[:, 0]) & (gt[:, 0] != -1)
    assert scores["f1_per_au"][0] == pytest.approx(f1_by_counts(probs[keep, 0] >= 0.5, gt[keep, 0] == 1))


def test_optimised_thresholds_are_the_grid_optimum_per_au():
    rng = np.random.default_rng(4)
    gt = (rng.random((400, 12)) < 0.3).astype(int)
    probs = np.clip(0.3 * gt + rng.uniform(0, 0.7, (400, 12)), 0, 1)
    thresholds = optimise_au_thresholds(probs, gt)
    assert thresholds.shape == (12,)
    for k in range(12):
        best = max(f1_score(gt[:, k], probs[:, k] >= t, zero_division=0) for t in THRESHOLD_GRID)
        assert f1_score(gt[:, k], probs[:, k] >= thresholds[k], zero_division=0) == pytest.approx(best)
    assert au_scores(probs, gt, thresholds)["p_au"] >= au_scores(probs, gt)["p_au"]
    assert au_scores(probs, gt, thresholds)["p_au"] > au_scores(probs, gt)["p_au"] + 0.01


def test_optimised_threshold_prefers_the_one_nearest_half_among_equals():
    gt = np.tile([[0], [1]], (20, 12))
    probs = np.where(gt == 1, 0.35, 0.1)  # any threshold in (0.1, 0.35] separates perfectly
    thresholds = optimise_au_thresholds(probs, gt)
    np.testing.assert_allclose(thresholds, 0.35)
    assert au_scores(probs, gt, thresholds)["p_au"] == pytest.approx(1.0)
    assert au_scores(probs, gt)["p_au"] == 0.0
    assert np.all(optimise_au_thresholds(probs, -np.ones_like(gt)) == 0.5)  # nothing valid: 0.5


# --- what the module offers ---------------------------------------------------------------------


def test_no_scorer_without_a_caller():
    """The 7th ABAW sum is training.predictions.abaw_metrics' "score"; a second, uncalled one is gone."""
    import core.metrics

    assert not hasattr(core.metrics, "mtl_score")


# --- the one scorer ---------------------------------------------------------------------------------


def scorer_table(n=40, seed=5):
    """A predictions table (core.table's columns: va, expr, one CLIP output, AU decisions) with gt_ labels."""
    from core.table import AU_DECISIONS, gt, output_expr, prompt_output

    rng = np.random.default_rng(seed)
    truth_va = rng.uniform(-1, 1, (n, 2))
    truth_va[:4] = -5                                                  # invalid marker: not labelled
    expr = rng.integers(0, 8, n)
    df = pd.DataFrame({"frame": np.arange(n), "valence": truth_va[:, 0] * 0.5 + rng.normal(0, .2, n),
                       "arousal": rng.uniform(-1, 1, n), "expr": pd.array(np.where(rng.random(n) < .5, expr, 0), dtype="Int64"),
                       output_expr(prompt_output("basic")): pd.array(rng.integers(0, 8, n), dtype="Int64"),
                       **{a: pd.array(rng.integers(0, 2, n), dtype="Int64") for a in AU_DECISIONS},
                       gt("valence"): truth_va[:, 0], gt("arousal"): truth_va[:, 1], gt("expr"): expr,
                       **{gt(a): rng.integers(0, 2, n).astype(float) for a in AUS}})
    df.loc[10:14, ["valence", "arousal"]] = np.nan                     # no prediction (no face, fill none)
    df.loc[30:31, output_expr(prompt_output("basic"))] = pd.NA
    return df, truth_va, expr


def test_score_table_scores_every_output_counts_missing_and_gives_none_without_predictions():
    from core.metrics import score_table

    df, truth_va, expr = scorer_table()
    scores = score_table(df)
    assert list(scores) == ["va", "expr", "clip_basic", "au"]
    va = scores["va"]
    keep = np.ones(40, bool)
    keep[:4] = keep[10:15] = False
    assert (va.frames, va.missing, va.scored) == (36, 5, 31)
    assert va.values["ccc_valence"] == pytest.approx(reference_ccc(df["valence"][keep], truth_va[keep, 0]))
    assert va.main == pytest.approx((va.values["ccc_valence"] + va.values["ccc_arousal"]) / 2)
    clip = scores["clip_basic"]
    assert (clip.frames, clip.missing) == (40, 2)
    have = np.ones(40, bool)
    have[30:32] = False
    assert clip.main == pytest.approx(np.mean(f1_score(expr[have], df["clip_basic_expr"][have].astype(int),
                                                       labels=range(8), average=None, zero_division=0)))
    au = scores["au"]
    assert (au.frames, au.missing) == (40, 0) and au.values["f1_per_au"][0] == pytest.approx(
        f1_by_counts(df["AU1"].astype(int), df["gt_AU1"]))
    # no VA prediction at all (a model without VA heads): None, every labelled frame missing -- not 0
    none = score_table(df.assign(valence=np.nan, arousal=np.nan))["va"]
    assert none.values == {"ccc_valence": None, "ccc_arousal": None, "p_va": None} and none.missing == none.frames == 36
    # labels as a frame-indexed annotation table, frames the predictions lack counting as missing
    labels = pd.DataFrame({"expression": expr}, index=pd.RangeIndex(40, name="frame"))
    part = score_table(df.iloc[:30], labels, ("expr",))
    assert list(part) == ["expr", "clip_basic"] and (part["expr"].frames, part["expr"].missing) == (40, 10)
    assert score_table(df.drop(columns=[c for c in df if c.startswith("gt_")])) == {}
