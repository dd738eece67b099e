"""How TensorRT engines are named, cached and checked (shared by the builder and the runtime).

An engine is not portable: it is tied to the TensorRT version, the GPU (compute capability and
model: an AGX Orin and an Orin Nano are both sm87), the precision of the ONNX file it came from and
its optimisation profile (batch range). All of these go into the file name, with the start of the ONNX file's
SHA-256 (so that two files of one name, such as a model's ``.fp32`` and ``.fp16`` files, which both build FP16
engines, or two versions of ``model.onnx`` in one cache, do not replace each other's engine), and a JSON
sidecar beside the engine records them plus the whole SHA-256 and the model's
:class:`~fsrfer_edge.metadata.ModelInfo`. An engine whose sidecar is missing or
disagrees with the running system is never run: the builder rebuilds it, the runtime refuses it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import logging
import numbers
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from .errors import ConfigError, EngineError, InputError, ModelError
from .fileio import (file_problem, has_flock, loads_json, lock_note, open_lock_file, read_sidecar_text, release_flock,
                     sha256_file, short_name, try_flock, write_json, write_lock_note)
from .metadata import PRECISIONS, ModelInfo

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"
ENGINE_SUFFIX = ".engine"
#: File-name parts that name a variant's precision; stripped from the engine's model stem.
VARIANT_SUFFIXES = (".fp32", ".fp16", ".int8-s8s8", ".int8-u8s8", ".int8")
#: Hex digits of the source ONNX file's SHA-256 in an engine's name.
SOURCE_DIGITS = 8
#: A TensorRT version as ``tensorrt.__version__`` writes it: major.minor.patch at least (``10.3.0.26``, ``10.0.0b6``).
_FULL_VERSION = re.compile(r"\d+\.\d+\.\d+[\w.+-]*")
#: Most bytes of the model's name in an engine's file name: the rest of the name (precision, digest, TensorRT version,
#: GPU, batch range) takes about 100 more, and a file name holds 255 bytes (NAME_MAX), a temporary one beside it too.
STEM_MAX_BYTES = 128
#: Most bytes of an engine's file name: its sidecar's temporary file, ``.NAME.json.XXXXXXXX.tmp``, is 19 longer.
ENGINE_NAME_MAX_BYTES = 255 - 19
#: A GPU's compute capability as an :class:`EngineKey` holds it: ``8.7``.
_COMPUTE_CAPABILITY = re.compile(r"\d+\.\d+")
#: A GPU's identity key (:attr:`fsrfer_edge.backends.cuda_memory.DeviceIdentity.key`): one part of a file name.
_DEVICE = re.compile(r"[A-Za-z0-9_-]*")


def _path_arg(name: str, value: Any, what: str) -> Path:
    """``value`` as a Path, or InputError where it is no path (None, a number, bytes, an empty string)."""
    if not isinstance(value, (str, os.PathLike)) or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{name}={value!r}; expected a path (str or os.PathLike) to {what}")
    try:
        return Path(value)
    except TypeError as exc:  # an os.PathLike that gives bytes
        raise InputError(f"{name}={value!r}; expected a path (str or os.PathLike) to {what} ({exc})") from exc


def _version_arg(value: Any) -> Optional[str]:
    """``tensorrt_version`` of :func:`list_engines` and :func:`prune`, or InputError: every engine of another version
    is stale, so a short or mistyped one would mark every engine stale, and prune would remove them all."""
    if value is not None and not (isinstance(value, str) and _FULL_VERSION.fullmatch(value)):
        raise InputError(f"tensorrt_version={value!r}; expected TensorRT's full version as tensorrt.__version__ "
                         "writes it, major.minor.patch at least (e.g. '10.3.0.26'), or None not to judge versions "
                         "(engines of any other version count as stale and prune removes them)")
    return value


def _folder_arg(folder: Any) -> Path:
    """The cache folder of :func:`list_engines` and :func:`prune`: a folder, or a path with nothing there yet."""
    root = _path_arg("folder", folder, "a folder of engines")
    if root.exists() and not root.is_dir():
        raise InputError(f"folder={str(folder)!r} is not a folder; expected a folder of engines (the engine cache, "
                         "or the --out-dir of fsrfer-export --engine), not a file in it")
    return root


def model_stem(onnx_path: str | os.PathLike[str]) -> str:
    """``face.int8-s8s8.onnx`` -> ``face`` (the precision goes into the engine name separately).

    The builder names engines with it and the runtime looks them up with it.
    """
    name = Path(onnx_path).name
    stem = name[:-len(".onnx")] if name.endswith(".onnx") else Path(name).stem
    for suffix in VARIANT_SUFFIXES:
        if stem.endswith(suffix):
            return stem[:-len(suffix)]
    return stem


def default_cache_dir() -> Path:
    """``$FSRFER_ENGINE_DIR`` if set, else ``~/.cache/fsrfer-edge/engines``.

    A leading ``~`` in the variable is the home folder, as in a shell: a systemd unit, a docker ``ENV`` or a
    quoted ``export`` gives it unexpanded, and a literal ``~`` folder would be made in the current folder.

    Raises:
        ConfigError: there is no home folder (HOME unset and a user id without a passwd entry, as a container run
            with a random user id has) for the default or for a ``~`` in the variable.
    """
    env = os.environ.get("FSRFER_ENGINE_DIR")
    if env and not env.startswith("~"):
        return Path(env)
    expanded = os.path.expanduser(env or "~")
    # expanduser leaves "~" where it finds no home folder (Path.home() raises then); "~user" naming no user is a
    # plain name, as in a shell (errors.check_home_expanded)
    if expanded.startswith("~") and (not env or env == "~" or env.startswith("~/")):
        uid = os.getuid() if hasattr(os, "getuid") else "?"
        raise ConfigError(f"the engine cache folder {env or '~/.cache/fsrfer-edge/engines'} is in a home folder, and "
                          f"there is none (HOME is unset and user id {uid} has no passwd entry, as in a container run "
                          "with a random user id); expected FSRFER_ENGINE_DIR set to the cache folder's absolute path "
                          "(or HOME set)")
    return Path(expanded) if env else Path(expanded) / ".cache" / "fsrfer-edge" / "engines"


@dataclasses.dataclass(frozen=True)
class EngineKey:
    """Everything that makes an engine non-portable."""

    tensorrt_version: str
    compute_capability: str  # e.g. "8.7" (Jetson Orin), "9.0" (H100)
    precision: str  # fp32 | fp16 | int8, read from the ONNX file
    min_batch: int
    opt_batch: int
    max_batch: int
    #: The GPU model (:attr:`fsrfer_edge.backends.cuda_memory.DeviceIdentity.key`, e.g.
    #: ``orin-16sm-61g``); empty in sidecars written before it was recorded, which are never run.
    device: str = ""

    def __post_init__(self) -> None:
        """Refuse fields that would make a nonsense file name (InputError; a sidecar holding one reads as corrupt)."""
        if not (isinstance(self.tensorrt_version, str) and _FULL_VERSION.fullmatch(self.tensorrt_version)):
            raise InputError(f"EngineKey tensorrt_version={self.tensorrt_version!r}; expected TensorRT's full version "
                             "as tensorrt.__version__ writes it, major.minor.patch at least (e.g. '10.3.0.26')")
        if not (isinstance(self.compute_capability, str) and _COMPUTE_CAPABILITY.fullmatch(self.compute_capability)):
            raise InputError(f"EngineKey compute_capability={self.compute_capability!r}; expected the GPU's "
                             "compute capability as MAJOR.MINOR, e.g. '8.7' (Jetson Orin) or '9.0' (H100)")
        if not isinstance(self.precision, str) or self.precision not in PRECISIONS:
            raise InputError(f"EngineKey precision={self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        for name in ("min_batch", "opt_batch", "max_batch"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
                raise InputError(f"EngineKey {name}={value!r}; expected an integer batch size >= 1")
            object.__setattr__(self, name, int(value))  # numpy integers: a plain int for the name and the JSON
        if not (1 <= self.min_batch <= self.opt_batch <= self.max_batch):
            raise InputError(
                f"EngineKey batch range min={self.min_batch} opt={self.opt_batch} max={self.max_batch}; "
                "expected 1 <= min <= opt <= max"
            )
        if not (isinstance(self.device, str) and _DEVICE.fullmatch(self.device)):
            raise InputError(f"EngineKey device={self.device!r}; expected the GPU's identity key "
                             "(DeviceIdentity.key: letters, digits and '-', e.g. 'orin-16sm-61g'), or '' where unknown")

    def filename(self, model_stem: str, onnx_sha256: str) -> str:
        """``face.fp16.1a2b3c4d.trt10.3.0.26.sm87.orin-16sm-61g.b1-32-128.engine`` for the ONNX file whose
        SHA-256 is ``onnx_sha256`` (:func:`engine_pattern` finds it). A model name longer than
        :data:`STEM_MAX_BYTES` is cut there (the SHA-256 digits keep engines of different files apart).

        Raises:
            InputError: the name would still be too long for a file name (a GPU identity key of 100 characters).
        """
        cc = self.compute_capability.replace(".", "")
        device = f".{self.device}" if self.device else ""
        name = (f"{_short_stem(model_stem)}.{self.precision}.{onnx_sha256[:SOURCE_DIGITS]}.trt{self.tensorrt_version}"
                f".sm{cc}{device}.b{self.min_batch}-{self.opt_batch}-{self.max_batch}{ENGINE_SUFFIX}")
        if len(name.encode("utf-8", "surrogateescape")) > ENGINE_NAME_MAX_BYTES:
            raise InputError(f"engine file name {name!r} is longer than {ENGINE_NAME_MAX_BYTES} bytes, too long for a "
                             "file name with its sidecar's temporary file; expected a shorter GPU identity key "
                             f"(device={self.device!r})")
        return name


def _short_stem(model_stem: str) -> str:
    """``model_stem`` cut to :data:`STEM_MAX_BYTES` bytes of UTF-8 at a character boundary (unchanged if shorter)."""
    return short_name(model_stem, STEM_MAX_BYTES) or "model"


def engine_pattern(model_stem: str, onnx_sha256: str, tensorrt_version: str, compute_capability: str) -> str:
    """A glob for every engine :meth:`EngineKey.filename` names for this ONNX file, TensorRT and GPU."""
    cc = compute_capability.replace(".", "")
    model_stem = glob.escape(_short_stem(model_stem))  # face[v2].onnx: the brackets are part of the name
    return f"{model_stem}.*.{onnx_sha256[:SOURCE_DIGITS]}.trt{tensorrt_version}.sm{cc}.*b*{ENGINE_SUFFIX}"


def sidecar_path(engine_path: str | os.PathLike[str]) -> Path:
    return Path(str(engine_path) + SIDECAR_SUFFIX)


def write_sidecar(engine_path: str | os.PathLike[str], key: EngineKey, onnx_sha256: str, info: ModelInfo,
                  extra: Optional[dict[str, Any]] = None) -> Path:
    """Write the sidecar atomically; call after the engine file itself is in place."""
    doc = {"key": dataclasses.asdict(key), "onnx_sha256": onnx_sha256,
           "engine_sha256": sha256_file(engine_path), "model_info": info.to_dict(), **(extra or {})}
    return write_json(sidecar_path(engine_path), doc)


def read_sidecar(engine_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar document of ``engine_path``, its ``key`` an :class:`EngineKey` and ``model_info`` a ModelInfo.

    Raises:
        InputError: ``engine_path`` is no path.
        EngineError: the sidecar is missing or corrupt.
    """
    engine_path = _path_arg("engine_path", engine_path, "an engine file")
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise EngineError(
            f"engine {engine_path} has no sidecar {path.name}: it was not built by fsrfer-export, or the "
            "sidecar was lost. Rebuild it with: fsrfer-export --engine MODEL.onnx"
        )
    try:
        doc = loads_json(read_sidecar_text(path, "engine sidecar"))  # a key given twice: corrupt, not its last value
        doc["key"] = EngineKey(**doc["key"])
        doc["model_info"] = ModelInfo.from_dict(doc["model_info"], source=str(path))
    # ModelError: model_info of another schema; RecursionError: JSON nested too deep
    except (ValueError, KeyError, TypeError, OSError, RecursionError, ModelError) as exc:
        raise EngineError(f"engine sidecar {path} is corrupt ({exc}); rebuild the engine") from exc
    return doc


