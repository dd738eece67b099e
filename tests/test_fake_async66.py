"""The shared fake CUDA layers (tests/fake_trt/cuda.py) and fake TensorRT are asynchronous, as a GPU stream is.

Copies to and from pinned memory and the engine's work are queued on their stream and run, in order, only when the
stream (or the device) is synchronised, so a missing synchronisation in the backend shows on CPU: a host read
before it sees the old bytes. The backend, which synchronises, gets the right logits with both memory layers and
every TensorRT API version the fakes have.
"""
from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.backends.cuda_memory import CudaPythonMemory, PyCudaMemory
from fsrfer_edge.engine_cache import EngineKey, write_sidecar
from fsrfer_edge.metadata import ModelInfo

try:
    from .fake_trt import fake_logits, install, make_tensorrt
    from .fake_trt.cuda import GPU_KEY, FakeCudart, make_fake_pycuda
except ImportError:
    from fake_trt import fake_logits, install, make_tensorrt  # type: ignore[no-redef]
    from fake_trt.cuda import GPU_KEY, FakeCudart, make_fake_pycuda  # type: ignore[no-redef]

H2D = FakeCudart.cudaMemcpyKind.cudaMemcpyHostToDevice
D2H = FakeCudart.cudaMemcpyKind.cudaMemcpyDeviceToHost


def _ok(result: tuple[Any, ...]) -> Any:
    assert result[0] == FakeCudart.cudaError_t.cudaSuccess, result
    return result[1] if len(result) == 2 else result[1:]


def _pinned(rt: FakeCudart, n: int) -> tuple[int, np.ndarray]:
    import ctypes

    ptr = int(_ok(rt.cudaMallocHost(n)))
    raw: Any = (ctypes.c_uint8 * n).from_address(ptr)
    return ptr, np.frombuffer(raw, np.uint8)


# ---------------------------------------------------------------------------------------------
# cuda-python's runtime
# ---------------------------------------------------------------------------------------------
def test_a_host_read_before_synchronize_sees_the_old_bytes() -> None:
    rt = FakeCudart()
    stream = _ok(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking))
    dev = int(_ok(rt.cudaMalloc(16)))
    src_ptr, src = _pinned(rt, 16)
    dst_ptr, dst = _pinned(rt, 16)
    src[:] = 5
    _ok(rt.cudaMemcpyAsync(dev, src_ptr, 16, H2D, stream))
    _ok(rt.cudaMemcpyAsync(dst_ptr, dev, 16, D2H, stream))
    assert dst.tolist() == [0] * 16 and rt.pending == 2 and rt.copies == 0  # queued, not run
    src[:] = 6  # the copy reads the pinned source when it runs, not when it was queued
    _ok(rt.cudaStreamSynchronize(stream))
    assert dst.tolist() == [6] * 16 and rt.pending == 0 and rt.copies == 2


def test_queued_work_runs_in_the_order_queued() -> None:
    rt = FakeCudart()
    stream = _ok(rt.cudaStreamCreate())
    dev = int(_ok(rt.cudaMalloc(8)))
    a_ptr, a = _pinned(rt, 8)
    b_ptr, b = _pinned(rt, 8)
    out_ptr, out = _pinned(rt, 8)
    a[:], b[:] = 1, 2
    _ok(rt.cudaMemcpyAsync(dev, a_ptr, 8, H2D, stream))
    _ok(rt.cudaMemcpyAsync(out_ptr, dev, 8, D2H, stream))  # sees a's bytes: it runs before b's copy
    _ok(rt.cudaMemcpyAsync(dev, b_ptr, 8, H2D, stream))
    _ok(rt.cudaStreamSynchronize(stream))
    assert out.tolist() == [1] * 8
    _ok(rt.cudaMemcpyAsync(out_ptr, dev, 8, D2H, stream))
    _ok(rt.cudaStreamSynchronize(stream))
    assert out.tolist() == [2] * 8


