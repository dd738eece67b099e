"""Hand-made mutation test 67c: a second pass over the code only a GPU runs (the TensorRT backend, its CUDA memory
layer and the engine builder), against the asynchronous fakes in tests/fake_trt.

Each test kills a mutant that the rest of the fake-GPU tests (round 65d included) let through: the GPU identity the
two memory layers give, the copy-size check, pinned allocations covering their array, a refused buffer address,
binding indices of an engine with several optimisation profiles, the optimisation profile's opt batch, the builder's
workspace limit (and none), every parser error listed, type stubs taken for TensorRT, and a rebuild after an
unreadable engine with the pycuda layer.
"""
from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.backends import cuda_memory
from fsrfer_edge.backends.cuda_memory import CudaPythonMemory, PyCudaMemory
from fsrfer_edge.errors import EngineError, InputError

try:
    from .fake_trt import fake_logits, install, make_tensorrt
    from .fake_trt.cuda import FakeCudart, make_fake_pycuda
except ImportError:
    from fake_trt import fake_logits, install, make_tensorrt  # type: ignore[no-redef]
    from fake_trt.cuda import FakeCudart, make_fake_pycuda  # type: ignore[no-redef]

from test_mutants65d import VERSION, _engine, _faces, _tiny_onnx  # the fake engine and tiny model of round 65d


def _install(monkeypatch: pytest.MonkeyPatch, version: str = VERSION, cudart: Any = None,
             pycuda: Any = None) -> tuple[types.ModuleType, FakeCudart, types.ModuleType]:
    trt = make_tensorrt(version)
    cudart = cudart if cudart is not None else FakeCudart()
    pycuda = pycuda if pycuda is not None else make_fake_pycuda()
    install(monkeypatch, trt, cudart, pycuda)
    return trt, cudart, pycuda


