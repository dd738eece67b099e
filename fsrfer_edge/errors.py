"""The package's exceptions: one base class, one subclass per kind of failure.

Every message says what was received, what was expected and, where it helps, what to do.
"""
from __future__ import annotations

import argparse
import codecs
import contextlib
import errno
import functools
import importlib
import os
import select
import signal
import stat
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import IO, TYPE_CHECKING, Any, Callable, ContextManager, Iterator, NoReturn, Optional, TypeVar, Union, cast

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import SupportsWrite


class FsrferError(Exception):
    """Base class of every error raised by fsrfer_edge and the trainer."""


class InputError(FsrferError, ValueError):
    """Faces, frames or arrays given by the caller are not what the API accepts."""


class ModelError(FsrferError):
    """A model file (ONNX, checkpoint) is missing, corrupt or not an fsrfer model."""


class EngineError(ModelError):
    """A TensorRT engine is corrupt, stale, or was built for another TensorRT version or GPU."""


class DataError(FsrferError):
    """A data set file is missing or malformed; the message names the file and line."""


class ConfigError(FsrferError, ValueError):
    """A configuration file or option is invalid."""


class BackendUnavailable(FsrferError, ImportError):
    """An optional library (torch, onnxruntime, tensorrt, CUDA bindings) is not installed."""


# The extras of setup.py that hold torch.
TORCH_EXTRAS = ("train", "export")


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import an optional dependency, or raise BackendUnavailable naming the pip extra.

    Args:
        module: importable module name, e.g. ``"onnxruntime"``.
        extra: the extra of ``pip install -e ".[EXTRA]"`` (in the fsrfer-edge checkout) that provides it.
        purpose: what it is needed for, shown in the message.

    Raises:
        BackendUnavailable: if the import fails.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        why = f" for {purpose}" if purpose else ""
        # torch first, pinned (README, "Quick start"): the extra's own range would pull the CUDA wheels.
        first = "pip install torch==2.13.0, then " if extra in TORCH_EXTRAS else ""
        raise BackendUnavailable(
            f"'{module}' is needed{why} but could not be imported ({exc}). "
            f"Install it in the fsrfer-edge checkout with: {first}pip install -e '.[{extra}]'"
        ) from exc


#: What to do about a failed write, by errno (:class:`WriteError`).
_WRITE_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space, or choose a path on another disk",
    errno.EDQUOT: "the disk quota is used up: free some space (or have the quota raised), or choose a path on "
                  "another disk",
    errno.EROFS: "the file system is read-only: choose a path on a writable disk",
    errno.EACCES: "this user may not write there: choose another path, or fix the folder's permissions",
    errno.EPERM: "this user may not write there: choose another path, or fix the folder's permissions",
    errno.EIO: "the disk (or a network file system) reported an input/output error: check it, then try again",
    errno.EFBIG: "the file is larger than this file system allows: choose a path on another disk",
}

#: The errnos of a write that failed for want of room or rights, or on a failing disk, not for a wrong path.
WRITE_ERRNOS = frozenset(_WRITE_ADVICE)


class WriteError(FsrferError, OSError):
    """Writing ``filename`` failed part-way: a full disk (ENOSPC), a quota (EDQUOT), a read-only file system
    (EROFS), no permission (EACCES), an I/O error (EIO). The message names the file, what went wrong and what to
    do; nothing was left at the path (an earlier file there is kept as it was). An OSError too (``errno``,
    ``strerror`` and ``filename`` are those of the failure), so code that catches OSError still catches it."""

    def __init__(self, path: "os.PathLike[str] | str", cause: OSError) -> None:
        strerror = cause.strerror or str(cause) or type(cause).__name__
        super().__init__(cause.errno, strerror, os.fspath(path))
        code = errno.errorcode.get(cause.errno, "") if cause.errno is not None else ""
        advice = _WRITE_ADVICE.get(cause.errno or 0, "fix the cause, or choose another path, and try again")
        self.message = (f"cannot write {os.fspath(path)}: {strerror}{f' ({code})' if code else ''}; {advice} "
                        "(nothing was written there; an earlier file of that name is kept as it was)")

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Any:  # pickled (multiprocessing) by its own arguments, not OSError's
        return (WriteError, (self.filename, OSError(self.errno, self.strerror)))


def check_flag(name: str, value: Any) -> bool:
    """A boolean option as a bool (bool or numpy bool); anything else (``"no"``, 0, None) is an InputError, not read
    as true or false."""
    import numpy as np  # numpy's bool too; imported here, as this module is loaded before anything else

    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name}={value!r}; expected True or False")
    return bool(value)


def check_out_folder(name: str, value: Any, expected: str) -> None:
    """Refuse an empty or blank output folder path (``out_dir=""`` from an unset variable) as a ConfigError, not read
    as Path(""), the current folder, where a writer would put its files unasked, and one with an unexpanded ``~``
    (:func:`check_home_expanded`). ``expected``: what the folder is."""
    if isinstance(value, (str, os.PathLike)) and not str(os.fspath(value)).strip():  # Path("") is already "."
        raise ConfigError(f"{name}={value!r}: received an empty path; expected {expected} (an empty path would "
                          "write into the current folder; pass \".\" for that)")
    check_home_expanded(name, value)


