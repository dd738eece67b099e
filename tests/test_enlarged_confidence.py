"""Crops an app enlarged itself: the calibration's size estimate (fsrfer_edge.confidence.estimate_size,
ScoreCalibration.size_weights) and the Recognizer giving such crops the map at the factor it reads
(docs/experiments.md, "Crops an app enlarged itself")."""
from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest

from fsrfer_edge.confidence import ScoreCalibration, estimate_size, fit_size_estimator, size_features
from fsrfer_edge.errors import InputError, ModelError
from fsrfer_edge.preprocessing import degrade, shrink

from _faces import blob_face  # tests/ is on sys.path


def _faces(n: int = 60) -> np.ndarray:
    return np.stack([blob_face(48, s) for s in range(n)])


def _enlarged(faces: np.ndarray, factor: int) -> np.ndarray:
    return np.clip(np.rint(degrade(faces, factor)), 0, 255).astype(np.uint8)


def test_the_size_estimate_reads_smaller_factors_from_sharper_faces():
    faces = _faces()
    train = np.concatenate([_enlarged(faces[:40], f) for f in (1, 2, 4, 8)])
    w = fit_size_estimator(train, np.repeat([1.0, 2.0, 4.0, 8.0], 40))
    means = [np.exp2(np.log2(estimate_size(_enlarged(faces[40:], f), w, 8.0)).mean()) for f in (1, 2, 4, 8)]
    assert means == sorted(means) and means[0] < 1.5 and means[-1] > 5.0
    assert (estimate_size(_enlarged(faces, 8), w, 8.0) <= 8.0).all()
    assert size_features(faces[:3]).shape == (3, 7) and size_features(faces[:3, None]).shape == (3, 7)


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 2)), np.full((1, 8, 8), np.nan), np.zeros(5)])
def test_the_size_statistics_refuse_what_is_not_faces(bad):
    with pytest.raises(InputError, match="expected"):
        size_features(bad)


def _cal(**kw) -> ScoreCalibration:
    classes = ("a", "b", "c")
    return ScoreCalibration(classes, "logistic", (1.0, 2.0, 8.0), ((1.0, 1.0), (1.0, 0.0), (1.0, -1.0)), **kw)


def test_a_calibration_keeps_its_size_weights_through_its_file(tmp_path):
    cal = _cal(size_weights=[1, 2, 3, 4, 5, 6, np.float32(7)])
    assert cal.size_weights == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0) and hash(cal)
    cal.save(tmp_path / "m.scores.json")
    assert ScoreCalibration.load(tmp_path / "m.scores.json") == cal
    assert ScoreCalibration.from_dict(dataclasses.replace(cal, size_weights=None).to_dict()).size_weights is None
    with pytest.raises(ModelError, match="no size estimate"):
        _cal().estimated_factors(np.zeros((1, 8, 8)))


@pytest.mark.parametrize("bad", [[1.0] * 6, [1.0] * 6 + [float("nan")], "abcdefg", [1, 2, 3, 4, 5, 6, "x"],
                                 "1234567", 5])
def test_malformed_size_weights_are_refused_saying_what_was_expected(bad):
    with pytest.raises(ModelError, match="expected 7 finite numbers"):
        _cal(size_weights=bad)


@pytest.mark.parametrize("bad", ["1234567", "abc", 5, [1.0] * 6])
def test_a_file_with_malformed_size_weights_is_refused_naming_them(tmp_path, bad):
    path = tmp_path / "m.scores.json"
    path.write_text(json.dumps({**_cal().to_dict(), "size_weights": bad}))
    with pytest.raises(ModelError, match=r"size_weights .*expected 7 finite numbers"):
        ScoreCalibration.load(path)


def test_the_size_estimate_refuses_malformed_weights_and_bounds_saying_what_was_expected():
    faces = _faces(2)
    with pytest.raises(InputError, match=r"weights of shape \(3,\); expected 7 finite numbers"):
        estimate_size(faces, [1.0, 2.0, 3.0], 8.0)
    with pytest.raises(InputError, match=r"largest=0.5; expected one finite factor >= 1"):
        estimate_size(faces, [0.0] * 7, 0.5)
    with pytest.raises(InputError, match=r"pixels of shape \(2, 1, 2, 2\); expected"):  # as received
        size_features(np.zeros((2, 1, 2, 2)))


