"""Rule matching: compile configured rules once, match each item against all of them.

``compile_rules(specs) -> RuleSet`` and ``RuleSet.match(item, feeds)`` are what
the rest of the application uses; ``compile_query`` serves ``test-rule --query``.
The query language is in ``query``, normalization in ``normalize``.
"""

from __future__ import annotations

from monitor.errors import QuerySyntaxError
from monitor.match.engine import RuleSet, compile_query, compile_rules
from monitor.match.normalize import fold_text, html_to_text, normalize_text
from monitor.match.query import parse_query

__all__ = [
    "RuleSet",
    "compile_query",
    "compile_rules",
    "fold_text",
    "html_to_text",
    "normalize_text",
    "parse_query",
    "QuerySyntaxError",
]
