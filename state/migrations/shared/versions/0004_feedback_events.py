"""Feedback events already taken, by the key that sent them and the event id it gave: `POST
/feedback` is idempotent on that id, across every API process on this state.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "feedback_events",
        sa.Column("key_id", sa.Text, nullable=False, comment="'' where keys are not required"),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("items", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("key_id", "event_id"),
    )
    op.create_index("feedback_events_time", "feedback_events", ["time"])
