"""The command line as a whole: where ``-c`` may go, exit codes, usage errors, a closed
pipe. Commands run through ``monitor.cli.main`` (or ``python -m monitor`` where the
process itself matters) on real config files and SQLite databases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.store import Store
from monitor.types import Item, MatchingFunctions, RuleMatch
from tests.daemon import no_feed_config, write_config
from tests.support import FeedItem, FeedServer, rss_feed
from tests.support.cli import REPO, cli
from tests.support.factories import T0


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "m.yaml",
        db=tmp_path / "m.db",
        feeds=[{"id": "cn", "url": "https://www.rfi.fr/cn/rss"}],
        channels={"console": "console://", "alt": "console://"},
        rules=[
            {"name": "china", "any": ["中国"], "notify": ["console"]},
            {"name": "russia", "any": ["俄"], "notify": ["alt"]},
        ],
    )


# -- -c before or after the command ----------------------------------------------------------

COMMANDS = [
    ["check"],
    ["status"],
    ["status", "--json"],
    ["schema"],
    ["silence", "list"],
    ["db", "current"],
    ["db", "upgrade"],
    ["feeds", "export"],
    ["redeliver"],
    ["prune", "--items", "30d"],
    ["test-rule", "--query", "中国"],
    ["test-rule", "china"],
    ["export", "--out", "OUT"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_config_flag_before_or_after_the_command(
    command: list[str],
    config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The default config path does not exist here: only a -c that was read finds the file.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEED_MONITOR_CONFIG", raising=False)
    assert cli(capsys, "db", "upgrade", "-c", str(config))[0] == 0
    command = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    before = cli(capsys, "-c", str(config), *command)
    after = cli(capsys, *command, "-c", str(config))
    assert before[0] == after[0] == 0, (before, after)
    assert before == after
    if command[0] != "schema":
        assert cli(capsys, *command)[0] != 0  # without -c: the default file is absent


def test_config_flag_after_the_command_wins_and_nested_commands_take_it_anywhere(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing.yaml")
    assert cli(capsys, "-c", missing, "check", "-c", str(config))[0] == 0
    code, _, err = cli(capsys, "-c", str(config), "check", "-c", missing)
    assert code == 2 and err == f"error: {missing} file not found\n"
    assert cli(capsys, "silence", "-c", str(config), "list")[0] == 0
    assert cli(capsys, "--log-level", "error", "check", "-c", str(config))[0] == 0


def test_config_flag_before_the_command_in_a_real_process(config: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "-c", str(config), "status"],
        cwd=REPO,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "cn" in proc.stdout and "invalid choice" not in proc.stderr


# -- usage errors exit 2 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "--out", "OUT", "--since", "yesterday"], "error: --since: expected a duration"),
        (["export", "--out", "OUT", "--until", "soon"], "error: --until: expected a duration"),
        (
            ["export", "--out", "OUT", "--rule", "nosuch"],
            "error: --rule: unknown rule 'nosuch' in CONFIG with no stored matches "
            "(rules: china, russia)",
        ),
        (
            ["export", "--out", "OUT", "--feed", "nosuch"],
            "error: --feed: no feed 'nosuch' in CONFIG or the database",
        ),
        (["prune", "--items", "a while"], "error: --items: "),
        (["prune", "--keys=-3d"], "error: --"),
        (
            ["silence", "add", "--rule", "nosuch", "--for", "1h"],
            "error: --rule: unknown rule 'nosuch' in CONFIG (rules: china, russia)",
        ),
        (
            ["silence", "add", "--rule", "china", "--for", "1h", "--channel", "nosuch"],
            "error: --channel: unknown channel 'nosuch' in CONFIG (channels: alt, console)",
        ),
        (["silence", "add", "--rule", "china", "--for", "soon"], "error: --for: "),
        (["silence", "add", "--rule", "china", "--for", "0s"], "error: --for must be longer"),
        (["silence", "expire", "7"], "error: no active silence 7 (active silences: none)"),
        (
            ["redeliver", "--channel", "nosuch"],
            "error: --channel: unknown channel 'nosuch' in CONFIG (channels: alt, console)",
        ),
        (
            ["redeliver", "--rule", "nosuch"],
            "error: --rule: unknown rule 'nosuch' in CONFIG with no stored matches "
            "(rules: china, russia)",
        ),
        (
            ["notify-test", "nosuch"],
            "error: unknown channel 'nosuch' in CONFIG (channels: alt, console)",
        ),
        (["test-rule", "china", "--since", "last week"], "error: --since: "),
        (["import", "--feed", "a b", "IN"], "error: --feed: 'a b' is not a feed id"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    args: list[str], message: str, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in").mkdir()
    args = [
        str(tmp_path / "out") if a == "OUT" else str(tmp_path / "in") if a == "IN" else a
        for a in args
    ]
    assert cli(capsys, "db", "upgrade", "-c", str(config))[0] == 0
    code, out, err = cli(capsys, *args, "-c", str(config))
    assert code == 2, (out, err)
    assert err.startswith(message.replace("CONFIG", str(config))), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "queued" not in out


def test_argparse_errors_exit_2_too(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["status", "--nosuch", "-c", str(config)])
    assert info.value.code == 2
    assert "unrecognized arguments: --nosuch" in capsys.readouterr().err


def test_redeliver_a_configured_channel_or_a_rule_with_matches(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "db", "upgrade", "-c", str(config))[0] == 0
    code, out, _ = cli(capsys, "redeliver", "--channel", "alt", "-c", str(config))
    assert (code, out) == (0, "0 dead alerts for channel 'alt' queued for delivery again\n")
    # A rule gone from the config whose dead letters are still stored can be re-driven.
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    item = Item(
        key="https://x.org/1",
        url="https://x.org/1",
        title="t",
        published_ms=T0,
        feed_id="cn",
        content="",
    )
    store.items.ingest(
        "cn",
        [item],
        T0,
        MatchingFunctions(
            lambda it, feeds: [RuleMatch("old-rule", ("t",), "t")], lambda rule: ["alt"]
        ),
    )
    store.close()
    code, out, err = cli(capsys, "redeliver", "--rule", "old-rule", "-c", str(config))
    assert code == 0, err
    assert out == "0 dead alerts for rule 'old-rule' queued for delivery again\n"


# -- a reader that goes away -----------------------------------------------------------------


def test_output_into_a_closed_pipe_ends_quietly(config: Path, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    items = [
        Item(
            key=f"https://x.org/{i}",
            url=f"https://x.org/{i}",
            title=f"乌克兰新闻 {i}",
            published_ms=T0 + i,
            feed_id="cn",
            content="<p>乌克兰 " + "新闻" * 40 + "</p>",
        )
        for i in range(1500)
    ]
    store.items.ingest("cn", items, T0, MatchingFunctions(lambda it, feeds: [], lambda rule: []))
    store.close()
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "test-rule", "--query", "乌克兰", "-c", str(config)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # `| head -1`
        proc.stdout.close()
        code = proc.wait(timeout=120)
    assert "乌克兰新闻" in first.decode("utf-8")
    assert errors.read_text() == ""
    assert code == 141  # 128 + SIGPIPE, as for any command the reader left


# -- once ------------------------------------------------------------------------------------


def test_once_exits_3_when_no_feed_could_be_polled(
    tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    feeds = [
        {"id": "gone", "url": feed_server.url("/gone")},
        {"id": "broken", "url": feed_server.url("/broken")},
    ]
    feed_server.set_feed("/broken", "<html>not a feed</html>")
    config = write_config(
        tmp_path / "m.yaml",
        db=tmp_path / "m.db",
        feeds=feeds,
        channels={"c": "console://"},
        rules=[{"name": "r", "any": ["x"], "notify": ["c"]}],
    )
    code, out, err = cli(capsys, "once", "-c", str(config))
    assert code == 3, (out, err)
    assert "gone: http-error" in out and "broken: not-a-feed" in out
    assert err.splitlines()[-1] == "error: no feed could be polled (2 tried)"
    # One feed that answers is enough for 0: the others show in the output and in status.
    feed_server.set_feed("/gone", rss_feed([FeedItem("t", "https://x.org/1", "b", T0)]))
    code, out, _ = cli(capsys, "once", "-c", str(config))
    assert code == 0 and "gone: ok" in out and "broken: not-a-feed" in out


def test_once_with_no_feeds_is_not_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = no_feed_config(tmp_path)
    code, out, _ = cli(capsys, "once", "-c", str(config))
    assert code == 0 and out.startswith("items: 0 new")


# -- check: channels that can never deliver, a config that watches nothing ------------------


def test_check_refuses_channels_apprise_can_never_deliver_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "m.yaml"
    config.write_text(
        f"""\
