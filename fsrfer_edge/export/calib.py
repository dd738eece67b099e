"""Face data for INT8 calibration and for the export checks and accuracy gate.

Faces are turned into model input by the runtime's own code path: :meth:`Preprocessing.to_pixels`
(validate, gray, resize) and then :func:`to_model_input` (normalise for float32-input models, round
to uint8 for uint8-input models), with the Preprocessing read from the model's metadata.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from ..errors import DataError, InputError, require
from ..ferplus import NPZ_READ_ERRORS
from ..metadata import ModelInfo
from ..preprocessing import CLASSES

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")
#: Seed for every sample this module draws, so calibration is reproducible.
DEFAULT_SEED = 0


def _check_sampling(size: Any, seed: Any) -> None:
    """Refuse a sample size or seed that is not a count (a negative size would read as "all faces")."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise InputError(f"sample size {size!r}; expected an integer >= 0 (0: all faces)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"sample seed {seed!r}; expected an integer >= 0")


def _check_factors(factors: Any) -> list[Any]:
    """The calibration factors as a list; a single number or a string (``4``, ``"1,2,4"``) is refused, not read
    digit by digit."""
    if isinstance(factors, (str, bytes)) or not isinstance(factors, (list, tuple, range, np.ndarray)):
        raise InputError(f"calibration factors {factors!r}; expected a list of integers >= 1, e.g. [1, 2, 3, 4, 6, 8]")
    factors = list(factors)
    if not factors:
        raise InputError("no calibration factors; expected at least one, e.g. 1,2,3,4,6,8")
    for f in factors:
        if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 1:
            raise InputError(f"calibration factor {f!r}; expected an integer >= 1")
    return factors


def _check_batch_size(batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"calibration batch size {batch_size!r}; expected an integer >= 1")


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    if size <= 0 or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _open_npz(path: Path, needed: tuple[str, ...]) -> Any:
    try:
        data = np.load(path, allow_pickle=False)
    except NPZ_READ_ERRORS as exc:
        raise DataError(f"{path} could not be read as an .npz archive ({exc})") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise DataError(f"{path} holds one {type(data).__name__}, not an .npz archive; expected an .npz with "
                        f"{list(needed)} arrays (np.savez(path, images=...))")
    missing = [k for k in needed if k not in data.files]
    if missing:
        data.close()
        raise DataError(f"{path} has no {missing} array(s); it holds {sorted(data.files)}, expected "
                        f"{list(needed)} (and optionally 'split')")
    return data


def _split_rows(data: Any, path: Path, split: Optional[str], n: int, strict: bool = False) -> np.ndarray:
    """Rows of ``split`` if the archive has a ``split`` array, else all rows. An archive whose ``split`` array holds
    no ``split`` rows: all rows, with a warning, or (``strict``) DataError."""
    if split is None or "split" not in data.files:
        return np.arange(n)
    names = np.asarray(data["split"]).astype(str)
    if names.shape != (n,):
        raise DataError(f"{path}: 'split' has shape {names.shape}; expected ({n},) to match 'images'")
    rows = np.flatnonzero(names == split)
    if rows.size == 0:
        present = sorted(set(names.tolist()))
        if strict:
            raise DataError(f"{path} has a 'split' array but no {split!r} rows; splits present: {present}. Expected "
                            f"an archive with {split!r} rows (faces held out of training), or an archive of held-out "
                            "faces without a 'split' array (all its rows are used)")
        log.warning("%s has no %r rows (splits: %s); using all rows", path, split, present)
        return np.arange(n)
    return rows


def _check_images(images: np.ndarray, path: Path) -> None:
    if images.ndim not in (3, 4) or images.shape[0] == 0 or (images.ndim == 4 and images.shape[3] not in (1, 3)):
        raise DataError(f"{path}: 'images' has shape {images.shape}; expected (N, H, W) gray or (N, H, W, 3) RGB "
                        "faces (or (N, H, W, 1)), N >= 1: drop an alpha channel with images[..., :3]")
    if images.shape[1] == 0 or images.shape[2] == 0:  # found here, not when the faces are first preprocessed
        raise DataError(f"{path}: 'images' has shape {images.shape}: faces of {images.shape[1]}x{images.shape[2]} "
                        "pixels (H x W); expected faces of at least 1x1 pixels")
    if images.dtype != np.uint8:
        raise DataError(f"{path}: 'images' has dtype {images.dtype}; expected uint8 pixels")


