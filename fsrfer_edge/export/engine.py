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

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Iterator, Optional, Protocol, Union, cast

from .. import engine_cache
from ..engine_cache import EngineKey, model_stem
from ..errors import BackendUnavailable, EngineError, ModelError
from ..fileio import atomic_write_bytes, file_problem, sha256_file
from ..metadata import ModelInfo

if TYPE_CHECKING:  # pragma: no cover  # types from tensorrt-stubs (10.x); see scripts/prepare_trt_stubs.py
    import tensorrt as trt

    from ..backends.cuda_memory import DeviceIdentity

__all__ = ["build_engine", "compute_capability", "engine_path_for", "first_use_source", "gpu_identity",
           "import_tensorrt", "model_stem"]

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
DEFAULT_WORKSPACE_MB = 1024


def _no_tensorrt(why: str, onnx: Optional[PathLike] = None) -> BackendUnavailable:
    name = Path(onnx).name if onnx is not None else "MODEL.onnx"
    return BackendUnavailable(
        f"TensorRT is not installed here ({why}). Engines are tied to the GPU and TensorRT version that "
        f"build them, so build on the device that runs them: copy {name} to the Jetson/GPU machine "
        "(TensorRT comes with JetPack there, or pip install tensorrt on a desktop GPU) and run "
        f"`fsrfer-export --engine {name}` on it"
    )


def import_tensorrt(onnx: Optional[PathLike] = None) -> ModuleType:
    """Import TensorRT, or raise BackendUnavailable telling where to build instead.

    The builder's helpers import ``tensorrt`` themselves (so mypy checks their calls against the
    stubs); :func:`build_engine` calls this first, so those imports never fail.

    Args:
        onnx: the ONNX file an engine is wanted for, named in the message (default: a placeholder).

    Raises:
        BackendUnavailable: TensorRT is missing (type stubs alone, e.g. ``tensorrt-stubs``, make
            ``import tensorrt`` succeed as an empty namespace package; they count as missing).
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise _no_tensorrt(f"import tensorrt failed: {exc}", onnx) from exc
    if not hasattr(trt, "Builder"):
        raise _no_tensorrt("only type stubs or an empty 'tensorrt' package were found", onnx)
    return trt


def gpu_identity(device: int = 0) -> "DeviceIdentity":
    """Compute capability, name, multiprocessors and memory of GPU ``device`` (for the engine key).

    Goes through the runtime's CUDA layer, so a cuda-python that imports but cannot talk to the
    driver falls back to pycuda exactly as at run time.

    Raises:
        BackendUnavailable: no CUDA Python binding is installed.
        EngineError: every installed binding failed (no GPU, driver problem).
    """
    with on_device(device) as gpu:
        return gpu


@contextlib.contextmanager
def on_device(device: int = 0) -> Iterator["DeviceIdentity"]:
    """Make GPU ``device`` current on this thread for a ``with`` block; yields its identity.

    TensorRT's builder works on the calling thread's current device ("use cudaSetDevice() before
    calling the builder", TensorRT's FAQ on multiple GPUs), so an engine for GPU 1 is built inside
    this block; the caller's device is given back afterwards.

    Raises:
        BackendUnavailable: no CUDA Python binding is installed.
        EngineError: every installed binding failed (no GPU, driver problem).
    """
    from ..backends.cuda_memory import select_memory

    memory = select_memory("auto", device)
    try:
        with memory.context():
            yield memory.device_identity(device)
    finally:
        memory.close()


def compute_capability(device: int = 0) -> str:
    """The GPU's compute capability as ``"major.minor"`` (e.g. ``"8.7"`` on Jetson Orin).

    Raises:
        BackendUnavailable: no CUDA Python binding is installed.
        EngineError: the CUDA call failed (no GPU, driver problem).
    """
    return gpu_identity(device).compute_capability


def engine_path_for(onnx_path: PathLike, out_dir: PathLike, key: EngineKey, onnx_sha256: Optional[str] = None) -> Path:
    """Where the engine built from ``onnx_path`` (whose SHA-256 is ``onnx_sha256``, read when not given) with
    ``key`` goes in ``out_dir``.

    Raises:
        ModelError: ``onnx_sha256`` is not given and ``onnx_path`` is missing or not a file.
    """
    if onnx_sha256 is None:
        problem = file_problem(onnx_path)
        if problem:
            raise ModelError(f"ONNX file {onnx_path} {problem}; expected the .onnx file the engine is built from")
    return Path(out_dir) / key.filename(model_stem(onnx_path), onnx_sha256 or sha256_file(onnx_path))


def _load_problem(engine_path: Path) -> Optional[str]:
    """Why TensorRT cannot deserialise a cached engine whose sidecar checks pass, or None when it can: the
    same TensorRT version string can come in builds that cannot read each other's plans (CUDA 12 and 13
    wheels), and the runtime's advice for such an engine is to run this builder again."""
    from ..backends.tensorrt_backend import deserialize_engine, read_engine_bytes

    try:
        deserialize_engine(read_engine_bytes(engine_path), str(engine_path))
    except EngineError as exc:
        return str(exc)
    return None


