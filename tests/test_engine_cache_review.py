"""Review fixes of the engine cache (fsrfer_edge/engine_cache.py): which engine is chosen when an FP32 file has
engines of two precisions, prune against a concurrent build, engines of dot-named models, and killed builds'
partial files where there is no flock. Plain files stand in for engines: nothing here needs TensorRT."""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fsrfer_edge import engine_cache
from fsrfer_edge.engine_cache import EngineKey
from fsrfer_edge.errors import EngineError, InputError
from fsrfer_edge.metadata import ModelInfo

TRT = "10.3.0.26"
CC = "8.7"
GPU = "orin-16sm-61g"
OLD = 2 * engine_cache.UNFINISHED_GRACE_S  # seconds: past the grace period in which a build may still write


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def _engine(folder: Path, onnx: Path, precision: str, batches: tuple[int, int, int], age: float = OLD) -> Path:
    """A stand-in engine built from ``onnx``, with its sidecar, as the builder names and writes them."""
    key = EngineKey(TRT, CC, precision, *batches, device=GPU)
    sha = hashlib.sha256(onnx.read_bytes()).hexdigest()
    path = folder / key.filename(engine_cache.model_stem(onnx), sha)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(f"plan {precision} {batches}".encode())
    engine_cache.write_sidecar(path, key, sha, ModelInfo(precision=precision),
                               extra=engine_cache.source_record(onnx))
    for p in (path, engine_cache.sidecar_path(path)):
        _age(p, age)
    return path


# ---------------------------------------------------------------------------------------------
# 1. An FP32 file with an FP32 engine (fsrfer-export --engine) and an FP16 one (first use)
# ---------------------------------------------------------------------------------------------


def _keyed(*engines: Path) -> list[tuple[EngineKey, Path]]:
    return [(engine_cache.read_sidecar(e)["key"], e) for e in engines]


@pytest.mark.parametrize("fp32_batches,fp16_batches", [((1, 8, 64), (1, 32, 128)), ((1, 32, 128), (1, 8, 64)),
                                                       ((1, 32, 128), (1, 32, 128))])
def test_choose_engine_follows_precision_not_batch_sizes(tmp_path: Path, fp32_batches: tuple[int, int, int],
                                                         fp16_batches: tuple[int, int, int]) -> None:
    onnx = tmp_path / "face.fp32.onnx"
    onnx.write_bytes(b"an fp32 model")
    # the FP32 engine beside the file sorts first by path; whichever batch range each has, the same one wins
    fp32 = _engine(tmp_path / "a", onnx, "fp32", fp32_batches)
    fp16 = _engine(tmp_path / "b", onnx, "fp16", fp16_batches)
    for order in (_keyed(fp32, fp16), _keyed(fp16, fp32)):
        for min_max_batch in (1, 64, 100, 1000):
            # nothing asked: the precision first use builds for an FP32 file (FP16)
            assert engine_cache.choose_engine(order, min_max_batch) == fp16
            assert engine_cache.choose_engine(order, min_max_batch, precision="fp32") == fp32
            assert engine_cache.choose_engine(order, min_max_batch, precision="fp16") == fp16
    # an FP32 engine alone is still taken when nothing is asked (it is the only one built from the file)
    assert engine_cache.choose_engine(_keyed(fp32), 1) == fp32
    with pytest.raises(EngineError, match=r"int8.*found: fp16, fp32"):
        engine_cache.choose_engine(_keyed(fp32, fp16), 1, precision="int8")
    with pytest.raises(InputError, match="'FP16'"):
        engine_cache.choose_engine(_keyed(fp32, fp16), 1, precision="FP16")  # not silently lower-cased


def test_choose_engine_keeps_the_batch_rule_within_a_precision(tmp_path: Path) -> None:
    onnx = tmp_path / "face.fp16.onnx"
    onnx.write_bytes(b"an fp16 model")
    small = _engine(tmp_path / "a", onnx, "fp16", (1, 4, 8))
    big = _engine(tmp_path / "b", onnx, "fp16", (1, 32, 128))
    cands = _keyed(big, small)
    assert engine_cache.choose_engine(cands, 1) == small  # the smallest that holds the batch
    assert engine_cache.choose_engine(cands, 64) == big
    assert engine_cache.choose_engine(cands, 1000) == big  # none holds it: the largest
    with pytest.raises(EngineError, match="no engine"):
        engine_cache.choose_engine([], 1)


def test_find_engine_prefers_first_use_precision_over_batch_sizes(tmp_path: Path) -> None:
    from fsrfer_edge.backends.tensorrt_backend import find_engine

    onnx = tmp_path / "models" / "face.fp32.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(b"an fp32 model")
    _engine(onnx.parent, onnx, "fp32", (1, 8, 64))  # fsrfer-export --engine --max-batch 64, beside the file
    fp16 = _engine(tmp_path / "cache", onnx, "fp16", (1, 32, 128))  # first use, in the cache
    assert find_engine(onnx, TRT, CC, [onnx.parent, tmp_path / "cache"], 1, GPU) == fp16


# ---------------------------------------------------------------------------------------------
# 2. prune while another process builds into the folder
# ---------------------------------------------------------------------------------------------


