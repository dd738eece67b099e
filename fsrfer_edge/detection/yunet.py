"""YuNet-n face detection on ONNX Runtime (the default crowd detector), with a numpy decoder.

The model is YuNet-n from ``ShiqiYu/libfacedetection.train`` (``onnx/yunet_n_dynamic.onnx``, unchanged;
origin, sha256, Apache-2.0 licence and the WIDER FACE training-data caveat in
``fsrfer_edge/models/YUNET_LICENSE.md``). The graph is fully convolutional: float32 BGR pixels (N, 3, H, W)
in [0, 255] for H, W multiples of 32. It is anchor-free, with three heads (strides 8, 16, 32), each giving
per output cell a class score, an objectness score, a box (centre offset and log size, in strides) and five
keypoints (right eye, left eye, nose tip, right and left mouth corner, as seen in the image). The decoding
is :func:`decode`, the same as OpenCV's ``cv2.FaceDetectorYN`` (checked against it in the tests).

Small faces: the frame is enlarged by ``face_px / min_face`` (3x for 8 px faces: YuNet-n finds faces from
about 24 network pixels up on the crowd benchmark), with one coarser level for large faces and tiles for
large frames, as :class:`~.pyramid.PyramidDetector` does. YuNet's boxes are tight (their side is about the
face's, where BlazeFace's is about 0.85 of a FER crop), so the crowd analyzer crops them with a smaller margin.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import ModelError
from ..fileio import as_path
from .pyramid import PyramidDetector, check_number, open_session

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
#: The shipped YuNet-n model (package data).
DEFAULT_YUNET = Path(__file__).resolve().parents[1] / "models" / "yunet_n.onnx"
#: sha256 of the shipped file, as downloaded (see YUNET_LICENSE.md).
YUNET_SHA256 = "104ee26c71d5c270ce79a6b3dced91c91013260d29a6bf18f9296c5b8c4c2b12"
STRIDES = (8, 16, 32)
OUTPUTS = tuple(f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in STRIDES)
_LOG_SIZE_LIMIT = 10.0  # exp() of a box's log size is clipped here (float overflow on garbage input)


def decode(outputs: dict[str, np.ndarray], height: int, width: int,
           min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes, scores and keypoints of one image's YuNet outputs scoring at least ``min_score``.

    Args:
        outputs: ``cls_S``, ``obj_S`` (cells, 1), ``bbox_S`` (cells, 4) and ``kps_S`` (cells, 10) for
            each stride S in 8, 16, 32, cells in row-major order of the (height/S, width/S) grid.
        height, width: the network input size (multiples of 32).
        min_score: threshold on ``sqrt(clip(cls, 0, 1) * clip(obj, 0, 1))``.

    Returns:
        (boxes (K, 4) as x0, y0, x1, y1; scores (K,); keypoints (K, 5, 2)) in input pixels.

    Raises:
        ModelError: an output's cell count does not fit the input size.
    """
    boxes, scores, points = [], [], []
    for stride in STRIDES:
        rows, cols = -(-height // stride), -(-width // stride)
        cls = outputs[f"cls_{stride}"].reshape(-1)
        obj = outputs[f"obj_{stride}"].reshape(-1)
        if cls.shape[0] != rows * cols or obj.shape[0] != rows * cols:
            raise ModelError(f"YuNet output cls_{stride} has {cls.shape[0]} cells for a {height}x{width} input; "
                             f"expected {rows * cols} ({rows}x{cols}); the model is not YuNet")
        score = np.sqrt(np.clip(cls, 0, 1).astype(np.float64) * np.clip(obj, 0, 1))
        idx = np.flatnonzero(score >= min_score)
        r, c = np.divmod(idx, cols)
        bb = outputs[f"bbox_{stride}"].reshape(-1, 4)[idx].astype(np.float64)
        kp = outputs[f"kps_{stride}"].reshape(-1, 5, 2)[idx].astype(np.float64)
        cx, cy = (c + bb[:, 0]) * stride, (r + bb[:, 1]) * stride
        half_w = np.exp(np.clip(bb[:, 2], -_LOG_SIZE_LIMIT, _LOG_SIZE_LIMIT)) * stride / 2
        half_h = np.exp(np.clip(bb[:, 3], -_LOG_SIZE_LIMIT, _LOG_SIZE_LIMIT)) * stride / 2
        boxes.append(np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1))
        scores.append(score[idx])
        points.append((kp + np.stack([c, r], axis=1)[:, None, :]) * stride)
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)


