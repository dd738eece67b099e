"""Review 62 of the public preprocessing/frames API on odd inputs: arrays of no numeric dtype, lists and 1-D
logits, sizes and blurs too large to build, and a folder given as an output image are refused with an InputError
that says what was received and what was expected; valid inputs keep their output bit for bit."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from fsrfer_edge import preprocessing as P
from fsrfer_edge.detection import frames
from fsrfer_edge.errors import InputError

PRE = P.Preprocessing()

# -- 1. arrays of no numeric dtype ----------------------------------------------------------------------------


def _of_dtype(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    if np.dtype(dtype).kind in "US":
        return np.full(shape, "7", dtype=dtype)
    if np.dtype(dtype).kind == "O":
        return np.full(shape, 7, dtype=object)
    return np.ones(shape, dtype=dtype)


_NOT_NUMERIC = ["U3", "S3", object, bool, np.complex128, np.complex64]
_CALLS: dict[str, Callable[[np.ndarray], Any]] = {
    "normalize": PRE.normalize,
    "resize_square": lambda a: P.resize_square(a, 8),
    "resize": lambda a: P.resize(a, (8, 8)),
    "undo_pixel_repetition": P.undo_pixel_repetition,
    "undo_linear_enlarging": P.undo_linear_enlarging,
    "soften": lambda a: P.soften(a, 1.0),
    "shrink": lambda a: P.shrink(a, 2),
    "degrade": lambda a: P.degrade(a, 2),
}


@pytest.mark.parametrize("dtype", _NOT_NUMERIC, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(_CALLS))
def test_non_numeric_dtypes_are_refused_by_name(name: str, dtype: Any) -> None:
    a = _of_dtype((24, 24), dtype)
    with pytest.raises(InputError, match="dtype") as info:
        _CALLS[name](a)
    message = str(info.value)
    assert np.dtype(dtype).name in message or str(np.dtype(dtype)) in message  # what was received
    assert "uint8" in message and "float" in message  # what was expected


def test_normalize_refuses_a_list_of_bools_too() -> None:
    with pytest.raises(InputError, match="bool"):
        PRE.normalize([[True, False]])  # type: ignore[arg-type]


def test_normalize_of_a_list_keeps_its_output() -> None:
    out = PRE.normalize([[0, 255], [51, 102]])  # type: ignore[arg-type]
    assert out.dtype == np.float32
    assert np.array_equal(out, PRE.normalize(np.array([[0, 255], [51, 102]], dtype=np.float32)))


def _face(shape: tuple[int, ...]) -> np.ndarray:
    """Pixel values 0..255 of no simple pattern (exact in every numeric dtype tested, float16 included)."""
    return ((np.arange(int(np.prod(shape))) * 37 + 11) % 256).reshape(shape)


_NUMERIC = [np.uint8, np.int32, np.int64, np.uint16, np.float16, np.float32, np.float64]


@pytest.mark.parametrize("dtype", _NUMERIC, ids=lambda d: np.dtype(d).name)
def test_numeric_dtypes_keep_their_outputs_bit_for_bit(dtype: Any) -> None:
    face = _face((20, 17)).astype(dtype)
    ref = _face((20, 17)).astype(np.float32)
    # normalize: the arithmetic it has always done, spelled out here
    expected = np.array(face, dtype=np.float32)
    expected /= 255.0
    expected -= float(PRE.mean)
    expected /= float(PRE.std)
    assert np.array_equal(PRE.normalize(face), expected)
    # resize_square / resize: the same matrix products, written out
    my = P.padded_resize_matrix(20, 20, 8, "bicubic")
    mx = P.padded_resize_matrix(17, 20, 8, "bicubic")
    with P._blas_flags_ignored():
        square = (my @ ref @ mx.T).astype(np.float32)
    assert np.array_equal(P.resize_square(face, 8), square)
    assert np.array_equal(P.resize(face, (5, 9)), P.resize(ref, (5, 9)))
    assert np.array_equal(P.soften(face, 1.0), P.soften(ref, 1.0))
    # undo_pixel_repetition: a crop enlarged 3x by repeating pixels comes back as its source, in its own dtype
    small = _face((6, 5)).astype(dtype)
    blocky = np.repeat(np.repeat(small, 3, axis=0), 3, axis=1)
    back = P.undo_pixel_repetition(blocky)
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, small)
    # undo_linear_enlarging: a crop enlarged bilinearly from 8x8 is reduced alike whatever its dtype
    src = _face((8, 8)).astype(np.float64)
    enlarged = np.rint(P.resize(src, (24, 24), "bilinear", antialias=False)).astype(dtype)
    out = P.undo_linear_enlarging(enlarged)
    assert out.shape == (8, 8)
    assert np.array_equal(out, P.undo_linear_enlarging(enlarged.astype(np.float32)))


def test_prepare_unchanged_for_uint8_faces() -> None:
    faces = [_face((20, 17)).astype(np.uint8), _face((48, 48)).astype(np.uint8)]
    pixels = PRE.to_pixels(faces)
    expected = np.array(pixels, dtype=np.float32)
    expected /= 255.0
    expected -= 0.5
    expected /= 0.25
    assert np.array_equal(PRE.prepare(faces), expected)


# -- 2. check_pixels given a list, softmax given one row -------------------------------------------------------


def test_check_pixels_refuses_a_list_with_a_clear_error() -> None:
    with pytest.raises(InputError, match="is a list; expected a numpy array") as info:
        P.check_pixels([[1, 2], [3, 4]])  # type: ignore[arg-type]
    assert "np.asarray" in str(info.value)  # what to do
    with pytest.raises(InputError, match="list"):
        P.to_uint8_pixels([[1, 2], [3, 4]])  # type: ignore[arg-type]


def test_softmax_refuses_one_row_and_says_how_to_pass_it() -> None:
    with pytest.raises(InputError, match=r"shape \(3,\); expected \(N, C\)") as info:
        P.softmax(np.array([1.0, 2.0, 3.0]))
    assert "logits[None, :]" in str(info.value)
    row = P.softmax(np.array([1.0, 2.0, 3.0])[None, :])
    assert row.shape == (1, 3) and float(row.sum()) == pytest.approx(1.0)


# -- 3. sizes and blurs too large to build ------------------------------------------------------------------------

_HUGE = 10 ** 12  # fails at once where it is not checked (terabytes), so the test never starts a long allocation


@pytest.mark.parametrize("call", [
    lambda: P.resize_matrix(_HUGE, 48),
    lambda: P.resize_matrix(48, _HUGE),
    lambda: P.resize_matrix(P.MAX_IMAGE_SIDE + 1, 48),
    lambda: P.padded_resize_matrix(4, _HUGE, 48),
    lambda: P.padded_resize_matrix(4, 8, _HUGE),
    lambda: P.resize_square(np.zeros((4, 4), np.uint8), _HUGE),
    lambda: P.resize(np.zeros((4, 4), np.uint8), (_HUGE, 4)),
], ids=["resize_matrix n_in", "resize_matrix n_out", "resize_matrix limit+1", "padded n_pad", "padded n_out",
        "resize_square", "resize"])
def test_sizes_beyond_the_largest_image_are_refused(call: Callable[[], Any]) -> None:
    with pytest.raises(InputError, match=str(P.MAX_IMAGE_SIDE)):
        call()


def test_sizes_at_the_limit_are_accepted() -> None:
    m = P.resize_matrix(P.MAX_IMAGE_SIDE, 1, "box")
    assert m.shape == (1, P.MAX_IMAGE_SIDE)
    assert P.padded_resize_matrix(3, P.MAX_IMAGE_SIDE, 1, "box").shape == (1, 3)


@pytest.mark.parametrize("sigma", [1e12, 25.0])
def test_soften_refuses_a_blur_wider_than_the_image(sigma: float) -> None:
    with pytest.raises(InputError, match="sigma") as info:
        P.soften(np.zeros((24, 20), np.float32), sigma)
    assert "24" in str(info.value)  # the bound, the image's longer side


def test_soften_at_the_bound_is_accepted() -> None:
    img = _face((24, 20)).astype(np.float32)
    out = P.soften(img, 24.0)
    assert out.shape == img.shape and np.all(np.isfinite(out))


# -- 4. write_image given a folder ---------------------------------------------------------------------------------


def test_write_image_to_a_folder_suggests_an_image_name(tmp_path: Path) -> None:
    frame = np.zeros((4, 4, 3), np.uint8)
    calls: list[Callable[[], Path]] = [lambda: frames.write_image(tmp_path, frame),
                                       lambda: frames.check_image_name(tmp_path)]
    for call in calls:
        with pytest.raises(InputError, match="is a directory") as info:
            call()
        message = str(info.value)
        assert str(tmp_path / "out.png") in message and ".json" not in message
    assert list(tmp_path.iterdir()) == []
    named = tmp_path / "shots.png"  # a folder with an image suffix
    named.mkdir()
    with pytest.raises(InputError, match="out.png") as info:
        frames.write_image(named, frame)
    assert ".json" not in str(info.value)
    assert frames.write_image(tmp_path / "out.png", frame).is_file()  # a file name is still written