def check_engine(engine_path: str | os.PathLike[str], tensorrt_version: str, compute_capability: str,
                 onnx_path: Optional[str | os.PathLike[str]] = None, device: Optional[str] = None) -> dict[str, Any]:
    """Verify that an engine may run here; return its sidecar document.

    Args:
        device: this GPU's identity key (``DeviceIdentity.key``); when given, an engine built on
            another GPU model of the same compute capability (or whose sidecar does not say) is refused.

    Raises:
        InputError: ``engine_path`` is no path, or ``onnx_path`` is given but is no path or not a readable file.
        EngineError: the engine file or sidecar is missing, unreadable or corrupt, or it was built for another
            TensorRT version or GPU, or from another ONNX file than ``onnx_path``.
    """
    engine_path = _path_arg("engine_path", engine_path, "an engine file")
    if onnx_path is not None:  # the caller's mistake, not a stale engine: not an EngineError a search passes over
        onnx = _path_arg("onnx_path", onnx_path, "the .onnx file the engine was built from")
        problem = file_problem(onnx)
        if problem:
            raise InputError(f"onnx_path={str(onnx_path)!r} {problem}; expected the .onnx file the engine was built "
                             "from, or None not to check it")
    problem = file_problem(engine_path)
    if problem:
        raise EngineError(f"engine file {engine_path} {problem}; expected a TensorRT engine file (with its JSON "
                          "sidecar)")
    doc = read_sidecar(engine_path)
    key: EngineKey = doc["key"]
    if key.tensorrt_version != tensorrt_version:
        raise EngineError(
            f"engine {engine_path.name} was built with TensorRT {key.tensorrt_version}, but TensorRT "
            f"{tensorrt_version} is installed; engines are not portable across versions. Rebuild it on "
            "this machine with: fsrfer-export --engine MODEL.onnx"
        )
    if key.compute_capability != compute_capability:
        raise EngineError(
            f"engine {engine_path.name} was built for GPU compute capability {key.compute_capability}, "
            f"but this GPU is {compute_capability}. Rebuild it on this device with: fsrfer-export --engine MODEL.onnx"
        )
    if device is not None and key.device != device:
        raise EngineError(
            f"engine {engine_path.name} was built on GPU {key.device or '(not recorded)'}, but this GPU is {device}; "
            "engines are tuned for one GPU model (an AGX Orin engine must not run on an Orin Nano). Rebuild it on "
            "this device with: fsrfer-export --engine MODEL.onnx"
        )
    try:
        engine_sha256 = sha256_file(engine_path)
    except OSError as exc:  # an I/O error: passed over (and rebuilt) like a corrupt engine
        raise EngineError(f"engine {engine_path} cannot be read ({exc.strerror or exc}); rebuild it") from exc
    if doc.get("engine_sha256") != engine_sha256:
        raise EngineError(f"engine {engine_path} does not match the hash in its sidecar: corrupt or replaced; "
                          "rebuild it")
    if onnx_path is not None and doc.get("onnx_sha256") != sha256_file(onnx_path):
        raise EngineError(f"engine {engine_path.name} is stale: {onnx_path} changed since it was built; rebuild it")
    return doc


