"""OpenCV Haar-cascade face detection: the fallback when ONNX Runtime (for YuNet and BlazeFace) is not installed.

Uses ``haarcascade_frontalface_default.xml`` from ``cv2.data.haarcascades`` (OpenCV 4.x wheels; BSD/Intel
licence, shipped inside OpenCV). OpenCV 5 removed the cascade classifier; with it this detector raises
BackendUnavailable and says to install ``opencv-python-headless<5`` or to use YuNet.

The cascade's smallest window is 24x24 pixels, so the frame is enlarged by ``24 / min_face`` to find
smaller faces. Cascades give no calibrated score: every detection has score 1.0, and detections come in
reading order (top to bottom, then left to right). One detector may be used from several threads: their calls
take turns (the classifier is not thread-safe).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import BackendUnavailable, InputError, ModelError, require
from .base import Detection, DetectorClosedError, FaceDetector
from .frames import resize_rgb
from .pyramid import check_number

logger = logging.getLogger(__name__)

CASCADE = "haarcascade_frontalface_default.xml"
_WINDOW = 24  # the cascade's trained window side (pixels)


class OpenCVDetector(FaceDetector):
    """Viola-Jones Haar cascade from OpenCV (frontal faces).

    Args:
        min_face: smallest face side (frame pixels) to look for; the frame is enlarged to reach it.
        scale_factor: cascade pyramid step (``detectMultiScale`` scaleFactor).
        min_neighbors: overlapping windows needed to accept a face (higher: fewer false faces).
        cascade: path of a cascade XML; None: OpenCV's frontal-face default.

    Raises:
        BackendUnavailable: OpenCV is missing, or is version 5+ without the cascade classifier.
        ModelError: the cascade file cannot be loaded.
        InputError: an option out of range.
    """

    name = "opencv"

    def __init__(self, *, min_face: float = 8.0, scale_factor: float = 1.1, min_neighbors: int = 4,
                 cascade: Optional[str] = None) -> None:
        super().__init__()
        min_face = check_number("min_face", min_face, 1.0)  # numpy numbers too, as the ONNX detectors
        scale_factor = check_number("scale_factor", scale_factor, 1.01)
        if isinstance(min_neighbors, bool) or not isinstance(min_neighbors, (int, np.integer)) or min_neighbors < 0:
            raise InputError(f"min_neighbors={min_neighbors!r}; expected an integer >= 0")
        # A CascadeClassifier keeps per-call state in the object: two threads detecting at once get each other's
        # faces. Calls on one detector take turns (each detector has its own classifier).
        self._lock = threading.Lock()
        self._cv2 = require("cv2", "crowd", "the OpenCV face detector")
        if not hasattr(self._cv2, "CascadeClassifier"):
            raise BackendUnavailable(
                f"OpenCV {getattr(self._cv2, '__version__', '?')} has no cascade classifier (OpenCV 5 removed it); "
                "install 'opencv-python-headless<5' for the OpenCV detector, or use detector='yunet'"
            )
        path = cascade or str(Path(self._cv2.data.haarcascades) / CASCADE)
        self._cascade: Any = self._cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise ModelError(f"OpenCV could not load the cascade {path}; expected a Haar cascade XML file")
        self.min_face = float(min_face)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        cv2 = self._cv2
        scale = max(1.0, _WINDOW / self.min_face)
        h, w = frame.shape[:2]
        big = resize_rgb(frame, round(h * scale), round(w * scale)) if scale > 1 else frame
        gray = cv2.equalizeHist(cv2.cvtColor(big, cv2.COLOR_RGB2GRAY))
        with self._lock:
            cascade = self._cascade
            if cascade is None:
                raise DetectorClosedError(f"this {type(self).__name__} was closed while detecting; create a new one "
                                          "to detect faces")
            found = cascade.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                             minSize=(_WINDOW, _WINDOW))
        sy, sx = h / big.shape[0], w / big.shape[1]
        rects = np.asarray(found, dtype=np.float64).reshape(-1, 4)
        # Every box scores 1.0 and OpenCV's own order varies from call to call (its threads): reading order
        # (top to bottom, then left to right) makes the same frame give the same list.
        rects = rects[np.lexsort((rects[:, 3], rects[:, 2], rects[:, 0], rects[:, 1]))]
        return [Detection((x * sx, y * sy, (x + bw) * sx, (y + bh) * sy), 1.0) for x, y, bw, bh in rects]

    def _close(self) -> None:
        with self._lock:  # after a detection in flight
            self._cascade = None

    def __repr__(self) -> str:
        return (f"OpenCVDetector(opencv={getattr(self._cv2, '__version__', '?')!r}, cascade={CASCADE!r}, "
                f"min_face={self.min_face}, min_neighbors={self.min_neighbors})")
