"""Tests that kill hand-made mutants (round 69, task K69g) of BlazeFace's anchors, decoding and layout metadata
(fsrfer_edge/detection/blazeface.py: the layout metadata, the model's inputs, the detector's defaults), the detector
base (fsrfer_edge/detection/base.py: one flat box in the NMS functions, weighted NMS's keypoint check, a plug-in's
output checked and clipped, close) and the detector factory (fsrfer_edge/detection/__init__.py: 'auto''s log level,
threads= refused for 'opencv', detector_settings of a plug-in).

Each test pins a behaviour the earlier rounds (tests/test_mutants64b.py, 66g, 67a and the detection suites) left open:
anchors for inputs that are not a multiple of a stride, keypoints placed on asymmetric anchors, the defaults of the
metadata a converter may omit, and more. BlazeFace is tested on synthetic raw outputs and tiny frames; CPU only.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.detection.base import Detection, FaceDetector
from fsrfer_edge.detection.blazeface import METADATA_KEY, AnchorLayout, anchor_centres, decode
from fsrfer_edge.errors import InputError, ModelError


# -- BlazeFace: anchors, decoding, metadata ---------------------------------------------------------------------------
def test_blazeface_anchors_cover_a_partial_last_cell_in_both_directions() -> None:
    # Mutant: rows counted as height // stride (a floor), dropping the anchors of a partial last row.
    layout = AnchorLayout(64, (8,), (1,), 0.5)
    a = anchor_centres(layout, 20, 12)  # 3 rows (20 / 8 rounded up) of 2 columns (12 / 8 rounded up)
    assert a.shape == (6, 2)
    assert sorted({float(y) for y in a[:, 1]}) == [4.0, 12.0, 20.0]
    assert sorted({float(x) for x in a[:, 0]}) == [4.0, 12.0]


def test_blazeface_keypoints_are_offsets_from_the_anchor_x_then_y() -> None:
    # Mutant: keypoints added to the anchor centre with x and y swapped (hidden by an anchor at x == y).
    anchors = np.array([[40.0, 8.0]], np.float32)
    reg = np.zeros((1, 16), np.float32)
    reg[0, 2:4] = [10, 10]
    reg[0, 4:6] = [1, 2]
    reg[0, 14:16] = [-3, 5]
    _, _, pts = decode(reg, np.array([5.0]), anchors, 0.5)
    assert pts[0, 0].tolist() == [41.0, 10.0] and pts[0, 5].tolist() == [37.0, 13.0]


def _meta(**doc: Any) -> dict[str, str]:
    return {METADATA_KEY: json.dumps(doc)}


def test_blazeface_metadata_defaults_to_centred_anchors_and_multiples_of_32() -> None:
    # Mutants: the default anchor_offset (0.5, the cell centre) or size_multiple (32) changed.
    layout = AnchorLayout.from_metadata(_meta(input_size=128, strides=[8, 16], anchors_per_cell=[2, 6]), "m.onnx")
    assert (layout.offset, layout.size_multiple, layout.face_px) == (0.5, 32, 32.0)
    assert anchor_centres(layout, 16, 16)[0].tolist() == [4.0, 4.0]


@pytest.mark.parametrize("face_px,ok", [(4, True), (1024, True), (3.5, False), (1, False)])
def test_blazeface_metadata_face_px_must_lie_in_4_to_1024(face_px: float, ok: bool) -> None:
    # Mutant: the metadata's lower bound on face_px loosened from 4 to 1.
    meta = _meta(input_size=256, strides=[16, 32], anchors_per_cell=[2, 6], face_px=face_px)
    if ok:
        assert AnchorLayout.from_metadata(meta, "m.onnx").face_px == face_px
    else:
        with pytest.raises(ModelError, match="m.onnx.*face_px"):
            AnchorLayout.from_metadata(meta, "m.onnx")


def test_blazeface_metadata_with_a_stride_per_head_but_not_an_anchor_count_per_head_is_refused() -> None:
    # Mutant: the equal-length check of strides and anchors_per_cell dropped (zip would drop a head unseen).
    meta = _meta(input_size=256, strides=[16, 32], anchors_per_cell=[2])
    with pytest.raises(ModelError, match="equal length"):
        AnchorLayout.from_metadata(meta, "m.onnx")



def test_blazeface_decode_refuses_outputs_for_another_anchor_count() -> None:
    # Mutant: the check of the regressors' anchor count against the layout's dropped (an IndexError, or boxes
    # decoded on the wrong anchors).
    anchors = np.array([[8.0, 8.0], [24.0, 8.0]], np.float32)
    with pytest.raises(ModelError, match="returned 3 anchors; the layout has 2"):
        decode(np.zeros((3, 16), np.float32), np.zeros(3, np.float32), anchors, 0.5)


@pytest.mark.needs("onnx")
def test_a_blazeface_model_taking_a_second_input_is_refused_when_loaded(tmp_path: Any) -> None:
    # Mutant: the inputs checked to contain 'image' rather than to be exactly 'image': a model that needs a second
    # input loaded, then failed in every detect() for the feed it never got.
    pytest.importorskip("onnxruntime")
    import onnx
    from onnx import TensorProto, helper

    from fsrfer_edge.detection.blazeface import DEFAULT_BLAZEFACE, BlazeFaceDetector

    shipped = {p.key: p.value for p in onnx.load(str(DEFAULT_BLAZEFACE)).metadata_props}
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", "H", "W", 3]) for n in ("image", "mask")]
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("regressors", "classificators")]
    nodes = [helper.make_node("Identity", ["image"], ["regressors"]), helper.make_node("Identity", ["mask"],
                                                                                        ["classificators"])]
    model = helper.make_model(helper.make_graph(nodes, "g", ins, outs), opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: shipped[METADATA_KEY]})
    onnx.save(model, str(tmp_path / "two.onnx"))
    with pytest.raises(ModelError, match="inputs/outputs are not image -> regressors, classificators"):
        BlazeFaceDetector(tmp_path / "two.onnx", threads=1)

# -- BlazeFace: the detector's defaults and options ------------------------------------------------------------------
@pytest.fixture(scope="module")
def blaze() -> Any:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge.detection.blazeface import BlazeFaceDetector

    det = BlazeFaceDetector()
    yield det
    det.close()


def test_blazeface_default_options(blaze: Any) -> None:
    # Mutants: the defaults of iou (0.3), max_cover (0.7), size_slack (1.5), min_score (0.5) or min_face (8) changed.
    assert (blaze.iou, blaze.max_cover, blaze.size_slack, blaze.min_score, blaze.min_face) == (0.3, 0.7, 1.5, 0.5, 8.0)
    assert blaze.threads is None and blaze.face_px == blaze.layout.face_px == 32.0


def test_blazeface_face_px_override_must_be_a_number() -> None:
    # Mutant: the face_px override taken with float() unchecked: a string "40" was accepted.
    pytest.importorskip("onnxruntime")
    from fsrfer_edge.detection.blazeface import BlazeFaceDetector

    with pytest.raises(InputError, match="face_px"):
        BlazeFaceDetector(face_px="40")


class _RawSession:
    """A stand-in ONNX Runtime session returning fixed raw BlazeFace outputs, recording the batches it ran."""

    def __init__(self, reg: np.ndarray, logits: np.ndarray) -> None:
        self.reg, self.logits, self.batches = reg, logits, []

    def run(self, names: list, feeds: dict) -> list:
        self.batches.append(feeds["image"])
        n = feeds["image"].shape[0]
        return [np.repeat(self.reg[None], n, 0), np.repeat(self.logits[None, :, None], n, 0)]


def test_blazeface_network_decodes_a_wide_input_on_anchors_laid_out_height_by_width() -> None:
    # Mutant: anchor_centres called with (width, height): the same anchor count, the anchors in the wrong places.
    pytest.importorskip("onnxruntime")
    from fsrfer_edge.detection.blazeface import BlazeFaceDetector

    det = BlazeFaceDetector()
    try:
        n = len(anchor_centres(det.layout, 32, 64))
        reg, logits = np.zeros((n, 16), np.float32), np.full(n, -20.0, np.float32)
        k = 7  # stride 16, two anchors a cell: the 4th cell of the only full row of 4 columns
        reg[k, 2:4], logits[k] = [10, 10], 5.0
        det._session = _RawSession(reg, logits)
        [(boxes, scores, _)] = det._network(np.zeros((1, 32, 64, 3), np.uint8))
        assert det._session.batches[0].dtype == np.float32
        assert boxes.tolist() == [[51.0, 3.0, 61.0, 13.0]] and len(scores) == 1
    finally:
        det.close()



# -- the detector base: NMS inputs, output checks, close -------------------------------------------------------------
def test_nms_functions_take_one_box_given_as_a_flat_four_tuple() -> None:
    # Mutant: the (4,) -> (1, 4) reshape of a single box dropped: one flat box became an InputError.
    from fsrfer_edge.detection import drop_nested, nms, weighted_nms

    box = np.array([1.0, 2.0, 5.0, 8.0])
    assert nms(box, [0.9]).tolist() == [0] and drop_nested(box, [0.9]).tolist() == [0]
    merged, scores, _ = weighted_nms(box, [0.9])
    assert merged.tolist() == [[1.0, 2.0, 5.0, 8.0]] and scores.tolist() == [0.9]



def test_weighted_nms_refuses_keypoints_that_are_not_x_y_pairs() -> None:
    # Mutant: only the points' rank and count checked, not the pair axis: (N, K, 3) points gave a bare ValueError.
    from fsrfer_edge.detection import weighted_nms

    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]])
    with pytest.raises(InputError, match=r"points of shape \(2, 5, 3\).*\(2, K, 2\)"):
        weighted_nms(boxes, [0.9, 0.8], 0.3, np.zeros((2, 5, 3)))

class _Fixed(FaceDetector):
    """A plug-in detector returning fixed detections; counts its _close calls."""

    name = "fixed"

    def __init__(self, found: list) -> None:
        super().__init__()
        self.found, self.closes = found, 0

    def _detect(self, frame: np.ndarray) -> list:
        return list(self.found)

    def _close(self) -> None:
        self.closes += 1


def test_detect_drops_a_box_under_one_pixel_high_once_clipped_to_the_frame() -> None:
    # Mutant: only the clipped box's width checked against 1 pixel, not its height.
    found = [Detection((2.0, 9.5, 8.0, 12.0), 0.9), Detection((2.0, -3.0, 8.0, 0.5), 0.8),
             Detection((2.0, 3.0, 8.0, 4.0), 0.7)]
    with _Fixed(found) as det:
        assert [d.box for d in det.detect(np.zeros((10, 10, 3), np.uint8))] == [(2.0, 3.0, 8.0, 4.0)]


def test_a_plugin_may_return_its_detections_as_a_tuple() -> None:
    # Mutant: only a list accepted from a plug-in's _detect: a tuple (a Sequence, as its signature says) refused.
    class AsTuple(_Fixed):
        def _detect(self, frame: np.ndarray) -> tuple:
            return tuple(self.found)

    with AsTuple([Detection((1.0, 1.0, 5.0, 6.0), 0.4), Detection((2.0, 2.0, 9.0, 9.0), 0.8)]) as det:
        assert [d.score for d in det.detect(np.zeros((10, 10, 3), np.uint8))] == [0.8, 0.4]


def test_closing_a_detector_twice_frees_its_resources_once() -> None:
    # Mutant: close() calls _close() every time, not only the first (a second close freed a session again).
    det = _Fixed([])
    det.close()
    det.close()
    with det:
        pass
    assert det.closed and det.closes == 1


# -- the detector factory ---------------------------------------------------------------------------------------------
def _opencv_or_skip() -> None:
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "CascadeClassifier"):
        pytest.skip("OpenCV 5 has no cascade classifier")


@pytest.mark.parametrize("problem,level", [("not installed", "INFO"), ("broken", "WARNING")])
def test_auto_says_why_it_chose_opencv_at_info_when_onnxruntime_is_absent_and_warns_when_broken(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, problem: str, level: str) -> None:
    # Mutant: 'auto' warned whenever it fell back, also where onnxruntime is simply not installed (an install
    # choice, the pip extra 'cpu' left out), not only where it is installed but fails to import.
    _opencv_or_skip()
    from fsrfer_edge import detection

    why = detection._NOT_INSTALLED if problem == "not installed" else "onnxruntime cannot be imported (ImportError: x)"
    monkeypatch.setattr(detection, "_onnxruntime_problem", lambda: why)
    with caplog.at_level("INFO", logger="fsrfer_edge.detection"):
        with detection.create_detector("auto") as det:
            assert det.name == "opencv"
    [record] = [r for r in caplog.records if "detector 'auto' chose" in r.getMessage()]
    assert record.levelname == level


def test_opencv_named_with_threads_is_refused_not_warned_about() -> None:
    # Mutant: the check of threads= for 'opencv' dropped: the call fell into 'auto''s fallback warning and ran.
    _opencv_or_skip()
    from fsrfer_edge.detection import create_detector

    with pytest.raises(InputError, match="threads= applies to the ONNX detectors.*'opencv'"):
        create_detector("opencv", threads=2)


def test_detector_settings_reads_a_plugin_s_boolean_or_text_settings_as_missing() -> None:
    # Mutant: _number took a bool as a number: a plug-in's min_face=True was reported as 1.0.
    from fsrfer_edge.detection import detector_settings

    det = _Fixed([])
    det.min_score, det.min_face, det.threads, det.path = "high", True, True, None  # type: ignore[attr-defined]
    assert detector_settings(det, 0.25) == {"name": "fixed", "min_score": None, "min_face": None, "margin": 0.25,
                                            "threads": None, "model": None}
    det.min_score, det.min_face, det.threads = np.float32(0.5), np.int64(12), np.int64(3)  # type: ignore[attr-defined]
    assert detector_settings(det, 0)["min_score"] == 0.5 and detector_settings(det, 0)["min_face"] == 12.0
    assert detector_settings(det, 0)["threads"] == 3
