"""OPML import and export: folders, duplicates, slugs, safety, clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from monitor.archive.opml import OpmlError, feed_slug, feeds_to_opml, feeds_to_yaml, opml_to_feeds
from monitor.config import FeedConfig
from monitor.errors import MonitorError

FIXTURES = Path(__file__).parent / "fixtures" / "opml"


def load(name: str, existing_ids: tuple[str, ...] = ()) -> list[dict[str, object]]:
    return opml_to_feeds((FIXTURES / name).read_bytes(), name, existing_ids)


def test_nested_outlines_give_feeds_with_folder_paths() -> None:
    feeds = load("nested.opml")
    assert [(f["id"], f["url"], f["title"], f["categories"]) for f in feeds] == [
        ("rfi", "https://www.rfi.fr/cn/rss", "RFI 中文 (简体)", ["News/中文", "Watch list"]),
        ("rfi-2", "https://www.rfi.fr/tw/rss", "RFI 中文 (繁體)", ["News/中文"]),
        ("zaobao", "https://www.zaobao.com.sg/rss/realtime/china", "联合早报", ["News/中文"]),
        (
            "bbc-news-world",
            "http://feeds.bbci.co.uk/news/world/rss.xml",
            "BBC News - World",
            ["News/World & Europe"],
        ),
        (
            "lemonde",
            "https://www.lemonde.fr/international/rss_full.xml",
            None,
            ["News/World & Europe"],
        ),
        (
            "le-monde-fr-actualites",
            "http://www.lemonde.fr/rss/une.xml",
            "Le Monde.fr - Actualités",
            [],
        ),
    ]


def test_duplicate_url_in_another_spelling_is_one_feed_named_in_both_folders() -> None:
    feeds = load("nested.opml")
    rfi_cn = [f for f in feeds if "rfi.fr" in str(f["url"]) and "/cn/" in str(f["url"])]
    # http://www.rfi.fr//cn/rss?utm_source=opml is the same feed as the first listing.
    assert len(rfi_cn) == 1
    assert rfi_cn[0]["url"] == "https://www.rfi.fr/cn/rss"
    assert rfi_cn[0]["categories"] == ["News/中文", "Watch list"]


def test_plain_link_outlines_are_not_feeds() -> None:
    assert all("example.org/page" not in str(f["url"]) for f in load("nested.opml"))


def test_ids_avoid_existing_config_ids() -> None:
    ids = [f["id"] for f in load("nested.opml", existing_ids=("rfi", "zaobao"))]
    assert ids[:3] == ["rfi-2", "rfi-3", "zaobao-2"]
    assert len(set(ids)) == len(ids)


def test_gbk_encoded_file_is_decoded() -> None:
    assert load("gbk.opml") == [
        {
            "id": "zaobao",
            "url": "https://www.zaobao.com.sg/rss/realtime/china",
            "title": "联合早报 即时",
            "categories": ["新闻"],
        }
    ]


@pytest.mark.parametrize(
    ("name", "line", "expected"),
    [
        ("malformed.opml", 7, "not well-formed XML: mismatched tag"),
        ("not-opml.xml", 2, "expected an <opml> document, found <rss>"),
        ("entities.opml", 3, "entity declarations and external entities are not allowed"),
        ("bad-scheme.opml", 5, "outline 'Old FTP feed' has xmlUrl 'ftp://example.org/feed.xml'"),
    ],
)
def test_bad_files_name_the_file_and_line(name: str, line: int, expected: str) -> None:
    with pytest.raises(OpmlError) as info:
        load(name)
    assert str(info.value).startswith(f"{name}:{line}: ")
    assert expected in str(info.value)
    assert isinstance(info.value, MonitorError)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "not well-formed XML"),
        (b"<opml version='2.0'><head/></opml>", "has no <body>"),
        (b"<?xml version='1.0' encoding='x-nonsense'?><opml/>", "unknown encoding 'x-nonsense'"),
        (b"<!DOCTYPE x SYSTEM 'file:///etc/passwd'><opml><body>&ext;</body></opml>", "not allowed"),
        (
            b"<!DOCTYPE opml [<!ENTITY ext SYSTEM 'file:///etc/passwd'>]>"
            b"<opml><body><outline text='&ext;' xmlUrl='https://x.org/'/></body></opml>",
            "not allowed",
        ),
    ],
)
def test_unusable_documents_are_errors(data: bytes, expected: str) -> None:
    with pytest.raises(OpmlError, match=re.escape(expected)):
        opml_to_feeds(data, "in.opml")


def test_feed_scheme_doctype_without_entities_and_feeds_inside_feeds() -> None:
    data = (
        b"<!DOCTYPE opml><opml><body>"
        b"<outline text='a' xmlUrl='feed:https://x.org/rss'>"
        b"<outline text='Inner' xmlUrl='https://y.org/rss'/></outline></body></opml>"
    )
    assert [(f["id"], f["url"], f["categories"]) for f in opml_to_feeds(data, "f.opml")] == [
        ("x", "https://x.org/rss", []),
        ("inner", "https://y.org/rss", []),
    ]


def test_empty_body_gives_no_feeds() -> None:
    assert opml_to_feeds(b"<opml version='2.0'><body/></opml>", "e.opml") == []
    assert feeds_to_yaml([]) == "feeds: []\n"


@pytest.mark.parametrize(
    ("title", "url", "taken", "expected"),
    [
        ("RFI 中文 (简体)", "https://www.rfi.fr/cn/rss", (), "rfi"),
        ("RFI 中文 (简体)", "https://www.rfi.fr/cn/rss", ("rfi", "rfi-2"), "rfi-3"),
        ("联合早报", "https://www.zaobao.com.sg/rss", (), "zaobao"),
        (None, "http://feeds.bbci.co.uk/news/rss.xml", (), "bbci"),
        ("", "https://news.google.com/rss", (), "news-google"),
        ("", "http://127.0.0.1:8080/feed.xml", (), "127-0-0-1"),
        ("Économie & Société", "https://x.fr/rss", (), "economie-societe"),
        (
            "A very long title that goes on and on past the limit",
            "https://x/",
            (),
            "a-very-long-title-that-goes-on",
        ),
    ],
)
def test_feed_slug(title: str | None, url: str, taken: tuple[str, ...], expected: str) -> None:
    slug = feed_slug(title, url, taken)
    assert slug == expected
    assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", slug)


def test_printed_yaml_is_valid_config_with_folders_as_comments() -> None:
    feeds = load("nested.opml")
    text = feeds_to_yaml(feeds)
    assert "  # News/中文; Watch list\n  - id: rfi\n" in text
    assert "  # (no folder)\n  - id: le-monde-fr-actualites\n" in text
    loaded = yaml.safe_load(text)["feeds"]
    assert [d["id"] for d in loaded] == [f["id"] for f in feeds]
    assert "title" not in loaded[4]  # the untitled Le Monde feed
    configs = [FeedConfig(**d) for d in loaded]
    assert configs[0].title == "RFI 中文 (简体)"
    assert configs[3].url == "http://feeds.bbci.co.uk/news/world/rss.xml"


def test_yaml_quotes_titles_that_would_not_read_back() -> None:
    feeds = [{"id": "x", "url": "https://x.org/rss", "title": "yes: no # [1]", "categories": []}]
    assert yaml.safe_load(feeds_to_yaml(feeds))["feeds"][0]["title"] == "yes: no # [1]"


def test_export_then_import_keeps_urls_and_titles() -> None:
    configured = [
        ("rfi-cn", "https://www.rfi.fr/cn/rss", "RFI 中文 (简体)"),
        ("quotes", "https://x.org/rss?a=1&b=2", 'Tom & "Jerry" <b>'),
        ("untitled", "https://y.org/feed", None),
    ]
    text = feeds_to_opml(configured)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<opml version="2.0">')
    back = opml_to_feeds(text.encode("utf-8"), "export.opml")
    assert [(f["url"], f["title"]) for f in back] == [
        ("https://www.rfi.fr/cn/rss", "RFI 中文 (简体)"),
        ("https://x.org/rss?a=1&b=2", 'Tom & "Jerry" <b>'),
        ("https://y.org/feed", "untitled"),  # text falls back to the id
    ]


def test_export_drops_characters_xml_cannot_hold() -> None:
    text = feeds_to_opml([("a", "https://x.org/rss", "bell\x07 here")])
    assert opml_to_feeds(text.encode(), "x.opml")[0]["title"] == "bell here"
