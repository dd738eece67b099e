"""fsrfer-demo: the README's main job on the shipped model and scikit-image's public-domain sample."""
import json

import numpy as np
import pytest

from fsrfer_edge import InputError, Recognizer
from fsrfer_edge.demo import annotate, main, run_demo
from fsrfer_edge.detection.base import Detection, FaceDetector

pytest.importorskip("onnxruntime")


class FixedBoxes(FaceDetector):
    """A plug-in detector that returns the boxes it was given."""

    name = "fixed"

    def __init__(self, boxes):
        super().__init__()
        self.boxes = boxes

    def _detect(self, frame):
        return [Detection(b, 0.9) for b in self.boxes]


@pytest.fixture(scope="module")
def rec():
    with Recognizer() as r:
        yield r


def test_every_face_gets_a_prediction_per_factor(rec):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)
    faces, timings = run_demo(frame, rec, FixedBoxes([(10, 10, 60, 60), (100, 20, 124, 44)]), (1, 3, 8), repeats=2)
    assert len(faces) == 2 and set(timings["predict_ms"]) == {1, 3, 8}
    for face in faces:
        assert [r.factor for r in face.results] == [1, 3, 8]
        assert [r.pixels for r in face.results] == [48, 16, 6]
        for r in face.results:
            assert r.crop.shape == (48, 48) and r.crop.dtype == np.uint8
            assert r.prediction.label in rec.classes
    # the x1 crop is the face at full detail; x8 keeps only 6x6 pixels' worth, so it is much smoother
    x1, x8 = faces[0].results[0].crop.astype(float), faces[0].results[2].crop.astype(float)
    assert np.abs(np.diff(x8, axis=1)).mean() < 0.5 * np.abs(np.diff(x1, axis=1)).mean()
    out = annotate(frame, faces)
    assert out.shape[0] > frame.shape[0] and out.shape[2] == 3 and out.dtype == np.uint8


def test_no_faces_and_bad_factors(rec):
    frame = np.zeros((64, 64, 3), np.uint8)
    faces, timings = run_demo(frame, rec, FixedBoxes([]), (1, 2))
    assert faces == [] and timings["predict_ms"] == {1: 0.0, 2: 0.0}
    assert annotate(frame, faces).shape == (64, 64, 3)
    with pytest.raises(InputError, match="factors"):
        run_demo(frame, rec, FixedBoxes([]), (0,))
    with pytest.raises(InputError):
        run_demo(np.zeros((0, 5, 3), np.uint8), rec, FixedBoxes([]), (1,))


