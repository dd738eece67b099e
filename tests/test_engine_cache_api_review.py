"""Adversarial review of engine_cache's public functions as a library user calls them: arguments of the wrong type
or shape get an InputError that says what was received and what was expected, never a TypeError from deep inside,
a silently empty answer, or (prune) the removal of every engine. Plain files stand in for engines."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from fsrfer_edge import engine_cache
from fsrfer_edge.engine_cache import EngineKey
from fsrfer_edge.errors import InputError
from fsrfer_edge.metadata import ModelInfo

TRT = "10.3.0.26"
OLD = 2 * engine_cache.UNFINISHED_GRACE_S


def _engine(folder: Path, precision: str = "fp16", batches: tuple[int, int, int] = (1, 8, 64)) -> Path:
    onnx = folder / "face.onnx"
    onnx.write_bytes(b"a model")
    key = EngineKey(TRT, "8.7", precision, *batches, device="orin")
    sha = hashlib.sha256(onnx.read_bytes()).hexdigest()
    path = folder / key.filename("face", sha)
    path.write_bytes(b"plan")
    engine_cache.write_sidecar(path, key, sha, ModelInfo(precision=precision), extra=engine_cache.source_record(onnx))
    t = time.time() - OLD
    for p in (path, engine_cache.sidecar_path(path)):
        os.utime(p, (t, t))
    return path


# 1. A TensorRT version that is no full version: every engine was judged stale, and prune removed them all.
@pytest.mark.parametrize("version", ["10", "", "abc", "10.3", 10, 10.3, b"10.3.0.26"])
def test_prune_and_list_refuse_a_version_that_is_not_a_full_one(tmp_path: Path, version: Any) -> None:
    engine = _engine(tmp_path)
    with pytest.raises(InputError, match=r"tensorrt_version=.*expected"):
        engine_cache.prune(tmp_path, version)
    assert engine.exists() and engine_cache.sidecar_path(engine).exists()  # nothing removed
    with pytest.raises(InputError, match=r"tensorrt_version=.*expected"):
        engine_cache.list_engines(tmp_path, version)


def test_prune_and_list_accept_full_versions(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    assert [e.stale for e in engine_cache.list_engines(tmp_path, TRT)] == [None]
    assert [e.stale for e in engine_cache.list_engines(tmp_path, None)] == [None]
    assert engine_cache.prune(tmp_path, "10.0.0b6", dry_run=True)[0][0].path == engine  # a pre-release's version


# 2. min_max_batch 0, negative, a bool or not a number: silently taken as 1, or a TypeError.
@pytest.mark.parametrize("value", [0, -1, True, None, "8", 2.5])
def test_choose_engine_refuses_a_bad_min_max_batch(tmp_path: Path, value: Any) -> None:
    engine = _engine(tmp_path)
    candidates = [(engine_cache.read_sidecar(engine)["key"], engine)]
    with pytest.raises(InputError, match=r"min_max_batch=.*expected an integer >= 1"):
        engine_cache.choose_engine(candidates, value)
    assert engine_cache.choose_engine(candidates, 1) == engine


# 3. A folder argument that is a file: listed and pruned as an empty folder, so a user who named an engine file
# heard "nothing stale" instead of being told.
def test_list_and_prune_refuse_a_file_for_a_folder(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    for call in (engine_cache.list_engines, engine_cache.prune):
        with pytest.raises(InputError, match=r"is not a folder.*expected"):
            call(engine)
    # a folder that does not exist yet (a cache before first use) still has no entries
    assert engine_cache.list_engines(tmp_path / "none") == []
    assert engine_cache.prune(tmp_path / "none") == ([], [])


# 4. Paths of the wrong type: a TypeError from pathlib, or (read_sidecar) "engine None has no sidecar None.json".
@pytest.mark.parametrize("value", [None, 5, b"x.engine", ""])
def test_path_arguments_of_the_wrong_type(tmp_path: Path, value: Any) -> None:
    with pytest.raises(InputError, match=r"folder=.*expected a path"):
        engine_cache.list_engines(value)
    with pytest.raises(InputError, match=r"folder=.*expected a path"):
        engine_cache.prune(value)
    with pytest.raises(InputError, match=r"engine_path=.*expected a path"):
        engine_cache.read_sidecar(value)
    with pytest.raises(InputError, match=r"engine_path=.*expected a path"):
        engine_cache.check_engine(value, TRT, "8.7")
