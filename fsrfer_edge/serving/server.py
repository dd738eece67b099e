"""``fsrfer-serve``: a real NVIDIA Triton Inference Server on this machine, through PyTriton.

PyTriton ships the ``tritonserver`` binary and runs a Python function as a Triton model; here that
function calls :meth:`Recognizer.predict_logits <fsrfer_edge.Recognizer.predict_logits>` (ONNX Runtime,
or TensorRT for an engine) on the batch Triton's dynamic batcher formed from many clients' requests.
Clients send the already prepared model input (N, C, S, S), float32 or uint8 as the model's ModelInfo
says, so the server batches across clients; :class:`~fsrfer_edge.serving.RemoteRecognizer` does that.
The served model's ModelInfo is published through a companion model ``<name>_info``.

Environment requirements of PyTriton 0.7 (checked by :func:`check_environment`, with what to do):

- numpy < 2 in the serving process: PyTriton's Python backend stub is compiled for the numpy 1.x ABI
  and returns empty outputs under numpy 2 ("output tensor shape does not match size of output").
  Clients may use numpy 2.
- a shared ``libpython3.X.so`` (the stub embeds the interpreter); for a Python that is not the
  system's one (pyenv, a custom prefix) its library folder must come first on LD_LIBRARY_PATH,
  which :func:`serve` arranges.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Callable, Optional, Sequence, Union

import numpy as np

from ..backends.onnxruntime_backend import MAX_THREADS
from ..errors import BackendUnavailable, ConfigError, check_home_expanded, require, sigterm_interrupts
from ..metadata import ModelInfo
from ..recognizer import Recognizer
from .client import INFO_MODEL_SUFFIX, INFO_OUTPUT
from .errors import ServerUnavailable
from .triton_repo import DEFAULT_QUEUE_DELAY_US, _preferred

#: The most model instances serve() runs, one Recognizer (an ONNX Runtime session or a TensorRT engine) each, all
#: in this process: the bound of ``--sessions`` (one session per core at most helps, and no machine has more cores
#: than this); beyond it each instance only adds memory and threads.
MAX_INSTANCES = MAX_THREADS

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
DEFAULT_MAX_BATCH = 64
#: Environment variable naming the Python that runs the server in :class:`ServerProcess` (e.g. a
#: venv with numpy<2 when the calling environment has numpy 2).
SERVE_PYTHON_ENV = "FSRFER_SERVE_PYTHON"


# ---------------------------------------------------------------------------------------------
# Environment checks
# ---------------------------------------------------------------------------------------------


def _numpy_problem() -> Optional[str]:
    """Why this numpy cannot serve with the installed PyTriton, or None."""
    from importlib import metadata

    try:
        requirements = metadata.requires("nvidia-pytriton") or []
        version = metadata.version("nvidia-pytriton")
    except metadata.PackageNotFoundError:
        return None
    Requirement = require("packaging.requirements", "serve", "checking PyTriton's requirements").Requirement
    for text in requirements:
        req = Requirement(text)
        if req.name != "numpy" or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        if not req.specifier.contains(np.__version__, prereleases=True):
            return (f"nvidia-pytriton {version} requires numpy{req.specifier}, but this Python "
                    f"({sys.executable}) has numpy {np.__version__}. PyTriton's Python backend stub is compiled "
                    "for the numpy 1.x ABI and returns empty outputs under numpy 2. Run the server from an "
                    "environment with numpy<2 (clients may keep numpy 2), e.g., in the fsrfer-edge checkout: "
                    "python -m venv ~/.venvs/fsrfer-serve && ~/.venvs/fsrfer-serve/bin/pip install 'numpy<2' -e "
                    "'.[serve]' && ~/.venvs/fsrfer-serve/bin/fsrfer-serve ...")
    return None


def _libpython_dir() -> Path:
    """The folder of this interpreter's shared libpython, which PyTriton's stub must load."""
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlibrary = sysconfig.get_config_var("LDLIBRARY") or ""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not libdir or not (Path(libdir) / ldlibrary).exists():
        raise BackendUnavailable(
            f"this Python ({sys.executable}) has no shared libpython (Py_ENABLE_SHARED is off), but PyTriton's "
            f"Python backend stub embeds libpython{sysconfig.get_python_version()}.so from the serving environment. "
            "Use a Python built with --enable-shared (pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install "
            "3.X), the distribution's python3, or conda")
    return Path(libdir)


def check_environment() -> dict[str, str]:
    """Check that a PyTriton server can run in this Python; return the environment it needs.

    Returns:
        Environment variables for the ``tritonserver`` process (LD_LIBRARY_PATH with this Python's
        libpython folder first).

    Raises:
        BackendUnavailable: PyTriton is not installed (extra ``serve``), numpy is too new for it, or
            this Python has no shared libpython; the message says what to do.
    """
    require("pytriton.triton", "serve", "running a Triton server")
    problem = _numpy_problem()
    if problem:
        raise BackendUnavailable(problem)
    libdir = str(_libpython_dir())
    paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != libdir]
    return {"LD_LIBRARY_PATH": os.pathsep.join([libdir] + paths)}


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


def _check_port(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(f"{name}={value!r}; expected a TCP port 1..65535")
    return value


#: The characters of a model name PyTriton takes (``Triton._validate_model_name``, PyTriton 0.7: ASCII only).
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _check_model_name(model_name: Any) -> str:
    """Refuse a Triton model name PyTriton refuses (only after the models are loaded, and not as a ConfigError), and
    ``.`` or ``..``, which PyTriton takes and joins to its model store's path, so that the model's config and files
    would be written into the workspace (or the model store itself) instead of a model folder."""
    if not isinstance(model_name, str) or not model_name or not set(model_name) <= _NAME_CHARS \
            or model_name in (".", ".."):
        raise ConfigError(f"model_name={model_name!r}; expected ASCII letters, digits, '.', '_' or '-' (not '.' or "
                          "'..' alone), e.g. fsrfer")
    return model_name


def _check_options(model_name: str, max_batch: int, preferred: Sequence[int], max_queue_delay_us: int,
                   instances: int, ports: dict[str, int], log_verbose: int = 0) -> None:
    _check_model_name(model_name)
    for name, value, minimum in (("max_batch", max_batch, 1), ("instances", instances, 1),
                                 ("max_queue_delay_us", max_queue_delay_us, 0), ("log_verbose", log_verbose, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{name}={value!r}; expected an integer >= {minimum}")
    if instances > MAX_INSTANCES:  # each one loads its own Recognizer before the server starts
        raise ConfigError(f"instances={instances}; expected an integer from 1 to {MAX_INSTANCES} (one Recognizer "
                          "each; more than one per CPU core does not help)")
    for b in preferred:
        if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= max_batch:
            raise ConfigError(f"preferred batch size {b!r}; expected integers in 1..max_batch ({max_batch})")
    if len(set(preferred)) != len(preferred):  # as fsrfer-export --triton-repo refuses them
        raise ConfigError(f"preferred batch sizes {list(preferred)} repeat a value; give each size once")
    for name, port in ports.items():
        _check_port(name, port)
    if len(set(ports.values())) != len(ports):
        raise ConfigError(f"ports {ports} must differ")


def _host_error(host: str, exc: OSError) -> Optional[ConfigError]:
    """The error for a host this machine cannot listen on, from binding a socket to it; None where ``exc`` is
    about something else (such as the port)."""
    if isinstance(exc, socket.gaierror):  # also an IPv6 address: PyTriton 0.7 builds its own URLs as IPv4 ones
        return ConfigError(f"host={host!r} is not an IPv4 address or a name that resolves to one ({exc}); expected "
                           "an IPv4 address of this machine, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (all): "
                           "fsrfer-serve does not listen on IPv6")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(f"host={host!r} is not an address of this machine ({exc}); expected one of its own "
                           "addresses, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (all)")
    return None


def _check_host(host: Any) -> str:
    if not isinstance(host, str) or not host:
        raise ConfigError(f"host={host!r}; expected an IPv4 address of this machine, e.g. 127.0.0.1 (this machine "
                          "only) or 0.0.0.0 (all)")
    return host


def _check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Refuse a host this machine cannot listen on, and ports something already listens on (tritonserver
    would exit and PyTriton wait minutes)."""
    for name, port in ports.items():
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no obstacle
            try:
                s.bind((host, port))
            except OSError as exc:
                bad_host = _host_error(host, exc)
                if bad_host is not None:
                    raise bad_host from exc
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(f"{name}={port}: cannot listen on {host}:{port} ({exc}); another server (an "
                                      "earlier fsrfer-serve or tritonserver?) uses it. Stop it or pass "
                                      f"--{name.replace('_', '-')} with a free port") from exc
                raise ConfigError(f"{name}={port}: cannot listen on {host}:{port} ({exc}); expected a host and port "
                                  "this user may listen on (ports below 1024 need privileges)") from exc


