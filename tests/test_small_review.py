"""Small defects found by reviews: empty export checks, zero-size calibration faces, a folder named like a stale
DeepStream engine, fsrfer-crowd-bench's --save-scene left behind by a failed report, big-endian 16-bit faces."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.errors import DataError, InputError


# ---------------------------------------------------------------------------------------------
# 1. export.check: nothing compared is not a pass
# ---------------------------------------------------------------------------------------------


def test_compare_of_zero_rows_is_a_failure_that_says_so() -> None:
    """compare() raised numpy's 'zero-size array to reduction operation maximum' on (0, classes) logits."""
    from fsrfer_edge.export.check import TOLERANCES, compare

    empty = np.zeros((0, 7), np.float32)
    report = compare(empty, empty, TOLERANCES["fp32"])
    assert report["passed"] is False and "nothing to compare" in report["error"] and "(0, 7)" in report["error"]


def test_check_step_on_an_empty_pixel_batch_refuses_before_running_the_models() -> None:
    from fsrfer_edge.export.check import ExportCheckError, check_step

    ran: list[int] = []

    def run(x: np.ndarray) -> np.ndarray:
        ran.append(len(x))
        return np.zeros((len(x), 7), np.float32)

    random = np.zeros((2, 1, 48, 48), np.float32)
    with pytest.raises(ExportCheckError, match=r"'faces' pixel batch has shape \(0, 1, 48, 48\).*nothing"):
        check_step("onnx->simplified", run, run, "fp32", random, faces=random[:0])
    assert ran == []
    with pytest.raises(ExportCheckError, match=r"'random' pixel batch"):
        check_step("onnx->simplified", run, run, "fp32", random[:0])


# ---------------------------------------------------------------------------------------------
# 2. calib._check_images: zero-size faces refused when the file is read
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 0, 48), (3, 48, 0), (2, 0, 0, 3)])
def test_calibration_faces_of_zero_size_are_refused_naming_the_file(tmp_path: Path, shape: tuple) -> None:
    from fsrfer_edge.export.calib import load_faces, load_labelled

    path = tmp_path / "faces.npz"
    np.savez(path, images=np.zeros(shape, np.uint8), labels=np.zeros(shape[0], np.int64))
    with pytest.raises(DataError, match=rf"faces\.npz.*{shape[1]}x{shape[2]}.*at least 1x1"):
        load_faces(path)
    with pytest.raises(DataError, match=r"faces\.npz.*at least 1x1"):
        load_labelled(path, 7)


def test_calibration_faces_of_one_pixel_are_still_read(tmp_path: Path) -> None:
    from fsrfer_edge.export.calib import load_faces

    np.savez(tmp_path / "faces.npz", images=np.full((2, 1, 1), 9, np.uint8))
    assert [f.shape for f in load_faces(tmp_path / "faces.npz")] == [(1, 1), (1, 1)]


# ---------------------------------------------------------------------------------------------
# 3. write_deepstream: a folder named like a stale engine is left alone, with a log line
# ---------------------------------------------------------------------------------------------


def test_a_folder_named_like_a_stale_engine_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """stale.unlink() raised IsADirectoryError after the new NAME.onnx was written (no labels, no config)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from _onnx_models import make_tiny_onnx

    from fsrfer_edge.export.deepstream import write_deepstream

    model = make_tiny_onnx(tmp_path / "tiny.onnx")
    folder = tmp_path / "ds"
    (folder / "fsrfer.onnx_b4_gpu0_fp16.engine").mkdir(parents=True)
    (folder / "fsrfer.onnx_b4_gpu0_fp16.engine" / "keep.txt").write_text("mine")
    stale = folder / "fsrfer.onnx_b64_gpu1_fp16.engine"
    stale.write_bytes(b"plan of a model deleted since")
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge.export.deepstream"):
        config = write_deepstream(folder, model)
    assert config.is_file() and (folder / "fsrfer_labels.txt").is_file() and not stale.exists()
    assert (folder / "fsrfer.onnx_b4_gpu0_fp16.engine" / "keep.txt").read_text() == "mine"
    assert any("fsrfer.onnx_b4_gpu0_fp16.engine" in r.getMessage() and "not a file" in r.getMessage()
               for r in caplog.records)


# ---------------------------------------------------------------------------------------------
# 4. fsrfer-crowd-bench --save-scene: all or nothing with the report
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", [KeyboardInterrupt, InputError])
def test_crowd_bench_scene_is_removed_when_the_report_cannot_be_written(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, failure: type, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("skimage")
    from fsrfer_edge import crowd_bench

    written: list[Path] = []

    def fake_compare(specs: Any, job: Any, rounds: int = 3, big_photos: Any = ()) -> list[dict]:
        return [{"config": {}}]

    def fail_json(path: Any, doc: Any) -> Any:
        written.extend(p for p in tmp_path.iterdir())  # what lay there when the report was being written
        raise failure("the disk is full")

    monkeypatch.setattr(crowd_bench, "compare", fake_compare)
    monkeypatch.setattr(crowd_bench, "write_json", fail_json)
    scene, out = tmp_path / "s.png", tmp_path / "o.json"
    rc = crowd_bench.main(["--no-data", "--size", "128x96", "--save-scene", str(scene), "--out", str(out)])
    assert rc == (130 if failure is KeyboardInterrupt else 2)
    assert written == [scene]  # the scene was written, then the report failed
    assert not scene.exists() and not out.exists()
    err = capsys.readouterr().err
    assert ("interrupted" if failure is KeyboardInterrupt else "the disk is full") in err


# ---------------------------------------------------------------------------------------------
# 5. preprocessing: a big-endian 16-bit face is named as such
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,words", [(">u2", "has dtype >u2 (uint16, big-endian);"),
                                         ("=u2", "has dtype uint16;"),
                                         (">i4", "has dtype >i4 (int32, big-endian);")])
def test_a_face_of_a_refused_dtype_is_named_in_words(dtype: str, words: str) -> None:
    """A big-endian uint16 face was refused as 'has dtype >u2' alone, which does not say uint16; it is refused as
    the native one is (its hint included), with the type named."""
    from fsrfer_edge.preprocessing import Preprocessing

    with pytest.raises(InputError) as info:
        Preprocessing().to_pixels([np.full((8, 8), 300, dtype=dtype)])
    assert words in str(info.value)
    if dtype.endswith("u2"):
        assert "Scale a 16-bit image with (image >> 8).astype(np.uint8)" in str(info.value)


def test_a_big_endian_float_face_is_read_as_the_native_one() -> None:
    from fsrfer_edge.preprocessing import Preprocessing

    face = np.random.default_rng(0).uniform(0, 255, (20, 20)).astype(np.float32)
    pre = Preprocessing()
    np.testing.assert_array_equal(pre.to_pixels([face.astype(">f4")]), pre.to_pixels([face]))
