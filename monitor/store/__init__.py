"""Storage: feeds' schedule state, items and their dedupe history, the alert outbox."""

from monitor.store.store import (
    AlertRow,
    FeedRow,
    FeedSpec,
    IngestStats,
    Store,
    StoredItem,
)

__all__ = ["AlertRow", "FeedRow", "FeedSpec", "IngestStats", "Store", "StoredItem"]
