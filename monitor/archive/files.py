"""Archive folders on disk: import them as already seen, export stored items into them,
and write each alerted item into its rule's folder; the SQL is in ``monitor.store.history``.

What "already seen" means for an import:

- the items are stored with ``imported`` set, recorded as seen in one feed id
  (``--feed``, default ``archive``), and every configured rule is matched
  against them as if they had been seen in every configured feed (so rules
  limited to feeds count too); the matches are recorded, not alerted;
- when a polled feed later carries one of them (http or https, any timestamp),
  ``store.items.ingest`` stores the feed's version and records its matches without
  alerting, once; later updates are ordinary updates (``on_update``);
- a key already stored is left alone, so a second import adds nothing.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from monitor.archive.format import (
    ArchiveEntry,
    ArchiveError,
    archive_filename,
    entry_to_item,
    format_archive,
    item_to_entry,
    looks_like_archive,
    parse_archive,
)
from monitor.config.models import ID_PATTERN
from monitor.errors import MonitorError, UsageError, shown_name
from monitor.match import RuleSet
from monitor.store import Store
from monitor.types import Item

log = logging.getLogger("monitor.archive")

DEFAULT_IMPORT_FEED = "archive"
# The id a config feed may have (config's id pattern): imported items are recorded as
# seen in it, so it must be one a feed could later be configured with.
FEED_ID = re.compile(ID_PATTERN)
ErrorFn = Callable[[str], None]
ProgressFn = Callable[[int], None]
NOT_ARCHIVE = "not an archive file"
OUTSIDE = "a symlink leading outside its folder, not followed"


# -- reading files -------------------------------------------------------------------------


class NotAnArchiveFile(ArchiveError):
    """A file with no timestamp comment where an archive item's is (a notes file)."""


