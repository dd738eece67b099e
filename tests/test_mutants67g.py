"""Behaviour checks that a hand-made mutation test of preprocessing found no test for (task K67g, round 67): the
JPEG quality reading (jpeg_quality, jpeg_frame_quality, any_jpeg_image), the undoing of an app's enlargement
(undo_pixel_repetition, undo_linear_enlarging and their batch checks), the contrast floor, and the corrections
reaching to_pixels.
Each test here fails on one small, plausible change to that code which the rest of the suite let through."""
from __future__ import annotations

import io

import numpy as np
import pytest

from fsrfer_edge.preprocessing import (DEFAULT_PREPROCESSING, JPEG_MIN_COEFFS, JPEG_QUALITIES, _dct8, _jpeg_tables,
                                       any_jpeg_image, any_low_contrast, any_pixel_repetition, jpeg_frame_quality,
                                       jpeg_quality, raise_contrast, resize, undo_linear_enlarging,
                                       undo_pixel_repetition)

from _faces import blob_face  # tests/ is on sys.path

PIL = pytest.importorskip("PIL")


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


# -- jpeg_quality: a block with a pixel at 0 or 255 is left out (the decoder clipped it off the grid) ----------------
@pytest.mark.parametrize("quality", [30, 50, 75])
def test_blocks_that_touch_0_or_255_are_left_out_of_the_jpeg_test(quality: int) -> None:
    face = blob_face(24, 0).copy()
    face[:8, :8], face[8:16, :8] = 255, 0          # a white and a black block: their DC lies off most grids
    crop = _jpeg(face, quality)
    assert (crop[:8, :8] == 255).all() and (crop[8:16, :8] == 0).all()
    assert jpeg_quality(crop) == quality


# -- undo_pixel_repetition ----------------------------------------------------------------------------------------
def test_a_repeated_crop_whose_edges_cut_a_run_short_is_still_reduced() -> None:
    src = np.random.default_rng(0).integers(0, 256, (10, 10)).astype(np.uint8)
    big = np.repeat(np.repeat(src, 4, axis=0), 4, axis=1)[2:, 1:]   # the first row run 2 long, the first column's 3
    np.testing.assert_array_equal(undo_pixel_repetition(big), src)


def test_a_batch_with_a_crop_repeated_along_one_axis_only_is_left_to_the_full_path() -> None:
    g = np.random.default_rng(2)
    rows = np.repeat(g.integers(0, 256, (24, 48)), 2, axis=0).astype(np.float32)  # 48x48, rows in pairs
    batch = np.stack([g.integers(0, 256, (48, 48)).astype(np.float32), rows])[:, None]
    assert any_pixel_repetition(batch)
    assert undo_pixel_repetition(rows).shape == (24, 48)


# -- the contrast floor --------------------------------------------------------------------------------------------
def test_a_face_of_exactly_flat_face_std_is_raised() -> None:
    face = np.full((1, 1, 4, 4), 99.0, np.float32)
    face[..., ::2, :] = 101.0                                          # standard deviation exactly 1.0
    assert any_low_contrast(face)
    np.testing.assert_allclose(raise_contrast(face.copy(), 25.0).std(), 25.0, rtol=1e-5)


def test_a_floor_of_0_finds_no_low_contrast_face() -> None:
    face = np.full((1, 1, 4, 4), 99.0, np.float32)
    face[..., ::2, :] = 105.0
    assert any_low_contrast(face) and not any_low_contrast(face, 0.0)
    np.testing.assert_array_equal(raise_contrast(face.copy(), 0.0), face)


