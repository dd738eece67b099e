"""Review of the score calibration's public API (confidence, params_at, track_confidence, with_jpeg, fit, its file)
against malformed input: JPEG marks that are not bools, numbers that are not real, another model's logits, strings
where a file holds numbers (and numbers where it holds names), and a tracked face with no probabilities. Each is
refused saying what was received and what was expected; valid input gives what it gave before."""
from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest

from fsrfer_edge.confidence import ScoreCalibration, calibration_error
from fsrfer_edge.errors import InputError, ModelError

CLASSES = ("a", "b", "c")
_CAL = ScoreCalibration(CLASSES, "logistic", (1.0, 4.0), ((1.2, 0.3), (0.8, -0.2)), (100, 100),
                        jpeg_params=((1.0, 0.1), (0.7, -0.5)),
                        track_params=((0.5, -0.3, 1.5, 0.2), (-1.0, 0.4, 2.0, -0.6)), track_half_life=2.0)
_Z = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
_P = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]])


# -- JPEG marks ----------------------------------------------------------------------------------------------------
_NOT_BOOLS = [["no", "no"], [0.5, 0.0], [np.nan, 0.0], [2, 0], np.array([None, "x"], dtype=object)]


@pytest.mark.parametrize("marks", _NOT_BOOLS, ids=["str", "float", "nan", "int", "object"])
@pytest.mark.parametrize("call", [
    lambda m: _CAL.confidence(_Z, [1.0, 2.0], m),
    lambda m: _CAL.params_at([1.0, 2.0], m),
    lambda m: _CAL.track_confidence(_P, [0.1, 0.2], [1.0, 2.0], m),
], ids=["confidence", "params_at", "track_confidence"])
def test_jpeg_marks_that_are_not_bools_are_refused_saying_what_was_received(call, marks):
    with pytest.raises(InputError, match=r"jpeg .*expected one bool per face"):
        call(marks)


def test_bool_marks_in_any_container_give_what_they_gave_before():
    want = _CAL.confidence(_Z, [1.0, 2.0], np.array([True, False]))
    for marks in ([True, False], (np.bool_(True), np.bool_(False)), np.array([[True], [False]])):
        np.testing.assert_array_equal(_CAL.confidence(_Z, [1.0, 2.0], marks), want)
    assert _CAL.confidence(_Z[:1], 1.0, True) == pytest.approx(want[:1])
    assert not np.allclose(want, _CAL.confidence(_Z, [1.0, 2.0]))  # the marks took the JPEG maps


# -- numbers that are not real -------------------------------------------------------------------------------------
@pytest.mark.parametrize("call", [
    lambda: _CAL.confidence(_Z + 1j, [1.0, 2.0]),
    lambda: _CAL.confidence(_Z, np.array([1.0 + 1j, 2.0])),
    lambda: _CAL.params_at(np.array([1.0 + 2j])),
    lambda: _CAL.track_confidence(_P + 0j, [0.1, 0.2], 1.0),
    lambda: _CAL.track_confidence(_P, np.array([0.1, 0.2]) + 1j, 1.0),
    lambda: _CAL.confidence(np.array([["1", "0", "0"]]), 1.0),
    lambda: _CAL.confidence(_Z, np.array(["1", "2"])),
    lambda: _CAL.confidence(_Z.astype("m8[s]"), [1.0, 2.0]),
    lambda: _CAL.confidence(_Z.astype("M8[s]"), [1.0, 2.0]),
    lambda: _CAL.confidence(_Z.astype(bool), [1.0, 2.0]),
    lambda: _CAL.confidence(_Z, np.array([True, True])),
    lambda: _CAL.track_confidence(_P, [True, False], 1.0),
    lambda: calibration_error(np.array([0.5, 0.5 + 0j]), [True, False]),
], ids=["complex logits", "complex factors", "complex params_at", "complex probs", "complex spread",
        "str logits", "str factors", "timedelta logits", "datetime logits", "bool logits", "bool factors",
        "bool spread", "complex confidence"])
def test_numbers_that_are_not_real_are_refused_not_cast(call):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's ComplexWarning is not a refusal: the imaginary part was dropped
        with pytest.raises(InputError, match="dtype .*expected"):
            call()


def test_outcomes_may_still_be_bools_and_numbers_of_any_real_dtype_still_read_the_same():
    assert calibration_error([0.9, 0.2], [True, False]) == calibration_error([0.9, 0.2], [1.0, 0.0])
    want = _CAL.confidence(_Z, [1.0, 2.0])
    np.testing.assert_array_equal(_CAL.confidence(_Z.astype(np.float32), np.array([1, 2], np.int64)), want)
    np.testing.assert_array_equal(_CAL.confidence(_Z.tolist(), [1, 2.0]), want)


# -- another model's logits ----------------------------------------------------------------------------------------
def test_with_jpeg_refuses_logits_of_another_class_count():
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(120, 5)), rng.integers(0, 5, 120)
    base = dataclasses.replace(_CAL, jpeg_params=None, track_params=None, track_half_life=None)
    with pytest.raises(InputError, match="5 classes; expected 3"):
        base.with_jpeg({1.0: z, 4.0: z}, {1.0: y, 4.0: y})


@pytest.mark.parametrize("min_faces", ["1", True, 0, -1, 2.5])
def test_with_jpeg_refuses_a_min_faces_that_is_not_a_count(min_faces):
    z = np.zeros((2, 3))
    with pytest.raises(InputError, match=r"min_faces=.*expected an integer >= 1"):
        _CAL.with_jpeg({1.0: z, 4.0: z}, {1.0: [0, 1], 4.0: [0, 1]}, min_faces=min_faces)


