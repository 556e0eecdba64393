"""What every repository module shares: the errors it raises (db/errors.py), the small input checks that
run before anything is written, and the insert that stores one row per submission even when two writers
race."""
from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.labels import TASKS
from db.errors import DatabaseBusy, NotFoundError, ReviewRuleError, ValidationError  # noqa: F401  (re-exported)
from db.limits import MAX_TEXT_LENGTH
from db.models import AuditEvent, Video

T = TypeVar("T")
MAX_KEY_LENGTH = 100
MAX_INT = 2**31 - 1          # SQL INTEGER (32 bits on PostgreSQL): ids, frames, counts


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
        raise ValidationError(f"{what} is {len(value):,} characters long; at most {max_length:,} are allowed")
    return value


def _integer(value, what: str, low: int = -MAX_INT, high: int = MAX_INT) -> int:
    """A whole number in [low, high] (by default what an INTEGER column holds). A float that is whole
    (7.0, as JSON and number fields send it) counts; 7.5 is refused, never rounded, and so is a number
    the column cannot hold (refused here, not by the driver with an OverflowError)."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)) and \
            math.isfinite(value) and value == int(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValidationError(f"{what} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ValidationError(f"{what} {value} is out of range ({low:,} to {high:,})")
    return int(value)


def _row_id(value, what: str) -> int:
    """A row id as typed by a person: 1 to MAX_INT."""
    return _integer(value, what, low=1)


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
        raise ValidationError(f"the {what} is {len(note):,} characters long; at most {MAX_TEXT_LENGTH:,} are allowed")
    return note


def _frames(frames, what: str = "frames") -> tuple[int, int]:
    """(start, end) frame numbers, whole and start <= end (an inclusive range)."""
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Sequence) or len(frames) != 2:
        raise ValidationError(f"{what} must be a (start, end) pair, not {frames!r}")
    start, end = _integer(frames[0], "start_frame"), _integer(frames[1], "end_frame")
    if end < start:
        raise ValidationError(f"frames {start}-{end}: the end is before the start")
    return start, end


def _frame_range(video: Video, start_frame, end_frame) -> tuple[int, int]:
    start, end = _frames((start_frame, end_frame))
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


