"""Faces cut from JPEG frames: the frame's quality (jpeg_frame_quality), Recognizer.predict(jpeg=...), and the crowd
analyzer giving a JPEG frame's faces the confidence maps for compressed faces (docs/experiments.md, "Faces cut from
JPEG frames")."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

from fsrfer_edge.errors import InputError
from fsrfer_edge.preprocessing import JPEG_FRAME_WINDOW, jpeg_frame_quality, jpeg_quality

from _faces import blob_face  # tests/ is on sys.path

PIL = pytest.importorskip("PIL")


def _mosaic(rows: int = 6, cols: int = 8) -> np.ndarray:
    """A gray frame of seeded blob faces, 48 px each: (48 rows, 48 cols) uint8."""
    return np.concatenate([np.concatenate([blob_face(48, r * cols + c) for c in range(cols)], axis=1)
                           for r in range(rows)], axis=0)


def _tinted(gray: np.ndarray) -> np.ndarray:
    """A colour frame from a gray one, bright enough in red that some pixels clip at 255."""
    g = gray.astype(np.float64)
    return np.clip(np.stack([g * 1.3 + 5, g * 0.95, g * 0.8 + 10], axis=-1), 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


# -- jpeg_frame_quality --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("quality", [30, 50, 75])
def test_a_colour_jpeg_frame_is_read_at_its_quality_also_where_its_channels_clip(quality):
    frame = _tinted(_mosaic())
    assert (frame == 255).any()                                       # some blocks clip: they are left out
    assert jpeg_frame_quality(_jpeg(frame, quality)) == quality
    assert jpeg_frame_quality(_jpeg(_mosaic(), quality)) == quality   # gray


def test_a_clean_frame_and_one_saved_at_a_fine_quality_are_not_read():
    frame = _tinted(_mosaic())
    assert jpeg_frame_quality(frame) is None and jpeg_frame_quality(_mosaic()) is None
    assert jpeg_frame_quality(_jpeg(frame, 95)) is None


def test_a_face_cut_from_a_jpeg_frame_off_the_grid_is_not_marked_by_itself_but_its_frame_is():
    frame = _jpeg(_mosaic(), 50)
    crop = frame[51:75, 77:101]                                        # 24 px, its corner at (3, 5) on the grid
    assert jpeg_quality(crop) is None and jpeg_quality(frame[48:72, 72:96]) == 50
    assert jpeg_frame_quality(frame) == 50


def test_a_large_frame_is_read_in_a_window_at_its_centre_on_the_grid():
    big = _jpeg(_mosaic(12, 16), 50)                                   # 576 x 768
    assert min(big.shape) > JPEG_FRAME_WINDOW
    assert jpeg_frame_quality(big) == 50
    shifted = big[3:, 5:]                                              # the grid no longer starts at the corner
    assert jpeg_frame_quality(shifted) is None


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 2)), np.zeros((2, 8, 8, 3)), np.array([["a"]])])
def test_a_frame_that_is_not_one_image_is_refused_saying_what_was_expected(bad):
    with pytest.raises(InputError, match="expected one frame, HxW gray or HxWx3 RGB"):
        jpeg_frame_quality(bad)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("colour", [False, True])
def test_a_nan_or_infinite_pixel_leaves_its_block_out_without_a_warning(bad, colour):
    frame = _jpeg(_tinted(_mosaic()) if colour else _mosaic(), 50).astype(np.float64)
    frame[100, 130] = bad                                              # inside the window
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                 # numpy warned on inf (inf - inf) before
        assert jpeg_frame_quality(frame) == 50
        if not colour:
            assert jpeg_quality(frame[96:144, 128:176]) == 50
        assert jpeg_frame_quality(np.full((16, 16, 3) if colour else (16, 16), bad)) is None


def test_a_masked_frame_is_read_only_where_nothing_is_masked():
    frame = _jpeg(_mosaic(), 50)
    assert jpeg_frame_quality(np.ma.masked_array(frame, mask=np.zeros(frame.shape, bool))) == 50
    mask = np.zeros(frame.shape, bool)
    mask[100, 130] = True
    hidden = np.ma.masked_array(frame, mask=mask)
    with pytest.raises(InputError, match=r"masked array with \d+ masked pixel"):
        jpeg_frame_quality(hidden)


# -- Recognizer.predict(jpeg=...) -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rec(calibrated_rec):
    return calibrated_rec  # tests/conftest.py


def test_the_caller_can_say_the_faces_came_from_a_jpeg_image(rec):
    clean, compressed = blob_face(16, 1), _jpeg(blob_face(16, 2), 50)
    assert jpeg_quality(clean) is None and jpeg_quality(compressed) == 50
    faces = [clean, compressed]
    z = rec.predict_logits(rec.prepare(faces))
    cal = rec.score_calibration

    def confidences(**kw):
        return [p.confidence for p in rec.predict(faces, **kw)]

    np.testing.assert_allclose(confidences(), cal.confidence(z, 3.0, [False, True]), rtol=1e-6)  # each crop's own
    np.testing.assert_allclose(confidences(jpeg=True), cal.confidence(z, 3.0, [True, True]), rtol=1e-6)
    np.testing.assert_allclose(confidences(jpeg=False), cal.confidence(z, 3.0, [False, False]), rtol=1e-6)
    np.testing.assert_allclose(confidences(jpeg=[True, False]), cal.confidence(z, 3.0, [True, False]), rtol=1e-6)
    assert confidences(jpeg=np.array([True, True])) == confidences(jpeg=True)
    assert confidences(jpeg=True)[0] != confidences()[0]               # the clean crop now takes the JPEG map
    labels = [p.label for p in rec.predict(faces)]
    assert [p.label for p in rec.predict(faces, jpeg=True)] == labels  # only the confidence depends on it


@pytest.mark.parametrize("bad, words", [("yes", "expected None, True, False or one bool per face"),
                                        (1, "expected None, True, False or one bool per face"),
                                        ([1, 0], "expected None, True, False or one bool per face"),
                                        ([True], "1 flags for 2 faces")])
def test_a_bad_jpeg_argument_is_refused_before_the_model_runs(rec, monkeypatch, bad, words):
    def no_run(batch):
        raise AssertionError("the model ran")

    monkeypatch.setattr(rec, "predict_logits", no_run)
    with pytest.raises(InputError, match=words):
        rec.predict([blob_face(16, 1), blob_face(16, 2)], jpeg=bad)


def test_numpy_bools_are_taken_as_bools_also_as_a_0d_array(rec):
    faces = [blob_face(16, 1), _jpeg(blob_face(16, 2), 50)]
    want = [p.confidence for p in rec.predict(faces, jpeg=True)]
    for flag in (np.bool_(True), np.array(True), np.array([True, True]), (True, np.bool_(True))):
        assert [p.confidence for p in rec.predict(faces, jpeg=flag)] == want


@pytest.mark.parametrize("bad, words", [(np.array([[True, False]]), r"array of shape \(1, 2\) and dtype bool"),
                                        (np.array(1), r"array of shape \(\) and dtype int"),
                                        ([True] * 5000 + [1], r"jpeg\[5000\]=1 \(int\) of 5001 flags"),
                                        ((f for f in [True, True]), r"\(generator\)")])
def test_a_bad_jpeg_argument_is_named_on_one_short_line(rec, bad, words):
    with pytest.raises(InputError, match=words) as err:
        rec.predict([blob_face(16, 1), blob_face(16, 2)], jpeg=bad)
    message = str(err.value)
    assert "\n" not in message and len(message) < 200 and "expected None, True, False or one bool per face" in message


# -- CrowdAnalyzer ----------------------------------------------------------------------------------------------------
class _Boxes:
    """The crowd analyzer's boxes: faces of the mosaic, each cut 16 px square at an offset off the grid."""
    boxes = [(77.0, 51.0, 93.0, 67.0), (125.0, 101.0, 141.0, 117.0), (221.0, 147.0, 237.0, 163.0)]


