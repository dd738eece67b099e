"""The one small interface every inference backend implements.

A backend owns one loaded model (an ONNX Runtime session, a TensorRT engine and its device
memory). Its public :meth:`Backend.infer` checks the batch against the model's own description
(:class:`~fsrfer_edge.metadata.ModelInfo`) and then calls the backend's ``_infer_impl``, so every
backend sees only well-formed input. Loading lives in small module-level functions of each
backend module, apart from running.
"""
from __future__ import annotations

import abc
import logging
import threading
from types import TracebackType
from typing import Any, Optional

import numpy as np

from ..errors import FsrferError, InputError, ModelError, check_flag
from ..forking import renew_in_child
from ..metadata import ModelInfo
from ..preprocessing import unmasked

logger = logging.getLogger(__name__)


class BackendClosedError(FsrferError, RuntimeError):
    """A backend (or a Recognizer) was used after :meth:`close`."""


def _renew_close_lock(backend: "Backend") -> None:
    backend._close_lock = threading.RLock()


class Backend(abc.ABC):
    """Base class of inference backends: ``infer(batch) -> logits``, ``close()``, context manager.

    Subclasses set ``self._info`` (and ``self._max_batch`` when the model limits the batch size)
    while loading, and implement :meth:`_infer_impl` and :meth:`_close_impl`.
    """

    #: Short backend name recorded in benchmarks, e.g. ``"onnxruntime"``.
    name: str = "base"
    # Each instance gets its own in __init__; this one serves subclasses that do not call it.
    _close_lock = threading.RLock()

    def __init__(self) -> None:
        self._info: Optional[ModelInfo] = None
        self._max_batch: Optional[int] = None
        self._closed = False
        # Held while closing: a close() that comes while another thread closes returns once all is freed.
        self._close_lock = threading.RLock()
        renew_in_child(self, _renew_close_lock)  # a fork while a parent thread was closing it

    # -- description ------------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        """The model's self-description (preprocessing, classes, tensor names, input dtype)."""
        if self._info is None:
            raise BackendClosedError(f"{type(self).__name__} has no model loaded")
        return self._info

    @property
    def max_batch(self) -> Optional[int]:
        """Largest batch the loaded model accepts, or None when it has no limit."""
        return self._max_batch

    @property
    def min_batch(self) -> int:
        """Smallest batch the loaded model accepts (1, unless an engine was built for more)."""
        return 1

    @property
    def providers(self) -> tuple[str, ...]:
        """What actually executes the model (for logs and benchmark records)."""
        return (self.name,)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self.info.input_dtype)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, S, S) of one sample, from the model's preprocessing."""
        pre = self.info.preprocessing
        return (pre.channels, pre.input_size, pre.input_size)

    # -- running ----------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on one batch.

        Args:
            batch: (N, C, S, S) array of the model's input dtype (``info.input_dtype``): float32
                normalised input, or uint8 raw pixels for models that normalise in the graph.

        Returns:
            (N, num_classes) float32 logits.

        Raises:
            InputError: wrong type, dtype, shape, an empty batch, a batch larger than
                ``max_batch`` or smaller than ``min_batch`` (a graph with a fixed batch size takes
                exactly that many), or NaN/infinite values.
            ModelError: the model failed to run, or returned logits that are not (N, num_classes)
                finite values.
            BackendClosedError: the backend was closed.
        """
        self._check_open()
        batch = self._validate(batch)
        return self._check_logits(self._infer_impl(batch), batch.shape[0])

    def check_model(self) -> None:
        """One dry run on a batch of zeros, done when a model is loaded.

        It catches, before any caller's batch is blamed, a graph that fails at run time or whose
        output disagrees with its metadata (class count), and a model that outputs NaN.

        Raises:
            ModelError: the dry run failed or gave malformed logits.
        """
        zeros = np.zeros((self.min_batch,) + self.input_shape, dtype=self.input_dtype)
        try:
            self.infer(zeros)
        except ModelError as exc:
            raise ModelError(f"the model failed its dry run on a batch of zeros when it was loaded: {exc}") from exc

    def _check_logits(self, logits: np.ndarray, n: int) -> np.ndarray:
        """Refuse model output that is not (n, num_classes) finite logits: the model, not the batch, is wrong."""
        classes = len(self.info.classes)
        shape = getattr(logits, "shape", None)
        if not isinstance(logits, np.ndarray) or shape != (n, classes):
            raise ModelError(
                f"the model returned logits of shape {shape} for a batch of {n}; its metadata names {classes} "
                f"classes, so ({n}, {classes}) was expected. The file's graph and metadata disagree: export it again"
            )
        if not np.isfinite(logits).all():
            raise ModelError(
                f"the model returned NaN or infinite logits for a batch of {n} valid inputs; the weights are "
                "broken (e.g. a diverged training run). Export it again from a good checkpoint"
            )
        return logits

    def _check_open(self) -> None:
        if self._closed:
            raise BackendClosedError(
                f"this {type(self).__name__} was closed; create a new one (or a new Recognizer) to run inference"
            )

    def validate(self, batch: np.ndarray, any_size: bool = False) -> np.ndarray:
        """Check a batch as :meth:`infer` does (``any_size``: without its batch-size limits, for a caller
        that splits the batch itself); returns it C-contiguous.

        Raises:
            InputError: as :meth:`infer`; ``any_size`` is not True or False.
            BackendClosedError: the backend was closed.
        """
        self._check_open()
        return self._validate(batch, limit=not check_flag("any_size", any_size))

    def _validate(self, batch: np.ndarray, limit: bool = True) -> np.ndarray:
        expected_shape = "(N, {}, {}, {})".format(*self.input_shape)
        if isinstance(batch, np.ndarray):
            batch = unmasked(batch, "the batch")
        if not isinstance(batch, np.ndarray):
            raise InputError(
                f"received a {type(batch).__name__}; expected a numpy array of shape {expected_shape}, "
                f"dtype {self.input_dtype}"
            )
        if batch.dtype != self.input_dtype:
            hint = ("Normalise faces with info.preprocessing.prepare()" if self.input_dtype == np.float32
                    else "Pass raw pixels: np.rint(info.preprocessing.to_pixels(faces)).astype(np.uint8)")
            raise InputError(
                f"received a batch of dtype {batch.dtype}; this model expects {self.input_dtype}. {hint}"
            )
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_shape:
            raise InputError(f"received a batch of shape {batch.shape}; expected {expected_shape}")
        n = batch.shape[0]
        if n == 0:
            raise InputError(f"received an empty batch of shape {batch.shape}; expected at least one sample")
        least, most = self.min_batch, self._max_batch
        fixed = f"; it takes exactly {least} faces at a time" if least == most else ""
        if limit and most is not None and n > most:
            raise InputError(f"received a batch of {n}; this model accepts at most {most} at once{fixed}. "
                             "Split the batch (Recognizer does this for you)")
        if limit and n < least:
            raise InputError(f"received a batch of {n}; this model accepts at least {least} at once{fixed}. "
                             "Pad the batch with zero rows and drop their logits (Recognizer does this for you)")
        if batch.dtype.kind == "f" and not np.isfinite(batch).all():
            raise InputError("the batch contains NaN or infinite values; expected finite normalised input")
        return np.ascontiguousarray(batch)

    @abc.abstractmethod
    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        """Run a validated, C-contiguous batch; return float32 logits."""

    # -- lifetime ---------------------------------------------------------------------------
    def close(self) -> None:
        """Free the model and every buffer the backend owns; closing twice is fine, also from two threads at
        once (the second returns when the first has freed everything). A call running in another thread then
        finishes or raises BackendClosedError; later calls raise BackendClosedError."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._close_impl()

    @abc.abstractmethod
    def _close_impl(self) -> None:
        """Release resources; called once."""

    def __reduce_ex__(self, protocol: Any) -> Any:
        # pickle, copy.copy and copy.deepcopy all come here. A shallow copy would share the session, device
        # buffers or thread pool, and closing (or collecting) either would free them under the other.
        raise TypeError(f"a {type(self).__name__} holds an open model and cannot be pickled or copied; pass the "
                        "model's path and settings to the other process and open one there (one backend may "
                        "also be shared by threads)")

    def __enter__(self) -> "Backend":
        self._check_open()
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        if exc is None:
            self.close()
            return
        # The block's error is the one to report: a close that fails too (a CUDA error is sticky, so freeing
        # after a failed run fails as well) is logged, and noted on it, not raised in its place.
        try:
            self.close()
        except Exception as cleanup:  # noqa: BLE001 - reported with the block's error
            message = f"closing {type(self).__name__} also failed, while handling {type(exc).__name__}: {cleanup}"
            logger.warning("%s", message)
            if hasattr(exc, "add_note"):  # Python >= 3.11
                exc.add_note(message)

    def __del__(self) -> None:
        # A backend that was never closed still frees its device memory when collected. Errors
        # here cannot be raised to anyone (the interpreter may be shutting down); log them.
        if getattr(self, "_closed", True):
            return
        try:
            self.close()
        except Exception as exc:  # noqa: BLE001 - a finaliser has nowhere to raise to
            logger.debug("closing %s during garbage collection failed: %s", type(self).__name__, exc)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"max_batch={self._max_batch}"
        return f"{type(self).__name__}({state})"
