"""The review loop against a real database (SQLite always, PostgreSQL when configured): decisions checked
against the open video before anything is written, revisions with a reason, the flag life cycle and its
effect on effective labels and exports, the lists the review page shows, reusable prediction runs, model
records and training jobs, and the command line."""
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from test_db_engine import REPO_ROOT, count, db_url, engine, sessions  # noqa: F401  (fixtures)
from test_db_repo import FRAMES, setup  # noqa: F401  (fixture)

from core.affwild2 import read_annotation
from db import export, repo
from db.engine import make_engine, make_session_factory

TABLES = ("reviewers", "corrections", "flags", "audit_events")


def rows(engine) -> dict:
    return {t: count(engine, t) for t in TABLES}


def refused_and_nothing_written(sessions, engine, error, message: str, write, **kwargs) -> None:
    """write(session, **kwargs) raises `error` with `message`, and committing the session afterwards
    stores nothing: the function added nothing to the session before it refused."""
    before = rows(engine)
    with sessions.begin() as session:
        with pytest.raises(error, match=re.escape(message)):
            write(session, **kwargs)
    assert rows(engine) == before


@pytest.fixture
def proposed(sessions, setup):  # noqa: F811
    """A second video "w"; alice proposes EXPR 4 for frames 10-19 of "v" (correction 1)."""
    with sessions.begin() as session:
        repo.register_video(session, "w", FRAMES, 30.0, name="other.mp4")
        return repo.add_correction(session, "v", "expr", 10, 19, 4, "alice").id


# ---------------------------------------------------------------------------------------------------
# Decisions


def test_accepting_with_no_video_open_is_refused_and_writes_nothing(sessions, engine, proposed):
    """The issue's sequence: reviewer B, no video open, types correction id 1 and presses Accept."""
    assert proposed == 1
    for video in (None, "", "   "):
        refused_and_nothing_written(sessions, engine, repo.ValidationError, "No video is open",
                                    repo.decide_correction, correction_id=1, video=video, reviewer="newcomer",
                                    accept=True)
    with sessions() as session:
        [correction] = repo.list_corrections(session)
        assert (correction.status, correction.reviewed_by) == ("proposed", None)
        assert [e.action for e in repo.history(session)] == ["proposed"]
        with pytest.raises(repo.NotFoundError):
            repo.get_reviewer(session, "newcomer")


def test_bad_ids_wrong_video_and_own_correction_are_refused_and_write_nothing(sessions, engine, proposed):
    decide = dict(video="v", reviewer="newcomer", accept=True)
    cases = [
        (repo.ValidationError, f"correction id {2**63} is out of range (1 to 2,147,483,647)",
         dict(decide, correction_id=2**63)),
        (repo.ValidationError, f"correction id {2**31} is out of range", dict(decide, correction_id=2**31)),
        (repo.ValidationError, "correction id 0 is out of range", dict(decide, correction_id=0)),
        (repo.ValidationError, "correction id -1 is out of range", dict(decide, correction_id=-1)),
        (repo.ValidationError, "correction id must be an integer, not 1.5", dict(decide, correction_id=1.5)),
        (repo.ValidationError, "correction id must be an integer, not nan", dict(decide, correction_id=float("nan"))),
        (repo.ValidationError, "correction id must be an integer, not '1'", dict(decide, correction_id="1")),
        (repo.NotFoundError, "No correction 2", dict(decide, correction_id=2)),
        (repo.NotFoundError, f"No correction {2**31 - 1}", dict(decide, correction_id=2**31 - 1)),
        (repo.NotFoundError, "unknown video 'x'", dict(decide, correction_id=1, video="x")),
        (repo.ReviewRuleError, "correction 1 belongs to video 'clip.mp4', not to 'other.mp4', which is open",
         dict(decide, correction_id=1, video="w")),
        (repo.ReviewRuleError, "alice proposed correction 1; a second reviewer must accept or reject it",
         dict(decide, correction_id=1, reviewer="alice")),
        (repo.ValidationError, "accept must be True or False", dict(decide, correction_id=1, accept="yes")),
        (repo.ValidationError, "the comment is 2,001 characters long; at most 2,000 are allowed",
         dict(decide, correction_id=1, comment="x" * 2001)),
    ]
    for error, message, kwargs in cases:
        refused_and_nothing_written(sessions, engine, error, message, repo.decide_correction, **kwargs)
    # The same checks guard revisions and flag resolutions.
    refused_and_nothing_written(sessions, engine, repo.ValidationError, "No video is open", repo.revise_decision,
                                correction_id=1, video=None, reviewer="bob", accept=False, reason="why")
    refused_and_nothing_written(sessions, engine, repo.ValidationError, f"flag id {2**63} is out of range",
                                repo.resolve_flag, flag_id=2**63, video="v", reviewer="bob",
                                resolution="frames unusable")