# -- undo_linear_enlarging -----------------------------------------------------------------------------------------
def _bilinear(small: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.clip(np.rint(resize(small, (h, w), "bilinear", antialias=False)), 0, 255).astype(np.float32)


def test_the_bilinear_source_of_a_black_and_white_crop_stays_within_0_255() -> None:
    small = (np.random.default_rng(6).integers(0, 2, (12, 12)) * 255).astype(np.float32)
    out = undo_linear_enlarging(_bilinear(small, 48, 48))    # its least-squares source overshoots by a little
    assert out.shape == (12, 12) and out.min() >= 0.0 and out.max() <= 255.0
    np.testing.assert_allclose(out, small, atol=1.0)


def test_a_crop_wider_than_the_linear_sides_is_left_as_it_is() -> None:
    wide = _bilinear(np.random.default_rng(7).integers(0, 256, (12, 30)).astype(np.float32), 48, 130)
    assert undo_linear_enlarging(wide) is wide


def test_noise_on_the_precheck_rows_within_twice_the_residual_does_not_stop_a_reduction() -> None:
    g = np.random.default_rng(5)
    small = g.integers(0, 256, (12, 12)).astype(np.float32)
    crop = _bilinear(small, 48, 48)
    for row in (14, 24, 33):                                   # the rows the pre-check reads (0.3, 0.5, 0.7 of 48)
        crop[row] += 0.8 * np.sign(g.standard_normal(48))      # about 0.7 RMS there, the whole crop well under 0.5
    assert undo_linear_enlarging(crop).shape == (12, 12)


# -- jpeg_quality: JPEG_MIN_COEFFS coefficients are enough ---------------------------------------------------------
def test_a_block_offering_exactly_jpeg_min_coeffs_coefficients_on_the_grid_is_read() -> None:
    steps, d = _jpeg_tables()[JPEG_QUALITIES.index(50)], _dct8()
    coeffs = np.zeros((8, 8))
    coeffs[0, 0] = 3 * steps[0, 0]                 # 48: off the DC grids of the coarser qualities
    where = [(0, 1), (1, 0), (1, 1), (0, 2)]
    assert len(where) == JPEG_MIN_COEFFS
    for (i, j), sign in zip(where, [1, -1, 1, -1]):
        coeffs[i, j] = sign * steps[i, j]          # one step each, the others 0
    block = np.rint(d.T @ coeffs @ d + 128).astype(np.uint8)   # decoded and rounded as a codec would
    assert jpeg_quality(block) == 50


# -- to_pixels: each correction reaches it as given ---------------------------------------------------------------
def test_to_pixels_raises_a_face_to_the_corrections_own_floor() -> None:
    face = np.clip(np.rint(np.random.default_rng(8).normal(120, 15, (48, 48))), 0, 255).astype(np.uint8)
    pre = DEFAULT_PREPROCESSING
    assert pre.to_pixels(face, corrections={"contrast_floor": 10.0}).std() == pytest.approx(face.std(), rel=1e-3)
    assert pre.to_pixels(face, corrections={"contrast_floor": 20.0}).std() == pytest.approx(20.0, rel=1e-4)
    assert pre.to_pixels(face).std() == pytest.approx(25.0, rel=1e-4)


# -- jpeg_frame_quality: a centre window that can tell at some quality is the answer -------------------------------
def test_a_clean_frame_whose_flat_centre_has_a_faintly_textured_block_is_read_in_its_centre_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge import preprocessing

    g = np.random.default_rng(0)
    frame = np.concatenate([np.concatenate([blob_face(48, r * 16 + c) for c in range(16)], axis=1)
                            for r in range(12)], axis=0)                  # 576 x 768, clean
    frame[160:416, 256:512] = 128                                         # a flat wall where the centre window falls
    texture = g.normal(0, 6, (8, 8))
    frame[288:296, 384:392] = np.rint(128 + texture - texture.mean())     # one faint block: fewer than
    calls: list[tuple[int, ...]] = []             # JPEG_MIN_COEFFS to test at the coarse tables, enough at the fine
    real = preprocessing._window_quality

    def counted(window: np.ndarray) -> "tuple[int | None, bool]":
        calls.append(window.shape)
        return real(window)

    monkeypatch.setattr(preprocessing, "_window_quality", counted)
    assert jpeg_frame_quality(frame) is None and len(calls) == 1     # the centre could tell: a clean frame


@pytest.mark.parametrize("shape", [(300, 200), (200, 300), (301, 333)])
def test_a_large_frames_centre_window_starts_on_the_grid_along_both_axes(shape: tuple[int, int]) -> None:
    mosaic = np.concatenate([np.concatenate([blob_face(48, r * 7 + c) for c in range(7)], axis=1)
                             for r in range(7)], axis=0)                   # 336 x 336
    frame = _jpeg(np.ascontiguousarray(mosaic[:shape[0], :shape[1]]), 50)   # a side over 256 px, half its
    # excess over the window not a multiple of 8: the window's start is rounded down onto the grid
    assert jpeg_frame_quality(frame) == 50


@pytest.mark.parametrize("quality", [30, 50, 75])
def test_a_colour_frame_whose_red_clips_in_a_third_of_its_pixels_is_read_on_its_other_blocks(quality: int) -> None:
    gray = np.concatenate([np.concatenate([blob_face(48, r * 4 + c) for c in range(4)], axis=1)
                           for r in range(4)], axis=0).astype(np.float64)   # 192 x 192
    frame = _jpeg(np.clip(np.stack([gray * 2.0, gray * 0.9, gray * 0.7 + 10], axis=-1), 0, 255).astype(np.uint8),
                  quality)
    assert (frame[..., 0] == 255).mean() > 0.3           # the luma of those blocks is not at 0 or 255, but off its grid
    assert jpeg_frame_quality(frame) == quality


# -- any_jpeg_image: the batch check agrees with jpeg_quality down to one 8x8 block ---------------------------------
def test_a_batch_of_8_px_crops_is_checked_like_each_crop() -> None:
    crop = _jpeg(blob_face(8, 1), 50)
    assert jpeg_quality(crop) == 50
    assert any_jpeg_image(crop[None, None].astype(np.float32))
    assert not any_jpeg_image(blob_face(8, 1)[None, None].astype(np.float32))


@pytest.mark.parametrize("centre", [255, 0])
def test_a_frame_whose_centre_window_is_blown_out_is_read_in_its_quarters(centre: int) -> None:
    """A defect this round found: a centre window with no unclipped block (a lamp or a window blown out to 255, or
    crushed to 0) ended the search with None, while a merely flat centre goes on to the quarters' windows; a clipped
    centre tells even less than a flat one, so the quarters are read."""
    Image = pytest.importorskip("PIL.Image")
    tile = np.concatenate([np.concatenate([blob_face(48, r * 8 + c) for c in range(8)], 1) for r in range(8)], 0)
    frame = np.tile(tile, (3, 3))[:1024, :1024].copy()
    frame[384:640, 384:640] = centre  # the whole centre window, 256 px on the grid
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=50)
    assert jpeg_frame_quality(np.asarray(Image.open(io.BytesIO(buf.getvalue())))) == 50
