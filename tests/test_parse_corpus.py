"""feedparser's own ill-formed and encoding test feeds (../shared/corpus/feedparser/tests)
through parse_feed.

Each file's header comment names the response headers (``Header:``) and what feedparser
must see (``Expect:``, a Python expression over feedparser's result). We evaluate the
Expect line against feedparser's own result: where it holds and feedparser finds
entries, parse_feed must read as many entries. Where the line names an encoding, our
decoding must give the same text as that encoding. Skipped when the corpus is absent,
failed instead under CI=true.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import feedparser
import pytest

from monitor.parse import decode_body, parse_feed
from monitor.types import Item

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "corpus" / "feedparser" / "tests"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
NOW = 1_700_000_000_000
OUTCOMES = {"ok", "ok-with-warnings", "not-a-feed", "empty"}


def _files() -> list[Path | None]:
    if not CORPUS.is_dir():
        return [None]  # one test that skips, or fails under CI
    return sorted(p for folder in ("illformed", "encoding")
                  for p in (CORPUS / folder).rglob("*") if p.is_file())


def _corpus_file(path: Path | None) -> Path:
    if path is None:
        if IN_CI:
            pytest.fail(f"{CORPUS} is missing; under CI=true the corpus tests must run")
        pytest.skip(f"{CORPUS} not present (the corpus sits beside the repository)")
    return path


_FIELD = re.compile(rb"^\s*(Header|Expect|SkipUnless|Description):\s*(.*?)\s*$", re.M)


def _meta(body: bytes) -> tuple[dict[str, str], list[str], list[str]]:
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


def _holds(expr: str, env: dict[str, Any]) -> bool:
    try:
        return bool(eval(expr, {"feedparser": feedparser}, env))  # noqa: S307 - test data
    except Exception:
        return False


def _entries_read(result: Any) -> int:
    """Entries parse_feed read: items kept plus entries skipped for want of an identity."""
    seen = len(result.items)
    for warning in result.warnings:
        m = re.match(r"(\d+) entr(?:y|ies) (?:without link or id skipped|with a repeated key)",
                     warning)
        if m:
            seen += int(m[1])
    return seen


def _label(path: Path | None) -> str:
    return "absent" if path is None else str(path.relative_to(CORPUS))


@pytest.mark.corpus
@pytest.mark.parametrize("path", _files(), ids=_label)
def test_corpus_feed_is_read_like_feedparser(path: Path | None) -> None:
    path = _corpus_file(path)
    body = path.read_bytes()
    headers, expects, skips = _meta(body)
    assert expects, f"{path.name}: no Expect line found"

    ours = parse_feed(body, headers, "corpus", NOW)
    assert ours.outcome in OUTCOMES
    assert all(isinstance(i, Item) and i.key for i in ours.items)

    theirs = feedparser.parse(io.BytesIO(body),
                              response_headers={k.lower(): v for k, v in headers.items()})
    applicable = all(_holds(s, {}) for s in skips)
    readable = applicable and all(_holds(e, dict(theirs)) for e in expects)
    if readable and theirs.entries:
        assert _entries_read(ours) == len(theirs.entries), ours.warnings
    if any("entries[" in e for e in expects):
        assert _entries_read(ours) >= 1, ours.warnings
    if theirs.entries or theirs.get("version"):
        assert ours.outcome != "not-a-feed", ours.warnings


def _expected_encoding(expects: list[str]) -> str | None:
    for expr in expects:
        m = re.search(r"encoding == '([^']+)'", expr)
        if m:
            return m[1]
    return None


@pytest.mark.corpus
@pytest.mark.parametrize("path", _files(), ids=_label)
def test_corpus_body_decodes_as_its_expect_line_says(path: Path | None) -> None:
    path = _corpus_file(path)
    body = path.read_bytes()
    headers, expects, _ = _meta(body)
    encoding = _expected_encoding(expects)
    if encoding is None or "bozo_invalid" in path.name:
        return  # nothing stated (or the bytes are invalid on purpose)
    try:
        want = body.decode(encoding).lstrip("\ufeff")
    except (UnicodeDecodeError, LookupError):
        return  # the stated encoding does not hold for the bytes themselves
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    assert decode_body(body, content_type).text.lstrip("\ufeff") == want
