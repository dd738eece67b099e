"""Labelled ``.npz`` face archives for evaluation, with the FER+ label join (numpy only).

``../shared/data`` ships ``fer2013.npz`` (the FER2013 faces with their original labels) and, beside it,
``ferplus_labels.npz`` (the FER+ majority labels, joined by ``orig_row``). Every tool that measures
accuracy reads them through this module, so ``fsrfer-eval``, ``fsrfer-bench --data`` and
``fsrfer-export --eval-data`` score the same faces against the same labels. The trainer's
:func:`trainer.data.load_npz` imports the join from here.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import zipfile
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np

from .errors import DataError, InputError
from .fileio import as_path, file_problem
from .preprocessing import CLASSES

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
#: Label sets of a FER2013 archive: the FER+ relabelling, or the original FER2013 labels.
LABEL_SETS = ("ferplus", "fer2013")
#: Name of the FER+ labels archive looked for beside the data.
FERPLUS_FILE = "ferplus_labels.npz"
#: What reading a damaged .npz raises: a truncated or empty file, a bad member, a plain .npy.
NPZ_READ_ERRORS = (OSError, ValueError, zipfile.BadZipFile, EOFError)
SPLITS = ("train", "val", "test")


def existing_file(path: PathLike, what: str) -> Path:
    """``path`` as a Path, or DataError saying why it cannot be read and what was expected (InputError for a
    ``path`` that is not a str or os.PathLike)."""
    p = as_path(path, what)
    problem = file_problem(p)
    if problem:
        raise DataError(f"{p} {problem}; expected {what}")
    return p


def read_npz(path: Path, required: Sequence[str]) -> Dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive (no pickles), or DataError naming what is missing."""
    if Path(path).is_file() and not zipfile.is_zipfile(path):  # numpy's own message would talk of pickles
        raise DataError(f"{path} is not an .npz archive (a NumPy zip file); expected one with arrays {list(required)}, "
                        "e.g. ../shared/data/fer2013.npz")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in required if k not in z.files]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {missing}; it holds {sorted(z.files)}, expected {list(required)}"
                )
            return {k: z[k] for k in z.files}
    except NPZ_READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read as a NumPy .npz archive ({exc})") from exc


def check_1d(arr: np.ndarray, n: int, path: Path, name: str) -> None:
    if arr.shape != (n,):
        raise DataError(f"{path}: array {name!r} has shape {arr.shape}; expected ({n},) (one entry per image)")


def check_labels(labels: np.ndarray, path: Path) -> None:
    """DataError unless array ``labels`` of ``path`` holds integers -1 (no label) or 0..6 (a class of ``CLASSES``)."""
    expected = f"expected integers -1 (no label) or 0..{len(CLASSES) - 1}"
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: array 'labels' is {labels.dtype}; {expected}")
    bad = (labels < -1) | (labels >= len(CLASSES))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: array 'labels' row {row} is {labels[row]}; {expected}")


def check_orig_row(orig: np.ndarray, path: Path) -> None:
    """DataError unless ``orig`` (the ``orig_row`` array of FER2013 archive ``path``) holds integers, distinct but
    for -1 (a face whose row in the original CSV is unknown)."""
    expected = "expected distinct integers (or -1 for unknown)"
    if not np.issubdtype(orig.dtype, np.integer):  # bool or float rows would match the wrong FER+ rows
        raise DataError(f"{path}: array 'orig_row' is {orig.dtype}; {expected}")
    known, counts = np.unique(orig[orig >= 0], return_counts=True)
    if (counts > 1).any():
        dup = int(np.flatnonzero(counts > 1)[0])
        raise DataError(f"{path}: array 'orig_row' holds duplicates (orig_row {int(known[dup])} appears "
                        f"{int(counts[dup])} times); {expected}")


@dataclasses.dataclass(frozen=True)
class FerplusJoin:
    """The FER+ join of a FER2013 archive's faces.

    ``labels``: (N,) FER+ label per face, -1 where it has none; ``rows``: (N,) the matching row of the
    FER+ archive (meaningful where ``labels >= 0``); ``arrays``: the FER+ archive's arrays (e.g.
    ``votes``); ``path``: the FER+ archive.
    """

    labels: np.ndarray
    rows: np.ndarray
    arrays: Dict[str, np.ndarray]
    path: Path


