"""A seeded face-like gray blob for tests of the confidence (no FER faces in tests' files)."""
from __future__ import annotations

import numpy as np


def blob_face(side: int, seed: int = 0) -> np.ndarray:
    """A smooth seeded 48 px blob with a darker mouth, bicubic-shrunk to ``side`` pixels: (side, side) uint8."""
    from fsrfer_edge.preprocessing import resize_square

    yy, xx = np.mgrid[0:48, 0:48]
    rng = np.random.default_rng(seed)
    img = 120 + 60 * np.exp(-((yy - 24) ** 2 + (xx - 24) ** 2) / 300.0) + rng.normal(0, 8, (48, 48))
    img[30:34, 16:32] -= 50                                                 # a mouth
    img = np.clip(img, 0, 255)
    return np.clip(np.rint(resize_square(img[None], side)[0]), 0, 255).astype(np.uint8)
