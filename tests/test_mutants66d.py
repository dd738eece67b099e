"""Tests that kill hand-made mutants the rest of the suite let through (round 66d: a second pass over the SDK core,
preprocessing and the Recognizer facade, after round 64's first pass over the core runtime).

Each test checks a behaviour of ``fsrfer_edge.preprocessing``, ``fsrfer_edge.recognizer`` or ``fsrfer_edge.fileio``
that a user depends on but would not notice at once when it broke: the colour-to-gray weights and the channel order of
RGB faces, the pixel and option limits at their exact values, and (below) the Recognizer's handling of batches. Tiny
synthetic arrays; CPU only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from fsrfer_edge.backends import BackendClosedError
from fsrfer_edge.errors import InputError, ModelError
from fsrfer_edge.preprocessing import (MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, Corrections, Preprocessing, check_pixels,
                                      resize)
from fsrfer_edge.recognizer import Recognizer, fast_pixels, resolve_model_path


def _flat_rgb(rgb: tuple[int, int, int], side: int = 48) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (side, side, 3)).copy()


# -- colour faces: RGB in channel order, BT.601 weights for a gray model ---------------------------------------------
@pytest.mark.parametrize("rgb, gray", [((255, 0, 0), 0.299 * 255), ((0, 0, 255), 0.114 * 255),
                                       ((0, 255, 0), 0.587 * 255)])
def test_a_gray_model_reads_an_rgb_face_with_the_bt601_weights_in_rgb_order(rgb: tuple[int, int, int],
                                                                           gray: float) -> None:
    """Mutant: the luma weights in BGR order (0.114, 0.587, 0.299), as for an OpenCV frame: a red face came out as
    dark as a blue one should (29 grey levels, not 76), and every colour face the app passed was read wrongly."""
    out = Preprocessing().to_pixels(_flat_rgb(rgb), corrections=Corrections.none())
    assert out.shape == (1, 1, 48, 48)
    np.testing.assert_allclose(out, gray, atol=0.01)


def test_an_rgb_model_gets_the_channels_in_rgb_order() -> None:
    """Mutant: the channels of an HxWx3 face reversed (BGR) before they became the model's C axis: an RGB model saw
    red faces as blue."""
    out = Preprocessing(channels=3).to_pixels(_flat_rgb((200, 100, 10)), corrections=Corrections.none())
    assert out.shape == (1, 3, 48, 48)
    np.testing.assert_allclose(out[0, :, 0, 0], [200.0, 100.0, 10.0], atol=1e-3)
    np.testing.assert_allclose(out[0].reshape(3, -1).std(axis=1), 0.0, atol=1e-3)


# -- the pixel contract's size limits, at their exact values --------------------------------------------------------
def test_an_image_of_exactly_max_image_pixels_is_accepted_and_one_more_row_is_refused() -> None:
    """Mutant: ``>=`` for ``>`` in check_pixels' limit: an 8192 x 8192 frame, the largest the docs promise, was
    refused. (Broadcast views: no 64 MB array is made.)"""
    side = int(np.sqrt(MAX_IMAGE_PIXELS))
    check_pixels(np.broadcast_to(np.uint8(0), (side, side)))
    with pytest.raises(InputError, match="8192x8192"):
        check_pixels(np.broadcast_to(np.uint8(0), (side + 1, side)))
    check_pixels(np.broadcast_to(np.uint8(0), (1, MAX_IMAGE_SIDE)))
    with pytest.raises(InputError, match="a side"):
        check_pixels(np.broadcast_to(np.uint8(0), (1, MAX_IMAGE_SIDE + 1)))


def test_soften_jpeg_takes_exactly_3_crop_pixels_and_refuses_more() -> None:
    """Mutant: ``< 3`` for ``<= 3``: Corrections(soften_jpeg=3), the top of the documented range [0, 3], was
    refused."""
    assert Corrections(soften_jpeg=3).soften_jpeg == 3.0
    assert Corrections(soften_jpeg=3.0).soften_jpeg == 3.0
    with pytest.raises(InputError, match=r"\[0, 3\]"):
        Corrections(soften_jpeg=3.001)


# -- the Recognizer facade, on a stand-in backend --------------------------------------------------------------------
def _backend(max_batch: "int | None" = None) -> Any:
    """A backend whose logits for a row are its first input value in class 0 (so order and chunks show), 0 else;
    ``max_batch``: the largest batch it takes (an engine built for at most that many)."""
    from fsrfer_edge.backends.base import Backend
    from fsrfer_edge.metadata import ModelInfo

    class Stand(Backend):
        name = "stand-in"

        def __init__(self) -> None:
            super().__init__()
            self._info = ModelInfo()
            self._max_batch = max_batch
            self.seen: list[int] = []

        def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
            self.seen.append(len(batch))
            out = np.zeros((len(batch), 7), np.float32)
            out[:, 0] = batch.reshape(len(batch), -1)[:, 0]
            return out

        def _close_impl(self) -> None:
            pass

    return Stand()


def _attached(backend: Any, max_batch: int = 64) -> Recognizer:
    r = Recognizer.__new__(Recognizer)
    r._attach(backend, max_batch)
    return r


def test_max_batch_is_capped_at_the_models_own_limit() -> None:
    """Mutant: ``max`` for ``min`` of the requested max_batch and the model's limit: on an engine built for at most
    4 faces, Recognizer(max_batch=64) sent batches of up to 64, which the engine refused."""
    b = _backend(max_batch=4)
    r = _attached(b, 64)
    assert r.max_batch == 4
    batch = np.arange(10, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 48, 48), np.float32)
    logits = r.predict_logits(batch)
    assert logits[:, 0].tolist() == list(range(10))
    assert b.seen == [4, 4, 2]
    assert len(r.predict([np.full((48, 48), 100 + i, np.uint8) for i in range(6)])) == 6


def test_jpeg_flags_fewer_than_the_faces_are_refused() -> None:
    """Mutant: only more flags than faces refused: two flags for three faces were taken, and the confidence then
    dropped them all without a word."""
    r = _attached(_backend())
    faces = [np.full((48, 48), v, np.uint8) for v in (10, 20, 30)]
    with pytest.raises(InputError, match="2 flags for 3 faces"):
        r.predict(faces, jpeg=[True, False])
    with pytest.raises(InputError, match="4 flags for 3 faces"):
        r.predict(faces, jpeg=[True, False, True, False])
    assert len(r.predict(faces, jpeg=[True, False, True])) == 3


def test_entering_a_closed_recognizer_is_a_closed_error() -> None:
    """Mutant: __enter__ without its check: ``with rec:`` on a closed Recognizer went in, and the error came only
    at the first predict inside."""
    r = _attached(_backend())
    with r:
        pass
    with pytest.raises(BackendClosedError, match="closed"):
        with r:
            pass


def test_prepare_refuses_a_list_of_masked_input_size_crops() -> None:
    """Mutant: the fast path for input-size uint8 crops took masked arrays in a list: ``prepare`` read the pixels
    under the mask as they were, where every other path refuses them."""
    r = _attached(_backend())
    mask = np.zeros((48, 48), bool)
    mask[3, 4] = True
    rng = np.random.default_rng(5)  # crops the fast path takes (no repeated lines, no low contrast)
    crop = np.ma.masked_array(rng.integers(0, 256, (48, 48)).astype(np.uint8), mask=mask)
    other = rng.integers(0, 256, (48, 48)).astype(np.uint8)
    assert fast_pixels([crop.data, other], r.info.preprocessing) is not None
    with pytest.raises(InputError, match="masked"):
        r.prepare([crop, other])
    with pytest.raises(InputError, match="masked"):
        r.prepare([crop])
    assert fast_pixels([crop], r.info.preprocessing) is None


@pytest.mark.parametrize("name", ["m.ENGINE", "m.Plan"])
def test_a_model_suffix_in_capitals_is_accepted(tmp_path: Path, name: str) -> None:
    """Mutant: the suffix compared as written: an engine saved as ``m.ENGINE`` (a Windows tool, a FAT card) was
    refused as an unsupported suffix."""
    path = tmp_path / name
    path.write_bytes(b"engine bytes")
    assert resolve_model_path(path) == path
    with pytest.raises(ModelError, match="suffix"):
        resolve_model_path(tmp_path / "m.ONX")


def test_a_big_endian_batch_gives_the_logits_of_the_same_values_in_native_order() -> None:
    """Mutant: predict_logits without its byte-order step: a batch read from a big-endian file (``>f4``) was
    refused (or read with its bytes swapped) though its values are a valid batch."""
    r = _attached(_backend())
    batch = np.linspace(-1, 1, 3)[:, None, None, None].astype(np.float32) * np.ones((1, 1, 48, 48), np.float32)
    np.testing.assert_array_equal(r.predict_logits(batch.astype(">f4")), r.predict_logits(batch))


@pytest.fixture(scope="module")
def rec4() -> Iterator[Recognizer]:
    pytest.importorskip("onnxruntime")
    with Recognizer(threads=1, spinning=False, max_batch=4) as r:
        assert r.score_calibration is not None
        yield r


def test_a_later_chunk_reads_its_own_faces_sizes(rec4: Recognizer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: every chunk's confidences read the sides of the call's first chunk: a call of more faces than a chunk
    gave the faces after it the factor (and so the confidence) of the faces at the start of the call."""
    import fsrfer_edge.recognizer as recognizer

    rng = np.random.default_rng(6)
    faces = [rng.integers(0, 256, (side, side)).astype(np.uint8) for side in (12, 12, 12, 12, 24, 6)]
    monkeypatch.setattr(recognizer, "PREDICT_CHUNK", 4, raising=False)
    chunked = rec4.predict(faces, jpeg=False)
    assert [p.factor for p in chunked] == [4.0, 4.0, 4.0, 4.0, 2.0, 8.0]
    monkeypatch.setattr(recognizer, "PREDICT_CHUNK", 1024, raising=False)
    assert [p.confidence for p in chunked] == [p.confidence for p in rec4.predict(faces, jpeg=False)]


