"""Expressions of every face in a crowd frame: detect, crop, recognise all crops as one batch, summarise.

Example::

    from fsrfer_edge.crowd import CrowdAnalyzer
    with CrowdAnalyzer() as crowd:                      # shipped FER model + YuNet detector
        result = crowd.analyze("station.jpg")           # or an HxWx3 uint8 RGB array
        print(result.summary.counts, [f.label for f in result.faces])
        for r in crowd.analyze_stream("platform.mp4"):  # video file, camera index or iterable of frames
            print(r.frame_index, r.summary.counts)

Frames are RGB (convert OpenCV's BGR with ``frame[..., ::-1]``); gray HxW/HxWx1 frames are repeated
into three channels and RGBA frames lose their alpha channel (:func:`fsrfer_edge.detection.as_rgb_frame`).
Pixels follow the SDK's one contract (:func:`fsrfer_edge.preprocessing.check_pixels`, as for Recognizer's
faces): uint8, or float in [0, 255]; a float frame scaled to [0, 1] or outside [0, 255] is refused.
A frame without faces gives an empty result with zero counts.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import itertools
import logging
import math
import os
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, Generator, Iterable, Iterator, Optional, Sequence, Tuple, Union, cast

import numpy as np

from .confidence import ScoreCalibration
from .detection import Detection, FaceDetector, as_rgb_frame, create_detector
from .detection.base import clean_detections
from .detection.frames import is_image_file, read_image, require_cv2
from .detection.pyramid import check_number
from .errors import FsrferError, InputError, one_line
from .fileio import file_problem
from .forking import renew_in_child
from . import sidecars
from .groups import SUFFIX as GROUPS_SUFFIX, GroupCalibration
from .preprocessing import jpeg_frame_quality
from .recognizer import Recognizer
from .tracking import ExpressionSmoother, FaceTracker

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
Frame = Union[np.ndarray, PathLike]
Box = Tuple[float, float, float, float]  # typing generic: evaluated at import (Python 3.8 on JetPack 5)

#: Border added around each detector box, as a fraction of the box side, before the square crop goes
#: to the recogniser, per detector (``margin_sweep`` of each detector in results/crowd/bench.json).
#: BlazeFace boxes are about 0.88 times the side of a FER2013 crop, and 0.05 restores FER's framing;
#: YuNet's boxes are about the side of a FER crop already: its end-to-end accuracy peaked at 0, and with the
#: 2026-12-05 recogniser 0 and 0.05 are level over three scene seeds (docs/crowd.md, crowd_margin_seeds).
MARGINS: dict[str, float] = {"yunet": 0.0, "blazeface": 0.05, "opencv": 0.05}
#: The margin for a detector not in :data:`MARGINS` (your own).
DEFAULT_MARGIN = 0.05
#: The default detector of ``CrowdAnalyzer``, ``fsrfer-crowd`` and ``fsrfer-demo`` (with ONNX Runtime).
DEFAULT_DETECTOR = "yunet"
#: Smallest face side (pixels) the default detector searches for: the issue's crowds have 8-24 px faces.
#: Detection time grows as (1 / min_face)**2.
DEFAULT_MIN_FACE = 8.0
#: Whether ``analyze_stream`` and ``fsrfer-crowd`` on video files and cameras follow faces over frames and
#: average their answers (:mod:`fsrfer_edge.tracking`): adopted by the rule in docs/experiments.md, "A face seen
#: over several video frames" (``results/ferplus/temporal_views_val.json``). An iterable of frames is tracked only
#: when asked (``track=True``): the analyzer cannot tell consecutive frames of one video from separate photos.
DEFAULT_TRACK = True
#: Seconds :meth:`CrowdAnalyzer.close` waits for a detection or recognition running in another thread (a pipelined
#: stream's worker, say) before it returns; models still in use then are closed when that work ends, never under it.
CLOSE_WAIT_S = 10.0


def _renew_after_fork(analyzer: "CrowdAnalyzer") -> None:
    """In a forked child, which has only the thread that forked: work that other threads of the parent were doing at
    the fork (a pipelined stream's worker detecting) will never end there. The analyzer's count of such work starts
    again at 0, with a new lock (a thread of the parent may have held the old one), so close() in the child does not
    wait for threads it does not have, and closes the models it owns."""
    analyzer._idle = threading.Condition()
    analyzer._users = 0


def default_margin(detector: Any) -> float:
    """The crop margin for a detector (a :class:`FaceDetector` or its name): :data:`MARGINS`, else
    :data:`DEFAULT_MARGIN`."""
    name = detector if isinstance(detector, str) else getattr(detector, "name", "")
    return MARGINS.get(name, DEFAULT_MARGIN)


@dataclasses.dataclass(frozen=True)
class FaceResult:
    """One face of a crowd frame.

    Attributes:
        box: (x0, y0, x1, y1) detector box in frame pixels.
        score: the detector's score for the box (``det_score`` in JSON).
        size_px: face size in pixels (the larger side of the box).
        label: recognised expression, e.g. ``"happy"``.
        index: class index into ``CrowdResult.classes``.
        probs: (num_classes,) float32 class probabilities (read-only). In a tracked stream
            (``analyze_stream(track=...)``) the face's track's mean over its frames so far, which ``label`` and
            ``index`` follow.
        track_id: in a tracked stream, the face's track (the same id in every frame the face is followed
            through); None otherwise.
        frame_probs: in a tracked stream, this frame's own probabilities; None otherwise.
        detected: False for a tracked face the detector missed in this frame, recognised at its track's last box
            (``FaceTracker(coast=...)``), moved on by the face's velocity (``FaceTracker(motion=True)``, the
            default: such a box may reach past the frame's edge, by at most half its area); its ``score`` is 0.
        confidence: the chance that ``label`` is right (the recogniser's ``Prediction.confidence``: read from the
            label's probability and the crop's size); in a tracked stream, where ``label`` follows the track's mean,
            that map at the face's current frame plus the track's spread
            (:meth:`~fsrfer_edge.confidence.ScoreCalibration.track_confidence`; docs/experiments.md, "Terms per JPEG
            mark, decided on fresh clips"). None without a score calibration, and in a tracked stream whose tracker
            the calibration has no terms for (another half-life, ``aggregate="log"``).
        frame_confidence: in a tracked stream, the chance that this frame's own answer (the argmax of
            ``frame_probs``) is right, as ``confidence`` is outside tracked streams; None otherwise, and without a
            score calibration.
    """

    box: Box
    score: float
    size_px: float
    label: str
    index: int
    probs: np.ndarray = dataclasses.field(compare=False, repr=False)
    track_id: Optional[int] = None
    frame_probs: Optional[np.ndarray] = dataclasses.field(default=None, compare=False, repr=False)
    detected: bool = True
    confidence: Optional[float] = dataclasses.field(default=None, compare=False)
    frame_confidence: Optional[float] = dataclasses.field(default=None, compare=False)

    @property
    def expr_score(self) -> float:
        """The probability of the recognised expression (``probs[index]``)."""
        return float(self.probs[self.index])

    def to_dict(self, classes: Sequence[str]) -> dict[str, Any]:
        """JSON-able: ``det_score`` is the detector's confidence that the box is a face, ``expr_score``
        the probability of ``label``."""
        out = {"box": [round(v, 2) for v in self.box], "det_score": round(self.score, 4),
               "expr_score": round(self.expr_score, 4), "size_px": round(self.size_px, 2), "label": self.label,
               "index": self.index, "probs": _rounded(classes, self.probs)}
        if self.confidence is not None:
            out["confidence"] = round(self.confidence, 4)
        if self.track_id is not None:
            out["track_id"] = self.track_id
            out["detected"] = self.detected
            if self.frame_probs is not None:
                out["frame_label"] = classes[int(np.argmax(self.frame_probs))]
                out["frame_probs"] = _rounded(classes, self.frame_probs)
            if self.frame_confidence is not None:
                out["frame_confidence"] = round(self.frame_confidence, 4)
        return out


def _rounded(classes: Sequence[str], probs: np.ndarray) -> dict[str, float]:
    return {c: round(float(p), 4) for c, p in zip(classes, probs)}


@dataclasses.dataclass(frozen=True)
class CrowdSummary:
    """Group expression of a frame.

    Attributes:
        n_faces: number of faces.
        counts: faces per recognised expression (every class present, zero if none).
        mean_probs: mean probability of each class over the faces (all zeros without faces).
        shares: each expression's estimated share of the group, corrected for what the model confuses at each
            face's size (:mod:`fsrfer_edge.groups`; docs/crowd.md, "The group's expression when its faces are
            small"); None without faces or without a group calibration for the model.
    """

    n_faces: int
    counts: dict[str, int]
    mean_probs: dict[str, float]
    shares: Optional[dict[str, float]] = None

    @property
    def dominant(self) -> Optional[str]:
        """The class with the highest mean probability, or None without faces."""
        if not self.n_faces:
            return None
        return max(self.mean_probs, key=lambda c: self.mean_probs[c])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n_faces": self.n_faces, "counts": dict(self.counts), "dominant": self.dominant,
                               "mean_probs": {c: round(p, 4) for c, p in self.mean_probs.items()}}
        if self.shares is not None:
            out["shares"] = {c: round(p, 4) for c, p in self.shares.items()}
        return out


@dataclasses.dataclass(frozen=True)
class CrowdResult:
    """Faces and group summary of one frame.

    Attributes:
        faces: one :class:`FaceResult` per face, in detector order (highest score first).
        summary: counts and mean probabilities per class.
        classes: class names, in probability order.
        frame_size: (height, width) of the frame.
        frame_index: position in a stream (0 for :meth:`CrowdAnalyzer.analyze`).
        timings_ms: ``{"detect": ..., "recognize": ...}`` wall time of the two stages (detect 0 in a frame the
            detector skipped).
        detector_ran: False for a frame the detector skipped (``analyze_stream(detect_every=N)``): its faces are
            where the tracker expects them (``detected`` False).
    """

    faces: tuple[FaceResult, ...]
    summary: CrowdSummary
    classes: tuple[str, ...]
    frame_size: tuple[int, int]
    frame_index: int = 0
    timings_ms: dict[str, float] = dataclasses.field(default_factory=dict, compare=False)
    detector_ran: bool = True

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (boxes, labels, probabilities, summary, timings, whether the detector ran)."""
        return {"frame_index": self.frame_index, "frame_size": list(self.frame_size), "classes": list(self.classes),
                "faces": [f.to_dict(self.classes) for f in self.faces], "summary": self.summary.to_dict(),
                "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()}, "detector_ran": self.detector_ran}


def own_probs(faces: Sequence[FaceResult]) -> np.ndarray:
    """(N, C) each face's answer in its own frame: ``frame_probs`` for a tracked face, else ``probs`` (what the group
    shares read; their calibration was measured on single frames). A frame without faces gives (0, 0), which
    :meth:`~fsrfer_edge.groups.GroupTally.add` takes as no faces."""
    if not len(faces):
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([f.probs if f.frame_probs is None else f.frame_probs for f in faces])


def summarize(faces: Sequence[FaceResult], classes: Sequence[str], groups: Optional[GroupCalibration] = None,
              factors: Optional[Sequence[float]] = None) -> CrowdSummary:
    """Counts per recognised class and mean probability per class; with a group calibration and each face's
    down-sample factor (model input side / crop side), the group's estimated shares too. A tracked face enters
    the shares with its frame's own probabilities (the calibration was measured on single frames)."""
    counts = {c: 0 for c in classes}
    for f in faces:
        counts[f.label] += 1
    shares = None
    if faces:
        mean = np.mean(np.stack([f.probs for f in faces]), axis=0)
        mean_probs = {c: float(p) for c, p in zip(classes, mean)}
        if groups is not None and factors is not None:
            estimate = groups.estimate(own_probs(faces), np.asarray(factors, float))
            shares = {c: float(p) for c, p in zip(classes, estimate)}
    else:
        mean_probs = {c: 0.0 for c in classes}
    return CrowdSummary(len(faces), counts, mean_probs, shares)


class TrackLog:
    """Each tracked face over a whole stream: the frames it was seen in and its expression over all of them.

    Feed it every :class:`CrowdResult` of a tracked stream (``analyze_stream`` on a video or camera)::

        log = TrackLog(crowd.classes)
        for r in crowd.analyze_stream("classroom.mp4"):
            log.add(r)
        for t in log.to_list():            # one entry per person followed
            print(t["track_id"], t["frames"], t["label"])

    A track's ``probs`` is the plain mean of its frames' own probabilities (``frame_probs``), every frame alike:
    its expression over its whole appearance, not the recent mean that labels it frame by frame. Faces of an
    untracked stream (no ``track_id``) are not counted.

    Frame numbers are the log's own: for one stream they are its ``frame_index``; where results of a further
    ``analyze_stream`` call follow (a tracker carried on, its ``frame_index`` from 0 again), they go on from the last
    frame logged, so a track followed across both calls keeps ``first_frame <= last_frame``.
    """

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = tuple(classes)
        self._tracks: dict[int, dict[str, Any]] = {}
        self._offset = 0  # added to frame_index: the frames logged before the current call's first
        self._last: Optional[int] = None  # the last frame number logged

    def add(self, result: CrowdResult) -> None:
        """Count ``result``'s tracked faces (results in the order the stream gives them).

        Raises:
            InputError: ``result`` is not a :class:`CrowdResult`, or its classes are not the log's.
        """
        if not isinstance(result, CrowdResult):
            raise InputError(f"TrackLog.add received a {type(result).__name__}; expected a CrowdResult from "
                             "CrowdAnalyzer.analyze_stream")
        if tuple(result.classes) != self.classes:  # a mean over other classes would be read with the wrong names
            raise InputError(f"TrackLog.add received a result with classes {tuple(result.classes)}; expected the "
                             f"log's classes {self.classes}: make one TrackLog(analyzer.classes) per model")
        index = result.frame_index + self._offset
        if self._last is not None and index <= self._last:  # frame_index went back: the next call's results
            self._offset = self._last + 1 - result.frame_index
            index = self._last + 1
        self._last = index
        for f in result.faces:
            if f.track_id is None:
                continue
            probs = np.asarray(f.frame_probs if f.frame_probs is not None else f.probs, dtype=np.float64)
            t = self._tracks.get(f.track_id)
            if t is None:
                t = self._tracks[f.track_id] = {"first": index, "frames": 0, "coasted": 0,
                                                "sum": np.zeros(len(probs)), "size": 0.0}
            t["last"] = index
            t["frames"] += 1
            t["coasted"] += 0 if f.detected else 1
            t["sum"] = t["sum"] + probs
            t["size"] += f.size_px

    def __len__(self) -> int:
        return len(self._tracks)

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-able, one dict per track in order of first appearance: ``track_id``, ``first_frame``,
        ``last_frame``, ``frames`` (frames it was reported in, coasted ones included), ``coasted_frames`` (frames
        it was recognised in without a detection: coasted, or skipped by the detector with ``detect_every``),
        ``mean_size_px``, ``label`` and ``probs`` (the mean over its frames)."""
        out = []
        for tid, t in sorted(self._tracks.items(), key=lambda kv: (kv[1]["first"], kv[0])):
            mean = t["sum"] / t["frames"]
            out.append({"track_id": tid, "first_frame": t["first"], "last_frame": t["last"], "frames": t["frames"],
                        "coasted_frames": t["coasted"], "mean_size_px": round(t["size"] / t["frames"], 2),
                        "label": self.classes[int(np.argmax(mean))], "probs": _rounded(self.classes, mean)})
        return out


def square_box(box: Sequence[float], margin: float) -> tuple[int, int, int, int]:
    """Integer square (x0, y0, x1, y1) centred on ``box``, its side the box's larger side grown by
    ``margin`` of it on each side (at least 1 pixel); it may extend past the frame.

    Raises:
        InputError: ``margin`` is not a finite number over -0.5 (where the square would have no side left).
    """
    if isinstance(margin, (bool, np.bool_)) or not isinstance(margin, (int, float, np.integer, np.floating)) \
            or not math.isfinite(margin) or margin <= -0.5:
        raise InputError(f"margin={margin!r}; expected a finite number over -0.5 (a fraction of the box's side "
                         f"added on each side; the analyzer's range is {list(MARGIN_RANGE)})")
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(1.0, max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    s = max(1, round(side))
    return left, top, left + s, top + s


def _side(square: tuple[int, int, int, int]) -> int:
    return max(1, square[2] - square[0])


def _box_array(dets: Sequence[Detection]) -> np.ndarray:
    return np.array([d.box for d in dets], dtype=np.float64).reshape(-1, 4)


def _inside(boxes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(K,) the fraction of each (K, 4) box's area within a frame of ``shape`` (height, width)."""
    h, w = shape[0], shape[1]
    iw = np.clip(np.minimum(boxes[:, 2], w) - np.maximum(boxes[:, 0], 0), 0, None)
    ih = np.clip(np.minimum(boxes[:, 3], h) - np.maximum(boxes[:, 1], 0), 0, None)
    return iw * ih / ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))


