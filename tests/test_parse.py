"""parse_feed over the fixtures in tests/fixtures/feeds: formats, encodings, hostile XML."""

from __future__ import annotations

import calendar
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from feedparser.datetimes import _parse_date as _feedparser_date
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.items import plain_title
from monitor.parse import parse_fast, parse_feed, parse_with_feedparser
from monitor.parse.build import date_ms
from monitor.parse.xml import Decline, read_xml
from monitor.types import ParsedFeed

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
NOW = 1_700_000_000_000
RSS = {"Content-Type": "application/rss+xml; charset=utf-8"}
RFI_LINK = "https://www.rfi.fr/cn/%E5%9B%BD%E9%99%85/20230322-%E4%B9%A0%E8%BF%91%E5%B9%B3"


def parse(name: str, headers: dict[str, str] | None = None, base_url: str = "") -> ParsedFeed:
    return parse_feed((FEEDS / name).read_bytes(), headers or {}, "f", NOW, base_url)


# (fixture, headers, base_url, outcome, number of items, {item index: {field: value}},
#  substrings that some warning must contain)
CASES = [
    (
        "rss2_rfi.xml",
        RSS,
        "",
        "ok",
        3,
        {
            0: {
                "title": '习近平结束访俄，北京与莫斯科建立针对西方的"特殊"关系',
                "url": RFI_LINK,
                "published_ms": 1679494503000,
                "author": "RFI",
                "categories": ("国际", "中俄"),
                "entry_id": RFI_LINK,
            },
            1: {
                "title": '乌克兰"反攻"：泽连斯基 访问前线',
                "published_ms": 1679554800000,
                "content": "<div><p>全文：乌克兰总统泽连斯基周四访问前线。</p></div>",
            },
            2: {
                "title": "台湾 & 香港：两岸关系",
                "key": "https://www.rfi.fr/cn/%E4%B8%AD%E5%9B%BD/20230324-%E5%8F%B0%E6%B9%BE",
                "summary": "<p>台湾与香港。</p>",
                "entry_id": "rfi-20230324-tw",
            },
        },
        [],
    ),
    (
        "atom.xml",
        {"Content-Type": "application/atom+xml"},
        "",
        "ok",
        2,
        {
            0: {
                "url": "https://example.org/blog/posts/1.html",
                "title": "Relative link & html summary",
                "published_ms": 1679494200000,
                "author": "Ann Lee (ann@example.org)",
                "categories": ("china", "russia"),
                "summary": "<p>A <b>summary</b>.</p>",
                "entry_id": "urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a",
            },
            1: {
                "url": "https://example.org/blog/posts/2.html",
                "title": "Only updated date",
                "published_ms": 1679652000000,
                "content": "Plain text content",
                "summary": "",
            },
        },
        [],
    ),
    (
        "rss1.rdf",
        {},
        "",
        "ok",
        2,
        {
            0: {
                "title": 'First "one"',
                "entry_id": "https://example.net/a/1",
                "author": "Chen",
                "published_ms": 1679469000000,
                "categories": ("politics",),
            },
            1: {"key": "https://example.net/a/2", "url": "https://example.net/a/2?utm_source=rss"},
        },
        [],
    ),
    (
        "jsonfeed.json",
        {"Content-Type": "application/feed+json"},
        "https://example.com/feed.json",
        "ok-with-warnings",
        3,
        {
            0: {
                "title": '中俄 "关系"',
                "author": "Ann",
                "categories": ("china", "russia"),
                "content": "<p>Hello <b>world</b></p>",
                "summary": "Hello",
                "published_ms": 1679494200000,
            },
            1: {
                "key": "id:urn:example:2",
                "url": "",
                "content": "a &lt; b &amp; c",
                "author": "Bo",
            },
            2: {"url": "https://example.com/posts/3", "entry_id": "3", "published_ms": NOW},
        },
        ["1 entry without date"],
    ),
    ("jsonfeed.json", {}, "", "ok-with-warnings", 3, {}, ["without date"]),  # sniffed
    ("html_page.html", {"Content-Type": "text/html; charset=utf-8"}, "", "not-a-feed", 0, {}, []),
    ("html_page.html", RSS, "", "not-a-feed", 0, {}, []),
    ("random.txt", {"Content-Type": "text/plain"}, "", "not-a-feed", 0, {}, []),
    ("empty.xml", RSS, "", "empty", 0, {}, []),
    ("whitespace.xml", RSS, "", "empty", 0, {}, []),
    # feedparser's loose reader keeps the cut-off entry too: its link is complete.
    (
        "truncated.xml",
        RSS,
        "",
        "ok-with-warnings",
        3,
        {
            0: {"title": "Complete one"},
            1: {"title": "Complete two"},
            2: {"title": "Cut off", "url": "https://example.com/3", "published_ms": NOW},
        },
        ["not well-formed", "1 entry without date"],
    ),
    (
        "dup_guids.xml",
        RSS,
        "",
        "ok-with-warnings",
        3,
        {
            0: {"key": "id:dup-1", "title": "Same guid, no link (first)"},
            1: {"key": "https://example.com/a"},
            2: {"key": "https://example.com/b"},
        },
        ["duplicate entry ids: dup-1, dup-2", "1 entry with a repeated key dropped"],
    ),
    (
        "no_link_no_date.xml",
        RSS,
        "",
        "ok-with-warnings",
        3,
        {
            0: {"url": "https://example.com/nodate", "published_ms": NOW},
            1: {"key": "id:tag:example.com,2023:42", "url": ""},
            2: {"url": "https://example.com/from-guid", "key": "https://example.com/from-guid"},
        },
        ["1 entry without link or id skipped", "1 entry without date"],
    ),
    (
        "relative_links.xml",
        RSS,
        "https://www.rfi.fr/cn/rss",
        "ok",
        3,
        {
            0: {"url": "https://www.rfi.fr/cn/中国/20230322-a"},
            1: {"url": "https://www.rfi.fr/cn/b.html"},
            2: {"url": "https://other.example/c"},
        },
        [],
    ),
    # Without a base URL a relative link identifies nothing.
    ("relative_links.xml", RSS, "", "ok-with-warnings", 1, {}, ["2 entries without link or id"]),
]


