"""Tests that kill hand-made mutants (round 69, task K69a) of fsrfer-serve's server (fsrfer_edge/serving/server.py:
the bounds of its options, ports 65535 and a queue delay of 0 taken, the default workspace folder it checks, a
dangling workspace link refused, the log file's folder made, its recognizers closed and Triton stopped on every way
out, ServerProcess's checks, command line and log tail) and the Triton repository writer
(fsrfer_edge/serving/triton_repo.py: config.pbtxt fields, what is left on disk after a failed write, the undo of a
failed move). A third pass after rounds 64c and 66a. No real Triton server is started: PyTriton is replaced by
stand-ins, and the ONNX models are built with onnx.helper."""
from __future__ import annotations

import contextlib
import errno
import math
import os
import socket
from pathlib import Path
from typing import Any, ClassVar

import pytest
from _onnx_models import make_flat_onnx

from fsrfer_edge.errors import ConfigError, ModelError, WriteError
from fsrfer_edge.serving import parse_config, triton_repo, write_triton_repo
from fsrfer_edge.serving import server as server_mod
from fsrfer_edge.serving.errors import ServerUnavailable

# -- fsrfer-serve: serve()'s checks before it loads a model ------------------------------------------------------------


class _WentOn(Exception):
    """Raised by a stand-in for the first step after serve()'s option checks."""


def _stop_after_the_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve() raises _WentOn once its options passed (when it would check the environment)."""
    def went_on() -> None:
        raise _WentOn()

    monkeypatch.setattr(server_mod, "check_environment", went_on)


def test_serve_takes_port_65535(monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: _check_port refused the highest TCP port (value < 65535)
    _stop_after_the_checks(monkeypatch)
    with pytest.raises(_WentOn):
        server_mod.serve(http_port=65535, grpc_port=65534, metrics_port=65533)


def test_serve_takes_a_queue_delay_of_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: max_queue_delay_us had the minimum 1 (0, "batch what is there, wait for none", was refused)
    _stop_after_the_checks(monkeypatch)
    with pytest.raises(_WentOn):
        server_mod.serve(max_queue_delay_us=0)
    with pytest.raises(ConfigError, match=r"max_queue_delay_us=-1; expected an integer >= 0"):
        server_mod.serve(max_queue_delay_us=-1)


def test_a_port_in_use_names_the_option_to_change(monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: the message said "pass --grpc_port", an option fsrfer-serve does not have (it is --grpc-port)
    monkeypatch.setattr(server_mod, "check_environment", dict)
    http, metrics = server_mod.free_ports("127.0.0.1", 2)
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        grpc = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"grpc_port={grpc}: cannot listen on 127\.0\.0\.1:{grpc} .*another "
                                              r"server.*pass --grpc-port with a free port"):
            server_mod.serve(http_port=http, grpc_port=grpc, metrics_port=metrics)


def test_pytriton_home_is_pytriton_home_else_xdg_cache_else_home_cache(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: the default folder under the cache was named otherwise than PyTriton's ("pytriton")
    monkeypatch.delenv("PYTRITON_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert server_mod._pytriton_home() == (tmp_path / "home" / ".cache" / "pytriton").resolve()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert server_mod._pytriton_home() == (tmp_path / "cache" / "pytriton").resolve()
    monkeypatch.setenv("PYTRITON_HOME", str(tmp_path / "ph"))
    assert server_mod._pytriton_home() == (tmp_path / "ph").resolve()


def test_a_default_workspace_folder_with_a_space_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: $PYTRITON_HOME (the default workspace's folder) was not checked for whitespace
    _stop_after_the_checks(monkeypatch)
    monkeypatch.setenv("PYTRITON_HOME", str(tmp_path / "py triton"))
    with pytest.raises(ConfigError, match="default workspace folder .*py triton.* contains whitespace"):
        server_mod.serve()
    monkeypatch.setenv("PYTRITON_HOME", str(tmp_path / "pytriton"))
    with pytest.raises(_WentOn):
        server_mod.serve()


def test_a_workspace_that_resolves_to_a_path_with_a_space_is_refused(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: only the workspace as given was checked, not the resolved path PyTriton passes to tritonserver
    _stop_after_the_checks(monkeypatch)
    (tmp_path / "with space").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "with space")
    with pytest.raises(ConfigError, match=r"workspace .*link/ws.* \(resolved: .*with space/ws.*contains whitespace"):
        server_mod.serve(workspace=tmp_path / "link" / "ws")


def test_a_workspace_that_is_a_dangling_link_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: os.path.exists instead of lexists (a link to nowhere passed; PyTriton would create and delete through it)
    _stop_after_the_checks(monkeypatch)
    (tmp_path / "ws").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="already exists"):
        server_mod.serve(workspace=tmp_path / "ws")


def test_a_log_file_with_a_tab_is_refused_by_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: only a space counted as whitespace in the log file's path (PyTriton splits at a tab too)
    _stop_after_the_checks(monkeypatch)
    with pytest.raises(ConfigError, match="log_file .* contains whitespace"):
        server_mod.serve(log_file=tmp_path / "a\tb.log")
    with pytest.raises(_WentOn):
        server_mod.serve(log_file=tmp_path / "ab.log")


# -- fsrfer-serve: the PyTriton server it builds, runs and stops -------------------------------------------------------


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny fsrfer ONNX file (onnx.helper, no torch)."""
    return make_flat_onnx(tmp_path_factory.mktemp("flat") / "flat.onnx")



