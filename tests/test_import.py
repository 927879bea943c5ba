"""``feed-monitor import``: archive files stored as already seen, so they never alert.

Imports run through ``monitor.cli.main`` into real SQLite files (and the store
contract on PostgreSQL too); the "never alerts" checks then poll a local feed
server through ``Daemon.once`` with a webhook receiver behind the rules, with
``backlog: all`` so that anything not recorded as seen would alert.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path

import pytest

from monitor.archive.files import import_archive, read_archive_file, write_item
from monitor.archive.format import archive_filename, entry_to_item
from monitor.config import MAX_ALIASED_VALUES, parse_config
from monitor.daemon import Daemon
from monitor.errors import ConfigError
from monitor.store import Store
from monitor.types import Item, MatchingFunctions, RuleMatch
from tests.conftest import shared_dir
from tests.daemon import no_feed_config, write_config
from tests.support import FeedItem, FeedServer, WebhookReceiver, rss_feed
from tests.support.cli import REPO, cli
from tests.support.factories import T0, article, route

DAY = 86_400_000


def write_items(folder: Path, items: list[Item]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for it in items:
        write_item(folder, it)
        paths.append(folder / archive_filename(it))
    return paths


def config_for(
    tmp_path: Path, feed_server: FeedServer, hook: WebhookReceiver, **extra: object
) -> Path:
    """Feeds cn and tw (both alert their whole backlog), a rule on every feed and a rule
    limited to tw, both hitting almost any Chinese text."""
    return write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "monitor.db",
        feeds=[
            {"id": "cn", "url": feed_server.url("/cn"), "backlog": "all"},
            {"id": "tw", "url": feed_server.url("/tw"), "backlog": "all"},
        ],
        channels={"hook": {"urls": [hook.apprise_url("/alerts")]}},
        rules=[
            {"name": "everything", "any": ["的", "新闻"], "notify": ["hook"]},
            {"name": "tw-only", "any": ["的", "新闻"], "feeds": ["tw"], "notify": ["hook"]},
        ],
        **extra,
    )


def alerted(hook: WebhookReceiver) -> list[str]:
    return sorted(r.json["title"] for r in hook.received)


# -- the corpus, then a poll -------------------------------------------------------------------


@pytest.mark.corpus
def test_corpus_import_then_poll_alerts_only_for_new_urls(
    tmp_path: Path,
    feed_server: FeedServer,
    webhook_receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rfi, oped2 = shared_dir("corpus", "rfi"), shared_dir("corpus", "oped2")
    config = config_for(tmp_path, feed_server, webhook_receiver)
    code, out, err = cli(capsys, "import", "-c", str(config), str(rfi), str(oped2))
    # The corpus folders hold a SOURCE.md note beside the items: skipped and counted.
    notes = [line for line in err.splitlines() if line]
    assert notes == [
        f"{folder / 'SOURCE.md'}: skipped: not an archive file (no <!--epoch ms-->"
        " timestamp comment)"
        for folder in (oped2, rfi)
    ]
    assert code == 0 and " 0 invalid; 2 skipped: not an archive file; " in out
    entries = [read_archive_file(p) for p in sorted(rfi.glob("[0-9]*.md"))]
    known = [entry_to_item(e, "cn") for e in entries if "的" in e.body][:5]
    assert len(known) == 5
    http = known[0].url.replace("https://", "http://", 1)
    assert http != known[0].url
    feed_server.set_feed(
        "/cn",
        rss_feed(
            [
                FeedItem(known[0].title, http, known[0].content, known[0].published_ms),
                # Another timestamp and another text: the live feed's version of a known article.
                FeedItem(
                    known[1].title + "（更新）",
                    known[1].url,
                    "<p>新闻的新版本</p>",
                    known[1].published_ms + 3_600_000,
                ),
                FeedItem(known[2].title, known[2].url, known[2].content, known[2].published_ms),
                FeedItem("新的文章 A", "https://www.rfi.fr/cn/new-a", "<p>新闻的内容</p>", T0),
            ]
        ),
    )
    feed_server.set_feed(
        "/tw",
        rss_feed(
            [
                # Seen in the feed the tw-only rule is limited to, in both URL forms.
                FeedItem(
                    known[3].title,
                    known[3].url.replace("https://", "http://", 1),
                    known[3].content,
                    known[3].published_ms,
                ),
                FeedItem(
                    known[4].title, known[4].url, known[4].content, known[4].published_ms + 60_000
                ),
                FeedItem("新的文章 B", "http://www.rfi.fr/tw/new-b", "<p>新闻的内容</p>", T0),
            ]
        ),
    )
    report = Daemon.open(str(config)).once()
    assert report.ingest.new == 2 and report.ingest.updated == 2
    assert alerted(webhook_receiver) == [
        "[everything] 新的文章 A",
        "[everything] 新的文章 B",
        "[tw-only] 新的文章 B",
    ]
    # Quiet once: a later update of a known article is an ordinary update again.
    feed_server.set_feed(
        "/cn",
        rss_feed(
            [
                FeedItem(
                    known[2].title, known[2].url, known[2].content, known[2].published_ms + 60_000
                )
            ]
        ),
    )
    assert Daemon.open(str(config)).once().ingest.updated == 1
    assert len(webhook_receiver.received) == 3  # rematch: no rule newly matches


def test_second_import_adds_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path / "m.yaml",
        db=tmp_path / "m.db",
        feeds=[],
        channels={"c": "console://"},
        rules=[{"name": "r", "any": ["新闻"], "notify": ["c"]}],
    )
    write_items(tmp_path / "a", [article(i) for i in range(30)])
    code, out, _ = cli(capsys, "import", "-c", str(config), str(tmp_path / "a"))
    assert code == 0 and out.startswith("30 files: 30 new, 0 duplicate, 0 invalid; 30 rule")
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    before = store.readouts.counts()
    code, out, _ = cli(capsys, "import", "-c", str(config), str(tmp_path / "a"))
    assert code == 0 and out.startswith("30 files: 0 new, 30 duplicate, 0 invalid; 0 rule")
    assert store.readouts.counts() == before == {"items": 30, "alerts": 0}
    store.close()


def test_items_sharing_one_timestamp_are_all_imported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = no_feed_config(tmp_path)
    paths = write_items(tmp_path / "a", [article(i, ts=T0) for i in range(12)])
    assert len(set(paths)) == 12
    code, out, _ = cli(capsys, "import", "-c", str(config), str(tmp_path / "a" / "*.md"))
    assert code == 0 and "12 new" in out
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    stored = list(store.items.iter_stored())
    store.close()
    assert sorted(s.item.url for s in stored) == sorted(
        f"https://www.rfi.fr/cn/{i}" for i in range(12)
    )
    assert {s.item.published_ms for s in stored} == {T0} and {s.feeds for s in stored} == {
        ("archive",)
    }


def test_invalid_files_get_one_line_each_and_the_rest_is_imported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = no_feed_config(tmp_path)
    folder = tmp_path / "a"
    write_items(folder, [article(1), article(2)])
    (folder / "bad-stamp.md").write_text(
        "<!--soon-->\n[t](https://x.org/1)\n------\n\nb\n", encoding="utf-8"
    )
    (folder / "bad-link.md").write_text(
        "<!--1-->\n[t] https://x.org/1\n------\n\nb\n", encoding="utf-8"
    )
    (folder / "latin1.md").write_bytes("<!--1-->\n[é](https://x.org/é)\n".encode("latin-1"))
    code, out, err = cli(capsys, "import", "-c", str(config), str(folder))
    lines = err.splitlines()
    assert sorted(lines) == sorted(
        [
            f"{folder / 'bad-link.md'}:2: expected the link line [title](url), found "
            "'[t] https://x.org/1'",
            f"{folder / 'bad-stamp.md'}:1: expected the timestamp comment <!--epoch ms-->, found "
            "'<!--soon-->'",
            f"{folder / 'latin1.md'}:2: not UTF-8 (byte 10: invalid continuation byte)",
        ]
    )
    assert code == 1 and out.startswith("5 files: 2 new, 0 duplicate, 3 invalid;")


def test_a_missing_path_is_an_error_before_anything_is_imported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = no_feed_config(tmp_path)
    write_items(tmp_path / "a", [article(1)])
    code, out, err = cli(
        capsys, "import", "-c", str(config), str(tmp_path / "a"), str(tmp_path / "missing")
    )
    assert (code, out) == (1, "")
    assert err == f"error: {tmp_path / 'missing'}: no such file or folder\n"
    code, _, err = cli(capsys, "import", "-c", str(config), str(tmp_path / "a"), "--feed", "a b")
    assert code == 2 and err == "error: --feed: 'a b' is not a feed id (letters, digits, '_.-')\n"
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    assert store.readouts.counts()["items"] == 0
    store.close()


def test_progress_bar_only_on_request_or_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = no_feed_config(tmp_path)
    write_items(tmp_path / "a", [article(i) for i in range(3)])
    _, _, err = cli(capsys, "import", "-c", str(config), str(tmp_path / "a"))
    assert err == ""  # stderr is not a terminal here
    _, out, err = cli(capsys, "import", "-c", str(config), str(tmp_path / "a"), "--progress")
    assert "importing" in err and "3/3" in err and "importing" not in out


def test_feed_option_records_the_items_as_seen_in_that_feed(
    tmp_path: Path,
    feed_server: FeedServer,
    webhook_receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = config_for(tmp_path, feed_server, webhook_receiver)
    known = [article(1, content="<p>旧的新闻</p>"), article(2, content="<p>旧的新闻</p>")]
    write_items(tmp_path / "a", known)
    code, out, _ = cli(capsys, "import", "-c", str(config), str(tmp_path / "a"), "--feed", "tw")
    assert code == 0 and "feed 'tw'" in out
    store = Store(f"sqlite:///{tmp_path / 'monitor.db'}")
    assert {s.feeds for s in store.items.iter_stored()} == {("tw",)}
    store.close()
    feed_server.set_feed("/cn", rss_feed([]))
    feed_server.set_feed(
        "/tw", rss_feed([FeedItem(it.title, it.url, it.content, T0 + 60_000) for it in known])
    )
    report = Daemon.open(str(config)).once()
    assert report.ingest.updated == 2 and webhook_receiver.received == []


# -- the store contract, on SQLite and PostgreSQL -----------------------------------------


def match_word(item: Item, feeds: Collection[str]) -> list[RuleMatch]:
    """Rule 'word' matches 乌克兰 anywhere; rule 'tw-word' only in feed tw."""
    text = item.title + item.content
    if "乌克兰" not in text:
        return []
    return [RuleMatch("word", ("乌克兰",))] + (
        [RuleMatch("tw-word", ("乌克兰",))] if "tw" in feeds else []
    )


channels = route(default=["mail"])


def test_imported_items_never_alert_when_a_feed_carries_them(store: Store) -> None:
    plain = article(1, title="法国新闻")
    ukraine = article(2, title="乌克兰新闻")
    assert store.history.import_items(
        "archive", [(plain, []), (ukraine, match_word(ukraine, {"tw"}))], T0 + DAY
    ) == {plain.key, ukraine.key}
    assert store.history.import_items("archive", [(plain, [])], T0) == set()  # idempotent
    # Matches carry the article's time: `status` (matches in the last 24 h) is not
    # flooded by an archive of old articles.
    assert store.readouts.rule_match_counts(T0 - 1) == {"word": 1, "tw-word": 1}
    assert store.readouts.rule_match_counts(T0 + 1) == {}
    # The feed's version: another timestamp, and text a rule matches now (in tw only).
    live = [
        replace(
            plain,
            url=plain.url.replace("https", "http"),
            title="乌克兰战事",
            published_ms=T0 + 60_000,
            feed_id="tw",
        ),
        replace(ukraine, published_ms=T0, feed_id="tw"),
    ]
    stats = store.items.ingest("tw", live, T0 + 1, MatchingFunctions(match_word, channels))
    assert (stats.new, stats.updated, stats.repeats, stats.alerts) == (0, 1, 1, 0)
    assert stats.matched == 2  # 'word' and 'tw-word' for the first, recorded not alerted
    # From now on they are ordinary items: a real update alerts where a rule newly matches.
    again = store.items.ingest(
        "cn",
        [
            replace(
                plain,
                title="法国新闻",
                published_ms=T0 + 120_000,
                feed_id="cn",
                content="<p>无关</p>",
            )
        ],
        T0 + 2,
        MatchingFunctions(match_word, channels),
    )
    assert (again.updated, again.alerts) == (1, 0)
    assert store.readouts.counts()["alerts"] == 0
    fresh = store.items.ingest(
        "cn",
        [replace(article(3, title="乌克兰"), feed_id="cn")],
        T0 + 3,
        MatchingFunctions(match_word, channels),
    )
    assert (fresh.new, fresh.alerts) == (1, 1)


def test_duplicates_across_batches_count_once(tmp_path: Path, sqlite_url: str) -> None:
    """Batches of two: the copy of the first file, last in path order, is a duplicate."""
    from monitor.match import compile_rules
    from monitor.types import RuleSpec

    folder = tmp_path / "a"
    write_items(folder, [article(i) for i in range(5)])
    shutil.copy(next(folder.iterdir()), folder / "zz-copy.md")  # a duplicate, last
    store = Store(sqlite_url)
    errors: list[str] = []
    report = import_archive(
        store,
        [folder],
        rules=compile_rules([RuleSpec("r", any=("新闻",))]),
        feed_ids=["cn"],
        now_ms=T0,
        batch_size=2,
        on_error=errors.append,
    )
    assert (report.files, report.new, report.duplicate, report.invalid, report.matched) == (
        6,
        5,
        1,
        0,
        5,
    )
    assert store.readouts.counts() == {"items": 5, "alerts": 0}
    store.close()


# -- what a folder may hold besides archive files ----------------------------------------------


def plain_config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "m.yaml",
        db=tmp_path / "m.db",
        feeds=[],
        channels={"c": "console://"},
        rules=[{"name": "r", "any": ["新闻"], "notify": ["c"]}],
    )


def stored_urls(tmp_path: Path) -> list[str]:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    urls = sorted(s.item.url for s in store.items.iter_stored())
    store.close()
    return urls


def test_files_that_are_not_archive_files_are_skipped_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = plain_config(tmp_path)
    folder = tmp_path / "a"
    write_items(folder, [article(1), article(2)])
    (folder / "README.md").write_text("# Notes\n\nWhat this folder holds.\n", encoding="utf-8")
    (folder / "lint.md").write_text("<!-- markdownlint-disable -->\n# Index\n", encoding="utf-8")
    (folder / "post.md").write_text("---\ntitle: a Jekyll post\n---\nText.\n", encoding="utf-8")
    (folder / "empty.md").write_bytes(b"")
    code, out, err = cli(capsys, "import", "-c", str(config), str(folder))
    assert code == 0, err
    assert out.startswith(
        "6 files: 2 new, 0 duplicate, 0 invalid; 4 skipped: not an archive file; 2 rule matches"
    )
    assert sorted(err.splitlines()) == [
        f"{folder / name}: skipped: not an archive file (no <!--epoch ms--> timestamp comment)"
        for name in ("README.md", "empty.md", "lint.md", "post.md")
    ]
    # A file meant as an archive item but malformed is still an error, and exit 1.
    (folder / "typo.md").write_text(
        "<!--17000000O0000-->\n[t](https://x.org/1)\n------\n\nb\n", encoding="utf-8"
    )
    code, out, err = cli(capsys, "import", "-c", str(config), str(folder))
    assert code == 1
    assert f"{folder / 'typo.md'}:1: expected the timestamp comment" in err
    assert out.startswith("7 files: 0 new, 2 duplicate, 1 invalid; 4 skipped: not an archive")


def test_file_names_are_printed_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = plain_config(tmp_path)
    folder = tmp_path / "a"
    write_items(folder, [article(1)])
    forged = "x.md:1: ok\n3 files: 3 new, 0 duplicate, 0 invalid; fine\n\x1b[2K.md"
    (folder / forged).write_text("<!--1-->\nno link\n", encoding="utf-8")
    (folder / "notes\u202edm.txt.md").write_text("# Notes\n", encoding="utf-8")
    (folder / "\x1b[31mred.md").write_text("# Notes\n", encoding="utf-8")
    code, out, err = cli(capsys, "import", "-c", str(config), str(folder))
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 3 and all(line.startswith(f"{folder}/") for line in lines)
    assert (
        f"{folder}/x.md:1: ok\\n3 files: 3 new, 0 duplicate, 0 invalid; fine\\n\\x1b[2K.md:2:"
        " expected the link line" in err
    )
    assert f"{folder}/notes\\u202edm.txt.md: skipped" in err
    assert f"{folder}/\\x1b[31mred.md: skipped" in err
    assert "\x1b" not in err + out and "\u202e" not in err + out
    assert out.startswith("4 files: 1 new, 0 duplicate, 1 invalid; 2 skipped")


def test_a_symlink_leading_outside_the_folder_is_not_followed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = plain_config(tmp_path)
    folder, elsewhere = tmp_path / "a", tmp_path / "elsewhere"
    [inside] = write_items(folder, [article(1)])
    [secret] = write_items(elsewhere, [article(99)])
    (folder / "link.md").symlink_to(secret)
    (folder / "sub").mkdir()
    (folder / "sub" / "again.md").symlink_to(inside)  # inside the folder: read
    (folder / "tree").symlink_to(elsewhere, target_is_directory=True)  # never entered
    code, out, err = cli(capsys, "import", "-c", str(config), str(folder))
    assert code == 0, err
    assert err == (
        f"{folder / 'link.md'}: skipped: a symlink leading outside its folder, not followed\n"
    )
    assert out.startswith(
        "2 files: 1 new, 1 duplicate, 0 invalid; 1 symlink leading outside "
        "the folder not followed; "
    )
    assert stored_urls(tmp_path) == ["https://www.rfi.fr/cn/1"]
    # Named on the command line, the same file is the user's choice: read.
    code, out, _ = cli(capsys, "import", "-c", str(config), str(folder / "link.md"))
    assert code == 0 and out.startswith("1 file: 1 new")


def alias_bomb(levels: int = 9) -> list[str]:
    """Front matter YAML whose last key stands for 9**levels values, in a dozen lines."""
    rows = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    names = "abcdefghijklmnop"
    for prev, name in zip(names[: levels - 1], names[1:levels], strict=True):
        rows.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    return rows + [f"categories: *{names[levels - 1]}"]


def test_alias_bomb_in_front_matter_is_refused_with_its_line_and_the_rest_imported(
    tmp_path: Path,
) -> None:
    config = plain_config(tmp_path)
    folder = tmp_path / "a"
    write_items(folder, [article(1), article(2)])
    bomb = alias_bomb()
    (folder / "bomb.md").write_text(
        "\n".join(
            [
                "---",
                *bomb,
                "---",
                "<!--1700000000000-->",
                "[b](https://x.org/b)",
                "------",
                "",
                "<p>新闻</p>",
                "",
            ]
        ),
        encoding="utf-8",
    )
    # Expanded, the bomb is 387 million values: a memory cap well above what an import
    # needs (about 100 MB) ends the process instead of the machine if the bound fails.
    cap = "import resource; resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31)); "
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            cap + "from monitor.cli import main; raise SystemExit(main())",
            "import",
            "-c",
            str(config),
            str(folder),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    # The first alias that takes the total past the bound: *e, on the line of "f:".
    line = 1 + next(n for n, row in enumerate(bomb, 1) if row.startswith("f:"))
    assert proc.stderr == (
        f"{folder / 'bomb.md'}:{line}: front matter is not valid YAML: "
        f"aliases stand for more than {MAX_ALIASED_VALUES:,} values (at "
        "alias 'e'); write the values out instead\n"
    )
    assert proc.returncode == 1
    assert proc.stdout.startswith("3 files: 2 new, 0 duplicate, 1 invalid;")
    assert stored_urls(tmp_path) == ["https://www.rfi.fr/cn/1", "https://www.rfi.fr/cn/2"]


def test_the_same_alias_bound_holds_for_the_config(tmp_path: Path) -> None:
    text = "\n".join(["x-anchors:", *("  " + row for row in alias_bomb()), "feeds: []", ""])
    with pytest.raises(ConfigError) as info:
        parse_config(text, "m.yaml")
    assert str(info.value) == (
        f"m.yaml:7 invalid YAML: aliases stand for more than "
        f"{MAX_ALIASED_VALUES:,} values (at alias 'e'); write the "
        "values out instead"
    )
    # Aliases within the bound are values like any other.
    small = "\n".join(["x-anchors:", *("  " + row for row in alias_bomb(3)), "feeds: []", ""])
    with pytest.raises(ConfigError, match="unknown key 'x-anchors'"):
        parse_config(small, "m.yaml")
