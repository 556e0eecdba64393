"""Flags and corrections: proposing, deciding, resolving, listing, and the audit trail of each step."""
from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np
from sqlalchemy import Select, or_, select, update
from sqlalchemy.orm import Session

from core.affwild2 import LABEL_COLUMNS
from core.labels import AUS, EXPRESSIONS
from db.models import FLAG_REASONS, STATUSES, AuditEvent, Correction, Flag, Reviewer, Video, utcnow
from db.repo.common import (
    NotFoundError,
    ReviewRuleError,
    ValidationError,
    _client_key,
    _content_key,
    _frame_range,
    _insert_once,
    _integer,
    _note,
    _number,
    _task,
    _text,
)
from db.repo.labels import _apply_accepted, _base_values
from db.repo.videos import get_reviewer, get_video


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
