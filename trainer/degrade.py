"""Low-resolution versions of faces for training and evaluation, and HR train-time augmentation.

Numpy only. All down-/up-sampling goes through :mod:`fsrfer_edge.preprocessing` (``degrade`` and
``resize``), so the trainer, the evaluator and the SDK share one resampling kernel.

A face at factor ``f`` is down-sampled to ``round(H / f)`` pixels and resized back to ``H``. With
:class:`DegradeConfig` extras, a Gaussian blur is applied before down-sampling, and Gaussian noise and a
JPEG round-trip are applied to the small image, before resizing back.
"""
from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from fsrfer_edge.errors import ConfigError, InputError, check_flag
from fsrfer_edge.preprocessing import FACTORS, degrade, resize

#: Kernels fsrfer_edge.preprocessing.resize knows ("box" averages, like area down-sampling).
RESIZE_KERNELS: tuple[str, ...] = ("box", "bilinear", "bicubic")


def _check_images(images: np.ndarray, name: str = "images") -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise InputError(f"{name}: received {type(images).__name__}; expected an (N, H, W) numpy array")
    if images.ndim != 3:
        raise InputError(f"{name}: received shape {images.shape}; expected (N, H, W) gray faces")
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise InputError(f"{name}: received dtype {images.dtype}; expected uint8 (or float pixel values in [0, 255])")
    return images


def _check_factor(factor: Any, h: int, w: int) -> int:
    if isinstance(factor, (bool, np.bool_)) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise InputError(f"received down-sample factor {factor!r}; expected an integer >= 1, e.g. one of {FACTORS}")
    if factor > min(h, w):
        raise InputError(f"received factor {factor} for {h}x{w} faces; expected at most {min(h, w)}")
    return int(factor)


def _check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"received rng {type(rng).__name__} {rng!r}; expected a numpy.random.Generator, "
                         "e.g. np.random.default_rng(0)")
    return rng


def _check_number(name: str, v: Any, lo: float, hi: float, hi_open: bool, text: str) -> float:
    """A real number (not a bool) in [lo, hi] (or [lo, hi)), else an InputError naming ``name``."""
    real = not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, float, np.integer, np.floating))
    if not real or not (lo <= v <= hi) or (hi_open and v >= hi):
        raise InputError(f"received {name}={v!r}; expected {text}")
    return float(v)


def _check_pair(name: str, v: Any, lo: float, hi: float, text: str) -> tuple[float, float]:
    """A (low, high) pair of finite numbers with lo < low <= high <= hi, else an InputError naming ``name``."""
    try:
        a, b = (_check_number(name, x, -np.inf, np.inf, False, "") for x in v)
    except (TypeError, ValueError):
        a = b = np.nan
    if not (lo < a <= b <= hi) or not np.isfinite(b):
        raise InputError(f"received {name}={v!r}; expected a (low, high) pair of numbers with {text}")
    return a, b


def _small_size(h: int, w: int, factor: int) -> tuple[int, int]:
    # The same rule as fsrfer_edge.preprocessing.degrade.
    return max(1, round(h / factor)), max(1, round(w / factor))


def lr_versions(images: np.ndarray, factor: int) -> np.ndarray:
    """Low-resolution versions of faces at one factor, at the faces' original size.

    Args:
        images: (N, H, W) uint8 (or float in [0, 255]) gray faces.
        factor: down-sample factor (1 = unchanged), e.g. one of ``FACTORS``.

    Returns:
        (N, H, W) float32 pixel values in [0, 255].

    Raises:
        InputError: on a wrong shape or dtype, or a factor that is not an integer in 1..min(H, W).
    """
    images = _check_images(images)
    f = _check_factor(factor, *images.shape[1:])
    out = degrade(images, f)
    return np.clip(out, 0.0, 255.0, out=out).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# Random degradation for training
# --------------------------------------------------------------------------------------------
def _check_range(name: str, r: Any, lo: float, hi: float | None = None) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in r)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: received {r!r}; expected a (low, high) pair of numbers") from None
    upper = f" and <= {hi}" if hi is not None else ""
    if not (lo <= a <= b) or (hi is not None and b > hi) or not np.isfinite(b):  # uniform() overflows on inf
        raise ConfigError(f"{name}: received ({a}, {b}); expected finite numbers {lo} <= low <= high{upper}")
    return a, b


