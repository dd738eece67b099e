"""Tests that kill hand-made mutants (round 68, task K68d) of the INT8 experiment scripts whose result files the
README and docs/experiments.md read for the "INT8 at 3x" target: benchmarks/int8_profile.py (only the timed runs'
kernels count, averaged over the timed runs; the run count checked; parts ordered by FP32 time; the kernel
speed-up FP32 over INT8; rounds alternating the two files, each file profiled in its own process with the
settings asked for; the load average at start and end; FiLM quantized in the file made here when asked),
scripts/int8_film.py (which variant quantizes FiLM, each variant's own logits, the ratios the right way up,
the threads passed to the timer), scripts/int8_film_bound.py (what strip_film refuses to call a FiLM, the
ratios between graphs, G quantized in the files made, the timing settings passed on), scripts/int8_layout.py
(what counts as a feature map, QuantizeLinear names traced back, stem convs reading a Gather of the image,
two graphs of different checkpoints refused, profile rounds alternating, ratios after over before),
scripts/int8_sensitivity.py (compare's signs and directions, the input's grid, --out checked before the
work), scripts/int8_calibration.py (points lost FP32 minus INT8, each variant's range method) and
scripts/int8_generator.py (the worst drop and its factor). Fake timers, fake ONNX Runtime sessions, fake
quantizers and tiny hand-built ONNX graphs only; nothing is timed."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from _scripts import load_script


def _prof() -> ModuleType:
    return load_script("benchmarks/int8_profile.py", "int8_profile_68d")


def _film() -> ModuleType:
    return load_script("scripts/int8_film.py", "int8_film_68d")


def _bound() -> ModuleType:
    return load_script("scripts/int8_film_bound.py", "int8_film_bound_68d")


def _layout() -> ModuleType:
    return load_script("scripts/int8_layout.py", "int8_layout_68d")


def _sens() -> ModuleType:
    return load_script("scripts/int8_sensitivity.py", "int8_sensitivity_68d")


def _files(tmp_path: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        (tmp_path / name).write_bytes(b"not read: the work is faked")
        out.append(tmp_path / name)
    return out


def _fake_quantize(calls: dict[str, dict[str, Any]]) -> Any:
    """A stand-in for quantize_int8 that records its arguments by output file name and writes a small file."""
    def quantize(src: Path, dst: Path, calib: Any, scheme: str = "u8s8", method: str = "minmax",
                 **kwargs: Any) -> Path:
        calls[Path(dst).name] = {"src": Path(src), "calib": calib, "scheme": scheme, "method": method, **kwargs}
        Path(dst).write_bytes(b"int8")
        return Path(dst)
    return quantize


def _onehot(right: list[bool], classes: int = 3) -> np.ndarray:
    """Logits whose top-1 class is 0 (every label is 0) where ``right``, 1 elsewhere."""
    z = np.zeros((len(right), classes), np.float32)
    z[np.arange(len(right)), [0 if r else 1 for r in right]] = 1.0
    return z


# ---------------------------------------------------------------------------------------------
# benchmarks/int8_profile.py
# ---------------------------------------------------------------------------------------------
class _FakeOrt:
    """An onnxruntime stand-in: a profiled session writes one model_run event per run and one kernel event of
    (run index + 1) ms for the stem; ``extra_runs`` adds model_run events the caller did not make."""

    def __init__(self, extra_runs: int = 0) -> None:
        self.extra_runs = extra_runs
        self.fed: list[Any] = []
        outer = self

        class Session:
            def __init__(self, path: str, so: Any, providers: list[str]) -> None:
                self.profiled, self.prefix, self.runs = getattr(so, "enable_profiling", False), \
                    getattr(so, "profile_file_prefix", ""), 0

            def get_inputs(self) -> list[Any]:
                return [SimpleNamespace(name="faces", type="tensor(uint8)", shape=["N", 1, 48, 48])]

            def run(self, names: Any, feeds: dict[str, Any]) -> None:
                outer.fed.append(feeds["faces"])
                self.runs += 1

            def end_profiling(self) -> str:
                events = []
                for i in range(self.runs + outer.extra_runs):
                    events.append({"cat": "Session", "name": "model_run", "ts": 1000 * i, "dur": 900})
                    events.append({"cat": "Node", "name": "/stem/conv/Conv_kernel_time", "ts": 1000 * i + 10,
                                   "dur": 1000 * (i + 1)})
                path = Path(self.prefix + "_fake.json")
                path.write_text(json.dumps(events))
                return str(path)

        self.InferenceSession = Session
        self.SessionOptions = lambda: SimpleNamespace()


def test_profile_one_counts_only_the_timed_runs_kernels_averaged_over_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the cutoff one run early (a warm-up counted), and dividing by warm-up + timed runs
    prof = _prof()
    fake = _FakeOrt()
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    got = prof.profile_one(Path("model.onnx"), batch=3, threads=1, warmup=2, iters=3)
    assert got["kernel_ms"] == {"frozen stem": pytest.approx((3 + 4 + 5) / 3)}  # runs 3..5 of 5, 1 ms apart
    assert got["p50_ms"] >= 0 and len(fake.fed) == 2 * (2 + 3)  # timed plainly, then profiled
    assert fake.fed[0].shape == (3, 1, 48, 48) and fake.fed[0].dtype == np.uint8


def test_profile_one_refuses_a_profile_with_another_number_of_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the run-count check dropped (kernels of runs this call did not make counted silently)
    prof = _prof()
    monkeypatch.setitem(sys.modules, "onnxruntime", _FakeOrt(extra_runs=1))
    with pytest.raises(RuntimeError, match="has 6 runs; expected 5"):
        prof.profile_one(Path("model.onnx"), batch=1, threads=1, warmup=2, iters=3)


def test_profile_in_subprocess_passes_each_setting_to_its_own_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: --warmup and --iters swapped in the child's command line
    prof = _prof()
    seen: list[list[str]] = []

    def run(cmd: list[str], **kwargs: Any) -> Any:
        seen.append(cmd)
        Path(cmd[cmd.index("--out") + 1]).write_text(json.dumps({"kernel_ms": {}, "p50_ms": 1.0}))
        return SimpleNamespace(returncode=0, stderr="")

    monkeypatch.setattr(prof.subprocess, "run", run)
    assert prof.profile_in_subprocess(Path("m.onnx"), 8, 3, 4, 9) == {"kernel_ms": {}, "p50_ms": 1.0}
    cmd = seen[0]
    flags = {k: cmd[cmd.index(k) + 1] for k in ("--profile-one", "--batch", "--threads", "--warmup", "--iters")}
    assert flags == {"--profile-one": "m.onnx", "--batch": "8", "--threads": "3", "--warmup": "4", "--iters": "9"}
    assert cmd[1] == str(Path(prof.__file__).resolve())  # the script itself, in another process


def test_profile_in_subprocess_refuses_a_failed_child_even_when_it_left_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: only the missing output file taken as a failure
    prof = _prof()

    def run(cmd: list[str], **kwargs: Any) -> Any:
        Path(cmd[cmd.index("--out") + 1]).write_text("{}")
        return SimpleNamespace(returncode=1, stderr="Traceback\nMemoryError: out of memory")

    monkeypatch.setattr(prof.subprocess, "run", run)
    with pytest.raises(RuntimeError, match=r"failed \(exit 1\): MemoryError: out of memory"):
        prof.profile_in_subprocess(Path("m.onnx"), 1, 1, 1, 1)


def test_summary_orders_parts_by_fp32_time_and_gives_the_kernel_speedup_fp32_over_int8() -> None:
    # kills: parts ordered by INT8 time; the kernel speed-up inverted
    prof = _prof()
    rnd = {"fp32": {"kernel_ms": {"A": 1.0, "B": 2.0}, "p50_ms": 4.0},
           "int8": {"kernel_ms": {"A": 5.0, "B": 1.0}, "p50_ms": 2.0}}
    s = prof.summarise([rnd, rnd, rnd])
    assert [r["part"] for r in s["parts"]] == ["B", "A"]
    assert s["kernel_speedup"] == 0.5 and s["wall_speedup"] == 2.0


def test_a_part_the_int8_file_does_not_run_has_no_speedup() -> None:
    # kills: a zero INT8 time divided by (ZeroDivisionError where a part was fused away in the INT8 file)
    prof = _prof()
    rnd = {"fp32": {"kernel_ms": {"A": 2.0, "cast": 1.0}, "p50_ms": 4.0},
           "int8": {"kernel_ms": {"A": 1.0}, "p50_ms": 2.0}}
    rows = {r["part"]: r for r in prof.summarise([rnd])["parts"]}
    assert rows["cast"]["speedup"] is None and rows["cast"]["int8_ms"] == 0.0 and rows["A"]["speedup"] == 2.0


def _fake_edge_budget(made: list[dict[str, Any]]) -> SimpleNamespace:
    loads = iter([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])

    def make_int8(*args: Any, **kwargs: Any) -> dict[str, Any]:
        made.append({"args": args, **kwargs})
        return {"made_by": "test"}

    return SimpleNamespace(loadavg=lambda: next(loads), _show=str, make_int8=make_int8)


def test_profile_rounds_alternate_the_files_and_record_the_load_at_start_and_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: every round in the same order (the second file always on a warmer machine); the end load = the start's
    prof = _prof()
    model, int8 = _files(tmp_path, "m.onnx", "m.int8.onnx")
    monkeypatch.setitem(sys.modules, "edge_budget", _fake_edge_budget([]))
    order: list[str] = []

    def profile(path: Path, batch: int, threads: int, warmup: int, iters: int) -> dict[str, Any]:
        order.append(path.name)
        return {"kernel_ms": {"/stem": 2.0 if path == model else 1.0}, "p50_ms": 2.0 if path == model else 1.0}

    monkeypatch.setattr(prof, "profile_in_subprocess", profile)
    out = tmp_path / "p.json"
    assert prof.main(["--model", str(model), "--int8", str(int8), "--rounds", "3", "--out", str(out)]) == 0
    assert order == ["m.onnx", "m.int8.onnx", "m.int8.onnx", "m.onnx", "m.onnx", "m.int8.onnx"]
    doc = json.loads(out.read_text())
    assert doc["load_average"] == {"start": [1.0, 1.0, 1.0], "end": [2.0, 2.0, 2.0]}
    assert doc["kernel_speedup"] == 2.0 and doc["settings"]["rounds"] == 3


def test_the_int8_file_made_here_quantizes_film_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: --int8-quantize-film not passed on to make_int8
    prof = _prof()
    model, data = _files(tmp_path, "m.onnx", "fer2013.npz")
    made: list[dict[str, Any]] = []
    monkeypatch.setitem(sys.modules, "edge_budget", _fake_edge_budget(made))
    monkeypatch.setattr(prof, "profile_in_subprocess",
                        lambda *a: {"kernel_ms": {"/stem": 1.0}, "p50_ms": 1.0})
    out = tmp_path / "p.json"
    assert prof.main(["--model", str(model), "--data", str(data), "--int8-quantize-film", "--rounds", "1",
                      "--out", str(out)]) == 0
    assert made[0]["quantize_film"] is True and made[0]["args"][0] == model and made[0]["args"][2] == data
    assert "FiLM's ops on the maps quantized" in json.loads(out.read_text())["int8"]


# ---------------------------------------------------------------------------------------------
# scripts/int8_film.py
# ---------------------------------------------------------------------------------------------
def test_film_script_quantizes_film_in_one_variant_and_evaluates_and_times_each_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the variants' quantize_film swapped; G left in float; every variant's logits taken from the FP32
    # file; the worst factor's loss as the least; --threads not passed to the timer; ratios inverted or mixed
    film = _film()
    import fsrfer_edge.export.quantize as quantize

    model, data = _files(tmp_path, "m.onnx", "fer2013.npz")
    calls: dict[str, dict[str, Any]] = {}
    monkeypatch.setattr(quantize, "quantize_int8", _fake_quantize(calls))
    monkeypatch.setattr(film, "faces_and_calibration",
                        lambda m, d, split, tmp: (np.zeros((4, 48, 48)), np.zeros(4, np.int64), [1, 4], "CALIB"))
    wrong = {"m.onnx": {1: 0, 4: 0}, "film_float.int8-u8s8.onnx": {1: 1, 4: 0},
             "film_int8.int8-u8s8.onnx": {1: 2, 4: 1}}   # faces wrong per file and factor
    monkeypatch.setattr(film, "logits_per_factor", lambda path, images, factors, threads: {
        f: _onehot([i >= wrong[Path(path).name][f] for i in range(4)]) for f in factors})
    timed: list[tuple[Any, ...]] = []

    def measure(files: dict[str, Path], rounds: int, batch: int, threads: int, warmup: int, iters: int) -> dict[str, Any]:
        timed.append((list(files), rounds, batch, threads, warmup, iters))
        fps = [{"fp32": 100.0, "film_float": 200.0, "film_int8": 300.0},
               {"fp32": 100.0, "film_float": 250.0, "film_int8": 250.0}]
        return {"rounds": [{k: {"throughput_fps": v} for k, v in r.items()} for r in fps],
                "median_fps": {"fp32": 100.0, "film_float": 225.0, "film_int8": 275.0}}

    monkeypatch.setattr(film.edge_budget, "measure_rounds", measure)
    out = tmp_path / "film.json"
    assert film.main(["--model", str(model), "--data", str(data), "--threads", "1", "--rounds", "2",
                      "--out", str(out)]) == 0
    assert {k: (v["quantize_film"], v["quantize_generator"], v["scheme"], v["calib"]) for k, v in calls.items()} == {
        "film_float.int8-u8s8.onnx": (False, True, "u8s8", "CALIB"),
        "film_int8.int8-u8s8.onnx": (True, True, "u8s8", "CALIB")}
    assert timed == [(["fp32", "film_float", "film_int8"], 2, 64, 1, 5, 50)]
    doc = json.loads(out.read_text())
    v = doc["variants"]
    assert v["film_int8"]["film_maps"] == "int8" and v["film_float"]["film_maps"] == "float"
    assert v["film_float"]["worst_points_lost"] == 25.0 and v["film_int8"]["worst_points_lost"] == 50.0
    assert v["film_int8"]["per_factor"]["4"]["points_lost"] == 25.0
    s = doc["speed"]
    assert s["film_int8_vs_film_float_per_round"] == [1.5, 1.0]
    assert s["film_int8_vs_fp32"] == 2.75 and s["film_float_vs_fp32"] == 2.25
    assert len(doc["load_average_at_end"]) == 3


# ---------------------------------------------------------------------------------------------
# scripts/int8_film_bound.py
# ---------------------------------------------------------------------------------------------
def _film_graph(map_scope: str = "/generator/stages.0/", add_scope: str = "/generator/films.0/",
                second_reader: bool = False) -> Any:
    """x -> Relu (named under ``map_scope``) -> FiLM Mul -> Add (under ``add_scope``) -> Conv -> y; with
    ``second_reader`` the Mul's output also feeds a second graph output."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.full((1, 2, 1, 1), 2.0, np.float32), "scale"),
             numpy_helper.from_array(np.full((1, 2, 1, 1), 1.0, np.float32), "shift"),
             numpy_helper.from_array(np.ones((1, 2, 1, 1), np.float32), "w")]
    nodes = [helper.make_node("Relu", ["x"], ["r"], name=map_scope + "Relu"),
             helper.make_node("Mul", ["r", "scale"], ["m"], name="/generator/films.0/Mul_4"),
             helper.make_node("Add", ["m", "shift"], ["a"], name=add_scope + "Add_3"),
             helper.make_node("Conv", ["a", "w"], ["y"], name="/generator/stages.1/Conv")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 3, 3])]
    if second_reader:
        nodes.append(helper.make_node("Relu", ["m"], ["z"], name="/generator/stages.1/Relu"))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2, 3, 3]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
                              outputs, inits)
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.needs("onnx")
@pytest.mark.parametrize("kwargs", [{"map_scope": "/generator/films.0/"}, {"add_scope": "/generator/stages.1/"},
                                    {"second_reader": True}],
                         ids=["map-made-inside-the-film", "add-outside-the-film", "scaled-map-read-twice"])
