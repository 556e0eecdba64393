"""Getting reviewers' work out of the database: effective labels as Aff-Wild2 annotation files (for
training elsewhere or for sharing), and the flags and corrections themselves as tables, CSV or JSON (JSON
with the full audit trail) -- the way to keep a hosted Space's work when its database is not persistent.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.affwild2 import LABEL_COLUMNS, write_annotation
from db.models import AnnotationSet, AuditEvent, Correction, Flag, Reviewer, Video
from db.repo import ValidationError, effective_labels, get_video, history, list_corrections, list_flags

CORRECTION_COLUMNS = ["id", "video", "task", "start_frame", "end_frame", "value", "original", "status",
                      "reviewer", "created_at", "reviewed_by", "reviewed_at", "decision_comment", "note"]
FLAG_COLUMNS = ["id", "video", "task", "start_frame", "end_frame", "reason", "note", "reviewer", "created_at",
                "resolution", "resolved_by_correction_id", "resolved_by", "resolved_at", "resolution_note"]


def export_annotations(session: Session, video: Video | str, task: str, path, *, flagged_invalid: bool = True,
                       annotation: pd.DataFrame | None = None) -> Path:
    """Write a video's effective labels as an Aff-Wild2 annotation file (core.affwild2.write_annotation).

    The format has no way to mark a flag except as an invalid frame: flagged_invalid=True (default)
    writes the frames flags keep out (open flags, "frames unusable", frames a fixing correction does not
    cover; see repo.excluded_frames) with the invalid marker, False keeps their labels.
    """
    labels = effective_labels(session, video, task, annotation)
    values = labels[LABEL_COLUMNS[task]].copy()
    if flagged_invalid:
        values.loc[labels["flagged"].to_numpy(), :] = np.nan if task == "va" else pd.NA
    path = Path(path)
    write_annotation(values, path, task)
    return path


def export_affwild2(session: Session, out_dir, task: str, videos: list[Video | str] | None = None, *,
                    flagged_invalid: bool = True) -> list[Path]:
    """Write `<out_dir>/<video key>.txt` for each video (default: every video with imported annotations
    for the task); returns the paths written."""
    if videos is None:
        videos = list(session.scalars(select(Video).where(
            Video.id.in_(select(AnnotationSet.video_id).where(AnnotationSet.task == task))).order_by(Video.key)))
    out_dir = Path(out_dir)
    written = []
    for video in videos:
        video = get_video(session, video)
        if "/" in video.key or video.key.startswith("."):
            raise ValidationError(f"video key {video.key!r} cannot be a file name")
        written.append(export_annotations(session, video, task, out_dir / f"{video.key}.txt",
                                          flagged_invalid=flagged_invalid))
    return written


def _name(reviewer: Reviewer | None) -> str | None:
    return reviewer.name if reviewer is not None else None


def _time(value) -> str | None:
    return value.isoformat() if value is not None else None


def _correction_record(c: Correction) -> dict:
    return {"id": c.id, "video": c.video.key, "task": c.task, "start_frame": c.start_frame,
            "end_frame": c.end_frame, "value": c.value, "original": c.original, "status": c.status,
            "reviewer": c.reviewer.name, "created_at": _time(c.created_at), "reviewed_by": _name(c.reviewed_by),
            "reviewed_at": _time(c.reviewed_at), "decision_comment": c.decision_comment, "note": c.note}


def _flag_record(f: Flag) -> dict:
    return {"id": f.id, "video": f.video.key, "task": f.task, "start_frame": f.start_frame,
            "end_frame": f.end_frame, "reason": f.reason, "note": f.note, "reviewer": f.reviewer.name,
            "created_at": _time(f.created_at), "resolution": f.resolution,
            "resolved_by_correction_id": f.resolved_by_correction_id, "resolved_by": _name(f.resolved_by),
            "resolved_at": _time(f.resolved_at), "resolution_note": f.resolution_note}


def _event_record(e: AuditEvent) -> dict:
    return {"id": e.id, "at": _time(e.created_at), "reviewer": e.reviewer.name, "action": e.action,
            "detail": e.detail}


def corrections_table(session: Session, video: Video | str | None = None, task: str | None = None,
                      status: str | None = None) -> pd.DataFrame:
    """One row per correction (CORRECTION_COLUMNS); value and original as JSON text."""
    return _corrections_frame([_correction_record(c) for c in list_corrections(session, video, task, status=status)])


def _corrections_frame(records: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(records, columns=CORRECTION_COLUMNS)
    for column in ("value", "original"):
        table[column] = [json.dumps(v) for v in table[column]]
    return table


def flags_table(session: Session, video: Video | str | None = None, task: str | None = None) -> pd.DataFrame:
    """One row per flag (FLAG_COLUMNS)."""
    return _flags_frame([_flag_record(f) for f in list_flags(session, video, task)])


def _flags_frame(records: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(records, columns=FLAG_COLUMNS).astype({"resolved_by_correction_id": "Int64"})


def _write(path, table: pd.DataFrame, records: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        table.to_csv(path, index=False)
    elif path.suffix.lower() == ".json":
        path.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        raise ValidationError(f"{path}: export to .csv or .json")
    return path


def export_corrections(session: Session, path, video: Video | str | None = None, task: str | None = None,
                       status: str | None = None) -> Path:
    """Write corrections to a .csv (one row each) or .json file (each with its audit trail, "events")."""
    records = [{**_correction_record(c), "events": [_event_record(e) for e in history(session, correction=c)]}
               for c in list_corrections(session, video, task, status=status)]
    return _write(path, _corrections_frame(records), records)


def export_flags(session: Session, path, video: Video | str | None = None, task: str | None = None) -> Path:
    """Write flags to a .csv (one row each) or .json file (each with its audit trail, "events")."""
    records = [{**_flag_record(f), "events": [_event_record(e) for e in history(session, flag=f)]}
               for f in list_flags(session, video, task)]
    return _write(path, _flags_frame(records), records)
