"""glibc's allocator, tuned for a long-running threaded daemon; no-ops elsewhere.

glibc gives each thread that allocates concurrently an arena of its own, up to
8 per core, and memory freed in one arena serves only that arena: with dozens of
poll threads the resident set grows by tens of megabytes that are never used
again. ``limit_arenas`` caps them (what ``MALLOC_ARENA_MAX=2`` does, but from
inside the process; it must run before threads start). An operator's own
``MALLOC_ARENA_MAX`` (or ``glibc.malloc.arena_max`` in ``GLIBC_TUNABLES``) wins:
glibc has read it already, and nothing is changed.
``release_free_memory`` hands free pages back to the system after a burst of
short-lived allocations (loading a large config; the daemon also calls it when its poll
workers fall idle and after a delivery run).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_ARENA_MAX = -8  # mallopt parameter, from glibc's malloc.h
DEFAULT_ARENAS = 2

_libc: ctypes.CDLL | None | bool = False  # False: not looked up yet


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is False:
        _libc = None
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None)
                if not hasattr(libc, "gnu_get_libc_version"):  # musl, not glibc
                    return None
                libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
                _libc = libc
            except (OSError, AttributeError):
                pass
    return _libc  # type: ignore[return-value]


def limit_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas unless MALLOC_ARENA_MAX is set; True if it did."""
    if "MALLOC_ARENA_MAX" in os.environ or "arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas) == 1)


def release_free_memory() -> None:
    """Return the allocator's free pages to the system (glibc's malloc_trim)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
