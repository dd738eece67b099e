"""Atomic file writes, hashing and strict JSON reading, used by every part that writes or reads its own files
(numpy-free, stdlib only).

A file is written to a temporary name beside its destination, flushed to disk and renamed into place,
so a killed process never leaves a half-written model, engine, checkpoint or report.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import re
import reprlib
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Optional, Sequence, Union

from .errors import FsrferError, InputError, ModelError, WriteError

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]



def as_path(value: Any, what: str) -> Path:
    """``value`` (a str or os.PathLike naming a path) as a Path.

    Raises:
        InputError: anything else (bytes, a number, None), or an empty path (``Path("")`` would be the current
            folder).
    """
    given = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(given, str):
        raise InputError(f"{what}: received {type(value).__name__} {value!r}; expected a path (a str or "
                         "os.PathLike such as pathlib.Path)")
    if not given.strip():
        raise InputError(f"{what}: received an empty path {value!r}; expected the path of a file")
    return Path(given)


def file_problem(path: PathLike) -> str:
    """Why ``path`` cannot be read as a regular file ("" when it can), e.g. for a model or a checkpoint.

    Tells apart a missing file, a broken symlink or symlink loop, a directory, and a FIFO, socket or
    device (reading one of those would block or read garbage).
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return "is a broken symbolic link (its target does not exist)" if os.path.islink(p) else "does not exist"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) \
            else "a device"
        return f"is {kind}, not a regular file"
    return ""



def files_problem(*paths: PathLike) -> str:
    """``"PATH <why>"`` for the first of ``paths`` that cannot be read as a regular file (:func:`file_problem`),
    "" when all can: a script's check of its inputs before it starts work."""
    for path in paths:
        problem = file_problem(path)
        if problem:
            return f"{path} {problem}"
    return ""

def check_output_path(path: PathLike, what: str = "output", probe: bool = True, json_output: bool = False) -> Path:
    """Refuse, before any work is done, an output path that cannot be written as a file, or that names an
    existing file the run must not replace (:func:`existing_output_problem`): a read-only one, and with
    ``json_output`` (the output is a JSON document) one that is not JSON text. ``probe``: where its folder
    exists, create (and remove) a file there to be sure; :func:`atomic_write`, whose own temporary file is that
    test, leaves it out.

    A command that also calls :func:`check_distinct_files` may leave ``json_output`` out: that call refuses an
    existing file that is not JSON for its JSON outputs, after saying which input an output would overwrite.

    Raises:
        InputError: ``path`` names a directory, lies under a regular file (``a.json/b.json``), its folder
            cannot be created or written, or it names an existing read-only file, or (``json_output``) an
            existing file that is not JSON.
    """
    p = Path(path)
    example = _example_name(p, what, json_output)
    if str(path) == "" or p.name in ("", ".", ".."):
        raise InputError(f"{what} {str(path)!r} is not a file name; expected "
                         + (f"a path such as {example}" if example else "the path of a file"))
    if p.is_dir():
        raise InputError(f"{what} {p} is a directory; expected a file path inside it, e.g. {p / example}" if example
                         else f"{what} {p} is a directory; expected a file path: add a file name inside it "
                              f"({p}{os.sep}NAME)")
    if not p.is_absolute() and not _cwd_exists():
        raise InputError(f"{what} {p}: the current folder no longer exists (it was removed after this command was "
                         "started in it), so a relative path names no folder; expected an absolute path, or run "
                         "the command from an existing folder")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{what} {p}: {parent} is a file, not a folder; expected a path in a folder")
            if not os.access(parent, os.W_OK | os.X_OK) or (probe and parent == p.parent and not _can_create_in(parent)):
                raise InputError(f"{what} {p}: the folder {parent} is not writable; choose another path")
            break
    problem = existing_output_problem(p, json_output)
    if problem:
        raise InputError(f"{what} {p} {problem}")
    return p


def _cwd_exists() -> bool:
    """Whether the current folder still exists (``os.getcwd`` raises FileNotFoundError once it is removed)."""
    try:
        os.getcwd()
    except FileNotFoundError:
        return False
    return True


def _example_name(p: Path, what: str, json_output: bool) -> str:
    """A file name for a message's example of ``what``'s output path: results.json for a JSON output, out + the
    path's own suffix (a folder named shots.png: out.png), else "" (no kind known: no example)."""
    if json_output or "json" in what.lower():
        return "results.json"
    suffix = p.suffix if p.name not in ("", ".", "..") else ""
    return f"out{suffix}" if suffix else ""


