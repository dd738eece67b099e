"""Facial-expression data sets as small numpy containers, and the loaders that read them.

Every loader returns a :class:`FaceSet`: gray uint8 faces of one size, labels in the class order of
:data:`fsrfer_edge.preprocessing.CLASSES` and a split name per face. Colour sources are made gray and
resized by the SDK's own preprocessing (``Preprocessing.to_pixels``: BT.601 luma, anti-aliased bicubic),
so training faces are made exactly like the faces the runtime sees.

Supported sources:

- ``.npz`` pairs as in ``../shared/data`` (``fer2013.npz`` + ``ferplus_labels.npz``): :func:`load_npz`;
- the public ``fer2013.csv`` (:func:`load_fer2013_csv`) and FER+ ``fer2013new.csv`` (:func:`load_ferplus_csv`);
- RAF-DB basic (:func:`load_rafdb`);
- folders of images named by class (:func:`load_folder`).

:func:`load_dataset` picks the loader from what a path is. Malformed input raises
:class:`~fsrfer_edge.errors.DataError` naming the file (and line, for text files).
"""
from __future__ import annotations

import csv
import dataclasses
import inspect
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from fsrfer_edge.errors import DataError, InputError, check_flag
from fsrfer_edge.ferplus import check_1d as _check_1d
from fsrfer_edge.ferplus import check_orig_row
from fsrfer_edge.ferplus import join_ferplus
from fsrfer_edge.ferplus import read_npz as _read_npz
from fsrfer_edge.fileio import as_path
from fsrfer_edge.preprocessing import CLASSES, Preprocessing

from .degrade import _check_rng

log = logging.getLogger(__name__)

#: Split names used by every loader.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: FER2013 ``Usage`` column -> split name.
FER2013_USAGE: dict[str, str] = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
#: Columns of FER+ ``fer2013new.csv``.
FERPLUS_HEADER: tuple[str, ...] = (
    "Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
    "contempt", "unknown", "NF",
)
#: FER+ vote columns (in ``fer2013new.csv`` and ``ferplus_labels.npz`` ``votes``) -> class index; -1 = excluded.
FERPLUS_VOTE_TO_CLASS: tuple[int, ...] = (6, 3, 5, 4, 0, 1, 2, -1, -1, -1)
#: RAF-DB basic labels 1..7 (Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral) -> class index.
RAFDB_TO_CLASS: dict[int, int] = {1: 5, 2: 2, 3: 1, 4: 3, 5: 4, 6: 0, 7: 6}
RAFDB_LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
RAFDB_IMAGE_DIR = Path("Image") / "aligned"
FER_SIZE = 48
_INT64_MAX = int(np.iinfo(np.int64).max)  # the largest vote count an int64 array holds
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")


