"""Behaviour checks that a seventh hand-made mutation test (task K66b: the face tracker, the confidence maps and the
detection pyramid) found no test for: each test here fails on one small, plausible change to the library code that
the rest of the suite let through (calibration_error's top bin, track_confidence's row proportions, the pyramid's
size bands per level, its merging IoU and nested-box rule, keypoints of tiles, and x and y mapped apart)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fsrfer_edge.confidence import ScoreCalibration, calibration_error
from fsrfer_edge.detection.pyramid import PyramidDetector

CLASSES = ("neutral", "happy", "sad")


# -- confidence ---------------------------------------------------------------------------------------------------
def test_calibration_error_counts_faces_of_confidence_exactly_1() -> None:
    # one face, confident 1.0 and wrong: a gap of 100 points in the top bin (it used to fall past the last bin)
    assert calibration_error(np.array([1.0]), np.array([0.0])) == pytest.approx(100.0)
    assert calibration_error(np.array([1.0, 0.5]), np.array([0.0, 0.0])) == pytest.approx(75.0)


def test_track_confidence_reads_a_row_as_its_proportions() -> None:
    cal = ScoreCalibration(CLASSES, "logistic", (1.0,), ((1.0, 0.0),), track_params=((0.0, 0.0, 0.0, 0.0),),
                           track_half_life=2.0)
    probs = np.array([[0.2, 0.6, 0.2]])
    expected = cal.track_confidence(probs, [0.0], 1.0)
    assert expected[0] == pytest.approx(0.6)  # identity map, no spread terms: the label's probability
    # the same proportions given as percentages, or as half-weights: the same confidence, not near 1 or near 0.3
    np.testing.assert_allclose(cal.track_confidence(probs * 100, [0.0], 1.0), expected, rtol=1e-9)
    np.testing.assert_allclose(cal.track_confidence(probs / 2, [0.0], 1.0), expected, rtol=1e-9)


# -- pyramid --------------------------------------------------------------------------------------------------------
def _fixed(by_tile: Any, **kw: Any) -> PyramidDetector:
    """A pyramid detector whose network answers the boxes ``by_tile(tile_shape)`` gives (tile pixels, score
    0.9 each unless a fifth column gives it), each with one keypoint at its box's centre."""

    class Fixed(PyramidDetector):
        name, n_points = "fixed-pyramid", 1

        def _network(self, batch: np.ndarray) -> list:
            rows = np.array(by_tile(batch.shape[1:3]), float).reshape(-1, 5)
            b, s = rows[:, :4], rows[:, 4]
            return [(b.copy(), s.copy(), ((b[:, :2] + b[:, 2:]) / 2)[:, None, :]) for _ in batch]

    opts: dict[str, Any] = dict(min_score=0.5, min_face=24.0, iou=0.3, max_cover=0.7, level_step=4.0, max_input=1536,
                                face_px=24.0, size_slack=1.5, size_multiple=32, coarsest=640)
    opts.update(kw)
    return Fixed(**opts)


def test_a_tall_narrow_box_is_sized_by_its_larger_side() -> None:
    # 8 x 30 network pixels on the only (finest) level: kept, as its larger side is over face_px * FINEST_FLOOR = 12
    det = _fixed(lambda shape: [[10, 10, 18, 40, 0.9]])
    assert [d.box for d in det.detect(np.zeros((64, 64, 3), np.uint8))] == [(10.0, 10.0, 18.0, 40.0)]


def _two_levels(finest: list, coarse: list) -> PyramidDetector:
    """Scale 1 then 1/4 on a 700 x 700 frame (coarsest=640): ``finest`` on the 704 px tile, ``coarse`` on the 192 px
    one (tile pixels there are 4 frame pixels)."""
    det = _fixed(lambda shape: finest if shape[0] > 300 else coarse)
    assert [lv.scale for lv in det.plan(700, 700)] == [1.0, 0.25]
    return det


