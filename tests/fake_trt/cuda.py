"""Fake CUDA layers: cuda-python's runtime module (``cuda.bindings.runtime`` / ``cuda.cudart``) and
``pycuda.driver``, with the call signatures and return conventions of the real ones.

"Device memory" is ordinary host memory, so pointer arithmetic, copies and frees are real. Failure
modes reproduce what users meet:

- ``FakeCudart(driver_error=35)``: cuda-python imports fine but every call returns
  ``cudaErrorInsufficientDriver`` (35), as cuda-python 13.x does on a CUDA 12 driver (JetPack 6) or
  12.x on JetPack 5's CUDA 11.4 driver;
- ``make_fake_pycuda(init_error=True)``: ``pycuda.driver.init()`` raises like ``cuInit`` failing.

Streams are asynchronous, as on a GPU (NVIDIA's "Stream synchronization behavior" and "API synchronization
behavior" pages of the CUDA runtime/driver docs). Each fake GPU has a :class:`FakeDevice` whose streams
hold queued work:

- ``cudaMemcpyAsync`` / ``memcpy_htod_async`` / ``memcpy_dtoh_async`` between device memory and *pinned*
  host memory (``cudaMallocHost`` / ``pagelocked_empty``) and the fake TensorRT's enqueue
  (``execute_async_v2/v3``, via :func:`launch`) only queue the work on their stream; it runs, in the
  order queued, when the stream is synchronised (``cudaStreamSynchronize``, ``Stream.synchronize``) or the
  whole device is (``cudaDeviceSynchronize``, ``Context.synchronize``, and ``cudaFree`` / pycuda's
  ``DeviceAllocation.free``, which synchronise the device). So a host read before the synchronisation
  sees the old bytes.
- With *pageable* host memory an async copy is staged, as the driver does: host-to-device reads the
  host bytes when called (the copy to the device still waits its turn on the stream), device-to-host
  waits for the stream and returns once the copy is done.
- The legacy default stream (handle 0) waits for all work queued on blocking streams, and blocking
  streams wait for it; non-blocking streams (``cudaStreamNonBlocking``, ``Stream(1)``) never wait for it.
  ``cudaMemcpy`` runs on it and returns once its copy is done.
- ``cudaFreeHost`` / ``HostAllocation.free`` do not synchronise (CUDA does not document that they do):
  queued work that touches freed pinned memory fails with AssertionError when it runs, instead of
  writing into freed memory.
- ``cudaStreamDestroy`` of a stream with queued work returns at once; the work still runs (at a device
  synchronisation).
"""
from __future__ import annotations

import ctypes
import enum
import itertools
import threading
import types
import weakref
from typing import Any, Callable, Optional

import numpy as np

CC = (8, 7)
GPU_NAME = "Orin"
GPU_SMS = 16
GPU_MEMORY = 64 * 2**30
#: DeviceIdentity.key of the fake GPU (an AGX Orin 64 GB); an Orin Nano would be orin-8sm-8g.
GPU_KEY = "orin-16sm-64g"

# -- streams and their queued work ----------------------------------------------------------------
#: Stream handles are unique across all fake GPUs, so :func:`launch` finds a stream from its handle alone.
_HANDLES = itertools.count(1001)
_STREAMS: "weakref.WeakValueDictionary[int, FakeStream]" = weakref.WeakValueDictionary()
_LAST_DEVICE: list["weakref.ReferenceType[FakeDevice]"] = []  # whose legacy stream handle 0 means


class _Op:
    """One piece of queued work: ``fn`` runs after every op in ``deps``; ``keep`` holds the memory it
    touches alive (the fake's memory is Python objects; a GPU's stays mapped until freed)."""

    def __init__(self, stream: "FakeStream", fn: Callable[[], None], deps: list["_Op"], keep: tuple[Any, ...]) -> None:
        self.stream, self.fn, self.deps, self.keep, self.done = stream, fn, deps, keep, False


