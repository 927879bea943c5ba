"""Canonical URLs: the identity that dedupe rests on."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.items import _canonical, _fast_canonical, canonical_url, item_key

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


# The fast path for already-canonical URLs must give exactly what w3lib gives.
_HOSTS = [
    "www.rfi.fr",
    "WWW.rfi.fr",
    "a",
    "a-b.c",
    "-a.b",
    "a..b",
    "xn--fiq228c.com",
    "1.2.3.4",
    "a.b:80",
    "a.b:443",
    "u@a.b",
    "[::1]",
    "a.b.",
    "x" * 63 + ".com",
    "x" * 64 + ".com",
    "中国.com",
]
_PATH_PARTS = list("aZ09-._~!$&'()*+,=:@/;?#[]| \"<>\\") + [
    "%E5",
    "%e5",
    "%9B",
    "%80",
    "%FF",
    "%41",
    "%2F",
    "%2f",
    "%3B",
    "%3F",
    "%25",
    "%25E5",
    "%20",
    "%",
    "中",
    "é",
    "/.",
    "/..",
    "./",
    "//",
    "#x",
]
_QUERY_PARTS = [
    "a=1",
    "b=2",
    "a=",
    "c=x-y",
    "utm_source=r",
    "xtor=1",
    "z=9",
    "a=2",
    "A=1",
    "k",
    "a=%E5",
    "b=c+d",
    "a=中",
    "",
]


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "ftp", "", "https"]))
    path = "".join(draw(st.lists(st.sampled_from(_PATH_PARTS), max_size=10)))
    if draw(st.booleans()):
        path = "/" + path
    query = ""
    if draw(st.booleans()):
        query = "?" + "&".join(
            draw(st.lists(st.sampled_from(_QUERY_PARTS), min_size=1, max_size=3))
        )
    fragment = draw(st.sampled_from(["", "", "#x", "#a?b=1", "#"]))
    space = draw(st.sampled_from(["", "", " ", "\t"]))
    return f"{space}{scheme}://{draw(st.sampled_from(_HOSTS))}{path}{query}{fragment}{space}"


@settings(max_examples=3000, deadline=None)
@given(urls())
def test_fast_path_equals_w3lib(url: str) -> None:
    try:
        slow: str | None = _canonical(url.strip())
    except ValueError:  # w3lib rejects some (a bad port): the fast path must not take them
        slow = None
    fast = _fast_canonical(url.strip())
    assert fast is None or fast == slow
    if slow is not None:
        assert canonical_url(url) == slow


@pytest.mark.parametrize(
    "url",
    [
        "https://www.rfi.fr/cn/%E4%B8%AD%E5%9B%BD/20230322-x",
        "http://www.rfi.fr/cn/%E4%B8%AD%E5%9B%BD/20230322-x#top",
        "https://medium.com/@a/%E8%88%87-4a09c36895ae?source=rss-47dceea4b71------2",
        "https://matters.news/@a/%25E8%2587%25BA-bafyreihsbmzyq",
    ],
)
def test_common_article_links_take_the_fast_path(url: str) -> None:
    assert _fast_canonical(url) == _canonical(url)


@pytest.mark.parametrize("bad", ["http://example.c[o.test/", "https://[::1/x", "http://[oops"])
def test_a_malformed_link_gives_way_to_the_entry_id(bad: str) -> None:
    assert item_key(bad, "guid-1") == "id:guid-1"
    assert item_key(bad, None) is None
    assert item_key(None, bad) == f"id:{bad}"  # an id that only looks like a URL
    assert item_key(bad, bad) == f"id:{bad}"
