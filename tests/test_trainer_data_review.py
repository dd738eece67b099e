"""Review of the trainer's data path with a user's own (malformed) files: tiny synthetic .npz archives."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fsrfer_edge.errors import DataError, InputError
from fsrfer_edge.preprocessing import Preprocessing
from trainer import data, evaluate
from trainer.degrade import DegradeConfig

MODEL = Path(__file__).resolve().parents[1] / "fsrfer_edge" / "models" / "default.onnx"
SPLIT = np.array(["train"] * 4 + ["val"] * 4 + ["test"] * 4)


def _faces(n: int, side: int = 48) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, side, side)).astype(np.uint8)


def _pair(d: Path, labels: np.ndarray | None = None, plus_orig: np.ndarray | None = None,
          votes: np.ndarray | None = None, orig: np.ndarray | None = None) -> Path:
    """fer2013.npz + ferplus_labels.npz of 12 faces, 4 per split, in folder ``d``."""
    d.mkdir(exist_ok=True)
    np.savez(d / "fer2013.npz", images=_faces(12), labels=np.arange(12) % 7 if labels is None else labels,
             split=SPLIT, orig_row=np.arange(12) if orig is None else orig)
    plus: dict[str, np.ndarray] = {"orig_row": np.arange(12) if plus_orig is None else plus_orig,
                                   "labels": (np.arange(12) + 1) % 7, "split": SPLIT}
    if votes is not None:
        plus["votes"] = votes
    np.savez(d / "ferplus_labels.npz", **plus)
    return d / "fer2013.npz"


def _eval(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from trainer.cli import eval_main

    rc = eval_main(["--checkpoint", str(MODEL), *argv])
    return rc, capsys.readouterr().err


# ---- trainer.data --------------------------------------------------------------------------
def test_fer2013_labels_that_are_not_integers_are_refused(tmp_path: Path) -> None:
    """Float labels were truncated (2.7 -> 2) and scored silently; text labels crashed with a numpy traceback."""
    fer = _pair(tmp_path / "f", labels=np.arange(12) % 7 + 0.7)
    with pytest.raises(DataError, match=r"fer2013\.npz: array 'labels' is float64; expected integers 0\.\.6"):
        data.load_npz(fer, labels="fer2013")
    fer = _pair(tmp_path / "s", labels=np.array(["happy"] * 12))
    with pytest.raises(DataError, match=r"array 'labels' is <U5; expected integers 0\.\.6"):
        data.load_npz(fer, labels="fer2013")


def test_plain_npz_labels_message_says_what_was_received(tmp_path: Path) -> None:
    p = tmp_path / "p.npz"
    np.savez(p, images=_faces(8), labels=np.arange(8))
    with pytest.raises(DataError, match=r"array 'labels' must hold integers 0\.\.6; row 7 is 7"):
        data.load_npz(p)
    np.savez(p, images=_faces(8), labels=np.arange(8) * 0.5)
    with pytest.raises(DataError, match=r"array 'labels' must hold integers 0\.\.6; received float64"):
        data.load_npz(p)


def test_an_archive_without_faces_says_so(tmp_path: Path) -> None:
    """An empty archive was reported as 'npz has no 'test' faces ... hold out part of 'train' (e.g. with take())'."""
    p = tmp_path / "empty.npz"
    np.savez(p, images=np.zeros((0, 48, 48), np.uint8), labels=np.zeros(0, np.int64))
    with pytest.raises(DataError, match=r"empty\.npz holds no faces"):
        data.load_npz(p)


def test_missing_split_hint_only_for_val(tmp_path: Path) -> None:
    p = tmp_path / "p.npz"
    np.savez(p, images=_faces(4), labels=np.arange(4), split=np.array(["train", "train", "val", "val"]))
    fs = data.load_npz(p)
    with pytest.raises(DataError) as info:
        fs.subset("test")
    assert "take()" not in str(info.value) and "splits present: ['train', 'val']" in str(info.value)
    np.savez(p, images=_faces(4), labels=np.arange(4), split=np.array(["train", "train", "test", "test"]))
    with pytest.raises(DataError, match=r"hold out part of 'train'"):
        data.load_npz(p).subset("val")


def test_ferplus_file_of_other_faces_is_named(tmp_path: Path) -> None:
    """A FER+ file whose orig_row matched no face gave 'ferplus has no 'test' faces; splits present: []'."""
    fer = _pair(tmp_path, plus_orig=np.arange(12) + 100)
    with pytest.raises(DataError, match=r"none of the 12 faces of .*fer2013\.npz has a FER\+ label in "
                                        r".*ferplus_labels\.npz.*orig_row"):
        data.load_npz(fer)


@pytest.mark.parametrize("votes, what", [
    (np.full((12, 10), np.nan), r"row 0 is \[nan"),
    (-np.ones((12, 10)), r"row 0 is \[-1"),
])
def test_ferplus_votes_must_be_counts(tmp_path: Path, votes: np.ndarray, what: str) -> None:
    """NaN votes became uniform soft labels without a word."""
    fer = _pair(tmp_path, votes=votes)
    with pytest.raises(DataError, match=r"ferplus_labels\.npz: array 'votes' " + what):
        data.load_npz(fer)


def test_ferplus_votes_of_text_are_refused(tmp_path: Path) -> None:
    fer = _pair(tmp_path, votes=np.full((12, 10), "1"))
    with pytest.raises(DataError, match=r"array 'votes' is <U1; expected non-negative vote counts"):
        data.load_npz(fer)


def test_orig_row_message_says_which_problem(tmp_path: Path) -> None:
    fer = _pair(tmp_path, orig=np.arange(12).astype(float))
    with pytest.raises(DataError) as info:
        data.load_npz(fer)
    assert "float64" in str(info.value) and "duplicates" not in str(info.value)
    fer = _pair(tmp_path, orig=np.zeros(12, np.int64))
    with pytest.raises(DataError, match=r"duplicate.*orig_row 0"):
        data.load_npz(fer)


def test_valid_pair_loads_as_before(tmp_path: Path) -> None:
    votes = np.zeros((12, 10), np.uint8)
    votes[:, 0] = 3
    fs = data.load_npz(_pair(tmp_path, votes=votes))
    assert len(fs) == 12 and fs.labels.tolist() == ((np.arange(12) + 1) % 7).tolist()
    assert fs.targets is not None and np.allclose(fs.targets[:, 6], 1.0)  # votes column 0 = neutral = class 6


# ---- trainer.degrade -----------------------------------------------------------------------
@pytest.mark.parametrize("key", ["blur_sigma", "noise_sigma"])
def test_degrade_ranges_must_be_finite(key: str) -> None:
    """(0, .inf) was accepted, then failed in numpy's uniform() mid-training."""
    from fsrfer_edge.errors import ConfigError

    with pytest.raises(ConfigError, match=key + r": received \(0\.0, inf\); expected finite"):
        DegradeConfig.from_dict({key: [0.0, float("inf")]})


