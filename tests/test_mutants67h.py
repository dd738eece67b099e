"""Tests that kill hand-made mutants the rest of the suite let through (round 67h: the error plumbing every command
shares, the FER+ label loading and fork safety).

Each test checks a behaviour a user depends on but would not notice at once when it broke: an option's type
checked, not read as true or false; the install line of a missing backend; the error line and exit status of a
command; a closed pipe told apart from a full disk; a library call guarded against SIGTERM from a worker thread;
which archives the FER+ loading refuses and which FER+ row each face gets; what a forked child keeps of its
parent's objects. Tiny synthetic arrays and files in tmp_path; nothing heavy.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge import errors, ferplus
from fsrfer_edge.errors import ConfigError, DataError, InputError


# -- check_flag: only a real bool is a flag --------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 0, np.int64(1), "yes", None])
def test_a_tolerance_flag_given_as_a_number_is_refused_not_read_as_true_or_false(value: Any) -> None:
    """Mutant: check_flag let an int through, so ``Tolerance(count_ties=0)`` (meant as "no", or a typo for a
    fraction) was silently read as False, and 1 as True."""
    from fsrfer_edge.export.check import Tolerance

    with pytest.raises(InputError, match=r"count_ties=.*expected True or False"):
        Tolerance(max_abs=0.1, min_agreement=0.9, count_ties=value)
    numpy_true: Any = np.bool_(True)  # a flag computed with numpy is a flag too
    assert Tolerance(max_abs=0.1, min_agreement=0.9, count_ties=numpy_true).count_ties


# -- check_out_folder: a blank folder path is refused --------------------------------------------------------


@pytest.mark.parametrize("value", ["", "  ", "\t\n", Path(" ")])
def test_a_blank_output_folder_is_refused_not_read_as_a_folder_named_blank(tmp_path: Path, value: Any,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: only an empty path was refused, so ``out_dir=" "`` (a variable holding a space or a newline, as a
    shell's command substitution leaves it) made a folder named ' ' in the current folder."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="received an empty path; expected the classifier's folder"):
        errors.check_out_folder("out_dir", value, "the classifier's folder")
    assert os.listdir(tmp_path) == []
    errors.check_out_folder("out_dir", tmp_path / "out", "the classifier's folder")


# -- sigterm_interrupts off the main thread -------------------------------------------------------------------


def test_sigterm_interrupts_off_the_main_thread_runs_the_block_as_it_is() -> None:
    """Mutant: the main-thread check dropped, so a library call that guards a write with sigterm_interrupts (bench,
    export) raised ValueError ("signal only works in main thread") when an application ran it in a worker thread."""
    import signal
    import threading

    seen: list[Any] = []

    def work() -> None:
        try:
            with errors.sigterm_interrupts():
                seen.append("ran")
        except BaseException as exc:  # noqa: BLE001 - any failure is what the test reports
            seen.append(exc)

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    assert seen == ["ran"]
    assert signal.getsignal(signal.SIGTERM) is before


# -- check_count, expand_home -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, np.bool_(True), 2.0, "3"])
def test_a_count_given_as_a_bool_float_or_text_is_refused(value: Any) -> None:
    """Mutant: a bool passed check_count as the int it is in Python, so ``chunk=True`` (a flag given to the wrong
    parameter) scored the data set one face at a time instead of being refused."""
    with pytest.raises(InputError, match=r"chunk=.*; expected an integer >= 1"):
        errors.check_count("chunk", value, 1)
    assert errors.check_count("chunk", np.int64(3), 1) == 3


def test_a_path_option_starting_with_tilde_user_is_that_users_home() -> None:
    """Mutant: only '~/' expanded, so ``--out=~alice/x.png`` (no shell expands a '~' after '=') wrote into a folder
    literally named '~alice' in the current folder."""
    import getpass

    user = getpass.getuser()
    home = os.path.expanduser(f"~{user}")
    if home == f"~{user}":
        pytest.skip("this user has no home folder to expand to")
    assert errors.expand_home(f"~{user}/x.png") == os.path.join(home, "x.png")
    assert errors.cli_path(f"~{user}") == Path(home)
    assert errors.expand_home("a/~/b") == "a/~/b"


# -- forking: every object left to the parent is kept ----------------------------------------------------------


class _Holder:
    def __init__(self) -> None:
        self.renewed: list[str] = []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_every_object_left_to_the_parent_stays_alive_in_the_child() -> None:
    """Mutant: only the first object given to leave_to_parent kept, so the destructors of the others (a CUDA
    stream, an ONNX Runtime session) ran in the forked child on the parent's context, or hung it."""
    from _fork_child import in_child

    def work() -> list[bool]:
        import gc
        import weakref

        from fsrfer_edge.forking import leave_to_parent

        objects = [_Holder(), _Holder(), _Holder()]
        refs = [weakref.ref(o) for o in objects]
        leave_to_parent(*objects)
        del objects
        gc.collect()
        return [r() is not None for r in refs]

    assert in_child(work) == {"value": [True, True, True]}