def test_a_decided_correction_is_not_pending(sessions, engine, proposed):
    with sessions.begin() as session:
        accepted = repo.decide_correction(session, proposed, video="v", reviewer="newcomer", accept=True,
                                          comment="  she smiles  ")
    assert (accepted.status, accepted.reviewed_by.name, accepted.decision_comment) == (
        "accepted", "newcomer", "she smiles")           # the reviewer row is created once the checks pass
    refused_and_nothing_written(sessions, engine, repo.ReviewRuleError,
                                "correction 1 was already accepted by newcomer; revise the decision, with a reason",
                                repo.decide_correction, correction_id=1, video="v", reviewer="carol", accept=False)
    before = rows(engine)
    with sessions.begin() as session:             # the same decision again: a double click, no change
        again = repo.decide_correction(session, proposed, video="v", reviewer="carol", accept=True)
    assert (again.reviewed_by.name, rows(engine)) == ("newcomer", before)


def test_revising_a_decision_needs_a_reason_and_is_kept(sessions, engine, proposed):
    refused_and_nothing_written(sessions, engine, repo.ReviewRuleError, "correction 1 is pending",
                                repo.revise_decision, correction_id=1, video="v", reviewer="bob", accept=False,
                                reason="no")
    with sessions.begin() as session:
        repo.decide_correction(session, proposed, video="v", reviewer="bob", accept=True)
    revise = dict(correction_id=1, video="v", reviewer="carol", accept=False)
    for reason, message in [("", "revising a decision needs a reason"), ("   ", "revising a decision needs a reason"),
                            (None, "revising a decision needs a reason"),
                            ("x" * 2001, "the reason is 2,001 characters long")]:
        refused_and_nothing_written(sessions, engine, repo.ValidationError, message, repo.revise_decision,
                                    **revise, reason=reason)
    refused_and_nothing_written(sessions, engine, repo.ReviewRuleError, "correction 1 is already accepted",
                                repo.revise_decision, **dict(revise, accept=True), reason="sure")
    refused_and_nothing_written(sessions, engine, repo.ReviewRuleError, "alice proposed correction 1",
                                repo.revise_decision, **dict(revise, reviewer="alice"), reason="mine")
    with sessions.begin() as session:
        assert repo.revise_decision(session, **revise, reason="frame 15 shows a grimace").status == "rejected"
        back = repo.revise_decision(session, **dict(revise, reviewer="bob", accept=True), reason="it is a smile")
    assert (back.status, back.reviewed_by.name, back.decision_comment) == ("accepted", "bob", "it is a smile")
    with sessions() as session:
        events = repo.history(session, correction=proposed)
    assert [(e.action, e.reviewer.name) for e in events] == [
        ("proposed", "alice"), ("accepted", "bob"), ("revised", "carol"), ("revised", "bob")]
    assert events[2].detail == {"before": "accepted", "after": "rejected", "reason": "frame 15 shows a grimace"}
    assert events[3].detail == {"before": "rejected", "after": "accepted", "reason": "it is a smile"}


