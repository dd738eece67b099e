"""A face's confidence (fsrfer_edge.confidence): the fits, the map between sizes, the file, and what the Recognizer
and the crowd analyser give with it."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fsrfer_edge.confidence import (SUFFIX, ScoreCalibration, calibration_error, fit_logistic, fit_temperature,
                                    score_calibration_for)
from fsrfer_edge.errors import InputError, ModelError

from _faces import blob_face as _face  # tests/ is on sys.path

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
PACKAGED = Path(__file__).resolve().parents[1] / "fsrfer_edge" / "models"
DATA = Path(os.environ.get("FSRFER_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "fer2013.npz"


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _logistic(params, factors=(1.0, 2.0, 4.0, 8.0), sha=""):
    return ScoreCalibration(CLASSES, "logistic", tuple(factors), tuple(tuple(p) for p in params), (), sha)


def test_the_logistic_fit_recovers_the_map_its_outcomes_were_drawn_from():
    rng = np.random.default_rng(0)
    s = rng.uniform(0.15, 0.95, 40000)
    right = (rng.random(len(s)) < _sigmoid(2.0 * np.log(s / (1 - s)) + 0.5)).astype(float)
    a, b = fit_logistic(s, right)
    assert a == pytest.approx(2.0, abs=0.08) and b == pytest.approx(0.5, abs=0.05)
    # separable outcomes stay finite (the ridge), and the map still orders them
    a, b = fit_logistic(np.array([0.2, 0.3, 0.7, 0.8]), np.array([0.0, 0.0, 1.0, 1.0]))
    assert np.isfinite([a, b]).all() and a > 0


def test_the_temperature_fit_recovers_the_temperature_labels_were_drawn_at():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(20000, 7)) * 3
    p = np.exp(z / 2.0) / np.exp(z / 2.0).sum(1, keepdims=True)
    y = (p.cumsum(1) < rng.random((len(z), 1))).sum(1)
    assert fit_temperature(z, y) == pytest.approx(2.0, rel=0.05)


def test_between_sizes_the_map_is_interpolated_in_log_factor_and_held_outside():
    cal = _logistic([(1.0, 0.0), (2.0, 1.0), (3.0, 2.0), (5.0, 3.0)])
    q = cal.params_at([0.5, 1.0, 2 ** 0.5, 3.0, 8.0, 20.0])
    np.testing.assert_allclose(q[:, 0], [1.0, 1.0, 1.5, 2.0 + np.log(1.5) / np.log(2), 5.0, 5.0])
    np.testing.assert_allclose(q[:, 1], [0.0, 0.0, 0.5, 1.0 + np.log(1.5) / np.log(2), 3.0, 3.0])
    temps = ScoreCalibration(CLASSES, "temperature", (1.0, 4.0), ((0.5,), (2.0,)))
    np.testing.assert_allclose(temps.params_at([2.0])[:, 0], [1.0])  # log T halfway: T = 1
    one = ScoreCalibration(CLASSES, "temperature", (1.0,), ((0.7,),))
    np.testing.assert_allclose(one.params_at([1, 3, 9])[:, 0], 0.7)


def test_the_identity_maps_give_the_score_and_no_map_changes_a_label():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(50, 7)) * 2
    score = (np.exp(z) / np.exp(z).sum(1, keepdims=True)).max(1)
    same = _logistic([(1.0, 0.0)] * 4)
    np.testing.assert_allclose(same.confidence(z, np.full(50, 3.0)), score, rtol=1e-9)
    t1 = ScoreCalibration(CLASSES, "temperature", (1.0,), ((1.0,),))
    np.testing.assert_allclose(t1.confidence(z, 1.0), score, rtol=1e-9)
    sharp = ScoreCalibration(CLASSES, "temperature", (1.0,), ((0.5,),))
    assert (sharp.confidence(z, 1.0) > score).all()
    steep = _logistic([(2.0, 1.0)] * 4)
    conf = steep.confidence(z, np.linspace(1, 8, 50))
    assert ((conf > 0) & (conf < 1)).all()
    # a higher score never gets a lower confidence at one size
    order = np.argsort(score)
    assert (np.diff(steep.confidence(z, 2.0)[order]) >= -1e-12).all()


def test_the_fit_gives_each_factor_its_own_map(tmp_path):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 7, 3000)
    z = rng.normal(size=(3000, 7))
    z[np.arange(3000), y] += 2.0                                          # a large face: mostly right
    small = rng.normal(size=(3000, 7))
    small[np.arange(3000), y] += 0.5                                      # a small one: mostly wrong
    cal = ScoreCalibration.fit({1: z, 8: small}, {1: y, 8: y}, CLASSES, checkpoint_sha256="a" * 64, source="test")
    assert cal.kind == "logistic" and cal.factors == (1.0, 8.0) and cal.n == (3000, 3000)
    for f, logits in ((1.0, z), (8.0, small)):
        right = (logits.argmax(1) == y).mean()
        assert cal.confidence(logits, f).mean() == pytest.approx(right, abs=0.01)  # the likelihood's fit: means match
    temps = ScoreCalibration.fit({1: z, 8: small}, {1: y, 8: y}, CLASSES, kind="temperature")
    assert temps.kind == "temperature" and temps.params[0] != temps.params[1]
    assert ScoreCalibration.load(cal.save(tmp_path / "x.scores.json")) == cal
    assert hash(ScoreCalibration.load(tmp_path / "x.scores.json")) == hash(cal)


@pytest.mark.parametrize("call, match", [
    (lambda c: c.confidence(np.full((2, 7), np.nan), 1.0), "NaN or infinite"),
    (lambda c: c.confidence(np.zeros((0, 7)), 1.0), r"expected \(N, num_classes\)"),
    (lambda c: c.confidence(np.zeros((2, 5)), 1.0), "this calibration has 7"),
    (lambda c: c.confidence(np.zeros((2, 7)), [1.0, 2.0, 3.0]), r"one per face, \(2,\)"),
    (lambda c: c.confidence(np.zeros((2, 7)), [1.0, 0.0]), "positive finite"),
    (lambda c: ScoreCalibration.fit({1: np.zeros((3, 7))}, {2: np.zeros(3, int)}, CLASSES), "the same factors"),
    (lambda c: ScoreCalibration.fit({1: np.zeros((3, 7))}, {1: np.array([0, 1, 9])}, CLASSES), "0..6"),
    (lambda c: ScoreCalibration.fit({1: np.zeros((3, 7))}, {1: np.zeros(3, int)}, CLASSES, kind="x"), "kind"),
    (lambda c: fit_logistic(np.array([0.5, 1.5]), np.array([0.0, 1.0])), "probabilities"),
    (lambda c: fit_logistic(np.array([0.5, 0.6]), np.array([0.0, 2.0])), "0/1 outcomes"),
    (lambda c: calibration_error(np.array([0.5, 1.2]), np.array([0.0, 1.0])), "probabilities"),
    (lambda c: calibration_error(np.array([0.5, 0.6]), np.array([1.0, 0.0]), bins=0), "bins=0"),
])
def test_bad_input_says_what_was_expected(call, match):
    with pytest.raises(InputError, match=match):
        call(_logistic([(1.0, 0.0)] * 4))


@pytest.mark.parametrize("text, match", [
    ("{not json", "not a readable score calibration"),
    ("[1, 2]", "expected a JSON object"),
    ('{"classes": ["a", "b"], "kind": "logistic", "factors": [1]}', "expected classes, kind, factors and params"),
    ('{"classes": ["a", "b"], "kind": "logistic", "factors": [1, 2], "params": [[1, 0]]}', "per factor, 2"),
    ('{"classes": ["a", "b"], "kind": "logistic", "factors": [2, 1], "params": [[1, 0], [1, 0]]}', "increasing"),
    ('{"classes": ["a", "b"], "kind": "temperature", "factors": [1], "params": [[-1]]}', "temperatures > 0"),
    ('{"classes": ["a", "b"], "kind": "isotonic", "factors": [1], "params": [[1]]}', "kind 'isotonic'"),
])
def test_a_malformed_file_is_refused_saying_what_was_expected(tmp_path, text, match):
    (tmp_path / "m.scores.json").write_text(text)
    with pytest.raises(ModelError, match=match):
        ScoreCalibration.load(tmp_path / "m.scores.json")


def test_the_shipped_calibration_is_found_for_the_shipped_model_and_its_copies(tmp_path, caplog):
    pytest.importorskip("onnx")
    from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    shipped = ScoreCalibration.load(PACKAGED / ("default" + SUFFIX))
    info = OnnxRuntimeBackend(PACKAGED / "default.onnx", providers="cpu", threads=1).info
    assert shipped.mismatch(info.classes, info.checkpoint_sha256) is None and shipped.kind == "logistic"
    model = tmp_path / "mine.int8-u8s8.onnx"
    shutil.copy(PACKAGED / "default.onnx", model)
    assert score_calibration_for(model, info.classes, info.checkpoint_sha256) == shipped
    assert score_calibration_for(model, info.classes, "f" * 64) is None       # another checkpoint: none
    mine = _logistic([(1.5, 0.1)] * 4, sha=info.checkpoint_sha256)
    mine.save(tmp_path / "mine.scores.json")                                 # one beside the model wins
    assert score_calibration_for(model, info.classes, info.checkpoint_sha256) == mine
    (tmp_path / "mine.scores.json").write_text("{not json")
    with caplog.at_level("WARNING"):
        assert score_calibration_for(model, info.classes, info.checkpoint_sha256) == shipped
    assert "score calibration skipped" in caplog.text


def test_an_engine_in_the_cache_finds_the_file_beside_the_model_it_was_built_from(tmp_path):
    import socket

    model_dir, cache = tmp_path / "models", tmp_path / "cache"
    model_dir.mkdir()
    cache.mkdir()
    sha = "3" * 64
    mine = _logistic([(1.2, 0.1)] * 4, sha=sha)
    mine.save(model_dir / "fer.v2.scores.json")
    engine = cache / "fer.v2.fp16.1a2b3c4d.trt10.3.0.26.sm87.orin-16sm-61g.b1-32-128.engine"
    engine.write_bytes(b"engine")
    record = {"source_path": str(model_dir / "fer.v2.onnx"), "source_host": socket.gethostname()}
    (cache / (engine.name + ".json")).write_text(json.dumps(record))
    assert score_calibration_for(engine, CLASSES, sha) == mine
    record["source_host"] = "another-machine"                             # a path of another machine means nothing
    (cache / (engine.name + ".json")).write_text(json.dumps(record))
    assert score_calibration_for(engine, CLASSES, sha) is None
    (cache / (engine.name + ".json")).write_text("{corrupt")                # an unreadable record: none, no error
    assert score_calibration_for(engine, CLASSES, sha) is None


@pytest.fixture(scope="module")
def rec():
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer

    r = Recognizer(threads=1, spinning=False)
    yield r
    r.close()


def test_each_prediction_s_confidence_reads_its_crop_s_size(rec):
    cal = rec.score_calibration
    assert cal is not None and cal.kind == "logistic"
    crops = [_face(48, 0), _face(24, 1), _face(12, 2), _face(6, 3), _face(12, 4)[:, :9]]   # the last: 12x9
    preds = rec.predict(crops)
    logits = rec.predict_logits(rec.prepare(crops))
    want = cal.confidence(logits, [1.0, 2.0, 4.0, 8.0, 4.0])
    np.testing.assert_allclose([p.confidence for p in preds], want, rtol=1e-6)
    # read as a 48 px face, the 6 px one would be far more sure: the size matters
    assert abs(cal.confidence(logits[3:4], 1.0)[0] - preds[3].confidence) > 0.01


def test_a_crop_enlarged_by_repeating_pixels_gets_its_source_size_s_confidence(rec):
    small = _face(12, 5)
    big = np.repeat(np.repeat(small, 4, axis=0), 4, axis=1)                  # an app's nearest-neighbour 48 px
    a, b = rec.predict([small, big])
    assert a.label == b.label and b.confidence == pytest.approx(a.confidence, rel=1e-6)
    from fsrfer_edge import Recognizer

    with Recognizer(threads=1, spinning=False, corrections={"undo_pixel_repetition": False}) as plain:
        c = plain.predict(big)[0]
    assert c.confidence != pytest.approx(a.confidence, rel=1e-3)             # read as 48 px when not reduced


def test_the_confidence_argument(tmp_path, rec):
    from fsrfer_edge import Recognizer

    face = _face(16, 6)
    with Recognizer(threads=1, spinning=False, confidence=None) as off:
        assert off.score_calibration is None and off.predict(face)[0].confidence is None
    mine = _logistic([(1.0, 0.0)] * 4, sha=rec.info.checkpoint_sha256)       # the identity: confidence = score
    with Recognizer(threads=1, spinning=False, confidence=mine) as given:
        p = given.predict(face)[0]
        assert p.confidence == pytest.approx(p.score, rel=1e-6)
    other = _logistic([(1.0, 0.0)] * 4, sha="0" * 64)
    with pytest.raises(ModelError, match="measured on checkpoint 000000000000"):
        Recognizer(threads=1, spinning=False, confidence=other)
    other.save(tmp_path / "other.scores.json")
    with pytest.raises(ModelError, match="does not belong"):
        Recognizer(threads=1, spinning=False, confidence=tmp_path / "other.scores.json")
    with pytest.raises(InputError, match="expected 'auto', None, a ScoreCalibration"):
        Recognizer(threads=1, spinning=False, confidence=3)  # type: ignore[arg-type]


def test_crowd_faces_carry_their_confidence_and_tracked_ones_theirs(rec):
    from fsrfer_edge.crowd import CrowdAnalyzer
    from fsrfer_edge.tracking import FaceTracker

    frame = np.full((80, 120, 3), 90, np.uint8)
    frame[10:34, 10:34] = _face(24, 7)[..., None]
    frame[40:52, 60:72] = _face(12, 8)[..., None]
    boxes = [(10, 10, 34, 34), (60, 40, 72, 52)]
    with CrowdAnalyzer(rec, min_face=8, margin=0.0) as a:
        r = a.analyze(frame, boxes=boxes)
        crops = [frame[10:34, 10:34], frame[40:52, 60:72]]
        want = [p.confidence for p in rec.predict(crops)]
        assert [f.confidence for f in r.faces] == pytest.approx(want, rel=1e-6)
        assert json.loads(json.dumps(r.to_dict()))["faces"][0]["confidence"] == pytest.approx(want[0], abs=1e-4)

    from fsrfer_edge.detection import Detection, FaceDetector

    class Boxes(FaceDetector):
        name = "boxes"

        def _detect(self, frame):
            return [Detection(b, 0.99) for b in boxes]

    with CrowdAnalyzer(rec, Boxes(), margin=0.0, min_face=8) as a:
        tracked = list(a.analyze_stream([frame] * 3, track=True))
    faces = [f for res in tracked for f in res.faces]
    # the same frame thrice: no spread, so each track's confidence is its frame's (the shipped terms are in use)
    assert faces and [f.confidence for f in faces] == pytest.approx(want * 3, rel=1e-5)
    assert all(f.to_dict(rec.classes)["confidence"] == pytest.approx(f.confidence, abs=1e-4) for f in faces)
    with CrowdAnalyzer(rec, Boxes(), margin=0.0, min_face=8) as a:  # a half-life the terms were not fitted for
        other = list(a.analyze_stream([frame] * 3, track=FaceTracker(half_life=5)))
    faces = [f for res in other for f in res.faces]
    assert faces and all(f.confidence is None for f in faces)
    assert all("confidence" not in f.to_dict(rec.classes) for f in faces)


@pytest.mark.skipif(not DATA.is_file(), reason=f"FER+ data not found at {DATA}")
def test_on_fer_plus_test_the_mean_confidence_is_near_the_accuracy_at_each_size(rec):
    from fsrfer_edge.ferplus import load_labelled_faces

    from trainer.evaluate import small_crops

    faces = load_labelled_faces(DATA, "ferplus", "test")
    images, labels = faces.images[:800], faces.labels[:800]
    for f in (1, 4, 8):
        preds = rec.predict(list(small_crops(images, f)))
        right = np.mean([p.index == y for p, y in zip(preds, labels)])
        conf = np.mean([p.confidence for p in preds])
        score = np.mean([p.score for p in preds])
        assert abs(conf - right) < 0.05, (f, conf, right)
        if f == 1:
            assert right - score > 0.1  # what the confidence is for: the score is far under it at 48 px


def _jpeg(img: np.ndarray, quality: int = 50) -> np.ndarray:
    """A gray crop as a JPEG image decodes (Pillow)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))