def choose_engine(candidates: Sequence[tuple[EngineKey, Path]], min_max_batch: int = 1,
                  precision: Optional[str] = None) -> Path:
    """The engine to run among valid ``candidates`` (each with its key), all built from one ONNX file.

    Precision is chosen first, the batch range second, so a user gets the precision asked for whatever batch ranges
    the engines were built with. An FP32 file can have engines of two precisions: FP32 (``fsrfer-export --engine``)
    and FP16 (first use, which builds an FP32 file from an FP16 copy); FP16 and s8s8 INT8 files have only their
    own.

    Args:
        candidates: the engines (their sidecars' keys) that passed :func:`check_engine`; their order does not
            matter.
        min_max_batch: among engines of the chosen precision, the smallest whose max batch is at least this wins,
            else the largest; ties go to the first path in sorted order.
        precision: the engine precision asked for (``fp32``, ``fp16``, ``int8``): only engines of it are chosen.
            None (nothing asked): the precision first use builds is preferred, i.e. an FP32 file's FP16 engine
            over its FP32 one, which is chosen only where it is the file's only valid engine.

    Raises:
        InputError: ``precision`` is not one of fp32, fp16, int8, or ``min_max_batch`` is not an integer >= 1.
        EngineError: there is no candidate (of ``precision``).
    """
    if isinstance(min_max_batch, bool) or not isinstance(min_max_batch, numbers.Integral) or min_max_batch < 1:
        raise InputError(f"min_max_batch={min_max_batch!r}; expected an integer >= 1 (the largest batch the caller "
                         "will run)")
    if precision is not None and precision not in PRECISIONS:
        raise InputError(f"engine precision {precision!r}; expected one of {', '.join(PRECISIONS)} (or None: the "
                         "precision first use builds)")
    if not candidates:
        raise EngineError("no engine to choose from: none passed the checks; build one with: "
                          "fsrfer-export --engine MODEL.onnx")
    if precision is None:
        # Every precision but fp32 is what first use builds from its file; fp32 engines come only from an explicit
        # fsrfer-export --engine of an FP32 file, whose first-use engine is FP16.
        pool = [c for c in candidates if c[0].precision != "fp32"] or list(candidates)
    else:
        pool = [c for c in candidates if c[0].precision == precision]
    if not pool:
        found = ", ".join(sorted({k.precision for k, _ in candidates})) or "none"
        raise EngineError(f"no engine of precision {precision} among the valid engines (found: {found}); build one "
                          "from the ONNX file of that precision with: fsrfer-export --engine MODEL.onnx")
    ranked = sorted((int(k.max_batch), str(p), p) for k, p in pool)
    big_enough = [r for r in ranked if r[0] >= min_max_batch]
    if big_enough:
        return big_enough[0][2]
    return next(r[2] for r in ranked if r[0] == ranked[-1][0])


