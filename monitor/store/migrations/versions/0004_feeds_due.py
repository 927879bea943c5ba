"""An index on the feeds' next poll time, which every claim orders and filters by.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_feeds_due", "feeds", ["next_poll_ms"])


def downgrade() -> None:
    op.drop_index("ix_feeds_due", table_name="feeds")
