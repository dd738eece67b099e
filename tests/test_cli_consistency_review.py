"""fsrfer-demo and fsrfer-crowd after a consistency review: the same --threads values with the same meaning and
message, and a second Ctrl-C or SIGTERM during a camera recording that ends it at once."""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.backends.onnxruntime_backend import MAX_THREADS
from fsrfer_edge.errors import InputError
from _camera import fake_camera


def _png(path: Path) -> Path:
    pytest.importorskip("PIL")
    from fsrfer_edge.detection.frames import write_image

    return write_image(path, np.full((32, 32, 3), 90, np.uint8))


def _run(main: Any, argv: list[str]) -> int:
    try:
        return int(main(argv))
    except SystemExit as exc:
        return int(exc.code or 0)


# -- --threads: one range, one meaning, one message --------------------------------------------------------------
class _Stop(InputError):
    """Raised by the fake Recognizer once it has recorded its arguments: nothing else needs to run."""


@pytest.fixture
def recorded_threads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The ``threads=`` each CLI gives ``Recognizer``; the run stops there (exit 2)."""
    import fsrfer_edge.demo as demo
    import fsrfer_edge.recognizer as recognizer

    seen: list[Any] = []

    def fake(*args: Any, threads: Any = None, **kwargs: Any) -> Any:
        seen.append(threads)
        raise _Stop("stopped by the test")

    monkeypatch.setattr(recognizer, "Recognizer", fake)  # fsrfer-crowd imports it inside main()
    monkeypatch.setattr(demo, "Recognizer", fake)
    return seen


@pytest.mark.parametrize("cli", ["demo", "crowd"])
def test_threads_0_means_the_library_default_in_both_clis(cli: str, tmp_path: Path, recorded_threads: list[Any],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """fsrfer-demo took --threads 0 as ONNX Runtime's default while fsrfer-crowd refused it ("leave it out"):
    both now take 0, and it means what leaving the option out means."""
    from fsrfer_edge import crowd_cli, demo

    main = demo.main if cli == "demo" else crowd_cli.main
    img = _png(tmp_path / "in.png")
    base = [str(img), "--out", str(tmp_path / "o.png")]
    for extra in (["--threads", "0"], []):
        assert _run(main, base + extra) == 2
        assert "stopped by the test" in capsys.readouterr().err
    assert recorded_threads == [None, None]


@pytest.mark.parametrize("value", ["-1", str(MAX_THREADS + 1)])
def test_threads_out_of_range_gives_the_same_message_in_both_clis(value: str, tmp_path: Path,
                                                                  recorded_threads: list[Any],
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The two CLIs printed different ranges (0 to 1024 and 1 to 1024) for one option."""
    from fsrfer_edge import crowd_cli, demo

    img = _png(tmp_path / "in.png")
    said = []
    for main in (demo.main, crowd_cli.main):
        assert _run(main, [str(img), "--out", str(tmp_path / "o.png"), "--threads", value]) == 2
        err = capsys.readouterr().err
        said.append(err.split("error: ", 1)[-1].strip())
    assert said[0] == said[1], said
    assert said[0].startswith(f"--threads={value}; expected an integer from 1 to {MAX_THREADS}"), said
    assert recorded_threads == []  # refused before any work


def test_demo_uses_the_backends_thread_bound() -> None:
    """fsrfer-demo kept its own copy of ONNX Runtime's thread bound (MAX_THREADS = 1024)."""
    import fsrfer_edge.demo as demo

    assert getattr(demo, "MAX_THREADS", MAX_THREADS) is MAX_THREADS


# -- a second signal during a camera recording -------------------------------------------------------------------
def _needs_signals() -> None:
    if not hasattr(signal, "SIGTERM") or not hasattr(os, "kill"):
        pytest.skip("needs POSIX signals")


@pytest.mark.parametrize("second", ["SIGINT", "SIGTERM"])
def test_a_second_signal_ends_a_camera_recording_at_once(second: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A second Ctrl-C while the frame in hand was still being worked on only set the stop flag again: nothing
    could end a recording whose frame took long. It now raises at once (as Ctrl-C without the first), discarding
    the recording, and the message says so."""
    pytest.importorskip("onnxruntime")
    cv2 = pytest.importorskip("cv2")
    _needs_signals()
    from fsrfer_edge import crowd_cli

    camera = fake_camera(monkeypatch, cv2)
    draw = crowd_cli.annotate
    sent: list[int] = []

    def annotate(frame: np.ndarray, result: Any, *args: Any) -> np.ndarray:
        if camera.reads >= 4 and not sent:  # the first signal has set the stop flag: the user presses again
            sent.append(1)
            os.kill(os.getpid(), getattr(signal, second))
            for _ in range(100):  # the handler runs between bytecodes
                pass
            pytest.fail("the second signal did not end the recording")
        return draw(frame, result, *args)

    monkeypatch.setattr(crowd_cli, "annotate", annotate)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        rc = crowd_cli.main(["0", "--out", str(tmp_path / "cam.avi"), "--json", str(tmp_path / "cam.json")])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped fsrfer-crowd (a traceback for the user)")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    err = capsys.readouterr().err
    words = crowd_cli.STOPPED_BY[getattr(signal, second)]
    assert rc == 130 and err == f"fsrfer-crowd: {words}; the partial output was discarded\n", (rc, err)
    assert list(tmp_path.iterdir()) == []  # no video, JSON or temporary file


def test_stop_signals_set_raises_on_the_second_signal() -> None:
    """The handler itself: the first signal sets the flag, the second raises (SIGTERM's as Terminated)."""
    _needs_signals()
    from fsrfer_edge.crowd_cli import Terminated, stop_signals_set

    stop, caught = threading.Event(), []
    with stop_signals_set(stop, caught):
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.is_set() and caught == [signal.SIGINT]
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):
                pass
    assert caught == [signal.SIGINT, signal.SIGTERM]


def test_a_second_signal_while_the_json_is_written_keeps_the_recording_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """After the recording is in place only its JSON is left to write: a second signal there must not claim that
    the (kept) recording was discarded."""
    pytest.importorskip("onnxruntime")
    cv2 = pytest.importorskip("cv2")
    _needs_signals()
    from fsrfer_edge import crowd_cli

    fake_camera(monkeypatch, cv2)
    write = crowd_cli.write_json

    def write_json(path: Any, doc: Any) -> Any:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):
            pass
        return write(path, doc)

    monkeypatch.setattr(crowd_cli, "write_json", write_json)
    rc = crowd_cli.main(["0", "--out", str(tmp_path / "cam.avi"), "--json", str(tmp_path / "cam.json")])
    err = capsys.readouterr().err
    assert rc == 130, err
    assert [p.name for p in tmp_path.iterdir()] == ["cam.avi"], err
    assert err.strip().splitlines()[-1] == (f"fsrfer-crowd: interrupted (Ctrl-C); kept the 4 frames recorded in "
                                            f"{tmp_path / 'cam.avi'}; --json {tmp_path / 'cam.json'} was not "
                                            "written"), err
