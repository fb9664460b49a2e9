"""An index's manifest as Sluice kept it in SQLite before its schema was versioned.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("doc_id", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("config_fingerprint", sa.Text, nullable=False),
        sa.Column("doc_version", sa.Text, nullable=False),
        sa.Column("chunks", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("source", "doc_id"),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("dry_run", sa.Integer, nullable=False, server_default="0"),
        sa.Column("report", sa.Text),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "run_outcomes",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.run_id"), primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("pid", sa.Integer),
        sa.Column("external_id", sa.Text),
    )
    op.create_table(
        "versions",
        sa.Column("collection", sa.Text, primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("scores", sa.Text, nullable=False, server_default="{}"),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
