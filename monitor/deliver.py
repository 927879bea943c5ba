"""Delivery: leases pending alerts from the outbox and sends them through Apprise.

One Apprise object per channel, so each channel has its own outcome. A
failed send is retried with exponential back-off and jitter; after
``max_attempts`` the alert waits as a dead letter.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import apprise
from apprise.plugins.base import NotifyBase

from monitor import console  # noqa: F401  (registers console://)
from monitor.config import ChannelConfig, DeliveryConfig
from monitor.secrets import Masker
from monitor.store import AlertRow, Store

log = logging.getLogger("monitor.deliver")

_GENERIC_THROTTLE = NotifyBase.request_rate_per_sec

@dataclass(frozen=True)
class Message:
    title: str
    body: str


def render_message(alert: AlertRow, feed_titles: Mapping[str, str]) -> Message:
    """The first message shape: title, link, feeds, rule, keywords, published time."""
    item = alert.item
    published = datetime.fromtimestamp(item.published_ms / 1000, UTC)
    feeds = ", ".join(feed_titles.get(f, f) for f in alert.feeds) or item.feed_id
    lines = [
        item.title,
        item.url,
        "",
        f"Feed: {feeds}",
        f"Rule: {alert.rule}",
        f"Keywords: {', '.join(alert.keywords) or '-'}",
        f"Published: {published:%Y-%m-%d %H:%M} UTC",
    ]
    if alert.snippet:
        lines += ["", alert.snippet]
    return Message(title=f"[{alert.rule}] {item.title}", body="\n".join(lines))


@dataclass
class Channel:
    name: str
    config: ChannelConfig
    apprise: apprise.Apprise = field(repr=False)


def build_channels(configs: Mapping[str, ChannelConfig], masker: Masker) -> dict[str, Channel]:
    out = {}
    for name, cfg in configs.items():
        obj = apprise.Apprise()
        for url in cfg.urls:
            masker.add_url(url)
            if not obj.add(url):
                log.error("channel '%s': Apprise cannot use URL %s", name, masker(url))
        for plugin in obj:
            # Apprise sleeps 5.5 s between two messages of one plugin unless the plugin
            # states its service's own limit. Keep those; drop the generic pause, which
            # would make a burst of alerts take minutes (channels set their own limits).
            if plugin.request_rate_per_sec == _GENERIC_THROTTLE:
                plugin.request_rate_per_sec = 0
        out[name] = Channel(name, cfg, obj)
    return out


@dataclass
class DeliveryStats:
    sent: int = 0
    failed: int = 0
    dead: int = 0


class Deliverer:
    """Sends what the outbox holds; safe to run from one job in several processes."""

    def __init__(self, store: Store, owner: str, config: DeliveryConfig,
                 channels: dict[str, Channel], masker: Masker,
                 feed_titles: Callable[[], Mapping[str, str]] = dict,
                 on_result: Callable[[str, str, float], None] | None = None) -> None:
        self.store = store
        self.owner = owner
        self.config = config
        self.channels = channels
        self.masker = masker
        self.feed_titles = feed_titles
        self.on_result = on_result
        self.stopping = threading.Event()

    def deliver_due(self, now_ms: int | None = None) -> DeliveryStats:
        """Lease due alerts and send them; returns what happened."""
        stats = DeliveryStats()
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        lease_ms = int(max(60.0, self.config.interval * 10) * 1000)
        batch = self.store.lease_alerts(self.owner, now_ms, self.config.batch, lease_ms,
                                        list(self.channels))
        titles = self.feed_titles()
        for alert in batch:
            if self.stopping.is_set():
                # Hand the rest back at once instead of waiting for their lease to expire.
                self.store.release_alert_leases(self.owner)
                break
            self._send(alert, titles, stats)
        return stats

    def _send(self, alert: AlertRow, titles: Mapping[str, str], stats: DeliveryStats) -> None:
        channel = self.channels[alert.channel]
        msg = render_message(alert, titles)
        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
            try:
                ok = bool(channel.apprise.notify(title=msg.title, body=msg.body))
            except Exception as e:  # a plugin that raises is a failed send, not a crash
                ok = False
                captured.write(f"{e.__class__.__name__}: {e}\n")
            details = captured.getvalue().strip()
        now_ms = int(time.time() * 1000)
        if ok:
            self.store.mark_sent(alert.id, self.owner, now_ms)
            stats.sent += 1
            log.info("channel '%s': sent alert %d (rule '%s'): %s", alert.channel, alert.id,
                     alert.rule, alert.item.url)
            self._result(alert.channel, "sent", (now_ms - alert.created_ms) / 1000)
            return
        attempts = alert.attempts + 1
        error = self.masker(details.splitlines()[-1] if details else "notification failed")
        dead = attempts >= self.config.max_attempts
        delay = min(self.config.max_backoff, self.config.backoff * 2 ** (attempts - 1))
        delay *= random.uniform(0.8, 1.2)
        self.store.mark_failed(alert.id, self.owner, error[:1000], now_ms + int(delay * 1000),
                               dead)
        if dead:
            stats.dead += 1
            log.error("channel '%s': alert %d is dead after %d attempts: %s", alert.channel,
                      alert.id, attempts, error)
            self._result(alert.channel, "dead", 0.0)
        else:
            stats.failed += 1
            log.warning("channel '%s': alert %d failed (attempt %d, retry in %.1f s): %s",
                        alert.channel, alert.id, attempts, delay, error)
            self._result(alert.channel, "failed", 0.0)

    def _result(self, channel: str, outcome: str, latency_s: float) -> None:
        if self.on_result:
            self.on_result(channel, outcome, latency_s)