def _read_info(onnx_path: Path) -> ModelInfo:
    from .onnx_export import load_onnx, read_model_info

    model = load_onnx(onnx_path)
    info = read_model_info(model)
    refuse_non_tensorrt_int8(onnx_path, model, info.precision == "int8", info.int8_scheme)
    return info


def refuse_non_tensorrt_int8(onnx_path: Path, model: Any, int8: bool = False, declared: Optional[str] = None) -> None:
    """Raise ModelError, in one line naming the file to use instead, when ``model`` is an INT8 model (by its
    Q/DQ nodes, or ``int8`` from its metadata, with the ``declared`` scheme) whose scheme TensorRT cannot take.
    A float model and an s8s8 one pass.

    Raises:
        ModelError: the model's activations are not symmetric int8 (u8s8, ONNX Runtime CPU's scheme).
    """
    from .quantize import scheme_of

    found = scheme_of(model)
    if not (int8 or found):
        return
    scheme = declared or found
    if scheme != "s8s8" or found != "s8s8":
        sibling = onnx_path.with_name(f"{model_stem(onnx_path)}.int8-s8s8.onnx")
        raise ModelError(
            f"{onnx_path.name} is an INT8 file of scheme {scheme!r} (asymmetric uint8 activations, made for "
            f"ONNX Runtime CPU); TensorRT needs symmetric int8 activations. Use the s8s8 file instead: "
            f"{sibling} (made with --int8 --int8-target tensorrt)")


def build_engine(onnx_path: PathLike, out_dir: PathLike, min_batch: int = 1, opt_batch: int = 32,
                 max_batch: int = 128, workspace_mb: Optional[int] = DEFAULT_WORKSPACE_MB,
                 timing_cache: Optional[PathLike] = None, device: int = 0, force: bool = False,
                 source_onnx: Optional[PathLike] = None) -> Path:
    """Build a TensorRT engine from an fsrfer ONNX file, or reuse a valid cached one.

    Args:
        onnx_path: an fsrfer ONNX file (fp32, fp16, or int8 of scheme s8s8).
        out_dir: where the engine and its JSON sidecar go.
        min_batch: smallest batch of the optimisation profile.
        opt_batch: the batch TensorRT tunes for.
        max_batch: largest batch.
        workspace_mb: builder workspace limit in MiB (None: TensorRT's default).
        timing_cache: a timing-cache file to load (if it exists) and save after the build.
        device: CUDA device index (for the GPU's compute capability and model in the engine name).
        force: rebuild even if a valid cached engine exists.
        source_onnx: the file the user runs, when ``onnx_path`` is a copy made from it (the FP16
            copy of an FP32 file built on first use): the engine is named after it and its sidecar
            records its hash, so the runtime finds the engine from the file it was given.

    Returns:
        The engine path (``EngineKey.filename``) in ``out_dir``.

    Raises:
        BackendUnavailable: TensorRT (or a CUDA binding) is not installed here.
        ModelError: the ONNX file is not an fsrfer model, or is a u8s8 INT8 file.
        EngineError: TensorRT cannot parse or build the network.
    """
    onnx_path = Path(onnx_path)
    source = Path(source_onnx) if source_onnx is not None else onnx_path
    info = _read_info(onnx_path)
    trt_version = str(import_tensorrt(source).__version__)
    with on_device(device) as gpu:  # TensorRT builds for the current device
        key = EngineKey(trt_version, gpu.compute_capability, info.precision,
                        int(min_batch), int(opt_batch), int(max_batch), gpu.key)
        source_sha = sha256_file(source)
        out = engine_path_for(source, out_dir, key, source_sha)
        with engine_cache.build_lock(out.parent):  # another process may be building this engine now
            return _build_or_reuse(onnx_path, source, info, key, gpu, source_sha, out, workspace_mb, timing_cache,
                                   force)