# ---------------------------------------------------------------------------------------------
# Listing and pruning a cache folder
# ---------------------------------------------------------------------------------------------

#: An engine younger than this whose sidecar is missing or older than it is left alone: a build renames its engine
#: into place before it writes the sidecar, and a build in progress must not lose its engine. Killed builds'
#: partial files younger than this are left alone too.
UNFINISHED_GRACE_S = 600.0


#: The lock file that makes engine builds into one folder take turns across processes (:func:`build_lock`).
BUILD_LOCK_NAME = ".build.lock"
#: How long a build waits for another process's build in the same folder before it builds anyway (seconds).
BUILD_LOCK_WAIT_S = 3600.0


#: The folders this thread holds the build lock of (:func:`build_lock` is re-entrant within a thread), and those
#: whose lock it gave up waiting for (``gave_up``: a nested :func:`build_lock` does not wait the limit again).
_HELD = threading.local()


def _open_lock_file(root: Path) -> tuple[Optional[int], bool]:
    """The lock file's descriptor (None: none to be had) and whether it is writable. A lock file another user made
    may be opened read-only: ``flock`` works on it all the same."""
    path = root / BUILD_LOCK_NAME
    try:
        root.mkdir(parents=True, exist_ok=True)
        return open_lock_file(path, os.O_RDWR | os.O_CREAT), True
    except OSError as exc:
        if os.path.islink(path):  # planted: not followed, read-only either (its target's text would be "the holder")
            return None, False
        try:
            return open_lock_file(path, os.O_RDONLY), False
        except OSError:  # a read-only folder without one: its cached engines may still be reused
            logger.debug("no build lock in %s (%s); builds there do not take turns", root, exc)
            return None, False


