"""Version-faithful fake ``tensorrt`` modules: 8.5.2 (JetPack 5), 8.6, 10.3 (JetPack 6) and 11.x.

Each fake has the API surface of its version, as the TensorRT sources show it (NVIDIA/TensorRT
``python/src/infer/pyCore.cpp`` and ``python/packaging/.../tensorrt/__init__.py`` at tags 8.5.2,
v8.6.1, v10.3.0 and v11.1; see docs/tensorrt.md):

- 8.5.1/8.5.2: ``nptype`` builds its table with ``np.bool``, which NumPy 1.24-1.26 lack (JetPack 5
  resolves ``numpy>=1.22`` to 1.24 on Python 3.8): by default the fake sees such a NumPy, so
  ``nptype`` raises AttributeError for every type, as there. Implicit batch still exists
  (``Builder.max_batch_size``) and the ONNX parser refuses networks without EXPLICIT_BATCH. The
  binding-index API exists beside the named-tensor API. No STRONGLY_TYPED.
- 8.6: ``nptype`` fixed (``np.bool_``), otherwise as 8.5.
- 10.3: no implicit batch, no binding API; STRONGLY_TYPED exists, and a strongly typed network
  refuses the FP16/INT8 builder flags at build time; INT64 and BF16 types.
- 11.x: no FP16/INT8 builder flags at all, no EXPLICIT_BATCH flag; networks are strongly typed.

Common to all: TF32 is on by default in a new builder config; ``create_timing_cache`` returns
None for a cache written by another version; a plan deserialises only in the version that built it.
The fake ONNX parser loads the file with ``onnx`` and refuses what the real parser refuses for
these models: operators missing from onnx-tensorrt's table for the version, opsets above its
limit, DequantizeLinear of a non-INT8 tensor (an INT32 bias: "only activation types allowed as
input to this layer", onnx-tensorrt#850) and non-zero zero points.

Engines compute :func:`fake_logits` of their input, so results can be checked end to end. Their work is
queued on the CUDA stream given to ``execute_async_v3`` (and 8.x's ``execute_async_v2``), a stream of
the fake CUDA layers in :mod:`.cuda`, and runs when that stream is synchronised, as on a GPU.
"""
from __future__ import annotations

import ctypes
import enum
import json
import sys
import types
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .cuda import launch

VERSIONS = ("8.5.2.2", "8.6.1.6", "10.3.0.26", "11.1.0.10")
_TABLES = Path(__file__).resolve().parents[2] / "fsrfer_edge" / "export" / "trt_ops"


def install(monkeypatch: Any, trt: types.ModuleType, cudart: Any, pycuda: types.ModuleType) -> None:
    """Put the fakes where the backend finds them, for one test (``monkeypatch``: pytest's fixture): ``trt`` as the
    ``tensorrt`` module, ``pycuda`` as ``pycuda.driver``, and ``cudart`` as what cuda-python's import gives."""
    from fsrfer_edge.backends import cuda_memory

    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    pkg = types.ModuleType("pycuda")
    pkg.driver = pycuda  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", pycuda)
    monkeypatch.setattr(cuda_memory, "import_cudart", lambda: cudart)


