"""A tracked face's confidence: the tracker's spread, the calibration's track terms, and the crowd pipeline that joins
them (docs/experiments.md, "Terms per JPEG mark, decided on fresh clips")."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from fsrfer_edge.confidence import ScoreCalibration
from fsrfer_edge.errors import InputError, ModelError
from fsrfer_edge.tracking import FaceTracker

from _scripts import load_script

CLASSES = ("a", "b", "c")


def _cal(**kw) -> ScoreCalibration:
    base = ScoreCalibration(CLASSES, "logistic", (1.0, 4.0), ((1.2, 0.3), (0.8, -0.2)), (100, 100),
                            jpeg_params=((1.0, 0.1), (0.7, -0.5)))
    return dataclasses.replace(base, **kw) if kw else base


TERMS = ((0.5, -0.3, 1.5, 0.2), (-1.0, 0.4, 2.0, -0.6))


@pytest.fixture(scope="module")
def tmod():
    return load_script("scripts/track_maps.py", "track_maps")


def test_the_trackers_spread_is_the_studys_for_a_track_seen_in_every_frame(tmod) -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(5, 2))  # 5 frames of 2 faces that stay put
    boxes = np.array([[0, 0, 20, 20], [50, 50, 70, 70]], float)
    tracker = FaceTracker(half_life=2.0, confirm=1)
    for k in range(5):
        tracker.update(boxes, probs[k])
        want = tmod.track_features(probs[:k + 1], 2.0)
        np.testing.assert_allclose(tracker.spread, want["g"], atol=1e-9)
    assert (tracker.spread > 0).all()


def test_frames_that_repeat_have_no_spread_and_log_averaging_has_none() -> None:
    p = np.array([[0.6, 0.3, 0.1]])
    box = np.array([[0, 0, 20, 20]], float)
    tracker = FaceTracker()
    assert tracker.spread is None
    for _ in range(4):
        tracker.update(box, p)
        assert tracker.spread == pytest.approx([0.0], abs=1e-6)  # sqrt of rounding: as the study computes it
    logs = FaceTracker(aggregate="log")
    logs.update(box, p)
    assert logs.spread is None


def test_track_confidence_is_the_frames_map_without_spread_and_takes_the_marks_terms() -> None:
    cal = _cal(track_params=TERMS, track_half_life=2.0)
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
    logits = np.log(probs)
    for marks in ([False, False], [True, False], [True, True]):
        np.testing.assert_allclose(cal.track_confidence(probs, [0.0, 0.0], [1.0, 4.0], marks),
                                   cal.confidence(logits, [1.0, 4.0], marks), rtol=1e-12)
    z = np.log(0.7 / 0.3)
    a, b = cal.params_at([1.0], [True])[0]
    want = 1 / (1 + math.exp(-(a * z + b + 1.5 * 0.4 + 0.2 * 0.4 * z)))  # factor 1, marked: (c_jpeg, d_jpeg)
    assert cal.track_confidence(probs[:1], [0.4], 1.0, [True])[0] == pytest.approx(want)
    a, b = cal.params_at([1.0])[0]
    want = 1 / (1 + math.exp(-(a * z + b + 0.5 * 0.4 - 0.3 * 0.4 * z)))
    assert cal.track_confidence(probs[:1], [0.4], 1.0)[0] == pytest.approx(want)


def test_track_terms_survive_the_file_and_bad_ones_are_refused(tmp_path) -> None:
    cal = _cal(track_params=TERMS, track_half_life=2.0)
    path = cal.save(tmp_path / "m.scores.json")
    back = ScoreCalibration.load(path)
    assert back == cal and back.track_params == TERMS and back.track_half_life == 2.0
    assert ScoreCalibration.from_dict(_cal().to_dict()).track_params is None  # files without them still load
    for bad in ({"track_params": TERMS[:1], "track_half_life": 2.0},                 # one factor of two
                {"track_params": ((0.5, -0.3), (1.0, 0.4)), "track_half_life": 2.0},  # 2 numbers, not 4
                {"track_params": TERMS, "track_half_life": None},
                {"track_params": TERMS, "track_half_life": 0.0},
                {"track_params": ((math.nan, 0, 0, 0), TERMS[1]), "track_half_life": 2.0}):
        with pytest.raises(ModelError, match="track_params"):
            _cal(**bad)
    with pytest.raises(ModelError, match="track_params"):
        _cal(kind="temperature", params=((1.0,), (1.2,)), jpeg_params=None, track_params=TERMS, track_half_life=2.0)
    with pytest.raises(ModelError, match="no tracked-face terms"):
        _cal().track_confidence([[0.5, 0.3, 0.2]], [0.0], 1.0)
    with pytest.raises(InputError, match="spread"):
        cal.track_confidence([[0.5, 0.3, 0.2]], [-0.1], 1.0)
    with pytest.raises(InputError, match="probs"):
        cal.track_confidence([[0.5, 0.5]], [0.0], 1.0)


def test_the_script_writes_a_test_runs_terms_into_a_calibration(tmod, tmp_path) -> None:
    import json

    path = _cal(factors=(1.0, 2.0), params=((1.2, 0.3), (0.8, -0.2))).save(tmp_path / "m.scores.json")
    result = tmp_path / "r.json"
    result.write_text(json.dumps({"per_mark": True, "split": "test", "seed": 0, "half_life": 2.0,
                                  "track_params": [{"1": [[0.5, -0.3], [1.5, 0.2]], "2": [[-1, 0.4], [2, -0.6]]}]}))
    assert tmod.main(["--write-calibration", str(path), "--from-json", str(result)]) == 0
    cal = ScoreCalibration.load(path)
    assert cal.track_params == ((0.5, -0.3, 1.5, 0.2), (-1.0, 0.4, 2.0, -0.6)) and cal.track_half_life == 2.0
    result.write_text(json.dumps({"per_mark": False, "split": "test", "track_params": [{}]}))
    with pytest.raises(SystemExit, match="per-mark"):
        tmod.main(["--write-calibration", str(path), "--from-json", str(result)])


def test_tracked_faces_get_a_confidence_where_the_calibration_has_terms_for_the_trackers_half_life() -> None:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer
    from fsrfer_edge.detection import Detection, FaceDetector

    class Fixed(FaceDetector):
        name = "fixed"

        def _detect(self, frame):
            return [Detection((10.0, 10.0, 34.0, 34.0), 0.9)]

    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    with Recognizer(threads=1, spinning=False) as plain:
        shipped = plain.score_calibration
    assert shipped is not None
    terms = tuple((0.3, -0.1, 0.6, 0.05) for _ in shipped.factors)
    cal = dataclasses.replace(shipped, track_params=terms, track_half_life=2.0)
    with Recognizer(threads=1, spinning=False, confidence=cal) as rec, CrowdAnalyzer(rec, Fixed()) as crowd:
        tracked = list(crowd.analyze_stream(iter(frames), track=FaceTracker(half_life=2.0, confirm=1)))
        other = list(crowd.analyze_stream(iter(frames), track=FaceTracker(half_life=4.0, confirm=1)))
        single = crowd.analyze(frames[0])
    first = tracked[0].faces[0]
    assert first.confidence == pytest.approx(first.frame_confidence, rel=1e-6)  # one frame: no spread
    assert first.frame_confidence == pytest.approx(single.faces[0].confidence, rel=1e-6)
    later = tracked[-1].faces[0]
    assert later.confidence is not None and later.confidence != pytest.approx(later.frame_confidence)
    d = later.to_dict(tracked[-1].classes)
    assert d["confidence"] == round(later.confidence, 4)
    assert all(f.confidence is None for r in other for f in r.faces)  # another half-life: no terms for it


def test_the_smoothers_spread_is_the_trackers_and_an_unknown_key_is_refused(tmod) -> None:
    from fsrfer_edge.tracking import ExpressionSmoother

    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(3), size=(5,))
    smoother, tracker = ExpressionSmoother(), FaceTracker(confirm=1)
    for k in range(5):
        smoother.update("f", probs[k], k)
        tracker.update(np.array([[0, 0, 20, 20]], float), probs[k:k + 1])
        assert smoother.spread("f") == pytest.approx(float(tracker.spread[0]), abs=1e-9)
    assert smoother.spread("f") == pytest.approx(float(tmod.track_features(probs[:, None], 2.0)["g"][0]), abs=1e-9)
    with pytest.raises(InputError, match="no frames"):
        smoother.spread("g")
    with pytest.raises(InputError, match="cannot be hashed"):
        smoother.spread(["unhashable"])
    logs = ExpressionSmoother(aggregate="log")
    logs.update("f", probs[0], 0)
    assert logs.spread("f") is None
