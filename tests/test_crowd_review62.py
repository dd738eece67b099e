"""Review 62 of the crowd, tracking and detector code: close() from another thread during a pipelined stream closed
the detector under the detection worker, the tracker's coasting()/continuing() took boxes of no size that update()
refuses, detectors kept no record of their threads (fsrfer-demo's JSON had the recogniser's only), and a min_score
above 1 was taken. CPU only; tiny frames."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pytest

from fsrfer_edge import InputError
from fsrfer_edge.detection import Detection, FaceDetector
from fsrfer_edge.tracking import FaceTracker


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(n)]


class SlowDetector(FaceDetector):
    """One face per frame, found slowly (each detection after the first also waits for ``gate``, when given); notes
    whether it was closed while a detection ran."""

    name = "slow"

    def __init__(self, seconds: float, gate: Optional[threading.Event] = None) -> None:
        super().__init__()
        self.seconds = seconds
        self.gate = gate
        self.running = 0
        self.started = 0  # detections started
        self.entered = threading.Event()  # set when a detection starts
        self.closed_while_running = False
        self.detected_while_closed = False

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        self.running += 1
        self.started += 1
        self.entered.set()
        try:
            time.sleep(self.seconds)
            if self.gate is not None and self.started > 1:
                self.gate.wait(5)
            self.detected_while_closed |= self.closed
            return [Detection((4.0, 4.0, 28.0, 28.0), 0.9)]
        finally:
            self.running -= 1

    def _close(self) -> None:
        self.closed_while_running |= self.running > 0


@pytest.fixture(scope="module")
def rec() -> Iterator[Any]:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer

    r = Recognizer(threads=1, spinning=False)  # the shipped default model
    yield r
    r.close()


def _owning_analyzer(rec: Any, det: SlowDetector, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An analyzer that created (and so owns and closes) ``det``."""
    from fsrfer_edge import crowd

    monkeypatch.setattr(crowd, "create_detector", lambda *args, **kwargs: det)
    a = crowd.CrowdAnalyzer(rec)
    assert a.detector is det
    return a


# -- 1. close() from another thread while a pipelined stream's worker detects ------------------------------------
def test_close_from_another_thread_waits_for_the_pipelined_detection(rec: Any, monkeypatch: pytest.MonkeyPatch
                                                                     ) -> None:
    from fsrfer_edge.backends.base import BackendClosedError

    gate = threading.Event()
    det = SlowDetector(0.0, gate)
    a = _owning_analyzer(rec, det, monkeypatch)
    stream = a.analyze_stream(_frames(4), pipeline=True)
    assert next(stream).frame_index == 0  # the worker now detects frame 1, until the gate opens
    deadline = time.monotonic() + 5
    while det.started < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert det.started == 2 and det.running == 1, "the worker detects frame 1"
    closer = threading.Thread(target=a.close)
    closer.start()
    time.sleep(0.2)
    assert not det.closed and closer.is_alive(), "close() waits for the detection the worker is running"
    gate.set()
    closer.join(10)
    assert not closer.is_alive()
    assert det.closed, "close() closes the detector the analyzer created"
    assert not det.closed_while_running and not det.detected_while_closed, "closed under the detection worker"
    with pytest.raises(BackendClosedError, match="this CrowdAnalyzer was closed"):
        next(stream)
    stream.close()


def test_close_does_not_wait_forever_and_never_closes_under_a_detection(rec: Any, monkeypatch: pytest.MonkeyPatch
                                                                          ) -> None:
    """A detection outlasting the wait: close() returns, and the detector is closed when that detection ends."""
    from fsrfer_edge import crowd

    monkeypatch.setattr(crowd, "CLOSE_WAIT_S", 0.05)
    det = SlowDetector(0.6)
    a = _owning_analyzer(rec, det, monkeypatch)
    raised: list[BaseException] = []

    def analyze() -> None:
        try:
            a.analyze(_frames(1)[0])
        except BaseException as exc:  # what the closed analyzer says, checked below
            raised.append(exc)

    worker = threading.Thread(target=analyze)
    worker.start()
    assert det.entered.wait(5)
    t0 = time.perf_counter()
    a.close()
    assert time.perf_counter() - t0 < 0.5
    assert not det.closed  # still detecting: left open for now
    worker.join(10)
    assert det.closed and not det.closed_while_running and not det.detected_while_closed
    assert [type(e).__name__ for e in raised] == ["BackendClosedError"]  # recognising the face it found: refused


