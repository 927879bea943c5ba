"""Canonical URLs: the identity that dedupe rests on."""

import pytest

from monitor.items import canonical_url, item_key

SAME_ARTICLE = [
    "https://www.rfi.fr/cn/%E4%B8%AD%E5%9B%BD/20230322-x",
    "http://www.rfi.fr/cn/%E4%B8%AD%E5%9B%BD/20230322-x",
    "https://www.rfi.fr//cn/%E4%B8%AD%E5%9B%BD/20230322-x",
    "http://WWW.RFI.FR//cn//中国/20230322-x",
    "https://www.rfi.fr/cn/%e4%b8%ad%e5%9b%bd/20230322-x",
    "https://www.rfi.fr/cn/中国/20230322-x#comments",
    "https://www.rfi.fr/cn/中国/20230322-x?utm_source=rss&xtor=RSS-1&at_medium=feed",
    "https://www.rfi.fr:443/cn/中国/20230322-x",
]


@pytest.mark.parametrize("url", SAME_ARTICLE)
def test_variants_of_one_url_share_one_key(url: str) -> None:
    assert canonical_url(url) == canonical_url(SAME_ARTICLE[0])


@pytest.mark.parametrize(
    "a, b",
    [
        ("https://www.rfi.fr/cn/a", "https://www.rfi.fr/cn/b"),
        ("https://www.rfi.fr/cn/a?id=1", "https://www.rfi.fr/cn/a?id=2"),
        ("https://www.rfi.fr/cn/a", "https://rfi.fr/cn/a"),
    ],
)
def test_different_articles_keep_different_keys(a: str, b: str) -> None:
    assert canonical_url(a) != canonical_url(b)


def test_meaningful_query_parameters_are_kept_in_one_order() -> None:
    assert canonical_url("https://x.org/p?b=2&a=1") == canonical_url("https://x.org/p?a=1&b=2")
    assert "a=1" in canonical_url("https://x.org/p?a=1&utm_medium=x")


def test_item_key_falls_back_to_entry_id() -> None:
    assert item_key(None, "tag:rfi.fr,2023:123") == "id:tag:rfi.fr,2023:123"
    assert item_key("", "http://x.org//a") == "https://x.org/a"
    assert item_key("https://x.org/a", "ignored") == "https://x.org/a"
    assert item_key(None, None) is None
