"""Output paths that name an existing file: a read-only file, or (for JSON outputs) a file that is not JSON, is
refused before any work and again at the moment of writing; an earlier JSON output or an empty file is replaced.

Tests may run as root, where ``os.access`` says every file is writable: the read-only files here are made with
mode 0o444, which the checks read from the mode bits.
"""
from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import IO, Callable

import numpy as np
import pytest

from fsrfer_edge.errors import InputError
from fsrfer_edge.fileio import atomic_write, atomic_write_bytes, check_distinct_files, check_output_path, write_json

ZIP_HEAD = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(40))  # what an .npz starts with
PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(20)


def _read_only(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o444)
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_read_only_output_is_refused_with_what_to_do(tmp_path: Path) -> None:
    target = _read_only(tmp_path / "results.json", b'{"old": 1}\n')
    with pytest.raises(InputError) as info:
        check_output_path(target, "--json")
    msg = str(info.value)
    assert str(target) in msg and "--json" in msg and "read-only" in msg
    assert "chmod u+w" in msg and "remove it" in msg and "another path" in msg


@pytest.mark.parametrize("name", ["shot.png", "results.json", "model.onnx"])
def test_every_writer_refuses_a_read_only_file_and_leaves_it(tmp_path: Path, name: str) -> None:
    data = b'{"old": 1}\n' if name.endswith(".json") else PNG_HEAD
    target = _read_only(tmp_path / name, data)
    with pytest.raises(InputError, match="read-only"):
        write_json(target, {"new": 2}) if name.endswith(".json") else atomic_write_bytes(target, b"new")
    assert target.read_bytes() == data and not stat.S_IMODE(target.stat().st_mode) & 0o222
    assert _leftovers(tmp_path) == []


def test_a_file_made_read_only_while_the_output_is_written_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text('{"old": 1}\n')

    def write(f: IO[bytes]) -> None:  # the user protects the file while the run works
        f.write(b'{"new": 2}\n')
        target.chmod(0o444)

    with pytest.raises(InputError, match="read-only"):
        atomic_write(target, write)
    assert json.loads(target.read_text()) == {"old": 1} and _leftovers(tmp_path) == []