def test_strip_film_leaves_a_mul_add_pair_that_is_not_a_film_on_a_map(kwargs: dict[str, Any]) -> None:
    # kills: each of strip_film's three checks dropped (the map's producer outside the FiLM's scope, the Add in
    # it, the Mul's only reader the Add)
    bound = _bound()
    model, removed = bound.strip_film(_film_graph())
    assert removed == 1 and [n.op_type for n in model.graph.node] == ["Relu", "Conv"]
    with pytest.raises(bound.ModelError, match="no FiLM on G's maps"):
        bound.strip_film(_film_graph(**kwargs))


@pytest.mark.needs("onnx")
def test_bound_summary_ratios_are_numerator_over_denominator_as_named() -> None:
    # kills: film_free_fp32_vs_shipped_fp32 inverted; film_free_int8_vs_shipped_int8 over the wrong file
    bound = _bound()
    fps = {"shipped_fp32": 100.0, "shipped_int8": 200.0, "film_free_fp32": 125.0, "film_free_int8": 500.0}
    s = bound.summarize({"rounds": [{k: {"throughput_fps": v} for k, v in fps.items()}], "median_fps": fps})
    assert s["film_free_fp32_vs_shipped_fp32"]["per_round"] == [1.25]
    assert s["film_free_int8_vs_shipped_int8"]["per_round"] == [2.5]
    assert s["film_free_int8_vs_fp32"]["median_of_rounds"] == 4.0 and s["bound_reaches_target"] is True


