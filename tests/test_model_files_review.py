"""Defects a review found in model paths, input byte order, JSON results, engine sidecars and the detector factory:
an empty model path, big-endian batches, NaN in result files, a malformed engine-cache sidecar crashing start-up,
'auto' choosing YuNet on a broken onnxruntime install, and the OpenCV detector's repr naming the wrong cascade."""
from __future__ import annotations

import json
import logging
import math
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from fsrfer_edge import sidecars
from fsrfer_edge.errors import InputError

try:  # tests/ as a package or as a plain directory on sys.path
    from ._onnx_models import make_tiny_onnx
except ImportError:
    from _onnx_models import make_tiny_onnx  # type: ignore[no-redef]


# -- 1. an empty model path -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["", "   "], ids=["empty", "blank"])
def test_an_empty_model_path_says_it_is_empty_and_what_is_accepted(model: str) -> None:
    from fsrfer_edge import Recognizer
    from fsrfer_edge.recognizer import resolve_model_path

    for call in (resolve_model_path, Recognizer):
        with pytest.raises(InputError) as info:
            call(model)
        text = str(info.value)
        assert "empty" in text and ".onnx" in text and ".engine" in text, text
        assert "None" in text and "default" in text, text  # leaving it out gives the shipped model
        assert "suffix ''" not in text, text


def test_a_folder_as_the_model_says_it_is_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.errors import ModelError
    from fsrfer_edge.recognizer import resolve_model_path

    monkeypatch.chdir(tmp_path)
    for folder in (tmp_path, Path("")):  # Path("") is the current folder
        with pytest.raises(ModelError) as info:
            resolve_model_path(folder)
        text = str(info.value)
        assert "is a directory" in text and ".onnx" in text and "suffix ''" not in text, text


# -- 2. big-endian batches ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("review_models")
    return {"float32": make_tiny_onnx(d / "tiny.onnx"), "uint8": make_tiny_onnx(d / "raw.onnx", input_dtype="uint8")}


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_a_big_endian_batch_runs_as_the_native_one(tiny_models: dict[str, Path], dtype: str) -> None:
    from fsrfer_edge import Recognizer

    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    with Recognizer(tiny_models[dtype], confidence=None) as rec:
        batch = rec.prepare(faces)
        assert batch.dtype == np.dtype(dtype)
        swapped = batch.astype(batch.dtype.newbyteorder(">"))
        assert np.array_equal(swapped, batch)  # the same values, other bytes (for float32)
        want = rec.predict_logits(batch)
        np.testing.assert_array_equal(rec.predict_logits(swapped), want)
        assert [p.label for p in rec.predict(faces.astype(">f4"))] == [p.label for p in rec.predict(faces)]
    with Recognizer(tiny_models[dtype], confidence=None, max_batch=2) as rec:  # checked whole, run in chunks
        np.testing.assert_allclose(rec.predict_logits(swapped), want, rtol=1e-5, atol=1e-5)


def test_a_big_endian_batch_is_checked_as_a_native_one(tiny_models: dict[str, Path]) -> None:
    from fsrfer_edge import Recognizer

    with Recognizer(tiny_models["float32"], confidence=None) as rec:
        batch = rec.prepare(np.zeros((2, 48, 48), np.uint8)).astype(">f4")
        batch[0, 0, 0, 0] = np.nan
        with pytest.raises(InputError, match="NaN"):
            rec.predict_logits(batch)
        with pytest.raises(InputError, match="dtype float64"):  # named as numpy names the native type
            rec.predict_logits(rec.prepare(np.zeros((2, 48, 48), np.uint8)).astype(">f8"))


# -- 3. NaN in JSON results --------------------------------------------------------------------------------------------
def test_write_json_writes_non_finite_numbers_as_null(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from fsrfer_edge.fileio import write_json

    doc = {"acc": 0.5, "per_class": [1.0, math.nan, -math.inf], "x": {"y": math.inf}, "n": 3, "t": (0.25, math.nan)}
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge.fileio"):
        out = write_json(tmp_path / "r.json", doc)
    text = out.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}")) == {
        "acc": 0.5, "per_class": [1.0, None, None], "x": {"y": None}, "n": 3, "t": [0.25, None]}
    assert "per_class[1]" in caplog.text and "x.y" in caplog.text  # where they were, for whoever wrote them


def test_write_json_keeps_finite_documents_byte_for_byte(tmp_path: Path) -> None:
    from fsrfer_edge.fileio import write_json

    doc = {"b": [1.5, 2, None, True, "s"], "a": {"z": 1e-300, "y": -0.0}, "c": np.float64(0.1)}
    assert write_json(tmp_path / "r.json", doc).read_text() == json.dumps(doc, indent=2, sort_keys=True) + "\n"


