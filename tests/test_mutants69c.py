"""Tests that kill hand-made mutants (round 69, task K69c) of experiment scripts that no earlier mutation round
covered: scripts/score_calibration.py (val's cross-fitting on the other half, both rules' bounds and the logistic
rule's lack of a fallback, the selective rows, the resized crops read as x1, the JPEG rule, the variants' slack
and recorded command, the study command and option checks), scripts/contrast_floor.py (the candidates' floors as
strict bounds, the brightness modes, the lights rounded to grey levels, the clean-faces constraint, a --pick-from
refused before any work, the recorded command), scripts/flip_tta.py (--extra refusals), scripts/lanczos_enlarging_scan.py
and scripts/linear_enlarging_scan.py (run on a tiny archive: --faces, the sizes, the recorded command),
scripts/factor_estimator_rounding.py (its refusals), benchmarks/sessions.py (the rotated order, the strict rule,
the quoted command, INT8/FP32 only with both), scripts/prepare_trt_stubs.py (the mended stub lines, a fresh
.typings/) and scripts/test.sh (run as a temporary copy with a fake python: a failing step ends it, pytest last
with -q -rs and the given arguments, the server venv's python exported). Tiny synthetic inputs, temporary folders,
the shipped default model and fake timers only."""
from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from _scripts import load_script

REPO = Path(__file__).resolve().parents[1]


def _tiny_npz(path: Path, splits: dict[str, int], seed: int = 0) -> Path:
    """A plain archive (images, labels, split) of smooth random 48 px faces: its own labels, no FER+ join."""
    g = np.random.default_rng(seed)
    names = [s for s, k in splits.items() for _ in range(k)]
    n = len(names)
    base = g.integers(40, 216, (n, 12, 12)).astype(np.float64)
    images = np.clip(np.kron(base, np.ones((4, 4))) + g.normal(0, 6, (n, 48, 48)), 0, 255).astype(np.uint8)
    np.savez(path, images=images, labels=g.integers(0, 7, n), split=np.array(names))
    return path


# ---------------------------------------------------------------------------------------------------------------
# scripts/score_calibration.py


@pytest.fixture(scope="module")
def sc() -> ModuleType:
    return load_script("scripts/score_calibration.py", "score_calibration_69c")