# --------------------------------------------------------------------------------------------
# Container
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class FaceSet:
    """Gray faces with labels and split names.

    Attributes:
        images: (N, H, W) uint8 gray faces.
        labels: (N,) int64 class indices into ``CLASSES``.
        split: (N,) str, each ``"train"``, ``"val"`` or ``"test"``.
        source: short name of where the faces came from (``"ferplus"``, ``"fer2013"``, ``"rafdb"``,
            ``"folder"``).
        targets: optional (N, K) float32 class distributions per face (FER+: the annotators' votes over
            the ``CLASSES``), for training on soft labels; None where the data has none.
    """

    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    source: str
    targets: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        imgs, labels, split = self.images, self.labels, self.split
        if not isinstance(imgs, np.ndarray) or imgs.ndim != 3 or imgs.dtype != np.uint8:
            got = f"{imgs.dtype} array of shape {imgs.shape}" if isinstance(imgs, np.ndarray) else type(imgs).__name__
            raise DataError(f"FaceSet images: received {got}; expected an (N, H, W) uint8 array")
        n = imgs.shape[0]
        labels = np.asarray(labels)
        split = np.asarray(split)
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"FaceSet labels: received {labels.dtype} shape {labels.shape}; expected ({n},) integers")
        if n and (labels.min() < 0 or labels.max() >= len(CLASSES)):
            raise DataError(f"FaceSet labels: values {labels.min()}..{labels.max()}; expected 0..{len(CLASSES) - 1}")
        if split.shape != (n,):
            raise DataError(f"FaceSet split: received shape {split.shape}; expected ({n},)")
        split = split.astype(str)
        bad = sorted(set(np.unique(split).tolist()) - set(SPLITS))
        if bad:
            raise DataError(f"FaceSet split: received names {bad}; expected only {list(SPLITS)}")
        self.labels = labels.astype(np.int64, copy=False)
        self.split = split
        if self.targets is not None:
            t = np.asarray(self.targets, dtype=np.float32)
            if t.shape != (n, len(CLASSES)) or not np.all(np.isfinite(t)) or (t < 0).any() or \
                    (n and not np.allclose(t.sum(1), 1.0, atol=1e-4)):
                raise DataError(f"FaceSet targets: received shape {t.shape}; expected ({n}, {len(CLASSES)}) "
                                "non-negative class distributions summing to 1")
            self.targets = t

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def splits(self) -> tuple[str, ...]:
        """The split names present, in ``SPLITS`` order."""
        present = set(np.unique(self.split).tolist())
        return tuple(s for s in SPLITS if s in present)

    def _select(self, index: np.ndarray) -> FaceSet:
        targets = None if self.targets is None else self.targets[index]
        return FaceSet(self.images[index], self.labels[index], self.split[index], self.source, targets)

    def subset(self, split_name: str) -> FaceSet:
        """The faces of one split.

        Raises:
            DataError: if ``split_name`` is not a split name or this set has no face in that split
                (RAF-DB has no ``"val"``).
        """
        if split_name not in SPLITS:
            raise DataError(f"received split {split_name!r}; expected one of {list(SPLITS)}")
        mask = self.split == split_name
        if not mask.any():
            hint = ". For a set without 'val', hold out part of 'train' (e.g. with take())" \
                if split_name == "val" else ""
            raise DataError(f"{self.source} has no {split_name!r} faces; splits present: {list(self.splits)}{hint}")
        return self._select(np.flatnonzero(mask))

    def take(self, n: int, seed: int = 0) -> FaceSet:
        """A seeded random subset of ``n`` faces keeping the (split, class) proportions.

        Each split gets its share of ``n``, then each class its share of that (largest remainders
        round), so the split sizes and class mix are kept as far as ``n`` allows. Faces stay in their
        original order.
        ``n >= len(self)`` returns all faces.

        Raises:
            InputError: if ``n`` is not a positive integer, or ``seed`` not an integer >= 0.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"take(n) received n={n!r}; expected an integer >= 1")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InputError(f"take() received seed={seed!r}; expected an integer >= 0 (the same seed, the same faces)")
        total = len(self)
        if n >= total:
            return self._select(np.arange(total))
        rng = np.random.default_rng(seed)
        chosen: list[np.ndarray] = []
        split_rows = [np.flatnonzero(self.split == s) for s in SPLITS]
        for rows, k in zip(split_rows, _allocate([len(r) for r in split_rows], n)):
            labels = self.labels[rows]
            class_rows = [rows[labels == c] for c in range(len(CLASSES))]
            for cr, q in zip(class_rows, _allocate([len(r) for r in class_rows], k)):
                if q:
                    chosen.append(rng.choice(cr, size=q, replace=False))
        return self._select(np.sort(np.concatenate(chosen)))

    def class_counts(self) -> dict[str, list[int]]:
        """Faces per class (``CLASSES`` order) for each split present."""
        return {
            s: np.bincount(self.labels[self.split == s], minlength=len(CLASSES)).tolist() for s in self.splits
        }


def _allocate(sizes: Sequence[int], n: int) -> list[int]:
    """Split ``n`` over groups of the given sizes in proportion (largest remainders round)."""
    total = sum(sizes)
    if total == 0:
        return [0] * len(sizes)
    share = np.asarray(sizes, dtype=np.float64) * (n / total)
    quota = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - quota), kind="stable")
    quota[order[: n - int(quota.sum())]] += 1
    return np.minimum(quota, sizes).tolist()


def batches(
    n: int, batch_size: int, generator: np.random.Generator, shuffle: bool = True, drop_last: bool = False
) -> Iterator[np.ndarray]:
    """Yield index arrays covering ``range(n)`` in batches.

    Args:
        n: number of items.
        batch_size: indices per batch (the last batch may be smaller unless ``drop_last``).
        generator: the random generator used to shuffle; the order depends only on its state.
        shuffle: permute the indices first.
        drop_last: skip a final batch smaller than ``batch_size``.

    Raises:
        InputError: on a negative ``n``, a ``batch_size`` below 1, a ``generator`` that is not a numpy Generator,
            or ``shuffle`` or ``drop_last`` that is not a bool.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise InputError(f"batches() received n={n!r}; expected an integer >= 0")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batches() received batch_size={batch_size!r}; expected an integer >= 1")
    _check_rng(generator)
    shuffle, drop_last = check_flag("shuffle", shuffle), check_flag("drop_last", drop_last)
    order = generator.permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def _existing_file(path: str | os.PathLike[str], what: str) -> Path:
    p = as_path(path, "data path")
    if not p.is_file():
        state = "is a directory" if p.is_dir() else "does not exist"
        raise DataError(f"{p} {state}; expected {what}")
    return p


def _existing_dir(path: str | os.PathLike[str], what: str) -> Path:
    p = as_path(path, "data path")
    if not p.is_dir():
        state = "is a file" if p.exists() else "does not exist"
        raise DataError(f"{p} {state}; expected {what}")
    return p


