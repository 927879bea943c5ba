"""One run of ``feed-monitor demo``: its folder (started fresh or resumed), the replay and
its feed server, and the config that points the real daemon at them."""

from __future__ import annotations

import html
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from monitor.config import LoadedConfig
from monitor.demo.articles import EDITIONS, load_stories
from monitor.demo.feeds import FEED_TITLES, FeedServer, Replay
from monitor.errors import MonitorError, UsageError
from monitor.store.lockfile import DaemonLock, lock_database
from monitor.types import Clock

log = logging.getLogger("monitor.demo")

CONFIG_NAME = "monitor.yaml"
DB_NAME = "feed-monitor.db"
STATE_NAME = "replay.json"  # how many stories are out, for a resumed run
MARK = "# Written by `feed-monitor demo`"
DEFAULT_LISTEN = "127.0.0.1:9321"
BACKLOG = 4  # stories the feeds list from the start

# The demo's config. Comments are kept: it is the first config a new user reads.
CONFIG = (
    MARK
    + """ at every start (edits are overwritten: copy it to experiment).
# The real daemon runs on it, as `feed-monitor run -c {config}` would.

database: {database}

defaults:
  interval: 2s       # the demo's feeds are local: poll them often (RFI's: 5m)
  jitter: 0s
  backlog: all       # alert for what a feed already lists at its first poll
  # Feeds on private or loopback addresses are refused unless allowed: this allows the
  # demo's feed server only.
  allowed_networks: ["127.0.0.1/32"]

scheduler:
  tick: 1s
delivery:
  interval: 1s
http:
  listen: {listen}   # /healthz, /metrics and the web console
log:
  heartbeat: 30s     # one line of what the daemon did, every 30 s (default 5m)

feeds:
  - id: rfi-cn
    title: {cn_title}
    url: {cn_url}
  - id: rfi-tw
    title: {tw_title}
    url: {tw_url}

channels:
  console:           # prints each alert to the terminal
    urls: ["console://"]

rules:
  - name: china-russia
    any: ["中俄"]
    feeds: [rfi-cn]
    notify: [console]
  - name: ukraine
    # Written in Simplified characters, it finds 烏克蘭 in the Traditional edition too.
    any: ["乌克兰", "Ukraine"]
    feeds: [rfi-tw]
    notify: [console]
  - name: putin-not-ukraine
    query: "普京 AND NOT 乌克兰"
    feeds: [rfi-cn]
    notify: [console]
  - name: xi-putin
    query: "习近平 AND 普京"
    # One alert for a story in both editions, naming both links; new alerts wait 5 s
    # so the other edition can join.
    cross_edition: {{window: 24h, hold: 5s}}
    notify: [console]
"""
)


@dataclass(frozen=True)
class Start:
    """How this run began: fresh, or resuming an earlier run's database."""

    resumed: bool
    published: int  # stories already out when the run begins
    removed: bool = False  # --fresh removed an earlier run's database


