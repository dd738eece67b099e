"""Behaviour checks that a second hand-made mutation test (task K64b: crowd summaries and filters, detectors' decoding,
the smoother and track log, the engine cache, sidecars, group tallies, INT8 calibration crops and output paths) found no
test for: each test here fails on one small, plausible change to the library code that the rest of the suite let
through."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.crowd import CrowdResult, FaceResult, summarize
from fsrfer_edge.detection import Detection, FaceDetector
from fsrfer_edge.groups import GroupCalibration

CLASSES = ("neutral", "happy", "sad")


def _face(probs: tuple[float, ...], label_index: int | None = None, **kw: object) -> FaceResult:
    p = np.asarray(probs, np.float32)
    i = int(np.argmax(p)) if label_index is None else label_index
    return FaceResult((0.0, 0.0, 10.0, 10.0), 0.9, 10.0, CLASSES[i], i, p, **kw)  # type: ignore[arg-type]


# -- crowd.summarize: mean_probs is the mean over every face, dominant its largest class ------------------------------
def test_summary_mean_probs_are_the_mean_over_all_faces_and_dominant_is_their_largest() -> None:
    faces = [_face((0.6, 0.3, 0.1)), _face((0.2, 0.7, 0.1)), _face((0.1, 0.8, 0.1))]
    s = summarize(faces, CLASSES)
    np.testing.assert_allclose([s.mean_probs[c] for c in CLASSES], [0.3, 0.6, 0.1], atol=1e-6)
    assert s.counts == {"neutral": 1, "happy": 2, "sad": 0}
    assert s.dominant == "happy"
    assert s.to_dict()["dominant"] == "happy"


def test_dominant_follows_the_mean_not_the_smallest_class() -> None:
    s = summarize([_face((0.05, 0.15, 0.8))], CLASSES)
    assert s.dominant == "sad"


# -- CrowdAnalyzer: min_score keeps a detection scoring exactly min_score; min_size reads the larger box side ---------
class _Fixed(FaceDetector):
    name = "fixed"

    def __init__(self, dets: list[Detection]) -> None:
        super().__init__()
        self.dets = dets

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        return list(self.dets)


def test_min_score_keeps_a_detection_scoring_exactly_the_threshold(rec: Any) -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer

    det = _Fixed([Detection((0, 0, 20, 20), 0.5), Detection((25, 0, 45, 20), 0.49)])
    with CrowdAnalyzer(rec, det, min_score=0.5, groups=None) as crowd:
        faces = crowd.analyze(np.full((30, 50, 3), 90, np.uint8)).faces
    assert [f.score for f in faces] == [0.5]


def test_min_size_reads_the_larger_side_of_a_tall_box(rec: Any) -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer

    det = _Fixed([Detection((0, 0, 4, 12), 0.9), Detection((20, 0, 32, 4), 0.9), Detection((40, 0, 44, 4), 0.9)])
    with CrowdAnalyzer(rec, det, min_size=6, groups=None) as crowd:
        faces = crowd.analyze(np.full((20, 50, 3), 90, np.uint8)).faces
    assert [f.size_px for f in faces] == [12, 12]  # the 4x4 box is dropped, the tall and the wide one kept


def test_detect_every_runs_the_detector_on_frames_0_1_then_every_nth_after_frame_1(rec: Any) -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer

    det = _Fixed([Detection((5, 5, 25, 25), 0.9)])
    frames = [np.full((30, 40, 3), 90, np.uint8)] * 8
    with CrowdAnalyzer(rec, det, groups=None) as crowd:
        ran = [r.detector_ran for r in crowd.analyze_stream(frames, track=True, detect_every=3)]
    assert [i for i, r in enumerate(ran) if r] == [0, 1, 4, 7]


# -- TrackLog: a further call's results whose frame_index starts again at the last frame logged go on after it --------
def _tracked_result(index: int, track_id: int, probs: tuple[float, ...] = (0.2, 0.7, 0.1)) -> CrowdResult:
    face = _face(probs, track_id=track_id, frame_probs=np.asarray(probs, np.float32))
    return CrowdResult((face,), summarize([face], CLASSES), CLASSES, (30, 40), index)


def test_track_log_frames_go_on_when_the_next_call_starts_at_the_same_frame_index() -> None:
    from fsrfer_edge.crowd import TrackLog

    log = TrackLog(CLASSES)
    log.add(_tracked_result(0, 7))  # a call of one frame
    log.add(_tracked_result(0, 7))  # the next call, from frame_index 0 again
    log.add(_tracked_result(1, 7))
    (t,) = log.to_list()
    assert (t["first_frame"], t["last_frame"], t["frames"]) == (0, 2, 3)


# -- YuNet: a candidate scoring exactly min_score is kept ---------------------------------------------------------
def test_yunet_decode_keeps_a_cell_scoring_exactly_min_score() -> None:
    from fsrfer_edge.detection import yunet

    out = {f"{k}_{s}": np.zeros(((32 // s) ** 2, n), np.float32)
           for s in yunet.STRIDES for k, n in (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10))}
    out["cls_8"][5] = out["obj_8"][5] = 0.25  # sqrt(0.25 * 0.25): exactly 0.25
    out["cls_8"][6], out["obj_8"][6] = 0.25, 0.24
    boxes, scores, _ = yunet.decode(out, 32, 32, 0.25)
    assert scores.tolist() == [0.25] and len(boxes) == 1


# -- BlazeFace: anchors sit at the centres of their cells; boxes without width or height are dropped -----------------
def test_blazeface_anchors_are_cell_centres() -> None:
    from fsrfer_edge.detection.blazeface import AnchorLayout, anchor_centres

    layout = AnchorLayout(64, (8, 16), (1, 2), 0.5)
    a = anchor_centres(layout, 16, 32)
    assert a[:4].tolist() == [[4.0, 4.0], [12.0, 4.0], [20.0, 4.0], [28.0, 4.0]]  # stride 8, row 0
    assert a[8:12].tolist() == [[8.0, 8.0], [8.0, 8.0], [24.0, 8.0], [24.0, 8.0]]  # stride 16, two per cell


def test_blazeface_decode_drops_boxes_of_no_width_or_no_height() -> None:
    from fsrfer_edge.detection.blazeface import decode

    anchors = np.array([[8.0, 8.0], [24.0, 8.0], [40.0, 8.0]], np.float32)
    reg = np.zeros((3, 16), np.float32)
    reg[0, 2:4], reg[1, 2:4], reg[2, 2:4] = [0, 6], [6, -2], [6, 6]
    boxes, scores, pts = decode(reg, np.array([3.0, 3.0, 3.0]), anchors, 0.5)
    assert boxes.tolist() == [[37.0, 5.0, 43.0, 11.0]] and len(scores) == len(pts) == 1


# -- engine cache: with a device to match, an engine whose sidecar records no GPU model is refused --------------------
def test_check_engine_refuses_an_engine_whose_sidecar_records_no_gpu_model(tmp_path: Path) -> None:
    from fsrfer_edge import engine_cache
    from fsrfer_edge.engine_cache import EngineKey
    from fsrfer_edge.errors import EngineError
    from fsrfer_edge.metadata import ModelInfo

    engines: dict[str, Path] = {}
    for device in ("", "orin-16sm-61g"):
        path = tmp_path / f"m{len(engines)}.engine"
        path.write_bytes(b"plan")
        engine_cache.write_sidecar(path, EngineKey("10.3.0.26", "8.7", "fp16", 1, 8, 32, device=device), "0" * 64,
                                   ModelInfo(precision="fp16"))
        engines[device] = path
    assert engine_cache.check_engine(engines["orin-16sm-61g"], "10.3.0.26", "8.7", device="orin-16sm-61g")
    with pytest.raises(EngineError, match="not recorded"):
        engine_cache.check_engine(engines[""], "10.3.0.26", "8.7", device="orin-16sm-61g")


# -- pyramid detectors: a weak box overlapping a detection by exactly ``iou`` is that detection, not a second face ----
def test_a_weak_box_overlapping_a_detection_by_exactly_iou_is_dropped() -> None:
    from fsrfer_edge.detection.pyramid import PyramidDetector

    class Fixed(PyramidDetector):
        name, n_points = "fixed-pyramid", 1

        def _network(self, batch: np.ndarray) -> list:
            b = np.array([[0, 0, 20, 20], [10, 0, 30, 20], [40, 40, 60, 60]], float)  # IoU of the first two: 1/3
            return [(b, np.array([0.9, 0.2, 0.2]), ((b[:, :2] + b[:, 2:]) / 2)[:, None, :]) for _ in batch]

    det = Fixed(min_score=0.5, min_face=24.0, iou=1 / 3, max_cover=0.7, level_step=4.0, max_input=1536, face_px=24.0,
                size_slack=1.5, size_multiple=32, coarsest=640)
    det.weak_score = 0.1
    found = det.detect(np.zeros((64, 64, 3), np.uint8))
    assert sorted((d.box, d.score) for d in found) == [((0.0, 0.0, 20.0, 20.0), 0.9), ((40.0, 40.0, 60.0, 60.0), 0.2)]


def test_list_engines_marks_an_engine_whose_bytes_changed_as_stale(tmp_path: Path) -> None:
    import os
    import time

    from fsrfer_edge import engine_cache
    from fsrfer_edge.engine_cache import EngineKey
    from fsrfer_edge.metadata import ModelInfo

    paths = [tmp_path / "a.engine", tmp_path / "b.engine"]
    for path in paths:
        path.write_bytes(b"plan")
        engine_cache.write_sidecar(path, EngineKey("10.3.0.26", "8.7", "fp16", 1, 8, 32, device="orin"), "0" * 64,
                                   ModelInfo(precision="fp16"))
    paths[1].write_bytes(b"plan, corrupted")  # after its sidecar recorded its hash
    old = time.time() - 2 * engine_cache.UNFINISHED_GRACE_S  # past the grace period of a build in progress
    for p in paths + [engine_cache.sidecar_path(p) for p in paths]:
        os.utime(p, (old, old))
    stale = {e.path.name: e.stale for e in engine_cache.list_engines(tmp_path)}
    assert stale["a.engine"] is None
    assert "do not match" in (stale["b.engine"] or "")


# -- sidecars: a measured file belongs to a model only with its classes in the same order ------------------------------
def _calibration(classes: tuple[str, ...], checkpoint: str) -> GroupCalibration:
    eye = np.eye(len(classes))[None]
    return GroupCalibration(classes, (1.0,), eye, eye, (5,) * len(classes), checkpoint)


def test_a_measured_file_with_the_models_classes_in_another_order_does_not_belong_to_it() -> None:
    cal = _calibration(("neutral", "happy"), "ab" * 32)
    assert cal.mismatch(("neutral", "happy"), "ab" * 32) is None
    assert "classes" in (cal.mismatch(("happy", "neutral"), "ab" * 32) or "")


def test_a_packaged_file_recording_no_checkpoint_is_not_taken_for_a_model_with_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge import sidecars
    _calibration(CLASSES, "").save(tmp_path / "other.groups.json")
    _calibration(CLASSES, "ab" * 32).save(tmp_path / "mine.groups.json")
    monkeypatch.setattr(sidecars, "PACKAGED", tmp_path)
    found = sidecars.find(None, CLASSES, "ab" * 32, ".groups.json", GroupCalibration.load, "group calibration")
    assert found is not None and found.checkpoint_sha256 == "ab" * 32
    (tmp_path / "mine.groups.json").unlink()
    assert sidecars.find(None, CLASSES, "ab" * 32, ".groups.json", GroupCalibration.load, "group calibration") is None


# -- groups: kind="counts" tallies each face's most probable class ----------------------------------------------------
def test_group_estimate_of_counts_tallies_each_faces_most_probable_class() -> None:
    cal = _calibration(("neutral", "happy"), "")
    probs = np.array([[0.8, 0.2], [0.7, 0.3], [0.1, 0.9]])
    shares = cal.estimate(probs, [1.0, 1.0, 1.0], kind="counts")
    np.testing.assert_allclose(shares, np.array([2 / 3, 1 / 3]), atol=1e-9)


# -- INT8 calibration: a face at factor f is cut to round(side / f) pixels, as preprocessing.degrade does -------------
def test_mix_factors_rounds_the_small_side_to_the_nearest_pixel() -> None:
    from fsrfer_edge.export.calib import mix_factors

    faces = [np.full((20, 20), 100, np.uint8), np.full((20, 20, 3), 100, np.uint8)]
    out = mix_factors(faces, [3])
    assert [f.shape for f in out] == [(7, 7), (7, 7, 3)]  # round(20 / 3) = 7, not 20 // 3 = 6
    assert all(f.dtype == np.uint8 for f in out)


def test_mix_factors_keeps_a_colour_faces_channels_in_order() -> None:
    from fsrfer_edge.export.calib import mix_factors

    face = np.empty((24, 24, 3), np.uint8)
    face[...] = (10, 100, 200)  # R, G, B
    (small,) = mix_factors([face], [2])
    assert small.shape == (12, 12, 3)
    np.testing.assert_array_equal(small[6, 6], [10, 100, 200])


# -- crowd: a crop reaching past the frame's bottom edge is square, its rows beyond the edge repeating the last --------
def test_a_crop_past_the_bottom_edge_only_is_square_and_repeats_the_last_row() -> None:
    from fsrfer_edge.crowd import crop_face

    frame = np.arange(20 * 20 * 3, dtype=np.uint32).reshape(20, 20, 3).astype(np.uint8)
    crop = crop_face(frame, (5, 10, 15, 20), 0.25)  # the square: x 2..17, y 8..23
    assert crop.shape == (15, 15, 3)
    np.testing.assert_array_equal(crop[:12], frame[8:20, 2:17])
    np.testing.assert_array_equal(crop[12:], np.broadcast_to(frame[19, 2:17], (3, 15, 3)))


def test_a_tracked_stream_whose_frames_change_width_only_is_warned_about(rec: Any,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer

    frames = [np.full((30, 40, 3), 90, np.uint8), np.full((30, 56, 3), 90, np.uint8)]
    with caplog.at_level("WARNING", logger="fsrfer_edge.crowd"), \
            CrowdAnalyzer(rec, _Fixed([Detection((5, 5, 25, 25), 0.9)]), groups=None) as crowd:
        list(crowd.analyze_stream(frames, track=True))
    assert any("frame size changed from 30x40 to 30x56" in r.getMessage() for r in caplog.records)


# -- engine cache: a key's batch sizes must keep min <= opt <= max -----------------------------------------------------
@pytest.mark.parametrize("batches", [(1, 64, 32), (4, 2, 8)])
def test_an_engine_key_with_its_opt_batch_outside_min_to_max_is_refused(batches: tuple[int, int, int]) -> None:
    from fsrfer_edge.engine_cache import EngineKey
    from fsrfer_edge.errors import InputError

    EngineKey("10.3.0.26", "8.7", "fp16", 1, 8, 32)
    with pytest.raises(InputError, match="min <= opt <= max"):
        EngineKey("10.3.0.26", "8.7", "fp16", *batches)
