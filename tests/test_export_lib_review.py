"""Review of the export library's calibration and quantization API with bad inputs (tiny data, CPU)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fsrfer_edge.errors import ConfigError, DataError, InputError
from fsrfer_edge.export import calib


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from _onnx_models import make_tiny_onnx

    return make_tiny_onnx(tmp_path_factory.mktemp("m") / "tiny.onnx")


def _calib_inputs(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 1, 48, 48)).astype(np.float32)


@pytest.mark.parametrize("channels", [2, 4])
def test_archive_with_faces_of_another_channel_count_is_refused_when_loaded(tmp_path, channels):
    path = tmp_path / "faces.npz"
    np.savez(path, images=np.zeros((3, 8, 8, channels), np.uint8), labels=np.zeros(3, np.int64))
    with pytest.raises(DataError, match=rf"\(3, 8, 8, {channels}\).*expected"):
        calib.load_faces(path)
    with pytest.raises(DataError, match=rf"\(3, 8, 8, {channels}\)"):
        calib.load_labelled(path)


def test_archive_with_one_channel_faces_still_loads(tmp_path):
    path = tmp_path / "faces.npz"
    np.savez(path, images=np.zeros((3, 8, 8, 1), np.uint8))
    assert len(calib.load_faces(path)) == 3


@pytest.mark.parametrize("size", [-1, True, 2.5, "3", None])
def test_sample_size_that_is_not_a_count_is_refused(tmp_path, size):
    path = tmp_path / "faces.npz"
    np.savez(path, images=np.zeros((5, 8, 8), np.uint8), labels=np.zeros(5, np.int64))
    with pytest.raises(InputError, match=f"size {size!r}"):
        calib.load_faces(path, size=size)
    with pytest.raises(InputError, match=f"size {size!r}"):
        calib.load_labelled(path, size=size)


@pytest.mark.parametrize("seed", [-1, 1.5, "a"])
def test_sample_seed_that_is_not_a_non_negative_integer_is_refused(tmp_path, seed):
    path = tmp_path / "faces.npz"
    np.savez(path, images=np.zeros((5, 8, 8), np.uint8))
    with pytest.raises(InputError, match=f"seed {seed!r}"):
        calib.load_faces(path, size=2, seed=seed)


@pytest.mark.parametrize("batch_size", [2.5, True, "2"])
@pytest.mark.parametrize("reader", [calib.FaceCalibrationReader, calib.CalibrationPasses])
def test_calibration_batch_size_that_is_not_an_integer_is_refused(reader, batch_size):
    with pytest.raises(InputError, match=f"batch size {batch_size!r}"):
        reader(_calib_inputs(), "faces", batch_size)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_quantize_int8_refuses_to_overwrite_its_source(tiny_model, tmp_path):
    from fsrfer_edge.export.quantize import quantize_int8

    src = tmp_path / "m.onnx"
    src.write_bytes(tiny_model.read_bytes())
    before = _digest(src)
    with pytest.raises(InputError, match="same file"):
        quantize_int8(src, tmp_path / "." / "m.onnx", _calib_inputs())
    assert _digest(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_convert_fp16_refuses_to_overwrite_its_source(tiny_model, tmp_path):
    from fsrfer_edge.export.quantize import convert_fp16

    src = tmp_path / "m.onnx"
    src.write_bytes(tiny_model.read_bytes())
    before = _digest(src)
    with pytest.raises(InputError, match="same file"):
        convert_fp16(src, src)
    assert _digest(src) == before


def test_quantize_int8_refuses_calibration_inputs_that_are_not_an_array(tiny_model, tmp_path):
    from fsrfer_edge.export.quantize import quantize_int8

    dst = tmp_path / "q.onnx"
    with pytest.raises(InputError, match="list"):
        quantize_int8(tiny_model, dst, list(_calib_inputs()))
    assert list(tmp_path.iterdir()) == []


def test_quantize_int8_refuses_a_keep_float_string(tiny_model, tmp_path):
    from fsrfer_edge.export.quantize import quantize_int8

    with pytest.raises(ConfigError, match="keep_float '/generator/'.*sequence"):
        quantize_int8(tiny_model, tmp_path / "q.onnx", _calib_inputs(), keep_float="/generator/")
    assert list(tmp_path.iterdir()) == []


def test_resolve_quantize_film_refuses_an_unknown_scheme_and_non_bool_choice():
    from fsrfer_edge.export.quantize import resolve_quantize_film, resolve_quantize_generator

    with pytest.raises(ConfigError, match="'s9s9'"):
        resolve_quantize_film(None, "s9s9", True)
    with pytest.raises(ConfigError, match="'no'"):
        resolve_quantize_film(None, "u8s8", "no")
    with pytest.raises(ConfigError, match="'false'"):
        resolve_quantize_generator(None, "false")
