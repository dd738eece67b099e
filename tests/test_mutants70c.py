"""Tests that kill hand-made mutants (round 70, task K70c) of the crowd analysis scripts: scripts/group_estimates.py
(the mean probabilities and the adjusted counts' own matrices, the bootstrap interval's tails and refusals, the
rules' means over scenarios and the interval bar's inclusive reading, the study's groups per fold, factors of the
mixed row and dominant share in %, the command, face count and refusals of main), scripts/track_maps.py
(--write-calibration's factor check and non-integer factor keys, --clip-seed's refusal, the rule's inclusive slacks
and its same-faces reference, the fit's ridge), scripts/crowd_clips.py (the recorded command, the runs' names and
trackers, accuracy by frame over faces, --confirm's refusal), scripts/crowd_walk.py (the recorded command, the weak
and detect-every runs, time per frame, the one-frame run's entry, refusals of --frames, --speed and --weak) and
benchmarks/tracker_scale.py (medians of rounds, the recorded rounds and command, the frames passed to the child, the
child's timing, --faces' refusal). Scripted analyzers and models, tiny synthetic arrays, fake timers and temporary
folders only."""
from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType, SimpleNamespace as NS
from typing import Any

import numpy as np
import pytest

from _scripts import load_script
from fsrfer_edge.errors import InputError
from fsrfer_edge.groups import GroupCalibration

CLASSES = ("a", "b", "c")


# --------------------------------------------------------------------------------------------
# scripts/group_estimates.py
# --------------------------------------------------------------------------------------------
def _ge() -> ModuleType:
    return load_script("scripts/group_estimates.py", "group_estimates_70c")


def _cal(factors: tuple[float, ...] = (1.0, 4.0)) -> GroupCalibration:
    """Probability and count matrices that differ, at two factors."""
    probs = np.stack([np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]),
                      np.array([[0.6, 0.3, 0.3], [0.2, 0.5, 0.2], [0.2, 0.2, 0.5]])])
    counts = np.stack([np.array([[0.9, 0.2, 0.0], [0.1, 0.7, 0.1], [0.0, 0.1, 0.9]]),
                       np.array([[0.5, 0.2, 0.2], [0.3, 0.6, 0.2], [0.2, 0.2, 0.6]])])
    return GroupCalibration(CLASSES, factors, probs, counts, (10, 10, 10), "")


