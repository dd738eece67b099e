"""FaceTracker: matching faces to tracks from frame to frame, the weighted mean of a track's answers, bad input;
and a tracked CrowdAnalyzer stream and fsrfer-crowd's tracking options."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from fsrfer_edge import InputError
from fsrfer_edge.tracking import ExpressionSmoother, FaceTracker, smooth_sequence


def _probs(*rows: list[float]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64)


def _box(x: float, y: float, side: float = 10.0) -> list[float]:
    return [x, y, x + side, y + side]


# --------------------------------------------------------------------------------------------
# The weighted mean
# --------------------------------------------------------------------------------------------
def test_smooth_sequence_weights_halve_every_half_life() -> None:
    p = np.array([[[0.6, 0.4]], [[0.2, 0.8]]])
    # half_life 1: the older frame weighs 1/2 -> (0.5 * 0.6 + 0.2) / 1.5
    np.testing.assert_allclose(smooth_sequence(p, 1.0), [[1 / 3, 2 / 3]], rtol=1e-6)
    np.testing.assert_allclose(smooth_sequence(p, math.inf), [[0.4, 0.6]], rtol=1e-6)  # a plain mean
    # "log": the renormalised weighted geometric mean
    g = np.array([0.6 ** 0.5 * 0.2, 0.4 ** 0.5 * 0.8]) ** (1 / 1.5)
    np.testing.assert_allclose(smooth_sequence(p, 1.0, "log"), [g / g.sum()], rtol=1e-5)
    np.testing.assert_allclose(smooth_sequence(p[:1], 2.0), p[0], rtol=1e-6)  # one frame: itself


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, True, "2"])
def test_bad_half_life_is_refused(bad: object) -> None:
    with pytest.raises(InputError, match="half_life"):
        FaceTracker(bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="half_life"):
        smooth_sequence(np.ones((1, 1, 2)) / 2, bad)  # type: ignore[arg-type]


def test_bad_options_are_refused() -> None:
    with pytest.raises(InputError, match="aggregate"):
        FaceTracker(aggregate="mean")
    with pytest.raises(InputError, match="min_iou"):
        FaceTracker(min_iou=0)
    with pytest.raises(InputError, match="max_shift"):
        FaceTracker(max_shift=-1)
    with pytest.raises(InputError, match="max_missed"):
        FaceTracker(max_missed=-1)
    with pytest.raises(InputError, match=r"\(T, N, C\)"):
        smooth_sequence(np.ones((2, 2)))


# --------------------------------------------------------------------------------------------
# Tracks
# --------------------------------------------------------------------------------------------
def test_faces_keep_their_tracks_as_they_move_and_the_mean_matches_smooth_sequence() -> None:
    rng = np.random.default_rng(0)
    tracker = FaceTracker(half_life=2.0)
    frames = [rng.dirichlet(np.ones(7), size=2) for _ in range(6)]
    ids_seen = []
    for t, p in enumerate(frames):
        # two faces, moving 2 px a frame, given in a different order every other frame
        boxes = [_box(10 + 2 * t, 10), _box(100 - 2 * t, 50)]
        order = [0, 1] if t % 2 == 0 else [1, 0]
        ids, mean = tracker.update([boxes[i] for i in order], p[order])
        ids_seen.append(dict(zip(order, ids.tolist())))
        expected = smooth_sequence(np.stack(frames[: t + 1]), 2.0)
        np.testing.assert_allclose(mean, expected[order], rtol=1e-5)
    assert all(s == ids_seen[0] for s in ids_seen) and len(set(ids_seen[0].values())) == 2
    assert tracker.n_tracks == 2


def test_a_small_face_moving_its_own_width_keeps_its_track_by_its_centre() -> None:
    p = _probs([0.5, 0.5])
    tracker = FaceTracker()
    first, _ = tracker.update([_box(0, 0, 6)], p)
    second, _ = tracker.update([_box(6, 0, 6)], p)  # IoU 0 with the last box, centre one side away
    assert second[0] == first[0]
    strict = FaceTracker(max_shift=0)
    a, _ = strict.update([_box(0, 0, 6)], p)
    b, _ = strict.update([_box(6, 0, 6)], p)
    assert b[0] != a[0]
    # a face of another size at the same place is another face
    c, _ = tracker.update([_box(6, 0, 20)], p)
    assert c[0] != first[0]


def test_a_missed_face_keeps_its_track_for_max_missed_frames_and_its_old_frames_weigh_less() -> None:
    tracker = FaceTracker(half_life=1.0, max_missed=2)
    ids0, _ = tracker.update([_box(0, 0)], _probs([0.9, 0.1]))
    tracker.update(np.zeros((0, 4)), np.zeros((0, 2)))  # a frame without the face
    ids2, mean = tracker.update([_box(1, 0)], _probs([0.1, 0.9]))
    assert ids2[0] == ids0[0]
    # the first frame, two frames old, weighs 1/4: (0.25 * 0.9 + 0.1) / 1.25
    np.testing.assert_allclose(mean[0, 0], (0.25 * 0.9 + 0.1) / 1.25, rtol=1e-5)
    for _ in range(3):  # more than max_missed frames without it: the track ends
        tracker.update([], [])
    assert tracker.n_tracks == 0
    ids6, mean6 = tracker.update([_box(1, 0)], _probs([0.1, 0.9]))
    assert ids6[0] != ids0[0]
    np.testing.assert_allclose(mean6, [[0.1, 0.9]], rtol=1e-6)


def test_reset_forgets_tracks_and_ids_go_on() -> None:
    tracker = FaceTracker()
    a, _ = tracker.update([_box(0, 0)], _probs([0.5, 0.5]))
    tracker.reset()
    b, _ = tracker.update([_box(0, 0)], _probs([0.5, 0.5]))
    assert tracker.n_tracks == 1 and b[0] != a[0]


def test_bad_frames_are_refused_and_leave_the_tracks_as_they_were() -> None:
    tracker = FaceTracker()
    tracker.update([_box(0, 0)], _probs([0.5, 0.5]))
    with pytest.raises(InputError, match=r"\(N, 4\)"):
        tracker.update([[0, 0, 1]], _probs([0.5, 0.5]))
    with pytest.raises(InputError, match="one row per box"):
        tracker.update([_box(0, 0)], _probs([0.5, 0.5], [0.5, 0.5]))
    with pytest.raises(InputError, match="finite"):
        tracker.update([_box(0, 0)], _probs([math.nan, 0.5]))
    with pytest.raises(InputError, match="positive size"):
        tracker.update([[5, 5, 5, 9]], _probs([0.5, 0.5]))
    with pytest.raises(InputError, match="3 classes"):
        tracker.update([_box(0, 0)], _probs([0.2, 0.3, 0.5]))
    ids, mean = tracker.update([_box(0, 0)], _probs([0.5, 0.5]))
    assert ids.tolist() == [0] and tracker.n_tracks == 1


# --------------------------------------------------------------------------------------------
# A tracked stream
# --------------------------------------------------------------------------------------------
class _Jitter:
    """Frames of one face that moves a pixel a frame over a flat background."""

    def __init__(self, n: int) -> None:
        from fsrfer_edge.crowd_bench import public_domain_faces

        face = public_domain_faces().images[0]  # (S, S) gray
        self.frames = []
        for t in range(n):
            f = np.full((64, 96), 120, np.uint8)
            f[8:8 + 24, 10 + t:10 + t + 24] = _shrink(face, 24)
            self.frames.append(np.repeat(f[:, :, None], 3, axis=2))
        self.boxes = [(10.0 + t, 8.0, 34.0 + t, 32.0) for t in range(n)]


def _shrink(face: np.ndarray, side: int) -> np.ndarray:
    from fsrfer_edge.preprocessing import resize

    return np.clip(np.rint(resize(face.astype(np.float32)[None], (side, side), "box")[0]), 0, 255).astype(np.uint8)


def _crowd_cli(tmp_path: Any, video: Any, flags: list, bad: list) -> dict:
    """fsrfer-crowd on ``video`` with ``flags`` (its JSON), and each of the ``bad`` flag lists refused (status 2,
    no video written)."""
    import json

    from fsrfer_edge import crowd_cli

    js = tmp_path / "res.json"
    assert crowd_cli.main([str(video), "--out", str(tmp_path / "out.avi"), "--json", str(js), "--min-face", "16"]
                          + flags) == 0
    for wrong in bad:
        assert crowd_cli.main([str(video), "--out", str(tmp_path / "o2.avi")] + wrong) == 2
    assert not (tmp_path / "o2.avi").exists()
    return dict(json.loads(js.read_text()))


def _scene_video(tmp_path: Any, frames: int) -> Any:
    """A still video of a small seeded scene of the public-domain astronaut face (4 faces of 20-36 px)."""
    from _video import write_video

    from fsrfer_edge import crowd_bench

    scene = crowd_bench.make_scene(crowd_bench.public_domain_faces(), seed=3, n_faces=4, size=(160, 200),
                                   face_range=(20, 36))
    return write_video(tmp_path / "in.avi", [scene.image] * frames)


def _scripted(boxes_at: Any) -> Any:
    """A FaceDetector whose t-th call (from 1) returns ``boxes_at(t)``, each box at score 0.9."""
    from fsrfer_edge.detection import Detection, FaceDetector

    class Scripted(FaceDetector):
        name = "scripted"

        def __init__(self) -> None:
            super().__init__()
            self.t = 0

        def _detect(self, frame: np.ndarray) -> list[Detection]:
            self.t += 1
            return [Detection(b, 0.9) for b in boxes_at(self.t)]

    return Scripted()


def test_a_tracked_stream_labels_faces_with_their_tracks_mean() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer

    clip = _Jitter(5)

    def Boxes() -> Any:  # noqa: N802  (reads like the class it makes)
        return _scripted(lambda t: [clip.boxes[t - 1]])

    with Recognizer(threads=1) as rec:
        plain = list(CrowdAnalyzer(rec, Boxes()).analyze_stream(clip.frames, track=False))
        tracker = FaceTracker(half_life=2.0, coast=0, confirm=1)  # every frame reported, as detected
        results = list(CrowdAnalyzer(rec, Boxes()).analyze_stream(clip.frames, track=tracker))
    assert all(r.faces[0].track_id is None and r.faces[0].frame_probs is None for r in plain)
    frame_probs = np.stack([r.faces[0].probs for r in plain])[:, None, :]
    for t, r in enumerate(results):
        f = r.faces[0]
        assert f.track_id == results[0].faces[0].track_id
        np.testing.assert_allclose(f.frame_probs, plain[t].faces[0].probs, rtol=1e-6)
        np.testing.assert_allclose(f.probs, smooth_sequence(frame_probs[: t + 1], 2.0)[0], rtol=1e-5)
        assert f.label == r.classes[int(np.argmax(f.probs))] and r.summary.counts[f.label] == 1
        d = f.to_dict(r.classes)
        assert d["track_id"] == f.track_id and set(d["frame_probs"]) == set(r.classes)
    with pytest.raises(InputError, match="track="):
        next(CrowdAnalyzer(rec, Boxes()).analyze_stream(clip.frames, track="yes"))  # type: ignore[arg-type]


def test_crowd_cli_tracking_options_are_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("onnxruntime")
    pytest.importorskip("PIL")
    from fsrfer_edge import crowd_cli
    from fsrfer_edge.detection.frames import write_image

    img = tmp_path / "in.png"
    write_image(img, np.full((32, 32, 3), 100, np.uint8))
    assert crowd_cli.main([str(img), "--out", str(tmp_path / "o.png"), "--track"]) == 2
    assert crowd_cli.main([str(img), "--out", str(tmp_path / "o.png"), "--half-life", "3"]) == 2
    assert not (tmp_path / "o.png").exists()


def test_crowd_cli_tracks_a_video_by_default_and_not_with_no_track(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from fsrfer_edge import crowd_cli

    video = _scene_video(tmp_path, 3)
    for extra, tracked in (([], True), (["--no-track"], False), (["--half-life", "4"], True)):
        js = tmp_path / "res.json"
        assert crowd_cli.main([str(video), "--out", str(tmp_path / "out.avi"), "--json", str(js), "--min-face", "16"]
                              + extra) == 0
        doc = json.loads(js.read_text())
        faces = [f for fr in doc["frames"] for f in fr["faces"]]
        assert faces, "the scene's faces were found"
        assert all(("track_id" in f) == tracked for f in faces)
        assert doc["tracking"] == ({"half_life": 4.0 if "4" in extra else 2.0, "aggregate": "probs", "coast": 2,
                                    "confirm": 2, "motion": True, "detect_every": 1} if tracked else None)
        if tracked:  # a still scene: every face keeps its track (the first frame reports every face found)
            per_frame = [sorted(f["track_id"] for f in fr["faces"]) for fr in doc["frames"]]
            assert per_frame[0] == per_frame[1] == per_frame[2] != []
    assert crowd_cli.main([str(video), "--out", str(tmp_path / "o2.avi"), "--no-track", "--half-life", "3"]) == 2


def test_crowd_cli_detects_every_nth_frame_with_detect_every(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    doc = _crowd_cli(tmp_path, _scene_video(tmp_path, 5), ["--detect-every", "2", "--confirm", "1"],
                     bad=[["--detect-every", "0"], ["--no-track", "--detect-every", "2"]])
    assert doc["tracking"]["detect_every"] == 2
    ran = [fr["detector_ran"] for fr in doc["frames"]]
    assert ran == [True, True, False, True, False]  # the first two frames, then every other
    detected = [[f["detected"] for f in fr["faces"]] for fr in doc["frames"]]
    assert all(d and all(d) == r and any(d) == r for d, r in zip(detected, ran))  # answered where expected between


def test_crowd_clips_script_keeps_drifting_faces_on_their_tracks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from _scripts import load_script

    crowd_clips = load_script("scripts/crowd_clips.py", "crowd_clips")
    out = tmp_path / "clips.json"
    assert crowd_clips.main(["--data", str(tmp_path / "none"), "--clips", "1", "--faces", "12", "--size", "200x260",
                             "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["labelled"] is False and set(doc["rows"]) == {"clean", "jpeg"}
    every = doc["rows"]["clean"][-1]
    assert every["bin"] == "all" and every["found_in_2_or_more_frames"] >= 3  # the larger astronaut faces
    assert every["one_track"] == every["found_in_2_or_more_frames"]  # none lost its track while drifting
    assert "accuracy one frame" not in every


def test_crowd_walk_script_walks_faces_past_each_other_and_scores_both_trackers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from _scripts import load_script
    from fsrfer_edge.crowd_bench import public_domain_faces
    from fsrfer_edge.detection.base import box_iou

    crowd_walk = load_script("scripts/crowd_walk.py", "crowd_walk")
    clip = crowd_walk.render_walk(public_domain_faces(), 3, 30, (120, 160), "plain", "clean", frames=6)
    boxes, visible = clip["boxes"], clip["visible"]
    side = boxes[0, :, 2] - boxes[0, :, 0]
    step = boxes[1, :, :2] - boxes[0, :, :2]
    pace = np.hypot(step[:, 0], step[:, 1]) / side
    assert ((pace >= 0.1 - 1e-9) & (pace <= 0.4 + 1e-9)).all()  # the default pace, in face sides a frame
    assert (np.abs(step[:, 1]) <= np.tan(np.deg2rad(15.0)) * np.abs(step[:, 0]) + 1e-9).all()  # walking sideways
    np.testing.assert_allclose(boxes[5, :, :2] - boxes[0, :, :2], 5 * step)  # a steady pace
    assert len(clip["frames"]) == 6 and clip["frames"][0].shape == (120, 160, 3)
    for t in range(6):  # a face is hidden only where it leaves the frame or a larger face passes over it
        inside = (boxes[t, :, 0] >= 0) & (boxes[t, :, 1] >= 0) & (boxes[t, :, 2] <= 160) & (boxes[t, :, 3] <= 120)
        iou = box_iou(boxes[t], boxes[t])
        over = np.array([((iou[j] > 0) & (side > side[j])).any() for j in range(len(side))])
        assert (visible[t][inside & ~over] > 0.999).all() and (visible[t] <= 1.0 + 1e-9).all()
    assert clip["crossing"].any() and (visible < 0.999).any()
    out = tmp_path / "walk.json"
    with pytest.raises(SystemExit):
        crowd_walk.main(["--speed", "0.4,0.1", "--out", str(out)])
    assert crowd_walk.main(["--data", str(tmp_path / "none"), "--clips", "1", "--faces", "12", "--frames", "4",
                            "--size", "200x260", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["labelled"] is False and set(doc["rows"]) == {"clean", "jpeg"}
    every = doc["rows"]["clean"]["all"]
    assert every["tracked, motion"]["faces_followed"] >= 3 and "identity_switches" in every["tracked, motion"]
    assert "accuracy" not in every["tracked"] and "motion=True" in doc["runs"]["tracked, motion"]

# --------------------------------------------------------------------------------------------
# Coasting: a tracked face the detector missed
# --------------------------------------------------------------------------------------------
def test_a_confirmed_track_missed_by_the_detector_coasts_for_coast_frames() -> None:
    tracker = FaceTracker(half_life=math.inf, coast=2, max_missed=5, motion=False)
    assert tracker.coasting([]).shape == (0, 4)
    a, _ = tracker.update([_box(0, 0)], _probs([0.9, 0.1]))
    assert tracker.coasting([]).shape == (0, 4)  # found once: not yet a confirmed track
    tracker.update([_box(1, 0)], _probs([0.9, 0.1]))
    for step in range(2):  # missed twice: recognised at its last box each time, under its own track
        extra = tracker.coasting([])
        np.testing.assert_array_equal(extra, [_box(1, 0)])
        ids, mean = tracker.update(extra, _probs([0.1, 0.9]), detected=[False])
        assert ids[0] == a[0]
        np.testing.assert_allclose(mean[0, 1], (0.1 + 0.1 + 0.9 * (step + 1)) / (3 + step), rtol=1e-5)
    assert tracker.coasting([]).shape == (0, 4)  # a third miss: no more
    with pytest.raises(InputError, match="coasting"):
        tracker.update([_box(1, 0)], _probs([0.5, 0.5]), detected=[False])
    back, _ = tracker.update([_box(2, 0)], _probs([0.5, 0.5]))  # found again within max_missed: same track
    assert back[0] == a[0]


def test_coasting_skips_tracks_a_detection_continues_and_can_be_off() -> None:
    off = FaceTracker(coast=0, motion=False)
    on = FaceTracker(coast=1, motion=False)
    for tr in (off, on):
        for x in (0, 1):
            tr.update([_box(x, 0), _box(50 + x, 0)], _probs([0.5, 0.5], [0.5, 0.5]))
    assert off.coasting([_box(2, 0)]).shape == (0, 4)
    np.testing.assert_array_equal(on.coasting([_box(2, 0)]), [_box(51, 0)])  # only the face not found again
    with pytest.raises(InputError, match="coast"):
        FaceTracker(coast=6, max_missed=5)
    with pytest.raises(InputError, match="one per box"):
        on.update([_box(2, 0)], _probs([0.5, 0.5]), detected=[True, False])


def test_a_tracked_stream_recognises_a_face_the_detector_missed_when_coasting() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer

    clip = _Jitter(4)

    def Flicker() -> Any:  # noqa: N802  (misses the face in the third frame)
        return _scripted(lambda t: [] if t == 3 else [clip.boxes[t - 1]])

    with Recognizer(threads=1) as rec:
        plain = list(CrowdAnalyzer(rec, Flicker()).analyze_stream(clip.frames, track=FaceTracker(coast=0, confirm=1, motion=False)))
        coasted = list(CrowdAnalyzer(rec, Flicker()).analyze_stream(clip.frames,
                                                                    track=FaceTracker(coast=2, confirm=1, motion=False)))
    assert [len(r.faces) for r in plain] == [1, 1, 0, 1]
    assert [len(r.faces) for r in coasted] == [1, 1, 1, 1]
    third = coasted[2].faces[0]
    assert not third.detected and third.score == 0.0 and third.box == clip.boxes[1]  # the last box it was found at
    assert third.track_id == coasted[0].faces[0].track_id == coasted[3].faces[0].track_id
    assert third.to_dict(coasted[2].classes)["detected"] is False and coasted[2].summary.n_faces == 1
    assert all(f.detected for r in coasted for f in r.faces if f is not third)


def test_no_coasting_over_a_detection_and_coast_after_counts_detections() -> None:
    tracker = FaceTracker(coast=2)
    for x in (0, 1):
        tracker.update([_box(x, 0)], _probs([0.5, 0.5]))
    # a detection that no track continues (here: twice the size) but overlapping the track's last box: the track
    # is not recognised a second time at that place
    assert tracker.coasting([[-5, -5, 15, 15]]).shape == (0, 4)
    assert tracker.coasting([_box(200, 200)]).shape == (1, 4)
    late = FaceTracker(coast=2, coast_after=3)
    for x in (0, 1):
        late.update([_box(x, 0)], _probs([0.5, 0.5]))
    assert late.coasting([]).shape == (0, 4)  # found twice: not enough
    late.update([_box(2, 0)], _probs([0.5, 0.5]))
    assert late.coasting([]).shape == (1, 4)
    with pytest.raises(InputError, match="coast_after"):
        FaceTracker(coast_after=0)


# --------------------------------------------------------------------------------------------
# Review fixes (each test failed before its fix)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("boxes", [[[0, 0, 10, 10], [1, 2, 3]], [(0, 0, 10, "a")]])
def test_boxes_that_are_not_numbers_are_an_input_error(boxes: object) -> None:
    tracker = FaceTracker()
    with pytest.raises(InputError, match=r"\(N, 4\)"):
        tracker.update(boxes, np.full((len(boxes), 2), 0.5))  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"\(N, 4\)"):
        tracker.coasting(boxes)
    assert tracker.n_tracks == 0


@pytest.mark.parametrize("rows", [[[0.0, 0.0]], [[-1.0, 2.0]], [[-3.0, -5.0]], [[0.9, 0.9]]])
def test_rows_that_are_not_probabilities_are_refused_not_turned_into_nan(rows: list) -> None:
    # a row of zeros gave NaN "probabilities" (and NaN in fsrfer-crowd's JSON); logits or negative values gave
    # numbers outside [0, 1] or a mean of logits passed off as probabilities
    tracker = FaceTracker()
    with pytest.raises(InputError, match="sum to 1"):
        tracker.update([_box(0, 0)], _probs(*rows))
    assert tracker.n_tracks == 0
    with pytest.raises(InputError, match="sum to 1"):
        smooth_sequence(np.asarray(rows, dtype=np.float64)[None])
    with pytest.raises(InputError, match="finite"):
        smooth_sequence(np.array([[[math.nan, 0.5]]]))
    # probabilities rounded to 4 decimals (as in the JSON) or float32 softmax rows are fine
    tracker.update([_box(0, 0)], np.array([[0.1429] * 6 + [0.1426]], dtype=np.float32))


def test_numpy_numbers_are_accepted_for_every_option() -> None:
    tracker = FaceTracker(np.float32(2), min_iou=np.float32(0.3), max_shift=np.float32(1), max_missed=np.int64(5),
                          coast=np.int32(1), coast_after=np.int16(2))
    assert (tracker.min_iou, tracker.max_shift, tracker.max_missed, tracker.coast) == (pytest.approx(0.3), 1.0, 5, 1)
    with pytest.raises(InputError, match="half_life"):
        FaceTracker(10 ** 400)  # an int too large for a float: an InputError, not OverflowError


def test_an_empty_frame_gives_probabilities_with_the_tracks_class_count() -> None:
    tracker = FaceTracker()
    ids, mean = tracker.update([], [])
    assert ids.shape == (0,) and mean.shape == (0, 0)  # no tracks yet: nothing to know the classes from
    tracker.update([_box(0, 0)], _probs([0.2, 0.3, 0.5]))
    ids, mean = tracker.update([], [])
    assert ids.shape == (0,) and mean.shape == (0, 3) and mean.dtype == np.float32
    with pytest.raises(InputError, match="2 classes; expected 3"):
        tracker.update(np.zeros((0, 4)), np.zeros((0, 2)))


def test_a_class_count_change_is_refused_with_what_to_do() -> None:
    tracker = FaceTracker()
    tracker.update([_box(0, 0)], _probs([0.5, 0.5]))
    with pytest.raises(InputError, match=r"expected 2\b.*reset\(\)"):
        tracker.update([_box(50, 50)], _probs([0.2, 0.3, 0.5]))


def test_cli_half_life_messages_name_the_option_as_typed() -> None:
    from fsrfer_edge.tracking import check_half_life

    with pytest.raises(InputError) as info:
        check_half_life(0.0, "--half-life")
    assert str(info.value).startswith("--half-life 0.0;") and "math.inf" not in str(info.value) \
        and "inf" in str(info.value)
    with pytest.raises(InputError, match=r"^half_life=0;.*math\.inf"):
        check_half_life(0)


def test_a_stream_takes_a_numpy_bool_for_track_and_tracks_a_numpy_camera_index_by_default(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from fsrfer_edge import crowd
    from fsrfer_edge.crowd import CrowdAnalyzer

    analyzer = CrowdAnalyzer.__new__(CrowdAnalyzer)  # no model needed: only how the stream is set up is looked at
    analyzer._closed = False
    made: list = []
    monkeypatch.setattr(CrowdAnalyzer, "_stream", lambda self, source, pipeline, max_frames, tracker, detect_every:
                        made.append(tracker) or iter(()))
    frames = [np.zeros((8, 8, 3), np.uint8)]
    analyzer.analyze_stream(frames, track=np.bool_(True))
    analyzer.analyze_stream(frames, track=np.bool_(False))
    assert isinstance(made[0], FaceTracker) and made[1] is None
    video = crowd.VideoFrames.__new__(crowd.VideoFrames)  # an opened video file or camera (video_frames())
    for source in ("a.mp4", Path("a.mp4"), 0, np.int64(0), np.int32(1), video):
        made.clear()
        analyzer.analyze_stream(source)
        assert isinstance(made[0], FaceTracker), f"{type(source).__name__} is a video or a camera: tracked"
    made.clear()
    analyzer.analyze_stream(frames)
    assert made == [None]
    with pytest.raises(InputError, match="track=1; expected True, False, None"):
        analyzer.analyze_stream(frames, track=1)  # type: ignore[arg-type]


def test_crowd_cli_writes_valid_json_with_an_infinite_half_life_and_draws_the_tracks_labels(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json

    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from fsrfer_edge import crowd_cli

    video = _scene_video(tmp_path, 3)
    drawn: list = []
    annotate = crowd_cli.annotate
    monkeypatch.setattr(crowd_cli, "annotate", lambda frame, result, *a: drawn.append(
        [(f.track_id, f.label) for f in result.faces]) or annotate(frame, result, *a))
    js = tmp_path / "res.json"
    assert crowd_cli.main([str(video), "--out", str(tmp_path / "out.avi"), "--json", str(js), "--min-face", "16",
                           "--half-life", "inf"]) == 0
    text = js.read_text()

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    doc = json.loads(text, parse_constant=refuse)  # no Infinity / NaN
    assert doc["tracking"] == {"half_life": None, "aggregate": "probs", "coast": 2, "confirm": 2,
                               "motion": True, "detect_every": 1}  # null: a plain mean
    assert drawn == [[(f["track_id"], f["label"]) for f in fr["faces"]] for fr in doc["frames"]] and any(drawn)


def test_track_log_gives_each_face_its_frames_and_its_mean_over_them() -> None:
    from fsrfer_edge.crowd import CrowdResult, FaceResult, TrackLog, summarize

    classes = ("a", "b")

    def frame(i: int, faces: list[tuple[int, list[float], bool]]) -> CrowdResult:
        fs = [FaceResult((0.0, 0.0, 10.0, 10.0), 0.9, 10.0 + i, "a", 0, np.array([0.5, 0.5]), track_id=tid,
                         frame_probs=np.array(p), detected=det) for tid, p, det in faces]
        return CrowdResult(tuple(fs), summarize(fs, classes), classes, (20, 20), i)

    log = TrackLog(classes)
    log.add(frame(0, [(7, [0.9, 0.1], True)]))
    log.add(frame(1, [(7, [0.6, 0.4], True), (3, [0.2, 0.8], True)]))
    log.add(frame(2, [(7, [0.0, 1.0], False)]))
    untracked = FaceResult((0.0, 0.0, 1.0, 1.0), 0.9, 1.0, "a", 0, np.array([1.0, 0.0]))
    log.add(CrowdResult((untracked,), summarize([untracked], classes), classes, (5, 5), 3))
    out = log.to_list()
    assert len(log) == 2 and [t["track_id"] for t in out] == [7, 3]  # in order of first appearance
    seven = out[0]
    assert (seven["first_frame"], seven["last_frame"], seven["frames"], seven["coasted_frames"]) == (0, 2, 3, 1)
    assert seven["probs"] == {"a": 0.5, "b": 0.5} and seven["mean_size_px"] == 11.0
    assert out[1]["label"] == "b" and out[1]["frames"] == 1


def test_crowd_cli_lists_the_faces_it_followed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from fsrfer_edge import crowd_cli

    video = _scene_video(tmp_path, 3)
    js = tmp_path / "res.json"
    assert crowd_cli.main([str(video), "--out", str(tmp_path / "out.avi"), "--json", str(js), "--min-face", "16"]) == 0
    doc = json.loads(js.read_text())
    ids = {f["track_id"] for fr in doc["frames"] for f in fr["faces"]}
    assert {t["track_id"] for t in doc["tracks"]} == ids and ids
    assert all(t["frames"] == 3 and t["first_frame"] == 0 and t["last_frame"] == 2 for t in doc["tracks"])
    assert crowd_cli.main([str(video), "--out", str(tmp_path / "out.avi"), "--json", str(js), "--min-face", "16",
                           "--no-track"]) == 0
    assert json.loads(js.read_text())["tracks"] is None


def test_with_half_life_2_a_changed_expression_takes_the_label_at_its_second_frame() -> None:
    # docs: "with half_life 2 a changed expression takes over the label within about two to three frames"
    tracker = FaceTracker(half_life=2.0)
    for _ in range(30):  # a long, steady expression
        tracker.update([_box(0, 0)], _probs([0.9, 0.1]))
    labels = [int(np.argmax(tracker.update([_box(0, 0)], _probs([0.1, 0.9]))[1][0])) for _ in range(3)]
    assert labels == [0, 1, 1]


def test_confirm_reports_a_face_from_its_tracks_second_detection_on() -> None:
    tracker = FaceTracker(confirm=2)
    ids, _ = tracker.update([_box(0, 0), _box(50, 0)], _probs([0.5, 0.5], [0.5, 0.5]))
    assert tracker.reported(ids).tolist() == [True, True]  # a stream's first frame: nothing to confirm against
    ids, _ = tracker.update([_box(1, 0), _box(100, 100)], _probs([0.5, 0.5], [0.5, 0.5]))
    assert tracker.reported(ids).tolist() == [True, False]  # the first face's second frame; a new face
    ids, _ = tracker.update([_box(2, 0), _box(101, 100)], _probs([0.5, 0.5], [0.5, 0.5]))
    assert tracker.reported(ids).tolist() == [True, True]  # its second frame
    tracker.reset()  # a new stream: its first frame again
    assert tracker.reported(tracker.update([_box(300, 0)], _probs([0.5, 0.5]))[0]).tolist() == [True]
    every = FaceTracker(confirm=1)
    assert every.reported(every.update([_box(0, 0)], _probs([0.5, 0.5]))[0]).tolist() == [True]
    with pytest.raises(InputError, match="confirm"):
        FaceTracker(confirm=0)


def test_a_stream_with_confirm_holds_back_each_new_faces_first_frame() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer

    clip = _Jitter(3)

    def Boxes() -> Any:  # noqa: N802  (the clip's face, and from the second frame on a second box far from it)
        return _scripted(lambda t: [clip.boxes[t - 1]] + ([(60.0, 30.0, 84.0, 54.0)] if t >= 2 else []))

    with Recognizer(threads=1) as rec:
        results = list(CrowdAnalyzer(rec, Boxes()).analyze_stream(clip.frames, track=FaceTracker(confirm=2)))
    assert [len(r.faces) for r in results] == [1, 1, 2] and results[1].summary.n_faces == 1
    assert results[1].faces[0].track_id == results[0].faces[0].track_id  # the held-back one is the new face
    assert {f.track_id for f in results[2].faces} > {results[0].faces[0].track_id}


def test_the_defaults_coast_two_frames_and_confirm_after_two() -> None:
    # docs/crowd.md, "Coasting and confirmation together" (results/crowd/clips_coast_confirm.json)
    tracker = FaceTracker()
    assert (tracker.coast, tracker.coast_after, tracker.confirm) == (2, 2, 2)
    assert FaceTracker(max_missed=1).coast == 1  # the default coasting within a shorter max_missed
    with pytest.raises(InputError, match="coast"):
        FaceTracker(coast=2, max_missed=1)  # asked for, not fitting: refused


def test_crowd_cli_coast_and_confirm_options(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    doc = _crowd_cli(tmp_path, _scene_video(tmp_path, 2), ["--coast", "0", "--confirm", "1", "--no-motion"],
                     bad=[["--coast", "-1"], ["--coast", "9"], ["--confirm", "0"], ["--no-track", "--coast", "1"],
                          ["--no-track", "--motion"]])
    assert doc["tracking"]["coast"] == 0 and doc["tracking"]["confirm"] == 1 and doc["frames"][0]["faces"]
    assert doc["tracking"]["motion"] is False


def test_crowd_clips_switch_at_changes_the_faces_and_refuses_frames_outside_the_clip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from _scripts import load_script

    from fsrfer_edge.crowd_bench import public_domain_faces

    crowd_clips = load_script("scripts/crowd_clips.py", "crowd_clips")
    pool = public_domain_faces()
    same = crowd_clips.render_clip(pool, 7, 6, (120, 160), "plain", "clean")
    changed = crowd_clips.render_clip(pool, 7, 6, (120, 160), "plain", "clean", switch_at=3)
    for t in range(crowd_clips.FRAMES):  # the same clip up to the change, other faces from it on
        assert np.array_equal(same[0][t], changed[0][t]) == (t < 3)
        np.testing.assert_array_equal(same[1][t], changed[1][t])  # at the same places
    out = tmp_path / "s.json"
    assert crowd_clips.main(["--data", str(tmp_path / "none"), "--clips", "1", "--faces", "6", "--size", "120x160",
                             "--switch-at", "4", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["switch_at_frame"] == 4
    for bad in ("1", str(crowd_clips.FRAMES + 1)):
        with pytest.raises(SystemExit):
            crowd_clips.main(["--switch-at", bad, "--out", str(tmp_path / "x.json")])


# --------------------------------------------------------------------------------------------
# Motion: a track's box moved on by its face's velocity
# --------------------------------------------------------------------------------------------
def _crossing(tracker: FaceTracker, frames: int = 9, speed: float = 4.0) -> list[list[int]]:
    """Two 10 px faces walking towards each other on one row at ``speed`` px a frame, passing at frame 4 (where the
    detector finds only the one in front); the track ids of the left walker and the right one at each frame."""
    out = []
    for t in range(frames):
        left, right = 4.0 + speed * t, 4.0 + 8 * speed - speed * t
        boxes = [_box(left, 0), _box(right, 0)] if abs(left - right) >= 6 else [_box(right, 0)]
        ids, _ = tracker.update(boxes, _probs(*[[0.5, 0.5]] * len(boxes)))
        out.append([int(ids[0]), int(ids[-1])] if len(boxes) == 2 else [-1, int(ids[0])])
    return out


def test_with_motion_faces_that_pass_each_other_keep_their_tracks_and_without_they_swap() -> None:
    still = _crossing(FaceTracker(coast=0, confirm=1, motion=False))
    moving = _crossing(FaceTracker(coast=0, confirm=1, motion=True))
    assert still[0] == moving[0] == [0, 1]
    assert still[-1] != [0, 1]  # the greedy match on last boxes hands each walker the other's track
    # at frame 4 the one face found is at both walkers' expected place: either track may take it
    assert moving[-1] == [0, 1] and all(ids == [0, 1] for t, ids in enumerate(moving) if t != 4)


def test_with_motion_a_coasting_face_is_looked_for_where_it_walked_to() -> None:
    tracker = FaceTracker(half_life=math.inf, coast=2, motion=True)
    for x in (0.0, 3.0, 6.0):
        a, _ = tracker.update([_box(x, 0)], _probs([0.9, 0.1]))
    for step in (1, 2):  # missed: coasted one and two steps on from its last box, still its own track
        extra = tracker.coasting([])
        np.testing.assert_allclose(extra, [_box(6.0 + 3.0 * step, 0)])
        ids, _ = tracker.update(extra, _probs([0.9, 0.1]), detected=[False])
        assert ids[0] == a[0]
    back, _ = tracker.update([_box(15.0, 0)], _probs([0.9, 0.1]))  # found again where it walked to
    assert back[0] == a[0]
    np.testing.assert_allclose(tracker.coasting([]), [_box(18.0, 0)])  # velocity kept: 9 px over 3 frames
    assert FaceTracker().motion is True and "motion=True" in repr(FaceTracker())  # the default since its rule
    with pytest.raises(InputError, match="motion"):
        FaceTracker(motion="yes")  # type: ignore[arg-type]


def test_a_stream_with_motion_coasts_a_walking_face_ahead_until_it_leaves_the_frame() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer

    clip = _Jitter(5)  # 64x96 frames
    walk = [(10.0, 8.0, 34.0, 32.0), (30.0, 8.0, 54.0, 32.0)]  # 20 px a frame to the right, then missed

    with Recognizer(threads=1) as rec:
        out = list(CrowdAnalyzer(rec, _scripted(lambda t: [walk[t - 1]] if t <= 2 else [])).analyze_stream(
            clip.frames, track=FaceTracker(coast=3, confirm=1, motion=True)))
    assert [len(r.faces) for r in out] == [1, 1, 1, 1, 0]  # frame 5's box (90-114) is mostly past the right edge
    assert [r.faces[0].box for r in out[2:4]] == [(50.0, 8.0, 74.0, 32.0), (70.0, 8.0, 94.0, 32.0)]
    assert not any(r.faces[0].detected for r in out[2:4])
    assert {r.faces[0].track_id for r in out[:4]} == {out[0].faces[0].track_id}


def test_with_motion_a_coasted_box_goes_to_the_track_coasting_gave_it_for_when_two_tracks_expect_one_place() -> None:
    """Two walkers meet: both tracks expect their faces at the same box. The one face found continues the first
    track (coasting() leaves that track out), so the coasted box is the second track's; update() must not hand it
    to the first track (whose box it equals too) and the detection to the second."""
    tracker = FaceTracker(half_life=math.inf, coast=2, confirm=1, motion=True)
    for t in range(3):  # one walks right from 0, the other left from 60, 10 px a frame: both expected at 30 next
        a, _ = tracker.update([_box(10.0 * t, 0), _box(60.0 - 10.0 * t, 0)], _probs([0.9, 0.1], [0.1, 0.9]))
    found = [_box(40.0, 0)]  # touches the expected box (no overlap), one face side from its centre
    extra = tracker.coasting(found)
    np.testing.assert_allclose(extra, [_box(30.0, 0)])
    continued = set(tracker._match(np.asarray(found, dtype=np.float64)).values())  # the track the face continues
    assert continued == {0}
    ids, _ = tracker.update(np.vstack([found, extra]), _probs([0.5, 0.5], [0.5, 0.5]), detected=[True, False])
    assert ids.tolist() == [a[0], a[1]]  # the face: the first walker's track; the coasted box: the second's


def test_crowd_walk_counts_switches_accuracy_and_false_faces_as_its_note_says(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The scoring of scripts/crowd_walk.py on a scripted clip and scripted answers: two faces, B crossing A."""
    import json
    from types import SimpleNamespace as NS

    from _scripts import load_script
    from fsrfer_edge import crowd, crowd_bench

    crowd_walk = load_script("scripts/crowd_walk.py", "crowd_walk")
    boxes = np.array([[[10, 10, 30, 30], [60, 10, 80, 30]]] * 3, dtype=np.float64)
    clip = {"frames": [np.zeros((100, 120, 3), np.uint8)] * 3, "boxes": boxes, "labels": np.array([3, 4]),
            "visible": np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 0.3]]), "crossing": np.array([False, True])}
    monkeypatch.setattr(crowd_walk, "render_walk", lambda *a, **k: clip)
    monkeypatch.setattr(crowd_bench, "public_domain_faces", lambda: NS(labelled=True, source="scripted"))

    def face(box: Any, tid: int, index: int) -> Any:
        return NS(box=tuple(float(v) for v in box), score=0.9, track_id=tid, index=index)

    answers = [[face(boxes[0, 0], 0, 3), face(boxes[0, 1], 1, 4)],
               [face(boxes[1, 0], 0, 3), face(boxes[1, 1], 2, 0), face((100, 70, 118, 88), 5, 1)],  # B switches, wrong
               [face(boxes[2, 0], 1, 3)]]  # A switches; B (0.3 visible) not found and not scored

    class Scripted:
        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

        def analyze_stream(self, frames: Any, track: Any, detect_every: int = 1) -> Any:
            return (NS(faces=f, timings_ms={"detect": 1.0, "recognize": 1.0}) for f in answers)

    monkeypatch.setattr(crowd, "CrowdAnalyzer", Scripted)
    out = tmp_path / "walk.json"
    assert crowd_walk.main(["--data", str(tmp_path / "none"), "--clips", "1", "--frames", "3", "--out", str(out)]) == 0
    row = json.loads(out.read_text())["rows"]["clean"]
    every, crossing = row["all"]["tracked, motion"], row["crossing"]["tracked, motion"]
    assert every == {"faces_followed": 2, "one_track": 0, "identity_switches": 2, "scored_face_frames": 3,
                     "accuracy": 66.67}  # frames 2-3: A right twice, B wrong once
    assert crossing == {"faces_followed": 1, "one_track": 0, "identity_switches": 1, "scored_face_frames": 1,
                        "accuracy": 0.0}
    assert row["false_faces_per_frame"]["tracked, motion"] == round(1 / 3, 3) and row["crossing_faces"] == 1


