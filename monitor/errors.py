"""The project's exceptions: one tree rooted at MonitorError."""

from __future__ import annotations

from monitor.types import PollOutcome


def shown_name(name: str) -> str:
    """A file name as printed: what is not printable (a line break, ESC, a bidi override,
    a byte that is not UTF-8) escaped as in a Python string, so a name can neither start
    a line of output of its own nor restyle the terminal."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


class MonitorError(Exception):
    """Root of every error this package raises on purpose."""


class FileError(MonitorError):
    """Input read from a file (an archive item, an OPML file), located by file and line."""

    default_source = "<string>"

    def __init__(self, message: str, source: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.source = source or self.default_source
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        source = shown_name(self.source)
        where = source if self.line is None else f"{source}:{self.line}"
        return f"{where}: {self.message}"


class ConfigError(MonitorError):
    """A configuration problem, located by file, line and key path."""

    def __init__(
        self, message: str, path: str | None = None, line: int | None = None, key: str | None = None
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or "<config>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}{key} {self.message}"


class ConfigErrors(ConfigError):
    """Several configuration errors found in one pass."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(first.message, first.path, first.line, first.key)

    def __str__(self) -> str:
        return "\n".join(ConfigError.__str__(e) for e in self.errors)


class RuleError(ConfigError):
    """A rule that does not compile (bad query, bad regular expression)."""

    def __init__(
        self,
        rule: str,
        message: str,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.rule = rule
        self.column = column
        col = f" (column {column})" if column is not None else ""
        super().__init__(f"{message}{col}", path, line, f"rule '{rule}'")


class FeedError(MonitorError):
    """A poll that failed; ``outcome`` classifies it for status and logs."""

    def __init__(
        self,
        feed: str,
        url: str,
        outcome: PollOutcome,
        message: str,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        self.status = status
        self.feed = feed
        self.url = url
        self.outcome = outcome
        self.message = message
        self.retry_after = retry_after
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"feed '{self.feed}' ({self.url}): {self.outcome}: {self.message}"


class StoreError(MonitorError):
    """The database could not be reached or refused an operation."""


class UsageError(MonitorError):
    """A command-line argument that cannot be used (an unknown rule, a bad duration)."""


class QuerySyntaxError(MonitorError):
    """A query that does not parse; ``line``/``column`` are 1-based within the query."""

    def __init__(self, message: str, line: int, column: int) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(f"{message} (line {line}, column {column})")
