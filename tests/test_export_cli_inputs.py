"""fsrfer-export refuses bad options and option combinations before any work, and an interrupted or failed run
leaves the out-dir as it was. Most of these need numpy only: the options are refused before a checkpoint is read."""
from __future__ import annotations

import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _pids import exited_pid  # tests/ is on sys.path

from fsrfer_edge.errors import ConfigError, DataError
from fsrfer_edge.export import calib, cli
from fsrfer_edge.metadata import ModelInfo


def _faces(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 48, 48)).astype(np.uint8)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    """A checkpoint and an .onnx file that are never read (every run here stops at its options), and data."""
    made = {"ckpt": tmp_path / "tiny.pt", "onnx": tmp_path / "tiny.fp16.onnx", "faces": tmp_path / "faces.npz",
            "eval": tmp_path / "eval.npz", "fer2013": tmp_path / "fer2013.npz", "file": tmp_path / "a_file",
            "out": tmp_path / "out"}
    for key in ("ckpt", "onnx", "file"):
        made[key].write_bytes(b"never read")
    np.savez(made["faces"], images=_faces(48))
    np.savez(made["eval"], images=_faces(48), labels=np.arange(48) % 7)
    np.savez(made["fer2013"], images=_faces(8), labels=np.arange(8) % 7, orig_row=np.arange(8))
    return made


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fsrfer-export: error: ") and len(err.strip().splitlines()) == 1
    return err


