"""The serving layer's own checks and clean-up, with stand-ins instead of a real Triton server.

A fake Triton HTTP endpoint (the model config only) serves the client tests; a fake ``fsrfer-serve``
(the real SIGTERM handling around a stand-in for PyTriton) serves the ServerProcess tests. Options are
checked before anything is loaded, so those tests need neither PyTriton nor tritonclient.
"""
from __future__ import annotations

import contextlib
import errno
import http.server
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from fsrfer_edge.errors import ConfigError, InputError
from fsrfer_edge.metadata import ModelInfo
from fsrfer_edge.serving import RemoteRecognizer, ServerProcess, ServerUnavailable, TooManyOpenFiles
from fsrfer_edge.serving import cli as serve_cli
from fsrfer_edge.serving import client as client_mod
from fsrfer_edge.serving import server as server_mod
from _http import QuietHandler, client_stand_in, triton_model_config

# -- client ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["timeout_s", "retry_delay_s"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_client_times_must_be_finite_numbers(option: str, value: float) -> None:
    """NaN as timeout_s waited forever; NaN or inf as retry_delay_s raised from time.sleep on the first retry."""
    with pytest.raises(InputError, match=f"{option}=.*expected a finite"):
        RemoteRecognizer("127.0.0.1:1", **{option: value})  # refused before any connection is tried


