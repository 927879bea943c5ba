"""The benchmarks' feed farm: N feeds on 127.0.0.1, one asyncio process, two mixes.

    python bench/support/farm.py --feeds 5000 [--latency 0.01-0.05] [--hang 20] [--seed 1]
    python bench/support/farm.py --feeds 600 --mix etag=60,plain=20,news=20 --latency 0.05-0.1
    python bench/support/farm.py --feeds 5000 --hosts 64 --new 1 --hang 5
    python bench/support/farm.py --feeds 1000 --hosts 64 --faults timeout --hang 5

Prints ``PORT <n>`` and ``SOURCE <where the articles come from>`` once listening, then
serves until stdin closes (the benchmark that started it is gone) or SIGTERM.
``FarmProcess`` starts it from a benchmark and speaks its control paths. One event loop
in its own process: the farm's work neither shares a GIL with the client being measured
nor needs a thread per waiting request (hung "timeout" feeds cost a sleeping task, not a
thread). HTTP/1.1 with keep-alive, as real news servers answer.

Feeds are at ``/<ns>/feed/<n>``, on 127.0.0.1 and, with ``--hosts N``, on the same port
of 127.0.1.1 ... 127.0.1.N as well (Linux routes all of 127/8 to the loopback interface):
N more host names for a client's per-host limits, one process serving them all. A
namespace (``ns``, any short name) is one client's view: it has its own cycle counter, so
two clients measured one after the other on one farm each see "3 new items since my last
poll", not the other's cycles as well.

The ``rfi`` mix (the default; bench/cycle.py, bench/memory.py), fixed per block of 20
consecutive feeds (so the first N feeds of the farm have the same mix as all of them,
whatever N a growth step uses), shuffled within the block by the seed:

- ``same`` (16 of 20, 80 %): never changes; ETag and Last-Modified, so every poll after
  the first is a conditional GET answered 304. Its body (first poll only) is 10 items
  with a short summary, about 11 KB (4 KB gzipped).
- ``changed`` (3 of 20, 15 %): 50 RFI 中文 items with their full HTML bodies (from
  ../shared/corpus/rfi when present, else RFI-shaped synthetic ones), about 280 KB;
  each cycle ``--new`` new items (3 unless told) appear on top and the others repeat
  (85 KB gzipped).
- a fault (1 of 20, 5 %), by block in turn: ``timeout`` (reads the request, answers
  nothing for ``--hang`` seconds, then closes), ``error`` (HTTP 500), ``malformed``
  (HTTP 200 with a truncated, item-less RSS document). ``--faults timeout`` makes every
  fault a ``timeout`` (5 % of the feeds hang; bench/hosts.py).

Bodies are gzipped for a client that accepts it.

The weighted mix (``--mix etag=60,plain=20,news=20``; bench/scale.py), each feed's kind
and size drawn by the seed, one view shared by every namespace:

- ``etag``: unchanged between cycles, with ETag and Last-Modified, so every poll after
  the first is a conditional GET answered 304;
- ``plain``: unchanged, but without validators (many servers send none), so every poll
  downloads and parses the whole feed and finds only repeats;
- ``news``: one or two new articles per cycle, with validators, so a poll gets 200 and
  stores the new articles; about a third of them match bench/scale.py's rules.

Its feeds hold 10, 20, 30 or 50 items (RFI's hold 50), each with a paragraph of Chinese,
sent without compression.

Each answer to a feed waits a uniform random time within ``--latency`` first, as a
server some distance away would.

Control (not delayed):

- ``GET /_advance?ns=a&upto=N`` starts the namespace's next cycle and renders the
  changed feeds below N at once, so the measured cycle does not pay for rendering;
- ``GET /_stats?ns=a`` answers counts per outcome (and bytes sent) as JSON since the
  last ``/_stats?ns=a&reset=1``;
- ``POST /_publish?ns=a&feed=N`` with an RSS document as the body: feed N of the
  namespace serves that document from now on, with validators (bench/latency.py
  publishes its articles so).
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
import subprocess
import sys
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, formatdate
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parents[2]
RFI = REPO.parent / "shared" / "corpus" / "rfi"
ITEM = re.compile(r"^<!--(\d{12,13})-->\n\[(.*)\]\(([^)\s]+)\)\n------\n\n(.*)\Z", re.S | re.M)
BLOCK = ("same",) * 16 + ("changed",) * 3 + ("fault",)
FAULTS = ("timeout", "error", "malformed")
NEW_PER_CYCLE = 3  # the default of --new
CHANGED_ITEMS = 50
SAME_ITEMS = 10
BASE_MS = 1_690_000_000_000
HANZI = "中国俄罗斯乌克兰习近平普京北京莫斯科西方关系和平计划总统访问峰会战略伙伴时代经济欧洲"
# A document that starts as RSS and stops mid-tag: no item can be read from it.
MALFORMED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
    b"<title>oops &bogus; <item><title>\xe4\xb8\xad\xe4\xbf\x84 <link>http://"
)
RSS_TYPE = "application/rss+xml; charset=utf-8"
DEFAULT_WEIGHTS = "etag=60,plain=20,news=20"
WEIGHTED_BASE_MS = 1_700_000_000_000
WEIGHTED_HANZI = (
    "中国俄罗斯乌克兰法国美国欧洲北京巴黎莫斯科总统访问峰会经济战略伙伴关系和平计划时代新闻"
)

# (status, headers, body) of one answer; None: hang up without answering.
Answer = tuple[int, dict[str, str], bytes]


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
            "<p><span><span><span>"
            + "".join(rng.choice(HANZI) for _ in range(120))
            + "。</span></span></span></p>"
            for _ in range(12)
        )
        out.append(
            (
                title,
                url,
                f'<div>22/03/2023 - 15:10</div><img src="https://s.rfi.fr/x{i}.jpg">{paragraphs}',
            )
        )
    return out, "synthetic RFI-shaped items (corpus absent)"


def kind_of(index: int, seed: int, faults: tuple[str, ...] = FAULTS) -> str:
    """The kind of feed ``index`` in the rfi mix: the block's pattern shuffled by (seed,
    block); the fault of a block is the next of ``faults``, in turn."""
    block, pos = divmod(index, len(BLOCK))
    order = list(BLOCK)
    random.Random(seed * 1_000_003 + block).shuffle(order)
    kind = order[pos]
    return faults[block % len(faults)] if kind == "fault" else kind


@dataclass
class Body:
    raw: bytes
    gz: bytes | None
    etag: str
    last_modified: str


def content_body(raw: bytes, compress: bool = True) -> Body:
    """A body with validators that are a function of the content, so they are the same
    for every namespace and every restart of the farm."""
    digest = hashlib.sha1(raw).hexdigest()
    ms = BASE_MS + int(digest[:8], 16)
    lm = format_datetime(datetime.fromtimestamp(ms / 1000, UTC), usegmt=True)
    return Body(raw, gzip.compress(raw, 6) if compress else None, f'"{digest[:20]}"', lm)


def rss(
    title: str, items: list[tuple[int, str, str, str]], link: str = "https://www.rfi.fr/cn/"
) -> bytes:
    """RSS 2.0 the way ../shared/tools/serve-corpus renders archive items: (published ms,
    title, url, html body), in the order given."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>',
        f"<title>{escape(title)}</title><link>{escape(link)}</link>",
        f"<description>{escape(title)}</description>",
    ]
    for ms, t, url, body in items:
        pub = format_datetime(datetime.fromtimestamp(ms / 1000, UTC), usegmt=True)
        body = body.replace("]]>", "]]]]><![CDATA[>")
        out.append(
            f"<item><title>{escape(t)}</title><link>{escape(url)}</link>"
            f"<guid>{escape(url)}</guid><pubDate>{pub}</pubDate>"
            f"<description><![CDATA[{body}]]></description></item>"
        )
    out.append("</channel></rss>")
    return "".join(out).encode("utf-8")


