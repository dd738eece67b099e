"""Review of the JPEG maps of the face confidence (ScoreCalibration.jpeg_params, with_jpeg, to_pixels(jpeg=...),
Recognizer's marks), the calibration error in the SDK and fsrfer-bench's measure_confidence: each flag lines up with
its face on every path, older files behave as before, and bad input is refused saying what was expected."""
from __future__ import annotations

import dataclasses
import io
import json
import types
from pathlib import Path

import numpy as np
import pytest

from fsrfer_edge.confidence import ScoreCalibration, calibration_error
from fsrfer_edge.errors import InputError
from fsrfer_edge.preprocessing import Corrections, Preprocessing, jpeg_quality

from _faces import blob_face as _face  # tests/ is on sys.path

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def _jpeg(img: np.ndarray, quality: int = 50) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))


def _logits(n: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, n)
    z = rng.normal(size=(n, 7))
    z[np.arange(n), y] += 1.0
    return z, y


_BASE = ScoreCalibration(CLASSES, "logistic", (1.0, 2.0), ((1.0, 0.0), (1.5, 0.2)))


# -- the calibration ---------------------------------------------------------------------------------------------
def test_a_factor_with_exactly_min_faces_marked_gets_a_map_of_its_own_and_one_fewer_keeps_the_base():
    z, y = _logits(100)
    got = _BASE.with_jpeg({1.0: z, 2.0: z[:99]}, {1.0: y, 2.0: y[:99]})
    assert got.jpeg_params is not None
    assert got.jpeg_params[0] != _BASE.params[0] and got.jpeg_params[1] == _BASE.params[1]


@pytest.mark.parametrize("bad", [[[1.0, 2.0], [3.0]], None, "logits"])
def test_with_jpeg_refuses_malformed_logits_saying_what_was_expected(bad):
    z, y = _logits(120)
    with pytest.raises(InputError, match="expected"):
        _BASE.with_jpeg({1.0: z, 2.0: bad}, {1.0: y, 2.0: y})


def test_an_older_file_without_jpeg_maps_loads_and_ignores_the_marks(tmp_path):
    path = tmp_path / "old.scores.json"
    path.write_text(json.dumps({"classes": list(CLASSES), "kind": "logistic", "factors": [1.0, 2.0],
                                "params": [[1.0, 0.0], [1.5, 0.2]], "n": [10, 10]}))
    old = ScoreCalibration.load(path)
    assert old.jpeg_params is None and old == dataclasses.replace(_BASE, n=(10, 10))
    z, _ = _logits(3)
    np.testing.assert_array_equal(old.confidence(z, [1.0, 2.0, 3.0], [True, False, True]),
                                  old.confidence(z, [1.0, 2.0, 3.0]))
    assert "jpeg_params" not in json.loads(old.save(tmp_path / "again.scores.json").read_text())


@pytest.mark.parametrize("right", [[0, 2], [0, float("nan")], [0.5, 1]])
def test_the_calibration_error_refuses_outcomes_that_are_not_0_or_1(right):
    with pytest.raises(InputError, match="0/1"):
        calibration_error([0.5, 0.5], right)


def test_the_calibration_error_takes_booleans():
    assert calibration_error([0.75, 0.75], [True, False]) == pytest.approx(25.0)


# -- the marks ---------------------------------------------------------------------------------------------------
def test_an_rgb_model_gives_one_unmarked_flag_per_face():
    pytest.importorskip("PIL")
    pre = Preprocessing(channels=3)
    faces = [_jpeg(_face(24, 1)), _face(12), np.repeat(_jpeg(_face(48, 2))[..., None], 3, axis=-1)]
    marks: list[bool] = []
    pre.to_pixels(faces, jpeg=marks)
    assert marks == [False, False, False]


