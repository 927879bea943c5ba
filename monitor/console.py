"""The ``console://`` Apprise URL: prints alerts to standard output.

Registered with Apprise on import, so a first run shows alerts without any
account, and every channel, this one included, goes through Apprise.
"""

from __future__ import annotations

import sys
import threading

from apprise.decorators import notify

_lock = threading.Lock()


@notify(on="console", name="Console (standard output)")
def console(body: str, title: str, notify_type: str, *args: object, **kwargs: object) -> bool:
    with _lock:
        sys.stdout.write(f"{title}\n{body}\n\n")
        sys.stdout.flush()
    return True
