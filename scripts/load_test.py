"""Bounded loopback load test of fsrfer-serve (Triton through PyTriton) against the in-process Recognizer.

Phases (each stops by itself; about a minute on a 2-core CPU):

1. ``in_process``: C threads x R requests of B faces each on one shared in-process ``Recognizer``.
2. ``served_http`` / ``served_grpc``: the same requests from C ``RemoteRecognizer`` clients (one per
   thread) to a real Triton server started as a child process (``fsrfer-serve``). Every answer is
   compared with the in-process answer for the same faces: same label, logits within ``--atol``.
3. ``kill_restart``: clients (half HTTP, half gRPC) send requests while the server is killed
   (SIGKILL to its process group, as a crash) and restarted on the same ports. Odd clients use
   ``retries=0`` and retry in the app, recording each error (type and message); even clients use
   ``RemoteRecognizer(retries=...)`` and see no error, only a slower answer. Every request must
   still end with a correct answer.

Faces are a seeded synthetic set of gray crops of random sizes (no FER data needed).
Writes JSON atomically (default results/serving/load_test.json).

Usage::

    FSRFER_SERVE_PYTHON=/path/to/numpy1-env/bin/python python scripts/load_test.py
"""
from __future__ import annotations

import argparse
import collections
import datetime
import logging
import os
import platform
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fsrfer_edge import Recognizer  # noqa: E402
from fsrfer_edge.fileio import check_output_path, sha256_file, write_json  # noqa: E402
from fsrfer_edge.recognizer import resolve_model_path  # noqa: E402
from fsrfer_edge.errors import FsrferError, InputError  # noqa: E402
from fsrfer_edge.serving import RemoteRecognizer, ServerProcess  # noqa: E402
from fsrfer_edge.serving.server import serve_python  # noqa: E402

log = logging.getLogger("load_test")


def make_requests(n_clients: int, n_requests: int, batch: int, seed: int) -> list[list[list[np.ndarray]]]:
    """requests[client][i] = a list of ``batch`` uint8 gray faces of random sizes (12..64 px)."""
    rng = np.random.default_rng(seed)
    return [[[rng.integers(0, 256, (int(s), int(s)), dtype=np.uint8) for s in rng.integers(12, 65, batch)]
             for _ in range(n_requests)] for _ in range(n_clients)]


