"""Errors of the serving layer (subclasses of :class:`fsrfer_edge.errors.FsrferError`)."""
from __future__ import annotations

from ..errors import FsrferError


class ServerUnavailable(FsrferError, ConnectionError):
    """The Triton server cannot be reached (not started, killed, restarting, or a network timeout).

    Inference is idempotent, so retrying the same call after the server is back is safe
    (``RemoteRecognizer(retries=N)`` does that for you).
    """


class RemoteError(FsrferError):
    """The Triton server answered, but with an error (a model that is not loaded, a rejected request)."""


class TooManyOpenFiles(FsrferError, OSError):
    """This process (EMFILE) or the system (ENFILE) has no file descriptor left for a connection to the
    server: a local limit (``ulimit -n``), not the server being unreachable, so it is not retried."""
