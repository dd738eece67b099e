"""Tests that kill hand-made mutants the rest of the suite let through (task K65g): what fsrfer-crowd and fsrfer-demo
write (the annotated video's frame rate and colours, where boxes, dashes and captions are drawn, the JSON's totals,
the options that reach the detector and the analyzer, the demo's probabilities in the order of "classes", its face
sizes, printed table and latencies) and fsrfer-export's engine pre-flight, report numbers, --check-trt and
--triton-repo wiring.
Tiny synthetic frames and videos, the shipped model or a tiny checkpoint, fake detectors and clocks only."""
from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("PIL")

from _video import write_video  # noqa: E402
from fsrfer_edge import Recognizer  # noqa: E402
from fsrfer_edge.detection import Detection, FaceDetector  # noqa: E402


class _Boxes(FaceDetector):
    """A detector that finds the given boxes in every frame, counting its calls."""

    name = "boxes"

    def __init__(self, boxes: list[tuple[float, float, float, float]]) -> None:
        super().__init__()
        self.boxes, self.calls = boxes, 0

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        self.calls += 1
        return [Detection(b, 0.9) for b in self.boxes]


@pytest.fixture(scope="module")
def rec() -> Any:
    with Recognizer(threads=1) as r:
        yield r


def _noise(n: int, h: int = 48, w: int = 48, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _fake_detector(monkeypatch: pytest.MonkeyPatch, module: Any, det: FaceDetector) -> list[dict[str, Any]]:
    """``module.create_detector`` gives ``det``; the keyword arguments of each call are returned."""
    calls: list[dict[str, Any]] = []

    def create(name: str, **kwargs: Any) -> FaceDetector:
        calls.append(dict(kwargs, name=name))
        return det

    monkeypatch.setattr(module, "create_detector", create)
    return calls


# ==================================================================================================================
# fsrfer-crowd
# ==================================================================================================================
def test_the_annotated_video_keeps_the_input_frame_rate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The output video plays at the input's rate (5 fps here), not at a fixed 25 fps: 5x too fast otherwise."""
    cv2 = pytest.importorskip("cv2")
    from fsrfer_edge import crowd_cli

    _fake_detector(monkeypatch, crowd_cli, _Boxes([]))
    video = write_video(tmp_path / "in.avi", _noise(3))
    out, js = tmp_path / "out.avi", tmp_path / "out.json"
    assert crowd_cli.main([str(video), "--out", str(out), "--json", str(js)]) == 0
    cap = cv2.VideoCapture(str(out))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    assert fps == pytest.approx(5.0, abs=0.01)
    assert json.loads(js.read_text())["fps"] == pytest.approx(5.0, abs=0.01)


def test_the_annotated_video_keeps_the_colours_of_the_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames are RGB inside and BGR for OpenCV: a red scene stays red in the video written (not blue)."""
    cv2 = pytest.importorskip("cv2")
    from fsrfer_edge import crowd_cli

    _fake_detector(monkeypatch, crowd_cli, _Boxes([]))
    red = np.zeros((240, 320, 3), np.uint8)  # wide enough for the legend to stay at the bottom
    red[..., 0] = 220
    video = write_video(tmp_path / "in.avi", [red, red])
    out = tmp_path / "out.avi"
    assert crowd_cli.main([str(video), "--out", str(out)]) == 0
    cap = cv2.VideoCapture(str(out))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    b, g, r = bgr[60:100, 100:200].reshape(-1, 3).mean(axis=0)  # below the summary line, above the legend
    assert r > 150 and b < 60 and g < 60, (b, g, r)


def _one_face(rec: Any, box: tuple[float, float, float, float], shape: tuple[int, int] = (120, 200)) -> Any:
    from fsrfer_edge.crowd import CrowdAnalyzer

    frame = np.full((*shape, 3), 90, np.uint8)
    return frame, CrowdAnalyzer(rec, _Boxes([box])).analyze(frame)


def test_with_scale_the_boxes_are_drawn_at_the_scaled_positions(rec: Any) -> None:
    from fsrfer_edge import crowd_cli

    frame, result = _one_face(rec, (20, 30, 80, 90))
    colour = np.array(crowd_cli.COLOURS[result.faces[0].label])
    drawn = crowd_cli.annotate(frame, result, scale=2, labels=False)
    assert drawn.shape[:2] == (240, 400)
    assert (drawn[80:160, 40] == colour).all()  # the left edge at x = 2 * 20, rows 2 * 40 .. 2 * 80
    assert (drawn[80:160, 160] == colour).all()  # the right edge at x = 2 * 80
    assert not (drawn[80:160, 100] == colour).all(axis=1).any()  # inside the box: the frame


def test_a_label_is_drawn_just_above_its_box(rec: Any) -> None:
    """The caption sits on a black patch above the box's top edge (not inside the box or below it)."""
    from fsrfer_edge import crowd_cli

    frame, result = _one_face(rec, (40, 50, 100, 110), shape=(200, 300))
    bare = crowd_cli.annotate(frame, result, labels=False)
    labelled = crowd_cli.annotate(frame, result, labels=True)
    changed = np.flatnonzero((bare != labelled).any(axis=2)[:150, 40:100].any(axis=1))  # rows above the legend
    assert changed.size and changed.max() < 50 and changed.min() >= 20, changed


def test_the_json_totals_count_every_frame_and_detect_every_reaches_the_detector(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """face_counts_all_frames sums each frame's faces (not the last frame's); --detect-every 3 runs the detector
    on frames 0, 1, 4 of 6 and says 3 in the JSON's "tracking"."""
    pytest.importorskip("cv2")
    from fsrfer_edge import crowd_cli

    det = _Boxes([(12.0, 12.0, 36.0, 36.0)])
    _fake_detector(monkeypatch, crowd_cli, det)
    video = write_video(tmp_path / "in.avi", _noise(6))
    js = tmp_path / "out.json"
    assert crowd_cli.main([str(video), "--out", str(tmp_path / "out.avi"), "--json", str(js), "--track",
                           "--confirm", "1", "--detect-every", "3"]) == 0
    doc = json.loads(js.read_text())
    assert det.calls == 3
    assert [f["detector_ran"] for f in doc["frames"]] == [True, True, False, False, True, False]
    assert doc["tracking"]["detect_every"] == 3
    assert doc["n_frames"] == 6 and sum(doc["face_counts_all_frames"].values()) == 6
    assert sum(sum(f["summary"]["counts"].values()) for f in doc["frames"]) == 6


def test_a_face_coasted_at_the_last_detection_stays_dashed_in_the_skipped_frames_after_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --detect-every 3 the detector runs on frames 0, 1 and 4; it loses the face at frame 4, which is coasted
    (a dashed box) there, and frame 5, which the detector skips, draws it as frame 4 did: dashed, not solid."""
    pytest.importorskip("cv2")
    from fsrfer_edge import crowd_cli

    class LosesItAtTheThirdCall(_Boxes):
        def _detect(self, frame: np.ndarray) -> list[Detection]:
            found = super()._detect(frame)
            return found if self.calls < 3 else []

    _fake_detector(monkeypatch, crowd_cli, LosesItAtTheThirdCall([(40.0, 40.0, 100.0, 100.0)]))
    drawn: list[tuple[Any, np.ndarray]] = []
    real = crowd_cli.annotate

    def spy(frame: np.ndarray, result: Any, *args: Any) -> np.ndarray:
        drawn.append((result, real(frame, result, *args)))
        return drawn[-1][1]

    monkeypatch.setattr(crowd_cli, "annotate", spy)
    grey = [np.full((200, 320, 3), 90, np.uint8) for _ in range(6)]
    video = write_video(tmp_path / "in.avi", grey)
    assert crowd_cli.main([str(video), "--out", str(tmp_path / "out.avi"), "--track", "--confirm", "1", "--coast",
                           "3", "--detect-every", "3", "--no-labels"]) == 0
    assert [r.detector_ran for r, _ in drawn] == [True, True, False, False, True, False]

    def left_edge(i: int) -> np.ndarray:
        result, image = drawn[i]
        assert len(result.faces) == 1
        colour = np.array(crowd_cli.COLOURS[result.faces[0].label])
        return (image[50:95, 40] == colour).all(axis=1)

    assert left_edge(1).all() and left_edge(3).all()  # found, and a skipped frame after a detection: solid
    assert not left_edge(4).all() and left_edge(4).any()  # lost at the detection of frame 4: dashed
    assert (left_edge(5) == left_edge(4)).all()  # skipped after it: as frame 4


def test_min_face_and_min_score_reach_the_detector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge import crowd_cli
    from fsrfer_edge.detection.frames import write_image

    calls = _fake_detector(monkeypatch, crowd_cli, _Boxes([]))
    src = tmp_path / "in.png"
    write_image(src, _noise(1, 40, 60)[0])
    assert crowd_cli.main([str(src), "--out", str(tmp_path / "o.png"), "--min-face", "9.5", "--min-score",
                           "0.25"]) == 0
    assert len(calls) == 1 and calls[0]["min_face"] == 9.5 and calls[0]["min_score"] == 0.25


def _image_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, boxes: list[tuple[float, float, float, float]],
               *extra: str) -> tuple[np.ndarray, dict[str, Any]]:
    from PIL import Image

    from fsrfer_edge import crowd_cli
    from fsrfer_edge.detection.frames import write_image

    _fake_detector(monkeypatch, crowd_cli, _Boxes(boxes))
    src, out, js = tmp_path / "in.png", tmp_path / f"out{len(extra)}.png", tmp_path / "out.json"
    write_image(src, np.full((200, 300, 3), 90, np.uint8))
    assert crowd_cli.main([str(src), "--out", str(out), "--json", str(js), *extra]) == 0
    with Image.open(out) as im:
        return np.asarray(im.convert("RGB")), json.loads(js.read_text())


def test_no_labels_draws_no_caption_on_an_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = (40.0, 50.0, 100.0, 110.0)
    labelled, _ = _image_run(tmp_path, monkeypatch, [box])
    bare, _ = _image_run(tmp_path, monkeypatch, [box], "--no-labels")
    above = (slice(25, 49), slice(40, 100))  # between the summary line and the box's top edge
    assert (labelled[above] == 0).all(axis=2).any()  # a caption on its black patch
    assert (bare[above] == 90).all()  # none: the frame as it was


def test_min_size_drops_the_smaller_faces_from_the_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    boxes = [(20.0, 20.0, 44.0, 44.0), (120.0, 40.0, 180.0, 100.0)]  # 24 px and 60 px
    _, every = _image_run(tmp_path, monkeypatch, boxes)
    _, large = _image_run(tmp_path, monkeypatch, boxes, "--min-size", "30")
    assert len(every["faces"]) == 2
    assert [f["box"] for f in large["faces"]] == [list(boxes[1])] and large["summary"]["n_faces"] == 1


# ==================================================================================================================
# fsrfer-demo
# ==================================================================================================================
def _demo_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
              boxes: list[tuple[float, float, float, float]], factors: str) -> tuple[dict[str, Any], str, np.ndarray]:
    from fsrfer_edge import demo
    from fsrfer_edge.detection.frames import write_image

    _fake_detector(monkeypatch, demo, _Boxes(boxes))
    frame = _noise(1, 120, 200, seed=4)[0]
    src = tmp_path / "in.png"
    write_image(src, frame)
    js = tmp_path / "demo.json"
    assert demo.main([str(src), "--out", str(tmp_path / "demo.png"), "--json", str(js), "--factors", factors,
                      "--threads", "1"]) == 0
    return json.loads(js.read_text()), capsys.readouterr().out, frame


def test_demo_json_gives_each_face_its_own_probabilities_in_the_order_of_classes(
        rec: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Each face's "probs" at each factor are its prediction's, in the order of the document's "classes" (the
    recogniser's), and "face_pixels" is round(48 / factor): 10 px at x5, 7 px at x7."""
    from fsrfer_edge import demo

    boxes = [(10.0, 10.0, 60.0, 60.0), (100.0, 20.0, 150.0, 70.0)]
    doc, _, frame = _demo_run(tmp_path, monkeypatch, capsys, boxes, "1,5,7")
    assert doc["classes"] == list(rec.classes)
    faces, _ = demo.run_demo(frame, rec, _Boxes(boxes), (1, 5, 7), repeats=1)
    assert len(doc["faces"]) == 2
    for face, got in zip(faces, doc["faces"]):
        assert {k: v["face_pixels"] for k, v in got["factors"].items()} == {"1": 48, "5": 10, "7": 7}
        for r in face.results:
            entry = got["factors"][str(r.factor)]
            np.testing.assert_allclose(entry["probs"], r.prediction.probs, atol=1e-6)
            # and they are this face's: its own crop given alone gives them
            np.testing.assert_allclose(entry["probs"], rec.predict([r.crop])[0].probs, atol=1e-4)
            assert entry["label"] == r.prediction.label == doc["classes"][int(np.argmax(entry["probs"]))]
    # the two faces differ: the answers are not swapped between them
    assert doc["faces"][0]["factors"]["1"]["probs"] != doc["faces"][1]["factors"]["1"]["probs"]


def test_demo_report_lines_give_the_box_as_width_x_height_and_the_confidence(rec: Any) -> None:
    from fsrfer_edge import demo

    frame = _noise(1, 120, 200, seed=5)[0]
    faces, timings = demo.run_demo(frame, rec, _Boxes([(10.0, 20.0, 70.0, 50.0)]), (1, 4), repeats=1)
    lines = demo.report_lines(faces, timings, "in.png", frame.shape, "boxes")
    assert lines[0] == "image: in.png, 200x120"
    assert "60x30 px" in lines[2]
    for r, line in zip(faces[0].results, lines[3:5]):
        conf = r.prediction.confidence
        assert conf is not None  # the shipped model has its score calibration
        assert line.endswith(f"{r.prediction.label:9s} {r.prediction.score:.2f}  confidence {conf:.2f}")


def test_demo_latency_is_the_median_of_the_repeats(rec: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each factor's latency is the median of its timed repeats (one slow outlier does not set it)."""
    from fsrfer_edge import demo

    ticks = iter([0.0, 0.001] + [0.0, 0.002, 0.0, 0.050, 0.0, 0.003])  # detect, then three repeats: 2, 50, 3 ms
    monkeypatch.setattr(demo, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))
    frame = _noise(1, 80, 80, seed=6)[0]
    _, timings = demo.run_demo(frame, rec, _Boxes([(10.0, 10.0, 60.0, 60.0)]), (2,), repeats=3)
    assert timings["detect_ms"] == pytest.approx(1.0)
    assert timings["predict_ms"] == {2: pytest.approx(3.0)}


# ==================================================================================================================
# fsrfer-export
# ==================================================================================================================
def _calib_npz(path: Path, n: int = 12) -> Path:
    np.savez(path, images=np.random.default_rng(0).integers(0, 256, (n, 48, 48), dtype=np.uint8))
    return path


def test_export_engine_preflight_names_the_file_the_engine_would_be_built_from(tmp_path: Path) -> None:
    """Without TensorRT, --engine is refused before the export, naming the ONNX file to copy to the GPU: with
    --int8-target cpu no s8s8 file is written, so that is the FP32 file, not NAME.int8-s8s8.onnx."""
    from fsrfer_edge.errors import BackendUnavailable
    from fsrfer_edge.export import cli

    pt = tmp_path / "tiny.pt"
    pt.write_bytes(b"not read before the TensorRT check")
    calib = _calib_npz(tmp_path / "calib.npz")
    out = tmp_path / "out"
    for target, fp16, wanted in (("cpu", False, "tiny.fp32.onnx"), ("cpu", True, "tiny.fp16.onnx"),
                                 ("both", True, "tiny.int8-s8s8.onnx")):
        opts = cli.ExportOptions(source=pt, out_dir=out, engine=True, fp16=fp16, int8=True, calib=calib,
                                 calib_size=12, int8_target=target)
        with pytest.raises(BackendUnavailable) as err:
            cli.run(opts)
        assert str(out / wanted) in str(err.value), (target, str(err.value))
    assert not out.exists()  # nothing was written


def test_export_summary_gives_file_sizes_in_megabytes(tmp_path: Path) -> None:
    from fsrfer_edge.export import cli

    report = {"files": {"fp32": {"file": "m.fp32.onnx", "bytes": 2_500_000}}, "report": str(tmp_path / "m.report.json")}
    lines = cli._summary(report).splitlines()
    assert lines[0] == f"wrote {tmp_path / 'm.fp32.onnx'} (2.50 MB)"


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One INT8 export (both targets) of a tiny checkpoint, calibrated on 8 faces though 64 are asked for, and
    evaluated on 16 labelled faces (about 4 s)."""
    pytest.importorskip("onnxsim")
    torch = pytest.importorskip("torch")
    from fsrfer_edge.export import cli
    from fsrfer_edge.preprocessing import Preprocessing, resize
    from trainer import checkpoint
    from trainer.models import InferenceModel

    def _faces(n: int, seed: int) -> np.ndarray:  # smooth synthetic 48x48 "faces", as tests/test_export.py's
        coarse = np.random.default_rng(seed).uniform(0, 255, size=(n, 6, 6)).astype(np.float32)
        return np.clip(np.rint(resize(coarse, (48, 48))), 0, 255).astype(np.uint8)

    def _make_checkpoint(path: Path, method: str) -> None:
        torch.manual_seed(0)
        spec = {"method": method, "backbone": "tiny"}
        model = InferenceModel(spec).eval()
        checkpoint.save(path, checkpoint.model_payload(model, spec, Preprocessing(), {"note": "test"}))

    d = tmp_path_factory.mktemp("int8_export")
    _make_checkpoint(d / "tiny.pt", "fsrfer")
    np.savez(d / "calib.npz", images=_faces(8, 1))
    np.savez(d / "eval.npz", images=_faces(16, 2), labels=np.arange(16) % 7)
    assert cli.main([str(d / "tiny.pt"), "--out-dir", str(d / "o"), "--int8", "--calib", str(d / "calib.npz"),
                     "--calib-size", "64", "--calib-factors", "1,2", "--eval-data", str(d / "eval.npz"),
                     "--max-int8-drop", "100", "-q"]) == 0
    return json.loads((d / "o" / "tiny.report.json").read_text())


def test_the_export_report_counts_the_faces_really_used(int8_export: dict[str, Any]) -> None:
    """8 calibration faces were there (of 64 asked for) and 16 evaluation faces (--eval-size 0: all): the report
    says so, not the numbers asked for."""
    assert int8_export["calibration"]["faces"] == 8
    assert int8_export["accuracy"]["faces"] == 16


def test_check_trt_names_how_many_more_problems_it_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.errors import ModelError
    from fsrfer_edge.export import cli, engine, onnx_export, trt_check

    errors = [f"node n{i}: operator Foo is not supported" for i in range(cli.MAX_ERRORS_SHOWN + 3)]
    monkeypatch.setattr(onnx_export, "load_onnx", lambda path: object())
    monkeypatch.setattr(onnx_export, "read_model_info", lambda model: (_ for _ in ()).throw(ModelError("no info")))
    monkeypatch.setattr(engine, "refuse_non_tensorrt_int8", lambda *args: None)
    monkeypatch.setattr(trt_check, "check_file",
                        lambda path: trt_check.TrtCheckReport(str(path), ["10.x"], errors + errors[:2]))
    with pytest.raises(ModelError) as err:
        cli.check_trt_main(tmp_path / "m.onnx")
    text = str(err.value)
    assert text.endswith(f"{errors[cli.MAX_ERRORS_SHOWN - 1]}; and 3 more"), text
    assert errors[cli.MAX_ERRORS_SHOWN] not in text


@pytest.mark.parametrize("extra", [["--out-dir", "engines"], ["--name", "m"]])
def test_check_trt_refuses_the_options_of_an_export_it_would_ignore(extra: list[str], tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """--check-trt only checks its file: an --out-dir or --name beside it is refused (exit 2), not ignored."""
    from fsrfer_edge.export import cli

    assert cli.main(["--check-trt", str(tmp_path / "m.onnx"), *extra]) == 2
    assert f"--check-trt FILE only checks FILE; expected no {extra[0]} with it" in capsys.readouterr().err
    assert not (tmp_path / "engines").exists()


def test_the_triton_repository_gets_this_runs_files_and_options(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """--triton-repo is written from this run's FP32 file and engine, with --name, --triton-instances, -kind,
    -max-queue-delay-us and -threads as given."""
    from fsrfer_edge.export import cli
    from fsrfer_edge.serving import triton_repo

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(triton_repo, "write_triton_repo", lambda repo, **kwargs: calls.append(dict(kwargs, repo=repo)))
    out, repo = tmp_path / "out", tmp_path / "repo"
    opts = cli.ExportOptions(source=tmp_path / "m.pt", out_dir=out, name="m", triton_repo=repo, triton_instances=3,
                             triton_kind="KIND_CPU", triton_max_queue_delay_us=500, triton_threads=2)
    report = {"files": {"fp32": {"file": "m.fp32.onnx"}, "int8-u8s8": {"file": "m.int8-u8s8.onnx"}},
              "engine": {"file": "m.plan", "from": "m.fp32.onnx"}}
    assert cli._write_triton_repo(opts, repo, report)["triton_repo"] == str(repo)
    assert calls == [{"repo": repo, "onnx_path": out / "m.fp32.onnx", "engine_path": out / "m.plan",
                      "model_name": "m", "instances": 3, "kind": "KIND_CPU", "max_queue_delay_us": 500,
                      "overwrite": True, "threads": 2}]