def _pytriton_home() -> Path:
    """The folder under which PyTriton makes its default workspace, as ``pytriton.constants`` reads it (PyTriton
    0.7): ``$PYTRITON_HOME``, else ``$XDG_CACHE_HOME/pytriton``, else ``~/.cache/pytriton``, resolved."""
    default = os.path.join(os.getenv("XDG_CACHE_HOME", "$HOME/.cache"), "pytriton")
    return Path(os.path.expanduser(os.path.expandvars(os.getenv("PYTRITON_HOME", default)))).resolve()


def _check_paths(workspace: Optional[PathLike], log_file: Optional[PathLike]) -> None:
    """Refuse paths PyTriton cannot hand to tritonserver: it joins the command line into one string and splits it at
    whitespace again (``TritonServerConfig.to_args_list``, PyTriton 0.7), and starts ``WORKSPACE/tritonserver/bin/
    tritonserver`` by a path it splits at the first space; a ``~`` would make a folder named so in this one."""
    for name, path in (("log_file", log_file), ("workspace", workspace)):
        check_home_expanded(name, path)
    if log_file is not None and any(c.isspace() for c in os.fspath(log_file)):
        raise ConfigError(f"log_file {os.fspath(log_file)!r} contains whitespace, which PyTriton cannot pass to "
                          "tritonserver (it splits the command line at whitespace); expected a path without spaces")
    if workspace is not None:
        where = [os.fspath(workspace), str(Path(workspace).resolve())]  # PyTriton resolves it
        if any(c.isspace() for text in where for c in text):
            raise ConfigError(f"workspace {where[0]!r} (resolved: {where[1]!r}) contains whitespace, which PyTriton "
                              "cannot pass to tritonserver (it splits the command line at whitespace); expected a "
                              "path without spaces")
        return
    home = str(_pytriton_home())
    if any(c.isspace() for c in home):
        raise ConfigError(f"PyTriton's default workspace folder {home!r} ($PYTRITON_HOME, else "
                          "$XDG_CACHE_HOME/pytriton or ~/.cache/pytriton) contains whitespace, which PyTriton cannot "
                          "pass to tritonserver (it splits the command line at whitespace); set PYTRITON_HOME to a "
                          "folder without spaces, or pass a workspace (--workspace) without spaces")


