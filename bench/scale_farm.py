"""A feed farm for bench/scale.py: N feeds on 127.0.0.1, each answer delayed like the web's.

    python bench/scale_farm.py --feeds 600 --latency 0.05-0.1 [--seed 1]

Prints ``PORT <n>`` once listening, then serves until stdin closes (its parent exited)
or SIGTERM. Feeds are at ``/feed/NNNN``. One asyncio loop in its own process, so the
farm's own work neither competes with the daemons for a GIL nor needs a thread per
waiting request; it answers HTTP/1.1 with keep-alive, as most servers do.

The mix, fixed by the seed (what a poll cycle over real news feeds looks like):

- ``etag`` (60 % by default, see ``--mix``): unchanged between cycles, with ETag and
  Last-Modified, so every poll after the first is a conditional GET answered 304;
- ``plain`` (20 %): unchanged, but without validators (many servers send none), so every
  poll downloads and parses the whole feed and finds only repeats;
- ``news`` (20 %): one or two new articles per cycle, with validators, so a poll gets 200
  and stores the new articles; about a third of them match the benchmark's rules.

Feeds hold 10, 20, 30 or 50 items (RFI's hold 50), each with a paragraph of Chinese.
Every response waits a uniform random time within ``--latency`` first.

Control: ``GET /_advance`` starts the next cycle (news feeds gain articles);
``GET /_stats`` returns the counts of 200 and 304 answers as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import signal
import sys
from dataclasses import dataclass, field
from email.utils import formatdate
from xml.sax.saxutils import escape

HANZI = "中国俄罗斯乌克兰法国美国欧洲北京巴黎莫斯科总统访问峰会经济战略伙伴关系和平计划时代新闻"
DEFAULT_MIX = "etag=60,plain=20,news=20"
BASE_MS = 1_700_000_000_000


@dataclass
class Feed:
    index: int
    kind: str
    size: int
    articles: list[tuple[int, str, str, str]] = field(default_factory=list)  # newest first
    body: bytes = b""
    etag: str = ""
    last_modified: str = ""


class Farm:
    def __init__(self, feeds: int, latency: tuple[float, float], seed: int,
                 mix: str = DEFAULT_MIX) -> None:
        self.rng = random.Random(seed)
        weights = {k: float(v) for k, v in (part.split("=") for part in mix.split(","))}
        kinds, shares = list(weights), list(weights.values())
        self.latency = latency
        self.generation = 0
        self.counts = {"200": 0, "304": 0, "404": 0}
        self.feeds = [Feed(i, self.rng.choices(kinds, shares)[0],
                           self.rng.choice((10, 20, 30, 50))) for i in range(feeds)]
        self.serial = 0
        for f in self.feeds:
            f.articles = [self._article(f) for _ in range(f.size)]
            self._render(f)

    def _article(self, f: Feed) -> tuple[int, str, str, str]:
        self.serial += 1
        n = self.serial
        words = "".join(self.rng.choice(HANZI) for _ in range(14))
        # About a third of the articles carry one of the benchmark's keywords.
        topic = {0: "中俄", 3: "乌克兰"}.get(n % 6, "")
        title = f"{topic}{words[:10]} {n}"
        link = f"https://news.example/{f.index:04d}/{n}"
        body = "<p>" + "".join(self.rng.choice(HANZI) for _ in range(300)) + "</p>"
        return BASE_MS + n * 1000, title, link, body

    def _render(self, f: Feed) -> None:
        entries = "".join(
            f"<item><title>{escape(t)}</title><link>{link}</link><guid>{link}</guid>"
            f"<pubDate>{formatdate(ms / 1000, usegmt=True)}</pubDate>"
            f"<description><![CDATA[{body}]]></description></item>"
            for ms, t, link, body in f.articles)
        f.body = ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
                  f"<title>farm {f.index}</title><link>https://news.example/</link>"
                  f"{entries}</channel></rss>").encode()
        f.etag = '"' + hashlib.sha1(f.body).hexdigest()[:16] + '"'
        f.last_modified = formatdate(usegmt=True)

    def advance(self) -> None:
        self.generation += 1
        for f in self.feeds:
            if f.kind == "news":
                new = [self._article(f) for _ in range(self.rng.randint(1, 2))]
                f.articles = (new + f.articles)[:f.size]
                self._render(f)

    def respond(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path == "/_advance":
            self.advance()
            return 200, {"Content-Type": "text/plain"}, f"{self.generation}\n".encode()
        if path == "/_stats":
            return 200, {"Content-Type": "application/json"}, json.dumps(self.counts).encode()
        try:
            f = self.feeds[int(path.removeprefix("/feed/"))]
        except (ValueError, IndexError):
            self.counts["404"] += 1
            return 404, {"Content-Type": "text/plain"}, b"no such feed\n"
        out = {"Content-Type": "application/rss+xml; charset=utf-8"}
        if f.kind != "plain":
            out.update(ETag=f.etag, **{"Last-Modified": f.last_modified})
            if headers.get("if-none-match") == f.etag:
                self.counts["304"] += 1
                return 304, out, b""
        self.counts["200"] += 1
        return 200, out, f.body

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                if int(headers.get("content-length") or 0):
                    await reader.readexactly(int(headers["content-length"]))
                if not target.startswith("/_"):
                    await asyncio.sleep(self.rng.uniform(*self.latency))
                status, out, body = self.respond(target.split("?", 1)[0], headers)
                reason = {200: "OK", 304: "Not Modified", 404: "Not Found"}[status]
                out["Content-Length"] = str(len(body)) if status != 304 else "0"
                writer.write(f"HTTP/1.1 {status} {reason}\r\n".encode() + "".join(
                    f"{k}: {v}\r\n" for k, v in out.items()).encode() + b"\r\n"
                    + (body if method != "HEAD" else b""))
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        except asyncio.CancelledError:  # shutting down with the connection still open
            pass
        finally:
            writer.close()


async def serve(args: argparse.Namespace) -> None:
    low, _, high = args.latency.partition("-")
    farm = Farm(args.feeds, (float(low), float(high or low)), args.seed, args.mix)
    server = await asyncio.start_server(farm.handle, "127.0.0.1", args.port, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    # stdin closing means the benchmark that started us is gone.
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.read() or done.set())
    async with server:
        await done.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--feeds", type=int, default=600)
    p.add_argument("--latency", default="0.05-0.1", help="seconds, a range: LOW-HIGH")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mix", default=DEFAULT_MIX, help="percent per kind: etag, plain, news")
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
