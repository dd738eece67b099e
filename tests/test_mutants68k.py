"""Tests that kill hand-made mutants (round 68, task K68k) of the measured files kept beside models
(fsrfer_edge/sidecars.py: which names and folders are looked in, which found file is trusted, how a named one is
refused, how their values are read), fsrfer-engines (fsrfer_edge/engines_cli.py: --tensorrt-version as typed, near
versions, the listing's stale reasons and totals, the staging folders of killed exports) and the Triton client
(fsrfer_edge/serving/client.py: URLs, option checks, timeouts handed to each request, what is retried, the served
model's batching, binary tensors, the data type answered). A third pass after rounds 64 and 66. The client runs against
a fake tritonclient (no server is started, and the tests run where tritonclient is not installed, where the stand-in
HTTP server tests of rounds 64c and 66a skip); plain files stand in for engines."""
from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Callable, Optional

import numpy as np
import pytest

from fsrfer_edge.errors import InputError, ModelError
from fsrfer_edge.metadata import ModelInfo
from fsrfer_edge.serving.errors import RemoteError, ServerUnavailable, TooManyOpenFiles
from _http import triton_model_config
# -- the Triton client (fsrfer_edge/serving/client.py), against a fake tritonclient -------------------------------


class _ServerError(Exception):
    """tritonclient.utils.InferenceServerException as far as the client reads it: a message and a status()."""

    def __init__(self, msg: str, status: str = "") -> None:
        super().__init__(msg)
        self._status = status

    def status(self) -> str:
        return self._status


class _FakeTritonLib:
    """tritonclient.http / tritonclient.grpc as far as TritonClientBackend uses them; records what each call was
    given. ``config`` is the served model's config; ``config_errors`` / ``infer_errors`` are raised, one per call,
    before answering; ``logits`` makes the inference answer (from the batch size); ``info_answer`` is what the
    companion ``<name>_info`` model answers."""

    def __init__(self, config: Optional[dict[str, Any]] = None) -> None:
        self.config: dict[str, Any] = json.loads(triton_model_config()) if config is None else config
        self.config_errors: list[BaseException] = []
        self.infer_errors: list[BaseException] = []
        self.index: Any = [{"name": "zeta"}, {"name": "alpha"}]
        self.info_answer: Any = None
        self.logits: Callable[[int], np.ndarray] = lambda n: np.zeros((n, 7), np.float32)
        self.connections: list[dict[str, Any]] = []
        self.config_kw: list[dict[str, Any]] = []
        self.index_kw: list[dict[str, Any]] = []
        self.infer_kw: list[dict[str, Any]] = []
        self.inputs: list[dict[str, Any]] = []
        self.outputs: list[dict[str, Any]] = []
        lib = self

        class InferenceServerClient:
            def __init__(self, url: str, **kw: Any) -> None:
                lib.connections.append({"url": url, **kw})

            def get_model_config(self, name: str, **kw: Any) -> dict[str, Any]:
                lib.config_kw.append(kw)
                if lib.config_errors:
                    raise lib.config_errors.pop(0)
                return {"config": lib.config} if kw.get("as_json") else lib.config

            def get_model_repository_index(self, **kw: Any) -> Any:
                lib.index_kw.append(kw)
                return lib.index

            def infer(self, name: str, inputs: list[Any], outputs: Optional[list[Any]] = None, **kw: Any) -> Any:
                lib.infer_kw.append({"name": name, **kw})
                if name.endswith("_info"):
                    return SimpleNamespace(as_numpy=lambda _name: lib.info_answer)
                if lib.infer_errors:
                    raise lib.infer_errors.pop(0)
                n = inputs[0].shape[0]
                return SimpleNamespace(as_numpy=lambda _name: lib.logits(n))

            def close(self) -> None:
                pass

        class InferInput:
            def __init__(self, name: str, shape: list[int], dtype: str) -> None:
                self.shape = shape
                lib.inputs.append({"name": name, "shape": shape, "dtype": dtype})

            def set_data_from_numpy(self, batch: np.ndarray, **kw: Any) -> None:
                lib.inputs[-1].update(kw)

        def requested_output(name: str, **kw: Any) -> str:
            lib.outputs.append({"name": name, **kw})
            return name

        self.InferenceServerClient = InferenceServerClient
        self.InferInput = InferInput
        self.InferRequestedOutput = requested_output


