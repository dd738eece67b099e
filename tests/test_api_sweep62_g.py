"""Bad inputs to fsrfer-train / fsrfer-eval and to the TensorRT backend's public API (under the fakes of
tests/fake_trt), found by a sweep: each is refused with the package's own error naming the option, before any
work is done (not a TypeError or FileNotFoundError, nor a bad value silently taken as another: an empty path as
the current folder or as "not given", ``build="no"`` as True, a string as a list of folders)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.backends.cuda_memory import CudaPythonMemory, PyCudaMemory
from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend
from fsrfer_edge.errors import EngineError, InputError

import test_tensorrt_review  # noqa: E402
from test_tensorrt_versions import FakeGpu  # noqa: E402

engine = test_tensorrt_review.engine  # the fake engine (batch 1-8) with its sidecar, a fixture

REPO = Path(__file__).resolve().parents[1]
VERSION = "10.3.0.26"


# ---------------------------------------------------------------------------------------------
# fsrfer-train / fsrfer-eval: an empty path is not the current folder, nor "left out"
# ---------------------------------------------------------------------------------------------
def _status(main: Any, argv: list[str]) -> Any:
    """The exit status of a console script's main, returned or raised (argparse's usage errors exit)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _error_line(capsys: pytest.CaptureFixture[str], prog: str) -> str:
    (line,) = [s for s in capsys.readouterr().err.splitlines() if s.startswith(f"{prog}: error")]
    return line


@pytest.mark.parametrize("flag", ["--data", "--out"])
def test_train_refuses_an_empty_path(flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``--data ""`` trained on the config's synthetic faces and ``--out ""`` wrote runs/<name> (an unset shell
    variable, ``--out "$OUT"``): the option is refused instead."""
    pytest.importorskip("torch")
    pytest.importorskip("yaml")
    import trainer.train as train
    from trainer.cli import train_main

    def never(*args: Any, **kwargs: Any) -> None:
        pytest.fail("fsrfer-train went on to read data or train")

    monkeypatch.setattr(train, "load_data", never)
    monkeypatch.setattr(train, "run_pipeline", never)
    monkeypatch.chdir(tmp_path)
    argv = ["--config", str(REPO / "configs" / "tiny.yaml"), "--device", "cpu"]
    argv += [flag, ""] if flag == "--out" else [flag, "", "--out", str(tmp_path / "run")]
    assert _status(train_main, argv) == 2
    line = _error_line(capsys, "fsrfer-train")
    assert f"{flag} ''" in line and "empty" in line
    assert list(tmp_path.iterdir()) == []  # nothing made, runs/ included


@pytest.mark.parametrize("flag", ["--checkpoint", "--data"])
def test_eval_refuses_an_empty_path(flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """``--data ""`` was read as the current folder (an image-folder data set), ``--checkpoint ""`` as "checkpoint
    . is a directory"; neither named the option."""
    from trainer.cli import eval_main

    monkeypatch.chdir(tmp_path)
    args = {"--checkpoint": str(tmp_path / "m.onnx"), "--data": str(tmp_path / "d.npz"), flag: ""}
    argv = [a for k, v in args.items() for a in (k, v)] + ["--json", str(tmp_path / "r.json")]
    assert _status(eval_main, argv) == 2
    line = _error_line(capsys, "fsrfer-eval")
    assert f"{flag} ''" in line and "empty" in line
    assert not (tmp_path / "r.json").exists()


# ---------------------------------------------------------------------------------------------
# TensorRT backend, under the fakes
# ---------------------------------------------------------------------------------------------
@pytest.fixture()
def fakes(monkeypatch: pytest.MonkeyPatch) -> FakeGpu:
    """Fake TensorRT 10.3, cuda-python and pycuda, installed for one test."""
    return FakeGpu(monkeypatch, VERSION)




@pytest.fixture()
def onnx_file(tmp_path: Path) -> Path:
    """A file named like a model; nothing here reads it as ONNX."""
    path = tmp_path / "face.onnx"
    path.write_bytes(b"not read")
    return path


def _nothing_allocated(fakes: FakeGpu) -> bool:
    return not fakes.cudart.device and not fakes.cudart.host and not fakes.cudart.streams


@pytest.mark.parametrize("bad", ["no", "false", 1, np.nan])
def test_for_onnx_build_must_be_true_or_false(fakes: FakeGpu, onnx_file: Path, tmp_path: Path,
                                              bad: Any) -> None:
    """``build="no"`` was truthy: an engine was built (minutes on a Jetson) into the cache."""
    cache = tmp_path / "cache"
    with pytest.raises(InputError, match=r"build=.*expected True or False"):
        TensorRTBackend.for_onnx(onnx_file, build=bad, search_dirs=[tmp_path / "none"], cache_dir=cache)
    assert not cache.exists() and fakes.trt.log["deserialized"] == [] and _nothing_allocated(fakes)


@pytest.mark.parametrize("bad", [None, "8", 0, -1, 2.5, True])
def test_for_onnx_min_max_batch_must_be_an_integer_of_at_least_one(fakes: FakeGpu, onnx_file: Path,
                                                                   tmp_path: Path, bad: Any) -> None:
    """Found engines refused these (choose_engine), but with none found they went to the build: None raised
    TypeError there, and 0 or -1 were quietly read as 1."""
    cache = tmp_path / "cache"
    with pytest.raises(InputError, match=r"min_max_batch=.*expected an integer >= 1"):
        TensorRTBackend.for_onnx(onnx_file, min_max_batch=bad, build=True, search_dirs=[tmp_path / "none"],
                                 cache_dir=cache)
    assert not cache.exists() and _nothing_allocated(fakes)