def read_archive_file(path: str | Path) -> ArchiveEntry:
    """Read and parse one file, with no newline translation (writing gives the same bytes).

    Raises NotAnArchiveFile for a file that does not mean to be an archive item (no
    timestamp comment where one belongs), ArchiveError for one that is malformed.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ArchiveError(f"cannot read: {e.strerror or e}", str(path)) from e
    if not looks_like_archive(data.decode("utf-8", errors="replace")):
        raise NotAnArchiveFile(
            f"{NOT_ARCHIVE} (no <!--epoch ms--> timestamp comment)", str(path), 1
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ArchiveError(f"not UTF-8 (byte {e.start}: {e.reason})", str(path), line) from e
    return parse_archive(text, str(path))


def iter_archive_paths(
    paths: Iterable[str | Path], on_outside: Callable[[Path], None] | None = None
) -> Iterator[Path]:
    """Files named, ``*.md`` under folders (recursively) and glob matches; sorted, once each.

    Hidden files and folders (``.git``) under a folder are skipped, and so is a symlink
    under a folder that leads outside it (given to ``on_outside``): importing a folder
    reads that folder. Symlinked folders are not entered. A name that does not exist,
    or a glob that matches nothing, is an error rather than an empty import.
    """
    found: set[Path] = set()
    for raw in paths:
        name = str(raw)
        if glob.has_magic(name):
            matches = [Path(p) for p in glob.glob(name, recursive=True)]
            if not matches:
                raise ArchiveError("the pattern matches no files", name)
        else:
            matches = [Path(name)]
        for p in matches:
            if p.is_dir():
                root = p.resolve()
                for f in p.rglob("*.md"):
                    if any(part.startswith(".") for part in f.relative_to(p).parts):
                        continue
                    if f.is_symlink() and not f.resolve().is_relative_to(root):
                        if on_outside:
                            on_outside(f)
                    elif f.is_file():
                        found.add(f)
            elif p.is_file():
                found.add(p)
            else:
                raise ArchiveError("no such file or folder", name)
    yield from sorted(found)


# -- import --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportReport:
    files: int = 0
    new: int = 0  # items stored
    duplicate: int = 0  # files whose key was stored already (or earlier in this import)
    invalid: int = 0  # archive files that are malformed (or cannot be read)
    skipped: int = 0  # files that are not archive files (notes beside them), left alone
    outside: int = 0  # symlinks under a folder leading outside it, not followed
    matched: int = 0  # rule matches recorded for the new items (never alerted)
    errors: tuple[str, ...] = ()


def import_archive(
    store: Store,
    paths: Iterable[str | Path],
    *,
    rules: RuleSet,
    feed_ids: Collection[str],
    feed_id: str = DEFAULT_IMPORT_FEED,
    now_ms: int,
    batch_size: int = 1000,
    on_error: ErrorFn | None = None,
    on_files: Callable[[int], None] | None = None,
    on_progress: ProgressFn | None = None,
    on_skip: ErrorFn | None = None,
) -> ImportReport:
    """Store the archive files under ``paths`` (files, folders, globs) as already seen.

    A file that is not an archive file (no timestamp comment: a README beside them)
    and a symlink leading out of its folder are skipped, counted and reported through
    ``on_skip``. A file that cannot be read or is malformed is reported through
    ``on_error`` as ``path:line: message`` and skipped; the rest go in, in
    transactions of ``batch_size`` items, so an interrupted import keeps what it
    stored and running it again completes it. The first file of a key (in path
    order) is stored; later files with that key count as duplicates.
    ``on_files`` gets the number of files found, ``on_progress`` each step.
    """
    if not FEED_ID.match(feed_id):
        raise UsageError(f"--feed: {feed_id!r} is not a feed id (letters, digits, '_.-')")
    skips: list[str] = []
    outside = 0

    def skip(message: str) -> None:
        skips.append(message)
        if on_skip:
            on_skip(message)

    def not_followed(path: Path) -> None:
        nonlocal outside
        outside += 1
        skip(f"{shown_name(str(path))}: skipped: {OUTSIDE}")

    # A missing path is an error before any work.
    files = list(iter_archive_paths(paths, not_followed))
    if on_files:
        on_files(len(files))
    # Matched as if seen in every configured feed: a rule limited to /tw must not alert
    # when /tw later carries an article the archive already had.
    seen_in = frozenset(feed_ids) | {feed_id}
    seen_keys: set[str] = set()
    errors: list[str] = []
    new = duplicate = matched = 0
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        fresh: list[Item] = []
        for path in chunk:
            item = _read_item(path, feed_id, errors, on_error, skip)
            if item is None:
                continue
            if item.key in seen_keys:
                duplicate += 1
                continue
            seen_keys.add(item.key)
            fresh.append(item)
        # Keys stored already are not matched at all: matching costs more than reading,
        # and a second import of the same folder should cost little more than reading it.
        stored = store.history.stored_keys([it.key for it in fresh])
        duplicate += len(stored)
        batch = [(it, rules.match(it, seen_in)) for it in fresh if it.key not in stored]
        added = store.history.import_items(feed_id, batch, now_ms)
        new += len(added)
        duplicate += len(batch) - len(added)
        matched += sum(len(hits) for it, hits in batch if it.key in added)
        if on_progress:
            on_progress(len(chunk))
    return ImportReport(
        files=len(files),
        new=new,
        duplicate=duplicate,
        invalid=len(errors),
        skipped=len(skips) - outside,
        outside=outside,
        matched=matched,
        errors=tuple(errors),
    )


def _read_item(
    path: Path, feed_id: str, errors: list[str], on_error: ErrorFn | None, skip: ErrorFn
) -> Item | None:
    """The file's item, or None with its error appended to ``errors`` and reported (or,
    for a file that is no archive file, given to ``skip``)."""
    try:
        return entry_to_item(read_archive_file(path), feed_id)
    except NotAnArchiveFile as e:
        skip(f"{shown_name(str(path))}: skipped: {e.message}")
        return None
    except ArchiveError as e:
        # entry_to_item knows no file name: put it in.
        message = str(ArchiveError(e.message, str(path), e.line))
    except (ValueError, UnicodeError) as e:  # e.g. a malformed IPv6 host in the URL
        message = f"{shown_name(str(path))}: {e.__class__.__name__}: {e}"
    errors.append(message)
    if on_error:
        on_error(message)
    return None


# -- export --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportReport:
    written: int = 0
    unchanged: int = 0  # the file was there with exactly these bytes
    pruned: int = 0  # skipped: retention emptied the body
    no_url: int = 0  # skipped: the format needs a link


def export_archive(
    store: Store,
    out_dir: str | Path,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    rule: str | None = None,
    feed_ids: Collection[str] = (),
    on_progress: ProgressFn | None = None,
) -> ExportReport:
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
    written = unchanged = pruned = no_url = 0
    for row in store.history.export_rows(since_ms, until_ms, rule, feed_ids):
        if row.pruned:
            pruned += 1
        elif not row.item.url:
            no_url += 1
        elif write_item(out, row.item):
            written += 1
        else:
            unchanged += 1
        if on_progress:
            on_progress(1)
    return ExportReport(written=written, unchanged=unchanged, pruned=pruned, no_url=no_url)


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


# -- rule archives -------------------------------------------------------------------------


def write_rule_archives(alerted: Sequence[tuple[str, Item]], folders: Mapping[str, str]) -> int:
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
            log.error(
                "rule '%s': cannot write %s to its archive folder %s: %s", rule, item.url, folder, e
            )
    return written
