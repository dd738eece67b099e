"""Bad inputs found by a sweep of the public API (recognizer, crowd, detection, ferplus): each was answered with
another library's error (TypeError, AttributeError, numpy's ValueError, OpenCV's SystemError), a crash, or a
silently accepted value, where the package's own error now says what was received and what is expected."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.errors import InputError, ModelError


# -- recognizer.open_backend / Recognizer(sessions=) --------------------------------------------
@pytest.mark.parametrize("sessions", [np.True_, np.array([1]), np.array([], dtype=np.int64)])
def test_recognizer_sessions_that_are_not_a_count_are_refused(sessions: Any) -> None:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer

    with pytest.raises(InputError, match="sessions="):
        Recognizer(sessions=sessions, threads=1)


@pytest.mark.parametrize("path", [None, 3, b"model.onnx"])
def test_open_backend_path_of_another_type_is_an_input_error(path: Any) -> None:
    from fsrfer_edge.recognizer import open_backend

    with pytest.raises(InputError, match="expected a path"):
        open_backend(path)


def test_open_backend_takes_a_str_path() -> None:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge.recognizer import open_backend, resolve_model_path

    backend = open_backend(str(resolve_model_path(None)), backend="onnxruntime", threads=1)
    try:
        assert backend.info.classes
    finally:
        backend.close()


# -- crowd: camera indices, video sources --------------------------------------------------------
class _NoCapture:
    """cv2.VideoCapture that must not be reached: OpenCV 4.14 crashes the process (SIGSEGV) opening camera -1
    on a machine without a camera."""

    def __init__(self, *args: Any) -> None:
        raise AssertionError(f"cv2.VideoCapture{args} was called")


@pytest.fixture()
def no_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    cv2 = pytest.importorskip("cv2")
    monkeypatch.setattr(cv2, "VideoCapture", _NoCapture)


@pytest.mark.parametrize("source", [-1, np.int64(-2), None, 1.5, float("nan"), np.zeros(3)])
def test_video_frames_refuses_what_is_neither_a_path_nor_a_camera_index(source: Any, no_capture: None) -> None:
    from fsrfer_edge.crowd import video_frames

    with pytest.raises(InputError, match="camera index"):
        video_frames(source)


def test_analyze_stream_refuses_a_negative_camera_index(no_capture: None) -> None:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer, iter_frames

    with pytest.raises(InputError, match=r"source=-1; expected .*camera index"):
        next(iter_frames(-1))
    with CrowdAnalyzer(Recognizer(threads=1), _no_faces()) as analyzer:
        with pytest.raises(InputError, match=r"source=-1; expected .*camera index"):
            next(analyzer.analyze_stream(-1))


# -- crowd: crops, intervals, closed parts -------------------------------------------------------
@pytest.mark.parametrize("margin", [True, np.True_, float("nan"), float("inf"), -0.5, -1, "0.2", None])
def test_square_box_and_crop_face_refuse_a_margin_that_is_not_one(margin: Any) -> None:
    from fsrfer_edge.crowd import crop_face, square_box

    with pytest.raises(InputError, match="margin"):
        square_box((10, 10, 40, 40), margin)
    with pytest.raises(InputError, match="margin"):
        crop_face(np.zeros((64, 64, 3), np.uint8), (10, 10, 40, 40), margin)


def test_square_box_keeps_its_answers() -> None:
    from fsrfer_edge.crowd import square_box

    assert square_box((10, 10, 40, 40), 0.0) == (10, 10, 40, 40)
    assert square_box((10, 10, 40, 40), np.float32(0.5)) == (-5, -5, 55, 55)
    assert square_box((10, 10, 40, 40), 3) == (-80, -80, 130, 130)  # no upper bound here (benchmarks sweep margins)


def _no_faces() -> Any:
    from fsrfer_edge.detection import FaceDetector

    class NoFaces(FaceDetector):
        name = "none"

        def _detect(self, frame: np.ndarray) -> list:
            return []

    return NoFaces()


@pytest.mark.parametrize("bad", [None, "result", {"faces": []}])
def test_shares_interval_of_something_else_than_a_crowd_result_is_an_input_error(bad: Any) -> None:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer

    with CrowdAnalyzer(Recognizer(threads=1), _no_faces()) as analyzer:
        with pytest.raises(InputError, match="CrowdResult"):
            analyzer.shares_interval(bad)


# -- detection -----------------------------------------------------------------------------------
@pytest.mark.parametrize("height, width", [(True, 640), (0, 640), (-1, 640), (480, None), (480.5, 640),
                                           (float("nan"), 640), (480, np.zeros(2)), (480, 10 ** 9)])
def test_a_detectors_plan_refuses_a_frame_size_that_is_not_one(height: Any, width: Any) -> None:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge.detection.yunet import YuNetDetector

    detector = YuNetDetector(threads=1)
    try:
        with pytest.raises(InputError, match="frame"):
            detector.plan(height, width)
        assert detector.plan(np.int64(480), 640)[0].size == detector.plan(480, 640)[0].size  # numpy ints still do
    finally:
        detector.close()


def test_the_opencv_detector_reports_a_cascade_folder_as_a_model_error(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "CascadeClassifier"):
        pytest.skip(f"OpenCV {cv2.__version__} has no cascade classifier")
    from fsrfer_edge.detection.opencv import OpenCVDetector

    with pytest.raises(ModelError, match="directory"):
        OpenCVDetector(cascade=tmp_path)  # OpenCV raised SystemError


# -- ferplus -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [None, 3, b"faces.npz", np.zeros(2)])
def test_load_labelled_faces_path_of_another_type_is_an_input_error(path: Any) -> None:
    from fsrfer_edge.ferplus import default_label_set, load_labelled_faces

    with pytest.raises(InputError, match="expected a path"):
        load_labelled_faces(path)
    with pytest.raises(InputError, match="expected a path"):
        default_label_set(path)