# -- ferplus: which archives are refused, and how --------------------------------------------------------------


def _fer(tmp_path: Path, n: int = 3, **arrays: Any) -> Path:
    """A FER2013-style archive of ``n`` 4x4 faces in the test split; ``arrays`` replace or add arrays (None drops
    one)."""
    d: dict[str, Any] = {"images": np.zeros((n, 4, 4), np.uint8), "labels": np.arange(n) % 7,
                         "split": np.array(["test"] * n), "orig_row": np.arange(n, dtype=np.int64)}
    d.update(arrays)
    path = tmp_path / "fer2013.npz"
    np.savez(path, **{k: v for k, v in d.items() if v is not None})
    return path


def _ferplus(tmp_path: Path, orig: Any, labels: Any, **arrays: Any) -> Path:
    path = tmp_path / ferplus.FERPLUS_FILE
    np.savez(path, orig_row=np.asarray(orig), labels=np.asarray(labels), **arrays)
    return path


@pytest.mark.parametrize("arrays, words", [
    ({"labels": None}, r"missing array\(s\) \['labels'\]; it holds \['images', 'orig_row', 'split'\]"),
    ({"labels": np.zeros((3, 1), np.int64)}, r"'labels' has shape \(3, 1\); expected \(3,\)"),
    ({"labels": np.array([0, 7, 1])}, r"'labels' row 1 is 7; expected integers -1 \(no label\) or 0\.\.6"),
    ({"labels": np.array([0.0, 1.0, 2.0])}, r"'labels' is float64; expected integers"),
    ({"images": np.zeros((3, 4, 4, 1), np.uint8)}, r"'images' is uint8 of shape \(3, 4, 4, 1\); expected \(N, H, W\)"),
    ({"split": np.array(["test"] * 2)}, r"'split' has shape \(2,\); expected \(3,\)"),
])
def test_a_malformed_archive_is_refused_naming_the_array(tmp_path: Path, arrays: dict[str, Any], words: str) -> None:
    """Mutants: the required-array check, check_1d's shape (a (N, 1) label column taken as N labels), the label
    range (7, past the last class), the labels' dtype, the images' rank and the split's length each let through:
    an evaluation scored faces against labels that were not theirs, or failed later with a bare KeyError/IndexError."""
    with pytest.raises(DataError, match=words):
        ferplus.load_labelled_faces(_fer(tmp_path, **arrays), "fer2013")


def test_a_file_that_is_not_an_npz_or_is_damaged_is_a_data_error(tmp_path: Path) -> None:
    """Mutants: the not-a-zip check dropped (numpy's message talks of pickles); a damaged member's BadZipFile not
    caught, a traceback instead of an error line naming the file."""
    text = tmp_path / "notes.npz"
    text.write_text("images,labels\n")
    with pytest.raises(DataError, match=r"notes\.npz is not an \.npz archive \(a NumPy zip file\)"):
        ferplus.load_labelled_faces(text)
    path = _fer(tmp_path)
    data = bytearray(path.read_bytes())
    start = data.index(b"\x93NUMPY") + 128  # inside the first member's array data: its CRC no longer matches
    data[start] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="cannot read as a NumPy .npz archive"):
        ferplus.load_labelled_faces(path, "fer2013")


def test_unknown_label_set_or_split_is_an_input_error(tmp_path: Path) -> None:
    """Mutants: labels="FER+" not refused (scored silently with the original FER2013 labels, reported as "FER+");
    split="tset" not refused on an archive without a split array (every row scored)."""
    with pytest.raises(InputError, match=r"labels='FER\+'; expected one of \['ferplus', 'fer2013'\]"):
        ferplus.load_labelled_faces(_fer(tmp_path), "FER+")
    with pytest.raises(InputError, match=r"split='tset'; expected one of \['train', 'val', 'test'\]"):
        ferplus.load_labelled_faces(_fer(tmp_path, split=None), "fer2013", split="tset")


@pytest.mark.parametrize("fp_orig, fp_labels, fer_orig, words", [
    ([0, 0, 1], [1, 1, 2], None, r"'orig_row' must hold distinct integers"),
    ([[0, 1, 2]], [[1, 1, 2]], None, r"'orig_row' has shape \(1, 3\); expected \(M,\)"),
    (np.zeros(0, np.int64), np.zeros(0, np.int64), None, "holds no rows"),
    ([0, 1, 2], [1, 1, 2], np.array([0.0, 1.0, 2.0]), r"'orig_row' is float64; expected distinct integers"),
    ([0, 1, 2], [1, 1, 2], np.array([0, 1]), r"'orig_row' has shape \(2,\); expected \(3,\)"),
])
def test_a_malformed_ferplus_join_is_refused(tmp_path: Path, fp_orig: Any, fp_labels: Any, fer_orig: Any,
                                            words: str) -> None:
    """Mutants: duplicate, 2-D or empty FER+ rows; a float or short orig_row in the FER2013 archive. Each joined
    faces to the wrong FER+ labels (or failed with an IndexError) instead of a DataError naming the array."""
    path = _fer(tmp_path, orig_row=fer_orig) if fer_orig is not None else _fer(tmp_path)
    _ferplus(tmp_path, fp_orig, fp_labels)
    with pytest.raises(DataError, match=words):
        ferplus.load_labelled_faces(path, "ferplus")


