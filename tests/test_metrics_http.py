"""The HTTP endpoint of a running daemon: /healthz and Prometheus /metrics."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon import Daemon, http_get, write_config
from tests.support import FeedItem, FeedServer, WebhookReceiver, rss_feed, wait_until
from tests.support.net import free_port

T0 = 1_700_000_000_000

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> tuple[Samples, set[str]]:
    """Every sample by (name, labels), and the metric family names with their types."""
    status, text = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    samples: Samples = {}
    families = set()
    for family in text_string_to_metric_families(text):
        families.add(f"{family.name}:{family.type}")
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, families


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_parse_and_move_with_polls_and_deliveries(
    tmp_path: Path, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    first = [
        FeedItem(f"中俄新闻 {i}", f"https://www.rfi.fr/cn/m{i}", "<p>x</p>", T0) for i in range(2)
    ]
    feed_server.set_feed("/cn", rss_feed(first))
    port = free_port()
    config = write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "monitor.db",
        feeds=[{"id": "cn", "url": feed_server.url("/cn"), "backlog": "all"}],
        channels={"hook": {"urls": [webhook_receiver.apprise_url("/alerts")]}},
        rules=[{"name": "china-russia", "any": ["中俄"], "notify": ["hook"]}],
        http={"enabled": True, "listen": f"127.0.0.1:{port}"},
    )
    with Daemon(config) as daemon:
        daemon.wait_for_line("health and metrics on")
        webhook_receiver.wait_for(2, timeout=10)
        # The second poll answers 304: the status counter gets a second label.
        wait_until(
            lambda: value(scrape(port)[0], "feed_monitor_http_responses_total", status="304") >= 1,
            timeout=10,
        )
        before, families = scrape(port)
        for family in (
            "feed_monitor_polls:counter",
            "feed_monitor_fetch_seconds:histogram",
            "feed_monitor_http_responses:counter",
            "feed_monitor_items:counter",
            "feed_monitor_rule_matches:counter",
            "feed_monitor_deliveries:counter",
            "feed_monitor_delivery_latency_seconds:histogram",
            "feed_monitor_config_reloads:counter",
            "feed_monitor_alerts:gauge",
        ):
            assert family in families
        assert value(before, "feed_monitor_polls_total", feed="cn", outcome="ok") == 1
        assert value(before, "feed_monitor_polls_total", feed="cn", outcome="not-modified") >= 1
        assert value(before, "feed_monitor_http_responses_total", status="200") == 1
        # Fetch durations by outcome, not by feed: one 200, then 304s.
        assert value(before, "feed_monitor_fetch_seconds_count", outcome="ok") == 1
        assert value(before, "feed_monitor_fetch_seconds_count", outcome="not-modified") >= 1
        assert not any(
            name.startswith("feed_monitor_fetch_seconds") and "feed" in dict(labels)
            for name, labels in before
        )
        assert value(before, "feed_monitor_items_total", feed="cn", kind="new") == 2
        assert value(before, "feed_monitor_rule_matches_total", rule="china-russia") == 2
        assert value(before, "feed_monitor_deliveries_total", channel="hook", result="sent") == 2
        assert value(before, "feed_monitor_delivery_latency_seconds_count", channel="hook") == 2
        assert value(before, "feed_monitor_alerts", channel="hook", state="sent") == 2

        # One more article; the receiver fails once, then takes it; the config is saved.
        webhook_receiver.fail_next(1, status=500)
        feed_server.set_feed(
            "/cn",
            rss_feed(
                [FeedItem("中俄峰会", "https://www.rfi.fr/cn/m9", "<p>x</p>", T0 + 1), *first]
            ),
        )
        webhook_receiver.wait_for(3, timeout=10)
        config.write_text(config.read_text(encoding="utf-8") + "\n", encoding="utf-8")
        daemon.wait_for_line("config reloaded")

        def moved() -> Samples | None:
            after = scrape(port)[0]
            done = (
                value(after, "feed_monitor_alerts", channel="hook", state="sent") == 3
                and value(after, "feed_monitor_config_reloads_total", result="ok") == 1
            )
            return after if done else None

        after = wait_until(moved, timeout=5)
        assert value(after, "feed_monitor_polls_total", feed="cn", outcome="ok") == 2
        assert value(after, "feed_monitor_http_responses_total", status="200") == 2
        assert value(after, "feed_monitor_items_total", feed="cn", kind="new") == 3
        assert value(after, "feed_monitor_rule_matches_total", rule="china-russia") == 3
        assert value(after, "feed_monitor_deliveries_total", channel="hook", result="failed") == 1
        assert value(after, "feed_monitor_deliveries_total", channel="hook", result="sent") == 3
        assert value(after, "feed_monitor_delivery_latency_seconds_count", channel="hook") == 3
        assert value(after, "feed_monitor_config_reloads_total", result="failed") == 0
        assert daemon.stop() == 0


def test_healthz_says_ok_as_json_and_unknown_paths_are_404(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.set_feed("/cn", rss_feed([]))
    port = free_port()
    config = write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "monitor.db",
        feeds=[{"id": "cn", "url": feed_server.url("/cn")}],
        channels={"console": {"urls": ["console://"]}},
        rules=[{"name": "r", "any": ["中俄"], "notify": ["console"]}],
        http={"enabled": True, "listen": f"127.0.0.1:{port}"},
    )
    with Daemon(config) as daemon:
        daemon.wait_for_line(f"health and metrics on http://127.0.0.1:{port}/")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/json"
            assert json.load(resp) == {"status": "ok", "problems": []}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain")
        assert http_get(f"http://127.0.0.1:{port}/nope")[0] == 404
        assert daemon.stop() == 0


def test_per_feed_counts_are_counters_in_the_exposition() -> None:
    from prometheus_client import generate_latest

    from monitor.metrics import Metrics

    m = Metrics()
    m.polls.inc(("cn", "ok"))
    m.polls.inc(("cn", "ok"))
    m.polls.inc(("tw", "timeout"))
    m.items.inc(("cn", "new"), 3)
    m.matches.inc(("china-russia",), 2)
    text = generate_latest(m.registry).decode()
    assert "# TYPE feed_monitor_polls_total counter" in text
    assert 'feed_monitor_polls_total{feed="cn",outcome="ok"} 2.0' in text
    assert 'feed_monitor_polls_total{feed="tw",outcome="timeout"} 1.0' in text
    assert 'feed_monitor_items_total{feed="cn",kind="new"} 3.0' in text
    assert 'feed_monitor_rule_matches_total{rule="china-russia"} 2.0' in text
    assert m.polls.value("cn", "ok") == 2
    with pytest.raises(ValueError):
        m.polls.inc(("cn",))
    with pytest.raises(ValueError):
        m.items.inc(("cn", "new"), -1)
