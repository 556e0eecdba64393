"""CLIP prompt sets (saved and reused by the web app), and resolving a flag (who, when, why).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FLAG_COLUMNS = ("resolved_at", "resolved_by_id", "resolution_note")


def upgrade() -> None:
    op.create_table(
        "prompt_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("templates", sa.JSON(), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["author_id"], ["reviewers.id"], name=op.f("fk_prompt_sets_author_id_reviewers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_sets")),
        sa.UniqueConstraint("name", "content_hash", name=op.f("uq_prompt_sets_name_content_hash")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_prompt_sets_name_version")),
    )
    # Plain ADD COLUMN keeps the existing flags rows where they are (no table copy). SQLite cannot add a
    # constraint to an existing table, so there the reference is declared inline with the column.
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column("flags", sa.Column("resolved_at", sa.DateTime(), nullable=True))
    op.add_column("flags", sa.Column("resolved_by_id", sa.Integer(), sa.ForeignKey("reviewers.id"), nullable=True),
                  inline_references=sqlite)
    op.add_column("flags", sa.Column("resolution_note", sa.Text(), nullable=True))

def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("flags") as batch:
            for column in FLAG_COLUMNS:
                batch.drop_column(column)
    else:
        for column in FLAG_COLUMNS:
            op.drop_column("flags", column)
    op.drop_table("prompt_sets")