class Demo:
    """The demo's folder, replay and feed server; ``config_path`` is for the daemon."""

    def __init__(
        self, folder: Path, *, fresh: bool, every: float, listen: str | None, clock: Clock
    ) -> None:
        if every <= 0:
            raise UsageError(f"--every must be more than 0 seconds, got {every:g}")
        self.folder = folder
        self.config_path = folder / CONFIG_NAME
        self._state = folder / STATE_NAME
        self.stories = load_stories()
        self._lock: DaemonLock | None = None
        self.server: FeedServer | None = None
        try:
            self._open(fresh, every, listen, clock)
        except BaseException:
            self.close()
            raise

    def _open(self, fresh: bool, every: float, listen: str | None, clock: Clock) -> None:
        self.start = self._prepare(fresh)
        self.listen, self.listen_note = _console_address(listen)
        self.replay = Replay(
            self.stories,
            start=max(self.start.published, BACKLOG),
            every=every,
            clock=clock,
            on_publish=self._published,
        )
        self._save(self.replay.start)
        try:
            server = FeedServer(self.replay)
        except OSError as e:
            raise MonitorError(
                f"demo: cannot start the feed server on 127.0.0.1: {e.strerror or e}"
            ) from e
        self.server = server
        server.start()
        self.feed_urls = {edition: server.url(edition) for edition in EDITIONS}
        self._write_config()

    # -- the folder ----------------------------------------------------------------------

    def _prepare(self, fresh: bool) -> Start:
        folder = self.folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise MonitorError(f"{folder}: cannot create the demo folder: {e.strerror or e}") from e
        # The one-daemon lock of the demo's database, held for the whole run (the daemon
        # the demo starts is its holder): a second demo on this folder stops here, before
        # --fresh removed anything or the config was rewritten.
        self._lock = lock_database(self._database_url())
        if self.config_path.exists():
            try:
                head = self.config_path.read_text(encoding="utf-8", errors="replace")
            except OSError as e:
                raise MonitorError(f"{self.config_path}: cannot read: {e.strerror or e}") from e
            if not head.startswith(MARK):
                raise UsageError(
                    f"--dir {folder}: {self.config_path} was not written by "
                    "the demo; choose another folder (--dir)"
                )
        db = folder / DB_NAME
        if fresh:
            existed = db.exists()
            for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", STATE_NAME):
                try:
                    (folder / name).unlink(missing_ok=True)
                except OSError as e:
                    raise MonitorError(f"{folder / name}: cannot remove: {e.strerror or e}") from e
            return Start(resumed=False, published=0, removed=existed)
        if not db.exists():
            return Start(resumed=False, published=0)
        return Start(resumed=True, published=self._load_published())

    def _load_published(self) -> int:
        try:
            n = json.loads(self._state.read_text(encoding="utf-8"))["published"]
        except (OSError, ValueError, KeyError, TypeError):
            return 0  # no record: replay from the start; what is stored stays quiet
        return n if isinstance(n, int) and n >= 0 else 0

    def _save(self, published: int) -> None:
        tmp = self._state.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"published": published}), encoding="utf-8")
            os.replace(tmp, self._state)
        except OSError as e:  # the next run would replay from the start; nothing is lost
            log.warning(
                "demo: cannot record the replay's progress in %s: %s", self._state, e.strerror or e
            )

    def _published(self, n: int) -> None:
        self._save(n)
        story = self.stories[n - 1]
        log.info(
            "demo: story %d of %d published in both feeds: %s",
            n,
            len(self.stories),
            _plain(story.cn.title),
        )
        if n == len(self.stories):
            log.info(
                "demo: all %d stories are out; the daemon keeps running (Ctrl-C stops, "
                "--fresh replays them)",
                n,
            )

    def _database_url(self) -> str:
        return f"sqlite:///{self.folder.resolve() / DB_NAME}"

    def _write_config(self) -> None:
        text = CONFIG.format(
            config=self.config_path,
            database=_yaml(self._database_url()),
            listen=_yaml(self.listen),
            cn_title=_yaml(FEED_TITLES["cn"]),
            tw_title=_yaml(FEED_TITLES["tw"]),
            cn_url=_yaml(self.feed_urls["cn"]),
            tw_url=_yaml(self.feed_urls["tw"]),
        )
        try:
            self.config_path.write_text(text, encoding="utf-8")
        except OSError as e:
            raise MonitorError(
                f"{self.config_path}: cannot write the demo's config: {e.strerror or e}"
            ) from e

    # -- what the user is told -----------------------------------------------------------

    def banner(self, loaded: LoadedConfig, logged: str) -> str:
        """What the demo does, where, and what to try: printed before the first alert.
        ``logged`` says what the log shows."""
        total, out = len(self.stories), self.replay.start
        start = self.start
        if start.resumed and out >= total:
            how = (
                f"resuming: all {total} stories were published in an earlier run, so no "
                "new alert will come; --fresh replays them"
            )
        elif start.resumed:
            how = (
                f"resuming the earlier run: {out} of {total} stories are out and stored; "
                f"the rest follow (--fresh starts over)"
            )
        else:
            how = (
                "a fresh start"
                + (" (--fresh removed the earlier run's database)" if start.removed else "")
                + "; run it again to resume, or with --fresh to start over"
            )
        rules = []
        for r in loaded.config.rules:
            what = r.query or " OR ".join(r.any)
            scope = f" in {', '.join(r.feeds)}" if r.feeds else " in both feeds"
            both = ", one alert for both editions" if r.editions() else ""
            rules.append(f"{r.name} ({what}{scope}{both})")
        host, _, port = self.listen.rpartition(":")
        lines = [
            f"feed-monitor demo: {total} real RFI 中文 stories replayed as two live feeds "
            "on this machine (no internet needed)",
            f"  feeds    {self.feed_urls['cn']} (简体) and {self.feed_urls['tw']} (繁體):",
            f"           {min(out, total)} stories listed now, one more every "
            f"{self.replay.every:g} s",
            "  rules    " + ";\n           ".join(rules),
            "  alerts   printed below as they arrive (channel console://)",
            f"  log      {logged}",
            f"  console  http://{host}:{port}/  (also /healthz and /metrics)"
            + (f"; {self.listen_note}" if self.listen_note else ""),
            f"  data     {self.folder}/: {how}",
            f"  config   {self.config_path}  (try: feed-monitor status -c {self.config_path})",
            "Stop with Ctrl-C.",
        ]
        return "\n".join(lines)

    def farewell(self) -> str:
        """The last line: where things are, and how to go on."""
        return (
            f"demo stopped. Run it again to resume (the database stays in "
            f"{self.folder}/), or with --fresh to start over."
        )

    def close(self) -> None:
        """Stop the feed server and let the database go; safe to call more than once."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _console_address(listen: str | None) -> tuple[str, str | None]:
    """``--listen`` as given; by default 127.0.0.1:9321, or a free port when another
    program (a running daemon) holds that one."""
    if listen is not None:
        return listen, None
    host, _, port = DEFAULT_LISTEN.rpartition(":")
    if _free(host, int(port)):
        return DEFAULT_LISTEN, None
    free = _free_port(host)
    return f"{host}:{free}", f"{DEFAULT_LISTEN} is taken (a running feed-monitor?)"


def _free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As http.server binds: a port left in TIME_WAIT by a run just stopped is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _yaml(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is a subset of it)."""
    return json.dumps(text, ensure_ascii=False)


def _plain(title: str) -> str:
    return html.unescape(title)
