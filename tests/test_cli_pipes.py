"""Every console script piped into a reader that closes early (``fsrfer-engines | head -1``) ends quietly:
no BrokenPipeError traceback, no "Exception ignored" at exit, exit status 141 (128 + SIGPIPE, what the shell reports
for a program that SIGPIPE ended), as the Python documentation recommends
(https://docs.python.org/3/library/signal.html#note-on-sigpipe; fsrfer_edge.errors.cli_main).

The commands run as the console scripts run them (``sys.exit(FUNCTION())``), in subprocesses; they print from
files made here (no data, no model, no GPU).
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from fsrfer_edge.errors import BROKEN_PIPE_EXIT, CliParser, cli_main

REPO = Path(__file__).resolve().parents[1]
# name -> (module, function), as setup.py's console_scripts declare them.
ENTRY_POINTS = {name: (module, fn) for name, module, fn in
                re.findall(r'"(fsrfer-[\w-]+)=([\w.]+):(\w+)"', (REPO / "setup.py").read_text(encoding="utf-8"))}


def _env(unbuffered: bool = False) -> dict[str, str]:
    """This environment, with stdout block-buffered into a pipe as by default, or write-through (``python -u``)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return {**env, "PYTHONUNBUFFERED": "1"} if unbuffered else env


def _command(name: str, *args: str) -> list[str]:
    """The console script ``name`` as pip's wrapper runs it, with ``args``."""
    module, fn = ENTRY_POINTS[name]
    return [sys.executable, "-c", f"import sys; from {module} import {fn}; sys.exit({fn}())", *args]