def test_the_join_gives_the_matching_ferplus_row_of_each_face(tmp_path: Path) -> None:
    """Mutant: ``rows`` was the sort order of the FER+ archive, not each face's row in it, so the vote counts
    read through it (trainer's soft labels) belonged to other faces."""
    path = _fer(tmp_path, 2, orig_row=np.array([9, 2]))
    fp = _ferplus(tmp_path, [9, 5, 2], [1, 2, 3], votes=np.array([[9], [5], [2]]))
    joined = ferplus.join_ferplus(path, np.array([9, 2]), None, fp)
    assert joined.labels.tolist() == [1, 3]
    assert joined.arrays["votes"][joined.rows].ravel().tolist() == [9, 2]


# -- cli_main: a failing stdout that is not a closed pipe --------------------------------------------------------


class _FullDisk:
    """A stdout redirected to a file on a full disk: the flush raises ENOSPC, not BrokenPipeError."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        raise OSError(28, "No space left on device")


def test_a_stdout_on_a_full_disk_is_not_taken_for_a_closed_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: any OSError of the flush at the end (a full disk under ``cmd > report.txt``) taken for a reader
    that left: the command exited 141, which a pipeline reads as "my reader had all it wanted", and its output
    was sent to os.devnull."""
    def main() -> int:
        print("report")
        return 0

    monkeypatch.setattr(sys, "stdout", _FullDisk())
    assert errors.cli_main(main)() == 0


def test_a_usage_error_quoting_a_multi_line_message_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Mutant: CliParser.error wrote the message as it came, so an option's type that quotes a library's
    multi-line message (a YAML or JSON parse error) split the error line a log watcher or wrapper script reads."""
    import argparse

    def config(text: str) -> str:
        raise argparse.ArgumentTypeError(f"cannot parse {text!r}:\n  while scanning a simple key\n  in line 2")

    parser = errors.CliParser(prog="fsrfer-x")
    parser.add_argument("--config", type=config)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--config", "a.yaml"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == ("fsrfer-x: error: argument --config: cannot parse 'a.yaml': while scanning a "
                                       "simple key in line 2 (see fsrfer-x --help)\n")


# -- require: the install line names the right extra, torch first only where the extra holds torch ------------


def test_a_missing_backend_names_its_extra_with_torch_first_only_for_the_torch_extras() -> None:
    """Mutant: the pinned torch install line put before every extra's, so a user missing onnxruntime (the
    ``[onnx]`` extra, no torch in it) was told to install torch, a 2 GB download the SDK does not need."""
    missing = "fsrfer_no_such_module_67h"
    with pytest.raises(errors.BackendUnavailable) as onnx:
        errors.require(missing, "onnx", "inference")
    message = str(onnx.value)
    assert f"'{missing}' is needed for inference but could not be imported" in message
    assert message.endswith("Install it in the fsrfer-edge checkout with: pip install -e '.[onnx]'")
    assert "torch" not in message
    with pytest.raises(errors.BackendUnavailable) as train:
        errors.require(missing, "train")
    assert str(train.value).endswith("with: pip install torch==2.13.0, then pip install -e '.[train]'")
    assert isinstance(train.value, ImportError)


# -- cli_main: a usage error keeps its status 2 after output into a closed pipe --------------------------------


class _ClosedPipe:
    """A stdout whose reader is gone: writes are buffered, the flush raises BrokenPipeError."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_usage_error_exit_after_output_into_a_closed_pipe_keeps_status_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: every SystemExit turned into 141 when a pipe had lost its reader, so a usage error (argparse's
    ``sys.exit(2)``, after a line of output into ``| head -1``) read as a clean early close to a ``pipefail``
    script."""
    def main() -> int:
        print("starting")
        sys.exit(2)

    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    with pytest.raises(SystemExit) as exit_:
        errors.cli_main(main)()
    assert exit_.value.code == 2


def test_a_write_through_stdout_into_a_unix_socket_whose_peer_closed_exits_quietly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A defect this round found: with stdout a Unix socket whose peer has gone (inetd, systemd socket activation)
    and written through (``python -u``), poll reports POLLHUP, not the POLLERR a pipe without a reader gives, so
    cli_main re-raised the BrokenPipeError (a traceback, status 1) instead of ending quietly with 141."""
    import io
    import socket

    from fsrfer_edge import errors

    if not hasattr(socket, "socketpair") or not hasattr(__import__("select"), "poll"):
        pytest.skip("needs Unix sockets and poll()")
    ours, peer = socket.socketpair()
    peer.close()
    raw = ours.makefile("wb", buffering=0)
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(raw, write_through=True))

    @errors.cli_main
    def main() -> int:
        for _ in range(3):
            print("x" * 70000)
        return 0

    try:
        assert main() == errors.BROKEN_PIPE_EXIT
    finally:
        ours.close()
