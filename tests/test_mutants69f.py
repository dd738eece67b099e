"""Hand-made mutation test 69f: a third pass over the TensorRT backend and its CUDA memory layer, against the
version-faithful fakes in tests/fake_trt (TensorRT 8.5/8.6 with the binding-index API beside the named one, 10.x with
the named API alone; cuda-python's runtime module and pycuda.driver).

Tests that kill hand-made mutants (round 69, task K69f) of fsrfer_edge/backends/tensorrt_backend.py and
fsrfer_edge/backends/cuda_memory.py that the earlier passes (65d, 67c) and the other fake-GPU tests let through: a
``tensorrt`` without a Runtime taken for TensorRT; an engine's class count, batch range (empty, from 0, fixed) and
tensor types checked against what the backend can run; TensorRT refusing an input shape (named and binding API);
binding indices of an engine whose input is binding 1; the GPU named in a missing engine's error; for_onnx's device
and memory layer; the device ``backend="auto"`` asks about; and in the memory layers the device index, both
cuda-python layouts, one primary context per device, the thread's device given back, a freed pycuda stream, the GPU
key in file names, and the GPU named when no layer works.
"""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.backends import cuda_memory
from fsrfer_edge.backends.cuda_memory import CudaPythonMemory, PyCudaMemory
from fsrfer_edge.engine_cache import EngineKey, write_sidecar
from fsrfer_edge.errors import BackendUnavailable, EngineError, InputError
from fsrfer_edge.metadata import ModelInfo

try:
    from .fake_trt import fake_logits
    from .fake_trt.cuda import GPU_KEY, make_fake_pycuda
except ImportError:
    from fake_trt import fake_logits  # type: ignore[no-redef]
    from fake_trt.cuda import GPU_KEY, make_fake_pycuda  # type: ignore[no-redef]

from test_mutants65d import VERSION, _engine, _faces  # the fake engine of round 65d
from test_mutants67c import _install  # TensorRT of a version and both CUDA layers, faked (round 67c)


def _odd_engine(path: Path, classes: int = 7, min_batch: int = 1, max_batch: int = 8, version: str = VERSION) -> Path:
    """A fake engine like round 65d's whose class count or batch range may disagree with its metadata (7 classes);
    the sidecar's key keeps a batch range the cache accepts (1 <= min <= opt <= max): the engine's own profile is
    what the backend reads."""
    spec = {"trt": version, "input": "faces", "input_dtype": "FLOAT", "outputs": ["logits"], "min": min_batch,
            "opt": max(min_batch, 1), "max": max_batch, "chw": [1, 48, 48], "classes": classes, "flags": ["FP16"],
            "strongly_typed": False, "precisions": []}
    path.write_bytes(json.dumps(spec).encode())
    write_sidecar(path, EngineKey(version, "8.7", "fp16", 1, 1, max(max_batch, 1), GPU_KEY), "0" * 64,
                  ModelInfo(precision="fp16"))
    return path


# ---------------------------------------------------------------------------------------------
# tensorrt_backend: what is taken for TensorRT
# ---------------------------------------------------------------------------------------------
def test_a_tensorrt_with_a_version_but_no_runtime_is_not_taken_for_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``tensorrt`` package that has ``__version__`` but no ``Runtime`` (stubs, or a half-removed install) is
    BackendUnavailable naming how to install TensorRT, not an AttributeError when the engine is loaded."""
    # kills: `not hasattr(trt, "Runtime") or ...` -> `and`
    from fsrfer_edge.backends.tensorrt_backend import import_tensorrt

    stubs = types.ModuleType("tensorrt")
    stubs.__version__ = "10.3.0.26"  # type: ignore[attr-defined]
    stubs.__path__ = ["/site-packages/tensorrt"]
    monkeypatch.setitem(sys.modules, "tensorrt", stubs)
    with pytest.raises(BackendUnavailable, match="not the TensorRT runtime.*pip install tensorrt"):
        import_tensorrt()


# ---------------------------------------------------------------------------------------------
# tensorrt_backend: the engine checked against its metadata
# ---------------------------------------------------------------------------------------------
def test_an_engine_with_another_class_count_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine whose output has 5 columns for a model of 7 classes is refused when loaded, naming both."""
    # kills: the output check reduced to `len(out_shape) != 2`
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    _, cudart, _ = _install(monkeypatch)
    with pytest.raises(EngineError, match=r"output 'logits' has shape \(-1, 5\); expected \(N, 7\)"):
        TensorRTBackend(_odd_engine(tmp_path / "m.engine", classes=5), memory="cuda-python")
    assert not cudart.device and not cudart.host


