"""feed-monitor: watches news feeds and alerts when an article matches your rules."""

__version__ = "0.1.0"