@pytest.fixture()
def triton(monkeypatch: pytest.MonkeyPatch) -> _FakeTritonLib:
    """A fake tritonclient for both protocols (no gevent hub over HTTP), with tritonclient.utils' exception."""
    from fsrfer_edge.serving import client as client_mod

    lib = _FakeTritonLib()
    monkeypatch.setattr(client_mod, "_import_client", lambda protocol: lib)
    monkeypatch.setattr(client_mod, "_track_gevent_hub", lambda: None)
    utils = ModuleType("tritonclient.utils")
    utils.InferenceServerException = _ServerError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tritonclient.utils", utils)
    return lib


def _backend(protocol: str = "grpc", **kw: Any) -> Any:
    from fsrfer_edge.serving.client import TritonClientBackend

    return TritonClientBackend("127.0.0.1:8001" if protocol == "grpc" else "127.0.0.1:8000", protocol=protocol, **kw)


_FACES = np.zeros((3, 1, 48, 48), np.float32)


@pytest.mark.parametrize("url", ["127.0.0.1:\uff18\uff10\uff10\uff10", "127.0.0.1:\u0668\u0660\u0660\u0660"],
                         ids=["fullwidth", "arabic-indic"])
def test_a_port_of_non_ascii_digits_is_refused(url: str) -> None:
    # Mutant C1: the port's isascii() check dropped (int() reads other scripts' digits as a port)
    from fsrfer_edge.serving.client import _split_url

    with pytest.raises(InputError, match="HOST:PORT"):
        _split_url(url, "http")


@pytest.mark.parametrize("url", ["example.com/triton:8000", "http://host/v2:8000"])
def test_a_url_with_a_path_is_refused(url: str) -> None:
    # Mutant C2: a '/' in the URL (a path, which tritonclient would glue to its own) was let through
    from fsrfer_edge.serving.client import _split_url

    with pytest.raises(InputError, match="HOST:PORT"):
        _split_url(url, "http")
    assert _split_url("grpc://example.com:8001", "grpc") == "example.com:8001"


def test_a_timeout_of_zero_is_refused_before_connecting(triton: _FakeTritonLib) -> None:
    # Mutant C3: timeout_s > 0 became >= 0 (a zero timeout fails every request at once)
    with pytest.raises(InputError, match="timeout_s=0; expected a finite, positive number"):
        _backend(timeout_s=0)
    assert triton.connections == []


def test_a_retry_delay_of_zero_is_taken(triton: _FakeTritonLib) -> None:
    # Mutant C4: retry_delay_s >= 0 became > 0 (retrying at once was refused)
    backend = _backend(retry_delay_s=0, retries=1)
    try:
        assert backend.retry_delay_s == 0.0
    finally:
        backend.close()


def test_a_model_name_holding_a_slash_is_refused_before_connecting(triton: _FakeTritonLib) -> None:
    # Mutant C5: model_name's '/' check dropped (the name went into the request's URL path)
    with pytest.raises(InputError, match="model_name='fsrfer/versions/1'; expected a Triton model name"):
        _backend(model_name="fsrfer/versions/1")
    assert triton.connections == []


def test_an_http_connection_gets_timeout_s_for_connecting_and_for_the_network(triton: _FakeTritonLib) -> None:
    # Mutant C6: network_timeout was not passed on (tritonclient's 60 s default held a request to a hung server)
    backend = _backend("http", timeout_s=2.5)
    try:
        assert triton.connections == [{"url": "127.0.0.1:8000", "connection_timeout": 2.5, "network_timeout": 2.5}]
    finally:
        backend.close()


