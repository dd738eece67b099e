"""Build (or reuse) a TensorRT engine from an fsrfer ONNX file, on the device that will run it.

Precision is read from the ONNX metadata, never chosen here: ``fp16`` files enable FP16 kernels,
``int8`` files are Q/DQ graphs (explicit quantization; TensorRT never calibrates). Only the
symmetric ``s8s8`` INT8 file is accepted; the ``u8s8`` file is for ONNX Runtime CPU.

One code path serves TensorRT 8.5 (JetPack 5), 10.x and 11.x: every API difference is detected
with ``hasattr`` (explicit-batch flag, workspace limit, weak-typing precision flags, timing cache,
serialized build), never by comparing version strings.

Engines are named and checked with :mod:`fsrfer_edge.engine_cache`; a valid cached engine is
reused, a stale or foreign one is rebuilt.
"""
from __future__ import annotations

import importlib
import logging
import os
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional, Protocol, Union, cast

from .. import engine_cache
from ..engine_cache import EngineKey
from ..errors import BackendUnavailable, EngineError, ModelError
from ..fileio import atomic_write_bytes, sha256_file
from ..metadata import ModelInfo

if TYPE_CHECKING:  # pragma: no cover  # types from tensorrt-stubs (10.x); see scripts/prepare_trt_stubs.py
    import tensorrt as trt

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
DEFAULT_WORKSPACE_MB = 1024
#: File-name parts that name a variant's precision; stripped from the engine's model stem.
_VARIANT_SUFFIXES = (".fp32", ".fp16", ".int8-s8s8", ".int8-u8s8", ".int8")


def _no_tensorrt(why: str) -> BackendUnavailable:
    return BackendUnavailable(
        f"TensorRT is not installed here ({why}). Engines are tied to the GPU and TensorRT version that "
        "build them, so build on the device that runs them: copy MODEL.onnx to the Jetson/GPU machine "
        "(TensorRT comes with JetPack there, or pip install tensorrt on a desktop GPU) and run "
        "`fsrfer-export --engine MODEL.onnx` on it"
    )