def load_faces(path: PathLike, size: int = 0, seed: int = DEFAULT_SEED,
               split: Optional[str] = "train") -> list[np.ndarray]:
    """Load face crops for calibration.

    Args:
        path: an ``.npz`` with an ``images`` (N, H, W) uint8 array (and optional ``split``: only
            ``split`` rows are used when present), or a folder of image files (png, jpg, ...).
        size: how many faces to sample (0: all), with a fixed ``seed``.
        seed: the sampling seed.
        split: which split to take from an ``.npz`` that has one.

    Returns:
        A list of HxW (or HxWx3) uint8 arrays.

    Raises:
        DataError: the path is missing, empty, or not in one of these formats.
        InputError: ``size`` or ``seed`` is not an integer >= 0.
    """
    _check_sampling(size, seed)
    p = Path(path)
    if p.is_dir():
        return _load_folder(p, size, seed)
    if not p.is_file():
        raise DataError(f"calibration data {p} does not exist; expected an .npz file or a folder of face images")
    with _open_npz(p, ("images",)) as data:  # closed here: its arrays are read into memory
        try:
            images = data["images"]
            _check_images(images, p)
            rows = _split_rows(data, p, split, len(images))
        except NPZ_READ_ERRORS as exc:
            raise DataError(f"{p}: an array could not be read ({exc}); the archive is damaged") from exc
    return list(images[rows[_sample(len(rows), size, seed)]])


def _eight_bit(im: Any, path: Path) -> np.ndarray:
    """A Pillow image as 8-bit gray or RGB pixels, images of more than 8 bits read as the crowd path reads them
    (:func:`~fsrfer_edge.detection.frames.wide_gray_pixels`): Pillow's convert("L") would clip 16-bit gray,
    turning a 16-bit face almost white."""
    from ..detection.frames import wide_gray_pixels

    wide = wide_gray_pixels(im, path, error=DataError)
    return wide if wide is not None else np.asarray(im.convert("L" if im.mode in ("L", "1") else "RGB"))


def image_files(folder: Path) -> list[Path]:
    """The face image files of a calibration folder (:data:`IMAGE_SUFFIXES`), sorted."""
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)


def _load_folder(folder: Path, size: int, seed: int) -> list[np.ndarray]:
    files = image_files(folder)
    if not files:
        from trainer.data import npz_path

        npz = npz_path(folder)  # a data folder, as fsrfer-eval --data takes it: fsrfer-export reads its archive
        archive = f"; it holds the FER2013 archive {npz}: pass that .npz" if npz is not None and npz.is_file() else ""
        raise DataError(f"folder {folder} has no image files; expected files ending in {', '.join(IMAGE_SUFFIXES)}"
                        f"{archive}")
    image_mod = require("PIL.Image", "export", "reading calibration images from a folder")
    out = []
    for i in _sample(len(files), size, seed):
        try:
            with image_mod.open(files[i]) as im:
                out.append(_eight_bit(im, files[i]))
        except OSError as exc:
            raise DataError(f"{files[i]} could not be read as an image ({exc})") from exc
    return out


def load_labelled(path: PathLike, size: int = 0, seed: int = DEFAULT_SEED,
                  split: Optional[str] = "val", classes: int = len(CLASSES)) -> tuple[np.ndarray, np.ndarray]:
    """Load labelled faces for the accuracy gate.

    Args:
        path: an ``.npz`` with ``images`` (N, H, W) uint8 and ``labels`` (N,) int in 0..``classes`` - 1
            (negative labels, e.g. FER+ rows without a majority, are dropped), optional ``split``.
        size: how many to sample (0: all), with a fixed ``seed``.
        seed: the sampling seed.
        split: the split to use when the archive has one (``val`` by default; None: every row). An archive
            without a ``split`` array is used whole; one whose ``split`` array holds no ``split`` rows is refused
            (scoring its other rows, training rows among them, would flatter the model).
        classes: how many classes the model tells apart.

    Returns:
        (images, labels).

    Raises:
        DataError: the file is missing or malformed, a label is not one of the model's classes, or the archive
            has a ``split`` array without ``split`` rows.
        InputError: ``size`` or ``seed`` is not an integer >= 0, or ``classes`` is not an integer >= 1.
    """
    _check_sampling(size, seed)
    if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 1:
        raise InputError(f"classes={classes!r}; expected the number of the model's classes, an integer >= 1")
    p = Path(path)
    if not p.is_file():
        what = "is a folder" if p.is_dir() else "does not exist"
        raise DataError(f"evaluation data {p} {what}; expected an .npz with 'images' and 'labels'")
    with _open_npz(p, ("images", "labels")) as data:
        try:
            images, labels = data["images"], np.asarray(data["labels"])
            _check_images(images, p)
            if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
                raise DataError(f"{p}: 'labels' has shape {labels.shape} and dtype {labels.dtype}; "
                                f"expected ({len(images)},) integers")
            beyond = np.flatnonzero(labels >= classes)
            if beyond.size:  # scored, such a face would only ever count as wrong
                raise DataError(f"{p}: array 'labels' must hold integers 0..{classes - 1}, the model's classes "
                                f"(negative: no label); row {beyond[0]} is {labels[beyond[0]]}")
            rows = _split_rows(data, p, split, len(images), strict=True)
        except NPZ_READ_ERRORS as exc:
            raise DataError(f"{p}: an array could not be read ({exc}); the archive is damaged") from exc
    rows = rows[labels[rows] >= 0]
    rows = rows[_sample(len(rows), size, seed)]
    if rows.size == 0:
        raise DataError(f"{p} has no labelled rows (all labels negative)")
    return images[rows], labels[rows].astype(np.int64)


