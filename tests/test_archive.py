"""The <!--ms--> archive format: byte-exact round trips, item conversion, errors, corpus."""

from __future__ import annotations

import csv
import html
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.archive.files import iter_archive_paths, read_archive_file, write_item
from monitor.archive.format import (
    ArchiveEntry,
    ArchiveError,
    archive_filename,
    entry_to_item,
    escape_title,
    format_archive,
    item_to_entry,
    parse_archive,
)
from monitor.errors import MonitorError
from monitor.items import canonical_url
from tests.support import factories

FIXTURES = Path(__file__).parent / "fixtures" / "archive"
GOOD = sorted((FIXTURES / "good").rglob("*.md"))
REPO_ROOT = Path(__file__).resolve().parents[1]
URL = "https://www.rfi.fr/cn/a"


def shared_dir() -> Path:
    """../shared beside the repo: skipped in a user's clone, required under CI=true."""
    shared = REPO_ROOT.parent / "shared"
    if not shared.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the shared data folder {shared} is missing")
        pytest.skip(f"shared data folder {shared} not present")
    return shared


# --- fixtures in the repository -------------------------------------------------------------


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_fixture_reads_and_writes_back_the_same_bytes(path: Path) -> None:
    entry = read_archive_file(path)
    assert format_archive(entry).encode("utf-8") == path.read_bytes()


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_fixture_item_round_trip_gives_the_same_entry(path: Path) -> None:
    entry = read_archive_file(path)
    item = entry_to_item(entry, "rfi-cn")
    # Items always get written with a final line break, as every corpus file has one.
    assert item_to_entry(item, entry.front_matter) == replace(entry, final_newline=True)


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_item_written_to_a_file_reads_back_as_the_same_item(path: Path, tmp_path: Path) -> None:
    item = entry_to_item(read_archive_file(path), "rfi-cn")
    assert write_item(tmp_path, item)
    out = tmp_path / archive_filename(item)
    assert entry_to_item(read_archive_file(out), "rfi-cn") == item


def test_entities_in_title_are_decoded_for_the_item_but_kept_raw_in_the_entry() -> None:
    entry = read_archive_file(FIXTURES / "good" / "1000001-entities.md")
    assert entry.title == "北京与莫斯科建立针对西方的&quot;特殊&quot;关系"
    item = entry_to_item(entry, "rfi-cn")
    assert item.title == '北京与莫斯科建立针对西方的"特殊"关系'
    assert item.published_ms == 1679494503000
    assert item.feed_id == "rfi-cn"
    assert item.content.startswith("<div>22/03/2023 - 15:10</div>")
    assert item.key == canonical_url(entry.url)


def test_brackets_and_parentheses_in_title_and_url() -> None:
    entry = read_archive_file(FIXTURES / "good" / "1000002-brackets.md")
    assert entry.title == "[冷戰物語]香港「送中」(上) [附錄](草稿)"
    assert entry.url == "https://matters.news/@someone/%25E5%2586%25B7-example?x=(1)"


def test_raw_ampersand_in_title_stays_raw_and_url_keeps_its_mirror_form() -> None:
    entry = read_archive_file(FIXTURES / "good" / "1000003-same-stamp.md")
    item = entry_to_item(entry, "rfi-cn")
    assert item.title == entry.title == "柳向阳&王家新谈诗 - 要闻解说"
    # The URL is stored as written; only the key is canonical.
    assert item.url.startswith("http://www.rfi.fr//cn/")
    assert item.key == "https://www.rfi.fr/cn/%E4%B8%AD%E5%9B%BD/20230322-same-stamp"


def test_front_matter_is_kept_and_gives_author_and_categories() -> None:
    path = FIXTURES / "good" / "jekyll" / "2023-02-24-ukraine-taiwan.md"
    entry = read_archive_file(path)
    assert entry.front_matter is not None
    assert entry.front_matter.startswith("---\nlayout: post\n")
    assert entry.front_matter.endswith("categories: [ 燕京书评 ]\n---\n")
    item = entry_to_item(entry, "yanjing")
    assert item.title == "烏克蘭戰爭與台灣：一年之後"
    assert item.author == "燕京书评"
    assert item.categories == ("燕京书评",)
    assert item.content.count("\n") == 4
    assert item.content.endswith("</div>")