def test_two_streams_are_independent() -> None:
    rt = FakeCudart()
    s1 = _ok(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking))
    s2 = _ok(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking))
    assert int(s1) != int(s2)
    d1, d2 = int(_ok(rt.cudaMalloc(4))), int(_ok(rt.cudaMalloc(4)))
    src_ptr, src = _pinned(rt, 4)
    o1_ptr, o1 = _pinned(rt, 4)
    o2_ptr, o2 = _pinned(rt, 4)
    src[:] = 9
    for dev, out_ptr, s in ((d1, o1_ptr, s1), (d2, o2_ptr, s2)):
        _ok(rt.cudaMemcpyAsync(dev, src_ptr, 4, H2D, s))
        _ok(rt.cudaMemcpyAsync(out_ptr, dev, 4, D2H, s))
    _ok(rt.cudaStreamSynchronize(s1))
    assert o1.tolist() == [9] * 4 and o2.tolist() == [0] * 4 and rt.pending == 2  # s2's work still queued
    _ok(rt.cudaDeviceSynchronize())
    assert o2.tolist() == [9] * 4 and rt.pending == 0


def test_the_legacy_stream_waits_for_blocking_streams_only() -> None:
    """cudaMemcpy runs on the legacy default stream: it waits for a blocking stream's work, not a non-blocking one's."""
    rt = FakeCudart()
    blocking = _ok(rt.cudaStreamCreate())
    non_blocking = _ok(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking))
    d1, d2 = int(_ok(rt.cudaMalloc(4))), int(_ok(rt.cudaMalloc(4)))
    src_ptr, src = _pinned(rt, 4)
    src[:] = 3
    _ok(rt.cudaMemcpyAsync(d1, src_ptr, 4, H2D, blocking))
    _ok(rt.cudaMemcpyAsync(d2, src_ptr, 4, H2D, non_blocking))
    out = np.zeros(4, np.uint8)
    _ok(rt.cudaMemcpy(out.ctypes.data, d1, 4, D2H))  # synchronous, after the blocking stream's copy
    assert out.tolist() == [3] * 4 and rt.pending == 1
    _ok(rt.cudaMemcpy(out.ctypes.data, d2, 4, D2H))  # the non-blocking stream's copy has not run
    assert out.tolist() == [0] * 4


def test_pageable_host_memory_is_staged_when_the_copy_is_queued() -> None:
    rt = FakeCudart()
    stream = _ok(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking))
    dev = int(_ok(rt.cudaMalloc(4)))
    src = np.full(4, 1, np.uint8)
    _ok(rt.cudaMemcpyAsync(dev, src.ctypes.data, 4, H2D, stream))
    src[:] = 2  # too late: the driver staged the pageable bytes
    out = np.zeros(4, np.uint8)
    _ok(rt.cudaMemcpyAsync(out.ctypes.data, dev, 4, D2H, stream))  # pageable: returns once done
    assert out.tolist() == [1] * 4 and rt.pending == 0


def test_cudafree_synchronizes_the_device_and_freehost_does_not() -> None:
    rt = FakeCudart()
    stream = _ok(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking))
    dev, other = int(_ok(rt.cudaMalloc(4))), int(_ok(rt.cudaMalloc(4)))
    src_ptr, src = _pinned(rt, 4)
    src[:] = 4
    _ok(rt.cudaMemcpyAsync(dev, src_ptr, 4, H2D, stream))
    _ok(rt.cudaFree(other))
    assert rt.pending == 0 and rt.copies == 1
    _ok(rt.cudaMemcpyAsync(dev, src_ptr, 4, H2D, stream))
    _ok(rt.cudaFreeHost(src_ptr))  # freed while its copy is queued: the copy fails when it runs
    with pytest.raises(AssertionError, match="freed"):
        rt.cudaStreamSynchronize(stream)


