"""Real local stand-ins for the outside world in tests: feeds, SMTP, webhooks, on 127.0.0.1.

    from tests.support import FeedServer, SmtpSink, WebhookReceiver, rss_feed, rfi_like_items

Every server starts on an ephemeral port in a background thread, works as a context
manager (and through the fixtures in tests.support.fixtures), and keeps its port
across stop()/start() so tests can simulate an outage.

Beside the servers: ``factories`` (items, articles, rule-to-channels routing),
``clock`` (FakeClock), ``cli`` (running commands), ``schema`` (a database at an older
revision).
"""

from .feed_server import FeedServer, RequestRecord
from .net import free_port, wait_until
from .rss import FeedItem, rfc822, rfi_like_items, rfi_title_xml, rss_feed, rss_item
from .smtp import ReceivedMail, SmtpSink
from .webhook import WebhookReceiver, WebhookRequest

__all__ = [
    "FeedItem",
    "FeedServer",
    "ReceivedMail",
    "RequestRecord",
    "SmtpSink",
    "WebhookReceiver",
    "WebhookRequest",
    "free_port",
    "rfc822",
    "rfi_like_items",
    "rfi_title_xml",
    "rss_feed",
    "rss_item",
    "wait_until",
]