def test_body_without_final_newline_is_written_back_without_one() -> None:
    path = FIXTURES / "good" / "1000004-no-final-newline.md"
    entry = read_archive_file(path)
    assert entry.final_newline is False
    assert entry.body == "<p>last line</p>"
    assert not format_archive(entry).endswith("\n")


def test_items_sharing_a_timestamp_stay_distinct() -> None:
    items = [
        entry_to_item(read_archive_file(FIXTURES / "good" / name), "rfi-cn")
        for name in ("1000001-entities.md", "1000002-brackets.md", "1000003-same-stamp.md")
    ]
    assert {i.published_ms for i in items} == {1679494503000}
    assert len({i.key for i in items}) == 3
    assert len({archive_filename(i) for i in items}) == 3


# --- the format in memory ------------------------------------------------------------------

BASIC = "<!--1679494503000-->\n[t](https://example.org/a)\n------\n\n<p>b</p>\n"


@pytest.mark.parametrize(
    "text",
    [
        BASIC,
        BASIC.replace("\n", "\r\n"),
        BASIC + "\n",  # body ending in a blank line
        BASIC[:-1],  # no final newline
        "<!--0-->\n[](x)\n------\n\n",  # empty title and body, non-HTTP URL
        "---\n---\n" + BASIC,  # empty front matter
        "---\r\na: 1\r\n---\r\n\r\n" + BASIC.replace("\n", "\r\n"),  # blank line after it
        "<!--1-->\n[a](b)](c)\n------\n\nx\n<!--2-->\n[d](e)\n------\n\ny",  # "](" in title
        "<!--1-->\n[a\rb](u)\n------\n\n",  # a stray CR in an LF file
        "<!---86400000-->\n[1969](u)\n------\n\n",  # before 1970
        f"<!--{-(2**63)}-->\n[t](u)\n------\n\n",  # the smallest stamp a database holds
    ],
    ids=[
        "lf",
        "crlf",
        "trailing-blank",
        "no-final-newline",
        "minimal",
        "empty-fm",
        "crlf-fm-blank",
        "link-in-title",
        "stray-cr",
        "negative",
        "int64-min",
    ],
)
def test_parse_then_format_is_byte_exact(text: str) -> None:
    assert format_archive(parse_archive(text)) == text


def test_title_split_uses_the_last_link_bracket() -> None:
    entry = parse_archive("<!--1-->\n[a](b)](c)\n------\n\n")
    assert (entry.title, entry.url) == ("a](b)", "c")


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("# Notes\n", 1, "expected the timestamp comment <!--epoch ms-->, found '# Notes'"),
        ("", 1, "found the end of the file"),
        ("\ufeff" + BASIC, 1, "byte-order mark"),
        ("<!-- 1679494503000 -->\n", 1, "expected the timestamp comment"),
        ("<!--01679494503000-->\n", 1, "leading zeros"),
        ("<!---0-->\n", 1, "leading zeros"),
        ("<!---01-->\n", 1, "leading zeros"),
        (f"<!--{2**63}-->\n", 1, "out of range"),
        ("<!--" + "9" * 5000 + "-->\n", 1, "out of range"),
        ("<!--1-->\n", 2, "expected the link line [title](url), found the end of the file"),
        ("<!--1-->\ntitle https://x\n", 2, "expected the link line [title](url), found 'title"),
        ("<!--1-->\n[t]()\n", 2, "empty URL"),
        ("<!--1-->\n[t](u)\n-----\n\nb", 3, "expected the separator line ------, found '-----'"),
        ("<!--1-->\n[t](u)\n------\n", 4, "expected a blank line before the body, found the end"),
        ("<!--1-->\n[t](u)\n------\n<p>b</p>\n", 4, "expected a blank line before the body"),
        ("---\ntitle: x\n<!--1-->\n", 1, "never closed"),
        ("---\ntitle: [x\n---\n" + BASIC, 2, "not valid YAML"),
        ("---\n- a\n---\n" + BASIC, 1, "must be a YAML mapping"),
        ("---\na: 1\n---\nnot a stamp\n", 4, "expected the timestamp comment"),
    ],
)
def test_malformed_text_names_source_line_and_expectation(
    text: str, line: int, expected: str
) -> None:
    with pytest.raises(ArchiveError) as info:
        parse_archive(text, "feeds/x.md")
    assert info.value.source == "feeds/x.md"
    assert info.value.line == line
    assert expected in str(info.value)
    assert str(info.value).startswith(f"feeds/x.md:{line}: ")
    assert isinstance(info.value, MonitorError)


