"""feedparser's own ill-formed and encoding test feeds (../shared/corpus/feedparser/tests)
through parse_feed.

Each file's header comment names the response headers (``Header:``) and what feedparser
must see (``Expect:``, a Python expression over feedparser's result). We evaluate the
Expect line against feedparser's own result: where it holds and feedparser finds
entries, parse_feed must read as many entries. Where the line names an encoding, our
decoding must give the same text as that encoding. Skipped when the corpus is absent,
failed instead under CI=true. tests/test_fetch_corpus.py runs the same files through
the fetcher first.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import shared_dir

from monitor.parse import decode_body, parse_feed
from monitor.types import Item
from tests.support.corpus import check_reading, corpus_files, feedparser_reading, label, meta

NOW = 1_700_000_000_000


def _corpus_file(path: Path | None) -> Path:
    shared_dir("corpus", "feedparser", "tests")  # skips, or fails under CI, when absent
    assert path is not None
    return path


@pytest.mark.corpus
@pytest.mark.parametrize("path", corpus_files(), ids=label)
def test_corpus_feed_is_read_like_feedparser(path: Path | None) -> None:
    path = _corpus_file(path)
    body = path.read_bytes()
    headers, expects, skips = meta(body)
    assert expects, f"{path.name}: no Expect line found"

    ours = parse_feed(body, headers, "corpus", NOW)
    assert all(isinstance(i, Item) and i.key for i in ours.items)
    check_reading(ours, feedparser_reading(body, headers, expects, skips))


def _expected_encoding(expects: list[str]) -> str | None:
    for expr in expects:
        m = re.search(r"encoding == '([^']+)'", expr)
        if m:
            return m[1]
    return None


@pytest.mark.corpus
@pytest.mark.parametrize("path", corpus_files(), ids=label)
def test_corpus_body_decodes_as_its_expect_line_says(path: Path | None) -> None:
    path = _corpus_file(path)
    body = path.read_bytes()
    headers, expects, _ = meta(body)
    encoding = _expected_encoding(expects)
    if encoding is None or "bozo_invalid" in path.name:
        return  # nothing stated (or the bytes are invalid on purpose)
    try:
        want = body.decode(encoding).lstrip("\ufeff")
    except (UnicodeDecodeError, LookupError):
        return  # the stated encoding does not hold for the bytes themselves
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    assert decode_body(body, content_type).text.lstrip("\ufeff") == want