def _first_line_then_close(cmd: list[str], unbuffered: bool) -> tuple[bytes, int, str]:
    """Run ``cmd`` with stdout into a pipe; read its first line and close the pipe (as ``head -1`` does)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, cwd=REPO,
                            env=_env(unbuffered))
    assert proc.stdout is not None and proc.stderr is not None
    line = b""
    while not line.endswith(b"\n"):
        byte = proc.stdout.read(1)
        if not byte:
            break
        line += byte
    proc.stdout.close()
    try:
        err = proc.stderr.read().decode(errors="replace")
        rc = proc.wait(timeout=120)
    finally:
        proc.kill()
    return line, rc, err


def _quiet(rc: int, err: str) -> None:
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err
    assert rc == BROKEN_PIPE_EXIT == 141, (rc, err)


def test_setup_declares_the_entry_points_tested_here() -> None:
    assert set(ENTRY_POINTS) == {"fsrfer-train", "fsrfer-eval", "fsrfer-export", "fsrfer-bench", "fsrfer-demo",
                                 "fsrfer-crowd", "fsrfer-crowd-bench", "fsrfer-serve", "fsrfer-engines"}


BUFFERING = pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])


@BUFFERING
def test_engines_listing_into_head_1(tmp_path: Path, unbuffered: bool) -> None:
    """fsrfer-engines on a folder of some thousand leftover sidecars: ~1 MB of lines, far beyond a pipe's buffer,
    so the command is still writing when the reader goes (block-buffered: the error comes from a flush of a full
    buffer; write-through: from the print itself)."""
    for i in range(4000):
        (tmp_path / f"{i:05d}-{'x' * 180}.engine.json").write_text("{}")
    line, rc, err = _first_line_then_close(_command("fsrfer-engines", "--dir", str(tmp_path),
                                                    "--tensorrt-version", "10.3.0.26"), unbuffered)
    assert line.startswith(f"{tmp_path}: 4000 engine file(s)".encode()), line
    _quiet(rc, err)


@BUFFERING
def test_crowd_bench_table_into_head_1(tmp_path: Path, unbuffered: bool) -> None:
    """fsrfer-crowd-bench --table on a report of many size bins: a long Markdown table."""
    bins = [{"bin": f"{i}-{i + 1}", "faces": 1, "recall": 0.5} for i in range(40000)]
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"config": {}, "accuracy": None,
                                  "detection": {"bins": bins, "overall": {"faces": 40000, "recall": 0.5}}}))
    line, rc, err = _first_line_then_close(_command("fsrfer-crowd-bench", "--table", str(report)), unbuffered)
    assert line == b"| face size (px) | faces | detection recall |\n", line
    _quiet(rc, err)


def _skip_without_train_extra(name: str) -> None:
    if name == "fsrfer-train" and not all(importlib.util.find_spec(m) for m in ("torch", "yaml")):
        pytest.skip("fsrfer-train needs torch and PyYAML (the train extra) for --help")


@BUFFERING
@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_help_into_a_closed_pipe(name: str, unbuffered: bool) -> None:
    """``--help`` of every command into a pipe whose reader is already gone (``| head -0``). Block-buffered, the
    output is flushed at the end, where the interpreter's own flush would otherwise say "Exception ignored" and exit
    with 120. Write-through (``python -u``), the help's write itself fails: argparse (Python 3.11 and later) would
    drop that BrokenPipeError and exit with 0 (CliParser.print_help raises it, cli_main turns it into 141)."""
    _skip_without_train_extra(name)
    read, write = os.pipe()
    os.close(read)
    try:
        run = subprocess.run(_command(name, "--help"), stdout=write, stderr=subprocess.PIPE, cwd=REPO, timeout=120,
                             env=_env(unbuffered))
    finally:
        os.close(write)
    _quiet(run.returncode, run.stderr.decode(errors="replace"))


@BUFFERING
@pytest.mark.parametrize("name", ["fsrfer-demo", "fsrfer-engines"])
def test_help_into_an_open_pipe(name: str, unbuffered: bool) -> None:
    """With its reader there, ``--help`` is printed whole and the command exits with 0, buffered or not."""
    run = subprocess.run(_command(name, "--help"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                         timeout=120, env=_env(unbuffered))
    assert run.returncode == 0 and run.stderr == b"", run.stderr
    assert run.stdout.startswith(b"usage: ") and run.stdout.endswith(b"\n"), run.stdout[:200]


def test_cli_parser_raises_a_broken_pipe_of_its_help(monkeypatch: pytest.MonkeyPatch) -> None:
    """argparse 3.11+ drops an OSError of the help's write (ArgumentParser._print_message); CliParser raises a
    BrokenPipeError of it, which is what cli_main acts on. Other write errors are dropped as by argparse, and a
    missing stream (``sys.stdout`` is None under pythonw) too."""
    class Gone(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    class Full(io.StringIO):
        def write(self, s: str) -> int:
            raise OSError(28, "No space left on device")

    parser = CliParser(prog="x")
    with pytest.raises(BrokenPipeError):
        parser.print_help(Gone())
    with pytest.raises(BrokenPipeError):
        parser.print_usage(Gone())
    parser.print_help(Full())
    monkeypatch.setattr(sys, "stdout", None)
    parser.print_help()
    monkeypatch.undo()
    out = io.StringIO()
    parser.print_help(out)
    assert out.getvalue().startswith("usage: x")


def test_error_message_into_a_closed_stderr_pipe(tmp_path: Path) -> None:
    """A closed stderr pipe (``cmd 2>&1 >/dev/null | head -0``) ends the command quietly too."""
    read, write = os.pipe()
    os.close(read)
    try:
        run = subprocess.run(_command("fsrfer-engines", "--dir", str(tmp_path / "missing")), stdout=subprocess.PIPE,
                             stderr=write, cwd=REPO, timeout=120, env=_env())
    finally:
        os.close(write)
    assert run.returncode == BROKEN_PIPE_EXIT and run.stdout == b""


def test_other_broken_pipes_are_not_swallowed() -> None:
    """A BrokenPipeError of a socket (a client gone while fsrfer-serve answers it) is not about stdout: raised."""
    @cli_main
    def main(argv: Optional[list[str]] = None) -> int:
        a, b = socket.socketpair()
        b.close()
        with a:
            for _ in range(100):
                a.sendall(b"x" * 65536)
        return 0

    with pytest.raises(BrokenPipeError):
        main()


def test_cli_main_keeps_the_status_and_exits() -> None:
    @cli_main
    def main(argv: Optional[list[str]] = None) -> int:
        """Doc."""
        if argv:
            raise SystemExit(int(argv[0]))
        return 3

    assert main() == 3 and main.__doc__ == "Doc."
    with pytest.raises(SystemExit) as exc:
        main(["2"])
    assert exc.value.code == 2


@BUFFERING
def test_export_check_trt_report_into_a_closed_pipe(unbuffered: bool) -> None:
    """``fsrfer-export --check-trt FILE`` prints its report inside the block that turns a disk's OSError into "a
    file could not be read or written ... free space": a BrokenPipeError (an OSError) of stdout is not the disk's,
    and ends the command quietly with 141 as in every other command (write-through, the print itself raises it)."""
    pytest.importorskip("onnx")
    model = REPO / "fsrfer_edge" / "models" / "default.onnx"
    read, write = os.pipe()
    os.close(read)
    try:
        run = subprocess.run(_command("fsrfer-export", "--check-trt", str(model)), stdout=write,
                             stderr=subprocess.PIPE, cwd=REPO, timeout=120, env=_env(unbuffered))
    finally:
        os.close(write)
    err = run.stderr.decode(errors="replace")
    assert "free space" not in err, err
    _quiet(run.returncode, err)


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of a TCP connection on the loopback interface (a command's stdout handed a network socket, as
    inetd or systemd's socket activation with Accept=yes hand it one)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = socket.create_connection(server.getsockname()[:2])
        peer, _ = server.accept()
    return ours, peer


@BUFFERING
@pytest.mark.parametrize("reader", ["reads_a_line_and_closes", "resets"])
def test_engines_listing_into_a_tcp_socket_whose_reader_goes(tmp_path: Path, unbuffered: bool, reader: str) -> None:
    """fsrfer-engines with stdout a TCP socket whose peer goes: it reads the first line and closes with data unread,
    or resets the connection at once (SO_LINGER 0). A write then fails with EPIPE or, where the peer's close reset
    the connection (data left unread), ECONNRESET (ConnectionResetError, not a BrokenPipeError: a traceback before
    this round's fix), and poll() reports a hang-up (POLLHUP), as on a Unix socket: the command ends quietly with 141,
    block-buffered and written through (note67 had left TCP untried)."""
    for i in range(4000):
        (tmp_path / f"{i:05d}-{'x' * 180}.engine.json").write_text("{}")
    ours, peer = _tcp_pair()
    if reader == "resets":
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
    with ours, peer:
        proc = subprocess.Popen(_command("fsrfer-engines", "--dir", str(tmp_path), "--tensorrt-version", "10.3.0.26"),
                                stdout=ours.fileno(), stderr=subprocess.PIPE, cwd=REPO, env=_env(unbuffered))
        ours.close()
        try:
            if reader == "reads_a_line_and_closes":
                line = peer.makefile("rb").readline()
                assert line.startswith(f"{tmp_path}: 4000 engine file(s)".encode()), line
                peer.close()
            assert proc.stderr is not None
            err = proc.stderr.read().decode(errors="replace")
            rc = proc.wait(timeout=120)
        finally:
            proc.kill()
    _quiet(rc, err)


def test_cli_main_takes_a_reset_of_stdout_for_its_reader_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """In process, with stdout a TCP socket the peer reset: the write raises ConnectionResetError, which cli_main
    takes for the reader gone (141, quiet) as it takes a BrokenPipeError; a reset of another socket of the
    command's is still raised."""
    ours, peer = _tcp_pair()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()
    raw = ours.makefile("wb", buffering=0)
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(raw, write_through=True))

    @cli_main
    def main() -> int:
        for _ in range(3):
            print("x" * 70000)
        return 0

    try:
        assert main() == BROKEN_PIPE_EXIT
    finally:
        ours.close()
    monkeypatch.undo()

    @cli_main
    def other() -> int:
        raise ConnectionResetError(104, "Connection reset by peer")  # a server's client, not stdout

    with pytest.raises(ConnectionResetError):
        other()