@pytest.mark.parametrize(
    ("name", "line", "expected"),
    [
        ("not-an-item.md", 1, "not an archive file"),
        ("short-separator.md", 3, "expected the separator line"),
        ("unclosed-front-matter.md", 1, "never closed"),
    ],
)
def test_malformed_fixture_file_error_names_the_file(name: str, line: int, expected: str) -> None:
    path = FIXTURES / "bad" / name
    with pytest.raises(ArchiveError, match=expected) as info:
        read_archive_file(path)
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_non_utf8_file_is_an_archive_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.md"
    path.write_bytes(b"<!--1-->\n[caf\xe9](u)\n------\n\n")
    with pytest.raises(ArchiveError, match="not UTF-8") as info:
        read_archive_file(path)
    assert info.value.line == 2


def test_missing_file_is_an_archive_error(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="cannot read"):
        read_archive_file(tmp_path / "absent.md")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"title": "two\nlines"},
        {"url": ""},
        {"url": "https://x/a](b"},
        {"published_ms": 2**63},  # more than the database holds
        {"newline": "\r"},
        {"front_matter": "title: x\n"},
        {"front_matter": "---\ntitle: x\n"},
    ],
)
def test_entries_that_would_not_read_back_are_refused(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"published_ms": 1, "title": "t", "url": "https://x/a", "body": "b"}
    fields.update(kwargs)
    with pytest.raises(ArchiveError):
        ArchiveEntry(**fields)  # type: ignore[arg-type]


# --- writing items ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "raw"),
    [
        ('中俄"特殊"关系', "中俄&quot;特殊&quot;关系"),  # as the RFI mirror writes it
        ("柳向阳&王家新", "柳向阳&王家新"),  # a lone & stays raw, as in the archives
        ("AT&T", "AT&T"),
        ("&amp; literally", "&amp;amp; literally"),
        ("&copy2023", "&amp;copy2023"),  # html.unescape would read "&copy" without ";"
        ("&#39;", "&amp;#39;"),
        ("Hong Kong's [冷戰](物語)", "Hong Kong's [冷戰](物語)"),
        ("a\nb\rc", "a&#10;b&#13;c"),
    ],
)
def test_title_is_escaped_only_where_round_trip_needs_it(title: str, raw: str) -> None:
    assert escape_title(title) == raw
    assert html.unescape(raw) == title


@given(st.text())
def test_any_title_survives_escaping(title: str) -> None:
    assert html.unescape(escape_title(title)) == title


@given(
    title=st.text(),
    body=st.text().filter(lambda b: "\r" not in b),
    ms=st.integers(min_value=0, max_value=10**15),
    author=st.text(),
    categories=st.lists(st.text(min_size=1), unique=True).map(tuple),
)
def test_any_item_survives_write_and_read(
    title: str, body: str, ms: int, author: str, categories: tuple[str, ...]
) -> None:
    item = factories.item(
        URL, ms, title, "rfi-cn", content=body, author=author, categories=categories
    )
    back = entry_to_item(parse_archive(format_archive(item_to_entry(item))), "rfi-cn")
    assert back == item


def test_url_with_spaces_or_link_bracket_is_percent_escaped() -> None:
    entry = item_to_entry(factories.item("https://example.org/a b](c)\n"))
    assert entry.url == "https://example.org/a%20b%5D(c)%0A"
    assert parse_archive(format_archive(entry)).url == entry.url


def test_item_without_url_cannot_be_archived() -> None:
    with pytest.raises(ArchiveError, match="no URL"):
        item_to_entry(factories.item("", key="id:123"))


