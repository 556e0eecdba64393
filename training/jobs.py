"""Retraining as a job: `submit` stores a queued job, and jobs start in order of submission, at most
db.limits.MAX_RUNNING_JOBS at once (each is a process of several GB): `start_queued`, called on submit,
when a job ends and when the page shows a job, starts `python -m training job ID` for each free place (after the
commit that picked it) in its own process (the database URL, password included, goes in its environment),
so training survives the web request and the browser closing and never touches the web server's random
seeds; that process reports progress to the job row and registers the checkpoint it wrote as a model.
Every write goes through db.engine.write, the job's own with a long bound (db.limits.JOB_WRITE_TIMEOUT_S):
a database busy for a minute delays a job, it does not fail it.

A job's settings are TrainConfig fields over its preset (the training labels come from the job's database
unless "db" is given), plus optionally "compare_weights": the weights the app runs now, evaluated first so
the page can show before/after metrics. A job whose preset is AUDIT runs `python -m training audit` instead
(settings: AuditConfig fields), under the same queue and limits; its "after" figures are the audit's count of
suggestions and out-of-fold metrics, and its suggestions go to the database. Each job writes into its own
folder, <out>/job-<id>, so a registered checkpoint (or an audit's out-of-fold files) is never overwritten.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

from core.jsonsafe import jsonable
from db.engine import write
from db.errors import DatabaseBusy
from db.limits import JOB_WRITE_TIMEOUT_S, MAX_RUNNING_JOBS
from training import config

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
COMPARE = "compare_weights"
PROGRESS_EVERY_S = 2.0
PROGRESS_WAIT_S = 5.0              # a progress report gives up after this long (the next one follows)
START_WAIT_S = 60.0               # a job's process waits this long for the transaction that started it
LOG_DIR_VARIABLE = "AFFECTLENS_JOB_LOG_DIR"    # where a job's process starts the next job's log
QUEUE_LOCK_KEY = 22_000_001        # PostgreSQL advisory lock that makes start_queued one at a time
AUDIT = "audit"                    # in place of a training preset: the job runs the annotation audit


def job_config(preset: str, settings: dict, db_url: str) -> config.TrainConfig | config.AuditConfig:
    """The job's command settings (ValueError, in words, for unknown ones)."""
    values = {"db": db_url, **{k: v for k, v in settings.items() if k != COMPARE}}
    if preset == AUDIT:
        return config.build(config.AuditConfig, None, **values)
    return config.build(config.TrainConfig, preset, **values)


def log_path(log_dir, job_id: int) -> Path:
    """Where a job's process writes its stdout and stderr."""
    return Path(log_dir) / f"job-{job_id}.log"


def run_folder(out, job_id: int) -> Path:
    """The job's own run folder under its settings' out folder: a later job never overwrites its checkpoint."""
    return Path(out) / f"job-{job_id}"


def job_command(job_id: int) -> list[str]:
    """The job process's command line: no database URL on it (every user of the machine can read it); the
    process finds the database in AFFECTLENS_DB_URL."""
    return [sys.executable, "-m", "training", "job", str(job_id)]


def submit(db_url: str, preset: str, settings: dict, started_by: str | None, log_dir) -> int:
    """Check the settings (ValueError before anything is stored), queue a job, start it if its turn has
    come (start_queued) and return the job id at once."""
    from db import repo
    from db.engine import make_engine, make_session_factory

    job_config(preset, settings, db_url)
    engine = make_engine(db_url)
    try:
        sessions = make_session_factory(engine)
        job_id = write(sessions, lambda s: repo.create_job(s, preset=preset, settings=settings,
                                                           started_by=started_by).id)
        start_queued(lambda work: write(sessions, work), db_url, log_dir)
    finally:
        engine.dispose()
    return job_id


def start_queued(write_turn, db_url: str, log_dir) -> list[int]:
    """Fail the running jobs whose process died (db.repo.reap_dead_jobs), then start the oldest queued jobs
    while fewer than MAX_RUNNING_JOBS run; the ids started. write_turn(work) runs work(session) as one write
    transaction (db.engine.write, or the page's Context.write). Which jobs are due is decided in one
    transaction, so two callers at once pick the same ones (SQLite's write lock; on PostgreSQL a
    transaction-level advisory lock); each process starts only after that commit, never inside a write that
    may be retried, and its pid is recorded in a second write that only a queued job passes: a caller that
    lost the race leaves its process to find the job not its own and end at once."""
    from db import repo

    started = []
    for job_id in write_turn(_due_jobs):
        pid = _start_process(job_id, db_url, log_dir)
        try:
            write_turn(lambda s: repo.start_job(s, job_id, pid))
            started.append(job_id)
        except (repo.ValidationError, repo.ReviewRuleError):
            log.info("job %d was started by another caller; process %d ends by itself", job_id, pid)
    return started


def _due_jobs(session) -> list[int]:
    """Reap dead jobs; the queued jobs whose turn has come (oldest first)."""
    from db import repo

    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": QUEUE_LOCK_KEY})
    repo.reap_dead_jobs(session)
    free = MAX_RUNNING_JOBS - len(repo.list_jobs(session, "running"))
    return [job.id for job in sorted(repo.list_jobs(session, "queued"), key=lambda job: job.id)[:max(0, free)]]