def _cells(sc: ModuleType, small: dict[str, Any], camera: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p, given in (("small", small), ("camera", camera), ("resized", small)):
        out[p] = {str(f): {m: float(np.broadcast_to(given[m], (6,))[k]) for m in sc.METHODS}
                  for k, f in enumerate(sc.FACTORS)}
    return out


GOOD = {"score": 10.0, "one_for_all": 5.0, "per_size": 3.0, "logistic": 2.0}
CAM = {"score": 7.0, "one_for_all": 7.0, "per_size": 6.0, "logistic": 4.0}


def test_val_halves_are_each_scored_with_maps_fitted_on_the_other_half_only(sc: ModuleType) -> None:
    # kills: cross_fitted fitting each half on itself
    seen = []
    folds = sc.cross_fitted(11, 3, lambda keep: seen.append(keep.copy()) or keep.copy())
    rows = np.concatenate([r for r, _ in folds])
    assert sorted(rows.tolist()) == list(range(11))
    for rows_k, keep in folds:
        assert not keep[rows_k].any() and keep.sum() == 11 - len(rows_k)


def test_an_error_at_the_bound_itself_meets_it(sc: ModuleType) -> None:
    # kills: `<= BOUND` made `<`
    at = dict(GOOD, logistic=[2, 2, 2, sc.BOUND, 2, 2])
    assert sc.decide(_cells(sc, at, CAM), "logistic")["chosen"] == "logistic"
    assert sc.decide(_cells(sc, at, CAM), "logistic")["logistic"]["bound_at_each_factor_b"] is True


def test_a_lead_of_exactly_one_point_is_enough(sc: ModuleType) -> None:
    # kills: `>= LEAD` made `>`
    d = sc.decide(_cells(sc, dict(GOOD, one_for_all=3.0, logistic=2.0), CAM), "logistic")
    assert d["logistic"]["lead_over_one_for_all_b"] == sc.LEAD and d["chosen"] == "logistic"


def test_an_equal_camera_mean_is_not_below_the_score(sc: ModuleType) -> None:
    # kills: the camera condition's `<` made `<=`
    d = sc.decide(_cells(sc, GOOD, dict(CAM, logistic=7.0)), "logistic")
    assert d["logistic"]["camera_mean_below_score"] is False and d["chosen"] is None


def test_an_error_equal_to_the_scores_at_a_factor_is_at_most_it(sc: ModuleType) -> None:
    # kills: "at most the score" made strict
    d = sc.decide(_cells(sc, dict(GOOD, score=[10, 10, 10, 10, 10, 2.0]), CAM), "logistic")
    assert d["logistic"]["at_most_score_at_each_factor_b"] is True and d["chosen"] == "logistic"


def test_the_logistic_rule_never_falls_back_to_one_temperature(sc: ModuleType) -> None:
    # kills: the one-for-all fallback offered to the logistic rule too
    small = dict(GOOD, one_for_all=2.5, logistic=2.0)                # lead 0.5: the logistic map fails
    cam = dict(CAM, one_for_all=6.0)                                  # one for all meets both of its conditions
    assert sc.decide(_cells(sc, small, cam), "logistic")["chosen"] is None
    assert "one_for_all" not in sc.decide(_cells(sc, small, cam), "logistic")
    assert sc.decide(_cells(sc, dict(small, per_size=2.0), cam), "per_size")["chosen"] == "one_for_all"


def test_selective_rows_keep_faces_at_the_threshold_and_report_no_accuracy_when_none_is_kept(sc: ModuleType) -> None:
    # kills: `v >= t` made `v > t`; the None for an empty selection
    conf = np.array([0.5, 0.7, 0.3, 0.95])
    score = np.array([0.2, 0.2, 0.2, 0.2])
    right = np.array([1.0, 0.0, 1.0, 1.0])
    rows = sc.kept_and_right(conf, score, right)
    assert rows["0.5"]["confidence"] == {"kept": 75.0, "accuracy": round(200 / 3, 2)}
    assert rows["0.7"]["confidence"] == {"kept": 50.0, "accuracy": 50.0}
    assert rows["0.9"]["score"] == {"kept": 0.0, "accuracy": None}
    json.dumps(rows, allow_nan=False)


def test_resized_crops_take_the_x1_map_and_small_crops_their_factors(sc: ModuleType) -> None:
    # kills: (a)'s resized crops read at their factor
    from fsrfer_edge.confidence import ScoreCalibration

    cal = ScoreCalibration(("a", "b"), "logistic", (1.0, 4.0), ((1.0, 0.0), (0.5, -1.0)), source="maps")
    z = np.array([[2.0, 0.0], [0.0, 0.5], [1.0, 1.2]])
    cals = {m: cal for m in sc.METHODS[1:]}
    resized = sc.confidences(cals, z, "resized", 4)
    small = sc.confidences(cals, z, "small", 4)
    np.testing.assert_allclose(resized["logistic"], cal.confidence(z, 1.0))
    np.testing.assert_allclose(small["logistic"], cal.confidence(z, 4.0))
    assert not np.allclose(resized["logistic"], small["logistic"])


def _jcells(sc: ModuleType, cam_base: list[float], cam_jpeg: list[float], clean_base: list[float],
            clean_jpeg: list[float]) -> dict[str, Any]:
    return {"camera": {str(f): {"base": b, "jpeg": j} for f, b, j in zip(sc.FACTORS, cam_base, cam_jpeg)},
            "small": {str(f): {"base": b, "jpeg": j} for f, b, j in zip(sc.FACTORS, clean_base, clean_jpeg)}}


def test_the_jpeg_rule_takes_a_fall_and_a_rise_at_their_limits_and_a_clean_fall_counts_as_change(sc: ModuleType) -> None:
    # kills: `fall >= JPEG_GAIN` / `worst_rise <= JPEG_RISE` made strict; abs() dropped from the clean change
    clean = [2.0] * 6
    d = sc.jpeg_decide(_jcells(sc, [3.0] * 6, [2.0] * 6, clean, clean))
    assert d["camera_mean_fall"] == sc.JPEG_GAIN and d["adopted"]
    d = sc.jpeg_decide(_jcells(sc, [4.0] * 5 + [0.0], [1.0] * 5 + [sc.JPEG_RISE], clean, clean))
    assert d["camera_worst_rise"] == sc.JPEG_RISE and d["adopted"]
    clean_fall = _jcells(sc, [3.0] * 6, [1.0] * 6, clean, [2.0] * 5 + [1.5])
    d = sc.jpeg_decide(clean_fall)
    assert d["clean_largest_change"] == 0.5 and not d["adopted"]


def test_jpeg_and_variants_are_refused_together_before_any_work(sc: ModuleType, tmp_path: Path, capsys) -> None:
    # kills: the --jpeg/--variants check dropped
    with pytest.raises(SystemExit):
        sc.main(["--jpeg", "--variants", "a.onnx", "--json", str(tmp_path / "r.json"),
                 "--data", str(tmp_path / "none.npz")])
    assert "--jpeg and --variants are separate runs" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_the_study_command_records_the_split_seed_and_limit_given(sc: ModuleType, tmp_path: Path) -> None:
    # kills: the split's or --limit's part of the recorded command lost or inverted
    def ns(**kw: Any) -> argparse.Namespace:
        return argparse.Namespace(**{"json": str(tmp_path / "r.json"), "split": "val", "seed": 0, "limit": 0, **kw})

    out = str(tmp_path / "r.json")
    assert sc.study_command("scripts/x.py", ns()) == f"python scripts/x.py --json {out}"
    assert sc.study_command("scripts/x.py", ns(split="test", seed=2, limit=50)) == (
        f"python scripts/x.py --json {out} --split test --seed 2 --limit 50")


def test_variants_keep_the_maps_up_to_the_slack_and_record_their_command(sc: ModuleType, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the slack's `<=` made `<`; the reference judged against itself; the command's variants lost
    import trainer.evaluate as ev

    data = _tiny_npz(tmp_path / "d.npz", {"val": 8})
    files = {}
    for name in ("ref", "fp16", "int8"):
        files[name] = tmp_path / f"{name}.onnx"
        files[name].write_bytes(name.encode())
    g = np.random.default_rng(0)
    monkeypatch.setattr(ev, "onnx_logits_fn", lambda path, threads=None: (Path(path).stem, None))
    monkeypatch.setattr(ev, "protocol_logits", lambda fn, images, f, pre, protocol, batch: g.normal(0, 1, (len(images), 7)))
    errors = iter([2.0] * 6 + [3.0] * 6 + [2.0] * 5 + [3.01])      # ref, fp16 (at the slack), int8 (over at x8)
    monkeypatch.setattr(sc, "expected_calibration_error", lambda conf, right: next(errors))
    out = tmp_path / "v.json"
    assert sc.main(["--model", str(files["ref"]), "--variants", str(files["fp16"]), str(files["int8"]),
                    "--data", str(data), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    got = {Path(k).stem: v for k, v in doc["files"].items()}
    assert "keeps_the_maps" not in got["ref"]
    assert got["fp16"]["keeps_the_maps"] is True and got["int8"]["keeps_the_maps"] is False
    assert got["fp16"]["cells"]["8"]["map"] == 3.0 and doc["slack"] == sc.VARIANT_SLACK
    assert doc["command"] == (f"python scripts/score_calibration.py --variants {files['fp16']} {files['int8']} "
                              f"--json {out}")
    assert doc["split"] == "val" and doc["n"] == 8 and doc["reference"] == str(files["ref"])


def test_a_val_study_records_its_seed_and_scores_every_protocol_and_factor_on_both_halves(
        sc: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: --seed or --split test left out of the main study's recorded command (fake logits, a tiny archive)
    import trainer.evaluate as ev
    from fsrfer_edge.preprocessing import Preprocessing

    data = _tiny_npz(tmp_path / "d.npz", {"val": 20, "test": 4})
    g = np.random.default_rng(1)
    monkeypatch.setattr(ev, "onnx_logits_fn", lambda path, threads=None: (None, Preprocessing()))
    monkeypatch.setattr(ev, "protocol_logits", lambda fn, images, f, pre, p, batch: g.normal(0, 2, (len(images), 7)))
    out = tmp_path / "r.json"
    assert sc.main(["--data", str(data), "--json", str(out), "--seed", "3"]) == 0
    doc = json.loads(out.read_text())
    assert doc["command"] == f"python scripts/score_calibration.py --json {out} --seed 3"
    assert doc["split"] == "val" and doc["n"] == 20 and len(doc["fits"]) == 2
    assert set(doc["cells"]) == set(doc["selective"]) == set(sc.PROTOCOLS)
    for p in sc.PROTOCOLS:
        assert set(doc["cells"][p]) == {str(f) for f in sc.FACTORS}
    assert set(doc["decisions"]) == {"temperature", "logistic"}
    assert sc.main(["--data", str(data), "--json", str(out), "--split", "test"]) == 0          # all of val fits test
    doc = json.loads(out.read_text())
    assert doc["command"] == f"python scripts/score_calibration.py --json {out} --split test"
    assert doc["split"] == "test" and doc["n"] == 4 and len(doc["fits"]) == 1


# ---------------------------------------------------------------------------------------------------------------
# scripts/contrast_floor.py


@pytest.fixture(scope="module")
def cf() -> ModuleType:
    return load_script("scripts/contrast_floor.py", "contrast_floor_69c")


def _two_level(lo: float, hi: float) -> np.ndarray:
    x = np.full((1, 1, 4, 4), lo, np.float32)
    x[..., 2:] = hi
    return x


def test_a_face_whose_spread_is_the_floor_itself_is_not_stretched(cf: ModuleType) -> None:
    # kills: `s < floor` made `s <= floor`
    at, under = _two_level(80.0, 120.0), _two_level(90.0, 110.0)            # standard deviations 20 and 10
    _, low = cf.stretch(np.concatenate([at, under]), 20.0, None, None)
    assert low.tolist() == [False, True]


def test_a_stretch_centred_on_the_training_mean_moves_the_face_there(cf: ModuleType) -> None:
    # kills: the centre candidate ignored (each face's own mean used)
    out, low = cf.stretch(_two_level(90.0, 110.0), 20.0, cf.TRAIN_STD, cf.TRAIN_MEAN)
    assert low.tolist() == [True]
    assert out.mean() == pytest.approx(cf.TRAIN_MEAN) and out.std() == pytest.approx(cf.TRAIN_STD)
    own, _ = cf.stretch(_two_level(90.0, 110.0), 20.0, None, None)
    assert own.mean() == pytest.approx(100.0) and own.std() == pytest.approx(20.0)


def test_brightening_leaves_a_face_at_the_floor_and_adds_or_multiplies_by_its_mode(cf: ModuleType) -> None:
    # kills: `m < floor` made `<=`; the add and gain modes swapped
    faces = np.concatenate([_two_level(40.0, 40.0), _two_level(10.0, 30.0)])
    added, low = cf.brighten(faces, 40.0, "add")
    assert low.tolist() == [False, True]
    np.testing.assert_array_equal(np.unique(added), [30.0, 50.0])
    gained, _ = cf.brighten(faces, 40.0, "gain")
    np.testing.assert_array_equal(np.unique(gained), [20.0, 60.0])


def test_lit_faces_are_rounded_to_the_nearest_grey_level(cf: ModuleType) -> None:
    # kills: np.rint dropped (truncation by the uint8 cast)
    face = np.full((1, 4, 4), 3, np.uint8)
    assert cf.lit(face, "dark (x0.3)").tolist() == np.ones((1, 4, 4), int).tolist()       # 0.9 -> 1, not 0
    assert cf.lit(np.full((1, 2, 2), 255, np.uint8), "haze (x0.4 + 120)").max() == 222


def test_the_clean_constraint_allows_a_loss_of_exactly_a_thousandth_of_the_faces(cf: ModuleType) -> None:
    # kills: `<= 0.001 * n` made `<`
    n = 3000

    def pct(k: int) -> float:
        return round(100.0 * k / n, 2)

    acc = {"none": {"clean": {"1": pct(2000)}, "dark": {"1": pct(1000)}},
           "a": {"clean": {"1": pct(1997)}, "dark": {"1": pct(1100)}}}
    score, ok, pick = cf.select(acc, {"a": {"floor": 20.0}}, n)
    assert ok["a"] is True and pick == "a"


def test_a_pick_from_file_naming_no_candidate_is_refused_before_any_model_runs(cf: ModuleType, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the --pick-from check dropped
    pytest.importorskip("cv2")
    import fsrfer_edge

    monkeypatch.setattr(fsrfer_edge, "Recognizer", lambda *a, **k: pytest.fail("ran a model"))
    data = _tiny_npz(tmp_path / "d.npz", {"val": 4})
    val = tmp_path / "val.json"
    val.write_text(json.dumps({"pick": "T=99, S=T, c=m"}))
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit, match="T=99, S=T, c=m.*is not one of this script's candidates"):
        cf.main(["--data", str(data), "--json", str(out), "--pick-from", str(val)])
    assert not out.exists()


def test_a_brightness_run_records_its_kind_and_candidates_and_picks_one_that_keeps_clean_faces(
        cf: ModuleType, tmp_path: Path) -> None:
    # kills: --kind left out of the recorded command; (with the default model and six tiny faces)
    pytest.importorskip("cv2")
    data = _tiny_npz(tmp_path / "d.npz", {"val": 6})
    out = tmp_path / "b.json"
    assert cf.main(["--kind", "brightness", "--data", str(data), "--json", str(out), "--threads", "1"]) == 0
    doc = json.loads(out.read_text())
    assert doc["command"] == f"python scripts/contrast_floor.py --kind brightness --json {out}"
    assert doc["kind"] == "brightness" and doc["rule"].endswith("'A brightness floor after it'")
    assert sorted(doc["candidates"]) == sorted(cf.candidates_for("brightness")[0])
    assert set(doc["accuracy"]) == {"none", *doc["candidates"]} and doc["n"] == 6
    assert doc["pick"] is None or doc["clean_ok"][doc["pick"]]
    assert doc["changed"]["B=70, add"]["dark (x0.3)"]["1"] == 100.0          # every darkened face is under 70


def test_a_pick_from_run_keeps_the_val_pick_even_where_it_loses_clean_faces(cf: ModuleType, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the test split's run choosing afresh instead of keeping --pick-from's candidate
    pytest.importorskip("cv2")
    import fsrfer_edge
    from fsrfer_edge.preprocessing import Preprocessing

    pre = Preprocessing()
    bright = float(pre.normalize(np.full((1, 1, 48, 48), 50.0, np.float32)).mean())

    class Dimness:  # a model that says class 0 for faces darker than grey 50 and class 1 for the others
        info = SimpleNamespace(input_dtype="float32", preprocessing=pre)

        def __init__(self, *a: Any, **k: Any) -> None:
            pass

        def __enter__(self) -> "Dimness":
            return self

        def __exit__(self, *exc: Any) -> None:
            pass

        def predict_logits(self, x: np.ndarray) -> np.ndarray:
            m = x.reshape(len(x), -1).mean(1)
            return np.stack([bright - m, m - bright], axis=1)

    monkeypatch.setattr(fsrfer_edge, "Recognizer", Dimness)
    g = np.random.default_rng(0)
    dim = g.integers(20, 40, (4, 48, 48)).astype(np.uint8)                     # all class 0, as labelled
    data = tmp_path / "dim.npz"
    np.savez(data, images=dim, labels=np.zeros(4, int), split=np.array(["test"] * 4))
    val = tmp_path / "val.json"
    val.write_text(json.dumps({"pick": "B=70, add"}))
    out = tmp_path / "t.json"
    assert cf.main(["--kind", "brightness", "--split", "test", "--pick-from", str(val), "--data", str(data),
                    "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["pick"] == "B=70, add" and doc["clean_ok"]["B=70, add"] is False      # brightened: all wrong
    assert doc["accuracy"]["B=70, add"]["clean"]["1"] == 0.0 and doc["accuracy"]["none"]["clean"]["1"] == 100.0
    assert list(doc["candidates"]) == ["B=70, add"] and doc["gain_over_none"] < 0
    assert doc["command"] == (f"python scripts/contrast_floor.py --kind brightness --json {out} --split test "
                              f"--pick-from {val}")


# ---------------------------------------------------------------------------------------------------------------
# scripts/flip_tta.py


@pytest.mark.parametrize("item", ["hr=CKPT", "fsrfer=CKPT", "extra=MISSING", "=CKPT", "extra="])
def test_flip_tta_refuses_an_extra_row_named_as_a_built_in_one_or_without_a_checkpoint_file(
        tmp_path: Path, item: str) -> None:
    # kills: the reserved names or the checkpoint file's check dropped from --extra's validation
    mod = load_script("scripts/flip_tta.py", "flip_tta_69c")
    ckpt = tmp_path / "other.pt"
    ckpt.write_bytes(b"not read")
    item = item.replace("CKPT", str(ckpt)).replace("MISSING", str(tmp_path / "none.pt"))
    out = tmp_path / "f.json"
    with pytest.raises(SystemExit, match="expected NAME=CHECKPOINT with an existing checkpoint file"):
        mod.main(["--json", str(out), "--extra", item])
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------------
# scripts/lanczos_enlarging_scan.py and scripts/linear_enlarging_scan.py, on a tiny archive


def test_the_lanczos_scan_counts_every_crop_of_the_faces_asked_for(tmp_path: Path) -> None:
    # kills: --faces ignored; a crop counted twice or not at all; a crop marked on one axis counted as marked
    pytest.importorskip("cv2")
    mod = load_script("scripts/lanczos_enlarging_scan.py", "lanczos_enlarging_scan_69c")
    data = _tiny_npz(tmp_path / "d.npz", {"train": 3, "val": 1})
    out = tmp_path / "l.json"
    assert mod.main(["--data", str(data), "--faces", "2", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["command"] == f"python scripts/lanczos_enlarging_scan.py --data {data} --faces 2 --json {out}"
    assert doc["faces"] == 2
    kinds = doc["kinds"]
    assert set(kinds) == {"lanczos", "bilinear", "bicubic", "gaussian blur"}
    assert {k: v["crops"] for k, v in kinds.items()} == {"lanczos": 18, "bilinear": 18, "bicubic": 18,
                                                         "gaussian blur": 8}
    for v in kinds.values():
        assert 0 <= v["true_size"] <= v["marked"] <= v["crops"]
    assert kinds["gaussian blur"]["true_size"] == 0                 # a blurred face has no true size
    assert doc["matrix_error"] < 1e-4


def test_the_linear_scan_finds_each_enlarged_crops_true_size_in_the_faces_asked_for(tmp_path: Path) -> None:
    # kills: --faces ignored; the largest size under the threshold taken for the smallest
    pytest.importorskip("cv2")
    mod = load_script("scripts/linear_enlarging_scan.py", "linear_enlarging_scan_69c")
    data = _tiny_npz(tmp_path / "d.npz", {"val": 3, "test": 1})
    out = tmp_path / "s.json"
    assert mod.main(["--data", str(data), "--faces", "2", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["command"] == f"python scripts/linear_enlarging_scan.py --data {data} --faces 2 --json {out}"
    assert doc["faces"] == 2 and doc["split"] == "val" and doc["threshold"] == 0.5
    assert set(doc["enlarged"]) == {str(s) for s in mod.SIZES}
    for size, row in doc["enlarged"].items():
        assert row["smallest_size_under_threshold_is_true"] == 1.0, size
        assert row["residual_at_true_size_percentiles_50_95_100"][2] < 0.5
    assert doc["originals"]["marked_as_enlarged"] == 0


# ---------------------------------------------------------------------------------------------------------------
# scripts/factor_estimator_rounding.py


@pytest.mark.needs("torch")
def test_factor_estimator_rounding_refuses_a_missing_checkpoint_and_a_bad_output_before_loading(
        tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the input files' check or the --out check dropped
    mod = load_script("scripts/factor_estimator_rounding.py", "factor_estimator_rounding_69c")
    data = _tiny_npz(tmp_path / "d.npz", {"train": 2, "val": 2})
    out = tmp_path / "r.json"
    assert mod.main(["--checkpoint", str(tmp_path / "none.pt"), "--data", str(data), "--out", str(out)]) == 2
    assert "none.pt" in capsys.readouterr().err and not out.exists()
    from fsrfer_edge.errors import InputError
    from trainer import checkpoint

    monkeypatch.setattr(checkpoint, "load_model", lambda *a, **k: pytest.fail("loaded the checkpoint"))
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"not read")
    with pytest.raises(InputError, match="--out"):
        mod.main(["--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path)])


@pytest.mark.needs("torch")
def test_factor_estimator_rounding_draws_the_faces_asked_for_from_each_split_and_reports_every_estimator(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: --faces not passed on to a split's draw; (the shipped checkpoint, tiny random splits)
    import trainer.train as tt

    mod = load_script("scripts/factor_estimator_rounding.py", "factor_estimator_rounding_69c")
    g = np.random.default_rng(0)
    splits = SimpleNamespace(train=SimpleNamespace(images=g.integers(0, 256, (10, 48, 48)).astype(np.uint8)),
                             val=SimpleNamespace(images=g.integers(0, 256, (9, 48, 48)).astype(np.uint8)))
    monkeypatch.setattr(tt, "load_data", lambda cfg, path: splits)
    data = tmp_path / "fer2013.npz"
    data.write_bytes(b"not read")
    out = tmp_path / "r.json"
    assert mod.main(["--data", str(data), "--faces", "7", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["train_faces"] == 7 and doc["val_faces"] == 7 and doc["split"] == "val"
    assert set(doc["per_estimator"]) == {"shipped", "shipped_rounded", "refit_rounded", "refit_both_float",
                                         "refit_both_rounded"}
    factors = {k for row in doc["per_estimator"].values() for k in row}
    assert factors and factors <= {str(f) for f in (1, 2, 3, 4, 6, 8)}
    assert doc["command"] == f"python scripts/factor_estimator_rounding.py --data {data} --faces 7 --out {out}"
    assert 0.0 <= doc["whole_grey_share_of_drawn_train_faces"] <= 1.0


# ---------------------------------------------------------------------------------------------------------------
# benchmarks/sessions.py


@pytest.fixture(scope="module")
def sb() -> ModuleType:
    pytest.importorskip("onnx")
    return load_script("benchmarks/sessions.py", "sessions_bench_69c")


def _fps_timer(calls: list[tuple[str, int, int]], fps: dict[tuple[str, int], float]) -> Any:
    def timer(model: Path, threads: int, n: int, batches: Any, warmup: int, iters: int) -> dict[int, Any]:
        calls.append((model.name, threads, n))
        return {b: {"throughput_fps": fps[(model.name, n)], "p50_ms": 1.0, "load_before": 0.0} for b in batches}
    return timer


def test_each_round_starts_one_job_later_than_the_last(sb: ModuleType) -> None:
    # kills: the order not rotated between rounds
    calls: list[tuple[str, int, int]] = []
    fps = {(m, n): 100.0 for m in ("a.onnx", "b.onnx") for n in (1, 2)}
    files = {"fp32": Path("a.onnx"), "int8": Path("b.onnx")}
    rounds = sb.measure(files, 3, [4], 0, 1, _fps_timer(calls, fps))
    jobs = [("a.onnx", 2, 1), ("a.onnx", 1, 2), ("b.onnx", 2, 1), ("b.onnx", 1, 2)]
    assert calls == jobs + jobs[1:] + jobs[:1] + jobs[2:] + jobs[:2]
    assert [r["round"] for r in rounds] == [1, 2, 3] and all(len(r) == 6 for r in rounds)


def test_two_sessions_equal_to_one_are_not_advised_and_one_file_has_no_int8_ratio(sb: ModuleType) -> None:
    # kills: the rule's `> 1` made `>= 1`; INT8/FP32 ratios computed without both files
    a, b = sb.CONFIGS
    rnd = {f"fp32/{c}": {64: {"throughput_fps": 500.0}} for c in sb.CONFIGS}
    s = sb.summarize([rnd, rnd], ["fp32"], [64])
    assert s[f"{b}_vs_{a}"]["fp32"]["64"]["median_of_rounds"] == 1.0 and s["advised"] is False
    assert s["int8_vs_fp32"] == {}


def test_the_recorded_command_quotes_the_arguments_as_given(sb: ModuleType, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the arguments recorded unquoted
    import shutil

    monkeypatch.setattr(sb.edge_budget, "make_int8", lambda src, dst, *a, **k: shutil.copyfile(src, dst) and {})
    data = tmp_path / "fer2013.npz"
    data.write_bytes(b"")
    out = tmp_path / "s.json"
    fps = {(m, n): 100.0 * n for m in (sb.DEFAULT_MODEL.name, "int8-u8s8.onnx") for n in (1, 2)}
    argv = ["--data", str(data), "--rounds", "1", "--batch-sizes", "2", "--note", "two words", "--out", str(out)]
    assert sb.main(argv, timer=_fps_timer([], fps)) == 0
    doc = json.loads(out.read_text())
    assert doc["command"] == (f"python benchmarks/sessions.py --data {data} --rounds 1 --batch-sizes 2 "
                              f"--note 'two words' --out {out}")
    assert doc["note"] == "two words" and doc["advised"] is True


# ---------------------------------------------------------------------------------------------------------------
# scripts/prepare_trt_stubs.py


def _stub_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    for pkg in ("tensorrt", "tensorrt_bindings"):
        (site / pkg / "plugin").mkdir(parents=True)
        (site / pkg / "__init__.pyi").write_text(
            "class P:\n"
            "    def attach(self, in: int) -> None: ...\n"
            "    def typed(self: P, in: str, out: int) -> None: ...\n"
            "def quantize(scale: float = None, channel_axis: int) -> None: ...\n")
        (site / pkg / "plugin" / "__init__.pyi").write_text("def run(self, in: int) -> int: ...\n")
        (site / pkg / "loader.py").write_text("raise ImportError\n")
        (site / pkg / "lib.so").write_bytes(b"\0")
    (site / "tensorrt_stubs").mkdir()
    (site / "tensorrt_stubs" / "__init__.py").write_text("")
    return site


def test_trt_stubs_are_copied_afresh_without_code_and_mended_until_they_parse(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: `in` left as a parameter name; the channel_axis default not added; the old copy not removed first
    mod = load_script("scripts/prepare_trt_stubs.py", "prepare_trt_stubs_69c")
    site = _stub_site(tmp_path)
    dest = tmp_path / ".typings"
    (dest / "tensorrt").mkdir(parents=True)
    (dest / "tensorrt" / "stale.pyi").write_text("x: int\n")
    monkeypatch.setattr(mod, "DEST", dest)
    monkeypatch.setattr(mod, "find_spec", lambda name: SimpleNamespace(origin=str(site / name / "__init__.py")))
    assert mod.main() == 0
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        f"{pkg}/{f}" for pkg in ("tensorrt", "tensorrt_bindings") for f in ("__init__.pyi", "plugin/__init__.pyi")]
    for pyi in dest.rglob("*.pyi"):
        ast.parse(pyi.read_text())
    text = (dest / "tensorrt" / "__init__.pyi").read_text()
    assert "def attach(self, in_: int)" in text and "def typed(self: P, in_: str, out: int)" in text
    assert "def quantize(scale: float = None, channel_axis: int = ...)" in text
    assert "in_: int" in (dest / "tensorrt_bindings" / "plugin" / "__init__.pyi").read_text()


def test_trt_stubs_missing_is_a_failure_with_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys) -> None:
    # kills: a missing tensorrt-stubs (or one of its stub packages) reported with exit status 0
    mod = load_script("scripts/prepare_trt_stubs.py", "prepare_trt_stubs_69c")
    monkeypatch.setattr(mod, "DEST", tmp_path / ".typings")
    monkeypatch.setattr(mod, "find_spec", lambda name: None)
    assert mod.main() == 1
    assert "pip install --no-deps tensorrt-stubs" in capsys.readouterr().err
    site = _stub_site(tmp_path)
    (site / "tensorrt_bindings" / "__init__.pyi").unlink()
    monkeypatch.setattr(mod, "find_spec", lambda name: SimpleNamespace(origin=str(site / name / "__init__.py")))
    assert mod.main() == 1
    assert "tensorrt_bindings" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# scripts/test.sh, as a temporary copy with a fake python

#: A fake interpreter: logs [what, *args] and FSRFER_SERVE_PYTHON as a JSON line; answers the script's -c probes
#: (the server venv's python a version older with FAKE_OLD_SERVE); makes a venv of itself; fails the step FAKE_FAIL
#: names (a module after -m, or "pytest").
FAKE_PY = r'''#!{exe} -S
import json, os, sys
args = sys.argv[1:]
what = args[1] if args[:1] == ["-m"] else ("-c" if args[:1] == ["-c"] else args[0])
with open(os.environ["FAKE_LOG"], "a") as fh:
    fh.write(json.dumps([what, *args[2 if args[:1] == ["-m"] else 1:], os.environ.get("FSRFER_SERVE_PYTHON")]) + "\n")
code = args[1] if what == "-c" else ""
if what == "venv":  # a venv whose python is this fake
    bin_ = os.path.join(args[-1], "bin")
    os.makedirs(bin_, exist_ok=True)
    with open(sys.argv[0]) as src, open(os.path.join(bin_, "python"), "w") as dst:
        dst.write(src.read())
    os.chmod(os.path.join(bin_, "python"), 0o755)
if "version_info" in code:
    print("3.98" if sys.argv[0].endswith(".venv/serve/bin/python") and os.environ.get("FAKE_OLD_SERVE") else "3.99")
elif "purelib" in code:
    print(os.environ["FAKE_SITE"])
elif "PREFIXES" in code:
    print("import site")
if what == os.environ.get("FAKE_FAIL"):
    sys.exit(int(os.environ.get("FAKE_RC", "3")))
'''


@pytest.fixture
def test_sh(tmp_path: Path) -> Any:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "test.sh").write_text((REPO / "scripts" / "test.sh").read_text())
    fake = FAKE_PY.replace("{exe}", sys.executable)
    py = tmp_path / "bin" / "python"
    serve = root / ".venv" / "serve" / "bin" / "python"
    for p in (py, serve):
        p.parent.mkdir(parents=True)
        p.write_text(fake)
        p.chmod(0o755)
    (tmp_path / "site").mkdir()
    log = tmp_path / "log.jsonl"

    def run(*args: str, **env: str) -> tuple[int, list[list[Any]]]:
        if log.exists():
            log.unlink()
        e = {**os.environ, "PYTHON": str(py), "FAKE_LOG": str(log), "FAKE_SITE": str(tmp_path / "site"), **env}
        e.pop("FSRFER_SERVE_PYTHON", None)
        p = subprocess.run(["bash", str(root / "scripts" / "test.sh"), *args], cwd=tmp_path, env=e,
                           capture_output=True, text=True, timeout=60)
        return p.returncode, [json.loads(line) for line in log.read_text().splitlines()]

    run.root = root  # type: ignore[attr-defined]
    return run


def test_test_sh_checks_types_then_runs_pytest_last_with_its_options_and_the_arguments(test_sh: Any) -> None:
    # kills: mypy dropped; -rs or the arguments not passed to pytest; the server venv's python not exported
    rc, calls = test_sh("-k", "two words", "-x")
    assert rc == 0
    steps = [c[0] for c in calls]
    assert steps.index("scripts/prepare_trt_stubs.py") < steps.index("mypy") < steps.index("pytest")
    assert steps[-1] == "pytest"
    assert calls[-1] == ["pytest", "-q", "-rs", "-k", "two words", "-x",
                         str(test_sh.root / ".venv" / "serve" / "bin" / "python")]
    assert (test_sh.root / ".venv" / "serve" / "bin" / "python").exists()


@pytest.mark.parametrize("step", ["pip", "mypy", "scripts/prepare_trt_stubs.py"])
def test_test_sh_stops_at_a_failing_step_before_the_tests(test_sh: Any, step: str) -> None:
    # kills: `set -e` dropped (a failed install or type check going on to the tests)
    rc, calls = test_sh(FAKE_FAIL=step)
    assert rc == 3
    assert calls[-1][0] == step and "pytest" not in [c[0] for c in calls]


def test_test_sh_exits_with_pytests_status(test_sh: Any) -> None:
    rc, calls = test_sh(FAKE_FAIL="pytest", FAKE_RC="5")
    assert rc == 5 and calls[-1][0] == "pytest"


@pytest.mark.parametrize("venv, made", [("kept", False), ("missing", True), ("older", True)])
def test_test_sh_makes_the_server_venv_only_where_it_is_missing_or_of_another_python(test_sh: Any, venv: str,
                                                                                      made: bool) -> None:
    # kills: the server venv made afresh every run, or kept when it is absent or of another Python version
    serve = test_sh.root / ".venv" / "serve" / "bin" / "python"
    if venv == "missing":
        serve.unlink()
    rc, calls = test_sh(**({"FAKE_OLD_SERVE": "1"} if venv == "older" else {}))
    assert rc == 0 and serve.exists()
    assert (["venv", "--clear", ".venv/serve", None] in calls) is made
    assert ["pip", "install", "-q", "--no-warn-conflicts", "numpy<2", None] in calls     # by the server venv's python