def test_notes_are_length_limited(sessions, engine, setup):  # noqa: F811
    refused_and_nothing_written(sessions, engine, repo.ValidationError, "the note is 2,001 characters long",
                                repo.add_flag, video="v", task="va", start_frame=0, end_frame=1, reason="other",
                                reviewer="alice", note="n" * 2001)
    refused_and_nothing_written(sessions, engine, repo.ValidationError, "the note is 2,001 characters long",
                                repo.add_correction, video="v", task="expr", start_frame=0, end_frame=1, value=1,
                                reviewer="alice", note="n" * 2001)
    with sessions.begin() as session:
        assert len(repo.add_flag(session, "v", "va", 0, 1, "other", "alice", note="n" * 2000).note) == 2000


# ---------------------------------------------------------------------------------------------------
# Flags


@pytest.fixture
def flagged(sessions, setup):  # noqa: F811
    """Four EXPR flags on "v" (ids 1-4, frames 0-9, 20-29, 40-44, 50-54) and corrections: 1 EXPR 20-24 = 6
    accepted, 2 EXPR 40-49 = 7 proposed, 3 VA 20-29 accepted, 4 EXPR 0-9 on "w" accepted."""
    with sessions.begin() as session:
        repo.register_video(session, "w", FRAMES, 30.0, name="other.mp4")
        for start, end in ((0, 9), (20, 29), (40, 44), (52, 54)):
            repo.add_flag(session, "v", "expr", start, end, "wrong label", "alice")
        fix = repo.add_correction(session, "v", "expr", 20, 24, "Surprise", "alice")
        repo.add_correction(session, "v", "expr", 40, 49, "Other", "alice")
        va = repo.add_correction(session, "v", "va", 20, 29, (0.5, 0.5), "alice")
        other = repo.add_correction(session, "w", "expr", 0, 9, "Anger", "alice")
        for c in (fix, va):
            repo.decide_correction(session, c.id, video="v", reviewer="bob", accept=True)
        repo.decide_correction(session, other.id, video="w", reviewer="bob", accept=True)


def labels_and_exports(sessions, tmp_path):
    """Effective EXPR labels of "v" and the same read back from the exported annotation file."""
    with sessions() as session:
        labels = repo.effective_labels(session, "v", "expr")
        path = export.export_annotations(session, "v", "expr", tmp_path / "v_expr.txt")
    return labels, read_annotation(path, "expr")


def resolve(session, flag_id, resolution, correction_id=None, reviewer="carol", video="v"):
    return repo.resolve_flag(session, flag_id, video=video, reviewer=reviewer, resolution=resolution,
                             correction_id=correction_id, note="checked")


