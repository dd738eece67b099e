"""Tests that kill hand-made mutants the rest of the suite let through (task K67e, a second pass over fsrfer-demo
and fsrfer-bench): the demo's factor checks at their bounds, its faces in the detector's order, the annotated
image's panels (each low-resolution crop enlarged pixel for pixel, in factor order, one row per face, labelled with
its factor; the box label from the first factor), the sample image's source in the JSON and --margin reaching the
run; fsrfer-bench's batch-size bounds, the model's hash, the overhead batch the Recognizer is opened for, a bad
factor refused before the timings, the default overhead repetitions, the FER+ labels file among the inputs and the
printed table.
Tiny synthetic frames, the shipped model or a tiny ONNX model, fake detectors only."""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from fsrfer_edge import InputError, Recognizer  # noqa: E402
from fsrfer_edge.detection import Detection, FaceDetector  # noqa: E402



class _Boxes(FaceDetector):
    """A detector that finds the given boxes, in the given order."""

    name = "boxes"

    def __init__(self, boxes: list[tuple[float, float, float, float]]) -> None:
        super().__init__()
        self.boxes = boxes

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        return [Detection(b, 0.9 - 0.1 * i) for i, b in enumerate(self.boxes)]


@pytest.fixture(scope="module")
def rec() -> Any:
    with Recognizer(threads=1) as r:
        yield r


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ==================================================================================================================
# fsrfer-demo
# ==================================================================================================================
def test_demo_takes_a_factor_equal_to_the_input_size_and_refuses_none(rec: Any) -> None:
    """x48 on a 48 px model leaves a 1-pixel face (allowed: 'factors from 1 to 48'); an empty list is refused."""
    from fsrfer_edge import demo

    frame = _noise(80, 80, seed=1)
    faces, _ = demo.run_demo(frame, rec, _Boxes([(10.0, 10.0, 60.0, 60.0)]), (48,), repeats=1)
    (r,) = faces[0].results
    assert r.factor == 48 and r.pixels == 1 and r.crop.shape == (1, 1)
    demo.check_factors((1, 48), 48)
    with pytest.raises(InputError, match="expected integers >= 1"):
        demo.run_demo(frame, rec, _Boxes([(10.0, 10.0, 60.0, 60.0)]), (), repeats=1)