def join_ferplus(path: Path, orig: np.ndarray, split: Optional[np.ndarray],
                 ferplus_path: Optional[PathLike] = None) -> FerplusJoin:
    """FER+ labels for the faces of a FER2013 archive, joined by ``orig_row``; -1 where a face has none.

    Args:
        path: the FER2013 archive (for messages, and to find ``ferplus_labels.npz`` beside it).
        orig: (N,) its ``orig_row`` array: distinct integers, -1 for an unknown row.
        split: (N,) its split names (checked against the FER+ archive's, when that has one); None: it has none.
        ferplus_path: the FER+ archive; default ``ferplus_labels.npz`` beside ``path``.

    Raises:
        DataError: ``orig`` is not distinct integers, the FER+ archive is missing or malformed, or its splits
            disagree with ``path``'s.
    """
    check_orig_row(orig, path)
    fp = existing_file(
        ferplus_path if ferplus_path is not None else path.with_name(FERPLUS_FILE),
        "the FER+ labels archive (arrays orig_row, labels); put it beside the data, or score the original "
        "FER2013 labels (fsrfer-eval/fsrfer-bench --labels fer2013, data.labels: fer2013 in a training config)",
    )
    f = read_npz(fp, ("orig_row", "labels"))
    f_orig, f_labels = f["orig_row"], f["labels"]
    if f_orig.ndim != 1:
        raise DataError(f"{fp}: array 'orig_row' has shape {f_orig.shape}; expected (M,)")
    check_1d(f_labels, len(f_orig), fp, "labels")
    if not np.issubdtype(f_orig.dtype, np.integer) or len(np.unique(f_orig)) != len(f_orig):
        raise DataError(f"{fp}: array 'orig_row' must hold distinct integers (received {f_orig.dtype}, duplicates?)")
    check_labels(f_labels, fp)
    if len(f_orig) == 0:
        raise DataError(f"{fp}: holds no rows; expected one FER+ label per FER2013 orig_row")
    order = np.argsort(f_orig)
    match = order[np.clip(np.searchsorted(f_orig, orig, sorter=order), 0, len(f_orig) - 1)]
    found = (f_orig[match] == orig) & (orig >= 0)
    joined = np.where(found, f_labels[match], -1)
    if "split" in f and split is not None:
        f_split = f["split"]
        check_1d(f_split, len(f_orig), fp, "split")
        differ = found & (f_split.astype(str)[match] != split)
        if differ.any():
            row = int(np.flatnonzero(differ)[0])
            raise DataError(
                f"{fp}: orig_row {int(orig[row])} is in split {str(f_split[match[row]])!r} but {path} says "
                f"{str(split[row])!r}; expected the two archives to agree (are they from the same release?)"
            )
    log.info("%s + %s: %d of %d faces have a FER+ majority label", path, fp, int((joined >= 0).sum()), len(orig))
    return FerplusJoin(joined.astype(np.int64), match, f, fp)


@dataclasses.dataclass(frozen=True)
class LabelledFaces:
    """Faces of one split with their labels, and which labels they are."""

    images: np.ndarray
    labels: np.ndarray
    split: str  # "train", "val", "test", or "all" (an archive without a split array)
    label_set: str  # "ferplus", "fer2013", or "npz" (a plain archive's own labels)


def default_label_set(path: PathLike) -> str:
    """``ferplus`` when ``ferplus_labels.npz`` lies beside ``path`` (as ``fsrfer-eval`` assumes), else ``fer2013``."""
    return "ferplus" if as_path(path, "an .npz archive").with_name(FERPLUS_FILE).is_file() else "fer2013"


def load_labelled_faces(path: PathLike, labels: Optional[str] = None, split: Optional[str] = "test") -> LabelledFaces:
    """Faces and labels of one split of an ``.npz`` archive, FER+ labels joined as ``fsrfer-eval`` does.

    Args:
        path: ``fer2013.npz`` (``images``, ``labels``, ``split``, ``orig_row``), or a plain archive
            (``images``, ``labels``, optional ``split``), whose own labels are used.
        labels: ``"ferplus"``, ``"fer2013"``, or None: FER+ when its labels file lies beside ``path``.
            Ignored (recorded as ``"npz"``) for a plain archive without ``orig_row``.
        split: the split to use when the archive has a split array; None: every row.

    Returns:
        :class:`LabelledFaces`; rows without a label (FER+ "no majority", label -1) are left out.

    Raises:
        InputError: an unknown ``labels`` or ``split``, or a ``path`` that is not a str or os.PathLike.
        DataError: a file is missing or malformed (labels other than integers -1..6 included), or the split has
            no labelled face.
    """
    if labels is not None and labels not in LABEL_SETS:
        raise InputError(f"labels={labels!r}; expected one of {list(LABEL_SETS)}")
    if split is not None and split not in SPLITS:
        raise InputError(f"split={split!r}; expected one of {list(SPLITS)}")
    p = existing_file(path, "an .npz with 'images' (N,H,W) uint8 and 'labels' (N,), e.g. ../shared/data/fer2013.npz")
    d = read_npz(p, ("images", "labels"))
    images, raw = d["images"], np.asarray(d["labels"])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{p}: array 'images' is {images.dtype} of shape {images.shape}; expected (N, H, W) uint8")
    n = len(images)
    check_1d(raw, n, p, "labels")
    check_labels(raw, p)
    names = d["split"].astype(str) if "split" in d else None
    if names is not None:
        check_1d(names, n, p, "split")
    if "orig_row" in d:
        label_set = labels or default_label_set(p)
        if label_set == "ferplus":
            check_1d(d["orig_row"], n, p, "orig_row")
            raw = join_ferplus(p, d["orig_row"], names).labels
    else:
        label_set = "npz"
    keep = raw >= 0
    split_name = "all"
    if names is not None and split is not None:
        if not (names == split).any():
            present = sorted({str(n) for n in names})
            raise DataError(f"{p} has a 'split' array but no {split!r} rows; splits present: {present}")
        keep &= names == split
        split_name = split
    if not keep.any():
        raise DataError(f"{p}: no labelled face in split {split_name!r} (with {label_set} labels)")
    return LabelledFaces(images[keep], raw[keep].astype(np.int64), split_name, label_set)
