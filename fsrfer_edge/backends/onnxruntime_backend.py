"""ONNX Runtime backend: runs an exported fused model (``.onnx``) on CPU or the CUDA provider.

``onnxruntime`` is imported lazily (pip extra ``cpu``), so ``import fsrfer_edge`` never needs it.
"""
from __future__ import annotations

import contextlib
import logging
import mmap
import os
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ..cpus import usable_cpus
from ..errors import BackendUnavailable, InputError, ModelError, check_flag, require
from ..fileio import file_problem
from ..forking import leave_to_parent, renew_in_child
from ..metadata import ModelInfo
from .base import Backend, BackendClosedError

logger = logging.getLogger(__name__)

#: What ``providers="auto"`` (or None) tries, in order; the CPU provider is always last.
AUTO_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8"}
# ONNX Runtime raises its own exception classes (not RuntimeError) when a model cannot be loaded.
_ORT_ERROR_NAMES = ("Fail", "InvalidArgument", "InvalidProtobuf", "InvalidGraph", "NoSuchFile", "NoModel",
                    "NotImplemented", "RuntimeException", "EPFail", "ModelLoadCanceled")

#: The most intra-op threads a session may be given: far beyond any CPU's cores (ONNX Runtime itself fails
#: with a raw TypeError from 2**31 on).
MAX_THREADS = 1024

