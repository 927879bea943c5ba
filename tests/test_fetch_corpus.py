"""feedparser's ill-formed and encoding corpora through our fetch-and-parse path.

Each of the files under ../shared/corpus/feedparser/tests/{illformed,encoding} is served
by a local FeedServer with the headers its ``Header:`` lines name (and no Content-Type
where it names none), fetched by Fetcher and parsed by parse_feed exactly as a poll does
(response headers and final URL included). Nothing may crash, every file must be
classified, and wherever feedparser's own expectation says the feed is readable we must
read as many entries as feedparser does (tests/support/corpus.py). Skipped when the
corpus is absent, failed instead under CI=true.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import shared_dir

from monitor.fetch import Fetcher, FetchLimits
from monitor.parse import parse_feed
from tests.support import FeedServer
from tests.support.corpus import (
    CORPUS,
    check_reading,
    corpus_files,
    feedparser_reading,
    label,
    meta,
)

NOW = 1_700_000_000_000


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    with FeedServer() as s:
        yield s


@pytest.fixture(scope="module")
def fetcher() -> Iterator[Fetcher]:
    f = Fetcher(FetchLimits(allowed_networks=("127.0.0.0/8",), deadline=10))
    yield f
    f.close()


def test_the_corpus_has_every_file() -> None:
    shared_dir("corpus", "feedparser", "tests")
    files = [p for p in corpus_files() if p is not None]
    assert len(files) == 101, len(files)


@pytest.mark.corpus
@pytest.mark.parametrize("path", corpus_files(), ids=label)
def test_corpus_file_fetched_and_parsed(
    path: Path | None, server: FeedServer, fetcher: Fetcher
) -> None:
    shared_dir("corpus", "feedparser", "tests")  # skips, or fails under CI, when absent
    assert path is not None
    body = path.read_bytes()
    headers, expects, skips = meta(body)
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    extra = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    route = "/" + path.relative_to(CORPUS).as_posix()
    server.set_feed(
        route, body, content_type=content_type, headers=extra, etag=False, last_modified=False
    )

    fetched = fetcher.fetch("corpus", server.url(route))
    assert fetched.status == 200 and fetched.body == body
    served = {k.lower(): v for k, v in fetched.headers.items()}
    assert served.get("content-type", "") == content_type

    ours = parse_feed(fetched.body, fetched.headers, "corpus", NOW, base_url=fetched.url)
    assert all(i.key for i in ours.items)
    check_reading(ours, feedparser_reading(body, headers, expects, skips))