class YuNetDetector(PyramidDetector):
    """YuNet-n on ONNX Runtime with an enlarged frame, a coarser level and tiles (see the module docstring).

    Args:
        model: a YuNet ``.onnx`` with the outputs of ``libfacedetection.train``'s export; None: the shipped one.
        min_score: keep detections scoring at least this (``sqrt(cls * obj)``, as OpenCV's FaceDetectorYN);
            0.3 was chosen on the crowd benchmark's score sweep (``detection.DEFAULT_SCORES``).
        min_face: smallest face side (frame pixels) to look for; the finest level is the frame enlarged by
            ``face_px / min_face``, and its pixel count (the run time) grows with that factor squared.
        iou, max_cover, level_step, max_input, size_slack: as :class:`~.pyramid.PyramidDetector`.
        face_px: smallest face side (network pixels) looked for on the finest level.
        coarsest: the pyramid stops at the first level of at most this many pixels a side.
        providers: ONNX Runtime providers (``"auto"``, ``"cpu"``, ``"cuda"`` or a list), as for Recognizer.
        threads: ONNX Runtime intra-op threads (None: ONNX Runtime's default); kept as ``threads``.

    Raises:
        ModelError: the model is missing or its inputs/outputs are not YuNet's.
        BackendUnavailable: onnxruntime is not installed (pip extra ``cpu``).
        InputError: an option out of range, or a ``model`` that is not a path (a str or os.PathLike).
    """

    name = "yunet"
    n_points = 5

    def __init__(self, model: Optional[PathLike] = None, *, min_score: float = 0.3, min_face: float = 8.0,
                 iou: float = 0.3, max_cover: float = 0.7, level_step: float = 4.0, max_input: int = 1536,
                 face_px: float = 24.0, size_slack: float = 1.5, coarsest: int = 640,
                 providers: Union[None, str, Sequence[Any]] = None, threads: Optional[int] = None) -> None:
        super().__init__(min_score=min_score, min_face=min_face, iou=iou, max_cover=max_cover, level_step=level_step,
                         max_input=max_input, face_px=face_px, size_slack=size_slack, size_multiple=32,
                         coarsest=int(check_number("coarsest", coarsest, 32, 1 << 16)))
        self.path = as_path(model, "model") if model is not None else DEFAULT_YUNET
        self._session = _load(self.path, providers, threads)
        self._threads = None if threads is None else int(threads)  # checked by the session's options

    def _network(self, batch: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        x = np.ascontiguousarray(batch[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)  # RGB NHWC -> BGR NCHW
        out = dict(zip(OUTPUTS, self._live_session().run(list(OUTPUTS), {"input": x})))
        h, w = batch.shape[1:3]
        return [decode({k: v[i] for k, v in out.items()}, h, w, self._candidate_score) for i in range(batch.shape[0])]

    def __repr__(self) -> str:
        return (f"YuNetDetector(model={str(self.path)!r}, min_score={self.min_score}, min_face={self.min_face}, "
                f"face_px={self.face_px}, level_step={self.level_step})")


def _load(path: Path, providers: Union[None, str, Sequence[Any]], threads: Optional[int]) -> Any:
    """Open a YuNet model and check its inputs and outputs."""
    session = open_session(path, providers, threads, f"a YuNet .onnx such as the shipped {DEFAULT_YUNET}")
    inputs = [i.name for i in session.get_inputs()]
    missing = sorted(set(OUTPUTS) - {o.name for o in session.get_outputs()})
    if inputs != ["input"] or missing:
        raise ModelError(f"{path}: inputs {inputs} and outputs lacking {missing}; expected YuNet's input 'input' "
                         f"and outputs {', '.join(OUTPUTS)}")
    # The tiles have sizes of their own and go in batches: a fixed (N, H, W) would fail every frame at run time.
    shape = list(session.get_inputs()[0].shape)
    if len(shape) != 4 or any(isinstance(shape[i], int) for i in (0, 2, 3)):
        raise ModelError(f"{path}: input shape {shape}; expected YuNet with a dynamic input (N, 3, H, W), such as "
                         "libfacedetection.train's onnx/yunet_n_dynamic.onnx (the shipped model)")
    return session

