"""``feed-monitor export`` and per-rule archive folders: stored items back to archive files."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path

import pytest

from monitor.archive.files import export_archive, import_archive, read_archive_file
from monitor.archive.format import archive_filename, entry_to_item
from monitor.cli import main, parse_when
from monitor.daemon import Daemon
from monitor.errors import MonitorError
from monitor.store import Store
from monitor.types import Item, MatchingFunctions, RuleMatch
from tests.daemon import write_config
from tests.support import FeedItem, FeedServer, WebhookReceiver, rss_feed
from tests.support.factories import T0, article

DAY = 86_400_000


def match_ukraine(it: Item, feeds: Collection[str]) -> list[RuleMatch]:
    return [RuleMatch("ukraine", ("乌克兰",))] if "乌克兰" in it.title else []


def no_channels(rule: str) -> list[str]:
    return []


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_export_writes_one_file_per_item_that_reads_back_as_the_item(
    store: Store, tmp_path: Path
) -> None:
    stored = [article(i, ts=T0 + (i % 3) * 1000) for i in range(9)]
    store.items.ingest("cn", stored, T0, MatchingFunctions(match_ukraine, no_channels))
    report = export_archive(store, tmp_path / "out")
    assert (report.written, report.unchanged) == (9, 0)
    # Names sort by publish time; items sharing one timestamp each get their own file.
    names = files(tmp_path / "out")
    assert names == sorted(archive_filename(it) for it in stored)
    assert [n[:13] for n in names] == sorted(f"{it.published_ms:013d}" for it in stored)
    back = {entry_to_item(read_archive_file(tmp_path / "out" / n), "cn") for n in names}
    assert back == set(stored)
    again = export_archive(store, tmp_path / "out")
    assert (again.written, again.unchanged) == (0, 9)


def test_export_round_trips_through_import(store: Store, tmp_path: Path, db_url: str) -> None:
    from monitor.match import compile_rules
    from monitor.types import RuleSpec

    stored = [article(i, ts=T0) for i in range(20)]  # one timestamp for all
    store.items.ingest("cn", stored, T0, MatchingFunctions(match_ukraine, no_channels))
    export_archive(store, tmp_path / "out")
    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    report = import_archive(
        other,
        [tmp_path / "out"],
        rules=compile_rules([RuleSpec("r", any=("x",))]),
        feed_ids=[],
        feed_id="cn",
        now_ms=T0,
    )
    assert (report.new, report.invalid) == (20, 0)
    assert {s.item for s in other.items.iter_stored()} == {
        s.item for s in store.items.iter_stored()
    }
    other.close()


def test_export_filters_by_rule_feed_and_time(store: Store, tmp_path: Path) -> None:
    cn = [
        article(1, T0, "乌克兰 1"),
        article(2, T0 + DAY, "乌克兰 2"),
        article(3, T0 + 2 * DAY, "法国"),
    ]
    tw = [
        article(4, T0 + DAY, "烏克蘭", feed="tw"),
        article(5, T0 + 3 * DAY, "乌克兰 5", feed="tw"),
    ]
    store.items.ingest("cn", cn, T0, MatchingFunctions(match_ukraine, no_channels))
    store.items.ingest("tw", tw, T0, MatchingFunctions(match_ukraine, no_channels))

    def urls(**kw: object) -> list[str]:
        out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}"
        export_archive(store, out, **kw)  # type: ignore[arg-type]
        return [entry_to_item(read_archive_file(p), "x").url for p in sorted(out.iterdir())]

    u = [it.url for it in cn + tw]
    assert urls(rule="ukraine") == [u[0], u[1], u[4]]  # the matches table: 烏克蘭 is not
    assert urls(feed_ids=["tw"]) == [u[3], u[4]]
    assert urls(since_ms=T0 + DAY, until_ms=T0 + 3 * DAY) == [u[1], u[3], u[2]]
    assert urls(rule="ukraine", feed_ids=["cn"], since_ms=T0 + 1) == [u[1]]


def test_export_skips_items_whose_body_retention_emptied(store: Store, tmp_path: Path) -> None:
    store.items.ingest(
        "cn",
        [article(1, T0), article(2, T0 + 100 * DAY)],
        T0,
        MatchingFunctions(match_ukraine, no_channels),
    )
    stats = store.history.prune(T0 + 101 * DAY, bodies_before_ms=T0 + DAY, keys_before_ms=None)
    assert stats.emptied == 1
    report = export_archive(store, tmp_path / "out")
    assert (report.written, report.pruned) == (1, 1)
    assert files(tmp_path / "out") == [archive_filename(article(2, T0 + 100 * DAY))]


def test_items_dated_before_1970_export_and_their_names_sort_by_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path / "m.yaml",
        db=tmp_path / "m.db",
        feeds=[],
        channels={"c": "console://"},
        rules=[{"name": "ukraine", "any": ["乌克兰"], "notify": ["c"]}],
    )
    stamps = [-(2**63), -3_000_000 * DAY, -3650 * DAY, -3650 * DAY + 1, -1, 0, 1, T0]
    stored = [article(i, ts) for i, ts in enumerate(stamps)]
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    store.items.ingest("cn", stored, T0, MatchingFunctions(match_ukraine, no_channels))
    store.close()
    out = tmp_path / "out"
    assert main(["export", "-c", str(config), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"{out}: {len(stamps)} written, 0 unchanged\n"
    names = files(out)
    assert not any(n.startswith("-") for n in names)
    # Sorted by name is sorted by time, and each file reads back as its item.
    assert [entry_to_item(read_archive_file(out / n), "cn").published_ms for n in names] == stamps
    assert {entry_to_item(read_archive_file(out / n), "cn") for n in names} == set(stored)


def test_export_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path / "m.yaml",
        db=tmp_path / "m.db",
        feeds=[],
        channels={"c": "console://"},
        rules=[{"name": "ukraine", "any": ["乌克兰"], "notify": ["c"]}],
    )
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    store.items.ingest(
        "cn",
        [article(1, T0, "乌克兰"), article(2, T0 + DAY)],
        T0,
        MatchingFunctions(match_ukraine, no_channels),
    )
    store.close()
    out = tmp_path / "out"
    assert (
        main(
            [
                "export",
                "-c",
                str(config),
                "--out",
                str(out),
                "--rule",
                "ukraine",
                "--since",
                "2023-11-14",
                "--until",
                "2023-11-15T00:00+00:00",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == f"{out}: 1 written, 0 unchanged\n"
    assert files(out) == [archive_filename(article(1, T0, "乌克兰"))]
    assert main(["export", "-c", str(config), "--out", str(out), "--rule", "ukrane"]) == 2
    assert capsys.readouterr().err == (
        f"error: --rule: unknown rule 'ukrane' in {config} with no stored matches "
        "(rules: ukraine)\n"
    )
    assert main(["export", "-c", str(config), "--out", str(out), "--feed", "nope"]) == 2
    assert "--feed: no feed 'nope'" in capsys.readouterr().err
    assert main(["export", "-c", str(config), "--out", str(out), "--since", "last week"]) == 2
    assert capsys.readouterr().err.startswith("error: --since: expected a duration (7d)")


def test_parse_when_forms() -> None:
    now = T0
    assert parse_when("7d", now, "--since") == now - 7 * DAY
    assert parse_when("2023-11-14", now, "--since") == 1_699_920_000_000
    assert parse_when("2023-11-14T08:00", now, "--since") == 1_699_920_000_000 + 8 * 3_600_000
    assert parse_when("2023-11-14T08:00+08:00", now, "--since") == 1_699_920_000_000
    with pytest.raises(MonitorError, match="--until: expected"):
        parse_when("tomorrow", now, "--until")


# -- rules[].archive -----------------------------------------------------------------------


def test_rule_archive_folder_receives_each_alerted_item(
    tmp_path: Path,
    feed_server: FeedServer,
    webhook_receiver: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = tmp_path / "archive" / "ukraine"
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the folder should be", encoding="utf-8")
    config = write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "monitor.db",
        feeds=[{"id": "cn", "url": feed_server.url("/cn"), "backlog": "all"}],
        channels={"hook": {"urls": [webhook_receiver.apprise_url("/alerts")]}},
        rules=[
            {"name": "ukraine", "any": ["乌克兰"], "notify": ["hook"], "archive": str(folder)},
            {
                "name": "broken",
                "any": ["乌克兰"],
                "notify": ["hook"],
                "archive": str(blocked / "sub"),
            },
        ],
    )
    story = FeedItem("乌克兰战事", "https://www.rfi.fr/cn/u1", "<p>基辅</p>", T0)
    other = FeedItem("法国新闻", "https://www.rfi.fr/cn/f1", "<p>巴黎</p>", T0)
    feed_server.set_feed("/cn", rss_feed([story, other]))
    with caplog.at_level(logging.ERROR, logger="monitor.archive"):
        report = Daemon.open(str(config)).once()
    # The unwritable folder is logged with its rule and path; both alerts still went out.
    assert report.delivery.sent == 2 and len(webhook_receiver.received) == 2
    [error] = [r.getMessage() for r in caplog.records]
    assert error.startswith(
        f"rule 'broken': cannot write {story.link} to its archive folder {blocked / 'sub'}: "
    )
    [written] = folder.iterdir()
    got = entry_to_item(read_archive_file(written), "cn")
    assert (got.title, got.url, got.published_ms) == (story.title, story.link, T0)
    assert "基辅" in got.content
    # An update that does not alert again writes nothing more.
    feed_server.set_feed("/cn", rss_feed([replace(story, pub_ms=T0 + 60_000), other]))
    Daemon.open(str(config)).once()
    assert len(list(folder.iterdir())) == 1