def test_main_job_on_the_public_domain_sample(tmp_path, capsys):
    pytest.importorskip("skimage")
    png, js = tmp_path / "demo.png", tmp_path / "demo.json"
    assert main(["--factors", "1,4", "--out", str(png), "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "latency x4" in out and "face 1" in out
    doc = json.loads(js.read_text())
    assert len(doc["faces"]) == 1, "the astronaut photograph has one face"
    x0, y0, x1, y1 = doc["faces"][0]["box"]
    # the face: roughly (173, 74)-(277, 179) in the 512x512 image
    assert 150 < x0 < 200 and 50 < y0 < 100 and 250 < x1 < 300 and 150 < y1 < 200
    assert set(doc["faces"][0]["factors"]) == {"1", "4"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"det_score", "factors"} <= set(doc["faces"][0]) and "expr_score" in doc["faces"][0]["factors"]["1"]
    assert "1 face in" in out  # not "1 face(s)"


def test_demo_uses_the_crowd_defaults(tmp_path):
    """One set of defaults for fsrfer-demo and fsrfer-crowd: detector, score threshold, min face, margin."""
    pytest.importorskip("skimage")
    from fsrfer_edge import crowd
    from fsrfer_edge.detection import DEFAULT_SCORES

    js = tmp_path / "demo.json"
    assert main(["--factors", "1", "--out", str(tmp_path / "d.png"), "--json", str(js)]) == 0
    settings = json.loads(js.read_text())["detector"]
    assert settings == {"name": crowd.DEFAULT_DETECTOR, "min_score": DEFAULT_SCORES[crowd.DEFAULT_DETECTOR],
                        "min_face": crowd.DEFAULT_MIN_FACE, "margin": crowd.MARGINS[crowd.DEFAULT_DETECTOR]}


def test_sessions_split_the_faces_and_give_the_same_predictions(tmp_path):
    pytest.importorskip("skimage")
    docs = []
    for extra in (["--threads", "1"], ["--sessions", "2"]):  # --threads: ONNX Runtime even where TensorRT is
        js = tmp_path / f"demo{extra[0]}.json"
        assert main(["--factors", "1,4,8", "--out", str(tmp_path / "d.png"), "--json", str(js)] + extra) == 0
        docs.append(json.loads(js.read_text()))
    assert [(d["recognizer"]["sessions"], d["recognizer"]["threads"]) for d in docs][1] == (2, 1)
    assert docs[0]["recognizer"]["sessions"] == 1 and docs[0]["recognizer"]["backend"] == "onnxruntime"
    labels = [[{f: r["label"] for f, r in face["factors"].items()} for face in d["faces"]] for d in docs]
    assert labels[0] == labels[1] and labels[0]


def test_main_reports_unreadable_images(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main([str(bad), "--out", str(tmp_path / "o.png")]) == 2
    assert "bad.png" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
    assert main(["--sessions", "0", "--out", str(tmp_path / "o.png")]) == 2
    assert "sessions=0" in capsys.readouterr().err


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import fsrfer_edge.demo as demo

    ran = []
    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: ran.append(a))
    assert main(["--out", str(tmp_path / "demo.txt")]) == 2
    assert "cannot write an image named demo.txt; expected a .png" in capsys.readouterr().err
    folder = tmp_path / "shots.png"
    folder.mkdir()
    assert main(["--out", str(folder)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "o.png"), "--json", str(folder)]) == 2
    assert "--json" in capsys.readouterr().err
    assert ran == [] and list(tmp_path.iterdir()) == [folder] and list(folder.iterdir()) == []


def _tiny_png(path):
    pytest.importorskip("PIL")
    from fsrfer_edge.detection.frames import write_image

    return write_image(path, np.full((32, 32, 3), 90, np.uint8))


@pytest.mark.parametrize("margin", ["nan", "-5", "2.5"])
def test_margin_out_of_range_is_refused_as_fsrfer_crowd_does(margin, rec, tmp_path, capsys, monkeypatch):
    """The crowd analyzer's range, [-0.4, 2.0], before any work; nan or -5 would crop 1-pixel faces."""
    import fsrfer_edge.demo as demo

    ran = []
    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: ran.append(a) or ([], {"detect_ms": 0.0, "predict_ms": {}}))
    img = _tiny_png(tmp_path / "in.png")
    assert main([str(img), "--out", str(tmp_path / "o.png"), "--margin", margin]) == 2
    assert f"fsrfer-demo: error: --margin={float(margin)!r}; expected a number in [-0.4, 2.0]" in capsys.readouterr().err
    assert ran == [] and not (tmp_path / "o.png").exists()
    monkeypatch.undo()
    with pytest.raises(InputError, match=r"margin=.*expected a number in \[-0.4, 2.0\]"):
        run_demo(np.zeros((64, 64, 3), np.uint8), rec, FixedBoxes([(10, 10, 40, 40)]), (1,), margin=float(margin))


@pytest.mark.parametrize("out, json_name, words", [
    ("o.png", "in.png", "--json {tmp}/in.png is the same file as the input"),
    ("o.png", "o.png", "--json {tmp}/o.png is the same file as --out {tmp}/o.png"),
    ("in.png", None, "--out {tmp}/in.png is the same file as the input"),
])
def test_outputs_that_would_overwrite_the_image_or_each_other_are_refused(out, json_name, words, tmp_path, capsys,
                                                                          monkeypatch):
    import fsrfer_edge.demo as demo

    ran = []
    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: ran.append(a) or ([], {"detect_ms": 0.0, "predict_ms": {}}))
    img = _tiny_png(tmp_path / "in.png")
    before = img.read_bytes()
    argv = [str(img), "--out", str(tmp_path / out)] + (["--json", str(tmp_path / json_name)] if json_name else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fsrfer-demo: error: ") and words.format(tmp=tmp_path) in err
    assert ran == [] and img.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["in.png"]
