"""Serving with NVIDIA Triton Inference Server.

- :func:`write_triton_repo`: a Triton model repository (``tensorrt_plan`` and/or ``onnxruntime_onnx``)
  for NVIDIA's production ``tritonserver`` (``fsrfer-export --triton-repo DIR``).
- :func:`serve`: a real Triton server on this machine through PyTriton hosting the
  :class:`~fsrfer_edge.Recognizer` with dynamic batching (``fsrfer-serve``); :class:`ServerProcess`
  runs it as a child process (tests, load tests).
- :class:`RemoteRecognizer`: the ``Recognizer`` API over Triton's HTTP/gRPC protocol.

Importing this package needs numpy only: PyTriton (pip extra ``serve``) and ``tritonclient``
(extra ``client``) are imported when a server or client is created.
"""
from __future__ import annotations

from .client import RemoteRecognizer, TritonClientBackend
from .errors import RemoteError, ServerUnavailable, TooManyOpenFiles
from .server import ServerProcess, serve
from .triton_repo import parse_config, write_triton_repo

__all__ = [
    "RemoteError", "RemoteRecognizer", "ServerProcess", "ServerUnavailable", "TooManyOpenFiles", "TritonClientBackend",
    "parse_config", "serve", "write_triton_repo",
]