# --------------------------------------------------------------------------------------------
# Weak detections: under the detector's threshold, kept where they continue a followed face
# --------------------------------------------------------------------------------------------
def test_continuing_keeps_weak_boxes_on_followed_tracks_no_detection_continues() -> None:
    tracker = FaceTracker(motion=False)
    tracker.update([_box(0, 0), _box(50, 0)], _probs([0.5, 0.5], [0.5, 0.5]))
    tracker.update([_box(1, 0), _box(51, 0), _box(100, 0)], _probs(*[[0.5, 0.5]] * 3))  # a third face, found once
    weak = [_box(2, 0), _box(52, 0), _box(101, 0), _box(200, 0)]
    keep = tracker.continuing([_box(51, 0)], weak)  # a detection continues the second face
    assert keep.tolist() == [True, False, False, False]  # not a taken track, a new one, or no track at all
    assert tracker.continuing([], [_box(5, 0)]).tolist() == [False]  # IoU 6/14 with the expected box: under 0.5
    assert tracker.continuing([], []).shape == (0,) and FaceTracker().continuing([], [_box(0, 0)]).tolist() == [False]
    tracker.update([], np.zeros((0, 2)))  # nobody found in this frame
    assert tracker.continuing([], [_box(1, 0)]).tolist() == [True]  # a track missed lately is still followed
    for _ in range(tracker.max_missed):
        tracker.update([], np.zeros((0, 2)))
    assert tracker.continuing([], [_box(1, 0)]).tolist() == [False]  # ... until it ends



