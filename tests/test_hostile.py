"""The daemon against hostile feeds, all at once, served on 127.0.0.1.

One ``feed-monitor run`` polls every case below at the same time: entity expansion,
external entities, a gzip bomb past 1 GB, an endless body, bodies and headers dripping
one byte a second, a redirect loop, 429 and 503 with Retry-After, 500, an HTML page,
mislabelled Chinese encodings, and the parser's other bad inputs. Asserted: the daemon
stays up and stops cleanly; every failing poll ends within the fetch deadline; its peak
RSS (VmHWM) stays under 200 MB; ``status --json`` shows each feed's outcome, the next
poll honouring Retry-After and back-off, and the failing feed marked unhealthy while it
is still retried at the cap; nothing of a file named by an external entity is stored
or shown.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from monitor.daemon import Daemon as MonitorDaemon
from monitor.store import Store
from tests.daemon import Daemon, write_config
from tests.support import FeedServer, wait_until
from tests.support.cli import status_json
from tests.support.hostile import HostileServer, fixture, gzip_bomb

TIMEOUT = 3.0  # defaults.timeout of the daemon under test
MAX_BACKOFF = 2.0
UNHEALTHY_AFTER = 3
RSS_LIMIT = 200 * 2**20
SIMPLIFIED = "习近平结束访俄，北京与莫斯科建立“特殊”关系"
TRADITIONAL = "習近平結束訪俄，北京與莫斯科建立「特殊」關係"
SECRET = "hostile-suite-secret-7f3a9c"


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


def serve_cases(feeds: FeedServer, hostile: HostileServer, tmp_path: Path) -> dict[str, str]:
    """Every hostile case on a path; returns feed id -> URL."""
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET, encoding="utf-8")
    xxe = (
        fixture("xxe.xml")
        .replace(b"file:///etc/passwd", secret.as_uri().encode())
        .replace(b"http://127.0.0.1:PORT/evil.dtd", feeds.url("/evil.dtd").encode())
    )
    rss = "application/rss+xml"
    # The parser's bad inputs, served as a server would.
    plain = {
        "billion-laughs": (fixture("billion_laughs.xml"), rss),
        "xxe": (xxe, rss),
        "html-page": (fixture("html_page.html"), "text/html; charset=utf-8"),
        "empty-body": (b"", rss),
        "truncated": (fixture("truncated.xml"), rss),
        "duplicate-guids": (fixture("dup_guids.xml"), rss),
        "no-link-no-date": (fixture("no_link_no_date.xml"), rss),
        # Encodings: missing, or a header that names the wrong one.
        "gb2312-undeclared": (fixture("enc_gb2312_nodecl.xml"), "application/rss+xml"),
        "gbk-as-gb2312": (fixture("enc_gbk_decl.xml"), "text/xml; charset=gb2312"),
        "gb18030-as-gbk": (fixture("enc_gb18030_decl.xml"), "text/xml; charset=gbk"),
        "big5-as-gb2312": (fixture("enc_big5_nodecl.xml"), "text/xml; charset=gb2312"),
        "utf8-as-gb2312": (fixture("enc_utf8_nodecl.xml"), "text/xml; charset=gb2312"),
    }
    urls = {}
    for fid, (body, content_type) in plain.items():
        # Links of their own per feed (the encoding fixtures share theirs), so each
        # feed's items are its own in the database; ASCII bytes are the same in every
        # one of these encodings. No validators: every poll reads and parses again.
        body = body.replace(b"//www.rfi.fr/", f"//{fid}.example/".encode())
        feeds.set_feed(f"/{fid}", body, content_type=content_type, etag=False, last_modified=False)
        urls[fid] = feeds.url(f"/{fid}")
    feeds.set_redirect("/redirect-loop", "/redirect-loop")
    feeds.set_status("/rate-limited", 429, headers={"Retry-After": "120"})
    feeds.set_status(
        "/unavailable", 503, headers={"Retry-After": formatdate(time.time() + 60, usegmt=True)}
    )
    feeds.set_status("/server-error", 500, body="internal error")
    for fid in ("redirect-loop", "rate-limited", "unavailable", "server-error"):
        urls[fid] = feeds.url(f"/{fid}")
    hostile.static("/gzip-bomb", gzip_bomb(), {"Content-Encoding": "gzip"})
    hostile.endless("/endless")
    hostile.drip("/drip", fixture("rss2_rfi.xml"), every=1.0)  # ~30 minutes undeadlined
    hostile.drip_headers("/drip-headers", every=1.0)
    for fid in ("gzip-bomb", "endless", "drip", "drip-headers"):
        urls[fid] = hostile.url(f"/{fid}")
    urls["metadata"] = "http://169.254.169.254/latest/meta-data/"  # never allowed
    return urls


# feed id -> (outcome, text the status error must contain, or None for no error)
EXPECTED: dict[str, tuple[str, str | None]] = {
    "billion-laughs": ("ok-with-warnings", "not well-formed"),
    "xxe": ("ok-with-warnings", "not well-formed"),
    "html-page": ("not-a-feed", "no RSS, Atom or JSON Feed found"),
    "empty-body": ("empty", "empty body"),
    "truncated": ("ok-with-warnings", "not well-formed"),
    "duplicate-guids": ("ok-with-warnings", "duplicate entry ids"),
    "no-link-no-date": ("ok-with-warnings", "without link or id skipped"),
    "gb2312-undeclared": ("ok-with-warnings", "detected gb18030"),
    "gbk-as-gb2312": ("ok", None),  # the XML declaration (gbk) wins over the header
    "gb18030-as-gbk": ("ok", None),
    "big5-as-gb2312": ("ok-with-warnings", "detected big5"),
    "utf8-as-gb2312": ("ok-with-warnings", "read as utf-8"),
    "redirect-loop": ("http-error", "too many redirects"),
    "rate-limited": ("http-error", "HTTP 429"),
    "unavailable": ("http-error", "HTTP 503"),
    "server-error": ("http-error", "HTTP 500"),
    "gzip-bomb": ("too-large", "after decompression"),
    "endless": ("too-large", "body larger than"),
    "drip": ("timeout", "body not complete within 3 s"),
    "drip-headers": ("timeout", "no complete response within 3 s"),
    "metadata": ("refused", "169.254.169.254 is a link-local address"),
}


def peak_rss(pid: int) -> int:
    """VmHWM of a live process, in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    assert m, text
    return int(m[1]) * 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_daemon_survives_hostile_feeds(
    tmp_path: Path, feed_server: FeedServer, hostile: HostileServer
) -> None:
    urls = serve_cases(feed_server, hostile, tmp_path)
    assert set(urls) == set(EXPECTED)
    db = tmp_path / "monitor.db"
    config = write_config(
        tmp_path / "monitor.yaml",
        db=db,
        feeds=[{"id": fid, "url": url} for fid, url in urls.items()],
        channels={"console": {"urls": ["console://"]}},
        rules=[{"name": "china-russia", "any": ["中俄", "习近平"], "notify": ["console"]}],
        defaults={
            "timeout": f"{TIMEOUT:g}s",
            "connect_timeout": "2s",
            "read_timeout": "2s",
            "max_backoff": f"{MAX_BACKOFF:g}s",
            "unhealthy_after": UNHEALTHY_AFTER,
            "private_host_concurrency": 32,
        },
        scheduler={"workers": len(urls) + 2},
    )

    store = Store(f"sqlite:///{db}", upgrade=None)

    def rows() -> dict[str, Any]:
        try:
            return {r.id: r for r in store.readouts.feed_rows()}
        except Exception:  # the daemon may not have created the schema yet
            return {}

    with Daemon(config) as daemon:
        try:
            # Every feed polled at least once, the failing one past the unhealthy mark,
            # and then retried at the cap at least once more.
            def settled() -> bool:
                r = rows()
                return (
                    len(r) == len(urls)
                    and all(x.last_outcome for x in r.values())
                    and r["server-error"].failures >= UNHEALTHY_AFTER + 1
                )

            wait_until(
                settled,
                timeout=40,
                interval=0.2,
                message=lambda: f"feeds not all polled: {rows()}\n{daemon.output}",
            )
            assert daemon.proc is not None and daemon.proc.poll() is None, daemon.output
            report = status_json(config)
            rss = peak_rss(daemon.proc.pid)
        finally:
            store.close()
        assert daemon.stop() == 0, daemon.output

    feeds = {f["id"]: f for f in report["feeds"]}
    for fid, (outcome, error) in EXPECTED.items():
        f = feeds[fid]
        assert f["outcome"] == outcome, (fid, f)
        if error is None:
            assert f["error"] is None, (fid, f)
        else:
            assert error in (f["error"] or ""), (fid, f)

    # The daemon stayed up, stopped cleanly, and logged every failure with its feed's
    # name and no traceback.
    output = daemon.output
    assert "Traceback" not in output, output
    for fid, (outcome, _) in EXPECTED.items():  # the logs name each feed and its outcome
        assert any(f"feed '{fid}'" in line and f" {outcome}" in line for line in daemon.lines), (
            fid,
            outcome,
        )
    # No poll held a worker past the deadline: each failure says how long it took.
    took = [
        (m[1], float(m[2]))
        for m in re.finditer(
            r"feed '([\w.-]+)' \(.*?\): [\w-]+: .*? \(after ([\d.]+) s\); failure", output
        )
    ]
    assert {fid for fid, _ in took} >= {"drip", "drip-headers", "gzip-bomb", "endless"}
    # The deadline, not the body, ended them: the expected outcomes above are "timeout"
    # and "too-large", and the dripping servers saw the client hang up before their end
    # (no wall-clock bound here: that would flake on a loaded machine).
    for path in ("/drip", "/drip-headers"):
        for visit in hostile.visits(path):
            assert visit.ended != "complete", (path, visit)

    assert rss < RSS_LIMIT, f"peak RSS {rss / 2**20:.0f} MiB"

    # Retry-After: 120 s for the 429, the HTTP date (about 60 s ahead) for the 503, and
    # one request each: no poll came back early.
    def delay(fid: str) -> float:
        return (feeds[fid]["next_poll_ms"] - feeds[fid]["last_poll_ms"]) / 1000

    assert 119.9 <= delay("rate-limited") <= 120.1
    assert 50 <= delay("unavailable") <= 61
    assert feed_server.count("/rate-limited") == 1 and feed_server.count("/unavailable") == 1
    assert feeds["rate-limited"]["http_status"] == 429
    # Back-off: the interval (1 s) doubled per failure, capped; unhealthy from the third
    # failure on, with the reason, and still retried at the cap.
    bad = feeds["server-error"]
    assert bad["failures"] >= UNHEALTHY_AFTER + 1 and bad["http_status"] == 500
    assert MAX_BACKOFF - 0.05 <= delay("server-error") <= MAX_BACKOFF + 0.05
    assert bad["healthy"] is False
    assert bad["unhealthy_reason"].startswith(
        f"{bad['failures']} consecutive failures; last: http-error: HTTP 500"
    )
    assert feed_server.count("/server-error") >= UNHEALTHY_AFTER + 1
    assert f"feed 'server-error' is unhealthy: {UNHEALTHY_AFTER} consecutive failures" in output
    assert feeds["truncated"]["healthy"] is True
    # A feed that failed once or twice waits the first back-off steps, not the cap.
    for fid in ("redirect-loop", "html-page", "metadata"):
        n = feeds[fid]["failures"]
        assert n >= 1
        low = min(2 ** (n - 1), MAX_BACKOFF)
        assert low - 0.05 <= delay(fid) <= min(low * 1.25, MAX_BACKOFF) + 0.05, (fid, n)

    # What was stored: the right characters whatever the label said; no entity expanded;
    # nothing of the file the external entity named, anywhere.
    store = Store(f"sqlite:///{db}", upgrade=None)
    try:
        stored = {
            fid: [s.item.title for s in store.items.iter_stored(feed_ids=[fid])] for fid in EXPECTED
        }
    finally:
        store.close()
    for fid in ("gb2312-undeclared", "gbk-as-gb2312", "gb18030-as-gbk", "utf8-as-gb2312"):
        assert SIMPLIFIED in stored[fid], (fid, stored[fid])
    assert "吉野家的𠮷字" in stored["gb18030-as-gbk"]
    assert TRADITIONAL in stored["big5-as-gb2312"]
    assert stored["billion-laughs"] and all(len(t) < 200 for t in stored["billion-laughs"])
    assert SECRET not in json.dumps(stored, ensure_ascii=False)
    assert SECRET not in db.read_bytes().decode("utf-8", "replace")
    assert SECRET not in output and SECRET not in json.dumps(report, ensure_ascii=False)
    assert feed_server.count("/evil.dtd") == 0


