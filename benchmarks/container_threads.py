"""Recognizer latency under a container's CPU quota: ONNX Runtime's host-sized thread pool against the new default.

    python benchmarks/container_threads.py --out benchmarks/results/container_threads.json

A container's CPU limit (``docker --cpus``, Kubernetes ``limits.cpu``) is a cgroup CPU quota that ONNX Runtime
does not see: left to itself it runs one intra-op thread per physical core of the host, and the kernel throttles
them all once the quota is spent. ``Recognizer(threads=None)`` now gives a process restricted by a quota or CPU set
``usable_cpus()`` threads instead (``onnxruntime_backend.default_threads``).

For each quota Q (``--quotas``, CPUs) a cgroup v1 cpu folder with that quota is made (root on a cgroup v1 machine;
removed afterwards, also on failure) and each variant runs in its own process that joins it before importing
ONNX Runtime: ``ort_default`` (today's behaviour, forced by passing ONNX Runtime's own default explicitly, the
machine's core count), ``new_default`` (``threads=None``), and ``host_N_threads`` (``--host-threads``: the pool ONNX
Runtime's default would make on an N-core host, a stand-in for the large host this machine is not). Each process
times ``Recognizer.predict`` on the shipped model at batch 1 and batch 64; the variants run in ``--rounds``
interleaved rounds with a rotating order. Reported: each process's median and slowest call, their medians over
rounds, and per-round ratios of each variant's over ``new_default``'s (above 1: the new default is faster).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000
BATCHES = (1, 64)


def child(group: str, threads: int, iters1: int, iters64: int, warmup: int) -> dict[str, Any]:
    """Join the cgroup, then build a Recognizer and time predict (runs in its own process)."""
    Path(group, "cgroup.procs").write_text(str(os.getpid()))  # before ONNX Runtime makes any thread
    import numpy as np

    from fsrfer_edge import Recognizer
    from fsrfer_edge import cpus
    from fsrfer_edge.backends import onnxruntime_backend as ob

    rec = Recognizer(backend="onnxruntime", providers="cpu", threads=threads or None)
    faces = np.random.default_rng(0).integers(0, 256, (64, 48, 48), dtype=np.uint8)
    out: dict[str, Any] = {"usable_cpus": cpus.usable_cpus(), "cpu_quota": cpus.cpu_quota(),
                           "intra_op_threads": threads or ob.default_threads() or "onnxruntime's default"}
    for batch, iters in ((1, iters1), (64, iters64)):
        x = faces[:batch]
        for _ in range(warmup):
            rec.predict(x)
        ms = []
        for _ in range(iters):
            t = time.perf_counter()
            rec.predict(x)
            ms.append((time.perf_counter() - t) * 1e3)
        out[str(batch)] = {"p50_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms)}
    rec.close()
    return out


def run_child(group: Path, threads: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(group), "--child-threads", str(threads),
           "--iters1", str(args.iters1), "--iters64", str(args.iters64), "--warmup", str(args.warmup)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"variant threads={threads} failed: {done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_group(quota: float) -> Path:
    group = CGROUP_CPU / f"fsrfer-bench-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(int(round(quota * PERIOD_US))))
    except BaseException:
        group.rmdir()
        raise
    return group


def measure(args: argparse.Namespace) -> dict[str, Any]:
    host = os.cpu_count() or 1
    variants = {"ort_default": host, "new_default": 0, f"host_{args.host_threads}_threads": args.host_threads}
    results: dict[str, Any] = {}
    for quota in args.quotas:
        group = make_group(quota)
        try:
            rounds = []
            names = list(variants)
            for r in range(args.rounds):
                k = r % len(names)
                rec: dict[str, Any] = {"round": r + 1, "loadavg_start": list(os.getloadavg())}
                for name in names[k:] + names[:k]:
                    rec[name] = run_child(group, variants[name], args)
                rounds.append(rec)
                print(f"quota {quota}: round {r + 1}/{args.rounds}: " + ", ".join(
                    f"{n} b1 {rec[n]['1']['p50_ms']:.2f} ms b64 {rec[n]['64']['p50_ms']:.1f} ms" for n in names),
                    flush=True)
        finally:
            group.rmdir()
        results[str(quota)] = {"rounds": rounds, **summarize(rounds, names)}
    return {"variants": {n: (t or "None (threads left out)") for n, t in variants.items()}, "quotas": results}


def _ratios(rounds: list[dict[str, Any]], names: Sequence[str], stat: str) -> dict[str, dict[str, Any]]:
    """Per variant (but new_default) and batch: its ``stat`` over new_default's, median and range of rounds."""
    out: dict[str, dict[str, Any]] = {}
    for n in names:
        if n == "new_default":
            continue
        out[n] = {}
        for b in BATCHES:
            per = [r[n][str(b)][stat] / r["new_default"][str(b)][stat] for r in rounds]
            out[n][str(b)] = {"median_of_rounds": round(statistics.median(per), 3),
                              "range": [round(min(per), 3), round(max(per), 3)]}
    return out


def _verdict(lo: float, hi: float) -> str:
    return ("the new default lower in every round" if lo > 1.05 else
            "the new default higher in every round" if hi < 0.95 else
            "within noise (the rounds disagree or differ by under 5%)")


