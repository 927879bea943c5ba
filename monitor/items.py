"""Item identity: canonical URLs, dedupe keys, timestamps. Pure functions."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from w3lib.url import canonicalize_url

# Query parameters that only track the reader; they never change the article.
TRACKING_PARAMS = re.compile(r"^(utm_.*|xtor|at_.*|fbclid|gclid|mc_cid|mc_eid|_ga)$", re.I)
_SLASHES = re.compile(r"/{2,}")


def canonical_url(url: str) -> str:
    """The identity of an article's URL.

    http and https are folded (to https), the host is lower-cased, runs of ``/``
    in the path collapse to one, the fragment and tracking parameters go, and
    the path and query take one percent-encoding form, so ``%E4%B8%AD`` and
    ``中`` give the same key. Query parameters are sorted.
    """
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https", ""):
        scheme = "https"
    netloc = parts.netloc.lower()
    if netloc.endswith(":80") or netloc.endswith(":443"):
        netloc = netloc.rsplit(":", 1)[0]
    path = _SLASHES.sub("/", parts.path) or "/"
    query = urlencode(
        [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
         if not TRACKING_PARAMS.match(k)]
    )
    rebuilt = urlunsplit((scheme, netloc, path, query, ""))
    return canonicalize_url(rebuilt, keep_fragments=False)


def item_key(link: str | None, entry_id: str | None) -> str | None:
    """Dedupe key: the canonical link, else the entry id, else nothing."""
    if link and urlsplit(link.strip()).scheme.lower() in ("http", "https"):
        return canonical_url(link)
    if entry_id:
        ident = entry_id.strip()
        if urlsplit(ident).scheme.lower() in ("http", "https"):
            return canonical_url(ident)
        return f"id:{ident}"
    return None
