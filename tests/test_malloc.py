"""glibc allocator tuning: arenas capped unless the operator chose, no-ops elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from monitor import _malloc
from tests.daemon import REPO


def test_an_operators_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert _malloc.limit_arenas() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")
    assert _malloc.limit_arenas() is False


def test_arenas_capped_on_glibc_and_nothing_done_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    # In a child process: the cap stays for the life of the process.
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from monitor import _malloc; print(_malloc.limit_arenas()); "
            "_malloc.release_free_memory(); print(_malloc._glibc() is not None)",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    capped, glibc = out.stdout.split()
    assert capped == glibc  # capped exactly where glibc is there to cap
    monkeypatch.setattr(_malloc, "_libc", None)  # as off glibc
    assert _malloc.limit_arenas() is False
    _malloc.release_free_memory()
