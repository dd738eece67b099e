"""Review of the face confidence (fsrfer_edge.confidence, Recognizer(confidence=...)): calibrations built by hand,
bad input refused saying what was expected, the argument checked before a model is opened, and the sizes a
prediction's confidence reads across the Recognizer's paths."""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

from fsrfer_edge.confidence import ScoreCalibration, fit_logistic
from fsrfer_edge.errors import InputError, ModelError

from _faces import blob_face as _face  # tests/ is on sys.path

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


# -- a calibration built by hand ---------------------------------------------------------------------------------
def test_a_calibration_built_from_lists_and_numpy_numbers_is_the_one_its_file_holds(tmp_path):
    cal = ScoreCalibration(list(CLASSES), "logistic", [1, np.float32(4.0)],  # type: ignore[arg-type]
                           np.array([[1.5, 0.25], [1.0, 0.0]], np.float32), [10, np.int64(12)])  # type: ignore[arg-type]
    assert cal.mismatch(CLASSES, "") is None                    # a list of the model's classes is the model's
    assert cal.classes == CLASSES and cal.factors == (1.0, 4.0) and cal.params == ((1.5, 0.25), (1.0, 0.0))
    assert all(type(v) is float for v in cal.factors + cal.params[0]) and all(type(v) is int for v in cal.n)
    loaded = ScoreCalibration.load(cal.save(tmp_path / "m.scores.json"))  # numpy numbers: JSON written
    assert loaded == cal and hash(loaded) == hash(cal)
    assert pickle.loads(pickle.dumps(cal)) == cal


@pytest.mark.parametrize("kw, match", [
    ({"params": (0.7,)}, r"per factor, 1 number\(s\)"),                      # not one tuple per factor
    ({"factors": ("a",)}, "expected increasing factors >= 1"),
    ({"params": (("x",),)}, r"per factor, 1 number\(s\) for kind 'temperature'"),
    ({"n": (5, 6)}, r"n \[5, 6\]; expected one face count >= 1 per factor"),
    ({"n": (-1,)}, "expected one face count >= 1 per factor"),
    ({"classes": "ab"}, "expected a list of at least 2 class names"),
])
def test_a_malformed_calibration_is_refused_saying_what_was_expected(kw, match):
    args = dict(classes=CLASSES, kind="temperature", factors=(1.0,), params=((0.7,),))
    args.update(kw)
    with pytest.raises(ModelError, match=match):
        ScoreCalibration(**args)  # type: ignore[arg-type]


# -- bad input ---------------------------------------------------------------------------------------------------
_T = ScoreCalibration(CLASSES, "temperature", (1.0,), ((0.7,),))


