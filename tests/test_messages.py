"""What reaches people (issue #15, points 6-8): hostile item fields in alert messages.

Only http(s) URLs become links; item text is escaped for a markdown channel as for an
html one; fields are shortened to what each channel accepts and lose control and
bidi-override characters. Messages go through the real SMTP sink, the real webhook
receiver and the console channel; markdown is read by two real markdown renderers
(markdown-it, CommonMark; Python-Markdown, Apprise's converter for mail).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC
from html.parser import HTMLParser
from pathlib import Path

import markdown
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from monitor.backtest import Hit, format_hit
from monitor.deliver import ChannelSettings, Deliverer, DeliverySettings, build_channels
from monitor.deliver.sanitize import EMAIL_LINE_MAX, TITLE_MAX, wrap_lines
from monitor.deliver.templates import MessageTemplates, alert_context
from monitor.secrets import Masker
from monitor.store import Store
from monitor.types import AlertRow, Item, MatchingFunctions, RuleMatch, StoredItem
from tests.support import SmtpSink, WebhookReceiver
from tests.support.clock import FakeClock

T0 = 1_700_000_000_000
SETTINGS = DeliverySettings(
    max_attempts=8,
    max_age_s=86400,
    backoff_s=10,
    max_backoff_s=60,
    batch=100,
    parallel=1,
    lease_s=60,
)
# NUL, BEL, ESC (an ANSI colour), backspace, DEL, a C1 control, bidi overrides/isolates.
CONTROLS = "\x00\x07\x1b[31m\x08\x7f\x9b\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
BAD_URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(document.cookie)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
]


def alert(
    title: str = "中俄新闻",
    url: str = "https://www.rfi.fr/cn/x1",
    *,
    author: str = "",
    categories: tuple[str, ...] = (),
    snippet: str = "【中俄】新闻",
    feeds: tuple[str, ...] = ("cn",),
) -> AlertRow:
    item = Item(
        key=url,
        url=url,
        title=title,
        published_ms=T0,
        feed_id="cn",
        summary="<p>摘要</p>",
        author=author,
        categories=categories,
    )
    return AlertRow(
        id=1,
        rule="r",
        channel="ch",
        status="pending",
        attempts=0,
        keywords=("中俄",),
        snippet=snippet,
        created_ms=T0,
        item=item,
        feeds=feeds,
    )


def render(
    fmt: str,
    row: AlertRow,
    body: str | None = None,
    *,
    digest: bool = False,
    editions: list[dict[str, object]] | None = None,
) -> tuple[str, str]:
    templates = MessageTemplates("ch", fmt, "en", None, body)
    ctx = alert_context(row, {"cn": "RFI 中文"}, UTC, "ch", editions)
    out = templates.render_digest([ctx, ctx]) if digest else templates.render(ctx)
    return out.title, out.body


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.urls += [v or "" for n, v in attrs if n in ("href", "src")]


def links(html_text: str) -> _Links:
    parser = _Links()
    parser.feed(html_text)
    parser.close()
    return parser


def as_html(fmt: str, body: str) -> list[str]:
    """The body as HTML, as the receiving end shows it: markdown by both renderers."""
    if fmt == "html":
        return [body]
    return [MarkdownIt("commonmark").render(body), markdown.markdown(body)]


def visible(html_text: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", html_text)).split())


# -- 6: only http and https become links ---------------------------------------------

CUSTOM = {
    "html": '<a href="{{ item.url }}">{{ item.title }}</a> <img src="{{ item.url }}"> '
    '{% for e in editions %}<a href="{{ e.url }}">{{ e.feed }}</a>{% endfor %}',
    "markdown": "[{{ item.title }}]({{ item.url }}) ![i]({{ item.url }}) <{{ item.url }}> "
    "[ref][1]\n\n[1]: {{ item.url }}\n",
}


@pytest.mark.parametrize("fmt", ["html", "markdown"])
@pytest.mark.parametrize("bad", BAD_URLS)
def test_only_http_and_https_urls_become_links(fmt: str, bad: str) -> None:
    editions = [
        {"feed": "RFI 中文", "feeds": ["RFI 中文"], "url": bad},
        {"feed": "RFI 華語", "feeds": ["RFI 華語"], "url": "https://www.rfi.fr/tw/x1"},
    ]
    for body in (None, CUSTOM[fmt]):
        for digest in (False, True):
            _, out = render(fmt, alert("标题 title", bad), body, digest=digest, editions=editions)
            for shown in as_html(fmt, out):
                found = links(shown)
                assert all(u.startswith(("http://", "https://")) for u in found.urls), shown
                assert "标题 title" in visible(shown)  # the link's text stays, as text
    _, good = render(fmt, alert("标题", "https://www.rfi.fr/cn/a_(b)"))
    for shown in as_html(fmt, good):
        assert links(shown).urls[0] in (
            "https://www.rfi.fr/cn/a_(b)",
            "https://www.rfi.fr/cn/a_%28b%29",
        )


def test_a_link_a_template_writes_to_an_item_url_keeps_the_rest_of_the_html() -> None:
    body = (
        '<div style="color: red"><a href="{{ item.url }}" title="t">{{ item.title }}</a>'
        '<!-- note --> &amp; <br/><img src="{{ item.url }}" alt="x"></div>'
    )
    _, out = render("html", alert("T", "javascript:alert(1)"), body)
    assert out == ('<div style="color: red">T<!-- note --> &amp; <br/><img alt="x"></div>')


# -- 7: item fields escaped on markdown channels -------------------------------------

HOSTILE_TITLES = [
    "[click](http://x.example/phish)",
    "**bold** and _it_ and `code`",
    "<b>raw</b> <img src=x>",
    "# heading",
    "1986. a list item",
    "- a bullet",
    "> a quote",
    "![img](http://x/i.png)",
    "a\\*b\\",
    "&amp; &lt;entities&gt;",
    "<http://x.example/auto>",
    "[ref]: http://x",
    "中俄 [链接](http://x) 新闻",
]


@pytest.mark.parametrize("title", HOSTILE_TITLES)
def test_markdown_channels_show_item_text_as_text(title: str) -> None:
    body = (
        "{{ item.title }}\n\n**{{ item.title }}** by {{ item.author }} in "
        "{{ item.categories | join(', ') }}\n\n> {{ snippet }}\n"
    )
    row = alert(title, author=title, categories=(title,), snippet=title)
    plain = alert("plain", author="plain", categories=("plain",), snippet="plain")
    for template in (None, body):
        for digest in (False, True):
            _, out = render("markdown", row, template, digest=digest)
            _, benign = render("markdown", plain, template, digest=digest)
            for shown, expected in zip(
                as_html("markdown", out), as_html("markdown", benign), strict=True
            ):
                # The same markup as a plain title gives: the item added none.
                assert links(shown).tags == links(expected).tags, shown
                assert links(shown).urls == links(expected).urls, shown
                assert shown.count("<") == expected.count("<"), shown
                assert " ".join(title.split()) in visible(shown), shown


def test_html_channels_still_escape_item_text() -> None:
    _, out = render("html", alert("<script>alert(1)</script> & [x](http://y)"))
    assert "<script>" not in out and "&lt;script&gt;" in out


# -- 8: shortened to what each channel accepts; no controls or bidi overrides --------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'monitor.db'}")
    yield s
    s.close()


def enqueue(store: Store, channels: list[str], items: list[Item], now_ms: int) -> None:
    matching = MatchingFunctions(
        lambda item, feeds: [RuleMatch("r", ("中俄",), "【中俄】")], lambda rule: channels
    )
    stats = store.items.ingest("cn", items, now_ms, matching)
    assert stats.alerts == len(items) * len(channels)


def deliverer(store: Store, clock: FakeClock, channels: dict[str, tuple[str, str]]) -> Deliverer:
    masker = Masker()
    built = build_channels(
        {name: ChannelSettings(name, (url,), fmt) for name, (url, fmt) in channels.items()}, masker
    )
    return Deliverer(store.outbox, "test-owner", SETTINGS, built, masker, clock=clock)


def hostile_item(i: int, title: str) -> Item:
    url = f"https://www.rfi.fr/cn/hostile-{i}"
    return Item(
        key=url,
        url=url,
        title=title,
        published_ms=T0 + i,
        feed_id="cn",
        summary=f"<p>{CONTROLS}正文</p>",
        author=f"作者{CONTROLS}",
        categories=(f"类{CONTROLS}",),
    )


LONG_TITLES = [
    "中俄" * 500_000,  # a 1 MB title, Chinese
    "x" * 1_000_000,  # one word of 1 MB: nowhere to fold it
    "é" * 3000,
    "😀" * 3000,
    "a " * 5000 + "中" * 5000,
    f"中俄{CONTROLS}新闻\r\nSubject: forged\n标题",
]


@pytest.mark.parametrize("fmt", ["text", "html", "markdown"])
def test_long_and_hostile_titles_reach_mail_webhook_and_console_shortened_and_clean(
    store: Store,
    smtp_sink: SmtpSink,
    webhook_receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
    fmt: str,
) -> None:
    clock = FakeClock()
    enqueue(
        store,
        ["mail", "hook", "console"],
        [hostile_item(i, t) for i, t in enumerate(LONG_TITLES)],
        clock.now_ms(),
    )
    d = deliverer(
        store,
        clock,
        {
            "mail": (smtp_sink.apprise_url(to="a@example.org"), fmt),
            "hook": (webhook_receiver.apprise_url("/hook"), fmt),
            "console": ("console://", fmt),
        },
    )
    capsys.readouterr()
    stats = d.deliver_due()
    console = capsys.readouterr().out
    n = len(LONG_TITLES)
    assert (stats.sent, stats.failed, stats.dead) == (3 * n, 0, 0)  # mail too: no 500
    mails = smtp_sink.wait_for(n)
    hooks = webhook_receiver.wait_for(n)
    for mail in mails:
        assert len(mail.subject) <= TITLE_MAX and not FORBIDDEN.search(mail.subject)
        assert "forged" not in mail.message.keys()
        body = mail.html if fmt == "html" else mail.text
        assert body and not FORBIDDEN.search(body)
    for hook in hooks:
        title, body = hook.json["title"], hook.json["message"]
        assert len(title) <= TITLE_MAX and title.endswith(("…", "标题"))
        assert not FORBIDDEN.search(title) and not FORBIDDEN.search(body)
        assert len(body) < 5000
    assert not FORBIDDEN.search(console) and len(console) < 20 * 5000
    assert "[r] 中俄[31m新闻 Subject: forged 标题" in {h.json["title"] for h in hooks}


def test_an_email_subject_keeps_within_one_smtp_line_in_any_script(
    store: Store, smtp_sink: SmtpSink
) -> None:
    # Apprise does not fold the Subject header: its encoded form must fit in 998 octets.
    titles = ["中" * 250, "é" * 400, "😀" * 200, "?=_" * 100, "x" * 990, "中" * 100]
    clock = FakeClock()
    enqueue(store, ["mail"], [hostile_item(i, t) for i, t in enumerate(titles)], clock.now_ms())
    d = deliverer(store, clock, {"mail": (smtp_sink.apprise_url(to="a@example.org"), "text")})
    assert d.deliver_due().sent == len(titles)
    subjects = {m.subject for m in smtp_sink.wait_for(len(titles))}
    assert "[r] " + "中" * 100 in subjects  # short enough: whole
    assert all(len(s) <= TITLE_MAX for s in subjects)


def test_email_body_lines_are_at_most_998_octets() -> None:
    long = "中" * 2000 + " " + "x" * 3000 + "\n" + "<p>" + "y " * 1000 + "</p>"
    wrapped = wrap_lines(long)
    assert all(len(line.encode()) <= EMAIL_LINE_MAX for line in wrapped.split("\n"))
    assert wrapped.replace("\n", "").replace(" ", "") == long.replace("\n", "").replace(" ", "")
    templates = MessageTemplates(
        "ch", "html", "en", None, "<p>{{ item.summary }}</p>" + "<i>z</i>" * 500, email=True
    )
    body = templates.render(alert_context(alert(), {}, UTC, "ch")).body
    assert all(len(line.encode()) <= EMAIL_LINE_MAX for line in body.split("\n"))


def test_test_rule_prints_item_fields_without_control_characters() -> None:
    row = alert(
        f"中俄{CONTROLS}新闻\nforged line",
        "https://www.rfi.fr/cn/x1\x1b[2J",
        snippet=f"【中俄】{CONTROLS}",
    )
    hit = Hit(StoredItem(1, row.item, ("cn\x07",)), RuleMatch("r", ("中俄",), row.snippet))
    printed = format_hit(hit)
    assert not FORBIDDEN.search(printed)
    assert len(printed.splitlines()) == 4  # time+title, URL, keywords, snippet


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([*"ab 中1.#-+*_`~[]()<>!&;\\|=:/\"'", "&amp;", "http://x", "&#x41;", "\n"]),
        max_size=30,
    ).map("".join)
)
def test_any_title_shows_as_its_text_on_a_markdown_channel(title: str) -> None:
    _, body = render("markdown", alert(title), "{{ item.title }}")
    shown = MarkdownIt("commonmark").render(body)
    expected = " ".join(title.split())
    if expected:
        assert re.fullmatch(r"<p>.*</p>\n", shown, re.S), shown
        assert html.unescape(shown[3:-5]) == expected