def test_a_crop_marked_as_jpeg_keeps_the_factor_of_its_side(rec4: Recognizer) -> None:
    """Mutant: the size estimate taken for every input-size crop, JPEG or not: a crop the caller marked as cut from
    a JPEG image was read at the estimate's size, where the calibration's JPEG maps expect the factor of its side
    (Prediction.confidence's docs)."""
    assert rec4.score_calibration is not None and rec4.score_calibration.size_weights is not None
    rng = np.random.default_rng(7)
    small = rng.integers(0, 256, (12, 12)).astype(np.float32)
    crop = np.clip(np.rint(resize(small, (48, 48), "bicubic")), 0, 255).astype(np.uint8)  # enlarged x4 by an app
    plain, = rec4.predict(crop, jpeg=False)
    marked, = rec4.predict(crop, jpeg=True)
    assert plain.factor is not None and plain.factor > 1.5  # read from the pixels: a small face
    assert marked.factor == 1.0 and marked.jpeg is (rec4.score_calibration.jpeg_params is not None)


def test_a_recognizer_that_fails_after_opening_its_backend_closes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: __init__ without its ``opened.close()``: a Recognizer refused after its model was opened (a score
    calibration of another model, say) left the session and its memory open until the garbage collector came."""
    import fsrfer_edge.recognizer as recognizer

    b = _backend()
    monkeypatch.setattr(recognizer, "resolve_model_path", lambda model: Path("m.onnx"))
    monkeypatch.setattr(recognizer, "open_backend", lambda *a, **k: b)

    def refuse(*a: Any, **k: Any) -> None:
        raise ModelError("the score calibration belongs to another model")

    monkeypatch.setattr(recognizer, "_resolve_confidence", refuse)
    with pytest.raises(ModelError, match="another model"):
        Recognizer("m.onnx")
    assert b.closed


def test_a_crop_that_is_not_square_is_read_at_its_longer_side(rec4: Recognizer) -> None:
    """Mutant: each crop's side taken as its shorter one: a 12 x 24 face (centred in a 24 px square, as resized)
    was read at factor 4, as a 12 px face, and its confidence at the wrong size."""
    rng = np.random.default_rng(8)
    tall, wide = rng.integers(0, 256, (24, 12)).astype(np.uint8), rng.integers(0, 256, (12, 24)).astype(np.uint8)
    assert [p.factor for p in rec4.predict([tall, wide], jpeg=False)] == [2.0, 2.0]


def test_faces_are_resized_with_the_models_own_kernel() -> None:
    """Mutant: to_pixels resizing with the default bicubic kernel whatever the model's metadata says: a model
    trained on bilinear (or box) resizing got other inputs than it was trained on."""
    face = np.random.default_rng(9).integers(0, 256, (20, 20)).astype(np.uint8)
    none = Corrections.none()
    for kernel in ("bilinear", "box"):
        out = Preprocessing(resize_kernel=kernel).to_pixels(face, corrections=none)
        expected = np.clip(resize(face, (48, 48), kernel), 0, 255)
        np.testing.assert_allclose(out[0, 0], expected, atol=1e-4)
        assert np.abs(out[0, 0] - np.clip(resize(face, (48, 48), "bicubic"), 0, 255)).max() > 1.0


def test_sessions_without_providers_ask_onnx_runtime_for_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: open_backend without ``providers="cpu"`` implied by ``sessions=``: on a machine with onnxruntime-gpu
    the sessions were asked of the default providers (CUDA first), where the docs promise CPU sessions."""
    import fsrfer_edge.backends.onnxruntime_backend as ort_backend
    from fsrfer_edge.recognizer import open_backend

    got: dict[str, Any] = {}

    def backend(path: Path, **kw: Any) -> Any:
        got.update(kw)
        return _backend()

    monkeypatch.setattr(ort_backend, "OnnxRuntimeBackend", backend)
    open_backend("m.onnx", "onnxruntime", sessions=2)
    assert got["providers"] == "cpu" and got["sessions"] == 2
    open_backend("m.onnx", "onnxruntime", sessions=2, providers="cuda")
    assert got["providers"] == "cuda"