class _RecordingPyTriton:
    """pytriton.triton as far as build_triton uses it; records the server's config, workspace and binds."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.workspace: Any = None
        self.binds: dict[str, dict[str, Any]] = {}
        rec = self

        class Triton:
            def __init__(self, config: Any, workspace: Any) -> None:
                rec.config, rec.workspace = config, workspace

            def bind(self, model_name: str, **kwargs: Any) -> None:
                rec.binds[model_name] = kwargs

        self.Triton = Triton
        self.TritonConfig = lambda **kwargs: kwargs


@pytest.mark.needs("onnx")
def test_build_triton_hands_on_the_log_file_workspace_addresses_and_no_preferred_sizes(
        flat: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # mutants: log_file not given to tritonserver's config; no preferred sizes handed on as [] instead of None
    pytest.importorskip("pytriton.model_config", reason="PyTriton is not installed (pip install -e '.[serve]')")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.errors import require as real_require

    fake = _RecordingPyTriton()
    monkeypatch.setattr(server_mod, "check_environment", dict)
    monkeypatch.setattr(server_mod, "require",
                        lambda name, *a, **k: fake if name == "pytriton.triton" else real_require(name, *a, **k))
    with Recognizer(flat, confidence=None) as rec:
        server_mod.build_triton([rec], host="127.0.0.2", http_port=1001, grpc_port=1002, metrics_port=1003,
                                model_name="fer", log_verbose=2, workspace=tmp_path / "ws",
                                log_file=str(tmp_path / "t.log"))
    assert fake.config == {"http_address": "127.0.0.2", "http_port": 1001, "grpc_address": "127.0.0.2",
                           "grpc_port": 1002, "metrics_address": "127.0.0.2", "metrics_port": 1003,
                           "log_verbose": 2, "log_file": tmp_path / "t.log"}
    assert fake.workspace == str(tmp_path / "ws")
    assert fake.binds["fer"]["config"].batcher.preferred_batch_size is None
    assert fake.binds["fer_info"]["config"].batching is False


class _FakeRecognizer:
    """Recognizer as far as serve() uses it; records its instances and their closing."""

    made: ClassVar[list[_FakeRecognizer]] = []
    max_batch = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from fsrfer_edge.metadata import ModelInfo

        self.info = ModelInfo()
        self.closed = False
        _FakeRecognizer.made.append(self)

    def close(self) -> None:
        self.closed = True


def test_serve_makes_the_log_files_folder_and_closes_every_recognizer_when_triton_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # mutants: the log file's folder was not made (tritonserver does not make it); the recognizers were not closed
    # when the server failed
    def fail(*args: Any) -> None:
        raise ServerUnavailable("the Triton server did not start")

    _FakeRecognizer.made = []
    monkeypatch.setattr(server_mod, "check_environment", dict)
    monkeypatch.setattr(server_mod, "Recognizer", _FakeRecognizer)
    monkeypatch.setattr(server_mod, "build_triton", lambda *args: "triton")
    monkeypatch.setattr(server_mod, "_run_until_interrupted", fail)
    http, grpc, metrics = server_mod.free_ports("127.0.0.1", 3)
    log_file = tmp_path / "logs" / "deep" / "triton.log"
    with pytest.raises(ServerUnavailable):
        server_mod.serve(http_port=http, grpc_port=grpc, metrics_port=metrics, instances=2, log_file=log_file)
    assert log_file.parent.is_dir()
    assert [r.closed for r in _FakeRecognizer.made] == [True, True]


class _FakeTriton:
    """PyTriton's Triton as far as _run_until_interrupted uses it."""

    def __init__(self, run_error: Any = None, alive: bool = False) -> None:
        self.run_error = run_error
        self.alive = alive
        self.calls: list[str] = []

    def run(self) -> None:
        self.calls.append("run")
        if self.run_error is not None:
            raise self.run_error

    def is_alive(self) -> bool:
        if self.alive:
            raise KeyboardInterrupt  # Ctrl-C while the server runs
        return False

    def stop(self) -> None:
        self.calls.append("stop")


