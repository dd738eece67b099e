"""Messages of fsrfer-crowd, fsrfer-demo, fsrfer-export --check-trt, fsrfer-eval and fsrfer-train after a new user's
walkthrough: options named as they are typed, a folder given where a file is expected said to be a folder, no
latency line for no face, the missing confidence explained, the evaluation folder named only when it was made."""
from pathlib import Path

import numpy as np
import pytest

from fsrfer_edge.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def _png(path: Path) -> Path:
    pytest.importorskip("PIL")
    from fsrfer_edge.detection.frames import write_image

    return write_image(path, np.full((64, 64, 3), 128, np.uint8))


# -- fsrfer-crowd: the options' messages name the flag ----------------------------------------------------------
@pytest.mark.parametrize("option, value, said", [
    ("--sessions", "0", "--sessions=0; expected an integer >= 1"),
    ("--min-score", "2", "--min-score=2.0; expected a finite number in [0.0, 1.0]"),
    ("--min-face", "0", "--min-face=0.0; expected a finite number >= 1.0"),
    ("--min-size", "-1", "--min-size=-1.0; expected a finite number >= 0.0"),
    ("--threads", "-1", "--threads=-1; expected an integer from 1 to 1024"),
])
def test_crowd_options_are_refused_naming_the_flag(option, value, said, tmp_path, capsys, monkeypatch):
    from fsrfer_edge import crowd_cli

    monkeypatch.setattr(crowd_cli, "create_detector", lambda *a, **k: pytest.fail("no work before the check"))
    img = _png(tmp_path / "in.png")
    assert crowd_cli.main([str(img), "--out", str(tmp_path / "o.png"), option, value]) == 2
    err = capsys.readouterr().err
    assert said in err, err
    assert not (tmp_path / "o.png").exists()


# -- a folder where an image, a video or an output file is expected ---------------------------------------------
def test_read_image_says_a_folder_is_a_folder(tmp_path):
    from fsrfer_edge.detection.frames import read_image

    with pytest.raises(InputError) as err:
        read_image(tmp_path)
    assert "is a directory" in str(err.value) and "expected an image file" in str(err.value)
    assert "does not exist" not in str(err.value)
    with pytest.raises(InputError, match="does not exist"):
        read_image(tmp_path / "missing.png")


