"""A float face scaled to [0, 1] and then resampled (bicubic and Lanczos overshoot a little: values such as -0.02 and
1.03) was read on the 0..255 scale as an almost black face, or refused with advice (clip to [0, 255]) that led to
exactly that. Such a face is refused as one scaled to [0, 1], whatever the overshoot."""
from __future__ import annotations

import numpy as np
import pytest

from fsrfer_edge.errors import InputError
from fsrfer_edge.preprocessing import check_pixels


def _overshooting_face() -> np.ndarray:
    """A [0, 1] face enlarged with a cubic kernel, as cv2.resize(..., INTER_CUBIC) gives it: a little outside."""
    rng = np.random.default_rng(0)
    face = rng.random((12, 12)).astype(np.float32)
    face[0, 0], face[0, 1] = 1.03, -0.02
    return face


@pytest.mark.parametrize("lo, hi", [(0.0, 1.02), (-0.02, 1.03), (-0.3, 1.5), (0.1, 2.0)])
def test_a_float_face_resampled_from_0_1_is_refused_as_scaled_to_0_1(lo: float, hi: float) -> None:
    face = np.linspace(lo, hi, 144, dtype=np.float32).reshape(12, 12)
    with pytest.raises(InputError, match=r"looks scaled to \[0, 1\].*Multiply by 255"):
        check_pixels(face, "face")


def test_the_overshooting_face_is_not_told_to_clip_to_255() -> None:
    with pytest.raises(InputError) as err:
        check_pixels(_overshooting_face(), "face")
    assert "np.clip(image, 0, 255)" not in str(err.value) and "255" in str(err.value)


@pytest.mark.parametrize("lo, hi", [(0.0, 255.0), (0.0, 3.0), (2.5, 40.0), (0.0, 0.0)])
def test_floats_on_the_0_255_scale_are_still_taken(lo: float, hi: float) -> None:
    check_pixels(np.linspace(lo, hi, 144, dtype=np.float32).reshape(12, 12), "face")


@pytest.mark.parametrize("lo, hi", [(-5.0, 200.0), (0.0, 260.0)])
def test_floats_outside_0_255_are_refused_as_before(lo: float, hi: float) -> None:
    with pytest.raises(InputError, match=r"expected floats in \[0, 255\]"):
        check_pixels(np.linspace(lo, hi, 144, dtype=np.float32).reshape(12, 12), "face")


def test_a_float_tiff_resampled_from_0_1_is_refused_as_scaled_to_0_1(tmp_path) -> None:
    Image = pytest.importorskip("PIL.Image")
    from fsrfer_edge.detection.frames import read_image

    path = tmp_path / "face.tif"
    Image.fromarray(np.linspace(-0.02, 1.03, 48 * 48, dtype=np.float32).reshape(48, 48), mode="F").save(path)
    with pytest.raises(InputError, match=r"look scaled to \[0, 1\]"):
        read_image(path)
