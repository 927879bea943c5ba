"""Fuzzing the two readers of outside input: random and mutated documents to parse_feed,
random and mutated files to the archive reader (parse_archive).

The documented outcomes are the only ones allowed: parse_feed never raises and returns a
ParsedFeed whose items a database can store (UTF-8 text, no NUL); parse_archive returns
an entry that writes back byte for byte, or raises ArchiveError. Bounded for the suite:
150 examples each (FEED_MONITOR_FUZZ_EXAMPLES=5000 for a longer hunt), no per-example
deadline (the machine may be busy).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from xml.sax.saxutils import escape

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.archive.format import (
    ArchiveError,
    entry_to_item,
    format_archive,
    looks_like_archive,
    parse_archive,
)
from monitor.parse import parse_feed
from monitor.types import Item, ParsedFeed, PollOutcome

FIXTURES = Path(__file__).parent / "fixtures"
FEEDS = sorted(p for p in (FIXTURES / "feeds").iterdir() if p.suffix != ".py")
ARCHIVES = sorted((FIXTURES / "archive").rglob("*.md"))
NOW = 1_700_000_000_000

FUZZ = settings(
    max_examples=int(os.environ.get("FEED_MONITOR_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# What a hostile or broken feed puts in a body: markup, references to no character,
# encodings, DOCTYPEs, CDATA ends, control bytes, JSON pieces.
TOKENS = [
    b"<",
    b">",
    b"&",
    b"</",
    b"/>",
    b"<item>",
    b"</item>",
    b"<entry>",
    b"<title>",
    b"</title>",
    b"<link>",
    b"<pubDate>",
    b"<![CDATA[",
    b"]]>",
    b"<!--",
    b"-->",
    b"<?xml ",
    b"?>",
    b'<!DOCTYPE rss [<!ENTITY e "&#xD800;">]>',
    b"&e;",
    b"&#xD800;",
    b"&#55296;",
    b"&#x110000;",
    b"&#0;",
    b"&#99999999999999999999;",
    b"&#x",
    b"&amp;",
    b"&nbsp;",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\xe4\xb8",
    b"\x1b[31m",
    b"\r\n",
    b'encoding="gb2312"',
    b'encoding="utf-16"',
    b'version="2.0"',
    b'xmlns="http://www.w3.org/2005/Atom"',
    b'{"version": "https://jsonfeed.org/version/1.1", "items": [',
    b'"\\ud800"',
    b'"\\u0000"',
    b"]}",
    b"{",
    b"}",
    b"Tue, 26 Sep 2023 09:15:01 GMT",
    b"0000-00-00T99:99:99Z",
    b"javascript:alert(1)",
    b"http://",
    b"//x",
    b"[::1",
    b"http://[",
    b"%",
    b"\\",
]


def mutate(data: bytes, draw: st.DrawFn) -> bytes:
    """A few edits of ``data``: tokens and random bytes inserted or overwritten, slices
    deleted, duplicated or truncated."""
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["token", "bytes", "delete", "dup", "truncate", "flip"]))
        if kind == "token":
            data = data[:pos] + draw(st.sampled_from(TOKENS)) + data[pos:]
        elif kind == "bytes":
            data = data[:pos] + draw(st.binary(max_size=8)) + data[pos:]
        elif kind == "delete":
            data = data[:pos] + data[pos + draw(st.integers(1, 64)) :]
        elif kind == "dup":
            end = min(len(data), pos + draw(st.integers(1, 256)))
            data = data[:end] + data[pos:end] + data[end:]
        elif kind == "truncate":
            data = data[:pos]
        elif data and pos < len(data):
            data = (
                data[:pos] + bytes([data[pos] ^ (1 << draw(st.integers(0, 7)))]) + data[pos + 1 :]
            )
    return data


@st.composite
def mutated_fixture(draw: st.DrawFn, paths: list[Path]) -> bytes:
    return mutate(draw(st.sampled_from(paths)).read_bytes(), draw)


# Text as feeds carry it: any code point but surrogates (which UTF-8 cannot carry), and a
# few references that name no character, written into the markup as they are.
feed_text = st.lists(
    st.one_of(
        st.text(st.characters(exclude_categories=["Cs"]), max_size=12).map(escape),
        st.sampled_from(
            [
                "&#xD800;",
                "&#xDFFF;",
                "&#0;",
                "&#x110000;",
                "&#x4E2D;",
                "&amp;",
                "<![CDATA[x]]>",
                "<b>x</b>",
            ]
        ),
    ),
    max_size=4,
).map("".join)
dates = st.one_of(
    st.just(""),
    st.sampled_from(
        [
            "Tue, 26 Sep 2023 09:15:01 GMT",
            "2023-09-26T09:15:01Z",
            "yesterday",
            "1969-07-20",
            "Mon, 31 Feb 2023 25:61:61 +9999",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ]
    ),
    st.text(max_size=20).map(escape),
)
links = st.one_of(
    st.sampled_from(
        [
            "https://x.org/a",
            "http://x.org/%zz",
            "/relative",
            "",
            "javascript:alert(1)",
            "http://[::1",
            "https://x.org/a#b",
            "http://[",
            "//x.org/b",
        ]
    ),
    st.text(max_size=20).map(escape),
)


def quoted(text: str) -> str:
    return text.replace('"', "&quot;")


@st.composite
def generated_feed(draw: st.DrawFn) -> bytes:
    """A small RSS, Atom or JSON Feed document from random field values."""
    entries = draw(st.lists(st.tuples(feed_text, links, dates, feed_text), max_size=4))
    kind = draw(st.sampled_from(["rss", "atom", "json"]))
    if kind == "json":
        doc = {
            "version": "https://jsonfeed.org/version/1.1",
            "title": draw(st.text()),
            "items": [
                {
                    "id": draw(st.text(max_size=5)),
                    "url": link,
                    "title": title,
                    "date_published": date,
                    "content_html": body,
                }
                for title, link, date, body in entries
            ],
        }
        return json.dumps(doc).encode()
    if kind == "atom":
        body = "".join(
            f'<entry><title>{t}</title><link href="{quoted(link)}"/><id>{link}</id>'
            f'<updated>{d}</updated><content type="html">{b}</content></entry>'
            for t, link, d, b in entries
        )
        return (
            f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/'
            f'Atom"><title>{draw(feed_text)}</title>{body}</feed>'
        ).encode()
    body = "".join(
        f"<item><title>{t}</title><link>{link}</link><pubDate>{d}</pubDate>"
        f"<description>{b}</description></item>"
        for t, link, d, b in entries
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{draw(feed_text)}'
        f"</title>{body}</channel></rss>"
    ).encode()


STORABLE_OUTCOMES = {
    PollOutcome.OK,
    PollOutcome.OK_WITH_WARNINGS,
    PollOutcome.NOT_A_FEED,
    PollOutcome.EMPTY,
}


def storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def check_parsed(body: bytes) -> ParsedFeed:
    parsed = parse_feed(body, {}, "fuzz", NOW, base_url="https://feed.example/rss")
    assert isinstance(parsed, ParsedFeed)
    assert parsed.outcome in STORABLE_OUTCOMES
    if parsed.outcome in (PollOutcome.NOT_A_FEED, PollOutcome.EMPTY):
        assert parsed.items == ()
    for it in parsed.items:
        assert isinstance(it, Item) and it.key
        assert -(2**63) <= it.published_ms < 2**63
        for text in (
            it.key,
            it.url,
            it.title,
            it.summary,
            it.content,
            it.author,
            it.entry_id or "",
            *it.categories,
        ):
            assert storable(text), repr(text)
    assert all(storable(w) for w in parsed.warnings)
    return parsed


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_never_break_the_parser(body: bytes) -> None:
    check_parsed(body)


@FUZZ
@given(mutated_fixture(FEEDS))
def test_mutated_fixture_feeds_never_break_the_parser(body: bytes) -> None:
    check_parsed(body)


@FUZZ
@given(generated_feed())
def test_generated_feeds_never_break_the_parser(body: bytes) -> None:
    check_parsed(body)


@st.composite
def mutated_generated_feed(draw: st.DrawFn) -> bytes:
    return mutate(draw(generated_feed()), draw)


@FUZZ
@given(mutated_generated_feed())
def test_mutated_generated_feeds_never_break_the_parser(body: bytes) -> None:
    check_parsed(body)


def check_archive(text: str) -> None:
    looks = looks_like_archive(text)
    try:
        entry = parse_archive(text, "fuzz.md")
    except ArchiveError as e:
        assert e.source == "fuzz.md" and (e.line or 0) >= 1
        return
    assert looks, "import would skip a well-formed archive file as a note"
    assert format_archive(entry) == text
    try:
        item = entry_to_item(entry, "archive")
    except ArchiveError:
        return
    assert item.published_ms == entry.published_ms


archive_text = st.one_of(
    st.text(max_size=400),
    st.lists(
        st.sampled_from(
            [
                "---",
                "a: 1",
                "b: [x",
                "*a",
                "&a [1]",
                "",
                "<!--1-->",
                "<!---5-->",
                "<!--0017-->",
                "<!--" + "9" * 30 + "-->",
                "[t](u)",
                "[a](b)](c)",
                "[](x)",
                "------",
                "-----",
                "<p>x</p>",
                "\ufeff",
                "\r",
                "\x00",
                "tags: [a, b]",
                "author: x",
                "a: x\x1c---",
                "b: \u2028",
                " ---",
                "--- ",
            ]
        ),
        max_size=12,
    ).flatmap(lambda rows: st.sampled_from(["\n", "\r\n"]).map(lambda nl: nl.join(rows))),
)


@FUZZ
@given(archive_text)
def test_random_archive_files_read_or_fail_with_an_archive_error(text: str) -> None:
    check_archive(text)


@FUZZ
@given(mutated_fixture(ARCHIVES))
def test_mutated_archive_files_read_or_fail_with_an_archive_error(data: bytes) -> None:
    check_archive(data.decode("utf-8", "replace"))
