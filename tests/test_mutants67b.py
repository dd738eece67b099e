"""Tests that kill hand-made mutants the rest of the suite let through (task K67b, the eighth mutation round):
fsrfer-serve's command line (its defaults, the options it passes on to serve(), its ready line, exit codes and the
private folder of -q's log) and a second pass over fsrfer-export's command line (option checks, what is left on
disk when a step fails, the report and the printed summary, exit codes).
No real Triton server (PyTriton cannot run in this interpreter): serve() is replaced by a recorder; tiny files only."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from fsrfer_edge.serving import cli as serve_cli
from fsrfer_edge.serving.server import DEFAULT_MAX_BATCH
from fsrfer_edge.serving.triton_repo import DEFAULT_QUEUE_DELAY_US


def _record_serve(monkeypatch: pytest.MonkeyPatch, ready: bool = False) -> list[dict[str, Any]]:
    """Replace serve() by a recorder of its arguments (calling on_ready where ``ready``)."""
    calls: list[dict[str, Any]] = []

    def fake(model: Any = None, **kw: Any) -> None:
        calls.append({"model": model, **kw})
        if ready:
            kw["on_ready"]()

    monkeypatch.setattr(serve_cli, "serve", fake)
    return calls


# -- fsrfer-serve ------------------------------------------------------------------------------------------------


def test_serve_defaults_listen_on_loopback_on_the_documented_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutants: the default host 0.0.0.0 (every machine of the network reaches the server), other default ports,
    model name, instances or log level."""
    calls = _record_serve(monkeypatch)
    assert serve_cli.main([]) == 0
    got = calls[0]
    assert got["host"] == "127.0.0.1"
    assert (got["http_port"], got["grpc_port"], got["metrics_port"]) == (8000, 8001, 8002)
    assert got["model"] is None and got["model_name"] == "fsrfer" and got["instances"] == 1
    assert got["max_batch"] == DEFAULT_MAX_BATCH and got["max_queue_delay_us"] == DEFAULT_QUEUE_DELAY_US
    assert got["preferred_batch_sizes"] is None and got["backend"] == "auto" and got["threads"] is None
    assert got["log_verbose"] == 0 and got["workspace"] is None and got["log_file"] is None


def test_serve_passes_every_option_on_to_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutants: an option parsed but not passed on (its default sent instead), or passed as another option."""
    calls = _record_serve(monkeypatch)
    model, ws, log = tmp_path / "m.onnx", tmp_path / "ws", tmp_path / "t.log"
    assert serve_cli.main(["--model", str(model), "--host", "0.0.0.0", "--http-port", "9100", "--grpc-port", "9200",
                           "--metrics-port", "9300", "--model-name", "faces", "--max-batch", "16",
                           "--preferred-batch-size", "4", "8", "--max-queue-delay-us", "777", "--instances", "2",
                           "--backend", "onnxruntime", "--threads", "3", "--workspace", str(ws),
                           "--log-verbose", "2", "--log-file", str(log)]) == 0
    got = calls[0]
    assert got["model"] == model and got["host"] == "0.0.0.0"
    assert (got["http_port"], got["grpc_port"], got["metrics_port"]) == (9100, 9200, 9300)
    assert got["model_name"] == "faces" and got["max_batch"] == 16 and got["preferred_batch_sizes"] == [4, 8]
    assert got["max_queue_delay_us"] == 777 and got["instances"] == 2 and got["backend"] == "onnxruntime"
    assert got["threads"] == 3 and got["workspace"] == ws and got["log_verbose"] == 2 and got["log_file"] == log


def test_serve_threads_0_is_onnx_runtimes_default(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record_serve(monkeypatch)
    assert serve_cli.main(["--threads", "0"]) == 0
    assert calls[0]["threads"] is None


def test_serve_ready_line_names_each_port_and_the_log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Mutants: the gRPC port printed as the HTTP one; the log file left out of the ready line."""
    _record_serve(monkeypatch, ready=True)
    log = tmp_path / "t.log"
    assert serve_cli.main(["--http-port", "9100", "--grpc-port", "9200", "--metrics-port", "9300",
                           "--log-file", str(log)]) == 0
    out = capsys.readouterr().out
    assert "http 127.0.0.1:9100" in out and "grpc 127.0.0.1:9200" in out
    assert "http://127.0.0.1:9300/metrics" in out
    assert f"tritonserver's log in {log}" in out and "Ctrl-C to stop" in out


