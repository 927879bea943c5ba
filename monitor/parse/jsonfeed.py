"""JSON Feed 1.0 and 1.1, read with ``json``."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from monitor.parse.build import RawEntry, RawFeed, date_ms

# JSON's \ud800 escapes give lone surrogates, which no database can store as UTF-8, and
# \u0000 gives NUL, which PostgreSQL refuses in text: both become U+FFFD.
_NO_CHARACTER = re.compile("[\x00\ud800-\udfff]")


def looks_like_json(body: bytes, content_type: str) -> bool:
    return "json" in content_type.lower() or body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def read_json_feed(text: str) -> RawFeed | None:
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
        text = value if isinstance(value, str) else "" if value is None else str(value)
        return _NO_CHARACTER.sub("\ufffd", text)

    entries: list[RawEntry] = []
    for raw in doc["items"]:
        if not isinstance(raw, dict):
            continue
        authors = raw.get("authors") or (
            [raw["author"]] if isinstance(raw.get("author"), dict) else []
        )
        names = [s(a.get("name")) for a in authors if isinstance(a, dict) and a.get("name")]
        tags = raw.get("tags")
        if not isinstance(tags, list):
            tags = []
        content = s(raw.get("content_html")) or html.escape(s(raw.get("content_text")))
        entries.append(
            RawEntry(
                link=s(raw.get("url")) or s(raw.get("external_url")),
                entry_id=s(raw.get("id")),
                title=s(raw.get("title")),
                summary=s(raw.get("summary")),
                content=content,
                author=", ".join(names),
                categories=[s(t) for t in tags],
                published_ms=date_ms(s(raw.get("date_published"))),
                updated_ms=date_ms(s(raw.get("date_modified"))),
            )
        )
    return RawFeed(entries, title=s(doc.get("title")))
