"""Hot reload of the running daemon: saving the config file applies it, without a restart.

A valid edit takes effect within seconds (the file is checked every second); an invalid
one is logged with file:line and key path, the running config stays, and /healthz says
the last reload failed until a valid edit arrives. Nothing already queued is lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.daemon import REPO, Daemon, http_get, write_config
from tests.support import FeedItem, FeedServer, SmtpSink, WebhookReceiver, rss_feed, wait_until
from tests.support.cli import status_json
from tests.support.net import free_port

T0 = 1_700_000_000_000


def line_of(path: Path, text: str) -> int:
    """The 1-based number of the only line of ``path`` that is ``text``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines.count(text) == 1, f"{text!r} in {lines}"
    return lines.index(text) + 1


def health(port: int) -> tuple[int, dict[str, Any]]:
    status, body = http_get(f"http://127.0.0.1:{port}/healthz")
    return status, json.loads(body)


def test_edits_apply_within_5_s_and_bad_edits_are_refused_until_fixed(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    feed_server.set_feed(
        "/a", rss_feed([FeedItem("法国新闻", "https://www.rfi.fr/cn/a0", "<p>巴黎</p>", T0)])
    )
    feed_server.set_feed(
        "/b", rss_feed([FeedItem("乌克兰局势", "https://www.rfi.fr/cn/b0", "<p>基辅</p>", T0)])
    )
    port = free_port()
    path = tmp_path / "monitor.yaml"
    feed_a = {"id": "a", "url": feed_server.url("/a")}
    feed_b = {"id": "b", "url": feed_server.url("/b"), "backlog": "all"}
    old_rule = {"name": "china-russia", "any": ["中俄"], "notify": ["hook"]}
    new_rule = {"name": "ukraine", "any": ["乌克兰"], "notify": ["hook"]}

    def save(feeds: list[dict[str, Any]], rules: list[dict[str, Any]], **extra: Any) -> None:
        write_config(
            path,
            db=tmp_path / "monitor.db",
            feeds=feeds,
            rules=rules,
            channels={"hook": {"urls": [webhook_receiver.apprise_url("/alerts")]}},
            http={"enabled": True, "listen": f"127.0.0.1:{port}"},
            **extra,
        )

    save([feed_a], [old_rule])
    with Daemon(path) as daemon:
        daemon.wait_for_line("health and metrics on")
        daemon.wait_for_line("feed 'a': ok, 1 entries: 1 new")
        assert health(port)[0] == 200
        assert feed_server.count("/b") == 0

        # A new feed and a new rule: the feed is polled and its alert delivered within
        # 5 s of saving (the clock starts at the edit).
        save([feed_a, feed_b], [old_rule, new_rule])
        [alert] = webhook_receiver.wait_for(1, timeout=5)
        assert alert.json["title"] == "[ukraine] 乌克兰局势"
        assert feed_server.count("/b") >= 1
        daemon.wait_for_line("config reloaded: 2 feeds, 2 rules, 1 channels")
        assert daemon.proc is not None and daemon.proc.poll() is None

        # Broken YAML: refused with file:line, /healthz turns 503 with the reason.
        good_text = path.read_text(encoding="utf-8")
        bad_line = line_of(path, "  jitter: 0")
        path.write_text(good_text.replace("  jitter: 0\n", "  jitter: 0: 1\n"), encoding="utf-8")
        daemon.wait_for_line("config reload failed")
        [failed] = [line for line in daemon.lines if "config reload failed" in line]
        assert f"{path}:{bad_line} invalid YAML" in failed
        status, report = health(port)
        assert status == 503
        assert any(
            p.startswith(f"config reload failed: {path}:{bad_line}") for p in report["problems"]
        )

        # The running config keeps working: a new article alerts under the old rule.
        feed_server.set_feed(
            "/a",
            rss_feed(
                [
                    FeedItem("中俄峰会", "https://www.rfi.fr/cn/a1", "<p>莫斯科</p>", T0 + 1000),
                    FeedItem("法国新闻", "https://www.rfi.fr/cn/a0", "<p>巴黎</p>", T0),
                ]
            ),
        )
        received = webhook_receiver.wait_for(2, timeout=10)
        assert received[1].json["title"] == "[china-russia] 中俄峰会"

        # Valid YAML with a bad value: refused with file:line and the key path.
        save([feed_a, feed_b], [old_rule, new_rule], defaults={"interval": "soon"})
        bad_line = line_of(path, "  interval: soon")
        daemon.wait_for_line("config reload failed", count=2)
        assert f"{path}:{bad_line} defaults.interval: expected a duration" in daemon.output
        status, report = health(port)
        assert status == 503 and "defaults.interval" in " ".join(report["problems"])

        # A valid edit clears it.
        save([feed_a, feed_b], [old_rule, new_rule])
        wait_until(lambda: health(port)[0] == 200, timeout=5)
        assert health(port)[1] == {"status": "ok", "problems": []}
        assert daemon.stop() == 0
    assert daemon.output.count("feed-monitor running") == 1  # never restarted
    assert daemon.output.count("config reloaded") == 2
    assert "Traceback" not in daemon.output


def test_removed_feed_stops_changed_interval_applies_and_a_removed_channel_keeps_its_alerts(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver, smtp_sink: SmtpSink
) -> None:
    story = [
        FeedItem(f"中俄新闻 {i}", f"https://www.rfi.fr/cn/k{i}", "<p>x</p>", T0) for i in range(2)
    ]
    feed_server.set_feed("/keep", rss_feed(story))
    path = tmp_path / "monitor.yaml"
    hook = {"urls": [webhook_receiver.apprise_url("/alerts")]}
    mail = {"urls": [smtp_sink.apprise_url()]}
    with FeedServer() as slow:  # its own server: its in_flight counts only this feed
        slow.set_feed("/gone", rss_feed([FeedItem("天气", "https://x.org/w", "", T0)]))
        keep = {"id": "keep", "url": feed_server.url("/keep"), "backlog": "all", "interval": "60s"}
        gone = {"id": "gone", "url": slow.url("/gone"), "interval": "0.5s"}

        def save(feeds: list[dict[str, Any]], channels: dict[str, Any]) -> None:
            write_config(
                path,
                db=tmp_path / "monitor.db",
                feeds=feeds,
                channels=channels,
                rules=[{"name": "china-russia", "any": ["中俄"], "notify": list(channels)}],
            )

        smtp_sink.stop()  # mail alerts wait in the outbox
        save([keep, gone], {"hook": hook, "mail": mail})
        with Daemon(path) as daemon:
            webhook_receiver.wait_for(2, timeout=10)
            daemon.wait_for_line("channel 'mail': alert", count=2)
            daemon.wait_for_line("feed 'gone': ok")
            keep_polls = feed_server.count("/keep")

            # Edit while a poll of the feed being removed is in flight (held 3 s).
            slow.set_delay("/gone", 3.0)
            wait_until(lambda: slow.in_flight == 1, timeout=5)
            save([{**keep, "interval": "0.3s"}], {"hook": hook})
            daemon.wait_for_line("config reloaded: 1 feeds, 1 rules, 1 channels")
            wait_until(lambda: slow.in_flight == 0, timeout=10)
            gone_polls = slow.count("/gone")
            # The shortened interval applies now, not after the old 60 s.
            wait_until(lambda: feed_server.count("/keep") >= keep_polls + 3, timeout=10)
            assert slow.count("/gone") == gone_polls  # the removed feed is not polled

            # The removed channel's alerts wait (not dead, not lost) and status shows them.
            report = status_json(path)
            [mail_row] = [c for c in report["channels"] if c["name"] == "mail"]
            assert mail_row["configured"] is False
            assert mail_row["pending"] + mail_row["retrying"] == 2 and mail_row["dead"] == 0
            table = subprocess.run(
                [sys.executable, "-m", "monitor", "status", "-c", str(path)],
                cwd=REPO,
                capture_output=True,
                text=True,
                encoding="utf-8",
                check=True,
                env={**os.environ, "COLUMNS": "200"},
            ).stdout
            assert "mail (not configured)" in table

            # The channel comes back (and its server): the waiting alerts go out.
            smtp_sink.start()
            save([keep], {"hook": hook, "mail": mail})
            mails = smtp_sink.wait_for(2, timeout=10)
            assert daemon.stop() == 0
    assert sorted(m.subject for m in mails) == [
        "[china-russia] 中俄新闻 0",
        "[china-russia] 中俄新闻 1",
    ]
    assert len(webhook_receiver.received) == 2
    assert "Traceback" not in daemon.output
