"""Review of tracked faces' confidence (ScoreCalibration.track_confidence, FaceTracker.spread): malformed JPEG marks,
a half-life without terms, and a reset tracker's spread."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fsrfer_edge.confidence import ScoreCalibration
from fsrfer_edge.errors import InputError, ModelError
from fsrfer_edge.tracking import FaceTracker

CLASSES = ("a", "b", "c")
TERMS = ((0.5, -0.3, 1.5, 0.2), (-1.0, 0.4, 2.0, -0.6))


def _cal(**kw) -> ScoreCalibration:
    base = ScoreCalibration(CLASSES, "logistic", (1.0, 4.0), ((1.2, 0.3), (0.8, -0.2)), (100, 100),
                            track_params=TERMS, track_half_life=2.0)
    return dataclasses.replace(base, **kw) if kw else base


PROBS = [[0.7, 0.2, 0.1]] * 3


@pytest.mark.parametrize("jpeg_params", [None, ((1.0, 0.1), (0.7, -0.5))])
@pytest.mark.parametrize("marks", [[True], True, [True, False]])
def test_track_confidence_refuses_jpeg_marks_that_are_not_one_per_face(jpeg_params, marks) -> None:
    # without JPEG maps the marks still pick (c, d): one mark for three faces was broadcast to all of them, and two
    # raised numpy's ValueError; with JPEG maps params_at refused them
    cal = _cal(jpeg_params=jpeg_params)
    with pytest.raises(InputError, match="jpeg"):
        cal.track_confidence(PROBS, [0.3] * 3, 2.0, marks)


def test_confidence_refuses_jpeg_marks_that_are_not_one_per_face_without_jpeg_maps_too() -> None:
    cal = _cal()  # no jpeg_params: the marks change nothing, but a wrong count is still a caller's mistake
    with pytest.raises(InputError, match="jpeg"):
        cal.confidence(np.log(PROBS), 2.0, [True, False])
    np.testing.assert_allclose(cal.confidence(np.log(PROBS), 2.0, [True, False, True]), cal.confidence(np.log(PROBS),
                                                                                                          2.0))


@pytest.mark.parametrize("half_life", [2.0, "x"])
def test_a_track_half_life_without_track_terms_is_refused(half_life) -> None:
    # it was held, then dropped by to_dict: the file read back compared unequal to what was saved
    with pytest.raises(ModelError, match="track_half_life"):
        _cal(track_params=None, track_half_life=half_life)
    d = _cal().to_dict()
    del d["track_params"]
    with pytest.raises(ModelError, match="track_half_life"):
        ScoreCalibration.from_dict(d)


def test_a_boolean_track_half_life_is_refused() -> None:
    with pytest.raises(ModelError, match="track_half_life"):
        _cal(track_half_life=True)


def test_reset_forgets_the_last_updates_spread() -> None:
    tracker = FaceTracker(confirm=1)
    box = np.array([[0, 0, 20, 20]], float)
    tracker.update(box, [[0.6, 0.3, 0.1]])
    tracker.update(box, [[0.2, 0.7, 0.1]])
    assert tracker.spread is not None and tracker.spread[0] > 0
    tracker.reset()
    assert tracker.spread is None  # as before any update: the tracks it described are forgotten
