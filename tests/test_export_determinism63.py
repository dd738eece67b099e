"""fsrfer-export is reproducible: the same checkpoint exported twice (same options, same machine) gives
byte-identical ONNX files (FP32, FP16, INT8 s8s8 and u8s8) and sidecars, whatever the Python hash seed or the
checkpoint's path; the report differs only in timings and paths. TensorRT engines are cached by the ONNX file's
SHA-256 (:mod:`fsrfer_edge.engine_cache`), so a re-export that changed a byte would force a rebuild on every device.

A re-export over an existing output folder replaces the files (new inodes and mtimes) with the same bytes.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxsim")

from fsrfer_edge.export import cli  # noqa: E402
from fsrfer_edge.preprocessing import Preprocessing, resize  # noqa: E402

#: Report fields that may differ between two exports of one checkpoint: a timing and the paths of the run.
REPORT_MAY_DIFFER = {"calibration.seconds", "options.out_dir", "options.source", "source", "report"}
#: Files every export below writes.
FILES = ("m.fp32.onnx", "m.fp16.onnx", "m.int8-s8s8.onnx", "m.int8-u8s8.onnx", "m.scores.json", "m.report.json")


def _argv(checkpoint: Path, out: Path, data: Path) -> list[str]:
    return [str(checkpoint), "--out-dir", str(out), "--name", "m", "--fp16", "--int8", "--calib", str(data),
            "--calib-size", "48", "--eval-data", str(data), "--max-int8-drop", "100", "-q"]


def _diff_paths(a: Any, b: Any, prefix: str = "") -> set[str]:
    """The dotted paths at which two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: set[str] = set()
        for key in set(a) | set(b):
            path = f"{prefix}.{key}" if prefix else str(key)
            out |= _diff_paths(a.get(key), b.get(key), path) if key in a and key in b else {path}
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = set()
        for i, (x, y) in enumerate(zip(a, b)):
            out |= _diff_paths(x, y, f"{prefix}[{i}]")
        return out
    return set() if a == b else {prefix}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer import checkpoint
    from trainer.models import InferenceModel

    d = tmp_path_factory.mktemp("determinism")
    torch.manual_seed(0)
    spec = {"method": "fsrfer", "backbone": "tiny"}
    model = InferenceModel(spec).eval()
    with torch.no_grad():
        model.fer.head.fc2.weight.mul_(20.0)
    checkpoint.save(d / "tiny.pt", checkpoint.model_payload(model, spec, Preprocessing(), {"note": "test"}))
    rng = np.random.default_rng(1)
    coarse = rng.uniform(0, 255, size=(96, 6, 6)).astype(np.float32)
    images = np.clip(np.rint(resize(coarse, (48, 48))), 0, 255).astype(np.uint8)
    np.savez(d / "faces.npz", images=images, labels=rng.integers(0, 7, 96).astype(np.int8),
             split=np.array(["train"] * 64 + ["val"] * 32))
    assert cli.main(_argv(d / "tiny.pt", d / "a", d / "faces.npz")) == 0
    return d


def test_two_exports_give_identical_files(work: Path) -> None:
    """The second export runs in another process with another hash seed (set and dict orders of strings differ),
    from a copy of the checkpoint under another name and folder."""
    other = work / "elsewhere"
    other.mkdir()
    shutil.copyfile(work / "tiny.pt", other / "copy.pt")
    code = "import sys; from fsrfer_edge.export import cli; sys.exit(cli.main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run([sys.executable, "-c", code, *_argv(other / "copy.pt", work / "b", work / "faces.npz")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    a, b = work / "a", work / "b"
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir()) == sorted(FILES)
    differ = [n for n in FILES if n != "m.report.json" and (a / n).read_bytes() != (b / n).read_bytes()]
    assert differ == []
    ra, rb = (json.loads((d / "m.report.json").read_text()) for d in (a, b))
    assert _diff_paths(ra, rb) <= REPORT_MAY_DIFFER
    assert ra["files"] == rb["files"]  # each file's SHA-256, size and model info


def test_reexport_over_folder_keeps_bytes(work: Path) -> None:
    """A re-export into the same folder replaces each file with the same bytes (only the mtimes change); the
    report names no stale file and differs at most in its timing."""
    a = work / "a"
    before = {n: (a / n).read_bytes() for n in FILES}
    report = json.loads(before["m.report.json"])
    assert cli.main(_argv(work / "tiny.pt", a, work / "faces.npz")) == 0
    after = {n: (a / n).read_bytes() for n in FILES}
    assert [n for n in FILES if n != "m.report.json" and before[n] != after[n]] == []
    again = json.loads(after["m.report.json"])
    assert "stale_files" not in again
    assert _diff_paths(report, again) <= {"calibration.seconds"}