@pytest.mark.parametrize(
    ("name", "headers", "base_url", "outcome", "count", "fields", "warns"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_fixture_parses_as_expected(
    name: str,
    headers: dict[str, str],
    base_url: str,
    outcome: str,
    count: int,
    fields: dict[int, dict[str, object]],
    warns: list[str],
) -> None:
    result = parse(name, headers, base_url)
    assert result.outcome == outcome, result.warnings
    assert len(result.items) == count
    for index, expected in fields.items():
        item = result.items[index]
        assert {f: getattr(item, f) for f in expected} == expected
    for text in warns:
        assert any(text in w for w in result.warnings), result.warnings
    assert all(i.feed_id == "f" for i in result.items)
    if outcome == "ok":
        assert result.warnings == ()


def test_rss_ttl_and_feed_title() -> None:
    result = parse("rss2_rfi.xml", RSS)
    assert result.ttl_seconds == 15 * 60
    assert result.title == "RFI - 中国"
    assert parse("atom.xml").title == "Example Atom feed"


WELL_FORMED = [
    "rss2_rfi.xml",
    "atom.xml",
    "rss1.rdf",
    "dup_guids.xml",
    "no_link_no_date.xml",
    "relative_links.xml",
    "enc_gb2312_decl.xml",
    "enc_gb18030_decl.xml",
    "enc_big5_decl.xml",
    "enc_utf8_nodecl.xml",
]


@pytest.mark.parametrize("name", WELL_FORMED)
def test_fast_reader_and_feedparser_agree(name: str) -> None:
    body = (FEEDS / name).read_bytes()
    base = "https://www.rfi.fr/cn/rss"
    fast = parse_fast(body, {}, "f", NOW, base)
    assert fast is not None, "the fast reader should read every well-formed fixture"
    slow = parse_with_feedparser(body, {}, "f", NOW, base)
    assert fast.items == slow.items
    assert (fast.outcome, fast.warnings, fast.title, fast.ttl_seconds) == (
        slow.outcome,
        slow.warnings,
        slow.title,
        slow.ttl_seconds,
    )


@pytest.mark.parametrize(
    "name", ["billion_laughs.xml", "xxe.xml", "external_dtd.xml", "truncated.xml", "html_page.html"]
)
def test_fast_reader_declines_what_needs_feedparser(name: str) -> None:
    assert parse_fast((FEEDS / name).read_bytes(), {}, "f", NOW) is None


SIMPLIFIED_TITLE = "习近平结束访俄，北京与莫斯科建立“特殊”关系"
TRADITIONAL_TITLE = "習近平結束訪俄，北京與莫斯科建立「特殊」關係"


# (fixture, Content-Type, expected first title, expected warning or "")
ENCODINGS = [
    ("enc_gb2312_decl.xml", "application/rss+xml", SIMPLIFIED_TITLE, ""),
    ("enc_gb2312_decl.xml", "application/rss+xml; charset=gb2312", SIMPLIFIED_TITLE, ""),
    ("enc_gb2312_decl.xml", "text/xml; charset=utf-8", SIMPLIFIED_TITLE, "does not fit"),
    ("enc_gb2312_nodecl.xml", "application/rss+xml; charset=GB2312", SIMPLIFIED_TITLE, ""),
    ("enc_gb2312_nodecl.xml", "application/rss+xml", SIMPLIFIED_TITLE, "detected gb18030"),
    ("enc_gb2312_nodecl.xml", "text/xml; charset=big5", SIMPLIFIED_TITLE, "detected gb18030"),
    ("enc_gbk_decl.xml", "", SIMPLIFIED_TITLE, ""),
    ("enc_gb18030_decl.xml", "text/xml; charset=gb2312", SIMPLIFIED_TITLE, ""),
    ("enc_big5_decl.xml", "", TRADITIONAL_TITLE, ""),
    ("enc_big5_decl.xml", "text/xml; charset=gb2312", TRADITIONAL_TITLE, "read as big5hkscs"),
    ("enc_big5_nodecl.xml", "text/xml; charset='big5'", TRADITIONAL_TITLE, ""),
    ("enc_big5_nodecl.xml", "", TRADITIONAL_TITLE, "detected big5"),
    ("enc_big5_nodecl.xml", "text/xml; charset=gb2312", TRADITIONAL_TITLE, "detected big5"),
    (
        "enc_utf8_nodecl.xml",
        "application/rss+xml; charset=gb2312",
        SIMPLIFIED_TITLE,
        "'gb2312' does not fit; read as utf-8",
    ),
    ("enc_utf8_nodecl.xml", "text/xml; charset=big5", SIMPLIFIED_TITLE, "read as utf-8"),
    ("enc_utf8_nodecl.xml", "text/xml", SIMPLIFIED_TITLE, ""),
]


@pytest.mark.parametrize(("name", "content_type", "title", "warning"), ENCODINGS)
def test_chinese_encodings_decode_right(
    name: str, content_type: str, title: str, warning: str
) -> None:
    result = parse(name, {"Content-Type": content_type} if content_type else {})
    assert len(result.items) >= 3
    assert result.items[0].title == title
    assert "镕" in result.items[1].title or "台灣" in result.items[1].title
    if warning:
        assert any(warning in w for w in result.warnings), result.warnings
    else:
        assert result.outcome == "ok", result.warnings


def test_gb18030_four_byte_characters_survive() -> None:
    result = parse("enc_gb18030_decl.xml")
    assert result.items[3].title == "吉野家的𠮷字"


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        _Recorder.requests.append(self.path)
        body = b'<!ENTITY leak SYSTEM "file:///etc/hostname">'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[int]:
    """A local HTTP server that records every request; yields its port."""
    _Recorder.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _all_text(result: ParsedFeed) -> str:
    return " ".join(
        [*result.warnings, result.title or ""]
        + [f"{i.title} {i.summary} {i.content}" for i in result.items]
    )


def test_external_entities_are_not_read(tmp_path: Path, recorder: int) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    body = (FEEDS / "xxe.xml").read_bytes().replace(b"file:///etc/passwd", secret.as_uri().encode())
    body = body.replace(b"PORT", str(recorder).encode())
    for reader in (parse_feed, parse_with_feedparser):
        result = reader(body, RSS, "f", NOW)
        assert "TOP-SECRET-MARKER" not in _all_text(result)
        assert [i.url for i in result.items] == ["https://example.com/xxe"]
    assert _Recorder.requests == []


def test_external_dtd_is_not_fetched(recorder: int) -> None:
    body = (FEEDS / "external_dtd.xml").read_bytes().replace(b"PORT", str(recorder).encode())
    result = parse_feed(body, RSS, "f", NOW)
    assert [i.title for i in result.items] == ["With DTD"]
    assert _Recorder.requests == []


def test_billion_laughs_does_not_expand() -> None:
    result = parse("billion_laughs.xml", RSS)
    assert result.outcome in ("ok", "ok-with-warnings")
    assert [i.url for i in result.items] == ["https://example.com/lol"]
    assert len(_all_text(result)) < 10_000  # 10**9 "lol"s would be 3 GB


def test_a_body_that_names_a_file_is_not_opened(tmp_path: Path) -> None:
    # feedparser.parse(bytes) opens the bytes as a path when such a file exists.
    feed_file = tmp_path / "feed.xml"
    feed_file.write_bytes((FEEDS / "rss2_rfi.xml").read_bytes())
    result = parse_feed(str(feed_file).encode(), {}, "f", NOW)
    assert result.outcome == "not-a-feed"
    assert result.items == ()


def test_json_that_is_not_a_json_feed() -> None:
    result = parse_feed(
        b'{"items": "nope", "version": 2}', {"Content-Type": "application/json"}, "f", NOW
    )
    assert result.outcome == "not-a-feed"
    result = parse_feed(
        b'{"version": "https://jsonfeed.org/version/1", "items": [{',
        {"Content-Type": "application/feed+json"},
        "f",
        NOW,
    )
    assert result.outcome == "not-a-feed"


@pytest.mark.parametrize(
    ("markup", "plain"),
    [
        ("A &quot;quoted&quot; title", 'A "quoted" title'),
        ("A &amp;quot;double&amp;quot; one", 'A "double" one'),
        ("<b>Bold</b> and <a href='x'>link</a>", "Bold and link"),
        ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
        ("AT&T  spaced\n out", "AT&T spaced out"),
        ("&lt;i&gt;escaped tag&lt;/i&gt;", "escaped tag"),
        ("", ""),
    ],
)
def test_plain_title(markup: str, plain: str) -> None:
    assert plain_title(markup) == plain


_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "mon", "Xyz"]
_MONTH_NAMES = [
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
    "jan",
    "Foo",
]


@st.composite
def rfc822_dates(draw: st.DrawFn) -> str:
    year = draw(st.one_of(st.integers(1000, 9999), st.sampled_from([999, 1970, 2023, 9998])))
    parts = [
        draw(st.sampled_from(_DAYS)) + ",",
        f"{draw(st.integers(0, 32)):02d}",
        draw(st.sampled_from(_MONTH_NAMES)),
        str(year),
        f"{draw(st.integers(0, 25)):02d}:{draw(st.integers(0, 61)):02d}:"
        f"{draw(st.integers(0, 61)):02d}",
        draw(
            st.sampled_from(
                ["GMT", "+0000", "-0500", "+0530", "+9959", "-9999", "UT", "+05:30", "EST", "Z"]
            )
        ),
    ]
    return draw(st.sampled_from(["", " "])) + " ".join(parts)


@settings(max_examples=2000, deadline=None)
@given(rfc822_dates())
def test_dates_read_as_feedparser_reads_them(text: str) -> None:
    parsed = _feedparser_date(text.strip())
    assert date_ms(text) == (None if parsed is None else calendar.timegm(parsed) * 1000)


_NOT_UTF8 = [
    b"\x80",
    b"\xc0\xaf",
    b"\xc1\xbf",
    b"\xe0\x80\xaf",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xf0\x80\x80\xaf",
    b"\xf4\x90\x80\x80",
    b"\xf5\x80\x80\x80",
    b"\xff",
    b"\xfe",
    b"\xc3",
    b"\xe4\xb8",
    b"\xf8\x88\x80\x80\x80",
    b"\xb0\xa1",
]
_PLACES = [
    b"<rss><channel><title>X</title><item><description><![CDATA[a%sb]]></description>"
    b"<link>https://x.org/a</link></item></channel></rss>",
    b"<rss><channel><title>X%s</title></channel></rss>",
    b'<rss a="%s"><channel/></rss>',
    b"<rss><channel/><!-- %s --></rss>",
    b"<rss><channel/><?pi %s?></rss>",
    b'<?xml version="1.0" encoding="UTF-8"?><rss><channel/></rss><!-- %s -->',
]


@pytest.mark.parametrize("place", _PLACES)
def test_lxml_takes_no_body_that_is_not_utf8(place: bytes) -> None:
    # parse_feed hands UTF-8-looking bodies to lxml before decoding them: lxml must refuse
    # every byte sequence Python's UTF-8 decoder refuses, or a GB18030 or Latin-1 body
    # would be read as UTF-8.
    for bad in _NOT_UTF8:
        body = place.replace(b"%s", bad)
        with pytest.raises(UnicodeDecodeError):
            body.decode("utf-8")
        with pytest.raises(Decline):
            read_xml(body)


def test_a_gb18030_body_without_declaration_is_still_decoded() -> None:
    body = (
        "<rss><channel><title>中文新闻标题和更多的中文内容</title><item><title>标题：俄罗斯"
        "与乌克兰的关系</title><link>https://x.org/a</link></item></channel></rss>"
    ).encode("gb18030")
    parsed = parse_feed(body, {"Content-Type": "application/rss+xml; charset=gb2312"}, "f", 0)
    assert parsed.title == "中文新闻标题和更多的中文内容"
    assert parsed.items[0].title == "标题：俄罗斯与乌克兰的关系"


@pytest.mark.parametrize(
    "ref",
    [
        "&#xD800;",
        "&#55296;",
        "&#xdfff;",
        "&#x0000D800;",
        "&#x110000;",
        "&#99999999999999999999999;",
        "&#0;",
        "\x00",
    ],
)
def test_references_to_no_character_become_u_fffd_and_the_rest_is_read(ref: str) -> None:
    body = (
        f'<rss version="2.0"><channel><title>t</title>'
        f"<item><title>x{ref}y</title><link>https://x.org/a</link></item>"
        f"<item><title>fine &#x4E2D;</title><link>https://x.org/b</link></item>"
        f"</channel></rss>"
    ).encode()
    parsed = parse_feed(body, RSS, "f", NOW)
    assert [i.title for i in parsed.items] == ["x\ufffdy", "fine 中"]
    assert any("replaced by U+FFFD" in w for w in parsed.warnings)


def test_json_feed_lone_surrogates_and_nul_become_u_fffd() -> None:
    body = (
        b'{"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": ['
        b'{"id": "1", "url": "https://x.org/a", "title": "x\\ud800y\\u0000z"}]}'
    )
    [item] = parse_feed(body, {"Content-Type": "application/feed+json"}, "f", NOW).items
    assert item.title == "x\ufffdy\ufffdz"


# The cases feedparser's well-formed suite found (tests/test_parse_wellformed.py reads the
# suite itself from ../shared; these fixtures guard them without it).
READERS = {"parse_feed": parse_feed, "lxml": parse_fast, "feedparser": parse_with_feedparser}
FEED_URL = "https://feeds.example/a/feed.xml"


@pytest.mark.parametrize("reader", READERS)
def test_malformed_urls_never_raise_and_spare_the_other_items(reader: str) -> None:
    body = (FEEDS / "wellformed_bad_urls.xml").read_bytes()
    result = READERS[reader](body, {}, "f", NOW, FEED_URL)
    assert result is not None
    urls = {i.url for i in result.items}
    assert {"https://example.org/good/1", "https://example.org/good/2"} <= urls
    # A malformed xml:base gives way to the enclosing one, as in feedparser.
    assert "http://example.test/story/4" in urls
    # A broken link with an id is kept by its id; without one, the entry is skipped.
    assert "id:opaque-7" in {i.key for i in result.items}
    assert not any("[" in i.url for i in result.items)
    assert len(result.items) in (5, 4)  # feedparser drops the guid it cannot resolve
    assert result.outcome == "ok-with-warnings"
    if reader != "feedparser":  # feedparser drops the malformed links without a word
        assert any(
            "'http://[::1/broken' is not a URL" in w and "kept by its id" in w
            for w in result.warnings
        ), result.warnings
        assert "id:http://example.c[o.test/" in {i.key for i in result.items}


def test_a_malformed_feed_link_is_a_warning() -> None:
    body = b"<rss><channel><link>http://[oops/</link><item><guid>g</guid></item></channel></rss>"
    result = parse_feed(body, {}, "f", NOW, FEED_URL)
    assert result.link is None and [i.key for i in result.items] == ["id:g"]
    assert any("feed link" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("headers", "base_url", "root"),
    [
        ({}, FEED_URL, "https://feeds.example/a/"),
        ({"Content-Location": "https://cl.example/dir/"}, FEED_URL, "https://cl.example/dir/"),
        ({"content-location": "../b/"}, FEED_URL, "https://feeds.example/b/"),  # relative: joined
        ({"Content-Location": "http://[broken/"}, FEED_URL, "https://feeds.example/a/"),  # ignored
        ({"Content-Location": "https://cl.example/dir/"}, "", "https://cl.example/dir/"),
    ],
)
def test_relative_links_resolve_like_feedparser(
    headers: dict[str, str], base_url: str, root: str
) -> None:
    result = parse("wellformed_atom_links.xml", headers, base_url)
    host = root.split("/", 3)[:3]
    assert [i.url for i in result.items] == [
        root + "feed/entry/one.html",  # xml:base "feed/", then "entry/", then the document
        "http://www.example.com/two",  # a link without href: its text
        "http://www.example.com/three",  # the alternate link, not the enclosure before it
        "/".join(host) + "/relative/link",
    ]
    assert result.link == root + "feed/home"
    assert result.items[3].entry_id == "/relative/id"  # an id is kept as written


def test_feedparser_keeps_a_relative_link_that_follows_the_guid() -> None:
    body = (
        b"<!DOCTYPE rss><rss><channel><item><guid>g-1</guid><link>/rel/1</link></item>"
        b"</channel></rss>"
    )
    [item] = parse_feed(body, {}, "f", NOW, FEED_URL).items
    assert (item.url, item.key) == ("https://feeds.example/rel/1", "https://feeds.example/rel/1")


def test_rss_elements_feedparser_reads_are_read() -> None:
    body = (FEEDS / "wellformed_rss_elements.xml").read_bytes()
    fast = parse_fast(body, {}, "f", NOW)
    assert fast is not None
    assert fast == parse_with_feedparser(body, {}, "f", NOW)
    assert fast.title == "Dublin Core title"
    first, second, third = fast.items
    assert (first.title, first.summary, first.published_ms) == (
        "DC item title",
        "DC description",
        1072865695000,
    )
    assert (second.summary, second.content, second.published_ms) == (
        "Example summary",
        "Example description",
        1072952095000,
    )
    assert third.content == "<p>Example content</p>"
    assert third.categories == ("tag one", "tag two", "category one")


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("wellformed_feedparser_only.xml", "title", "Example Atom"),  # base64, decoded
        ("wellformed_xhtml_body.xml", "content", "<p>Example content</p>"),
    ],
)
def test_what_the_fast_reader_cannot_read_goes_to_feedparser(
    name: str, field: str, value: str
) -> None:
    body = (FEEDS / name).read_bytes()
    assert parse_fast(body, {}, "f", NOW) is None
    [item] = parse_feed(body, {}, "f", NOW).items
    assert getattr(item, field) == value


