"""Tests that kill hand-made mutants the rest of the suite let through (round 66a: the Triton serving code).

Round 64c covered the repository's max_batch, the client's retry count and its checks of a served model's dims and
logits. This round covers what runs inside fsrfer-serve without a real server (the infer function that one client's
NaN face must not spoil for the others, the companion info model, the model PyTriton is asked to bind, the max batch
and preferred sizes serve() derives from the model, its option bounds, LD_LIBRARY_PATH), ServerProcess (the ports it
picks, its --log-file, readiness of the model itself), the client against a stand-in Triton HTTP endpoint or a fake
tritonclient (binary tensors, the uint8 datatype, chunks of the server's max batch, the served data types, the
companion info model, 503 as "try again", the request timeout, URLs, reconnecting after a broken connection), and
ONNX files whose graph disagrees with their metadata in the repository writer. No torch: the ONNX model is built
with onnx.helper; PyTriton's server is never started.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from fsrfer_edge.errors import ConfigError, ModelError
from fsrfer_edge.metadata import ModelInfo
from _http import QuietHandler, client_stand_in, triton_model_config
from _onnx_models import make_flat_onnx

_INFO = ModelInfo()
_PRE = _INFO.preprocessing
_FACE = (_PRE.channels, _PRE.input_size, _PRE.input_size)


def _tiny_onnx(path: Path, info: ModelInfo = _INFO, logits_type: int = 1) -> Path:
    """A 48x48 float -> 7 logits fsrfer ONNX file (Flatten, MatMul, Cast to ``logits_type``, an ONNX element type)
    with a dynamic batch axis and ``info`` as its fsrfer metadata."""
    return make_flat_onnx(path, info, logits_type)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


# -- fsrfer-serve: the functions PyTriton runs ---------------------------------------------------------------


def test_one_clients_nan_face_does_not_spoil_the_others_batched_with_it(tiny: Path) -> None:
    """Mutants: a face with a single NaN pixel was taken for a finite one (the whole batch, three clients' requests,
    then failed); or, once one face was NaN, every face of the batch got NaN logits; or float faces were not checked
    at all. The face with NaN gets NaN logits, every other one the logits it gets alone."""
    pytest.importorskip("pytriton.decorators", reason="PyTriton is not installed (pip install -e '.[serve]')")
    from pytriton.proxy.types import Request  # type: ignore[import-untyped]

    from fsrfer_edge import Recognizer
    from fsrfer_edge.serving import server as server_mod

    rng = np.random.default_rng(1)
    faces = [rng.uniform(-1, 1, size=(n, *_FACE)).astype(np.float32) for n in (2, 1, 3)]
    faces[1][0, 0, 5, 7] = np.nan  # one pixel of the second client's only face
    with Recognizer(tiny, confidence=None) as rec:
        infer: Any = server_mod._infer_function(rec)  # PyTriton's batch decorator: a list of requests in, out
        answers = infer([Request(data={_INFO.input_name: f}) for f in faces])
        assert [a[_INFO.output_name].shape for a in answers] == [(2, 7), (1, 7), (3, 7)]
        assert np.isnan(answers[1][_INFO.output_name]).all()
        for i in (0, 2):
            np.testing.assert_allclose(answers[i][_INFO.output_name], rec.predict_logits(faces[i]), rtol=1e-5,
                                       atol=1e-5)


def test_the_info_model_answers_every_request_of_a_batch() -> None:
    """Mutant: the companion ``<name>_info`` model answered only the first of several requests Triton handed it
    together (the others' clients got no ModelInfo)."""
    from fsrfer_edge.serving import server as server_mod
    from fsrfer_edge.serving.client import INFO_OUTPUT

    answers = server_mod._info_function(_INFO)([object(), object(), object()])
    assert len(answers) == 3
    for answer in answers:
        assert ModelInfo.from_json(answer[INFO_OUTPUT].reshape(-1)[0].decode()) == _INFO


class _Bound:
    """pytriton.triton as far as build_triton uses it; records what was bound."""

    def __init__(self) -> None:
        self.binds: dict[str, dict[str, Any]] = {}
        bound = self

        class Triton:
            def __init__(self, config: Any, workspace: Any) -> None:
                pass

            def bind(self, model_name: str, **kwargs: Any) -> None:
                bound.binds[model_name] = kwargs

        self.Triton = Triton
        self.TritonConfig = lambda **kwargs: kwargs


def test_the_served_model_is_bound_with_its_shape_max_batch_and_preferred_sizes(
        tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutants: the input bound as (S, S, C) instead of the model's (C, S, S); max_batch_size always the default 64;
    the preferred batch sizes not handed to the dynamic batcher. Triton would refuse every request, batch more than
    the model takes, or ignore --preferred-batch-size."""
    pytest.importorskip("pytriton.model_config", reason="PyTriton is not installed (pip install -e '.[serve]')")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.errors import require as real_require
    from fsrfer_edge.serving import server as server_mod

    fake = _Bound()
    monkeypatch.setattr(server_mod, "check_environment", lambda: {})
    monkeypatch.setattr(server_mod, "require",
                        lambda name, *a, **k: fake if name == "pytriton.triton" else real_require(name, *a, **k))
    with Recognizer(tiny, confidence=None) as rec:
        server_mod.build_triton([rec, rec], model_name="fer", max_batch=16, preferred_batch_sizes=(4, 16),
                                max_queue_delay_us=300)
    model = fake.binds["fer"]
    assert len(model["infer_func"]) == 2  # one per instance
    [inp] = model["inputs"]
    [out] = model["outputs"]
    assert (inp.name, tuple(inp.shape), np.dtype(inp.dtype)) == (_INFO.input_name, _FACE, np.float32)
    assert (out.name, tuple(out.shape), np.dtype(out.dtype)) == (_INFO.output_name, (7,), np.float32)
    config = model["config"]
    assert config.max_batch_size == 16
    assert list(config.batcher.preferred_batch_size) == [4, 16]
    assert config.batcher.max_queue_delay_microseconds == 300
    assert "fer_info" in fake.binds


def test_serve_caps_max_batch_and_preferred_sizes_at_the_models_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutants: serve() bound the asked max_batch even where the model (an engine's profile) takes fewer faces; a
    preferred size equal to that limit was dropped."""
    from fsrfer_edge.serving import server as server_mod

    class FakeRecognizer:
        max_batch = 16
        info = _INFO

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def close(self) -> None:
            pass

    seen: dict[str, Any] = {}

    def build(recognizers: Any, host: Any, http: Any, grpc: Any, metrics: Any, name: str, limit: int,
              preferred: tuple[int, ...], *rest: Any) -> str:
        seen.update(limit=limit, preferred=preferred)
        return "triton"

    monkeypatch.setattr(server_mod, "Recognizer", FakeRecognizer)
    monkeypatch.setattr(server_mod, "check_environment", lambda: {})
    monkeypatch.setattr(server_mod, "build_triton", build)
    monkeypatch.setattr(server_mod, "_run_until_interrupted", lambda *args: None)
    http, grpc, metrics = server_mod.free_ports("127.0.0.1", 3)
    server_mod.serve(http_port=http, grpc_port=grpc, metrics_port=metrics, max_batch=64,
                     preferred_batch_sizes=[8, 16, 32])
    assert seen == {"limit": 16, "preferred": (8, 16)}


def test_serve_takes_its_options_at_their_bounds_and_refuses_them_beyond(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutants: a preferred batch size equal to max_batch, or threads=MAX_THREADS, was refused; port 65536 was
    taken (then an OverflowError from the socket, not a ConfigError)."""
    from fsrfer_edge.backends.onnxruntime_backend import MAX_THREADS
    from fsrfer_edge.serving import server as server_mod

    def went_on() -> None:
        raise RuntimeError("serve() went on to check the environment")

    monkeypatch.setattr(server_mod, "check_environment", went_on)
    for accepted in ({"max_batch": 16, "preferred_batch_sizes": [16]}, {"threads": MAX_THREADS}):
        with pytest.raises(RuntimeError, match="went on"):
            server_mod.serve(**accepted)
    with pytest.raises(ConfigError, match="http_port=65536; expected a TCP port 1..65535"):
        server_mod.serve(http_port=65536)


def test_the_environment_puts_this_pythons_libpython_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: this Python's libpython folder went last on LD_LIBRARY_PATH, so the Python backend stub loaded
    another Python's libpython of the same name found earlier there (the system one for a pyenv Python)."""
    from fsrfer_edge.serving import server as server_mod

    monkeypatch.setattr(server_mod, "require", lambda *args, **kwargs: None)
    monkeypatch.setattr(server_mod, "_numpy_problem", lambda: None)
    monkeypatch.setattr(server_mod, "_libpython_dir", lambda: Path("/opt/py/lib"))
    monkeypatch.setenv("LD_LIBRARY_PATH", "/usr/lib/x86_64-linux-gnu:/opt/py/lib:/usr/local/cuda/lib64")
    assert server_mod.check_environment() == {
        "LD_LIBRARY_PATH": "/opt/py/lib:/usr/lib/x86_64-linux-gnu:/usr/local/cuda/lib64"}


def test_a_log_file_given_as_an_option_is_not_given_twice(tmp_path: Path) -> None:
    """Mutant: ``--log-file=PATH`` among a ServerProcess's args was not seen, so the command carried a second
    --log-file (the temporary one), which argparse takes over the user's: tritonserver's log went elsewhere."""
    from fsrfer_edge.serving import ServerProcess

    mine = str(tmp_path / "triton.log")
    cmd = ServerProcess(args=[f"--log-file={mine}"]).command(tmp_path / "ws")
    assert [a for a in cmd if a.startswith("--log-file")] == [f"--log-file={mine}"]


def test_a_server_process_never_picks_a_port_it_was_given_for_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: a port given for one endpoint (free, as nothing listens there yet) could be picked again for one left
    at 0, so fsrfer-serve got the same port twice and refused to start."""
    from fsrfer_edge.serving import ServerProcess
    from fsrfer_edge.serving import server as server_mod

    monkeypatch.setattr(server_mod, "free_ports", lambda host, n: [18000, 18001, 18002][:n])
    sp = ServerProcess(http_port=18000)
    assert sp.ports == {"http": 18000, "grpc": 18001, "metrics": 18002}


_SLOW_MODEL_SERVE = '''
import http.server, sys, threading, time
from fsrfer_edge.serving.server import _run_until_interrupted

port = int(sys.argv[sys.argv.index("--http-port") + 1])
started = time.monotonic()

class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # the info model is ready at once, the model itself 1.5 s later (Triton answers 400 before)
        ready = self.path.endswith("_info/ready") or time.monotonic() - started > 1.5
        self.send_response(200 if ready else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

class Triton:
    def run(self):
        httpd = http.server.HTTPServer(("127.0.0.1", port), Ready)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def is_alive(self):
        return True

    def stop(self):
        pass

_run_until_interrupted(Triton(), None)
'''


def test_a_server_process_is_ready_only_once_its_model_is(tmp_path: Path) -> None:
    """Mutant: start() returned once the companion info model was ready, so the first request to the model itself
    (still loading: Triton answers 400 to its ready check) failed with "model is not ready"."""
    pytest.importorskip("pytriton", reason="PyTriton is not installed (pip install -e '.[serve]')")
    import sys
    import urllib.error
    import urllib.request

    from fsrfer_edge.serving import ServerProcess

    script = tmp_path / "fake_serve.py"
    script.write_text(_SLOW_MODEL_SERVE)
    python = tmp_path / "python"  # ServerProcess runs `python -m fsrfer_edge.serving.cli ARGS`
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    python.chmod(0o755)
    with ServerProcess(python=str(python), startup_timeout_s=30) as sp:
        try:
            with urllib.request.urlopen(f"http://{sp.http_url}/v2/models/fsrfer/ready", timeout=5) as r:
                status = r.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status == 200, "start() returned before the model was ready"


# -- RemoteRecognizer against a stand-in Triton HTTP endpoint ----------------------------------------------------


class _FakeTriton(QuietHandler):
    """Triton's HTTP endpoint: the model config, and inference answering zeros (binary or JSON, as asked); records
    each inference request's JSON header."""

    protocol_version = "HTTP/1.1"
    config = triton_model_config()
    status = 200  # of the config request
    requests: list[dict[str, Any]] = []

    def do_GET(self) -> None:
        if self.path == "/v2/models/fsrfer/config" and self.status != 200:
            self._reply(self.status, b'{"error": "maintenance"}')
            return
        found = self.path == "/v2/models/fsrfer/config"
        self._reply(200 if found else 400, self.config if found else b'{"error": "Request for unknown model"}')

    info_answer: list[str] = []  # the companion model's model_info strings

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        header = json.loads(body[:int(self.headers.get("Inference-Header-Content-Length", len(body)))])
        if self.path == "/v2/models/fsrfer_info/infer":
            self._reply(200, json.dumps({"model_name": "fsrfer_info", "outputs": [
                {"name": "model_info", "datatype": "BYTES", "shape": [len(self.info_answer)],
                 "data": self.info_answer}]}).encode())
            return
        self.requests.append(header)
        n = int(header["inputs"][0]["shape"][0])
        shape = [n, 7]
        self._reply(200, json.dumps({"model_name": "fsrfer", "outputs": [
            {"name": "logits", "datatype": "FP32", "shape": shape, "data": [0.0] * (n * 7)}]}).encode())


@contextlib.contextmanager
def _served(**attributes: Any) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    requests: list[dict[str, Any]] = []
    handler = type("_Handler", (_FakeTriton,), {"requests": requests, **attributes})
    with client_stand_in(handler) as address:
        yield address, requests


def _config(info: ModelInfo, max_batch: int = 16) -> bytes:
    doc = json.loads(triton_model_config())
    doc["max_batch_size"] = max_batch
    doc["input"][0]["data_type"] = {"float32": "TYPE_FP32", "uint8": "TYPE_UINT8"}[info.input_dtype]
    doc["parameters"]["fsrfer"]["string_value"] = info.to_json()
    return json.dumps(doc).encode()


def test_client_sends_binary_tensors_in_chunks_of_the_servers_max_batch() -> None:
    """Mutants: the faces went as JSON numbers (several times the bytes, parsed on both sides); the server's
    max_batch_size was not taken, so 40 faces went in one request that a server batching at most 16 refuses."""
    from fsrfer_edge.serving import RemoteRecognizer

    with _served(config=_config(_INFO, max_batch=16)) as (address, requests):
        with RemoteRecognizer(address, timeout_s=10, confidence=None) as rec:
            assert rec.max_batch == 16
            assert rec.predict_logits(np.zeros((40, *_FACE), np.float32)).shape == (40, 7)
    assert [r["inputs"][0]["shape"][0] for r in requests] == [16, 16, 8]
    for r in requests:
        assert r["inputs"][0]["datatype"] == "FP32"
        assert r["inputs"][0]["parameters"]["binary_data_size"] == r["inputs"][0]["shape"][0] * 48 * 48 * 4
        assert "data" not in r["inputs"][0]


def test_client_declares_a_raw_pixel_models_faces_unsigned_bytes() -> None:
    """Mutant: uint8 faces were declared INT8 on the wire (pixels above 127 would read negative; tritonclient
    refuses the mismatch)."""
    from fsrfer_edge.serving import RemoteRecognizer

    info = ModelInfo(input_dtype="uint8")
    with _served(config=_config(info)) as (address, requests):
        with RemoteRecognizer(address, timeout_s=10, confidence=None) as rec:
            assert rec.predict_logits(np.full((2, *_FACE), 200, np.uint8)).shape == (2, 7)
    assert [r["inputs"][0]["datatype"] for r in requests] == ["UINT8"]


@pytest.mark.parametrize("tensor, data_type, match", [
    ("output", "TYPE_FP16", r"output 'logits' is TYPE_FP16 \[7\]; the model's metadata expects TYPE_FP32 \[7\]"),
    ("input", "TYPE_UINT8", r"input 'faces' is TYPE_UINT8 \[1, 48, 48\]; the model's metadata expects TYPE_FP32"),
], ids=["fp16-logits", "byte-faces"])
def test_client_refuses_a_served_tensor_of_another_data_type_when_connecting(tensor: str, data_type: str,
                                                                             match: str) -> None:
    """Mutants: the data types of the served input and output were not compared with the metadata's (a uint8
    variant served under the float model's name took normalised floats; FP16 logits were taken for FP32), so the
    mismatch showed only as a failure of every request, or wrong answers."""
    from fsrfer_edge.serving import RemoteRecognizer

    doc = json.loads(triton_model_config())
    doc[tensor][0]["data_type"] = data_type
    with _served(config=json.dumps(doc).encode()) as (address, _):
        with pytest.raises(ModelError, match=match):
            RemoteRecognizer(address, timeout_s=10, confidence=None)


def test_client_reads_fsrfer_serves_companion_info_model_and_refuses_a_malformed_answer() -> None:
    """fsrfer-serve publishes the ModelInfo through ``<name>_info`` (its config carries none). Mutant: an answer of
    several strings was taken by its first, whatever the others said, instead of refused as not fsrfer-serve's."""
    from fsrfer_edge.serving import RemoteRecognizer

    doc = json.loads(triton_model_config())
    del doc["parameters"]
    info = ModelInfo(precision="fp16")
    with _served(config=json.dumps(doc).encode(), info_answer=[info.to_json()]) as (address, _):
        with RemoteRecognizer(address, timeout_s=10, confidence=None) as rec:
            assert rec.info == info
    with _served(config=json.dumps(doc).encode(), info_answer=[info.to_json(), _INFO.to_json()]) as (address, _):
        with pytest.raises(ModelError, match="fsrfer_info: expected one 'model_info' string"):
            RemoteRecognizer(address, timeout_s=10, confidence=None)


def test_client_reads_the_url_and_model_name_before_connecting() -> None:
    """Mutants: the port was split off at the first ':' (so '[::1]:PORT' was refused as no HOST:PORT); a grpc:// URL
    with protocol='http' went to the gRPC port over HTTP (a confusing "did not answer in HTTP") instead of being
    refused as a contradiction; a model name holding '/' went into the request's URL path instead of being
    refused."""
    pytest.importorskip("tritonclient.http", reason="tritonclient is not installed (pip install -e '.[client]')")
    from fsrfer_edge.errors import InputError
    from fsrfer_edge.serving import RemoteRecognizer, ServerUnavailable

    with pytest.raises(ServerUnavailable, match=r"http://\[::1\]:1 is unreachable"):  # nothing listens on port 1
        RemoteRecognizer("http://[::1]:1", timeout_s=2, confidence=None)
    with pytest.raises(InputError, match="names grpc but protocol='http'; make them agree"):
        RemoteRecognizer("grpc://127.0.0.1:1", protocol="http", timeout_s=2, confidence=None)
    with pytest.raises(InputError, match="model_name='fsrfer/versions/1'; expected a Triton model name"):
        RemoteRecognizer("127.0.0.1:1", model_name="fsrfer/versions/1", timeout_s=2, confidence=None)


def test_client_takes_503_for_a_server_to_wait_for() -> None:
    """Mutant: HTTP 503 (a Triton that is not ready) was taken for a wrong model name, so retries= never waited."""
    from fsrfer_edge.serving import RemoteRecognizer, ServerUnavailable

    with _served(status=503) as (address, _):
        with pytest.raises(ServerUnavailable, match="gave up after 2 attempts"):
            RemoteRecognizer(address, timeout_s=10, retries=1, retry_delay_s=0, confidence=None)


def test_client_gives_up_after_its_timeout_on_a_server_that_does_not_answer() -> None:
    """Mutant: timeout_s was not handed to the HTTP connection, so a server that accepts but never answers held
    the caller for tritonclient's default 60 s."""
    pytest.importorskip("tritonclient.http", reason="tritonclient is not installed (pip install -e '.[client]')")
    import socket

    from fsrfer_edge.serving import RemoteRecognizer, ServerUnavailable

    with socket.create_server(("127.0.0.1", 0)) as listener:
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        outcome: dict[str, BaseException] = {}

        def connect() -> None:
            try:
                RemoteRecognizer(address, timeout_s=0.5, confidence=None)
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                outcome["error"] = exc

        start = time.monotonic()
        thread = threading.Thread(target=connect, daemon=True)
        thread.start()
        thread.join(8)
        assert not thread.is_alive(), "the client waited well past its timeout_s of 0.5 s"
        assert time.monotonic() - start < 8
    assert isinstance(outcome.get("error"), ServerUnavailable), outcome


# -- the model repository -------------------------------------------------------------------------------------------


def test_repository_refuses_an_onnx_file_whose_graph_disagrees_with_its_metadata(tmp_path: Path) -> None:
    """Mutants: an ONNX file whose metadata says uint8 input over a float graph, or whose logits are float16, went
    into the repository (Triton would then load a model that refuses every request RemoteRecognizer sends, or
    answers logits the client refuses); the writer names the mismatch and writes nothing."""
    from fsrfer_edge.serving import write_triton_repo

    assert (write_triton_repo(tmp_path / "ok", onnx_path=_tiny_onnx(tmp_path / "ok.onnx")) / "fsrfer_onnx").is_dir()
    lying = _tiny_onnx(tmp_path / "lying.onnx", info=ModelInfo(input_dtype="uint8"))
    with pytest.raises(ModelError, match="input 'faces' has ONNX element type 1, but the metadata says uint8"):
        write_triton_repo(tmp_path / "repo", onnx_path=lying)
    half = _tiny_onnx(tmp_path / "half.onnx", logits_type=10)  # FLOAT16
    with pytest.raises(ModelError, match="output 'logits' is not float32 logits"):
        write_triton_repo(tmp_path / "repo", onnx_path=half)
    assert not (tmp_path / "repo").exists()


class _BreakingGrpcLib:
    """tritonclient.grpc as far as TritonClientBackend uses it: the first connection breaks at its first inference
    and stays broken (as a socket reset by a restarted server does); later connections work."""

    def __init__(self) -> None:
        self.made: list[Any] = []
        lib = self
        config = json.loads(triton_model_config())

        class InferenceServerClient:
            def __init__(self, url: str) -> None:
                self.closed = False
                self.broken = False
                lib.made.append(self)

            def get_model_config(self, name: str, as_json: bool = False, client_timeout: float = 0) -> dict:
                return {"config": config}

            def infer(self, name: str, inputs: list, outputs: list, client_timeout: float = 0) -> Any:
                if self.broken or self is lib.made[0]:
                    self.broken = True
                    raise ConnectionResetError(104, "Connection reset by peer")
                n = inputs[0].shape[0]
                return type("Result", (), {"as_numpy": lambda _self, _name: np.zeros((n, 7), np.float32)})()

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


def test_a_retry_after_a_broken_connection_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: the connection a transport failure broke was kept for the retries, so with retries=N a call failed
    N+1 times on the dead socket (the server restarted and back up meanwhile) instead of reconnecting."""
    from fsrfer_edge.serving import client as client_mod

    lib = _BreakingGrpcLib()
    monkeypatch.setattr(client_mod, "_import_client", lambda protocol: lib)
    backend = client_mod.TritonClientBackend("127.0.0.1:8001", protocol="grpc", retries=1, retry_delay_s=0)
    try:
        assert backend.infer(np.zeros((2, *_FACE), np.float32)).shape == (2, 7)
        assert len(lib.made) == 2 and lib.made[0].closed and not lib.made[1].closed
    finally:
        backend.close()


def test_repository_refuses_a_max_batch_one_over_the_engines_profile(tmp_path: Path) -> None:
    """Mutant: a max_batch one over the engine's profile maximum was written (Triton's batcher would then form
    batches the engine refuses, failing the requests batched into them)."""
    pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient not installed")
    from fsrfer_edge import engine_cache
    from fsrfer_edge.fileio import atomic_write_bytes, sha256_file
    from fsrfer_edge.serving import parse_config, write_triton_repo

    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    key = engine_cache.EngineKey("10.13.0.35", "9.0", _INFO.precision, 1, 8, 16)
    engine = atomic_write_bytes(tmp_path / key.filename("tiny", sha256_file(onnx_path)), b"not a real plan")
    engine_cache.write_sidecar(engine, key, sha256_file(onnx_path), _INFO)
    with pytest.raises(ConfigError, match="max_batch=17 exceeds the engine's profile maximum 16"):
        write_triton_repo(tmp_path / "repo", engine_path=engine, max_batch=17)
    repo = write_triton_repo(tmp_path / "repo", engine_path=engine, max_batch=16)
    assert parse_config(repo / "fsrfer_trt").max_batch_size == 16