JSON_HEAD_BYTES = 1 << 16  # how much of an existing file is read to tell JSON text from anything else


def existing_output_problem(path: PathLike, json_output: bool = False) -> str:
    """Why the existing file at ``path`` must not be replaced by an output ("" when it may be, or is absent).

    A read-only file (its owner's write bit unset, or, for a user other than root, one ``os.access`` says is not
    writable) is kept: renaming a new file over it would succeed all the same, as root or in a writable folder.
    With ``json_output``, a regular file that is not JSON text (its first non-blank byte is not ``{`` or ``[``,
    or it holds NUL bytes, as an .npz, an image or a model does) is kept too; an empty one may be replaced.
    A symbolic link is judged by the file it names.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError:  # absent, a broken link or a link loop: no file to keep (the link itself is replaced)
        return ""
    if stat.S_ISDIR(st.st_mode):
        return ""  # refused by check_output_path with its own words
    non_root = hasattr(os, "geteuid") and os.geteuid() != 0
    if not st.st_mode & stat.S_IWUSR or (non_root and not os.access(p, os.W_OK)):
        why = f"mode {stat.S_IMODE(st.st_mode):03o}" if not st.st_mode & stat.S_IWUSR else "not writable by this user"
        return (f"exists and is read-only ({why}); expected a writable file or a new path: remove it, make it "
                f"writable (chmod u+w {p}), or choose another path")
    if not json_output or not stat.S_ISREG(st.st_mode):
        return ""
    not_json = "exists and is not a JSON file; expected a new path or an earlier JSON output"
    try:
        with open(p, "rb") as f:
            head = f.read(JSON_HEAD_BYTES)
    except OSError as exc:
        return (f"exists and cannot be read to check that it is an earlier JSON output ({exc.strerror or exc}); "
                "expected a new path or an earlier JSON output")
    bom = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, as some editors write
    text = (head[len(bom):] if head.startswith(bom) else head).lstrip(b" \t\r\n")
    if b"\0" in head or (text and text[:1] not in (b"{", b"[")) or (not text and len(head) < st.st_size):
        return not_json
    return ""


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder``, tried for real: ``os.access`` says yes to root everywhere,
    /proc and read-only mounts included. The probe file is removed at once."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=folder)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return True


def os_error_of(exc: BaseException) -> Optional[OSError]:
    """The OSError ``exc`` is, or that it was raised from or while handling (a library that turns a failed write
    of its file object into its own error: torch.save raises RuntimeError "unexpected pos"); None when there is
    none, or ``exc`` is one of the package's own errors."""
    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen and not isinstance(current, FsrferError):
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


#: Most bytes of a file's own name in the names of the temporary files and folders made beside it: they add up to
#: about 20 bytes, and a name holds 255 (NAME_MAX).
TEMP_NAME_BYTES = 200


def short_name(name: str, max_bytes: int = TEMP_NAME_BYTES) -> str:
    """``name`` cut to ``max_bytes`` bytes of UTF-8 at a character boundary (unchanged if shorter), for the names
    derived from it (a temporary file beside it, an engine named after a model) to fit a file name. A name that
    is not UTF-8 keeps its bytes (surrogate escapes)."""
    raw = name.encode("utf-8", "surrogateescape")
    return name if len(raw) <= max_bytes else raw[:max_bytes].decode("utf-8", "ignore")


