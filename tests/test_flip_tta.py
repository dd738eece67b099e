"""scripts/flip_tta.py: the flip average is the mean of the two softmaxes, on the mirror image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from _scripts import load_script

REPO = Path(__file__).resolve().parents[1]


def _module():
    return load_script("scripts/flip_tta.py", "flip_tta")


def test_flip_average_mixes_the_face_and_its_mirror_image():
    mod = _module()
    seen = []

    def fn(x, factor=1):  # class 0 scores the left half, class 1 the right half; the factor scales both
        seen.append(factor)
        w = x.shape[-1] // 2
        return factor * np.stack([x[..., :w].sum((1, 2, 3)), x[..., w:].sum((1, 2, 3))], axis=1)

    x = np.zeros((2, 1, 4, 4), np.float32)
    x[0, ..., :2] = 1.0  # bright left half: class 0; its mirror image says class 1 by the same margin
    x[1, ..., :2] = 1.0
    x[1, ..., 2:] = 0.5
    got = mod.with_flip(fn)(x, 3)
    assert seen == [3, 3]  # both passes get the face's factor
    want = (mod.softmax(fn(x, 3)) + mod.softmax(fn(x[..., ::-1].copy(), 3))) / 2
    np.testing.assert_allclose(np.exp(got), want, rtol=1e-6)
    np.testing.assert_allclose(np.exp(got).sum(1), 1.0, rtol=1e-6)
    assert fn(x, 3).argmax(1)[0] == 0
    np.testing.assert_allclose(np.exp(got)[0], [0.5, 0.5], rtol=1e-6)  # a tie, not the plain answer
