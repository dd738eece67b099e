"""Tests that kill hand-made mutants (round 70, task K70e) of the INT8 experiment scripts, second pass: the figures
their result files record beyond what round 68 pinned. scripts/int8_sensitivity.py (only the variants asked for;
FP32 accuracy per factor; the input-rounding row compared FP32 against rounded; one face's points, the file
size in MB, the load average and the command with its split; calibration from the train faces only, 512 of them;
every face batched through), scripts/int8_layout.py (the throughput ratios named as they are divided, their
median over rounds, the FP32 logit difference at its largest, the worst points lost, the Transposes on maps,
FP32 accuracy of the graph under test, the threads and rounds passed on and recorded; a missing --before
refused; a Transpose's consumers), scripts/int8_avx2.py (the probe read per run, the native run native, G
quantized in the file made, the largest logit difference, the split passed on, the command, --split and --out
checked), scripts/int8_generator.py (which file quantizes G, the calibration size asked and got, mean accuracy
in points, threads passed to the evaluation, throughput, the FER2013 archive checked), benchmarks/int8_profile.py
(a given INT8 file named, warm-up and timed runs passed on and recorded, the file made here with 512 percentile
faces, a missing --data refused, a symbolic face size taken as 48 px) and benchmarks/container_threads.py (the
quota in microseconds, a failed cgroup removed, the child's flags and last line, the 0.95 reading, the slowest
call's ratio, the first round's view from the child, the load after, the iterations and a read-only cgroup
folder). Fake quantizers, timers, sessions and subprocesses, and one tiny hand-built ONNX graph; nothing is timed."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from _scripts import load_script


def _write(tmp_path: Path, **files: str) -> list[Path]:
    """Files named by the keywords, each holding its own text (so that their checksums differ)."""
    out = []
    for name, text in files.items():
        path = tmp_path / name.replace("_", ".")
        path.write_text(text)
        out.append(path)
    return out


def _onehot(right: list[bool], classes: int = 3) -> np.ndarray:
    """Logits whose top-1 class is 0 (every label is 0) where ``right``, 1 elsewhere."""
    z = np.zeros((len(right), classes), np.float32)
    z[np.arange(len(right)), [0 if r else 1 for r in right]] = 1.0
    return z


def _fake_quantize(calls: dict[str, dict[str, Any]], size: int = 4) -> Any:
    """A stand-in for quantize_int8: records its arguments by output file name, writes ``size`` bytes."""
    def quantize(src: Path, dst: Path, calib: Any, scheme: str = "u8s8", method: str = "minmax",
                 **kwargs: Any) -> Path:
        calls[Path(dst).name] = {"src": Path(src), "calib": calib, "scheme": scheme, "method": method, **kwargs}
        Path(dst).write_bytes(b"\0" * size)
        return Path(dst)
    return quantize


T, F = True, False


# ---------------------------------------------------------------------------------------------
# scripts/int8_sensitivity.py
# ---------------------------------------------------------------------------------------------
def _sens() -> ModuleType:
    return load_script("scripts/int8_sensitivity.py", "int8_sensitivity_70e")


def test_sensitivity_runs_the_variants_asked_and_records_its_figures(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: every variant run whatever --variants says; FP32 accuracy of one factor for all; the rounding row
    # compared the wrong way round; one face's points in fractions; size in KB; one load average kept; n the
    # number of factors; the checksum of --data; --split left out of the command
    sens = _sens()
    import fsrfer_edge.export.onnx_export as onnx_export
    import fsrfer_edge.export.quantize as quantize
    from fsrfer_edge.fileio import sha256_file

    model, data = _write(tmp_path, m_onnx="the fp32 model", fer2013_npz="the faces")
    calls: dict[str, dict[str, Any]] = {}
    monkeypatch.setattr(quantize, "quantize_int8", _fake_quantize(calls, size=2**18))
    monkeypatch.setattr(onnx_export, "read_model_info", lambda p: SimpleNamespace(input_name="faces"))
    monkeypatch.setattr(sens, "faces_and_calibration",
                        lambda m, d, split, tmp: (np.zeros((4, 48, 48)), np.zeros(4, np.int64), [1, 8], "CALIB"))
    monkeypatch.setattr(sens, "input_grid", lambda path, name: (0.25, 3))
    monkeypatch.setattr(sens.os, "getloadavg", lambda: (1.5, 1.0, 0.5))

    def logits(path: Path, images: Any, factors: list[int], threads: int, transform: Any = None) -> dict[int, Any]:
        if transform is not None:  # FP32 fed the rounded input
            return {1: _onehot([F, T, T, T]), 8: _onehot([T, F, T, F])}
        if Path(path) == model:
            return {1: _onehot([T, T, T, T]), 8: _onehot([T, T, T, F])}
        return {1: _onehot([T, T, F, T]), 8: _onehot([T, T, T, F])}

    monkeypatch.setattr(sens, "logits_per_factor", logits)
    out = tmp_path / "sens.json"
    assert sens.main(["--model", str(model), "--data", str(data), "--split", "test", "--variants", "all_int8",
                      "g_refine", "--out", str(out)]) == 0
    assert sorted(calls) == ["all_int8.int8-u8s8.onnx", "g_refine.int8-u8s8.onnx"]
    doc = json.loads(out.read_text())
    assert sorted(doc["variants"]) == ["all_int8", "g_refine", "input_rounding_only"]
    assert doc["fp32_accuracy_per_factor"] == {"1": 100.0, "8": 75.0}
    rounding = doc["variants"]["input_rounding_only"]["per_factor"]
    assert rounding["1"]["points_lost"] == 25.0 and rounding["8"]["points_lost"] == 25.0  # FP32 minus rounded
    assert rounding["8"]["lost"] == 25.0 and rounding["8"]["gained"] == 0.0
    assert doc["variants"]["g_refine"]["per_factor"]["1"]["points_lost"] == 25.0
    assert doc["variants"]["g_refine"]["size_mb"] == 0.25
    assert doc["n"] == 4 and doc["one_face_points"] == 25.0
    assert doc["load_average_at_end"] == [1.5, 1.0, 0.5]
    assert doc["model_sha256"] == sha256_file(model) != sha256_file(data)
    # the command as given, options and all (a run of a subset of variants can be run again from it)
    assert doc["command"] == (f"python scripts/int8_sensitivity.py --model {model} --data {data} --split test "
                              f"--variants all_int8 g_refine --out {out}")


def test_sensitivity_calibrates_on_512_train_faces_and_evaluates_the_split_asked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: every split's faces saved as calibration faces; 256 calibration faces; the val split whatever asked
    sens = _sens()
    import fsrfer_edge.export.calib as calib_mod
    import fsrfer_edge.export.onnx_export as onnx_export
    import trainer.data
    from fsrfer_edge.preprocessing import FACTORS

    images = np.arange(3, dtype=np.uint8)[:, None, None] * np.ones((3, 2, 2), np.uint8)
    asked: list[str] = []
    part = SimpleNamespace(images=images[1:2], labels=np.array([5.0]))
    monkeypatch.setattr(trainer.data, "load_dataset", lambda path, labels: SimpleNamespace(
        images=images, split=np.array(["train", "val", "train"]), subset=lambda s: asked.append(s) or part))
    seen: dict[str, Any] = {}

    def calibration_inputs(train: Path, n: int, factors: list[int], info: Any) -> str:
        with np.load(train) as z:
            seen.update(images=z["images"], n=n, factors=factors, info=info)
        return "CALIB"

    monkeypatch.setattr(calib_mod, "calibration_inputs", calibration_inputs)
    monkeypatch.setattr(onnx_export, "read_model_info", lambda p: "INFO")
    got_images, labels, factors, calib = sens.faces_and_calibration(Path("m.onnx"), Path("d.npz"), "test", tmp_path)
    assert asked == ["test"] and got_images.tolist() == part.images.tolist()
    assert labels.dtype == np.int64 and labels.tolist() == [5]
    assert seen["images"][:, 0, 0].tolist() == [0, 2]  # the train rows only
    assert seen["n"] == 512 and seen["factors"] == factors == [int(f) for f in FACTORS] and calib == "CALIB"


def test_sensitivity_logits_cover_every_face_in_batches_of_256_after_the_transform(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the last batch dropped when it holds one face
    sens = _sens()
    import trainer.evaluate

    def protocol_inputs(images: np.ndarray, f: int, pre: str) -> np.ndarray:
        assert pre == "PRE" and len(images) <= 256
        return images.astype(np.float32) * f

    monkeypatch.setattr(trainer.evaluate, "protocol_inputs", protocol_inputs)
    monkeypatch.setattr(trainer.evaluate, "onnx_logits_fn", lambda model, threads: (lambda x, f: x[:, None], "PRE"))
    images = np.arange(257, dtype=np.float32)
    got = sens.logits_per_factor(Path("m.onnx"), images, [1, 2], 1, lambda x: x + 1000)
    assert sorted(got) == [1, 2]
    np.testing.assert_array_equal(got[2][:, 0], images * 2 + 1000)


# ---------------------------------------------------------------------------------------------
# scripts/int8_layout.py
# ---------------------------------------------------------------------------------------------
def _layout() -> ModuleType:
    return load_script("scripts/int8_layout.py", "int8_layout_70e")


def test_layout_records_ratios_as_named_and_the_figures_of_the_graph_under_test(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: per-round INT8 ratio before over after; its median taken as the largest; before_int8 over before_fp32
    # read from the after file; after/before FP32 inverted; the FP32 logit difference a mean; the worst points lost
    # the smallest; every Transpose counted as on a map; FP32 accuracy of --before; threads not passed to the
    # timer; the default --rounds written into the command; one face's points in fractions; one load average kept
    layout = _layout()
    import fsrfer_edge.export.onnx_export as onnx_export
    import fsrfer_edge.export.quantize as quantize

    before, after, data = _write(tmp_path, before_onnx="b", after_onnx="a", fer2013_npz="d")
    monkeypatch.setattr(onnx_export, "read_model_info", lambda p: SimpleNamespace(checkpoint_sha256="c" * 64))
    monkeypatch.setattr(onnx_export, "load_onnx", lambda p: None)
    monkeypatch.setattr(quantize, "quantize_int8", _fake_quantize({}))
    monkeypatch.setattr(layout, "faces_and_calibration",
                        lambda m, d, split, tmp: (np.zeros((4, 48, 48)), np.zeros(4, np.int64), [1, 8], "CALIB"))
    monkeypatch.setattr(layout, "gathered_stem_convs", lambda m: [])
    monkeypatch.setattr(layout.os, "getloadavg", lambda: (1.5, 1.0, 0.5))
    per_file = {"before.onnx": {1: [T, T, T, F], 8: [T, T, F, F]}, "after.onnx": {1: [T, T, T, T], 8: [T, T, T, F]},
                "before.int8-u8s8.onnx": {1: [T, T, T, F], 8: [T, T, F, F]},
                "after.int8-u8s8.onnx": {1: [T, T, F, T], 8: [T, T, T, F]}}
    monkeypatch.setattr(layout, "logits_per_factor", lambda p, images, factors, threads: {
        f: _onehot(per_file[Path(p).name][f]) for f in factors})
    monkeypatch.setattr(layout, "optimized_transposes", lambda p, threads: [
        {"from": "QLinearConv", "to": ["QLinearAdd"], "feature_map": True},
        {"from": "Unsqueeze", "to": ["Mul"], "feature_map": False}])
    timed: list[tuple[Any, ...]] = []
    fps = [{"before_fp32": 100.0, "after_fp32": 125.0, "before_int8": 200.0, "after_int8": a} for a in (300, 200, 240)]

    def measure_rounds(files: dict[str, Path], *settings: Any) -> dict[str, Any]:
        timed.append(settings)
        return {"rounds": [{k: {"throughput_fps": v} for k, v in r.items()} for r in fps], "median_fps": fps[2]}

    monkeypatch.setattr(layout.edge_budget, "measure_rounds", measure_rounds)
    monkeypatch.setattr(layout.int8_profile, "profile_in_subprocess",
                        lambda path, batch, threads, warmup, iters: {"kernel_ms": {"G": 1.0}, "p50_ms": 1.0})
    out = tmp_path / "layout.json"
    assert layout.main(["--before", str(before), "--model", str(after), "--data", str(data), "--split", "test",
                        "--threads", "1", "--out", str(out)]) == 0
    assert timed == [(7, 64, 1, 5, 50)]
    doc = json.loads(out.read_text())
    speed = doc["speed"]
    assert speed["after_int8_vs_before_int8_per_round"] == [1.5, 1.0, 1.2]
    assert speed["after_int8_vs_before_int8_median_of_rounds"] == 1.2
    assert speed["before_int8_vs_before_fp32"] == 2.0 and speed["after_int8_vs_after_fp32"] == 1.92
    assert speed["after_fp32_vs_before_fp32"] == 1.25 and speed["after_int8_vs_before_int8"] == 1.2
    assert doc["fp32_max_abs_logit_difference"] == 1.0
    assert doc["graphs"]["after"]["worst_points_lost"] == 25.0 and doc["graphs"]["before"]["worst_points_lost"] == 0.0
    assert doc["graphs"]["after"]["transposes"] == 2 and doc["graphs"]["after"]["transposes_on_feature_maps"] == 1
    assert doc["fp32_accuracy_per_factor"] == {"1": 100.0, "8": 75.0}  # the graph under test: --model
    assert doc["n"] == 4 and doc["one_face_points"] == 25.0 and doc["load_average_at_end"] == [1.5, 1.0, 0.5]
    assert doc["command"] == f"python scripts/int8_layout.py --before {before} --model {after} --split test --out {out}"


def test_layout_refuses_a_missing_before_graph_before_any_work(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # kills: --before not checked (the script fails later, on reading a file that is not there)
    layout = _layout()
    after, data = _write(tmp_path, after_onnx="a", fer2013_npz="d")
    out = tmp_path / "layout.json"
    assert layout.main(["--before", str(tmp_path / "none.onnx"), "--model", str(after), "--data", str(data),
                        "--out", str(out)]) == 2
    assert "none.onnx" in capsys.readouterr().err and not out.exists()


@pytest.mark.needs("onnx")
def test_layout_transposes_name_the_op_feeding_them_and_the_ops_they_feed(tmp_path: Path) -> None:
    # kills: the ops reading the Transpose's input taken for the ops it feeds
    pytest.importorskip("onnxruntime")
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("MatMul", ["t", "w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.ones((3, 2), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "t.onnx"))
    assert _layout().optimized_transposes(tmp_path / "t.onnx", 1) == [
        {"from": "Relu", "to": ["MatMul"], "feature_map": True}]


# ---------------------------------------------------------------------------------------------
# scripts/int8_avx2.py
# ---------------------------------------------------------------------------------------------
def _avx2() -> ModuleType:
    pytest.importorskip("onnxruntime")
    return load_script("scripts/int8_avx2.py", "int8_avx2_70e")


def test_avx2_measure_reads_each_runs_probe_and_runs_only_the_emulated_file_under_the_emulator(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the saturation read from the native run, exactness from the emulated one; the native INT8 run put
    # under the emulator; G left in float in the file made; the largest logit difference a mean; the val split
    # whatever --split says; the command without its options; the committed-file check inverted; the worker's
    # own timing recorded as the run's seconds
    avx2 = _avx2()
    import fsrfer_edge.bench as bench

    qemu, data = _write(tmp_path, qemu="not run", fer2013_npz="d")
    made: list[tuple[Any, ...]] = []

    def make_int8(*args: Any) -> dict[str, Any]:
        made.append(args)
        Path(args[1]).write_bytes(b"an int8 file")
        return {"made_by": "test"}

    monkeypatch.setitem(sys.modules, "edge_budget", SimpleNamespace(make_int8=make_int8))
    monkeypatch.setattr(bench, "machine_info", lambda: {"cpu": "test"})
    monkeypatch.setattr(avx2, "_qemu_version", lambda q: "qemu-x86_64 version 8.2.2")
    splits: list[str] = []
    monkeypatch.setattr(avx2, "make_inputs", lambda d, split, factors, limit, dst: splits.append(split) or np.zeros(
        4, np.int64))
    ran: list[tuple[str, Any]] = []

    def run_worker(model: Path, inputs: Path, out: Path, threads: int, qemu_: Any) -> dict[str, Any]:
        ran.append((out.name, qemu_))
        emulated = qemu_ is not None
        right = [T, T, F, T] if emulated else [T, T, T, T]
        return {"logits": {f"x{f}": _onehot(right) for f in avx2.FACTORS},
                "probe": avx2.PROBE_SATURATED if emulated else avx2.PROBE_EXACT, "seconds": 1.0, "wall_seconds": 2.0}

    monkeypatch.setattr(avx2, "run_worker", run_worker)
    out = tmp_path / "avx2.json"
    argv = ["--qemu", str(qemu), "--data", str(data), "--split", "test", "--limit", "4", "--out", str(out)]
    assert avx2.main(argv) == 0
    assert ran == [("fp32.npz", None), ("int8_native.npz", None), ("int8_emulated.npz", qemu)]
    assert made[0][2:] == (data, None, 512, "percentile", True) and splits == ["test"]
    doc = json.loads(out.read_text())
    assert doc["probe"]["emulator_saturates"] is True and doc["probe"]["host_exact"] is True
    assert doc["agreement"]["int8 emulated max |logit difference|"] == 1.0
    assert doc["files"]["int8"]["same_file_as_results/edge_budget.json"] is False  # not the committed file
    assert doc["command"] == "python scripts/int8_avx2.py " + " ".join(argv)
    assert doc["verdict"]["int8 emulated"]["worst_drop_vs_native"] == 25.0
    assert doc["seconds"] == {"fp32": 2.0, "int8 native": 2.0, "int8 emulated": 2.0}  # each process's wall clock


def test_avx2_refuses_another_split_and_an_unwritable_out_before_measuring(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # kills: --split's choices dropped (the train faces scored); --out not checked before the hour of emulation
    avx2 = _avx2()
    qemu, data = _write(tmp_path, qemu="not run", fer2013_npz="d")

    def measure(*a: Any) -> int:
        raise AssertionError("measured")

    monkeypatch.setattr(avx2, "measure", measure)
    with pytest.raises(SystemExit) as exc:
        avx2.main(["--qemu", str(qemu), "--data", str(data), "--split", "train", "--out", str(tmp_path / "o.json")])
    assert exc.value.code == 2 and "invalid choice: 'train'" in capsys.readouterr().err
    assert avx2.main(["--qemu", str(qemu), "--data", str(data), "--out", str(tmp_path)]) == 2
    assert "--out" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# scripts/int8_generator.py
# ---------------------------------------------------------------------------------------------
def _gen_fakes(gen: ModuleType, monkeypatch: pytest.MonkeyPatch, fp32: Path) -> dict[str, Any]:
    import fsrfer_edge
    import fsrfer_edge.bench as bench
    import fsrfer_edge.export.calib as calib_mod
    import fsrfer_edge.export.quantize as quantize
    import trainer.cli

    seen: dict[str, Any] = {"quantized": {}, "asked": [], "eval_threads": set()}

    class Rec:
        def __init__(self, *a: Any, **k: Any) -> None:
            self.info = "INFO"

        def __enter__(self) -> "Rec":
            return self

        def __exit__(self, *a: Any) -> None:
            return None

    monkeypatch.setattr(fsrfer_edge, "Recognizer", Rec)
    monkeypatch.setattr(calib_mod, "load_faces", lambda p, n: seen["asked"].append(n) or [np.zeros((48, 48))] * 10)
    monkeypatch.setattr(calib_mod, "faces_to_pixels", lambda faces, info: faces)
    monkeypatch.setattr(calib_mod, "to_model_input", lambda x, info: x)
    monkeypatch.setattr(quantize, "quantize_int8", _fake_quantize(seen["quantized"]))

    def eval_main(argv: list[str]) -> int:
        seen["eval_threads"].add(argv[argv.index("--threads") + 1])
        acc = {"1": 0.80, "8": 0.70} if Path(argv[argv.index("--checkpoint") + 1]) == fp32 else {"1": 0.79, "8": 0.67}
        Path(argv[argv.index("--json") + 1]).write_text(json.dumps(
            {"factors": {f: {"accuracy": a} for f, a in acc.items()}, "mean_accuracy": 0.755}))
        return 0

    def bench_main(argv: list[str]) -> int:
        Path(argv[argv.index("--json") + 1]).write_text(json.dumps({"latency": [{"throughput_fps": 123.4,
                                                                                 "p50_ms": 518.6}]}))
        return 0

    monkeypatch.setattr(trainer.cli, "eval_main", eval_main)
    monkeypatch.setattr(bench, "main", bench_main)
    return seen


def test_generator_quantizes_g_in_the_int8_rows_and_records_calibration_accuracy_and_speed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: G quantized in the "float" files; --calib-size ignored; the faces asked recorded for the faces got;
    # the mean in fractions; --threads not passed to the evaluation; the latency recorded as throughput
    gen = load_script("scripts/int8_generator.py", "int8_generator_70e")
    fp32, calib, data = _write(tmp_path, ferplus_fp32_onnx="m", faces_npz="f", fer2013_npz="d")
    seen = _gen_fakes(gen, monkeypatch, fp32)
    out = tmp_path / "gen.json"
    assert gen.main(["--fp32", str(fp32), "--calib", str(calib), "--calib-size", "64", "--data", str(data),
                     "--threads", "3", "--out", str(out)]) == 0
    assert {k: v["quantize_generator"] for k, v in seen["quantized"].items()} == {
        "u8s8.gfloat.onnx": False, "u8s8.gint8.onnx": True, "s8s8.gfloat.onnx": False, "s8s8.gint8.onnx": True}
    assert seen["asked"] == [64] and seen["eval_threads"] == {"3"}
    doc = json.loads(out.read_text())
    assert doc["calibration"]["faces"] == 10 and doc["threads"] == 3
    assert [(r["file"], r["generator"]) for r in doc["rows"]] == [
        ("fp32", "float"), ("int8-u8s8", "float"), ("int8-u8s8", "int8"), ("int8-s8s8", "float"), ("int8-s8s8", "int8")]
    row = doc["rows"][2]
    assert row["val"]["mean"] == 75.5 and row["test"]["8"] == 67.0
    assert row["faces_per_s_batch64"] == 123 and row["p50_ms_batch64"] == 518.6


def test_generator_says_a_missing_fer2013_archive_before_any_work(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: --data left out of the inputs checked
    gen = load_script("scripts/int8_generator.py", "int8_generator_70e")
    fp32, calib = _write(tmp_path, ferplus_fp32_onnx="m", faces_npz="f")
    seen = _gen_fakes(gen, monkeypatch, fp32)
    with pytest.raises(SystemExit, match=r"none\.npz is missing"):
        gen.main(["--fp32", str(fp32), "--calib", str(calib), "--data", str(tmp_path / "none.npz"),
                  "--out", str(tmp_path / "gen.json")])
    assert seen["quantized"] == {} and not (tmp_path / "gen.json").exists()


# ---------------------------------------------------------------------------------------------
# benchmarks/int8_profile.py
# ---------------------------------------------------------------------------------------------
def _prof() -> ModuleType:
    return load_script("benchmarks/int8_profile.py", "int8_profile_70e")


def _fake_edge_budget(made: list[tuple[Any, ...]]) -> SimpleNamespace:
    def make_int8(*args: Any, **kwargs: Any) -> dict[str, Any]:
        made.append(args)
        return {"made_by": "test"}

    return SimpleNamespace(loadavg=lambda: [1.0, 1.0, 1.0], _show=str, make_int8=make_int8)


def test_profile_passes_warmup_and_iterations_on_and_names_a_given_int8_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: warm-up and timed runs swapped on the way to each profile; the iterations recorded as the warm-up;
    # the thread count recorded as the CPU count
    prof = _prof()
    model, int8 = _write(tmp_path, m_onnx="m", m_int8_onnx="q")
    monkeypatch.setitem(sys.modules, "edge_budget", _fake_edge_budget([]))
    calls: list[tuple[Any, ...]] = []

    def profile(path: Path, batch: int, threads: int, warmup: int, iters: int) -> dict[str, Any]:
        calls.append((path.name, batch, threads, warmup, iters))
        return {"kernel_ms": {"/stem": 1.0}, "p50_ms": 1.0}

    monkeypatch.setattr(prof, "profile_in_subprocess", profile)
    out = tmp_path / "p.json"
    assert prof.main(["--model", str(model), "--int8", str(int8), "--rounds", "1", "--batch", "4", "--threads", "1",
                      "--warmup", "2", "--iters", "7", "--out", str(out)]) == 0
    assert calls == [("m.onnx", 4, 1, 2, 7), ("m.int8.onnx", 4, 1, 2, 7)]
    doc = json.loads(out.read_text())
    assert doc["int8"] == str(int8)
    assert (doc["settings"]["warmup"], doc["settings"]["iters"], doc["settings"]["threads"]) == (2, 7, 1)
    assert doc["cpu_count"] == os.cpu_count()


def test_profile_makes_its_int8_file_from_512_percentile_faces_and_needs_the_data_for_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: 256 calibration faces; a missing --data not refused (the calibration fails later, deep inside)
    prof = _prof()
    from fsrfer_edge.errors import DataError

    model, data = _write(tmp_path, m_onnx="m", fer2013_npz="d")
    made: list[tuple[Any, ...]] = []
    monkeypatch.setitem(sys.modules, "edge_budget", _fake_edge_budget(made))
    profiled: list[str] = []
    monkeypatch.setattr(prof, "profile_in_subprocess",
                        lambda path, *a: profiled.append(path.name) or {"kernel_ms": {"/stem": 1.0}, "p50_ms": 1.0})
    with pytest.raises(DataError, match="it calibrates the INT8 file"):
        prof.main(["--model", str(model), "--data", str(tmp_path / "none.npz"), "--out", str(tmp_path / "p.json")])
    assert made == [] and profiled == []
    assert prof.main(["--model", str(model), "--data", str(data), "--rounds", "1", "--out", str(tmp_path / "p.json")]) == 0
    assert made[0][0] == model and made[0][2:] == (data, None, 512, "percentile", None)


def test_profile_one_feeds_48_px_faces_to_a_model_of_any_face_size(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: another face size for a model whose height and width are symbolic
    prof = _prof()
    fed: list[tuple[int, ...]] = []

    class Session:
        def __init__(self, path: str, so: Any, providers: list[str]) -> None:
            self.so, self.runs = so, 0

        def get_inputs(self) -> list[Any]:
            return [SimpleNamespace(name="faces", type="tensor(uint8)", shape=["N", 1, "H", "W"])]

        def run(self, names: Any, feeds: dict[str, Any]) -> None:
            fed.append(feeds["faces"].shape)
            self.runs += 1

        def end_profiling(self) -> str:
            path = Path(self.so.profile_file_prefix + "_fake.json")
            path.write_text(json.dumps([{"cat": "Session", "name": "model_run", "ts": 10 * i} for i in range(self.runs)]))
            return str(path)

    monkeypatch.setitem(sys.modules, "onnxruntime", SimpleNamespace(InferenceSession=Session,
                                                                    SessionOptions=lambda: SimpleNamespace()))
    got = prof.profile_one(Path("m.onnx"), batch=3, threads=1, warmup=1, iters=2)
    assert set(fed) == {(3, 1, 48, 48)} and len(fed) == 6 and got["kernel_ms"] == {}


# ---------------------------------------------------------------------------------------------
# benchmarks/container_threads.py
# ---------------------------------------------------------------------------------------------
def _ct() -> ModuleType:
    return load_script("benchmarks/container_threads.py", "container_threads_70e")


def test_container_group_quota_is_in_microseconds_of_a_100_ms_period(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the quota written in milliseconds' worth of another period
    ct = _ct()
    monkeypatch.setattr(ct, "CGROUP_CPU", tmp_path)
    group = ct.make_group(0.5)
    assert group.parent == tmp_path and group.name.startswith("fsrfer-bench-")
    assert (group / "cpu.cfs_period_us").read_text() == "100000"
    assert (group / "cpu.cfs_quota_us").read_text() == "50000"


def test_container_group_is_removed_when_the_kernel_refuses_its_settings(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the group left behind when setting it up fails
    ct = _ct()

    class Refused:
        def __str__(self) -> str:
            raise OSError("write error: invalid argument")

    monkeypatch.setattr(ct, "CGROUP_CPU", tmp_path)
    monkeypatch.setattr(ct, "PERIOD_US", Refused())
    with pytest.raises(OSError, match="invalid argument"):
        ct.make_group(1.0)
    assert list(tmp_path.iterdir()) == []


def test_container_child_gets_each_iteration_count_and_its_last_line_is_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: --iters1 and --iters64 swapped; the child's first line parsed
    ct = _ct()
    seen: list[list[str]] = []

    def run(cmd: list[str], **kwargs: Any) -> Any:
        seen.append(cmd)
        return SimpleNamespace(returncode=0, stdout='onnxruntime says hello\n{"1": {"p50_ms": 2.0}}\n', stderr="")

    monkeypatch.setattr(ct.subprocess, "run", run)
    got = ct.run_child(Path("/grp"), 4, SimpleNamespace(iters1=40, iters64=6, warmup=2))
    assert got == {"1": {"p50_ms": 2.0}}
    cmd = seen[0]
    assert {k: cmd[cmd.index(k) + 1] for k in ("--child", "--child-threads", "--iters1", "--iters64", "--warmup")} == {
        "--child": "/grp", "--child-threads": "4", "--iters1": "40", "--iters64": "6", "--warmup": "2"}


def test_container_verdict_needs_every_round_under_0_95_to_call_the_new_default_higher() -> None:
    # kills: 'higher' from 1.0 instead of 0.95
    ct = _ct()
    assert ct._verdict(0.96, 0.99).startswith("within noise")
    assert ct._verdict(0.90, 0.94) == "the new default higher in every round"
    assert ct._verdict(1.06, 1.2) == "the new default lower in every round"


def _variant(p50: float, worst: float, usable: int) -> dict[str, Any]:
    return {"usable_cpus": usable, "cpu_quota": 1.0, "intra_op_threads": 1,
            **{b: {"p50_ms": p50, "min_ms": p50 / 2, "max_ms": worst} for b in ("1", "64")}}


def test_container_summary_reads_the_slowest_call_ratio_and_the_first_rounds_child() -> None:
    # kills: the slowest call's reading taken from the median call's ratio; the child's view from the last round
    ct = _ct()
    rounds = [{"round": r + 1, "loadavg_start": [0.5] * 3, "ort_default": _variant(2.0, 30.0, r + 1),
               "new_default": _variant(2.0, 10.0, r + 1)} for r in range(3)]
    s = ct.summarize(rounds, ["ort_default", "new_default"])
    assert s["max_over_new_default"]["ort_default"]["64"] == {"median_of_rounds": 3.0, "range": [3.0, 3.0]}
    assert s["reading"][0] == ("ort_default vs new_default, batch 1: median call 1.00x, within noise (the rounds "
                               "disagree or differ by under 5%); slowest call 3.00x, the new default lower in every round")
    assert s["in_the_child"]["new_default"] == {"usable_cpus": 1, "cpu_quota": 1.0, "intra_op_threads": 1}


def test_container_main_records_the_settings_the_command_and_the_load_before_and_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the load after the run recorded as the load before; the batch-64 iterations recorded as batch 1's
    ct = _ct()
    import fsrfer_edge.bench as bench

    monkeypatch.setattr(ct, "CGROUP_CPU", tmp_path)
    monkeypatch.setattr(bench, "machine_info", lambda: {"cpu": "test"})
    loads = iter([(1.0, 1.0, 1.0), (2.0, 2.0, 2.0)])
    monkeypatch.setattr(ct.os, "getloadavg", lambda: next(loads))
    monkeypatch.setattr(ct, "measure", lambda args: {"variants": {}, "quotas": {}})
    out = tmp_path / "ct.json"
    argv = ["--quotas", "1,0.5", "--iters1", "3", "--iters64", "2", "--rounds", "1", "--out", str(out)]
    assert ct.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["load_average"] == {"before": [1.0, 1.0, 1.0], "after": [2.0, 2.0, 2.0]}
    assert doc["settings"] == {"quotas": [1.0, 0.5], "rounds": 1, "warmup": 2, "iters": {"1": 3, "64": 2}}
    assert doc["command"] == "python benchmarks/container_threads.py " + " ".join(argv)


def test_container_main_needs_a_writable_cgroup_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # kills: a readable cgroup folder taken as enough (every quota's mkdir then fails mid-run)
    ct = _ct()
    monkeypatch.setattr(ct, "CGROUP_CPU", tmp_path)
    monkeypatch.setattr(ct.os, "access", lambda path, mode: mode == os.R_OK)  # a read-only cgroup mount
    monkeypatch.setattr(ct, "measure", lambda args: pytest.fail("measured"))
    assert ct.main(["--out", str(tmp_path / "ct.json")]) == 2
    assert "is not writable" in capsys.readouterr().err and not (tmp_path / "ct.json").exists()


# --- timing options refused before any work (noticed by round 70e: --rounds 0 failed only at the end) ---

@pytest.mark.parametrize("script, argv", [
    ("scripts/int8_layout.py", ["--before", "b.onnx", "--rounds", "0"]),
    ("benchmarks/int8_profile.py", ["--rounds", "0"]),
    ("benchmarks/int8_profile.py", ["--iters", "0"]),
    ("benchmarks/int8_profile.py", ["--warmup", "-1"]),
    ("benchmarks/container_threads.py", ["--rounds", "0"]),
    ("benchmarks/container_threads.py", ["--iters64", "0"]),
    ("benchmarks/container_threads.py", ["--host-threads", "0"]),
])
def test_timing_options_under_their_minimum_are_refused_before_any_work(
        script: str, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    mod = load_script(script, Path(script).stem + "_70e_rounds")
    touched: list[str] = []
    for name in ("faces_and_calibration", "edge_budget", "child", "resummarize", "profile_one"):
        if hasattr(mod, name):  # whatever the script would do first after its options
            monkeypatch.setattr(mod, name, lambda *a, _n=name, **k: touched.append(_n))
    with pytest.raises(SystemExit) as exc:
        mod.main(argv)
    assert exc.value.code == 2 and not touched
    err = capsys.readouterr().err
    flag = argv[-2]
    assert f"{flag} {argv[-1]}" in err and "expected" in err
