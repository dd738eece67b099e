"""Checkpoints: written atomically, loaded without unpickling code (``torch.load(weights_only=True)``).

Two kinds share one container format:
- *model* checkpoints (``kind == "model"``): what ``fsrfer-eval`` and ``fsrfer-export`` read. They hold
  the :class:`~trainer.models.InferenceModel` spec, its ``state_dict`` and the preprocessing.
- *training state* (``kind == "state"``): model + optimiser states and the epoch, for ``--resume``.
"""
from __future__ import annotations

import copy
import io
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from fsrfer_edge.errors import ModelError
from fsrfer_edge.fileio import atomic_write, file_problem
from fsrfer_edge.preprocessing import Preprocessing

FORMAT = "fsrfer-checkpoint"
VERSION = 1


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor inside (nested dicts, lists, tuples) on the CPU: a state dict of a
    model trained on a GPU, an optimiser's state. Returned unchanged, the same object, when every
    tensor is on the CPU already; containers that change are shallow copies of the same type
    (a state dict keeps its ``_metadata``)."""
    if isinstance(obj, torch.Tensor):
        return obj if obj.device.type == "cpu" else obj.cpu()
    if isinstance(obj, dict):
        items = {k: to_cpu(v) for k, v in obj.items()}
        if all(items[k] is v for k, v in obj.items()):
            return obj
        out = copy.copy(obj)
        out.update(items)
        return out
    if isinstance(obj, (list, tuple)):
        seq = [to_cpu(v) for v in obj]
        if all(a is b for a, b in zip(seq, obj)):
            return obj
        return type(obj)(seq)
    return obj


def save(path: str | os.PathLike[str], payload: dict[str, Any], compress: bool = False) -> None:
    """Save a checkpoint dict atomically (tensors, and plain dicts/lists/str/numbers only).

    Tensors are saved on the CPU (see :func:`to_cpu`), so a checkpoint written by a GPU run loads on
    a machine without one. With ``compress`` the entries of torch's zip container are deflated (float
    weights shrink by about 7%; ``torch.load`` reads them as it reads stored ones, only not with
    ``mmap=True``): for a checkpoint that ships inside the package budget."""
    payload = to_cpu({"format": FORMAT, "version": VERSION, **payload})
    if not compress:
        atomic_write(path, lambda f: torch.save(payload, f))
        return
    buf = io.BytesIO()
    torch.save(payload, buf)

    def deflated(f: Any) -> None:
        with zipfile.ZipFile(buf) as src, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
            for info in src.infolist():
                dst.writestr(info.filename, src.read(info.filename))

    atomic_write(path, deflated)


def load(path: str | os.PathLike[str], kind: str | None = None) -> dict[str, Any]:
    """Load a checkpoint safely.

    Raises:
        ModelError: if the file is missing, corrupt, not an fsrfer checkpoint, or of the wrong kind.
    """
    p = Path(path)
    problem = file_problem(p)
    if problem:
        raise ModelError(f"checkpoint {p} {problem}; expected a .pt file written by fsrfer-train")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # arbitrary bytes can break the unpickler anywhere (IndexError, KeyError, struct.error...)
        # torch.save writes a zip archive; anything else that fails to load is not one of ours, whichever
        # exception the legacy unpickler happened to raise on its bytes.
        reason = _one_line_reason(exc) if zipfile.is_zipfile(p) else "it is truncated, corrupt or not a PyTorch file"
        raise ModelError(f"checkpoint {p} could not be read: {reason}; expected a file written by "
                         "fsrfer-train (tensors and plain data only)") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ModelError(f"{p} is not an fsrfer checkpoint (no 'format': '{FORMAT}' entry)")
    if ckpt.get("version", 0) > VERSION:
        raise ModelError(f"{p} has checkpoint version {ckpt['version']}; this trainer reads up to {VERSION}")
    if kind is not None and ckpt.get("kind") != kind:
        raise ModelError(f"{p} is a {ckpt.get('kind')!r} checkpoint; expected a {kind!r} checkpoint")
    return ckpt


def _one_line_reason(exc: BaseException) -> str:
    """PyTorch's multi-line explanation of a refused or corrupt file, reduced to what matters, on one line."""
    text = str(exc).replace("\x1b[1m", "").replace("\x1b[0m", "")
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:  # a pickled object that only an unsafe load would create
        return f"it holds a pickled Python object ({found.group(1)}) that a safe load does not create"
    if isinstance(exc, EOFError) or any(k in text for k in ("central directory", "Unsupported operand",
                                                             "invalid load key", "not a zip file")):
        return "it is truncated, corrupt or not a PyTorch file"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"


def model_payload(model: "torch.nn.Module", spec: dict[str, Any], pre: Preprocessing, meta: dict[str, Any]) -> dict[str, Any]:
    """The payload of a model checkpoint for an InferenceModel."""
    return {"kind": "model", "spec": dict(spec), "preprocessing": pre.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": dict(meta)}


def load_model(path: str | os.PathLike[str]) -> tuple["torch.nn.Module", Preprocessing, dict[str, Any]]:
    """Load a model checkpoint: returns (InferenceModel in eval mode, preprocessing, checkpoint dict)."""
    from .models import InferenceModel

    ckpt = load(path, kind="model")
    try:
        model = InferenceModel(ckpt["spec"])
        model.load_state_dict(ckpt["state_dict"])
        pre = Preprocessing.from_dict(ckpt["preprocessing"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ModelError(f"checkpoint {path}: its spec, weights or preprocessing do not fit together "
                         f"({type(exc).__name__}: {reason}); expected a model checkpoint from fsrfer-train") from exc
    model.eval()
    return model, pre, ckpt

