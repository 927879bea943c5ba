"""Command line: argument parsing and output only; every command gets its parts (the store,
the daemon) from ``monitor.app``."""

from __future__ import annotations

import argparse
import getpass
import io
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.engine import make_url

from monitor import __version__
from monitor._malloc import limit_arenas
from monitor.app import open_store
from monitor.archive.files import NOT_ARCHIVE, export_archive, import_archive
from monitor.archive.opml import opml_export, opml_import
from monitor.backtest import backtest
from monitor.clock import SYSTEM_CLOCK, utc_text
from monitor.config import (
    LoadedConfig,
    RetentionConfig,
    config_json_schema,
    load_config,
    parse_duration,
)
from monitor.daemon import Daemon
from monitor.deliver import build_channels, install, notify_test, undeliverable
from monitor.deliver.from_config import channel_settings
from monitor.demo import DEFAULT_LISTEN, Demo
from monitor.errors import ConfigError, ConfigErrors, MonitorError, UsageError
from monitor.match import compile_rules
from monitor.retention import apply_retention
from monitor.secrets import Masker, MaskingFilter, mask_url, masker_for
from monitor.status import collect_status, print_status
from monitor.types import Clock, PollOutcome

DEFAULT_CONFIG = "config/monitor.yaml"
# Exit codes (README "Exit codes"): argparse's own usage errors exit 2 too.
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOTHING_POLLED = 3  # `once`: there were feeds to poll and every poll failed
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as for a command the signal ends
# The outcomes of a poll that reached its feed; `once` fails when no poll had one.
POLLED = frozenset({PollOutcome.OK, PollOutcome.OK_WITH_WARNINGS, PollOutcome.NOT_MODIFIED})
log = logging.getLogger("monitor")

