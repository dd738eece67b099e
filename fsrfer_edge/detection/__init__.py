"""Face detectors for crowd frames: ``create_detector(name).detect(frame) -> list[Detection]``.

- ``"yunet"``: YuNet-n (shipped; libfacedetection, Apache-2.0, trained on WIDER FACE: see
  ``models/YUNET_LICENSE.md``) on ONNX Runtime, on the frame enlarged for faces down to ``min_face``
  pixels (:mod:`.yunet`). The default: on the crowd benchmark (results/crowd/bench.json) it detects
  several times faster than BlazeFace at equal end-to-end accuracy, with fewer false faces on real photos.
- ``"blazeface"``: MediaPipe BlazeFace converted to ONNX (shipped), on ONNX Runtime, with an image
  pyramid for faces down to ``min_face`` pixels (:mod:`.blazeface`).
- ``"opencv"``: OpenCV's Haar cascade (:mod:`.opencv`), the fallback without ONNX Runtime.
- ``"auto"``: YuNet when ONNX Runtime can be imported, else OpenCV (with a warning where it is installed but
  fails to import).

Your own detector: subclass :class:`FaceDetector` and implement ``_detect(frame)`` (see :mod:`.base`).
Importing this package needs numpy only.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import BackendUnavailable, InputError, one_line
from .base import (
    MAX_FRAME_PIXELS,
    Detection,
    DetectorClosedError,
    FaceDetector,
    as_rgb_frame,
    box_iou,
    drop_nested,
    nms,
    weighted_nms,
)

logger = logging.getLogger(__name__)

#: Names accepted by :func:`create_detector`.
DETECTORS: tuple[str, ...] = ("auto", "yunet", "blazeface", "opencv")

PathLike = Union[str, "os.PathLike[str]"]
#: Each detector's default score threshold. YuNet's was chosen on the crowd benchmark's score sweep
#: (``score_sweep`` in results/crowd/bench.json): the lowest threshold, so the best end-to-end accuracy,
#: whose false faces on the 18 real photos are at most half of BlazeFace's at 0.5 (MediaPipe's threshold,
#: kept for BlazeFace).
DEFAULT_SCORES: dict[str, float] = {"yunet": 0.3, "blazeface": 0.5}


def detector_model_inputs() -> list[tuple[str, Path]]:
    """The shipped detectors' model files as ``(what, path)`` inputs for
    :func:`fsrfer_edge.fileio.check_distinct_files`: a command's outputs must not overwrite them (read at call
    time: a test may point them elsewhere)."""
    from . import blazeface, yunet

    return [("the detector's model", yunet.DEFAULT_YUNET), ("the detector's model", blazeface.DEFAULT_BLAZEFACE)]


_NOT_INSTALLED = "onnxruntime is not installed"


def _onnxruntime_problem() -> str:
    """Why 'auto' cannot use ONNX Runtime ("" when it can): not installed, or installed but failing to import (a
    missing shared library, a wheel for another numpy), which YuNet would then fail on."""
    if importlib.util.find_spec("onnxruntime") is None:
        return _NOT_INSTALLED
    try:
        importlib.import_module("onnxruntime")
    except Exception as exc:  # whatever a broken install raises on import: 'auto' then takes OpenCV, and says why
        return f"onnxruntime cannot be imported ({type(exc).__name__}: {one_line(exc)})"
    return ""


def create_detector(name: str = "auto", *, min_face: float = 8.0, min_score: Optional[float] = None,
                    model: Optional[PathLike] = None, threads: Optional[int] = None) -> FaceDetector:
    """Create a face detector by name.

    Args:
        name: ``"auto"`` (YuNet if onnxruntime can be imported, else OpenCV), ``"yunet"``, ``"blazeface"``
            or ``"opencv"``.
        min_face: smallest face side in frame pixels to look for (smaller costs more time).
        min_score: detection threshold (None: the detector's default, :data:`DEFAULT_SCORES`). OpenCV
            cascades score every detection 1.0, so it keeps them all.
        model: the detector's ``.onnx`` (None: the shipped model); an error with ``"opencv"``.
        threads: ONNX Runtime intra-op threads (None: its default); an error with ``"opencv"``, unused
            (with a logged warning) when ``"auto"`` falls back to OpenCV.

    Returns:
        A :class:`FaceDetector` (close it, or use it as a context manager).

    Raises:
        InputError: an unknown name, an option out of range, or options the chosen detector does not take.
        BackendUnavailable: the detector's library is missing (the message names the pip extra).
        ModelError: the detector's model cannot be loaded.
    """
    if not isinstance(name, str) or name not in DETECTORS:
        raise InputError(f"detector={name!r}; expected one of {DETECTORS}")
    chosen, why = name, ""
    if name == "auto":
        why = _onnxruntime_problem()
        chosen = "opencv" if why else "yunet"
        if why and why != _NOT_INSTALLED:  # a broken install: worth more than an info line
            logger.warning("detector 'auto' chose opencv: %s", why)
        else:
            logger.info("detector 'auto' chose %s", chosen)
    fallback = f" ('auto' chose it: {why})" if name != chosen else ""
    score = DEFAULT_SCORES.get(chosen, 0.0) if min_score is None else min_score
    if isinstance(score, bool) or not isinstance(score, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(score) <= 1.0:  # NaN fails the comparison too
        raise InputError(f"min_score={min_score!r}; expected a number from 0 to 1 (None: the detector's default)")
    if chosen == "yunet":
        from .yunet import YuNetDetector

        return YuNetDetector(model, min_face=min_face, min_score=score, threads=threads)
    if chosen == "blazeface":
        from .blazeface import BlazeFaceDetector

        return BlazeFaceDetector(model, min_face=min_face, min_score=score, threads=threads)
    if model is not None:
        raise InputError(f"model={model!r} applies to the ONNX detectors (yunet, blazeface) only; drop it for "
                         f"'opencv'{fallback}")
    if threads is not None and name == "opencv":
        raise InputError("threads= applies to the ONNX detectors (ONNX Runtime) only; drop it for 'opencv'")
    if threads is not None:  # 'auto' fell back: the same call works on every install, but not silently
        from ..backends.onnxruntime_backend import MAX_THREADS  # light: onnxruntime itself is imported on use

        # Checked as ONNX Runtime's detectors check it: a call that fails where YuNet runs fails here too.
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= MAX_THREADS:
            raise InputError(f"threads={threads!r}; expected an integer from 1 to {MAX_THREADS} or None (all cores)")
        logger.warning("threads=%r is unused: detector 'auto' chose 'opencv', as %s (pip extra 'cpu' for YuNet)",
                       threads, why)
    from .opencv import OpenCVDetector

    return OpenCVDetector(min_face=min_face)  # every cascade detection scores 1.0, so min_score keeps all


def _number(value: Any) -> Optional[float]:
    """A setting as a JSON number: None where it is missing or not a number (your own detector's attributes)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    return float(value)


def detector_settings(detector: FaceDetector, margin: float) -> dict[str, Any]:
    """A detector's settings as JSON values: the ``detector`` object of ``fsrfer-demo --json`` and the
    ``detector_settings`` object of ``fsrfer-crowd --json`` (docs/crowd.md, "The JSON documents").

    Keys: ``name``; ``min_score`` (None for a detector without a score threshold: OpenCV's cascade);
    ``min_face``; ``margin`` (the crop border the caller uses, fraction of the box's side); ``threads`` (ONNX
    Runtime intra-op threads; None: its default, or no ONNX Runtime session); ``model`` (the model file's path
    for the ONNX detectors; None for OpenCV's cascade). A setting your own detector does not have is None.
    """
    threads = getattr(detector, "threads", None)
    path = getattr(detector, "path", None)
    return {"name": detector.name, "min_score": _number(getattr(detector, "min_score", None)),
            "min_face": _number(getattr(detector, "min_face", None)), "margin": float(margin),
            "threads": int(threads) if isinstance(threads, (int, np.integer)) and not isinstance(threads, bool)
            else None,
            "model": None if path is None else str(path)}


__all__ = [
    "DETECTORS",
    "MAX_FRAME_PIXELS",
    "DEFAULT_SCORES",
    "BackendUnavailable",
    "Detection",
    "DetectorClosedError",
    "FaceDetector",
    "as_rgb_frame",
    "box_iou",
    "create_detector",
    "detector_model_inputs",
    "detector_settings",
    "drop_nested",
    "nms",
    "weighted_nms",
]
