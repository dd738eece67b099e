"""fsrfer-crowd's inputs and outputs: upright and 16-bit images, outputs that would overwrite the input,
truncated videos, the annotated video's permissions, Ctrl-C, and --scale against the frame limit."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge import InputError
from fsrfer_edge.detection.frames import read_image
from _interrupt import ctrl_c_as_at_a_terminal
from _video import count_frames, write_video


def _crowd_cli() -> Any:
    """fsrfer_edge.crowd_cli, or a skip without what a CLI run needs (the recogniser's ONNX Runtime, Pillow)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("PIL")
    from fsrfer_edge import crowd_cli

    return crowd_cli


def _write_png(path: Path, frame: np.ndarray) -> Path:
    from fsrfer_edge.detection.frames import write_image

    pytest.importorskip("PIL")
    return write_image(path, frame)


def _noise(n: int, size: int = 64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


_count_frames = count_frames


# --------------------------------------------------------------------------------------------
# Reading images
# --------------------------------------------------------------------------------------------
def test_images_are_turned_upright_as_their_exif_orientation_says(tmp_path: Path) -> None:
    """A phone photo held upright is stored sideways with Orientation 6 (turn 90 degrees clockwise to view)."""
    pil = pytest.importorskip("PIL.Image")
    stored = np.zeros((20, 30, 3), np.uint8)
    stored[:5, :5] = 255  # a mark at the stored top-left: top-right once upright
    exif = pil.Exif()
    exif[0x0112] = 6
    pil.fromarray(stored).save(tmp_path / "phone.png", exif=exif)
    pil.fromarray(stored).save(tmp_path / "plain.png")
    upright = read_image(tmp_path / "phone.png")
    assert upright.shape == (30, 20, 3)
    np.testing.assert_array_equal(upright, np.rot90(stored, -1))
    np.testing.assert_array_equal(read_image(tmp_path / "plain.png"), stored)


def _skip_without_16_bit_pgm_writing() -> None:
    """Skip where Pillow cannot write the 16-bit PGM these tests read: Pillow < 11 refuses mode I;16 as PPM
    ("cannot write mode I;16 as PPM"). Reading such a file works there too (scripts/min_versions.sh checks it)."""
    import PIL

    if tuple(int(p) for p in PIL.__version__.split(".")[:2]) < (11, 0):
        pytest.skip(f"Pillow {PIL.__version__} < 11 cannot write a 16-bit (mode I;16) PGM for this test")


def test_16_bit_gray_images_keep_their_range(tmp_path: Path) -> None:
    """16-bit PNG, TIFF and PGM keep their top 8 bits (as OpenCV reads them), not saturate at 255."""
    pil = pytest.importorskip("PIL.Image")
    gray = np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64)
    expected = np.repeat((gray >> 8).astype(np.uint8)[:, :, None], 3, axis=2)
    for name, fmt in (("g.png", "PNG"), ("g.tif", "TIFF"), ("g.pgm", "PPM")):  # I;16, I;16, I (PGM)
        if fmt == "PPM":
            _skip_without_16_bit_pgm_writing()  # PNG and TIFF checked above
        pil.fromarray(gray).save(tmp_path / name, format=fmt)
        np.testing.assert_array_equal(read_image(tmp_path / name), expected, err_msg=name)


@pytest.mark.parametrize("dtype, words", [(np.float32, "floating-point pixels (Pillow mode F)"),
                                          (np.int32, "32-bit integer pixels (Pillow mode I)")])
def test_images_whose_pixel_range_is_unknown_are_refused(dtype: Any, words: str, tmp_path: Path) -> None:
    pil = pytest.importorskip("PIL.Image")
    pil.fromarray(np.full((16, 16), 1000, dtype)).save(tmp_path / "x.tif")
    with pytest.raises(InputError, match=r"x\.tif holds " + words.replace("(", r"\(").replace(")", r"\)")):
        read_image(tmp_path / "x.tif")
    pil.fromarray(np.full((16, 16), 200, dtype)).save(tmp_path / "in_range.tif")  # whole grey levels: taken
    assert (read_image(tmp_path / "in_range.tif") == 200).all()


def test_int8_calibration_reads_wide_images_as_the_crowd_path_does(tmp_path: Path) -> None:
    """One reading of 16-bit and 32-bit images for fsrfer-crowd and fsrfer-export --calib FOLDER: a 16-bit PGM (Pillow
    mode I) was refused by calibration while the crowd path took its top 8 bits."""
    pil = pytest.importorskip("PIL.Image")
    from fsrfer_edge.errors import DataError
    from fsrfer_edge.export.calib import load_faces

    gray = np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64)
    folder = tmp_path / "faces"
    folder.mkdir()
    _skip_without_16_bit_pgm_writing()
    pil.fromarray(gray).save(folder / "g.pgm", format="PPM")
    (face,) = load_faces(folder, size=1)
    np.testing.assert_array_equal(face, read_image(folder / "g.pgm")[:, :, 0])
    pil.fromarray(np.full((16, 16), 1000, np.float32)).save(folder / "g.pgm.tif")
    (folder / "g.pgm").unlink()
    with pytest.raises(DataError, match=r"floating-point pixels \(Pillow mode F\) with values 1000\.\.1000"):
        load_faces(folder, size=1)


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("out, json_name, words", [
    ("o.png", "in.png", "--json {tmp}/in.png is the same file as the input"),
    ("o.png", "sub/../in.png", "--json {tmp}/sub/../in.png is the same file as the input"),
    ("o.png", "o.png", "--json {tmp}/o.png is the same file as --out {tmp}/o.png"),
    ("in.png", None, "--out {tmp}/in.png is the same file as the input"),
])
def test_outputs_that_would_overwrite_the_input_or_each_other_are_refused(
        out: str, json_name: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    crowd_cli = _crowd_cli()
    src = _write_png(tmp_path / "in.png", np.full((32, 32, 3), 90, np.uint8))
    (tmp_path / "sub").mkdir()
    before = src.read_bytes()
    argv = [str(src), "--out", str(tmp_path / out)] + (["--json", str(tmp_path / json_name)] if json_name else [])
    assert crowd_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fsrfer-crowd: error: ") and words.format(tmp=tmp_path) in err and len(err.splitlines()) == 1
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "sub"]