# Every secret the process learns (``${ENV}`` values, Apprise URL passwords and tokens)
# is added here; the log handler and the error printer mask with it.
LOG_MASKER = Masker()


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        # exc_text is the traceback as MaskingFilter left it, secrets masked.
        if record.exc_text:
            out["exception"] = record.exc_text
        elif record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S")
        )
    handler.addFilter(MaskingFilter(LOG_MASKER))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Apprise and APScheduler report through us; their chatter stays below INFO.
    for noisy in ("apscheduler", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # Apprise's own messages may quote a URL with its password or token: they never
    # reach our handlers; the deliverer captures them and logs them masked.
    logging.getLogger("apprise").propagate = False


def _common_flags(parser: argparse.ArgumentParser, top: bool, config: bool = True) -> None:
    """``-c``, ``--log-level``, ``--log-format``: on the top parser with their defaults, and
    on every command's parser without any, so a flag given after the command overrides one
    given before it and leaving it out there keeps the one before (or the default).
    ``config=False`` leaves out ``-c`` (``demo`` writes its own config)."""

    def default(value: str) -> str:
        return value if top else argparse.SUPPRESS

    if config:
        parser.add_argument(
            "-c",
            "--config",
            default=default(os.environ.get("FEED_MONITOR_CONFIG", DEFAULT_CONFIG)),
            help=f"config file (default: $FEED_MONITOR_CONFIG or {DEFAULT_CONFIG})",
        )
    parser.add_argument(
        "--log-level",
        default=default(os.environ.get("FEED_MONITOR_LOG_LEVEL", "info")),
        choices=["debug", "info", "warning", "error"],
    )
    parser.add_argument("--log-format", default=default("text"), choices=["text", "json"])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="feed-monitor",
        description="Watch news feeds and send alerts when an article matches your rules.",
    )
    p.add_argument("--version", action="version", version=f"feed-monitor {__version__}")
    _common_flags(p, top=True)
    common = argparse.ArgumentParser(add_help=False)
    _common_flags(common, top=False)
    logging_only = argparse.ArgumentParser(add_help=False)
    _common_flags(logging_only, top=False, config=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        parents=[logging_only],
        help="see it work, offline: real RFI articles replayed as live feeds, alerts "
        "printed as they arrive",
    )
    demo.add_argument(
        "--dir",
        default="demo-data",
        metavar="DIR",
        help="folder for the demo's config and database (default: demo-data)",
    )
    demo.add_argument(
        "--fresh",
        action="store_true",
        help="start over: remove the database of an earlier run (by default "
        "a run resumes where the last one stopped)",
    )
    demo.add_argument(
        "--every",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="publish a new article every SECONDS (default 5)",
    )
    demo.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help=f"address of the web console, /healthz and /metrics (default "
        f"{DEFAULT_LISTEN}, or a free port when that one is taken)",
    )
    demo.add_argument(
        "--verbose", action="store_true", help="also log every poll and send, as `run` does"
    )
    demo.add_argument("--grace", type=float, default=20.0, help=argparse.SUPPRESS)
    run = sub.add_parser("run", parents=[common], help="run the daemon until stopped")
    run.add_argument(
        "--grace",
        type=float,
        default=20.0,
        help="seconds to finish in-flight work on SIGTERM (default 20)",
    )
    sub.add_parser(
        "once", parents=[common], help="poll every feed once, deliver, print a summary, exit"
    )
    sub.add_parser("check", parents=[common], help="validate the config and summarise it")
    test_rule = sub.add_parser(
        "test-rule",
        parents=[common],
        help="run a rule over the stored items and print what it matches (nothing is sent)",
    )
    which = test_rule.add_mutually_exclusive_group(required=True)
    which.add_argument("name", nargs="?", metavar="NAME", help="a rule of the config file")
    which.add_argument("--query", help="a query to try instead, e.g. '中俄 OR 普京 -体育'")
    test_rule.add_argument(
        "--since", metavar="DURATION", help="only items published within this window, e.g. 7d, 24h"
    )
    test_rule.add_argument(
        "--feed",
        action="append",
        default=[],
        metavar="ID",
        help="only items seen in this feed (repeatable)",
    )
    test_rule.add_argument(
        "--render",
        metavar="CHANNEL",
        help="also show each message as this channel would receive it",
    )
    test_rule.add_argument(
        "--explain",
        action="store_true",
        help="show every place a keyword occurred and why it counted or not",
    )
    status = sub.add_parser(
        "status", parents=[common], help="feeds, channels and rules as the database sees them"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser(
        "schema", parents=[common], help="print the JSON Schema of the config file (for editors)"
    )
    silence = sub.add_parser(
        "silence", parents=[common], help="silence a rule for a while: add, list, expire"
    )
    sil_sub = silence.add_subparsers(dest="silence_command", required=True, metavar="ACTION")
    sil_add = sil_sub.add_parser("add", parents=[common], help="silence a rule")
    sil_add.add_argument("--rule", required=True, help="rule name")
    sil_add.add_argument("--channel", help="only this channel (default: every channel)")
    sil_add.add_argument("--for", dest="duration", required=True, help="e.g. 6h, 2d")
    sil_add.add_argument("--comment", default="", help="why")
    sil_list = sil_sub.add_parser("list", parents=[common], help="active silences")
    sil_list.add_argument("--all", action="store_true", help="include expired ones")
    sil_exp = sil_sub.add_parser("expire", parents=[common], help="end a silence now")
    sil_exp.add_argument("id", type=int)
    redeliver = sub.add_parser(
        "redeliver", parents=[common], help="send dead letters again (all, or by channel/rule)"
    )
    redeliver.add_argument("--channel")
    redeliver.add_argument("--rule")
    ntest = sub.add_parser(
        "notify-test", parents=[common], help="send a test message through a channel, per URL"
    )
    ntest.add_argument("channel")
    imp = sub.add_parser(
        "import",
        parents=[common],
        help="store <!--ms--> archive files as already seen (they never alert)",
    )
    imp.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="files, folders (*.md inside, recursively) or glob patterns",
    )
    imp.add_argument(
        "--feed",
        default="archive",
        metavar="ID",
        help="feed id the items are recorded as seen in (default: archive)",
    )
    _progress_flags(imp)
    exp = sub.add_parser(
        "export",
        parents=[common],
        help="write stored items as <!--ms--> archive files, one per item",
    )
    exp.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    exp.add_argument(
        "--since",
        metavar="WHEN",
        help="items published since: a date (2023-09-26), a date and time "
        "(UTC unless it says) or a duration back from now (7d)",
    )
    exp.add_argument("--until", metavar="WHEN", help="items published before (same forms)")
    exp.add_argument("--rule", metavar="NAME", help="only items this rule matched")
    exp.add_argument(
        "--feed",
        action="append",
        default=[],
        metavar="ID",
        help="only items seen in this feed (repeatable)",
    )
    _progress_flags(exp)
    prune = sub.add_parser(
        "prune", parents=[common], help="apply retention now: empty old bodies, delete old keys"
    )
    prune.add_argument("--items", metavar="DURATION", help="instead of retention.items")
    prune.add_argument("--keys", metavar="DURATION", help="instead of retention.keys")
    feeds = sub.add_parser("feeds", parents=[common], help="the feed list as OPML: import, export")
    feeds_sub = feeds.add_subparsers(dest="feeds_command", required=True, metavar="ACTION")
    feeds_imp = feeds_sub.add_parser(
        "import",
        parents=[common],
        help="print an OPML file's feeds as YAML to add to the config's feeds:",
    )
    feeds_imp.add_argument("file", metavar="FILE.opml")
    feeds_exp = feeds_sub.add_parser(
        "export", parents=[common], help="write the configured feeds as OPML"
    )
    feeds_exp.add_argument("--out", metavar="FILE", help="file to write (default: stdout)")
    feeds_exp.add_argument(
        "--reveal-secrets",
        action="store_true",
        help="write ${ENV} secrets in feed URLs as they are, not masked",
    )
    db = sub.add_parser("db", parents=[common], help="database schema: upgrade, current")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", parents=[common], help="migrate the schema to this version")
    db_sub.add_parser("current", parents=[common], help="print the schema revision")
    return p


