"""Tests that kill hand-made mutants (round 69, task K69e) of fsrfer-demo, the INT8 calibration data and the
DeepStream files: fsrfer-demo's crops made with the recogniser's own corrections, an RGBA frame read as its colour
channels, the JSON's detection time in milliseconds and its schema, a read-only model taken as an input (not refused
as an output), the panels of a narrow image on a canvas wide enough for every factor, rows numbered from 1, latency
lines counting every face, and the image removed when stdout's reader goes before the JSON; the calibration faces
(the training rows of an archive with splits, all of them when more are asked for, image suffixes of any case, a
stack of 1-pixel-wide faces read as faces), the accuracy gate's labels (one equal to the class count refused, none
left refused) and the calibration passes (a pass read again from its start, a range of two passes refused); the
DeepStream folder's names ('.' and '..' refused), the engines a new model removes (only those nvinfer names, never
a folder) and a CR in the source's name escaped in the config.
Tiny synthetic frames and arrays, the shipped model or a tiny ONNX model built here, fake detectors only."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.detection import Detection, FaceDetector


class _Boxes(FaceDetector):
    """A detector that finds the given boxes, in the given order."""

    name = "boxes"

    def __init__(self, boxes: list[tuple[float, float, float, float]]) -> None:
        super().__init__()
        self.boxes = boxes

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        return [Detection(b, 0.9) for b in self.boxes]


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ==================================================================================================================
# fsrfer-demo
# ==================================================================================================================
def test_demo_crops_faces_with_the_recognisers_own_corrections() -> None:
    """A face an app enlarged by repeating pixels is shown to a Recognizer(corrections=Corrections.none()) as it
    is, not reduced first (mutant: run_demo's to_pixels without corrections=rec.corrections, i.e. the defaults)."""
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer, demo
    from fsrfer_edge.preprocessing import Corrections, shrink

    small = np.random.default_rng(7).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    frame = np.ascontiguousarray(np.repeat(np.repeat(small, 4, axis=0), 4, axis=1))  # 48x48, each pixel 4x4
    box = [(0.0, 0.0, 48.0, 48.0)]
    crops = {}
    for key, fix in (("none", Corrections.none()), ("default", Corrections())):
        with Recognizer(threads=1, corrections=fix) as r:
            (face,), _ = demo.run_demo(frame, r, _Boxes(box), (1,), margin=0.0, repeats=1)
            crops[key] = face.results[0].crop
            want = shrink(r.info.preprocessing.to_pixels([frame], raise_low_contrast=False, corrections=fix), 1)
            np.testing.assert_array_equal(crops[key], want[0, 0])
    assert (crops["none"] != crops["default"]).any()  # the corrections really change this face


def test_demo_json_gives_detection_and_prediction_times_in_milliseconds_by_factor() -> None:
    """timings_ms holds run_demo's detect_ms as it is (mutant: divided by 1000) and each factor's time under the
    factor as a string key."""
    from fsrfer_edge import demo

    doc = demo.faces_to_dict([], {"detect_ms": 12.5, "predict_ms": {1: 3.25, 4: 0.5}}, "in.png")
    assert doc == {"image": "in.png", "timings_ms": {"detect": 12.5, "predict": {"1": 3.25, "4": 0.5}}, "faces": []}


@pytest.mark.needs("PIL")
def test_demo_takes_a_read_only_model_as_an_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model installed read-only (a system package, a shared folder) is read, not refused as an output that
    must not be replaced (mutant: check_distinct_files(inputs=1), --model and the detectors' models judged as
    outputs)."""
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import demo
    from fsrfer_edge.detection.frames import write_image
    from fsrfer_edge.recognizer import DEFAULT_MODEL

    model = tmp_path / "ro.onnx"
    shutil.copyfile(DEFAULT_MODEL, model)
    model.chmod(0o444)
    src = tmp_path / "in.png"
    write_image(src, _noise(64, 64, seed=3))
    monkeypatch.setattr(demo, "create_detector", lambda name, **kw: _Boxes([(8.0, 8.0, 56.0, 56.0)]))
    js = tmp_path / "d.json"
    assert demo.main([str(src), "--model", str(model), "--out", str(tmp_path / "d.png"), "--json", str(js),
                      "--factors", "1", "--threads", "1"]) == 0
    doc = json.loads(js.read_text())
    assert doc["recognizer"]["model"] == str(model)
    assert doc["schema"] == demo.SCHEMA == "fsrfer-demo/1"  # the document names its schema (mutant: key dropped)
    assert model.stat().st_mode & 0o777 == 0o444


@pytest.mark.needs("PIL")
def test_demo_panels_of_a_narrow_image_widen_the_canvas_to_every_factor(rec: Any) -> None:
    """Four 96 px panels need 4 * 104 + 48 px: a 64 px wide image gets a canvas that wide, the image at its left,
    the last factor's panel whole (mutant: the canvas as wide as the image, the panels cut off)."""
    from PIL import Image

    from fsrfer_edge import demo

    frame, tile = _noise(64, 64, seed=8), 96
    faces, _ = demo.run_demo(frame, rec, _Boxes([(8.0, 8.0, 56.0, 56.0)]), (1, 2, 4, 8), repeats=1)
    out = demo.annotate(frame, faces, tile=tile)
    assert out.shape == (64 + tile + 28, 4 * (tile + 8) + 48, 3)
    np.testing.assert_array_equal(out[60:64, :64], frame[60:64])  # under the box: the image as it was
    last = faces[0].results[-1]
    x, y = 32 + 3 * (tile + 8), 64 + 4
    want = np.asarray(Image.fromarray(last.crop).resize((tile, tile), Image.Resampling.NEAREST).convert("RGB"))
    np.testing.assert_array_equal(out[y:y + tile, x:x + tile], want)


@pytest.mark.needs("PIL")
def test_demo_discards_its_image_when_stdout_goes_before_the_json(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """fsrfer-demo ... | head: the reader goes as 'wrote demo.png' is printed; the image is removed, as after any
    failure before the JSON (mutant: the READER_GONE branch re-raising without discarding)."""
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import demo
    from fsrfer_edge.detection.frames import write_image

    def printing(*args: Any, **kwargs: Any) -> None:
        if str(args[0]).startswith("wrote "):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(demo, "print", printing, raising=False)
    monkeypatch.setattr(demo, "create_detector", lambda name, **kw: _Boxes([(8.0, 8.0, 56.0, 56.0)]))
    src, out, js = tmp_path / "in.png", tmp_path / "d.png", tmp_path / "d.json"
    write_image(src, _noise(64, 64, seed=9))
    with pytest.raises(BrokenPipeError):  # stdout itself is not broken here: cli_main passes it on
        demo.main([str(src), "--out", str(out), "--json", str(js), "--factors", "1", "--threads", "1"])
    assert not out.exists() and not js.exists()


def test_demo_reads_an_rgba_frame_as_its_colour_channels(rec: Any) -> None:
    """An RGBA frame (a PNG with alpha) gives the crops and predictions of its RGB part, the alpha dropped unread
    (mutant: run_demo cropping the frame as given, without as_rgb_frame)."""
    from fsrfer_edge import demo

    rgb = _noise(64, 64, seed=10)
    rgba = np.dstack([rgb, np.full((64, 64), 7, np.uint8)])
    box = [(8.0, 8.0, 56.0, 56.0)]
    (a,), _ = demo.run_demo(rgb, rec, _Boxes(box), (1, 4), repeats=1)
    (b,), _ = demo.run_demo(rgba, rec, _Boxes(box), (1, 4), repeats=1)
    for ra, rb in zip(a.results, b.results):
        np.testing.assert_array_equal(ra.crop, rb.crop)
        assert ra.prediction.label == rb.prediction.label
        np.testing.assert_allclose(ra.prediction.probs, rb.prediction.probs)


def test_demo_latency_lines_count_every_face_of_the_batch(rec: Any) -> None:
    """Each factor's latency is that of one batch of all the faces, and its line says how many (mutant: always
    'for 1 face')."""
    from fsrfer_edge import demo
    from fsrfer_edge.crowd_cli import count_faces

    faces, timings = demo.run_demo(_noise(64, 128, seed=11), rec,
                                   _Boxes([(8.0, 8.0, 56.0, 56.0), (70.0, 8.0, 118.0, 56.0)]), (1, 2), repeats=1)
    latency = [line for line in demo.report_lines(faces, timings, "in.png", (64, 128, 3), "boxes")
               if line.startswith("latency")]
    assert [line.split(" ms for ")[1] for line in latency] == [f"{count_faces(2)} (median, Recognizer.predict)"] * 2
    assert [line.split(":")[0] for line in latency] == ["latency x1", "latency x2"]


@pytest.mark.needs("PIL")
def test_demo_panel_rows_are_numbered_from_1_as_the_boxes_are(rec: Any) -> None:
    """The row of crops of face 1 is headed '1', as its box is labelled '1: ...' (mutant: numbered from 0)."""
    from PIL import Image, ImageDraw

    from fsrfer_edge import demo

    frame, tile = _noise(64, 64, seed=12), 96
    faces, _ = demo.run_demo(frame, rec, _Boxes([(8.0, 8.0, 56.0, 56.0)]), (1,), repeats=1)
    out = demo.annotate(frame, faces, tile=tile)
    want = Image.new("RGB", (30, tile + 28), (255, 255, 255))
    ImageDraw.Draw(want).text((4, 4 + tile // 2), "1", fill=(0, 0, 0))
    np.testing.assert_array_equal(out[64:, :30], np.asarray(want))


# ==================================================================================================================
# INT8 calibration data (fsrfer_edge.export.calib)
# ==================================================================================================================
def _faces_npz(path: Path, n: int, split: Any = None) -> Path:
    """n 6x6 faces, face i filled with grey level 10 * i (so a face tells its row)."""
    images = np.stack([np.full((6, 6), 10 * i, np.uint8) for i in range(n)])
    arrays: dict[str, Any] = {"images": images}
    if split is not None:
        arrays["split"] = np.asarray(split)
    np.savez(path, **arrays)
    return path


def test_asking_for_more_calibration_faces_than_there_are_gives_them_all_in_order(tmp_path: Path) -> None:
    """size 5 of 4 faces: all 4, in the archive's order, as size 4 or 0 (mutant: _sample(n, size) drawing
    without replacement for size == n + 1, a ValueError)."""
    from fsrfer_edge.export.calib import load_faces

    npz = _faces_npz(tmp_path / "f.npz", 4)
    for size in (0, 4, 5, 9):
        assert [int(f[0, 0]) for f in load_faces(npz, size)] == [0, 10, 20, 30], size


def test_calibration_faces_are_the_training_rows_of_an_archive_with_splits(tmp_path: Path) -> None:
    """INT8 ranges come from training faces; the val and test rows, held out for the accuracy gate, are not used
    (mutant: load_faces' split defaulting to 'val')."""
    from fsrfer_edge.export.calib import calibration_faces, load_faces

    npz = _faces_npz(tmp_path / "f.npz", 5, split=["train", "val", "train", "test", "train"])
    assert [int(f[0, 0]) for f in load_faces(npz)] == [0, 20, 40]
    assert [int(f[0, 0]) for f in calibration_faces(npz, 0, [1, 2])] == [0, 20, 40]


@pytest.mark.needs("PIL")
def test_a_calibration_folder_takes_image_files_whatever_the_case_of_their_suffix(tmp_path: Path) -> None:
    """FACE.PNG and face.Jpg are face images (cameras and Windows tools write upper-case suffixes); notes.txt is
    not (mutant: the suffix compared without lower(), the upper-case files skipped)."""
    from PIL import Image

    from fsrfer_edge.export.calib import image_files, load_faces

    for name, level in (("a.PNG", 30), ("b.png", 60), ("c.JPEG", 90)):
        Image.fromarray(np.full((8, 8), level, np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a face")
    assert [f.name for f in image_files(tmp_path)] == ["a.PNG", "b.png", "c.JPEG"]
    assert [int(f.mean().round()) for f in load_faces(tmp_path)] == [30, 60, 90]


def test_a_label_equal_to_the_class_count_is_refused(tmp_path: Path) -> None:
    """With 7 classes the labels are 0..6: a 7 is refused naming its row (mutant: labels > classes refused, a 7
    scored as a face the model can only get wrong); a 6 is taken."""
    from fsrfer_edge.errors import DataError
    from fsrfer_edge.export.calib import load_labelled

    images = np.zeros((3, 6, 6), np.uint8)
    np.savez(tmp_path / "ok.npz", images=images, labels=np.array([0, 6, -1]))
    _, labels = load_labelled(tmp_path / "ok.npz", classes=7)
    assert labels.tolist() == [0, 6]
    np.savez(tmp_path / "bad.npz", images=images, labels=np.array([0, 7, 1]))
    with pytest.raises(DataError, match=r"integers 0\.\.6.*row 1 is 7"):
        load_labelled(tmp_path / "bad.npz", classes=7)


def test_a_stack_of_faces_one_pixel_wide_is_read_as_that_many_faces() -> None:
    """An (N, H, 1) uint8 array is N faces of H x 1 pixels, not one image with one channel (mutant: only a width of
    3 or 4 listed)."""
    from fsrfer_edge.export.calib import faces_to_pixels
    from fsrfer_edge.metadata import ModelInfo

    info = ModelInfo()
    stack = np.stack([np.full((8, 1), 40 * i, np.uint8) for i in range(5)])
    pixels = faces_to_pixels(stack, info)
    s = info.preprocessing.input_size
    assert pixels.shape == (5, info.preprocessing.channels, s, s)
    np.testing.assert_allclose(pixels.mean(axis=(1, 2, 3)), [0, 40, 80, 120, 160], atol=0.5)


def _read(reader: Any) -> list[np.ndarray]:
    batches = []
    while (b := reader.get_next()) is not None:
        batches.append(b["faces"])
    return batches


def test_a_calibration_pass_read_again_starts_from_its_first_batch() -> None:
    """ONNX Runtime selects a pass with set_range and reads it to its end; selecting it again reads it whole again
    (mutant: the pass not rewound, its second reading empty)."""
    from fsrfer_edge.export.calib import CalibrationPasses

    inputs = np.arange(37, dtype=np.float32).reshape(37, 1, 1, 1)
    passes = CalibrationPasses(inputs, "faces", batch_size=8)
    assert len(passes) == 2
    for _ in range(2):
        passes.set_range(0, 1)
        first = _read(passes)
        assert [len(b) for b in first] == [8, 8, 8, 8]
        np.testing.assert_array_equal(np.concatenate(first).ravel(), np.arange(32))
        passes.set_range(1, 2)
        (short,) = _read(passes)
        np.testing.assert_array_equal(short.ravel(), np.arange(32, 37))


def test_a_calibration_range_of_more_than_one_pass_is_refused() -> None:
    """set_range(0, 2) (CalibStridedMinMax=2) would read both passes as one collect_data call, the stack of unequal
    batches the passes are there to avoid: refused (mutant: only end_index <= passes checked)."""
    from fsrfer_edge.errors import InputError
    from fsrfer_edge.export.calib import CalibrationPasses

    passes = CalibrationPasses(np.zeros((37, 1, 1, 1), np.float32), "faces", batch_size=8)
    with pytest.raises(InputError, match=r"calibration pass range 0\.\.2; expected one pass of 0\.\.2"):
        passes.set_range(0, 2)
    passes.set_range(1, 2)  # one pass: taken


def test_evaluation_data_whose_labels_are_all_negative_is_refused(tmp_path: Path) -> None:
    """FER+ rows without a majority (-1) are dropped; an archive of only such rows has nothing to score and is
    refused (mutant: the empty check removed, an empty evaluation set returned)."""
    from fsrfer_edge.errors import DataError
    from fsrfer_edge.export.calib import load_labelled

    np.savez(tmp_path / "none.npz", images=np.zeros((3, 6, 6), np.uint8), labels=np.array([-1, -1, -2]))
    with pytest.raises(DataError, match="has no labelled rows"):
        load_labelled(tmp_path / "none.npz")


# ==================================================================================================================
# The DeepStream folder (fsrfer_edge.export.deepstream)
# ==================================================================================================================
def test_deepstream_names_dot_and_dot_dot_are_refused_and_dotted_names_taken() -> None:
    """'.' and '..' (a folder's names, as fsrfer-export's --name refuses them) are no file name stem (mutant: only
    the character set checked); 'fsrfer.v2' and '...' are."""
    from fsrfer_edge.errors import ConfigError
    from fsrfer_edge.export.deepstream import check_name

    for bad in (".", ".."):
        with pytest.raises(ConfigError, match=r"expected letters, digits, '\.', '_' or '-'"):
            check_name(bad)
    assert check_name("fsrfer.v2") == "fsrfer.v2" and check_name("...") == "..."


@pytest.fixture(scope="module")
def flat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from _onnx_models import make_flat_onnx

    return make_flat_onnx(tmp_path_factory.mktemp("ds69e") / "flat.onnx")


@pytest.mark.needs("onnx")
def test_a_folder_named_as_a_stale_engine_is_kept_with_a_warning(flat_model: Path, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A new NAME.onnx removes the engines nvinfer built from the old one, but a folder of such a name is someone's
    folder: kept, with a warning, and the classifier is still written (mutant: the folder check removed, unlink()
    failing on it after NAME.onnx was replaced)."""
    from fsrfer_edge.export.deepstream import write_deepstream

    out = tmp_path / "ds"
    kept = out / "fsrfer.onnx_b8_gpu0_fp16.engine"
    (kept / "inner").mkdir(parents=True)
    (kept / "inner" / "keep.txt").write_text("mine")
    stale = out / "fsrfer.onnx_b64_gpu0_fp16.engine"
    stale.write_bytes(b"old engine")
    with caplog.at_level("WARNING", logger="fsrfer_edge.export.deepstream"):
        config = write_deepstream(out, flat_model)
    assert config.is_file() and (out / "fsrfer.onnx").is_file() and (out / "fsrfer_labels.txt").is_file()
    assert (kept / "inner" / "keep.txt").read_text() == "mine" and not stale.exists()
    assert f"left {kept} alone: it is a folder" in caplog.text and f"removed {stale}" in caplog.text


@pytest.mark.needs("onnx")
def test_a_carriage_return_in_the_source_name_is_escaped_in_the_config(flat_model: Path, tmp_path: Path) -> None:
    """The config's comment naming the source shows a CR in its file name as \\r: a raw CR would end the comment
    line for a reader splitting on universal newlines, the rest of the name read as a key (mutant: only \\n
    escaped)."""
    from fsrfer_edge.export.deepstream import write_deepstream

    src = tmp_path / "a\rb.onnx"
    shutil.copyfile(flat_model, src)
    config = write_deepstream(tmp_path / "ds", src)
    data = config.read_bytes()
    assert b"\r" not in data
    assert "# Written by fsrfer-export from a\\rb.onnx; " in data.decode("utf-8")


@pytest.mark.needs("onnx")
def test_only_files_named_as_nvinfer_names_its_engines_are_removed(flat_model: Path, tmp_path: Path) -> None:
    """nvinfer saves NAME.onnx_b<batch>_gpu<id>_<precision>.engine; a file that only starts with NAME.onnx_b
    (an engine the user named and keeps) is left alone (mutant: the glob NAME.onnx_b*.engine)."""
    from fsrfer_edge.export.deepstream import write_deepstream

    out = tmp_path / "ds"
    out.mkdir()
    own = out / "fsrfer.onnx_best.engine"
    own.write_bytes(b"mine")
    built = [out / "fsrfer.onnx_b16_gpu0_fp16.engine", out / "fsrfer.onnx_b1_gpu1_int8.engine"]
    for p in built:
        p.write_bytes(b"nvinfer's")
    write_deepstream(out, flat_model)
    assert own.read_bytes() == b"mine" and not any(p.exists() for p in built)
