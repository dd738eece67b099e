"""TensorRT backend: runs a serialized engine built by ``fsrfer-export --engine``.

The engine is checked against its JSON sidecar (TensorRT version, GPU compute capability and model,
hash) *before* it is deserialised: a foreign or stale engine is refused with EngineError, never run.
:meth:`TensorRTBackend.for_onnx` finds the engine built from an ONNX file and, with ``build=True``,
builds and caches it on first use.

One code path serves TensorRT 8.5 (JetPack 5), 10.x (JetPack 6) and later: it uses the named-tensor
API (``num_io_tensors``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``), which
TensorRT has had since 8.5. Only when ``hasattr`` says that API is missing (TensorRT < 8.5) does it
fall back to binding indices (``set_binding_shape``, ``execute_async_v2``). Versions are never
compared as strings.

Threads: :meth:`TensorRTBackend.infer` holds a lock, so one instance is safe to call from several
threads, one call at a time. For parallel inference create one Recognizer (one backend, with its
own execution context, buffers and stream) per thread.

Processes: CUDA does not survive fork. A backend opened before a fork (gunicorn --preload, multiprocessing's
"fork") refuses in the child with EngineError, and closing or collecting it there frees nothing: its device
memory, stream and TensorRT objects belong to the parent's CUDA context. Open the backend in each worker,
from a parent that has not used CUDA, or use the "spawn" start method.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import stat
import threading
import traceback
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional, Protocol, Sequence, Union, cast

import numpy as np

from ..engine_cache import (EngineKey, build_lock, check_engine, choose_engine, default_cache_dir, engine_pattern,
                            model_stem, prune_replaced, read_sidecar)
from ..fileio import as_path, sha256_file
from ..errors import BackendUnavailable, EngineError, InputError, check_count, check_flag
from ..metadata import ModelInfo
from .base import Backend
from ..forking import leave_to_parent
from .cuda_memory import CudaMemory, CudaStream, DeviceBuffer, forked_error, note_cleanup_failure, select_memory

if TYPE_CHECKING:  # the types come from tensorrt-stubs (TensorRT 10.x); see scripts/prepare_trt_stubs.py
    import tensorrt as trt

logger = logging.getLogger(__name__)


def import_tensorrt() -> ModuleType:
    """Import TensorRT or raise BackendUnavailable naming the ``tensorrt`` extra.

    The functions below import ``tensorrt`` themselves (so mypy checks their calls against the
    stubs); the backend calls this first, so those imports never fail.

    Raises:
        BackendUnavailable: TensorRT is missing, or only its type stubs are installed.
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable(
            f"'tensorrt' is needed for running TensorRT engines but could not be imported ({exc}). "
            f"{_INSTALL_TENSORRT}"
        ) from exc
    # ``tensorrt-stubs`` alone installs a bare ``tensorrt`` folder that imports as an empty namespace.
    if not hasattr(trt, "Runtime") or not hasattr(trt, "__version__"):
        raise BackendUnavailable(
            f"'tensorrt' imports from {list(getattr(trt, '__path__', []))} but is not the TensorRT runtime "
            f"(only type stubs?). {_INSTALL_TENSORRT}"
        )
    return trt


#: How to get TensorRT: the ``tensorrt`` extra adds only cuda-python (the CUDA memory layer), not TensorRT.
_INSTALL_TENSORRT = ("Install TensorRT itself: JetPack ships it on a Jetson; on a desktop GPU: pip install tensorrt "
                     "(NVIDIA's wheel). pip install -e '.[tensorrt]' adds only the CUDA bindings (cuda-python)")


class _BindingEngine(Protocol):
    """The binding-index API of ``ICudaEngine`` in TensorRT < 8.5 (removed in 10.0, so not in the stubs)."""

    num_bindings: int

    def get_binding_name(self, index: int) -> str: ...
    def binding_is_input(self, index: int) -> bool: ...
    def get_binding_dtype(self, index: int) -> trt.DataType: ...
    def get_binding_shape(self, index: int) -> trt.Dims: ...
    def get_profile_shape(self, profile_index: int, binding: int) -> list[trt.Dims]: ...


class _BindingContext(Protocol):
    """The binding-index API of ``IExecutionContext`` in TensorRT < 8.5 (removed in 10.0)."""

    def set_binding_shape(self, binding: int, shape: tuple[int, ...]) -> bool: ...
    def execute_async_v2(self, bindings: list[int], stream_handle: int) -> bool: ...