class FakeStream:
    """A stream of a :class:`FakeDevice`: ``last`` is the op queued last on it (None: nothing queued yet)."""

    def __init__(self, device: "FakeDevice", handle: int, blocking: bool) -> None:
        self.device, self.handle, self.blocking = device, handle, blocking
        self.last: Optional[_Op] = None

    def synchronize(self) -> None:
        self.device.run(self.last)

    @property
    def pending(self) -> int:
        """How many ops queued on this stream have not run yet."""
        return sum(1 for op in self.device.queued if op.stream is self)


class FakeDevice:
    """The work queues of one fake GPU (one CUDA context): its streams and the legacy default stream."""

    def __init__(self) -> None:
        self.legacy = FakeStream(self, 0, blocking=True)
        self.streams: dict[int, FakeStream] = {}  # live streams by handle
        self.queued: list[_Op] = []  # ops not run yet, in the order queued
        self.lock = threading.RLock()
        _LAST_DEVICE[:] = [weakref.ref(self)]

    def create_stream(self, blocking: bool) -> FakeStream:
        stream = FakeStream(self, next(_HANDLES), blocking)
        with self.lock:
            self.streams[stream.handle] = stream
        _STREAMS[stream.handle] = stream
        return stream

    def destroy_stream(self, handle: int) -> None:
        """Forget the stream; its queued work still runs (at a device synchronisation), as cudaStreamDestroy says."""
        with self.lock:
            self.streams.pop(handle, None)
        _STREAMS.pop(handle, None)

    def stream(self, handle: int) -> FakeStream:
        if handle == 0:
            return self.legacy
        assert handle in self.streams, f"stream {handle:#x} is not a live stream of this fake GPU"
        return self.streams[handle]

    def enqueue(self, stream: FakeStream, fn: Callable[[], None], keep: tuple[Any, ...] = ()) -> _Op:
        """Queue ``fn`` on ``stream``, after the stream's earlier work (and, for the legacy stream and blocking
        streams, after each other's)."""
        with self.lock:
            deps = [stream.last] if stream.last is not None and not stream.last.done else []
            if stream is self.legacy:  # waits for every blocking stream, destroyed ones' queued work included
                deps += [op for op in self.queued if op.stream.blocking and op.stream is not self.legacy]
            elif stream.blocking and self.legacy.last is not None and not self.legacy.last.done:
                deps.append(self.legacy.last)
            op = _Op(stream, fn, deps, keep)
            stream.last = op
            self.queued.append(op)
            return op

    def run(self, target: Optional[_Op]) -> None:
        """Run ``target`` and everything it waits for (nothing if it has run)."""
        with self.lock:
            stack = [target] if target is not None else []
            while stack:
                op = stack[-1]
                if op.done:
                    stack.pop()
                    continue
                waiting = [d for d in op.deps if not d.done]
                if waiting:
                    stack.extend(reversed(waiting))
                    continue
                stack.pop()
                op.done = True
                self.queued.remove(op)
                try:
                    op.fn()
                finally:  # what it touched may go now
                    op.fn, op.deps, op.keep = None, [], ()  # type: ignore[assignment]

    def synchronize(self) -> None:
        """Run all queued work (cudaDeviceSynchronize)."""
        with self.lock:
            while self.queued:
                self.run(self.queued[0])


def launch(stream_handle: int, fn: Callable[[], None], keep: tuple[Any, ...] = ()) -> bool:
    """Queue ``fn`` (a fake kernel) on the stream whose handle TensorRT was given; False if there is no such
    stream (a real enqueue would fail with cudaErrorInvalidResourceHandle). Handle 0 is the legacy default stream
    of the fake GPU made last."""
    stream: Optional[FakeStream] = _STREAMS.get(int(stream_handle))
    if stream is None and int(stream_handle) == 0 and _LAST_DEVICE:
        device = _LAST_DEVICE[0]()
        stream = device.legacy if device is not None else None
    if stream is None:
        return False
    stream.device.enqueue(stream, fn, keep)
    return True


