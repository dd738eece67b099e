"""The face-detector interface: ``detect(frame) -> list[Detection]``, ``close()``, context manager.

A detector is the plug-in point for users with their own detector: subclass :class:`FaceDetector` and
implement :meth:`FaceDetector._detect`, which receives a frame already validated and converted to
HxWx3 uint8 RGB by :meth:`FaceDetector.detect`, and returns :class:`Detection` boxes in frame pixels.
``detect`` takes the frames ``CrowdAnalyzer`` takes (:func:`as_rgb_frame`): uint8, or float in [0, 255].

Example::

    class MyDetector(FaceDetector):
        name = "mine"
        def _detect(self, frame):
            return [Detection((x0, y0, x1, y1), score) for x0, y0, x1, y1, score in my_model(frame)]
"""
from __future__ import annotations

import abc
import dataclasses
import logging
import math
from types import TracebackType
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ..errors import FsrferError, InputError
from ..preprocessing import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, to_uint8_pixels

logger = logging.getLogger(__name__)

Box = Tuple[float, float, float, float]  # typing generic: evaluated at import (Python 3.8 on JetPack 5)
#: Largest frame accepted, in pixels: the SDK's one image limit (8192 x 8192, 67 megapixels; a 48 MP photo
#: fits). The detectors tile the enlarged frame, so their memory does not grow with the frame; the frame
#: itself (200 MB as RGB at this size) and the detections do.
MAX_FRAME_PIXELS = MAX_IMAGE_PIXELS


class DetectorClosedError(FsrferError, RuntimeError):
    """A detector was used after :meth:`FaceDetector.close`."""


@dataclasses.dataclass(frozen=True)
class Detection:
    """One detected face.

    Attributes:
        box: (x0, y0, x1, y1) in frame pixels, x0 < x1 and y0 < y1, inside the frame.
        score: the detector's confidence (YuNet: sqrt(class * objectness) in [0, 1]; BlazeFace: a
            probability in [0, 1]; OpenCV cascades give no calibrated score and report 1.0).
        keypoints: optional (x, y) landmarks in frame pixels (YuNet: right eye, left eye, nose tip,
            right and left mouth corner; BlazeFace: right eye, left eye, nose tip, mouth, right ear tragion,
            left ear tragion; as seen in the image); empty if none.
    """

    box: Box
    score: float
    keypoints: tuple[tuple[float, float], ...] = dataclasses.field(default=(), compare=False, repr=False)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        """Face size in pixels: the larger side of the box."""
        return max(self.width, self.height)


