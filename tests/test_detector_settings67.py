"""fsrfer-crowd's JSON gives the detector's settings as data (``detector_settings``), as fsrfer-demo's ``detector``.

Before, fsrfer-crowd wrote only the detector's Python repr, a string an integrator had to parse for the score
threshold or the model file. One function, :func:`fsrfer_edge.detection.detector_settings`, writes both objects.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.detection import Detection, FaceDetector, create_detector, detector_settings


def test_crowd_json_has_the_settings_the_run_used(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("PIL")
    from fsrfer_edge import crowd_cli
    from fsrfer_edge.detection import yunet
    from fsrfer_edge.detection.frames import write_image

    src, js = tmp_path / "in.png", tmp_path / "res.json"
    write_image(src, np.full((48, 64, 3), 128, np.uint8))
    assert crowd_cli.main([str(src), "--out", str(tmp_path / "o.png"), "--json", str(js), "--threads", "1",
                           "--margin", "0.15", "--min-score", "0.45", "--min-face", "12"]) == 0
    doc = json.loads(js.read_text())
    assert doc["detector_settings"] == {"name": "yunet", "min_score": 0.45, "min_face": 12.0, "margin": 0.15,
                                        "threads": 1, "model": str(yunet.DEFAULT_YUNET)}
    assert "YuNetDetector(" in doc["detector"]  # the repr stays, for readers of schema fsrfer-crowd/1


def test_opencv_has_no_score_threshold_threads_or_onnx_model() -> None:
    pytest.importorskip("cv2")
    with create_detector("opencv", min_face=20) as det:
        assert detector_settings(det, 0.2) == {"name": "opencv", "min_score": None, "min_face": 20.0,
                                               "margin": 0.2, "threads": None, "model": None}


class _Own(FaceDetector):
    """A user's detector with attributes of its own types."""

    name = "own"

    def __init__(self, **attrs: Any) -> None:
        super().__init__()
        self.__dict__.update(attrs)

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        return []


def test_a_users_own_detector_gives_json_values_or_none() -> None:
    doc = detector_settings(_Own(min_score="high", min_face=np.float32(9.5), threads=True, path=Path("/m/x.onnx")),
                            np.float64(0.1))
    assert doc == {"name": "own", "min_score": None, "min_face": 9.5, "margin": 0.1, "threads": None,
                   "model": str(Path("/m/x.onnx"))}
    assert all(type(v) in (str, float, int, type(None)) for v in doc.values())  # json.dumps takes it as it is
    json.dumps(doc)
    assert detector_settings(_Own(), 0.0)["min_face"] is None and detector_settings(_Own(), 0.0)["model"] is None
