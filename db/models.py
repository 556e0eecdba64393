"""Tables of the review database (SQLAlchemy 2.x typed models).

Rules that protect reviewers' work are written into the schema as well as into db/repo.py: a flag or a
correction carries a UNIQUE idempotency key (a double click stores one row), frame ranges are checked
(0 <= start <= end), a correction can never be reviewed by its own author, and an audit event belongs to
exactly one flag or correction. Nothing a reviewer wrote is overwritten: a correction's value never
changes (a new value is a new correction), annotation sets are immutable, and each change of a
correction's status or a flag's resolution is also kept as an AuditEvent.

Per-frame annotation labels are stored as one compact blob per imported file (AnnotationSet.labels, a
zlib-compressed .npy array) rather than one row per frame: a file is always read, exported and corrected
as a whole video (up to ~50k frames x 12 AUs: 0.6 MB before compression), a frame-range lookup is a
slice of that array, and a per-frame table would hold tens of millions of rows for the full dataset. The
rows people create (flags and corrections) keep their ranges in columns, so range queries on them are SQL.
"""
from __future__ import annotations

import io
import zlib
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from core.labels import TASKS

FLAG_REASONS = ("wrong label", "ambiguous", "no face", "occluded", "annotation lag", "wrong subject", "other")
STATUSES = ("proposed", "accepted", "rejected")
FLAG_RESOLUTIONS = ("fixed by correction", "annotation is right", "frames unusable")
JOB_STATUSES = ("queued", "running", "done", "failed")
SUGGESTION_STATUSES = ("open", "confirmed", "dismissed")

