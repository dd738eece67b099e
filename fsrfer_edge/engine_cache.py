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

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Optional

from .errors import EngineError, ModelError
from .fileio import sha256_file, write_json
from .metadata import ModelInfo

SIDECAR_SUFFIX = ".json"
ENGINE_SUFFIX = ".engine"
#: File-name parts that name a variant's precision; stripped from the engine's model stem.
VARIANT_SUFFIXES = (".fp32", ".fp16", ".int8-s8s8", ".int8-u8s8", ".int8")
#: Hex digits of the source ONNX file's SHA-256 in an engine's name.
SOURCE_DIGITS = 8


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
    """``$FSRFER_ENGINE_DIR`` if set, else ``~/.cache/fsrfer-edge/engines``."""
    env = os.environ.get("FSRFER_ENGINE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "fsrfer-edge" / "engines"


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
        if not (1 <= self.min_batch <= self.opt_batch <= self.max_batch):
            raise EngineError(
                f"invalid batch range min={self.min_batch} opt={self.opt_batch} max={self.max_batch}; "
                "expected 1 <= min <= opt <= max"
            )

    def filename(self, model_stem: str, onnx_sha256: str) -> str:
        """``face.fp16.1a2b3c4d.trt10.3.0.26.sm87.orin-16sm-61g.b1-32-128.engine`` for the ONNX file whose
        SHA-256 is ``onnx_sha256`` (:func:`engine_pattern` finds it)."""
        cc = self.compute_capability.replace(".", "")
        device = f".{self.device}" if self.device else ""
        return (f"{model_stem}.{self.precision}.{onnx_sha256[:SOURCE_DIGITS]}.trt{self.tensorrt_version}.sm{cc}{device}"
                f".b{self.min_batch}-{self.opt_batch}-{self.max_batch}{ENGINE_SUFFIX}")


def engine_pattern(model_stem: str, onnx_sha256: str, tensorrt_version: str, compute_capability: str) -> str:
    """A glob for every engine :meth:`EngineKey.filename` names for this ONNX file, TensorRT and GPU."""
    cc = compute_capability.replace(".", "")
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
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise EngineError(
            f"engine {engine_path} has no sidecar {path.name}: it was not built by fsrfer-export, or the "
            "sidecar was lost. Rebuild it with: fsrfer-export --engine MODEL.onnx"
        )
    try:
        doc = json.loads(path.read_text())
        doc["key"] = EngineKey(**doc["key"])
        doc["model_info"] = ModelInfo.from_dict(doc["model_info"], source=str(path))
    except (json.JSONDecodeError, KeyError, TypeError, ModelError) as exc:  # ModelError: model_info of another schema
        raise EngineError(f"engine sidecar {path} is corrupt ({exc}); rebuild the engine") from exc
    return doc


def check_engine(engine_path: str | os.PathLike[str], tensorrt_version: str, compute_capability: str,
                 onnx_path: Optional[str | os.PathLike[str]] = None, device: Optional[str] = None) -> dict[str, Any]:
    """Verify that an engine may run here; return its sidecar document.

    Args:
        device: this GPU's identity key (``DeviceIdentity.key``); when given, an engine built on
            another GPU model of the same compute capability (or whose sidecar does not say) is refused.

    Raises:
        EngineError: the engine file or sidecar is missing or corrupt, or it was built for another
            TensorRT version or GPU, or from another ONNX file than ``onnx_path``.
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise EngineError(f"engine file {engine_path} does not exist")
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
    if doc.get("engine_sha256") != sha256_file(engine_path):
        raise EngineError(f"engine {engine_path} does not match the hash in its sidecar: corrupt or replaced; rebuild it")
    if onnx_path is not None and doc.get("onnx_sha256") != sha256_file(onnx_path):
        raise EngineError(f"engine {engine_path.name} is stale: {onnx_path} changed since it was built; rebuild it")
    return doc


# ---------------------------------------------------------------------------------------------
# Listing and pruning a cache folder
# ---------------------------------------------------------------------------------------------

#: An engine without a sidecar younger than this is left alone by :func:`prune`: the builder renames the engine
#: into place before it writes the sidecar, and a build in progress must not lose its engine.
UNFINISHED_GRACE_S = 600.0


@dataclasses.dataclass(frozen=True)
class CachedEngine:
    """One engine of a cache folder, as :func:`list_engines` finds it.

    Attributes:
        path: the ``.engine`` file (or, for a sidecar whose engine is gone, the path the engine had).
        bytes: the engine's size (0 when it is gone).
        key: its :class:`EngineKey`, None when the sidecar is missing or unreadable.
        source: the ONNX file it was built from, as its sidecar records it (None in sidecars from before it was
            recorded; only the file's name was).
        stale: why it can never run again here, or None when it may.
    """

    path: Path
    bytes: int
    key: Optional[EngineKey]
    source: Optional[str]
    stale: Optional[str]


def _stale_reason(engine: Path, doc: dict[str, Any], tensorrt_version: Optional[str],
                  missing_sources: bool) -> Optional[str]:
    key: EngineKey = doc["key"]
    if tensorrt_version is not None and key.tensorrt_version != tensorrt_version:
        return f"built with TensorRT {key.tensorrt_version}; TensorRT {tensorrt_version} is installed"
    source = doc.get("source_path")
    if isinstance(source, str):
        if Path(source).is_file():
            if sha256_file(source) != doc.get("onnx_sha256"):
                return f"{source} changed since the engine was built (a new version of the model)"
        elif missing_sources:
            return f"{source}, the ONNX file it was built from, no longer exists"
    if doc.get("engine_sha256") != sha256_file(engine):
        return "its bytes do not match the hash in its sidecar (corrupt or replaced)"
    return None


def list_engines(folder: str | os.PathLike[str], tensorrt_version: Optional[str] = None,
                 missing_sources: bool = False, now: Optional[float] = None) -> list[CachedEngine]:
    """Every engine in ``folder`` (not its subfolders) and every sidecar whose engine is gone, with why each can
    never run again (``stale``).

    Stale: the sidecar is missing (for an engine older than :data:`UNFINISHED_GRACE_S`) or unreadable, or the
    engine is gone; a hidden ``.NAME.*.tmp`` file older than that (a build killed mid-write); the engine's bytes changed; it was built with another TensorRT than ``tensorrt_version``
    (None: not judged); the ONNX file it was built from (its sidecar's ``source_path``) has changed since, so the
    runtime, which looks engines up by the file's hash, can never pick it again; with ``missing_sources``, that
    file no longer exists (an engine copied in with its sidecar from elsewhere, or a model moved: off by default).
    Engines built for another GPU are not stale: a cache folder may be shared by devices.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    out = []
    names = {p.name for p in root.iterdir()}
    for p in sorted(root.iterdir()):
        if p.name.endswith(ENGINE_SUFFIX + SIDECAR_SUFFIX) and p.name[:-len(SIDECAR_SUFFIX)] not in names:
            out.append(CachedEngine(p.with_name(p.name[:-len(SIDECAR_SUFFIX)]), 0, None, None,
                                    "its engine file is gone (a sidecar left behind)"))
            continue
        if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file() and not p.is_symlink():
            if now - p.stat().st_mtime >= UNFINISHED_GRACE_S:  # else a write in progress
                out.append(CachedEngine(p, p.stat().st_size, None, None, "a partial write left by a killed build"))
            continue
        if not (p.name.endswith(ENGINE_SUFFIX) and p.is_file()) or p.name.startswith("."):
            continue
        size = p.stat().st_size
        if not sidecar_path(p).exists():
            young = now - p.stat().st_mtime < UNFINISHED_GRACE_S  # its build may be writing the sidecar now
            out.append(CachedEngine(p, size, None, None, None if young else "it has no sidecar"))
            continue
        try:
            doc = read_sidecar(p)
        except EngineError as exc:
            out.append(CachedEngine(p, size, None, None, f"its sidecar is unreadable ({exc})"))
            continue
        source = doc.get("source_path")
        out.append(CachedEngine(p, size, doc["key"], source if isinstance(source, str) else None,
                                _stale_reason(p, doc, tensorrt_version, missing_sources)))
    return out


def prune(folder: str | os.PathLike[str], tensorrt_version: Optional[str] = None, missing_sources: bool = False,
          dry_run: bool = False, source: Optional[str | os.PathLike[str]] = None) -> list[CachedEngine]:
    """Remove the stale engines of ``folder`` (:func:`list_engines`) with their sidecars; return them.

    Args:
        source: only engines whose sidecar records this ONNX file (what the runtime does after it builds a new
            engine for a changed model: that file's old engines go).
        dry_run: remove nothing, only say what would go.
    """
    stale = [e for e in list_engines(folder, tensorrt_version, missing_sources) if e.stale is not None]
    if source is not None:
        mine = str(Path(source).resolve())
        stale = [e for e in stale if e.source == mine]
    if not dry_run:
        for e in stale:
            for p in (e.path,) if e.path.name.endswith(".tmp") else (e.path, sidecar_path(e.path)):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
    return stale
