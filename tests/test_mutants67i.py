"""Behaviour checks that an eighth hand-made mutation test (round 67, task K67i: CrowdAnalyzer.analyze_stream's frames,
detector schedule and video, and FaceTracker's options: half_life, aggregate, min_iou, max_shift, max_missed, coast,
coast_after, confirm, motion, reset) found no test for: each test here fails on one small, plausible change to the
library code that the rest of the suite let through."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.detection import Detection, FaceDetector
from fsrfer_edge.tracking import ExpressionSmoother, FaceTracker, smooth_sequence

P = np.array([[0.7, 0.2, 0.1]])
Q = np.array([[0.1, 0.3, 0.6]])
NO_BOX, NO_PROBS = np.zeros((0, 4)), np.zeros((0, 3))


def _box(x: float, y: float = 0.0, side: float = 10.0) -> np.ndarray:
    return np.array([[x, y, x + side, y + side]], dtype=np.float64)


# -- FaceTracker's options reach the matching and the averaging -------------------------------------------------------
def test_half_life_and_aggregate_reach_the_tracks_mean() -> None:
    for half_life, aggregate in ((1.0, "probs"), (4.0, "log"), (math.inf, "log")):
        tracker = FaceTracker(half_life, aggregate, confirm=1)
        for p in (P, Q, P):
            _, mean = tracker.update(_box(0), p)
        expected = smooth_sequence(np.stack([P, Q, P]), half_life, aggregate)
        np.testing.assert_allclose(mean, expected, rtol=1e-5)


def test_the_spread_weighs_each_frame_by_its_squared_weight_as_the_smoother_does() -> None:
    tracker, smoother = FaceTracker(half_life=1.0, confirm=1), ExpressionSmoother(half_life=1.0)
    for t, p in enumerate((P, Q, Q, P)):
        tracker.update(_box(0), p)
        smoother.update("face", p[0], t)
    assert tracker.spread is not None
    assert tracker.spread[0] == pytest.approx(smoother.spread("face"), rel=1e-9)
    assert tracker.spread[0] > 0


def test_min_iou_decides_which_overlap_continues_a_track() -> None:
    ids = {}
    for min_iou in (0.3, 0.6):
        tracker = FaceTracker(min_iou=min_iou, max_shift=0, motion=False)
        first, _ = tracker.update(_box(0), P)
        second, _ = tracker.update(_box(4), P)  # IoU 6/14 = 0.43
        ids[min_iou] = bool(first[0] == second[0])
    assert ids == {0.3: True, 0.6: False}


def test_max_shift_zero_turns_the_nearest_centre_off_even_for_the_same_centre() -> None:
    # a box twice the side on the same centre: IoU 0.25, under min_iou; only the centre rule could continue the track
    for max_shift, same in ((0, False), (1.0, True)):
        tracker = FaceTracker(max_shift=max_shift, motion=False)
        first, _ = tracker.update(_box(10, 10), P)
        second, _ = tracker.update(_box(5, 5, side=20.0), P)
        assert bool(first[0] == second[0]) is same


def test_a_face_more_than_twice_the_side_of_the_track_does_not_continue_it() -> None:
    tracker = FaceTracker(motion=False)
    first, _ = tracker.update(_box(0), P)
    second, _ = tracker.update(_box(0, side=25.0), P)  # IoU 0.16, centres 0.42 sides apart, but 2.5 times the side
    assert first[0] != second[0]


def test_a_track_found_once_may_move_a_face_side_per_skipped_frame() -> None:
    tracker = FaceTracker(motion=False)
    first, _ = tracker.update(_box(0), P)
    tracker.update(NO_BOX, NO_PROBS, looked=False)
    tracker.update(NO_BOX, NO_PROBS, looked=False)
    later, _ = tracker.update(_box(25), P)  # 2.5 sides away after 3 frames: within 1 side a frame
    assert later[0] == first[0]


def test_a_track_missed_exactly_max_missed_frames_goes_on() -> None:
    tracker = FaceTracker(max_missed=1, coast=0, motion=False)
    first, _ = tracker.update(_box(0), P)
    tracker.update(NO_BOX, NO_PROBS)
    assert tracker.n_tracks == 1
    again, _ = tracker.update(_box(0), P)
    assert again[0] == first[0]
    tracker.update(NO_BOX, NO_PROBS)
    tracker.update(NO_BOX, NO_PROBS)
    assert tracker.n_tracks == 0


def test_frames_the_detector_skipped_do_not_count_as_missed() -> None:
    tracker = FaceTracker(max_missed=1, coast=0, motion=False)
    tracker.update(_box(0), P)
    for _ in range(3):
        tracker.update(NO_BOX, NO_PROBS, looked=False)
    assert tracker.n_tracks == 1


def test_coast_counts_the_frames_missed_since_the_last_detection() -> None:
    tracker = FaceTracker(coast=1, motion=False)
    tracker.update(_box(0), P)
    tracker.update(_box(0), P)
    assert len(tracker.coasting(NO_BOX)) == 1  # missed in no frame yet: coasts in this one
    tracker.update(NO_BOX, NO_PROBS)            # missed once (not given its coasted box)
    assert len(tracker.coasting(NO_BOX)) == 0


def test_a_track_found_in_exactly_coast_after_frames_coasts() -> None:
    tracker = FaceTracker(coast_after=2, motion=False)
    tracker.update(_box(0), P)
    assert len(tracker.coasting(NO_BOX)) == 0
    tracker.update(_box(0), P)
    np.testing.assert_array_equal(tracker.coasting(NO_BOX), _box(0))


def test_the_default_coast_is_cut_to_a_shorter_max_missed_not_turned_off() -> None:
    tracker = FaceTracker(max_missed=1, motion=False)
    assert tracker.coast == 1
    tracker.update(_box(0), P)
    tracker.update(_box(0), P)
    assert len(tracker.coasting(NO_BOX)) == 1


def test_a_face_found_in_exactly_confirm_frames_is_reported() -> None:
    tracker = FaceTracker(confirm=2)
    tracker.update(_box(0), P)
    ids, _ = tracker.update(_box(0), P)
    assert tracker.reported(ids).tolist() == [True]
    ids, _ = tracker.update(np.vstack([_box(0), _box(50)]), np.vstack([P, P]))  # a new face: held back
    assert tracker.reported(ids).tolist() == [True, False]


def test_a_face_in_a_skipped_frame_is_expected_where_its_velocity_takes_it() -> None:
    tracker = FaceTracker(coast=3)
    tracker.update(_box(0), P)
    tracker.update(_box(10), P)  # 10 px a frame
    tracker.update(NO_BOX, NO_PROBS, looked=False)  # one frame passes (its coasted box not given)
    # the face was last found two frames ago: expected 20 px on
    np.testing.assert_allclose(tracker.coasting(NO_BOX), _box(30))


def test_the_velocity_is_per_frame_over_a_missed_frame_and_a_mean_of_the_steps() -> None:
    tracker = FaceTracker(coast=3)
    tracker.update(_box(0), P)
    tracker.update(NO_BOX, NO_PROBS)
    tracker.update(_box(10), P)  # 10 px in two frames: 5 a frame
    np.testing.assert_allclose(tracker.coasting(NO_BOX), _box(15))
    tracker.update(_box(20), P)  # a step of 10: the mean of 5 and 10
    np.testing.assert_allclose(tracker.coasting(NO_BOX), _box(27.5))


def test_motion_false_looks_for_a_moving_face_at_its_last_box() -> None:
    tracker = FaceTracker(motion=False)
    tracker.update(_box(0), P)
    tracker.update(_box(10), P)
    np.testing.assert_allclose(tracker.coasting(NO_BOX), _box(10))


def test_a_skipped_frame_keeps_the_faces_the_last_detector_pass_showed() -> None:
    tracker = FaceTracker()
    tracker.update(_box(0), P)
    tracker.update(_box(0), P)
    tracker.update(NO_BOX, NO_PROBS, looked=False)  # its coasted box left out in this skipped frame
    assert len(tracker.coasting(NO_BOX, looked=False)) == 1  # still shown: the last pass found it


def test_reset_starts_a_new_stream_whose_first_faces_are_reported_under_new_ids() -> None:
    tracker = FaceTracker(confirm=2)
    before = set()
    for _ in range(3):
        ids, _ = tracker.update(np.vstack([_box(0), _box(50)]), np.vstack([P, Q]))
        before |= set(ids.tolist())
    tracker.reset()
    ids, _ = tracker.update(_box(0), P)
    assert tracker.reported(ids).tolist() == [True]  # the new stream's first frame
    assert not set(ids.tolist()) & before            # ids are never reused


# -- CrowdAnalyzer.analyze_stream: skipped frames, the tracker's options, the video released --------------------------
class _Script(FaceDetector):
    """A plug-in detector giving, at its k-th call, the boxes ``script[k]`` (none once the script ends)."""

    name = "script"

    def __init__(self, script: list[list[tuple[float, float, float, float]]]) -> None:
        super().__init__()
        self.script, self.calls = script, 0

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        boxes = self.script[self.calls] if self.calls < len(self.script) else []
        self.calls += 1
        return [Detection(b, 0.9) for b in boxes]


FRAME = np.full((30, 40, 3), 90, np.uint8)


@pytest.mark.parametrize("pipeline", [False, True])
def test_coast_zero_still_answers_the_frames_the_detector_skips(rec: Any, pipeline: bool) -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer

    box = (5.0, 5.0, 25.0, 25.0)
    with CrowdAnalyzer(rec, _Script([[box]] * 10), groups=None) as crowd:
        results = list(crowd.analyze_stream([FRAME] * 4, track=FaceTracker(coast=0), detect_every=2,
                                            pipeline=pipeline))
    assert [r.detector_ran for r in results] == [True, True, False, True]
    assert [len(r.faces) for r in results] == [1, 1, 1, 1]  # frame 2 answered where the face was (coast is for misses)
    assert results[2].faces[0].detected is False
    assert len({f.track_id for r in results for f in r.faces}) == 1


def test_a_skipped_frame_without_faces_does_not_count_against_a_missed_track(rec: Any) -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer

    box = (5.0, 5.0, 25.0, 25.0)
    # detector passes at frames 0, 1, 4: the face is found at 0 and 4, missed at 1; frames 2 and 3 are skipped
    with CrowdAnalyzer(rec, _Script([[box], [], [box]]), groups=None) as crowd:
        results = list(crowd.analyze_stream([FRAME] * 5, track=FaceTracker(max_missed=1, coast=0), detect_every=3))
    assert [r.detector_ran for r in results] == [True, True, False, False, True]
    assert [len(r.faces) for r in results] == [1, 0, 0, 0, 1]
    # missed in one detector pass only (max_missed=1): the same track, found twice, so reported (confirm=2)
    assert results[4].faces[0].track_id == results[0].faces[0].track_id


def test_a_video_stream_releases_its_file_when_max_frames_ends_it(rec: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge import crowd as crowd_module
    from fsrfer_edge.crowd import CrowdAnalyzer, VideoFrames

    class _Capture:
        released = 0

        def read(self) -> tuple[bool, np.ndarray]:
            return True, FRAME.copy()

        def release(self) -> None:
            _Capture.released += 1

    opened: list[VideoFrames] = []  # held here, so that only the stream's own close() can release the capture

    def video_frames(source: Any) -> VideoFrames:
        opened.append(VideoFrames(_Capture(), FRAME.copy(), "video x", 25.0, None))
        return opened[-1]

    monkeypatch.setattr(crowd_module, "video_frames", video_frames)
    with CrowdAnalyzer(rec, _Script([]), groups=None) as crowd:
        got = list(crowd.analyze_stream("clip.mp4", max_frames=2))
        assert len(got) == 2
        assert len(opened) == 1 and _Capture.released >= 1  # at once, not when the collector gets to it


@pytest.mark.parametrize("pipeline", [False, True])
def test_a_closed_analyzer_refuses_the_next_frame_even_one_the_detector_skips_without_faces(rec: Any,
                                                                                             pipeline: bool) -> None:
    from fsrfer_edge.backends.base import BackendClosedError
    from fsrfer_edge.crowd import CrowdAnalyzer

    crowd = CrowdAnalyzer(rec, _Script([]), groups=None)
    stream = crowd.analyze_stream([FRAME] * 5, track=True, detect_every=3, pipeline=pipeline)
    assert [next(stream).detector_ran for _ in range(2)] == [True, True]
    crowd.close()
    with pytest.raises(BackendClosedError):
        next(stream)  # frame 2: skipped by the detector, no face to recognise, but the analyzer is closed


def test_a_pipelined_tracked_stream_warns_when_its_frame_size_changes(rec: Any,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer

    frames = [FRAME, np.full((30, 56, 3), 90, np.uint8)]
    with caplog.at_level("WARNING", logger="fsrfer_edge.crowd"), \
            CrowdAnalyzer(rec, _Script([[(5.0, 5.0, 25.0, 25.0)]] * 2), groups=None) as crowd:
        list(crowd.analyze_stream(frames, track=True, pipeline=True))
    assert any("frame size changed from 30x40 to 30x56" in r.getMessage() for r in caplog.records)
