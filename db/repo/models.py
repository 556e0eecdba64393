"""Model records (checkpoints the app can analyse with, one row per file content) and training jobs
(retraining runs in their own process, whose status and progress anyone can read)."""
from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.jsonsafe import jsonable
from core.labels import TASKS
from db.limits import MAX_TEXT_LENGTH
from db.models import JOB_STATUSES, ModelRecord, Reviewer, TrainingJob, utcnow
from db.repo.common import (
    NotFoundError,
    ReviewRuleError,
    ValidationError,
    _insert_once,
    _integer,
    _number,
    _row_id,
    _text,
)
from db.repo.videos import author_id

PROGRESS_KEYS = ("epoch", "epochs", "step", "steps", "loss", "eta_s")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _sha256(value, what: str) -> str:
    value = _text(value, what, 64 + len("sha256:")).lower().removeprefix("sha256:")
    if not _SHA256.fullmatch(value):
        raise ValidationError(f"{what} must be a SHA-256 in hex (64 characters), not {value!r}")
    return value


# ---------------------------------------------------------------------------------------------------
# Models


def register_model(session: Session, *, path, content_hash: str, name: str, architecture: str,
                   tasks: Iterable[str], encoder_hash: str | None = None, training: Mapping | None = None,
                   correction_ids: Iterable[int] = (), metrics: Mapping | None = None,
                   trained_steps: int | None = None, started_by: Reviewer | str | None = None) -> ModelRecord:
    """Record a checkpoint: where it is, the SHA-256 of its file (which identifies it: registering the
    same content again returns the stored record), what it is and how it was trained (training: preset,
    steps, epochs, frames seen, data summary; correction_ids: the accepted corrections in its labels;
    metrics: validation scores; trained_steps: optimiser steps taken, None when unknown)."""
    content_hash = _sha256(content_hash, "content_hash")
    tasks = list(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if not tasks or unknown:
        raise ValidationError(f"a model's tasks are among {', '.join(TASKS)}; got {tasks!r}")
    if trained_steps is not None and _integer(trained_steps, "trained_steps") < 0:
        raise ValidationError(f"trained_steps must not be negative, got {trained_steps}")
    row = ModelRecord(
        name=_text(name, "model name", 200), path=_text(str(path), "model path"), content_hash=content_hash,
        architecture=_text(architecture, "architecture", 50), tasks=tasks,
        encoder_hash=_text(encoder_hash, "encoder_hash", 64) if encoder_hash is not None else None,
        training=jsonable(dict(training or {})),
        correction_ids=sorted({_row_id(i, "correction id") for i in correction_ids}),
        metrics=jsonable(dict(metrics or {})), trained_steps=trained_steps)

    def find():
        return session.scalar(select(ModelRecord).where(ModelRecord.content_hash == content_hash))

    existing = find()
    if existing is not None:
        return existing
    row.started_by_id = author_id(session, started_by)
    return _insert_once(session, row, find)


def list_models(session: Session, architecture: str | None = None) -> list[ModelRecord]:
    """Registered models, newest first (only one architecture if given)."""
    query = select(ModelRecord)
    if architecture is not None:
        query = query.where(ModelRecord.architecture == architecture)
    return list(session.scalars(query.order_by(ModelRecord.id.desc())))


def get_model(session: Session, id_or_hash: int | str) -> ModelRecord:
    """A model by id or by content hash (hex, optionally "sha256:"-prefixed)."""
    if isinstance(id_or_hash, str):
        found = session.scalar(select(ModelRecord).where(
            ModelRecord.content_hash == _sha256(id_or_hash, "content hash")))
    else:
        found = session.get(ModelRecord, _row_id(id_or_hash, "model id"))
    if found is None:
        raise NotFoundError(f"No model {id_or_hash}")
    return found


# ---------------------------------------------------------------------------------------------------
# Training jobs


def create_job(session: Session, *, preset: str, settings: Mapping | None = None,
               started_by: Reviewer | str | None = None, before_metrics: Mapping | None = None) -> TrainingJob:
    """A queued training job (settings: what the training process is given; before_metrics: the
    current model's validation scores, shown beside the new model's when it is done)."""
    job = TrainingJob(preset=_text(preset, "preset", 50), settings=jsonable(dict(settings or {})), status="queued",
                      progress={}, before_metrics=jsonable(dict(before_metrics)) if before_metrics else None)
    job.started_by_id = author_id(session, started_by)
    session.add(job)
    session.flush()
    session.refresh(job)
    return job


def get_job(session: Session, job_id: int) -> TrainingJob:
    job = session.get(TrainingJob, _row_id(job_id, "job id"))
    if job is None:
        raise NotFoundError(f"No training job {job_id}")
    return job


def list_jobs(session: Session, status: str | None = None) -> list[TrainingJob]:
    """Training jobs, newest first (only those with `status` if given)."""
    query = select(TrainingJob)
    if status is not None:
        query = query.where(TrainingJob.status == _job_status(status))
    return list(session.scalars(query.order_by(TrainingJob.id.desc())))


def _job_status(status: str) -> str:
    if status not in JOB_STATUSES:
        raise ValidationError(f"unknown job status {status!r}; expected one of {', '.join(JOB_STATUSES)}")
    return status


def _move(session: Session, job_id: int, before: str, after: str, **values) -> TrainingJob:
    """Change a job's status along queued -> running -> done/failed, and nothing else: the update only
    applies while the status is still `before`, so two processes cannot both start or finish one job."""
    job = get_job(session, job_id)
    if job.status != before:
        raise ValidationError(f"training job {job.id} is {job.status}; only a {before} job can become {after}")
    changed = session.execute(update(TrainingJob).where(TrainingJob.id == job.id, TrainingJob.status == before)
                              .values(status=after, **values))
    session.refresh(job)
    if changed.rowcount != 1:
        raise ReviewRuleError(f"training job {job.id} became {job.status} meanwhile")
    return job


def start_job(session: Session, job_id: int, pid: int) -> TrainingJob:
    """A queued job's process has started (pid: its process id, on this host). The host and the process's
    start time are recorded with the pid, so that reap_dead_jobs() can tell when it is gone."""
    pid = _integer(pid, "pid", low=1)
    return _move(session, job_id, "queued", "running", pid=pid, host=socket.gethostname(),
                 process_started=_process_stat(pid)[1], started_at=utcnow())


def _process_stat(pid: int) -> tuple[str, int | None]:
    """(state, start time in clock ticks after boot) of a process from Linux's /proc: state "gone" when
    there is no such process; ("unknown", None) without /proc, where os.kill says whether it exists."""
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "gone", None
        except PermissionError:
            pass
        return "unknown", None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return "gone", None
    return fields[0], int(fields[19])     # stat fields 3 (state) and 22 (starttime)


def _process_ended(job: TrainingJob) -> bool:
    """Whether a running job's process is gone: no such pid, a zombie (dead, not yet waited for by its
    parent), or another process that took the pid over (it started at another time)."""
    state, started = _process_stat(job.pid)
    if state in ("gone", "Z", "X"):
        return True
    return job.process_started is not None and started is not None and started != job.process_started


def reap_dead_jobs(session: Session) -> list[TrainingJob]:
    """Fail the running jobs of this host whose process ended without finishing the job (killed, out of
    memory, the machine restarted), and return them. Jobs running on other hosts are left alone: their
    processes cannot be seen from here; queued jobs wait for their turn (training.jobs.start_queued).
    Call it before showing jobs; it is cheap when nothing died."""
    host = socket.gethostname()
    failed = []
    for job in list_jobs(session, "running"):
        if job.host == host and job.pid is not None and _process_ended(job):
            failed.append(_fail(session, job, "running", "its process ended without finishing the job; "
                                                         "see the job's log"))
    return [job for job in failed if job is not None]


def _fail(session: Session, job: TrainingJob, before: str, error: str) -> TrainingJob | None:
    """Fail a job still in status `before` (None when its process finished it meanwhile)."""
    changed = session.execute(update(TrainingJob).where(TrainingJob.id == job.id, TrainingJob.status == before)
                              .values(status="failed", finished_at=utcnow(), error=error))
    session.refresh(job)
    return job if changed.rowcount == 1 else None


def update_job_progress(session: Session, job_id: int, **progress) -> TrainingJob:
    """Record a running job's progress (epoch, epochs, step, steps, loss, eta_s; numbers), merged into
    what it reported before; updated_at is set here."""
    unknown = sorted(set(progress) - set(PROGRESS_KEYS))
    if unknown:
        raise ValidationError(f"unknown progress field(s) {', '.join(unknown)}; expected {', '.join(PROGRESS_KEYS)}")
    for key, value in progress.items():
        if value is not None and not _number(value):
            raise ValidationError(f"progress {key} must be a number, not {value!r}")
    job = get_job(session, job_id)
    if job.status != "running":
        raise ValidationError(f"training job {job.id} is {job.status}; only a running job reports progress")
    job.progress = {**job.progress, **jsonable(progress), "updated_at": utcnow().isoformat()}
    session.flush()
    return job


def finish_job(session: Session, job_id: int, model_id: int | None = None, after_metrics: Mapping | None = None,
               error: str | None = None) -> TrainingJob:
    """A running job ended: done (with the model it registered and its metrics) or, with an error
    message, failed (the message's last MAX_TEXT_LENGTH characters are kept)."""
    if model_id is not None:
        get_model(session, model_id)
    if error is not None:      # kept, not refused, when long: the end of a traceback says the most
        error = str(error).strip()[-MAX_TEXT_LENGTH:] or "failed without a message"
    after_metrics = jsonable(dict(after_metrics)) if after_metrics else None
    return _move(session, job_id, "running", "failed" if error is not None else "done", finished_at=utcnow(),
                 model_id=model_id, error=error, after_metrics=after_metrics)

