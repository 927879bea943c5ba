"""Secrets (``${ENV}`` values, passwords and tokens in Apprise and feed URLs) never appear in
logs (text or JSON), error messages, ``status`` and ``check`` output, or the database."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
from pathlib import Path
from urllib.parse import quote

import pytest

from monitor.config import parse_config
from monitor.secrets import Masker, MaskingFilter, looks_like_token, mask_url, masker_for
from tests.daemon import Daemon, write_config
from tests.support import FeedItem, FeedServer, SmtpSink, WebhookReceiver, rss_feed
from tests.support.cli import run_cli
from tests.support.net import free_port

T0 = 1_700_000_000_000
ENV_PW = "EnvPw-7f3a9c21"  # SMTP password, from ${SMTP_PASSWORD}
LITERAL_PW = "LitPw-5e8d2b40"  # SMTP password written in the YAML itself
FEED_TOKEN = "FeedTok-91c4e7aa"  # feed URL query token, from ${FEED_TOKEN}
FEED_PW = "FeedPw-0b6e13d5"  # feed URL password written in the YAML
SECRETS = (ENV_PW, LITERAL_PW, FEED_TOKEN, FEED_PW)
ENV = {"SMTP_PASSWORD": ENV_PW, "FEED_TOKEN": FEED_TOKEN}


def leaks(text: str | bytes) -> list[str]:
    """The secrets found in ``text``, as written or percent-encoded."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return [s for s in SECRETS if s in text or quote(s, safe="") in text]


def mailto(port: int, password: str) -> str:
    return (
        f"mailto://user:{password}@127.0.0.1:{port}?from=monitor@example.org&to=alerts@example.org"
    )


