"""Files measured for a model and kept beside it: ``NAME.groups.json`` (:mod:`fsrfer_edge.groups`) and
``NAME.scores.json`` (:mod:`fsrfer_edge.confidence`). Each is looked for beside the model (under the model's own
name or the name of the model it is a variant or an engine of), then among the package's files measured on the
same checkpoint (the shipped model's serve its FP16 and INT8 files and their engines too).

Why files and not ONNX metadata: docs/DESIGN.md.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence, TypeVar, Union

from .errors import InputError, ModelError

logger = logging.getLogger(__name__)

#: Where the shipped model's files are.
PACKAGED = Path(__file__).resolve().parent / "models"

#: An engine built from ``NAME.onnx`` or its variants: ``NAME.<precision>.<digest>.trt...engine``
#: (:meth:`fsrfer_edge.engine_cache.EngineKey.filename`).
_ENGINE_NAME = re.compile(r"(.+?)\.(?:fp32|fp16|int8)\.[0-9a-f]{8}\.")

PathLike = Union[str, "os.PathLike[str]"]


class Measured(Protocol):
    @property
    def checkpoint_sha256(self) -> str: ...

    def mismatch(self, classes: Sequence[str], checkpoint_sha256: str) -> Optional[str]: ...


T = TypeVar("T", bound=Measured)


def model_names(path: Path) -> list[str]:
    """The names a model's files may have: its own (``NAME`` of ``NAME.onnx``), then the model it is a variant of
    (``NAME.fp16.onnx``, ``NAME.int8-u8s8.onnx``: :func:`~fsrfer_edge.engine_cache.model_stem`) or an engine of
    (``NAME.int8.<digest>.trt....engine``). A NAME may hold dots (``fer.v2``)."""
    from .engine_cache import model_stem

    engine = _ENGINE_NAME.match(path.name)
    return list(dict.fromkeys([path.stem, model_stem(path)] + ([engine.group(1)] if engine else [])))


def find(model_path: PathLike, classes: Sequence[str], checkpoint_sha256: str, suffix: str,
         load: Callable[[Path], T], what: str) -> Optional[T]:
    """The model's file of kind ``suffix`` (loaded by ``load``), or None: beside the model, else a packaged one
    measured on the same checkpoint. A file beside the model that is unreadable or belongs to another model is
    skipped with a warning naming ``what`` it is."""
    path = Path(model_path)
    besides = [path.with_name(n + suffix) for n in model_names(path)]
    candidates = [b for b in besides if b.is_file()]
    if checkpoint_sha256:
        candidates += sorted(p for p in PACKAGED.glob("*" + suffix) if p not in candidates)
    for p in candidates:
        beside = p if p in besides else None
        try:
            found = load(p)
        except ModelError as exc:
            logger.warning("%s skipped: %s", what, exc)
            continue
        why = found.mismatch(classes, checkpoint_sha256)
        if why is None and (p == beside or found.checkpoint_sha256 == checkpoint_sha256):
            return found
        if p == beside:
            logger.warning("%s %s skipped: %s", what, p, why or "it records no checkpoint")
    return None


def resolve(value: Any, cls: type[T], model_path: PathLike, classes: Sequence[str], checkpoint_sha256: str,
            suffix: str, what: str, argument: str, how: str) -> Optional[T]:
    """What an app passed as ``argument``: ``"auto"`` (:func:`find`), None, an instance of ``cls`` or the path of
    its file. One named by the app that belongs to another model is refused; ``how`` says how to make the right one.

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
        raise ModelError(f"{what}{name} does not belong to {model_path}: {why}; expected the model's own ({how}), "
                         f"{argument}='auto' or {argument}=None")
    return found
