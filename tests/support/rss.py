"""RSS 2.0 documents shaped like RFI 中文's feeds, and plausible RFI-like items.

    items = rfi_like_items(20, start_ms=1679494503000)    # oldest first, deterministic
    server.set_feed("/cn/rss", rss_feed(reversed(items)))  # RFI lists newest first

The shape follows the mirror the archives came from (see ../shared/tools/serve-corpus):
``<title>``, ``<link>``, ``<guid>``, ``<pubDate>`` (RFC 822, GMT), ``<description>`` as
CDATA holding the item's HTML body on one line.

Titles. ``rss_item(title=...)`` takes the title as a reader should see it and escapes
it once for XML, so feedparser gives it back unchanged (as text/plain). The archives
store titles like ``…的&quot;特殊&quot;关系``: the source escaped the title for HTML and
then for XML (``&amp;quot;``), and feedparser hands that back as text/html still holding
``&quot;``. ``rfi_title_xml(title)`` writes that double-escaped form, and
``raw_title_xml`` puts any exact XML inside ``<title>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from xml.sax.saxutils import escape

from bench.support.articles import rfi_like_articles

RFI_CN_TITLE = "RFI - 中国"
RFI_CN_LINK = "https://www.rfi.fr/cn/"


def rfc822(ms: int) -> str:
    """``pubDate`` text for an epoch-milliseconds time: 'Wed, 22 Mar 2023 14:15:03 GMT'."""
    return format_datetime(datetime.fromtimestamp(ms / 1000, UTC), usegmt=True)


def cdata(text: str) -> str:
    """``text`` as CDATA; a literal ``]]>`` inside is split across two sections."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def rfi_title_xml(title: str) -> str:
    """The title escaped for HTML, then for XML, as RFI's source writes it.

    ``rfi_title_xml('北京的"特殊"关系')`` is ``北京的&amp;quot;特殊&amp;quot;关系``.
    """
    html_escaped = escape(title, {'"': "&quot;"})
    return escape(html_escaped)


def rss_item(
    title: str,
    link: str,
    description_html: str,
    pub_ms: int,
    guid: str | None = None,
    categories: Iterable[str] = (),
    *,
    raw_title_xml: str | None = None,
) -> str:
    """One ``<item>``. ``guid`` defaults to the link, as on RFI (a permalink)."""
    title_xml = raw_title_xml if raw_title_xml is not None else escape(title)
    guid_xml = (
        f"<guid>{escape(link)}</guid>"
        if guid is None or guid == link
        else f'<guid isPermaLink="false">{escape(guid)}</guid>'
    )
    cats = "".join(f"<category>{escape(c)}</category>" for c in categories)
    return (
        f"<item><title>{title_xml}</title><link>{escape(link)}</link>{guid_xml}"
        f"<pubDate>{rfc822(pub_ms)}</pubDate>{cats}"
        f"<description>{cdata(description_html)}</description></item>"
    )


@dataclass(frozen=True)
class FeedItem:
    """An item's fields, kept so tests can assert on what they served."""

    title: str
    link: str
    description_html: str
    pub_ms: int
    guid: str | None = None
    categories: tuple[str, ...] = ()
    raw_title_xml: str | None = None

    def to_xml(self) -> str:
        return rss_item(
            self.title,
            self.link,
            self.description_html,
            self.pub_ms,
            self.guid,
            self.categories,
            raw_title_xml=self.raw_title_xml,
        )


def rss_feed(
    items: Iterable[FeedItem | str],
    title: str = RFI_CN_TITLE,
    link: str = RFI_CN_LINK,
    description: str | None = None,
) -> str:
    """A complete RSS 2.0 document; items (FeedItem or ``<item>`` XML) in the order given.

    Returns text; FeedServer.set_feed encodes it as UTF-8 to match the declaration.
    """
    body = "".join(i.to_xml() if isinstance(i, FeedItem) else i for i in items)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>{escape(link)}</link>"
        f"<description>{escape(description if description is not None else title)}</description>"
        f"<language>zh-cn</language>{body}</channel></rss>"
    )


# RFI-like content ---------------------------------------------------------------------


def rfi_like_items(
    n: int,
    start_ms: int = 1679494503000,
    *,
    step_ms: int = 600_000,
    per_stamp: int = 1,
    seed: int = 20230322,
    rfi_escaped_titles: bool = False,
) -> list[FeedItem]:
    """``n`` plausible RFI 中文 items, oldest first, the same for the same arguments: the
    benchmarks' articles (bench/support/articles.py), as feed items.

    Times start at ``start_ms`` and grow by ``step_ms`` every ``per_stamp`` items, so
    ``per_stamp=5`` gives groups sharing one timestamp, as mirror archives do. Titles
    and links are unique. Two stories in twelve have ASCII double quotes in the title;
    with ``rfi_escaped_titles`` every title is written the double-escaped RFI way
    (``raw_title_xml=rfi_title_xml(title)``), so parsers meet ``&quot;``.
    """
    return [
        FeedItem(
            title=a.title,
            link=a.link,
            description_html=a.html,
            pub_ms=a.pub_ms,
            categories=(a.section,),
            raw_title_xml=rfi_title_xml(a.title) if rfi_escaped_titles else None,
        )
        for a in rfi_like_articles(n, start_ms, step_ms=step_ms, per_stamp=per_stamp, seed=seed)
    ]