def test_passwords_and_tokens_appear_nowhere(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.set_feed(
        "/cn", rss_feed([FeedItem("中俄新闻", "https://www.rfi.fr/cn/x1", "<p>x</p>", T0)])
    )
    closed = free_port()
    db = tmp_path / "monitor.db"
    with SmtpSink(credentials={"user": ENV_PW}) as sink:
        config = write_config(
            tmp_path / "monitor.yaml",
            db=db,
            feeds=[
                {"id": "cn", "url": feed_server.url("/cn"), "backlog": "all"},
                {
                    "id": "private",
                    "url": f"http://reader:{FEED_PW}@127.0.0.1:{closed}/rss?token=${{FEED_TOKEN}}",
                },
            ],
            channels={
                "mail": {"urls": [mailto(sink.port, "${SMTP_PASSWORD}")]},  # accepted
                "mail-literal": {"urls": [mailto(sink.port, LITERAL_PW)]},  # wrong password
                "mail-down": {"urls": [mailto(free_port(), "${SMTP_PASSWORD}")]},  # refused
            },
            rules=[{"name": "r", "any": ["中俄"], "notify": ["mail", "mail-literal", "mail-down"]}],
        )
        assert LITERAL_PW in config.read_text(encoding="utf-8")  # literally in the YAML

        with Daemon(config, "--log-level", "debug", env=ENV) as daemon:
            [mail] = sink.wait_for(1, timeout=15)
            daemon.wait_for_line("channel 'mail-literal': alert")
            daemon.wait_for_line("channel 'mail-down': alert")
            daemon.wait_for_line("feed 'private'")
            assert daemon.stop() == 0
        assert mail.login == "user"  # the ${ENV} password was substituted and accepted
        once = run_cli(
            "once", "-c", str(config), "--log-format", "json", "--log-level", "debug", env=ENV
        )
    assert once.returncode == 0, once.stderr

    # Logs, text and JSON: they name the feed and the channels, and mask the secrets.
    assert leaks(daemon.output) == []
    private = [line for line in daemon.lines if "feed 'private'" in line]
    assert private and all("token=****" in line for line in private)
    json_lines = [json.loads(line) for line in once.stderr.splitlines() if line]
    assert any("channel 'mail-literal'" in r["message"] for r in json_lines)
    assert any("feed 'private'" in r["message"] for r in json_lines)
    assert leaks(once.stdout) == [] and leaks(once.stderr) == []
    assert "private: connection-error" in once.stdout

    # status (tables and JSON) and check.
    status = run_cli("status", "-c", str(config), env=ENV)
    status_json = run_cli("status", "--json", "-c", str(config), env=ENV)
    check = run_cli("check", "-c", str(config), env=ENV)
    for out in (status, status_json, check):
        assert out.returncode == 0, out.stderr
        assert leaks(out.stdout) == [] and leaks(out.stderr) == []
    report = json.loads(status_json.stdout)
    [row] = [f for f in report["feeds"] if f["id"] == "private"]
    assert row["error"] and row["outcome"] == "connection-error"
    assert "user:****@" in check.stdout and "reader:****@" in check.stdout

    # The database: errors were recorded, and hold no secret (nor does any other byte).
    with sqlite3.connect(db) as conn:
        errors = dict(
            conn.execute(
                "SELECT channel, last_error FROM alerts WHERE channel != 'mail'"
            ).fetchall()
        )
        feed_url, feed_error = conn.execute(
            "SELECT url, last_error FROM feeds WHERE id = 'private'"
        ).fetchone()
    assert errors["mail-literal"] and errors["mail-down"] and feed_error
    assert "token=****" in feed_url
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if path.exists():
            assert leaks(path.read_bytes()) == [], path


def test_a_config_error_quoting_an_env_value_masks_it(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text("defaults:\n  interval: ${SMTP_PASSWORD}\n", encoding="utf-8")
    out = run_cli("check", "-c", str(config), env=ENV)
    assert out.returncode == 2
    assert f"{config}:2 defaults.interval: expected a duration" in out.stderr
    assert leaks(out.stderr) == [] and leaks(out.stdout) == []


@pytest.mark.parametrize(
    "url,secrets",
    [
        (
            "mailto://user:p%40ss%2Fw%C3%B6rd-123@127.0.0.1:2525?to=a@example.org",
            ["p@ss/wörd-123", "p%40ss%2Fw%C3%B6rd-123"],
        ),
        ("mailtos://alerts:S3cretPW99@smtp.example.com:465?to=me@example.com", ["S3cretPW99"]),
        (
            "tgram://123456789:ABCdefGHIjklMNOpqrSTUvwxYZ012345678/987654",
            ["123456789:ABCdefGHIjklMNOpqrSTUvwxYZ012345678"],
        ),
        ("json://hookuser:hookPa55word@127.0.0.1:8080/path", ["hookPa55word"]),
        (
            "json://127.0.0.1/p?+Authorization=Bearer%20BearerTok123&-apikey=GetKey456",
            ["BearerTok123", "GetKey456"],
        ),
        ("ntfy://ntfy.sh/topic?token=tk_ABCDEF123456", ["tk_ABCDEF123456"]),
        ("dingtalk://DSECRET123456@DTOKEN987654/", ["DSECRET123456", "DTOKEN987654"]),
        ("wecombot://WECOMKEY123456789", ["WECOMKEY123456789"]),
        ("mailto://user@example.com?pass=QueryPass789&smtp=smtp.example.com", ["QueryPass789"]),
    ],
)
def test_apprise_urls_are_shown_without_their_secrets(url: str, secrets: list[str]) -> None:
    shown = mask_url(url)
    masker = Masker()
    masker.add_url(url)
    text = f"failed to send to {url}: login {' '.join(secrets)} refused"
    for s in secrets:
        assert s not in shown and quote(s, safe="") not in shown
        assert s not in masker(text)
    assert "****" in masker(text)


def test_log_filter_masks_messages_arguments_and_tracebacks() -> None:
    masker = Masker(["TopSecret42"])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter(masker))
    logger = logging.getLogger("tests.secrets.filter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("token %s in %s", "TopSecret42", "http://u:TopSecret42@x.org/")
        try:
            raise RuntimeError("GET /rss?token=TopSecret42 failed")
        except RuntimeError:
            logger.exception("feed 'cn': unexpected error")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "TopSecret42" not in text
    assert "token **** in http://u:****@x.org/" in text
    assert "RuntimeError: GET /rss?token=**** failed" in text


# Issue #15 point 5: one masking policy. A secret in every place a user can put one.
AUTH_TOK = "AuthTok-4c1d9e"  # ?auth= written in the YAML
ACCESS_CODE = "AccCode-8b2f60"  # ?access_code= written in the YAML
PATH_TOKEN = "pT7x9Qm2Lk4Rz8Wv"  # a feed URL path segment (/feeds/<token>/e401)
HOOK_TOKEN = "hK3j8Zp1Xw6Nc5Vb"  # a webhook URL path segment
EVERY_SECRET = (*SECRETS, AUTH_TOK, ACCESS_CODE, PATH_TOKEN, HOOK_TOKEN)


def every_leak(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return [s for s in EVERY_SECRET if s in text or quote(s, safe="") in text]


def test_one_policy_masks_every_secret_in_every_output(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.set_feed(
        "/cn", rss_feed([FeedItem("中俄新闻", "https://www.rfi.fr/cn/x1", "<p>x</p>", T0)])
    )
    feed_server.set_status(f"/feeds/{PATH_TOKEN}/e401", 401)
    feed_server.set_status("/private", 403)
    db = tmp_path / "monitor.db"
    private_url = (
        f"http://reader:{FEED_PW}@127.0.0.1:{feed_server.port}/private"
        f"?token=${{FEED_TOKEN}}&auth={AUTH_TOK}&access_code={ACCESS_CODE}"
    )
    with SmtpSink(credentials={"user": ENV_PW}) as sink, WebhookReceiver() as hook:
        hook.set_down(True)  # every send fails: its error is logged and stored
        hook_url = hook.apprise_url(f"/hooks/{HOOK_TOKEN}").replace(
            "json://", f"json://hookuser:{LITERAL_PW}@"
        )  # userinfo in a channel URL too
        config = write_config(
            tmp_path / "monitor.yaml",
            db=db,
            feeds=[
                {"id": "cn", "url": feed_server.url("/cn"), "backlog": "all"},
                {"id": "private", "url": private_url},
                {"id": "pathtok", "url": feed_server.url(f"/feeds/{PATH_TOKEN}/e401")},
            ],
            channels={
                "mail": {"urls": [mailto(sink.port, "${SMTP_PASSWORD}")]},
                "hook": {"urls": [hook_url]},
            },
            rules=[{"name": "r", "any": ["中俄"], "notify": ["mail", "hook"]}],
        )
        with Daemon(config, "--log-level", "debug", env=ENV) as daemon:
            sink.wait_for(1, timeout=15)
            daemon.wait_for_line("channel 'hook': alert")
            daemon.wait_for_line("feed 'private'")
            daemon.wait_for_line("feed 'pathtok'")
            assert daemon.stop() == 0
        once = run_cli(
            "once", "-c", str(config), "--log-format", "json", "--log-level", "debug", env=ENV
        )
        notify = run_cli("notify-test", "hook", "-c", str(config), env=ENV)
    outputs = {
        "run (text log)": daemon.output,
        "once (json log)": once.stdout + once.stderr,
        "notify-test": notify.stdout + notify.stderr,
    }
    assert once.returncode == 0, once.stderr
    assert notify.returncode == 1 and "FAIL" in notify.stdout and "****" in notify.stdout
    assert any(
        "feed 'pathtok'" in json.loads(line)["message"]
        for line in once.stderr.splitlines()
        if line.startswith("{")
    )
    for args in (["check"], ["status"], ["status", "--json"], ["feeds", "export"]):
        out = run_cli(*args, "-c", str(config), env=ENV)
        assert out.returncode == 0, (args, out.stderr)
        outputs[" ".join(args)] = out.stdout + out.stderr
    check = outputs["check"]
    assert "auth=****" in check and "access_code=****" in check and "token=****" in check
    assert "/feeds/****/e401" in check and "/hooks/****" in check
    report = json.loads(run_cli("status", "--json", "-c", str(config), env=ENV).stdout)
    errors = {f["id"]: f["error"] for f in report["feeds"]}
    assert errors["private"] and errors["pathtok"]
    revealed = run_cli("feeds", "export", "--reveal-secrets", "-c", str(config), env=ENV)
    assert FEED_TOKEN in revealed.stdout  # asked for: the real URL

    # A config error quoting a URL masks its tokens too.
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        config.read_text(encoding="utf-8").replace(
            feed_server.url(f"/feeds/{PATH_TOKEN}/e401"),
            f"ftp://127.0.0.1/feeds/{PATH_TOKEN}/rss?auth={AUTH_TOK}",
        ),
        encoding="utf-8",
    )
    error = run_cli("check", "-c", str(bad), env=ENV)
    assert error.returncode == 2 and f"{bad}:" in error.stderr
    assert "feed URL must be http" in error.stderr
    outputs["config error"] = error.stdout + error.stderr

    for name, text in outputs.items():
        assert every_leak(text) == [], (name, text)
    with sqlite3.connect(db) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM alerts WHERE channel = 'hook' AND last_error IS NOT NULL"
        ).fetchone()[0]
    assert stored >= 1
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if path.exists():
            assert every_leak(path.read_bytes()) == [], path


@pytest.mark.parametrize(
    "segment,token",
    [
        ("pT7x9Qm2Lk4Rz8Wv", True),
        ("tHJkL9aBcD3eFgH1.xml", True),
        ("550e8400-e29b-41d4-a716-446655440000", True),
        ("rss", False),
        ("cn", False),
        ("20230322-zhong-e-guan-xi-xin-shi-dai", False),
        ("2023-03-22-ukraine-war", False),
        ("user1005830785", False),
    ],
)
def test_path_segments_that_look_like_tokens(segment: str, token: bool) -> None:
    assert looks_like_token(segment) is token


def test_query_and_path_credentials_are_masked_wherever_they_appear() -> None:
    loaded = parse_config(
        "feeds:\n"
        "  - {id: a, url: 'https://h.example/feeds/pT7x9Qm2Lk4Rz8Wv/rss"
        "?auth=AuthTok1&access_code=Acc0de99&lang=zh'}\n"
        "channels: {c: 'json://hook.example/hooks/hK3j8Zp1Xw6Nc5Vb'}\n"
        "rules: [{name: r, any: [x], notify: [c]}]\n"
    )
    masker = masker_for(loaded)
    text = masker(
        "401 from https://h.example/feeds/pT7x9Qm2Lk4Rz8Wv/rss?auth=AuthTok1"
        "&access_code=Acc0de99&lang=zh; hook hK3j8Zp1Xw6Nc5Vb; "
        "redirected to https://h.example/x?session_key=NewValue7"
    )
    for secret in ("pT7x9Qm2Lk4Rz8Wv", "AuthTok1", "Acc0de99", "hK3j8Zp1Xw6Nc5Vb", "NewValue7"):
        assert secret not in text
    assert "lang=zh" in text and "/feeds/****/rss?auth=****&access_code=****" in text


def test_names_that_only_look_like_credentials_stay_readable(tmp_path: Path) -> None:
    folder = tmp_path / "test_nowhere0_abcdefgh1"  # a path piece that looks like a token
    folder.mkdir()
    loaded = parse_config(
        f"database: sqlite:///{folder}/monitor.db\n"
        "feeds: [{id: a, url: 'https://h.example/feed?author=jdoe&cat=news'}]\n"
        "channels: {c: 'console://'}\nrules: [{name: r, any: [x], notify: [c]}]\n"
    )
    masker = masker_for(loaded)
    text = f"{folder}/monitor.db: https://h.example/feed?author=jdoe&cat=news"
    assert masker(text) == text