def test_grpc_requests_carry_timeout_s_and_the_config_is_unwrapped(triton: _FakeTritonLib) -> None:
    # Mutants C7, C17, C14: the config request, the inference and the info model's request went without
    # client_timeout (no deadline over gRPC); C8: the gRPC answer's {"config": ...} wrapper was not taken off
    doc = triton.config
    del doc["parameters"]  # no ModelInfo in the config: read from the companion info model
    triton.info_answer = np.array([ModelInfo(precision="fp16").to_json().encode()], dtype=object)
    backend = _backend("grpc", timeout_s=4.0)
    try:
        assert triton.config_kw == [{"as_json": True, "client_timeout": 4.0}]
        assert backend.info.precision == "fp16" and backend.max_batch == 16
        backend.infer(_FACES)
        assert triton.infer_kw == [{"name": "fsrfer_info", "client_timeout": 4.0},
                                   {"name": "fsrfer", "client_timeout": 4.0}]
    finally:
        backend.close()


def test_the_info_models_answer_in_bytes_is_decoded(triton: _FakeTritonLib) -> None:
    # Mutant C15: a bytes answer was read with str() ("b'{...}'", not JSON)
    del triton.config["parameters"]
    info = ModelInfo(precision="int8")
    triton.info_answer = np.array([info.to_json().encode()], dtype=object)
    backend = _backend("http")
    try:
        assert backend.info == info
    finally:
        backend.close()


def test_an_unknown_model_when_connecting_is_a_model_error_naming_the_served_ones(triton: _FakeTritonLib) -> None:
    # Mutant C9: "unknown model" was taken for "not loaded yet" before the model was ever seen (retried, then
    # reported as a server to wait for); C13: the served models were listed unsorted
    triton.config_errors = [_ServerError("Request for unknown model: 'fsrfer' is not found", "StatusCode.NOT_FOUND")]
    with pytest.raises(ModelError, match=r"has no loaded model 'fsrfer' .*\(models: \['alpha', 'zeta'\]\)"):
        _backend("grpc", retries=2, retry_delay_s=0)
    assert len(triton.config_kw) == 1


def test_an_unknown_model_after_connecting_is_waited_for(triton: _FakeTritonLib) -> None:
    # (the other side of C9: once the model was seen, "unknown model" means a restarted server still loading it)
    backend = _backend("grpc", retries=1, retry_delay_s=0)
    try:
        triton.infer_errors = [_ServerError("Request for unknown model 'fsrfer'", "StatusCode.NOT_FOUND")]
        assert backend.infer(_FACES).shape == (3, 7)
        triton.infer_errors = [_ServerError("Request for unknown model 'fsrfer'", "StatusCode.NOT_FOUND")] * 2
        with pytest.raises(ServerUnavailable, match="is up but model 'fsrfer' is not loaded"):
            backend.infer(_FACES)
    finally:
        backend.close()


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE], ids=["EMFILE", "ENFILE"])
def test_no_file_descriptor_left_is_too_many_open_files_not_retried(triton: _FakeTritonLib, code: int) -> None:
    # Mutant C10: ENFILE (the system's table full) was taken for an unreachable server and retried
    triton.config_errors = [OSError(code, os.strerror(code))]
    with pytest.raises(TooManyOpenFiles, match="not a server problem"):
        _backend("grpc", retries=3, retry_delay_s=0)
    assert len(triton.config_kw) == 1


def test_retries_make_that_many_more_attempts_and_say_how_many(triton: _FakeTritonLib) -> None:
    # Mutants C11: the attempts counted one short in the message; C12: one retry more than asked
    triton.config_errors = [ConnectionRefusedError(111, "Connection refused")] * 5
    with pytest.raises(ServerUnavailable, match=r"gave up after 3 attempts"):
        _backend("grpc", retries=2, retry_delay_s=0)
    assert len(triton.config_kw) == 3


