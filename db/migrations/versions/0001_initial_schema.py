"""Initial schema: videos, reviewers, annotation sets, prediction runs, flags, corrections, audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TASK_CHECK = "task IN ('va', 'expr', 'au')"
RANGE_CHECK = "start_frame >= 0 AND end_frame >= start_frame"


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), nullable=False)


def _created_at(name: str = "created_at") -> sa.Column:
    return sa.Column(name, sa.DateTime(), nullable=False)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"))


def upgrade() -> None:
    op.create_table(
        "reviewers",
        _id(),
        sa.Column("name", sa.String(100), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviewers")),
        sa.UniqueConstraint("name", name=op.f("uq_reviewers_name")),
    )
    op.create_table(
        "videos",
        _id(),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("frame_count", sa.Integer(), nullable=False),
        sa.Column("fps", sa.Float(), nullable=False),
        _created_at(),
        sa.CheckConstraint("fps > 0", name=op.f("ck_videos_fps")),
        sa.CheckConstraint("frame_count > 0", name=op.f("ck_videos_frame_count")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_videos")),
        sa.UniqueConstraint("key", name=op.f("uq_videos_key")),
    )
    op.create_table(
        "annotation_sets",
        _id(),
        sa.Column("video_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(8), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("version", sa.String(100), nullable=True),
        sa.Column("frame_count", sa.Integer(), nullable=False),
        sa.Column("labels", sa.LargeBinary(), nullable=False),
        _created_at("imported_at"),
        sa.CheckConstraint(TASK_CHECK, name=op.f("ck_annotation_sets_task")),
        _fk("annotation_sets", "video_id", "videos"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotation_sets")),
        sa.UniqueConstraint("video_id", "task", "sha256", name=op.f("uq_annotation_sets_video_id_task_sha256")),
    )
    op.create_index(op.f("ix_annotation_sets_video_id"), "annotation_sets", ["video_id"])
    op.create_table(
        "prediction_runs",
        _id(),
        sa.Column("video_id", sa.Integer(), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("weights", sa.JSON(), nullable=False),
        sa.Column("device", sa.String(50), nullable=False),
        sa.Column("table_path", sa.Text(), nullable=False),
        sa.Column("untrained", sa.Boolean(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        _created_at(),
        _fk("prediction_runs", "video_id", "videos"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prediction_runs")),
    )
    op.create_index(op.f("ix_prediction_runs_video_id"), "prediction_runs", ["video_id"])
    op.create_table(
        "flags",
        _id(),
        sa.Column("video_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(8), nullable=False),
        sa.Column("start_frame", sa.Integer(), nullable=False),
        sa.Column("end_frame", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(50), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        _created_at(),
        sa.Column("idempotency_key", sa.String(100), nullable=False),
        sa.CheckConstraint(TASK_CHECK, name=op.f("ck_flags_task")),
        sa.CheckConstraint(RANGE_CHECK, name=op.f("ck_flags_frame_range")),
        _fk("flags", "reviewer_id", "reviewers"),
        _fk("flags", "video_id", "videos"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flags")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_flags_idempotency_key")),
    )
    op.create_index(op.f("ix_flags_video_id_task"), "flags", ["video_id", "task"])
    op.create_table(
        "corrections",
        _id(),
        sa.Column("video_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(8), nullable=False),
        sa.Column("start_frame", sa.Integer(), nullable=False),
        sa.Column("end_frame", sa.Integer(), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("original", sa.JSON(), nullable=True),
        sa.Column("annotation_set_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("reviewed_by_id", sa.Integer(), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(), nullable=True),
        _created_at(),
        sa.Column("idempotency_key", sa.String(100), nullable=False),
        sa.CheckConstraint("status IN ('proposed', 'accepted', 'rejected')", name=op.f("ck_corrections_status")),
        sa.CheckConstraint(TASK_CHECK, name=op.f("ck_corrections_task")),
        sa.CheckConstraint("reviewed_by_id IS NULL OR reviewed_by_id <> reviewer_id",
                           name=op.f("ck_corrections_second_reviewer")),
        sa.CheckConstraint(RANGE_CHECK, name=op.f("ck_corrections_frame_range")),
        _fk("corrections", "annotation_set_id", "annotation_sets"),
        _fk("corrections", "reviewed_by_id", "reviewers"),
        _fk("corrections", "reviewer_id", "reviewers"),
        _fk("corrections", "video_id", "videos"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_corrections")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_corrections_idempotency_key")),
    )
    op.create_index(op.f("ix_corrections_video_id_task_status"), "corrections", ["video_id", "task", "status"])
    op.create_table(
        "audit_events",
        _id(),
        _created_at(),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("correction_id", sa.Integer(), nullable=True),
        sa.Column("flag_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.CheckConstraint("(correction_id IS NULL) <> (flag_id IS NULL)", name=op.f("ck_audit_events_one_subject")),
        _fk("audit_events", "correction_id", "corrections"),
        _fk("audit_events", "flag_id", "flags"),
        _fk("audit_events", "reviewer_id", "reviewers"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_correction_id"), "audit_events", ["correction_id"])
    op.create_index(op.f("ix_audit_events_flag_id"), "audit_events", ["flag_id"])


def downgrade() -> None:
    for table in ("audit_events", "corrections", "flags", "prediction_runs", "annotation_sets", "videos",
                  "reviewers"):
        op.drop_table(table)
