"""Response body + headers -> ParsedFeed: classified outcome, Item records, warnings.

Pure: no network, no files. Two readers share one item builder so they give the same
Items: a fast lxml reader for well-formed RSS 2.0 / RSS 1.0 / Atom 1.0 without a DOCTYPE
(the common case, and the one that must be cheap), and feedparser for everything else
(ill-formed XML, DOCTYPEs and entities, Atom 0.3, CDF, ...). JSON Feed is read with
``json``. Bodies are decoded once here, so both readers see the same characters.
"""

from __future__ import annotations

import calendar
import codecs
import html
import io
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

import feedparser
from feedparser.datetimes import _parse_date as _feedparser_date
from lxml import etree

from monitor.items import item_key
from monitor.types import Item, ParsedFeed

__all__ = ["parse_feed", "parse_fast", "parse_with_feedparser", "plain_title", "decode_body"]

# --- decoding ---------------------------------------------------------------------------

# Labels that name a subset of what servers really send: GB2312/GBK pages routinely hold
# GBK or GB18030 characters, Big5 pages hold HKSCS/cp950 ones (the WHATWG encoding
# standard maps the labels the same way). Decoding with the superset loses nothing.
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "big5": "big5hkscs",
    "ascii": "utf-8",  # "us-ascii" bodies are very often UTF-8 in practice
    "iso8859_1": "cp1252",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
}
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# "<?" in UTF-16/32 without a BOM (XML 1.0 appendix F).
_BOMLESS = (
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00?", "utf-16-be"),
    (b"<\x00?\x00", "utf-16-le"),
)
_XML_DECL_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)""")
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)


def _codec(label: str) -> str | None:
    """Python codec name for a charset label, widened to its superset; None if unknown."""
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except LookupError:
        return None
    wider = _SUPERSETS.get(name.replace("-", "_"))
    return codecs.lookup(wider).name if wider else name


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


@dataclass(slots=True)
class _Decoded:
    text: str
    encoding: str
    warnings: list[str]


# Codecs whose byte ranges overlap so much that a wrong one decodes without error.
_CJK = ("gb18030", "big5hkscs", "cp949", "cp932", "euc_jp")


def _detect(body: bytes, among: tuple[str, ...] | None = None) -> str | None:
    """Best-guess codec (charset-normalizer, a requests dependency); None if no guess.

    Reads at most 64 KB: a feed's first items say enough about its charset.
    """
    from charset_normalizer import from_bytes  # imported late: rarely needed

    best = from_bytes(body[:65536], cp_isolation=list(among) if among else None).best()
    return _codec(best.encoding) if best is not None else None


def _declared(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """Charsets the body claims, most trusted first: (label as sent, codec or "")."""
    out: list[tuple[str, str]] = []
    decl = _XML_DECL_ENCODING.match(body[:512])
    if decl:
        label = decl[1].decode("ascii")
        out.append((label, _codec(label) or ""))
    header = _CHARSET.search(content_type)
    if header and all(header[1].lower() != label.lower() for label, _ in out):
        out.append((header[1], _codec(header[1]) or ""))
    return out


def decode_body(body: bytes, content_type: str = "") -> _Decoded:
    """Decode a feed body: BOM, else UTF-8 if valid, else the XML declaration, else the
    HTTP charset, else detection. The first candidate that decodes without error wins,
    so a body mislabelled by its server (UTF-8 sent as GB2312, say) still reads right."""
    warnings: list[str] = []
    for bom, enc in _BOMS:
        if body.startswith(bom):
            try:
                return _Decoded(body[len(bom):].decode(enc), enc, warnings)
            except UnicodeDecodeError:
                warnings.append(f"invalid {enc} bytes replaced")
                return _Decoded(body[len(bom):].decode(enc, "replace"), enc, warnings)
    for prefix, enc in _BOMLESS:
        if body.startswith(prefix):
            return _Decoded(body.decode(enc, "replace"), enc, warnings)

    # Valid UTF-8 first: bytes of any other multi-byte charset are almost never valid
    # UTF-8 by accident, while UTF-8 bodies under a server-wide "charset=gb2312" are common
    # (and GB18030 or Big5 would "decode" them into nonsense without an error). Then the
    # XML declaration, written by the software that wrote the text, before the HTTP header,
    # which is often a server default.
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return _Decoded(text, "utf-8", _utf8_warnings(body, content_type))
    declared = _declared(body, content_type)
    for label, enc in declared:
        if not enc:
            warnings.append(f"unknown charset {label!r} ignored")
            continue
        try:
            text = body.decode(enc)
        except UnicodeDecodeError:
            warnings.append(f"declared charset {label!r} does not fit")
            continue
        if enc in _CJK and not _XML_DECL_ENCODING.match(body[:512]):
            # Only the HTTP header speaks, and the CJK double-byte charsets decode each
            # other's bytes without error (Big5 read as GBK is nonsense, not an error):
            # let the detector choose among them.
            guess = _detect(body, _CJK)
            if guess and guess != enc:
                warnings.append(f"declared charset {label!r} does not fit; detected {guess}")
                return _Decoded(body.decode(guess, "replace"), guess, warnings)
        warnings.extend(f"declared charset {other!r} does not fit; read as {enc}"
                        for other, other_enc in declared if other_enc not in ("", enc)
                        and f"{other!r} does not fit" not in " ".join(warnings))
        return _Decoded(text, enc, warnings)

    # Nothing declared fits: guess, which tells the CJK encodings apart far better than
    # feedparser's cp1252 last resort.
    guess = _detect(body)
    if guess:
        warnings.append(f"no declared charset fits; detected {guess}")
        return _Decoded(body.decode(guess, "replace"), guess, warnings)
    warnings.append("undecodable bytes replaced")
    return _Decoded(body.decode("utf-8", "replace"), "utf-8", warnings)


def _utf8_warnings(body: bytes, content_type: str) -> list[str]:
    """``decode_body``'s warnings for a body that is valid UTF-8."""
    if body.isascii():
        return []
    wrong = [label for label, enc in _declared(body, content_type) if enc and enc != "utf-8"]
    return [f"declared charset {wrong[0]!r} does not fit; read as utf-8"] if wrong else []


