"""The alert outbox: how alert rows are written (inside ingest's transaction), leased,
marked, held, deferred, silenced, re-armed and re-driven; and the silences.

Every update after a lease is guarded by the lease owner, so a worker whose lease
expired (and whose alerts another worker took over) cannot overwrite their state.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    exists,
    insert,
    or_,
    select,
    text,
    update,
)

from monitor.store.database import Database, insert_rows
from monitor.store.rows import feeds_of, row_item
from monitor.store.schema import alerts, items, matches, silences
from monitor.types import AlertRow, AlertState, Edition, RuleMatch, Silence

# Alert states the deliverer picks up when due.
_DUE_STATES = (AlertState.PENDING.value, AlertState.HELD.value)
# Alert states that are done with: an update of the item under 'on_update: always' re-arms them.
_FINISHED = (AlertState.SENT.value, AlertState.DEAD.value, AlertState.SILENCED.value)

# The updates a delivery makes after every message, built once: a statement object
# reused skips SQLAlchemy's per-statement coercion and cache-key work.
_LEASED = and_(
    alerts.c.id.in_(bindparam("o_ids", expanding=True)),
    alerts.c.lease_owner == bindparam("o_owner"),
)

# The lease's pick on SQLite names the due index. Without statistics SQLite would take
# ix_alerts_channel_id, which yields the id order without a sort but walks every alert
# the channel ever had, sent ones included, to find the few that are due: each lease
# then cost time in proportion to the outbox's history. The due index reads only
# pending and held alerts; they are sorted by id after (see docs/architecture.md, 'The
# outbox's lease reads the due index').
_PICK_DUE_SQLITE = text(
    "SELECT id FROM alerts INDEXED BY ix_alerts_due"
    " WHERE status IN :p_states AND next_attempt_ms <= :p_now"
    " AND (lease_until_ms IS NULL OR lease_until_ms < :p_now)"
    " AND channel IN :p_channels"
    " ORDER BY id LIMIT :p_limit"
).bindparams(bindparam("p_states", expanding=True), bindparam("p_channels", expanding=True))
_MARK_SENT = (
    update(alerts)
    .where(_LEASED)
    .values(
        status=AlertState.SENT.value,
        sent_ms=bindparam("o_now"),
        attempts=alerts.c.attempts + 1,
        lease_owner=None,
        lease_until_ms=None,
        last_error=None,
    )
)
_MARK_FAILED = (
    update(alerts)
    .where(_LEASED)
    .values(
        status=bindparam("o_status"),
        attempts=alerts.c.attempts + 1,
        next_attempt_ms=bindparam("o_next"),
        lease_owner=None,
        lease_until_ms=None,
        last_error=bindparam("o_error"),
    )
)


def keywords_json(keywords: Sequence[str]) -> str:
    return json.dumps(list(keywords), ensure_ascii=False)


def alert_row(
    rule: str,
    item_id: int,
    channel: str,
    keywords_json: str,
    snippet: str,
    now_ms: int,
    due_ms: int,
) -> dict[str, Any]:
    """A new alert row: pending, due at ``due_ms`` (later than now while held for editions)."""
    return {
        "rule": rule,
        "item_id": item_id,
        "channel": channel,
        "keywords": keywords_json,
        "snippet": snippet,
        "status": AlertState.PENDING.value,
        "attempts": 0,
        "created_ms": now_ms,
        "next_attempt_ms": due_ms,
    }


def insert_alerts(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert ``alert_row``s in the caller's transaction; how many went in.

    The unique (rule, item, channel) constraint is the last word on duplicates,
    whatever another process or an earlier crash did: a row already there is skipped.
    """
    return int(insert_rows(conn, alerts, rows, alerts.c.id, count=True))


def rearm(
    conn: Connection,
    item_id: int,
    hit: RuleMatch,
    channels: Sequence[str],
    now_ms: int,
    due_ms: int,
) -> int:
    """Alert again for an updated item (``on_update: always``), in the caller's transaction.

    A new row per channel that has none, and rows already finished (sent, dead, silenced)
    back to pending with the new keywords and snippet and ``revision`` + 1. Rows still
    waiting only get the new keywords and snippet: they will be sent with the updated
    item anyway. The unique (rule, item, channel) constraint stays: one row per channel,
    re-armed. Returns how many alerts will be sent.
    """
    if not channels:
        return 0
    keywords = keywords_json(hit.keywords)
    mine = and_(
        alerts.c.rule == hit.rule, alerts.c.item_id == item_id, alerts.c.channel.in_(list(channels))
    )
    rearmed = conn.execute(
        update(alerts)
        .where(and_(mine, alerts.c.status.in_(_FINISHED)))
        .values(
            status=AlertState.PENDING.value,
            attempts=0,
            revision=alerts.c.revision + 1,
            keywords=keywords,
            snippet=hit.snippet,
            created_ms=now_ms,
            next_attempt_ms=due_ms,
            sent_ms=None,
            last_error=None,
            silence_id=None,
            lease_owner=None,
            lease_until_ms=None,
        )
    ).rowcount
    conn.execute(
        update(alerts)
        .where(and_(mine, alerts.c.status.in_(_DUE_STATES)))
        .values(keywords=keywords, snippet=hit.snippet)
    )
    created = insert_alerts(
        conn,
        [
            alert_row(hit.rule, item_id, channel, keywords, hit.snippet, now_ms, due_ms)
            for channel in channels
        ],
    )
    return max(rearmed, 0) + created