def test_continuing_holds_back_tracks_never_found_with_confidence() -> None:
    """A weak box continues only a track whose best detection scored weak_track_score or more (ByteTrack: only a
    track started by a high-score detection); a track given no scores is not held back."""
    def followed(scores: Any, **kw: Any) -> FaceTracker:
        tracker = FaceTracker(motion=False, **kw)
        for k, s in enumerate(scores):
            tracker.update([_box(k, 0)], _probs([0.5, 0.5]), scores=None if s is None else [s])
        return tracker

    assert followed([0.4, 0.45]).continuing([], [_box(2, 0)]).tolist() == [False]  # a background blob's scores
    assert followed([0.4, 0.6]).continuing([], [_box(2, 0)]).tolist() == [True]  # once found with confidence
    assert followed([0.5, 0.3]).continuing([], [_box(2, 0)]).tolist() == [True]  # the best score, at the line
    assert followed([None, None]).continuing([], [_box(2, 0)]).tolist() == [True]  # scores not known
    assert followed([0.4, 0.45], weak_track_score=0.4).continuing([], [_box(2, 0)]).tolist() == [True]
    assert followed([0.4, 0.45], weak_track_score=0).continuing([], [_box(2, 0)]).tolist() == [True]


@pytest.mark.parametrize("scores, match", [([0.5, 0.5], "one per box"), ([math.nan], "finite"),
                                           (["high"], "numbers")])