def test_the_faces_of_a_jpeg_frame_take_the_maps_for_compressed_faces_and_a_clean_frames_do_not(rec):
    from fsrfer_edge.crowd import CrowdAnalyzer, crop_face
    from fsrfer_edge.detection import Detection, FaceDetector

    class Fixed(FaceDetector):
        name = "fixed"

        def _detect(self, frame):
            return [Detection(b, 0.9) for b in _Boxes.boxes]

    cal = rec.score_calibration
    with CrowdAnalyzer(rec, Fixed(), min_face=8) as crowd:
        for frame, marked in ((_tinted(_mosaic()), False), (_jpeg(_tinted(_mosaic()), 50), True)):
            result = crowd.analyze(frame)
            crops = [crop_face(frame, b, crowd.margin) for b in _Boxes.boxes]
            assert not any(jpeg_quality(np.asarray(c, float) @ np.array([0.299, 0.587, 0.114])) for c in crops)
            z = rec.predict_logits(rec.prepare(crops))
            factors = [rec.info.preprocessing.input_size / max(c.shape[:2]) for c in crops]
            want = cal.confidence(z, factors, [marked] * len(crops))
            np.testing.assert_allclose([f.confidence for f in result.faces], want, rtol=1e-6)


def test_a_tracked_face_and_its_frame_answer_read_their_confidence_with_the_frames_mark(rec):
    from fsrfer_edge.crowd import CrowdAnalyzer, crop_face
    from fsrfer_edge.detection import Detection, FaceDetector

    class Fixed(FaceDetector):
        name = "fixed"

        def _detect(self, frame):
            return [Detection(b, 0.9) for b in _Boxes.boxes]

    frame = _jpeg(_tinted(_mosaic()), 50)
    with CrowdAnalyzer(rec, Fixed(), min_face=8) as crowd:
        results = list(crowd.analyze_stream([frame, frame], track=True))
        crops = [crop_face(frame, b, crowd.margin) for b in _Boxes.boxes]
    z = rec.predict_logits(rec.prepare(crops))
    factors = [rec.info.preprocessing.input_size / max(c.shape[:2]) for c in crops]
    want = rec.score_calibration.confidence(z, factors, [True] * len(crops))
    for r in results:
        np.testing.assert_allclose([f.frame_confidence for f in r.faces], want, rtol=1e-6)
        # the same frame twice: no spread, so the track's confidence is the frame's map on the (same) mean
        np.testing.assert_allclose([f.confidence for f in r.faces], want, rtol=1e-5)
        d = r.faces[0].to_dict(r.classes)
        assert d["frame_confidence"] == round(float(want[0]), 4) and d["confidence"] == pytest.approx(want[0], abs=1e-4)


