"""The runtime in a forked child (a pre-forking server's worker: gunicorn --preload, multiprocessing "fork").

TensorRT: CUDA does not survive fork (a child's CUDA calls fail with cudaErrorInitializationError or are undefined),
so a backend opened in the parent must refuse at once in the child, and its close() or collection there must not
free the parent's device memory or touch its context. Tested against the fakes in tests/fake_trt with a simulated
pid change. The CPU runtime (Recognizer, CrowdAnalyzer, detectors) is tested with a real os.fork(); every child is
killed if it has not finished within CHILD_S, so a hang fails the test instead of stopping the run.
"""
from __future__ import annotations

import gc
import json
import os
import re
import sys
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from fsrfer_edge.backends.cuda_memory import CudaPythonMemory, PyCudaMemory, select_memory
from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend
from fsrfer_edge.errors import EngineError

sys.path.insert(0, str(Path(__file__).parent))
import test_tensorrt_review  # noqa: E402
from fake_trt import fake_logits  # noqa: E402
from test_tensorrt_versions import FakeGpu  # noqa: E402
from _fork_child import CHILD_S, in_child, needs_fork  # noqa: E402
from _threads import call_in_thread  # noqa: E402

VERSION = "10.3.0.26"
FACES = np.random.default_rng(0).standard_normal((2, 1, 48, 48)).astype(np.float32)

FORK_ADVICE = r"fork.*open the TensorRT backend in the child.*'spawn'"


class Gpu(FakeGpu):
    """Fake TensorRT, cuda-python and pycuda, installed for one test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(monkeypatch, VERSION)

    def cuda_state(self) -> tuple[Any, ...]:
        """Everything a CUDA call would change: live allocations and streams, device switches, pushed contexts."""
        c, p = self.cudart, self.pycuda.state  # type: ignore[attr-defined]
        return (sorted(c.device), sorted(c.host), sorted(c.streams), len(c.set_device_calls), c.current,
                sorted(p["live"]), p["pushed"], p.get("retained"))


@pytest.fixture()
def gpu(monkeypatch: pytest.MonkeyPatch) -> Gpu:
    return Gpu(monkeypatch)


engine = test_tensorrt_review.engine  # the fake engine (batch 1-8) with its sidecar, a fixture


def _as_forked_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on this process looks like a child forked from the one that opened the backends."""
    parent = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: parent + 100_000)


def _returns_within(fn: Callable[[], Any], seconds: float = 5.0) -> Any:
    """fn()'s result or exception ({"value": ...} or {"error": ...}); fails when it has not returned within
    ``seconds``."""
    finished, out = call_in_thread(fn, seconds)
    assert finished, f"{fn} did not return within {seconds} s (it waits for a lock the parent held)"
    return out


