"""Adversarial review of the data loaders (fsrfer_edge.ferplus, trainer.data): malformed input gets a DataError
or InputError that names the file and what was expected, never a wrong answer or a bare Python error."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fsrfer_edge.errors import DataError, InputError
from fsrfer_edge.ferplus import load_labelled_faces
from trainer import data

PIXELS = " ".join(["7"] * 48 * 48)
FERPLUS_HEADER = ",".join(data.FERPLUS_HEADER)


def _pair(d: Path, orig: np.ndarray) -> Path:
    """fer2013.npz (3 faces, given orig_row) + ferplus_labels.npz (rows 0, 1, 2 labelled 3, 4, 5) in ``d``."""
    np.savez(d / "fer2013.npz", images=np.zeros((3, 4, 4), np.uint8), labels=np.array([0, 1, 2]),
             split=np.array(["test"] * 3), orig_row=orig)
    np.savez(d / "ferplus_labels.npz", orig_row=np.arange(3), labels=np.array([3, 4, 5]))
    return d / "fer2013.npz"


@pytest.mark.parametrize("orig, what", [
    (np.array([0, 0, 1]), r"'orig_row'.*duplicate"),  # one FER+ label scored twice
    (np.array([True, False, True]), r"'orig_row'.*bool"),  # True/False matched FER+ rows 1 and 0
    (np.array([0.0, 1.5, 2.0]), r"'orig_row'.*float64"),
])
def test_eval_loader_refuses_orig_row_the_trainer_refuses(tmp_path: Path, orig: np.ndarray, what: str) -> None:
    """fsrfer-eval / bench / export --eval-data (load_labelled_faces) joined FER+ labels through duplicate, bool or
    float orig_row values and scored against wrong labels, where the trainer's load_npz refused the same file."""
    fer = _pair(tmp_path, orig)
    with pytest.raises(DataError, match=what):
        data.load_npz(fer)
    with pytest.raises(DataError, match=r"fer2013\.npz: array " + what):
        load_labelled_faces(fer, "ferplus", split=None)


def test_eval_loader_still_joins_valid_orig_row(tmp_path: Path) -> None:
    fer = _pair(tmp_path, np.array([2, -1, 0], np.int32))
    faces = load_labelled_faces(fer, "ferplus", split="test")
    np.testing.assert_array_equal(faces.labels, [5, 3])


@pytest.mark.parametrize("token", ["\u00b2", "+"])
def test_fer2013_csv_odd_pixel_is_a_data_error(tmp_path: Path, token: str) -> None:
    """A superscript digit passed str.isdigit(), then int() raised a bare ValueError."""
    p = tmp_path / "fer2013.csv"
    p.write_text("emotion,pixels,Usage\n0," + " ".join([token] + ["7"] * (48 * 48 - 1)) + ",Training\n",
                 encoding="utf-8")
    with pytest.raises(DataError, match=r"fer2013\.csv line 2: pixel 0 is .*expected an integer 0\.\.255"):
        data.load_fer2013_csv(p)


def test_ferplus_csv_huge_vote_is_a_data_error(tmp_path: Path) -> None:
    """A vote count beyond int64 raised a bare OverflowError."""
    fer = tmp_path / "fer2013.csv"
    fer.write_text(f"emotion,pixels,Usage\n0,{PIXELS},Training\n")
    plus = tmp_path / "fer2013new.csv"
    plus.write_text(f"{FERPLUS_HEADER}\nTraining,x.png,{'9' * 30},0,0,0,0,0,0,0,0,0\n")
    with pytest.raises(DataError, match=r"fer2013new\.csv line 2: 'neutral' votes is '9+'; expected an integer 0\.\."):
        data.load_ferplus_csv(fer, plus)


@pytest.mark.parametrize("votes", [
    np.array([[np.nan, 5, 0, 0, 0, 0, 0, 0, 0, 0]]),
    np.array([[np.inf, 5, 0, 0, 0, 0, 0, 0, 0, 0]]),
    np.full((1, 10), 3 + 1j),
])
def test_ferplus_majority_refuses_votes_that_are_not_counts(votes: np.ndarray) -> None:
    """NaN, infinite or complex votes gave labels (or -1) silently; the docstring promises an InputError."""
    with pytest.raises(InputError, match=r"votes"):
        data.ferplus_majority(votes)


def test_labelled_faces_without_votes_are_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A FER+ archive whose 'votes' row of a labelled face was all zero gave that face a uniform soft label without
    a word (training with data.soft_labels then learnt 'no expression' for a face labelled happy)."""
    np.savez(tmp_path / "fer2013.npz", images=np.zeros((3, 4, 4), np.uint8), labels=np.array([0, 1, 2]),
             split=np.array(["train", "val", "test"]), orig_row=np.arange(3))
    votes = np.zeros((3, 10), np.uint8)
    votes[0, 1] = 9  # happiness
    votes[2, 7] = 9  # contempt only: no vote for any of the 7 classes
    np.savez(tmp_path / "ferplus_labels.npz", orig_row=np.arange(3), labels=np.array([3, 4, 5]), votes=votes)
    with caplog.at_level("WARNING", logger="trainer.data"):
        fs = data.load_npz(tmp_path / "fer2013.npz")
    assert fs.targets is not None and len(fs) == 3  # what loads is unchanged
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "2 of 3" in warned[0] and "ferplus_labels.npz" in warned[0] and "row 1" in warned[0]


def test_folder_with_a_broken_link_is_a_data_error(tmp_path: Path) -> None:
    """A dangling symlink happy/b.png (data linked in from a moved folder) was skipped without a word: a face lost."""
    from PIL import Image

    (tmp_path / "happy").mkdir()
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(tmp_path / "happy" / "a.png")
    (tmp_path / "happy" / "b.png").symlink_to(tmp_path / "moved" / "b.png")
    with pytest.raises(DataError, match=r"happy/b\.png does not exist"):
        data.load_folder(tmp_path, size=8)
