"""Email delivery over kept SMTP connections, against a real aiosmtpd server on 127.0.0.1.

The messages of one delivery run share one connection per mail server and login (plain
SMTP and STARTTLS with a local certificate); a connection the server drops mid-run is
opened again without losing or doubling a message; a refused login fails the send as it
always did; the run's end quits what it kept.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.deliver import build_channels
from monitor.deliver.settings import ChannelSettings
from monitor.deliver.smtp import KeptConnections, tls_context
from monitor.secrets import Masker
from monitor.store import Store
from tests.support import SmtpSink
from tests.support.clock import FakeClock
from tests.support.hostile import tls_files
from tests.test_delivery import TITLES, attempts, enqueue, make_deliverer


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'monitor.db'}")
    yield store
    store.close()


@pytest.fixture
def tls_sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    """A sink offering STARTTLS with the local certificate, which clients trust (through
    SSL_CERT_FILE, as the default context reads it): the certificate is verified."""
    cert, key = tls_files()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with SmtpSink(tls=context) as sink:
        yield sink


def starttls_url(sink: SmtpSink) -> str:
    return sink.apprise_url().replace("mailto://", "mailtos://") + "&mode=starttls"


def message_ids(sink: SmtpSink) -> list[str]:
    return [str(m.message["Message-ID"]) for m in sink.mails]


@pytest.mark.parametrize("parallel", [1, 4])
@pytest.mark.parametrize("secure", [False, True], ids=["plain", "starttls"])
def test_the_messages_of_one_run_share_one_connection(
    sqlite_store: Store,
    smtp_sink: SmtpSink,
    tls_sink: SmtpSink,
    parallel: int,
    secure: bool,
) -> None:
    sink = tls_sink if secure else smtp_sink
    clock = FakeClock()
    enqueue(sqlite_store, ["mail"], 12, clock.now_ms())
    url = starttls_url(sink) if secure else sink.apprise_url()
    deliverer = make_deliverer(sqlite_store, clock, {"mail": url}, parallel=parallel)
    assert deliverer.deliver_due().sent == 12
    assert sink.connections == 1
    assert sorted(m.subject for m in sink.mails) == sorted(TITLES[:12])
    assert len(set(message_ids(sink))) == 12
    # The run's end quit the connection: nothing is left to close.
    assert deliverer.channels["mail"].notifier.kept.close() == 0  # type: ignore[attr-defined]

    enqueue(sqlite_store, ["mail"], 3, clock.now_ms(), start=12)
    assert deliverer.deliver_due().sent == 3
    assert sink.connections == 2  # a run of its own: a connection of its own


def test_starttls_checks_the_certificate(sqlite_store: Store, tls_sink: SmtpSink) -> None:
    clock = FakeClock()
    enqueue(sqlite_store, ["mail"], 1, clock.now_ms())
    # The shared context is not a lax one: a certificate no one trusts fails the send.
    deliverer = make_deliverer(sqlite_store, clock, {"mail": starttls_url(tls_sink)})
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SSL_CERT_FILE")
        stats = deliverer.deliver_due()
    assert (stats.failed, tls_sink.mails) == (1, [])


@pytest.mark.parametrize("with_421", [False, True], ids=["closed", "421-closing"])
def test_a_connection_dropped_mid_run_is_opened_again_and_nothing_is_sent_twice(
    sqlite_store: Store, smtp_sink: SmtpSink, with_421: bool
) -> None:
    clock = FakeClock()
    enqueue(sqlite_store, ["mail"], 10, clock.now_ms())
    smtp_sink.drop_after(3, with_421=with_421)
    deliverer = make_deliverer(sqlite_store, clock, {"mail": smtp_sink.apprise_url()}, parallel=1)
    stats = deliverer.deliver_due()
    assert (stats.sent, stats.failed) == (10, 0)
    ids = message_ids(smtp_sink)
    assert len(ids) == len(set(ids)) == 10
    assert [m.subject for m in smtp_sink.mails] == TITLES[:10]
    assert smtp_sink.connections == 4  # 3 + 3 + 3 + 1 messages


def test_a_connection_lost_after_data_fails_that_send_which_is_retried_not_doubled(
    sqlite_store: Store, smtp_sink: SmtpSink
) -> None:
    """After DATA the server may hold the message: no resend on the spot; the message
    waits for its retry like any failed send, and arrives once."""
    clock = FakeClock()
    enqueue(sqlite_store, ["mail"], 5, clock.now_ms())
    deliverer = make_deliverer(
        sqlite_store, clock, {"mail": smtp_sink.apprise_url()}, parallel=1, backoff_s=10
    )
    smtp_sink.reject_next(1, "421 4.3.0 Closing connection", after=2)  # the third message
    stats = deliverer.deliver_due()
    assert (stats.sent, stats.failed) == (4, 1)
    assert smtp_sink.connections == 2  # the one that failed is not reused
    clock.advance(60)
    assert deliverer.deliver_due().sent == 1
    ids = message_ids(smtp_sink)
    assert len(ids) == len(set(ids)) == 5
    assert sorted(m.subject for m in smtp_sink.mails) == sorted(TITLES[:5])


def test_a_refused_login_fails_each_send_and_ends_as_a_dead_letter(
    tmp_path: Path, sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    enqueue(sqlite_store, ["mail"], 2, clock.now_ms())
    with SmtpSink(credentials={"user": "right-password"}) as strict:
        url = strict.apprise_url(password="Wr0ng-pa55word")
        deliverer = make_deliverer(
            sqlite_store, clock, {"mail": url}, max_attempts=2, backoff_s=10, max_backoff_s=10
        )
        with caplog.at_level(logging.DEBUG):
            assert deliverer.deliver_due().failed == 2
            clock.advance(60)
            assert deliverer.deliver_due().dead == 2
        assert strict.mails == []
        # Each send connects and tries PLAIN, then LOGIN; a refused login keeps nothing.
        assert [ok for _, _, ok in strict.auth_attempts] == [False] * 8
    assert attempts(tmp_path) == {"mail": [2, 2]}
    assert "Wr0ng-pa55word" not in caplog.text
    errors = {r.getMessage() for r in caplog.records if r.name == "monitor.deliver"}
    assert any("Connection error while submitting email" in e for e in errors)


def test_the_tls_context_is_made_once_per_process() -> None:
    assert tls_context(True) is tls_context(True)
    assert tls_context(False) is tls_context(False)
    assert tls_context(False).verify_mode == ssl.CERT_NONE
    assert tls_context(True).verify_mode == ssl.CERT_REQUIRED


def test_outside_a_run_each_message_has_its_connection_and_quits_it(
    smtp_sink: SmtpSink,
) -> None:
    """notify-test and a notifier's sends after ``close()``: nothing stays open."""
    masker = Masker()
    channels = build_channels(
        {"mail": ChannelSettings("mail", (smtp_sink.apprise_url(),), "text")}, masker
    )
    notifier = channels["mail"].notifier
    assert notifier.send("one", "body", "<one@feed-monitor>").ok
    assert notifier.send("two", "body", "<two@feed-monitor>").ok
    assert smtp_sink.connections == 1
    notifier.close()
    assert notifier.send("three", "body", "<three@feed-monitor>").ok
    assert smtp_sink.connections == 2
    assert message_ids(smtp_sink) == [
        "<one@feed-monitor>",
        "<two@feed-monitor>",
        "<three@feed-monitor>",
    ]
    assert isinstance(notifier.kept, KeptConnections)  # type: ignore[attr-defined]
    assert notifier.kept.close() == 1  # type: ignore[attr-defined]
