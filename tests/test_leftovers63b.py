"""Leftovers of the review of failing writes and long names: a Triton model replaced by a move that fails is put
back, a truncated crowd video is not renamed into place as complete, a model whose sidecar names are too long to
exist loads without them, and a DeepStream name whose derived file names would not fit is refused.
Failures are simulated with monkeypatch; tiny models and data only."""
from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from fsrfer_edge.errors import ConfigError, FsrferError, WriteError

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "fsrfer_edge" / "models" / "default.onnx"
NAME_MAX = 255


def _failure(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _model(folder: Path, name: str = "m.onnx") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(DEFAULT_MODEL, folder / name))


# ------------------------------------------------------------------------------------------------ Triton repository


def _fake_engine(d: Path, onnx_path: Path) -> Path:
    """Bytes standing in for a TensorRT plan, with the sidecar the engine builder writes (no TensorRT here)."""
    from fsrfer_edge import engine_cache
    from fsrfer_edge.export import read_model_info
    from fsrfer_edge.fileio import atomic_write_bytes, sha256_file

    info = read_model_info(onnx_path)
    key = engine_cache.EngineKey("10.13.0.35", "9.0", info.precision, 1, 32, 128)
    path = atomic_write_bytes(d / key.filename("tiny", sha256_file(onnx_path)), b"not a real plan")
    engine_cache.write_sidecar(path, key, sha256_file(onnx_path), info)
    return path


def _replace_failing(code: int, fails: Callable[[Path, Path], bool]) -> Callable[..., Any]:
    """os.replace, except that a move for which ``fails(src, dst)`` holds raises OSError ``code``."""
    real = os.replace

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if fails(Path(src), Path(dst)):
            raise _failure(code)
        real(src, dst, *args, **kwargs)

    return replace


def _into_repo(repo: Path, name: str) -> Callable[[Path, Path], bool]:
    """The move of a staged model ``name`` into ``repo``."""
    return lambda src, dst: dst == repo / name and src.name == name and ".staging-" in src.parent.name


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def two_models(tmp_path: Path) -> tuple[Path, Path]:
    pytest.importorskip("onnx")
    src = _model(tmp_path / "in")
    return src, _fake_engine(tmp_path / "in", src)


@pytest.mark.parametrize("code", [errno.EIO, errno.EACCES, errno.ENOSPC])
def test_triton_model_whose_replacement_fails_to_move_in_is_put_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   two_models: tuple[Path, Path], code: int) -> None:
    from fsrfer_edge.serving import write_triton_repo

    src, _ = two_models
    repo = write_triton_repo(tmp_path / "repo", onnx_path=src)
    before = _snapshot(repo)
    monkeypatch.setattr(os, "replace", _replace_failing(code, _into_repo(repo, "fsrfer_onnx")))
    with pytest.raises(WriteError, match="fsrfer_onnx") as info:
        write_triton_repo(repo, onnx_path=src, kind="KIND_CPU", overwrite=True)
    assert info.value.errno == code and isinstance(info.value, FsrferError) and isinstance(info.value, OSError)
    assert _snapshot(repo) == before  # the model being served is there, as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "repo"]  # no staging folder left


def test_triton_models_replaced_earlier_in_the_call_are_put_back_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    two_models: tuple[Path, Path]) -> None:
    from fsrfer_edge.serving import write_triton_repo

    src, engine = two_models
    repo = write_triton_repo(tmp_path / "repo", onnx_path=src, engine_path=engine)
    (repo / "other_model").mkdir()
    before = _snapshot(repo)
    monkeypatch.setattr(os, "replace", _replace_failing(errno.EIO, _into_repo(repo, "fsrfer_trt")))
    with pytest.raises(WriteError, match="fsrfer_trt"):
        write_triton_repo(repo, onnx_path=src, engine_path=engine, kind="KIND_CPU", overwrite=True)
    assert _snapshot(repo) == before  # fsrfer_onnx, replaced first, is the earlier one again
    assert sorted(p.name for p in repo.iterdir()) == ["fsrfer_onnx", "fsrfer_trt", "other_model"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "repo"]