def atomic_write(path: PathLike, write: Callable[[IO[bytes]], Any], json_output: bool = False) -> Path:
    """Call ``write(f)`` on a temporary binary file beside ``path``, then rename it into place.

    The file gets ordinary permissions (0666 minus the umask), not mkstemp's 0600. An existing file at ``path``
    that is read-only (or, with ``json_output``, not JSON) is kept, checked before the work and again just
    before the rename, so a file made read-only meanwhile is not replaced either.

    Raises:
        InputError: ``path`` cannot be written as a file, or names a file that must be kept (see
            :func:`check_output_path`); the temporary file is removed.
        WriteError: writing failed part-way (a full disk, a quota, a read-only file system, an I/O error), in
            ``write`` (an OSError of its own, or one it turned into another error) or in the flush, sync or
            rename; the temporary file is removed and an earlier file at ``path`` is kept as it was.
    """
    path = check_output_path(path, probe=False, json_output=json_output)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder of {path} ({exc.strerror or exc}); choose another path") from exc
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{short_name(path.name)}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # a folder that refuses new files (read-only mount, /proc), found only on writing
        raise InputError(f"cannot write {path} ({exc.strerror or exc}); choose another path") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        set_default_mode(tmp)
        problem = existing_output_problem(path, json_output)  # made read-only (or replaced) while writing
        if problem:
            raise InputError(f"output {path} {problem}")
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        except OSError as gone:  # the disk went (EIO): say so, but report the write's own failure
            logger.warning("could not remove the temporary file %s (%s); remove it by hand", tmp, gone)
        cause = os_error_of(exc) if isinstance(exc, Exception) else None
        # an OSError about another file (one ``write`` reads, say) is that file's, raised as it is
        if cause is not None and cause.filename in (None, tmp, str(path)):
            raise WriteError(path, cause) from exc
        raise
    return path


def current_umask() -> int:
    """The process's umask, read without changing it where the system tells it (Linux: /proc/self/status), so a
    file another thread creates meanwhile does not get a umask of 0 (elsewhere it is set and put back)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0)
    os.umask(umask)
    return umask


def set_default_mode(path: PathLike) -> None:
    """Give ``path`` the permissions of a newly created file, 0666 minus the umask: a temporary file from
    ``mkstemp`` (0600) gets them before it is renamed into place."""
    os.chmod(path, 0o666 & ~current_umask())


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file: the same path once resolved, or, where both exist, one file
    reached through a symbolic or hard link."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symbolic link loop on Python < 3.13
        return os.path.abspath(a) == os.path.abspath(b)


def check_distinct_files(named: Sequence[tuple[str, Optional[PathLike]]], inputs: int = 1,
                         json_outputs: Sequence[str] = ("--json",)) -> None:
    """Refuse, before any work is done, a path of ``named`` (``(what, path)`` pairs, the ``inputs`` inputs first,
    then the outputs in the order they are written; a None path is skipped) that names the same file as one before
    it: an output that would overwrite an input, or another output. Inputs are not compared with each other (two
    of them may well be one file). Then an output that names an existing file the run must not replace
    (:func:`existing_output_problem`): a read-only one, or, for the outputs whose ``what`` is in ``json_outputs``
    (JSON documents), one that is not JSON text.

    Raises:
        InputError: naming both files, or the output and what is wrong with the file it names.
    """
    for i, (what, path) in enumerate(named):
        if i < inputs or path is None:
            continue
        for other_what, other in named[:i]:
            if other is not None and same_file(path, other):
                raise InputError(f"{what} {path} is the same file as {other_what} {other} and would overwrite it; "
                                 "expected a different file name")
    for what, path in named[inputs:]:
        problem = "" if path is None else existing_output_problem(path, what in json_outputs)
        if problem:
            raise InputError(f"{what} {path} {problem}")


def atomic_write_bytes(path: PathLike, data: bytes, json_output: bool = False) -> Path:
    return atomic_write(path, lambda f: f.write(data), json_output=json_output)


def write_json(path: PathLike, doc: Any, default: Optional[Callable[[Any], Any]] = None) -> Path:
    """Write ``doc`` as indented, key-sorted JSON, atomically.

    Strict JSON: a NaN or infinite number (which Python would write as ``NaN``/``Infinity``, refused by other JSON
    readers) is written as ``null``, with one logged warning naming where it was. Finite values are written as
    ``json.dumps`` writes them. ``default``: as ``json.dumps``'s (what it returns is written by the same rule).

    An existing file at ``path`` is replaced only when it is writable and JSON text (an earlier output) or empty.

    Raises:
        InputError: as :func:`atomic_write` (with ``json_output``).
    """
    try:
        text = json.dumps(doc, indent=2, sort_keys=True, default=default, allow_nan=False)
    except ValueError as exc:
        if "Out of range float values" not in str(exc):
            raise
        where: list[str] = []
        text = json.dumps(_finite_or_none(doc, default, "", where), indent=2, sort_keys=True, default=default,
                          allow_nan=False)
        shown = ", ".join(w or "(the document)" for w in where[:5]) + (", ..." if len(where) > 5 else "")
        logger.warning("%s: %d NaN or infinite number(s) written as null (strict JSON): %s", path, len(where), shown)
    return atomic_write_bytes(path, (text + "\n").encode(), json_output=True)


def loads_json(text: Union[str, bytes], source: str = "") -> Any:
    """``json.loads(text)`` for the package's own files (model metadata, engine and measured-file sidecars), except
    that an object holding one key twice is refused: json would keep the last value silently, and a file edited or
    merged by hand that holds two is ambiguous. ``source`` (a path) begins the message.

    Raises:
        InputError (a ValueError): a key given twice, named. json.JSONDecodeError (a ValueError): not JSON.
            RecursionError: arrays or objects nested too deep.
    """
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for key, value in pairs:
            if key in doc:
                where = f"{source}: " if source else ""
                both = f"{reprlib.repr(doc[key])} and then {reprlib.repr(value)}"
                raise InputError(f"{where}duplicate key {key!r} in a JSON object (values {both}); expected each key "
                                 "once: remove one of them, or write the file again")
            doc[key] = value
        return doc

    return json.loads(text, object_pairs_hook=unique)


def _finite_or_none(obj: Any, default: Optional[Callable[[Any], Any]], at: str, where: list[str]) -> Any:
    """``obj`` with each NaN or infinite float replaced by None (its place appended to ``where``); what ``default``
    makes of an object JSON cannot write is looked at too."""
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        where.append(at)
        return None
    if isinstance(obj, (str, int)) or obj is None:
        return obj
    if isinstance(obj, dict):
        return {k: _finite_or_none(v, default, f"{at}.{k}" if at else str(k), where) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v, default, f"{at}[{i}]", where) for i, v in enumerate(obj)]
    made = obj if default is None else default(obj)
    # None, or a default that returns what it was given: json.dumps refuses it with its own error
    return obj if made is obj else _finite_or_none(made, default, at, where)


def _fcntl() -> Any:
    """The ``fcntl`` module, or None where the platform has none (Windows)."""
    try:
        import fcntl
    except ImportError:
        return None
    return fcntl


def has_flock() -> bool:
    """Whether the platform has ``flock`` at all (a file system may still lack it: :func:`try_flock` says)."""
    return _fcntl() is not None


def try_flock(fd: int) -> Optional[bool]:
    """Take an exclusive advisory ``flock`` on ``fd`` without waiting: True when taken, False while another open of
    the file holds it, None where there is no lock to be had (no ``flock`` on the platform, as on Windows, or on the
    file system: ENOLCK, EOPNOTSUPP). The system releases it when the descriptor is closed, however its process
    ends (kill -9 included)."""
    fcntl = _fcntl()
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        logger.debug("no flock on descriptor %d (%s)", fd, exc)
        return None


def release_flock(fd: int) -> None:
    """Let go of a lock :func:`try_flock` took on ``fd`` (closing ``fd`` does as well)."""
    fcntl = _fcntl()
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def write_lock_note(fd: int) -> None:
    """Write who holds the lock into its file, "pid N on HOST since T" (UTC), for other processes' messages; a file
    that cannot be written is left as it is (the note is for messages only)."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode(), 0)
    except OSError:
        pass


