"""What the benchmarks share: the feed farm, our daemon's config, the daemon run and
measured from outside, the machine's description, a watch list of rules, RFI-shaped
articles and an SMTP sink. The benchmarks import this, never the tests."""

from bench.support.config import farm_config, feed_id, write_config
from bench.support.daemon import Daemon, db_scalar, wait_until
from bench.support.farm import FarmProcess, corpus_articles, rss
from bench.support.machine import cpu_seconds, machine, machine_line, proc_status
from bench.support.smtp import SmtpSink
from bench.support.watchlist import watch_rules

__all__ = [
    "Daemon",
    "FarmProcess",
    "SmtpSink",
    "corpus_articles",
    "cpu_seconds",
    "db_scalar",
    "farm_config",
    "feed_id",
    "machine",
    "machine_line",
    "proc_status",
    "rss",
    "wait_until",
    "watch_rules",
    "write_config",
]
