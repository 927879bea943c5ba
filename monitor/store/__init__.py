"""Storage: feeds' schedule state, items and their dedupe history, the alert outbox."""

from monitor.store.outbox import Silence
from monitor.store.store import (
    AlertRow,
    FeedRow,
    FeedSpec,
    IngestStats,
    Store,
    StoredItem,
)

__all__ = ["Silence", "AlertRow", "FeedRow", "FeedSpec", "IngestStats", "Store", "StoredItem"]
