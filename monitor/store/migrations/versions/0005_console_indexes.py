"""Indexes the web console reads by: alerts newest first per rule, channel and state; the
outbox counted per channel and state (a covering index: 100,000 alerts counted in about
10 ms instead of 90); matches per rule over time; the items of one feed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_alerts_rule_id", "alerts", ["rule", "id"])
    op.create_index("ix_alerts_channel_id", "alerts", ["channel", "id"])
    op.create_index("ix_alerts_status_id", "alerts", ["status", "id"])
    op.create_index("ix_alerts_channel_state", "alerts", ["channel", "status", "attempts"])
    op.create_index("ix_matches_rule_time", "matches", ["rule", "matched_ms"])
    op.create_index("ix_item_feeds_feed", "item_feeds", ["feed_id", "first_seen_ms"])


def downgrade() -> None:
    op.drop_index("ix_item_feeds_feed", table_name="item_feeds")
    op.drop_index("ix_matches_rule_time", table_name="matches")
    op.drop_index("ix_alerts_channel_state", table_name="alerts")
    op.drop_index("ix_alerts_status_id", table_name="alerts")
    op.drop_index("ix_alerts_channel_id", table_name="alerts")
    op.drop_index("ix_alerts_rule_id", table_name="alerts")
