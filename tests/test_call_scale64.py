"""The memory and time of one call do not grow beyond its inputs and outputs with the call's size.

``Recognizer.predict`` on thousands of crops prepares and runs them a chunk at a time (``PREDICT_CHUNK`` faces,
rounded up to a whole number of ``max_batch``), with the same results as one prepared batch, and still refuses a bad
crop by its index before the model runs.
"""
from __future__ import annotations

import time
import tracemalloc
from typing import Any, Callable, Iterator, Optional

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import fsrfer_edge.recognizer as recognizer
from fsrfer_edge import InputError, Prediction, Recognizer
from fsrfer_edge.preprocessing import resize_matrix

from _faces import blob_face  # tests/ is on sys.path


@pytest.fixture(scope="module")
def rec4() -> Iterator[Recognizer]:
    """The shipped model (with its score calibration: JPEG maps and size estimate) on batches of at most 4."""
    with Recognizer(threads=1, spinning=False, max_batch=4) as r:
        assert r.score_calibration is not None and r.score_calibration.size_weights is not None
        yield r


def _cheap_infer(rec: Recognizer, calls: Optional[list[int]] = None) -> Callable[[np.ndarray], np.ndarray]:
    """Logits read from the batch itself (no model run): deterministic, cheap, one row per face."""
    c = len(rec.classes)

    def infer(batch: np.ndarray) -> np.ndarray:
        if calls is not None:
            calls.append(batch.shape[0])
        flat = batch.reshape(batch.shape[0], -1)
        return np.ascontiguousarray(flat[:, :c * 50:50], dtype=np.float32) / 64.0

    return infer


def _jpeg_like(img: np.ndarray) -> np.ndarray:
    """A gray crop as a quality-50 JPEG codec leaves it (each whole 8x8 block's DCT quantised)."""
    q = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                  14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                  49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float64).reshape(8, 8)
    k = np.arange(8)
    d = np.sqrt(2 / 8) * np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16)
    d[0] /= np.sqrt(2)
    out = img.astype(np.float64)
    for y in range(0, img.shape[0] - img.shape[0] % 8, 8):
        for x in range(0, img.shape[1] - img.shape[1] % 8, 8):
            c = d @ (out[y:y + 8, x:x + 8] - 128.0) @ d.T
            out[y:y + 8, x:x + 8] = d.T @ (np.rint(c / q) * q) @ d + 128.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _mixed(n: int) -> list[np.ndarray]:
    """``n`` crops of many kinds: sizes 6 to 96 px in runs that change at every face, gray and RGB, uint8 and
    float, at the input size (the fast path) and ones the corrections change (enlarged, JPEG, low contrast)."""
    rng = np.random.default_rng(7)
    out: list[np.ndarray] = []
    for i in range(n):
        kind, s = i % 9, int(rng.choice([6, 12, 17, 24, 33, 48, 64, 96]))
        face = blob_face(s, i)
        if kind == 1:
            face = np.repeat(np.repeat(blob_face(12, i), 4, axis=0), 4, axis=1)      # enlarged 4x, to 48
        elif kind == 2:
            m = resize_matrix(12, 48, "bilinear", False)
            noisy = np.clip(blob_face(12, i) + rng.normal(0, 25, (12, 12)), 0, 255)
            face = np.clip(np.rint(m @ noisy @ m.T), 0, 255).astype(np.uint8)       # enlarged bilinearly
        elif kind == 3:
            face = _jpeg_like(blob_face(24 if i % 2 else 48, i))
        elif kind == 4:
            f = face.astype(np.float64)
            face = np.clip(np.rint(f.mean() + (f - f.mean()) * 0.2), 0, 255).astype(np.uint8)  # dim
        elif kind == 5:
            face = np.clip(face[..., None] * np.array([0.9, 1.0, 1.1]), 0, 255).astype(np.uint8)  # RGB
        elif kind == 6:
            face = face.astype(np.float32)
        elif kind == 7:
            face = blob_face(48, i)                                                    # input size, as is
        out.append(face)
    return out


def _one_batch(rec: Recognizer, faces: Any, jpeg: Any = None) -> list[Prediction]:
    """What ``predict`` did before chunking: every face prepared into one batch, then run."""
    cal = rec.score_calibration
    sides: list[int] = []
    marks: Optional[list[bool]] = [] if jpeg is None and cal is not None else None
    sizes: Optional[list[float]] = [] if cal is not None and cal.size_weights is not None else None
    batch = rec._prepare(faces, sides, marks, sizes)
    if jpeg is not None:
        marks = [bool(jpeg)] * len(batch) if isinstance(jpeg, bool) else list(jpeg)
    return rec._to_predictions(rec.predict_logits(batch), sides, marks, sizes)


