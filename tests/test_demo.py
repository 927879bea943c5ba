"""``feed-monitor demo``: the shipped stories, their replay as live feeds, and the command
itself run as a user would (a subprocess: alerts on stdout, Ctrl-C, resume)."""

from __future__ import annotations

import fnmatch
import html
import os
import re
import signal
import subprocess
import sys
import threading
import tomllib
import urllib.request
from pathlib import Path

import pytest

from monitor.archive.format import entry_to_item
from monitor.config import load_config
from monitor.demo import Demo
from monitor.demo.articles import EDITIONS, load_stories
from monitor.demo.feeds import FeedServer, Replay
from monitor.match import compile_rules
from monitor.match.normalize import html_to_text
from monitor.parse import parse_feed
from tests.daemon import http_get
from tests.support.cli import REPO, cli
from tests.support.clock import FakeClock
from tests.support.net import free_port, wait_until

ARTICLES = REPO / "monitor" / "demo" / "articles"


# -- the shipped stories ---------------------------------------------------------------------


def test_stories_ship_both_editions_with_titles_links_times_and_short_excerpts() -> None:
    stories = load_stories()
    assert 24 <= len(stories) <= 60  # a few dozen
    assert [s.cn.published_ms for s in stories] == sorted(s.cn.published_ms for s in stories)
    for s in stories:
        for edition in EDITIONS:
            e = s.edition(edition)
            assert e.url.startswith(f"https://www.rfi.fr/{edition}/"), e.url
            assert e.title and e.published_ms == s.cn.published_ms
            # An excerpt, not the article: one paragraph of a few sentences.
            assert len(html_to_text(e.body)) <= 120, (s.id, edition)
    sources = (ARTICLES / "SOURCES.md").read_text(encoding="utf-8")
    assert "duty-machine/news" in sources and "OpenCC" in sources
    assert all(s.id in sources for s in stories)


def test_package_data_globs_cover_every_shipped_file() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["monitor.demo"]
    shipped = [
        p.relative_to(ARTICLES.parent).as_posix() for p in ARTICLES.rglob("*") if p.is_file()
    ]
    assert len(shipped) == 2 * len(load_stories()) + 1
    assert [f for f in shipped if not any(fnmatch.fnmatch(f, g) for g in globs)] == []


def test_every_example_rule_matches_some_story_and_the_editions_pair_up(tmp_path: Path) -> None:
    demo = Demo(tmp_path / "demo", fresh=False, every=5, listen="127.0.0.1:0", clock=FakeClock())
    try:
        loaded = load_config(str(demo.config_path))
    finally:
        demo.close()
    rules = compile_rules(loaded.rule_specs())
    hits: dict[str, int] = {}
    for s in load_stories():
        for edition in EDITIONS:
            item = entry_to_item(s.edition(edition), f"rfi-{edition}")
            for m in rules.match(item, [f"rfi-{edition}"]):
                hits[m.rule] = hits.get(m.rule, 0) + 1
    assert set(hits) == {r.name for r in loaded.config.rules}, hits
    cfg = loaded.config
    assert cfg.defaults.allowed_networks == ["127.0.0.1/32"]
    assert not cfg.defaults.allow_private_addresses
    assert [r.name for r in cfg.rules if r.editions()] == ["xi-putin"]
    assert any(r.query and "NOT" in r.query for r in cfg.rules)


# -- the replay ------------------------------------------------------------------------------


def test_replay_lists_a_backlog_then_one_more_story_every_few_seconds() -> None:
    stories = load_stories()
    clock = FakeClock()
    told: list[int] = []
    replay = Replay(stories, start=4, every=5, clock=clock, on_publish=told.append)
    assert replay.published() == 4
    clock.advance(4.9)
    assert replay.published() == 4
    clock.advance(0.1)
    assert replay.published() == 5
    clock.advance(12)
    assert replay.published() == 7
    assert told == [5, 6, 7]  # each story told once, in order, however late the reader
    clock.advance(10_000)
    assert replay.published() == len(stories)


def test_feed_server_serves_rss_both_editions_read_and_answers_304_when_unchanged() -> None:
    clock = FakeClock()
    server = FeedServer(Replay(load_stories(), start=3, every=5, clock=clock))
    server.start()
    try:
        for edition in EDITIONS:
            with urllib.request.urlopen(server.url(edition), timeout=10) as resp:
                body, etag = resp.read(), resp.headers["ETag"]
                headers = dict(resp.headers)
            parsed = parse_feed(body, headers, f"rfi-{edition}", 0, base_url=server.url(edition))
            assert parsed.outcome == "ok" and len(parsed.items) == 3
            newest = load_stories()[2].edition(edition)
            assert parsed.items[0].title == html.unescape(newest.title)
            assert parsed.items[0].url == newest.url
            request = urllib.request.Request(server.url(edition), headers={"If-None-Match": etag})
            with pytest.raises(urllib.error.HTTPError) as not_modified:
                urllib.request.urlopen(request, timeout=10)
            assert not_modified.value.code == 304
        clock.advance(5)
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200 and resp.read().count(b"<item>") == 4
        assert http_get(server.base_url + "/nothing")[0] == 404
    finally:
        server.stop()


