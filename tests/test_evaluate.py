"""`python -m core.evaluate` run as a real command on Aff-Wild2-format files."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from core.affwild2 import image_name, write_annotation, write_submission
from core.labels import AUS
from tests.datagen import SPLITS

REPO = Path(__file__).resolve().parents[1]
GT_DIRS = {"va": "VA_Estimation_Challenge", "expr": "EXPR_Recognition_Challenge", "au": "AU_Detection_Challenge"}


def evaluate_cli(*args):
    return subprocess.run([sys.executable, "-m", "core.evaluate", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def gt_dir(data, task):
    return data.root / GT_DIRS[task] / "Validation_Set"


def noisy_predictions(data, task, seed=0):
    """Video -> prediction table for the task's validation videos: truth plus noise, a value on every line."""
    rng = np.random.default_rng(seed)
    preds = {}
    for video in SPLITS[task]["val"]:
        truth = data.labels[video]
        n = len(truth)
        if task == "va":
            values = truth[["valence", "arousal"]].fillna(0).to_numpy() + rng.normal(0, 0.3, (n, 2))
            preds[video] = pd.DataFrame(np.clip(values, -1, 1), columns=["valence", "arousal"])
        elif task == "expr":
            keep = rng.random(n) < 0.6
            values = np.where(keep, truth["expression"].fillna(0).to_numpy(int), rng.integers(0, 8, n))
            preds[video] = pd.DataFrame({"expression": values})
        else:
            flip = rng.random((n, 12)) < 0.25
            values = np.where(flip, 1 - truth[list(AUS)].fillna(0).to_numpy(int), truth[list(AUS)].fillna(0).to_numpy(int))
            preds[video] = pd.DataFrame(values, columns=list(AUS))
    return preds


def write_folder(preds, folder, task):
    for video, df in preds.items():
        write_annotation(df, folder / f"{video}.txt", task)
    return folder


def pooled(data, task, preds, columns):
    """Truth and predictions of all validation videos stacked, with the truth's invalid rows dropped."""
    truth = pd.concat([data.labels[v][columns] for v in preds]).to_numpy(dtype=float, na_value=np.nan)
    pred = pd.concat([preds[v][columns] for v in preds]).to_numpy(dtype=float)
    keep = ~np.isnan(truth).any(axis=1)
    return pred[keep], truth[keep]


def reference_ccc(x, y):
    r = np.corrcoef(x, y)[0, 1]
    return 2 * r * x.std() * y.std() / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def test_va_folder_scores_match_the_formula(tmp_path, affwild2_data):
    preds = noisy_predictions(affwild2_data, "va")
    result = evaluate_cli("--task", "va", "--pred", write_folder(preds, tmp_path / "pred", "va"),
                          "--gt", gt_dir(affwild2_data, "va"), "--json")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    pred, truth = pooled(affwild2_data, "va", preds, ["valence", "arousal"])
    assert scores["ccc_valence"] == pytest.approx(reference_ccc(pred[:, 0], truth[:, 0]))
    assert scores["ccc_arousal"] == pytest.approx(reference_ccc(pred[:, 1], truth[:, 1]))
    assert scores["p_va"] == pytest.approx((scores["ccc_valence"] + scores["ccc_arousal"]) / 2)
    assert 0.2 < scores["p_va"] < 0.99
    assert (scores["task"], scores["n_videos"], scores["n_frames"]) == ("va", 2, 80)


def test_expr_text_report(tmp_path, affwild2_data):
    preds = noisy_predictions(affwild2_data, "expr")
    result = evaluate_cli("--task", "expr", "--pred", write_folder(preds, tmp_path / "pred", "expr"),
                          "--gt", gt_dir(affwild2_data, "expr"))
    assert result.returncode == 0, result.stderr
    pred, truth = pooled(affwild2_data, "expr", preds, ["expression"])
    assert len(truth) == 77  # 3 invalid lines in 11-24-640x360
    expected = f1_score(truth[:, 0], pred[:, 0], labels=range(8), average=None, zero_division=0)
    lines = result.stdout.splitlines()
    assert lines[0] == "EXPR: 2 video(s), 80 frames (77 annotated)"
    assert f"  P_EXPR        {expected.mean():.4f}" in lines
    assert f"  F1 Happiness  {expected[4]:.4f}" in lines


