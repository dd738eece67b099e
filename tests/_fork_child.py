"""Running a test's work in a forked child, which must answer within a time limit (a hang fails the test)."""
from __future__ import annotations

import json
import os
import signal
import time
import warnings
from typing import Any, Callable

import pytest

CHILD_S = 20.0  # a forked child not done by then hung
needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def in_child(work: Callable[[], Any], timeout: float = CHILD_S) -> dict[str, Any]:
    """Run ``work`` in a forked child; its JSON result (``{"value": ...}`` or ``{"error": name, "message": ...}``).
    A child not done within ``timeout`` is killed and the test fails: it hung."""
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12: fork() while threads run
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            try:
                result: dict[str, Any] = {"value": work()}
            except BaseException as exc:  # noqa: BLE001 - handed to the parent
                result = {"error": type(exc).__name__, "message": str(exc)}
            os.write(write, json.dumps(result).encode())  # small: under a pipe's buffer
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
            pytest.fail(f"the forked child did not finish within {timeout} s: it hung")
        time.sleep(0.02)
    with os.fdopen(read, "rb") as f:
        raw = f.read()
    assert raw, f"the forked child gave no answer (exit status {status})"
    return dict(json.loads(raw))