def test_a_jpeg_frames_faces_skip_the_size_estimate_also_where_the_calibration_has_no_jpeg_maps(rec):
    import dataclasses

    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer, crop_face
    from fsrfer_edge.detection import Detection, FaceDetector

    class Fixed(FaceDetector):
        name = "fixed"

        def _detect(self, frame):
            return [Detection(b, 0.9) for b in [(72.0, 48.0, 120.0, 96.0)]]   # a whole 48 px face: read at x1

    cal = dataclasses.replace(rec.score_calibration, jpeg_params=None)
    frame = _jpeg(_tinted(_mosaic()), 50)
    with Recognizer(threads=1, spinning=False, confidence=cal) as r, CrowdAnalyzer(r, Fixed(), min_face=8) as crowd:
        got = crowd.analyze(frame).faces[0].confidence
        crop = crop_face(frame, (72.0, 48.0, 120.0, 96.0), crowd.margin)
        z = r.predict_logits(r.prepare(crop))
        side = max(crop.shape[:2])
        assert side >= 48 and got == pytest.approx(float(cal.confidence(z, 48 / side)[0]), rel=1e-6)
        assert r.predict(crop)[0].confidence != pytest.approx(got, rel=1e-6)   # unmarked, it takes the estimate


def test_a_jpeg_frame_with_a_flat_centre_is_read_in_its_quarters_and_a_clean_one_is_not():
    frame = _tinted(_mosaic(12, 16))                                   # 576 x 768
    frame[160:416, 256:512] = (120, 118, 110)                          # a flat wall where the centre window falls
    from fsrfer_edge.preprocessing import _window_quality

    jpeg = _jpeg(frame, 50)
    centre = jpeg[160:416, 256:512]
    assert _window_quality(centre) == (None, True)                     # too flat to tell
    assert jpeg_frame_quality(jpeg) == 50
    assert jpeg_frame_quality(frame) is None


