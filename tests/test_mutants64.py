"""Behaviour checks that a hand-made mutation test of the core runtime found no test for (task K64): each test here
fails on one small, plausible change to the library code that the rest of the suite let through."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from fsrfer_edge.errors import InputError
from fsrfer_edge.preprocessing import check_pixels, degrade, resize, shrink


def _face(side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side)).astype(np.uint8)


# -- preprocessing: the low-resolution side is round(S / factor), not S // factor ------------------------------------
@pytest.mark.parametrize("side, factor, small", [(20, 3, 7), (50, 3, 17), (47, 2, 24)])
def test_shrink_rounds_the_small_side_to_the_nearest_pixel(side: int, factor: int, small: int) -> None:
    assert shrink(_face(side), factor).shape == (small, small)


@pytest.mark.parametrize("side, factor, small", [(20, 3, 7), (50, 3, 17)])
def test_degrade_goes_through_the_rounded_small_side(side: int, factor: int, small: int) -> None:
    face = _face(side, 1).astype(np.float32)
    expected = resize(resize(face, (small, small), "bicubic", antialias=True), (side, side), "bicubic", antialias=True)
    np.testing.assert_allclose(degrade(face, factor), expected, atol=1e-4)
    floor = resize(resize(face, (side // factor,) * 2, "bicubic", antialias=True), (side, side), "bicubic",
                   antialias=True)
    assert np.abs(degrade(face, factor) - floor).max() > 1.0  # the check above can tell the two apart


# -- preprocessing: "looks scaled to [0, 1]" needs a smallest value above SCALED_TO_1_MIN (-1), not at it -------------
def test_a_float_face_reaching_minus_one_is_refused_as_below_0_not_as_scaled() -> None:
    face = np.full((8, 8), 0.5, np.float32)
    face[0, 0], face[0, 1] = -1.0, 1.0
    with pytest.raises(InputError, match="below 0") as err:
        check_pixels(face, "face")
    assert "scaled to [0, 1]" not in str(err.value)
    face[0, 0] = -0.999  # just above: resampling overshoot of a [0, 1] face
    with pytest.raises(InputError, match=r"scaled to \[0, 1\]"):
        check_pixels(face, "face")


# -- preprocessing: a raised face is clipped to the full [0, 255] range ------------------------------------------------
def test_a_raised_bright_face_is_stretched_about_its_mean_and_clipped_to_255_exactly() -> None:
    from fsrfer_edge.preprocessing import raise_contrast

    rng = np.random.default_rng(2)
    face = np.clip(235.0 + 8.0 * rng.standard_normal((1, 1, 12, 12)), 200, 255).astype(np.float32)
    m, s = float(face.mean()), float(face.std())
    assert 1.0 <= s < 25.0  # low contrast, not flat: it is raised
    out = raise_contrast(face.copy(), 25.0)
    want = m + (face - m) * (25.0 / s)
    assert (want > 255).any() and out.max() == 255.0  # bright pixels end at white, not a level below it
    inside = (want >= 0) & (want <= 255)
    np.testing.assert_allclose(out[inside], want[inside], rtol=1e-5, atol=1e-3)


# -- confidence: the size estimate reads whole grey levels (a float face and its rounded one get one estimate) ---------
def test_size_features_read_the_pixels_rounded_to_whole_grey_levels() -> None:
    from fsrfer_edge.confidence import size_features

    g = np.random.default_rng(3).integers(0, 256, (3, 16, 16)).astype(np.float64)
    np.testing.assert_array_equal(size_features(g + 0.3), size_features(g))
    np.testing.assert_array_equal(size_features(g - 0.3), size_features(g))
    # (N, C, S, S): the channels' mean is rounded too, e.g. levels 10, 11, 11 read as 11
    rgb = np.stack([g, g + 1, g + 1], axis=1)
    np.testing.assert_array_equal(size_features(rgb), size_features(g + 1))


# -- recognizer: predict's chunks --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rec4() -> Iterator[Any]:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer

    with Recognizer(threads=1, spinning=False, max_batch=4) as r:
        assert r.score_calibration is not None and r.score_calibration.size_weights is not None
        yield r


def test_a_chunk_is_a_whole_number_of_max_batch_so_the_model_runs_full_batches(
        rec4: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import fsrfer_edge.recognizer as recognizer

    calls: list[int] = []
    c = len(rec4.classes)

    def infer(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape[0])
        return np.zeros((batch.shape[0], c), np.float32)

    monkeypatch.setattr(rec4.backend, "infer", infer)
    monkeypatch.setattr(recognizer, "PREDICT_CHUNK", 9, raising=False)  # not a multiple of max_batch: rounds up to 12
    faces = np.random.default_rng(4).integers(0, 256, (37, 48, 48)).astype(np.uint8)
    assert len(rec4.predict(faces)) == 37
    assert calls == [4] * 9 + [1]  # as one prepared batch runs; not 4, 4, 1 per chunk of 9


def test_the_last_short_chunk_keeps_its_own_size_estimates(rec4: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import fsrfer_edge.recognizer as recognizer

    # input-size crops enlarged from small faces (their size is read from the pixels), 6 of them in chunks of 4
    faces = np.stack([np.clip(np.rint(degrade(_face(48, i).astype(np.float32), 4 if i % 2 else 1)), 0, 255)
                      .astype(np.uint8) for i in range(6)])
    monkeypatch.setattr(recognizer, "PREDICT_CHUNK", 1024, raising=False)
    whole = rec4.predict(faces, jpeg=False)
    monkeypatch.setattr(recognizer, "PREDICT_CHUNK", 4, raising=False)
    chunked = rec4.predict(faces, jpeg=False)
    assert len({round(p.factor, 3) for p in whole[4:]}) == 2  # the two last faces read at different sizes
    assert [(p.factor, p.confidence) for p in chunked] == [(p.factor, p.confidence) for p in whole]


# -- tracking: "at this IoU or more", "within a factor of two" are inclusive -------------------------------------------
_P = np.full((1, 7), 1 / 7)


def test_a_face_overlapping_its_track_by_exactly_min_iou_continues_it() -> None:
    from fsrfer_edge.tracking import FaceTracker

    t = FaceTracker(min_iou=0.5, max_shift=0.0)  # IoU only
    first, _ = t.update(np.array([[0.0, 0.0, 10.0, 10.0]]), _P)
    same, _ = t.update(np.array([[0.0, 0.0, 10.0, 5.0]]), _P)  # IoU 50 / 100 = 0.5 exactly
    assert same[0] == first[0]
    t2 = FaceTracker(min_iou=0.5, max_shift=0.0)
    first, _ = t2.update(np.array([[0.0, 0.0, 10.0, 10.0]]), _P)
    other, _ = t2.update(np.array([[0.0, 0.0, 10.0, 4.0]]), _P)  # IoU 0.4: a new track
    assert other[0] != first[0]


def test_a_face_twice_or_half_its_tracks_size_nearby_continues_it() -> None:
    from fsrfer_edge.tracking import FaceTracker

    for second in ([0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 5.0, 5.0]):  # side ratio 2 and 1/2, IoU 0.25 < min_iou 0.3
        t = FaceTracker(motion=False)
        first, _ = t.update(np.array([[0.0, 0.0, 10.0, 10.0]]), _P)
        same, _ = t.update(np.array([second]), _P)
        assert same[0] == first[0], second
    t = FaceTracker(motion=False)
    first, _ = t.update(np.array([[0.0, 0.0, 10.0, 10.0]]), _P)
    other, _ = t.update(np.array([[0.0, 0.0, 21.0, 21.0]]), _P)  # a little over twice: another face
    assert other[0] != first[0]


# -- metadata: the limits on class names are the largest accepted, not the first refused -------------------------------
def _info_with_classes(classes: list[str]) -> Any:
    import json

    from fsrfer_edge.metadata import ModelInfo

    d = ModelInfo().to_dict()
    d["preprocessing"]["classes"] = classes
    return ModelInfo.from_json(json.dumps(d), "m.onnx")


def test_exactly_max_classes_are_accepted() -> None:
    from fsrfer_edge import metadata

    names = [f"c{i}" for i in range(metadata.MAX_CLASSES)]
    assert len(_info_with_classes(names).classes) == metadata.MAX_CLASSES


def test_a_class_name_of_exactly_max_class_name_chars_is_accepted() -> None:
    from fsrfer_edge import metadata
    from fsrfer_edge.errors import ModelError
    from fsrfer_edge.metadata import ModelInfo

    classes = list(ModelInfo().classes)
    classes[0] = "x" * metadata.MAX_CLASS_NAME_CHARS
    assert _info_with_classes(classes).classes[0] == classes[0]
    classes[0] += "x"
    with pytest.raises(ModelError, match=str(metadata.MAX_CLASS_NAME_CHARS)):
        _info_with_classes(classes)


# -- cpus: a parent cgroup's smaller quota binds a child with a larger one ---------------------------------------------
def test_a_parents_smaller_quota_wins_over_the_childs_larger_one(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    import os

    from fsrfer_edge import cpus

    proc, root = tmp_path / "proc", tmp_path / "cg"
    proc.mkdir()
    (proc / "cgroup").write_text("0::/kubepods/pod1/c1\n")
    for rel, text in {"kubepods/pod1/cpu.max": "150000 100000", "kubepods/pod1/c1/cpu.max": "400000 100000"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(cpus, "PROC_SELF", str(proc))
    monkeypatch.setattr(cpus, "CGROUP_ROOT", str(root))
    assert cpus.cpu_quota() == 1.5
    assert cpus.usable_cpus() == 2


# -- preprocessing: the box kernel counts a source pixel on the boundary of two boxes once (as PIL's box filter) -------
def test_box_down_sampling_gives_each_source_pixel_to_one_output_pixel() -> None:
    from fsrfer_edge.preprocessing import resize_matrix

    m = resize_matrix(5, 2, "box")  # boxes of 2.5 pixels: pixel 2 lies on the boundary, in the first
    np.testing.assert_allclose(m, [[1 / 3, 1 / 3, 1 / 3, 0, 0], [0, 0, 0, 1 / 2, 1 / 2]], atol=1e-7)
    np.testing.assert_allclose(resize(np.array([[0, 0, 90, 0, 0]] * 5, np.float32), (2, 2), "box")[:, 1], 0.0)


# -- preprocessing: soften is a Gaussian truncated at 3 sigma ---------------------------------------------------------
def test_soften_spreads_an_impulse_as_a_gaussian_out_to_three_sigma() -> None:
    from fsrfer_edge.preprocessing import soften

    img = np.zeros((21, 21), np.float32)
    img[10, 10] = 255.0
    out = soften(img, 1.0)
    g = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    g /= g.sum()
    np.testing.assert_allclose(out[10, 7:14], 255.0 * g[3] * g, rtol=1e-4, atol=1e-6)
    assert out[10, 14] == 0.0 and out[10, 6] == 0.0
    assert abs(float(out.sum()) - 255.0) < 1e-3


# -- preprocessing: pixel repetition is undone only where the runs are what nearest-neighbour enlarging makes ----------
def _rows_in_runs(lengths: list[int], width: int = 20) -> np.ndarray:
    rng = np.random.default_rng(5)
    return np.concatenate([np.repeat(rng.integers(0, 256, (1, width)), n, axis=0) for n in lengths]).astype(np.uint8)


def test_a_run_no_nearest_neighbour_enlarging_makes_leaves_the_crop_as_it_is() -> None:
    from fsrfer_edge.preprocessing import undo_pixel_repetition

    enlarged = [2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2]  # runs of 2 and 3: a 2.4x-like enlargement
    assert undo_pixel_repetition(_rows_in_runs(enlarged)).shape == (len(enlarged), 20)
    odd = [2, 3, 2, 3, 2, 6, 2, 3, 2, 3, 2, 3, 2, 3]  # a run of 6 is 1.08 lines off 2 runs of ~2.46: not that
    crop = _rows_in_runs(odd)
    np.testing.assert_array_equal(undo_pixel_repetition(crop), crop)


# -- tracking: a track ends after more than max_missed frames unseen, not after max_missed -----------------------------
def test_a_track_unseen_for_exactly_max_missed_frames_is_continued() -> None:
    from fsrfer_edge.tracking import FaceTracker

    box, none, no_p = np.array([[0.0, 0.0, 10.0, 10.0]]), np.zeros((0, 4)), np.zeros((0, 7))
    for max_missed, continued in ((2, True), (1, False)):
        t = FaceTracker(max_missed=max_missed, coast=0)
        first, _ = t.update(box, _P)
        for _ in range(2):  # two frames without it
            t.update(none, no_p)
        again, _ = t.update(box, _P)
        assert bool(again[0] == first[0]) is continued, max_missed
