"""The local test servers behave like the real things the daemon talks to.

Every check goes through real clients: requests and feedparser for feeds, Apprise for
mail (over SMTP to aiosmtpd) and for webhooks (json:// and jsons://).
"""

from __future__ import annotations

import calendar
import shutil
import socket
import threading
from email.utils import formatdate

import apprise
import feedparser
import pytest
import requests

from tests.support import (
    FeedItem,
    FeedServer,
    SmtpSink,
    WebhookReceiver,
    free_port,
    rfi_like_items,
    rfi_title_xml,
    rss_feed,
    rss_item,
    wait_until,
)

# Registers the feed_server, smtp_sink and webhook_receiver fixtures here whether or not
# conftest imports them too (pytest loads a plugin module once).

pytestmark = pytest.mark.timeout(30)

START_MS = 1679494503000
CHINESE_TITLE = '中俄关系"特殊"：乌克兰问题'
CHINESE_BODY = "习近平结束访俄，普京称中俄关系进入新时代。烏克蘭 & <乌克兰>"


def notify(url: str, title: str = CHINESE_TITLE, body: str = CHINESE_BODY) -> bool:
    """One notification through a fresh Apprise object, as the deliverer sends them."""
    sender = apprise.Apprise()
    assert sender.add(url), f"Apprise rejected the URL {url}"
    return bool(sender.notify(title=title, body=body))


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except ConnectionRefusedError:
        return True
    return False


# helpers --------------------------------------------------------------------------------


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_until_returns_the_truthy_value_and_times_out_with_the_message() -> None:
    box: list[int] = []
    threading.Timer(0.05, box.append, args=(7,)).start()
    assert wait_until(lambda: box, timeout=2) == [7]
    with pytest.raises(TimeoutError, match="never"):
        wait_until(lambda: False, timeout=0.05, message="never")


# RSS builder ----------------------------------------------------------------------------


def test_rfi_like_items_parse_back_as_written() -> None:
    items = rfi_like_items(30, START_MS)
    parsed = feedparser.parse(rss_feed(reversed(items)).encode("utf-8"))
    assert not parsed.bozo
    assert parsed.feed.title == "RFI - 中国"
    entries = list(reversed(parsed.entries))
    assert [e.title for e in entries] == [i.title for i in items]
    assert [e.link for e in entries] == [i.link for i in items]
    assert [calendar.timegm(e.published_parsed) * 1000 for e in entries] == [
        i.pub_ms for i in items
    ]
    assert "<span>" in entries[0].description and "22/03/2023 - 14:15" in entries[0].description
    assert len({i.link for i in items}) == len({i.title for i in items}) == 30
    assert any("乌克兰" in i.title for i in items) and any("中俄" in i.title for i in items)


def test_rfi_like_items_are_deterministic_and_can_share_timestamps() -> None:
    assert rfi_like_items(12, START_MS) == rfi_like_items(12, START_MS)
    grouped = rfi_like_items(10, START_MS, per_stamp=5)
    assert {i.pub_ms for i in grouped} == {START_MS, START_MS + 600_000}


@pytest.mark.parametrize(
    "title_xml, expected",
    [
        # Escaped once: the reader sees the quotes.
        (None, '北京与莫斯科的"特殊"关系'),
        # RFI's double escape: feedparser keeps the entity, as the archives show.
        (rfi_title_xml('北京与莫斯科的"特殊"关系'), "北京与莫斯科的&quot;特殊&quot;关系"),
        ("<![CDATA[A &amp; B]]>", "A &amp; B"),
    ],
)
def test_item_titles_reach_the_parser_as_intended(title_xml: str | None, expected: str) -> None:
    item = rss_item(
        '北京与莫斯科的"特殊"关系',
        "https://www.rfi.fr/cn/x",
        "<p>正文</p>",
        START_MS,
        raw_title_xml=title_xml,
    )
    [entry] = feedparser.parse(rss_feed([item]).encode("utf-8")).entries
    assert entry.title == expected


def test_cdata_terminator_inside_a_body_survives() -> None:
    item = FeedItem("t", "https://www.rfi.fr/cn/y", "<p>a]]>b</p>", START_MS, guid="id-1")
    [entry] = feedparser.parse(rss_feed([item]).encode("utf-8")).entries
    assert entry.summary == "<p>a]]>b</p>"
    assert entry.id == "id-1"


# FeedServer -----------------------------------------------------------------------------


