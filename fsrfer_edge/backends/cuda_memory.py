"""A small CUDA memory layer for the TensorRT backend, with two interchangeable implementations.

- :class:`CudaPythonMemory` uses NVIDIA's ``cuda-python`` runtime bindings
  (``cuda.bindings.runtime`` in cuda-python >= 12.6/13, ``cuda.cudart`` in older releases);
  every call's error code is checked and turned into :class:`~fsrfer_edge.errors.EngineError`.
- :class:`PyCudaMemory` uses ``pycuda.driver`` (common on JetPack images).

Both work on the device's *primary* context, which is the one the CUDA runtime and TensorRT use.
Neither library is imported until an implementation is created (pip extra ``tensorrt``).
"""
from __future__ import annotations

import abc
import contextlib
import ctypes
import dataclasses
import logging
import os
import re
import threading
from types import ModuleType
from typing import Any, Iterator, Optional

import numpy as np

from ..errors import BackendUnavailable, EngineError, InputError, require

logger = logging.getLogger(__name__)

MEMORY_CHOICES = ("auto", "cuda-python", "pycuda")


@dataclasses.dataclass(eq=False)
class DeviceBuffer:
    """A device allocation: ``ptr`` is the device address TensorRT is given."""

    ptr: int
    nbytes: int
    handle: Any = None  # what the implementation needs to free it


