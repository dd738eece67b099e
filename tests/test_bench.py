"""fsrfer-bench on a tiny ONNX model (CPU): JSON keys, accuracy per factor, argument errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from fsrfer_edge import bench
from fsrfer_edge.errors import DataError

try:  # tests/ as a package or as a plain directory on sys.path
    from ._onnx_models import make_tiny_onnx
except ImportError:
    from _onnx_models import make_tiny_onnx  # type: ignore[no-redef]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_onnx(tmp_path_factory.mktemp("bench") / "tiny.onnx")


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    g = np.random.default_rng(0)
    path = tmp_path / "faces.npz"
    np.savez(path, images=g.integers(0, 256, (40, 48, 48), dtype=np.uint8),
             labels=np.concatenate([g.integers(0, 7, 38), [-1, -1]]).astype(np.int8),
             split=np.array(["train"] * 10 + ["test"] * 30))
    return path


def test_cli_writes_json_with_expected_keys(model: Path, data: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "bench.json"
    rc = bench.main(["--model", str(model), "--batch-sizes", "1,4,9", "--warmup", "1", "--iters", "3",
                     "--threads", "1", "--data", str(data), "--factors", "1,4", "--overhead-batch", "8",
                     "--overhead-reps", "3", "--json", str(out), "-q"])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert {"schema", "created", "model", "model_sha256", "model_info", "backend", "providers", "threads", "machine",
            "latency", "overhead", "accuracy", "max_batch"} <= set(doc)
    assert doc["backend"] == "onnxruntime" and doc["providers"] == ["CPUExecutionProvider"] and doc["threads"] == 1
    assert {"platform", "cpu_count", "python", "numpy", "onnxruntime"} <= set(doc["machine"])
    assert [r["batch_size"] for r in doc["latency"]] == [1, 4, 9]
    for r in doc["latency"]:
        assert r["iters"] == 3 and 0 < r["p50_ms"] <= r["p99_ms"] and r["throughput_fps"] > 0
    ov = doc["overhead"]
    assert ov["batch_size"] == 8 and ov["target_pct"] == 10.0 and isinstance(ov["meets_target"], bool)
    assert ov["sdk_p50_ms"] > 0 and ov["bare_p50_ms"] > 0 and "overhead_pct" in ov
    acc = doc["accuracy"]
    assert acc["split"] == "test" and acc["n"] == 28  # 30 test rows minus 2 unlabelled
    assert set(acc["per_factor"]) == {"1", "4"} and all(0.0 <= a <= 1.0 for a in acc["per_factor"].values())
    assert "faces/s" in capsys.readouterr().out
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left nothing behind


def test_accuracy_matches_direct_predictions(model: Path, data: Path) -> None:
    from fsrfer_edge import Recognizer
    from fsrfer_edge.preprocessing import degrade

    images, labels, split = bench.load_eval_data(data)
    with Recognizer(model, threads=1) as rec:
        acc = bench.measure_accuracy(rec, images, labels, factors=[3], chunk=7)
        preds = rec.predict(list(np.clip(degrade(images, 3), 0, 255)))
    assert acc["3"] == pytest.approx(np.mean([p.index for p in preds] == labels))


def test_bad_data_and_arguments(model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, pixels=np.zeros((2, 48, 48), np.uint8))
    with pytest.raises(DataError, match="lacks arrays"):
        bench.load_eval_data(bad)
    with pytest.raises(DataError, match="does not exist"):
        bench.load_eval_data(tmp_path / "missing.npz")
    rc = bench.main(["--model", str(tmp_path / "missing.onnx"), "--batch-sizes", "1", "--json", str(tmp_path / "o.json")])
    assert rc == 1
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--model", str(model), "--batch-sizes", "1,x", "--json", str(tmp_path / "o.json")])
    assert exit_info.value.code == 2
    assert bench.parse_int_list("1, 8,32") == [1, 8, 32]
