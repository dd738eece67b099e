"""Tests that kill hand-made mutants the rest of the suite let through (round 67a: the BlazeFace and OpenCV face
detectors, the detector factory ``create_detector`` and the backend interface ``fsrfer_edge.backends.base``).

Each test checks a behaviour a user depends on but would not notice at once when it broke: BlazeFace's decoding at
the extreme score thresholds, the OpenCV cascade's options, colour order and close, the factory's defaults and the
options it passes on, and the backend interface's shared checks. Tiny synthetic arrays; CPU only.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from fsrfer_edge.detection.blazeface import decode
from fsrfer_edge.errors import InputError, ModelError


# -- BlazeFace: decoding at min_score 0 and 1 ------------------------------------------------------------------------
def test_blazeface_decode_takes_the_extreme_thresholds_0_and_1() -> None:
    """Mutant: the threshold's logit computed from min_score itself, not clamped into (0, 1): min_score=0 (every
    candidate, a documented value) raised 'math domain error' and min_score=1 a ZeroDivisionError."""
    anchors = np.array([[8.0, 8.0], [24.0, 8.0]], np.float32)
    reg = np.zeros((2, 16), np.float32)
    reg[:, 2:4] = 6
    logits = np.array([-5.0, 20.0], np.float32)
    boxes, scores, _ = decode(reg, logits, anchors, 0.0)
    assert len(boxes) == 2 and scores[0] == pytest.approx(1 / (1 + math.exp(5)))
    boxes, scores, _ = decode(reg, logits, anchors, 1.0)  # only a logit past the clamp (p = 1 - 1e-6) is kept
    assert boxes.tolist() == [[21.0, 5.0, 27.0, 11.0]]


# -- the backend interface: shared checks of Backend.infer -----------------------------------------------------------
def _backend(out: "Callable[[np.ndarray], Any] | None" = None) -> Any:
    """A stand-in backend for the default model description (7 classes, (1, 48, 48) float32 input) whose logits
    are ``out(batch)`` (default: zeros of the right shape); it records the batches it was given."""
    from fsrfer_edge.backends.base import Backend
    from fsrfer_edge.metadata import ModelInfo

    class Stand(Backend):
        name = "stand-in"

        def __init__(self) -> None:
            super().__init__()
            self._info = ModelInfo()
            self.seen: list[np.ndarray] = []

        def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
            self.seen.append(batch)
            return np.zeros((len(batch), 7), np.float32) if out is None else out(batch)

        def _close_impl(self) -> None:
            pass

    return Stand()


def test_logits_with_the_wrong_number_of_classes_are_a_model_error() -> None:
    """Mutant: only the batch dimension of the logits checked: a graph with 5 outputs under metadata naming 7
    classes gave (N, 5) logits that Recognizer then zipped with the wrong class names."""
    b = _backend(lambda batch: np.zeros((len(batch), 5), np.float32))
    with pytest.raises(ModelError, match=r"\(2, 7\) was expected"):
        b.infer(np.zeros((2, 1, 48, 48), np.float32))
    b = _backend(lambda batch: np.zeros((len(batch), 7, 1), np.float32))
    with pytest.raises(ModelError, match="logits of shape"):
        b.infer(np.zeros((2, 1, 48, 48), np.float32))


def test_infer_hands_the_backend_a_c_contiguous_batch() -> None:
    """Mutant: the batch passed on as given: a strided view (every other face) reached ONNX Runtime or a
    device copy that reads the buffer as C-ordered."""
    b = _backend()
    base = np.arange(4 * 48 * 48, dtype=np.float32).reshape(4, 1, 48, 48)
    view = base[::2]
    b.infer(view)
    assert b.seen[0].flags["C_CONTIGUOUS"] and np.array_equal(b.seen[0], view)
    assert b.validate(np.asfortranarray(base)).flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("shape", [(1, 48, 48), (2, 2, 1, 48, 48)])
def test_a_batch_that_is_not_four_dimensional_is_refused(shape: tuple[int, ...]) -> None:
    """Mutant: only the last three dimensions checked: one face without its batch axis (1, 48, 48) read as a
    batch of one 48x48 sample, and a 5-D stack was passed on."""
    b = _backend()
    with pytest.raises(InputError, match="expected \\(N, 1, 48, 48\\)"):
        b.infer(np.zeros(shape, np.float32))
    assert not b.seen


# -- OpenCV cascade: what reaches detectMultiScale, and what comes back ----------------------------------------------
class _Cascade:
    """Stands in for cv2.CascadeClassifier: records the gray images and options, answers fixed (x, y, w, h)."""

    def __init__(self, rects: "list[tuple[int, int, int, int]]") -> None:
        self.rects = rects
        self.calls: list[tuple[np.ndarray, dict[str, Any]]] = []

    def detectMultiScale(self, gray: np.ndarray, **options: Any) -> Any:  # OpenCV's name
        self.calls.append((gray.copy(), options))
        return np.array(self.rects, dtype=np.int32).reshape(-1, 4)


def _opencv(**options: Any) -> Any:
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "CascadeClassifier"):
        pytest.skip(f"OpenCV {cv2.__version__} has no cascade classifier")
    from fsrfer_edge.detection.opencv import OpenCVDetector

    return OpenCVDetector(**options)


def test_opencv_passes_its_options_to_the_cascade() -> None:
    """Mutants: scaleFactor, minNeighbors or minSize fixed in the call: a caller's scale_factor=1.3 (a faster scan)
    or min_neighbors=8 (fewer false faces) did nothing."""
    with _opencv(min_face=24, scale_factor=1.3, min_neighbors=8) as det:
        det._cascade = cascade = _Cascade([])
        assert det.detect(np.zeros((40, 60, 3), np.uint8)) == []
    (gray, options), = cascade.calls
    assert options == {"scaleFactor": 1.3, "minNeighbors": 8, "minSize": (24, 24)}


def test_opencv_reads_frames_as_rgb_and_boxes_as_x_y_width_height() -> None:
    """Mutants: the frame converted to gray as BGR (red and blue weights swapped: a red frame came out at blue's
    gray level), and the cascade's (x, y, w, h) read as corners."""
    frame = np.zeros((40, 60, 3), np.uint8)
    frame[..., 0] = 255  # pure red: one gray level, which equalisation leaves as it is
    with _opencv(min_face=24) as det:
        det._cascade = cascade = _Cascade([(30, 4, 20, 16)])
        found = det.detect(frame)
    gray = cascade.calls[0][0]
    assert gray.shape == (40, 60) and int(gray[0, 0]) == round(0.299 * 255)
    assert [d.box for d in found] == [(30.0, 4.0, 50.0, 20.0)] and found[0].score == 1.0