@dataclasses.dataclass(frozen=True)
class DeviceIdentity:
    """What distinguishes one GPU model from another for TensorRT engines.

    The compute capability alone does not: a Jetson AGX Orin and an Orin Nano are both sm87, and an
    engine tuned for one must not be loaded on the other. CUDA reports every Orin module as "Orin",
    so the number of multiprocessors and the memory size go into the identity too.
    """

    compute_capability: str  # "8.7"
    name: str  # as CUDA reports it, e.g. "Orin", "NVIDIA H200"
    multiprocessors: int
    memory_gib: int

    @property
    def key(self) -> str:
        """A file-name-safe identity, e.g. ``orin-16sm-61g`` or ``nvidia-h200-132sm-140g``."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "gpu"
        return f"{slug}-{self.multiprocessors}sm-{self.memory_gib}g"


@dataclasses.dataclass(eq=False)
class CudaStream:
    """A CUDA stream: ``ptr`` is the ``cudaStream_t`` value as an int (for TensorRT)."""

    ptr: int
    handle: Any = None


#: What to do instead of using CUDA across a fork, for the errors below.
FORK_ADVICE = ("open the TensorRT backend in the child process, from a parent that has not used CUDA (with gunicorn: "
               "without --preload, or in a post_fork hook), or start the workers with multiprocessing's 'spawn' "
               "start method (multiprocessing.get_context('spawn'))")

#: The process that last opened a CUDA memory layer, i.e. initialised CUDA (None: none yet). A process forked from
#: it inherits this value: CUDA "does not duplicate any of its internal data structures or threads" on fork, and a
#: forked child's CUDA calls fail (cudaErrorInitializationError, pycuda's cuInit) or are undefined behaviour.
_CUDA_PROCESS: Optional[int] = None


def explain_fork(exc: EngineError) -> EngineError:
    """``exc`` (opening CUDA failed), with the likely reason added where this process is a fork of one that had
    used CUDA; else ``exc`` itself."""
    parent = _CUDA_PROCESS
    if parent is None or parent == os.getpid():
        return exc
    return EngineError(
        f"{exc}. This process ({os.getpid()}) is a fork of process {parent}, which had used CUDA, and a forked "
        f"child of a process that used CUDA cannot use CUDA (CUDA contexts do not survive fork). To run TensorRT in "
        f"several processes, {FORK_ADVICE}"
    )


def forked_error(what: str, opened_in: int) -> EngineError:
    """The error for ``what`` (made in process ``opened_in``) used in this process, a fork of that one."""
    return EngineError(
        f"{what} was opened in process {opened_in}, and this process ({os.getpid()}) is a fork of it: CUDA contexts, "
        f"streams and device memory do not survive fork, and a forked child of a process that used CUDA cannot use "
        f"CUDA at all. To run TensorRT in several processes, {FORK_ADVICE}"
    )


class CudaMemory(abc.ABC):
    """Device/pinned-host allocation, async copies and streams on one CUDA device.

    A layer belongs to the process that opened it: in a process forked from that one every call that would reach
    CUDA raises EngineError (:meth:`check_process`), and so does opening a new layer there.
    """

    #: Name used in ``memory=`` and in benchmark records.
    name: str = "base"

    def __init__(self, device: int = 0) -> None:
        if isinstance(device, bool) or not isinstance(device, int) or device < 0:
            raise InputError(f"device={device!r}; expected a CUDA device index >= 0")
        self.device = device
        self._pid = os.getpid()

    def _opened(self) -> None:
        """Note that this process has initialised CUDA (called once a layer works)."""
        global _CUDA_PROCESS
        _CUDA_PROCESS = self._pid

    @property
    def forked(self) -> bool:
        """True in a process forked from the one that opened this layer, where it must not be used."""
        return os.getpid() != getattr(self, "_pid", os.getpid())

    def check_process(self) -> None:
        """Raise EngineError in a process forked from the one that opened this layer, before any CUDA call."""
        if self.forked:
            raise forked_error(f"this {type(self).__name__} (CUDA device {self.device})", self._pid)

    @abc.abstractmethod
    def context(self) -> contextlib.AbstractContextManager[None]:
        """Make this device current on the calling thread for the duration of a ``with`` block."""

    @abc.abstractmethod
    def device_compute_capability(self, device: Optional[int] = None) -> str:
        """Compute capability of ``device`` (default: this one) as ``"major.minor"``, e.g. ``"8.7"``."""

    @abc.abstractmethod
    def device_identity(self, device: Optional[int] = None) -> DeviceIdentity:
        """Compute capability, name, multiprocessor count and memory of ``device`` (default: this one)."""

    @abc.abstractmethod
    def alloc_device(self, nbytes: int) -> DeviceBuffer:
        """Allocate ``nbytes`` of device memory.

        Raises:
            InputError: ``nbytes`` is not an integer >= 0.
        """

    @abc.abstractmethod
    def alloc_host(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """Allocate a page-locked (pinned) host array, needed for truly asynchronous copies.

        Raises:
            InputError: ``shape`` is not a tuple (or list) of integers >= 0, or ``dtype`` not a NumPy number type.
        """

    @abc.abstractmethod
    def create_stream(self) -> CudaStream:
        """Create a non-blocking CUDA stream (it never synchronises with the legacy default stream,
        which PyTorch and other libraries in the same process may be using)."""

    @abc.abstractmethod
    def htod_async(self, dst: DeviceBuffer, src_host: np.ndarray, stream: CudaStream) -> None:
        """Copy ``src_host.nbytes`` bytes (a C-contiguous, ideally pinned array) to ``dst``."""

    @abc.abstractmethod
    def dtoh_async(self, dst_host: np.ndarray, src: DeviceBuffer, stream: CudaStream) -> None:
        """Copy ``dst_host.nbytes`` bytes from ``src`` into a C-contiguous, writable host array."""

    @abc.abstractmethod
    def synchronize(self, stream: CudaStream) -> None:
        """Wait until all work queued on ``stream`` has finished."""

    @abc.abstractmethod
    def free(self, obj: Any) -> None:
        """Free a :class:`DeviceBuffer`, a pinned array from :meth:`alloc_host`, or a :class:`CudaStream`."""

    def close(self) -> None:
        """Release what the implementation holds for the device (e.g. a retained context)."""

    @staticmethod
    def _check_nbytes(nbytes: Any) -> int:
        """A size in bytes as an int; a bool, float, str or negative number is an InputError (not truncated)."""
        if isinstance(nbytes, (bool, np.bool_)) or not isinstance(nbytes, (int, np.integer)) or nbytes < 0:
            raise InputError(f"nbytes={nbytes!r}; expected an integer >= 0 (the size of the allocation in bytes)")
        return int(nbytes)

    @staticmethod
    def _check_host_array(shape: Any, dtype: Any) -> tuple[tuple[int, ...], np.dtype]:
        """The shape and dtype of a pinned array, checked before anything is allocated."""
        if not isinstance(shape, (tuple, list)) or any(
                isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < 0 for d in shape):
            raise InputError(f"shape={shape!r}; expected a tuple of integers >= 0, e.g. (8, 1, 48, 48)")
        try:
            dt = np.dtype(dtype) if dtype is not None else None
        except TypeError:
            dt = None
        if dt is None or dt.kind not in "biufc":  # an object array in raw memory would hold stray pointers
            raise InputError(f"dtype={dtype!r}; expected a NumPy number type such as np.float32")
        return tuple(int(d) for d in shape), dt

    @staticmethod
    def _check_copy(host: np.ndarray, dev: DeviceBuffer, into_host: bool = False) -> None:
        if not host.flags.c_contiguous:
            raise InputError("host array for a CUDA copy must be C-contiguous; use np.ascontiguousarray")
        if into_host and not host.flags.writeable:
            raise InputError("host array for a copy from the device is read-only; expected a writable array, e.g. "
                             "one from alloc_host")
        if host.nbytes > dev.nbytes:
            raise InputError(f"copy of {host.nbytes} bytes does not fit the {dev.nbytes}-byte device buffer")


def note_cleanup_failure(original: BaseException, what: str, cleanup: BaseException) -> None:
    """Record that a cleanup step (``what``) failed with ``cleanup`` while ``original`` was on its way up: logged,
    and noted on ``original`` (Python 3.11+), which stays the error raised, as the cause of the trouble."""
    message = f"{what} also failed, while handling {type(original).__name__}: {cleanup}"
    logger.warning("%s", message)
    if hasattr(original, "add_note"):  # Python >= 3.11
        original.add_note(message)


# ---------------------------------------------------------------------------------------------
# cuda-python
# ---------------------------------------------------------------------------------------------
def native_handle(obj: Any) -> int:
    """The address a cuda-python object (a ``cudaStream_t``) wraps, as TensorRT takes it. cuda-bindings 13
    deprecates ``int(obj)`` for this ("subject to future removal"; its 13.0.0 release notes) in favour of
    ``cuda.bindings.utils.get_cuda_native_handle``, which older releases lack: that where it imports, else int()."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(obj)
    return int(get_cuda_native_handle(obj))