def _start_process(job_id: int, db_url: str, log_dir) -> int:
    env = {**os.environ, "AFFECTLENS_DB_URL": db_url, LOG_DIR_VARIABLE: str(log_dir),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    with open(log_path(log_dir, job_id), "ab") as out:
        return subprocess.Popen(job_command(job_id), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True).pid


def waiting_line(session, job) -> str | None:
    """What a queued job's page says while it waits for its turn (None when it is not queued)."""
    from db import repo

    if job.status != "queued":
        return None
    ahead = sum(1 for other in repo.list_jobs(session, "queued") if other.id < job.id)
    running = len(repo.list_jobs(session, "running"))
    return (f"Waiting for its turn: {running} job{'s' * (running != 1)} running, {ahead} queued before it "
            f"(at most {MAX_RUNNING_JOBS} run{'s' * (MAX_RUNNING_JOBS == 1)} at once).")


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{err.__class__.__name__}: {text[0]}" if text else err.__class__.__name__


def register_checkpoint(session, best: Path, name: str, preset: str | None, epochs: int,
                        started_by: str | None, job: int | None = None):
    """Record a checkpoint written by training in the models table (db.repo.register_model): what it is,
    how far it was trained (steps, frames seen), the corrections in its labels, its validation scores, and
    for heads and LSTMs the content key of the encoder they were trained on (core.predict.encoder_key, the
    key the prediction path checks and prediction runs record)."""
    from core.weights import load_checkpoint
    from db import repo

    meta = load_checkpoint(best).metadata
    embedding = meta.get("embedding") or {}
    state, metrics = meta["training"], jsonable(meta["metrics"]["val"])
    summary = {"job": job, "preset": preset, "epochs": epochs, "epoch": state["epoch"] + 1,
               "steps": state["steps"], "frames_seen": state["frames_seen"], "data": state["data"],
               "kept": state.get("kept"),
               "encoder": embedding.get("encoder")}
    return repo.register_model(
        session, path=str(Path(best).resolve()), content_hash=repo.file_sha256(best), name=name,
        architecture=meta["architecture"], tasks=meta["tasks"], encoder_hash=embedding.get("key"),
        training=summary,
        correction_ids=state["corrections"]["ids"], metrics=metrics, trained_steps=state["steps"],
        started_by=started_by)


def run(job_id: int, db_url: str) -> int:
    """The job's process (started by start_queued, which marked the job running with this pid): train (or
    audit), finish the job; any error fails the job with one line (the traceback goes to the log). Then the
    next queued job starts."""
    from db import repo
    from db.engine import make_engine, make_session_factory

    engine = make_engine(db_url)
    sessions = make_session_factory(engine)
    deadline = time.monotonic() + START_WAIT_S
    while True:                   # the transaction that started this process may not have committed yet
        with make_session_factory(engine, read_only=True).begin() as s:
            job = repo.get_job(s, job_id)
        if job.status != "queued" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if job.status != "running" or job.pid != os.getpid():
        print(f"job {job_id} is {job.status} and not this process's (pid {os.getpid()}) to run")
        return 0
    preset, settings = job.preset, dict(job.settings)
    started_by = job.started_by.name if job.started_by else None
    try:
        cfg = job_config(preset, settings, db_url)
        cfg = dataclasses.replace(cfg, out=str(run_folder(cfg.out, job_id)))
        result = (_audit_job(cfg, job_id, sessions) if preset == AUDIT
                  else _train_job(cfg, job_id, preset, settings, started_by, sessions))
    except Exception as err:
        log.exception("%s job %d failed", "audit" if preset == AUDIT else "training", job_id)
        error = _one_line(err)
        _job_write(sessions, lambda s: repo.finish_job(s, job_id, error=error))
        return 1
    finally:
        start_queued(lambda work: _job_write(sessions, work), db_url, os.environ.get(LOG_DIR_VARIABLE) or ".")
    print(json.dumps({"job": job_id, **result}, default=str))
    return 0


def _train_job(cfg, job_id: int, preset: str, settings: dict, started_by: str | None, sessions) -> dict:
    """Evaluate the compared weights, train with progress reports, register the best checkpoint."""
    from db import repo
    from training.evaluate import evaluate
    from training.loop import train

    if settings.get(COMPARE):
        shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(config.LabelOptions)}
        before = jsonable(evaluate(config.build(config.EvalConfig, weights=settings[COMPARE], **shared))["metrics"])
        _job_write(sessions, lambda s: setattr(repo.get_job(s, job_id), "before_metrics", before))

    last = -math.inf

    def report(**progress):
        nonlocal last
        if time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            try:            # the next report carries newer figures: training does not wait for this one
                write(sessions, lambda s: repo.update_job_progress(s, job_id, **progress), timeout_s=PROGRESS_WAIT_S)
            except DatabaseBusy:
                log.warning("job %d: progress not stored, the database is busy", job_id)

    best = train(cfg, on_progress=report)
    if not best.is_file():
        raise ValueError("no checkpoint was written")

    def register(s):
        model = register_checkpoint(s, best, f"{preset} (job {job_id})", preset, cfg.epochs, started_by, job=job_id)
        repo.finish_job(s, job_id, model_id=model.id, after_metrics=model.metrics)
        return model.id

    return {"model": _job_write(sessions, register), "best": str(best)}


def _audit_job(cfg, job_id: int, sessions) -> dict:
    """Run the annotation audit (its run and suggestions go to the database); the job's "after" figures are
    how many suggestions it made, how it folded, and its out-of-fold metrics."""
    from db import repo
    from training.audit import audit

    summary = audit(cfg)
    after = {"suggestions": summary["segments"], "above_report": summary["above_report"],
             "folding": summary["folding"], **summary["metrics"]}
    _job_write(sessions, lambda s: repo.finish_job(s, job_id, after_metrics=after))
    return {"audit_run": summary.get("audit_run"), "out": summary["out"]}


def _job_write(sessions, work):
    return write(sessions, work, timeout_s=JOB_WRITE_TIMEOUT_S)
