"""Behaviour checks that a hand-made mutation test of the trainer's data and degradations found no test for (task
K65a): each test here fails on one small, plausible change to trainer/data.py or trainer/degrade.py that the rest of
the suite let through (a change to what is trained on, silently)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fsrfer_edge.preprocessing import resize
from trainer import data
from trainer.degrade import DegradeConfig, augment_hr, random_erase, random_lr


def _faces(n: int, side: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, side, side)).astype(np.uint8)


def _numbered(n: int, side: int = 4) -> np.ndarray:
    """Faces whose pixels all hold their own index, so a selection can be read back from the images."""
    return np.repeat(np.arange(n, dtype=np.uint8), side * side).reshape(n, side, side)


# -- FaceSet.take: the split shares round by largest remainders, and faces keep their order ------------------------
def test_take_gives_the_rounding_extras_to_the_largest_remainders() -> None:
    # 6 train, 2 val, 2 test; 4 of 10 -> shares 2.4, 0.8, 0.8 -> 2, 1, 1 (not 3, 1, 0: val and test keep a face)
    split = np.array(["train"] * 6 + ["val"] * 2 + ["test"] * 2)
    fs = data.FaceSet(_numbered(10), np.zeros(10, np.int64), split, "unit")
    t = fs.take(4, seed=0)
    assert [int((t.split == s).sum()) for s in data.SPLITS] == [2, 1, 1]


def test_take_keeps_the_faces_in_their_original_order() -> None:
    split = np.array(["train", "val", "test"] * 10)
    fs = data.FaceSet(_numbered(30), np.arange(30) % 7, split, "unit")
    for seed in range(4):
        ids = fs.take(12, seed=seed).images[:, 0, 0].astype(int)
        assert ids.tolist() == sorted(ids.tolist())


# -- batches: each epoch (each draw from the generator) has its own order ------------------------------------------
def test_batches_shuffle_anew_from_the_generator_each_epoch() -> None:
    g = np.random.default_rng(0)
    epoch1 = np.concatenate(list(data.batches(50, 8, g)))
    epoch2 = np.concatenate(list(data.batches(50, 8, g)))
    other = np.concatenate(list(data.batches(50, 8, np.random.default_rng(1))))
    assert sorted(epoch1.tolist()) == sorted(epoch2.tolist()) == list(range(50))
    assert not np.array_equal(epoch1, epoch2)
    assert not np.array_equal(epoch1, other)


# -- load_npz: anger (class 0) is a label like the others; soft labels come from each face's own votes row ----------
def _write_pair(d: Path, plus_orig: np.ndarray, plus_labels: np.ndarray, votes: np.ndarray) -> Path:
    n = len(plus_orig)
    np.savez(d / "fer2013.npz", images=_numbered(n, 48), labels=np.zeros(n, np.int8),
             split=np.array(["train"] * n), orig_row=np.arange(n, dtype=np.int32))
    np.savez(d / "ferplus_labels.npz", orig_row=plus_orig.astype(np.int32), labels=plus_labels.astype(np.int8),
             split=np.array(["train"] * n), votes=votes.astype(np.uint8))
    return d / "fer2013.npz"


def test_load_npz_keeps_anger_faces_and_joins_the_votes_by_orig_row(tmp_path: Path) -> None:
    # FER+ rows are in another order than the faces: row k of ferplus_labels.npz is orig_row plus_orig[k].
    plus_orig = np.array([2, 0, 1])
    votes = np.zeros((3, 10))
    votes[0, 4] = 8  # orig_row 2: anger (vote column 4 -> class 0)
    votes[1, 1], votes[1, 0] = 6, 2  # orig_row 0: happiness 6, neutral 2
    votes[2, 2], votes[2, 3] = 5, 3  # orig_row 1: surprise 5, sadness 3
    plus_labels = np.array([0, 3, 5])
    fs = data.load_npz(_write_pair(tmp_path, plus_orig, plus_labels, votes))
    assert len(fs) == 3
    np.testing.assert_array_equal(fs.images[:, 0, 0], [0, 1, 2])  # the faces, in their own order
    np.testing.assert_array_equal(fs.labels, [3, 5, 0])
    assert fs.targets is not None
    np.testing.assert_allclose(fs.targets[0], np.eye(7)[3] * 0.75 + np.eye(7)[6] * 0.25)
    np.testing.assert_allclose(fs.targets[1], np.eye(7)[5] * 0.625 + np.eye(7)[4] * 0.375)
    np.testing.assert_allclose(fs.targets[2], np.eye(7)[0])


def test_vote_distribution_keeps_the_anger_column() -> None:
    votes = np.zeros((1, 10))
    votes[0, 4], votes[0, 0] = 3, 1  # anger 3, neutral 1
    np.testing.assert_allclose(data.vote_distribution(votes)[0], np.eye(7)[0] * 0.75 + np.eye(7)[6] * 0.25)


# -- random_lr ------------------------------------------------------------------------------------------------------
def test_random_lr_small_side_is_rounded_on_the_extras_path() -> None:
    # 20 px at x3: the small face is round(20 / 3) = 7 px, as preprocessing.degrade makes it, on every path.
    x = _faces(6, side=20)
    cfg = DegradeConfig(factors=(3,), noise_prob=1.0, noise_sigma=(0.0, 0.0))
    out, _ = random_lr(x, cfg, np.random.default_rng(0))
    want = resize(resize(x.astype(np.float32), (7, 7)), (20, 20))
    np.testing.assert_allclose(out, np.clip(want, 0, 255), atol=1e-3)


def test_random_lr_resizes_back_with_bicubic_whatever_the_down_kernel() -> None:
    x = _faces(4)
    out, _ = random_lr(x, DegradeConfig(factors=(4,), kernels=("box",)), np.random.default_rng(0))
    want = resize(resize(x.astype(np.float32), (12, 12), "box"), (48, 48), "bicubic")
    np.testing.assert_allclose(out, np.clip(want, 0, 255), atol=1e-3)


def test_random_lr_jpeg_quality_range_includes_its_top() -> None:
    x = np.repeat(_faces(1), 40, axis=0)
    cfg: dict[str, Any] = dict(factors=(2,), jpeg_prob=1.0)
    both, f = random_lr(x, DegradeConfig(jpeg_quality=(20, 21), **cfg), np.random.default_rng(0))
    low, _ = random_lr(x[:1], DegradeConfig(jpeg_quality=(20, 20), **cfg), np.random.default_rng(0))
    high, _ = random_lr(x[:1], DegradeConfig(jpeg_quality=(21, 21), **cfg), np.random.default_rng(0))
    assert not np.array_equal(low[0], high[0])
    is_low = [np.array_equal(o, low[0]) for o in both]
    is_high = [np.array_equal(o, high[0]) for o in both]
    assert all(a or b for a, b in zip(is_low, is_high)) and any(is_low) and any(is_high)


def test_random_lr_noise_is_drawn_per_face() -> None:
    x = np.full((8, 48, 48), 128, np.uint8)
    out, _ = random_lr(x, DegradeConfig(factors=(1,), noise_prob=1.0, noise_sigma=(5.0, 5.0)),
                       np.random.default_rng(0))
    assert np.abs(out - 128).mean() > 2
    assert all(not np.array_equal(out[0], out[i]) for i in range(1, 8))


def test_random_lr_blur_sigma_is_drawn_from_its_range() -> None:
    # A one-value range gives every face the same blur: identical faces stay identical.
    x = np.repeat(_faces(1), 6, axis=0)
    out, _ = random_lr(x, DegradeConfig(factors=(1,), blur_prob=1.0, blur_sigma=(1.5, 1.5)), np.random.default_rng(0))
    assert np.abs(out[0] - x[0]).mean() > 5
    for i in range(1, 6):
        np.testing.assert_allclose(out[i], out[0], atol=1e-4)


def test_random_lr_blurs_before_down_sampling() -> None:
    # At a factor above 1 the blurred face, not the sharp one, is down-sampled.
    x = _faces(8)
    sharp = DegradeConfig(factors=(2,), noise_prob=1.0, noise_sigma=(0.0, 0.0))  # the extras path, no change
    plain, _ = random_lr(x, sharp, np.random.default_rng(0))
    blur = DegradeConfig(factors=(2,), blur_prob=1.0, blur_sigma=(1.5, 1.5))
    blurred, _ = random_lr(x, blur, np.random.default_rng(0))
    assert np.abs(blurred - plain).mean(axis=(1, 2)).min() > 2


# -- augment_hr -----------------------------------------------------------------------------------------------------
_GEO: dict[str, Any] = dict(flip=False, pad=0, brightness=0.0, contrast=0.0)


def _bar() -> np.ndarray:
    x = np.zeros((48, 48), np.float32)
    x[22:26, 6:42] = 255.0  # a horizontal bar through the centre
    return x


def test_augment_hr_rotates_both_ways() -> None:
    x = np.repeat(_bar()[None], 64, axis=0)
    r = augment_hr(x, np.random.default_rng(0), rotate=30.0, **_GEO)
    yy, xx = np.mgrid[0:48, 0:48]
    slopes = []
    for img in r:
        w = img / img.sum()
        mx, my = (w * xx).sum(), (w * yy).sum()
        slopes.append(float((w * (xx - mx) * (yy - my)).sum()))
    assert sum(s > 1 for s in slopes) >= 10 and sum(s < -1 for s in slopes) >= 10


def test_augment_hr_zooms_in_and_out() -> None:
    x = np.zeros((64, 48, 48), np.float32)
    x[:, 16:32, 16:32] = 255.0
    z = augment_hr(x, np.random.default_rng(0), scale=0.3, **_GEO)
    area = (z > 127).sum(axis=(1, 2))
    assert (area < 16 * 16 - 20).sum() >= 10 and (area > 16 * 16 + 20).sum() >= 10


def test_augment_hr_contrast_is_about_each_faces_own_mean() -> None:
    # Flat faces have no contrast to scale: they stay as they are, whatever the other faces of the batch.
    x = np.stack([np.full((48, 48), 50, np.uint8), np.full((48, 48), 200, np.uint8)])
    out = augment_hr(x, np.random.default_rng(0), flip=False, pad=0, brightness=0.0, contrast=0.5)
    np.testing.assert_array_equal(out, x)


def test_augment_hr_crop_offsets_cover_both_ends() -> None:
    rows = np.repeat((np.arange(48, dtype=np.uint8) * 5)[:, None], 48, axis=1)
    x = np.repeat(rows[None], 200, axis=0)
    out = augment_hr(x, np.random.default_rng(0), flip=False, pad=2, brightness=0.0, contrast=0.0)
    shift = out[:, 24, 0].astype(int) // 5 - 24
    assert set(shift.tolist()) == {-2, -1, 0, 1, 2}


# -- random_erase ---------------------------------------------------------------------------------------------------
def test_random_erase_never_erases_the_whole_face() -> None:
    # As torchvision draws it: a rectangle must be smaller than the face; a draw that is not leaves the face.
    flat = np.full((20, 16, 16), 128, np.uint8)
    out = random_erase(flat, np.random.default_rng(0), prob=1.0, area=(1.0, 1.0), aspect=(1.0, 1.0))
    np.testing.assert_array_equal(out, flat)


def test_random_erase_aspect_is_log_uniform() -> None:
    # aspect (1/4, 4): log-uniform makes as many tall rectangles as wide ones (uniform would make 80% tall).
    flat = np.full((400, 48, 48), 128, np.uint8)
    e = random_erase(flat, np.random.default_rng(0), prob=1.0, area=(0.05, 0.05), aspect=(0.25, 4.0))
    tall = wide = 0
    for img in e:
        ys, xs = np.nonzero(img != 128)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        tall += h > w
        wide += w > h
    assert 0.35 < tall / 400 < 0.65 and 0.35 < wide / 400 < 0.65