@pytest.mark.parametrize("spinning", [0, "no", None])
def test_a_spinning_that_is_not_a_bool_is_refused_before_the_model_opens(monkeypatch: pytest.MonkeyPatch,
                                                                         spinning: Any) -> None:
    """Mutant: Recognizer without its check of ``spinning``: ``spinning="no"`` (truthy) went on to the backend,
    which kept its threads spinning: the opposite of what was asked, without a word."""
    import fsrfer_edge.recognizer as recognizer

    opened: list[Any] = []
    monkeypatch.setattr(recognizer, "resolve_model_path", lambda model: Path("m.onnx"))

    def open_backend(*a: Any, **k: Any) -> Any:
        opened.append(a)
        return _backend()

    monkeypatch.setattr(recognizer, "open_backend", open_backend)
    with pytest.raises(InputError, match="spinning"):
        Recognizer("m.onnx", spinning=spinning, confidence=None)
    assert opened == []


# -- fileio: the files read beside a model, and temporary names -----------------------------------------------
def test_a_sidecar_of_exactly_the_byte_limit_is_read_and_one_byte_more_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: ``>=`` for ``>``: a sidecar of exactly MAX_SIDECAR_BYTES was refused as over the limit."""
    import fsrfer_edge.fileio as fileio

    monkeypatch.setattr(fileio, "MAX_SIDECAR_BYTES", 8)
    ok, big = tmp_path / "ok.json", tmp_path / "big.json"
    ok.write_text('{"a": 1}')
    big.write_text('{"a": 10}')
    assert fileio.read_sidecar_text(ok, "sidecar") == '{"a": 1}'
    with pytest.raises(ModelError, match="over 8 bytes"):
        fileio.read_sidecar_text(big, "sidecar")


def test_a_long_name_is_cut_at_a_character_boundary_within_the_byte_limit() -> None:
    """Mutant: the cut bytes decoded with 'replace': a name cut inside a two-byte character gained a three-byte
    U+FFFD, went over the limit, and was no prefix of the name."""
    from fsrfer_edge.fileio import short_name

    name = "a" * 199 + "\u00e9" + "b"
    cut = short_name(name, 200)
    assert cut == "a" * 199 and len(cut.encode()) <= 200
    assert short_name("face.onnx", 200) == "face.onnx"
