"""Where the time goes in the shipped model's FP32 and INT8 u8s8 files on ONNX Runtime's CPU provider:
the kernel time of each part of the fused graph (G's copied stages, FiLM, G's dense block, the factor
estimator, the frozen stem and stages, the head, layout and input conversion), from ONNX Runtime's own
profiler, and each part's INT8 speed-up. It says why the INT8 file is as much faster than FP32 as it is
(issue 12's edge budget asks for 3x; ``scripts/edge_budget.py`` measures the ratio itself).

    python benchmarks/int8_profile.py [--model fsrfer_edge/models/default.onnx] [--int8 FILE]
        [--data ../shared/data/fer2013.npz] [--out benchmarks/results/int8_profile.json]

Without ``--int8`` the INT8 u8s8 file is made here the way ``scripts/edge_budget.py`` makes it (calibrated
on FER+ train faces from ``--data``; G quantized). Each file is profiled in its own process (two ONNX
Runtime sessions in one process steal each other's cores), in interleaved rounds; per part, the median
over rounds of the mean kernel milliseconds per batch. The profiler's kernel times leave out the time
between kernels, so their sum is below the wall-clock latency; the shares are what this is for. Random
small-looking faces (``fsrfer_edge.bench.random_faces``: a routed graph times its slower path, G). The
load average is recorded beside the figures.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]

#: (part, node-name prefix) in the order they are tried; the exporter names nodes after the PyTorch modules.
PARTS = (
    ("FiLM (float)", "/generator/films."),
    ("G: copied stages", "/generator/stages."),
    ("G: adapters", "/generator/adapters."),
    ("G: dense block", "/generator/refine"),
    ("G: other", "/generator/"),
    ("factor estimator (float)", "/factor_estimator/"),
    ("frozen stem", "/stem/"),
    ("frozen stages above G", "/layers."),
    ("pool and head", "/head/"),
)
OTHER = "layout, input quantization, pooling"


def part_of(node: str) -> str:
    """The part of the graph an ONNX Runtime profiler node name belongs to (fused nodes keep their first name)."""
    from fsrfer_edge.export.quantize import module_path

    name = module_path(node[len("fused "):] if node.startswith("fused ") else node)  # wrapped graphs: /model/...
    for part, prefix in PARTS:
        if name.startswith(prefix):
            return part
    return OTHER


def aggregate(events: list[dict[str, Any]], runs: int) -> dict[str, float]:
    """Mean kernel milliseconds per run for each part, from an ONNX Runtime profile's events."""
    total: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            total[part_of(e["name"][:-len("_kernel_time")])] += float(e["dur"])
    return {k: v / runs / 1000.0 for k, v in total.items()}


