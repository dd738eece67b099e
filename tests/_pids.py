"""A pid no process runs under: what a killed run's lock or owner note names."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest


def exited_pid() -> int:
    """The pid of a process that has exited (and been reaped); the test is skipped in the rare case the system has
    already given that pid to another process."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    try:
        os.kill(child.pid, 0)
    except ProcessLookupError:
        return child.pid
    pytest.skip(f"pid {child.pid} was taken again at once")
    raise AssertionError  # pragma: no cover (pytest.skip raises)
