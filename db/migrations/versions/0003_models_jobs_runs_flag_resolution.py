"""Models and training jobs as rows; prediction runs that can be found again and reused (run key, weight
hashes, artifacts folder, who ran it); a decision comment on corrections; a flag's resolution.

Flags resolved before this revision were simply "dealt with", which let their frames back in with the
annotation: they become "annotation is right", the resolution with that effect.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RESOLUTIONS = ("fixed by correction", "annotation is right", "frames unusable")
RESOLUTION_CHECK = "resolution IS NULL OR resolution IN ({})".format(", ".join(f"'{r}'" for r in RESOLUTIONS))
FLAG_CHECKS = {
    "resolution": RESOLUTION_CHECK,
    "resolution_correction": "(resolved_by_correction_id IS NULL) OR (resolution = 'fixed by correction')",
    "resolved": "(resolved_at IS NULL) = (resolution IS NULL)",
}
RUN_COLUMNS = ("run_key", "weight_hashes", "artifacts_dir", "created_by_id")


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"))


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("architecture", sa.String(50), nullable=False),
        sa.Column("tasks", sa.JSON(), nullable=False),
        sa.Column("encoder_hash", sa.String(64), nullable=True),
        sa.Column("training", sa.JSON(), nullable=False),
        sa.Column("correction_ids", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("trained_steps", sa.Integer(), nullable=True),
        sa.Column("started_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        _fk("models", "started_by_id", "reviewers"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("content_hash", name=op.f("uq_models_content_hash")),
    )
    op.create_index(op.f("ix_models_architecture"), "models", ["architecture"])
    op.create_table(
        "training_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("preset", sa.String(50), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("started_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("progress", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("model_id", sa.Integer(), nullable=True),
        sa.Column("before_metrics", sa.JSON(), nullable=True),
        sa.Column("after_metrics", sa.JSON(), nullable=True),
        sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_training_jobs_status")),
        _fk("training_jobs", "started_by_id", "reviewers"),
        _fk("training_jobs", "model_id", "models"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_jobs")),
    )
    op.create_index(op.f("ix_training_jobs_status"), "training_jobs", ["status"])

    # batch_alter_table: plain ALTER TABLE on PostgreSQL; on SQLite, which cannot add a constraint to a
    # table, a copy of the table with its rows (env.py switches foreign keys off while it runs).
    with op.batch_alter_table("prediction_runs") as batch:
        batch.add_column(sa.Column("run_key", sa.String(100), nullable=True))
        batch.add_column(sa.Column("weight_hashes", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("artifacts_dir", sa.Text(), nullable=True))
        batch.add_column(sa.Column("created_by_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_prediction_runs_created_by_id_reviewers"), "reviewers",
                                 ["created_by_id"], ["id"])
        batch.create_index(op.f("ix_prediction_runs_run_key"), ["run_key"])
    op.execute("UPDATE prediction_runs SET weight_hashes = '{}'")
    with op.batch_alter_table("prediction_runs") as batch:
        batch.alter_column("weight_hashes", existing_type=sa.JSON(), nullable=False)

    op.add_column("corrections", sa.Column("decision_comment", sa.Text(), nullable=True))

    with op.batch_alter_table("flags") as batch:
        batch.add_column(sa.Column("resolution", sa.String(30), nullable=True))
        batch.add_column(sa.Column("resolved_by_correction_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_flags_resolved_by_correction_id_corrections"), "corrections",
                                 ["resolved_by_correction_id"], ["id"])
    op.execute("UPDATE flags SET resolution = 'annotation is right' WHERE resolved_at IS NOT NULL")
    with op.batch_alter_table("flags") as batch:
        for name, condition in FLAG_CHECKS.items():
            batch.create_check_constraint(op.f(f"ck_flags_{name}"), condition)


def downgrade() -> None:
    with op.batch_alter_table("flags") as batch:
        for name in FLAG_CHECKS:
            batch.drop_constraint(op.f(f"ck_flags_{name}"), type_="check")
        batch.drop_constraint(op.f("fk_flags_resolved_by_correction_id_corrections"), type_="foreignkey")
        batch.drop_column("resolved_by_correction_id")
        batch.drop_column("resolution")
    with op.batch_alter_table("corrections") as batch:
        batch.drop_column("decision_comment")
    with op.batch_alter_table("prediction_runs") as batch:
        batch.drop_index(op.f("ix_prediction_runs_run_key"))
        batch.drop_constraint(op.f("fk_prediction_runs_created_by_id_reviewers"), type_="foreignkey")
        for column in RUN_COLUMNS:
            batch.drop_column(column)
    op.drop_table("training_jobs")
    op.drop_table("models")
