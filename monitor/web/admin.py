"""The console's actions (silence a rule, expire a silence, redeliver dead letters),
registered only when ``http.admin_token`` is set: a login form, a session cookie, a CSRF
token in every form, and each action logged."""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from monitor.config import parse_duration
from monitor.web.pages import ConsoleSource
from monitor.web.text import Text

log = logging.getLogger("monitor.web")

SILENCE_FOR = ("1h", "6h", "24h", "7d")


def add_admin(app: Flask, source: ConsoleSource) -> None:
    """Login, logout and the action endpoints, on ``app``."""
    # The session cookie is signed with a key of this process: a restart logs out.
    app.secret_key = secrets.token_bytes(32)
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_NAME="feed_monitor_console",
    )
    bp = Blueprint("admin", __name__)
    store, clock = source.store, source.clock

    def token() -> str | None:
        return source.config().config.http.admin_token

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(24)
        return str(session["csrf"])

    app.jinja_env.globals["csrf_token"] = csrf_token

    def text() -> Text:
        http = source.config().config.http
        return Text(http.language, http.timezone)

    @bp.before_request
    def check() -> None:
        if token() is None:  # removed by a reload: the actions are gone too
            abort(404)
        if request.method == "POST":
            sent = request.form.get("csrf", "")
            if not sent or not hmac.compare_digest(sent, str(session.get("csrf", ""))):
                log.warning(
                    "console: refused a %s without a valid CSRF token from %s",
                    request.path,
                    request.remote_addr,
                )
                abort(403)
            if request.endpoint != "admin.login" and not session.get("admin"):
                abort(403)

    @bp.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        failed = False
        if request.method == "POST":
            given = request.form.get("token", "")
            wanted = token() or ""
            if hmac.compare_digest(given.encode(), wanted.encode()):
                session.clear()
                session["admin"] = True
                csrf_token()
                log.info("console: admin logged in from %s", request.remote_addr)
                return redirect(_local(request.form.get("next")) or url_for("overview"))
            failed = True
            log.warning("console: wrong admin token from %s", request.remote_addr)
        return render_template(
            "login.html", failed=failed, next=_local(request.args.get("next")) or ""
        ), 401 if failed else 200

    @bp.post("/logout")
    def logout() -> Response:
        session.clear()
        return redirect(url_for("overview"))

    @bp.post("/actions/silence")
    def silence() -> Response:
        rule = request.form.get("rule", "")
        if rule not in {r.name for r in source.config().config.rules}:
            abort(400)
        span = request.form.get("for", "")
        if span not in SILENCE_FOR:
            abort(400)
        comment = request.form.get("comment", "")[:200]
        now = clock.now_ms()
        sid = store.outbox.add_silence(
            rule, None, now, now + int(parse_duration(span) * 1000), comment, "console", now
        )
        log.info(
            "console: silence #%d of rule %s for %s added from %s",
            sid,
            rule,
            span,
            request.remote_addr,
        )
        flash(f"{text()('Done')}: {text()('Silence')} #{sid} {rule} {span}")
        return redirect(url_for("rule_page", name=rule))

    @bp.post("/actions/expire")
    def expire() -> Response:
        raw = request.form.get("id", "")
        if not raw.isdigit():
            abort(400)
        done = store.outbox.expire_silence(int(raw), clock.now_ms())
        log.info(
            "console: silence #%s %s from %s",
            raw,
            "expired" if done else "was not active",
            request.remote_addr,
        )
        flash(
            f"{text()('Done')}: {text()('Expire')} #{raw}"
            if done
            else f"#{raw}: {text()('Not found')}"
        )
        return redirect(url_for("overview"))

    @bp.post("/actions/redeliver")
    def redeliver() -> Response:
        channel = request.form.get("channel") or None
        n = store.outbox.redeliver(clock.now_ms(), channel=channel)
        log.info(
            "console: %d dead letter(s)%s put back in the queue from %s",
            n,
            f" of channel {channel}" if channel else "",
            request.remote_addr,
        )
        flash(f"{text()('Done')}: {text()('Redeliver dead letters')}: {n}")
        return redirect(url_for("overview"))

    app.register_blueprint(bp)


def _local(target: str | None) -> str | None:
    """A redirect target only when it is a path on this server."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None