_UNICODE_PREFIXES = tuple(bom for bom, _ in _BOMS) + tuple(prefix for prefix, _ in _BOMLESS)


def _utf8_as_is(body: bytes) -> bool:
    """Whether ``decode_body`` reads ``body`` as UTF-8 and ``_utf8_xml`` hands it to lxml as
    it is, provided it is valid UTF-8: no BOM, and an XML declaration naming UTF-8 or none."""
    if body.startswith(_UNICODE_PREFIXES):
        return False
    m = _XML_DECL_ENCODING.match(body[:512])
    return m is None or _codec(m[1].decode("ascii")) == "utf-8"


# --- text helpers -------------------------------------------------------------------------

_TAG = re.compile(r"<[A-Za-z/!?][^<>]*>")
_SPACE = re.compile(r"\s+")


def plain_title(markup: str) -> str:
    """A title as plain text: tags dropped, entities decoded (also double-encoded ones
    such as ``&amp;quot;``, which mirrors produce), whitespace collapsed."""
    if "<" in markup:
        markup = _TAG.sub("", markup)
    for _ in range(3):  # bounded: each round removes one level of escaping
        if "&" not in markup:
            break
        unescaped = html.unescape(markup)
        if unescaped == markup:
            break
        markup = unescaped
    if "<" in markup:
        markup = _TAG.sub("", markup)
    return _SPACE.sub(" ", markup).strip()


def _date_ms(text: str | None) -> int | None:
    """Epoch ms of a feed date, whole seconds.

    Both readers use feedparser's date parser (about 4 us a date), so the same entry gets
    the same timestamp whichever reader ran; the commonest form is read here to the same
    result (tests/test_parse.py). Whole seconds, because feedparser yields struct_time: a
    timestamp that changed with the reader would look like an update.
    """
    if not text:
        return None
    text = text.strip()
    m = _RFC822_DATE.fullmatch(text)
    if m is not None:
        # The commonest form, "Tue, 26 Sep 2023 09:15:01 GMT", read as feedparser's RFC 822
        # handler reads it (its earlier W3C-DTF handler rejects it), in a fifth of the time.
        day, month, year, hour, minute, second, sign, tz_hours, tz_minutes = m.groups()
        try:
            stamp = datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute),
                             int(second))
        except ValueError:
            stamp = None  # not a date: feedparser's other handlers have their say
        if stamp is not None and stamp.year < 9999:
            offset = 0 if sign is None else int(tz_hours) * 3600 + int(tz_minutes) * 60
            since = stamp - _EPOCH
            utc = since.days * 86400 + since.seconds - (-offset if sign == "-" else offset)
            return utc * 1000
    parsed = _feedparser_date(text)
    if parsed is None:
        return None
    return calendar.timegm(parsed) * 1000