def _gray_uint8(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """One decoded image (H, W) or (H, W, 3) -> (S, S) uint8 gray via the SDK's preprocessing."""
    out = prep.to_pixels(pixels, raise_low_contrast=False)[0, 0]  # a face as it is, like the .npz faces
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _decode_image(path: Path, prep: Preprocessing, where: str) -> np.ndarray:
    """Decode an image file with PIL and return it gray, resized, uint8. ``where`` prefixes errors."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L") if im.mode in ("L", "I;16", "I", "F", "1") else im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{where}image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{where}cannot decode image {path} ({exc}); expected a PNG or JPEG image") from exc
    return _gray_uint8(arr, prep)


def _size_prep(size: int) -> Preprocessing:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise InputError(f"received size={size!r}; expected a face side in pixels (integer >= 1), e.g. 48")
    return Preprocessing(input_size=int(size), channels=1)


def _open_text(path: Path) -> Any:
    return open(path, newline="", encoding="utf-8-sig")


def _header_index(header: list[str], expected: Sequence[str], path: Path) -> dict[str, int]:
    """Map each expected column name to its index (case- and space-insensitive) or raise."""
    names = [h.strip().lower() for h in header]
    index: dict[str, int] = {}
    for col in expected:
        if col.lower() not in names:
            raise DataError(
                f"{path} line 1: header is {','.join(header)!r}; expected the columns {','.join(expected)!r}"
            )
        index[col] = names.index(col.lower())
    return index


def _parse_int(text: str, path: Path, line: int, what: str, lo: int, hi: int | None) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = None
    rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
    if value is None or value < lo or (hi is not None and value > hi):
        raise DataError(f"{path} line {line}: {what} is {text!r}; expected an integer {rng}")
    return value


def _parse_pixels(text: str, path: Path, line: int) -> np.ndarray:
    tokens = text.split()
    n_px = FER_SIZE * FER_SIZE
    if len(tokens) != n_px:
        raise DataError(
            f"{path} line {line}: 'pixels' has {len(tokens)} values; expected {n_px} "
            f"({FER_SIZE}x{FER_SIZE}) space-separated integers 0..255"
        )
    try:
        px = np.array(tokens, dtype=np.int64)
    except ValueError:
        px = None
    if px is None or px.min() < 0 or px.max() > 255:
        for i, tok in enumerate(tokens):
            try:
                ok = 0 <= int(tok) <= 255
            except ValueError:  # not a number; str.isdigit() would pass a superscript digit int() refuses
                ok = False
            if not ok:
                raise DataError(
                    f"{path} line {line}: pixel {i} is {tok!r}; expected an integer 0..255"
                )
        raise DataError(f"{path} line {line}: 'pixels' could not be read; expected integers 0..255")
    return px.astype(np.uint8).reshape(FER_SIZE, FER_SIZE)


# --------------------------------------------------------------------------------------------
# FER+ majority vote (shared by every FER+ loader)
# --------------------------------------------------------------------------------------------
def ferplus_majority(votes: np.ndarray, rule: str = "majority") -> np.ndarray:
    """FER+ label per face from its 10 vote counts, in ``CLASSES`` order; -1 for faces to exclude.

    Rules:

    - ``"majority"`` (default; the FER+ authors' ``majority`` mode, and exactly how the shipped
      ``ferplus_labels.npz`` labels were made): single votes are dropped as outliers, then the
      top column must hold more than half of the remaining votes.
    - ``"plurality"``: the top column wins unless two columns tie for it.

    Either way a face is excluded when the winning column is contempt, unknown or not-a-face, or
    when it has no votes.

    Args:
        votes: (N, 10) non-negative vote counts in the column order of ``FERPLUS_HEADER[2:]``.
        rule: ``"majority"`` or ``"plurality"``.

    Returns:
        (N,) int64 labels, -1 = excluded.

    Raises:
        InputError: if ``votes`` is not an (N, 10) array of finite, non-negative real numbers, or on an unknown rule.
    """
    if rule not in ("majority", "plurality"):
        raise InputError(f"received rule={rule!r}; expected 'majority' or 'plurality'")
    votes = np.asarray(votes)
    if votes.ndim != 2 or votes.shape[1] != len(FERPLUS_VOTE_TO_CLASS) or not np.issubdtype(votes.dtype, np.number):
        raise InputError(f"received votes of shape {votes.shape} ({votes.dtype}); expected (N, 10) counts")
    if np.issubdtype(votes.dtype, np.complexfloating):
        raise InputError(f"received votes of {votes.dtype}; expected (N, 10) real counts >= 0")
    bad = ~np.isfinite(votes) | (votes < 0)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise InputError(f"received votes row {row} {votes[row].tolist()}; expected finite counts >= 0")
    if votes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    v = votes.astype(np.float64)
    if rule == "majority":
        v[v <= 1] = 0.0
    top = v.max(axis=1)
    labels = np.asarray(FERPLUS_VOTE_TO_CLASS, dtype=np.int64)[v.argmax(axis=1)]
    if rule == "majority":
        keep = top > 0.5 * v.sum(axis=1)
    else:
        keep = (top > 0) & ((v == top[:, None]).sum(axis=1) == 1)
    labels[~keep] = -1
    return labels


# --------------------------------------------------------------------------------------------
# .npz (../shared/data)
# --------------------------------------------------------------------------------------------
def _check_split(split: np.ndarray, path: Path) -> np.ndarray:
    split = split.astype(str)
    ok = np.isin(split, SPLITS)
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        raise DataError(f"{path}: array 'split' row {row} is {split[row]!r}; expected one of {list(SPLITS)}")
    return split


def _check_class_labels(labels: np.ndarray, path: Path, expected: str) -> None:
    """DataError unless ``labels`` holds integers 0..6; ``expected`` is the message's lead, e.g. "must hold ..."."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: array 'labels' {expected}; received {labels.dtype}")
    bad = (labels < 0) | (labels >= len(CLASSES))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: array 'labels' {expected}; row {row} is {labels[row]}")


def _no_faces(p: Path, n: int) -> None:
    if n == 0:
        raise DataError(f"{p} holds no faces (array 'images' has shape (0, ...)); expected at least one face")


def _plain_npz(p: Path, d: dict[str, np.ndarray]) -> FaceSet:
    """A plain archive: ``images`` (N,H,W) uint8, ``labels`` (N,) in 0..6, optional ``split`` (default
    all ``test``). Written by users, the crowd benchmark and the tests; no FER+ join."""
    images, labels = d["images"], d["labels"]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{p}: array 'images' is {images.dtype} of shape {images.shape}; expected (N, H, W) uint8")
    n = images.shape[0]
    _no_faces(p, n)
    _check_1d(labels, n, p, "labels")
    _check_class_labels(labels, p, f"must hold integers 0..{len(CLASSES) - 1}")
    split = d.get("split", np.full(n, "test"))
    _check_1d(split, n, p, "split")
    return FaceSet(images, labels.astype(np.int64), _check_split(split, p), "npz")


def load_npz(
    path: str | os.PathLike[str],
    labels: str = "ferplus",
    ferplus_path: str | os.PathLike[str] | None = None,
) -> FaceSet:
    """Load ``fer2013.npz`` with FER+ or original FER2013 labels (format: ``../shared/data/README.md``).

    Args:
        path: ``fer2013.npz`` with arrays ``images``, ``labels``, ``split``, ``orig_row``; or a plain
            archive without ``orig_row`` (``images``, ``labels``, optional ``split``), read as is.
        labels: ``"ferplus"`` (FER+ majority labels joined by ``orig_row``; faces without one are
            dropped) or ``"fer2013"`` (the original labels).
        ferplus_path: the FER+ ``.npz`` (arrays ``orig_row``, ``labels``, optional ``split``);
            default ``ferplus_labels.npz`` beside ``path``.

    Returns:
        A FaceSet with ``source`` ``"ferplus"`` or ``"fer2013"``.

    Raises:
        InputError: on an unknown ``labels`` value.
        DataError: if a file is missing, unreadable, lacks an array, or holds values out of range.
    """
    if labels not in ("ferplus", "fer2013"):
        raise InputError(f"received labels={labels!r}; expected 'ferplus' or 'fer2013'")
    p = _existing_file(path, "a fer2013.npz archive (arrays images, labels, split, orig_row)")
    d = _read_npz(p, ("images", "labels"))
    if "orig_row" not in d:
        return _plain_npz(p, d)
    d = _read_npz(p, ("images", "labels", "split", "orig_row"))
    images, fer_labels, split, orig = d["images"], d["labels"], d["split"], d["orig_row"]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{p}: array 'images' is {images.dtype} of shape {images.shape}; expected (N, H, W) uint8")
    n = images.shape[0]
    _no_faces(p, n)
    for name, arr in (("labels", fer_labels), ("split", split), ("orig_row", orig)):
        _check_1d(arr, n, p, name)
    split = _check_split(split, p)
    # orig_row -1 marks a face whose row in the original CSV is unknown (28 faces in the shipped
    # archive); such faces keep their FER2013 label but can have no FER+ label.
    check_orig_row(orig, p)

    if labels == "fer2013":
        if not np.issubdtype(fer_labels.dtype, np.integer):  # astype(int64) would truncate 2.7 to 2
            raise DataError(f"{p}: array 'labels' is {fer_labels.dtype}; expected integers 0..{len(CLASSES) - 1}")
        bad = (fer_labels < 0) | (fer_labels >= len(CLASSES))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{p}: array 'labels' row {row} is {fer_labels[row]}; expected 0..{len(CLASSES) - 1}")
        return FaceSet(images, fer_labels.astype(np.int64), split, "fer2013")

    join = join_ferplus(p, orig, split, ferplus_path)
    joined, f, f_orig, fp, match = join.labels, join.arrays, join.arrays["orig_row"], join.path, join.rows
    keep = joined >= 0
    if not keep.any():
        raise DataError(
            f"none of the {n} faces of {p} has a FER+ label in {fp} (no 'orig_row' of the one matches a labelled "
            "'orig_row' of the other); expected the FER+ labels of these faces (are the two files from the same "
            "release?), or use labels 'fer2013' (fsrfer-eval/fsrfer-train: --labels fer2013 / data.labels)"
        )
    targets = None
    if "votes" in f:
        votes = f["votes"]
        if votes.shape != (len(f_orig), len(FERPLUS_VOTE_TO_CLASS)):
            raise DataError(f"{fp}: array 'votes' has shape {votes.shape}; expected ({len(f_orig)}, "
                            f"{len(FERPLUS_VOTE_TO_CLASS)})")
        _check_votes(votes, fp)
        _warn_voteless(votes, match[keep], fp)
        targets = vote_distribution(votes[match[keep]])
    return FaceSet(images[keep], joined[keep].astype(np.int64), split[keep], "ferplus", targets)


def _check_votes(votes: np.ndarray, path: Path) -> None:
    """DataError unless ``votes`` holds finite, non-negative counts (NaN would become a uniform soft label)."""
    expected = "expected non-negative vote counts (one row of 10 per FER+ face)"
    if not np.issubdtype(votes.dtype, np.number) or np.issubdtype(votes.dtype, np.complexfloating):
        raise DataError(f"{path}: array 'votes' is {votes.dtype}; {expected}")
    bad = ~np.isfinite(votes) | (votes < 0)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise DataError(f"{path}: array 'votes' row {row} is {votes[row].tolist()}; {expected}")


def _warn_voteless(votes: np.ndarray, rows: np.ndarray, path: Path) -> None:
    """Warn where a labelled face's ``votes`` row (``rows``: the labelled faces' rows) has no vote for any class of
    ``CLASSES``: :func:`vote_distribution` gives it a uniform soft label, whatever its label says."""
    cols = [i for i, c in enumerate(FERPLUS_VOTE_TO_CLASS) if c >= 0]
    empty = rows[votes[rows][:, cols].sum(axis=1) == 0]
    if empty.size:
        log.warning("%s: %d of %d labelled faces have no vote for any of the 7 classes in array 'votes' (first: "
                    "row %d); their soft labels (data.soft_labels) are uniform; expected the votes the labels were "
                    "made from", path, empty.size, rows.size, int(empty[0]))


def vote_distribution(votes: np.ndarray) -> np.ndarray:
    """FER+ votes (N, 10) -> (N, 7) float32 distributions over ``CLASSES`` (contempt, unknown and
    not-a-face dropped; a face with no vote for any of the 7 gets the uniform distribution).

    Raises:
        InputError: if ``votes`` is not an (N, 10) array of finite, non-negative real counts.
    """
    try:
        arr = np.asarray(votes)
    except (TypeError, ValueError):  # ragged rows
        arr = np.zeros(0)
    n_col = len(FERPLUS_VOTE_TO_CLASS)
    if arr.ndim != 2 or arr.shape[1] != n_col or arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number) \
            or np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"received votes {type(votes).__name__} of shape {arr.shape} ({arr.dtype}); expected (N, "
                         f"{n_col}) real vote counts, one row per face in the column order of FERPLUS_HEADER[2:]")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise InputError(f"received votes row {row} {arr[row].tolist()}; expected finite counts >= 0")
    votes = arr
    cols = [i for i, c in enumerate(FERPLUS_VOTE_TO_CLASS) if c >= 0]
    t = np.zeros((len(votes), len(CLASSES)), np.float64)
    t[:, [FERPLUS_VOTE_TO_CLASS[i] for i in cols]] = np.asarray(votes, np.float64)[:, cols]
    tot = t.sum(1, keepdims=True)
    t = np.where(tot > 0, t / np.maximum(tot, 1e-12), 1.0 / len(CLASSES))
    return t.astype(np.float32)