def test_update_refuses_scores_that_are_not_one_number_per_box(scores: Any, match: str) -> None:
    tracker = FaceTracker()
    tracker.update([_box(0, 0)], _probs([0.5, 0.5]), scores=[0.9])
    before = repr(tracker)
    with pytest.raises(InputError, match=match):
        tracker.update([_box(1, 0)], _probs([0.5, 0.5]), scores=scores)
    assert repr(tracker) == before  # the tracks are left as they were


@pytest.mark.parametrize("value", [math.nan, math.inf, "0.5", True, None])
def test_weak_track_score_is_checked(value: Any) -> None:
    with pytest.raises(InputError, match="weak_track_score"):
        FaceTracker(weak_track_score=value)


def test_a_weak_box_continues_the_track_it_was_kept_for_and_no_other() -> None:
    """update() matches the weak boxes after the others and only to tracks continuing() accepts, so a weak box
    neither takes a strong box's track nor continues a track the score gate holds back."""
    def followed(scores: list, **kw: Any) -> tuple:
        tracker = FaceTracker(motion=False, **kw)
        for _ in range(2):
            ids, _ = tracker.update([_box(0, 0), _box(6, 0)], _probs([0.9, 0.1], [0.9, 0.1]), scores=scores)
        return tracker, ids.tolist()

    tracker, (a, b) = followed([0.9, 0.35])  # B: a blob scored near the threshold, held back by the gate
    weak = [_box(3.2, 0)]  # IoU 0.515 with A's box, 0.5625 with B's
    assert tracker.continuing([], weak).tolist() == [True]  # kept for A
    ids, _ = tracker.update(weak, _probs([0.9, 0.1]), scores=[0.2], weak=[True])
    assert ids.tolist() == [a]  # before: B, the track with the larger overlap

    tracker, (t, a) = followed([0.9, 0.9], max_shift=0)
    strong, weak = [_box(-3.5, 0)], [_box(2.8, 0)]  # S continues T (IoU 0.48); W: IoU 0.5625 with T, 0.515 with A
    assert tracker.continuing(strong, weak).tolist() == [True]  # kept for A: T is S's
    assert len(tracker.coasting(strong + weak, weak=[False, True])) == 0  # both tracks continued: nothing coasts
    ids, _ = tracker.update(strong + weak, _probs([0.9, 0.1], [0.9, 0.1]), scores=[0.9, 0.2], weak=[False, True])
    assert ids.tolist() == [t, a]  # before: W took T and S started a new track


