"""Review of the face detectors' public API (fsrfer_edge.detection): bad options and arguments get a clear
InputError (or ModelError) that says what was received, never a TypeError from deep inside or a silent no-op."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.errors import InputError, ModelError

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def yunet() -> Any:
    from fsrfer_edge.detection import create_detector

    with create_detector("yunet") as det:
        yield det


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf, 1.5, "0.1", True, [0.1]])
def test_weak_score_that_is_not_a_score_is_refused(yunet: Any, value: Any) -> None:
    # weak_score=-1 gave every output cell of a noise frame as a face; NaN silently gave none; "0.1" a TypeError.
    with pytest.raises(InputError, match=r"weak_score=.*expected"):
        yunet.weak_score = value
    assert yunet.weak_score is None


def test_weak_score_at_or_over_the_threshold_is_refused(yunet: Any) -> None:
    # It would add no detections (as CrowdAnalyzer(weak_score=) says for its own detector).
    with pytest.raises(InputError, match=r"weak_score=0\.3.*threshold \(0\.3\)"):
        yunet.weak_score = 0.3
    assert yunet.weak_score is None


def test_weak_score_under_the_threshold_is_kept_and_none_resets_it(yunet: Any) -> None:
    frame = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    yunet.weak_score = np.float32(0.1)
    try:
        assert yunet.weak_score == pytest.approx(0.1) and type(yunet.weak_score) is float
        assert all(d.score >= 0.1 - 1e-6 for d in yunet.detect(frame))
    finally:
        yunet.weak_score = None
    assert yunet.weak_score is None


def test_weak_score_on_the_opencv_detector_is_refused() -> None:
    pytest.importorskip("cv2")
    from fsrfer_edge.detection import create_detector

    det: Any
    with create_detector("opencv") as det:
        with pytest.raises(InputError, match="no score threshold"):
            det.weak_score = 0.1
        assert det.weak_score is None
        det.weak_score = None  # nothing to refuse


@pytest.mark.parametrize("threads", [0, -5, 0.5, True, "2"])
def test_auto_checks_threads_when_it_falls_back_to_opencv(monkeypatch: pytest.MonkeyPatch, threads: Any) -> None:
    # The same call must fail on every install: with ONNX Runtime it raised, without it it was accepted.
    pytest.importorskip("cv2")
    from fsrfer_edge import detection

    monkeypatch.setattr(detection, "_onnxruntime_problem", lambda: detection._NOT_INSTALLED)
    with pytest.raises(InputError, match=r"threads=.*expected an integer"):
        detection.create_detector("auto", threads=threads)
    with detection.create_detector("auto", threads=2) as det:  # a valid value is unused, with a warning
        assert det.name == "opencv"


@pytest.mark.parametrize("name", ["yunet", "blazeface"])
@pytest.mark.parametrize("model", [3, b"/x.onnx", "", "  "])  # a TypeError, or "detector model . does not exist"
def test_a_model_that_is_not_a_path_is_refused(name: str, model: Any) -> None:
    from fsrfer_edge.detection import create_detector

    with pytest.raises(InputError, match=r"model.*expected"):
        create_detector(name, model=model)


@pytest.mark.parametrize("name", ["yunet", "blazeface"])
def test_a_model_that_is_a_directory_is_said_to_be_one(name: str, tmp_path: Path) -> None:
    from fsrfer_edge.detection import create_detector

    with pytest.raises(ModelError, match="is a directory"):
        create_detector(name, model=tmp_path)


@pytest.mark.parametrize("path, match", [(3, "received int"), (None, "received NoneType"),
                                         (b"/tmp/x.png", "received bytes"), ("", "empty path")])
def test_image_paths_that_are_not_paths_are_refused(path: Any, match: str) -> None:
    from fsrfer_edge.detection.frames import check_image_name, read_image, write_image

    frame = np.zeros((2, 3, 3), dtype=np.uint8)
    for call in (lambda: read_image(path), lambda: write_image(path, frame), lambda: check_image_name(path)):
        with pytest.raises(InputError, match=f"{match}.*expected"):
            call()
