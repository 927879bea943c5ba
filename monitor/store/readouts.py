"""Read-outs for ``status``, the console and /metrics: counts, the outbox by channel and
state, recent matches per rule, the feeds' schedule rows; the console's alert pages, a
feed's items and a rule's matches over time (each read by an index, paged)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import ColumnElement, func, select

from monitor.store.database import Database
from monitor.store.rows import feed_row
from monitor.store.schema import alerts, feeds, item_feeds, items, matches, silences
from monitor.types import (
    AlertFilter,
    AlertState,
    ConsoleAlert,
    Delivery,
    FeedRow,
    ItemSummary,
    RecentMatch,
)


class Readouts:
    """``types.Readouts``: reads only."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def counts(self) -> dict[str, int]:
        with self._db.connect("counting items and alerts") as conn:
            return {
                "items": conn.execute(select(func.count()).select_from(items)).scalar_one(),
                "alerts": conn.execute(select(func.count()).select_from(alerts)).scalar_one(),
            }

    def alert_summary(self) -> dict[str, dict[str, int]]:
        """Per channel: pending (never tried), retrying, held, sent, dead, silenced."""
        out: dict[str, dict[str, int]] = {}
        state = alerts.c.status
        with self._db.connect("summing up the outbox") as conn:
            for r in conn.execute(
                select(alerts.c.channel, state, alerts.c.attempts, func.count()).group_by(
                    alerts.c.channel, state, alerts.c.attempts
                )
            ):
                channel, status, attempts, n = r
                key = "retrying" if status == AlertState.PENDING and attempts else status
                d = out.setdefault(
                    channel,
                    {"pending": 0, "retrying": 0, "held": 0, "sent": 0, "dead": 0, "silenced": 0},
                )
                d[key] = d.get(key, 0) + n
        return out

    def rule_match_counts(self, since_ms: int) -> dict[str, int]:
        with self._db.connect("counting matches per rule") as conn:
            return {
                r.rule: r.n
                for r in conn.execute(
                    select(matches.c.rule, func.count().label("n"))
                    .where(matches.c.matched_ms >= since_ms)
                    .group_by(matches.c.rule)
                )
            }

    def feed_rows(self) -> list[FeedRow]:
        with self._db.begin("reading the feeds' schedule") as conn:
            rows = conn.execute(select(feeds).order_by(feeds.c.id)).mappings().all()
        return [feed_row(r) for r in rows]

    # -- the web console ----------------------------------------------------------------

    def feed_row(self, feed_id: str) -> FeedRow | None:
        with self._db.connect("reading a feed's schedule") as conn:
            row = conn.execute(select(feeds).where(feeds.c.id == feed_id)).mappings().first()
        return None if row is None else feed_row(row)

    def alert_page(
        self, where: AlertFilter, before_id: int | None, limit: int
    ) -> tuple[list[ConsoleAlert], int | None]:
        cond = _alert_conditions(where)
        q = select(alerts.c.id, alerts.c.rule, alerts.c.item_id)
        if before_id is not None:
            q = q.where(alerts.c.id < before_id)
        q = q.where(*cond).order_by(alerts.c.id.desc())
        with self._db.connect("reading the alert list") as conn:
            # Channels of one alert have neighbouring ids: read rows until ``limit``
            # rule/item pairs are complete, then the rows of those pairs.
            pairs: list[tuple[str, int]] = []
            rows = conn.execute(q.limit(limit * 8 + 8)).all()
            last_id: int | None = None
            for r in rows:
                pair = (r.rule, r.item_id)
                if pair not in pairs:
                    if len(pairs) == limit:
                        break
                    pairs.append(pair)
                last_id = r.id
            more = (
                len(rows) > 0
                and last_id is not None
                and (len(pairs) == limit or len(rows) == limit * 8 + 8)
            )
            if not pairs:
                return [], None
            full = (
                conn.execute(
                    select(
                        alerts,
                        silences.c.comment.label("s_comment"),
                        silences.c.ends_ms.label("s_ends"),
                    )
                    .outerjoin(silences, silences.c.id == alerts.c.silence_id)
                    .where(
                        alerts.c.rule.in_({p[0] for p in pairs}),
                        alerts.c.item_id.in_({p[1] for p in pairs}),
                        *cond,
                    )
                    .order_by(alerts.c.channel)
                )
                .mappings()
                .all()
            )
            wanted = set(pairs)
            full = [r for r in full if (r["rule"], r["item_id"]) in wanted]
            item_ids = sorted({p[1] for p in pairs})
            summaries = {
                r.id: _summary(r)
                for r in conn.execute(select(*_SUMMARY).where(items.c.id.in_(item_ids)))
            }
            seen: dict[int, list[str]] = {}
            for f in conn.execute(
                select(item_feeds.c.item_id, item_feeds.c.feed_id)
                .where(item_feeds.c.item_id.in_(item_ids))
                .order_by(item_feeds.c.first_seen_ms)
            ):
                seen.setdefault(f.item_id, []).append(f.feed_id)
        grouped: dict[tuple[str, int], list[Any]] = {}
        for a in full:
            grouped.setdefault((a["rule"], a["item_id"]), []).append(a)
        out = []
        for pair in pairs:
            group = grouped.get(pair)
            if not group or pair[1] not in summaries:
                continue
            first = min(group, key=lambda r: r["id"])
            out.append(
                ConsoleAlert(
                    rule=pair[0],
                    item=summaries[pair[1]],
                    feeds=tuple(seen.get(pair[1], ())),
                    keywords=tuple(json.loads(first["keywords"] or "[]")),
                    snippet=first["snippet"] or "",
                    created_ms=first["created_ms"],
                    deliveries=tuple(_delivery(r) for r in group),
                )
            )
        low = min((r["id"] for r in full), default=None)
        next_id = min(low, last_id) if more and low is not None and last_id is not None else None
        return out, next_id

    def latest_alert_id(self) -> int:
        with self._db.connect("reading the newest alert") as conn:
            return int(conn.execute(select(func.max(alerts.c.id))).scalar() or 0)

    def feed_items(self, feed_id: str, limit: int) -> list[ItemSummary]:
        q = (
            select(*_SUMMARY)
            .join(item_feeds, item_feeds.c.item_id == items.c.id)
            .where(item_feeds.c.feed_id == feed_id)
            .order_by(item_feeds.c.first_seen_ms.desc(), items.c.id.desc())
            .limit(limit)
        )
        with self._db.connect("reading a feed's items") as conn:
            return [_summary(r) for r in conn.execute(q)]

    def rule_match_times(self, rule: str, since_ms: int) -> list[int]:
        q = select(matches.c.matched_ms).where(
            matches.c.rule == rule, matches.c.matched_ms >= since_ms
        )
        with self._db.connect("reading a rule's matches") as conn:
            return [int(t) for t in conn.execute(q).scalars()]

    def recent_matches(self, rule: str, limit: int) -> list[RecentMatch]:
        q = (
            select(matches.c.item_id, matches.c.matched_ms, matches.c.alerted, *_SUMMARY)
            .join(items, items.c.id == matches.c.item_id)
            .where(matches.c.rule == rule)
            .order_by(matches.c.matched_ms.desc(), matches.c.item_id.desc())
            .limit(limit)
        )
        with self._db.connect("reading a rule's recent matches") as conn:
            rows = conn.execute(q).all()
            ids = [r.item_id for r in rows]
            hits = (
                {
                    r.item_id: r
                    for r in conn.execute(
                        select(alerts.c.item_id, alerts.c.keywords, alerts.c.snippet).where(
                            alerts.c.rule == rule, alerts.c.item_id.in_(ids)
                        )
                    )
                }
                if ids
                else {}
            )
        out = []
        for r in rows:
            hit = hits.get(r.item_id)
            out.append(
                RecentMatch(
                    item=_summary(r),
                    matched_ms=r.matched_ms,
                    alerted=bool(r.alerted),
                    keywords=tuple(json.loads(hit.keywords or "[]")) if hit else (),
                    snippet=(hit.snippet or "") if hit else "",
                )
            )
        return out