def test_update_refuses_weak_boxes_that_continue_no_track_and_leaves_the_tracks_as_they_were() -> None:
    tracker = FaceTracker(motion=False)
    for _ in range(2):
        tracker.update([_box(0, 0)], _probs([0.9, 0.1]), scores=[0.9])
    before = repr(tracker), [(tr.num.tolist(), tr.den, tr.missed) for tr in tracker._tracks]
    for boxes, kw, match in (([_box(50, 0)], {"weak": [True]}, "continues no track"),
                             ([_box(0, 0)], {"weak": [True, False]}, "one per box"),
                             ([_box(0, 0)], {"weak": [True], "detected": [False]}, "not detected")):
        with pytest.raises(InputError, match=match):
            tracker.update(boxes, _probs([0.9, 0.1]), **kw)
        assert (repr(tracker), [(tr.num.tolist(), tr.den, tr.missed) for tr in tracker._tracks]) == before

def _weak_detector(boxes_at: Any) -> Any:
    """A detector with a threshold (0.3) and weak detections (0.1): its t-th call returns ``boxes_at(t)`` as
    (box, score) pairs."""
    from fsrfer_edge.detection import Detection, FaceDetector

    class Weak(FaceDetector):
        name = "weak"
        min_score = 0.3
        weak_score = 0.1

        def __init__(self) -> None:
            super().__init__()
            self.t = 0

        def _detect(self, frame: np.ndarray) -> list[Detection]:
            self.t += 1
            return [Detection(b, s) for b, s in boxes_at(self.t)]

    return Weak()