# ---- trainer.evaluate ----------------------------------------------------------------------
def test_small_crops_refuse_factors_larger_than_the_face() -> None:
    """x100 on 48 px faces was scored on 1-pixel crops and reported as x100 (the resized protocol refuses it)."""
    with pytest.raises(InputError, match=r"factor 100 on 48x48 faces"):
        evaluate.small_crops(_faces(2), 100)
    assert evaluate.small_crops(_faces(2), 48).shape == (2, 1, 1)


def test_resized_protocol_refuses_faces_of_another_size() -> None:
    pre = Preprocessing(input_size=48, channels=1)
    fn = lambda x, f: np.zeros((len(x), 7), np.float32)  # noqa: E731
    with pytest.raises(InputError, match=r"64x64 faces.*48x48.*--protocol small"):
        evaluate.evaluate_fn(fn, _faces(3, 64), np.zeros(3, np.int64), (1,), pre)
    assert evaluate.evaluate_fn(fn, _faces(3, 64), np.zeros(3, np.int64), (2,), pre, protocol="small")["n"] == 3


# ---- fsrfer-eval ---------------------------------------------------------------------------
pytest.importorskip("onnxruntime")


def test_eval_folder_holding_fer2013_takes_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--data FOLDER --labels fer2013 scored FER+ labels: --labels was passed on for a .npz path only."""
    _pair(tmp_path / "d")
    out = tmp_path / "o.json"
    rc, err = _eval(["--data", str(tmp_path / "d"), "--labels", "fer2013", "--factors", "1", "--json", str(out)],
                    capsys)
    assert rc == 0, err
    assert json.loads(out.read_text())["labels"] == "fer2013"


def test_eval_labels_for_data_that_has_none_to_choose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--labels ferplus on a fer2013.csv was ignored: the original FER2013 labels were scored."""
    csv = tmp_path / "fer2013.csv"
    px = " ".join(["128"] * 2304)
    csv.write_text("emotion,pixels,Usage\n" + "".join(f"{i % 7},{px},PrivateTest\n" for i in range(3)))
    rc, err = _eval(["--data", str(csv), "--labels", "ferplus", "--factors", "1", "--json", str(tmp_path / "o.json")],
                    capsys)
    assert rc == 2 and "--labels ferplus applies to .npz data" in err
    rc, err = _eval(["--data", str(csv), "--factors", "1", "--json", str(tmp_path / "o.json")], capsys)
    assert rc == 0, err