def conditional(body: Body, headers: dict[str, str]) -> bool:
    """Whether a request's validators match ``body`` (the answer is then 304)."""
    inm = headers.get("if-none-match")
    if inm is not None:
        return body.etag in [t.strip() for t in inm.split(",")]
    return headers.get("if-modified-since") == body.last_modified


def send(
    body: Body, headers: dict[str, str], stats: Counter[str], label: str, validators: bool = True
) -> Answer:
    """The answer for ``body``: 304 when the validators match, else 200 (gzipped if the
    body has a gzipped form and the client accepts it)."""
    out = {"Content-Type": RSS_TYPE}
    if validators:
        out.update({"ETag": body.etag, "Last-Modified": body.last_modified})
        if conditional(body, headers):
            stats["304"] += 1
            return 304, out, b""
    stats[label] += 1
    if body.gz is not None and "gzip" in headers.get("accept-encoding", ""):
        out["Content-Encoding"] = "gzip"
        out["Vary"] = "Accept-Encoding"
        stats["bytes"] += len(body.gz)
        return 200, out, body.gz
    stats["bytes"] += len(body.raw)
    return 200, out, body.raw


class Mix(Protocol):
    """What the farm serves at ``/<ns>/feed/<n>``."""

    source: str

    def advance(self, generation: int, upto: int) -> None:
        """A namespace's cycle ``generation`` begins: render its feeds below ``upto``."""

    def forget_before(self, generation: int) -> None:
        """No namespace asks for generations before ``generation`` any more."""

    async def answer(
        self, generation: int, index: int, headers: dict[str, str], stats: Counter[str]
    ) -> Answer | None:
        """The answer to a request for feed ``index`` in cycle ``generation``; None: hang
        up without a word."""


