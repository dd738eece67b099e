"""A TensorRT engine is executable code (NVIDIA's security guidance: deserialize only engines you built or received
over a trusted channel). An engine file another user owns, or any user may write, was deserialized all the same,
from a shared cache folder (FSRFER_ENGINE_DIR) as from a path given: now refused before TensorRT sees its bytes,
checked on the file as opened (no swap between a check and the read)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from fsrfer_edge.backends.tensorrt_backend import read_engine_bytes
from fsrfer_edge.errors import EngineError

pytestmark = pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners and modes")


def _engine(tmp_path: Path) -> Path:
    path = tmp_path / "face.fp16.1a2b3c4d.trt10.3.0.26.sm87.orin-16sm-61g.b1-32-128.engine"
    path.write_bytes(b"plan")
    os.chmod(path, 0o644)
    return path


def test_an_engine_of_this_user_is_read(tmp_path: Path) -> None:
    path = _engine(tmp_path)
    assert read_engine_bytes(path) == b"plan"
    os.chmod(path, 0o664)  # group-writable: a umask of 002 (user private groups) writes engines so
    assert read_engine_bytes(path) == b"plan"


def test_an_engine_anyone_may_write_is_refused(tmp_path: Path) -> None:
    path = _engine(tmp_path)
    os.chmod(path, 0o666)
    with pytest.raises(EngineError, match=r"writable by every user.*executable code.*fsrfer-export --engine"):
        read_engine_bytes(path)


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to give a file away")
def test_an_engine_another_user_owns_is_refused(tmp_path: Path) -> None:
    path = _engine(tmp_path)
    os.chown(path, 12345, 12345)
    with pytest.raises(EngineError, match=r"owned by user id 12345.*executable code"):
        read_engine_bytes(path)


def test_a_root_owned_engine_is_read_by_any_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _engine(tmp_path)
    if os.stat(path).st_uid != 0:
        pytest.skip("needs a root-owned file (tests run as root here)")
    monkeypatch.setattr(os, "getuid", lambda: 4321)  # a user reading a system-wide install's engine
    assert read_engine_bytes(path) == b"plan"