def test_triton_is_stopped_however_the_server_ends(tmp_path: Path) -> None:
    # mutants: triton.stop() not called on the way out; on_ready not called; a TimeoutError of run() (PyTriton
    # waiting for tritonserver) not turned into ServerUnavailable naming the log file
    pytest.importorskip("pytriton", reason="PyTriton is not installed (pip install -e '.[serve]')")
    ready: list[int] = []
    died = _FakeTriton()
    with pytest.raises(ServerUnavailable, match=r"stopped unexpectedly; tritonserver's log is in .*t\.log"):
        server_mod._run_until_interrupted(died, lambda: ready.append(1), tmp_path / "t.log")
    assert died.calls == ["run", "stop"] and ready == [1]
    slow = _FakeTriton(run_error=TimeoutError("tritonserver not ready"))
    with pytest.raises(ServerUnavailable, match=r"did not start \(TimeoutError: tritonserver not ready\); "
                                                r"tritonserver's log is in .*t\.log"):
        server_mod._run_until_interrupted(slow, lambda: ready.append(2), tmp_path / "t.log")
    assert slow.calls == ["run", "stop"] and ready == [1]
    interrupted = _FakeTriton(alive=True)
    server_mod._run_until_interrupted(interrupted, None)  # Ctrl-C: a clean stop, no error
    assert interrupted.calls == ["run", "stop"]


# -- ServerProcess: options, command line, start-up and log ------------------------------------------------------------


def test_server_process_refuses_an_infinite_startup_timeout() -> None:
    # mutant: the finite check dropped (inf > 0 passed: start() would wait forever for a server that never answers)
    with pytest.raises(ConfigError, match="startup_timeout_s=inf; expected a finite"):
        server_mod.ServerProcess(startup_timeout_s=math.inf)


def test_the_command_gives_each_port_to_its_own_option_and_the_urls_name_them() -> None:
    # mutants: --grpc-port carried the metrics port; the metrics URL lacked Prometheus' /metrics path
    sp = server_mod.ServerProcess(host="127.0.0.1", http_port=18000, grpc_port=18001, metrics_port=18002,
                                  model_name="fer")
    cmd = sp.command(Path("/tmp/ws"))
    options = ("--host", "--http-port", "--grpc-port", "--metrics-port")
    pairs = {a: cmd[i + 1] for i, a in enumerate(cmd) if a in options}
    assert pairs == {"--host": "127.0.0.1", "--http-port": "18000", "--grpc-port": "18001", "--metrics-port": "18002"}
    assert "--model-name=fer" in cmd
    assert (sp.http_url, sp.grpc_url, sp.metrics_url) == ("127.0.0.1:18000", "127.0.0.1:18001",
                                                          "http://127.0.0.1:18002/metrics")


