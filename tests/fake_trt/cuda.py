"""Fake CUDA layers: cuda-python's runtime module (``cuda.bindings.runtime`` / ``cuda.cudart``) and
``pycuda.driver``, with the call signatures and return conventions of the real ones.

"Device memory" is ordinary host memory, so pointer arithmetic, copies and frees are real. Failure
modes reproduce what users meet:

- ``FakeCudart(driver_error=35)``: cuda-python imports fine but every call returns
  ``cudaErrorInsufficientDriver`` (35), as cuda-python 13.x does on a CUDA 12 driver (JetPack 6) or
  12.x on JetPack 5's CUDA 11.4 driver;
- ``make_fake_pycuda(init_error=True)``: ``pycuda.driver.init()`` raises like ``cuInit`` failing.
"""
from __future__ import annotations

import ctypes
import enum
import types
from typing import Any, Optional

import numpy as np

CC = (8, 7)
GPU_NAME = "Orin"
GPU_SMS = 16
GPU_MEMORY = 64 * 2**30
#: DeviceIdentity.key of the fake GPU (an AGX Orin 64 GB); an Orin Nano would be orin-8sm-8g.
GPU_KEY = "orin-16sm-64g"


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
        def __init__(self, value: int) -> None:
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
        self.copies = 0
        self.fail: dict[str, "FakeCudart.cudaError_t"] = {}
        self.current = 0  # the calling thread's current device (one thread is enough here)
        self.set_device_calls: list[int] = []
        self.driver_error = driver_error
        self.props = self.cudaDeviceProp(name, sms, memory)
        self.devices = devices
        self._next_stream = 1000

    def _ret(self, fn: str, *values: Any) -> tuple[Any, ...]:
        if self.driver_error is not None:
            return (self.cudaError_t(self.driver_error),) + tuple(0 for _ in values)
        if fn in self.fail:
            return (self.fail[fn],) + tuple(0 for _ in values)
        return (self.cudaError_t.cudaSuccess,) + values

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
        return self._ret("cudaFree") if self.device.pop(int(ptr), None) is not None else (self.cudaError_t.cudaErrorInvalidValue,)

    def cudaFreeHost(self, ptr: int) -> tuple[Any, ...]:
        return self._ret("cudaFreeHost") if self.host.pop(int(ptr), None) is not None else (self.cudaError_t.cudaErrorInvalidValue,)

    def cudaStreamCreate(self) -> tuple[Any, ...]:
        return self.cudaStreamCreateWithFlags(self.cudaStreamDefault)

    def cudaStreamCreateWithFlags(self, flags: int) -> tuple[Any, ...]:
        self._next_stream += 1
        self.streams[self._next_stream] = int(flags)
        return self._ret("cudaStreamCreateWithFlags", self.cudaStream_t(self._next_stream))

    def cudaStreamDestroy(self, s: Any) -> tuple[Any, ...]:
        self.streams.pop(int(s), None)
        return self._ret("cudaStreamDestroy")

    def cudaStreamSynchronize(self, s: Any) -> tuple[Any, ...]:
        assert int(s) in self.streams
        return self._ret("cudaStreamSynchronize")

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: Any, stream: Any) -> tuple[Any, ...]:
        assert isinstance(stream, self.cudaStream_t) and int(stream) in self.streams
        dev_side = dst if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice else src
        assert any(p <= dev_side and dev_side + count <= p + len(b) for p, b in self.device.items()), "not device memory"
        ctypes.memmove(dst, src, count)
        self.copies += 1
        return self._ret("cudaMemcpyAsync")


def make_fake_pycuda(init_error: bool = False, name: str = GPU_NAME, sms: int = GPU_SMS,
                     memory: int = GPU_MEMORY) -> types.ModuleType:
    """pycuda.driver's shape: allocations are objects with int() and free()."""
    drv = types.ModuleType("pycuda.driver")
    state: dict[str, Any] = {"live": {}, "pushed": 0, "copies": 0, "stream_flags": []}
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
            state["live"].pop(id(self))

    class HostAllocation(bytearray):
        def free(self) -> None:
            state["live"].pop(id(self))

    class Context:
        @staticmethod
        def pop() -> None:
            state["pushed"] -= 1

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
        handle = 4242

        def __init__(self, flags: int = 0) -> None:
            state["stream_flags"].append(flags)

        def synchronize(self) -> None:
            assert state["pushed"] > 0, "no context current"

    def pagelocked_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        assert state["pushed"] > 0, "no context current"
        buf = HostAllocation(int(np.prod(shape)) * np.dtype(dtype).itemsize)
        state["live"][id(buf)] = buf
        return np.frombuffer(buf, dtype=dtype).reshape(shape)

    def memcpy_htod_async(dst: int, src: np.ndarray, stream: Any) -> None:
        ctypes.memmove(int(dst), src.ctypes.data, src.nbytes)
        state["copies"] += 1

    def memcpy_dtoh_async(dst: np.ndarray, src: int, stream: Any) -> None:
        ctypes.memmove(dst.ctypes.data, int(src), dst.nbytes)
        state["copies"] += 1

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
