"""The web console in a real browser (Debian's headless Chromium driven by Playwright):
the pages of a running daemon fed by the local feed server, as a person sees them."""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon, http_get, write_config
from tests.support import FeedItem, FeedServer, rss_feed, wait_until
from tests.support.net import free_port

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
T0 = 1_700_000_000_000
TOKEN = "console-test-token-0123"
SECRET = "feed-password-4711"

HOSTILE = FeedItem(
    "<script>window.pwned=1</script>乌克兰 {{ 7*7 }} **bold** [x](javascript:alert(1))",
    "javascript:alert(document.cookie)",
    '<img src=x onerror="window.pwned=2"><p>乌克兰 <script>window.pwned=3</script></p>',
    T0 + 5_000,
    guid="hostile-1",
)


def _no_browser(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"{reason}; under CI=true the browser tests must run (.ci/run installs "
            "Debian's chromium)"
        )
    pytest.skip(
        f"{reason}: install Debian's chromium (apt-get install chromium "
        "fonts-noto-cjk) to run the browser tests"
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        _no_browser(f"no browser at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("the playwright package is not installed (the 'test' extra)")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        except Exception as e:  # a broken install: say why, as for a missing one
            _no_browser(f"{CHROMIUM} did not start: {str(e).splitlines()[0]}")
        yield b
        b.close()


def items() -> list[FeedItem]:
    return [
        FeedItem(
            "俄乌战争：乌克兰东部激战", "https://www.rfi.fr/cn/war-1", "<p>乌克兰军队</p>", T0
        ),
        FeedItem("法国新闻", "https://www.rfi.fr/cn/paris", "<p>巴黎</p>", T0 + 1_000),
        FeedItem("中俄关系新动向", "https://www.rfi.fr/cn/cr-1", "<p>中俄 乌克兰</p>", T0 + 2_000),
    ]


def start(tmp_path: Path, feed_server: FeedServer, **http: Any) -> tuple[Daemon, str]:
    feed_server.set_feed("/cn/rss", rss_feed(items()))
    feed_server.set_feed("/tw/rss", rss_feed([HOSTILE]))
    port = free_port()
    config = write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "monitor.db",
        defaults={"backlog": "all"},
        delivery={"max_attempts": 1},
        http={"enabled": True, "listen": f"127.0.0.1:{port}", **http},
        feeds=[
            {"id": "rfi-cn", "url": feed_server.url("/cn/rss"), "title": "RFI 中文"},
            {"id": "rfi-tw", "url": feed_server.url("/tw/rss")},
            {
                "id": "gone",
                "url": feed_server.url("/missing").replace("http://", f"http://reader:{SECRET}@"),
            },
        ],
        # A webhook nobody listens on: its alerts fail once and become dead letters.
        channels={
            "console": {"urls": ["console://"]},
            "hook": {"urls": [f"json://127.0.0.1:{free_port()}/"]},
        },
        rules=[
            {"name": "ukraine", "any": ["烏克蘭"], "notify": ["console", "hook"]},
            {"name": "china-russia", "any": ["中俄"], "notify": ["console"]},
        ],
    )
    daemon = Daemon(config, env={"CONSOLE_TOKEN": TOKEN}).start()
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _status(base + "/healthz") == 200, timeout=20, message=lambda: daemon.output)
    return daemon, base


def _status(url: str) -> int | None:
    try:
        return http_get(url, timeout=2)[0]
    except OSError:
        return None


