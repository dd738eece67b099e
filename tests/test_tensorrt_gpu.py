"""TensorRT and CUDA on a real GPU (marker ``gpu``); every test skips with a reason elsewhere.

- CUDA memory roundtrip for each memory layer (cuda-python, pycuda);
- engine build from a tiny ONNX model, then TensorRT output vs ONNX Runtime output; the same for a
  routed graph whose batches leave one path empty;
- fsrfer-bench on the engine named by ``FSRFER_TEST_ENGINE`` against ``benchmarks/thresholds.json``
  (accuracy drop too, when ``FSRFER_TEST_ONNX`` and ``FSRFER_TEST_DATA`` are set).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.engine_cache import EngineKey, read_sidecar
from fsrfer_edge.errors import BackendUnavailable, EngineError

pytestmark = pytest.mark.gpu

THRESHOLDS = Path(__file__).resolve().parents[1] / "benchmarks" / "thresholds.json"


def _tensorrt() -> Any:
    from fsrfer_edge.backends.tensorrt_backend import import_tensorrt

    try:
        return import_tensorrt()
    except BackendUnavailable as exc:
        pytest.skip(f"TensorRT is not installed: {exc}")


def _memory(name: str) -> Any:
    from fsrfer_edge.backends.cuda_memory import select_memory

    try:
        return select_memory(name)
    except BackendUnavailable as exc:
        pytest.skip(f"CUDA memory layer {name!r} is not available: {exc}")
    except EngineError as exc:
        pytest.skip(f"no usable CUDA device for {name!r}: {exc}")


@pytest.mark.parametrize("name", ["cuda-python", "pycuda"])
def test_cuda_memory_roundtrip(name: str) -> None:
    mem = _memory(name)
    try:
        cc = mem.device_compute_capability()
        assert cc.count(".") == 1 and all(p.isdigit() for p in cc.split("."))
        with mem.context():
            host = mem.alloc_host((64, 1, 48, 48), np.float32)
            back = mem.alloc_host((64, 1, 48, 48), np.float32)
            dev = mem.alloc_device(host.nbytes)
            stream = mem.create_stream()
            host[:] = np.random.default_rng(0).standard_normal(host.shape)
            back[:] = 0
            mem.htod_async(dev, host[:10], stream)  # partial copies, as the backend does
            mem.dtoh_async(back[:10], dev, stream)
            mem.synchronize(stream)
            np.testing.assert_array_equal(back[:10], host[:10])
            assert not back[10:].any()
            for obj in (host, back, dev, stream):
                mem.free(obj)
    finally:
        mem.close()


def build_engine(onnx_path: Path, out_dir: Path, batch: tuple[int, int, int] = (1, 4, 16)) -> Path:
    """The FP32 engine exactly as fsrfer-export builds it (TF32 off, the GPU's identity in the key)."""
    from fsrfer_edge.export.engine import build_engine as ship_build

    return ship_build(onnx_path, out_dir, *batch, workspace_mb=256)


@pytest.mark.parametrize("memory", ["cuda-python", "pycuda"])
def test_engine_build_and_infer_matches_onnxruntime(tmp_path: Path, memory: str) -> None:
    _tensorrt()
    mem = _memory(memory)
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    try:
        from ._onnx_models import make_tiny_onnx
    except ImportError:
        from _onnx_models import make_tiny_onnx  # type: ignore[no-redef]
    from fsrfer_edge import Recognizer
    from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    onnx_path = make_tiny_onnx(tmp_path / "tiny.onnx")
    try:
        engine = build_engine(onnx_path, tmp_path)
        x = np.random.default_rng(0).standard_normal((16, 1, 48, 48)).astype(np.float32)
        with OnnxRuntimeBackend(onnx_path, providers="cpu") as ort_be, \
                TensorRTBackend(engine, memory=mem, onnx_path=onnx_path) as trt_be:
            assert trt_be.max_batch == 16
            want = ort_be.infer(x)
            for n in (16, 5, 1):
                np.testing.assert_allclose(trt_be.infer(x[:n]), want[:n], rtol=1e-3, atol=1e-3)
        faces = [np.random.default_rng(1).integers(0, 256, (s, s), dtype=np.uint8) for s in (12, 24, 48, 64)] * 9
        with Recognizer(onnx_path, providers="cpu") as a, Recognizer(engine) as b:
            pa, pb = a.predict(faces), b.predict(faces)
        np.testing.assert_allclose(np.stack([p.probs for p in pa]), np.stack([p.probs for p in pb]), atol=1e-3)
        # the same engine is refused when the ONNX file it came from changed
        onnx_path.write_bytes(onnx_path.read_bytes() + b"\0")
        with pytest.raises(EngineError, match="stale"):
            TensorRTBackend(engine, memory=mem, onnx_path=onnx_path)
    finally:
        mem.close()


def test_a_routed_graph_builds_and_matches_onnxruntime_with_either_path_empty(tmp_path: Path) -> None:
    """The shipped default is routed: NonZero, Gather and ScatterND send each face down one of two paths
    (docs/tensorrt.md). Batches of only 48 px faces or only small faces leave one path with a zero-size
    batch; a mix uses both."""
    _tensorrt()
    mem = _memory("auto")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    try:
        from ._onnx_models import make_routed_onnx
    except ImportError:
        from _onnx_models import make_routed_onnx  # type: ignore[no-redef]
    from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend
    from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend

    onnx_path, faces = make_routed_onnx(tmp_path / "routed.onnx")
    try:
        engine = build_engine(onnx_path, tmp_path)
        mixed = np.concatenate([faces["full"][:5], faces["small"][:5], faces["full"][5:8]])
        with OnnxRuntimeBackend(onnx_path, providers="cpu") as ort_be, \
                TensorRTBackend(engine, memory=mem, onnx_path=onnx_path) as trt_be:
            for x in (faces["full"], faces["small"], mixed, faces["small"][:1]):
                np.testing.assert_allclose(trt_be.infer(x), ort_be.infer(x), rtol=1e-3, atol=1e-3)
    finally:
        mem.close()


def test_recognizer_auto_builds_caches_and_reloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a Jetson user gets from Recognizer(): the engine is built once, then loaded from the cache."""
    import time

    _tensorrt()
    _memory("auto").close()
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    try:
        from ._onnx_models import make_tiny_onnx
    except ImportError:
        from _onnx_models import make_tiny_onnx  # type: ignore[no-redef]
    from fsrfer_edge import Recognizer

    monkeypatch.setenv("FSRFER_ENGINE_DIR", str(tmp_path / "cache"))
    onnx_path = make_tiny_onnx(tmp_path / "tiny.onnx")
    faces = [np.random.default_rng(2).integers(0, 256, (s, s), dtype=np.uint8) for s in (12, 24, 48)] * 4
    with Recognizer(onnx_path, providers="cpu") as ref:
        want = np.stack([p.probs for p in ref.predict(faces)])
    t0 = time.perf_counter()
    with Recognizer(onnx_path) as rec:
        assert rec.backend.name == "tensorrt" and rec.info.precision == "fp16"
        got = np.stack([p.probs for p in rec.predict(faces)])
    first = time.perf_counter() - t0
    np.testing.assert_allclose(got, want, atol=2e-2)
    assert len(list((tmp_path / "cache").glob("*.engine"))) == 1
    t0 = time.perf_counter()
    with Recognizer(onnx_path) as rec:
        assert rec.backend.name == "tensorrt"
    assert time.perf_counter() - t0 < first


def _profile(thresholds: dict[str, Any], compute_capability: str) -> tuple[str, dict[str, Any]]:
    for name, prof in thresholds["profiles"].items():
        match = prof["match"]["compute_capability"]
        if match == "*" or compute_capability in match:
            return name, prof
    pytest.skip(f"no threshold profile for compute capability {compute_capability} in {THRESHOLDS}")


def test_bench_engine_meets_thresholds(tmp_path: Path) -> None:
    engine = os.environ.get("FSRFER_TEST_ENGINE")
    if not engine:
        pytest.skip("set FSRFER_TEST_ENGINE to an engine built by fsrfer-export --engine to run the benchmark check")
    _tensorrt()
    from fsrfer_edge.bench import run_bench, write_json

    thresholds = json.loads(THRESHOLDS.read_text())
    key: EngineKey = read_sidecar(engine)["key"]
    name, prof = _profile(thresholds, key.compute_capability)
    sizes = [int(b) for b in prof["latency"]]
    data = os.environ.get("FSRFER_TEST_DATA")
    doc = run_bench(engine, sizes, data=data, warmup=10, iters=100, overhead_batch=None)
    write_json(tmp_path / "bench.json", doc)
    failures = []
    for r in doc["latency"]:
        lim = prof["latency"][str(r["batch_size"])]
        if r["p99_ms"] > lim["max_p99_ms"]:
            failures.append(f"batch {r['batch_size']}: p99 {r['p99_ms']:.2f} ms > {lim['max_p99_ms']} ms ({name})")
        if r["throughput_fps"] < lim["min_throughput_fps"]:
            failures.append(f"batch {r['batch_size']}: {r['throughput_fps']:.0f} faces/s < {lim['min_throughput_fps']} ({name})")
    onnx_path = os.environ.get("FSRFER_TEST_ONNX")
    if data and onnx_path:
        ref = run_bench(onnx_path, [1], data=data, warmup=0, iters=1, overhead_batch=None)
        max_drop = thresholds["accuracy"]["max_drop_pp"][key.precision]
        for f, acc in doc["accuracy"]["per_factor"].items():
            drop = 100.0 * (ref["accuracy"]["per_factor"][f] - acc)
            if drop > max_drop:
                failures.append(f"x{f}: accuracy drop {drop:.2f} pp > {max_drop} pp ({key.precision})")
    assert not failures, "\n".join(failures)
