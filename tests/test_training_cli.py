"""`python -m training` as a user runs it, in a real process on the small Aff-Wild2 copy (tests/datagen.py):
stdout carries the JSON result only, a run that writes no checkpoint says so, the untrained baseline is
asked for by name, and a missing review database is reported once."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.config import UNTRAINED

REPO = Path(__file__).resolve().parents[1]
CPU = ["--device", "cpu", "--workers", "0", "--no-progress"]


def training(*args, tmp_path: Path) -> subprocess.CompletedProcess:
    """`python -m training ARGS` with the review database pointed at a file that does not exist."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AFFECTLENS_DB_URL": f"sqlite:///{tmp_path / 'no-such.db'}"}
    return subprocess.run([sys.executable, "-m", "training", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_short_training_run_prints_only_its_result_and_warns_once_about_the_database(affwild2_root, tmp_path):
    proc = training("train", "--root", affwild2_root, "--out", tmp_path / "run", "--tasks", "va", "--epochs", 1,
                    "--steps-per-epoch", 1, "--batch-size", 8, *CPU, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)                      # the whole of stdout is the JSON result
    assert result == {"best": str(tmp_path / "run" / "best.pt"), "model": None} and Path(result["best"]).is_file()
    assert "epoch 1: loss" in proc.stderr
    assert proc.stderr.count("training on the annotation files") == 1      # train and val splits, one warning
    assert proc.stderr.count("the checkpoint is not registered as a model") == 1


def test_a_checkpoint_written_by_training_is_a_row_of_the_models_table(affwild2_root, tmp_path):
    from db import repo
    from db.engine import init_db, make_session_factory

    url = f"sqlite:///{tmp_path / 'review.db'}"
    init_db(url)
    proc = training("train", "--root", affwild2_root, "--out", tmp_path / "run", "--tasks", "va", "--epochs", 1,
                    "--steps-per-epoch", 2, "--batch-size", 8, "--db", url, *CPU, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    with make_session_factory(init_db(url))() as s:
        model = repo.get_model(s, result["model"])
        assert model.path == str(Path(result["best"]).resolve()) and model.trained_steps == 2
        assert model.content_hash == repo.file_sha256(result["best"]) and model.tasks == ["va"]
        assert model.training["frames_seen"] == 16


def test_training_that_writes_no_checkpoint_says_so(affwild2_root, tmp_path):
    proc = training("train", "--root", affwild2_root, "--out", tmp_path / "run", "--tasks", "va", "--epochs", 0,
                    "--no-corrections", *CPU, tmp_path=tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: no checkpoint was written ({tmp_path / 'run' / 'best.pt'} does not exist); --epochs 0 trains nothing")
    assert not (tmp_path / "run" / "best.pt").exists()


def test_the_untrained_baseline_is_evaluated_and_predicted_by_name(affwild2_root, tmp_path):
    common = ["--root", affwild2_root, "--tasks", "expr", "--batch-size", 64, *CPU]
    runs = [training("evaluate", "--weights", UNTRAINED, "--no-corrections", "--out", tmp_path / f"m{k}.json",
                     *common, tmp_path=tmp_path) for k in range(2)]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
    result = json.loads(runs[0].stdout)
    assert result["weights"] == "untrained" and result["tasks"] == ["expr"]
    assert json.loads((tmp_path / "m0.json").read_text()) == result
    assert 0 <= result["metrics"]["p_expr"] <= 1 and result["metrics"]["expr_frames"] > 0
    assert json.loads(runs[1].stdout)["metrics"] == result["metrics"]      # the same random weights each time

    proc = training("predict", "--weights", UNTRAINED, "--videos", "val", "--out", tmp_path / "sub", *common,
                    tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"weights": "untrained", "files": {"expr": str(tmp_path / "sub" / "expr.txt"),
                                                                        "run": str(tmp_path / "sub" / "run.json")}}
    assert (tmp_path / "sub" / "expr.txt").read_text().startswith("image_location,Neutral,Anger")
    run = json.loads((tmp_path / "sub" / "run.json").read_text())      # how the submission was made
    assert run["weights"] == "untrained" and run["untrained"] and run["encoded"] == "every face image (no stride)"


@pytest.mark.parametrize("weights, message", [(UNTRAINED, "thresholds are stored in a checkpoint"),
                                              ("/no/such.pt", "not found")])
def test_thresholds_need_a_checkpoint_file(affwild2_root, tmp_path, weights, message):
    proc = training("thresholds", "--weights", weights, "--root", affwild2_root, *CPU, tmp_path=tmp_path)
    assert proc.returncode == 1 and proc.stdout == "" and message in proc.stderr