@pytest.mark.needs("onnx")
def test_bound_makes_int8_files_with_g_quantized_and_times_with_the_settings_asked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: make_int8's quantize_g not True (G left in float); --warmup and --iters swapped on their way to the timer
    import shutil

    bound = _bound()
    made: list[tuple[Any, ...]] = []

    def make_int8(fp32: Path, dst: Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        made.append(args)
        shutil.copyfile(fp32, dst)
        return {"made_by": "test"}

    monkeypatch.setattr(bound.edge_budget, "make_int8", make_int8)
    timed: list[tuple[int, int, int, int]] = []

    def timer(model: Path, batch: int, threads: int, warmup: int, iters: int) -> dict[str, Any]:
        timed.append((batch, threads, warmup, iters))
        return {"throughput_fps": 100.0, "p50_ms": 1.0, "min_ms": 1.0, "load_before": 0.1, "load_after": 0.1,
                "seconds": 0.0}

    (data,) = _files(tmp_path, "fer2013.npz")
    assert bound.main(["--data", str(data), "--rounds", "1", "--batch", "8", "--threads", "1", "--warmup", "3",
                       "--iters", "9", "--out", str(tmp_path / "b.json")], timer=timer) == 0
    assert len(made) == 2 and all(a[0] == data and a[4] is True for a in made)
    assert timed == [(8, 1, 3, 9)] * 4


# ---------------------------------------------------------------------------------------------
# scripts/int8_layout.py
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, is_map", [([2, 64, 12, 12], True), ([2, 64, 1, 12], True),
                                           ([2, 1, 48, 48], False), ([2, 64, 1, 1], False),
                                           ([2, 64, 12], False), ([None, 16, None, None], True)])
