"""What the cycle, memory and rule-cost benchmarks share: the machine's description, the
feed farm's start and control, a watch list of rules, our daemon's config, and running
the daemon through poll cycles while measuring it from outside (/proc, its database).

Not a benchmark itself; ``bench/cycle.py``, ``bench/memory.py`` and ``bench/rules.py``
import it (``bench/`` is put on ``sys.path`` by each of them).
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
FARM = BENCH / "farm.py"

# Common characters to build watch-list words from. A two- or three-character word made
# of them, and absent from the corpus, is the typical keyword a user adds "in case".
COMMON = ("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去"
          "之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又"
          "如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明"
          "其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东"
          "政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书"
          "比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或"
          "司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度"
          "统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言")
ENGLISH = ("Ukraine", "NATO", "Taiwan", "Xinjiang", "Huawei", "sanctions", "Beijing", "Kremlin",
           "election", "tariff", "semiconductor", "Hong Kong", "Tibet", "Macron", "Zelensky",
           "Biden", "Putin", "Shanghai", "WHO", "G7", "BRICS", "Belt and Road", "TikTok",
           "ByteDance", "Alibaba", "Tencent", "Uyghur", "Dalai Lama", "Hamas", "Gaza")
_HAN_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")
_TAG = re.compile(r"<[^>]+>")


def machine() -> dict[str, Any]:
    """The machine the figures come from: CPU model, cores, memory, OS, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 2**20
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_gib, 1),
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "load_average": round(os.getloadavg()[0], 2)}


def machine_line(m: dict[str, Any] | None = None) -> str:
    m = m or machine()
    return (f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']:.0f} GiB, {m['os']}, "
            f"Python {m['python']}, load average {m['load_average']:.2f} at start")


# --- the farm ------------------------------------------------------------------------------


class FarmProcess:
    """bench/farm.py in its own process; stopped by closing its stdin (or on exit)."""

    def __init__(self, feeds: int, latency: str = "0.01-0.05", hang: float = 20.0,
                 seed: int = 1) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(FARM), "--feeds", str(feeds), "--latency", latency,
             "--hang", str(hang), "--seed", str(seed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise SystemExit(f"the feed farm did not start: {line!r}")
        self.port = int(line.split()[1])
        self.source = self.proc.stdout.readline().removeprefix("SOURCE ").strip()
        self.latency = latency
        self.hang = hang

    def url(self, ns: str, index: int) -> str:
        return f"http://127.0.0.1:{self.port}/{ns}/feed/{index}"

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=120) as r:
            return r.read().decode()

    def advance(self, ns: str, upto: int) -> int:
        return int(self.get(f"/_advance?ns={ns}&upto={upto}"))

    def stats(self, ns: str, reset: bool = True) -> dict[str, int]:
        data: dict[str, int] = json.loads(self.get(f"/_stats?ns={ns}"
                                                   + ("&reset=1" if reset else "")))
        return data

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


# --- rules ---------------------------------------------------------------------------------


def corpus_texts() -> list[tuple[str, str]]:
    """(title, plain text) of the articles the farm serves."""
    sys.path.insert(0, str(BENCH))
    from farm import corpus_articles

    articles, _ = corpus_articles()
    return [(title, _TAG.sub("", body)) for title, _, body in articles]


def watch_rules(count: int, seed: int = 7, corpus_share: float = 0.05,
                english_share: float = 0.08, news_words: int = 80) -> list[dict[str, Any]]:
    """``count`` rules as a watch list looks: mostly words that are not in today's news.

    Keywords are 2-3 common characters absent from the corpus (most of a real watch list
    on a given day), ``corpus_share`` of them (but at most about ``news_words`` in all)
    cut from the corpus titles and found in at most 2 % of its articles (these hit now
    and then), ``english_share`` English names (capped alike). The caps keep the alerts per new item
    near 2 whatever the rule count (a larger list adds more rare terms, not more of
    today's), so the cost of more rules is not confused with the cost of more alerts;
    bench/rules.py's "news words" set is the dense case. Shapes as users write them:
    one word, an any-list, all of two, an exclusion, a query.
    """
    # About 1.6 keywords per rule on average (the shapes below). English names are
    # capped alike: a few dozen names repeated over thousands of rules would make one
    # "G7" in an article match hundreds of rules.
    corpus_share = min(corpus_share, news_words / (1.6 * max(count, 1)))
    english_share = min(english_share, news_words / (1.6 * max(count, 1)))
    rng = random.Random(seed)
    texts = corpus_texts()
    joined = [t + "\n" + b for t, b in texts]
    grams: set[str] = set()
    for text in joined:
        for run in _HAN_RUN.findall(text):
            grams.update(run[i:i + 2] for i in range(len(run) - 1))
            grams.update(run[i:i + 3] for i in range(len(run) - 2))
    title_runs = [r for t, _ in texts for r in _HAN_RUN.findall(t)]
    limit = max(1, len(joined) // 50)
    selective: dict[str, bool] = {}

    def corpus_word() -> str:
        for _ in range(100):
            run = rng.choice(title_runs)
            size = rng.randint(2, min(4, len(run)))
            start = rng.randint(0, len(run) - size)
            word = run[start:start + size]
            if word not in selective:
                selective[word] = sum(word in t for t in joined) <= limit
            if selective[word]:
                return word
        return absent_word()

    def absent_word() -> str:
        while True:
            word = "".join(rng.choice(COMMON) for _ in range(rng.choice((2, 2, 3))))
            if word not in grams:
                return word

    def word() -> str:
        x = rng.random()
        if x < corpus_share:
            return corpus_word()
        if x < corpus_share + english_share:
            return rng.choice(ENGLISH)
        return absent_word()

    rules: list[dict[str, Any]] = []
    for n in range(count):
        shape = rng.random()
        rule: dict[str, Any] = {"name": f"r{n:05d}"}
        if shape < 0.5:
            rule["any"] = [word()]
        elif shape < 0.75:
            rule["any"] = [word(), word(), word()]
        elif shape < 0.85:
            rule["all"] = [word(), word()]
        elif shape < 0.95:
            rule["any"] = [word(), word()]
            rule["none"] = [word()]
        else:
            a, b, c = (f'"{w}"' if " " in w else w for w in (word(), word(), word()))
            rule["query"] = f"{a} AND ({b} OR {c})"
        rule["notify"] = ["out"]
        rules.append(rule)
    return rules


# --- our daemon's config -------------------------------------------------------------------


def write_config(path: Path, *, database: Path, feeds: list[tuple[str, str]],
                 rules: list[dict[str, Any]], workers: int, timeout: float,
                 interval: str = "5m", tick: float = 5.0) -> Path:
    """A config for the benchmarks: defaults except what a farm on 127.0.0.1 needs.

    - ``allow_private_addresses``: the fetcher refuses loopback addresses otherwise;
    - ``per_host_concurrency`` = workers: every farm feed is on one host, real feeds are
      spread over many (the default 2 per host would make this a test of politeness);
    - ``timeout`` (total, connect, read) small, so the farm's hung feeds do not dominate;
    - ``jitter`` 0 and ``backlog: none`` (the default): first polls record, not alert;
    - alerts go to ``console://``, whose output the benchmark discards.
    """
    cfg: dict[str, Any] = {
        "database": f"sqlite:///{database}",
        "defaults": {"interval": interval, "jitter": 0, "timeout": timeout,
                     "connect_timeout": timeout, "read_timeout": timeout,
                     "allow_private_addresses": True,
                     "per_host_concurrency": min(workers, 64)},
        "scheduler": {"workers": workers, "tick": tick},
        "http": {"enabled": False},
        "feeds": [{"id": fid, "url": url} for fid, url in feeds],
        "channels": {"out": {"urls": ["console://"]}},
        "rules": rules,
    }
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False,
                                   default_flow_style=None, width=200), encoding="utf-8")
    return path