database: sqlite:///{tmp_path / "m.db"}
feeds: [{{id: cn, url: "https://www.rfi.fr/cn/rss"}}]
channels:
  fine: console://
  several:
    urls:
      - console://
      - bogus-scheme://x
  mail:
    url: mailtos://alerts:s3cretpw@smtp.example.com?to=notanemail
  nobody: "mailtos://alerts:s3cretpw@smtp.example.com?to=,"
rules: [{{name: r, any: [x], notify: [fine, several, mail, nobody]}}]
""",
        encoding="utf-8",
    )
    code, out, err = cli(capsys, "check", "-c", str(config))
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 3 and "Traceback" not in err
    assert lines[0] == (
        f"error: {config}:8 channels.several.urls[1]: Apprise can never deliver through "
        "bogus-scheme://x: unknown Apprise scheme 'bogus-scheme' (Unparseable URL scheme://x)"
    )
    assert lines[1].startswith(
        f"{config}:10 channels.mail.urls[0]: Apprise can never "
        "deliver through mailtos://alerts:****@smtp.example.com"
    )
    assert lines[1].endswith(
        ": Dropped invalid To email (notanemail) specified.; There are "
        "no Email recipients to notify"
    )
    assert lines[2].startswith(f"{config}:11 channels.nobody.urls[0]: ")
    assert lines[2].endswith(": There are no Email recipients to notify")
    assert "s3cretpw" not in err


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        ("", "no feeds are configured: nothing is watched"),
        ("# nothing yet\n", "no feeds are configured: nothing is watched"),
        (
            "feeds: [{id: cn, url: 'https://www.rfi.fr/cn/rss', enabled: false}]\n",
            "every feed is disabled: nothing is watched",
        ),
        (
            "feeds: [{id: cn, url: 'https://www.rfi.fr/cn/rss'}]\n",
            "no rules are configured: nothing alerts",
        ),
    ],
)
def test_check_warns_when_nothing_is_watched(
    text: str, warning: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "m.yaml"
    config.write_text(text, encoding="utf-8")
    code, out, err = cli(capsys, "check", "-c", str(config))
    assert code == 0 and out.startswith(f"{config}: OK\n")
    assert err == f"warning: {config}: {warning}\n"
