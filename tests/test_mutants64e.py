"""Tests that kill mutants of the FER+ label join and the crowd benchmark's scoring (round 64e).

Each test pins one number a user reads off a report: which faces get a label, whether a detection counts,
and which denominator a rate uses. Synthetic arrays only; no model, no data set.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional, Sequence

import numpy as np
import pytest

from fsrfer_edge import crowd_bench as cb
from fsrfer_edge import ferplus
from fsrfer_edge.detection import Detection


def _det(box: Sequence[float], score: float = 0.9) -> Detection:
    x0, y0, x1, y1 = (float(v) for v in box)
    return Detection((x0, y0, x1, y1), float(score), ())


# ---- FER+ join -------------------------------------------------------------------------------------------------
def _write_fer(tmp_path: Path, orig: Sequence[int], ferplus_orig: Optional[Sequence[int]] = None,
               ferplus_labels: Optional[Sequence[int]] = None) -> Path:
    n = len(orig)
    np.savez(tmp_path / "fer2013.npz", images=np.zeros((n, 4, 4), np.uint8), labels=np.arange(n) % 7,
             split=np.array(["test"] * n), orig_row=np.asarray(orig, np.int64))
    if ferplus_orig is not None:
        np.savez(tmp_path / ferplus.FERPLUS_FILE, orig_row=np.asarray(ferplus_orig, np.int64),
                 labels=np.asarray(ferplus_labels, np.int64))
    return tmp_path / "fer2013.npz"


def test_a_face_with_unknown_orig_row_gets_no_label_even_if_ferplus_has_row_minus_one(tmp_path: Path) -> None:
    path = _write_fer(tmp_path, [-1, 5])
    np.savez(tmp_path / "fp.npz", orig_row=np.array([-1, 5]), labels=np.array([3, 4]))
    joined = ferplus.join_ferplus(path, np.array([-1, 5]), None, tmp_path / "fp.npz")
    assert joined.labels.tolist() == [-1, 4]


def test_several_faces_with_unknown_orig_row_are_not_duplicates(tmp_path: Path) -> None:
    path = _write_fer(tmp_path, [-1, -1, 2], ferplus_orig=[2], ferplus_labels=[6])
    faces = ferplus.load_labelled_faces(path, "ferplus")
    assert faces.labels.tolist() == [6]


def test_default_label_set_is_ferplus_when_its_archive_lies_beside_the_data(tmp_path: Path) -> None:
    path = _write_fer(tmp_path, [0, 1])
    assert ferplus.default_label_set(path) == "fer2013"
    _write_fer(tmp_path, [0, 1], ferplus_orig=[0, 1], ferplus_labels=[1, 2])
    assert ferplus.default_label_set(path) == "ferplus"
    faces = ferplus.load_labelled_faces(path)
    assert faces.label_set == "ferplus" and faces.labels.tolist() == [1, 2]


# ---- matching detections to true faces ---------------------------------------------------------------------------
def test_a_detection_overlapping_a_face_by_exactly_match_iou_counts() -> None:
    truth = np.array([[0.0, 0.0, 10.0, 10.0]])
    det = _det((0, 0, 10 * cb.MATCH_IOU, 10))  # IoU = 30 / 100
    assert cb.match(truth, [det]).tolist() == [0]
    assert cb.match(truth, [_det((0, 0, 2.9, 10))]).tolist() == [-1]


def test_one_detection_matches_one_face_only() -> None:
    truth = np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0]])
    hit = cb.match(truth, [_det((0, 0, 10, 10))])
    assert sorted(hit.tolist()) == [-1, 0]


def test_a_48_pixel_face_falls_in_the_last_size_bin() -> None:
    assert cb._bin_of(48.0) == len(cb.SIZE_BINS) - 1
    assert cb._bin_of(49.0) == -1 and cb._bin_of(5.9) == -1
    assert cb._bin_label(*cb.SIZE_BINS[-1]) == "32-48"


# ---- rates and denominators --------------------------------------------------------------------------------------
def _rows() -> dict[str, Any]:
    # four 10-px faces: three found (two predicted right), one missed; oracle right on all four
    rows = [{"size": 10.0, "found": f, "label": 1, "pred": {0.0: p}, "oracle": {0.0: 1}}
            for f, p in ((True, 1), (True, 1), (True, 0), (False, -1))]
    return {"rows": rows, "detections": 5, "true_detections": 3}


def test_accuracy_counts_every_face_and_accuracy_detected_only_the_found_ones() -> None:
    s = cb.summarize_rows(_rows(), 0.0, labelled=True)
    b = s["bins"][cb._bin_of(10.0)]
    assert (b["faces"], b["found"], b["recall"]) == (4, 3, 0.75)
    assert b["accuracy"] == 0.5 and b["accuracy_detected"] == round(2 / 3, 4) and b["accuracy_true_boxes"] == 1.0
    o = s["overall"]
    assert o["accuracy"] == 0.5 and o["accuracy_detected"] == round(2 / 3, 4)
    assert o["precision"] == 0.6 and o["detections"] == 5


def test_evaluate_counts_false_detections_and_precision_per_detection() -> None:
    scene = cb.Scene(np.zeros((64, 64, 3), np.uint8), np.array([[0.0, 0.0, 10.0, 10.0], [30.0, 30.0, 40.0, 40.0]]),
                     np.array([-1, -1]), "clutter", 0)
    dets = [_det((0, 0, 10, 10)), _det((50, 0, 60, 10)), _det((50, 50, 60, 60))]
    analyzer = SimpleNamespace(_detect=lambda image: dets, recognizer=None)
    ev = cb.evaluate(analyzer, [scene], labelled=False)  # type: ignore[arg-type]
    assert ev["per_background"]["clutter"] == [2, 1, 2]
    s = cb.summarize_rows(ev, 0.0, labelled=False)
    assert s["overall"]["precision"] == round(1 / 3, 4) and s["overall"]["recall"] == 0.5


def test_score_sweep_keeps_a_detection_scoring_exactly_the_threshold() -> None:
    scene = SimpleNamespace(background="plain", boxes=np.array([[0.0, 0.0, 10.0, 10.0]]), sizes=np.array([10.0]))
    ev = {"scene_detections": [(scene, [_det((0, 0, 10, 10), score=0.5)])]}
    row = cb._sweep_row(ev, [], 0.5)
    assert row["recall"] == 1.0 and row["precision"] == 1.0
    assert cb._sweep_row(ev, [], 0.6)["recall"] == 0.0


@pytest.mark.parametrize("recalls, expected", [((0.5, 0.9, 1.0), 8), ((0.9, 0.9, 0.89), None), ((None, 0.95, 0.9), 8)])
def test_smallest_reliable_counts_a_recall_of_exactly_the_threshold(recalls: tuple[Optional[float], ...],
                                                                     expected: Optional[int]) -> None:
    bins = [{"lo": lo, "recall": r} for lo, r in zip((6, 8, 12), recalls)]
    assert cb.smallest_reliable(bins, threshold=0.9) == expected


# ---- pyramid detectors: which boxes a level keeps, where the pyramid stops ------------------------------------------
def _pyramid(boxes: list[list[float]], scores: list[float], **kw: Any) -> Any:
    from fsrfer_edge.detection.pyramid import PyramidDetector

    class Fixed(PyramidDetector):
        name, n_points = "fixed-pyramid", 1

        def _network(self, batch: np.ndarray) -> list:
            b = np.array(boxes, float).reshape(-1, 4)
            return [(b, np.array(scores, float), ((b[:, :2] + b[:, 2:]) / 2)[:, None, :]) for _ in batch]

    opts: dict[str, Any] = dict(min_score=0.5, min_face=24.0, iou=0.3, max_cover=0.7, level_step=4.0, max_input=1536,
                                face_px=24.0,
                                size_slack=1.5, size_multiple=32, coarsest=640)
    opts.update(kw)
    return Fixed(**opts)


def test_pyramid_keeps_a_detection_scoring_exactly_min_score() -> None:
    det = _pyramid([[10, 10, 40, 40]], [0.5])
    assert [d.score for d in det.detect(np.zeros((64, 64, 3), np.uint8))] == [0.5]


def test_finest_level_keeps_a_face_of_exactly_its_floor_size() -> None:
    from fsrfer_edge.detection.pyramid import FINEST_FLOOR

    side = 24.0 * FINEST_FLOOR  # face_px * FINEST_FLOOR network pixels, at scale 1
    det = _pyramid([[10, 10, 10 + side, 10 + side]], [0.9])
    assert len(det.detect(np.zeros((64, 64, 3), np.uint8))) == 1


def test_the_coarsest_level_keeps_faces_larger_than_its_size_band() -> None:
    det = _pyramid([[20, 20, 220, 220]], [0.9])  # 200 px > face_px * level_step * size_slack = 144
    assert len(det.plan(320, 320)) == 1
    assert [d.box for d in det.detect(np.zeros((320, 320, 3), np.uint8))] == [(20.0, 20.0, 220.0, 220.0)]


def test_the_pyramid_stops_at_a_level_exactly_coarsest_pixels_wide() -> None:
    det = _pyramid([], [])
    assert len(det.plan(640, 640)) == 1
    assert len(det.plan(641, 641)) == 2