def is_fer2013_archive(path: PathLike) -> bool:
    """Whether ``path`` is a FER2013 archive: one with ``orig_row``, by which FER+ labels are joined (only
    its table of contents is read).

    Raises:
        DataError: the file is not an ``.npz`` archive.
    """
    with _open_npz(Path(path), ()) as data:
        return "orig_row" in data.files


def mix_factors(faces: Sequence[np.ndarray], factors: Sequence[int], seed: int = DEFAULT_SEED) -> list[np.ndarray]:
    """Each face as the small crop an app would pass at one of ``factors``: down-sampled (anti-aliased
    bicubic, ``round(side / factor)`` pixels, as :func:`~fsrfer_edge.preprocessing.degrade`) and kept small,
    so the runtime's own resize brings it back to the model size.

    Factors go round in a seeded, shuffled order, so every factor gets ``len(faces) / len(factors)`` faces
    (give or take one). An FSR-FER model serves small faces: calibrating its INT8 ranges on 48 px faces
    alone leaves G's activations for the smallest faces out of range. ``factors=(1,)`` returns the faces.

    Raises:
        InputError: ``factors`` is not a list of integers >= 1, or is empty; ``seed`` is not an integer >= 0.
    """
    from ..preprocessing import resize

    factors = _check_factors(factors)
    _check_sampling(0, seed)
    order = np.random.default_rng(seed).permutation(len(faces))
    out: list[np.ndarray] = list(faces)
    for rank, i in enumerate(order):
        f = int(factors[rank % len(factors)])
        face = np.asarray(faces[i])
        if f == 1:
            continue
        planar = face if face.ndim == 2 else np.moveaxis(face, -1, 0)  # (H, W) or (C, H, W)
        h, w = planar.shape[-2:]
        small = resize(planar.astype(np.float32), (max(1, round(h / f)), max(1, round(w / f))), "bicubic", antialias=True)
        small = small if face.ndim == 2 else np.moveaxis(small, 0, -1)
        out[i] = np.clip(np.rint(small), 0, 255).astype(np.uint8) if face.dtype == np.uint8 else small.astype(face.dtype)
    return out


def to_model_input(pixels: np.ndarray, info: ModelInfo) -> np.ndarray:
    """Pixels (N, C, S, S) in [0, 255] -> the model's input tensor, as the runtime makes it."""
    if info.input_dtype == "uint8":
        out: np.ndarray = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        return out
    return info.preprocessing.normalize(pixels)


def faces_to_pixels(faces: Any, info: ModelInfo) -> np.ndarray:
    """Faces (a list of images or an N x H x W array) -> (N, C, S, S) float32 pixel batch.

    Raises:
        InputError: a face is malformed (see :meth:`Preprocessing.to_pixels`).
    """
    if isinstance(faces, np.ndarray) and faces.ndim == 3 and faces.shape[-1] in (1, 3, 4):
        # An N x H x W stack whose width is 1, 3 or 4 would be read as one colour image.
        faces = list(faces)
    return info.preprocessing.to_pixels(faces)


def calibration_faces(path: PathLike, size: int, factors: Sequence[int]) -> list[np.ndarray]:
    """The ``size`` calibration faces of ``path`` (as :func:`load_faces`), at least one per factor. Needs no model,
    so fsrfer-export calls it before its export too (bad data is found in seconds, not after minutes).

    Raises:
        DataError: the data is missing or malformed (see :func:`load_faces`), or it has fewer faces than factors.
        InputError: ``factors`` is not a list of integers >= 1 (see :func:`mix_factors`).
    """
    factors = _check_factors(factors)
    faces = load_faces(path, size)
    if len(faces) < len(set(factors)):
        raise DataError(f"{path} gives {len(faces)} calibration face(s); expected at least one per down-sample "
                        f"factor ({len(set(factors))}: {sorted(set(factors))}), and preferably hundreds")
    return faces


