"""A feed farm for the poll-cycle benchmarks: N feeds on 127.0.0.1, one asyncio process.

    python bench/farm.py --feeds 5000 [--latency 0.01-0.05] [--hang 20] [--seed 1]

Prints ``PORT <n>`` once listening, then serves until stdin closes (the benchmark that
started it is gone) or SIGTERM. One event loop in its own process: the farm's work
neither shares a GIL with the client being measured nor needs a thread per waiting
request (hung "timeout" feeds cost a sleeping task, not a thread). HTTP/1.1 with
keep-alive and gzip, as real news servers answer.

The mix, fixed per block of 20 consecutive feeds (so the first N feeds of the farm have
the same mix as all of them, whatever N a growth step uses), shuffled within the block
by the seed:

- ``same`` (16 of 20, 80 %): never changes; ETag and Last-Modified, so every poll after
  the first is a conditional GET answered 304. Its body (first poll only) is 10 items
  with a short summary, about 11 KB (4 KB gzipped).
- ``changed`` (3 of 20, 15 %): 50 RFI 中文 items with their full HTML bodies (from
  ../shared/corpus/rfi when present, else RFI-shaped synthetic ones), about 280 KB;
  each cycle 3 new items appear on top and the other 47 repeat (85 KB gzipped).
- a fault (1 of 20, 5 %), by block in turn: ``timeout`` (reads the request, answers
  nothing for ``--hang`` seconds, then closes), ``error`` (HTTP 500), ``malformed``
  (HTTP 200 with a truncated, item-less RSS document).

Each answer to a feed waits a uniform random time within ``--latency`` first, as a
server some distance away would.

Feeds are at ``/<ns>/feed/<n>``. A namespace (``ns``, any short name) is one client's
view: it has its own cycle counter, so two clients measured one after the other on one
farm each see "3 new items since my last poll", not the other's cycles as well.

Control (not delayed):

- ``GET /_advance?ns=a&upto=N`` starts the namespace's next cycle and renders the
  changed feeds below N at once, so the measured cycle does not pay for rendering;
- ``GET /_stats?ns=a`` answers counts per outcome (and bytes sent) as JSON since the
  last ``/_stats?ns=a&reset=1``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import random
import re
import signal
import stat
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parents[1]
RFI = REPO.parent / "shared" / "corpus" / "rfi"
ITEM = re.compile(r"^<!--(\d{12,13})-->\n\[(.*)\]\(([^)\s]+)\)\n------\n\n(.*)\Z", re.S | re.M)
BLOCK = ("same",) * 16 + ("changed",) * 3 + ("fault",)
FAULTS = ("timeout", "error", "malformed")
NEW_PER_CYCLE = 3
CHANGED_ITEMS = 50
SAME_ITEMS = 10
BASE_MS = 1_690_000_000_000
HANZI = "中国俄罗斯乌克兰习近平普京北京莫斯科西方关系和平计划总统访问峰会战略伙伴时代经济欧洲"
# A document that starts as RSS and stops mid-tag: no item can be read from it.
MALFORMED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
             b"<title>oops &bogus; <item><title>\xe4\xb8\xad\xe4\xbf\x84 <link>http://")


def corpus_articles() -> tuple[list[tuple[str, str, str]], str]:
    """(title, url, html body) of the RFI archive items, or RFI-shaped synthetic ones."""
    out = []
    if RFI.is_dir():
        for path in sorted(RFI.glob("*.md")):
            m = ITEM.search(path.read_text(encoding="utf-8"))
            if m:
                out.append((m[2], m[3], m[4]))
    if out:
        return out, f"{len(out)} items of {RFI}"
    rng = random.Random(42)
    for i in range(160):
        title = f"新闻{i}：" + "".join(rng.choice(HANZI) for _ in range(16)) + "&quot;特殊&quot;"
        url = f"https://www.rfi.fr/cn/%E5%9B%BD%E9%99%85/2023032{i % 10}-{i}"
        paragraphs = "".join(
            "<p><span><span><span>" + "".join(rng.choice(HANZI) for _ in range(120))
            + "。</span></span></span></p>" for _ in range(12))
        out.append((title, url, f'<div>22/03/2023 - 15:10</div><img src="https://s.rfi.fr/'
                    f'x{i}.jpg">{paragraphs}'))
    return out, "synthetic RFI-shaped items (corpus absent)"


def kind_of(index: int, seed: int) -> str:
    """The kind of feed ``index``: the block's pattern shuffled by (seed, block)."""
    block, pos = divmod(index, len(BLOCK))
    order = list(BLOCK)
    random.Random(seed * 1_000_003 + block).shuffle(order)
    kind = order[pos]
    return FAULTS[block % len(FAULTS)] if kind == "fault" else kind