def read_engine_bytes(engine_path: Union[str, os.PathLike[str]]) -> bytes:
    """The bytes of an engine file, refused where someone else could have written them.

    A TensorRT engine is executable code: NVIDIA's security guidance is to deserialize only engines you built or
    received over a trusted channel. An engine owned by another user (not root), or writable by every user, could
    be anyone's (a shared cache folder, ``FSRFER_ENGINE_DIR``), so it is refused; the file is checked as opened, so
    it cannot be swapped between the check and the read. Group-writable files are read (a umask of 002 with user
    private groups writes them so).

    Raises:
        EngineError: it cannot be read, or is refused as above (the message says how to rebuild or take it over).
    """
    try:
        with open(engine_path, "rb") as f:
            st = os.fstat(f.fileno())
            problem = _trust_problem(st)
            if problem:
                raise EngineError(
                    f"engine {engine_path} is {problem}; a TensorRT engine is executable code (NVIDIA: deserialize "
                    "only engines you built or received over a trusted channel), so one that others could have "
                    "written is not loaded. Rebuild it here (fsrfer-export --engine), or, if you trust it, copy it "
                    "to make it yours (cp) and take away others' write access (chmod o-w)")
            return f.read()
    except OSError as exc:
        raise EngineError(f"engine {engine_path} could not be read ({exc})") from exc


def _trust_problem(st: os.stat_result) -> str:
    """Why an engine file with this status may not be this user's own work ("" when it is)."""
    uid = os.getuid() if hasattr(os, "getuid") else None  # no POSIX owners (Windows): nothing to check
    if uid is not None and st.st_uid not in (uid, 0):
        return f"owned by user id {st.st_uid}, not by this user (id {uid}) or root"
    if uid is not None and st.st_mode & stat.S_IWOTH:
        return f"writable by every user (mode {stat.S_IMODE(st.st_mode):o})"
    return ""


class EngineUnreadable(EngineError):
    """TensorRT could not deserialise an engine file (corrupt, or from a TensorRT build that cannot read it)."""


#: The one TensorRT logger of each imported ``tensorrt`` module, never freed: TensorRT keeps a single
#: logger pointer for all its builders and runtimes ("the existing value will be used instead"), and the logger
#: "must be valid until all objects created are released" (``NvInferRuntimeBase.h``), so a logger per engine would
#: leave every later engine logging through the first one, freed when its backend closes (NVIDIA/TensorRT#1475,
#: #4134: a crash on the second engine, fixed by one global logger, as NVIDIA's samples use).
_TRT_LOGGERS: dict[Any, Any] = {}


def shared_logger(trt: Any) -> Any:
    """The process's TensorRT logger (warnings and errors) for the ``tensorrt`` module ``trt``."""
    if trt not in _TRT_LOGGERS:
        _TRT_LOGGERS[trt] = trt.Logger(trt.Logger.WARNING)
    return _TRT_LOGGERS[trt]


def deserialize_engine(data: bytes, source: str) -> tuple[trt.ILogger, trt.Runtime, trt.ICudaEngine]:
    """Deserialise an engine: returns (logger, runtime, engine); the runtime must outlive the engine. The logger is
    the process's one (:func:`shared_logger`).

    Raises:
        EngineUnreadable: TensorRT could not deserialise it.
    """
    import tensorrt as trt

    trt_logger = shared_logger(trt)
    runtime = trt.Runtime(trt_logger)
    # The stubs say ICudaEngine; TensorRT returns None when it cannot deserialise.
    engine: Optional[trt.ICudaEngine] = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise EngineUnreadable(
            f"TensorRT could not deserialise {source} (see TensorRT's log above); the file is corrupt or was "
            "built by another TensorRT version. Rebuild it with: fsrfer-export --engine MODEL.onnx"
        )
    return trt_logger, runtime, engine


@dataclasses.dataclass(frozen=True)
class EngineIO:
    """The engine's input/output as this backend uses them."""

    input_name: str
    output_name: str
    input_index: int  # binding index (legacy API only)
    output_index: int
    input_dtype: np.dtype
    output_dtype: np.dtype
    num_classes: int
    min_batch: int
    max_batch: int
    named_api: bool
    num_bindings: int = 2


def _dims(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


#: TensorRT DataType member names -> NumPy dtypes. ``trt.nptype`` is not used: in TensorRT 8.5.1 and
#: 8.5.2 (JetPack 5) it builds its table with ``np.bool``, which NumPy 1.24-1.26 do not have, so it
#: raises AttributeError for every type (fixed in 8.5.3 with ``np.bool_``).
_TRT_TO_NUMPY = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "INT64": "int64",
                 "BOOL": "bool", "UINT8": "uint8"}


