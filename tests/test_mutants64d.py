"""Tests that kill hand-made mutants the rest of the suite let through (round 64d: file and command-line plumbing).

Each test checks a behaviour a user depends on but would not notice at once when it broke: that what a killed
atomic write leaves is cleaned up, the exit status of a command whose output pipe closed, error messages kept whole
on one line, and a path starting with a '~' that names no user. Tiny files in tmp_path; nothing heavy.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import pytest
from _pids import exited_pid  # tests/ is on sys.path

from fsrfer_edge import errors, fileio
from fsrfer_edge.errors import BROKEN_PIPE_EXIT, ConfigError


# -- atomic_write: what a killed write leaves behind --------------------------------------------------


def test_what_a_killed_atomic_write_leaves_is_hidden_and_removed_by_the_cleanup(tmp_path: Path) -> None:
    """Mutant: the temporary file named without its leading '.': a kill -9 mid-write then left a visible
    ``out.json.XXXX.tmp`` beside the outputs that remove_partial_writes (a resumed run's cleanup) never removed."""
    run = tmp_path / "run"
    run.mkdir()
    kept = tmp_path / "kept"
    kept.mkdir()
    before = set(os.listdir(run))
    seen: list[str] = []

    def write(f: Any) -> None:
        f.write(b'{"a": 1}')
        f.flush()
        (name,) = set(os.listdir(run)) - before  # the temporary file, as a process killed now would leave it
        seen.append(name)
        os.link(run / name, kept / name)

    fileio.atomic_write(run / "out.json", write, json_output=True)
    (name,) = seen
    assert name.startswith("."), f"the temporary file {name!r} is not hidden"
    os.replace(kept / name, run / name)  # as if the process had been killed before its rename
    assert fileio.remove_partial_writes(run) == [run / name]
    assert sorted(os.listdir(run)) == ["out.json"] and (run / "out.json").read_bytes() == b'{"a": 1}'


# -- cli_main: a broken pipe at the end keeps an error status ------------------------------------------


class _ClosedPipe:
    """A stdout whose reader is gone: writes are buffered, the flush raises BrokenPipeError."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("ends_with,expected", [(0, BROKEN_PIPE_EXIT), (2, 2), (None, BROKEN_PIPE_EXIT)])
def test_a_command_whose_output_pipe_closed_keeps_its_error_status(monkeypatch: pytest.MonkeyPatch,
                                                                   ends_with: Optional[int], expected: int) -> None:
    """Mutants: an error status (2) replaced by 141 when only the flush at the end fails (a script's ``|| handle``
    then read a usage error as a closed pipe); and ``sys.exit()`` (status None) after output into a closed pipe
    exiting with 0 instead of 141."""
    def main() -> int:
        print("some output")
        if ends_with is None:
            sys.exit()
        return ends_with

    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    if ends_with is None:
        with pytest.raises(SystemExit) as exit_:
            errors.cli_main(main)()
        assert exit_.value.code == expected
    else:
        assert errors.cli_main(main)() == expected


# -- one_line: the whole message, on one line ----------------------------------------------------------


def test_one_line_keeps_every_line_of_a_message() -> None:
    """Mutant: one_line kept only the first line, so a library's message ("...:\\n  the actual cause") lost its
    cause in every command's error line."""
    exc = RuntimeError("could not load the model:\n  Protobuf parsing failed\tat byte 12\r\n")
    assert errors.one_line(exc) == "could not load the model: Protobuf parsing failed at byte 12"


# -- check_home_expanded: a '~' that names no user is a plain name -------------------------------------


def test_a_path_starting_with_a_tilde_that_names_no_user_is_accepted(tmp_path: Path) -> None:
    """Mutant: every path starting with '~' refused, also one whose '~name' names no user (a folder literally so
    named, as a shell leaves it); "~/x" is still refused."""
    plain = "~no-such-user-fsrfer-64d/out"
    assert os.path.expanduser(plain) == plain
    errors.check_home_expanded("out_dir", plain)
    errors.check_out_folder("out_dir", Path(plain), "a folder")
    if os.path.expanduser("~/x") != "~/x":
        with pytest.raises(ConfigError, match="not expanded"):
            errors.check_home_expanded("out_dir", "~/x")


def test_a_command_that_wrote_everything_before_its_reader_left_exits_with_its_own_status(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: a pipe without a reader at the end made the status 141 even where nothing was lost (no
    BrokenPipeError raised, nothing left to flush): ``fsrfer-engines | head -1`` of a one-line listing then failed a
    ``set -o pipefail`` script that had all it asked for."""
    if not hasattr(__import__("select"), "poll"):
        pytest.skip("no poll() here to tell a pipe without a reader")
    read, write = os.pipe()
    out = os.fdopen(write, "w")
    try:
        def main() -> int:
            print("one line", file=out, flush=True)  # read in full by its reader, which then leaves
            os.close(read)
            return 0

        monkeypatch.setattr(sys, "stdout", out)
        assert errors.cli_main(main)() == 0
    finally:
        monkeypatch.undo()
        try:
            out.close()
        except BrokenPipeError:
            pass


# -- forking: every renewal an object registered runs in a forked child --------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_every_renewal_of_an_object_runs_in_a_forked_child() -> None:
    """Mutant: a second renew_in_child for one object replaced the first, so the child renewed only one of the
    object's parts (a thread pool and a lock, say) and hung on the other."""
    from fsrfer_edge.forking import renew_in_child
    from _fork_child import in_child

    class Holder:
        def __init__(self) -> None:
            self.renewed: list[str] = []

    holder = Holder()
    renew_in_child(holder, lambda h: h.renewed.append("pool"))
    renew_in_child(holder, lambda h: h.renewed.append("lock"))
    assert in_child(lambda: holder.renewed) == {"value": ["pool", "lock"]}
    assert holder.renewed == []  # the parent's own object is left as it is


# -- fsrfer-engines: sizes reported, and the status of a prune that could not remove everything --------


def _stale_folder(folder: Path) -> tuple[Path, Path]:
    """``folder`` with a stale 3 MiB engine (its sidecar lost) and a killed export's 1 MiB staging folder."""
    import socket
    import time

    from fsrfer_edge import engine_cache

    lost = folder / "lost.engine"
    with open(lost, "wb") as f:
        f.truncate(3 << 20)
    t = time.time() - 2 * engine_cache.UNFINISHED_GRACE_S  # past the grace period of a build still writing
    os.utime(lost, (t, t))
    stage = folder / ".face.staging-killed00"
    stage.mkdir()
    with open(stage / "face.fp32.onnx", "wb") as f:
        f.truncate(1 << 20)
    (stage / ".owner").write_text(f"pid {exited_pid()} on {socket.gethostname()}\n")
    return lost, stage


def test_fsrfer_engines_reports_sizes_in_mib_with_the_staging_folders_counted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mutants: sizes in MB under a "MiB" label (3 MiB shown as 3.1); the staging folders of killed exports left
    out of the total that --prune would free."""
    from fsrfer_edge import engines_cli

    lost, stage = _stale_folder(tmp_path)
    argv = ["--dir", str(tmp_path), "--tensorrt-version", "10.3.0.26"]
    assert engines_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "lost.engine (3.0 MiB)" in out and f"{stage.name}/ (1.0 MiB)" in out
    assert "2 stale, 4.0 MiB: fsrfer-engines --prune removes them" in out
    assert engines_cli.main(argv + ["--prune", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove 1 stale engine file(s), 3.0 MiB" in out and "would remove 1 staging folder(s)" in out
    assert lost.exists() and stage.exists()


def test_fsrfer_engines_prune_exits_2_when_a_staging_folder_could_not_be_removed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: fsrfer-engines --prune exited 0 after saying it could not remove a file (a cron job's cleanup then
    never reported the folder that fills the disk)."""
    from fsrfer_edge import engine_cache, engines_cli

    lost, stage = _stale_folder(tmp_path)
    why = f"{stage}: [Errno 13] Permission denied"
    monkeypatch.setattr(engine_cache, "remove_dead_staging", lambda folder, dry_run=False: ([], [why]))
    assert engines_cli.main(["--dir", str(tmp_path), "--tensorrt-version", "10.3.0.26", "--prune"]) == 2
    captured = capsys.readouterr()
    assert f"could not remove {why}" in captured.err and "removed 1 stale engine file(s), 3.0 MiB" in captured.out
    assert not lost.exists()


# -- fsrfer-crowd: the limits of its options ------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--scale", "17"], "--scale 17; expected an integer from 1 to 16"),
    (["--min-size", "-1"], "--min-size"),
    (["--min-size", "nan"], "--min-size"),
    (["--detect-every", "0"], "--detect-every 0; expected an integer >= 1"),
    (["--coast", "6"], "--coast 6; expected at most 5 frames"),
])
def test_fsrfer_crowd_refuses_an_option_past_its_limit_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], words: str) -> None:
    """Mutants: --scale 17 let through (upscaling past the documented 16), --min-size not checked (a negative or NaN
    size silently kept every face), --detect-every 0 let through. The input is a file no detector could read: the
    option must be refused first, by its own name."""
    from fsrfer_edge import crowd_cli

    video = tmp_path / "junk.mp4"
    video.write_bytes(b"\0" * 1024)
    assert crowd_cli.main([str(video), "--out", str(tmp_path / "o.mp4"), *args]) == 2
    err = capsys.readouterr().err
    assert "fsrfer-crowd: error:" in err and words in err
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("args", [["--coast", "5"], ["--detect-every", "1"], ["--scale", "16"]])
def test_fsrfer_crowd_accepts_an_option_at_its_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     args: list[str]) -> None:
    """Mutant: --coast 5 (DEFAULT_MAX_MISSED, the longest a track is kept unseen) refused as past the limit. The
    unreadable input is what is refused then, not the option."""
    from fsrfer_edge import crowd_cli

    video = tmp_path / "junk.mp4"
    video.write_bytes(b"\0" * 1024)
    assert crowd_cli.main([str(video), "--out", str(tmp_path / "o.mp4"), *args]) == 2
    err = capsys.readouterr().err
    assert "fsrfer-crowd: error:" in err and args[0] + " " not in err


def test_crowd_scale_up_to_exactly_the_frame_limit_is_allowed() -> None:
    """Mutant: an annotated output of exactly MAX_FRAME_PIXELS (a 4096x4096 image at --scale 2: 8192x8192) refused,
    though the limit allows it."""
    from fsrfer_edge.crowd_cli import check_scale
    from fsrfer_edge.detection.base import MAX_FRAME_PIXELS
    from fsrfer_edge.errors import InputError

    side = 4096
    assert side * side * 4 == MAX_FRAME_PIXELS
    check_scale(2, side, side)
    with pytest.raises(InputError, match="expected --scale 2 or less"):
        check_scale(3, side, side)