def summarize(rounds: list[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Medians over rounds of each process's median and slowest call, their ratios to new_default's, and a
    one-line reading of each ratio (a throttled pool shows in the slowest call: a call that meets the end of
    the quota waits for the next period, while most calls may still run at the pool's speed)."""
    med = {stat: {n: {str(b): round(statistics.median(r[n][str(b)][stat] for r in rounds), 3) for b in BATCHES}
                  for n in names} for stat in ("p50_ms", "max_ms")}
    ratios = {"p50_ms": _ratios(rounds, names, "p50_ms"), "max_ms": _ratios(rounds, names, "max_ms")}
    reading = []
    for n in ratios["p50_ms"]:
        for size in ratios["p50_ms"][n]:
            p50, worst = ratios["p50_ms"][n][size], ratios["max_ms"][n][size]
            reading.append(f"{n} vs new_default, batch {size}: median call {p50['median_of_rounds']:.2f}x, "
                           f"{_verdict(*p50['range'])}; slowest call {worst['median_of_rounds']:.2f}x, "
                           f"{_verdict(*worst['range'])}")
    seen = {n: {k: rounds[0][n][k] for k in ("usable_cpus", "cpu_quota", "intra_op_threads")} for n in names}
    return {"median_p50_ms": med["p50_ms"], "median_max_ms": med["max_ms"],
            "p50_over_new_default": ratios["p50_ms"], "max_over_new_default": ratios["max_ms"],
            "reading": reading, "in_the_child": seen}


def resummarize(path: Path, note: str, argv: Sequence[str]) -> Path:
    """Recompute the summaries of a result file from the rounds it holds (no new measurement)."""
    from fsrfer_edge.fileio import write_json

    doc = json.loads(path.read_text())
    for q in doc["quotas"].values():
        rounds = q["rounds"]
        names = [k for k in rounds[0] if k not in ("round", "loadavg_start")]
        q.clear()
        q.update({"rounds": rounds, **summarize(rounds, names)})
    if note:
        doc["note"] = note
    doc["resummarized"] = " ".join(["python benchmarks/container_threads.py", *(shlex.quote(a) for a in argv)])
    return write_json(path, doc, default=str)


def build_parser() -> argparse.ArgumentParser:
    from fsrfer_edge.errors import CliParser

    p = CliParser(prog="benchmarks/container_threads.py", description=__doc__.split("\n\n")[0].strip())
    p.add_argument("--quotas", type=lambda s: [float(v) for v in s.split(",")], default=[1.0, 0.5],
                   metavar="Q,Q,...", help="CPU quotas to run under, in CPUs (default: 1,0.5)")
    p.add_argument("--host-threads", type=int, default=8,
                   help="threads of the stand-in for ONNX Runtime's default on a larger host (default: 8)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters1", type=int, default=40, help="timed calls at batch 1 per process")
    p.add_argument("--iters64", type=int, default=6, help="timed calls at batch 64 per process")
    p.add_argument("--note", default="", help="recorded in the result file as it is")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "container_threads.json")
    p.add_argument("--from-json", type=Path, default=None, metavar="FILE",
                   help="recompute the summaries of a result file from its rounds (no new measurement); "
                        "--note, if given, replaces its note")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-threads", type=int, default=0, help=argparse.SUPPRESS)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.iters1 < 1 or args.iters64 < 1 or args.warmup < 0 or args.host_threads < 1:
        # before any cgroup is made (no rounds failed only at the end, after the work)
        ap.error(f"--rounds {args.rounds}, --iters1 {args.iters1}, --iters64 {args.iters64}, --warmup {args.warmup}, "
                 f"--host-threads {args.host_threads}; expected rounds, iters1, iters64, host-threads >= 1 and "
                 "warmup >= 0")
    if args.child:
        print(json.dumps(child(args.child, args.child_threads, args.iters1, args.iters64, args.warmup)))
        return 0
    if args.from_json is not None:
        print(f"wrote {resummarize(args.from_json, args.note, argv)}")
        return 0
    if not os.access(CGROUP_CPU, os.W_OK):
        print(f"container_threads: error: {CGROUP_CPU} is not writable; expected root on a cgroup v1 machine",
              file=sys.stderr)
        return 2
    importlib.import_module("onnxruntime")  # loaded, so that machine_info records its version

    from fsrfer_edge.bench import machine_info
    from fsrfer_edge.fileio import write_json

    started = time.time()
    load_before = list(os.getloadavg())
    doc = {"command": " ".join(["python benchmarks/container_threads.py", *(shlex.quote(a) for a in argv)]),
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "note": args.note,
           "model": "fsrfer_edge/models/default.onnx (the shipped FP32 model)",
           "timer": "Recognizer.predict, perf_counter per call, median per process; one process per variant, "
                    "quota and round, joined to the quota's cgroup (v1 cpu.cfs_quota_us, period "
                    f"{PERIOD_US} us) before importing ONNX Runtime",
           "settings": {"quotas": args.quotas, "rounds": args.rounds, "warmup": args.warmup,
                        "iters": {"1": args.iters1, "64": args.iters64}},
           "machine": machine_info(), "load_average": {"before": load_before}, **measure(args)}
    doc["load_average"]["after"] = list(os.getloadavg())
    doc["seconds"] = round(time.time() - started, 1)
    out = write_json(args.out, doc, default=str)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