@dataclass
class Body:
    raw: bytes
    gz: bytes
    etag: str
    last_modified: str


def _rss(title: str, items: list[tuple[int, str, str, str]]) -> bytes:
    """RSS 2.0 the way ../shared/tools/serve-corpus renders archive items."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>',
           f"<title>{escape(title)}</title><link>https://www.rfi.fr/cn/</link>",
           f"<description>{escape(title)}</description>"]
    for ms, t, url, body in items:
        pub = format_datetime(datetime.fromtimestamp(ms / 1000, UTC), usegmt=True)
        body = body.replace("]]>", "]]]]><![CDATA[>")
        out.append(f"<item><title>{escape(t)}</title><link>{escape(url)}</link>"
                   f"<guid>{escape(url)}</guid><pubDate>{pub}</pubDate>"
                   f"<description><![CDATA[{body}]]></description></item>")
    out.append("</channel></rss>")
    return "".join(out).encode("utf-8")


class Farm:
    def __init__(self, latency: tuple[float, float], hang: float, seed: int) -> None:
        self.latency = latency
        self.hang = hang
        self.seed = seed
        self.rng = random.Random(seed)
        self.articles, self.source = corpus_articles()
        self.generation: dict[str, int] = {}
        self.stats: dict[str, Counter[str]] = {}
        self._same: dict[int, Body] = {}
        self._changed: dict[tuple[int, int], Body] = {}

    def _item(self, index: int, k: int, summary: bool) -> tuple[int, str, str, str]:
        """Item ``k`` of feed ``index`` (k grows with time): fixed, so a repeat is a repeat."""
        title, url, body = self.articles[(index * 7 + k) % len(self.articles)]
        # A URL of its own per feed and item, in RFI's shape (percent-encoded Chinese path).
        url = f"https://www.rfi.fr/cn/f{index}-{k}/{url.rstrip('/').rsplit('/', 1)[-1]}"
        if summary:
            text = re.sub(r"<[^>]+>", "", body)
            body = f"<p>{escape(text[:150])}</p>"
        return BASE_MS + k * 60_000, title, url, body

    @staticmethod
    def _body(raw: bytes) -> Body:
        etag = '"' + hashlib.sha1(raw).hexdigest()[:20] + '"'
        # Last-Modified is a function of the content too, so it is the same for every
        # namespace and every restart of the farm.
        ms = BASE_MS + int(hashlib.sha1(raw).hexdigest()[:8], 16)
        lm = format_datetime(datetime.fromtimestamp(ms / 1000, UTC), usegmt=True)
        return Body(raw, gzip.compress(raw, 6), etag, lm)

    def same_body(self, index: int) -> Body:
        if index not in self._same:
            items = [self._item(index, k, True) for k in reversed(range(SAME_ITEMS))]
            self._same[index] = self._body(_rss(f"feed {index}", items))
        return self._same[index]

    def changed_body(self, index: int, gen: int) -> Body:
        key = (index, gen)
        if key not in self._changed:
            first = gen * NEW_PER_CYCLE
            items = [self._item(index, k, False)
                     for k in reversed(range(first, first + CHANGED_ITEMS))]
            self._changed[key] = self._body(_rss(f"RFI feed {index}", items))
        return self._changed[key]

    def advance(self, ns: str, upto: int) -> int:
        gen = self.generation.get(ns, 0) + 1
        self.generation[ns] = gen
        # Bodies of generations no namespace can ask for any more.
        low = min(self.generation.values())
        for key in [k for k in self._changed if k[1] < low]:
            del self._changed[key]
        for i in range(upto):
            if kind_of(i, self.seed) == "changed":
                self.changed_body(i, gen)
        return gen

    def control(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str],
                                                                       bytes]:
        ns = query.get("ns", ["default"])[0]
        if path == "/_advance":
            gen = self.advance(ns, int(query.get("upto", ["0"])[0]))
            return 200, {"Content-Type": "text/plain"}, f"{gen}\n".encode()
        if path == "/_stats":
            counts = dict(self.stats.get(ns, Counter()))
            counts["generation"] = self.generation.get(ns, 0)
            if query.get("reset"):
                self.stats[ns] = Counter()
            return 200, {"Content-Type": "application/json"}, json.dumps(counts).encode()
        return 404, {"Content-Type": "text/plain"}, b"unknown control path\n"

    async def feed(self, ns: str, index: int, headers: dict[str, str]
                   ) -> tuple[int, dict[str, str], bytes] | None:
        """The answer to one feed request; None means hang up without answering."""
        stats = self.stats.setdefault(ns, Counter())
        await asyncio.sleep(self.rng.uniform(*self.latency))
        kind = kind_of(index, self.seed)
        if kind == "timeout":
            stats["timeout"] += 1
            await asyncio.sleep(self.hang)
            return None
        if kind == "error":
            stats["500"] += 1
            return 500, {"Content-Type": "text/html"}, b"<h1>Internal Server Error</h1>\n"
        if kind == "malformed":
            stats["malformed"] += 1
            return 200, {"Content-Type": "application/rss+xml; charset=utf-8"}, MALFORMED
        if kind == "same":
            body = self.same_body(index)
        else:
            body = self.changed_body(index, self.generation.setdefault(ns, 0))
        out = {"Content-Type": "application/rss+xml; charset=utf-8", "ETag": body.etag,
               "Last-Modified": body.last_modified}
        inm = headers.get("if-none-match")
        if (inm is not None and body.etag in [t.strip() for t in inm.split(",")]) or (
                inm is None and headers.get("if-modified-since") == body.last_modified):
            stats["304"] += 1
            return 304, out, b""
        stats[f"200-{kind}"] += 1
        if "gzip" in headers.get("accept-encoding", ""):
            out["Content-Encoding"] = "gzip"
            out["Vary"] = "Accept-Encoding"
            stats["bytes"] += len(body.gz)
            return 200, out, body.gz
        stats["bytes"] += len(body.raw)
        return 200, out, body.raw

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _version = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                if int(headers.get("content-length") or 0):
                    await reader.readexactly(int(headers["content-length"]))
                parts = urlsplit(target)
                answer: tuple[int, dict[str, str], bytes] | None
                if parts.path.startswith("/_"):
                    answer = self.control(parts.path, parse_qs(parts.query))
                else:
                    m = re.fullmatch(r"/([\w-]{1,32})/feed/(\d+)", parts.path)
                    answer = (await self.feed(m[1], int(m[2]), headers) if m else
                              (404, {"Content-Type": "text/plain"}, b"no such feed\n"))
                if answer is None:
                    break  # a hung feed: close without a word
                status, out, body = answer
                reason = {200: "OK", 304: "Not Modified", 404: "Not Found",
                          500: "Internal Server Error"}[status]
                out["Content-Length"] = str(len(body))
                writer.write(f"HTTP/1.1 {status} {reason}\r\n".encode() + "".join(
                    f"{k}: {v}\r\n" for k, v in out.items()).encode() + b"\r\n"
                    + (body if method != "HEAD" else b""))
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                ValueError):
            pass
        except asyncio.CancelledError:
            # The farm is stopping while a hung feed still holds its connection: this
            # task ends here, quietly (asyncio.run cancels whatever is left at exit).
            pass
        finally:
            writer.close()


async def serve(args: argparse.Namespace) -> None:
    low, _, high = args.latency.partition("-")
    farm = Farm((float(low), float(high or low)), args.hang, args.seed)
    # Bodies of the feeds that never change, rendered before the first client comes.
    for i in range(args.feeds):
        if kind_of(i, args.seed) == "same":
            farm.same_body(i)
    server = await asyncio.start_server(farm.handle, "127.0.0.1", args.port, backlog=4096)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    print(f"SOURCE {farm.source}", flush=True)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_signal_handler(signal.SIGINT, done.set)
    # stdin closing means the benchmark that started us is gone (when stdin is a pipe;
    # epoll cannot watch a file or /dev/null, and then SIGTERM is the way to stop).
    if stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
        loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.read() or done.set())
    async with server:
        await done.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--feeds", type=int, default=5000, help="feeds whose bodies are rendered "
                   "at start (any index answers)")
    p.add_argument("--latency", default="0.01-0.05", help="seconds before each answer, LOW-HIGH")
    p.add_argument("--hang", type=float, default=20.0,
                   help="seconds a 'timeout' feed holds the connection before closing it")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--port", type=int, default=0)
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
