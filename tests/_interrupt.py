"""Ctrl-C and SIGTERM in tests, as a terminal gives them.

A process started with SIGINT ignored (a job put in the background by a non-interactive shell, ``nohup``, some CI
runners) passes the ignoring on to its children, and Python then installs no KeyboardInterrupt handler: a test that
sends itself SIGINT to stand for Ctrl-C saw nothing happen and failed on correct code (round 67e saw it; note66's
"Ctrl-C video test flake" was the same). These helpers put Python's own handler in place first.
"""
from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def ctrl_c_as_at_a_terminal() -> Iterator[None]:
    """Within the block SIGINT raises KeyboardInterrupt (Python's default handler), whatever this process inherited;
    the previous handler is put back after it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def killed_mid_write(tmp_path: Path, module: str, patch: str, argv: list[str], signum: int) -> tuple[int, str]:
    """Run ``module``'s main in a fresh Python whose output write is interrupted by ``signum`` half-way through
    (``patch`` sets up the stand-ins, and ``half_write(path)`` does the write); returns (exit code, stderr)."""
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as at a terminal (see tests/_interrupt.py)
        from fsrfer_edge import fileio
        import {module} as m

        def half_write(path, *args, **kwargs):
            def write(f):
                f.write(b'{{"half": ')
                f.flush()
                os.kill(os.getpid(), {int(signum)})
                time.sleep(5)
                f.write(b'1}}')
            return fileio.atomic_write(path, write)
        """) + textwrap.dedent(patch) + f"\nsys.exit(m.main({argv!r}))\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=str(tmp_path))
    return proc.returncode, proc.stderr
