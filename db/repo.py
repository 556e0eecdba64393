"""Reading and writing the review database. Every function takes a Session first; the caller opens it and
commits (`with sessions.begin() as session: ...`), so one Gradio event or one script step is one transaction.

Writes check their input before they touch the session: a bad range, value, reason, an unknown video or
reviewer raises ValidationError (a ValueError) and nothing is added. Flags and corrections carry an
idempotency key, given by the client (one per form submission) or derived from the content, under a UNIQUE
constraint: the same submission sent twice -- a double click, a retried request, two processes racing --
is stored once and the stored row is returned. Corrections are never edited: a reviewer other than the
author accepts or rejects one, and every step is an AuditEvent.

Frames are 0-based and ranges inclusive: (start_frame, end_frame) = (0, 9) are the first ten frames.
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.affwild2 import LABEL_COLUMNS, read_annotation
from core.labels import AUS, EXPRESSIONS, TASKS
from db.models import (
    FLAG_REASONS,
    STATUSES,
    AnnotationSet,
    AuditEvent,
    Correction,
    Flag,
    PredictionRun,
    PromptSet,
    Reviewer,
    Video,
    utcnow,
)

T = TypeVar("T")
MAX_KEY_LENGTH = 100


class ValidationError(ValueError):
    """Input refused before anything was written; the message says what and why."""


class NotFoundError(ValidationError):
    """An unknown video, reviewer, correction, flag or prompt set."""


class ReviewRuleError(ValidationError):
    """A rule of the review process: authors do not review their own corrections, an idempotency key
    belongs to one submission, a status changed by someone else in the meantime."""


# ---------------------------------------------------------------------------------------------------
# Small checks


def _task(task: str) -> str:
    if task not in TASKS:
        raise ValidationError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return task


def _text(value, what: str, max_length: int | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what} is empty")
    value = value.strip()
    if max_length is not None and len(value) > max_length:
        raise ValidationError(f"{what} is longer than {max_length} characters")
    return value


def _integer(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValidationError(f"{what} must be an integer, not {value!r}")
    return int(value)


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _note(note) -> str:
    if note is None:
        return ""
    if not isinstance(note, str):
        raise ValidationError(f"a note must be text, not {note!r}")
    return note.strip()


def _frame_range(video: Video, start_frame, end_frame) -> tuple[int, int]:
    start, end = _integer(start_frame, "start_frame"), _integer(end_frame, "end_frame")
    if end < start:
        raise ValidationError(f"frames {start}-{end}: the end is before the start")
    if start < 0 or end >= video.frame_count:
        raise ValidationError(f"frames {start}-{end} are outside video {video.key!r} "
                              f"(frames 0-{video.frame_count - 1})")
    return start, end


def _insert_once(session: Session, row: T, existing: Callable[[], T | None],
                 event: Callable[[T], AuditEvent] | None = None) -> T:
    """Add `row` (and its audit event) in a savepoint and return it; if a UNIQUE constraint says that a
    concurrent writer stored the same thing first, return that one instead."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
            if event is not None:
                session.add(event(row))
                session.flush()
    except IntegrityError:
        found = existing()
        if found is None:
            raise
        return found
    session.refresh(row)     # loads its relationships, so the row stays readable after the session closes
    return row


def _content_key(kind: str, *parts) -> str:
    text = json.dumps([kind, *parts], sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _client_key(key: str | None) -> str | None:
    if key is None:
        return None
    return _text(key, "idempotency_key", MAX_KEY_LENGTH)


def _jsonable(value):
    """JSON-safe copy of run metadata (numpy numbers and arrays, paths, datetimes)."""
    def default(obj):
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, (Path, datetime)):
            return str(obj)
        raise ValidationError(f"cannot store {type(obj).__name__} {obj!r} as JSON")
    return json.loads(json.dumps(value, default=default))


# ---------------------------------------------------------------------------------------------------
# Reviewers and videos


def get_or_create_reviewer(session: Session, name: str) -> Reviewer:
    """The reviewer called `name` (surrounding spaces ignored), created on first use."""
    name = _text(name, "reviewer name", 100)
    find = lambda: session.scalar(select(Reviewer).where(Reviewer.name == name))  # noqa: E731
    return find() or _insert_once(session, Reviewer(name=name), find)


