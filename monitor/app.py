"""The one wiring point: ``open_store`` opens the database under the config's upgrade
policy, ``build`` makes every part of the daemon and the commands from a loaded config.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from monitor._malloc import release_free_memory
from monitor.clock import SYSTEM_CLOCK
from monitor.config import Config, FeedConfig, LoadedConfig, RuleConfig
from monitor.deliver import Deliverer, build_channels
from monitor.deliver.from_config import channels_settings, delivery_settings, rule_digests
from monitor.errors import StoreError
from monitor.fetch import Fetcher, FetchLimits
from monitor.fetch.hosts import AUTO_WORKERS, auto_workers, literal_is_private
from monitor.match import RuleSet, compile_rules, words
from monitor.metrics import Metrics
from monitor.parse import parse_feed
from monitor.secrets import Masker, masker_for
from monitor.store import Store
from monitor.types import (
    DEFAULT_RULE_OPTIONS,
    Clock,
    FeedSpec,
    Item,
    Parser,
    RuleMatch,
    RuleOptions,
)

Upgrade = Literal["policy", "force", "inspect"]


def open_store(
    config: Config,
    *,
    clock: Clock = SYSTEM_CLOCK,
    upgrade: Upgrade = "policy",
    must_exist: bool = False,
) -> Store:
    """The database, opened: the only place a ``Store`` is made.

    ``upgrade``: "policy" applies ``database_upgrade`` ("auto" migrates, "never" refuses
    an older schema, naming ``feed-monitor db upgrade``); only ``db upgrade`` ("force":
    migrate whatever the policy) and ``db current`` ("inspect": leave the schema alone)
    pass another. ``must_exist``: a SQLite file that is not there is reported, not
    created (for commands that only read). ``clock`` is the one the store is to use.
    """
    url = config.database
    if must_exist:
        _require_sqlite_file(url)
    connections = database_connections(config)
    if upgrade == "force":
        return Store(url, upgrade=True, clock=clock, connections=connections)
    if upgrade == "inspect":
        return Store(url, upgrade=None, clock=clock, connections=connections)
    return Store(
        url, upgrade=config.database_upgrade == "auto", clock=clock, connections=connections
    )


def pool_threads(config: Config) -> int:
    """Threads of the poll pool: ``scheduler.workers``, or the most ``auto`` may choose
    (a reload may change the feeds; the pool starts threads only when they have work)."""
    w = config.scheduler.workers
    return AUTO_WORKERS[1] if w == "auto" else w


def database_connections(config: Config) -> int:
    """Connections the store may open at once: one per poll worker, the delivery's
    senders, and a few for the tick, the delivery run, the console and the daily jobs,
    so no poll ever waits for a connection of the pool."""
    return pool_threads(config) + config.delivery.parallel + 4


def _require_sqlite_file(url: str) -> None:
    try:
        u = make_url(url)
    except Exception as e:  # sqlalchemy raises ArgumentError for a malformed URL
        raise StoreError(f"invalid database URL: {e}") from e
    if (
        u.get_backend_name() == "sqlite"
        and u.database not in (None, "", ":memory:")
        and not Path(u.database).exists()
    ):
        raise StoreError(
            f"no database at {u.database}: nothing has been stored yet "
            "(run 'feed-monitor once' or the daemon first)"
        )


def fetch_limits(cfg: Config) -> FetchLimits:
    d = cfg.defaults
    return FetchLimits(
        connect_timeout=d.connect_timeout,
        read_timeout=d.read_timeout,
        deadline=d.timeout,
        max_bytes=d.max_bytes,
        max_redirects=d.max_redirects,
        per_host=d.per_host_concurrency,
        per_private_host=d.private_host_concurrency,
        hosts=tuple(sorted((name, h.concurrency) for name, h in cfg.hosts.items())),
        allow_private=d.allow_private_addresses,
        allowed_networks=tuple(d.allowed_networks),
    )


def poll_workers(cfg: Config) -> int:
    """Polls at once: ``scheduler.workers``, or for ``auto`` as many as the enabled feeds'
    hosts take at once (fetch/hosts.py, ``auto_workers``). A host name not written as an
    address counts as private when the config lets private addresses be polled (it may
    be the user's own server; a thread too many costs little)."""
    w = cfg.scheduler.workers
    if w != "auto":
        return w
    limits = fetch_limits(cfg)
    d = cfg.defaults
    names_private = d.allow_private_addresses or bool(d.allowed_networks)
    per_host = Counter((urlsplit(f.url).hostname or "").lower() for f in cfg.feeds if f.enabled)

    def limit_of(host: str) -> int:
        literal = literal_is_private(host)
        return limits.host_limit(host, names_private if literal is None else literal)

    return auto_workers(dict(per_host), limit_of)


def rule_options(rule: RuleConfig) -> RuleOptions:
    """What the store needs of a rule's on_update and cross_edition settings."""
    editions = rule.editions()
    if editions is None:
        return RuleOptions(on_update=rule.on_update)
    return RuleOptions(
        on_update=rule.on_update,
        edition_window_ms=int(editions.window * 1000),
        hold_ms=int(editions.hold * 1000),
    )


def make_owner() -> str:
    """This process's name on leases: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Runtime:
    """What a config determines: swapped as one piece on reload."""

    loaded: LoadedConfig
    rules: RuleSet
    deliverer: Deliverer
    feeds: Mapping[str, FeedConfig]
    notify: Mapping[str, tuple[str, ...]]
    options: Mapping[str, RuleOptions] = field(default_factory=dict)
    archives: Mapping[str, str] = field(default_factory=dict)  # rule -> rules[].archive
    feed_ids: frozenset[str] = frozenset()  # the keys of feeds, as claims take them
    workers: int = 8  # polls at once (scheduler.workers, auto resolved)

    def match(self, item: Item, feeds: Collection[str]) -> list[RuleMatch]:
        return self.rules.match(item, feeds)

    def channels_for(self, rule: str) -> tuple[str, ...]:
        return self.notify.get(rule, ())

    def options_for(self, rule: str) -> RuleOptions:
        return self.options.get(rule, DEFAULT_RULE_OPTIONS)

    def feeds_named(self) -> frozenset[str]:
        return self.rules.feeds_named


@dataclass
class Parts:
    """Every part, built once per process; ``runtime`` is replaced by a config reload."""

    store: Store
    fetcher: Fetcher
    parser: Parser
    clock: Clock
    metrics: Metrics
    masker: Masker
    owner: str
    runtime: Runtime
    # Each feed's RSS <ttl> as last seen: a 304 has no body to state it again.
    feed_ttl: dict[str, int | None] = field(default_factory=dict)

    def rebuild(self, loaded: LoadedConfig) -> Runtime:
        """The runtime of a changed config, new feeds due now; the running one is left
        alone (ConfigError leaves it in charge)."""
        runtime = _runtime(
            loaded, self.store, self.owner, self.masker, self.metrics, self.clock, reloading=True
        )
        self.fetcher.set_limits(fetch_limits(loaded.config))
        return runtime

    def close(self) -> None:
        self.fetcher.close()
        self.store.close()


def build(
    loaded: LoadedConfig, *, clock: Clock = SYSTEM_CLOCK, masker: Masker | None = None
) -> Parts:
    """Every part the daemon and the commands need, from a loaded config.

    The CLI passes the masker its log handler uses: whatever a config makes secret is
    then masked in every log line, not only in the ones that ask.
    """
    masker = masker_for(loaded, masker)  # before anything may fail quoting a URL
    cfg = loaded.config
    store = open_store(cfg, clock=clock)
    d = cfg.defaults
    fetcher = Fetcher(fetch_limits(cfg), user_agent=d.user_agent, pool_size=pool_threads(cfg))
    metrics = Metrics()
    owner = make_owner()
    try:
        runtime = _runtime(loaded, store, owner, masker, metrics, clock, reloading=False)
    except BaseException:
        fetcher.close()
        store.close()
        raise
    return Parts(
        store=store,
        fetcher=fetcher,
        parser=parse_feed,
        clock=clock,
        metrics=metrics,
        masker=masker,
        owner=owner,
        runtime=runtime,
    )


def _runtime(
    loaded: LoadedConfig,
    store: Store,
    owner: str,
    masker: Masker,
    metrics: Metrics,
    clock: Clock,
    *,
    reloading: bool,
) -> Runtime:
    """Everything a config determines; raises ConfigError before touching the store."""
    masker_for(loaded, masker)
    rules = compile_rules(loaded.rule_specs(), loaded.config.aliases)
    if rules.checks_words:
        # The word list (about 1 s) loads here, not on the first item: matching runs
        # inside the store's transaction.
        words.load()
    # Compiling thousands of rules and building the word list peak far above what they
    # keep: hand the difference back (glibc keeps freed pages otherwise).
    release_free_memory()
    channels = build_channels(channels_settings(loaded.config.channels), masker, loaded.path)
    cfg = loaded.config
    feeds = {f.id: f for f in cfg.feeds if f.enabled}
    options = {r.name: rule_options(r) for r in cfg.rules}
    titles = cfg.feed_titles()

    def delivered(channel: str, outcome: str, latency_s: float) -> None:
        metrics.deliveries.labels(channel, outcome).inc()
        if outcome == "sent":
            metrics.delivery_latency.labels(channel).observe(latency_s)

    deliverer = Deliverer(
        store.outbox,
        owner,
        delivery_settings(cfg.delivery),
        channels,
        masker,
        feed_titles=lambda: titles,
        on_result=delivered,
        rule_digests=rule_digests(cfg.rules),
        rule_editions={
            name: o.edition_window_ms
            for name, o in options.items()
            if o.edition_window_ms is not None
        },
        clock=clock,
    )
    # The database keeps feed URLs as shown, secrets masked: polls take the real URL
    # from the config. Feeds added by a reload are polled at once (no spread), so
    # an edit shows its effect within seconds.
    store.feeds.sync(
        [FeedSpec(f.id, masker(f.url), f.title, loaded.feed_interval(f)) for f in feeds.values()],
        clock.now_ms(),
        first_spread_s=0.0 if reloading else min(cfg.defaults.jitter, 10.0),
    )
    notify = {r.name: tuple(r.notify) for r in cfg.rules}
    archives = {r.name: r.archive for r in cfg.rules if r.archive}
    return Runtime(
        loaded,
        rules,
        deliverer,
        feeds,
        notify,
        options,
        archives,
        frozenset(feeds),
        poll_workers(cfg),
    )