class _Builder:
    """Holds ``folder``'s build lock from another thread (flock conflicts across open files as across processes)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.holding = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with engine_cache.build_lock(self.folder) as held:
            assert held
            self.holding.set()
            self.done.wait(10)

    def __enter__(self) -> "_Builder":
        self.thread.start()
        assert self.holding.wait(5)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.done.set()
        self.thread.join(5)


@pytest.mark.skipif(sys.platform == "win32", reason="needs flock")
def test_prune_leaves_the_folder_alone_while_a_build_holds_its_lock(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A build rebuilds an engine whose sidecar was lost: it renames the new engine over the old one, then writes the
    sidecar. prune listed the old one as stale just before; it deleted the engine the build had just put in place."""
    onnx = tmp_path / "face.fp16.onnx"
    onnx.write_bytes(b"an fp16 model")
    cache = tmp_path / "cache"
    target = _engine(cache, onnx, "fp16", (1, 32, 128))
    engine_cache.sidecar_path(target).unlink()  # lost: stale, and what the build will replace
    leftover = cache / "gone.fp16.0.engine.json"  # a sidecar without engine: stale too
    leftover.write_text("{}")
    real_list = engine_cache.list_engines
    built: list[Path] = []

    def build_renames() -> None:  # the build renames its new engine into place, then writes its sidecar
        if built:
            return
        fresh = cache / ".new.tmp"
        fresh.write_bytes(b"new plan")
        os.replace(fresh, target)
        engine_cache.write_sidecar(target, EngineKey(TRT, CC, "fp16", 1, 32, 128, device=GPU),
                                   hashlib.sha256(onnx.read_bytes()).hexdigest(), ModelInfo(precision="fp16"))
        built.append(target)

    def listed_then_built(*args: Any, **kwargs: Any) -> list[engine_cache.CachedEngine]:
        out = real_list(*args, **kwargs)
        build_renames()  # just after prune listed the old engine as stale
        return out

    with _Builder(cache):
        monkeypatch.setattr(engine_cache, "list_engines", listed_then_built)
        for dry_run in (False, True):
            result = engine_cache.prune(cache, dry_run=dry_run)
            build_renames()  # (where prune did not list, the build goes on all the same)
            assert target.read_bytes() == b"new plan" and engine_cache.sidecar_path(target).exists()
            assert leftover.exists() and result == ([], [])
        monkeypatch.setattr(engine_cache, "list_engines", real_list)
    # The build is over: the stale entries go, the new engine stays.
    removed, errors = engine_cache.prune(cache)
    assert [e.path.name for e in removed] == ["gone.fp16.0.engine"] and not errors
    assert target.exists() and not leftover.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="needs flock")
def test_fsrfer_engines_says_why_it_left_stale_engines_during_a_build(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str],
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    from fsrfer_edge import engines_cli

    lost = tmp_path / "lost.engine"
    lost.write_bytes(b"plan")
    _age(lost, OLD)
    with _Builder(tmp_path), caplog.at_level(logging.INFO, logger="fsrfer_edge.engine_cache"):
        assert engines_cli.main(["--prune", "--dir", str(tmp_path), "--tensorrt-version", TRT]) == 0
    assert lost.exists() and "removed 0 stale" in capsys.readouterr().out
    assert "an engine build holds the lock" in caplog.text and "again once it ends" in caplog.text
    assert engines_cli.main(["--prune", "--dir", str(tmp_path), "--tensorrt-version", TRT]) == 0
    assert not lost.exists() and "removed 1 stale" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# 3. Engines of a model whose file name starts with '.'
# ---------------------------------------------------------------------------------------------


def test_engines_of_a_dot_named_model_are_listed_and_pruned(tmp_path: Path) -> None:
    onnx = tmp_path / ".face.fp32.onnx"
    onnx.write_bytes(b"an fp32 model")
    cache = tmp_path / "cache"
    valid = _engine(cache, onnx, "fp16", (1, 32, 128))
    lost = _engine(cache, onnx, "fp16", (1, 8, 64))
    engine_cache.sidecar_path(lost).unlink()
    assert valid.name.startswith(".face.") and lost.name.startswith(".face.")
    listed = {e.path: e.stale for e in engine_cache.list_engines(cache, TRT)}
    assert listed.keys() == {valid, lost} and listed[valid] is None and "no sidecar" in str(listed[lost])
    onnx.write_bytes(b"a new version")  # the model updated in place: its engine can never run again
    removed, errors = engine_cache.prune(cache, TRT)
    assert sorted(e.path for e in removed) == sorted([valid, lost]) and not errors
    assert not valid.exists() and not engine_cache.sidecar_path(valid).exists() and not lost.exists()


# ---------------------------------------------------------------------------------------------
# 4. Killed builds' partial files where there is no flock (Windows)
# ---------------------------------------------------------------------------------------------


def test_partial_files_go_after_the_lock_wait_where_there_is_no_flock(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    recent = tmp_path / ".face.fp16.abc.tmp"  # past the grace period, but a build may still be running
    killed = tmp_path / ".face.fp16.def.tmp"
    for p, age in ((recent, OLD), (killed, engine_cache.BUILD_LOCK_WAIT_S + 60)):
        p.write_bytes(b"onnx")
        _age(p, age)
    monkeypatch.setitem(sys.modules, "fcntl", None)  # import fcntl fails, as on Windows
    with engine_cache.build_lock(tmp_path) as held:
        assert not held
    assert [e.path for e in engine_cache.list_engines(tmp_path) if e.stale] == [killed]
    removed, errors = engine_cache.prune(tmp_path)
    assert [e.path for e in removed] == [killed] and not errors
    assert recent.exists() and not killed.exists()