def test_the_command_names_a_relative_model_by_its_absolute_path(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: --model= carried the path as given (the child runs elsewhere and takes "~" literally)
    monkeypatch.chdir(tmp_path)
    cmd = server_mod.ServerProcess(model="models/m.onnx").command(tmp_path / "tmp" / "workspace")
    assert f"--model={tmp_path / 'models' / 'm.onnx'}" in cmd
    assert cmd[-1] == f"--workspace={tmp_path / 'tmp' / 'workspace'}"


def test_the_child_runs_this_source_tree_first_on_pythonpath(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: this tree's root went last on PYTHONPATH (an installed or other fsrfer_edge found first would run)
    seen: dict[str, Any] = {}

    def popen(cmd: list[str], **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise FileNotFoundError(2, "no such file", cmd[0])  # no child is started

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/elsewhere/a", "", "/elsewhere/b"]))
    monkeypatch.setattr(server_mod.subprocess, "Popen", popen)
    monkeypatch.setattr(server_mod.tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ConfigError, match="cannot run the server's Python"):
        server_mod.ServerProcess(python="/no/python").start()
    root = str(Path(server_mod.__file__).resolve().parents[2])
    assert seen["env"]["PYTHONPATH"].split(os.pathsep) == [root, "/elsewhere/a", "/elsewhere/b"]
    assert seen["start_new_session"] is True
    assert list(tmp_path.iterdir()) == []


def test_a_start_failing_in_the_handshake_every_time_is_tried_exactly_start_attempts_times(tmp_path: Path) -> None:
    # mutant: the last attempt was START_ATTEMPTS - 1 (a transient failure was tried twice, not three times)
    count = tmp_path / "starts"
    fake = tmp_path / "python"  # a stand-in for the serving Python that always fails in PyTriton's handshake
    fake.write_text(f"#!/bin/sh\necho x >> {count}\necho 'ConnectionRefusedError in get_config_from_handshake_server'\n"
                    "exit 1\n")
    fake.chmod(0o755)
    with pytest.raises(ServerUnavailable, match="get_config_from_handshake_server"):
        server_mod.ServerProcess(tmp_path / "m.onnx", python=str(fake), startup_timeout_s=20).start()
    assert len(count.read_text().splitlines()) == server_mod.START_ATTEMPTS == 3


def test_the_log_tail_is_the_end_of_each_log_and_skips_an_empty_one(tmp_path: Path) -> None:
    # mutants: the first chars of the log instead of its last; an empty tritonserver.log still got its header
    sp = server_mod.ServerProcess()
    sp._tmp = tmp_path
    try:
        (tmp_path / "server.log").write_bytes(b"x" * 50 + b"the end")
        (tmp_path / server_mod.TRITON_LOG).write_bytes(b"")
        assert sp.log_tail(7) == "the end"
        (tmp_path / server_mod.TRITON_LOG).write_bytes(b"y" * 50 + b"E0101 failed")
        assert sp.log_tail(7) == "the end\ntritonserver's log:\n failed"
    finally:
        sp._tmp = None


# -- ServerProcess: what kill() and start() find of a process group ----------------------------------------------------


def test_shm_files_of_a_group_are_those_still_there(tmp_path: Path) -> None:
    # mutant: /dev/shm files already deleted (mapped "(deleted)") were listed too, to be unlinked by kill() by name,
    # where a new file of that name may be another program's
    import mmap

    if not Path("/proc/self/maps").is_file() or not os.path.isdir("/dev/shm"):
        pytest.skip("needs /proc and /dev/shm (Linux)")
    names = [f"/dev/shm/fsrfer-k69a-{os.getpid()}-{what}" for what in ("kept", "gone")]
    maps = []
    try:
        for name in names:
            with open(name, "wb") as f:
                f.write(b"\0" * 4096)
            with open(name, "rb") as f:
                maps.append(mmap.mmap(f.fileno(), 4096, access=mmap.ACCESS_READ))
        os.unlink(names[1])
        found = server_mod._group_shm_files(os.getpgrp())
        assert names[0] in found and names[1] not in found
    finally:
        for m in maps:
            m.close()
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)


def test_model_copies_are_only_the_python_backends_folderxxxxxx(tmp_path: Path) -> None:
    # mutant: any folder whose name starts with "folder" was taken for the backend's mkdtemp copy (and deleted)
    import subprocess
    import sys
    import time

    if not Path("/proc/self/cmdline").is_file():
        pytest.skip("needs /proc (Linux)")
    stub = tmp_path / "bin" / "triton_python_backend_stub"  # a Python that runs "model.py", as the stub does
    stub.parent.mkdir()
    stub.symlink_to(sys.executable)
    found = {}
    for name in ("folderAb12Cd", "folderAb12Cd3"):
        model = tmp_path / name / "1" / "model.py"
        model.parent.mkdir(parents=True)
        model.write_text("import time\ntime.sleep(60)\n")
        proc = subprocess.Popen([str(stub), str(model)], start_new_session=True)
        try:
            deadline = time.monotonic() + 10
            while not found.get(name) and time.monotonic() < deadline:
                found[name] = server_mod._group_model_copies(proc.pid)
                if name.endswith("3"):
                    break  # the process has been started (Popen returns after exec): nothing to wait for
                time.sleep(0.02)
        finally:
            proc.kill()
            proc.wait(timeout=10)
    assert found == {"folderAb12Cd": [tmp_path / "folderAb12Cd"], "folderAb12Cd3": []}


def test_a_group_listens_on_a_port_only_with_a_listening_socket(tmp_path: Path) -> None:
    # mutant: any socket of the group on that local port counted (here a connection made from it), so another
    # server answering on the port was taken for ours
    import subprocess
    import sys

    if not Path("/proc/net/tcp").is_file():
        pytest.skip("needs /proc/net/tcp (Linux)")
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        [port] = server_mod.free_ports("127.0.0.1", 1)
        code = ("import socket, sys, time\n"
                "s = socket.socket()\n"
                f"s.bind(('127.0.0.1', {port}))\n"
                f"s.connect(('127.0.0.1', {server.getsockname()[1]}))\n"
                "print('connected', flush=True)\n"
                "time.sleep(60)\n")
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                                 start_new_session=True)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "connected"
            assert not server_mod._group_listens(child.pid, port)  # its socket on `port` is a connection
            with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as mine:
                mine.bind(("127.0.0.1", 0))
                mine.listen()
                assert server_mod._group_listens(os.getpgrp(), mine.getsockname()[1])
        finally:
            child.kill()
            child.wait(timeout=10)
            child.stdout.close()  # type: ignore[union-attr]


def test_a_group_is_taken_to_listen_where_the_tables_cannot_be_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: without /proc/net/tcp (not Linux) no group listened, so start() never saw its server ready
    real = Path.read_text

    def read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        if str(self).startswith("/proc/net/tcp"):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    assert server_mod._group_listens(os.getpgrp(), 1) is True


# -- the Triton repository writer: options and config.pbtxt ------------------------------------------------------------


def _fake_engine(folder: Path, onnx_path: Path) -> Path:
    """Bytes standing in for a TensorRT plan (batch profile 1-128), with the sidecar the engine builder writes."""
    from fsrfer_edge import engine_cache
    from fsrfer_edge.export import read_model_info
    from fsrfer_edge.fileio import atomic_write_bytes, sha256_file

    info = read_model_info(onnx_path)
    key = engine_cache.EngineKey("10.13.0.35", "9.0", info.precision, 1, 32, 128)
    path = atomic_write_bytes(folder / key.filename("flat", sha256_file(onnx_path)), b"not a real plan")
    engine_cache.write_sidecar(path, key, sha256_file(onnx_path), info)
    return path


@pytest.mark.needs("onnx")
def test_preferred_batch_sizes_as_bytes_are_refused(flat: Path, tmp_path: Path) -> None:
    # mutant: bytes were taken as a list of sizes (b"\x08 " is 8 and 32), as a str is not
    with pytest.raises(ConfigError, match=r"preferred_batch_sizes=b'\\x08 '; expected a list"):
        write_triton_repo(tmp_path / "repo", onnx_path=flat, preferred_batch_sizes=b"\x08 ")  # type: ignore[arg-type]
    assert not (tmp_path / "repo").exists()


@pytest.mark.needs("onnx")
def test_only_the_three_instance_kinds_are_taken_for_the_onnx_model(flat: Path, tmp_path: Path) -> None:
    # mutant: KIND_MODEL (a kind for backends that place instances themselves, not ONNX Runtime's) was taken
    for kind in ("KIND_MODEL", "kind_cpu"):
        with pytest.raises(ConfigError,
                           match=rf"kind='{kind}'; expected one of \('KIND_GPU', 'KIND_CPU', 'KIND_AUTO'\)"):
            write_triton_repo(tmp_path / "repo", onnx_path=flat, kind=kind)
    assert not (tmp_path / "repo").exists()
    for n, kind in enumerate(triton_repo.KINDS):
        repo = write_triton_repo(tmp_path / f"repo{n}", onnx_path=flat, kind=kind)
        assert f"    kind: {kind}\n" in (repo / "fsrfer_onnx" / "config.pbtxt").read_text()


@pytest.mark.needs("onnx")
def test_the_longest_model_name_leaves_room_for_the_old_prefix_while_it_is_replaced(flat: Path,
                                                                                   tmp_path: Path) -> None:
    # mutant: the bound left out ".old-" (a name 5 bytes longer passed, and replacing its folder failed: ENAMETOOLONG)
    pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed")
    longest = triton_repo.NAME_MAX - len("_onnx") - len(".old-")
    with pytest.raises(ConfigError, match=f"is {longest + 1} bytes long .*expected at most {longest} bytes"):
        write_triton_repo(tmp_path / "repo", onnx_path=flat, model_name="m" * (longest + 1))
    write_triton_repo(tmp_path / "repo", onnx_path=flat, model_name="m" * longest)
    repo = write_triton_repo(tmp_path / "repo", onnx_path=flat, model_name="m" * longest, overwrite=True,
                             instances=2)
    assert parse_config(repo / ("m" * longest + "_onnx")).instance_group[0].count == 2


@pytest.mark.needs("onnx")
def test_an_onnx_file_of_batch_size_one_is_refused(flat: Path, tmp_path: Path) -> None:
    # mutant: a fixed batch axis of 1 passed for a dynamic one (Triton's batcher would send batches the model refuses)
    import onnx

    model = onnx.load(str(flat))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, str(fixed))
    with pytest.raises(ModelError, match=r"has shape \[1, 1, 48, 48\]; Triton's dynamic batcher needs a dynamic"):
        write_triton_repo(tmp_path / "repo", onnx_path=fixed)
    assert not (tmp_path / "repo").exists()


