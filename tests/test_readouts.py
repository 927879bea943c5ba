"""The console's read-outs on both databases: the alert list newest first, grouped per
rule and item with every channel, filtered and paged without gaps or repeats; a feed's
items; a rule's matches."""

from __future__ import annotations

from collections.abc import Collection

from monitor.store import Store
from monitor.types import AlertFilter, AlertState, Item, MatchingFunctions, RuleMatch
from tests.support.factories import T0, item, route


def two_rules(it: Item, feeds: Collection[str]) -> list[RuleMatch]:
    out = [RuleMatch("all", ("中俄",), "……中俄……")]
    if it.url.endswith("0"):  # every tenth item
        out.append(RuleMatch("tenth", ("中俄",), "……中俄……"))
    return out


def seeded(store: Store, n: int = 23) -> None:
    rules = MatchingFunctions(two_rules, route({"all": ["mail", "chat"], "tenth": ["mail"]}))
    for i in range(n):
        feed = "tw" if i % 2 else "cn"
        store.items.ingest(
            feed,
            [item(f"https://www.rfi.fr/a/{i}", T0 + i * 1000, f"标题 {i}", feed)],
            T0 + i * 1000,
            rules,
        )


def all_pages(store: Store, where: AlertFilter, size: int) -> list[list[tuple[str, str]]]:
    pages, before = [], None
    while True:
        page, before = store.readouts.alert_page(where, before, size)
        pages.append([(a.rule, a.item.url) for a in page])
        if before is None:
            return pages


def test_alert_pages_are_newest_first_complete_and_disjoint(store: Store) -> None:
    seeded(store)
    pages = all_pages(store, AlertFilter(), 5)
    seen = [pair for page in pages for pair in page]
    assert len(seen) == len(set(seen)) == 23 + 3  # 23 for 'all', 3 for 'tenth'
    assert all(len(p) == 5 for p in pages[:-1])
    assert seen[0] == ("all", "https://www.rfi.fr/a/22")
    first, _ = store.readouts.alert_page(AlertFilter(), None, 1)
    assert [d.channel for d in first[0].deliveries] == ["chat", "mail"]
    assert first[0].deliveries[0].status == AlertState.PENDING
    assert first[0].feeds == ("cn",) and first[0].snippet == "……中俄……"


def test_alert_filters(store: Store) -> None:
    seeded(store)
    tenth = [p for page in all_pages(store, AlertFilter(rule="tenth"), 2) for p in page]
    assert tenth == [("tenth", f"https://www.rfi.fr/a/{i}") for i in (20, 10, 0)]
    chat, _ = store.readouts.alert_page(AlertFilter(channel="chat"), None, 100)
    assert len(chat) == 23 and all(len(a.deliveries) == 1 for a in chat)
    tw, _ = store.readouts.alert_page(AlertFilter(feed="tw"), None, 100)
    assert {a.feeds for a in tw} == {("tw",)} and len(tw) == 11  # odd items only
    assert store.readouts.alert_page(AlertFilter(state="dead"), None, 10) == ([], None)
    n = store.outbox.redeliver(T0)  # nothing dead: nothing to put back
    assert n == 0
    assert store.readouts.alert_page(AlertFilter(state="pending"), None, 100)[0]
    assert store.readouts.latest_alert_id() > 0


def test_feed_items_and_rule_matches(store: Store) -> None:
    seeded(store)
    shown = store.readouts.feed_items("cn", 3)
    assert [s.title for s in shown] == ["标题 22", "标题 20", "标题 18"]
    assert sorted(store.readouts.rule_match_times("tenth", T0)) == [T0, T0 + 10_000, T0 + 20_000]
    recent = store.readouts.recent_matches("tenth", 2)
    assert [m.item.url for m in recent] == ["https://www.rfi.fr/a/20", "https://www.rfi.fr/a/10"]
    assert recent[0].keywords == ("中俄",) and recent[0].alerted
    assert store.readouts.feed_row("nope") is None