def test_demo_faces_come_in_the_detectors_order(rec: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Face i of the report, the image and the JSON is the detector's i-th box (not reversed)."""
    from fsrfer_edge import demo
    from fsrfer_edge.detection.frames import write_image

    boxes = [(100.0, 20.0, 150.0, 70.0), (10.0, 10.0, 60.0, 60.0), (60.0, 60.0, 110.0, 110.0)]
    faces, _ = demo.run_demo(_noise(120, 200, seed=2), rec, _Boxes(boxes), (1,), repeats=1)
    assert [f.box for f in faces] == boxes
    assert [f.score for f in faces] == pytest.approx([0.9, 0.8, 0.7])
    monkeypatch.setattr(demo, "create_detector", lambda name, **kw: _Boxes(boxes))
    src, js = tmp_path / "in.png", tmp_path / "d.json"
    write_image(src, _noise(120, 200, seed=2))
    assert demo.main([str(src), "--out", str(tmp_path / "d.png"), "--json", str(js), "--factors", "1",
                      "--threads", "1"]) == 0
    assert [f["box"] for f in json.loads(js.read_text())["faces"]] == [list(b) for b in boxes]


def test_demo_panels_show_each_crop_enlarged_pixel_for_pixel_in_factor_order_one_row_per_face(rec: Any) -> None:
    """Under the frame, row i holds face i's crops, x = 32 + j * (tile + 8), each the crop enlarged by repeating
    its pixels (nearest neighbour, so the pixels of a small face show), and the canvas grows by one row per face."""
    from PIL import Image

    from fsrfer_edge import demo

    frame, tile = _noise(100, 400, seed=3), 96
    faces, _ = demo.run_demo(frame, rec, _Boxes([(10.0, 10.0, 60.0, 60.0), (120.0, 20.0, 170.0, 70.0)]),
                             (1, 4, 8), repeats=1)
    out = demo.annotate(frame, faces, tile=tile)
    assert out.shape == (100 + 2 * (tile + 28), 400, 3)
    for i, face in enumerate(faces):
        y = 100 + i * (tile + 28) + 4
        for j, r in enumerate(face.results):
            x = 32 + j * (tile + 8)
            want = np.asarray(Image.fromarray(r.crop).resize((tile, tile), Image.Resampling.NEAREST).convert("RGB"))
            np.testing.assert_array_equal(out[y:y + tile, x:x + tile], want, err_msg=f"face {i}, x{r.factor}")


def test_demo_panel_captions_name_their_factor_and_the_box_label_is_the_first_factors(rec: Any) -> None:
    """The caption under a panel says its factor (x4, not its place in the list), and the label over a box is the
    first factor's prediction (x1: the face as the camera gave it), whatever the other factors predict."""
    from fsrfer_edge import demo

    frame, tile = _noise(100, 300, seed=4), 96
    (face,), _ = demo.run_demo(frame, rec, _Boxes([(20.0, 30.0, 80.0, 90.0)]), (1, 4), repeats=1)
    r1, r4 = face.results
    other = dataclasses.replace(r4.prediction, label="zzzzzzzz", score=0.01)
    alone = demo.annotate(frame, [dataclasses.replace(face, results=(r1,))], tile=tile)
    both = demo.annotate(frame, [dataclasses.replace(face, results=(r1, dataclasses.replace(r4, prediction=other)))],
                         tile=tile)
    np.testing.assert_array_equal(alone[:100], both[:100])  # the box and its label: x1's only
    relabelled = demo.annotate(frame, [dataclasses.replace(face, results=(dataclasses.replace(r1, factor=4), r4))],
                               tile=tile)
    caption = (slice(100 + 4 + tile, 100 + tile + 28), slice(32, 32 + tile))  # under the first panel
    assert (relabelled[caption] != both[caption]).any(), "the caption does not name the factor"


def test_demo_json_names_the_sample_image_without_an_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge import demo

    monkeypatch.setattr(demo, "sample_image", lambda: _noise(64, 64, seed=5))
    monkeypatch.setattr(demo, "create_detector", lambda name, **kw: _Boxes([]))
    js = tmp_path / "d.json"
    assert demo.main(["--out", str(tmp_path / "d.png"), "--json", str(js), "--factors", "1", "--threads", "1"]) == 0
    assert json.loads(js.read_text())["image"] == demo.SAMPLE_SOURCE
    assert f"image: {demo.SAMPLE_SOURCE}, 64x64" in capsys.readouterr().out


def test_demo_margin_option_reaches_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--margin 0.3 crops with margin 0.3 (the JSON's detector settings said so while the crops used the default)."""
    from fsrfer_edge import demo
    from fsrfer_edge.detection.frames import write_image

    seen: list[Any] = []
    real = demo.run_demo

    def spy(frame: np.ndarray, rec: Any, det: Any, factors: Any, margin: Any = None, repeats: int = 5) -> Any:
        seen.append(margin)
        return real(frame, rec, det, factors, margin, repeats=1)

    monkeypatch.setattr(demo, "run_demo", spy)
    monkeypatch.setattr(demo, "create_detector", lambda name, **kw: _Boxes([(10.0, 10.0, 50.0, 50.0)]))
    src = tmp_path / "in.png"
    write_image(src, _noise(64, 64, seed=6))
    assert demo.main([str(src), "--out", str(tmp_path / "d.png"), "--factors", "1", "--margin", "0.3",
                      "--threads", "1"]) == 0
    assert seen == [0.3]


def test_demo_factor_0_is_refused_by_the_option_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge import demo

    def fail(*a: Any, **k: Any) -> None:
        raise AssertionError("work began before --factors was checked")

    monkeypatch.setattr(demo, "Recognizer", fail)
    with pytest.raises(SystemExit) as exc:
        demo.main(["--factors", "0,2", "--out", str(tmp_path / "d.png")])
    assert exc.value.code == 2
    assert "argument --factors: '0,2': expected integers >= 1" in capsys.readouterr().err


# ==================================================================================================================
# fsrfer-bench
# ==================================================================================================================
@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    make_tiny_onnx = importlib.import_module("_onnx_models").make_tiny_onnx  # tests/ is on sys.path
    return Path(make_tiny_onnx(tmp_path_factory.mktemp("bench67e") / "tiny.onnx"))


def _data(path: Path) -> Path:
    g = np.random.default_rng(0)
    np.savez(path, images=g.integers(0, 256, (12, 48, 48), dtype=np.uint8),
             labels=g.integers(0, 7, 12).astype(np.int8), split=np.array(["test"] * 12))
    return path


def test_bench_takes_the_largest_batch_sizes_it_names() -> None:
    """'each 1 to 4096': 4096 is taken by --batch-sizes and --overhead-batch, 4097 and 0 are not."""
    from fsrfer_edge import bench

    assert bench.parse_batch_sizes("1,4096") == [1, 4096]
    for bad in ("4097", "0,8"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.parse_batch_sizes(bad)
    args = bench.build_parser().parse_args(["--batch-sizes", "1", "--overhead-batch", "4096", "--json", "o.json"])
    bench.check_options(args)


def test_bench_records_the_models_hash_and_measures_the_overhead_at_the_batch_asked(model: Path) -> None:
    """The Recognizer is opened for the overhead batch too (64 with batch sizes 1), so it is measured at 64 with no
    note; model_sha256 is the model file's; sessions is 1 when not given; an empty list of batch sizes is refused."""
    from fsrfer_edge import bench

    doc = bench.run_bench(model, [1], warmup=0, iters=1, threads=1, overhead_batch=64, overhead_reps=1)
    assert doc["overhead"]["batch_size"] == 64 and "note" not in doc["overhead"]
    assert doc["max_batch"] == 64
    assert doc["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert doc["sessions"] == 1 and doc["threads"] == 1
    assert doc["schema"] == "fsrfer-bench/1" and doc["accuracy"] is None
    with pytest.raises(InputError, match="batch sizes"):
        bench.run_bench(model, [], warmup=0, iters=1, threads=1, overhead_batch=None)


def test_bench_refuses_a_factor_too_large_for_the_data_before_the_timings(model: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge import bench

    timed: list[int] = []
    monkeypatch.setattr(bench, "measure_latency", lambda rec, b, *a: timed.append(b))
    with pytest.raises(InputError):
        bench.run_bench(model, [1], data=_data(tmp_path / "faces.npz"), factors=[1, 49], warmup=0, iters=1,
                        threads=1, overhead_batch=None)
    assert timed == []


def test_bench_cli_repeats_the_overhead_100_times_by_default_and_records_the_protocol(
        model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge import bench

    out = tmp_path / "b.json"
    assert bench.main(["--model", str(model), "--batch-sizes", "1", "--warmup", "0", "--iters", "1", "--threads", "1",
                       "--overhead-batch", "1", "--data", str(_data(tmp_path / "faces.npz")), "--factors", "2",
                       "--json", str(out), "-q"]) == 0
    doc = json.loads(out.read_text())
    assert doc["overhead"]["reps"] == bench.OVERHEAD_REPS == 100
    assert doc["accuracy"]["protocol"] == "resized" and doc["accuracy"]["corrections"] == "none"
    assert "accuracy on 12 test faces (npz labels): x2 " in capsys.readouterr().out


def test_bench_the_ferplus_labels_read_with_labels_ferplus_are_among_the_inputs(tmp_path: Path) -> None:
    """--labels ferplus reads ferplus_labels.npz beside the data, so a --json over it must be refused too."""
    from fsrfer_edge import bench

    data = tmp_path / "fer2013.npz"
    for labels in (None, "ferplus"):
        assert ("the FER+ labels beside --data", tmp_path / "ferplus_labels.npz") in \
            bench.input_files(tmp_path / "m.onnx", str(data), labels)
    assert all("FER+" not in what for what, _ in bench.input_files(tmp_path / "m.onnx", str(data), "fer2013"))


def test_bench_summary_table_columns_split_and_one_session() -> None:
    """The table's columns are batch, p50, p99, faces/s; 'N test faces' for a split, 'N faces' for an archive
    without one; one session is not spelled out."""
    from fsrfer_edge import bench

    doc: dict[str, Any] = {"model": "m.onnx", "backend": "onnxruntime", "providers": ["CPUExecutionProvider"], "threads": 2,
           "sessions": 1, "latency": [{"batch_size": 8, "p50_ms": 1.5, "p99_ms": 9.25, "throughput_fps": 5333.3}],
           "overhead": None,
           "accuracy": {"split": "test", "n": 30, "labels": "npz", "per_factor": {"1": 0.5}}}
    lines = bench.format_summary(doc).splitlines()
    assert lines[0] == "m.onnx on onnxruntime ['CPUExecutionProvider'] (threads=2)"
    assert lines[-2].split() == ["8", "1.50", "9.25", "5333"]
    assert lines[-1] == "accuracy on 30 test faces (npz labels): x1 0.5000"
    doc["accuracy"]["split"] = "all"
    assert bench.format_summary(doc).splitlines()[-1] == "accuracy on 30 faces (npz labels): x1 0.5000"