def _np_dtype(dtype: trt.DataType) -> np.dtype:
    name = str(getattr(dtype, "name", dtype)).rsplit(".", 1)[-1]
    if name not in _TRT_TO_NUMPY:
        raise EngineError(f"engine tensor type {dtype} has no NumPy equivalent; expected one of {sorted(_TRT_TO_NUMPY)}")
    return np.dtype(_TRT_TO_NUMPY[name])


def has_named_tensor_api(engine: trt.ICudaEngine, context: trt.IExecutionContext) -> bool:
    """True when the engine/context have the TensorRT >= 8.5 named-tensor API."""
    return all(hasattr(engine, a) for a in ("num_io_tensors", "get_tensor_name", "get_tensor_mode",
                                             "get_tensor_profile_shape")) and all(
        hasattr(context, a) for a in ("set_input_shape", "set_tensor_address", "execute_async_v3"))


def inspect_engine(engine: trt.ICudaEngine, context: trt.IExecutionContext, info: ModelInfo,
                   source: str) -> EngineIO:
    """Find the engine's I/O tensors, dtypes and batch range; check them against ``info``.

    Raises:
        EngineError: tensor names, dtypes or shapes disagree with the model's metadata.
    """
    import tensorrt as trt

    if has_named_tensor_api(engine, context):
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        _check_names(inputs, outputs, info, source)
        in_dtype = _np_dtype(engine.get_tensor_dtype(info.input_name))
        out_dtype = _np_dtype(engine.get_tensor_dtype(info.output_name))
        in_shape = _dims(engine.get_tensor_shape(info.input_name))
        out_shape = _dims(engine.get_tensor_shape(info.output_name))
        if in_shape and in_shape[0] == -1:
            lo, _, hi = engine.get_tensor_profile_shape(info.input_name, 0)
            batch_range = (int(lo[0]), int(hi[0]))
        else:
            batch_range = (int(in_shape[0]), int(in_shape[0]))
        in_idx, out_idx, n_bind = names.index(info.input_name), names.index(info.output_name), len(names)
        named = True
    else:
        # TensorRT < 8.5: binding indices. Only profile 0's bindings are used.
        old = cast(_BindingEngine, engine)
        n_profiles = max(1, int(getattr(old, "num_optimization_profiles", 1)))
        n_bind = int(old.num_bindings) // n_profiles
        names = [old.get_binding_name(i) for i in range(n_bind)]
        inputs = [n for i, n in enumerate(names) if old.binding_is_input(i)]
        outputs = [n for n in names if n not in inputs]
        _check_names(inputs, outputs, info, source)
        in_idx, out_idx = names.index(info.input_name), names.index(info.output_name)
        in_dtype = _np_dtype(old.get_binding_dtype(in_idx))
        out_dtype = _np_dtype(old.get_binding_dtype(out_idx))
        in_shape = _dims(old.get_binding_shape(in_idx))
        out_shape = _dims(old.get_binding_shape(out_idx))
        if in_shape and in_shape[0] == -1:
            lo, _, hi = old.get_profile_shape(0, in_idx)
            batch_range = (int(lo[0]), int(hi[0]))
        else:
            batch_range = (int(in_shape[0]), int(in_shape[0]))
        named = False
    pre = info.preprocessing
    want = (pre.channels, pre.input_size, pre.input_size)
    if len(in_shape) != 4 or tuple(int(d) for d in in_shape[1:]) != want:
        raise EngineError(f"{source}: input {info.input_name!r} has shape {in_shape}; metadata implies (N, {want[0]}, {want[1]}, {want[2]})")
    if in_dtype != np.dtype(info.input_dtype):
        raise EngineError(f"{source}: input {info.input_name!r} is {in_dtype}, but metadata says {info.input_dtype}")
    num_classes = len(info.classes)
    if len(out_shape) != 2 or int(out_shape[1]) != num_classes:
        raise EngineError(f"{source}: output {info.output_name!r} has shape {out_shape}; expected (N, {num_classes})")
    if batch_range[1] < 1:
        raise EngineError(f"{source}: engine's batch range {batch_range} is invalid")
    return EngineIO(info.input_name, info.output_name, in_idx, out_idx, in_dtype, out_dtype, num_classes,
                    max(1, batch_range[0]), batch_range[1], named, n_bind)


