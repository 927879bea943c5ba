"""Delivery: leases due alerts from the outbox and sends them through Apprise.

One Apprise object per channel, so each channel has its own outcome. Per alert:
an active silence marks it silenced (never sent); a digest or quiet hours hold
it until its release time, when everything held together goes out as one
message; a channel's rate limit defers what exceeds it (nothing is dropped).
A failed send is retried with exponential back-off and jitter; after
``max_attempts`` or ``max_age`` the alert waits as a dead letter.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import make_msgid
from zoneinfo import ZoneInfo

import apprise
import apprise.plugins.email.base as _apprise_email
from apprise.plugins.base import NotifyBase
from sqlalchemy.exc import SQLAlchemyError

from monitor import console  # noqa: F401  (registers console://)
from monitor.config import ChannelConfig, DeliveryConfig, DigestConfig, QuietHours
from monitor.schedule.cron import next_cron_time
from monitor.secrets import Masker, mask_url
from monitor.store import Store
from monitor.templates import MessageTemplates, Rendered, alert_context
from monitor.types import AlertRow, Silence

log = logging.getLogger("monitor.deliver")

_GENERIC_THROTTLE = NotifyBase.request_rate_per_sec

# Apprise's email plugin makes a random Message-ID. Ours is derived from the alert,
# so a resend after a crash carries the same id and mail clients can tell. Several
# messages go out at once: each send's id and its log lines live in a context variable,
# which Apprise copies into the worker threads it sends from.
_sending: ContextVar[tuple[list[str], str | None] | None] = ContextVar("_sending",
                                                                       default=None)


def _alert_msgid(idstring: str | None = None, domain: str | None = None) -> str:
    sending = _sending.get()
    return (sending and sending[1]) or make_msgid(idstring, domain)


_apprise_email.make_msgid = _alert_msgid  # type: ignore[attr-defined]


class _SendCapture(logging.Handler):
    """Apprise's warnings, kept per send: what a failed send says about itself.

    apprise.LogCapture adds a handler to the shared logger for the length of a call, so
    two sends at once would each read the other's lines; this one handler, installed
    once, files each line under the send whose context logged it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        sending = _sending.get()
        if sending is not None:
            sending[0].append(self.format(record))


_apprise_log = logging.getLogger("apprise")
_apprise_log.addHandler(_SendCapture())


@contextmanager
def _captured(message_id: str | None = None) -> Iterator[list[str]]:
    """Apprise's warnings logged for the send inside the block (and the Message-ID its
    email plugin is to use)."""
    if _apprise_log.getEffectiveLevel() > logging.WARNING:
        _apprise_log.setLevel(logging.WARNING)
    lines: list[str] = []
    token = _sending.set((lines, message_id))
    try:
        yield lines
    finally:
        _sending.reset(token)


def message_id(alerts: Sequence[AlertRow]) -> str:
    first = alerts[0]
    if len(alerts) == 1:
        return f"<alert-{first.id}.{first.created_ms}@feed-monitor>"
    return f"<digest-{first.id}-{alerts[-1].id}.{len(alerts)}@feed-monitor>"


@dataclass
class Channel:
    name: str
    config: ChannelConfig
    apprise: apprise.Apprise = field(repr=False)
    templates: MessageTemplates = field(repr=False)
    limiter: RateLimiter | None = None


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


class RateLimiter:
    """At most ``count`` messages in any window of ``per`` seconds (a sliding log)."""

    def __init__(self, count: int, per: float) -> None:
        self.count = count
        self.per = per
        self._sent: deque[float] = deque()

    def wait(self, now: float) -> float:
        """Seconds until one more message may go; 0 means now."""
        while self._sent and self._sent[0] <= now - self.per:
            self._sent.popleft()
        if len(self._sent) < self.count:
            return 0.0
        return self._sent[0] + self.per - now

    def record(self, now: float) -> None:
        self._sent.append(now)


