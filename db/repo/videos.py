"""Reviewers and videos: the two things every other row points to, and the list of videos a reviewer
picks from."""
from __future__ import annotations

import hashlib
import math

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import AuditEvent, Correction, Flag, PredictionRun, Reviewer, Video
from db.repo.common import NotFoundError, ValidationError, _insert_once, _integer, _number, _text


def get_or_create_reviewer(session: Session, name: str) -> Reviewer:
    """The reviewer called `name` (surrounding spaces ignored), created on first use."""
    name = _text(name, "reviewer name", 100)
    find = lambda: session.scalar(select(Reviewer).where(Reviewer.name == name))  # noqa: E731
    return find() or _insert_once(session, Reviewer(name=name), find)


def author_id(session: Session, reviewer: Reviewer | str | None) -> int | None:
    """The id of who started something that is not a review decision (a run, a model, a training job);
    a signed-in name is created on first use."""
    if reviewer is None:
        return None
    return reviewer.id if isinstance(reviewer, Reviewer) else get_or_create_reviewer(session, reviewer).id


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
    stored frame ranges depend on them. An upload needs its file name: reviewers pick videos by name,
    never by hash.
    """
    key = _text(key, "video key", 255)
    frame_count = _integer(frame_count, f"video {key!r}: frame_count", low=1)
    if not _number(fps) or fps <= 0:
        raise ValidationError(f"video {key!r}: fps must be a positive number, got {fps!r}")
    sha256 = key.removeprefix("sha256:") if key.startswith("sha256:") else None
    if name is None and sha256 is not None:
        raise ValidationError(f"video {key!r} is an upload: give its file name")
    name = _text(name, "video name", 255) if name is not None else key

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


def open_video(session: Session, video: Video | str | None) -> Video:
    """The video a reviewer has open, for decisions that must concern it: none open is refused."""
    if video is None or (isinstance(video, str) and not video.strip()):
        raise ValidationError("No video is open: open the video before deciding on its flags or corrections")
    return get_video(session, video)


def list_videos(session: Session) -> list[dict]:
    """Every video with what a reviewer needs to pick one, most recent activity first: key, name (the
    file name), frame_count, runs, latest_run_id, open_flags, pending_corrections and last_activity (the
    newest run or audit event -- every flag and correction has one; the registration when there is none)."""
    runs = {video_id: (n, latest, at) for video_id, n, latest, at in session.execute(
        select(PredictionRun.video_id, func.count(), func.max(PredictionRun.id), func.max(PredictionRun.created_at))
        .group_by(PredictionRun.video_id))}
    open_flags = dict(session.execute(select(Flag.video_id, func.count()).where(Flag.resolved_at.is_(None))
                                      .group_by(Flag.video_id)).all())
    pending = dict(session.execute(select(Correction.video_id, func.count()).where(Correction.status == "proposed")
                                   .group_by(Correction.video_id)).all())
    last = {video_id: at for video_id, (_, _, at) in runs.items()}
    for subject in (Flag, Correction):
        link = AuditEvent.flag_id if subject is Flag else AuditEvent.correction_id
        for video_id, at in session.execute(select(subject.video_id, func.max(AuditEvent.created_at))
                                            .join(subject, link == subject.id).group_by(subject.video_id)):
            last[video_id] = max(at, last.get(video_id, at))
    rows = []
    for v in session.scalars(select(Video)):
        n_runs, latest_run_id, _ = runs.get(v.id, (0, None, None))
        rows.append({"key": v.key, "name": v.name, "frame_count": v.frame_count, "runs": n_runs,
                     "latest_run_id": latest_run_id, "open_flags": open_flags.get(v.id, 0),
                     "pending_corrections": pending.get(v.id, 0), "last_activity": last.get(v.id, v.created_at)})
    return sorted(rows, key=lambda r: (r["last_activity"], r["key"]), reverse=True)