# ---------------------------------------------------------------------------------------------
# cuda_memory
# ---------------------------------------------------------------------------------------------
def test_both_memory_layers_give_one_gpu_the_same_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine built through one layer (cuda-python, auto's first choice) must be found again through the other
    (pycuda on a JetPack image): the GPU's name, SMs and memory rounded to GiB agree, for a board whose memory is
    not a whole number of GiB (an Orin Nano 8 GB reports about 7.6 GiB: 8g, not 7g)."""
    memory = int(7.6 * 2**30)
    _install(monkeypatch, cudart=FakeCudart(name="Orin", sms=8, memory=memory),
             pycuda=make_fake_pycuda(name="Orin", sms=8, memory=memory))
    a, b = CudaPythonMemory(0), PyCudaMemory(0)
    try:
        ida, idb = a.device_identity(), b.device_identity()
    finally:
        a.close()
        b.close()
    assert ida == idb
    assert (ida.name, ida.key) == ("Orin", "orin-8sm-8g")


@pytest.mark.parametrize("cls", [CudaPythonMemory, PyCudaMemory])
def test_a_copy_one_byte_larger_than_the_device_buffer_is_refused(monkeypatch: pytest.MonkeyPatch, cls: type) -> None:
    """A host array one byte larger than the device buffer would write past its end: an InputError, before CUDA."""
    _install(monkeypatch)
    mem = cls(0)
    try:
        dev, stream = mem.alloc_device(16), mem.create_stream()
        with pytest.raises(InputError, match="17 bytes does not fit the 16-byte"):
            mem.htod_async(dev, np.zeros(17, np.uint8), stream)
        with pytest.raises(InputError, match="17 bytes does not fit the 16-byte"):
            mem.dtoh_async(np.zeros(17, np.uint8), dev, stream)
        mem.htod_async(dev, np.full(16, 3, np.uint8), stream)  # exactly the buffer's size is fine
        mem.synchronize(stream)
        mem.free(dev)
        mem.free(stream)
    finally:
        mem.close()


def test_a_pinned_array_lies_wholly_in_page_locked_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """CudaPythonMemory.alloc_host asks cudaMallocHost for all the array's bytes: a smaller allocation would leave
    the array's tail in memory CUDA never gave (writes there corrupt the heap; copies from it are not async)."""
    cudart = FakeCudart()
    monkeypatch.setattr(cuda_memory, "import_cudart", lambda: cudart)
    mem = CudaPythonMemory(0)
    try:
        arr = mem.alloc_host((4, 7), np.float32)
        start = int(arr.ctypes.data)
        sizes = {p: len(b) for p, b in cudart.host.items()}
        assert start in sizes and sizes[start] >= arr.nbytes
        mem.free(arr)
    finally:
        mem.close()


# ---------------------------------------------------------------------------------------------
# tensorrt_backend
# ---------------------------------------------------------------------------------------------
def test_a_refused_output_address_fails_the_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorRT refusing the output buffer's address (set_tensor_address returns False) is an EngineError when
    the engine is loaded, not a backend that loads and then writes its results nowhere."""
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    trt, cudart, _ = _install(monkeypatch)
    accept = trt.IExecutionContext.set_tensor_address

    def refuse_output(self: Any, name: str, ptr: int) -> bool:
        return False if name == "logits" else bool(accept(self, name, ptr))

    monkeypatch.setattr(trt.IExecutionContext, "set_tensor_address", refuse_output)
    with pytest.raises(EngineError, match="refused the buffer addresses"):
        TensorRTBackend(_engine(tmp_path / "m.engine"), memory="cuda-python")
    assert not cudart.device and not cudart.host  # what the load allocated is freed


@pytest.mark.parametrize("version", ["8.5.2.2", "8.6.1.6"])
def test_an_engine_with_two_profiles_runs_through_the_binding_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 version: str) -> None:
    """With the binding API an engine of two optimisation profiles has each tensor twice (``logits [profile 1]``);
    only profile 0's bindings are the engine's inputs and outputs, so it loads and runs."""
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    trt, _, _ = _install(monkeypatch, version)
    monkeypatch.delattr(trt.IExecutionContext, "execute_async_v3")  # the binding API, as before 8.5
    engine_cls = trt.ICudaEngine
    monkeypatch.setattr(engine_cls, "num_bindings", property(lambda self: 2 * len(self.names)))
    monkeypatch.setattr(engine_cls, "get_binding_name", lambda self, i: self.names[i % len(self.names)] + (
        f" [profile {i // len(self.names)}]" if i >= len(self.names) else ""))
    monkeypatch.setattr(engine_cls, "binding_is_input", lambda self, i: i % len(self.names) == 0)
    init = engine_cls.__init__

    def two_profiles(self: Any, spec: dict[str, Any]) -> None:
        init(self, spec)
        self.num_optimization_profiles = 2

    monkeypatch.setattr(engine_cls, "__init__", two_profiles)
    with TensorRTBackend(_engine(tmp_path / "m.engine", version=version), memory="cuda-python") as be:
        assert not getattr(be, "_io").named_api
        x = _faces(3, 7)
        np.testing.assert_allclose(be.infer(x), fake_logits(x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# export/engine: what the builder is asked for
# ---------------------------------------------------------------------------------------------
def test_the_profile_tunes_for_the_opt_batch_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """build_engine(min=1, opt=2, max=4) gives TensorRT the profile (1, 2, 4): it tunes its kernels for opt."""
    from fsrfer_edge.export import engine

    trt, _, _ = _install(monkeypatch)
    engine.build_engine(_tiny_onnx(tmp_path / "tiny.onnx", "fp16"), tmp_path / "engines", 1, 2, 4)
    built = trt.log["built"][-1]
    assert (built["min"], built["opt"], built["max"]) == (1, 2, 4)


def test_the_workspace_limit_is_given_in_mebibytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """workspace_mb=256 limits TensorRT's workspace pool to 256 MiB (268435456 bytes), as the sidecar records;
    None leaves TensorRT's default (no limit set)."""
    from fsrfer_edge import engine_cache
    from fsrfer_edge.export import engine

    trt, _, _ = _install(monkeypatch)
    limits: list[tuple[str, int]] = []
    set_limit = trt.IBuilderConfig.set_memory_pool_limit

    def record(self: Any, pool: Any, size: int) -> None:
        limits.append((pool.name, int(size)))
        set_limit(self, pool, size)

    monkeypatch.setattr(trt.IBuilderConfig, "set_memory_pool_limit", record)
    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx", "fp16")
    out = engine.build_engine(onnx_path, tmp_path / "a", 1, 2, 4, workspace_mb=256)
    assert limits == [("WORKSPACE", 256 * 2**20)]
    assert json.loads(engine_cache.sidecar_path(out).read_text())["workspace_mb"] == 256  # the build's record
    engine.build_engine(onnx_path, tmp_path / "b", 1, 2, 4, workspace_mb=None)
    assert limits == [("WORKSPACE", 256 * 2**20)] and len(trt.log["built"]) == 2


def test_every_parser_error_is_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file with two operators TensorRT's parser has no importer for names both, not only the first."""
    from fsrfer_edge.export import engine

    helper = pytest.importorskip("onnx.helper")
    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx", "fp16",
                           extra_nodes=(helper.make_node("Det", ["w"], ["d"], name="det"),
                                        helper.make_node("Bogus", ["w"], ["e"], name="b")))
    _install(monkeypatch)
    with pytest.raises(EngineError, match="op: Det; No importer registered for op: Bogus"):
        engine.build_engine(onnx_path, tmp_path / "engines", 1, 2, 4)