def _group(n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(3), n), np.tile([1.0, 4.0], n // 2)


def test_estimates_are_the_mean_probs_and_each_adjusted_one_by_its_own_matrices() -> None:
    # kills: mean_probs taken from the counted labels; adjusted counts solved with the probability matrices
    ge = _ge()
    cal = _cal()
    probs, f = _group()
    est = ge.estimates(cal, probs[None], f[None])
    np.testing.assert_allclose(est["mean_probs"][0], probs.mean(0))
    np.testing.assert_allclose(est["counts"][0], np.bincount(probs.argmax(1), minlength=3) / len(probs))
    np.testing.assert_allclose(est["adjusted_probs"][0], cal.estimate(probs, f, "probs"), atol=1e-6)
    np.testing.assert_allclose(est["adjusted_counts"][0], cal.estimate(probs, f, "counts"), atol=1e-6)
    assert not np.allclose(est["adjusted_counts"][0], est["adjusted_probs"][0], atol=1e-3)


def test_bootstrap_interval_leaves_half_the_rest_in_each_tail_of_the_seeded_resamples() -> None:
    # kills: a tail of (1 - level) on each side
    ge = _ge()
    eye = np.stack([np.eye(3)] * 2)
    cal = GroupCalibration(CLASSES, (1.0, 4.0), eye, eye, (10, 10, 10), "")  # the estimate is the observed mean
    probs, f = _group(20, 1)
    lo, hi = ge.bootstrap_interval(cal, probs, f, level=0.8, resamples=300, seed=4)
    idx = np.random.default_rng(4).integers(0, len(probs), size=(300, len(probs)))
    means = probs[idx].mean(1)
    np.testing.assert_allclose(lo, np.quantile(means, 0.1, axis=0), atol=1e-6)
    np.testing.assert_allclose(hi, np.quantile(means, 0.9, axis=0), atol=1e-6)


def test_bootstrap_interval_refuses_one_resample_and_an_unknown_kind() -> None:
    # kills: resamples >= 1 taken; the kind check dropped
    ge = _ge()
    probs, f = _group()
    with pytest.raises(InputError, match="resamples"):
        ge.bootstrap_interval(_cal(), probs, f, resamples=1)
    with pytest.raises(InputError, match="kind"):
        ge.bootstrap_interval(_cal(), probs, f, kind="logits")


def _rows(ge: ModuleType, value: Any) -> dict:
    """Rows of the decision cell, ``value(protocol, scenario, estimate)`` in each."""
    return {p: {str(ge.DECISION_GROUP): {s: {"mixed": {e: value(p, s, e) for e in ge.ESTIMATES}}
                                         for s in ge.SCENARIOS}} for p in ge.PROTOCOLS}


def test_the_interval_rule_adopts_a_coverage_exactly_at_the_bar() -> None:
    # kills: coverage > the bar
    ge = _ge()
    d = ge.interval_decision(_rows(ge, lambda p, s, e: {"coverage": ge.INTERVAL_COVERAGE_BAR}))
    assert d["adopted"] is True


def test_the_rule_reads_the_mean_over_every_scenario() -> None:
    # kills: the first scenario only
    ge = _ge()
    first = ge.SCENARIOS[0]

    def tv(p: str, s: str, e: str) -> dict:  # adjusted probs lower in the first scenario, higher on the mean
        base = {"counts": 30.0, "mean_probs": 28.0, "adjusted_counts": 40.0}
        return {"tv": base[e] if e in base else (20.0 if s == first else 40.0)}

    d = ge.decision(_rows(ge, tv))
    assert d["adopted"] is None and d["mean_tv_over_scenarios"]["small"]["adjusted_probs"] == round(
        (20.0 + 40.0 * (len(ge.SCENARIOS) - 1)) / len(ge.SCENARIOS), 2)


def test_the_study_spreads_each_cells_groups_over_the_folds_mixes_every_factor_and_gives_dominant_in_percent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the odd group dropped; x8 left out of the mixed row; the dominant share as a fraction
    ge = _ge()
    labels = np.repeat(np.arange(3), 6)
    onehot = np.eye(3)[labels]  # a model that is always right
    probs = {p: {f: onehot for f in ge.FACTORS} for p in ge.PROTOCOLS}
    eye = np.stack([np.eye(3)] * 2)
    cal = GroupCalibration(CLASSES, (1.0, 8.0), eye, eye, (6, 6, 6), "")
    folds = [(np.arange(0, 18, 2), cal), (np.arange(1, 18, 2), cal)]
    seen: list[np.ndarray] = []
    real = ge.estimates
    monkeypatch.setattr(ge, "estimates", lambda c, grp, fac: seen.append(fac) or real(c, grp, fac))
    rows = ge.study(probs, labels, folds, 3, [4], 5, seed=0)
    per_cell = len(ge.PROTOCOLS) * len(folds)
    cells = [seen[i:i + per_cell] for i in range(0, len(seen), per_cell)]
    assert len(cells) == len(ge.SCENARIOS) * (len(ge.FACTORS) + 1)
    for k, cell in enumerate(cells):
        assert sum(len(fac) for fac in cell[::len(ge.PROTOCOLS)]) == 5  # 3 + 2 groups from the two folds
        used = set(np.concatenate([fac.ravel() for fac in cell]).tolist())
        if k % (len(ge.FACTORS) + 1) == len(ge.FACTORS):  # the mixed row
            assert used == set(float(f) for f in ge.FACTORS)
        else:
            assert len(used) == 1
    cell = rows["small"]["4"]["natural"]["mixed"]
    assert cell["counts"] == {"tv": 0.0, "tv_sd": 0.0, "dominant": 100.0}


def _fake_model(monkeypatch: pytest.MonkeyPatch, ge: ModuleType, tmp_path: Path) -> str:
    """A scripted model (probability 0.8 on the face's label, kept in its first pixel) and FER+ splits of 12 val
    and 9 test faces; returns the model's path."""
    from fsrfer_edge import ferplus

    import trainer.evaluate as evaluate

    def faces(path: Any, labels: Any, split: str) -> Any:
        y = np.arange(12 if split == "val" else 9) % 3
        images = np.zeros((len(y), 4, 4), np.float32)
        images[:, 0, 0] = y
        return NS(images=images, labels=y)

    def model_probs(model: Any, images: np.ndarray, protocol: str, factor: int) -> np.ndarray:
        return 0.1 + 0.7 * np.eye(3)[images[:, 0, 0].astype(int)]

    monkeypatch.setattr(ferplus, "load_labelled_faces", faces)
    monkeypatch.setattr(evaluate, "onnx_logits_fn", lambda path, threads=None: (None, NS(classes=CLASSES,
                                                                                          input_size=48)))
    monkeypatch.setattr(ge, "model_probs", model_probs)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"scripted")
    return str(model)