def _checked_copy(dst: int, src: int, count: int, live: Callable[[], bool], what: str) -> Callable[[], None]:
    """A queued copy that fails, instead of writing freed memory, if ``live()`` is False when it runs."""
    def copy() -> None:
        assert live(), f"a queued copy ran after its {what} was freed (free it only after the stream is synchronised)"
        ctypes.memmove(dst, src, count)
    return copy


class FakeCudart:
    """cuda-python's runtime API shape: every call returns (cudaError_t, *values)."""

    class cudaError_t(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorInvalidValue = 1
        cudaErrorMemoryAllocation = 2
        cudaErrorInsufficientDriver = 35
        cudaErrorNoDevice = 100

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    class cudaDeviceAttr(enum.IntEnum):
        cudaDevAttrMultiProcessorCount = 16
        cudaDevAttrComputeCapabilityMajor = 75
        cudaDevAttrComputeCapabilityMinor = 76

    class cudaStream_t:
        def __init__(self, value: int = 0) -> None:
            self.value = value

        def __int__(self) -> int:
            return self.value

    class cudaDeviceProp:
        def __init__(self, name: str, sms: int, mem: int) -> None:
            # cuda-python exposes the C char[256] as bytes, NUL-padded
            self.name = name.encode().ljust(256, b"\0")
            self.multiProcessorCount = sms
            self.totalGlobalMem = mem
            self.major, self.minor = CC

    cudaStreamDefault = 0
    cudaStreamNonBlocking = 1

    def __init__(self, driver_error: Optional[int] = None, name: str = GPU_NAME, sms: int = GPU_SMS,
                 memory: int = GPU_MEMORY, devices: int = 2) -> None:
        self.device: dict[int, Any] = {}
        self.host: dict[int, Any] = {}
        self.streams: dict[int, int] = {}  # handle -> flags
        self.copies = 0  # copies that have run (not merely been queued)
        self.fail: dict[str, "FakeCudart.cudaError_t"] = {}
        self.current = 0  # the calling thread's current device (one thread is enough here)
        self.set_device_calls: list[int] = []
        self.driver_error = driver_error
        self.props = self.cudaDeviceProp(name, sms, memory)
        self.devices = devices
        self.gpu = FakeDevice()

    def _ret(self, fn: str, *values: Any) -> tuple[Any, ...]:
        if self.driver_error is not None:
            return (self.cudaError_t(self.driver_error),) + tuple(0 for _ in values)
        if fn in self.fail:
            return (self.fail[fn],) + tuple(0 for _ in values)
        return (self.cudaError_t.cudaSuccess,) + values

    def _failing(self, fn: str) -> bool:
        return self.driver_error is not None or fn in self.fail

    def cudaGetErrorString(self, err: Any) -> tuple[Any, bytes]:
        return (self.cudaError_t.cudaSuccess, {2: b"out of memory", 1: b"invalid argument",
                                                35: b"CUDA driver version is insufficient for CUDA runtime version",
                                                100: b"no CUDA-capable device is detected"}.get(int(err), b"?"))

    def cudaGetDevice(self) -> tuple[Any, ...]:
        return self._ret("cudaGetDevice", self.current)

    def cudaSetDevice(self, dev: int) -> tuple[Any, ...]:
        if self.driver_error is None and not 0 <= dev < self.devices:
            return (self.cudaError_t.cudaErrorInvalidValue,)
        ret = self._ret("cudaSetDevice")
        if ret[0] == self.cudaError_t.cudaSuccess:
            self.current = dev
            self.set_device_calls.append(dev)
        return ret

    def cudaDeviceGetAttribute(self, attr: Any, dev: int) -> tuple[Any, ...]:
        value = {self.cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor: CC[0],
                 self.cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor: CC[1],
                 self.cudaDeviceAttr.cudaDevAttrMultiProcessorCount: self.props.multiProcessorCount}[attr]
        return self._ret("cudaDeviceGetAttribute", value)

    def cudaGetDeviceProperties(self, dev: int) -> tuple[Any, ...]:
        return self._ret("cudaGetDeviceProperties", self.props)

    def _alloc(self, table: dict[int, Any], fn: str, n: int) -> tuple[Any, ...]:
        if fn in self.fail or self.driver_error is not None:
            return self._ret(fn, 0)
        buf = ctypes.create_string_buffer(n)
        table[ctypes.addressof(buf)] = buf
        return self._ret(fn, ctypes.addressof(buf))

    def cudaMalloc(self, n: int) -> tuple[Any, ...]:
        return self._alloc(self.device, "cudaMalloc", n)

    def cudaMallocHost(self, n: int) -> tuple[Any, ...]:
        return self._alloc(self.host, "cudaMallocHost", n)

    def cudaFree(self, ptr: int) -> tuple[Any, ...]:
        if int(ptr) not in self.device:
            return (self.cudaError_t.cudaErrorInvalidValue,)
        if not self._failing("cudaFree"):
            self.gpu.synchronize()  # cudaFree synchronises the device before it frees
        self.device.pop(int(ptr))
        return self._ret("cudaFree")

    def cudaFreeHost(self, ptr: int) -> tuple[Any, ...]:
        # no synchronisation: queued work on this memory fails when it runs (see _checked_copy)
        if self.host.pop(int(ptr), None) is None:
            return (self.cudaError_t.cudaErrorInvalidValue,)
        return self._ret("cudaFreeHost")

    def cudaStreamCreate(self) -> tuple[Any, ...]:
        return self.cudaStreamCreateWithFlags(self.cudaStreamDefault)

    def cudaStreamCreateWithFlags(self, flags: int) -> tuple[Any, ...]:
        stream = self.gpu.create_stream(blocking=not int(flags) & self.cudaStreamNonBlocking)
        self.streams[stream.handle] = int(flags)
        return self._ret("cudaStreamCreateWithFlags", self.cudaStream_t(stream.handle))

    def cudaStreamDestroy(self, s: Any) -> tuple[Any, ...]:
        self.streams.pop(int(s), None)
        self.gpu.destroy_stream(int(s))
        return self._ret("cudaStreamDestroy")

    def cudaStreamSynchronize(self, s: Any) -> tuple[Any, ...]:
        assert int(s) == 0 or int(s) in self.streams
        if not self._failing("cudaStreamSynchronize"):
            self.gpu.stream(int(s)).synchronize()
        return self._ret("cudaStreamSynchronize")

    def cudaDeviceSynchronize(self) -> tuple[Any, ...]:
        if not self._failing("cudaDeviceSynchronize"):
            self.gpu.synchronize()
        return self._ret("cudaDeviceSynchronize")

    def _find(self, table: dict[int, Any], ptr: int, count: int) -> Optional[tuple[int, Any]]:
        """The allocation of ``table`` holding [ptr, ptr + count), as (address, buffer); None if none does."""
        return next(((p, b) for p, b in table.items() if p <= ptr and ptr + count <= p + len(b)), None)

    def _copy(self, dst: int, src: int, count: int, kind: Any, stream: FakeStream) -> None:
        """Queue a copy on ``stream``: pinned host memory is read/written when the copy runs, pageable host memory
        is staged (host-to-device reads it now; device-to-host waits for the stream and copies now)."""
        to_device = kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice
        dev_side, host_side = (dst, src) if to_device else (src, dst)
        dev = self._find(self.device, dev_side, count)
        assert dev is not None, "not device memory"
        pinned = self._find(self.host, host_side, count)
        def dev_live() -> bool:
            return dev[0] in self.device

        def live() -> bool:
            return dev_live() and pinned is not None and pinned[0] in self.host

        if pinned is not None:
            copy = _checked_copy(dst, src, count, live, "device or pinned host memory")
            keep: tuple[Any, ...] = (dev[1], pinned[1])
        elif to_device:
            staged = ctypes.create_string_buffer(ctypes.string_at(src, count), count)
            copy = _checked_copy(dst, ctypes.addressof(staged), count, dev_live, "device memory")
            keep = (dev[1], staged)
        else:  # pageable destination: queued, and waited for
            copy, keep = _checked_copy(dst, src, count, dev_live, "device memory"), (dev[1],)

        def run() -> None:
            copy()
            self.copies += 1

        op = self.gpu.enqueue(stream, run, keep)
        if not to_device and pinned is None:
            self.gpu.run(op)

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: Any, stream: Any) -> tuple[Any, ...]:
        assert isinstance(stream, self.cudaStream_t) and (int(stream) == 0 or int(stream) in self.streams)
        if not self._failing("cudaMemcpyAsync"):
            self._copy(int(dst), int(src), int(count), kind, self.gpu.stream(int(stream)))
        return self._ret("cudaMemcpyAsync")

    def cudaMemcpy(self, dst: int, src: int, count: int, kind: Any) -> tuple[Any, ...]:
        """On the legacy default stream; returns once the copy (and the work it waits for) is done."""
        if not self._failing("cudaMemcpy"):
            self._copy(int(dst), int(src), int(count), kind, self.gpu.legacy)
            self.gpu.legacy.synchronize()
        return self._ret("cudaMemcpy")

    @property
    def pending(self) -> int:
        """Queued work (copies and kernels) not run yet."""
        return len(self.gpu.queued)


