"""Test data built from the real records: items, articles, a rule-to-channels routing."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from monitor.items import canonical_url
from monitor.types import Item

T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC, the tests' "now" unless they say otherwise
# An article body as RFI's archive files hold them: quotes, an entity, markup.
ARTICLE_BODY = '<p>新闻 "引号" &amp; <b>正文</b></p>'


def item(
    url: str,
    ts: int = T0,
    title: str = "中俄关系",
    feed: str = "cn",
    *,
    content: str = "<p>正文</p>",
    key: str | None = None,
    **fields: Any,
) -> Item:
    """An item as a feed gives it, keyed by its canonical URL unless ``key`` says otherwise."""
    return Item(
        key=canonical_url(url) if key is None else key,
        url=url,
        title=title,
        published_ms=ts,
        feed_id=feed,
        content=content,
        **fields,
    )


def article(
    n: int, ts: int = T0, title: str | None = None, feed: str = "cn", *, content: str = ARTICLE_BODY
) -> Item:
    """RFI's article ``n`` with every field an archive file carries; its title and body
    hold characters that need escaping."""
    return item(
        f"https://www.rfi.fr/{feed}/{n}",
        ts,
        title or f'标题 "{n}" & 更多',
        feed,
        content=content,
        author="RFI",
        categories=("国际", "中国"),
    )


def route(
    by_rule: Mapping[str, Sequence[str]] | None = None, default: Sequence[str] = ("mail",)
) -> Callable[[str], list[str]]:
    """The channels of each rule, as the store asks for them when it enqueues alerts."""
    table = dict(by_rule or {})

    def channels(rule: str) -> list[str]:
        return list(table.get(rule, default))

    return channels
