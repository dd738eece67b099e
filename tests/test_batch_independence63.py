"""A face's prediction is its own: the same alone as among any other faces, however the batch is run.

The shipped default model on ONNX Runtime (CPU), with tiny synthetic faces of 6 to 96 px, gray and RGB, uint8 and
float, among them crops that the SDK's corrections change (enlarged by repeating pixels or bilinearly, JPEG images,
faces of low contrast). Each face's label, index, score, probs, confidence, factor and JPEG mark are compared with
those of ``predict([face])``: inside mixed lists in any order, split by ``max_batch`` (a last chunk of one), shared
between two sessions, through ``predict_logits(prepare(...))``, with ``jpeg`` flags, and after other calls. Then the
crowd path: a frame's result does not depend on the frames analysed before it.
"""
from __future__ import annotations

import io
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from fsrfer_edge import Prediction, Recognizer
from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from fsrfer_edge.preprocessing import (CONTRAST_FLOOR, FLAT_FACE_STD, contrast_stats, jpeg_quality, resize_matrix,
                                       resize_square, undo_linear_enlarging, undo_pixel_repetition)

from _faces import blob_face  # tests/ is on sys.path

#: float32 rounding of probabilities and confidences (the model's logits differ in the last bits by batch size).
TOL = 1e-5

# The JPEG standard's luminance table (Annex K): libjpeg's table at quality 50.
_LUMA_Q50 = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64).reshape(8, 8)


def _dct() -> np.ndarray:
    k = np.arange(8)
    d = np.sqrt(2 / 8) * np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16)
    d[0] /= np.sqrt(2)
    return d


def _jpeg_like(img: np.ndarray) -> np.ndarray:
    """A gray crop as a quality-50 JPEG codec leaves it: each whole 8x8 block's DCT quantised, decoded, rounded."""
    d, out = _dct(), img.astype(np.float64)
    h, w = img.shape
    for y in range(0, h - h % 8, 8):
        for x in range(0, w - w % 8, 8):
            c = d @ (out[y:y + 8, x:x + 8] - 128.0) @ d.T
            out[y:y + 8, x:x + 8] = d.T @ (np.rint(c / _LUMA_Q50) * _LUMA_Q50) @ d + 128.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _low(img: np.ndarray, k: float = 0.2) -> np.ndarray:
    f = img.astype(np.float64)
    return np.clip(np.rint(f.mean() + (f - f.mean()) * k), 0, 255).astype(np.uint8)


def _noisy(side: int, seed: int) -> np.ndarray:
    """A face with detail a bilinear enlarging keeps recognisable (a smooth blob is near every enlarging)."""
    noise = np.random.default_rng(seed).normal(0, 25, (side, side))
    return np.clip(blob_face(side, seed) + noise, 0, 255).astype(np.uint8)


def _bilinear(img: np.ndarray, side: int) -> np.ndarray:
    m = resize_matrix(img.shape[0], side, "bilinear", False)  # OpenCV's INTER_LINEAR
    return np.clip(np.rint(m @ img.astype(np.float32) @ m.T), 0, 255).astype(np.uint8)


def _repeated(img: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1)


def _rgb(img: np.ndarray, seed: int) -> np.ndarray:
    tint = np.random.default_rng(seed).uniform(0.8, 1.2, 3)
    return np.clip(np.rint(img[..., None] * tint), 0, 255).astype(np.uint8)