def test_opencv_never_shrinks_a_frame_for_a_large_min_face() -> None:
    """Mutant: the frame scaled by 24 / min_face below 1 too: min_face=48 halved the frame, so faces of 24 to 47
    pixels (which the docs say are kept from the cascade's window up) were lost, and boxes came back doubled."""
    with _opencv(min_face=48) as det:
        det._cascade = cascade = _Cascade([(8, 8, 24, 24)])
        found = det.detect(np.zeros((60, 80, 3), np.uint8))
    assert cascade.calls[0][0].shape == (60, 80)
    assert [d.box for d in found] == [(8.0, 8.0, 32.0, 32.0)]


def test_opencv_detections_come_in_reading_order() -> None:
    """Mutant: sorted left to right first: the order the docs promise (top to bottom, then left to right) and that
    makes the same frame give the same list."""
    with _opencv(min_face=24) as det:
        det._cascade = _Cascade([(40, 2, 20, 20), (2, 30, 20, 20), (10, 10, 20, 20)])
        found = det.detect(np.zeros((60, 80, 3), np.uint8))
    assert [d.box[:2] for d in found] == [(40.0, 2.0), (10.0, 10.0), (2.0, 30.0)]


def test_closing_an_opencv_detector_during_a_detection_makes_that_detection_raise() -> None:
    """Mutant: close() left the cascade in place: a detection running in another thread went on on a closed
    detector (and the classifier was never freed) instead of raising DetectorClosedError."""
    from fsrfer_edge.detection import DetectorClosedError

    with _opencv(min_face=24) as det:
        det._cascade = _Cascade([(8, 8, 24, 24)])
        real_cv2 = det._cv2

        class ClosingCv2:  # cv2 whose colour conversion closes the detector first (as another thread would)
            def __getattr__(self, name: str) -> Any:
                return getattr(real_cv2, name)

            def cvtColor(self, *args: Any) -> Any:
                det.close()
                return real_cv2.cvtColor(*args)

        det._cv2 = ClosingCv2()
        with pytest.raises(DetectorClosedError, match="closed while detecting"):
            det.detect(np.zeros((40, 60, 3), np.uint8))


def test_blazeface_face_px_override_sets_the_enlargement() -> None:
    """Mutant: ``face_px=`` checked but not applied: the model's recorded 32 px stayed in force, so a caller's
    face_px=64 (for faces the model finds only larger) enlarged the frame half as much as asked."""
    from fsrfer_edge.detection.blazeface import BlazeFaceDetector

    det = BlazeFaceDetector(min_face=16, face_px=64, threads=1)
    with det:
        assert det.layout.face_px == 64 and det.plan(64, 64)[0].scale == pytest.approx(4.0)
        assert "face_px=64" in repr(det)
    with pytest.raises(InputError, match="face_px"):
        BlazeFaceDetector(face_px=2, threads=1)


