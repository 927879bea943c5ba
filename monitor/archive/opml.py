"""OPML subscription lists: import them as config feed entries, export the configured feeds.

``feed-monitor feeds import FILE.opml`` prints :func:`opml_import` (the
:func:`feeds_to_yaml` of :func:`opml_to_feeds`, less the feeds configured
already); export writes :func:`opml_export`. All but these two are pure:
bytes and lists in, lists and text out.

The parser is the standard library's expat, guarded the way defusedxml
guards it: entity declarations and external entities are refused (no OPML
file needs them, and they are how XML bombs and file disclosure work). That
keeps parsing safe without another dependency.
"""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit
from xml.parsers import expat

import yaml

from monitor.config import LoadedConfig
from monitor.errors import FileError
from monitor.items import canonical_url
from monitor.secrets import masker_for

_HTTP_URL = re.compile(r"^https?://[^/\s]+", re.I)
_SLUG_MAX = 32
# Host labels that say nothing about whose feed it is.
_HOST_NOISE = {"www", "feeds", "feed", "rss", "m"}
_GENERIC_SLD = {"co", "com", "org", "net", "gov", "edu", "ac"}
_DECLARED_ENCODING = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_EXPAT_ENCODINGS = {"utf-8", "utf8", "utf-16", "utf16", "iso-8859-1", "latin-1", "us-ascii"}
# Characters XML 1.0 cannot carry, even escaped.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class OpmlError(FileError):
    """An OPML file that cannot be imported, located by file and line."""

    default_source = "<opml>"


@dataclass
class _Outline:
    attrs: dict[str, str]
    line: int
    children: list[_Outline] = field(default_factory=list)


