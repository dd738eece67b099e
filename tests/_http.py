"""A local HTTP server on a free loopback port for the serving tests' stand-ins (a fake Triton, a metrics port)."""
from __future__ import annotations

import contextlib
import http.server
import json
import threading
from typing import Iterator

import pytest


@contextlib.contextmanager
def local_http(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 (a free port) in a daemon thread; yields "127.0.0.1:PORT"."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that logs nothing to the test's output."""

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: bytes) -> None:
        """Answer with ``status`` and the JSON ``body``."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def client_stand_in(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """:func:`local_http` for a test of RemoteRecognizer, skipped where tritonclient is not installed."""
    pytest.importorskip("tritonclient.http", reason="tritonclient is not installed (pip install -e '.[client]')")
    with local_http(handler) as address:
        yield address


def triton_model_config() -> bytes:
    """What a Triton server answers for /v2/models/fsrfer/config of an fsrfer model (the default ModelInfo, carried
    in the config's parameters as fsrfer-serve and the repository writer put it)."""
    from fsrfer_edge.metadata import ModelInfo

    info = ModelInfo()
    pre = info.preprocessing
    return json.dumps({
        "name": "fsrfer", "max_batch_size": 16,
        "input": [{"name": info.input_name, "data_type": "TYPE_FP32",
                   "dims": [pre.channels, pre.input_size, pre.input_size]}],
        "output": [{"name": info.output_name, "data_type": "TYPE_FP32", "dims": [len(info.classes)]}],
        "parameters": {"fsrfer": {"string_value": info.to_json()}}}).encode()
