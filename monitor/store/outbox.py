"""Outbox operations beyond leasing: batches, holds, deferrals, silences, redelivery.

Every update is guarded by the lease owner, so a worker whose lease expired
(and whose alerts another worker took over) cannot overwrite their state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, insert, or_, select, update

from monitor.store.schema import alerts, silences
from monitor.types import Silence

# The updates a delivery makes after every message, built once: a statement object
# reused skips SQLAlchemy's per-statement coercion and cache-key work.
_LEASED = and_(alerts.c.id.in_(bindparam("o_ids", expanding=True)),
               alerts.c.lease_owner == bindparam("o_owner"))
_MARK_SENT = update(alerts).where(_LEASED).values(
    status="sent", sent_ms=bindparam("o_now"), attempts=alerts.c.attempts + 1,
    lease_owner=None, lease_until_ms=None, last_error=None)
_MARK_FAILED = update(alerts).where(_LEASED).values(
    status=bindparam("o_status"), attempts=alerts.c.attempts + 1,
    next_attempt_ms=bindparam("o_next"), lease_owner=None, lease_until_ms=None,
    last_error=bindparam("o_error"))


class OutboxMixin:
    """Mixed into Store; relies on ``self.engine``."""

    engine: Any

    def _owned(self, ids: Sequence[int], owner: str) -> Any:
        return and_(alerts.c.id.in_(list(ids)), alerts.c.lease_owner == owner)

    def mark_sent_many(self, ids: Sequence[int], owner: str, now_ms: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(_MARK_SENT, {"o_ids": list(ids), "o_owner": owner, "o_now": now_ms})

    def mark_failed_many(self, ids: Sequence[int], owner: str, error: str,
                         next_attempt_ms: int, dead: bool) -> None:
        with self.engine.begin() as conn:
            conn.execute(_MARK_FAILED, {"o_ids": list(ids), "o_owner": owner,
                                        "o_status": "dead" if dead else "pending",
                                        "o_next": next_attempt_ms, "o_error": error})

    def hold(self, ids: Sequence[int], owner: str, release_ms: int) -> None:
        """Keep alerts back until ``release_ms`` (a digest or quiet hours)."""
        with self.engine.begin() as conn:
            conn.execute(update(alerts).where(self._owned(ids, owner)).values(
                status="held", next_attempt_ms=release_ms, lease_owner=None,
                lease_until_ms=None))

    def defer(self, ids: Sequence[int], owner: str, next_attempt_ms: int) -> None:
        """Put alerts back for later without counting an attempt (a rate limit)."""
        with self.engine.begin() as conn:
            conn.execute(update(alerts).where(self._owned(ids, owner)).values(
                next_attempt_ms=next_attempt_ms, lease_owner=None, lease_until_ms=None))

    def mark_silenced(self, ids: Sequence[int], owner: str, silence_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(alerts).where(self._owned(ids, owner)).values(
                status="silenced", silence_id=silence_id, lease_owner=None,
                lease_until_ms=None))

    def held_release(self, channel: str, rule: str | None, now_ms: int) -> int | None:
        """When alerts already held for this channel (and rule) will be released."""
        cond = [alerts.c.channel == channel, alerts.c.status == "held",
                alerts.c.next_attempt_ms > now_ms]
        if rule is not None:
            cond.append(alerts.c.rule == rule)
        with self.engine.connect() as conn:
            return conn.execute(select(alerts.c.next_attempt_ms).where(and_(*cond))
                                .order_by(alerts.c.next_attempt_ms).limit(1)).scalar()

    def redeliver(self, now_ms: int, channel: str | None = None, rule: str | None = None) -> int:
        """Dead letters back to pending, their attempts and age counted afresh."""
        cond = [alerts.c.status == "dead"]
        if channel:
            cond.append(alerts.c.channel == channel)
        if rule:
            cond.append(alerts.c.rule == rule)
        with self.engine.begin() as conn:
            return int(conn.execute(update(alerts).where(and_(*cond)).values(
                status="pending", attempts=0, next_attempt_ms=now_ms, created_ms=now_ms,
                lease_owner=None, lease_until_ms=None)).rowcount)

    # -- silences ------------------------------------------------------------------------

    def add_silence(self, rule: str, channel: str | None, starts_ms: int, ends_ms: int,
                    comment: str, created_by: str, now_ms: int) -> int:
        with self.engine.begin() as conn:
            return int(conn.execute(insert(silences).values(
                rule=rule, channel=channel, starts_ms=starts_ms, ends_ms=ends_ms,
                comment=comment, created_by=created_by, created_ms=now_ms
            )).inserted_primary_key[0])

    def silences(self, now_ms: int, include_expired: bool = False) -> list[Silence]:
        q = select(silences).order_by(silences.c.id)
        if not include_expired:
            q = q.where(silences.c.ends_ms > now_ms)
        with self.engine.connect() as conn:
            return [Silence(**dict(r)) for r in conn.execute(q).mappings()]

    def expire_silence(self, silence_id: int, now_ms: int) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(update(silences).where(and_(
                silences.c.id == silence_id, silences.c.ends_ms > now_ms)).values(
                ends_ms=now_ms)).rowcount)

    def silenced_count(self, rule: str | None = None) -> int:
        cond: Any = alerts.c.status == "silenced"
        if rule:
            cond = and_(cond, alerts.c.rule == rule)
        with self.engine.connect() as conn:
            return len(conn.execute(select(alerts.c.id).where(cond)).all())


def due_states() -> Any:
    """Alert states the deliverer picks up when due."""
    return or_(alerts.c.status == "pending", alerts.c.status == "held")