def test_each_flag_resolution_reaches_effective_labels_and_exports(sessions, engine, flagged, setup, tmp_path):  # noqa: F811
    expr = read_annotation(setup["expr"], "expr")["expression"]
    labels, exported = labels_and_exports(sessions, tmp_path)
    out = lambda: set(np.flatnonzero(labels["flagged"].to_numpy()))  # noqa: E731
    assert out() == set(range(0, 10)) | set(range(20, 30)) | set(range(40, 45)) | set(range(52, 55))
    assert exported["expression"].iloc[sorted(out())].isna().all()      # open flags: exported invalid
    assert exported["expression"].iloc[20:25].isna().all()              # even under an accepted correction

    with sessions.begin() as session:
        right = resolve(session, 1, "annotation is right")
        fixed = resolve(session, 2, "fixed by correction", correction_id=1)
        unusable = resolve(session, 3, "frames unusable")
    assert (right.resolution, fixed.resolved_by_correction_id, unusable.resolved_by.name) == (
        "annotation is right", 1, "carol")
    labels, exported = labels_and_exports(sessions, tmp_path)
    # "annotation is right": back in, with the annotation.
    assert not labels["flagged"].iloc[0:10].any()
    assert exported["expression"].iloc[0:10].tolist() == expr.iloc[0:10].tolist()
    # "fixed by correction 1": the frames it covers carry its label; 25-29, which it does not cover, stay out.
    assert not labels["flagged"].iloc[20:25].any() and labels["flagged"].iloc[25:30].all()
    assert exported["expression"].iloc[20:25].tolist() == [6] * 5
    assert labels["correction_id"].iloc[20:25].tolist() == [1] * 5
    assert exported["expression"].iloc[25:30].isna().all()
    # "frames unusable": stays out.
    assert labels["flagged"].iloc[40:45].all() and exported["expression"].iloc[40:45].isna().all()
    assert labels["flag_reasons"].iloc[40] == "wrong label"
    # An open flag is untouched, and nothing else changed.
    assert labels["flagged"].iloc[52:55].all()
    rest = [i for i in range(FRAMES) if not (20 <= i < 30 or 40 <= i < 45 or 52 <= i < 55)]
    assert exported["expression"].iloc[rest].tolist() == expr.iloc[rest].tolist()

    # The fixing correction revised to rejected: its frames go back out (the annotation was wrong there).
    with sessions.begin() as session:
        repo.revise_decision(session, 1, video="v", reviewer="carol", accept=False, reason="not a surprise")
    labels, exported = labels_and_exports(sessions, tmp_path)
    assert labels["flagged"].iloc[20:30].all() and exported["expression"].iloc[20:30].isna().all()

    with sessions() as session:
        assert [f.id for f in repo.list_flags(session, "v", open_only=True)] == [4]
        assert len(repo.list_flags(session, "v")) == 4
        events = repo.history(session, flag=2)
        flags = export.flags_table(session, "v")
    assert [e.action for e in events] == ["flagged", "resolved"]
    assert events[1].detail == {"resolution": "fixed by correction", "correction_id": 1, "note": "checked"}
    assert flags["resolution"].tolist()[:3] == ["annotation is right", "fixed by correction", "frames unusable"]
    assert flags["resolved_by_correction_id"].tolist()[:2] == [pd.NA, 1]


def test_a_flag_resolution_is_checked_before_anything_is_written(sessions, engine, flagged):
    fixes = [
        (repo.ValidationError, "unknown resolution 'fine'", dict(resolution="fine")),
        (repo.ValidationError, "'fixed by correction' names the correction", dict(resolution="fixed by correction")),
        (repo.ValidationError, "'fixed by correction' names the correction",
         dict(resolution="frames unusable", correction_id=1)),
        (repo.NotFoundError, "No flag 99", dict(flag_id=99, resolution="frames unusable")),
        (repo.ReviewRuleError, "flag 1 belongs to video 'clip.mp4', not to 'other.mp4', which is open",
         dict(video="w", resolution="frames unusable")),
        (repo.NotFoundError, "No correction 99", dict(flag_id=2, resolution="fixed by correction", correction_id=99)),
        (repo.ReviewRuleError, "correction 3 is for VA of video 'clip.mp4'; flag 2 is for EXPR",
         dict(flag_id=2, resolution="fixed by correction", correction_id=3)),
        (repo.ReviewRuleError, "correction 4 is for EXPR of video 'other.mp4'",
         dict(flag_id=1, resolution="fixed by correction", correction_id=4)),
        (repo.ReviewRuleError, "correction 1 (frames 20-24) does not overlap flag 1 (frames 0-9)",
         dict(flag_id=1, resolution="fixed by correction", correction_id=1)),
        (repo.ReviewRuleError, "correction 2 is proposed; only an accepted correction fixes a flag",
         dict(flag_id=3, resolution="fixed by correction", correction_id=2)),
        (repo.ValidationError, "the note is 2,001 characters long", dict(resolution="frames unusable", note="n" * 2001)),
    ]
    base = dict(flag_id=1, video="v", reviewer="newcomer")
    for error, message, change in fixes:
        refused_and_nothing_written(sessions, engine, error, message, repo.resolve_flag, **(base | change))
    with sessions.begin() as session:
        resolve(session, 1, "frames unusable")
    before = rows(engine)
    with sessions.begin() as session:
        assert resolve(session, 1, "frames unusable", reviewer="bob").resolved_by.name == "carol"   # double click
    assert rows(engine) == before
    refused_and_nothing_written(sessions, engine, repo.ReviewRuleError,
                                "flag 1 was already resolved (frames unusable) by carol", repo.resolve_flag,
                                **base, resolution="annotation is right")