def test_demo_and_crowd_say_a_folder_input_is_a_folder(tmp_path, capsys):
    from fsrfer_edge import crowd_cli, demo

    folder = tmp_path / "x"
    folder.mkdir()
    assert demo.main([str(folder), "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and "expected an image file" in err and "does not exist" not in err
    assert crowd_cli.main([str(folder), "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and "does not exist" not in err
    assert "an image file, a video file or a camera index" in err
    assert crowd_cli.main([str(tmp_path / "gone.mp4"), "--out", str(tmp_path / "o.mp4")]) == 2
    assert "gone.mp4 does not exist" in capsys.readouterr().err


def test_demo_out_naming_a_folder_suggests_a_file_in_it(tmp_path, capsys):
    from fsrfer_edge import demo

    folder = tmp_path / "outdir"
    folder.mkdir()
    assert demo.main(["--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"--out {folder} is a folder" in err and f"e.g. {folder / 'demo.png'}" in err, err
    assert "cannot write an image named" not in err


def test_check_trt_of_a_file_that_is_not_onnx_says_what_is_expected(tmp_path, capsys):
    pytest.importorskip("onnx")
    from fsrfer_edge.export import cli as export_cli

    img = _png(tmp_path / "crowd.png")
    assert export_cli.main(["--check-trt", str(img)]) == 2
    err = capsys.readouterr().err
    assert "crowd.png is not a readable ONNX model" in err and "expected an .onnx model" in err, err
    assert export_cli.main(["--check-trt", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and "expected an .onnx model" in err, err


# -- fsrfer-demo: no face, no calibration ------------------------------------------------------------------------
def test_demo_without_a_face_prints_no_latency_line(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import demo

    img = _png(tmp_path / "blank.png")
    assert demo.main([str(img), "--factors", "1,4", "--out", str(tmp_path / "o.png")]) == 0
    out = capsys.readouterr().out
    assert "0 faces in" in out and "no faces found" in out
    assert "latency" not in out and "0.00 ms" not in out, out
    assert (tmp_path / "o.png").is_file()


def test_demo_says_why_a_model_has_no_confidence(tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage")
    from fsrfer_edge import demo

    out_png = str(tmp_path / "d.png")
    assert demo.main(["--factors", "1", "--out", out_png]) == 0
    out = capsys.readouterr().out
    assert "confidence" in out and "no score calibration" not in out  # the shipped model has one

    real = demo.Recognizer
    monkeypatch.setattr(demo, "Recognizer", lambda *a, **k: real(*a, confidence=None, **k))  # a model without one
    assert demo.main(["--factors", "1", "--out", out_png]) == 0
    out = capsys.readouterr().out
    (line,) = [s for s in out.splitlines() if "no score calibration" in s]
    assert "default.scores.json" in line and "fsrfer-export --eval-data" in line, line
    assert "  confidence " not in out


# -- fsrfer-eval --limit, fsrfer-train's last line -----------------------------------------------------------------
def test_eval_help_says_what_limit_0_means(capsys):
    from trainer.cli import eval_main

    with pytest.raises(SystemExit):
        eval_main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "default 0: every face" in help_text, help_text


@pytest.mark.parametrize("steps, evaluated", [("stage1", False), ("stage1,eval", True)])
def test_train_names_the_evaluation_folder_only_when_it_evaluated(steps, evaluated, tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("yaml")
    from trainer import train
    from trainer.cli import train_main

    monkeypatch.setattr(train, "load_data", lambda cfg, path: None)
    monkeypatch.setattr(train, "run_pipeline", lambda *a, **k: True)  # the steps' work is not what is tested
    out = tmp_path / "run"
    assert train_main(["--config", str(REPO / "configs" / "tiny.yaml"), "--out", str(out), "--steps", steps,
                       "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert f"models in {out / 'models'}" in printed
    assert (f"evaluation in {out / 'eval'}" in printed) == evaluated, printed


@pytest.mark.parametrize("name, suggested", [("in.png", "annotated.png"), ("in.mp4", "annotated.mp4")])
def test_crowd_out_naming_a_folder_suggests_a_file_in_it(name, suggested, tmp_path, capsys):
    from fsrfer_edge import crowd_cli

    source = _png(tmp_path / name) if name.endswith(".png") else tmp_path / name
    source.write_bytes(source.read_bytes() if name.endswith(".png") else b"\x00" * 64)
    folder = tmp_path / "outdir"
    folder.mkdir()
    assert crowd_cli.main([str(source), "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"--out {folder} is a folder" in err and f"e.g. {folder / suggested}" in err, err
    assert "needs an image output" not in err and "needs a video output" not in err


def test_crowd_analyzer_says_what_to_do_with_a_detector_name_a_video_or_a_min_face_it_would_ignore(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer
    from fsrfer_edge.detection import create_detector
    from fsrfer_edge.errors import InputError

    with Recognizer(threads=1, spinning=False) as rec:
        with pytest.raises(InputError, match=r"create_detector\('blazeface'"):
            CrowdAnalyzer(rec, "blazeface")
        det = create_detector("yunet", min_face=8)
        with pytest.raises(InputError, match="min_face=20 applies to the detector the analyzer creates"):
            CrowdAnalyzer(rec, det, min_face=20)
        video = tmp_path / "clip.mp4"
        video.write_bytes(b"\x00\x00\x00\x18ftypmp42")
        with CrowdAnalyzer(rec, det) as crowd:  # the detector's own min_face: taken
            with pytest.raises(InputError, match="analyze_stream"):
                crowd.analyze(video)


def test_a_training_checkpoint_as_the_model_says_how_to_export_it(tmp_path) -> None:
    from fsrfer_edge.errors import ModelError
    from fsrfer_edge.recognizer import resolve_model_path

    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"x")
    with pytest.raises(ModelError, match=f"fsrfer-export {ckpt}"):
        resolve_model_path(ckpt)