def test_a_crop_that_is_a_jpeg_image_gets_the_jpeg_maps(rec):
    pytest.importorskip("PIL")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.preprocessing import jpeg_quality

    cal = rec.score_calibration
    assert cal.jpeg_params is not None and cal.jpeg_params != cal.params
    clean, snapshot = _face(24, 11), _jpeg(_face(24, 11))
    assert jpeg_quality(snapshot) is not None and jpeg_quality(clean) is None
    preds = rec.predict([clean, snapshot])
    logits = rec.predict_logits(rec.prepare([clean, snapshot]))
    np.testing.assert_allclose([p.confidence for p in preds], cal.confidence(logits, [2.0, 2.0], [False, True]),
                               rtol=1e-6)
    assert preds[1].confidence != pytest.approx(float(cal.confidence(logits[1:], 2.0)[0]), rel=1e-3)
    # marked also where the SDK does not soften it, and at the input size (the recogniser's fast path)
    big = _jpeg(_face(48, 12))
    with Recognizer(threads=1, spinning=False, corrections={"soften_jpeg": 0}) as plain:
        for crop, factor in ((snapshot, 2.0), (big, 1.0)):
            p = plain.predict(crop)[0]
            z = plain.predict_logits(plain.prepare(crop))
            assert p.confidence == pytest.approx(float(cal.confidence(z, factor, [True])[0]), rel=1e-6)