def lock_note(fd: int) -> str:
    """What a lock file says of the process that holds it (:func:`write_lock_note`), or "" where unreadable."""
    try:
        return os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""


#: The lock file a process holds in a folder while it writes there (:func:`folder_lock`).
FOLDER_LOCK_NAME = ".fsrfer.lock"


class FolderInUse(InputError):
    """Another open of a folder's lock file holds it (:func:`folder_lock`): another live process writes there.
    ``holder``: what the lock file says of it ("pid N on HOST since T"), "" where unreadable."""

    def __init__(self, folder: PathLike, holder: str) -> None:
        self.folder, self.holder = Path(folder), holder
        super().__init__(f"{folder} is in use by another process ({holder or 'unknown'}); expected a folder no "
                         "other process writes: wait for it to finish, or choose another folder")


def open_lock_file(path: PathLike, flags: int) -> int:
    """``os.open`` of a lock file (``flags``: O_RDWR | O_CREAT, or O_RDONLY) that does not follow a symlink at its
    name: one planted in a folder others can write (a shared engine cache or output folder) would make the lock's
    holder truncate and write its note into the file it points at.

    Raises:
        OSError: as os.open; a symlink is ELOOP, and is logged as a warning naming it (the lock is then not taken).
    """
    try:
        return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(path):
            logger.warning("%s is a symlink, not a lock file: not followed, so the lock is not taken (remove it if "
                           "you did not put it there)", path)
        raise