def profile_one(model: Path, batch: int, threads: int, warmup: int, iters: int) -> dict[str, Any]:
    """Profile one file in this process: kernel ms per part, and the wall-clock median latency."""
    import time

    import numpy as np
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="fsrfer-prof-") as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        plain = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        inp = plain.get_inputs()[0]
        dtype = np.uint8 if "uint8" in inp.type else np.float32
        shape = [batch] + [d if isinstance(d, int) else 48 for d in inp.shape[1:]]
        # Small-looking faces (fsrfer-bench's): a routed graph sends random 48 px noise down its cheaper HR path.
        sys.path.insert(0, str(REPO))
        from fsrfer_edge.bench import random_faces
        from fsrfer_edge.export.onnx_export import read_model_info

        x = random_faces(shape[0], shape[-1]).reshape(shape)
        x = x.astype(dtype) if dtype == np.uint8 else read_model_info(model).preprocessing.normalize(x)
        for _ in range(warmup):
            plain.run(None, {inp.name: x})
        lat = []
        for _ in range(iters):
            t = time.perf_counter()
            plain.run(None, {inp.name: x})
            lat.append((time.perf_counter() - t) * 1000.0)
        del plain
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "prof")
        sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        for _ in range(warmup + iters):
            sess.run(None, {inp.name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    # count the timed runs only: kernels that start once the first timed run has begun
    runs = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    if len(runs) != warmup + iters:
        raise RuntimeError(f"the profile of {model} has {len(runs)} runs; expected {warmup + iters}")
    cutoff = runs[warmup] if warmup else runs[0]
    events = [e for e in events if e.get("ts", 0) >= cutoff]
    return {"kernel_ms": aggregate(events, iters), "p50_ms": statistics.median(lat)}


def profile_in_subprocess(model: Path, batch: int, threads: int, warmup: int, iters: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fsrfer-prof-") as tmp:
        out = Path(tmp) / "one.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--profile-one", str(model), "--batch", str(batch),
               "--threads", str(threads), "--warmup", str(warmup), "--iters", str(iters), "--out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"profiling {model} failed (exit {proc.returncode}): {last}")
        return json.loads(out.read_text())


def summarise(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per part: median over rounds of each file's kernel ms, its share of the file's kernel time, and the
    FP32/INT8 ratio; per file, the median wall-clock latency."""
    files = list(rounds[0])
    parts = sorted({p for r in rounds for f in files for p in r[f]["kernel_ms"]},
                   key=lambda p: -statistics.median(r["fp32"]["kernel_ms"].get(p, 0.0) for r in rounds))
    med = {f: {p: statistics.median(r[f]["kernel_ms"].get(p, 0.0) for r in rounds) for p in parts} for f in files}
    totals = {f: sum(med[f].values()) for f in files}
    table = []
    for p in parts:
        row: dict[str, Any] = {"part": p}
        for f in files:
            row[f"{f}_ms"] = round(med[f][p], 3)
            row[f"{f}_share"] = round(med[f][p] / totals[f], 4) if totals[f] else None
        row["speedup"] = round(med["fp32"][p] / med["int8"][p], 2) if med["int8"][p] > 0 else None
        table.append(row)
    wall = {f: statistics.median(r[f]["p50_ms"] for r in rounds) for f in files}
    return {"parts": table, "kernel_ms_total": {f: round(v, 3) for f, v in totals.items()},
            "kernel_speedup": round(totals["fp32"] / totals["int8"], 2),
            "wall_p50_ms": {f: round(v, 3) for f, v in wall.items()},
            "wall_speedup": round(wall["fp32"] / wall["int8"], 2)}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=REPO / "fsrfer_edge" / "models" / "default.onnx",
                    help="the FP32 file")
    ap.add_argument("--int8", type=Path, help="its INT8 u8s8 file (default: made here, as scripts/edge_budget.py does)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013.npz",
                    help="FER2013 npz whose FER+ train faces calibrate the INT8 file made here")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "int8_profile.json")
    ap.add_argument("--int8-quantize-film", action="store_true",
                    help="the INT8 file made here also quantizes FiLM's ops on the maps (fsrfer-export --int8-quantize-film)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile-one", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # before anything is made or profiled (no rounds failed only at the end, after the work)
    if args.rounds < 1 or args.iters < 1 or args.warmup < 0 or args.batch < 1 or args.threads < 1:
        ap.error(f"--rounds {args.rounds}, --iters {args.iters}, --warmup {args.warmup}, --batch {args.batch}, "
                 f"--threads {args.threads}; expected rounds, iters, batch, threads >= 1 and warmup >= 0")
    sys.path.insert(0, str(REPO))
    from fsrfer_edge.errors import DataError, ModelError
    from fsrfer_edge.fileio import write_json

    sys.path.insert(0, str(REPO / "scripts"))
    import edge_budget  # its loadavg and make_int8

    if args.profile_one is not None:
        write_json(args.out, profile_one(args.profile_one, args.batch, args.threads, args.warmup, args.iters))
        return 0
    if not args.model.is_file():
        raise ModelError(f"--model {args.model} does not exist; expected an FP32 fsrfer ONNX file")
    with tempfile.TemporaryDirectory(prefix="fsrfer-prof-int8-") as tmp:
        int8, made = args.int8, None
        if int8 is None:
            if not args.data.is_file():
                raise DataError(f"--data {args.data} does not exist: it calibrates the INT8 file; "
                                "pass --int8 FILE or the FER2013 npz (see ../shared/data/README)")
            int8 = Path(tmp) / "int8-u8s8.onnx"
            made = edge_budget.make_int8(args.model, int8, args.data, None, 512, "percentile", None,
                                         quantize_film=args.int8_quantize_film)
        elif not int8.is_file():
            raise ModelError(f"--int8 {int8} does not exist; expected an INT8 u8s8 fsrfer ONNX file")
        files = {"fp32": args.model, "int8": int8}
        rounds = []
        load_start = edge_budget.loadavg()
        for r in range(args.rounds):
            order = list(files) if r % 2 == 0 else list(files)[::-1]
            rounds.append({f: profile_in_subprocess(files[f], args.batch, args.threads, args.warmup, args.iters)
                           for f in order})
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{f} p50 {rounds[-1][f]['p50_ms']:.1f} ms" for f in files), flush=True)
    doc = {"command": "python " + " ".join([str(Path(__file__).relative_to(REPO))] + list(argv if argv is not None
                                                                                         else sys.argv[1:])),
           "model": edge_budget._show(args.model),
           "int8": ("(made here: scripts/edge_budget.make_int8, G quantized when it starts early"
                    + (", FiLM's ops on the maps quantized: the 'FiLM (float)' part runs in INT8)" if args.int8_quantize_film else ")")
                    if made else edge_budget._show(int8)),
           "settings": {"batch": args.batch, "threads": args.threads, "warmup": args.warmup, "iters": args.iters,
                        "rounds": args.rounds, "backend": "onnxruntime CPUExecutionProvider",
                        "timer": "ONNX Runtime profiler kernel times, one process per file per round"},
           "load_average": {"start": load_start, "end": edge_budget.loadavg()}, "cpu_count": os.cpu_count(),
           **summarise(rounds)}
    write_json(args.out, doc)
    for row in doc["parts"]:
        print(f"{row['part']:38s} fp32 {row['fp32_ms']:8.2f} ms ({100 * (row['fp32_share'] or 0):4.1f}%)  "
              f"int8 {row['int8_ms']:8.2f} ms ({100 * (row['int8_share'] or 0):4.1f}%)  x{row['speedup']}")
    print(f"kernel time: x{doc['kernel_speedup']}; wall-clock p50: x{doc['wall_speedup']}; load {doc['load_average']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