def percentiles(latencies_s: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(latencies_s) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_ms": round(float(ms.mean()), 2), "max_ms": round(float(ms.max()), 2)}


class Checker:
    """Compares answers with the in-process reference (label and logits)."""

    def __init__(self, reference: list[list[np.ndarray]], atol: float) -> None:
        self.reference, self.atol = reference, atol
        self.lock = threading.Lock()
        self.wrong = 0
        self.max_abs_diff = 0.0

    def check(self, client: int, i: int, logits: np.ndarray) -> None:
        ref = self.reference[client][i]
        diff = float(np.abs(logits - ref).max()) if logits.shape == ref.shape else float("inf")
        bad = diff > self.atol or not np.array_equal(logits.argmax(1), ref.argmax(1))
        with self.lock:
            self.max_abs_diff = max(self.max_abs_diff, diff)
            self.wrong += int(bad)


def run_clients(make_client: Callable[[int], Any], requests: list[list[list[np.ndarray]]],
                call: Callable[[Any, list[np.ndarray]], np.ndarray], checker: Optional[Checker],
                close_clients: bool = True) -> dict[str, Any]:
    """C threads x R requests; returns throughput, latency percentiles, lost/wrong counts."""
    n = len(requests)
    latencies: list[list[float]] = [[] for _ in range(n)]
    lost = [0] * n
    errors: list[str] = []
    barrier = threading.Barrier(n + 1)

    def worker(c: int) -> None:
        client = None
        try:
            client = make_client(c)
            call(client, requests[c][0])  # warm-up (connection, first-call allocations)
        except Exception as exc:  # noqa: BLE001 - recorded in the result
            errors.append(f"{type(exc).__name__}: {exc}")
        barrier.wait()
        for i, faces in enumerate(requests[c]):
            t0 = time.perf_counter()
            try:
                logits = call(client, faces)
            except Exception as exc:  # noqa: BLE001 - a lost answer is counted, not fatal
                lost[c] += 1
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies[c].append(time.perf_counter() - t0)
            if checker is not None:
                checker.check(c, i, logits)
        if client is not None and close_clients:
            client.close()

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    faces = sum(len(f) for reqs in requests for f in reqs)
    flat = [x for lat in latencies for x in lat]
    out = {"clients": n, "requests_per_client": len(requests[0]), "faces_per_request": len(requests[0][0]),
           "wall_s": round(wall, 3), "throughput_faces_per_s": round(faces / wall, 1),
           "throughput_requests_per_s": round(len(flat) / wall, 1), "latency": percentiles(flat),
           "lost": sum(lost), "errors": collections.Counter(errors).most_common(5)}
    if checker is not None:
        out.update(wrong=checker.wrong, max_abs_logit_diff=checker.max_abs_diff)
    return out


def kill_restart_phase(server: ServerProcess, requests: list[list[list[np.ndarray]]], checker: Checker,
                       kill_after_s: float, retry_delay_s: float, deadline_s: float,
                       pace_s: float = 0.1) -> dict[str, Any]:
    """Clients keep sending while the server is killed and restarted; every request must end correct."""
    n = len(requests)
    errors: list[tuple[str, str, float]] = []  # (type, message, time since kill)
    errors_per_client = [0] * n
    requests_retried = [0] * n
    answered = [0] * n
    first_ok_after_restart: list[Optional[float]] = [None] * n
    lock = threading.Lock()
    times: dict[str, float] = {}
    killed = threading.Event()
    restarted = threading.Event()
    barrier = threading.Barrier(n + 1)

    def worker(c: int) -> None:
        protocol = "http" if c < n // 2 else "grpc"
        builtin = c % 2 == 0
        url = server.http_url if protocol == "http" else server.grpc_url
        remote = RemoteRecognizer(url, protocol=protocol, timeout_s=10,
                                  retries=int(deadline_s / retry_delay_s) if builtin else 0, retry_delay_s=retry_delay_s)
        barrier.wait()
        for i, faces in enumerate(requests[c]):
            t_end = time.monotonic() + deadline_s
            failed = False
            while True:
                try:
                    logits = remote.predict_logits(remote.prepare(faces))
                except FsrferError as exc:  # ServerUnavailable expected; anything else is recorded too
                    with lock:
                        errors.append((type(exc).__name__, str(exc), time.monotonic() - times.get("kill", 0.0)))
                    errors_per_client[c] += 1
                    failed = True
                    if time.monotonic() > t_end:
                        remote.close()
                        return
                    time.sleep(retry_delay_s)
                    continue
                break
            checker.check(c, i, logits)
            answered[c] += 1
            requests_retried[c] += int(failed)
            if first_ok_after_restart[c] is None and killed.is_set():
                first_ok_after_restart[c] = time.monotonic() - times["kill"]
            if not restarted.is_set():
                time.sleep(pace_s)  # spread the requests over the kill and the restart
        remote.close()

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    time.sleep(kill_after_s)
    times["kill"] = time.monotonic()
    server.kill()
    killed.set()
    log.info("server killed; restarting")
    t0 = time.monotonic()
    server.start()
    times["ready"] = time.monotonic()
    restarted.set()
    restart_s = times["ready"] - t0
    for t in threads:
        t.join()
    by_kind = collections.Counter((t, _shorten(m)) for t, m, _ in errors)
    recovered = [x for x in first_ok_after_restart if x is not None]
    return {
        "clients": n, "requests_per_client": len(requests[0]),
        "clients_http": n // 2, "clients_grpc": n - n // 2,
        "clients_with_builtin_retries": (n + 1) // 2,
        "server_restart_s": round(restart_s, 2),
        "requests_answered": sum(answered), "requests_total": sum(len(r) for r in requests),
        "lost": sum(len(r) for r in requests) - sum(answered), "wrong": checker.wrong,
        "max_abs_logit_diff": checker.max_abs_diff,
        "client_errors_total": len(errors),
        "client_errors_seen_with_builtin_retries": sum(errors_per_client[c] for c in range(n) if c % 2 == 0),
        "client_errors_seen_without_retries": sum(errors_per_client[c] for c in range(n) if c % 2 == 1),
        "requests_retried_by_the_app": sum(requests_retried),
        "client_errors": [{"type": t, "message": m, "count": k} for (t, m), k in by_kind.most_common()],
        "first_answer_after_kill_s": {"min": round(min(recovered), 2), "max": round(max(recovered), 2)}
        if recovered else None,
    }


def _shorten(message: str) -> str:
    """Group messages that differ only by port."""
    import re

    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", message)[:300]


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/load_test.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="model (default: the shipped default model)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=40, help="requests per client (default 40)")
    p.add_argument("--batch", type=int, default=8, help="faces per request (default 8)")
    p.add_argument("--kill-requests", type=int, default=40, help="requests per client in the kill phase")
    p.add_argument("--atol", type=float, default=1e-4, help="largest allowed |logit difference| vs in-process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--server-args", default="", help="extra fsrfer-serve options, e.g. '--max-queue-delay-us 500'")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "serving" / "load_test.json")
    args = p.parse_args(argv)
    # before the server starts (a minute of load): a count of 0 failed part-way, a negative --atol marked every
    # answer wrong, an --out that cannot be written failed at the end
    if min(args.clients, args.requests, args.batch, args.kill_requests) < 1 or not args.atol >= 0:
        p.error(f"--clients {args.clients}, --requests {args.requests}, --batch {args.batch}, --kill-requests "
                f"{args.kill_requests}, --atol {args.atol}; expected counts >= 1 and a tolerance >= 0")
    try:
        check_output_path(args.out, "--out", json_output=True)
    except InputError as exc:
        p.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    model = resolve_model_path(args.model)
    requests = make_requests(args.clients, args.requests, args.batch, args.seed)
    kill_requests = make_requests(args.clients, args.kill_requests, args.batch, args.seed + 1)
    result: dict[str, Any] = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {"file": str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else str(model),
                  "sha256": sha256_file(model)},
        "machine": {"cpu_count": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                    "platform": platform.platform(), "python": platform.python_version(),
                    "note": "CPU only; server and clients on one machine (see load_average_at_start)"},
        "versions": {k: _version(k) for k in ("nvidia-pytriton", "tritonclient", "onnxruntime", "numpy")},
        "server": {"python": serve_python(), "numpy": _server_numpy(), "args": args.server_args.split(),
                   "host": "127.0.0.1"},
        "seed": args.seed, "atol": args.atol,
    }
    with Recognizer(model) as rec:
        # In-process reference answers (sequential), then the concurrent in-process baseline.
        reference = [[rec.predict_logits(rec.prepare(f)) for f in reqs] for reqs in requests]
        kill_reference = [[rec.predict_logits(rec.prepare(f)) for f in reqs] for reqs in kill_requests]
        log.info("in-process: %d threads x %d requests x %d faces", args.clients, args.requests, args.batch)

        result["in_process"] = run_clients(lambda c: rec, requests, lambda r, f: r.predict_logits(r.prepare(f)),
                                           Checker(reference, args.atol), close_clients=False)
        result["in_process"]["backend"] = f"{rec.backend.name} {list(rec.backend.providers)}, one shared Recognizer"
    with ServerProcess(model, args=args.server_args.split()) as server:
        for protocol in ("http", "grpc"):
            url = server.http_url if protocol == "http" else server.grpc_url
            log.info("served over %s: %d clients x %d requests", protocol, args.clients, args.requests)
            result[f"served_{protocol}"] = run_clients(
                lambda c, u=url, pr=protocol: RemoteRecognizer(u, protocol=pr, timeout_s=60), requests,
                lambda r, f: r.predict_logits(r.prepare(f)), Checker(reference, args.atol))
        log.info("kill/restart phase")
        result["kill_restart"] = kill_restart_phase(server, kill_requests, Checker(kill_reference, args.atol),
                                                    kill_after_s=1.0, retry_delay_s=0.2, deadline_s=120.0, pace_s=0.05)
    ok = all(result[k]["lost"] == 0 and result[k]["wrong"] == 0
             for k in ("in_process", "served_http", "served_grpc", "kill_restart"))
    result["passed"] = ok
    write_json(args.out, result)
    log.info("wrote %s (passed=%s)", args.out, ok)
    for k in ("in_process", "served_http", "served_grpc"):
        r = result[k]
        print(f"{k:<12} {r['throughput_faces_per_s']:>8.1f} faces/s  p50 {r['latency']['p50_ms']:>7.2f} ms  "
              f"p99 {r['latency']['p99_ms']:>7.2f} ms  lost {r['lost']}  wrong {r['wrong']}")
    kr = result["kill_restart"]
    print(f"kill/restart: restart {kr['server_restart_s']} s, {kr['client_errors_total']} client errors, "
          f"lost {kr['lost']}, wrong {kr['wrong']}")
    return 0 if ok else 1


def _server_numpy() -> str:
    """numpy version in the server's Python (PyTriton 0.7 needs numpy<2 there; clients may have 2)."""
    import subprocess

    out = subprocess.run([serve_python(), "-c", "import numpy; print(numpy.__version__)"], capture_output=True,
                         text=True, check=False)
    return out.stdout.strip() or f"unknown ({out.stderr.strip()[-200:]})"


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
