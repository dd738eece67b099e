"""Review fixes of the export, engine-cache and Triton library code: boolean options that must be bools, prune
against the same TensorRT release written longer or shorter, EngineKey's checks, path arguments of the cache's
helpers, an eval archive without its split, calibration inputs as the caller's input, and folders given as files.
Plain files stand in for engines: nothing here needs TensorRT."""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from fsrfer_edge import engine_cache
from fsrfer_edge.engine_cache import EngineKey
from fsrfer_edge.errors import DataError, EngineError, InputError, ModelError
from fsrfer_edge.export import calib
from fsrfer_edge.metadata import ModelInfo

TRT = "10.3.0.26"
CC = "8.7"
GPU = "orin-16sm-61g"
OLD = 2 * engine_cache.UNFINISHED_GRACE_S


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx", reason="onnx not installed (pip install -e '.[export]')")
    pytest.importorskip("torch", reason="torch is needed to make the tiny test models")
    from _onnx_models import make_tiny_onnx

    return make_tiny_onnx(tmp_path_factory.mktemp("models") / "tiny.onnx")


def _engine(folder: Path, onnx: Path, version: str = TRT) -> Path:
    """A stand-in engine built from ``onnx`` with TensorRT ``version``, with its sidecar, old enough to be judged."""
    key = EngineKey(version, CC, "fp16", 1, 8, 16, device=GPU)
    sha = hashlib.sha256(onnx.read_bytes()).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / key.filename(engine_cache.model_stem(onnx), sha)
    path.write_bytes(b"plan")
    engine_cache.write_sidecar(path, key, sha, ModelInfo(precision="fp16"))
    t = os.stat(path).st_mtime - OLD
    for p in (path, engine_cache.sidecar_path(path)):
        os.utime(p, (t, t))
    return path


# ---------------------------------------------------------------------------------------------
# 1. Boolean options of the writers are bools
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["no", 0, 1, None, "False"])
def test_write_triton_repo_refuses_an_overwrite_that_is_not_a_bool(tiny: Path, tmp_path: Path, flag: Any) -> None:
    """overwrite="no" was true: the models already in the repository were replaced."""
    from fsrfer_edge.serving import write_triton_repo

    out = write_triton_repo(tmp_path / "repo", onnx_path=tiny)
    config = (out / "fsrfer_onnx" / "config.pbtxt").read_text()
    with pytest.raises(InputError, match=rf"overwrite={flag!r}; expected True or False"):
        write_triton_repo(out, onnx_path=tiny, overwrite=flag, instances=2)
    assert (out / "fsrfer_onnx" / "config.pbtxt").read_text() == config
    write_triton_repo(out, onnx_path=tiny, overwrite=np.bool_(True), instances=2)  # type: ignore[arg-type]
    assert "count: 2" in (out / "fsrfer_onnx" / "config.pbtxt").read_text()


@pytest.mark.parametrize("flag", ["no", 1, None])
def test_deepstream_writers_refuse_an_engine_flag_that_is_not_a_bool(tiny: Path, tmp_path: Path, flag: Any) -> None:
    """engine="no" was true: a TensorRT build was attempted (or refused as for an FP32 file) on a string."""
    from fsrfer_edge.export.deepstream import check_deepstream, write_deepstream

    with pytest.raises(InputError, match=rf"engine={flag!r}; expected True or False"):
        write_deepstream(tmp_path / "ds", tiny, engine=flag)
    with pytest.raises(InputError, match=rf"engine={flag!r}; expected True or False"):
        check_deepstream(tiny, engine=flag)
    assert not (tmp_path / "ds").exists()
    assert write_deepstream(tmp_path / "ds", tiny, engine=np.bool_(False)).is_file()  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# 2. prune against the same TensorRT release written longer or shorter
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["10.3.0", "10.3.0.26.1"])
def test_prune_refuses_the_same_release_written_otherwise(tmp_path: Path, given: str) -> None:
    """prune(folder, '10.3.0') beside engines of 10.3.0.26 removed them all as stale (the CLI refuses it)."""
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"model")
    engine = _engine(tmp_path / "cache", onnx)
    for dry_run in (True, False):
        with pytest.raises(InputError, match=rf"tensorrt_version={given!r}.*10\.3\.0\.26 is the same release"):
            engine_cache.prune(tmp_path / "cache", given, dry_run=dry_run)
    assert engine.is_file() and engine_cache.sidecar_path(engine).is_file()
    # another release is an upgrade: its engines go; and the exact version beside one written otherwise is fine
    other = _engine(tmp_path / "cache", onnx, "10.4.0.1")
    removed, errors = engine_cache.prune(tmp_path / "cache", TRT)
    assert [e.path for e in removed] == [other] and errors == [] and engine.is_file()


