"""The deliverer: leases due alerts from the outbox, groups them into messages, sends them
through their channels and records each outcome.

Per alert: an active silence marks it silenced (never sent); a digest or quiet hours hold
it until its release time, when everything held together goes out as one message; a
channel's rate limit defers what exceeds it (nothing is dropped). A failed send is
retried with exponential back-off and jitter; after ``max_attempts`` or ``max_age`` the
alert waits as a dead letter. A channel answering 429 (or 503) with Retry-After pauses as
a whole for that long (at most ``max_backoff``): what it has waiting is deferred to the
end of the pause and then goes out in order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from monitor.clock import SYSTEM_CLOCK
from monitor.deliver.channels import Channel
from monitor.deliver.sanitize import one_line
from monitor.deliver.settings import DeliverySettings, DigestSchedule
from monitor.deliver.templates import alert_context
from monitor.deliver.timing import hold_until_ms
from monitor.errors import StoreError
from monitor.schedule.politeness import retry_after_value_s
from monitor.secrets import Masker
from monitor.types import AlertRow, AlertState, Clock, DeliveryStats, Outbox, Silence

log = logging.getLogger("monitor.deliver")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _send_pool() -> ThreadPoolExecutor:
    """The threads messages are sent from, shared by every deliverer of the process (a
    config reload makes a new one); each run bounds its own use to delivery.parallel, and
    the pool starts a thread only when none is idle."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(64, thread_name_prefix="deliver")
        return _pool


def message_id(alerts: Sequence[AlertRow]) -> str:
    """The Message-ID of the mail carrying ``alerts``: the same for a resend."""
    first = alerts[0]
    if len(alerts) == 1:
        return f"<alert-{first.id}.{first.created_ms}@feed-monitor>"
    return f"<digest-{first.id}-{alerts[-1].id}.{len(alerts)}@feed-monitor>"