# --------------------------------------------------------------------------------------------
# CSV (public FER2013 / FER+ releases)
# --------------------------------------------------------------------------------------------
def _read_fer2013_rows(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fer2013.csv -> (images (N,48,48) uint8, labels (N,) int64, split (N,) str)."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    split: list[str] = []
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path} is empty; expected a header 'emotion,pixels,Usage' and one row per face")
            col = _header_index(header, ("emotion", "pixels", "Usage"), path)
            for row in reader:
                line = reader.line_num
                if not any(c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise DataError(
                        f"{path} line {line}: {len(row)} fields; expected {len(header)} ({','.join(header)})"
                    )
                labels.append(_parse_int(row[col["emotion"]], path, line, "emotion", 0, len(CLASSES) - 1))
                images.append(_parse_pixels(row[col["pixels"]], path, line))
                usage = row[col["Usage"]].strip()
                if usage not in FER2013_USAGE:
                    raise DataError(f"{path} line {line}: Usage is {usage!r}; expected one of {list(FER2013_USAGE)}")
                split.append(FER2013_USAGE[usage])
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc}); expected the FER2013 CSV") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from exc
    if not images:
        raise DataError(f"{path} has a header but no rows; expected one row per face")
    return np.stack(images), np.asarray(labels, dtype=np.int64), np.asarray(split)


