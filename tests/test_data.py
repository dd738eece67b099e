"""Data loaders on tiny files written by the tests, including malformed ones."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fsrfer_edge.errors import DataError, FsrferError, InputError
from fsrfer_edge.preprocessing import CLASSES
from trainer import data
from trainer.data import FaceSet

PIL = pytest.importorskip("PIL.Image")

FER_HEADER = "emotion,pixels,Usage"
PLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


def _px(seed: int) -> str:
    return " ".join(str(v) for v in np.random.default_rng(seed).integers(0, 256, 2304))


def write_fer_csv(path: Path, rows: list[str] | None = None, header: str = FER_HEADER) -> Path:
    if rows is None:
        rows = [f"0,{_px(0)},Training", f"3,{_px(1)},PublicTest", f"6,{_px(2)},PrivateTest"]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def write_plus_csv(path: Path, rows: list[str] | None = None, header: str = PLUS_HEADER) -> Path:
    if rows is None:
        rows = [
            "Training,fer0000000.png,0,0,0,0,9,1,0,0,0,0",  # anger -> 0
            "PublicTest,fer0000001.png,4,0,0,0,0,0,0,5,1,0",  # contempt wins -> dropped
            "PrivateTest,fer0000002.png,7,0,3,0,0,0,0,0,0,0",  # neutral -> 6
        ]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def assert_names(exc: pytest.ExceptionInfo, path: Path, line: int | None = None) -> None:
    msg = str(exc.value)
    assert str(path) in msg, msg
    if line is not None:
        assert f"line {line}" in msg, msg


# --------------------------------------------------------------------------------------------
# FaceSet, batches
# --------------------------------------------------------------------------------------------
def _faceset(n: int = 70) -> FaceSet:
    rng = np.random.default_rng(0)
    return FaceSet(
        rng.integers(0, 256, (n, 8, 8)).astype(np.uint8),
        np.arange(n) % 7,
        np.array(["train", "val", "test", "train", "train"] * (n // 5)),
        "unit",
    )


def test_faceset_subset_take_and_counts():
    fs = _faceset()
    assert len(fs) == 70 and fs.labels.dtype == np.int64
    assert fs.splits == ("train", "val", "test")
    tr = fs.subset("train")
    assert len(tr) == 42 and set(tr.split) == {"train"}
    t1, t2 = fs.take(20, seed=3), fs.take(20, seed=3)
    assert len(t1) == 20
    np.testing.assert_array_equal(t1.images, t2.images)
    assert not np.array_equal(t1.images, fs.take(20, seed=4).images)
    # stratified: the split proportions 3:1:1 survive.
    assert [int((t1.split == s).sum()) for s in ("train", "val", "test")] == [12, 4, 4]
    assert len(fs.take(1000)) == 70
    counts = fs.class_counts()
    assert sum(sum(c) for c in counts.values()) == 70 and len(counts["train"]) == len(CLASSES)
    with pytest.raises(DataError):
        fs.subset("validation")
    with pytest.raises(InputError):
        fs.take(0)


def test_faceset_subset_missing_split_and_validation():
    fs = FaceSet(np.zeros((2, 4, 4), np.uint8), np.array([0, 1]), np.array(["train", "test"]), "rafdb")
    with pytest.raises(DataError, match="no 'val'"):
        fs.subset("val")
    with pytest.raises(DataError):
        FaceSet(np.zeros((2, 4, 4), np.float32), np.array([0, 1]), np.array(["train", "test"]), "x")
    with pytest.raises(DataError):
        FaceSet(np.zeros((2, 4, 4), np.uint8), np.array([0, 7]), np.array(["train", "test"]), "x")
    with pytest.raises(DataError):
        FaceSet(np.zeros((2, 4, 4), np.uint8), np.array([0, 1]), np.array(["train", "dev"]), "x")


def test_batches_cover_and_are_deterministic():
    out = list(data.batches(10, 4, np.random.default_rng(5)))
    assert [len(b) for b in out] == [4, 4, 2]
    assert sorted(np.concatenate(out).tolist()) == list(range(10))
    again = list(data.batches(10, 4, np.random.default_rng(5)))
    assert all(np.array_equal(a, b) for a, b in zip(out, again))
    assert [b.tolist() for b in data.batches(5, 2, np.random.default_rng(0), shuffle=False)] == [[0, 1], [2, 3], [4]]
    assert [len(b) for b in data.batches(10, 4, np.random.default_rng(0), drop_last=True)] == [4, 4]
    assert list(data.batches(0, 4, np.random.default_rng(0))) == []
    with pytest.raises(InputError):
        list(data.batches(10, 0, np.random.default_rng(0)))


# --------------------------------------------------------------------------------------------
# FER+ vote rule
# --------------------------------------------------------------------------------------------
def test_ferplus_majority_rules():
    votes = np.array([
        [0, 0, 0, 0, 9, 1, 0, 0, 0, 0],  # anger
        [4, 0, 0, 0, 0, 0, 0, 5, 1, 0],  # contempt wins
        [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],  # tie
        [0] * 10,                        # no votes
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # not a face
        [4, 0, 0, 3, 0, 0, 0, 0, 3, 0],  # plurality neutral, no strict majority
        [3, 1, 1, 1, 0, 0, 0, 0, 0, 0],  # single votes dropped -> neutral holds all
    ])
    np.testing.assert_array_equal(data.ferplus_majority(votes), [0, -1, -1, -1, -1, -1, 6])
    np.testing.assert_array_equal(data.ferplus_majority(votes, "plurality"), [0, -1, -1, -1, -1, 6, 6])
    # every column of the 7 classes maps to its class
    eye = np.eye(10, dtype=np.int64) * 5
    np.testing.assert_array_equal(data.ferplus_majority(eye), [6, 3, 5, 4, 0, 1, 2, -1, -1, -1])
    with pytest.raises(InputError):
        data.ferplus_majority(np.zeros((2, 9)))
    with pytest.raises(InputError):
        data.ferplus_majority(votes, "mode")


# --------------------------------------------------------------------------------------------
# .npz
# --------------------------------------------------------------------------------------------
def write_npz_pair(d: Path, **override: np.ndarray) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    fer = {
        "images": rng.integers(0, 256, (5, 48, 48)).astype(np.uint8),
        "labels": np.array([0, 1, 2, 3, 4], np.int8),
        "split": np.array(["train", "train", "val", "test", "test"]),
        "orig_row": np.array([0, 2, 3, 5, -1], np.int32),
    }
    plus = {
        "orig_row": np.array([5, 0, 2, 3, 7], np.int32),
        "votes": np.zeros((5, 10), np.uint8),
        "labels": np.array([6, 3, -1, 5, 1], np.int8),
        "split": np.array(["test", "train", "train", "val", "test"]),
    }
    for k, v in override.items():
        target, key = (plus, k[5:]) if k.startswith("plus_") else (fer, k)
        if v is None:
            del target[key]
        else:
            target[key] = v
    np.savez(d / "fer2013.npz", **fer)
    np.savez(d / "ferplus_labels.npz", **plus)
    return d / "fer2013.npz", d / "ferplus_labels.npz"


def test_load_npz_both_label_sets(tmp_path):
    fer, _ = write_npz_pair(tmp_path)
    plus = data.load_npz(fer)
    assert plus.source == "ferplus" and len(plus) == 3  # row 2 is -1, row 4 has no orig_row
    np.testing.assert_array_equal(plus.labels, [3, 5, 6])
    np.testing.assert_array_equal(plus.split, ["train", "val", "test"])
    raw = np.load(fer)["images"]
    np.testing.assert_array_equal(plus.images, raw[[0, 2, 3]])
    orig = data.load_npz(fer, labels="fer2013")
    assert orig.source == "fer2013" and len(orig) == 5
    np.testing.assert_array_equal(orig.labels, [0, 1, 2, 3, 4])
    assert orig.images.dtype == np.uint8 and orig.images.shape == (5, 48, 48)
    via_dir = data.load_dataset(tmp_path, labels="fer2013")
    assert len(via_dir) == 5


def test_load_npz_errors(tmp_path):
    fer, plus = write_npz_pair(tmp_path, labels=None)
    with pytest.raises(DataError, match="labels") as e:
        data.load_npz(fer, labels="fer2013")
    assert_names(e, fer)
    fer, plus = write_npz_pair(tmp_path, plus_orig_row=None)
    with pytest.raises(DataError, match="orig_row") as e:
        data.load_npz(fer)
    assert_names(e, plus)
    fer, plus = write_npz_pair(tmp_path, labels=np.array([0, 1, 9, 3, 4], np.int8))
    with pytest.raises(DataError, match="row 2") as e:
        data.load_npz(fer, labels="fer2013")
    assert_names(e, fer)
    fer, plus = write_npz_pair(tmp_path, plus_split=np.array(["test", "val", "train", "val", "test"]))
    with pytest.raises(DataError, match="split") as e:
        data.load_npz(fer)
    assert_names(e, plus)
    with pytest.raises(DataError, match="does not exist") as e:
        data.load_npz(fer, ferplus_path=tmp_path / "nope.npz")
    assert_names(e, tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError) as e:
        data.load_npz(bad)
    assert_names(e, bad)
    with pytest.raises(InputError):
        data.load_npz(fer, labels="rafdb")


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------
def test_load_fer2013_csv(tmp_path):
    p = write_fer_csv(tmp_path / "fer2013.csv")
    fs = data.load_fer2013_csv(p)
    assert fs.source == "fer2013" and fs.images.shape == (3, 48, 48) and fs.images.dtype == np.uint8
    np.testing.assert_array_equal(fs.labels, [0, 3, 6])
    np.testing.assert_array_equal(fs.split, ["train", "val", "test"])
    expected = np.array(_px(1).split(), dtype=np.uint8).reshape(48, 48)
    np.testing.assert_array_equal(fs.images[1], expected)
    assert len(data.load_dataset(p)) == 3


@pytest.mark.parametrize(
    "rows, header, line, match",
    [
        (None, "emotion,pix,Usage", 1, "header"),
        ([f"0,{_px(0)},Training", f"1,{_px(1)[:-4]},Training"], FER_HEADER, 3, "2303"),
        ([f"9,{_px(0)},Training"], FER_HEADER, 2, "emotion"),
        ([f"0,{_px(0)},Training", f"0,{_px(0)},Training", f"0,{' '.join(['x'] + _px(0).split()[1:])},Training"], FER_HEADER, 4, "pixel 0"),
        ([f"0,{' '.join(['7', '256'] + _px(0).split()[2:])},Training"], FER_HEADER, 2, "pixel 1 is '256'"),
        ([f"0,{_px(0)},Train"], FER_HEADER, 2, "Usage"),
        ([f"0,{_px(0)}"], FER_HEADER, 2, "fields"),
    ],
)
def test_load_fer2013_csv_errors(tmp_path, rows, header, line, match):
    p = write_fer_csv(tmp_path / "fer2013.csv", rows, header)
    with pytest.raises(DataError, match=match) as e:
        data.load_fer2013_csv(p)
    assert_names(e, p, line)


def test_load_ferplus_csv(tmp_path):
    fer = write_fer_csv(tmp_path / "fer2013.csv")
    plus = write_plus_csv(tmp_path / "fer2013new.csv")
    fs = data.load_ferplus_csv(fer, plus)
    assert fs.source == "ferplus" and len(fs) == 2
    np.testing.assert_array_equal(fs.labels, [0, 6])
    np.testing.assert_array_equal(fs.split, ["train", "test"])
    via = data.load_dataset(fer, ferplus_csv=plus)
    np.testing.assert_array_equal(via.labels, fs.labels)
    with pytest.raises(DataError, match="ferplus_csv"):
        data.load_dataset(plus)


@pytest.mark.parametrize(
    "rows, header, line, match",
    [
        (None, PLUS_HEADER.replace("NF", "nf,extra"), 1, "header"),
        (["Training,a.png,0,0,0,0,9,1,0,0,0,0", "PublicTest,b.png,4,0,x,0,0,0,0,5,1,0"], PLUS_HEADER, 3, "surprise"),
        (["Training,a.png,0,0,0,0,9,1,0,0,0,-1"], PLUS_HEADER, 2, "NF"),
        (["Training,a.png,0,0,0,0,9,1,0,0,0"], PLUS_HEADER, 2, "fields"),
    ],
)
def test_load_ferplus_csv_errors(tmp_path, rows, header, line, match):
    fer = write_fer_csv(tmp_path / "fer2013.csv")
    plus = write_plus_csv(tmp_path / "fer2013new.csv", rows, header)
    with pytest.raises(DataError, match=match) as e:
        data.load_ferplus_csv(fer, plus)
    assert_names(e, plus, line)


def test_load_ferplus_csv_pairing_errors(tmp_path):
    fer = write_fer_csv(tmp_path / "fer2013.csv")
    short = write_plus_csv(tmp_path / "short.csv", ["Training,a.png,0,0,0,0,9,1,0,0,0,0"])
    with pytest.raises(DataError, match="1 data rows") as e:
        data.load_ferplus_csv(fer, short)
    assert_names(e, short)
    swapped = write_plus_csv(
        tmp_path / "swapped.csv",
        ["Training,a,0,0,0,0,9,0,0,0,0,0", "PrivateTest,b,9,0,0,0,0,0,0,0,0,0", "PublicTest,c,9,0,0,0,0,0,0,0,0,0"],
    )
    with pytest.raises(DataError, match="row order"):
        data.load_ferplus_csv(fer, swapped)
    with pytest.raises(DataError, match="does not exist") as e:
        data.load_ferplus_csv(fer, tmp_path / "missing.csv")
    assert_names(e, tmp_path / "missing.csv")


# --------------------------------------------------------------------------------------------
# RAF-DB and folders
# --------------------------------------------------------------------------------------------
def _save_rgb(path: Path, seed: int, size: int = 100, fmt: str = "JPEG") -> np.ndarray:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3)).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, fmt)
    return arr


def write_rafdb(root: Path, lines: list[str] | None = None) -> Path:
    if lines is None:
        lines = ["train_00001.jpg 5", "train_00002.jpg 1", "test_0001.jpg 7"]
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for i, name in enumerate(["train_00001", "train_00002", "test_0001"]):
        _save_rgb(root / "Image" / "aligned" / f"{name}_aligned.jpg", i)
    return root / "EmoLabel" / "list_patition_label.txt"


def test_load_rafdb(tmp_path):
    write_rafdb(tmp_path / "raf")
    fs = data.load_rafdb(tmp_path / "raf")
    assert fs.source == "rafdb" and fs.images.shape == (3, 48, 48) and fs.images.dtype == np.uint8
    np.testing.assert_array_equal(fs.labels, [CLASSES.index("sad"), CLASSES.index("surprise"), CLASSES.index("neutral")])
    np.testing.assert_array_equal(fs.split, ["train", "train", "test"])
    assert fs.splits == ("train", "test")
    assert data.load_rafdb(tmp_path / "raf", size=100).images.shape == (3, 100, 100)
    assert len(data.load_dataset(tmp_path / "raf", size=24)) == 3


def test_rafdb_gray_matches_sdk_preprocessing(tmp_path):
    from PIL import Image

    from fsrfer_edge.preprocessing import Preprocessing

    write_rafdb(tmp_path / "raf")
    fs = data.load_rafdb(tmp_path / "raf")
    rgb = np.asarray(Image.open(tmp_path / "raf" / "Image" / "aligned" / "train_00001_aligned.jpg"))
    ref = Preprocessing().to_pixels(rgb, raise_low_contrast=False)[0, 0]  # files are read without the contrast floor
    assert np.abs(fs.images[0].astype(np.float32) - ref).max() <= 0.5 + 1e-4


@pytest.mark.parametrize(
    "lines, line, match",
    [
        (["train_00001.jpg 5", "train_00002.jpg 9"], 2, "label"),
        (["train_00001.jpg 5", "", "train_00002.jpg"], 3, "expected"),
        (["val_00001.jpg 5"], 1, "image name"),
        (["train_00001.jpg 5", "train_00003.jpg 5"], 2, "does not exist"),
    ],
)
def test_load_rafdb_errors(tmp_path, lines, line, match):
    label_file = write_rafdb(tmp_path / "raf", lines)
    with pytest.raises(DataError, match=match) as e:
        data.load_rafdb(tmp_path / "raf")
    assert_names(e, label_file, line)


def test_load_rafdb_missing_tree_and_corrupt_image(tmp_path):
    with pytest.raises(DataError, match="does not exist") as e:
        data.load_rafdb(tmp_path / "nowhere")
    assert_names(e, tmp_path / "nowhere")
    (tmp_path / "raf" / "EmoLabel").mkdir(parents=True)
    with pytest.raises(DataError, match="list_patition_label"):
        data.load_rafdb(tmp_path / "raf")
    label_file = write_rafdb(tmp_path / "raf2")
    bad = tmp_path / "raf2" / "Image" / "aligned" / "train_00002_aligned.jpg"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot decode") as e:
        data.load_rafdb(tmp_path / "raf2")
    assert_names(e, label_file, 2)
    assert str(bad) in str(e.value)


def test_load_folder_flat_and_split_layouts(tmp_path):
    flat = tmp_path / "flat"
    _save_rgb(flat / "Happy" / "a.png", 0, 64, "PNG")
    _save_rgb(flat / "angry" / "b.jpg", 1, 30)
    (flat / "angry" / "notes.txt").write_text("ignored")
    fs = data.load_folder(flat)
    assert fs.images.shape == (2, 48, 48) and fs.source == "folder"
    np.testing.assert_array_equal(fs.labels, [0, 3])
    assert set(fs.split) == {"test"}
    assert set(data.load_folder(flat, split="train").split) == {"train"}

    tree = tmp_path / "tree"
    _save_rgb(tree / "train" / "sad" / "a.png", 2, 48, "PNG")
    _save_rgb(tree / "train" / "fear" / "b.png", 3, 48, "PNG")
    _save_rgb(tree / "val" / "NEUTRAL" / "c.png", 4, 48, "PNG")
    fs = data.load_dataset(tree, size=32)
    assert fs.images.shape == (3, 32, 32)
    np.testing.assert_array_equal(fs.labels, [2, 4, 6])
    np.testing.assert_array_equal(fs.split, ["train", "train", "val"])


def test_load_folder_keeps_a_face_of_low_contrast_as_it_is(tmp_path):
    """The SDK's contrast floor is an inference step: training and test faces read from files are not raised."""
    from PIL import Image

    g = np.random.default_rng(0)
    dim = (100 + g.integers(0, 20, (48, 48))).astype(np.uint8)  # standard deviation about 6
    (tmp_path / "f" / "sad").mkdir(parents=True)
    Image.fromarray(dim).save(tmp_path / "f" / "sad" / "a.png")
    np.testing.assert_array_equal(data.load_folder(tmp_path / "f").images[0], dim)


