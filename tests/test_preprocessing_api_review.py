"""Review of preprocessing's public functions on odd inputs: each is refused with an InputError saying what was
received and what was expected, instead of a numpy error or a silent wrong answer; valid inputs keep their output."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

from fsrfer_edge import preprocessing as P
from fsrfer_edge.errors import InputError


def _low_contrast_batch() -> np.ndarray:
    x = np.full((1, 1, 8, 8), 100.0, dtype=np.float32)
    x[0, 0, ::2] += 10.0  # std 5: below the default floor, above FLAT_FACE_STD
    return x


@pytest.mark.parametrize("floor", [float("nan"), float("inf"), -5.0, True, "25", 200.0])
def test_raise_contrast_refuses_a_floor_that_is_not_grey_levels(floor: Any) -> None:
    x = _low_contrast_batch()
    before = x.copy()
    with pytest.raises(InputError, match="floor"):
        P.raise_contrast(x, floor)
    assert np.array_equal(x, before)  # nothing was changed in place
    with pytest.raises(InputError, match="floor"):
        P.any_low_contrast(_low_contrast_batch(), floor)


def test_raise_contrast_valid_floors_unchanged() -> None:
    x = P.raise_contrast(_low_contrast_batch(), None)
    assert float(x.std()) == pytest.approx(P.CONTRAST_FLOOR, rel=1e-4)
    assert np.array_equal(P.raise_contrast(_low_contrast_batch(), 0), _low_contrast_batch())
    assert P.any_low_contrast(_low_contrast_batch(), np.float32(10.0))


def test_undo_pixel_repetition_refuses_a_channels_last_crop() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (10, 10, 3)).astype(np.uint8)
    blocky = np.repeat(np.repeat(rgb, 3, axis=0), 3, axis=1)  # HxWx3, as faces are given to the SDK
    with pytest.raises(InputError, match=r"\(30, 30, 3\).*channels"):
        P.undo_pixel_repetition(blocky)
    with pytest.raises(InputError, match=r"\(30, 30, 3\).*channels"):
        P.undo_linear_enlarging(blocky)
    # The (C, H, W) layout it documents still works.
    assert P.undo_pixel_repetition(np.moveaxis(blocky, -1, 0)).shape == (3, 10, 10)


def test_padded_resize_matrix_refuses_a_pad_shorter_than_the_axis() -> None:
    with pytest.raises(InputError, match="n_pad=5.*n_in=10"):
        P.padded_resize_matrix(10, 5, 3)
    with pytest.raises(InputError, match="length-0"):
        P.padded_resize_matrix(0, 3, 3)


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (5,), ()])
def test_resize_functions_refuse_an_image_without_two_non_empty_axes(shape: tuple[int, ...]) -> None:
    img = np.zeros(shape, dtype=np.float32)
    calls: list[Callable[[], np.ndarray]] = [lambda: P.resize_square(img, 5), lambda: P.resize(img, (5, 5)),
                                             lambda: P.degrade(img, 2), lambda: P.shrink(img, 2)]
    for call in calls:
        with pytest.raises(InputError, match=r"shape|length-0"):
            call()


@pytest.mark.parametrize("fn", ["resize", "resize_square", "soften"])
def test_resize_and_soften_take_masked_arrays_as_the_sdk_does(fn: str) -> None:
    img = np.random.default_rng(1).integers(0, 256, (12, 12)).astype(np.float32)
    calls: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "resize": lambda a: P.resize(a, (5, 5)), "resize_square": lambda a: P.resize_square(a, 5),
        "soften": lambda a: P.soften(a, 1.0)}
    call = calls[fn]
    out = call(np.ma.array(img, mask=np.zeros(img.shape, bool)))
    assert type(out) is np.ndarray and np.array_equal(out, call(img))
    with pytest.raises(InputError, match="masked"):
        call(np.ma.array(img, mask=img > 200))


@pytest.mark.parametrize("size", [(5.5, 5), (5.0, 5), (True, 5), (5, 5, 5), 5, (float("nan"), 5), ("5", 5)])
def test_resize_refuses_a_size_that_is_not_two_integers(size: Any) -> None:
    with pytest.raises(InputError, match="size"):
        P.resize(np.zeros((6, 6), np.float32), size)


@pytest.mark.parametrize("size", [5.5, True, (5, 5), "5"])
def test_resize_square_refuses_a_size_that_is_not_an_integer(size: Any) -> None:
    with pytest.raises(InputError, match="size"):
        P.resize_square(np.zeros((6, 6), np.float32), size)


@pytest.mark.parametrize("kw", [{"antialias": "no"}, {"antialias": None}, {"antialias": [True]},
                                {"kernel": ["bicubic"]}])
def test_resize_refuses_options_of_the_wrong_type(kw: dict[str, Any]) -> None:
    with pytest.raises(InputError, match="antialias|kernel"):
        P.resize(np.zeros((6, 6), np.float32), (3, 3), **kw)


def test_resize_valid_sizes_unchanged() -> None:
    img = np.random.default_rng(2).integers(0, 256, (2, 9, 7)).astype(np.uint8)
    my, mx = P.resize_matrix(9, 4), P.resize_matrix(7, 5)
    expected = (my @ img.astype(np.float32) @ mx.T).astype(np.float32)
    assert np.array_equal(P.resize(img, (4, 5)), expected)
    assert np.array_equal(P.resize(img, (np.int64(4), np.int32(5))), expected)
    assert np.array_equal(P.resize(img, [4, 5], antialias=np.True_), expected)  # type: ignore[arg-type]
    assert P.resize_square(img, np.int64(6)).shape == (2, 6, 6)


@pytest.mark.parametrize("factor", [True, False])
def test_shrink_and_degrade_refuse_a_bool_factor(factor: bool) -> None:
    img = np.zeros((8, 8), np.uint8)
    with pytest.raises(InputError, match="factor"):
        P.shrink(img, factor)
    with pytest.raises(InputError, match="factor"):
        P.degrade(img, factor)
