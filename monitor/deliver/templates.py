"""Alert messages: Jinja2 templates for one alert and for a digest, in zh and en.

The context of a single alert (also each entry of ``alerts`` in a digest):

- ``item``: ``title``, ``url``, ``summary`` (plain text, shortened), ``author``,
  ``categories``
- ``rule``: the rule's name
- ``hits``: the keywords that matched (list)
- ``snippet``: up to 120 characters around the first hit, the hit marked
- ``feeds``: names of the feeds the item was seen in (list)
- ``published``: the item's publish time (an aware datetime, in the channel's time zone)
- ``channel``: the channel's name
- ``editions``: the story's editions, each ``{feed, feeds, url}``: the item itself
  first, then (for a rule with ``cross_edition``) the same story from other feeds,
  e.g. RFI's Traditional edition of a Simplified article; one entry otherwise
- ``revision``: 0, or how many times ``on_update: always`` alerted again for an update

A digest template gets ``alerts`` (a list of such contexts), ``count`` and ``channel``.
Item fields reach templates without control characters or bidi overrides, each on one
line and shortened (``monitor.deliver.sanitize``). Values are escaped for the body's
format: autoescaped in ``html``, markdown-escaped in ``markdown`` (URLs percent-encoded
where markdown would read them), as they are in ``text``. After rendering, only http(s)
URLs stay links, the title is shortened to a subject's length and a mail's lines to
998 octets. Titles are plain text on every service: never escaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from jinja2 import Environment, StrictUndefined, TemplateError

from monitor.deliver.sanitize import (
    CATEGORIES_MAX,
    WebUrl,
    clean_body,
    clean_title,
    escape_markdown,
    field,
    fields,
    is_email_channel,
    one_line,
    shorten,
)
from monitor.deliver.settings import ChannelSettings
from monitor.errors import ConfigError
from monitor.types import AlertRow

_TAGS = re.compile(r"<[^>]+>")

LABELS = {
    "en": {
        "feed": "Feed",
        "rule": "Rule",
        "keywords": "Keywords",
        "published": "Published",
        "digest": "{count} new alerts",
        "read": "Read",
        "editions": "Editions",
        "updated": "updated",
    },
    "zh": {
        "feed": "来源",
        "rule": "规则",
        "keywords": "关键词",
        "published": "发布时间",
        "digest": "{count} 条新提醒",
        "read": "阅读全文",
        "editions": "各版本",
        "updated": "更新",
    },
}

DEFAULT_TITLE = "[{{ rule }}] {% if revision %}({{ labels.updated }}) {% endif %}{{ item.title }}"
DEFAULT_DIGEST_TITLE = "{{ labels.digest.format(count=count) }} ({{ channel }})"

DEFAULT_BODY = {
    "text": (
        "{{ item.title }}\n{{ item.url }}\n\n"
        "{{ labels.feed }}: {{ feeds | join(', ') }}\n"
        "{{ labels.rule }}: {{ rule }}\n"
        "{{ labels.keywords }}: {{ hits | join(', ') }}\n"
        "{{ labels.published }}: {{ published.strftime('%Y-%m-%d %H:%M %Z') }}\n"
        "{% if editions | length > 1 %}{{ labels.editions }}:\n"
        "{% for e in editions %}  {{ e.feed }}: {{ e.url }}\n{% endfor %}{% endif %}"
        "{% if snippet %}\n{{ snippet }}\n{% endif %}"
    ),
    "markdown": (
        "**[{{ item.title }}]({{ item.url }})**\n\n"
        "- {{ labels.feed }}: {{ feeds | join(', ') }}\n"
        "- {{ labels.rule }}: {{ rule }}\n"
        "- {{ labels.keywords }}: {{ hits | join(', ') }}\n"
        "- {{ labels.published }}: {{ published.strftime('%Y-%m-%d %H:%M %Z') }}\n"
        "{% if editions | length > 1 %}- {{ labels.editions }}: "
        "{% for e in editions %}[{{ e.feed }}]({{ e.url }}){% if not loop.last %}, "
        "{% endif %}{% endfor %}\n{% endif %}"
        "{% if snippet %}\n> {{ snippet }}\n{% endif %}"
    ),
    "html": (
        '<p><a href="{{ item.url }}"><strong>{{ item.title }}</strong></a><br>'
        '<a href="{{ item.url }}">{{ item.url }}</a></p>'
        "<p>{{ labels.feed }}: {{ feeds | join(', ') }}<br>"
        "{{ labels.rule }}: {{ rule }}<br>"
        "{{ labels.keywords }}: {{ hits | join(', ') }}<br>"
        "{{ labels.published }}: {{ published.strftime('%Y-%m-%d %H:%M %Z') }}</p>"
        "{% if editions | length > 1 %}<p>{{ labels.editions }}:<br>"
        '{% for e in editions %}{{ e.feed }}: <a href="{{ e.url }}">{{ e.url }}</a><br>'
        "{% endfor %}</p>{% endif %}"
        "{% if snippet %}<blockquote>{{ snippet }}</blockquote>{% endif %}"
    ),
}

DEFAULT_DIGEST_BODY = {
    "text": (
        "{% for a in alerts %}{{ loop.index }}. {{ a.item.title }}\n   {{ a.item.url }}\n"
        "   {{ labels.rule }}: {{ a.rule }} · {{ labels.keywords }}: {{ a.hits | join(', ') }}"
        " · {{ a.published.strftime('%m-%d %H:%M') }}\n{% endfor %}"
    ),
    "markdown": (
        "{% for a in alerts %}{{ loop.index }}. **[{{ a.item.title }}]({{ a.item.url }})** "
        "({{ a.rule }}: {{ a.hits | join(', ') }}, {{ a.published.strftime('%m-%d %H:%M') }})\n"
        "{% endfor %}"
    ),
    "html": (
        '<ol>{% for a in alerts %}<li><a href="{{ a.item.url }}">{{ a.item.title }}</a><br>'
        '<a href="{{ a.item.url }}">{{ a.item.url }}</a><br>'
        "<small>{{ a.rule }}: {{ a.hits | join(', ') }} · "
        "{{ a.published.strftime('%m-%d %H:%M') }}</small></li>{% endfor %}</ol>"
    ),
}


@dataclass(frozen=True)
class Rendered:
    title: str
    body: str


def _plain(markup: str, limit: int = 300) -> str:
    return shorten(one_line(html.unescape(_TAGS.sub(" ", markup))), limit)


def alert_context(
    alert: AlertRow,
    feed_titles: Mapping[str, str],
    tz: tzinfo,
    channel: str,
    editions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    item = alert.item
    feeds = fields((feed_titles.get(f, f) for f in alert.feeds), "feed") or [
        field(item.feed_id, "feed")
    ]
    url = WebUrl(field(item.url, "url"))
    if editions is None:  # just the item itself
        editions = [{"feed": feeds[0], "feeds": feeds, "url": url}]
    else:
        editions = [
            {
                **e,
                "feed": field(str(e.get("feed", "")), "feed"),
                "feeds": fields(e.get("feeds", ()), "feed"),
                "url": WebUrl(field(str(e.get("url", "")), "url")),
            }
            for e in editions
        ]
    return {
        "item": {
            "title": field(item.title, "title"),
            "url": url,
            "summary": _plain(item.summary),
            "author": field(item.author, "author"),
            "categories": fields(item.categories, "category", CATEGORIES_MAX),
        },
        "rule": field(alert.rule, "keyword"),
        "hits": fields(alert.keywords, "keyword"),
        "snippet": field(alert.snippet, "snippet"),
        "feeds": feeds,
        "published": datetime.fromtimestamp(item.published_ms / 1000, UTC).astimezone(tz),
        "channel": channel,
        "editions": editions,
        "revision": alert.revision,
    }


class MessageTemplates:
    """A channel's compiled templates; compiling at config load catches errors early."""

    def __init__(
        self,
        channel: str,
        fmt: str,
        language: str,
        title: str | None,
        body: str | None,
        digest_title: str | None = None,
        digest_body: str | None = None,
        source: str | None = None,
        email: bool = False,
    ) -> None:
        self.channel = channel
        self.format = fmt
        self.email = email  # a mail goes out: subject and line lengths have limits
        self.labels = LABELS.get(language, LABELS["en"])
        env = Environment(
            autoescape=fmt == "html",
            undefined=StrictUndefined,
            keep_trailing_newline=False,
            finalize=escape_markdown if fmt == "markdown" else None,
        )
        # Titles are plain text on every service: never escaped.
        title_env = Environment(autoescape=False, undefined=StrictUndefined)
        try:
            self.title = title_env.from_string(title or DEFAULT_TITLE)
            self.body = env.from_string(body or DEFAULT_BODY[fmt])
            self.digest_title = title_env.from_string(digest_title or DEFAULT_DIGEST_TITLE)
            self.digest_body = env.from_string(digest_body or DEFAULT_DIGEST_BODY[fmt])
        except TemplateError as e:
            line = getattr(e, "lineno", None)
            raise ConfigError(
                f"template error: {e}",
                source,
                None,
                f"channels.{channel}" + (f" (template line {line})" if line else ""),
            ) from e

    @classmethod
    def for_channel(cls, channel: ChannelSettings, source: str | None = None) -> MessageTemplates:
        """The templates a channel's settings name (the defaults where they name none)."""
        return cls(
            channel.name,
            channel.body_format,
            channel.language,
            channel.title_template,
            channel.body_template,
            channel.digest_title_template,
            channel.digest_body_template,
            source,
            email=is_email_channel(channel.urls),
        )

    def render(self, ctx: Mapping[str, Any]) -> Rendered:
        return self._render(self.title, self.body, {**ctx, "labels": self.labels})

    def render_digest(self, contexts: Sequence[Mapping[str, Any]]) -> Rendered:
        ctx = {
            "alerts": list(contexts),
            "count": len(contexts),
            "channel": self.channel,
            "labels": self.labels,
        }
        return self._render(self.digest_title, self.digest_body, ctx)

    def _render(self, title: Any, body: Any, ctx: Mapping[str, Any]) -> Rendered:
        try:
            return Rendered(
                clean_title(title.render(ctx), email=self.email),
                clean_body(body.render(ctx), self.format, email=self.email).strip(),
            )
        except TemplateError as e:
            raise ConfigError(
                f"template error while rendering: {e}", None, None, f"channels.{self.channel}"
            ) from e
