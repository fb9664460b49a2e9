"""Runs record the host that runs them: with state shared by workers on several machines, only
the run's own machine can tell whether its process is gone.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("run_outcomes", sa.Column("host", sa.Text))