def test_au_predictions_as_a_submission_file(tmp_path, affwild2_data):
    preds = noisy_predictions(affwild2_data, "au")
    rows = []
    for video, df in preds.items():
        rows.append(df.assign(image_location=[f"{video}/{image_name(f)}" for f in range(len(df))]))
    submission = pd.concat(rows).sample(frac=1, random_state=0)  # any order
    write_submission(submission, tmp_path / "au_submission.txt", "au")
    result = evaluate_cli("--task", "au", "--pred", tmp_path / "au_submission.txt",
                          "--gt", gt_dir(affwild2_data, "au"), "--json")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    pred, truth = pooled(affwild2_data, "au", preds, list(AUS))
    expected = [f1_score(truth[:, k], pred[:, k], zero_division=0) for k in range(12)]
    np.testing.assert_allclose(scores["f1_per_au"], expected)
    assert scores["p_au"] == pytest.approx(np.mean(expected))


def test_two_single_files_are_matched_whatever_their_names(tmp_path, affwild2_data):
    preds = noisy_predictions(affwild2_data, "va")
    video = SPLITS["va"]["val"][0]
    write_annotation(preds[video], tmp_path / "my_prediction.txt", "va")
    result = evaluate_cli("--task", "va", "--pred", tmp_path / "my_prediction.txt",
                          "--gt", gt_dir(affwild2_data, "va") / f"{video}.txt", "--json")
    assert result.returncode == 0, result.stderr
    pred, truth = pooled(affwild2_data, "va", {video: preds[video]}, ["valence", "arousal"])
    assert json.loads(result.stdout)["ccc_valence"] == pytest.approx(reference_ccc(pred[:, 0], truth[:, 0]))


def assert_one_line_error(result, *fragments):
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_video_is_a_clear_error(tmp_path, affwild2_data):
    preds = noisy_predictions(affwild2_data, "va")
    del preds["12-30-640x360"]
    result = evaluate_cli("--task", "va", "--pred", write_folder(preds, tmp_path / "pred", "va"),
                          "--gt", gt_dir(affwild2_data, "va"))
    assert_one_line_error(result, "no predictions for 1 of 2 video(s): 12-30-640x360")


def test_length_mismatch_is_a_clear_error(tmp_path, affwild2_data):
    preds = noisy_predictions(affwild2_data, "expr")
    preds["11-24-640x360"] = preds["11-24-640x360"].iloc[:35]
    result = evaluate_cli("--task", "expr", "--pred", write_folder(preds, tmp_path / "pred", "expr"),
                          "--gt", gt_dir(affwild2_data, "expr"))
    assert_one_line_error(result, "video 11-24-640x360: predictions have 35 frames, ground truth has 40",
                          "no prediction for 00036.jpg")


def test_malformed_prediction_names_file_and_line(tmp_path, affwild2_data):
    folder = write_folder(noisy_predictions(affwild2_data, "va"), tmp_path / "pred", "va")
    path = folder / "12-30-640x360.txt"
    lines = path.read_text().splitlines()
    lines[4] = "0.5,high"
    path.write_text("\n".join(lines) + "\n")
    result = evaluate_cli("--task", "va", "--pred", folder, "--gt", gt_dir(affwild2_data, "va"))
    assert_one_line_error(result, f"{path.name}, line 5", "'high' is not a number")


def test_unfilled_frames_in_predictions_are_refused(tmp_path, affwild2_data):
    preds = noisy_predictions(affwild2_data, "au")
    preds["13-30-960x540"].iloc[30:] = pd.NA  # faceless frames left without a prediction
    result = evaluate_cli("--task", "au", "--pred", write_folder(preds, tmp_path / "pred", "au"),
                          "--gt", gt_dir(affwild2_data, "au"))
    assert_one_line_error(result, "video 13-30-960x540: 10 annotated frame(s) have no prediction (first 00031.jpg)")


@pytest.mark.parametrize("case", ["no such path", "empty folder", "wrong task"])
def test_bad_inputs_are_clear_errors(tmp_path, affwild2_data, case):
    gt = gt_dir(affwild2_data, "va")
    if case == "no such path":
        result = evaluate_cli("--task", "va", "--pred", tmp_path / "nothing", "--gt", gt)
        assert_one_line_error(result, "nothing does not exist")
    elif case == "empty folder":
        (tmp_path / "empty").mkdir()
        result = evaluate_cli("--task", "va", "--pred", tmp_path / "empty", "--gt", gt)
        assert_one_line_error(result, "holds no .txt files")
    else:
        result = evaluate_cli("--task", "au", "--pred", gt, "--gt", gt)
        assert_one_line_error(result, "line 1", "is not the AU header")
