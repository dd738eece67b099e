"""Checkpoints: written atomically, loaded without unpickling code (``torch.load(weights_only=True)``).

Two kinds share one container format:
- *model* checkpoints (``kind == "model"``): what ``fsrfer-eval`` and ``fsrfer-export`` read. They hold
  the :class:`~trainer.models.InferenceModel` spec, its ``state_dict`` and the preprocessing.
- *training state* (``kind == "state"``): model + optimiser states and the epoch, for ``--resume``.
"""
from __future__ import annotations

import copy
import io
import math
import os
import re
import sys
import warnings
import zipfile
from typing import Any

import torch

from fsrfer_edge.errors import InputError, ModelError, check_flag
from fsrfer_edge.fileio import as_path, atomic_write, file_problem
from fsrfer_edge.preprocessing import Preprocessing

FORMAT = "fsrfer-checkpoint"
#: The newest version this trainer reads. 2: float tensors stored as byte planes (``save(compress=True)``),
#: which an older trainer would misread, so it refuses them; a checkpoint without planes is still written as 1.
VERSION = 2
#: The key that marks a float tensor stored as byte planes in a compressed checkpoint.
BYTE_PLANES = "__fsrfer_byte_planes__"


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


def save(path: str | os.PathLike[str], payload: dict[str, Any], compress: bool = False,
         byte_planes: bool = True) -> None:
    """Save a checkpoint dict atomically (tensors, and plain dicts/lists/str/numbers only).

    Tensors are saved on the CPU (see :func:`to_cpu`), so a checkpoint written by a GPU run loads on
    a machine without one. With ``compress``, for a checkpoint that ships inside the package budget,
    every float tensor is stored as its byte planes (:func:`_to_byte_planes`: the bytes of each
    element's sign and exponent together, then each mantissa byte together; lossless) and the
    entries of torch's zip container are deflated. Deflate alone shrinks trained float32 weights by
    about 7%, after the byte planes by about 15%: the exponent bytes of weights of similar size repeat,
    the low mantissa bytes are noise either way. :func:`load` restores the tensors bit for bit; a bare
    ``torch.load`` returns the planes (and not with ``mmap=True``). ``byte_planes=False`` only deflates
    (``scripts/package_size.py`` measures both forms).

    Raises:
        InputError: ``path`` is not a path, ``payload`` not a dict, or ``compress`` or ``byte_planes`` not a bool.
    """
    path = as_path(path, "checkpoint path")
    if not isinstance(payload, dict):
        raise InputError(f"received payload {type(payload).__name__}; expected a dict of tensors and plain data")
    compress, byte_planes = check_flag("compress", compress), check_flag("byte_planes", byte_planes)
    planes = compress and byte_planes
    payload = to_cpu({"format": FORMAT, "version": VERSION if planes else 1, **payload})
    if not compress:
        atomic_write(path, lambda f: torch.save(payload, f))
        return
    buf = io.BytesIO()
    torch.save(_encode(payload) if planes else payload, buf)

    def deflated(f: Any) -> None:
        with zipfile.ZipFile(buf) as src, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
            for info in src.infolist():  # torch's entry times (fixed), so the same payload gives the same bytes
                entry = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                entry.compress_type = zipfile.ZIP_DEFLATED
                dst.writestr(entry, src.read(info.filename), compresslevel=9)

    atomic_write(path, deflated)


def _to_byte_planes(t: torch.Tensor) -> dict[str, Any]:
    """A float tensor as a dict of plain data and one uint8 tensor of shape (element size, numel):
    row i holds byte i of every element in this machine's byte order (``byteorder``; a reader on the
    other order reverses the rows). Deflate finds the repeats within the exponent row that it misses
    when each element's bytes are interleaved with noisy mantissa bytes."""
    flat = t.detach().contiguous().reshape(-1)
    planes = flat.view(torch.uint8).reshape(flat.numel(), t.element_size()).t().contiguous()
    return {BYTE_PLANES: 1, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
            "byteorder": sys.byteorder, "planes": planes}


def _from_byte_planes(d: dict[str, Any]) -> torch.Tensor:
    dtype = getattr(torch, str(d.get("dtype")), None)
    planes, shape, order = d.get("planes"), d.get("shape"), d.get("byteorder")
    if (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or not isinstance(planes, torch.Tensor)
            or planes.dtype != torch.uint8 or planes.dim() != 2 or not isinstance(shape, list)
            or not all(type(n) is int and n >= 0 for n in shape) or order not in ("little", "big")):
        raise ValueError(f"byte planes of dtype {d.get('dtype')!r}, shape {shape!r}, byte order {order!r}: "
                         "not as save() writes them")
    numel = math.prod(shape)
    itemsize = torch.empty((), dtype=dtype).element_size()
    if tuple(planes.shape) != (itemsize, numel):
        raise ValueError(f"byte planes of shape {tuple(planes.shape)} for a {d['dtype']} tensor of shape {shape}; "
                         f"expected ({itemsize}, {numel})")
    if order != sys.byteorder:
        planes = planes.flip(0)
    return planes.t().contiguous().view(dtype).reshape(shape)


