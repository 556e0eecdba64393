"""`python -m training audit` on the generated Aff-Wild2 copy: out-of-fold predictions with folds grouped
by subject, resumable per fold, the same result from two torchrun CPU processes as from one."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.audit import oof_frames
from training import config
from training.audit import assign_folds, audit, make_folds, subject
from tests.datagen import copy_affwild2

REPO = Path(__file__).resolve().parents[1]
SETTINGS = dict(encoder="untrained", folds=3, epochs=3, batch_size=32, corrections=False, device="cpu",
                workers=0, progress=False, write_db=False)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(root, out, cache, **extra):
    return audit(config.build(config.AuditConfig, root=str(root), out=str(out), cache=str(cache),
                              **{**SETTINGS, **extra}))


def test_folds_keep_a_recordings_views_together():
    videos = ["1-30-10x10_left", "1-30-10x10_right", "2", "3", "4", "5"]
    folds = assign_folds(videos, 3)
    assert folds["1-30-10x10_left"] == folds["1-30-10x10_right"] and subject("1-30-10x10_left") == "1-30-10x10"
    assert sorted(np.bincount(list(folds.values()))) == [2, 2, 2]      # balanced by video count, groups intact
    with pytest.raises(ValueError, match="6 folds need at least 6 subjects; the split has 5"):
        assign_folds(videos, 6)


def test_fewer_subjects_than_folds_fold_by_blocks_of_frames_with_a_gap():
    table = pd.DataFrame({"video": ["a"] * 9 + ["b"] * 6, "frame": [*range(1, 10), *range(0, 12, 2)]})
    folds = make_folds(table, 3, gap=1)
    assert folds.by == "blocks" and folds.of_row.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 1, 1, 2, 2]
    assert folds.names == {"0": ["a:1-3", "b:0-2"], "1": ["a:4-6", "b:4-6"], "2": ["a:7-9", "b:8-10"]}
    assert folds.train(1).tolist() == [1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1]     # 1 frame gap each side
    assert "fewer subjects than folds" in folds.describe()
    by_subject = make_folds(table, 2, gap=1)
    assert by_subject.by == "subject" and by_subject.of_row.tolist() == [1] * 9 + [0] * 6
    assert by_subject.train(0).tolist() == [True] * 9 + [False] * 6      # whole videos, no gap
    one = pd.DataFrame({"video": ["a"] * 9, "frame": range(9)})           # 3 blocks of 3, gap 3: the middle fold
    with pytest.raises(ValueError, match="^9 annotated frames are too few for 3 folds of blocks with 3 frames left "
                                         "out either side of each: a fold would have no frame to learn from. Use "
                                         r"fewer folds \(--folds\) or a longer video.$"):
        make_folds(one, 3, gap=3)


def test_one_video_is_audited_by_blocks_of_frames(affwild2_data, tmp_path):
    data = copy_affwild2(affwild2_data, tmp_path / "one")
    for path in data.root.glob("*_Challenge/Validation_Set/*.txt"):
        if not path.name.startswith("11-24-640x360"):
            path.unlink()                                     # the val split: one video, one subject
    summary = run(data.root, tmp_path / "out", tmp_path / "cache", split="val", folds=4, window=4)
    meta = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert meta["folds"] == {"0": ["11-24-640x360:0-9"], "1": ["11-24-640x360:10-19"],
                             "2": ["11-24-640x360:20-29"], "3": ["11-24-640x360:30-39"]}
    assert summary["folding"] == meta["folding"] == (
        "4 folds of contiguous blocks of frames within each video (fewer subjects than folds), 4 frames either "
        "side of a held block left out of training")
    oof = np.load(tmp_path / "out" / "oof.npz")
    assert oof["fold"].tolist() == [f for f in range(4) for _ in range(10)]
    assert not np.isnan(oof["va"]).any()


@pytest.fixture(scope="module")
def first(affwild2_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit")
    return tmp, run(affwild2_root, tmp / "one", tmp / "cache")


def test_every_annotated_frame_with_a_face_gets_an_out_of_fold_prediction(affwild2_data, first):
    tmp, summary = first
    out = tmp / "one"
    meta = json.loads((out / "audit.json").read_text())
    assert meta["folds"] == {"0": ["14-30-960x640_left", "14-30-960x640_right"], "1": ["13-30-960x540"],
                             "2": ["10-24-640x360"]}
    assert meta["encoder"]["untrained"] is True and summary["encoder_untrained"] is True
    oof = np.load(out / "oof.npz")
    frames = sum(int(affwild2_data.labels[v]["has_image"].sum()) for v in
                 ["10-24-640x360", "13-30-960x540", "14-30-960x640_left", "14-30-960x640_right"])
    assert int((~np.isnan(oof["va"]).any(axis=1)).sum()) == frames
    assert set(np.unique(oof["fold"])) == {0, 1, 2}
    assert meta["metrics"]["expr_frames"] > 0 and "p_va" in meta["metrics"]
    one = oof_frames(out, "13-30-960x540")
    labels = affwild2_data.labels["13-30-960x540"]
    assert one["frame"].tolist() == labels.index.tolist() and set(one["fold"]) == {1}
    assert list(one.columns[:4]) == ["frame", "fold", "valence", "arousal"] and "p_AU12" in one
    assert one.loc[labels["has_image"].to_numpy(), "valence"].notna().all()
    segments = pd.read_csv(out / "segments.csv")
    assert list(segments.columns[:4]) == ["video", "task", "kind", "start_frame"]
    assert (segments["kind"] != "clean").sum() == summary["segments"]


def test_a_rerun_skips_finished_folds_and_redoes_a_missing_one(affwild2_root, first):
    tmp, summary = first
    out = tmp / "one"
    before = {k: (out / f"fold-{k}.npz").stat().st_mtime_ns for k in range(3)}
    oof = np.load(out / "oof.npz")["va"]
    (out / "fold-1.npz").unlink()
    again = run(affwild2_root, out, tmp / "cache")
    assert again.pop("timing")["fold_seconds"] > 0 and again == {k: v for k, v in summary.items() if k != "timing"}
    after = {k: (out / f"fold-{k}.npz").stat().st_mtime_ns for k in range(3)}
    assert after[0] == before[0] and after[2] == before[2] and after[1] != before[1]
    np.testing.assert_array_equal(np.load(out / "oof.npz")["va"], oof)
    changed = run(affwild2_root, tmp / "changed", tmp / "cache", epochs=1)
    for k in range(3):                                   # other settings: no fold file is taken over
        (tmp / "changed" / f"fold-{k}.npz").rename(out / f"fold-{k}.npz")
    run(affwild2_root, out, tmp / "cache")
    np.testing.assert_array_equal(np.load(out / "oof.npz")["va"], oof)
    assert changed["metrics"] != summary["metrics"]


def test_torchrun_two_cpu_processes_give_the_same_result(affwild2_root, first):
    tmp, _ = first
    out = tmp / "two"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items() if not isinstance(v, bool)]
    flags = ["--no-corrections", "--no-progress", "--no-write-db"]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "training",
         "audit", "--root", str(affwild2_root), "--out", str(out), "--cache", str(tmp / "cache"), *args, *flags],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["out"] == str(out)                 # one report, from process 0
    one, two = np.load(tmp / "one" / "oof.npz"), np.load(out / "oof.npz")
    for task in ("va", "expr", "au", "fold"):
        np.testing.assert_allclose(two[task], one[task], rtol=1e-5, atol=1e-6)
    pd.testing.assert_frame_equal(pd.read_csv(out / "segments.csv"), pd.read_csv(tmp / "one" / "segments.csv"))


def test_the_run_and_its_segments_go_into_the_review_database(affwild2_root, first):
    from db import repo
    from db.engine import init_db, make_engine, make_session_factory

    tmp, summary = first
    url = f"sqlite:///{tmp / 'review.db'}"
    init_db(make_engine(url))
    again = run(affwild2_root, tmp / "one", tmp / "cache", write_db=True, db=url)    # folds resumed
    assert again["audit_run"] == 1
    with make_session_factory(make_engine(url))() as s:
        stored = repo.suggestions_table(s, status=None)
        meta = repo.latest_audit_run(s)
    segments = pd.read_csv(tmp / "one" / "segments.csv")
    assert len(stored) == len(segments) == summary["segments"] + (segments["kind"] == "clean").sum()
    assert stored["score"].tolist() == sorted(segments["score"], reverse=True)
    assert meta.encoder["untrained"] is True and meta.folds["1"] == ["13-30-960x540"]


def test_the_run_says_its_calibration_and_draws_its_random_sample(first):
    tmp, summary = first
    meta = json.loads((tmp / "one" / "audit.json").read_text())
    cal = meta["settings"]["calibration"]
    assert summary["calibration"] == cal and set(cal) == {
        "threshold", "expected_precision", "recall", "false_alarms_per_10_min", "clean_minutes", "plants",
        "segments", "hits"}
    assert 0 <= cal["threshold"] <= 1 and cal["false_alarms_per_10_min"] < 1
    sample = meta["settings"]["sample"]
    labelled = meta["annotated_frames"]
    assert sample["frames"] == {t: labelled[t] for t in ("va", "expr", "au")}
    segments = pd.read_csv(tmp / "one" / "segments.csv")
    clean = segments[segments["kind"] == "clean"]
    drawn = pd.DataFrame(sample["units"])
    assert len(clean) == (drawn["stratum"] == "clean").sum() > 0 and (clean["score"] == 0).all()
    real = segments[segments["kind"] != "clean"]
    assert real["score"].between(0, 1).all() and real["raw_score"].notna().all()
    assert summary["above_report"] == int((real["score"] >= cal["threshold"]).sum())
