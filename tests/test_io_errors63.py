"""Writes that fail part-way (a full disk, a quota, a read-only file system, no permission, an I/O error): the error
that reaches the user names the file and what went wrong, nothing half-written is left, and an earlier file of
that name is kept as it was. Failures are simulated with monkeypatch; tiny models and data only."""
from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from fsrfer_edge import fileio
from fsrfer_edge.errors import FsrferError
from fsrfer_edge import WriteError

ERRNOS = [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO]


def _failure(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _fail_on_call(n: int, code: int, real: Callable[..., Any]) -> Callable[..., Any]:
    """``real``, except that its ``n``-th call raises OSError ``code`` (as the system does: no file name)."""
    calls = [0]

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == n:
            raise _failure(code)
        return real(*args, **kwargs)

    return failing


class _FailingFile:
    """A file object whose ``n``-th write raises OSError ``code`` (a disk that fills up in the middle of a file);
    everything else is the real file's."""

    def __init__(self, f: Any, n: int, code: int) -> None:
        self._f, self._n, self._code, self._writes = f, n, code, 0

    def write(self, data: Any) -> int:
        self._writes += 1
        if self._writes == self._n:
            raise _failure(self._code)
        return int(self._f.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> "_FailingFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._f.close()


def _fail_writes(monkeypatch: pytest.MonkeyPatch, n: int, code: int) -> None:
    """The files atomic_write opens fail at their ``n``-th write."""
    fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: _FailingFile(fdopen(*a, **k), n, code))


def _check(exc: BaseException, path: Path, code: int) -> None:
    """The error a user meets: one of the package's, an OSError with the errno, naming the file and the failure."""
    assert isinstance(exc, FsrferError) and isinstance(exc, OSError), repr(exc)
    assert exc.errno == code and exc.filename == str(path)
    text = str(exc)
    assert str(path) in text and os.strerror(code) in text and "\n" not in text
    assert "Errno" not in text  # said in words, not Python's "[Errno 28]"


def _only_old(folder: Path, name: str, old: bytes) -> None:
    """``folder`` holds ``name`` with its old bytes and nothing else (no hidden temporary file)."""
    assert sorted(p.name for p in folder.iterdir()) == [name]
    assert (folder / name).read_bytes() == old


# -- fileio ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("code", ERRNOS, ids=[errno.errorcode[c] for c in ERRNOS])
@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_write_json_failing_part_way_names_the_file_and_keeps_the_old_one(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         where: str, code: int) -> None:
    path = tmp_path / "results.json"
    old = b'{"old": 1}\n'
    path.write_bytes(old)
    if where == "write":
        _fail_writes(monkeypatch, 1, code)
    else:
        monkeypatch.setattr(os, where, _fail_on_call(1, code, getattr(os, where)))
    with pytest.raises(WriteError) as info:
        fileio.write_json(path, {"new": list(range(100))})
    monkeypatch.undo()
    _check(info.value, path, code)
    _only_old(tmp_path, "results.json", old)


def test_a_write_error_says_what_to_do_and_pickles(tmp_path: Path) -> None:
    import pickle

    err = WriteError(tmp_path / "a.pt", _failure(errno.ENOSPC))
    assert "free some space" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is WriteError and str(again) == str(err) and again.errno == errno.ENOSPC
    assert "read-only" in str(WriteError(tmp_path / "a.pt", _failure(errno.EROFS)))


def test_a_temporary_file_that_cannot_be_removed_does_not_hide_the_write_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.bin"
    monkeypatch.setattr(os, "fsync", _fail_on_call(1, errno.EIO, os.fsync))
    monkeypatch.setattr(os, "unlink", _fail_on_call(1, errno.EIO, os.unlink))
    with pytest.raises(WriteError) as info:
        fileio.atomic_write_bytes(path, b"data")
    monkeypatch.undo()
    _check(info.value, path, errno.EIO)
    assert not path.exists()


def test_an_interrupt_while_writing_stays_an_interrupt(tmp_path: Path) -> None:
    def interrupted(f: Any) -> None:
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write(tmp_path / "a.bin", interrupted)
    assert list(tmp_path.iterdir()) == []


def test_a_library_error_not_about_the_disk_is_not_called_a_write_error(tmp_path: Path) -> None:
    def broken(f: Any) -> None:
        raise ValueError("not serialisable")

    with pytest.raises(ValueError, match="not serialisable") as info:
        fileio.atomic_write(tmp_path / "a.bin", broken)
    assert not isinstance(info.value, WriteError)
    assert list(tmp_path.iterdir()) == []


def test_an_error_about_another_file_is_not_called_a_write_error_of_this_one(tmp_path: Path) -> None:
    def copy_of_missing(f: Any) -> None:
        f.write((tmp_path / "missing.bin").read_bytes())

    with pytest.raises(FileNotFoundError, match="missing.bin") as info:
        fileio.atomic_write(tmp_path / "a.bin", copy_of_missing)
    assert not isinstance(info.value, WriteError)
    assert list(tmp_path.iterdir()) == []


def test_np_savez_failing_part_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer's feature caches and answer files: np.savez into atomic_write's file."""
    path = tmp_path / "feats.npz"
    np.savez(path, a=np.zeros(3))
    old = path.read_bytes()
    _fail_writes(monkeypatch, 2, errno.ENOSPC)
    with pytest.raises(WriteError) as info:
        fileio.atomic_write(path, lambda f: np.savez(f, a=np.arange(10000)))
    monkeypatch.undo()
    _check(info.value, path, errno.ENOSPC)
    _only_old(tmp_path, "feats.npz", old)


def test_sidecar_save_failing_part_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.sidecars import MeasuredFile

    class Measured(MeasuredFile):
        def to_dict(self) -> dict[str, Any]:
            return {"x": 1}

    path = tmp_path / "m.json"
    path.write_bytes(b"{}")
    monkeypatch.setattr(os, "replace", _fail_on_call(1, errno.EROFS, os.replace))
    with pytest.raises(WriteError) as info:
        Measured().save(path)
    monkeypatch.undo()
    _check(info.value, path, errno.EROFS)
    _only_old(tmp_path, "m.json", b"{}")


# -- trainer --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True])
def test_checkpoint_save_failing_part_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compress: bool) -> None:
    """torch.save turns a failed write of its file object into RuntimeError("unexpected pos"): still named."""
    torch = pytest.importorskip("torch")
    from trainer import checkpoint

    path = tmp_path / "model.pt"
    path.write_bytes(b"old checkpoint")
    _fail_writes(monkeypatch, 3, errno.ENOSPC)
    with pytest.raises(WriteError) as info:
        checkpoint.save(path, {"weights": torch.zeros(5000)}, compress=compress)
    monkeypatch.undo()
    _check(info.value, path, errno.ENOSPC)
    _only_old(tmp_path, "model.pt", b"old checkpoint")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from _onnx_models import make_tiny_onnx

    d = tmp_path_factory.mktemp("io")
    rng = np.random.default_rng(0)
    np.savez(d / "faces.npz", images=rng.integers(0, 256, (8, 48, 48), dtype=np.uint8),
             labels=rng.integers(0, 7, 8).astype(np.int64), split=np.array(["val"] * 8))
    return make_tiny_onnx(d / "tiny.onnx")


def test_fsrfer_eval_full_disk_is_one_error_line(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from trainer.cli import eval_main

    out = tmp_path / "res.json"
    out.write_text('{"old": 1}')
    monkeypatch.setattr(os, "fsync", _fail_on_call(1, errno.ENOSPC, os.fsync))
    rc = eval_main(["--checkpoint", str(tiny), "--data", str(tiny.parent / "faces.npz"), "--split", "val",
                    "--factors", "1", "--json", str(out)])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("fsrfer-eval: error: cannot write ")
    assert str(out) in err and "No space left on device" in err
    _only_old(tmp_path, "res.json", b'{"old": 1}')


def test_fsrfer_train_disk_errors_are_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A write that fails in the run (here its config.json), or another OSError of the disk (a folder it cannot
    make), ends fsrfer-train with one line and status 2, not a traceback."""
    pytest.importorskip("torch")
    pytest.importorskip("yaml")
    from trainer import cli, train

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "run"

    def pipeline(cfg: Any, data: Any, out: Path, **kw: Any) -> bool:
        fileio.write_json(out / "config.json", cfg.to_dict())
        return True

    monkeypatch.setattr(train, "load_data", lambda *a, **k: None)
    monkeypatch.setattr(train, "run_pipeline", pipeline)
    monkeypatch.setattr(os, "fsync", _fail_on_call(1, errno.EDQUOT, os.fsync))
    assert cli.train_main(["--config", str(repo / "configs" / "tiny.yaml"), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fsrfer-train: error: cannot write ")
    assert str(out / "config.json") in err and os.strerror(errno.EDQUOT) in err
    assert "once fixed, continue with: fsrfer-train " in err and "--resume" in err  # the finished epochs are kept
    assert not (out / "config.json").exists() and not list(out.glob(".*.tmp"))

    def denied(cfg: Any, data: Any, out: Path, **kw: Any) -> bool:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(out / "models"))

    monkeypatch.setattr(train, "run_pipeline", denied)
    assert cli.train_main(["--config", str(repo / "configs" / "tiny.yaml"), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fsrfer-train: error: ") and str(out / "models") in err
    assert "Permission denied" in err and "Errno" not in err and "--resume" in err


# -- fsrfer-export --------------------------------------------------------------------------------------------------

def test_int8_quantization_on_a_full_disk_is_a_write_error(tiny: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime's quantizer writes its own files (onnx.save_model) beside the INT8 file: a full disk there is
    not "could not quantize the model"."""
    onnx = pytest.importorskip("onnx")
    from fsrfer_edge.export import calib, check, quantize
    from fsrfer_edge.export.onnx_export import read_model_info

    info = read_model_info(tiny)
    inputs = calib.to_model_input(check.random_pixels(info, 4), info)
    out = tmp_path / "tiny.int8-u8s8.onnx"
    out.write_bytes(b"old")
    monkeypatch.setattr(onnx, "save_model", _fail_on_call(1, errno.ENOSPC, onnx.save_model))
    with pytest.raises(WriteError) as info_:
        quantize.quantize_int8(tiny, out, inputs, scheme="u8s8", calib_method="minmax")
    monkeypatch.undo()
    assert info_.value.errno == errno.ENOSPC and str(out) in str(info_.value)
    assert "No space left on device" in str(info_.value)
    _only_old(tmp_path, out.name, b"old")


@pytest.mark.parametrize("code", [errno.EIO, errno.EACCES])
def test_a_failed_move_into_the_out_dir_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       code: int) -> None:
    from fsrfer_edge.export import cli

    stage, out = tmp_path / "stage", tmp_path / "out"
    stage.mkdir()
    out.mkdir()
    for name in ("tiny.fp32.onnx", "tiny.fp16.onnx"):
        (stage / name).write_bytes(b"new")
    (out / "tiny.fp32.onnx").write_bytes(b"old")
    (out / "tiny.report.json").write_bytes(b'{"old": 1}')
    report = {"files": {"fp32": {"file": "tiny.fp32.onnx"}, "fp16": {"file": "tiny.fp16.onnx"}}}
    # os.replace: the report into the staging folder, the FP32 file, the FP16 file, the report (fails)
    monkeypatch.setattr(os, "replace", _fail_on_call(4, code, os.replace))
    with pytest.raises(WriteError) as info:
        cli._commit(stage, out, report, "tiny")
    monkeypatch.undo()
    _check(info.value, out / "tiny.report.json", code)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {"tiny.fp32.onnx": b"old",
                                                                "tiny.report.json": b'{"old": 1}'}


def test_a_move_back_that_fails_too_puts_back_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Undoing a failed commit goes on past a file it cannot put back, and names that file."""
    from fsrfer_edge.export import cli

    stage, out = tmp_path / "stage", tmp_path / "out"
    stage.mkdir()
    out.mkdir()
    for name in ("tiny.fp32.onnx", "tiny.fp16.onnx"):
        (stage / name).write_bytes(b"new")
        (out / name).write_bytes(b"old")
    report = {"files": {"fp32": {"file": "tiny.fp32.onnx"}, "fp16": {"file": "tiny.fp16.onnx"}}}
    # os.replace: the report into the staging folder, fp32, fp16, the report (fails); undo: fp16 (fails), fp32
    calls, replace = [0], os.replace

    def failing(src: Any, dst: Any) -> None:
        calls[0] += 1
        if calls[0] in (4, 5):
            raise _failure(errno.EIO)
        replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(WriteError) as info, caplog.at_level(logging.ERROR, logger="fsrfer_edge.export.cli"):
        cli._commit(stage, out, report, "tiny")
    monkeypatch.undo()
    assert "tiny.report.json" in str(info.value)
    assert (out / "tiny.fp32.onnx").read_bytes() == b"old"  # put back after the one that failed
    assert not (out / "tiny.report.json").exists()
    assert str(out / "tiny.fp16.onnx") in caplog.text and "could not put back" in caplog.text


def test_a_copy_of_the_replaced_file_that_fails_half_way_is_not_put_back(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Where there are no hard links, the file a move replaces is copied aside first; a disk that fills up during
    that copy leaves a half copy, which must not replace the intact file when the commit is undone."""
    import shutil

    from fsrfer_edge.export import cli

    stage, out = tmp_path / "stage", tmp_path / "out"
    stage.mkdir()
    out.mkdir()
    (stage / "tiny.fp32.onnx").write_bytes(b"new")
    (out / "tiny.fp32.onnx").write_bytes(b"old model, intact")
    report = {"files": {"fp32": {"file": "tiny.fp32.onnx"}}}

    def no_link(*a: Any, **k: Any) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    def half_copy(src: Any, dst: Any, **k: Any) -> None:
        Path(dst).write_bytes(Path(src).read_bytes()[:3])
        raise _failure(errno.ENOSPC)

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(shutil, "copy2", half_copy)
    with pytest.raises(WriteError) as info:
        cli._commit(stage, out, report, "tiny")
    monkeypatch.undo()
    _check(info.value, out / "tiny.fp32.onnx", errno.ENOSPC)
    _only_old(out, "tiny.fp32.onnx", b"old model, intact")


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxsim")
    from trainer import checkpoint
    from trainer.models import InferenceModel

    from fsrfer_edge.preprocessing import Preprocessing

    torch.manual_seed(0)
    spec = {"method": "fsrfer", "backbone": "tiny"}
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    checkpoint.save(path, checkpoint.model_payload(InferenceModel(spec).eval(), spec, Preprocessing(), {}))
    return path


@pytest.mark.parametrize("nth,named", [(1, "tiny.raw.onnx"), (2, "tiny.fp32.onnx"), (3, "tiny.fp16.onnx"),
                                       (4, "tiny.report.json")])
def test_fsrfer_export_failing_part_way_keeps_the_out_dir(checkpoint_file: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str], nth: int,
                                                         named: str) -> None:
    """The n-th file the export writes (the raw and simplified FP32 ONNX, the FP16 one, the report) fails half-way:
    one error line naming it, status 2, the earlier export's files as they were, no staging folder or temporary
    file left."""
    from fsrfer_edge.export import cli

    out = tmp_path / "out"
    out.mkdir()
    old = {"tiny.fp32.onnx": b"old model", "tiny.report.json": json.dumps({"old": 1}).encode()}
    for name, data in old.items():
        (out / name).write_bytes(data)
    calls, fdopen = [0], os.fdopen

    def nth_fails(*a: Any, **k: Any) -> Any:
        calls[0] += 1
        f = fdopen(*a, **k)
        return _FailingFile(f, 1, errno.ENOSPC) if calls[0] == nth else f

    monkeypatch.setattr(os, "fdopen", nth_fails)
    rc = cli.main([str(checkpoint_file), "--out-dir", str(out), "--fp16", "--name", "tiny", "-q"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("fsrfer-export: error: cannot write "), err
    assert "No space left on device" in err and named in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old


def test_a_staging_folder_that_cannot_be_made_leaves_no_new_out_dir(checkpoint_file: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge import engine_cache
    from fsrfer_edge.export import cli

    out = tmp_path / "new_out"

    def full(folder: Any, name: str) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(folder) / f".{name}.staging-x"))

    monkeypatch.setattr(engine_cache, "make_staging_folder", full)
    assert cli.main([str(checkpoint_file), "--out-dir", str(out), "--name", "tiny", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and str(out) in err
    assert not out.exists()