def test_write_json_applies_null_to_what_default_returns(tmp_path: Path) -> None:
    from fsrfer_edge.fileio import write_json

    out = write_json(tmp_path / "r.json", {"v": np.float32("nan"), "w": np.float32(0.5)},
                     default=lambda o: float(o) if isinstance(o, np.floating) else str(o))
    assert json.loads(out.read_text()) == {"v": None, "w": 0.5}


# -- 4. a malformed engine-cache sidecar ------------------------------------------------------------------------------
def _engine_with_sidecar(tmp_path: Path, text: str) -> Path:
    from fsrfer_edge.engine_cache import sidecar_path

    engine = tmp_path / "m.fp16.0123abcd.trt10.engine"
    engine.write_bytes(b"not an engine")
    sidecar_path(engine).write_text(text)
    return engine


@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,
    '{"source_path": {"a": ' * 5_000 + "1" + "}" * 5_000 + "}",
    json.dumps({"source_path": "/", "source_host": socket.gethostname()}),
    json.dumps({"source_path": ".", "source_host": socket.gethostname()}),
    json.dumps({"source_path": "model.onnx", "source_host": socket.gethostname()}),
], ids=["deep-array", "deep-object", "root", "dot", "relative"])
def test_a_malformed_engine_sidecar_is_skipped_in_the_sidecar_search(tmp_path: Path, text: str) -> None:
    engine = _engine_with_sidecar(tmp_path, text)
    assert sidecars.besides(engine, ".scores.json") == [tmp_path / "m.fp16.0123abcd.trt10.scores.json",
                                                         tmp_path / "m.scores.json"]
    assert sidecars.find(engine, ["a"], "", ".scores.json", lambda p: pytest.fail(f"loaded {p}"), "x") is None


def test_an_engine_sidecar_naming_its_onnx_file_is_still_followed(tmp_path: Path) -> None:
    engine = _engine_with_sidecar(tmp_path, json.dumps({"source_path": "/models/fer.onnx",
                                                        "source_host": socket.gethostname()}))
    assert Path("/models/fer.scores.json") in sidecars.besides(engine, ".scores.json")


# -- 5. 'auto' on a broken onnxruntime install ------------------------------------------------------------------------
def test_create_detector_auto_falls_back_when_onnxruntime_cannot_be_imported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "CascadeClassifier"):
        pytest.skip("OpenCV 5 has no cascade classifier")
    from fsrfer_edge.detection import create_detector

    broken = tmp_path / "site" / "onnxruntime"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('libonnxruntime.so.1: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name in [m for m in sys.modules if m == "onnxruntime" or m.startswith("onnxruntime.")]:
        monkeypatch.delitem(sys.modules, name)
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge.detection"):
        det = create_detector("auto", min_face=12)
    try:
        assert det.name == "opencv"
        assert "cannot be imported" in caplog.text and "libonnxruntime.so.1" in caplog.text, caplog.text
    finally:
        det.close()
    with pytest.raises(InputError, match="onnxruntime cannot be imported"):
        create_detector("auto", model="x.onnx")


# -- 6. the OpenCV detector's repr -------------------------------------------------------------------------------------
@pytest.fixture()
def opencv_cascade(tmp_path: Path) -> Path:
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "CascadeClassifier"):
        pytest.skip("OpenCV 5 has no cascade classifier")
    from fsrfer_edge.detection.opencv import CASCADE

    mine = tmp_path / "my_faces.xml"
    mine.write_bytes((Path(cv2.data.haarcascades) / CASCADE).read_bytes())
    return mine


def test_opencv_detector_repr_names_the_cascade_it_loaded(opencv_cascade: Path) -> None:
    from fsrfer_edge.detection.opencv import CASCADE, OpenCVDetector

    with OpenCVDetector(cascade=str(opencv_cascade)) as det:
        assert str(opencv_cascade) in repr(det) and CASCADE not in repr(det), repr(det)
    with OpenCVDetector(cascade=opencv_cascade) as det:  # a Path works too
        assert str(opencv_cascade) in repr(det), repr(det)
    with OpenCVDetector() as det:
        assert CASCADE in repr(det), repr(det)


@pytest.mark.parametrize("cascade", ["", 3], ids=["empty", "int"])
def test_opencv_detector_refuses_a_cascade_that_is_no_path(cascade: object) -> None:
    pytest.importorskip("cv2")
    from fsrfer_edge.detection.opencv import OpenCVDetector

    with pytest.raises(InputError, match="cascade"):
        OpenCVDetector(cascade=cascade)  # type: ignore[arg-type]