# --- the same decisions in process, one poll at a time -------------------------------------


def _poll_once(monitor: Any, fid: str) -> Any:
    """Claim ``fid`` whether due or not and poll it, as a tick would."""
    parts = monitor.parts
    [row] = parts.store.feeds.claim_due(
        parts.owner, parts.clock.now_ms(), 1, 60_000, [fid], due_ms=2**62
    )
    return monitor.poll(row)


def _delay_s(monitor: Any, fid: str) -> float:
    [row] = [r for r in monitor.parts.store.readouts.feed_rows() if r.id == fid]
    return (row.next_poll_ms - row.last_poll_ms) / 1000


def test_freshness_hints_raise_the_interval_also_after_a_304(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    rss = fixture("rss2_rfi.xml")
    assert b"<ttl>15</ttl>" in rss
    no_ttl = rss.replace(b"<ttl>15</ttl>", b"")
    feed_server.set_feed("/ttl", rss.replace(b"<ttl>15</ttl>", b"<ttl>30</ttl>"))
    feed_server.set_feed("/max-age", no_ttl, headers={"Cache-Control": "max-age=600"})
    feed_server.set_feed("/plain", no_ttl)
    config = write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "monitor.db",
        feeds=[{"id": p, "url": feed_server.url(f"/{p}")} for p in ("ttl", "max-age", "plain")],
        channels={"console": {"urls": ["console://"]}},
        rules=[{"name": "r", "any": ["中俄"], "notify": ["console"]}],
        defaults={"interval": "60s"},
    )
    monitor = MonitorDaemon.open(str(config))
    try:
        for fid, expected in (("ttl", 1800), ("max-age", 600), ("plain", 60)):
            assert _poll_once(monitor, fid).outcome == "ok"
            assert expected - 0.05 <= _delay_s(monitor, fid) <= expected + 0.05, fid
            # Unchanged: a 304 has no body, so no <ttl>; the feed's last one still holds,
            # and Cache-Control comes with the 304.
            assert _poll_once(monitor, fid).outcome == "not-modified"
            assert expected - 0.05 <= _delay_s(monitor, fid) <= expected + 0.05, fid
    finally:
        monitor.parts.fetcher.close()
        monitor.parts.store.close()


def test_the_default_config_refuses_loopback_and_a_reload_can_allow_it(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.set_feed("/cn", fixture("rss2_rfi.xml"))
    kwargs: dict[str, Any] = dict(
        db=tmp_path / "monitor.db",
        feeds=[{"id": "cn", "url": feed_server.url("/cn")}],
        channels={"console": {"urls": ["console://"]}},
        rules=[{"name": "r", "any": ["中俄"], "notify": ["console"]}],
    )
    config = write_config(tmp_path / "monitor.yaml", defaults={"allowed_networks": []}, **kwargs)
    monitor = MonitorDaemon.open(str(config))
    try:
        result = _poll_once(monitor, "cn")
        assert result.outcome == "refused" and "loopback" in (result.error or "")
        assert feed_server.count() == 0
        write_config(tmp_path / "monitor.yaml", **kwargs)  # allows 127.0.0.0/8 again
        assert monitor.reload()
        assert _poll_once(monitor, "cn").outcome == "ok"
    finally:
        monitor.parts.fetcher.close()
        monitor.parts.store.close()
