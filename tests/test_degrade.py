"""Low-resolution degradation and HR augmentation (numpy only)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from fsrfer_edge.errors import ConfigError, InputError
from fsrfer_edge.preprocessing import FACTORS, degrade
from trainer.degrade import DegradeConfig, augment_hr, lr_versions, random_erase, random_lr

REPO = Path(__file__).resolve().parents[1]


def faces(n: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48)).astype(np.uint8)


def checkerboard() -> np.ndarray:
    return ((np.indices((48, 48)).sum(0) % 2) * 255).astype(np.uint8)[None]


@pytest.mark.parametrize("factor", FACTORS)
def test_lr_versions_shape_dtype_range(factor):
    lr = lr_versions(faces(), factor)
    assert lr.shape == (16, 48, 48) and lr.dtype == np.float32
    assert lr.min() >= 0.0 and lr.max() <= 255.0


def test_factor_one_is_identity():
    x = faces()
    np.testing.assert_array_equal(lr_versions(x, 1), x.astype(np.float32))


@pytest.mark.parametrize("factor", [2, 3, 4, 6, 8])
def test_lr_has_only_lr_detail(factor):
    x = faces()
    lr = lr_versions(x, factor)
    again = lr_versions(np.clip(np.rint(lr), 0, 255).astype(np.uint8), factor)
    # Degrading an already degraded face changes it far less than the first degradation did.
    assert np.abs(again - lr).mean() < 0.15 * np.abs(lr - x).mean()


def test_checkerboard_is_flat_after_x4():
    cb = checkerboard()
    lr = lr_versions(cb, 4)
    assert cb.std() > 100 and lr.std() < 2.0
    assert abs(lr.mean() - 127.5) < 2.0


@pytest.mark.parametrize("factor", [0, -2, 2.5, "2", True, None, 49])
def test_invalid_factor_raises(factor):
    with pytest.raises(InputError):
        lr_versions(faces(2), factor)


def test_invalid_images_raise():
    with pytest.raises(InputError):
        lr_versions(np.zeros((48, 48), np.uint8), 2)
    with pytest.raises(InputError):
        lr_versions(np.zeros((2, 48, 48), np.int32), 2)
    with pytest.raises(InputError):
        lr_versions([[0]], 2)


def test_random_lr_deterministic_and_matches_lr_versions():
    x = faces(40)
    cfg = DegradeConfig()
    lr, f = random_lr(x, cfg, np.random.default_rng(7))
    lr2, f2 = random_lr(x, cfg, np.random.default_rng(7))
    np.testing.assert_array_equal(lr, lr2)
    np.testing.assert_array_equal(f, f2)
    assert lr.dtype == np.float32 and lr.shape == x.shape and f.dtype == np.int64
    assert set(f.tolist()) <= set(FACTORS) and len(set(f.tolist())) > 2
    for i in range(len(x)):
        np.testing.assert_allclose(lr[i], lr_versions(x[i:i + 1], int(f[i]))[0], atol=1e-4)
    _, f3 = random_lr(x, cfg, np.random.default_rng(8))
    assert not np.array_equal(f, f3)


def test_random_lr_weights_pick_factors():
    cfg = DegradeConfig(factors=(2, 4), weights=(0.0, 1.0))
    _, f = random_lr(faces(10), cfg, np.random.default_rng(0))
    assert set(f.tolist()) == {4}


def test_extras_path_without_effect_equals_degrade():
    # Zero-sigma noise takes the explicit down/noise/up path; it must match preprocessing.degrade.
    x = faces(24)
    lr, f = random_lr(x, DegradeConfig(noise_prob=1.0, noise_sigma=(0.0, 0.0)), np.random.default_rng(3))
    for i in range(len(x)):
        np.testing.assert_allclose(lr[i], degrade(x[i], int(f[i])), atol=1e-3)


@pytest.mark.parametrize(
    "extra",
    [
        {"blur_prob": 1.0, "blur_sigma": (1.0, 2.0)},
        {"noise_prob": 1.0, "noise_sigma": (5.0, 10.0)},
        {"jpeg_prob": 1.0, "jpeg_quality": (10, 20)},
    ],
)
def test_extras_change_output_deterministically(extra):
    x = faces(12)
    base, f0 = random_lr(x, DegradeConfig(factors=(1, 2, 3)), np.random.default_rng(1))
    cfg = DegradeConfig(factors=(1, 2, 3), **extra)
    out, f1 = random_lr(x, cfg, np.random.default_rng(1))
    again, _ = random_lr(x, cfg, np.random.default_rng(1))
    np.testing.assert_array_equal(f0, f1)  # extras do not shift the factor draws
    np.testing.assert_array_equal(out, again)
    assert np.abs(out - base).mean() > 0.5
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 255


def test_clean_x1_leaves_factor_1_faces_untouched_and_degrades_the_rest():
    x = faces(40)
    extras = {"blur_prob": 1.0, "noise_prob": 1.0, "jpeg_prob": 1.0, "kernels": ("box", "bicubic")}
    out, f = random_lr(x, DegradeConfig(factors=(1, 2, 4), clean_x1=True, **extras), np.random.default_rng(2))
    dirty, f_dirty = random_lr(x, DegradeConfig(factors=(1, 2, 4), **extras), np.random.default_rng(2))
    np.testing.assert_array_equal(f, f_dirty)  # the same factor draws
    hr = f == 1
    assert 0 < hr.sum() < len(f)
    np.testing.assert_array_equal(out[hr], x[hr].astype(np.float32))
    assert np.abs(dirty[hr] - x[hr]).mean() > 0.5  # without the option, x1 faces get the extras
    assert np.abs(out[~hr] - lr_versions(x[~hr], 2)).mean() > 0.5
    with pytest.raises(ConfigError, match="clean_x1"):
        DegradeConfig(clean_x1="yes")


def test_degrade_config_validation():
    for bad in (
        {"factors": ()},
        {"factors": (2, 0)},
        {"factors": (2, 4), "weights": (1.0,)},
        {"weights": (0,) * 6},
        {"blur_prob": 1.5},
        {"noise_sigma": (3.0, 1.0)},
        {"jpeg_quality": (0, 50)},
    ):
        with pytest.raises(ConfigError):
            DegradeConfig(**bad)
    with pytest.raises(ConfigError, match="blur_sigmaa"):
        DegradeConfig.from_dict({"blur_sigmaa": [1, 2]})
    cfg = DegradeConfig.from_dict({"factors": [2, 4], "jpeg_prob": 0.5, "jpeg_quality": [40, 80]})
    assert cfg.factors == (2, 4) and cfg.jpeg_quality == (40, 80)
    assert DegradeConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError):
        random_lr(np.zeros((2, 8, 8), np.uint8), DegradeConfig(factors=(16,)), np.random.default_rng(0))


def test_augment_hr_properties():
    x = faces(64)
    a = augment_hr(x, np.random.default_rng(0))
    b = augment_hr(x, np.random.default_rng(0))
    assert a.shape == x.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, augment_hr(x, np.random.default_rng(1)))
    # flip only: each face is itself or its mirror, and both occur.
    f = augment_hr(x, np.random.default_rng(0), pad=0, brightness=0.0, contrast=0.0)
    same = [np.array_equal(f[i], x[i]) for i in range(64)]
    mirrored = [np.array_equal(f[i], x[i, :, ::-1]) for i in range(64)]
    assert all(s or m for s, m in zip(same, mirrored)) and any(same) and any(mirrored)
    # crop only: a shifted copy, so the interior of the original appears in the result.
    c = augment_hr(x, np.random.default_rng(0), flip=False, brightness=0.0, contrast=0.0)
    assert all(any(np.array_equal(c[i, 4:44, 4:44], x[i, 4 + dy:44 + dy, 4 + dx:44 + dx])
                   for dy in range(-4, 5) for dx in range(-4, 5)) for i in range(8))
    fl = augment_hr(x.astype(np.float32), np.random.default_rng(0))
    assert fl.dtype == np.float32 and fl.min() >= 0 and fl.max() <= 255
    with pytest.raises(InputError):
        augment_hr(x, np.random.default_rng(0), pad=48)
    with pytest.raises(InputError):
        augment_hr(x[0], np.random.default_rng(0))


def test_augment_hr_rotate_and_scale():
    x = faces(64)
    plain = augment_hr(x, np.random.default_rng(0))
    # Off by default, and then the random stream is the plain augmentation's: old runs reproduce.
    np.testing.assert_array_equal(plain, augment_hr(x, np.random.default_rng(0), rotate=0.0, scale=0.0))
    geo = dict(flip=False, pad=0, brightness=0.0, contrast=0.0)
    r = augment_hr(x, np.random.default_rng(0), rotate=20.0, scale=0.2, **geo)
    assert r.shape == x.shape and r.dtype == np.uint8
    moved = [not np.array_equal(r[i], x[i]) for i in range(64)]
    assert sum(moved) >= 60
    # A zoom about the centre keeps the centre pixel region; a large rotation moves the corners.
    z = augment_hr(x.astype(np.float32), np.random.default_rng(0), scale=0.1, **geo)
    np.testing.assert_allclose(z[:, 23:25, 23:25], x[:, 23:25, 23:25].astype(np.float32), atol=40)
    # A quarter turn of a float face is exact (pixel centres land on pixel centres).
    from trainer.degrade import _rotate_zoom

    q = _rotate_zoom(x.astype(np.float32), np.full(64, np.pi / 2), np.ones(64))
    np.testing.assert_array_equal(q, np.rot90(x, -1, axes=(1, 2)).astype(np.float32))
    for bad in (dict(rotate=-1.0), dict(rotate=200.0), dict(scale=1.0), dict(scale=-0.1)):
        with pytest.raises(InputError, match="received"):
            augment_hr(x, np.random.default_rng(0), **bad)


def test_random_erase_draws_one_rectangle_per_chosen_face():
    flat = np.full((400, 48, 48), 128, np.uint8)
    e = random_erase(flat, np.random.default_rng(0), prob=0.5)
    assert e.dtype == np.uint8 and e.shape == flat.shape
    np.testing.assert_array_equal(flat, 128)  # the input is not modified
    changed = e != 128
    hit = changed.any(axis=(1, 2))
    assert 0.4 < hit.mean() < 0.6
    for i in np.flatnonzero(hit)[:50]:
        ys, xs = np.nonzero(changed[i])
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        # A rectangle of 2-33% of the face (noise may equal 128 at a few pixels inside it).
        assert 0.015 * 48 * 48 <= h * w <= 0.34 * 48 * 48
        assert changed[i, ys.min():ys.max() + 1, xs.min():xs.max() + 1].mean() > 0.95
    np.testing.assert_array_equal(random_erase(flat, np.random.default_rng(0), prob=0.0), flat)
    assert random_erase(flat.astype(np.float32), np.random.default_rng(0), prob=1.0).dtype == np.float32
    with pytest.raises(InputError, match="probability"):
        random_erase(flat, np.random.default_rng(0), prob=1.5)


def test_augment_hr_erase_comes_last_and_keeps_old_streams():
    x = faces(64)
    plain = augment_hr(x, np.random.default_rng(0), rotate=10.0)
    np.testing.assert_array_equal(plain, augment_hr(x, np.random.default_rng(0), rotate=10.0, erase=0.0))
    erased = augment_hr(x, np.random.default_rng(0), rotate=10.0, erase=1.0)
    # Everything outside the rectangle is the plain augmentation's face.
    differs = (erased != plain).reshape(64, -1).mean(axis=1)
    assert (differs > 0).all() and differs.max() < 0.34
    with pytest.raises(InputError, match="erase"):
        augment_hr(x, np.random.default_rng(0), erase=-0.1)


@pytest.mark.needs("torch", "yaml")
def test_stage1_erase_outside_0_1_is_a_config_error(tmp_path):
    from trainer.config import load

    cfg = (REPO / "configs" / "tiny.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(cfg.replace("stage1:\n", "stage1:\n  erase: 1.5\n", 1))
    with pytest.raises(ConfigError, match="stage1.erase must be a probability"):
        load(str(bad))


@pytest.mark.needs("torch", "yaml")
def test_stage1_rotate_scale_reach_training_augmentation():
    from trainer.config import load
    from trainer.train import _augment

    x = faces(16)
    cfg = load(str(REPO / "configs" / "tiny.yaml"))
    base = _augment(cfg, x, np.random.default_rng(0))
    np.testing.assert_array_equal(base, augment_hr(x, np.random.default_rng(0)))
    rot = dataclasses.replace(cfg, stage1=dataclasses.replace(cfg.stage1, rotate=15.0, scale=0.1))
    assert not np.array_equal(_augment(rot, x, np.random.default_rng(0)), base)
    erase = dataclasses.replace(cfg, stage1=dataclasses.replace(cfg.stage1, erase=1.0))
    np.testing.assert_array_equal(_augment(erase, x, np.random.default_rng(0)),
                                  augment_hr(x, np.random.default_rng(0), erase=1.0))
    off = dataclasses.replace(cfg, stage1=dataclasses.replace(cfg.stage1, augment=False, rotate=15.0))
    assert _augment(off, x, np.random.default_rng(0)) is x


def test_a_factor_beyond_the_face_is_refused():
    faces = np.random.default_rng(0).integers(0, 256, (2, 48, 48)).astype(np.uint8)
    assert degrade(faces, 48).shape == (2, 48, 48)  # a 1-pixel face: the smallest there is
    with pytest.raises(InputError, match="factor 100 on 48x48 faces leaves less than one pixel; expected a factor from 1 to 48"):
        degrade(faces, 100)
