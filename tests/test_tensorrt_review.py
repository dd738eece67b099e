"""Error paths of the TensorRT backend and the CUDA memory layer, against the fakes in tests/fake_trt.

cuda-python's calls fail by returning ``(error_code, ...)`` tuples; pycuda's raise ``pycuda.driver.Error``
subclasses (pycuda._driver.LogicError for a failed cuCtxPushCurrent). Each test makes one fake call fail
that way and checks that the package's error, or the caller's original one, is what comes out.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.backends.cuda_memory import CudaPythonMemory, PyCudaMemory
from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend
from fsrfer_edge.engine_cache import EngineKey, write_sidecar
from fsrfer_edge.errors import EngineError, InputError
from fsrfer_edge.metadata import ModelInfo

try:
    from .fake_trt import fake_logits
    from .fake_trt.cuda import GPU_KEY
except ImportError:
    from fake_trt import fake_logits  # type: ignore[no-redef]
    from fake_trt.cuda import GPU_KEY  # type: ignore[no-redef]

from test_tensorrt_versions import FakeGpu  # noqa: E402

VERSION = "10.3.0.26"
FACES = np.random.default_rng(0).standard_normal((2, 1, 48, 48)).astype(np.float32)


class Gpu(FakeGpu):
    """Fake TensorRT, cuda-python (two devices) and pycuda, installed for one test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(monkeypatch, VERSION)

    def logic_error(self, message: str) -> Exception:
        """What pycuda raises for a failed driver call such as cuCtxPushCurrent: a pycuda.driver.Error subclass."""
        cls = type("LogicError", (self.pycuda.Error,), {})
        return cls(message)  # type: ignore[no-any-return]


@pytest.fixture()
def gpu(monkeypatch: pytest.MonkeyPatch) -> Gpu:
    return Gpu(monkeypatch)


@pytest.fixture()
def engine(tmp_path: Path) -> Path:
    """An engine of the fake TensorRT (batch 1-8, FP16 file) with its sidecar, for the fake Orin."""
    spec = {"trt": VERSION, "input": "faces", "input_dtype": "FLOAT", "outputs": ["logits"], "min": 1, "opt": 4,
            "max": 8, "chw": [1, 48, 48], "classes": 7, "flags": [], "strongly_typed": False, "precisions": []}
    path = tmp_path / "m.engine"
    path.write_bytes(json.dumps(spec).encode())
    write_sidecar(path, EngineKey(VERSION, "8.7", "fp16", 1, 4, 8, GPU_KEY), "0" * 64, ModelInfo(precision="fp16"))
    return path


def _restore_fails(gpu: Gpu, monkeypatch: pytest.MonkeyPatch, device: int = 0) -> list[int]:
    """Make cudaSetDevice(device) fail as cuda-python does (an error tuple); returns the devices asked for."""
    real = gpu.cudart.cudaSetDevice
    asked: list[int] = []

    def set_device(dev: int) -> tuple[Any, ...]:
        asked.append(dev)
        if dev == device:
            return (gpu.cudart.cudaError_t.cudaErrorInvalidValue,)
        return real(dev)  # type: ignore[no-any-return]

    monkeypatch.setattr(gpu.cudart, "cudaSetDevice", set_device)
    return asked


# ---------------------------------------------------------------------------------------------
# 1: a memory layer of another device than the backend's
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [CudaPythonMemory, PyCudaMemory])
def test_a_memory_layer_of_another_device_is_refused(gpu: Gpu, engine: Path, cls: type) -> None:
    """The engine was checked against ``device`` but run on ``memory.device``; a mismatch is refused, naming both."""
    mem = cls(1)
    with pytest.raises(InputError, match=r"device=0.*CUDA device 1.*pass device=1"):
        TensorRTBackend(engine, device=0, memory=mem)
    assert gpu.trt.log["deserialized"] == []  # refused before TensorRT saw the engine
    assert mem.device == 1 and gpu.cudart.current == 0
    with TensorRTBackend(engine, device=1, memory=mem) as be:  # the matching device runs
        np.testing.assert_allclose(be.infer(FACES), fake_logits(FACES), rtol=1e-5, atol=1e-5)
    assert not gpu.cudart.device and not gpu.cudart.host and not gpu.cudart.streams


def test_a_refused_memory_layer_is_closed_only_when_the_backend_was_told_to(gpu: Gpu, engine: Path) -> None:
    kept = PyCudaMemory(1)
    with pytest.raises(InputError):
        TensorRTBackend(engine, device=0, memory=kept)
    with kept.context():  # still the caller's, still open
        pass
    given = PyCudaMemory(1)
    with pytest.raises(InputError):
        TensorRTBackend(engine, device=0, memory=given, close_memory=True)
    with pytest.raises(EngineError, match="is closed"):
        with given.context():
            pass


