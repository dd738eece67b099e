"""scripts/edge_budget.py on a tiny model: JSON structure, ratios from medians, pass/fail, errors."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _onnx_models import make_tiny_onnx

from fsrfer_edge.preprocessing import resize
from _scripts import load_script

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]
ROLES = ("reference_fp32", "candidate_fp32", "candidate_int8")


eb = load_script("scripts/edge_budget.py", "edge_budget")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny FP32 model, a plain data archive (train/val/test) and the model's u8s8 file made by the script."""
    d = tmp_path_factory.mktemp("budget")
    rng = np.random.default_rng(0)
    coarse = rng.uniform(0, 255, size=(72, 6, 6)).astype(np.float32)
    images = np.clip(np.rint(resize(coarse, (48, 48))), 0, 255).astype(np.uint8)
    np.savez(d / "faces.npz", images=images, labels=rng.integers(0, 7, 72).astype(np.int8),
             split=np.array(["train"] * 40 + ["val"] * 12 + ["test"] * 20))
    model = make_tiny_onnx(d / "tiny.onnx")
    int8 = d / "tiny.int8-u8s8.onnx"
    made = eb.make_int8(model, int8, d / "faces.npz", None, 24, "minmax", False)
    assert made["check"]["passed"] and made["calibration"]["faces"] == 24
    assert made["calibration"]["film_maps"] == "float"  # a graph without FiLM has nothing to quantize there
    return {"dir": d, "data": d / "faces.npz", "model": model, "int8": int8}


def _fake_timer(fps: dict[str, float], calls: list[Path]) -> Any:
    def timer(model: Path, batch: int, threads: int, warmup: int, iters: int) -> dict[str, Any]:
        calls.append(Path(model))
        return {"throughput_fps": fps[Path(model).name], "p50_ms": 1.0, "min_ms": 1.0,
                "load_before": 0.5, "load_after": 0.5, "seconds": 0.0}
    return timer