def _zoo() -> dict[str, np.ndarray]:
    faces: dict[str, np.ndarray] = {}
    for i, s in enumerate((6, 8, 12, 16, 24, 32, 48, 64, 96)):
        faces[f"gray{s}"] = blob_face(s, i)
    for i, s in enumerate((6, 16, 48, 96)):
        faces[f"rgb{s}"] = _rgb(blob_face(s, 20 + i), i)
    for i, s in enumerate((8, 24, 48, 64)):
        faces[f"low{s}"] = _low(blob_face(s, 40 + i))
    faces["float32_24"] = blob_face(24, 50).astype(np.float32)
    faces["float64_48"] = blob_face(48, 51).astype(np.float64) + 0.3
    faces["float64_rgb12"] = _rgb(blob_face(12, 52), 5).astype(np.float64)
    faces["repeated12to48"] = _repeated(blob_face(12, 60), 4)
    faces["repeated16to48"] = _repeated(blob_face(16, 61), 3)
    faces["repeated8to64"] = _repeated(blob_face(8, 62), 8)
    faces["low_repeated12to48"] = _repeated(_low(blob_face(12, 63)), 4)
    faces["bilinear12to48"] = _bilinear(_noisy(12, 64), 48)
    faces["bilinear8to32"] = _bilinear(_noisy(8, 65), 32)
    faces["bilinear16to64"] = _bilinear(_noisy(16, 66), 64)
    faces["low_bilinear12to48"] = _low(_bilinear(_noisy(12, 67), 48), 0.3)
    faces["rgb_bilinear12to48"] = _rgb(_bilinear(_noisy(12, 68), 48), 6)
    faces["jpeg16"] = _jpeg_like(blob_face(16, 70))
    faces["jpeg24"] = _jpeg_like(blob_face(24, 71))
    faces["jpeg48"] = _jpeg_like(blob_face(48, 72))
    faces["low_jpeg48"] = _jpeg_like(_low(blob_face(48, 73), 0.25))
    faces["noisy48"] = _noisy(48, 74)
    faces["wide40x48"] = blob_face(48, 75)[4:44, :]
    faces["flat48"] = np.full((48, 48), 117, np.uint8)
    return faces


ZOO = _zoo()
NAMES = list(ZOO)
#: The crops at the model's input size as uint8 gray: the recogniser's fast path, which leaves the whole batch to
#: the full preprocessing where one crop needs a correction.
INPUT_SIZE = [n for n in NAMES if ZOO[n].shape == (48, 48) and ZOO[n].dtype == np.uint8]


@pytest.fixture(scope="module")
def rec() -> Iterator[Recognizer]:
    with Recognizer(threads=1, spinning=False) as r:  # the shipped default model, with its score calibration
        assert r.score_calibration is not None and r.score_calibration.size_weights is not None
        assert r.score_calibration.jpeg_params is not None
        yield r


@pytest.fixture(scope="module")
def alone(rec: Recognizer) -> dict[str, Prediction]:
    return {n: rec.predict([ZOO[n]])[0] for n in NAMES}


def _same(got: Prediction, want: Prediction, what: str) -> None:
    assert (got.label, got.index) == (want.label, want.index), what
    assert got.score == pytest.approx(want.score, abs=TOL), what
    np.testing.assert_allclose(got.probs, want.probs, atol=TOL, rtol=0, err_msg=what)
    for field in ("confidence", "factor"):
        g, w = getattr(got, field), getattr(want, field)
        assert (g is None) == (w is None), (what, field, g, w)
        assert g is None or g == pytest.approx(w, abs=TOL), (what, field, g, w)
    assert got.jpeg == want.jpeg, what


def _check(names: list[str], preds: list[Prediction], alone: dict[str, Prediction], what: str) -> None:
    assert len(preds) == len(names), what
    for i, (n, p) in enumerate(zip(names, preds)):
        _same(p, alone[n], f"{what}: face {i} ({n}) of {names}")


def test_the_faces_are_told_apart_and_take_every_correction(rec: Recognizer, alone: dict[str, Prediction]) -> None:
    # The checks below find a mix-up of faces only where their answers differ.
    probs = np.stack([alone[n].probs for n in NAMES])
    gaps = np.abs(probs[:, None] - probs[None]).max(axis=2) + np.eye(len(NAMES))
    assert gaps.min() > 100 * TOL
    # Each correction is met: crops reduced to their source, JPEG images, dim faces raised, size estimates.
    for n in ("repeated12to48", "repeated16to48", "repeated8to64", "low_repeated12to48"):
        assert undo_pixel_repetition(ZOO[n]).shape[0] < ZOO[n].shape[0], n
    for n in ("bilinear12to48", "bilinear8to32", "bilinear16to64", "low_bilinear12to48"):
        assert undo_linear_enlarging(ZOO[n]).shape[0] < ZOO[n].shape[0], n
    for n in ("jpeg16", "jpeg24", "jpeg48", "low_jpeg48"):
        assert jpeg_quality(ZOO[n]) is not None and alone[n].jpeg is True, n
    for n in ("low8", "low24", "low48", "low64"):
        std = float(contrast_stats(resize_square(ZOO[n].astype(np.float32)[None], 48)[None])[1].item())
        assert FLAT_FACE_STD <= std < CONTRAST_FLOOR, n
    assert alone["repeated12to48"].factor == pytest.approx(4.0)
    assert alone["noisy48"].factor != pytest.approx(1.0)  # the size estimate's, not the side's


