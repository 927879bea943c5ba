"""Running ``feed-monitor`` commands from tests: in this process, or as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from monitor.cli import main

REPO = Path(__file__).resolve().parents[2]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``feed-monitor ARGS`` in this process: (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``feed-monitor ARGS`` in a subprocess, ``env`` added to this one's; output is wide
    (COLUMNS) so that no message is wrapped."""
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        cwd=REPO,
        env={**os.environ, **(env or {}), "COLUMNS": "250"},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )


def status_json(config: Path) -> dict[str, Any]:
    """``feed-monitor status --json``, which must succeed."""
    out = run_cli("status", "--json", "-c", str(config))
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data
