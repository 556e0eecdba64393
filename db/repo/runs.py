"""Prediction runs: one row per analysis of a video, found again by its content key so that the same
video with the same models and weights is not analysed twice."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.jsonsafe import jsonable
from db.models import PredictionRun, Reviewer, Video
from db.repo.common import MAX_KEY_LENGTH, ValidationError, _text
from db.repo.videos import author_id, get_video


def add_prediction_run(session: Session, video: Video | str, *, models: Mapping | Sequence[str], device: str,
                       table_path, untrained: bool, weights: Mapping | None = None,
                       details: Mapping | None = None, run_key: str | None = None, artifacts_dir=None,
                       weight_hashes: Mapping[str, str | None] | None = None,
                       created_by: Reviewer | str | None = None) -> PredictionRun:
    """Record one analysis of a video: which models (name -> info, or names), their weights (name ->
    spec) and the SHA-256 of each (name -> hash, None for random weights), the device, whether any model
    was untrained, where its outputs are (table_path: the per-frame table; artifacts_dir: the folder
    with table, faces and CLIP embeddings -- relative to the data directory), the pipeline's run metadata
    (details), the caller's run_key for find_run(), and who ran it (a reviewer name, created on first use)."""
    video = get_video(session, video)
    if not isinstance(untrained, bool):
        raise ValidationError(f"untrained must be True or False, not {untrained!r}")
    models = {m: {} for m in models} if not isinstance(models, Mapping) else dict(models)
    if not models:
        raise ValidationError("a prediction run needs at least one model")
    if artifacts_dir is not None:
        artifacts_dir = str(PurePosixPath(_text(str(artifacts_dir), "artifacts_dir")))
        if PurePosixPath(artifacts_dir).is_absolute() or ".." in PurePosixPath(artifacts_dir).parts:
            raise ValidationError(f"artifacts_dir {artifacts_dir!r} must be a folder inside the data directory, "
                                  "given relative to it")
    run_key = _text(run_key, "run_key", MAX_KEY_LENGTH) if run_key is not None else None
    run = PredictionRun(
        video_id=video.id, models=jsonable(models), weights=jsonable(dict(weights or {})),
        weight_hashes=jsonable(dict(weight_hashes or {})), device=_text(device, "device", 50),
        table_path=_text(str(table_path), "table_path"), artifacts_dir=artifacts_dir, untrained=untrained,
        details=jsonable(dict(details or {})),
        run_key=run_key, created_by_id=author_id(session, created_by))
    session.add(run)
    session.flush()
    session.refresh(run)
    return run


def find_run(session: Session, run_key: str) -> PredictionRun | None:
    """The newest run stored under this content key, or None (then the caller analyses)."""
    run_key = _text(run_key, "run_key", MAX_KEY_LENGTH)
    return session.scalar(select(PredictionRun).where(PredictionRun.run_key == run_key)
                          .order_by(PredictionRun.id.desc()).limit(1))


def latest_run(session: Session, video: Video | str) -> PredictionRun | None:
    """A video's newest run (what a reviewer sees on opening it), or None."""
    video = get_video(session, video)
    return session.scalar(select(PredictionRun).where(PredictionRun.video_id == video.id)
                          .order_by(PredictionRun.id.desc()).limit(1))


def list_prediction_runs(session: Session, video: Video | str) -> list[PredictionRun]:
    """A video's prediction runs, newest first."""
    video = get_video(session, video)
    return list(session.scalars(select(PredictionRun).where(PredictionRun.video_id == video.id)
                                .order_by(PredictionRun.id.desc())))