def test_triton_new_model_added_before_a_failing_one_is_taken_out_again(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        two_models: tuple[Path, Path]) -> None:
    from fsrfer_edge.serving import write_triton_repo

    src, engine = two_models
    repo = write_triton_repo(tmp_path / "repo", engine_path=engine)
    before = _snapshot(repo)
    monkeypatch.setattr(os, "replace", _replace_failing(errno.ENOSPC, _into_repo(repo, "fsrfer_trt")))
    with pytest.raises(WriteError, match="fsrfer_trt"):
        write_triton_repo(repo, onnx_path=src, engine_path=engine, overwrite=True)
    assert _snapshot(repo) == before and sorted(p.name for p in repo.iterdir()) == ["fsrfer_trt"]


def test_triton_model_that_cannot_be_moved_back_is_kept_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 two_models: tuple[Path, Path]) -> None:
    from fsrfer_edge.serving import write_triton_repo

    src, _ = two_models
    repo = write_triton_repo(tmp_path / "repo", onnx_path=src)
    before = _snapshot(repo / "fsrfer_onnx")
    into = _into_repo(repo, "fsrfer_onnx")
    monkeypatch.setattr(os, "replace", _replace_failing(errno.EIO, lambda s, d: into(s, d) or s.name.startswith(
        ".old-")))
    with pytest.raises(WriteError, match="fsrfer_onnx") as info:
        write_triton_repo(repo, onnx_path=src, kind="KIND_CPU", overwrite=True)
    kept = [p for p in tmp_path.glob(".repo.staging-*/.old-fsrfer_onnx")]
    assert len(kept) == 1 and _snapshot(kept[0]) == before  # not deleted with the staging folder
    assert str(kept[0].parent) in str(info.value) and "by hand" in str(info.value)


def test_triton_new_repository_whose_rename_fails_is_a_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   two_models: tuple[Path, Path]) -> None:
    from fsrfer_edge.serving import write_triton_repo

    src, _ = two_models
    monkeypatch.setattr(os, "replace", _replace_failing(errno.EROFS, lambda s, d: d == tmp_path / "repo"))
    with pytest.raises(WriteError, match="repo"):
        write_triton_repo(tmp_path / "repo", onnx_path=src)
    assert [p.name for p in tmp_path.iterdir()] == ["in"]


def test_triton_staging_folder_that_cannot_be_removed_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               two_models: tuple[Path, Path],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    from fsrfer_edge.serving import write_triton_repo

    src, _ = two_models
    repo = write_triton_repo(tmp_path / "repo", onnx_path=src)
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: None)  # as rmtree(ignore_errors=True) failing
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge.serving.triton_repo"):
        write_triton_repo(repo, onnx_path=src, kind="KIND_CPU", overwrite=True)
    assert 'kind: KIND_CPU' in (repo / "fsrfer_onnx" / "config.pbtxt").read_text()  # written all the same
    left = list(tmp_path.glob(".repo.staging-*"))
    assert len(left) == 1 and str(left[0]) in caplog.text


def test_triton_model_copy_that_fills_the_disk_is_a_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                two_models: tuple[Path, Path]) -> None:
    from fsrfer_edge.serving import write_triton_repo

    src, _ = two_models
    repo = write_triton_repo(tmp_path / "repo", onnx_path=src)
    before = _snapshot(repo)

    def full(a: Any, b: Any, **kwargs: Any) -> None:
        Path(b).write_bytes(b"half")
        raise _failure(errno.ENOSPC)

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(WriteError, match="fsrfer_onnx.*No space left") as info:
        write_triton_repo(repo, onnx_path=src, kind="KIND_CPU", overwrite=True)
    assert info.value.errno == errno.ENOSPC
    assert _snapshot(repo) == before and sorted(p.name for p in tmp_path.iterdir()) == ["in", "repo"]


# ------------------------------------------------------------------------------------------------ sidecars


@pytest.mark.parametrize("stem_bytes", [244, 250])
def test_model_whose_sidecar_names_are_too_long_to_exist_loads_without_them(tmp_path: Path, stem_bytes: int) -> None:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer

    model = _model(tmp_path, "m" * stem_bytes + ".onnx")  # NAME.scores.json would be over 255 bytes
    assert len(model.name) <= NAME_MAX < len(model.stem + ".scores.json")
    rec = Recognizer(model)
    assert rec.model_path == model


