"""TensorRT engine building (marker ``gpu``): one engine per TensorRT-ready file, cache reuse,
rebuild of stale engines, refusal of the u8s8 INT8 file.

Skips by itself where TensorRT or a CUDA binding is absent (``tensorrt-stubs`` alone makes
``import tensorrt`` succeed as an empty package, so ``importorskip`` is not enough).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (build engines on the GPU/Jetson)")
if not hasattr(trt, "Builder"):
    pytest.skip("only TensorRT type stubs are installed, not TensorRT", allow_module_level=True)
pytest.importorskip("torch")
pytest.importorskip("onnxsim")

from fsrfer_edge import engine_cache  # noqa: E402
from fsrfer_edge.errors import BackendUnavailable, EngineError, ModelError  # noqa: E402
from fsrfer_edge.export import cli, engine  # noqa: E402
from fsrfer_edge.preprocessing import Preprocessing, resize  # noqa: E402


@pytest.fixture(scope="module")
def cc() -> str:
    try:
        return engine.compute_capability(0)
    except (BackendUnavailable, EngineError) as exc:
        pytest.skip(f"no usable CUDA device or binding: {exc}")


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from trainer import checkpoint
    from trainer.models import InferenceModel

    d = tmp_path_factory.mktemp("trt")
    torch.manual_seed(0)
    spec = {"method": "fsrfer", "backbone": "tiny"}
    model = InferenceModel(spec).eval()
    with torch.no_grad():  # spread the logits so INT8 top-1 checks do not hinge on near-ties
        model.fer.head.fc2.weight.mul_(20.0)
    checkpoint.save(d / "tiny.pt", checkpoint.model_payload(model, spec, Preprocessing(), {}))
    coarse = np.random.default_rng(0).uniform(0, 255, size=(64, 6, 6)).astype(np.float32)
    np.savez(d / "faces.npz", images=np.clip(resize(coarse, (48, 48)), 0, 255).astype(np.uint8))
    assert cli.main([str(d / "tiny.pt"), "--out-dir", str(d), "--fp16", "--int8", "--calib", str(d / "faces.npz"),
                     "--calib-size", "32", "-q"]) == 0
    return d


@pytest.mark.parametrize("variant,precision", [("fp32", "fp32"), ("fp16", "fp16"), ("int8-s8s8", "int8")])
def test_build_each_variant(onnx_dir: Path, tmp_path: Path, cc: str, variant: str, precision: str) -> None:
    src = onnx_dir / f"tiny.{variant}.onnx"
    out = engine.build_engine(src, tmp_path, min_batch=1, opt_batch=8, max_batch=16)
    gpu = engine.gpu_identity(0)
    key = engine_cache.EngineKey(trt.__version__, cc, precision, 1, 8, 16, gpu.key)
    assert out == tmp_path / key.filename("tiny", engine_cache.sha256_file(src))
    doc = engine_cache.check_engine(out, trt.__version__, cc, src, device=gpu.key)
    assert "-TF32" in doc["builder_flags"] if precision == "fp32" else "-TF32" not in doc["builder_flags"]
    assert doc["model_info"].precision == precision
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    assert runtime.deserialize_cuda_engine(out.read_bytes()) is not None


def test_cache_reuse_and_rebuild(onnx_dir: Path, tmp_path: Path, cc: str, caplog: pytest.LogCaptureFixture) -> None:
    src = onnx_dir / "tiny.fp32.onnx"
    cache = tmp_path / "timing.cache"
    out = engine.build_engine(src, tmp_path, 1, 4, 8, timing_cache=cache)
    assert cache.is_file() and cache.stat().st_size > 0
    mtime = out.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="fsrfer_edge.export.engine"):
        assert engine.build_engine(src, tmp_path, 1, 4, 8, timing_cache=cache) == out
    assert "cached" in caplog.text and out.stat().st_mtime_ns == mtime
    # A corrupted engine no longer matches its sidecar: rebuilt, not reused.
    out.write_bytes(out.read_bytes()[:-16])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fsrfer_edge.export.engine"):
        engine.build_engine(src, tmp_path, 1, 4, 8)
    assert "rebuilding" in caplog.text
    engine_cache.check_engine(out, trt.__version__, cc, src)


def test_u8s8_refused(onnx_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="s8s8"):
        engine.build_engine(onnx_dir / "tiny.int8-u8s8.onnx", tmp_path)
    assert not list(tmp_path.iterdir())


def test_cli_engine_from_onnx(onnx_dir: Path, tmp_path: Path, cc: str) -> None:
    assert cli.main([str(onnx_dir / "tiny.int8-s8s8.onnx"), "--engine", "--out-dir", str(tmp_path),
                     "--opt-batch", "8", "--max-batch", "16", "-q"]) == 0
    assert len(list(tmp_path.glob("tiny.int8.*.engine"))) == 1
