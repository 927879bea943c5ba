"""Field types of the config models written as text (durations, sizes, time zones), each
with the JSON Schema that editors see for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator
from pydantic.json_schema import JsonDict

from monitor.config.units import parse_duration, parse_size


class _NumberOrText:
    """JSON Schema of a value written as a plain number or as text with a unit.

    Pydantic alone would describe a Duration as a number; editors would then flag
    ``interval: 5m``. The number branch keeps pydantic's bounds (e.g. > 0).
    """

    def __init__(self, pattern: str, description: str, examples: list[Any]) -> None:
        self.pattern = pattern
        self.description = description
        self.examples = examples

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        number = handler(core_schema)
        text = {"type": "string", "pattern": self.pattern, "description": self.description}
        return {"anyOf": [number, text], "examples": self.examples}


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    _NumberOrText(
        r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d|w)?\s*$",
        "seconds, or a number with a unit: ms, s, m, h, d, w",
        [90, "30s", "5m", "24h"],
    ),
]
Size = Annotated[
    int,
    BeforeValidator(parse_size),
    _NumberOrText(
        r"^\s*\d+(\.\d+)?\s*([bB]|[kKmMgG][iI]?[bB])?\s*$",
        "bytes, or a number with a unit: B, KB, KiB, MB, MiB, GB, GiB",
        [1048576, "15MiB"],
    ),
]
# What a backlog may say, for editors (the validators say why a value is wrong).
BACKLOG_SCHEMA: JsonDict = {
    "pattern": r"^(none|all|\s*\d+(\.\d+)?\s*(ms|s|m|h|d|w)?\s*)$",
    "examples": ["none", "all", "24h"],
}


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use a name such as Asia/Shanghai)") from None
    return name


TimeZone = Annotated[str, BeforeValidator(lambda v: _zone(str(v)))]


def also_text(pattern: str | None, description: str) -> Callable[[dict[str, Any]], None]:
    """json_schema_extra for a model that may also be written as one string."""

    def extra(schema: dict[str, Any]) -> None:
        obj = dict(schema)
        schema.clear()
        for key in ("title", "description"):
            if key in obj:
                schema[key] = obj.pop(key)
        text: dict[str, Any] = {"type": "string", "description": description}
        if pattern:
            text["pattern"] = pattern
        schema["anyOf"] = [obj, text]

    return extra