def test_the_builder_refuses_a_tensorrt_of_type_stubs_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tensorrt-stubs alone makes ``import tensorrt`` succeed as an empty namespace: the builder says TensorRT is
    missing and where to build (BackendUnavailable), instead of failing later with an AttributeError."""
    import sys

    from fsrfer_edge.errors import BackendUnavailable
    from fsrfer_edge.export import engine

    stubs = types.ModuleType("tensorrt")
    stubs.__path__ = [str(tmp_path / "tensorrt")]
    monkeypatch.setitem(sys.modules, "tensorrt", stubs)
    with pytest.raises(BackendUnavailable, match="only type stubs"):
        engine.import_tensorrt(tmp_path / "face.onnx")


def test_first_use_rebuilds_an_unreadable_engine_with_the_pycuda_layer(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """for_onnx(memory="pycuda", build=True) finds an engine whose sidecar checks pass but which TensorRT cannot
    deserialise (another build of the same version): the failed load closes its memory layer, and the engine built
    in its place is loaded with a new one, not with the closed layer."""
    from fsrfer_edge import engine_cache
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend
    from fsrfer_edge.fileio import sha256_file

    trt, _, _ = _install(monkeypatch)
    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx", precision="fp16")
    cache = tmp_path / "cache"
    with TensorRTBackend.for_onnx(onnx_path, memory="pycuda", build=True, cache_dir=cache) as be:
        engine_file = getattr(be, "path")
    spec = json.loads(engine_file.read_bytes())
    engine_file.write_bytes(json.dumps({**spec, "trt": VERSION + "+cuda13"}).encode())
    doc = json.loads(engine_cache.sidecar_path(engine_file).read_text())
    doc["engine_sha256"] = sha256_file(engine_file)
    engine_cache.sidecar_path(engine_file).write_text(json.dumps(doc))
    with TensorRTBackend.for_onnx(onnx_path, memory="pycuda", build=True, cache_dir=cache) as be:
        x = _faces(2, 8)
        np.testing.assert_allclose(be.infer(x), fake_logits(x), rtol=1e-5, atol=1e-5)
    assert len(trt.log["built"]) == 2