def load_fer2013_csv(path: str | os.PathLike[str]) -> FaceSet:
    """Load the public FER2013 ``fer2013.csv`` with its original labels.

    Args:
        path: CSV with header ``emotion,pixels,Usage``; ``pixels`` holds 2304 space-separated
            integers 0..255 (48x48); ``Usage`` Training/PublicTest/PrivateTest -> train/val/test.

    Returns:
        A FaceSet of 48x48 faces with ``source`` ``"fer2013"``.

    Raises:
        DataError: if the file is missing or a line is malformed (the message names file and line).
    """
    p = _existing_file(path, "the FER2013 CSV (header emotion,pixels,Usage)")
    images, labels, split = _read_fer2013_rows(p)
    return FaceSet(images, labels, split, "fer2013")


def _read_ferplus_votes(path: Path) -> tuple[np.ndarray, list[str]]:
    """fer2013new.csv -> (votes (N,10) int64, usage per row)."""
    votes: list[list[int]] = []
    usage: list[str] = []
    names = [h.lower() for h in FERPLUS_HEADER]
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [h.strip().lower() for h in header] != names:
                got = "an empty file" if header is None else repr(",".join(header))
                raise DataError(f"{path} line 1: header is {got}; expected {','.join(FERPLUS_HEADER)!r}")
            for row in reader:
                line = reader.line_num
                if not any(c.strip() for c in row):
                    continue
                if len(row) != len(FERPLUS_HEADER):
                    raise DataError(
                        f"{path} line {line}: {len(row)} fields; expected {len(FERPLUS_HEADER)} "
                        f"({','.join(FERPLUS_HEADER)})"
                    )
                u = row[0].strip()
                if u not in FER2013_USAGE:
                    raise DataError(f"{path} line {line}: Usage is {u!r}; expected one of {list(FER2013_USAGE)}")
                usage.append(u)
                votes.append(
                    [_parse_int(v, path, line, f"{FERPLUS_HEADER[i + 2]!r} votes", 0, _INT64_MAX)
                     for i, v in enumerate(row[2:])]
                )
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc}); expected the FER+ fer2013new.csv") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from exc
    return np.asarray(votes, dtype=np.int64).reshape(-1, len(FERPLUS_VOTE_TO_CLASS)), usage