@pytest.mark.parametrize("soften", [0.0, 1.0])
def test_a_list_mixing_a_crop_larger_than_the_input_with_small_ones_gives_aligned_flags(soften):
    pytest.importorskip("PIL")
    faces = [_jpeg(_face(64, 1)), _jpeg(_face(24, 1)), _face(16), _jpeg(_face(48, 3))]
    marks: list[bool] = []
    sides: list[int] = []
    Preprocessing().to_pixels(faces, corrections=Corrections(soften_jpeg=soften), sides=sides, jpeg=marks)
    assert marks == [False, True, False, True] and sides == [64, 24, 16, 48]


@pytest.fixture(scope="module")
def rec(calibrated_rec):
    return calibrated_rec  # tests/conftest.py


@pytest.mark.parametrize("soften", [0.0, 1.0])
def test_the_fast_path_marks_input_size_jpeg_crops_also_of_low_contrast(rec, soften):
    pytest.importorskip("PIL")
    from fsrfer_edge import Recognizer

    low = _jpeg(np.clip(_face(48, 3).astype(np.float64) * 0.25 + 90, 0, 255).astype(np.uint8))
    faces = np.stack([low, _face(48, 5), _jpeg(_face(48, 4))])
    want = [jpeg_quality(f) is not None for f in faces]
    assert want == [True, False, True]
    with Recognizer(threads=1, spinning=False, corrections={"soften_jpeg": soften}) as r:
        sides: list[int] = []
        marks: list[bool] = []
        r._prepare(faces, sides, marks)
        assert marks == want and sides == [48] * 3
        preds = r.predict(faces)
        z = r.predict_logits(r.prepare(faces))
        np.testing.assert_allclose([p.confidence for p in preds], r.score_calibration.confidence(z, 1.0, want),
                                   rtol=1e-6)


# -- fsrfer-bench --------------------------------------------------------------------------------------------------
def test_measure_confidence_without_a_calibration_says_one_is_expected(rec):
    from fsrfer_edge import Recognizer, bench

    images = np.stack([_face(48, s) for s in range(4)])
    with Recognizer(threads=1, spinning=False, confidence=None) as plain, \
            pytest.raises(InputError, match="score calibration"):
        bench.measure_confidence(plain, images, np.zeros(4, np.int64), factors=[2])


# -- fsrfer-export --eval-data -------------------------------------------------------------------------------------
def _runner(pixels: np.ndarray) -> np.ndarray:
    f = np.asarray(pixels, np.float64).reshape(len(pixels), -1)
    w = np.random.default_rng(0).normal(size=(f.shape[1], 7)) / 300
    return (f - f.mean(axis=1, keepdims=True)) @ w


@pytest.mark.parametrize("channels, side", [(3, 48), (1, 64)])
def test_the_export_fits_maps_for_an_rgb_model_and_another_input_size(tmp_path, channels, side):
    pytest.importorskip("PIL")
    from fsrfer_edge.export import cli
    from fsrfer_edge.preprocessing import resize

    rng = np.random.default_rng(1)
    images = np.clip(resize(rng.normal(120, 40, (120, 6, 6)), (side, side), "bicubic"), 0, 255).astype(np.uint8)
    labels = rng.integers(0, 7, 120)
    info = types.SimpleNamespace(preprocessing=Preprocessing(channels=channels, input_size=side), classes=CLASSES,
                                 checkpoint_sha256="ab" * 32)
    opts = cli.ExportOptions(source=Path("x.onnx"), name="m", eval_data=tmp_path / "x.npz", factors=(1, 2, 8))
    report: dict = {}
    cli._score_calibration(opts, info, _runner, images, labels, "npz", tmp_path, report)
    cal = ScoreCalibration.load(tmp_path / "m.scores.json")
    assert cal.factors == (1.0, 2.0, 8.0)
    if channels == 3:  # the SDK marks no RGB crop: no maps for them
        assert cal.jpeg_params is None and report["score_calibration"]["jpeg_params"] is None
    else:  # 64 and 32 px snapshots are marked; 8 px ones hold one block, those a 64 px model reads at x8
        assert cal.jpeg_params is not None and cal.jpeg_params[0] != cal.params[0]