def test_group_estimates_records_its_command_and_the_test_splits_faces(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # kills: --groups and --group-sizes left out of the command; n_faces counted on val
    ge = _ge()
    model = _fake_model(monkeypatch, ge, tmp_path)
    out = tmp_path / "g.json"
    assert ge.main(["--model", model, "--split", "test", "--groups", "2", "--group-sizes", "3",
                    "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["command"] == f"python scripts/group_estimates.py --split test --groups 2 --group-sizes 3 --json {out}"
    assert doc["n_faces"] == 9 and doc["groups_per_cell"] == 2 and doc["group_sizes"] == [3]
    assert "decision" not in doc


def test_group_estimates_refuses_one_group_a_repeated_fit_protocol_and_matrices_without_intervals(
        monkeypatch, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    # kills: --groups 1 taken; repeated --fit-protocols taken; --interval-matrices without --intervals taken
    ge = _ge()
    model = _fake_model(monkeypatch, ge, tmp_path)
    out = tmp_path / "g.json"
    for bad, match in ((["--groups", "1"], "--groups >= 2"), (["--fit-protocols", "small,small"], "distinct"),
                       (["--interval-matrices"], "goes with --intervals")):
        with pytest.raises(SystemExit, match=match):
            ge.main(["--model", model, "--split", "test", "--group-sizes", "3", *bad, "--json", str(out)])
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# scripts/track_maps.py
# --------------------------------------------------------------------------------------------
def _tm() -> ModuleType:
    return load_script("scripts/track_maps.py", "track_maps_70c")


def _score_cal(tmp_path: Path, factors: tuple[float, ...]) -> Path:
    from fsrfer_edge.confidence import ScoreCalibration

    path = tmp_path / "m.scores.json"
    ScoreCalibration(tuple("abcdefg"), "logistic", factors, tuple((1.0, 0.1 * k) for k in range(len(factors))),
                     source="fit").save(path)
    return path


def _result(tmp_path: Path, terms: dict[str, Any]) -> Path:
    result = tmp_path / "r.json"
    result.write_text(json.dumps({"per_mark": True, "split": "test", "half_life": 2.0, "seed": 0,
                                  "track_params": [terms]}))
    return result


def test_write_calibration_refuses_terms_at_other_factors_and_writes_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # kills: the factor check dropped
    from fsrfer_edge.confidence import ScoreCalibration

    tm = _tm()
    path = _score_cal(tmp_path, (1.0, 2.0))
    result = _result(tmp_path, {"1": [[0.1, 0.2], [0.3, 0.4]], "3": [[0.5, 0.6], [0.7, 0.8]]})
    with pytest.raises(SystemExit, match="factors"):
        tm.write_calibration(str(path), str(result))
    assert ScoreCalibration.load(path).track_params is None


def test_write_calibration_reads_the_terms_of_a_factor_that_is_not_a_whole_number(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # kills: every factor looked up as str(int(f))
    from fsrfer_edge.confidence import ScoreCalibration

    tm = _tm()
    path = _score_cal(tmp_path, (1.0, 1.5))
    result = _result(tmp_path, {"1": [[0.1, 0.2], [0.3, 0.4]], "1.5": [[0.5, 0.6], [0.7, 0.8]]})
    assert tm.write_calibration(str(path), str(result)) == 0
    assert ScoreCalibration.load(path).track_params == ((0.1, 0.2, 0.3, 0.4), (0.5, 0.6, 0.7, 0.8))


def test_track_maps_refuses_a_negative_clip_seed(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    # kills: --clip-seed -1 taken
    with pytest.raises(SystemExit):  # refused before the model (and data) that are not there are looked for
        _tm().main(["--clip-seed", "-1", "--model", str(tmp_path / "none.onnx"), "--data", str(tmp_path / "none.npz"),
                    "--json", str(tmp_path / "t.json")])
    assert "--clip-seed must be >= 0" in capsys.readouterr().err


def _map_cells(tm: ModuleType, cand: Any, one: float = 2.0, frame_map: float = 2.0) -> dict:
    return {r: {row: {str(f): {"one_frame_map": one, **{str(k): {"candidate": cand(f), "frame_map": frame_map}
                                                        for k in tm.COUNTS}}
                      for f in tm.FACTORS} for row in ("clean", "camera")} for r in tm.REGIMES}


def test_track_maps_rule_takes_gaps_exactly_at_its_slacks() -> None:
    # kills: mean gap < MEAN_SLACK; size gap < SIZE_SLACK
    tm = _tm()
    at_mean = tm.decide(_map_cells(tm, lambda f: 2.0 + tm.MEAN_SLACK))
    assert at_mean["worst_mean_over_one_frame"] == tm.MEAN_SLACK and at_mean["adopted"] is True
    first = tm.FACTORS[0]
    at_size = tm.decide(_map_cells(tm, lambda f: 2.0 + tm.SIZE_SLACK if f == first else 2.0))
    assert at_size["worst_size_over_one_frame"] == tm.SIZE_SLACK and at_size["adopted"] is True


def test_track_maps_second_rule_measures_against_the_tracks_own_frames() -> None:
    # kills: same_faces still reading one frame's map error
    tm = _tm()
    cells = _map_cells(tm, lambda f: 3.0, one=2.0, frame_map=1.0)
    assert tm.decide(cells)["adopted"] is True
    same = tm.decide(cells, same_faces=True)
    assert same["worst_mean_over_one_frame"] == 2.0 and same["adopted"] is False


def test_fit_cd_ridge_pulls_the_terms_towards_zero() -> None:
    # kills: the ridge's gradient added with the wrong sign
    tm = _tm()
    rng = np.random.default_rng(5)
    n = 400
    offset, z, g = rng.normal(size=n), rng.normal(size=n), rng.uniform(0, 1, n)
    right = (rng.random(n) < 1 / (1 + np.exp(-(offset + 2.0 * g - 1.0 * g * z)))).astype(float)
    free = tm.fit_cd(offset, z, g, right)
    held = tm.fit_cd(offset, z, g, right, ridge=50.0)
    assert np.isfinite(held).all() and 0 < np.abs(held).sum() < 0.8 * np.abs(free).sum()


# --------------------------------------------------------------------------------------------
# scripts/crowd_clips.py and scripts/crowd_walk.py: a scripted analyzer that records what each run gave it
# --------------------------------------------------------------------------------------------
def _face(box: Any, tid: int, index: int) -> Any:
    return NS(box=tuple(float(v) for v in box), score=0.9, track_id=tid, index=index)


def _recording_analyzer(answer: Any, calls: list[dict[str, Any]]) -> type:
    """A CrowdAnalyzer stand-in: ``answer(t, weak_score, detect_every)`` gives frame t's faces; each stream's tracker
    (its coast, coast_after, confirm, motion; None for track=False), weak score and detect_every go to ``calls``."""

    class Recording:
        def __init__(self, recognizer: Any = None, weak_score: Any = None) -> None:
            self.recognizer, self.weak_score = "rec", weak_score

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

        def analyze_stream(self, frames: Any, track: Any, detect_every: int = 1) -> Any:
            calls.append({"tracker": None if track is False else (track.coast, track.coast_after, track.confirm,
                                                                   track.motion),
                          "weak": self.weak_score, "every": detect_every})
            return (NS(faces=answer(t, self.weak_score, detect_every), timings_ms={"detect": 1.0, "recognize": 2.0})
                    for t in range(len(frames)))

    return Recording


_A, _B = (10, 10, 40, 40), (60, 10, 90, 40)


def _clips() -> ModuleType:
    return load_script("scripts/crowd_clips.py", "crowd_clips_70c")


@pytest.fixture
def recorded_clips(monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, list[dict[str, Any]]]:
    """crowd_clips on one scripted clip of two faces (labels 0 and 3), both found and right in every frame."""
    from fsrfer_edge import crowd, crowd_bench

    cc = _clips()
    n = cc.FRAMES
    boxes = [np.array([_A, _B], dtype=np.float64)] * n
    monkeypatch.setattr(cc, "render_clip", lambda *a, **k: ([np.zeros((8, 8, 3), np.uint8)] * n, boxes,
                                                             np.tile([0, 3], (n, 1))))
    monkeypatch.setattr(crowd_bench, "public_domain_faces", lambda: NS(labelled=True, source="scripted"))
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(crowd, "CrowdAnalyzer", _recording_analyzer(
        lambda t, weak, every: [_face(_A, 0, 0), _face(_B, 1, 3)], calls))
    return cc, calls


def test_crowd_clips_records_every_option_of_its_command(recorded_clips, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # kills: --seed, --coast-after=, --motion left out of the command; --switch-at recorded counted from 0
    cc, _ = recorded_clips
    out = tmp_path / "clips.json"
    assert cc.main(["--data", str(tmp_path / "none"), "--clips", "1", "--seed", "3", "--coast-after", "1,3",
                    "--motion", "--switch-at", "4", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["command"] == (f"python scripts/crowd_clips.py --seed 3 --clips 1 --coast-after=1,3 --motion "
                              f"--switch-at 4 --out {out}")
    assert doc["switch_at_frame"] == 4


def test_crowd_clips_gives_each_coast_after_and_motion_coast_run_its_own_tracker_and_name(recorded_clips, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # kills: every coast_after run on the last value (late binding); the motion-coast runs on coast 2; the coasting
    # runs all named "tracked, coast 2"
    cc, calls = recorded_clips
    out = tmp_path / "clips.json"
    assert cc.main(["--data", str(tmp_path / "none"), "--clips", "1", "--coast-after", "1,3", "--motion-coast", "4,5",
                    "--out", str(out)]) == 0
    clean = calls[:len(calls) // 2]  # the clean row's streams, in the runs' order
    assert [c["tracker"] for c in clean] == [None, (0, 2, 1, False), (2, 1, 1, False), (2, 3, 1, False),
                                             (4, 2, 2, True), (5, 2, 2, True)]
    runs = json.loads(out.read_text())["runs"]
    assert runs["tracked, coast 2 after 1"] == "FaceTracker(coast=2, coast_after=1, confirm=1, motion=False)"
    assert runs["tracked, coast 2 after 3"] == "FaceTracker(coast=2, coast_after=3, confirm=1, motion=False)"


def test_crowd_clips_accuracy_by_frame_is_over_the_clips_faces(recorded_clips, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # kills: divided by the frames instead of the faces
    cc, _ = recorded_clips
    out = tmp_path / "clips.json"
    assert cc.main(["--data", str(tmp_path / "none"), "--clips", "1", "--switch-at", "2", "--out", str(out)]) == 0
    by_frame = json.loads(out.read_text())["accuracy_by_frame"]["clean"]
    assert by_frame["tracked"] == [100.0] * cc.FRAMES  # both faces right in every frame


def test_crowd_clips_refuses_a_confirm_of_0(recorded_clips, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # kills: values of 0 taken
    cc, calls = recorded_clips
    for name in ("--confirm", "--coast-after", "--motion-coast"):
        with pytest.raises(SystemExit):
            cc.main(["--data", str(tmp_path / "none"), "--clips", "1", name, "0", "--out", str(tmp_path / "c.json")])
    assert not calls


def _walk() -> ModuleType:
    return load_script("scripts/crowd_walk.py", "crowd_walk_70c")


@pytest.fixture
def recorded_walk(monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, list[dict[str, Any]]]:
    """crowd_walk on one scripted clip of 3 frames of 100x160 and two faces (labels 3 and 4), fully visible: A found
    and right in every frame, B only by a weak analyzer (and then right), and only where the detector runs every
    frame."""
    from fsrfer_edge import crowd, crowd_bench

    cw = _walk()
    clip = {"frames": [np.zeros((100, 160, 3), np.uint8)] * 3, "boxes": np.array([[_A, _B]] * 3, dtype=np.float64),
            "labels": np.array([3, 4]), "visible": np.ones((3, 2)), "crossing": np.array([False, False])}
    monkeypatch.setattr(cw, "render_walk", lambda *a, **k: clip)
    monkeypatch.setattr(crowd_bench, "public_domain_faces", lambda: NS(labelled=True, source="scripted"))

    def answer(t: int, weak: Any, every: int) -> list[Any]:
        return [_face(_A, 0, 3)] + ([_face(_B, 1, 4)] if weak is not None and every == 1 else [])

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(crowd, "CrowdAnalyzer", _recording_analyzer(answer, calls))
    return cw, calls


_WALK = ["--clips", "1", "--frames", "3", "--size", "100x160"]


def test_crowd_walk_runs_weak_detections_on_the_weak_analyzer_and_passes_detect_every_on(recorded_walk, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # kills: the weak run on the plain analyzer; detect_every passed as 1; the weak run's description left bare;
    # time per frame over faces; identity switches reported for the one-frame run
    cw, calls = recorded_walk
    out = tmp_path / "walk.json"
    assert cw.main(["--data", str(tmp_path / "none"), *_WALK, "--faces", "3", "--weak", "0.2", "--detect-every", "2",
                    "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    row = doc["rows"]["clean"]
    weak, sparse = "tracked, motion, weak 0.2", "tracked, motion, detect every 2"
    assert row["all"][weak]["accuracy"] == 100.0 and row["all"]["tracked, motion"]["accuracy"] == 50.0
    assert sorted(c["every"] for c in calls) == [1] * 8 + [2] * 2
    assert [c["weak"] for c in calls if c["every"] == 2] == [None, None]
    assert doc["runs"][weak].endswith(" with CrowdAnalyzer(weak_score=0.2)")
    assert doc["runs"][sparse].endswith(" with analyze_stream(detect_every=2)")
    assert row["ms_per_frame"][weak] == 3.0  # 1 + 2 ms in each of 3 frames
    assert set(row["all"]["one frame"]) == {"faces_followed", "one_track", "scored_face_frames", "accuracy"}


def test_crowd_walk_records_its_speed_and_weak_score_in_the_command(recorded_walk, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # kills: --speed and --weak left out of the command; --weak 0 refused
    cw, _ = recorded_walk
    out = tmp_path / "walk.json"
    assert cw.main(["--data", str(tmp_path / "none"), *_WALK, "--speed", "0.2,0.3", "--weak", "0", "--out",
                    str(out)]) == 0
    assert json.loads(out.read_text())["command"] == (
        f"python scripts/crowd_walk.py --clips 1 --frames 3 --speed 0.2,0.3 --size 100x160 --weak 0 --out {out}")


def test_crowd_walk_refuses_one_frame_a_pace_of_10_sides_and_a_negative_weak_score(recorded_walk, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # kills: --frames 1 taken; no upper bound on --speed
    cw, calls = recorded_walk
    for bad in (["--frames", "1"], ["--speed", "0.1,10"], ["--weak", "-0.1"]):
        with pytest.raises(SystemExit):
            cw.main(["--data", str(tmp_path / "none"), *_WALK, *bad, "--out", str(tmp_path / "w.json")])
    assert not calls


# --------------------------------------------------------------------------------------------
# benchmarks/tracker_scale.py
# --------------------------------------------------------------------------------------------
def _ts() -> ModuleType:
    return load_script("benchmarks/tracker_scale.py", "tracker_scale_70c")


def test_tracker_scale_reports_medians_of_rounds_and_records_rounds_frames_and_command(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # kills: the mean of rounds; rounds recorded as frames; the child given 10 frames whatever --frames says
    ts = _ts()
    times = {"current": iter([0.001, 0.002, 0.006]), "previous": iter([0.004, 0.004, 0.004])}
    frames_asked: list[str] = []

    def run(cmd: list[str], **kw: Any) -> Any:
        variant, _, frames = cmd[cmd.index("--child") + 1:]
        frames_asked.append(frames)
        return NS(stdout=f"{next(times[variant])}\n")

    monkeypatch.setattr(ts.subprocess, "run", run)
    out = tmp_path / "ts.json"
    argv = ["--faces", "7", "--frames", "4", "--rounds", "3", "--out", str(out)]
    assert ts.main(argv) == 0
    doc = json.loads(out.read_text())
    assert frames_asked == ["4"] * 6
    assert doc["faces"]["7"]["current_median_s"] == 0.002 and doc["faces"]["7"]["previous_median_s"] == 0.004
    assert doc["rounds"] == 3 and doc["frames"] == 4
    assert doc["command"] == "python benchmarks/tracker_scale.py " + " ".join(argv)


def test_tracker_scale_refuses_no_faces(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # kills: --faces 0 taken
    with pytest.raises(SystemExit):
        _ts().main(["--faces", "0", "--out", str(tmp_path / "ts.json")])
    assert not (tmp_path / "ts.json").exists()


def test_tracker_scale_child_times_frames_updates_after_the_first_and_gives_their_median(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # kills: one update more timed
    import fsrfer_edge.tracking as tracking

    ts = _ts()
    clock = [0.0]
    updates: list[int] = []

    class Counting:
        def update(self, boxes: np.ndarray, probs: np.ndarray) -> None:
            updates.append(len(boxes))
            clock[0] += len(updates)  # the k-th update takes k seconds

    monkeypatch.setattr(tracking, "FaceTracker", Counting)
    monkeypatch.setattr(ts.time, "perf_counter", lambda: clock[0])
    assert ts._time_one("current", 5, 3) == 3.0  # updates 2, 3 and 4 timed
    assert updates == [5] * 4