def test_end_to_end_in_subprocesses_writes_the_documented_json(work: dict[str, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "budget.json"
    rc = eb.main(["--candidate", str(work["model"]), "--reference", str(work["model"]), "--data", str(work["data"]),
                  "--rounds", "1", "--iters", "2", "--warmup", "0", "--calib-size", "16", "--calib-method", "minmax",
                  "--factors", "1,4", "--out", str(out), "-q"])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc["command"].startswith("python scripts/edge_budget.py --candidate ")
    assert set(doc["models"]) == set(ROLES)
    assert all(len(m["sha256"]) == 64 for m in doc["models"].values())
    assert doc["models"]["candidate_fp32"]["same_file_as_reference"] is True
    assert doc["models"]["candidate_int8"]["int8_scheme"] == "u8s8"
    assert doc["models"]["candidate_int8"]["calibration"]["faces"] == 16
    (rnd,) = doc["throughput"]["rounds"]
    for role in ROLES:
        assert rnd[role]["throughput_fps"] > 0 and "load_before" in rnd[role]
    med = doc["throughput"]["median_fps"]
    ratio = doc["ratios"]["candidate_int8_vs_candidate_fp32"]["of_medians"]
    assert ratio == pytest.approx(med["candidate_int8"] / med["candidate_fp32"])
    acc = doc["accuracy"]
    assert acc["split"] == "test" and acc["n"] == 20
    assert set(acc["candidate_fp32"]) == set(acc["candidate_int8"]) == {"1", "4"}
    drop = acc["int8_drop"]["points_per_factor"]
    assert drop["4"] == pytest.approx(100 * (acc["candidate_fp32"]["4"] - acc["candidate_int8"]["4"]))
    assert [t["threshold"] for t in doc["targets"]] == [0.7, 3.0, 0.5]
    assert all(isinstance(t["passed"], bool) for t in doc["targets"])
    table = capsys.readouterr().out
    assert "candidate_int8  median" in table and "drop (points)" in table


@pytest.mark.parametrize("cand_fps, int8_fps, verdicts", [(800.0, 2000.0, [True, False]),
                                                          (600.0, 1800.0, [False, True])])
def test_ratios_come_from_the_medians_and_decide_the_targets(work: dict[str, Path], tmp_path: Path, cand_fps: float,
                                                             int8_fps: float, verdicts: list[bool]) -> None:
    cand = tmp_path / "cand.onnx"
    cand.write_bytes(work["model"].read_bytes())
    calls: list[Path] = []
    # Round 2 of the reference is an outlier; the median ignores it.
    ref_fps = iter([1000.0, 5000.0, 1000.0])
    base = _fake_timer({"cand.onnx": cand_fps, work["int8"].name: int8_fps}, calls)

    def timer(model: Path, *a: Any) -> dict[str, Any]:
        if Path(model) == work["model"]:  # timed as the candidate's stand-in, then given the reference's speed
            return {**base(cand, *a), "throughput_fps": next(ref_fps)}
        return base(model, *a)

    out = tmp_path / "b.json"
    rc = eb.main(["--candidate", str(cand), "--reference", str(work["model"]), "--candidate-int8", str(work["int8"]),
                  "--no-accuracy", "--rounds", "3", "--out", str(out), "-q"], timer=timer)
    assert rc == 0
    doc = json.loads(out.read_text())
    assert [r["order"] for r in doc["throughput"]["rounds"]] == [list(ROLES), list(ROLES[1:] + ROLES[:1]),
                                                                 list(ROLES[2:] + ROLES[:2])]
    assert len(calls) == 9
    assert doc["throughput"]["median_fps"] == {"reference_fp32": 1000.0, "candidate_fp32": cand_fps,
                                               "candidate_int8": int8_fps}
    assert doc["ratios"]["candidate_fp32_vs_reference_fp32"]["of_medians"] == pytest.approx(cand_fps / 1000.0)
    assert doc["ratios"]["candidate_int8_vs_candidate_fp32"]["of_medians"] == pytest.approx(int8_fps / cand_fps)
    assert [t["passed"] for t in doc["targets"][:2]] == verdicts
    acc_target = doc["targets"][2]
    assert acc_target["passed"] is None and acc_target["skipped"] == doc["accuracy"]["skipped"] == "--no-accuracy was given"
    assert doc["models"]["candidate_int8"]["made_by"] == "given (--candidate-int8)"


def test_rounds_also_rotate_over_files_that_are_not_edge_budget_roles(work: dict[str, Path]) -> None:
    """scripts/int8_film.py times an FP32 file and two INT8 variants with the same rounds."""
    calls: list[Path] = []
    files = {"fp32": Path("a.onnx"), "film_float": Path("b.onnx"), "film_int8": Path("c.onnx")}
    timing = eb.measure_rounds(files, 3, 64, 2, 1, 1, timer=_fake_timer({"a.onnx": 1.0, "b.onnx": 2.0, "c.onnx": 3.0}, calls))
    assert [r["order"] for r in timing["rounds"]] == [["fp32", "film_float", "film_int8"],
                                                      ["film_float", "film_int8", "fp32"],
                                                      ["film_int8", "fp32", "film_float"]]
    assert [c.name for c in calls[:3]] == ["a.onnx", "b.onnx", "c.onnx"]
    assert timing["median_fps"] == {"fp32": 1.0, "film_float": 2.0, "film_int8": 3.0}


def test_accuracy_target_uses_the_worst_factor() -> None:
    ratio = {"candidate_fp32_vs_reference_fp32": {"of_medians": 0.7},
             "candidate_int8_vs_candidate_fp32": {"of_medians": 3.0}}
    acc = {"candidate_fp32": {"1": 0.850, "2": 0.800}, "candidate_int8": {"1": 0.849, "2": 0.795}}
    drop = eb.accuracy_drop(acc)
    assert drop["worst_factor"] == "2" and drop["worst_points"] == pytest.approx(0.5)
    assert [t["passed"] for t in eb.targets(ratio, drop, None)] == [True, True, True]
    acc["candidate_int8"]["1"] = 0.8449
    worse = eb.accuracy_drop(acc)
    assert worse["worst_factor"] == "1" and eb.targets(ratio, worse, None)[2]["passed"] is False
    skipped = eb.targets(ratio, None, "no data")[2]
    assert skipped["passed"] is None and skipped["measured"] is None and skipped["skipped"] == "no data"


def test_missing_default_data_skips_accuracy_with_a_reason(work: dict[str, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eb, "DEFAULT_DATA", tmp_path / "nowhere" / "fer2013.npz")
    out = tmp_path / "b.json"
    rc = eb.main(["--candidate", str(work["model"]), "--reference", str(work["model"]), "--candidate-int8",
                  str(work["int8"]), "--rounds", "1", "--out", str(out), "-q"], timer=_fake_timer(
                      {"tiny.onnx": 100.0, work["int8"].name: 300.0}, []))
    assert rc == 0
    doc = json.loads(out.read_text())
    assert "does not exist" in doc["accuracy"]["skipped"] and doc["targets"][2]["passed"] is None
    assert [t["passed"] for t in doc["targets"][:2]] == [True, True]


@pytest.mark.parametrize("which, expect", [
    ("missing-candidate", "--candidate"), ("missing-data", "--data"), ("int8-is-fp32", "expected int8 u8s8"),
    ("candidate-is-int8", "expected fp32"), ("no-calibration", "no calibration faces"), ("bad-rounds", "--rounds 0")])
def test_errors_are_one_line_with_exit_2(work: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str], which: str, expect: str) -> None:
    monkeypatch.setattr(eb, "DEFAULT_DATA", tmp_path / "absent.npz")
    model, int8 = str(work["model"]), str(work["int8"])
    args = {"missing-candidate": ["--candidate", str(tmp_path / "nope.onnx")],
            "missing-data": ["--data", str(tmp_path / "nope.npz")],
            "int8-is-fp32": ["--candidate-int8", model],
            "candidate-is-int8": ["--candidate", int8],
            "no-calibration": [],
            "bad-rounds": ["--rounds", "0"]}[which]
    if "--candidate" not in args:
        args += ["--candidate", model]
    out = tmp_path / "b.json"
    rc = eb.main(args + ["--reference", model, "--out", str(out), "-q"],
                 timer=_fake_timer({}, []))  # never reached
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists()
    assert err.startswith("edge_budget: error: ") and expect in err and "\n" not in err


def test_no_accuracy_is_the_reason_given_with_or_without_the_default_data(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """--no-accuracy is the user's own reason whether or not the default data file exists (a checkout without
    ../shared/data was told "no data" instead, and the test above failed there)."""
    for present in (True, False):
        default = tmp_path / ("fer2013.npz" if present else "missing.npz")
        if present:
            default.write_bytes(b"x")
        monkeypatch.setattr(eb, "DEFAULT_DATA", default)
        assert eb.resolve_data(None, True)[1] == "--no-accuracy was given"
    assert eb.resolve_data(None, False) == (None, f"no data: the default {eb._show(default)} does not exist "
                                                  "(pass --data NPZ)")
