"""History: title keys for cross-edition dedupe, imported and pruned items, alert revisions.

- ``items.title_key``: the item's title folded for comparison (``monitor.items.title_key``);
  indexed with the publish time, so the siblings of a story in another edition (RFI /cn
  and /tw) are one range scan. Existing items are filled in here, by a copy of the
  title key as this revision defined it (``_title_key``), so what this migration writes
  does not change when normalization changes later.
- ``items.imported``: stored by ``feed-monitor import`` and not yet seen in a
  polled feed (its first sighting there never alerts).
- ``items.pruned_ms``: when retention emptied the item's body (the key stays).
- ``alerts.revision``: how many times ``on_update: always`` re-armed the alert.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import html
import re
import unicodedata

import opencc
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BATCH = 1000
_NOT_ALNUM = re.compile(r"[\W_]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN, never batch mode: on SQLite batch mode may copy
    # the table, and dropping the old items table would cascade (foreign keys are on)
    # to item_feeds, matches and alerts.
    op.add_column("items", sa.Column("title_key", sa.Text))
    op.add_column(
        "items", sa.Column("imported", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.add_column("items", sa.Column("pruned_ms", sa.BigInteger))
    op.create_index("ix_items_title_key", "items", ["title_key", "published_ms"])
    op.add_column("alerts", sa.Column("revision", sa.Integer, nullable=False, server_default="0"))
    _fill_title_keys()


def _fill_title_keys() -> None:
    # Items stored before this revision need a key too, or a new /tw edition of a
    # story stored yesterday from /cn would not find it. Batched by id, so a large
    # database is not read into memory at once.
    t2s = opencc.OpenCC("t2s")
    conn = op.get_bind()
    items = sa.table(
        "items",
        sa.column("id", sa.Integer),
        sa.column("title", sa.Text),
        sa.column("title_key", sa.Text),
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.select(items.c.id, items.c.title)
            .where(items.c.id > last)
            .order_by(items.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        updates = [{"_id": r.id, "title_key": _title_key(r.title, t2s)} for r in rows]
        conn.execute(
            items.update()
            .where(items.c.id == sa.bindparam("_id"))
            .values(title_key=sa.bindparam("title_key")),
            updates,
        )
        last = rows[-1].id


def _title_key(title: str, t2s: opencc.OpenCC) -> str | None:
    """The title key of revision 0003: the title with entities decoded, NFKC, case-folded,
    Traditional to Simplified (OpenCC t2s), letters and digits only; None under 4
    characters, at most 200."""
    text = html.unescape(title) if "&" in title else title
    folded = unicodedata.normalize("NFKC", text).casefold()
    if not folded.isascii():
        # OpenCC takes UTF-8: a lone surrogate becomes U+FFFD (not a letter either).
        folded = t2s.convert(_SURROGATE.sub("\ufffd", folded))
    key = _NOT_ALNUM.sub("", folded)[:200]
    return key if len(key) >= 4 else None


def downgrade() -> None:
    # Not in batch mode either (see upgrade); SQLite 3.35+ drops columns in place.
    op.drop_column("alerts", "revision")
    op.drop_index("ix_items_title_key", "items")
    for name in ("pruned_ms", "imported", "title_key"):
        op.drop_column("items", name)
