"""Defects found by an adversarial review of the CrowdAnalyzer API: a stream that went on after close(), a
``pipeline`` that took any truthy value, a ``weak_score`` that silently did nothing, a TrackLog fed results of
other classes, and stream options checked only at the first frame."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from fsrfer_edge import InputError, Recognizer
from fsrfer_edge.backends.base import BackendClosedError
from fsrfer_edge.crowd import CrowdAnalyzer, CrowdResult, FaceResult, TrackLog, summarize
from fsrfer_edge.detection import Detection, FaceDetector


class OneBox(FaceDetector):
    """One 24 px face at the same place in every frame."""

    name = "onebox"

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        return [Detection((4.0, 4.0, 28.0, 28.0), 0.9)]


@pytest.fixture(scope="module")
def rec() -> Iterator[Recognizer]:
    r = Recognizer(threads=1, spinning=False)  # the shipped default model
    yield r
    r.close()


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("pipeline", [False, True])
def test_a_stream_started_before_close_stops_after_it(rec: Recognizer, pipeline: bool) -> None:
    a = CrowdAnalyzer(rec, OneBox())  # models given: close() leaves them open, so nothing else would stop the stream
    stream = a.analyze_stream(_frames(4), pipeline=pipeline)
    assert next(stream).frame_index == 0
    a.close()
    with pytest.raises(BackendClosedError, match="this CrowdAnalyzer was closed"):
        next(stream)


def test_a_stream_of_an_analyzer_owning_its_recognizer_names_the_analyzer_after_close() -> None:
    a = CrowdAnalyzer(None, OneBox())
    stream = a.analyze_stream(_frames(3))
    next(stream)
    a.close()
    with pytest.raises(BackendClosedError, match="this CrowdAnalyzer was closed"):  # not "this Recognizer"
        next(stream)


@pytest.mark.parametrize("pipeline", ["no", "false", 0, 1, None, 2.0])
def test_pipeline_must_be_a_bool(rec: Recognizer, pipeline: Any) -> None:
    a = CrowdAnalyzer(rec, OneBox())
    with pytest.raises(InputError, match=r"pipeline=.*expected True or False"):
        a.analyze_stream(_frames(2), pipeline=pipeline)


def test_pipeline_takes_numpy_bools(rec: Recognizer) -> None:
    a = CrowdAnalyzer(rec, OneBox())
    stream = a.analyze_stream(_frames(2), pipeline=np.bool_(True))  # type: ignore[arg-type]
    assert [r.frame_index for r in stream] == [0, 1]


def test_a_weak_score_at_or_over_the_detectors_threshold_is_refused() -> None:
    probe = CrowdAnalyzer(None, None, groups=None)
    threshold = probe.detector.min_score  # type: ignore[attr-defined]
    probe.close()
    for weak in (threshold, min(1.0, threshold + 0.3)):
        with pytest.raises(InputError, match=r"weak_score=.*threshold"):
            CrowdAnalyzer(None, None, weak_score=weak, groups=None)
    ok = CrowdAnalyzer(None, None, weak_score=threshold / 2, groups=None)  # under it: taken as before
    assert ok.detector.weak_score == threshold / 2  # type: ignore[attr-defined]
    ok.close()


def _result(classes: tuple[str, ...], index: int = 0) -> CrowdResult:
    probs = np.full(len(classes), 1.0 / len(classes))
    face = FaceResult((0.0, 0.0, 10.0, 10.0), 0.9, 10.0, classes[-1], len(classes) - 1, probs, track_id=1,
                      frame_probs=probs)
    return CrowdResult((face,), summarize([face], classes), classes, (20, 20), index)


def test_a_track_log_refuses_results_of_other_classes_and_what_is_not_a_result() -> None:
    log = TrackLog(("a", "b", "c"))
    log.add(_result(("a", "b", "c")))
    with pytest.raises(InputError, match=r"classes.*'d'.*expected.*\('a', 'b', 'c'\)"):
        log.add(_result(("a", "b", "c", "d"), 1))
    with pytest.raises(InputError, match="classes"):
        log.add(_result(("x", "y", "z"), 1))  # as many classes, other names
    with pytest.raises(InputError, match="received a dict; expected a CrowdResult"):
        log.add(_result(("a", "b", "c"), 1).to_dict())  # type: ignore[arg-type]
    out = log.to_list()  # the refused results left nothing behind
    assert len(out) == 1 and out[0]["frames"] == 1 and out[0]["last_frame"] == 0


@pytest.mark.parametrize("kwargs, words", [({"max_frames": 0}, "max_frames=0"),
                                           ({"max_frames": 2.5}, "max_frames=2.5")])
def test_stream_options_are_checked_when_the_stream_is_asked_for(rec: Recognizer, kwargs: dict, words: str) -> None:
    a = CrowdAnalyzer(rec, OneBox())
    with pytest.raises(InputError, match=words):
        a.analyze_stream(_frames(2), **kwargs)  # not only at the first next()


@pytest.mark.parametrize("source", [None, 3.5, object()])
def test_a_source_of_the_wrong_type_is_refused_when_the_stream_is_asked_for(rec: Recognizer, source: Any) -> None:
    a = CrowdAnalyzer(rec, OneBox())
    with pytest.raises(InputError, match="source is a"):
        a.analyze_stream(source)
    with pytest.raises(InputError, match="one array"):
        a.analyze_stream(_frames(1)[0])


@pytest.mark.parametrize("boxes, words", [([("4", "4", "28", "28")], "str"), ([(True, 4, 28, 28)], "bool"),
                                          (np.ones((1, 4), dtype=bool), "bool"), ([(4, 4, 28, b"28")], "bytes")])
def test_boxes_of_strings_or_bools_are_refused_not_converted(rec: Recognizer, boxes: Any, words: str) -> None:
    a = CrowdAnalyzer(rec, OneBox())
    words = rf"could not be read as numbers: they hold a {words}.*expected N boxes of 4 finite numbers"
    with pytest.raises(InputError, match=words):
        a.analyze(_frames(1)[0], boxes=boxes)
    numbers = np.array([(4, 4, 28, 28)], np.int32)  # taken, as before
    assert len(a.analyze(_frames(1)[0], boxes=numbers).faces) == 1  # type: ignore[arg-type]
