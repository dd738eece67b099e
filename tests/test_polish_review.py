"""Review polish: a tracked stream whose frame size changes logs one warning; check_pixels, to_uint8_pixels and
softmax refuse what is not their input with an InputError; check_output_path's example for a folder fits the
output's kind. CPU only, tiny data."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.errors import InputError


# -- 1. a tracked stream whose frame size changes ------------------------------------------------------------------
def _one_box_detector() -> Any:
    """A FaceDetector that finds one 24-pixel face at the top left of every frame."""
    from fsrfer_edge.detection import Detection, FaceDetector

    class OneBox(FaceDetector):
        name = "one-box"

        def _detect(self, frame: np.ndarray) -> list[Detection]:
            return [Detection((4.0, 4.0, 28.0, 28.0), 0.9)]

    return OneBox()


def _frames(*sizes: tuple[int, int]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def _size_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "frame size changed" in r.getMessage()]


@pytest.fixture(scope="module")
def recognizer() -> Any:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer

    with Recognizer(threads=1) as rec:
        yield rec


@pytest.mark.parametrize("pipeline", [False, True])
def test_a_frame_size_change_in_a_tracked_stream_warns_once(recognizer: Any, caplog: pytest.LogCaptureFixture,
                                                             pipeline: bool) -> None:
    """Frames of another size were tracked without a word: boxes were matched across two frame geometries."""
    from fsrfer_edge.crowd import CrowdAnalyzer

    frames = _frames((64, 80), (64, 80), (48, 96), (64, 80), (48, 96))
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge.crowd"):
        results = list(CrowdAnalyzer(recognizer, _one_box_detector()).analyze_stream(frames, track=True,
                                                                                      pipeline=pipeline))
    assert [r.frame_size for r in results] == [(64, 80), (64, 80), (48, 96), (64, 80), (48, 96)]  # not refused
    warnings = _size_warnings(caplog)
    assert len(warnings) == 1, warnings  # once per stream
    assert "from 64x80 to 48x96" in warnings[0] and "track=False" in warnings[0], warnings[0]


def test_no_frame_size_warning_without_tracking_or_without_a_change(recognizer: Any,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer

    crowd = CrowdAnalyzer(recognizer, _one_box_detector())
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge.crowd"):
        list(crowd.analyze_stream(_frames((64, 80), (48, 96)), track=False))  # separate photos: nothing matched
        list(crowd.analyze_stream(_frames((64, 80), (64, 80), (64, 80)), track=True))
    assert _size_warnings(caplog) == []


def test_a_carried_tracker_warns_when_the_next_call_has_frames_of_another_size(
        recognizer: Any, caplog: pytest.LogCaptureFixture) -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer
    from fsrfer_edge.tracking import FaceTracker

    crowd = CrowdAnalyzer(recognizer, _one_box_detector())
    tracker = FaceTracker(confirm=1)
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge.crowd"):
        list(crowd.analyze_stream(_frames((64, 80), (64, 80)), track=tracker))
        assert _size_warnings(caplog) == []
        list(crowd.analyze_stream(_frames((48, 96), (48, 96)), track=tracker))  # its tracks go on: a warning
        assert len(_size_warnings(caplog)) == 1 and "from 64x80 to 48x96" in _size_warnings(caplog)[0]
        tracker.reset()  # a new stream: no tracks to mix up
        list(crowd.analyze_stream(_frames((64, 80)), track=tracker))
    assert len(_size_warnings(caplog)) == 1


# -- 2. check_pixels, to_uint8_pixels and softmax --------------------------------------------------------------
@pytest.mark.parametrize("name", ["check_pixels", "to_uint8_pixels"])
@pytest.mark.parametrize("image", [[[0, 255], [128, 7]], ((1.0, 2.0),), "pixels"])
def test_pixels_that_are_not_an_array_are_an_input_error(name: str, image: Any) -> None:
    """A plain list raised AttributeError ('list' object has no attribute 'dtype')."""
    from fsrfer_edge import preprocessing

    with pytest.raises(InputError, match=rf"face 3 is a {type(image).__name__}; expected a numpy array.*np\.asarray"):
        getattr(preprocessing, name)(image, "face 3")


def test_pixels_of_an_array_are_read_as_before() -> None:
    from fsrfer_edge.preprocessing import check_pixels, to_uint8_pixels

    img = np.array([[0.0, 254.6], [12.2, 255.0]])
    check_pixels(img)
    np.testing.assert_array_equal(to_uint8_pixels(img), np.array([[0, 255], [12, 255]], dtype=np.uint8))


@pytest.mark.parametrize("logits, words", [
    (np.array([1.0, 2.0, 3.0]), r"shape \(3,\).*expected \(N, C\)"),  # was numpy's AxisError
    (np.zeros((2, 0), np.float32), r"shape \(2, 0\).*no classes"),  # was a bare ValueError
    (np.zeros((0, 0), np.float32), r"shape \(0, 0\).*no classes"),
    (np.zeros((1, 2, 3), np.float32), r"shape \(1, 2, 3\).*expected \(N, C\)"),
    ([[1.0, 2.0]], r"logits is a list; expected a numpy array"),  # was AttributeError
])
def test_softmax_of_what_is_not_logits_is_an_input_error(logits: Any, words: str) -> None:
    from fsrfer_edge.preprocessing import softmax

    with pytest.raises(InputError, match=words):
        softmax(logits)


def test_softmax_of_logits_is_as_before() -> None:
    from fsrfer_edge.preprocessing import softmax

    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    p = softmax(z)
    assert p.dtype == np.float32 and p.shape == (2, 3)
    np.testing.assert_allclose(p[1], np.full(3, 1 / 3), rtol=1e-6)
    np.testing.assert_allclose(p[0], np.exp(z[0]) / np.exp(z[0]).sum(), rtol=1e-6)
    assert softmax(z.astype(np.float64)).dtype == np.float64 and softmax(np.array([[1, 2]])).dtype == np.float64
    assert softmax(np.zeros((0, 7), np.float32)).shape == (0, 7)  # no faces


# -- 3. check_output_path's example for a folder ---------------------------------------------------------------------
def test_a_folder_given_for_an_image_output_is_not_told_to_end_in_json(tmp_path: Path) -> None:
    """write_image to a folder named shots.png suggested shots.png/results.json."""
    pytest.importorskip("PIL")
    from fsrfer_edge.detection.frames import write_image
    from fsrfer_edge.fileio import check_output_path

    folder = tmp_path / "shots.png"
    folder.mkdir()
    with pytest.raises(InputError, match="is a directory") as err:
        write_image(folder, np.zeros((4, 4, 3), np.uint8))
    assert ".json" not in str(err.value) and str(folder / "out.png") in str(err.value), err.value
    with pytest.raises(InputError, match="is a directory") as err:
        check_output_path(tmp_path, "--out")
    assert ".json" not in str(err.value) and "file name inside it" in str(err.value), err.value
    for kwargs in ({"what": "--json"}, {"json_output": True}):  # a JSON output keeps its example
        with pytest.raises(InputError, match="is a directory") as err:
            check_output_path(tmp_path, **kwargs)  # type: ignore[arg-type]
        assert str(tmp_path / "results.json") in str(err.value), err.value
