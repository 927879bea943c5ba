"""Benchmark: ``feed-monitor import`` of archive files into SQLite, against baselines
measured in the same run.

    python bench/import.py [--items 10000] [--repeat 3] [--pg URL] [--quick]

Writes ``--items`` RFI-shaped items (bench/support/articles.py: ~3 KB HTML bodies of
nested spans, percent-encoded Chinese URLs, five items per timestamp as mirrors stamp
them) as ``<!--ms-->`` files into a temporary folder, then times:

- **read + parse**: reading and parsing every file into an Item, nothing else;
  the floor no import can go below;
- **read + parse + match**: the same plus matching the rules (normalization:
  HTML to text, NFKC, case folding, OpenCC), which an import records;
- **import**: ``monitor.archive.files.import_archive`` into a fresh SQLite file, batches
  of 1,000 items per transaction (what the command runs);
- **re-import**: the same files again: every one a duplicate, nothing written;
- **naive**: one ``Store.ingest`` transaction per item (the poll path, alerts held
  back), on a sample of 1,000 items, its rate scaled up;
- the real corpus, when ../shared/corpus sits beside the repository (rfi and
  oped2: long-form articles with YAML front matter).

Rules: the example config's (config/monitor.yaml). Each case runs ``--repeat``
times (each import on a fresh database) and keeps its best CPU time of this
process and its best wall time. With SQLite the whole import runs in this
process, so CPU time is its cost; on a shared machine other programs only add
wall time, and the WAL's occasional fsync is the rest of the difference. Rates
(items/s) are given for both. No thresholds: the figures and their ratios are
the result.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support.articles import rfi_like_articles  # noqa: E402
from monitor.archive.files import (  # noqa: E402
    import_archive,
    iter_archive_paths,
    read_archive_file,
    write_item,
)
from monitor.archive.format import archive_filename, entry_to_item  # noqa: E402
from monitor.config import load_config  # noqa: E402
from monitor.items import item_key  # noqa: E402
from monitor.match import compile_rules  # noqa: E402
from monitor.store import Store  # noqa: E402
from monitor.types import Item, MatchingFunctions  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus"
NO_ALERTS = 2**62
NOW = 1_800_000_000_000


def synthesize(folder: Path, n: int) -> int:
    """``n`` RFI-like items as archive files; returns the bytes written."""
    total = 0
    for article in rfi_like_articles(n, per_stamp=5):
        key = item_key(article.link, None)
        assert key is not None
        item = Item(
            key=key,
            url=article.link,
            title=article.title,
            published_ms=article.pub_ms,
            feed_id="archive",
            content=article.html,
        )
        write_item(folder, item)
        total += (folder / archive_filename(item)).stat().st_size
    return total


def best(
    fn: Callable[[], object], repeat: int, setup: Callable[[], None] | None = None
) -> tuple[tuple[float, float], object]:
    """(best CPU seconds, best wall seconds) of ``repeat`` runs (setup untimed), and
    the last result."""
    cpu, wall, result = [], [], None
    for _ in range(repeat):
        if setup:
            setup()
        c, t = time.process_time(), time.perf_counter()
        result = fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
    return (min(cpu), min(wall)), result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--naive", type=int, default=1_000, help="items in the naive sample")
    ap.add_argument(
        "--pg",
        help="also time the import into this PostgreSQL URL "
        "(its public schema is dropped and recreated)",
    )
    ap.add_argument("--quick", action="store_true", help="2,000 items, one run")
    args = ap.parse_args()
    if args.quick:
        args.items, args.repeat, args.naive = 2_000, 1, 200

    loaded = load_config(REPO / "config" / "monitor.yaml")
    rules = compile_rules(loaded.rule_specs())
    feed_ids = [f.id for f in loaded.config.feeds]
    print(
        f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; rules: {len(rules)} (config/monitor.yaml)"
    )

    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        src = Path(tmp) / "archive"
        src.mkdir()
        size = synthesize(src, args.items)
        files = list(iter_archive_paths([src]))
        n = len(files)
        print(f"{n} archive files, {size / n / 1024:.1f} KiB each on average\n")
        db = Path(tmp) / "bench.db"

        def fresh() -> None:
            for p in Path(tmp).glob("bench.db*"):
                p.unlink()
            Store(f"sqlite:///{db}").close()  # migrations are not part of the import

        def parse_only() -> object:
            return [entry_to_item(read_archive_file(p), "archive") for p in files]

        def parse_match() -> object:
            return [
                rules.match(it, feed_ids)
                for it in (entry_to_item(read_archive_file(p), "archive") for p in files)
            ]

        def run_import(url: str, paths: list[Path]) -> Callable[[], object]:
            def go() -> object:
                store = Store(url)
                try:
                    return import_archive(store, paths, rules=rules, feed_ids=feed_ids, now_ms=NOW)
                finally:
                    store.close()

            return go

        sample = files[: args.naive]
        sample_items = [entry_to_item(read_archive_file(p), "archive") for p in sample]

        def naive() -> object:
            store = Store(f"sqlite:///{db}")
            matching = MatchingFunctions(lambda i, f: rules.match(i, feed_ids), lambda r: ())
            try:
                for it in sample_items:
                    store.items.ingest(
                        "archive", [it], NOW, matching, alert_min_published_ms=NO_ALERTS
                    )
            finally:
                store.close()
            return None

        rows: list[tuple[str, int, tuple[float, float]]] = []
        t, _ = best(parse_only, args.repeat)
        rows.append(("read + parse (no database, no matching)", n, t))
        t, _ = best(parse_match, args.repeat)
        rows.append(("read + parse + match (no database)", n, t))
        t, report = best(run_import(f"sqlite:///{db}", files), args.repeat, fresh)
        assert report.new == n and report.invalid == 0, report  # type: ignore[attr-defined]
        rows.append(("import into SQLite", n, t))
        t, again = best(run_import(f"sqlite:///{db}", files), args.repeat)
        assert again.new == 0 and again.duplicate == n, again  # type: ignore[attr-defined]
        rows.append(("re-import (all duplicates)", n, t))
        t, _ = best(naive, args.repeat, fresh)
        rows.append((f"naive: one Store.ingest per item ({len(sample)} items)", len(sample), t))
        if args.pg:
            from sqlalchemy import create_engine, text

            def pg_fresh() -> None:
                engine = create_engine(args.pg)
                with engine.begin() as conn:
                    conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                    conn.execute(text("CREATE SCHEMA public"))
                engine.dispose()
                Store(args.pg).close()

            t, _ = best(run_import(args.pg, files), args.repeat, pg_fresh)
            rows.append(("import into PostgreSQL", n, t))

        corpus = [CORPUS / "rfi", CORPUS / "oped2"]
        if all(p.is_dir() for p in corpus):
            cfiles = [p for p in iter_archive_paths(corpus) if p.name != "SOURCE.md"]
            t, _ = best(
                lambda: [entry_to_item(read_archive_file(p), "archive") for p in cfiles],
                args.repeat,
            )
            rows.append(("corpus: read + parse", len(cfiles), t))
            t, rep = best(run_import(f"sqlite:///{db}", cfiles), args.repeat, fresh)
            rows.append(
                (
                    f"corpus: import into SQLite ({rep.new} new, "  # type: ignore
                    f"{rep.duplicate} duplicate)",
                    len(cfiles),
                    t,
                )
            )  # type: ignore
        else:
            print(f"({CORPUS} not present: corpus rows skipped)\n")

    cpu_rate = {label: count / secs[0] for label, count, secs in rows}
    wall_rate = {label: count / secs[1] for label, count, secs in rows}
    imp = "import into SQLite"
    naive = next(k for k in cpu_rate if k.startswith("naive"))
    width = max(len(label) for label, _, _ in rows)
    print(
        f"{'case':<{width}}  {'items':>6}  {'CPU s':>7}  {'items/s':>8}  {'wall s':>7}  "
        f"{'items/s':>8}  {'import/this':>11}"
    )
    for label, count, (cpu, wall) in rows:
        print(
            f"{label:<{width}}  {count:>6}  {cpu:>7.3f}  {count / cpu:>8,.0f}  "
            f"{wall:>7.3f}  {count / wall:>8,.0f}  {cpu_rate[imp] / cpu_rate[label]:>10.2f}x"
        )
    parse = "read + parse (no database, no matching)"
    print(
        f"\nimport into SQLite: {cpu_rate[imp]:,.0f} items per CPU second "
        f"({wall_rate[imp]:,.0f} per wall-clock second in this run); "
        f"{cpu_rate[imp] / cpu_rate[naive]:.1f}x the naive per-item path, "
        f"{cpu_rate[imp] / cpu_rate[parse]:.2f}x the speed of reading and parsing alone"
    )


if __name__ == "__main__":
    main()
