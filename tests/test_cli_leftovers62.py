"""Command-line consistency: fsrfer-serve's --threads as the other CLIs take it, --sessions bounded by the shared
option check of fsrfer-demo and fsrfer-crowd, and fsrfer-export's --calib-factors bounded by the model's input size.
CPU only; no model is loaded, no server started."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest


def _png(path: Path) -> Path:
    pytest.importorskip("PIL")
    from fsrfer_edge.detection.frames import write_image

    return write_image(path, np.full((64, 64, 3), 128, np.uint8))


# -- 1. fsrfer-serve --threads: 0 is ONNX Runtime's default, a negative count is refused naming the flag ----------
@pytest.fixture()
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    from fsrfer_edge.serving import cli

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(cli, "serve", lambda model, **kw: calls.append(kw))
    return calls


@pytest.mark.parametrize("given, passed", [(["--threads", "0"], None), ([], None), (["--threads", "2"], 2)])
def test_serve_threads_0_is_onnx_runtimes_default(given: list[str], passed: Any,
                                                   served: list[dict[str, Any]]) -> None:
    """fsrfer-serve --threads 0 reached Recognizer(threads=0), refused as threads=0 once the model loaded."""
    from fsrfer_edge.serving import cli

    assert cli.main(given) == 0
    assert [c["threads"] for c in served] == [passed]


@pytest.mark.parametrize("value", ["-1", "1025"])
def test_serve_refuses_bad_threads_before_anything_starts(value: str, served: list[dict[str, Any]], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge.serving import cli

    log = tmp_path / "logs" / "serve.log"
    assert cli.main(["--threads", value, "--log-file", str(log)]) == 2
    err = capsys.readouterr().err
    assert f"--threads={value}" in err and "or 0" in err, err
    assert served == [] and not log.parent.exists()


@pytest.mark.parametrize("threads", [0, -1, 1025, True])
def test_serve_refuses_bad_threads_before_its_checks_and_folders(threads: Any, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """serve(threads=0) went on to check the environment and ports and make the log's folder; the Recognizer
    refused it only then."""
    from fsrfer_edge.errors import ConfigError
    from fsrfer_edge.serving import server

    monkeypatch.setattr(server, "check_environment", lambda: pytest.fail("checked the environment"))
    log = tmp_path / "logs" / "serve.log"
    with pytest.raises(ConfigError, match=f"threads={threads!r}; expected an integer from 1 to 1024"):
        server.serve(None, threads=threads, log_file=log)
    assert not log.parent.exists()


# -- 2. --sessions beyond the ONNX Runtime backend's limit: refused naming the flag -------------------------------
@pytest.mark.parametrize("prog", ["demo", "crowd"])
def test_too_many_sessions_are_refused_naming_the_flag(prog: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """fsrfer-demo / fsrfer-crowd --sessions 99999999999 said sessions=99999999999 (the library's keyword)."""
    from fsrfer_edge import crowd_cli, demo, recognizer
    from fsrfer_edge.backends.onnxruntime_backend import MAX_THREADS

    module: Any = demo if prog == "demo" else crowd_cli
    for where in (demo, recognizer):  # fsrfer-crowd imports it when it runs
        monkeypatch.setattr(where, "Recognizer", lambda *a, **k: pytest.fail("no model before the check"))
    img = _png(tmp_path / "in.png")
    out = tmp_path / "o.png"
    assert module.main([str(img), "--out", str(out), "--sessions", "99999999999"]) == 2
    err = capsys.readouterr().err
    assert "--sessions=99999999999" in err and f"{MAX_THREADS}" in err, err
    assert not out.exists()


def test_bench_sessions_share_the_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """fsrfer-bench --sessions 99999999999 was refused only by the backend, as sessions=99999999999."""
    from fsrfer_edge import bench
    from fsrfer_edge.backends.onnxruntime_backend import MAX_THREADS

    monkeypatch.setattr(bench, "Recognizer", lambda *a, **k: pytest.fail("no model before the check"))
    out = tmp_path / "b.json"
    assert bench.main(["--sessions", "99999999999", "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--sessions=99999999999" in err and f"{MAX_THREADS}" in err, err
    assert not out.exists()


def test_the_shared_check_takes_sessions_up_to_the_limit() -> None:
    import argparse

    from fsrfer_edge.backends.onnxruntime_backend import MAX_THREADS
    from fsrfer_edge.crowd_cli import check_shared_options
    from fsrfer_edge.errors import InputError

    def args(sessions: int) -> argparse.Namespace:
        return argparse.Namespace(min_score=None, min_face=12.0, margin=None, sessions=sessions, threads=None)

    check_shared_options(args(MAX_THREADS))
    with pytest.raises(InputError, match=f"--sessions={MAX_THREADS + 1}; expected"):
        check_shared_options(args(MAX_THREADS + 1))


# -- 3. fsrfer-export --calib-factors larger than the model's input size -----------------------------------------
def test_calib_factors_beyond_the_input_size_are_refused_before_calibration(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch,
                                                                             capsys: pytest.CaptureFixture[str]
                                                                             ) -> None:
    """--calib-factors 100 on a 48 px model calibrated on 1 px crops (less than one pixel's worth of face)."""
    from fsrfer_edge.export import calib, cli
    from fsrfer_edge.metadata import ModelInfo

    ckpt, faces, out = tmp_path / "tiny.pt", tmp_path / "faces.npz", tmp_path / "out"
    ckpt.write_bytes(b"never read")
    np.savez(faces, images=np.random.default_rng(0).integers(0, 256, (8, 48, 48)).astype(np.uint8))
    info = ModelInfo()
    assert info.preprocessing.input_size == 48

    def export_fp32(opts: cli.ExportOptions, stage: Path, report: dict[str, Any]) -> tuple[Path, Any, Any, Any]:
        fp32 = stage / f"{opts.model_name}.fp32.onnx"
        fp32.write_bytes(b"staged")
        return fp32, info, None, None

    monkeypatch.setattr(cli, "_export_fp32", export_fp32)
    monkeypatch.setattr(calib, "calibration_inputs", lambda *a, **k: pytest.fail("calibrated"))
    monkeypatch.setattr("fsrfer_edge.export.check.onnx_runner", lambda path: None)
    monkeypatch.setattr("fsrfer_edge.export.onnx_export.load_onnx", lambda path: None)
    monkeypatch.setattr("fsrfer_edge.export.quantize.resolve_quantize_generator", lambda graph, choice: False)
    assert cli.main([str(ckpt), "--out-dir", str(out), "--int8", "--calib", str(faces),
                     "--calib-factors", "1,100", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--calib-factors" in err and "100" in err and "48" in err, err
    assert not out.exists()


def test_calibration_inputs_refuse_a_factor_beyond_the_input_size(tmp_path: Path) -> None:
    from fsrfer_edge.errors import InputError
    from fsrfer_edge.export import calib
    from fsrfer_edge.metadata import ModelInfo

    faces = tmp_path / "faces.npz"
    np.savez(faces, images=np.random.default_rng(0).integers(0, 256, (4, 48, 48)).astype(np.uint8))
    assert len(calib.calibration_inputs(faces, 4, (1, 48), ModelInfo())) == 4  # one-pixel crops: the limit
    with pytest.raises(InputError, match=r"factors \[49\] exceed the model's input size of 48 px"):
        calib.calibration_inputs(faces, 4, (1, 49), ModelInfo())
