"""History in the ``<!--ms-->`` archive format: import, export, per-rule archive folders,
retention, and OPML for the feed list.

The CLI calls these; the SQL is in ``monitor.store.history``. What "already seen"
means for an import:

- the items are stored with ``imported`` set, recorded as seen in one feed id
  (``--feed``, default ``archive``), and every configured rule is matched
  against them as if they had been seen in every configured feed (so rules
  limited to feeds count too); the matches are recorded, not alerted;
- when a polled feed later carries one of them (http or https, any timestamp),
  ``Store.ingest`` stores the feed's version and records its matches without
  alerting, once; later updates are ordinary updates (``on_update``);
- a key already stored is left alone, so a second import adds nothing.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from monitor.archive import (
    ArchiveError,
    archive_filename,
    entry_to_item,
    format_archive,
    item_to_entry,
    iter_archive_paths,
    read_archive_file,
)
from monitor.config import LoadedConfig, RetentionConfig, parse_duration
from monitor.errors import MonitorError
from monitor.items import canonical_url
from monitor.match import RuleSet
from monitor.opml import OpmlError, feed_slug, feeds_to_opml, feeds_to_yaml, opml_to_feeds
from monitor.secrets import Masker
from monitor.store import Store
from monitor.types import Item, PruneStats

log = logging.getLogger("monitor.history")

DEFAULT_IMPORT_FEED = "archive"
FEED_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ErrorFn = Callable[[str], None]
ProgressFn = Callable[[int], None]


# -- import --------------------------------------------------------------------------------


@dataclass
class ImportReport:
    files: int = 0
    new: int = 0  # items stored
    duplicate: int = 0  # files whose key was stored already (or earlier in this import)
    invalid: int = 0  # files that are not in the archive format
    matched: int = 0  # rule matches recorded for the new items (never alerted)
    errors: list[str] = field(default_factory=list)


def import_archive(store: Store, paths: Iterable[str | Path], *, rules: RuleSet,
                   feed_ids: Collection[str], feed_id: str = DEFAULT_IMPORT_FEED,
                   now_ms: int, batch_size: int = 1000, on_error: ErrorFn | None = None,
                   on_files: Callable[[int], None] | None = None,
                   on_progress: ProgressFn | None = None) -> ImportReport:
    """Store the archive files under ``paths`` (files, folders, globs) as already seen.

    A file that cannot be read or is not in the format is reported through
    ``on_error`` as ``path:line: message`` and skipped; the rest go in, in
    transactions of ``batch_size`` items, so an interrupted import keeps what it
    stored and running it again completes it. The first file of a key (in path
    order) is stored; later files with that key count as duplicates.
    ``on_files`` gets the number of files found, ``on_progress`` each step.
    """
    if not FEED_ID.match(feed_id):
        raise MonitorError(f"--feed: {feed_id!r} is not a feed id (letters, digits, '_.-')")
    files = list(iter_archive_paths(paths))  # a missing path is an error before any work
    report = ImportReport(files=len(files))
    if on_files:
        on_files(len(files))
    # Matched as if seen in every configured feed: a rule limited to /tw must not alert
    # when /tw later carries an article the archive already had.
    seen_in = frozenset(feed_ids) | {feed_id}
    seen_keys: set[str] = set()
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        fresh: list[Item] = []
        for path in chunk:
            item = _read_item(path, feed_id, report, on_error)
            if item is None:
                continue
            if item.key in seen_keys:
                report.duplicate += 1
                continue
            seen_keys.add(item.key)
            fresh.append(item)
        # Keys stored already are not matched at all: matching costs more than reading,
        # and a second import of the same folder should cost little more than reading it.
        stored = store.history.stored_keys([it.key for it in fresh])
        report.duplicate += len(stored)
        batch = [(it, rules.match(it, seen_in)) for it in fresh if it.key not in stored]
        added = store.history.import_items(feed_id, batch, now_ms)
        report.new += len(added)
        report.duplicate += len(batch) - len(added)
        report.matched += sum(len(hits) for it, hits in batch if it.key in added)
        if on_progress:
            on_progress(len(chunk))
    return report


def _read_item(path: Path, feed_id: str, report: ImportReport,
               on_error: ErrorFn | None) -> Item | None:
    try:
        return entry_to_item(read_archive_file(path), feed_id)
    except ArchiveError as e:
        # entry_to_item knows no file name: put it in.
        message = str(ArchiveError(e.message, str(path), e.line))
    except (ValueError, UnicodeError) as e:  # e.g. a malformed IPv6 host in the URL
        message = f"{path}: {e.__class__.__name__}: {e}"
    report.invalid += 1
    report.errors.append(message)
    if on_error:
        on_error(message)
    return None


# -- export --------------------------------------------------------------------------------


@dataclass
class ExportReport:
    written: int = 0
    unchanged: int = 0  # the file was there with exactly these bytes
    pruned: int = 0  # skipped: retention emptied the body
    no_url: int = 0  # skipped: the format needs a link


def export_archive(store: Store, out_dir: str | Path, *, since_ms: int | None = None,
                   until_ms: int | None = None, rule: str | None = None,
                   feed_ids: Collection[str] = (),
                   on_progress: ProgressFn | None = None) -> ExportReport:
    """Write stored items (all, those ``rule`` matched, those seen in ``feed_ids``),
    published in [since, until), one file each, named ``archive_filename``.

    Files are written whole (a temporary file renamed over the name), and a file
    already holding the same bytes is left alone, so exporting into the same
    folder again only writes what changed.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MonitorError(f"{out}: cannot create the folder: {e.strerror or e}") from e
    report = ExportReport()
    for row in store.history.export_rows(since_ms, until_ms, rule, feed_ids):
        if row.pruned:
            report.pruned += 1
        elif not row.item.url:
            report.no_url += 1
        elif write_item(out, row.item):
            report.written += 1
        else:
            report.unchanged += 1
        if on_progress:
            on_progress(1)
    return report


