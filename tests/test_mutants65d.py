"""Hand-made mutation test 65d: the TensorRT/CUDA code that only a GPU runs, against the fakes in tests/fake_trt.

Each test kills a mutant that the other fake-GPU tests let through: its fault shows only on a real GPU (copies
that finish later than the call that queued them, results left in the pinned buffer, copy sizes). The stream
here is asynchronous as a CUDA stream is: copies run, in order, when the stream is synchronised or when a kernel
queued after them runs, never when they are queued.
"""
from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.backends import cuda_memory
from fsrfer_edge.backends.cuda_memory import CudaPythonMemory
from fsrfer_edge.engine_cache import EngineKey, write_sidecar
from fsrfer_edge.metadata import ModelInfo

try:
    from .fake_trt import fake_logits, install, make_tensorrt
    from .fake_trt.cuda import GPU_KEY, FakeCudart, make_fake_pycuda
except ImportError:
    from fake_trt import fake_logits, install, make_tensorrt  # type: ignore[no-redef]
    from fake_trt.cuda import GPU_KEY, FakeCudart, make_fake_pycuda  # type: ignore[no-redef]

VERSION = "10.3.0.26"


def _install(monkeypatch: pytest.MonkeyPatch, cudart: FakeCudart) -> types.ModuleType:
    """A fake TensorRT 10.3 (its kernels queued on their CUDA stream, after the copies queued before them)."""
    trt = make_tensorrt(VERSION)
    install(monkeypatch, trt, cudart, make_fake_pycuda())
    return trt


def _engine(path: Path, min_batch: int = 1, opt_batch: int = 4, max_batch: int = 8, version: str = VERSION) -> Path:
    """A fake engine of TensorRT ``version`` (float32 faces (N,1,48,48) -> logits (N,7)) with its sidecar."""
    spec = {"trt": version, "input": "faces", "input_dtype": "FLOAT", "outputs": ["logits"], "min": min_batch,
            "opt": opt_batch, "max": max_batch, "chw": [1, 48, 48], "classes": 7, "flags": ["FP16"],
            "strongly_typed": False, "precisions": []}
    path.write_bytes(json.dumps(spec).encode())
    write_sidecar(path, EngineKey(version, "8.7", "fp16", min_batch, opt_batch, max_batch, GPU_KEY), "0" * 64,
                  ModelInfo(precision="fp16"))
    return path