def test_with_jpeg_names_the_labels_factors_where_they_are_the_wrong_ones():
    z = np.zeros((2, 3))
    with pytest.raises(InputError, match=r"labels at factors \[1.0, 4.0, 8.0\]"):
        _CAL.with_jpeg({1.0: z, 4.0: z}, {1.0: [0, 1], 4.0: [0, 1], 8.0: [1, 1]})
    with pytest.raises(InputError, match="factors"):
        _CAL.with_jpeg({"x": z, 4.0: z}, {1.0: [0, 1], 4.0: [0, 1]})


def test_fit_refuses_class_names_given_as_one_string():
    with pytest.raises(InputError, match="classes 'abc'.*expected a list of class names"):
        ScoreCalibration.fit({1.0: _Z}, {1.0: [0, 1]}, "abc")  # type: ignore[arg-type]


# -- the file ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("edit, match", [
    ({"classes": "abc"}, "classes"),                       # was split into 'a', 'b', 'c'
    ({"classes": [1, 2, 3]}, "classes"),                   # was read as '1', '2', '3'
    ({"classes": [None, None, None]}, "classes"),          # was read as 'None' three times
    ({"params": ["12", "03"]}, "params"),                  # was read as (1, 2), (0, 3)
    ({"params": [["1.2", "0.3"], [0.8, -0.2]]}, "params"),
    ({"params": [[True, False], [0.8, -0.2]]}, "params"),
    ({"jpeg_params": [["1", "0"], [0.7, -0.5]]}, "jpeg_params"),
    ({"factors": "14"}, "factors"),                        # was read as (1, 4)
    ({"factors": [True, 4]}, "factors"),
    ({"n": [1.7, 100]}, r"\bn\b"),                          # was truncated to 1
    ({"n": [True, True]}, r"\bn\b"),
    ({"checkpoint_sha256": None}, "checkpoint_sha256"),    # was read as the checkpoint 'None'
    ({"checkpoint_sha256": 123}, "checkpoint_sha256"),
    ({"source": None}, "source"),
    ({"track_half_life": "2"}, "track_half_life"),
    ({"track_params": [["0.5", 0, 0, 0], [0, 0, 0, 0]]}, "track_params"),
])
def test_a_file_with_strings_for_numbers_or_numbers_for_names_is_refused(tmp_path, edit, match):
    d = _CAL.to_dict()
    d.update(edit)
    (tmp_path / "m.scores.json").write_text(json.dumps(d))
    with pytest.raises(ModelError, match=match):
        ScoreCalibration.load(tmp_path / "m.scores.json")


def test_a_calibration_built_with_no_checkpoint_string_is_refused_not_written_as_null():
    with pytest.raises(ModelError, match=r"checkpoint_sha256 None.*expected a str"):
        ScoreCalibration(CLASSES, "logistic", (1.0,), ((1.0, 0.0),), checkpoint_sha256=None)  # type: ignore[arg-type]


def test_a_valid_file_still_reads_back_equal_with_numpy_numbers_and_integral_counts(tmp_path):
    back = ScoreCalibration.load(_CAL.save(tmp_path / "m.scores.json"))
    assert back == _CAL
    d = _CAL.to_dict()
    d["n"] = [100.0, 100]
    assert ScoreCalibration.from_dict(d).n == (100, 100)
    cal = ScoreCalibration([np.str_("a"), "b", "c"], "logistic", [np.int64(1), 4.0],  # type: ignore[arg-type]
                           np.array([[1.2, 0.3], [0.8, -0.2]]), [np.int64(100), 100])  # type: ignore[arg-type]
    assert cal.classes == CLASSES and all(type(c) is str for c in cal.classes) and cal.n == (100, 100)


# -- a tracked face --------------------------------------------------------------------------------------------------
def test_track_confidence_refuses_a_face_with_no_probability_mass():
    with pytest.raises(InputError, match="probs.*row 1 sums to 0"):
        _CAL.track_confidence(np.array([[0.7, 0.2, 0.1], [0.0, 0.0, 0.0]]), [0.0, 0.0], 1.0)


@pytest.mark.parametrize("key", ["jpeg_param", "trackparams", "Size_weights"])
def test_a_file_with_a_misspelled_field_is_refused_naming_it_not_read_without_it(tmp_path, key):
    d = _CAL.to_dict()
    d[key] = d.pop({"jpeg_param": "jpeg_params", "trackparams": "track_params"}.get(key, "n"))
    if key == "trackparams":
        del d["track_half_life"]
    (tmp_path / "m.scores.json").write_text(json.dumps(d))
    with pytest.raises(ModelError, match=rf"unknown field.*'{key}'.*expected only"):
        ScoreCalibration.load(tmp_path / "m.scores.json")


def test_params_at_takes_one_factor_per_face_and_the_fits_check_their_options() -> None:
    from fsrfer_edge.confidence import ScoreCalibration, fit_logistic, fit_temperature

    cal = ScoreCalibration(("a", "b"), "logistic", (1.0, 2.0), ((1.0, 0.0), (0.5, 0.0)))
    assert cal.params_at([1.0, 2.0]).shape == (2, 2)
    with pytest.raises(InputError, match=r"shape \(2, 2\).*one factor per face"):
        cal.params_at([[1.0, 2.0], [1.0, 2.0]])
    with pytest.raises(InputError, match="iterations=0"):
        fit_logistic([0.9, 0.2], [1, 0], iterations=0)
    with pytest.raises(InputError, match="grid"):
        fit_temperature([[1.0, 0.0], [0.0, 1.0]], [0, 1], grid=np.array([]))
