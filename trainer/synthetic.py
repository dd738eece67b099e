"""Procedurally drawn 48x48 'faces' whose expression class shows in the mouth, brows and eyes.

For tests and offline demos only: a model can learn them, and their expression cues shrink with the
face like real ones do, so accuracy falls with the down-sample factor. They are not real faces.
"""
from __future__ import annotations

import numpy as np

from fsrfer_edge.errors import InputError

# Per class: (mouth curve, mouth open, brow tilt, eye size)
_CUES = {
    0: (-0.3, 0.1, 0.6, 0.8),   # angry
    1: (-0.5, 0.0, 0.3, 0.6),   # disgust
    2: (-0.1, 0.5, -0.5, 1.3),  # fear
    3: (0.7, 0.2, 0.0, 0.9),    # happy
    4: (-0.6, 0.0, -0.3, 0.8),  # sad
    5: (0.0, 0.9, -0.6, 1.4),   # surprise
    6: (0.0, 0.0, 0.0, 1.0),    # neutral
}


def make_faces(n: int, seed: int = 0, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Return (images (n, size, size) uint8, labels (n,) int64).

    Raises:
        InputError: ``n`` or ``seed`` not an integer >= 0, or ``size`` not an integer >= 1.
    """
    for name, value, low in (("n", n, 0), ("seed", seed, 0), ("size", size, 1)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
            raise InputError(f"make_faces() received {name}={value!r}; expected an integer >= {low}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, n)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images = np.empty((n, size, size), np.uint8)
    for i, c in enumerate(labels):
        curve, open_, tilt, eye = (v + rng.normal(0, 0.08) for v in _CUES[int(c)])
        cx, cy = 0.5 + rng.normal(0, 0.03), 0.5 + rng.normal(0, 0.03)
        skin = rng.uniform(110, 190)
        img = np.full((size, size), rng.uniform(20, 80), np.float32)
        face = ((xx - cx) / 0.38) ** 2 + ((yy - cy) / 0.46) ** 2 < 1
        img[face] = skin
        for side in (-1, 1):
            ex, ey = cx + side * 0.15, cy - 0.1
            r = 0.045 * eye
            img[((xx - ex) ** 2 + (yy - ey) ** 2) < r * r] = 30
            brow = (np.abs(xx - ex) < 0.08) & (np.abs(yy - (ey - 0.09 + side * tilt * (xx - ex) * 0.8)) < 0.018)
            img[brow] = 40
        mx = xx - cx
        mouth_y = cy + 0.22 - curve * (0.25 - 4 * mx ** 2) * 0.3
        mouth = (np.abs(mx) < 0.14) & (np.abs(yy - mouth_y) < 0.018 + 0.05 * open_ * (1 - (mx / 0.14) ** 2))
        img[mouth] = 35
        img += rng.normal(0, 6, img.shape)
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)
