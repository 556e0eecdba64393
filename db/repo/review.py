"""Flags and corrections: proposing, deciding, resolving, listing, and the audit trail of each step."""
from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np
from sqlalchemy import Select, or_, select, update
from sqlalchemy.orm import Session

from core.affwild2 import LABEL_COLUMNS
from core.labels import AUS, EXPRESSIONS
from db.models import FLAG_REASONS, FLAG_RESOLUTIONS, STATUSES, AuditEvent, Correction, Flag, Reviewer, Video, utcnow
from db.repo.common import (
    NotFoundError,
    ReviewRuleError,
    ValidationError,
    _client_key,
    _content_key,
    _frame_range,
    _frames,
    _insert_once,
    _note,
    _number,
    _row_id,
    _task,
    _text,
)
from db.repo.labels import _apply_accepted, _base_values
from db.repo.videos import get_or_create_reviewer, get_reviewer, get_video, open_video


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


def _reviewer_name(reviewer: Reviewer | str) -> str:
    return reviewer.name if isinstance(reviewer, Reviewer) else _text(reviewer, "reviewer name", 100)


def resolve_flag(session: Session, flag_id: int, *, video: Video | str | None, reviewer: Reviewer | str,
                 resolution: str, correction_id: int | None = None, note: str = "") -> Flag:
    """Close a flag of the open video with one of FLAG_RESOLUTIONS, which decides what its frames
    become in effective_labels: "fixed by correction" (correction_id: an accepted correction of the same
    video and task overlapping the flag) releases the frames that correction covers; "annotation is
    right" releases them all with the annotation; "frames unusable" keeps them all out.

    Everything is checked before anything is written (the reviewer row is created last). The same
    resolution sent again returns the flag unchanged; a different one for a resolved flag is refused.
    """
    video = open_video(session, video)
    flag_id = _row_id(flag_id, "flag id")
    name = _reviewer_name(reviewer)
    if resolution not in FLAG_RESOLUTIONS:
        raise ValidationError(f"unknown resolution {resolution!r}; choose one of {', '.join(FLAG_RESOLUTIONS)}")
    note = _note(note)
    if (resolution == "fixed by correction") != (correction_id is not None):
        raise ValidationError("'fixed by correction' names the correction that fixed the frames (and only it does)")
    correction_id = _row_id(correction_id, "correction id") if correction_id is not None else None
    flag = session.get(Flag, flag_id)
    if flag is None:
        raise NotFoundError(f"No flag {flag_id}")
    if flag.video_id != video.id:
        raise ReviewRuleError(f"flag {flag_id} belongs to video {flag.video.name!r}, not to {video.name!r}, "
                              "which is open")
    if correction_id is not None:
        _check_fix(session, flag, correction_id)
    if flag.resolved_at is not None:
        if (flag.resolution, flag.resolved_by_correction_id) == (resolution, correction_id):
            return flag
        raise ReviewRuleError(f"flag {flag.id} was already resolved ({flag.resolution}) by {flag.resolved_by.name}")

    resolver = get_or_create_reviewer(session, name)
    changed = session.execute(update(Flag).where(Flag.id == flag.id, Flag.resolved_at.is_(None)).values(
        resolved_at=utcnow(), resolved_by_id=resolver.id, resolution=resolution, resolution_note=note,
        resolved_by_correction_id=correction_id))
    if changed.rowcount != 1:      # someone else resolved it since we read it
        session.refresh(flag)
        if (flag.resolution, flag.resolved_by_correction_id) == (resolution, correction_id):
            return flag
        raise ReviewRuleError(f"flag {flag.id} was resolved ({flag.resolution}) by {flag.resolved_by.name} "
                              "meanwhile; reload it")
    session.add(AuditEvent(reviewer_id=resolver.id, action="resolved", flag_id=flag.id,
                           detail={"resolution": resolution, "correction_id": correction_id, "note": note}))
    session.flush()
    session.refresh(flag)
    return flag


def _check_fix(session: Session, flag: Flag, correction_id: int) -> None:
    """A correction can resolve a flag as its fix only if it is accepted and labels some of its frames."""
    correction = session.get(Correction, correction_id)
    if correction is None:
        raise NotFoundError(f"No correction {correction_id}")
    if (correction.video_id, correction.task) != (flag.video_id, flag.task):
        raise ReviewRuleError(f"correction {correction.id} is for {correction.task.upper()} of video "
                              f"{correction.video.name!r}; flag {flag.id} is for {flag.task.upper()} of "
                              f"{flag.video.name!r}")
    if correction.end_frame < flag.start_frame or correction.start_frame > flag.end_frame:
        raise ReviewRuleError(f"correction {correction.id} (frames {correction.start_frame}-{correction.end_frame}) "
                              f"does not overlap flag {flag.id} (frames {flag.start_frame}-{flag.end_frame})")
    if correction.status != "accepted":
        raise ReviewRuleError(f"correction {correction.id} is {correction.status}; only an accepted correction "
                              "fixes a flag")