# ---------------------------------------------------------------------------------------------
# 2: pycuda failing to make the context current
# ---------------------------------------------------------------------------------------------
def test_a_failing_pycuda_context_push_is_an_engine_error(gpu: Gpu, monkeypatch: pytest.MonkeyPatch) -> None:
    mem = PyCudaMemory(0)

    def push() -> None:
        raise gpu.logic_error("cuCtxPushCurrent failed: invalid device context")

    monkeypatch.setattr(mem._ctx, "push", push)
    with pytest.raises(EngineError, match=r"device 0.*current.*invalid device context.*restart the process") as info:
        with mem.context():
            pass
    assert isinstance(info.value.__cause__, gpu.pycuda.Error)
    assert gpu.pycuda.state["pushed"] == 0
    with pytest.raises(EngineError, match="cuCtxPushCurrent"):  # through a memory call, too
        mem.alloc_device(16)
    monkeypatch.undo()
    with mem.context():  # the depth count was not left behind by the failed push
        assert gpu.pycuda.state["pushed"] == 1
    assert gpu.pycuda.state["pushed"] == 0


def test_a_backend_whose_pycuda_context_cannot_be_made_current_says_so(gpu: Gpu, engine: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    mem = PyCudaMemory(0)
    monkeypatch.setattr(mem._ctx, "push", lambda: (_ for _ in ()).throw(gpu.logic_error("invalid device context")))
    with pytest.raises(EngineError, match="invalid device context"):
        TensorRTBackend(engine, memory=mem)
    assert gpu.trt.log["deserialized"] == []


def test_a_failing_pycuda_context_pop_does_not_hide_the_error_raised_inside(
        gpu: Gpu, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    mem = PyCudaMemory(0)

    def pop() -> None:
        gpu.pycuda.state["pushed"] -= 1
        raise gpu.logic_error("cuCtxPopCurrent failed: invalid device context")

    monkeypatch.setattr(gpu.pycuda.Context, "pop", staticmethod(pop))
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge"):
        with pytest.raises(ZeroDivisionError):
            with mem.context():
                1 / 0
    assert "cuCtxPopCurrent" in caplog.text
    with pytest.raises(EngineError, match="cuCtxPopCurrent"):  # with nothing else raised, the pop's failure is
        with mem.context():
            pass


# ---------------------------------------------------------------------------------------------
# 3: a failing cleanup step does not replace the original error
# ---------------------------------------------------------------------------------------------
def test_a_failing_device_restore_does_not_hide_the_error_raised_inside(
        gpu: Gpu, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    mem = CudaPythonMemory(1)
    asked = _restore_fails(gpu, monkeypatch, device=0)
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge"):
        with pytest.raises(ZeroDivisionError):
            with mem.context():
                1 / 0
    assert asked == [1, 0]  # the restore was tried
    assert "cudaSetDevice" in caplog.text and "device 0" in caplog.text
    assert "cudaSetDevice(0) failed" in caplog.text
    # With nothing else raised, the failed restore is the error.
    gpu.cudart.current = 0  # the failed restore left device 1 current; the caller's thread is on 0 again
    with pytest.raises(EngineError, match=r"cudaSetDevice\(0\) failed.*device 0 could not be made current"):
        with mem.context():
            pass


def test_a_failing_run_is_reported_when_the_device_restore_fails_too(
        gpu: Gpu, engine: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    be = TensorRTBackend(engine, device=1, memory="cuda-python")
    monkeypatch.setattr(be._context, "execute_async_v3", lambda handle: False)
    _restore_fails(gpu, monkeypatch, device=0)
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge"):
        with pytest.raises(EngineError, match="TensorRT failed to run"):
            be.infer(FACES)
    assert "cudaSetDevice" in caplog.text
    monkeypatch.undo()
    be.close()


@pytest.mark.parametrize("memory", ["cuda-python", "pycuda"])
def test_a_failing_stream_wait_after_a_failed_run_does_not_hide_it(
        gpu: Gpu, engine: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        memory: str) -> None:
    be = TensorRTBackend(engine, memory=memory)
    monkeypatch.setattr(be._context, "execute_async_v3", lambda handle: False)
    if memory == "cuda-python":
        monkeypatch.setitem(gpu.cudart.fail, "cudaStreamSynchronize", gpu.cudart.cudaError_t.cudaErrorInvalidValue)
    else:
        def synchronize(self: Any) -> None:
            raise gpu.logic_error("cuStreamSynchronize failed: an illegal memory access was encountered")

        monkeypatch.setattr(gpu.pycuda.Stream, "synchronize", synchronize)
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge"):
        with pytest.raises(EngineError, match="TensorRT failed to run"):
            be.infer(FACES)
    assert "ynchronize" in caplog.text
    monkeypatch.undo()
    be.close()
    assert not gpu.cudart.device and not gpu.pycuda.state["live"] and gpu.pycuda.state["pushed"] == 0


def test_a_failing_close_does_not_hide_the_error_raised_in_the_with_block(caplog: pytest.LogCaptureFixture) -> None:
    """Backend.__exit__ closed unconditionally, so a close that failed too (CUDA errors are sticky) replaced the
    block's own error; without an error in the block, a failing close still raises."""
    from fsrfer_edge.backends.base import Backend
    from fsrfer_edge.errors import EngineError

    class Failing(Backend):
        name = "failing"

        def __init__(self) -> None:
            self._closed = False

        def _infer_impl(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - never run
            raise AssertionError

        def _close_impl(self) -> None:
            raise EngineError("cudaFree failed: an illegal memory access was encountered")

    with caplog.at_level(logging.WARNING):
        with pytest.raises(ValueError, match="the block's own error"):
            with Failing():
                raise ValueError("the block's own error")
    assert "cudaFree failed" in caplog.text
    with pytest.raises(EngineError, match="cudaFree failed"):
        with Failing():
            pass