class RfiMix:
    """The rfi mix (see the module docstring): kinds by block, RFI articles."""

    def __init__(
        self,
        feeds: int,
        hang: float,
        seed: int,
        faults: tuple[str, ...] = FAULTS,
        new_per_cycle: int = NEW_PER_CYCLE,
    ) -> None:
        self.hang = hang
        self.seed = seed
        self.faults = faults
        self.new_per_cycle = new_per_cycle
        self.articles, self.source = corpus_articles()
        self._same: dict[int, Body] = {}
        self._changed: dict[tuple[int, int], Body] = {}
        self._low = 0
        # Bodies of the feeds that never change, rendered before the first client comes.
        for i in range(feeds):
            if kind_of(i, seed, faults) == "same":
                self.same_body(i)

    def _item(self, index: int, k: int, summary: bool) -> tuple[int, str, str, str]:
        """Item ``k`` of feed ``index`` (k grows with time): fixed, so a repeat is a repeat."""
        title, url, body = self.articles[(index * 7 + k) % len(self.articles)]
        # A URL of its own per feed and item, in RFI's shape (percent-encoded Chinese path).
        url = f"https://www.rfi.fr/cn/f{index}-{k}/{url.rstrip('/').rsplit('/', 1)[-1]}"
        if summary:
            text = re.sub(r"<[^>]+>", "", body)
            body = f"<p>{escape(text[:150])}</p>"
        return BASE_MS + k * 60_000, title, url, body

    def same_body(self, index: int) -> Body:
        if index not in self._same:
            items = [self._item(index, k, True) for k in reversed(range(SAME_ITEMS))]
            self._same[index] = content_body(rss(f"feed {index}", items))
        return self._same[index]

    def changed_body(self, index: int, gen: int) -> Body:
        key = (index, gen)
        if key not in self._changed:
            first = gen * self.new_per_cycle
            items = [
                self._item(index, k, False) for k in reversed(range(first, first + CHANGED_ITEMS))
            ]
            self._changed[key] = content_body(rss(f"RFI feed {index}", items))
        return self._changed[key]

    def forget_before(self, generation: int) -> None:
        for key in [k for k in self._changed if k[1] < generation]:
            del self._changed[key]

    def advance(self, generation: int, upto: int) -> None:
        for i in range(upto):
            if kind_of(i, self.seed, self.faults) == "changed":
                self.changed_body(i, generation)

    async def answer(
        self, generation: int, index: int, headers: dict[str, str], stats: Counter[str]
    ) -> Answer | None:
        kind = kind_of(index, self.seed, self.faults)
        if kind == "timeout":
            stats["timeout"] += 1
            await asyncio.sleep(self.hang)
            return None
        if kind == "error":
            stats["500"] += 1
            return 500, {"Content-Type": "text/html"}, b"<h1>Internal Server Error</h1>\n"
        if kind == "malformed":
            stats["malformed"] += 1
            return 200, {"Content-Type": RSS_TYPE}, MALFORMED
        body = self.same_body(index) if kind == "same" else self.changed_body(index, generation)
        return send(body, headers, stats, f"200-{kind}")


@dataclass
class _WeightedFeed:
    index: int
    kind: str
    size: int
    articles: list[tuple[int, str, str, str]] = field(default_factory=list)  # newest first
    body: Body | None = None


