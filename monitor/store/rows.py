"""How records are written to and read from their rows, shared by the storage parts:
item values and items read back, feed rows, the feeds an item was seen in, lookups by key,
the pruned-keys horizon in ``meta``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Integer, Select, String, Text, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY

from monitor.items import title_key
from monitor.store.schema import item_feeds, items, matches, meta
from monitor.types import FeedRow, Item

CHUNK = 500  # values per lookup statement

# meta row: retention deleted the keys of items published before this time (epoch ms).
KEYS_PRUNED_BEFORE = "keys_pruned_before_ms"


def keys_pruned_before(conn: Connection, *, for_update: bool = False) -> int | None:
    """The time before which retention may have deleted item keys; None if it never did."""
    q = select(meta.c.value).where(meta.c.name == KEYS_PRUNED_BEFORE)
    value = conn.execute(q.with_for_update() if for_update else q).scalar_one_or_none()
    return None if value is None else int(value)


def item_values(it: Item, now_ms: int) -> dict[str, Any]:
    """The columns of an item row that a poll or an import writes (not its key)."""
    return dict(
        url=it.url,
        entry_id=it.entry_id,
        title=it.title,
        summary=it.summary,
        content=it.content,
        author=it.author,
        categories=json.dumps(list(it.categories), ensure_ascii=False) if it.categories else "[]",
        published_ms=it.published_ms,
        updated_ms=now_ms,
        title_key=title_key(it.title),
        pruned_ms=None,
    )  # an update brings a body back after retention emptied it


def row_item(r: Mapping[Any, Any], feeds_seen: Sequence[str]) -> Item:
    """The Item of an items row; its ``feed_id`` is the first feed it was seen in."""
    return Item(
        key=r["key"],
        url=r["url"],
        title=r["title"],
        published_ms=r["published_ms"],
        feed_id=feeds_seen[0] if feeds_seen else "",
        entry_id=r["entry_id"],
        summary=r["summary"],
        content=r["content"],
        author=r["author"],
        categories=tuple(json.loads(r["categories"] or "[]")),
    )


def feed_row(r: Mapping[Any, Any]) -> FeedRow:
    return FeedRow(
        id=r["id"],
        url=r["url"],
        title=r["title"],
        next_poll_ms=r["next_poll_ms"],
        etag=r["etag"],
        last_modified=r["last_modified"],
        failures=r["failures"],
        first_poll_done=bool(r["first_poll_done"]),
        last_poll_ms=r["last_poll_ms"],
        last_outcome=r["last_outcome"],
        last_error=r["last_error"],
        last_status=r["last_status"],
    )


def feeds_of(conn: Connection, item_ids: Iterable[int]) -> dict[int, tuple[str, ...]]:
    """The feeds each item was seen in, first sighting first."""
    out: dict[int, list[str]] = {}
    ids = list(dict.fromkeys(item_ids))
    for chunk in chunks(ids, CHUNK):
        for r in conn.execute(
            select(item_feeds.c.item_id, item_feeds.c.feed_id)
            .where(item_feeds.c.item_id.in_(chunk))
            .order_by(item_feeds.c.first_seen_ms, item_feeds.c.feed_id)
        ):
            out.setdefault(r.item_id, []).append(r.feed_id)
    return {k: tuple(v) for k, v in out.items()}


def chunks(seq: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _by(column: Any, select_: Select[Any], array_type: Any) -> dict[bool, Select[Any]]:
    """A lookup by many values of ``column``, built once per database kind. On
    PostgreSQL the values are one array parameter (``= ANY``), so the statement text is
    the same for any number of values and psycopg prepares it; SQLite gets ``IN``."""
    return {
        False: select_.where(column.in_(bindparam("vals", expanding=True))),
        True: select_.where(column == any_(bindparam("vals", type_=ARRAY(array_type)))),
    }


_ITEM_ROWS = _by(
    items.c.key, select(items.c.id, items.c.key, items.c.published_ms, items.c.imported), Text
)
_SEEN_IN = _by(item_feeds.c.item_id, select(item_feeds.c.item_id, item_feeds.c.feed_id), Integer)
# Of those, only the given feeds: (item_id, feed_id) is the primary key, so this reads
# one index entry per item and feed asked about, however many feeds carry the item.
_SEEN_IN_OF = {
    False: _SEEN_IN[False].where(item_feeds.c.feed_id.in_(bindparam("feeds", expanding=True))),
    True: _SEEN_IN[True].where(
        item_feeds.c.feed_id == any_(bindparam("feeds", type_=ARRAY(String)))
    ),
}
_MATCHED = _by(matches.c.item_id, select(matches.c.item_id, matches.c.rule), Integer)


def _lookup(conn: Connection, statements: dict[bool, Select[Any]], values: Sequence[Any]) -> Any:
    return conn.execute(statements[conn.dialect.name == "postgresql"], {"vals": list(values)})


def item_rows(conn: Connection, keys: Sequence[str]) -> dict[str, Any]:
    """Stored items by key: (id, key, published_ms, imported) of those found."""
    found: dict[str, Any] = {}
    for chunk in chunks(keys, CHUNK):
        for r in _lookup(conn, _ITEM_ROWS, chunk):
            found[r.key] = r
    return found


def seen_in(
    conn: Connection, item_ids: Sequence[int], among: Collection[str] | None = None
) -> dict[int, set[str]]:
    """The feeds each item was seen in; only those ``among`` the given ones, unless None.

    A poll asks about its own feed and the feeds that rules name: what it reads does
    not grow with the number of other feeds carrying its items.
    """
    seen: dict[int, set[str]] = {}
    feeds = None if among is None else sorted(set(among))
    if feeds == []:
        return seen
    for chunk in chunks(item_ids, CHUNK):
        if feeds is None:
            rows = _lookup(conn, _SEEN_IN, chunk)
        else:
            pg = conn.dialect.name == "postgresql"
            rows = (
                r
                for some in chunks(feeds, CHUNK)
                for r in conn.execute(_SEEN_IN_OF[pg], {"vals": list(chunk), "feeds": list(some)})
            )
        for r in rows:
            seen.setdefault(r.item_id, set()).add(r.feed_id)
    return seen


def matched_rules(conn: Connection, item_ids: Sequence[int]) -> dict[int, set[str]]:
    """The rules each item has matched."""
    out: dict[int, set[str]] = {}
    for chunk in chunks(item_ids, CHUNK):
        for r in _lookup(conn, _MATCHED, chunk):
            out.setdefault(r.item_id, set()).add(r.rule)
    return out
