"""FaceTracker's matching sorts only the cells a pair may use (session 65), and coasting drops the coasted boxes a
detection overlaps without the whole IoU matrix (session 66): the same ids, probabilities and coasted boxes as the
previous full-matrix code (kept here as the reference) on random crowds, and ``overlapping_iou`` gives exactly the
nonzero cells of ``box_iou``."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pytest

from fsrfer_edge.detection.base import box_iou, overlapping_iou
from fsrfer_edge.tracking import WEAK_IOU, FaceTracker


class _FullMatrixTracker(FaceTracker):
    """The matching before session 65: every face x track cell sorted, twice (and the weak boxes' cells once); and
    coasting's filter before session 66: the whole coasted x detected IoU matrix."""

    def coasting(self, boxes: Any, looked: bool = True, weak: Any = None) -> np.ndarray:
        b = self._boxes(boxes)
        light = self._weak_mask(weak, len(b))
        if (looked and not self.coast) or not self._tracks:
            return np.zeros((0, 4))
        taken = set(self._match(b, weak=light).values())
        out = np.array([self._expected(tr) for j, tr in enumerate(self._tracks)
                        if j not in taken and self._coasts(tr, looked)], dtype=np.float64).reshape(-1, 4)
        if len(out) and len(b):
            out = out[~(box_iou(out, b) > 0).any(axis=1)]
        return out

    def _match(self, b: np.ndarray, among: Any = None, weak: Optional[np.ndarray] = None) -> dict[int, int]:
        among = list(range(len(self._tracks))) if among is None else list(among)
        if weak is None or not np.any(weak):
            return self._match_strong(b, among)
        strong, light = np.flatnonzero(~weak), np.flatnonzero(weak)
        pairs = {int(strong[i]): j for i, j in self._match_strong(b[strong], among).items()}
        free = [k for k, j in enumerate(among) if k not in pairs.values() and self._weak_continues(self._tracks[j])]
        if len(light) and free:
            iou = box_iou(b[light], np.stack([self._expected(self._tracks[among[k]]) for k in free]))
            used: set[int] = set()
            for i, k in zip(*np.unravel_index(np.argsort(-iou, axis=None, kind="stable"), iou.shape)):
                if iou[i, k] < WEAK_IOU:
                    break
                if int(light[i]) not in pairs and k not in used:
                    pairs[int(light[i])] = free[int(k)]
                    used.add(int(k))
        return pairs

    def _match_strong(self, b: np.ndarray, among: list[int]) -> dict[int, int]:
        pairs: dict[int, int] = {}
        tracks = [self._tracks[j] for j in among]
        if not len(b) or not tracks:
            return pairs
        t = np.stack([self._expected(tr) for tr in tracks])
        iou = box_iou(b, t)
        taken: set[int] = set()
        for i, j in zip(*np.unravel_index(np.argsort(-iou, axis=None, kind="stable"), iou.shape)):
            if iou[i, j] < self.min_iou or not iou[i, j] > 0:
                break
            if i not in pairs and j not in taken:
                pairs[int(i)] = int(j)
                taken.add(int(j))
        if self.max_shift > 0:
            side_b = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
            side_t = np.maximum(t[:, 2] - t[:, 0], t[:, 3] - t[:, 1])
            cb = (b[:, :2] + b[:, 2:]) / 2
            ct = (t[:, :2] + t[:, 2:]) / 2
            dist = (np.linalg.norm(cb[:, None, :] - ct[None, :, :], axis=2)
                    / np.maximum(side_b[:, None], side_t[None, :]))
            ratio = side_b[:, None] / side_t[None, :]
            dist = np.where((ratio >= 0.5) & (ratio <= 2.0), dist, np.inf)
            frames = 1.0 + np.array([tr.since - tr.missed if (not self.motion or tr.hits <= 1) else 0 for tr in tracks])
            allowed = dist <= self.max_shift * frames[None, :]
            for i, j in zip(*np.unravel_index(np.argsort(dist, axis=None, kind="stable"), dist.shape)):
                if dist[i, j] > self.max_shift * frames.max():
                    break
                if allowed[i, j] and i not in pairs and j not in taken:
                    pairs[int(i)] = int(j)
                    taken.add(int(j))
        return pairs


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("motion", [True, False])
def test_sparse_matching_equals_the_full_matrix_with_frames_the_detector_skipped(seed: int, motion: bool) -> None:
    # detect_every=3: the frames skipped widen the distance a track found once (or without motion) may move
    rng = np.random.default_rng(100 + seed)
    new, old = FaceTracker(motion=motion, max_shift=0.6), _FullMatrixTracker(motion=motion, max_shift=0.6)
    base = _crowd(rng, 40, 0.0, grid=seed % 2 == 0)
    step = rng.uniform(-4, 4, size=(len(base), 1))
    for frame in range(15):
        if frame % 3:
            b = new.coasting(np.zeros((0, 4)), looked=False)
            np.testing.assert_array_equal(b, old.coasting(np.zeros((0, 4)), looked=False))
            p = rng.dirichlet(np.ones(7), len(b))
            kw = {"detected": np.zeros(len(b), dtype=bool), "looked": False}
        else:
            keep = rng.random(len(base)) > 0.3
            b = (base + step * frame)[keep] + rng.normal(0, 1.0, (int(keep.sum()), 4))
            b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1.0)
            p = rng.dirichlet(np.ones(7), len(b))
            kw = {}
        ids_new, sm_new = new.update(b, p, **kw)
        ids_old, sm_old = old.update(b, p, **kw)
        np.testing.assert_array_equal(ids_new, ids_old)
        np.testing.assert_array_equal(sm_new, sm_old)