def test_jpeg_maps_are_fitted_where_enough_marked_faces_are_and_kept_from_the_base_elsewhere(tmp_path):
    rng = np.random.default_rng(5)
    y = rng.integers(0, 7, 400)
    z = rng.normal(size=(400, 7))
    z[np.arange(400), y] += 1.0
    base = _logistic([(1.0, 0.0), (1.5, 0.2), (2.0, 0.3), (2.5, 0.4)])
    got = base.with_jpeg({1.0: z, 2.0: z[:50], 4.0: z, 8.0: z[:0]}, {1.0: y, 2.0: y[:50], 4.0: y, 8.0: y[:0]})
    assert got.jpeg_params[1] == base.params[1] and got.jpeg_params[3] == base.params[3]      # under 100 faces
    assert got.jpeg_params[0] != base.params[0] and got.params == base.params
    assert ScoreCalibration.load(got.save(tmp_path / "j.scores.json")) == got
    np.testing.assert_allclose(got.confidence(z[:5], 1.0), base.confidence(z[:5], 1.0))   # no marks: the base
    assert base.with_jpeg({f: z[:10] for f in base.factors}, {f: y[:10] for f in base.factors}) is base  # none
    with pytest.raises(InputError, match="expected a logistic calibration"):
        ScoreCalibration(CLASSES, "temperature", (1.0,), ((1.0,),)).with_jpeg({1.0: z}, {1.0: y})
    with pytest.raises(InputError, match="expected this calibration's"):
        base.with_jpeg({1.0: z}, {1.0: y})
    with pytest.raises(InputError, match="one flag per face"):
        got.confidence(z[:5], 1.0, [True, False])
    with pytest.raises(ModelError, match="jpeg_params"):
        ScoreCalibration(CLASSES, "logistic", (1.0, 2.0), ((1.0, 0.0), (1.0, 0.0)), jpeg_params=((1.0, 0.0),))