class WeightedMix:
    """The weighted mix (see the module docstring): kinds and sizes drawn by the seed."""

    source = "synthetic articles of one paragraph each"

    def __init__(self, feeds: int, seed: int, weights: str = DEFAULT_WEIGHTS) -> None:
        self.rng = random.Random(seed)
        shares = {k: float(v) for k, v in (part.split("=") for part in weights.split(","))}
        self.generation = 0
        self.serial = 0
        self.feeds = [
            _WeightedFeed(
                i,
                self.rng.choices(list(shares), list(shares.values()))[0],
                self.rng.choice((10, 20, 30, 50)),
            )
            for i in range(feeds)
        ]
        for f in self.feeds:
            f.articles = [self._article(f) for _ in range(f.size)]
            self._render(f)

    def _article(self, f: _WeightedFeed) -> tuple[int, str, str, str]:
        self.serial += 1
        n = self.serial
        words = "".join(self.rng.choice(WEIGHTED_HANZI) for _ in range(14))
        # About a third of the articles carry one of the benchmark's keywords.
        topic = {0: "中俄", 3: "乌克兰"}.get(n % 6, "")
        title = f"{topic}{words[:10]} {n}"
        link = f"https://news.example/{f.index:04d}/{n}"
        body = "<p>" + "".join(self.rng.choice(WEIGHTED_HANZI) for _ in range(300)) + "</p>"
        return WEIGHTED_BASE_MS + n * 1000, title, link, body

    @staticmethod
    def _render(f: _WeightedFeed) -> None:
        raw = rss(f"farm {f.index}", f.articles, link="https://news.example/")
        digest = hashlib.sha1(raw).hexdigest()
        f.body = Body(raw, None, f'"{digest[:16]}"', formatdate(usegmt=True))

    def advance(self, generation: int, upto: int) -> None:
        # One view for every namespace: the first to reach a generation moves the feeds.
        while self.generation < generation:
            self.generation += 1
            for f in self.feeds:
                if f.kind == "news":
                    new = [self._article(f) for _ in range(self.rng.randint(1, 2))]
                    f.articles = (new + f.articles)[: f.size]
                    self._render(f)

    def forget_before(self, generation: int) -> None:
        pass  # nothing kept per generation

    async def answer(
        self, generation: int, index: int, headers: dict[str, str], stats: Counter[str]
    ) -> Answer | None:
        if index >= len(self.feeds):
            stats["404"] += 1
            return 404, {"Content-Type": "text/plain"}, b"no such feed\n"
        f = self.feeds[index]
        assert f.body is not None
        return send(f.body, headers, stats, "200", validators=f.kind != "plain")


class Farm:
    """The HTTP side: feeds of a mix, published feeds, control paths, answer delays."""

    def __init__(self, mix: Mix, latency: tuple[float, float], seed: int) -> None:
        self.mix = mix
        self.latency = latency
        self.rng = random.Random(seed)
        self.generation: dict[str, int] = {}
        self.stats: dict[str, Counter[str]] = {}
        self.published: dict[tuple[str, int], Body] = {}

    def advance(self, ns: str, upto: int) -> int:
        gen = self.generation.get(ns, 0) + 1
        self.generation[ns] = gen
        self.mix.forget_before(min(self.generation.values()))
        self.mix.advance(gen, upto)
        return gen

    def control(self, path: str, query: dict[str, list[str]], data: bytes) -> Answer:
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
        if path == "/_publish":
            self.published[ns, int(query["feed"][0])] = content_body(data, compress=False)
            return 200, {"Content-Type": "text/plain"}, b"published\n"
        return 404, {"Content-Type": "text/plain"}, b"unknown control path\n"

    async def feed(self, ns: str, index: int, headers: dict[str, str]) -> Answer | None:
        """The answer to one feed request, after the latency."""
        stats = self.stats.setdefault(ns, Counter())
        await asyncio.sleep(self.rng.uniform(*self.latency))
        published = self.published.get((ns, index))
        if published is not None:
            return send(published, headers, stats, "200-published")
        return await self.mix.answer(self.generation.setdefault(ns, 0), index, headers, stats)

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
                data = b""
                if int(headers.get("content-length") or 0):
                    data = await reader.readexactly(int(headers["content-length"]))
                parts = urlsplit(target)
                answer: Answer | None
                if parts.path.startswith("/_"):
                    answer = self.control(parts.path, parse_qs(parts.query), data)
                else:
                    m = re.fullmatch(r"/([\w-]{1,32})/feed/(\d+)", parts.path)
                    answer = (
                        await self.feed(m[1], int(m[2]), headers)
                        if m
                        else (404, {"Content-Type": "text/plain"}, b"no such feed\n")
                    )
                if answer is None:
                    break  # a hung feed: close without a word
                status, out, body = answer
                reason = {
                    200: "OK",
                    304: "Not Modified",
                    404: "Not Found",
                    500: "Internal Server Error",
                }[status]
                out["Content-Length"] = str(len(body))
                writer.write(
                    f"HTTP/1.1 {status} {reason}\r\n".encode()
                    + "".join(f"{k}: {v}\r\n" for k, v in out.items()).encode()
                    + b"\r\n"
                    + (body if method != "HEAD" else b"")
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            ValueError,
            KeyError,
        ):
            pass
        except asyncio.CancelledError:
            # The farm is stopping while a hung feed still holds its connection: this
            # task ends here, quietly (asyncio.run cancels whatever is left at exit).
            pass
        finally:
            writer.close()