@pytest.mark.parametrize("drop", ["nan", "-1", "inf"])
def test_max_int8_drop_must_be_a_finite_number_of_points(files: dict[str, Path], drop: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """nan passed every gate and wrote NaN into report.json; -1 refused INT8 files that lost nothing."""
    err = _refused([str(files["ckpt"]), "--out-dir", str(files["out"]), "--max-int8-drop", drop], capsys)
    assert f"--max-int8-drop {float(drop)}; expected a number of accuracy points >= 0" in err
    assert not files["out"].exists()


def test_output_paths_and_opset_are_checked_before_the_export(files: dict[str, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A timing cache naming a folder threw the engine away after its build; a Triton repository under a file was
    blamed on --out-dir; an opset out of range failed after a long TorchScript dump."""
    base = [str(files["ckpt"]), "--out-dir", str(files["out"])]
    (tmp_path / "caches").mkdir()
    err = _refused([str(files["onnx"]), "--engine", "--timing-cache", str(tmp_path / "caches")], capsys)
    assert "--timing-cache" in err and "is a folder; expected a file" in err
    err = _refused([str(files["onnx"]), "--engine", "--timing-cache", str(files["file"] / "t.cache")], capsys)
    assert "--timing-cache" in err and "is a file, not a folder" in err
    err = _refused(base + ["--triton-repo", str(files["file"] / "repo")], capsys)
    assert err.startswith(f"fsrfer-export: error: --triton-repo {files['file'] / 'repo'}: {files['file']} is a file")
    for opset in ("8", "18", "99"):
        assert "--opset " + opset + "; expected 9..17" in _refused(base + ["--opset", opset], capsys)
    err = _refused(base + ["--opset", "12", "--int8", "--calib", str(files["faces"])], capsys)
    assert "expected 13..17" in err and "with --int8" in err
    assert not files["out"].exists()


def test_options_a_run_would_ignore_are_refused(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    base = [str(files["ckpt"]), "--out-dir", str(files["out"])]
    err = _refused(["--check-trt", str(files["onnx"]), str(files["ckpt"]), "--fp16"], capsys)
    assert "--check-trt FILE only checks FILE; expected no CHECKPOINT_OR_ONNX --fp16 with it" in err
    err = _refused([str(files["onnx"]), "--engine", "--name", "mymodel"], capsys)
    assert "--name mymodel names the models of --triton-repo DIR" in err
    err = _refused(base + ["--eval-data", str(files["eval"]), "--labels", "ferplus"], capsys)
    assert "--labels ferplus chooses between" in err and "has no 'orig_row'" in err
    err = _refused(base + ["--int8-quantize-film"], capsys)
    assert "--int8-quantize-film applies to the u8s8 (CPU) INT8 file only" in err
    err = _refused(base + ["--int8", "--calib", str(files["faces"]), "--int8-target", "tensorrt", "--int8-float-film"],
                   capsys)
    assert "--int8-float-film applies to the u8s8 (CPU) INT8 file only" in err
    for flag in ("--int8-quantize-g", "--int8-float-g"):
        err = _refused(base + ["--fp16", flag], capsys)
        assert f"{flag} chooses how G is quantized in the INT8 files; expected --int8 beside it" in err
    assert not files["out"].exists()
    # What each of these options is for still passes the checks.
    cli._validate(cli.ExportOptions(source=files["ckpt"], eval_data=files["fer2013"], labels="fer2013",
                                    int8=True, calib=files["faces"], int8_target="cpu", int8_quantize_film=True,
                                    int8_quantize_g=False))
    cli._validate(cli.ExportOptions(source=files["onnx"], name="mymodel", triton_repo=files["out"] / "repo"))


def test_engine_workspace_must_be_a_positive_number_of_megabytes(files: dict[str, Path],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """--workspace-mb -5 passed every check: TensorRT was handed a negative pool size after the export."""
    for mb in ("0", "-5"):
        err = _refused([str(files["onnx"]), "--engine", "--workspace-mb", mb], capsys)
        assert f"--workspace-mb {mb}; expected a number of MiB >= 1" in err


def test_options_an_onnx_source_would_ignore_are_refused(files: dict[str, Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """--calib, --opset and --no-simplify with an .onnx file were dropped silently: an engine built from an FP32 file
    with --calib was no INT8 engine, and nothing said so."""
    for extra, flag in ((["--calib", str(files["faces"])], "--calib"), (["--opset", "13"], "--opset 13"),
                        (["--no-simplify"], "--no-simplify")):
        err = _refused([str(files["onnx"]), "--engine", *extra], capsys)
        assert f"and drop {flag} (make variants from the checkpoint)" in err


def test_eval_data_that_is_a_folder_is_called_a_folder(files: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A folder given as --eval-data was said not to exist (one holding fer2013.npz is read, as fsrfer-eval does)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _refused([str(files["ckpt"]), "--out-dir", str(files["out"]), "--eval-data", str(empty)], capsys)
    assert f"evaluation data {empty} is a folder; expected an .npz" in err


def test_eval_labels_must_be_the_models_classes(files: dict[str, Path], tmp_path: Path) -> None:
    """Labels 7, 8 and 9 were scored, always as wrong answers; negative labels (no majority) are left out."""
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=_faces(10), labels=np.arange(10))
    with pytest.raises(DataError, match=r"array 'labels' must hold integers 0\.\.6.*row 7 is 7"):
        calib.load_labelled(bad, classes=7)
    unlabelled = tmp_path / "unlabelled.npz"
    np.savez(unlabelled, images=_faces(10), labels=np.arange(10) % 8 - 1)
    assert calib.load_labelled(unlabelled, classes=7)[1].tolist() == [0, 1, 2, 3, 4, 5, 6, 0]
    assert calib.is_fer2013_archive(files["fer2013"]) and not calib.is_fer2013_archive(files["eval"])


def test_fsrfer_export_refuses_eval_labels_beyond_the_models_classes(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxsim")
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=_faces(10), labels=np.arange(10))
    ckpt = Path(__file__).resolve().parents[1] / "fsrfer_edge" / "models" / "default.pt"
    err = _refused([str(ckpt), "--out-dir", str(tmp_path / "o"), "--eval-data", str(bad), "-q"], capsys)
    assert "array 'labels' must hold integers 0..6" in err
    assert not (tmp_path / "o").exists()


def test_check_faces_do_not_log_calibration_counts(files: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    """Loading the check faces said "calibration uses all 48 faces ...; 128 were asked for", under -q too, whatever
    --calib-size was; the calibration itself says how many faces it uses."""
    opts = cli.ExportOptions(source=files["ckpt"], int8=True, calib=files["faces"], calib_size=32)
    with caplog.at_level(logging.INFO, logger="fsrfer_edge"):
        assert len(cli._check_faces(opts, ModelInfo())) == 48
        assert "calibration" not in caplog.text
        assert len(calib.calibration_inputs(files["faces"], 32, (1, 2), ModelInfo())) == 32
    assert "calibration faces: 32 from" in caplog.text and "uses all" not in caplog.text


def _staged_export(monkeypatch: pytest.MonkeyPatch, then: Any) -> None:
    """Stand-in for the export: one staged file, then ``then()``."""
    def export_fp32(opts: cli.ExportOptions, stage: Path, report: dict[str, Any]) -> None:
        (stage / f"{opts.model_name}.fp32.onnx").write_bytes(b"staged")
        then()

    monkeypatch.setattr(cli, "_export_fp32", export_fp32)


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_an_interrupted_export_leaves_no_staging_folder(files: dict[str, Path], how: str,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """SIGTERM killed the run with its staged model files in the out-dir; Ctrl-C printed a traceback."""
    def unhandled(signum: int, frame: Any) -> None:
        raise RuntimeError("SIGTERM reached the test's own handler")

    def interrupt() -> None:
        if how == "Ctrl-C":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler raises long before

    _staged_export(monkeypatch, interrupt)
    out = files["out"]
    out.mkdir()
    (out / "mine.txt").write_text("kept")
    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        assert cli.main([str(files["ckpt"]), "--out-dir", str(out), "-q"]) == 130
        assert signal.getsignal(signal.SIGTERM) is unhandled  # put back after the run
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C left fsrfer-export as a traceback")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert capsys.readouterr().err == "fsrfer-export: interrupted\n"
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def _left_staging(out: Path, suffix: str, owner: Any) -> Path:
    """A staging folder as an export leaves it, with ``owner`` as its owner file's text (None: no owner file)."""
    folder = out / f".tiny.staging-{suffix}"
    folder.mkdir()
    (folder / "tiny.fp32.onnx").write_bytes(b"half-written")
    if owner is not None:
        (folder / ".owner").write_text(owner)
    return folder


def test_an_export_removes_the_staging_folders_of_killed_exports_only(files: dict[str, Path],
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """SIGKILL, which no handler catches, left the hidden staging folder in the out-dir for good. The next export
    into the folder removes those whose process is gone, and never one of an export running now, of another
    machine (a shared folder), or of a version that recorded no owner."""
    out = files["out"]
    out.mkdir()
    host = socket.gethostname()
    killed = _left_staging(out, "killed00", f"pid {exited_pid()} on {host}\n")
    running = _left_staging(out, "running0", f"pid {os.getppid()} on {host}\n")
    elsewhere = _left_staging(out, "elsewher", f"pid {exited_pid()} on not-{host}\n")
    unknown = _left_staging(out, "olderver", None)
    seen: list[str] = []

    def interrupt() -> None:
        seen.extend(sorted(p.name for p in out.iterdir()))
        mine = [p for p in out.iterdir() if p not in (killed, running, elsewhere, unknown)]
        assert len(mine) == 1 and (mine[0] / ".owner").read_text() == f"pid {os.getpid()} on {host}\n"
        raise KeyboardInterrupt

    _staged_export(monkeypatch, interrupt)
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge"):
        assert cli.main([str(files["ckpt"]), "--out-dir", str(out), "-q"]) == 130
    assert killed.name not in seen  # gone before this export staged its own files
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (running, elsewhere, unknown))
    removed = [r.getMessage() for r in caplog.records if "staging" in r.getMessage()]
    assert len(removed) == 1 and str(killed) in removed[0], removed


def _stage(tmp_path: Path, names: list[str]) -> tuple[Path, Path, dict[str, Any]]:
    stage, out = tmp_path / "stage", tmp_path / "out"
    stage.mkdir(parents=True)
    out.mkdir()
    report: dict[str, Any] = {"files": {}}
    for name in names:
        (stage / name).write_bytes(b"new")
        report["files"][name.split(".")[1]] = {"file": name}
    return stage, out, report


def _contents(folder: Path) -> dict[str, Any]:
    return {p.name: (p.read_bytes() if p.is_file() else "folder") for p in folder.iterdir()}


def test_commit_checks_every_destination_before_moving_any(tmp_path: Path) -> None:
    """A folder named like the second file: the first had replaced the earlier export's, the rest were not placed."""
    stage, out, report = _stage(tmp_path, ["tiny.fp32.onnx", "tiny.fp16.onnx"])
    (out / "tiny.fp32.onnx").write_bytes(b"old")
    (out / "tiny.fp16.onnx").mkdir()
    before = _contents(out)
    with pytest.raises(ConfigError, match=r"holds the folder\(s\) tiny\.fp16\.onnx where this export writes files"):
        cli._commit(stage, out, report, "tiny")
    assert _contents(out) == before


def test_a_move_that_fails_halfway_puts_the_out_dir_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stage, out, report = _stage(tmp_path, ["tiny.fp32.onnx", "tiny.fp16.onnx"])
    (out / "tiny.fp32.onnx").write_bytes(b"old")
    (out / "tiny.report.json").write_bytes(b"old report")
    before = _contents(out)
    replace, failed = os.replace, []

    def failing(src: Any, dst: Any) -> None:  # the last move fails, once
        if Path(dst) == out / "tiny.report.json" and not failed:
            failed.append(dst)
            raise OSError(5, "Input/output error")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="Input/output error"):
        cli._commit(stage, out, report, "tiny")
    monkeypatch.undo()
    assert _contents(out) == before
    stage, _, report = _stage(tmp_path / "again", ["tiny.fp32.onnx", "tiny.fp16.onnx"])
    cli._commit(stage, out, report, "tiny")  # where nothing fails, every file is placed
    assert _contents(out)["tiny.fp32.onnx"] == b"new" and _contents(out)["tiny.fp16.onnx"] == b"new"
    assert b'"files"' in _contents(out)["tiny.report.json"]


def test_commit_names_only_this_models_earlier_files_as_stale(tmp_path: Path) -> None:
    """Every NAME.*.onnx was called stale, "delete them": another model's, --name tiny.v2, too."""
    stage, out, report = _stage(tmp_path, ["tiny.fp32.onnx"])
    for name in ("tiny.int8-u8s8.onnx", "tiny.v2.fp32.onnx", "tiny.v2.int8-s8s8.onnx", "tiny.scores.json"):
        (out / name).write_bytes(b"old")
    cli._commit(stage, out, report, "tiny")
    assert report["stale_files"] == ["tiny.int8-u8s8.onnx", "tiny.scores.json"]


def test_the_summary_names_the_confidence_maps_the_export_wrote(tmp_path: Path) -> None:
    """NAME.scores.json was written but the summary's "wrote" lines left it out."""
    report = {"files": {"fp32": {"file": "tiny.fp32.onnx", "bytes": 1000}},
              "score_calibration": {"file": "tiny.scores.json"}, "report": str(tmp_path / "tiny.report.json")}
    assert f"wrote {tmp_path / 'tiny.scores.json'}\n" in cli._summary(report)
