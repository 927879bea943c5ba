"""The console's pages: overview, alerts, one feed, one rule (with the backtest box);
read-only. Admin actions are added by ``admin.py`` only when a token is configured."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify, render_template, request

from monitor.backtest import run as run_backtest
from monitor.config import LoadedConfig
from monitor.errors import RuleError
from monitor.match import compile_query
from monitor.schedule.politeness import unhealthy, unhealthy_reason
from monitor.secrets import Masker
from monitor.store import Store
from monitor.types import AlertFilter, AlertState, Clock, PollRecord
from monitor.web.text import Text, followable, marked, shown_title

HERE = Path(__file__).parent
PAGE = 50  # alerts per page
FEED_PAGE = 200  # feeds per page of the overview
STATES = ("pending", "retrying", "held", "silenced", "dead", "sent")
BACKTEST_SINCE = {"7d": 7, "30d": 30, "all": None}
BACKTEST_SHOWN = 100


@dataclass(frozen=True)
class ConsoleSource:
    """What the console reads: the daemon's store, clock and masker, and the config in
    force (a reload swaps it)."""

    store: Store
    clock: Clock
    masker: Masker
    config: Callable[[], LoadedConfig]
    # This daemon's recent polls of a feed, newest first (none outside a daemon).
    recent_polls: Callable[[str], list[PollRecord]] = lambda _feed: []


def console_app(source: ConsoleSource) -> Flask:
    """The Flask application of the console's pages (read-only)."""
    app = Flask(
        "monitor.web", template_folder=str(HERE / "templates"), static_folder=str(HERE / "static")
    )
    app.jinja_env.autoescape = True  # every template, whatever its name
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    store, masker = source.store, source.masker

    def text() -> Text:
        http = source.config().config.http
        return Text(http.language, http.timezone)

    @app.context_processor
    def common() -> dict[str, Any]:
        loaded = source.config()
        return {
            "t": text(),
            "marked": marked,
            "link": followable,
            "title_of": shown_title,
            "mask": masker,
            "state_of": alert_state_label,
            "admin_enabled": "admin.login" in app.view_functions,
            "token_set": loaded.config.http.admin_token is not None,
        }

    @app.after_request
    def headers(resp: Response) -> Response:
        # Nothing but our own files: no inline script runs, whatever an item holds.
        resp.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; "
            "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
        )
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        return resp

    @app.get("/")
    def overview() -> str:
        loaded = source.config()
        cfg = loaded.config
        now = source.clock.now_ms()
        rows = {r.id: r for r in store.readouts.feed_rows()}
        feeds: list[dict[str, Any]] = []
        for f in cfg.feeds:
            r = rows.get(f.id)
            sick = bool(r and unhealthy(r.failures, cfg.defaults.unhealthy_after))
            feeds.append(
                {
                    "id": f.id,
                    "title": f.title or f.id,
                    "enabled": f.enabled,
                    "row": r,
                    "healthy": not sick,
                    "error": masker(r.last_error) if r and r.last_error else None,
                    "reason": masker(reason)
                    if r
                    and (
                        reason := unhealthy_reason(
                            r.failures, cfg.defaults.unhealthy_after, r.last_outcome, r.last_error
                        )
                    )
                    else None,
                }
            )
        # Unhealthy first, then failing, then by id.
        feeds.sort(key=lambda f: (f["healthy"], -(f["row"].failures if f["row"] else 0), f["id"]))
        # Paged: a page of 5,000 rows would take longer to render than to read.
        start = (_int_arg("feeds") or 0) * FEED_PAGE
        shown = feeds[start : start + FEED_PAGE]
        paging = {
            "start": start + 1 if shown else 0,
            "end": start + len(shown),
            "total": len(feeds),
            "page": start // FEED_PAGE,
            "pages": max(1, -(-len(feeds) // FEED_PAGE)),
            "unhealthy": sum(not f["healthy"] for f in feeds),
        }
        outbox = store.readouts.alert_summary()
        empty = dict.fromkeys(STATES, 0)
        channels = [
            {"name": n, "configured": True, **empty, **outbox.get(n, {})} for n in cfg.channels
        ]
        channels += [
            {"name": n, "configured": False, **empty, **outbox[n]}
            for n in sorted(set(outbox) - set(cfg.channels))
        ]
        day = store.readouts.rule_match_counts(now - 86_400_000)
        week = store.readouts.rule_match_counts(now - 7 * 86_400_000)
        rules = [
            {"name": r.name, "day": day.get(r.name, 0), "week": week.get(r.name, 0)}
            for r in cfg.rules
        ]
        return render_template(
            "overview.html",
            feeds=shown,
            paging=paging,
            channels=channels,
            rules=rules,
            silences=store.outbox.silences(now),
            counts=store.readouts.counts(),
            states=STATES,
        )

    @app.get("/alerts")
    def alert_list() -> str:
        cfg = source.config().config
        args = request.args
        state = args.get("state") or None
        if state is not None and state not in STATES:
            abort(400)
        where = AlertFilter(
            rule=args.get("rule") or None,
            channel=args.get("channel") or None,
            state=state,
            feed=args.get("feed") or None,
        )
        before = _int_arg("before")
        page, next_id = store.readouts.alert_page(where, before, PAGE)
        filters = {
            k: v
            for k, v in (
                ("rule", where.rule),
                ("channel", where.channel),
                ("state", where.state),
                ("feed", where.feed),
            )
            if v
        }
        return render_template(
            "alerts.html",
            alerts=page,
            next_id=next_id,
            filters=filters,
            first=before is None,
            latest=store.readouts.latest_alert_id(),
            rules=[r.name for r in cfg.rules],
            channels=list(cfg.channels),
            feeds=[f.id for f in cfg.feeds],
            states=STATES,
            now=source.clock.now_ms(),
        )

    @app.get("/alerts/latest")
    def latest() -> Response:
        return jsonify(latest=store.readouts.latest_alert_id())

    @app.get("/feeds/<feed_id>")
    def feed_page(feed_id: str) -> str:
        cfg = source.config().config
        feed = next((f for f in cfg.feeds if f.id == feed_id), None)
        row = store.readouts.feed_row(feed_id)
        if feed is None and row is None:
            abort(404)
        rules = [r.name for r in cfg.rules if not r.feeds or feed_id in r.feeds]
        return render_template(
            "feed.html",
            feed_id=feed_id,
            feed=feed,
            row=row,
            rules=rules,
            url=masker(feed.url if feed else row.url if row else ""),
            error=masker(row.last_error) if row and row.last_error else None,
            items=store.readouts.feed_items(feed_id, 50),
            polls=source.recent_polls(feed_id),
            healthy=not (row and unhealthy(row.failures, cfg.defaults.unhealthy_after)),
        )

    @app.get("/rules/<name>")
    def rule_page(name: str) -> str:
        loaded = source.config()
        rule = next((r for r in loaded.config.rules if r.name == name), None)
        if rule is None:
            abort(404)
        t = text()
        now = source.clock.now_ms()
        chart = _per_day(store.readouts.rule_match_times(name, now - 31 * 86_400_000), now, t)
        query = (request.args.get("q") or "").strip()
        since = request.args.get("since") or "30d"
        if since not in BACKTEST_SINCE:
            abort(400)
        result, error = None, None
        if query:
            try:
                ruleset = compile_query(query[:2000], aliases=loaded.config.aliases)
            except RuleError as e:
                error = e.message
            else:
                days = BACKTEST_SINCE[since]
                result = run_backtest(
                    store, ruleset, None if days is None else now - days * 86_400_000
                )
        return render_template(
            "rule.html",
            rule=rule,
            chart=chart,
            recent=store.readouts.recent_matches(name, 20),
            query=query,
            since=since,
            result=result,
            error=error,
            shown=BACKTEST_SHOWN,
            since_choices=list(BACKTEST_SINCE),
        )

    if source.config().config.http.admin_token is not None:
        from monitor.web.admin import add_admin  # only then: no action endpoint exists

        add_admin(app, source)

    @app.errorhandler(404)
    def not_found(_e: Exception) -> tuple[str, int]:
        return render_template("message.html", message=text()("Not found")), 404

    return app


def _int_arg(name: str) -> int | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if not value.isdigit():
        abort(400)
    return int(value)


def _per_day(times: list[int], now_ms: int, t: Text) -> dict[str, Any]:
    """Matches per calendar day (in the console's zone) over the last 30 days, as the
    bars of an SVG chart: x, y, height, label, count."""
    today = datetime.fromtimestamp(now_ms / 1000, t.tz).date()
    days = [today - timedelta(days=n) for n in range(29, -1, -1)]
    counts = dict.fromkeys(days, 0)
    for ms in times:
        d = datetime.fromtimestamp(ms / 1000, t.tz).date()
        if d in counts:
            counts[d] += 1
    top = max(counts.values()) or 1
    width, height, gap = 20, 120, 4
    bars = []
    for i, d in enumerate(days):
        h = round(counts[d] / top * height)
        bars.append(
            {
                "x": i * (width + gap),
                "y": height - h,
                "h": h,
                "w": width,
                "n": counts[d],
                "label": d.strftime("%m-%d"),
                "show": i % 5 == 4,
            }
        )
    return {
        "bars": bars,
        "width": len(days) * (width + gap),
        "height": height,
        "top": max(counts.values()),
        "total": sum(counts.values()),
    }


def alert_state_label(status: AlertState, attempts: int) -> str:
    """pending, retrying, held, silenced, dead or sent, as the overview counts them."""
    return "retrying" if status == AlertState.PENDING and attempts else str(status)
