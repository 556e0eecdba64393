"""Retraining jobs (training/jobs.py) as the page starts them: a real process per job on the small Aff-Wild2
copy (tests/datagen.py) and a SQLite review database, whose job row says queued, running, then done with the
registered model, or failed with one line; an audit job runs the annotation audit in the same queue."""
import os
import time
from pathlib import Path

import pytest

from core.weights import load_checkpoint
from db import repo
from db.engine import init_db, make_session_factory
from training import jobs
from training.config import UNTRAINED

VIDEO = "10-24-640x360"      # in the training split, annotated for VA
QUICK = dict(tasks="va", device="cpu")        # with the "tiny" preset: 1 epoch of 2 steps of 8 frames, on CPU


@pytest.fixture
def db(tmp_path, monkeypatch):
    """A review database with one accepted VA correction on VIDEO; (URL, session factory, correction id)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")      # inherited by the job's process: 2 shared cores
    url = f"sqlite:///{tmp_path / 'review.db'}"
    sessions = make_session_factory(init_db(url))
    with sessions.begin() as s:
        repo.register_video(s, VIDEO, 40, 24.0)
        for name in ("ann", "bob"):
            repo.get_or_create_reviewer(s, name)
        correction = repo.add_correction(s, VIDEO, "va", 0, 3, (0.5, -0.5), "ann")
        repo.decide_correction(s, correction.id, video=VIDEO, reviewer="bob", accept=True)
    return url, sessions, correction.id


def wait(sessions, job_id: int, timeout_s: float = 180) -> tuple[object, list[str]]:
    """Poll a job until it ends; (the job, the statuses seen on the way)."""
    seen, deadline = [], time.monotonic() + timeout_s
    readers = make_session_factory(sessions.kw["bind"], read_only=True)      # never waits for a writer
    while time.monotonic() < deadline:
        with readers() as s:
            job = repo.get_job(s, job_id)
        seen.append(job.status)
        if job.status in ("done", "failed"):
            return job, seen
        time.sleep(0.2)
    pytest.fail(f"job {job_id} still {seen[-1]} after {timeout_s} s")


def test_a_job_trains_in_its_own_process_and_registers_its_checkpoint(affwild2_root, db, tmp_path):
    url, sessions, correction_id = db
    settings = dict(QUICK, root=str(affwild2_root), out=str(tmp_path / "runs"), compare_weights=UNTRAINED)
    job_id = jobs.submit(url, "tiny", settings, "alice", tmp_path / "logs")
    # The database URL (a password, on a server) is not on the job's command line, which every user of the
    # machine can read: the process finds it in its environment (the job finishing below shows it did).
    assert "review.db" not in " ".join(jobs.job_command(job_id)) and "--db" not in jobs.job_command(job_id)
    job, seen = wait(sessions, job_id)

    assert seen[0] in ("queued", "running") and set(seen) <= {"queued", "running", "done"}
    assert job.status == "done", jobs.log_path(tmp_path / "logs", job_id).read_text()
    assert job.settings == settings and job.started_by.name == "alice" and job.pid > 0 and job.error is None
    assert (job.progress["epoch"], job.progress["epochs"], job.progress["steps"]) == (1, 1, 2)
    assert job.progress["loss"] > 0 and job.progress["eta_s"] >= 0
    with sessions() as s:
        model = repo.get_model(s, job.model_id)
    best = tmp_path / "runs" / f"job-{job_id}" / "best.pt"
    assert model.path == str(best) and model.content_hash == repo.file_sha256(best)
    assert (model.architecture, model.tasks, model.trained_steps) == ("ddamfn", ["va"], 2)
    assert model.correction_ids == [correction_id] and model.started_by.name == "alice"
    assert model.training["steps"] == 2 and model.training["frames_seen"] == 16 and model.training["preset"] == "tiny"
    meta = load_checkpoint(best).metadata
    assert (meta["training"]["steps"], meta["training"]["frames_seen"]) == (2, 16)   # "trained 2 steps, 16 frames"
    assert job.after_metrics == model.metrics and "p_va" in model.metrics
    assert "p_va" in job.before_metrics                  # the compared (untrained) weights, evaluated first
    assert '"job": %d' % job_id in jobs.log_path(tmp_path / "logs", job_id).read_text()
    shown = models_page(url, tmp_path).job_status(job_id)      # the page's panel: the kept epoch and why
    kept = model.training["kept"]
    assert kept["epoch"] == 1 and kept["why"].startswith("first validated epoch (score ")
    assert f"Kept epoch 1 of 1: {kept['why']}." in shown.text and shown.ended and shown.model_id == model.id
    assert "s left" not in shown.text and "No *before*" not in shown.text


def test_a_job_that_fails_in_its_process_says_why_in_one_line(db, tmp_path):
    url, sessions, _ = db
    (tmp_path / "empty").mkdir()
    job_id = jobs.submit(url, "tiny", dict(QUICK, root=str(tmp_path / "empty"), out=str(tmp_path / "runs")), None,
                         tmp_path / "logs")
    job, _ = wait(sessions, job_id)
    assert job.status == "failed" and job.model_id is None and job.after_metrics is None
    assert "no va videos in the train split" in job.error and "\n" not in job.error, job.error
    assert "Traceback" in jobs.log_path(tmp_path / "logs", job_id).read_text()     # the details are in the log


@pytest.mark.parametrize("preset, settings, message", [("no-such", {}, "unknown preset 'no-such'"),
                                                       ("tiny", {"epochz": 1}, "has no setting(s) epochz")])
def test_bad_settings_are_refused_before_a_job_is_stored(db, tmp_path, preset, settings, message):
    url, sessions, _ = db
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        jobs.submit(url, preset, settings, "alice", tmp_path / "logs")
    with sessions() as s:
        assert repo.list_jobs(s) == []


def models_page(url: str, tmp_path):
    """The Models tab's part (webapp.models) on the test's database."""
    from webapp.config import AppConfig
    from webapp.context import Context
    from webapp.models import Models

    return Models(Context(AppConfig(db_url=url, data_dir=tmp_path / "data", runs_dir=tmp_path / "runs")))


def test_a_job_whose_process_is_killed_shows_as_failed_on_the_page(affwild2_root, db, tmp_path):
    """kill -9 of the job's process: the Models tab's status (webapp.models) says failed, not running."""
    import os
    import signal

    url, sessions, _ = db
    settings = dict(QUICK, root=str(affwild2_root), out=str(tmp_path / "runs"), epochs=50)
    job_id = jobs.submit(url, "tiny", settings, "alice", tmp_path / "logs")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with sessions() as s:
            job = repo.get_job(s, job_id)
        if job.status == "running":
            break
        time.sleep(0.2)
    assert job.status == "running", job.status
    os.kill(job.pid, signal.SIGKILL)
    models = models_page(url, tmp_path)
    deadline = time.monotonic() + 30
    while True:
        shown = models.job_status(job_id)
        if "**failed**" in shown.text or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "**failed**" in shown.text and shown.model_id is None and shown.ended, shown.text


def test_jobs_wait_their_turn_and_say_so(affwild2_root, db, tmp_path):
    """At most MAX_RUNNING_JOBS (1) run at once: the second job waits, queued, and its page says why;
    it starts when the first ends."""
    from db.limits import MAX_RUNNING_JOBS
    from training.jobs import waiting_line

    assert MAX_RUNNING_JOBS == 1
    url, sessions, _ = db
    settings = dict(QUICK, root=str(affwild2_root), out=str(tmp_path / "runs"))
    first = jobs.submit(url, "tiny", settings, "alice", tmp_path / "logs")
    second = jobs.submit(url, "tiny", settings, "bob", tmp_path / "logs")
    with sessions() as s:
        waiting = repo.get_job(s, second)
        assert waiting.status == "queued" and waiting.pid is None
        assert waiting_line(s, waiting) == ("Waiting for its turn: 1 job running, 0 queued before it "
                                            "(at most 1 runs at once).")
        assert waiting_line(s, repo.get_job(s, first)) is None
    text = models_page(url, tmp_path).job_status(second).text
    assert text.startswith(f"**Job {second}** (tiny, started by bob): **queued**.")
    assert "Waiting for its turn: 1 job running, 0 queued before it (at most 1 runs at once)." in text
    done_first, _ = wait(sessions, first)
    done_second, seen = wait(sessions, second)
    assert (done_first.status, done_second.status) == ("done", "done")
    assert done_second.started_at >= done_first.finished_at


def test_a_job_outlasts_a_database_busy_for_longer_than_a_page_waits(affwild2_root, db, tmp_path):
    """Another writer holds SQLite's write lock for 40 s (a page's write gives up after 30): the job's
    writes wait for it, and the job ends done."""
    import threading

    import sqlalchemy as sa

    url, sessions, _ = db
    settings = dict(QUICK, root=str(affwild2_root), out=str(tmp_path / "runs"))
    job_id = jobs.submit(url, "tiny", settings, "alice", tmp_path / "logs")
    held, released = threading.Event(), []

    def hold():
        with sessions() as s:
            s.execute(sa.text("SELECT 1"))                   # BEGIN IMMEDIATE: the write lock
            held.set()
            time.sleep(40)
            released.append(time.time())
            s.rollback()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    job, _ = wait(sessions, job_id, timeout_s=240)
    thread.join()
    assert job.status == "done", (job.error, jobs.log_path(tmp_path / "logs", job_id).read_text()[-2000:])
    assert job.finished_at.timestamp() >= released[0]


def test_retrain_with_nothing_to_train_on_says_so_and_stores_no_job(db, tmp_path):
    """No Aff-Wild2 folder and no upload with annotations: Retrain refuses in words, before any job exists."""
    from webapp.inputs import InputError

    url, sessions, _ = db
    with pytest.raises(InputError, match=r"^Nothing to retrain on: upload videos with their annotation files and "
                                         r"analyse them, or set AFFECTLENS_AFFWILD2_ROOT\.$"):
        models_page(url, tmp_path).retrain("tiny", 1, 1, 0, "alice")
    with sessions() as s:
        assert repo.list_jobs(s) == []


def test_a_failed_job_never_says_how_long_is_left(db, tmp_path):
    """A job that reported progress (about 66 s left) and then failed: its page says failed and why, with no
    time left and no progress line (issue 34.6)."""
    url, sessions, _ = db
    with sessions.begin() as s:
        job_id = repo.create_job(s, preset="tiny", settings=dict(QUICK), started_by="alice").id
        repo.start_job(s, job_id, os.getpid())
        repo.update_job_progress(s, job_id, epoch=1, epochs=2, step=15, steps=18, loss=0.5, eta_s=66)
        repo.finish_job(s, job_id, error="ValueError: the disk is full")
    shown = models_page(url, tmp_path).job_status(job_id)
    assert shown.text.split("\n\n")[:2] == [f"**Job {job_id}** (tiny, started by alice): **failed**.",
                                             "It failed: ValueError: the disk is full"]
    assert "left" not in shown.text and "Epoch" not in shown.text and shown.ended, shown.text


def job_processes(job_id: int) -> list[int]:
    """The live processes this test process started for job_id (its children with the job's command line)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        if parent == os.getpid() and command[-4:-1] == [b"training", b"job", str(job_id).encode()]:
            found.append(int(proc.name))
    return found


def test_a_retried_transaction_starts_one_process(db, tmp_path):
    """The write that picks the due jobs meets another writer and is rolled back and run again (db.engine.write):
    one process starts, after the commit, and it is the job's (issue 32.5)."""
    import sqlalchemy as sa

    from db.engine import write

    url, sessions, _ = db
    (tmp_path / "empty").mkdir()
    with sessions.begin() as s:            # queued, not started: start_queued below starts it
        job_id = repo.create_job(s, preset="tiny", settings=dict(QUICK, root=str(tmp_path / "empty")),
                                 started_by="alice").id
    other = sa.create_engine(url, connect_args={"timeout": 0})
    attempts = []

    def busy_at_first(work):
        def attempt(s):
            result = work(s)
            attempts.append(work)
            if len(attempts) == 1:       # another writer is in the way: SQLITE_BUSY, the transaction runs again
                with other.connect() as c:
                    c.exec_driver_sql("BEGIN IMMEDIATE")
            return result
        return write(sessions, attempt)

    earlier = set(job_processes(job_id))     # an earlier test's job of the same id may still be ending
    assert jobs.start_queued(busy_at_first, url, tmp_path / "logs") == [job_id]
    started = [pid for pid in job_processes(job_id) if pid not in earlier]
    assert len(attempts) == 3 and attempts[0] is attempts[1]       # the first write ran twice, then start_job
    with sessions() as s:
        assert started == [repo.get_job(s, job_id).pid], started
    job, _ = wait(sessions, job_id)
    assert job.status == "failed" and "no va videos in the train split" in job.error
    assert "not this process's" not in jobs.log_path(tmp_path / "logs", job_id).read_text()


def test_an_audit_job_runs_in_the_queue_and_fills_the_dataset_queue(affwild2_root, db, tmp_path):
    """Audit this dataset: `training audit` as a job (the same queue as retraining); its panel says how many
    suggestions it made and how it folded, and the dataset queue (webapp.audit) lists them."""
    from webapp.audit import Audit

    url, sessions, _ = db
    models = models_page(url, tmp_path)
    settings = dict(root=str(affwild2_root), out=str(tmp_path / "runs"), cache=str(tmp_path / "cache"),
                    encoder=UNTRAINED, folds=3, epochs=3, device="cpu", workers=0, progress=False)
    job_id = jobs.submit(url, jobs.AUDIT, settings, "alice", tmp_path / "logs")
    job, _ = wait(sessions, job_id, timeout_s=400)
    assert job.status == "done", jobs.log_path(tmp_path / "logs", job_id).read_text()[-3000:]
    assert job.model_id is None and job.after_metrics["suggestions"] >= 1
    assert job.after_metrics["folding"].startswith("3 folds")
    with sessions() as s:
        run = repo.latest_audit_run(s)
        assert run.settings["out"] == str(tmp_path / "runs" / f"job-{job_id}")
    shown = models.job_status(job_id)
    assert shown.audit and shown.ended and shown.model_id is None
    assert (f"The audit made {job.after_metrics['suggestions']} suggestions ({job.after_metrics['above_report']} "
            f"above the report threshold); {job.after_metrics['folding']}. They are in the Review tab's dataset "
            "queue") in shown.text
    table, _, _ = Audit(models.ctx).queue("all", "all")
    assert len(table) == min(job.after_metrics["suggestions"], 200)
