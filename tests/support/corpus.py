"""feedparser's own ill-formed and encoding test feeds (../shared/corpus/feedparser/tests)
and what feedparser says of each, for the corpus tests of parse and fetch.

Each file's leading comment names the response headers (``Header:``) and what feedparser
must see (``Expect:``, a Python expression over feedparser's result; ``SkipUnless:``
guards). ``feedparser_reading`` evaluates those lines against feedparser's own result of
the same bytes and headers: where they hold, the feed is readable and our reading must
find as many entries.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import feedparser

from monitor.types import ParsedFeed

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CORPUS = SHARED / "corpus" / "feedparser" / "tests"
FOLDERS = ("illformed", "encoding")
OUTCOMES = {"ok", "ok-with-warnings", "not-a-feed", "empty"}

_FIELD = re.compile(rb"^\s*(Header|Expect|SkipUnless|Description):\s*(.*?)\s*$", re.M)


def corpus_files() -> list[Path | None]:
    """The corpus files, sorted; ``[None]`` when the corpus is absent (one test that
    skips, or fails under CI)."""
    if not CORPUS.is_dir():
        return [None]
    return sorted(p for folder in FOLDERS for p in (CORPUS / folder).rglob("*") if p.is_file())


def label(path: Path | None) -> str:
    return "absent" if path is None else str(path.relative_to(CORPUS))


def meta(body: bytes) -> tuple[dict[str, str], list[str], list[str]]:
    """(headers, Expect expressions, SkipUnless expressions) from the leading comment.

    The comment is ASCII in every file, but some files are UTF-16/32: read a
    decoded copy when the raw bytes have no ASCII comment.
    """
    text = body
    if b"Expect" not in body[:2000]:
        for enc in ("utf-16", "utf-32", "utf-16-be", "utf-16-le", "utf-32-be", "utf-32-le"):
            try:
                decoded = body.decode(enc)
            except UnicodeDecodeError:
                continue
            if "Expect" in decoded:
                text = decoded.encode("utf-8")
                break
    comment = text[: text.find(b"-->")] if b"-->" in text else b""
    headers: dict[str, str] = {}
    expects: list[str] = []
    skips: list[str] = []
    for kind, value in _FIELD.findall(comment):
        line = value.decode("utf-8")
        if kind == b"Header":
            name, _, header_value = line.partition(":")
            headers[name.strip()] = header_value.strip()
        elif kind == b"Expect":
            expects.append(line)
        elif kind == b"SkipUnless":
            skips.append(line)
    return headers, expects, skips


def holds(expr: str, env: dict[str, Any]) -> bool:
    try:
        return bool(eval(expr, {"feedparser": feedparser}, env))  # noqa: S307 - test data
    except Exception:
        return False


def entries_read(result: ParsedFeed) -> int:
    """Entries parse_feed read: items kept plus entries skipped for want of an identity."""
    seen = len(result.items)
    for warning in result.warnings:
        m = re.match(
            r"(\d+) entr(?:y|ies) (?:without link or id skipped|with a repeated key)", warning
        )
        if m:
            seen += int(m[1])
    return seen


@dataclass
class Reading:
    """What feedparser makes of a file, and whether its Expect lines hold for that."""

    result: Any  # feedparser's FeedParserDict
    readable: bool  # the SkipUnless guards and every Expect line hold
    expects: list[str]

    @property
    def entries(self) -> int:
        return len(self.result.entries)

    @property
    def names_entries(self) -> bool:
        """An Expect line looks into an entry: at least one must be read."""
        return any("entries[" in e for e in self.expects)

    @property
    def is_feed(self) -> bool:
        return bool(self.result.entries or self.result.get("version"))


def feedparser_reading(
    body: bytes, headers: dict[str, str], expects: list[str], skips: list[str]
) -> Reading:
    theirs = feedparser.parse(
        io.BytesIO(body), response_headers={k.lower(): v for k, v in headers.items()}
    )
    applicable = all(holds(s, {}) for s in skips)
    readable = applicable and all(holds(e, dict(theirs)) for e in expects)
    return Reading(theirs, readable, expects)


def check_reading(ours: ParsedFeed, reading: Reading) -> None:
    """Our reading against feedparser's: classified, as many entries where feedparser's
    own expectation says the feed is readable, and a feed where it sees one."""
    assert ours.outcome in OUTCOMES, ours.outcome
    if reading.readable and reading.entries:
        assert entries_read(ours) == reading.entries, ours.warnings
    if reading.names_entries:
        assert entries_read(ours) >= 1, ours.warnings
    if reading.is_feed:
        assert ours.outcome != "not-a-feed", ours.warnings
