"""The one flock primitive behind the trainer's folder lock and the engine cache's build and prune locks."""
import errno
import os
import sys

import pytest

from fsrfer_edge import engine_cache, fileio


def _open(path):
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)


def test_try_flock_says_taken_busy_or_none(tmp_path, monkeypatch):
    a, b = _open(tmp_path / "l"), _open(tmp_path / "l")
    try:
        assert fileio.try_flock(a) is True
        assert fileio.try_flock(b) is False  # another open of the file holds it
        fileio.write_lock_note(a)
        assert fileio.lock_note(b).startswith(f"pid {os.getpid()} on ")
        fileio.release_flock(a)
        assert fileio.try_flock(b) is True
        import fcntl

        def no_lock(fd, op):
            raise OSError(errno.ENOLCK, "No locks available")
        monkeypatch.setattr(fcntl, "flock", no_lock)
        assert fileio.try_flock(a) is None
        monkeypatch.setitem(sys.modules, "fcntl", None)  # as on Windows
        assert fileio.try_flock(a) is None and not fileio.has_flock()
    finally:
        os.close(a)
        os.close(b)


def test_a_file_system_answering_eacces_reads_as_busy_for_every_lock(tmp_path, monkeypatch):
    """flock's busy answer is EWOULDBLOCK on Linux; some systems give EACCES. The build lock read it as busy, the
    trainer's folder lock did not (it went on without a lock, so two runs could write one folder)."""
    import fcntl

    def busy(fd, op):
        raise OSError(errno.EACCES, "Permission denied")
    (tmp_path / fileio.FOLDER_LOCK_NAME).write_text("pid 7 on elsewhere since then\n")
    monkeypatch.setattr(fcntl, "flock", busy)
    with pytest.raises(fileio.FolderInUse, match="pid 7 on elsewhere"):
        with fileio.folder_lock(tmp_path):
            pass
    with engine_cache.build_lock(tmp_path, wait_s=0, announce=False) as held:
        assert held is False