@pytest.mark.filterwarnings("error")
def test_steep_weights_read_a_flat_face_at_the_largest_factor_without_overflowing():
    flat = np.full((2, 48, 48), 128, np.uint8)
    got = estimate_size(flat, [0.0, 0.0, 0.0, 0.0, 30.0, 30.0, 30.0], 8.0)  # log2 factor about 4300
    assert got.tolist() == [8.0, 8.0]
    assert estimate_size(flat, [-2000.0] + [0.0] * 6, 8.0).tolist() == [1.0, 1.0]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("bad", [0.0, -2.0, float("nan")])
def test_fitting_the_size_estimate_refuses_factors_under_1_saying_which(bad):
    with pytest.raises(InputError, match=r"factors \[" + ("nan" if bad != bad else str(bad)) + r"\] \(1 of 10\); "
                                         r"expected one finite factor >= 1 per face"):
        fit_size_estimator(_faces(10), [1.0] * 9 + [bad])


def test_the_exports_size_estimate_reads_factors_as_the_maps_key_them():
    """40 px faces shrunk by 6 are 7 px: the maps key them x40/7, and so does the estimate fitted beside them (its
    fit has a constant: its mean log2 over the faces it was fitted on is their keys')."""
    from fsrfer_edge.export import cli
    from fsrfer_edge.preprocessing import Preprocessing

    pre = Preprocessing(input_size=40)
    faces = np.stack([blob_face(40, s) for s in range(30)])
    w = cli._size_weights(faces, (1, 6), pre)
    pixels = np.concatenate([pre.to_pixels(list(_enlarged(faces, f))) for f in (1, 6)])
    assert float(np.mean(size_features(pixels) @ np.asarray(w))) == pytest.approx(np.log2(40 / 7) / 2, abs=1e-9)


# -- Recognizer ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rec(calibrated_rec):
    return calibrated_rec  # tests/conftest.py


def _jpeg(img: np.ndarray, quality: int = 50) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


def test_a_crop_an_app_enlarged_takes_the_map_at_the_factor_read_from_it(rec):
    cal = rec.score_calibration
    face = blob_face(48, 3)
    crops = [_enlarged(face[None], 8)[0], face, np.repeat(np.repeat(_enlarged(face[None], 4)[0], 2, 0), 2, 1)]
    z = rec.predict_logits(rec.prepare(crops))
    est = cal.estimated_factors(rec.info.preprocessing.to_pixels(crops))
    assert est[0] > 4.0 and est[1] < 2.0 and est[2] > 2.0                     # 96 px, enlarged from 12 px, too
    got = [p.confidence for p in rec.predict(crops)]
    np.testing.assert_allclose(got, cal.confidence(z, est), rtol=1e-6)
    assert got[0] < cal.confidence(z[:1], 1.0)[0]                            # no longer read as a 48 px face


def test_a_small_crop_keeps_its_own_size_and_a_jpeg_crop_its_map_at_x1(rec):
    pytest.importorskip("PIL")
    cal = rec.score_calibration
    small, compressed = shrink(blob_face(48, 4), 4), _jpeg(_enlarged(blob_face(48, 5)[None], 4)[0])
    crops = [small, compressed]
    z = rec.predict_logits(rec.prepare(crops))
    np.testing.assert_allclose([p.confidence for p in rec.predict(crops)],
                               cal.confidence(z, [4.0, 1.0], [False, True]), rtol=1e-6)
    enlarged = _enlarged(blob_face(48, 6)[None], 8)                          # said to be from a JPEG frame
    z = rec.predict_logits(rec.prepare(enlarged))
    np.testing.assert_allclose(rec.predict(enlarged, jpeg=True)[0].confidence, cal.confidence(z, 1.0, [True]),
                               rtol=1e-6)


def test_a_calibration_without_the_estimate_reads_an_enlarged_crop_as_a_full_size_face():
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer

    with Recognizer(threads=1, spinning=False) as shipped:
        plain = dataclasses.replace(shipped.score_calibration, size_weights=None)
    crop = _enlarged(blob_face(48, 7)[None], 8)
    with Recognizer(threads=1, spinning=False, confidence=plain) as r:
        z = r.predict_logits(r.prepare(crop))
        np.testing.assert_allclose(r.predict(crop)[0].confidence, plain.confidence(z, 1.0), rtol=1e-6)
