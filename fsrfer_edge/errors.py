"""The package's exceptions: one base class, one subclass per kind of failure.

Every message says what was received, what was expected and, where it helps, what to do.
"""
from __future__ import annotations

import importlib
from types import ModuleType


class FsrferError(Exception):
    """Base class of every error raised by fsrfer_edge and the trainer."""


class InputError(FsrferError, ValueError):
    """Faces, frames or arrays given by the caller are not what the API accepts."""


class ModelError(FsrferError):
    """A model file (ONNX, checkpoint) is missing, corrupt or not an fsrfer model."""


class EngineError(ModelError):
    """A TensorRT engine is corrupt, stale, or was built for another TensorRT version or GPU."""


class DataError(FsrferError):
    """A data set file is missing or malformed; the message names the file and line."""


class ConfigError(FsrferError, ValueError):
    """A configuration file or option is invalid."""


class BackendUnavailable(FsrferError, ImportError):
    """An optional library (torch, onnxruntime, tensorrt, CUDA bindings) is not installed."""


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import an optional dependency, or raise BackendUnavailable naming the pip extra.

    Args:
        module: importable module name, e.g. ``"onnxruntime"``.
        extra: the ``pip install fsrfer-edge[EXTRA]`` extra that provides it.
        purpose: what it is needed for, shown in the message.

    Raises:
        BackendUnavailable: if the import fails.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        why = f" for {purpose}" if purpose else ""
        raise BackendUnavailable(
            f"'{module}' is needed{why} but could not be imported ({exc}). "
            f"Install it with: pip install 'fsrfer-edge[{extra}]'"
        ) from exc
