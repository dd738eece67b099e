"""Files measured for a model and kept beside it: ``NAME.groups.json`` (:mod:`fsrfer_edge.groups`) and
``NAME.scores.json`` (:mod:`fsrfer_edge.confidence`). Each is looked for beside the model (under the model's own
name or the name of the model it is a variant or an engine of), then among the package's files measured on the
same checkpoint (the shipped model's serve its FP16 and INT8 files and their engines too).

Why files and not ONNX metadata: docs/DESIGN.md.
"""
from __future__ import annotations

import errno
import functools
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Optional, Protocol, Sequence, TypeVar, Union

import numpy as np

from .errors import InputError, ModelError

logger = logging.getLogger(__name__)

#: Where the shipped model's files are.
PACKAGED = Path(__file__).resolve().parent / "models"
#: Checkpoint files the package re-stored with the same weights (other bytes, so another SHA-256), each mapped to the
#: checkpoint its exported graph and measured files name: ``python scripts/restored_checkpoint.py`` checks and
#: writes it (a graph exported again from the re-stored file must answer as the shipped one).
RESTORED = PACKAGED / "restored_checkpoints.json"


@functools.lru_cache(maxsize=1)
def _restored() -> dict[str, str]:
    from .fileio import loads_json

    try:
        doc = loads_json(RESTORED.read_text(), source=str(RESTORED))
    except FileNotFoundError:
        return {}
    return {k: v["same_weights_as"] for k, v in doc.items()}


def same_checkpoint(a: str, b: str) -> bool:
    """Whether checkpoints ``a`` and ``b`` (SHA-256 of their files) hold one model: the same file, or a packaged
    checkpoint re-stored (:data:`RESTORED`) and the file it was re-stored from."""
    restored = _restored()
    return a == b or restored.get(a) == b or restored.get(b) == a

#: An engine built from ``NAME.onnx`` or its variants: ``NAME.<precision>.<digest>.trt...engine``
#: (:meth:`fsrfer_edge.engine_cache.EngineKey.filename`).
_ENGINE_NAME = re.compile(r"(.+?)\.(?:fp32|fp16|int8)\.[0-9a-f]{8}\.")

PathLike = Union[str, "os.PathLike[str]"]


class Measured(Protocol):
    @property
    def checkpoint_sha256(self) -> str: ...

    def mismatch(self, classes: Sequence[str], checkpoint_sha256: str) -> Optional[str]: ...


T = TypeVar("T", bound=Measured)


Self = TypeVar("Self", bound="MeasuredFile")


class MeasuredFile:
    """What a file measured for a model has besides its own fields (a frozen dataclass with ``classes``,
    ``checkpoint_sha256``, ``to_dict`` and ``from_dict``): JSON saving and loading with errors that say what was
    expected, and whether it belongs to a model. ``WHAT`` names it in messages."""

    WHAT: ClassVar[str] = "measured file"
    classes: tuple[str, ...]
    checkpoint_sha256: str

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls: type[Self], d: Mapping[str, Any]) -> Self:
        raise NotImplementedError

    def save(self, path: PathLike) -> Path:
        """Write it as JSON (atomically: a killed write leaves no half file)."""
        from .fileio import write_json

        return write_json(path, self.to_dict())

    @classmethod
    def load(cls: type[Self], path: PathLike) -> Self:
        """Read a file :meth:`save` wrote. Raises ModelError for a missing, unreadable or malformed one."""
        from .fileio import loads_json, read_sidecar_text

        try:
            d = loads_json(read_sidecar_text(path, cls.WHAT))
        # ValueError: not JSON, or a key given twice; RecursionError: nested too deep
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ModelError(f"{path}: not a readable {cls.WHAT} (JSON written by {cls.__name__}.save): "
                             f"{exc}") from None
        if not isinstance(d, dict):
            raise ModelError(f"{path}: expected a JSON object of a {cls.WHAT}")
        try:
            return cls.from_dict(d)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None

    def mismatch(self, classes: Sequence[str], checkpoint_sha256: str) -> Optional[str]:
        """Why it does not belong to a model with these classes and checkpoint, or None when it does."""
        if tuple(classes) != self.classes:
            return f"its classes {list(self.classes)} are not the model's {list(classes)}"
        if self.checkpoint_sha256 and checkpoint_sha256 and not same_checkpoint(self.checkpoint_sha256,
                                                                                checkpoint_sha256):
            return (f"it was measured on checkpoint {self.checkpoint_sha256[:12]}…, the model comes from "
                    f"{checkpoint_sha256[:12]}…")
        return None


def model_names(path: Path) -> list[str]:
    """The names a model's files may have: its own (``NAME`` of ``NAME.onnx``), then the model it is a variant of
    (``NAME.fp16.onnx``, ``NAME.int8-u8s8.onnx``: :func:`~fsrfer_edge.engine_cache.model_stem`) or an engine of
    (``NAME.int8.<digest>.trt....engine``). A NAME may hold dots (``fer.v2``)."""
    from .engine_cache import model_stem

    engine = _ENGINE_NAME.match(path.name)
    return list(dict.fromkeys([path.stem, model_stem(path)] + ([engine.group(1)] if engine else [])))


def _engine_source(path: Path) -> Optional[Path]:
    """The ONNX file an engine was built from, where its engine-cache sidecar records one on this machine (an engine
    in the cache folder is not beside its model's files). None where the sidecar is unreadable or malformed: the
    search goes on without it."""
    from .engine_cache import _recorded_source, sidecar_path
    from .fileio import loads_json, read_sidecar_text

    try:
        doc = loads_json(read_sidecar_text(sidecar_path(path), "engine-cache sidecar"))
    # ValueError: not JSON, or a key given twice; RecursionError: nested too deep; ModelError: a FIFO, device or huge
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, ModelError):
        return None
    source = _recorded_source(doc) if isinstance(doc, dict) else None
    if not source:
        return None
    # The engine cache records an absolute path; another (".", "/", "model.onnx") has no file name to look beside,
    # or would be looked for in the current directory.
    source_path = Path(source)
    return source_path if source_path.is_absolute() and source_path.name else None


