"""Valid but unusual inputs to Recognizer.predict/prepare and to the frame readers: each is read as its canonical
form (uint8 gray, C-contiguous) would be, or refused with an InputError that says what was received and expected.

The shipped default model on ONNX Runtime (CPU, the ``calibrated_rec`` fixture); tiny synthetic faces only."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.errors import DataError, InputError

pytest.importorskip("onnxruntime")
# np.matrix crops are among the unusual inputs; numpy warns on making one.
pytestmark = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")


def _face(h: int = 48, w: int = 48, seed: int = 0) -> np.ndarray:
    """A gradient with noise: neither constant nor enlarged by pixel repetition."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    return ((x * 3 + y * 2 + rng.integers(0, 60, (h, w))) % 256).astype(np.uint8)


def _read(rec: Any, faces: Any) -> tuple[np.ndarray, list[tuple[Any, ...]]]:
    """What prepare and predict give for ``faces``: the batch, and each prediction's fields that can differ."""
    preds = [(p.label, p.score, p.confidence, p.factor, p.jpeg) for p in rec.predict(faces)]
    return rec.prepare(faces), preds


def _assert_same(rec: Any, faces: Any, canonical: Any) -> None:
    batch, preds = _read(rec, faces)
    want_batch, want_preds = _read(rec, canonical)
    assert batch.shape == want_batch.shape
    np.testing.assert_allclose(batch, want_batch, rtol=0, atol=1e-5)
    assert [p[0] for p in preds] == [p[0] for p in want_preds]
    for got, want in zip(preds, want_preds):
        assert got[1] == pytest.approx(want[1], abs=1e-5)
        assert (got[2] is None) == (want[2] is None)
        if got[2] is not None:
            assert got[2] == pytest.approx(want[2], abs=1e-5)
        assert got[3:] == want[3:]


# ---------------------------------------------------------------------------------------------------------------
# Defects found by this review
# ---------------------------------------------------------------------------------------------------------------
def test_list_of_np_matrix_faces_at_the_input_size_reads_as_the_arrays(calibrated_rec: Any) -> None:
    """A list of np.matrix crops at the input size went to the uint8 fast path, whose np.stack of matrices raised a
    bare ValueError ("could not broadcast"); one matrix, or matrices of another size, were read fine."""
    g, h = _face(), _face(seed=1)
    _assert_same(calibrated_rec, [np.asmatrix(g), np.asmatrix(h)], [g, h])
    _assert_same(calibrated_rec, [np.asmatrix(g), _face(20, 30)], [g, _face(20, 30)])


def test_float_tiff_scaled_to_unit_range_is_refused_not_read_black(tmp_path: Path) -> None:
    """A floating-point TIFF (Pillow mode F) holding [0, 1] pixels was rounded to grey levels 0 and 1: an almost
    black frame, silently. An array of such pixels is refused by check_pixels; the file is refused the same way."""
    pil = pytest.importorskip("PIL.Image")
    from fsrfer_edge.detection.frames import read_image, wide_gray_pixels

    g = _face(20, 30)
    pil.fromarray(g.astype(np.float32) / 255).save(tmp_path / "unit.tif")
    with pytest.raises(InputError, match=r"unit\.tif holds floating-point pixels \(Pillow mode F\) with values "
                       r"0\.\d+\.\.0\.\d+: they look scaled to \[0, 1\].*Multiply its pixels by 255"):
        read_image(tmp_path / "unit.tif")
    with pil.open(tmp_path / "unit.tif") as im:  # INT8 calibration reads its images with its own error type
        with pytest.raises(DataError, match=r"scaled to \[0, 1\]"):
            wide_gray_pixels(im, tmp_path / "unit.tif", error=DataError)
    # The same pixels on the 0..255 scale are read as the uint8 image they came from; an all-black float image is
    # black, not "scaled".
    pil.fromarray(g.astype(np.float32)).save(tmp_path / "full.tif")
    assert np.array_equal(read_image(tmp_path / "full.tif")[..., 0], g)
    pil.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "black.tif")
    assert (read_image(tmp_path / "black.tif") == 0).all()


# ---------------------------------------------------------------------------------------------------------------
# Unusual inputs that were already read right (kept so they stay so)
# ---------------------------------------------------------------------------------------------------------------
def _variants(g: np.ndarray) -> dict[str, Any]:
    ro = g.copy()
    ro.setflags(write=False)
    return {
        "float32": g.astype(np.float32),
        "float64": g.astype(np.float64),
        "float16": g.astype(np.float16),
        "big-endian float32": g.astype(">f4"),
        "HxWx1": g[..., None],
        "gray as RGB": np.repeat(g[..., None], 3, axis=-1),
        "Fortran order": np.asfortranarray(g),
        "negative strides": np.ascontiguousarray(g[::-1, ::-1])[::-1, ::-1],
        "strided view": np.repeat(np.repeat(g, 2, 0), 2, 1)[::2, ::2],
        "read-only": ro,
        "list": [g],
        "tuple of float": (g.astype(np.float32),),
        # A 3-D array whose last axis is 1 to 4 is one HxWxC image: 1xHxW reads as a stack only for W > 4.
        **({"1xHxW": g[None]} if g.shape[1] > 4 else {}),
        "1xHxWx1": g[None, ..., None],
        "np.matrix": np.asmatrix(g),
        "masked, nothing masked": np.ma.masked_array(g, mask=False),
    }