def post(url: str, data: dict[str, str]) -> int:
    body = urllib.parse.urlencode(data).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body), timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_pages_show_feeds_alerts_and_matches_and_escape_hostile_items(
    tmp_path: Path, feed_server: FeedServer, browser: Any
) -> None:
    daemon, base = start(tmp_path, feed_server)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        wait_until(lambda: "ukraine" in http_get(base + "/alerts")[1], timeout=20)

        page.goto(base + "/")
        rows = page.locator("#feeds tbody tr")
        assert rows.count() == 3
        # The failing feed comes first, its error shown.
        wait_until(
            lambda: page.reload() or "404" in page.locator("#feeds tbody tr").first.inner_text(),
            timeout=15,
        )
        assert page.locator("#feeds tbody tr").first.get_attribute("data-feed") == "gone"
        assert "ok" in page.locator("tr[data-feed='rfi-cn']").inner_text()
        assert page.locator("tr[data-rule='ukraine'] td").nth(1).inner_text() != "0"
        wait_until(
            lambda: (
                page.reload()
                or page.locator("tr[data-channel='hook'] td").nth(5).inner_text() != "0"
            ),
            timeout=20,
        )
        assert page.get_by_text("Log in").count() == 0  # read-only: no login, no actions
        page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)

        page.goto(base + "/alerts")
        first = page.locator("article.alert").first
        assert page.locator("article.alert").count() >= 3
        # Hostile item: nothing ran, no javascript: link, template syntax shown as text.
        assert page.evaluate("window.pwned") is None
        assert page.locator("a[href^='javascript']").count() == 0
        hostile = page.locator("article.alert", has_text="7*7")
        assert hostile.count() == 1 and "{{ 7*7 }}" in hostile.inner_text()
        assert "no link" in hostile.inner_text()
        assert "49" not in hostile.locator("h3").inner_text()
        # Snippets mark the hit, in the item's own script.
        assert page.locator("article.alert mark", has_text="乌克兰").count() >= 1
        assert "dead" in page.locator("article.alert", has_text="乌克兰东部").inner_text()
        page.screenshot(path=str(tmp_path / "alerts.png"), full_page=True)

        # A new article appears without a reload.
        fresh = FeedItem(
            "乌克兰和平谈判开始", "https://www.rfi.fr/cn/peace", "<p>乌克兰</p>", T0 + 60_000
        )
        feed_server.set_feed("/cn/rss", rss_feed([fresh, *items()]))
        page.locator("article.alert", has_text="乌克兰和平谈判开始").first.wait_for(timeout=20_000)
        assert page.locator("article.alert").first.inner_text().startswith("乌克兰和平谈判开始")
        del first

        # Filters.
        page.goto(base + "/alerts?rule=china-russia")
        assert {
            page.locator("article.alert").nth(i).get_attribute("data-rule")
            for i in range(page.locator("article.alert").count())
        } == {"china-russia"}

        # Rule page: chart, recent matches, a backtest query.
        page.goto(base + "/rules/ukraine")
        assert page.locator("#chart rect.bar").count() == 30
        assert page.locator("#recent tbody tr").count() >= 3
        page.fill("#q", "乌克兰 AND NOT 和平")
        page.select_option("select[name=since]", "all")  # the test articles are from 2023
        page.click("form.query button")
        total = page.locator("#backtest-total").inner_text()
        assert total.startswith("3 matches") and "nothing was sent" in total
        assert page.locator("#backtest mark").count() >= 3
        page.screenshot(path=str(tmp_path / "rule.png"), full_page=True)
        page.fill("#q", "乌克兰 AND (")
        page.click("form.query button")
        assert page.locator("#query-error").is_visible()

        page.goto(base + "/feeds/rfi-cn")
        assert page.locator("#items tbody tr").count() == 4
        # Its recent polls: outcome, status code, time taken.
        polls = page.locator("#polls tbody tr")
        assert polls.count() >= 2
        assert "304" in polls.first.inner_text() and " s" in polls.first.inner_text()
        assert "ukraine" in page.locator("main").inner_text()
        page.screenshot(path=str(tmp_path / "feed.png"), full_page=True)
        # Secrets are masked as in 'status': a feed URL's password shows nowhere.
        page.goto(base + "/feeds/gone")
        assert "reader:" in page.locator("main").inner_text()
        assert "HTTP 404" in page.locator("#polls tbody tr").first.inner_text()
        for path in ("/", "/feeds/gone", "/alerts", "/rules/ukraine"):
            assert SECRET not in http_get(base + path)[1]

        # Without a token no action endpoint exists.
        assert post(base + "/actions/silence", {"rule": "ukraine", "for": "1h"}) == 404
        assert post(base + "/login", {"token": TOKEN}) in (404, 405)
        assert errors == []
    finally:
        assert daemon.stop() == 0


def test_actions_need_the_token_and_a_csrf_token_and_are_logged(
    tmp_path: Path, feed_server: FeedServer, browser: Any
) -> None:
    daemon, base = start(
        tmp_path,
        feed_server,
        admin_token="${CONSOLE_TOKEN}",
        language="zh",
        timezone="Asia/Shanghai",
    )
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base + "/")
        assert "订阅源" in page.locator("h2").first.inner_text()
        assert "Asia/Shanghai" in page.locator("header").inner_text()
        # Refused: no session, and a forged form without the CSRF token.
        assert post(base + "/actions/silence", {"rule": "ukraine", "for": "1h"}) == 403
        page.click("text=登录")
        page.fill("#token", "wrong-token-wrong")
        page.click("#login")
        assert page.get_by_text("令牌错误").is_visible()
        page.fill("#token", TOKEN)
        page.click("#login")
        assert page.locator("header .badge").inner_text() == "管理"
        # Logged in, but a form without the session's CSRF token is still refused.
        forged = page.request.post(base + "/actions/silence", form={"rule": "ukraine", "for": "1h"})
        assert forged.status == 403
        forged = page.request.post(
            base + "/actions/silence", form={"rule": "ukraine", "for": "1h", "csrf": "guess"}
        )
        assert forged.status == 403

        page.goto(base + "/rules/ukraine")
        page.click("#silence")
        assert page.locator(".note").first.is_visible()
        page.goto(base + "/")
        assert page.locator("#silences tbody tr").count() == 1
        page.screenshot(path=str(tmp_path / "overview-admin.png"), full_page=True)
        page.locator("#silences button").click()
        assert page.locator("#silences").count() == 0

        wait_until(
            lambda: (
                page.reload()
                or page.locator("tr[data-channel='hook'] td").nth(5).inner_text() != "0"
            ),
            timeout=20,
        )
        page.click("#redeliver")
        assert "重新投递失败警报" in page.locator(".note").first.inner_text()
        daemon.wait_for_line("console: silence #1 of rule ukraine for 1h added")
        daemon.wait_for_line("console: silence #1 expired")
        daemon.wait_for_line("put back in the queue")
        assert TOKEN not in daemon.output
    finally:
        assert daemon.stop() == 0