def test_eval_npz_default_labels_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fer = _pair(tmp_path)
    out = tmp_path / "o.json"
    rc, err = _eval(["--data", str(fer), "--factors", "1", "--limit", "100", "--json", str(out)], capsys)
    assert rc == 0, err
    res = json.loads(out.read_text())
    assert res["labels"] == "ferplus" and res["n"] == 4


def test_eval_faces_of_another_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "big.npz"
    np.savez(p, images=_faces(4, 64), labels=np.arange(4))
    rc, err = _eval(["--data", str(p), "--factors", "1", "--json", str(tmp_path / "o.json")], capsys)
    assert rc == 2 and "64x64 faces" in err and "Traceback" not in err


@pytest.mark.parametrize("arg", [".", ""])
def test_eval_data_dot_is_the_folder_holding_fer2013(arg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """--data . died of a ValueError traceback from Path.with_name (the FER+ labels beside the data). An empty
    --data (an unset shell variable) is refused rather than read as the current folder."""
    _pair(tmp_path)
    monkeypatch.chdir(tmp_path)
    if not arg:
        with pytest.raises(SystemExit) as exc:
            _eval(["--data", arg, "--factors", "1", "--json", "o.json"], capsys)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and "--data '' is an empty path" in err, err
        assert not (tmp_path / "o.json").exists()
        return
    rc, err = _eval(["--data", arg, "--factors", "1", "--json", "o.json"], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "o.json").read_text())["labels"] == "ferplus"


def test_eval_split_the_data_lacks_names_the_file_and_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A plain .npz (every face 'test') with --split val said 'npz has no 'val' faces ... (e.g. with take())'."""
    p = tmp_path / "plain.npz"
    np.savez(p, images=_faces(4), labels=np.arange(4))
    rc, err = _eval(["--data", str(p), "--split", "val", "--factors", "1", "--json", str(tmp_path / "o.json")],
                    capsys)
    assert rc == 2 and f"{p} has no faces in split 'val'" in err and "--split" in err and "take()" not in err


def test_training_data_in_a_folder_takes_the_configured_labels(tmp_path: Path) -> None:
    """fsrfer-train --data FOLDER (holding fer2013.npz) trained on FER+ labels whatever data.labels said: the label
    set was passed on for a .npz path only."""
    pytest.importorskip("torch")
    import dataclasses

    from trainer.config import TrainConfig
    from trainer.train import load_data

    _pair(tmp_path / "d")
    cfg = TrainConfig()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, labels="fer2013", synthetic=0,
                                                            soft_labels=False))
    folder, file = load_data(cfg, tmp_path / "d"), load_data(cfg, tmp_path / "d" / "fer2013.npz")
    for split in ("train", "val", "test"):
        assert np.array_equal(getattr(folder, split).labels, getattr(file, split).labels)
        assert len(getattr(folder, split).labels) == len(getattr(file, split).labels)
