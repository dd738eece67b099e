"""Reading and resizing RGB frames (OpenCV or Pillow when installed, numpy otherwise).

OpenCV (pip extra ``crowd``) is used when it can be imported because it resizes large frames about
ten times faster than the numpy fallback; results differ only by rounding.
"""
from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Optional, Union

import numpy as np

from ..errors import BackendUnavailable, InputError, require
from ..fileio import as_path, file_problem
from ..preprocessing import looks_scaled_to_1, resize
from .base import MAX_FRAME_PIXELS, as_rgb_frame, check_frame_size

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
#: Image suffixes :func:`read_image` is asked to read (the CLI takes anything else for a video unless its first
#: bytes say it is an image: :func:`is_image_file`).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".heic", ".heif",
                  ".avif")
#: HEIF-family photos (HEIC: a phone camera's default; AVIF): suffixes and the ISO-BMFF ``ftyp`` brands that mark them.
#: Pillow reads AVIF from 11.3 where built with libavif, and HEIC with the pillow-heif plugin, used where installed.
HEIF_SUFFIXES = (".heic", ".heif", ".avif")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")


#: The first bytes of the image formats :func:`read_image` reads (WebP: "RIFF", size, "WEBP").
_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*",
                     b"P5", b"P6")


def is_image_file(path: PathLike) -> bool:
    """Whether ``path`` names an image: by its suffix (:data:`IMAGE_SUFFIXES`), or, for an existing file with
    another suffix or none, by its first bytes (a PNG saved as ``frame``, say)."""
    p = Path(path)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return True
    if not p.is_file():  # a camera device or a pipe: opening it could block, and reading would eat its stream
        return False
    head = _head(p)
    return (head.startswith(_IMAGE_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
            or _is_heif(head))


def _is_heif(head: bytes) -> bool:
    """Whether a file's first 12 bytes are those of a HEIC/HEIF/AVIF photo (an ISO-BMFF ``ftyp`` box of their brands;
    an MP4 video's brands are others)."""
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def _head(p: Path) -> bytes:
    """A regular file's first 12 bytes ("" where it cannot be read)."""
    try:
        with open(p, "rb") as f:
            return f.read(12)
    except OSError:
        return b""


def optional_module(name: str) -> Optional[ModuleType]:
    """Import ``name`` or return None (for optional speed-ups that have a fallback)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def resize_rgb(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an HxWx3 uint8 frame to (height, width): area-averaging when shrinking, bilinear when enlarging."""
    h, w = frame.shape[:2]
    if (h, w) == (height, width):
        return frame
    cv2 = optional_module("cv2")
    if cv2 is not None:
        shrink = height * width < h * w
        return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    out = resize(np.moveaxis(frame, -1, 0), (height, width), kernel="bilinear", antialias=True)
    return np.ascontiguousarray(np.moveaxis(np.clip(np.rint(out), 0, 255).astype(np.uint8), 0, -1))


#: Pillow formats whose 32-bit integer images (mode "I") hold 16-bit pixels, 0-65535: 16-bit gray PNG (before
#: Pillow opened it as "I;16") and PGM (scaled to 65535 by Pillow whatever its maximum value).
SIXTEEN_BIT_I_FORMATS = ("PNG", "PPM")


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as an HxWx3 uint8 RGB array (Pillow, or OpenCV when Pillow is missing), upright.

    The image is turned as its EXIF Orientation tag says (a phone photo taken upright is analysed upright),
    and 16-bit gray pixels (PNG, TIFF and PGM from scientific and industrial cameras) keep their 8 most
    significant bits, as OpenCV reads them.

    Raises:
        InputError: ``path`` is not a path (a str or os.PathLike), the file does not exist (or is a folder), is
            not a readable image, has more than
            :data:`~.base.MAX_FRAME_PIXELS` pixels (checked from its header, before decoding), or holds
            32-bit integer or floating-point pixels outside 0..255 (the file does not say their range; within it
            they are rounded), or floating-point pixels that look scaled to [0, 1].
        BackendUnavailable: neither Pillow nor OpenCV is installed.
    """
    p = as_path(path, "image")
    problem = file_problem(p)  # a folder, say, is said to be one, not "does not exist"
    if problem:
        raise InputError(f"image {p} {problem}; expected an image file such as a .png or .jpg")
    pil = optional_module("PIL.Image")
    heif = p.suffix.lower() in HEIF_SUFFIXES or _is_heif(_head(p))
    if heif and pil is not None:
        plugin = optional_module("pillow_heif")  # HEIC (and AVIF for a Pillow without it), where installed
        if plugin is not None:
            plugin.register_heif_opener()
    if pil is not None:
        ops = importlib.import_module("PIL.ImageOps")
        try:
            with pil.open(p) as im:
                check_frame_size(im.height, im.width, str(p))  # from the header, before decoding
                frames = getattr(im, "n_frames", 1)
                if isinstance(frames, int) and frames > 1:  # an animated GIF/WebP, a multi-page TIFF
                    logger.warning("%s holds %d frames; read as one image: its first frame only. For every frame, "
                                   "make it a video (ffmpeg -i %s out.mp4) for fsrfer-crowd, or pass its frames "
                                   "(PIL.ImageSequence) to CrowdAnalyzer.analyze_stream", p, frames, p.name)
                return as_rgb_frame(_pil_pixels(ops.exif_transpose(im), im.format, p), what=str(p))
        except InputError:  # our own refusals (size, pixel type) are ValueErrors too: not wrapped below
            raise
        except pil.DecompressionBombError as exc:  # Pillow refuses it before our check can run
            raise InputError(f"{p}: {exc}; the limit is {MAX_FRAME_PIXELS / 1e6:.1f} megapixels (8192x8192). "
                             "Downscale it first, or cut it into parts") from exc
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors for unreadable/truncated files
            if heif:
                raise InputError(f"{p} is a HEIC/HEIF/AVIF photo (a phone camera's default), which this Pillow cannot "
                                 f"read ({exc}); install the pillow-heif plugin (pip install pillow-heif; it is used "
                                 "when installed), or convert the photo to JPEG") from exc
            raise InputError(f"{p} could not be read as an image ({exc}); expected a PNG/JPEG/BMP/TIFF file") from exc
    cv2 = optional_module("cv2")
    if cv2 is None:
        raise BackendUnavailable(
            f"reading {p} needs Pillow or OpenCV; install one with: pip install -e '.[crowd]'"
        )
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)  # upright (EXIF), 16-bit pixels shifted right by 8
    if img is None:
        raise InputError(f"{p} could not be read as an image by OpenCV; expected a PNG/JPEG/BMP/TIFF file")
    return as_rgb_frame(img[:, :, ::-1], what=str(p))  # the size limit too (after decoding: OpenCV reads no header)


def wide_gray_pixels(im: Any, path: Path, fmt: Optional[str] = None, error: type = InputError) -> Optional[np.ndarray]:
    """A Pillow image of more than 8 bits per pixel (modes I;16*, I, F) as HxW uint8 gray, else None (convert it
    as usual). 16-bit gray (I;16*, and mode I from the formats in :data:`SIXTEEN_BIT_I_FORMATS`) keeps its 8 most
    significant bits, as OpenCV reads it; 32-bit integer or float pixels only where they lie in 0..255 (the file
    does not say their range), and float pixels that look scaled to [0, 1] (all of them in [0, 1], some above 0) are
    refused (:func:`~fsrfer_edge.preprocessing.looks_scaled_to_1`: also a little outside [0, 1]), as
    :func:`~fsrfer_edge.preprocessing.check_pixels` refuses such arrays. The one reading of such images
    for the crowd path and INT8 calibration. ``fmt``: the file's format where ``im`` is a copy that lost it
    (``ImageOps.exif_transpose``'s).

    Raises:
        error: 32-bit integer or float pixels outside 0..255, or float pixels that look scaled to [0, 1].
    """
    if im.mode.startswith("I;16") or (im.mode == "I" and (fmt or im.format) in SIXTEEN_BIT_I_FORMATS):
        return (np.clip(np.asarray(im), 0, 65535) >> 8).astype(np.uint8)
    if im.mode not in ("I", "F"):
        return None
    arr = np.asarray(im)
    lo, hi = float(arr.min()), float(arr.max())
    if im.mode == "F" and looks_scaled_to_1(lo, hi):  # as check_pixels refuses such arrays: rounded, they would be
        # 0s and 1s (checked first: a [0, 1] image resampled a little outside it is that, not one to convert)
        raise error(f"{path} holds floating-point pixels (Pillow mode F) with values {lo:g}..{hi:g}: they look "
                    "scaled to [0, 1], which read on the 0..255 scale would be an almost black image; expected 8-bit "
                    "or 16-bit pixels, or floats on the 0..255 scale. Multiply its pixels by 255, or convert it to an "
                    "8-bit PNG")
    if not (0 <= lo and hi <= 255):
        kind = "32-bit integer" if im.mode == "I" else "floating-point"
        raise error(f"{path} holds {kind} pixels (Pillow mode {im.mode}) with values {lo:g}..{hi:g}, whose scale the "
                    "file does not say; expected 8-bit or 16-bit pixels. Convert it to an 8-bit PNG first")
    return np.rint(arr).astype(np.uint8)


def _pil_pixels(im: Any, fmt: Optional[str], path: Path) -> np.ndarray:
    """The pixels of a Pillow image (``fmt``: its file's format) as uint8: HxWx3 RGB, or HxW for gray of more than
    8 bits."""
    wide = wide_gray_pixels(im, path, fmt)
    return wide if wide is not None else np.asarray(im.convert("RGB"))


# The image files write_image writes, by suffix, with Pillow's format name.
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
                 ".webp": "WEBP"}
WRITABLE_IMAGES = tuple(IMAGE_FORMATS)


def check_image_name(path: PathLike) -> Path:
    """``path`` as a Path if write_image can write it (by its suffix): a CLI checks this before any work.

    Raises:
        InputError: not a path (a str or os.PathLike), an existing folder, or an unsupported suffix.
    """
    p = as_path(path, "output image")
    if p.suffix.lower() not in IMAGE_FORMATS:
        if p.is_dir():  # "cannot write an image named outdir" would not say why; a folder named x.png is left to
            # atomic_write, whose message gives the same example
            raise InputError(f"output image {p} is a directory; expected an image file name inside it, e.g. "
                             f"{p / 'out.png'}")
        raise InputError(f"cannot write an image named {p.name}; expected a .png, .jpg, .bmp, .tif or .webp name")
    return p


def write_image(path: PathLike, frame: np.ndarray) -> Path:
    """Write an RGB frame atomically; the format follows the suffix (.png, .jpg, ...). The frame is read as
    :func:`~.base.as_rgb_frame` reads it: uint8, or float in [0, 255] (rounded); gray and RGBA are converted.

    Raises:
        InputError: an unsupported suffix, a folder, or a frame :func:`~.base.as_rgb_frame` refuses.
        BackendUnavailable: neither Pillow nor OpenCV is installed.
    """
    from ..fileio import atomic_write

    p = check_image_name(path)
    rgb = as_rgb_frame(frame)
    suffix = p.suffix.lower()
    pil = optional_module("PIL.Image")
    if pil is not None:
        fmt = IMAGE_FORMATS[suffix]
        image = pil.fromarray(rgb)
        return atomic_write(p, lambda f: image.save(f, format=fmt))
    cv2 = require_cv2("writing images")
    ok, buf = cv2.imencode(suffix or ".png", rgb[:, :, ::-1])
    if not ok:
        raise InputError(f"OpenCV cannot encode an image named {p.name}; expected a .png or .jpg name")
    data = buf.tobytes()
    return atomic_write(p, lambda f: f.write(data))


def require_cv2(purpose: str) -> ModuleType:
    """Import OpenCV or raise BackendUnavailable naming the ``crowd`` extra."""
    return require("cv2", "crowd", purpose)
