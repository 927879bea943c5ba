"""``feed-monitor feeds import|export``: OPML in and out, the YAML config the one source."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from monitor.archive.opml import opml_to_feeds
from monitor.config import parse_config
from tests.daemon import write_config
from tests.support.cli import cli

FIXTURES = Path(__file__).parent / "fixtures" / "opml"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    # "rfi" is taken, and RFI's /cn feed is configured already (under another spelling).
    return write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "m.db",
        feeds=[
            {"id": "rfi", "url": "http://www.rfi.fr/cn/rss", "title": "RFI 简体"},
            {"id": "zaobao", "url": "https://www.zaobao.com.sg/rss/realtime/world"},
        ],
        channels={"c": "console://"},
        rules=[{"name": "r", "any": ["x"], "notify": ["c"]}],
    )


def test_import_prints_yaml_for_the_feeds_the_config_lacks(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(
        capsys, "feeds", "import", "-c", str(config), str(FIXTURES / "nested.opml")
    )
    assert code == 0
    # The OPML lists RFI /cn twice (one feed for opml_to_feeds); the config has it.
    assert err == "# skipped: https://www.rfi.fr/cn/rss is configured already as feed 'rfi'\n"
    added = yaml.safe_load(out)["feeds"]
    ids = [f["id"] for f in added]
    # New ids never clash with the configured ones ("rfi", "zaobao").
    assert ids == ["rfi-2", "zaobao-2", "bbc-news-world", "lemonde", "le-monde-fr-actualites"]
    assert added[0] == {
        "id": "rfi-2",
        "title": "RFI 中文 (繁體)",
        "url": "https://www.rfi.fr/tw/rss",
    }
    assert "  # News/中文\n" in out  # folders shown as comments
    # Pasted under the configured feeds, the result is a valid config.
    text = config.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    data["feeds"] += added
    loaded = parse_config(yaml.safe_dump(data, allow_unicode=True), "merged.yaml")
    assert [f.id for f in loaded.config.feeds] == ["rfi", "zaobao", *ids]


def test_import_errors_are_one_line_with_file_and_line(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(
        capsys, "feeds", "import", "-c", str(config), str(FIXTURES / "malformed.opml")
    )
    assert code == 1 and out == ""
    assert err.startswith(f"error: {FIXTURES / 'malformed.opml'}:") and err.count("\n") == 1
    code, _, err = cli(capsys, "feeds", "import", "-c", str(config), str(tmp_path / "no.opml"))
    assert code == 1
    assert err == f"error: {tmp_path / 'no.opml'}: cannot read: No such file or directory\n"
    code, _, err = cli(
        capsys, "feeds", "import", "-c", str(FIXTURES / "none.yaml"), str(FIXTURES / "nested.opml")
    )
    assert code == 2 and err == f"error: {FIXTURES / 'none.yaml'} file not found\n"


def test_export_writes_the_configured_feeds_as_opml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEED_TOKEN", "s3cr3t-token")
    config = write_config(
        tmp_path / "monitor.yaml",
        db=tmp_path / "m.db",
        feeds=[
            {"id": "rfi-cn", "title": "RFI 中文 (简体)", "url": "https://www.rfi.fr/cn/rss"},
            {
                "id": "private",
                "url": "https://news.example.org/rss?token=${FEED_TOKEN}",
                "enabled": False,
            },
        ],
        channels={"c": "console://"},
        rules=[{"name": "r", "any": ["x"], "notify": ["c"]}],
    )
    code, out, _ = cli(capsys, "feeds", "export", "-c", str(config))
    assert code == 0 and "s3cr3t-token" not in out
    feeds = opml_to_feeds(out.encode("utf-8"), "stdout")
    assert [(f["url"].split("?")[0], f["title"]) for f in feeds] == [
        ("https://www.rfi.fr/cn/rss", "RFI 中文 (简体)"),
        ("https://news.example.org/rss", "private"),
    ]
    target = tmp_path / "feeds.opml"
    code, out, _ = cli(
        capsys, "feeds", "export", "-c", str(config), "--out", str(target), "--reveal-secrets"
    )
    assert code == 0 and out == f"{target}: 2 feeds\n"
    exported = opml_to_feeds(target.read_bytes(), str(target))
    assert exported[1]["url"] == "https://news.example.org/rss?token=s3cr3t-token"
    # And back: importing the export into the same config adds nothing.
    code, out, err = cli(capsys, "feeds", "import", "-c", str(config), str(target))
    assert code == 0 and out == "feeds: []\n" and err.count("configured already") == 2