def test_group_write_bits_do_not_make_a_file_without_its_owners_write_bit_writable(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("{}")
    target.chmod(0o464)
    with pytest.raises(InputError, match="read-only"):
        check_output_path(target, "--json")


@pytest.mark.parametrize("kind", ["npz", "png", "text", "json_string", "nul"])
def test_a_json_output_over_a_file_that_is_not_json_is_refused(tmp_path: Path, kind: str) -> None:
    data = {"npz": ZIP_HEAD, "png": PNG_HEAD, "text": b"frame,label\n1,happy\n", "json_string": b'"just a string"',
            "nul": b"{\x00\x00\x00"}[kind]
    target = tmp_path / "fer2013.npz"
    target.write_bytes(data)
    checks: list[Callable[[], object]] = [
        lambda: check_output_path(target, "--json", json_output=True),
        lambda: check_distinct_files([("--model", tmp_path / "m.onnx"), ("--json", target)]),
        lambda: check_distinct_files([("--data", tmp_path / "d.npz"), ("--out", target)], json_outputs=("--out",)),
        lambda: write_json(target, {"new": 2})]
    for check in checks:
        with pytest.raises(InputError) as info:
            check()
        msg = str(info.value)
        assert str(target) in msg
        assert "exists and is not a JSON file; expected a new path or an earlier JSON output" in msg
    assert target.read_bytes() == data and _leftovers(tmp_path) == []


def test_a_file_turned_into_a_non_json_file_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("{}")
    check_output_path(target, "--json")
    target.write_bytes(ZIP_HEAD)
    with pytest.raises(InputError, match="not a JSON file"):
        write_json(target, {"new": 2})
    assert target.read_bytes() == ZIP_HEAD


@pytest.mark.parametrize("old", [b'{\n  "old": 1\n}\n', b"\xef\xbb\xbf{}", b"  \n\t[1, 2]", b"", b" \n",
                                 b"{not even valid json"])
def test_an_earlier_json_output_or_an_empty_file_is_replaced(tmp_path: Path, old: bytes) -> None:
    target = tmp_path / "results.json"
    target.write_bytes(old)
    assert check_output_path(target, "--json", json_output=True) == target
    check_distinct_files([("--model", tmp_path / "m.onnx"), ("--json", target)])
    assert write_json(target, {"new": 2}) == target
    assert json.loads(target.read_text()) == {"new": 2}


def test_outputs_that_are_not_json_still_replace_any_writable_file(tmp_path: Path) -> None:
    """Images, videos, models and engines are not JSON: an earlier one is replaced as before."""
    target = tmp_path / "shot.png"
    target.write_bytes(PNG_HEAD)
    assert check_output_path(target, "--out") == target
    assert check_output_path(target, "--out") == target
    check_distinct_files([("the input", tmp_path / "in.png"), ("--out", target)])
    atomic_write_bytes(target, b"new image")
    assert target.read_bytes() == b"new image"


def test_an_output_naming_an_input_is_still_refused_as_the_same_file_first(tmp_path: Path) -> None:
    """check_distinct_files says which input would be overwritten before saying the file is not JSON."""
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07\x12\x00")
    with pytest.raises(InputError, match="is the same file as --model"):
        check_distinct_files([("--model", model), ("--json", model)])
    model.chmod(0o444)  # a read-only input too (check_output_path, called first, says it is read-only)
    with pytest.raises(InputError, match="is the same file as --model"):
        check_distinct_files([("--model", model), ("--json", model)])
    with pytest.raises(InputError, match="read-only"):
        check_output_path(model, "--json")


def test_a_read_only_output_is_refused_by_check_distinct_files_too(tmp_path: Path) -> None:
    out = _read_only(tmp_path / "o.png", PNG_HEAD)
    with pytest.raises(InputError, match=r"--out .*o.png exists and is read-only"):
        check_distinct_files([("the input", tmp_path / "in.png"), ("--out", out)])


def test_a_symlink_to_a_read_only_file_is_refused(tmp_path: Path) -> None:
    data = _read_only(tmp_path / "fer2013.npz", ZIP_HEAD)
    link = tmp_path / "out.json"
    link.symlink_to(data)
    with pytest.raises(InputError, match="read-only"):
        write_json(link, {"new": 2})
    assert data.read_bytes() == ZIP_HEAD and link.is_symlink()


# --- the command-line tools: the reported case and the other outputs -------------------------------------------

def test_fsrfer_bench_json_over_a_dataset_is_refused_before_any_work(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge import bench

    dataset = tmp_path / "fer2013.npz"
    dataset.write_bytes(ZIP_HEAD * 100)
    for mode in (0o644, 0o444):  # refused as not JSON, and as read-only
        dataset.chmod(mode)
        rc = bench.main(["--model", str(tmp_path / "missing.onnx"), "--batch-sizes", "1", "--json", str(dataset)])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1 and "--json" in err and str(dataset) in err
        assert ("read-only" if mode == 0o444 else "not a JSON file") in err
        assert dataset.read_bytes() == ZIP_HEAD * 100
    assert _leftovers(tmp_path) == []


def test_fsrfer_eval_json_over_a_read_only_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    from trainer.cli import eval_main

    out = _read_only(tmp_path / "eval.json", b'{"old": 1}')
    rc = eval_main(["--checkpoint", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "d.npz"), "--json", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "read-only" in err and str(out) in err


def test_fsrfer_demo_image_over_a_read_only_file_is_refused_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import fsrfer_edge.demo as demo

    ran: list = []
    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: ran.append(a))
    out = _read_only(tmp_path / "o.png", PNG_HEAD)
    assert demo.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "read-only" in err and ran == [] and out.read_bytes() == PNG_HEAD
    assert demo.main(["--out", str(tmp_path / "new.png"), "--json", str(out)]) == 2
    assert "--json" in capsys.readouterr().err and ran == []


def test_fsrfer_crowd_bench_report_over_a_file_that_is_not_json_is_refused(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import crowd_bench

    out = tmp_path / "scene.png"
    out.write_bytes(PNG_HEAD)
    rc = crowd_bench.main(["--no-data", "--scenes", "1", "--faces", "2", "--size", "64x64", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "--out" in err and "not a JSON file" in err and out.read_bytes() == PNG_HEAD



def test_an_annotated_video_is_not_renamed_over_a_file_made_read_only_meanwhile(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    from fsrfer_edge import crowd_cli

    out = tmp_path / "o.avi"
    writer = crowd_cli.AtomicVideoWriter(out, 5.0)
    writer.write(np.zeros((32, 32, 3), np.uint8))
    out.write_bytes(b"an earlier recording")
    out.chmod(0o444)  # made read-only while the run was writing
    with pytest.raises(InputError, match="read-only"):
        writer.commit()
    writer.discard()
    assert out.read_bytes() == b"an earlier recording" and not writer.tmp.exists()
