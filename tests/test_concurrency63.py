"""Backends and recognizers as a web server uses them: one instance shared by a thread pool, closed at shutdown
while requests still run, collected without close(), copied, or inherited by a forked worker.

ONNX Runtime on the CPU with the tiny model the tests make; the Triton client against a local stand-in.
"""
from __future__ import annotations

import copy
import gc
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pytest

from fsrfer_edge.backends import BackendClosedError
from fsrfer_edge.backends.base import Backend
from fsrfer_edge.metadata import ModelInfo

try:
    from ._fork_child import in_child, needs_fork
except ImportError:
    from _fork_child import in_child, needs_fork  # type: ignore[no-redef]

JOIN_S = 8.0  # a thread not done by then hung


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    try:
        from ._onnx_models import make_tiny_onnx
    except ImportError:
        from _onnx_models import make_tiny_onnx  # type: ignore[no-redef]
    return make_tiny_onnx(tmp_path_factory.mktemp("conc") / "tiny.onnx")


def _batch(n: int = 6) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 1, 48, 48)).astype(np.float32)


def _backend(path: Path, sessions: int) -> Any:
    from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, providers="cpu", threads=1, sessions=sessions)


def _run_threads(target: Any, count: int) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_S)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return threads


# -- 1: threads sharing one backend --------------------------------------------------------------
@pytest.mark.parametrize("sessions", [1, 3])
def test_threads_sharing_one_backend_get_the_serial_answers(tiny: Path, sessions: int) -> None:
    x = _batch()
    with _backend(tiny, sessions) as be:
        want = be.infer(x)
        start = threading.Barrier(6, timeout=JOIN_S)
        got: dict[int, list[tuple[int, np.ndarray]]] = {}

        def work(i: int) -> None:
            start.wait()
            got[i] = [(n, be.infer(x[:n])) for n in [1 + (i + k) % 6 for k in range(8)]]

        _run_threads(work, 6)
    assert len(got) == 6
    for runs in got.values():
        for n, logits in runs:
            np.testing.assert_allclose(logits, want[:n], atol=1e-5)


# -- 2: close() while other threads run -----------------------------------------------------------
def _close_while_called(call: Any, workers: int, close: Any) -> tuple[list[Any], list[BaseException]]:
    """Run ``call()`` over and over in ``workers`` threads, each having answered once first, until it raises; call
    ``close()`` once every worker has answered. Returns (answers, each worker's error); a worker still running
    ``JOIN_S`` after the close fails the test (a call hung)."""
    running = threading.Barrier(workers + 1, timeout=JOIN_S)  # the workers have each answered once, and the closer
    answers: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        answers.append(call())
        running.wait()
        while True:
            try:
                answers.append(call())
            except BaseException as exc:  # noqa: BLE001 - what it is, is the test
                errors.append(exc)
                return

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    running.wait()
    close()
    for t in threads:
        t.join(JOIN_S)
    assert not any(t.is_alive() for t in threads), "a call hung after close()"
    return answers, errors


@pytest.mark.parametrize("sessions", [1, 2])
def test_close_while_threads_infer_gives_answers_or_closed_errors(tiny: Path, sessions: int) -> None:
    x = _batch(4)
    be = _backend(tiny, sessions)
    want = be.infer(x)
    answers, errors = _close_while_called(lambda: be.infer(x), 4, be.close)
    assert len(errors) == 4 and all(isinstance(e, BackendClosedError) for e in errors), errors
    for logits in answers:  # a call that was running finished with the right answer
        np.testing.assert_allclose(logits, want, atol=1e-5)


def test_close_of_a_shared_recognizer_while_threads_predict(tiny: Path) -> None:
    from fsrfer_edge import Recognizer

    faces = [np.full((20, 20), v, np.uint8) for v in (10, 120, 240)]
    rec = Recognizer(tiny, providers="cpu", confidence=None)
    want = [p.label for p in rec.predict(faces)]
    answers, errors = _close_while_called(lambda: [p.label for p in rec.predict(faces)], 3, rec.close)
    assert all(a == want for a in answers)
    assert len(errors) == 3 and all(isinstance(e, BackendClosedError) for e in errors), errors


# -- 3: every public method of a closed backend says so -------------------------------------------
def test_validate_after_close_says_closed(tiny: Path) -> None:
    be = _backend(tiny, 1)
    x = _batch(2)
    assert be.validate(x).shape == x.shape
    be.close()
    with pytest.raises(BackendClosedError, match="was closed"):
        be.validate(x)
    with pytest.raises(BackendClosedError, match="was closed"):
        be.validate(x, any_size=True)
    for call in (lambda: be.infer(x), be.check_model, be.__enter__, lambda: be.session):
        with pytest.raises(BackendClosedError, match="was closed"):
            call()


# -- 4: double close, context manager twice, collection without close ------------------------------
class _SlowClose(Backend):
    """A backend whose close takes until the test lets it finish."""

    def __init__(self) -> None:
        super().__init__()
        self._info = ModelInfo()
        self.closes = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros((len(batch), len(self.info.classes)), np.float32)

    def _close_impl(self) -> None:
        self.closes += 1
        self.entered.set()
        assert self.release.wait(JOIN_S)