@contextlib.contextmanager
def build_lock(folder: str | os.PathLike[str], wait_s: Optional[float] = None, poll_s: float = 0.5,
               announce: bool = True) -> Iterator[bool]:
    """Hold ``folder``'s build lock for a ``with`` block: engine builds into one folder take turns across processes.

    Several processes that start at once on a new device (camera workers, a server's workers) all find no engine;
    without the lock each built its own (minutes each on a Jetson, all at once in its memory), and their engine and
    sidecar writes crossed: one process's sidecar could describe another's engine, which every later start then
    rebuilt. Under the lock the first builds while the rest wait, then find its engine and load it.

    An advisory ``flock`` on :data:`BUILD_LOCK_NAME` in ``folder`` (made if missing), released by the system when
    its holder exits, however it exits, so a killed build never leaves the lock held. Re-entrant within a thread
    (first use holds it around the FP16 copy and the build); other threads of the process wait as other processes
    do. The holder writes its pid and host into the file, for the waiting message. After ``wait_s`` (default
    :data:`BUILD_LOCK_WAIT_S`) a waiter builds anyway, with a warning (once: blocks nested in its block do not wait
    again); where the platform (Windows) or the file
    system has no ``flock``, or the folder is read-only with no lock file in it, builds do not take turns (each is
    still written atomically). ``announce=False``: no warnings (a caller that only asks whether a build is running).

    Yields:
        True when the lock is held, False when the block runs without it.

    Raises:
        InputError: ``folder`` is no path, ``wait_s`` is not a number >= 0 (or None), or ``poll_s`` not one > 0.
    """
    root = _path_arg("folder", folder, "the folder engines are built into")
    # Before the lock file is made: a NaN limit never runs out (waited >= nan is never true), and a poll of 0 spins.
    if wait_s is not None and (isinstance(wait_s, bool) or not isinstance(wait_s, numbers.Real) or not wait_s >= 0):
        raise InputError(f"wait_s={wait_s!r}; expected a number of seconds >= 0 (inf: wait as long as it takes), or "
                         f"None for BUILD_LOCK_WAIT_S ({BUILD_LOCK_WAIT_S:g} s)")
    if isinstance(poll_s, bool) or not isinstance(poll_s, numbers.Real) or not poll_s > 0:
        raise InputError(f"poll_s={poll_s!r}; expected a number of seconds > 0 between tries, e.g. 0.5")
    if not has_flock():  # not POSIX
        yield False
        return
    key = (os.getpid(), os.path.realpath(root))  # a child forked while this is held does not hold it
    held_here: set[tuple[int, str]] = getattr(_HELD, "folders", set())
    _HELD.folders = held_here
    if key in held_here:
        yield True
        return
    gave_up: set[tuple[int, str]] = getattr(_HELD, "gave_up", set())
    _HELD.gave_up = gave_up
    if key in gave_up:  # an outer block of this thread waited its limit for this lock already
        yield False
        return
    fd, writable = _open_lock_file(root)
    if fd is None:
        yield False
        return
    held = timed_out = False
    try:
        limit = BUILD_LOCK_WAIT_S if wait_s is None else float(wait_s)
        start = time.monotonic()
        told = False
        while True:
            taken = try_flock(fd)
            if taken is not False:
                held = bool(taken)
                if not held:
                    logger.debug("no build lock in %s (no flock there); builds there do not take turns", root)
                break
            waited = time.monotonic() - start
            if waited >= limit:
                if announce:
                    logger.warning("another process (%s) has held the engine build lock in %s for %.0f s; building "
                                   "anyway", lock_note(fd) or "unknown", root, waited)
                timed_out = True
                break
            if not told and announce:
                logger.warning("waiting for another process (%s) to finish building an engine in %s",
                               lock_note(fd) or "unknown", root)
                told = True
            time.sleep(min(poll_s, max(0.0, limit - waited)))
        if held and writable:
            write_lock_note(fd)
        if held:
            held_here.add(key)
        if timed_out:
            gave_up.add(key)
        yield held
    finally:
        if timed_out:
            gave_up.discard(key)
        if held:
            held_here.discard(key)
            release_flock(fd)
        os.close(fd)


def source_record(onnx_path: str | os.PathLike[str]) -> dict[str, str]:
    """What a sidecar records of the ONNX file an engine is built from, for pruning: the path as the user gave it,
    absolute but with symlinks kept (a deployment that switches ``current.onnx`` to a new version changes the file
    at that path), and the machine it is on (a cache folder may be shared by devices, and a path means something
    only on its own machine)."""
    return {"source_path": os.path.abspath(onnx_path), "source_host": socket.gethostname()}


@dataclasses.dataclass(frozen=True)
class CachedEngine:
    """One entry of a cache folder, as :func:`list_engines` finds it.

    Attributes:
        path: the ``.engine`` file (for a sidecar whose engine is gone, the path the engine had; for a killed
            build's partial file, that file).
        bytes: the file's size (0 when it is gone).
        key: its :class:`EngineKey`, None when the sidecar is missing or unreadable.
        source: the ONNX file it was built from, as its sidecar records it (None in sidecars from before it was
            recorded, which held only the file's name).
        stale: why it can never run again, or None when it may.
    """

    path: Path
    bytes: int
    key: Optional[EngineKey]
    source: Optional[str]
    stale: Optional[str]


def _recorded_source(doc: dict[str, Any]) -> Optional[str]:
    """The sidecar's source path where it names a file on this machine, else None."""
    source = doc.get("source_path")
    return source if isinstance(source, str) and doc.get("source_host") == socket.gethostname() else None


def _source_changed(doc: dict[str, Any], missing_sources: bool) -> Optional[str]:
    """Why the ONNX file the sidecar records rules the engine out, or None (also when it cannot be read)."""
    source = _recorded_source(doc)
    if source is None:
        return None
    try:
        if not os.path.isfile(source):
            return f"{source}, the ONNX file it was built from, no longer exists" if missing_sources else None
        if sha256_file(source) != doc.get("onnx_sha256"):
            return f"{source} changed since the engine was built (a new version of the model)"
    except OSError:  # unreadable here (permissions, a network file system): not judged
        return None
    return None


def _builds_take_turns(root: Path) -> bool:
    """Whether builds into ``root`` hold its build lock (:func:`build_lock`): False where the platform (Windows) or
    the file system (NFS without a lock daemon) has no ``flock``, or the folder is read-only with no lock file."""
    with _lock_for_prune(root) as (state, _):
        return state != "none"


def _partial_grace_s(root: Path, takes_turns: Optional[bool] = None) -> float:
    """How old a hidden ``.tmp`` file in ``root`` must be before it counts as a killed build's. Where builds hold
    the folder's lock, :func:`prune` leaves a running build's files alone by that lock, and the grace period covers
    the rest; where they do not (``takes_turns``; None: :func:`_builds_take_turns`), it cannot tell, and waits
    :data:`BUILD_LOCK_WAIT_S` (see :func:`prune`)."""
    if takes_turns is None:
        takes_turns = _builds_take_turns(root)
    return UNFINISHED_GRACE_S if takes_turns else BUILD_LOCK_WAIT_S


