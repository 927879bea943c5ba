"""The config's JSON Schema: generated from the models, committed, and agreeing with them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from monitor.config import config_json_schema, parse_config
from monitor.errors import ConfigError
from tests.daemon import REPO, write_config

SCHEMA_FILE = REPO / "config" / "monitor.schema.json"
EXAMPLE = REPO / "config" / "monitor.yaml"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_errors(validator: jsonschema.Draft202012Validator, data: Any) -> list[str]:
    return [e.message for e in validator.iter_errors(data)]


def test_committed_schema_is_what_the_schema_command_prints() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "monitor", "schema"],
        cwd=REPO,
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
    )
    # Regenerate with: feed-monitor schema > config/monitor.schema.json
    assert out.stdout == SCHEMA_FILE.read_text(encoding="utf-8"), (
        "config/monitor.schema.json is stale: run feed-monitor schema > config/monitor.schema.json"
    )
    assert json.loads(out.stdout) == config_json_schema()


def test_example_config_points_editors_at_the_schema_and_validates_against_it(
    validator: jsonschema.Draft202012Validator,
) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "# yaml-language-server: $schema=./monitor.schema.json"
    assert schema_errors(validator, yaml.safe_load(text)) == []


def test_schema_has_titles_and_descriptions() -> None:
    schema = config_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["description"]
    defaults = schema["$defs"]["Defaults"]["properties"]
    assert defaults["interval"]["title"] == "Interval"
    assert defaults["interval"]["description"]
    assert schema["$defs"]["FeedConfig"]["properties"]["url"]["description"]


@pytest.mark.parametrize(
    "interval,max_bytes",
    [(90, 1048576), (2.5, "15MiB"), ("30s", "500KB"), ("5m", "2gib"), ("24h", 10)],
)
def test_durations_and_sizes_are_numbers_or_strings_in_the_schema_and_the_models(
    validator: jsonschema.Draft202012Validator, tmp_path: Path, interval: Any, max_bytes: Any
) -> None:
    data = {
        "defaults": {"interval": interval, "max_bytes": max_bytes},
        "feeds": [{"id": "cn", "url": "https://www.rfi.fr/cn/rss", "interval": interval}],
    }
    assert schema_errors(validator, data) == []
    parse_config(yaml.safe_dump(data), "x.yaml")  # and the models agree


@pytest.mark.parametrize(
    "data",
    [
        {"defaults": {"interval": "soon"}},
        {"defaults": {"interval": -1}},
        {"defaults": {"max_bytes": "15 parsecs"}},
        {"defaults": {"intervall": "5m"}},
        {"feeds": [{"id": "cn"}]},
        {"feeds": [{"id": "cn", "url": "https://x.org/rss", "backlog": "yesterday"}]},
        {"channels": {"c": {"urls": ["console://"], "url": "console://"}}},
        {"channels": {"c": {}}},
        {"rules": [{"name": "r", "any": ["x"]}]},
        {"scheduler": {"workers": 0}},
    ],
    ids=lambda d: json.dumps(d)[:40],
)
def test_what_the_schema_refuses_the_config_loader_refuses_too(
    validator: jsonschema.Draft202012Validator, data: dict[str, Any]
) -> None:
    assert schema_errors(validator, data), "the schema accepted it"
    with pytest.raises(ConfigError):
        parse_config(yaml.safe_dump(data), "x.yaml")


def test_every_accepted_channel_form_is_in_the_schema(
    validator: jsonschema.Draft202012Validator,
) -> None:
    data = {
        "channels": {"a": {"urls": ["console://"]}, "b": {"url": "console://"}, "c": "console://"},
        "rules": [{"name": "r", "any": ["中俄"], "notify": ["a", "b", "c"]}],
    }
    assert schema_errors(validator, data) == []
    parse_config(yaml.safe_dump(data), "x.yaml")


def test_test_configs_validate(validator: jsonschema.Draft202012Validator, tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "m.yaml",
        db=tmp_path / "m.db",
        feeds=[{"id": "cn", "url": "http://127.0.0.1:1/cn", "backlog": "all"}],
        channels={"hook": {"urls": ["json://127.0.0.1:1/"]}},
        rules=[{"name": "r", "any": ["中俄"], "notify": ["hook"]}],
        http={"enabled": True, "listen": "127.0.0.1:9321"},
    )
    assert schema_errors(validator, yaml.safe_load(path.read_text(encoding="utf-8"))) == []