def _infer_function(rec: Recognizer) -> Callable[..., dict[str, np.ndarray]]:
    """PyTriton infer function: the batch Triton formed -> logits, by the Recognizer."""
    batch_decorator = require("pytriton.decorators", "serve").batch
    info = rec.info

    @batch_decorator  # type: ignore[untyped-decorator]
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        faces = inputs[info.input_name]
        if faces.dtype.kind == "f":
            # One client's NaN must not fail the other clients' requests batched with it; those rows
            # get NaN logits (RemoteRecognizer refuses NaN input before sending).
            ok = np.isfinite(faces).all(axis=tuple(range(1, faces.ndim)))
            if not ok.all():
                logits = np.full((faces.shape[0], len(info.classes)), np.nan, dtype=np.float32)
                if ok.any():
                    logits[ok] = rec.predict_logits(np.ascontiguousarray(faces[ok]))
                return {info.output_name: logits}
        return {info.output_name: rec.predict_logits(faces)}

    return infer


def _info_function(info: ModelInfo) -> Callable[[list[Any]], list[dict[str, np.ndarray]]]:
    answer = np.array([info.to_json().encode()], dtype=object)

    def model_info(requests: list[Any]) -> list[dict[str, np.ndarray]]:
        return [{INFO_OUTPUT: answer} for _ in requests]

    return model_info