def test_a_clean_frame_is_left_after_its_centre_window_when_that_one_can_tell(monkeypatch):
    from fsrfer_edge import preprocessing

    calls = []
    real = preprocessing._window_quality
    monkeypatch.setattr(preprocessing, "_window_quality", lambda w: calls.append(w.shape) or real(w))
    assert jpeg_frame_quality(_tinted(_mosaic(12, 16))) is None and len(calls) == 1


def test_the_frame_reads_script_reads_a_textured_frame_at_its_quality() -> None:
    pytest.importorskip("PIL")
    from _scripts import load_script

    mod = load_script("scripts/jpeg_frame_reads.py", "jpeg_frame_reads")
    rng = np.random.default_rng(0)
    frame = np.clip(rng.normal(128, 40, (64, 64)), 0, 255).astype(np.uint8)  # no flat block anywhere
    assert mod.read_at(frame, 50) == 50 and mod.read_at(frame, 75) == 75
    assert mod.QUALITIES[0] == 20 and mod.QUALITIES[-1] == 80


def _with_flat_blocks(frame: np.ndarray, share: float = 0.35, seed: int = 0) -> np.ndarray:
    """``frame`` with a seeded share of its 8x8 blocks (on the grid) made flat, each at its own grey level."""
    out = frame.copy()
    rng = np.random.default_rng(seed)
    for by in range(frame.shape[0] // 8):
        for bx in range(frame.shape[1] // 8):
            if rng.random() < share:
                out[by * 8:by * 8 + 8, bx * 8:bx * 8 + 8] = rng.integers(20, 236)
    return out


@pytest.mark.parametrize("quality", [30, 35, 45, 55])
def test_a_frame_with_many_flat_blocks_is_read_at_qualities_whose_dc_step_is_not_a_multiple_of_8(
        monkeypatch, quality):
    from fsrfer_edge import preprocessing

    frame = _jpeg(_with_flat_blocks(_mosaic()), quality)
    assert jpeg_frame_quality(frame) == quality
    # the test without the flat-block tolerance misses it: the decoder rounds a flat block's 64 pixels alike
    monkeypatch.setattr(preprocessing, "JPEG_FLAT_TOLERANCE", preprocessing.JPEG_TOLERANCE)
    assert jpeg_frame_quality(frame) is None


def test_flat_blocks_do_not_make_a_clean_frame_read_and_crops_keep_their_test(monkeypatch):
    from fsrfer_edge import preprocessing

    clean = _with_flat_blocks(_mosaic(), share=0.6)
    assert jpeg_frame_quality(clean) is None and jpeg_frame_quality(_tinted(clean)) is None
    # a crop keeps the test without the flat-block tolerance (its marks feed the JPEG maps' studies): the same
    # image is read as a frame, not as a crop
    image = _jpeg(_with_flat_blocks(_mosaic(2, 2), share=0.35, seed=3), 30)
    assert jpeg_frame_quality(image) == 30 and jpeg_quality(image) is None
    monkeypatch.setattr(preprocessing, "JPEG_FLAT_TOLERANCE", preprocessing.JPEG_TOLERANCE)
    assert jpeg_frame_quality(image) is None


def test_the_flat_blocks_script_compares_the_tests_and_restores_the_tolerance() -> None:
    from _scripts import load_script

    from fsrfer_edge import preprocessing

    mod = load_script("scripts/jpeg_flat_blocks.py", "jpeg_flat_blocks")
    photo = _with_flat_blocks(_mosaic(4, 4))
    result = mod.held_out({"mosaic": photo})
    assert result["frames"] == len(mod.QUALITIES)
    assert result["read_new"] > result["read_old"] and result["lost"] == 0 and result["wrong_new"] == 0
    assert result["reads"]["mosaic"]["30"] == [None, 30]
    assert mod.clean({"mosaic": photo})["read_new"] == 0
    assert preprocessing.JPEG_FLAT_TOLERANCE == 4.0 and preprocessing._dc_qualities.__name__ == "_dc_qualities"