@pytest.mark.needs("onnx")
def test_each_config_says_in_a_comment_what_it_was_written_from(flat: Path, tmp_path: Path) -> None:
    # mutants: the engine's comment left out the GPU compute capability it runs on; the ONNX model's left out its
    # input data type
    engine = _fake_engine(tmp_path, flat)
    repo = write_triton_repo(tmp_path / "repo", onnx_path=flat, engine_path=engine)
    onnx_comments = [line for line in (repo / "fsrfer_onnx" / "config.pbtxt").read_text().splitlines()
                     if line.startswith("#")]
    trt_comments = [line for line in (repo / "fsrfer_trt" / "config.pbtxt").read_text().splitlines()
                    if line.startswith("#")]
    assert onnx_comments[0] == "# Written by fsrfer-edge from flat.onnx (fp32, input float32)."
    assert trt_comments[0] == f"# Written by fsrfer-edge from {engine.name} (fp32, input float32)."
    assert trt_comments[1].startswith("# TensorRT 10.13.0.35, GPU compute capability 9.0: serve it with a Triton")



@pytest.mark.needs("onnx")
def test_a_source_name_with_a_carriage_return_stays_in_its_comment(flat: Path, tmp_path: Path) -> None:
    # mutant: "\r" was left raw in the config's comment; read back as text it ends the comment line, and the rest of
    # the file name became a config line that does not parse
    pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed")
    src = tmp_path / "m\rx.onnx"
    src.write_bytes(flat.read_bytes())
    repo = write_triton_repo(tmp_path / "repo", onnx_path=src)
    text = (repo / "fsrfer_onnx" / "config.pbtxt").read_text(encoding="utf-8")
    assert "\r" not in text and "from m\\rx.onnx (" in text.splitlines()[0]
    assert parse_config(repo / "fsrfer_onnx").name == "fsrfer_onnx"


