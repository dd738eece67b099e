"""One ONNX Runtime session with two threads against two single-thread sessions that split each batch.

    python benchmarks/sessions.py --out benchmarks/results/sessions.json

``Recognizer(threads=2)`` runs a batch on one session whose two intra-op threads meet after every op;
``Recognizer(sessions=2)`` splits the batch between two sessions of one thread each and runs the halves at once.
For the shipped FP32 file and its INT8 u8s8 file (made as ``scripts/edge_budget.py`` makes it), each
configuration is timed by ``fsrfer-bench`` in its own process at batch sizes 1, 8 and 64 (``--batch-sizes``),
in ``--rounds`` interleaved rounds with a rotating order, the load average beside every timing. Reported:
faces/s per file, configuration and batch size (medians over rounds), the per-round ratio of the two
configurations, and each configuration's INT8-over-FP32 ratio.

The rule, written before the first run: ``sessions=2`` becomes the README's advice for batch throughput on a
CPU if, at batch 64, it gives more faces/s than one two-thread session for both files (median of the
per-round ratios above 1); the default stays one session either way (a lone face runs on one thread, and each
session holds its own weights), and the edge-budget target stays read with one two-thread session.
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import edge_budget  # noqa: E402  (scripts/edge_budget.py: INT8 as it makes it, check_timing_args, loadavg)

from fsrfer_edge.bench import machine_info, parse_int_list  # noqa: E402
from fsrfer_edge.errors import CliParser, FsrferError, one_line  # noqa: E402
from fsrfer_edge.recognizer import DEFAULT_MODEL  # noqa: E402

#: name -> (threads per session, sessions)
CONFIGS = {"one_session_2_threads": (2, 1), "two_sessions_1_thread": (1, 2)}
#: (model, threads, sessions, batch sizes, warmup, iters) -> {batch: {"throughput_fps", "p50_ms", ...}}
Timer = Callable[[Path, int, int, Sequence[int], int, int], "dict[int, dict[str, Any]]"]


def bench_in_subprocess(model: Path, threads: int, sessions: int, batches: Sequence[int], warmup: int,
                        iters: int) -> dict[int, dict[str, Any]]:
    """Per batch size, ``fsrfer-bench``'s latency row in a fresh process (edge_budget.bench_in_subprocess)."""
    doc = edge_budget.bench_in_subprocess(model, batches, threads, warmup, iters, sessions)
    load = doc["load_average"]["before"]
    return {int(r["batch_size"]): {"throughput_fps": float(r["throughput_fps"]), "p50_ms": float(r["p50_ms"]),
                                   "load_before": load} for r in doc["latency"]}