def test_a_tracked_stream_keeps_a_weak_detection_that_continues_a_face_and_one_frame_drops_it() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer

    clip = _Jitter(4)
    far = (60.0, 40.0, 80.0, 60.0)  # a weak box where no face was followed

    def scores(t: int) -> list:
        return [(clip.boxes[t - 1], 0.9 if t <= 2 else 0.2), (far, 0.15)]

    with Recognizer(threads=1) as rec:
        tracked = list(CrowdAnalyzer(rec, _weak_detector(scores)).analyze_stream(
            clip.frames, track=FaceTracker(coast=0, confirm=1)))
        alone = list(CrowdAnalyzer(rec, _weak_detector(scores)).analyze_stream(clip.frames, track=False))
    assert [len(r.faces) for r in alone] == [1, 1, 0, 0]  # one frame: the weak boxes are dropped
    assert [len(r.faces) for r in tracked] == [1, 1, 1, 1]  # tracked: the face goes on at its weak boxes
    assert [r.faces[0].score for r in tracked[2:]] == [0.2, 0.2] and all(r.faces[0].detected for r in tracked)
    assert {r.faces[0].track_id for r in tracked} == {tracked[0].faces[0].track_id}
    assert all(f.box != far for r in tracked for f in r.faces)  # never a new face from a weak box


