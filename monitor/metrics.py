"""Prometheus metrics of one daemon, in a registry of its own (no global state).

Series with a label per feed or per rule number in the thousands; they are plain
counts in a dict (about 150 bytes a series, against 600 for a prometheus_client
counter child and 3 KB for a histogram child), turned into samples at scrape time.
Fetch durations are one histogram per outcome, not per feed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class _OutboxCollector(Collector):
    """Alerts by channel and state, read from the database at scrape time."""

    def __init__(self, summary: Callable[[], Mapping[str, Mapping[str, int]]]) -> None:
        self._summary = summary

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "feed_monitor_alerts",
            "Alerts in the outbox by channel and state",
            labels=["channel", "state"],
        )
        try:
            for channel, states in self._summary().items():
                for state, n in states.items():
                    g.add_metric([channel, state], n)
        except Exception:  # an unreachable database shows in /healthz, not as a scrape error
            pass
        yield g


class CountsCollector(Collector):
    """A counter family with many label sets, each a number in a dict.

    ``name`` without ``_total``, as for ``Counter``; ``inc(("cn", "ok"))`` adds one.
    """

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._counts: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def inc(self, labels: tuple[str, ...], amount: float = 1) -> None:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {labels}")
        if amount < 0:
            raise ValueError("counters only go up")
        with self._lock:
            self._counts[labels] = self._counts.get(labels, 0) + amount

    def value(self, *labels: str) -> float:
        return self._counts.get(tuple(labels), 0)

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            counts = list(self._counts.items())
        for labels, n in counts:
            family.add_metric(labels, n)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls = CountsCollector(
            "feed_monitor_polls", "Polls by feed and outcome", ["feed", "outcome"], registry=r
        )
        self.fetch_seconds = Histogram(
            "feed_monitor_fetch_seconds",
            "Fetch duration by outcome (ok, not-modified, ...)",
            ["outcome"],
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.http_status = Counter(
            "feed_monitor_http_responses", "HTTP responses by status", ["status"], registry=r
        )
        self.items = CountsCollector(
            "feed_monitor_items",
            "Items stored by feed and kind (new, updated)",
            ["feed", "kind"],
            registry=r,
        )
        self.matches = CountsCollector(
            "feed_monitor_rule_matches", "Matches per rule", ["rule"], registry=r
        )
        self.deliveries = Counter(
            "feed_monitor_deliveries",
            "Delivery attempts by channel and result (sent, failed, dead)",
            ["channel", "result"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "feed_monitor_delivery_latency_seconds",
            "From alert creation to sent",
            ["channel"],
            registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
        )
        self.reloads = Counter(
            "feed_monitor_config_reloads", "Config reloads by result", ["result"], registry=r
        )

    def watch_outbox(self, summary: Callable[[], Mapping[str, Mapping[str, int]]]) -> None:
        self.registry.register(_OutboxCollector(summary))
