"""Tests that kill hand-made mutants (round 68, task K68e) of the crowd and tracking experiment scripts whose results
docs/crowd.md and the README read: scripts/crowd_clips.py (its scoring: false faces per frame, accuracy at the last
frame and over frames 2-8, faces found at the last frame and in 2 or more frames, one track; the weak-score and
detect-every runs; camera frames; --detect-every's range), scripts/crowd_walk.py (faces scored from half visible,
true boxes clipped to the frame's width and height, faces followed in 2 or more frames, --coast and --weak refused
outside their ranges, crossing flags), scripts/temporal_views.py (the rule's reading over x2..x8, its bounds, its
tie-break; the sub-pixel shift's direction), scripts/track_confidence.py (one frame's map error over every frame),
scripts/track_maps.py (per-mark fits from MIN_MARK_TRACKS tracks, --write-calibration's checks and half-life),
scripts/group_estimates.py (the rule's strict bar and tie-break, groups drawn without replacement),
benchmarks/container_threads.py (ratios over new_default, the 5% reading, rotating order, re-summarising),
benchmarks/tracker_scale.py (ratios previous / current, alternating order, the child's last line) and
scripts/load_test.py (percentiles, the answer checker, the face sizes, throughput of answered requests).
Scripted analyzers, tiny synthetic arrays, fake timers and temporary folders only."""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace as NS
from typing import Any

import numpy as np
import pytest

from _scripts import load_script


def _clips() -> ModuleType:
    return load_script("scripts/crowd_clips.py", "crowd_clips_68e")


def _walk() -> ModuleType:
    return load_script("scripts/crowd_walk.py", "crowd_walk_68e")


def _views() -> ModuleType:
    return load_script("scripts/temporal_views.py", "temporal_views_68e")


def _face(box: Any, tid: int, index: int) -> Any:
    return NS(box=tuple(float(v) for v in box), score=0.9, track_id=tid, index=index)


def _scripted_analyzer(answer: Any) -> type:
    """A CrowdAnalyzer stand-in: ``answer(t, weak_score, detect_every)`` gives frame t's faces."""

    class Scripted:
        def __init__(self, recognizer: Any = None, weak_score: Any = None) -> None:
            self.recognizer, self.weak_score = "rec", weak_score

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

        def analyze_stream(self, frames: Any, track: Any, detect_every: int = 1) -> Any:
            return (NS(faces=answer(t, self.weak_score, detect_every), timings_ms={"detect": 1.0, "recognize": 2.0})
                    for t in range(len(frames)))

    return Scripted


# --------------------------------------------------------------------------------------------
# scripts/crowd_clips.py
# --------------------------------------------------------------------------------------------
_A, _B, _C = (10, 10, 20, 20), (60, 10, 90, 40), (120, 10, 160, 50)  # 10, 30 and 40 px: bins 8-12, 24-32, 32-48
_FALSE = (300, 300, 320, 320)


def _clip_answers(t: int, weak: Any, every: int) -> list[Any]:
    """A (label 0) right in every frame; B (label 3) wrong at frames 1 and 8, missed at 4, another track from 5;
    C (label 5) found at frame 1 only, wrong (every frame, right, with weak detections); one false face at frame 3;
    B never found when the detector runs every 3rd frame."""
    b = {0: (1, 1), 1: (3, 1), 2: (3, 1), 4: (3, 2), 5: (3, 2), 6: (3, 2), 7: (4, 2)}
    out = [_face(_A, 0, 0)]
    if t in b and every != 3:
        out.append(_face(_B, b[t][1], b[t][0]))
    if weak is not None:
        out.append(_face(_C, 3, 5))
    elif t == 0:
        out.append(_face(_C, 3, 1))
    if t == 2:
        out.append(_face(_FALSE, 9, 2))
    return out