def test_a_second_close_returns_once_the_first_has_freed_everything() -> None:
    """A shutdown hook and a request's ``with`` both closing: the second close() returned at once, while the
    first was still freeing the model, so "closed" did not yet mean "freed"."""
    be = _SlowClose()
    first = threading.Thread(target=be.close, daemon=True)
    first.start()
    assert be.entered.wait(JOIN_S)
    second_done = threading.Event()

    def close_again() -> None:
        be.close()
        second_done.set()

    second = threading.Thread(target=close_again, daemon=True)
    second.start()
    assert not second_done.wait(0.3)  # still freeing: the second close waits
    be.release.set()
    first.join(JOIN_S)
    second.join(JOIN_S)
    assert second_done.is_set() and be.closes == 1


def test_double_close_and_a_context_manager_used_twice(tiny: Path) -> None:
    from fsrfer_edge import Recognizer

    with _backend(tiny, 2) as be:
        assert be.infer(_batch(2)).shape == (2, 7)
    be.close()
    with pytest.raises(BackendClosedError, match="was closed"):
        with be:
            pass
    with Recognizer(tiny, providers="cpu") as rec:
        assert len(rec.predict(np.zeros((12, 12), np.uint8))) == 1
    rec.close()
    with pytest.raises(BackendClosedError, match="was closed"):
        with rec:
            pass


def test_a_collected_backend_stops_its_threads(tiny: Path) -> None:
    be = _backend(tiny, 2)
    be.infer(_batch(4))
    pool = be._pool
    del be
    gc.collect()
    with pytest.raises(RuntimeError, match="shutdown"):  # __del__ closed it
        pool.submit(int)


def test_unclosed_backends_at_interpreter_exit_end_quietly(tiny: Path) -> None:
    code = (
        "import numpy as np, sys\n"
        "from fsrfer_edge import Recognizer\n"
        "from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend\n"
        f"be = OnnxRuntimeBackend({str(tiny)!r}, providers='cpu', sessions=2)\n"
        "be.infer(np.zeros((4, 1, 48, 48), np.float32))\n"
        f"rec = Recognizer({str(tiny)!r}, providers='cpu', sessions=2)\n"
        "rec.predict([np.zeros((12, 12), np.uint8)] * 3)\n"
        "sys.modules['__main__'].keep = (be, rec)  # alive until the interpreter tears down\n"
        "print('done')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr


# -- pickling, copying and forking a worker ------------------------------------------------------
@pytest.mark.parametrize("attempt", [pickle.dumps, copy.copy, copy.deepcopy])
def test_a_backend_refuses_pickling_and_copying(tiny: Path, attempt: Any) -> None:
    """copy.copy gave a second backend sharing the first's thread pool: collecting the copy shut the pool down
    and the original's next call failed with "closed while the call waited", though nobody closed it."""
    with _backend(tiny, 2) as be:
        with pytest.raises(TypeError, match="cannot be pickled or copied; pass the model's path"):
            attempt(be)
        gc.collect()
        assert be.infer(_batch(4)).shape == (4, 7)  # still open, its pool too


@needs_fork
@pytest.mark.parametrize("sessions", [1, 2])
def test_a_forked_worker_runs_the_backend_it_inherited(tiny: Path, sessions: int) -> None:
    """A pre-forking server (gunicorn --preload, multiprocessing "fork") made the backend before forking. With
    sessions=2 the child's call waited forever for the pool's threads, which had stayed in the parent."""
    x = _batch(4)
    with _backend(tiny, sessions) as be:
        want = be.infer(x)  # the pool's threads are running in the parent
        got = in_child(lambda: be.infer(x).tolist(), timeout=10)
        assert "error" not in got, got
        np.testing.assert_allclose(np.array(got["value"], np.float32), want, atol=1e-5)
        assert be.infer(x).shape == (4, 7)  # the parent's pool still works


# -- 5: the Triton HTTP client: close() while another thread's request is in flight -------------
def _fake_triton_handler(arrived: threading.Event, release: threading.Event) -> Any:
    from _http import QuietHandler, triton_model_config

    config = triton_model_config()
    state = {"requests": 0}

    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            state["requests"] += 1
            if state["requests"] > 1:  # the first is the backend's own, when it connects
                arrived.set()
                release.wait(JOIN_S)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(config)))
            self.end_headers()
            self.wfile.write(config)

    return Handler


@pytest.fixture()
def slow_triton() -> Iterator[tuple[str, threading.Event, threading.Event]]:
    from _http import client_stand_in

    arrived, release = threading.Event(), threading.Event()
    with client_stand_in(_fake_triton_handler(arrived, release)) as address:
        try:
            yield address, arrived, release
        finally:
            release.set()


def test_close_during_another_threads_http_request(slow_triton: tuple[str, threading.Event, threading.Event]) -> None:
    from fsrfer_edge.serving.client import TritonClientBackend

    address, arrived, release = slow_triton
    backend = TritonClientBackend(address, timeout_s=5)
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(_outcome(backend)), daemon=True)
    worker.start()
    assert arrived.wait(JOIN_S)  # the worker's request is at the server
    backend.close()
    release.set()
    worker.join(JOIN_S)
    assert not worker.is_alive(), "the request hung after close()"
    assert len(outcome) == 1
    got = outcome[0]
    # It either finished (its answer was on its way) or says the backend was closed: nothing else.
    assert isinstance(got, BackendClosedError) or (isinstance(got, dict) and got.get("name") == "fsrfer"), got
    with pytest.raises(BackendClosedError):
        backend._call(backend._get_config)
    assert backend._clients == []


def _outcome(backend: Any) -> Optional[Any]:
    try:
        return backend._call(backend._get_config)
    except BaseException as exc:  # noqa: BLE001 - what it is, is the test
        return exc
