"""The annotation audit: its runs and their suggested segments, and audit events about a suggestion (a
reviewer confirming or dismissing it) beside those about flags and corrections.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TWO_SUBJECTS = "(correction_id IS NULL) <> (flag_id IS NULL)"
THREE_SUBJECTS = ("(CASE WHEN correction_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN flag_id IS NULL THEN 0 ELSE 1 END)"
                  " + (CASE WHEN suggestion_id IS NULL THEN 0 ELSE 1 END) = 1")


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"))


def upgrade() -> None:
    op.create_table(
        "audit_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(10), nullable=False),
        sa.Column("tasks", sa.JSON(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("encoder", sa.JSON(), nullable=False),
        sa.Column("folds", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("annotated_frames", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_runs")),
    )
    op.create_table(
        "audit_suggestions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("video_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("start_frame", sa.Integer(), nullable=False),
        sa.Column("end_frame", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("suggested", sa.JSON(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("reviewed_by_id", sa.Integer(), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("flag_id", sa.Integer(), nullable=True),
        sa.Column("correction_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("task IN ('va', 'expr', 'au')", name=op.f("ck_audit_suggestions_task")),
        sa.CheckConstraint("status IN ('open', 'confirmed', 'dismissed')", name=op.f("ck_audit_suggestions_status")),
        sa.CheckConstraint("start_frame >= 0 AND end_frame >= start_frame", name=op.f("ck_audit_suggestions_frame_range")),
        sa.CheckConstraint("(status = 'open') = (reviewed_at IS NULL)", name=op.f("ck_audit_suggestions_reviewed")),
        sa.CheckConstraint("flag_id IS NULL OR status = 'confirmed'", name=op.f("ck_audit_suggestions_confirmed_flag")),
        _fk("audit_suggestions", "run_id", "audit_runs"),
        _fk("audit_suggestions", "video_id", "videos"),
        _fk("audit_suggestions", "reviewed_by_id", "reviewers"),
        _fk("audit_suggestions", "flag_id", "flags"),
        _fk("audit_suggestions", "correction_id", "corrections"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_suggestions")),
    )
    op.create_index(op.f("ix_audit_suggestions_video_id"), "audit_suggestions", ["video_id"])
    op.create_index(op.f("ix_audit_suggestions_run_id_status_score"), "audit_suggestions",
                    ["run_id", "status", "score"])
    op.create_index(op.f("ix_audit_suggestions_run_id_task_kind"), "audit_suggestions", ["run_id", "task", "kind"])
    # batch_alter_table: plain ALTER TABLE on PostgreSQL, a copy of the table with its rows on SQLite
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("suggestion_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_audit_events_suggestion_id_audit_suggestions"), "audit_suggestions",
                                 ["suggestion_id"], ["id"])
        batch.create_index(op.f("ix_audit_events_suggestion_id"), ["suggestion_id"])
        batch.drop_constraint(op.f("ck_audit_events_one_subject"), type_="check")
        batch.create_check_constraint(op.f("ck_audit_events_one_subject"), THREE_SUBJECTS)


def downgrade() -> None:
    op.execute("DELETE FROM audit_events WHERE suggestion_id IS NOT NULL")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_constraint(op.f("ck_audit_events_one_subject"), type_="check")
        batch.create_check_constraint(op.f("ck_audit_events_one_subject"), TWO_SUBJECTS)
        batch.drop_index(op.f("ix_audit_events_suggestion_id"))
        batch.drop_constraint(op.f("fk_audit_events_suggestion_id_audit_suggestions"), type_="foreignkey")
        batch.drop_column("suggestion_id")
    op.drop_table("audit_suggestions")
    op.drop_table("audit_runs")