@pytest.mark.parametrize("status", ["StatusCode.DEADLINE_EXCEEDED", "StatusCode.UNAVAILABLE", "503"])
def test_a_deadline_or_unavailable_status_is_retried(triton: _FakeTritonLib, status: str) -> None:
    # Mutant C21: DEADLINE_EXCEEDED (a gRPC request past its timeout) was taken for an error of the model
    backend = _backend("grpc", retries=1, retry_delay_s=0)
    try:
        triton.infer_errors = [_ServerError("request failed", status)]
        assert backend.infer(_FACES).shape == (3, 7)
        triton.infer_errors = [_ServerError("request failed", status)] * 2
        with pytest.raises(ServerUnavailable, match="is unreachable"):
            backend.infer(_FACES)
    finally:
        backend.close()


def test_a_model_without_batching_is_refused(triton: _FakeTritonLib) -> None:
    # Mutant C16: max_batch_size 0 (no batching: Triton refuses a batch axis) was taken
    triton.config["max_batch_size"] = 0
    with pytest.raises(ModelError, match="has max_batch_size 0; expected a batching model"):
        _backend("grpc")
    triton.config["max_batch_size"] = 1
    backend = _backend("grpc")
    try:
        assert backend.max_batch == 1
    finally:
        backend.close()


def test_logits_come_back_as_contiguous_float32(triton: _FakeTritonLib) -> None:
    # Mutant C18: the server's array was returned as it came (float64 here, or a strided view)
    triton.logits = lambda n: np.arange(n * 7 * 2, dtype=np.float64).reshape(n, 14)[:, ::2]
    backend = _backend("grpc")
    try:
        out = backend.infer(_FACES)
        assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(out, np.arange(3)[:, None] * 14 + np.arange(0, 14, 2))
    finally:
        backend.close()


def test_an_http_parse_error_is_another_protocol_but_over_grpc_an_error_of_the_model(
        triton: _FakeTritonLib) -> None:
    # Mutant C20: the "did not answer in HTTP" advice was given for a gRPC connection too
    ParseError = type("ParseError", (Exception,), {})
    for protocol, error, match in (("http", ServerUnavailable, "did not answer in HTTP"),
                                   ("grpc", RemoteError, "answered with an error: ParseError")):
        backend = _backend(protocol)
        try:
            triton.infer_errors = [ParseError("bad status line")]
            with pytest.raises(error, match=match):
                backend.infer(_FACES)
        finally:
            backend.close()


def test_http_sends_and_asks_for_binary_tensors(triton: _FakeTritonLib) -> None:
    # Mutant C22: the faces went as JSON numbers over HTTP (several times the bytes, parsed on both sides)
    backend = _backend("http")
    try:
        backend.infer(_FACES)
    finally:
        backend.close()
    assert triton.inputs == [{"name": "faces", "shape": [3, 1, 48, 48], "dtype": "FP32", "binary_data": True}]
    assert triton.outputs == [{"name": "logits", "binary_data": True}]


def test_remote_recognizer_sends_at_most_64_faces_a_request_by_default(triton: _FakeTritonLib) -> None:
    # Mutant C23: the default max_batch changed (64 is the documented default; the server's own limit caps it)
    from fsrfer_edge.serving import RemoteRecognizer

    triton.config["max_batch_size"] = 256
    with RemoteRecognizer("127.0.0.1:8001", protocol="grpc", confidence=None) as rec:
        assert rec.max_batch == 64
        rec.predict_logits(np.zeros((70, 1, 48, 48), np.float32))
    assert [i["shape"][0] for i in triton.inputs] == [64, 6]