def write_item(folder: Path, item: Item) -> bool:
    """Write ``item`` as ``folder/archive_filename(item)``; False if it was there already.

    Raises ArchiveError (naming the path) when the file cannot be written.
    """
    path = folder / archive_filename(item)
    data = format_archive(item_to_entry(item)).encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    except OSError as e:
        raise ArchiveError(f"cannot read: {e.strerror or e}", str(path)) from e
    # A reader of the folder (or a crash) never sees half a file.
    try:
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise ArchiveError(f"cannot write: {e.strerror or e}", str(path)) from e
    return True


def write_rule_archives(alerted: Sequence[tuple[str, Item]], folders: Mapping[str, str]
                        ) -> int:
    """Write each alerted item into its rule's ``archive`` folder; the files written.

    Called after the alerts are committed: a failure here is logged with the rule
    and the path, and never touches the alert.
    """
    written = 0
    done: set[tuple[str, str, int]] = set()
    for rule, item in alerted:
        folder = folders.get(rule)
        if not folder or (rule, item.key, item.published_ms) in done:
            continue
        done.add((rule, item.key, item.published_ms))
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            written += write_item(Path(folder), item)
        except (OSError, ArchiveError) as e:
            log.error("rule '%s': cannot write %s to its archive folder %s: %s", rule,
                      item.url, folder, e)
    return written


def parse_when(text: str, now_ms: int, flag: str) -> int:
    """Epoch ms of ``--since``/``--until``: a duration back from now (``7d``), a date
    (``2023-09-26``, midnight UTC) or a date and time (``2023-09-26T08:00``, UTC
    unless it names an offset)."""
    try:
        return now_ms - int(parse_duration(text) * 1000)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise MonitorError(f"{flag}: expected a duration (7d), a date (2023-09-26) or a "
                           f"date and time (2023-09-26T08:00, UTC), got {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


# -- retention -----------------------------------------------------------------------------


def prune(store: Store, retention: RetentionConfig, now_ms: int) -> PruneStats:
    """Apply ``retention``: bodies of items older than ``items`` emptied, items older
    than ``keys`` deleted; items with an alert still waiting are left whole."""
    bodies = None if retention.items is None else now_ms - int(retention.items * 1000)
    keys = None if retention.keys is None else now_ms - int(retention.keys * 1000)
    return store.history.prune(now_ms, bodies, keys)


# -- OPML ----------------------------------------------------------------------------------


def opml_import(loaded: LoadedConfig, path: str | Path) -> tuple[str, list[str]]:
    """The ``feeds:`` YAML for the OPML file's feeds the config lacks, and a note per
    feed left out because its URL is configured already."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise OpmlError(f"cannot read: {e.strerror or e}", str(path)) from e
    cfg = loaded.config
    configured = {canonical_url(f.url): f.id for f in cfg.feeds}
    found = opml_to_feeds(data, str(path), existing_ids=[f.id for f in cfg.feeds])
    new, notes = [], []
    taken = {f.id for f in cfg.feeds}
    for feed in found:
        known = configured.get(canonical_url(feed["url"]))
        if known is None:
            # Ids again, among the feeds kept: a skipped feed leaves no gap ("rfi-3").
            feed["id"] = feed_slug(feed["title"], feed["url"], taken)
            taken.add(feed["id"])
            new.append(feed)
        else:
            notes.append(f"{feed['url']} is configured already as feed '{known}'")
    return feeds_to_yaml(new), notes


def opml_export(loaded: LoadedConfig, reveal_secrets: bool = False) -> str:
    """OPML of the configured feeds; secrets in their URLs masked unless revealed."""
    masker = Masker(loaded.secrets)
    for f in loaded.config.feeds:
        masker.add_userinfo(f.url)
    return feeds_to_opml([(f.id, f.url if reveal_secrets else masker(f.url), f.title)
                          for f in loaded.config.feeds])