# -- the folder ------------------------------------------------------------------------------


def test_fresh_removes_the_earlier_database_and_a_foreign_config_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "demo"
    Demo(folder, fresh=False, every=5, listen="127.0.0.1:0", clock=FakeClock()).close()
    (folder / "feed-monitor.db").write_bytes(b"earlier run")
    resumed = Demo(folder, fresh=False, every=5, listen="127.0.0.1:0", clock=FakeClock())
    resumed.close()
    assert resumed.start.resumed and (folder / "feed-monitor.db").exists()
    fresh = Demo(folder, fresh=True, every=5, listen="127.0.0.1:0", clock=FakeClock())
    fresh.close()
    assert not fresh.start.resumed and fresh.start.removed
    assert not (folder / "feed-monitor.db").exists()

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "monitor.yaml").write_text("feeds: []\n", encoding="utf-8")
    code, _, err = cli(capsys, "demo", "--dir", str(mine), "--fresh")
    assert code == 2 and "was not written by the demo" in err
    assert (mine / "monitor.yaml").read_text(encoding="utf-8") == "feeds: []\n"
    code, _, err = cli(capsys, "demo", "--dir", str(mine / "monitor.yaml"))
    assert code == 1 and err.startswith("error: ") and "cannot create the demo folder" in err
    assert cli(capsys, "demo", "--dir", str(folder), "--every", "0")[0] == 2


# -- the command, as a user runs it ----------------------------------------------------------


class DemoProcess:
    """``feed-monitor demo`` in a subprocess; stdout and stderr collected apart."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "demo", *args],
            cwd=REPO,
            env={**os.environ, "COLUMNS": "250"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, lines), daemon=True).start()

    @staticmethod
    def _read(stream: object, lines: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append(line.rstrip("\n"))

    def alerts(self) -> list[str]:
        """The alert titles printed so far: ``[rule] title``."""
        return [line for line in list(self.out) if re.match(r"\[[a-z-]+\] ", line)]

    def wait(self, what: str, predicate: object, timeout: float = 60) -> None:
        wait_until(
            lambda: predicate() or self.proc.poll() is not None,  # type: ignore[operator]
            timeout=timeout,
            message=lambda: (
                f"{what}; stdout:\n" + "\n".join(self.out) + "\nstderr:\n" + "\n".join(self.err)
            ),
        )
        assert self.proc.poll() is None, "\n".join(self.err)

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            return self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def test_demo_prints_alerts_serves_health_stops_on_ctrl_c_and_resumes(tmp_path: Path) -> None:
    folder = tmp_path / "demo-data"
    listen = f"127.0.0.1:{free_port()}"
    first = DemoProcess("--dir", str(folder), "--every", "1", "--listen", listen)
    try:
        # The backlog alerts at the first poll; the cross-edition rule's alert names both
        # editions' links once its hold is over.
        first.wait(
            "alerts of every kind",
            lambda: (
                {a.split("]")[0] + "]" for a in first.alerts()}
                >= {"[ukraine]", "[xi-putin]", "[putin-not-ukraine]", "[china-russia]"}
            ),
        )
        assert f"http://{listen}/" in "\n".join(first.out)
        assert http_get(f"http://{listen}/healthz")[0] == 200
        # A second demo on the same folder (even with --fresh) leaves this one alone.
        other = subprocess.run(
            [sys.executable, "-m", "monitor", "demo", "--dir", str(folder), "--fresh"],
            cwd=REPO,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=120,
        )
        assert other.returncode == 1, other.stderr
        assert "in use by another feed-monitor daemon" in other.stderr
        assert (folder / "feed-monitor.db").exists()
    finally:
        code = first.interrupt()
    assert code == 0, "\n".join(first.err)
    assert "a fresh start" in first.out[0] + "\n".join(first.out[:12])
    out = "\n".join(first.out)
    assert "Editions:" in out and "https://www.rfi.fr/tw/" in out
    assert "demo stopped" in first.out[-1]
    assert "Traceback" not in "\n".join(first.err)
    seen = first.alerts()

    second = DemoProcess("--dir", str(folder), "--every", "0.5", "--listen", listen)
    try:
        second.wait("the banner", lambda: any("resuming" in line for line in second.out))
        second.wait("a new alert", lambda: second.alerts())
    finally:
        assert second.interrupt() == 0
    # What the first run alerted for stays alerted: resuming sends nothing twice.
    assert set(second.alerts()).isdisjoint(seen), (seen, second.alerts())
