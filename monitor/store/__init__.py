"""Storage: feeds' schedule state, items and their dedupe history, the alert outbox."""

from monitor.store.store import Store

__all__ = ["Store"]
