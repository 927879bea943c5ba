"""The feedparser reader, for every body the fast reader declines: ill-formed XML,
DOCTYPEs and entities, Atom 0.3, CDF, ... It gets our decoded UTF-8, so both readers
see the same characters."""

from __future__ import annotations

import calendar
import io
import re
from collections.abc import Mapping
from typing import Any

import feedparser

from monitor.parse.build import RawEntry, RawFeed, build
from monitor.parse.decode import Decoded, prepare
from monitor.parse.links import document_base
from monitor.types import ParsedFeed, PollOutcome


def _alternate(links: list[Mapping[str, Any]] | None) -> str:
    """The first alternate HTML link, as the lxml reader picks it (feedparser's ``link``
    can be an enclosure that came first)."""
    for link in links or ():
        if link.get("rel", "alternate") == "alternate" and link.get("type", "text/html") in (
            "text/html",
            "application/xhtml+xml",
        ):
            return str(link.get("href") or "")
    return ""


def _fp_entry(fp_entry: Mapping[str, Any]) -> RawEntry:
    # dict.get, not FeedParserDict.get: the latter maps missing keys onto others
    # (updated_parsed -> published_parsed) and warns about it.
    def get(key: str) -> Any:
        return dict.get(fp_entry, key)  # type: ignore[call-overload]

    link = _alternate(get("links")) or get("link") or ""
    if (
        get("guidislink")
        and link == get("id")
        and not link.lower().startswith(("http://", "https://"))
    ):
        link = ""  # an opaque guid feedparser took for a link (see xml._rss_entry)
    content = get("content") or []
    published, updated = get("published_parsed"), get("updated_parsed")
    return RawEntry(
        link=link,
        entry_id=get("id") or "",
        title=get("title") or "",
        summary=get("summary") or "",
        content=content[0].get("value", "") if content else "",
        author=get("author") or "",
        categories=[t.get("term") or "" for t in get("tags") or []],
        published_ms=calendar.timegm(published) * 1000 if published else None,
        updated_ms=calendar.timegm(updated) * 1000 if updated else None,
    )


# A numeric character reference as feedparser's loose parser reads one (";" required).
_CHARREF = re.compile(rb"&#([0-9]+|[xX][0-9a-fA-F]+);")


def _no_charref_to_nowhere(xml: bytes) -> tuple[bytes, int]:
    """``xml`` with NUL bytes and each character reference to a code point that is no
    character (a lone surrogate such as ``&#xD800;``, beyond U+10FFFF, or NUL) replaced by
    U+FFFD, and how many there were. feedparser's loose parser raises on the references,
    and keeps NUL, which PostgreSQL refuses in text; lxml declines all of them."""
    bad = xml.count(b"\x00")
    if bad:
        xml = xml.replace(b"\x00", "\ufffd".encode())
    if b"&#" not in xml:
        return xml, bad

    def fix(m: re.Match[bytes]) -> bytes:
        nonlocal bad
        ref = m.group(1)
        hexa = ref[:1] in (b"x", b"X")
        digits = (ref[1:] if hexa else ref).lstrip(b"0") or b"0"
        if len(digits) <= (6 if hexa else 7):
            code = int(digits, 16 if hexa else 10)
            if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                return m.group(0)
        bad += 1
        return b"&#xFFFD;"

    return _CHARREF.sub(fix, xml), bad


def _feedparser_feed(xml: bytes, headers: Mapping[str, str]) -> tuple[RawFeed, bool]:
    """Read with feedparser; (feed, looks like a feed at all)."""
    warnings: list[str] = []
    try:
        xml.decode("utf-8")
    except UnicodeDecodeError:
        # A body read as UTF-8 with replacements (detected, or the last resort) reaches
        # here as sent; feedparser's declaration sniffing needs real UTF-8.
        xml = xml.decode("utf-8", "replace").encode("utf-8")
    xml, replaced = _no_charref_to_nowhere(xml)
    try:
        # feedparser.parse() opens a bytes argument as a file name if it can, and fetches
        # a str that looks like a URL: only ever hand it a stream.
        result = feedparser.parse(
            io.BytesIO(xml),
            response_headers=dict(headers),
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as failed:  # its loose parser trips over some broken markup (fuzzing)
        detail = (str(failed).splitlines() or [""])[0][:80]
        warnings.append(f"not readable: {type(failed).__name__}: {detail}".rstrip(": "))
        return RawFeed([], warnings=warnings), False
    if replaced:
        warnings.append(
            f"{replaced} NUL or invalid character reference"
            f"{'s' if replaced > 1 else ''} replaced by U+FFFD"
        )
    if result.get("bozo"):
        exc = result.get("bozo_exception")
        detail = str(exc).splitlines()[0][:80] if exc else ""
        warnings.append(f"not well-formed: {type(exc).__name__}: {detail}".rstrip(": "))
    entries = [_fp_entry(e) for e in result.get("entries", [])]
    meta = result.get("feed", {})
    is_feed = bool(result.get("version")) or bool(entries)
    return RawFeed(
        entries,
        title=meta.get("title") or "",
        link=meta.get("link") or "",
        ttl=meta.get("ttl") or "",
        warnings=warnings,
    ), is_feed


def _utf8_headers(headers: Mapping[str, str], content_type: str) -> dict[str, str]:
    """Headers for feedparser: lower-case names (it looks them up that way) and the
    charset we decoded with, since it gets our UTF-8 bytes. Without Content-Location:
    feedparser resolves against xml:base only, and ``build`` against the document's base,
    as for the lxml reader, so both readers give the same links."""
    out = {k.lower(): v for k, v in headers.items() if k.lower() != "content-location"}
    mime = content_type.split(";", 1)[0].strip() or "application/xml"
    out["content-type"] = f"{mime}; charset=utf-8"
    return out


def parse_with_feedparser(
    body: bytes, headers: Mapping[str, str], feed_id: str, now_ms: int, base_url: str = ""
) -> ParsedFeed:
    """The feedparser reader alone (after our decoding), classified."""
    decoded, xml, content_type = prepare(body, headers)
    feed = read_with_feedparser(xml, decoded, headers, content_type)
    if isinstance(feed, ParsedFeed):
        return feed
    return build(feed, feed_id, now_ms, document_base(base_url, headers))


def read_with_feedparser(
    xml: bytes, decoded: Decoded, headers: Mapping[str, str], content_type: str
) -> RawFeed | ParsedFeed:
    """Read ``xml`` (``decoded`` as UTF-8 bytes) with feedparser: the entries, or the
    ParsedFeed of a body that is no feed."""
    feed, is_feed = _feedparser_feed(xml, _utf8_headers(headers, content_type))
    if not is_feed:
        unreadable = [w for w in feed.warnings if w.startswith("not readable")]
        return ParsedFeed(
            PollOutcome.NOT_A_FEED,
            (),
            ("no RSS, Atom or JSON Feed found", *unreadable, *decoded.warnings),
        )
    feed.warnings[:0] = decoded.warnings
    return feed
