"""Prediction runs: one row per analysis of a video."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import PredictionRun, Video
from db.repo.common import ValidationError, _jsonable, _text
from db.repo.videos import get_video


def add_prediction_run(session: Session, video: Video | str, *, models: Mapping | Sequence[str], device: str,
                       table_path, untrained: bool, weights: Mapping | None = None,
                       details: Mapping | None = None) -> PredictionRun:
    """Record one analysis of a video: which models (name -> info, or names), their weights (name ->
    spec), the device, whether any model was untrained, where the per-frame table was written, and the
    pipeline's run metadata (details, e.g. df.attrs["run"])."""
    video = get_video(session, video)
    if not isinstance(untrained, bool):
        raise ValidationError(f"untrained must be True or False, not {untrained!r}")
    models = {m: {} for m in models} if not isinstance(models, Mapping) else dict(models)
    if not models:
        raise ValidationError("a prediction run needs at least one model")
    run = PredictionRun(video_id=video.id, models=_jsonable(models), weights=_jsonable(dict(weights or {})),
                        device=_text(device, "device", 50), table_path=str(_text(str(table_path), "table_path")),
                        untrained=untrained, details=_jsonable(dict(details or {})))
    session.add(run)
    session.flush()
    session.refresh(run)
    return run


def list_prediction_runs(session: Session, video: Video | str) -> list[PredictionRun]:
    """A video's prediction runs, newest first."""
    video = get_video(session, video)
    return list(session.scalars(select(PredictionRun).where(PredictionRun.video_id == video.id)
                                .order_by(PredictionRun.id.desc())))