def besides(model_path: PathLike, suffix: str) -> list[Path]:
    """Where a model's file of kind ``suffix`` may be, in order: beside the model under each of its names, then, for
    an engine the engine cache built, beside the ONNX file it was built from."""
    path = Path(model_path)
    out = [path.with_name(n + suffix) for n in model_names(path)]
    if path.suffix.lower() in (".engine", ".plan"):
        source = _engine_source(path)
        if source is not None:
            out += [source.with_name(n + suffix) for n in model_names(source)]
    return list(dict.fromkeys(out))


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for a name too long to exist (ENAMETOOLONG: ``NAME.scores.json`` of a model whose
    name is 244 to 250 bytes is over the 255 a file name holds): no such file. Other errors are raised."""
    try:
        return path.is_file()
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return False
        raise


def find(model_path: Optional[PathLike], classes: Sequence[str], checkpoint_sha256: str, suffix: str,
         load: Callable[[Path], T], what: str) -> Optional[T]:
    """The model's file of kind ``suffix`` (loaded by ``load``), or None: beside the model (:func:`besides`; None:
    a model with no local file, e.g. one a server runs), else a packaged one measured on the same checkpoint. A file
    beside the model that is unreadable or belongs to another model is skipped with a warning naming ``what`` it
    is."""
    besides_ = [] if model_path is None else besides(model_path, suffix)
    candidates = [b for b in besides_ if _is_file(b)]
    if checkpoint_sha256:
        candidates += sorted(p for p in PACKAGED.glob("*" + suffix) if p not in candidates)
    for p in candidates:
        beside = p if p in besides_ else None
        try:
            found = load(p)
        except ModelError as exc:
            logger.warning("%s skipped: %s", what, exc)
            continue
        why = found.mismatch(classes, checkpoint_sha256)
        if why is None and (p == beside or same_checkpoint(found.checkpoint_sha256, checkpoint_sha256)):
            return found
        if p == beside:
            logger.warning("%s %s skipped: %s", what, p, why or "it records no checkpoint")
    return None


def resolve(value: Any, cls: type[T], model_path: Optional[PathLike], classes: Sequence[str], checkpoint_sha256: str,
            suffix: str, what: str, argument: str, how: str) -> Optional[T]:
    """What an app passed as ``argument``: ``"auto"`` (:func:`find`), None, an instance of ``cls`` or the path of
    its file. One named by the app that belongs to another model is refused; ``how`` says how to make the right one.
    ``model_path`` None: a model with no local file (found only among the package's files).

    Raises:
        InputError: another type. ModelError: an unreadable file, or one of another model.
    """
    if value is None:
        return None
    load: Callable[[Path], T] = getattr(cls, "load")
    if isinstance(value, str) and value == "auto":
        return find(model_path, classes, checkpoint_sha256, suffix, load, what)
    if isinstance(value, (str, os.PathLike)):
        found = load(Path(value))
    elif isinstance(value, cls):
        found = value
    else:
        raise InputError(f"{argument} is a {type(value).__name__}; expected 'auto', None, a {cls.__name__} or the "
                         "path of its JSON file")
    why = found.mismatch(classes, checkpoint_sha256)
    if why is not None:
        name = "" if isinstance(value, cls) else f" {value}"
        owner = "the served model" if model_path is None else model_path
        raise ModelError(f"{what}{name} does not belong to {owner}: {why}; expected the model's own ({how}), "
                         f"{argument}='auto' or {argument}=None")
    return found


# -- values of a file beside a model, read as the file holds them (checked, not coerced) ----------------------
def real_value(value: Any) -> float:
    """``float(value)`` of a real number; TypeError for a bool, str, bytes or complex number (which ``float`` would
    read as a number, or read from its characters)."""
    if isinstance(value, (bool, np.bool_, str, bytes, complex, np.complexfloating)):
        raise TypeError(f"a {type(value).__name__}, {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{value!r} is past what a float holds") from None


def count_value(value: Any) -> int:
    """``int(value)`` of a whole number (an integral float too: 100.0); TypeError/ValueError for anything else."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    number = real_value(value)
    if not number.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return int(number)


def text_value(value: Any) -> str:
    """``str(value)`` of a str (numpy's too); TypeError for anything else (None would become 'None')."""
    if not isinstance(value, str):
        raise TypeError(f"a {type(value).__name__}, {value!r}, not a str")
    return str(value)


def real_array(value: Any) -> np.ndarray:
    """``value`` (nested lists of numbers, as JSON holds them) as a float64 array; TypeError where it holds anything
    but real numbers (strings, which numpy would read from their characters; booleans; None)."""
    a = np.asarray(value)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"an array of {a.dtype} values, not of real numbers")
    return a.astype(np.float64)


def refuse_unknown_fields(cls: Any, d: Mapping[str, Any], what: str) -> None:
    """Refuse a file's fields that dataclass ``cls`` does not have (a misspelled optional field would otherwise be
    dropped without a word).

    Raises:
        ModelError: naming them and the expected ones, or ``d`` that is not a mapping (a JSON object).
    """
    import dataclasses

    if not isinstance(d, Mapping):  # a JSON array or string: no fields to read
        raise ModelError(f"{what}: a {type(d).__name__}; expected a JSON object of its fields (as save() writes)")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in d if k not in known]
    if unknown:
        raise ModelError(f"{what}: unknown field(s) {unknown}; expected only {known}")
