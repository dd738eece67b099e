"""The SDK's preparation of crops at the model's input size, before and after the bilinear pre-check asked for a dip
(docs/experiments.md, "A pre-check with a dip"): milliseconds per ``Recognizer.prepare`` and per
``preprocessing.any_linear_enlarging`` call on batches of ``--batch`` uint8 crops, at a git revision (``--before``,
checked out into a temporary worktree) and in this checkout, each in its own process, in ``--rounds`` interleaved
rounds with a rotating order, the 1-minute load average recorded at each round's start.

    python benchmarks/linear_precheck.py --before 88a3ff6 --out benchmarks/results/linear_precheck.json

Batches: FER+ val faces as they are (48 px), and the same faces shrunk by 2, 4 and 8 with area averaging and
enlarged back to 48 px by OpenCV's bicubic, Lanczos-4 and bilinear interpolation (what an app that resizes faces to
the model's input size hands over). The shipped model's time for one batch (``predict_logits``, this checkout's
process) is recorded for scale. Absolute times on a shared CPU vary between hours; the ratios of medians within
the same rounds much less.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
KINDS = {"bicubic": "INTER_CUBIC", "lanczos": "INTER_LANCZOS4", "bilinear": "INTER_LINEAR"}
FACTORS = (2, 4, 8)


def batches(data: Path, n: int) -> dict[str, Any]:
    import cv2
    import numpy as np

    from fsrfer_edge.ferplus import load_labelled_faces

    faces = load_labelled_faces(data, "ferplus", "val").images[:n]
    out = {"as they are": np.ascontiguousarray(faces)}
    for f in FACTORS:
        small = [cv2.resize(im, (48 // f, 48 // f), interpolation=cv2.INTER_AREA) for im in faces]
        for kind, flag in KINDS.items():
            out[f"{kind} from x{f}"] = np.stack([cv2.resize(s, (48, 48), interpolation=getattr(cv2, flag))
                                                 for s in small])
    return out


def worker(src: Path, data: Path, n: int, repeats: int, threads: int, model_time: bool) -> dict[str, Any]:
    """Median milliseconds per call for each batch, with the ``fsrfer_edge`` of ``src``."""
    sys.path.insert(0, str(src))
    import numpy as np

    import fsrfer_edge
    from fsrfer_edge import Recognizer, preprocessing

    assert Path(fsrfer_edge.__file__).resolve().is_relative_to(src.resolve()), fsrfer_edge.__file__

    def ms(fn: Any) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1e3 * statistics.median(times)

    out: dict[str, Any] = {"prepare_ms": {}, "check_ms": {}}
    with Recognizer(threads=threads) as rec:
        for name, b in batches(data, n).items():
            pixels = np.ascontiguousarray(b[:, None])
            out["prepare_ms"][name] = ms(lambda: rec.prepare(b))
            out["check_ms"][name] = ms(lambda: preprocessing.any_linear_enlarging(pixels))
        if model_time:
            x = rec.prepare(b)
            out["model_ms"] = ms(lambda: rec.predict_logits(x))
    return out


def run_worker(src: Path, args: argparse.Namespace, model_time: bool) -> dict[str, Any]:
    # the worker runs in the temporary folder: a --data relative to the caller's folder is passed on absolute
    cmd = [sys.executable, __file__, "--worker", str(src), "--data", str(Path(args.data).absolute()),
           "--batch", str(args.batch), "--repeats", str(args.repeats), "--threads", str(args.threads)] + (
               ["--model-time"] if model_time else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise SystemExit(f"worker for {src} failed: {proc.stderr.strip()[-2000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="88a3ff6", help="git revision before the change (default 88a3ff6)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013.npz")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "linear_precheck.json")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--model-time", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # before the worktree (--rounds 0 raised IndexError at the end)
    if min(args.batch, args.rounds, args.repeats, args.threads) < 1:
        ap.error(f"--batch {args.batch}, --rounds {args.rounds}, --repeats {args.repeats}, --threads {args.threads}; "
                 "expected each >= 1")
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.batch, args.repeats, args.threads, args.model_time)))
        return 0
    if not args.data.is_file():
        raise SystemExit(f"--data {args.data} does not exist; expected the FER2013 archive (../shared/data)")
    from fsrfer_edge.bench import machine_info
    from fsrfer_edge.fileio import check_output_path, write_json

    check_output_path(args.out, "--out", json_output=True)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="fsrfer-precheck-") as tmp:
        before = Path(tmp) / "before"
        proc = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(before), args.before],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"--before {args.before}: git worktree add failed: {proc.stderr.strip()}")
        try:
            srcs = {"before": before, "after": REPO}
            for r in range(args.rounds):
                order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
                got: dict[str, Any] = {"load_1min": round(os.getloadavg()[0], 2), "order": order}
                for k in order:
                    got[k] = run_worker(srcs[k], args, model_time=k == "after")
                rounds.append(got)
                print(json.dumps({k: got[k]["prepare_ms"] for k in order}), flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before)],
                           capture_output=True, text=True)
    names = list(rounds[0]["after"]["prepare_ms"])
    summary: dict[str, Any] = {}
    model = statistics.median(r["after"]["model_ms"] for r in rounds)
    for name in names:
        row: dict[str, Any] = {}
        for what in ("prepare_ms", "check_ms"):
            b = statistics.median(r["before"][what][name] for r in rounds)
            a = statistics.median(r["after"][what][name] for r in rounds)
            ratios = [r["after"][what][name] / r["before"][what][name] for r in rounds]
            row[what] = {"before": round(b, 3), "after": round(a, 3), "after_over_before_median": round(
                statistics.median(ratios), 3), "per_round_range": [round(min(ratios), 3), round(max(ratios), 3)]}
        row["prepare_share_of_model_time"] = {"before": round(row["prepare_ms"]["before"] / model, 3),
                                              "after": round(row["prepare_ms"]["after"] / model, 3)}
        summary[name] = row
    doc = {"command": "python benchmarks/linear_precheck.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "before": args.before, "batch": args.batch, "rounds": args.rounds, "repeats": args.repeats,
           "threads": args.threads, "machine": machine_info(),
           "load_1min": [r["load_1min"] for r in rounds], "model_ms_batch_median": round(model, 3),
           "summary": summary, "raw_rounds": rounds}
    write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