def test_layout_feature_maps_have_many_channels_and_more_than_one_pixel(shape: list[Any], is_map: bool) -> None:
    # kills: one channel counted as a map (the image); a 1 x W map taken for a per-face vector
    assert _layout()._is_map(shape) is is_map


@pytest.mark.parametrize("name, original", [("x_QuantizeLinear_Output", "x"), ("/stem/Relu_output_0_quantized",
                                                                               "/stem/Relu_output_0"), ("y", "y")])
def test_layout_traces_a_quantized_tensor_back_to_the_tensor_it_quantizes(name: str, original: str) -> None:
    # kills: the _quantized suffix forgotten
    assert _layout()._original_name(name) == original


@pytest.mark.needs("onnx")
def test_layout_finds_only_convs_reading_a_gather_of_the_image() -> None:
    # kills: a Gather of any tensor (the stem's map) counted as gathering the image
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Gather", ["faces", "idx"], ["g1"]),
             helper.make_node("Conv", ["g1", "w"], ["c1"], name="/path_a/stem/Conv"),
             helper.make_node("Conv", ["faces", "w"], ["s"], name="/stem/Conv"),
             helper.make_node("Gather", ["s", "idx"], ["g2"]),
             helper.make_node("Conv", ["g2", "w"], ["c2"], name="/path_b/layers.0/Conv")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("faces", TensorProto.FLOAT, [None, 1, 8, 8])],
                              [helper.make_tensor_value_info("c2", TensorProto.FLOAT, None)])
    assert _layout().gathered_stem_convs(helper.make_model(graph)) == ["/path_a/stem/Conv"]