# ---------------------------------------------------------------------------------------------------
# Lists for the review page


def test_video_list_and_corrections_waiting_for_a_reviewer(sessions, setup, tmp_path):  # noqa: F811
    upload = "sha256:" + "ab" * 32
    with sessions.begin() as session:
        with pytest.raises(repo.ValidationError, match="is an upload: give its file name"):
            repo.register_video(session, upload, 90, 30.0)
        repo.register_video(session, upload, 90, 30.0, name="phone clip.mp4")
        repo.register_video(session, "quiet", 10, 30.0)
        repo.add_prediction_run(session, upload, models=["ddamfn"], device="cpu", table_path="runs/1/table.parquet",
                                untrained=True)
        run = repo.add_prediction_run(session, upload, models=["ddamfn"], device="cpu",
                                      table_path="runs/2/table.parquet", untrained=True)
        a = repo.add_correction(session, "v", "expr", 0, 1, 2, "alice")
        b = repo.add_correction(session, upload, "va", 0, 1, (0.1, 0.1), "bob")
        c = repo.add_correction(session, "v", "expr", 5, 6, 3, "carol")
        repo.add_flag(session, "v", "va", 0, 3, "occluded", "bob")
        flag = repo.add_flag(session, "v", "au", 0, 3, "no face", "bob")
    with sessions.begin() as session:
        repo.decide_correction(session, c.id, video="v", reviewer="alice", accept=False)
        resolved = repo.resolve_flag(session, flag.id, video="v", reviewer="alice", resolution="frames unusable")
    with sessions() as session:
        videos = repo.list_videos(session)
        newest_event = repo.history(session, video="v")[-1]
        waiting = {name: [x.id for x in repo.waiting_for(session, name)] for name in ("alice", "bob", "zoe")}
        only_v = [x.id for x in repo.waiting_for(session, "bob", video="v")]
    assert [v["key"] for v in videos] == ["v", upload, "quiet"]          # most recent activity first
    by_key = {v["key"]: v for v in videos}
    assert by_key[upload] | {"last_activity": None} == {
        "key": upload, "name": "phone clip.mp4", "frame_count": 90, "runs": 2, "latest_run_id": run.id,
        "open_flags": 0, "pending_corrections": 1, "last_activity": None}
    assert (by_key["v"]["name"], by_key["v"]["open_flags"], by_key["v"]["pending_corrections"]) == ("clip.mp4", 1, 1)
    assert newest_event.flag_id == resolved.id and by_key["v"]["last_activity"] == newest_event.created_at
    assert (by_key["quiet"]["runs"], by_key["quiet"]["latest_run_id"]) == (0, None)
    assert by_key["quiet"]["last_activity"].tzinfo is not None
    assert waiting == {"alice": [b.id], "bob": [a.id], "zoe": [b.id, a.id]}     # newest first, not their own
    assert only_v == [a.id]


# ---------------------------------------------------------------------------------------------------
# Prediction runs, models, training jobs


def test_runs_are_found_again_by_their_key(sessions, setup):  # noqa: F811
    hashes = {"ddamfn": "a" * 64, "clip": None}
    with sessions.begin() as session:
        assert repo.find_run(session, "k1") is None and repo.latest_run(session, "v") is None
        first = repo.add_prediction_run(session, "v", models=["ddamfn", "clip"], device="cpu", untrained=False,
                                        table_path="runs/a/table.parquet", artifacts_dir="runs/a", run_key="k1",
                                        weight_hashes=hashes, created_by="dora")
        second = repo.add_prediction_run(session, "v", models=["ddamfn"], device="cpu", untrained=False,
                                         table_path="runs/b/table.parquet", artifacts_dir="runs/b", run_key="k1")
        other = repo.add_prediction_run(session, "v", models=["ddamfn"], device="cpu", untrained=True,
                                        table_path="runs/c/table.parquet", run_key="k2")
        for bad in ("/abs/runs", "../outside", "runs/../../x"):
            with pytest.raises(repo.ValidationError, match="must be a folder inside the data directory"):
                repo.add_prediction_run(session, "v", models=["x"], device="cpu", untrained=True,
                                        table_path="t", artifacts_dir=bad)
    with sessions() as session:
        assert repo.find_run(session, "k1").id == second.id
        assert repo.latest_run(session, "v").id == other.id
        stored = session.get(type(first), first.id)
    assert (stored.weight_hashes, stored.artifacts_dir, stored.created_by.name) == (hashes, "runs/a", "dora")
    assert other.weight_hashes == {} and other.created_by is None