def import_tensorrt() -> ModuleType:
    """Import TensorRT, or raise BackendUnavailable telling where to build instead.

    The builder's helpers import ``tensorrt`` themselves (so mypy checks their calls against the
    stubs); :func:`build_engine` calls this first, so those imports never fail.

    Raises:
        BackendUnavailable: TensorRT is missing (type stubs alone, e.g. ``tensorrt-stubs``, make
            ``import tensorrt`` succeed as an empty namespace package; they count as missing).
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise _no_tensorrt(f"import tensorrt failed: {exc}") from exc
    if not hasattr(trt, "Builder"):
        raise _no_tensorrt("only type stubs or an empty 'tensorrt' package were found")
    return trt


def compute_capability(device: int = 0) -> str:
    """The GPU's compute capability as ``"major.minor"`` (e.g. ``"8.7"`` on Jetson Orin).

    Uses the runtime's CUDA layer (``fsrfer_edge.backends.cuda_memory``) when it is there, else a
    direct cuda-python (``cuda.bindings.runtime`` or ``cuda.cudart``) or pycuda call.

    Raises:
        BackendUnavailable: no CUDA Python binding is installed.
        EngineError: the CUDA call failed (no GPU, driver problem).
    """
    try:
        backend: Any = importlib.import_module("fsrfer_edge.backends.cuda_memory")
    except ImportError:
        backend = None
    if backend is not None and hasattr(backend, "select_memory"):
        memory = backend.select_memory("auto", device)
        try:
            return str(memory.device_compute_capability(device))
        finally:
            memory.close()
    return _cc_local(device)


def _cc_local(device: int) -> str:
    rt: Any = None
    try:
        from cuda.bindings import runtime as rt  # type: ignore[import-not-found,import-untyped,no-redef,unused-ignore]
    except ImportError:
        try:
            from cuda import cudart as rt  # type: ignore[import-not-found,import-untyped,no-redef,unused-ignore]
        except ImportError:
            rt = None
    if rt is not None:
        attrs = rt.cudaDeviceAttr
        err, major = rt.cudaDeviceGetAttribute(attrs.cudaDevAttrComputeCapabilityMajor, device)
        err2, minor = rt.cudaDeviceGetAttribute(attrs.cudaDevAttrComputeCapabilityMinor, device)
        if err != rt.cudaError_t.cudaSuccess or err2 != rt.cudaError_t.cudaSuccess:
            raise EngineError(f"CUDA could not report the compute capability of GPU {device} ({err}, {err2}); "
                              "is a GPU present and the driver loaded?")
        return f"{major}.{minor}"
    try:
        import pycuda.driver as drv  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError as exc:
        raise BackendUnavailable(
            "cuda-python or pycuda is needed to read the GPU's compute capability for the engine name; "
            "install one with: pip install 'fsrfer-edge[tensorrt]'") from exc
    drv.init()
    major, minor = drv.Device(device).compute_capability()
    return f"{major}.{minor}"


def model_stem(onnx_path: PathLike) -> str:
    """``face.int8-s8s8.onnx`` -> ``face`` (the precision goes into the engine name separately)."""
    name = Path(onnx_path).name
    stem = name[:-len(".onnx")] if name.endswith(".onnx") else Path(name).stem
    for suffix in _VARIANT_SUFFIXES:
        if stem.endswith(suffix):
            return stem[:-len(suffix)]
    return stem


def engine_path_for(onnx_path: PathLike, out_dir: PathLike, key: EngineKey) -> Path:
    return Path(out_dir) / key.filename(model_stem(onnx_path))


def _read_info(onnx_path: Path) -> ModelInfo:
    from .onnx_export import load_onnx, read_model_info
    from .quantize import scheme_of

    model = load_onnx(onnx_path)
    info = read_model_info(model)
    if info.precision == "int8":
        scheme = info.int8_scheme or scheme_of(model)
        if scheme != "s8s8" or scheme_of(model) != "s8s8":
            sibling = onnx_path.with_name(f"{model_stem(onnx_path)}.int8-s8s8.onnx")
            raise ModelError(
                f"{onnx_path.name} is an INT8 file of scheme {scheme!r} (asymmetric uint8 activations, made for "
                f"ONNX Runtime CPU); TensorRT needs symmetric int8 activations. Build the engine from the s8s8 "
                f"file instead: fsrfer-export --engine {sibling} (make it with --int8 --int8-target tensorrt)")
    return info


def build_engine(onnx_path: PathLike, out_dir: PathLike, min_batch: int = 1, opt_batch: int = 32,
                 max_batch: int = 128, workspace_mb: Optional[int] = DEFAULT_WORKSPACE_MB,
                 timing_cache: Optional[PathLike] = None, device: int = 0, force: bool = False) -> Path:
    """Build a TensorRT engine from an fsrfer ONNX file, or reuse a valid cached one.

    Args:
        onnx_path: an fsrfer ONNX file (fp32, fp16, or int8 of scheme s8s8).
        out_dir: where the engine and its JSON sidecar go.
        min_batch: smallest batch of the optimisation profile.
        opt_batch: the batch TensorRT tunes for.
        max_batch: largest batch.
        workspace_mb: builder workspace limit in MiB (None: TensorRT's default).
        timing_cache: a timing-cache file to load (if it exists) and save after the build.
        device: CUDA device index (for the compute capability in the engine name).
        force: rebuild even if a valid cached engine exists.

    Returns:
        The engine path (``EngineKey.filename``) in ``out_dir``.

    Raises:
        BackendUnavailable: TensorRT (or a CUDA binding) is not installed here.
        ModelError: the ONNX file is not an fsrfer model, or is a u8s8 INT8 file.
        EngineError: TensorRT cannot parse or build the network.
    """
    onnx_path = Path(onnx_path)
    info = _read_info(onnx_path)
    trt_version = str(import_tensorrt().__version__)
    key = EngineKey(trt_version, compute_capability(device), info.precision,
                    int(min_batch), int(opt_batch), int(max_batch))
    out = engine_path_for(onnx_path, out_dir, key)
    if out.exists() and not force:
        try:
            engine_cache.check_engine(out, key.tensorrt_version, key.compute_capability, onnx_path)
        except EngineError as exc:
            log.info("rebuilding %s: %s", out.name, exc)
        else:
            if engine_cache.read_sidecar(out)["key"] == key:
                log.info("cached: %s", out)
                return out
            log.info("rebuilding %s: its sidecar records another build configuration", out.name)
    t0 = time.perf_counter()
    plan = _build_serialized(onnx_path, info, key, workspace_mb, timing_cache)
    atomic_write_bytes(out, plan)
    engine_cache.write_sidecar(out, key, sha256_file(onnx_path), info,
                               extra={"onnx_file": onnx_path.name, "workspace_mb": workspace_mb,
                                      "build_seconds": round(time.perf_counter() - t0, 1)})
    log.info("built %s in %.1f s", out, time.perf_counter() - t0)
    return out


# ---------------------------------------------------------------------------------------------
# TensorRT specifics, each behind feature detection
# ---------------------------------------------------------------------------------------------


class _LegacyConfig(Protocol):
    """``IBuilderConfig`` before TensorRT 8.4 (``max_workspace_size``; removed in 10.0, not in the stubs)."""

    max_workspace_size: int


class _LegacyEngine(Protocol):
    def serialize(self) -> trt.IHostMemory: ...


class _LegacyBuilder(Protocol):
    """``Builder`` before TensorRT 8.0 (no ``build_serialized_network``; ``build_engine`` removed in 10.0)."""

    def build_engine(self, network: trt.INetworkDefinition,
                     config: trt.IBuilderConfig) -> Optional[_LegacyEngine]: ...


def _has_weak_typing_flag(name: str) -> bool:
    import tensorrt as trt

    return hasattr(trt.BuilderFlag, name)


def _strongly_typed(precision: str) -> bool:
    """Whether the network must be strongly typed (types taken from the file).

    TensorRT 11 removed the precision flags (FP16, INT8): networks are strongly typed, which is
    exactly "precision is a property of the file". Before that, weak typing with the flags lets
    the non-quantized layers of an INT8 file run in FP16.
    """
    if precision == "fp16":
        return not _has_weak_typing_flag("FP16")
    if precision == "int8":
        return not _has_weak_typing_flag("INT8")
    return False


def _network_flags(strongly_typed: bool) -> int:
    import tensorrt as trt

    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    # Implicit batch still exists (TensorRT <= 8.6, e.g. 8.5 on JetPack 5) while the builder has
    # max_batch_size: then explicit batch must be requested. From 10.x it is the only mode and
    # the flag is deprecated; 11.x may drop it.
    if hasattr(trt.Builder, "max_batch_size") and hasattr(creation, "EXPLICIT_BATCH"):
        flags |= 1 << int(creation.EXPLICIT_BATCH)
    if strongly_typed and hasattr(creation, "STRONGLY_TYPED"):
        flags |= 1 << int(creation.STRONGLY_TYPED)
    return flags


def _set_workspace(config: "trt.IBuilderConfig", workspace_mb: Optional[int]) -> None:
    import tensorrt as trt

    if workspace_mb is None:
        return
    size = int(workspace_mb) << 20
    if hasattr(config, "set_memory_pool_limit") and hasattr(trt, "MemoryPoolType"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, size)
    else:  # TensorRT < 8.4
        cast(_LegacyConfig, config).max_workspace_size = size


def _set_precision(config: "trt.IBuilderConfig", precision: str, strongly_typed: bool) -> list[str]:
    import tensorrt as trt

    if strongly_typed:
        return ["STRONGLY_TYPED"]
    names: list[str] = []
    if precision == "fp16":
        names = ["FP16"]
    elif precision == "int8":
        # A Q/DQ file: the INT8 flag enables explicit quantization; FP16 lets the layers left
        # unquantized run in half precision. No calibrator is ever set.
        names = ["INT8"] + (["FP16"] if _has_weak_typing_flag("FP16") else [])
    for name in names:
        config.set_flag(getattr(trt.BuilderFlag, name))
    return names


def _load_timing_cache(config: "trt.IBuilderConfig", path: Optional[PathLike]) -> bool:
    if path is None:
        return False
    if not hasattr(config, "create_timing_cache"):
        log.warning("this TensorRT has no timing cache API; ignoring --timing-cache %s", path)
        return False
    p = Path(path)
    data = p.read_bytes() if p.is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        log.warning("timing cache %s does not match this TensorRT/GPU; starting a new one", p)
        config.set_timing_cache(config.create_timing_cache(b""), False)
    log.info("timing cache: %s (%s)", p, "loaded" if data else "new")
    return True


def _save_timing_cache(config: "trt.IBuilderConfig", path: PathLike) -> None:
    cache: Optional[trt.ITimingCache] = config.get_timing_cache()  # None where there is none
    if cache is None:
        return
    atomic_write_bytes(Path(path), bytes(memoryview(cache.serialize())))
    log.info("saved timing cache %s", path)


def _parse(network: "trt.INetworkDefinition", logger: "trt.ILogger", onnx_path: Path) -> "trt.OnnxParser":
    import tensorrt as trt

    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    return parser


def _profile(builder: "trt.Builder", network: "trt.INetworkDefinition", info: ModelInfo,
             key: EngineKey) -> "trt.IOptimizationProfile":
    import tensorrt as trt

    if network.num_inputs != 1 or network.get_input(0).name != info.input_name:
        names = [network.get_input(i).name for i in range(network.num_inputs)]
        raise ModelError(f"network inputs {names}; expected exactly one input named {info.input_name!r}")
    pre = info.preprocessing
    chw = (pre.channels, pre.input_size, pre.input_size)
    profile = builder.create_optimization_profile()
    dims = [trt.Dims([b, *chw]) for b in (key.min_batch, key.opt_batch, key.max_batch)]
    profile.set_shape(info.input_name, dims[0], dims[1], dims[2])
    return profile


def _build_serialized(onnx_path: Path, info: ModelInfo, key: EngineKey, workspace_mb: Optional[int],
                      timing_cache: Optional[PathLike]) -> bytes:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = _strongly_typed(info.precision)
    network = builder.create_network(_network_flags(strongly_typed))
    log.info("parsing %s", onnx_path.name)
    parser = _parse(network, logger, onnx_path)
    config = builder.create_builder_config()
    _set_workspace(config, workspace_mb)
    flags = _set_precision(config, info.precision, strongly_typed)
    config.add_optimization_profile(_profile(builder, network, info, key))
    has_cache = _load_timing_cache(config, timing_cache)
    log.info("building %s engine (flags %s, batch %d-%d-%d); this takes a few minutes on a Jetson",
             info.precision, flags or ["none"], key.min_batch, key.opt_batch, key.max_batch)
    # The stubs say IHostMemory; TensorRT returns None when the build fails.
    plan: Optional[trt.IHostMemory]
    if hasattr(builder, "build_serialized_network"):
        plan = builder.build_serialized_network(network, config)
    else:  # TensorRT < 8.0
        engine = cast(_LegacyBuilder, builder).build_engine(network, config)
        plan = engine.serialize() if engine is not None else None
    del parser
    if plan is None:
        raise EngineError(f"TensorRT failed to build an engine from {onnx_path.name}; the log above says why")
    if has_cache and timing_cache is not None:
        _save_timing_cache(config, timing_cache)
    return bytes(memoryview(plan))