@pytest.mark.parametrize("seed", range(6))
def test_sparse_matching_equals_the_full_matrix_with_weak_detections(seed: int) -> None:
    # weak boxes (under the detector's threshold) near followed faces: continuing() picks those that continue a track,
    # then update() matches them after the others
    rng = np.random.default_rng(200 + seed)
    new, old = FaceTracker(coast_after=1), _FullMatrixTracker(coast_after=1)
    base = _crowd(rng, 40, 0.0, grid=seed % 2 == 0)
    for frame in range(10):
        strong = rng.random(len(base)) > 0.4
        b = base + rng.normal(0, 1.5, base.shape)
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1.0)
        weak = b[~strong]
        kept = new.continuing(b[strong], weak)
        np.testing.assert_array_equal(kept, old.continuing(b[strong], weak))
        boxes = np.vstack([b[strong], weak[kept]])
        mask = np.arange(len(boxes)) >= int(strong.sum())
        p = rng.dirichlet(np.ones(7), len(boxes))
        ids_new, sm_new = new.update(boxes, p, weak=mask)
        ids_old, sm_old = old.update(boxes, p, weak=mask)
        np.testing.assert_array_equal(ids_new, ids_old)
        np.testing.assert_array_equal(sm_new, sm_old)
    assert new.n_tracks == old.n_tracks


