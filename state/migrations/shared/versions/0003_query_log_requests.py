"""The query log's index: one row per logged `/retrieve` answer, saying who asked, what it
answered and which replica's Parquet file holds the whole record. A request id is not a key: a
client may send its own, so two answers can share one.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "query_log_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("key_id", sa.Text),
        sa.Column("tenants", sa.Text),
        sa.Column("index_name", sa.Text),
        sa.Column("chunk_ids", sa.Text, nullable=False),
        sa.Column("doc_ids", sa.Text, nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("file", sa.Text, nullable=False),
    )
    op.create_index("query_log_requests_request", "query_log_requests", ["request_id"])
    op.create_index("query_log_requests_time", "query_log_requests", ["time"])
    op.create_index("query_log_requests_file", "query_log_requests", ["host", "file"])