def _check_names(inputs: list[str], outputs: list[str], info: ModelInfo, source: str) -> None:
    if inputs != [info.input_name]:
        raise EngineError(f"{source}: engine inputs are {inputs}; metadata expects exactly [{info.input_name!r}]")
    # An extra output would be left without a buffer address, which TensorRT refuses at run time
    # (or writes through a null pointer with the binding API).
    if outputs != [info.output_name]:
        raise EngineError(f"{source}: engine outputs are {outputs}; metadata expects exactly [{info.output_name!r}]")


class TensorRTBackend(Backend):
    """Runs a TensorRT engine with buffers allocated once for the engine's largest batch.

    Page-locked host buffers, device buffers and one CUDA stream are created at load time and
    reused by every call; :meth:`close` frees them. One instance is safe to use from several threads
    (a lock serialises calls); for parallelism create one Recognizer per thread.

    Args:
        engine_path: a ``.engine``/``.plan`` file with its ``.json`` sidecar (from fsrfer-export).
        device: CUDA device index.
        memory: CUDA memory layer: ``"auto"`` (cuda-python, else pycuda), ``"cuda-python"``,
            ``"pycuda"``, or a :class:`~fsrfer_edge.backends.cuda_memory.CudaMemory` instance for ``device``.
        onnx_path: when given, the engine must have been built from exactly this ONNX file.
        close_memory: whether :meth:`close` also closes the memory layer (default: only when it
            was created here from a name).

    Raises:
        InputError: ``memory`` is not a known name or a CudaMemory, or is a CudaMemory of another device;
            ``engine_path`` is no path; ``close_memory`` is not True, False or None.
        BackendUnavailable: TensorRT or both CUDA libraries are missing (pip extra ``tensorrt``).
        EngineError: the engine is missing, corrupt, stale, or built for another TensorRT/GPU; CUDA failed.
    """

    name = "tensorrt"

    def __init__(self, engine_path: Union[str, os.PathLike[str]], device: int = 0,
                 memory: Union[str, CudaMemory] = "auto",
                 onnx_path: Optional[Union[str, os.PathLike[str]]] = None,
                 close_memory: Optional[bool] = None) -> None:
        # Checked before anything is held (Backend.__init__ makes __del__ try to close).
        path = as_path(engine_path, "engine_path")
        if close_memory is not None and not isinstance(close_memory, (bool, np.bool_)):
            # "no" would be read as True: the caller's memory layer closed with the backend
            raise InputError(f"close_memory={close_memory!r}; expected True, False or None (None: close the memory "
                             "layer only when it was made here from a name)")
        self._pid = os.getpid()  # the process whose CUDA context holds what is loaded below
        super().__init__()
        self.path = path
        self._lock = threading.Lock()
        self._mem: Optional[CudaMemory] = None
        # A memory layer created here is closed here; one passed in belongs to the caller unless told.
        self._owns_mem = bool(close_memory) if close_memory is not None else isinstance(memory, str)
        self._engine: Optional[trt.ICudaEngine] = None
        self._context: Optional[trt.IExecutionContext] = None
        self._runtime: Optional[trt.Runtime] = None
        self._trt_logger: Optional[trt.ILogger] = None
        self._buffers: list[Any] = []
        self._stream: Optional[CudaStream] = None
        self._trt_version = str(import_tensorrt().__version__)
        try:
            self._load(device, memory, onnx_path)
        except BaseException as exc:
            try:
                self.close()
            except Exception as cleanup:  # noqa: BLE001 - the load error is the one to raise
                logger.warning("cleaning up after the failed load of %s also failed: %s", self.path, cleanup)
            # The load's frames still hold TensorRT objects (an execution context, an engine) in their locals;
            # freed later with the traceback, they would be destroyed outside the CUDA context close() used.
            traceback.clear_frames(exc.__traceback__)
            raise

    def _load(self, device: int, memory: Union[str, CudaMemory],
              onnx_path: Optional[Union[str, os.PathLike[str]]]) -> None:
        if isinstance(memory, CudaMemory):
            self._mem = memory  # taken first, so close_memory=True closes it even when refused below
            if memory.device != device:
                # The engine is checked against `device` but would run on the layer's device.
                raise InputError(
                    f"device={device!r}, but the memory layer given ({type(memory).__name__}, memory="
                    f"{memory.name!r}) is for CUDA device {memory.device}; a backend runs on one device: pass "
                    f"device={memory.device}, or a memory layer made for device {device!r}"
                )
        elif isinstance(memory, str):
            self._mem = select_memory(memory, device)
        else:
            raise InputError(f"memory={memory!r}; expected 'auto', 'cuda-python', 'pycuda' or a CudaMemory")
        mem = self._mem
        gpu = mem.device_identity(device)
        cc = gpu.compute_capability
        # Refuse a foreign or stale engine before TensorRT ever sees its bytes.
        doc = check_engine(self.path, self._trt_version, cc, onnx_path, device=gpu.key)
        self._info = doc["model_info"]
        self._compute_capability = cc
        with mem.context():
            self._trt_logger, self._runtime, self._engine = deserialize_engine(
                read_engine_bytes(self.path), str(self.path))
            # The stubs say IExecutionContext; TensorRT returns None when it cannot create one.
            context: Optional[trt.IExecutionContext] = self._engine.create_execution_context()
            if context is None:
                raise EngineError(f"TensorRT could not create an execution context for {self.path} (out of GPU memory?)")
            self._context = context
            self._io = inspect_engine(self._engine, context, self.info, str(self.path))
            self._max_batch = self._io.max_batch
            self._allocate(mem, context)
        logger.info("loaded TensorRT %s engine %s (%s API, batch %d-%d, memory=%s)", self._trt_version, self.path,
                    "named-tensor" if self._io.named_api else "binding", self._io.min_batch, self._io.max_batch,
                    mem.name)

    def _allocate(self, mem: CudaMemory, context: trt.IExecutionContext) -> None:
        io = self._io
        c, s, _ = self.input_shape
        self._host_in = mem.alloc_host((io.max_batch, c, s, s), io.input_dtype)
        self._buffers.append(self._host_in)
        self._host_out = mem.alloc_host((io.max_batch, io.num_classes), io.output_dtype)
        self._buffers.append(self._host_out)
        self._dev_in: DeviceBuffer = mem.alloc_device(self._host_in.nbytes)
        self._buffers.append(self._dev_in)
        self._dev_out: DeviceBuffer = mem.alloc_device(self._host_out.nbytes)
        self._buffers.append(self._dev_out)
        self._stream = mem.create_stream()
        if io.named_api:
            # Addresses never change: set them once.
            ok_in = context.set_tensor_address(io.input_name, self._dev_in.ptr)
            ok_out = context.set_tensor_address(io.output_name, self._dev_out.ptr)
            if ok_in is False or ok_out is False:
                raise EngineError(f"TensorRT refused the buffer addresses for {self.path}")
        else:
            self._bindings = [0] * io.num_bindings
            self._bindings[io.input_index] = self._dev_in.ptr
            self._bindings[io.output_index] = self._dev_out.ptr

    @property
    def min_batch(self) -> int:
        return int(self._io.min_batch)

    @property
    def providers(self) -> tuple[str, ...]:
        mem = self._mem.name if self._mem is not None else "closed"
        return (f"TensorRT {self._trt_version}", f"sm{getattr(self, '_compute_capability', '?')}", f"memory={mem}")

    def _forked(self) -> bool:
        return os.getpid() != getattr(self, "_pid", os.getpid())

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]  # at least min_batch: Backend.infer checked it
        if self._forked():  # before the lock, which a thread of the parent may have held at the fork
            raise forked_error(f"this TensorRT backend for {self.path}", self._pid)
        with self._lock:
            self._check_open()  # another thread may have closed it while we waited
            mem, io, stream, context = self._mem, self._io, self._stream, self._context
            # set by _load; internal invariant
            assert mem is not None and stream is not None and context is not None
            host_in, host_out = self._host_in[:n], self._host_out[:n]
            np.copyto(host_in, batch)
            with mem.context():
                shape = (n,) + tuple(batch.shape[1:])
                try:
                    if io.named_api:
                        if context.set_input_shape(io.input_name, shape) is False:
                            raise EngineError(f"TensorRT rejected input shape {shape} for {self.path}")
                        mem.htod_async(self._dev_in, host_in, stream)
                        ok = context.execute_async_v3(stream.ptr)
                    else:  # TensorRT < 8.5
                        old = cast(_BindingContext, context)
                        if old.set_binding_shape(io.input_index, shape) is False:
                            raise EngineError(f"TensorRT rejected input shape {shape} for {self.path}")
                        mem.htod_async(self._dev_in, host_in, stream)
                        ok = old.execute_async_v2(self._bindings, stream.ptr)
                    if not ok:
                        raise EngineError(f"TensorRT failed to run {self.path} on a batch of {n} (see TensorRT's log)")
                    mem.dtoh_async(host_out, self._dev_out, stream)
                except BaseException as exc:
                    try:
                        mem.synchronize(stream)  # a queued copy from the pinned input must end before its next use
                    except Exception as cleanup:  # noqa: BLE001 - the run's error is the one to raise
                        note_cleanup_failure(exc, f"waiting for the CUDA stream of {self.path}", cleanup)
                    raise
                mem.synchronize(stream)
            return host_out.astype(np.float32, copy=True)

    def close(self) -> None:
        """Free the engine, its buffers and stream (see :meth:`Backend.close`). In a process forked from the one that
        opened the backend it only marks the backend closed: what it holds belongs to the parent's CUDA context,
        where the child must not free it (or make any CUDA call)."""
        if self._forked():
            self._leave_to_parent()
            return
        super().close()

    def _leave_to_parent(self) -> None:
        # No lock: a thread of the parent may have held self._lock or the close lock at the fork, and this process
        # has no such thread to release them.
        if self._closed:
            return
        self._closed = True
        logger.debug("TensorRT backend for %s closed in process %d, a fork of process %d that opened it: its CUDA "
                     "memory, stream and TensorRT objects are left to that process", self.path, os.getpid(), self._pid)
        leave_to_parent(dict(vars(self)))  # every attribute: the pinned arrays, buffers, stream, engine, memory layer

    def _close_impl(self) -> None:
        with self._lock:
            mem, self._mem = self._mem, None
            if mem is None:  # loading failed before a memory layer existed
                self._context = self._engine = self._runtime = None
                return
            # Every step is tried even after one fails (a sticky CUDA error fails them all), so nothing
            # that could be freed is leaked; the failures are raised together at the end.
            failures: list[str] = []

            def attempt(what: str, fn: Any, *args: Any) -> None:
                try:
                    fn(*args)
                except Exception as exc:  # noqa: BLE001 - collected and raised below
                    failures.append(f"{what}: {exc}")

            try:
                with mem.context():  # TensorRT frees its device memory on this device
                    if self._stream is not None:
                        attempt("synchronize", mem.synchronize, self._stream)
                    # TensorRT objects first (context, engine, runtime), then the buffers we own.
                    self._context = self._engine = self._runtime = None
                    for buf in reversed(self._buffers):
                        attempt("free a buffer", mem.free, buf)
                    if self._stream is not None:
                        attempt("free the stream", mem.free, self._stream)
            except Exception as exc:  # noqa: BLE001 - the device could not be made current
                failures.append(f"the CUDA context of device {mem.device}: {exc}")
                self._context = self._engine = self._runtime = None
            finally:
                self._buffers.clear()
                self._stream = None
                self._host_in = self._host_out = np.empty(0)
                if self._owns_mem:
                    attempt("close the CUDA memory layer", mem.close)
            if failures:
                raise EngineError(f"closing the TensorRT backend for {self.path} failed: " + "; ".join(failures))

    @classmethod
    def for_onnx(cls, onnx_path: Union[str, os.PathLike[str]], device: int = 0, memory: str = "auto",
                 search_dirs: Optional[Sequence[Union[str, os.PathLike[str]]]] = None,
                 min_max_batch: int = 1, build: bool = False,
                 cache_dir: Optional[Union[str, os.PathLike[str]]] = None) -> "TensorRTBackend":
        """Open the cached engine that was built from ``onnx_path`` for this TensorRT and GPU.

        Args:
            onnx_path: the exported ONNX model the engine must have been built from.
            search_dirs: where to look (default: beside the ONNX file, then ``cache_dir``).
            min_max_batch: prefer an engine whose max batch is at least this.
            build: when no valid engine is found, or the one found does not load, build one (precision
                from the file: FP16 for an FP32/FP16 file, INT8 for an s8s8 file) into ``cache_dir`` with
                a timing cache there, instead of raising. Stale or foreign engines are never run, only
                rebuilt.
            cache_dir: where engines are built and cached (default:
                :func:`~fsrfer_edge.engine_cache.default_cache_dir`).

        Raises:
            InputError: ``onnx_path``, ``cache_dir`` or an entry of ``search_dirs`` is no path, ``search_dirs`` is
                one path instead of a list of them, ``min_max_batch`` is not an integer >= 1, or ``build`` is not
                True or False.
            EngineError: no valid engine was found (and ``build`` is False), or the build failed.
            BackendUnavailable: TensorRT or the CUDA libraries are missing.
        """
        onnx = as_path(onnx_path, "onnx_path")
        check_flag("build", build)  # "no" would be True: an engine built, minutes on a Jetson
        check_count("min_max_batch", min_max_batch, 1)
        cache = as_path(cache_dir, "cache_dir") if cache_dir is not None else default_cache_dir()
        dirs = _search_dirs(search_dirs) if search_dirs is not None else [onnx.parent, cache]
        version = str(import_tensorrt().__version__)
        mem = select_memory(memory, device)
        try:
            gpu = mem.device_identity(device)

            def first_use(exclude: Sequence[Path] = ()) -> Path:
                """Under the cache's build lock, the engine another process built while this one waited for
                the lock, else a new one."""
                with build_lock(cache):
                    try:
                        return find_engine(onnx_path, version, gpu.compute_capability, [cache], min_max_batch,
                                           gpu.key, exclude=exclude)
                    except EngineError:
                        return build_cached_engine(onnx_path, cache, device, max(1, min_max_batch))

            try:
                engine = find_engine(onnx_path, version, gpu.compute_capability, dirs, min_max_batch, gpu.key)
            except EngineError as exc:
                if not build:
                    raise
                logger.info("%s", exc)
                return cls(first_use(), device, memory=mem, onnx_path=onnx_path, close_memory=True)
            try:
                return cls(engine, device, memory=mem, onnx_path=onnx_path, close_memory=True)
            except EngineUnreadable as exc:
                if not build:
                    raise
                # Its sidecar checks passed but TensorRT could not read it (a TensorRT build of the same version
                # string that cannot): another valid engine, else a new one in the cache (the builder checks
                # the cache's engine the same way, and rebuilds).
                logger.warning("%s; looking for another engine, or building one in %s", exc, cache)
            mem = select_memory(memory, device)  # the failed load closed the first
            try:
                engine = find_engine(onnx_path, version, gpu.compute_capability, dirs, min_max_batch, gpu.key,
                                     exclude=[engine])
            except EngineError:
                engine = first_use(exclude=(engine,))
            return cls(engine, device, memory=mem, onnx_path=onnx_path, close_memory=True)
        except BaseException:
            mem.close()
            raise