class Outbox:
    """``types.Outbox`` on the ``alerts`` and ``silences`` tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def lease(
        self, owner: str, now_ms: int, limit: int, lease_ms: int, channels: Collection[str]
    ) -> list[AlertRow]:
        """Lease pending alerts that are due, oldest first, for the known channels."""
        if not channels:
            return []
        free = or_(alerts.c.lease_until_ms.is_(None), alerts.c.lease_until_ms < now_ms)
        due = and_(
            alerts.c.status.in_(_DUE_STATES),
            alerts.c.next_attempt_ms <= now_ms,
            free,
            alerts.c.channel.in_(list(channels)),
        )
        with self._db.begin("leasing alerts") as conn:
            if self._db.is_sqlite:
                picked = conn.execute(
                    _PICK_DUE_SQLITE,
                    {
                        "p_states": list(_DUE_STATES),
                        "p_now": now_ms,
                        "p_channels": list(channels),
                        "p_limit": limit,
                    },
                )
            else:
                picked = conn.execute(
                    select(alerts.c.id)
                    .where(due)
                    .order_by(alerts.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ids = [r.id for r in picked]
            if not ids:
                return []
            conn.execute(
                update(alerts)
                .where(and_(alerts.c.id.in_(ids), free))
                .values(lease_owner=owner, lease_until_ms=now_ms + lease_ms)
            )
            rows = (
                conn.execute(
                    select(alerts, items)
                    .join(items, items.c.id == alerts.c.item_id)
                    .where(and_(alerts.c.id.in_(ids), alerts.c.lease_owner == owner))
                    .order_by(alerts.c.id)
                )
                .mappings()
                .all()
            )
            fmap = feeds_of(conn, [r["item_id"] for r in rows])
        return [
            AlertRow(
                id=r[alerts.c.id],
                rule=r["rule"],
                channel=r["channel"],
                status=AlertState(r["status"]),
                attempts=r["attempts"],
                keywords=tuple(json.loads(r["keywords"])),
                snippet=r["snippet"],
                created_ms=r["created_ms"],
                item=row_item(r, fmap.get(r["item_id"], ())),
                feeds=fmap.get(r["item_id"], ()),
                item_id=r["item_id"],
                revision=r["revision"],
            )
            for r in rows
        ]

    def _owned(self, ids: Sequence[int], owner: str) -> ColumnElement[bool]:
        return and_(alerts.c.id.in_(list(ids)), alerts.c.lease_owner == owner)

    def mark_sent(self, ids: Sequence[int], owner: str, now_ms: int) -> None:
        with self._db.begin("marking alerts sent") as conn:
            conn.execute(_MARK_SENT, {"o_ids": list(ids), "o_owner": owner, "o_now": now_ms})

    def mark_failed(
        self, ids: Sequence[int], owner: str, error: str, next_attempt_ms: int, dead: bool
    ) -> None:
        status = AlertState.DEAD if dead else AlertState.PENDING
        with self._db.begin("marking alerts failed") as conn:
            conn.execute(
                _MARK_FAILED,
                {
                    "o_ids": list(ids),
                    "o_owner": owner,
                    "o_status": status.value,
                    "o_next": next_attempt_ms,
                    "o_error": error,
                },
            )

    def hold(self, ids: Sequence[int], owner: str, release_ms: int) -> None:
        """Keep alerts back until ``release_ms`` (a digest or quiet hours)."""
        with self._db.begin("holding alerts") as conn:
            conn.execute(
                update(alerts)
                .where(self._owned(ids, owner))
                .values(
                    status=AlertState.HELD.value,
                    next_attempt_ms=release_ms,
                    lease_owner=None,
                    lease_until_ms=None,
                )
            )

    def defer(self, ids: Sequence[int], owner: str, next_attempt_ms: int) -> None:
        """Put alerts back for later without counting an attempt (a rate limit)."""
        with self._db.begin("deferring alerts") as conn:
            conn.execute(
                update(alerts)
                .where(self._owned(ids, owner))
                .values(next_attempt_ms=next_attempt_ms, lease_owner=None, lease_until_ms=None)
            )

    def mark_silenced(self, ids: Sequence[int], owner: str, silence_id: int) -> None:
        with self._db.begin("marking alerts silenced") as conn:
            conn.execute(
                update(alerts)
                .where(self._owned(ids, owner))
                .values(
                    status=AlertState.SILENCED.value,
                    silence_id=silence_id,
                    lease_owner=None,
                    lease_until_ms=None,
                )
            )

    def held_release(self, channel: str, rule: str | None, now_ms: int) -> int | None:
        """When alerts already held for this channel (and rule) will be released."""
        cond = [
            alerts.c.channel == channel,
            alerts.c.status == AlertState.HELD.value,
            alerts.c.next_attempt_ms > now_ms,
        ]
        if rule is not None:
            cond.append(alerts.c.rule == rule)
        with self._db.connect("reading held alerts") as conn:
            return conn.execute(
                select(alerts.c.next_attempt_ms)
                .where(and_(*cond))
                .order_by(alerts.c.next_attempt_ms)
                .limit(1)
            ).scalar()

    def redeliver(self, now_ms: int, channel: str | None = None, rule: str | None = None) -> int:
        """Dead letters back to pending, their attempts and age counted afresh."""
        cond = [alerts.c.status == AlertState.DEAD.value]
        if channel:
            cond.append(alerts.c.channel == channel)
        if rule:
            cond.append(alerts.c.rule == rule)
        with self._db.begin("re-driving dead letters") as conn:
            return int(
                conn.execute(
                    update(alerts)
                    .where(and_(*cond))
                    .values(
                        status=AlertState.PENDING.value,
                        attempts=0,
                        next_attempt_ms=now_ms,
                        created_ms=now_ms,
                        lease_owner=None,
                        lease_until_ms=None,
                    )
                ).rowcount
            )

    def release_leases(self, owner: str) -> None:
        with self._db.begin("releasing alert leases") as conn:
            conn.execute(
                update(alerts)
                .where(alerts.c.lease_owner == owner)
                .values(lease_owner=None, lease_until_ms=None)
            )

    def editions(self, item_id: int, rule: str, window_ms: int) -> list[Edition]:
        """The item and its other editions the rule matched: same title key, published
        within ``window_ms`` of it, seen in none of its feeds. The item comes first."""
        with self._db.connect("reading the editions of an item") as conn:
            me = conn.execute(
                select(items.c.title_key, items.c.published_ms, items.c.url).where(
                    items.c.id == item_id
                )
            ).first()
            if me is None:
                return []
            rows = (
                []
                if me.title_key is None
                else conn.execute(
                    select(items.c.id, items.c.url, items.c.published_ms)
                    .where(
                        and_(
                            items.c.title_key == me.title_key,
                            items.c.published_ms.between(
                                me.published_ms - window_ms, me.published_ms + window_ms
                            ),
                            exists().where(
                                and_(matches.c.item_id == items.c.id, matches.c.rule == rule)
                            ),
                        )
                    )
                    .order_by(items.c.published_ms, items.c.id)
                ).all()
            )
            fmap = feeds_of(conn, [item_id, *(r.id for r in rows)])
        mine = set(fmap.get(item_id, ()))
        out = [Edition(item_id, me.url, fmap.get(item_id, ()), me.published_ms)]
        for r in rows:
            theirs = fmap.get(r.id, ())
            if r.id != item_id and not mine.intersection(theirs):
                out.append(Edition(r.id, r.url, theirs, r.published_ms))
        return out

    # -- silences ------------------------------------------------------------------------

    def add_silence(
        self,
        rule: str,
        channel: str | None,
        starts_ms: int,
        ends_ms: int,
        comment: str,
        created_by: str,
        now_ms: int,
    ) -> int:
        with self._db.begin("adding a silence") as conn:
            key = conn.execute(
                insert(silences).values(
                    rule=rule,
                    channel=channel,
                    starts_ms=starts_ms,
                    ends_ms=ends_ms,
                    comment=comment,
                    created_by=created_by,
                    created_ms=now_ms,
                )
            ).inserted_primary_key
        assert key is not None  # a one-row INSERT always reports its key
        return int(key[0])

    def silences(self, now_ms: int, include_expired: bool = False) -> list[Silence]:
        q = select(silences).order_by(silences.c.id)
        if not include_expired:
            q = q.where(silences.c.ends_ms > now_ms)
        with self._db.connect("reading silences") as conn:
            return [Silence(**dict(r)) for r in conn.execute(q).mappings()]

    def expire_silence(self, silence_id: int, now_ms: int) -> bool:
        with self._db.begin("expiring a silence") as conn:
            return bool(
                conn.execute(
                    update(silences)
                    .where(and_(silences.c.id == silence_id, silences.c.ends_ms > now_ms))
                    .values(ends_ms=now_ms)
                ).rowcount
            )
