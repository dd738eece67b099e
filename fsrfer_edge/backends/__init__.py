"""Inference backends behind one small interface (``infer(batch) -> logits``, ``close()``).

Importing this package needs only numpy; each backend imports its runtime library when created.
"""
from __future__ import annotations

from .base import Backend, BackendClosedError

__all__ = ["Backend", "BackendClosedError", "BACKENDS"]

#: Names accepted by ``Recognizer(backend=...)``.
BACKENDS = ("auto", "onnxruntime", "tensorrt")