@pytest.mark.parametrize("shape", [(48, 48), (20, 30), (1, 1), (2, 2), (5, 60), (60, 5)])
def test_unusual_forms_of_one_crop_read_as_the_canonical_crop(calibrated_rec: Any, shape: tuple[int, int]) -> None:
    g = _face(*shape)
    for name, v in _variants(g).items():
        try:
            _assert_same(calibrated_rec, v, g)
        except AssertionError as exc:  # pragma: no cover - the message names the form
            raise AssertionError(f"{name}: {exc}") from exc


def test_memory_mapped_crops_read_as_the_arrays(calibrated_rec: Any, tmp_path: Path) -> None:
    g, s = _face(), _face(20, 30)
    np.save(tmp_path / "g.npy", g)
    np.save(tmp_path / "s.npy", s)
    mg, ms = np.load(tmp_path / "g.npy", mmap_mode="r"), np.load(tmp_path / "s.npy", mmap_mode="r")
    _assert_same(calibrated_rec, mg, g)
    _assert_same(calibrated_rec, [mg, ms], [g, s])


def test_mixed_list_batch_and_4d_stack_read_as_canonical_crops(calibrated_rec: Any) -> None:
    g, h, s, b = _face(), _face(seed=1), _face(20, 30), _face(96, 96)
    _assert_same(calibrated_rec, [g, s.astype(np.float32), b[:, ::-1][:, ::-1], s[..., None]], [g, s, b, s])
    _assert_same(calibrated_rec, np.stack([g, h])[..., None], [g, h])
    _assert_same(calibrated_rec, np.stack([g, h]).astype(np.float32), [g, h])
    _assert_same(calibrated_rec, np.asfortranarray(np.stack([g, h])), [g, h])


@pytest.mark.parametrize("level", [0, 7, 128, 255])
def test_constant_crops_read_the_same_in_every_form(calibrated_rec: Any, level: int) -> None:
    c = np.full((48, 48), level, np.uint8)
    _assert_same(calibrated_rec, c.astype(np.float32), c)
    _assert_same(calibrated_rec, np.full((3, 5), level, np.uint8), np.full((3, 5), level, np.uint8))
    batch, preds = _read(calibrated_rec, c)
    assert np.isfinite(batch).all() and all(np.isfinite(p[1]) for p in preds)


@pytest.mark.parametrize("face, words", [
    (_face().astype(np.float32) / 255, r"looks scaled to \[0, 1\].*Multiply by 255"),
    (np.concatenate([np.repeat(_face()[..., None], 3, -1), np.full((48, 48, 1), 255, np.uint8)], -1),
     r"shape \(48, 48, 4\).*expected HxW gray or HxWx3 RGB: drop an alpha channel"),
    (_face().astype(np.uint16) * 257, r"dtype uint16; expected uint8, or float in \[0, 255\].*>> 8"),
    (_face().astype(np.int64), r"dtype int64; expected uint8"),
    (_face() > 128, r"dtype bool; expected uint8"),
    (_face()[None, None], r"shape \(1, (1, )?48, 48\).*expected HxW gray or HxWx3 RGB"),
])
def test_misread_prone_crops_are_refused_saying_what_was_received(calibrated_rec: Any, face: np.ndarray,
                                                                   words: str) -> None:
    for faces in (face, [face]):
        with pytest.raises(InputError, match=words):
            calibrated_rec.predict(faces)
        with pytest.raises(InputError, match=words):
            calibrated_rec.prepare(faces)


def test_pil_image_is_refused_saying_to_pass_an_array(calibrated_rec: Any) -> None:
    pil = pytest.importorskip("PIL.Image")
    im = pil.fromarray(_face())
    with pytest.raises(InputError, match=r"received Image; expected a numpy array"):
        calibrated_rec.predict(im)
    with pytest.raises(InputError, match=r"face 0 is a Image; expected a numpy array"):
        calibrated_rec.predict([im])


def test_resize_rgb_reads_views_as_their_contiguous_copies() -> None:
    from fsrfer_edge.detection import frames

    f = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    padded = np.pad(f, ((0, 0), (5, 5), (0, 0)))
    for v in (f[::-1], f[:, ::-1], f[..., ::-1], np.asfortranarray(f), padded[:, 5:-5]):
        assert np.array_equal(frames.resize_rgb(v, 20, 30), frames.resize_rgb(np.ascontiguousarray(v), 20, 30))


def test_stack_inside_a_list_is_refused_as_a_stack_not_as_48_channels(calibrated_rec: Any) -> None:
    """A list holding an NxHxW stack was refused as one face of "48 channels" whose "last axis holds the channels"."""
    stack = np.stack([_face(), _face(seed=1)])
    with pytest.raises(InputError, match=r"face 0 has shape \(2, 48, 48\).*a stack of 2 faces.*pass the stack "
                                         r"itself.*or list\(stack\)"):
        calibrated_rec.predict([stack])


def test_object_array_of_ragged_crops_is_refused_saying_to_pass_a_list(calibrated_rec: Any) -> None:
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = _face(), _face(20, 30)
    with pytest.raises(InputError, match=r"shape \(2,\) and dtype object.*pass crops of different sizes as a list"):
        calibrated_rec.predict(ragged)