# ---------------------------------------------------------------------------------------------
# 3. EngineKey checks its fields
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    ((10.3, CC, "fp16", 1, 8, 16), r"tensorrt_version=10\.3; expected"),
    (("", CC, "fp16", 1, 8, 16), r"tensorrt_version=''; expected"),
    (("10.3", CC, "fp16", 1, 8, 16), r"tensorrt_version='10\.3'; expected"),
    (("10.3.0/x", CC, "fp16", 1, 8, 16), r"tensorrt_version='10\.3\.0/x'; expected"),
    ((TRT, 8.7, "fp16", 1, 8, 16), r"compute_capability=8\.7; expected"),
    ((TRT, "sm87", "fp16", 1, 8, 16), r"compute_capability='sm87'; expected"),
    ((TRT, CC, "FP16", 1, 8, 16), r"precision='FP16'; expected one of"),
    ((TRT, CC, "fp16", "1", 8, 16), r"min_batch='1'; expected an integer"),
    ((TRT, CC, "fp16", True, 8, 16), r"min_batch=True; expected an integer"),
    ((TRT, CC, "fp16", 1, 8.0, 16), r"opt_batch=8\.0; expected an integer"),
    ((TRT, CC, "fp16", 0, 8, 16), r"min=0 opt=8 max=16; expected 1 <= min <= opt <= max"),
    ((TRT, CC, "fp16", 1, 32, 16), r"min=1 opt=32 max=16; expected 1 <= min <= opt <= max"),
    ((TRT, CC, "fp16", 1, 8, 16, 5), r"device=5; expected"),
    ((TRT, CC, "fp16", 1, 8, 16, "orin/16"), r"device='orin/16'; expected"),
])
def test_engine_key_refuses_fields_that_would_make_a_nonsense_file_name(args: tuple, words: str) -> None:
    with pytest.raises(InputError, match=words):
        EngineKey(*args)


def test_engine_key_keeps_valid_keys_and_stores_numpy_batches_as_ints(tmp_path: Path) -> None:
    key = EngineKey(TRT, CC, "fp16", np.int64(1), np.int32(8), np.int64(16), GPU)
    assert all(type(b) is int for b in (key.min_batch, key.opt_batch, key.max_batch))
    assert key.filename("face", "ab" * 32) == f"face.fp16.abababab.trt{TRT}.sm87.{GPU}.b1-8-16.engine"
    assert EngineKey("8.5.2.2", "7.2", "int8", 1, 1, 1).device == ""  # sidecars from before devices were recorded
    assert EngineKey("10.0.0b6", "9.0", "fp32", 2, 4, 4, "nvidia-h100-132sm-80g").max_batch == 4
    # a sidecar with a nonsense key is corrupt, as before
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    engine_cache.write_sidecar(engine, key, "0" * 64, ModelInfo())
    doc = engine_cache.sidecar_path(engine).read_text().replace('"fp16"', '"fp17"')
    engine_cache.sidecar_path(engine).write_text(doc)
    with pytest.raises(EngineError, match="corrupt"):
        engine_cache.read_sidecar(engine)


# ---------------------------------------------------------------------------------------------
# 4. Path arguments of prune_replaced, build_lock and make_staging_folder
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [None, 3, b"/tmp", "", "  "])
def test_cache_helpers_refuse_a_path_that_is_no_path(tmp_path: Path, bad: Any) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"model")
    with pytest.raises(InputError, match=r"folder=.*; expected a path"):
        engine_cache.prune_replaced(bad, onnx, GPU)
    with pytest.raises(InputError, match=r"onnx_path=.*; expected a path"):
        engine_cache.prune_replaced(tmp_path, bad, GPU)
    with pytest.raises(InputError, match=r"folder=.*; expected a path"):
        with engine_cache.build_lock(bad):
            pass
    with pytest.raises(InputError, match=r"folder=.*; expected a path"):
        engine_cache.make_staging_folder(bad, "m")


def test_cache_helpers_refuse_other_bad_arguments(tmp_path: Path) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"model")
    with pytest.raises(InputError, match=r"device=None; expected"):
        engine_cache.prune_replaced(tmp_path, onnx, None)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"onnx_path=.* is a directory, not a file; expected an \.onnx file"):
        engine_cache.prune_replaced(tmp_path, tmp_path, GPU)
    for name in (None, "", "a/b"):
        with pytest.raises(InputError, match=r"name=.*; expected"):
            engine_cache.make_staging_folder(tmp_path, name)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"folder=.* is not a folder"):
        engine_cache.make_staging_folder(onnx, "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    stage = engine_cache.make_staging_folder(tmp_path, "m")  # still works
    assert stage.is_dir() and stage.name.startswith(".m.staging-")
    assert engine_cache.prune_replaced(tmp_path / "none", onnx, GPU) == []
    with engine_cache.build_lock(tmp_path / "a_file") as held:  # a file to lock: no lock, as before
        assert held in (True, False)


# ---------------------------------------------------------------------------------------------
# 5. load_labelled: an archive with splits but no val rows
# ---------------------------------------------------------------------------------------------


def _faces(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 8, 8)).astype(np.uint8)


