"""scripts/int8_film_bound.py: FiLM is cut out of G's maps and nothing else changes; the ratios it reports."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests._scripts import load_script

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

bound = load_script("scripts/int8_film_bound.py", "int8_film_bound")
DEFAULT = Path(__file__).resolve().parents[1] / "fsrfer_edge" / "models" / "default.onnx"


def film_graph(add_op: str = "Add") -> Any:
    """x -> Relu -> FiLM (scale and shift from the factor through a Gemm) -> 1x1 Conv -> y."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(1, 4)).astype(np.float32), "film_w"),
             numpy_helper.from_array(rng.normal(size=(4,)).astype(np.float32), "film_b"),
             numpy_helper.from_array(np.array([1, 2, 1, 1], np.int64), "shape"),
             numpy_helper.from_array(np.array([0], np.int64), "s0"),
             numpy_helper.from_array(np.array([2], np.int64), "s2"),
             numpy_helper.from_array(np.array([4], np.int64), "s4"),
             numpy_helper.from_array(np.array([1], np.int64), "ax"),
             numpy_helper.from_array(np.array([[[[1.0]], [[-2.0]]]], np.float32), "conv_w")]
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="/generator/stages.0/Relu_1"),
             helper.make_node("Gemm", ["f", "film_w", "film_b"], ["p"], name="/generator/films.0/net/Gemm"),
             helper.make_node("Slice", ["p", "s0", "s2", "ax"], ["g0"], name="/generator/films.0/Slice"),
             helper.make_node("Slice", ["p", "s2", "s4", "ax"], ["b0"], name="/generator/films.0/Slice_1"),
             helper.make_node("Reshape", ["g0", "shape"], ["g"], name="/generator/films.0/Reshape"),
             helper.make_node("Reshape", ["b0", "shape"], ["b"], name="/generator/films.0/Reshape_1"),
             helper.make_node("Mul", ["r", "g"], ["m"], name="/generator/films.0/Mul_4"),
             helper.make_node(add_op, ["m", "b"], ["a"], name="/generator/films.0/Add_3"),
             helper.make_node("Conv", ["a", "conv_w"], ["y"], name="/generator/stages.1/Conv")]
    graph = helper.make_graph(nodes, "film", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3]),
                                              helper.make_tensor_value_info("f", TensorProto.FLOAT, [1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 3, 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: Any, feeds: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def test_film_is_cut_out_and_only_what_it_read_is_dropped() -> None:
    x = np.random.default_rng(1).normal(size=(1, 2, 3, 3)).astype(np.float32)
    model, removed = bound.strip_film(film_graph())
    assert removed == 1
    assert [n.op_type for n in model.graph.node] == ["Relu", "Conv"]
    assert {t.name for t in model.graph.initializer} == {"conv_w"}
    r = np.maximum(x, 0)
    np.testing.assert_allclose(run(model, {"x": x, "f": np.ones((1, 1), np.float32)}), r[:, :1] - 2 * r[:, 1:2],
                               rtol=1e-6)


def test_a_graph_without_film_is_refused_with_what_was_expected() -> None:
    with pytest.raises(bound.ModelError, match="no FiLM on G's maps"):
        bound.strip_film(film_graph(add_op="Sub"))


def test_the_shipped_graph_loses_its_six_films_and_keeps_its_interface() -> None:
    original = onnx.load(str(DEFAULT))
    model, removed = bound.strip_film(onnx.load(str(DEFAULT)))
    assert removed == 6
    assert not [n.name for n in model.graph.node if n.name.startswith("/generator/films.")]
    assert any(n.name.startswith("/factor_estimator/") for n in model.graph.node)   # the route still reads it
    assert [(v.name, str(v.type)) for v in model.graph.input] == [(v.name, str(v.type)) for v in original.graph.input]
    assert [(v.name, str(v.type)) for v in model.graph.output] == [(v.name, str(v.type)) for v in original.graph.output]
    produced = {o for n in model.graph.node for o in n.output}
    assert {v.name for v in model.graph.value_info} <= produced       # no shapes left for removed tensors
    faces = np.random.default_rng(0).integers(0, 256, (4, 1, 48, 48)).astype(np.float32)
    out = run(model, {"faces": faces})
    assert out.shape == (4, 7) and np.isfinite(out).all()


class FakeTimer:
    """Throughput per file name, each INT8 file at its own speed-up over its FP32 file in each round in turn."""

    def __init__(self, int8_speedups: dict[str, list[float]]) -> None:
        self.speedups, self.calls = int8_speedups, 0

    def __call__(self, model: Path, batch: int, threads: int, warmup: int, iters: int) -> dict[str, Any]:
        key = model.name.split(".")[0].replace("default", "shipped")
        rnd = self.calls // (2 * (len(self.speedups)))
        self.calls += 1
        fps = 1000.0 * (self.speedups[key][rnd] if "int8" in model.name else 1.0)
        return {"throughput_fps": fps, "p50_ms": 1.0, "min_ms": 1.0, "load_before": 0.1, "load_after": 0.1,
                "seconds": 0.0}


def fake_timer(model: Path, batch: int, threads: int, warmup: int, iters: int) -> dict[str, Any]:
    return FakeTimer({"shipped": [2.5], "film_free": [2.7]})(model, batch, threads, warmup, iters)


def copy_int8(fp32: Path, dst: Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
    shutil.copyfile(fp32, dst)
    return {"made_by": "a copy (test)", "check": {"passed": True}}


@pytest.mark.parametrize("film_free, median, reaches", [([2.0, 3.5, 2.6], 2.6, False), ([3.1, 2.9, 3.0], 3.0, True)])
def test_main_reports_the_median_of_the_per_round_ratios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          film_free: list[float], median: float, reaches: bool) -> None:
    monkeypatch.setattr(bound.edge_budget, "make_int8", copy_int8)
    data = tmp_path / "fer2013.npz"
    data.write_bytes(b"")
    out = tmp_path / "bound.json"
    timer = FakeTimer({"shipped": [2.5, 2.4, 1.0], "film_free": film_free})
    assert bound.main(["--data", str(data), "--rounds", "3", "--note", "a note", "--out", str(out)], timer=timer) == 0
    assert timer.calls == 12
    doc = json.loads(out.read_text())
    assert doc["films_removed"] == 6 and doc["nodes"]["film_free_fp32"] < doc["nodes"]["shipped_fp32"]
    r = doc["ratios"]
    assert r["shipped_int8_vs_fp32"]["median_of_rounds"] == 2.4
    assert r["film_free_int8_vs_fp32"]["median_of_rounds"] == median
    assert sorted(r["film_free_int8_vs_fp32"]["per_round"]) == sorted(film_free)
    assert r["bound_reaches_target"] is reaches and r["target"] == 3.0
    assert len(doc["throughput"]["rounds"]) == 3 and doc["note"] == "a note"
    assert "plain_int8_vs_fp32" not in r and doc["plain"] is None
    assert doc["int8"]["shipped_int8"]["check"] == {"passed": True}
    assert set(doc["machine"].get("cpu_int8_features", [])) <= bound_features()


def bound_features() -> set[str]:
    from fsrfer_edge.bench import INT8_CPU_FEATURES
    return set(INT8_CPU_FEATURES)


def test_a_plain_network_is_timed_beside_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []

    def record(fp32: Path, dst: Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        made.append(dst.name)
        return copy_int8(fp32, dst)

    monkeypatch.setattr(bound.edge_budget, "make_int8", record)
    data = tmp_path / "fer2013.npz"
    data.write_bytes(b"")
    plain = tmp_path / "plain.fp32.onnx"
    shutil.copyfile(DEFAULT, plain)
    out = tmp_path / "bound.json"
    timer = FakeTimer({"shipped": [2.5, 2.5], "film_free": [2.7, 2.7], "plain": [2.0, 2.2]})
    assert bound.main(["--data", str(data), "--plain", str(plain), "--rounds", "2", "--out", str(out)],
                      timer=timer) == 0
    doc = json.loads(out.read_text())
    assert sorted(made) == ["film_free.int8-u8s8.onnx", "plain.int8-u8s8.onnx", "shipped.int8-u8s8.onnx"]
    assert sorted(doc["ratios"]["plain_int8_vs_fp32"]["per_round"]) == [2.0, 2.2]
    assert doc["plain"]["precision"] == "fp32" and len(doc["throughput"]["median_fps"]) == 6
    from fsrfer_edge.export.onnx_export import read_model_info
    assert doc["plain"]["checkpoint_sha256"] == read_model_info(DEFAULT).checkpoint_sha256 != ""


@pytest.mark.parametrize("flag", ["--rounds", "--iters", "--batch", "--threads"])
def test_timing_options_under_one_are_refused_before_anything_is_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    monkeypatch.setattr(bound.edge_budget, "make_int8", lambda *a, **k: pytest.fail("made an INT8 file"))
    data = tmp_path / "fer2013.npz"
    data.write_bytes(b"")
    assert bound.main(["--data", str(data), flag, "0", "--out", str(tmp_path / "b.json")], timer=fake_timer) == 2
    assert "expected rounds, iters, batch, threads >= 1" in capsys.readouterr().err


def test_missing_data_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bound.main(["--data", str(tmp_path / "none.npz"), "--out", str(tmp_path / "b.json")],
                      timer=fake_timer) == 2
    assert "expected fer2013.npz" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()
