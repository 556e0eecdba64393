"""Retraining as a job: `submit` stores a queued job and starts `python -m training job ID` in its own
process (the database URL, password included, goes in its environment, not on its command line), so
training survives the web request and the browser closing and never touches the web server's random
seeds; that process reports progress to the job row and registers the checkpoint it wrote
as a model.

A job's settings are TrainConfig fields over its preset (the training labels come from the job's database
unless "db" is given), plus optionally "compare_weights": the weights the app runs now, evaluated first so
the page can show before/after metrics. Each job writes into its own folder, <out>/job-<id>, so a
registered checkpoint is never overwritten by a later job.
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

from core.jsonsafe import jsonable
from training import config

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
COMPARE = "compare_weights"
PROGRESS_EVERY_S = 2.0


def _train_config(preset: str, settings: dict, db_url: str) -> config.TrainConfig:
    values = {k: v for k, v in settings.items() if k != COMPARE}
    return config.build(config.TrainConfig, preset, **{"db": db_url, **values})


def log_path(log_dir, job_id: int) -> Path:
    """Where a job's process writes its stdout and stderr."""
    return Path(log_dir) / f"job-{job_id}.log"


def job_command(job_id: int) -> list[str]:
    """The job process's command line: no database URL on it (every user of the machine can read it); the
    process finds the database in AFFECTLENS_DB_URL."""
    return [sys.executable, "-m", "training", "job", str(job_id)]


def submit(db_url: str, preset: str, settings: dict, started_by: str | None, log_dir) -> int:
    """Check the settings (ValueError before anything is stored), queue a job, start its process in a
    session of its own and return the job id at once."""
    from db import repo
    from db.engine import make_engine, make_session_factory

    _train_config(preset, settings, db_url)
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine).begin() as s:
            job_id = repo.create_job(s, preset=preset, settings=settings, started_by=started_by).id
    finally:
        engine.dispose()
    env = {**os.environ, "AFFECTLENS_DB_URL": db_url,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with open(log_path(log_dir, job_id), "ab") as out:
        subprocess.Popen(job_command(job_id), stdin=subprocess.DEVNULL,
                         stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return job_id


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
               "encoder": embedding.get("encoder")}
    return repo.register_model(
        session, path=str(Path(best).resolve()), content_hash=repo.file_sha256(best), name=name,
        architecture=meta["architecture"], tasks=meta["tasks"], encoder_hash=embedding.get("key"),
        training=summary,
        correction_ids=state["corrections"]["ids"], metrics=metrics, trained_steps=state["steps"],
        started_by=started_by)


def run(job_id: int, db_url: str) -> int:
    """The job's process: mark it running, evaluate the compared weights, train, register the best
    checkpoint and finish the job; any error fails the job with one line (the traceback goes to the log)."""
    from db import repo
    from db.engine import make_engine, make_session_factory
    from training.evaluate import evaluate
    from training.loop import train

    sessions = make_session_factory(make_engine(db_url))
    with sessions.begin() as s:
        job = repo.start_job(s, job_id, os.getpid())
        preset, settings = job.preset, dict(job.settings)
        started_by = job.started_by.name if job.started_by else None
    try:
        cfg = _train_config(preset, settings, db_url)
        cfg = dataclasses.replace(cfg, out=str(Path(cfg.out) / f"job-{job_id}"))
        if settings.get(COMPARE):
            shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(config.LabelOptions)}
            before = evaluate(config.build(config.EvalConfig, weights=settings[COMPARE], **shared))["metrics"]
            with sessions.begin() as s:
                repo.get_job(s, job_id).before_metrics = jsonable(before)

        last = -math.inf

        def report(**progress):
            nonlocal last
            if time.monotonic() - last >= PROGRESS_EVERY_S:
                last = time.monotonic()
                with sessions.begin() as s:
                    repo.update_job_progress(s, job_id, **progress)

        best = train(cfg, on_progress=report)
        if not best.is_file():
            raise ValueError(f"no checkpoint was written ({best} does not exist)")
        with sessions.begin() as s:
            model = register_checkpoint(s, best, f"{preset} (job {job_id})", preset, cfg.epochs, started_by,
                                        job=job_id)
            repo.finish_job(s, job_id, model_id=model.id, after_metrics=model.metrics)
    except Exception as err:
        log.exception("training job %d failed", job_id)
        with sessions.begin() as s:
            repo.finish_job(s, job_id, error=_one_line(err))
        return 1
    print(json.dumps({"job": job_id, "model": model.id, "best": str(best)}))
    return 0
