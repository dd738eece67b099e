"""ONNX Runtime falls back to the CPU when a GPU provider of its build cannot start (CUDA or cuDNN libraries missing):
where the user asked for that provider, the SDK says so instead of running on the CPU unasked."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from fsrfer_edge.errors import BackendUnavailable

MODEL = Path(__file__).resolve().parents[1] / "fsrfer_edge" / "models" / "default.onnx"


@pytest.fixture()
def cuda_that_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """An onnxruntime build that lists the CUDA provider, whose sessions start on the CPU alone (as onnxruntime-gpu
    does when libcudnn is missing: it logs the failure and retries on the CPU)."""
    ort = pytest.importorskip("onnxruntime")
    real = ort.InferenceSession

    def session(path: str, sess_options: Any = None, providers: Any = None) -> Any:
        return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", session)


@pytest.mark.parametrize("providers", ["cuda", [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]])
def test_a_gpu_provider_asked_for_that_does_not_start_is_an_error(cuda_that_fails: None, providers: Any) -> None:
    from fsrfer_edge import Recognizer

    with pytest.raises(BackendUnavailable, match=r"could not start CUDAExecutionProvider and would run on "
                                                 r"CPUExecutionProvider.*providers='cpu'"):
        Recognizer(MODEL, providers=providers)


def test_auto_falls_back_to_the_cpu_with_a_warning(cuda_that_fails: None, caplog: pytest.LogCaptureFixture) -> None:
    from fsrfer_edge import Recognizer

    with caplog.at_level(logging.WARNING), Recognizer(MODEL) as rec:
        assert rec.backend.providers == ("CPUExecutionProvider",)  # type: ignore[attr-defined]
    assert [r.getMessage() for r in caplog.records if "could not start CUDAExecutionProvider" in r.getMessage()]


def test_a_detector_asked_for_cuda_says_so_too(cuda_that_fails: None) -> None:
    from fsrfer_edge.detection.yunet import YuNetDetector

    with pytest.raises(BackendUnavailable, match="could not start CUDAExecutionProvider"):
        YuNetDetector(providers="cuda")


def test_the_cpu_count_is_the_process_cpu_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """In a 2-CPU container on a 64-core host os.cpu_count() says 64: fsrfer-bench took --sessions 16 and the
    Recognizer did not warn of sessions slowing each other down."""
    import os

    from fsrfer_edge import bench
    from fsrfer_edge.backends import onnxruntime_backend

    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert onnxruntime_backend.usable_cpus() == 2
    assert bench.main(["--sessions", "16", "--json", str(tmp_path / "b.json")]) == 2
    assert "may use 2 CPUs" in capsys.readouterr().err
