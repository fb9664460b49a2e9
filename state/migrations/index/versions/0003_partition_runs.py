"""A partition's run (one part of a source run split over workers) records the run it is part
of, so the parent sums them and `sluice runs` lists the parent alone.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("run_outcomes", sa.Column("parent_run_id", sa.Integer))
    op.add_column("run_outcomes", sa.Column("partition", sa.Integer))