def calibration_inputs(path: PathLike, size: int, factors: Sequence[int], info: ModelInfo) -> np.ndarray:
    """INT8 calibration inputs: ``size`` faces of ``path`` (:func:`calibration_faces`), each a small crop at
    one of ``factors`` (:func:`mix_factors`), through the runtime's preprocessing to the model's input.

    Raises:
        InputError: a factor is larger than the model's input size (its crops would be under one pixel).
        DataError: see :func:`calibration_faces`.
    """
    side = info.preprocessing.input_size
    too_large = sorted({int(f) for f in _check_factors(factors) if f > side})
    if too_large:
        raise InputError(f"calibration factors {too_large} exceed the model's input size of {side} px, so their "
                         f"crops would be under one pixel; expected factors from 1 to {side}")
    faces = calibration_faces(path, size, factors)
    if len(faces) < size:  # fewer than asked: all are used, and the user is told (a warning shows under -q)
        log.warning("calibration uses all %d faces of %s; %d were asked for", len(faces), path, size)
    else:
        log.info("calibration faces: %d from %s", len(faces), path)
    return to_model_input(faces_to_pixels(mix_factors(faces, factors), info), info)


class FaceCalibrationReader:
    """ONNX Runtime ``CalibrationDataReader`` over preprocessed faces (duck-typed: ORT accepts any
    object with ``get_next``, so onnxruntime is not imported here).

    Every batch has the same size, the largest divisor of the number of faces up to ``batch_size`` (32
    for 512 faces, 25 for 400): ONNX Runtime's histogram calibrators (percentile, entropy) stack each
    tensor's batches with ``np.asarray`` and fail on a shorter last batch ("inhomogeneous shape";
    microsoft/onnxruntime#18792, unfixed in 1.32)."""

    def __init__(self, inputs: np.ndarray, input_name: str, batch_size: int = 32) -> None:
        if len(inputs) == 0:
            raise InputError("no calibration faces; expected at least one")
        _check_batch_size(batch_size)
        self.inputs = inputs
        self.input_name = input_name
        n = len(inputs)
        self.batch_size = max(d for d in range(1, min(batch_size, n) + 1) if n % d == 0)
        self._it: Iterator[dict[str, np.ndarray]] = self._batches()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, len(self.inputs), self.batch_size):
            yield {self.input_name: self.inputs[i:i + self.batch_size]}

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = self._batches()

    def __len__(self) -> int:
        return (len(self.inputs) + self.batch_size - 1) // self.batch_size


class CalibrationPasses:
    """ONNX Runtime ``CalibrationDataReader`` over preprocessed faces in batches of ``batch_size``, the last one
    shorter (37 faces: 32 and 5), read in passes of equal batches: every full batch, then the short one.

    ONNX Runtime's histogram calibrators (percentile, entropy) stack the batches of one ``collect_data`` call with
    ``np.asarray`` and fail on a shorter last batch (:class:`FaceCalibrationReader`); run one call per pass
    (``quantize_static``'s ``CalibStridedMinMax=1`` does, through ``len()`` and ``set_range``) and they merge
    the passes' histograms, so every face counts. Outside a pass (no ``set_range``: an ONNX Runtime that ignores
    ``CalibStridedMinMax``) it reads as a :class:`FaceCalibrationReader`: batches of one size, a divisor of the faces.
    """

    def __init__(self, inputs: np.ndarray, input_name: str, batch_size: int = 32) -> None:
        if len(inputs) == 0:
            raise InputError("no calibration faces; expected at least one")
        _check_batch_size(batch_size)
        n = len(inputs)
        full = n - n % batch_size if n > batch_size else n
        self.passes = [FaceCalibrationReader(inputs[:full], input_name, min(batch_size, full))]
        if full < n:
            self.passes.append(FaceCalibrationReader(inputs[full:], input_name, n - full))
        self._whole = FaceCalibrationReader(inputs, input_name, batch_size)
        self._selected: Optional[int] = None

    def __len__(self) -> int:
        """The number of passes (1 or 2): what ``CalibStridedMinMax`` strides over."""
        return len(self.passes)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Read pass ``start_index`` (from its start) until the next ``set_range`` or :meth:`rewind`."""
        if not 0 <= start_index < end_index == start_index + 1 <= len(self.passes):
            raise InputError(f"calibration pass range {start_index}..{end_index}; expected one pass of "
                             f"0..{len(self.passes)} (CalibStridedMinMax=1)")
        self._selected = start_index
        self.passes[start_index].rewind()

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        return (self._whole if self._selected is None else self.passes[self._selected]).get_next()

    def rewind(self) -> None:
        self._selected = None
        for p in (self._whole, *self.passes):
            p.rewind()
