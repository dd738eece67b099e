"""``RemoteRecognizer``: the :class:`~fsrfer_edge.Recognizer` API, with inference on a Triton server.

An app switches between in-process and served inference by changing one line::

    rec = Recognizer("fsrfer.onnx")                 # in-process
    rec = RemoteRecognizer("127.0.0.1:8000")        # the same model behind fsrfer-serve / Triton

Faces are prepared here, with the preprocessing the *served* model describes (its ModelInfo, read
from the server), and sent as one (N, C, S, S) batch; the server batches requests of many clients
together. The transport is a :class:`TritonClientBackend`, one more backend behind the small
``infer(batch) -> logits`` interface, so ``predict``, ``prepare`` and ``predict_logits`` are
``Recognizer``'s own code.
"""
from __future__ import annotations

import errno
import logging
import math
import os
import socket
import threading
import weakref
from pathlib import Path
from types import ModuleType
from typing import Any, Optional, Union

import numpy as np

from ..backends.base import Backend, BackendClosedError
from ..errors import InputError, ModelError, require
from ..metadata import ModelInfo
from ..preprocessing import Corrections, as_corrections
from ..confidence import ScoreCalibration
from ..recognizer import ENGINE_SUFFIXES, Recognizer, _check_confidence, _positive_int, _resolve_confidence
from .errors import RemoteError, ServerUnavailable, TooManyOpenFiles
from .triton_repo import TRITON_DTYPES, info_from_config

logger = logging.getLogger(__name__)

PROTOCOLS = ("http", "grpc")
#: Suffix of the companion model through which ``fsrfer-serve`` publishes the served model's
#: ModelInfo (PyTriton cannot set model config parameters, where the generated repository keeps it).
INFO_MODEL_SUFFIX = "_info"
INFO_OUTPUT = "model_info"
_WIRE_DTYPES = {"float32": "FP32", "uint8": "UINT8"}
# Triton status codes that mean "not reachable / not ready now", i.e. worth retrying.
_UNAVAILABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "503", "502", "504")
_UNAVAILABLE_TEXT = ("connection refused", "failed to connect", "connection reset", "connection closed",
                     "broken pipe", "socket closed", "server is not ready", "timed out", "timeout")

PathLike = Union[str, "os.PathLike[str]"]


def _import_client(protocol: str) -> ModuleType:
    return require(f"tritonclient.{protocol}", "client", f"talking to a Triton server over {protocol}")


