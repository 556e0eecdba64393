"""The annotation audit's dataset queue: runs and their suggested segments, ranked listing, a reviewer's
confirm (a flag, optionally a proposed correction with the suggested label) or dismiss, and progress
with the share confirmed as an estimate, with a Wilson interval, of how many annotations are wrong."""
from __future__ import annotations

import json
from collections.abc import Mapping

import pandas as pd
from scipy.stats import binomtest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.jsonsafe import jsonable
from db.limits import MAX_TEXT_LENGTH
from db.models import AuditEvent, AuditRun, AuditSuggestion, Reviewer, Video, utcnow
from db.repo.common import NotFoundError, ReviewRuleError, ValidationError, _note, _row_id, _task, _text
from db.repo.review import add_correction, add_flag
from db.repo.videos import get_or_create_reviewer, register_video

# the flag reason a confirmed suggestion of each kind becomes
FLAG_REASON = {"lag": "annotation lag"}
SUGGESTION_COLUMNS = ["id", "run_id", "video", "task", "kind", "start_frame", "end_frame", "frames", "score",
                      "suggested", "detail", "status", "reviewed_by", "reviewed_at", "note", "flag_id",
                      "correction_id"]


def write_audit(session: Session, run: Mapping, segments: pd.DataFrame) -> AuditRun:
    """Store an audit run (run: split, tasks, settings, encoder, folds, metrics, annotated_frames, videos:
    {video: {"frames": n, "fps": r}} -- videos not in the database yet are registered with them) and its segments
    (core.audit.SEGMENT_COLUMNS), all open."""
    missing = {"split", "tasks", "settings", "encoder", "folds", "metrics", "annotated_frames", "videos"} - set(run)
    if missing:
        raise ValidationError(f"an audit run needs {', '.join(sorted(missing))}")
    row = AuditRun(split=_text(run["split"], "split", 10), tasks=list(run["tasks"]),
                   settings=jsonable(dict(run["settings"])), encoder=jsonable(dict(run["encoder"])),
                   folds=jsonable(dict(run["folds"])), metrics=jsonable(dict(run["metrics"])),
                   annotated_frames=jsonable(dict(run["annotated_frames"])))
    session.add(row)
    session.flush()
    videos = {}
    for key, info in run["videos"].items():
        videos[key] = session.scalar(select(Video).where(Video.key == key)) \
            or register_video(session, key, int(info["frames"]), float(info["fps"]))
    for seg in segments.itertuples(index=False):
        if seg.video not in videos:
            raise ValidationError(f"segment of video {seg.video!r}, which the run does not list")
        suggested = json.loads(seg.suggested) if isinstance(seg.suggested, str) else dict(seg.suggested)
        session.add(AuditSuggestion(run_id=row.id, video_id=videos[seg.video].id, task=_task(seg.task),
                                    kind=_text(seg.kind, "kind", 20), start_frame=int(seg.start_frame),
                                    end_frame=int(seg.end_frame), score=float(seg.score),
                                    suggested=jsonable(suggested), detail=str(seg.detail), status="open"))
    session.flush()
    return row


def latest_audit_run(session: Session) -> AuditRun | None:
    return session.scalar(select(AuditRun).order_by(AuditRun.id.desc()).limit(1))


def _run(session: Session, run_id) -> AuditRun:
    run = latest_audit_run(session) if run_id is None else session.get(AuditRun, _row_id(run_id, "audit run id"))
    if run is None:
        raise NotFoundError("No audit run" + ("" if run_id is None else f" {run_id}")
                            + ": run python -m training audit first")
    return run


def _filtered(session: Session, run_id, task, kind, min_score):
    run = _run(session, run_id)
    query = select(AuditSuggestion).where(AuditSuggestion.run_id == run.id)
    if task is not None:
        query = query.where(AuditSuggestion.task == _task(task))
    if kind is not None:
        query = query.where(AuditSuggestion.kind == _text(kind, "kind", 20))
    if min_score is not None:
        query = query.where(AuditSuggestion.score >= float(min_score))
    return run, query


