"""Logging hygiene of the runtime for an always-on app (a camera analysed around the clock, logging at INFO or
WARNING): nothing logged per call, per frame or per face at INFO or above, nothing printed, and a condition that
persists logged once. Each test counts log records by (logger, level, message template) over many calls. CPU only,
tiny data."""
from __future__ import annotations

import collections
import logging
from typing import Any, Iterator

import numpy as np
import pytest

N = 120  # calls / frames: any record logged per call shows up about N times


class _Counter(logging.Handler):
    """Counts records by (logger, level, message template)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: collections.Counter[tuple[str, str, str]] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[(record.name, record.levelname, str(record.msg))] += 1

    def at_least(self, level: int) -> dict[tuple[str, str, str], int]:
        return {k: n for k, n in self.counts.items() if logging.getLevelName(k[1]) >= level}


@pytest.fixture()
def counted() -> Iterator[_Counter]:
    """A handler on the package's logger, which passes everything (DEBUG included) while the test runs."""
    pkg = logging.getLogger("fsrfer_edge")
    handler, level = _Counter(), pkg.level
    pkg.addHandler(handler)
    pkg.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        pkg.removeHandler(handler)
        pkg.setLevel(level)


@pytest.fixture(scope="module")
def recognizer() -> Any:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer

    with Recognizer(threads=1, spinning=False) as rec:
        yield rec


def _detector(*boxes: tuple[float, float, float, float]) -> Any:
    from fsrfer_edge.detection import Detection, FaceDetector

    class Fixed(FaceDetector):
        name = "fixed"

        def _detect(self, frame: np.ndarray) -> list[Detection]:
            return [Detection(b, 0.9) for b in boxes]

    return Fixed()


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- 1. a frame size that keeps changing under one carried tracker ------------------------------------------------
def test_a_carried_tracker_warns_of_a_frame_size_change_once_not_per_call(recognizer: Any,
                                                                          counted: _Counter) -> None:
    """An app that feeds one frame per call to analyze_stream with a carried tracker, from a source whose frames
    alternate between two sizes (two cameras through one tracker, say), got the same warning at every frame."""
    from fsrfer_edge.crowd import CrowdAnalyzer
    from fsrfer_edge.tracking import FaceTracker

    crowd = CrowdAnalyzer(recognizer, _detector((4.0, 4.0, 28.0, 28.0)))
    tracker = FaceTracker(confirm=1)
    a, b = _frame(64, 80), _frame(48, 96)
    for i in range(N):
        for _ in crowd.analyze_stream([a if i % 2 else b], track=tracker):
            pass
    warned = {k: n for k, n in counted.at_least(logging.WARNING).items() if "frame size changed" in k[2]}
    assert list(warned.values()) == [1], warned  # the first change warns, once for this tracker
    later = [n for k, n in counted.counts.items() if k[1] == "DEBUG" and "frame size" in k[2]]
    assert later and later[0] == N - 2  # later changes: DEBUG only

    tracker.reset()  # a new stream: its first change warns again
    for i in range(4):
        list(crowd.analyze_stream([a if i % 2 else b], track=tracker))
    warned = {k: n for k, n in counted.at_least(logging.WARNING).items() if "frame size changed" in k[2]}
    assert list(warned.values()) == [2], warned


# -- 2. nothing per call at INFO or above (guards) ---------------------------------------------------------------
def test_predict_logs_nothing_per_call(counted: _Counter) -> None:
    """Odd but valid faces (tiny, flat, low contrast, larger than the input), with the corrections that act on
    them: nothing is logged per call."""
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer

    faces = [np.zeros((3, 3), np.uint8), np.full((20, 20), 128, np.uint8), _frame(90, 70)[:, :, 0] // 16 + 100,
             _frame(48, 48), np.full((48, 48, 3), 255, np.uint8)]
    for corrections in (None, {"contrast_floor": 40.0, "soften_jpeg": 1.0}):
        with Recognizer(threads=1, spinning=False, corrections=corrections) as rec:
            before = sum(counted.at_least(logging.INFO).values())
            for i in range(N):
                rec.predict(faces)
                rec.predict(faces[i % len(faces)], jpeg=bool(i % 2))
            assert sum(counted.at_least(logging.INFO).values()) == before, counted.at_least(logging.INFO)


@pytest.mark.parametrize("pipeline", [False, True])
def test_analyze_and_streams_log_nothing_per_frame(recognizer: Any, counted: _Counter,
                                                   capfd: pytest.CaptureFixture[str], pipeline: bool) -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer

    # a face, one at the edge, one partly outside the frame, one too small for anything
    crowd = CrowdAnalyzer(recognizer, _detector((4.0, 4.0, 28.0, 28.0), (0.0, 0.0, 3.0, 3.0), (60.0, 40.0, 90.0, 70.0)),
                          min_size=2.0)
    frame, flat = _frame(64, 80), np.zeros((64, 80, 3), np.uint8)
    for _ in range(N // 4):
        crowd.analyze(frame)
        crowd.analyze(flat, boxes=[(10.0, 10.0, 30.0, 30.0)])
    list(crowd.analyze_stream([frame, flat] * (N // 4), track=True, pipeline=pipeline))
    list(crowd.analyze_stream([frame] * (N // 4), track=True, detect_every=3, pipeline=pipeline))
    assert counted.at_least(logging.INFO) == {}
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # no prints, and no third-party noise on the runtime path


# -- 3. library code does not print (guard) ----------------------------------------------------------------------
def _console_writes(tree: Any) -> Iterator[tuple[int, str]]:
    """(line, outermost function) of each print() and sys.stdout/stderr.write() call in a module."""
    import ast

    def walk(node: Any, outer: str) -> Iterator[tuple[int, str]]:
        for child in ast.iter_child_nodes(node):
            here = child.name if not outer and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else outer
            if isinstance(child, ast.Call):
                f = child.func
                if (isinstance(f, ast.Name) and f.id == "print") or (
                        isinstance(f, ast.Attribute) and f.attr == "write" and isinstance(f.value, ast.Attribute)
                        and f.value.attr in ("stdout", "stderr")):
                    yield child.lineno, here
            yield from walk(child, here)

    yield from walk(tree, "")


def test_only_cli_entry_points_print() -> None:
    """Library modules log through their logger; only a CLI's main (and the CLIs' argparse error) writes to the
    console, where an app's own output would be mixed with it."""
    import ast
    from pathlib import Path

    import fsrfer_edge

    root = Path(fsrfer_edge.__file__).parent
    found = []
    for path in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py")):
        for line, outer in _console_writes(ast.parse(path.read_text(encoding="utf-8"))):
            if not (outer == "main" or outer.endswith("_main") or (path.name == "errors.py" and outer == "error")):
                found.append(f"{path.relative_to(root)}:{line} in {outer or 'module level'}")
    assert found == [], found
