"""Behaviour checks that a seventh hand-made mutation test (task K66f: a second pass over the engine cache, after
K64b: how engines are named, found, checked, pruned and locked, fsrfer-engines and the measured files kept beside
models) found no test for: each test here fails on one small, plausible change to the library code that the rest of
the suite let through. Plain files stand in for engines: nothing here needs TensorRT or a GPU."""
from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from fsrfer_edge import engine_cache
from fsrfer_edge.engine_cache import EngineKey
from fsrfer_edge.errors import EngineError
from fsrfer_edge.metadata import ModelInfo
from test_engine_cache_review import CC, GPU, OLD, TRT, _age  # the engine cache review's versions and ageing


def _engine(folder: Path, onnx: Path, key: EngineKey, age: float = OLD) -> Path:
    """A stand-in engine built from ``onnx`` with its sidecar, named and written as the builder does."""
    sha = hashlib.sha256(onnx.read_bytes()).hexdigest()
    path = folder / key.filename(engine_cache.model_stem(onnx), sha)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(f"plan {key}".encode())
    engine_cache.write_sidecar(path, key, sha, ModelInfo(precision=key.precision),
                               extra=engine_cache.source_record(onnx))
    for p in (path, engine_cache.sidecar_path(path)):
        _age(p, age)
    return path


def _key(version: str = TRT, cc: str = CC, device: str = GPU) -> EngineKey:
    return EngineKey(version, cc, "fp16", 1, 32, 128, device=device)


# -- check_engine: an engine runs only under the exact TensorRT version and compute capability it was built for ------
@pytest.mark.parametrize("version,cc", [("10.3.0.30", CC), ("10.3.1.26", CC), (TRT, "8.6"), (TRT, "8.9")])
def test_check_engine_refuses_another_patch_version_or_minor_compute_capability(tmp_path: Path, version: str,
                                                                                 cc: str) -> None:
    onnx = tmp_path / "face.onnx"
    onnx.write_bytes(b"model")
    engine = _engine(tmp_path / "cache", onnx, _key())
    assert engine_cache.check_engine(engine, TRT, CC, onnx, device=GPU)["key"] == _key()
    with pytest.raises(EngineError, match="Rebuild it"):
        engine_cache.check_engine(engine, version, cc, onnx, device=GPU)


def test_list_engines_marks_an_engine_of_another_patch_version_stale(tmp_path: Path) -> None:
    onnx = tmp_path / "face.onnx"
    onnx.write_bytes(b"model")
    engine = _engine(tmp_path / "cache", onnx, _key("10.3.0.26"))
    (entry,) = engine_cache.list_engines(tmp_path / "cache", "10.3.0.30")
    assert entry.path == engine and "built with TensorRT 10.3.0.26" in (entry.stale or "")


# -- write_sidecar: atomic; a write that fails part way keeps the sidecar there was -----------------------------------
def test_a_sidecar_write_that_fails_part_way_keeps_the_previous_sidecar(tmp_path: Path) -> None:
    onnx = tmp_path / "face.onnx"
    onnx.write_bytes(b"model")
    engine = _engine(tmp_path, onnx, _key())
    before = engine_cache.sidecar_path(engine).read_bytes()
    with pytest.raises(TypeError):  # not JSON: found only after the first fields were written
        engine_cache.write_sidecar(engine, _key(), "0" * 64, ModelInfo(precision="fp16"), extra={"zz": object()})
    assert engine_cache.sidecar_path(engine).read_bytes() == before
    assert engine_cache.check_engine(engine, TRT, CC, onnx, device=GPU)


# -- prune_replaced: an engine whose sidecar is older than it (a rebuild writing it) is left alone --------------------
def test_prune_replaced_leaves_an_engine_whose_sidecar_is_older_than_it(tmp_path: Path) -> None:
    onnx = tmp_path / "face.onnx"
    onnx.write_bytes(b"model v1")
    cache = tmp_path / "cache"
    old = _engine(cache, onnx, _key())
    rebuilding = _engine(cache, onnx, EngineKey(TRT, CC, "fp16", 1, 8, 64, device=GPU))
    _age(engine_cache.sidecar_path(rebuilding), OLD + 60)  # the engine renamed into place after its sidecar
    onnx.write_bytes(b"model v2")
    removed = engine_cache.prune_replaced(cache, onnx, GPU)
    assert [e.path for e in removed] == [old]
    assert rebuilding.exists() and engine_cache.sidecar_path(rebuilding).exists()