def test_an_engine_whose_batch_range_is_empty_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile of max batch 0 can run no face: refused when loaded, not a backend that refuses every batch."""
    # kills: `batch_range[1] < 1` -> `< 0`
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    _install(monkeypatch)
    with pytest.raises(EngineError, match=r"batch range \(0, 0\) is invalid"):
        TensorRTBackend(_odd_engine(tmp_path / "m.engine", min_batch=0, max_batch=0), memory="cuda-python")


def test_a_profile_starting_at_batch_zero_takes_batches_from_one(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile whose min batch is 0 (TensorRT allows empty tensors) gives a backend of min batch 1: its warm-up
    and its batching never ask for an empty batch."""
    # kills: `max(1, batch_range[0])` -> `batch_range[0]`
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    _install(monkeypatch)
    with TensorRTBackend(_odd_engine(tmp_path / "m.engine", min_batch=0, max_batch=4), memory="cuda-python") as be:
        assert (be.min_batch, be.max_batch) == (1, 4)
        x = _faces(1, 3)
        np.testing.assert_allclose(be.infer(x), fake_logits(x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# tensorrt_backend: running, named-tensor and binding API
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["8.5.2.2", VERSION])
def test_an_input_shape_tensorrt_rejects_is_reported_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             version: str) -> None:
    """set_input_shape returning False (10.x) or, through the binding API, set_binding_shape returning False (8.x
    before the named API) is "rejected input shape", before anything is queued; the backend then runs again."""
    # kills: `set_input_shape(...) is False` -> `is None`, and the same for set_binding_shape
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    trt, cudart, _ = _install(monkeypatch, version)
    if version.startswith("8."):
        monkeypatch.delattr(trt.IExecutionContext, "execute_async_v3")  # the binding API, as before 8.5
        method = "set_binding_shape"
    else:
        method = "set_input_shape"
    accept = getattr(trt.IExecutionContext, method)
    refuse = {"on": True}

    def maybe_refuse(self: Any, key: Any, shape: tuple[int, ...]) -> bool:
        ok = bool(accept(self, key, shape))
        return False if refuse["on"] else ok

    monkeypatch.setattr(trt.IExecutionContext, method, maybe_refuse)
    with TensorRTBackend(_engine(tmp_path / "m.engine", version=version), memory="cuda-python") as be:
        x = _faces(2, 5)
        with pytest.raises(EngineError, match=r"rejected input shape \(2, 1, 48, 48\)"):
            be.infer(x)
        assert cudart.copies == 0 and cudart.pending == 0
        refuse["on"] = False
        np.testing.assert_allclose(be.infer(x), fake_logits(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("version", ["8.5.2.2", "8.6.1.6"])
def test_an_engine_whose_input_is_binding_one_runs_through_the_binding_api(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    """Binding order is the engine's: with the output at binding 0 and the input at 1, the input's shape is set on
    binding 1 and the bindings list holds each buffer at its tensor's index."""
    # kills: set_binding_shape(0, ...) for the input's index; the bindings list filled at fixed positions
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    trt, _, _ = _install(monkeypatch, version)
    monkeypatch.delattr(trt.IExecutionContext, "execute_async_v3")  # the binding API, as before 8.5
    engine_cls, context_cls = trt.ICudaEngine, trt.IExecutionContext
    init = engine_cls.__init__

    def output_first(self: Any, spec: dict[str, Any]) -> None:
        init(self, spec)
        self.names = spec["outputs"] + [spec["input"]]

    monkeypatch.setattr(engine_cls, "__init__", output_first)
    monkeypatch.setattr(engine_cls, "binding_is_input", lambda self, i: self.names[i] == self.spec["input"])
    set_shape, run_v2 = context_cls.set_binding_shape, context_cls.execute_async_v2
    monkeypatch.setattr(context_cls, "set_binding_shape",
                        lambda self, binding, shape: binding == 1 and set_shape(self, 0, shape))
    monkeypatch.setattr(context_cls, "execute_async_v2",
                        lambda self, bindings, stream: run_v2(self, [bindings[1], bindings[0]], stream))
    with TensorRTBackend(_engine(tmp_path / "m.engine", version=version), memory="cuda-python") as be:
        io = getattr(be, "_io")
        assert not io.named_api and (io.input_index, io.output_index) == (1, 0)
        x = _faces(3, 9)
        np.testing.assert_allclose(be.infer(x), fake_logits(x), rtol=1e-5, atol=1e-5)



def test_an_engine_tensor_of_a_type_numpy_lacks_is_refused_by_name(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorRT 10.x has BF16 (and FP8, INT4), which NumPy has no type for: an engine with a BF16 input is an
    EngineError naming the type and the ones that work, not a KeyError from the lookup table."""
    # kills: the `name not in _TRT_TO_NUMPY` check dropped
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    _install(monkeypatch)
    path = _engine(tmp_path / "m.engine")
    spec = json.loads(path.read_bytes())
    path.write_bytes(json.dumps({**spec, "input_dtype": "BF16"}).encode())
    write_sidecar(path, EngineKey(VERSION, "8.7", "fp16", 1, 4, 8, GPU_KEY), "0" * 64, ModelInfo(precision="fp16"))
    with pytest.raises(EngineError, match=r"BF16 has no NumPy equivalent; expected one of \['BOOL', 'FLOAT'"):
        TensorRTBackend(path, memory="cuda-python")



@pytest.mark.parametrize("version", ["8.6.1.6", VERSION])
def test_an_engine_of_a_fixed_batch_takes_exactly_that_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             version: str) -> None:
    """An engine whose input has a fixed batch of 4 (no -1, no profile to read) runs batches of exactly 4, through
    the named API (10.x) as through the binding API (8.x before the named one)."""
    # kills: a static batch read as the range (1, N) instead of (N, N), on either API
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    trt, _, _ = _install(monkeypatch, version)
    if version.startswith("8."):
        monkeypatch.delattr(trt.IExecutionContext, "execute_async_v3")  # the binding API, as before 8.5
    shape = trt.ICudaEngine.get_tensor_shape
    monkeypatch.setattr(trt.ICudaEngine, "get_tensor_shape", lambda self, name: (
        (4, *self.spec["chw"]) if name == self.spec["input"] else shape(self, name)))
    with TensorRTBackend(_engine(tmp_path / "m.engine", version=version), memory="cuda-python") as be:
        assert (be.min_batch, be.max_batch) == (4, 4)
        x = _faces(4, 13)
        np.testing.assert_allclose(be.infer(x), fake_logits(x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# tensorrt_backend: finding an engine, first use, the reason auto leaves TensorRT
# ---------------------------------------------------------------------------------------------
def test_no_engine_found_names_the_gpu_as_engine_files_do(tmp_path: Path) -> None:
    """The error for a missing engine names the GPU as the engine files are named (sm87, not sm8.7) with its model
    key, and the command that builds one."""
    # kills: `sm{cc}` -> `sm{compute_capability}` in the message
    from fsrfer_edge.backends.tensorrt_backend import find_engine

    onnx_path = tmp_path / "face.onnx"
    onnx_path.write_bytes(b"model")
    with pytest.raises(EngineError, match=r"TensorRT 10\.3\.0\.26 for GPU sm87 \(orin-16sm-64g\) was found in "
                                          r".*fsrfer-export --engine"):
        find_engine(onnx_path, VERSION, "8.7", [tmp_path], device=GPU_KEY)


def test_for_onnx_closes_the_memory_layer_it_made_when_no_engine_is_found(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """for_onnx(build=False) with no engine raises EngineError and closes the pycuda layer it opened for the GPU's
    identity (no layer left holding the device)."""
    # kills: the `mem.close()` of for_onnx's error path dropped
    from fsrfer_edge.backends import tensorrt_backend

    _install(monkeypatch)
    made: list[Any] = []
    select = tensorrt_backend.select_memory

    def record(memory: str, device: int) -> Any:
        made.append(select(memory, device))
        return made[-1]

    monkeypatch.setattr(tensorrt_backend, "select_memory", record)
    onnx_path = tmp_path / "face.onnx"
    onnx_path.write_bytes(b"model")
    with pytest.raises(EngineError, match="no TensorRT engine for face.onnx"):
        tensorrt_backend.TensorRTBackend.for_onnx(onnx_path, memory="pycuda", cache_dir=tmp_path / "cache")
    assert len(made) == 1
    with pytest.raises(EngineError, match="is closed"):
        with made[0].context():
            pass


def test_first_use_builds_and_loads_on_the_device_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """for_onnx(device=1, build=True) builds the engine and loads it with the layer of device 1 (device 0 with that
    layer is refused as another device)."""
    # kills: first use loading on device 0 instead of the `device` given
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend
    from test_mutants65d import _tiny_onnx

    _install(monkeypatch)
    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx", precision="fp16")
    with TensorRTBackend.for_onnx(onnx_path, device=1, memory="cuda-python", build=True,
                                  cache_dir=tmp_path / "cache") as be:
        assert getattr(be, "_mem").device == 1
        x = _faces(2, 11)
        np.testing.assert_allclose(be.infer(x), fake_logits(x), rtol=1e-5, atol=1e-5)


def test_the_reason_auto_leaves_tensorrt_names_the_gpu_asked_for(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With TensorRT installed, cuda-python unable to use GPU 3 and no pycuda, the reason is that no CUDA binding can
    use GPU 3: the layer is tried on the device asked for, not on GPU 0 (which works)."""
    # kills: select_memory("auto", 0) instead of the device asked about
    from fsrfer_edge.backends.tensorrt_backend import tensorrt_unavailable_reason

    _install(monkeypatch)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    reason = tensorrt_unavailable_reason(tmp_path / "face.onnx", device=3)
    assert reason is not None and reason.startswith("TensorRT is installed but no CUDA binding can use GPU 3 (")


# ---------------------------------------------------------------------------------------------
# cuda_memory: arguments, pinned arrays, the thread's device
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [CudaPythonMemory, PyCudaMemory])
@pytest.mark.parametrize("device", [-1, True, 0.0, "0"])
def test_a_device_index_that_is_no_cuda_device_is_an_input_error(monkeypatch: pytest.MonkeyPatch, cls: type,
                                                                 device: Any) -> None:
    """device=-1 (CUDA_VISIBLE_DEVICES style "none"), a bool, a float or a str is an InputError naming it, before
    either library is asked."""
    # kills: `device < 0` -> `device < -1`
    _install(monkeypatch)
    with pytest.raises(InputError, match=r"device=.*expected a CUDA device index >= 0"):
        cls(device)




def test_import_cudart_takes_the_runtime_of_either_cuda_python_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """cuda-python >= 12.6 has ``cuda.bindings.runtime`` (taken first); JetPack 5's cuda-python 11.x has only
    ``cuda.cudart``, which is taken when the new layout does not import."""
    # kills: the fallback to cuda.cudart dropped
    new, old = types.ModuleType("cuda.bindings.runtime"), types.ModuleType("cuda.cudart")
    bindings = types.ModuleType("cuda.bindings")
    bindings.__path__ = []
    bindings.runtime = new  # type: ignore[attr-defined]
    cuda = types.ModuleType("cuda")
    cuda.__path__ = []
    cuda.bindings, cuda.cudart = bindings, old  # type: ignore[attr-defined]
    for name, module in (("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", new),
                         ("cuda.cudart", old)):
        monkeypatch.setitem(sys.modules, name, module)
    assert cuda_memory.import_cudart() is new
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)  # cuda-python 11.x: no cuda.bindings
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    assert cuda_memory.import_cudart() is old


def test_each_device_gets_its_own_pycuda_primary_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyCudaMemory(0) and PyCudaMemory(1) retain the primary contexts of devices 0 and 1, once each for the
    process: a layer for device 1 must not run on device 0's context."""
    # kills: the retained-context table keyed without the device
    _, _, pycuda = _install(monkeypatch)
    retained: list[int] = []
    retain = pycuda.Device.retain_primary_context

    def record(self: Any) -> Any:
        retained.append(self.n)
        return retain(self)

    monkeypatch.setattr(pycuda.Device, "retain_primary_context", record)
    layers = [PyCudaMemory(0), PyCudaMemory(1), PyCudaMemory(1)]
    try:
        assert retained == [0, 1]
        assert getattr(layers[1], "_ctx") is getattr(layers[2], "_ctx") is not getattr(layers[0], "_ctx")
    finally:
        for mem in layers:
            mem.close()


@pytest.mark.parametrize("name, key", [("Orin (nvgpu)", "orin-nvgpu-16sm-61g"), ("  NVIDIA H200  ", "nvidia-h200-16sm-61g"),
                                       ("", "gpu-16sm-61g"), ("(?)", "gpu-16sm-61g")])
def test_a_gpu_key_is_a_clean_file_name_part(name: str, key: str) -> None:
    """The GPU's key goes into engine file names: lower case, runs of other characters one dash, none at either
    end, and "gpu" for a name with nothing usable in it."""
    # kills: `.strip("-")` dropped; the `or "gpu"` fallback dropped
    from fsrfer_edge.backends.cuda_memory import DeviceIdentity

    assert DeviceIdentity("8.7", name, 16, 61).key == key


def test_a_gpu_pycuda_cannot_describe_is_an_engine_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """pycuda failing to read the multiprocessor count (a driver error) is EngineError naming the device (the error the
    backend's callers catch), not pycuda's own exception type."""
    # kills: device_identity letting pycuda.driver.Error through
    _, _, pycuda = _install(monkeypatch)

    def fail(self: Any, attr: Any) -> int:
        raise pycuda.Error("cuDeviceGetAttribute failed: unknown error")

    monkeypatch.setattr(pycuda.Device, "get_attribute", fail)
    mem = PyCudaMemory(0)
    try:
        with pytest.raises(EngineError, match="pycuda could not describe CUDA device 0: cuDeviceGetAttribute failed"):
            mem.device_identity()
    finally:
        mem.close()


def test_a_freed_pycuda_stream_is_destroyed_though_the_caller_keeps_its_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """free(stream) drops the layer's reference to the pycuda Stream, so pycuda destroys it (cuStreamDestroy) then,
    not when the caller's CudaStream record happens to be collected."""
    # kills: PyCudaMemory.free leaving the Stream on the CudaStream
    import gc

    _, _, pycuda = _install(monkeypatch)
    mem = PyCudaMemory(0)
    try:
        stream = mem.create_stream()
        live = pycuda.state["gpu"].streams
        assert stream.ptr in live
        mem.free(stream)
        gc.collect()
        assert stream.ptr not in live
    finally:
        mem.close()


def test_the_thread_gets_back_the_device_it_had_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread working on GPU 1 (PyTorch, another backend) that runs a layer of GPU 0 is on GPU 1 again after the
    block, not on GPU 0 nor on a device picked by default."""
    # kills: the device restored after a context() being 0 instead of the thread's previous one
    _, cudart, _ = _install(monkeypatch)
    mem = CudaPythonMemory(0)
    try:
        cudart.current = 1
        with mem.context():
            assert cudart.current == 0
        assert cudart.current == 1
    finally:
        mem.close()


def test_auto_names_the_gpu_no_layer_could_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """select_memory("auto", 3) where cuda-python cannot set device 3 and pycuda cannot initialise: the EngineError
    names GPU 3 and each layer's failure."""
    # kills: the message naming GPU 0 instead of the device asked for
    _install(monkeypatch, pycuda=make_fake_pycuda(init_error=True))
    with pytest.raises(EngineError, match=r"no CUDA memory layer could use GPU 3: cuda-python: .*\| pycuda: "):
        cuda_memory.select_memory("auto", 3)