_TASK_CHECK = "task IN ({})".format(", ".join(f"'{t}'" for t in TASKS))
_STATUS_CHECK = "status IN ({})".format(", ".join(f"'{s}'" for s in STATUSES))
_RESOLUTION_CHECK = "resolution IS NULL OR resolution IN ({})".format(", ".join(f"'{r}'" for r in FLAG_RESOLUTIONS))
_JOB_STATUS_CHECK = "status IN ({})".format(", ".join(f"'{s}'" for s in JOB_STATUSES))
_SUGGESTION_STATUS_CHECK = "status IN ({})".format(", ".join(f"'{s}'" for s in SUGGESTION_STATUSES))
# an audit event belongs to exactly one flag, correction or audit suggestion
ONE_SUBJECT_CHECK = ("(CASE WHEN correction_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN flag_id IS NULL THEN 0 ELSE 1 END)"
                     " + (CASE WHEN suggestion_id IS NULL THEN 0 ELSE 1 END) = 1")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend (stored as naive UTC, read back with tzinfo=UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware one")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })


class Video(Base):
    """A video: an Aff-Wild2 id (e.g. "10-60-1280x720_right") or "sha256:<hex>" of an uploaded file."""

    __tablename__ = "videos"
    __table_args__ = (
        CheckConstraint("frame_count > 0", name="frame_count"),
        CheckConstraint("fps > 0", name="fps"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str | None] = mapped_column(String(64))
    frame_count: Mapped[int]
    fps: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"Video(id={self.id}, key={self.key!r}, frames={self.frame_count}, fps={self.fps:g})"


class Reviewer(Base):
    __tablename__ = "reviewers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"Reviewer(id={self.id}, name={self.name!r})"


class AnnotationSet(Base):
    """One imported Aff-Wild2 annotation file (immutable; a changed file is imported as a new set)."""

    __tablename__ = "annotation_sets"
    __table_args__ = (
        UniqueConstraint("video_id", "task", "sha256"),
        CheckConstraint(_TASK_CHECK, name="task"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    video_id: Mapped[int] = mapped_column(ForeignKey("videos.id"), index=True)
    task: Mapped[str] = mapped_column(String(8))
    source_path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))     # of the file's bytes: which version was imported
    version: Mapped[str | None] = mapped_column(String(100))  # free label, e.g. "ABAW6 2024"
    frame_count: Mapped[int]
    labels: Mapped[bytes] = mapped_column(LargeBinary)  # zlib-compressed .npy: see encode_labels()
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    video: Mapped[Video] = relationship(lazy="joined")

    def labels_array(self) -> np.ndarray:
        """(frame_count, columns) float64, NaN where the file marks a frame invalid."""
        stored = np.load(io.BytesIO(zlib.decompress(self.labels)), allow_pickle=False)
        if stored.dtype.kind == "f":
            return stored.astype("float64")
        return np.where(stored < 0, np.nan, stored.astype("float64"))

    @staticmethod
    def encode_labels(values: np.ndarray, task: str) -> bytes:
        """(frames, columns) float with NaN for invalid -> bytes: VA as float64 (exact), EXPR/AU as int8
        with -1 for invalid; compressed, since labels repeat for long stretches."""
        values = np.asarray(values, dtype="float64")
        if task != "va":
            values = np.where(np.isnan(values), -1, values).astype("int8")
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(values), allow_pickle=False)
        return zlib.compress(buffer.getvalue(), 6)


class PredictionRun(Base):
    """One analysis of a video. Its outputs are files under the app's data directory (artifacts_dir:
    table.parquet, faces.npz, clip.npy; table_path: the table itself), both relative to that directory
    so that a moved data directory or another server sharing it still finds them. run_key is the
    caller's content key (video, models, weight hashes, settings): an analysis with the same key can
    reuse this run instead of decoding the video again."""

    __tablename__ = "prediction_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    video_id: Mapped[int] = mapped_column(ForeignKey("videos.id"), index=True)
    run_key: Mapped[str | None] = mapped_column(String(100), index=True)
    models: Mapped[dict] = mapped_column(JSON)          # name -> {source, untrained, tasks, ...}
    weights: Mapped[dict] = mapped_column(JSON)         # name -> weight spec (file, hf:// id, tag) or null
    weight_hashes: Mapped[dict] = mapped_column(JSON, default=dict)   # name -> sha256 of the weights, or null
    device: Mapped[str] = mapped_column(String(50))
    table_path: Mapped[str] = mapped_column(Text)
    artifacts_dir: Mapped[str | None] = mapped_column(Text)
    untrained: Mapped[bool]
    details: Mapped[dict] = mapped_column(JSON)         # the pipeline's run metadata (timings, video info)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("reviewers.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    video: Mapped[Video] = relationship(lazy="joined")
    created_by: Mapped[Reviewer | None] = relationship(lazy="joined")


class Flag(Base):
    """A reviewer's mark on frames [start_frame, end_frame] (inclusive) of one task of a video, open until
    resolved with one of FLAG_RESOLUTIONS ("fixed by correction" names the accepted correction)."""

    __tablename__ = "flags"
    __table_args__ = (
        CheckConstraint(_TASK_CHECK, name="task"),
        CheckConstraint("start_frame >= 0 AND end_frame >= start_frame", name="frame_range"),
        CheckConstraint(_RESOLUTION_CHECK, name="resolution"),
        CheckConstraint("(resolved_by_correction_id IS NULL) OR (resolution = 'fixed by correction')",
                        name="resolution_correction"),
        CheckConstraint("(resolved_at IS NULL) = (resolution IS NULL)", name="resolved"),
        Index(None, "video_id", "task"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    video_id: Mapped[int] = mapped_column(ForeignKey("videos.id"))
    task: Mapped[str] = mapped_column(String(8))
    start_frame: Mapped[int]
    end_frame: Mapped[int]
    reason: Mapped[str] = mapped_column(String(50))
    note: Mapped[str] = mapped_column(Text, default="")
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("reviewers.id"))
    resolution: Mapped[str | None] = mapped_column(String(30))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    resolved_by_correction_id: Mapped[int | None] = mapped_column(ForeignKey("corrections.id"))

    video: Mapped[Video] = relationship(lazy="joined")
    reviewer: Mapped[Reviewer] = relationship(foreign_keys=[reviewer_id], lazy="joined")
    resolved_by: Mapped[Reviewer | None] = relationship(foreign_keys=[resolved_by_id], lazy="joined")
    resolved_by_correction: Mapped[Correction | None] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return (f"Flag(id={self.id}, video={self.video_id}, {self.task} {self.start_frame}-{self.end_frame}, "
                f"{self.reason!r})")


class Correction(Base):
    """A corrected label for frames [start_frame, end_frame] (inclusive), proposed by one reviewer and
    accepted or rejected by another. `value` maps label columns (valence/arousal, expression, AU names) to
    the new value; `original` maps the same columns to the per-frame values it replaces (None: invalid).
    reviewed_by/reviewed_at/decision_comment describe the current decision (after a revision: the
    reviser, when, and the reason); every earlier decision stays in the audit trail."""

    __tablename__ = "corrections"
    __table_args__ = (
        CheckConstraint(_TASK_CHECK, name="task"),
        CheckConstraint(_STATUS_CHECK, name="status"),
        CheckConstraint("start_frame >= 0 AND end_frame >= start_frame", name="frame_range"),
        CheckConstraint("reviewed_by_id IS NULL OR reviewed_by_id <> reviewer_id", name="second_reviewer"),
        Index(None, "video_id", "task", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    video_id: Mapped[int] = mapped_column(ForeignKey("videos.id"))
    task: Mapped[str] = mapped_column(String(8))
    start_frame: Mapped[int]
    end_frame: Mapped[int]
    value: Mapped[dict] = mapped_column(JSON)
    original: Mapped[dict | None] = mapped_column(JSON)
    annotation_set_id: Mapped[int | None] = mapped_column(ForeignKey("annotation_sets.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id"))
    status: Mapped[str] = mapped_column(String(10), default="proposed")
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("reviewers.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)

    video: Mapped[Video] = relationship(lazy="joined")
    reviewer: Mapped[Reviewer] = relationship(foreign_keys=[reviewer_id], lazy="joined")
    reviewed_by: Mapped[Reviewer | None] = relationship(foreign_keys=[reviewed_by_id], lazy="joined")

    def __repr__(self) -> str:
        return (f"Correction(id={self.id}, video={self.video_id}, {self.task} {self.start_frame}-"
                f"{self.end_frame}, {self.value}, {self.status})")


class AuditEvent(Base):
    """One change to a flag, a correction or an audit suggestion, never updated or deleted: the audit trail."""

    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint(ONE_SUBJECT_CHECK, name="one_subject"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id"))
    action: Mapped[str] = mapped_column(String(20))     # flagged, resolved, proposed, accepted, rejected, revised
    correction_id: Mapped[int | None] = mapped_column(ForeignKey("corrections.id"), index=True)
    flag_id: Mapped[int | None] = mapped_column(ForeignKey("flags.id"), index=True)
    suggestion_id: Mapped[int | None] = mapped_column(ForeignKey("audit_suggestions.id"), index=True)
    detail: Mapped[dict] = mapped_column(JSON)          # status before/after, comment, the values involved

    reviewer: Mapped[Reviewer] = relationship(lazy="joined")

    def __repr__(self) -> str:
        subject = (f"correction {self.correction_id}" if self.correction_id else
                   f"flag {self.flag_id}" if self.flag_id else f"suggestion {self.suggestion_id}")
        return f"AuditEvent(id={self.id}, {self.action} {subject} by reviewer {self.reviewer_id})"


class PromptSet(Base):
    """A saved CLIP prompt set (same fields as core.models.clip.PromptSet). Saving changed content under
    an existing name adds a new version; older versions stay."""

    __tablename__ = "prompt_sets"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        UniqueConstraint("name", "content_hash"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int]
    templates: Mapped[list] = mapped_column(JSON)
    classes: Mapped[dict] = mapped_column(JSON)         # expression name -> list of phrasings
    content_hash: Mapped[str] = mapped_column(String(64))
    author_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    author: Mapped[Reviewer] = relationship(lazy="joined")

    def to_dict(self) -> dict:
        """The form core.models.clip.prompt_set() accepts: name, templates, classes."""
        return {"name": self.name, "templates": list(self.templates),
                "classes": {c: list(p) for c, p in self.classes.items()}}


class ModelRecord(Base):
    """A checkpoint the app can analyse with, identified by the SHA-256 of its file: where it is, what it
    is (architecture, tasks, the encoder weights an LSTM or adapter was trained on), how it was trained
    (preset, steps, epochs, frames seen, data summary, the accepted corrections used) and its validation
    metrics. trained_steps says how far training went, so a handful of steps never looks finished."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    architecture: Mapped[str] = mapped_column(String(50), index=True)
    tasks: Mapped[list] = mapped_column(JSON)
    encoder_hash: Mapped[str | None] = mapped_column(String(64))
    training: Mapped[dict] = mapped_column(JSON, default=dict)
    correction_ids: Mapped[list] = mapped_column(JSON, default=list)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    trained_steps: Mapped[int | None]
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("reviewers.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    started_by: Mapped[Reviewer | None] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return f"ModelRecord(id={self.id}, {self.name!r}, {self.architecture}, sha256 {self.content_hash[:12]})"


class TrainingJob(Base):
    """A retraining run in its own process: queued -> running -> done or failed, never back. progress is
    what the process last reported (epoch, epochs, step, steps, loss, eta_s, updated_at). pid, host and
    process_started (the process's start time in clock ticks after boot, where Linux's /proc says) name
    the process, so that a job whose process died can be told from one that runs (db.repo.reap_dead_jobs)."""

    __tablename__ = "training_jobs"
    __table_args__ = (CheckConstraint(_JOB_STATUS_CHECK, name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    preset: Mapped[str] = mapped_column(String(50))
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(10), default="queued", index=True)
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("reviewers.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pid: Mapped[int | None]
    host: Mapped[str | None] = mapped_column(String(255))
    process_started: Mapped[int | None] = mapped_column(BigInteger)
    progress: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    before_metrics: Mapped[dict | None] = mapped_column(JSON)
    after_metrics: Mapped[dict | None] = mapped_column(JSON)

    started_by: Mapped[Reviewer | None] = relationship(lazy="joined")
    model: Mapped[ModelRecord | None] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return f"TrainingJob(id={self.id}, {self.preset}, {self.status})"


class AuditRun(Base):
    """One run of the annotation audit (python -m training audit): its settings, the encoder whose
    embeddings the fold models trained on, the videos of each fold, and the out-of-fold metrics."""

    __tablename__ = "audit_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    split: Mapped[str] = mapped_column(String(10))
    tasks: Mapped[list] = mapped_column(JSON)
    settings: Mapped[dict] = mapped_column(JSON)
    encoder: Mapped[dict] = mapped_column(JSON)
    folds: Mapped[dict] = mapped_column(JSON)
    metrics: Mapped[dict] = mapped_column(JSON)
    annotated_frames: Mapped[dict] = mapped_column(JSON)     # task -> frames audited
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"AuditRun(id={self.id}, {self.split} {'+'.join(self.tasks)}, {len(self.folds)} folds)"


class AuditSuggestion(Base):
    """A stretch [start_frame, end_frame] of one task of a video that an audit run suggests is wrongly
    annotated: its kind (label, offset, sign, lag, stuck: core/audit.py), score, the label it suggests, and
    what a reviewer made of it (open, confirmed: then the flag and the optional proposed correction it
    became; dismissed)."""

    __tablename__ = "audit_suggestions"
    __table_args__ = (
        CheckConstraint(_TASK_CHECK, name="task"),
        CheckConstraint(_SUGGESTION_STATUS_CHECK, name="status"),
        CheckConstraint("start_frame >= 0 AND end_frame >= start_frame", name="frame_range"),
        CheckConstraint("(status = 'open') = (reviewed_at IS NULL)", name="reviewed"),
        CheckConstraint("flag_id IS NULL OR status = 'confirmed'", name="confirmed_flag"),
        Index(None, "run_id", "status", "score"),
        Index(None, "run_id", "task", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("audit_runs.id"))
    video_id: Mapped[int] = mapped_column(ForeignKey("videos.id"), index=True)
    task: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(20))
    start_frame: Mapped[int]
    end_frame: Mapped[int]
    score: Mapped[float] = mapped_column(Float)
    suggested: Mapped[dict] = mapped_column(JSON)
    detail: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(10), default="open")
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("reviewers.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(Text)
    flag_id: Mapped[int | None] = mapped_column(ForeignKey("flags.id"))
    correction_id: Mapped[int | None] = mapped_column(ForeignKey("corrections.id"))

    run: Mapped[AuditRun] = relationship(lazy="joined")
    video: Mapped[Video] = relationship(lazy="joined")
    reviewed_by: Mapped[Reviewer | None] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return (f"AuditSuggestion(id={self.id}, video={self.video_id}, {self.task} {self.kind} "
                f"{self.start_frame}-{self.end_frame}, score {self.score:.3f}, {self.status})")
