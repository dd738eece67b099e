"""Small faces with a fixed-size network: an enlarged frame, coarser levels, tiles, merged boxes.

A convolutional face detector finds faces from about ``face_px`` network pixels up. To find faces of
``min_face`` frame pixels, :class:`PyramidDetector` runs the network on the frame enlarged by
``face_px / min_face``; coarser levels (each ``level_step`` times smaller) find the larger faces. A level
larger than ``max_input`` pixels a side is cut into overlapping tiles, and each tile is cut from the
**original** frame and resized on its own, so memory stays bounded by the tile size however large the
frame (a 48-megapixel photo enlarged 3x would be 1.3 GB as one array). Detections of all levels and tiles
are merged by weighted NMS, and boxes lying inside a higher-scoring box are dropped.

Subclasses (:class:`~.blazeface.BlazeFaceDetector`, :class:`~.yunet.YuNetDetector`, and OpenCV's cascade
:class:`~.opencv.OpenCVDetector`) implement :meth:`PyramidDetector._network`: a batch of uint8 RGB tiles in,
boxes, scores and keypoints out.
"""
from __future__ import annotations

import abc
import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import InputError, ModelError
from ..fileio import file_problem
from ..forking import leave_to_parent
from .base import (Detection, DetectorClosedError, FaceDetector, box_iou, check_frame_size, drop_nested,
                   weighted_nms)
from .frames import resize_rgb


@dataclasses.dataclass(frozen=True)
class Level:
    """One pyramid level: the frame resized by ``scale`` to ``size`` (h, w), run as ``tiles`` of ``tile`` (h, w).

    ``tiles`` holds the (y, x) offset of each tile in the resized (and zero-padded) frame.
    """

    scale: float
    size: tuple[int, int]
    tile: tuple[int, int]
    tiles: tuple[tuple[int, int], ...]

    @property
    def pixels(self) -> int:
        """Network input pixels this level costs (what the run time grows with)."""
        return self.tile[0] * self.tile[1] * len(self.tiles)


