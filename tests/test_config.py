"""Config validation: typed models, and errors that name file, line and key path."""

from pathlib import Path

import pytest

from monitor.cli import main
from monitor.config import load_config, parse_config
from monitor.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

GOOD = """\
database: sqlite:///{db}
feeds:
  - id: cn
    url: http://127.0.0.1:9/cn.xml
    interval: 2m
channels:
  mail:
    urls: ["mailto://alerts:${{FM_TEST_SMTP_PASSWORD}}@127.0.0.1:2525?from=a@example.com&to=b@example.com"]
  console:
    url: console://
rules:
  - name: china-russia
    any: [中俄]
    notify: [mail, console]
"""


def test_example_config_is_valid() -> None:
    loaded = load_config(REPO / "config" / "monitor.yaml")
    cfg = loaded.config
    assert [f.url for f in cfg.feeds] == ["https://www.rfi.fr/cn/rss", "https://www.rfi.fr/tw/rss"]
    assert {r.name for r in cfg.rules} >= {"china-russia", "ukraine"}
    assert cfg.channels["console"].urls == ["console://"]


def test_durations_sizes_and_env_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_TEST_SMTP_PASSWORD", "s3cret-pw")
    loaded = parse_config(GOOD.format(db=tmp_path / "x.db"), "t.yaml")
    assert loaded.config.feeds[0].interval == 120
    assert "s3cret-pw" in loaded.config.channels["mail"].urls[0]
    assert "s3cret-pw" in loaded.secrets
    assert loaded.rule_specs()[0].line == 12


@pytest.mark.parametrize(
    "edit, expected",
    [
        # a misspelled key
        (("    interval: 2m", "    intervall: 2m"), "t.yaml:5 feeds[0].intervall: unknown key"),
        # a rule naming an unknown channel
        (("notify: [mail, console]", "notify: [mail, emial]"),
         "t.yaml:14 rules[0].notify: unknown channel 'emial'"),
        # a wrong type
        (("interval: 2m", "interval: soon"), "t.yaml:5 feeds[0].interval: expected a duration"),
        # not an http URL
        (("url: http://127.0.0.1:9/cn.xml", "url: ftp://x/y"), "t.yaml:4 feeds[0].url:"),
        # broken YAML
        (("  - id: cn", "  - id: [cn"), "t.yaml:4 invalid YAML"),
        # an unknown top-level key
        (("database:", "databse:"), "t.yaml:1 databse: unknown key"),
    ],
)
def test_errors_name_file_line_and_key_path(edit: tuple[str, str], expected: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_TEST_SMTP_PASSWORD", "pw")
    text = GOOD.format(db="/tmp/x.db").replace(*edit, 1)
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "t.yaml")
    assert str(exc.value).startswith(expected), str(exc.value)


def test_missing_env_var_is_an_error_with_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FM_TEST_SMTP_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match=r"t.yaml:8 channels.mail.urls\[0\]: environment "
                                          r"variable FM_TEST_SMTP_PASSWORD is not set"):
        parse_config(GOOD.format(db="/tmp/x.db"), "t.yaml")


def test_check_command_masks_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FM_TEST_SMTP_PASSWORD", "s3cret-pw")
    path = tmp_path / "c.yaml"
    path.write_text(GOOD.format(db=tmp_path / "x.db"), encoding="utf-8")
    assert main(["check", "-c", str(path)]) == 0
    out = capsys.readouterr()
    assert "s3cret-pw" not in out.out + out.err
    assert "china-russia" in out.out and "127.0.0.1" in out.out


@pytest.mark.parametrize(
    "text, where",
    [
        ("feeds:\n  - id: x\n    url: http://a/b\n    typo: 1\n", ":4 feeds[0].typo: unknown key"),
        ("feeds: [\n", ":2 invalid YAML"),
        ("rules:\n  - name: r\n    any: [x]\n    notify: [nope]\n",
         ":4 rules[0].notify: unknown channel 'nope'"),
    ],
)
def test_check_command_reports_without_traceback(tmp_path: Path, text: str, where: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}{where}" in err
    assert "Traceback" not in err
