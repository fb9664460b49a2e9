"""Each API key's rate-limit bucket (GCRA: the time the bucket is next full).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("tat", sa.Float, nullable=False),
    )
