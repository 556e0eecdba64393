"""Bounded work and checked inputs, against a real database (SQLite always, PostgreSQL when configured):
frames and ids that are not whole numbers or do not fit the columns, notes and prompt sets over their
limits (refused, never cut, nothing written), the limits' environment variables, and training jobs whose
process died."""
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from test_db_engine import REPO_ROOT, count, db_url, engine, sessions  # noqa: F401  (fixtures)

from core.labels import EXPRESSIONS
from db import limits, repo
from db.models import TrainingJob, utcnow

FRAMES = 100
TABLES = ("reviewers", "flags", "corrections", "audit_events", "prompt_sets")


@pytest.fixture
def video(sessions):
    with sessions.begin() as session:
        for name in ("alice", "bob"):
            repo.get_or_create_reviewer(session, name)
        repo.register_video(session, "v", FRAMES, 30.0)
    return "v"


def refused(sessions, engine, message: str, write) -> None:
    """write(session) raises ValidationError with `message` and stores nothing."""
    before = [count(engine, t) for t in TABLES]
    with sessions.begin() as session:
        with pytest.raises(repo.ValidationError, match=re.escape(message)):
            write(session)
    assert [count(engine, t) for t in TABLES] == before


def test_frames_must_be_whole_numbers_in_the_video_and_in_order(sessions, engine, video):
    flag = lambda start, end: lambda s: repo.add_flag(s, video, "va", start, end, "ambiguous", "alice")  # noqa: E731
    correction = lambda start, end: lambda s: repo.add_correction(s, video, "expr", start, end, 3,  # noqa: E731
                                                                  "alice")
    for write in (flag, correction):
        refused(sessions, engine, "start_frame must be an integer, not 7.5", write(7.5, 9))
        refused(sessions, engine, "end_frame must be an integer, not 9.25", write(7, 9.25))
        refused(sessions, engine, "start_frame must be an integer, not inf", write(float("inf"), 9))
        refused(sessions, engine, "start_frame must be an integer, not '7'", write("7", 9))
        refused(sessions, engine, "frames 9-7: the end is before the start", write(9, 7))
        refused(sessions, engine, "frames -1-3 are outside video 'v' (frames 0-99)", write(-1, 3))
        refused(sessions, engine, "frames 7-100 are outside video 'v'", write(7, 100))
        refused(sessions, engine, f"end_frame {2**63} is out of range", write(7, 2**63))
    with sessions.begin() as session:
        stored = repo.add_flag(session, video, "va", 7.0, 9.0, "ambiguous", "alice")     # JSON's 7.0 is 7
    assert (stored.start_frame, stored.end_frame) == (7, 9) and isinstance(stored.start_frame, int)
    with sessions() as session:
        assert len(repo.list_flags(session, video, frames=(9.0, 20))) == 1
        for frames, message in [((2**63, 2**63 + 1), "start_frame 9223372036854775808 is out of range"),
                                ((5, 1), "frames 5-1: the end is before the start"),
                                ((1, 2, 3), "frames must be a (start, end) pair")]:
            with pytest.raises(repo.ValidationError, match=re.escape(message)):
                repo.list_corrections(session, video, frames=frames)
        for ids, message in [(dict(correction=2**63), "correction id 9223372036854775808 is out of range"),
                             (dict(flag=-3), "flag id -3 is out of range"),
                             (dict(flag=1.5), "flag id must be an integer, not 1.5")]:
            with pytest.raises(repo.ValidationError, match=re.escape(message)):
                repo.history(session, **ids)
        with pytest.raises(repo.ValidationError, match="video 'w': frame_count 9223372036854775808 is out of range"):
            repo.register_video(session, "w", 2**63, 30.0)


def test_long_notes_and_comments_are_refused_whole_not_cut(sessions, engine, video):
    five_mb = "x" * 5_000_000
    refused(sessions, engine, "the note is 5,000,000 characters long; at most 2,000 are allowed",
            lambda s: repo.add_correction(s, video, "expr", 0, 9, 3, "alice", note=five_mb))
    refused(sessions, engine, "the note is 2,001 characters long",
            lambda s: repo.add_flag(s, video, "va", 0, 9, "other", "alice", note="y" * 2001))
    with sessions.begin() as session:
        correction = repo.add_correction(session, video, "expr", 0, 9, 3, "alice", note="z" * 2000)
    refused(sessions, engine, "the comment is 5,000,000 characters long",
            lambda s: repo.decide_correction(s, correction.id, video=video, reviewer="bob", accept=True,
                                             comment=five_mb))
    refused(sessions, engine, "the reason is 5,000,000 characters long",
            lambda s: repo.revise_decision(s, correction.id, video=video, reviewer="bob", accept=True,
                                           reason=five_mb))
    with sessions() as session:
        assert repo.list_corrections(session)[0].note == "z" * 2000       # the limit itself is allowed


def prompts(templates: int, phrasings: int = 1) -> dict:
    return dict(templates=[f"a photo of a {{}} face, take {i}" for i in range(templates)],
                classes={c: [f"{c.lower()} {j}" for j in range(phrasings)] for c in EXPRESSIONS})


