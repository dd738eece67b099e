"""Face detectors for crowd frames: ``create_detector(name).detect(frame) -> list[Detection]``.

- ``"blazeface"``: MediaPipe BlazeFace converted to ONNX (shipped), on ONNX Runtime, with an image
  pyramid for faces down to ``min_face`` pixels (:mod:`.blazeface`).
- ``"opencv"``: OpenCV's Haar cascade (:mod:`.opencv`), the fallback without ONNX Runtime.
- ``"auto"``: BlazeFace when ONNX Runtime can be imported, else OpenCV.

Your own detector: subclass :class:`FaceDetector` and implement ``_detect(frame)`` (see :mod:`.base`).
Importing this package needs numpy only.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from typing import Optional, Union

from ..errors import BackendUnavailable, InputError
from .base import (
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
DETECTORS: tuple[str, ...] = ("auto", "blazeface", "opencv")

PathLike = Union[str, "os.PathLike[str]"]


def create_detector(name: str = "auto", *, min_face: float = 8.0, min_score: Optional[float] = None,
                    model: Optional[PathLike] = None, threads: Optional[int] = None) -> FaceDetector:
    """Create a face detector by name.

    Args:
        name: ``"auto"`` (BlazeFace if onnxruntime is installed, else OpenCV), ``"blazeface"`` or ``"opencv"``.
        min_face: smallest face side in frame pixels to look for (smaller costs more time).
        min_score: detection threshold (BlazeFace probability; None: 0.5). OpenCV cascades score every
            detection 1.0, so it keeps them all.
        model: BlazeFace ``.onnx`` (None: the shipped model); an error with ``"opencv"``.
        threads: ONNX Runtime intra-op threads for BlazeFace (None: its default); an error with
            ``"opencv"``, unused when ``"auto"`` falls back to OpenCV.

    Returns:
        A :class:`FaceDetector` (close it, or use it as a context manager).

    Raises:
        InputError: an unknown name, or options the chosen detector does not take.
        BackendUnavailable: the detector's library is missing (the message names the pip extra).
        ModelError: the detector's model cannot be loaded.
    """
    if not isinstance(name, str) or name not in DETECTORS:
        raise InputError(f"detector={name!r}; expected one of {DETECTORS}")
    chosen = name
    if name == "auto":
        chosen = "blazeface" if importlib.util.find_spec("onnxruntime") is not None else "opencv"
        logger.info("detector 'auto' chose %s", chosen)
    if chosen == "blazeface":
        from .blazeface import BlazeFaceDetector

        return BlazeFaceDetector(model, min_face=min_face, min_score=0.5 if min_score is None else min_score,
                                 threads=threads)
    if model is not None:
        raise InputError(f"model={model!r} applies to the BlazeFace detector only; drop it for 'opencv'")
    if threads is not None and name == "opencv":
        raise InputError("threads= applies to the BlazeFace detector (ONNX Runtime) only; drop it for 'opencv'")
    from .opencv import OpenCVDetector

    return OpenCVDetector(min_face=min_face)  # every cascade detection scores 1.0, so min_score keeps all


__all__ = [
    "DETECTORS",
    "BackendUnavailable",
    "Detection",
    "DetectorClosedError",
    "FaceDetector",
    "as_rgb_frame",
    "box_iou",
    "create_detector",
    "drop_nested",
    "nms",
    "weighted_nms",
]