def load_ferplus_csv(
    fer2013_csv: str | os.PathLike[str], fer2013new_csv: str | os.PathLike[str], rule: str = "majority"
) -> FaceSet:
    """Load FER2013 faces with FER+ majority labels from the two public CSVs.

    ``fer2013new.csv`` has one row per ``fer2013.csv`` row, in the same order. Faces without a
    label under ``rule`` (see :func:`ferplus_majority`) are dropped.

    Args:
        fer2013_csv: the FER2013 CSV (faces).
        fer2013new_csv: the FER+ CSV (header ``Usage,Image name,neutral,...,NF``).
        rule: ``"majority"`` (as the shipped ``ferplus_labels.npz``) or ``"plurality"``.

    Returns:
        A FaceSet of 48x48 faces with ``source`` ``"ferplus"``.

    Raises:
        DataError: if a file is missing, a line is malformed, or the files do not pair up.
    """
    if rule not in ("majority", "plurality"):
        raise InputError(f"received rule={rule!r}; expected 'majority' or 'plurality'")
    p = _existing_file(fer2013_csv, "the FER2013 CSV (header emotion,pixels,Usage)")
    q = _existing_file(fer2013new_csv, f"the FER+ CSV (header {','.join(FERPLUS_HEADER)})")
    images, _, split = _read_fer2013_rows(p)
    votes, usage = _read_ferplus_votes(q)
    if len(usage) != len(images):
        raise DataError(
            f"{q} has {len(usage)} data rows but {p} has {len(images)}; expected one FER+ row per FER2013 row"
        )
    mapped = np.asarray([FER2013_USAGE[u] for u in usage])
    differ = np.flatnonzero(mapped != split)
    if differ.size:
        i = int(differ[0])
        raise DataError(
            f"{q} data row {i + 1}: Usage {usage[i]!r} differs from {p} data row {i + 1} ({split[i]!r}); "
            "expected the two files in the same row order"
        )
    labels = ferplus_majority(votes, rule)
    keep = labels >= 0
    log.info("%s: %d of %d faces have a FER+ majority label", q, int(keep.sum()), len(labels))
    return FaceSet(images[keep], labels[keep], split[keep], "ferplus")