def test_each_face_answers_the_same_among_any_faces_in_any_order(rec: Recognizer,
                                                                 alone: dict[str, Prediction]) -> None:
    rng = np.random.default_rng(63)
    lists = [NAMES, NAMES[::-1]]
    lists += [[NAMES[i] for i in rng.permutation(len(NAMES))[:rng.integers(2, len(NAMES) + 1)]] for _ in range(12)]
    for names in lists:
        _check(names, rec.predict([ZOO[n] for n in names]), alone, "mixed list")
    twice = NAMES + NAMES[::-1]  # a face twice in one batch, at two places
    _check(twice, rec.predict([ZOO[n] for n in twice]), alone, "each face twice")


def test_input_size_crops_are_prepared_as_alone_whatever_their_neighbours_need(rec: Recognizer,
                                                                              alone: dict[str, Prediction]) -> None:
    # One crop that needs a correction sends the whole batch to the full preprocessing; the others must come out
    # bit for bit as they do alone, on the fast path.
    single = {n: rec.prepare([ZOO[n]])[0] for n in INPUT_SIZE}
    for a in INPUT_SIZE:
        for b in INPUT_SIZE:
            batch = rec.prepare([ZOO[a], ZOO[b]])
            assert np.array_equal(batch[0], single[a]) and np.array_equal(batch[1], single[b]), (a, b)
        others = [n for n in INPUT_SIZE if n != a]
        names = others[:len(others) // 2] + [a] + others[len(others) // 2:]
        _check(names, rec.predict(np.stack([ZOO[n] for n in names])), alone, "an NxHxW stack")


def test_split_batches_and_two_sessions_give_each_face_its_answer_alone(alone: dict[str, Prediction]) -> None:
    faces = [ZOO[n] for n in NAMES]
    for max_batch in (1, 2, 3, 5):
        with Recognizer(threads=1, spinning=False, max_batch=max_batch) as r:
            n = 3 * max_batch + 1  # a last chunk of one
            _check(NAMES[:n], r.predict(faces[:n]), alone, f"max_batch={max_batch}")
            _check(NAMES, r.predict(faces), alone, f"max_batch={max_batch}")
    for max_batch in (64, 3):
        with Recognizer(sessions=2, max_batch=max_batch, spinning=False) as r:
            assert isinstance(r.backend, OnnxRuntimeBackend) and r.backend.sessions == 2
            for n in (2, 3, len(NAMES)):
                _check(NAMES[:n], r.predict(faces[:n]), alone, f"sessions=2, max_batch={max_batch}")


def test_predict_logits_of_prepare_gives_the_probabilities_predict_does(rec: Recognizer,
                                                                        alone: dict[str, Prediction]) -> None:
    logits = rec.predict_logits(rec.prepare([ZOO[n] for n in NAMES]))
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    for i, n in enumerate(NAMES):
        np.testing.assert_allclose(probs[i], alone[n].probs, atol=TOL, rtol=0, err_msg=n)
        assert int(np.argmax(logits[i])) == alone[n].index, n
    one = rec.predict_logits(rec.prepare(ZOO["repeated12to48"]))
    np.testing.assert_allclose(one[0], logits[NAMES.index("repeated12to48")], atol=1e-4, rtol=0)


@pytest.mark.parametrize("flag", [True, False, None])
def test_one_jpeg_flag_for_a_batch_is_each_face_s_flag_alone(rec: Recognizer, flag: Any) -> None:
    want = {n: rec.predict([ZOO[n]], jpeg=flag)[0] for n in NAMES}
    _check(NAMES, rec.predict([ZOO[n] for n in NAMES], jpeg=flag), want, f"jpeg={flag}")
    if flag is not None:  # the flag is what the face's confidence takes
        assert all(p.jpeg is flag for p in want.values())


def test_jpeg_flags_per_face_are_each_face_s_own(rec: Recognizer) -> None:
    rng = np.random.default_rng(5)
    flags = [bool(f) for f in rng.integers(0, 2, len(NAMES))]
    want = {n: rec.predict([ZOO[n]], jpeg=[f])[0] for n, f in zip(NAMES, flags)}
    for given in (flags, np.array(flags), tuple(flags)):
        _check(NAMES, rec.predict([ZOO[n] for n in NAMES], jpeg=given), want, f"jpeg={type(given).__name__}")
    order = rng.permutation(len(NAMES))
    names = [NAMES[i] for i in order]
    _check(names, rec.predict([ZOO[n] for n in names], jpeg=[flags[i] for i in order]), want, "jpeg, shuffled")
    assert [want[n].jpeg for n in NAMES] == flags


def test_a_call_leaves_nothing_behind_for_the_next(rec: Recognizer, alone: dict[str, Prediction]) -> None:
    for i, n in enumerate(NAMES):
        others = [ZOO[m] for m in NAMES if m != n]
        if i % 3 == 0:
            rec.predict(others[::-1], jpeg=True)
        elif i % 3 == 1:
            rec.predict_logits(rec.prepare(others))
        else:
            rec.predict(np.stack([ZOO[m] for m in INPUT_SIZE if m != n]))
        _same(rec.predict(ZOO[n])[0], alone[n], f"{n} after another call")


def test_the_same_face_as_uint8_or_float_answers_the_same(rec: Recognizer, alone: dict[str, Prediction]) -> None:
    names = [n for n in NAMES if ZOO[n].dtype == np.uint8]
    for dtype in (np.float32, np.float64):
        _check(names, rec.predict([ZOO[n].astype(dtype) for n in names]), alone, str(dtype))
    gray = [n for n in NAMES if ZOO[n].ndim == 2]
    _check(gray, rec.predict([ZOO[n][..., None] for n in gray]), alone, "HxWx1")
    _check(gray, rec.predict([np.asfortranarray(ZOO[n]) for n in gray]), alone, "Fortran order")


# --------------------------------------------------------------------------------------------
# The crowd path
# --------------------------------------------------------------------------------------------
def _jpeg_frame(rgb: np.ndarray) -> np.ndarray:
    image = pytest.importorskip("PIL.Image")
    buf = io.BytesIO()
    image.fromarray(rgb).save(buf, format="JPEG", quality=60)
    return np.asarray(image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _key(result: Any) -> Any:
    faces = [(f.box, f.label, f.index, f.score, f.confidence, f.probs.tobytes()) for f in result.faces]
    return faces, result.summary.to_dict()


def test_a_frame_gives_the_same_result_whatever_was_analysed_before() -> None:
    pytest.importorskip("skimage")
    from fsrfer_edge import crowd_bench
    from fsrfer_edge.crowd import CrowdAnalyzer

    pool = crowd_bench.public_domain_faces()
    scenes = [crowd_bench.make_scene(pool, seed=s, n_faces=5, size=(160, 220), background="clutter",
                                     face_range=(16, 40)) for s in (3, 4)]
    frames = [scenes[0].image, scenes[1].image, _jpeg_frame(scenes[0].image), scenes[1].image[::2, ::2].copy()]
    with CrowdAnalyzer(min_face=12) as a:
        first = [_key(a.analyze(f)) for f in frames]
        assert all(k[0] for k in first[:3])  # faces were found, and recognised
        assert first[0] != first[2]  # the JPEG frame's faces take the maps for compressed faces
        for i, frame in enumerate(frames):
            assert _key(a.analyze(frame)) == first[i], f"frame {i} twice"
            for j, before in enumerate(frames):
                a.analyze(before)
                assert _key(a.analyze(frame)) == first[i], f"frame {i} after frame {j}"
        boxes = [f.box for f in a.analyze(frames[0]).faces]
        given = _key(a.analyze(frames[0], boxes=boxes))
        a.analyze(frames[1], boxes=[(0, 0, 30, 30)])
        assert _key(a.analyze(frames[0], boxes=boxes)) == given
        order = [3, 2, 1, 0, 0, 1, 2, 3]
        streamed = list(a.analyze_stream(iter([frames[i] for i in order]), track=False))
        assert [_key(r) for r in streamed] == [first[i] for i in order]
