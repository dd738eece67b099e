"""Options a run would not use, refused when given, whatever their value: fsrfer-bench's --overhead-reps and
--sessions, fsrfer-export's engine/batch/Triton options given at their default without the output they shape; and the
engine cache's listing that called a killed build's partial file stale where --prune would not remove it (no flock)."""
from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fsrfer_edge import bench, engine_cache, engines_cli
from fsrfer_edge.errors import InputError
from fsrfer_edge.export import cli


# ---------------------------------------------------------------------------------------------
# 1. fsrfer-bench: --overhead-reps where no overhead is measured; --sessions bounded
# ---------------------------------------------------------------------------------------------
def _bench(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
           tmp_path: Path) -> tuple[int, str, dict[str, Any]]:
    """Run fsrfer-bench on a model file that is never read: run_bench is replaced by one that records its keywords."""
    model = tmp_path / "m.onnx"
    model.write_bytes(b"never read")
    seen: dict[str, Any] = {}

    def fake_run_bench(model: Any, batch_sizes: Any, **kwargs: Any) -> dict[str, Any]:
        seen.update(kwargs)
        raise InputError("stopped by the test")

    monkeypatch.setattr(bench, "run_bench", fake_run_bench)
    try:
        rc = bench.main(["--model", str(model), "--batch-sizes", "1", *argv, "--json", str(tmp_path / "b.json"), "-q"])
    except SystemExit as exc:
        rc = exc.code  # type: ignore[assignment]
    _, err = capsys.readouterr()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return rc, err, seen