def crop_face(frame: np.ndarray, box: Sequence[float], margin: float) -> np.ndarray:
    """The square crop around ``box`` (see :func:`square_box`); parts outside the frame repeat its edge."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = square_box(box, margin)
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        return frame[y0:y1, x0:x1]
    rows = np.clip(np.arange(y0, y1), 0, h - 1)
    cols = np.clip(np.arange(x0, x1), 0, w - 1)
    return frame[np.ix_(rows, cols)]




#: The crop margins accepted (fraction of the box side): -0.4 keeps the middle fifth of a box, 2.0 a square
#: five times its side.
MARGIN_RANGE = (-0.4, 2.0)


def check_margin(margin: Any, name: str = "margin") -> float:
    """``margin`` as a float, or InputError unless it is a number in :data:`MARGIN_RANGE` (``name``: what the
    message calls it, e.g. ``"--margin"``)."""
    return check_number(name, margin, *MARGIN_RANGE)


class CrowdAnalyzer:
    """Detect the faces of a frame and recognise all their expressions in one batch.

    Args:
        recognizer: the expression model; None: ``Recognizer(spinning=False)`` (the shipped default model;
            give yours ``spinning=False`` too: it takes turns with the detector's ONNX Runtime session).
        detector: a :class:`~fsrfer_edge.detection.FaceDetector` (yours, or from ``create_detector``);
            None: ``create_detector("auto", min_face=min_face)`` (YuNet with ONNX Runtime, at its
            default score threshold).
        margin: border added around each box before cropping, as a fraction of its side (None: the
            detector's, :func:`default_margin`).
        min_score: drop detections scoring below this (None: keep what the detector returns).
        min_size: drop faces smaller than this many pixels (larger box side); 0 keeps all.
        min_face: smallest face side (pixels) the default detector searches for; with a ``detector`` given,
            set it there (another value here is refused).
        weak_score: the default detector also returns weak detections, scoring from this up to its threshold
            (``PyramidDetector.weak_score``; None: none; one at or over that threshold is refused: it would add
            none). In a tracked stream a weak detection is kept where it
            continues a face the tracker follows (:meth:`FaceTracker.continuing`, as ByteTrack's second
            association); otherwise it is dropped. With a ``detector`` given, set its ``weak_score`` there.
        groups: the group calibration behind the summary's ``shares`` (:mod:`fsrfer_edge.groups`): ``"auto"``
            (the default) finds the model's (``NAME.groups.json`` beside it, or the shipped model's), None turns
            ``shares`` off, or a :class:`~fsrfer_edge.groups.GroupCalibration` / the path of its JSON file.

    Raises:
        InputError: an option out of range.
        ModelError / BackendUnavailable: from creating the default recogniser or detector; a group calibration
            that cannot be read or was measured on another model.

    The analyzer closes the recogniser and detector it created, not those it was given.
    """

    def __init__(self, recognizer: Optional[Recognizer] = None, detector: Optional[FaceDetector] = None, *,
                 margin: Optional[float] = None, min_score: Optional[float] = None,
                 min_size: float = 0.0, min_face: float = DEFAULT_MIN_FACE,
                 weak_score: Optional[float] = None,
                 groups: Union[str, os.PathLike[str], GroupCalibration, None] = "auto") -> None:
        if margin is not None:
            check_margin(margin)
        # scores are probabilities: a threshold over 1 would drop every face
        self.min_score = None if min_score is None else check_number("min_score", min_score, 0.0, 1.0)
        self.min_size = check_number("min_size", min_size, 0.0)
        if detector is not None and not isinstance(detector, FaceDetector):
            hint = (f"; for a detector by name use detector=create_detector({detector!r}, min_face=...) from "
                    "fsrfer_edge.detection" if isinstance(detector, str) else "")
            raise InputError(f"detector is a {type(detector).__name__}; expected a fsrfer_edge.detection.FaceDetector"
                             + hint)
        if detector is not None and min_face != DEFAULT_MIN_FACE:  # it would be ignored: the detector has its own
            raise InputError(f"min_face={min_face!r} applies to the detector the analyzer creates; the detector given "
                             f"looks for faces of its own min_face ({getattr(detector, 'min_face', '?')}): set it "
                             "there, e.g. create_detector(name, min_face=...)")
        if recognizer is not None and not isinstance(recognizer, Recognizer):
            raise InputError(f"recognizer is a {type(recognizer).__name__}; expected a fsrfer_edge.Recognizer")
        if weak_score is not None:
            check_number("weak_score", weak_score, 0.0, 1.0)
            if detector is not None:
                raise InputError("weak_score applies to the detector the analyzer creates; set weak_score on the "
                                 "detector you give (detector.weak_score = ...)")
        self._owned: list[Any] = []
        self._closed = False
        self._users = 0  # detections and recognitions running now (in any thread); close() waits for them
        self._idle = threading.Condition()
        renew_in_child(self, _renew_after_fork)
        if recognizer is None:
            recognizer = Recognizer(spinning=False)
            self._owned.append(recognizer)
        self.recognizer = recognizer
        if detector is None:
            try:
                detector = create_detector("auto", min_face=check_number("min_face", min_face, 1.0))
            except BaseException:
                self.close()
                raise
            self._owned.append(detector)
            if weak_score is not None:
                if not hasattr(detector, "weak_score") or not hasattr(detector, "min_score"):
                    self.close()
                    raise InputError(f"weak_score={weak_score}: the {detector.name} detector has no score threshold "
                                     "to go under (YuNet and BlazeFace do)")
                try:  # checked by the detector (PyramidDetector.weak_score: under its threshold, or it adds none)
                    detector.weak_score = float(weak_score)
                except BaseException:
                    self.close()
                    raise
        self.detector = detector
        self.margin = default_margin(detector) if margin is None else float(margin)
        try:
            self.groups = self._group_calibration(groups)
        except BaseException:
            self.close()
            raise

    def _group_calibration(self, groups: Union[str, os.PathLike[str], GroupCalibration, None]
                           ) -> Optional[GroupCalibration]:
        info = self.recognizer.info
        return sidecars.resolve(groups, GroupCalibration, self.recognizer.model_path, info.classes,
                                info.checkpoint_sha256, GROUPS_SUFFIX, "group calibration", "groups",
                                "python scripts/group_estimates.py --model MODEL --write-calibration MODEL.groups.json")

    @property
    def classes(self) -> tuple[str, ...]:
        return self.recognizer.classes

    def shares_interval(self, result: CrowdResult, level: float = 0.9) -> Optional[dict[str, tuple[float, float]]]:
        """How sure ``result.summary.shares`` are: per class a bootstrap interval (``GroupCalibration.interval``,
        seeded) that held the true share in about ``level`` of FER+ groups of 30 faces of mixed sizes, less when
        the faces are all 16 px or smaller (docs/crowd.md, "How sure the shares are"). Computed only when asked
        (tens of milliseconds a frame: 200 resamples). None without faces or without shares; ModelError when the
        model's calibration holds no resampled matrices; InputError when ``result`` is not a CrowdResult."""
        if not isinstance(result, CrowdResult):
            raise InputError(f"result is a {type(result).__name__}; expected the CrowdResult of this analyzer's "
                             "analyze() or analyze_stream()")
        if self.groups is None or not result.faces:
            return None
        lo, hi = self.groups.interval(own_probs(result.faces), self.factors(result.faces), level)
        return {c: (float(a), float(b)) for c, a, b in zip(result.classes, lo, hi)}

    def factors(self, faces: Sequence[FaceResult]) -> list[float]:
        """Each face's down-sample factor, as the group shares read it: the model's input side over the side of the
        square crop the analyzer cut for it (:func:`square_box` with its margin)."""
        size = self.recognizer.info.preprocessing.input_size
        return [size / _side(square_box(f.box, self.margin)) for f in faces]

    # -- one frame --------------------------------------------------------------------------
    def analyze(self, frame: Frame, boxes: Optional[Sequence[Sequence[float]]] = None) -> CrowdResult:
        """Detect and recognise the faces of one frame.

        Args:
            frame: an HxWx3 uint8 RGB array (gray and RGBA are converted) or an image file path.
            boxes: optional face boxes (x0, y0, x1, y1) to use instead of running the detector
                ("boxes in, results out": one result per box, in order); their score is 1.0. A box partly
                outside the frame is clipped to it (the result's box says where); one with nothing inside
                the frame, an inverted or empty one is refused.

        Returns:
            A :class:`CrowdResult`; no faces gives empty ``faces`` and zero counts.

        Raises:
            InputError: an unreadable file, an empty frame, wrong dtype/shape, or malformed boxes.
        """
        self._check_open()
        rgb = self._load(frame)
        t0 = time.perf_counter()
        dets = self._detect(rgb) if boxes is None else _given_boxes(boxes, rgb.shape)
        t1 = time.perf_counter()
        return self._recognize(rgb, dets, 0, (t1 - t0) * 1e3)

    def _load(self, frame: Frame) -> np.ndarray:
        if isinstance(frame, (str, os.PathLike)):
            if os.path.isfile(frame) and not is_image_file(frame):  # a video, say: one frame is an image
                raise InputError(f"{os.fspath(frame)} is not an image file (PNG/JPEG/BMP/TIFF/WebP/GIF); for a video "
                                 "file or a camera use analyze_stream(path or camera index)")
            return read_image(frame)
        return _as_frame(frame, "frame")

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        with self._using():
            # checked here too: a plug-in that overrides detect() itself, not _detect(), skips the base class's check
            dets = clean_detections(self.detector.detect(rgb), rgb.shape, self.detector.name)
        if self.min_score is not None:
            dets = [d for d in dets if d.score >= self.min_score]
        return [d for d in dets if d.size >= self.min_size]

    def _frame_is_jpeg(self, rgb: np.ndarray) -> bool:
        """Whether a frame is a decoded JPEG image (:func:`~fsrfer_edge.preprocessing.jpeg_frame_quality`), so that
        its faces' confidence (``frame_confidence`` in a tracked stream) takes the maps for compressed faces, and not
        the size estimate (compressed faces look smaller than they are); looked at only where the recognizer's
        confidence has either."""
        scores = getattr(self.recognizer, "score_calibration", None)
        return (scores is not None and (scores.jpeg_params is not None or scores.size_weights is not None)
                and jpeg_frame_quality(rgb) is not None)

    def _weak(self, dets: Sequence[Detection]) -> np.ndarray:
        """(N,) bools: the detections under the detector's threshold (its weak ones; none without weak_score)."""
        threshold = getattr(self.detector, "min_score", None)
        if getattr(self.detector, "weak_score", None) is None or threshold is None:
            return np.zeros(len(dets), dtype=bool)
        return np.array([d.score < threshold for d in dets], dtype=bool)

    def _recognize(self, rgb: np.ndarray, found: Optional[Sequence[Detection]], index: int, detect_ms: float,
                   tracker: Optional[FaceTracker] = None) -> CrowdResult:
        """Recognise ``found``'s faces (None: a frame the detector skipped, ``detect_every``; tracked only) and, with a
        tracker, those it followed and the detector missed."""
        t0 = time.perf_counter()
        faces: list[FaceResult] = []
        reads: list[tuple[Optional[float], Optional[bool]]] = []  # each face's confidence's factor and JPEG mark
        looked = found is not None
        dets: Sequence[Detection] = found if found is not None else []
        weak = self._weak(dets)
        if weak.any():  # under the detector's threshold: kept only where they continue a followed face
            strong = [d for d, w in zip(dets, weak) if not w]
            candidates = [d for d, w in zip(dets, weak) if w]
            keep = np.zeros(len(candidates), bool) if tracker is None else \
                tracker.continuing(_box_array(strong), _box_array(candidates))
            dets = strong + [d for d, k in zip(candidates, keep) if k]
            weak = np.arange(len(dets)) >= len(strong)  # the weak boxes kept, last
        detected = [True] * len(dets)
        if tracker is not None:  # tracks the detector missed here, recognised where they are expected (coast)
            extra = tracker.coasting(_box_array(dets), looked, weak)
            extra = extra[_inside(extra, rgb.shape[:2]) >= 0.5]  # a face moved (motion) out of the frame is gone
            dets = list(dets) + [Detection((float(b[0]), float(b[1]), float(b[2]), float(b[3])), 0.0) for b in extra]
            detected += [False] * len(extra)
            weak = np.concatenate([weak, np.zeros(len(extra), dtype=bool)])
        if dets:
            crops = [crop_face(rgb, d.box, self.margin) for d in dets]
            jpeg = self._frame_is_jpeg(rgb)  # its faces are compressed, off the crops' own grid
            with self._using():
                preds = self.recognizer.predict(crops, jpeg=True) if jpeg else self.recognizer.predict(crops)
            faces = [FaceResult(tuple(d.box), d.score, d.size, p.label, p.index, p.probs,  # type: ignore[arg-type]
                                confidence=p.confidence) for d, p in zip(dets, preds)]
            reads = [(p.factor, p.jpeg) for p in preds]
        if tracker is not None:
            faces = _tracked(faces, detected, tracker, self.classes, looked, weak,
                             self.recognizer.score_calibration, reads)
        ms = (time.perf_counter() - t0) * 1e3
        classes = self.classes
        factors = self.factors(faces) if self.groups is not None else None
        return CrowdResult(tuple(faces), summarize(faces, classes, self.groups, factors), classes,
                           (rgb.shape[0], rgb.shape[1]), index, {"detect": detect_ms, "recognize": ms}, looked)

    # -- streams ----------------------------------------------------------------------------
    def analyze_stream(self, source: Union[PathLike, int, Iterable[np.ndarray]], *, pipeline: bool = False,
                       max_frames: Optional[int] = None, track: Union[bool, FaceTracker, None] = None,
                       detect_every: int = 1) -> Iterator[CrowdResult]:
        """Analyse the frames of a video file, a camera or an iterable of frames, in order.

        With ``track`` each face is followed from frame to frame (:class:`~fsrfer_edge.tracking.FaceTracker`):
        its result's ``track_id`` names its track, and its ``probs``, ``label`` and the frame's summary are the
        track's weighted mean over its frames so far (``frame_probs``: this frame's own answer). A small face
        is seen at another sub-pixel position in every frame, and the mean is right more often than one frame
        (docs/experiments.md, "A face seen over several video frames"). ``True`` makes a new
        ``FaceTracker()`` for this stream; pass your own to set its half-life and matching, or to carry
        tracks from one call to the next (its tracks go on into the next call's first frame: call its
        ``reset()`` before an unrelated video, and do not share one tracker between streams read at the same
        time). None (the default) tracks a video file or a camera (a path, a camera index, or an opened
        :class:`VideoFrames`; :data:`DEFAULT_TRACK`), not another iterable of frames, which may be separate
        photos: pass ``track=True`` for your own video's frames. Tracks are matched by box position, so the frames
        of a tracked stream (and of the calls a carried tracker goes on into) should share one size: a change of
        size is not refused (a clip cropped on the fly may be valid) but logs a warning, once per stream (a carried
        tracker's stream lasts until its ``reset()``; later changes are logged at DEBUG).

        With ``pipeline`` the detection of frame t+1 runs in a worker thread while frame t is recognised
        (both ONNX Runtime and TensorRT release the GIL), so a frame costs about max(detect, recognise)
        instead of their sum, but only where the two find free cores (a GPU recogniser, or sessions given
        ``threads`` that split the cores). It is off by default: on the 2-core CPU of the crowd benchmark
        both sessions want both cores, and the pipelined stream was slower than frame by frame
        (``speed`` in ``results/crowd/bench.json``).

        With ``detect_every=N`` (tracked streams only) the detector looks at the first two frames (so that the
        tracker knows how each face moves), then at every N-th frame (frames 0, 1, 1 + N, 1 + 2N, ...); in the
        frames between, each face the tracker follows is recognised where it expects the face
        (:meth:`FaceTracker.coasting`: its last box moved on by its velocity), as DeepStream's detector ``interval``
        does: every face the last detector pass gave (found, or coasted) is recognised again, and a track's
        ``coast`` and ``max_missed`` count detector passes. Detection is most of a frame's time on a CPU, so frames
        come faster, at a cost in accuracy on moving crowds (docs/crowd.md, "Detecting every N-th frame"). The
        count starts again at each call: a tracker carried from one call to the next sees detector passes at each
        call's first two frames.

        Args:
            source: a video file path, a camera index (int, OpenCV), or an iterable of RGB frames.
            pipeline: overlap detection and recognition of consecutive frames (see above).
            max_frames: stop after this many frames (None: until the source ends).
            track: True (or a :class:`~fsrfer_edge.tracking.FaceTracker`) follows faces and averages their
                answers over frames (see above); False: every frame alone; None: :data:`DEFAULT_TRACK` for a video
                file or camera, off for another iterable. NumPy bools are taken as bools.
            detect_every: run the detector on the first two frames, then on every this many frames (>= 1: 1, the
                default, every frame; more than 1 needs tracking).

        Yields:
            One :class:`CrowdResult` per frame, ``frame_index`` counting from 0. A video file that ends far
            short of the frame count in its header (a truncated copy) logs a warning (:class:`VideoFrames`).

        Raises:
            InputError: the video or camera cannot be opened, yields no frame, or a frame is invalid; ``track``
                is none of the above; ``detect_every`` is not an integer >= 1, or more than 1 without tracking.
                The options (``pipeline`` not a bool, ``max_frames`` not an integer >= 1) and the type of ``source``
                are checked at this call; a video or camera is opened, and frames are read, at the first frame.
            BackendClosedError: the analyzer was closed, also between two frames of a stream started before.
            BackendUnavailable: OpenCV is needed for video files and cameras (pip extra ``crowd``).
            FsrferError: a pipelined stream is read on in a process forked after it started (its worker thread
                stayed in the parent): start a new stream there.
        """
        self._check_open()
        if not isinstance(pipeline, (bool, np.bool_)):
            raise InputError(f"pipeline={pipeline!r}; expected True or False")
        _check_max_frames(max_frames)
        _check_source(source)  # its type; a video or camera is opened at the first frame
        if track is None:
            track = DEFAULT_TRACK and _is_video(source)
        tracker = _tracker(track)
        if isinstance(detect_every, bool) or not isinstance(detect_every, (int, np.integer)) or detect_every < 1:
            raise InputError(f"detect_every={detect_every!r}; expected an integer >= 1 (1: every frame)")
        if detect_every > 1 and tracker is None:
            raise InputError(f"detect_every={detect_every} needs tracking: the frames the detector skips are answered "
                             "where the tracker expects each face; pass track=True (or a FaceTracker)")
        return self._stream(source, bool(pipeline), max_frames, tracker, int(detect_every))

    def _stream(self, source: Union[PathLike, int, Iterable[np.ndarray]], pipeline: bool,
                max_frames: Optional[int], tracker: Optional[FaceTracker],
                detect_every: int = 1) -> Generator[CrowdResult, None, None]:
        _check_max_frames(max_frames)
        opened = iter_frames(source)
        try:  # a video or camera opened here is released when the stream ends, is abandoned or raises
            yield from self._stream_frames(opened, pipeline, max_frames, tracker, detect_every)
        finally:
            if isinstance(opened, VideoFrames):
                opened.close()

    def _stream_frames(self, frames: Iterator[np.ndarray], pipeline: bool, max_frames: Optional[int],
                       tracker: Optional[FaceTracker], detect_every: int) -> Generator[CrowdResult, None, None]:
        if max_frames is not None:
            frames = itertools.islice(frames, int(max_frames))
        sizes = _FrameSizeWatch(tracker)
        if not pipeline:
            for i, rgb in enumerate(frames):
                self._check_open()  # close() between two frames of a stream started before it
                dets, detect_ms = self._timed_detect(rgb) if _detects(i, detect_every) else (None, 0.0)
                sizes.see(rgb)
                yield self._recognize(rgb, dets, i, detect_ms, tracker)
            return
        started_in = os.getpid()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsrfer-detect") as pool:
            current = next(frames, None)
            if current is None:
                return
            def submit(i: int, frame: np.ndarray) -> Optional[concurrent.futures.Future]:
                return pool.submit(self._timed_detect, frame) if _detects(i, detect_every) else None  # None: skipped

            pending = submit(0, current)
            for i in itertools.count():
                self._check_open()  # close() between two frames of a stream started before it
                if os.getpid() != started_in:
                    raise _forked_stream(started_in)
                failed: Optional[Exception] = None
                try:
                    upcoming = next(frames, None)
                except Exception as exc:  # a source that fails at frame t+1: frame t is still answered first,
                    failed, upcoming = exc, None  # as frame by frame does
                dets, detect_ms = pending.result() if pending is not None else (None, 0.0)
                if upcoming is not None:
                    pending = submit(i + 1, upcoming)
                sizes.see(current)
                yield self._recognize(current, dets, i, detect_ms, tracker)
                if failed is not None:
                    raise failed
                if upcoming is None:
                    return
                current = upcoming

    def _timed_detect(self, rgb: np.ndarray) -> tuple[list[Detection], float]:
        t0 = time.perf_counter()
        return self._detect(rgb), (time.perf_counter() - t0) * 1e3

    # -- lifetime ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the recogniser and detector this analyzer created (not ones it was given); closing twice is
        fine. A closed analyzer refuses further work, also the next frame of a stream started before (it raises
        BackendClosedError). Safe from another thread: a detection or recognition running then (a pipelined stream's
        worker detecting the next frame, say) is waited for, up to :data:`CLOSE_WAIT_S` seconds; one that outlasts
        that closes the models itself when it ends, so that no model is closed while in use."""
        with self._idle:
            self._closed = True
            if self._owned and not self._idle.wait_for(lambda: self._users == 0, CLOSE_WAIT_S):
                logger.warning("CrowdAnalyzer.close(): a detection or recognition is still running after %g s; its "
                               "models will be closed when it ends", CLOSE_WAIT_S)
                return
        self._close_owned()

    def _close_owned(self) -> None:
        """Close the models this analyzer created, once none is in use (each closed once, by one thread)."""
        while True:
            with self._idle:
                if self._users or not self._owned:
                    return
                model = self._owned.pop()
            model.close()

    @contextlib.contextmanager
    def _using(self) -> Iterator[None]:
        """Hold the models open for one detection or recognition (BackendClosedError once closed)."""
        with self._idle:
            self._check_open()
            self._users += 1
        try:
            yield
        finally:
            with self._idle:
                self._users -= 1
                self._idle.notify_all()
                last = self._closed and not self._users
            if last:  # close() was called meanwhile: it waited for this work, or left the closing to it
                self._close_owned()

    def _check_open(self) -> None:
        if self._closed:
            from .backends.base import BackendClosedError

            raise BackendClosedError("this CrowdAnalyzer was closed; create a new one to analyse frames")

    def __enter__(self) -> "CrowdAnalyzer":
        self._check_open()
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CrowdAnalyzer(recognizer={self.recognizer!r}, detector={self.detector!r}, margin={self.margin})"


def _forked_stream(started_in: int) -> FsrferError:
    """The error for a pipelined stream, started in process ``started_in``, read on in this process, a fork of it:
    its detection worker thread stayed in the parent, and the child would wait for ever for its next detection."""
    return FsrferError(
        f"this pipelined stream was started in process {started_in}, and this process ({os.getpid()}) is a fork of "
        "it: its detection worker thread stayed in the parent, so its next frame would never come. Start a new "
        "stream in this process (analyzer.analyze_stream(...)), or read the stream in the parent only"
    )


class _FrameSizeWatch:
    """Logs one warning per stream the first time the frame size changes in a tracked stream (within it, or from
    the last frame a carried tracker saw while it still has tracks): tracks are matched by box position, which
    means another place in a frame of another geometry, so one face may continue another's track. Not refused: a
    clip cropped on the fly may be valid.

    A carried tracker is one stream across calls until its ``reset()``: an app that feeds it a frame per call, from
    a source whose size keeps changing, is warned once, not at every frame (later changes are logged at DEBUG)."""

    def __init__(self, tracker: Optional[FaceTracker]) -> None:
        self._tracker = tracker
        self._size = tracker.frame_size if tracker is not None and tracker.n_tracks else None
        if tracker is not None and tracker.frame_size is None:  # made or reset: a new stream
            _SIZE_WARNED.discard(tracker)

    def see(self, rgb: np.ndarray) -> None:
        if self._tracker is None:
            return
        size = (int(rgb.shape[0]), int(rgb.shape[1]))
        if self._size is not None and size != self._size:
            if self._tracker not in _SIZE_WARNED:
                _SIZE_WARNED.add(self._tracker)
                logger.warning("frame size changed from %dx%d to %dx%d (height x width) in a tracked stream: tracks "
                               "are matched by position, so a face may continue another face's track; pass "
                               "track=False or start a new stream (a new FaceTracker, or its reset()) for frames of "
                               "another size (further changes in this stream are logged at DEBUG)", *self._size, *size)
            else:
                logger.debug("frame size changed from %dx%d to %dx%d (height x width) in a tracked stream",
                             *self._size, *size)
        self._size = self._tracker.frame_size = size


#: The trackers whose stream has had its frame size warning (:class:`_FrameSizeWatch`); one leaves when it is
#: reset (its ``frame_size`` None again) or collected.
_SIZE_WARNED: "weakref.WeakSet[FaceTracker]" = weakref.WeakSet()


def _check_max_frames(max_frames: Any) -> None:
    if max_frames is not None:
        if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) or max_frames < 1:
            raise InputError(f"max_frames={max_frames!r}; expected an integer >= 1 (None: until the source ends)")


def _opens_video(source: Any) -> bool:
    """Whether a stream's ``source`` is a video path or a camera index (opened by :func:`video_frames`)."""
    return isinstance(source, (str, os.PathLike)) or (isinstance(source, (int, np.integer))
                                                      and not isinstance(source, bool))


def _check_camera(source: Any) -> int:
    """A camera index as an int, or InputError: OpenCV's -1 ("any camera") crashes OpenCV 4.x (SIGSEGV) on a machine
    without a camera, and other negative indices name none."""
    if isinstance(source, (bool, np.bool_)) or not isinstance(source, (int, np.integer)) or source < 0:
        raise InputError(f"source={source!r}; expected a video file path or a camera index (an integer >= 0: 0 is "
                         "the first camera)")
    return int(source)


def _check_source(source: Any) -> None:
    """InputError for a stream source that is none of a video path, a camera index or an iterable of frames."""
    if _opens_video(source):
        if not isinstance(source, (str, os.PathLike)):
            _check_camera(source)
        return
    if isinstance(source, np.ndarray):
        raise InputError("analyze_stream received one array; pass a list of frames, or use analyze() for one frame")
    if not isinstance(source, Iterable):
        raise InputError(f"source is a {type(source).__name__}; expected a video path, a camera index or an "
                         "iterable of HxWx3 uint8 frames")


def _detects(index: int, every: int) -> bool:
    """Whether ``analyze_stream(detect_every=every)`` runs the detector on frame ``index`` of a call: the first two
    frames (each face's velocity), then every ``every``-th."""
    return every == 1 or index < 2 or (index - 1) % every == 0


def _is_video(source: Any) -> bool:
    """Whether a stream's ``source`` is a video file or a camera (a path, a camera index, an opened video),
    whose frames follow one another; an other iterable may hold separate photos."""
    if isinstance(source, (bool, np.bool_)):
        return False
    return isinstance(source, (str, os.PathLike, int, np.integer, VideoFrames))


def _tracker(track: Any) -> Optional[FaceTracker]:
    if isinstance(track, FaceTracker):
        return track
    if isinstance(track, (bool, np.bool_)):
        return FaceTracker() if track else None
    raise InputError(f"track={track!r}; expected True, False, None (the default: tracked for a video file or "
                     "camera) or a fsrfer_edge.tracking.FaceTracker")


def _tracked(faces: list[FaceResult], detected: list[bool], tracker: FaceTracker,
             classes: Sequence[str], looked: bool = True, weak: Optional[np.ndarray] = None,
             calibration: Optional[ScoreCalibration] = None,
             reads: Sequence[tuple[Optional[float], Optional[bool]]] = ()) -> list[FaceResult]:
    """``faces`` with their track ids and their tracks' mean probabilities (``tracker.update``); the label and
    index follow the mean, ``frame_probs`` keeps the frame's own, ``detected`` says which the detector found.
    ``confidence``: from the track's mean and spread (:meth:`ScoreCalibration.track_confidence`, at each face's
    current frame's factor and JPEG mark, ``reads``) where ``calibration`` has terms for this tracker's half-life
    (averaging probabilities); else None."""
    if not faces:
        tracker.update(np.zeros((0, 4)), np.zeros((0, len(classes))), looked=looked)
        return faces
    ids, mean = tracker.update(np.array([f.box for f in faces]), np.stack([f.probs for f in faces]), detected,
                               np.array([f.score for f in faces]), looked=looked, weak=weak)
    shown = tracker.reported(ids)  # faces of tracks not yet confirmed are tracked but not reported
    conf: list[Optional[float]] = [None] * len(faces)
    if calibration is not None and tracker_confidence_applies(calibration, tracker) and len(reads) == len(faces) \
            and all(r[0] is not None for r in reads) and tracker.spread is not None:
        conf = [float(c) for c in calibration.track_confidence(
            mean, tracker.spread, [r[0] for r in reads], [bool(r[1]) for r in reads])]
    out = []
    for f, i, m, found, show, c in zip(faces, ids, mean, detected, shown, conf):
        if not show:
            continue
        m.setflags(write=False)
        k = int(np.argmax(m))
        out.append(dataclasses.replace(f, label=classes[k], index=k, probs=m, track_id=int(i), frame_probs=f.probs,
                                       detected=found, confidence=c, frame_confidence=f.confidence))
    return out


def tracker_confidence_applies(calibration: Optional[ScoreCalibration],
                               tracker: Union[FaceTracker, ExpressionSmoother]) -> bool:
    """Whether tracked faces get a ``confidence``: the calibration has terms for tracks
    (:attr:`~fsrfer_edge.confidence.ScoreCalibration.track_params`) fitted for this tracker's half-life, and the
    tracker averages probabilities (the terms were fitted so)."""
    return (calibration is not None and calibration.track_params is not None and tracker.aggregate == "probs"
            and calibration.track_half_life is not None
            and math.isclose(tracker.half_life, calibration.track_half_life))


def _given_boxes(boxes: Sequence[Sequence[float]], shape: tuple[int, ...]) -> list[Detection]:
    """The caller's boxes as detections, one per box and in order (clipped to the frame), or InputError."""
    expected = "expected N boxes of 4 finite numbers (x0, y0, x1, y1) in frame pixels, e.g. [(10, 20, 58, 68)]"
    if not isinstance(boxes, (list, tuple, np.ndarray)):
        raise InputError(f"boxes is a {type(boxes).__name__}; {expected} as a list, tuple or (N, 4) array")
    odd = _not_a_number(boxes)
    if odd is not None:  # numpy would read "28" as 28.0 and True as 1.0
        raise InputError(f"boxes could not be read as numbers: they hold a {type(odd).__name__} ({odd!r}); {expected}")
    try:
        arr = np.asarray(boxes, dtype=np.float64) if len(boxes) else np.zeros((0, 4))
    except (TypeError, ValueError) as exc:
        raise InputError(f"boxes could not be read as numbers ({one_line(exc)[:120]}); {expected}") from exc
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InputError(f"boxes has shape {arr.shape}; {expected}")
    h, w = shape[:2]
    for i, (x0, y0, x1, y1) in enumerate(arr.tolist()):
        if not all(np.isfinite((x0, y0, x1, y1))):
            raise InputError(f"box {i} is {(x0, y0, x1, y1)}; {expected}")
        if x1 <= x0 or y1 <= y0:
            raise InputError(f"box {i} is {(x0, y0, x1, y1)}: inverted or empty; expected x1 > x0 and y1 > y0")
        if min(x1, w) - max(x0, 0.0) < 1.0 or min(y1, h) - max(y0, 0.0) < 1.0:
            raise InputError(f"box {i} is {(x0, y0, x1, y1)}: less than a pixel of it lies in the {w}x{h} frame")
    return clean_detections([Detection((b[0], b[1], b[2], b[3]), 1.0) for b in arr], shape, "boxes=")


def _not_a_number(boxes: Sequence[Any]) -> Any:
    """The first value of ``boxes`` that is a bool, a string or bytes (None: none is); other shapes and types are
    left to the reading as numbers."""
    for box in boxes:
        values = box.tolist() if isinstance(box, np.ndarray) else box
        for v in values if isinstance(values, (list, tuple)) else (values,):
            if isinstance(v, (bool, np.bool_, str, bytes)):
                return v
    return None


def iter_frames(source: Union[PathLike, int, Iterable[np.ndarray]]) -> Iterator[np.ndarray]:
    """RGB uint8 frames from a video file, a camera index or an iterable of frames.

    Raises:
        InputError: the video/camera cannot be opened or yields no frame; a frame is invalid.
        BackendUnavailable: OpenCV is missing (needed for files and cameras).
    """
    if _opens_video(source):
        return video_frames(cast(Union[PathLike, int], source))
    _check_source(source)
    return (_as_frame(f, f"frame {i}") for i, f in enumerate(cast(Iterable[np.ndarray], source)))


def _as_frame(frame: Any, what: str) -> np.ndarray:
    """A caller's frame under the SDK's pixel contract (as Recognizer's faces): uint8, or float in [0, 255]
    (rounded to uint8 for the detector); see :func:`fsrfer_edge.preprocessing.check_pixels`."""
    return as_rgb_frame(frame, what=what)


#: A video file is reported as truncated when more than this fraction of the frames its header announces (and
#: at least two) did not decode: headers of intact files may miscount by a frame, a cut download loses far more.
TRUNCATED_FRACTION = 0.1


class VideoFrames(Iterator[np.ndarray]):
    """The RGB uint8 frames of a video file or a camera, read one at a time (:func:`video_frames`).

    Attributes:
        what: ``"video PATH"`` or ``"camera N"``, for messages.
        fps: the frame rate OpenCV reports (0.0 when unknown).
        frame_size: (height, width) of the first frame, read on opening.
        frames_in_header: the frame count in a video file's header (None for a camera, or when unknown).
        decoded: the frames read so far.
        truncated: whether a video file ended short of ``frames_in_header`` by more than
            :data:`TRUNCATED_FRACTION` (a warning is logged then); known once the last frame was read.
    """

    def __init__(self, cap: Any, first: np.ndarray, what: str, fps: float, frames_in_header: Optional[int]) -> None:
        self.what = what
        self.fps = fps
        self.frames_in_header = frames_in_header
        self.decoded = 0
        self.truncated = False
        self._cap = cap
        self._frames = self._generate(cap, self._rgb(first))
        self.frame_size = (first.shape[0], first.shape[1])

    def __next__(self) -> np.ndarray:
        return next(self._frames)

    def close(self) -> None:
        """Stop reading and release the file or camera (also done when the last frame was read)."""
        self._frames.close()
        self._cap.release()

    def _rgb(self, frame: np.ndarray) -> np.ndarray:
        # BGR or BGRA (a camera's frames may come with an alpha channel) to RGB
        return as_rgb_frame(np.ascontiguousarray(frame[:, :, 2::-1]) if frame.ndim == 3 else frame, what=self.what)

    def _generate(self, cap: Any, first: np.ndarray) -> Generator[np.ndarray, None, None]:
        frame = first
        try:
            while True:
                self.decoded += 1
                yield frame
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    self._check_length()
                    return
                frame = self._rgb(bgr)
        finally:
            cap.release()

    def _check_length(self) -> None:
        expected = self.frames_in_header
        if expected is None:
            return
        missing = expected - self.decoded
        self.truncated = missing >= 2 and missing > TRUNCATED_FRACTION * expected
        if self.truncated:
            logger.warning("%s: only %d of the %d frames its header announces could be decoded; the file looks "
                           "truncated or damaged, and the results cover those %d frames", self.what, self.decoded,
                           expected, self.decoded)


def video_frames(source: Union[PathLike, int]) -> VideoFrames:
    """Open a video file or a camera index (OpenCV) and read its first frame.

    Raises:
        InputError: the file does not exist, ``source`` is neither a path nor a camera index >= 0, or the
            video/camera cannot be opened or yields no frame.
        BackendUnavailable: OpenCV is missing (pip extra ``crowd``).
    """
    index = None if isinstance(source, (str, os.PathLike)) else _check_camera(source)  # before OpenCV is asked
    cv2 = require_cv2("reading video files and cameras")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        problem = file_problem(path)
        if problem:  # missing, a folder, a FIFO...
            raise InputError(f"video file {path} {problem}; expected a readable video such as an .mp4")
        what = f"video {path}"
        cap = cv2.VideoCapture(str(path))
    else:
        what = f"camera {index}"
        cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        cap.release()
        raise InputError(f"{what} could not be opened by OpenCV; expected a readable video file or a connected camera")
    ok, first = cap.read()
    if not ok or first is None:
        cap.release()
        raise InputError(f"{what} yielded no frame; the file may be corrupt or in a format this OpenCV cannot decode")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
    in_header = int(count) if isinstance(source, (str, os.PathLike)) and math.isfinite(count) and count > 0 else None
    try:
        return VideoFrames(cap, first, what, fps, in_header)
    except BaseException:
        cap.release()
        raise
