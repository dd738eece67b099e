"""What a forked child must not inherit as it is: a thread pool whose threads stayed in the parent, a lock that one
of the parent's threads held at the fork. An object registers a renewal; every process forked from this one while
the object lives runs it first (``os.register_at_fork``; nothing on Windows, which cannot fork)."""
from __future__ import annotations

import ctypes
import os
import weakref
from typing import Any, Callable

#: Per live object, what a forked child runs to renew it (weak keys: a registration never keeps an object alive).
_RENEWALS: "weakref.WeakKeyDictionary[Any, list[Callable[[Any], None]]]" = weakref.WeakKeyDictionary()


def renew_in_child(obj: Any, renew: Callable[[Any], None]) -> None:
    """Run ``renew(obj)`` in every process forked from this one while ``obj`` lives. ``renew`` must not hold ``obj``
    itself (it gets it as its argument), or ``obj`` would never be collected."""
    _RENEWALS.setdefault(obj, []).append(renew)


def _after_fork_in_child() -> None:
    for obj, renewals in list(_RENEWALS.items()):
        for renew in renewals:
            renew(obj)


#: What objects opened in another process left behind in this one, a fork of it (:func:`leave_to_parent`).
_LEFT_TO_PARENT: list[Any] = []
_LEFT_PINNED = False


def leave_to_parent(*objects: Any) -> None:
    """Keep ``objects`` inherited from the parent (CUDA buffers, streams, TensorRT objects; ONNX Runtime sessions)
    alive until this forked process ends, so that no destructor of theirs ever runs in it: CUDA's would act on the
    parent's context (cudaFree, cuStreamDestroy, pycuda's context push and pop), ONNX Runtime's waits for ever to join
    thread-pool threads that stayed in the parent. Not even at the interpreter's exit, which clears module globals:
    the list holding them gets one reference more that is never given back (CPython)."""
    global _LEFT_PINNED
    _LEFT_TO_PARENT.extend(objects)
    if not _LEFT_PINNED:
        _LEFT_PINNED = True
        try:
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(_LEFT_TO_PARENT))
        except AttributeError:  # no ctypes.pythonapi (not CPython): kept until module cleanup at exit
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