def test_prune_replaced_leaves_a_symlinked_engine_and_its_sidecar_alone(tmp_path: Path) -> None:
    """A link the user put in the cache (to an engine kept elsewhere) is not the cache's to remove."""
    onnx = tmp_path / "face.onnx"
    onnx.write_bytes(b"model v1")
    target = _engine(tmp_path / "kept", onnx, _key())
    cache = tmp_path / "cache"
    cache.mkdir()
    link = cache / target.name
    link.symlink_to(target)
    engine_cache.sidecar_path(link).write_bytes(engine_cache.sidecar_path(target).read_bytes())
    onnx.write_bytes(b"model v2")
    assert engine_cache.prune_replaced(cache, onnx, GPU) == []
    assert link.is_symlink() and engine_cache.sidecar_path(link).exists() and target.exists()

# -- build_lock: wait_s=0 gives up at once; re-entrant for a read-only lock file and a path spelled otherwise; a block
# that gave up does not make later blocks give up; a block that ends leaves the lock to be taken again ---------------
def _hold(folder: Path) -> tuple[threading.Thread, threading.Event]:
    """Another thread holding ``folder``'s build lock until the event returned is set."""
    taken, release = threading.Event(), threading.Event()

    def holder() -> None:
        with engine_cache.build_lock(folder):
            taken.set()
            release.wait(30)

    t = threading.Thread(target=holder, daemon=True)
    t.start()
    assert taken.wait(10)
    return t, release


def _free(folder: Path) -> bool:
    """Whether another open of ``folder``'s lock file can take the lock now."""
    from fsrfer_edge import fileio

    fd = os.open(folder / engine_cache.BUILD_LOCK_NAME, os.O_RDONLY)
    try:
        taken = fileio.try_flock(fd)
        if taken:
            fileio.release_flock(fd)
        return bool(taken)
    finally:
        os.close(fd)


def test_build_lock_with_wait_s_0_gives_up_at_once_while_another_build_holds_it(tmp_path: Path) -> None:
    holder, release = _hold(tmp_path)
    got: list[bool] = []
    try:
        def wait() -> None:
            with engine_cache.build_lock(tmp_path, wait_s=0, poll_s=0.05, announce=False) as held:
                got.append(held)

        waiter = threading.Thread(target=wait, daemon=True)
        t0 = time.monotonic()
        waiter.start()
        waiter.join(5)
        assert got == [False] and time.monotonic() - t0 < 5
    finally:
        release.set()
        holder.join(10)


def test_build_lock_is_re_entrant_on_a_read_only_lock_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / engine_cache.BUILD_LOCK_NAME).write_bytes(b"")
    real_open = os.open

    def not_for_writing(path: object, flags: int, *args: object) -> int:
        if str(path).endswith(engine_cache.BUILD_LOCK_NAME) and flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", not_for_writing)
    with engine_cache.build_lock(tmp_path) as outer:
        with engine_cache.build_lock(tmp_path, wait_s=0.3, poll_s=0.05, announce=False) as inner:
            assert (outer, inner) == (True, True)


def test_build_lock_is_re_entrant_through_a_symlink_to_the_folder(tmp_path: Path) -> None:
    real = tmp_path / "engines"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    with engine_cache.build_lock(real) as outer:
        with engine_cache.build_lock(link, wait_s=0.3, poll_s=0.05, announce=False) as inner:
            assert (outer, inner) == (True, True)


def test_a_build_lock_given_up_on_is_taken_by_a_later_block_once_free(tmp_path: Path) -> None:
    holder, release = _hold(tmp_path)
    try:
        with engine_cache.build_lock(tmp_path, wait_s=0.2, poll_s=0.05, announce=False) as gave_up:
            assert gave_up is False
    finally:
        release.set()
        holder.join(10)
    with engine_cache.build_lock(tmp_path, wait_s=5, poll_s=0.05) as held:
        assert held is True and not _free(tmp_path)


def test_a_build_lock_taken_again_after_its_block_ended_is_really_held(tmp_path: Path) -> None:
    with engine_cache.build_lock(tmp_path) as held:
        assert held
    with engine_cache.build_lock(tmp_path) as held:
        assert held and not _free(tmp_path)  # another open of the file cannot take it meanwhile
    assert _free(tmp_path)



# -- prune: inside this thread's own build_lock block (the lock is this build's) it still prunes ----------------------
def test_prune_inside_its_own_build_lock_block_removes_stale_engines(tmp_path: Path) -> None:
    onnx = tmp_path / "face.onnx"
    onnx.write_bytes(b"model")
    stale = _engine(tmp_path / "cache", onnx, _key("10.0.1.6"))
    with engine_cache.build_lock(tmp_path / "cache") as held:
        removed, errors = engine_cache.prune(tmp_path / "cache", TRT)
    assert held and [e.path for e in removed] == [stale] and not errors and not stale.exists()


