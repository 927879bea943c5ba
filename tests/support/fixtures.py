"""pytest fixtures for the local servers; tests/conftest.py imports them with

    from tests.support.fixtures import *  # noqa: F403

Each fixture gives a fresh, started server per test and stops it afterwards, so no
state (feeds, failures, received mail) leaks between tests; starting one takes a few
milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .feed_server import FeedServer
from .smtp import SmtpSink
from .webhook import WebhookReceiver

__all__ = ["feed_server", "smtp_sink", "webhook_receiver"]


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A running FeedServer on 127.0.0.1 with no feeds yet."""
    with FeedServer() as server:
        yield server


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A running SmtpSink accepting any credentials; ``smtp_sink.apprise_url()`` reaches it."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A running plain-HTTP WebhookReceiver; ``webhook_receiver.apprise_url()`` reaches it."""
    with WebhookReceiver() as receiver:
        yield receiver