def test_a_failing_call_queues_nothing() -> None:
    rt = FakeCudart()
    stream = _ok(rt.cudaStreamCreate())
    dev = int(_ok(rt.cudaMalloc(4)))
    src_ptr, _ = _pinned(rt, 4)
    rt.fail["cudaMemcpyAsync"] = rt.cudaError_t.cudaErrorInvalidValue
    assert rt.cudaMemcpyAsync(dev, src_ptr, 4, H2D, stream)[0] == rt.cudaError_t.cudaErrorInvalidValue
    assert rt.pending == 0


# ---------------------------------------------------------------------------------------------
# pycuda.driver
# ---------------------------------------------------------------------------------------------
def test_pycuda_copies_wait_for_stream_synchronize() -> None:
    drv = make_fake_pycuda()
    drv.Device(0).retain_primary_context().push()
    s1, s2 = drv.Stream(1), drv.Stream(1)
    assert s1.handle != s2.handle
    dev1, dev2 = drv.mem_alloc(8), drv.mem_alloc(8)
    src = drv.pagelocked_empty((8,), np.uint8)
    out1, out2 = drv.pagelocked_empty((8,), np.uint8), drv.pagelocked_empty((8,), np.uint8)
    src[:] = 1
    drv.memcpy_htod_async(int(dev1), src, s1)
    drv.memcpy_dtoh_async(out1, int(dev1), s1)
    drv.memcpy_htod_async(int(dev2), src, s2)
    drv.memcpy_dtoh_async(out2, int(dev2), s2)
    src[:] = 2
    assert out1.tolist() == [0] * 8 and drv.state["copies"] == 0
    s1.synchronize()
    assert out1.tolist() == [2] * 8 and out2.tolist() == [0] * 8  # s2 is independent
    drv.Context.synchronize()
    assert out2.tolist() == [2] * 8 and drv.state["copies"] == 4


def test_pycuda_free_of_device_memory_synchronizes() -> None:
    drv = make_fake_pycuda()
    drv.Device(0).retain_primary_context().push()
    stream = drv.Stream(1)
    dev = drv.mem_alloc(4)
    out = drv.pagelocked_empty((4,), np.uint8)
    drv.memcpy_htod_async(int(dev), np.full(4, 7, np.uint8), stream)  # pageable source: staged
    drv.memcpy_dtoh_async(out, int(dev), stream)
    assert out.tolist() == [0] * 4
    dev.free()
    assert out.tolist() == [7] * 4


# ---------------------------------------------------------------------------------------------
# The fake TensorRT's enqueue and the backend
# ---------------------------------------------------------------------------------------------
def _install(monkeypatch: pytest.MonkeyPatch, version: str) -> tuple[types.ModuleType, FakeCudart, types.ModuleType]:
    trt, cudart, pycuda = make_tensorrt(version), FakeCudart(), make_fake_pycuda()
    install(monkeypatch, trt, cudart, pycuda)
    return trt, cudart, pycuda


def _engine(path: Path, version: str) -> Path:
    """A fake engine of ``version`` (float32 faces (N,1,48,48) -> logits (N,7), batch 1-8) with its sidecar."""
    spec = {"trt": version, "input": "faces", "input_dtype": "FLOAT", "outputs": ["logits"], "min": 1, "opt": 4,
            "max": 8, "chw": [1, 48, 48], "classes": 7, "flags": ["FP16"], "strongly_typed": False, "precisions": []}
    path.write_bytes(json.dumps(spec).encode())
    write_sidecar(path, EngineKey(version, "8.7", "fp16", 1, 4, 8, GPU_KEY), "0" * 64, ModelInfo(precision="fp16"))
    return path


def _faces(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 48, 48)).astype(np.float32)