# -- fsrfer-engines: the stale total counts stale files only; an engine that could not be removed is reported, exit 2 -
def test_fsrfer_engines_stale_total_counts_only_the_stale_files(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge import engines_cli

    onnx = tmp_path / "face.onnx"
    onnx.write_bytes(b"model")
    cache = tmp_path / "cache"
    ok = _engine(cache, onnx, _key())
    stale = _engine(cache, onnx, _key("10.0.1.6"))
    for path, mib in ((ok, 3), (stale, 1)):
        path.write_bytes(b"\0" * (mib << 20))
        engine_cache.write_sidecar(path, engine_cache.read_sidecar(path)["key"], hashlib.sha256(b"model").hexdigest(),
                                   ModelInfo(precision="fp16"), extra=engine_cache.source_record(onnx))
        for p in (path, engine_cache.sidecar_path(path)):
            _age(p, OLD)
    assert engines_cli.main(["--dir", str(cache), "--tensorrt-version", TRT]) == 0
    assert "1 stale, 1.0 MiB: fsrfer-engines --prune removes them" in capsys.readouterr().out


def test_fsrfer_engines_prune_exits_2_when_a_file_could_not_be_removed(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge import engines_cli

    onnx = tmp_path / "face.onnx"
    onnx.write_bytes(b"model")
    stale = _engine(tmp_path / "cache", onnx, _key("10.0.1.6"))
    real_unlink = Path.unlink

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        if self == stale:
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "unlink", refuse)
    assert engines_cli.main(["--dir", str(tmp_path / "cache"), "--tensorrt-version", TRT, "--prune"]) == 2
    assert f"could not remove {stale}: Permission denied" in capsys.readouterr().err
    assert stale.exists()


# -- sidecars: the measured files of an INT8 engine or a .plan file are found beside the model it was built from -----
def _calibration(checkpoint: str) -> object:
    import numpy as np

    from fsrfer_edge.groups import GroupCalibration

    eye = np.eye(2)[None]
    return GroupCalibration(("neutral", "happy"), (1.0,), eye, eye, (5, 5), checkpoint)


def test_an_int8_engines_files_are_looked_for_under_its_models_name(tmp_path: Path) -> None:
    from fsrfer_edge import sidecars

    engine = tmp_path / f"fer.v2.int8.0123abcd.trt{TRT}.sm87.{GPU}.b1-32-128.engine"
    assert sidecars.model_names(engine)[-1] == "fer.v2"
    assert tmp_path / "fer.v2.groups.json" in sidecars.besides(engine, ".groups.json")


def test_a_plan_files_measured_files_are_looked_for_beside_the_onnx_file_its_sidecar_names(tmp_path: Path) -> None:
    from fsrfer_edge import sidecars

    onnx = tmp_path / "models" / "fer.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(b"model")
    plan = tmp_path / "cache" / "custom.plan"
    plan.parent.mkdir()
    plan.write_bytes(b"plan")
    engine_cache.sidecar_path(plan).write_text(__import__("json").dumps(engine_cache.source_record(onnx)))
    assert sidecars.besides(plan, ".groups.json")[-1] == tmp_path / "models" / "fer.groups.json"


def test_a_measured_file_with_a_checkpoint_belongs_to_a_model_that_records_none() -> None:
    cal = _calibration("ab" * 32)
    assert cal.mismatch(("neutral", "happy"), "") is None  # type: ignore[attr-defined]
    assert "checkpoint" in (cal.mismatch(("neutral", "happy"), "cd" * 32) or "")  # type: ignore[attr-defined]


@pytest.mark.parametrize("device, shown", [(GPU, f"sm{CC} {GPU}: ok"), ("", f"sm{CC}: ok")])
def test_fsrfer_engines_lists_the_gpu_model_only_where_the_sidecar_records_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], device: str, shown: str) -> None:
    """An engine whose sidecar records no GPU model (built before they were recorded) was listed as 'sm8.7 : ok'."""
    from fsrfer_edge import engines_cli

    onnx = tmp_path / "face.onnx"
    onnx.write_bytes(b"model")
    _engine(tmp_path / "cache", onnx, _key(device=device))
    assert engines_cli.main(["--dir", str(tmp_path / "cache"), "--tensorrt-version", TRT]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if ".engine" in x)
    assert line.endswith(f"TensorRT {TRT}, {shown}"), line
