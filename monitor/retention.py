"""Retention: the configured ages turned into cutoffs for ``store.history.prune``."""

from __future__ import annotations

from monitor.config import RetentionConfig
from monitor.store import Store
from monitor.types import PruneStats


def apply_retention(store: Store, retention: RetentionConfig, now_ms: int) -> PruneStats:
    """Apply ``retention``: bodies of items older than ``items`` emptied, items older
    than ``keys`` deleted; items with an alert still waiting are left whole."""
    bodies = None if retention.items is None else now_ms - int(retention.items * 1000)
    keys = None if retention.keys is None else now_ms - int(retention.keys * 1000)
    return store.history.prune(now_ms, bodies, keys)