def opml_to_feeds(
    data: bytes, source: str = "<opml>", existing_ids: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Feeds of an OPML file, in document order, as config entries.

    Each dict has ``id`` (a new slug ``[a-z0-9][a-z0-9_-]*``, unique and not in
    ``existing_ids``), ``url``, ``title`` (``title`` or ``text``, else None) and
    ``categories``: the folder paths ("News/China") the feed was found in. A
    URL listed twice (compared as canonical URLs) is one feed whose
    ``categories`` name every folder. Outlines without ``xmlUrl`` are folders;
    ``feed://`` URLs become ``http://``; any other non-HTTP URL is an error.
    """
    body = _parse(data, source)
    taken = set(existing_ids)
    feeds: list[dict[str, Any]] = []
    by_key: dict[str, dict[str, Any]] = {}

    def walk(outlines: list[_Outline], path: tuple[str, ...]) -> None:
        for o in outlines:
            url = o.attrs.get("xmlurl", "").strip()
            name = _clean(o.attrs.get("title") or o.attrs.get("text") or "")
            if not url:
                walk(o.children, path + (name,) if name else path)
                continue
            url = _http_url(url, name, source, o.line)
            folder = "/".join(path)
            key = canonical_url(url)
            if key in by_key:
                seen = by_key[key]
                if folder and folder not in seen["categories"]:
                    seen["categories"].append(folder)
                seen["title"] = seen["title"] or name or None
            else:
                feed_id = feed_slug(name, url, taken)
                taken.add(feed_id)
                entry = {
                    "id": feed_id,
                    "url": url,
                    "title": name or None,
                    "categories": [folder] if folder else [],
                }
                by_key[key] = entry
                feeds.append(entry)
            walk(o.children, path)

    walk(body, ())
    return feeds


def opml_import(loaded: LoadedConfig, path: str | Path) -> tuple[str, list[str]]:
    """The ``feeds:`` YAML for the OPML file's feeds the config lacks, and a note per
    feed left out because its URL is configured already."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise OpmlError(f"cannot read: {e.strerror or e}", str(path)) from e
    cfg = loaded.config
    configured = {canonical_url(f.url): f.id for f in cfg.feeds}
    found = opml_to_feeds(data, str(path), existing_ids=[f.id for f in cfg.feeds])
    new: list[dict[str, Any]] = []
    notes: list[str] = []
    taken = {f.id for f in cfg.feeds}
    for feed in found:
        known = configured.get(canonical_url(feed["url"]))
        if known is None:
            # Ids again, among the feeds kept: a skipped feed leaves no gap ("rfi-3").
            feed["id"] = feed_slug(feed["title"], feed["url"], taken)
            taken.add(feed["id"])
            new.append(feed)
        else:
            notes.append(f"{feed['url']} is configured already as feed '{known}'")
    return feeds_to_yaml(new), notes


def opml_export(loaded: LoadedConfig, reveal_secrets: bool = False) -> str:
    """OPML of the configured feeds; secrets in their URLs masked unless revealed."""
    masker = masker_for(loaded)
    return feeds_to_opml(
        [(f.id, f.url if reveal_secrets else masker(f.url), f.title) for f in loaded.config.feeds]
    )


def feeds_to_yaml(feeds: Iterable[dict[str, Any]]) -> str:
    """A ``feeds:`` block to paste into the config, folders shown as comments."""
    lines = ["feeds:"]
    folder: str | None = None
    for feed in feeds:
        where = "; ".join(feed.get("categories") or [])
        if (folder is None and where) or (folder is not None and where != folder):
            lines.append(f"  # {where or '(no folder)'}")
        folder = where
        entry = {"id": feed["id"]}
        if feed.get("title"):
            entry["title"] = feed["title"]
        entry["url"] = feed["url"]
        dumped = yaml.safe_dump([entry], allow_unicode=True, sort_keys=False, width=10**6)
        lines.extend("  " + row for row in dumped.splitlines())
    if len(lines) == 1:
        return "feeds: []\n"
    return "\n".join(lines) + "\n"


def feeds_to_opml(
    feeds: Iterable[tuple[str, str, str | None]], title: str = "feed-monitor feeds"
) -> str:
    """An OPML 2.0 document listing ``(id, url, title)`` feeds; ``text`` falls back to the id."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = _xml_text(title)
    body = ET.SubElement(root, "body")
    for feed_id, url, feed_title in feeds:
        attrs = {"type": "rss", "text": _xml_text(feed_title or feed_id)}
        if feed_title:
            attrs["title"] = _xml_text(feed_title)
        attrs["xmlUrl"] = _xml_text(url)
        ET.SubElement(body, "outline", attrs)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def feed_slug(title: str | None, url: str, taken: Iterable[str] = ()) -> str:
    """A short config id from the title's Latin letters, else the URL's host; unique in taken.

    "RFI 中文 (简体)" gives ``rfi``; "联合早报" at www.zaobao.com.sg gives
    ``zaobao``; a clash gets ``-2``, ``-3``...
    """
    used = set(taken)
    base = _slugify(title or "")
    if len(base) < 2:
        base = _host_slug(url) or base or "feed"
    candidate, n = base, 2
    while candidate in used:
        candidate = f"{base}-{n}"
        n += 1
    return candidate


def _parse(data: bytes, source: str) -> list[_Outline]:
    """The outlines under <body>, each with its line number."""
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[tuple[str, _Outline | None]] = []
    root: list[str] = []
    body: list[_Outline] = []
    seen_body = False

    def refuse_entities(*_: object) -> NoReturn:
        raise OpmlError(
            "entity declarations and external entities are not allowed in OPML",
            source,
            parser.CurrentLineNumber,
        )

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal seen_body
        name = tag.rsplit(":", 1)[-1].lower()
        line = parser.CurrentLineNumber
        if not stack:
            if name != "opml":
                raise OpmlError(f"expected an <opml> document, found <{tag}>", source, line)
            root.append(tag)
        parent = stack[-1] if stack else None
        node: _Outline | None = None
        if name == "body" and parent is not None and parent[0] == "opml":
            seen_body = True
        elif name == "outline" and parent is not None and parent[0] in ("body", "outline"):
            node = _Outline({k.lower(): v for k, v in attrs.items()}, line)
            if parent[0] == "body":
                body.append(node)
            elif parent[1] is not None:
                parent[1].children.append(node)
        stack.append((name, node))

    def end(tag: str) -> None:
        stack.pop()

    parser.EntityDeclHandler = refuse_entities
    parser.UnparsedEntityDeclHandler = refuse_entities
    parser.ExternalEntityRefHandler = refuse_entities
    # An entity that only an external DTD could define would silently vanish.
    parser.SkippedEntityHandler = refuse_entities
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(_as_expat_input(data, source), True)
    except expat.ExpatError as e:
        raise OpmlError(
            f"not well-formed XML: {expat.ErrorString(e.code)} (column {e.offset + 1})",
            source,
            e.lineno,
        ) from e
    if not seen_body:
        raise OpmlError("the <opml> document has no <body>", source)
    return body


def _as_expat_input(data: bytes, source: str) -> bytes | str:
    """Bytes expat decodes itself, or text decoded here for encodings it lacks (GBK, Big5)."""
    m = _DECLARED_ENCODING.match(data)
    if m is None or m.group(1).decode("ascii").lower() in _EXPAT_ENCODINGS:
        return data
    encoding = m.group(1).decode("ascii")
    try:
        # Given text, pyexpat parses it as UTF-8 whatever the declaration says.
        return data.decode(encoding)
    except LookupError as e:
        raise OpmlError(f"unknown encoding {encoding!r} in the XML declaration", source, 1) from e
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise OpmlError(f"not valid {encoding} (byte {e.start})", source, line) from e


def _http_url(url: str, name: str, source: str, line: int) -> str:
    low = url.lower()
    # The feed: URI scheme wraps an HTTP URL ("feed:https://...") or stands for it.
    if low.startswith("feed:"):
        rest = url[5:]
        url = rest if _HTTP_URL.match(rest) else "http:" + rest
    if not _HTTP_URL.match(url):
        label = f"outline '{name}'" if name else "an outline"
        raise OpmlError(
            f"{label} has xmlUrl {url!r}; expected an http:// or https:// URL", source, line
        )
    return url


def _clean(text: str) -> str:
    return " ".join(text.split())


def _slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > _SLUG_MAX:
        cut = slug[:_SLUG_MAX]
        slug = cut.rsplit("-", 1)[0] if "-" in cut else cut
    return slug


def _host_slug(url: str) -> str:
    host = urlsplit(url).hostname or ""
    labels = host.split(".")
    if not host.replace(".", "").isdigit():
        while len(labels) > 1 and labels[0] in _HOST_NOISE:
            labels = labels[1:]
        if len(labels) > 1:
            labels = labels[:-1]
        if len(labels) > 1 and labels[-1] in _GENERIC_SLD:
            labels = labels[:-1]
    return _slugify("-".join(labels))


def _xml_text(text: str) -> str:
    return _XML_INVALID.sub("", text)