def _split_url(url: str, protocol: str) -> str:
    if not isinstance(url, str) or not url:
        raise InputError(f"url={url!r}; expected 'HOST:PORT', e.g. '127.0.0.1:8000' (HTTP) or '127.0.0.1:8001' (gRPC)")
    for scheme in ("http://", "grpc://"):
        if url.startswith(scheme):
            if scheme[:-3] != protocol:
                raise InputError(f"url {url!r} names {scheme[:-3]} but protocol={protocol!r}; make them agree")
            url = url[len(scheme):]
    host, _, port = url.rpartition(":")
    if "://" in url or ":" not in url or "/" in url or not host or not (
            port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise InputError(f"url={url!r}; expected 'HOST:PORT' with a port 1..65535 (optionally with http:// or "
                         "grpc://), e.g. '127.0.0.1:8000'")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise InputError(f"url={url!r}; expected 'HOST:PORT' with an IPv6 address in brackets, e.g. '[::1]:8000'")
    return url


class _ThreadToken:
    """Held only by a thread-local (:func:`_thread_token`): a weak reference to it dies when its thread ends."""

    __slots__ = ("__weakref__",)


_thread_state = threading.local()
_hubs_lock = threading.Lock()
# gevent hubs of the threads that made HTTP connections (tritonclient's HTTP client runs on gevent, which
# gives each thread a hub holding an epoll and an eventfd descriptor, and keeps it after the thread ends),
# each with its thread's token; _release_ended_threads destroys those of threads that have ended.
_hubs: list[tuple[weakref.ref[_ThreadToken], Any]] = []


def _thread_token() -> weakref.ref[_ThreadToken]:
    """A weak reference that dies when the calling thread ends."""
    token = getattr(_thread_state, "token", None)
    if token is None:
        token = _thread_state.token = _ThreadToken()
    return weakref.ref(token)


def _track_gevent_hub() -> None:
    """Have this thread's gevent hub destroyed once the thread has ended (the main thread's hub is left
    alone: it lasts as long as the process)."""
    if getattr(_thread_state, "hub_tracked", False):
        return
    hub = require("gevent", "client", "talking to a Triton server over http").get_hub()
    if not hub.loop.default:
        with _hubs_lock:
            _hubs.append((_thread_token(), hub))
    _thread_state.hub_tracked = True


def _release_ended_threads() -> None:
    """Destroy the gevent hubs of threads that have ended. gevent allows that from another thread once a
    hub's own thread has exited; doing it in the exiting thread (a thread-local finalizer) would switch
    greenlets while Python tears that thread down."""
    with _hubs_lock:
        ended = [hub for token, hub in _hubs if token() is None]
        _hubs[:] = [(token, hub) for token, hub in _hubs if token() is not None]
    for hub in ended:
        try:
            hub.destroy()
        except Exception as exc:  # noqa: BLE001 - e.g. a hub the app destroyed itself
            logger.debug("destroying an ended thread's gevent hub failed: %s", exc)


def _local_info(model: PathLike) -> ModelInfo:
    """ModelInfo of a local copy of the served model (an .onnx file, or an engine with its sidecar)."""
    path = Path(model)
    if path.suffix.lower() in ENGINE_SUFFIXES:
        from ..engine_cache import read_sidecar

        info: ModelInfo = read_sidecar(path)["model_info"]
        return info
    from ..export.onnx_export import read_model_info

    return read_model_info(path)


class TritonClientBackend(Backend):
    """A backend whose ``infer`` runs on a Triton server (HTTP or gRPC, via ``tritonclient``).

    Batches are validated here against the served model's ModelInfo before they are sent. Each thread
    that calls an instance gets its own connection, so one instance may be created in one thread and
    used from others (worker threads, thread pools), also in parallel. The connections of threads that
    have ended (and their gevent hubs, over HTTP) are closed when another thread connects, or on close.

    Args:
        url: ``HOST:PORT`` of the server's HTTP (default port 8000) or gRPC (8001) endpoint.
        protocol: ``"http"`` or ``"grpc"``.
        model_name: the Triton model (``fsrfer`` for fsrfer-serve; ``<name>_trt`` / ``<name>_onnx``
            for a repository written by ``fsrfer-export --triton-repo``).
        timeout_s: connection and request timeout in seconds (finite, > 0).
        retries: how many times a call is retried while the server is unreachable (0: fail at once).
        retry_delay_s: pause between retries in seconds (finite, >= 0).
        model: a local copy of the served model file, to read its ModelInfo from instead of the server.

    Raises:
        ServerUnavailable: the server cannot be reached.
        TooManyOpenFiles: this process (or the system) has no file descriptor left for a connection.
        ModelError: the server has no such model, or its inputs/outputs disagree with the ModelInfo.
        BackendUnavailable: tritonclient is not installed (``pip install -e '.[client]'``).
        BackendClosedError: (from ``infer``) the backend was closed, also while the call ran or waited to
            retry in another thread; ``close()`` is final and opens no connection after it returns.
    """

    name = "triton"

    def __init__(self, url: str = "127.0.0.1:8000", protocol: str = "http", model_name: str = "fsrfer",
                 timeout_s: float = 30.0, retries: int = 0, retry_delay_s: float = 1.0,
                 model: Optional[PathLike] = None) -> None:
        super().__init__()
        if protocol not in PROTOCOLS:
            raise InputError(f"protocol={protocol!r}; expected one of {PROTOCOLS}")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not (
                math.isfinite(timeout_s) and timeout_s > 0):
            raise InputError(f"timeout_s={timeout_s!r}; expected a finite, positive number of seconds")
        if isinstance(retry_delay_s, bool) or not isinstance(retry_delay_s, (int, float)) or not (
                math.isfinite(retry_delay_s) and retry_delay_s >= 0):
            raise InputError(f"retry_delay_s={retry_delay_s!r}; expected a finite number of seconds >= 0")
        if not isinstance(model_name, str) or not model_name or "/" in model_name:
            raise InputError(f"model_name={model_name!r}; expected a Triton model name such as 'fsrfer'")
        self.protocol = protocol
        self.url = _split_url(url, protocol)
        self.model_name = model_name
        self.timeout_s = float(timeout_s)
        self.retries = _positive_int("retries", retries, 0)
        self.retry_delay_s = float(retry_delay_s)
        self._lib = _import_client(protocol)
        self._lock = threading.Lock()
        # Set by close(): cuts short the pause of a call waiting to retry, which then opens no connection.
        self._closing = threading.Event()
        # One connection per thread: tritonclient's HTTP client runs on gevent, whose connections belong
        # to the thread that made them ("Cannot switch to a different thread" from any other), and apps
        # create a recognizer in one thread and call it from workers. Each is kept with its thread's token,
        # so that those of ended threads are closed instead of piling up (3 descriptors each over HTTP).
        self._local = threading.local()
        self._clients: list[tuple[weakref.ref[_ThreadToken], Any]] = []
        try:
            config = self._call(self._get_config)
            self._info = _local_info(model) if model is not None else self._served_info(config)
            self._max_batch = self._check_signature(config)
        except BaseException:
            self.close()  # the connection made to read the config
            raise
        logger.info("connected to %s model %r at %s", protocol, model_name, self.url)

    # -- connection --------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"{self.protocol}://{self.url}"

    def _connect(self) -> Any:
        """This thread's connection (made on first use in each thread; then those of ended threads are closed).

        Raises:
            BackendClosedError: the backend was closed, also by another thread while this one connected.
        """
        self._check_open()  # also where this thread has a connection: close() closed it too
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "http":
                _track_gevent_hub()
                client = self._lib.InferenceServerClient(
                    self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s)
            else:
                client = self._lib.InferenceServerClient(self.url)
            # Registered under the lock that close() takes after setting _closed: either close() sees this
            # connection and closes it, or this sees _closed, and closes it here.
            ended: list[Any] = []
            with self._lock:
                closed = self._closed
                if not closed:
                    ended = [c for thread, c in self._clients if thread() is None]
                    self._clients = [(thread, c) for thread, c in self._clients if thread() is not None]
                    self._clients.append((_thread_token(), client))
            if closed:
                self._close_clients([client])
                self._check_open()
            self._local.client = client
            self._close_clients(ended)
        return client

    def _drop_connection(self, every_thread: bool = False) -> None:
        """Close this thread's connection (after a transport failure), or every thread's (on close)."""
        with self._lock:
            if every_thread:
                dropped = [c for _, c in self._clients]
                self._clients = []
            else:
                mine = getattr(self._local, "client", None)
                dropped = [c for _, c in self._clients if c is mine]
                self._clients = [(thread, c) for thread, c in self._clients if c is not mine]
        self._local.client = None
        self._close_clients(dropped)

    def _close_clients(self, clients: list[Any]) -> None:
        """Close connections (also other threads', which gevent allows once they are not in use), then the
        gevent hubs of ended threads."""
        if clients and self.protocol == "http":
            _track_gevent_hub()  # closing may make this thread's hub
        for client in clients:
            try:
                client.close()
            except Exception as exc:  # noqa: BLE001 - a broken (or other thread's) connection may fail to close
                logger.debug("closing a %s connection failed: %s", self.protocol, exc)
        _release_ended_threads()

    def _unavailable(self, exc: BaseException) -> Optional[str]:
        """Why ``exc`` means "try again later" (server unreachable, or up but the model not loaded), or None."""
        if isinstance(exc, (OSError, socket.timeout)):
            return "unreachable"
        status = getattr(exc, "status", None)  # InferenceServerException.status() -> e.g. "StatusCode.UNAVAILABLE"
        status = str((status() if callable(status) else status) or "").upper()
        text = str(exc).lower()
        if any(s in status for s in _UNAVAILABLE) or any(t in text for t in _UNAVAILABLE_TEXT):
            return "unreachable"
        # After a restart the server answers before its models are loaded; the model was seen when
        # this client connected, so "unknown model" now means "not loaded yet", not a wrong name.
        if self._info is not None and ("NOT_FOUND" in status or "404" in status or "unknown model" in text):
            return "not loaded"
        return None

    def _call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(client, *args)``; map transport failures to ServerUnavailable, retrying them."""
        attempt = 0
        while True:
            try:
                return fn(self._connect(), *args)
            except (ServerUnavailable, RemoteError, ModelError, BackendClosedError):
                raise
            except Exception as exc:  # noqa: BLE001 - tritonclient/gevent/grpc raise many unrelated types
                if self._closed:  # another thread closed this backend, and the connection with it
                    raise BackendClosedError(
                        f"this {type(self).__name__} was closed while a call to {self.endpoint} was running, which "
                        f"then failed ({type(exc).__name__}: {exc}); create a new one (or a new RemoteRecognizer) "
                        "to run inference") from exc
                if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
                    raise TooManyOpenFiles(exc.errno, (
                        f"cannot open a connection to {self.endpoint}: {exc.strerror} (not a server problem); expected "
                        "a free file descriptor: raise this process's open-file limit (ulimit -n) or close the files, "
                        "sockets and RemoteRecognizers it no longer uses")) from exc
                why = self._unavailable(exc)
                if why is None and self.protocol == "http" and "ParseError" in type(exc).__name__:
                    # gevent's HTTP parser on a reply that is not HTTP: another protocol on this port, not the model.
                    raise ServerUnavailable(
                        f"{self.endpoint} did not answer in HTTP ({type(exc).__name__}: {exc}); expected Triton's "
                        "HTTP port (8000 by default). Is this its gRPC port (8001)? Then pass protocol='grpc'") from exc
                if why is None and self.protocol == "http" and "JSONDecodeError" in type(exc).__name__:
                    # An HTTP server whose answers are not Triton's JSON: most often Triton's own metrics port.
                    raise ServerUnavailable(
                        f"{self.endpoint} did not answer as Triton's HTTP API ({type(exc).__name__}: {exc}); expected "
                        "Triton's HTTP port (8000 by default), not its metrics port (8002) or another web "
                        "server") from exc
                if why is None:
                    raise RemoteError(f"{self.endpoint} model {self.model_name!r} answered with an error: "
                                      f"{type(exc).__name__}: {exc}") from exc
                self._drop_connection()
                if attempt >= self.retries:
                    state = ("is unreachable" if why == "unreachable" else
                             f"is up but model {self.model_name!r} is not loaded (starting, or unloaded)")
                    raise ServerUnavailable(
                        f"Triton server {self.endpoint} {state} ({type(exc).__name__}: {exc}); expected a running "
                        f"server with model {self.model_name!r}. Start it (fsrfer-serve, or tritonserver with the "
                        "repository from fsrfer-export --triton-repo), check the host/port, or pass retries=N to "
                        "wait for a restart" + (f" (gave up after {attempt + 1} attempts)" if attempt else "")) from exc
                attempt += 1
                if self._closing.wait(self.retry_delay_s):
                    raise BackendClosedError(
                        f"this {type(self).__name__} was closed while a call waited to retry {self.endpoint} "
                        f"({type(exc).__name__}: {exc}); create a new one (or a new RemoteRecognizer) to run "
                        "inference") from exc

    # -- model description -------------------------------------------------------------------
    def _get_config(self, client: Any) -> dict[str, Any]:
        try:
            if self.protocol == "http":
                cfg = client.get_model_config(self.model_name)
            else:
                cfg = client.get_model_config(self.model_name, as_json=True, client_timeout=self.timeout_s)
                cfg = cfg.get("config", cfg)
        except self._lib_exception() as exc:
            if self._unavailable(exc):
                raise
            names = self._model_names(client)
            served = (f"models: {names}" if names is not None else "its model list could not be read: the server "
                      "restricts its repository API, as fsrfer-serve's PyTriton does")
            raise ModelError(f"{self.endpoint} has no loaded model {self.model_name!r} ({exc}); expected the name "
                             f"it serves ({served})") from exc
        if not isinstance(cfg, dict):
            raise ModelError(f"{self.endpoint}: unexpected model config {cfg!r} for {self.model_name!r}")
        return cfg

    def _lib_exception(self) -> type[BaseException]:
        utils = require("tritonclient.utils", "client")
        exc_type: type[BaseException] = utils.InferenceServerException
        return exc_type

    def _model_names(self, client: Any) -> Optional[list[str]]:
        """The models the server lists, or None where it would not list them (not an empty list: that would
        read as "serves nothing")."""
        try:
            # over HTTP the connection's network_timeout bounds it; gRPC calls take their own deadline
            index = client.get_model_repository_index(
                **({} if self.protocol == "http" else {"as_json": True, "client_timeout": self.timeout_s}))
        except Exception as exc:  # noqa: BLE001 - only used to improve an error message
            logger.debug("listing the server's models failed: %s", exc)
            return None
        rows = index if isinstance(index, list) else index.get("models", [])
        return sorted(str(r.get("name")) for r in rows if isinstance(r, dict))

    def _served_info(self, config: dict[str, Any]) -> ModelInfo:
        info = info_from_config(config)  # a repository written by fsrfer-export --triton-repo
        if info is not None:
            return info
        try:  # fsrfer-serve publishes it through a companion model
            text = self._call(self._infer_info)
        except RemoteError as exc:
            raise ModelError(
                f"{self.endpoint} model {self.model_name!r} carries no fsrfer metadata (no 'fsrfer' config parameter "
                f"and no {self.model_name + INFO_MODEL_SUFFIX!r} model: {exc}). Pass model= a local copy of the "
                "served .onnx/.engine file so faces are preprocessed as that model expects") from exc
        return ModelInfo.from_json(text, source=f"{self.endpoint} {self.model_name + INFO_MODEL_SUFFIX}")

    def _infer_info(self, client: Any) -> str:
        name = self.model_name + INFO_MODEL_SUFFIX
        kw: dict[str, Any] = {} if self.protocol == "http" else {"client_timeout": self.timeout_s}
        try:
            result = client.infer(name, [], **kw)
        except self._lib_exception() as exc:
            if self._unavailable(exc):
                raise
            raise RemoteError(str(exc)) from exc
        value = result.as_numpy(INFO_OUTPUT)
        if value is None or value.size != 1:
            raise ModelError(f"{self.endpoint} {name}: expected one {INFO_OUTPUT!r} string, got {value!r}")
        raw = value.reshape(-1)[0]
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def _check_signature(self, config: dict[str, Any]) -> int:
        """Check the served model's tensors against the ModelInfo; return its max batch size."""
        info = self.info
        pre = info.preprocessing
        inputs = {str(t.get("name")): t for t in config.get("input", [])}
        outputs = {str(t.get("name")): t for t in config.get("output", [])}
        where = f"{self.endpoint} model {self.model_name!r}"
        if info.input_name not in inputs or info.output_name not in outputs:
            raise ModelError(f"{where} has inputs {sorted(inputs)} and outputs {sorted(outputs)}; the model's metadata "
                             f"expects input {info.input_name!r} and output {info.output_name!r}")
        inp = inputs[info.input_name]
        want_type = TRITON_DTYPES[info.input_dtype]
        dims = [int(d) for d in inp.get("dims", [])]
        if inp.get("data_type") != want_type or dims != [pre.channels, pre.input_size, pre.input_size]:
            raise ModelError(f"{where}: input {info.input_name!r} is {inp.get('data_type')} {dims}; the model's "
                             f"metadata expects {want_type} [{pre.channels}, {pre.input_size}, {pre.input_size}]")
        out = outputs[info.output_name]
        out_dims = [int(d) for d in out.get("dims", [])]
        if out.get("data_type") != "TYPE_FP32" or out_dims != [len(info.classes)]:
            raise ModelError(f"{where}: output {info.output_name!r} is {out.get('data_type')} {out_dims}; the model's "
                             f"metadata expects TYPE_FP32 [{len(info.classes)}] (logits of its classes)")
        max_batch = int(config.get("max_batch_size", 0) or 0)
        if max_batch < 1:
            raise ModelError(f"{where} has max_batch_size {max_batch}; expected a batching model (max_batch_size >= 1)")
        return max_batch

    # -- running -----------------------------------------------------------------------------
    def _infer_remote(self, client: Any, batch: np.ndarray) -> np.ndarray:
        lib, info = self._lib, self.info
        inp = lib.InferInput(info.input_name, list(batch.shape), _WIRE_DTYPES[info.input_dtype])
        if self.protocol == "http":
            inp.set_data_from_numpy(batch, binary_data=True)
            out = lib.InferRequestedOutput(info.output_name, binary_data=True)
            result = client.infer(self.model_name, [inp], outputs=[out])
        else:
            inp.set_data_from_numpy(batch)
            out = lib.InferRequestedOutput(info.output_name)
            result = client.infer(self.model_name, [inp], outputs=[out], client_timeout=self.timeout_s)
        logits = result.as_numpy(info.output_name)
        if logits is None or logits.shape != (batch.shape[0], len(info.classes)):
            raise RemoteError(f"{self.endpoint} returned {None if logits is None else logits.shape} logits for a batch "
                              f"of {batch.shape[0]}; expected ({batch.shape[0]}, {len(info.classes)})")
        return np.ascontiguousarray(logits, dtype=np.float32)

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        result: np.ndarray = self._call(self._infer_remote, batch)
        return result

    def _close_impl(self) -> None:
        self._closing.set()
        self._drop_connection(every_thread=True)

    def __repr__(self) -> str:
        return f"TritonClientBackend({self.endpoint!r}, model_name={self.model_name!r})"


class RemoteRecognizer(Recognizer):
    """:class:`~fsrfer_edge.Recognizer` whose model runs on a Triton server (``fsrfer-serve`` or tritonserver).

    ``predict(faces) -> list[Prediction]``, ``predict_logits``, ``prepare``, ``classes``, ``info``,
    ``close()`` and the context manager behave as in ``Recognizer``; faces are preprocessed here with
    the served model's own preprocessing. One instance may be shared by threads (each thread gets its
    own connection to the server).

    Args:
        url: ``HOST:PORT`` of the HTTP (8000) or gRPC (8001) endpoint.
        protocol: ``"http"`` or ``"grpc"``.
        model_name: Triton model name (``fsrfer`` for fsrfer-serve).
        timeout_s: connection and request timeout in seconds (finite, > 0).
        retries: retries of a call while the server is unreachable (e.g. restarting); 0 fails at once.
        retry_delay_s: pause between retries in seconds (finite, >= 0).
        max_batch: largest batch sent in one request (also capped by the server's max batch size).
        model: optional local copy of the served model file to read the preprocessing from.
        corrections: what is done to each crop here before it is sent (as ``Recognizer(corrections=...)``).
        confidence: the score calibration that gives each prediction its ``confidence`` (as
            ``Recognizer(confidence=...)``): ``"auto"`` finds ``NAME.scores.json`` beside ``model`` when given, else
            the packaged one of the served model's checkpoint (the shipped model's); None: ``confidence`` None.

    Raises:
        ServerUnavailable: the server cannot be reached (also raised by ``predict`` if it goes away).
        TooManyOpenFiles: this process (or the system) has no file descriptor left for a connection.
        ModelError: no such model on the server, or it does not match its metadata.
        BackendUnavailable: tritonclient is not installed (``pip install -e '.[client]'``).
    """

    def __init__(self, url: str = "127.0.0.1:8000", protocol: str = "http", model_name: str = "fsrfer",
                 timeout_s: float = 30.0, retries: int = 0, retry_delay_s: float = 1.0, max_batch: int = 64,
                 model: Optional[PathLike] = None,
                 corrections: Union[None, Corrections, dict[str, Any]] = None,
                 confidence: Union[None, str, "os.PathLike[str]", ScoreCalibration] = "auto") -> None:
        requested = _positive_int("max_batch", max_batch, 1)
        fix = as_corrections(corrections)
        _check_confidence(confidence)
        backend = TritonClientBackend(url, protocol, model_name, timeout_s, retries, retry_delay_s, model)
        self.url = backend.endpoint
        try:
            self._attach(backend, requested, fix)
            self._scores = _resolve_confidence(confidence, model, backend.info)
        except BaseException:
            backend.close()
            raise

    def __repr__(self) -> str:
        return (f"RemoteRecognizer(url={self.url!r}, model_name={self.model_name!r}, "
                f"max_batch={self.max_batch}{self._corrections_repr()})")

    @property
    def model_name(self) -> str:
        """The Triton model name this recognizer sends requests to."""
        backend = self.backend
        return backend.model_name if isinstance(backend, TritonClientBackend) else backend.name