def parse_latency(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    return float(low), float(high or low)


async def serve(args: argparse.Namespace) -> None:
    mix: Mix = (
        RfiMix(args.feeds, args.hang, args.seed, tuple(args.faults.split(",")), args.new)
        if args.mix == "rfi"
        else WeightedMix(args.feeds, args.seed, args.mix)
    )
    farm = Farm(mix, parse_latency(args.latency), args.seed)
    server = await asyncio.start_server(farm.handle, "127.0.0.1", args.port, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    more = [
        await asyncio.start_server(farm.handle, f"127.0.1.{i}", port, backlog=4096)
        for i in range(1, args.hosts + 1)
    ]
    print(f"PORT {port}", flush=True)
    print(f"SOURCE {mix.source}", flush=True)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_signal_handler(signal.SIGINT, done.set)

    # stdin closing means the benchmark that started us is gone (when stdin is a pipe;
    # epoll cannot watch a file or /dev/null, and then SIGTERM is the way to stop).
    def on_stdin() -> None:
        if not sys.stdin.read():
            done.set()

    if stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
        loop.add_reader(sys.stdin.fileno(), on_stdin)
    async with server:
        await done.wait()
    for other in more:
        other.close()


class FarmProcess:
    """The farm in its own process; stopped by closing its stdin (or on exit)."""

    def __init__(
        self,
        feeds: int,
        latency: str = "0.01-0.05",
        hang: float = 20.0,
        seed: int = 1,
        mix: str = "rfi",
        hosts: int = 0,
        faults: str = ",".join(FAULTS),
        new_per_cycle: int = NEW_PER_CYCLE,
    ) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__)),
                "--feeds",
                str(feeds),
                "--latency",
                latency,
                "--hang",
                str(hang),
                "--seed",
                str(seed),
                "--mix",
                mix,
                "--hosts",
                str(hosts),
                "--faults",
                faults,
                "--new",
                str(new_per_cycle),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise SystemExit(f"the feed farm did not start: {line!r}")
        self.port = int(line.split()[1])
        self.source = self.proc.stdout.readline().removeprefix("SOURCE ").strip()
        self.latency = latency
        self.hang = hang

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, ns: str, index: int, host: str = "127.0.0.1") -> str:
        """Feed ``index`` of ``ns``, at ``host`` (one of the addresses the farm listens on)."""
        return f"http://{host}:{self.port}/{ns}/feed/{index}"

    def get(self, path: str, data: bytes | None = None) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.port}{path}", data=data, timeout=120
        ) as r:
            return str(r.read().decode())

    def advance(self, ns: str, upto: int) -> int:
        return int(self.get(f"/_advance?ns={ns}&upto={upto}"))

    def stats(self, ns: str, reset: bool = True) -> dict[str, int]:
        data: dict[str, int] = json.loads(
            self.get(f"/_stats?ns={ns}" + ("&reset=1" if reset else ""))
        )
        return data

    def publish(self, ns: str, index: int, document: bytes) -> None:
        """Feed ``index`` of ``ns`` serves ``document`` from now on."""
        self.get(f"/_publish?ns={ns}&feed={index}", data=document)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def __enter__(self) -> FarmProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--feeds",
        type=int,
        default=5000,
        help="feeds whose bodies are rendered at start (in the rfi mix any index answers)",
    )
    p.add_argument(
        "--mix",
        default="rfi",
        help=f"'rfi', or percent per kind of the weighted mix: {DEFAULT_WEIGHTS}",
    )
    p.add_argument("--latency", default="0.01-0.05", help="seconds before each answer, LOW-HIGH")
    p.add_argument(
        "--hang",
        type=float,
        default=20.0,
        help="seconds a 'timeout' feed holds the connection before closing it",
    )
    p.add_argument(
        "--new",
        type=int,
        default=NEW_PER_CYCLE,
        help="new items per cycle in each changed feed of the rfi mix",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--port", type=int, default=0)
    p.add_argument(
        "--hosts",
        type=int,
        default=0,
        help="also listen on 127.0.1.1 ... 127.0.1.N (same port): N more host names",
    )
    p.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help="the rfi mix's faults, one per block in turn (timeout,error,malformed)",
    )
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