def _layout_fakes(layout: ModuleType, monkeypatch: pytest.MonkeyPatch, sums: dict[str, str]) -> dict[str, Any]:
    import fsrfer_edge.export.onnx_export as onnx_export
    import fsrfer_edge.export.quantize as quantize

    seen: dict[str, Any] = {"quantized": {}, "profiled": []}
    monkeypatch.setattr(onnx_export, "read_model_info",
                        lambda p: SimpleNamespace(checkpoint_sha256=sums[Path(p).name]))
    monkeypatch.setattr(onnx_export, "load_onnx", lambda p: None)
    monkeypatch.setattr(quantize, "quantize_int8", _fake_quantize(seen["quantized"]))
    monkeypatch.setattr(layout, "faces_and_calibration",
                        lambda m, d, split, tmp: (np.zeros((2, 48, 48)), np.zeros(2, np.int64), [1], "CALIB"))
    monkeypatch.setattr(layout, "logits_per_factor", lambda p, images, factors, threads: {1: _onehot([True, True])})
    monkeypatch.setattr(layout, "optimized_transposes", lambda p, threads: [])
    monkeypatch.setattr(layout, "gathered_stem_convs", lambda m: [])
    fps = {"before_fp32": 100.0, "after_fp32": 100.0, "before_int8": 200.0, "after_int8": 300.0}
    monkeypatch.setattr(layout.edge_budget, "measure_rounds", lambda *a: {
        "rounds": [{k: {"throughput_fps": v} for k, v in fps.items()}], "median_fps": fps})

    def profile(path: Path, batch: int, threads: int, warmup: int, iters: int) -> dict[str, Any]:
        seen["profiled"].append(path.name)
        return {"kernel_ms": {"G": 4.0 if path.name.startswith("before") else 2.0, "head": 1.0}, "p50_ms": 1.0}

    monkeypatch.setattr(layout.int8_profile, "profile_in_subprocess", profile)
    return seen