# The messages of an ONNX model (onnx.proto) that may hold a tensor, each with its fields that lead to one, by field
# number: where external data (a tensor's ``external_data`` entries) may be named, in any nested graph or function.
_TENSOR_FIELDS: Dict[str, Dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "function": {7: "node", 11: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
    "entry": {},
}
#: How deep messages may nest in the external-data scan: protobuf's own default recursion limit, which ONNX
#: Runtime's parser keeps too (a deeper file is one it refuses).
_MAX_NESTING = 100

ProviderSpec = Union[str, Tuple[str, Dict[str, Any]]]  # typing generics: evaluated at import (Python 3.8 on JetPack 5)


_LOGGED_DEFAULTS: set[Tuple[int, int, Optional[int]]] = set()


def default_threads(sessions: int = 1) -> Optional[int]:
    """The intra-op threads a session gets when ``threads`` is None: None (ONNX Runtime's own default, one per
    physical core of the machine) where this process may use all the machine's CPUs; where a CPU set or a CPU quota
    restricts it (:func:`usable_cpus` below ``os.cpu_count()``), its usable CPUs shared between ``sessions``, at
    least 1. ONNX Runtime sees neither a quota nor, for its pool's size, a CPU set: a 2-CPU container on a 64-core
    host would otherwise run dozens of threads that the kernel throttles (and, with a CPU set, ONNX Runtime logs
    failed pthread_setaffinity_np calls)."""
    cpus, machine = usable_cpus(), os.cpu_count() or 1
    chosen = max(1, cpus // max(1, sessions)) if cpus < machine else None
    if (cpus, machine, chosen) not in _LOGGED_DEFAULTS:
        _LOGGED_DEFAULTS.add((cpus, machine, chosen))
        if chosen is None:
            logger.debug("threads=None: ONNX Runtime's default intra-op threads (this process may use all %d CPUs)",
                         machine)
        else:
            logger.debug("threads=None: %d intra-op threads per session (this process may use %d of the machine's "
                         "%d CPUs: a CPU set or quota)", chosen, cpus, machine)
    return chosen


def _new_pool(sessions: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=sessions, thread_name_prefix="fsrfer-ort")


def _renew_pool(backend: "OnnxRuntimeBackend") -> None:
    """In a forked child (a pre-forking server's worker, multiprocessing's "fork"), which has only the thread that
    forked: the pool's workers stayed in the parent, and a share submitted to the parent's pool would wait for them
    forever. The backend gets a new pool (its threads start on first use); the sessions themselves are kept."""
    if backend._pool is not None:
        backend._pool = _new_pool(backend.sessions)


def import_onnxruntime() -> ModuleType:
    """Import onnxruntime or raise BackendUnavailable naming the ``cpu`` extra."""
    return require("onnxruntime", "cpu", "running .onnx models")


def _ort_errors(ort: ModuleType) -> tuple[type[BaseException], ...]:
    state = getattr(getattr(ort, "capi", None), "onnxruntime_pybind11_state", None)
    found = [getattr(state, n) for n in _ORT_ERROR_NAMES if isinstance(getattr(state, n, None), type)]
    return tuple(found) + (RuntimeError, OSError)


def resolve_providers(providers: Union[None, str, Sequence[ProviderSpec]], device: int = 0,
                      ort: Optional[ModuleType] = None) -> list[ProviderSpec]:
    """Turn the user's provider choice into the list ONNX Runtime takes.

    Args:
        providers: None or ``"auto"`` (CUDA provider when this onnxruntime build has it, else CPU),
            ``"cpu"``, ``"cuda"``, or an explicit list of provider names / (name, options) pairs.
        device: CUDA device id for the CUDA provider.

    Returns:
        A provider list for ``onnxruntime.InferenceSession``.

    Raises:
        InputError: an entry that is neither a provider name nor a (name, options dict) pair, an unknown
            provider, or one this onnxruntime build does not have; a ``device`` that is not an integer >= 0.
    """
    if isinstance(device, bool) or not isinstance(device, (int, np.integer)) or device < 0:
        raise InputError(f"device={device!r}; expected a GPU index, an integer >= 0")
    ort = ort or import_onnxruntime()
    available = list(ort.get_available_providers())
    cuda: ProviderSpec = ("CUDAExecutionProvider", {"device_id": int(device)})
    if providers is None or providers == "auto":
        return [cuda, "CPUExecutionProvider"] if "CUDAExecutionProvider" in available else ["CPUExecutionProvider"]
    if providers == "cpu":
        return ["CPUExecutionProvider"]
    if providers == "cuda":
        providers = [cuda, "CPUExecutionProvider"]
    if isinstance(providers, str) or not isinstance(providers, (list, tuple)):
        raise InputError(
            f"providers={providers!r} is not understood; expected 'auto', 'cpu', 'cuda' or a list of "
            f"provider names from {available}"
        )
    out: list[ProviderSpec] = []
    for p in providers:
        pair = isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], dict)
        if not (isinstance(p, str) or pair):  # ONNX Runtime would ignore it and run on the CPU
            raise InputError(
                f"providers entry {p!r} is not understood; expected a provider name or a (name, options dict) "
                "pair, e.g. 'CPUExecutionProvider' or ('CUDAExecutionProvider', {'device_id': 0})"
            )
        name = p[0] if pair else p
        if not isinstance(name, str) or name not in available:
            raise InputError(
                f"execution provider {name!r} is not available in this onnxruntime build; available: "
                f"{available}. Install onnxruntime-gpu for CUDAExecutionProvider, or pass providers='auto'"
            )
        out.append(p)
    if not out:
        raise InputError(f"received an empty provider list; expected at least one of {available}")
    return out


def make_session_options(threads: Optional[int] = None, ort: Optional[ModuleType] = None,
                         spinning: bool = True) -> Any:
    """Session options shared by the backend, the detectors and the benchmark's bare session.

    Args:
        threads: intra-op threads, at most :data:`MAX_THREADS`; None: :func:`default_threads` (ONNX Runtime's
            default, one per physical core, unless a CPU set or quota restricts the process: then its usable CPUs).
        spinning: let idle intra-op threads spin-wait for work (ONNX Runtime's default, fastest for one
            session run back to back). False where sessions take turns in one process, as the crowd
            analyzer's detector and recogniser do: a session's threads still spinning after its run take
            the cores from the next session.

    Raises:
        InputError: ``threads`` is not an integer from 1 to :data:`MAX_THREADS`, or ``spinning`` is not True or
            False.
    """
    spinning = check_flag("spinning", spinning)
    ort = ort or import_onnxruntime()
    opts = ort.SessionOptions()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= MAX_THREADS:
            raise InputError(f"threads={threads!r}; expected an integer from 1 to {MAX_THREADS} or None (all cores)")
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    else:
        chosen = default_threads()
        if chosen is not None:  # restricted by a CPU set or quota, which ONNX Runtime's default does not see
            opts.intra_op_num_threads = chosen
            opts.inter_op_num_threads = 1
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only: a GPU provider that did not start is told by check_providers_started
    return opts