def _search_dirs(search_dirs: Any) -> list[Path]:
    """``search_dirs`` as Paths; one path given alone (a str would be searched character by character: ".", "/",
    "e"...) or anything else that is not a list of paths is an InputError."""
    if isinstance(search_dirs, (str, bytes, os.PathLike)) or not isinstance(search_dirs, (list, tuple)):
        raise InputError(f"search_dirs={search_dirs!r}; expected a list of folders, e.g. "
                         f"search_dirs=[{str(search_dirs)!r}]" if isinstance(search_dirs, (str, os.PathLike)) else
                         f"search_dirs={search_dirs!r}; expected a list of folders (or None: beside the ONNX file, "
                         "then the cache)")
    return [as_path(d, f"search_dirs[{i}]") for i, d in enumerate(search_dirs)]


#: Batch range of engines built on first use: TensorRT tunes for ``opt``; ``max`` is the Recognizer's
#: default ``max_batch`` (64) rounded up, so the default settings never need a second engine.
FIRST_USE_BATCHES = (1, 32, 128)


def build_cached_engine(onnx_path: Union[str, os.PathLike[str]], cache_dir: Union[str, os.PathLike[str]],
                        device: int = 0, min_max_batch: int = 1) -> Path:
    """Build the engine for ``onnx_path`` into ``cache_dir`` (first use), keeping a timing cache there.

    FP32 files are built from an FP16 copy made in the cache under a private hidden name and removed after the
    build (FP16 is the default precision on GPUs, as in jetson-inference); FP16 and s8s8 INT8 files are built as
    they are. The cache's engines of earlier versions of ``onnx_path`` built on this machine for this GPU model
    (:func:`~fsrfer_edge.engine_cache.prune_replaced`) are removed after the build: the runtime looks engines up by
    the file's hash and would never pick them again.

    Raises:
        BackendUnavailable: TensorRT or ``onnx`` (needed to read the model on the device) is missing.
        ModelError / EngineError: the file cannot be built (u8s8 INT8 file, parse or build failure).
    """
    from ..export.engine import build_engine, first_use_source, require_writable

    lo, opt, hi = FIRST_USE_BATCHES
    hi = max(hi, int(min_max_batch))
    cache = Path(cache_dir)
    require_writable(cache, f"an engine for {Path(onnx_path).name}")  # before the FP16 copy is made there
    # Under the cache's build lock from the FP16 copy on (re-entered by build_engine), so no copy waits in the cache
    # while another process builds; TensorRTBackend.for_onnx takes it first, to look for that build's engine.
    with build_lock(cache):
        src = first_use_source(Path(onnx_path), cache)
        logger.warning("building a TensorRT engine for %s on this GPU (first use; a few minutes on a Jetson). "
                       "It is cached in %s and later runs load it in milliseconds", Path(onnx_path).name, cache)
        try:
            engine = build_engine(src, cache, lo, opt, hi, timing_cache=cache / "timing.cache", device=device,
                                  source_onnx=Path(onnx_path))
        finally:
            if src != Path(onnx_path):
                src.unlink(missing_ok=True)  # the FP16 copy: the engine records the file it was made from
        try:
            for old in prune_replaced(cache, onnx_path, read_sidecar(engine)["key"].device):
                logger.info("removed %s from the engine cache: %s", old.path.name, old.stale)
        except Exception as exc:  # tidying up must not fail the engine just built
            logger.warning("could not remove the engines of earlier versions of %s from %s: %s",
                           Path(onnx_path).name, cache, exc)
    return engine


