"""Tests that kill hand-made mutants (round 70, task K70i) of the enlarging and rounding experiment scripts, second
pass: scripts/lanczos_enlarging_scan.py (the residual and dip recorded under their own keys, a crop at its true size
only on both axes, the ratio at the first size under the residual taken the right way up, the dip required, a bad
--json refused before the faces are read), scripts/linear_enlarging_scan.py (--threshold and --split passed on, the
originals' smallest residual, a bad --json refused first), scripts/linear_enlarging_rule.py (the train range's
bounds, the faces from --train-start, the pre-check count, the dip, item 3, the command as given),
scripts/enlarging_kernels.py and scripts/enlarged_confidence.py (the rules' bounds, each rise read from its own
row, the held-out mean, weights fitted to log2 of the factor, no output refused before any work),
scripts/input_rounding.py (--model's form, the rounded pass, the estimated-factor rows, a bad --json refused first),
scripts/flip_tta.py (the split and the checkpoint in the recorded command, the gain flip minus plain) and
scripts/factor_estimator_rounding.py (a checkpoint without estimator or config refused, the whole-grey share of the
train faces, rounding to the nearest grey level). Tiny synthetic archives in tmp_path, the shipped default models on
one thread, fakes where a refusal before any work is the point."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from _scripts import load_script
from test_mutants69c import _tiny_npz

REPO = Path(__file__).resolve().parents[1]


def _no_faces_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import fsrfer_edge.ferplus as ferplus

    monkeypatch.setattr(ferplus, "load_labelled_faces", lambda *a, **k: pytest.fail("read the faces"))


# ---------------------------------------------------------------------------------------------------------------
# scripts/lanczos_enlarging_scan.py


@pytest.fixture(scope="module")
def lanczos_doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("cv2")
    tmp = tmp_path_factory.mktemp("lanczos")
    mod = load_script("scripts/lanczos_enlarging_scan.py", "lanczos_enlarging_scan_70i")
    data = _tiny_npz(tmp / "d.npz", {"train": 2, "val": 1})
    out = tmp / "l.json"
    assert mod.main(["--data", str(data), "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_the_lanczos_scan_records_the_sdks_residual_and_dip_under_their_own_keys(lanczos_doc: dict[str, Any]) -> None:
    # kills: the residual and the dip written under each other's key
    from fsrfer_edge import preprocessing as P

    assert lanczos_doc["residual"] == P.LINEAR_ENLARGING_RESIDUAL and lanczos_doc["dip"] == P.LINEAR_ENLARGING_DIP


def test_the_lanczos_scans_ratio_is_the_residual_one_size_smaller_over_the_first_under_it(
        lanczos_doc: dict[str, Any]) -> None:
    # kills: the ratio taken upside down (the size before the first one under the residual is over it: ratio > 1)
    for kind, row in lanczos_doc["kinds"].items():
        assert row["ratio_at_first_size_under_min_max"] is not None, kind
        assert 1.0 < row["ratio_at_first_size_under_min_max"][0] <= row["ratio_at_first_size_under_min_max"][1], kind


def test_the_lanczos_scan_marks_only_crops_at_a_dip(lanczos_doc: dict[str, Any]) -> None:
    # kills: the dip's factor dropped (any fall of the residual taken for a dip)
    kinds = lanczos_doc["kinds"]
    assert kinds["lanczos"]["marked"] == kinds["lanczos"]["true_size"] == kinds["lanczos"]["crops"]
    assert kinds["bicubic"]["ratio_at_first_size_under_min_max"][1] < lanczos_doc["dip"]
    assert kinds["bicubic"]["marked"] == 0              # its residuals fall under the bound without a dip


def test_the_lanczos_scan_counts_a_crop_at_its_true_size_only_on_both_axes(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: "w == size and h == size" made "or"
    cv2 = pytest.importorskip("cv2")
    mod = load_script("scripts/lanczos_enlarging_scan.py", "lanczos_enlarging_scan_70i")
    face = np.asarray(np.load(_tiny_npz(tmp_path / "d.npz", {"train": 1}))["images"][0])
    small = cv2.resize(face, (12, 16), interpolation=cv2.INTER_AREA)          # 12 wide, 16 high
    crop = cv2.resize(small, (48, 48), interpolation=cv2.INTER_LANCZOS4).astype(np.float32)
    monkeypatch.setattr(mod, "train_crops", lambda *a: iter([("lanczos", crop, 12)]))
    out = tmp_path / "l.json"
    assert mod.main(["--data", str(tmp_path / "d.npz"), "--faces", "1", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["kinds"]["lanczos"]
    assert row["crops"] == 1 and row["marked"] == 1 and row["true_size"] == 0


@pytest.mark.parametrize("script", ["lanczos_enlarging_scan", "linear_enlarging_scan"])
def test_the_scans_refuse_a_json_path_that_is_a_folder_before_reading_the_faces(
        script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: check_output_path dropped (the scan runs and fails only when it writes)
    pytest.importorskip("cv2")
    from fsrfer_edge.errors import InputError

    mod = load_script(f"scripts/{script}.py", f"{script}_70i")
    _no_faces_read(monkeypatch)
    data = _tiny_npz(tmp_path / "d.npz", {"train": 1, "val": 1})
    with pytest.raises(InputError, match="--json"):
        mod.main(["--data", str(data), "--json", str(tmp_path)])


# ---------------------------------------------------------------------------------------------------------------
# scripts/linear_enlarging_scan.py


@pytest.fixture(scope="module")
def linear_scan() -> ModuleType:
    pytest.importorskip("cv2")
    return load_script("scripts/linear_enlarging_scan.py", "linear_enlarging_scan_70i")


def test_the_linear_scan_marks_by_the_threshold_given(linear_scan: ModuleType, tmp_path: Path) -> None:
    # kills: the threshold hard-wired at its default in the smallest size under it
    data = _tiny_npz(tmp_path / "d.npz", {"val": 2})
    out = tmp_path / "s.json"
    assert linear_scan.main(["--data", str(data), "--threshold", "1e9", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["threshold"] == 1e9 and doc["originals"]["marked_as_enlarged"] == 2   # every size is under it
    for size, row in doc["enlarged"].items():                                         # so the smallest is 6
        assert row["smallest_size_under_threshold_is_true"] == (1.0 if size == "6" else 0.0), size


def test_the_linear_scan_reads_the_split_given(linear_scan: ModuleType, tmp_path: Path) -> None:
    # kills: --split not passed on to the faces read
    data = _tiny_npz(tmp_path / "d.npz", {"val": 3, "test": 1})
    out = tmp_path / "s.json"
    assert linear_scan.main(["--data", str(data), "--split", "test", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["split"] == "test" and doc["faces"] == 1


def test_the_linear_scan_reports_the_originals_smallest_residual(linear_scan: ModuleType, tmp_path: Path) -> None:
    # kills: each original's largest residual over the sizes taken for its smallest
    import cv2

    path = _tiny_npz(tmp_path / "d.npz", {"val": 3})
    with np.load(path) as d:
        faces = np.asarray(d["images"])
    enlarged = np.stack([cv2.resize(cv2.resize(f, (12, 12), interpolation=cv2.INTER_AREA), (48, 48),
                                    interpolation=cv2.INTER_LINEAR) for f in faces])
    np.savez(path, images=enlarged, labels=np.zeros(3, np.int64), split=np.array(["val"] * 3))
    out = tmp_path / "s.json"
    assert linear_scan.main(["--data", str(path), "--json", str(out)]) == 0
    originals = json.loads(out.read_text())["originals"]
    assert originals["marked_as_enlarged"] == 3                     # each is a bilinear enlarging from 12 px
    assert max(originals["smallest_residual_percentiles_0_1_5_50"]) < 0.5


# ---------------------------------------------------------------------------------------------------------------
# scripts/linear_enlarging_rule.py


_RULE_OPTS = ["--batch", "2", "--rounds", "1", "--repeats", "1", "--threads", "1"]


def test_the_rule_takes_the_train_faces_from_the_start_given_up_to_the_last_and_records_its_findings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the range's upper bound off by one; --train-start ignored (faces 0..N-1) or not recorded; the pre-check
    # count inverted; the dip dropped; item 3 inverted; the command recorded from sys.argv instead of the arguments
    pytest.importorskip("cv2")
    pytest.importorskip("onnxruntime")
    from fsrfer_edge.ferplus import load_labelled_faces

    mod = load_script("scripts/linear_enlarging_rule.py", "linear_enlarging_rule_70i")
    data = _tiny_npz(tmp_path / "d.npz", {"train": 3, "val": 2, "test": 1})
    seen: list[np.ndarray] = []
    real = mod.train_crops

    def spy(cv2: Any, faces: np.ndarray, *a: Any) -> Any:
        seen.append(np.array(faces))
        return real(cv2, faces, *a)

    monkeypatch.setattr(mod, "train_crops", spy)
    out = tmp_path / "r.json"
    argv = ["--data", str(data), "--train-start", "1", "--train-faces", "2", *_RULE_OPTS, "--json", str(out)]
    assert mod.main(argv) == 0
    np.testing.assert_array_equal(seen[0], load_labelled_faces(data, "fer2013", "train").images[1:3])
    doc = json.loads(out.read_text())
    assert doc["command"] == "python scripts/linear_enlarging_rule.py " + " ".join(argv)
    assert doc["originals"]["reduced"] == 0 and doc["originals"]["item_3_holds"] is True
    crops = doc["train_crops"]
    assert crops["faces"] == 2 and crops["first_face"] == 1
    linear = crops["kinds"]["linear"]
    assert linear["marked"] == linear["true_size"] == linear["crops"] == 2 * 27    # each bilinear crop, 6..32 px
    assert linear["missed_by_precheck"] == 0 and crops["precheck_holds"] is True
    blur = crops["kinds"]["gaussian blur"]
    assert blur["marked"] == 0 < blur["marked_without_dip"]        # under the residual, but at no dip


@pytest.mark.parametrize("start, faces", [("0", "0"), ("-1", "2"), ("2", "2")])
def test_the_rule_refuses_a_train_range_outside_the_train_faces(tmp_path: Path, start: str, faces: str) -> None:
    # kills: --train-faces 0 let through
    pytest.importorskip("cv2")
    mod = load_script("scripts/linear_enlarging_rule.py", "linear_enlarging_rule_70i")
    data = _tiny_npz(tmp_path / "d.npz", {"train": 3, "val": 1})
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit, match="expected a range within the 3 train faces"):
        mod.main(["--data", str(data), "--train-start", start, "--train-faces", faces, *_RULE_OPTS, "--json", str(out)])
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------------
# scripts/enlarging_kernels.py and scripts/enlarged_confidence.py: the rules


@pytest.fixture(scope="module")
def kernels() -> ModuleType:
    return load_script("scripts/enlarging_kernels.py", "enlarging_kernels_70i")


def _kernel_cells(kernels: ModuleType, ways: dict[str, float], a: dict[str, float], a1: dict[str, float],
                  c1: dict[str, float]) -> dict[str, Any]:
    cells: dict[str, Any] = {w: {str(f): dict(ways) for f in kernels.FACTORS if f > 1} for w in kernels.WAYS}
    cells["a"] = {str(f): dict(a) for f in kernels.FACTORS if f > 1}
    cells["a"]["1"] = dict(a1)
    cells["c"] = {"1": dict(c1)}
    return cells


_FLAT = {"today": 1.0, "shipped": 1.0, "mixed": 1.0, "held_out": 1.0}


def test_the_kernels_rule_is_met_at_exactly_the_least_fall_and_the_most_rise(kernels: ModuleType) -> None:
    # kills: "fall >= GAIN" made ">"; "rise_a <= RISE" made "<"
    ways = {"today": 2.0, "shipped": 2.0, "mixed": 2.0 - kernels.GAIN, "held_out": 1.75}
    d = kernels.decide(_kernel_cells(kernels, ways, {"today": 0.0, "shipped": 0.0, "mixed": kernels.RISE,
                                                     "held_out": 0.0}, _FLAT, _FLAT))
    assert d["ways_mean_fall"] == kernels.GAIN and d["a_rise_x2_x8"] == kernels.RISE and d["met"] is True
    assert d["ways_mean_held_out"] == 1.75 and d["ways_mean_mixed"] == 1.5      # kills: held_out's mean from mixed


def test_the_kernels_rule_reads_the_48_px_rise_on_the_a_row_not_the_jpeg_row(kernels: ModuleType) -> None:
    # kills: rise_48px read from the (c) row
    ways = {"today": 2.0, "shipped": 2.0, "mixed": 1.0, "held_out": 1.0}
    d = kernels.decide(_kernel_cells(kernels, ways, _FLAT, {**_FLAT, "mixed": 2.0}, _FLAT))
    assert d["rise_48px"] == 1.0 and d["rise_48px_jpeg"] == 0.0 and d["met"] is False


def test_kernel_weights_are_fitted_to_log2_of_the_factor(kernels: ModuleType) -> None:
    # kills: the weights fitted to the factor itself
    ones = np.ones((3, 1))
    w = kernels.fit_weights([(ones, 2.0), (ones * 3, 8.0)])
    np.testing.assert_allclose(w, [1.0], atol=1e-9)       # log2 2 = 1 at feature 1, log2 8 = 3 at feature 3


@pytest.fixture(scope="module")
def confidence() -> ModuleType:
    return load_script("scripts/enlarged_confidence.py", "enlarged_confidence_70i")


def _conf_cells(mod: ModuleType, a1: dict[str, float], c1: dict[str, float]) -> dict[str, Any]:
    a = {str(f): {"today": 9.0, "estimate": 9.0 - mod.GAIN} for f in mod.FACTORS if f > 1}
    a["1"] = a1
    return {"a": a, "c": {"1": c1}}


def test_the_confidence_rule_allows_a_48_px_rise_of_exactly_the_bound(confidence: ModuleType) -> None:
    # kills: "rise_a <= RISE" made "<"
    d = confidence.decide(_conf_cells(confidence, {"today": 0.0, "estimate": confidence.RISE},
                                      {"today": 1.0, "estimate": 1.0}), "estimate")
    assert d["rise_48px"] == confidence.RISE and d["met"] is True


def test_the_confidence_rule_fails_a_jpeg_row_whose_error_rises(confidence: ModuleType) -> None:
    # kills: the JPEG row's rise taken the wrong way round (today minus the method)
    d = confidence.decide(_conf_cells(confidence, {"today": 1.0, "estimate": 1.0},
                                      {"today": 1.0, "estimate": 2.0}), "estimate")
    assert d["rise_48px_jpeg"] == 1.0 and d["met"] is False
    d = confidence.decide(_conf_cells(confidence, {"today": 1.0, "estimate": 1.0},
                                      {"today": 2.0, "estimate": 1.0}), "estimate")
    assert d["rise_48px_jpeg"] == -1.0 and d["met"] is True


def test_the_confidence_study_without_an_output_is_refused_before_any_model_runs(
        confidence: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # kills: the "give --json, --write-calibration or both" check dropped
    import trainer.evaluate as te

    monkeypatch.setattr(te, "onnx_logits_fn", lambda *a, **k: pytest.fail("loaded the model"))
    with pytest.raises(SystemExit) as e:
        confidence.main([])
    assert e.value.code == 2 and "give --json, --write-calibration or both" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# scripts/input_rounding.py


@pytest.fixture(scope="module")
def rounding() -> ModuleType:
    return load_script("scripts/input_rounding.py", "input_rounding_70i")


@pytest.mark.needs("torch")
def test_input_rounding_compares_float_with_rounded_inputs_at_the_true_and_the_estimated_factor(
        rounding: ModuleType, tmp_path: Path) -> None:
    # kills: the second pass given the float inputs again; the estimated-factor rows kept for models without one
    data = _tiny_npz(tmp_path / "d.npz", {"val": 3, "test": 1})
    out = tmp_path / "i.json"
    ckpt = REPO / "fsrfer_edge" / "models" / "default.pt"
    assert rounding.main(["--model", f"fsrfer={ckpt}", "--data", str(data), "--threads", "1", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["n"] == 3 and doc["split"] == "val"
    # the command as given, options and all (it named only --model and --json)
    assert doc["command"] == (f"python scripts/input_rounding.py --model fsrfer={ckpt} --data {data} --threads 1 "
                              f"--json {out}")
    row = doc["models"]["fsrfer"]
    assert set(row["true_factor"]) == {"1", "2", "3", "4", "6", "8"}
    assert any(v["kl"] > 0 for v in row["true_factor"].values())      # rounding moves the logits a little
    assert set(row["estimated_factor"]) == set(row["true_factor"])    # the shipped model has an estimator
    for v in row["estimated_factor"].values():
        assert 1.0 <= v["mean_estimated_factor"] <= 8.0 and 1.0 <= v["mean_estimated_factor_rounded"] <= 8.0


@pytest.mark.needs("torch")
def test_input_rounding_refuses_a_model_without_a_name(rounding: ModuleType, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # kills: the NAME=CHECKPOINT check made "no model at all"
    import trainer.data as td

    monkeypatch.setattr(td, "load_dataset", lambda *a, **k: pytest.fail("read the data"))
    data = _tiny_npz(tmp_path / "d.npz", {"val": 1})
    ckpt = REPO / "fsrfer_edge" / "models" / "default.pt"
    out = tmp_path / "i.json"
    assert rounding.main(["--model", f"a={ckpt}", "--model", str(ckpt), "--data", str(data), "--json", str(out)]) == 2
    assert "--model takes NAME=CHECKPOINT" in capsys.readouterr().err and not out.exists()


@pytest.mark.needs("torch")
def test_input_rounding_refuses_a_json_path_that_is_a_folder_before_reading_data(
        rounding: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: check_output_path dropped
    import trainer.data as td
    from fsrfer_edge.errors import InputError

    monkeypatch.setattr(td, "load_dataset", lambda *a, **k: pytest.fail("read the data"))
    data = _tiny_npz(tmp_path / "d.npz", {"val": 1})
    ckpt = REPO / "fsrfer_edge" / "models" / "default.pt"
    with pytest.raises(InputError, match="--json"):
        rounding.main(["--model", f"a={ckpt}", "--data", str(data), "--json", str(tmp_path)])


# ---------------------------------------------------------------------------------------------------------------
# scripts/flip_tta.py


@pytest.mark.needs("torch")
def test_flip_tta_evaluates_the_split_given_and_records_it_and_another_checkpoint_in_the_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: --split or --checkpoint left out of the recorded command; val evaluated whatever the split; the gain
    # taken as plain minus flip
    import trainer.evaluate as te
    import trainer.train as tt

    mod = load_script("scripts/flip_tta.py", "flip_tta_70i")
    g = np.random.default_rng(0)

    def part(n: int) -> SimpleNamespace:
        return SimpleNamespace(images=g.integers(0, 256, (n, 48, 48)).astype(np.uint8), labels=np.zeros(n, np.int64))

    def says(cls: int) -> Any:
        return lambda x, factor=1: np.eye(7)[np.full(len(x), cls)]

    monkeypatch.setattr(tt, "load_data", lambda cfg, path: SimpleNamespace(train=part(2), val=part(2), test=part(3)))
    monkeypatch.setattr(te, "torch_logits_fn", lambda model: says(1))     # plain: always wrong (labels are 0)
    monkeypatch.setattr(mod, "with_flip", lambda fn: says(0))            # flip: always right
    ckpt = tmp_path / "copy.pt"
    shutil.copyfile(mod.DEFAULT_CHECKPOINT, ckpt)
    out = tmp_path / "f.json"
    assert mod.main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "unread.npz"), "--split", "test",
                     "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["command"] == f"python scripts/flip_tta.py --json {out} --split test --checkpoint CHECKPOINT"
    assert doc["split"] == "test" and doc["n"] == 3
    for name in ("hr", "fsrfer"):
        row = doc["rows"][name]
        assert set(row["gain"]) == set(row["plain"]) == set(row["flip"]) == {"1", "2", "3", "4", "6", "8"}
        assert set(row["plain"].values()) == {0.0} and set(row["gain"].values()) == {100.0}


# ---------------------------------------------------------------------------------------------------------------
# scripts/factor_estimator_rounding.py


@pytest.mark.needs("torch")
@pytest.mark.parametrize("estimator, meta", [(None, {"config": {}}), (object(), {})])
def test_factor_estimator_rounding_refuses_a_checkpoint_without_an_estimator_or_a_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], estimator: Any,
        meta: dict[str, Any]) -> None:
    # kills: "no estimator or no config" made "and"
    from trainer import checkpoint

    mod = load_script("scripts/factor_estimator_rounding.py", "factor_estimator_rounding_70i")
    monkeypatch.setattr(checkpoint, "load_model",
                        lambda *a, **k: (SimpleNamespace(factor_estimator=estimator), None, {"meta": meta}))
    ckpt, data = tmp_path / "c.pt", tmp_path / "d.npz"
    ckpt.write_bytes(b"not read")
    data.write_bytes(b"not read")
    out = tmp_path / "r.json"
    assert mod.main(["--checkpoint", str(ckpt), "--data", str(data), "--out", str(out)]) == 2
    assert "has no factor estimator or no training config" in capsys.readouterr().err and not out.exists()


def _estimator_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, val_shift: float, name: str) -> dict[str, Any]:
    """factor_estimator_rounding on tiny random splits, its drawn faces made whole grey levels, val's then shifted."""
    import trainer.train as tt

    mod = load_script("scripts/factor_estimator_rounding.py", "factor_estimator_rounding_70i")
    g = np.random.default_rng(0)
    splits = SimpleNamespace(train=SimpleNamespace(images=g.integers(0, 256, (8, 48, 48)).astype(np.uint8)),
                             val=SimpleNamespace(images=g.integers(0, 256, (8, 48, 48)).astype(np.uint8)))
    monkeypatch.setattr(tt, "load_data", lambda cfg, path: splits)
    real = tt.estimator_faces

    def whole(images: np.ndarray, dcfg: Any, seed: int, split: str, n: int = 6000) -> Any:
        lr, f = real(images, dcfg, seed, split, n)
        lr = np.rint(lr)
        return (lr + val_shift if split == "val" else lr), f

    monkeypatch.setattr(tt, "estimator_faces", whole)
    data = tmp_path / "fer2013.npz"
    data.write_bytes(b"not read")
    out = tmp_path / name
    assert mod.main(["--data", str(data), "--faces", "8", "--out", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.needs("torch")
def test_factor_estimator_rounding_rounds_to_the_nearest_grey_level_and_counts_whole_train_faces(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: rounding down instead of to the nearest; the whole-grey share read on val's faces instead of train's
    whole = _estimator_run(tmp_path, monkeypatch, 0.0, "whole.json")
    shifted = _estimator_run(tmp_path, monkeypatch, -0.4, "shifted.json")   # k - 0.4 rounds back to k
    assert shifted["whole_grey_share_of_drawn_train_faces"] == 1.0
    assert shifted["per_estimator"]["shipped_rounded"] == whole["per_estimator"]["shipped"]
    assert shifted["per_estimator"]["refit_rounded"] == whole["per_estimator"]["refit_rounded"]
