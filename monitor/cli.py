"""Command line: argument parsing and output only; the work is done by ``monitor.app``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from monitor import __version__
from monitor.config import LoadedConfig, load_config
from monitor.errors import ConfigError, MonitorError
from monitor.secrets import Masker, mask_url

DEFAULT_CONFIG = "config/monitor.yaml"
log = logging.getLogger("monitor")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
               "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s",
                                               "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Apprise and APScheduler report through us; their chatter stays below INFO.
    for noisy in ("apscheduler", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # Apprise's own messages may quote a URL with its password or token: they never
    # reach our handlers; the deliverer captures them and logs them masked.
    logging.getLogger("apprise").propagate = False


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="feed-monitor",
        description="Watch news feeds and send alerts when an article matches your rules.")
    p.add_argument("--version", action="version", version=f"feed-monitor {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", default=os.environ.get("FEED_MONITOR_CONFIG",
                                                                 DEFAULT_CONFIG),
                        help=f"config file (default: $FEED_MONITOR_CONFIG or {DEFAULT_CONFIG})")
    common.add_argument("--log-level", default=os.environ.get("FEED_MONITOR_LOG_LEVEL", "info"),
                        choices=["debug", "info", "warning", "error"])
    common.add_argument("--log-format", default="text", choices=["text", "json"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", parents=[common], help="run the daemon until stopped")
    run.add_argument("--grace", type=float, default=20.0,
                     help="seconds to finish in-flight work on SIGTERM (default 20)")
    sub.add_parser("once", parents=[common],
                   help="poll every feed once, deliver, print a summary, exit")
    sub.add_parser("check", parents=[common], help="validate the config and summarise it")
    status = sub.add_parser("status", parents=[common],
                            help="feeds, channels and rules as the database sees them")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    db = sub.add_parser("db", help="database schema: upgrade, current")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", parents=[common], help="migrate the schema to this version")
    db_sub.add_parser("current", parents=[common], help="print the schema revision")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        if args.command == "check":
            return cmd_check(args)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "once":
            return cmd_once(args)
        if args.command == "db":
            return cmd_db(args)
        if args.command == "status":
            return cmd_status(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except MonitorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


def cmd_check(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    from monitor.match import compile_rules

    compile_rules(loaded.rule_specs())
    print(render_summary(loaded))
    return 0


def render_summary(loaded: LoadedConfig) -> str:
    cfg = loaded.config
    masker = Masker(loaded.secrets)
    lines = [f"{loaded.path}: OK", f"database: {_mask_db(cfg.database)}",
             f"feeds ({len(cfg.feeds)}):"]
    for f in cfg.feeds:
        every = f.interval or cfg.defaults.interval
        off = "" if f.enabled else " (disabled)"
        lines.append(f"  {f.id}: {masker(f.url)} every {every:g} s{off}")
    lines.append(f"channels ({len(cfg.channels)}):")
    for name, ch in cfg.channels.items():
        for url in ch.urls:
            masker.add_url(url)
        lines.append(f"  {name}: " + ", ".join(masker(mask_url(u)) for u in ch.urls))
    lines.append(f"rules ({len(cfg.rules)}):")
    for r in cfg.rules:
        parts = []
        if r.query:
            parts.append(f"query {r.query!r}")
        for label in ("any", "all", "none"):
            words = getattr(r, label)
            if words:
                parts.append(f"{label} {words}")
        scope = f" on {', '.join(r.feeds)}" if r.feeds else ""
        lines.append(f"  {r.name}: {'; '.join(parts)}{scope} -> {', '.join(r.notify)}")
    return "\n".join(lines)


def _mask_db(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid URL>"


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.app import Monitor

    return Monitor(args.config).run(grace=args.grace)


def cmd_once(args: argparse.Namespace) -> int:
    from monitor.app import Monitor

    report: dict[str, Any] = Monitor(args.config).once()
    ing, dlv = report["ingest"], report["delivery"]
    for r in report["results"]:
        extra = f": {r.error}" if r.error else ""
        print(f"{r.feed}: {r.outcome}{extra}")
    print(f"items: {ing.new} new, {ing.updated} updated, {ing.repeats} repeats; "
          f"alerts: {ing.alerts} created, {dlv.sent} sent, {dlv.failed} failed, "
          f"{dlv.dead} dead")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from monitor.status import collect_status, print_status

    loaded = load_config(args.config)
    report = collect_status(loaded)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print_status(report)
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from monitor.store import Store

    loaded = load_config(args.config)
    store = Store(loaded.config.database, upgrade=True if args.db_command == "upgrade" else None)
    current, head = store.schema_revision()
    store.close()
    state = "up to date" if current == head else f"behind (this version needs {head})"
    print(f"{_mask_db(loaded.config.database)}: schema {current or 'none'}, {state}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