def _encode(obj: Any) -> Any:
    """``obj`` with every float tensor inside (nested dicts, lists, tuples) as byte planes."""
    if isinstance(obj, torch.Tensor):
        return _to_byte_planes(obj) if obj.dtype.is_floating_point and obj.element_size() > 1 else obj
    return _map_containers(obj, _encode)


def _decode(obj: Any) -> Any:
    """The inverse of :func:`_encode`."""
    if isinstance(obj, dict) and obj.get(BYTE_PLANES) == 1:
        return _from_byte_planes(obj)
    return _map_containers(obj, _decode)


def _map_containers(obj: Any, fn: Any) -> Any:
    """``fn`` applied to each value of a dict (a shallow copy of the same type: a state dict keeps its
    ``_metadata``), list or tuple; anything else unchanged."""
    if isinstance(obj, dict):
        out = copy.copy(obj)
        out.update((k, fn(v)) for k, v in obj.items())
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(fn(v) for v in obj)
    return obj


def load(path: str | os.PathLike[str], kind: str | None = None) -> dict[str, Any]:
    """Load a checkpoint safely.

    Raises:
        ModelError: if the file is missing, corrupt, not an fsrfer checkpoint, or of the wrong kind.
        InputError: if ``path`` is not a path (None, a number, an empty string).
    """
    p = as_path(path, "checkpoint path")
    problem = file_problem(p)
    if problem:
        raise ModelError(f"checkpoint {p} {problem}; expected a .pt file written by fsrfer-train")
    try:
        with warnings.catch_warnings():
            # torch's legacy loader warns of the "pickle protocol" it read from bytes that are no torch file at all,
            # just before failing on them: noise beside the error raised below
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
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
        if ckpt.get("kind") == "state" and kind == "model":  # a run's state/*.pt passed for one of its models/*.pt
            raise ModelError(f"{p} is a 'state' checkpoint (a stage's training state, which fsrfer-train --resume "
                             "reads); expected a 'model' checkpoint: pass one of the run's models/*.pt, e.g. "
                             "runs/NAME/models/fsrfer.pt")
        raise ModelError(f"{p} is a {ckpt.get('kind')!r} checkpoint; expected a {kind!r} checkpoint")
    try:
        return _decode(ckpt)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ModelError(f"checkpoint {p}: a tensor stored as byte planes is damaged ({exc}); "
                         "expected a file written by fsrfer-train") from exc


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


def weights_sha256(module: "torch.nn.Module") -> str:
    """SHA-256 of a module's tensors (names, dtypes, shapes and bytes, in name order): the same network gives
    the same digest whichever form its file was stored in (a re-stored checkpoint changes the file's hash)."""
    import hashlib

    h = hashlib.sha256()
    sd = module.state_dict()
    for name in sorted(sd):
        t = sd[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def load_model(path: str | os.PathLike[str]) -> tuple["torch.nn.Module", Preprocessing, dict[str, Any]]:
    """Load a model checkpoint: returns (InferenceModel in eval mode, preprocessing, checkpoint dict)."""
    from .models import InferenceModel

    ckpt = load(path, kind="model")
    if "preprocessing" not in ckpt:  # model_payload has always written it: no default stands in for it
        raise ModelError(f"checkpoint {path} has no 'preprocessing' entry (input size, normalisation, classes); "
                         "expected a model checkpoint as fsrfer-train writes it. Train or save the model again "
                         "with fsrfer-train")
    try:
        model = InferenceModel(ckpt["spec"])
        model.load_state_dict(ckpt["state_dict"])
        # Every field is required (Preprocessing.from_dict refuses a missing one, naming it): model_payload has written
        # all of them (to_dict) since the first checkpoint, so a missing one means a damaged or hand-made file.
        pre = Preprocessing.from_dict(ckpt["preprocessing"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ModelError(f"checkpoint {path}: its spec, weights or preprocessing do not fit together "
                         f"({type(exc).__name__}: {reason}); expected a model checkpoint from fsrfer-train") from exc
    model.eval()
    return model, pre, ckpt