def test_for_onnx_search_dirs_is_a_list_of_folders_not_one_path(fakes: FakeGpu, onnx_file: Path,
                                                                tmp_path: Path) -> None:
    """A str was iterated character by character: "./engines" searched the folders ".", "/", "e", "n"..."""
    with pytest.raises(InputError, match=r"search_dirs=.*expected a list of folders.*search_dirs=\["):
        TensorRTBackend.for_onnx(onnx_file, search_dirs=str(tmp_path / "engines"))
    with pytest.raises(InputError, match=r"search_dirs=.*expected a list of folders"):
        TensorRTBackend.for_onnx(onnx_file, search_dirs=tmp_path / "engines")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"search_dirs\[1\]"):
        TensorRTBackend.for_onnx(onnx_file, search_dirs=[tmp_path, None])  # type: ignore[list-item]
    assert _nothing_allocated(fakes)


@pytest.mark.parametrize("bad", ["no", "false", 1, np.nan])
def test_close_memory_must_be_true_false_or_none(fakes: FakeGpu, engine: Path, bad: Any) -> None:
    """``close_memory="no"`` was read as True: the caller's memory layer was closed with the backend."""
    mem = PyCudaMemory(0)
    with pytest.raises(InputError, match=r"close_memory=.*expected True, False or None"):
        TensorRTBackend(engine, memory=mem, close_memory=bad)
    with mem.context():  # still the caller's, still open
        pass
    assert fakes.trt.log["deserialized"] == []


@pytest.mark.parametrize("name", ["missing.onnx", "", "folder"])
def test_an_onnx_path_that_is_no_file_is_an_engine_error(fakes: FakeGpu, engine: Path,
                                                         tmp_path: Path, name: str) -> None:
    """A missing ONNX file raised FileNotFoundError (a folder IsADirectoryError) from the stale-engine check; an
    empty one is refused as a path, not read as the current folder."""
    (tmp_path / "folder").mkdir()
    onnx_path = str(tmp_path / name) if name else ""
    with pytest.raises((EngineError, InputError), match=r"onnx_path"):
        TensorRTBackend(engine, onnx_path=onnx_path)
    assert fakes.trt.log["deserialized"] == [] and _nothing_allocated(fakes)


@pytest.mark.parametrize("arg, bad", [("engine_path", None), ("engine_path", 3), ("onnx_path", 2.5),
                                      ("onnx_path", -1), ("onnx_path", b"m.onnx")])
def test_a_path_argument_that_is_no_path_is_an_input_error(fakes: FakeGpu, engine: Path, arg: str,
                                                           bad: Any) -> None:
    """None or a number raised TypeError, -1 "negative file descriptor"; an int would be opened as a file
    descriptor (``True`` as 1: stdout, closed after the hash was read)."""
    kw = {"engine_path": engine, arg: bad}
    with pytest.raises(InputError, match=rf"{arg}"):
        TensorRTBackend(**kw)
    assert fakes.trt.log["deserialized"] == [] and _nothing_allocated(fakes)


# ---------------------------------------------------------------------------------------------
# CUDA memory layer
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [CudaPythonMemory, PyCudaMemory])
def test_memory_sizes_are_whole_numbers_of_at_least_zero(fakes: FakeGpu, cls: type) -> None:
    mem = cls(0)
    for bad in (-1, 2.5, None, True, "16"):
        with pytest.raises(InputError, match=r"nbytes=.*expected an integer >= 0"):
            mem.alloc_device(bad)
    for shape in ((-1, 3), (2, 2.5), None, 4, ("2",)):
        with pytest.raises(InputError, match=r"shape=.*expected a tuple of integers >= 0"):
            mem.alloc_host(shape, np.float32)
    with pytest.raises(InputError, match=r"dtype=.*expected a NumPy number type"):
        mem.alloc_host((2,), "no")
    with pytest.raises(InputError, match=r"dtype=.*expected a NumPy number type"):
        mem.alloc_host((2,), object)
    assert _nothing_allocated(fakes) and not fakes.pycuda.state["live"]
    buf, arr = mem.alloc_device(np.int64(8)), mem.alloc_host([2], np.float32)  # numpy ints and lists still do
    assert buf.nbytes == 8 and arr.shape == (2,)
    mem.free(buf)
    mem.free(arr)


@pytest.mark.parametrize("cls", [CudaPythonMemory, PyCudaMemory])
def test_a_copy_into_a_read_only_array_is_refused(fakes: FakeGpu, cls: type) -> None:
    """The copy wrote through the array's pointer into memory NumPy (or a bytes object) holds read-only."""
    mem = cls(0)
    stream, buf = mem.create_stream(), mem.alloc_device(16)
    frozen = np.frombuffer(bytes(16), np.float32)
    with pytest.raises(InputError, match=r"read-only"):
        mem.dtoh_async(frozen, buf, stream)
    assert not frozen.any()
    mem.free(buf)
    mem.free(stream)