def make_fake_pycuda(init_error: bool = False, name: str = GPU_NAME, sms: int = GPU_SMS,
                     memory: int = GPU_MEMORY) -> types.ModuleType:
    """pycuda.driver's shape: allocations are objects with int() and free()."""
    drv = types.ModuleType("pycuda.driver")
    gpu = FakeDevice()
    state: dict[str, Any] = {"live": {}, "pushed": 0, "copies": 0, "stream_flags": [], "gpu": gpu}
    drv.state = state  # type: ignore[attr-defined]

    class Error(Exception):
        pass

    class RuntimeError_(Error):  # pycuda._driver.RuntimeError derives from pycuda.driver.Error
        pass

    class DeviceAllocation:
        def __init__(self, n: int) -> None:
            self.buf = ctypes.create_string_buffer(n)
            state["live"][id(self)] = self

        def __int__(self) -> int:
            return ctypes.addressof(self.buf)

        def free(self) -> None:
            gpu.synchronize()  # cuMemFree synchronises the device before it frees
            state["live"].pop(id(self))

    class HostAllocation(bytearray):
        def free(self) -> None:
            # no synchronisation: queued work on this memory fails when it runs (see _checked_copy)
            state["live"].pop(id(self))

    class Context:
        @staticmethod
        def pop() -> None:
            state["pushed"] -= 1

        @staticmethod
        def synchronize() -> None:
            assert state["pushed"] > 0, "no context current"
            gpu.synchronize()

    class PrimaryContext:
        """pycuda's primary_context: detach() of a context that is not current pushes it and releases it
        (cuDevicePrimaryCtxRelease), which never pops, so it stays current; the destructor detaches too."""

        def __init__(self) -> None:
            self.valid = True
            state["retained"] = state.get("retained", 0) + 1

        def push(self) -> None:
            state["pushed"] += 1

        def detach(self) -> None:
            if not self.valid:
                raise Error("context::detach: cannot detach from invalid context")
            self.valid = False
            state["retained"] -= 1
            state["pushed"] += 1  # pushed, released, never popped: left current on the thread

        def __del__(self) -> None:
            if self.valid:
                self.detach()

    class device_attribute(enum.IntEnum):
        MULTIPROCESSOR_COUNT = 16

    class Device:
        def __init__(self, n: int) -> None:
            self.n = n

        def retain_primary_context(self) -> PrimaryContext:
            return PrimaryContext()

        def compute_capability(self) -> tuple[int, int]:
            return CC

        def name(self) -> str:
            return name

        def total_memory(self) -> int:
            return memory

        def get_attribute(self, attr: Any) -> int:
            assert attr == device_attribute.MULTIPROCESSOR_COUNT
            return sms

    class Stream:
        def __init__(self, flags: int = 0) -> None:
            state["stream_flags"].append(flags)
            self._stream = gpu.create_stream(blocking=not int(flags) & 1)  # CU_STREAM_NON_BLOCKING = 0x1
            self.handle = self._stream.handle

        def synchronize(self) -> None:
            assert state["pushed"] > 0, "no context current"
            self._stream.synchronize()

        def __del__(self) -> None:  # pycuda destroys the stream (cuStreamDestroy) with its last reference
            try:
                gpu.destroy_stream(self.handle)
            except (AttributeError, TypeError):  # at interpreter exit the module's globals may be gone
                pass

    def pagelocked_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        assert state["pushed"] > 0, "no context current"
        buf = HostAllocation(int(np.prod(shape)) * np.dtype(dtype).itemsize)
        state["live"][id(buf)] = buf
        return np.frombuffer(buf, dtype=dtype).reshape(shape)

    def host_allocation(arr: np.ndarray) -> Optional[HostAllocation]:
        """The pinned allocation ``arr`` views (through views and buffers), or None for pageable memory."""
        base: Any = arr
        while isinstance(base, (np.ndarray, memoryview)):
            base = base.base if isinstance(base, np.ndarray) else base.obj
        return base if isinstance(base, HostAllocation) else None

    def device_allocation(ptr: int, count: int) -> DeviceAllocation:
        for a in list(state["live"].values()):
            if isinstance(a, DeviceAllocation) and int(a) <= ptr and ptr + count <= int(a) + len(a.buf):
                return a
        raise AssertionError("not device memory")

    def stream_of(stream: Any) -> FakeStream:
        return gpu.legacy if stream is None else gpu.stream(stream.handle)

    def enqueue_copy(dst: int, src: int, count: int, dev: DeviceAllocation, pinned: Optional[HostAllocation],
                     stream: FakeStream, keep: Any) -> _Op:
        def live() -> bool:
            return id(dev) in state["live"] and (pinned is None or id(pinned) in state["live"])

        copy = _checked_copy(dst, src, count, live, "device or pinned host memory")

        def run() -> None:
            copy()
            state["copies"] += 1

        return gpu.enqueue(stream, run, (dev, keep))

    def memcpy_htod_async(dst: Any, src: np.ndarray, stream: Any = None) -> None:
        dev = device_allocation(int(dst), src.nbytes)
        pinned = host_allocation(src)
        if pinned is None:  # pageable: staged now, as the driver does
            staged = np.array(src, copy=True)
            enqueue_copy(int(dst), staged.ctypes.data, src.nbytes, dev, None, stream_of(stream), staged)
        else:
            enqueue_copy(int(dst), src.ctypes.data, src.nbytes, dev, pinned, stream_of(stream), src)

    def memcpy_dtoh_async(dst: np.ndarray, src: Any, stream: Any = None) -> None:
        dev = device_allocation(int(src), dst.nbytes)
        pinned = host_allocation(dst)
        op = enqueue_copy(dst.ctypes.data, int(src), dst.nbytes, dev, pinned, stream_of(stream), dst)
        if pinned is None:  # pageable: returns once the copy is done
            gpu.run(op)

    def init() -> None:
        if init_error:
            raise RuntimeError_("cuInit failed: CUDA driver version is insufficient for CUDA runtime version")

    drv.Error = Error  # type: ignore[attr-defined]
    drv.init = init  # type: ignore[attr-defined]
    drv.Device = Device  # type: ignore[attr-defined]
    drv.device_attribute = device_attribute  # type: ignore[attr-defined]
    drv.Context = Context  # type: ignore[attr-defined]
    drv.Stream = Stream  # type: ignore[attr-defined]
    drv.mem_alloc = DeviceAllocation  # type: ignore[attr-defined]
    drv.pagelocked_empty = pagelocked_empty  # type: ignore[attr-defined]
    drv.memcpy_htod_async = memcpy_htod_async  # type: ignore[attr-defined]
    drv.memcpy_dtoh_async = memcpy_dtoh_async  # type: ignore[attr-defined]
    return drv