def check_providers_started(session: Any, asked: Sequence[ProviderSpec],
                            providers: Union[None, str, Sequence[ProviderSpec]], source: str) -> None:
    """ONNX Runtime falls back to the CPU when a GPU provider it has cannot start (CUDA or cuDNN libraries missing
    or of another version): a warning where the choice was ``"auto"`` (the CPU is what auto means without a GPU),
    an error where the user asked for that provider (``"cuda"`` or a list naming it): never silently on the CPU.

    Raises:
        BackendUnavailable: a provider asked for by name did not start, naming it and what to do.
    """
    got = list(session.get_providers())
    missing = [name for name in (p[0] if isinstance(p, tuple) else p for p in asked) if name not in got]
    if not missing:
        return
    if providers is None or providers == "auto":
        logger.warning("%s: ONNX Runtime could not start %s (its CUDA or cuDNN libraries are missing or of another "
                       "version); running on %s", source, ", ".join(missing), ", ".join(got))
        return
    raise BackendUnavailable(
        f"{source}: ONNX Runtime could not start {', '.join(missing)} and would run on {', '.join(got)}; expected the "
        "providers asked for: install the CUDA and cuDNN libraries this onnxruntime-gpu build needs (its docs list "
        "them), or pass providers='cpu' (or 'auto', which falls back to the CPU with a warning)")