def test_layout_refuses_two_graphs_of_different_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # kills: the checkpoint check dropped (two unrelated models compared as one change)
    layout = _layout()
    before, after, data = _files(tmp_path, "before.onnx", "after.onnx", "fer2013.npz")
    seen = _layout_fakes(layout, monkeypatch, {"before.onnx": "a" * 64, "after.onnx": "b" * 64})
    out = tmp_path / "layout.json"
    assert layout.main(["--before", str(before), "--model", str(after), "--data", str(data), "--out", str(out)]) == 2
    assert "exports of different checkpoints" in capsys.readouterr().err
    assert not out.exists() and seen["quantized"] == {}


def test_layout_profiles_alternate_the_int8_files_and_kernel_ratios_are_after_over_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: every profile round in one order; the per-round kernel ratio inverted
    layout = _layout()
    before, after, data = _files(tmp_path, "before.onnx", "after.onnx", "fer2013.npz")
    seen = _layout_fakes(layout, monkeypatch, {"before.onnx": "a" * 64, "after.onnx": "a" * 64})
    out = tmp_path / "layout.json"
    assert layout.main(["--before", str(before), "--model", str(after), "--data", str(data), "--rounds", "3",
                        "--threads", "1", "--out", str(out)]) == 0
    b, a = "before.int8-u8s8.onnx", "after.int8-u8s8.onnx"
    assert seen["profiled"] == [b, a, a, b, b, a]
    assert {k: v["src"].name for k, v in seen["quantized"].items()} == {b: "before.onnx", a: "after.onnx"}
    k = json.loads(out.read_text())["speed"]["kernel_ms_per_batch"]
    assert k["after_vs_before_per_round"] == [0.6] * 3 and k["median_total"] == {"before": 5.0, "after": 3.0}
    assert k["median_by_part"] == {"before": {"G": 4.0, "head": 1.0}, "after": {"G": 2.0, "head": 1.0}}


# ---------------------------------------------------------------------------------------------
# scripts/int8_sensitivity.py
# ---------------------------------------------------------------------------------------------
def test_compare_counts_points_lost_flips_and_kl_of_int8_from_fp32() -> None:
    # kills: points lost INT8 minus FP32; lost and gained swapped; KL the other way round; softmax over the batch
    sens = _sens()
    labels = np.array([0, 0, 0, 0])
    ref = np.array([[3.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [2.0, 1.0, 0.0]], np.float32)
    got = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 0.0]], np.float32)
    c = sens.compare(ref, got, labels)
    assert (c["points_lost"], c["flips"], c["lost"], c["gained"]) == (25.0, 50.0, 25.0, 0.0)

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z.astype(np.float64))
        return e / e.sum(axis=1, keepdims=True)

    p, q = softmax(ref), softmax(got)
    assert c["kl"] == pytest.approx(1000 * np.mean(np.sum(p * np.log(p / q), axis=1)), abs=1e-3)
    assert sens.compare(got, ref, labels)["points_lost"] == -25.0


