"""The JSON Schema of the config file, for editors (``feed-monitor schema``)."""

from __future__ import annotations

from typing import Any

from monitor.config.models import Config

_BOUNDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum", "le": "maximum"}


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file (``feed-monitor schema``), for editors."""
    schema = Config.model_json_schema()

    def fix(node: Any, names: bool = False) -> Any:
        # Pydantic leaves bounds it could not place (on an optional Duration) under
        # its own names; JSON Schema spells them otherwise, and they apply to numbers
        # only, which is what they mean here. Keys of properties/$defs are field names.
        if isinstance(node, dict):
            return {
                (k if names else _BOUNDS.get(k, k)): fix(
                    v, names=not names and k in ("properties", "$defs")
                )
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **fix(schema)}
