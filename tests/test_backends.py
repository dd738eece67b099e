"""Backends on CPU: ONNX Runtime for real; TensorRT and the CUDA memory layers against fakes.

The fakes stand in for ``tensorrt``, cuda-python's ``cudart`` and ``pycuda.driver`` with the same call
signatures; "device memory" is ordinary host memory, so the backend's real pointer arithmetic, copies,
buffer reuse, locking and freeing are exercised. Real GPU runs are in test_tensorrt_gpu.py.
"""
from __future__ import annotations

import ctypes
import enum
import json
import sys
import threading
import types
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

from fsrfer_edge import BackendUnavailable, EngineError, InputError, ModelError
from fsrfer_edge.backends import BackendClosedError, cuda_memory
from fsrfer_edge.backends.cuda_memory import (
    CudaPythonMemory,
    PyCudaMemory,
    select_memory,
)
from fsrfer_edge.engine_cache import EngineKey, check_engine, write_sidecar
from fsrfer_edge.fileio import sha256_file
from fsrfer_edge.metadata import ModelInfo

try:
    from .fake_trt import fake_logits, install
    from .fake_trt.cuda import GPU_KEY, FakeCudart, launch, make_fake_pycuda
except ImportError:
    from fake_trt import fake_logits, install  # type: ignore[no-redef]
    from fake_trt.cuda import GPU_KEY, FakeCudart, launch, make_fake_pycuda  # type: ignore[no-redef]

TRT_VERSION = "10.3.0"


# ---------------------------------------------------------------------------------------------
# ONNX Runtime
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    try:
        from ._onnx_models import make_tiny_onnx
    except ImportError:
        from _onnx_models import make_tiny_onnx  # type: ignore[no-redef]
    d = tmp_path_factory.mktemp("ort")
    return {"float": make_tiny_onnx(d / "tiny.onnx"),
            "static": make_tiny_onnx(d / "static.onnx", static_batch=2),
            "badname": make_tiny_onnx(d / "badname.onnx", info_overrides={"input_name": "images"})}


def test_onnxruntime_backend_basics(onnx_models: dict[str, Path]) -> None:
    from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    with OnnxRuntimeBackend(onnx_models["float"], providers="cpu", threads=1) as be:
        assert be.info.input_name == "faces" and be.info.output_name == "logits"
        assert be.max_batch is None and be.input_shape == (1, 48, 48)
        x = np.random.default_rng(0).standard_normal((5, 1, 48, 48)).astype(np.float32)
        out = be.infer(x)
        assert out.shape == (5, 7) and out.dtype == np.float32
        np.testing.assert_allclose(be.infer(x[2:3]), out[2:3], atol=1e-5)
        # non-contiguous input is fine
        np.testing.assert_allclose(be.infer(np.asfortranarray(x)), out, atol=1e-5)
    assert be.closed
    be.close()
    with pytest.raises(BackendClosedError, match="closed"):
        be.infer(x)


@pytest.mark.parametrize("batch, match", [
    ([[1.0]], "numpy array"),
    (np.zeros((2, 1, 48, 48), np.float64), "dtype float64"),
    (np.zeros((2, 1, 48, 48), np.uint8), "dtype uint8"),
    (np.zeros((2, 48, 48), np.float32), "shape"),
    (np.zeros((2, 3, 48, 48), np.float32), "shape"),
    (np.zeros((0, 1, 48, 48), np.float32), "empty"),
    (np.full((1, 1, 48, 48), np.inf, np.float32), "NaN or infinite"),
])
def test_backend_validates_batches(onnx_models: dict[str, Path], batch: Any, match: str) -> None:
    from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    with OnnxRuntimeBackend(onnx_models["float"], threads=1) as be, pytest.raises(InputError, match=match):
        be.infer(batch)


