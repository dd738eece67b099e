"""A real Triton server (PyTriton) on loopback: remote answers equal in-process answers; a dead server is a clear error.

The server runs in a child process (:class:`ServerProcess`). PyTriton 0.7 needs numpy<2 in the
serving process; when this interpreter has numpy 2, point ``FSRFER_SERVE_PYTHON`` at a Python that
has numpy<2 (e.g. ``python -m venv --system-site-packages .venv-serve && .venv-serve/bin/pip install
'numpy<2'``); the client side (this process) may use numpy 2.
"""
from __future__ import annotations

import os
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="PyTriton is not installed (pip install -e '.[serve]')")
pytest.importorskip("tritonclient.http", reason="tritonclient is not installed (pip install -e '.[client]')")
pytest.importorskip("torch", reason="torch is needed to make the tiny test models")

from _onnx_models import make_tiny_onnx  # noqa: E402

from fsrfer_edge import Recognizer  # noqa: E402
from fsrfer_edge.errors import BackendUnavailable, InputError, ModelError  # noqa: E402
from fsrfer_edge.serving import RemoteRecognizer, ServerProcess, ServerUnavailable  # noqa: E402
from fsrfer_edge.serving import cli as serve_cli  # noqa: E402
from fsrfer_edge.serving import server as server_mod  # noqa: E402


def _serve_python() -> str:
    if os.environ.get(server_mod.SERVE_PYTHON_ENV):
        return os.environ[server_mod.SERVE_PYTHON_ENV]
    try:
        server_mod.check_environment()
    except BackendUnavailable as exc:
        pytest.skip(f"this Python cannot run the PyTriton server ({exc}); set {server_mod.SERVE_PYTHON_ENV} to a "
                    "Python that can (see this file's docstring)")
    return sys.executable


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_onnx(tmp_path_factory.mktemp("serve") / "tiny.onnx")


@pytest.fixture(scope="module")
def server(model: Path) -> ServerProcess:
    # max_batch 16 so that RemoteRecognizer's splitting of larger inputs is exercised.
    with ServerProcess(model, python=_serve_python(), args=["--max-batch", "16", "--threads", "1", "-q"]) as sp:
        yield sp


@pytest.fixture(scope="module")
def local(model: Path) -> Recognizer:
    with Recognizer(model, threads=1) as rec:
        yield rec


def _faces(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(12, 64)),) * 2, dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_remote_answers_equal_in_process(server: ServerProcess, local: Recognizer, protocol: str) -> None:
    url = server.http_url if protocol == "http" else server.grpc_url
    faces = _faces(40)  # > the server's max batch of 16: the client splits, in order
    with RemoteRecognizer(url, protocol=protocol, timeout_s=20) as remote:
        assert remote.classes == local.classes and remote.info == local.info
        assert remote.max_batch == 16
        got, want = remote.predict(faces), local.predict(faces)
        assert [p.label for p in got] == [p.label for p in want]
        np.testing.assert_allclose([p.probs for p in got], [p.probs for p in want], atol=1e-5)
        batch = local.prepare(faces[:5])
        np.testing.assert_allclose(remote.predict_logits(batch), local.predict_logits(batch), atol=1e-4)
        assert remote.predict(faces[0])[0].label == want[0].label  # one face -> a list of one


def test_concurrent_clients_are_batched_together(server: ServerProcess, local: Recognizer) -> None:
    faces = _faces(8, seed=1)
    want = local.predict_logits(local.prepare(faces))
    errors: list[BaseException] = []

    def client() -> None:
        try:
            with RemoteRecognizer(server.grpc_url, protocol="grpc", timeout_s=20) as remote:
                for _ in range(5):
                    np.testing.assert_allclose(remote.predict_logits(remote.prepare(faces)), want, atol=1e-4)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    with urllib.request.urlopen(server.metrics_url, timeout=10) as r:
        metrics = r.read().decode()
    assert 'nv_inference_request_success{model="fsrfer"' in metrics


