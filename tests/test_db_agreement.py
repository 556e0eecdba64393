"""Agreement figures (db/agreement.py) on a planted example, against the same figures computed here
independently: numpy for CCC, scikit-learn for F1 and Cohen's kappa, corrections applied by hand."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score
from test_db_engine import REPO_ROOT, db_url, engine, sessions  # noqa: F401  (fixtures)
from test_db_repo import FRAMES, setup  # noqa: F401  (fixture)

from core.affwild2 import read_annotation
from core.labels import AUS
from core.metrics import score_task
from db import agreement, repo


def ccc(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    cov = np.mean((x - x.mean()) * (y - y.mean()))
    return 2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def f1_expr(pred, gt) -> float:
    return f1_score(gt, pred, labels=list(range(8)), average=None, zero_division=0).mean()


def f1_au(pred, gt) -> float:
    scores = []
    for k in range(len(AUS)):
        keep = ~np.isnan(gt[:, k])
        scores.append(f1_score(gt[keep, k], pred[keep, k], zero_division=0))
    return float(np.mean(scores))


# Corrections: (task, start, end, value, author, decision by, accept) -- decision None: pending.
PLANTED = [
    ("va", 10, 11, (0.5, -0.5), "alice", "bob", True),
    ("va", 12, 13, (0.2, 0.1), "alice", None, None),
    ("va", 14, 15, (-0.3, 0.4), "alice", "carol", False),
    ("va", 10, 12, (0.4, -0.4), "bob", None, None),
    ("va", 13, 15, (0.0, 0.3), "bob", None, None),
    ("expr", 30, 39, 6, "bob", "carol", True),
    ("expr", 38, 39, 4, "bob", None, None),
    ("expr", 35, 44, 6, "carol", "alice", False),
    ("expr", 36, 37, 3, "carol", None, None),
    ("au", 0, 9, {"AU12": 1, "AU4": 0}, "carol", None, None),
    ("au", 5, 14, {"AU12": 1, "AU4": 1, "AU1": 0}, "alice", None, None),
    ("au", 8, 9, {"AU4": 0}, "alice", "bob", True),
]
DROPPED = [57, 58, 59]      # frames the predictions table lacks


@pytest.fixture
def planted(sessions, setup):  # noqa: F811
    """The corrections above, an open VA flag on frames 50-54, and a predictions table."""
    with sessions.begin() as session:
        for task, start, end, value, author, decider, accept in PLANTED:
            c = repo.add_correction(session, "v", task, start, end, value, author)
            if decider is not None:
                repo.decide_correction(session, c.id, video="v", reviewer=decider, accept=accept)
        repo.add_flag(session, "v", "va", 50, 54, "occluded", "carol")
    rng = np.random.default_rng(7)
    va = read_annotation(setup["va"], "va").to_numpy(dtype=float, na_value=np.nan)
    expr = read_annotation(setup["expr"], "expr")["expression"].to_numpy(dtype=float, na_value=np.nan)
    pred_va = np.clip(np.nan_to_num(va, nan=0.0) * 0.7 + rng.normal(0, 0.3, va.shape), -1, 1)
    pred_expr = np.where(rng.random(FRAMES) < 0.3, rng.integers(0, 8, FRAMES), np.nan_to_num(expr)).astype(int)
    pred_au = (rng.random((FRAMES, len(AUS))) < 0.4).astype(int)
    table = pd.DataFrame({"frame": np.arange(FRAMES), "valence": pred_va[:, 0], "arousal": pred_va[:, 1],
                          "expr": pred_expr, **{a: pred_au[:, k] for k, a in enumerate(AUS)}})
    return table.drop(index=DROPPED).reset_index(drop=True)


def expected_model_scores(setup, predictions) -> dict:  # noqa: F811
    """Before: the annotation files. After: accepted corrections written in by hand, the flagged VA
    frames left out. Frames without a prediction are left out of both and counted as missing."""
    gt = {task: read_annotation(setup[task], task).to_numpy(dtype=float, na_value=np.nan)
          for task in ("va", "expr", "au")}
    after = {task: values.copy() for task, values in gt.items()}
    after["va"][10:12] = (0.5, -0.5)
    after["expr"][30:40] = 6
    after["au"][8:10, AUS.index("AU4")] = 0
    after["va"][50:55] = np.nan
    have = np.ones(FRAMES, bool)
    have[DROPPED] = False
    pred = predictions.set_index("frame").reindex(range(FRAMES))
    out = {}
    for task in ("va", "expr", "au"):
        out[task] = {}
        for when, labels in (("before", gt[task]), ("after", after[task])):
            labelled = ~np.isnan(labels).all(axis=1) if task == "au" else ~np.isnan(labels).any(axis=1)
            keep = have & labelled
            counts = {"frames": int(labelled.sum()), "missing": int((labelled & ~have).sum())}
            if task == "va":
                p = pred[["valence", "arousal"]].to_numpy()[keep]
                cv, ca = ccc(p[:, 0], labels[keep, 0]), ccc(p[:, 1], labels[keep, 1])
                out[task][when] = {"ccc_valence": cv, "ccc_arousal": ca, "p_va": (cv + ca) / 2, **counts}
            elif task == "expr":
                out[task][when] = {"f1": f1_expr(pred["expr"].to_numpy()[keep], labels[keep, 0].astype(int)),
                                   **counts}
            else:
                out[task][when] = {"f1": f1_au(pred[list(AUS)].to_numpy()[keep], labels[keep]), **counts}
    return out


def assert_close(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if key in ("frames", "missing"):
            assert actual[key] == value
        else:
            assert actual[key] == pytest.approx(value, abs=1e-6), key


def test_model_against_annotation_before_and_after_corrections(sessions, setup, planted):  # noqa: F811
    with sessions() as session:
        figures = agreement.model_agreement(session, "v", planted)
    expected = expected_model_scores(setup, planted)
    assert figures.keys() == expected.keys()
    for task in expected:
        for when in ("before", "after"):
            assert_close(figures[task][when], expected[task][when])
    assert figures["va"]["after"]["frames"] == figures["va"]["before"]["frames"] - 5     # the flagged frames
    assert figures["expr"]["after"]["f1"] != figures["expr"]["before"]["f1"]          # the correction counts


def test_reviewers_against_each_other(sessions, planted):
    with sessions() as session:
        figures = agreement.reviewer_agreement(session)
        one_video = agreement.reviewer_agreement(session, "v")
    assert figures == one_video                                   # all of it is on "v"
    # alice: 2 of 3 decided accepted; bob: 1 of 1; carol: 0 of 1.
    assert figures["reviewers"] == {
        "alice": {"proposed": 5, "accepted": 2, "rejected": 1, "pending": 2, "share_accepted": pytest.approx(2 / 3)},
        "bob": {"proposed": 4, "accepted": 1, "rejected": 0, "pending": 3, "share_accepted": 1.0},
        "carol": {"proposed": 3, "accepted": 0, "rejected": 1, "pending": 2, "share_accepted": 0.0},
    }
    pairs = {tuple(p["reviewers"]): p for p in figures["pairs"]}
    assert list(pairs) == [("alice", "bob"), ("alice", "carol"), ("bob", "carol")]

    # alice and bob both labelled VA frames 10-15 (later corrections of one author win).
    alice_v, alice_a = [0.5, 0.5, 0.2, 0.2, -0.3, -0.3], [-0.5, -0.5, 0.1, 0.1, 0.4, 0.4]
    bob_v, bob_a = [0.4, 0.4, 0.4, 0.0, 0.0, 0.0], [-0.4, -0.4, -0.4, 0.3, 0.3, 0.3]
    assert_close(pairs["alice", "bob"]["va"], {"ccc_valence": ccc(alice_v, bob_v), "ccc_arousal": ccc(alice_a, bob_a),
                                               "frames": 6})
    assert pairs["alice", "bob"]["expr"] == {"kappa": None, "frames": 0}
    # bob and carol: EXPR frames 35-39.
    assert_close(pairs["bob", "carol"]["expr"], {"kappa": cohen_kappa_score([6, 6, 6, 4, 4], [6, 3, 3, 6, 6]),
                                                 "frames": 5})
    # alice and carol: AU frames 5-9, AU4 and AU12 (the AUs both set), pooled.
    alice_au = [1, 1] * 3 + [0, 1] * 2          # (AU4, AU12) per frame 5..9; alice set AU4 0 on 8-9
    carol_au = [0, 1] * 5
    assert_close(pairs["alice", "carol"]["au"], {"kappa": cohen_kappa_score(alice_au, carol_au), "frames": 5})
    assert pairs["alice", "carol"]["va"] == {"ccc_valence": None, "ccc_arousal": None, "frames": 0}


def test_too_few_frames_is_not_a_number_but_none():
    one = np.array([[0.5, 0.1]])
    assert agreement.pair_scores("va", one, one - 0.2) == {"ccc_valence": None, "ccc_arousal": None, "frames": 1}
    same = np.array([[3.0], [3.0], [3.0]])
    assert agreement.pair_scores("expr", same, same) == {"kappa": None, "frames": 3}    # undefined kappa: n/a
    few = agreement.model_scores(score_task("expr", np.array([[1.0]]), np.array([[1.0]])))
    assert few == {"f1": None, "frames": 1, "missing": 0}


def test_report_command(sessions, planted, tmp_path, db_url):  # noqa: F811
    path = tmp_path / "table.parquet"
    planted.to_parquet(path)
    with sessions() as session:
        expected = agreement.agreement_report(session, "v", planted)
    json.dumps(expected, allow_nan=False)                      # "n/a" is null, never NaN
    result = subprocess.run([sys.executable, "-m", "db", "--url", db_url, "report", "--video", "v",
                             "--predictions", str(path)], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(json.dumps(expected))
    assert set(expected["model"]) == {"va", "expr", "au"}
    bad = subprocess.run([sys.executable, "-m", "db", "--url", db_url, "report", "--predictions", str(path)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "python -m db report: model agreement needs the video the predictions are for"


def test_the_analyse_tab_scores_as_the_agreement_before_row(sessions, setup):  # noqa: F811
    """One scorer: a table made with a checkpoint's tuned AU thresholds gets the same figures on the
    Analyse tab (webapp.results.metrics_table over the annotation files) as in the agreement's "before"
    row, faceless frames left empty counted as missing in both; P_AU is at the tuned thresholds, not 0.5."""
    from core.metrics import au_scores
    from core.predict import Predictions
    from core.table import AU_PROBS, attach_ground_truth, build, ground_truth_from_files
    from tests.runs import run_info
    from webapp.results import NA, metrics_table, rounded

    rng = np.random.default_rng(3)
    face = np.ones(FRAMES, bool)
    face[20:26] = False
    nan_rows = lambda a: np.where(face[:, None], a, np.nan)  # noqa: E731
    outputs = {"va": nan_rows(rng.uniform(-1, 1, (FRAMES, 2))), "expr": nan_rows(rng.dirichlet(np.ones(8), FRAMES)),
               "au": nan_rows(rng.uniform(0, 1, (FRAMES, 12)))}
    tuned = np.linspace(0.2, 0.75, 12)
    table = build(Predictions(outputs, face, np.zeros(FRAMES, bool), {}), np.arange(FRAMES) / 30, tuned)
    run = run_info({"va": "ddamfn", "expr": "ddamfn", "au": "ddamfn"}, {"ddamfn": False}, FRAMES, tuned)
    truth, _ = ground_truth_from_files(setup, FRAMES)
    shown = metrics_table(attach_ground_truth(table, truth), run).set_index("metric")
    with sessions() as session:
        before = {task: figures["before"] for task, figures in agreement.model_agreement(session, "v", table).items()}
    pairs = {"CCC valence": ("va", "ccc_valence"), "CCC arousal": ("va", "ccc_arousal"), "P_VA": ("va", "p_va"),
             "P_EXPR (F1, 8 classes)": ("expr", "f1"), "P_AU (F1 at the checkpoint's tuned thresholds)": ("au", "f1")}
    assert list(shown.index) == list(pairs)
    for metric, (task, key) in pairs.items():
        assert shown.loc[metric, "value"] == rounded(before[task][key]), metric
        assert (shown.loc[metric, "frames"], shown.loc[metric, "missing"]) == (before[task]["frames"],
                                                                             before[task]["missing"]), metric
    assert before["va"]["missing"] == 6 and before["au"]["missing"] == 6
    gt_au = read_annotation(setup["au"], "au").to_numpy(dtype=float, na_value=np.nan)
    at_half = au_scores(table[AU_PROBS].to_numpy(), gt_au, 0.5, allow_missing=True)["p_au"]
    assert rounded(at_half) != shown.loc["P_AU (F1 at the checkpoint's tuned thresholds)", "value"]
    # A model without VA heads: its VA figures are "n/a" over every annotated frame, not 0.
    no_va = attach_ground_truth(table.assign(valence=np.nan, arousal=np.nan), truth)
    va_rows = metrics_table(no_va, run).set_index("metric").loc[["CCC valence", "CCC arousal", "P_VA"]]
    assert (va_rows["value"] == NA).all() and (va_rows["missing"] == va_rows["frames"]).all()
    assert va_rows["frames"].tolist() == [FRAMES - 3] * 3


def test_each_expression_output_has_its_own_row(sessions, planted):
    """A CLIP prompt set's output beside the model's: each scored against the same labels, keyed by output."""
    table = planted.assign(clip_basic_expr=planted["expr"])
    with sessions() as session:
        figures = agreement.model_agreement(session, "v", table)
    assert sorted(figures) == ["au", "clip_basic", "expr", "va"]
    assert figures["clip_basic"] == figures["expr"]


def test_every_labelled_frame_kept_out_by_flags_scores_nothing_after(sessions, planted):
    """Flags over every frame of EXPR: the after row has no frames and no figure, and the report still comes."""
    with sessions.begin() as session:
        repo.add_flag(session, "v", "expr", 0, FRAMES - 1, "occluded", "carol")
    with sessions() as session:
        figures = agreement.model_agreement(session, "v", planted)
    assert figures["expr"]["after"] == {"f1": None, "frames": 0, "missing": 0}
    assert figures["expr"]["before"]["frames"] > 0
