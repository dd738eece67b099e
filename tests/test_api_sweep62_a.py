"""Bad inputs to the public API of confidence, groups, metadata and sidecars, found by a sweep: each is refused with
the package's own error, saying what was received and what was expected (not a TypeError, AttributeError, numpy
error, or a file saved that cannot be loaded back)."""
from __future__ import annotations

import numpy as np
import pytest

from fsrfer_edge.confidence import ScoreCalibration
from fsrfer_edge.errors import InputError, ModelError
from fsrfer_edge.groups import GroupCalibration, GroupTally
from fsrfer_edge.metadata import ModelInfo

CLASSES = ("a", "b", "c")


def _logits_labels(n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)), np.arange(n) % 3


def _group_calibration(**fields) -> GroupCalibration:
    eye = np.eye(3)[None]
    return GroupCalibration(CLASSES, (1.0,), eye, eye, **fields)


@pytest.mark.parametrize("bad", [np.zeros((4, 3)), [[0.1, 0.2, 0.7]], None, 1.0])
def test_score_calibration_fit_refuses_logits_that_are_not_a_mapping_of_factors(bad):
    z, y = _logits_labels()
    with pytest.raises(InputError, match="logits.*expected a mapping"):
        ScoreCalibration.fit(bad, {1.0: y}, CLASSES)
    with pytest.raises(InputError, match="labels.*expected a mapping"):
        ScoreCalibration.fit({1.0: z}, bad, CLASSES)


@pytest.mark.parametrize("bad", [None, 3, 1.5])
def test_score_calibration_fit_refuses_classes_that_are_not_a_list_of_names(bad):
    z, y = _logits_labels()
    with pytest.raises(InputError, match="classes"):
        ScoreCalibration.fit({1.0: z}, {1.0: y}, bad)


@pytest.mark.parametrize("bad", [np.zeros((4, 3)), None, 2])
def test_with_jpeg_refuses_logits_that_are_not_a_mapping_of_factors(bad):
    z, y = _logits_labels()
    cal = ScoreCalibration.fit({1.0: z}, {1.0: y}, CLASSES)
    with pytest.raises(InputError, match="with_jpeg: logits.*expected a mapping"):
        cal.with_jpeg(bad, {1.0: y}, min_faces=2)
    with pytest.raises(InputError, match="with_jpeg: labels.*expected a mapping"):
        cal.with_jpeg({1.0: z}, bad, min_faces=2)


def test_kind_given_as_an_array_is_refused_with_the_packages_error():
    z, y = _logits_labels()
    kind = np.array(["probs", "counts"])
    with pytest.raises(InputError, match="kind"):
        ScoreCalibration.fit({1.0: z}, {1.0: y}, CLASSES, kind=kind)
    with pytest.raises(ModelError, match="kind"):
        ScoreCalibration(CLASSES, kind, (1.0,), ((1.0, 0.0),))
    cal = _group_calibration()
    with pytest.raises(InputError, match="kind"):
        GroupTally(cal, kind)
    with pytest.raises(InputError, match="kind"):
        cal.matrix(np.array([1.0]), kind)


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((2, 3)), np.zeros((2, 1, 3))])
def test_group_calibration_refuses_resampled_of_too_few_dimensions(bad):
    with pytest.raises(ModelError, match=r"resampled must be \(R >= 2, 1, 3, 3\).*got shape"):
        _group_calibration(resampled=bad)


@pytest.mark.parametrize("field, bad", [("n", None), ("n", "no"), ("n", (1.5, 2, 3)), ("n", (True, 1, 1)),
                                        ("checkpoint_sha256", None), ("checkpoint_sha256", 12),
                                        ("source", None), ("source", ["fit"])])
def test_group_calibration_refuses_fields_it_could_not_save_and_load(field, bad, tmp_path):
    with pytest.raises(ModelError, match=f"group calibration: {field}"):
        _group_calibration(**{field: bad})


def test_group_calibration_fields_of_other_sequences_are_held_as_tuples_and_round_trip(tmp_path):
    cal = _group_calibration(n=[4, np.int64(5), 6])
    assert cal.n == (4, 5, 6)
    assert GroupCalibration.load(cal.save(tmp_path / "g.groups.json")) == cal


@pytest.mark.parametrize("classes", [(0, 1, 2), range(3), ("a", "b", None)])
def test_group_calibration_fit_refuses_class_names_that_are_not_text(classes):
    rng = np.random.default_rng(0)
    p = rng.random((9, 3))
    p /= p.sum(1, keepdims=True)
    with pytest.raises(InputError, match="classes: expected 2 or more distinct class names"):
        GroupCalibration.fit({1.0: p}, {1.0: np.arange(9) % 3}, classes)


@pytest.mark.parametrize("cls", [ScoreCalibration, GroupCalibration])
@pytest.mark.parametrize("bad", [[1, 2], "text", None, np.zeros(3)])
def test_from_dict_refuses_a_document_that_is_not_an_object(cls, bad):
    with pytest.raises(ModelError, match="expected a JSON object"):
        cls.from_dict(bad)


def test_model_info_refuses_an_array_precision_with_its_own_message():
    with pytest.raises(InputError, match="field 'precision' is .*expected a string"):
        ModelInfo(precision=np.array(["fp32", "fp16"]))


@pytest.mark.parametrize("field, bad", [("classes", None), ("classes", (0, 1, 2)), ("classes", "abc"),
                                        ("factors", None), ("factors", ("1",)), ("factors", (True,))])
def test_group_calibration_refuses_classes_and_factors_of_other_kinds(field, bad):
    eye = np.eye(3)[None]
    fields = {"classes": CLASSES, "factors": (1.0,), **{field: bad}}
    with pytest.raises(ModelError, match=f"group calibration: {field}"):
        GroupCalibration(fields["classes"], fields["factors"], eye, eye)


def test_group_calibration_holds_classes_and_factors_of_other_sequences_as_tuples(tmp_path):
    eye = np.eye(3)[None]
    cal = GroupCalibration(list(np.array(CLASSES)), [np.float64(1.0)], eye, eye)
    assert cal.classes == CLASSES and cal.factors == (1.0,)
    assert all(type(c) is str for c in cal.classes) and type(cal.factors[0]) is float
    assert GroupCalibration.load(cal.save(tmp_path / "g.groups.json")) == cal
    two = GroupCalibration(CLASSES, np.array([1.0, 2.0]), np.concatenate([eye, eye]), np.concatenate([eye, eye]))
    assert two.factors == (1.0, 2.0) and hash(two) == hash(two)


def test_a_whole_number_past_what_a_float_holds_is_refused_as_input():
    cal = ScoreCalibration(CLASSES, "logistic", (1.0,), ((1.0, 0.0),))
    with pytest.raises(InputError, match="factors"):
        cal.params_at([10 ** 400])
    groups = _group_calibration()
    with pytest.raises(InputError, match="factors"):
        groups.estimate(np.full((1, 3), 1 / 3), [10 ** 400])
    with pytest.raises(InputError, match="factors"):
        groups.matrix([10 ** 400])