# -- 1: TensorRT, a backend opened before the fork ---------------------------------------------------
@pytest.mark.parametrize("memory", ["cuda-python", "pycuda"])
def test_a_tensorrt_backend_inherited_by_a_forked_child_refuses_at_once(
        gpu: Gpu, engine: Path, memory: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The child ran the parent's execution context, stream and buffers: CUDA calls on the parent's context
    (undefined, or cudaErrorInitializationError on a real GPU). It must refuse before any CUDA call, also while a
    thread of the parent was inside infer() at the fork (the child's copy of the lock is held for ever)."""
    be = TensorRTBackend(engine, memory=memory)
    np.testing.assert_allclose(be.infer(FACES), fake_logits(FACES), rtol=1e-5, atol=1e-5)
    before = gpu.cuda_state()
    be._lock.acquire()  # a thread of the parent was running inference when the main thread forked
    _as_forked_child(monkeypatch)
    out = _returns_within(lambda: be.infer(FACES))
    assert isinstance(out.get("error"), EngineError), out
    assert re.search(FORK_ADVICE, str(out["error"]), re.S), str(out["error"])
    assert str(os.getpid()) in str(out["error"])
    assert gpu.cuda_state() == before  # no CUDA call was made
    monkeypatch.undo()  # back in the parent, which still runs and closes it
    be._lock.release()
    np.testing.assert_allclose(be.infer(FACES), fake_logits(FACES), rtol=1e-5, atol=1e-5)
    be.close()


@pytest.mark.parametrize("memory", ["cuda-python", "pycuda"])
@pytest.mark.parametrize("how", ["close", "collect", "with"])
def test_closing_an_inherited_tensorrt_backend_in_the_child_leaves_the_parents_cuda_alone(
        gpu: Gpu, engine: Path, memory: str, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """close(), a with-block's end or garbage collection in the child freed the parent's device and pinned memory,
    destroyed its stream and TensorRT objects (cudaFree, cuCtxPush/Pop on a context the child does not have),
    and raised. In the child it must make no CUDA call, destroy no TensorRT object, and not raise."""
    be = TensorRTBackend(engine, memory=memory)
    engine_ref, context_ref = weakref.ref(be._engine), weakref.ref(be._context)  # type: ignore[arg-type]
    before = gpu.cuda_state()
    lock = be._lock
    lock.acquire()  # held at the fork by a thread of the parent
    _as_forked_child(monkeypatch)
    if how == "close":
        out = _returns_within(be.close)
        assert "error" not in out, out
        assert be.closed
        out = _returns_within(be.close)  # twice is fine
        assert "error" not in out, out
    elif how == "with":
        def block() -> None:
            with be:
                raise KeyError("the block's own error")

        out = _returns_within(block)
        assert isinstance(out.get("error"), KeyError), out  # the block's error, not a failed close's
        assert be.closed
    else:
        holder = [be]
        del be

        def collect() -> None:
            holder.clear()
            gc.collect()

        out = _returns_within(collect)
        assert "error" not in out, out
    gc.collect()
    assert gpu.cuda_state() == before
    assert engine_ref() is not None and context_ref() is not None  # TensorRT would free them on the parent's context
    lock.release()


def test_a_memory_layer_opened_before_the_fork_refuses_in_the_child(gpu: Gpu, monkeypatch: pytest.MonkeyPatch) -> None:
    layers = [CudaPythonMemory(0), PyCudaMemory(0)]
    buffers = [m.alloc_device(16) for m in layers]
    streams = [m.create_stream() for m in layers]
    before = gpu.cuda_state()
    _as_forked_child(monkeypatch)
    for mem, buf, stream in zip(layers, buffers, streams):
        for call in (lambda: mem.alloc_device(16), lambda: mem.free(buf), lambda: mem.synchronize(stream),
                     lambda: mem.device_identity(), lambda: mem.context().__enter__()):
            with pytest.raises(EngineError, match=FORK_ADVICE):
                call()
    assert gpu.cuda_state() == before


@pytest.mark.parametrize("memory", ["cuda-python", "pycuda", "auto"])
def test_opening_cuda_in_a_child_of_a_process_that_used_it_says_why_it_cannot(
        gpu: Gpu, engine: Path, memory: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child forked from a process that used CUDA cannot initialise CUDA itself: cuda-python's first call returns
    cudaErrorInitializationError (3) and pycuda's cuInit fails. The error was a bare CUDA error; it must say why
    and what to do."""
    TensorRTBackend(engine, memory="cuda-python").close()  # the parent used CUDA, then let it go
    before = gpu.cuda_state()
    _as_forked_child(monkeypatch)
    monkeypatch.setattr(gpu.cudart, "cudaGetDevice", lambda: (3, 0))  # cudaErrorInitializationError

    def cu_init() -> None:
        raise gpu.pycuda.Error("cuInit failed: initialization error")

    monkeypatch.setattr(gpu.pycuda, "init", cu_init)
    with pytest.raises(EngineError, match=r"(?s)\(error 3\)|initialization error") as info:
        select_memory(memory)
    assert re.search(r"(?s)process \d+, which had used CUDA.*'spawn'", str(info.value)), str(info.value)
    with pytest.raises(EngineError, match=r"(?s)process \d+, which had used CUDA.*'spawn'"):
        TensorRTBackend(engine, memory=memory)
    assert gpu.cuda_state() == before


def test_a_cuda_error_in_a_process_that_was_not_forked_gets_no_fork_advice(
        gpu: Gpu, monkeypatch: pytest.MonkeyPatch) -> None:
    CudaPythonMemory(0)
    monkeypatch.setattr(gpu.cudart, "cudaGetDevice", lambda: (3, 0))
    with pytest.raises(EngineError, match=r"\(error 3\)") as info:
        CudaPythonMemory(0)
    assert "fork" not in str(info.value)


# -- 2: the CPU runtime with a real fork ------------------------------------------------------------------
def _crowd_frame() -> np.ndarray:
    try:
        from ._faces import blob_face
    except ImportError:
        from _faces import blob_face  # type: ignore[no-redef]
    frame = np.full((120, 160, 3), 90, np.uint8)
    for k, (y, x) in enumerate([(20, 20), (30, 90), (70, 50)]):
        face = blob_face(32, seed=k)
        frame[y:y + 32, x:x + 32] = face[..., None] if face.ndim == 2 else face
    return frame




@pytest.fixture()
def analyzer() -> Any:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge.crowd import CrowdAnalyzer

    with CrowdAnalyzer() as a:  # the shipped recogniser and YuNet detector, on the CPU
        yield a


@needs_fork
@pytest.mark.parametrize("sessions", [1, 2])
def test_a_forked_worker_runs_the_analyzer_and_recognizer_it_inherited(sessions: int) -> None:
    """A pre-forking server opens the models before forking: the child's answers are the parent's."""
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer

    frame = _crowd_frame()
    faces = np.random.default_rng(1).integers(0, 256, (5, 20, 20), dtype=np.uint8)
    with Recognizer(sessions=sessions, spinning=False) as rec, CrowdAnalyzer(rec) as a:
        want = {"crowd": a.analyze(frame).to_dict(), "logits": rec.predict_logits(rec.prepare(faces)).tolist()}
        a.analyze_stream([frame, frame], pipeline=True).__next__()  # a pipelined stream's worker thread ran
        got = in_child(lambda: {"crowd": a.analyze(frame).to_dict(),
                                 "logits": rec.predict_logits(rec.prepare(faces)).tolist()})
        assert "error" not in got, got
        np.testing.assert_allclose(got["value"]["logits"], want["logits"], atol=1e-5)
        assert got["value"]["crowd"]["summary"] == json.loads(json.dumps(want["crowd"]["summary"]))
        assert len(a.analyze(frame).faces) == len(want["crowd"]["faces"])  # the parent goes on


@needs_fork
def test_an_analyzer_closed_in_a_forked_child_does_not_wait_for_the_parents_threads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread of the parent was detecting (a pipelined stream's worker) at the fork: the child inherited its
    use count, and close() there waited CLOSE_WAIT_S (10 s) for a thread the child does not have, then left the
    models open. The lock under that count may also have been held at the fork.

    The analyzer's own models get one intra-op thread here: an ONNX Runtime session made with spin-waiting off and
    a thread pool hangs when it is destroyed in a forked child (the detectors' sessions; see the report)."""
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer, crowd
    from fsrfer_edge.detection import create_detector

    monkeypatch.setattr(crowd, "Recognizer", lambda spinning: Recognizer(spinning=spinning, threads=1))
    monkeypatch.setattr(crowd, "create_detector", lambda name, min_face: create_detector(name, min_face=min_face,
                                                                                          threads=1))
    analyzer = crowd.CrowdAnalyzer()
    started, release = threading.Event(), threading.Event()

    def busy() -> None:
        with analyzer._using():
            started.set()
            release.wait(CHILD_S)

    t = threading.Thread(target=busy, daemon=True)
    t.start()
    assert started.wait(5)

    def close_in_child() -> Any:
        t0 = time.monotonic()
        analyzer.close()
        return {"seconds": time.monotonic() - t0, "closed": analyzer.recognizer.backend.closed}

    got = in_child(close_in_child)
    release.set()
    t.join(5)
    assert "error" not in got, got
    assert got["value"]["seconds"] < 2 and got["value"]["closed"], got
    assert not analyzer.recognizer.backend.closed  # the parent's are its own
    analyzer.close()
    assert analyzer.recognizer.backend.closed and analyzer.detector.closed


@needs_fork
def test_a_pipelined_stream_continued_in_a_forked_child_fails_instead_of_hanging(analyzer: Any) -> None:
    """The stream's detection worker thread stayed in the parent: the child's next frame waited for ever on a
    detection no thread would run. It must raise at once, saying to start a new stream in the child."""
    frame = _crowd_frame()
    stream = analyzer.analyze_stream([frame] * 4, pipeline=True)
    first = next(stream)  # the worker is detecting frame 1 now

    got = in_child(lambda: len(list(stream)))
    assert got.get("error") == "FsrferError", got
    assert re.search(r"(?s)process \d+.*fork.*analyze_stream", got["message"]), got
    assert [r.frame_index for r in stream] == [1, 2, 3] and first.frame_index == 0  # the parent's stream goes on


@needs_fork
def test_locks_a_parent_thread_held_at_the_fork_are_new_in_the_child() -> None:
    """A fork while another thread of the parent ran OpenCV's cascade or closed a backend: the child inherited the
    held lock and its detect()/close() waited for ever (fsrfer_edge.forking renews them)."""
    pytest.importorskip("cv2")
    pytest.importorskip("onnxruntime")
    from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend
    from fsrfer_edge.detection.opencv import OpenCVDetector

    det = OpenCVDetector()
    backend = OnnxRuntimeBackend(Path(__file__).resolve().parents[1] / "fsrfer_edge" / "models" / "default.onnx")
    frame = _crowd_frame()
    want = len(det.detect(frame))
    with det._lock, backend._close_lock:  # held by this thread while the child is forked
        got = in_child(lambda: [len(det.detect(frame)), backend.close(), backend.closed])
    assert got == {"value": [want, None, True]}
    det.close()
    backend.close()


def test_a_renewal_never_keeps_its_object_alive() -> None:
    import gc
    import weakref

    from fsrfer_edge import forking

    class Thing:
        pass
    thing = Thing()
    forking.renew_in_child(thing, lambda t: None)
    gone = weakref.ref(thing)
    del thing
    gc.collect()
    assert gone() is None and len([k for k in forking._RENEWALS.keys() if isinstance(k, Thing)]) == 0


@needs_fork
def test_a_detector_closed_in_a_forked_child_leaves_its_session_to_the_parent() -> None:
    """YuNet's (and BlazeFace's) ONNX Runtime session destroyed in a forked child hung for ever, as the recogniser's
    did; the parent's detector goes on."""
    pytest.importorskip("onnxruntime")
    from fsrfer_edge.detection import create_detector

    frame = _crowd_frame()
    with create_detector("yunet") as det:
        want = len(det.detect(frame))
        got = in_child(lambda: [len(det.detect(frame)), det.close(), det.closed])
        assert got == {"value": [want, None, True]}
        assert len(det.detect(frame)) == want


def _predict_into(rec: Any, faces: Any, queue: Any) -> None:
    queue.put([p.label for p in rec.predict(faces)])


@needs_fork
def test_a_multiprocessing_fork_worker_uses_the_inherited_recognizer_and_exits() -> None:
    """The README's "Processes": multiprocessing's "fork" children work with a Recognizer made before the fork and
    end normally (they exit with os._exit, so ONNX Runtime's exit handlers, which hang in a forked child at a normal
    interpreter exit, do not run)."""
    import multiprocessing

    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer

    faces = list(np.random.default_rng(3).integers(0, 256, (4, 24, 24), dtype=np.uint8))
    ctx = multiprocessing.get_context("fork")
    with Recognizer(sessions=2) as rec, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12: fork() while threads run
        want = [p.label for p in rec.predict(faces)]
        queue = ctx.Queue()
        worker = ctx.Process(target=_predict_into, args=(rec, faces, queue))
        worker.start()
        worker.join(CHILD_S)
        if worker.is_alive():
            worker.kill()
            pytest.fail(f"the multiprocessing worker did not end within {CHILD_S} s")
        assert worker.exitcode == 0 and queue.get(timeout=5) == want