_SUMMARY = (items.c.id, items.c.title, items.c.url, items.c.published_ms, items.c.first_seen_ms)


def _summary(r: Any) -> ItemSummary:
    return ItemSummary(
        id=r.id,
        title=r.title,
        url=r.url,
        published_ms=r.published_ms,
        first_seen_ms=r.first_seen_ms,
    )


def _alert_conditions(where: AlertFilter) -> list[ColumnElement[bool]]:
    cond: list[ColumnElement[bool]] = []
    if where.rule:
        cond.append(alerts.c.rule == where.rule)
    if where.channel:
        cond.append(alerts.c.channel == where.channel)
    if where.state == "retrying":
        cond += [alerts.c.status == AlertState.PENDING.value, alerts.c.attempts > 0]
    elif where.state == AlertState.PENDING.value:
        cond += [alerts.c.status == AlertState.PENDING.value, alerts.c.attempts == 0]
    elif where.state:
        cond.append(alerts.c.status == where.state)
    if where.feed:
        cond.append(
            alerts.c.item_id.in_(
                select(item_feeds.c.item_id).where(item_feeds.c.feed_id == where.feed)
            )
        )
    return cond


def _delivery(r: Any) -> Delivery:
    return Delivery(
        alert_id=r["id"],
        channel=r["channel"],
        status=AlertState(r["status"]),
        attempts=r["attempts"],
        next_attempt_ms=r["next_attempt_ms"],
        sent_ms=r["sent_ms"],
        last_error=r["last_error"],
        silence_id=r["silence_id"],
        silence_comment=r["s_comment"],
        silence_ends_ms=r["s_ends"],
    )
