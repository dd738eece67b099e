"""Leftovers of killed training runs, whichever way the next run starts; fsrfer-export's refusal of INT8 and
evaluation options given with an .onnx source."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fsrfer_edge.export import cli as export_cli

TINY = ("name: t\nthreads: 1\ndata: {synthetic: 64}\nmodel: {backbone: tiny, head_hidden: 8}\n"
        "stage1: {epochs: 1, batch_size: 32}\n")


def _killed_run(folder: Path) -> list[Path]:
    """A run folder as a run killed with -9 mid-write leaves it: atomic_write's leftovers."""
    (folder / "state").mkdir(parents=True)
    (folder / "models").mkdir()
    left = [folder / "state" / ".stage1.pt.x1y2z3.tmp", folder / "models" / ".hr.pt.k3j_x1.tmp",
            folder / ".config.json.ab12cd.tmp"]
    for p in left:
        p.write_bytes(b"half a file")
    return left


# -- 1. leftovers of a killed run -------------------------------------------------------------------------------

@pytest.fixture
def killed_run(tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    """(tiny config, run folder, the half-written files a run killed there left)."""
    pytest.importorskip("torch")
    pytest.importorskip("yaml")
    cfg = tmp_path / "t.yaml"
    cfg.write_text(TINY)
    run = tmp_path / "run"
    return cfg, run, _killed_run(run)


def test_a_new_run_in_a_killed_runs_folder_removes_its_leftovers(killed_run: tuple[Path, Path, list[Path]]) -> None:
    """Only --resume removed them: a new run without it overwrote the states and left the half-written files."""
    from trainer.cli import train_main

    cfg, run, left = killed_run
    theirs = run / "state" / ".cache.tmp"  # not atomic_write's name: kept
    theirs.write_bytes(b"theirs")
    assert train_main(["--config", str(cfg), "--out", str(run), "--steps", "stage1"]) == 0
    assert [p for p in left if p.exists()] == []
    assert theirs.read_bytes() == b"theirs" and (run / "models" / "hr.pt").is_file()
    assert not (run / ".fsrfer.lock").exists()  # the run's own lock goes with it


def test_nothing_is_removed_from_a_folder_a_live_run_holds(tmp_path: Path) -> None:
    """A live run's temporary file is never removed: the cleanup takes the folder's lock, and leaves the folder
    alone while another holds it."""
    from fsrfer_edge.fileio import FolderInUse, folder_lock, remove_partial_writes

    run = tmp_path / "run"
    left = _killed_run(run)
    (run / ".fsrfer.lock").write_text("pid 1 on gone since long ago\n")  # a killed holder's: taken over
    with folder_lock(run) as held:
        assert held and "pid 1 " not in (run / ".fsrfer.lock").read_text()
        assert remove_partial_writes(run) == []  # another open of the lock: as another process would be
        assert all(p.exists() for p in left)
        assert remove_partial_writes(run, locked=True) == sorted(left)  # the holder's own cleanup
        with pytest.raises(FolderInUse, match=r"pid \d+ on "):
            with folder_lock(run):
                pass
    assert not (run / ".fsrfer.lock").exists()
    with folder_lock(run) as held:  # released
        assert held


def test_a_second_run_in_a_folder_a_live_run_holds_is_refused(killed_run: tuple[Path, Path, list[Path]],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs writing one --out would overwrite each other's states, and one's cleanup the other's files."""
    from fsrfer_edge.fileio import folder_lock
    from trainer.cli import train_main

    cfg, run, left = killed_run
    for resume in ([], ["--resume"]):
        with folder_lock(run):
            assert train_main(["--config", str(cfg), "--out", str(run), "--steps", "stage1", *resume]) == 2
        err = capsys.readouterr().err
        assert "another fsrfer-train run" in err and "pid " in err and "--out" in err, err
        assert all(p.exists() for p in left) and not (run / "models" / "hr.pt").exists()


# -- 2. INT8 and evaluation options with an .onnx source ------------------------------------------------------

@pytest.mark.parametrize("extra, named", [
    (["--calib-size", "64"], "--calib-size 64"),
    (["--calib-method", "minmax"], "--calib-method minmax"),
    (["--int8-target", "cpu"], "--int8-target cpu"),
    (["--eval-size", "10"], "--eval-size 10"),
    (["--max-int8-drop", "0"], "--max-int8-drop 0.0"),
])
def test_int8_options_with_an_onnx_source_say_they_apply_to_exports_from_a_checkpoint(
        tmp_path: Path, extra: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The message said to pass --int8 (or --eval-data), which the .onnx rule then refused: two steps to learn
    that the option cannot apply to an .onnx source."""
    source = tmp_path / "m.onnx"
    source.write_bytes(b"never read")
    np.savez(tmp_path / "faces.npz", images=np.zeros((4, 48, 48), np.uint8))
    assert export_cli.main([str(source), "--engine", "--out-dir", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and named in err, err
    assert "checkpoint" in err and "pass --int8" not in err and "pass --eval-data" not in err, err
    assert "drop it" in err, err