def fake_logits(x: np.ndarray, classes: int = 7) -> np.ndarray:
    """What the fake engines compute: logits from per-sample statistics."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    return (flat.mean(1, keepdims=True) * np.arange(1, classes + 1)
            + flat.std(1, keepdims=True) * np.arange(classes)[::-1]).astype(np.float32)


def numpy_without_bool() -> types.ModuleType:
    """A view of NumPy as 1.24-1.26 are: no ``np.bool`` alias (removed in 1.24, back in 2.0)."""
    view = types.ModuleType("numpy")
    for name in dir(np):
        if name != "bool":
            setattr(view, name, getattr(np, name))
    return view


def _major_minor(version: str) -> tuple[int, int]:
    parts = version.split(".")
    return int(parts[0]), int(parts[1])


def make_tensorrt(version: str = "10.3.0.26", numpy_module: Optional[types.ModuleType] = None) -> types.ModuleType:
    """A fake ``tensorrt`` module of ``version`` (see the module docstring for what differs).

    ``numpy_module``: the NumPy ``nptype`` sees (default: one without ``np.bool`` for 8.5.1/8.5.2,
    as on JetPack 5; the real NumPy otherwise).
    """
    major, minor = _major_minor(version)
    v85 = (major, minor) == (8, 5)
    old_nptype = v85 and version.split(".")[2] in ("0", "1", "2")
    npmod = numpy_module if numpy_module is not None else (numpy_without_bool() if old_nptype else np)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version  # type: ignore[attr-defined]
    log: dict[str, list[Any]] = {"deserialized": [], "built": [], "parse_errors": [], "network_flags": []}
    trt.log = log  # type: ignore[attr-defined]

    members = ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8"] + (["FP8", "BF16", "INT64", "INT4"] if major >= 10 else [])
    DataType = enum.Enum("DataType", {m: i for i, m in enumerate(members)})  # type: ignore[misc]
    trt.DataType = DataType  # type: ignore[attr-defined]
    trt.float32, trt.float16, trt.int8 = DataType.FLOAT, DataType.HALF, DataType.INT8  # type: ignore[attr-defined]
    trt.int32, trt.bool, trt.uint8 = DataType.INT32, DataType.BOOL, DataType.UINT8  # type: ignore[attr-defined]

    def nptype(trt_type: Any) -> Any:
        # The table is built on every call, as in the real __init__.py; 8.5.1/8.5.2 name np.bool.
        mapping = {DataType.FLOAT: npmod.float32, DataType.HALF: npmod.float16, DataType.INT8: npmod.int8,
                   DataType.INT32: npmod.int32, DataType.BOOL: npmod.bool if old_nptype else npmod.bool_,
                   DataType.UINT8: npmod.uint8}
        if major >= 10:
            mapping[DataType.INT64] = npmod.int64
        if trt_type in mapping:
            return mapping[trt_type]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    trt.nptype = nptype  # type: ignore[attr-defined]

    class TensorIOMode(enum.Enum):
        NONE = 0
        INPUT = 1
        OUTPUT = 2

    trt.TensorIOMode = TensorIOMode  # type: ignore[attr-defined]

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self, severity: int = 2) -> None:
            self.severity = severity

    trt.Logger = Logger  # type: ignore[attr-defined]
    trt.ILogger = Logger  # type: ignore[attr-defined]

    flags = ["TF32", "DEBUG", "GPU_FALLBACK", "REFIT"] + ([] if major >= 11 else ["FP16", "INT8"]) + (
        ["BF16"] if major == 10 else [])
    BuilderFlag = enum.Enum("BuilderFlag", {f: i for i, f in enumerate(flags)})  # type: ignore[misc]
    trt.BuilderFlag = BuilderFlag  # type: ignore[attr-defined]
    creation = (["EXPLICIT_BATCH", "EXPLICIT_PRECISION"] if major == 8 else
                ["EXPLICIT_BATCH", "STRONGLY_TYPED"] if major == 10 else ["STRONGLY_TYPED"])
    trt.NetworkDefinitionCreationFlag = enum.IntEnum(  # type: ignore[attr-defined]
        "NetworkDefinitionCreationFlag", {f: i for i, f in enumerate(creation)})
    trt.MemoryPoolType = enum.Enum("MemoryPoolType", {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1})  # type: ignore[attr-defined]
    trt.Dims = lambda shape: tuple(int(d) for d in shape)  # type: ignore[attr-defined]
    header = f"timing-cache/{version}/".encode()

    class ITimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return header + b"entries"

    class IBuilderConfig:
        def __init__(self) -> None:
            self.flags = {BuilderFlag.TF32}  # TensorRT enables TF32 by default
            self.pool: dict[Any, int] = {}
            self.profiles: list[Any] = []
            self.timing_cache: Optional[ITimingCache] = None
            if major >= 10:
                self.progress_monitor: Optional[IProgressMonitor] = None

        def set_flag(self, flag: Any) -> None:
            self.flags.add(flag)

        def clear_flag(self, flag: Any) -> None:
            self.flags.discard(flag)

        def get_flag(self, flag: Any) -> bool:
            return flag in self.flags

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            self.pool[pool] = size

        def add_optimization_profile(self, profile: Any) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data: bytes) -> Optional[ITimingCache]:
            data = bytes(data)
            if data and not data.startswith(header):
                return None  # a cache of another TensorRT version: nullptr -> None
            return ITimingCache(data)

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            if cache is None:  # pybind11 would raise TypeError: incompatible function arguments
                raise TypeError("set_timing_cache(): incompatible function arguments; got None for cache")
            self.timing_cache = cache
            return True

        def get_timing_cache(self) -> Optional[ITimingCache]:
            return self.timing_cache

    class IProgressMonitor:  # 10.0+: the builder reports its phases to it
        def __init__(self) -> None:
            pass

    if major >= 10:
        trt.IProgressMonitor = IProgressMonitor  # type: ignore[attr-defined]

    class IOptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[Any, Any, Any]] = {}

        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class _Tensor:
        def __init__(self, name: str, dtype: Any) -> None:
            self.name, self.dtype = name, dtype

    class INetworkDefinition:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[_Tensor] = []
            self.outputs: list[_Tensor] = []
            self.precisions: set[str] = set()

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, i: int) -> _Tensor:
            return self.inputs[i]

        def _has(self, name: str) -> bool:
            flag = getattr(trt.NetworkDefinitionCreationFlag, name, None)
            return flag is not None and bool(self.flags & (1 << int(flag)))

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            log["network_flags"].append(flags)
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> Optional[bytes]:
            strong = major >= 11 or network._has("STRONGLY_TYPED")
            set_flags = sorted(f.name for f in config.flags)
            if strong and ({"FP16", "INT8"} & set(set_flags)):
                return None  # "FP16/INT8 flags are not allowed for strongly typed networks"
            if not config.profiles:
                return None
            monitor = getattr(config, "progress_monitor", None)
            if monitor is not None:
                monitor.phase_start("Building engine", None, 20)
                for step in range(20):
                    if not monitor.step_complete("Building engine", step):
                        return None
                monitor.phase_finish("Building engine")
            (name, (lo, opt, hi)), = config.profiles[0].shapes.items()
            spec = {"trt": version, "input": name, "input_dtype": network.inputs[0].dtype,
                    "outputs": [t.name for t in network.outputs], "min": lo[0], "opt": opt[0], "max": hi[0],
                    "chw": list(lo[1:]), "classes": network.outputs[0].classes if network.outputs else 7,
                    "flags": set_flags, "strongly_typed": strong, "precisions": sorted(network.precisions)}
            log["built"].append(spec)
            return json.dumps(spec).encode()

    if major == 8:
        Builder.max_batch_size = 1  # type: ignore[attr-defined]  # implicit batch still exists
    trt.Builder = Builder  # type: ignore[attr-defined]
    trt.IBuilderConfig = IBuilderConfig  # type: ignore[attr-defined]

    table_name = "tensorrt-8.5" if major == 8 else "tensorrt-10.1"
    table = json.loads((_TABLES / f"{table_name}.json").read_text())

    class OnnxParser:
        def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
            self.network, self.errors = network, []  # type: ignore[var-annotated]

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> str:
            return self.errors[i]

        def parse(self, data: bytes) -> bool:
            import onnx
            from onnx import numpy_helper

            self.errors = _parse_errors(self.network, onnx.load_from_string(bytes(data)), numpy_helper)
            log["parse_errors"].extend(self.errors)
            return not self.errors

    def _parse_errors(network: INetworkDefinition, model: Any, numpy_helper: Any) -> list[str]:
        errors = []
        if major == 8 and not network._has("EXPLICIT_BATCH"):
            return ["The ONNX parser only supports networks with an explicit batch dimension"]
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        if opset > table["opset"]["max"]:
            errors.append(f"Unsupported ONNX opset {opset}")
        inits = {t.name: t for t in model.graph.initializer}
        for node in model.graph.node:
            entry = table["operators"].get(node.op_type)
            if entry is None or not entry["supported"]:
                errors.append(f"No importer registered for op: {node.op_type}")
            elif node.op_type == "DequantizeLinear":
                src = inits.get(node.input[0])
                if src is not None and src.data_type != 3:  # not INT8
                    errors.append(f"Invalid Node - {node.name}: only activation types allowed as input to this layer.")
                zp = inits.get(node.input[2]) if len(node.input) > 2 else None
                if zp is not None and np.any(numpy_helper.to_array(zp) != 0):
                    errors.append(f"Invalid Node - {node.name}: TRT only supports symmetric quantization - zeroPt must be all zeros")
                network.precisions.add("int8")
            elif node.op_type == "QuantizeLinear":
                zp = inits.get(node.input[2]) if len(node.input) > 2 else None
                if zp is not None and zp.data_type != 3:
                    errors.append(f"Invalid Node - {node.name}: QuantizeLinear to UINT8 is not supported")
        types_ = {1: DataType.FLOAT.name, 2: DataType.UINT8.name, 10: DataType.HALF.name}
        for i in model.graph.input:
            network.inputs.append(_Tensor(i.name, types_.get(i.type.tensor_type.elem_type, "FLOAT")))
        for o in model.graph.output:
            t = _Tensor(o.name, "FLOAT")
            dims = o.type.tensor_type.shape.dim
            t.classes = int(dims[1].dim_value) if len(dims) == 2 and dims[1].dim_value else 7  # type: ignore[attr-defined]
            network.outputs.append(t)
        return errors

    trt.OnnxParser = OnnxParser  # type: ignore[attr-defined]

    # -- runtime -------------------------------------------------------------------------------
    def run(spec: dict[str, Any], n: int, in_ptr: int, out_ptr: int) -> bool:
        dt = np.dtype({"FLOAT": "float32", "UINT8": "uint8", "HALF": "float16"}[spec["input_dtype"]])
        c, h, w = spec["chw"]
        x = np.frombuffer(ctypes.string_at(in_ptr, n * c * h * w * dt.itemsize), dtype=dt).reshape(n, c, h, w)
        y = fake_logits(x, spec["classes"])
        ctypes.memmove(out_ptr, y.ctypes.data, y.nbytes)
        return True

    def enqueue(spec: dict[str, Any], n: int, in_ptr: int, out_ptr: int, stream_handle: int) -> bool:
        """Queue the engine's work on its CUDA stream (enqueueV3): it runs when the stream gets to it, after the
        copies queued before it, so it reads the input as it is then. False for a handle that is no fake stream."""
        def kernel() -> None:
            run(spec, n, in_ptr, out_ptr)

        return launch(stream_handle, kernel)

    class IExecutionContext:
        def __init__(self, spec: dict[str, Any]) -> None:
            self.spec, self.addr, self.n = spec, {}, None  # type: ignore[var-annotated]

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            ok = name == self.spec["input"] and self.spec["min"] <= shape[0] <= self.spec["max"]
            self.n = shape[0] if ok else None
            return ok

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addr[name] = int(ptr)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            assert isinstance(stream_handle, int)
            missing = [t for t in [self.spec["input"]] + self.spec["outputs"] if t not in self.addr]
            if missing or self.n is None:
                return False  # "Address is not set for output tensor ..." in the real log
            return enqueue(self.spec, self.n, self.addr[self.spec["input"]], self.addr[self.spec["outputs"][0]],
                           stream_handle)

        if major == 8:  # the binding-index API beside the named one; removed in 10.0
            def set_binding_shape(self, binding: int, shape: tuple[int, ...]) -> bool:
                return binding == 0 and self.set_input_shape(self.spec["input"], shape)

            def execute_async_v2(self, bindings: list[int], stream_handle: int) -> bool:
                assert isinstance(stream_handle, int)
                if self.n is None or len(bindings) != 1 + len(self.spec["outputs"]) or not all(bindings):
                    return False
                return enqueue(self.spec, self.n, int(bindings[0]), int(bindings[1]), stream_handle)

    class ICudaEngine:
        def __init__(self, spec: dict[str, Any]) -> None:
            self.spec = spec
            self.names = [spec["input"]] + spec["outputs"]
            self.num_io_tensors = len(self.names)
            self.num_optimization_profiles = 1

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            return TensorIOMode.INPUT if name == self.spec["input"] else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> Any:
            return DataType[self.spec["input_dtype"]] if name == self.spec["input"] else DataType.FLOAT

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return (-1, *self.spec["chw"]) if name == self.spec["input"] else (-1, self.spec["classes"])

        def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
            chw = tuple(self.spec["chw"])
            return [(self.spec["min"], *chw), (self.spec["opt"], *chw), (self.spec["max"], *chw)]

        def create_execution_context(self) -> IExecutionContext:
            return IExecutionContext(self.spec)

    if major == 8:  # the binding-index API, removed in 10.0
        ICudaEngine.num_bindings = property(lambda self: len(self.names))  # type: ignore[attr-defined]
        ICudaEngine.get_binding_name = lambda self, i: self.names[i]  # type: ignore[attr-defined]
        ICudaEngine.binding_is_input = lambda self, i: i == 0  # type: ignore[attr-defined]
        for api, named in (("get_binding_dtype", "get_tensor_dtype"), ("get_binding_shape", "get_tensor_shape")):
            setattr(ICudaEngine, api, lambda self, i, named=named: getattr(self, named)(self.names[i]))
        ICudaEngine.get_profile_shape = (  # type: ignore[attr-defined]
            lambda self, profile, i: self.get_tensor_profile_shape(self.names[i], profile))

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> Optional[ICudaEngine]:
            log["deserialized"].append(bytes(data))
            try:
                spec = json.loads(bytes(data))
            except ValueError:
                return None
            if spec.get("trt") != version:
                return None  # "The engine plan file is not compatible with this version of TensorRT"
            return ICudaEngine(spec)

    trt.Runtime = Runtime  # type: ignore[attr-defined]
    trt.ICudaEngine = ICudaEngine  # type: ignore[attr-defined]
    trt.IExecutionContext = IExecutionContext  # type: ignore[attr-defined]
    return trt