def get_reviewer(session: Session, reviewer: Reviewer | str) -> Reviewer:
    """A reviewer by object or name; NotFoundError if the database has no such reviewer."""
    if isinstance(reviewer, Reviewer):
        found = session.get(Reviewer, reviewer.id) if reviewer.id is not None else None
    else:
        name = _text(reviewer, "reviewer name")
        found = session.scalar(select(Reviewer).where(Reviewer.name == name))
    if found is None:
        raise NotFoundError(f"unknown reviewer {getattr(reviewer, 'name', reviewer)!r}")
    return found


def file_sha256(path) -> str:
    """Hex SHA-256 of a file's bytes (read in chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def upload_key(path) -> str:
    """The video key of an uploaded file: "sha256:<hex of its bytes>" (the same clip twice is one video)."""
    return "sha256:" + file_sha256(path)


def register_video(session: Session, key: str, frame_count: int, fps: float, name: str | None = None) -> Video:
    """The video with this key (an Aff-Wild2 id, or upload_key() of a file), created on first use.

    Registering an existing key again returns it; a different frame count or fps is refused, since
    stored frame ranges depend on them.
    """
    key = _text(key, "video key", 255)
    frame_count = _integer(frame_count, "frame_count")
    if frame_count <= 0:
        raise ValidationError(f"video {key!r}: frame_count must be positive, got {frame_count}")
    if not _number(fps) or fps <= 0:
        raise ValidationError(f"video {key!r}: fps must be a positive number, got {fps!r}")
    name = _text(name, "video name", 255) if name is not None else key
    sha256 = key.removeprefix("sha256:") if key.startswith("sha256:") else None

    find = lambda: session.scalar(select(Video).where(Video.key == key))  # noqa: E731
    video = find() or _insert_once(
        session, Video(key=key, name=name, sha256=sha256, frame_count=frame_count, fps=float(fps)), find)
    if video.frame_count != frame_count or not math.isclose(video.fps, fps, rel_tol=1e-6):
        raise ValidationError(f"video {key!r} is registered with {video.frame_count} frames at {video.fps:g} "
                              f"fps, not {frame_count} frames at {fps:g} fps")
    return video


def get_video(session: Session, video: Video | str) -> Video:
    """A video by object or key; NotFoundError if the database has no such video."""
    if isinstance(video, Video):
        found = session.get(Video, video.id) if video.id is not None else None
    else:
        found = session.scalar(select(Video).where(Video.key == _text(video, "video key")))
    if found is None:
        raise NotFoundError(f"unknown video {getattr(video, 'key', video)!r}; register it first")
    return found


# ---------------------------------------------------------------------------------------------------
# Annotations and prediction runs


def import_annotations(session: Session, video: Video | str, task: str, path, version: str | None = None
                       ) -> AnnotationSet:
    """Store an Aff-Wild2 annotation file (read with core.affwild2.read_annotation) for a video.

    The file's SHA-256 identifies the version: importing the same file again returns the stored set; a
    changed file becomes a new set, and the newest set is the one effective_labels() uses. A file
    with more lines than the video has frames is refused (AnnotationError for a malformed file).
    """
    video, task = get_video(session, video), _task(task)
    path = Path(path)
    labels = read_annotation(path, task)
    if len(labels) > video.frame_count:
        raise ValidationError(f"{path} has {len(labels)} frames but video {video.key!r} has {video.frame_count}")
    version = _text(version, "version", 100) if version is not None else None
    sha256 = file_sha256(path)
    values = labels.to_numpy(dtype="float64", na_value=np.nan)

    def find():
        return session.scalar(select(AnnotationSet).where(
            AnnotationSet.video_id == video.id, AnnotationSet.task == task, AnnotationSet.sha256 == sha256))

    return find() or _insert_once(session, AnnotationSet(
        video_id=video.id, task=task, source_path=str(path), sha256=sha256, version=version,
        frame_count=len(labels), labels=AnnotationSet.encode_labels(values, task)), find)


def latest_annotation_set(session: Session, video: Video | str, task: str) -> AnnotationSet | None:
    """The newest imported annotation set of a video and task, or None."""
    video, task = get_video(session, video), _task(task)
    return session.scalar(select(AnnotationSet).where(AnnotationSet.video_id == video.id, AnnotationSet.task == task)
                          .order_by(AnnotationSet.id.desc()).limit(1))


def annotation_frame(annotation_set: AnnotationSet) -> pd.DataFrame:
    """An annotation set as core.affwild2.read_annotation returns its file (index "frame")."""
    return _labels_frame(annotation_set.labels_array(), annotation_set.task)


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


# ---------------------------------------------------------------------------------------------------
# Flags


def add_flag(session: Session, video: Video | str, task: str, start_frame: int, end_frame: int, reason: str,
             reviewer: Reviewer | str, note: str = "", idempotency_key: str | None = None) -> Flag:
    """Flag frames [start_frame, end_frame] of one task; reason from FLAG_REASONS ("other" needs a note).

    Returns the stored flag; the same submission again (same idempotency_key, or with none the same
    video, task, range, reason, note and reviewer) returns the first one.
    """
    video, task = get_video(session, video), _task(task)
    start, end = _frame_range(video, start_frame, end_frame)
    reason = _text(reason, "reason").lower()
    if reason not in FLAG_REASONS:
        raise ValidationError(f"unknown reason {reason!r}; choose one of {', '.join(FLAG_REASONS)}")
    note = _note(note)
    if reason == "other" and not note:
        raise ValidationError("reason 'other' needs a note saying what is wrong")
    reviewer = get_reviewer(session, reviewer)
    key = _client_key(idempotency_key) or _content_key("flag", video.key, task, start, end, reason, note,
                                                        reviewer.name)
    content = dict(video_id=video.id, task=task, start_frame=start, end_frame=end, reason=reason, note=note,
                   reviewer_id=reviewer.id)

    def find():
        flag = session.scalar(select(Flag).where(Flag.idempotency_key == key))
        if flag is not None and any(getattr(flag, k) != v for k, v in content.items()):
            raise ReviewRuleError(f"idempotency key {key!r} was already used for another flag (id {flag.id})")
        return flag

    detail = {"reason": reason, "note": note, "start_frame": start, "end_frame": end, "task": task}
    return find() or _insert_once(
        session, Flag(**content, idempotency_key=key), find,
        lambda flag: AuditEvent(reviewer_id=reviewer.id, action="flagged", flag_id=flag.id, detail=detail))


def resolve_flag(session: Session, flag: Flag | int, reviewer: Reviewer | str, note: str = "") -> Flag:
    """Mark a flag as dealt with (it stays stored, and effective_labels stops marking its frames).
    Resolving an already resolved flag changes nothing."""
    flag_id = flag.id if isinstance(flag, Flag) else _integer(flag, "flag id")
    reviewer = get_reviewer(session, reviewer)
    flag = session.get(Flag, flag_id)
    if flag is None:
        raise NotFoundError(f"unknown flag {flag_id}")
    if flag.resolved_at is not None:
        return flag
    note = _note(note)
    changed = session.execute(update(Flag).where(Flag.id == flag.id, Flag.resolved_at.is_(None))
                              .values(resolved_at=utcnow(), resolved_by_id=reviewer.id, resolution_note=note))
    if changed.rowcount == 1:
        session.add(AuditEvent(reviewer_id=reviewer.id, action="resolved", flag_id=flag.id, detail={"note": note}))
        session.flush()
    session.refresh(flag)
    return flag


def list_flags(session: Session, video: Video | str | None = None, task: str | None = None, *,
               frames: tuple[int, int] | None = None, reviewer: Reviewer | str | None = None,
               include_resolved: bool = True) -> list[Flag]:
    """Flags, oldest first, filtered by video, task, overlap with frames (start, end), reviewer."""
    query = _range_filters(select(Flag), Flag, session, video, task, frames, reviewer)
    if not include_resolved:
        query = query.where(Flag.resolved_at.is_(None))
    return list(session.scalars(query.order_by(Flag.id)))


def _range_filters(query: Select, model, session, video, task, frames, reviewer) -> Select:
    if video is not None:
        query = query.where(model.video_id == get_video(session, video).id)
    if task is not None:
        query = query.where(model.task == _task(task))
    if frames is not None:
        start, end = (_integer(f, "frame") for f in frames)
        if end < start:
            raise ValidationError(f"frames {start}-{end}: the end is before the start")
        query = query.where(model.start_frame <= end, model.end_frame >= start)
    if reviewer is not None:
        query = query.where(model.reviewer_id == get_reviewer(session, reviewer).id)
    return query


# ---------------------------------------------------------------------------------------------------
# Corrections


def correction_value(task: str, value) -> dict:
    """A correction's value as {label column: value}, checked.

    va: (valence, arousal) or {"valence": v, "arousal": a}, both in [-1, 1].
    expr: a class index 0..7, an expression name ("Happiness") or {"expression": i}.
    au: twelve 0/1 in AUS order, or {AU name: 0/1} for one or more AUs (e.g. {"AU12": 1}).
    """
    task = _task(task)
    if task == "va":
        if isinstance(value, Mapping):
            if set(value) != {"valence", "arousal"}:
                raise ValidationError(f"a VA correction needs valence and arousal, got {sorted(value)}")
            value = (value["valence"], value["arousal"])
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
            raise ValidationError(f"a VA correction is a (valence, arousal) pair, got {value!r}")
        out = {}
        for name, v in zip(("valence", "arousal"), value):
            if not _number(v) or not -1.0 <= v <= 1.0:
                raise ValidationError(f"{name} {v!r} is not a number in [-1, 1]")
            out[name] = float(v)
        return out
    if task == "expr":
        if isinstance(value, Mapping):
            if set(value) != {"expression"}:
                raise ValidationError(f"an EXPR correction has one key, expression; got {sorted(value)}")
            value = value["expression"]
        if isinstance(value, str):
            if value not in EXPRESSIONS:
                raise ValidationError(f"unknown expression {value!r}; expected one of {', '.join(EXPRESSIONS)}")
            return {"expression": EXPRESSIONS.index(value)}
        index = _label_int(value, "expression", len(EXPRESSIONS) - 1)
        return {"expression": index}
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in AUS]
        if unknown or not value:
            raise ValidationError(f"AU correction keys must be among {', '.join(AUS)}; got {sorted(map(str, value))}")
        return {au: _label_int(value[au], au, 1) for au in AUS if au in value}
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != len(AUS):
        raise ValidationError(f"an AU correction is {len(AUS)} values 0/1 or {{AU name: 0/1}}, got {value!r}")
    return {au: _label_int(v, au, 1) for au, v in zip(AUS, value)}


def _label_int(value, name: str, top: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value <= top:
        raise ValidationError(f"{name} {value!r} is not an integer in 0..{top}")
    return int(value)


def add_correction(session: Session, video: Video | str, task: str, start_frame: int, end_frame: int, value,
                   reviewer: Reviewer | str, note: str = "", idempotency_key: str | None = None) -> Correction:
    """Propose a corrected label for frames [start_frame, end_frame] (value as in correction_value()).

    The values it replaces (the effective labels now: annotations with accepted corrections) are kept in
    `original`. Returns the stored correction, status "proposed"; the same submission again (same
    idempotency_key, or with none the same video, task, range, value and reviewer) returns the first one.
    """
    video, task = get_video(session, video), _task(task)
    start, end = _frame_range(video, start_frame, end_frame)
    value = correction_value(task, value)
    note = _note(note)
    reviewer = get_reviewer(session, reviewer)
    key = _client_key(idempotency_key) or _content_key("correction", video.key, task, start, end, value,
                                                        reviewer.name)
    content = dict(video_id=video.id, task=task, start_frame=start, end_frame=end, value=value,
                   reviewer_id=reviewer.id)

    def find():
        found = session.scalar(select(Correction).where(Correction.idempotency_key == key))
        if found is not None and any(getattr(found, k) != v for k, v in content.items()):
            raise ReviewRuleError(f"idempotency key {key!r} was already used for another correction (id {found.id})")
        return found

    existing = find()
    if existing is not None:
        return existing
    current, annotation_set = _base_values(session, video, task, None)
    _apply_accepted(session, video, task, current, (start, end))
    original = {c: _json_values(current[start:end + 1, LABEL_COLUMNS[task].index(c)], task) for c in value}

    detail = {"value": value, "start_frame": start, "end_frame": end, "task": task, "note": note}
    row = Correction(**content, original=original, note=note, status="proposed", idempotency_key=key,
                     annotation_set_id=annotation_set.id if annotation_set else None)
    return _insert_once(
        session, row, find,
        lambda c: AuditEvent(reviewer_id=reviewer.id, action="proposed", correction_id=c.id, detail=detail))


def _json_values(values: np.ndarray, task: str) -> list:
    kind = float if task == "va" else int
    return [None if np.isnan(v) else kind(v) for v in values]


def review_correction(session: Session, correction: Correction | int, reviewer: Reviewer | str, accept: bool,
                      comment: str = "") -> Correction:
    """Accept or reject a correction. The reviewer must not be its author. A later reviewer may change
    the decision; each change is an AuditEvent. Repeating the current decision changes nothing."""
    correction_id = correction.id if isinstance(correction, Correction) else _integer(correction, "correction id")
    if not isinstance(accept, bool):
        raise ValidationError(f"accept must be True or False, not {accept!r}")
    reviewer = get_reviewer(session, reviewer)
    correction = session.get(Correction, correction_id)
    if correction is None:
        raise NotFoundError(f"unknown correction {correction_id}")
    if correction.reviewer_id == reviewer.id:
        raise ReviewRuleError(f"{reviewer.name} proposed correction {correction.id}; a second reviewer must "
                              "accept or reject it")
    comment = _note(comment)
    before, after = correction.status, "accepted" if accept else "rejected"
    if before == after:
        return correction
    changed = session.execute(
        update(Correction).where(Correction.id == correction.id, Correction.status == before)
        .values(status=after, reviewed_by_id=reviewer.id, reviewed_at=utcnow()))
    if changed.rowcount != 1:     # another reviewer's decision landed since we read the status
        session.refresh(correction)
        if correction.status == after:
            return correction
        raise ReviewRuleError(f"correction {correction.id} was {correction.status} by {correction.reviewed_by.name} "
                              "meanwhile; reload it")
    session.add(AuditEvent(reviewer_id=reviewer.id, action=after, correction_id=correction.id,
                           detail={"from": before, "to": after, "comment": comment}))
    session.flush()
    session.refresh(correction)
    return correction


def list_corrections(session: Session, video: Video | str | None = None, task: str | None = None, *,
                     status: str | None = None, frames: tuple[int, int] | None = None,
                     reviewer: Reviewer | str | None = None) -> list[Correction]:
    """Corrections, oldest first, filtered by video, task, status, overlap with frames, author."""
    query = _range_filters(select(Correction), Correction, session, video, task, frames, reviewer)
    if status is not None:
        if status not in STATUSES:
            raise ValidationError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        query = query.where(Correction.status == status)
    return list(session.scalars(query.order_by(Correction.id)))


def history(session: Session, *, video: Video | str | None = None, correction: Correction | int | None = None,
            flag: Flag | int | None = None, reviewer: Reviewer | str | None = None) -> list[AuditEvent]:
    """The audit trail, oldest first: every flag, resolution, proposal and review decision."""
    query = select(AuditEvent)
    if video is not None:
        video_id = get_video(session, video).id
        query = (query.outerjoin(Correction, AuditEvent.correction_id == Correction.id)
                 .outerjoin(Flag, AuditEvent.flag_id == Flag.id)
                 .where(or_(Correction.video_id == video_id, Flag.video_id == video_id)))
    if correction is not None:
        query = query.where(AuditEvent.correction_id == getattr(correction, "id", correction))
    if flag is not None:
        query = query.where(AuditEvent.flag_id == getattr(flag, "id", flag))
    if reviewer is not None:
        query = query.where(AuditEvent.reviewer_id == get_reviewer(session, reviewer).id)
    return list(session.scalars(query.order_by(AuditEvent.id)))


# ---------------------------------------------------------------------------------------------------
# Effective labels


def _labels_frame(values: np.ndarray, task: str) -> pd.DataFrame:
    columns = LABEL_COLUMNS[task]
    df = pd.DataFrame(values.reshape(len(values), len(columns)), columns=columns)
    if task != "va":
        df = df.astype("Int64")
    df.index = pd.RangeIndex(len(df), name="frame")
    return df


def _base_values(session: Session, video: Video, task: str, annotation: pd.DataFrame | None):
    """(labels (N, columns) float with NaN for invalid, the annotation set they came from or None)."""
    columns = LABEL_COLUMNS[task]
    if annotation is not None:
        missing = [c for c in columns if c not in annotation.columns]
        if missing:
            raise ValidationError(f"annotation table lacks column(s) {', '.join(missing)}")
        return annotation[columns].to_numpy(dtype="float64", na_value=np.nan), None
    values = np.full((video.frame_count, len(columns)), np.nan)
    annotation_set = latest_annotation_set(session, video, task)
    if annotation_set is not None:
        stored = annotation_set.labels_array()
        values[:len(stored)] = stored
    return values, annotation_set


def _apply_accepted(session: Session, video: Video, task: str, values: np.ndarray,
                    frames: tuple[int, int] | None = None) -> np.ndarray:
    """Write accepted corrections (overlapping `frames`, if given) into values, in the order they were
    accepted; returns the id of the correction that set each frame (-1: none)."""
    columns, n = LABEL_COLUMNS[task], len(values)
    query = select(Correction).where(Correction.video_id == video.id, Correction.task == task,
                                     Correction.status == "accepted")
    if frames is not None:
        query = query.where(Correction.start_frame <= frames[1], Correction.end_frame >= frames[0])
    correction_ids = np.full(n, -1, dtype=np.int64)
    for c in session.scalars(query.order_by(Correction.reviewed_at, Correction.id)):
        rows = slice(c.start_frame, min(c.end_frame, n - 1) + 1)
        for column, v in c.value.items():
            values[rows, columns.index(column)] = v
        correction_ids[rows] = c.id
    return correction_ids


def effective_labels(session: Session, video: Video | str, task: str, annotation: pd.DataFrame | None = None
                     ) -> pd.DataFrame:
    """The labels to train and evaluate on: annotations with accepted corrections applied (later
    acceptances win), frames under an unresolved flag marked.

    annotation: the video's annotation table (as read_annotation returns it) -- then the result has its
    rows, and a video the database does not know simply has no corrections or flags; without it, the
    newest imported annotation set is used, padded with missing values to the video's frame count.
    Columns: the task's label columns (VA float64 NaN; EXPR/AU Int64 <NA>), correction_id (Int64, the
    accepted correction that set the frame's value), flagged (bool), flag_reasons (str, "; "-joined).
    """
    task = _task(task)
    if annotation is not None and isinstance(video, str):
        known = session.scalar(select(Video).where(Video.key == video))
        if known is None:
            out = _labels_frame(annotation[LABEL_COLUMNS[task]].to_numpy(dtype="float64", na_value=np.nan), task)
            out["correction_id"] = pd.array([pd.NA] * len(out), dtype="Int64")
            out["flagged"] = False
            out["flag_reasons"] = ""
            return out
    video = get_video(session, video)
    values, _ = _base_values(session, video, task, annotation)
    correction_ids = _apply_accepted(session, video, task, values)
    flags = session.scalars(select(Flag).where(Flag.video_id == video.id, Flag.task == task,
                                               Flag.resolved_at.is_(None)))
    out = _labels_frame(values, task)
    out["correction_id"] = pd.Series(correction_ids, index=out.index, dtype="Int64").mask(correction_ids < 0)
    by_reason: dict[str, np.ndarray] = {}
    for flag in flags:
        mask = by_reason.setdefault(flag.reason, np.zeros(len(out), dtype=bool))
        mask[flag.start_frame:flag.end_frame + 1] = True
    flagged = np.zeros(len(out), dtype=bool)
    for mask in by_reason.values():
        flagged |= mask
    reasons = np.full(len(out), "", dtype=object)
    for i in np.flatnonzero(flagged):
        reasons[i] = "; ".join(r for r in sorted(by_reason) if by_reason[r][i])
    out["flagged"] = flagged
    out["flag_reasons"] = reasons
    return out


# ---------------------------------------------------------------------------------------------------
# CLIP prompt sets


def _prompt_content(name, templates, classes) -> tuple[str, list[str], dict[str, list[str]]]:
    """Checked like core.models.clip.PromptSet, so a stored set always loads there."""
    name = _text(name, "prompt set name", 100)
    if not name.replace("_", "").isalnum() or not name.isascii():
        raise ValidationError(f"prompt set name {name!r} must be letters, digits or _")
    if isinstance(templates, str) or not isinstance(templates, Iterable):
        raise ValidationError(f"prompt set {name}: templates must be a list of strings")
    templates = [_text(t, f"prompt set {name}: a template") for t in templates]
    if not templates or any(t.count("{}") != 1 for t in templates):
        raise ValidationError(f"prompt set {name}: every template needs exactly one {{}}")
    if not isinstance(classes, Mapping) or set(classes) != set(EXPRESSIONS):
        raise ValidationError(f"prompt set {name}: needs phrasings for exactly {', '.join(EXPRESSIONS)}")
    out = {}
    for c in EXPRESSIONS:
        phrasings = [classes[c]] if isinstance(classes[c], str) else list(classes[c])
        if not phrasings:
            raise ValidationError(f"prompt set {name}: no phrasing for {c}")
        out[c] = [_text(p, f"prompt set {name}: a phrasing of {c}") for p in phrasings]
    return name, templates, out


def save_prompt_set(session: Session, name: str, templates: Sequence[str], classes: Mapping[str, Sequence[str]],
                    author: Reviewer | str) -> PromptSet:
    """Save a CLIP prompt set. Same name and content as a stored version: that version is returned;
    new content under a known name: a new version (older ones stay)."""
    name, templates, classes = _prompt_content(name, templates, classes)
    author = get_reviewer(session, author)
    content_hash = hashlib.sha256(json.dumps([templates, [classes[c] for c in EXPRESSIONS]]).encode()).hexdigest()

    def find():
        return session.scalar(select(PromptSet).where(PromptSet.name == name, PromptSet.content_hash == content_hash))

    for _ in range(5):   # concurrent saves of new content under one name may race for a version number
        found = find()
        if found is not None:
            return found
        version = (session.scalar(select(func.max(PromptSet.version)).where(PromptSet.name == name)) or 0) + 1
        try:
            with session.begin_nested():
                row = PromptSet(name=name, version=version, templates=templates, classes=classes,
                                content_hash=content_hash, author_id=author.id)
                session.add(row)
                session.flush()
            session.refresh(row)
            return row
        except IntegrityError:
            continue
    raise ReviewRuleError(f"prompt set {name}: could not store a new version (too many concurrent saves)")


def list_prompt_sets(session: Session, all_versions: bool = False) -> list[PromptSet]:
    """Saved prompt sets by name: the newest version of each, or every version."""
    query = select(PromptSet)
    if not all_versions:
        newest = select(PromptSet.name, func.max(PromptSet.version).label("version")).group_by(PromptSet.name)
        newest = newest.subquery()
        query = query.join(newest, (PromptSet.name == newest.c.name) & (PromptSet.version == newest.c.version))
    return list(session.scalars(query.order_by(PromptSet.name, PromptSet.version)))


def get_prompt_set(session: Session, name: str, version: int | None = None) -> PromptSet:
    """A saved prompt set by name (newest version unless one is given)."""
    query = select(PromptSet).where(PromptSet.name == _text(name, "prompt set name"))
    if version is not None:
        query = query.where(PromptSet.version == _integer(version, "version"))
    found = session.scalar(query.order_by(PromptSet.version.desc()).limit(1))
    if found is None:
        raise NotFoundError(f"unknown prompt set {name!r}" + (f" version {version}" if version is not None else ""))
    return found