def test_remote_predictions_carry_the_confidence_a_local_recognizer_gives(server: ServerProcess, model: Path) -> None:
    from fsrfer_edge.confidence import ScoreCalibration

    faces = _faces(10, seed=3)
    with Recognizer(model, threads=1, confidence=None) as plain:
        info = plain.info
    cal = ScoreCalibration(info.classes, "logistic", (1.0, 8.0), ((2.0, 0.5), (1.0, 0.0)),
                           checkpoint_sha256=info.checkpoint_sha256)
    with RemoteRecognizer(server.http_url, timeout_s=20, confidence=cal) as remote, \
            Recognizer(model, threads=1, confidence=cal) as mine:
        got, want = remote.predict(faces), mine.predict(faces)
        assert all(p.confidence is not None for p in got)
        np.testing.assert_allclose([p.confidence for p in got], [p.confidence for p in want], atol=1e-5)
    with RemoteRecognizer(server.http_url, timeout_s=20) as auto:  # "auto": the tiny model ships no calibration
        assert auto.score_calibration is None and auto.predict(faces[0])[0].confidence is None
    with pytest.raises(InputError, match="expected 'auto', None, a ScoreCalibration"):
        RemoteRecognizer(server.http_url, timeout_s=20, confidence=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_one_remote_recognizer_shared_by_worker_threads(server: ServerProcess, local: Recognizer, protocol: str) -> None:
    """Created in this thread, used from a pool (apps do this): tritonclient's HTTP connections are
    bound to their thread, so each worker must get its own ("Cannot switch to a different thread")."""
    import concurrent.futures

    faces = _faces(6, seed=2)
    want = [p.label for p in local.predict(faces)]
    url = server.http_url if protocol == "http" else server.grpc_url
    with RemoteRecognizer(url, protocol=protocol, timeout_s=20) as remote:
        assert [p.label for p in remote.predict(faces)] == want
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            got = list(pool.map(lambda _: [p.label for p in remote.predict(faces)], range(6)))
    assert got == [want] * 6


def test_client_side_errors(server: ServerProcess) -> None:
    with RemoteRecognizer(server.http_url) as remote:
        with pytest.raises(InputError, match="NaN"):
            remote.predict_logits(np.full((2, 1, 48, 48), np.nan, dtype=np.float32))
        with pytest.raises(InputError, match="shape"):
            remote.predict_logits(np.zeros((2, 48, 48), dtype=np.float32))
        with pytest.raises(InputError, match="empty"):
            remote.predict([])
    with pytest.raises(ModelError, match="no loaded model 'nope'") as wrong:
        RemoteRecognizer(server.http_url, model_name="nope")
    # PyTriton restricts the repository index: its list is unknown, not empty (the model is there).
    assert "models: []" not in str(wrong.value) and "could not be read" in str(wrong.value)
    with pytest.raises(ServerUnavailable, match="did not answer in HTTP.*protocol='grpc'"):
        RemoteRecognizer(server.grpc_url, timeout_s=5)  # the gRPC port, spoken to in HTTP
    with pytest.raises(InputError, match="protocol"):
        RemoteRecognizer(server.http_url, protocol="websocket")
    with pytest.raises(InputError, match="HOST:PORT"):
        RemoteRecognizer("http://127.0.0.1")


def test_killed_server_is_a_clear_error_then_recovers(server: ServerProcess, local: Recognizer) -> None:
    faces = _faces(4, seed=2)
    want = [p.label for p in local.predict(faces)]
    http = RemoteRecognizer(server.http_url, timeout_s=10)
    grpc = RemoteRecognizer(server.grpc_url, protocol="grpc", timeout_s=10)
    server.kill()  # SIGKILL to the whole server, as a crash would
    for remote, url in ((http, server.http_url), (grpc, server.grpc_url)):
        with pytest.raises(ServerUnavailable, match=f"{url}.*unreachable") as exc:
            remote.predict(faces)
        assert isinstance(exc.value, ConnectionError)
    with pytest.raises(ServerUnavailable, match="retries=N"):
        RemoteRecognizer(server.http_url, timeout_s=5)
    server.start()  # same ports
    assert [p.label for p in http.predict(faces)] == want  # the same clients recover by retrying
    assert [p.label for p in grpc.predict(faces)] == want
    http.close()
    grpc.close()


def test_uint8_model_with_two_instances(tmp_path: Path) -> None:
    model = make_tiny_onnx(tmp_path / "tiny_u8.onnx", input_dtype="uint8", seed=3)
    faces = _faces(12, seed=3)
    with Recognizer(model, threads=1) as local, \
            ServerProcess(model, python=_serve_python(), args=["--instances", "2", "--threads", "1", "-q"]) as sp, \
            RemoteRecognizer(sp.grpc_url, protocol="grpc") as remote:
        assert remote.info.input_dtype == "uint8" and remote.prepare(faces).dtype == np.uint8
        np.testing.assert_allclose([p.probs for p in remote.predict(faces)], [p.probs for p in local.predict(faces)],
                                   atol=1e-5)


def test_environment_check_explains_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    if not any(r.startswith("numpy") and "<2" in r for r in metadata.requires("nvidia-pytriton") or []):
        pytest.skip("this PyTriton does not pin numpy<2")
    monkeypatch.setattr(server_mod.np, "__version__", "2.1.0")
    assert "numpy<2" in (server_mod._numpy_problem() or "")
    monkeypatch.setattr(server_mod.np, "__version__", "1.26.4")
    assert server_mod._numpy_problem() is None


def test_cli_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert serve_cli.main(["--http-port", "0"]) == 2
    assert "expected a TCP port" in capsys.readouterr().err
    assert serve_cli.main(["--grpc-port", "8000"]) == 2
    assert "must differ" in capsys.readouterr().err


def test_cli_refuses_a_log_file_it_cannot_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert serve_cli.main(["--log-file", str(tmp_path)]) == 2  # a folder
    assert "--log-file" in capsys.readouterr().err
    (tmp_path / "f").write_text("")
    assert serve_cli.main(["-q", "--log-file", str(tmp_path / "f" / "triton.log")]) == 2  # under a file
    assert "is a file, not a folder" in capsys.readouterr().err


def test_quiet_sends_tritonservers_log_to_a_file_named_by_the_http_port(monkeypatch: pytest.MonkeyPatch) -> None:
    got: dict = {}
    monkeypatch.setattr(serve_cli, "serve", lambda *a, **kw: got.update(kw))
    assert serve_cli.main(["-q", "--http-port", "18123"]) == 0
    assert got["log_file"] == serve_cli.quiet_log_folder() / "fsrfer-serve-18123.log"
    assert serve_cli.main([]) == 0 and got["log_file"] is None  # without -q: the console, as tritonserver writes it
    assert serve_cli.main(["--log-file", "my logs/t.log"]) == 2  # PyTriton would split it


def test_quiet_server_writes_tritonservers_log_to_its_file(server: ServerProcess) -> None:
    """-q: the console has fsrfer-serve's ready line, which names the file, not tritonserver's start-up tables."""
    assert server._tmp is not None
    console = (server._tmp / "server.log").read_text()
    triton_log = server._tmp / server_mod.TRITON_LOG
    assert "Started HTTPService" in triton_log.read_text() and "Started HTTPService" not in console
    assert f"tritonserver's log in {triton_log}. Ctrl-C to stop" in console
    assert "tritonserver's log:\n" in server.log_tail()


def test_a_server_gets_different_free_ports_and_keeps_the_ones_it_is_given() -> None:
    """All three sockets are held open while their ports are chosen: the system cannot hand out one twice."""
    import socket

    ports = server_mod.free_ports(n=3)
    assert len(set(ports)) == 3
    for port in ports:  # free now: each can be bound
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))
    sp = ServerProcess(python=sys.executable, grpc_port=ports[0])
    assert sp.ports["grpc"] == ports[0] and len(set(sp.ports.values())) == 3