def test_load_folder_errors(tmp_path):
    root = tmp_path / "faces"
    _save_rgb(root / "happy" / "a.png", 0, 48, "PNG")
    _save_rgb(root / "smiling" / "b.png", 1, 48, "PNG")
    with pytest.raises(DataError, match="smiling") as e:
        data.load_folder(root)
    assert_names(e, root)
    mixed = tmp_path / "mixed"
    _save_rgb(mixed / "train" / "happy" / "a.png", 0, 48, "PNG")
    _save_rgb(mixed / "happy" / "b.png", 1, 48, "PNG")
    with pytest.raises(DataError, match="mixes"):
        data.load_folder(mixed)
    bad_split = tmp_path / "bs"
    _save_rgb(bad_split / "train" / "joy" / "a.png", 0, 48, "PNG")
    with pytest.raises(DataError, match="joy"):
        data.load_folder(bad_split)
    empty = tmp_path / "empty"
    (empty / "happy").mkdir(parents=True)
    with pytest.raises(DataError, match="no .png"):
        data.load_folder(empty)
    with pytest.raises(DataError, match="does not exist"):
        data.load_folder(tmp_path / "missing")


def test_load_dataset_dispatch_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load_dataset(tmp_path / "missing.npz")
    other = tmp_path / "faces.txt"
    other.write_text("x")
    with pytest.raises(DataError, match="cannot tell") as e:
        data.load_dataset(other)
    assert_names(e, other)
    fer = write_fer_csv(tmp_path / "fer2013.csv")
    with pytest.raises(InputError, match="siez"):
        data.load_dataset(fer, siez=48)
    assert issubclass(DataError, FsrferError)