@pytest.mark.needs("onnx")
def test_input_grid_reads_the_quantize_linear_of_the_graph_input(tmp_path: Path) -> None:
    # kills: the first QuantizeLinear of the graph taken, whatever it quantizes
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(0.5, np.float32), "s_map"),
             numpy_helper.from_array(np.array(7, np.uint8), "z_map"),
             numpy_helper.from_array(np.array(0.25, np.float32), "s_in"),
             numpy_helper.from_array(np.array(3, np.uint8), "z_in")]
    nodes = [helper.make_node("Relu", ["faces"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "s_map", "z_map"], ["rq"]),
             helper.make_node("QuantizeLinear", ["faces", "s_in", "z_in"], ["fq"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("faces", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("rq", TensorProto.UINT8, [1, 4]),
                               helper.make_tensor_value_info("fq", TensorProto.UINT8, [1, 4])], inits)
    onnx.save(helper.make_model(graph), str(tmp_path / "q.onnx"))
    assert _sens().input_grid(tmp_path / "q.onnx", "faces") == (0.25, 3)
    with pytest.raises(SystemExit, match="does not quantize its input 'pixels'"):
        _sens().input_grid(tmp_path / "q.onnx", "pixels")


def test_io_problem_refuses_an_output_path_that_cannot_be_written_before_the_work(tmp_path: Path) -> None:
    # a defect: files_problem returns "" (not None) when the inputs are fine, so --out was never checked and a
    # directory given as --out failed only at the end, after the hours of quantizing and evaluating
    sens = _sens()
    model, data = _files(tmp_path, "m.onnx", "fer2013.npz")
    args = sens.parser("doc", tmp_path / "out.json").parse_args(["--model", str(model), "--data", str(data),
                                                                  "--out", str(tmp_path)])
    assert "is a directory" in (sens.io_problem(args) or "")
    args.out = tmp_path / "out.json"
    assert sens.io_problem(args) is None
    args.data = tmp_path / "none.npz"
    assert "none.npz" in (sens.io_problem(args) or "")


def test_sensitivity_variants_keep_their_groups_in_float_and_round_the_input_to_all_int8s_grid(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: float_image_conv inverted; the row's keep_float not the variant's; the input grid read from another
    # variant's file; the rounded input not clipped to the 8-bit range
    sens = _sens()
    import fsrfer_edge.export.onnx_export as onnx_export
    import fsrfer_edge.export.quantize as quantize

    model, data = _files(tmp_path, "m.onnx", "fer2013.npz")
    calls: dict[str, dict[str, Any]] = {}
    monkeypatch.setattr(quantize, "quantize_int8", _fake_quantize(calls))
    monkeypatch.setattr(onnx_export, "read_model_info", lambda p: SimpleNamespace(input_name="faces"))
    monkeypatch.setattr(sens, "faces_and_calibration",
                        lambda m, d, split, tmp: (np.zeros((2, 48, 48)), np.zeros(2, np.int64), [1], "CALIB"))
    grids: list[tuple[str, str]] = []
    monkeypatch.setattr(sens, "input_grid", lambda path, name: grids.append((Path(path).name, name)) or (0.25, 3))
    rounded: list[np.ndarray] = []

    def logits(path: Path, images: Any, factors: list[int], threads: int, transform: Any = None) -> dict[int, Any]:
        if transform is not None:
            rounded.append(transform(np.array([-1.0, 0.1, 0.26, 100.0], np.float32)))
        return {1: _onehot([True, True])}

    monkeypatch.setattr(sens, "logits_per_factor", logits)
    out = tmp_path / "sens.json"
    assert sens.main(["--model", str(model), "--data", str(data), "--out", str(out)]) == 0
    assert {k.split(".")[0]: (tuple(v["keep_float"]), v["float_image_conv"]) for k, v in calls.items()} == sens.VARIANTS
    assert grids == [("all_int8.int8-u8s8.onnx", "faces")]
    np.testing.assert_array_equal(rounded[0], np.array([-0.75, 0.0, 0.25, 63.0], np.float32))  # 0..255 around 3
    rows = json.loads(out.read_text())["variants"]
    assert {k: (tuple(v["keep_float"]), v["image_conv_float"]) for k, v in rows.items()
            if k != "input_rounding_only"} == sens.VARIANTS
    assert rows["input_rounding_only"]["input_scale"] == 0.25 and rows["input_rounding_only"]["input_zero_point"] == 3


# ---------------------------------------------------------------------------------------------
# scripts/int8_calibration.py
# ---------------------------------------------------------------------------------------------
def test_calibration_variants_use_their_own_method_and_report_points_lost_fp32_minus_int8(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: points lost INT8 minus FP32; every variant calibrated with percentile ranges
    calib = load_script("scripts/int8_calibration.py", "int8_calibration_68d")
    import fsrfer_edge.export.calib as calib_mod
    import fsrfer_edge.export.onnx_export as onnx_export
    import fsrfer_edge.export.quantize as quantize
    import trainer.data

    model, data = _files(tmp_path, "m.onnx", "fer2013.npz")
    calls: dict[str, dict[str, Any]] = {}
    monkeypatch.setattr(quantize, "quantize_int8", _fake_quantize(calls))
    monkeypatch.setattr(onnx_export, "read_model_info", lambda p: "INFO")
    monkeypatch.setattr(calib_mod, "calibration_inputs", lambda train, n, factors, info: (n, tuple(factors)))
    monkeypatch.setattr(trainer.data, "load_dataset", lambda path, labels: SimpleNamespace(
        images=np.zeros((3, 48, 48), np.uint8), split=np.array(["train", "val", "train"])))

    def evaluate(path: Path, data: Path, out: Path) -> dict[str, Any]:
        acc = 0.80 if path == model else 0.78
        return {"n": 400, "factors": {"1": {"accuracy": acc}, "8": {"accuracy": acc - 0.01}}}

    monkeypatch.setattr(calib, "evaluate", evaluate)
    out = tmp_path / "calib.json"
    assert calib.main(["--model", str(model), "--data", str(data), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["variants"]
    assert rows["mix_1536_minmax"]["points_lost_per_factor"] == {"1": 2.0, "8": 2.0}
    assert {k.split(".")[0]: (v["method"], v["calib"]) for k, v in calls.items()} == {
        name: (method, (n, factors)) for name, (n, method, factors) in calib.VARIANTS.items()}


# ---------------------------------------------------------------------------------------------
# scripts/int8_generator.py
# ---------------------------------------------------------------------------------------------
def test_generator_rows_report_the_worst_drop_and_its_factor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the worst drop taken as the smallest
    gen = load_script("scripts/int8_generator.py", "int8_generator_68d")
    import fsrfer_edge
    import fsrfer_edge.bench as bench
    import fsrfer_edge.export.calib as calib_mod
    import fsrfer_edge.export.quantize as quantize
    import trainer.cli

    fp32, calib, data = _files(tmp_path, "ferplus.fp32.onnx", "faces.npz", "fer2013.npz")

    class Rec:
        def __init__(self, *a: Any, **k: Any) -> None:
            self.info = "INFO"

        def __enter__(self) -> "Rec":
            return self

        def __exit__(self, *a: Any) -> None:
            return None

    monkeypatch.setattr(fsrfer_edge, "Recognizer", Rec)
    monkeypatch.setattr(calib_mod, "load_faces", lambda p, n: np.zeros((n, 48, 48)))
    monkeypatch.setattr(calib_mod, "faces_to_pixels", lambda faces, info: faces)
    monkeypatch.setattr(calib_mod, "to_model_input", lambda x, info: x)
    monkeypatch.setattr(quantize, "quantize_int8", _fake_quantize({}))

    def eval_main(argv: list[str]) -> int:
        path = Path(argv[argv.index("--checkpoint") + 1])
        acc = {"1": 0.80, "8": 0.70} if path == fp32 else {"1": 0.79, "8": 0.67}  # x8 loses most: 3 points
        Path(argv[argv.index("--json") + 1]).write_text(json.dumps(
            {"factors": {f: {"accuracy": a} for f, a in acc.items()}, "mean_accuracy": sum(acc.values()) / 2}))
        return 0

    def bench_main(argv: list[str]) -> int:
        Path(argv[argv.index("--json") + 1]).write_text(json.dumps({"latency": [{"throughput_fps": 100.0,
                                                                                 "p50_ms": 640.0}]}))
        return 0

    monkeypatch.setattr(trainer.cli, "eval_main", eval_main)
    monkeypatch.setattr(bench, "main", bench_main)
    out = tmp_path / "gen.json"
    assert gen.main(["--fp32", str(fp32), "--calib", str(calib), "--data", str(data), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 5 and rows[0]["file"] == "fp32"
    assert all(r["val_worst_drop"] == 3.0 and r["val_worst_factor"] == "x8" for r in rows[1:])



# ---------------------------------------------------------------------------------------------
# scripts/int8_avx2.py
# ---------------------------------------------------------------------------------------------
def _avx2() -> ModuleType:
    pytest.importorskip("onnxruntime")
    return load_script("scripts/int8_avx2.py", "int8_avx2_68d")


def test_avx2_worker_runs_under_the_emulator_as_a_haswell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the emulator asked for another CPU model (one with VNNI would not show the AVX2 kernels)
    avx2 = _avx2()
    seen: list[list[str]] = []

    def run(cmd: list[str], **kwargs: Any) -> Any:
        seen.append(cmd)
        np.savez(cmd[cmd.index("--worker-out") + 1], seconds=1.5, probe=avx2.PROBE_SATURATED, x1=np.ones((2, 7)))
        return SimpleNamespace(returncode=0, stderr="")

    monkeypatch.setattr(avx2.subprocess, "run", run)
    got = avx2.run_worker(Path("m.onnx"), Path("in.npz"), tmp_path / "o.npz", 3, Path("/opt/qemu"), python="py")
    assert seen[0][:5] == ["/opt/qemu", "-cpu", "Haswell", "py", avx2.__file__]
    assert seen[0][seen[0].index("--threads") + 1] == "3" and seen[0][seen[0].index("--worker") + 1] == "m.onnx"
    assert sorted(got["logits"]) == ["x1"] and got["probe"] == avx2.PROBE_SATURATED and got["seconds"] == 1.5


def test_avx2_inputs_limit_faces_and_labels_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: --limit applied to the faces only (labels of other faces scored against them)
    avx2 = _avx2()
    import trainer.data
    import trainer.evaluate

    faces = SimpleNamespace(images=np.arange(5)[:, None, None] * np.ones((5, 4, 4)), labels=np.array([4, 3, 2, 1, 0]))
    monkeypatch.setattr(trainer.data, "load_dataset",
                        lambda path, labels: SimpleNamespace(subset=lambda split: faces))
    monkeypatch.setattr(trainer.evaluate, "protocol_inputs", lambda images, f, pre, protocol: images * f)
    labels = avx2.make_inputs(Path("d.npz"), "val", [1, 2], 2, tmp_path / "in.npz")
    assert labels.tolist() == [4, 3]
    with np.load(tmp_path / "in.npz") as z:
        assert sorted(z.files) == ["x1", "x2"] and z["x2"][:, 0, 0].tolist() == [0.0, 2.0]