@pytest.mark.needs("onnx")
def test_the_labels_file_is_the_classes_one_a_line(flat: Path, tmp_path: Path) -> None:
    # mutant: the last label had no line end (a text file of lines, as Triton's label_filename reads it, ends with one)
    from fsrfer_edge.metadata import ModelInfo

    repo = write_triton_repo(tmp_path / "repo", onnx_path=flat)
    text = (repo / "fsrfer_onnx" / triton_repo.LABELS_FILE).read_text(encoding="utf-8")
    assert text == "".join(c + "\n" for c in ModelInfo().classes)


def test_info_from_config_of_a_config_without_a_parameter_map_is_none() -> None:
    # mutant: "parameters" that is not a mapping (a list) raised AttributeError instead of "no ModelInfo here"
    from fsrfer_edge.metadata import ModelInfo

    assert triton_repo.info_from_config({"name": "m", "parameters": ["fsrfer"]}) is None
    assert triton_repo.info_from_config({"name": "m", "parameters": {"fsrfer": "text"}}) is None
    info = ModelInfo()
    assert triton_repo.info_from_config({"parameters": {"fsrfer": {"string_value": info.to_json()}}}) == info


def test_info_from_config_names_the_served_model_of_a_bad_model_info() -> None:
    # mutant: the error did not say it came from the Triton model config (nor which model's)
    with pytest.raises(ModelError, match="Triton model config 'fer_onnx'"):
        triton_repo.info_from_config({"name": "fer_onnx", "parameters": {"fsrfer": {"string_value": "{not json"}}})


