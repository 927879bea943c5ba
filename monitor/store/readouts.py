"""Read-outs for ``status``, the console and /metrics: counts, the outbox by channel and
state, recent matches per rule, the feeds' schedule rows."""

from __future__ import annotations

from sqlalchemy import func, select

from monitor.store.database import Database
from monitor.store.rows import feed_row
from monitor.store.schema import alerts, feeds, items, matches
from monitor.types import AlertState, FeedRow


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
            for r in conn.execute(select(alerts.c.channel, state, alerts.c.attempts,
                                         func.count()).group_by(alerts.c.channel, state,
                                                                alerts.c.attempts)):
                channel, status, attempts, n = r
                key = "retrying" if status == AlertState.PENDING and attempts else status
                d = out.setdefault(channel, {"pending": 0, "retrying": 0, "held": 0, "sent": 0,
                                             "dead": 0, "silenced": 0})
                d[key] = d.get(key, 0) + n
        return out

    def rule_match_counts(self, since_ms: int) -> dict[str, int]:
        with self._db.connect("counting matches per rule") as conn:
            return {r.rule: r.n for r in conn.execute(
                select(matches.c.rule, func.count().label("n"))
                .where(matches.c.matched_ms >= since_ms).group_by(matches.c.rule))}

    def feed_rows(self) -> list[FeedRow]:
        with self._db.begin("reading the feeds' schedule") as conn:
            rows = conn.execute(select(feeds).order_by(feeds.c.id)).mappings().all()
        return [feed_row(r) for r in rows]