@pytest.mark.parametrize("call, match", [
    (lambda: _T.confidence([["a"] * 7], 1.0), r"expected \(N, num_classes\) finite numbers"),
    (lambda: _T.confidence(np.zeros((1, 7)), "big"), "expected one positive number per face"),
    (lambda: _T.params_at(["x"]), "expected positive finite numbers"),
    (lambda: fit_logistic(["x"], [1]), "expected N >= 1 finite probabilities"),
    (lambda: fit_logistic([0.5], ["x"]), "expected 0/1 outcomes"),
    (lambda: ScoreCalibration.fit({0.5: np.zeros((3, 7))}, {0.5: np.zeros(3, int)}, CLASSES),
     "factors >= 1"),
    (lambda: ScoreCalibration.fit({"big": np.zeros((3, 7))}, {"big": np.zeros(3, int)}, CLASSES),
     "factors >= 1"),
])
def test_bad_input_is_an_input_error_saying_what_was_expected(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_extreme_logits_give_a_confidence_without_overflow():
    cal = ScoreCalibration(CLASSES, "logistic", (1.0, 8.0), ((2.2, 0.7), (1.1, 0.15)))
    hot = ScoreCalibration(CLASSES, "temperature", (1.0,), ((0.05,),))
    z = np.zeros((3, 7), np.float32)
    z[0, 0] = 3e38                        # float32's largest: the score is exactly 1
    z[1, 1], z[1, 2] = 1e4, -3e38
    z[2] = np.float32(1e-30)              # all equal: 1/7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for c in (cal, hot):
            out = c.confidence(z, [1.0, 3.0, 20.0])
            assert np.isfinite(out).all() and ((out > 0) & (out <= 1)).all()
    z64 = np.array([[1e308, -1e308, 0, 0, 0, 0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cal.confidence(z64, 1.0)[0] == pytest.approx(1.0)
        assert hot.confidence(z64, 1.0)[0] == pytest.approx(1.0)


# -- the Recognizer ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rec():
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer

    r = Recognizer(threads=1, spinning=False, max_batch=2)
    yield r
    r.close()


@pytest.mark.parametrize("value, error, match", [
    (3, InputError, "expected 'auto', None, a ScoreCalibration"),
    (False, InputError, "expected 'auto', None, a ScoreCalibration"),
    ("no-such.scores.json", ModelError, "not a readable score calibration"),
])
def test_a_bad_confidence_argument_is_refused_before_the_model_is_opened(monkeypatch, value, error, match):
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import recognizer

    def never(*args, **kwargs):
        raise AssertionError("the model was opened before the confidence argument was checked")

    monkeypatch.setattr(recognizer, "open_backend", never)
    with pytest.raises(error, match=match):
        recognizer.Recognizer(threads=1, spinning=False, confidence=value)


def test_every_path_of_predict_reads_each_crop_s_size(rec):
    cal = rec.score_calibration
    assert cal is not None
    f48, f24, f12 = _face(48, 0), _face(24, 1), _face(12, 2)
    big = np.clip(np.rint(np.kron(f48, np.ones((2, 2))) + np.random.default_rng(3).normal(0, 6, (96, 96))),
                  0, 255).astype(np.uint8)                                  # a 96 px crop, not pixel-repeated
    dim = (f48 // 8 + 100).astype(np.uint8)                                 # low contrast: raised, fast path
    crops = [f48, f24, big, f12, dim, f48.astype(np.float32), np.repeat(f24[..., None], 3, axis=2)]
    preds = rec.predict(crops)                                              # 7 crops, max_batch 2: split
    logits = rec.predict_logits(rec.prepare(crops))
    want = cal.confidence(logits, [1.0, 2.0, 0.5, 4.0, 1.0, 1.0, 2.0])
    np.testing.assert_allclose([p.confidence for p in preds], want, rtol=1e-6)
    # the fast paths (all uint8 at 48 px, a dim one among them) agree with the general one
    fast = rec.predict(np.stack([f48, dim, f48]))
    np.testing.assert_allclose([p.confidence for p in fast], [preds[0].confidence, preds[4].confidence,
                                                              preds[0].confidence], rtol=1e-6)
    # a crop larger than the input holds the first factor's map
    assert cal.confidence(logits[2:3], 0.5)[0] == pytest.approx(cal.confidence(logits[2:3], 1.0)[0])


def test_a_backend_adopted_through_attach_has_no_calibration_until_one_is_resolved(rec):
    """_attach (RemoteRecognizer's way in) sets no score calibration: confidence None until one is resolved."""
    from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend
    from fsrfer_edge.recognizer import DEFAULT_MODEL, Recognizer

    remote = Recognizer.__new__(Recognizer)
    remote._attach(OnnxRuntimeBackend(Path(DEFAULT_MODEL), providers="cpu", threads=1), 4)
    try:
        assert remote.score_calibration is None and remote.predict(_face(24))[0].confidence is None
    finally:
        remote.close()


def test_an_empty_confidence_path_and_a_recognizer_without_one_say_so():
    from fsrfer_edge import Recognizer

    with pytest.raises(InputError, match="empty string; expected 'auto', None"):
        Recognizer(threads=1, spinning=False, confidence="")
    with Recognizer(threads=1, spinning=False, confidence=None) as off:
        assert repr(off).endswith(", confidence=None)")
    with Recognizer(threads=1, spinning=False) as on:
        assert "confidence" not in repr(on)