def test_static_batch_model_reports_and_enforces_max_batch(onnx_models: dict[str, Path]) -> None:
    from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    with OnnxRuntimeBackend(onnx_models["static"], threads=1) as be:
        assert be.max_batch == 2
        with pytest.raises(InputError, match="at most 2"):
            be.infer(np.zeros((3, 1, 48, 48), np.float32))


def test_metadata_disagreeing_with_graph_is_model_error(onnx_models: dict[str, Path]) -> None:
    from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    with pytest.raises(ModelError, match="'images'"):
        OnnxRuntimeBackend(onnx_models["badname"])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 64])
def test_sessions_split_a_batch_in_order_and_match_one_session(onnx_models: dict[str, Path], n: int) -> None:
    from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    x = np.random.default_rng(n).standard_normal((n, 1, 48, 48)).astype(np.float32)
    with OnnxRuntimeBackend(onnx_models["float"], providers="cpu", threads=1) as one:
        want = one.infer(x)
    with OnnxRuntimeBackend(onnx_models["float"], sessions=2, providers="cpu") as two:
        assert two.sessions == 2 and two.threads == 1
        seen: list[tuple[int, str]] = []
        for i, sess in enumerate([two._session] + two._extra):
            run = sess.run

            def record(outputs: Any, feed: dict[str, np.ndarray], _run: Any = run, _i: int = i) -> Any:
                seen.append((_i, threading.current_thread().name))
                return _run(outputs, feed)

            if i == 0:
                two._session = types.SimpleNamespace(run=record, get_providers=sess.get_providers)
            else:
                two._extra[i - 1] = types.SimpleNamespace(run=record)
        got = two.infer(x)
    np.testing.assert_allclose(got, want, atol=1e-5)
    if n == 1:
        assert [i for i, _ in seen] == [0]                       # a lone face runs on the first session alone
    else:
        assert sorted(i for i, _ in seen) == [0, 1]               # each session got one share
        assert all(name.startswith("fsrfer-ort") for _, name in seen)


def test_the_shares_run_at_the_same_time(onnx_models: dict[str, Path]) -> None:
    from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    meet = threading.Barrier(2, timeout=5)   # a share run after the other would wait here alone and fail
    with OnnxRuntimeBackend(onnx_models["float"], sessions=2, providers="cpu") as be:
        first, second = be._session, be._extra[0]

        def together(sess: Any) -> Any:
            return types.SimpleNamespace(run=lambda outputs, feed: (meet.wait(), sess.run(outputs, feed))[1],
                                         get_providers=sess.get_providers)

        be._session, be._extra = together(first), [together(second)]
        assert be.infer(np.zeros((4, 1, 48, 48), np.float32)).shape == (4, 7)