def _entry(p: Path, now: float, tensorrt_version: Optional[str], missing_sources: bool,
           partial_grace_s: Callable[[], float]) -> Optional[CachedEngine]:
    """``p`` as a :class:`CachedEngine`, or None when it is none (another file, a build in progress)."""
    name = p.name
    if name.endswith(ENGINE_SUFFIX + SIDECAR_SUFFIX):
        engine = p.with_name(name[:-len(SIDECAR_SUFFIX)])
        if engine.exists() or engine.is_symlink():
            return None  # listed with its engine
        return CachedEngine(engine, 0, None, None, "its engine file is gone (a sidecar left behind)")
    if p.is_symlink() or not p.is_file():
        return None
    age = now - p.stat().st_mtime
    if name.startswith(".") and name.endswith(".tmp"):
        # the folder's lock is looked at only for a file past the shorter grace period (rare)
        if age < UNFINISHED_GRACE_S or age < partial_grace_s():
            return None
        return CachedEngine(p, p.stat().st_size, None, None, "a partial file left by a killed build")
    if not name.endswith(ENGINE_SUFFIX):  # hidden ones too: the engines of a model named .face.onnx
        return None
    size = p.stat().st_size
    side = sidecar_path(p)
    if age < UNFINISHED_GRACE_S and (not side.exists() or side.stat().st_mtime < p.stat().st_mtime):
        return CachedEngine(p, size, None, None, None)  # its build may be writing the sidecar now
    if not side.exists():
        return CachedEngine(p, size, None, None, "it has no sidecar")
    try:
        doc = read_sidecar(p)
    except EngineError as exc:
        return CachedEngine(p, size, None, None, f"its sidecar is unreadable ({exc})")
    key: EngineKey = doc["key"]
    stale = None
    if tensorrt_version is not None and key.tensorrt_version != tensorrt_version:
        stale = f"built with TensorRT {key.tensorrt_version}; TensorRT {tensorrt_version} is installed"
    stale = stale or _source_changed(doc, missing_sources)
    if stale is None and doc.get("engine_sha256") != sha256_file(p):
        stale = "its bytes do not match the hash in its sidecar (corrupt or replaced)"
    return CachedEngine(p, size, key, _recorded_source(doc), stale)


def list_engines(folder: str | os.PathLike[str], tensorrt_version: Optional[str] = None,
                 missing_sources: bool = False, now: Optional[float] = None) -> list[CachedEngine]:
    """Every engine in ``folder`` (not its subfolders), every sidecar whose engine is gone and every killed build's
    partial file, with why each can never run again (``stale``).

    Stale: the engine's sidecar is missing or unreadable, or its engine is gone; the engine's bytes changed; it was
    built with another TensorRT than ``tensorrt_version`` (None: not judged); the ONNX file it was built from has
    changed since (the runtime looks engines up by the file's hash, so it can never pick this one again); with
    ``missing_sources``, that file no longer exists (a model moved or deleted: off by default); a hidden
    ``.NAME.*.tmp`` file older than :data:`UNFINISHED_GRACE_S` (where builds into the folder do not take turns, for
    want of ``flock`` on the platform, as on Windows, or on the file system: :data:`BUILD_LOCK_WAIT_S`, as
    :func:`prune` waits). Engines of models whose names start with ``.`` are listed like any other. The ONNX
    file is judged only from the machine that built the engine (its sidecar's ``source_host``): a cache folder may be
    shared by devices. Engines built for another GPU are not stale for that.
    Anything younger than :data:`UNFINISHED_GRACE_S` that a build may still be writing is left alone, as are
    files that vanish or cannot be read while the folder is listed. A folder that does not exist has no entries.

    Raises:
        InputError: ``folder`` is no path or is a file, or ``tensorrt_version`` is not a full TensorRT version.
    """
    root = _folder_arg(folder)
    return _list_engines(root, _version_arg(tensorrt_version), missing_sources, now, None)


def _list_engines(root: Path, tensorrt_version: Optional[str], missing_sources: bool, now: Optional[float],
                  takes_turns: Optional[bool]) -> list[CachedEngine]:
    """:func:`list_engines`; ``takes_turns``: whether builds into ``root`` hold its lock, where the caller knows
    (:func:`prune`, which holds it or found none to take); None: looked at if a partial file's age asks."""
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    grace: list[float] = []

    def partial_grace_s() -> float:  # at most once a listing
        if not grace:
            grace.append(_partial_grace_s(root, takes_turns))
        return grace[0]

    out = []
    for p in sorted(root.iterdir()):
        try:
            entry = _entry(p, now, tensorrt_version, missing_sources, partial_grace_s)
        except OSError:  # removed by another process while listed, or unreadable
            continue
        if entry is not None:
            out.append(entry)
    return out


def _remove(entry: CachedEngine) -> Optional[str]:
    """Delete an entry's files; the error, if one could not be deleted."""
    paths = (entry.path,) if entry.path.name.endswith(".tmp") else (entry.path, sidecar_path(entry.path))
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            return f"{p}: {exc.strerror or exc}"
    return None


@contextlib.contextmanager
def _lock_for_prune(root: Path) -> Iterator[tuple[str, str]]:
    """Take ``root``'s build lock for :func:`prune`, without waiting. Yields ``("held", "")`` when taken (builds
    wait meanwhile), ``("busy", HOLDER)`` while another build holds it (HOLDER: its note, "pid N on HOST since T"),
    ``("none", "")`` where builds there do not take turns (no ``flock`` on the platform or file system, or a
    read-only folder without a lock file)."""
    if not has_flock():  # not POSIX
        yield "none", ""
        return
    if (os.getpid(), os.path.realpath(root)) in getattr(_HELD, "folders", set()):
        yield "held", ""  # called inside this thread's own build_lock block: nothing of another build can run
        return
    fd, _ = _open_lock_file(root)
    if fd is None:
        yield "none", ""
        return
    try:
        taken = try_flock(fd)
        state = {True: "held", False: "busy", None: "none"}[taken]
        try:
            yield state, (lock_note(fd) or "unknown") if taken is False else ""
        finally:
            if taken:
                release_flock(fd)
    finally:
        os.close(fd)