def test_a_coarser_level_keeps_faces_down_to_face_px_over_size_slack() -> None:
    # 20 network pixels on the coarser level: under face_px (24) but over face_px / size_slack (16)
    det = _two_levels([], [[10, 10, 30, 30, 0.9]])
    assert [d.box for d in det.detect(np.zeros((700, 700, 3), np.uint8))] == [(40.0, 40.0, 120.0, 120.0)]


def test_only_the_coarsest_level_keeps_faces_over_its_size_band() -> None:
    # 200 network pixels: over face_px * level_step * size_slack = 144, so the finest level drops it (an eye or a
    # logo found at a face's size on the enlarged frame) while the coarsest keeps it (every larger face is its)
    det = _two_levels([[300, 300, 500, 500, 0.9]], [])
    assert det.detect(np.zeros((700, 700, 3), np.uint8)) == []
    det = _two_levels([], [[10, 10, 160, 160, 0.9]])
    assert [d.box for d in det.detect(np.zeros((700, 700, 3), np.uint8))] == [(40.0, 40.0, 640.0, 640.0)]


@pytest.mark.parametrize("iou, expected", [(0.3, 1), (0.5, 2)])
def test_candidates_merge_at_the_detectors_own_iou(iou: float, expected: int) -> None:
    # IoU 540 / 1260 = 0.43, and 60% of the weaker lies inside the stronger (under max_cover 0.7)
    det = _fixed(lambda shape: [[0, 0, 30, 30, 0.9], [12, 0, 42, 30, 0.8]], iou=iou)
    assert len(det.detect(np.zeros((64, 64, 3), np.uint8))) == expected


def test_a_box_inside_a_stronger_one_is_dropped_by_max_cover() -> None:
    boxes = [[0, 0, 40, 40, 0.9], [5, 5, 17, 17, 0.8]]  # the small one lies wholly inside: IoU 0.09, cover 1
    found = _fixed(lambda shape: boxes).detect(np.zeros((64, 64, 3), np.uint8))
    assert [d.box for d in found] == [(0.0, 0.0, 40.0, 40.0)]
    assert len(_fixed(lambda shape: boxes, max_cover=1.0).detect(np.zeros((64, 64, 3), np.uint8))) == 2


def test_keypoints_of_a_tile_away_from_the_frames_corner_are_mapped_back_with_its_offsets() -> None:
    # a 200 x 600 frame at scale 1 in tiles of at most 256 px: a box in the last tile sits at an x offset that is not
    # its y offset; its keypoint (the box's centre) must come back at the centre of the box in frame pixels
    det = _fixed(lambda shape: [[100, 80, 130, 110, 0.9]], max_input=256, coarsest=1000)
    level = det.plan(200, 600)[0]
    assert level.scale == 1.0 and len(level.tiles) > 1 and any(y != x for y, x in level.tiles)
    found = det.detect(np.zeros((200, 600, 3), np.uint8))
    assert len(found) >= 2
    for d in found:
        x0, y0, x1, y1 = d.box
        assert d.keypoints[0] == pytest.approx(((x0 + x1) / 2, (y0 + y1) / 2))


def test_a_face_touching_the_frames_right_and_bottom_edges_is_kept() -> None:
    # one tile, the frame's own size (64 is a multiple of size_multiple): no neighbouring tile shares those edges
    det = _fixed(lambda shape: [[30, 30, 64, 64, 0.9]], size_multiple=32)
    assert [d.box for d in det.detect(np.zeros((64, 64, 3), np.uint8))] == [(30.0, 30.0, 64.0, 64.0)]


def test_x_and_y_are_mapped_back_each_by_its_own_scale_on_a_narrow_frame() -> None:
    # 700 x 70 at scale 1/4 is 175 x 18 (17.5 rounded): 4 frame pixels a level pixel down, 70 / 18 across
    det = _fixed(lambda shape: [[2, 10, 16, 40, 0.9]] if shape[0] < 300 else [])
    assert [lv.size for lv in det.plan(700, 70)] == [(700, 70), (175, 18)]
    (found,) = det.detect(np.zeros((700, 70, 3), np.uint8))
    assert found.box == pytest.approx((2 * 70 / 18, 40.0, 16 * 70 / 18, 160.0), abs=1e-9)