def test_feed_is_served_and_the_request_logged(feed_server: FeedServer) -> None:
    feed_server.set_feed("/cn/rss", rss_feed(rfi_like_items(3, START_MS)))
    r = requests.get(feed_server.url("/cn/rss"), headers={"User-Agent": "feed-monitor/0.1"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/rss+xml; charset=utf-8"
    assert len(feedparser.parse(r.content).entries) == 3
    [record] = feed_server.requests
    assert (record.method, record.path, record.status) == ("GET", "/cn/rss", 200)
    assert record.headers["user-agent"] == "feed-monitor/0.1"
    assert requests.get(feed_server.url("/missing")).status_code == 404
    assert requests.get(feed_server.url("/cn/rss?page=1")).status_code == 200
    assert feed_server.count("/cn/rss") == 2


def test_conditional_get_with_etag(feed_server: FeedServer) -> None:
    url = feed_server.url("/feed.xml")
    feed_server.set_feed("/feed.xml", "<rss>one</rss>")
    first = requests.get(url)
    etag = first.headers["ETag"]
    again = requests.get(url, headers={"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["ETag"]) == (304, b"", etag)
    assert requests.get(url, headers={"If-None-Match": f'"x", W/{etag}'}).status_code == 304

    feed_server.set_feed("/feed.xml", "<rss>two</rss>")
    changed = requests.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert [r.header("If-None-Match") for r in feed_server.requests_for("/feed.xml")] == [
        None,
        etag,
        f'"x", W/{etag}',
        etag,
    ]


def test_conditional_get_with_last_modified(feed_server: FeedServer) -> None:
    url = feed_server.url("/feed.xml")
    feed_server.set_feed("/feed.xml", "<rss/>", last_modified=1_700_000_000)
    stamp = requests.get(url).headers["Last-Modified"]
    assert stamp == formatdate(1_700_000_000, usegmt=True)
    assert requests.get(url, headers={"If-Modified-Since": stamp}).status_code == 304
    earlier = formatdate(1_699_999_999, usegmt=True)
    assert requests.get(url, headers={"If-Modified-Since": earlier}).status_code == 200
    # If-None-Match wins over If-Modified-Since when both are sent.
    both = {"If-Modified-Since": stamp, "If-None-Match": '"stale"'}
    assert requests.get(url, headers=both).status_code == 200

    feed_server.set_feed("/plain.xml", "<rss/>", etag=False, last_modified=False)
    bare = requests.get(feed_server.url("/plain.xml"))
    assert "ETag" not in bare.headers and "Last-Modified" not in bare.headers


def test_status_overrides_queue_then_the_feed_answers(feed_server: FeedServer) -> None:
    url = feed_server.url("/feed.xml")
    feed_server.set_feed("/feed.xml", "<rss/>")
    feed_server.set_status("/feed.xml", 503, times=2)
    feed_server.set_status("/feed.xml", 429, headers={"Retry-After": "120"}, times=1)
    answers = [requests.get(url) for _ in range(4)]
    assert [a.status_code for a in answers] == [503, 503, 429, 200]
    assert answers[2].headers["Retry-After"] == "120"

    feed_server.set_status("/feed.xml", 500)
    assert {requests.get(url).status_code for _ in range(3)} == {500}
    feed_server.reset("/feed.xml")
    assert requests.get(url).status_code == 200
    assert [r.status for r in feed_server.requests] == [503, 503, 429, 200, 500, 500, 500, 200]


def test_redirect_is_followed_to_the_new_path(feed_server: FeedServer) -> None:
    feed_server.set_feed("/new.xml", "<rss>moved</rss>")
    feed_server.set_redirect("/old.xml", "/new.xml", status=301)
    r = requests.get(feed_server.url("/old.xml"))
    assert (r.status_code, r.text, r.url) == (200, "<rss>moved</rss>", feed_server.url("/new.xml"))
    assert [h.status_code for h in r.history] == [301]
    assert [(x.path, x.status) for x in feed_server.requests] == [
        ("/old.xml", 301),
        ("/new.xml", 200),
    ]


def test_gzip_is_negotiated_or_forced(feed_server: FeedServer) -> None:
    body = rss_feed(rfi_like_items(5, START_MS)).encode("utf-8")
    feed_server.set_feed("/feed.xml", body)
    feed_server.set_gzip("/feed.xml")
    r = requests.get(feed_server.url("/feed.xml"))
    assert r.headers["Content-Encoding"] == "gzip" and r.content == body
    assert int(r.headers["Content-Length"]) < len(body)
    plain = requests.get(feed_server.url("/feed.xml"), headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    feed_server.set_gzip("/feed.xml", always=True)
    forced = requests.get(feed_server.url("/feed.xml"), headers={"Accept-Encoding": "identity"})
    assert forced.headers["Content-Encoding"] == "gzip"


def test_delay_makes_a_client_time_out_without_blocking_others(feed_server: FeedServer) -> None:
    feed_server.set_feed("/slow.xml", "<rss>slow</rss>")
    feed_server.set_feed("/fast.xml", "<rss>fast</rss>")
    feed_server.set_delay("/slow.xml", 0.5)

    # A request held on the slow path does not hold up the fast one.
    slow = threading.Thread(target=requests.get, args=(feed_server.url("/slow.xml"),))
    slow.start()
    wait_until(lambda: feed_server.in_flight == 1, timeout=2)
    assert requests.get(feed_server.url("/fast.xml"), timeout=0.4).text == "<rss>fast</rss>"
    assert feed_server.in_flight == 1
    slow.join(timeout=3)
    assert [(r.path, r.status) for r in feed_server.requests] == [
        ("/fast.xml", 200),
        ("/slow.xml", 200),
    ]

    with pytest.raises(requests.Timeout):
        requests.get(feed_server.url("/slow.xml"), timeout=0.1)


def test_concurrent_polls_are_all_answered_and_logged(feed_server: FeedServer) -> None:
    paths = [f"/feed{i}.xml" for i in range(8)]
    for p in paths:
        feed_server.set_feed(p, rss_feed(rfi_like_items(2, START_MS)))
        feed_server.set_delay(p, 0.1)
    statuses: list[int] = []
    lock = threading.Lock()

    def poll(path: str) -> None:
        for _ in range(3):
            code = requests.get(feed_server.url(path), timeout=5).status_code
            with lock:
                statuses.append(code)

    threads = [threading.Thread(target=poll, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert statuses == [200] * 24
    assert all(feed_server.count(p) == 3 for p in paths)


def test_feed_server_comes_back_on_the_same_port(feed_server: FeedServer) -> None:
    feed_server.set_feed("/feed.xml", "<rss/>")
    port, url = feed_server.port, feed_server.url("/feed.xml")
    feed_server.stop()
    assert refused(port)
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=1)
    feed_server.start()
    assert feed_server.port == port
    assert requests.get(url).status_code == 200


# SmtpSink -------------------------------------------------------------------------------


def test_apprise_mailto_with_login_delivers_chinese_intact(smtp_sink: SmtpSink) -> None:
    url = smtp_sink.apprise_url(
        to="analyst@example.com", user="user", password="pass", from_addr="monitor@example.org"
    )
    assert url == (
        f"mailto://user:pass@127.0.0.1:{smtp_sink.port}"
        "?from=monitor@example.org&to=analyst@example.com"
    )
    assert notify(url)
    [mail] = smtp_sink.wait_for(1, timeout=5)
    assert mail.subject == CHINESE_TITLE
    assert CHINESE_BODY in mail.text
    assert (mail.mail_from, mail.rcpt_tos, mail.login) == (
        "monitor@example.org",
        ("analyst@example.com",),
        "user",
    )
    assert mail.message["To"] == "analyst@example.com"
    assert smtp_sink.auth_attempts == [("PLAIN", "user", True)]


# Which Apprise email URLs reach a plain SMTP server on a custom port (Apprise 2.3).
MAIL_URLS = [
    # mailto:// is plain SMTP, no STARTTLS; user:pass makes it AUTH PLAIN over plain text.
    ("mailto://user:pass@127.0.0.1:{port}?from=monitor@example.org&to=x@example.com", True),
    (
        "mailto://user:pass@127.0.0.1:{port}?from=monitor@example.org&to=x@example.com"
        "&mode=insecure",
        True,
    ),
    ("mailto://127.0.0.1:{port}?from=monitor@example.org&to=x@example.com", True),
    # mailtos:// means STARTTLS (or mode=ssl), which the sink does not offer.
    ("mailtos://user:pass@127.0.0.1:{port}?from=monitor@example.org&to=x@example.com", False),
    (
        "mailto://user:pass@127.0.0.1:{port}?from=monitor@example.org&to=x@example.com"
        "&mode=starttls",
        False,
    ),
]


@pytest.mark.parametrize("template, delivered", MAIL_URLS)
def test_apprise_email_url_forms(smtp_sink: SmtpSink, template: str, delivered: bool) -> None:
    assert notify(template.format(port=smtp_sink.port)) is delivered
    assert len(smtp_sink.mails) == int(delivered)


def test_apprise_rejects_one_letter_top_level_domains(smtp_sink: SmtpSink) -> None:
    # Apprise's address check wants a TLD of two or more letters: from=a@b.c is refused
    # when the URL is added, and there is no other valid From with an IP host.
    sender = apprise.Apprise()
    assert not sender.add(f"mailto://user:pass@127.0.0.1:{smtp_sink.port}?from=a@b.c&to=x@y.z")


def test_apprise_mailto_without_login(smtp_sink: SmtpSink) -> None:
    assert notify(smtp_sink.apprise_url(user=None), title="plain", body="正文")
    [mail] = smtp_sink.wait_for(1)
    assert (mail.subject, mail.login, smtp_sink.auth_attempts) == ("plain", None, [])


def test_wrong_credentials_and_refusals_fail_the_send(smtp_sink: SmtpSink) -> None:
    with SmtpSink(credentials={"monitor": "s3cret"}) as strict:
        assert not notify(strict.apprise_url(user="monitor", password="wrong"))
        assert notify(strict.apprise_url(user="monitor", password="s3cret"))
        # smtplib tries PLAIN, then LOGIN, before giving up on the wrong password.
        assert [ok for _, _, ok in strict.auth_attempts] == [False, False, True]
        assert len(strict.mails) == 1

    smtp_sink.reject_next(1)
    assert not notify(smtp_sink.apprise_url())
    assert notify(smtp_sink.apprise_url())
    assert len(smtp_sink.wait_for(1)) == 1


def test_smtp_sink_stops_and_comes_back_on_the_same_port(smtp_sink: SmtpSink) -> None:
    url, port = smtp_sink.apprise_url(), smtp_sink.port
    smtp_sink.stop()
    assert refused(port)
    assert not notify(url)
    smtp_sink.start()
    assert smtp_sink.port == port
    assert notify(url)
    assert len(smtp_sink.wait_for(1)) == 1


# WebhookReceiver ------------------------------------------------------------------------


def test_apprise_json_delivers_the_payload(webhook_receiver: WebhookReceiver) -> None:
    url = webhook_receiver.apprise_url("/alerts")
    assert url == f"json://127.0.0.1:{webhook_receiver.port}/alerts"
    assert notify(url)
    [hook] = webhook_receiver.wait_for(1)
    assert (hook.method, hook.path, hook.status) == ("POST", "/alerts", 200)
    assert hook.json["title"] == CHINESE_TITLE
    assert hook.json["message"] == CHINESE_BODY
    assert hook.headers["content-type"].startswith("application/json")


def test_apprise_reports_failures_the_receiver_programs(
    webhook_receiver: WebhookReceiver,
) -> None:
    url = webhook_receiver.apprise_url()
    webhook_receiver.fail_next(2, status=500)
    assert not notify(url)
    assert not notify(url)
    assert notify(url)
    assert [r.status for r in webhook_receiver.requests] == [500, 500, 200]

    webhook_receiver.set_down(True)
    assert not notify(url)
    webhook_receiver.set_down(False)
    assert notify(url)
    assert len(webhook_receiver.wait_for(2)) == 2
    assert len(webhook_receiver.wait_for(5, include_failed=True)) == 5
    with pytest.raises(TimeoutError, match="expected 3 webhook"):
        webhook_receiver.wait_for(3, timeout=0.05)


def test_webhook_receiver_down_refuses_connections(webhook_receiver: WebhookReceiver) -> None:
    url = webhook_receiver.apprise_url()
    webhook_receiver.stop()
    assert not notify(url)
    webhook_receiver.start()
    assert notify(url)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
# verify=no is the point here (a self-signed certificate); urllib3 warns about it.
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_apprise_jsons_over_tls() -> None:
    with WebhookReceiver(tls=True) as receiver:
        url = receiver.apprise_url("/secure")
        assert url == f"jsons://127.0.0.1:{receiver.port}/secure?verify=no"
        assert notify(url)
        [hook] = receiver.wait_for(1)
        assert hook.json["message"] == CHINESE_BODY