def test_a_tracked_stream_drops_weak_boxes_of_a_face_only_found_near_the_threshold() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer

    clip = _Jitter(4)

    def scores(t: int) -> list:
        return [(clip.boxes[t - 1], 0.35 if t <= 2 else 0.2)]  # found at 0.35, under weak_track_score 0.5

    with Recognizer(threads=1) as rec:
        held = list(CrowdAnalyzer(rec, _weak_detector(scores)).analyze_stream(
            clip.frames, track=FaceTracker(coast=0, confirm=1)))
        open_ = list(CrowdAnalyzer(rec, _weak_detector(scores)).analyze_stream(
            clip.frames, track=FaceTracker(coast=0, confirm=1, weak_track_score=0.3)))
    assert [len(r.faces) for r in held] == [1, 1, 0, 0]  # the track's best detection scored 0.35
    assert [len(r.faces) for r in open_] == [1, 1, 1, 1]


def test_weak_score_options_are_checked() -> None:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer

    with Recognizer(threads=1) as rec:
        with pytest.raises(InputError, match="weak_score"):
            CrowdAnalyzer(rec, _weak_detector(lambda t: []), weak_score=0.1)  # set it on the detector given
        with pytest.raises(InputError, match="weak_score"):
            CrowdAnalyzer(rec, weak_score=1.5)
        with CrowdAnalyzer(rec, weak_score=0.1) as analyzer:
            assert analyzer.detector.weak_score == 0.1 and analyzer.detector.min_score == 0.3


# --------------------------------------------------------------------------------------------
# Detecting every N-th frame: the frames between answered where the tracker expects each face
# --------------------------------------------------------------------------------------------
def test_a_frame_the_detector_skipped_moves_tracks_on_without_counting_them_missed() -> None:
    tracker = FaceTracker(half_life=math.inf, coast=1, max_missed=1, confirm=1, motion=True)
    for t in range(2):  # 5 px a frame to the right
        (tid,), _ = tracker.update([_box(5.0 * t, 0)], _probs([0.9, 0.1]))
    for t in range(2, 6):  # four skipped frames: coast=1 and max_missed=1 count only frames the detector looked at
        extra = tracker.coasting([])
        np.testing.assert_allclose(extra, [_box(5.0 * t, 0)])  # where its velocity takes it, frame after frame
        ids, _ = tracker.update(extra, _probs([0.5, 0.5]), detected=[False], looked=False)
        assert ids.tolist() == [tid]
    ids, _ = tracker.update([_box(31.0, 0)], _probs([0.5, 0.5]))  # found again, 1 px off the expected 30
    assert ids.tolist() == [tid] and tracker._tracks[0].velocity[0] == pytest.approx(0.5 * 5 + 0.5 * (31 - 5) / 5)
    extra = tracker.coasting([])  # missed in a frame the detector looked at: coasted once (coast=1) ...
    assert len(extra) == 1
    tracker.update(extra, _probs([0.5, 0.5]), detected=[False])
    assert len(tracker.coasting([])) == 0
    tracker.update([], np.zeros((0, 2)))
    assert tracker.n_tracks == 0  # ... and ends after max_missed=1 looked-at frames


def test_a_frame_the_detector_skipped_takes_no_detected_box() -> None:
    tracker = FaceTracker()
    tracker.update([_box(0, 0)], _probs([0.9, 0.1]))
    with pytest.raises(InputError, match="skipped"):
        tracker.update([_box(1, 0)], _probs([0.9, 0.1]), looked=False)
    with pytest.raises(InputError, match="looked"):
        tracker.update([], np.zeros((0, 2)), looked="no")
    assert tracker._tracks[0].missed == 0 and tracker._tracks[0].since == 0  # left as it was


@pytest.mark.parametrize("pipeline", [False, True])
def test_a_stream_detecting_every_third_frame_answers_the_frames_between_at_the_expected_boxes(pipeline: bool) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer

    clip = _Jitter(7)  # one face, a pixel a frame to the right
    detector = _scripted(lambda t: [clip.boxes[(0, 1, 4)[t - 1]]])  # called at frames 0, 1 and 4
    with Recognizer(threads=1) as rec:
        out = list(CrowdAnalyzer(rec, detector).analyze_stream(
            clip.frames, track=FaceTracker(confirm=1), detect_every=3, pipeline=pipeline))
    assert detector.t == 3  # the first two frames (each face's velocity), then every third
    assert [r.detector_ran for r in out] == [True, True, False, False, True, False, False]
    assert [r.timings_ms["detect"] > 0 for r in out] == [r.detector_ran for r in out]
    # in the frames between, each face moved on by its velocity, 1 px a frame
    assert [[f.detected for f in r.faces] for r in out] == [[r.detector_ran] for r in out]
    assert [r.faces[0].box[0] for r in out] == [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0]
    assert len({r.faces[0].track_id for r in out}) == 1


def _every(tracker: FaceTracker, n: int, found_at: Any, frames: int) -> list:
    """CrowdAnalyzer's loop with detect_every=n on scripted detections (``found_at(t)``: frame t's boxes): per
    frame, the (track id, detected) of each face reported."""
    out = []
    for t in range(frames):
        looked = t % n == 0
        dets = [list(b) for b in found_at(t)] if looked else []
        extra = tracker.coasting(dets, looked)
        boxes = np.array(dets + extra.tolist(), dtype=np.float64).reshape(-1, 4)
        ids, _ = tracker.update(boxes, np.full((len(boxes), 2), 0.5), [True] * len(dets) + [False] * len(extra),
                                looked=looked)
        out.append([(int(i), k < len(dets)) for k, (i, shown) in enumerate(zip(ids, tracker.reported(ids))) if shown])
    return out


def test_detecting_every_third_frame_follows_a_face_that_moves_more_than_its_side_between_detections() -> None:
    """A face 10 px wide walking 4 px a frame moves 12 px between detections: a track found once has no velocity,
    so its face is sought at its last box, with the centre distance taken per frame over the frames skipped."""
    out = _every(FaceTracker(), 3, lambda t: [_box(4.0 * t, 0)], 12)
    assert all(len(faces) == 1 for faces in out)  # every frame answered, the first pass's skipped frames too
    assert len({faces[0][0] for faces in out}) == 1  # one track throughout
    assert [faces[0][1] for faces in out] == [t % 3 == 0 for t in range(12)]


def test_detecting_every_nth_frame_shows_the_last_passes_faces_with_coast_0_and_ghosts_a_lost_face_for_coast_passes() -> None:
    out = _every(FaceTracker(coast=0), 3, lambda t: [_box(0, 0)], 7)
    assert [len(faces) for faces in out] == [1] * 7  # coast=0: nothing coasted, but the skipped frames show the face
    gone = _every(FaceTracker(coast=1), 2, lambda t: [_box(0, 0)] if t < 4 else [], 12)
    # found at the passes of frames 0 and 2; missed at frame 4's pass and coasted there (coast=1), so shown in the
    # skipped frame 5 too; missed again at frame 6's pass: no longer shown
    assert [len(faces) for faces in gone] == [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]


def test_detect_every_is_checked() -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer

    analyzer = CrowdAnalyzer.__new__(CrowdAnalyzer)  # no model needed: the options are checked first
    analyzer._closed = False
    frames = [np.zeros((8, 8, 3), np.uint8)]
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InputError, match="detect_every"):
            analyzer.analyze_stream(frames, track=True, detect_every=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="needs tracking"):
        analyzer.analyze_stream(frames, track=False, detect_every=2)


