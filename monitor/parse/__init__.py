"""Response body + headers -> ParsedFeed: classified outcome, Item records, warnings.

Pure: no network, no files. The body is decoded once (decode.py), so every reader sees
the same characters. Two XML readers share one item builder (build.py), so they give the
same Items: a fast lxml reader (xml.py) for well-formed RSS 2.0 / RSS 1.0 / Atom 1.0
without a DOCTYPE, the common case and the one that must be cheap, and feedparser
(fallback.py) for everything else (ill-formed XML, DOCTYPEs and entities, Atom 0.3,
CDF, ...). JSON Feed is read with ``json`` (jsonfeed.py). parse_feed (feed.py) chooses.
"""

from monitor.parse.decode import decode_body
from monitor.parse.fallback import parse_with_feedparser
from monitor.parse.feed import parse_feed
from monitor.parse.xml import parse_fast

__all__ = ["decode_body", "parse_fast", "parse_feed", "parse_with_feedparser"]