_URLISH = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda a, b: f"{a}://{b}",
        st.sampled_from(["http", "https", "ftp", ""]),
        st.text(alphabet="[]:/?#@%.a-z0 ", max_size=20),
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    link=_URLISH, guid=_URLISH, base=_URLISH, location=_URLISH, feed_url=_URLISH, atom=st.booleans()
)
def test_no_url_anywhere_raises(
    link: str, guid: str, base: str, location: str, feed_url: str, atom: bool
) -> None:
    def attr(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")

    if atom:
        body = (
            f'<feed xmlns="http://www.w3.org/2005/Atom" xml:base="{attr(base)}">'
            f'<link href="{attr(link)}"/><entry><id>{attr(guid)}</id>'
            f'<link href="{attr(link)}"/></entry>'
            "<entry><id>urn:good</id><link href='https://x.org/good'/></entry></feed>"
        )
    else:
        body = (
            f'<rss><channel xml:base="{attr(base)}"><link>{attr(link)}</link>'
            f"<item><link>{attr(link)}</link><guid>{attr(guid)}</guid>"
            f'<enclosure url="{attr(link)}"/></item>'
            "<item><link>https://x.org/good</link></item></channel></rss>"
        )
    data, headers = body.encode("utf-8", "surrogatepass"), {"Content-Location": location}
    fast = parse_fast(data, headers, "f", NOW, feed_url)
    ours = parse_feed(data, headers, "f", NOW, feed_url)
    parse_with_feedparser(data, headers, "f", NOW, feed_url)  # raises nothing either
    if fast is not None:  # well-formed: the good entry is untouched by the bad URLs
        assert "https://x.org/good" in {i.key for i in fast.items}
        assert ours == fast
    # (feedparser, reading what lxml declines, loses every link under an xml:base that is
    # not a URL: its own resolution fails.)


def test_a_declaration_feedparser_cannot_decode_is_read_after_replacement() -> None:
    # Found by tests/test_fuzz.py: not UTF-8, detected as UTF-8 with a replacement, and
    # handed to feedparser as sent, whose declaration sniffing raised UnicodeDecodeError.
    body = (
        b'<?xml version="1.0" encoding="\x80utf-8"?><feed xmlns="http://www.w3.org/2005/'
        b'Atom"><title></title><entry><title></title><link href="\x1b"/><id>\x1b</id>'
        b'<updated></updated><content type="html"></content></entry></feed>'
    )
    parsed = parse_feed(body, {}, "f", NOW)
    assert "undecodable bytes replaced" in parsed.warnings
    assert len(parsed.items) == 1


def test_markup_that_trips_feedparser_is_not_a_feed_with_the_reason() -> None:
    # Found by tests/test_fuzz.py: feedparser's loose parser raised KeyError('links').
    body = (
        b'<rss version="2.0"><channel><item><title>t</title><link>/link><pubDate>Wed, 22 '
        b"Mar 2023 10:15:03 GMT</pubDate></item//x.org/1</link></item></channel></rss>"
    )
    parsed = parse_feed(body, {}, "f", NOW)
    assert parsed.outcome == "not-a-feed"
    assert "not readable: KeyError: 'links'" in parsed.warnings
