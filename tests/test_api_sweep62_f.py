"""Bad inputs to fsrfer-export, fsrfer-demo and the engine-cache library, found by a sweep: each is refused before
any work with one error line that names the option (exit status 2), or with the package's own error, and leaves no
output behind (not an empty path taken as the current folder, a file name with a newline in it, files left in
--out-dir by a Triton option refused only after the export, or a build lock that waits forever)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge import engine_cache
from fsrfer_edge.errors import InputError
from fsrfer_edge.export import cli


@pytest.fixture()
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A checkpoint that is never read (every run here stops at its options), run from an empty folder."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    ckpt = tmp_path / "tiny.pt"
    ckpt.write_bytes(b"never read")
    return {"ckpt": ckpt, "work": work, "out": tmp_path / "out"}


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    try:
        status = cli.main(argv)
    except SystemExit as exc:  # argparse's usage errors
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("fsrfer-export: error: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    return err


# -- fsrfer-export: an empty path is refused, not read as the current folder ----------------------------------------
@pytest.mark.parametrize("option", ["--out-dir", "--triton-repo", "--deepstream", "--timing-cache", "--calib",
                                    "--eval-data"])
def test_export_refuses_an_empty_path_option(files: dict[str, Path], option: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """--out-dir "" (an unset shell variable) wrote the export into the current folder, as did --triton-repo "" and
    --deepstream ""; the others blamed "." for what they found there."""
    err = _refused([str(files["ckpt"]), option, ""], capsys)
    assert f"argument {option}: received an empty path" in err
    assert list(files["work"].iterdir()) == []


def test_export_refuses_an_empty_source_or_check_trt_file(files: dict[str, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """fsrfer-export "" said "name=''; expected a model name" and left an empty engines/ folder behind."""
    err = _refused([""], capsys)
    assert "argument CHECKPOINT_OR_ONNX: received an empty path" in err
    err = _refused(["--check-trt", ""], capsys)
    assert "argument --check-trt: received an empty path" in err
    assert list(files["work"].iterdir()) == []


@pytest.mark.parametrize("name, words", [
    ("", "--name '': expected a file name stem"),
    (" ", "--name ' ': expected a file name stem"),
    ("a\nb", "--name 'a\\nb': expected a file name stem"),
    ("x" * 200, "is 200 bytes long; expected at most 128"),
])
def test_export_refuses_a_name_no_file_name_can_hold(files: dict[str, Path], name: str, words: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A blank name was refused with the library's "name=' '" after the output folder was made (left empty); a
    newline went into the file names; 200 characters failed as "a file could not be written ... free space"."""
    err = _refused([str(files["ckpt"]), "--out-dir", str(files["out"]), "--name", name], capsys)
    assert words in err
    assert not files["out"].exists() and list(files["work"].iterdir()) == []


@pytest.mark.parametrize("option", ["--triton-repo", "--deepstream"])
def test_export_names_the_name_option_that_a_triton_or_deepstream_model_cannot_take(
        files: dict[str, Path], option: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--triton-repo with --name 'my model' exported, then failed as "model_name='my model'", leaving the files."""
    err = _refused([str(files["ckpt"]), "--out-dir", str(files["out"]), option, str(files["work"] / "dir"),
                    "--name", "my model"], capsys)
    assert f"--name with {option}: name='my model'; expected letters, digits" in err
    assert not files["out"].exists()


@pytest.mark.parametrize("option, value, words", [
    ("--triton-instances", str(2**31), "--triton-instances 2147483648"),
    ("--triton-threads", str(2**31), "--triton-threads 2147483648"),
    ("--triton-max-queue-delay-us", str(2**64), "--triton-max-queue-delay-us 18446744073709551616"),
])
def test_export_refuses_triton_values_out_of_range_before_the_export(files: dict[str, Path], option: str, value: str,
                                                                     words: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """These were refused by write_triton_repo after the export, with its parameter names, and the exported files
    were left in --out-dir."""
    err = _refused([str(files["ckpt"]), "--out-dir", str(files["out"]), "--triton-repo", str(files["work"] / "repo"),
                    option, value], capsys)
    assert words in err
    assert not files["out"].exists() and list(files["work"].iterdir()) == []


# -- fsrfer-demo --------------------------------------------------------------------------------------------------
def test_demo_names_an_empty_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """--out "" said "--out  is a folder; expected an image file to write"."""
    from fsrfer_edge.demo import main

    monkeypatch.chdir(tmp_path)
    assert main(["--out", ""]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fsrfer-demo: error: --out '' is an empty path; expected an image file") and \
        len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


# -- engine_cache -------------------------------------------------------------------------------------------------
def test_check_engine_names_an_onnx_path_that_is_no_file(tmp_path: Path) -> None:
    """A missing or folder onnx_path raised FileNotFoundError / IsADirectoryError from hashing it."""
    from fsrfer_edge.engine_cache import EngineKey
    from fsrfer_edge.metadata import ModelInfo

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine")
    key = EngineKey("10.3.0.26", "8.7", "fp16", 1, 8, 16)
    engine_cache.write_sidecar(engine, key, "0" * 64, ModelInfo())
    for bad, words in ((tmp_path / "gone.onnx", "does not exist"), (tmp_path, "is a directory"),
                       ("", "expected a path")):
        with pytest.raises(InputError, match=rf"onnx_path=.*{words}.*"):
            engine_cache.check_engine(engine, "10.3.0.26", "8.7", onnx_path=bad)
    assert engine_cache.check_engine(engine, "10.3.0.26", "8.7")["key"] == key  # valid without onnx_path, as before


@pytest.mark.parametrize("kwargs", [{"wait_s": math.nan}, {"wait_s": -1.0}, {"wait_s": "10"}, {"poll_s": 0},
                                    {"poll_s": -0.5}, {"poll_s": math.nan}, {"poll_s": None}, {"wait_s": True}])
def test_build_lock_refuses_waits_that_never_end_or_spin(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    """wait_s=nan waited forever for a held lock (nan >= limit is never true); poll_s=0 spun the CPU, a negative one
    raised ValueError from time.sleep; both only once another process held the lock."""
    with pytest.raises(InputError, match=rf"{next(iter(kwargs))}=.*; expected"):
        with engine_cache.build_lock(tmp_path, **kwargs):
            pass
    assert not (tmp_path / engine_cache.BUILD_LOCK_NAME).exists()
    with engine_cache.build_lock(tmp_path, wait_s=0, poll_s=0.01) as held:  # valid values still work
        assert held in (True, False)
    for wait_s in (np.float32(2.5), math.inf, None):  # inf: wait as long as it takes
        with engine_cache.build_lock(tmp_path, wait_s=wait_s) as held:
            assert held in (True, False)
    assert os.path.isdir(tmp_path)
