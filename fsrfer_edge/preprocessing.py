"""Expression classes and preprocessing: the single source of truth.

The trainer, the exporter (which writes these values into the ONNX metadata) and the runtime
(which reads them back) all use this module. It needs numpy only.

Resizing is done with separable resampling matrices (PIL-style anti-aliased kernels), so the same
arithmetic serves the trainer's degradation and the SDK's face resizing without OpenCV or PIL.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np

from .errors import InputError

#: Class order used everywhere (FER2013 order).
CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: Down-sample factors the project evaluates; 1 means the high-resolution face.
FACTORS: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
#: ITU-R BT.601 luma weights (as PIL and OpenCV use for RGB -> gray).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

FaceInput = Union[np.ndarray, Sequence[np.ndarray]]


# --------------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------------
def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    out = np.where(x <= 1, ((a + 2) * x - (a + 3)) * x * x + 1, 0.0)
    return np.where((x > 1) & (x < 2), (((x - 5) * x + 8) * x - 4) * a, out)


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - np.abs(x), 0.0, None)


def _box(x: np.ndarray) -> np.ndarray:
    return ((x > -0.5) & (x <= 0.5)).astype(np.float64)


_KERNELS = {"bicubic": (_cubic, 2.0), "bilinear": (_triangle, 1.0), "box": (_box, 0.5)}


def _check_lengths(**lengths: Any) -> None:
    """Axis lengths and sizes given to the resizing functions are integers (not bool: True would be a size of 1) of
    at most :data:`MAX_IMAGE_SIDE`, the longest side the SDK accepts (longer ones would ask for resampling matrices
    of gigabytes to terabytes, a MemoryError)."""
    for name, n in lengths.items():
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            raise InputError(f"resize: {name}={n!r}; expected an integer number of pixels >= 1")
        if n > MAX_IMAGE_SIDE:
            raise InputError(f"resize: {name}={n}; expected at most {MAX_IMAGE_SIDE} pixels (MAX_IMAGE_SIDE, the "
                             "longest side the SDK accepts)")


def _check_numeric(dtype: np.dtype, what: str) -> None:
    """Pixels are numbers of an integer or float dtype (uint8 faces, int64 from ``np.array`` of Python ints,
    float16/32/64). bool, complex, str, bytes and object arrays are refused: cast to float they would be read
    silently (True as 1, the imaginary part dropped) or fail inside numpy."""
    if dtype.kind in "iuf":
        return
    hint = {"b": "Scale a mask with img.astype(np.uint8) * 255",
            "c": "Take the real part or the magnitude first (img.real, np.abs(img))"}.get(
        dtype.kind, "Convert them to numbers first, e.g. img.astype(np.uint8)")
    raise InputError(f"{what}: received an array of dtype {_dtype_words(dtype)}; expected pixel values of a numeric "
                     f"dtype (uint8, another integer type, or float). {hint}")


def _check_kernel(kernel: Any) -> None:
    """Before the cached matrices: an unhashable kernel would be a TypeError of the cache."""
    if not isinstance(kernel, str) or kernel not in _KERNELS:
        raise InputError(f"unknown resize kernel {kernel!r}; expected one of {sorted(_KERNELS)}")


def _check_image(img: Any, what: str) -> np.ndarray:
    """``img`` as a plain ndarray (:func:`unmasked`) with two last axes of at least one pixel each."""
    img = unmasked(img, f"{what}: the image")
    if not isinstance(img, np.ndarray):
        raise InputError(f"{what}: received a {type(img).__name__}; expected a numpy array (..., H, W)")
    if np.ndim(img) < 2 or 0 in np.shape(img)[-2:]:
        raise InputError(f"{what}: received an array of shape {np.shape(img)}; expected (..., H, W) with H and W "
                         ">= 1")
    if max(img.shape[-2:]) > MAX_IMAGE_SIDE:
        raise InputError(f"{what}: received an array of shape {img.shape}; expected H and W of at most "
                         f"{MAX_IMAGE_SIDE} pixels (MAX_IMAGE_SIDE, the longest side the SDK accepts)")
    _check_numeric(img.dtype, what)
    return img


@functools.lru_cache(maxsize=256)
def resize_matrix(n_in: int, n_out: int, kernel: str = "bicubic", antialias: bool = True) -> np.ndarray:
    """Return the (n_out, n_in) matrix that resamples a 1-D signal of length n_in to n_out.

    With ``antialias`` the kernel is widened by the down-sampling scale (as PIL does), so
    down-sampling averages over the source pixels instead of aliasing.

    Raises:
        InputError: ``n_in`` or ``n_out`` is not an integer from 1 to :data:`MAX_IMAGE_SIDE`, ``kernel`` is not a
            known kernel or ``antialias`` not a bool.
    """
    _check_lengths(n_in=n_in, n_out=n_out)
    if n_in < 1 or n_out < 1:
        raise InputError(f"cannot resize a length-{n_in} axis to length {n_out}; both must be >= 1")
    if not isinstance(kernel, str) or kernel not in _KERNELS:
        raise InputError(f"unknown resize kernel {kernel!r}; expected one of {sorted(_KERNELS)}")
    if not isinstance(antialias, (bool, np.bool_)):
        raise InputError(f"resize: antialias={antialias!r}; expected True or False")
    fn, support = _KERNELS[kernel]
    scale = n_in / n_out
    stretch = max(scale, 1.0) if antialias else 1.0
    centres = (np.arange(n_out) + 0.5) * scale - 0.5
    src = np.arange(n_in)
    w = fn((src[None, :] - centres[:, None]) / stretch)
    # Taps outside [0, n_in) are folded onto the edge pixel (replicate padding).
    lo = math.floor(centres.min() - support * stretch) - 1
    hi = math.ceil(centres.max() + support * stretch) + 1
    if lo < 0 or hi >= n_in:
        taps = np.arange(lo, hi + 1)
        wt = fn((taps[None, :] - centres[:, None]) / stretch)
        w = np.zeros((n_out, n_in))
        np.add.at(w.T, np.clip(taps, 0, n_in - 1), wt.T)
    w = (w / w.sum(axis=1, keepdims=True)).astype(np.float32)
    w.setflags(write=False)  # cached and shared between callers
    return w


@functools.lru_cache(maxsize=256)
def padded_resize_matrix(n_in: int, n_pad: int, n_out: int, kernel: str = "bicubic") -> np.ndarray:
    """The (n_out, n_in) anti-aliased matrix that resamples an axis of length n_in, first centred in n_pad by
    repeating its edge pixels, to n_out; the padded axis is never built."""
    _check_lengths(n_in=n_in, n_pad=n_pad, n_out=n_out)
    if n_in < 1:
        raise InputError(f"cannot resize a length-{n_in} axis; expected a length >= 1")
    if n_pad < n_in:  # the pad would crop the axis's middle, not pad it
        raise InputError(f"padded_resize_matrix: n_pad={n_pad} is shorter than the axis, n_in={n_in}; expected "
                         "n_pad >= n_in")
    m = resize_matrix(n_pad, n_out, kernel, True)
    if n_pad == n_in:
        return m
    w = np.zeros((n_out, n_in))
    np.add.at(w.T, np.clip(np.arange(n_pad) - (n_pad - n_in) // 2, 0, n_in - 1), m.T)
    w = w.astype(np.float32)
    w.setflags(write=False)  # cached and shared between callers
    return w


def resize_square(img: np.ndarray, size: int, kernel: str = "bicubic") -> np.ndarray:
    """Resize the last two axes of ``img`` (..., H, W) to (size, size), a crop that is not square first centred
    in a square of its larger side by repeating its edge pixels (as ``CrowdAnalyzer`` crops faces): the model's
    faces are square crops, and stretching a narrower box distorts the face
    (``results/ferplus/app_inputs_val.json``). The same as :func:`resize` for a square crop; float32 out.

    Raises:
        InputError: ``img`` has fewer than two axes or an empty one, a side over :data:`MAX_IMAGE_SIDE`, masked
            pixels or a dtype other than integer or float, or ``size`` is not an integer from 1 to
            :data:`MAX_IMAGE_SIDE` or ``kernel`` not a known kernel.
    """
    img = _check_image(img, "resize_square")
    _check_lengths(size=size)
    _check_kernel(kernel)
    h, w = img.shape[-2:]
    n = max(h, w)
    my = padded_resize_matrix(h, n, size, kernel)
    mx = padded_resize_matrix(w, n, size, kernel)
    with _blas_flags_ignored():
        return (my @ img.astype(np.float32) @ mx.T).astype(np.float32)


def resize(img: np.ndarray, size: tuple[int, int], kernel: str = "bicubic", antialias: bool = True) -> np.ndarray:
    """Resize the last two axes of ``img`` (..., H, W) to ``size`` = (h, w); float32 out.

    Raises:
        InputError: ``img`` has fewer than two axes or an empty one, a side over :data:`MAX_IMAGE_SIDE`, masked
            pixels or a dtype other than integer or float, or ``size`` is not two integers from 1 to
            :data:`MAX_IMAGE_SIDE`, ``kernel`` not a known kernel or ``antialias`` not a bool.
    """
    img = _check_image(img, "resize")
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise InputError(f"resize: size={size!r}; expected (h, w), two integer numbers of pixels")
    h, w = size
    _check_lengths(size_h=h, size_w=w)
    _check_kernel(kernel)
    if not isinstance(antialias, (bool, np.bool_)):
        raise InputError(f"resize: antialias={antialias!r}; expected True or False")
    my = resize_matrix(img.shape[-2], h, kernel, antialias)
    mx = resize_matrix(img.shape[-1], w, kernel, antialias)
    with _blas_flags_ignored():
        return (my @ img.astype(np.float32) @ mx.T).astype(np.float32)


def _blas_flags_ignored() -> np.errstate:
    """Floating-point warnings off for the SDK's matrix products. Their inputs are finite (faces are checked by
    :func:`check_pixels` first, the matrices are constants), so a warning can only be spurious: some BLAS kernels
    leave floating-point flags set on finite products (OpenBLAS's SVE kernels, emulated on an Arm CPU with SVE,
    docs/experiments.md "The SDK on Arm CPUs"; Apple's Accelerate on M4, numpy issues 28687 and 29820), and an
    app that turns warnings into errors would see every crop refused. A new object per call: ``np.errstate`` is
    not to be shared between threads."""
    return np.errstate(divide="ignore", over="ignore", invalid="ignore")


#: Runs of repeated rows (columns) at least this long on average mark a crop enlarged by pixel repetition.
MIN_REPETITION = 1.5
#: The share of equal neighbouring lines below which an axis cannot hold such runs (a third, less a margin):
#: the one comparison most crops stop after.
MIN_EQUAL_SHARE = 0.3


def _repetition_runs(same: np.ndarray) -> "np.ndarray | None":
    """For one axis of a crop, given whether each line equals the next, the index of the first line of each
    source line, repeated as often as it was (two equal neighbouring source lines make one run of twice the
    length), when the lines come in runs of one length as nearest-neighbour enlarging at least
    :data:`MIN_REPETITION` times makes them (the first and last run may be cut short); else None."""
    n = len(same) + 1
    starts = np.concatenate([[0], np.flatnonzero(~same) + 1])
    lengths = np.diff(np.append(starts, n))
    typical = lengths[lengths <= 1.5 * np.median(lengths)]  # not the runs of equal neighbouring source lines
    base = float(typical.mean())  # the enlargement: 2.4 for 20 -> 48 px (runs of 2 and 3)
    if base < MIN_REPETITION or len(lengths) < 2:
        return None
    copies = np.maximum(1, np.rint(lengths / base)).astype(np.int64)
    off = np.abs(lengths - copies * base) > 1.0
    off[[0, -1]] &= lengths[[0, -1]] > base + 1.0  # a crop's edge may cut a run
    if off.any():
        return None
    return np.repeat(starts, copies)


def _crop_of_rank(img: np.ndarray, what: str) -> np.ndarray:
    """``img`` as given, when it is one crop (C, H, W) or (H, W) of numbers; else an :class:`InputError`."""
    if not isinstance(img, np.ndarray):
        raise InputError(f"{what}: received a {type(img).__name__}; expected a numpy array (C, H, W) or (H, W)")
    _check_numeric(img.dtype, what)
    if np.ndim(img) not in (2, 3):
        raise InputError(f"{what}: received an array of shape {np.shape(img)}; expected (C, H, W) or (H, W)")
    if np.ndim(img) == 3 and np.shape(img)[0] not in (1, 3):  # an HxWx3 face would be reduced along wrong axes
        raise InputError(f"{what}: received an array of shape {np.shape(img)}; expected (C, H, W) or (H, W) with C "
                         "1 or 3 channels (an HxWx3 face is channels-last: pass np.moveaxis(face, -1, 0))")
    return img


def undo_pixel_repetition(img: np.ndarray) -> np.ndarray:
    """A crop (C, H, W), or (H, W), that an app enlarged by repeating pixels (nearest neighbour, e.g. OpenCV's
    ``INTER_NEAREST``), reduced back to one pixel per source pixel along each axis where it was; other crops
    are returned as they are. The model was trained on faces resized with smooth kernels, and such blocky
    crops given as they are lose most of what it can do (``results/ferplus/app_inputs_val.json``, README
    "The SDK"); reduced, they are the small crops they came from."""
    img = _crop_of_rank(unmasked(img, "the crop"), "undo_pixel_repetition")
    if img.ndim == 2:
        return undo_pixel_repetition(img[None])[0]
    for axis in (1, 2):
        if img.shape[axis] <= 2:
            continue
        lines = np.moveaxis(img, axis, 0)  # (lines, ...)
        same = np.all((lines[1:] == lines[:-1]).reshape(len(lines) - 1, -1), axis=1)
        if np.count_nonzero(same) < MIN_EQUAL_SHARE * len(same):
            continue
        keep = _repetition_runs(same)
        if keep is not None:
            img = np.take(img, keep, axis=axis)
    return img


def any_pixel_repetition(pixels: np.ndarray) -> bool:
    """Whether any crop of an (N, C, H, W) batch might be one :func:`undo_pixel_repetition` reduces (at least
    :data:`MIN_EQUAL_SHARE` of its neighbouring rows or columns equal): the fast path for crops at the input
    size, which skips :meth:`Preprocessing.to_pixels`, leaves such a batch to it."""
    rows = np.all(pixels[:, :, 1:, :] == pixels[:, :, :-1, :], axis=(1, 3)).mean(axis=1)
    cols = np.all(pixels[:, :, :, 1:] == pixels[:, :, :, :-1], axis=(1, 2)).mean(axis=1)
    return bool(((rows >= MIN_EQUAL_SHARE) | (cols >= MIN_EQUAL_SHARE)).any())


#: A face whose grey levels spread less than this (the standard deviation of its pixels at the input size, a dim
#: or washed-out camera) is stretched about its own mean up to it: chosen on FER+ val by a rule written first
#: (``results/ferplus/contrast_floor_val.json``, docs/experiments.md "A contrast floor in the SDK"). About 1%
#: of FER2013's 48 px faces are below it, and more small crops once resized (12% of 6 px ones).
CONTRAST_FLOOR = 25.0


def contrast_stats(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each face's mean and standard deviation of an (N, C, S, S) batch, in float32, shaped (N, 1, 1, 1)."""
    x = pixels if pixels.dtype == np.float32 else pixels.astype(np.float32)
    return x.mean(axis=(1, 2, 3), keepdims=True), x.std(axis=(1, 2, 3), keepdims=True)


#: A face whose pixels spread less than this (a flat crop, or one whose only detail is rounding) is not raised:
#: its stretch would be all noise (25 times a one-level step already).
FLAT_FACE_STD = 1.0


def _floor(floor: "float | None") -> float:
    """The floor to use: :data:`CONTRAST_FLOOR` for None; else ``floor`` as given, grey levels in [0, 127.5] (as
    :class:`Corrections` takes them: an infinite floor would stretch every face to black and white, a NaN or negative
    one would turn the step off without a word)."""
    if floor is None:
        return CONTRAST_FLOOR
    if isinstance(floor, (bool, np.bool_)) or not _finite_number(floor) or not 0 <= floor <= 127.5:
        raise InputError(f"contrast floor={floor!r}; expected grey levels in [0, 127.5] (0: off; None: the default, "
                         f"{CONTRAST_FLOOR})")
    return floor


def _low_contrast(pixels: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m, s = contrast_stats(pixels)
    std = s.reshape(-1)
    return m, s, (std < floor) & (std >= FLAT_FACE_STD)


def raise_contrast(pixels: np.ndarray, floor: "float | None" = None) -> np.ndarray:
    """In place on an (N, C, S, S) float32 batch of pixels in [0, 255]: each face whose pixels' standard deviation
    ``s`` is below ``floor`` (None: :data:`CONTRAST_FLOOR`; 0 changes nothing) and not under :data:`FLAT_FACE_STD`
    becomes ``m + (x - m) * floor / s`` (``m`` its mean), clipped to [0, 255]; the others are left as they are.
    The model was trained on faces of ordinary contrast, and faces of a quarter of it lose up to 10 points at
    12 px; raised to the floor they win most of that back, and clean faces score the same. Gray models only
    (``Preprocessing.to_pixels`` leaves RGB faces alone: one spread over three channels would mistake a colour
    cast for contrast, and the floor was chosen on gray faces).

    Raises:
        InputError: ``pixels`` is not float32, or ``floor`` is not None nor grey levels in [0, 127.5].
    """
    if pixels.dtype != np.float32:
        raise InputError(f"raise_contrast works in place on float32 pixels; received {pixels.dtype}")
    floor = _floor(floor)
    m, s, low = _low_contrast(pixels, floor)
    if low.any():
        gain = floor / s[low]
        pixels[low] = np.clip(m[low] + (pixels[low] - m[low]) * gain, 0.0, 255.0)
    return pixels


def any_low_contrast(pixels: np.ndarray, floor: "float | None" = None) -> bool:
    """Whether :func:`raise_contrast` with this ``floor`` would change any face of an (N, C, S, S) batch."""
    return bool(_low_contrast(pixels, _floor(floor))[2].any())


#: RMS residual (grey levels) under which an axis's lines count as a bilinear enlarging from a smaller size: a
#: crop OpenCV enlarged is within 0.30 of one (uint8 rounding), a 48 px face at least 1.48 from any
#: (``results/ferplus/linear_enlarging_scan_val.json``). 0 turns :func:`undo_linear_enlarging` off.
LINEAR_ENLARGING_RESIDUAL = 0.5
#: The sides (lines along an axis) of the crops :func:`undo_linear_enlarging` looks at.
LINEAR_ENLARGING_SIDES = (12, 128)
#: The smallest source size it considers; the largest is two thirds of the side (an enlarging of at least 1.5x),
#: and at most :data:`MAX_LINEAR_SOURCE`.
MIN_LINEAR_SOURCE = 4
#: The largest source size it considers: the small faces the step is for (the rule measured sources of 6-32 px on
#: 48 px crops, for which two thirds of the side is 32 too). A face enlarged from more than this loses little to the
#: SDK's anti-aliased shrinking; and the cap bounds the step's work and memory on large crops (its bases for a side
#: of 128 take 0.5 MB, not 3.7).
MAX_LINEAR_SOURCE = 32
#: A source size must sit at a dip of the residual: the residual one size smaller at least this many times its
#: own. A crop enlarged bilinearly from ``n`` drops to rounding at ``n``; a smooth crop (a bicubic or Lanczos
#: enlarging, an out-of-focus face) comes under :data:`LINEAR_ENLARGING_RESIDUAL` gradually, and reducing it to
#: where it crosses cost bicubic crops up to 3 points (``results/ferplus/linear_enlarging_rule.json``).
LINEAR_ENLARGING_DIP = 4.0
#: The pre-check's lines (as fractions of the side): a crop whose three middle rows are further than twice
#: :data:`LINEAR_ENLARGING_RESIDUAL` from every bilinear enlarging (or near one only where the residual has no dip)
#: is not one, and most crops stop there.
_PRECHECK_LINES = (0.3, 0.5, 0.7)
#: The dip the pre-check asks of its three rows (the full test asks :data:`LINEAR_ENLARGING_DIP` of all of them): about
#: half the smooth crops (bicubic, Lanczos, blurred) that come near some span on three rows do so without it, and
#: without it went on to the full test, about a third of the model's batch time for a batch of them. Of the 53832
#: bilinear crops of FER2013 train faces 0-1999 the full test marks, the smallest three-row dip was 1.77; a dip of 2
#: stopped 3 of them (docs/experiments.md, "A pre-check with a dip").
_PRECHECK_DIP = 1.5


@functools.lru_cache(maxsize=LINEAR_ENLARGING_SIDES[1] - LINEAR_ENLARGING_SIDES[0] + 1)
def _enlarging_bases(side: int) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """For an axis of ``side`` lines: the candidate source sizes ``n``, the orthonormal bases of the spans of
    their bilinear enlarging matrices side by side (side, sum of n; float64) and where each one's columns start.
    A line's squared residual for size ``n`` is its squared norm less its squared projection on that basis."""
    sizes = tuple(range(MIN_LINEAR_SOURCE - 1, min((2 * side) // 3, MAX_LINEAR_SOURCE) + 1))  # from one below
    bases = [np.linalg.qr(_bilinear_matrix(n, side))[0] for n in sizes]
    starts = np.cumsum([0] + [b.shape[1] for b in bases[:-1]])
    out = np.ascontiguousarray(np.concatenate(bases, axis=1))
    out.setflags(write=False)
    starts.setflags(write=False)
    return sizes, out, starts


def _bilinear_matrix(n: int, side: int) -> np.ndarray:
    """The (side, n) bilinear enlarging matrix in float64, outside :func:`resize_matrix`'s cache (the bases'
    thousands of sizes would evict the matrices the SDK's resizing reuses)."""
    return np.asarray(resize_matrix.__wrapped__(n, side, "bilinear", False), dtype=np.float64)


@functools.lru_cache(maxsize=64)
def _source_pinv(n: int, side: int) -> np.ndarray:
    """The least-squares inverse (n, side) of :func:`_bilinear_matrix`."""
    out = np.linalg.pinv(_bilinear_matrix(n, side))
    out.setflags(write=False)
    return out


def _linear_residuals(lines: np.ndarray, centred: bool = False, total: "np.ndarray | None" = None,
                      upto: "int | None" = None, start: int = 0) -> tuple[tuple[int, ...], np.ndarray]:
    """RMS residual (grey levels) of ``lines`` (..., L, side) after projection onto each candidate size's span:
    the sizes and an array (..., sizes), the RMS taken over each leading index's L lines together. ``centred``:
    the lines are float64 about their own means already, and ``total`` (if given) their sums of squares (...).
    ``start``, ``upto``: the candidate sizes from index ``start`` to before ``upto`` only (each size's residual is
    the same whichever others are computed with it)."""
    side = lines.shape[-1]
    sizes, basis, starts = _enlarging_bases(side)
    stop = len(sizes) if upto is None else min(upto, len(sizes))
    if start or stop < len(sizes):
        end = starts[stop] if stop < len(sizes) else basis.shape[1]
        sizes, basis, starts = sizes[start:stop], basis[:, starts[start]:end], starts[start:stop] - starts[start]
    x = lines
    if not centred:  # constants lie in every span; centring keeps the subtraction exact
        x = np.asarray(lines, dtype=np.float64)
        x = x - x.mean(axis=-1, keepdims=True)
    total = (np.einsum("...ij,...ij->...", x, x) if total is None else total)[..., None]
    with _blas_flags_ignored():
        proj = np.add.reduceat(np.square(x @ basis), starts, axis=-1).sum(axis=-2)
    return sizes, np.sqrt(np.maximum(total - proj, 0.0) / (lines.shape[-2] * side))


def _at_a_dip(res: np.ndarray, residual: float, dip: float) -> np.ndarray:
    """For residuals (..., sizes): whether each size from the second on is under ``residual`` with the residual one
    size smaller at least ``dip`` times its own (..., sizes - 1)."""
    return (res[..., 1:] < residual) & (res[..., :-1] >= dip * res[..., 1:])


def _source_sizes(lines: np.ndarray) -> np.ndarray:
    """For each crop's ``lines`` (N, L, side): the smallest candidate source size whose residual over all its lines
    is under :data:`LINEAR_ENLARGING_RESIDUAL` and at most 1 / :data:`LINEAR_ENLARGING_DIP` of the next smaller
    size's, else 0; 0 too when the lines hardly vary along the axis (RMS about their means under
    :data:`FLAT_FACE_STD`): every size fits them, and none can be told. (N,) int."""
    x = np.asarray(lines, dtype=np.float64)
    x = x - x.mean(axis=-1, keepdims=True)
    total = np.einsum("nij,nij->n", x, x)
    flat = np.sqrt(total / (x.shape[1] * x.shape[2])) < FLAT_FACE_STD
    if flat.all():  # nothing to tell (a flat crop, or one whose lines are constant along this axis): skip the products
        return np.zeros(len(x), dtype=np.int64)
    sizes, res = _linear_residuals(x, centred=True, total=total, upto=_FIRST_SIZES)
    found = _at_a_dip(res, LINEAR_ENLARGING_RESIDUAL, LINEAR_ENLARGING_DIP)
    more = len(_enlarging_bases(x.shape[2])[0]) > len(sizes)
    if more and not (found.any(axis=1) | flat).all():  # the smallest sizes did not settle every crop: the rest
        rest, res_rest = _linear_residuals(x, centred=True, total=total, start=_FIRST_SIZES)
        sizes, res = sizes + rest, np.concatenate([res, res_rest], axis=1)
        found = _at_a_dip(res, LINEAR_ENLARGING_RESIDUAL, LINEAR_ENLARGING_DIP)
    first = np.asarray(sizes)[found.argmax(axis=1) + 1]
    return np.where(found.any(axis=1) & ~flat, first, 0)


#: The candidate sizes :func:`_source_sizes` tries first (3 to 16 px: the small faces, a quarter of the products for
#: a 48 px side); the rest only where these do not settle a crop. The smallest size found is the same either way.
_FIRST_SIZES = 14


def _linear_sides(h: int, w: int) -> bool:
    lo, hi = LINEAR_ENLARGING_SIDES
    return lo <= h <= hi and lo <= w <= hi


def undo_linear_enlarging(img: np.ndarray) -> np.ndarray:
    """A crop (C, H, W), or (H, W), in [0, 255] that an app enlarged bilinearly (OpenCV's ``INTER_LINEAR``, PIL's
    ``BILINEAR``: the half-pixel convention) from an ``h x w`` source, replaced by its least-squares source
    (``h x w``, float32, clipped to [0, 255]); other crops are returned as they are.

    Along each axis the source size is the smallest ``n`` (from :data:`MIN_LINEAR_SOURCE` to two thirds of the
    side, at most :data:`MAX_LINEAR_SOURCE`) whose bilinear enlarging leaves the crop's lines within
    :data:`LINEAR_ENLARGING_RESIDUAL` grey levels RMS of its span, at a dip (:data:`LINEAR_ENLARGING_DIP`); a crop
    is reduced only when both axes have one and its sides are within :data:`LINEAR_ENLARGING_SIDES` (an axis along
    which the lines hardly vary has none: :func:`_source_sizes`). The model was trained on
    faces resized with a smooth anti-aliased kernel; a bilinearly enlarged crop given as it is cost about a point
    against the small crop it came from (``results/ferplus/app_inputs_val.json``, rows "bilinear" and "bilinear,
    as given")."""
    # unmasked: a masked array's matrix products would not broadcast
    img = _crop_of_rank(unmasked(img, "the crop"), "undo_linear_enlarging")
    if img.ndim == 2:
        out = undo_linear_enlarging(img[None])
        return img if out.shape[1:] == img.shape else out[0]
    c, h, w = img.shape
    if LINEAR_ENLARGING_RESIDUAL <= 0 or not _linear_sides(h, w) or not _passes_precheck(img[None])[0]:
        return img
    n_h, n_w = (int(n[0]) for n in _enlarging_sources(img[None]))
    if not n_h:
        return img
    with _blas_flags_ignored():
        source = _source_pinv(n_h, h) @ img.astype(np.float64) @ _source_pinv(n_w, w).T
    return np.clip(source, 0.0, 255.0).astype(np.float32)


def _enlarging_sources(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For an (N, C, H, W) batch: each crop's source height and width as :func:`undo_linear_enlarging` finds them,
    both 0 where it finds none (the height is looked for only where a width was found)."""
    n, c, h, w = crops.shape
    widths = _source_sizes(crops.reshape(n, c * h, w))
    heights = np.zeros_like(widths)
    has = widths > 0
    if has.all():
        heights = _source_sizes(np.swapaxes(crops, 2, 3).reshape(n, c * w, h))
    elif has.any():
        heights[has] = _source_sizes(np.swapaxes(crops[has], 2, 3).reshape(-1, c * w, h))
    widths[heights == 0] = 0
    return heights, widths


def _passes_precheck(pixels: np.ndarray, slack: float = 0.0) -> np.ndarray:
    """For an (N, C, H, W) batch, whether each crop's middle rows (:data:`_PRECHECK_LINES`) come within twice
    :data:`LINEAR_ENLARGING_RESIDUAL` of some bilinear enlarging at a dip of at least :data:`_PRECHECK_DIP`, at
    about a sixteenth of the full test's cost for a 48 px crop. A filter, not a proof: a crop whose other rows fit
    while these three do not would be reduced by the full test and is not; of the 53832 bilinear enlargings of
    FER2013 train faces 0-1999 the full test marks it stopped none, nor of 53810 of faces 2000-3999
    (``results/ferplus/linear_enlarging_rule.json``, ``..._fresh.json``). Both paths run it crop by crop, so the fast
    path and :meth:`Preprocessing.to_pixels` agree; ``slack`` (a relative margin on both thresholds) lets a batch's
    pre-check pass every crop the crop's own might (a batch's products may round in the last bits otherwise)."""
    h = pixels.shape[2]
    rows = [min(h - 1, int(f * h)) for f in _PRECHECK_LINES]
    lines = pixels[:, :, rows, :].reshape(len(pixels), -1, pixels.shape[3])
    res = _linear_residuals(lines)[1]
    near = _at_a_dip(res, 2 * LINEAR_ENLARGING_RESIDUAL * (1 + slack), _PRECHECK_DIP * (1 - slack))
    return np.asarray(near.any(axis=-1))


def any_linear_enlarging(pixels: np.ndarray) -> bool:
    """Whether :func:`undo_linear_enlarging` would reduce any crop of an (N, C, H, W) batch: the fast path for crops
    at the input size leaves such a batch to :meth:`Preprocessing.to_pixels`. The pre-check runs on the whole
    batch (with a margin), then, as :func:`undo_linear_enlarging` runs them, the pre-check and the full test on each
    crop that passes it, until one is found."""
    if LINEAR_ENLARGING_RESIDUAL <= 0 or not _linear_sides(*pixels.shape[2:]):
        return False
    for i in np.flatnonzero(_passes_precheck(pixels, slack=1e-9)):  # one by one: the first crop found decides
        crop = pixels[i:i + 1]
        if _enlarging_sources(crop)[0][0] and _passes_precheck(crop)[0]:  # as undo_linear_enlarging decides
            return True
    return False



# --------------------------------------------------------------------------------------------
# Crops that are JPEG images (docs/experiments.md, "JPEG-compressed small crops")
# --------------------------------------------------------------------------------------------
#: The JPEG standard's luminance quantisation table (Annex K), which libjpeg scales by quality.
_JPEG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64).reshape(8, 8)
#: The qualities :func:`jpeg_quality` tests, coarsest table first (from 85 up the DC step is under
#: :data:`JPEG_MIN_STEP`, so no finer quality could be found).
JPEG_QUALITIES = tuple(range(20, 85, 5))
#: Only quantisation steps of at least this many grey levels are tested (finer ones fit any crop too often).
JPEG_MIN_STEP = 6.0
#: A coefficient is on the grid when within this of a multiple of its step (the decoder's rounding moves it).
JPEG_TOLERANCE = 1.5
#: A flat block's DC coefficient is on the grid when within this of a multiple of its step, in a frame
#: (:func:`jpeg_frame_quality`): the decoder rounds all 64 pixels of a block it left flat alike, by up to half a grey
#: level, which moves 8 x the block's mean by up to 4 (docs/experiments.md, "Flat blocks in JPEG frames").
JPEG_FLAT_TOLERANCE = 4.0
#: The share of tested coefficients (and of blocks' DC coefficients) that must be on the grid.
JPEG_ON_GRID = 0.9
#: The fewest coefficients a crop must offer the test (besides the DC ones).
JPEG_MIN_COEFFS = 4
#: Default blur, in crop pixels, of a crop that is a JPEG image (:class:`Corrections`' ``soften_jpeg``; 0: off).
SOFTEN_JPEG_SIGMA = 0.0


@functools.lru_cache(maxsize=1)
def _jpeg_tables() -> np.ndarray:
    """(Q, 8, 8) quantisation tables of :data:`JPEG_QUALITIES`, as libjpeg's ``jpeg_quality_scaling`` and
    ``jpeg_add_quant_table`` make them (in integers: 5000 // q below 50, else 200 - 2q; then (entry * scale + 50)
    // 100, kept in 1..255)."""
    base = _JPEG_LUMA.astype(np.int64)
    tables = []
    for q in JPEG_QUALITIES:
        scale = 5000 // q if q < 50 else 200 - 2 * q
        tables.append(np.clip((base * scale + 50) // 100, 1, 255))
    out = np.stack(tables).astype(np.float64)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=1)
def _dct8() -> np.ndarray:
    """The orthonormal 8-point DCT-II matrix (JPEG's forward DCT is its 2-D form)."""
    k = np.arange(8)
    d = np.sqrt(2.0 / 8.0) * np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16.0)
    d[0] /= np.sqrt(2.0)
    d.setflags(write=False)
    return d


def _on_grid(values: np.ndarray, steps: np.ndarray, tolerance: "float | np.ndarray" = JPEG_TOLERANCE) -> np.ndarray:
    return np.abs(values - np.rint(values / steps) * steps) <= tolerance


def _jpeg_blocks(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The whole 8x8 blocks of (N, H, W) crops from their top-left corner, level-shifted as JPEG codes them:
    (N, B, 8, 8), and which of them no pixel at 0 or 255 touches (N, B) (the decoder clipped those, so their
    coefficients left the grid)."""
    n, h, w = crops.shape
    bh, bw = h // 8, w // 8
    blocks = crops[:, :bh * 8, :bw * 8].astype(np.float64).reshape(n, bh, 8, bw, 8).transpose(0, 1, 3, 2, 4)
    blocks = blocks.reshape(n, bh * bw, 8, 8)
    unclipped = ((blocks > 0) & (blocks < 255)).all(axis=(2, 3))
    return blocks - 128.0, unclipped


def _dc_qualities(blocks: np.ndarray, unclipped: np.ndarray, flat_blocks: bool = False) -> np.ndarray:
    """(N, Q): for each crop, the qualities at whose DC step at least :data:`JPEG_ON_GRID` of its unclipped
    blocks' DC coefficients (8 times the block's mean) lie on the grid (none without an unclipped block). With
    ``flat_blocks``, a block whose 64 pixels are all alike is on the grid within :data:`JPEG_FLAT_TOLERANCE`."""
    dc = blocks.sum(axis=(2, 3)) / 8.0  # (N, B)
    steps = _jpeg_tables()[:, 0, 0]
    tolerance: "float | np.ndarray" = JPEG_TOLERANCE
    if flat_blocks:
        flat = (blocks == blocks[..., :1, :1]).all(axis=(2, 3))  # (N, B)
        tolerance = np.where(flat, JPEG_FLAT_TOLERANCE, JPEG_TOLERANCE)[:, None, :]
    on = _on_grid(dc[:, None, :], steps[None, :, None], tolerance) & unclipped[:, None, :]  # (N, Q, B)
    count = unclipped.sum(axis=1)[:, None]
    return (count > 0) & (steps[None] >= JPEG_MIN_STEP) & (on.sum(axis=2) >= JPEG_ON_GRID * count)


def jpeg_quality(img: np.ndarray) -> "int | None":
    """The JPEG quality whose quantisation grid a gray crop (HxW, pixel values as given to the model) sits on, or
    None: a crop that is itself a decoded JPEG image (a face snapshot saved as JPEG) carries the codec's 8x8 grid
    from its top-left corner, and each whole block's DCT coefficients lie near multiples of the steps of the
    table it was coded with.

    Tested against the standard luminance table scaled to each of :data:`JPEG_QUALITIES` (libjpeg's scaling, as
    Pillow and OpenCV write JPEG), coarsest first, on the crop's pixels rounded to whole grey levels, leaving out
    blocks with a pixel at 0 or 255: at least :data:`JPEG_ON_GRID` of the blocks' DC coefficients on the DC step's
    grid, and at least :data:`JPEG_MIN_COEFFS` coefficients of step :data:`JPEG_MIN_STEP` or more and at least half
    their step in size, :data:`JPEG_ON_GRID` of them on the grid. A crop under 8 pixels on a side has no whole
    block. Not found: a crop cut from a larger JPEG image at an offset that is not a multiple of 8, one resized
    after decoding, and quality 85 and above (its DC step is under the minimum). Settings fixed on FER+ train
    faces, where no clean crop was marked (docs/experiments.md, "JPEG-compressed small crops").

    Raises:
        InputError: ``img`` is not a 2-D array of numbers, or is a masked array with masked pixels
            (:func:`unmasked`).
    """
    img = np.asarray(unmasked(img, "jpeg_quality: img"))
    if img.ndim != 2 or not (np.issubdtype(img.dtype, np.integer) or np.issubdtype(img.dtype, np.floating)):
        raise InputError(f"jpeg_quality: received an array of shape {img.shape} and dtype {img.dtype}; expected one "
                         "gray crop, HxW, of pixel values")
    if min(img.shape) < 8:
        return None
    blocks, unclipped = _jpeg_blocks(_grey_levels(img)[None])
    return _ac_quality(blocks[0], unclipped[0], _dc_qualities(blocks, unclipped)[0])


def _grey_levels(img: np.ndarray) -> np.ndarray:
    """``img`` rounded to whole grey levels, as :func:`jpeg_quality` reads it: a NaN or infinite value becomes -1,
    outside 0..255 as any value out there, so that its block is left out like a clipped one (and no arithmetic on
    it warns)."""
    if np.issubdtype(img.dtype, np.floating):
        img = np.where(np.isfinite(img), img, -1.0)
    return np.rint(img)


def _ac_quality(blocks: np.ndarray, unclipped: np.ndarray, dc_ok: np.ndarray) -> "int | None":
    """:func:`jpeg_quality`'s answer for one crop's (B, 8, 8) blocks, given which qualities its DC coefficients
    passed (``dc_ok``, (Q,)): the coarsest of those whose table its other coefficients sit on, or None."""
    return _ac_verdict(blocks, unclipped, dc_ok)[0]


def _ac_verdict(blocks: np.ndarray, unclipped: np.ndarray, dc_ok: np.ndarray) -> "tuple[int | None, bool]":
    """:func:`_ac_quality`'s answer, and whether it is None for want of evidence: some quality passed the DC test
    but no candidate had :data:`JPEG_MIN_COEFFS` coefficients to test (a flat region)."""
    candidates = np.flatnonzero(dc_ok)
    if candidates.size == 0:
        return None, False
    d = _dct8()
    with _blas_flags_ignored():
        coeffs = (d @ blocks[unclipped] @ d.T)[None]  # (1, B', 8, 8)
    steps = _jpeg_tables()[candidates][:, None]  # (Q', 1, 8, 8)
    tested = (np.abs(coeffs) >= steps / 2) & (steps >= JPEG_MIN_STEP)
    tested[..., 0, 0] = False  # the DC coefficients passed already
    n = tested.sum(axis=(1, 2, 3))
    on = (_on_grid(coeffs, steps) & tested).sum(axis=(1, 2, 3))
    good = (n >= JPEG_MIN_COEFFS) & (on >= JPEG_ON_GRID * n)
    if good.any():
        return JPEG_QUALITIES[int(candidates[np.argmax(good)])], False
    return None, bool((n < JPEG_MIN_COEFFS).all())


#: The largest window of a frame :func:`jpeg_frame_quality` reads (pixels a side, from the frame's centre, on the grid).
JPEG_FRAME_WINDOW = 256
#: The luma weights of JFIF (ITU-R BT.601), by which a colour JPEG's Y channel was made from its RGB pixels.
_JFIF_LUMA = np.array([0.299, 0.587, 0.114])


def jpeg_frame_quality(frame: np.ndarray) -> "int | None":
    """The JPEG quality of a whole decoded frame (HxW gray or HxWx3 RGB, pixel values), or None: the quality whose
    grid its luma sits on from the frame's top-left corner (:func:`jpeg_quality`'s test). A face a detector cuts out
    of such a frame sits on the grid at any offset, so its crop is not marked by itself; the frame is
    (docs/experiments.md, "Faces cut from JPEG frames").

    A block the codec left flat (its 64 pixels of one grey level) is on the DC grid within
    :data:`JPEG_FLAT_TOLERANCE`: the decoder rounded its pixels alike (docs/experiments.md, "Flat blocks in JPEG
    frames"; crops keep the test without it). A colour frame is read on its luma (JFIF's weights, as the codec made
    its Y channel), leaving out the blocks where a channel touches 0 or 255 (the decoder clipped it there, so the luma read back left the grid). A frame of
    more than :data:`JPEG_FRAME_WINDOW` pixels a side is read in a window of that size at its centre, starting on the
    grid (a multiple of 8 from the corner); where that window cannot tell (too flat: its blocks' means sit on a grid
    but it has too few other coefficients to test; or every block of it clipped, as a lamp blown out to 255), in
    windows at the centres of the frame's quarters in turn. A
    pixel outside 0..255, NaN or infinite leaves its block out, as a clipped one.

    Raises:
        InputError: ``frame`` is not an HxW or HxWx3 array of numbers, or is a masked array with masked pixels
            (:func:`unmasked`).
    """
    frame = np.asarray(unmasked(frame, "jpeg_frame_quality: frame"))
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[-1] == 3)) or not (
            np.issubdtype(frame.dtype, np.integer) or np.issubdtype(frame.dtype, np.floating)):
        raise InputError(f"jpeg_frame_quality: received an array of shape {frame.shape} and dtype {frame.dtype}; "
                         "expected one frame, HxW gray or HxWx3 RGB, of pixel values")
    h, w = frame.shape[:2]
    if min(h, w) < 8:
        return None
    size = JPEG_FRAME_WINDOW
    centres = [(h / 2, w / 2)]
    if max(h, w) > size:  # the quarters' centres, tried only where the centre's window cannot tell
        centres += [(h * fy, w * fx) for fy in (0.25, 0.75) for fx in (0.25, 0.75)]
    for cy, cx in centres:
        y0 = int(min(max(0.0, cy - size / 2), max(0, h - size))) // 8 * 8
        x0 = int(min(max(0.0, cx - size / 2), max(0, w - size))) // 8 * 8
        quality, undetermined = _window_quality(frame[y0:y0 + size, x0:x0 + size])
        if quality is not None or not undetermined:
            return quality
    return None


def _window_quality(window: np.ndarray) -> "tuple[int | None, bool]":
    """:func:`jpeg_frame_quality`'s test on one window on the grid (HxW or HxWx3), and whether a None is for want of
    evidence (:func:`_ac_verdict`)."""
    if window.ndim == 2:
        blocks, unclipped = _jpeg_blocks(_grey_levels(window)[None])
    else:
        rgb = _grey_levels(window.astype(np.float64))
        blocks, unclipped = _jpeg_blocks(np.rint(rgb @ _JFIF_LUMA)[None])
        for c in range(3):
            unclipped = unclipped & _jpeg_blocks(rgb[None, ..., c])[1]
    if not unclipped.any():  # every block clipped (a lamp or window blown out to 255): nothing to tell from
        return None, True
    return _ac_verdict(blocks[0], unclipped[0], _dc_qualities(blocks, unclipped, flat_blocks=True)[0])


def any_jpeg_image(pixels: np.ndarray) -> bool:
    """Whether a crop of an (N, 1, S, S) batch of whole grey levels is one :func:`jpeg_quality` marks. Its DC test
    runs on the whole batch at once; only crops that pass it take the rest, one by one."""
    crops = pixels[:, 0]
    if min(crops.shape[1:]) < 8:
        return False
    blocks, unclipped = _jpeg_blocks(crops)
    dc_ok = _dc_qualities(blocks, unclipped)
    return any(_ac_quality(blocks[i], unclipped[i], dc_ok[i]) is not None for i in np.flatnonzero(dc_ok.any(axis=1)))


@functools.lru_cache(maxsize=64)
def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) matrix of a Gaussian blur of ``sigma`` along one axis of n pixels, edges repeated."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    m = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        np.add.at(m[i], np.clip(np.arange(i - radius, i + radius + 1), 0, n - 1), taps)
    m.setflags(write=False)
    return m


def soften(img: np.ndarray, sigma: float) -> np.ndarray:
    """``img`` (..., H, W) blurred by a Gaussian of ``sigma`` pixels along its last two axes (edges repeated),
    float32: what the SDK does to a crop that is a JPEG image (:class:`Corrections`' ``soften_jpeg``).

    Raises:
        InputError: ``sigma`` is not a positive finite number or is more than the image's longer side (a wider
            blur leaves little but the image's mean, and its kernel of 6 x sigma taps could exhaust memory), or
            ``img`` is not a numpy array of numbers with two axes or more.
    """
    if isinstance(sigma, (bool, np.bool_)) or not _finite_number(sigma) or sigma <= 0:
        raise InputError(f"soften: sigma={sigma!r}; expected a positive number of pixels")
    img = unmasked(img, "soften: the image")  # a masked array's mask would be kept on blurred pixels
    if not isinstance(img, np.ndarray):
        raise InputError(f"soften: received a {type(img).__name__}; expected a numpy array (..., H, W)")
    if np.ndim(img) < 2:
        raise InputError(f"soften: received an array of shape {np.shape(img)}; expected (..., H, W)")
    _check_numeric(img.dtype, "soften")
    h, w = img.shape[-2:]
    if sigma > max(h, w):
        raise InputError(f"soften: sigma={sigma!r} on a {h}x{w} image; expected at most its longer side, {max(h, w)} "
                         "pixels (a wider blur leaves little but the image's mean)")
    with _blas_flags_ignored():
        return (_gaussian_matrix(h, float(sigma)) @ img.astype(np.float32) @ _gaussian_matrix(w, float(sigma)).T)

def _default_floor() -> float:
    return CONTRAST_FLOOR


@dataclasses.dataclass(frozen=True)
class Corrections:
    """What the SDK does to a face crop beside resizing it to the model's input, each step chosen on FER+ val by a
    rule written before its runs (docs/experiments.md). The model's own :class:`Preprocessing` comes from its file;
    these are the runtime's, per :class:`~fsrfer_edge.Recognizer` (``Recognizer(corrections=...)``).

    Attributes:
        undo_pixel_repetition: reduce a crop an app enlarged by repeating pixels (:func:`undo_pixel_repetition`).
        undo_linear_enlarging: reduce a crop an app enlarged bilinearly (:func:`undo_linear_enlarging`).
        contrast_floor: raise a gray face whose pixels' standard deviation at the input size is below this many
            grey levels up to it (:func:`raise_contrast`); 0 turns it off. Default :data:`CONTRAST_FLOOR` (read
            when the object is made).
        soften_jpeg: blur a gray crop of at most the input size that is itself a JPEG image (:func:`jpeg_quality`)
            by a Gaussian of this many crop pixels before resizing (:func:`soften`); 0 turns it off. Default
            :data:`SOFTEN_JPEG_SIGMA` (read when the object is made).

    ``Corrections.none()`` turns every step off: each crop is only resized, as the model's metadata says (for
    crops already prepared exactly as in training, or to measure what the steps do).
    """

    undo_pixel_repetition: bool = True
    undo_linear_enlarging: bool = True
    contrast_floor: float = dataclasses.field(default_factory=_default_floor)
    soften_jpeg: float = dataclasses.field(default_factory=lambda: SOFTEN_JPEG_SIGMA)

    def __post_init__(self) -> None:
        for name in ("undo_pixel_repetition", "undo_linear_enlarging"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise InputError(f"Corrections({name}={getattr(self, name)!r}); expected True or False")
        floor = self.contrast_floor
        if isinstance(floor, (bool, np.bool_)) or not _finite_number(floor) or not 0 <= floor <= 127.5:
            raise InputError(f"Corrections(contrast_floor={floor!r}); expected grey levels in [0, 127.5] "
                             f"(0: off; default {CONTRAST_FLOOR})")
        object.__setattr__(self, "contrast_floor", float(floor))
        sigma = self.soften_jpeg
        if isinstance(sigma, (bool, np.bool_)) or not _finite_number(sigma) or not 0 <= sigma <= 3:
            raise InputError(f"Corrections(soften_jpeg={sigma!r}); expected a blur in crop pixels in [0, 3] "
                             f"(0: off; default {SOFTEN_JPEG_SIGMA})")
        object.__setattr__(self, "soften_jpeg", float(sigma))
        for name in ("undo_pixel_repetition", "undo_linear_enlarging"):
            object.__setattr__(self, name, bool(getattr(self, name)))

    @classmethod
    def none(cls) -> "Corrections":
        """Every step off."""
        return cls(undo_pixel_repetition=False, undo_linear_enlarging=False, contrast_floor=0.0, soften_jpeg=0.0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def as_corrections(value: Any) -> Corrections:
    """``Recognizer(corrections=...)``'s argument: None (the defaults), a :class:`Corrections`, or a dict of its
    fields.

    Raises:
        InputError: anything else, or a dict with unknown keys or invalid values.
    """
    if value is None:
        return Corrections()
    if isinstance(value, Corrections):
        return value
    if isinstance(value, dict):
        fields = {f.name for f in dataclasses.fields(Corrections)}
        unknown = sorted(map(str, set(value) - fields))
        if unknown:
            raise InputError(f"unknown corrections {unknown}; expected a subset of {sorted(fields)}")
        return Corrections(**value)
    raise InputError(f"corrections={value!r}; expected None, a fsrfer_edge.Corrections (Corrections.none() turns "
                     "every step off) or a dict of its fields")


def spatial(faces: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``fn``, which works on the last two axes, applied to the face axes of a stack of gray faces (N, H, W) or
    colour ones (N, H, W, C): a colour stack's channel axis goes before the face's and comes back after, so ``fn``
    resizes the face and not its width and channels."""
    if faces.ndim != 4:
        return fn(faces)
    return np.moveaxis(fn(np.moveaxis(faces, -1, 1)), 1, -1)


def shrink(img: np.ndarray, factor: int) -> np.ndarray:
    """Faces (..., S, S) as the small uint8 crops a camera gives: down-sampled by ``factor`` (anti-aliased bicubic) to
    ``round(S / factor)`` pixels a side, the first half of :func:`degrade` (factor 1: the faces, as uint8)."""
    if isinstance(factor, (bool, np.bool_)) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise InputError(f"down-sample factor must be an integer >= 1, got {factor!r}")
    _check_image(img, "shrink")
    side = img.shape[-1]
    small = max(1, round(side / factor))
    out = img if small == side else resize(img, (small, small), "bicubic", antialias=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def degrade(img: np.ndarray, factor: int, kernel: str = "bicubic") -> np.ndarray:
    """Low-resolution version of faces (..., H, W): down-sample by ``factor``, resize back.

    Factor 1 returns the faces unchanged (as float32). The low-resolution side is
    ``round(H / factor)`` pixels, e.g. 48 px faces at x4 become 12 px, as ``../shared/data`` describes.
    """
    if isinstance(factor, (bool, np.bool_)) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise InputError(f"down-sample factor must be an integer >= 1, got {factor!r}")
    _check_image(img, "degrade")
    h, w = img.shape[-2:]
    if factor > min(h, w):  # it would be read as a 1-pixel face whatever the factor, and reported as xFACTOR
        raise InputError(f"down-sample factor {factor} on {h}x{w} faces leaves less than one pixel; expected a factor "
                         f"from 1 to {min(h, w)}")
    if factor == 1:
        return img.astype(np.float32)
    small = (max(1, round(h / factor)), max(1, round(w / factor)))
    lr = resize(img, small, kernel, antialias=True)
    return resize(lr, (h, w), kernel, antialias=True)


# --------------------------------------------------------------------------------------------
# Preprocessing description (written into model metadata)
# --------------------------------------------------------------------------------------------
def _finite_number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float, np.integer, np.floating)) and math.isfinite(float(x))


def preprocessing_problems(pre: Any) -> list[str]:
    """Everything wrong with a :class:`Preprocessing`'s fields, one message per problem (empty: valid)."""
    out: list[str] = []
    size = pre.input_size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        out.append(f"input_size={size!r}, expected an integer >= 1")
    if pre.channels not in (1, 3) or isinstance(pre.channels, bool) or not isinstance(pre.channels, (int, np.integer)):
        out.append(f"channels={pre.channels!r}, expected 1 (gray) or 3 (RGB)")
    if not _finite_number(pre.mean):
        out.append(f"mean={pre.mean!r}, expected a finite number")
    if not _finite_number(pre.std) or not float(pre.std) > 0:
        out.append(f"std={pre.std!r}, expected a finite number > 0")
    if not isinstance(pre.resize_kernel, str) or pre.resize_kernel not in _KERNELS:
        out.append(f"resize_kernel={pre.resize_kernel!r}, expected one of {sorted(_KERNELS)}")
    classes = pre.classes
    if not isinstance(classes, tuple) or not classes or not all(isinstance(c, str) and c for c in classes) \
            or len(set(classes)) != len(classes):
        out.append(f"classes={classes!r}, expected a non-empty list of distinct class names")
    return out


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How a face crop becomes the model's input tensor.

    ``pixel / 255`` is normalised as ``(x - mean) / std``; input is ``channels`` x ``input_size``
    x ``input_size`` (NCHW). ``resize_kernel`` is the kernel used to bring a crop to ``input_size``.
    """

    input_size: int = 48
    channels: int = 1
    mean: float = 0.5
    std: float = 0.25
    resize_kernel: str = "bicubic"
    classes: tuple[str, ...] = CLASSES

    def __post_init__(self) -> None:
        problems = preprocessing_problems(self)
        if problems:
            raise InputError("invalid preprocessing: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["classes"] = list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Preprocessing":
        """The preprocessing that :meth:`to_dict` wrote: every field, none other.

        Every field is required. Each has been in the class, and so in every model's metadata and every checkpoint
        ``to_dict`` wrote, since the first version; a missing one is not an older file but a damaged or hand-made
        one, and filling in its default (mean 0.5, input size 48...) would run the model on inputs other than those
        it was trained on without a word. A field added later must keep reading files written without it: take it
        out of ``required`` below with the default that reproduces the old behaviour, and say so here.

        Raises:
            InputError: ``d`` is not a dict, lacks a field, has an unknown one or holds an invalid value.
        """
        if not isinstance(d, Mapping):  # dict() would take key/value pairs; set() of a str its letters
            raise InputError(f"preprocessing is a {type(d).__name__} ({d!r:.60}); expected a dict of the fields "
                             f"{[f.name for f in dataclasses.fields(cls)]}")
        fields = {f.name for f in dataclasses.fields(cls)}
        required = fields  # all of them: see the docstring
        unknown = set(d) - fields
        if unknown:
            raise InputError(f"unknown preprocessing keys {sorted(unknown)}; expected a subset of {sorted(fields)}")
        missing = sorted(required - set(d))
        if missing:
            raise InputError(f"preprocessing has no {missing}; expected every field of {sorted(fields)} (a default "
                             "would stand in for the value the model was trained with): write the file again from "
                             "its complete preprocessing")
        kw = dict(d)
        if "classes" in kw:
            if not isinstance(kw["classes"], (list, tuple)):
                raise InputError(f"preprocessing classes={kw['classes']!r}; expected a list of class names")
            kw["classes"] = tuple(kw["classes"])
        return cls(**kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    # -- normalisation -------------------------------------------------------------------
    def normalize(self, pixels: np.ndarray, in_place: bool = False) -> np.ndarray:
        """Map pixel values in [0, 255] to the model's normalised float32 input. ``in_place``: overwrite
        ``pixels`` when it is float32 already (a batch of one's own, e.g. from :meth:`to_pixels`).

        Raises:
            InputError: ``pixels`` are not numbers of an integer or float dtype (bool, complex, str, object).
        """
        _check_numeric(np.asarray(pixels).dtype, "normalize")
        # In place on one float32 array (the expression form made four batch-sized temporaries); the same
        # float32 operations with Python-float scalars, so the same bits.
        out = pixels if in_place and pixels.dtype == np.float32 else np.array(pixels, dtype=np.float32)
        out /= 255.0
        out -= float(self.mean)
        out /= float(self.std)
        return out

    # -- faces -> batch ------------------------------------------------------------------
    def to_pixels(self, faces: FaceInput, raise_low_contrast: bool = True,
                  corrections: "Corrections | dict[str, Any] | None" = None,
                  sides: "list[int] | None" = None, jpeg: "list[bool] | None" = None) -> np.ndarray:
        """Validate faces and return an (N, C, S, S) float32 batch of pixel values in [0, 255].

        Accepts one face (HxW gray or HxWx3 RGB), a list of faces of any sizes, or an
        NxHxW[x3] array, under the pixel contract of :func:`check_pixels` (uint8, or float in [0, 255]).
        A crop that is not square is centred in a square (:func:`resize_square`). With the default
        ``corrections`` (:class:`Corrections`), a crop enlarged by repeating pixels is first reduced
        (:func:`undo_pixel_repetition`), as is one enlarged bilinearly (:func:`undo_linear_enlarging`), a crop that
        is a JPEG image is softened where ``soften_jpeg`` is on (:func:`jpeg_quality`, :func:`soften`), and a face
        of low contrast is raised to the floor after resizing (:func:`raise_contrast`, gray models only;
        ``raise_low_contrast=False``: not raised whatever ``corrections`` says, as the trainer loads image files:
        training faces are kept as they are). ``sides``, a list, is given each crop's side as resized: the larger
        side after the corrections (an enlarged crop's source), what the face's size is read from. ``jpeg``, a list, is
        given for each crop whether it is a JPEG image (:func:`jpeg_quality`, on gray crops of at most the input size,
        looked for even where ``soften_jpeg`` is off).

        Raises:
            InputError: on an empty batch, a wrong dtype, rank or channel count, a 0-size or too
                large image, a masked array with masked pixels, NaN/infinite values, float values
                outside [0, 255] or a float face that looks scaled to [0, 1].
        """
        items = list(_split_faces(faces))
        if not items:
            raise InputError("received an empty batch of faces; expected at least one face")
        fix = as_corrections(corrections)
        s = self.input_size
        out = np.empty((len(items), self.channels, s, s), dtype=np.float32)
        for i, face in enumerate(items):
            img = _as_image(face, i, self.channels)
            if fix.undo_pixel_repetition:
                img = undo_pixel_repetition(img)
            if fix.undo_linear_enlarging:
                img = undo_linear_enlarging(img)
            marked = (self.channels == 1 and max(img.shape[-2:]) <= s and (fix.soften_jpeg > 0 or jpeg is not None)
                      and jpeg_quality(img[0]) is not None)
            if jpeg is not None:
                jpeg.append(bool(marked))
            if marked and fix.soften_jpeg > 0:
                img = soften(img, fix.soften_jpeg)
            if sides is not None:
                sides.append(int(max(img.shape[-2:])))
            out[i] = resize_square(img, s, self.resize_kernel)
        np.clip(out, 0.0, 255.0, out=out)
        if raise_low_contrast and self.channels == 1 and fix.contrast_floor > 0:
            raise_contrast(out, fix.contrast_floor)
        return out

    def prepare(self, faces: FaceInput, corrections: "Corrections | dict[str, Any] | None" = None) -> np.ndarray:
        """``to_pixels`` followed by ``normalize``: the float32 NCHW model input."""
        return self.normalize(self.to_pixels(faces, corrections=corrections), in_place=True)


DEFAULT_PREPROCESSING = Preprocessing()


def _split_faces(faces: FaceInput) -> "list[np.ndarray] | np.ndarray":
    """The faces one by one: a list, or an NxHxW[xC] stack as the array itself (indexing and slicing it gives faces).

    Raises:
        InputError: ``faces`` is neither an image, a stack of them nor a list (or tuple) of images.
    """
    if isinstance(faces, np.ndarray):
        faces = unmasked(faces, "faces")
        if faces.ndim == 2 or (faces.ndim == 3 and faces.shape[-1] in (1, 2, 3, 4)):
            # One HxW or HxWxC image. An NxHxW stack of faces 1 to 4 pixels wide would be ambiguous; no
            # detector produces those, so a last axis of 1 to 4 means channels (2: gray + alpha, refused
            # as such below rather than read as H faces two pixels wide).
            return [faces]
        if faces.ndim == 3 or faces.ndim == 4:
            return faces  # a stack of faces: its rows, without a list of N views
        ragged = (" and dtype object; pass crops of different sizes as a list of arrays, not an object array"
                  if faces.dtype == object else "")
        raise InputError(
            f"received an array of shape {faces.shape}{ragged}; expected HxW, HxWx3, NxHxW or NxHxWx3"
        )
    if isinstance(faces, (list, tuple)):
        return list(faces)
    raise InputError(
        f"received {type(faces).__name__}; expected a numpy array (HxW, HxWx3, NxHxW, NxHxWx3) "
        "or a list of such face images"
    )


def check_faces(faces: FaceInput) -> "list[np.ndarray] | np.ndarray":
    """Check every face as :meth:`Preprocessing.to_pixels` does, without resampling any (no batch is made).

    ``Recognizer.predict`` checks a call's faces with it before it prepares and runs them chunk by chunk: a bad face
    is refused, by its index in ``faces``, before the model runs.

    Returns:
        The faces to index or slice: a list, or an NxHxW[xC] stack as the array itself (no copy).

    Raises:
        InputError: see :meth:`Preprocessing.to_pixels`; the first bad face is named by its index.
    """
    items = _split_faces(faces)
    if len(items) == 0:
        raise InputError("received an empty batch of faces; expected at least one face")
    for i, face in enumerate(items):
        _checked_face(face, i)
    return items


def _as_image(face: Any, index: int, channels: int) -> np.ndarray:
    """Validate one face and return it as a (channels, H, W) float32 array."""
    face = _checked_face(face, index)
    f = face.astype(np.float32, copy=False)
    if channels == 1:
        with _blas_flags_ignored():
            g = f @ _LUMA if f.ndim == 3 else f
        return g[None]
    if f.ndim == 2:
        return np.repeat(f[None], 3, axis=0)
    return np.moveaxis(f, -1, 0)


def _checked_face(face: Any, index: int) -> np.ndarray:
    """Validate one face (``index``: its place among the caller's faces, for the message); return it as an HxW or
    HxWx3 array."""
    if not isinstance(face, np.ndarray):
        raise InputError(f"face {index} is a {type(face).__name__}; expected a numpy array")
    check_pixels(face, f"face {index}")
    face = np.asarray(face)
    if face.ndim == 3 and face.shape[-1] == 1:
        face = face[..., 0]
    if face.ndim == 3 and face.shape[-1] != 3:
        if face.shape[0] in (1, 3):  # CxHxW, e.g. a model input tensor of (N, C, H, W) passed as faces
            hint = ("it looks channels-first (CxHxW): pass face[0] for gray, np.moveaxis(face, 0, -1) for RGB, "
                    "and uint8 pixels rather than a normalised model input")
        elif face.shape[-1] == 4:
            hint = "drop an alpha channel with face[..., :3]"
        elif face.shape[-1] > 4:  # not a channel count: an NxHxW stack given as one face of a list
            hint = (f"it looks like a stack of {face.shape[0]} faces (NxHxW): pass the stack itself as the faces, "
                    "or list(stack) among other crops")
        else:
            hint = "the last axis holds the channels"
        counted = f" ({face.shape[-1]} channels)" if face.shape[-1] <= 4 else ""
        raise InputError(
            f"face {index} has shape {face.shape}{counted}; expected HxW gray or HxWx3 RGB: {hint}"
        )
    if face.ndim not in (2, 3):
        raise InputError(f"face {index} has shape {face.shape}; expected HxW gray or HxWx3 RGB")
    if face.shape[0] == 0 or face.shape[1] == 0:
        raise InputError(f"face {index} has shape {face.shape}: a 0-size image; expected at least 1x1 pixels")
    return face


# --------------------------------------------------------------------------------------------
# The pixel contract (faces for Recognizer, frames for CrowdAnalyzer)
# --------------------------------------------------------------------------------------------
#: Largest image (faces and frames) accepted, in pixels: 8192 x 8192. Larger arrays are refused
#: before any float copy is made (a 20000 x 20000 float32 copy alone is 1.6 GB).
MAX_IMAGE_PIXELS = 8192 * 8192
#: Longest side accepted: a 1 x 8,000,000 crop is under the pixel limit, but resizing it to the model's
#: input builds (48 x side) float64 matrices, gigabytes at that length.
MAX_IMAGE_SIDE = 32768


def unmasked(image: np.ndarray, what: str) -> np.ndarray:
    """A plain ndarray view of ``image``; a numpy masked array is accepted only when nothing is masked.

    Raises:
        InputError: ``image`` is a masked array with masked pixels (the SDK cannot guess their values).
    """
    if isinstance(image, np.ma.MaskedArray):
        n = int(np.count_nonzero(np.ma.getmaskarray(image)))
        if n:
            raise InputError(f"{what} is a masked array with {n} masked pixel(s); expected plain pixels. "
                             "Fill them first, e.g. image.filled(0)")
        return np.asarray(image.data)
    return image


#: A float image whose largest value is at most this (and above 0), and whose smallest is above
#: :data:`SCALED_TO_1_MIN`, looks scaled to [0, 1], resampled (a cubic or Lanczos kernel overshoots by a few hundredths,
#: more at hard edges): on the 0..255 scale it would be a face of at most 2 grey levels, nothing to recognise.
SCALED_TO_1_MAX = 2.0
#: See :data:`SCALED_TO_1_MAX`.
SCALED_TO_1_MIN = -1.0


def looks_scaled_to_1(lo: float, hi: float) -> bool:
    """Whether float pixels from ``lo`` to ``hi`` look scaled to [0, 1] (:data:`SCALED_TO_1_MAX`)."""
    return 0.0 < hi <= SCALED_TO_1_MAX and lo > SCALED_TO_1_MIN


def check_pixels(image: np.ndarray, what: str = "image") -> None:
    """The pixel contract shared by :class:`~fsrfer_edge.Recognizer` (faces) and ``CrowdAnalyzer`` (frames).

    Pixels are **uint8** (0..255), or **float in [0, 255]** on the same scale. Refused, with an
    :class:`InputError` that says what to do:

    - other dtypes (int64, bool, str, complex ...);
    - a masked array with masked pixels (:func:`unmasked`);
    - float NaN or infinity, and float values below 0 or above 255 (nothing is clipped silently);
    - a float image whose values lie in [0, 1] with some above 0, or a little outside it (up to
      :data:`SCALED_TO_1_MAX`, down to :data:`SCALED_TO_1_MIN`: bicubic or Lanczos resampling overshoots): it
      looks scaled to [0, 1] (e.g. ``img / 255``), which would be read as an almost black image; multiply by 255;
    - an image of more than :data:`MAX_IMAGE_PIXELS` pixels (H x W) or with a side longer than
      :data:`MAX_IMAGE_SIDE`.

    Raises:
        InputError: as above, and ``image`` not a numpy array (a list, say).
    """
    _require_array(image, what)
    image = unmasked(image, what)
    if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
        # A 16-bit image spans 0..65535: clipping it to 255 would turn it white, so it is scaled instead.
        hint = ("Scale a 16-bit image with (image >> 8).astype(np.uint8)" if image.dtype.kind == "u" and image.dtype.itemsize == 2
                else "Scale a mask with image.astype(np.uint8) * 255" if image.dtype.kind == "b"  # not 0/1 grey levels
                else "Convert with np.clip(image, 0, 255).astype(np.uint8)")
        raise InputError(f"{what} has dtype {_dtype_words(image.dtype)}; expected uint8, or float in [0, 255]. {hint}")
    if image.ndim >= 2 and (image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS
                            or max(image.shape[:2]) > MAX_IMAGE_SIDE):
        raise InputError(
            f"{what} is {image.shape[0]}x{image.shape[1]} pixels; the limits are {MAX_IMAGE_PIXELS} pixels "
            f"(8192x8192) and {MAX_IMAGE_SIDE} pixels a side: expected a smaller image. Downscale it first"
        )
    if image.dtype == np.uint8 or image.size == 0:
        return
    lo, hi = float(np.min(image)), float(np.max(image))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(f"{what} contains NaN or infinite values; expected pixel values in [0, 255]")
    if looks_scaled_to_1(lo, hi):  # before the range check: its advice (clip) would
        # turn a [0, 1] face that resampling took a little outside into an almost black one
        raise InputError(f"{what} is float with values in [{lo:.3g}, {hi:.3g}]; it looks scaled to [0, 1] (resampling "
                         "takes such a face a little outside it), but pixels are expected on the 0..255 scale. "
                         "Multiply by 255: np.clip(image * 255, 0, 255) (or pass uint8)")
    if lo < 0.0 or hi > 255.0:
        raise InputError(f"{what} has float values in [{lo:.9g}, {hi:.9g}] ({'below 0' if lo < 0.0 else 'above 255'}); "
                         "expected floats in [0, 255] (or uint8). "
                         "Clip with np.clip(image, 0, 255)")


def _require_array(image: Any, what: str) -> None:
    """InputError for pixels that are not a numpy array: a list is not converted here, as its dtype (int64 for
    a list of ints) would be numpy's guess, not the caller's."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"{what} is a {type(image).__name__}; expected a numpy array of pixels (uint8, or float in "
                         "[0, 255]). Convert with np.asarray(image, dtype=np.uint8)")


def _dtype_words(dtype: np.dtype) -> str:
    """``dtype`` for a message, a non-native byte order named in words: ``>u2 (uint16, big-endian)``, not ``>u2``."""
    if dtype.byteorder not in ("<", ">"):  # native, or one byte (no order)
        return str(dtype)
    return f"{dtype.str} ({dtype.name}, {'big' if dtype.byteorder == '>' else 'little'}-endian)"


def to_uint8_pixels(image: np.ndarray, what: str = "image") -> np.ndarray:
    """``image`` as uint8 under :func:`check_pixels` (floats rounded); uint8 input is returned as is.

    Raises:
        InputError: see :func:`check_pixels`.
    """
    check_pixels(image, what)
    image = unmasked(image, what)
    if image.dtype == np.uint8:
        return image
    return np.rint(image).astype(np.uint8)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax: float32 for float32 or float16 logits (a model's), float64 for float64 or integer ones
    (scripts that want the precision cast to float64 first).

    Raises:
        InputError: ``logits`` is not a numpy array of shape (N, C) with C >= 1 (N may be 0).
    """
    if not isinstance(logits, np.ndarray):
        raise InputError(f"logits is a {type(logits).__name__}; expected a numpy array of shape (N, C): one row "
                         "of class scores per face. Convert with np.asarray(logits)")
    if logits.ndim != 2:
        raise InputError(f"logits has shape {logits.shape}; expected (N, C): one row of class scores per face "
                         "(for one face's C scores, pass logits[None, :])")
    if logits.shape[1] == 0:
        raise InputError(f"logits has shape {logits.shape}: rows of no classes; expected (N, C) with C >= 1")
    z = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
