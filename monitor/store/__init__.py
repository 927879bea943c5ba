"""Storage: feeds' schedule, items and their dedupe history, the alert outbox, archive
history and retention, read-outs; one part per job, all on one ``Database``."""

from __future__ import annotations

from sqlalchemy import Engine

from monitor.clock import SYSTEM_CLOCK
from monitor.store.database import Database
from monitor.store.feeds import FeedSchedule
from monitor.store.history import History
from monitor.store.ingest import ItemStore
from monitor.store.outbox import Outbox
from monitor.store.readouts import Readouts
from monitor.types import Clock


class Store:
    """``types.Storage``: one database, shared by the scheduler, the pollers and the
    deliverer, and its parts by job."""

    def __init__(
        self,
        url: str,
        upgrade: bool | None = True,
        clock: Clock = SYSTEM_CLOCK,
        connections: int = 30,
    ) -> None:
        """Open the database; ``upgrade``: True migrates, False refuses an old schema,
        None leaves the schema alone (for inspecting it); ``connections``: at most this
        many at once (a thread wanting one more waits). Raises StoreError."""
        self._db = Database(url, upgrade, clock, connections)
        self.feeds = FeedSchedule(self._db, clock)
        self.items = ItemStore(self._db)
        self.outbox = Outbox(self._db)
        self.history = History(self._db)
        self.readouts = Readouts(self._db)

    @property
    def url(self) -> str:
        return self._db.url

    @property
    def safe_url(self) -> str:
        """The database URL with its password masked."""
        return self._db.safe_url

    @property
    def is_sqlite(self) -> bool:
        return self._db.is_sqlite

    @property
    def engine(self) -> Engine:
        return self._db.engine

    def ping(self) -> None:
        self._db.ping()

    def schema_revision(self) -> tuple[str | None, str]:
        """(the database's revision, the revision this code needs)."""
        return self._db.schema_revision()

    def close(self) -> None:
        self._db.close()


__all__ = ["Database", "FeedSchedule", "History", "ItemStore", "Outbox", "Readouts", "Store"]