def build_triton(recognizers: Sequence[Recognizer], host: str = "127.0.0.1", http_port: int = 8000,
                 grpc_port: int = 8001, metrics_port: int = 8002, model_name: str = "fsrfer",
                 max_batch: int = DEFAULT_MAX_BATCH, preferred_batch_sizes: Sequence[int] = (),
                 max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US, log_verbose: int = 0,
                 workspace: Optional[PathLike] = None, log_file: Optional[PathLike] = None) -> Any:
    """A PyTriton ``Triton`` (not started) with the model bound once per recognizer (instance).

    Raises:
        BackendUnavailable: see :func:`check_environment`.
    """
    env = check_environment()
    os.environ.update(env)  # PyTriton starts tritonserver with a copy of os.environ
    triton_mod = require("pytriton.triton", "serve", "running a Triton server")
    mc = require("pytriton.model_config", "serve", "running a Triton server")
    info = recognizers[0].info
    pre = info.preprocessing
    config = triton_mod.TritonConfig(
        http_address=host, http_port=http_port, grpc_address=host, grpc_port=grpc_port,
        metrics_address=host, metrics_port=metrics_port, log_verbose=log_verbose,
        log_file=None if log_file is None else Path(log_file))
    triton = triton_mod.Triton(config=config, workspace=None if workspace is None else str(workspace))
    batcher = mc.DynamicBatcher(max_queue_delay_microseconds=max_queue_delay_us,
                                preferred_batch_size=list(preferred_batch_sizes) or None)
    triton.bind(model_name=model_name + INFO_MODEL_SUFFIX, infer_func=_info_function(info), inputs=[],
                outputs=[mc.Tensor(name=INFO_OUTPUT, dtype=bytes, shape=(1,))],
                config=mc.ModelConfig(batching=False))
    triton.bind(
        model_name=model_name,
        infer_func=[_infer_function(r) for r in recognizers],
        inputs=[mc.Tensor(name=info.input_name, dtype=np.dtype(info.input_dtype).type,
                          shape=(pre.channels, pre.input_size, pre.input_size))],
        outputs=[mc.Tensor(name=info.output_name, dtype=np.float32, shape=(len(info.classes),))],
        config=mc.ModelConfig(max_batch_size=max_batch, batcher=batcher),
        strict=True,
    )
    return triton


