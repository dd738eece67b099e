"""benchmarks/int8_profile.py: node names map to the graph's parts, only kernel events of the timed runs
count, medians and speed-ups per part, and the script end to end on a tiny model."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _onnx_models import make_tiny_onnx
from _scripts import load_script

REPO = Path(__file__).resolve().parents[1]
prof = load_script("benchmarks/int8_profile.py", "int8_profile")


@pytest.mark.parametrize("name,part", [
    ("/generator/films.3/Mul_4", "FiLM (float)"),
    ("/generator/films.0/Add_3_output_0_QuantizeLinear", "FiLM (float)"),
    ("/generator/stages.2/conv1/Conv_quant", "G: copied stages"),
    ("/generator/refine/blocks.0/conv/Conv", "G: dense block"),
    ("/factor_estimator/Conv", "factor estimator (float)"),
    ("/stem/conv/Conv", "frozen stem"),
    ("/layers.7/conv2/Conv", "frozen stages above G"),
    ("fused /head/fc1/Gemm", "pool and head"),
    ("/model/model/generator/films.1/Mul", "FiLM (float)"),  # a uint8-input or flipped graph wraps the model
    ("fused /model/stem/conv/Conv", "frozen stem"),
    ("ReorderOutput", prof.OTHER),
])
def test_node_names_map_to_parts(name: str, part: str) -> None:
    assert prof.part_of(name) == part


def test_aggregate_counts_kernel_events_only_and_averages_over_runs() -> None:
    events = [
        {"cat": "Node", "name": "/stem/conv/Conv_kernel_time", "dur": 3000},
        {"cat": "Node", "name": "/stem/conv/Conv_kernel_time", "dur": 1000},
        {"cat": "Node", "name": "/stem/conv/Conv_fence_before", "dur": 99999},
        {"cat": "Session", "name": "model_run", "dur": 99999},
        {"cat": "Node", "name": "/generator/films.0/Mul_kernel_time", "dur": 500},
    ]
    assert prof.aggregate(events, runs=2) == {"frozen stem": 2.0, "FiLM (float)": 0.25}


def test_summary_takes_medians_over_rounds_and_speedups_per_part() -> None:
    def rnd(fp32_g: float, int8_g: float, int8_film: float, p50: tuple[float, float]) -> dict[str, Any]:
        return {"fp32": {"kernel_ms": {"G": fp32_g, "FiLM": 1.0}, "p50_ms": p50[0]},
                "int8": {"kernel_ms": {"G": int8_g, "FiLM": int8_film}, "p50_ms": p50[1]}}

    s = prof.summarise([rnd(40, 10, 4, (50, 20)), rnd(30, 10, 2, (40, 20)), rnd(100, 50, 2, (60, 10))])
    rows = {r["part"]: r for r in s["parts"]}
    assert [r["part"] for r in s["parts"]] == ["G", "FiLM"]  # by FP32 time, largest first
    assert rows["G"]["fp32_ms"] == 40 and rows["G"]["int8_ms"] == 10 and rows["G"]["speedup"] == 4.0
    assert rows["FiLM"]["speedup"] == 0.5  # slower in the INT8 file: the case the script exists to show
    assert s["kernel_ms_total"] == {"fp32": 41.0, "int8": 12.0}
    assert rows["G"]["int8_share"] == pytest.approx(10 / 12, abs=1e-4)
    assert s["wall_speedup"] == 2.5


def test_end_to_end_on_a_tiny_model(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    model = make_tiny_onnx(tmp_path / "tiny.onnx")
    out = tmp_path / "profile.json"
    assert prof.main(["--model", str(model), "--int8", str(model), "--iters", "3", "--warmup", "2",
                      "--rounds", "1", "--threads", "1", "--batch", "4", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["settings"]["rounds"] == 1 and doc["load_average"]["start"] is not None
    assert sum(r["fp32_share"] for r in doc["parts"]) == pytest.approx(1.0, abs=1e-3)
    assert doc["kernel_ms_total"]["fp32"] > 0 and doc["wall_p50_ms"]["int8"] > 0


@pytest.mark.needs("onnx")
def test_a_model_named_relative_to_the_working_directory_is_recorded_relative_to_the_repository(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(prof.REPO / "fsrfer_edge")
    out = tmp_path / "profile.json"
    assert prof.main(["--model", "models/default.onnx", "--int8", "models/default.onnx", "--iters", "1",
                      "--warmup", "1", "--rounds", "1", "--threads", "1", "--batch", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["model"] == "fsrfer_edge/models/default.onnx"


def test_missing_files_are_clear_errors(tmp_path: Path) -> None:
    from fsrfer_edge.errors import ModelError

    with pytest.raises(ModelError, match="expected an FP32 fsrfer ONNX file"):
        prof.main(["--model", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "p.json")])
    model = make_tiny_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(ModelError, match="INT8 u8s8"):
        prof.main(["--model", str(model), "--int8", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "p.json")])
    assert not (tmp_path / "p.json").exists()