def test_close_on_another_thread_during_a_split_call_is_a_closed_error(onnx_models: dict[str, Path],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.backends import onnxruntime_backend as ob

    be = ob.OnnxRuntimeBackend(onnx_models["float"], sessions=2, providers="cpu")
    split = np.array_split

    def split_then_close(a: np.ndarray, n: int) -> list[np.ndarray]:
        be.close()  # as another thread would, after the call took its sessions and before it submits
        return split(a, n)

    monkeypatch.setattr(ob.np, "array_split", split_then_close)
    with pytest.raises(BackendClosedError, match="closed while the call waited"):
        be.infer(np.zeros((4, 1, 48, 48), np.float32))


def test_more_threads_than_cpus_are_warned_about(onnx_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from fsrfer_edge.backends import onnxruntime_backend as ob

    monkeypatch.setattr(ob, "usable_cpus", lambda: 2)  # the CPUs this process may use
    with caplog.at_level("WARNING", logger=ob.__name__):
        ob.OnnxRuntimeBackend(onnx_models["float"], sessions=2, providers="cpu").close()
        assert not caplog.records
        ob.OnnxRuntimeBackend(onnx_models["float"], sessions=2, threads=2, providers="cpu").close()
    assert "more threads than the 2 CPUs this process may use" in caplog.text


def test_sessions_are_closed_with_the_backend(onnx_models: dict[str, Path]) -> None:
    from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    be = OnnxRuntimeBackend(onnx_models["float"], sessions=3, providers="cpu")
    pool = be._pool
    assert be.sessions == 3 and pool is not None
    be.close()
    assert be._extra == [] and be._pool is None
    with pytest.raises(RuntimeError):                             # the worker threads are gone
        pool.submit(int)
    with pytest.raises(BackendClosedError, match="closed"):
        be.infer(np.zeros((4, 1, 48, 48), np.float32))


@pytest.mark.parametrize("kwargs, match", [
    ({"sessions": 0}, "sessions=0; expected a positive integer"),
    ({"sessions": True}, "sessions=True"),
    ({"sessions": 2.0}, "sessions=2.0"),
    ({"sessions": 2, "providers": ["CPUExecutionProvider", "CPUExecutionProvider"]}, "providers='cpu'"),
    ({"sessions": 2, "threads": "x"}, "threads='x'; expected an integer"),  # a raw ValueError from int() before
    ({"sessions": 2, "threads": [1]}, r"threads=\[1\]; expected an integer"),
])
def test_bad_sessions_are_refused(onnx_models: dict[str, Path], kwargs: dict[str, Any], match: str) -> None:
    from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    with pytest.raises(InputError, match=match):
        OnnxRuntimeBackend(onnx_models["float"], **kwargs)


def test_sessions_need_a_dynamic_batch(onnx_models: dict[str, Path]) -> None:
    from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    with pytest.raises(InputError, match="takes exactly 2 faces at a time"):
        OnnxRuntimeBackend(onnx_models["static"], sessions=2, providers="cpu")
    with OnnxRuntimeBackend(onnx_models["static"], sessions=1, providers="cpu") as be:
        assert be.sessions == 1


def test_provider_resolution() -> None:
    ort = pytest.importorskip("onnxruntime")
    from fsrfer_edge.backends.onnxruntime_backend import resolve_providers

    auto = resolve_providers(None, ort=ort)
    assert auto[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert auto[0] == ("CUDAExecutionProvider", {"device_id": 0})
    else:
        assert auto == ["CPUExecutionProvider"]
    assert resolve_providers("cpu", ort=ort) == ["CPUExecutionProvider"]
    with pytest.raises(InputError, match="not understood"):
        resolve_providers("gpu", ort=ort)
    with pytest.raises(InputError, match="empty provider list"):
        resolve_providers([], ort=ort)


# ---------------------------------------------------------------------------------------------
# Fakes: cuda-python runtime, pycuda.driver, tensorrt
# ---------------------------------------------------------------------------------------------
def make_fake_trt(version: str = TRT_VERSION) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version  # type: ignore[attr-defined]
    trt.deserialized = []  # type: ignore[attr-defined]

    class DataType(enum.Enum):
        FLOAT = "float32"
        UINT8 = "uint8"
        HALF = "float16"

    class TensorIOMode(enum.Enum):
        INPUT = 1
        OUTPUT = 2

    class Logger:
        WARNING = 2

        def __init__(self, severity: int) -> None:
            pass

    def run(spec: dict[str, Any], n: int, in_ptr: int, out_ptr: int) -> bool:
        dt = np.dtype(spec["input_dtype"])
        size = n * 48 * 48 * dt.itemsize
        x = np.frombuffer(ctypes.string_at(in_ptr, size), dtype=dt).reshape(n, 1, 48, 48)
        y = fake_logits(x).astype(spec.get("output_dtype", "float32"))
        ctypes.memmove(out_ptr, y.ctypes.data, y.nbytes)
        return True

    class NamedContext:
        def __init__(self, spec: dict[str, Any]) -> None:
            self.spec, self.addr, self.n = spec, {}, None

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            ok = name == "faces" and self.spec["min"] <= shape[0] <= self.spec["max"] and tuple(shape[1:]) == (1, 48, 48)
            self.n = shape[0] if ok else None
            return ok

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addr[name] = int(ptr)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            assert isinstance(stream_handle, int) and self.n is not None
            spec, n, src, dst = self.spec, self.n, self.addr["faces"], self.addr["logits"]
            return launch(stream_handle, lambda: None if run(spec, n, src, dst) else None)  # queued on the stream

    class NamedEngine:
        def __init__(self, spec: dict[str, Any]) -> None:
            self.spec = spec
            self.num_io_tensors = 2

        def get_tensor_name(self, i: int) -> str:
            return ["faces", "logits"][i]

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            return TensorIOMode.INPUT if name == "faces" else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> DataType:
            return DataType(self.spec["input_dtype"] if name == "faces" else self.spec.get("output_dtype", "float32"))

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return (-1, 1, 48, 48) if name == "faces" else (-1, 7)

        def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
            assert name == "faces" and profile == 0
            return [(self.spec["min"], 1, 48, 48), (self.spec["max"], 1, 48, 48), (self.spec["max"], 1, 48, 48)]

        def create_execution_context(self) -> NamedContext:
            return NamedContext(self.spec)

    class LegacyContext:  # TensorRT < 8.5: no named-tensor API at all
        def __init__(self, spec: dict[str, Any]) -> None:
            self.spec, self.n = spec, None

        def set_binding_shape(self, idx: int, shape: tuple[int, ...]) -> bool:
            ok = idx == 0 and self.spec["min"] <= shape[0] <= self.spec["max"]
            self.n = shape[0] if ok else None
            return ok

        def execute_async_v2(self, bindings: list[int], stream_handle: int) -> bool:
            assert self.n is not None
            spec, n, src, dst = self.spec, self.n, bindings[0], bindings[1]
            return launch(stream_handle, lambda: None if run(spec, n, src, dst) else None)  # queued on the stream

    class LegacyEngine:
        def __init__(self, spec: dict[str, Any]) -> None:
            self.spec = spec
            self.num_bindings = 2
            self.num_optimization_profiles = 1

        def get_binding_name(self, i: int) -> str:
            return ["faces", "logits"][i]

        def binding_is_input(self, i: int) -> bool:
            return i == 0

        def get_binding_dtype(self, i: int) -> DataType:
            return DataType(self.spec["input_dtype"] if i == 0 else "float32")

        def get_binding_shape(self, i: int) -> tuple[int, ...]:
            return (-1, 1, 48, 48) if i == 0 else (-1, 7)

        def get_profile_shape(self, profile: int, i: int) -> list[tuple[int, ...]]:
            return [(self.spec["min"], 1, 48, 48), (self.spec["max"], 1, 48, 48), (self.spec["max"], 1, 48, 48)]

        def create_execution_context(self) -> LegacyContext:
            return LegacyContext(self.spec)

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> Any:
            trt.deserialized.append(data)  # type: ignore[attr-defined]
            try:
                spec = json.loads(data)
            except ValueError:
                return None
            return (NamedEngine if spec["api"] == "named" else LegacyEngine)(spec)

    trt.DataType = DataType  # type: ignore[attr-defined]
    trt.TensorIOMode = TensorIOMode  # type: ignore[attr-defined]
    trt.Logger = Logger  # type: ignore[attr-defined]
    trt.Runtime = Runtime  # type: ignore[attr-defined]
    trt.nptype = lambda dt: np.dtype(dt.value).type  # type: ignore[attr-defined]
    return trt


def write_fake_engine(path: Path, api: str = "named", input_dtype: str = "float32", max_batch: int = 8,
                      sidecar_version: str = TRT_VERSION, cc: str = "8.7", onnx_sha: str = "0" * 64,
                      raw: Optional[bytes] = None, output_dtype: str = "float32", device: str = GPU_KEY) -> Path:
    spec = {"api": api, "input_dtype": input_dtype, "output_dtype": output_dtype, "min": 1, "max": max_batch}
    path.write_bytes(raw if raw is not None else json.dumps(spec).encode())
    info = ModelInfo(input_dtype=input_dtype, precision="fp16")
    write_sidecar(path, EngineKey(sidecar_version, cc, "fp16", 1, min(4, max_batch), max_batch, device), onnx_sha, info)
    return path


@pytest.fixture()
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Install fake tensorrt, cuda-python and pycuda; return them."""
    trt, cudart, pycuda = make_fake_trt(), FakeCudart(), make_fake_pycuda()
    install(monkeypatch, trt, cudart, pycuda)
    return {"trt": trt, "cudart": cudart, "pycuda": pycuda}


def _all_freed(fake_gpu: dict[str, Any]) -> bool:
    c = fake_gpu["cudart"]
    return not c.device and not c.host and not c.streams and not fake_gpu["pycuda"].state["live"]


# ---------------------------------------------------------------------------------------------
# TensorRT backend against the fakes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["named", "legacy"])
@pytest.mark.parametrize("memory", ["cuda-python", "pycuda"])
@pytest.mark.parametrize("input_dtype", ["float32", "uint8"])
def test_tensorrt_roundtrip_with_fakes(tmp_path: Path, fake_gpu: dict[str, Any], api: str, memory: str,
                                       input_dtype: str) -> None:
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    engine = write_fake_engine(tmp_path / "m.engine", api=api, input_dtype=input_dtype)
    g = np.random.default_rng(0)
    x = (g.integers(0, 256, (8, 1, 48, 48)).astype(input_dtype) if input_dtype == "uint8"
         else g.standard_normal((8, 1, 48, 48)).astype(np.float32))
    with TensorRTBackend(engine, memory=memory) as be:
        assert be.max_batch == 8 and be.info.input_dtype == input_dtype
        assert f"memory={memory}" in be.providers
        np.testing.assert_allclose(be.infer(x), fake_logits(x), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(be.infer(x[:3]), fake_logits(x[:3]), rtol=1e-5, atol=1e-5)  # partial batch
        np.testing.assert_allclose(be.infer(x[5:6]), fake_logits(x[5:6]), rtol=1e-5, atol=1e-5)
        with pytest.raises(InputError, match="at most 8"):
            be.infer(np.concatenate([x, x[:1]]))
        if memory == "cuda-python":
            assert fake_gpu["cudart"].copies == 6 and len(fake_gpu["cudart"].device) == 2  # buffers reused
    assert _all_freed(fake_gpu)
    be.close()
    with pytest.raises(BackendClosedError):
        be.infer(x)


def test_tensorrt_half_output_is_returned_as_float32(tmp_path: Path, fake_gpu: dict[str, Any]) -> None:
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    engine = write_fake_engine(tmp_path / "m.engine", output_dtype="float16")
    x = np.random.default_rng(1).standard_normal((2, 1, 48, 48)).astype(np.float32)
    with TensorRTBackend(engine, memory="cuda-python") as be:
        y = be.infer(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, fake_logits(x), rtol=2e-3, atol=2e-3)


def test_tensorrt_is_thread_safe(tmp_path: Path, fake_gpu: dict[str, Any]) -> None:
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    engine = write_fake_engine(tmp_path / "m.engine")
    g = np.random.default_rng(2)
    batches = [g.standard_normal((int(n), 1, 48, 48)).astype(np.float32) for n in g.integers(1, 9, 24)]
    errors: list[str] = []
    with TensorRTBackend(engine, memory="cuda-python") as be:
        def work(i: int) -> None:
            for b in batches[i::4]:
                if not np.allclose(be.infer(b), fake_logits(b), rtol=1e-5, atol=1e-5):
                    errors.append(f"thread {i}: wrong result")
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors


@pytest.mark.parametrize("what", ["version", "gpu", "hash"])
def test_foreign_or_stale_engine_is_refused_before_deserialising(tmp_path: Path, fake_gpu: dict[str, Any],
                                                                 what: str) -> None:
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    kw = {"version": {"sidecar_version": "8.5.2"}, "gpu": {"cc": "9.0"}, "hash": {}}[what]
    engine = write_fake_engine(tmp_path / "m.engine", **kw)  # type: ignore[arg-type]
    if what == "hash":
        engine.write_bytes(engine.read_bytes() + b" ")
    with pytest.raises(EngineError, match={"version": "TensorRT 8.5.2", "gpu": "compute capability 9.0",
                                           "hash": "does not match"}[what]):
        TensorRTBackend(engine, memory="cuda-python")
    assert fake_gpu["trt"].deserialized == []  # never handed to TensorRT
    assert _all_freed(fake_gpu)


def test_check_engine_refuses_other_tensorrt_version(tmp_path: Path) -> None:
    engine = write_fake_engine(tmp_path / "m.engine", sidecar_version="10.3.0")
    assert check_engine(engine, "10.3.0", "8.7")["key"].max_batch == 8
    with pytest.raises(EngineError, match="not portable"):
        check_engine(engine, "8.5.2", "8.7")
    with pytest.raises(EngineError, match="no sidecar"):
        engine.with_suffix(".engine.json").unlink()
        check_engine(engine, "10.3.0", "8.7")


def test_an_engine_that_cannot_be_read_is_an_engine_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An I/O error reading the engine (a failing eMMC sector) raised a raw OSError out of check_engine, so the engine
    search stopped there instead of passing over it (and building one on first use)."""
    import errno

    from fsrfer_edge import engine_cache

    engine = write_fake_engine(tmp_path / "m.engine", sidecar_version="10.3.0")
    real = engine_cache.sha256_file

    def failing(path: Any) -> str:
        if Path(path) == engine:
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real(path)

    monkeypatch.setattr(engine_cache, "sha256_file", failing)
    with pytest.raises(EngineError, match="Input/output error"):
        check_engine(engine, "10.3.0", "8.7")


def test_sidecar_of_another_schema_is_a_corrupt_engine_so_it_is_rebuilt(tmp_path: Path) -> None:
    """A sidecar whose model_info another metadata schema wrote (ModelError from ModelInfo) or that lacks the ONNX
    hash is an EngineError like any bad engine, so the search and the builder's cache check pass over it."""
    from fsrfer_edge import engine_cache

    engine = write_fake_engine(tmp_path / "m.engine", sidecar_version="10.3.0")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"model")
    side = engine_cache.sidecar_path(engine)
    doc = json.loads(side.read_text())
    side.write_text(json.dumps({**doc, "model_info": {**doc["model_info"], "precision": "fp8"}}))
    with pytest.raises(EngineError, match="is corrupt.*precision 'fp8'"):
        check_engine(engine, "10.3.0", "8.7")
    side.write_text(json.dumps({k: v for k, v in doc.items() if k != "onnx_sha256"}))
    with pytest.raises(EngineError, match="is stale"):
        check_engine(engine, "10.3.0", "8.7", onnx)


def test_undeserialisable_engine_and_mismatched_io(tmp_path: Path, fake_gpu: dict[str, Any]) -> None:
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    corrupt = write_fake_engine(tmp_path / "corrupt.engine", raw=b"\x00garbage")
    with pytest.raises(EngineError, match="could not deserialise"):
        TensorRTBackend(corrupt, memory="pycuda")
    # sidecar says float32 input, engine takes uint8
    engine = tmp_path / "mismatch.engine"
    engine.write_bytes(json.dumps({"api": "named", "input_dtype": "uint8", "min": 1, "max": 4}).encode())
    write_sidecar(engine, EngineKey(TRT_VERSION, "8.7", "fp32", 1, 2, 4, GPU_KEY), "0" * 64, ModelInfo())
    with pytest.raises(EngineError, match="metadata says float32"):
        TensorRTBackend(engine, memory="cuda-python")
    assert _all_freed(fake_gpu)
    assert fake_gpu["pycuda"].state["pushed"] == 0


def test_close_frees_all_it_can_and_reports_what_failed(tmp_path: Path, fake_gpu: dict[str, Any]) -> None:
    """A failing step of close() (a sticky CUDA error fails them all) does not stop the others."""
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    cudart = fake_gpu["cudart"]
    be = TensorRTBackend(write_fake_engine(tmp_path / "m.engine"), memory="cuda-python")
    cudart.fail["cudaStreamSynchronize"] = cudart.cudaError_t.cudaErrorInvalidValue
    with pytest.raises(EngineError, match=r"closing the TensorRT backend .* synchronize: CUDA call cudaStreamSynchr"):
        be.close()
    assert _all_freed(fake_gpu)  # buffers and stream freed after the failed synchronize
    be.close()  # closing twice is fine


def test_recognizer_on_tensorrt_with_fakes(tmp_path: Path, fake_gpu: dict[str, Any]) -> None:
    from fsrfer_edge import Recognizer

    engine = write_fake_engine(tmp_path / "m.plan", max_batch=4)
    faces = np.random.default_rng(4).integers(0, 256, (10, 30, 30), dtype=np.uint8)
    with Recognizer(engine, max_batch=64) as rec:
        assert rec.backend.name == "tensorrt" and rec.max_batch == 4
        preds = rec.predict(faces)
        x = rec.prepare(faces)
    expected = fake_logits(x).argmax(1)
    assert [p.index for p in preds] == expected.tolist()
    assert _all_freed(fake_gpu)
    with pytest.raises(InputError, match="ONNX Runtime only"):
        Recognizer(engine, threads=2)


def test_engine_lookup_for_onnx(tmp_path: Path, fake_gpu: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge import Recognizer

    monkeypatch.setenv("FSRFER_ENGINE_DIR", str(tmp_path / "cache"))
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"pretend onnx")
    with pytest.raises(EngineError, match="fsrfer-export --engine"):
        Recognizer(onnx_path, backend="tensorrt")
    (tmp_path / "cache").mkdir()
    for mb in (4, 16):
        key = EngineKey(TRT_VERSION, "8.7", "fp16", 1, 2, mb, GPU_KEY)
        write_fake_engine(tmp_path / "cache" / key.filename("model", sha256_file(onnx_path)), max_batch=mb,
                          onnx_sha=sha256_file(onnx_path))
    stale = EngineKey(TRT_VERSION, "8.7", "fp16", 1, 2, 64, GPU_KEY)
    stale_path = tmp_path / stale.filename("model", sha256_file(onnx_path))  # named for this ONNX, built from another
    write_fake_engine(stale_path, max_batch=64, onnx_sha="f" * 64)
    with Recognizer(onnx_path, backend="tensorrt", max_batch=8) as rec:
        assert rec.backend.max_batch == 16  # smallest valid engine that fits 8; the stale one is skipped
    with Recognizer(onnx_path, backend="tensorrt", max_batch=2) as rec:
        assert rec.backend.max_batch == 4
    assert _all_freed(fake_gpu)


def test_engine_of_a_model_whose_name_has_glob_characters_is_found(tmp_path: Path, fake_gpu: dict[str, Any],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``face[v2].onnx``: the name went into the engine glob unescaped, so ``[v2]`` matched one character and the
    model's own engine was never found (refused, or rebuilt on every start)."""
    from fsrfer_edge import Recognizer
    from fsrfer_edge.engine_cache import engine_pattern

    monkeypatch.setenv("FSRFER_ENGINE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    onnx_path = tmp_path / "face[v2].onnx"
    onnx_path.write_bytes(b"pretend onnx")
    sha = sha256_file(onnx_path)
    key = EngineKey(TRT_VERSION, "8.7", "fp16", 1, 4, 8, GPU_KEY)
    built = write_fake_engine(tmp_path / "cache" / key.filename("face[v2]", sha), onnx_sha=sha)
    (tmp_path / "cache" / key.filename("facev", sha)).write_bytes(b"another model's")
    assert list((tmp_path / "cache").glob(engine_pattern("face[v2]", sha, TRT_VERSION, "8.7"))) == [built]
    with Recognizer(onnx_path, backend="tensorrt") as rec:
        assert rec.backend.max_batch == 8
    assert _all_freed(fake_gpu)


def test_tensorrt_missing_names_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge import Recognizer
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    engine = write_fake_engine(tmp_path / "m.engine")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailable, match=r"pip install -e '\.\[tensorrt\]'"):
        TensorRTBackend(engine)
    with pytest.raises(BackendUnavailable, match=r"pip install -e '\.\[tensorrt\]'"):
        Recognizer(engine)
    # tensorrt-stubs alone: 'tensorrt' imports as an empty namespace package
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    with pytest.raises(BackendUnavailable, match="not the TensorRT runtime"):
        TensorRTBackend(engine)


# ---------------------------------------------------------------------------------------------
# CUDA memory layer
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [CudaPythonMemory, PyCudaMemory])
def test_cuda_memory_roundtrip_with_fakes(fake_gpu: dict[str, Any], cls: type) -> None:
    mem = cls(0)
    assert mem.device_compute_capability() == "8.7"
    with mem.context():
        host = mem.alloc_host((3, 5), np.float32)
        back = mem.alloc_host((3, 5), np.float32)
        dev = mem.alloc_device(host.nbytes)
        stream = mem.create_stream()
        host[:] = np.arange(15, dtype=np.float32).reshape(3, 5)
        mem.htod_async(dev, host, stream)
        mem.dtoh_async(back, dev, stream)
        mem.synchronize(stream)
        np.testing.assert_array_equal(back, host)
        with pytest.raises(InputError, match="does not fit"):
            mem.htod_async(dev, np.zeros(100, np.float32), stream)
        for obj in (host, back, dev, stream):
            mem.free(obj)
    mem.close()
    assert _all_freed(fake_gpu)


def test_pycuda_close_leaves_no_context_current_and_retains_once(fake_gpu: dict[str, Any]) -> None:
    """pycuda's detach() of a primary context that is not current leaves it current (the fake does the
    same): the layer must not detach, in close() or by letting its context object be collected."""
    import gc

    state = fake_gpu["pycuda"].state
    first, second = PyCudaMemory(0), PyCudaMemory(0)
    with first.context():
        assert state["pushed"] == 1
    first.close()
    second.close()
    del first, second
    gc.collect()
    assert state["pushed"] == 0  # nothing left current on this thread
    assert state["retained"] == 1  # one retained primary context per device, for the process
    third = PyCudaMemory(0)
    third.close()
    with pytest.raises(EngineError, match="is closed"):
        with third.context():
            pass


def test_cuda_python_errors_carry_cuda_message(fake_gpu: dict[str, Any]) -> None:
    cudart = fake_gpu["cudart"]
    mem = CudaPythonMemory(0)
    cudart.fail["cudaMalloc"] = cudart.cudaError_t.cudaErrorMemoryAllocation
    with pytest.raises(EngineError, match=r"cudaMalloc failed: out of memory \(error 2\)"):
        mem.alloc_device(1 << 20)


def test_select_memory(fake_gpu: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(select_memory("auto"), CudaPythonMemory)
    assert isinstance(select_memory("pycuda"), PyCudaMemory)
    with pytest.raises(InputError, match="expected one of"):
        select_memory("cupy")

    def no_cudart() -> Any:
        raise BackendUnavailable("cuda-python missing; pip install -e '.[tensorrt]'")

    monkeypatch.setattr(cuda_memory, "import_cudart", no_cudart)
    assert isinstance(select_memory("auto"), PyCudaMemory)  # falls back
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    with pytest.raises(BackendUnavailable, match=r"neither.*pip install -e '\.\[tensorrt\]'"):
        select_memory("auto")


def test_import_cudart_missing_names_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(BackendUnavailable, match=r"pip install -e '\.\[tensorrt\]'"):
        cuda_memory.import_cudart()