def _check_prob(name: str, p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ConfigError(f"{name}: received {p!r}; expected a probability in [0, 1]")
    return float(p)


@dataclasses.dataclass(frozen=True)
class DegradeConfig:
    """How :func:`random_lr` degrades each training face. Extras are off by default.

    Attributes:
        factors: down-sample factors, one drawn per face.
        weights: relative probability of each factor (``None`` = uniform).
        blur_prob, blur_sigma: chance of a Gaussian blur before down-sampling, and the range its
            sigma (in HR pixels) is drawn from uniformly.
        noise_prob, noise_sigma: chance of Gaussian noise on the small LR image, and its sigma range in
            pixel values (0..255 scale).
        jpeg_prob, jpeg_quality: chance of a JPEG round-trip of the small LR image, and the quality range
            (integers, inclusive).
        kernels: down-sampling kernels, one drawn per face (``box`` = area averaging, as camera
            pipelines and OpenCV's INTER_AREA do; ``bilinear``; ``bicubic``). The resize back to the
            model's size always uses bicubic, as the SDK does.
        clean_x1: faces drawn at factor 1 get none of the extras (blur, noise, JPEG), so they are the HR
            face itself, as a 48 px crop at full resolution is.
    """

    factors: tuple[int, ...] = FACTORS
    weights: tuple[float, ...] | None = None
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    noise_prob: float = 0.0
    noise_sigma: tuple[float, float] = (2.0, 8.0)
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 90)
    kernels: tuple[str, ...] = ("bicubic",)
    clean_x1: bool = False

    def __post_init__(self) -> None:
        factors = tuple(self.factors) if isinstance(self.factors, (list, tuple)) else None
        if not factors or any(
            isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 1 for f in factors
        ):
            raise ConfigError(f"factors: received {self.factors!r}; expected a non-empty list of integers >= 1")
        object.__setattr__(self, "factors", tuple(int(f) for f in factors))
        if self.weights is not None:
            try:
                w = np.asarray(self.weights, dtype=np.float64)
            except (TypeError, ValueError):
                w = np.array([np.nan])
            if w.shape != (len(factors),) or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
                raise ConfigError(
                    f"weights: received {self.weights!r}; expected {len(factors)} non-negative numbers "
                    f"(one per factor in {factors}) with a positive sum"
                )
            object.__setattr__(self, "weights", tuple(float(x) for x in w))
        for name in ("blur_prob", "noise_prob", "jpeg_prob"):
            object.__setattr__(self, name, _check_prob(name, getattr(self, name)))
        object.__setattr__(self, "blur_sigma", _check_range("blur_sigma", self.blur_sigma, 0.0))
        object.__setattr__(self, "noise_sigma", _check_range("noise_sigma", self.noise_sigma, 0.0))
        q = _check_range("jpeg_quality", self.jpeg_quality, 1, 100)
        if q[0] != int(q[0]) or q[1] != int(q[1]):
            raise ConfigError(f"jpeg_quality: received {self.jpeg_quality!r}; expected integers in 1..100")
        object.__setattr__(self, "jpeg_quality", (int(q[0]), int(q[1])))
        kernels = tuple(self.kernels) if isinstance(self.kernels, (list, tuple)) else ()
        if not kernels or any(k not in RESIZE_KERNELS for k in kernels):
            raise ConfigError(f"kernels: received {self.kernels!r}; expected a non-empty list of {list(RESIZE_KERNELS)}")
        object.__setattr__(self, "kernels", kernels)
        if not isinstance(self.clean_x1, (bool, np.bool_)):
            raise ConfigError(f"clean_x1: received {self.clean_x1!r}; expected true or false")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DegradeConfig:
        """Build from a config mapping (e.g. YAML).

        Raises:
            ConfigError: on an unknown key or an invalid value.
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, Mapping):
            raise ConfigError(f"degrade: received {type(d).__name__} {d!r}; expected a mapping of options, e.g. "
                              "{'factors': [1, 2, 4]}")
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ConfigError(f"degrade: unknown key(s) {unknown}; expected a subset of {sorted(fields)}")
        kw = dict(d)
        for k in ("factors", "weights", "blur_sigma", "noise_sigma", "jpeg_quality", "kernels"):
            if isinstance(kw.get(k), list):
                kw[k] = tuple(kw[k])
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _gaussian_matrices(n: int, sigmas: np.ndarray) -> np.ndarray:
    """(K, n, n) matrices that blur a length-n axis with a Gaussian of each sigma (edges replicated)."""
    radius = int(np.ceil(3.0 * max(float(sigmas.max()), 1e-3)))
    offsets = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (offsets[None, :] / np.maximum(sigmas[:, None], 1e-3)) ** 2)
    k /= k.sum(axis=1, keepdims=True)
    cols = np.clip(np.arange(n)[:, None] + offsets[None, :], 0, n - 1)  # (n, taps)
    m = np.zeros((len(sigmas), n, n))
    rows = np.arange(n)
    for t in range(len(offsets)):
        # Within one tap every (row, col) pair is distinct, so += accumulates correctly.
        m[:, rows, cols[:, t]] += k[:, t:t + 1]
    return m.astype(np.float32)


def _blur(images: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur of (K, H, W) float32 faces, one sigma per face."""
    h, w = images.shape[1:]
    my = _gaussian_matrices(h, sigmas)
    mx = my if w == h else _gaussian_matrices(w, sigmas)
    return my @ images @ np.swapaxes(mx, 1, 2)