def import_cudart() -> ModuleType:
    """The cuda-python runtime module, from whichever layout this cuda-python release has."""
    try:
        from cuda.bindings import (
            runtime,  # cuda-python >= 12.6 (the only layout in 13.x)
        )
        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart  # cuda-python < 12.6
        return cudart
    except ImportError as exc:
        raise BackendUnavailable(
            f"cuda-python is needed for the 'cuda-python' memory layer but could not be imported ({exc}). "
            "Install it with: pip install -e '.[tensorrt]'"
        ) from exc


class CudaPythonMemory(CudaMemory):
    """CUDA memory through cuda-python's runtime API (``cudaMalloc``, ``cudaMemcpyAsync``...)."""

    name = "cuda-python"

    def __init__(self, device: int = 0) -> None:
        super().__init__(device)
        self._rt = import_cudart()
        self._host_ptrs: set[int] = set()  # pointers from cudaMallocHost not yet freed
        # cuda-python imports without a driver; the first call is where a missing GPU, or a
        # cuda-python built for a newer CUDA than the driver (13.x on JetPack 6), shows.
        try:
            with self.context():
                pass
        except EngineError as exc:
            explained = explain_fork(exc)
            if explained is exc:
                raise
            raise explained from exc
        self._opened()

    def _call(self, fn: str, *args: Any) -> Any:
        """Call ``cudart.<fn>``, raise EngineError on a non-success code, return the value(s)."""
        self.check_process()  # every CUDA call of this layer comes through here
        result = getattr(self._rt, fn)(*args)
        err, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if err != self._rt.cudaError_t.cudaSuccess:
            raise EngineError(f"CUDA call {fn} failed: {self._error_string(err)} (error {int(err)}) on device {self.device}")
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    def _error_string(self, err: Any) -> str:
        res = self._rt.cudaGetErrorString(err)
        msg = res[1] if isinstance(res, tuple) else res
        return msg.decode(errors="replace") if isinstance(msg, bytes) else str(msg)

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        # The current device is per thread; set it on whichever thread runs inference, and give
        # the caller's thread back the device it had (other libraries in the process rely on it).
        previous = int(self._call("cudaGetDevice"))
        self._call("cudaSetDevice", self.device)
        try:
            yield
        except BaseException as exc:
            # The error raised inside is the one to report; a failed restore (a sticky CUDA error fails
            # every call) only goes with it.
            if previous != self.device:
                try:
                    self._restore_device(previous)
                except Exception as cleanup:  # noqa: BLE001 - reported with the original error
                    note_cleanup_failure(exc, f"giving the thread back CUDA device {previous}", cleanup)
            raise
        if previous != self.device:
            self._restore_device(previous)

    def _restore_device(self, previous: int) -> None:
        result = self._rt.cudaSetDevice(previous)
        err = result[0] if isinstance(result, tuple) else result
        if err != self._rt.cudaError_t.cudaSuccess:
            raise EngineError(f"CUDA call cudaSetDevice({previous}) failed: {self._error_string(err)} (error "
                              f"{int(err)}); this thread's CUDA device {previous} could not be made current again "
                              f"after work on device {self.device}")

    def device_compute_capability(self, device: Optional[int] = None) -> str:
        dev = self.device if device is None else device
        attr = self._rt.cudaDeviceAttr
        major = self._call("cudaDeviceGetAttribute", attr.cudaDevAttrComputeCapabilityMajor, dev)
        minor = self._call("cudaDeviceGetAttribute", attr.cudaDevAttrComputeCapabilityMinor, dev)
        return f"{int(major)}.{int(minor)}"

    def device_identity(self, device: Optional[int] = None) -> DeviceIdentity:
        dev = self.device if device is None else device
        prop = self._call("cudaGetDeviceProperties", dev)
        name = prop.name
        name = name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(name, bytes) else str(name)
        return DeviceIdentity(self.device_compute_capability(dev), name.strip(), int(prop.multiProcessorCount),
                              int(round(int(prop.totalGlobalMem) / 2**30)))

    def alloc_device(self, nbytes: int) -> DeviceBuffer:
        nbytes = self._check_nbytes(nbytes)
        ptr = self._call("cudaMalloc", nbytes)
        return DeviceBuffer(ptr=int(ptr), nbytes=nbytes, handle=ptr)

    def alloc_host(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        shape, dt = self._check_host_array(shape, dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        ptr = int(self._call("cudaMallocHost", max(nbytes, 1)))
        # numpy's stubs do not list ctypes arrays among buffers, which frombuffer reads as any other
        raw: Any = (ctypes.c_uint8 * max(nbytes, 1)).from_address(ptr)
        arr = np.frombuffer(raw, dtype=np.uint8, count=nbytes).view(dt).reshape(shape)
        self._host_ptrs.add(ptr)
        return arr

    def create_stream(self) -> CudaStream:
        flags = int(getattr(self._rt, "cudaStreamNonBlocking", 1))  # 0x01 in cuda_runtime_api.h
        stream = self._call("cudaStreamCreateWithFlags", flags)
        return CudaStream(ptr=native_handle(stream), handle=stream)

    def htod_async(self, dst: DeviceBuffer, src_host: np.ndarray, stream: CudaStream) -> None:
        self._check_copy(src_host, dst)
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync", dst.ptr, src_host.ctypes.data, src_host.nbytes, kind, stream.handle)

    def dtoh_async(self, dst_host: np.ndarray, src: DeviceBuffer, stream: CudaStream) -> None:
        self._check_copy(dst_host, src, into_host=True)
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync", dst_host.ctypes.data, src.ptr, dst_host.nbytes, kind, stream.handle)

    def synchronize(self, stream: CudaStream) -> None:
        self._call("cudaStreamSynchronize", stream.handle)

    def free(self, obj: Any) -> None:
        if isinstance(obj, DeviceBuffer):
            self._call("cudaFree", obj.handle)
        elif isinstance(obj, CudaStream):
            self._call("cudaStreamDestroy", obj.handle)
        elif isinstance(obj, np.ndarray):
            ptr = int(obj.ctypes.data)
            if ptr not in self._host_ptrs:
                raise InputError("this array was not allocated by this CudaPythonMemory.alloc_host (or was freed)")
            self._host_ptrs.discard(ptr)
            self._call("cudaFreeHost", ptr)
        else:
            raise InputError(f"cannot free a {type(obj).__name__}; expected a DeviceBuffer, CudaStream or pinned array")


# ---------------------------------------------------------------------------------------------
# PyCUDA
# ---------------------------------------------------------------------------------------------
#: Each device's primary context for pycuda, retained once per process and never released, as
#: ``pycuda.autoprimaryctx`` does. pycuda's ``detach()`` of a primary context that is not current pushes
#: it and calls cuDevicePrimaryCtxRelease, which never pops (src/cpp/cuda.hpp), so a released context
#: stays current on the calling thread (reset, once its last reference is gone); a context object that
#: is garbage-collected detaches the same way. Keyed by (the pycuda.driver module, device index); the
#: module is kept with its contexts.
_PYCUDA_PRIMARY: dict[tuple[int, int], tuple[ModuleType, Any]] = {}
_PYCUDA_PRIMARY_LOCK = threading.Lock()


def _pycuda_primary_context(cuda: ModuleType, device: int) -> Any:
    with _PYCUDA_PRIMARY_LOCK:
        key = (id(cuda), device)
        if key not in _PYCUDA_PRIMARY:
            _PYCUDA_PRIMARY[key] = (cuda, cuda.Device(device).retain_primary_context())
        return _PYCUDA_PRIMARY[key][1]


class PyCudaMemory(CudaMemory):
    """CUDA memory through ``pycuda.driver`` on the device's primary context (retained for the
    process's lifetime, see ``_PYCUDA_PRIMARY``)."""

    name = "pycuda"

    def __init__(self, device: int = 0) -> None:
        super().__init__(device)
        self._cuda = require("pycuda.driver", "pycuda", "the 'pycuda' memory layer")
        self._local = threading.local()
        try:
            self._cuda.init()
            self._dev = self._cuda.Device(device)
            # The primary context is shared with the CUDA runtime, hence with TensorRT.
            self._ctx = _pycuda_primary_context(self._cuda, device)
        except self._cuda.Error as exc:
            raise explain_fork(EngineError(f"pycuda could not open CUDA device {device}: {exc}")) from exc
        self._opened()

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        # A pycuda context is current per thread; re-entrant use on one thread pushes only once.
        self.check_process()  # every call of this layer that reaches CUDA comes through here or checks itself
        depth = getattr(self._local, "depth", 0)
        if self._ctx is None:
            raise EngineError(f"this pycuda memory layer for device {self.device} is closed")
        if depth == 0:
            try:
                self._ctx.push()
            except self._cuda.Error as exc:
                raise EngineError(
                    f"pycuda could not make the primary CUDA context of device {self.device} current on this "
                    f"thread (cuCtxPushCurrent: {exc}). An earlier CUDA error in this process (an illegal memory "
                    "access, a device reset by another library) leaves the context unusable: restart the process; "
                    "if it happens again, check the GPU (nvidia-smi, or tegrastats on a Jetson)"
                ) from exc
        self._local.depth = depth + 1
        try:
            yield
        except BaseException as exc:
            try:
                self._leave()
            except Exception as cleanup:  # noqa: BLE001 - reported with the original error
                note_cleanup_failure(exc, f"making the CUDA context of device {self.device} not current", cleanup)
            raise
        self._leave()

    def _leave(self) -> None:
        self._local.depth -= 1
        if self._local.depth == 0:
            try:
                self._cuda.Context.pop()
            except self._cuda.Error as exc:
                raise EngineError(f"pycuda could not pop the CUDA context of device {self.device} off this "
                                  f"thread (cuCtxPopCurrent: {exc})") from exc

    def _wrap(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            with self.context():
                return fn(*args)
        except self._cuda.Error as exc:
            raise EngineError(f"pycuda {what} failed on device {self.device}: {exc}") from exc

    def device_compute_capability(self, device: Optional[int] = None) -> str:
        self.check_process()
        dev = self._dev if device is None else self._cuda.Device(device)
        major, minor = dev.compute_capability()
        return f"{int(major)}.{int(minor)}"

    def device_identity(self, device: Optional[int] = None) -> DeviceIdentity:
        self.check_process()
        dev = self._dev if device is None else self._cuda.Device(device)
        try:
            sms = dev.get_attribute(self._cuda.device_attribute.MULTIPROCESSOR_COUNT)
            return DeviceIdentity(self.device_compute_capability(device), str(dev.name()).strip(), int(sms),
                                  int(round(int(dev.total_memory()) / 2**30)))
        except self._cuda.Error as exc:
            raise EngineError(f"pycuda could not describe CUDA device {self.device}: {exc}") from exc

    def alloc_device(self, nbytes: int) -> DeviceBuffer:
        nbytes = self._check_nbytes(nbytes)
        alloc = self._wrap("mem_alloc", self._cuda.mem_alloc, nbytes)
        return DeviceBuffer(ptr=int(alloc), nbytes=nbytes, handle=alloc)

    def alloc_host(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        shape, dt = self._check_host_array(shape, dtype)
        arr: np.ndarray = self._wrap("pagelocked_empty", self._cuda.pagelocked_empty, shape, dt)
        return arr

    def create_stream(self) -> CudaStream:
        stream = self._wrap("Stream", self._cuda.Stream, 1)  # flags: CU_STREAM_NON_BLOCKING (0x1)
        return CudaStream(ptr=int(stream.handle), handle=stream)

    def htod_async(self, dst: DeviceBuffer, src_host: np.ndarray, stream: CudaStream) -> None:
        self._check_copy(src_host, dst)
        self._wrap("memcpy_htod_async", self._cuda.memcpy_htod_async, dst.ptr, src_host, stream.handle)

    def dtoh_async(self, dst_host: np.ndarray, src: DeviceBuffer, stream: CudaStream) -> None:
        self._check_copy(dst_host, src, into_host=True)
        self._wrap("memcpy_dtoh_async", self._cuda.memcpy_dtoh_async, dst_host, src.ptr, stream.handle)

    def synchronize(self, stream: CudaStream) -> None:
        self._wrap("Stream.synchronize", stream.handle.synchronize)

    def free(self, obj: Any) -> None:
        self.check_process()  # dropping the stream below would destroy it (cuStreamDestroy) in the child
        if isinstance(obj, DeviceBuffer):
            self._wrap("DeviceAllocation.free", obj.handle.free)
        elif isinstance(obj, CudaStream):
            obj.handle = None  # pycuda destroys the stream when its last reference goes
        elif isinstance(obj, np.ndarray):
            # pycuda makes the HostAllocation the array's base; views and buffers may sit between.
            base: Any = obj.base
            while isinstance(base, (np.ndarray, memoryview)) and not hasattr(base, "free"):
                base = base.base if isinstance(base, np.ndarray) else base.obj
            if base is None or not hasattr(base, "free"):
                raise InputError("this array was not allocated by PyCudaMemory.alloc_host")
            self._wrap("HostAllocation.free", base.free)
        else:
            raise InputError(f"cannot free a {type(obj).__name__}; expected a DeviceBuffer, CudaStream or pinned array")

    def close(self) -> None:
        # Not detached: the primary context stays retained for the process (see _PYCUDA_PRIMARY).
        self._ctx = None


# ---------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------
_IMPLEMENTATIONS: dict[str, type[CudaMemory]] = {"cuda-python": CudaPythonMemory, "pycuda": PyCudaMemory}


def select_memory(memory: str = "auto", device: int = 0) -> CudaMemory:
    """Create the CUDA memory layer by name.

    Args:
        memory: ``"auto"`` (cuda-python if installed, else pycuda), ``"cuda-python"`` or ``"pycuda"``.
        device: CUDA device index.

    Raises:
        InputError: unknown ``memory`` name.
        BackendUnavailable: neither library (or the named one) is installed; names the ``tensorrt`` extra.
        EngineError: the library is there but CUDA failed (no GPU, driver too old...); with
            ``"auto"``, only when every installed library failed so. In a process forked from one that had
            opened a memory layer (where CUDA cannot be used), the error says so.

    ``"auto"`` tries the next library both when one is missing and when it imports but cannot talk
    to the driver: a cuda-python release built for a newer CUDA than the driver (13.x needs R580+)
    imports fine and fails at ``cudaSetDevice``, while JetPack's pycuda works.
    """
    if memory not in MEMORY_CHOICES:
        raise InputError(f"memory={memory!r}; expected one of {MEMORY_CHOICES}")
    if memory != "auto":
        return _IMPLEMENTATIONS[memory](device)
    reasons = []
    failed = False
    for name, cls in _IMPLEMENTATIONS.items():
        try:
            return cls(device)
        except BackendUnavailable as exc:
            reasons.append(f"{name}: {exc}")
        except EngineError as exc:
            failed = True
            reasons.append(f"{name}: {exc}")
            logger.info("CUDA memory layer %s imports but does not work here (%s); trying the next one", name, exc)
    if failed:
        raise EngineError(
            "no CUDA memory layer could use GPU " + str(device) + ": " + " | ".join(reasons) + ". Check that a GPU "
            "is present and that cuda-python matches the driver's CUDA major version (pip install "
            "'.[jetson]' picks it per JetPack), or install pycuda"
        )
    raise BackendUnavailable(
        "running TensorRT engines needs cuda-python or pycuda, and neither could be imported. "
        "Install one with: pip install -e '.[tensorrt]' (cuda-python) or '.[pycuda]'. "
        "Details: " + " | ".join(reasons)
    )
