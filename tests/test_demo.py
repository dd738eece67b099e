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
        for r in face.results:  # each factor's face is given to the recogniser as the small crop a camera gives
            assert r.crop.shape == (r.pixels, r.pixels) and r.crop.dtype == np.uint8
            assert r.prediction.label in rec.classes
            logits = rec.predict_logits(rec.prepare(r.crop))
            cal = rec.score_calibration  # a full-size crop: the factor its size estimate reads (an app may enlarge)
            read = cal.estimated_factors(rec.info.preprocessing.to_pixels(r.crop)) if r.pixels == 48 else r.factor
            assert r.prediction.confidence == pytest.approx(cal.confidence(logits, read)[0])
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


@pytest.mark.parametrize("kw", [{"factors": (1, True)}, {"repeats": 0}, {"repeats": True}, {"repeats": 2.0},
                                {"repeats": None}])
def test_run_demo_refuses_a_bool_factor_and_repeats_that_are_not_a_count(rec, kw):
    """A bool is no factor (True read as x1), and repeats=0 timed one run anyway: refused, saying what was expected
    (mutation round 67e's notes), not silently taken as another value."""
    with pytest.raises(InputError, match="repeats=.*expected an integer >= 1" if "repeats" in kw else
                       r"factors \[1, True\]: expected integers >= 1"):
        run_demo(np.zeros((64, 64, 3), np.uint8), rec, FixedBoxes([(10, 10, 40, 40)]), **{"factors": (1,), **kw})


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
    from fsrfer_edge.detection import DEFAULT_SCORES, yunet

    js = tmp_path / "demo.json"
    assert main(["--factors", "1", "--out", str(tmp_path / "d.png"), "--json", str(js)]) == 0
    settings = json.loads(js.read_text())["detector"]
    assert settings == {"name": crowd.DEFAULT_DETECTOR, "min_score": DEFAULT_SCORES[crowd.DEFAULT_DETECTOR],
                        "min_face": crowd.DEFAULT_MIN_FACE, "margin": crowd.MARGINS[crowd.DEFAULT_DETECTOR],
                        "threads": None,  # no --threads: ONNX Runtime's default
                        "model": str(yunet.DEFAULT_YUNET)}  # the default detector's file


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
    assert f"fsrfer-demo: error: --margin={float(margin)!r}; expected a finite number in [-0.4, 2.0]" in capsys.readouterr().err
    assert ran == [] and not (tmp_path / "o.png").exists()
    monkeypatch.undo()
    with pytest.raises(InputError, match=r"margin=.*expected a finite number in \[-0.4, 2.0\]"):
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


# ---------------------------------------------------------------------------------------------
# Found by an audit of fsrfer-demo as a user runs it (each failed before its fix)
# ---------------------------------------------------------------------------------------------
def _refuse_work(monkeypatch):
    """Reading the image, opening the model or the detector fails the test: arguments are checked before."""
    import fsrfer_edge.demo as demo

    def fail(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    for name in ("read_image", "sample_image", "Recognizer", "create_detector", "run_demo"):
        monkeypatch.setattr(demo, name, fail)


def _no_faces(monkeypatch):
    import fsrfer_edge.demo as demo

    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: ([], {"detect_ms": 0.0, "predict_ms": {}}))


def test_outputs_over_the_model_are_refused(tmp_path, capsys, monkeypatch):
    """--json naming the --model file replaced the model with the demo's JSON (and --out, an image named .onnx
    being refused anyway, cannot)."""
    model = tmp_path / "m.onnx"
    model.write_bytes(Recognizer().model_path.read_bytes())
    before = model.read_bytes()
    _no_faces(monkeypatch)
    img = _tiny_png(tmp_path / "in.png")
    assert main([str(img), "--model", str(model), "--out", str(tmp_path / "o.png"), "--json", str(model)]) == 2
    err = capsys.readouterr().err
    assert f"--json {model} is the same file as --model {model}" in err
    assert model.read_bytes() == before and not (tmp_path / "o.png").exists()


def test_outputs_over_the_detectors_model_are_refused(tmp_path, capsys, monkeypatch):
    """The detector's model (the shipped yunet_n.onnx, read by default) is an input too."""
    import fsrfer_edge.detection.yunet as yunet

    victim = tmp_path / "yunet_n.onnx"
    victim.write_bytes(yunet.DEFAULT_YUNET.read_bytes())
    before = victim.read_bytes()
    monkeypatch.setattr(yunet, "DEFAULT_YUNET", victim)  # the detector reads this copy
    _no_faces(monkeypatch)
    img = _tiny_png(tmp_path / "in.png")
    assert main([str(img), "--detector", "yunet", "--out", str(tmp_path / "o.png"), "--json", str(victim)]) == 2
    err = capsys.readouterr().err
    assert "is the same file as the detector's model" in err
    assert victim.read_bytes() == before