def as_rgb_frame(frame: Any, what: str = "frame") -> np.ndarray:
    """Validate a frame and return it as a C-contiguous HxWx3 uint8 RGB array: the one reading of a caller's
    frame, shared by every detector's :meth:`FaceDetector.detect` and ``CrowdAnalyzer``.

    Pixels follow the SDK's one contract (:func:`fsrfer_edge.preprocessing.check_pixels`, as for
    Recognizer's faces): uint8, or float in [0, 255], rounded to uint8
    (:func:`fsrfer_edge.preprocessing.to_uint8_pixels`: an integer-valued float frame gives back the uint8
    frame it came from). A gray frame (HxW or HxWx1) is repeated into three channels; an HxWx4 frame (RGBA)
    has its alpha channel dropped unread (the pixel contract applies to the colour channels). Frames are RGB:
    convert OpenCV's BGR with ``frame[..., ::-1]``.

    Raises:
        InputError: not a numpy array; a dtype other than uint8 or float; float NaN, infinity, values outside
            [0, 255] or a float frame that looks scaled to [0, 1]; a masked array with masked pixels; an empty
            (0-pixel) frame; a frame of more than :data:`MAX_FRAME_PIXELS` pixels or with a side over
            :data:`~fsrfer_edge.preprocessing.MAX_IMAGE_SIDE`; a shape that is not HxW, HxWx1, HxWx3 or HxWx4.
    """
    if not isinstance(frame, np.ndarray):
        raise InputError(
            f"{what}: received {type(frame).__name__}; expected an HxWx3 RGB numpy array (uint8, or float in [0, 255])"
        )
    if frame.ndim == 3 and frame.shape[2] == 4:
        # The alpha channel is dropped before the pixels are checked: an opaque alpha (255, or 1.0 on a [0, 1]
        # alpha scale) would hide colours scaled to [0, 1], or make a black frame look scaled so.
        frame = frame[:, :, :3]
    frame = np.asarray(to_uint8_pixels(frame, what))  # a plain ndarray: np.matrix cannot take a channel axis
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
        raise InputError(
            f"{what}: received an array of shape {frame.shape}; expected HxWx3 RGB (HxW or HxWx1 gray and "
            "HxWx4 RGBA are converted)"
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(f"{what}: received an empty frame of shape {frame.shape}; expected at least 1x1 pixels")
    check_frame_size(frame.shape[0], frame.shape[1], what)
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.shape[2] == 1:
        frame = np.repeat(frame, 3, axis=2)
    return np.ascontiguousarray(frame)




def check_frame_size(height: int, width: int, what: str = "frame") -> None:
    """Raise InputError for a frame of more than :data:`MAX_FRAME_PIXELS` pixels or with a side longer than the
    SDK's :data:`~fsrfer_edge.preprocessing.MAX_IMAGE_SIDE` (the one image limit, as ``CrowdAnalyzer`` applies it)."""
    if height * width > MAX_FRAME_PIXELS or max(height, width) > MAX_IMAGE_SIDE:
        raise InputError(
            f"{what}: received a {width}x{height} frame ({height * width / 1e6:.1f} megapixels); the limits are "
            f"{MAX_FRAME_PIXELS / 1e6:.1f} megapixels (8192x8192) and {MAX_IMAGE_SIDE} pixels a side. Downscale it "
            "first, or cut it into parts"
        )


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise IoU of boxes (..., 4) ``a`` and ``b`` (broadcast)."""
    x0 = np.maximum(a[..., 0], b[..., 0])
    y0 = np.maximum(a[..., 1], b[..., 1])
    x1 = np.minimum(a[..., 2], b[..., 2])
    y1 = np.minimum(a[..., 3], b[..., 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection-over-union of boxes ``a`` (N, 4) and ``b`` (M, 4) as (x0, y0, x1, y1)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return _iou(a[:, None, :], b[None, :, :])


def overlapping_iou(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of boxes ``a`` (N, 4) and ``b`` (M, 4) that overlap (a positive intersection), as (rows, cols, iou) in
    row-major order: the nonzero cells of :func:`box_iou` (same values), found without the N x M matrix where the
    boxes are spread out (a crowd's faces): ``b`` sorted by left edge, each box of ``a`` meets only those that start
    within the widest box of ``b`` to its left."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    empty = np.zeros(0, dtype=np.int64)
    if not len(a) or not len(b):
        return empty, empty, np.zeros(0)
    order = np.argsort(b[:, 0], kind="stable")
    left = b[order, 0]
    reach = a[:, 0] - np.max(b[:, 2] - b[:, 0])
    lo = np.searchsorted(left, reach - 1e-9 * (np.abs(reach) + 1.0), side="left")  # a margin for rounding: a superset
    hi = np.searchsorted(left, a[:, 2], side="left")
    counts = np.maximum(hi - lo, 0)
    rows = np.repeat(np.arange(len(a)), counts)
    starts = np.repeat(lo - (np.cumsum(counts) - counts), counts)
    cols = order[starts + np.arange(len(rows))]
    keep = ((np.minimum(a[rows, 2], b[cols, 2]) > np.maximum(a[rows, 0], b[cols, 0]))
            & (np.minimum(a[rows, 3], b[cols, 3]) > np.maximum(a[rows, 1], b[cols, 1])))
    rows, cols = rows[keep], cols[keep]
    first = np.lexsort((cols, rows))
    rows, cols = rows[first], cols[first]
    iou = _iou(a[rows], b[cols])
    nonzero = iou > 0
    return rows[nonzero], cols[nonzero], iou[nonzero]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3) -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes: (N, 4) boxes (x0, y0, x1, y1), finite.
        scores: (N,) finite scores; equal scores keep their input order.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box exceeds this (0 to 1).

    Returns:
        Indices of the kept boxes, highest score first.

    Raises:
        InputError: boxes not (N, 4), not as many scores as boxes, NaN or infinite values, or a threshold
            outside 0 to 1.
    """
    return np.asarray([c[0] for c in _clusters(boxes, scores, iou_threshold)], dtype=np.int64)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3,
                 points: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """MediaPipe's weighted NMS: each kept box is the score-weighted mean of the boxes it suppresses.

    Averaging the overlapping candidates (from neighbouring anchors, tiles and pyramid levels) gives
    steadier boxes than keeping the single best one. A cluster whose scores are all 0 (possible with a
    threshold of 0) takes the plain mean.

    Args:
        boxes: (N, 4) boxes; scores: (N,) scores; points: optional (N, K, 2) keypoints averaged alike.
        iou_threshold: as :func:`nms`.

    Returns:
        (boxes (M, 4), scores (M,) of each cluster's best box, points (M, K, 2) or None), best first.

    Raises:
        InputError: as :func:`nms`, or points that are not (N, K, 2).
    """
    boxes, scores = _boxes_and_scores(boxes, scores, "weighted_nms")
    if points is not None:
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 3 or points.shape[0] != len(boxes) or points.shape[2] != 2:
            raise InputError(f"weighted_nms: received points of shape {points.shape} for {len(boxes)} boxes; "
                             f"expected ({len(boxes)}, K, 2) keypoints")
    out_b, out_s, out_p = [], [], []
    for members in _clusters(boxes, scores, iou_threshold):
        w = scores[members][:, None]
        total = w.sum()
        if not total > 0:  # every score 0: weigh the boxes equally
            w, total = np.ones_like(w), float(len(members))
        out_b.append((boxes[members] * w).sum(0) / total)
        out_s.append(scores[members[0]])
        if points is not None:
            out_p.append((points[members] * w[:, :, None]).sum(0) / total)
    merged_points = np.asarray(out_p).reshape(len(out_p), points.shape[1], 2) if points is not None else None
    return np.asarray(out_b).reshape(-1, 4), np.asarray(out_s, dtype=np.float64), merged_points


def drop_nested(boxes: np.ndarray, scores: np.ndarray, max_cover: float = 0.7) -> np.ndarray:
    """Indices of the boxes to keep once boxes lying inside a higher-scoring box are dropped.

    IoU-based NMS keeps a small box inside a big one (their IoU is small): on an enlarged frame a
    detector reports an eye or a mouth inside the face it belongs to. Faces in a crowd overlap, but one
    face does not lie within another's box.

    Args:
        boxes: (N, 4) boxes (x0, y0, x1, y1); scores: (N,) scores.
        max_cover: a box is dropped when more than this share of its area lies inside a kept,
            higher-scoring box (1 keeps every box).

    Returns:
        Indices of the kept boxes, highest score first.

    Raises:
        InputError: as :func:`nms`, or ``max_cover`` outside 0 to 1.
    """
    boxes, scores = _boxes_and_scores(boxes, scores, "drop_nested")
    max_cover = _fraction("max_cover", max_cover, "drop_nested")
    near = _Neighbours(boxes)
    is_kept = np.zeros(len(boxes), dtype=bool)
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        # Only a box overlapping box i covers a share of it above max_cover >= 0: look at those near it only.
        k = near.of(i)
        k = boxes[k[is_kept[k]]]
        if len(k):
            b = boxes[i]
            iw = np.clip(np.minimum(k[:, 2], b[2]) - np.maximum(k[:, 0], b[0]), 0, None)
            ih = np.clip(np.minimum(k[:, 3], b[3]) - np.maximum(k[:, 1], b[1]), 0, None)
            area = max((b[2] - b[0]) * (b[3] - b[1]), 1e-12)
            if ((iw * ih) / area > max_cover).any():
                continue
        is_kept[i] = True
        kept.append(int(i))
    return np.asarray(kept, dtype=np.int64)


def _fraction(name: str, value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or \
            not 0.0 <= float(value) <= 1.0:  # NaN fails the comparison too
        raise InputError(f"{where}: {name}={value!r}; expected a number from 0 to 1")
    return float(value)


def _boxes_and_scores(boxes: Any, scores: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) float64 boxes and (N,) float64 scores, checked: shapes, counts, finite values."""
    try:
        b = np.asarray(boxes, dtype=np.float64)
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: boxes and scores must be numbers ({exc}); expected (N, 4) boxes and (N,) "
                         "scores") from exc
    if b.size == 0:
        b = b.reshape(0, 4)
    elif b.shape == (4,):
        b = b.reshape(1, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise InputError(f"{where}: received boxes of shape {b.shape}; expected (N, 4) boxes (x0, y0, x1, y1)")
    if len(b) != len(s):
        raise InputError(f"{where}: received {len(b)} boxes and {len(s)} scores; expected as many of each")
    if not (np.isfinite(b).all() and np.isfinite(s).all()):
        raise InputError(f"{where}: received NaN or infinite boxes or scores; expected finite values")
    return b, s


class _Neighbours:
    """For each box, the boxes that may overlap it: those whose x0 lies within the widest box's width of its
    own, found by binary search in the boxes sorted by x0. A superset of the overlapping boxes, so NMS and
    drop_nested compute overlaps on these only and are not quadratic in the number of candidates."""

    def __init__(self, boxes: np.ndarray) -> None:
        x0, x1 = boxes[:, 0], boxes[:, 2]
        self.by_x0 = np.argsort(x0, kind="stable")
        sorted_x0 = x0[self.by_x0]
        widest = float(np.clip(x1 - x0, 0, None).max()) if len(boxes) else 0.0
        slack = 1e-9 * (1.0 + widest + (float(np.abs(boxes).max()) if len(boxes) else 0.0))  # float rounding
        self.lo = np.searchsorted(sorted_x0, x0 - widest - slack, side="left")
        self.hi = np.searchsorted(sorted_x0, x1 + slack, side="right")

    def of(self, i: int) -> np.ndarray:
        return self.by_x0[self.lo[i]:self.hi[i]]


def _clusters(boxes: Any, scores: Any, iou_threshold: float) -> list[np.ndarray]:
    """Greedy clusters: indices of each kept box followed by those it suppresses (in score order), best
    cluster first. Equal scores keep their input order."""
    boxes, scores = _boxes_and_scores(boxes, scores, "nms")
    iou_threshold = _fraction("iou_threshold", iou_threshold, "nms")
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    near = _Neighbours(boxes)
    alive = np.ones(len(boxes), dtype=bool)
    out: list[np.ndarray] = []
    for i in order:
        if not alive[i]:
            continue
        # An IoU above a threshold >= 0 needs an overlap: only the boxes near box i on the x axis can have one.
        cand = near.of(i)
        cand = cand[alive[cand] & (cand != i)]
        hit = cand[box_iou(boxes[i:i + 1], boxes[cand])[0] > iou_threshold]
        members = np.concatenate([np.asarray([i], dtype=np.int64), hit[np.argsort(rank[hit], kind="stable")]])
        alive[members] = False
        out.append(members)
    return out


def clean_detections(found: Any, frame_shape: tuple[int, ...], source: str) -> list[Detection]:
    """Check a detector's output, clip boxes to the frame and drop empty ones.

    Raises:
        InputError: the detector returned something other than a sequence of Detection with finite values.
    """
    if not isinstance(found, (list, tuple)):
        raise InputError(f"detector {source} returned {type(found).__name__}; expected a list of Detection")
    h, w = frame_shape[:2]
    out: list[Detection] = []
    for i, d in enumerate(found):
        if not isinstance(d, Detection):
            raise InputError(f"detector {source} returned item {i} of type {type(d).__name__}; expected Detection")
        try:
            vals = [float(v) for v in d.box] + [float(d.score)]
        except (TypeError, ValueError):
            vals = []
        if len(vals) != 5 or not all(math.isfinite(v) for v in vals):
            raise InputError(f"detector {source} returned box {d.box} score {d.score}; expected 4 finite "
                             "coordinates (x0, y0, x1, y1) and a finite score")
        x0, y0, x1, y1 = min(max(vals[0], 0.0), w), min(max(vals[1], 0.0), h), min(max(vals[2], 0.0), w), \
            min(max(vals[3], 0.0), h)
        if x1 - x0 < 1.0 or y1 - y0 < 1.0:
            continue  # outside the frame, inverted, or under one pixel: nothing to crop
        out.append(Detection((x0, y0, x1, y1), vals[4], _keypoints(d.keypoints, source)))
    return out


def _keypoints(points: Any, source: str) -> tuple[tuple[float, float], ...]:
    """A detection's keypoints as (x, y) float pairs (None: none).

    Raises:
        InputError: keypoints that are not (x, y) pairs of finite numbers.
    """
    if points is None:
        return ()
    try:
        pairs = tuple((float(x), float(y)) for x, y in points)
    except (TypeError, ValueError):
        pairs = ((math.nan, math.nan),)
    if not all(math.isfinite(v) for p in pairs for v in p):
        raise InputError(f"detector {source} returned keypoints {points!r}; expected (x, y) pairs of finite "
                         "numbers (or none)")
    return pairs


class FaceDetector(abc.ABC):
    """Base class of face detectors: ``detect(frame) -> list[Detection]``, ``close()``, context manager.

    Subclasses implement :meth:`_detect` (and :meth:`_close` when they own resources).

    The shipped detectors (YuNet, BlazeFace, OpenCV) may be used from several threads at once (the ONNX
    Runtime sessions are thread-safe; OpenCV's calls take turns); a detector closed while another thread
    detects makes that call raise :class:`DetectorClosedError`. A plug-in's :meth:`_detect` is called as
    the caller calls :meth:`detect`: make it thread-safe, or use it from one thread.
    """

    #: Short name recorded in results, e.g. ``"blazeface"``.
    name: str = "custom"
    #: Whether :meth:`close` was called (a class default too: a plug-in whose ``__init__`` does not call
    #: ``super().__init__()`` still works).
    _closed: bool = False

    def __init__(self) -> None:
        self._closed = False

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """Find faces in one frame.

        Args:
            frame: HxWx3 RGB, uint8 or float in [0, 255] (rounded to uint8), as ``CrowdAnalyzer`` takes it;
                HxW/HxWx1 gray and HxWx4 RGBA are converted (see :func:`as_rgb_frame`).

        Returns:
            Detections in frame pixels, clipped to the frame, highest score first. An empty list when
            there is no face.

        Raises:
            InputError: the frame is not an image this API accepts (the message says what was received).
            DetectorClosedError: the detector was closed.
        """
        if self._closed:
            raise DetectorClosedError(f"this {type(self).__name__} was closed; create a new one to detect faces")
        rgb = as_rgb_frame(frame)
        found = clean_detections(self._detect(rgb), rgb.shape, self.name)
        return sorted(found, key=lambda d: -d.score)

    @abc.abstractmethod
    def _detect(self, frame: np.ndarray) -> Sequence[Detection]:
        """Detections on a validated C-contiguous HxWx3 uint8 RGB frame (boxes in frame pixels)."""

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the detector's model; closing twice is fine."""
        if not self._closed:
            self._closed = True
            self._close()

    def _close(self) -> None:
        """Free resources (models, sessions); called once by :meth:`close`."""

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
