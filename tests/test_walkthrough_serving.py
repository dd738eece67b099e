"""What a new user met following README "Scaling out" and docs/scaling.md, with stand-ins for Triton."""
from __future__ import annotations

import gc
import signal
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from fsrfer_edge.serving import RemoteRecognizer, ServerProcess, ServerUnavailable
from fsrfer_edge.serving import cli as serve_cli
from fsrfer_edge.serving import server as server_mod
from _http import QuietHandler, client_stand_in


class _MetricsPort(QuietHandler):
    """Triton's metrics port (8002): 200 and an empty body for any path but /metrics."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture()
def metrics_port() -> Iterator[str]:
    with client_stand_in(_MetricsPort) as address:
        yield address


def test_the_metrics_port_is_named_not_a_json_parse_error(metrics_port: str) -> None:
    """RemoteRecognizer("HOST:8002") raised RemoteError "model 'fsrfer' answered with an error: JSONDecodeError:
    Parse error at offset 0: The document is empty." """
    with pytest.raises(ServerUnavailable, match=r"did not answer as Triton's HTTP API.*metrics port \(8002\)"):
        RemoteRecognizer(metrics_port, timeout_s=5)


# A stand-in for `python -m fsrfer_edge.serving.cli`: answers readiness on --http-port and starts a
# "Python backend stub" whose model copy is a /tmp/folderXXXXXX folder, as tritonserver does.
FAKE_SERVE = '''
import http.server, os, subprocess, sys, time

class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

subprocess.Popen([os.environ["FAKE_STUB"], os.environ["FAKE_MODEL"]])
port = int(sys.argv[sys.argv.index("--http-port") + 1])
http.server.HTTPServer(("127.0.0.1", port), Ready).serve_forever()
'''


def test_a_server_process_never_stopped_leaves_nothing_behind(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A ServerProcess its owner forgot to stop (no with-block, an exception, the end of a script) was killed by
    its finalizer, but its /tmp/fsrfer-serve-XXXX folder, the Python backend's /tmp/folderXXXXXX model copies and
    its /dev/shm files stayed behind, as after a crash; kill() removes them."""
    if not Path("/proc/self/stat").is_file():
        pytest.skip("finding a process group's processes needs /proc (Linux)")
    script = tmp_path / "fake_serve.py"
    script.write_text(FAKE_SERVE)
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    python.chmod(0o755)
    copy = tmp_path / "folderAb12Cd"
    (copy / "1").mkdir(parents=True)
    (copy / "1" / "model.py").write_text("import time\ntime.sleep(600)\n")
    stub = tmp_path / "bin" / "triton_python_backend_stub"
    stub.parent.mkdir()
    stub.symlink_to(sys.executable)
    monkeypatch.setenv("FAKE_STUB", str(stub))
    monkeypatch.setenv("FAKE_MODEL", str(copy / "1" / "model.py"))

    sp = ServerProcess(python=str(python), startup_timeout_s=20).start()
    pid, folder = sp.pid, sp._tmp
    assert pid is not None and folder is not None and folder.is_dir()
    deadline = time.monotonic() + 10
    while not server_mod._group_model_copies(pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # the stub has started
    assert server_mod._group_model_copies(pid) == [copy]
    del sp
    gc.collect()
    assert not server_mod._live_group_processes(pid)
    assert not folder.exists() and not copy.exists()


def test_workspace_help_names_where_pytriton_puts_its_default() -> None:
    """--help said the default workspace is "a temporary folder"; PyTriton makes it under ~/.cache/pytriton."""
    text = " ".join(serve_cli.build_parser().format_help().split())
    assert "~/.cache/pytriton" in text and "temporary folder)" not in text.split("--workspace", 1)[1][:400]


def test_sigint_ignored_by_fsrfer_serve_but_not_tritonserver_is_explained() -> None:
    """Started in a script's background (SIGINT ignored), a Ctrl-C to the process group stopped tritonserver
    only, and fsrfer-serve said "stopped unexpectedly; see the log above" with no hint why."""
    class Stopped:
        def run(self) -> None:
            pass

        def is_alive(self) -> bool:
            return False

        def stop(self) -> None:
            pass

    pytest.importorskip("pytriton", reason="PyTriton is not installed (pip install -e '.[serve]')")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(ServerUnavailable, match="stopped unexpectedly.*ignores SIGINT"):
            server_mod._run_until_interrupted(Stopped(), None)
    finally:
        signal.signal(signal.SIGINT, previous)
