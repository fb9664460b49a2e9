"""API keys in the shared state (used with the state in PostgreSQL; a data dir keeps its JSON
file): one row per key, the record as JSON, as the file held it.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.Text, primary_key=True),
        sa.Column("record", sa.Text, nullable=False),
    )