def _build_or_reuse(onnx_path: Path, source: Path, info: ModelInfo, key: EngineKey, gpu: "DeviceIdentity", source_sha: str,
                    out: Path, workspace_mb: Optional[int], timing_cache: Optional[PathLike], force: bool) -> Path:
    """:func:`build_engine`'s work under the folder's build lock: the valid engine at ``out`` (one another process
    may have just built), else a new one written there with its sidecar."""
    if out.exists() and not force:
        try:
            engine_cache.check_engine(out, key.tensorrt_version, key.compute_capability, source, device=gpu.key)
        except EngineError as exc:
            log.info("rebuilding %s: %s", out.name, exc)
        else:
            if engine_cache.read_sidecar(out)["key"] != key:
                log.info("rebuilding %s: its sidecar records another build configuration", out.name)
            elif (problem := _load_problem(out)) is not None:
                log.warning("rebuilding %s: %s", out.name, problem)
            else:
                log.info("cached: %s", out)
                return out
    require_writable(out.parent, out.name)  # before minutes of building, not after
    t0 = time.perf_counter()
    plan, build = _build_serialized(onnx_path, info, key, workspace_mb, timing_cache)
    atomic_write_bytes(out, plan)
    engine_cache.write_sidecar(out, key, source_sha, info,
                               extra={"onnx_file": source.name, **engine_cache.source_record(source),
                                      "built_from": onnx_path.name,
                                      "gpu": {"name": gpu.name, "multiprocessors": gpu.multiprocessors,
                                              "memory_gib": gpu.memory_gib},
                                      "workspace_mb": workspace_mb, **build,
                                      "build_seconds": round(time.perf_counter() - t0, 1)})
    log.info("built %s in %.1f s", out, time.perf_counter() - t0)
    return out


def require_writable(folder: Path, engine: str) -> None:
    """Refuse, before any work, to build ``engine`` into a folder this user cannot make or write.

    Raises:
        EngineError: naming the folder and what to pass instead.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EngineError(f"{engine} must be built, but {folder} cannot be made here ({exc.strerror or exc}); "
                          "expected a folder this user may write: pass another --out-dir, or set FSRFER_ENGINE_DIR "
                          "for first-use builds") from exc
    if not os.access(folder, os.W_OK):
        raise EngineError(f"{engine} must be built, but {folder} is not writable here; expected a folder this user "
                          "may write: pass another --out-dir, or set FSRFER_ENGINE_DIR for first-use builds")

def first_use_source(onnx_path: Path, work_dir: Path) -> Path:
    """The file to build a first-use engine from: FP16 and s8s8 INT8 files as they are; for an
    FP32 file, an FP16 copy written to ``work_dir`` (FP16 is the default precision on GPUs).

    Raises:
        ModelError: not an fsrfer model, or a u8s8 INT8 file (made for ONNX Runtime CPU).
        BackendUnavailable: onnx or onnxruntime (the FP16 converter) is missing.
    """
    info = _read_info(onnx_path)
    if info.precision != "fp32":
        return onnx_path
    from .quantize import convert_fp16

    # A private hidden name (a killed build's copy is one of the partial files fsrfer-engines --prune removes): the
    # folder may hold the user's own NAME.fp16.onnx, and two processes may build at once.
    fd, name = tempfile.mkstemp(prefix=f".{model_stem(onnx_path)}.fp16.", suffix=".tmp", dir=work_dir)
    os.close(fd)
    copy = Path(name)
    log.info("converting %s to FP16 for the engine (%s)", onnx_path.name, copy)
    try:
        convert_fp16(onnx_path, copy)
    except BaseException:
        copy.unlink(missing_ok=True)
        raise
    return copy


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
    """Whether the network must be strongly typed (every type taken from the file).

    TensorRT 11 removed the precision flags (FP16, INT8): networks are strongly typed, which is
    exactly "precision is a property of the file". TensorRT 8.5-10.x keep the flags, and there this
    builder deliberately stays weakly typed with them (10.12 deprecated the flags in favour of strong
    typing, but they still work there): the s8s8 file keeps the pooled embedding, the head, FiLM, the
    factor estimator and the conv reading the image (and a layer3- or embedding-level G) in FP32, and
    only weak typing with FP16 allowed lets TensorRT run those in half precision; a strongly typed 10.x
    network would run them in FP32, as the file says, for no accuracy gain (the FP16 file
    passes the same checks). FP16 files are the same either way; FP32 files never need the flags.
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
    # the flag is deprecated; 11.x drops it.
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
    """Set the builder flags the file's precision needs; returns them (``-TF32``: cleared)."""
    import tensorrt as trt

    names: list[str] = []
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        # TensorRT enables TF32 by default (8.x-11.x), which rounds FP32 convolution inputs to a
        # 10-bit mantissa on Ampere and later (Jetson Orin included): an "fp32" engine would not be FP32.
        config.clear_flag(trt.BuilderFlag.TF32)
        names.append("-TF32")
    if strongly_typed:
        return names + ["STRONGLY_TYPED"]
    if precision == "fp16":
        names.append("FP16")
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        # A Q/DQ file: the INT8 flag enables explicit quantization; FP16 lets the layers left
        # unquantized run in half precision. No calibrator is ever set.
        for name in ["INT8"] + (["FP16"] if _has_weak_typing_flag("FP16") else []):
            names.append(name)
            config.set_flag(getattr(trt.BuilderFlag, name))
    return names