def _step(tracker: FaceTracker, dets: list, looked: bool = True) -> np.ndarray:
    """One frame through coasting() and update(), as CrowdAnalyzer calls them: the ids of the faces reported."""
    extra = tracker.coasting(dets, looked)
    boxes = np.array(dets + extra.tolist(), dtype=np.float64).reshape(-1, 4)
    ids, _ = tracker.update(boxes, np.full((len(boxes), 2), 0.5), [True] * len(dets) + [False] * len(extra),
                            looked=looked)
    return ids[tracker.reported(ids)]


def test_a_skipped_frame_shows_no_face_its_last_detector_frame_did_not() -> None:
    """A lost face whose coasted box a detection overlaps is not shown ("one place, one face"); the frames the
    detector skips after that frame do not bring it back."""
    tracker = FaceTracker(motion=False)
    for _ in range(2):
        a, _c = _step(tracker, [_box(0, 0), _box(12, 0)]).tolist()
    for t in range(9):
        looked = t % 3 == 0
        assert a not in _step(tracker, [_box(8, 0)] if looked else [], looked).tolist()  # A hidden behind C


def test_over_skipped_frames_a_track_found_once_does_not_take_a_face_nearer_another_track() -> None:
    tracker = FaceTracker()  # motion
    for _ in range(3):
        (e,) = _step(tracker, [_box(0, 0)]).tolist()  # E stands at x=0
    tracker.coasting([_box(0, 0), _box(30, 0)])
    ids, _ = tracker.update([_box(0, 0), _box(30, 0)], np.full((2, 2), 0.5))  # F: a box found once, 3 sides away
    for _ in range(2):
        _step(tracker, [], looked=False)
    ids, _ = tracker.update([_box(9, 0)], np.full((1, 2), 0.5))  # E's face, 0.9 sides on; F's box is gone
    assert ids.tolist() == [e]  # F's distance per frame (1 side) is allowed, but E's face is nearer E


def _random_probs(rng: np.random.Generator, *shape: int) -> np.ndarray:
    e = np.exp(rng.normal(size=shape) * 2)
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("half_life,aggregate", [(2.0, "probs"), (1.0, "log"), (math.inf, "probs")])
def test_smoother_over_consecutive_frames_is_smooth_sequence(half_life: float, aggregate: str) -> None:
    probs = _random_probs(np.random.default_rng(3), 6, 2, 7)  # 6 frames of 2 faces
    s = ExpressionSmoother(half_life, aggregate)
    for t in range(6):
        got = [s.update(("cam0", face), probs[t, face], frame=100 + t) for face in range(2)]
        np.testing.assert_allclose(got, smooth_sequence(probs[:t + 1], half_life, aggregate), atol=1e-6)


def test_smoother_weights_as_face_tracker_when_a_face_is_missed() -> None:
    """A frame without the face still halves the earlier frames' weight, as FaceTracker's tracks decay."""
    rng = np.random.default_rng(4)
    probs = _random_probs(rng, 3, 1, 7)
    box = np.array([[10.0, 10.0, 30.0, 30.0]])
    tracker = FaceTracker(half_life=2.0, coast=0, confirm=1, motion=False)
    s = ExpressionSmoother(half_life=2.0)
    for frame, p in ((0, probs[0]), (1, None), (2, probs[1]), (3, probs[2])):
        if p is None:
            tracker.update(np.zeros((0, 4)), np.zeros((0, 7)))
            continue
        _, expected = tracker.update(box, p)
        np.testing.assert_allclose(s.update(7, p[0], frame), expected[0], atol=1e-6)


def test_smoother_forgets_faces_not_seen_for_max_age_frames() -> None:
    rng = np.random.default_rng(5)
    a, b = _random_probs(rng, 2, 7)
    s = ExpressionSmoother(max_age=3)
    s.update(1, a, 0)
    s.update(2, a, 0)
    s.update(2, a, 3)  # face 1 last seen 3 frames ago: kept
    assert len(s) == 2
    np.testing.assert_allclose(s.update(1, b, 4), b, atol=1e-6)  # 4 frames: forgotten, starts afresh
    assert len(s) == 2


@pytest.mark.parametrize("call,message", [
    (lambda s: s.update(1, [0.5, 0.6], 0), "class probabilities"),
    (lambda s: s.update(1, np.full((2, 7), 1 / 7), 0), "expected \\(C,\\)"),
    (lambda s: s.update(1, np.full(7, 1 / 7), 1.0), "integer number"),
    (lambda s: s.update([1], np.full(7, 1 / 7), 0), "cannot be hashed"),
    (lambda s: (s.update(1, np.full(7, 1 / 7), 5), s.update(1, np.full(7, 1 / 7), 5)), "once a frame"),
    (lambda s: (s.update(1, np.full(7, 1 / 7), 5), s.update(1, np.full(6, 1 / 6), 6)), "6 classes"),
    (lambda s: ExpressionSmoother(max_age=-1), "max_age"),
    (lambda s: ExpressionSmoother(half_life=0), "half_life"),
])
def test_smoother_refuses_what_it_cannot_average(call: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call(ExpressionSmoother())


def test_rows_of_no_classes_are_refused_not_made_into_tracks() -> None:
    # (N, 0) "probabilities" for N boxes passed every check (an empty array has no bad value) and started tracks of
    # 0 classes, which then refused the model's real rows
    tracker = FaceTracker()
    with pytest.raises(InputError, match="class"):
        tracker.update([_box(0, 0), _box(50, 50)], np.zeros((2, 0)))
    assert tracker.n_tracks == 0
    tracker.update([_box(0, 0)], _probs([0.5, 0.5]))
    with pytest.raises(InputError, match="class"):
        smooth_sequence(np.zeros((3, 2, 0)))
    assert smooth_sequence(np.zeros((3, 0, 2))).shape == (0, 2)  # no faces is fine


def test_smoother_forgets_a_face_not_seen_for_max_age_frames_whatever_other_faces_frames_are() -> None:
    # keys of two sources counting their own frames, as (source_id, object_id) with DeepStream's frame_num: face
    # ("b", 1) was last updated 6 frames ago in its own count, more than max_age, so it starts afresh
    rng = np.random.default_rng(6)
    a, b = _random_probs(rng, 2, 7)
    s = ExpressionSmoother(math.inf, max_age=3)
    s.update(("a", 1), a, 100)
    s.update(("b", 1), a, 2)
    np.testing.assert_allclose(s.update(("b", 1), b, 8), b, atol=1e-6)
    np.testing.assert_allclose(s.update(("b", 1), a, 9), (a + b) / 2, atol=1e-6)  # within max_age: averaged


def test_smoother_streams_forget_by_their_own_frames_so_a_lagging_source_still_averages() -> None:
    # two DeepStream sources whose frame_num differ by far more than max_age: without streams, source "a" moving on
    # made source "b"'s faces forgotten at every frame, so they were never averaged
    rng = np.random.default_rng(7)
    a, b = _random_probs(rng, 2, 7)
    one = ExpressionSmoother(math.inf, max_age=3)
    two = ExpressionSmoother(math.inf, max_age=3)
    for k in range(3):
        one.update(("a", 1), a, 500 + k)
        two.update(("a", 1), a, 500 + k, stream="a")
        out_one = one.update(("b", 1), b if k else a, 10 + k)
        out_two = two.update(("b", 1), b if k else a, 10 + k, stream="b")
    np.testing.assert_allclose(out_two, (a + 2 * b) / 3, atol=1e-6)   # averaged over its three frames
    np.testing.assert_allclose(out_one, b, atol=1e-6)                 # one stream: forgotten every frame
    two.update(("b", 2), a, 40, stream="b")                           # its own stream moving on forgets it
    np.testing.assert_allclose(two.update(("b", 1), a, 41, stream="b"), a, atol=1e-6)
    np.testing.assert_allclose(two.update(("a", 1), b, 503, stream="a"), (3 * a + b) / 4, atol=1e-6)


def test_smoother_refuses_a_face_moved_to_another_stream_and_an_unhashable_stream() -> None:
    rng = np.random.default_rng(8)
    (a,) = _random_probs(rng, 1, 7)
    s = ExpressionSmoother()
    s.update(1, a, 0, stream="cam0")
    with pytest.raises(InputError, match="one stream per face"):
        s.update(1, a, 1, stream="cam1")
    with pytest.raises(InputError, match="stream=.*cannot be hashed"):
        s.update(2, a, 1, stream=["cam0"])
