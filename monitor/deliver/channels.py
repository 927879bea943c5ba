"""Channels: one Apprise object per configured channel, its templates and its rate limit;
and the per-URL test message of ``feed-monitor notify-test``."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import apprise
from apprise.manager_plugins import NotificationManager
from apprise.plugins.base import NotifyBase
from apprise.plugins.email.base import NotifyEmail

from monitor.deliver import apprise_glue
from monitor.deliver.settings import ChannelSettings
from monitor.deliver.smtp import KeptConnections, keeping
from monitor.deliver.templates import MessageTemplates
from monitor.secrets import Masker, mask_url
from monitor.types import Notifier, SendOutcome

log = logging.getLogger("monitor.deliver")

_GENERIC_THROTTLE = NotifyBase.request_rate_per_sec
_PLUGINS = NotificationManager()  # Apprise's own registry of schemes (a shared singleton)


class RateLimiter:
    """At most ``count`` messages in any window of ``per`` seconds (a sliding log).

    Times are the clock's monotonic seconds, passed in by the caller."""

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

    def adopt(self, previous: RateLimiter) -> None:
        """Carry on from another limiter's history (the same channel before a reload)."""
        self._sent = previous._sent


class AppriseNotifier:
    """``types.Notifier`` through one Apprise object (every URL of a channel). Its email
    URLs keep their SMTP connections open from one message to the next until ``close()``.
    """

    def __init__(self, obj: apprise.Apprise, body_format: str, masker: Masker) -> None:
        self.apprise = obj
        self.format = apprise.NotifyFormat(body_format)
        self.masker = masker
        self.kept = KeptConnections()

    def close(self) -> None:
        """Quit the SMTP connections kept since the last ``close()``."""
        self.kept.close()

    def send(self, title: str, body: str, message_id: str) -> SendOutcome:
        with apprise_glue.captured(message_id) as heard, keeping(self.kept):
            try:
                ok = bool(self.apprise.notify(title=title, body=body, body_format=self.format))
            except Exception as e:  # a plugin that raises is a failed send, not a crash
                ok = False
                heard.lines.append(f"{e.__class__.__name__}: {e}")
        if ok:
            return SendOutcome(True)
        details = "\n".join(heard.lines).strip()
        return SendOutcome(
            False,
            self.masker(details.splitlines()[-1] if details else "notification failed"),
            tuple(heard.retry_after),
        )


@dataclass(frozen=True)
class Channel:
    name: str
    settings: ChannelSettings
    apprise: apprise.Apprise = field(repr=False)  # its plugins, for notify-test
    notifier: Notifier = field(repr=False)
    templates: MessageTemplates = field(repr=False)
    limiter: RateLimiter | None = None


def build_channels(
    settings: Mapping[str, ChannelSettings], masker: Masker, source: str | None = None
) -> dict[str, Channel]:
    """A channel for each of ``settings``; ``source`` (the config file) locates template
    errors. Every secret of the channels' URLs is added to ``masker``."""
    apprise_glue.install()  # console:// must be known before its URL is read
    out = {}
    for name, ch in settings.items():
        obj = apprise.Apprise()
        for url in ch.urls:
            masker.add_url(url)
            if not obj.add(url):
                log.error("channel '%s': Apprise cannot use URL %s", name, masker(mask_url(url)))
        for plugin in obj:
            # Apprise sleeps 5.5 s between two messages of one plugin unless the plugin
            # states its service's own limit. Keep those; drop the generic pause, which
            # would make a burst of alerts take minutes (channels set their own limits).
            if plugin.request_rate_per_sec == _GENERIC_THROTTLE:
                plugin.request_rate_per_sec = 0
        limiter = RateLimiter(ch.rate_limit.count, ch.rate_limit.per_s) if ch.rate_limit else None
        out[name] = Channel(
            name,
            ch,
            obj,
            AppriseNotifier(obj, ch.body_format, masker),
            MessageTemplates.for_channel(ch, source),
            limiter,
        )
    return out


@dataclass(frozen=True)
class UrlOutcome:
    url: str  # masked
    ok: bool
    detail: str


def notify_test(channel: Channel, masker: Masker, title: str, body: str) -> list[UrlOutcome]:
    """Send a test message through each URL of a channel on its own; report each."""
    out = []
    fmt = apprise.NotifyFormat(channel.settings.body_format)
    for plugin in channel.apprise:
        shown = masker(str(plugin.url(privacy=True)))
        with apprise_glue.captured() as heard:
            try:
                ok = bool(plugin.notify(title=title, body=body, body_format=fmt))
            except Exception as e:  # a plugin that raises is a failed URL, not a crash
                ok = False
                heard.lines.append(f"{e.__class__.__name__}: {e}")
        details = "\n".join(heard.lines).strip()
        out.append(UrlOutcome(shown, ok, masker(details.splitlines()[-1]) if details else ""))
    return out


def undeliverable(url: str) -> str | None:
    """Why nothing sent through ``url`` could ever arrive, in Apprise's words (secrets
    not masked: the caller masks), or None. ``check`` refuses such a channel: a scheme
    Apprise does not know, a URL its plugin cannot read, an email URL left with no
    recipient (its send would fail with "There are no Email recipients")."""
    apprise_glue.install()
    with apprise_glue.captured() as said:
        obj = apprise.Apprise()
        added = obj.add(url)
    if not added:
        reason = "; ".join(said.lines) or "Apprise cannot read this URL"
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if scheme.lower() not in _PLUGINS:
            return (
                f"unknown Apprise scheme '{scheme}' ({reason})"
                if scheme
                else f"not a URL (no scheme://; {reason})"
            )
        return reason
    for plugin in obj:
        if isinstance(plugin, NotifyEmail) and not plugin.targets:
            return "; ".join([*said.lines, "There are no Email recipients to notify"])
    return None
