"""The package's exceptions: one base class, one subclass per kind of failure.

Every message says what was received, what was expected and, where it helps, what to do.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
from types import ModuleType
from typing import Any, ContextManager, Iterator, NoReturn


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


# The extras of setup.py that hold torch.
TORCH_EXTRAS = ("train", "export")


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import an optional dependency, or raise BackendUnavailable naming the pip extra.

    Args:
        module: importable module name, e.g. ``"onnxruntime"``.
        extra: the extra of ``pip install -e ".[EXTRA]"`` (in the fsrfer-edge checkout) that provides it.
        purpose: what it is needed for, shown in the message.

    Raises:
        BackendUnavailable: if the import fails.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        why = f" for {purpose}" if purpose else ""
        # torch first, pinned (README, "Quick start"): the extra's own range would pull the CUDA wheels.
        first = "pip install torch==2.13.0, then " if extra in TORCH_EXTRAS else ""
        raise BackendUnavailable(
            f"'{module}' is needed{why} but could not be imported ({exc}). "
            f"Install it in the fsrfer-edge checkout with: {first}pip install -e '.[{extra}]'"
        ) from exc


def one_line(exc: "BaseException | str") -> str:
    """An error message on one line (messages quoting other libraries may hold newlines)."""
    return " ".join(str(exc).split())


class CliParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line on stderr, exit code 2 (no usage dump).

    Every fsrfer command line reports its errors so: ``PROG: error: what was wrong; what to do``.
    """

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")
        sys.exit(2)


@contextlib.contextmanager
def signal_handled(signum: int, handler: Any, fallback: Any = signal.SIG_DFL) -> Iterator[None]:
    """Within the block, ``handler`` handles signal ``signum``; the previous handler is put back after it
    (``fallback`` where that one was not set from Python and cannot be). Only the main thread may set handlers:
    elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, fallback if previous is None else previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def sigterm_interrupts() -> ContextManager[None]:
    """Within the block, SIGTERM (``kill``, a job scheduler or supervisor stopping the run) raises
    KeyboardInterrupt as Ctrl-C does, so the run cleans up after itself either way (:func:`signal_handled`)."""
    return signal_handled(signal.SIGTERM, _interrupt)