def find_engine(onnx_path: Union[str, os.PathLike[str]], tensorrt_version: str, compute_capability: str,
                search_dirs: Sequence[Union[str, os.PathLike[str]]], min_max_batch: int = 1,
                device: Optional[str] = None, exclude: Sequence[Union[str, os.PathLike[str]]] = ()) -> Path:
    """Find a cached engine for ``onnx_path`` that may run here (same TensorRT, GPU and ONNX file).

    Engines are named by :meth:`~fsrfer_edge.engine_cache.EngineKey.filename` with
    :func:`~fsrfer_edge.engine_cache.model_stem` and the file's SHA-256 (``face.int8-s8s8.onnx`` ->
    ``face.int8.<sha256 start>...engine``);
    each candidate is verified with :func:`~fsrfer_edge.engine_cache.check_engine` (``device``: this
    GPU's identity key). Among valid ones (:func:`~fsrfer_edge.engine_cache.choose_engine`), the precision
    first use builds comes first (an FP32 file's FP16 engine before an FP32 engine from ``fsrfer-export
    --engine``), then the smallest whose max batch is >= ``min_max_batch``, else the largest. ``exclude``: engine
    files passed over (one TensorRT could not read).

    Raises:
        EngineError: none is valid; the message lists what was tried and how to build one.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise EngineError(f"ONNX model {onnx_path} does not exist; expected the file the engine was built from")
    cc = compute_capability.replace(".", "")
    pattern = engine_pattern(model_stem(onnx_path), sha256_file(onnx_path), tensorrt_version, compute_capability)
    valid: list[tuple[EngineKey, Path]] = []
    tried: list[str] = []
    for d in search_dirs:
        for cand in sorted(Path(d).glob(pattern)):
            if any(cand == Path(e) for e in exclude):
                continue
            try:
                doc = check_engine(cand, tensorrt_version, compute_capability, onnx_path, device=device)
            except EngineError as exc:
                tried.append(f"{cand.name}: {exc}")
                continue
            valid.append((doc["key"], cand))
    if not valid:
        where = ", ".join(str(d) for d in search_dirs)
        detail = ("; rejected: " + " | ".join(tried)) if tried else ""
        raise EngineError(
            f"no TensorRT engine for {onnx_path.name} built with TensorRT {tensorrt_version} for GPU "
            f"sm{cc}{' (' + device + ')' if device else ''} was found in {where}{detail}. Build one on this device with: "
            f"fsrfer-export --engine {onnx_path}"
        )
    return choose_engine(valid, min_max_batch)


def tensorrt_unavailable_reason(onnx_path: Union[str, os.PathLike[str]], device: int = 0) -> Optional[str]:
    """Why ``backend="auto"`` cannot run ``onnx_path`` on TensorRT here, or None when it can.

    Checks, cheapest first: TensorRT imports; a CUDA binding reaches GPU ``device``; ``onnx``
    (needed to build the engine on the device) imports; the file is not a u8s8 INT8 file (made for
    ONNX Runtime CPU). Nothing is built or loaded.
    """
    try:
        import_tensorrt()
    except BackendUnavailable:
        return "TensorRT is not installed (JetPack ships it; on a desktop GPU: pip install tensorrt)"
    try:
        select_memory("auto", device).close()
    except (BackendUnavailable, EngineError) as exc:
        return f"TensorRT is installed but no CUDA binding can use GPU {device} ({exc})"
    try:
        from ..export.onnx_export import load_onnx, read_model_info

        info = read_model_info(load_onnx(onnx_path))
    except BackendUnavailable:
        return "building a TensorRT engine needs the 'onnx' package: pip install -e '.[jetson]'"
    if info.precision == "int8" and info.int8_scheme == "u8s8":
        return "it is a u8s8 INT8 file, made for ONNX Runtime CPU (TensorRT builds from the s8s8 file)"
    return None