def serve(model: Optional[PathLike] = None, host: str = "127.0.0.1", http_port: int = 8000,
          grpc_port: int = 8001, metrics_port: int = 8002, model_name: str = "fsrfer",
          max_batch: int = DEFAULT_MAX_BATCH, preferred_batch_sizes: Optional[Sequence[int]] = None,
          max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US, instances: int = 1, backend: str = "auto",
          threads: Optional[int] = None, log_verbose: int = 0, workspace: Optional[PathLike] = None,
          on_ready: Optional[Callable[[], None]] = None, log_file: Optional[PathLike] = None) -> None:
    """Serve a model with Triton (through PyTriton) until interrupted (Ctrl-C / SIGINT / SIGTERM).

    Args:
        model: an ``.onnx`` model, a TensorRT engine, or None for the shipped default model.
        host: address to listen on; loopback by default (use ``0.0.0.0`` to accept other machines).
        http_port / grpc_port / metrics_port: Triton's HTTP, gRPC and Prometheus metrics ports.
        model_name: the Triton model name clients use (``<model_name>_info`` is added for metadata).
        max_batch: largest batch Triton's dynamic batcher forms (capped by an engine's profile).
        preferred_batch_sizes: batch sizes the batcher aims for (default: none, the largest it can).
        max_queue_delay_us: how long a request may wait for others to join its batch.
        instances: model instances, each with its own Recognizer (ONNX Runtime session/engine), 1 to
            :data:`MAX_INSTANCES`.
        backend: ``"auto"``, ``"onnxruntime"`` or ``"tensorrt"``, as for :class:`~fsrfer_edge.Recognizer`.
        threads: ONNX Runtime threads per instance, 1 to :data:`MAX_THREADS` (None: one per physical core).
        log_verbose: Triton's verbose log level (0: off).
        workspace: folder for PyTriton's model store and sockets, which PyTriton creates and deletes when
            the server stops, so it must not exist yet (default: a new one under ``$PYTRITON_HOME``,
            ~/.cache/pytriton).
        on_ready: called once the server answers requests.
        log_file: tritonserver writes its log to this file instead of the console (its folder is made).
            ``workspace`` and ``log_file`` may hold no whitespace (PyTriton splits tritonserver's command line at
            it; for the default workspace, $PYTRITON_HOME neither), and no unexpanded ``~``.

    Raises:
        BackendUnavailable: PyTriton missing, or this environment cannot run its server (see
            :func:`check_environment`).
        ConfigError: invalid options. ModelError: the model cannot be loaded.
    """
    preferred = _preferred(preferred_batch_sizes)  # a number or a string refused, not iterated
    _check_options(model_name, max_batch, preferred, max_queue_delay_us, instances,
                   {"http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port}, log_verbose)
    # Recognizer refuses it too, but only after the environment, the ports and the log's folder
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                or not 1 <= threads <= MAX_THREADS):
        raise ConfigError(f"threads={threads!r}; expected an integer from 1 to {MAX_THREADS}, or None (ONNX Runtime's "
                          "default, one per physical core)")
    _check_paths(workspace, log_file)
    if workspace is not None and os.path.lexists(workspace):
        raise ConfigError(f"workspace {str(workspace)!r} already exists; PyTriton creates the workspace folder and "
                          "deletes it with everything in it when the server stops, so expected a path that does not "
                          "exist yet (or none, for a temporary folder)")
    check_environment()  # before loading models: fail fast with the fix
    _check_ports_free(host, {"http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port})
    if log_file is not None:  # tritonserver opens it, but does not make its folder
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    recognizers: list[Recognizer] = []
    try:
        for _ in range(instances):
            recognizers.append(Recognizer(model, backend=backend, max_batch=max_batch, threads=threads))
        limit = min(max_batch, recognizers[0].max_batch)
        if limit < max_batch:
            logger.info("max_batch %d -> %d (the model's limit)", max_batch, limit)
        preferred = tuple(b for b in preferred if b <= limit)
        triton = build_triton(recognizers, host, http_port, grpc_port, metrics_port, model_name, limit, preferred,
                              max_queue_delay_us, log_verbose, workspace, log_file)
        _run_until_interrupted(triton, on_ready, log_file)
    finally:
        for rec in recognizers:
            rec.close()


def _sigint_ignored_hint() -> str:
    """Why the server may have stopped where this process ignores SIGINT (nohup, a script's background job): a
    Ctrl-C to the process group then stops tritonserver, which handles it, but not fsrfer-serve."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        return ""
    return (". This fsrfer-serve ignores SIGINT (started with nohup or in the background of a script), so a Ctrl-C "
            "or SIGINT to its process group stops tritonserver alone; stop fsrfer-serve with SIGTERM (kill PID) "
            "instead")


def _run_until_interrupted(triton: Any, on_ready: Optional[Callable[[], None]],
                           log_file: Optional[PathLike] = None) -> None:
    in_file = f"tritonserver's log is in {log_file}" if log_file is not None else ""
    pytriton_error = require("pytriton.exceptions", "serve").PyTritonError
    with sigterm_interrupts():  # SIGTERM stops the server as cleanly as Ctrl-C
        try:
            try:
                triton.run()
            except (pytriton_error, TimeoutError) as exc:
                raise ServerUnavailable(f"the Triton server did not start ({type(exc).__name__}: {exc}); "
                                        + (in_file or "run fsrfer-serve --log-verbose 1 to see tritonserver's log")
                                        ) from exc
            if on_ready is not None:
                on_ready()
            while triton.is_alive():
                time.sleep(0.5)
            raise ServerUnavailable("the Triton server or its model proxy stopped unexpectedly; "
                                    + (in_file or "see the log above") + _sigint_ignored_hint())
        except KeyboardInterrupt:
            logger.info("stopping the Triton server")
        finally:
            triton.stop()


# ---------------------------------------------------------------------------------------------
# A server in a child process (tests, load tests, supervisors)
# ---------------------------------------------------------------------------------------------


def free_ports(host: str = "127.0.0.1", n: int = 1) -> list[int]:
    """``n`` different TCP ports that are free on ``host`` now (all held open while they are chosen, so that
    the system cannot hand out one of them twice).

    Raises:
        ConfigError: ``host`` is not an IPv4 address (or name) of this machine.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n={n!r}; expected an integer >= 1 (how many ports)")
    _check_host(host)
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)))
                 for _ in range(n)]
        for s in socks:
            try:
                s.bind((host, 0))
            except OSError as exc:
                bad_host = _host_error(host, exc)
                if bad_host is not None:
                    raise bad_host from exc
                raise
        return [int(s.getsockname()[1]) for s in socks]


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def _abandon(pgid: int, folder: Path) -> None:
    """What :meth:`ServerProcess.kill` does, for a server its owner never stopped (the finalizer, also at
    interpreter exit): kill its process group, then remove its shared memory, the Python backend's model
    copies and its temporary folder, which a killed tritonserver leaves behind."""
    shm = _group_shm_files(pgid)
    copies = _group_model_copies(pgid)
    _kill_group(pgid)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pgid, 0)  # fsrfer-serve is our child (its pid is the group id)
    _wait_group_gone(pgid)
    for path in shm:
        with contextlib.suppress(OSError):
            os.unlink(path)
    for copy in copies:
        shutil.rmtree(copy, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)