def build_channels(configs: Mapping[str, ChannelConfig], masker: Masker,
                   source: str | None = None) -> dict[str, Channel]:
    out = {}
    for name, cfg in configs.items():
        obj = apprise.Apprise()
        for url in cfg.urls:
            masker.add_url(url)
            if not obj.add(url):
                log.error("channel '%s': Apprise cannot use URL %s", name, masker(mask_url(url)))
        for plugin in obj:
            # Apprise sleeps 5.5 s between two messages of one plugin unless the plugin
            # states its service's own limit. Keep those; drop the generic pause, which
            # would make a burst of alerts take minutes (channels set their own limits).
            if plugin.request_rate_per_sec == _GENERIC_THROTTLE:
                plugin.request_rate_per_sec = 0
        templates = MessageTemplates(
            name, cfg.body_format(), cfg.language, cfg.title_template, cfg.body_template,
            cfg.digest_title_template, cfg.digest_body_template, source)
        limiter = RateLimiter(cfg.rate_limit.count, cfg.rate_limit.per) \
            if cfg.rate_limit else None
        out[name] = Channel(name, cfg, obj, templates, limiter)
    return out


@dataclass
class DeliveryStats:
    sent: int = 0  # alerts delivered (a digest counts all it carried)
    messages: int = 0
    failed: int = 0
    dead: int = 0
    held: int = 0
    silenced: int = 0
    deferred: int = 0
    leased: int = 0

    def add(self, other: DeliveryStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def touched(self) -> int:
        return self.sent + self.failed + self.dead + self.held + self.silenced


def _in_quiet(q: QuietHours, at: datetime) -> datetime | None:
    """The end of the quiet period containing ``at``, or None when ``at`` is not quiet."""
    local = at.astimezone(ZoneInfo(q.timezone))
    sh, sm = map(int, q.start.split(":"))
    eh, em = map(int, q.end.split(":"))
    minute = local.hour * 60 + local.minute
    start, end = sh * 60 + sm, eh * 60 + em
    if start == end:
        return None
    quiet = start <= minute < end if start < end else minute >= start or minute < end
    if not quiet:
        return None
    end_day = local.date()
    if start > end and minute >= start:
        end_day += timedelta(days=1)
    end_local = datetime(end_day.year, end_day.month, end_day.day, eh, em,
                         tzinfo=ZoneInfo(q.timezone))
    return end_local.astimezone(UTC)


class Deliverer:
    """Sends what the outbox holds; safe to run from one job in several processes."""

    def __init__(self, store: Store, owner: str, config: DeliveryConfig,
                 channels: dict[str, Channel], masker: Masker,
                 feed_titles: Callable[[], Mapping[str, str]] = dict,
                 on_result: Callable[[str, str, float], None] | None = None,
                 rule_digests: Mapping[str, DigestConfig] | None = None,
                 rule_editions: Mapping[str, int] | None = None) -> None:
        self.store = store
        self.owner = owner
        self.config = config
        self.channels = channels
        self.masker = masker
        self.feed_titles = feed_titles
        self.on_result = on_result
        self.rule_digests = dict(rule_digests or {})
        # rule -> cross-edition window (ms): its messages list every edition of the story.
        self.rule_editions = dict(rule_editions or {})
        self.stopping = threading.Event()

    def adopt_limits(self, previous: Deliverer) -> None:
        """Keep the rate-limit history across a config reload."""
        for name, ch in self.channels.items():
            old = previous.channels.get(name)
            if ch.limiter and old and old.limiter:
                ch.limiter._sent = old.limiter._sent

    # -- the job -------------------------------------------------------------------------

    def deliver_due(self, now_ms: int | None = None) -> DeliveryStats:
        """Lease due alerts and act on them; returns what happened."""
        stats = DeliveryStats()
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        lease_s = self.config.lease_seconds()
        # Sending stops at half the lease and the rest goes back (below): once the lease
        # is over another daemon may take these alerts, and both would send them.
        send_until = time.monotonic() + lease_s / 2
        batch = self.store.outbox.lease(self.owner, now_ms, self.config.batch,
                                        int(lease_s * 1000), list(self.channels))
        if not batch:
            return stats
        stats.leased = len(batch)
        silences = [s for s in self.store.outbox.silences(now_ms) if s.active(now_ms)]
        groups: dict[tuple[str, str], list[AlertRow]] = {}
        for alert in batch:
            silence = _silence_for(silences, alert)
            if silence is not None:
                self.store.outbox.mark_silenced([alert.id], self.owner, silence.id)
                stats.silenced += 1
                log.info("channel '%s': alert %d (rule '%s') silenced by silence %d",
                         alert.channel, alert.id, alert.rule, silence.id)
                continue
            group = self._group(alert, now_ms)
            if group is None:  # held back until its release time
                stats.held += 1
                continue
            groups.setdefault((alert.channel, group), []).append(alert)
        self._send_all(list(groups.items()), self.feed_titles(), stats, send_until)
        # Whatever was leased and not acted on (stopping) goes back at once.
        self.store.outbox.release_leases(self.owner)
        return stats

    def _group(self, alert: AlertRow, now_ms: int) -> str | None:
        """The message an alert goes out in ('single:<id>' or a digest), or None if held."""
        channel = self.channels[alert.channel]
        digest = self.rule_digests.get(alert.rule) or channel.config.digest
        digest_group = f"digest:rule:{alert.rule}" if alert.rule in self.rule_digests \
            else "digest:channel"
        if alert.status == "held":  # released now: with the others held alongside it
            return digest_group if digest else "quiet"
        if alert.attempts > 0:  # a retry of something already released
            return digest_group if digest else f"single:{alert.id}"
        now = datetime.fromtimestamp(now_ms / 1000, UTC)
        release: datetime | None = None
        if digest is not None:
            release = self._digest_release(alert, digest, now_ms)
        quiet = channel.config.quiet_hours
        if quiet is not None:
            end = _in_quiet(quiet, release or now)
            if end is not None:
                release = end
        if release is not None and release > now:
            self.store.outbox.hold([alert.id], self.owner, int(release.timestamp() * 1000))
            log.info("channel '%s': alert %d (rule '%s') held until %s", alert.channel,
                     alert.id, alert.rule, release.isoformat(timespec="seconds"))
            return None
        return digest_group if digest else f"single:{alert.id}"

    def _digest_release(self, alert: AlertRow, digest: DigestConfig, now_ms: int) -> datetime:
        created = datetime.fromtimestamp(alert.created_ms / 1000, UTC)
        if digest.schedule:
            return next_cron_time(digest.schedule, digest.timezone, created)
        # A grouping window opens with the first alert and collects those that follow.
        rule = alert.rule if alert.rule in self.rule_digests else None
        opened = self.store.outbox.held_release(alert.channel, rule, now_ms)
        if opened is not None:
            return datetime.fromtimestamp(opened / 1000, UTC)
        assert digest.window is not None
        return created + timedelta(seconds=digest.window)

    def _send_all(self, messages: list[tuple[tuple[str, str], list[AlertRow]]],
                  titles: Mapping[str, str], stats: DeliveryStats, send_until: float) -> None:
        """Send the messages of one batch, up to ``delivery.parallel`` at once, in their
        order; a channel's rate limit is applied as each is handed out."""

        def stop() -> bool:
            return self.stopping.is_set() or time.monotonic() > send_until

        def send(channel: Channel, group: str, alerts: list[AlertRow]) -> DeliveryStats:
            own = DeliveryStats()
            if not stop():  # else left leased: handed back with the rest
                self._send(channel, group, alerts, titles, own)
            return own

        workers = min(self.config.parallel, len(messages))
        if workers <= 1:
            for (channel_name, group), alerts in messages:
                if stop():
                    break
                channel = self.channels[channel_name]
                if self._admit(channel, alerts, stats):
                    self._send(channel, group, alerts, titles, stats)
            return
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
                if not self._admit(channel, alerts, stats):
                    slots.release()
                    continue
                future = pool.submit(send, channel, group, alerts)
                future.add_done_callback(lambda _: slots.release())
                pending.append(future)
        finally:
            for future in pending:
                stats.add(future.result())

    def _admit(self, channel: Channel, alerts: list[AlertRow], stats: DeliveryStats) -> bool:
        """Whether the channel's rate limit lets one more message go now (it is counted);
        if not, the alerts are deferred until it does."""
        if channel.limiter is None:
            return True
        now = time.monotonic()
        wait = channel.limiter.wait(now)
        if wait > 0:
            later = int((time.time() + wait) * 1000)
            self.store.outbox.defer([a.id for a in alerts], self.owner, later)
            stats.deferred += len(alerts)
            return False
        channel.limiter.record(now)
        return True

    def _send(self, channel: Channel, group: str, alerts: list[AlertRow],
              titles: Mapping[str, str], stats: DeliveryStats) -> None:
        ids = [a.id for a in alerts]
        tz = ZoneInfo(channel.config.timezone)
        contexts = [alert_context(a, titles, tz, channel.name, self._editions(a, titles))
                    for a in alerts]
        if group.startswith("single:"):
            rendered = channel.templates.render(contexts[0])
        else:
            rendered = channel.templates.render_digest(contexts)
        ok, error = self._notify(channel, rendered, message_id(alerts))
        now_ms = int(time.time() * 1000)
        if ok:
            self.store.outbox.mark_sent(ids, self.owner, now_ms)
            stats.sent += len(ids)
            stats.messages += 1
            what = f"alert {ids[0]}" if len(ids) == 1 else f"digest of {len(ids)} alerts"
            log.info("channel '%s': sent %s (rule '%s'): %s", channel.name, what,
                     alerts[0].rule if len(ids) == 1 else ", ".join(sorted({a.rule for a in
                                                                            alerts})),
                     alerts[0].item.url if len(ids) == 1 else rendered.title)
            for a in alerts:
                self._result(channel.name, "sent", (now_ms - a.created_ms) / 1000)
            return
        attempts = max(a.attempts for a in alerts) + 1
        age_s = (now_ms - min(a.created_ms for a in alerts)) / 1000
        dead = attempts >= self.config.max_attempts or age_s >= self.config.max_age
        delay = min(self.config.max_backoff, self.config.backoff * 2 ** (attempts - 1))
        delay *= random.uniform(0.8, 1.2)
        self.store.outbox.mark_failed(ids, self.owner, error[:1000], now_ms + int(delay * 1000),
                                    dead)
        if dead:
            stats.dead += len(ids)
            log.error("channel '%s': alert %s is dead after %d attempts: %s", channel.name,
                      ", ".join(map(str, ids)), attempts, error)
        else:
            stats.failed += len(ids)
            log.warning("channel '%s': alert %s failed (attempt %d, retry in %.1f s): %s",
                        channel.name, ", ".join(map(str, ids)), attempts, delay, error)
        for _ in alerts:
            self._result(channel.name, "dead" if dead else "failed", 0.0)

    def _editions(self, alert: AlertRow, titles: Mapping[str, str]
                  ) -> list[dict[str, object]] | None:
        """Every edition of the alert's story, read when it is sent, so an edition that
        joined while the alert waited is in the message. None: just the item."""
        window = self.rule_editions.get(alert.rule)
        if window is None or not alert.item_id:
            return None
        try:
            found = self.store.outbox.editions(alert.item_id, alert.rule, window)
        except SQLAlchemyError as e:  # the message still goes out, with its own link
            log.warning("alert %d: cannot read the other editions: %s", alert.id,
                        self.masker(str(e)).splitlines()[0])
            return None
        return [{"feed": titles.get(e.feeds[0], e.feeds[0]) if e.feeds else "",
                 "feeds": [titles.get(f, f) for f in e.feeds], "url": e.url}
                for e in found] or None

    def _notify(self, channel: Channel, msg: Rendered, msgid: str) -> tuple[bool, str]:
        fmt = apprise.NotifyFormat(channel.config.body_format())
        with _captured(msgid) as captured:
            try:
                ok = bool(channel.apprise.notify(title=msg.title, body=msg.body,
                                                 body_format=fmt))
            except Exception as e:  # a plugin that raises is a failed send, not a crash
                ok = False
                captured.append(f"{e.__class__.__name__}: {e}")
        details = "\n".join(captured).strip()
        error = self.masker(details.splitlines()[-1] if details else "notification failed")
        return ok, error

    def _result(self, channel: str, outcome: str, latency_s: float) -> None:
        if self.on_result:
            self.on_result(channel, outcome, latency_s)


def _silence_for(silences: Sequence[Silence], alert: AlertRow) -> Silence | None:
    for s in silences:
        if s.covers(alert.rule, alert.channel):
            return s
    return None


@dataclass(frozen=True)
class UrlOutcome:
    url: str  # masked
    ok: bool
    detail: str


def notify_test(channel: Channel, masker: Masker, title: str, body: str) -> list[UrlOutcome]:
    """Send a test message through each URL of a channel on its own; report each."""
    out = []
    fmt = apprise.NotifyFormat(channel.config.body_format())
    for plugin in channel.apprise:
        shown = masker(str(plugin.url(privacy=True)))
        with _captured() as captured:
            try:
                ok = bool(plugin.notify(title=title, body=body, body_format=fmt))
            except Exception as e:
                ok = False
                captured.append(f"{e.__class__.__name__}: {e}")
        details = "\n".join(captured).strip()
        out.append(UrlOutcome(shown, ok, masker(details.splitlines()[-1]) if details else ""))
    return out