def test_the_annotated_video_gets_ordinary_permissions(tmp_path: Path) -> None:
    """0666 minus the umask, as every other file the SDK writes; not mkstemp's 0600."""
    crowd_cli = _crowd_cli()
    pytest.importorskip("cv2")
    old = os.umask(0o027)
    try:
        writer = crowd_cli.AtomicVideoWriter(tmp_path / "o.avi", 5.0)
        for frame in _noise(2):
            writer.write(frame)
        writer.commit()
    finally:
        os.umask(old)
    assert (tmp_path / "o.avi").stat().st_mode & 0o777 == 0o640


def test_a_truncated_video_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    crowd_cli = _crowd_cli()
    full = write_video(tmp_path / "full.avi", _noise(30))
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[:len(full.read_bytes()) // 2])  # an interrupted copy
    docs = {}
    for name, extra in (("full", []), ("cut", []), ("cut5", ["--max-frames", "5"])):
        caplog.clear()
        src = full if name == "full" else cut
        assert crowd_cli.main([str(src), "--out", str(tmp_path / f"o_{name}.avi"),
                               "--json", str(tmp_path / f"{name}.json")] + extra) == 0
        docs[name] = json.loads((tmp_path / f"{name}.json").read_text())
        warned = [r.getMessage() for r in caplog.records if "header announces" in r.getMessage()]
        assert bool(warned) == (name == "cut"), (name, warned)
    assert (docs["full"]["n_frames"], docs["full"]["frames_in_header"], docs["full"]["truncated"]) == (30, 30, False)
    assert docs["cut"]["frames_in_header"] == 30 and docs["cut"]["truncated"] is True
    assert 1 <= docs["cut"]["n_frames"] < 27
    assert (docs["cut5"]["n_frames"], docs["cut5"]["truncated"]) == (5, False)  # --max-frames stopped it


# --------------------------------------------------------------------------------------------
# Ctrl-C
# --------------------------------------------------------------------------------------------
class _Capture:
    """cv2.VideoCapture that sends this process SIGINT (Ctrl-C) at read number ``interrupt_at``: a camera
    (an index: endless frames) or a video file (a path: read by OpenCV)."""

    real: Any = None
    interrupt_at = 4
    reads = 0

    def __init__(self, source: Any, *args: Any) -> None:
        self.file = None if isinstance(source, int) else self.real(source, *args)
        self.frame = _noise(1, 48)[0]

    def isOpened(self) -> bool:
        return True if self.file is None else self.file.isOpened()

    def read(self) -> tuple[bool, Any]:
        type(self).reads += 1
        if type(self).reads == self.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
        return (True, self.frame.copy()) if self.file is None else self.file.read()

    def get(self, prop: int) -> float:
        return 10.0 if self.file is None else self.file.get(prop)

    def release(self) -> None:
        if self.file is not None:
            self.file.release()


def _run_interrupted(crowd_cli: Any, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    cv2 = pytest.importorskip("cv2")
    if not hasattr(signal, "SIGINT") or not hasattr(os, "kill"):
        pytest.skip("needs POSIX signals")
    monkeypatch.setattr(_Capture, "real", cv2.VideoCapture)
    monkeypatch.setattr(_Capture, "reads", 0)
    monkeypatch.setattr(cv2, "VideoCapture", _Capture)
    with ctrl_c_as_at_a_terminal():  # also where this test runs with SIGINT ignored (a background job)
        handler = signal.getsignal(signal.SIGINT)
        try:
            rc = crowd_cli.main(argv)
        except KeyboardInterrupt:
            pytest.fail("KeyboardInterrupt escaped fsrfer-crowd (a traceback for the user)")
        finally:
            monkeypatch.undo()
        assert signal.getsignal(signal.SIGINT) is handler
    return rc


def test_ctrl_c_ends_a_camera_recording_and_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    crowd_cli = _crowd_cli()
    out, js = tmp_path / "cam.avi", tmp_path / "cam.json"
    assert _run_interrupted(crowd_cli, ["0", "--out", str(out), "--json", str(js)], monkeypatch) == 130
    err = capsys.readouterr().err
    assert "fsrfer-crowd: interrupted (Ctrl-C); kept the 4 frames recorded so far" in err
    doc = json.loads(js.read_text())
    assert doc["interrupted"] is True and doc["n_frames"] == 4 == _count_frames(out)  # the frame in hand too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.avi", "cam.json"]


def test_ctrl_c_on_a_video_file_discards_the_partial_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    crowd_cli = _crowd_cli()
    video = write_video(tmp_path / "in.avi", _noise(8))
    argv = [str(video), "--out", str(tmp_path / "o.avi"), "--json", str(tmp_path / "o.json")]
    assert _run_interrupted(crowd_cli, argv, monkeypatch) == 130
    err = capsys.readouterr().err
    assert err == "fsrfer-crowd: interrupted (Ctrl-C); the partial output was discarded\n"
    assert [p.name for p in tmp_path.iterdir()] == ["in.avi"]  # no video, JSON or temporary file


@pytest.mark.parametrize("kind", ["image", "video"])
@pytest.mark.parametrize("failure", [KeyboardInterrupt, InputError])
def test_a_failed_json_write_does_not_leave_the_annotated_output_alone(kind: str, failure: type, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The annotated image or video was written first and stayed when writing --json then failed or was
    interrupted (Ctrl-C), while the message said the partial output was discarded: half a result."""
    crowd_cli = _crowd_cli()
    if kind == "image":
        src, out = _write_png(tmp_path / "in.png", _noise(1)[0]), tmp_path / "o.png"
    else:
        pytest.importorskip("cv2")
        src, out = write_video(tmp_path / "in.avi", _noise(3)), tmp_path / "o.avi"

    def fail(path: Any, doc: Any) -> None:
        raise failure("cannot write o.json (No space left on device); choose another path")

    monkeypatch.setattr(crowd_cli, "write_json", fail)
    rc = crowd_cli.main([str(src), "--out", str(out), "--json", str(tmp_path / "o.json")])
    err = capsys.readouterr().err
    assert rc == (130 if failure is KeyboardInterrupt else 2), (rc, err)
    assert [p.name for p in tmp_path.iterdir()] == [src.name], err


def test_an_error_is_one_line_even_when_its_message_is_not(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """fsrfer-crowd printed exception texts as they were (fsrfer-demo and fsrfer-bench make them one line): a path
    with a newline made two error lines."""
    crowd_cli = _crowd_cli()
    assert crowd_cli.main([str(tmp_path / "my\nphoto.png"), "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("fsrfer-crowd: error: "), err


def test_sigterm_on_a_video_file_leaves_nothing_and_says_so(tmp_path: Path) -> None:
    """SIGTERM (kill, a supervisor stopping the run) killed fsrfer-crowd mid-video and left the hidden temporary
    video (.o.XXXX.avi) behind; fsrfer-demo and fsrfer-bench clean up after it as after Ctrl-C."""
    import subprocess
    import sys
    import textwrap

    _crowd_cli()
    if not hasattr(signal, "SIGTERM") or not hasattr(os, "kill"):
        pytest.skip("needs POSIX signals")
    video = write_video(tmp_path / "in.avi", _noise(4))
    res = tmp_path / "res"
    res.mkdir()
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        import fsrfer_edge.crowd_cli as m

        draw = m.annotate
        def annotate(frame, result, *args):
            if result.frame_index == 1:  # the first frame is in the temporary video
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            return draw(frame, result, *args)
        m.annotate = annotate
        sys.exit(m.main([{str(video)!r}, "--out", {str(res / "o.avi")!r}, "--json", {str(res / "o.json")!r}]))
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr)
    assert "partial output was discarded" in proc.stderr
    assert list(res.iterdir()) == []


# --------------------------------------------------------------------------------------------
# --scale and --margin
# --------------------------------------------------------------------------------------------
def _refuse_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer

    def detect(self: Any, rgb: np.ndarray) -> Any:
        raise AssertionError("detection ran before --scale was checked")

    monkeypatch.setattr(CrowdAnalyzer, "_detect", detect)


def test_a_scale_beyond_the_frame_limit_is_refused_before_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    crowd_cli = _crowd_cli()
    _refuse_detection(monkeypatch)
    big = _write_png(tmp_path / "big.png", np.zeros((2100, 2100, 3), np.uint8))  # x4: 8400x8400 > 8192x8192
    assert crowd_cli.main([str(big), "--out", str(tmp_path / "o.png"), "--scale", "4"]) == 2
    err = capsys.readouterr().err
    assert "--scale 4: the annotated output of this 2100x2100 input would be 8400x8400 pixels" in err
    assert "expected --scale 3 or less" in err
    pytest.importorskip("cv2")
    video = write_video(tmp_path / "in.avi", _noise(1, 600))  # x16: 9600x9600
    assert crowd_cli.main([str(video), "--out", str(tmp_path / "o.avi"), "--scale", "16"]) == 2
    assert "expected --scale 13 or less" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.png", "in.avi"]


@pytest.mark.parametrize("margin", ["nan", "-5", "2.5"])
def test_crowd_margin_out_of_range_names_the_option(margin: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    crowd_cli = _crowd_cli()
    src = _write_png(tmp_path / "in.png", np.zeros((16, 16, 3), np.uint8))
    assert crowd_cli.main([str(src), "--out", str(tmp_path / "o.png"), "--margin", margin]) == 2
    assert f"--margin={float(margin)!r}; expected a finite number in [-0.4, 2.0]" in capsys.readouterr().err


def test_outputs_over_the_model_or_a_detectors_model_are_refused(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from fsrfer_edge.detection import detector_model_inputs
    from fsrfer_edge.detection.frames import write_image
    from fsrfer_edge.recognizer import resolve_model_path

    crowd_cli = _crowd_cli()
    img = tmp_path / "in.png"
    write_image(img, np.full((32, 32, 3), 100, np.uint8))
    model = tmp_path / "m.onnx"
    shutil.copyfile(resolve_model_path(None), model)
    before = model.read_bytes()
    assert crowd_cli.main([str(img), "--out", str(tmp_path / "o.png"), "--model", str(model), "--json", str(model)]) == 2
    assert "--json" in capsys.readouterr().err and model.read_bytes() == before
    for _, det in detector_model_inputs():  # the shipped detectors' files (read, not written)
        assert crowd_cli.main([str(img), "--out", str(tmp_path / "o.png"), "--json", str(det)]) == 2
        assert "the same file" in capsys.readouterr().err


def test_crowd_bench_out_may_not_overwrite_the_default_model_or_a_shipped_detector(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    pytest.importorskip("onnxruntime")
    from fsrfer_edge import crowd_bench, recognizer
    from fsrfer_edge.detection import blazeface, yunet

    copies = {}
    for module, name in ((recognizer, "DEFAULT_MODEL"), (yunet, "DEFAULT_YUNET"), (blazeface, "DEFAULT_BLAZEFACE")):
        copy = tmp_path / Path(getattr(module, name)).name
        shutil.copyfile(getattr(module, name), copy)
        monkeypatch.setattr(module, name, copy)  # the run reads (and a defect would write) these copies
        copies[name] = (copy, copy.read_bytes())
    for copy, before in copies.values():
        assert crowd_bench.main(["--no-data", "--scenes", "1", "--faces", "2", "--size", "64x64", "--fps-repeats", "0",
                                 "--score-sweep=", "--out", str(copy)]) == 2
        assert "the same file" in capsys.readouterr().err and copy.read_bytes() == before


def test_video_frames_turn_bgra_and_bgr_frames_into_rgb() -> None:
    """OpenCV may hand a camera's frames over as BGRA (4 channels): the colours come out RGB, as for BGR."""
    from fsrfer_edge.crowd import VideoFrames

    class Cap:  # a camera that gives its first frame again, then stops
        def __init__(self, frame: np.ndarray) -> None:
            self.frame, self.left = frame, 1

        def read(self) -> tuple[bool, Any]:
            self.left -= 1
            return (self.left >= 0, self.frame)

        def release(self) -> None:
            pass

    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    bgra = np.concatenate([bgr, np.full((8, 10, 1), 255, np.uint8)], axis=2)
    for stored in (bgr, bgra):
        frames = list(VideoFrames(Cap(stored), stored, "camera 0", 10.0, None))
        assert len(frames) == 2
        for f in frames:
            np.testing.assert_array_equal(f, rgb, err_msg=f"{stored.shape[2]} channels")
