"""fsrfer-export's options and messages from a new user's walkthrough: options a run would ignore are refused, a
data folder is read as fsrfer-eval reads it, the demo names the score file an export writes, the check log and
summary read cleanly, and a killed export's staging folder goes once its process is a zombie. CPU only; most runs
here stop at their options (the checkpoint is never read)."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge import engine_cache
from fsrfer_edge.export import check, cli


def _faces(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 48, 48)).astype(np.uint8)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    """A checkpoint that is never read, calibration faces, and a data folder as ../shared/data holds it."""
    made = {"ckpt": tmp_path / "tiny.pt", "faces": tmp_path / "faces.npz", "eval": tmp_path / "eval.npz",
            "data": tmp_path / "data", "out": tmp_path / "out"}
    made["ckpt"].write_bytes(b"never read")
    np.savez(made["faces"], images=_faces(48))
    np.savez(made["eval"], images=_faces(48), labels=np.arange(48) % 7)
    made["data"].mkdir()
    np.savez(made["data"] / "fer2013.npz", images=_faces(16), labels=np.arange(16) % 7, orig_row=np.arange(16),
             split=np.array(["train", "val"] * 8))
    return made


@pytest.fixture()
def exported(monkeypatch: pytest.MonkeyPatch) -> list[cli.ExportOptions]:
    """The options each run would export with (the export itself is replaced)."""
    seen: list[cli.ExportOptions] = []

    def export_checkpoint(opts: cli.ExportOptions) -> dict[str, Any]:
        seen.append(opts)
        return {}

    monkeypatch.setattr(cli, "export_checkpoint", export_checkpoint)
    return seen


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fsrfer-export: error: ") and len(err.strip().splitlines()) == 1, err
    return err


# -- 1. options that shape an output or a check the run does not make -------------------------------------------

def test_the_walkthrough_command_is_refused(files: dict[str, Path], exported: list[cli.ExportOptions],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """fsrfer-export CKPT --eval-size 10 --calib-method minmax --max-int8-drop 0 --force exported and exited 0."""
    err = _refused([str(files["ckpt"]), "--out-dir", str(files["out"]), "--eval-size", "10", "--calib-method",
                    "minmax", "--max-int8-drop", "0", "--force"], capsys)
    assert exported == [] and not files["out"].exists()
    assert "--calib-method minmax" in err or "--eval-size 10" in err or "--max-int8-drop" in err


@pytest.mark.parametrize("extra, named, needs", [
    (["--eval-size", "10"], "--eval-size 10", "--eval-data"),
    (["--eval-size", "0"], "--eval-size 0", "--eval-data"),  # its default, named on the command line
    (["--calib-size", "64"], "--calib-size 64", "--int8"),
    (["--calib-size", "256"], "--calib-size 256", "--int8"),
    (["--calib-method", "minmax"], "--calib-method minmax", "--int8"),
    (["--calib-method", "percentile"], "--calib-method percentile", "--int8"),
    (["--calib-factors", "1"], "--calib-factors 1", "--int8"),
    (["--int8-target", "cpu"], "--int8-target cpu", "--int8"),
    (["--max-int8-drop", "0"], "--max-int8-drop 0.0", "--int8 and --eval-data"),
    (["--max-int8-drop", "1"], "--max-int8-drop 1.0", "--int8 and --eval-data"),
    (["--force"], "--force", "--int8 and --eval-data"),
])
def test_options_of_a_step_the_run_does_not_make_are_refused(files: dict[str, Path], extra: list[str], named: str,
                                                             needs: str, exported: list[cli.ExportOptions],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused([str(files["ckpt"]), "--out-dir", str(files["out"]), "--fp16", *extra], capsys)
    assert named in err and f"pass {needs}" in err, err
    assert exported == [] and not files["out"].exists()


@pytest.mark.parametrize("extra, named", [(["--max-int8-drop", "5"], "--max-int8-drop 5.0"), (["--force"], "--force")])
def test_gate_options_with_int8_but_no_eval_data_are_refused_not_warned(files: dict[str, Path], extra: list[str],
                                                                        named: str, exported: list[cli.ExportOptions],
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused([str(files["ckpt"]), "--out-dir", str(files["out"]), "--int8", "--calib", str(files["faces"]),
                    *extra], capsys)
    assert named in err and "pass --eval-data" in err and exported == []


def test_gate_options_with_eval_data_but_no_int8_are_refused(files: dict[str, Path], exported: list[cli.ExportOptions],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused([str(files["ckpt"]), "--out-dir", str(files["out"]), "--eval-data", str(files["eval"]),
                    "--max-int8-drop", "2", "--force"], capsys)
    assert "--max-int8-drop 2.0 --force" in err and "pass --int8" in err and exported == []


def test_calibration_options_with_calib_but_no_int8_are_refused(files: dict[str, Path],
                                                                exported: list[cli.ExportOptions],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """--calib alone gives the step checks their faces; --calib-size would not change how many."""
    err = _refused([str(files["ckpt"]), "--out-dir", str(files["out"]), "--calib", str(files["faces"]),
                    "--calib-size", "32"], capsys)
    assert "--calib-size 32" in err and "pass --int8" in err and exported == []


def test_options_with_the_step_they_shape_pass(files: dict[str, Path], exported: list[cli.ExportOptions]) -> None:
    assert cli.main([str(files["ckpt"]), "--out-dir", str(files["out"]), "--int8", "--calib", str(files["faces"]),
                     "--calib-size", "32", "--calib-method", "minmax", "--calib-factors", "1,2", "--int8-target",
                     "cpu", "--eval-data", str(files["eval"]), "--eval-size", "10", "--max-int8-drop", "0",
                     "--force", "-q"]) == 0
    assert exported[0].force and exported[0].max_int8_drop == 0 and exported[0].eval_size == 10
    # --eval-size with --eval-data and no --int8: it sizes the accuracy table and the score calibration
    assert cli.main([str(files["ckpt"]), "--out-dir", str(files["out"]), "--eval-data", str(files["eval"]),
                     "--eval-size", "10", "-q"]) == 0


def test_the_library_refuses_what_differs_from_the_defaults(files: dict[str, Path]) -> None:
    from fsrfer_edge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--force: .*pass --int8 and --eval-data"):
        cli._validate(cli.ExportOptions(source=files["ckpt"], force=True))
    cli._validate(cli.ExportOptions(source=files["ckpt"], calib_size=256, max_int8_drop=1.0))  # the defaults


# -- 2. a data folder, as fsrfer-eval --data reads it ------------------------------------------------------------

def test_eval_data_folder_holding_fer2013_npz_is_read_as_fsrfer_eval_reads_it(
        files: dict[str, Path], exported: list[cli.ExportOptions]) -> None:
    assert cli.main([str(files["ckpt"]), "--out-dir", str(files["out"]), "--eval-data", str(files["data"]),
                     "--labels", "fer2013", "-q"]) == 0
    assert exported[0].eval_data == files["data"] / "fer2013.npz"


def test_eval_data_folder_without_the_archive_says_what_it_takes(files: dict[str, Path],
                                                                exported: list[cli.ExportOptions],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    empty = files["data"].parent / "empty"
    empty.mkdir()
    err = _refused([str(files["ckpt"]), "--out-dir", str(files["out"]), "--eval-data", str(empty)], capsys)
    assert "fer2013.npz" in err and str(empty) in err and exported == []


def test_calib_folder_holding_fer2013_npz_uses_the_archive(files: dict[str, Path],
                                                           exported: list[cli.ExportOptions]) -> None:
    assert cli.main([str(files["ckpt"]), "--out-dir", str(files["out"]), "--int8", "--calib", str(files["data"]),
                     "--calib-size", "8", "--calib-factors", "1,2", "-q"]) == 0
    assert exported[0].calib == files["data"] / "fer2013.npz"


def test_a_calib_folder_of_images_is_still_read_as_images(tmp_path: Path) -> None:
    from PIL import Image

    from fsrfer_edge.export import calib

    folder = tmp_path / "faces"
    folder.mkdir()
    Image.fromarray(_faces(1)[0]).save(folder / "a.png")
    np.savez(folder / "fer2013.npz", images=_faces(4))
    assert len(calib.load_faces(folder)) == 1


def test_the_library_names_the_archive_of_a_calib_folder(files: dict[str, Path]) -> None:
    from fsrfer_edge.errors import DataError
    from fsrfer_edge.export import calib

    with pytest.raises(DataError, match=r"fer2013\.npz"):
        calib.load_faces(files["data"])


# -- 3. the demo's line names the file an export writes ---------------------------------------------------------

@pytest.mark.parametrize("model", ["mymodel.fp32.onnx", "mymodel.int8-u8s8.onnx", "mymodel.onnx",
                                   "mymodel.fp16.0123abcd.trt10.3.sm90.b1-32-128.engine"])
def test_the_demo_names_the_score_file_fsrfer_export_writes(model: str, tmp_path: Path) -> None:
    from fsrfer_edge import sidecars
    from fsrfer_edge.demo import no_confidence_line

    path = tmp_path / model
    line = no_confidence_line(path)
    assert "(mymodel.scores.json beside it)" in line, line
    assert tmp_path / "mymodel.scores.json" in sidecars.besides(path, ".scores.json")  # where it would be found


# -- 4. the check log and the summary ---------------------------------------------------------------------------

def test_the_int8_check_log_says_no_limit_rather_than_none(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(8, 7)).astype(np.float32)
    random = np.zeros((8, 1, 48, 48), np.float32)
    with caplog.at_level(logging.INFO, logger="fsrfer_edge.export.check"):
        check.check_step("fp32->int8-s8s8", lambda x: ref, lambda x: ref + 0.01, "int8", random)
    text = caplog.text
    assert "check fp32->int8-s8s8 (int8) passed" in text and "None" not in text, text
    assert "no limit" in text


def test_summary_lines_line_up() -> None:
    row = {"max_abs_diff": 1e-6, "top1_agreement": 1.0}
    report = {"checks": [{"stage": "pytorch->onnx", "random": row}, {"stage": "fp32->int8-s8s8", "random": row}],
              "tensorrt_check": {"fp32": {"int8_layers": 0, "float_layers": 9, "tables": ["8.5", "10.x"]},
                                 "int8-s8s8": {"int8_layers": 9, "float_layers": 0, "tables": ["8.5", "10.x"]}}}
    lines = cli._summary(report).splitlines()
    assert len(lines) == 4
    assert len({line.index(" ok  (") for line in lines}) == 1, lines


# -- 5. a killed export's staging folder, its process a zombie --------------------------------------------------

def _wait_zombie(pid: int) -> None:
    stat = Path(f"/proc/{pid}/stat")
    for _ in range(500):
        if stat.read_text().rpartition(")")[2].split()[0] == "Z":
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not become a zombie")


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux's /proc")
def test_a_zombie_process_is_gone(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        _wait_zombie(child.pid)
        assert engine_cache._process_gone(child.pid)
    finally:
        child.wait()
    assert not engine_cache._process_gone(os.getpid())  # this one runs


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux's /proc")
def test_the_staging_folder_of_a_killed_export_not_yet_reaped_is_removed(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        _wait_zombie(child.pid)
        stage = engine_cache.make_staging_folder(tmp_path, "m")
        owner = stage / engine_cache.STAGING_OWNER
        owner.write_text(owner.read_text().replace(f"pid {os.getpid()} ", f"pid {child.pid} "))
        assert engine_cache.dead_staging_folders(tmp_path) == [(stage, child.pid)]
    finally:
        child.wait()


def test_a_process_name_with_parentheses_and_spaces_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """/proc/PID/stat's second field is the command name in parentheses, which may itself hold ') Z ('."""
    monkeypatch.setattr(engine_cache, "_proc_stat", lambda pid: "42 (a) Z (b) S 1 42 42 0 -1")
    monkeypatch.setattr(os, "kill", lambda pid, sig: None)
    if os.name == "posix":
        assert not engine_cache._process_gone(42)
        monkeypatch.setattr(engine_cache, "_proc_stat", lambda pid: "42 (a) S (b) Z 1 42 42 0 -1")
        assert engine_cache._process_gone(42)
        monkeypatch.setattr(engine_cache, "_proc_stat", lambda pid: None)  # no /proc: os.kill's answer
        assert not engine_cache._process_gone(42)


@pytest.mark.parametrize("flag", ["--int8-quantize-film", "--int8-float-film", "--int8-quantize-g", "--int8-float-g"])
def test_int8_quantization_choices_with_an_onnx_source_say_to_make_variants_from_the_checkpoint(
        flag: str, tmp_path: Path) -> None:
    from fsrfer_edge.errors import ConfigError
    from fsrfer_edge.export import cli

    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not read: refused before")
    with pytest.raises(ConfigError, match=f"drop {flag} \\(make variants from the checkpoint\\)"):
        cli.run(cli.ExportOptions(source=onnx, out_dir=tmp_path / "out", engine=True,
                                  **({"int8_quantize_film": flag.endswith("quantize-film")} if "film" in flag
                                     else {"int8_quantize_g": flag.endswith("quantize-g")})))


def test_every_group_of_unused_options_is_named_in_one_refusal(tmp_path: Path) -> None:
    """The walkthrough's command needed two or three tries, one complaint each."""
    from fsrfer_edge.errors import ConfigError
    from fsrfer_edge.export import cli

    opts = cli.ExportOptions(source=tmp_path / "m.pt", out_dir=tmp_path / "out", eval_size=10, calib_method="minmax",
                             max_int8_drop=0.0, force=True)
    with pytest.raises(ConfigError) as err:
        cli._refuse_options_of_steps_not_run(opts, frozenset({"eval_size", "calib_method", "max_int8_drop", "force"}))
    said = str(err.value)
    assert "--calib-method minmax" in said and "--eval-size 10" in said and "--max-int8-drop 0.0 --force" in said