def measure(files: dict[str, Path], rounds: int, batches: Sequence[int], warmup: int, iters: int,
            timer: Timer = bench_in_subprocess) -> list[dict[str, Any]]:
    """Every (file, configuration) once per round, each in its own process, in an order rotated each round."""
    jobs = [(f, c) for f in files for c in CONFIGS]
    out = []
    for r in range(rounds):
        k = r % len(jobs)
        rec: dict[str, Any] = {"round": r + 1, "loadavg_start": edge_budget.loadavg()}
        for f, c in jobs[k:] + jobs[:k]:
            threads, sessions = CONFIGS[c]
            rec[f"{f}/{c}"] = timer(files[f], threads, sessions, batches, warmup, iters)
        out.append(rec)
        print(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{key} {rec[key][max(batches)]['throughput_fps']:.0f}" for key in sorted(rec) if "/" in key), flush=True)
    return out


def summarize(rounds: list[dict[str, Any]], files: Sequence[str], batches: Sequence[int]) -> dict[str, Any]:
    """Medians of faces/s per file, configuration and batch; per-round ratios of the two configurations and
    of INT8 over FP32 in each configuration; the rule's verdict at the largest batch."""
    a, b = CONFIGS
    med = {f"{f}/{c}": {str(n): round(statistics.median(r[f"{f}/{c}"][n]["throughput_fps"] for r in rounds), 1)
                        for n in batches} for f in files for c in CONFIGS}

    def ratio(num: str, den: str, n: int) -> dict[str, Any]:
        per = [r[num][n]["throughput_fps"] / r[den][n]["throughput_fps"] for r in rounds]
        return {"median_of_rounds": round(statistics.median(per), 3), "per_round": [round(v, 3) for v in per]}

    sessions_vs_threads = {f: {str(n): ratio(f"{f}/{b}", f"{f}/{a}", n) for n in batches} for f in files}
    int8_vs_fp32 = ({c: {str(n): ratio(f"int8/{c}", f"fp32/{c}", n) for n in batches} for c in CONFIGS}
                    if {"fp32", "int8"} <= set(files) else {})
    top = str(max(batches))
    return {"median_fps": med, f"{b}_vs_{a}": sessions_vs_threads, "int8_vs_fp32": int8_vs_fp32,
            "rule": f"{b} advised for batch throughput if its median per-round ratio over {a} at batch {top} "
                    "is above 1 for every file",
            "advised": all(sessions_vs_threads[f][top]["median_of_rounds"] > 1 for f in files)}


def run(args: argparse.Namespace, argv: Sequence[str], timer: Timer = bench_in_subprocess) -> dict[str, Any]:
    edge_budget.check_timing_args(argparse.Namespace(rounds=args.rounds, iters=args.iters, warmup=args.warmup,
                                                     batch=min(args.batch_sizes), threads=1))
    model = edge_budget.check_model(args.model, "--model", "fp32")
    data = edge_budget.calibration_data(Path(args.data))
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="fsrfer-sessions-") as tmp:
        files = {"fp32": args.model, "int8": Path(tmp) / "int8-u8s8.onnx"}
        made = edge_budget.make_int8(args.model, files["int8"], data, None, edge_budget.CALIB_SIZE,
                                     edge_budget.CALIB_METHOD, None)
        rounds = measure(files, args.rounds, args.batch_sizes, args.warmup, args.iters, timer)
    return {"command": " ".join(["python benchmarks/sessions.py", *(shlex.quote(a) for a in argv)]),
            "note": args.note, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "model": model, "int8": made, "configs": {c: {"threads": t, "sessions": s} for c, (t, s) in CONFIGS.items()},
            "settings": {"batch_sizes": list(args.batch_sizes), "rounds": args.rounds, "warmup": args.warmup,
                         "iters": args.iters, "timer": "fsrfer-bench, one process per file and configuration per round"},
            "machine": machine_info(), "rounds": rounds, **summarize(rounds, list(files), args.batch_sizes)}


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="benchmarks/sessions.py", description=__doc__.split("\n\n")[0].strip())
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="FP32 fsrfer ONNX file (default: the shipped one)")
    p.add_argument("--data", default=str(edge_budget.DEFAULT_DATA), help="fer2013.npz (INT8 calibration faces)")
    p.add_argument("--batch-sizes", type=parse_int_list, default=[1, 8, 64], metavar="B,B,...",
                   help="batch sizes timed in each process (default: 1,8,64)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default: 7)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--note", default="", help="recorded in the result file as it is")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "sessions.json")
    return p


def main(argv: Optional[Sequence[str]] = None, timer: Timer = bench_in_subprocess) -> int:
    """Entry point; 0 when measured (whatever the rule's verdict; see the JSON), 2 on an error."""
    from fsrfer_edge.fileio import check_output_path, write_json

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        check_output_path(args.out, "--out", json_output=True)
        doc = run(args, argv, timer)
        out = write_json(args.out, doc, default=str)
    except FsrferError as exc:
        print(f"sessions: error: {one_line(exc)}", file=sys.stderr)
        return 2
    top = str(max(args.batch_sizes))
    ratio = doc[f"{list(CONFIGS)[1]}_vs_{list(CONFIGS)[0]}"]
    print(f"batch {top}: two 1-thread sessions / one 2-thread session: "
          + ", ".join(f"{f} {ratio[f][top]['median_of_rounds']:.2f}x" for f in ratio)
          + "; INT8/FP32: " + ", ".join(f"{c} {doc['int8_vs_fp32'][c][top]['median_of_rounds']:.2f}x" for c in CONFIGS)
          + f"; advised: {doc['advised']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