def _check_same_release(tensorrt_version: Optional[str], listed: Sequence[CachedEngine]) -> None:
    """InputError where ``tensorrt_version`` is not what any engine of the folder records but is the same release
    written longer or shorter (``10.3.0`` beside engines of ``10.3.0.26``): a slip, not an upgrade, and pruning on it
    would remove every engine of that release (``fsrfer-engines --prune --tensorrt-version`` refuses it alike)."""
    if tensorrt_version is None:
        return
    recorded = {e.key.tensorrt_version for e in listed if e.key is not None}
    near = sorted(r for r in recorded if r != tensorrt_version
                  and (r.startswith(tensorrt_version + ".") or tensorrt_version.startswith(r + ".")))
    if near and tensorrt_version not in recorded:
        raise InputError(f"tensorrt_version={tensorrt_version!r} is not what this folder's engines record, but "
                         f"{', '.join(near)} is the same release written otherwise; expected the version exactly as "
                         "tensorrt.__version__ writes it on the device (nothing was removed)")


def prune(folder: str | os.PathLike[str], tensorrt_version: Optional[str] = None, missing_sources: bool = False,
          dry_run: bool = False) -> tuple[list[CachedEngine], list[str]]:
    """Remove the stale entries of ``folder`` (:func:`list_engines`): engines with their sidecars.

    It holds the folder's build lock (:func:`build_lock`) while it lists and removes, so no build starts meanwhile.
    While a build holds that lock, nothing is removed (and nothing listed: the result is empty), with an INFO
    message: the build may rename a new engine over any stale one (a rebuild of an engine whose sidecar was lost
    or whose bytes changed) or write the sidecar of one it has just put in place, and the hidden files are its own.
    Where there is no ``flock`` (Windows, some network file systems) a build cannot be told: engines are judged by
    :data:`UNFINISHED_GRACE_S` alone, and a hidden ``.tmp`` file goes only once older than
    :data:`BUILD_LOCK_WAIT_S` (a build reads its FP16 copy when it starts and writes its engine at the end, each
    within minutes; the copy lives as long as the build, but is no longer read).

    Returns:
        What was removed (with ``dry_run``, what would be), and the errors of files that could not be removed.

    Raises:
        InputError: ``folder`` is no path or is a file, or ``tensorrt_version`` is not a full TensorRT version
            (engines of every other version are stale: a short or mistyped one would remove them all), or it is
            not what the folder's engines record but the same release written longer or shorter (``10.3.0`` beside
            engines of ``10.3.0.26``; nothing is removed, with ``dry_run`` or not).
    """
    root = _folder_arg(folder)
    tensorrt_version = _version_arg(tensorrt_version)
    if not root.is_dir():
        return [], []
    with _lock_for_prune(root) as (state, holder):
        if state == "busy":
            logger.info("an engine build holds the lock of %s (%s): nothing removed, since it may be writing any "
                        "engine there; run fsrfer-engines --prune again once it ends", root, holder)
            return [], []
        # partial files go by the age the listing gives them: the grace period where builds hold the lock (held
        # here), else the lock wait, as no build can be told
        listed = _list_engines(root, tensorrt_version, missing_sources, None, state != "none")
        _check_same_release(tensorrt_version, listed)
        stale = [e for e in listed if e.stale is not None]
        if dry_run:
            return stale, []
        removed, errors = [], []
        for e in stale:
            error = _remove(e)
            if error is None:
                removed.append(e)
            else:
                errors.append(error)
    return removed, errors


def prune_replaced(folder: str | os.PathLike[str], onnx_path: str | os.PathLike[str],
                   device: str) -> list[CachedEngine]:
    """After a first-use build for ``onnx_path``: remove the engines of ``folder`` built on this machine for this
    GPU model (``device``, :attr:`EngineKey.device`) from earlier versions of the file at that path, which the
    runtime can never pick again. Only their sidecars are read, and the file's hash computed once; nothing else in
    the folder is judged, and an engine whose sidecar is missing or older than it (a build writing it) is left
    alone.

    Raises:
        InputError: ``folder`` or ``onnx_path`` is no path, ``onnx_path`` is not a file (where ``folder`` is a
            folder), or ``device`` is not a string.
    """
    root = _path_arg("folder", folder, "the engine cache folder")
    onnx = _path_arg("onnx_path", onnx_path, "the .onnx file the engines were built from")
    if not isinstance(device, str):
        raise InputError(f"device={device!r}; expected the GPU's identity key as a string (EngineKey.device, e.g. "
                         "'orin-16sm-61g')")
    if not root.is_dir():
        return []
    problem = file_problem(onnx)
    if problem:
        raise InputError(f"onnx_path={str(onnx_path)!r} {problem}; expected an .onnx file (the file the engines "
                         "were built from)")
    onnx_path = onnx
    mine = source_record(onnx_path)["source_path"]
    current = sha256_file(onnx_path)
    removed = []
    for p in sorted(root.glob("*" + ENGINE_SUFFIX)):
        try:
            if p.is_symlink() or not p.is_file() or sidecar_path(p).stat().st_mtime < p.stat().st_mtime:
                continue  # a sidecar older than its engine: a rebuild is writing it now
            doc = read_sidecar(p)
        except (EngineError, OSError):
            continue
        if _recorded_source(doc) == mine and doc["key"].device == device and doc.get("onnx_sha256") != current:
            entry = CachedEngine(p, 0, doc["key"], mine, f"{mine} changed since the engine was built")
            if _remove(entry) is None:
                removed.append(entry)
    return removed


