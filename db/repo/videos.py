"""Reviewers and videos: the two things every other row points to."""
from __future__ import annotations

import hashlib
import math

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Reviewer, Video
from db.repo.common import NotFoundError, ValidationError, _insert_once, _integer, _number, _text


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
