"""A lock file's name holding a symlink (planted in a folder others can write: a shared engine cache, a shared
output folder) is not followed: taking the lock truncated the file it pointed at and wrote "pid N on HOST" into it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from fsrfer_edge import engine_cache, fileio

pytestmark = pytest.mark.skipif(not fileio.has_flock() or not hasattr(os, "O_NOFOLLOW"),
                                reason="POSIX flock and O_NOFOLLOW")


def _plant(folder: Path, name: str, tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    folder.mkdir(exist_ok=True)
    (folder / name).symlink_to(victim)
    return victim


def test_the_engine_build_lock_does_not_write_through_a_planted_symlink(tmp_path: Path) -> None:
    cache = tmp_path / "engines"
    victim = _plant(cache, engine_cache.BUILD_LOCK_NAME, tmp_path)
    with engine_cache.build_lock(cache, wait_s=0) as held:
        assert not held  # no lock to be had there: builds go on without it, as in a read-only folder
    assert victim.read_text() == "precious\n"
    assert (cache / engine_cache.BUILD_LOCK_NAME).is_symlink()  # left for its owner to see


def test_the_folder_lock_does_not_write_through_a_planted_symlink(tmp_path: Path) -> None:
    out = tmp_path / "out"
    victim = _plant(out, fileio.FOLDER_LOCK_NAME, tmp_path)
    with fileio.folder_lock(out) as held:
        assert not held
    assert victim.read_text() == "precious\n"


def test_both_locks_still_work_in_a_plain_folder(tmp_path: Path) -> None:
    with engine_cache.build_lock(tmp_path / "engines", wait_s=0) as held:
        assert held and "pid" in (tmp_path / "engines" / engine_cache.BUILD_LOCK_NAME).read_text()
    (tmp_path / "out").mkdir()
    with fileio.folder_lock(tmp_path / "out") as held:
        assert held and "pid" in (tmp_path / "out" / fileio.FOLDER_LOCK_NAME).read_text()
