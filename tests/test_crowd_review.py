"""Defects found by a review of the crowd tools: SIGTERM on a camera recording, the stop message, the summary line's
plurals, GroupCalibration.fit's errors, and a TrackLog fed by two streams of one carried tracker."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from fsrfer_edge.errors import InputError
from fsrfer_edge.groups import GroupCalibration
from _video import count_frames, write_video
from _camera import fake_camera

CLASSES = ("a", "b", "c")


def _crowd_cli() -> Any:
    """fsrfer_edge.crowd_cli, or a skip without what a CLI run needs (the recogniser's ONNX Runtime, Pillow)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("PIL")
    from fsrfer_edge import crowd_cli

    return crowd_cli


def _noise(n: int, size: int = 48, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def _one_box_detector() -> Any:
    """A detector that finds one 24 px face at the same place in every frame."""
    from fsrfer_edge.detection import Detection, FaceDetector

    class OneBox(FaceDetector):
        name = "onebox"

        def _detect(self, frame: np.ndarray) -> list[Detection]:
            return [Detection((12.0, 12.0, 36.0, 36.0), 0.9)]

    return OneBox()


# --------------------------------------------------------------------------------------------
# SIGTERM on a camera, and what the stop message says
# --------------------------------------------------------------------------------------------
@pytest.fixture
def no_sigterm_death() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in this test instead of killing pytest, should fsrfer-crowd not handle it."""
    if not hasattr(signal, "SIGTERM") or not hasattr(os, "kill"):
        pytest.skip("needs POSIX signals")

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _camera_run(crowd_cli: Any, tmp_path: Path, signum: int, monkeypatch: pytest.MonkeyPatch) -> tuple[int, Path]:
    cv2 = pytest.importorskip("cv2")
    fake_camera(monkeypatch, cv2, signum, frame=_noise(1)[0])
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        rc = crowd_cli.main(["0", "--out", str(tmp_path / "cam.avi"), "--json", str(tmp_path / "cam.json")])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped fsrfer-crowd (a traceback for the user)")
    finally:
        monkeypatch.undo()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # both put back
    return rc, tmp_path / "cam.json"


_count_frames = count_frames


@pytest.mark.parametrize("signame, words", [("SIGINT", "interrupted (Ctrl-C)"), ("SIGTERM", "stopped (SIGTERM)")])
def test_sigterm_keeps_a_camera_recording_as_ctrl_c_does(signame: str, words: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, no_sigterm_death: None,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """SIGTERM (kill, a supervisor stopping a recording) discarded the camera's recording that Ctrl-C keeps, and the
    message said Ctrl-C: both now end the recording after the frame in hand and write its video and JSON."""
    crowd_cli = _crowd_cli()
    rc, js = _camera_run(crowd_cli, tmp_path, getattr(signal, signame), monkeypatch)
    err = capsys.readouterr().err
    assert rc == 130, err
    assert f"fsrfer-crowd: {words}; kept the 4 frames recorded so far" in err, err
    doc = json.loads(js.read_text())
    assert doc["interrupted"] is True and doc["n_frames"] == 4 == _count_frames(tmp_path / "cam.avi")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.avi", "cam.json"]  # no temporary file left


def test_sigterm_on_a_video_file_says_sigterm_not_ctrl_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        no_sigterm_death: None,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """After SIGTERM on a video file the partial output is discarded, as after Ctrl-C, but the message said
    "interrupted (Ctrl-C)"."""
    crowd_cli = _crowd_cli()
    video = write_video(tmp_path / "in.avi", _noise(4))
    draw = crowd_cli.annotate

    def annotate(frame: np.ndarray, result: Any, *args: Any) -> np.ndarray:
        if result.frame_index == 1:  # the first frame is in the temporary video
            os.kill(os.getpid(), signal.SIGTERM)
        return draw(frame, result, *args)

    monkeypatch.setattr(crowd_cli, "annotate", annotate)
    rc = crowd_cli.main([str(video), "--out", str(tmp_path / "o.avi"), "--json", str(tmp_path / "o.json")])
    err = capsys.readouterr().err
    assert rc == 130
    assert err == "fsrfer-crowd: stopped (SIGTERM); the partial output was discarded\n"
    assert [p.name for p in tmp_path.iterdir()] == ["in.avi"]


# --------------------------------------------------------------------------------------------
# The summary line
# --------------------------------------------------------------------------------------------
def test_the_summary_line_says_1_face_and_1_frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A one-frame video with one face printed "1 frames, 1 faces followed"."""
    crowd_cli = _crowd_cli()
    monkeypatch.setattr(crowd_cli, "create_detector", lambda *args, **kwargs: _one_box_detector())
    video = write_video(tmp_path / "in.avi", _noise(2))
    lines = {}
    for n in (1, 2):
        assert crowd_cli.main([str(video), "--out", str(tmp_path / f"o{n}.avi"), "--max-frames", str(n)]) == 0
        lines[n] = capsys.readouterr().out.splitlines()[0]
    assert lines[1].startswith("1 frame, 1 face followed, faces per class over all frames: "), lines[1]
    assert lines[2].startswith("2 frames, 1 face followed, "), lines[2]


# --------------------------------------------------------------------------------------------
# GroupCalibration.fit's errors
# --------------------------------------------------------------------------------------------
def _faces(c: int = 3, per_class: int = 4) -> tuple[np.ndarray, np.ndarray]:
    y = np.repeat(np.arange(c), per_class)
    m = np.full((c, c), 0.4 / c) + np.eye(c) * 0.6
    return m[:, y].T.copy(), y


@pytest.mark.parametrize("kwargs, match", [
    ({"probs": {0.5: "P"}, "labels": {0.5: "Y"}}, r"factors: expected finite numbers >= 1 .*; got \[0\.5\]"),
    ({"probs": {np.inf: "P"}, "labels": {np.inf: "Y"}}, r"factors: expected finite numbers >= 1 .*; got \[inf\]"),
    ({"probs": {np.nan: "P"}, "labels": {np.nan: "Y"}}, r"factors: expected finite numbers >= 1 .*; got \[nan\]"),
    ({"probs": {"x": "P"}, "labels": {"x": "Y"}}, r"factors: expected finite numbers >= 1 .*; got \['x'\]"),
    ({"probs": {True: "P"}, "labels": {True: "Y"}}, r"factors: expected finite numbers >= 1 .*; got \[True\]"),
    ({"probs": "P", "labels": "Y"}, r"probs: expected a mapping"),
    ({"labels": "Y"}, r"labels: expected a mapping"),
    ({"classes": ("a",)}, r"classes: expected 2 or more distinct class names.*; got \['a'\]"),
    ({"classes": ("a", "a", "c")}, r"classes: expected 2 or more distinct class names.*; got \['a', 'a', 'c'\]"),
    ({"resamples": 2.5}, r"resamples=2\.5: expected an integer, 0 or >= 2"),
    ({"resamples": "4"}, r"resamples='4': expected an integer, 0 or >= 2"),
    ({"resamples": True}, r"resamples=True: expected an integer, 0 or >= 2"),
    ({"resamples": 1}, r"resamples=1: expected an integer, 0 or >= 2"),
    ({"resamples": 3, "seed": 1.5}, r"seed=1\.5: expected an integer"),
])
def test_fit_refuses_bad_arguments_with_input_errors(kwargs: dict, match: str) -> None:
    """Bad factors or classes raised ModelError (the error of a corrupt model file), a non-integer ``resamples`` or
    ``seed`` a raw TypeError, a non-numeric factor a ValueError and an array for ``probs`` numpy's "truth value of
    an array is ambiguous"."""
    p, y = _faces()
    args: dict[str, Any] = {"probs": {2.0: p}, "labels": {2.0: y}, "classes": CLASSES}
    args.update(kwargs)
    for k in ("probs", "labels"):  # "P", "Y": these faces
        if isinstance(args[k], dict):
            args[k] = {f: {"P": p, "Y": y}.get(v, v) if isinstance(v, str) else v for f, v in args[k].items()}
        else:
            args[k] = {"P": p, "Y": y}[args[k]]
    with pytest.raises(InputError, match=match):
        GroupCalibration.fit(**args)


def test_fit_still_takes_integer_like_arguments() -> None:
    """NumPy integers for ``resamples`` and ``seed`` and integer or numpy factors are as good as Python's."""
    p, y = _faces()
    cal = GroupCalibration.fit({np.float32(2): p, 4: p}, {np.float32(2): y, 4: y}, list(CLASSES),
                               resamples=np.int64(2), seed=np.int32(1))
    assert cal.factors == (2.0, 4.0) and cal.resampled is not None and cal.resampled.shape == (2, 2, 3, 3)


# --------------------------------------------------------------------------------------------
# A TrackLog fed by two streams of one carried tracker
# --------------------------------------------------------------------------------------------
def test_a_track_log_over_two_calls_of_one_carried_tracker_keeps_its_frames_in_order() -> None:
    """docs/crowd.md tells users to carry a FaceTracker from one analyze_stream call to the next (its tracks go on
    into the next call's first frame); a TrackLog fed by both calls gave a track seen in frames 3-4 of the first
    call and 0-1 of the second first_frame 3, last_frame 1. Either the log's frames go on in order, or it refuses
    the second call's results with an InputError."""
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer, TrackLog
    from fsrfer_edge.tracking import FaceTracker

    from fsrfer_edge.detection import Detection, FaceDetector

    class FromFourthCall(FaceDetector):
        """No face in the first three frames, then one 24 px face at the same place."""
        name = "late"
        calls = 0

        def _detect(self, frame: np.ndarray) -> list[Detection]:
            self.calls += 1
            return [Detection((12.0, 12.0, 36.0, 36.0), 0.9)] if self.calls > 3 else []

    frames = _noise(5)
    with Recognizer(threads=1, spinning=False) as rec:
        analyzer = CrowdAnalyzer(rec, FromFourthCall())
        tracker, log = FaceTracker(confirm=1), TrackLog(analyzer.classes)
        try:
            for chunk in (frames, frames[:2]):  # the second call goes on with the tracks of the first
                for r in analyzer.analyze_stream(iter(chunk), track=tracker):
                    log.add(r)
        except InputError:
            return  # refused: as good as frames in order
    tracks = log.to_list()
    assert len(tracks) == 1 and tracks[0]["frames"] == 4, tracks
    t = tracks[0]
    assert t["first_frame"] <= t["last_frame"] and t["frames"] <= t["last_frame"] - t["first_frame"] + 1, t
    assert (t["first_frame"], t["last_frame"]) == (3, 6), t  # the second call's frames 0-1 are the log's 5-6


def test_a_folder_given_as_a_video_says_it_is_a_folder(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    from fsrfer_edge.crowd import video_frames

    with pytest.raises(InputError, match="is a directory, not a file; expected a readable video"):
        video_frames(tmp_path)