def test_serve_refuses_a_negative_log_verbose_itself(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    calls = _record_serve(monkeypatch)
    assert serve_cli.main(["--log-verbose", "-1"]) == 2
    assert "--log-verbose -1" in capsys.readouterr().err and calls == []


def test_serve_refuses_a_log_file_with_a_tab(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """PyTriton splits tritonserver's command line at any whitespace, not only at spaces."""
    calls = _record_serve(monkeypatch)
    assert serve_cli.main(["--log-file", "logs\tx/t.log"]) == 2
    assert "whitespace" in capsys.readouterr().err and calls == []


def test_serve_error_is_one_line_and_exit_code_2(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge.errors import ModelError

    def fail(*a: Any, **k: Any) -> None:
        raise ModelError("no model\n  at this path")

    monkeypatch.setattr(serve_cli, "serve", fail)
    assert serve_cli.main([]) == 2
    err = capsys.readouterr().err
    assert err == "error: no model at this path\n"


def test_quiet_log_folder_is_made_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-q's folder is made mode 0700, and one of ours left open to others is closed again."""
    if not hasattr(os, "getuid"):
        pytest.skip("POSIX permissions")
    import tempfile

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    calls = _record_serve(monkeypatch)
    assert serve_cli.main(["-q"]) == 0
    folder = serve_cli.quiet_log_folder()
    assert folder.parent == tmp_path and str(os.getuid()) in folder.name
    assert calls[0]["log_file"] == folder / "fsrfer-serve-8000.log"
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    os.chmod(folder, 0o750)  # its group may read and enter: closed again
    assert serve_cli.main(["-q"]) == 0
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700


# -- fsrfer-export -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained checkpoint (the "tiny" backbone)."""
    torch = pytest.importorskip("torch")
    from fsrfer_edge.preprocessing import Preprocessing
    from trainer import checkpoint
    from trainer.models import InferenceModel

    torch.manual_seed(0)
    spec = {"method": "fsrfer", "backbone": "tiny"}
    path = tmp_path_factory.mktemp("k67b") / "tiny.pt"
    checkpoint.save(path, checkpoint.model_payload(InferenceModel(spec).eval(), spec, Preprocessing(), {"note": "t"}))
    return path


def test_export_failure_keeps_an_out_dir_that_was_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A failed export removes the output folder only where it made it itself: the user's empty folder stays."""
    from fsrfer_edge.export import cli

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "out"
    out.mkdir()
    assert cli.main([str(bad), "--out-dir", str(out), "-q"]) == 2
    assert "fsrfer-export: error: " in capsys.readouterr().err
    assert out.is_dir() and list(out.iterdir()) == []
    fresh = tmp_path / "fresh"
    assert cli.main([str(bad), "--out-dir", str(fresh), "-q"]) == 2
    assert not fresh.exists()  # made by the run: removed with it


def test_export_interrupted_exits_130_and_leaves_nothing(tiny_pt: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge.export import cli, onnx_export

    def interrupted(*a: Any, **k: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_export, "simplify", interrupted)
    out = tmp_path / "out"
    assert cli.main([str(tiny_pt), "--out-dir", str(out), "-q"]) == 130
    assert "fsrfer-export: interrupted" in capsys.readouterr().err
    assert not out.exists()


def test_export_without_source_or_check_trt_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge.export import cli

    assert cli.main([]) == 2
    assert "give a CHECKPOINT_OR_ONNX" in capsys.readouterr().err


def test_export_prints_its_checks_and_files_and_reports_the_simplify_check(
        tiny_pt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The simplified graph is checked against the raw one (a check in the report); the summary is printed."""
    pytest.importorskip("onnxsim")
    import json

    from fsrfer_edge.export import cli

    out = tmp_path / "out"
    assert cli.main([str(tiny_pt), "--out-dir", str(out), "-q"]) == 0
    report = json.loads((out / "tiny.report.json").read_text())
    assert [c["stage"] for c in report["checks"]] == ["pytorch->onnx", "onnx->simplified"]
    printed = capsys.readouterr().out
    assert "check onnx->simplified" in printed and f"wrote {out / 'tiny.fp32.onnx'}" in printed
    assert f"wrote {out / 'tiny.report.json'}" in printed
    assert sorted(p.name for p in out.iterdir()) == ["tiny.fp32.onnx", "tiny.report.json"]


def test_no_simplify_does_not_run_onnxsim(tiny_pt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--no-simplify skips onnxsim deliberately: an onnxsim that would fail is not called."""
    import json

    from fsrfer_edge.errors import ModelError
    from fsrfer_edge.export import cli, onnx_export

    def broken(*a: Any, **k: Any) -> None:
        raise ModelError("onnxsim failed")

    monkeypatch.setattr(onnx_export, "simplify", broken)
    out = tmp_path / "out"
    assert cli.main([str(tiny_pt), "--out-dir", str(out), "--no-simplify", "-q"]) == 0
    report = json.loads((out / "tiny.report.json").read_text())
    assert [c["stage"] for c in report["checks"]] == ["pytorch->onnx"]


def _refusal(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    from fsrfer_edge.export import cli

    assert cli.main(argv) == 2
    return capsys.readouterr().err


@pytest.fixture()
def dummy_pt(tmp_path: Path) -> Path:
    """A checkpoint path that exists (the options are refused before it is read)."""
    path = tmp_path / "m.pt"
    path.write_bytes(b"not read")
    return path


def test_export_refuses_calib_size_0(dummy_pt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _refusal(capsys, [str(dummy_pt), "--out-dir", str(tmp_path / "o"), "--int8", "--calib",
                            str(tmp_path / "c.npz"), "--calib-size", "0"])
    assert "--calib-size 0" in err and ">= 1" in err
    assert not (tmp_path / "o").exists()


def test_export_opset_bounds(dummy_pt: Path) -> None:
    """The highest opset TensorRT parses is taken; --int8 needs per-channel scales (INT8_MIN_OPSET or more)."""
    from fsrfer_edge.errors import ConfigError
    from fsrfer_edge.export import cli
    from fsrfer_edge.export.quantize import INT8_MIN_OPSET
    from fsrfer_edge.export.trt_check import opset_range

    low, high = opset_range()
    cli._validate(cli.ExportOptions(source=dummy_pt, opset=high))
    cli._validate(cli.ExportOptions(source=dummy_pt, opset=low))
    with pytest.raises(ConfigError, match=f"--opset {high + 1}"):
        cli._validate(cli.ExportOptions(source=dummy_pt, opset=high + 1))
    calib = dummy_pt.with_name("c.npz")
    with pytest.raises(ConfigError, match=f"{INT8_MIN_OPSET} or more with --int8"):
        cli._validate(cli.ExportOptions(source=dummy_pt, opset=INT8_MIN_OPSET - 1, int8=True, calib=calib))


def test_calib_factor_equal_to_the_input_size_is_taken() -> None:
    """A factor of the input size makes one-pixel crops (taken); one above it, under one pixel (refused)."""
    from fsrfer_edge.errors import ConfigError
    from fsrfer_edge.export import cli

    cli._check_calib_factors((1, 48), 48)
    with pytest.raises(ConfigError, match="49"):
        cli._check_calib_factors((1, 49), 48)


def test_export_library_call_refuses_a_factor_0_or_no_factors(dummy_pt: Path) -> None:
    from fsrfer_edge.errors import ConfigError
    from fsrfer_edge.export import cli

    for factors in ((0, 1), ()):
        with pytest.raises(ConfigError, match="--calib-factors .*expected integers >= 1"):
            cli._validate(cli.ExportOptions(source=dummy_pt, int8=True, calib=dummy_pt.with_name("c.npz"),
                                            calib_factors=factors))


def test_export_names_unused_calib_factors_as_typed(dummy_pt: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    err = _refusal(capsys, [str(dummy_pt), "--out-dir", str(tmp_path / "o"), "--calib-factors", "1,2"])
    assert "--calib-factors 1,2:" in err


@pytest.mark.parametrize("extra, named", [(["--force"], "--force"), (["--max-int8-drop", "2"], "--max-int8-drop 2"),
                                          (["--triton-threads", "2"], "--triton-threads 2"),
                                          (["--workspace-mb", "64"], "--workspace-mb 64")])
def test_export_refuses_options_of_steps_it_does_not_run(extra: list[str], named: str, dummy_pt: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    err = _refusal(capsys, [str(dummy_pt), "--out-dir", str(tmp_path / "o"), *extra])
    assert named in err


@pytest.mark.parametrize("extra, named", [(["--max-int8-drop", "nan"], "--max-int8-drop nan"),
                                          (["--triton-threads", "0"], "--triton-threads 0"),
                                          (["--workspace-mb", "0"], "--workspace-mb 0"),
                                          (["--deepstream-batch", "1025"], "--deepstream-batch 1025")])
def test_export_refuses_out_of_range_values(extra: list[str], named: str, dummy_pt: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("c.npz", "e.npz"):  # exist; refused before they are read
        (tmp_path / name).write_bytes(b"")
    base = {"--max-int8-drop": ["--int8", "--calib", str(tmp_path / "c.npz"), "--eval-data", str(tmp_path / "e.npz")],
            "--triton-threads": ["--triton-repo", str(tmp_path / "r")],
            "--workspace-mb": ["--engine"], "--deepstream-batch": ["--deepstream", str(tmp_path / "ds")]}[extra[0]]
    err = _refusal(capsys, [str(dummy_pt), "--out-dir", str(tmp_path / "o"), *base, *extra])
    assert named in err


def test_export_deepstream_batch_1024_is_taken(dummy_pt: Path, tmp_path: Path) -> None:
    from fsrfer_edge.export import cli

    cli._validate(cli.ExportOptions(source=dummy_pt, deepstream=tmp_path / "ds", deepstream_batch=1024))


def test_check_trt_takes_quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.export import cli

    seen: list[Path] = []

    def check(path: Path) -> int:
        seen.append(path)
        return 0

    monkeypatch.setattr(cli, "check_trt_main", check)
    assert cli.main(["--check-trt", str(tmp_path / "m.onnx"), "-q"]) == 0
    assert seen == [tmp_path / "m.onnx"]


def test_deepstream_folder_gets_build_options_only_for_its_own_engine(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --deepstream-engine nvinfer builds the engine itself: no --workspace-mb / --timing-cache reach it."""
    from fsrfer_edge.export import cli, deepstream

    calls: list[dict[str, Any]] = []
    def write(folder: Path, onnx: Path, name: str, **kw: Any) -> Path:
        calls.append(kw)
        return folder

    monkeypatch.setattr(deepstream, "write_deepstream", write)
    out = tmp_path / "out"
    report = {"files": {"fp32": {"file": "m.fp32.onnx"}}}
    opts = cli.ExportOptions(source=tmp_path / "m.pt", out_dir=out, name="m", deepstream=tmp_path / "ds",
                             workspace_mb=512, timing_cache=tmp_path / "t.cache")
    cli._write_deepstream(opts, tmp_path / "ds", report)
    assert calls[-1]["workspace_mb"] is None and calls[-1]["timing_cache"] is None and calls[-1]["engine"] is False
    cli._write_deepstream(dataclasses_replace(opts, deepstream_engine=True), tmp_path / "ds", report)
    assert calls[-1]["workspace_mb"] == 512 and calls[-1]["timing_cache"] == tmp_path / "t.cache"


def dataclasses_replace(obj: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **changes)


def test_quiet_log_folder_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Another user's fsrfer-serve-UID folder (planted in the shared temporary folder) is not written into."""
    import tempfile

    if not hasattr(os, "getuid"):
        pytest.skip("POSIX owners")
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    folder = serve_cli.quiet_log_folder()
    folder.mkdir(mode=0o700)
    other = 65534 if os.getuid() != 65534 else 65533
    try:
        os.chown(folder, other, -1)
    except PermissionError:
        pytest.skip("only root can give a folder to another user")
    calls = _record_serve(monkeypatch)
    assert serve_cli.main(["-q"]) == 2
    assert "belongs to another user" in capsys.readouterr().err and calls == []


def test_export_engine_is_built_from_this_runs_file_and_named_in_the_report(
        tiny_pt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """--engine (TensorRT faked): built from the FP32 file with the batch range and workspace given; the report file
    written after it names the engine, and so does the printed summary."""
    pytest.importorskip("onnxsim")
    import json

    from fsrfer_edge.export import cli, engine

    builds: list[tuple[Any, ...]] = []

    def build(src: Path, out_dir: Path, *args: Any) -> Path:
        builds.append((Path(src).name, Path(out_dir), *args))
        plan = Path(out_dir) / "tiny.fake.engine"
        plan.write_bytes(b"engine")
        return plan

    monkeypatch.setattr(engine, "import_tensorrt", lambda onnx=None: None)
    monkeypatch.setattr(engine, "build_engine", build)
    out = tmp_path / "out"
    assert cli.main([str(tiny_pt), "--out-dir", str(out), "--engine", "--min-batch", "2", "--opt-batch", "4",
                     "--max-batch", "8", "--workspace-mb", "64", "-q"]) == 0
    assert builds == [("tiny.fp32.onnx", out, 2, 4, 8, 64, None)]
    report = json.loads((out / "tiny.report.json").read_text())
    assert report["engine"] == {"file": "tiny.fake.engine", "from": "tiny.fp32.onnx"}
    assert "engine tiny.fake.engine (from tiny.fp32.onnx)" in capsys.readouterr().out


def test_serve_quiet_logs_warnings_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-q: fsrfer's own messages are warnings only; without it, its INFO messages are shown."""
    import logging

    _record_serve(monkeypatch)
    logger = logging.getLogger("fsrfer_edge")
    monkeypatch.setattr(logger, "level", logger.level)  # restored after the test
    assert serve_cli.main(["-q", "--log-file", str(tmp_path / "t.log")]) == 0
    assert logger.level == logging.WARNING
    assert serve_cli.main([]) == 0
    assert logger.level == logging.INFO


def test_a_calib_folder_of_images_stays_one_beside_an_archive(tmp_path: Path) -> None:
    """--calib FOLDER holding face images is read as those images even where a fer2013.npz lies beside them;
    --eval-data FOLDER (and --calib FOLDER without images) is read as that archive."""
    from fsrfer_edge.export import cli

    (tmp_path / "face.png").write_bytes(b"")
    (tmp_path / "fer2013.npz").write_bytes(b"")
    opts = cli._with_data_files(cli.ExportOptions(source=tmp_path / "m.pt", calib=tmp_path, eval_data=tmp_path))
    assert opts.calib == tmp_path and opts.eval_data == tmp_path / "fer2013.npz"
    (tmp_path / "face.png").unlink()
    assert cli._with_data_files(cli.ExportOptions(source=tmp_path / "m.pt", calib=tmp_path)).calib == \
        tmp_path / "fer2013.npz"