def _tiny_onnx(path: Path, precision: str = "fp32", extra_nodes: tuple[Any, ...] = ()) -> Path:
    """A hand-made fsrfer ONNX file, faces (N,1,48,48) -> pool -> Gemm -> logits (N,7), whose metadata says
    ``precision`` (the fake parser reads only the graph)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from fsrfer_edge.metadata import METADATA_KEY

    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 7], np.arange(7, dtype=np.float32).tolist())
    b = helper.make_tensor("b", TensorProto.FLOAT, [7], np.zeros(7, np.float32).tolist())
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["faces"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "w", "b"], ["logits"]), *extra_nodes], "tiny",
        [helper.make_tensor_value_info("faces", TensorProto.FLOAT, ["N", 1, 48, 48])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 7])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, ModelInfo(precision=precision).to_json()
    onnx.save(model, str(path))
    return path


def _faces(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 48, 48)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# tensorrt_backend: the stream and the pinned buffers
# ---------------------------------------------------------------------------------------------
def test_results_are_read_only_after_the_stream_has_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """infer waits for the output copy before reading the pinned output buffer (an unsynchronised read gives
    the previous call's logits, or zeros)."""
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    cudart = FakeCudart()  # asynchronous: copies and kernels run when the stream is synchronised
    _install(monkeypatch, cudart)
    a, b = _faces(3, 0), _faces(3, 1)
    with TensorRTBackend(_engine(tmp_path / "m.engine"), memory="cuda-python") as be:
        np.testing.assert_allclose(be.infer(a), fake_logits(a), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(be.infer(b), fake_logits(b), rtol=1e-5, atol=1e-5)
        assert cudart.pending == 0


def test_an_earlier_result_is_not_overwritten_by_the_next_call(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Each call returns its own array, not a view of the reused pinned output buffer."""
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    _install(monkeypatch, FakeCudart())
    a, b = _faces(4, 2), _faces(4, 3)
    with TensorRTBackend(_engine(tmp_path / "m.engine"), memory="cuda-python") as be:
        ya = be.infer(a)
        be.infer(b)
        np.testing.assert_allclose(ya, fake_logits(a), rtol=1e-5, atol=1e-5)
    ya += 1.0  # the caller's array: writable after close, not the freed pinned memory


def test_tensorrt_is_asked_for_the_rows_given_not_the_largest_batch(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of 2 on an engine of max batch 64 runs 2 rows: TensorRT's time grows with the input shape set."""
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    trt = _install(monkeypatch, FakeCudart())
    shapes: list[tuple[int, ...]] = []
    set_shape = trt.IExecutionContext.set_input_shape

    def record(self: Any, name: str, shape: tuple[int, ...]) -> bool:
        shapes.append(tuple(shape))
        return bool(set_shape(self, name, shape))

    monkeypatch.setattr(trt.IExecutionContext, "set_input_shape", record)
    with TensorRTBackend(_engine(tmp_path / "m.engine", 1, 16, 64), memory="cuda-python") as be:
        x = _faces(2, 4)
        np.testing.assert_allclose(be.infer(x), fake_logits(x), rtol=1e-5, atol=1e-5)
    assert shapes == [(2, 1, 48, 48)]


# ---------------------------------------------------------------------------------------------
# cuda_memory: copy sizes are the host array's
# ---------------------------------------------------------------------------------------------
def test_copy_to_device_sends_only_the_host_arrays_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """htod_async of a 16-byte array into a 64-byte buffer changes 16 bytes, and reads nothing past the array."""
    monkeypatch.setattr(cuda_memory, "import_cudart", lambda: FakeCudart())
    mem = CudaPythonMemory(0)
    try:
        dev, stream = mem.alloc_device(64), mem.create_stream()
        mem.htod_async(dev, np.full(64, 1, np.uint8), stream)
        big = np.full(64, 3, np.uint8)
        big[:16] = 2
        mem.htod_async(dev, big[:16], stream)  # the rest of `big` lies right behind the array given
        back = np.zeros(64, np.uint8)
        mem.dtoh_async(back, dev, stream)
        mem.synchronize(stream)
        assert back[:16].tolist() == [2] * 16 and back[16:].tolist() == [1] * 48
        mem.free(dev)
        mem.free(stream)
    finally:
        mem.close()


def test_copy_from_device_writes_only_the_host_arrays_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """dtoh_async into a 16-byte array from a 64-byte buffer writes 16 bytes, not past the array's end."""
    monkeypatch.setattr(cuda_memory, "import_cudart", lambda: FakeCudart())
    mem = CudaPythonMemory(0)
    try:
        dev, stream = mem.alloc_device(64), mem.create_stream()
        mem.htod_async(dev, np.full(64, 7, np.uint8), stream)
        big = np.zeros(64, np.uint8)
        mem.dtoh_async(big[:16], dev, stream)
        mem.synchronize(stream)
        assert big[:16].tolist() == [7] * 16 and big[16:].tolist() == [0] * 48
        mem.free(dev)
        mem.free(stream)
    finally:
        mem.close()


def test_an_engine_of_batch_one_loads_and_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine built for batch 1 only (fsrfer-export --engine --max-batch 1, the lowest-memory choice on a
    Jetson) is valid: its batch range (1, 1) is loaded and run, one face per call."""
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    _install(monkeypatch, FakeCudart())
    with TensorRTBackend(_engine(tmp_path / "m.engine", 1, 1, 1), memory="cuda-python") as be:
        assert (be.min_batch, be.max_batch) == (1, 1)
        x = _faces(1, 5)
        np.testing.assert_allclose(be.infer(x), fake_logits(x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# export/engine: the engine file is replaced whole
# ---------------------------------------------------------------------------------------------
def test_a_forced_rebuild_replaces_the_engine_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader that opened the engine before a rebuild (another process loading it) reads the old engine in full:
    the new plan goes to a temporary file renamed into place, never written into the file being read."""
    from fsrfer_edge.export import engine

    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    _install(monkeypatch, FakeCudart())
    out = engine.build_engine(onnx_path, tmp_path / "engines", 1, 2, 4)
    old = out.read_bytes()
    build = engine._build_serialized
    monkeypatch.setattr(engine, "_build_serialized", lambda *a: (b"new plan", build(*a)[1]))
    with open(out, "rb") as reader:
        assert engine.build_engine(onnx_path, tmp_path / "engines", 1, 2, 4, force=True) == out
        assert reader.read() == old
    assert out.read_bytes() == b"new plan"


def test_a_timing_cache_of_another_gpu_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A timing cache whose entries were timed on another GPU (a cache folder shared between an Orin NX and an
    AGX Orin) is refused by TensorRT when mismatches are not ignored, as this builder asks: the build starts a new
    cache, which replaces it, instead of tuning with another GPU's timings."""
    import logging

    from fsrfer_edge.export import engine

    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    trt = _install(monkeypatch, FakeCudart())
    accept = trt.IBuilderConfig.set_timing_cache

    def set_timing_cache(self: Any, cache: Any, ignore_mismatch: bool) -> bool:
        if cache is not None and b"other-gpu" in cache.data and not ignore_mismatch:
            return False  # TensorRT: "the cache's device properties differ" unless ignoreMismatch
        return bool(accept(self, cache, ignore_mismatch))

    monkeypatch.setattr(trt.IBuilderConfig, "set_timing_cache", set_timing_cache)
    cache = tmp_path / "timing.cache"
    cache.write_bytes(f"timing-cache/{VERSION}/other-gpu entries".encode())
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge.export.engine"):
        engine.build_engine(onnx_path, tmp_path / "engines", 1, 2, 4, timing_cache=cache)
    assert "starting a new one" in caplog.text
    assert b"other-gpu" not in cache.read_bytes()


def test_first_use_builds_an_engine_for_the_batch_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """for_onnx(build=True, min_max_batch=200) builds an engine that takes batches of 200, not the default 128."""
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx", precision="fp16")
    _install(monkeypatch, FakeCudart())
    with TensorRTBackend.for_onnx(onnx_path, memory="cuda-python", min_max_batch=200, build=True,
                                  cache_dir=tmp_path / "cache") as be:
        assert be.max_batch >= 200


def test_a_pinned_array_freed_twice_is_refused_before_cuda_sees_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second free of a pinned array is an InputError and makes no cudaFreeHost call: CUDA may have handed
    the address to another allocation meanwhile, which a second cudaFreeHost would free under its owner."""
    from fsrfer_edge.errors import InputError

    cudart = FakeCudart()
    monkeypatch.setattr(cuda_memory, "import_cudart", lambda: cudart)
    mem = CudaPythonMemory(0)
    try:
        arr = mem.alloc_host((4, 7), np.float32)
        mem.free(arr)
        calls: list[int] = []
        free_host = cudart.cudaFreeHost
        monkeypatch.setattr(cudart, "cudaFreeHost", lambda ptr: (calls.append(int(ptr)), free_host(ptr))[1])
        with pytest.raises(InputError, match=r"alloc_host \(or was freed\)"):
            mem.free(arr)
        assert calls == []
    finally:
        mem.close()


def test_a_parse_failure_says_what_tensorrt_could_not_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The error for a file TensorRT's ONNX parser refuses carries the parser's own messages (the operator it has
    no importer for), not only that parsing failed."""
    from fsrfer_edge.errors import EngineError
    from fsrfer_edge.export import engine

    helper = pytest.importorskip("onnx.helper")
    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx", extra_nodes=(helper.make_node("Det", ["w"], ["d"], name="det"),))
    _install(monkeypatch, FakeCudart())
    with pytest.raises(EngineError, match="could not parse tiny.onnx: No importer registered for op: Det"):
        engine.build_engine(onnx_path, tmp_path / "engines", 1, 2, 4)


def test_force_rebuilds_a_valid_cached_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """build_engine(force=True) builds again even where the cached engine is valid (fsrfer-export --engine --force,
    e.g. after a JetPack update that kept the TensorRT version string); without it the cached engine is reused."""
    from fsrfer_edge.export import engine

    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    trt = _install(monkeypatch, FakeCudart())
    first = engine.build_engine(onnx_path, tmp_path / "engines", 1, 2, 4)
    assert engine.build_engine(onnx_path, tmp_path / "engines", 1, 2, 4) == first and len(trt.log["built"]) == 1
    assert engine.build_engine(onnx_path, tmp_path / "engines", 1, 2, 4, force=True) == first
    assert len(trt.log["built"]) == 2