def _varint(buf: Any, i: int, end: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        if i >= end or shift > 63:
            raise ValueError("a truncated or overlong varint")
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _fields(buf: Any, start: int, end: int) -> Any:
    """(field number, start, end) of each length-delimited field of the protobuf message in ``buf[start:end]``; the
    others are skipped. ValueError: not a well-formed message."""
    i = start
    while i < end:
        key, i = _varint(buf, i, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(buf, i, end)
        elif wire == 1 or wire == 5:
            i += 8 if wire == 1 else 4
        elif wire == 2:
            size, i = _varint(buf, i, end)
            if i + size > end:
                raise ValueError("a field longer than its message")
            yield number, i, i + size
            i += size
        else:  # groups (wire types 3, 4), long deprecated, and no ONNX field
            raise ValueError(f"wire type {wire}")
    if i != end:
        raise ValueError("a field past the end of its message")


def external_data_locations(path: Union[str, os.PathLike[str]]) -> list[str]:
    """The ``location`` of every tensor of the ONNX model file ``path`` that keeps its data in another file, in any
    graph, nested graph or function (a pure-Python read of the protobuf: the ``cpu`` extra has no ``onnx``).

    Raises:
        ModelError: the file is not a well-formed ONNX protobuf where a location may be (ONNX Runtime would refuse
            it too). OSError: it cannot be read.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return []
        try:
            mapped: Any = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # a file system without mmap: read it (ONNX Runtime does so too)
            mapped = contextlib.nullcontext(f.read())
        with mapped as buf:
            if buf.find(b"location") < 0:  # the key every external tensor names its file under: none here
                return []
            found: list[str] = []
            stack = [("model", 0, size, 0)]
            try:
                while stack:
                    kind, start, end, depth = stack.pop()
                    if depth > _MAX_NESTING:
                        raise ValueError(f"messages nested over {_MAX_NESTING} deep")
                    if kind == "entry":
                        entry = {n: bytes(buf[a:b]) for n, a, b in _fields(buf, start, end)}
                        if entry.get(1) == b"location":
                            found.append(entry.get(2, b"").decode("utf-8", "replace"))
                        continue
                    follow = _TENSOR_FIELDS[kind]
                    stack += [(follow[n], a, b, depth + 1) for n, a, b in _fields(buf, start, end) if n in follow]
            except ValueError as exc:
                raise ModelError(f"{path} is not a well-formed ONNX file ({exc}); expected an .onnx model from "
                                 "fsrfer-export") from None
    return found


def check_external_data(path: Path) -> None:
    """Refuse a model whose tensors name external data outside its folder (an absolute location, one with ``..``
    or a symbolic link that leads out), or in a file that is not a regular one (a FIFO would make the load wait
    for ever, a link to /dev/zero read without end). ONNX Runtime refuses the first since 1.24; the versions before
    it (1.16 on is supported) read any file the process can, so a downloaded model could read, say, a key file into
    its weights.

    Raises:
        ModelError: naming the location and what was expected, or the model file cannot be read.
    """
    folder = os.path.realpath(path.parent)
    try:
        locations = external_data_locations(path)
    except OSError as exc:
        raise ModelError(f"model file {path} cannot be read ({exc.strerror or exc}); expected a readable .onnx "
                         "file") from exc
    for location in locations:
        try:
            where = os.path.realpath(os.path.join(folder, location))
            inside = os.path.commonpath([folder, where]) == folder
        except ValueError:  # a NUL character; on Windows, another drive
            where, inside = "", False
        if not location or os.path.isabs(location) or Path(location).drive or not where:
            why = "is not a path relative to the model's folder"
        elif not inside:
            why = f"leads outside the model's folder {folder} (to {where})"
        else:
            why = file_problem(where)
        if why:
            raise ModelError(f"{path}: a tensor's external data location {location!r} {why}; expected a file in the "
                             "model's folder, as onnx.save(..., save_as_external_data=True) writes it. A model from "
                             "an untrusted source may read other files this way: do not use it")


def load_session(path: Union[str, os.PathLike[str]], providers: Union[None, str, Sequence[ProviderSpec]] = None,
                 threads: Optional[int] = None, device: int = 0, spinning: bool = True) -> tuple[Any, ModelInfo]:
    """Open an exported fsrfer ONNX model: returns (InferenceSession, ModelInfo).

    Raises:
        ModelError: the file is missing, not a loadable ONNX model, has no fsrfer metadata, or its
            inputs/outputs do not match that metadata.
        BackendUnavailable: onnxruntime is not installed, or a GPU provider asked for by name did not start (ONNX
            Runtime would have run on the CPU; with ``"auto"`` that is a warning).
        InputError: bad ``providers`` or ``threads``.
    """
    ort = import_onnxruntime()
    p = Path(path)
    problem = file_problem(p)
    if problem:
        raise ModelError(f"model file {p} {problem}; expected an .onnx file from fsrfer-export")
    check_external_data(p)
    provider_list = resolve_providers(providers, device, ort)
    opts = make_session_options(threads, ort, spinning)
    try:
        session = ort.InferenceSession(str(p), sess_options=opts, providers=provider_list)
    except _ort_errors(ort) as exc:
        raise ModelError(
            f"{p} could not be loaded by ONNX Runtime ({type(exc).__name__}: {exc}); expected an ONNX model "
            "written by fsrfer-export. The file may be truncated or corrupt: export it again"
        ) from exc
    check_providers_started(session, provider_list, providers, str(p))
    props = dict(session.get_modelmeta().custom_metadata_map)
    info = ModelInfo.from_props(props, source=str(p))
    check_session_io(session, info, str(p))
    return session, info


def check_session_io(session: Any, info: ModelInfo, source: str) -> Optional[int]:
    """Verify the graph's input/output against the metadata; return the static batch size, if any.

    Raises:
        ModelError: names, dtype or per-sample shape disagree with ``info``.
    """
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if info.input_name not in inputs:
        raise ModelError(f"{source}: metadata names input {info.input_name!r}, but the graph's inputs are {sorted(inputs)}")
    others = sorted(set(inputs) - {info.input_name})
    if others:  # ONNX Runtime would refuse the first run with its own error ("Required inputs ... are missing")
        raise ModelError(f"{source}: the graph needs inputs {others} besides {info.input_name!r}; expected one input, "
                         "the faces, as fsrfer-export writes it")
    if info.output_name not in outputs:
        raise ModelError(f"{source}: metadata names output {info.output_name!r}, but the graph's outputs are {sorted(outputs)}")
    inp = inputs[info.input_name]
    dtype = _ORT_DTYPES.get(inp.type)
    if dtype != info.input_dtype:
        raise ModelError(f"{source}: input {inp.name!r} has type {inp.type}, but metadata says {info.input_dtype}")
    pre = info.preprocessing
    want = [pre.channels, pre.input_size, pre.input_size]
    shape = list(inp.shape)
    if len(shape) != 4 or any(isinstance(d, int) and d != w for d, w in zip(shape[1:], want)):
        raise ModelError(f"{source}: input {inp.name!r} has shape {shape}; metadata implies [N, {want[0]}, {want[1]}, {want[2]}]")
    out_shape = list(outputs[info.output_name].shape)
    n_classes = len(info.classes)
    if len(out_shape) != 2 or (isinstance(out_shape[1], int) and out_shape[1] != n_classes):
        raise ModelError(f"{source}: output {info.output_name!r} has shape {out_shape}; its metadata names "
                         f"{n_classes} classes {list(info.classes)}, so [N, {n_classes}] was expected")
    return shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None


class OnnxRuntimeBackend(Backend):
    """Runs an fsrfer ``.onnx`` model with ONNX Runtime.

    ``session.run`` is thread-safe, so one instance may be shared between threads; a process forked after it
    was made (a pre-forking server's worker) may use it too.

    Args:
        path: the exported ``.onnx`` file (with fsrfer metadata).
        providers: None/``"auto"``: the CUDA provider if this onnxruntime build has one, else CPU;
            ``"cpu"``, ``"cuda"``, or an explicit ONNX Runtime provider list.
        threads: intra-op threads of each session (None: for one session ONNX Runtime's default, one per
            physical core, or the CPUs a CPU set or quota leaves this process (:func:`default_threads`); 1 for each
            of several).
        device: CUDA device id for the CUDA provider.
        spinning: idle threads spin-wait for work (see :func:`make_session_options`).
        sessions: CPU sessions of the model that split each batch between them and run their shares at
            once, one Python thread each (ONNX Runtime releases the GIL while it runs). With one thread per
            session no thread pool has to meet after every op, which on a small CPU gives more faces per
            second than one session with as many threads, most of all for INT8 files
            (``benchmarks/sessions.py``). None or 1: one session. Each session holds its own weights.

    Raises:
        ModelError: corrupt/non-ONNX file or missing fsrfer metadata.
        BackendUnavailable: onnxruntime is not installed (``pip install -e '.[cpu]'``).
        InputError: bad ``providers``, ``threads`` or ``sessions`` (several sessions need the CPU provider
            alone and a graph with a dynamic batch size).
    """

    name = "onnxruntime"

    def __init__(self, path: Union[str, os.PathLike[str]], providers: Union[None, str, Sequence[ProviderSpec]] = None,
                 threads: Optional[int] = None, device: int = 0, spinning: bool = True,
                 sessions: Optional[int] = None) -> None:
        super().__init__()
        if sessions is not None and (isinstance(sessions, bool) or not isinstance(sessions, (int, np.integer))
                                     or not 1 <= sessions <= MAX_THREADS):  # each session loads the model once
            raise InputError(f"sessions={sessions!r}; expected a positive integer up to {MAX_THREADS} (more than "
                             "one per core does not help), or None (one session)")
        count = int(sessions or 1)
        if count > 1 and resolve_providers(providers, device) != ["CPUExecutionProvider"]:
            raise InputError(f"sessions={count} splits batches between CPU sessions; pass providers='cpu' with it "
                             "(a GPU provider runs a whole batch at once)")
        if count > 1 and threads is None:
            threads = 1
        self.path = Path(path)
        self.threads = threads
        #: The intra-op threads asked of ONNX Runtime for each session: ``threads``, else :func:`default_threads`
        #: (None: ONNX Runtime's own default).
        self.intra_op_threads = threads if threads is not None else default_threads()
        self._session: Any = None
        self._extra: list[Any] = []
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pid = os.getpid()  # the process whose sessions these are (a forked child must not destroy them)
        self._session, self._info = load_session(self.path, providers, threads, device, spinning)
        self._max_batch = check_session_io(self._session, self._info, str(self.path))
        if count > 1 and self._max_batch is not None:
            self._session = None  # freed now, not when the half-made backend is collected
            raise InputError(f"sessions={count} splits batches, but {self.path.name} takes exactly {self._max_batch} "
                             "faces at a time; export it with a dynamic batch (fsrfer-export does) or use one session")
        # after load_session, which refuses a bad ``threads`` with an InputError
        if count > 1 and count * int(threads or 1) > usable_cpus():
            logger.warning("sessions=%d of %s thread(s) each use more threads than the %s CPUs this process may use; "
                           "they will slow each other down", count, threads, usable_cpus())
        self._extra = [load_session(self.path, providers, threads, device, spinning)[0] for _ in range(count - 1)]
        if self._extra:
            self._pool = _new_pool(count)
            renew_in_child(self, _renew_pool)
        self._input_name = self._info.input_name
        self._output_names = [self._info.output_name]
        logger.info("loaded %s with %s%s", self.path, self.providers,
                    f", {count} sessions of {threads} thread(s)" if count > 1 else "")

    @property
    def providers(self) -> tuple[str, ...]:
        if self._session is None:
            return ()
        return tuple(self._session.get_providers())

    @property
    def session(self) -> Any:
        """The underlying ``onnxruntime.InferenceSession`` (for advanced use and benchmarks)."""
        self._check_open()
        return self._session

    @property
    def min_batch(self) -> int:
        # A graph with a fixed batch size (fsrfer-export writes a dynamic one) takes exactly that many.
        return self._max_batch if self._max_batch is not None else 1

    @property
    def sessions(self) -> int:
        """How many ONNX Runtime sessions share each batch."""
        return 1 + len(self._extra)

    def _run(self, session: Any, batch: np.ndarray) -> np.ndarray:
        try:
            (logits,) = session.run(self._output_names, {self._input_name: batch})
        except _ort_errors(import_onnxruntime()) as exc:
            # The batch was validated against the metadata, so a failure here is the model's.
            raise ModelError(f"{self.path}: ONNX Runtime failed to run the model on a valid batch of shape "
                             f"{batch.shape} ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})") from exc
        return np.asarray(logits, dtype=np.float32)

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        # close() on another thread may clear these; the local references keep them alive for this call
        sessions, pool = [self._session] + list(self._extra), self._pool
        if sessions[0] is None:
            raise BackendClosedError(f"this {type(self).__name__} was closed while the call waited; create a new one")
        if pool is None or len(batch) < 2:
            return self._run(sessions[0], batch)
        shares = np.array_split(batch, min(len(sessions), len(batch)))
        futures = []
        try:
            for s, part in zip(sessions, shares):
                futures.append(pool.submit(self._run, s, part))
        except RuntimeError as exc:  # the pool was shut down by close() on another thread
            raise BackendClosedError(f"this {type(self).__name__} was closed while the call waited; create a new "
                                     "one") from exc
        finally:
            wait(futures)  # no share is left running unobserved, whatever happened to the others
        return np.concatenate([f.result() for f in futures])

    def _close_impl(self) -> None:
        if os.getpid() != self._pid:  # a forked child: destroying the parent's sessions would hang joining their
            leave_to_parent(self._session, *self._extra)  # thread pools' threads, which stayed in the parent
        # ONNX Runtime frees a session (and its arena) when the last reference goes.
        self._session = None
        self._extra = []
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