def list_suggestions(session: Session, *, run_id: int | None = None, task: str | None = None,
                     kind: str | None = None, status: str | None = "open", min_score: float | None = None,
                     limit: int | None = None, offset: int = 0) -> list[AuditSuggestion]:
    """A run's suggestions (default: the newest run), best first (score, then longer, then id), filtered
    by task, kind, status (None: all) and least score."""
    _, query = _filtered(session, run_id, task, kind, min_score)
    if status is not None:
        query = query.where(AuditSuggestion.status == _text(status, "status", 10))
    query = query.order_by(AuditSuggestion.score.desc(),
                           (AuditSuggestion.end_frame - AuditSuggestion.start_frame).desc(), AuditSuggestion.id)
    return list(session.scalars(query.offset(offset).limit(limit)))


def _open_suggestion(session: Session, suggestion_id) -> AuditSuggestion:
    suggestion = session.get(AuditSuggestion, _row_id(suggestion_id, "suggestion id"))
    if suggestion is None:
        raise NotFoundError(f"No audit suggestion {suggestion_id}")
    return suggestion


def _decide(session: Session, suggestion: AuditSuggestion, reviewer: Reviewer, status: str, note: str,
            flag_id=None, correction_id=None) -> AuditSuggestion:
    changed = session.execute(update(AuditSuggestion).where(
        AuditSuggestion.id == suggestion.id, AuditSuggestion.status == "open").values(
        status=status, reviewed_by_id=reviewer.id, reviewed_at=utcnow(), note=note, flag_id=flag_id,
        correction_id=correction_id))
    if changed.rowcount != 1:
        raise ReviewRuleError(f"suggestion {suggestion.id} was decided meanwhile; reload it")
    session.add(AuditEvent(reviewer_id=reviewer.id, action=status, suggestion_id=suggestion.id,
                           detail={"note": note, "flag_id": flag_id, "correction_id": correction_id,
                                   "score": suggestion.score, "kind": suggestion.kind}))
    session.flush()
    session.refresh(suggestion)
    return suggestion


def _already(suggestion: AuditSuggestion, status: str, name: str) -> bool:
    """True when this reviewer already made this decision (sent twice); refused when it differs."""
    if suggestion.status == "open":
        return False
    if suggestion.status == status and suggestion.reviewed_by.name == name:
        return True
    raise ReviewRuleError(f"suggestion {suggestion.id} was already {suggestion.status} by "
                          f"{suggestion.reviewed_by.name}")


def confirm_suggestion(session: Session, suggestion_id: int, *, reviewer: str, note: str = "",
                       propose_correction: bool = False) -> AuditSuggestion:
    """The annotation is wrong there: a flag on the stretch (reason "wrong label", "annotation lag" for a
    lag) and, with propose_correction, a proposed correction with the suggested label, which a second
    reviewer accepts or rejects as any other. The same confirmation sent again returns it unchanged."""
    suggestion = _open_suggestion(session, suggestion_id)
    name, note = _text(reviewer, "reviewer name", 100), _note(note)
    if _already(suggestion, "confirmed", name):
        return suggestion
    who = get_or_create_reviewer(session, name)
    text = f"audit suggestion {suggestion.id}: {suggestion.detail}" + (f"; {note}" if note else "")
    flag = add_flag(session, suggestion.video, suggestion.task, suggestion.start_frame, suggestion.end_frame,
                    FLAG_REASON.get(suggestion.kind, "wrong label"), who, _note(text[:MAX_TEXT_LENGTH]))
    correction = None
    if propose_correction and suggestion.suggested:       # a drawn clean stretch suggests no label
        correction = add_correction(session, suggestion.video, suggestion.task, suggestion.start_frame,
                                    suggestion.end_frame, suggestion.suggested, who, _note(text[:MAX_TEXT_LENGTH]))
    return _decide(session, suggestion, who, "confirmed", note, flag.id, correction.id if correction else None)