def check_count(name: str, value: Any, least: int) -> int:
    """``value`` as an int where it is an integer (numpy's too) >= ``least``; anything else (a bool, a float, a str)
    is an InputError."""
    import numpy as np

    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < least:
        raise InputError(f"{name}={value!r}; expected an integer >= {least}")
    return int(value)


def expand_home(text: str) -> str:
    """The argparse type of path options kept as text: a leading ``~`` or ``~user`` is that home folder, as a shell
    makes it. The shell expands it only at the start of a word, so ``--out=~/x.png`` reaches a command unexpanded,
    where it would name a folder ``~`` in the current folder (and be made there)."""
    return os.path.expanduser(text) if text.startswith("~") else text


def cli_path(text: str) -> Path:
    """The argparse type of a command line's path options: an empty one (``--out "$OUT"`` with the variable unset)
    is refused, not read as Path(""), the current folder, where a command would write or read unasked; a leading
    ``~`` is the home folder (:func:`expand_home`)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"received an empty path {text!r}; expected a file or folder path")
    return Path(expand_home(text))


def check_home_expanded(name: str, path: Any) -> None:
    """Refuse a path given to a library call that starts with an unexpanded ``~`` (``"~/repo"``, ``"~user/x"``):
    Python does not expand it, so a writer would make a folder literally named ``~`` in the current folder. A ``~``
    that names no user (``"~nobody-such/x"``) is a plain name, as in a shell.

    Raises:
        ConfigError: naming ``name``, the path and both ways to say what was meant.
    """
    if not isinstance(path, (str, os.PathLike)):
        return
    text = os.fspath(path)
    if isinstance(text, str) and text.startswith("~") and os.path.expanduser(text) != text:
        raise ConfigError(f"{name}={text!r} starts with '~', which is not expanded here (only a shell expands it, "
                          "at the start of a word): it would make a folder named '~' in the current folder "
                          f"({os.getcwd()}); expected os.path.expanduser({text!r}) for the home folder, or "
                          f"'./{text}' for a folder named '~'")


def one_line(exc: "BaseException | str") -> str:
    """An error message on one line (messages quoting other libraries may hold newlines)."""
    return " ".join(str(exc).split())


class CliParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line on stderr, exit code 2 (no usage dump).

    Every fsrfer command line reports its errors so: ``PROG: error: what was wrong; what to do``.
    """

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")
        sys.exit(2)

    # argparse (Python 3.11 and later, ArgumentParser._print_message) drops any OSError of writing the help or
    # usage, then ``--help`` exits with 0: written straight into a pipe whose reader is gone (``python -u``,
    # PYTHONUNBUFFERED: nothing is left to fail in a flush at the end), the BrokenPipeError would be lost and the
    # command would exit with 0 where a buffered one exits with BROKEN_PIPE_EXIT. Here it is raised, for cli_main.
    def print_help(self, file: Optional[SupportsWrite[str]] = None) -> None:
        _write_message(self.format_help(), sys.stdout if file is None else file)

    def print_usage(self, file: Optional[SupportsWrite[str]] = None) -> None:
        _write_message(self.format_usage(), sys.stdout if file is None else file)


def _write_message(message: str, file: Optional[SupportsWrite[str]]) -> None:
    """Write argparse's ``message`` to ``file`` as argparse does (no stream, as stdout under pythonw, or another
    write error: dropped), except that a lost reader's error (:data:`READER_GONE`) is raised."""
    if not message or file is None:
        return
    try:
        file.write(message)
    except READER_GONE:
        raise
    except (AttributeError, OSError):
        pass


