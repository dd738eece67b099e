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
from typing import Any, Iterable, Sequence, Union

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


@functools.lru_cache(maxsize=256)
def resize_matrix(n_in: int, n_out: int, kernel: str = "bicubic", antialias: bool = True) -> np.ndarray:
    """Return the (n_out, n_in) matrix that resamples a 1-D signal of length n_in to n_out.

    With ``antialias`` the kernel is widened by the down-sampling scale (as PIL does), so
    down-sampling averages over the source pixels instead of aliasing.
    """
    if n_in < 1 or n_out < 1:
        raise InputError(f"cannot resize a length-{n_in} axis to length {n_out}; both must be >= 1")
    if kernel not in _KERNELS:
        raise InputError(f"unknown resize kernel {kernel!r}; expected one of {sorted(_KERNELS)}")
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
    w = w / w.sum(axis=1, keepdims=True)
    return w.astype(np.float32)


def resize(img: np.ndarray, size: tuple[int, int], kernel: str = "bicubic", antialias: bool = True) -> np.ndarray:
    """Resize the last two axes of ``img`` (..., H, W) to ``size`` = (h, w); float32 out."""
    h, w = size
    my = resize_matrix(img.shape[-2], h, kernel, antialias)
    mx = resize_matrix(img.shape[-1], w, kernel, antialias)
    return (my @ img.astype(np.float32) @ mx.T).astype(np.float32)


def degrade(img: np.ndarray, factor: int, kernel: str = "bicubic") -> np.ndarray:
    """Low-resolution version of faces (..., H, W): down-sample by ``factor``, resize back.

    Factor 1 returns the faces unchanged (as float32). The low-resolution side is
    ``round(H / factor)`` pixels, e.g. 48 px faces at x4 become 12 px, as ``../shared/data`` describes.
    """
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise InputError(f"down-sample factor must be an integer >= 1, got {factor!r}")
    h, w = img.shape[-2:]
    if factor == 1:
        return img.astype(np.float32)
    small = (max(1, round(h / factor)), max(1, round(w / factor)))
    lr = resize(img, small, kernel, antialias=True)
    return resize(lr, (h, w), kernel, antialias=True)


# --------------------------------------------------------------------------------------------
# Preprocessing description (written into model metadata)
# --------------------------------------------------------------------------------------------
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

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["classes"] = list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise InputError(f"unknown preprocessing keys {sorted(unknown)}; expected a subset of {sorted(fields)}")
        kw = dict(d)
        if "classes" in kw:
            kw["classes"] = tuple(kw["classes"])
        return cls(**kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    # -- normalisation -------------------------------------------------------------------
    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """Map pixel values in [0, 255] to the model's normalised float32 input."""
        return ((pixels.astype(np.float32) / 255.0 - self.mean) / self.std).astype(np.float32)

    # -- faces -> batch ------------------------------------------------------------------
    def to_pixels(self, faces: FaceInput) -> np.ndarray:
        """Validate faces and return an (N, C, S, S) float32 batch of pixel values in [0, 255].

        Accepts one face (HxW gray or HxWx3 RGB), a list of faces of any sizes, or an
        NxHxW[x3] array; uint8, or float in [0, 255].

        Raises:
            InputError: on an empty batch, a wrong dtype, rank or channel count, a 0-size image,
                or NaN/infinite values.
        """
        items = list(_split_faces(faces))
        if not items:
            raise InputError("received an empty batch of faces; expected at least one face")
        s = self.input_size
        out = np.empty((len(items), self.channels, s, s), dtype=np.float32)
        for i, face in enumerate(items):
            g = _as_image(face, i, self.channels)
            out[i] = resize(g, (s, s), self.resize_kernel, antialias=True)
        np.clip(out, 0.0, 255.0, out=out)
        return out

    def prepare(self, faces: FaceInput) -> np.ndarray:
        """``to_pixels`` followed by ``normalize``: the float32 NCHW model input."""
        return self.normalize(self.to_pixels(faces))


DEFAULT_PREPROCESSING = Preprocessing()


def _split_faces(faces: FaceInput) -> Iterable[np.ndarray]:
    if isinstance(faces, np.ndarray):
        if faces.ndim == 2 or (faces.ndim == 3 and faces.shape[-1] in (1, 3, 4)):
            # One HxW or HxWxC image. An NxHxW stack of faces 1, 3 or 4 pixels wide would be
            # ambiguous; no detector produces those, so a last axis of 1/3/4 means channels.
            return [faces]
        if faces.ndim == 3 or faces.ndim == 4:
            return list(faces)
        raise InputError(
            f"received an array of shape {faces.shape}; expected HxW, HxWx3, NxHxW or NxHxWx3"
        )
    if isinstance(faces, (list, tuple)):
        return list(faces)
    raise InputError(
        f"received {type(faces).__name__}; expected a numpy array (HxW, HxWx3, NxHxW, NxHxWx3) "
        "or a list of such face images"
    )


def _as_image(face: Any, index: int, channels: int) -> np.ndarray:
    """Validate one face and return it as a (channels, H, W) float32 array."""
    if not isinstance(face, np.ndarray):
        raise InputError(f"face {index} is a {type(face).__name__}; expected a numpy array")
    if face.dtype != np.uint8 and not np.issubdtype(face.dtype, np.floating):
        raise InputError(
            f"face {index} has dtype {face.dtype}; expected uint8 (or float in [0, 255]). "
            "Convert with np.clip(face, 0, 255).astype(np.uint8)"
        )
    if face.ndim == 3 and face.shape[-1] == 1:
        face = face[..., 0]
    if face.ndim == 3 and face.shape[-1] != 3:
        raise InputError(
            f"face {index} has shape {face.shape} ({face.shape[-1]} channels); expected HxW gray or "
            "HxWx3 RGB. Drop an alpha channel with face[..., :3]"
        )
    if face.ndim not in (2, 3):
        raise InputError(f"face {index} has shape {face.shape}; expected HxW gray or HxWx3 RGB")
    if face.shape[0] == 0 or face.shape[1] == 0:
        raise InputError(f"face {index} has shape {face.shape}: a 0-size image; expected at least 1x1 pixels")
    f = face.astype(np.float32, copy=False)
    if face.dtype != np.uint8 and not np.all(np.isfinite(f)):
        raise InputError(f"face {index} contains NaN or infinite values; expected pixel values in [0, 255]")
    if channels == 1:
        g = f @ _LUMA if f.ndim == 3 else f
        return g[None]
    if f.ndim == 2:
        return np.repeat(f[None], 3, axis=0)
    return np.moveaxis(f, -1, 0)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32."""
    z = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