def test_error_classification() -> None:
    """Which transport errors are "try again" (ServerUnavailable) and which are the server's answer."""
    from tritonclient.utils import InferenceServerException

    from fsrfer_edge.serving.client import TritonClientBackend

    backend = TritonClientBackend.__new__(TritonClientBackend)  # no server needed to classify errors
    backend._info = None
    assert backend._unavailable(ConnectionRefusedError(111, "Connection refused")) == "unreachable"
    assert backend._unavailable(InferenceServerException("failed to connect", status="StatusCode.UNAVAILABLE"))
    unknown = InferenceServerException("Request for unknown model: 'fsrfer' is not found", status="404")
    assert backend._unavailable(unknown) is None  # while connecting: a wrong model name
    backend._info = object()  # type: ignore[assignment]
    assert backend._unavailable(unknown) == "not loaded"  # after connecting: the server is (re)loading it
    assert backend._unavailable(InferenceServerException("input 'faces' has wrong shape", status="400")) is None


@pytest.mark.parametrize("first_error, starts", [("ConnectionRefusedError in get_config_from_handshake_server", 2),
                                                 ("model file is corrupt", 1)])
def test_a_start_that_fails_in_pytritons_handshake_is_tried_again(tmp_path: Path, first_error: str, starts: int) -> None:
    # A stand-in for the serving Python: each start is counted; the first fails with `first_error`,
    # later ones with an error no retry can fix.
    count = tmp_path / "starts"
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho x >> {count}\n"
                    f"if [ $(wc -l < {count}) -eq 1 ]; then echo '{first_error}'; else echo 'model file is corrupt'; fi\n"
                    "exit 1\n")
    fake.chmod(0o755)
    with pytest.raises(ServerUnavailable, match="model file is corrupt"):
        ServerProcess(tmp_path / "m.onnx", python=str(fake), startup_timeout_s=20).start()
    assert len(count.read_text().splitlines()) == starts