# --------------------------------------------------------------------------------------------
# Image trees
# --------------------------------------------------------------------------------------------
def load_rafdb(root: str | os.PathLike[str], size: int = 48) -> FaceSet:
    """Load RAF-DB basic (aligned 100x100 RGB faces), made gray and resized to ``size``.

    Layout: ``root/EmoLabel/list_patition_label.txt`` with lines ``train_00001.jpg 5`` (labels 1..7 =
    Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral) and images
    ``root/Image/aligned/train_00001_aligned.jpg``. RAF-DB has no validation split: splits are
    ``"train"`` and ``"test"`` from the name prefix.

    Returns:
        A FaceSet with ``source`` ``"rafdb"``.

    Raises:
        DataError: if the label file or an image is missing, or a line is malformed (file and line named).
    """
    prep = _size_prep(size)
    r = _existing_dir(root, f"the RAF-DB basic root holding {RAFDB_LABEL_FILE} and {RAFDB_IMAGE_DIR}/")
    label_file = _existing_file(
        r / RAFDB_LABEL_FILE, "the RAF-DB label list (lines like 'train_00001.jpg 5')"
    )
    image_dir = r / RAFDB_IMAGE_DIR
    images: list[np.ndarray] = []
    labels: list[int] = []
    split: list[str] = []
    try:
        lines = label_file.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{label_file}: not a text file ({exc}); expected lines like 'train_00001.jpg 5'") from exc
    for line_no, text in enumerate(lines, start=1):
        fields = text.split()
        if not fields:
            continue
        where = f"{label_file} line {line_no}: "
        if len(fields) != 2:
            raise DataError(f"{where}received {text.strip()!r}; expected '<name>.jpg <label 1..7>'")
        name, lab = fields
        stem, dot, ext = name.rpartition(".")
        prefix = name.split("_", 1)[0]
        if not dot or ext.lower() != "jpg" or prefix not in ("train", "test"):
            raise DataError(f"{where}image name {name!r}; expected 'train_NNNNN.jpg' or 'test_NNNN.jpg'")
        label = _parse_int(lab, label_file, line_no, "label", 1, 7)
        images.append(_decode_image(image_dir / f"{stem}_aligned.jpg", prep, where))
        labels.append(RAFDB_TO_CLASS[label])
        split.append(prefix)
    if not images:
        raise DataError(f"{label_file} lists no images; expected lines like 'train_00001.jpg 5'")
    return FaceSet(np.stack(images), np.asarray(labels, dtype=np.int64), np.asarray(split), "rafdb")


def _subdirs(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_dirs(d: Path) -> list[tuple[Path, int]]:
    dirs = _subdirs(d)
    lower = [c.lower() for c in CLASSES]
    unknown = [p.name for p in dirs if p.name.lower() not in lower]
    if unknown:
        raise DataError(
            f"{d}: unknown folder name(s) {unknown}; expected class folders named {list(CLASSES)} "
            f"(case-insensitive), or split folders {list(SPLITS)} holding class folders"
        )
    return sorted(((p, lower.index(p.name.lower())) for p in dirs), key=lambda pc: pc[1])


def _image_files(d: Path) -> list[Path]:
    # a dangling symlink is no file, yet a face of the set: kept, so that decoding it names it
    files = sorted(p for p in d.iterdir() if (p.is_file() or (p.is_symlink() and not p.exists()))
                   and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if len(images) != len(files):
        log.warning("%s: ignoring %d file(s) that are not %s", d, len(files) - len(images), "/".join(IMAGE_SUFFIXES))
    return images


def load_folder(root: str | os.PathLike[str], size: int = 48, split: str = "test") -> FaceSet:
    """Load faces from folders named by class, optionally under split folders.

    Layouts: ``root/<split>/<class>/*.png|jpg`` (split one of train/val/test) or
    ``root/<class>/*.png|jpg`` (every face gets the split ``split``). Class folder names are
    ``CLASSES`` names, case-insensitive. Images are made gray and resized to ``size``.

    Args:
        root: the top folder.
        size: face side in pixels.
        split: split name for the class-folder-only layout (default ``"test"``: such a folder is
            usually an evaluation set; pass ``"train"`` to train on it).

    Returns:
        A FaceSet with ``source`` ``"folder"``.

    Raises:
        DataError: if ``root`` is missing, a folder name is neither a class nor a split, the layouts
            are mixed, an image cannot be decoded, or there are no images.
    """
    prep = _size_prep(size)
    if split not in SPLITS:
        raise InputError(f"received split={split!r}; expected one of {list(SPLITS)}")
    r = _existing_dir(root, "a folder of class folders (angry/, happy/, ...) or of split folders (train/, test/)")
    top = _subdirs(r)
    top_names = [p.name.lower() for p in top]
    if top and all(n in SPLITS for n in top_names):
        layout = [(p.name.lower(), cd, c) for p in top for cd, c in _class_dirs(p)]
    elif any(n in SPLITS for n in top_names):
        odd = [p.name for p in top if p.name.lower() not in SPLITS]
        raise DataError(
            f"{r}: mixes split folders with other folders {odd}; expected only split folders "
            f"{list(SPLITS)} or only class folders {list(CLASSES)}"
        )
    else:
        layout = [(split, cd, c) for cd, c in _class_dirs(r)]
    images: list[np.ndarray] = []
    labels: list[int] = []
    splits: list[str] = []
    for s, class_dir, c in layout:
        for f in _image_files(class_dir):
            images.append(_decode_image(f, prep, ""))
            labels.append(c)
            splits.append(s)
    if not images:
        raise DataError(f"{r}: found no .png/.jpg images; expected <class>/*.png or <split>/<class>/*.png")
    return FaceSet(np.stack(images), np.asarray(labels, dtype=np.int64), np.asarray(splits), "folder")


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------
def _csv_header(path: Path) -> list[str]:
    try:
        with _open_text(path) as f:
            return [h.strip().lower() for h in next(csv.reader(f), [])]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc})") from exc