def test_models_are_registered_once_per_checkpoint_content(sessions, setup, engine):  # noqa: F811
    h1, h2, enc = "1" * 64, "2" * 64, "e" * 64
    with sessions.begin() as session:
        first = repo.register_model(session, path="runs/ddamfn-va/best.pt", content_hash=h1, name="DDAMFN VA",
                                    architecture="ddamfn", tasks=["va"], training={"preset": "ddamfn-va", "steps": 2},
                                    correction_ids=[3, 1, 3], metrics={"p_va": np.float32(0.25)}, trained_steps=2,
                                    started_by="alice")
        again = repo.register_model(session, path="elsewhere.pt", content_hash="sha256:" + h1, name="copy",
                                    architecture="ddamfn", tasks=["va"])
        lstm = repo.register_model(session, path="runs/lstm/best.pt", content_hash=h2, name="LSTM",
                                   architecture="ddamfn-lstm", tasks=["va", "au"], encoder_hash=enc)
        for change, message in [(dict(content_hash="xyz"), "content_hash must be a SHA-256"),
                                (dict(tasks=["gaze"]), "a model's tasks are among va, expr, au"),
                                (dict(tasks=[]), "a model's tasks are among"),
                                (dict(trained_steps=-1), "trained_steps must not be negative"),
                                (dict(correction_ids=[0]), "correction id 0 is out of range")]:
            with pytest.raises(repo.ValidationError, match=re.escape(message)):
                repo.register_model(session, **(dict(path="p", content_hash="3" * 64, name="n", architecture="a",
                                                     tasks=["va"]) | change))
    assert again.id == first.id and again.path == "runs/ddamfn-va/best.pt" and count(engine, "models") == 2
    assert (first.correction_ids, first.metrics, first.started_by.name) == ([1, 3], {"p_va": 0.25}, "alice")
    with sessions() as session:
        assert [m.id for m in repo.list_models(session)] == [lstm.id, first.id]
        assert [m.id for m in repo.list_models(session, architecture="ddamfn")] == [first.id]
        assert repo.get_model(session, h2).encoder_hash == enc
        assert repo.get_model(session, first.id).trained_steps == 2
        with pytest.raises(repo.NotFoundError, match="No model 99"):
            repo.get_model(session, 99)