def _identical(got: list[Prediction], want: list[Prediction]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert (g.label, g.index, g.score) == (w.label, w.index, w.score), i
        assert np.array_equal(g.probs, w.probs), i
        assert (g.confidence, g.factor, g.jpeg) == (w.confidence, w.factor, w.jpeg), i


def _peak(call: Callable[[], Any]) -> tuple[int, Any]:
    """The bytes ``call`` allocated at its peak (numpy's arrays included), and its result."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = call()
        return tracemalloc.get_traced_memory()[1] - base, result
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("stack", [False, True], ids=["mixed_list", "input_size_stack"])
def test_predict_memory_does_not_grow_with_the_call(calibrated_rec: Recognizer, monkeypatch: pytest.MonkeyPatch,
                                                    stack: bool) -> None:
    # Before: every face went into one float32 batch first (18 to 27 kB a face at 48 px: 75 MB for 4096, 9 GB
    # for 1 M faces). Now a chunk at a time: 8x the faces takes about the memory of the few predictions more.
    rec = calibrated_rec
    monkeypatch.setattr(rec.backend, "infer", _cheap_infer(rec))
    monkeypatch.setattr(recognizer, "PREDICT_CHUNK", 256, raising=False)
    rng = np.random.default_rng(0)

    def faces(n: int) -> Any:
        if stack:
            return rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
        return [rng.integers(0, 256, (s, s), dtype=np.uint8) for s in rng.integers(12, 49, n)]

    small, large = faces(512), faces(4096)
    peak_small, out_small = _peak(lambda: rec.predict(small))
    peak_large, out_large = _peak(lambda: rec.predict(large))
    assert len(out_small) == 512 and len(out_large) == 4096
    assert out_small[0].confidence is not None
    assert peak_large < 2.5 * peak_small, (peak_small, peak_large)
    # and under one float32 batch of all the faces (4096 x 48 x 48 x 4 bytes = 37.7 MB; before: 75 to 113 MB)
    assert peak_large < 4096 * 48 * 48 * 4 * 0.75, peak_large


@pytest.mark.parametrize("chunk", [8, 9, 1024])
def test_chunked_predict_equals_one_batch(rec4: Recognizer, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    # 37 faces: chunks of 8 (9 rounds up to 12: 3 batches of 4), the last one short, boundaries inside runs of
    # different sizes and kinds; every field lines up with its own crop, bit for bit.
    monkeypatch.setattr(recognizer, "PREDICT_CHUNK", chunk, raising=False)
    faces = _mixed(37)
    _identical(rec4.predict(faces), _one_batch(rec4, faces))
    flags = [i % 3 == 0 for i in range(37)]
    _identical(rec4.predict(faces, jpeg=flags), _one_batch(rec4, faces, flags))
    _identical(rec4.predict(faces, jpeg=True), _one_batch(rec4, faces, True))
    got = rec4.predict(faces)
    assert any(p.jpeg for p in got) and not all(p.jpeg for p in got)
    assert len({p.factor for p in got}) > 5


@pytest.mark.parametrize("chunk", [8, 1024])
def test_chunked_predict_of_a_stack_equals_one_batch(rec4: Recognizer, monkeypatch: pytest.MonkeyPatch,
                                                     chunk: int) -> None:
    # An input-size stack in which one chunk holds a crop enlarged by repeating pixels (that chunk takes the full
    # preprocessing, the others the fast path; one batch took the full one for all).
    monkeypatch.setattr(recognizer, "PREDICT_CHUNK", chunk, raising=False)
    faces = np.stack([blob_face(48, i) for i in range(21)])
    faces[13] = np.repeat(np.repeat(blob_face(16, 99), 3, axis=0), 3, axis=1)
    faces[5] = _jpeg_like(blob_face(48, 5))
    _identical(rec4.predict(faces), _one_batch(rec4, faces))
    _identical(rec4.predict(list(faces)), _one_batch(rec4, faces))


@pytest.mark.parametrize("stack", [False, True], ids=["list", "stack"])
def test_a_bad_face_late_in_a_call_is_named_before_the_model_runs(rec4: Recognizer, monkeypatch: pytest.MonkeyPatch,
                                                                  stack: bool) -> None:
    calls: list[int] = []
    monkeypatch.setattr(rec4.backend, "infer", _cheap_infer(rec4, calls))
    monkeypatch.setattr(recognizer, "PREDICT_CHUNK", 8, raising=False)
    faces: Any = np.stack([blob_face(24, i).astype(np.float32) for i in range(100)])
    faces[70, 3, 4] = np.nan
    if not stack:
        faces = list(faces)
    with pytest.raises(InputError, match=r"face 70 contains NaN"):
        rec4.predict(faces)
    assert calls == []
    faces[70] = blob_face(24, 70)
    with pytest.raises(InputError, match=r"jpeg: 99 flags for 100 faces"):
        rec4.predict(faces, jpeg=[False] * 99)
    assert calls == []
    assert len(rec4.predict(faces)) == 100 and calls == [4] * 25


# -- tracking, groups and confidence on many faces in one call ------------------------------------------------


def _grid(n: int, shift: float = 0.0) -> np.ndarray:
    k = int(np.ceil(np.sqrt(n)))
    i = np.arange(n)
    x, y = (i % k) * 30.0 + shift, (i // k) * 30.0
    return np.stack([x, y, x + 20, y + 20], 1)


def test_a_frame_of_many_coasted_faces_is_matched_in_one_pass() -> None:
    # Before: each coasted box scanned the tracks and every earlier box's track: a frame of 1000 coasted faces took
    # 1.8 s, growing with the cube of the faces (800: 0.9 s, against 8 ms for a frame of 800 new faces). Now the
    # tracks are looked up by their expected box: about the time of a frame of new faces.
    from fsrfer_edge.tracking import FaceTracker

    n = 800
    probs = np.random.default_rng(0).dirichlet(np.ones(8), n)
    new_faces = took = np.inf
    for _ in range(3):  # the best of three rounds each: one stall of a loaded machine does not decide
        tracker = FaceTracker(coast=3, coast_after=1)
        t = time.perf_counter()
        first, _ = tracker.update(_grid(n), probs)
        new_faces = min(new_faces, time.perf_counter() - t)
        coasted = tracker.coasting(np.zeros((0, 4)))
        assert len(coasted) == n
        t = time.perf_counter()
        ids, smoothed = tracker.update(coasted, probs, detected=np.zeros(n, bool))
        took = min(took, time.perf_counter() - t)
        assert np.array_equal(ids, first)                       # each face stays its own track
        np.testing.assert_allclose(smoothed, probs.astype(np.float32), atol=1e-6)
    assert took < 10 * new_faces + 0.05, (took, new_faces)


def test_two_tracks_expected_at_one_box_still_take_the_coasted_boxes_in_track_order() -> None:
    from fsrfer_edge.tracking import FaceTracker

    tracker = FaceTracker(coast=3, coast_after=1, min_iou=0.3, motion=False)
    box = np.array([[0.0, 0.0, 20.0, 20.0], [4.0, 0.0, 24.0, 20.0]])
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    ids, _ = tracker.update(box, probs)
    tracker.update(np.array([[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 20.0, 20.0]]), probs)  # the faces meet
    coasted = tracker.coasting(np.zeros((0, 4)))
    assert len(coasted) == 2 and np.array_equal(coasted[0], coasted[1])
    got, _ = tracker.update(coasted, probs, detected=np.zeros(2, bool))
    assert got.tolist() == ids.tolist()
    with pytest.raises(InputError, match="box 2 is marked not detected"):
        tracker.update(np.concatenate([coasted, coasted[:1]]), np.concatenate([probs, probs[:1]]),
                       detected=np.zeros(3, bool))


def test_a_large_groups_interval_draws_its_resamples_a_block_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: all R x N draws and counts at once (3.2 kB a face for R = 200: 320 MB for 100 000 faces). Now a block
    # of them at a time, with the same draws: the same interval.
    import fsrfer_edge.groups as groups

    path = groups.PACKAGED / "default.groups.json"
    if not path.is_file():
        pytest.skip(f"the packaged group calibration {path} is not installed")
    cal = groups.GroupCalibration.load(path)
    assert cal.resampled is not None
    rng = np.random.default_rng(0)
    n = 40000
    probs, factors = rng.dirichlet(np.ones(len(cal.classes)), n), rng.uniform(1, 4, n)
    peak, (lo, hi) = _peak(lambda: cal.interval(probs, factors))
    assert peak < 0.5 * len(cal.resampled) * n * 8, peak  # under the counts of every resample at once
    monkeypatch.setattr(groups, "_RESAMPLE_BLOCK", 1 << 40, raising=False)  # one block: as before
    lo1, hi1 = cal.interval(probs[:12000], factors[:12000])
    monkeypatch.undo()
    lo2, hi2 = cal.interval(probs[:12000], factors[:12000])
    # the same draws; the products of a block and of all rows at once may differ in the last bit where BLAS picks
    # another kernel for another size (numpy 1.22's OpenBLAS, scripts/min_versions.sh)
    np.testing.assert_allclose(lo1, lo2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(hi1, hi2, rtol=0, atol=1e-12)
    assert np.all(lo <= hi)


def test_a_bad_factor_in_a_large_batch_is_the_one_named() -> None:
    """params_at named the first 8 factors of the batch (all fine) and built a list of all of them to do so."""
    from fsrfer_edge.confidence import ScoreCalibration
    from fsrfer_edge.sidecars import PACKAGED

    path = PACKAGED / "default.scores.json"
    if not path.is_file():
        pytest.skip(f"the packaged score calibration {path} is not installed")
    factors = np.full(1000, 2.0)
    factors[700] = -1.0
    with pytest.raises(InputError, match=r"factors \[-1\.0\] \(1 of 1000\)"):
        ScoreCalibration.load(path).params_at(factors)
