"""Config validation: typed models, and errors that name file, line and key path."""

from pathlib import Path

import pytest
import yaml

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
        (
            ("notify: [mail, console]", "notify: [mail, emial]"),
            "t.yaml:14 rules[0].notify: unknown channel 'emial'",
        ),
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
def test_errors_name_file_line_and_key_path(
    edit: tuple[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FM_TEST_SMTP_PASSWORD", "pw")
    text = GOOD.format(db="/tmp/x.db").replace(*edit, 1)
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "t.yaml")
    assert str(exc.value).startswith(expected), str(exc.value)


def test_missing_env_var_is_an_error_with_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FM_TEST_SMTP_PASSWORD", raising=False)
    with pytest.raises(
        ConfigError,
        match=r"t.yaml:8 channels.mail.urls\[0\]: environment "
        r"variable FM_TEST_SMTP_PASSWORD is not set",
    ):
        parse_config(GOOD.format(db="/tmp/x.db"), "t.yaml")


def test_check_command_masks_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
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
        (
            "rules:\n  - name: r\n    any: [x]\n    notify: [nope]\n",
            ":4 rules[0].notify: unknown channel 'nope'",
        ),
    ],
)
def test_check_command_reports_without_traceback(
    tmp_path: Path, text: str, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}{where}" in err
    assert "Traceback" not in err


def test_data_is_what_yaml_gives() -> None:
    """The event-by-event builder gives the data yaml.safe_load does."""
    from monitor.config.loader import _Builder

    text = (
        (REPO / "config" / "monitor.yaml").read_text(encoding="utf-8")
        + """\
scalars:
  int: 1
  hex: 0x1f
  float: 1.5
  inf: .inf
  yes: true
  no: False
  none: ~
  empty: ''
  date: 2024-01-02
  tagged: !!str 123
  quoted: "123"
  block: |
    two
    lines
  flow: [1, "2", 'three', {k: v}, []]
  anchored: &a {x: [1, 2]}
  alias: *a
"""
    )
    assert _Builder("t.yaml").build(text) == yaml.safe_load(text)
    assert _Builder("t.yaml").build("") is None
    assert _Builder("t.yaml").build("# only a comment\n") is None


def test_aliases_are_values_and_keys_their_own_lines() -> None:
    text = """\
channels:
  console: console://
rules:
  - name: a
    any: [x]
    notify: &n [console]
  - name: b
    any: [y]
    notify: *n
"""
    loaded = parse_config(text, "t.yaml")
    assert [r.notify for r in loaded.config.rules] == [("console",), ("console",)]
    assert [s.line for s in loaded.rule_specs()] == [4, 7]
    assert loaded.line_of("rules", 1) == 7
    assert loaded.line_of("rules", 1, "any") == 8
    assert loaded.line_of("channels", "console") == 2
    assert loaded.line_of("database") is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("feeds: []\nrules: []\nfeeds: []\n", "t.yaml:3 feeds: duplicate key 'feeds'"),
        ("feeds: []\ndatabase: !nope x\n", "t.yaml:2 invalid YAML"),
        ("feeds: []\ndatabase: *nope\n", "t.yaml:2 invalid YAML: found undefined alias"),
        ("feeds: []\n---\nrules: []\n", "t.yaml:2 invalid YAML"),
        ("? [a, b]\n: 1\n", "t.yaml:1 invalid YAML"),
        ("feeds: []\ndatabase: 2024-13-45\n", "t.yaml:2 invalid YAML: '2024-13-45': month"),
        ("- a\n- b\n", "t.yaml:1 the top level must be a mapping"),
    ],
)
def test_yaml_that_is_not_a_config(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "t.yaml")
    assert str(exc.value).startswith(expected), str(exc.value)


def test_large_config_errors_point_at_their_lines() -> None:
    feeds = "".join(f"  - id: f{i}\n    url: http://127.0.0.1:9/{i}\n" for i in range(2000))
    rules = "".join(
        f"  - name: r{i}\n    any: [w{i}]\n    notify: [console]\n" for i in range(3000)
    )
    text = f"channels:\n  console: console://\nfeeds:\n{feeds}rules:\n{rules}"
    lines = text.splitlines()

    def line(s: str) -> int:
        return lines.index(s) + 1

    loaded = parse_config(text, "big.yaml")
    assert loaded.rule_specs()[2999].line == line("  - name: r2999")
    assert loaded.line_of("feeds", 1500, "url") == line("    url: http://127.0.0.1:9/1500")

    bad = text.replace("    url: http://127.0.0.1:9/1234\n", "    url: ftp://x/1234\n")
    with pytest.raises(ConfigError) as exc:
        parse_config(bad, "big.yaml")
    assert str(exc.value).startswith(
        f"big.yaml:{line('    url: http://127.0.0.1:9/1234')} feeds[1234].url:"
    ), str(exc.value)

    bad = text.replace(
        "  - name: r2500\n    any: [w2500]\n    notify: [console]\n",
        "  - name: r2500\n    any: [w2500]\n    notify: [console, nope]\n",
    )
    bad = bad.replace(
        "  - name: r7\n    any: [w7]\n", "  - name: r7\n    any: [w7]\n    feeds: [f1, gone]\n"
    )
    with pytest.raises(ConfigError) as exc:
        parse_config(bad, "big.yaml")
    bad_lines = bad.splitlines()
    assert str(exc.value).splitlines() == [
        f"big.yaml:{bad_lines.index('    feeds: [f1, gone]') + 1} rules[7].feeds: "
        "unknown feed 'gone'",
        f"big.yaml:{bad_lines.index('    notify: [console, nope]') + 1} rules[2500].notify: "
        "unknown channel 'nope' (channels: console)",
    ]


def test_a_secret_in_a_bad_value_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_TEST_FEED_TOKEN", "t0ken-xyz")
    text = "feeds:\n  - id: cn\n    url: ftp://h/${FM_TEST_FEED_TOKEN}\n"
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "t.yaml")
    assert str(exc.value).startswith("t.yaml:3 feeds[0].url:")
    assert "t0ken-xyz" not in str(exc.value)