def test_training_jobs_move_forward_only(sessions, setup):  # noqa: F811
    with sessions.begin() as session:
        job = repo.create_job(session, preset="ddamfn-va", settings={"epochs": 2}, started_by="alice",
                              before_metrics={"p_va": 0.1})
        model = repo.register_model(session, path="m.pt", content_hash="4" * 64, name="m", architecture="ddamfn",
                                    tasks=["va"])
    assert (job.status, job.started_by.name, job.progress, job.before_metrics) == (
        "queued", "alice", {}, {"p_va": 0.1})
    with sessions.begin() as session:
        for write, message in [(lambda: repo.update_job_progress(session, job.id, step=1), "only a running job"),
                               (lambda: repo.finish_job(session, job.id), "only a running job can become done"),
                               (lambda: repo.start_job(session, job.id, pid=0), "pid 0 is out of range"),
                               (lambda: repo.get_job(session, 99), "No training job 99"),
                               (lambda: repo.list_jobs(session, status="paused"), "unknown job status")]:
            with pytest.raises(repo.ValidationError, match=message):
                write()
        running = repo.start_job(session, job.id, pid=4242)
        with pytest.raises(repo.ValidationError, match="only a queued job can become running"):
            repo.start_job(session, job.id, pid=4243)
        repo.update_job_progress(session, job.id, epoch=1, epochs=2, step=5, steps=10, loss=np.float64(0.5))
        progressed = repo.update_job_progress(session, job.id, step=6, eta_s=12.5)
        with pytest.raises(repo.ValidationError, match="unknown progress field"):
            repo.update_job_progress(session, job.id, speed=3)
        with pytest.raises(repo.ValidationError, match="progress loss must be a number"):
            repo.update_job_progress(session, job.id, loss="low")
    assert (running.status, running.pid, running.started_at is not None) == ("running", 4242, True)
    assert {k: v for k, v in progressed.progress.items() if k != "updated_at"} == {
        "epoch": 1, "epochs": 2, "step": 6, "steps": 10, "loss": 0.5, "eta_s": 12.5}
    with sessions() as session:
        read = repo.get_job(session, job.id)          # what another process (the page) sees
    assert read.progress["step"] == 6 and "updated_at" in read.progress
    with sessions.begin() as session:
        done = repo.finish_job(session, job.id, model_id=model.id, after_metrics={"p_va": 0.3})
        with pytest.raises(repo.ValidationError, match="training job 1 is done; only a running job can become done"):
            repo.finish_job(session, job.id)
        failing = repo.create_job(session, preset="clip-lstm")
        repo.start_job(session, failing.id, pid=7)
        with pytest.raises(repo.NotFoundError, match="No model 99"):
            repo.finish_job(session, failing.id, model_id=99)
        failed = repo.finish_job(session, failing.id, error="x" * 3000 + " CUDA out of memory")
    assert (done.status, done.model.id, done.after_metrics, done.finished_at is not None) == (
        "done", model.id, {"p_va": 0.3}, True)
    assert failed.status == "failed" and failed.error.endswith("CUDA out of memory") and len(failed.error) == 2000
    with sessions() as session:
        assert [j.id for j in repo.list_jobs(session)] == [failing.id, job.id]
        assert [j.id for j in repo.list_jobs(session, status="done")] == [job.id]


# ---------------------------------------------------------------------------------------------------
# Command line


def test_command_line_lists_and_resolves(tmp_path, setup):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "AFFECTLENS_DB_URL": url}
    run = lambda *args: subprocess.run([sys.executable, "-m", "db", *args], cwd=REPO_ROOT, env=env,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    assert run("upgrade").returncode == 0
    engine = make_engine(url)
    with make_session_factory(engine).begin() as session:
        for name in ("alice", "bob"):
            repo.get_or_create_reviewer(session, name)
        repo.register_video(session, "v", FRAMES, 30.0, name="clip.mp4")
        repo.import_annotations(session, "v", "expr", setup["expr"])
        repo.add_flag(session, "v", "expr", 0, 9, "wrong label", "alice")
        c = repo.add_correction(session, "v", "expr", 0, 4, 6, "alice")
        repo.decide_correction(session, c.id, video="v", reviewer="bob", accept=True)
    engine.dispose()

    videos = run("videos")
    assert videos.returncode == 0 and "clip.mp4" in videos.stdout and "v " in videos.stdout
    refused = run("resolve-flag", "1", "--video", "", "--reviewer", "bob", "--resolution", "fixed by correction",
                  "--correction", "1")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        "python -m db resolve-flag: No video is open: open the video before deciding on its flags or corrections"]
    done = run("resolve-flag", "1", "--video", "v", "--reviewer", "bob", "--resolution", "fixed by correction",
               "--correction", "1", "--note", "see correction")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "flag 1 resolved: fixed by correction 1, by bob"
    flags = run("flags", "v")
    assert flags.returncode == 0 and "fixed by correction" in flags.stdout
    assert run("flags", "v", "--open").stdout.strip() == "(none)"
    unknown = run("flags", "nope")
    assert unknown.returncode == 2 and unknown.stderr.strip() == "python -m db flags: unknown video 'nope'; register it first"
    report = run("report", "--video", "v")
    assert report.returncode == 0, report.stderr
    assert '"share_accepted": 1.0' in report.stdout
