"""Prometheus metrics of one daemon, in a registry of its own (no global state)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class _OutboxCollector(Collector):
    """Alerts by channel and state, read from the database at scrape time."""

    def __init__(self, summary: Callable[[], Mapping[str, Mapping[str, int]]]) -> None:
        self._summary = summary

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily("feed_monitor_alerts", "Alerts in the outbox by channel and state",
                              labels=["channel", "state"])
        try:
            for channel, states in self._summary().items():
                for state, n in states.items():
                    g.add_metric([channel, state], n)
        except Exception:  # an unreachable database shows in /healthz, not as a scrape error
            pass
        yield g


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls = Counter("feed_monitor_polls", "Polls by feed and outcome",
                             ["feed", "outcome"], registry=r)
        self.fetch_seconds = Histogram(
            "feed_monitor_fetch_seconds", "Fetch duration", ["feed"], registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.http_status = Counter("feed_monitor_http_responses", "HTTP responses by status",
                                   ["status"], registry=r)
        self.items = Counter("feed_monitor_items", "Items stored by feed and kind (new, updated)",
                             ["feed", "kind"], registry=r)
        self.matches = Counter("feed_monitor_rule_matches", "Matches per rule", ["rule"],
                               registry=r)
        self.deliveries = Counter("feed_monitor_deliveries",
                                  "Delivery attempts by channel and result (sent, failed, dead)",
                                  ["channel", "result"], registry=r)
        self.delivery_latency = Histogram(
            "feed_monitor_delivery_latency_seconds", "From alert creation to sent", ["channel"],
            registry=r, buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600))
        self.reloads = Counter("feed_monitor_config_reloads", "Config reloads by result",
                               ["result"], registry=r)

    def watch_outbox(self, summary: Callable[[], Mapping[str, Mapping[str, int]]]) -> None:
        self.registry.register(_OutboxCollector(summary))