def test_a_stream_of_given_models_still_stops_after_close(rec: Any) -> None:
    from fsrfer_edge.backends.base import BackendClosedError
    from fsrfer_edge.crowd import CrowdAnalyzer

    det = SlowDetector(0.0)
    a = CrowdAnalyzer(rec, det)
    stream = a.analyze_stream(_frames(3), pipeline=True)
    next(stream)
    a.close()
    with pytest.raises(BackendClosedError, match="this CrowdAnalyzer was closed"):
        next(stream)
    assert not det.closed  # given, not created: left open


# -- 2. boxes of no size at the tracker's other entry points ----------------------------------------------------
def _tracker() -> FaceTracker:
    tracker = FaceTracker(coast_after=1, confirm=1)
    for _ in range(2):
        tracker.update([[0.0, 0.0, 20.0, 20.0]], [[0.5, 0.5]], scores=[0.9])
    return tracker


@pytest.mark.parametrize("box", [[5.0, 5.0, 5.0, 9.0], [5.0, 5.0, 9.0, 5.0], [9.0, 5.0, 5.0, 9.0]])
def test_coasting_and_continuing_refuse_a_box_of_no_size_as_update_does(box: list[float]) -> None:
    tracker = _tracker()
    good = [40.0, 40.0, 60.0, 60.0]
    with pytest.raises(InputError, match=r"box 1 .*positive size"):
        tracker.coasting([good, box])
    with pytest.raises(InputError, match=r"box 1 .*positive size"):
        tracker.continuing([good, box], np.zeros((0, 4)))
    with pytest.raises(InputError, match=r"weak box 0 .*positive size"):
        tracker.continuing([good], [box])
    with pytest.raises(InputError, match=r"box 1 .*positive size"):
        tracker.update([good, box], [[0.5, 0.5], [0.5, 0.5]])
    # the tracker is as it was: its face coasts and a weak box over it continues it
    assert tracker.coasting(np.zeros((0, 4))).shape == (1, 4)
    assert tracker.continuing(np.zeros((0, 4)), [[1.0, 1.0, 21.0, 21.0]]).tolist() == [True]


# -- 3. the detector's threads -----------------------------------------------------------------------------------
def test_onnx_detectors_record_their_threads() -> None:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge.detection import create_detector

    with create_detector("yunet", threads=1) as det:
        assert det.threads == 1  # type: ignore[attr-defined]
        with pytest.raises(AttributeError):
            det.threads = 2  # type: ignore[attr-defined]
    with create_detector("blazeface", threads=2) as det:
        assert det.threads == 2  # type: ignore[attr-defined]
    with create_detector("yunet") as det:
        assert det.threads is None  # type: ignore[attr-defined]


def test_opencv_detector_records_no_threads() -> None:
    pytest.importorskip("cv2")
    from fsrfer_edge.detection import create_detector

    with create_detector("opencv") as det:
        assert det.threads is None  # type: ignore[attr-defined]


def test_demo_json_records_the_detector_threads(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    pytest.importorskip("onnxruntime")
    from fsrfer_edge.demo import main

    js = tmp_path / "demo.json"
    assert main(["--factors", "1", "--threads", "1", "--out", str(tmp_path / "d.png"), "--json", str(js)]) == 0
    doc = json.loads(js.read_text())
    assert doc["detector"]["threads"] == 1 and doc["recognizer"]["threads"] == 1


# -- 4. min_score outside [0, 1] ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [1.5, 2, -0.1, float("nan")])
def test_analyzer_refuses_a_min_score_outside_0_1(rec: Any, bad: float) -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer

    with pytest.raises(InputError, match=r"min_score=.*expected a finite number in \[0.0, 1.0\]"):
        CrowdAnalyzer(rec, SlowDetector(0.0), min_score=bad)
    assert CrowdAnalyzer(rec, SlowDetector(0.0), min_score=1).min_score == 1.0


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), "0.5", True])
def test_a_detector_min_score_set_later_is_checked(bad: Any) -> None:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge.detection import create_detector

    with create_detector("yunet") as det:
        with pytest.raises(InputError, match=r"min_score=.*expected a finite number in \[0.0, 1.0\]"):
            det.min_score = bad  # type: ignore[attr-defined]
        det.min_score = 0.6  # type: ignore[attr-defined]  # as the benchmark's score sweep sets it
        assert det.min_score == 0.6  # type: ignore[attr-defined]