# ---------------------------------------------------------------------------------------------
# Staging folders that killed exports left behind
# ---------------------------------------------------------------------------------------------

#: In the name of the hidden folder (``.NAME.staging-XXXXXXXX``) where fsrfer-export writes a model's files before it
#: moves them into its --out-dir, which is also where it builds engines (so :func:`prune`'s folder).
STAGING_MARK = ".staging-"
#: The file in a staging folder that names the process that made it: ``pid N on HOST``.
STAGING_OWNER = ".owner"


def make_staging_folder(folder: str | os.PathLike[str], name: str) -> Path:
    """A new hidden staging folder ``.NAME.staging-XXXXXXXX`` in ``folder`` whose owner file names this process. The
    export removes it itself however it ends, except under SIGKILL (no handler runs); then
    :func:`remove_dead_staging` removes it once this process is gone.

    Raises:
        InputError: ``folder`` is no path or is a file, or refuses a new folder (read-only), or ``name`` is not a
            file name (empty, or holds a path separator).
    """
    root = _path_arg("folder", folder, "the folder the export writes into")
    if root.exists() and not root.is_dir():
        raise InputError(f"folder={str(folder)!r} is not a folder; expected the folder the export writes into")
    seps = {"/", "\0", os.sep, *([os.altsep] if os.altsep else [])}
    if not isinstance(name, str) or not name.strip() or any(c in seps for c in name):
        raise InputError(f"name={name!r}; expected a model name that can be part of a file name (no path separator)")
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{short_name(name) or 'model'}{STAGING_MARK}", dir=root))
    except OSError as exc:
        raise InputError(f"cannot make a staging folder in {root} ({exc.strerror or exc}); expected a folder this "
                         "user can write, with free space (choose another output folder)") from exc
    try:
        (stage / STAGING_OWNER).write_text(f"pid {os.getpid()} on {socket.gethostname()}\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return stage


def _process_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this machine; False where that cannot be told (the folder is kept). A zombie
    (a killed export its parent has not reaped yet, which ``os.kill(pid, 0)`` still reaches) is gone: on Linux its
    ``/proc/PID/stat`` says so."""
    if os.name != "posix" or pid <= 0:  # Windows' os.kill(pid, 0) terminates the process; pid <= 0 names groups
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it runs, as another user (or is a zombie of theirs: told below)
        pass
    stat = _proc_stat(pid)
    if stat is None:  # no /proc (macOS, BSD), or the process went meanwhile: kept until the next look
        return False
    # "PID (COMM) STATE ...": COMM may hold spaces and parentheses, so the state follows the last ")".
    fields = stat.rpartition(")")[2].split()
    return bool(fields) and fields[0] in ("Z", "X")  # zombie, or dead


def _proc_stat(pid: int) -> Optional[str]:
    """``/proc/PID/stat`` of Linux, or None where it cannot be read."""
    try:
        return Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _staging_owner(stage: Path) -> Optional[int]:
    """The pid of the process of this machine that made ``stage``, or None when that cannot be told."""
    try:
        text = (stage / STAGING_OWNER).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    found = re.fullmatch(r"pid (\d+) on (.+)", text.strip())
    if found is None or found.group(2) != socket.gethostname():  # a folder shared by devices: not judged here
        return None
    return int(found.group(1))


def dead_staging_folders(folder: str | os.PathLike[str]) -> list[tuple[Path, int]]:
    """The staging folders in ``folder`` whose owner (:data:`STAGING_OWNER`) is a process of this machine that is
    gone, each with that pid. A folder of a process that runs (another export now) is never one.

    A folder whose owner cannot be told is left alone: one made before owners were recorded, one whose export is
    between making it and writing its owner, one of another machine (a folder on a network file system). Its age
    would not tell a killed export from a running one: an export with INT8 calibration and engine builds runs for
    many minutes on a Jetson, and a folder's time changes only when a file is added to it. Such folders are rare (only
    older versions made folders without owners); they can be deleted by hand.
    """
    root = Path(folder)
    try:
        entries = sorted(root.iterdir())
    except OSError:  # missing, not a folder, unreadable
        return []
    dead = []
    for p in entries:
        if not p.name.startswith(".") or STAGING_MARK not in p.name:
            continue
        try:
            if p.is_symlink() or not p.is_dir():
                continue
        except OSError:
            continue
        pid = _staging_owner(p)
        if pid is not None and _process_gone(pid):
            dead.append((p, pid))
    return dead


def remove_dead_staging(folder: str | os.PathLike[str], dry_run: bool = False) -> tuple[list[Path], list[str]]:
    """Remove :func:`dead_staging_folders` of ``folder`` (fsrfer-export before it stages, ``fsrfer-engines --prune``),
    with a warning naming each.

    Returns:
        The folders removed (with ``dry_run``, those that would be), and the errors of those that could not be.
    """
    removed: list[Path] = []
    errors: list[str] = []
    for stage, pid in dead_staging_folders(folder):
        if not dry_run:
            try:
                shutil.rmtree(stage)
            except OSError as exc:
                if os.path.lexists(stage):  # else another process removed it at the same time
                    errors.append(f"{stage}: {exc.strerror or exc}")
                    continue
            logger.warning("removed %s: the staging folder of an export that was killed (its process, pid %d, is "
                           "gone)", stage, pid)
        removed.append(stage)
    return removed, errors
