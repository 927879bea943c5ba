"""SQLAlchemy Core tables: feeds (schedule state), items, where they were seen, the outbox."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

# Keep in step with the migrations under migrations/versions: a change here is a
# new revision there (tests compare the two).
metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# One row per configured feed: its schedule lives here, not in APScheduler, so a
# restart resumes where it was and several processes can share the work.
feeds = Table(
    "feeds",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("url", Text, nullable=False),
    Column("title", Text),
    Column("next_poll_ms", BigInteger, nullable=False),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("failures", Integer, nullable=False, default=0),
    Column("first_poll_done", Boolean, nullable=False, default=False),
    Column("last_poll_ms", BigInteger),
    Column("last_outcome", String(40)),
    Column("last_error", Text),
    Column("last_status", Integer),
    Column("lease_owner", String(200)),
    Column("lease_until_ms", BigInteger),
    Column("added_ms", BigInteger, nullable=False),
)
Index("ix_feeds_due", feeds.c.next_poll_ms)

items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False, unique=True),
    Column("url", Text, nullable=False),
    Column("entry_id", Text),
    Column("title", Text, nullable=False),
    Column("summary", Text, nullable=False, default=""),
    Column("content", Text, nullable=False, default=""),
    Column("author", Text, nullable=False, default=""),
    Column("categories", Text, nullable=False, default="[]"),  # JSON list
    Column("published_ms", BigInteger, nullable=False),
    Column("first_seen_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    # The title folded for comparison: one story in RFI's /cn and /tw editions has
    # one key (cross-edition dedupe, migration 0003).
    Column("title_key", Text),
    # Stored by 'feed-monitor import' and not yet seen in a polled feed: its first
    # sighting there records matches without alerting.
    Column("imported", Boolean, nullable=False, default=False, server_default=false()),
    Column("pruned_ms", BigInteger),  # retention emptied the body; the key stays
)
Index("ix_items_published", items.c.published_ms)
Index("ix_items_title_key", items.c.title_key, items.c.published_ms)

item_feeds = Table(
    "item_feeds",
    metadata,
    Column("item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("feed_id", String(200), primary_key=True),
    Column("first_seen_ms", BigInteger, nullable=False),
)
Index("ix_item_feeds_feed", item_feeds.c.feed_id, item_feeds.c.first_seen_ms)

# Which rules an item has matched: an update alerts only for rules new here.
matches = Table(
    "matches",
    metadata,
    Column("item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("rule", String(200), primary_key=True),
    Column("matched_ms", BigInteger, nullable=False),
    Column("alerted", Boolean, nullable=False),
)
Index("ix_matches_rule_time", matches.c.rule, matches.c.matched_ms)

# The outbox: one row per (rule, item, channel), inserted with the item.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(200), nullable=False),
    Column("item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(200), nullable=False),
    Column("keywords", Text, nullable=False, default="[]"),  # JSON list
    Column("snippet", Text, nullable=False, default=""),
    Column("status", String(20), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_ms", BigInteger, nullable=False),
    Column("next_attempt_ms", BigInteger, nullable=False),
    Column("lease_owner", String(200)),
    Column("lease_until_ms", BigInteger),
    Column("sent_ms", BigInteger),
    Column("last_error", Text),
    Column("silence_id", Integer),  # set when a silence held this alert back
    # Times 'on_update: always' re-armed this alert for an updated item.
    Column("revision", Integer, nullable=False, default=0, server_default="0"),
    UniqueConstraint("rule", "item_id", "channel", name="uq_alert_rule_item_channel"),
)
Index("ix_alerts_due", alerts.c.status, alerts.c.next_attempt_ms)
# The console's alert list: newest first, filtered by rule, channel or state (0005).
Index("ix_alerts_rule_id", alerts.c.rule, alerts.c.id)
Index("ix_alerts_channel_id", alerts.c.channel, alerts.c.id)
Index("ix_alerts_status_id", alerts.c.status, alerts.c.id)
# The outbox summed per channel and state (status, the console) from the index alone.
Index("ix_alerts_channel_state", alerts.c.channel, alerts.c.status, alerts.c.attempts)

# Silences, as in Alertmanager: alerts of a rule (and optionally one channel)
# created while a silence is active are recorded as silenced and never sent.
silences = Table(
    "silences",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(200), nullable=False),
    Column("channel", String(200)),  # None: every channel
    Column("starts_ms", BigInteger, nullable=False),
    Column("ends_ms", BigInteger, nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("created_by", String(200), nullable=False, default=""),
    Column("created_ms", BigInteger, nullable=False),
)
Index("ix_silences_rule", silences.c.rule, silences.c.ends_ms)