# -- the Triton repository writer: existing models, failures and what is left on disk ----------------------------------


@pytest.mark.needs("onnx")
def test_a_second_model_already_in_the_repository_is_not_replaced_without_overwrite(flat: Path,
                                                                                     tmp_path: Path) -> None:
    # mutants: only the first model's folder was looked for (an existing <name>_trt was replaced without overwrite);
    # the message named every model written, not the ones already there
    engine = _fake_engine(tmp_path, flat)
    repo = write_triton_repo(tmp_path / "repo", engine_path=engine)
    config = (repo / "fsrfer_trt" / "config.pbtxt").read_bytes()
    with pytest.raises(ConfigError, match=r"already holds model\(s\) \['fsrfer_trt'\]; pass overwrite=True"):
        write_triton_repo(repo, onnx_path=flat, engine_path=engine, max_batch=8)
    assert sorted(p.name for p in repo.iterdir()) == ["fsrfer_trt"]
    assert (repo / "fsrfer_trt" / "config.pbtxt").read_bytes() == config
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging folder left


def test_a_repository_path_under_a_file_is_refused_before_the_model_is_read(tmp_path: Path) -> None:
    # mutant: the check of the path's folders dropped (the model was read and a staging folder made first; under a
    # file the error was "cannot create the folder", about the parent, not the file in the way)
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile" / "repo", tmp_path / "afile"):
        with pytest.raises(ConfigError, match=r"afile exists and is not a folder; expected a Triton model repository"):
            write_triton_repo(out, onnx_path=tmp_path / "missing.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.needs("onnx")
def test_a_repository_folder_whose_parent_cannot_be_made_is_a_config_error(flat: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: the failure to make the repository's parent folder came out as a bare OSError, not fsrfer-export's
    # ConfigError (exit code 2 and one line) naming the folder
    parent = tmp_path / "ro" / "sub"
    real = Path.mkdir

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if self == parent:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(ConfigError, match=r"cannot create the folder .*ro/sub of the Triton model repository "
                                          r".*ro/sub/repo \(Permission denied\); expected a path this user can write"):
        write_triton_repo(parent / "repo", onnx_path=flat)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.needs("onnx")
def test_a_staging_folder_name_in_use_is_skipped_and_left_alone(flat: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: a staging folder name already taken (another writer's) ended the write with FileExistsError
    tokens = iter(["aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr(triton_repo.secrets, "token_hex", lambda n: next(tokens))
    other = tmp_path / ".repo.staging-aaaaaaaa"
    other.mkdir()
    (other / "theirs").write_text("x")
    repo = write_triton_repo(tmp_path / "repo", onnx_path=flat)
    assert (repo / "fsrfer_onnx" / "1" / "model.onnx").read_bytes() == flat.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".repo.staging-aaaaaaaa", "repo"]
    assert (other / "theirs").read_text() == "x"


@pytest.mark.needs("onnx")
def test_a_source_file_that_fails_to_read_is_not_reported_as_a_failed_write(flat: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: every OSError of the copy became a WriteError naming the repository's model folder, also one of reading
    # the source model (an I/O error of that disk, not of the repository's)
    def copyfile(src: Any, dst: Any) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(src))

    monkeypatch.setattr(triton_repo.shutil, "copyfile", copyfile)
    with pytest.raises(OSError) as info:
        write_triton_repo(tmp_path / "repo", onnx_path=flat)
    assert not isinstance(info.value, WriteError)
    assert (info.value.errno, info.value.filename) == (errno.EIO, str(flat))
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither the repository nor a staging folder


@pytest.mark.needs("onnx")
def test_a_new_model_that_cannot_be_taken_out_again_is_not_said_to_be_kept_aside(
        flat: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: every model whose move back failed was named as an earlier model "kept in" the staging folder, also a
    # model that was new (nothing of it is in the staging folder, which is removed)
    engine = _fake_engine(tmp_path, flat)
    repo = write_triton_repo(tmp_path / "repo", engine_path=engine)
    trt_before = (repo / "fsrfer_trt" / "config.pbtxt").read_bytes()
    real = os.replace

    def replace(src: Any, dst: Any) -> None:
        src, dst = Path(src), Path(dst)
        if (dst == repo / "fsrfer_trt" and src.name == "fsrfer_trt") or src == repo / "fsrfer_onnx":
            raise OSError(errno.EIO, os.strerror(errno.EIO))  # the new trt moving in, the new onnx moving back
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(WriteError, match="fsrfer_trt") as info:
        write_triton_repo(repo, onnx_path=flat, engine_path=engine, kind="KIND_CPU", overwrite=True)
    assert "failed too" not in str(info.value) and "kept in" not in str(info.value)
    # session 69 (noticed by round 69a): the new model left in the repository is named, not only logged
    assert f"the new model(s) ['fsrfer_onnx'] could not be taken back out of {repo} and are still there" in str(info.value)
    assert (repo / "fsrfer_onnx").is_dir()
    assert (repo / "fsrfer_trt" / "config.pbtxt").read_bytes() == trt_before  # the earlier one is back
    assert sorted(p.name for p in tmp_path.iterdir() if ".staging-" in p.name) == []


def test_a_staging_folder_that_cannot_be_listed_after_a_failed_commit_is_kept(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: a staging folder whose listing failed was deleted; it may hold an earlier model moved aside
    stage = tmp_path / ".repo.staging-0000"
    (stage / ".old-fsrfer_onnx" / "1").mkdir(parents=True)
    real = Path.iterdir

    def iterdir(self: Path) -> Any:
        if self == stage:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    triton_repo._remove_stage(stage, committed=False)
    assert (stage / ".old-fsrfer_onnx" / "1").is_dir()
    triton_repo._remove_stage(stage, committed=True)  # once committed it goes, listed or not
    assert not stage.exists()


@pytest.mark.parametrize("preferred, said", [([8, 8], r"repeat a value; give each size once"),
                                             ("8", "expected a list of batch sizes"),
                                             (8, "expected a list of batch sizes")])
def test_serve_refuses_repeated_or_unlisted_preferred_sizes_as_the_repository_writer_does(
        monkeypatch: pytest.MonkeyPatch, preferred: Any, said: str) -> None:
    # Noticed by round 69a, fixed in session 69: serve() took repeated sizes that fsrfer-export --triton-repo refuses,
    # and a string was iterated (its characters refused as sizes) or a number raised TypeError
    from fsrfer_edge.errors import ConfigError
    from fsrfer_edge.serving import server as server_mod

    def loaded(*args: Any, **kw: Any) -> None:
        raise AssertionError("the options were not checked before the model was loaded")

    monkeypatch.setattr(server_mod, "Recognizer", loaded)
    monkeypatch.setattr(server_mod, "check_environment", lambda: {})
    with pytest.raises(ConfigError, match=said):
        server_mod.serve(max_batch=64, preferred_batch_sizes=preferred)