# --------------------------------------------------------------------------------------------
# fsrfer_edge.ferplus and the crowd benchmark's faces (the same checks)
# --------------------------------------------------------------------------------------------
def test_ferplus_labels_must_be_integers(tmp_path):
    """Float FER+ labels would turn "no majority" (-1.0, -0.5) into class 0 once cast."""
    from fsrfer_edge.ferplus import load_labelled_faces

    fer, plus = write_npz_pair(tmp_path, plus_labels=np.array([6, 3, -0.5, 5, 1], np.float32))
    with pytest.raises(DataError, match="'labels' is float32; expected integers -1") as e:
        load_labelled_faces(fer, "ferplus")
    assert_names(e, plus)


def test_ferplus_join_without_a_split_array(tmp_path):
    """An archive with orig_row but no split: no split to compare, every row is used."""
    from fsrfer_edge.ferplus import join_ferplus, load_labelled_faces

    fer, _ = write_npz_pair(tmp_path, split=None)
    faces = load_labelled_faces(fer, "ferplus")
    assert faces.split == "all" and faces.label_set == "ferplus"
    np.testing.assert_array_equal(faces.labels, [3, 5, 6])
    fer, plus = write_npz_pair(tmp_path, plus_split=np.array(["test", "val", "train", "val", "test"]))
    with pytest.raises(DataError) as e:
        join_ferplus(fer, np.array([0, 2, 3, 5, -1]), np.array(["train", "train", "val", "test", "test"]))
    assert "orig_row 0 is in split 'val' but" in str(e.value) and "says 'train'" in str(e.value)
    assert "np.str_" not in str(e.value)