@contextlib.contextmanager
def folder_lock(folder: PathLike) -> Iterator[bool]:
    """Hold an advisory ``flock`` on :data:`FOLDER_LOCK_NAME` in the existing ``folder`` (made if missing), without
    waiting: so that two processes do not write one folder at once, and a cleanup of a killed process's files
    (:func:`remove_partial_writes`) never removes a live one's. The system releases it when its holder exits,
    however it exits (kill -9 included), so a killed process never leaves it held; the holder removes the file as
    it lets go (one a killed holder left is taken over).

    Yields True while held; False where there is no lock to be had (no ``flock`` on the platform, as on Windows,
    or on the file system; a folder where the file cannot be made): the caller goes on without it.

    Raises:
        FolderInUse: another open of the lock file holds it (another process, or another ``folder_lock`` of this
            one), named where the file says which.
    """
    if not has_flock():  # Windows
        yield False
        return
    path = Path(folder) / FOLDER_LOCK_NAME
    while True:
        try:
            fd = open_lock_file(path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            logger.debug("no lock in %s (%s): not held", folder, exc)
            yield False
            return
        taken = try_flock(fd)
        if taken is False:
            holder = lock_note(fd)
            os.close(fd)
            raise FolderInUse(folder, holder)
        if taken is None:  # a file system without flock
            os.close(fd)
            yield False
            return
        try:  # a holder removes the file as it lets go: one this open found then is no lock any more
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except OSError:
            pass
        os.close(fd)
    try:
        write_lock_note(fd)
        yield True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still held: the folder is left as it was
        os.close(fd)  # releases the lock


def remove_partial_writes(folder: PathLike, locked: bool = False) -> list[Path]:
    """Delete the hidden ``.NAME.*.tmp`` files that :func:`atomic_write` leaves when its process is
    killed (kill -9) mid-write; returns what was removed. Only the files of processes that are gone: unless
    ``locked`` (the caller holds ``folder``'s :func:`folder_lock`), it takes that lock for the removal, and while
    another process holds it (a live run writing there) removes nothing."""
    root = Path(folder)
    if not root.is_dir():
        return []
    if not locked:
        try:
            with folder_lock(root):
                return remove_partial_writes(root, locked=True)
        except FolderInUse as exc:
            logger.info("%s: nothing half-written removed: another process (%s) writes there", root,
                        exc.holder or "unknown")
            return []
    removed = []
    for p in sorted(root.rglob(".*.tmp")):  # atomic_write's names only: .NAME.<mkstemp's letters>.tmp
        if re.fullmatch(r"\..+\.[a-z0-9_]+\.tmp", p.name) and p.is_file() and not p.is_symlink():
            p.unlink()
            removed.append(p)
    return removed


#: The largest file beside a model that is read (measured files, engine-cache sidecars): 200 times the packaged
#: groups file (326 KB), so that a huge or endless file (one linked to /dev/zero) is refused, not read into memory
#: whole.
MAX_SIDECAR_BYTES = 64 << 20


def read_sidecar_text(path: PathLike, what: str) -> str:
    """The text of a small JSON file kept beside a model (UTF-8), read so that an untrusted one can do no harm: a
    FIFO, socket or device is refused without waiting for a writer or reading an endless stream, and a file over
    :data:`MAX_SIDECAR_BYTES` is refused unread.

    Raises:
        ModelError: naming ``path``, what it is, and what was expected. OSError: the file cannot be opened or read.
        UnicodeDecodeError: it is not UTF-8 text.
    """
    # O_NONBLOCK: a FIFO opens without waiting for a writer; O_NOCTTY: a terminal device does not become this process's
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode  # of what was opened: no other file can take its place after a check
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "a device")
            raise ModelError(f"{path} is {kind}, not a regular file; expected a {what} (a JSON file)")
        data = f.read(MAX_SIDECAR_BYTES + 1)  # at most this much, though the file grows meanwhile
    if len(data) > MAX_SIDECAR_BYTES:
        raise ModelError(f"{path} holds over {MAX_SIDECAR_BYTES} bytes; expected at most {MAX_SIDECAR_BYTES} "
                         f"(MAX_SIDECAR_BYTES) for a {what}: it is not one, or is damaged")
    return data.decode("utf-8")


def sha256_file(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