def _load_timing_cache(config: "trt.IBuilderConfig", path: Optional[PathLike]) -> Optional["trt.ITimingCache"]:
    """Attach the timing cache at ``path`` (or a new one) to ``config``; returns it (keep it alive
    until the build ends), or None when there is no timing cache to use."""
    if path is None:
        return None
    if not hasattr(config, "create_timing_cache"):
        log.warning("this TensorRT has no timing cache API; ignoring --timing-cache %s", path)
        return None
    p = Path(path)
    data = p.read_bytes() if p.is_file() else b""
    # The stubs say ITimingCache; TensorRT returns None for a cache it cannot read (another
    # TensorRT version, a truncated file).
    cache: Optional[trt.ITimingCache] = config.create_timing_cache(data)
    if cache is None or not config.set_timing_cache(cache, False):
        if data:
            log.warning("timing cache %s was written by another TensorRT version or GPU (or is damaged); "
                        "starting a new one, which replaces it after the build", p)
        cache = config.create_timing_cache(b"")
        if cache is None or not config.set_timing_cache(cache, False):
            log.warning("TensorRT could not create a timing cache; building without %s", p)
            return None
        data = b""
    log.info("timing cache: %s (%s)", p, "loaded" if data else "new")
    return cache


def _save_timing_cache(config: "trt.IBuilderConfig", path: PathLike) -> None:
    cache: Optional[trt.ITimingCache] = config.get_timing_cache()  # None where there is none
    if cache is None:
        return
    atomic_write_bytes(Path(path), bytes(memoryview(cache.serialize())))
    log.info("saved timing cache %s", path)


def _progress_monitor() -> Optional[Any]:
    """A TensorRT progress monitor that logs the build's phases (TensorRT >= 10.0 has
    ``IProgressMonitor``, ``pyCore.cpp`` v10.3.0), or None where there is none."""
    import tensorrt as trt

    if not hasattr(trt, "IProgressMonitor"):
        return None

    class _Progress(trt.IProgressMonitor):  # type: ignore[misc,name-defined,unused-ignore]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._steps: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: int) -> None:
            self._steps[phase_name] = int(num_steps)
            if parent_phase is None:
                log.info("TensorRT build: %s (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            n = self._steps.get(phase_name, 0)
            if n >= 10 and (step + 1) % (n // 10) == 0:
                log.info("TensorRT build: %s %d/%d", phase_name, step + 1, n)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            self._steps.pop(phase_name, None)

    return _Progress()


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
                      timing_cache: Optional[PathLike]) -> tuple[bytes, dict[str, Any]]:
    """Parse and build; returns the plan and what the sidecar records about the build."""
    import tensorrt as trt

    from ..backends.tensorrt_backend import shared_logger

    logger = shared_logger(trt)  # TensorRT keeps one logger per process (see shared_logger)
    builder = trt.Builder(logger)
    strongly_typed = _strongly_typed(info.precision)
    network = builder.create_network(_network_flags(strongly_typed))
    log.info("parsing %s", onnx_path.name)
    parser = _parse(network, logger, onnx_path)
    config = builder.create_builder_config()
    _set_workspace(config, workspace_mb)
    flags = _set_precision(config, info.precision, strongly_typed)
    config.add_optimization_profile(_profile(builder, network, info, key))
    cache = _load_timing_cache(config, timing_cache)
    monitor = _progress_monitor()  # kept referenced until the build ends
    if monitor is not None and hasattr(config, "progress_monitor"):
        config.progress_monitor = monitor
    log.info("building %s engine (%s network, flags %s, batch %d-%d-%d); this takes a few minutes on a Jetson",
             info.precision, "strongly typed" if strongly_typed else "weakly typed", flags or ["none"],
             key.min_batch, key.opt_batch, key.max_batch)
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
    if cache is not None and timing_cache is not None:
        _save_timing_cache(config, timing_cache)
    return bytes(memoryview(plan)), {"network": "strongly typed" if strongly_typed else "weakly typed",
                                     "builder_flags": flags}