def test_prompt_sets_are_bounded_per_class_and_in_all(sessions, engine, video):
    save = lambda **content: lambda s: repo.save_prompt_set(s, "big", author="alice", **content)  # noqa: E731
    refused(sessions, engine, f"prompt set big: templates: more than {limits.MAX_PROMPTS_PER_CLASS}",
            save(**prompts(3000)))
    refused(sessions, engine, "prompt set big: 40 templates x 3 phrasings of Neutral make 120 prompts; at most 80",
            save(**prompts(40, 3)))
    refused(sessions, engine, "prompt set big: 400 prompts in all; at most 320", save(**prompts(25, 2)))
    long_template = prompts(1)
    long_template["templates"] = ["a {} face " + "very " * 100]
    refused(sessions, engine, "prompt set big: a template is 509 characters long; at most 300", save(**long_template))
    with sessions.begin() as session:
        stored = repo.save_prompt_set(session, "ok", author="alice", **prompts(40))      # 8 x 40 = 320: allowed
    assert len(stored.templates) == 40
    name, templates, classes = repo.check_prompt_set("ok", **prompts(40))      # what the page checks first
    assert (name, templates, classes) == ("ok", stored.templates, stored.classes)


def test_limits_come_from_the_environment(tmp_path):
    code = ("from db import limits, repo\n"
            "print(limits.MAX_TEXT_LENGTH, limits.MAX_PROMPTS, limits.WRITE_TIMEOUT_S)\n"
            "from db.repo.common import _note\n"
            "try:\n    _note('x' * 11)\nexcept repo.ValidationError as err:\n    print(err)\n")
    env = {**os.environ, "AFFECTLENS_MAX_TEXT_LENGTH": "10", "AFFECTLENS_MAX_PROMPTS": "64",
           "AFFECTLENS_DB_WRITE_TIMEOUT_S": "2.5"}
    run = lambda env: subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,  # noqa: E731
                                     capture_output=True, text=True, timeout=60)
    result = run(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["10 64 2.5", "the note is 11 characters long; at most 10 are allowed"]
    result = run({**env, "AFFECTLENS_MAX_TEXT_LENGTH": "lots"})
    assert result.returncode != 0
    assert "AFFECTLENS_MAX_TEXT_LENGTH='lots': expected a positive integer" in result.stderr


# ---------------------------------------------------------------------------------------------------
# Training jobs whose process died


def start_process() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_job_whose_process_died_is_failed_and_a_live_one_is_left_running(sessions, engine):
    alive, killed, zombie = start_process(), start_process(), start_process()
    try:
        with sessions.begin() as session:
            jobs = [repo.create_job(session, preset="ddamfn-va") for _ in range(5)]
            for job, proc in zip(jobs, (alive, killed, zombie)):
                repo.start_job(session, job.id, proc.pid)
        with sessions() as session:
            recorded = repo.get_job(session, jobs[0].id)
        assert recorded.host == os.uname().nodename and recorded.process_started > 0
        killed.kill()
        killed.wait()                     # gone
        zombie.kill()                     # dead, never waited for: its pid still exists
        time.sleep(0.5)
        with engine.begin() as connection:
            # Job 4 "runs" on another machine; job 5 was queued an hour ago and still waits for its turn.
            connection.execute(sa.update(TrainingJob).where(TrainingJob.id == jobs[3].id).values(
                status="running", pid=alive.pid, host="another-machine"))
            connection.execute(sa.update(TrainingJob).where(TrainingJob.id == jobs[4].id).values(
                created_at=utcnow() - timedelta(hours=1)))
        with sessions.begin() as session:
            reaped = repo.reap_dead_jobs(session)
            assert repo.reap_dead_jobs(session) == []               # once
        assert sorted(j.id for j in reaped) == [jobs[1].id, jobs[2].id]
        with sessions() as session:
            status = {j.id: (j.status, j.error) for j in repo.list_jobs(session)}
        assert status[jobs[0].id] == ("running", None)
        assert status[jobs[3].id] == ("running", None)
        assert status[jobs[1].id] == ("failed", "its process ended without finishing the job; see the job's log")
        assert status[jobs[2].id][0] == "failed"
        assert status[jobs[4].id] == ("queued", None)
    finally:
        for proc in (alive, killed, zombie):
            proc.kill()
            proc.wait()


def test_a_pid_taken_over_by_another_process_is_not_the_job(sessions, engine):
    """The job's pid now names a process that started at another time: the job's process is gone."""
    proc = start_process()
    try:
        with sessions.begin() as session:
            job = repo.create_job(session, preset="ddamfn-va")
            started = repo.start_job(session, job.id, proc.pid).process_started
        with engine.begin() as connection:
            connection.execute(sa.update(TrainingJob).where(TrainingJob.id == job.id).values(
                process_started=started - 1))
        with sessions.begin() as session:
            assert [j.id for j in repo.reap_dead_jobs(session)] == [job.id]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
