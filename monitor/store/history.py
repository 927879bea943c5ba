"""History: archive imports and exports, and retention (SQL only; the files, progress and
reports are in ``monitor.archive.files``).

- **Imports** store items as already seen: ``imported`` is set, the rules'
  matches are recorded as not alerted, and no alert row is written. The first
  time a polled feed carries such an item, ingest records it quietly too
  (``_Plan.quiet`` in ``monitor.store.ingest``), whatever its timestamp says.
- **Retention** empties old bodies, then deletes old keys, never touching an
  item that still has an alert waiting (pending, held, or a dead letter that
  may be re-driven).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, true, update

from monitor.store.database import Database, insert_rows
from monitor.store.rows import (
    KEYS_PRUNED_BEFORE,
    feeds_of,
    item_rows,
    item_values,
    keys_pruned_before,
    row_item,
)
from monitor.store.schema import alerts, item_feeds, items, matches, meta
from monitor.types import AlertState, ExportRow, Item, PruneStats, RuleMatch

# Alert states whose item must keep its body: not delivered yet, or re-drivable.
UNFINISHED = (AlertState.PENDING.value, AlertState.HELD.value, AlertState.DEAD.value)


class History:
    """``types.History`` on the items tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def import_items(
        self, feed_id: str, batch: Sequence[tuple[Item, Sequence[RuleMatch]]], now_ms: int
    ) -> set[str]:
        """Store archive items as already seen; the keys this call added.

        A key already stored (by a poll or an earlier import) is left exactly as it is:
        importing twice adds nothing. Each new item is recorded as seen in ``feed_id``
        with its rule matches, none of them alerted, and no alert row.
        """
        unique: dict[str, tuple[Item, Sequence[RuleMatch]]] = {}
        for it, hits in batch:
            unique.setdefault(it.key, (it, hits))
        if not unique:
            return set()
        keys = sorted(unique)  # one key order in every transaction, as ingest does
        with self._db.begin(f"importing items into feed '{feed_id}'") as conn:
            fresh = keys
            if not conn.dialect.insert_executemany_returning:
                # No RETURNING to say which rows went in: look first (SQLite before 3.35;
                # one writer at a time, so the lookup is exact).
                found = item_rows(conn, keys)
                fresh = [k for k in keys if k not in found]
                if not fresh:
                    return set()
            rows = [
                {
                    "key": k,
                    "first_seen_ms": now_ms,
                    "imported": True,
                    **item_values(unique[k][0], now_ms),
                }
                for k in fresh
            ]
            # ON CONFLICT DO NOTHING leaves a stored key exactly as it was.
            returned = insert_rows(conn, items, rows, items.c.key, items.c.id)
            if returned is None:  # every row went in (see above)
                ids = {k: r.id for k, r in item_rows(conn, fresh).items()}
            else:
                ids = dict(returned)
            insert_rows(
                conn,
                item_feeds,
                [{"item_id": ids[k], "feed_id": feed_id, "first_seen_ms": now_ms} for k in ids],
            )
            # matched_ms is the article's own time: `status` counts matches of the last
            # 24 hours, and an import of last year's archive is not today's news.
            insert_rows(
                conn,
                matches,
                [
                    {
                        "item_id": ids[k],
                        "rule": rule,
                        "alerted": False,
                        "matched_ms": min(now_ms, unique[k][0].published_ms),
                    }
                    for k in ids
                    for rule in dict.fromkeys(h.rule for h in unique[k][1])
                ],
            )
        return set(ids)

    def stored_keys(self, keys: Collection[str]) -> set[str]:
        """Those of ``keys`` that are stored."""
        with self._db.connect("looking up stored keys") as conn:
            return set(item_rows(conn, sorted(set(keys))))

    # -- export --------------------------------------------------------------------------

    def export_rows(
        self,
        since_ms: int | None = None,
        until_ms: int | None = None,
        rule: str | None = None,
        feed_ids: Collection[str] = (),
        batch: int = 500,
    ) -> Iterator[ExportRow]:
        """Stored items oldest first, optionally those ``rule`` matched or seen in feeds.

        Read in pages by (published_ms, id), so an export of a large database holds
        one page in memory, not the whole table.
        """
        cond: list[Any] = []
        if since_ms is not None:
            cond.append(items.c.published_ms >= since_ms)
        if until_ms is not None:
            cond.append(items.c.published_ms < until_ms)
        if rule is not None:
            cond.append(
                exists().where(and_(matches.c.item_id == items.c.id, matches.c.rule == rule))
            )
        if feed_ids:
            cond.append(
                exists().where(
                    and_(
                        item_feeds.c.item_id == items.c.id, item_feeds.c.feed_id.in_(list(feed_ids))
                    )
                )
            )
        after: tuple[int, int] | None = None
        while True:
            page = list(cond)
            if after is not None:
                page.append(
                    or_(
                        items.c.published_ms > after[0],
                        and_(items.c.published_ms == after[0], items.c.id > after[1]),
                    )
                )
            q = (
                select(items)
                .where(and_(true(), *page))
                .order_by(items.c.published_ms, items.c.id)
                .limit(batch)
            )
            with self._db.connect("exporting items") as conn:
                rows = conn.execute(q).mappings().all()
                fmap = feeds_of(conn, [r["id"] for r in rows])
            if not rows:
                return
            for r in rows:
                yield ExportRow(row_item(r, fmap.get(r["id"], ())), r["pruned_ms"] is not None)
            after = (rows[-1]["published_ms"], rows[-1]["id"])

    def count_matches(self, rule: str) -> int:
        with self._db.connect("counting matches") as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(matches).where(matches.c.rule == rule)
                ).scalar_one()
            )

    def known_feed_ids(self) -> set[str]:
        """Every feed id items were seen in (configured or not: 'archive', removed feeds)."""
        with self._db.connect("reading feed ids") as conn:
            return {r[0] for r in conn.execute(select(item_feeds.c.feed_id).distinct())}

    # -- retention -----------------------------------------------------------------------

    def prune(
        self,
        now_ms: int,
        bodies_before_ms: int | None,
        keys_before_ms: int | None,
        batch: int = 1000,
    ) -> PruneStats:
        """Delete items published before ``keys_before_ms``; empty the bodies of those
        published before ``bodies_before_ms``. Items with a waiting alert stay whole.

        Short transactions of ``batch`` items each, so a large first prune does not
        hold the write lock against the pollers for long. Before deleting, the
        horizon ``keys_before_ms`` is recorded (``meta``, never moved back): a key
        deleted here that a feed still lists comes back as a new item, and ingest
        records such an item published before the horizon without alerting.
        """
        deleted = emptied = kept = 0
        waiting = exists().where(
            and_(alerts.c.item_id == items.c.id, alerts.c.status.in_(UNFINISHED))
        )
        if keys_before_ms is not None:
            self._record_keys_horizon(keys_before_ms)
            old = and_(items.c.published_ms < keys_before_ms, ~waiting)
            while True:
                with self._db.begin("deleting old items") as conn:
                    ids = [
                        r.id
                        for r in conn.execute(
                            select(items.c.id).where(old).order_by(items.c.id).limit(batch)
                        )
                    ]
                    if not ids:
                        break
                    # Item rows cascade to item_feeds, matches and (finished) alerts.
                    deleted += conn.execute(delete(items).where(items.c.id.in_(ids))).rowcount
        if bodies_before_ms is not None:
            old = and_(
                items.c.published_ms < bodies_before_ms, items.c.pruned_ms.is_(None), ~waiting
            )
            while True:
                with self._db.begin("emptying old item bodies") as conn:
                    ids = [
                        r.id
                        for r in conn.execute(
                            select(items.c.id).where(old).order_by(items.c.id).limit(batch)
                        )
                    ]
                    if not ids:
                        break
                    emptied += conn.execute(
                        update(items)
                        .where(items.c.id.in_(ids))
                        .values(summary="", content="", pruned_ms=now_ms)
                    ).rowcount
        cutoff = max(x for x in (bodies_before_ms, keys_before_ms, -1) if x is not None)
        if cutoff >= 0:
            with self._db.connect("counting kept items") as conn:
                kept = int(
                    conn.execute(
                        select(func.count())
                        .select_from(items)
                        .where(and_(items.c.published_ms < cutoff, waiting))
                    ).scalar_one()
                )
        return PruneStats(emptied=emptied, deleted=deleted, kept=kept)

    def _record_keys_horizon(self, before_ms: int) -> None:
        with self._db.begin("recording the pruned-keys horizon") as conn:
            insert_rows(conn, meta, [{"name": KEYS_PRUNED_BEFORE, "value": str(before_ms)}])
            recorded = keys_pruned_before(conn, for_update=True)
            if recorded is None or recorded < before_ms:
                conn.execute(
                    update(meta)
                    .where(meta.c.name == KEYS_PRUNED_BEFORE)
                    .values(value=str(before_ms))
                )
