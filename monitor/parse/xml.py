"""The fast reader: lxml over well-formed RSS 2.0, RSS 1.0 (RDF) and Atom 1.0 without a
DOCTYPE, the common case and the one that must be cheap. It declines whatever it cannot
read exactly as feedparser would, and the fallback reads that."""

from __future__ import annotations

import re
from collections.abc import Mapping

from lxml import etree

from monitor.parse.build import RawEntry, RawFeed, build, date_ms
from monitor.parse.decode import prepare
from monitor.parse.links import document_base, join_url
from monitor.types import ParsedFeed

_ATOM = "{http://www.w3.org/2005/Atom}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_RSS1 = ("{http://purl.org/rss/1.0/}", "{http://my.netscape.com/rdf/simple/0.9/}")
_DC = "{http://purl.org/dc/elements/1.1/}"
_DCTERMS = "{http://purl.org/dc/terms/}"
_XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
_XHTML_BODY = "{http://www.w3.org/1999/xhtml}body"
_CONTENT_ENCODED = "{http://purl.org/rss/1.0/modules/content/}encoded"
# Atom text constructs read as they are written; any other type (xhtml, base64-encoded
# media types, ...) goes to feedparser.
_TEXT_TYPES = ("text", "html", "text/plain", "text/html")
_FIRST_ELEMENT = re.compile(rb"<[A-Za-z_]")


class Decline(Exception):
    """The fast reader cannot promise feedparser's reading of this body."""


def _parser() -> etree.XMLParser:
    # No entity resolution, no DTD, no network, default size limits: a hostile body
    # cannot expand entities, read files or make libxml2 allocate without bound.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


def _text(el: etree._Element | None) -> str:
    if el is None:
        return ""
    if len(el):
        raise Decline("markup inside a text element")
    return el.text or ""


def _resolved(el: etree._Element, ref: str) -> str:
    """``ref`` resolved against the xml:base in scope at ``el`` (relative if that is; the
    document's base comes later, in build). A malformed xml:base is passed over for the
    one of an enclosing element, as feedparser does; a malformed ``ref`` is left as
    written, for build to report."""
    if not ref:
        return ref
    for scope in (el, *el.iterancestors()):
        base = scope.base
        if not base:
            return ref
        try:
            return join_url(base, ref)
        except ValueError:
            continue
    return ref


def _rss_entry(item: etree._Element, about: str = "", xml_base: bool = False) -> RawEntry:
    """One RSS or RDF item; ``xml_base``: an enclosing element declares xml:base."""
    e = RawEntry(entry_id=about)
    xml_base = xml_base or item.get(_XML_BASE) is not None
    guid_link = ""
    summaries = 0
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
                e.link = (
                    _resolved(child, _text(child).strip())
                    if xml_base or child.get(_XML_BASE) is not None
                    else _text(child)
                )
            elif local == "guid":
                e.entry_id = _text(child).strip()
                if child.get("isPermaLink", "true").lower() != "false":
                    guid_link = e.entry_id
            elif local == "pubDate":
                e.published_ms = date_ms(_text(child))
            elif local == "description" or local == "summary":
                summaries = _summary(e, _text(child), summaries)
            elif local == "author":
                e.author = _text(child)
            elif local == "category":
                e.categories.append(_text(child))
            elif local == "tags":  # a comma-separated list some aggregators write
                e.categories.extend(t for t in _text(child).split(","))
            elif local == "fullitem" or local == "body":  # the whole item, as HTML
                e.content = e.content or _text(child)
        elif ns == _DC:
            if local == "creator" or local == "author":
                e.author = _text(child)
            elif local == "date":
                e.updated_ms = date_ms(_text(child))
            elif local == "subject":
                e.categories.append(_text(child))
            elif local == "title":
                e.title = e.title or _text(child)
            elif local == "description":
                summaries = _summary(e, _text(child), summaries)
        elif ns == _DCTERMS:
            if local == "issued":
                e.published_ms = date_ms(_text(child))
            elif local == "modified":
                e.updated_ms = date_ms(_text(child))
        elif tag == _CONTENT_ENCODED and not e.content:
            e.content = _text(child)
        elif tag == _XHTML_BODY:
            raise Decline("xhtml body")
    if not e.link.strip() and guid_link.lower().startswith(("http://", "https://")):
        # RSS: a permalink guid is the link (only when it is one: many feeds omit
        # isPermaLink="false" on opaque ids).
        e.link = guid_link
    return e


def _summary(e: RawEntry, text: str, seen: int) -> int:
    """A description or summary: the first is the summary, a second one the content, as
    feedparser reads them. Returns how many were seen."""
    if not seen:
        e.summary = text
    elif not e.content:
        e.content = text
    return seen + 1


def _atom_text(el: etree._Element | None) -> str:
    if el is None:
        return ""
    kind = el.get("type", "text")
    if kind not in _TEXT_TYPES:
        raise Decline(f"{kind} text construct")
    return _text(el)


def _atom_href(link: etree._Element) -> str:
    """The target of an Atom link, resolved against xml:base: its href, else its text
    (some feeds write ``<link rel="alternate">http://...</link>``; feedparser reads it)."""
    href = link.get("href")
    if href is None:
        if len(link):
            raise Decline("markup inside a link")
        href = link.text or ""
    return _resolved(link, href.strip())


def _atom_link(parent: etree._Element) -> str:
    """The alternate HTML link among ``parent``'s children, as _atom_entry picks it."""
    for child in parent.iterchildren(f"{_ATOM}link"):
        if child.get("rel", "alternate") == "alternate" and child.get("type", "text/html") in (
            "text/html",
            "application/xhtml+xml",
        ):
            return _atom_href(child)
    return ""


def _atom_entry(entry: etree._Element) -> RawEntry:
    e = RawEntry()
    for child in entry:
        tag = child.tag
        if not isinstance(tag, str) or not tag.startswith(_ATOM):
            continue
        local = tag[len(_ATOM) :]
        if local == "title":
            e.title = _atom_text(child)
        elif local == "id":
            e.entry_id = _text(child)
        elif local == "link":
            rel = child.get("rel", "alternate")
            kind = child.get("type", "text/html")
            if not e.link and rel == "alternate" and kind in ("text/html", "application/xhtml+xml"):
                e.link = _atom_href(child)
        elif local == "published":
            e.published_ms = date_ms(_text(child))
        elif local == "updated":
            e.updated_ms = date_ms(_text(child))
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


def _channel_link(link: etree._Element | None) -> str:
    if link is None or len(link):
        return ""  # no link, or markup where a URL belongs: the feed's entries still count
    return _resolved(link, (link.text or "").strip())


def read_xml(xml: bytes) -> RawFeed:
    """The entries of an RSS, RDF or Atom document; Decline when feedparser must read it."""
    # A DOCTYPE in the prolog sends the body to feedparser, which keeps only harmless
    # entity declarations, so lxml never meets entity declarations (and would not expand
    # or load them anyway: see _parser). A plain search: a regex over the prolog
    # backtracks through the whole body when there is no DOCTYPE.
    first = _FIRST_ELEMENT.search(xml)
    if first is None or b"<!DOCTYPE" in xml[: first.start()].upper():
        raise Decline("doctype or no element")
    try:
        root = etree.fromstring(xml, _parser())
    except etree.XMLSyntaxError as exc:
        raise Decline(str(exc)) from exc
    # xml:base is rare in RSS: links are resolved against it only where an element on
    # their way up declares one (an attribute lookup each, where a search of the body
    # would cost a tenth of the parse).
    xml_base = root.get(_XML_BASE) is not None
    if root.tag == "rss":
        channel = root.find("channel")
        if channel is None:
            raise Decline("rss without channel")
        xml_base = xml_base or channel.get(_XML_BASE) is not None
        return RawFeed(
            [_rss_entry(i, xml_base=xml_base) for i in channel.iterfind("item")],
            title=_text(channel.find("title")) or _text(channel.find(f"{_DC}title")),
            ttl=_text(channel.find("ttl")),
            link=_channel_link(channel.find("link")),
        )
    if root.tag == f"{_RDF}RDF":
        for ns in _RSS1:
            channel = root.find(f"{ns}channel")
            if channel is not None:
                entries = [
                    _rss_entry(i, i.get(f"{_RDF}about", ""), xml_base)
                    for i in root.iterfind(f"{ns}item")
                ]
                return RawFeed(
                    entries,
                    title=_text(channel.find(f"{ns}title")),
                    link=_channel_link(channel.find(f"{ns}link")),
                )
        raise Decline("rdf without channel")
    if root.tag == f"{_ATOM}feed":
        if root.find(f"{_ATOM}item") is not None:
            raise Decline("atom item elements")  # feedparser reads them as entries
        return RawFeed(
            [_atom_entry(e) for e in root.iterfind(f"{_ATOM}entry")],
            title=_atom_text(root.find(f"{_ATOM}title")),
            link=_atom_link(root),
        )
    raise Decline(f"root element {root.tag!r}")


def parse_fast(
    body: bytes, headers: Mapping[str, str], feed_id: str, now_ms: int, base_url: str = ""
) -> ParsedFeed | None:
    """The lxml reader alone; None when the body needs feedparser (or is not XML)."""
    decoded, xml, _ = prepare(body, headers)
    try:
        feed = read_xml(xml)
    except Decline:
        return None
    feed.warnings[:0] = decoded.warnings
    return build(feed, feed_id, now_ms, document_base(base_url, headers))
