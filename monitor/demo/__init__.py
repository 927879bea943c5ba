"""``feed-monitor demo``: real RFI articles replayed as live feeds on 127.0.0.1, watched by
the real daemon on SQLite in a folder of its own, alerts printed as they arrive."""

from monitor.demo.session import DEFAULT_LISTEN, Demo

__all__ = ["DEFAULT_LISTEN", "Demo"]