def _group_processes(pgid: int) -> list[Path]:
    """The /proc folders of the processes of a process group (Linux; empty elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # fields after "(comm)": state, ppid, pgrp, ...
                found.append(stat.parent)
        except (OSError, IndexError, ValueError):
            continue
    return found


def _live_group_processes(pgid: int) -> list[Path]:
    """The processes of a process group that have not exited yet (zombies have: they hold no ports or memory,
    and an orphan's stays until a reaper collects it, which a container's first process may never do)."""
    live = []
    for proc in _group_processes(pgid):
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # gone meanwhile
        if state not in ("Z", "X"):
            live.append(proc)
    return live


#: How long :meth:`ServerProcess.kill` waits for the killed process group to be gone (tritonserver can take
#: seconds to exit after SIGKILL, while the kernel frees its memory and GPU context; it holds its ports until then).
GROUP_EXIT_TIMEOUT_S = 15.0


def _wait_group_gone(pgid: int, timeout_s: float = GROUP_EXIT_TIMEOUT_S) -> bool:
    """Wait until no process of a killed process group runs (Linux; at once elsewhere); False, with a warning,
    where some still run after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        live = _live_group_processes(pgid)
        if not live:
            return True
        if time.monotonic() >= deadline:
            logger.warning("processes %s of the killed fsrfer-serve (process group %d) still run after %.0f s; a "
                           "server started now may find its ports in use", ", ".join(p.name for p in live), pgid,
                           timeout_s)
            return False
        time.sleep(0.02)


def _group_shm_files(pgid: int) -> list[str]:
    """/dev/shm files mapped by the processes of a process group (Linux; empty elsewhere)."""
    found: set[str] = set()
    for proc in _group_processes(pgid):
        try:
            maps = (proc / "maps").read_text()
        except OSError:
            continue
        found.update(line.split(None, 5)[5].strip() for line in maps.splitlines()
                     if len(line.split(None, 5)) == 6 and line.split(None, 5)[5].startswith("/dev/shm/"))
    return sorted(p.replace(" (deleted)", "") for p in found if not p.endswith("(deleted)"))


def _group_model_copies(pgid: int) -> list[Path]:
    """The copies of the models that Triton's Python backend made for the stubs of a process group
    (``/tmp/folderXXXXXX``; a stub's first argument is ``<copy>/<version>/model.py``), which tritonserver
    deletes when it stops cleanly (Linux; empty elsewhere)."""
    found: set[Path] = set()
    for proc in _group_processes(pgid):
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if len(argv) > 1 and Path(argv[0]).name == "triton_python_backend_stub" and argv[1].endswith("/model.py"):
            copy = Path(argv[1]).parent.parent
            if len(copy.name) == 12 and copy.name.startswith("folder"):  # the backend's mkdtemp template
                found.add(copy)
    return sorted(found)


def _group_listens(pgid: int, port: int) -> bool:
    """Whether a process of a process group listens on TCP ``port``, rather than another server (Linux:
    /proc/net/tcp and the processes' descriptors; True elsewhere, where it cannot be told)."""
    inodes: set[str] = set()
    tables = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        tables += 1
        for line in lines:  # sl local_address rem_address st ... uid timeout inode
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    if not tables:
        return True
    for proc in _group_processes(pgid):
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return True
    return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def serve_python() -> str:
    """The interpreter :class:`ServerProcess` uses: ``$FSRFER_SERVE_PYTHON`` or this one."""
    return os.environ.get(SERVE_PYTHON_ENV) or sys.executable


#: Start-up failures that a fresh start clears: PyTriton's Python backend sometimes cannot reach the
#: handshake socket of a model instance it is starting ("Connection refused" in
#: get_config_from_handshake_server), more often with several instances on a busy machine.
TRANSIENT_START_ERRORS = ("get_config_from_handshake_server",)
START_ATTEMPTS = 3
#: tritonserver's log file in a :class:`ServerProcess`'s temporary folder.
TRITON_LOG = "tritonserver.log"