def test_an_unknown_model_is_named_with_grpcs_model_list_or_says_the_list_could_not_be_read(
        triton: _FakeTritonLib) -> None:
    # Mutants C24: gRPC's {"models": [...]} index was read as no models; C25: an index the server would not give
    # was reported as "models: []" (serving nothing) instead of a list that could not be read
    triton.index = {"models": [{"name": "fsrfer_onnx"}, {"name": "fsrfer_info"}]}
    triton.config_errors = [_ServerError("Request for unknown model 'fsrfer'", "StatusCode.NOT_FOUND")]
    with pytest.raises(ModelError, match=r"\(models: \['fsrfer_info', 'fsrfer_onnx'\]\)"):
        _backend("grpc")

    def refused(**kw: Any) -> Any:
        raise _ServerError("repository API disabled", "StatusCode.UNAVAILABLE")

    triton.index = None
    triton.InferenceServerClient.get_model_repository_index = lambda self, **kw: refused(**kw)
    triton.config_errors = [_ServerError("Request for unknown model 'fsrfer'", "StatusCode.NOT_FOUND")]
    with pytest.raises(ModelError, match="its model list could not be read"):
        _backend("grpc")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_model_list_read_for_an_unknown_models_error_has_the_calls_timeout(triton: _FakeTritonLib,
                                                                               protocol: str) -> None:
    # Session 69 (note68's left-alone item): gRPC's repository index was asked without client_timeout, so a server
    # that accepted the call and never answered held the error path forever; HTTP's connection timeout bounds it
    triton.config_errors = [_ServerError("Request for unknown model 'fsrfer'", "StatusCode.NOT_FOUND")]
    with pytest.raises(ModelError, match="alpha"):
        _backend(protocol, timeout_s=7.5)
    assert triton.index_kw == ([{"as_json": True, "client_timeout": 7.5}] if protocol == "grpc" else [{}])


def test_a_served_model_with_another_class_count_is_refused_when_connecting(triton: _FakeTritonLib) -> None:
    # Mutant C26: only the output's data type was compared, so 8 logits per face were taken for a 7-class model
    triton.config["output"][0]["dims"] = [8]
    with pytest.raises(ModelError, match=r"output 'logits' is TYPE_FP32 \[8\]; the model's metadata expects "
                                         r"TYPE_FP32 \[7\]"):
        _backend("grpc")


def test_logits_of_another_class_count_are_refused(triton: _FakeTritonLib) -> None:
    # Mutant C27: only the batch axis of the answer was checked
    triton.logits = lambda n: np.zeros((n, 8), np.float32)
    backend = _backend("grpc")
    try:
        with pytest.raises(RemoteError, match=r"returned \(3, 8\) logits for a batch of 3; expected \(3, 7\)"):
            backend.infer(_FACES)
    finally:
        backend.close()


@pytest.mark.parametrize("url, protocol", [("grpc://127.0.0.1:8001", "http"), ("http://127.0.0.1:8000", "grpc")])
def test_a_url_naming_the_other_protocol_is_refused(url: str, protocol: str) -> None:
    # Mutant C28: the scheme was taken off without being compared with protocol= (HTTP sent to the gRPC port)
    from fsrfer_edge.serving.client import _split_url

    with pytest.raises(InputError, match="make them agree"):
        _split_url(url, protocol)


# -- the measured files kept beside a model (fsrfer_edge/sidecars.py) ---------------------------------------------
_CLASSES = ("neutral", "happy")
_CKPT = "ab" * 32


def _groups(checkpoint: str = _CKPT, factor: float = 1.0) -> Any:
    """A two-class group calibration measured at one face-size factor on ``checkpoint``."""
    from fsrfer_edge.groups import GroupCalibration

    eye = np.eye(len(_CLASSES))[None]
    return GroupCalibration(_CLASSES, (factor,), eye, eye, (5, 5), checkpoint)


def _find(model: Optional[Path], checkpoint: str = _CKPT) -> Any:
    from fsrfer_edge import sidecars
    from fsrfer_edge.groups import GroupCalibration

    return sidecars.find(model, _CLASSES, checkpoint, ".groups.json", GroupCalibration.load, "group calibration")