def test_sidecar_lookup_treats_only_a_too_long_name_as_not_found(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge import sidecars

    model = tmp_path / ("m" * 248 + ".onnx")
    assert sidecars.find(model, ["a"], "", ".scores.json", lambda p: None, "scores") is None  # type: ignore[type-var]
    real = Path.is_file

    def eio(self: Path) -> bool:
        if self.name.endswith(".scores.json"):
            raise _failure(errno.EIO)
        return real(self)

    monkeypatch.setattr(Path, "is_file", eio)
    with pytest.raises(OSError) as info:
        sidecars.find(tmp_path / "m.onnx", ["a"], "", ".scores.json", lambda p: None, "scores")  # type: ignore[type-var]
    assert info.value.errno == errno.EIO


# ------------------------------------------------------------------------------------------------ DeepStream


@pytest.mark.parametrize("name", ["a" * 240, "a" * 228, "é" * 114], ids=["240", "228", "utf8-228"])
def test_deepstream_name_whose_derived_file_names_do_not_fit_is_refused_first(tmp_path: Path, name: str) -> None:
    pytest.importorskip("onnx")
    from fsrfer_edge.export.deepstream import check_deepstream, write_deepstream

    model = _model(tmp_path / "in")
    # nvinfer saves NAME.onnx_b1024_gpu0_fp16.engine at the largest batch-size: 228 + 28 bytes
    with pytest.raises(ConfigError, match="255") as info:
        write_deepstream(tmp_path / "ds", model, name)
    assert "bytes" in str(info.value) and "227" in str(info.value)
    assert not (tmp_path / "ds").exists()  # refused before anything is written
    with pytest.raises(ConfigError, match="255"):
        check_deepstream(model, name)


def test_deepstream_longest_name_that_fits_is_written(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from fsrfer_edge.export.deepstream import engine_name, write_deepstream

    name = "a" * 227
    config = write_deepstream(tmp_path / "ds", _model(tmp_path / "in"), name)
    assert config.name == f"config_infer_{name}.txt" and (tmp_path / "ds" / f"{name}_labels.txt").is_file()
    assert len(engine_name(f"{name}.onnx", 1024).encode()) == NAME_MAX


# ------------------------------------------------------------------------------------------------ crowd video

_FILL_UP = """
import resource, sys
from pathlib import Path
import numpy as np
from fsrfer_edge.crowd_cli import AtomicVideoWriter
out, limit = Path(sys.argv[1]), int(sys.argv[2])
writer = AtomicVideoWriter(out, 5.0)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))  # writes past it fail, as on a full disk
rng = np.random.default_rng(0)
try:
    for _ in range(20):
        writer.write(rng.integers(0, 255, (240, 320, 3), np.uint8))
    writer.commit()
except BaseException as exc:
    writer.discard()
    print(type(exc).__name__, exc)
else:
    print("committed")
"""


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
@pytest.mark.parametrize("limit", [2_000, 150_000])
def test_crowd_video_cut_short_by_a_full_disk_is_not_renamed_into_place(tmp_path: Path, suffix: str,
                                                                        limit: int) -> None:
    pytest.importorskip("cv2")
    import subprocess
    import sys

    out = tmp_path / f"out{suffix}"
    done = subprocess.run([sys.executable, "-c", _FILL_UP, str(out), str(limit)], capture_output=True, text=True,
                          errors="replace", timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("WriteError cannot write " + str(out)), done.stdout + done.stderr
    assert "incomplete" in done.stdout and "full disk" in done.stdout
    assert list(tmp_path.iterdir()) == []  # neither the video nor its temporary file


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_crowd_whole_video_is_committed(tmp_path: Path, suffix: str) -> None:
    pytest.importorskip("cv2")
    import numpy as np
    from _video import count_frames

    from fsrfer_edge.crowd_cli import AtomicVideoWriter

    writer = AtomicVideoWriter(tmp_path / f"out{suffix}", 7.3)
    for i in range(3):
        writer.write(np.full((33, 65, 3), 40 * i, np.uint8))
    writer.commit()
    assert count_frames(tmp_path / f"out{suffix}") == 3 and [p.name for p in tmp_path.iterdir()] == [f"out{suffix}"]


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_video_container_cut_by_one_byte_is_incomplete(tmp_path: Path, suffix: str) -> None:
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    from fsrfer_edge.crowd_cli import VIDEO_CODECS, container_problem

    path = tmp_path / f"v{suffix}"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*VIDEO_CODECS[suffix]), 5.0, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 50 * i, np.uint8))
    writer.release()
    assert container_problem(path) is None
    data = path.read_bytes()
    path.write_bytes(data[:-1])
    assert container_problem(path)
    path.write_bytes(b"")
    assert container_problem(path) == "it is empty"