def dismiss_suggestion(session: Session, suggestion_id: int, *, reviewer: str, note: str = "") -> AuditSuggestion:
    """The annotation is right there (the audit was wrong); kept in the audit trail and in the estimate."""
    suggestion = _open_suggestion(session, suggestion_id)
    name, note = _text(reviewer, "reviewer name", 100), _note(note)
    if _already(suggestion, "dismissed", name):
        return suggestion
    return _decide(session, suggestion, get_or_create_reviewer(session, name), "dismissed", note)


def audit_progress(session: Session, *, run_id: int | None = None, task: str | None = None,
                   kind: str | None = None, min_score: float | None = None, level: float = 0.95) -> dict:
    """How far the team is and what it has learnt: reviewed n of N suggestions, confirmed and dismissed,
    the share confirmed with its Wilson interval, and from it the estimated wrong suggestions and frames
    among all N. Reviewers take the best first, so while the unreviewed ones score lower the share
    overestimates theirs: an upper estimate until the queue is done."""
    run, query = _filtered(session, run_id, task, kind, min_score)
    sub = query.subquery()
    counts = dict(session.execute(select(sub.c.status, func.count()).group_by(sub.c.status)).all())
    frames = session.scalar(select(func.coalesce(func.sum(sub.c.end_frame - sub.c.start_frame + 1), 0)))
    total = sum(counts.values())
    confirmed, dismissed = counts.get("confirmed", 0), counts.get("dismissed", 0)
    reviewed = confirmed + dismissed
    out = {"run_id": run.id, "total": total, "reviewed": reviewed, "confirmed": confirmed, "dismissed": dismissed,
           "suggested_frames": int(frames), "share_confirmed": None, "interval": None, "level": level,
           "estimated_wrong_suggestions": None, "estimated_wrong_frames": None}
    if reviewed:
        share = confirmed / reviewed
        ci = binomtest(confirmed, reviewed).proportion_ci(confidence_level=level, method="wilson")
        out.update(share_confirmed=share, interval=[float(ci.low), float(ci.high)],
                   estimated_wrong_suggestions=[share * total, float(ci.low) * total, float(ci.high) * total],
                   estimated_wrong_frames=[share * frames, float(ci.low) * frames, float(ci.high) * frames])
    return out


def suggestions_table(session: Session, **filters) -> pd.DataFrame:
    """list_suggestions(**filters) as a table (SUGGESTION_COLUMNS), for `python -m db audit` and exports."""
    rows = [{"id": s.id, "run_id": s.run_id, "video": s.video.key, "task": s.task, "kind": s.kind,
             "start_frame": s.start_frame, "end_frame": s.end_frame, "frames": s.end_frame - s.start_frame + 1,
             "score": s.score, "suggested": json.dumps(s.suggested), "detail": s.detail, "status": s.status,
             "reviewed_by": s.reviewed_by.name if s.reviewed_by else None, "reviewed_at": s.reviewed_at,
             "note": s.note, "flag_id": s.flag_id, "correction_id": s.correction_id}
            for s in list_suggestions(session, **filters)]
    return pd.DataFrame(rows, columns=SUGGESTION_COLUMNS)


def sample_units(session: Session, run_id: int | None = None) -> pd.DataFrame:
    """The run's random sample for the error-rate estimate (its settings["sample"], core/audit_sample.py),
    each unit with the id and status of the suggestion (or drawn clean stretch) it is: video, task,
    start_frame, end_frame, own_frames, stratum, N, id, status. Empty for a run made without one."""
    run = _run(session, run_id)
    units = pd.DataFrame((run.settings.get("sample") or {}).get("units") or [],
                         columns=["video", "task", "start_frame", "end_frame", "own_frames", "stratum", "N"])
    rows = session.execute(select(Video.key, AuditSuggestion.task, AuditSuggestion.start_frame,
                                  AuditSuggestion.end_frame, AuditSuggestion.id, AuditSuggestion.status)
                           .join(Video, AuditSuggestion.video_id == Video.id)
                           .where(AuditSuggestion.run_id == run.id)).all()
    found = pd.DataFrame(rows, columns=["video", "task", "start_frame", "end_frame", "id", "status"])
    found = found.drop_duplicates(["video", "task", "start_frame", "end_frame"])
    return units.merge(found, on=["video", "task", "start_frame", "end_frame"], how="left")
