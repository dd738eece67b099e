"""Behaviour checks that a seventh hand-made mutation test (round 66, task K66j: group estimates and their
calibration, and the crowd benchmark's synthetic scenes and fps measurement, after rounds 64b and 64e) found no test
for: each test here fails on one small, plausible change to the library code that the rest of the suite let
through. Tiny synthetic arrays and a fake analyzer on a fake clock; no model, no data set."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Iterator, Sequence

import numpy as np
import pytest

from fsrfer_edge import crowd_bench as cb
from fsrfer_edge.groups import GroupCalibration

CLASSES = ("neutral", "happy", "sad")


# -- GroupCalibration.fit: n is the smallest number of faces of each class over the factors ---------------------------
def test_fit_records_the_fewest_faces_of_each_class_over_the_factors() -> None:
    def faces(per_class: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(3), per_class)
        return np.eye(3)[y] * 0.7 + 0.1, y

    (p1, y1), (p2, y2) = faces([5, 2, 4]), faces([3, 6, 1])
    cal = GroupCalibration.fit({1.0: p1, 2.0: p2}, {1.0: y1, 2.0: y2}, CLASSES)
    assert cal.n == (3, 2, 1)


# -- crowd_bench.make_scene: sizes log-uniform over the whole range, each pool face at most once ----------------------
def test_scene_face_sizes_draw_the_largest_size_as_often_as_its_share_of_the_log_range() -> None:
    pool = cb.FacePool(np.full((4, 48, 48), 128, np.uint8), np.arange(4), "test")
    sizes = np.concatenate([cb.make_scene(pool, seed, 100, (400, 400), "plain", (10, 11)).sizes
                            for seed in range(5)])
    assert len(sizes) == 500 and set(sizes.tolist()) == {10.0, 11.0}
    # log-uniform on [10, 11.5) rounded: 11 takes log(11.5 / 10.5) / log(11.5 / 10) = 65% of the faces
    assert np.mean(sizes == 11) == pytest.approx(0.65, abs=0.06)


def test_a_scene_pastes_each_pool_face_at_most_once_when_the_pool_has_enough() -> None:
    n = 60
    pool = cb.FacePool(np.repeat((np.arange(n) * 4 + 8).astype(np.uint8), 48 * 48).reshape(n, 48, 48),
                       np.arange(n) % 7, "test")
    scene = cb.make_scene(pool, 3, 30, (240, 240), "plain", (8, 12))
    assert len(scene.boxes) == 30
    ids = []
    for (x0, y0, x1, y1), label in zip(scene.boxes.astype(int), scene.labels):
        grey = float(np.median(scene.image[y0:y1, x0:x1]))
        ids.append(int(round((grey - 8) / 4)))
        assert label == pool.labels[ids[-1]]
    assert len(set(ids)) == len(ids)


# -- crowd_bench.measure_fps: a warm-up call not timed, the median of the repeats, the stream pipelined --------------
class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class _FakeAnalyzer:
    """Each analyze() takes the next of ``durations`` seconds on the fake clock; the stream 0.05 s a frame."""

    def __init__(self, clock: _Clock, durations: Sequence[float]) -> None:
        self.clock, self.durations = clock, list(durations)
        self.calls = 0
        self.pipeline: list[bool] = []

    def analyze(self, image: np.ndarray) -> Any:
        self.clock.now += self.durations[self.calls]
        self.calls += 1
        return SimpleNamespace(faces=[], timings_ms={"detect": 1.0, "recognize": 2.0})

    def analyze_stream(self, frames: Sequence[np.ndarray], pipeline: bool = False) -> Iterator[Any]:
        self.pipeline.append(pipeline)
        for _ in frames:
            self.clock.now += 0.05
            yield None


def _fps(monkeypatch: pytest.MonkeyPatch, durations: Sequence[float], repeats: int) -> tuple[dict, _FakeAnalyzer]:
    clock = _Clock()
    monkeypatch.setattr(cb, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    analyzer = _FakeAnalyzer(clock, durations)
    scene = cb.Scene(np.zeros((8, 8, 3), np.uint8), np.zeros((0, 4)), np.zeros(0, np.int64), "plain", 0)
    return cb.measure_fps(analyzer, scene, repeats), analyzer  # type: ignore[arg-type]


def test_measure_fps_leaves_a_slow_first_call_out_of_the_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    report, analyzer = _fps(monkeypatch, [5.0, 0.25], repeats=1)
    assert analyzer.calls == 2
    assert report["seconds_per_frame"] == pytest.approx(0.25)
    assert report["fps"] == pytest.approx(4.0)


def test_measure_fps_reports_the_median_of_the_repeats_not_their_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    report, _ = _fps(monkeypatch, [0.5, 0.1, 0.1, 0.7], repeats=3)
    assert report["seconds_per_frame"] == pytest.approx(0.1)
    assert report["fps"] == pytest.approx(10.0)


def test_measure_fps_times_the_pipelined_stream_over_the_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    report, analyzer = _fps(monkeypatch, [0.1] * 5, repeats=4)
    assert analyzer.pipeline == [True]
    assert report["fps_stream_pipelined"] == pytest.approx(20.0)


# -- crowd_bench.markdown_table: each number under its own column ----------------------------------------------------
def test_markdown_table_puts_each_accuracy_under_its_own_heading() -> None:
    acc = {"accuracy": 0.1, "accuracy_detected": 0.2, "accuracy_true_boxes": 0.3}
    report = {"detection": {"bins": [{"bin": "6-8", "faces": 7, "recall": 0.5}],
                            "overall": {"faces": 9, "found": 4, "recall": 0.4}},
              "accuracy": {"bins": [dict(acc)], "overall": {"accuracy": 0.6, "accuracy_detected": 0.7,
                                                            "accuracy_true_boxes": 0.8}}}
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in cb.markdown_table(report).splitlines()]
    assert rows[0] == ["face size (px)", "faces", "detection recall", "accuracy, end to end",
                       "accuracy, detected faces", "accuracy, true boxes"]
    assert rows[2] == ["6-8", "7", "50.0%", "10.0%", "20.0%", "30.0%"]
    assert rows[3] == ["all", "9", "40.0%", "60.0%", "70.0%", "80.0%"]


# -- crowd_bench.run_benchmark: the timed scene has the asked fps_size ------------------------------------------------
def test_run_benchmark_times_a_scene_of_fps_size_not_of_the_evaluated_size(monkeypatch: pytest.MonkeyPatch) -> None:
    timed: list[tuple[int, ...]] = []
    monkeypatch.setattr(cb, "evaluate", lambda *a, **k: {"per_background": {}})
    monkeypatch.setattr(cb, "summarize_rows", lambda *a, **k: {"bins": [], "overall": {
        "faces": 0, "found": 0, "recall": None, "detections": 0, "precision": None}})
    def measure_fps(analyzer: Any, scene: cb.Scene, repeats: int) -> dict:
        timed.append(scene.image.shape)
        return {}

    monkeypatch.setattr(cb, "measure_fps", measure_fps)
    monkeypatch.setattr(cb, "_environment", lambda analyzer: {})
    analyzer = SimpleNamespace(margin=0.2, min_size=0, min_score=0.5, detector=SimpleNamespace(name="fake"),
                               recognizer=SimpleNamespace(model_path="missing.onnx"))
    pool = cb.FacePool(np.full((2, 48, 48), 128, np.uint8), np.full(2, -1), "test")
    cb.run_benchmark(analyzer, pool, n_scenes=1, n_faces=1, size=(60, 80), fps_repeats=1,  # type: ignore[arg-type]
                     fps_size=(100, 120))
    assert timed == [(100, 120, 3)]