@contextlib.contextmanager
def signal_handled(signum: int, handler: Any, fallback: Any = signal.SIG_DFL) -> Iterator[None]:
    """Within the block, ``handler`` handles signal ``signum``; the previous handler is put back after it
    (``fallback`` where that one was not set from Python and cannot be). Only the main thread may set handlers:
    elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, fallback if previous is None else previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def sigterm_interrupts() -> ContextManager[None]:
    """Within the block, SIGTERM (``kill``, a job scheduler or supervisor stopping the run) raises
    KeyboardInterrupt as Ctrl-C does, so the run cleans up after itself either way (:func:`signal_handled`)."""
    return signal_handled(signal.SIGTERM, _interrupt)


# The exit status of a command whose stdout (or stderr) pipe lost its reader (``fsrfer-engines | head -1``):
# 128 + SIGPIPE, what the shell reports for a program that SIGPIPE ended, as 130 = 128 + SIGINT after Ctrl-C.
BROKEN_PIPE_EXIT = 141

#: What a write into a stream whose reader is gone raises: BrokenPipeError (a pipe, or a socket the peer closed
#: cleanly), or ConnectionResetError (a TCP connection the peer closed with data still unread, which resets it).
#: Whether the stream written was stdout or stderr, not another socket of the command's, is told by
#: :func:`_pipe_reader_gone`.
READER_GONE = (BrokenPipeError, ConnectionResetError)

_Main = TypeVar("_Main", bound=Callable[..., int])


def _pipe_reader_gone(stream: IO[str]) -> bool:
    """Whether ``stream`` writes into a pipe or socket whose reader is gone, without writing to it: poll() reports an
    error (a pipe without a reader), or a hang-up on a socket (a Unix socket whose peer closed, or a TCP connection
    the peer reset after its close, reports POLLHUP, not POLLERR). False where that cannot be told (no poll(), no file descriptor, another kind of file)."""
    if not hasattr(select, "poll"):
        return False
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            return False
        gone = select.POLLERR | (select.POLLHUP if stat.S_ISSOCK(mode) else 0)
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(events & gone for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _broken(stream: Optional[IO[str]], raised: bool) -> bool:
    """Whether ``stream`` (sys.stdout or sys.stderr) can no longer be written: flushing what it holds raises
    BrokenPipeError or, where a BrokenPipeError is being handled (``raised``), its pipe has lost its reader (a
    write-through stream holds nothing to flush: ``python -u``, PYTHONUNBUFFERED)."""
    if stream is None:
        return False
    try:
        stream.flush()
    except READER_GONE:
        return True
    except (OSError, ValueError):  # closed, or another failure: not a lost reader
        return False
    return raised and _pipe_reader_gone(stream)


def _to_devnull(stream: IO[str]) -> None:
    """Point ``stream``'s file descriptor at os.devnull, so that the interpreter's flush at exit, and whatever else
    is written (logging at exit), succeeds quietly."""
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        return
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _quiet_if_broken(raised: bool) -> bool:
    """Silence stdout and stderr where their reader is gone; whether either was."""
    broken = [s for s in (sys.stdout, sys.stderr) if _broken(s, raised)]
    for stream in broken:
        assert stream is not None
        _to_devnull(stream)
    return bool(broken)


#: The codec error handler :func:`printable_output` gives stdout and stderr.
PRINTABLE_ERRORS = "fsrfer-printable"


def _printable(exc: UnicodeError) -> tuple[Union[str, bytes], int]:
    """Write what a stream cannot encode: a file name's surrogate escapes (bytes not in the file system's encoding,
    a Latin-1 name under UTF-8) as those bytes, as Python writes them to a C locale's stdout; any other character
    (a non-ASCII class name on an ASCII stdout) as a backslash escape, as stderr writes it."""
    if isinstance(exc, UnicodeEncodeError) and all(0xDC80 <= ord(c) <= 0xDCFF for c in exc.object[exc.start:exc.end]):
        return codecs.lookup_error("surrogateescape")(exc)
    return codecs.lookup_error("backslashreplace")(exc)


def printable_output() -> None:
    """Let a command's stdout and stderr write any text, so that a finished run does not end with a
    UnicodeEncodeError traceback (and status 1, its outputs written) on printing a name: stdout is strict under
    PYTHONIOENCODING=utf-8 and ASCII under a C locale without UTF-8 mode (LC_ALL=C PYTHONUTF8=0). Streams with an
    error handler of the user's own (PYTHONIOENCODING=utf-8:replace) are left as they are."""
    codecs.register_error(PRINTABLE_ERRORS, _printable)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", None) in ("strict", "surrogateescape",
                                                                           "backslashreplace"):
            try:
                reconfigure(errors=PRINTABLE_ERRORS)
            except (ValueError, OSError):  # closed, or a stream that cannot change its errors
                pass


def cli_main(main: _Main) -> _Main:
    """The wrapper of every console script's entry point (setup.py's ``console_scripts``).

    Output piped into a reader that closes early (``fsrfer-demo | head -1``) ends the command quietly with
    :data:`BROKEN_PIPE_EXIT`, as https://docs.python.org/3/library/signal.html#note-on-sigpipe recommends: on a
    BrokenPipeError (or the ConnectionResetError of a TCP connection the reader reset, :data:`READER_GONE`), or on
    a flush of stdout or stderr at the end that raises one, the broken stream is pointed at
    os.devnull (the interpreter flushes it again at exit) and no traceback is printed. The command's own cleanup
    (temporary and staging files, partial outputs) runs as for any other exception, on the way out of ``main``.
    A status the command had ended with already (an error, 2) is kept where only the flush at the end fails.
    A BrokenPipeError that is not about stdout or
    stderr (a socket whose peer went) is raised as it was. SIGPIPE itself is left ignored, as Python sets it: its
    default action would kill the process before any cleanup, and on any socket too. Names the streams cannot
    encode are printed escaped (:func:`printable_output`).
    """
    @functools.wraps(main)
    def run(*args: Any, **kwargs: Any) -> int:
        printable_output()
        try:
            status = main(*args, **kwargs)
        except READER_GONE:
            if not _quiet_if_broken(raised=True):
                raise
            return BROKEN_PIPE_EXIT
        except SystemExit as exc:  # argparse's --help and usage errors, sys.exit()
            if _quiet_if_broken(raised=False) and exc.code in (0, None):
                raise SystemExit(BROKEN_PIPE_EXIT) from None
            raise
        if _quiet_if_broken(raised=False):
            return status or BROKEN_PIPE_EXIT
        return status

    return cast(_Main, run)
