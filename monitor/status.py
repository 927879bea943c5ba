"""``feed-monitor status``: feeds, channels and rules as the database sees them."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from monitor.clock import utc_text
from monitor.config import LoadedConfig
from monitor.schedule.politeness import unhealthy, unhealthy_reason
from monitor.secrets import masker_for
from monitor.store import Store


def _when(ms: int | None) -> str | None:
    return None if ms is None else utc_text(ms, "%Y-%m-%dT%H:%M:%SZ")


def collect_status(loaded: LoadedConfig, store: Store, now_ms: int) -> dict[str, Any]:
    """A plain-data report (what ``--json`` prints) of what ``store`` holds; secrets
    masked."""
    cfg = loaded.config
    masker = masker_for(loaded)
    rows = {r.id: r for r in store.readouts.feed_rows()}
    outbox = store.readouts.alert_summary()
    matched = store.readouts.rule_match_counts(now_ms - 24 * 3600 * 1000)
    counts = store.readouts.counts()
    feeds = []
    for f in cfg.feeds:
        r = rows.get(f.id)
        feeds.append(
            {
                "id": f.id,
                "url": masker(f.url),
                "enabled": f.enabled,
                "last_poll": _when(r.last_poll_ms) if r else None,
                "outcome": r.last_outcome if r else None,
                "http_status": r.last_status if r else None,
                "next_poll": _when(r.next_poll_ms) if r else None,
                "failures": r.failures if r else 0,
                "error": masker(r.last_error) if r and r.last_error else None,
                # Exact times for scripts (the ISO strings above have whole seconds).
                "last_poll_ms": r.last_poll_ms if r else None,
                "next_poll_ms": r.next_poll_ms if r else None,
                # Unhealthy: defaults.unhealthy_after failures in a row (still retried).
                "healthy": not (r and unhealthy(r.failures, cfg.defaults.unhealthy_after)),
                "unhealthy_reason": masker(reason)
                if r
                and (
                    reason := unhealthy_reason(
                        r.failures, cfg.defaults.unhealthy_after, r.last_outcome, r.last_error
                    )
                )
                else None,
            }
        )
    empty = {"pending": 0, "retrying": 0, "held": 0, "sent": 0, "dead": 0, "silenced": 0}
    channels = [{"name": name, **empty, **outbox.get(name, {})} for name in cfg.channels]
    for name in sorted(set(outbox) - set(cfg.channels)):
        channels.append({"name": name, **empty, **outbox[name], "configured": False})
    rules = [{"name": r.name, "matches_24h": matched.get(r.name, 0)} for r in cfg.rules]
    return {
        "database": masker(store.safe_url),
        "items": counts["items"],
        "alerts": counts["alerts"],
        "feeds": feeds,
        "channels": channels,
        "rules": rules,
    }


def _short(stamp: str | None) -> str | None:
    """``2026-11-26T08:59:24Z`` as ``11-26 08:59:24`` (UTC) for narrow tables."""
    return stamp[5:19].replace("T", " ") if stamp else None


def print_status(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    console.print(
        f"database {report['database']}: {report['items']} items, {report['alerts']} alerts"
    )
    t = Table(title="Feeds", title_justify="left")
    for col in ("feed", "last poll", "outcome", "next poll", "failures", "error"):
        t.add_column(col, overflow="fold")
    for f in report["feeds"]:
        outcome = f["outcome"] or "-"
        if f["http_status"] and f["http_status"] not in (200, 304):
            outcome += f" ({f['http_status']})"
        if not f.get("healthy", True):
            outcome = f"UNHEALTHY: {outcome}"
        t.add_row(
            f["id"] + ("" if f["enabled"] else " (disabled)"),
            _short(f["last_poll"]) or "never",
            outcome,
            _short(f["next_poll"]) or "-",
            str(f["failures"]),
            f["error"] or "",
        )
    console.print(t)
    t = Table(title="Channels", title_justify="left")
    states = ("pending", "retrying", "held", "sent", "dead", "silenced")
    t.add_column("channel")
    for col in states:
        t.add_column(col, justify="right")
    for c in report["channels"]:
        # Alerts of a channel removed from the config wait, not lost: say so.
        name = c["name"] + ("" if c.get("configured", True) else " (not configured)")
        t.add_row(name, *(str(c.get(k, 0)) for k in states))
    console.print(t)
    t = Table(title="Rules", title_justify="left")
    t.add_column("rule")
    t.add_column("matches (24 h)", justify="right")
    for r in report["rules"]:
        t.add_row(r["name"], str(r["matches_24h"]))
    console.print(t)
