"""Is HR-face augmentation cheap beside the training step it feeds? Times trainer.degrade.augment_hr on a
stage-1 batch (plain, and with the rotation/zoom of configs/ferplus_soft_aug.yaml) against one stage-1
optimizer step (forward, backward, SGD) of the shipped backbone on the same batch, in one process, in
interleaved rounds, and writes the ratio: absolute times on a shared CPU vary several-fold between hours,
the ratio much less.

    python benchmarks/augment_speed.py [--out benchmarks/results/augment_speed.json] [--max-ratio 0.1]

Exit status 1 when an augmentation's median time exceeds --max-ratio of the step's median time.
Random faces (the timings do not depend on content), so no data is needed. Needs torch (the trainer).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "augment_speed.json"))
    ap.add_argument("--batch", type=int, default=64, help="faces per batch (stage1.batch_size of the configs)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--backbone", default="resnet18_half")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-ratio", type=float, default=0.1,
                    help="largest allowed augmentation time as a fraction of one training step")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.rounds < 3:
        raise SystemExit("--batch must be >= 1 and --rounds >= 3")

    import torch
    from torch import nn

    from fsrfer_edge.fileio import write_json
    from trainer.degrade import augment_hr
    from trainer.models import FERNet

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, size=(args.batch, 48, 48), dtype=np.uint8)
    labels = torch.as_tensor(rng.integers(0, 7, size=args.batch))
    model = FERNet(args.backbone)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    ce = nn.CrossEntropyLoss()

    def step() -> None:
        x = torch.as_tensor(faces, dtype=torch.float32).unsqueeze(1) / 255.0
        opt.zero_grad()
        ce(model(x), labels).backward()
        opt.step()

    variants: dict[str, Callable[[], object]] = {
        "training step": step,
        "augment_hr": lambda: augment_hr(faces, rng),
        "augment_hr rotate 15 scale 0.15": lambda: augment_hr(faces, rng, rotate=15.0, scale=0.15),
    }
    for fn in variants.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            times[name].append(_timed(fn))
    med = {k: float(np.median(v)) for k, v in times.items()}
    step_s = med["training step"]
    rows = {k: {"median_ms": round(1e3 * v, 3), "ratio_to_step": round(v / step_s, 4)} for k, v in med.items()}
    failed = [k for k, r in rows.items() if k != "training step" and r["ratio_to_step"] > args.max_ratio]
    doc = {
        "command": shlex.join(["python", "benchmarks/augment_speed.py", *(sys.argv[1:] if argv is None else argv)]),
        "batch": args.batch, "rounds": args.rounds, "backbone": args.backbone, "threads": args.threads,
        "max_ratio": args.max_ratio, "load_average": [round(x, 2) for x in os.getloadavg()],
        "timings": rows, "passed": not failed,
    }
    write_json(args.out, doc)
    for k, r in rows.items():
        print(f"{k:34s} {r['median_ms']:9.2f} ms  {r['ratio_to_step']:.3f} of a step")
    if failed:
        print(f"too slow (over {args.max_ratio} of a training step): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
