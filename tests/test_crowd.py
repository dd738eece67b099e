"""Crowd analysis: CrowdAnalyzer (frames, paths, plug-in detectors, boxes in, bad input, streams), the
fsrfer-crowd CLI on an image and a tiny video, and the seeded crowd benchmark."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from fsrfer_edge import InputError, Recognizer
from fsrfer_edge.crowd import CrowdAnalyzer, FaceResult, crop_face, square_box, summarize
from fsrfer_edge.detection import Detection, FaceDetector

skimage = pytest.importorskip("skimage")

from fsrfer_edge import crowd, crowd_bench, crowd_cli
from fsrfer_edge.detection.frames import write_image
from _video import write_video


@pytest.fixture(scope="module")
def rec() -> Recognizer:
    r = Recognizer(threads=2)  # the shipped default model
    yield r
    r.close()


@pytest.fixture(scope="module")
def analyzer(rec: Recognizer) -> CrowdAnalyzer:
    a = CrowdAnalyzer(rec, min_face=12)
    yield a
    a.close()


@pytest.fixture(scope="module")
def scene() -> crowd_bench.Scene:
    """A small seeded scene of the public-domain astronaut face (no FER faces in tests' files)."""
    pool = crowd_bench.public_domain_faces()
    return crowd_bench.make_scene(pool, seed=3, n_faces=6, size=(200, 280), background="clutter",
                                  face_range=(16, 40))


class FixedDetector(FaceDetector):
    name = "fixed"

    def __init__(self, boxes: list[tuple[float, float, float, float]]) -> None:
        super().__init__()
        self.boxes = boxes

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        return [Detection(b, 0.9) for b in self.boxes]


# --------------------------------------------------------------------------------------------
# CrowdAnalyzer
# --------------------------------------------------------------------------------------------
def test_analyze_finds_the_faces_and_summarises(analyzer: CrowdAnalyzer, scene: crowd_bench.Scene) -> None:
    result = analyzer.analyze(scene.image)
    hit = crowd_bench.match(scene.boxes, [Detection(f.box, f.score) for f in result.faces])
    assert (hit >= 0).mean() >= 0.8
    s = result.summary
    assert s.n_faces == len(result.faces) == sum(s.counts.values())
    assert set(s.counts) == set(result.classes) == set(rec_classes(analyzer))
    assert sum(s.mean_probs.values()) == pytest.approx(1.0, abs=1e-4)
    face = result.faces[0]
    assert face.label == result.classes[face.index] and face.size_px == pytest.approx(max(
        face.box[2] - face.box[0], face.box[3] - face.box[1]))
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["summary"]["n_faces"] == s.n_faces and set(doc["timings_ms"]) == {"detect", "recognize"}


def rec_classes(analyzer: CrowdAnalyzer) -> tuple[str, ...]:
    return analyzer.recognizer.classes


def test_all_crops_go_to_the_recognizer_in_one_call(rec: Recognizer, scene: crowd_bench.Scene,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = rec.predict

    def spy(faces, **kw):  # type: ignore[no-untyped-def]
        calls.append(len(faces))
        return original(faces, **kw)

    monkeypatch.setattr(rec, "predict", spy)
    boxes = [tuple(b) for b in scene.boxes]
    result = CrowdAnalyzer(rec, FixedDetector(boxes)).analyze(scene.image)
    assert calls == [len(boxes)] and len(result.faces) == len(boxes)


def test_plugin_detector_and_boxes_in_give_the_same_results(rec: Recognizer, scene: crowd_bench.Scene) -> None:
    boxes = [tuple(float(v) for v in b) for b in scene.boxes]
    with CrowdAnalyzer(rec, FixedDetector(boxes)) as a:
        via_detector = a.analyze(scene.image)
        via_boxes = a.analyze(scene.image, boxes=boxes)
    assert [f.box for f in via_detector.faces] == boxes
    assert [f.label for f in via_detector.faces] == [f.label for f in via_boxes.faces]
    assert np.allclose([f.probs for f in via_detector.faces], [f.probs for f in via_boxes.faces])
    assert {f.score for f in via_detector.faces} == {0.9} and {f.score for f in via_boxes.faces} == {1.0}
    # The analyzer does not close a detector or recogniser it was given.
    assert not rec.backend.closed


def test_min_score_and_min_size_filter(rec: Recognizer) -> None:
    det = FixedDetector([(0, 0, 30, 30), (40, 0, 45, 5)])
    frame = np.full((50, 60, 3), 90, np.uint8)
    assert len(CrowdAnalyzer(rec, det, min_size=6).analyze(frame).faces) == 1
    assert len(CrowdAnalyzer(rec, det, min_size=0).analyze(frame).faces) == 2
    assert len(CrowdAnalyzer(rec, det, min_score=0.95, min_size=0).analyze(frame).faces) == 0


def test_no_faces_gives_an_empty_result_with_zero_counts(analyzer: CrowdAnalyzer) -> None:
    result = analyzer.analyze(np.full((96, 128, 3), 200, np.uint8))
    assert result.faces == () and result.summary.n_faces == 0 and result.summary.dominant is None
    assert set(result.summary.counts.values()) == {0} and set(result.summary.mean_probs.values()) == {0.0}
    assert json.loads(json.dumps(result.to_dict()))["faces"] == []


def test_gray_and_rgba_frames_are_accepted(rec: Recognizer, scene: crowd_bench.Scene) -> None:
    a = CrowdAnalyzer(rec, FixedDetector([tuple(scene.boxes[0])]))
    rgb = a.analyze(scene.image)
    gray = a.analyze(scene.image[:, :, 0])  # the scene is gray in all three channels
    rgba = a.analyze(np.dstack([scene.image, np.full(scene.image.shape[:2], 255, np.uint8)]))
    assert rgb.faces[0].label == gray.faces[0].label == rgba.faces[0].label
    assert np.allclose(rgb.faces[0].probs, rgba.faces[0].probs)


@pytest.mark.parametrize("frame, words", [
    (np.zeros((0, 0, 3), np.uint8), "empty frame"),
    (np.full((32, 32, 3), 0.5), "scaled to [0, 1]"),  # the pixel contract Recognizer uses too
    (np.full((32, 32, 3), 300.0), "expected floats in [0, 255]"),
    (np.zeros((32, 32, 3), np.int64), "dtype int64"),
    (np.zeros((32, 32, 2), np.uint8), "(32, 32, 2)"),
    (np.zeros((32,), np.uint8), "(32,)"),
    (None, "NoneType"),
])
def test_bad_frames_raise_input_errors(analyzer: CrowdAnalyzer, frame: object, words: str) -> None:
    with pytest.raises(InputError) as err:
        analyzer.analyze(frame)  # type: ignore[arg-type]
    assert words in str(err.value) and "expected" in str(err.value)


def test_image_paths_and_unreadable_files(analyzer: CrowdAnalyzer, scene: crowd_bench.Scene, tmp_path: Path) -> None:
    path = tmp_path / "scene.png"
    write_image(path, scene.image)
    assert analyzer.analyze(str(path)).summary.n_faces == analyzer.analyze(scene.image).summary.n_faces
    with pytest.raises(InputError, match="does not exist"):
        analyzer.analyze(tmp_path / "missing.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match="could not be read"):
        analyzer.analyze(junk)


def test_bad_boxes_and_options(analyzer: CrowdAnalyzer, rec: Recognizer) -> None:
    frame = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(InputError, match=r"shape \(1, 3\); expected N boxes of 4"):
        analyzer.analyze(frame, boxes=[(1, 2, 3)])
    assert analyzer.analyze(frame, boxes=[]).faces == ()
    with pytest.raises(InputError, match="margin"):
        CrowdAnalyzer(rec, FixedDetector([]), margin=5)
    with pytest.raises(InputError, match="FaceDetector"):
        CrowdAnalyzer(rec, detector="blazeface")  # type: ignore[arg-type]


def test_square_crop_margin_and_frame_edges() -> None:
    frame = np.arange(100, dtype=np.uint8).reshape(10, 10)[:, :, None].repeat(3, axis=2)
    assert square_box((2, 2, 6, 4), 0.0) == (2, 1, 6, 5)
    assert square_box((2, 2, 6, 6), 0.25) == (1, 1, 7, 7)
    crop = crop_face(frame, (-2, -2, 2, 2), 0.0)  # half outside: edge pixels repeated
    assert crop.shape == (4, 4, 3) and (crop[:2, :2] == frame[0, 0]).all()
    assert crop_face(frame, (20, 20, 24, 24), 0.0).shape == (4, 4, 3)


def test_summarize_without_faces() -> None:
    s = summarize([], ("a", "b"))
    assert s.counts == {"a": 0, "b": 0} and s.to_dict()["dominant"] is None


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------
def test_stream_pipelined_equals_sequential(rec: Recognizer, scene: crowd_bench.Scene) -> None:
    frames = [scene.image, scene.image[:, ::-1].copy(), np.full((60, 80, 3), 10, np.uint8)]
    a = CrowdAnalyzer(rec, min_face=12)
    try:
        piped = list(a.analyze_stream(frames, pipeline=True))
        plain = list(a.analyze_stream(iter(frames), pipeline=False))
        assert [r.frame_index for r in piped] == [0, 1, 2]
        for p, q in zip(piped, plain):
            assert [f.box for f in p.faces] == [f.box for f in q.faces]
            assert [f.label for f in p.faces] == [f.label for f in q.faces]
        assert piped[2].summary.n_faces == 0
        assert len(list(a.analyze_stream(frames, max_frames=2))) == 2
        assert list(a.analyze_stream([])) == []
    finally:
        a.close()


def test_default_analyzer_owns_and_closes_its_models(scene: crowd_bench.Scene) -> None:
    with CrowdAnalyzer(min_face=16) as a:
        assert a.detector.name == crowd.DEFAULT_DETECTOR == "yunet" and a.analyze(scene.image).summary.n_faces >= 1
        assert a.margin == crowd.MARGINS["yunet"]
        stream = a.analyze_stream([scene.image] * 3, pipeline=True)
        assert next(stream).frame_index == 0
        stream.close()  # stopping a pipelined stream early leaves no thread behind
    assert a.recognizer.backend.closed and a.detector.closed


def _spinning(session: object) -> str:
    """The session's ``allow_spinning`` entry ("default" when never set: ONNX Runtime spins)."""
    try:
        return session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")  # type: ignore[attr-defined]
    except RuntimeError:
        return "default"


def test_crowd_sessions_take_turns_without_spin_waiting(scene: crowd_bench.Scene) -> None:
    # The detector's and the analyzer's own recogniser's threads must not spin after their runs (they
    # would take the cores from the other session); a Recognizer alone keeps ONNX Runtime's default.
    with CrowdAnalyzer() as analyzer:
        assert _spinning(analyzer.detector._session) == "0"  # type: ignore[attr-defined]
        assert _spinning(analyzer.recognizer.backend._session) == "0"  # type: ignore[attr-defined]
        assert len(analyzer.analyze(scene.image).faces) > 0
    with Recognizer() as alone:
        assert _spinning(alone.backend._session) == "default"  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="spinning"):
        Recognizer(spinning="no")  # type: ignore[arg-type]


def test_stream_bad_sources(analyzer: CrowdAnalyzer, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="frame 1"):
        list(analyzer.analyze_stream([np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 0.5, np.float32)]))
    with pytest.raises(InputError, match="one array"):
        list(analyzer.analyze_stream(np.zeros((8, 8, 3), np.uint8)))  # type: ignore[arg-type]
    pytest.importorskip("cv2")
    with pytest.raises(InputError, match="does not exist"):
        list(analyzer.analyze_stream(tmp_path / "missing.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 2048)
    with pytest.raises(InputError, match="junk.mp4"):
        list(analyzer.analyze_stream(junk))


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def test_cli_image_writes_annotated_png_and_json(scene: crowd_bench.Scene, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.png"
    write_image(src, scene.image)
    out, js = tmp_path / "out.png", tmp_path / "res.json"
    assert crowd_cli.main([str(src), "--out", str(out), "--json", str(js), "--min-face", "12", "--scale", "2",
                           "--threads", "2"]) == 0
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (2 * scene.image.shape[1], 2 * scene.image.shape[0])
    doc = json.loads(js.read_text())
    assert doc["summary"]["n_faces"] == len(doc["faces"]) >= 1 and doc["input"] == str(src)
    assert sum(doc["summary"]["shares"].values()) == pytest.approx(1, abs=1e-3)  # the shipped model's calibration
    printed = capsys.readouterr().out
    assert "faces" in printed and "estimated shares (corrected for face sizes): " in printed


def test_cli_sessions_split_the_faces_and_give_the_same_results(scene: crowd_bench.Scene, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    write_image(src, scene.image)
    docs = []
    for extra in ([], ["--sessions", "2"]):
        js = tmp_path / f"res{len(extra)}.json"
        assert crowd_cli.main([str(src), "--out", str(tmp_path / f"o{len(extra)}.png"), "--json", str(js),
                               "--min-face", "12", *extra]) == 0
        docs.append(json.loads(js.read_text()))
    assert [d["sessions"] for d in docs] == [1, 2]
    assert len(docs[0]["faces"]) >= 2
    assert [f["label"] for f in docs[0]["faces"]] == [f["label"] for f in docs[1]["faces"]]


def test_cli_video_writes_annotated_video_and_json(scene: crowd_bench.Scene, tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    video = write_video(tmp_path / "in.avi", [scene.image, scene.image[::-1].copy(), scene.image])
    out, js = tmp_path / "out.avi", tmp_path / "res.json"
    assert crowd_cli.main([str(video), "--out", str(out), "--json", str(js), "--min-face", "12",
                           "--max-frames", "2"]) == 0
    doc = json.loads(js.read_text())
    assert doc["n_frames"] == 2 and [f["frame_index"] for f in doc["frames"]] == [0, 1]
    # the shares over every face of every frame (GroupTally; tests/test_groups.py checks it against one estimate)
    shares = doc["shares_all_frames"]
    assert list(shares) == list(doc["frames"][0]["summary"]["shares"])
    assert sum(shares.values()) == pytest.approx(1, abs=1e-3)
    cap = cv2.VideoCapture(str(out))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape[:2] == scene.image.shape[:2]
    assert not list(tmp_path.glob(".out.*"))  # no temporary file left behind


def test_a_video_run_without_json_keeps_no_result_per_frame(scene: crowd_bench.Scene, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A camera recorded for hours without --json held every frame's result in memory for a report never written:
    run_video keeps them only for the JSON; the summary's counts are the same."""
    pytest.importorskip("cv2")
    video = write_video(tmp_path / "in.avi", [scene.image, scene.image[::-1].copy(), scene.image])
    docs = []
    real = crowd_cli.run_video
    monkeypatch.setattr(crowd_cli, "run_video", lambda *a, **k: docs.append(real(*a, **k)) or docs[-1])
    for extra in ([], ["--json", str(tmp_path / "r.json")]):
        assert crowd_cli.main([str(video), "--out", str(tmp_path / "o.avi"), "--min-face", "12", *extra]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert docs[0]["frames"] is None and len(docs[1]["frames"]) == docs[0]["n_frames"] == docs[1]["n_frames"] == 3
    assert docs[0]["face_counts_all_frames"] == docs[1]["face_counts_all_frames"] and lines[0] == lines[2]


@pytest.mark.parametrize("args, words", [
    (["missing.png", "--out", "o.png"], "does not exist"),
    (["missing", "--out", "o.png"], "does not exist"),  # before the output's suffix is judged
    (["{text}", "--out", "o.png"], "so it is read as a video"),
    (["{junk}", "--out", "o.png"], "could not be read"),
    (["{video}", "--out", "o.mp4"], "could not be opened"),
    (["{img}", "--out", "o.mp4"], "needs an image output"),
    (["{video}", "--out", "o.png"], "needs a video output"),
    (["{img}", "--out", "o.png", "--scale", "0"], "--scale"),
    (["{img}", "--out", "o.png", "--max-frames", "3"], "--max-frames applies to a video or a camera"),
])
def test_cli_bad_input_exits_2_with_a_message(args: list[str], words: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"garbage")
    video = tmp_path / "bad.mp4"
    video.write_bytes(b"\x00" * 1024)
    img = tmp_path / "img.png"
    write_image(img, np.zeros((40, 40, 3), np.uint8))
    if "{video}" in args and pytest.importorskip("cv2") is None:
        return
    text = tmp_path / "notes"
    text.write_text("not an image")
    argv = [a.format(junk=junk, video=video, img=img, text=text) for a in args]
    argv = [str(tmp_path / a) if a in ("o.png", "o.mp4", "missing.png", "missing") else a for a in argv]
    assert crowd_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "fsrfer-crowd: error:" in err and words in err


def test_cli_no_faces_still_writes_outputs(tmp_path: Path) -> None:
    img = tmp_path / "blank.png"
    write_image(img, np.full((64, 64, 3), 128, np.uint8))
    assert crowd_cli.main([str(img), "--out", str(tmp_path / "o.png"), "--json", str(tmp_path / "o.json")]) == 0
    assert json.loads((tmp_path / "o.json").read_text())["summary"]["n_faces"] == 0


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif", ".webp"])
def test_an_image_named_without_an_image_suffix_is_read_as_an_image(suffix: str, tmp_path: Path) -> None:
    """By its first bytes: a camera's "frame" or "snapshot.raw" is an image, not a video OpenCV cannot open."""
    write_image(tmp_path / f"x{suffix}", np.full((64, 64, 3), 128, np.uint8))
    bare = (tmp_path / f"x{suffix}").rename(tmp_path / f"frame_{suffix[1:]}")
    assert crowd_cli.input_kind(str(bare)) == "image"
    assert crowd_cli.main([str(bare), "--out", str(tmp_path / "o.png"), "--json", str(tmp_path / "o.json")]) == 0
    assert json.loads((tmp_path / "o.json").read_text())["summary"]["n_faces"] == 0
    video = tmp_path / "clip"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)  # an MP4's first box
    assert crowd_cli.input_kind(str(video)) == "video" and crowd_cli.input_kind(str(tmp_path / "gone")) == "video"
    assert crowd_cli.input_kind("0") == "camera"
    if hasattr(os, "mkfifo"):  # a pipe is not opened to sniff it (the open would block until a writer came)
        os.mkfifo(tmp_path / "pipe")
        assert crowd_cli.input_kind(str(tmp_path / "pipe")) == "video"


# --------------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------------
def test_scenes_are_seeded_and_well_formed() -> None:
    pool = crowd_bench.public_domain_faces()
    a = crowd_bench.make_scenes(pool, 2, seed=7, n_faces=25, size=(240, 320))
    b = crowd_bench.make_scenes(pool, 2, seed=7, n_faces=25, size=(240, 320))
    c = crowd_bench.make_scenes(pool, 2, seed=8, n_faces=25, size=(240, 320))
    assert all((x.image == y.image).all() and (x.boxes == y.boxes).all() for x, y in zip(a, b))
    assert not (a[0].image == c[0].image).all()
    assert [s.background for s in a] == ["plain", "clutter"]
    # Scene 0 does not depend on how many scenes are made.
    assert (crowd_bench.make_scenes(pool, 1, seed=7, n_faces=25, size=(240, 320))[0].image == a[0].image).all()
    for s in a:
        sizes = s.sizes
        assert len(s.boxes) >= 20 and sizes.min() >= 6 and sizes.max() <= 48
        assert (s.boxes[:, :2] >= 0).all() and (s.boxes[:, 2] <= 320).all() and (s.boxes[:, 3] <= 240).all()
        iou = crowd_bench.box_iou(s.boxes, s.boxes)
        assert (iou[~np.eye(len(iou), dtype=bool)] == 0).all()


def test_benchmark_without_data_writes_json_with_accuracy_skipped(tmp_path: Path) -> None:
    out = tmp_path / "crowd" / "small.json"
    assert crowd_bench.main(["--no-data", "--scenes", "2", "--faces", "10", "--size", "256x192", "--out", str(out),
                             "--fps-repeats", "1", "--fps-size", "256x192", "--threads", "2", "--min-face", "12",
                             "--score-sweep", "0.5,0.9"]) == 0
    doc = json.loads(out.read_text())
    assert doc["accuracy"] is None and "no expression labels" in doc["accuracy_skipped"]
    bins = doc["detection"]["bins"]
    assert [b["bin"] for b in bins] == ["6-8", "8-12", "12-16", "16-24", "24-32", "32-48"]
    assert sum(b["faces"] for b in bins) == doc["detection"]["overall"]["faces"] == 20
    assert 10 <= doc["speed"]["faces"] <= 50 and doc["speed"]["fps"] > 0 and doc["config"]["seed"] == 0
    assert doc["speed"]["frame_size"] == [192, 256]
    assert doc["config"]["model_sha256"] and len(doc["config"]["model_sha256"]) == 64
    sweep = doc["score_sweep"]
    assert "astronaut" in sweep["photos"] and len(sweep["photos"]) == len(crowd_bench.FACE_FREE_PHOTOS) + 1
    lo, hi = sweep["thresholds"]["0.5"], sweep["thresholds"]["0.9"]
    assert set(lo["false_faces_by_photo"]) == set(sweep["photos"])
    assert lo["false_faces_real_photos"] == sum(lo["false_faces_by_photo"].values()) >= hi["false_faces_real_photos"]
    assert lo["recall"] >= hi["recall"] and lo["recall"] == doc["detection"]["overall"]["recall"]


class ScoredDetector(FaceDetector):
    """Fixed detections with scores; like the ONNX detectors, it returns those scoring at least ``min_score``."""

    name = "scored"

    def __init__(self, dets: list[Detection], min_score: float = 0.5) -> None:
        super().__init__()
        self.dets, self.min_score, self.calls = dets, min_score, []  # type: ignore[var-annotated]

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        self.calls.append(self.min_score)
        return [d for d in self.dets if d.score >= self.min_score]


def test_score_sweep_runs_the_detector_again_at_each_threshold(rec: Recognizer) -> None:
    """Each threshold runs the detector with that min_score and matches its detections to the true faces."""
    truth = np.array([[0, 0, 10, 10], [50, 50, 70, 70]], float)
    scene = crowd_bench.Scene(np.zeros((100, 100, 3), np.uint8), truth, np.array([-1, -1]), "clutter", 0)
    det = ScoredDetector([Detection((0, 0, 10, 10), 0.9), Detection((50, 50, 70, 70), 0.55),
                          Detection((80, 0, 95, 15), 0.65), Detection((1, 1, 20, 20), 0.75)], min_score=0.7)
    photo = np.zeros((100, 100, 3), np.uint8)
    analyzer = CrowdAnalyzer(rec, det, min_score=0.95)
    out = crowd_bench.score_sweep(analyzer, [scene], (0.5, 0.6, 0.8),
                                  photos=[("empty", photo, np.zeros((0, 4))), ("one", photo, np.array([[1, 1, 20, 20.]]))])
    assert det.calls == [0.5, 0.5, 0.5, 0.6, 0.6, 0.6, 0.8, 0.8, 0.8]  # the scene and both photos per threshold
    assert det.min_score == 0.7 and analyzer.min_score == 0.95  # restored
    t = out["thresholds"]
    assert [t[k]["recall"] for k in ("0.5", "0.6", "0.8")] == [1.0, 0.5, 0.5]
    assert [t[k]["false_faces_per_clutter_scene"] for k in ("0.5", "0.6", "0.8")] == [2.0, 2.0, 0.0]
    assert t["0.5"]["false_faces_by_photo"] == {"empty": 4, "one": 3}  # the true face in "one" is not false
    assert t["0.8"]["false_faces_by_photo"] == {"empty": 1, "one": 1}
    assert t["0.6"]["recall_bins"]["16-24"] == 0.0 and t["0.6"]["recall_bins"]["8-12"] == 1.0
    assert t["0.5"]["accuracy"] is None  # unlabelled faces
    with pytest.raises(InputError, match="no score threshold"):
        crowd_bench.score_sweep(CrowdAnalyzer(rec, FixedDetector([])), [scene], (0.5,), photos=[])


def test_benchmark_min_score_drops_low_scoring_detections(tmp_path: Path) -> None:
    args = ["--no-data", "--scenes", "1", "--faces", "12", "--size", "256x192", "--fps-repeats", "0", "--threads", "2",
            "--score-sweep="]
    found = {}
    for score in ("0.5", "0.999"):
        out = tmp_path / f"{score}.json"
        assert crowd_bench.main([*args, "--min-score", score, "--out", str(out)]) == 0
        doc = json.loads(out.read_text())
        assert doc["config"]["detector_min_score"] == float(score)
        found[score] = doc["detection"]["overall"]["detections"]
    assert found["0.5"] > found["0.999"]


@pytest.mark.data
def test_benchmark_with_fer_test_faces_writes_accuracy(shared_data: Path, tmp_path: Path) -> None:
    pool = crowd_bench.load_test_faces(shared_data)
    assert pool.labelled and len(pool.images) > 3000 and pool.images.shape[1:] == (48, 48)
    out = tmp_path / "bench.json"
    assert crowd_bench.main(["--data", str(shared_data), "--scenes", "2", "--faces", "12", "--size", "256x192",
                             "--margins", "0,0.1", "--fps-repeats", "0", "--min-face", "12", "--threads", "2",
                             "--score-sweep=", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    acc = report["accuracy"]
    assert "FER+" in report["faces_source"] and 0.0 <= acc["overall"]["accuracy"] <= 1.0
    assert set(report["margin_sweep"]) == {"0", "0.1", f"{crowd.MARGINS['yunet']:g}"}  # the detector's own margin too
    big = [b for b in acc["bins"] if b["bin"] in ("24-32", "32-48") and b["faces"]]
    assert big and all(b["accuracy_true_boxes"] is not None for b in big)
    assert "speed" not in report and "score_sweep" not in report


def test_benchmark_compares_detectors_in_their_own_processes(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """--compare: one process per detector, interleaved timing rounds with the load average, detection
    speed-up against BlazeFace, and a large photo per detector in a fresh process with its peak memory."""
    out = tmp_path / "cmp.json"
    assert crowd_bench.main(["--no-data", "--scenes", "1", "--faces", "8", "--size", "256x192", "--fps-size", "256x192",
                             "--fps-repeats", "1", "--rounds", "2", "--compare", "blazeface", "--big-photo", "0.3",
                             "--score-sweep=", "--min-face", "16", "--threads", "1", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    comp = doc["comparison"]
    assert [d["label"] for d in comp["detectors"]] == ["yunet", "blazeface"] and comp["baseline"] == "blazeface"
    assert comp["rounds"] == 2 and len(comp["load_average_at_end"]) == 3
    yun, blaze = (d["report"] for d in comp["detectors"])
    assert yun["config"]["detector_name"] == "yunet" and blaze["config"]["detector_name"] == "blazeface"
    assert yun["detection"] == doc["detection"]  # the top level is the --detector's report
    assert comp["detectors"][1]["detect_speedup"] == 1.0 and comp["detectors"][0]["detect_speedup"] > 0
    for rep in (yun, blaze):
        sp = rep["speed"]
        assert sp["rounds"] == 2 and len(sp["per_round"]) == 2 and all(r["load_average"] for r in sp["per_round"])
        assert sp["fps"] > 0 and sp["fps_stream_pipelined"] > 0
        (big,) = rep["big_photo"]
        assert big["megapixels"] == pytest.approx(0.3, abs=0.01) and big["faces_found"] >= 1
        assert big["peak_rss_mb"] >= big["rss_with_frame_mb"] >= big["rss_models_loaded_mb"] > 0
    assert comp["detectors"][0]["margin"] == crowd.MARGINS["yunet"]
    capsys.readouterr()
    assert crowd_bench.main(["--table", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| yunet |" in table and "| blazeface |" in table and "0.3 MP photo" in table


def test_benchmark_compares_a_detector_with_itself_looking_for_smaller_faces(tmp_path: Path) -> None:
    """--compare yunet@12 beside the run's yunet (min face 16): its own process, labelled, its own enlargement."""
    out = tmp_path / "cmp.json"
    assert crowd_bench.main(["--no-data", "--scenes", "1", "--faces", "8", "--size", "256x192", "--fps-size", "256x192",
                             "--fps-repeats", "1", "--rounds", "1", "--compare", "yunet@12,yunet", "--score-sweep=",
                             "--min-face", "16", "--min-score", "0.4", "--margin", "0.1", "--threads", "1",
                             "--out", str(out)]) == 0
    comp = json.loads(out.read_text())["comparison"]
    assert [(d["label"], d["min_face"]) for d in comp["detectors"]] == [("yunet", 16), ("yunet@12", 12)]
    # the --detector at another face size keeps its other settings (it ran at the detector's defaults)
    assert [(d["min_score"], d["margin"]) for d in comp["detectors"]] == [(0.4, 0.1), (0.4, 0.1)]
    assert comp["baseline"] == "yunet" and comp["detectors"][0]["detect_speedup"] == 1.0
    assert "min_face=16.0" in comp["detectors"][0]["detector"] and "min_face=12.0" in comp["detectors"][1]["detector"]


@pytest.mark.parametrize("bad", ["yolo", "yunet@", "yunet@1", "yunet@x", "yunet@nan"])
def test_benchmark_compare_refuses_what_is_not_a_detector(bad: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def ran(*args: object, **kw: object) -> None:  # a refusal that regressed fails here, not after a real benchmark
        raise AssertionError(f"--compare {bad} was not refused: a benchmark started")

    monkeypatch.setattr(crowd_bench, "compare", ran)
    monkeypatch.setattr(crowd_bench, "run_benchmark", ran)
    with pytest.raises(SystemExit):
        crowd_bench.main(["--no-data", "--compare", bad, "--out", str(tmp_path / "x.json")])


def _fake_compare(specs: list, job: object, rounds: int, big_photo: object) -> list[dict]:
    """crowd_bench.compare's reports, without running a detector: detection takes 10, 20, 30... ms per spec."""
    speed = {"fps": 1.0, "frame_size": [192, 256], "faces": 8, "fps_stream_pipelined": 1.0, "recognize_ms": 1.0,
             "faces_found": 8}
    return [{"config": {"detector": f"{s.name}(min_face={s.min_face})", "detector_min_score": 0.5, "margin": 0.0},
             "detection": {"bins": [{"bin": "8-12", "recall": 0.5}]}, "accuracy": None,
             "speed": {**speed, "detect_ms": 10.0 * (i + 1), "per_round": [{"detect_ms": 10.0 * (i + 1)}]}}
            for i, s in enumerate(specs)]


@pytest.mark.parametrize("compare,baseline", [("blazeface@12", "blazeface@12"),
                                              ("blazeface@12,blazeface", "blazeface"),
                                              ("yunet@12", "yunet")])
def test_benchmark_comparison_baseline_is_a_row_of_the_comparison(compare: str, baseline: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The baseline was recorded by detector name: with blazeface@12 the only BlazeFace, "blazeface" named no row (the
    summary vanished) while the speed-ups were against blazeface@12; beside a plain blazeface, the speed-ups were
    against the first BlazeFace (blazeface@12) and the summary against the other."""
    monkeypatch.setattr(crowd_bench, "compare", _fake_compare)
    out = tmp_path / "cmp.json"
    assert crowd_bench.main(["--no-data", "--detector", "yunet", "--compare", compare, "--min-face", "16",
                             "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    comp = doc["comparison"]
    rows = {d["label"]: d for d in comp["detectors"]}
    assert comp["baseline"] == baseline and rows[baseline]["detect_speedup"] == 1.0
    summary = crowd_bench.comparison_summary(doc)
    assert (f"against **{baseline}**" in summary) == (baseline != "yunet")


def test_benchmark_comparison_tables_of_a_detector_without_a_score_or_a_speed(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """--detector opencv (no score threshold: min_score null) beside blazeface: --table failed on its own report
    ("unsupported format string passed to NoneType.__format__"); with --fps-repeats 0 the comparison table read
    "nan" for the detect ms and frames/s it did not measure."""
    def fake(specs: list, job: object, rounds: int, big_photo: object) -> list[dict]:
        reports = _fake_compare(specs, job, rounds, big_photo)
        reports[0]["config"]["detector_min_score"] = None
        for r in reports:
            del r["speed"]
        return reports

    monkeypatch.setattr(crowd_bench, "compare", fake)
    out = tmp_path / "cmp.json"
    assert crowd_bench.main(["--no-data", "--detector", "opencv", "--compare", "blazeface", "--fps-repeats", "0",
                             "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["comparison"]["detectors"][0]["min_score"] is None
    summary = crowd_bench.comparison_summary(doc)
    assert "against **blazeface**" in summary and "**opencv** (score -," in summary
    table = crowd_bench.comparison_table(doc)
    assert "nan" not in table and "| opencv | - | 0 |" in table


def test_no_cluttered_scene_gives_no_false_faces_per_cluttered_scene(rec: Recognizer) -> None:
    """With one scene (plain) there is no cluttered scene: false faces per cluttered scene were reported as 0.0
    (a denominator of 1 for none); they are null, and "-" in the table."""
    pool = crowd_bench.public_domain_faces()
    analyzer = CrowdAnalyzer(rec, ScoredDetector([Detection((0, 0, 30, 30), 0.9)], min_score=0.5))
    report = crowd_bench.run_benchmark(analyzer, pool, n_scenes=1, n_faces=4, size=(96, 128), fps_repeats=0,
                                       score_thresholds=(0.5,))
    assert report["detection"]["per_background"]["clutter"]["false_detections_per_scene"] is None
    assert report["detection"]["per_background"]["plain"]["false_detections_per_scene"] is not None
    assert report["score_sweep"]["thresholds"]["0.5"]["false_faces_per_clutter_scene"] is None
    row = crowd_bench.sweep_table(report).splitlines()[-1]
    assert row.split("|")[-4].strip() == "-"


def test_benchmark_times_the_opencv_fallback_on_large_photos_too() -> None:
    """--big-photo skipped OpenCV's fallback ("not tiled: it runs on the whole enlarged frame"); it is tiled
    now, as the ONNX detectors are, and is measured like them."""
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "CascadeClassifier"):
        pytest.skip("OpenCV 5 has no cascade classifier")
    job = crowd_bench.Job(None, None, 1, scenes=1, faces=4, size=(192, 256), fps_repeats=0)
    (report,) = crowd_bench.compare([crowd_bench.DetectorSpec("opencv", 16)], job, rounds=0, big_photos=[0.3])
    assert "big_photo_skipped" not in report
    (big,) = report["big_photo"]
    assert big["megapixels"] == pytest.approx(0.3, abs=0.01) and big["faces_found"] >= 1
    assert big["peak_rss_mb"] >= big["rss_with_frame_mb"] >= big["rss_models_loaded_mb"] > 0


def test_benchmark_bad_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crowd_bench.main(["--no-data", "--big-photo", "100", "--out", str(tmp_path / "x.json")]) == 2
    assert "--big-photo" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
    with pytest.raises(SystemExit):
        crowd_bench.main(["--no-data", "--compare", "yolo", "--out", str(tmp_path / "x.json")])


def test_frames_above_the_limit_are_refused_before_decoding(analyzer: CrowdAnalyzer, tmp_path: Path) -> None:
    from PIL import Image

    from fsrfer_edge.detection import MAX_FRAME_PIXELS

    huge = np.lib.stride_tricks.as_strided(np.zeros(3, np.uint8), (9000, 8000, 3), (0, 0, 1))  # no memory
    with pytest.raises(InputError, match="the limits are"):
        analyzer.analyze(huge)
    assert 9000 * 8000 > MAX_FRAME_PIXELS >= 8000 * 6000  # a 48 MP photo is accepted
    for side in (9000, 20000):  # 20000x20000 trips Pillow's own decompression-bomb check first
        path = tmp_path / f"big{side}.png"
        Image.new("1", (side, side)).save(path)
        with pytest.raises(InputError, match="megapixels"):
            analyzer.analyze(path)


def test_cli_json_names_both_scores_and_the_image_has_a_legend(rec: Recognizer, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    frame = np.full((160, 400, 3), 90, np.uint8)
    result = CrowdAnalyzer(rec, FixedDetector([(10, 10, 58, 58)])).analyze(frame)
    face = result.to_dict()["faces"][0]
    assert face["det_score"] == 0.9 and "score" not in face
    assert face["expr_score"] == pytest.approx(max(face["probs"].values()), abs=1e-4)
    drawn = crowd_cli.annotate(frame, result)
    bottom = {tuple(c) for c in drawn[-40:].reshape(-1, 3)}  # the legend: two lines on a 400 px frame
    assert {crowd_cli.COLOURS[c] for c in result.classes} <= bottom  # one swatch per expression
    assert crowd_cli.count_faces(1) == "1 face" and crowd_cli.count_faces(0) == "0 faces"
    src = tmp_path / "one.png"
    from fsrfer_edge.detection.frames import read_image

    skdata = pytest.importorskip("skimage.data")
    write_image(src, skdata.astronaut())
    assert crowd_cli.main([str(src), "--out", str(tmp_path / "o.png"), "--json", str(tmp_path / "o.json")]) == 0
    assert capsys.readouterr().out.startswith("1 face: ")  # the default detector finds the one face, no false ones
    doc = json.loads((tmp_path / "o.json").read_text())
    assert doc["summary"]["n_faces"] == 1 and {"det_score", "expr_score"} <= set(doc["faces"][0])
    assert read_image(tmp_path / "o.png").shape == (512, 512, 3)


def test_legend_wraps_to_the_frame_width() -> None:
    from fsrfer_edge.crowd_cli import legend_lines

    classes = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    width = lambda text: 6.0 * len(text)  # noqa: E731 - 6 px a character
    wide = legend_lines(width, 10, 2000, classes, labels=True)
    assert len(wide) == 1 and [name for name, _, _ in wide[0]][-1] == "label p = expression probability"
    for frame_width in (480, 200):
        lines = legend_lines(width, 10, frame_width, classes, labels=True)
        assert len(lines) > 1 and [n for line in lines for n, _, _ in line][:7] == list(classes)
        assert all(4 + sum(w for _, _, w in line) <= frame_width - 4 for line in lines if len(line) > 1)


@pytest.mark.parametrize("pipeline", [False, True])
def test_a_failing_source_keeps_every_frame_before_it(analyzer: CrowdAnalyzer, pipeline: bool) -> None:
    img = np.zeros((32, 32, 3), np.uint8)

    def camera():
        yield img
        yield img
        raise RuntimeError("camera unplugged")

    got = []
    with pytest.raises(RuntimeError, match="camera unplugged"):
        for r in analyzer.analyze_stream(camera(), pipeline=pipeline):
            got.append(r.frame_index)
    assert got == [0, 1]  # pipelined, frame 1 was detected before frame 2 failed: it is still answered
    got = []
    with pytest.raises(InputError, match="frame 1"):
        for r in analyzer.analyze_stream([img, np.zeros((10, 10), np.int64)], pipeline=pipeline):
            got.append(r.frame_index)
    assert got == [0]
    with pytest.raises(InputError, match="max_frames=1.5; expected an integer >= 1"):
        next(analyzer.analyze_stream([img], max_frames=1.5))  # type: ignore[arg-type]


def test_given_boxes_give_one_result_each_or_a_clear_error(analyzer: CrowdAnalyzer) -> None:
    img = np.zeros((64, 64, 3), np.uint8)
    r = analyzer.analyze(img, boxes=[[-5, -5, 20, 20], [10, 10, 30, 30]])
    assert [f.box for f in r.faces] == [(0.0, 0.0, 20.0, 20.0), (10.0, 10.0, 30.0, 30.0)]  # clipped, in order
    for boxes, words in (([[0, 0, 10, 10], [1, 2, 3]], "could not be read as numbers"),
                         ([["a", "b", "c", "d"]], "could not be read as numbers"),
                         ((b for b in [[0, 0, 10, 10]]), "boxes is a generator"),
                         ([[0, 0, 20, 20], [30, 30, 10, 10]], "box 1 is .*inverted or empty"),
                         ([[100, 100, 120, 120]], "less than a pixel of it lies in the 64x64 frame"),
                         ([[float("nan"), 0, 10, 10]], "box 0 is .*4 finite numbers")):
        with pytest.raises(InputError, match=words):
            analyzer.analyze(img, boxes=boxes)  # type: ignore[arg-type]


def test_a_closed_analyzer_says_so(rec: Recognizer) -> None:
    from fsrfer_edge.backends.base import BackendClosedError

    a = CrowdAnalyzer(rec, FixedDetector([]))
    a.close()
    a.close()  # twice is fine
    img = np.zeros((16, 16, 3), np.uint8)
    for use in (lambda: a.analyze(img), lambda: next(a.analyze_stream([img])), lambda: a.__enter__()):
        with pytest.raises(BackendClosedError, match="this CrowdAnalyzer was closed"):
            use()
    assert len(rec.predict(np.zeros((12, 12), np.uint8))) == 1  # the recogniser it was given stays open


def test_tracked_faces_are_drawn_with_their_track_ids_and_coasted_ones_dashed(rec: Recognizer) -> None:
    import dataclasses

    import PIL

    if tuple(int(p) for p in PIL.__version__.split(".")[:2]) < (10, 1):
        pytest.skip(f"Pillow {PIL.__version__} < 10.1 has no sized default font: the legend's fixed bitmap font "
                    "wraps into more lines on this 120-px frame and covers the box edge checked here")
    frame = np.full((120, 200, 3), 90, np.uint8)
    result = CrowdAnalyzer(rec, FixedDetector([(20, 30, 80, 90)])).analyze(frame)
    face = result.faces[0]
    assert crowd_cli.face_caption(face) == f"{face.label} {face.probs[face.index]:.2f}"  # not tracked: no id
    tracked = dataclasses.replace(face, track_id=12)
    assert crowd_cli.face_caption(tracked).startswith(f"#12 {face.label} ")
    colour = np.array(crowd_cli.COLOURS[face.label])

    def left_edge(f: FaceResult, ran: bool = True, lost: tuple = ()) -> np.ndarray:  # pixel by pixel, below the label
        drawn = crowd_cli.annotate(frame, dataclasses.replace(result, faces=(f,), detector_ran=ran), labels=False,
                                   coasted=lost)
        return (drawn[40:85, 20] == colour).all(axis=1)

    assert left_edge(tracked).all()  # found by the detector: a solid box
    coasted = left_edge(dataclasses.replace(tracked, detected=False))
    assert coasted.any() and not coasted.all()  # missed and coasted: dashes with gaps
    # a frame the detector skipped: as in the last frame it ran on
    assert left_edge(dataclasses.replace(tracked, detected=False), ran=False).all()  # found there: solid
    assert (left_edge(dataclasses.replace(tracked, detected=False), ran=False, lost=(12,)) == coasted).all()


class _FailingDetector(FixedDetector):
    """A FixedDetector that raises at its ``fail_at``-th call."""

    def __init__(self, boxes: list[tuple[float, float, float, float]], fail_at: int) -> None:
        super().__init__(boxes)
        self.fail_at, self.calls = fail_at, 0

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("detector failed")
        return super()._detect(frame)


@pytest.mark.parametrize("pipeline", [False, True])
def test_a_stream_releases_its_video_when_abandoned_cut_short_or_failing(rec: Recognizer, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        pipeline: bool) -> None:
    import gc

    video = write_video(tmp_path / "v.avi", [np.full((80, 120, 3), 40 * i, np.uint8) for i in range(3)])
    opened: list[crowd.VideoFrames] = []
    real = crowd.video_frames

    def spy(source):  # type: ignore[no-untyped-def]
        opened.append(real(source))
        return opened[-1]

    monkeypatch.setattr(crowd, "video_frames", spy)
    box = [(10.0, 10.0, 40.0, 40.0)]
    gc.disable()  # a VideoFrames left open holds a reference cycle: only the cycle collector would release it
    try:
        a = CrowdAnalyzer(rec, FixedDetector(box))
        stream = a.analyze_stream(video, pipeline=pipeline)
        assert next(stream).frame_index == 0
        stream.close()  # abandoned after one frame
        assert len(opened) == 1 and not opened[-1]._cap.isOpened()
        assert [r.frame_index for r in a.analyze_stream(video, max_frames=2, pipeline=pipeline)] == [0, 1]
        assert len(opened) == 2 and not opened[-1]._cap.isOpened()  # cut short by max_frames
        with pytest.raises(RuntimeError, match="detector failed"):
            list(CrowdAnalyzer(rec, _FailingDetector(box, 2)).analyze_stream(video, pipeline=pipeline))
        assert len(opened) == 3 and not opened[-1]._cap.isOpened()  # the analysis raised
        with pytest.raises(InputError, match="max_frames=0"):
            next(a.analyze_stream(video, max_frames=0, pipeline=pipeline))
        assert len(opened) == 3 or not opened[-1]._cap.isOpened()  # refused before (or released after) opening
    finally:
        gc.enable()


def test_a_plug_in_that_overrides_detect_itself_is_checked_by_the_analyzer(rec: Recognizer) -> None:
    """A detector that overrides detect() (not _detect()) skipped the base class's check: a box past the frame
    reached the cropper and a NaN score went on. The analyzer checks what any detector returns."""
    class Loose(FaceDetector):
        name = "loose"

        def __init__(self, dets: list[Detection]) -> None:
            super().__init__()
            self.dets = dets

        def detect(self, frame: np.ndarray) -> list[Detection]:  # type: ignore[override]
            return self.dets

        def _detect(self, frame: np.ndarray) -> list[Detection]:  # pragma: no cover - never called
            raise AssertionError

    frame = np.full((60, 80, 3), 100, np.uint8)
    with CrowdAnalyzer(rec, Loose([Detection((-20, -20, 30, 200), 0.9), Detection((70, 50, 200, 200), 0.8)])) as a:
        boxes = [f.box for f in a.analyze(frame).faces]
    assert boxes == [(0.0, 0.0, 30.0, 60.0), (70.0, 50.0, 80.0, 60.0)]
    with CrowdAnalyzer(rec, Loose([Detection((0, 0, 20, 20), float("nan"))])) as a:
        with pytest.raises(InputError, match="detector loose returned box .* expected 4 finite"):
            a.analyze(frame)