_EPOCH = datetime(1970, 1, 1)
_MONTHS = {name: n for n, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
# Years 1000-9998 only: feedparser gives up on a date whose UTC time leaves datetime's range.
_RFC822_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov"
    r"|Dec) ([1-9][0-9]{3}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) (?:GMT|([+-])([0-9]{2})([0-9]{2}))")


# --- the shared item builder --------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    """An entry as either reader found it, before identity and normalisation."""

    link: str = ""
    entry_id: str = ""
    title: str = ""
    summary: str = ""
    content: str = ""
    author: str = ""
    categories: list[str] = field(default_factory=list)
    published_ms: int | None = None
    updated_ms: int | None = None


@dataclass(slots=True)
class _Feed:
    entries: list[_Entry]
    title: str = ""
    ttl: str = ""
    warnings: list[str] = field(default_factory=list)


def _entries(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def _build(feed: _Feed, feed_id: str, now_ms: int, base_url: str) -> ParsedFeed:
    """Turn raw entries into Items: identity, dates, plain titles, and warnings."""
    warnings = list(feed.warnings)
    items: list[Item] = []
    seen_keys: set[str] = set()
    ids = Counter(e.entry_id for e in feed.entries if e.entry_id)
    skipped = undated = duplicates = 0
    for e in feed.entries:
        link = e.link.strip()
        url = urljoin(base_url, link) if link and base_url else link
        entry_id = e.entry_id.strip() or None
        # Already-canonical links take a fast path; monitor.items remembers the rest.
        key = item_key(url, entry_id)
        if key is None:
            skipped += 1
            continue
        if key in seen_keys:
            duplicates += 1
            continue
        seen_keys.add(key)
        published = e.published_ms if e.published_ms is not None else e.updated_ms
        if published is None:
            undated += 1
            published = now_ms
        summary, content = e.summary.strip(), e.content.strip()
        if summary == content:
            # feedparser copies content into a missing summary; storing it twice helps no one.
            summary = ""
        items.append(Item(
            key=key, url=url, title=plain_title(e.title), published_ms=published,
            feed_id=feed_id, entry_id=entry_id, summary=summary, content=content,
            author=e.author.strip(), categories=tuple(c.strip() for c in e.categories if c.strip()),
        ))
    if skipped:
        warnings.append(f"{_entries(skipped)} without link or id skipped")
    if undated:
        warnings.append(f"{_entries(undated)} without date")
    repeated = sorted(i for i, n in ids.items() if n > 1)
    if repeated:
        warnings.append(f"duplicate entry ids: {', '.join(repeated[:3])}"
                        + (" ..." if len(repeated) > 3 else ""))
    if duplicates:
        warnings.append(f"{_entries(duplicates)} with a repeated key dropped")
    ttl: int | None = None
    if feed.ttl.strip():
        try:
            ttl = int(feed.ttl.strip()) * 60
        except ValueError:
            warnings.append(f"ttl {feed.ttl.strip()[:20]!r} is not a number")
    return ParsedFeed(
        outcome="ok-with-warnings" if warnings else "ok", items=tuple(items),
        warnings=tuple(warnings), title=plain_title(feed.title) or None,
        ttl_seconds=ttl if ttl is not None and ttl > 0 else None,
    )


# --- fast reader: lxml --------------------------------------------------------------------

_ATOM = "{http://www.w3.org/2005/Atom}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_RSS1 = ("{http://purl.org/rss/1.0/}", "{http://my.netscape.com/rdf/simple/0.9/}")
_DC = "{http://purl.org/dc/elements/1.1/}"
_CONTENT_ENCODED = "{http://purl.org/rss/1.0/modules/content/}encoded"
_XHTML_TYPES = ("xhtml", "application/xhtml+xml")
_FIRST_ELEMENT = re.compile(rb"<[A-Za-z_]")


class _Decline(Exception):
    """The fast reader cannot promise feedparser's reading of this body."""


def _parser() -> etree.XMLParser:
    # No entity resolution, no DTD, no network, default size limits: a hostile body
    # cannot expand entities, read files or make libxml2 allocate without bound.
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
        remove_comments=True, remove_pis=True, collect_ids=False,
    )


def _text(el: etree._Element | None) -> str:
    if el is None:
        return ""
    if len(el):
        raise _Decline("markup inside a text element")
    return el.text or ""


def _rss_entry(item: etree._Element, about: str = "") -> _Entry:
    e = _Entry(entry_id=about)
    guid_link = ""
    for child in item:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        local = tag.rpartition("}")[2]
        ns = tag[: len(tag) - len(local)]
        if ns in ("", *_RSS1):
            if local == "title":
                e.title = _text(child)
            elif local == "link":
                e.link = _text(child)
            elif local == "guid":
                e.entry_id = _text(child).strip()
                if child.get("isPermaLink", "true").lower() != "false":
                    guid_link = e.entry_id
            elif local == "pubDate":
                e.published_ms = _date_ms(_text(child))
            elif local == "description":
                e.summary = _text(child)
            elif local == "author":
                e.author = _text(child)
            elif local == "category":
                e.categories.append(_text(child))
        elif ns == _DC:
            if local == "creator" or local == "author":
                e.author = _text(child)
            elif local == "date":
                e.updated_ms = _date_ms(_text(child))
            elif local == "subject":
                e.categories.append(_text(child))
        elif tag == _CONTENT_ENCODED and not e.content:
            e.content = _text(child)
    if not e.link.strip() and guid_link.lower().startswith(("http://", "https://")):
        # RSS: a permalink guid is the link (only when it is one: many feeds omit
        # isPermaLink="false" on opaque ids).
        e.link = guid_link
    return e


def _atom_text(el: etree._Element | None) -> str:
    if el is None:
        return ""
    if el.get("type", "text") in _XHTML_TYPES:
        raise _Decline("xhtml text construct")
    return _text(el)


def _atom_entry(entry: etree._Element) -> _Entry:
    e = _Entry()
    for child in entry:
        tag = child.tag
        if not isinstance(tag, str) or not tag.startswith(_ATOM):
            continue
        local = tag[len(_ATOM):]
        if local == "title":
            e.title = _atom_text(child)
        elif local == "id":
            e.entry_id = _text(child)
        elif local == "link":
            rel = child.get("rel", "alternate")
            kind = child.get("type", "text/html")
            if not e.link and rel == "alternate" and kind in ("text/html", "application/xhtml+xml"):
                href = child.get("href", "")
                base = child.base
                e.link = urljoin(base, href) if base else href
        elif local == "published":
            e.published_ms = _date_ms(_text(child))
        elif local == "updated":
            e.updated_ms = _date_ms(_text(child))
        elif local == "summary":
            e.summary = _atom_text(child)
        elif local == "content":
            if not e.content:
                e.content = _atom_text(child)
        elif local == "author":
            name = _text(child.find(f"{_ATOM}name"))
            email = _text(child.find(f"{_ATOM}email"))
            e.author = f"{name} ({email})" if name and email else name or email
        elif local == "category":
            term = child.get("term")
            if term:
                e.categories.append(term)
    return e


def _read_xml(xml: bytes) -> _Feed:
    # A DOCTYPE in the prolog sends the body to feedparser, which keeps only harmless
    # entity declarations, so lxml never meets entity declarations (and would not expand
    # or load them anyway: see _parser). A plain search: a regex over the prolog
    # backtracks through the whole body when there is no DOCTYPE.
    first = _FIRST_ELEMENT.search(xml)
    if first is None or b"<!DOCTYPE" in xml[: first.start()].upper():
        raise _Decline("doctype or no element")
    try:
        root = etree.fromstring(xml, _parser())
    except etree.XMLSyntaxError as exc:
        raise _Decline(str(exc)) from exc
    if root.tag == "rss":
        channel = root.find("channel")
        if channel is None:
            raise _Decline("rss without channel")
        return _Feed([_rss_entry(i) for i in channel.iterfind("item")],
                     title=_text(channel.find("title")), ttl=_text(channel.find("ttl")))
    if root.tag == f"{_RDF}RDF":
        for ns in _RSS1:
            channel = root.find(f"{ns}channel")
            if channel is not None:
                entries = [_rss_entry(i, i.get(f"{_RDF}about", ""))
                           for i in root.iterfind(f"{ns}item")]
                return _Feed(entries, title=_text(channel.find(f"{ns}title")))
        raise _Decline("rdf without channel")
    if root.tag == f"{_ATOM}feed":
        return _Feed([_atom_entry(e) for e in root.iterfind(f"{_ATOM}entry")],
                     title=_atom_text(root.find(f"{_ATOM}title")))
    raise _Decline(f"root element {root.tag!r}")


def _utf8_xml(body: bytes, decoded: _Decoded) -> bytes:
    """The body as UTF-8 without a conflicting XML declaration."""
    if decoded.encoding == "utf-8" and not body.startswith(codecs.BOM_UTF8):
        m = _XML_DECL_ENCODING.match(body[:512])
        if m is None or _codec(m[1].decode("ascii")) == "utf-8":
            return body  # the common case: no copy
    return _XML_DECL.sub("", decoded.text, count=1).encode("utf-8")


# --- JSON Feed ----------------------------------------------------------------------------


def _json_feed(text: str) -> _Feed | None:
    """Read a JSON Feed (1.0 or 1.1); None when the JSON is not one."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        return None
    if not str(doc.get("version", "")).startswith("https://jsonfeed.org/version/"):
        return None

    def s(value: Any) -> str:
        return value if isinstance(value, str) else "" if value is None else str(value)

    entries: list[_Entry] = []
    for raw in doc["items"]:
        if not isinstance(raw, dict):
            continue
        authors = raw.get("authors") or ([raw["author"]] if isinstance(raw.get("author"), dict)
                                         else [])
        names = [s(a.get("name")) for a in authors if isinstance(a, dict) and a.get("name")]
        tags = raw.get("tags") if isinstance(raw.get("tags"), list) else []
        content = s(raw.get("content_html")) or html.escape(s(raw.get("content_text")))
        entries.append(_Entry(
            link=s(raw.get("url")) or s(raw.get("external_url")), entry_id=s(raw.get("id")),
            title=s(raw.get("title")), summary=s(raw.get("summary")), content=content,
            author=", ".join(names), categories=[s(t) for t in tags],
            published_ms=_date_ms(s(raw.get("date_published"))),
            updated_ms=_date_ms(s(raw.get("date_modified"))),
        ))
    return _Feed(entries, title=s(doc.get("title")))


# --- feedparser ---------------------------------------------------------------------------


def _fp_entry(fp_entry: Mapping[str, Any]) -> _Entry:
    # dict.get, not FeedParserDict.get: the latter maps missing keys onto others
    # (updated_parsed -> published_parsed) and warns about it.
    def get(key: str) -> Any:
        return dict.get(fp_entry, key)  # type: ignore[arg-type]

    link = get("link") or ""
    if get("guidislink") and not link.lower().startswith(("http://", "https://")):
        link = ""  # an opaque guid feedparser took for a link (see _rss_entry)
    content = get("content") or []
    published, updated = get("published_parsed"), get("updated_parsed")
    return _Entry(
        link=link, entry_id=get("id") or "", title=get("title") or "",
        summary=get("summary") or "", content=content[0].get("value", "") if content else "",
        author=get("author") or "",
        categories=[t.get("term") or "" for t in get("tags") or []],
        published_ms=calendar.timegm(published) * 1000 if published else None,
        updated_ms=calendar.timegm(updated) * 1000 if updated else None,
    )


def _feedparser_feed(xml: bytes, headers: Mapping[str, str]) -> tuple[_Feed, bool]:
    """Read with feedparser; (feed, looks like a feed at all)."""
    # feedparser.parse() opens a bytes argument as a file name if it can, and fetches a
    # str that looks like a URL: only ever hand it a stream.
    result = feedparser.parse(io.BytesIO(xml), response_headers=dict(headers),
                              sanitize_html=False, resolve_relative_uris=False)
    warnings: list[str] = []
    if result.get("bozo"):
        exc = result.get("bozo_exception")
        detail = str(exc).splitlines()[0][:80] if exc else ""
        warnings.append(f"not well-formed: {type(exc).__name__}: {detail}".rstrip(": "))
    entries = [_fp_entry(e) for e in result.get("entries", [])]
    meta = result.get("feed", {})
    is_feed = bool(result.get("version")) or bool(entries)
    return _Feed(entries, title=meta.get("title") or "", ttl=meta.get("ttl") or "",
                 warnings=warnings), is_feed


# --- entry points -------------------------------------------------------------------------


def _is_json(body: bytes, content_type: str) -> bool:
    return "json" in content_type.lower() or body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def _prepare(body: bytes, headers: Mapping[str, str]) -> tuple[_Decoded, bytes, str]:
    content_type = _header(headers, "content-type")
    decoded = decode_body(body, content_type)
    return decoded, _utf8_xml(body, decoded), content_type


def _utf8_headers(headers: Mapping[str, str], content_type: str) -> dict[str, str]:
    """Headers for feedparser: lower-case names (it looks them up that way) and the
    charset we decoded with, since it gets our UTF-8 bytes."""
    out = {k.lower(): v for k, v in headers.items() if k.lower() != "content-location"}
    mime = content_type.split(";", 1)[0].strip() or "application/xml"
    out["content-type"] = f"{mime}; charset=utf-8"
    return out


def parse_fast(body: bytes, headers: Mapping[str, str], feed_id: str, now_ms: int,
               base_url: str = "") -> ParsedFeed | None:
    """The lxml reader alone; None when the body needs feedparser (or is not XML)."""
    decoded, xml, _ = _prepare(body, headers)
    try:
        feed = _read_xml(xml)
    except _Decline:
        return None
    feed.warnings[:0] = decoded.warnings
    return _build(feed, feed_id, now_ms, base_url)


def parse_with_feedparser(body: bytes, headers: Mapping[str, str], feed_id: str, now_ms: int,
                          base_url: str = "") -> ParsedFeed:
    """The feedparser reader alone (after our decoding), classified."""
    decoded, xml, content_type = _prepare(body, headers)
    return _classify_feedparser(xml, decoded, headers, content_type, feed_id, now_ms, base_url)


def _classify_feedparser(xml: bytes, decoded: _Decoded, headers: Mapping[str, str],
                         content_type: str, feed_id: str, now_ms: int,
                         base_url: str) -> ParsedFeed:
    feed, is_feed = _feedparser_feed(xml, _utf8_headers(headers, content_type))
    if not is_feed:
        return ParsedFeed("not-a-feed", (), ("no RSS, Atom or JSON Feed found",
                                             *decoded.warnings))
    feed.warnings[:0] = decoded.warnings
    return _build(feed, feed_id, now_ms, base_url)


def parse_feed(body: bytes, headers: Mapping[str, str], feed_id: str, now_ms: int,
               base_url: str = "") -> ParsedFeed:
    """Parse one response body into Items.

    ``headers`` are the response headers (any case); their Content-Type charset is
    honoured when it fits the body. ``base_url`` (the feed's URL) makes relative links
    absolute. Never raises on bad input: the outcome says what the body was.
    Summary and content are HTML as published (not sanitised): store them as data and
    strip tags before showing or matching them.
    """
    if not body.strip():
        return ParsedFeed("empty", (), ("empty body",))
    content_type = _header(headers, "content-type")
    as_is = _utf8_as_is(body) and not _is_json(body, content_type)
    if as_is:
        # The common case, UTF-8 without BOM: lxml gets the bytes before they are decoded
        # (a tenth of the parse), and rejects what is not UTF-8 as Python's decoder does
        # (tests/test_parse.py), so a body it takes is one decode_body reads as UTF-8.
        try:
            feed = _read_xml(body)
        except _Decline:
            pass
        else:
            feed.warnings[:0] = _utf8_warnings(body, content_type)
            return _build(feed, feed_id, now_ms, base_url)
    decoded, xml, content_type = _prepare(body, headers)
    if _is_json(body, content_type):
        json_feed = _json_feed(decoded.text)
        if json_feed is not None:
            json_feed.warnings[:0] = decoded.warnings
            return _build(json_feed, feed_id, now_ms, base_url)
        if "json" in content_type.lower():
            return ParsedFeed("not-a-feed", (), ("JSON but not a JSON Feed", *decoded.warnings))
    if not (as_is and xml is body):  # else lxml has just declined these very bytes
        try:
            feed = _read_xml(xml)
        except _Decline:
            pass
        else:
            feed.warnings[:0] = decoded.warnings
            return _build(feed, feed_id, now_ms, base_url)
    return _classify_feedparser(xml, decoded, headers, content_type, feed_id, now_ms, base_url)

