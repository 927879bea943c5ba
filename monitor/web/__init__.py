"""The daemon's HTTP address: the web console, /healthz and /metrics."""

from monitor.web.pages import ConsoleSource
from monitor.web.server import WebServer

__all__ = ["ConsoleSource", "WebServer"]