def test_opencv_repr_names_the_default_cascade_by_file_and_another_by_its_path() -> None:
    """Mutant: the default cascade named by its full path inside the OpenCV wheel (an install detail in logs and
    benchmark records, different on every machine) instead of its file name."""
    from fsrfer_edge.detection.opencv import CASCADE

    with _opencv() as det:
        assert f"cascade={CASCADE!r}" in repr(det)
        path = str(Path(det._cv2.data.haarcascades) / CASCADE)
    with _opencv(cascade=path) as det:
        assert f"cascade={path!r}" in repr(det)


def _blazeface_like(path: Any, input_name: str, outputs: "tuple[str, ...]") -> Any:
    """A tiny ONNX file with the shipped BlazeFace's metadata and the given input and output names."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from fsrfer_edge.detection.blazeface import DEFAULT_BLAZEFACE, METADATA_KEY

    shipped = {p.key: p.value for p in onnx.load(str(DEFAULT_BLAZEFACE)).metadata_props}
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", "H", "W", 3])
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    nodes = [helper.make_node("Identity", [input_name], [o]) for o in outputs]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs), opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: shipped[METADATA_KEY]})
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("input_name, outputs", [("pixels", ("regressors", "classificators")),
                                                 ("image", ("regressors", "scores"))])
def test_a_blazeface_model_with_other_tensor_names_is_refused_when_loaded(tmp_path: Any, input_name: str,
                                                                          outputs: "tuple[str, ...]") -> None:
    """Mutant: only the output names checked: a model whose input is not ``image`` loaded, then every detect()
    failed inside ONNX Runtime with an error that did not say the model was the wrong one."""
    from fsrfer_edge.detection.blazeface import BlazeFaceDetector

    model = _blazeface_like(tmp_path / "other.onnx", input_name, outputs)
    with pytest.raises(ModelError, match="inputs/outputs are not image -> regressors, classificators"):
        BlazeFaceDetector(model, threads=1)
    BlazeFaceDetector(_blazeface_like(tmp_path / "same.onnx", "image", ("regressors", "classificators")),
                      threads=1).close()  # the names it needs: loads


# -- the detector factory --------------------------------------------------------------------------------------------
def test_an_output_over_either_shipped_detector_model_is_refused() -> None:
    """Mutant: BlazeFace's file left out of detector_model_inputs: ``fsrfer-crowd --json`` (and the demo and the
    benchmark) could overwrite the shipped BlazeFace model with a JSON document."""
    from fsrfer_edge.detection import detector_model_inputs
    from fsrfer_edge.detection.blazeface import DEFAULT_BLAZEFACE
    from fsrfer_edge.detection.yunet import DEFAULT_YUNET
    from fsrfer_edge.fileio import check_distinct_files

    inputs = detector_model_inputs()
    assert {Path(p) for _, p in inputs} == {DEFAULT_YUNET, DEFAULT_BLAZEFACE}
    for shipped in (DEFAULT_YUNET, DEFAULT_BLAZEFACE):
        with pytest.raises(InputError, match="same file"):
            check_distinct_files([*inputs, ("--json", shipped)], inputs=len(inputs))


def test_create_detector_passes_threads_and_min_face_on_to_blazeface() -> None:
    """Mutant: create_detector dropped ``threads`` for BlazeFace: ``--detector blazeface --threads 1`` ran the
    detector on every core, beside a recogniser that was meant to have them."""
    from fsrfer_edge.detection import create_detector

    det: Any = create_detector("blazeface", min_face=12, threads=1)
    with det:
        assert det.threads == 1 and det.min_face == 12 and det.min_score == 0.5


def test_blazeface_decode_keeps_a_candidate_scoring_exactly_min_score() -> None:
    """A defect this round found: decode kept logits strictly above the threshold's logit, so at min_score=0.5 (logit
    0) a candidate scoring exactly 0.5 was dropped; detections scoring at least min_score are kept, as YuNet keeps
    them (test_mutants64b::test_yunet_decode_keeps_a_cell_scoring_exactly_min_score)."""
    from fsrfer_edge.detection.blazeface import decode

    anchors = np.array([[8.0, 8.0], [20.0, 20.0]], np.float32)
    reg = np.zeros((2, 16), np.float32)
    reg[:, 2:4] = 6
    boxes, scores, _ = decode(reg, np.array([0.0, -0.01], np.float32), anchors, 0.5)
    assert scores.tolist() == [0.5] and boxes.tolist() == [[5.0, 5.0, 11.0, 11.0]]
