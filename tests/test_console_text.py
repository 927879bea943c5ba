"""What the console's pages show as text: followable links, marked hits (pure)."""

from __future__ import annotations

import pytest

from monitor.web.text import Text, followable, marked


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://www.rfi.fr/cn/a", "https://www.rfi.fr/cn/a"),
        ("HTTP://example.org/", "HTTP://example.org/"),
        ("javascript:alert(1)", None),
        (" JavaScript:alert(1)", None),
        ("data:text/html,<script>alert(1)</script>", None),
        ("vbscript:msgbox", None),
        ("//evil.example/", None),
        ("http:///no-host", None),
        ("", None),
        (None, None),
    ],
)
def test_only_http_and_https_links_are_followable(url: str | None, shown: str | None) -> None:
    assert followable(url) == shown


@pytest.mark.parametrize(
    ("snippet", "keywords", "html"),
    [
        ("中俄关系", ["中俄"], "<mark>中俄</mark>关系"),
        # Traditional text, Simplified keyword: the snippet's own characters are marked.
        ("烏克蘭戰爭", ["乌克兰"], "<mark>烏克蘭</mark>戰爭"),
        (
            "<script>x</script> 乌克兰",
            ["乌克兰"],
            "&lt;script&gt;x&lt;/script&gt; <mark>乌克兰</mark>",
        ),
        ("ＡＩ and AI", ["ai"], "<mark>ＡＩ</mark> and <mark>AI</mark>"),
        ("{{ 7*7 }}", [], "{{ 7*7 }}"),
        ("a & b", ["zzz"], "a &amp; b"),
    ],
)
def test_hits_are_marked_and_everything_else_escaped(
    snippet: str, keywords: list[str], html: str
) -> None:
    assert str(marked(snippet, keywords)) == html


def test_times_in_the_configured_zone_and_language() -> None:
    t = Text("zh", "Asia/Shanghai")
    assert t.time(1_700_000_000_000) == "2023-11-15 06:13"
    assert t("Alerts") == "警报" and Text("en", "UTC")("Alerts") == "Alerts"
    assert t.time(None) == "从未"