def _progress_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show a progress bar on stderr (default: when it is a terminal)",
    )
    group.add_argument("--no-progress", dest="progress", action="store_false")


def main(argv: Sequence[str] | None = None, *, clock: Clock = SYSTEM_CLOCK) -> int:
    # First, before any thread starts: few malloc arenas for many poll threads
    # (MALLOC_ARENA_MAX, when set, decides instead).
    limit_arenas()
    args = _parser().parse_args(argv)
    setup_logging(getattr(args, "log_level", "info"), getattr(args, "log_format", "text"))
    install()  # Apprise knows console:// before a command reads a channel's URL
    try:
        code = COMMANDS[args.command](args, clock)
        sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        return _reader_gone()
    except (ConfigError, UsageError) as e:
        print(f"error: {LOG_MASKER(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except MonitorError as e:
        print(f"error: {LOG_MASKER(str(e))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _reader_gone() -> int:
    """stdout's reader closed the pipe (``| head -1``): stop quietly, as a command killed
    by SIGPIPE would, and keep the interpreter from failing to flush at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # stdout is not a file (a test's capture): nothing to flush at exit
    return EXIT_BROKEN_PIPE


def _load(args: argparse.Namespace) -> LoadedConfig:
    """The config of ``-c``; what it makes secret is masked in every output from now on."""
    loaded = load_config(args.config)
    masker_for(loaded, LOG_MASKER)
    return loaded


def cmd_check(args: argparse.Namespace, clock: Clock) -> int:
    loaded = _load(args)
    compile_rules(loaded.rule_specs(), loaded.config.aliases)
    channel_problems(loaded)
    print(render_summary(loaded))
    cfg = loaded.config
    if not any(f.enabled for f in cfg.feeds):
        which = "every feed is disabled" if cfg.feeds else "no feeds are configured"
        print(f"warning: {loaded.path}: {which}: nothing is watched", file=sys.stderr)
    elif not cfg.rules:
        print(f"warning: {loaded.path}: no rules are configured: nothing alerts", file=sys.stderr)
    return 0


def channel_problems(loaded: LoadedConfig) -> None:
    """ConfigErrors for every channel URL Apprise could never deliver through, located
    at the URL's line with Apprise's reason (secrets masked)."""
    masker = masker_for(loaded)
    found: list[tuple[str, str, int, str]] = []
    for name, ch in loaded.config.channels.items():
        for i, url in enumerate(ch.urls):
            problem = undeliverable(url)
            if problem:
                found.append((name, url, i, problem))
    if not found:
        return
    wanted = [
        (("channels", n, "urls", i), ("channels", n, "url"), ("channels", n))
        for n, _, i, _ in found
    ]
    lines = loaded.lines_of(p for paths in wanted for p in paths)
    raise ConfigErrors(
        [
            ConfigError(
                f"Apprise can never deliver through {masker(mask_url(url))}: {masker(problem)}",
                loaded.path,
                next((lines[p] for p in paths if p in lines), None),
                f"channels.{name}.urls[{i}]",
            )
            for (name, url, i, problem), paths in zip(found, wanted, strict=True)
        ]
    )


def render_summary(loaded: LoadedConfig) -> str:
    cfg = loaded.config
    masker = masker_for(loaded)
    lines = [
        f"{loaded.path}: OK",
        f"database: {masker(_mask_db(cfg.database))}",
        f"feeds ({len(cfg.feeds)}):",
    ]
    for f in cfg.feeds:
        every = f.interval or cfg.defaults.interval
        off = "" if f.enabled else " (disabled)"
        lines.append(f"  {f.id}: {masker(f.url)} every {every:g} s{off}")
    lines.append(f"channels ({len(cfg.channels)}):")
    for name, ch in cfg.channels.items():
        lines.append(f"  {name}: " + ", ".join(masker(mask_url(u)) for u in ch.urls))
    lines.append(f"rules ({len(cfg.rules)}):")
    for r in cfg.rules:
        parts = []
        if r.query:
            parts.append(f"query {r.query!r}")
        for label in ("any", "all", "none"):
            words = getattr(r, label)
            if words:
                parts.append(f"{label} {list(words)}")
        scope = f" on {', '.join(r.feeds)}" if r.feeds else ""
        lines.append(f"  {r.name}: {'; '.join(parts)}{scope} -> {', '.join(r.notify)}")
    return "\n".join(lines)


def _mask_db(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid URL>"


def cmd_run(args: argparse.Namespace, clock: Clock) -> int:
    daemon = Daemon.open(args.config, clock=clock, masker=LOG_MASKER, exclusive=True)
    return _serve(daemon, args.grace)


def cmd_demo(args: argparse.Namespace, clock: Clock) -> int:
    demo = Demo(Path(args.dir), fresh=args.fresh, every=args.every, listen=args.listen, clock=clock)
    try:
        # The demo holds its database's one-daemon lock itself (taken before --fresh
        # removed anything): the daemon it runs is that one.
        daemon = Daemon.open(str(demo.config_path), clock=clock, masker=LOG_MASKER)
    except BaseException:
        demo.close()
        raise
    quiet = not args.verbose and logging.getLogger().level == logging.INFO
    logged = (
        "each story published, a heartbeat every 30 s, warnings (--verbose: every poll and send)"
        if quiet
        else "every poll and send, as `run` logs them"
        if args.verbose
        else f"at --log-level {args.log_level}"
    )
    with _demo_log(quiet):
        print(demo.banner(daemon.parts.runtime.loaded, logged), end="\n\n", flush=True)
        code = _serve(daemon, args.grace, before_exit=demo.close)
    print(demo.farewell(), flush=True)
    return code


@contextmanager
def _demo_log(quiet: bool) -> Iterator[None]:
    """When ``quiet``, of the daemon's log only warnings, the heartbeat and the demo's own
    lines (a story published): the alerts are the show. Levels are restored after."""
    names = ("monitor", "monitor.demo", "monitor.heartbeat")
    before = {name: logging.getLogger(name).level for name in names}
    if quiet:
        logging.getLogger("monitor").setLevel(logging.WARNING)
        for name in names[1:]:
            logging.getLogger(name).setLevel(logging.INFO)
    try:
        yield
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


def _serve(daemon: Daemon, grace: float, before_exit: Callable[[], None] = lambda: None) -> int:
    """The daemon's run loop until SIGTERM or SIGINT; ``before_exit`` runs once it stops."""
    try:
        code = daemon.run(grace=grace)
    finally:
        before_exit()
    if daemon.abandoned:
        # Polls or sends still running after the grace period hold no lease any more
        # (their feeds and alerts are taken up again on the next start); waiting for
        # them at interpreter exit would break the promise to stop within the grace.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def cmd_schema(args: argparse.Namespace, clock: Clock) -> int:
    """The config's JSON Schema, as committed in config/monitor.schema.json."""
    print(json.dumps(config_json_schema(), indent=2, ensure_ascii=False))
    return 0


def cmd_once(args: argparse.Namespace, clock: Clock) -> int:
    report = Daemon.open(args.config, clock=clock, masker=LOG_MASKER).once()
    ing, dlv = report.ingest, report.delivery
    for r in report.results:
        extra = f": {r.error}" if r.error else ""
        print(f"{r.feed}: {r.outcome}{extra}")
    print(
        f"items: {ing.new} new, {ing.updated} updated, {ing.repeats} repeats; "
        f"alerts: {ing.alerts} created, {dlv.sent} sent, {dlv.failed} failed, "
        f"{dlv.dead} dead"
    )
    polled = [r for r in report.results if r.outcome is not PollOutcome.REMOVED]
    if polled and not any(r.outcome in POLLED for r in polled):
        print(f"error: no feed could be polled ({len(polled)} tried)", file=sys.stderr)
        return EXIT_NOTHING_POLLED
    return 0


def cmd_status(args: argparse.Namespace, clock: Clock) -> int:
    loaded = _load(args)
    store = open_store(loaded.config, clock=clock)
    try:
        report = collect_status(loaded, store, clock.now_ms())
    finally:
        store.close()
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print_status(report)
    return 0


def cmd_silence(args: argparse.Namespace, clock: Clock) -> int:
    loaded = _load(args)
    cfg = loaded.config
    seconds = 0.0
    if args.silence_command == "add":
        _check_rule(loaded, args.rule, "--rule")
        if args.channel:
            _check_channel(loaded, args.channel, "--channel")
        try:
            seconds = parse_duration(args.duration)
        except ValueError as e:
            raise UsageError(f"--for: {e}") from None
        if seconds <= 0:
            raise UsageError("--for must be longer than zero")
    store = open_store(cfg, clock=clock)
    now = clock.now_ms()
    try:
        if args.silence_command == "add":
            ends = now + int(seconds * 1000)
            sid = store.outbox.add_silence(
                args.rule, args.channel, now, ends, args.comment, getpass.getuser(), now
            )
            print(
                f"silence {sid}: rule '{args.rule}' on "
                f"{args.channel or 'every channel'} until {utc_text(ends)}"
            )
        elif args.silence_command == "list":
            rows = store.outbox.silences(now, include_expired=args.all)
            if not rows:
                print("no silences" if args.all else "no active silences")
            for s in rows:
                state = (
                    "active" if s.active(now) else ("expired" if s.ends_ms <= now else "pending")
                )
                note = f"  # {s.comment}" if s.comment else ""
                print(
                    f"{s.id}: rule '{s.rule}' on {s.channel or 'every channel'}, {state}, "
                    f"{utc_text(s.starts_ms)} .. {utc_text(s.ends_ms)} by {s.created_by}"
                    f"{note}"
                )
        else:
            if not store.outbox.expire_silence(args.id, now):
                ids = ", ".join(str(x.id) for x in store.outbox.silences(now)) or "none"
                raise UsageError(f"no active silence {args.id} (active silences: {ids})")
            print(f"silence {args.id} expired")
    finally:
        store.close()
    return 0


def cmd_redeliver(args: argparse.Namespace, clock: Clock) -> int:
    loaded = _load(args)
    if args.channel:
        # Alerts put back for a channel the config no longer has could never be sent.
        _check_channel(loaded, args.channel, "--channel")
    store = open_store(loaded.config, clock=clock)
    try:
        if args.rule and not store.history.count_matches(args.rule):
            # A rule since removed from the config may still have dead letters to send.
            _check_rule(loaded, args.rule, "--rule", " with no stored matches")
        n = store.outbox.redeliver(clock.now_ms(), channel=args.channel, rule=args.rule)
    finally:
        store.close()
    scope = " and ".join(
        f"{k} '{v}'" for k, v in (("channel", args.channel), ("rule", args.rule)) if v
    )
    print(
        f"{n} dead alert{'s' if n != 1 else ''}{' for ' + scope if scope else ''} "
        "queued for delivery again"
    )
    return 0


def cmd_notify_test(args: argparse.Namespace, clock: Clock) -> int:
    loaded = _load(args)
    cfg = loaded.config
    _check_channel(loaded, args.channel)
    masker = masker_for(loaded)
    settings = channel_settings(args.channel, cfg.channels[args.channel])
    channel = build_channels({args.channel: settings}, masker, loaded.path)[args.channel]
    results = notify_test(
        channel,
        masker,
        "feed-monitor test",
        f"A test message from feed-monitor to channel '{args.channel}'.",
    )
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.url}{': ' + r.detail if r.detail else ''}")
    if len(results) < len(cfg.channels[args.channel].urls):
        print(
            f"FAIL {len(cfg.channels[args.channel].urls) - len(results)} URL(s) Apprise "
            "could not read (see the log)"
        )
        return 1
    return 0 if results and all(r.ok for r in results) else 1


def cmd_test_rule(args: argparse.Namespace, clock: Clock) -> int:
    return backtest(
        _load(args),
        name=args.name,
        query=args.query,
        since=args.since,
        feeds=args.feed,
        render=args.render,
        out=sys.stdout,
        err=sys.stderr,
        clock=clock,
        explain=args.explain,
    )


class _Progress:
    """A rich progress bar on stderr, or nothing; messages printed above it."""

    def __init__(self, wanted: bool | None, label: str) -> None:
        self.bar: Any = None
        self.task: Any = None
        if wanted is None:
            wanted = sys.stderr.isatty()
        if wanted:
            self.bar = Progress(
                TextColumn(label),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(file=sys.stderr, force_terminal=True),
            )

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task("", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def total(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, total=n)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def error(self, message: str) -> None:
        if self.bar is not None:
            self.bar.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=sys.stderr)


def cmd_import(args: argparse.Namespace, clock: Clock) -> int:
    loaded = _load(args)
    rules = compile_rules(loaded.rule_specs(), loaded.config.aliases)
    store = open_store(loaded.config, clock=clock)
    try:
        with _Progress(args.progress, "importing") as progress:
            report = import_archive(
                store,
                args.paths,
                rules=rules,
                feed_ids=[f.id for f in loaded.config.feeds],
                feed_id=args.feed,
                now_ms=clock.now_ms(),
                on_error=progress.error,
                on_files=progress.total,
                on_progress=progress.advance,
                on_skip=progress.error,
            )
    finally:
        store.close()
    skipped = "".join(
        f"; {n} {what}"
        for n, what in (
            (report.skipped, f"skipped: {NOT_ARCHIVE}"),
            (
                report.outside,
                f"symlink{'s' if report.outside != 1 else ''} leading outside "
                "the folder not followed",
            ),
        )
        if n
    )
    print(
        f"{report.files} file{'s' if report.files != 1 else ''}: {report.new} new, "
        f"{report.duplicate} duplicate, {report.invalid} invalid{skipped}; "
        f"{report.matched} rule matches recorded as seen (feed '{args.feed}'), no alerts"
    )
    # Notes beside the archive files are no failure; a malformed archive file is.
    return EXIT_ERROR if report.invalid else 0


def parse_when(text: str, now_ms: int, flag: str) -> int:
    """Epoch ms of ``--since``/``--until``: a duration back from now (``7d``), a date
    (``2023-09-26``, midnight UTC) or a date and time (``2023-09-26T08:00``, UTC
    unless it names an offset)."""
    try:
        return now_ms - int(parse_duration(text) * 1000)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{flag}: expected a duration (7d), a date (2023-09-26) or a "
            f"date and time (2023-09-26T08:00, UTC), got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def cmd_export(args: argparse.Namespace, clock: Clock) -> int:
    loaded = _load(args)
    now = clock.now_ms()
    since = parse_when(args.since, now, "--since") if args.since else None
    until = parse_when(args.until, now, "--until") if args.until else None
    store = open_store(loaded.config, clock=clock)
    try:
        if args.rule and not store.history.count_matches(args.rule):
            _check_rule(loaded, args.rule, "--rule", " with no stored matches")
        if args.feed:
            known_feeds = {f.id for f in loaded.config.feeds} | store.history.known_feed_ids()
            for fid in args.feed:
                if fid not in known_feeds:
                    raise UsageError(f"--feed: no feed '{fid}' in {loaded.path} or the database")
        with _Progress(args.progress, "exporting") as progress:
            report = export_archive(
                store,
                args.out,
                since_ms=since,
                until_ms=until,
                rule=args.rule,
                feed_ids=args.feed,
                on_progress=progress.advance,
            )
    finally:
        store.close()
    skipped = report.pruned + report.no_url
    print(
        f"{args.out}: {report.written} written, {report.unchanged} unchanged"
        + (
            f"; {skipped} skipped ({report.pruned} emptied by retention, {report.no_url} "
            "without a URL)"
            if skipped
            else ""
        )
    )
    return 0


def cmd_prune(args: argparse.Namespace, clock: Clock) -> int:
    loaded = _load(args)
    overrides: dict[str, float] = {}
    for name in ("items", "keys"):
        value = getattr(args, name)
        if value is not None:
            try:
                overrides[name] = parse_duration(value)
            except ValueError as e:
                raise UsageError(f"--{name}: {e}") from None
    try:
        retention = RetentionConfig(**{**loaded.config.retention.model_dump(), **overrides})
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "retention"
        raise UsageError(
            f"--items/--keys ({where}): {err['msg'].removeprefix('Value error, ')}"
        ) from None
    if retention.items is None and retention.keys is None:
        print(
            "nothing to prune: retention.items and retention.keys are not set "
            "(or pass --items / --keys)"
        )
        return 0
    store = open_store(loaded.config, clock=clock)
    try:
        stats = apply_retention(store, retention, clock.now_ms())
    finally:
        store.close()
    print(
        f"{stats.emptied} item bodies emptied, {stats.deleted} items deleted"
        + (f", {stats.kept} old items kept while their alerts wait" if stats.kept else "")
    )
    return 0


def cmd_feeds(args: argparse.Namespace, clock: Clock) -> int:
    loaded = _load(args)
    if args.feeds_command == "import":
        text, notes = opml_import(loaded, args.file)
        for note in notes:
            print(f"# skipped: {note}", file=sys.stderr)
        sys.stdout.write(text)
        return 0
    opml = opml_export(loaded, reveal_secrets=args.reveal_secrets)
    if not args.out:
        sys.stdout.write(opml)
        return 0
    try:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(opml)
    except OSError as e:
        raise MonitorError(f"{args.out}: cannot write: {e.strerror or e}") from None
    print(f"{args.out}: {len(loaded.config.feeds)} feeds")
    return 0


def cmd_db(args: argparse.Namespace, clock: Clock) -> int:
    """``db upgrade`` migrates whatever the policy; ``db current`` only looks, and under
    ``database_upgrade: never`` an older schema ends it with the refusal every other
    command gives."""
    loaded = _load(args)
    cfg = loaded.config
    store = open_store(
        cfg, clock=clock, upgrade="force" if args.db_command == "upgrade" else "inspect"
    )
    try:
        current, head = store.schema_revision()
    finally:
        store.close()
    state = "up to date" if current == head else f"behind (this version needs {head})"
    print(f"{_mask_db(cfg.database)}: schema {current or 'none'}, {state}")
    if current != head and cfg.database_upgrade == "never":
        open_store(cfg, clock=clock).close()  # raises the policy's StoreError
    return 0


def _check_rule(loaded: LoadedConfig, name: str, flag: str, unless: str = "") -> None:
    """UsageError for a rule the config does not have, listing the rules it has."""
    rules = [r.name for r in loaded.config.rules]
    if name not in rules:
        raise UsageError(
            f"{flag}: unknown rule '{name}' in {loaded.path}{unless} "
            f"(rules: {', '.join(rules) or 'none defined'})"
        )


def _check_channel(loaded: LoadedConfig, name: str, flag: str | None = None) -> None:
    """UsageError for a channel the config does not have, listing the channels it has."""
    channels = sorted(loaded.config.channels)
    if name not in channels:
        where = f"{flag}: " if flag else ""
        raise UsageError(
            f"{where}unknown channel '{name}' in {loaded.path} "
            f"(channels: {', '.join(channels) or 'none defined'})"
        )


COMMANDS: dict[str, Callable[[argparse.Namespace, Clock], int]] = {
    "schema": cmd_schema,
    "check": cmd_check,
    "run": cmd_run,
    "demo": cmd_demo,
    "once": cmd_once,
    "db": cmd_db,
    "silence": cmd_silence,
    "redeliver": cmd_redeliver,
    "notify-test": cmd_notify_test,
    "status": cmd_status,
    "test-rule": cmd_test_rule,
    "import": cmd_import,
    "export": cmd_export,
    "prune": cmd_prune,
    "feeds": cmd_feeds,
}


if __name__ == "__main__":
    raise SystemExit(main())