class _FakeTriton(QuietHandler):
    """Triton's HTTP endpoint as far as connecting needs: the model config, carrying the ModelInfo."""

    protocol_version = "HTTP/1.1"  # keep-alive, as Triton: each client holds its socket open
    config = triton_model_config()

    def do_GET(self) -> None:
        found = self.path == "/v2/models/fsrfer/config"
        body = self.config if found else b'{"error": "not found"}'
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def fake_triton() -> Iterator[str]:
    with client_stand_in(_FakeTriton) as address:
        yield address


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_connections_of_ended_threads_are_released(fake_triton: str) -> None:
    """Each thread that used an HTTP client held a socket and a gevent hub (epoll + eventfd) until close():
    300 short-lived threads, 900 descriptors. Now the next connection closes those of ended threads."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("counting open descriptors needs /proc (Linux)")

    def ended_hubs() -> int:
        return sum(thread() is None for thread, _ in client_mod._hubs)

    with client_mod.TritonClientBackend(fake_triton, timeout_s=10) as backend:
        start = _open_fds()
        for _ in range(30):
            t = threading.Thread(target=backend._call, args=(backend._get_config,))
            t.start()
            t.join()
        # This thread's connection and the last thread's (closed on the next connection, or on close).
        assert len(backend._clients) == 2 and ended_hubs() <= 1
        deadline = time.monotonic() + 5  # the fake server closes its side of each closed connection
        while _open_fds() > start + 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _open_fds() <= start + 8, f"{_open_fds() - start} descriptors more after 30 threads"
    assert not backend._clients and ended_hubs() == 0


def test_out_of_file_descriptors_is_not_server_unreachable(fake_triton: str) -> None:
    """EMFILE (ulimit -n reached) was reported as "server unreachable" and retried."""
    backend = client_mod.TritonClientBackend(fake_triton, timeout_s=10, retries=3)
    calls = []

    def no_descriptor_left(client: object) -> None:
        calls.append(client)
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    with backend, pytest.raises(TooManyOpenFiles, match="Too many open files.*not a server problem.*ulimit -n") as exc:
        backend._call(no_descriptor_left)
    assert isinstance(exc.value, OSError) and exc.value.errno == errno.EMFILE
    assert not isinstance(exc.value, ServerUnavailable) and len(calls) == 1  # not retried


def test_parse_config_refuses_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed "
                        "(pip install -e '.[client]')")
    from fsrfer_edge.serving import parse_config

    path = tmp_path / "config.pbtxt"
    path.write_bytes(b'name: "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="config.pbtxt cannot be read as text.*expected a Triton config.pbtxt"):
        parse_config(path)


# -- fsrfer-serve options ---------------------------------------------------------------------------


def test_an_existing_workspace_is_refused_before_the_model_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """PyTriton creates the workspace folder (and deletes it at the end): an existing one failed with a
    traceback from PyTriton, after the model had loaded."""
    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(server_mod, "Recognizer", no_loading)
    assert serve_cli.main(["--workspace", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: workspace") and "already exists" in err and "does not exist yet" in err
    assert len(err.strip().splitlines()) == 1


def test_a_bad_host_is_not_reported_as_a_port_in_use() -> None:
    port = server_mod.free_ports()[0]
    with pytest.raises(ConfigError, match="host='192.0.2.1' is not an address of this machine"):
        server_mod._check_ports_free("192.0.2.1", {"http_port": port})  # TEST-NET-1: never this machine's
    with pytest.raises(ConfigError, match="host='::1' is not an IPv4 address.*does not listen on IPv6"):
        server_mod._check_ports_free("::1", {"http_port": port})
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(ConfigError, match=f"http_port={port}.*another server"):
            server_mod._check_ports_free("127.0.0.1", {"http_port": port})


# -- ServerProcess ----------------------------------------------------------------------------------


def test_a_serve_python_that_cannot_run_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong $FSRFER_SERVE_PYTHON raised a bare FileNotFoundError and left a folder with an open log."""
    monkeypatch.setenv(server_mod.SERVE_PYTHON_ENV, str(tmp_path / "no-such-python"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where ServerProcess makes its folder
    sp = ServerProcess()
    with pytest.raises(ConfigError, match=r"no-such-python.*\$FSRFER_SERVE_PYTHON.*expected the path of a Python"):
        sp.start()
    assert sorted(p.name for p in tmp_path.iterdir()) == [] and sp._log is None


# The fake fsrfer-serve: fsrfer-serve's own SIGINT/SIGTERM handling (_run_until_interrupted) around a
# stand-in for PyTriton's Triton that answers readiness on --http-port and, like tritonserver, starts
# "Python backend stubs" (the programs given in $FAKE_STUBS, "|"-separated arguments, ";" between).
FAKE_SERVE = '''
import http.server, os, subprocess, sys, threading
from fsrfer_edge.serving.server import _run_until_interrupted

port = int(sys.argv[sys.argv.index("--http-port") + 1])

class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

class Triton:
    def run(self):
        for stub in filter(None, os.environ.get("FAKE_STUBS", "").split(";")):
            subprocess.Popen(stub.split("|"))
        httpd = http.server.HTTPServer(("127.0.0.1", port), Ready)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def is_alive(self):
        return True

    def stop(self):
        pass

_run_until_interrupted(Triton(), None)
'''


@pytest.fixture()
def fake_serve_python(tmp_path: Path) -> str:
    pytest.importorskip("pytriton", reason="PyTriton is not installed (pip install -e '.[serve]')")
    script = tmp_path / "fake_serve.py"
    script.write_text(FAKE_SERVE)
    python = tmp_path / "python"  # ServerProcess runs `python -m fsrfer_edge.serving.cli ARGS`
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    python.chmod(0o755)
    return str(python)


def test_stop_is_clean_when_the_parent_ignores_sigint(fake_serve_python: str) -> None:
    """A child inherits an ignored SIGINT (nohup, a script's background job): stop() sent SIGINT, waited
    its whole timeout, then killed the server."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sp = ServerProcess(python=fake_serve_python, startup_timeout_s=30).start()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sp._proc is not None
    t0 = time.monotonic()
    sp.stop(timeout_s=5)
    assert sp._proc.returncode == 0, "killed, not stopped"
    assert time.monotonic() - t0 < 4


def test_kill_removes_the_python_backends_model_copies(tmp_path: Path, fake_serve_python: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """tritonserver deletes its Python backend's /tmp/folderXXXXXX model copies when it stops; killed,
    it left one per model instance behind."""
    copies = [tmp_path / "folderAb12Cd", tmp_path / "folderEf34Gh"]
    stub = tmp_path / "bin" / "triton_python_backend_stub"  # a Python that runs "model.py", as the stub does
    stub.parent.mkdir()
    stub.symlink_to(sys.executable)
    for copy in copies:
        (copy / "1").mkdir(parents=True)
        (copy / "1" / "model.py").write_text("import time\ntime.sleep(600)\n")
    not_a_copy = tmp_path / "models" / "1" / "model.py"  # a stub's model outside a "folderXXXXXX": kept
    not_a_copy.parent.mkdir(parents=True)
    not_a_copy.write_text("import time\ntime.sleep(600)\n")
    monkeypatch.setenv("FAKE_STUBS", ";".join(f"{stub}|{m}" for m in
                                              [c / "1" / "model.py" for c in copies] + [not_a_copy]))
    sp = ServerProcess(python=fake_serve_python, startup_timeout_s=30).start()
    sp.kill()
    assert [c.exists() for c in copies] == [False, False] and not_a_copy.exists()


# -- review: bad URLs, clean-up after failures ------------------------------------------------------


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("url", ["127.0.0.1:", "127.0.0.1:abc", "127.0.0.1:99999", "127.0.0.1:0", ":8000"])
def test_a_url_without_a_host_and_valid_port_is_refused_before_connecting(url: str, protocol: str) -> None:
    """"127.0.0.1:99999" reached port 34463 over gRPC, "127.0.0.1:" port 443; "127.0.0.1:abc" over HTTP said the
    server "answered with an error"; all were retried with retries=N as if the server were down."""
    with pytest.raises(InputError, match="HOST:PORT"):
        RemoteRecognizer(url, protocol=protocol, timeout_s=2)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("url", ["::1:8000", "fe80::1:8000", "[::1:8000", "::1"])
def test_an_ipv6_address_without_brackets_is_refused_before_connecting(url: str, protocol: str) -> None:
    """"::1:8000" passed the URL check (its last colon splits off a valid port), then failed inside tritonclient
    with "Port could not be cast to integer value as ':1:8000'", reported as the server answering with an error."""
    with pytest.raises(InputError, match=r"IPv6 address in brackets, e\.g\. '\[::1\]:8000'"):
        RemoteRecognizer(url, protocol=protocol, timeout_s=2)


def test_an_ipv6_address_in_brackets_passes_the_url_check() -> None:
    from fsrfer_edge.serving.client import _split_url

    assert _split_url("http://[::1]:8000", "http") == "[::1]:8000"
    assert _split_url("[fe80::1]:8001", "grpc") == "[fe80::1]:8001"


class _FakeTritonNoBatching(_FakeTriton):
    """A served model whose config disagrees with what RemoteRecognizer needs (no batching)."""

    config = json.dumps({**json.loads(_FakeTriton.config), "max_batch_size": 0}).encode()


def test_a_backend_that_fails_to_connect_closes_its_connection() -> None:
    """A served model refused after connecting (here: no batching) left the connection open until garbage collection,
    which the raised exception's traceback delays."""
    tritonclient_http = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeTritonNoBatching)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    made: list = []
    closed: list = []
    cls = tritonclient_http.InferenceServerClient
    real_init, real_close = cls.__init__, cls.close

    def noting_init(self: object, *args: object, **kwargs: object) -> None:
        made.append(self)
        real_init(self, *args, **kwargs)

    def counting_close(self: object) -> None:  # other tests' clients may be collected meanwhile: only ours count
        closed.append(self)
        real_close(self)

    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(tritonclient_http.InferenceServerClient, "__init__", noting_init)
            mp.setattr(tritonclient_http.InferenceServerClient, "close", counting_close)
            with pytest.raises(client_mod.ModelError, match="max_batch_size 0") as exc:
                client_mod.TritonClientBackend(f"127.0.0.1:{httpd.server_address[1]}", timeout_s=10)
            assert len(made) == 1 and any(c is made[0] for c in closed), "the connection is still open"
            del exc
    finally:
        httpd.shutdown()
        httpd.server_close()


_live_group_members = server_mod._live_group_processes  # a process group's members that have not exited


def test_start_after_the_server_died_cleans_up_after_the_dead_one(tmp_path: Path, fake_serve_python: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """fsrfer-serve died on its own (not through kill()): start() launched a new one but left the old one's folder,
    its open log file, and its children (tritonserver, stubs), which still hold the ports and shared memory."""
    if not Path("/proc/self/stat").is_file():
        pytest.skip("finding a process group's members needs /proc (Linux)")
    monkeypatch.setenv("FAKE_STUBS", "sleep|600")  # a child of fsrfer-serve, in its process group
    sp = ServerProcess(python=fake_serve_python, startup_timeout_s=30).start()
    try:
        old_pid, old_tmp, old_log = sp.pid, sp._tmp, sp._log
        assert old_pid is not None and old_tmp is not None and old_log is not None
        deadline = time.monotonic() + 10
        while not _live_group_members(old_pid)[1:] and time.monotonic() < deadline:
            time.sleep(0.05)  # the stub has started
        os.kill(old_pid, signal.SIGKILL)  # fsrfer-serve alone crashes; its children live on
        while sp.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not sp.running
        sp.start()
        assert sp.pid != old_pid
        assert not old_tmp.exists() and old_log.closed
        deadline = time.monotonic() + 5
        while _live_group_members(old_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _live_group_members(old_pid), "the dead server's children still run"
    finally:
        sp.stop(timeout_s=5)


def test_stopping_twice_does_not_signal_the_old_process_group_again(fake_serve_python: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """stop() (or kill()) after the server had been stopped sent SIGKILL to its process group id again: by then the
    system may have given that id to an unrelated process group (`with sp: ...; sp.stop()` does it)."""
    sp = ServerProcess(python=fake_serve_python, startup_timeout_s=30).start()
    sp.stop(timeout_s=5)
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "killpg", lambda pgid, sig: sent.append((pgid, sig)))
    sp.stop(timeout_s=5)
    sp.kill()
    assert sent == []
    assert sp._proc is not None and sp._proc.returncode == 0  # still tells how it ended


class _FakeTritonEightClasses(_FakeTriton):
    """A served model whose logits are not the ModelInfo's classes (8 outputs for 7 classes)."""

    _doc = json.loads(_FakeTriton.config)
    _doc["output"] = [{**_doc["output"][0], "dims": [len(ModelInfo().classes) + 1]}]
    config = json.dumps(_doc).encode()


def test_a_served_model_whose_output_disagrees_with_its_metadata_is_refused_when_connecting() -> None:
    """The output's shape was not compared with the classes: connecting succeeded and every predict() failed."""
    pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeTritonEightClasses)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(client_mod.ModelError, match=r"output 'logits' is TYPE_FP32 \[8\].*\[7\]"):
            RemoteRecognizer(f"127.0.0.1:{httpd.server_address[1]}", timeout_s=10)
    finally:
        httpd.shutdown()
        httpd.server_close()


class _FakeReadyTriton(http.server.BaseHTTPRequestHandler):
    """Another server: every model is ready."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("ours", ["exits", "starts slowly"])
def test_another_server_on_the_port_is_not_taken_for_ours(tmp_path: Path, ours: str) -> None:
    """A server already listening on the HTTP port (a leftover one, fixed ports) answered the readiness check
    before our fsrfer-serve had exited with "port in use", and start() succeeded, talking to that other server."""
    if not Path("/proc/net/tcp").is_file():
        pytest.skip("telling which process listens on a port needs /proc (Linux)")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeReadyTriton)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    python = tmp_path / "python"  # our fsrfer-serve, which cannot listen on the port
    then = "exit 2" if ours == "exits" else "exec sleep 600"
    python.write_text(f'#!/bin/sh\nsleep 1\necho "error: http_port: port in use"\n{then}\n')
    python.chmod(0o755)
    sp = ServerProcess(http_port=httpd.server_address[1], python=str(python), startup_timeout_s=4)
    try:
        if ours == "exits":
            with pytest.raises(ServerUnavailable, match="(?s)exited with code 2 while starting.*port in use"):
                sp.start()
        else:
            other = f"not ready within 4 s .another server, not this one, answers at {sp.http_url}"
            with pytest.raises(ServerUnavailable, match=other):
                sp.start()
        assert not sp.running and sp._tmp is None
    finally:
        sp.stop(timeout_s=5)
        httpd.shutdown()
        httpd.server_close()
