"""OpenCV Haar-cascade face detection: the fallback when ONNX Runtime (for YuNet and BlazeFace) is not installed.

Uses ``haarcascade_frontalface_default.xml`` from ``cv2.data.haarcascades`` (OpenCV 4.x wheels; BSD/Intel
licence, shipped inside OpenCV). OpenCV 5 removed the cascade classifier; with it this detector raises
BackendUnavailable and says to install ``opencv-python-headless<5`` or to use YuNet.

The cascade's smallest window is 24x24 pixels, so the frame is enlarged by ``24 / min_face`` to find
smaller faces. The cascade's buffers grow with the image it is given (tens of bytes a pixel, for its own
image pyramid and integral images), so the enlarged frame is planned, cut and merged as the ONNX detectors'
is (:class:`~.pyramid.PyramidDetector`): a level larger than ``max_input`` pixels a side is cut into
overlapping tiles, each cut from the **original** frame and resized on its own, so the enlarged frame never
exists as a whole and memory is bounded by the tile size, not the frame's. The tiles overlap by the largest
face their level answers for, and coarser levels (each 4 times smaller) find the larger faces, from twice the
window up (where the cascade slides its windows one scaled pixel at a time); boxes cut by a shared tile edge
are dropped, the duplicates of neighbouring tiles and levels merged by weighted NMS, and a box lying mostly
inside a larger one dropped (as the cascade's own grouping does within one pass). Every tile is
histogram-equalised with the one table of the whole enlarged frame (:func:`equalize_lut`), as the one pass
equalised it.

A frame whose enlarged size fits in one tile (640x480 at 8-px faces) is one pass, box for box as before
tiling. A tiled frame gives the same clear faces, not the same boxes to the pixel: each tile is resized on its
own and the cascade's windows start at the tile's corner, so its marginal detections come and go as they do
when the whole frame is shifted by one pixel.

Cascades give no calibrated score: every detection has score 1.0, and detections come in reading order (top
to bottom, then left to right). One detector may be used from several threads: their cascade calls take
turns (the classifier is not thread-safe).
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import BackendUnavailable, InputError, ModelError, require
from ..forking import renew_in_child
from .base import Detection, DetectorClosedError
from .pyramid import Level, PyramidDetector, check_number, round_up

logger = logging.getLogger(__name__)

CASCADE = "haarcascade_frontalface_default.xml"
_WINDOW = 24  # the cascade's trained window side (pixels)
#: The faces a level answers for start at twice the window, where the cascade slides its windows one scaled
#: pixel at a time (it steps two below that: a coarser level's faces at the window's own size would get a
#: quarter of the windows, too few neighbours, and be lost).
_FACE_PX = 2.0 * _WINDOW
_LEVEL_STEP = 4.0  # size ratio between pyramid levels
_SIZE_SLACK = 1.2  # a tiled level keeps faces up to _FACE_PX * _LEVEL_STEP * _SIZE_SLACK (230) level pixels
#: Tiles overlap by this many level pixels (PyramidDetector's rule: 1.5 level steps of the smallest face),
#: which leaves the largest face a tiled level keeps a margin for the cascade's neighbouring windows.
OVERLAP = round_up(_FACE_PX * _LEVEL_STEP * 1.5, 1)


def equalize_lut(hist: np.ndarray) -> np.ndarray:
    """The 256-entry table ``cv2.equalizeHist`` applies to an image with this grey-level histogram.

    OpenCV's own arithmetic (``imgproc/src/histogram.cpp``): the levels below the darkest present map to 0
    (they do not occur), the darkest to 0, each next one to ``round(cumulative count * 255 / (total - count
    of the darkest))`` computed in float32; an image of one level is left as it is.
    """
    hist = np.asarray(hist, dtype=np.int64).reshape(256)
    present = np.flatnonzero(hist)
    lut = np.zeros(256, dtype=np.uint8)
    if not len(present):
        return lut
    first = int(present[0])
    total = int(hist.sum())
    if hist[first] == total:  # one grey level: equalizeHist sets the image to it
        lut[first] = first
        return lut
    scale = np.float32(255.0) / np.float32(total - hist[first])
    # int * float in C++ converts the int to float32 first; saturate_cast<uchar> rounds half to even.
    cum = np.cumsum(hist[first + 1:]).astype(np.float32)
    lut[first + 1:] = np.clip(np.rint(cum * scale), 0, 255).astype(np.uint8)
    return lut


def _renew_lock(detector: "OpenCVDetector") -> None:
    detector._lock = threading.Lock()


class OpenCVDetector(PyramidDetector):
    """Viola-Jones Haar cascade from OpenCV (frontal faces), tiled as the ONNX detectors are.

    Args:
        min_face: smallest face side (frame pixels) to look for; the frame is enlarged to reach it.
        scale_factor: cascade pyramid step (``detectMultiScale`` scaleFactor).
        min_neighbors: overlapping windows needed to accept a face (higher: fewer false faces).
        cascade: path of a cascade XML (a str or path-like object); None: OpenCV's frontal-face default.
        max_input: largest image side given to the cascade (its memory grows with the tile's pixels); larger
            enlarged frames are cut into tiles of at most this side, overlapping by :data:`OVERLAP` pixels.
        iou: weighted-NMS overlap threshold when merging the boxes of overlapping tiles and levels.

    Raises:
        BackendUnavailable: OpenCV is missing, or is version 5+ without the cascade classifier.
        ModelError: the cascade file cannot be loaded.
        InputError: an option out of range.
    """

    name = "opencv"
    n_points = 0

    def __init__(self, *, min_face: float = 8.0, scale_factor: float = 1.1, min_neighbors: int = 4,
                 cascade: Optional[Union[str, "os.PathLike[str]"]] = None, max_input: int = 2048,
                 iou: float = 0.3) -> None:
        check_number("min_face", min_face, 1.0)  # numpy numbers too, as the ONNX detectors
        given = os.fspath(cascade) if isinstance(cascade, (str, os.PathLike)) else None
        if cascade is not None and not (isinstance(given, str) and given.strip()):  # "" is not OpenCV's default
            raise InputError(f"cascade={cascade!r}; expected the path of a Haar cascade XML file, or None for "
                             f"OpenCV's {CASCADE}")
        scale_factor = check_number("scale_factor", scale_factor, 1.01)
        if isinstance(min_neighbors, bool) or not isinstance(min_neighbors, (int, np.integer)) or min_neighbors < 0:
            raise InputError(f"min_neighbors={min_neighbors!r}; expected an integer >= 0")
        if isinstance(max_input, bool) or not isinstance(max_input, (int, np.integer)) or max_input < 2 * OVERLAP:
            raise InputError(f"max_input={max_input!r}; expected an integer >= {2 * OVERLAP} (twice the tiles' "
                             "overlap)")
        # The coarsest level is the first that fits in one tile: a frame whose enlarged size fits is one pass.
        super().__init__(min_score=0.0, min_face=min_face, iou=iou, max_cover=0.7, level_step=_LEVEL_STEP,
                         max_input=int(max_input), face_px=_FACE_PX, size_slack=_SIZE_SLACK,
                         size_multiple=1, coarsest=int(max_input))
        # No score threshold: every cascade box scores 1.0, and callers (the benchmark's score sweep, the demo's
        # settings) tell a detector without one by the missing attribute.
        del self.min_score
        # A CascadeClassifier keeps per-call state in the object: two threads detecting at once get each other's
        # faces. Calls on one detector take turns (each detector has its own classifier).
        self._lock = threading.Lock()
        renew_in_child(self, _renew_lock)  # a fork while a parent thread ran the cascade: a lock not held
        self._local = threading.local()  # this thread's equalisation table, for the frame it is detecting
        self._cv2 = require("cv2", "crowd", "the OpenCV face detector")
        if not hasattr(self._cv2, "CascadeClassifier"):
            raise BackendUnavailable(
                f"OpenCV {getattr(self._cv2, '__version__', '?')} has no cascade classifier (OpenCV 5 removed it); "
                "install 'opencv-python-headless<5' for the OpenCV detector, or use detector='yunet'"
            )
        path = str(Path(self._cv2.data.haarcascades) / CASCADE) if given is None else given
        if given is not None and os.path.isdir(given):  # OpenCV raises SystemError for a folder
            raise ModelError(f"cascade {given} is a directory; expected a Haar cascade XML file, e.g. "
                             f"{Path(self._cv2.data.haarcascades) / CASCADE}")
        self._cascade: Any = self._cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise ModelError(f"OpenCV could not load the cascade {path}; expected a Haar cascade XML file")
        # What __repr__ names: OpenCV's default by its file name, another cascade by the path it was given.
        self._cascade_file = CASCADE if given is None else path
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)

    def _finest_scale(self) -> float:
        return max(1.0, _WINDOW / self.min_face)  # never reduced: faces from the 24-px window up are kept

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        levels = self.plan(frame.shape[0], frame.shape[1])
        if len(levels) == 1:
            # The enlarged frame fits in one tile: one cascade pass on it, equalised on its own
            # (cv2.equalizeHist), the cascade's own grouping the only merging: as before tiling, box for box.
            self._local.lut = None
            boxes = self._run_level(frame, levels[0])[0]
            found = [Detection((float(x0), float(y0), float(x1), float(y1)), 1.0) for x0, y0, x1, y1 in boxes]
        else:
            self._local.lut = self._frame_lut(frame, levels[0])
            try:
                merged = super()._detect(frame)
            finally:
                self._local.lut = None
            found = [Detection(d.box, 1.0) for d in merged]  # the size-ordered merging scores (_network) go
        # Every box scores 1.0 and OpenCV's own order varies from call to call (its threads): reading order
        # (top to bottom, then left to right) makes the same frame give the same list.
        return sorted(found, key=lambda d: (d.box[1], d.box[0], d.box[2], d.box[3]))

    def _frame_lut(self, frame: np.ndarray, level: Level) -> np.ndarray:
        """The equalisation table of the whole enlarged grey frame (the finest level), from its histogram
        counted block by block (each block cut from the original frame and resized as the tiles are)."""
        cv2 = self._cv2
        h, w = level.size
        hist = np.zeros(256, dtype=np.int64)
        step = self.max_input
        for y in range(0, h, step):
            for x in range(0, w, step):
                block = Level(level.scale, level.size, (min(step, h - y), min(step, w - x)), ((y, x),))
                gray = cv2.cvtColor(self._tile_pixels(frame, block, y, x)[0], cv2.COLOR_RGB2GRAY)
                hist += np.bincount(gray.reshape(-1), minlength=256)
        return equalize_lut(hist)

    def _network(self, batch: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        cv2 = self._cv2
        lut = getattr(self._local, "lut", None)
        out = []
        for tile in batch:
            gray = cv2.cvtColor(np.ascontiguousarray(tile), cv2.COLOR_RGB2GRAY)
            gray = cv2.equalizeHist(gray) if lut is None else cv2.LUT(gray, lut)
            with self._lock:
                cascade = self._cascade
                if cascade is None:
                    raise DetectorClosedError(f"this {type(self).__name__} was closed while detecting; create a "
                                              "new one to detect faces")
                found = cascade.detectMultiScale(gray, scaleFactor=self.scale_factor,
                                                 minNeighbors=self.min_neighbors, minSize=(_WINDOW, _WINDOW))
            rects = np.asarray(found, dtype=np.float64).reshape(-1, 4)
            boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
            # Merging scores, larger boxes first (all near 1, so NMS's weighted means are nearly plain means):
            # a box lying mostly inside a larger one (a face found on a finer level inside one found on a
            # coarser level) is dropped, as the cascade's grouping drops small rectangles inside large ones
            # within one pass. Every detection reports 1.0 in the end.
            side = np.maximum(rects[:, 2], rects[:, 3])
            out.append((boxes, side / (side + 1.0), np.zeros((len(boxes), 0, 2))))
        return out

    def _close(self) -> None:
        with self._lock:  # after a cascade call in flight
            self._cascade = None

    def __repr__(self) -> str:
        return (f"OpenCVDetector(opencv={getattr(self._cv2, '__version__', '?')!r}, cascade={self._cascade_file!r}, "
                f"min_face={self.min_face}, min_neighbors={self.min_neighbors}, max_input={self.max_input})")
