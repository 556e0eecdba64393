"""Annotation sets (immutable imports of Aff-Wild2 files) and the effective labels built from them:
annotations with accepted corrections applied and flagged frames marked -- what training, export and
evaluation read."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core.affwild2 import LABEL_COLUMNS, read_annotation
from core.labels import EXPRESSIONS
from db.models import AnnotationSet, AuditEvent, Correction, Flag, Video
from db.repo.common import ValidationError, _insert_once, _task, _text
from db.repo.videos import file_sha256, get_video


def import_annotations(session: Session, video: Video | str, task: str, path, version: str | None = None,
                       labels: pd.DataFrame | None = None) -> AnnotationSet:
    """Store an Aff-Wild2 annotation file (read with core.affwild2.read_annotation) for a video.

    The file's SHA-256 identifies the version: importing the same file again returns the stored set; a
    changed file becomes a new set, and the newest set is the one effective_labels() uses. A malformed
    file, or one with more lines than the video has frames (refused at its first surplus line), raises
    AnnotationError naming the file by its base name. `labels`: the file as read_annotation read it
    already (the web app reads an upload once), at most the video's frames long.
    """
    video, task = get_video(session, video), _task(task)
    path = Path(path)
    if labels is None:
        labels = read_annotation(path, task, max_frames=video.frame_count)
    elif len(labels) > video.frame_count:
        raise ValidationError(f"{path.name} has {len(labels)} annotated frames, but the video has {video.frame_count}")
    return add_annotation_set(session, video, task, labels.to_numpy(dtype="float64", na_value=np.nan), path,
                              file_sha256(path), version)


def add_annotation_set(session: Session, video: Video | str, task: str, values: np.ndarray, source_path,
                       sha256: str, version: str | None = None) -> AnnotationSet:
    """Store labels read from any file (frames x the task's label columns, NaN for unannotated, at most
    the video's frame count) as an annotation set; sha256 identifies the content, as in
    import_annotations (the same content again returns the stored set)."""
    video, task = get_video(session, video), _task(task)
    values = np.asarray(values, dtype="float64")
    if values.ndim != 2 or values.shape[1] != len(LABEL_COLUMNS[task]) or not 0 < len(values) <= video.frame_count:
        raise ValidationError(f"{task} labels of shape {values.shape} do not fit video {video.key!r} "
                              f"(at most {video.frame_count} frames x {len(LABEL_COLUMNS[task])} columns)")
    allowed = (values >= -1) & (values <= 1) if task == "va" else \
        np.isin(values, range(len(EXPRESSIONS)) if task == "expr" else (0, 1))
    if not (allowed | np.isnan(values)).all():
        raise ValidationError(f"{task} labels hold values outside the label space (first: "
                              f"{values[~(allowed | np.isnan(values))][0]:g})")
    version = _text(version, "version", 100) if version is not None else None

    def find():
        return session.scalar(select(AnnotationSet).where(
            AnnotationSet.video_id == video.id, AnnotationSet.task == task, AnnotationSet.sha256 == sha256))

    return find() or _insert_once(session, AnnotationSet(
        video_id=video.id, task=task, source_path=str(source_path), sha256=sha256, version=version,
        frame_count=len(values), labels=AnnotationSet.encode_labels(values, task)), find)


def latest_annotation_set(session: Session, video: Video | str, task: str) -> AnnotationSet | None:
    """The newest imported annotation set of a video and task, or None."""
    video, task = get_video(session, video), _task(task)
    return session.scalar(select(AnnotationSet).where(AnnotationSet.video_id == video.id, AnnotationSet.task == task)
                          .order_by(AnnotationSet.id.desc()).limit(1))


def labels_stamp(session: Session, video: Video | str) -> tuple[int | None, int | None]:
    """What a video's effective labels depend on: (its newest annotation set, its newest audit event);
    while it is unchanged, effective labels read before are still right."""
    video_id = get_video(session, video).id
    newest_set = session.scalar(select(func.max(AnnotationSet.id)).where(AnnotationSet.video_id == video_id))
    newest_event = session.scalar(
        select(func.max(AuditEvent.id)).outerjoin(Correction, AuditEvent.correction_id == Correction.id)
        .outerjoin(Flag, AuditEvent.flag_id == Flag.id)
        .where(or_(Correction.video_id == video_id, Flag.video_id == video_id)))
    return newest_set, newest_event


def annotation_frame(annotation_set: AnnotationSet) -> pd.DataFrame:
    """An annotation set as core.affwild2.read_annotation returns its file (index "frame")."""
    return _labels_frame(annotation_set.labels_array(), annotation_set.task)


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
        return annotation[columns].to_numpy(dtype="float64", na_value=np.nan, copy=True), None
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
    """The labels to train, export and evaluate on: annotations with accepted corrections applied (later
    acceptances win), and the frames a flag keeps out marked `flagged` (see excluded_frames()).

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
    out = _labels_frame(values, task)
    out["correction_id"] = pd.Series(correction_ids, index=out.index, dtype="Int64").mask(correction_ids < 0)
    by_reason = excluded_frames(session, video, task, len(out))
    flagged = np.zeros(len(out), dtype=bool)
    for mask in by_reason.values():
        flagged |= mask
    reasons = np.full(len(out), "", dtype=object)
    for i in np.flatnonzero(flagged):
        reasons[i] = "; ".join(r for r in sorted(by_reason) if by_reason[r][i])
    out["flagged"] = flagged
    out["flag_reasons"] = reasons
    return out


def excluded_frames(session: Session, video: Video, task: str, n: int) -> dict[str, np.ndarray]:
    """Frames 0..n-1 that flags keep out of training and export, as {flag reason: mask}.

    An open flag keeps all its frames out, and so does one resolved "frames unusable"; "annotation is
    right" lets them all back in. "fixed by correction" lets back in the frames its correction labels,
    while that correction is accepted: frames the correction does not cover were never fixed.
    """
    flags = session.scalars(select(Flag).where(
        Flag.video_id == video.id, Flag.task == task,
        or_(Flag.resolution.is_(None), Flag.resolution != "annotation is right")))
    by_reason: dict[str, np.ndarray] = {}
    for flag in flags:
        mask = np.zeros(n, dtype=bool)
        mask[flag.start_frame:flag.end_frame + 1] = True
        fix = flag.resolved_by_correction
        if fix is not None and fix.status == "accepted":
            mask[fix.start_frame:fix.end_frame + 1] = False
        by_reason[flag.reason] = by_reason.get(flag.reason, np.zeros(n, dtype=bool)) | mask
    return by_reason