@pytest.fixture()
def no_packaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The package's measured files replaced by an empty folder (the test's own files only)."""
    from fsrfer_edge import sidecars

    folder = tmp_path / "packaged"
    folder.mkdir()
    monkeypatch.setattr(sidecars, "PACKAGED", folder)
    return folder


def test_a_measured_file_recording_no_checkpoint_belongs_to_a_model_that_records_one() -> None:
    # Mutant S2: a file written before checkpoints were recorded was refused by every model that records one
    assert _groups("").mismatch(_CLASSES, _CKPT) is None


def test_a_file_beside_the_model_recording_no_checkpoint_is_found(tmp_path: Path, no_packaged: Path) -> None:
    # Mutant S9: a file beside the model was taken only when it records the model's checkpoint
    model = tmp_path / "face.onnx"
    _groups("").save(tmp_path / "face.groups.json")
    found = _find(model)
    assert found is not None and found.checkpoint_sha256 == ""
    # the same file among the package's files is not taken for this model: nothing ties it to the checkpoint
    (tmp_path / "face.groups.json").rename(no_packaged / "face.groups.json")
    assert _find(model) is None


def test_a_file_beside_the_model_of_another_model_is_skipped_with_a_warning(
        tmp_path: Path, no_packaged: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Mutant S10: a file beside the model measured on another checkpoint was skipped without a word
    _groups("cd" * 32).save(tmp_path / "face.groups.json")
    with caplog.at_level("WARNING", logger="fsrfer_edge.sidecars"):
        assert _find(tmp_path / "face.onnx") is None
    assert f"group calibration {tmp_path / 'face.groups.json'} skipped: it was measured on checkpoint cdcdcdcdcdcd" \
        in caplog.text


def test_packaged_files_are_tried_in_name_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Mutant S12: the package's files were tried in the order the folder lists them (which differs between
    # file systems), so of two files of the checkpoint, which one a model got depended on the machine
    from fsrfer_edge import sidecars

    a, b = tmp_path / "a.groups.json", tmp_path / "b.groups.json"
    _groups(factor=1.0).save(a)
    _groups(factor=2.0).save(b)
    monkeypatch.setattr(sidecars, "PACKAGED", SimpleNamespace(glob=lambda pattern: iter([b, a])))
    found = _find(None)
    assert found is not None and found.factors == (1.0,)


@pytest.mark.parametrize("name", ["custom.PLAN", "custom.Engine"])
def test_an_engine_with_an_upper_case_suffix_is_looked_for_beside_its_onnx_file(tmp_path: Path, name: str) -> None:
    # Mutant S4: the suffix was compared as written, so 'model.PLAN' (which Recognizer loads as an engine) had its
    # measured files looked for beside the engine only
    from fsrfer_edge import engine_cache, sidecars

    onnx = tmp_path / "models" / "fer.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(b"model")
    plan = tmp_path / "cache" / name
    plan.parent.mkdir()
    plan.write_bytes(b"plan")
    engine_cache.sidecar_path(plan).write_text(json.dumps(engine_cache.source_record(onnx)))
    assert sidecars.besides(plan, ".groups.json") == [tmp_path / "cache" / "custom.groups.json",
                                                       tmp_path / "models" / "fer.groups.json"]


def test_resolve_names_the_served_model_where_there_is_no_model_file(tmp_path: Path) -> None:
    # Mutant S13: the refusal named "None" as the model a server runs (also: a pathlib.Path is a file's path)
    from fsrfer_edge import sidecars
    from fsrfer_edge.groups import GroupCalibration

    path = _groups("cd" * 32).save(tmp_path / "other.groups.json")
    args = (GroupCalibration, None, _CLASSES, _CKPT, ".groups.json", "group calibration", "groups", "fsrfer-groups")
    with pytest.raises(ModelError, match=f"group calibration {path} does not belong to the served model: it was"):
        sidecars.resolve(path, *args)
    mine = _groups().save(tmp_path / "mine.groups.json")
    assert sidecars.resolve(mine, *args).checkpoint_sha256 == _CKPT
    with pytest.raises(InputError, match="groups is a bytes; expected 'auto', None, a GroupCalibration"):
        sidecars.resolve(bytes(mine), *args)


@pytest.mark.parametrize("value", [np.bool_(True), np.complex128(1.0), True, "1.0", b"1"],
                         ids=["np.bool_", "np.complex128", "bool", "str", "bytes"])
def test_real_value_refuses_what_float_would_read_as_a_number(value: Any) -> None:
    # Mutant S15: numpy's bool and complex scalars were read as 1.0
    from fsrfer_edge.sidecars import real_value

    with pytest.raises(TypeError):
        real_value(value)


def test_real_value_of_an_integer_past_a_float_is_a_value_error() -> None:
    # Mutant S16: OverflowError went up as it was (neither of the TypeError/ValueError a file's reader catches)
    from fsrfer_edge.sidecars import real_value

    with pytest.raises(ValueError, match="past what a float holds"):
        real_value(10 ** 400)
    assert real_value(np.int64(3)) == 3.0


def test_real_array_refuses_booleans_and_takes_unsigned_integers() -> None:
    # Mutant S19: an array of JSON booleans was read as 0/1 numbers
    from fsrfer_edge.sidecars import real_array

    with pytest.raises(TypeError, match="array of bool values"):
        real_array([[True, False]])
    out = real_array(np.array([1, 2], np.uint8))
    assert out.dtype == np.float64 and out.tolist() == [1.0, 2.0]


def test_a_measured_file_with_any_field_the_class_lacks_is_refused(tmp_path: Path) -> None:
    # Mutant S20: fields starting with '_' (a "_comment", or a misspelled "_checkpoint_sha256") were let through
    from fsrfer_edge.groups import GroupCalibration
    from fsrfer_edge.sidecars import refuse_unknown_fields

    refuse_unknown_fields(GroupCalibration, {"classes": [], "source": ""}, "group calibration")
    with pytest.raises(ModelError, match=r"unknown field\(s\) \['_checkpoint_sha256'\]"):
        refuse_unknown_fields(GroupCalibration, {"classes": [], "_checkpoint_sha256": ""}, "group calibration")
    doc = _groups().to_dict()
    doc["_comment"] = "measured on the test split"
    (tmp_path / "face.groups.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"face.groups.json: .*unknown field\(s\) \['_comment'\]"):
        GroupCalibration.load(tmp_path / "face.groups.json")


# -- fsrfer-engines (fsrfer_edge/engines_cli.py) --------------------------------------------------------------------
def _cache_with(tmp_path: Path, *versions: str) -> tuple[Path, list[Path]]:
    """A cache folder with one stand-in engine of ``face.onnx`` built with each TensorRT version."""
    from test_mutants66f import _engine, _key

    onnx = tmp_path / "face.onnx"
    onnx.write_bytes(b"model")
    cache = tmp_path / "cache"
    return cache, [_engine(cache, onnx, _key(v)) for v in versions]


def test_fsrfer_engines_takes_a_tensorrt_version_with_spaces_around_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Mutant E2: the version was checked stripped but used as typed, so ' 10.3.0.26 ' matched no engine and
    # --prune removed every engine of the folder
    from fsrfer_edge import engines_cli

    cache, (engine,) = _cache_with(tmp_path, "10.3.0.26")
    assert engines_cli.main(["--dir", str(cache), "--tensorrt-version", " 10.3.0.26 ", "--prune"]) == 0
    out = capsys.readouterr().out
    assert "(TensorRT 10.3.0.26)" in out and f"{engine.name} (0.0 MiB)" in out and out.count(": ok") == 1
    assert "removed 0 stale engine file(s)" in out and engine.exists()


def test_fsrfer_engines_prunes_on_another_patch_number_that_only_starts_alike(tmp_path: Path) -> None:
    # Mutant E3: 10.3.0.2 was taken for 10.3.0.26 written shorter (a prefix of its characters, not of its
    # numbers), so pruning engines of the old 10.3.0.26 under the new 10.3.0.2 was refused
    from fsrfer_edge import engines_cli

    cache, (engine,) = _cache_with(tmp_path, "10.3.0.26")
    assert engines_cli.main(["--dir", str(cache), "--tensorrt-version", "10.3.0.2", "--prune"]) == 0
    assert not engine.exists()


def test_fsrfer_engines_prunes_when_some_engine_records_the_version_exactly(tmp_path: Path) -> None:
    # Mutant E4: a folder holding engines of both 10.3.0 and 10.3.0.26 was refused for --tensorrt-version
    # 10.3.0.26 (the version is what some engines record: no slip to refuse)
    from fsrfer_edge import engines_cli

    cache, (short, full) = _cache_with(tmp_path, "10.3.0", "10.3.0.26")
    assert engines_cli.main(["--dir", str(cache), "--tensorrt-version", "10.3.0.26", "--prune"]) == 0
    assert not short.exists() and full.exists()


def test_fsrfer_engines_lists_why_an_engine_is_stale_and_says_when_versions_are_not_judged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Mutants E5: a stale engine was listed as "stale" without its reason; E13: with no TensorRT installed the
    # heading named "TensorRT None"; E12: --missing-sources did not reach the listing (only --prune)
    from fsrfer_edge import engines_cli

    monkeypatch.setattr(engines_cli, "installed_tensorrt_version", lambda: None)
    cache, (old, new) = _cache_with(tmp_path, "10.0.1.6", "10.3.0.26")
    assert engines_cli.main(["--dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert f"{cache}: 2 engine file(s) (TensorRT not installed: versions not judged)" in out
    assert out.count(": ok") == 2
    assert engines_cli.main(["--dir", str(cache), "--tensorrt-version", "10.3.0.26"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if old.name in x)
    assert "stale: " in line and "10.0.1.6" in line.split("stale: ", 1)[1], line
    (tmp_path / "face.onnx").unlink()
    assert engines_cli.main(["--dir", str(cache), "--tensorrt-version", "10.3.0.26", "--missing-sources"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if new.name in x)
    assert "stale: " in line and "no longer exists" in line, line


def test_fsrfer_engines_sums_every_file_of_a_staging_folder_and_lists_it_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Mutants E6: a staging folder's size was its last file's; E7: a folder with only a killed export's staging
    # folder (no stale engine) printed no total and no hint to --prune
    from test_mutants64d import _stale_folder

    from fsrfer_edge import engines_cli

    lost, stage = _stale_folder(tmp_path)
    lost.unlink()
    with open(stage / "face.fp16.onnx", "wb") as f:
        f.truncate(1 << 20)
    assert engines_cli.main(["--dir", str(tmp_path), "--tensorrt-version", "10.3.0.26"]) == 0
    out = capsys.readouterr().out
    assert f"{stage.name}/ (2.0 MiB): stale: the staging folder of an export that was killed" in out
    assert "1 stale, 2.0 MiB: fsrfer-engines --prune removes them" in out


def test_fsrfer_engines_prune_counts_the_staging_folders_it_removed_not_those_it_found(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Mutant E14: "removed N staging folder(s)" counted the folders found, also the one that could not be removed
    from test_mutants64d import _stale_folder

    from fsrfer_edge import engine_cache, engines_cli

    _stale_folder(tmp_path)
    monkeypatch.setattr(engine_cache, "remove_dead_staging", lambda folder, dry_run=False: ([], ["busy"]))
    assert engines_cli.main(["--dir", str(tmp_path), "--tensorrt-version", "10.3.0.26", "--prune"]) == 2
    assert "removed 0 staging folder(s) of killed exports" in capsys.readouterr().out