@pytest.mark.parametrize("argv, other", [
    (["--overhead-batch", "0", "--overhead-reps", "5"], "--overhead-batch 0"),
    (["--overhead-batch", "0", "--overhead-reps", "100"], "--overhead-batch 0"),  # at its default: given all the same
    (["--sessions", "2", "--overhead-reps", "5"], "--sessions 2"),
    (["--backend", "tensorrt", "--overhead-reps", "5"], "--backend tensorrt"),
])
def test_overhead_reps_where_no_overhead_is_measured_is_refused(argv: list[str], other: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """--overhead-reps was silently unused with --overhead-batch 0 (or several sessions, or TensorRT)."""
    from fsrfer_edge import bench

    monkeypatch.setattr(bench, "usable_cpus", lambda: 4)  # the CPUs this process may use (its CPU set)
    rc, err, seen = _bench(argv, monkeypatch, capsys, tmp_path)
    reps = argv[argv.index("--overhead-reps") + 1]
    assert rc == 2 and not seen and f"--overhead-reps {reps}" in err and other in err, err


def test_overhead_reps_defaults_to_100_and_is_taken_where_the_overhead_is_measured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _, err, seen = _bench([], monkeypatch, capsys, tmp_path)
    assert seen["overhead_reps"] == 100 and seen["overhead_batch"] == 64, (seen, err)
    _, err, seen = _bench(["--overhead-reps", "7"], monkeypatch, capsys, tmp_path)
    assert seen["overhead_reps"] == 7, (seen, err)
    _, err, seen = _bench(["--overhead-batch", "0"], monkeypatch, capsys, tmp_path)  # skipped, reps not given
    assert seen["overhead_batch"] is None, (seen, err)


def test_sessions_beyond_the_cpus_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--sessions 1000000 only warned (in the Recognizer's words) and then opened that many ONNX Runtime sessions."""
    from fsrfer_edge import bench

    monkeypatch.setattr(bench, "usable_cpus", lambda: 4)  # the CPUs this process may use (its CPU set)
    rc, err, seen = _bench(["--sessions", "5"], monkeypatch, capsys, tmp_path)
    assert rc == 2 and not seen and "--sessions 5" in err and "4 CPUs" in err and "1 to 4" in err, err
    _, err, seen = _bench(["--sessions", "4"], monkeypatch, capsys, tmp_path)
    assert seen["sessions"] == 4, (seen, err)


# ---------------------------------------------------------------------------------------------
# 2. fsrfer-export: engine, batch and Triton options given at their default value without their output
# ---------------------------------------------------------------------------------------------
@pytest.fixture()
def ckpt(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.pt"
    path.write_bytes(b"never read")
    return path


@pytest.mark.parametrize("extra, needs", [
    (["--min-batch", "1"], "--engine"), (["--opt-batch", "32"], "--engine"), (["--max-batch", "128"], "--engine"),
    (["--workspace-mb", "1024"], "--engine"), (["--triton-kind", "KIND_AUTO"], "--triton-repo"),
    (["--triton-instances", "1"], "--triton-repo"), (["--triton-max-queue-delay-us", "2000"], "--triton-repo"),
])
def test_output_options_given_at_their_default_without_their_output_are_refused(
        extra: list[str], needs: str, ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """--min-batch 1 (its default) without --engine was silently ignored, where --min-batch 2 was refused."""
    monkeypatch.setattr(cli, "export_checkpoint", lambda opts: pytest.fail("the export ran"))
    out = tmp_path / "out"
    rc = cli.main([str(ckpt), "--out-dir", str(out), "--fp16", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and f"{extra[0]} {extra[1]}" in err and needs in err, err
    assert not out.exists()


def test_export_defaults_are_unchanged_when_the_options_are_not_given(ckpt: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[cli.ExportOptions] = []

    def export_checkpoint(opts: cli.ExportOptions) -> dict[str, Any]:
        seen.append(opts)
        return {}

    monkeypatch.setattr(cli, "export_checkpoint", export_checkpoint)
    assert cli.main([str(ckpt), "--out-dir", str(tmp_path / "out"), "--fp16"]) == 0
    assert seen == [cli.ExportOptions(source=ckpt, out_dir=tmp_path / "out", fp16=True)]
    # given with the output it shapes, an option at its default passes (and the library's check is unchanged)
    seen.clear()
    monkeypatch.setattr(cli, "_write_triton_repo", lambda opts, repo, report: report)
    assert cli.main([str(ckpt), "--out-dir", str(tmp_path / "out"), "--triton-repo", str(tmp_path / "repo"),
                     "--triton-instances", "1"]) == 0
    assert seen[0].triton_instances == 1
    cli._validate(cli.ExportOptions(source=ckpt, min_batch=1, workspace_mb=1024))


def test_check_trt_refuses_an_export_option_given_at_its_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """--check-trt FILE --opset 17 (its default) checked FILE and ignored --opset, where --opset 13 was refused."""
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"never read")
    checked: list[Path] = []

    def check_trt_main(path: Path) -> int:
        checked.append(path)
        return 0

    monkeypatch.setattr(cli, "check_trt_main", check_trt_main)
    assert cli.main(["--check-trt", str(onnx), "--opset", "17", "--out-dir", "engines"]) == 2
    err = capsys.readouterr().err
    assert "expected no --out-dir --opset with it" in err and not checked, err
    assert cli.main(["--check-trt", str(onnx), "-q"]) == 0 and checked == [onnx]


# ---------------------------------------------------------------------------------------------
# 3. Engine cache: a killed build's .tmp file where the folder's builds do not take turns
# ---------------------------------------------------------------------------------------------
def _partial_files(folder: Path) -> tuple[Path, Path]:
    """A .tmp file past the grace period but within the lock wait, and one past both."""
    recent, killed = folder / ".face.fp16.abc.tmp", folder / ".face.fp16.def.tmp"
    for p, age in ((recent, 2 * engine_cache.UNFINISHED_GRACE_S), (killed, engine_cache.BUILD_LOCK_WAIT_S + 60)):
        p.write_bytes(b"onnx")
        t = time.time() - age
        os.utime(p, (t, t))
    return recent, killed


@pytest.mark.skipif(sys.platform == "win32", reason="fakes a file system without flock on a platform with it")
def test_listing_and_prune_agree_where_the_file_system_has_no_flock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """On a file system without flock (NFS without lockd: flock fails with ENOLCK) fsrfer-engines listed a partial
    file of 20 minutes as stale ("--prune removes them"), and --prune then left it: it waits the lock wait there."""
    import fcntl

    def no_flock(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    recent, killed = _partial_files(tmp_path)
    monkeypatch.setattr(fcntl, "flock", no_flock)
    with engine_cache.build_lock(tmp_path, announce=False) as held:
        assert not held  # builds there do not take turns
    listed = [e.path for e in engine_cache.list_engines(tmp_path) if e.stale]
    would = [e.path for e in engine_cache.prune(tmp_path, dry_run=True)[0]]
    assert listed == would == [killed]
    # the listing's own clock: the recent file is stale once prune would remove it too
    later = time.time() + engine_cache.BUILD_LOCK_WAIT_S
    assert sorted(e.path for e in engine_cache.list_engines(tmp_path, now=later) if e.stale) == sorted([killed, recent])
    assert engines_cli.main(["--dir", str(tmp_path), "--tensorrt-version", "10.3.0.26"]) == 0
    out = capsys.readouterr().out
    assert "1 stale" in out and recent.name not in out and killed.name in out, out
    assert engines_cli.main(["--dir", str(tmp_path), "--prune"]) == 0
    assert "removed 1 stale" in capsys.readouterr().out and recent.exists() and not killed.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="needs flock")
def test_partial_files_still_go_after_the_grace_period_where_builds_take_turns(tmp_path: Path) -> None:
    recent, killed = _partial_files(tmp_path)
    assert sorted(e.path for e in engine_cache.list_engines(tmp_path) if e.stale) == sorted([killed, recent])
    removed, errors = engine_cache.prune(tmp_path)
    assert sorted(e.path for e in removed) == sorted([killed, recent]) and not errors


def test_partial_files_where_the_platform_has_no_flock_agree_too(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    recent, killed = _partial_files(tmp_path)
    monkeypatch.setitem(sys.modules, "fcntl", None)  # import fcntl fails, as on Windows
    assert [e.path for e in engine_cache.list_engines(tmp_path) if e.stale] == [killed]
    assert [e.path for e in engine_cache.prune(tmp_path, dry_run=True)[0]] == [killed]