@pytest.fixture
def scripted_clips(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    from fsrfer_edge import crowd, crowd_bench

    cc = _clips()
    n = cc.FRAMES
    boxes = [np.array([_A, _B, _C], dtype=np.float64)] * n
    labels = np.tile([0, 3, 5], (n, 1))
    monkeypatch.setattr(cc, "render_clip", lambda *a, **k: ([np.zeros((8, 8, 3), np.uint8)] * n, boxes, labels))
    monkeypatch.setattr(crowd_bench, "public_domain_faces", lambda: NS(labelled=True, source="scripted"))
    monkeypatch.setattr(crowd, "CrowdAnalyzer", _scripted_analyzer(_clip_answers))
    return cc


def test_crowd_clips_scores_each_face_at_the_last_frame_and_over_frames_2_to_8(scripted_clips, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # kills: frames 2-8 counted from frame 1; divided by FRAMES; false faces over hit > 0 or per clip; found_at_last
    # over pred > 0; found in 1 frame counted; missed frames counted as found
    cc, out = scripted_clips, tmp_path / "clips.json"
    assert cc.main(["--data", str(tmp_path / "none"), "--clips", "1", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    every = doc["rows"]["clean"][-1]
    assert every["bin"] == "all" and every["faces"] == 3
    assert every["accuracy tracked"] == 33.33                 # only A right at the last frame
    assert every["accuracy frames 2-8 tracked"] == 57.14      # (7 + 5 + 0) / (3 x 7)
    assert every["found_at_last_frame"] == 2                  # A (answer 0) and B; C missed
    assert every["found_in_2_or_more_frames"] == 2 and every["one_track"] == 1  # C seen once; B changed track
    by_bin = {b["bin"]: b for b in doc["rows"]["clean"][:-1]}
    assert by_bin["8-12"]["accuracy frames 2-8 tracked"] == 100.0 and by_bin["8-12"]["faces"] == 1
    assert by_bin["24-32"]["accuracy frames 2-8 tracked"] == 71.43 and by_bin["6-8"]["faces"] == 0
    assert doc["false_faces_per_frame"]["clean"]["one frame"] == 0.125  # one false face over 8 frames
    # the recorded command regenerates the file: --clips was left out (and --faces, --size when not the defaults)
    assert doc["command"] == f"python scripts/crowd_clips.py --clips 1 --out {out}"
    assert cc.main(["--data", str(tmp_path / "none"), "--clips", "1", "--faces", "3", "--size", "100x160",
                    "--out", str(out)]) == 0
    assert json.loads(out.read_text())["command"] == (
        f"python scripts/crowd_clips.py --clips 1 --faces 3 --size 100x160 --out {out}")


def test_crowd_clips_weak_and_detect_every_runs_get_their_analyzer_and_detector_pace(scripted_clips, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # kills: every run on the plain analyzer (weak run); detect_every not passed on
    cc, out = scripted_clips, tmp_path / "clips.json"
    assert cc.main(["--data", str(tmp_path / "none"), "--clips", "1", "--weak", "0.2", "--detect-every", "3",
                    "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    every = doc["rows"]["jpeg"][-1]
    weak, sparse = "tracked, coast 2, confirm 2, motion, weak 0.2", "tracked, coast 2, confirm 2, motion, detect every 3"
    assert every[f"accuracy {weak}"] == 66.67 and every[f"accuracy frames 2-8 {weak}"] == 90.48  # C found throughout
    assert every[f"accuracy {sparse}"] == 33.33 and every[f"accuracy frames 2-8 {sparse}"] == 33.33  # B never found
    assert every["accuracy tracked"] == 33.33
    assert doc["ms_per_frame"]["jpeg"][sparse] == 3.0 and "detect_every=3" in doc["runs"][sparse]


def test_crowd_clips_detect_every_takes_2_to_30_frames() -> None:
    # kills: a range from 1
    import argparse

    cc = _clips()
    ap = argparse.ArgumentParser()
    assert cc.detect_every_values(ap, "2, 30") == [2, 30] and cc.detect_every_values(ap, "") == []
    for bad in ("1", "31", "x"):
        with pytest.raises(SystemExit):
            cc.detect_every_values(ap, bad)


def test_crowd_clips_camera_frame_compresses_only_the_jpeg_row() -> None:
    # kills: JPEG on the clean row
    cc = _clips()
    img = np.random.default_rng(1).uniform(0, 255, (24, 24, 3))
    clean = cc.camera_frame(img, np.random.default_rng(5), "clean")
    noise = np.random.default_rng(5).normal(0, cc.NOISE, img.shape)
    np.testing.assert_array_equal(clean, np.clip(np.rint(img + noise), 0, 255).astype(np.uint8))
    jpeg = cc.camera_frame(img, np.random.default_rng(5), "jpeg")
    assert jpeg.dtype == np.uint8 and jpeg.shape == img.shape and not np.array_equal(jpeg, clean)


def test_crowd_clips_switch_gives_every_labelled_face_another_expression_from_the_switch_on() -> None:
    # kills: the new face drawn from the same expression
    cc = _clips()
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 5)
    pool = NS(images=rng.uniform(0, 255, (20, 48, 48)).astype(np.float32), labels=labels, labelled=True)
    frames, boxes, per_frame = cc.render_clip(pool, 2, 5, (120, 160), "plain", "clean", switch_at=3)
    assert per_frame.shape == (cc.FRAMES, len(boxes[0])) and len(frames) == cc.FRAMES
    assert (per_frame[:3] == per_frame[0]).all() and (per_frame[3:] == per_frame[3]).all()
    assert (per_frame[3] != per_frame[0]).all()


# --------------------------------------------------------------------------------------------
# scripts/crowd_walk.py
# --------------------------------------------------------------------------------------------
@pytest.fixture
def scripted_walk(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Three faces over 3 frames of 100x160: A (label 3) and B (label 4, at x 110-130, inside the width but past
    the height) found throughout, C (label 1) exactly half visible and found at frame 2 only."""
    from fsrfer_edge import crowd, crowd_bench

    cw = _walk()
    a, b, c = (10, 10, 30, 30), (110, 10, 130, 30), (50, 60, 70, 80)
    clip = {"frames": [np.zeros((100, 160, 3), np.uint8)] * 3, "boxes": np.array([[a, b, c]] * 3, dtype=np.float64),
            "labels": np.array([3, 4, 1]), "visible": np.array([[1.0, 1.0, 0.5]] * 3),
            "crossing": np.array([False, False, False])}
    monkeypatch.setattr(cw, "render_walk", lambda *a, **k: clip)
    monkeypatch.setattr(crowd_bench, "public_domain_faces", lambda: NS(labelled=True, source="scripted"))

    def answer(t: int, weak: Any, every: int) -> list[Any]:
        return [_face(a, 0, 3), _face(b, 1, 4)] + ([_face(c, 2, 1)] if t == 1 else [])

    monkeypatch.setattr(crowd, "CrowdAnalyzer", _scripted_analyzer(answer))
    return cw


def test_crowd_walk_scores_half_visible_faces_in_frame_boxes_and_follows_from_two_frames(scripted_walk, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # kills: visible <= VISIBLE skipped; truth clipped to [h, w, h, w]; a face seen once counted as followed;
    # --clips left out of the recorded command
    out = tmp_path / "walk.json"
    assert scripted_walk.main(["--data", str(tmp_path / "none"), "--clips", "1", "--frames", "3", "--size", "100x160",
                               "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["command"] == f"python scripts/crowd_walk.py --clips 1 --frames 3 --size 100x160 --out {out}"
    row = doc["rows"]["clean"]
    assert row["all"]["tracked, motion"] == {"faces_followed": 2, "one_track": 2, "identity_switches": 0,
                                             "scored_face_frames": 6, "accuracy": 83.33}  # C: right once of twice
    assert row["false_faces_per_frame"]["tracked, motion"] == 0.0


def test_crowd_walk_refuses_coast_over_5_and_a_weak_score_of_1(scripted_walk, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # kills: --coast up to 6; --weak up to 1
    for bad in (["--coast", "6"], ["--weak", "1"], ["--coast", "-1"]):
        with pytest.raises(SystemExit):
            scripted_walk.main(["--data", str(tmp_path / "none"), "--clips", "1", "--frames", "3", "--size", "100x160",
                                *bad, "--out", str(tmp_path / "w.json")])


def test_crowd_walk_flags_every_face_whose_box_overlaps_another_in_some_frame() -> None:
    # kills: crossing only above an IoU of 0.1
    pytest.importorskip("skimage")
    from fsrfer_edge.crowd_bench import public_domain_faces
    from fsrfer_edge.detection.base import box_iou

    clip = _walk().render_walk(public_domain_faces(), 3, 30, (120, 160), "plain", "clean", frames=6)
    boxes = clip["boxes"]
    touching = np.zeros(boxes.shape[1], dtype=bool)
    for t in range(len(boxes)):
        iou = box_iou(boxes[t], boxes[t])
        touching |= ((iou > 0) & ~np.eye(len(iou), dtype=bool)).any(axis=1)
    assert touching.any() and np.array_equal(clip["crossing"], touching)
    small = np.array([((iou > 0) & (iou <= 0.1) & ~np.eye(len(iou), dtype=bool)).any()
                      for iou in [box_iou(boxes[t], boxes[t]) for t in range(len(boxes))]])
    assert small.any()  # some pairs overlap only a little: they still cross


# --------------------------------------------------------------------------------------------
# scripts/temporal_views.py
# --------------------------------------------------------------------------------------------
def _view_acc(tv: ModuleType, one: dict[int, float], probs: dict[int, float], log: dict[int, float]) -> dict:
    names = {"one frame": one, tv.aggregate_name(tv.RULE_HALF_LIFE, "probs"): probs,
             tv.aggregate_name(tv.RULE_HALF_LIFE, "log"): log}
    return {row: {n: {str(f): v[f] for f in tv.FACTORS} for n, v in names.items()} for row in tv.ROWS}


def test_temporal_views_rule_reads_gains_over_x2_to_x8_with_inclusive_bounds_and_prefers_probs_on_a_tie() -> None:
    # kills: x1 in the gains; gain > MIN_GAIN; loss > -MAX_LOSS; the tie to log
    tv = _views()
    one = {f: 50.0 for f in tv.FACTORS}
    probs = {f: (49.7 if f == 1 else 51.0) for f in tv.FACTORS}  # one point over x2..x8, 0.3 lost at x1
    worse = {f: 50.5 for f in tv.FACTORS}
    d = tv.decide(_view_acc(tv, one, probs, worse))
    pick = tv.aggregate_name(tv.RULE_HALF_LIFE, "probs")
    assert d["pick"] == pick and d["gain_over_one_frame"][pick] == {"clean": 1.0, "camera": 1.0}
    assert d["worst_change_any_factor"][pick] == -0.3 and d["adopted"] is True
    tie = tv.decide(_view_acc(tv, one, probs, dict(probs)))
    assert tie["pick"] == pick
    lost = tv.decide(_view_acc(tv, one, {**probs, 1: 49.6}, worse))
    assert lost["pick"] == pick and lost["adopted"] is False


def test_shift_bilinear_moves_the_image_down_and_right_by_positive_offsets() -> None:
    # kills: the source row taken at y + dy (an image moved up)
    tv = _views()
    img = np.zeros((1, 5, 5), np.float32)
    img[0, 2, 2] = 1.0
    down = tv.shift_bilinear(img, np.array([1.0]), np.array([0.0]))[0]
    assert down[3, 2] == 1.0 and down.sum() == 1.0
    right = tv.shift_bilinear(img, np.array([0.0]), np.array([0.5]))[0]
    assert right[2, 2] == pytest.approx(0.5) and right[2, 3] == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------
# scripts/track_confidence.py
# --------------------------------------------------------------------------------------------
def test_track_confidence_one_frame_map_pairs_every_frame_with_its_own_faces_labels() -> None:
    # kills: labels repeated face by face instead of tiled frame by frame
    from fsrfer_edge.confidence import ScoreCalibration

    tc = load_script("scripts/track_confidence.py", "track_confidence_68e")
    labels = np.array([0, 1, 2, 3])
    logits = np.zeros((2, 4, 7))
    logits[:, np.arange(4), labels] = 20.0  # every frame sure and right
    same = ScoreCalibration(tuple("abcdefg"), "logistic", (1.0,), ((1.0, 0.0),))
    c = tc.cell(logits, labels, same, 2.0, 2.0)
    assert c["one_frame_map"] < 0.5 and c["1"]["accuracy"] == 100.0


# --------------------------------------------------------------------------------------------
# scripts/track_maps.py
# --------------------------------------------------------------------------------------------
def _maps() -> ModuleType:
    return load_script("scripts/track_maps.py", "track_maps_68e")


def test_fit_marks_fits_each_mark_from_min_mark_tracks_and_keeps_unmarked_first() -> None:
    # kills: own fit only above MIN_MARK_TRACKS; marked and unmarked fits swapped
    tm = _maps()
    rng = np.random.default_rng(3)
    n = 2 * tm.MIN_MARK_TRACKS
    offset, z, g = rng.normal(size=n), rng.normal(size=n), rng.uniform(0, 1, n)
    mark = np.arange(n) < tm.MIN_MARK_TRACKS  # exactly MIN_MARK_TRACKS marked
    c = np.where(mark, -2.0, 2.0)
    right = (rng.random(n) < 1 / (1 + np.exp(-(offset + c * g)))).astype(float)
    out = tm.fit_marks(offset, z, g, right, mark)
    np.testing.assert_allclose(out[0], tm.fit_cd(offset[~mark], z[~mark], g[~mark], right[~mark]))
    np.testing.assert_allclose(out[1], tm.fit_cd(offset[mark], z[mark], g[mark], right[mark]))
    assert not np.allclose(out[0], out[1])
    shared = tm.fit_marks(offset, z, g, right, None)
    np.testing.assert_allclose(shared, [tm.fit_cd(offset, z, g, right)] * 2)


def test_write_calibration_takes_only_a_per_mark_test_run_and_records_its_half_life(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # kills: the split check dropped; the half-life not taken from the result
    from fsrfer_edge.confidence import ScoreCalibration

    tm = _maps()
    path = tmp_path / "m.scores.json"
    ScoreCalibration(tuple("abcdefg"), "logistic", (1.0, 2.0), ((1.0, 0.0), (0.8, 0.1)), source="fit").save(path)
    doc = {"per_mark": True, "split": "test", "half_life": 3.0, "seed": 0,
           "track_params": [{"1": [[0.1, 0.2], [0.3, 0.4]], "2": [[0.5, 0.6], [0.7, 0.8]]}]}
    for bad in ({"split": "val"}, {"per_mark": False}, {"track_params": doc["track_params"] * 2}):
        result = tmp_path / "bad.json"
        result.write_text(json.dumps(dict(doc, **bad)))
        with pytest.raises(SystemExit, match="per-mark"):
            tm.write_calibration(str(path), str(result))
    assert ScoreCalibration.load(path).track_params is None  # nothing written
    result = tmp_path / "r.json"
    result.write_text(json.dumps(doc))
    assert tm.write_calibration(str(path), str(result)) == 0
    back = ScoreCalibration.load(path)
    assert back.track_params == ((0.1, 0.2, 0.3, 0.4), (0.5, 0.6, 0.7, 0.8)) and back.track_half_life == 3.0


def test_drift_frames_shift_each_face_by_a_steady_small_step_from_a_start_within_half_a_pixel(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # kills: the step taken once instead of t times; the step in big-face pixels
    tm = _maps()
    shifts: list[tuple[np.ndarray, np.ndarray]] = []
    real = tm.shift_bilinear

    def spy(images: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        shifts.append((dy.copy(), dx.copy()))
        return real(images, dy, dx)

    monkeypatch.setattr(tm, "shift_bilinear", spy)
    factor = 4
    images = np.random.default_rng(0).uniform(0, 255, (300, 48, 48)).astype(np.float32)
    out = tm.drift_frames(images, factor, np.random.default_rng(1))
    assert len(out["clean"]) == tm.FRAMES and out["clean"][0].shape == (300, 12, 12)
    dy = np.stack([s[0] for s in shifts])  # (FRAMES, N)
    dx = np.stack([s[1] for s in shifts])
    for d in (dy, dx):
        step = d[1] - d[0]
        np.testing.assert_allclose(d - d[0], np.arange(tm.FRAMES)[:, None] * step, atol=1e-9)  # steady
        assert np.abs(d[0]).max() <= factor / 2 and np.abs(step).max() <= factor * tm.DRIFT_STEP
        assert np.abs(step).max() > 0.8 * factor * tm.DRIFT_STEP  # in small-face pixels: up to 1/8 of one


def test_temporal_views_clips_shift_each_frame_anew_within_half_a_small_face_pixel(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # kills: shifts of up to a whole small-face pixel
    tv = _views()
    shifts: list[np.ndarray] = []
    real = tv.shift_bilinear
    monkeypatch.setattr(tv, "shift_bilinear", lambda im, dy, dx: shifts.append(np.concatenate([dy, dx])) or
                        real(im, dy, dx))
    images = np.random.default_rng(0).uniform(0, 255, (200, 48, 48)).astype(np.float32)
    out = tv.clip_frames(images, 3, np.random.default_rng(1))
    assert len(out["camera"]) == tv.FRAMES and out["camera"][0].shape == (200, 16, 16)
    d = np.stack(shifts)
    assert np.abs(d).max() <= 1.5 and np.abs(d).max() > 1.4 and not np.allclose(d[0], d[1])


# --------------------------------------------------------------------------------------------
# scripts/group_estimates.py
# --------------------------------------------------------------------------------------------
def _groups() -> ModuleType:
    return load_script("scripts/group_estimates.py", "group_estimates_68e")


def _group_rows(ge: ModuleType, tv: dict[str, dict[str, float]]) -> dict:
    return {p: {str(ge.DECISION_GROUP): {s: {"mixed": {e: {"tv": tv[p][e]} for e in ge.ESTIMATES}}
                                         for s in ge.SCENARIOS}} for p in ge.PROTOCOLS}


def test_group_decision_needs_strictly_lower_and_counts_lower_under_every_protocol() -> None:
    # kills: a tie with an unadjusted estimate passing; adjusted counts picked where lower under one protocol only
    ge = _groups()
    tie = {"counts": 30, "mean_probs": 28, "adjusted_counts": 28, "adjusted_probs": 28}
    d = ge.decision(_group_rows(ge, {"small": tie, "camera": tie}))
    assert d["passes"] == {"adjusted_probs": False, "adjusted_counts": False} and d["adopted"] is None
    small = {"counts": 30, "mean_probs": 28, "adjusted_counts": 18, "adjusted_probs": 20}
    camera = dict(small, adjusted_counts=22)
    assert ge.decision(_group_rows(ge, {"small": small, "camera": camera}))["adopted"] == "adjusted_probs"


def test_a_natural_group_as_large_as_its_pool_draws_every_face_once() -> None:
    # kills: replacement when the pool is just large enough
    ge = _groups()
    pool = np.arange(3, 23)
    g = ge.draw_group(np.random.default_rng(0), pool, np.zeros(30, int), "natural", len(pool), 2)
    assert sorted(g.tolist()) == pool.tolist()


# --------------------------------------------------------------------------------------------
# benchmarks/container_threads.py
# --------------------------------------------------------------------------------------------
def _ct() -> ModuleType:
    return load_script("benchmarks/container_threads.py", "container_threads_68e")


def _variant(p50: float, worst: float) -> dict[str, Any]:
    return {"usable_cpus": 1, "cpu_quota": 1.0, "intra_op_threads": 1,
            **{b: {"p50_ms": p50, "min_ms": p50 / 2, "max_ms": worst} for b in ("1", "64")}}


def _ct_rounds() -> list[dict[str, Any]]:
    return [{"round": r + 1, "loadavg_start": [0.5, 0.5, 0.5], "ort_default": _variant(p, 10.0 * p),
             "new_default": _variant(2.0, 10.0), "host_8_threads": _variant(2.06, 10.0)}
            for r, p in enumerate((4.0, 3.0, 2.2))]


def test_container_threads_ratios_are_over_new_default_with_a_5_percent_reading(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # kills: ratios inverted; the range's top as its bottom; 'lower' from 1.0 instead of 1.05; rounds' loadavg read
    # as a variant when re-summarising
    ct = _ct()
    s = ct.summarize(_ct_rounds(), ["ort_default", "new_default", "host_8_threads"])
    assert s["p50_over_new_default"]["ort_default"]["1"] == {"median_of_rounds": 1.5, "range": [1.1, 2.0]}
    assert "new_default" not in s["p50_over_new_default"]
    assert s["median_p50_ms"]["ort_default"]["64"] == 3.0
    reading = {r.split(":")[0]: r for r in s["reading"]}
    assert "median call 1.50x, the new default lower in every round" in reading["ort_default vs new_default, batch 1"]
    assert "median call 1.03x, within noise" in reading["host_8_threads vs new_default, batch 1"]
    path = tmp_path / "ct.json"
    path.write_text(json.dumps({"quotas": {"1.0": {"rounds": _ct_rounds(), "reading": ["stale"]}}}))
    ct.resummarize(path, "re-read", ["--from-json", str(path)])
    doc = json.loads(path.read_text())
    assert doc["note"] == "re-read" and doc["quotas"]["1.0"]["reading"] == s["reading"]
    assert doc["resummarized"].startswith("python benchmarks/container_threads.py --from-json")


def test_container_threads_rotates_the_variants_order_each_round_and_removes_the_group(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # kills: every round in one order
    ct = _ct()
    group = tmp_path / "grp"
    seen: list[int] = []

    def make_group(quota: float) -> Path:
        group.mkdir()
        return group

    def run_child(g: Path, threads: int, args: Any) -> dict[str, Any]:
        seen.append(threads)
        return _variant(2.0, 4.0)

    monkeypatch.setattr(ct, "make_group", make_group)
    monkeypatch.setattr(ct, "run_child", run_child)
    monkeypatch.setattr(ct.os, "cpu_count", lambda: 3)
    out = ct.measure(NS(host_threads=5, quotas=[1.0], rounds=3))
    assert seen == [3, 0, 5, 0, 5, 3, 5, 3, 0] and not group.exists()
    assert [r["round"] for r in out["quotas"]["1.0"]["rounds"]] == [1, 2, 3]


# --------------------------------------------------------------------------------------------
# benchmarks/tracker_scale.py
# --------------------------------------------------------------------------------------------
def test_tracker_scale_alternates_the_order_reads_the_childs_last_line_and_divides_previous_by_current(
        tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # kills: ratio current / previous; one order every round; the child's first line read
    ts = load_script("benchmarks/tracker_scale.py", "tracker_scale_68e")
    calls: list[tuple[str, str]] = []

    def run(cmd: list[str], **kw: Any) -> Any:
        variant, n = cmd[cmd.index("--child") + 1], cmd[cmd.index("--child") + 2]
        calls.append((variant, n))
        return NS(stdout=f"a warning first\n{0.004 if variant == 'previous' else 0.002}\n")

    monkeypatch.setattr(ts.subprocess, "run", run)
    out = tmp_path / "ts.json"
    assert ts.main(["--faces", "10", "--frames", "2", "--rounds", "2", "--out", str(out)]) == 0
    assert calls == [("current", "10"), ("previous", "10"), ("previous", "10"), ("current", "10")]
    doc = json.loads(out.read_text())
    assert doc["faces"]["10"] == {"current_median_s": 0.002, "previous_median_s": 0.004,
                                  "previous_over_current_per_round": [2.0, 2.0]}


# --------------------------------------------------------------------------------------------
# scripts/load_test.py
# --------------------------------------------------------------------------------------------
def _lt() -> ModuleType:
    return load_script("scripts/load_test.py", "load_test_68e")


def test_load_test_percentiles_and_the_checker_count_labels_and_the_largest_difference() -> None:
    # kills: p95 as p99; a near-tie of another label passing; max_abs_diff the last difference
    lt = _lt()
    assert lt.percentiles(np.arange(1, 101) / 1e3) == {"p50_ms": 50.5, "p99_ms": 99.01, "mean_ms": 50.5,
                                                       "max_ms": 100.0}
    ref = [[np.array([[1.0, 1.00001]]), np.array([[0.0, 2.0]])]]
    checker = lt.Checker(ref, atol=1e-4)
    checker.check(0, 0, np.array([[1.00001, 1.0]]))  # within atol, but the other label
    assert checker.wrong == 1
    checker.check(0, 1, np.array([[0.5, 2.0]]))
    checker.check(0, 1, np.array([[0.1, 2.0]]))
    assert checker.wrong == 3 and checker.max_abs_diff == pytest.approx(0.5)


def test_load_test_requests_hold_seeded_faces_of_12_to_64_px() -> None:
    # kills: 64 px left out
    lt = _lt()
    reqs = lt.make_requests(3, 40, 20, seed=1)
    sides = [f.shape[0] for c in reqs for r in c for f in r]
    assert len(reqs) == 3 and len(reqs[0]) == 40 and len(reqs[0][0]) == 20
    assert min(sides) == 12 and max(sides) == 64 and all(f.dtype == np.uint8 for f in reqs[0][0])
    assert all(np.array_equal(a, b) for a, b in zip(lt.make_requests(3, 40, 20, seed=1)[2][5], reqs[2][5]))


def test_load_test_counts_lost_requests_and_throughput_of_answered_ones(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # kills: requests per second over every request sent
    lt = _lt()
    clock = itertools.count()
    monkeypatch.setattr(lt, "time", NS(perf_counter=lambda: next(clock) * 1e-6))
    requests = [[[np.zeros((12, 12), np.uint8)] * 2 for _ in range(4)] for _ in range(2)]
    requests[1][2] = [np.ones((12, 12), np.uint8)] * 2

    def call(client: Any, faces: list[np.ndarray]) -> np.ndarray:
        if faces[0].any():
            raise RuntimeError("lost")
        return np.zeros((len(faces), 7))

    out = lt.run_clients(lambda c: NS(close=lambda: None), requests, call, None)
    assert out["lost"] == 1 and out["errors"] == [("RuntimeError: lost", 1)]
    assert out["throughput_requests_per_s"] / out["throughput_faces_per_s"] == pytest.approx(7 / 16, rel=1e-3)
