"""Review fixes of the serving layer: close() is final for TritonClientBackend, a ServerProcess host that is not
this machine's is a clear error, and kill() returns once the server's whole process group is gone.

Stand-ins only (a fake tritonclient module, a fake fsrfer-serve process group): neither a Triton server nor
PyTriton is needed.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import numpy as np
import pytest

from fsrfer_edge.backends.base import BackendClosedError
from fsrfer_edge.errors import ConfigError
from fsrfer_edge.metadata import ModelInfo
from fsrfer_edge.serving import ServerProcess
from fsrfer_edge.serving import client as client_mod
from fsrfer_edge.serving import server as server_mod

# -- TritonClientBackend: close() is final ----------------------------------------------------------

_INFO = ModelInfo()
_PRE = _INFO.preprocessing
_CONFIG = {
    "name": "fsrfer", "max_batch_size": 16,
    "input": [{"name": _INFO.input_name, "data_type": "TYPE_FP32", "dims": [_PRE.channels, _PRE.input_size,
                                                                           _PRE.input_size]}],
    "output": [{"name": _INFO.output_name, "data_type": "TYPE_FP32", "dims": [len(_INFO.classes)]}],
    "parameters": {"fsrfer": {"string_value": _INFO.to_json()}}}


class _FakeGrpcLib:
    """tritonclient.grpc as far as TritonClientBackend uses it; records the connections it makes."""

    def __init__(self) -> None:
        self.made: list[Any] = []
        self.fail_infers = 0  # the next this many infer() calls fail as an unreachable server does
        self.on_infer_failure = threading.Event()
        self.block_connect_in: Optional[threading.Thread] = None  # a connection made there waits for ...
        self.connecting = threading.Event()
        self.release_connect = threading.Event()  # ... this
        lib = self

        class InferenceServerClient:
            def __init__(self, url: str) -> None:
                self.closed = False
                lib.made.append(self)
                if threading.current_thread() is lib.block_connect_in:
                    lib.connecting.set()
                    lib.release_connect.wait(5)

            def get_model_config(self, name: str, as_json: bool = False, client_timeout: float = 0) -> dict:
                return {"config": _CONFIG}

            def infer(self, name: str, inputs: list, outputs: list, client_timeout: float = 0) -> Any:
                assert not self.closed, "a closed connection was used"
                if lib.fail_infers:
                    lib.fail_infers -= 1
                    lib.on_infer_failure.set()
                    raise ConnectionRefusedError(111, "Connection refused")
                n = inputs[0].shape[0]
                return SimpleNamespace(as_numpy=lambda _: np.zeros((n, len(_INFO.classes)), np.float32))

            def close(self) -> None:
                self.closed = True

        class InferInput:
            def __init__(self, name: str, shape: list, dtype: str) -> None:
                self.shape = shape

            def set_data_from_numpy(self, batch: np.ndarray) -> None:
                pass

        self.InferenceServerClient = InferenceServerClient
        self.InferInput = InferInput
        self.InferRequestedOutput = lambda name: name

    def open_connections(self) -> list[Any]:
        return [c for c in self.made if not c.closed]


@pytest.fixture()
def fake_lib(monkeypatch: pytest.MonkeyPatch) -> _FakeGrpcLib:
    lib = _FakeGrpcLib()
    monkeypatch.setattr(client_mod, "_import_client", lambda protocol: lib)
    return lib


def _batch(n: int = 1) -> np.ndarray:
    return np.zeros((n, _PRE.channels, _PRE.input_size, _PRE.input_size), np.float32)


def _run_in_thread(fn: Any, *args: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_close_during_a_retry_leaves_no_connection_open(fake_lib: _FakeGrpcLib) -> None:
    """close() while another thread waited to retry an unreachable server: the retry then opened a new connection,
    which stayed open after close() had returned, and its infer() succeeded on the closed backend."""
    backend = client_mod.TritonClientBackend("127.0.0.1:8001", protocol="grpc", retries=3, retry_delay_s=2.0)
    fake_lib.fail_infers = 1
    thread, outcome = _run_in_thread(backend.infer, _batch())
    assert fake_lib.on_infer_failure.wait(5)
    t0 = time.monotonic()
    backend.close()
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), BackendClosedError), outcome
    assert "closed" in str(outcome["error"]) and "create a new one" in str(outcome["error"])
    assert time.monotonic() - t0 < 1.5, "the retry's pause was not cut short by close()"
    assert fake_lib.open_connections() == [], "a connection is open after close()"
    made = len(fake_lib.made)
    with pytest.raises(BackendClosedError, match="was closed; create a new one"):
        backend.infer(_batch())
    with pytest.raises(BackendClosedError, match="was closed"):
        backend._call(backend._get_config)  # below infer()'s own check: still no new connection
    assert len(fake_lib.made) == made


def test_close_while_another_thread_connects_leaves_no_connection_open(fake_lib: _FakeGrpcLib) -> None:
    """close() while another thread was making its first connection: that connection was registered after close()
    had closed the others, so it stayed open, and the call went on to use it."""
    backend = client_mod.TritonClientBackend("127.0.0.1:8001", protocol="grpc")

    def infer_in_a_new_thread() -> np.ndarray:
        fake_lib.block_connect_in = threading.current_thread()  # its first connection waits for the test
        return backend.infer(_batch())

    thread, outcome = _run_in_thread(infer_in_a_new_thread)
    assert fake_lib.connecting.wait(5)
    backend.close()
    fake_lib.release_connect.set()
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), BackendClosedError), outcome
    assert fake_lib.open_connections() == [], "a connection is open after close()"


def test_calls_before_close_still_work(fake_lib: _FakeGrpcLib) -> None:
    """The close checks cost nothing to a backend that is open: calls from several threads, then close."""
    backend = client_mod.TritonClientBackend("127.0.0.1:8001", protocol="grpc")
    threads = [_run_in_thread(backend.infer, _batch(2)) for _ in range(3)]
    for thread, outcome in threads:
        thread.join(10)
        assert outcome["result"].shape == (2, len(_INFO.classes))
    backend.close()
    assert fake_lib.open_connections() == []


# -- ServerProcess: a host that is not this machine's -------------------------------------------------


@pytest.mark.parametrize("ports", [{}, {"http_port": 18000, "grpc_port": 18001, "metrics_port": 18002}])
def test_a_server_process_on_a_host_not_of_this_machine_is_a_clear_error(ports: dict) -> None:
    """ServerProcess(host=...) raised a bare OSError ("Cannot assign requested address") from choosing free ports."""
    with pytest.raises(ConfigError, match=r"host='192.0.2.1' is not an address of this machine.*expected one of its "
                                          r"own addresses, e\.g\. 127\.0\.0\.1"):
        ServerProcess(host="192.0.2.1", **ports)  # TEST-NET-1: never this machine's
    with pytest.raises(ConfigError, match="host='::1' is not an IPv4 address.*does not listen on IPv6"):
        ServerProcess(host="::1", **ports)
    with pytest.raises(ConfigError, match="host=None; expected"):
        ServerProcess(host=None, **ports)  # type: ignore[arg-type]


def test_free_ports_on_a_host_not_of_this_machine_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="host='192.0.2.1' is not an address of this machine"):
        server_mod.free_ports("192.0.2.1")


# -- ServerProcess: kill() waits for the whole process group ---------------------------------------------

# A fake fsrfer-serve: it starts a "tritonserver" (a child, in its process group) that listens on the HTTP port
# and answers readiness, and that takes a while to go away when it is killed, as tritonserver does while the
# kernel tears down its memory and GPU context (here: it handles the signal the test's killpg sends).
FAKE_GROUP = '''
import http.server, subprocess, sys, time
port = int(sys.argv[sys.argv.index("--http-port") + 1])
if "--child" not in sys.argv:
    subprocess.Popen([sys.executable, __file__, "--child"] + sys.argv[1:])
    time.sleep(600)
else:
    import signal, threading
    dying = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: dying.set())

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", port), Ready)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    while not dying.wait(0.05):
        pass
    time.sleep(0.8)  # still listening
'''


_live_group_members = server_mod._live_group_processes  # a process group's members that have not exited


def _port_free(port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as fsrfer-serve checks it
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_kill_returns_once_the_whole_process_group_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill() waited for fsrfer-serve only: its children (tritonserver) could still be exiting, and hold the ports,
    so that a start() right after it failed with "port in use"."""
    if not Path("/proc/self/stat").is_file():
        pytest.skip("finding a process group's members needs /proc (Linux)")
    script = tmp_path / "fake_group.py"
    script.write_text(FAKE_GROUP)
    python = tmp_path / "python"  # ServerProcess runs `python -m fsrfer_edge.serving.cli ARGS`
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    python.chmod(0o755)
    real_killpg = os.killpg
    # SIGKILL cannot be delayed; SIGTERM, with the child's handler, plays a member that takes time to exit.
    monkeypatch.setattr(os, "killpg", lambda pgid, sig: real_killpg(pgid, signal.SIGTERM))
    sp = ServerProcess(python=str(python), startup_timeout_s=20).start()
    try:
        pid = sp.pid
        assert pid is not None and len(_live_group_members(pid)) == 2
        sp.kill()
        assert _live_group_members(pid) == [], "kill() returned while the server's process group still runs"
        assert _port_free(sp.ports["http"]), "the HTTP port is still taken after kill()"
        sp.start()  # again on the same ports, at once
        assert sp.running and sp.pid != pid
    finally:
        sp.kill()


def test_waiting_for_a_process_group_is_bounded(monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """A member that does not go away (a process stuck in the kernel) does not hang kill() forever."""
    monkeypatch.setattr(server_mod, "_live_group_processes", lambda pgid: [Path("/proc/4242")])
    t0 = time.monotonic()
    with caplog.at_level("WARNING", logger=server_mod.__name__):
        assert server_mod._wait_group_gone(4242, timeout_s=0.3) is False
    assert time.monotonic() - t0 < 2
    assert "4242" in caplog.text and "still" in caplog.text

