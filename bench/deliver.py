"""Email delivery speed: messages per second and CPU per message to a local SMTP server.

One channel's notifier (``AppriseNotifier``, as the deliverer uses it) sends N messages
as one delivery run, then ``close()``, to an aiosmtpd server on 127.0.0.1 running in a
process of its own (its CPU is not counted), over plain SMTP with a login and over
STARTTLS with a local certificate (trusted through SSL_CERT_FILE: the system's CA bundle
plus that certificate, so a TLS context costs what it costs with the system store).

- before: Apprise's own ``AppriseSMTPController`` (a new TLS context and a new SMTP
  connection for every message: the path of feed-monitor 0.x up to this change);
- after: ``monitor.deliver.smtp.KeptSMTPController`` (one context per process, one
  connection per server for the run).

Both run in this one process, interleaved round by round; the server counts the
messages received and the connections made. Figures: median msgs/s (wall) and CPU
ms per message (this process), and the ratios after/before.

Usage: python bench/deliver.py [--messages 300] [--rounds 5] [--quick] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import apprise.plugins.email.base as apprise_email  # noqa: E402
from apprise.plugins.email.smtp import AppriseSMTPController  # noqa: E402

from bench.support import machine_line  # noqa: E402
from bench.support.smtp import SmtpProcess, tls_files  # noqa: E402
from monitor.deliver import ChannelSettings, build_channels  # noqa: E402
from monitor.deliver.channels import AppriseNotifier  # noqa: E402
from monitor.secrets import Masker  # noqa: E402

GOAL = 5.0  # after/before, for msgs/s and for CPU per message
BODY = (
    "<p>中俄两国外长在北京举行会谈，双方就乌克兰局势和亚太安全交换了意见。</p>\n"
    '<p><a href="https://www.rfi.fr/cn/中国/20260101-中俄">https://www.rfi.fr/cn/中国/'
    "20260101-中俄</a></p>\n"
) * 3


@contextmanager
def apprise_per_message() -> Iterator[None]:
    """Apprise's own SMTP controller in place of ours, for the 'before' figures."""
    ours = apprise_email.AppriseSMTPController
    apprise_email.AppriseSMTPController = AppriseSMTPController  # type: ignore[misc]
    try:
        yield
    finally:
        apprise_email.AppriseSMTPController = ours  # type: ignore[misc]


def ca_bundle(folder: Path, cert: Path) -> Path:
    """The system's CA bundle with the local certificate added."""
    bundle = folder / "ca-bundle.pem"
    system = ssl.get_default_verify_paths().cafile
    text = Path(system).read_text() if system and Path(system).exists() else ""
    bundle.write_text(text + "\n" + cert.read_text())
    return bundle


def one_run(notifier: AppriseNotifier, n: int, tag: str) -> tuple[float, float]:
    """Send ``n`` messages as one delivery run; (wall s, CPU s of this process)."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(n):
        title = f"[china-russia] 中俄新闻 {tag} {i}"
        outcome = notifier.send(title, BODY, f"<alert-{tag}-{i}.1@feed-monitor>")
        if not outcome.ok:
            raise SystemExit(f"send {i} failed: {outcome.error}")
    notifier.close()
    return time.perf_counter() - wall0, time.process_time() - cpu0


def measure(
    name: str, server: SmtpProcess, url: str, n: int, rounds: int
) -> dict[str, dict[str, Any]]:
    masker = Masker()
    channels = build_channels({"mail": ChannelSettings("mail", (url,), "html")}, masker)
    notifier = channels["mail"].notifier
    assert isinstance(notifier, AppriseNotifier)
    one_run(notifier, 3, "warm-up")  # imports, first context, templates
    with apprise_per_message():
        one_run(notifier, 3, "warm-up")
    server.counts()
    runs: dict[str, list[tuple[float, float, int, int]]] = {"before": [], "after": []}
    for r in range(rounds):
        order = ("before", "after") if r % 2 == 0 else ("after", "before")
        for mode in order:
            if mode == "before":
                with apprise_per_message():
                    wall, cpu = one_run(notifier, n, f"{mode}{r}")
            else:
                wall, cpu = one_run(notifier, n, f"{mode}{r}")
            mails, connections = server.counts()
            if mails != n:
                raise SystemExit(f"{name} {mode}: the server got {mails} of {n} messages")
            runs[mode].append((wall, cpu, mails, connections))
    out: dict[str, dict[str, Any]] = {}
    for mode, rows in runs.items():
        out[mode] = {
            "msgs_per_s": statistics.median(n / wall for wall, _, _, _ in rows),
            "cpu_ms_per_msg": statistics.median(cpu / n * 1000 for _, cpu, _, _ in rows),
            "connections_per_run": max(c for _, _, _, c in rows),
            "runs": [{"wall_s": w, "cpu_s": c, "connections": k} for w, c, _, k in rows],
        }
    before, after = out["before"], out["after"]
    out["ratio"] = {
        "msgs_per_s": after["msgs_per_s"] / before["msgs_per_s"],
        "cpu_per_msg": before["cpu_ms_per_msg"] / after["cpu_ms_per_msg"],
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=300, help="messages per delivery run")
    ap.add_argument("--rounds", type=int, default=5, help="runs of each kind, interleaved")
    ap.add_argument("--quick", action="store_true", help="100 messages, 3 rounds")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    n, rounds = (100, 3) if args.quick else (args.messages, args.rounds)

    folder = Path(tempfile.mkdtemp(prefix="fm-bench-deliver-"))
    cert, key = tls_files(folder)
    os.environ["SSL_CERT_FILE"] = str(ca_bundle(folder, cert))
    print(machine_line())
    print(f"{n} messages per delivery run, {rounds} runs of each kind, interleaved")
    figures: dict[str, Any] = {"messages": n, "rounds": rounds, "goal": GOAL}
    with SmtpProcess() as plain, SmtpProcess(cert, key) as tls:
        q = "from=monitor@example.org&to=alerts@example.org"
        servers = {
            "plain": (plain, f"mailto://user:pass@127.0.0.1:{plain.port}?{q}"),
            "starttls": (
                tls,
                f"mailtos://user:pass@127.0.0.1:{tls.port}?{q}&mode=starttls",
            ),
        }
        for name, (server, url) in servers.items():
            result = measure(name, server, url, n, rounds)
            figures[name] = result
            b, a, ratio = result["before"], result["after"], result["ratio"]
            print(f"\n{name}:")
            for mode, row in (("before", b), ("after", a)):
                print(
                    f"  {mode:6}  {row['msgs_per_s']:8.1f} msgs/s  "
                    f"{row['cpu_ms_per_msg']:6.2f} ms CPU/msg  "
                    f"{row['connections_per_run']:4d} connections per run"
                )
            print(
                f"  after/before: {ratio['msgs_per_s']:.1f}x msgs/s, "
                f"{ratio['cpu_per_msg']:.1f}x less CPU per message (goal {GOAL:.0f}x)"
            )
    met = all(
        figures[k]["ratio"]["msgs_per_s"] >= GOAL and figures[k]["ratio"]["cpu_per_msg"] >= GOAL
        for k in ("plain", "starttls")
    )
    figures["goal_met"] = met
    print(f"\ngoal (>= {GOAL:.0f}x msgs/s and CPU per message, both modes): {met}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
