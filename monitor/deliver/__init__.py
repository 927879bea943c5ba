"""Delivery: the outbox's alerts sent through Apprise, one channel at a time.

- ``deliverer``: lease due alerts, group them, send, record each outcome
- ``channels``: one Apprise object per channel, rate limits, the notify-test message
- ``timing``: quiet hours and digest release times (pure)
- ``templates``: the Jinja2 messages
- ``settings``: the frozen records the deliverer is configured with
  (``from_config`` builds them from the config models)
- ``apprise_glue``: console://, the email Message-ID and send-error capture, set up
  by one explicit ``install()``
"""

from monitor.deliver.apprise_glue import install
from monitor.deliver.channels import (
    Channel,
    RateLimiter,
    UrlOutcome,
    build_channels,
    notify_test,
    undeliverable,
)
from monitor.deliver.deliverer import Deliverer, message_id
from monitor.deliver.settings import (
    ChannelSettings,
    DeliverySettings,
    DigestSchedule,
    QuietHours,
    RateLimit,
)
from monitor.deliver.templates import MessageTemplates, Rendered, alert_context

__all__ = [
    "Channel",
    "ChannelSettings",
    "Deliverer",
    "DeliverySettings",
    "DigestSchedule",
    "MessageTemplates",
    "QuietHours",
    "RateLimit",
    "RateLimiter",
    "Rendered",
    "UrlOutcome",
    "alert_context",
    "build_channels",
    "install",
    "message_id",
    "notify_test",
    "undeliverable",
]