def test_the_engine_runs_when_its_stream_gets_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    trt, rt, _ = _install(monkeypatch, "10.3.0.26")
    spec = {"trt": "10.3.0.26", "input": "faces", "input_dtype": "FLOAT", "outputs": ["logits"], "min": 1, "opt": 1,
            "max": 2, "chw": [1, 48, 48], "classes": 7}
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(json.dumps(spec).encode())
    ctx = engine.create_execution_context()
    stream = _ok(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking))
    x = _faces(2, 0)
    d_in, d_out = int(_ok(rt.cudaMalloc(x.nbytes))), int(_ok(rt.cudaMalloc(2 * 7 * 4)))
    in_ptr, host_in = _pinned(rt, x.nbytes)
    out_ptr, host_out = _pinned(rt, 2 * 7 * 4)
    host_in[:] = x.view(np.uint8).ravel()
    assert ctx.set_input_shape("faces", (2, 1, 48, 48))
    ctx.set_tensor_address("faces", d_in)
    ctx.set_tensor_address("logits", d_out)
    _ok(rt.cudaMemcpyAsync(d_in, in_ptr, x.nbytes, H2D, stream))
    assert ctx.execute_async_v3(int(stream)) is True
    _ok(rt.cudaMemcpyAsync(out_ptr, d_out, 2 * 7 * 4, D2H, stream))
    assert not host_out.any() and rt.pending == 3
    _ok(rt.cudaStreamSynchronize(stream))
    np.testing.assert_allclose(host_out.view(np.float32).reshape(2, 7), fake_logits(x), rtol=1e-5, atol=1e-5)
    assert ctx.execute_async_v3(0xDEAD) is False  # no such stream


@pytest.mark.parametrize("memory", ["cuda-python", "pycuda"])
@pytest.mark.parametrize("version", ["8.5.2.2", "8.6.1.6", "10.3.0.26", "11.1.0.10"])
def test_the_backend_gets_the_right_logits_with_asynchronous_streams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   version: str, memory: str) -> None:
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    _, rt, pycuda = _install(monkeypatch, version)
    with TensorRTBackend(_engine(tmp_path / "m.engine", version), memory=memory) as be:
        for n, seed in ((3, 0), (8, 1), (1, 2)):
            x = _faces(n, seed)
            np.testing.assert_allclose(be.infer(x), fake_logits(x), rtol=1e-5, atol=1e-5)
        gpu = rt.gpu if memory == "cuda-python" else pycuda.state["gpu"]
        assert not gpu.queued  # nothing left queued behind a returned result


@pytest.mark.parametrize("version", ["8.5.2.2", "8.6.1.6"])
def test_the_backend_gets_the_right_logits_through_execute_async_v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   version: str) -> None:
    """TensorRT 8.x also has the binding API (execute_async_v2); without the named one the backend uses it."""
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    trt, _, _ = _install(monkeypatch, version)
    monkeypatch.delattr(trt.IExecutionContext, "execute_async_v3")
    with TensorRTBackend(_engine(tmp_path / "m.engine", version), memory="cuda-python") as be:
        assert not getattr(be, "_io").named_api
        x = _faces(5, 3)
        np.testing.assert_allclose(be.infer(x), fake_logits(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("memory", ["cuda-python", "pycuda"])
def test_a_backend_that_skipped_the_synchronize_would_be_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               memory: str) -> None:
    """The point of the asynchronous fakes: without mem.synchronize the host output is read before the copy."""
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    _install(monkeypatch, "10.3.0.26")
    with TensorRTBackend(_engine(tmp_path / "m.engine", "10.3.0.26"), memory=memory) as be:
        mem = getattr(be, "_mem")
        synchronize = mem.synchronize
        monkeypatch.setattr(mem, "synchronize", lambda stream: None)
        x = _faces(2, 4)
        assert not np.allclose(be.infer(x), fake_logits(x), rtol=1e-5, atol=1e-5)
        monkeypatch.setattr(mem, "synchronize", synchronize)  # closing synchronises
        np.testing.assert_allclose(be.infer(x), fake_logits(x), rtol=1e-5, atol=1e-5)


def test_stream_handles_are_unique_across_fake_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyCudaMemory and CudaPythonMemory each get their own fake GPU: their stream handles never collide."""
    _install(monkeypatch, "10.3.0.26")
    a, b = CudaPythonMemory(0), PyCudaMemory(0)
    try:
        assert a.create_stream().ptr != b.create_stream().ptr
    finally:
        a.close()
        b.close()
