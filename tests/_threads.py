"""Calling something that may never return (a wait on a lock, a read of a FIFO) without hanging the test run."""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional


def call_in_thread(fn: Callable[[], Any], seconds: float,
                   unblock: Optional[Callable[[], None]] = None) -> tuple[bool, dict[str, Any]]:
    """Run ``fn`` on a daemon thread for up to ``seconds``: (whether it returned, {"value": its result} or
    {"error": its exception}). ``unblock``, called when it has not returned, frees a thread stuck in a read."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    finished = not t.is_alive()
    if not finished and unblock is not None:
        unblock()
        t.join(5)
    return finished, out