def list_flags(session: Session, video: Video | str | None = None, task: str | None = None, *,
               frames: tuple[int, int] | None = None, reviewer: Reviewer | str | None = None,
               open_only: bool = False) -> list[Flag]:
    """Flags, oldest first, filtered by video, task, overlap with frames (start, end), author, and
    (open_only) not yet resolved."""
    query = _range_filters(select(Flag), Flag, session, video, task, frames, reviewer)
    if open_only:
        query = query.where(Flag.resolved_at.is_(None))
    return list(session.scalars(query.order_by(Flag.id)))


def _range_filters(query: Select, model, session, video, task, frames, reviewer) -> Select:
    if video is not None:
        query = query.where(model.video_id == get_video(session, video).id)
    if task is not None:
        query = query.where(model.task == _task(task))
    if frames is not None:
        start, end = _frames(frames)
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
    idempotency_key, or with none the same video, task, range, value and reviewer while such a correction
    is pending or accepted) returns that one. When every such correction was rejected, the same content is
    a new proposal, keyed by the newest rejected one's id: no other proposal can share that key, whatever
    decisions are revised later.
    """
    video, task = get_video(session, video), _task(task)
    start, end = _frame_range(video, start_frame, end_frame)
    value = correction_value(task, value)
    note = _note(note)
    reviewer = get_reviewer(session, reviewer)
    content = dict(video_id=video.id, task=task, start_frame=start, end_frame=end, value=value,
                   reviewer_id=reviewer.id)
    likes = _likes(session, content)
    standing = next((c for c in likes if c.status != "rejected"), None)
    if idempotency_key is None and standing is not None:
        return standing                 # sent again: a double click, or a retry after a quick accept
    after = [f"after rejected correction {likes[0].id}"] if likes else []
    key = _client_key(idempotency_key) or _content_key("correction", video.key, task, start, end, value,
                                                       reviewer.name, *after)

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


def _likes(session: Session, content: dict) -> list[Correction]:
    """The corrections with this content (video, task, range, value, author), newest first."""
    same = select(Correction).where(*(getattr(Correction, k) == v for k, v in content.items() if k != "value"))
    return [c for c in session.scalars(same.order_by(Correction.id.desc())) if c.value == content["value"]]


def _json_values(values: np.ndarray, task: str) -> list:
    kind = float if task == "va" else int
    return [None if np.isnan(v) else kind(v) for v in values]


def _decidable(session: Session, correction_id, video, reviewer: Reviewer | str, accept) -> tuple[Correction, str]:
    """The checks every decision makes before writing: a video open, a real correction id of that video,
    and a reviewer who is not its author. Returns the correction and the reviewer's name."""
    video = open_video(session, video)
    correction_id = _row_id(correction_id, "correction id")
    name = _reviewer_name(reviewer)
    if not isinstance(accept, bool):
        raise ValidationError(f"accept must be True or False, not {accept!r}")
    correction = session.get(Correction, correction_id)
    if correction is None:
        raise NotFoundError(f"No correction {correction_id}")
    if correction.video_id != video.id:
        raise ReviewRuleError(f"correction {correction_id} belongs to video {correction.video.name!r}, not to "
                              f"{video.name!r}, which is open")
    if correction.reviewer.name == name:
        raise ReviewRuleError(f"{name} proposed correction {correction_id}; a second reviewer must accept or "
                              "reject it")
    return correction, name


def decide_correction(session: Session, correction_id: int, *, video: Video | str | None, reviewer: Reviewer | str,
                      accept: bool, comment: str = "") -> Correction:
    """Accept or reject a pending correction of the open video (`video`: its key or Video), with an
    optional comment.

    Checked before anything is written: a video is open, the id names a correction of that video, the
    reviewer is not its author, and it is pending. The same decision sent again (a double click, or two
    reviewers agreeing at once) returns it unchanged; changing a decision is revise_decision().
    """
    correction, name = _decidable(session, correction_id, video, reviewer, accept)
    comment = _note(comment, "comment")
    after = "accepted" if accept else "rejected"
    if correction.status == after:
        return correction
    if correction.status != "proposed":
        raise ReviewRuleError(f"correction {correction.id} was already {correction.status} by "
                              f"{correction.reviewed_by.name}; revise the decision, with a reason, to change it")
    return _set_status(session, correction, name, after, comment, action=after,
                       detail={"from": "proposed", "to": after, "comment": comment})