@pytest.mark.parametrize("labels, row", [([0, 7, 3, 2], 1), ([0, 1, -2, 3], 2), ([0, 1, 2, 99], 3)])
def test_out_of_range_labels_in_the_archive_are_refused(tmp_path, labels, row):
    from fsrfer_edge.ferplus import load_labelled_faces

    path = tmp_path / "plain.npz"
    np.savez(path, images=np.zeros((4, 48, 48), np.uint8), labels=np.array(labels, np.int64))
    with pytest.raises(DataError, match=f"row {row} is {labels[row]}; expected integers -1 \\(no label\\) or 0..6"):
        load_labelled_faces(path)
    np.savez(path, images=np.zeros((4, 48, 48), np.uint8), labels=np.array([0, -1, 3, 6], np.int64))
    np.testing.assert_array_equal(load_labelled_faces(path).labels, [0, 3, 6])  # only -1 (no label) is dropped
    fer, _ = write_npz_pair(tmp_path, labels=np.array([0, 1, 2, 3, 9], np.int8))  # fer2013.npz's own labels
    with pytest.raises(DataError, match="row 4 is 9"):
        load_labelled_faces(fer, "fer2013")


def test_crowd_bench_faces_are_checked_as_fsrfer_eval_reads_them(tmp_path):
    from fsrfer_edge import crowd_bench
    from fsrfer_edge.ferplus import load_labelled_faces

    fer, plus = write_npz_pair(tmp_path)
    pool = crowd_bench.load_test_faces(tmp_path)
    faces = load_labelled_faces(fer, "ferplus", "test")
    np.testing.assert_array_equal(pool.images, faces.images)
    np.testing.assert_array_equal(pool.labels, [6])
    cases = {"plus_labels": (np.array([6, 3, -1, 5, 9], np.int8), "row 4 is 9"),
             "plus_split": (np.array(["val", "train", "train", "val", "test"]), "expected the two archives to agree"),
             "split": (None, "no 'orig_row' or no 'split' array")}
    for key, (value, match) in cases.items():
        write_npz_pair(tmp_path, **{key: value})
        with pytest.raises(DataError, match=match):
            crowd_bench.load_test_faces(tmp_path)
    write_npz_pair(tmp_path)
    fer.write_bytes(fer.read_bytes()[:200])  # truncated
    with pytest.raises(DataError) as e:
        crowd_bench.load_test_faces(tmp_path)
    assert_names(e, fer)
    plus.unlink()
    with pytest.raises(DataError, match="does not exist; .* or pass --no-data"):
        crowd_bench.load_test_faces(tmp_path)
