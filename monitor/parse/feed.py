"""parse_feed: one response body to a ParsedFeed, choosing the reader (the fast lxml one
where it can, JSON Feed, else feedparser). Pure: no network, no files."""

from __future__ import annotations

from collections.abc import Mapping

from monitor.parse.build import RawFeed, build
from monitor.parse.decode import header, prepare, utf8_as_is, utf8_warnings
from monitor.parse.fallback import read_with_feedparser
from monitor.parse.jsonfeed import looks_like_json, read_json_feed
from monitor.parse.links import document_base
from monitor.parse.xml import Decline, read_xml
from monitor.types import ParsedFeed, PollOutcome


def parse_feed(
    body: bytes, headers: Mapping[str, str], feed_id: str, now_ms: int, base_url: str = ""
) -> ParsedFeed:
    """Parse one response body into Items.

    ``headers`` are the response headers (any case); their Content-Type charset is
    honoured when it fits the body. Relative links resolve as feedparser resolves them:
    against xml:base, then against ``base_url`` (the feed's URL after redirects) joined
    with the Content-Location header. Never raises on bad input: the outcome says what
    the body was, and an entry with a malformed link is kept by its id (or skipped) with
    a warning.
    Summary and content are HTML as published (not sanitised): store them as data and
    strip tags before showing or matching them.
    """
    read = read_feed(body, headers)
    if isinstance(read, ParsedFeed):
        return read
    return build(read, feed_id, now_ms, document_base(base_url, headers))


def read_feed(body: bytes, headers: Mapping[str, str]) -> RawFeed | ParsedFeed:
    """What the chosen reader found in a body, before identity and normalisation; the
    ParsedFeed of an empty body or one that is no feed."""
    if not body.strip():
        return ParsedFeed(PollOutcome.EMPTY, (), ("empty body",))
    content_type = header(headers, "content-type")
    as_is = utf8_as_is(body) and not looks_like_json(body, content_type)
    if as_is:
        # The common case, UTF-8 without BOM: lxml gets the bytes before they are decoded
        # (a tenth of the parse), and rejects what is not UTF-8 as Python's decoder does
        # (tests/test_parse.py), so a body it takes is one decode_body reads as UTF-8.
        try:
            feed = read_xml(body)
        except Decline:
            pass
        else:
            feed.warnings[:0] = utf8_warnings(body, content_type)
            return feed
    decoded, xml, content_type = prepare(body, headers)
    if looks_like_json(body, content_type):
        json_feed = read_json_feed(decoded.text)
        if json_feed is not None:
            json_feed.warnings[:0] = decoded.warnings
            return json_feed
        if "json" in content_type.lower():
            return ParsedFeed(
                PollOutcome.NOT_A_FEED, (), ("JSON but not a JSON Feed", *decoded.warnings)
            )
    if not (as_is and xml is body):  # else lxml has just declined these very bytes
        try:
            feed = read_xml(xml)
        except Decline:
            pass
        else:
            feed.warnings[:0] = decoded.warnings
            return feed
    return read_with_feedparser(xml, decoded, headers, content_type)