def revise_decision(session: Session, correction_id: int, *, video: Video | str | None, reviewer: Reviewer | str,
                    accept: bool, reason: str) -> Correction:
    """Change an accepted or rejected correction of the open video to the other decision. The reason is
    required; it becomes the decision comment and stays in the audit trail (action "revised", detail:
    before, after, reason). The same checks as decide_correction come first."""
    correction, name = _decidable(session, correction_id, video, reviewer, accept)
    reason = _note(reason, "reason")
    if not reason:
        raise ValidationError("revising a decision needs a reason")
    after = "accepted" if accept else "rejected"
    if correction.status == "proposed":
        raise ReviewRuleError(f"correction {correction.id} is pending: accept or reject it; there is nothing to revise")
    if correction.status == after:
        raise ReviewRuleError(f"correction {correction.id} is already {after}; nothing to revise")
    return _set_status(session, correction, name, after, reason, action="revised",
                       detail={"before": correction.status, "after": after, "reason": reason})


def _set_status(session: Session, correction: Correction, name: str, after: str, comment: str, *, action: str,
                detail: dict) -> Correction:
    """Write a checked decision and its audit event; the status must still be the one the checks saw."""
    before = correction.status
    reviewer = get_or_create_reviewer(session, name)
    changed = session.execute(
        update(Correction).where(Correction.id == correction.id, Correction.status == before)
        .values(status=after, reviewed_by_id=reviewer.id, reviewed_at=utcnow(), decision_comment=comment or None))
    if changed.rowcount != 1:     # another reviewer's decision landed since we read the status
        session.refresh(correction)
        if correction.status == after:
            return correction
        raise ReviewRuleError(f"correction {correction.id} was {correction.status} by {correction.reviewed_by.name} "
                              "meanwhile; reload it")
    session.add(AuditEvent(reviewer_id=reviewer.id, action=action, correction_id=correction.id, detail=detail))
    session.flush()
    session.refresh(correction)
    return correction


def list_corrections(session: Session, video: Video | str | None = None, task: str | None = None, *,
                     status: str | None = None, frames: tuple[int, int] | None = None,
                     reviewer: Reviewer | str | None = None, last: int | None = None) -> list[Correction]:
    """Corrections, oldest first, filtered by video, task, status, overlap with frames, author; with
    `last`, only the newest `last` of them (a page, as history() gives)."""
    query = _range_filters(select(Correction), Correction, session, video, task, frames, reviewer)
    if status is not None:
        if status not in STATUSES:
            raise ValidationError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        query = query.where(Correction.status == status)
    if last is not None:
        newest = query.order_by(Correction.id.desc()).limit(_row_id(last, "number of corrections"))
        return sorted(session.scalars(newest), key=lambda correction: correction.id)
    return list(session.scalars(query.order_by(Correction.id)))


def waiting_for(session: Session, reviewer: Reviewer | str, video: Video | str | None = None) -> list[Correction]:
    """Pending corrections someone else proposed (that this reviewer may decide), newest first; all of
    them for a reviewer the database does not know yet."""
    name = _reviewer_name(reviewer)
    query = (select(Correction).join(Reviewer, Correction.reviewer_id == Reviewer.id)
             .where(Correction.status == "proposed", Reviewer.name != name))
    if video is not None:
        query = query.where(Correction.video_id == get_video(session, video).id)
    return list(session.scalars(query.order_by(Correction.id.desc())))


def history(session: Session, *, video: Video | str | None = None, correction: Correction | int | None = None,
            flag: Flag | int | None = None, reviewer: Reviewer | str | None = None,
            last: int | None = None) -> list[AuditEvent]:
    """The audit trail, oldest first: every flag, resolution, proposal, decision and revision; with `last`,
    only the newest `last` events (a page that stays small however long the video's history grows)."""
    query = select(AuditEvent)
    if video is not None:
        video_id = get_video(session, video).id
        query = (query.outerjoin(Correction, AuditEvent.correction_id == Correction.id)
                 .outerjoin(Flag, AuditEvent.flag_id == Flag.id)
                 .where(or_(Correction.video_id == video_id, Flag.video_id == video_id)))
    if correction is not None:
        query = query.where(AuditEvent.correction_id == _row_id(getattr(correction, "id", correction), "correction id"))
    if flag is not None:
        query = query.where(AuditEvent.flag_id == _row_id(getattr(flag, "id", flag), "flag id"))
    if reviewer is not None:
        query = query.where(AuditEvent.reviewer_id == get_reviewer(session, reviewer).id)
    if last is not None:
        newest = query.order_by(AuditEvent.id.desc()).limit(_row_id(last, "number of events"))
        return sorted(session.scalars(newest), key=lambda event: event.id)
    return list(session.scalars(query.order_by(AuditEvent.id)))