def feed_id(index: int) -> str:
    return f"f{index:05d}"


# --- the daemon, measured from outside -----------------------------------------------------


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def db_scalar(db: Path, sql: str, *params: Any) -> Any:
    """One value from the daemon's SQLite file (None before its tables exist)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql, params).fetchone()[0]
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()


class Daemon:
    """``python -m monitor run`` in its own process; alerts (console://) discarded."""

    def __init__(self, config: Path, db: Path, log: Path) -> None:
        self.db = db
        self.log = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "-c", str(config), "--log-level",
             "warning"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=self._log)

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"the daemon exited with {self.proc.returncode}:\n{tail}")

    def wait_for(self, check: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            self.check()
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            time.sleep(0.1)

    def wait_started(self, n: int, timeout: float = 300) -> None:
        """Until the daemon has created its tables and the rows of all ``n`` feeds."""
        self.wait_for(lambda: (db_scalar(self.db, "SELECT count(*) FROM feeds") or 0) >= n,
                      timeout, "the daemon to start")

    def idle(self, timeout: float = 300) -> None:
        """Until every feed has been polled once and no poll is in flight.

        A cycle starts only then: a poll still running when the benchmark makes every
        feed due could record its (earlier) finish after that, and overwrite "due now"
        with its next poll time; that feed would then never be polled in the cycle.
        """
        self.wait_for(lambda: db_scalar(
            self.db, "SELECT count(*) FROM feeds WHERE last_poll_ms IS NULL "
            "OR lease_owner IS NOT NULL") == 0, timeout, "the daemon's polls in flight")

    def cycle(self, n: int, timeout: float = 300) -> dict[str, Any]:
        """Make every feed due now, as an interval ending does; measure until every feed's
        poll is recorded (``seconds``) and until no alert waits (``drained_s``)."""
        self.idle(timeout)
        pid = self.proc.pid
        items0 = db_scalar(self.db, "SELECT count(*) FROM items") or 0
        alerts0 = db_scalar(self.db, "SELECT count(*) FROM alerts") or 0
        cpu0 = cpu_seconds(pid)
        due = int(time.time() * 1000)
        conn = sqlite3.connect(self.db, timeout=30)
        with conn:
            conn.execute("UPDATE feeds SET next_poll_ms = ?", (due,))
        conn.close()
        self.wait_for(lambda: db_scalar(self.db, "SELECT count(*) FROM feeds WHERE "
                                        "last_poll_ms >= ?", due) == n, timeout, "a cycle")
        cpu = cpu_seconds(pid) - cpu0
        status = proc_status(pid)
        last = db_scalar(self.db, "SELECT max(last_poll_ms) FROM feeds")
        self.wait_for(lambda: db_scalar(self.db, "SELECT count(*) FROM alerts WHERE status "
                                        "= 'pending'") == 0, timeout, "the alerts")
        drained = time.time() - due / 1000
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            outcomes = Counter(dict(conn.execute(
                "SELECT last_outcome, count(*) FROM feeds WHERE last_poll_ms >= ? "
                "GROUP BY last_outcome", (due,)).fetchall()))
        finally:
            conn.close()
        return {"wall_s": (last - due) / 1000, "drained_s": drained, "cpu_s": cpu,
                "rss_mb": status["VmRSS"], "peak_rss_mb": status["VmHWM"],
                "outcomes": dict(outcomes), "feeds": n,
                "new_items": (db_scalar(self.db, "SELECT count(*) FROM items") or 0) - items0,
                "alerts": (db_scalar(self.db, "SELECT count(*) FROM alerts") or 0) - alerts0}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