class Deliverer:
    """Sends what the outbox holds; safe to run from one job in several processes.

    ``rule_digests`` sends a rule's alerts as digests of their own; ``rule_editions``
    gives a rule's cross-edition window (ms): its messages list every edition of the
    story. ``on_result(channel, outcome, latency_s)`` hears of every alert sent or failed.
    """

    def __init__(
        self,
        outbox: Outbox,
        owner: str,
        settings: DeliverySettings,
        channels: dict[str, Channel],
        masker: Masker,
        feed_titles: Callable[[], Mapping[str, str]] = dict,
        on_result: Callable[[str, str, float], None] | None = None,
        rule_digests: Mapping[str, DigestSchedule] | None = None,
        rule_editions: Mapping[str, int] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.outbox = outbox
        self.owner = owner
        self.settings = settings
        self.channels = channels
        self.masker = masker
        self.feed_titles = feed_titles
        self.on_result = on_result
        self.rule_digests = dict(rule_digests or {})
        self.rule_editions = dict(rule_editions or {})
        self.clock = clock
        self.stopping = threading.Event()
        # Channels paused by a receiver's Retry-After: name -> end of the pause (epoch ms).
        self._paused_ms: dict[str, int] = {}

    def adopt_limits(self, previous: Deliverer) -> None:
        """Keep the rate-limit history and the channels' pauses across a config reload."""
        for name, ch in self.channels.items():
            old = previous.channels.get(name)
            if ch.limiter and old and old.limiter:
                ch.limiter.adopt(old.limiter)
            if name in previous._paused_ms:
                self._paused_ms[name] = previous._paused_ms[name]

    def paused_until_ms(self, channel: str) -> int | None:
        """The end of the channel's Retry-After pause (epoch ms), None when it may send."""
        until = self._paused_ms.get(channel)
        if until is None or until <= self.clock.now_ms():
            return None
        return until

    # -- the job -------------------------------------------------------------------------

    def deliver_due(self, now_ms: int | None = None) -> DeliveryStats:
        """Lease the alerts due at ``now_ms`` (default: the clock's now) and act on them;
        returns what happened."""
        now_ms = now_ms if now_ms is not None else self.clock.now_ms()
        lease_s = self.settings.lease_s
        # Sending stops at half the lease and the rest goes back (below): once the lease
        # is over another daemon may take these alerts, and both would send them.
        send_until = self.clock.monotonic() + lease_s / 2
        batch = self.outbox.lease(
            self.owner, now_ms, self.settings.batch, int(lease_s * 1000), list(self.channels)
        )
        if not batch:
            return DeliveryStats()
        silenced = held = 0
        silences = [s for s in self.outbox.silences(now_ms) if s.active(now_ms)]
        groups: dict[tuple[str, str], list[AlertRow]] = {}
        for alert in batch:
            silence = _silence_for(silences, alert)
            if silence is not None:
                self.outbox.mark_silenced([alert.id], self.owner, silence.id)
                silenced += 1
                log.info(
                    "channel '%s': alert %d (rule '%s') silenced by silence %d",
                    alert.channel,
                    alert.id,
                    alert.rule,
                    silence.id,
                )
                continue
            group = self._group(alert, now_ms)
            if group is None:  # held back until its release time
                held += 1
                continue
            groups.setdefault((alert.channel, group), []).append(alert)
        try:
            sent = self._send_all(list(groups.items()), self.feed_titles(), send_until)
        finally:
            # Connections kept open between this run's messages (SMTP) end with the run:
            # an idle daemon holds no sockets.
            for name in {channel for channel, _ in groups}:
                self.channels[name].notifier.close()
        # Whatever was leased and not acted on (stopping) goes back at once.
        self.outbox.release_leases(self.owner)
        return sent + DeliveryStats(leased=len(batch), silenced=silenced, held=held)

    def _group(self, alert: AlertRow, now_ms: int) -> str | None:
        """The message an alert goes out in ('single:<id>' or a digest), or None if held."""
        channel = self.channels[alert.channel]
        digest = self.rule_digests.get(alert.rule) or channel.settings.digest
        own_digest = alert.rule in self.rule_digests
        digest_group = f"digest:rule:{alert.rule}" if own_digest else "digest:channel"
        if alert.status == AlertState.HELD:  # released now: with the others held alongside
            return digest_group if digest else "quiet"
        if alert.attempts > 0:  # a retry of something already released
            return digest_group if digest else f"single:{alert.id}"
        opened_ms = None
        if digest is not None and digest.window_s is not None:
            # A grouping window opens with the first alert and collects those that follow.
            opened_ms = self.outbox.held_release(
                alert.channel, alert.rule if own_digest else None, now_ms
            )
        release_ms = hold_until_ms(
            now_ms, alert.created_ms, digest, channel.settings.quiet_hours, opened_ms
        )
        if release_ms is not None:
            self.outbox.hold([alert.id], self.owner, release_ms)
            log.info(
                "channel '%s': alert %d (rule '%s') held until %s",
                alert.channel,
                alert.id,
                alert.rule,
                datetime.fromtimestamp(release_ms / 1000, UTC).isoformat(timespec="seconds"),
            )
            return None
        return digest_group if digest else f"single:{alert.id}"

    def _send_all(
        self,
        messages: list[tuple[tuple[str, str], list[AlertRow]]],
        titles: Mapping[str, str],
        send_until: float,
    ) -> DeliveryStats:
        """Send the messages of one batch, up to ``delivery.parallel`` at once, in their
        order; a channel's rate limit is applied as each is handed out."""

        def stop() -> bool:
            return self.stopping.is_set() or self.clock.monotonic() > send_until

        def send(channel: Channel, group: str, alerts: list[AlertRow]) -> DeliveryStats:
            if stop():  # left leased: handed back with the rest
                return DeliveryStats()
            if self._defer_if_paused(channel, alerts):  # paused while this one waited
                return DeliveryStats(deferred=len(alerts))
            return self._send(channel, group, alerts, titles)

        total = DeliveryStats()
        workers = min(self.settings.parallel, len(messages))
        if workers <= 1:
            for (channel_name, group), alerts in messages:
                if stop():
                    break
                channel = self.channels[channel_name]
                if self._admit(channel, alerts):
                    total += self._send(channel, group, alerts, titles)
                else:
                    total += DeliveryStats(deferred=len(alerts))
            return total
        pool = _send_pool()
        slots = threading.BoundedSemaphore(workers)
        pending: list[Future[DeliveryStats]] = []
        try:
            for (channel_name, group), alerts in messages:
                slots.acquire()  # a message is admitted when a sender is free for it
                if stop():
                    slots.release()
                    break
                channel = self.channels[channel_name]
                if not self._admit(channel, alerts):
                    slots.release()
                    total += DeliveryStats(deferred=len(alerts))
                    continue
                future = pool.submit(send, channel, group, alerts)
                future.add_done_callback(lambda _: slots.release())
                pending.append(future)
        finally:
            for future in pending:
                total += future.result()
        return total

    def _admit(self, channel: Channel, alerts: list[AlertRow]) -> bool:
        """Whether the channel's pause and rate limit let one more message go now (it is
        counted); if not, the alerts are deferred until they do."""
        if self._defer_if_paused(channel, alerts):
            return False
        if channel.limiter is None:
            return True
        now = self.clock.monotonic()
        wait = channel.limiter.wait(now)
        if wait > 0:
            later = self.clock.now_ms() + int(wait * 1000)
            self.outbox.defer([a.id for a in alerts], self.owner, later)
            return False
        channel.limiter.record(now)
        return True

    def _defer_if_paused(self, channel: Channel, alerts: list[AlertRow]) -> bool:
        """Defer the alerts to the end of the channel's pause, if it is paused."""
        until = self.paused_until_ms(channel.name)
        if until is None:
            return False
        self.outbox.defer([a.id for a in alerts], self.owner, until)
        return True

    def _pause_s(self, retry_after: Sequence[str], now_ms: int) -> float | None:
        """How long a Retry-After asks the channel to pause (the longest one if several
        URLs answered), at most ``max_backoff``; None when none was given or readable."""
        asked = [
            s
            for s in (retry_after_value_s(v, now_ms / 1000) for v in retry_after)
            if s is not None and s > 0
        ]
        return min(max(asked), self.settings.max_backoff_s) if asked else None

    def _send(
        self, channel: Channel, group: str, alerts: list[AlertRow], titles: Mapping[str, str]
    ) -> DeliveryStats:
        ids = [a.id for a in alerts]
        tz = ZoneInfo(channel.settings.timezone)
        contexts = [
            alert_context(a, titles, tz, channel.name, self._editions(a, titles)) for a in alerts
        ]
        if group.startswith("single:"):
            rendered = channel.templates.render(contexts[0])
        else:
            rendered = channel.templates.render_digest(contexts)
        outcome = channel.notifier.send(rendered.title, rendered.body, message_id(alerts))
        ok, error = outcome.ok, outcome.error
        now_ms = self.clock.now_ms()
        if ok:
            self.outbox.mark_sent(ids, self.owner, now_ms)
            what = f"alert {ids[0]}" if len(ids) == 1 else f"digest of {len(ids)} alerts"
            log.info(
                "channel '%s': sent %s (rule '%s'): %s",
                channel.name,
                what,
                alerts[0].rule if len(ids) == 1 else ", ".join(sorted({a.rule for a in alerts})),
                one_line(alerts[0].item.url) if len(ids) == 1 else rendered.title,
            )
            for a in alerts:
                self._result(channel.name, "sent", (now_ms - a.created_ms) / 1000)
            return DeliveryStats(sent=len(ids), messages=1)
        settings = self.settings
        attempts = max(a.attempts for a in alerts) + 1
        age_s = (now_ms - min(a.created_ms for a in alerts)) / 1000
        dead = attempts >= settings.max_attempts or age_s >= settings.max_age_s
        pause = None if dead else self._pause_s(outcome.retry_after, now_ms)
        if pause is not None:
            # The channel waits as one, and the alerts resume in order: no jitter.
            delay = pause
            self._paused_ms[channel.name] = now_ms + int(pause * 1000)
        else:
            delay = min(settings.max_backoff_s, settings.backoff_s * 2 ** (attempts - 1))
            delay *= 0.8 + 0.4 * self.clock.random()  # ±20 %: retries of many alerts spread
        self.outbox.mark_failed(ids, self.owner, error[:1000], now_ms + int(delay * 1000), dead)
        if pause is not None:
            log.warning(
                "channel '%s': alert %s failed (attempt %d): %s; the receiver asks "
                "to retry after %s s: the channel pauses for %.0f s",
                channel.name,
                ", ".join(map(str, ids)),
                attempts,
                error,
                ", ".join(outcome.retry_after),
                pause,
            )
        elif dead:
            log.error(
                "channel '%s': alert %s is dead after %d attempts: %s",
                channel.name,
                ", ".join(map(str, ids)),
                attempts,
                error,
            )
        else:
            log.warning(
                "channel '%s': alert %s failed (attempt %d, retry in %.1f s): %s",
                channel.name,
                ", ".join(map(str, ids)),
                attempts,
                delay,
                error,
            )
        for _ in alerts:
            self._result(channel.name, "dead" if dead else "failed", 0.0)
        return DeliveryStats(dead=len(ids)) if dead else DeliveryStats(failed=len(ids))

    def _editions(
        self, alert: AlertRow, titles: Mapping[str, str]
    ) -> list[dict[str, object]] | None:
        """Every edition of the alert's story, read when it is sent, so an edition that
        joined while the alert waited is in the message. None: just the item."""
        window = self.rule_editions.get(alert.rule)
        if window is None or not alert.item_id:
            return None
        try:
            found = self.outbox.editions(alert.item_id, alert.rule, window)
        except StoreError as e:  # the message still goes out, with its own link
            log.warning(
                "alert %d: cannot read the other editions: %s",
                alert.id,
                self.masker(str(e)).splitlines()[0],
            )
            return None
        return [
            {
                "feed": titles.get(e.feeds[0], e.feeds[0]) if e.feeds else "",
                "feeds": [titles.get(f, f) for f in e.feeds],
                "url": e.url,
            }
            for e in found
        ] or None

    def _result(self, channel: str, outcome: str, latency_s: float) -> None:
        if self.on_result:
            self.on_result(channel, outcome, latency_s)


def _silence_for(silences: Sequence[Silence], alert: AlertRow) -> Silence | None:
    for s in silences:
        if s.covers(alert.rule, alert.channel):
            return s
    return None
