"""What every repository module shares: the errors it raises, the small input checks that run before
anything is written, and the insert that stores one row per submission even when two writers race."""
from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.labels import TASKS
from db.models import AuditEvent, Video

T = TypeVar("T")
MAX_KEY_LENGTH = 100
MAX_TEXT_LENGTH = 2_000      # notes, comments, reasons: a paragraph, not a document
MAX_ID = 2**31 - 1           # ids are SQL INTEGER (32 bits on PostgreSQL): a larger number names no row


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


def _row_id(value, what: str) -> int:
    """A row id as typed by a person: an integer an id column can hold (a larger one is refused here,
    not by the driver with an OverflowError or an out-of-range error)."""
    value = _integer(value, what)
    if not 1 <= value <= MAX_ID:
        raise ValidationError(f"{what} {value} is out of range: ids run from 1 to {MAX_ID}")
    return value


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _note(note, what: str = "note") -> str:
    """Optional free text (None: empty), at most MAX_TEXT_LENGTH characters."""
    if note is None:
        return ""
    if not isinstance(note, str):
        raise ValidationError(f"a {what} must be text, not {note!r}")
    note = note.strip()
    if len(note) > MAX_TEXT_LENGTH:
        raise ValidationError(f"the {what} is {len(note):,} characters long; keep it under {MAX_TEXT_LENGTH:,}")
    return note


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
