"""``feed-monitor test-rule``: a rule run over the stored items of a real SQLite file.

The store is filled through ``Store.ingest`` (the daemon's own write path) with
items published at known times in two feeds; the command is run through
``monitor.cli.main`` and its output read back. A webhook receiver stands behind
one channel so that "nothing is sent" is checked, not assumed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.store import Store
from monitor.types import Item, MatchingFunctions, RuleMatch
from tests.daemon import write_config
from tests.support import WebhookReceiver

NOW_MS = int(time.time() * 1000)
HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS

# (feed, key, title, body, published) — RFI-shaped: Simplified (cn) and Traditional (tw).
ITEMS = [
    (
        "rfi-cn",
        "https://www.rfi.fr/cn/1",
        "习近平结束访俄，北京与莫斯科建立&quot;特殊&quot;关系",
        "<p>中国国家主席习近平周三离开莫斯科。普京和习近平说，<b>中俄</b>之间的特殊关系正在进入新时代。</p>",
        NOW_MS - 2 * HOUR_MS,
    ),
    (
        "rfi-tw",
        "https://www.rfi.fr/tw/2",
        "烏克蘭總統澤連斯基：中俄關係不影響和談",
        "<p>澤連斯基表示，已邀請中國對話。</p>",
        NOW_MS - 3 * DAY_MS,
    ),
    (
        "rfi-cn",
        "https://www.rfi.fr/cn/3",
        "台湾总统大选：选民关注经济",
        "<p>两岸关系、能源政策和住房问题是选民最关心的议题。</p><p>AT&amp;T 与<i>台积电</i>。</p>",
        NOW_MS - 1 * DAY_MS,
    ),
    (
        "rfi-cn",
        "https://www.rfi.fr/cn/4",
        "十天前：中俄边境贸易增长",
        "<p>黑龙江口岸的中俄贸易额上升。</p>",
        NOW_MS - 10 * DAY_MS,
    ),
]


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    # main() points the root logger at the sys.stderr of the moment, here pytest's
    # capture, which is closed after the test: put back what was there.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def no_match(item: Item, feeds: Collection[str]) -> list[RuleMatch]:
    return []  # the store only records items here; the test is about reading them back


@pytest.fixture
def setup(tmp_path: Path, webhook_receiver: WebhookReceiver) -> tuple[Path, WebhookReceiver]:
    db = tmp_path / "monitor.db"
    config = write_config(
        tmp_path / "monitor.yaml",
        db=db,
        feeds=[
            {"id": "rfi-cn", "url": "https://www.rfi.fr/cn/rss", "title": "RFI 简体"},
            {"id": "rfi-tw", "url": "https://www.rfi.fr/tw/rss", "title": "RFI 繁體"},
        ],
        channels={
            "hook": {"urls": [webhook_receiver.apprise_url("/alerts")]},
            "mail": {
                "urls": ["mailto://alerts:secret@127.0.0.1:9?to=me@example.org"],
                "format": "html",
                "language": "zh",
                "timezone": "Asia/Shanghai",
            },
            "daily": {
                "urls": [webhook_receiver.apprise_url("/daily")],
                "digest": {"schedule": "0 8 * * *"},
            },
        },
        rules=[
            {"name": "china-russia", "any": ["中俄"], "notify": ["hook"]},
            {"name": "taiwan", "query": "台灣 -体育", "notify": ["hook"]},
        ],
    )
    store = Store(f"sqlite:///{db}")
    for feed, key, title, body, published in ITEMS:
        item = Item(
            key=key, url=key, title=title, published_ms=published, feed_id=feed, content=body
        )
        store.items.ingest(feed, [item], NOW_MS, MatchingFunctions(no_match, lambda rule: []))
    # The first article was also seen in the Traditional feed: one item, two feeds.
    first = ITEMS[0]
    tw = Item(
        key=first[1],
        url=first[1],
        title=first[2],
        published_ms=first[4],
        feed_id="rfi-tw",
        content=first[3],
    )
    store.items.ingest("rfi-tw", [tw], NOW_MS, MatchingFunctions(no_match, lambda rule: []))
    assert store.readouts.counts() == {"items": 4, "alerts": 0}
    store.close()
    return config, webhook_receiver


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["test-rule", "-c", str(config), *args])
    out, err = capsys.readouterr()
    return code, out, err


def blocks(out: str) -> list[str]:
    """The printed matches: blocks separated by blank lines, the total line excluded."""
    return [b for b in out.strip().split("\n\n") if not b.startswith("rule '")]


def test_named_rule_prints_each_match_with_snippet_and_total(
    setup: tuple[Path, WebhookReceiver], capsys: pytest.CaptureFixture[str]
) -> None:
    config, hook = setup
    code, out, err = run(capsys, config, "china-russia")
    assert code == 0, err
    found = blocks(out)
    # Oldest first; the Traditional item is found by the Simplified keyword.
    assert [b.split("\n")[1].strip() for b in found] == [
        "https://www.rfi.fr/cn/4",
        "https://www.rfi.fr/tw/2",
        "https://www.rfi.fr/cn/1",
    ]
    newest = found[2].split("\n")
    assert newest[0].endswith('[rfi-cn, rfi-tw]  习近平结束访俄，北京与莫斯科建立"特殊"关系')
    assert newest[2] == "  keywords: 中俄"
    assert newest[3] == (
        "  中国国家主席习近平周三离开莫斯科。普京和习近平说，【中俄】之间的特殊关系正在进入新时代。"
    )
    # The snippet quotes the item's own script.
    assert "【中俄】關係不影響和談" in found[1]
    assert (
        out.strip().splitlines()[-1]
        == "rule 'china-russia': 3 matches in 4 stored items; nothing was sent"
    )
    assert hook.received == []
    store = Store(f"sqlite:///{config.parent / 'monitor.db'}")
    assert store.readouts.counts() == {"items": 4, "alerts": 0}  # nothing written either
    assert store.readouts.rule_match_counts(0) == {}
    store.close()


def test_since_and_feed_filters(
    setup: tuple[Path, WebhookReceiver], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = setup
    _, out, _ = run(capsys, config, "china-russia", "--since", "7d")
    assert [b.split("\n")[1].strip() for b in blocks(out)] == [
        "https://www.rfi.fr/tw/2",
        "https://www.rfi.fr/cn/1",
    ]
    assert "2 matches in 3 stored items (published since " in out
    _, out, _ = run(capsys, config, "china-russia", "--since", "24h", "--feed", "rfi-tw")
    # Item 1 (2 hours old) was seen in rfi-tw too; item 2 (3 days) is out of the window.
    assert [b.split("\n")[1].strip() for b in blocks(out)] == ["https://www.rfi.fr/cn/1"]
    assert out.strip().endswith(
        "1 match in 1 stored item (published since "
        f"{out.split('published since ')[1].split(';')[0]}; in rfi-tw)"
        "; nothing was sent"
    )
    _, out, _ = run(
        capsys, config, "china-russia", "--feed", "rfi-tw", "--feed", "rfi-cn", "--since", "2d"
    )
    assert len(blocks(out)) == 1


def test_query_from_the_command_line(
    setup: tuple[Path, WebhookReceiver], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = setup
    code, out, _ = run(capsys, config, "--query", "title:(台湾 OR 烏克蘭) -体育")
    assert code == 0
    found = blocks(out)
    assert [b.split("\n")[1].strip() for b in found] == [
        "https://www.rfi.fr/tw/2",
        "https://www.rfi.fr/cn/3",
    ]
    assert "【台湾】总统大选：选民关注经济" in found[1]
    assert found[0].split("\n")[2] == "  keywords: 烏克蘭"
    assert out.strip().splitlines()[-1].startswith("rule 'query': 2 matches in 4 stored")
    code, out, _ = run(capsys, config, "--query", "体育")
    assert code == 0 and blocks(out) == []
    assert "0 matches in 4 stored items" in out


def test_unknown_rule_lists_the_rules(
    setup: tuple[Path, WebhookReceiver], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = setup
    code, out, err = run(capsys, config, "china-rusia")
    assert code == 2 and out == ""
    assert err == f"error: unknown rule 'china-rusia' in {config} (rules: china-russia, taiwan)\n"
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("query", "message", "caret"),
    [
        ("中俄 OR )", "unexpected ')' (column 7)", "  中俄 OR )\n          ^"),
        (
            'title:"特殊关系',
            "unterminated quoted phrase (column 7)",
            '  title:"特殊关系\n        ^',
        ),
        ("中俄 AND", "ends too early", "  中俄 AND\n          ^"),
    ],
)
def test_query_syntax_error_names_the_column(
    setup: tuple[Path, WebhookReceiver],
    capsys: pytest.CaptureFixture[str],
    query: str,
    message: str,
    caret: str,
) -> None:
    config, _ = setup
    code, out, err = run(capsys, config, "--query", query)
    assert code == 2 and out == ""
    assert err.startswith("error: --query: query syntax error: ")
    assert message in err
    assert caret in err  # CJK characters are two columns wide on a terminal
    assert "Traceback" not in err


def test_bad_since_and_unknown_render_channel(
    setup: tuple[Path, WebhookReceiver], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = setup
    code, _, err = run(capsys, config, "china-russia", "--since", "a week")
    assert code == 2 and err.startswith("error: --since: expected a duration")
    code, _, err = run(capsys, config, "china-russia", "--render", "emial")
    assert code == 2
    assert err == "error: --render: unknown channel 'emial' (channels: daily, hook, mail)\n"


def test_render_text_channel(
    setup: tuple[Path, WebhookReceiver], capsys: pytest.CaptureFixture[str]
) -> None:
    config, hook = setup
    code, out, err = run(capsys, config, "taiwan", "--render", "hook")
    assert code == 0, err
    [found] = blocks(out)
    lines = found.split("\n")
    assert lines[1] == "  https://www.rfi.fr/cn/3"
    assert lines[4] == "  ┌─ message to 'hook' (text)"
    assert lines[5] == "  │ title: [taiwan] 台湾总统大选：选民关注经济"
    body = [line[4:] for line in lines[7:-1]]
    assert body[:2] == ["台湾总统大选：选民关注经济", "https://www.rfi.fr/cn/3"]
    assert "Feed: RFI 简体" in body
    assert "Keywords: 台灣" in body
    assert body[-1] == "【台湾】总统大选：选民关注经济"
    assert hook.received == []


def test_render_html_channel_in_its_language_and_time_zone(
    setup: tuple[Path, WebhookReceiver], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = setup
    code, out, err = run(capsys, config, "--query", "普京", "--render", "mail")
    assert code == 0, err
    [found] = blocks(out)
    assert "┌─ message to 'mail' (html)" in found
    assert "│ title: [query] 习近平结束访俄，北京与莫斯科建立" in found
    html = found.split("│ ", 3)[-1]
    assert html.startswith('<p><a href="https://www.rfi.fr/cn/1"><strong>')
    assert "来源: RFI 简体, RFI 繁體<br>规则: query<br>关键词: 普京<br>" in html
    assert "<blockquote>中国国家主席习近平周三离开莫斯科。【普京】和习近平说" in html
    assert " CST</p>" in html  # Asia/Shanghai


def test_render_escapes_item_text_for_html_only(
    setup: tuple[Path, WebhookReceiver], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = setup
    _, out, _ = run(capsys, config, "--query", "content:AT&T", "--render", "mail")
    [found] = blocks(out)
    lead = "两岸关系、能源政策和住房问题是选民最关心的议题。"
    assert f"  {lead} 【AT&T】 与台积电。" in found.split("\n")  # the snippet
    assert f"<blockquote>{lead} 【AT&amp;T】 与台积电。</blockquote>" in found
    _, out, _ = run(capsys, config, "--query", "content:AT&T", "--render", "hook")
    assert f"  │ {lead} 【AT&T】 与台积电。" in out


def test_render_digest_channel_shows_one_digest(
    setup: tuple[Path, WebhookReceiver], capsys: pytest.CaptureFixture[str]
) -> None:
    config, hook = setup
    code, out, err = run(capsys, config, "china-russia", "--render", "daily")
    assert code == 0, err
    assert "message to 'daily'" not in out  # a digest channel never gets them one by one
    assert out.count("┌─ digest to 'daily' (text)") == 1
    assert "│ title: 3 new alerts (daily)" in out
    assert hook.received == []


def test_missing_database_is_reported_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "never.db"
    config = write_config(
        tmp_path / "m.yaml",
        db=db,
        feeds=[{"id": "cn", "url": "https://www.rfi.fr/cn/rss"}],
        channels={"c": {"urls": ["json://127.0.0.1:9/x"]}},
        rules=[{"name": "r", "any": ["中俄"], "notify": ["c"]}],
    )
    code, out, err = run(capsys, config, "r")
    assert code == 1 and out == ""
    assert f"no database at {db}: nothing has been stored yet" in err
    assert not db.exists()


def test_unknown_feed_is_noted(
    setup: tuple[Path, WebhookReceiver], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = setup
    code, out, err = run(capsys, config, "china-russia", "--feed", "rfi-en")
    assert code == 0 and f"note: feed 'rfi-en' is not in {config}" in err
    assert "0 matches in 0 stored items (in rfi-en)" in out


def test_a_bad_rule_in_the_config_names_file_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path / "m.yaml",
        db=tmp_path / "m.db",
        feeds=[{"id": "cn", "url": "https://www.rfi.fr/cn/rss"}],
        channels={"c": {"urls": ["json://127.0.0.1:9/x"]}},
        rules=[{"name": "bad", "query": "中俄 AND", "notify": ["c"]}],
    )
    code, out, err = run(capsys, config, "bad")
    assert code == 2 and out == ""
    line = config.read_text(encoding="utf-8").splitlines().index("- name: bad") + 1
    assert err.startswith(f"error: {config}:{line} rule 'bad': query syntax error: query ends")
    assert "(column 7)" in err and "Traceback" not in err


def test_explain_shows_each_occurrence_and_why(
    setup: tuple[Path, WebhookReceiver], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = setup
    code, out, _ = run(capsys, config, "--query", "中俄 -体育", "--explain")
    assert code == 0
    assert "rule matches; occurrences:\n    title @" in out
    assert "content @0: 黑龙江" not in out  # only the rule's keywords are listed
    assert "    title @4: 中俄 (中俄): counted (" in out
    assert "    content @6: 中俄 (中俄): counted (" in out
    # Items where no keyword of the rule occurs are not explained.
    assert "台湾总统大选" not in out


def test_config_aliases_and_per_rule_switches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "monitor.db"
    config = write_config(
        tmp_path / "monitor.yaml",
        db=db,
        feeds=[{"id": "tw", "url": "https://x.example/rss"}],
        channels={"out": {"urls": ["json://127.0.0.1:9/"]}},
        rules=[
            {"name": "lai", "any": ["赖清德"], "notify": ["out"]},
            {"name": "putin", "any": ["普京"], "notify": ["out"]},
            {"name": "putin-only", "any": ["普京"], "aliases": False, "notify": ["out"]},
            {"name": "cn-fr", "any": ["中法"], "notify": ["out"]},
            {"name": "cn-fr-exact", "any": ["中法"], "exact": True, "notify": ["out"]},
        ],
        aliases=[["赖清德", "William Lai"]],
    )
    store = Store(f"sqlite:///{db}")
    for n, title in enumerate(["William Lai in Paraguay", "普丁與習近平會談", "集中法律援助"]):
        item = Item(
            key=f"k{n}",
            url=f"https://x.example/{n}",
            title=title,
            published_ms=NOW_MS - n,
            feed_id="tw",
        )
        store.items.ingest("tw", [item], NOW_MS, MatchingFunctions(no_match, lambda rule: []))
    store.close()
    expected = {"lai": 1, "putin": 1, "putin-only": 0, "cn-fr": 0, "cn-fr-exact": 1}
    for rule, count in expected.items():
        code, out, err = run(capsys, config, rule)
        assert code == 0, err
        assert f"rule '{rule}': {count} match" in out, out
    _, out, _ = run(capsys, config, "putin")
    assert "  keywords: 普京 ← 普丁" in out
