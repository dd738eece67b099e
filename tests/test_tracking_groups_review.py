"""Review of fsrfer_edge.tracking and fsrfer_edge.groups as a user calls them: bad inputs get an InputError (or, for
a file's contents, a ModelError) that says what was received and what was expected, never numpy's own error or a
silent wrong answer."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.errors import InputError, ModelError
from fsrfer_edge.groups import GroupCalibration, GroupTally
from fsrfer_edge.tracking import FaceTracker, smooth_sequence

CLASSES = ("a", "b", "c")
BOX = np.array([[0.0, 0.0, 10.0, 10.0]])
PROBS = np.array([[0.7, 0.2, 0.1]])


def _calibration(resamples: int = 0) -> tuple[GroupCalibration, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(3), 10)
    probs = {f: 0.5 * np.eye(3)[labels] + 0.5 * rng.dirichlet(np.ones(3), size=30) for f in (1.0, 2.0, 4.0)}
    cal = GroupCalibration.fit(probs, {f: labels for f in probs}, CLASSES, resamples=resamples)
    return cal, probs[2.0][:6]


# -- groups ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("factors", [[[1.0, 4.0]], 2.0, [[1.0], [4.0]]])
def test_matrix_takes_one_factor_per_face_not_another_shape(factors: Any) -> None:
    # a (1, 2) array gave a "matrix" whose columns summed to 2; a plain number a TypeError from len()
    cal, _ = _calibration()
    with pytest.raises(InputError, match=r"factors.*\(N,\)"):
        cal.matrix(factors)
    m = cal.matrix(np.array([1.0, 4.0]))            # the documented form is unchanged
    assert m.shape == (3, 3) and np.allclose(m.sum(axis=0), 1.0)


@pytest.mark.parametrize("probs, factors", [
    ([["x", "y", "z"]], [1.0]),                     # text
    ([[0.5, 0.5], [1.0, 0.0, 0.0]], [1.0, 1.0]),    # rows of other lengths
    (PROBS, ["big"]),                               # factors as text
    (PROBS, [None]),
])
def test_group_faces_that_are_not_numbers_are_input_errors(probs: Any, factors: Any) -> None:
    cal, _ = _calibration(resamples=2)
    for call in (lambda: cal.estimate(probs, factors), lambda: GroupTally(cal).add(probs, factors),
                 lambda: cal.interval(probs, factors)):
        with pytest.raises(InputError, match="expected probabilities"):
            call()


def test_a_bad_factor_or_probability_says_what_was_received() -> None:
    cal, probs = _calibration()
    with pytest.raises(InputError, match=r"nan") as err:
        cal.estimate(probs, [1.0, 2.0, np.nan, 1.0, 1.0, 1.0])
    assert "expected" in str(err.value)
    with pytest.raises(InputError, match=r"-3"):
        cal.estimate(probs, [1.0, 2.0, -3.0, 1.0, 1.0, 1.0])
    bad = probs.copy()
    bad[1, 0] = np.inf
    with pytest.raises(InputError, match=r"inf"):
        cal.estimate(bad, np.ones(6))


@pytest.mark.parametrize("labels", [np.array(["a", "b", "c"] * 10), [[0], [1, 2]] * 15])
def test_fit_refuses_labels_and_probabilities_that_are_not_numbers(labels: Any) -> None:
    cal_probs = np.full((30, 3), 1 / 3)
    with pytest.raises(InputError, match="labels"):
        GroupCalibration.fit({1.0: cal_probs}, {1.0: labels}, CLASSES)
    with pytest.raises(InputError, match="expected probabilities"):
        text: Any = [["x"] * 3] * 30
        GroupCalibration.fit({1.0: text}, {1.0: np.tile(np.arange(3), 10)}, CLASSES)


@pytest.mark.parametrize("seed", [-1, 1.5, "x", None, True])
def test_interval_and_fit_refuse_a_seed_that_is_not_an_integer_from_0(seed: Any) -> None:
    # numpy's TypeError / ValueError ("expected non-negative integer") came out before
    cal, probs = _calibration(resamples=2)
    with pytest.raises(InputError, match="seed"):
        cal.interval(probs, np.ones(6), seed=seed)
    labels = np.tile(np.arange(3), 10)
    with pytest.raises(InputError, match="seed"):
        GroupCalibration.fit({1.0: np.full((30, 3), 1 / 3)}, {1.0: labels}, CLASSES, resamples=2, seed=seed)
    lo, hi = cal.interval(probs, np.ones(6), seed=3)  # an integer seed still works, and repeats itself
    assert np.array_equal(lo, cal.interval(probs, np.ones(6), seed=3)[0]) and np.all(lo <= hi)


def test_a_calibration_with_an_infinite_factor_is_refused() -> None:
    cal, _ = _calibration()
    d = cal.to_dict()
    d["factors"] = [1.0, 2.0, math.inf]
    with pytest.raises(ModelError, match="factors"):
        GroupCalibration.from_dict(d)


def test_a_tally_needs_a_group_calibration() -> None:
    for bad in (None, "groups.json", {"classes": CLASSES}):
        with pytest.raises(InputError, match="GroupCalibration"):
            GroupTally(bad)  # type: ignore[arg-type]


# -- tracking --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("marks", [["no"], [0.5], [2], [[True]]])
def test_detected_and_weak_must_be_bools_one_per_box(marks: Any) -> None:
    # ["no"], 0.5 and 2 were read as True, a (1, 1) array was flattened: a face's role silently set by casting
    with pytest.raises(InputError, match="detected"):
        FaceTracker().update(BOX, PROBS, detected=marks)
    tracker = FaceTracker()
    with pytest.raises(InputError, match="weak"):
        tracker.update(BOX, PROBS, weak=marks)
    with pytest.raises(InputError, match="weak"):
        tracker.coasting(BOX, weak=marks)
    assert tracker.n_tracks == 0                     # refused before any track was made
    ids, _ = FaceTracker().update(BOX, PROBS, detected=[True], weak=[False])   # bools, and 0/1, still do
    ids2, _ = FaceTracker().update(BOX, PROBS, detected=np.array([1]), weak=np.array([0]))
    assert len(ids) == len(ids2) == 1


@pytest.mark.parametrize("option", ["weak_track_score", "max_shift"])
def test_a_huge_integer_option_is_an_input_error_not_an_overflow(option: str) -> None:
    with pytest.raises(InputError, match=option):
        huge: dict[str, Any] = {option: 10 ** 400}
        FaceTracker(**huge)


@pytest.mark.parametrize("aggregate", [np.array(["log"]), np.array(["log", "probs"]), b"log"])
def test_aggregate_must_be_one_name(aggregate: Any) -> None:
    # np.array(["log"]) made a tracker whose aggregate read "['log']": averaged as probabilities, no spread
    with pytest.raises(InputError, match="aggregate"):
        FaceTracker(aggregate=aggregate)
    with pytest.raises(InputError, match="aggregate"):
        smooth_sequence(PROBS[None], aggregate=aggregate)
    assert FaceTracker(aggregate=np.str_("log")).aggregate == "log"


@pytest.mark.parametrize("ids", [["a"], [0.7], [None]])
def test_reported_takes_the_track_ids_update_gave(ids: Any) -> None:
    tracker = FaceTracker()
    for _ in range(3):
        got, _ = tracker.update(BOX, PROBS)
    with pytest.raises(InputError, match="ids"):
        tracker.reported(ids)
    assert tracker.reported(got).tolist() == [True] and tracker.reported([]).shape == (0,)
    assert tracker.reported(got.astype(float)).tolist() == [True]   # whole numbers in floats still name tracks


def test_a_refused_smoother_update_forgets_no_other_face() -> None:
    # the stream's clock moved on (and faces older than max_age were dropped) before the class count was refused
    from fsrfer_edge.tracking import ExpressionSmoother

    s = ExpressionSmoother(max_age=5)
    s.update("old", PROBS[0], 0)
    s.update("a", PROBS[0], 2)
    with pytest.raises(InputError, match="classes"):
        s.update("a", np.array([0.5, 0.5]), 6)          # two classes for a face of three: refused
    assert len(s) == 2 and s.spread("old") == 0.0     # "old" (frame 0) is still there, as before the call
    fresh = ExpressionSmoother(max_age=5)
    fresh.update("old", PROBS[0], 0)
    other = np.array([0.1, 0.2, 0.7])
    assert np.array_equal(s.update("old", other, 5), fresh.update("old", other, 5))


def test_smoother_reset_forgets_one_streams_faces_so_a_restarted_stream_runs_on() -> None:
    from fsrfer_edge.tracking import ExpressionSmoother

    s = ExpressionSmoother()
    p = np.array([0.7, 0.2, 0.1])
    for frame in range(5):
        s.update(("cam", 1), p, frame, stream="cam")
        s.update(("file", 1), p, frame, stream="file")
    with pytest.raises(InputError, match="reset"):  # the file looped: its frame numbers start again
        s.update(("file", 1), p, 0, stream="file")
    assert s.reset("file") == 1 and len(s) == 1
    np.testing.assert_allclose(s.update(("file", 1), p[::-1], 0, stream="file"), p[::-1], rtol=1e-6)
    assert s.spread(("cam", 1)) is not None                    # the other stream's face is kept
    assert s.reset("gone") == 0                                 # a stream never seen: nothing to forget
    assert s.reset() == 2 and len(s) == 0
    with pytest.raises(InputError, match="hashed"):
        s.reset(["cam"])


@pytest.mark.parametrize("field, value", [
    ("classes", "abc"), ("classes", [None, "b"]), ("factors", ["1", "2"]), ("factors", "12"), ("n", [1.7, 2]),
    ("n", [True, 2]), ("checkpoint_sha256", None), ("source", 3), ("probs", [[["0.5", "0.5"], ["0.5", "0.5"]]]),
])
def test_a_group_calibration_file_is_checked_as_it_is_not_coerced(field: str, value: Any) -> None:
    good = GroupCalibration(("a", "b"), (1.0,), np.full((1, 2, 2), 0.5), np.full((1, 2, 2), 0.5), (3, 4)).to_dict()
    assert GroupCalibration.from_dict(good).n == (3, 4)
    with pytest.raises(ModelError, match="group calibration"):
        GroupCalibration.from_dict({**good, field: value})


def test_a_group_calibration_file_with_a_misspelled_field_is_refused_naming_it() -> None:
    good = GroupCalibration(("a", "b"), (1.0,), np.full((1, 2, 2), 0.5), np.full((1, 2, 2), 0.5)).to_dict()
    with pytest.raises(ModelError, match="resample"):
        GroupCalibration.from_dict({**good, "resample": None})


def test_the_shipped_group_calibration_still_reads() -> None:
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "fsrfer_edge" / "models" / "default.groups.json"
    cal = GroupCalibration.from_dict(json.loads(path.read_text()))
    assert cal.to_dict()["n"] == json.loads(path.read_text())["n"] and cal.resampled is not None


@pytest.mark.parametrize("bad", [["0.7", "0.3"], [0.7 + 0j, 0.3 + 0j], [True, False]])
def test_tracker_and_smoother_refuse_probabilities_that_are_not_real_numbers(bad: Any) -> None:
    """np.asarray(dtype=float) read digits as numbers, kept complex numbers' real part and True as 1."""
    from fsrfer_edge.tracking import ExpressionSmoother

    with pytest.raises(InputError, match="could not be read as numbers"):
        ExpressionSmoother().update("a", bad, 0)
    with pytest.raises(InputError, match="could not be read as numbers"):
        FaceTracker().update([[0, 0, 10, 10]], [bad])
    with pytest.raises(InputError, match="could not be read as numbers"):
        FaceTracker().update([["0", "0", "10", "10"]], [[0.7, 0.3]])