def _jpeg(small: np.ndarray, qualities: np.ndarray) -> np.ndarray:
    """JPEG round-trip of (K, h, w) float32 images through PIL at the given qualities."""
    from PIL import Image

    out = np.empty_like(small)
    for i, (img, q) in enumerate(zip(small, qualities)):
        buf = io.BytesIO()
        Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), mode="L").save(buf, "JPEG", quality=int(q))
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im, dtype=np.float32)
    return out


def random_lr(
    images: np.ndarray, cfg: DegradeConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Degrade each face at its own random factor (and random extras).

    Args:
        images: (N, H, W) uint8 (or float in [0, 255]) gray faces.
        cfg: factors, their weights and the extras' probabilities and ranges.
        rng: the random generator; the result depends only on its state.

    Returns:
        ``(lr, factors)``: (N, H, W) float32 pixel values in [0, 255], and the (N,) int64 factor of each face.

    Raises:
        InputError: on a wrong shape or dtype, a configured factor larger than the faces, a ``cfg`` that is not
            a DegradeConfig, or an ``rng`` that is not a numpy Generator.
    """
    images = _check_images(images)
    if not isinstance(cfg, DegradeConfig):
        raise InputError(f"received cfg {type(cfg).__name__} {cfg!r}; expected a DegradeConfig "
                         "(DegradeConfig.from_dict(options) makes one from a mapping)")
    _check_rng(rng)
    n, h, w = (int(s) for s in images.shape)
    for f in cfg.factors:
        _check_factor(f, h, w)
    p = None if cfg.weights is None else np.asarray(cfg.weights) / np.sum(cfg.weights)
    # Every draw happens for every face, whatever the probabilities, so a config change does not
    # shift the random stream of the other choices.
    factors = np.asarray(cfg.factors, dtype=np.int64)[rng.choice(len(cfg.factors), size=n, p=p)]
    blur: np.ndarray = rng.random(size=n) < cfg.blur_prob
    sigma: np.ndarray = rng.uniform(*cfg.blur_sigma, size=n)
    noise: np.ndarray = rng.random(size=n) < cfg.noise_prob
    noise_sigma: np.ndarray = rng.uniform(*cfg.noise_sigma, size=n)
    jpeg: np.ndarray = rng.random(size=n) < cfg.jpeg_prob
    quality: np.ndarray = rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1, size=n)
    # Drawn only when there is a choice, so single-kernel configs keep the random stream they always had.
    kernel = rng.integers(0, len(cfg.kernels), size=n) if len(cfg.kernels) > 1 else np.zeros(n, np.int64)
    if cfg.clean_x1:
        hr = factors == 1
        blur[hr] = noise[hr] = jpeg[hr] = False

    out = np.empty((n, h, w), dtype=np.float32)
    for f, k in sorted(set(zip(factors.tolist(), kernel.tolist()))):
        idx = np.flatnonzero((factors == f) & (kernel == k))
        name = cfg.kernels[k]
        if not (blur[idx].any() or noise[idx].any() or jpeg[idx].any()) and name == "bicubic":
            out[idx] = degrade(images[idx], int(f))
            continue
        x = images[idx].astype(np.float32)
        b = blur[idx]
        if b.any():
            x[b] = _blur(x[b], sigma[idx][b])
        small = x if f == 1 else resize(x, _small_size(h, w, int(f)), name)
        nz = noise[idx]
        if nz.any():
            small[nz] += rng.standard_normal(small[nz].shape).astype(np.float32) * noise_sigma[idx][nz, None, None]
        np.clip(small, 0.0, 255.0, out=small)
        jp = jpeg[idx]
        if jp.any():
            small[jp] = _jpeg(small[jp], quality[idx][jp])
        out[idx] = small if f == 1 else resize(small, (h, w))
    np.clip(out, 0.0, 255.0, out=out)
    return out, factors


# --------------------------------------------------------------------------------------------
# HR augmentation
# --------------------------------------------------------------------------------------------
def _rotate_zoom(images: np.ndarray, angle: np.ndarray, zoom: np.ndarray) -> np.ndarray:
    """Each face rotated by ``angle[i]`` radians about its centre and magnified ``zoom[i]`` times,
    sampled bilinearly with the edge pixels repeated outside; (N, H, W) float32 out."""
    n, h, w = images.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cos = (np.cos(angle) / zoom).astype(np.float32)[:, None, None]
    sin = (np.sin(angle) / zoom).astype(np.float32)[:, None, None]
    # Output pixel p takes the input at centre + R(-angle) (p - centre) / zoom.
    sx = np.clip(cos * (xx - cx) + sin * (yy - cy) + cx, 0.0, w - 1.0)
    sy = np.clip(-sin * (xx - cx) + cos * (yy - cy) + cy, 0.0, h - 1.0)
    x0 = np.minimum(sx.astype(np.int64), w - 2)
    y0 = np.minimum(sy.astype(np.int64), h - 2)
    fx, fy = sx - x0, sy - y0
    img = images.astype(np.float32)
    i = np.arange(n)[:, None, None]
    top = img[i, y0, x0] * (1 - fx) + img[i, y0, x0 + 1] * fx
    bottom = img[i, y0 + 1, x0] * (1 - fx) + img[i, y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def augment_hr(
    images: np.ndarray,
    rng: np.random.Generator,
    flip: bool = True,
    pad: int = 4,
    brightness: float = 0.2,
    contrast: float = 0.2,
    rotate: float = 0.0,
    scale: float = 0.0,
    erase: float = 0.0,
) -> np.ndarray:
    """Train-time augmentation of faces: flip, rotation and scaling, padded random crop,
    brightness/contrast jitter, random erasing.

    Each face is flipped left-right with probability 1/2, padded by ``pad`` pixels (reflect) and
    cropped back to its size at a random offset, scaled by a brightness factor drawn from
    ``[1 - brightness, 1 + brightness]`` and its contrast around its mean scaled by a factor from
    ``[1 - contrast, 1 + contrast]``. With ``rotate`` or ``scale``, each face is first rotated about
    its centre by an angle drawn from ``[-rotate, rotate]`` degrees and zoomed by a factor drawn from
    ``[1 - scale, 1 + scale]`` (bilinear, edge pixels repeated outside the face); with both 0 the
    random stream is that of the plain augmentation, so existing runs reproduce. With ``erase``, each
    face, last, has a rectangle replaced by uniform noise with that probability (:func:`random_erase`).

    Args:
        images: (N, H, W) uint8 (or float in [0, 255]) gray faces.
        rng: the random generator; the result depends only on its state.
        flip, pad, brightness, contrast, rotate, scale, erase: the augmentation's strengths (0 / False
            turns one off).

    Returns:
        Augmented faces of the same shape and dtype (uint8 in, uint8 out; float in, float32 out).

    Raises:
        InputError: on a wrong shape or dtype, a strength that is not a number in its range, a ``flip`` that is
            not a bool, or an ``rng`` that is not a numpy Generator.
    """
    images = _check_images(images)
    n, h, w = (int(s) for s in images.shape)
    _check_rng(rng)
    flip = check_flag("flip", flip)
    if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or pad < 0 or pad >= min(h, w):
        raise InputError(f"received pad={pad!r}; expected an integer in 0..{min(h, w) - 1}")
    for name, v in (("brightness", brightness), ("contrast", contrast)):
        _check_number(name, v, 0.0, 1.0, True, "a jitter in [0, 1)")
    _check_number("rotate", rotate, 0.0, 180.0, False, "an angle in degrees in [0, 180]")
    _check_number("scale", scale, 0.0, 1.0, True, "a zoom range in [0, 1)")
    _check_number("erase", erase, 0.0, 1.0, False, "a probability in [0, 1]")
    do_flip: np.ndarray = rng.random(size=n) < 0.5
    oy: np.ndarray = rng.integers(0, 2 * pad + 1, size=n)
    ox: np.ndarray = rng.integers(0, 2 * pad + 1, size=n)
    bright: np.ndarray = rng.uniform(1.0 - brightness, 1.0 + brightness, size=n).astype(np.float32)
    contr: np.ndarray = rng.uniform(1.0 - contrast, 1.0 + contrast, size=n).astype(np.float32)

    x = images
    if flip:
        x = np.where(do_flip[:, None, None], x[:, :, ::-1], x)
    if rotate or scale:
        angle = np.deg2rad(rng.uniform(-rotate, rotate, size=n))
        zoom = rng.uniform(1.0 - scale, 1.0 + scale, size=n)
        x = _rotate_zoom(x, angle, zoom)
        if images.dtype == np.uint8:
            x = np.rint(x).astype(np.uint8)
    if pad:
        padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
        rows = oy[:, None] + np.arange(h)[None, :]
        cols = ox[:, None] + np.arange(w)[None, :]
        x = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if brightness or contrast:
        y = x.astype(np.float32) * bright[:, None, None]
        mean = y.mean(axis=(1, 2), keepdims=True)
        y = (y - mean) * contr[:, None, None] + mean
        np.clip(y, 0.0, 255.0, out=y)
        x = np.rint(y).astype(np.uint8) if images.dtype == np.uint8 else y
    if erase:
        x = random_erase(x, rng, erase)
    if images.dtype == np.uint8:
        return np.ascontiguousarray(x)
    return np.ascontiguousarray(x, dtype=np.float32)


def random_erase(
    images: np.ndarray,
    rng: np.random.Generator,
    prob: float = 0.5,
    area: tuple[float, float] = (0.02, 0.33),
    aspect: tuple[float, float] = (0.3, 3.3),
    attempts: int = 10,
) -> np.ndarray:
    """Random erasing (Zhong et al., 2020), as ``torchvision.transforms.RandomErasing`` draws it: with
    probability ``prob`` a face gets a rectangle of a fraction of its area drawn from ``area`` and an
    aspect ratio drawn log-uniformly from ``aspect`` at a random place, filled with uniform noise in
    [0, 255]. Of ``attempts`` draws the first that fits the face is used; if none fits, the face stays.

    Args:
        images: (N, H, W) uint8 (or float in [0, 255]) gray faces; not modified.
        rng: the random generator; the result depends only on its state.

    Returns:
        A copy of the faces with the rectangles erased, in their dtype.

    Raises:
        InputError: on a wrong shape or dtype, a probability outside [0, 1], an ``area`` or ``aspect`` that is
            not a (low, high) pair of positive numbers (``area`` at most 1), ``attempts`` below 1, or an ``rng``
            that is not a numpy Generator.
    """
    images = _check_images(images)
    _check_rng(rng)
    _check_number("prob", prob, 0.0, 1.0, False, "a probability in [0, 1]")
    area = _check_pair("area", area, 0.0, 1.0, "0 < low <= high <= 1 (fractions of the face's area)")
    aspect = _check_pair("aspect", aspect, 0.0, np.inf, "0 < low <= high (height / width ratios)")
    if isinstance(attempts, bool) or not isinstance(attempts, (int, np.integer)) or attempts < 1:
        raise InputError(f"received attempts={attempts!r}; expected an integer >= 1")
    n, h, w = (int(s) for s in images.shape)
    chosen = rng.random(size=n) < prob
    frac = rng.uniform(area[0], area[1], size=(n, attempts))
    ratio = np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1]), size=(n, attempts)))
    eh = np.rint(np.sqrt(frac * h * w * ratio)).astype(np.int64)
    ew = np.rint(np.sqrt(frac * h * w / ratio)).astype(np.int64)
    fits = (eh < h) & (ew < w) & (eh > 0) & (ew > 0)
    first = np.argmax(fits, axis=1)
    rows = np.arange(n)
    chosen &= fits[rows, first]
    eh, ew = eh[rows, first], ew[rows, first]
    y0 = (rng.random(size=n) * (h - eh + 1)).astype(np.int64)
    x0 = (rng.random(size=n) * (w - ew + 1)).astype(np.int64)
    ys, xs = np.arange(h)[None, :], np.arange(w)[None, :]
    in_y = (ys >= y0[:, None]) & (ys < (y0 + eh)[:, None])
    in_x = (xs >= x0[:, None]) & (xs < (x0 + ew)[:, None])
    mask = chosen[:, None, None] & in_y[:, :, None] & in_x[:, None, :]
    noise = rng.integers(0, 256, size=images.shape)
    out = images.copy()
    out[mask] = noise[mask].astype(images.dtype)
    return out