class ServerProcess:
    """``fsrfer-serve`` in a child process (its own process group), started and stopped by this object.

    Args:
        model: model file for the server (None: the shipped default model).
        host: listen address (loopback by default).
        http_port / grpc_port / metrics_port: ports; 0 picks a free one at the first start (kept on restart).
        model_name: Triton model name.
        python: interpreter running the server (default :func:`serve_python`).
        args: further ``fsrfer-serve`` options, e.g. ``["--max-queue-delay-us", "500"]``.
        startup_timeout_s: how long :meth:`start` waits for the model to be ready.

    Use as a context manager; :meth:`kill` simulates a crash (SIGKILL to the whole group) and
    :meth:`start` starts it again on the same ports.
    """

    def __init__(self, model: Optional[PathLike] = None, host: str = "127.0.0.1", http_port: int = 0,
                 grpc_port: int = 0, metrics_port: int = 0, model_name: str = "fsrfer",
                 python: Optional[str] = None, args: Sequence[str] = (), startup_timeout_s: float = 120.0) -> None:
        self.model = None if model is None else Path(model)
        self.host = _check_host(host)
        given = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        for name, port in given.items():  # refused here, not by the child process once it has started
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
                raise ConfigError(f"{name}_port={port!r}; expected a TCP port 1..65535, or 0 for a free one")
        if isinstance(startup_timeout_s, bool) or not isinstance(startup_timeout_s, (int, float)) or not (
                math.isfinite(startup_timeout_s) and startup_timeout_s > 0):
            raise ConfigError(f"startup_timeout_s={startup_timeout_s!r}; expected a finite, positive number of "
                              "seconds")
        taken = {p for p in given.values() if p}  # a port given but not yet bound is free: never pick it
        picked = (p for p in free_ports(host, 3) if p not in taken)
        self.ports = {k: p or next(picked) for k, p in given.items()}
        self.model_name = _check_model_name(model_name)  # here, not by the child process once it has started
        self.python = python or serve_python()
        self.args = list(args)
        self.startup_timeout_s = startup_timeout_s
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._tmp: Optional[Path] = None
        self._log: Optional[IO[bytes]] = None
        self._finalizer: Optional[weakref.finalize[Any, Any]] = None

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.ports['metrics']}/metrics"

    @property
    def pid(self) -> Optional[int]:
        return None if self._proc is None else self._proc.pid

    def command(self, workspace: Path) -> list[str]:
        """The ``fsrfer-serve`` command line this object runs.

        Names and paths as ``--option=VALUE`` (argparse takes ``--model -face.onnx`` for two options), paths made
        absolute (fsrfer-serve would take a leading ``~`` for the home folder, where it names a folder ``~`` here).
        """
        cmd = [self.python, "-m", "fsrfer_edge.serving.cli", "--host", self.host,
               "--http-port", str(self.ports["http"]), "--grpc-port", str(self.ports["grpc"]),
               "--metrics-port", str(self.ports["metrics"]), f"--model-name={self.model_name}"]
        if self.model is not None:
            cmd.append(f"--model={os.path.abspath(self.model)}")
        if not any(a == "--log-file" or a.startswith("--log-file=") for a in self.args):  # tritonserver's log,
            # beside this object's log of the command
            cmd.append(f"--log-file={os.path.abspath(workspace.parent / TRITON_LOG)}")
        return cmd + [f"--workspace={os.path.abspath(workspace)}"] + self.args

    def start(self) -> "ServerProcess":
        """Start the server and wait until the model answers. A start that fails in PyTriton's model
        start-up handshake (:data:`TRANSIENT_START_ERRORS`) is tried again, up to :data:`START_ATTEMPTS`
        starts in all.

        Raises:
            ServerUnavailable: the server exited or was not ready within ``startup_timeout_s``; the
                message holds the end of its log.
            ConfigError: the server's Python (``python=`` or ``$FSRFER_SERVE_PYTHON``) cannot be run.
        """
        if self.running:
            return self
        self.kill()  # a server that died on its own: its children (tritonserver, stubs), folder and log
        for attempt in range(1, START_ATTEMPTS + 1):
            self._launch()
            try:
                self._wait_ready()
                return self
            except ServerUnavailable as exc:
                if attempt == START_ATTEMPTS or not any(m in str(exc) for m in TRANSIENT_START_ERRORS):
                    raise
                logger.warning("fsrfer-serve failed to start its model instances (PyTriton's start-up handshake); "
                               "starting it again (attempt %d of %d)", attempt + 1, START_ATTEMPTS)
        return self  # pragma: no cover (the loop returns or raises)

    def _launch(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="fsrfer-serve-"))
        self._log = open(self._tmp / "server.log", "wb")
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # run this source tree's fsrfer_edge
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        try:
            self._proc = subprocess.Popen(self.command(self._tmp / "workspace"), stdout=self._log,
                                          stderr=subprocess.STDOUT, env=env, start_new_session=True)
        except OSError as exc:
            self._cleanup()
            given = (f"${SERVE_PYTHON_ENV}" if os.environ.get(SERVE_PYTHON_ENV) == self.python else "python=")
            raise ConfigError(f"cannot run the server's Python {self.python!r}, given by {given} ({exc}); expected "
                              "the path of a Python interpreter that has fsrfer_edge and PyTriton (numpy<2), e.g. "
                              "a venv's bin/python") from exc
        # A forgotten server (an exception in the owner, no stop()) must not outlive this process, nor leave
        # its files behind.
        self._finalizer = weakref.finalize(self, _abandon, self._proc.pid, self._tmp)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        """The end of fsrfer-serve's output and of tritonserver's log (``chars`` of each)."""
        if self._tmp is None:
            return ""
        parts = [(what, self._tmp / name) for what, name in (("", "server.log"), ("tritonserver's log:\n", TRITON_LOG))]
        return "\n".join(what + path.read_bytes()[-chars:].decode(errors="replace")
                         for what, path in parts if path.is_file() and path.stat().st_size)

    def _wait_ready(self) -> None:
        urls = [f"http://{self.http_url}/v2/models/{name}/ready"
                for name in (self.model_name + INFO_MODEL_SUFFIX, self.model_name)]
        deadline = time.monotonic() + self.startup_timeout_s
        proc = self._proc
        other = ""  # another server answers on our port: ours cannot listen there, and must not be taken for it
        while proc is not None and time.monotonic() < deadline:
            ready = all(_http_ok(u) for u in urls)
            if proc.poll() is not None:  # also after an answer: it may have come from another server
                tail = self.log_tail()
                self.kill()
                raise ServerUnavailable(f"fsrfer-serve exited with code {proc.returncode} while starting; "
                                        f"end of its log:\n{tail}")
            if ready and _group_listens(proc.pid, self.ports["http"]):
                logger.info("server ready at %s (pid %d)", self.http_url, proc.pid)
                return
            if ready:
                other = (f" (another server, not this one, answers at {self.http_url}: stop it or use other "
                         "ports)")
            time.sleep(0.2)
        tail = self.log_tail()
        self.kill()
        raise ServerUnavailable(f"fsrfer-serve was not ready within {self.startup_timeout_s:.0f} s{other}; end of "
                                f"its log:\n{tail}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the server cleanly (SIGTERM to fsrfer-serve, which stops tritonserver), or kill it after
        ``timeout_s``. SIGTERM, not SIGINT: a process that ignores SIGINT (started with ``nohup`` or in the
        background of a script) passes that on to its children, and fsrfer-serve handles SIGTERM itself."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("fsrfer-serve did not stop within %.0f s; killing it", timeout_s)
        self.kill()

    def kill(self) -> None:
        """Kill the server's whole process group at once (SIGKILL), as a crash would, wait until all its
        processes have exited (and so released its ports; at most :data:`GROUP_EXIT_TIMEOUT_S`), then remove
        what a clean stop would have: its shared memory and the Python backend's copies of the models. Once
        that is done it does nothing: the process group id may by then be another group's."""
        if self._proc is None or self._tmp is None:
            return
        shm = _group_shm_files(self._proc.pid)
        copies = _group_model_copies(self._proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        # Its children die with it, but not at once (tritonserver frees gigabytes and a GPU context first, holding
        # its ports): a start() right after this would find them in use. Until all have exited the group id
        # cannot be handed to another group, so it is still theirs while this polls it.
        _wait_group_gone(self._proc.pid)
        for path in shm:
            with contextlib.suppress(OSError):
                os.unlink(path)
        for copy in copies:
            shutil.rmtree(copy, ignore_errors=True)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.stop()

