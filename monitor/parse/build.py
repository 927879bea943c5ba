"""Turning the entries a reader found into Item records: identity (canonical keys via
monitor.items), dates as epoch milliseconds, plain titles, and the warnings on the way."""

from __future__ import annotations

import calendar
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from feedparser.datetimes import _parse_date as _feedparser_date

from monitor.items import id_key, link_key, plain_title
from monitor.parse.links import join_url
from monitor.types import Item, ParsedFeed, PollOutcome


def date_ms(text: str | None) -> int | None:
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
            stamp = datetime(
                int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second)
            )
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
_MONTHS = {
    name: n
    for n, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
# Years 1000-9998 only: feedparser gives up on a date whose UTC time leaves datetime's range.
_RFC822_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov"
    r"|Dec) ([1-9][0-9]{3}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) (?:GMT|([+-])([0-9]{2})([0-9]{2}))"
)


@dataclass(slots=True)
class RawEntry:
    """An entry as a reader found it, before identity and normalisation (mutable: the
    readers fill it field by field as they meet the elements)."""

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
class RawFeed:
    """What a reader found in a body; the readers fill it in place (warnings too)."""

    entries: list[RawEntry]
    title: str = ""
    link: str = ""  # the site the feed belongs to (RSS channel link, Atom alternate link)
    ttl: str = ""
    warnings: list[str] = field(default_factory=list)


def _entries(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def entry_item(e: RawEntry, feed_id: str, now_ms: int, base: str, warnings: list[str]) -> Item:
    """One entry as the Item it is stored as; ``key`` is "" when it has neither a usable
    link nor an id (``build`` skips it). ``base`` is the document's base
    (``links.document_base``). Never raises: a malformed link is a warning in
    ``warnings``, and the entry id identifies the item instead."""
    link = e.link.strip()
    entry_id = e.entry_id.strip() or None
    try:
        url = join_url(base, link) if link else ""
        # Already-canonical links take a fast path; monitor.items remembers the rest.
        key = link_key(url) if url else None
    except ValueError as exc:
        warnings.append(
            f"entry {(entry_id or e.title.strip())[:80]!r}: link {link[:80]!r} "
            f"is not a URL ({exc}); " + ("kept by its id" if entry_id else "skipped")
        )
        url, key = "", None
    if key is None:
        key = id_key(entry_id) if entry_id else ""
    published = e.published_ms if e.published_ms is not None else e.updated_ms
    summary, content = e.summary.strip(), e.content.strip()
    if summary == content:
        # feedparser copies content into a missing summary; storing it twice helps no one.
        summary = ""
    # Undated: first seen now, and the store keeps the time it first saw the key
    # (Item.dated).
    return Item(
        key=key,
        url=url,
        title=plain_title(e.title),
        published_ms=published if published is not None else now_ms,
        feed_id=feed_id,
        entry_id=entry_id,
        summary=summary,
        content=content,
        author=e.author.strip(),
        categories=tuple(c.strip() for c in e.categories if c.strip()),
        dated=published is not None,
    )


def build(feed: RawFeed, feed_id: str, now_ms: int, base: str) -> ParsedFeed:
    """Turn raw entries into Items: identity, dates, plain titles, and warnings.

    ``base`` is the document's base (``links.document_base``): relative links resolve
    against it.
    """
    warnings = list(feed.warnings)
    items: list[Item] = []
    seen_keys: set[str] = set()
    ids = Counter(e.entry_id for e in feed.entries if e.entry_id)
    skipped = undated = duplicates = 0
    for e in feed.entries:
        item = entry_item(e, feed_id, now_ms, base, warnings)
        key = item.key
        if not key:
            skipped += 1
            continue
        if key in seen_keys:
            duplicates += 1
            continue
        seen_keys.add(key)
        if e.published_ms is None and e.updated_ms is None:
            undated += 1
        items.append(item)
    if skipped:
        warnings.append(f"{_entries(skipped)} without link or id skipped")
    if undated:
        warnings.append(f"{_entries(undated)} without date")
    repeated = sorted(i for i, n in ids.items() if n > 1)
    if repeated:
        warnings.append(
            f"duplicate entry ids: {', '.join(repeated[:3])}"
            + (" ..." if len(repeated) > 3 else "")
        )
    if duplicates:
        warnings.append(f"{_entries(duplicates)} with a repeated key dropped")
    ttl: int | None = None
    if feed.ttl.strip():
        try:
            ttl = int(feed.ttl.strip()) * 60
        except ValueError:
            warnings.append(f"ttl {feed.ttl.strip()[:20]!r} is not a number")
    link = feed.link.strip()
    try:
        link = join_url(base, link) if link else ""
    except ValueError as exc:
        warnings.append(f"feed link {link[:80]!r} is not a URL ({exc})")
        link = ""
    return ParsedFeed(
        outcome=PollOutcome.OK_WITH_WARNINGS if warnings else PollOutcome.OK,
        items=tuple(items),
        warnings=tuple(warnings),
        title=plain_title(feed.title) or None,
        ttl_seconds=ttl if ttl is not None and ttl > 0 else None,
        link=link or None,
    )