def _crowd(rng: np.random.Generator, n: int, jitter: float, grid: bool) -> np.ndarray:
    if grid:  # faces on a lattice, some touching or overlapping their neighbours: many equal distances and overlaps
        xy = rng.integers(0, 12, size=(n, 2)).astype(float) * 16.0
    else:
        xy = rng.uniform(0, 400, size=(n, 2))
    side = rng.choice([8.0, 16.0, 20.0, 40.0], size=(n, 1))
    b = np.concatenate([xy, xy + side], axis=1)
    return b + rng.normal(0, jitter, b.shape)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("options", [
    {},
    {"min_iou": 1e-9, "motion": False},
    {"min_iou": 0.6, "max_shift": 3.0, "coast": 2},
    {"max_shift": 0.0, "confirm": 2},
])
def test_sparse_matching_gives_the_full_matrix_matchings_ids(seed: int, options: dict) -> None:
    rng = np.random.default_rng(seed)
    new, old = FaceTracker(**options), _FullMatrixTracker(**options)
    base = _crowd(rng, 60, 0.0, grid=seed % 2 == 0)
    for frame in range(12):
        keep = rng.random(len(base)) > 0.2  # faces come and go
        b = base[keep] + rng.normal(0, 2.0 + frame % 3, (int(keep.sum()), 4))
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1.0)
        if frame % 4 == 3:  # a frame of faces moved far: only the distance pass (or nothing) can match them
            b = b + rng.uniform(-30, 30, size=(len(b), 1))
        p = rng.dirichlet(np.ones(7), len(b))
        ids_new, sm_new = new.update(b, p)
        ids_old, sm_old = old.update(b, p)
        np.testing.assert_array_equal(ids_new, ids_old)
        np.testing.assert_array_equal(sm_new, sm_old)
    assert new.n_tracks == old.n_tracks


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("motion", [True, False])
def test_coasted_boxes_equal_the_full_matrix_filter(seed: int, motion: bool) -> None:
    # faces missed by the detector for a few frames are coasted, and dropped where a detection overlaps their expected
    # box (some do: the crowd is dense and moving); the coasted faces are then given back with detected False
    rng = np.random.default_rng(300 + seed)
    new, old = FaceTracker(motion=motion, coast=3), _FullMatrixTracker(motion=motion, coast=3)
    base = _crowd(rng, 50, 0.0, grid=seed % 2 == 0)
    step = rng.uniform(-3, 3, size=(len(base), 1))
    coasted = 0
    for frame in range(12):
        keep = rng.random(len(base)) > 0.35
        b = (base + step * frame)[keep] + rng.normal(0, 1.0, (int(keep.sum()), 4))
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1.0)
        c = new.coasting(b)
        np.testing.assert_array_equal(c, old.coasting(b))
        coasted += len(c)
        boxes = np.vstack([b, c])
        detected = np.arange(len(boxes)) < len(b)
        p = rng.dirichlet(np.ones(7), len(boxes))
        ids_new, sm_new = new.update(boxes, p, detected=detected)
        ids_old, sm_old = old.update(boxes, p, detected=detected)
        np.testing.assert_array_equal(ids_new, ids_old)
        np.testing.assert_array_equal(sm_new, sm_old)
    assert coasted > 0  # (and some are dropped: without the filter, coasting gives more boxes than the reference)


@pytest.mark.parametrize("seed", range(8))
def test_overlapping_iou_is_the_nonzero_cells_of_box_iou(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = _crowd(rng, 50, 0.5 * seed, grid=seed % 2 == 0)
    b = _crowd(rng, 40, 0.5 * seed, grid=seed % 2 == 0)
    b[:3] = a[:3]  # identical boxes
    b[3] = [a[4, 2], a[4, 1], a[4, 2] + 10, a[4, 3]]  # touching edge: no overlap
    b[4] = [-1000.0, -1000.0, 1000.0, 1000.0]  # one box over all: the reach to the left is the whole frame
    full = box_iou(a, b)
    rows, cols, iou = overlapping_iou(a, b)
    want_rows, want_cols = np.nonzero(full > 0)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_array_equal(cols, want_cols)
    np.testing.assert_array_equal(iou, full[want_rows, want_cols])


def test_overlapping_iou_of_no_boxes() -> None:
    rows, cols, iou = overlapping_iou(np.zeros((0, 4)), np.array([[0.0, 0.0, 1.0, 1.0]]))
    assert rows.shape == cols.shape == iou.shape == (0,)
    rows, cols, iou = overlapping_iou(np.array([[0.0, 0.0, 1.0, 1.0]]), np.zeros((0, 4)))
    assert rows.shape == cols.shape == iou.shape == (0,)