@pytest.mark.parametrize("argv, words", [
    (["--factors", "1,4,1"], "argument --factors: '1,4,1' lists 1 more than once"),
    (["--factors", ","], "argument --factors: ',': expected integers >= 1"),
    (["--min-score", "2"], "--min-score=2.0; expected a finite number in [0.0, 1.0]"),
    (["--min-score", "nan"], "--min-score=nan; expected a finite number in [0.0, 1.0]"),
    (["--min-face", "0"], "--min-face=0.0; expected a finite number >= 1.0"),
    (["--min-face", "inf"], "--min-face=inf; expected a finite number >= 1.0"),
    (["--threads", "-1"], "--threads=-1; expected an integer from 1 to 1024, or 0 (or leave it out)"),
    (["--sessions", "0"], "--sessions=0; expected an integer >= 1"),
    (["--out", "OUT/o.gif"], "--out OUT/o.gif: cannot write an image named o.gif; expected a .png"),
    (["--json", ""], "--json '' is not a file name"),  # was ignored: no JSON, exit 0
])
def test_bad_options_are_refused_before_any_work_naming_the_option(argv, words, tmp_path, capsys, monkeypatch):
    """--min-score, --min-face, --threads and --sessions were checked only after the image was read and the
    model loaded; duplicate factors ran twice; --factors's and --out's messages named the option twice or not."""
    _refuse_work(monkeypatch)
    img = _tiny_png(tmp_path / "in.png")
    argv = [a.replace("OUT", str(tmp_path)) for a in [str(img), "--out", str(tmp_path / "o.png"), *argv]]
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert words.replace("OUT", str(tmp_path)) in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["in.png"]


def test_a_factor_too_large_for_the_model_is_refused_before_detection(rec, tmp_path, capsys, monkeypatch):
    """--factors 49 on a 48 px model was refused only after the detector had run, as 'down-sample factor'."""
    import fsrfer_edge.demo as demo

    def fail(*a, **k):
        raise AssertionError("the detector ran before the factors were checked")

    monkeypatch.setattr(demo, "create_detector", fail)
    img = _tiny_png(tmp_path / "in.png")
    assert main([str(img), "--out", str(tmp_path / "o.png"), "--factors", "1,49"]) == 2
    err = capsys.readouterr().err
    assert "--factors 1,49: 49 leaves less than one pixel of the model's 48x48 input; expected factors from 1 to 48" \
        in err
    with pytest.raises(InputError, match="expected factors from 1 to 48"):
        run_demo(np.zeros((64, 64, 3), np.uint8), rec, FixedBoxes([]), (1, 49))


def test_an_error_is_one_line_even_when_its_message_is_not(tmp_path, capsys):
    """fsrfer-demo printed exception texts as they were: a path with a newline made two error lines."""
    assert main([str(tmp_path / "my\nphoto.png"), "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("fsrfer-demo: error: "), err


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_interrupted_write_leaves_nothing_and_says_so(tmp_path, signame):
    """SIGTERM during the image write left its hidden temporary file behind; Ctrl-C printed a traceback."""
    import signal

    from _interrupt import killed_mid_write

    res = tmp_path / "res"
    res.mkdir()
    img = _tiny_png(tmp_path / "in.png")
    patch = """
        m.write_image = half_write
        m.run_demo = lambda *a, **k: ([], {"detect_ms": 0.0, "predict_ms": {}})
        """
    rc, err = killed_mid_write(tmp_path, "fsrfer_edge.demo", patch,
                               [str(img), "--out", str(res / "o.png"), "--json", str(res / "o.json")],
                               getattr(signal, signame))
    assert rc == 130 and "Traceback" not in err, (rc, err)
    assert err.strip().splitlines()[-1] == "fsrfer-demo: interrupted; the partial output was discarded"
    assert list(res.iterdir()) == []


def test_a_failed_json_write_does_not_leave_the_image_alone(tmp_path, capsys, monkeypatch):
    """The annotated image was written first and stayed when writing --json then failed: half a result."""
    import fsrfer_edge.demo as demo

    def fail(path, doc):
        raise InputError(f"cannot write {path} (No space left on device); choose another path")

    _no_faces(monkeypatch)
    monkeypatch.setattr(demo, "write_json", fail)
    img = _tiny_png(tmp_path / "in.png")
    assert main([str(img), "--out", str(tmp_path / "o.png"), "--json", str(tmp_path / "o.json")]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["in.png"]