def round_up(n: float, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def split(length: int, max_tile: int, overlap: int, multiple: int) -> tuple[int, list[int]]:
    """Tile side and offsets covering ``length`` with the fewest, evenly spread tiles of at most ``max_tile``
    that overlap by at least ``overlap`` (tile sides are multiples of ``multiple``)."""
    if length <= max_tile:
        return length, [0]
    n = math.ceil((length - overlap) / (max_tile - overlap))
    tile = min(max_tile, round_up(math.ceil((length + (n - 1) * overlap) / n), multiple))
    return tile, [round(i * (length - tile) / (n - 1)) for i in range(n)]


def check_number(name: str, value: Any, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or \
            not math.isfinite(float(value)) or not low <= float(value) <= high:
        raise InputError(f"{name}={value!r}; expected a finite number "
                         + (f"in [{low}, {high}]" if math.isfinite(high) else f">= {low}"))
    return float(value)


_EDGE = 2.0  # network pixels: a box this close to a tile edge shared with another tile is cut by it
#: The finest level keeps boxes down to this share of ``face_px``, i.e. half of ``min_face`` frame pixels.
FINEST_FLOOR = 0.5


class PyramidDetector(FaceDetector):
    """Base of the ONNX detectors: pyramid planning, tiling from the original frame, merging.

    Args:
        min_score: keep detections scoring at least this.
        min_face: smallest face side (frame pixels) to look for; the finest level's pixel count grows
            with ``(face_px / min_face)**2``.
        iou: weighted-NMS overlap threshold when merging anchors, tiles and levels.
        max_cover: after NMS, drop a box when more than this share of it lies inside a higher-scoring
            box (an eye or a mouth found inside its face; see :func:`~.base.drop_nested`); 1 keeps all.
        level_step: size ratio between pyramid levels.
        max_input: largest network input side; larger levels are tiled.
        face_px: smallest face side (network pixels) the network finds reliably.
        size_slack: a level keeps faces from ``face_px / size_slack`` to ``face_px * level_step *
            size_slack`` network pixels (the finest level instead keeps all down to ``face_px *
            FINEST_FLOOR``, the coarsest all larger); 100 turns the rule off but for that floor.
        size_multiple: network input sides must be multiples of this.
        coarsest: the pyramid stops at the first level whose larger side is at most this many pixels (and
            that is one tile, at most ``max_input`` a side).

    Raises:
        InputError: an option out of range.
    """

    #: Keypoints per detection (BlazeFace 6, YuNet 5).
    n_points = 0
    _weak_score: Optional[float] = None
    _threads: Optional[int] = None
    #: The ONNX Runtime session (None once closed).
    _session: Any = None

    def __init__(self, *, min_score: float, min_face: float, iou: float, max_cover: float, level_step: float,
                 max_input: int, face_px: float, size_slack: float, size_multiple: int, coarsest: int) -> None:
        super().__init__()
        self._pid = os.getpid()  # the process whose session this is (a forked child must not destroy it)
        self.min_score = min_score  # checked by the property
        self.min_face = check_number("min_face", min_face, 1.0)
        self.iou = check_number("iou", iou, 0.0, 1.0)
        self.max_cover = check_number("max_cover", max_cover, 0.0, 1.0)
        self.level_step = check_number("level_step", level_step, 1.25, 8.0)
        self.size_slack = check_number("size_slack", size_slack, 1.0, 100.0)
        self.face_px = check_number("face_px", face_px, 4.0, 1024.0)
        self.size_multiple = int(check_number("size_multiple", size_multiple, 1))
        self.coarsest = int(check_number("coarsest", coarsest, 1))  # under 1, plan() would never stop
        m = self.size_multiple
        if isinstance(max_input, bool) or not isinstance(max_input, (int, np.integer)) or max_input < 4 * m:
            raise InputError(f"max_input={max_input!r}; expected an integer >= {4 * m}")
        self.max_input = int(max_input) // m * m

    @property
    def min_score(self) -> float:
        """Keep detections scoring at least this: a probability, from 0 to 1 (the benchmark's score sweep sets it).

        Raises:
            InputError: on setting a value that is not a number from 0 to 1, or one at or under a
                ``weak_score`` already set.
        """
        try:
            return self._min_score
        except AttributeError:  # a detector without a score threshold (OpenCV's cascade deletes it)
            raise AttributeError(f"{type(self).__name__} has no min_score: its detections carry no score to "
                                 "threshold") from None

    @min_score.setter
    def min_score(self, value: float) -> None:
        score = check_number("min_score", value, 0.0, 1.0)
        weak = self._weak_score
        if weak is not None and score <= weak:  # weak detections, from weak_score up to it, would be none at all
            raise InputError(f"min_score={value!r}: expected a threshold over the {self.name} detector's weak_score "
                             f"({weak}), from which weak detections reach up to it; set weak_score lower or to "
                             "None first")
        self._min_score = score

    @min_score.deleter
    def min_score(self) -> None:
        del self._min_score

    @property
    def threads(self) -> Optional[int]:
        """The ONNX Runtime intra-op threads the detector was created with (None: ONNX Runtime's default, or a
        detector that runs no ONNX Runtime session: OpenCV's cascade). Read-only: fixed when the session opens."""
        return self._threads

    @property
    def weak_score(self) -> Optional[float]:
        """Also return weak detections, scoring from this up to ``min_score`` (None: none): merged among themselves
        and dropped where they overlap a detection at ``min_score`` or more, so that those are exactly the ones
        found without it. A tracker uses them only to continue faces it follows (``CrowdAnalyzer(weak_score=)``).

        Raises:
            InputError: on setting a value that is not None or a number from 0 up to ``min_score`` (at or over
                it, it would add none), or any number on a detector without a score threshold (OpenCV's).
        """
        return self._weak_score

    @weak_score.setter
    def weak_score(self, value: Optional[float]) -> None:
        if value is None:
            self._weak_score = None
            return
        threshold = getattr(self, "min_score", None)
        if threshold is None:
            raise InputError(f"weak_score={value!r}: the {self.name} detector has no score threshold to go under "
                             "(YuNet and BlazeFace do); expected None")
        score = check_number("weak_score", value, 0.0, 1.0)
        if score >= threshold:
            raise InputError(f"weak_score={value!r}: expected a score under the {self.name} detector's threshold "
                             f"({threshold}), from which weak detections reach up to it; None: no weak detections")
        self._weak_score = score

    # -- planning ---------------------------------------------------------------------------
    def plan(self, height: int, width: int) -> list[Level]:
        """The pyramid levels and tiles used for a frame of (height, width), finest first.

        Raises:
            InputError: ``height`` or ``width`` is not an integer >= 1, or the frame is over the SDK's size limits.
        """
        for name, side in (("height", height), ("width", width)):
            if isinstance(side, (bool, np.bool_)) or not isinstance(side, (int, np.integer)) or side < 1:
                raise InputError(f"{name}={side!r}; expected a frame side in pixels, an integer >= 1")
        check_frame_size(int(height), int(width))
        m = self.size_multiple
        levels: list[Level] = []
        scale = self._finest_scale()
        while True:
            h, w = max(1, round(height * scale)), max(1, round(width * scale))
            # Tiles overlap by at least the largest face this level is responsible for (the next
            # level finds larger ones), so every such face lies whole in some tile.
            overlap = min(round_up(self.face_px * self.level_step * 1.5, m), self.max_input // 2)
            th, ys = split(round_up(h, m), self.max_input, overlap, m)
            tw, xs = split(round_up(w, m), self.max_input, overlap, m)
            levels.append(Level(scale, (h, w), (th, tw), tuple((y, x) for y in ys for x in xs)))
            # The coarsest level answers for every larger face, so it must not be cut into tiles (a face wider
            # than the overlap would lie whole in none); with max_input under ``coarsest`` the pyramid goes on.
            if max(h, w) <= self.coarsest and len(levels[-1].tiles) == 1:
                break
            scale /= self.level_step
        return levels

    def _finest_scale(self) -> float:
        """The finest level's scale: the frame enlarged (or reduced) so that ``min_face`` frame pixels are
        ``face_px`` network pixels."""
        return self.face_px / self.min_face

    # -- running ----------------------------------------------------------------------------
    def _detect(self, frame: np.ndarray) -> list[Detection]:
        height, width = frame.shape[:2]
        boxes, scores, points = [], [], []
        levels = self.plan(height, width)
        for k, level in enumerate(levels):
            b, s, p = self._run_level(frame, level)
            # A NaN or infinite candidate (a broken model) would spoil the weighted mean of its cluster: drop it.
            finite = np.isfinite(b).all(axis=1) & np.isfinite(s) & np.isfinite(p).all(axis=(1, 2))
            b, s, p = b[finite], s[finite], p[finite]
            # Each level answers for the face sizes it was planned for (in network pixels, face_px to
            # face_px * level_step, with slack): on an enlarged frame a detector also "finds" eyes, logos
            # and fabric folds at ordinary face sizes, which the level where they appear at their true
            # size rejects.
            size = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * level.scale
            lo = self.face_px * FINEST_FLOOR if k == 0 else self.face_px / self.size_slack
            hi = math.inf if k == len(levels) - 1 else self.face_px * self.level_step * self.size_slack
            keep = (size >= lo) & (size <= hi)
            boxes.append(b[keep])
            scores.append(s[keep])
            points.append(p[keep])
        all_b, all_s, all_p = np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)
        # All of them without weak_score (the network's own threshold); OpenCV's cascade has no threshold at all.
        strong = all_s >= getattr(self, "min_score", -math.inf)
        merged_b, merged_s, merged_p = self._merge(all_b[strong], all_s[strong], all_p[strong])
        if self.weak_score is not None and (~strong).any():
            weak_b, weak_s, weak_p = self._merge(all_b[~strong], all_s[~strong], all_p[~strong])
            if len(merged_b):  # one place, one face: a weak box over a detection is that detection
                alone = ~(box_iou(weak_b, merged_b) >= self.iou).any(axis=1)
                weak_b, weak_s, weak_p = weak_b[alone], weak_s[alone], weak_p[alone]
            merged_b, merged_s = np.concatenate([merged_b, weak_b]), np.concatenate([merged_s, weak_s])
            merged_p = np.concatenate([merged_p, weak_p])
        return [Detection(tuple(float(v) for v in b), float(s), tuple((float(x), float(y)) for x, y in p))  # type: ignore[arg-type]
                for b, s, p in zip(merged_b, merged_s, merged_p)]

    def _merge(self, b: np.ndarray, s: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates of every tile and level merged by weighted NMS, boxes inside stronger ones dropped."""
        if not len(b):
            return b.reshape(0, 4), s.reshape(0), p.reshape(0, self.n_points, 2)
        merged_b, merged_s, merged_p = weighted_nms(b, s, self.iou, p)
        assert merged_p is not None  # points were given
        keep = drop_nested(merged_b, merged_s, self.max_cover)
        return merged_b[keep], merged_s[keep], merged_p[keep]

    @property
    def _candidate_score(self) -> float:
        """The network's own threshold: ``min_score``, or ``weak_score`` where that is set and lower."""
        return self.min_score if self.weak_score is None else min(self.min_score, self.weak_score)

    def _tile_pixels(self, frame: np.ndarray, level: Level, y: int, x: int) -> tuple[np.ndarray, float, float, float, float]:
        """The tile at (y, x) of ``level`` as (th, tw, 3) uint8, cut from the original frame and resized
        on its own (zero beyond the frame), with the map back to frame pixels:
        ``frame = (origin_y + tile_y * step_y, origin_x + tile_x * step_x)``."""
        height, width = frame.shape[:2]
        th, tw = level.tile
        h, w = level.size
        sy, sx = height / h, width / w  # frame pixels per level pixel
        fy0, fx0 = int(math.floor(y * sy)), int(math.floor(x * sx))
        fy1, fx1 = min(height, int(math.ceil((y + th) * sy))), min(width, int(math.ceil((x + tw) * sx)))
        out = np.zeros((th, tw, 3), dtype=np.uint8)
        if fy1 <= fy0 or fx1 <= fx0:
            return out, float(fy0), float(fx0), sy, sx
        ch = min(th, max(1, round((fy1 - fy0) / sy)))
        cw = min(tw, max(1, round((fx1 - fx0) / sx)))
        out[:ch, :cw] = resize_rgb(frame[fy0:fy1, fx0:fx1], ch, cw)
        return out, float(fy0), float(fx0), (fy1 - fy0) / ch, (fx1 - fx0) / cw

    def _run_level(self, frame: np.ndarray, level: Level) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        th, tw = level.tile
        last_y = max(y for y, _ in level.tiles)
        last_x = max(x for _, x in level.tiles)
        boxes, scores, points = [], [], []
        # Tiles go to the network in chunks of about two full tiles' pixels, to bound memory.
        chunk = max(1, (2 * self.max_input * self.max_input) // (th * tw))
        for start in range(0, len(level.tiles), chunk):
            offsets = level.tiles[start:start + chunk]
            cut = [self._tile_pixels(frame, level, y, x) for y, x in offsets]
            found = self._network(np.stack([c[0] for c in cut]))
            for (y, x), (_, oy, ox, sy, sx), (b, s, p) in zip(offsets, cut, found):
                # A face cut by an edge shared with a neighbouring tile lies whole in that neighbour (tiles
                # overlap by the largest face of the level); its cut half would skew the merged box.
                cut_off = (((b[:, 0] < _EDGE) & (x > 0)) | ((b[:, 1] < _EDGE) & (y > 0))
                           | ((b[:, 2] > tw - _EDGE) & (x < last_x)) | ((b[:, 3] > th - _EDGE) & (y < last_y)))
                b, s, p = b[~cut_off], s[~cut_off], p[~cut_off]
                boxes.append(b * np.array([sx, sy, sx, sy]) + np.array([ox, oy, ox, oy]))
                scores.append(s)
                points.append(p * np.array([sx, sy]) + np.array([ox, oy]))
        all_s = np.concatenate(scores).reshape(-1)  # (K, n_points, 2): -1 cannot stand for K with no points
        return (np.concatenate(boxes).reshape(-1, 4), all_s,
                np.concatenate(points).reshape(len(all_s), self.n_points, 2))

    @abc.abstractmethod
    def _network(self, batch: np.ndarray) -> Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Run the network on (B, th, tw, 3) uint8 RGB tiles; per tile (boxes (K, 4), scores (K,),
        keypoints (K, n_points, 2)) in tile pixels, scores at least ``min_score``."""

    def _live_session(self) -> Any:
        """The ONNX Runtime session, or DetectorClosedError when :meth:`close` ran (from another thread, say)
        while a frame was being detected."""
        session = self._session
        if session is None:
            raise DetectorClosedError(f"this {type(self).__name__} was closed while detecting; create a new one to "
                                      "detect faces")
        return session

    def _close(self) -> None:
        if self._session is not None and os.getpid() != self._pid:  # a forked child: destroying the parent's
            leave_to_parent(self._session)  # session would hang joining threads that stayed in the parent
        self._session = None


def open_session(path: Path, providers: Union[None, str, Sequence[Any]], threads: Optional[int], expected: str) -> Any:
    """An ONNX Runtime session on a detector model.

    Raises:
        BackendUnavailable: onnxruntime is not installed, or a GPU provider asked for by name did not start.
        ModelError: the file is missing or ONNX Runtime cannot load it (``expected`` says what it should be).
    """
    from ..backends.onnxruntime_backend import (
        _ort_errors,
        check_providers_started,
        import_onnxruntime,
        make_session_options,
        resolve_providers,
    )

    ort = import_onnxruntime()
    problem = file_problem(path)  # a folder is said to be one, not "does not exist"
    if problem:
        raise ModelError(f"detector model {path} {problem}; expected {expected}")
    asked = resolve_providers(providers, 0, ort)
    try:
        # No spin-waiting: a detector takes turns with the recogniser (see make_session_options).
        session = ort.InferenceSession(str(path), sess_options=make_session_options(threads, ort, spinning=False),
                                       providers=asked)
    except _ort_errors(ort) as exc:
        raise ModelError(f"{path} could not be loaded by ONNX Runtime ({type(exc).__name__}: {exc}); "
                         f"expected {expected}") from exc
    check_providers_started(session, asked, providers, str(path))
    return session