def test_body_falls_back_to_summary() -> None:
    assert item_to_entry(factories.item(URL, content="", summary="<p>s</p>")).body == "<p>s</p>"


def test_archive_filenames_sort_by_time() -> None:
    names = [
        archive_filename(factories.item(URL, ms, key=f"k{ms}"))
        for ms in (1679494503000, 999, 1000000000000)
    ]
    assert sorted(names) == [names[1], names[2], names[0]]
    assert names[1].startswith("0000000000999-") and names[1].endswith(".md")
    # Same key, another time (an update) gets another name; same item, same name.
    assert archive_filename(factories.item(URL)) == archive_filename(factories.item(URL))
    assert archive_filename(factories.item(URL)) != archive_filename(factories.item(URL, 1))


# --- finding files ---------------------------------------------------------------------------


def test_iter_archive_paths_expands_folders_globs_and_files(tmp_path: Path) -> None:
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "a" / ".git").mkdir()
    for rel in ("a/2.md", "a/deep/1.md", "a/.git/x.md", "a/notes.txt", "b.md", "c.md"):
        (tmp_path / rel).write_text("x")
    found = list(
        iter_archive_paths(
            [
                tmp_path / "a",
                str(tmp_path / "*.md"),
                tmp_path / "b.md",
            ]
        )
    )
    assert found == sorted(
        [
            tmp_path / "a" / "2.md",
            tmp_path / "a" / "deep" / "1.md",
            tmp_path / "b.md",
            tmp_path / "c.md",
        ]
    )


def test_iter_archive_paths_reports_missing_paths_and_empty_globs(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="no such file"):
        list(iter_archive_paths([tmp_path / "absent"]))
    with pytest.raises(ArchiveError, match="matches no files"):
        list(iter_archive_paths([str(tmp_path / "*.md")]))


def test_iter_archive_paths_over_fixtures_finds_every_good_file() -> None:
    assert list(iter_archive_paths([FIXTURES / "good"])) == GOOD
    assert len(GOOD) == 5


# --- the shared corpus and seed ---------------------------------------------------------------


def test_shared_data_skips_in_a_clone_but_fails_under_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "REPO_ROOT", tmp_path / "project")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        shared_dir()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        shared_dir()
    (tmp_path / "shared").mkdir()
    assert shared_dir() == tmp_path / "shared"


@pytest.mark.corpus
def test_seed_file_reads_and_writes_back_the_same_bytes() -> None:
    seed = shared_dir() / "seed" / "rfi-item-20230322.md"
    entry = read_archive_file(seed)
    assert format_archive(entry).encode("utf-8") == seed.read_bytes()
    item = entry_to_item(entry, "rfi-cn")
    assert item.title == '习近平结束访俄，北京与莫斯科建立针对西方的"特殊"关系'
    assert item.published_ms == 1679494503000


@pytest.mark.corpus
@pytest.mark.parametrize("folder", ["rfi", "oped2"])
def test_every_corpus_file_round_trips(folder: str) -> None:
    corpus = shared_dir() / "corpus" / folder
    with open(corpus / "MANIFEST.tsv", encoding="utf-8", newline="") as f:
        manifest = {row["id"]: row for row in csv.DictReader(f, delimiter="\t")}
    assert manifest, "empty MANIFEST.tsv"
    files = sorted(corpus.glob("*.md"))
    assert {p.stem for p in files} >= set(manifest)
    for path in files:
        if path.stem not in manifest:
            # SOURCE.md describes the folder; it must be refused, not misread.
            with pytest.raises(ArchiveError):
                read_archive_file(path)
            continue
        entry = read_archive_file(path)
        assert format_archive(entry).encode("utf-8") == path.read_bytes(), path
        item = entry_to_item(entry, folder)
        again = parse_archive(format_archive(item_to_entry(item, entry.front_matter)))
        assert again == entry, path
        assert entry_to_item(again, folder) == item, path
        row = manifest[path.stem]
        if "timestamp_ms" in row:
            assert entry.published_ms == int(row["timestamp_ms"]), path
            assert entry.url == row["url"], path
        if entry.front_matter is not None:
            assert f"\nfrom: {entry.url}\n" in entry.front_matter, path