def _call(loader: Callable[..., FaceSet], fixed: dict[str, Any], kw: dict[str, Any], what: str) -> FaceSet:
    params = inspect.signature(loader).parameters
    options = [k for k in params if k not in fixed]
    unknown = sorted(set(kw) - set(options))
    if unknown:
        raise InputError(f"option(s) {unknown} do not apply to {what}; options for it: {options}")
    return loader(**fixed, **kw)


def npz_path(data: Path) -> Optional[Path]:
    """The .npz that :func:`load_dataset` reads for ``data`` (the path itself, or the ``fer2013.npz`` of a folder
    that is no RAF-DB root), or None for other data (a CSV, RAF-DB, an image folder): what ``labels`` applies to."""
    if data.is_dir():
        return data / "fer2013.npz" if not (data / "EmoLabel").is_dir() and (data / "fer2013.npz").is_file() else None
    return data if data.suffix.lower() == ".npz" else None


def load_dataset(path: str | os.PathLike[str], **kw: Any) -> FaceSet:
    """Load a data set, choosing the loader from what ``path`` is.

    - ``*.npz`` -> :func:`load_npz` (options ``labels``, ``ferplus_path``); a directory holding
      ``fer2013.npz`` (such as ``../shared/data``) also does;
    - ``*.csv`` -> :func:`load_fer2013_csv`, or :func:`load_ferplus_csv` when ``ferplus_csv=`` names
      the FER+ ``fer2013new.csv`` (option ``rule``);
    - a directory with ``EmoLabel/`` -> :func:`load_rafdb` (option ``size``);
    - any other directory -> :func:`load_folder` (options ``size``, ``split``).

    Raises:
        DataError: if the path is missing or its kind cannot be told.
        InputError: if an option does not apply to the detected kind, or ``path`` is not a path.
    """
    p = as_path(path, "data path")
    if not p.exists():
        raise DataError(f"{p} does not exist; expected a .npz, a .csv, a RAF-DB root or a folder of class folders")
    if p.is_dir():
        if (p / "EmoLabel").is_dir():
            return _call(load_rafdb, {"root": p}, kw, f"RAF-DB root {p}")
        if (p / "fer2013.npz").is_file():
            return _call(load_npz, {"path": p / "fer2013.npz"}, kw, f"{p / 'fer2013.npz'}")
        return _call(load_folder, {"root": p}, kw, f"image folder {p}")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return _call(load_npz, {"path": p}, kw, f"{p}")
    if suffix == ".csv":
        header = _csv_header(p)
        if header == [h.lower() for h in FERPLUS_HEADER]:
            raise DataError(
                f"{p} is the FER+ label file (fer2013new.csv), which holds no pixels; expected the "
                f"fer2013.csv path, with ferplus_csv={str(p)!r}"
            )
        if "ferplus_csv" in kw:
            rest = dict(kw)
            ferplus = rest.pop("ferplus_csv")
            return _call(load_ferplus_csv, {"fer2013_csv": p, "fer2013new_csv": ferplus}, rest, f"FER+ CSVs {p}")
        return _call(load_fer2013_csv, {"path": p}, kw, f"FER2013 CSV {p}")
    raise DataError(
        f"cannot tell what data set {p} is; expected a .npz (fer2013.npz), a .csv (fer2013.csv), "
        "a RAF-DB root (with EmoLabel/) or a folder of class folders"
    )