def test_load_labelled_refuses_an_archive_whose_splits_hold_no_val_rows(tmp_path: Path) -> None:
    """The accuracy gate scored the training rows, with a warning, when the archive had no val rows."""
    path = tmp_path / "train_only.npz"
    np.savez(path, images=_faces(6), labels=np.arange(6) % 7, split=np.array(["train"] * 4 + ["test"] * 2))
    with pytest.raises(DataError, match=r"train_only\.npz has a 'split' array but no 'val' rows.*"
                                        r"\['test', 'train'\].*Expected"):
        calib.load_labelled(path)
    assert calib.load_labelled(path, split="test")[1].tolist() == [4, 5]
    assert len(calib.load_labelled(path, split=None)[1]) == 6  # every row, asked for
    plain = tmp_path / "plain.npz"  # no split array: all rows, as documented
    np.savez(plain, images=_faces(3), labels=np.array([0, 1, 2]))
    assert calib.load_labelled(plain)[1].tolist() == [0, 1, 2]
    # calibration faces still fall back to every row, with a warning (calibration is no measurement)
    assert len(calib.load_faces(tmp_path / "train_only.npz", split="val")) == 6


def test_load_labelled_names_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"evaluation data .* is a folder; expected an \.npz"):
        calib.load_labelled(tmp_path)


# ---------------------------------------------------------------------------------------------
# 6. quantize_int8: calibration inputs of the wrong dtype or shape are the caller's input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, words", [
    (np.zeros((4, 1, 48, 48), np.float64), "dtype float64"),
    (np.zeros((4, 48, 48), np.float32), r"shape \(4, 48, 48\)"),
    (np.full((4, 1, 48, 48), np.nan, np.float32), "NaN or infinite"),
])
def test_quantize_int8_calibration_inputs_of_the_wrong_kind_are_input_errors(tiny: Path, tmp_path: Path, bad: Any,
                                                                           words: str) -> None:
    pytest.importorskip("onnxruntime.quantization", reason="onnxruntime not installed")
    from fsrfer_edge.export.quantize import quantize_int8

    with pytest.raises(InputError, match=words):
        quantize_int8(tiny, tmp_path / "q.onnx", bad)
    assert not (tmp_path / "q.onnx").exists()


# ---------------------------------------------------------------------------------------------
# 7. A folder given as an ONNX file (or an engine) is named as a folder
# ---------------------------------------------------------------------------------------------


def test_export_functions_name_a_folder_given_as_the_onnx_file(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="onnx not installed (pip install -e '.[export]')")
    from fsrfer_edge.export import onnx_export, quantize

    folder = tmp_path / "model.onnx"
    folder.mkdir()
    calls: list[Callable[[], Any]] = [
             lambda: quantize.convert_fp16(folder, tmp_path / "h.onnx"),
             lambda: onnx_export.load_onnx(folder),
             lambda: onnx_export.read_model_info(folder),
             lambda: onnx_export.simplify(folder, tmp_path / "s.onnx")]
    if importlib.util.find_spec("onnxruntime") is not None:
        calls.append(lambda: onnx_export.ort_session(folder))
    for call in calls:
        with pytest.raises(ModelError, match=r"model\.onnx is a directory, not a file; expected an \.onnx file"):
            call()


def test_triton_and_engine_checks_name_a_folder(tiny: Path, tmp_path: Path) -> None:
    from fsrfer_edge.serving import write_triton_repo

    folder = tmp_path / "m.onnx"
    folder.mkdir()
    with pytest.raises(ModelError, match=r"m\.onnx is a directory, not a file; expected an \.onnx file"):
        write_triton_repo(tmp_path / "repo", onnx_path=folder)
    plan = tmp_path / "m.engine"
    plan.mkdir()
    with pytest.raises(ModelError, match=r"m\.engine is a directory, not a file; expected a TensorRT engine"):
        write_triton_repo(tmp_path / "repo", engine_path=plan)
    with pytest.raises(EngineError, match=r"m\.engine is a directory, not a file; expected a TensorRT engine"):
        engine_cache.check_engine(plan, TRT, CC)
    assert not (tmp_path / "repo").exists()
