"""Stage 2's GAN step before and after it ran G once per step: milliseconds per ``trainer.train.Stage2Step``
call at a git revision (``--before``, checked out into a temporary worktree) and in this checkout, each in its
own process, in interleaved rounds, on the shipped configuration's shapes (its config: backbone, G from the
stem to layer3, scale-aware, G's BatchNorm training, batch 64, its loss terms). Random faces and weights: the
time of a step does not depend on them. The step alone, not the batch it is fed (degradation and the frozen
trunk's forward passes), which the change leaves as it was.

    python benchmarks/stage2_step.py --before cbdaa00 --out benchmarks/results/stage2_step.json

Absolute times on this shared CPU vary several-fold between hours; the ratio of the medians, measured in the
same rounds, much less. The load average before and after is recorded.
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
CONFIG = "configs/ferplus_soft_aug_early_g_stem_camera_6ep_bn_lrg_rec3000.yaml"


def worker(src: Path, config: Path, steps: int, warmup: int, threads: int) -> dict[str, Any]:
    """Median seconds of ``steps`` calls of the Stage2Step of the trainer in ``src`` (after ``warmup``)."""
    sys.path.insert(0, str(src))
    import torch

    from trainer import config as cfg_mod
    from trainer import train
    from trainer.models import InferenceModel, LevelHead, SpatialFeatureCritic

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = cfg_mod.load(config)
    s2 = cfg.stage2
    model = InferenceModel(train.spec_for(cfg, "fsrfer"))
    g = model.generator
    g.init_from(model.fer.trunk)
    fer = model.fer.eval().requires_grad_(False)
    c, h = train._map_shape(fer.trunk, model.level)
    d = SpatialFeatureCritic(c, hidden=64, size=h)
    step = train.Stage2Step(LevelHead(fer, model.level), g, d, s2.losses,
                            torch.optim.Adam(g.parameters(), lr=s2.lr_g, betas=(0.0, 0.9)),
                            torch.optim.Adam(d.parameters(), lr=s2.lr_d, betas=(0.0, 0.9)))
    n = s2.batch_size
    factors = torch.tensor([1, 2, 3, 4, 6, 8] * (n // 6 + 1))[:n]
    x_hr = torch.randn(n, 1, 48, 48)
    x_lr = torch.stack([torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x[None], int(f)), size=48,
                                                        mode="bilinear")[0] for x, f in zip(x_hr, factors)])
    with torch.no_grad():
        f_lr, f_hr = fer.trunk.forward_to(x_lr, model.start), fer.trunk.forward_to(x_hr, model.level)
    labels = torch.randint(0, 7, (n,))
    step.factor = factors.float() if s2.scale_aware else None
    g.train()
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        step(f_lr, f_hr, labels)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "steps": steps}


def run_worker(src: Path, config: Path, steps: int, warmup: int, threads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fsrfer-s2step-") as tmp:
        out = Path(tmp) / "one.json"
        # each worker runs in its own source tree: a --config relative to the caller's folder is passed on absolute
        # (else the "before" worker would read the config of the older revision, or none)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(src),
               "--config", str(Path(config).absolute()), "--steps", str(steps), "--warmup", str(warmup),
               "--threads", str(threads), "--out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=str(src))
        if proc.returncode != 0 or not out.is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the step of {src} failed (exit {proc.returncode}): {last}")
        return json.loads(out.read_text())


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="cbdaa00", help="git revision of the two-forward step (default cbdaa00)")
    ap.add_argument("--config", type=Path, default=REPO / CONFIG)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "stage2_step.json")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.steps < 1 or args.rounds < 1 or args.warmup < 0:
        raise SystemExit("--steps and --rounds must be >= 1, --warmup >= 0")
    if args.worker is not None:
        doc = worker(args.worker, args.config, args.steps, args.warmup, args.threads)
        args.out.write_text(json.dumps(doc))
        return 0
    if not args.config.is_file():  # before the worktree and the first worker
        raise SystemExit(f"--config {args.config} does not exist; expected a trainer config (default {CONFIG})")
    sys.path.insert(0, str(REPO))
    from fsrfer_edge.fileio import write_json

    sys.path.insert(0, str(REPO / "scripts"))
    from edge_budget import loadavg  # as benchmarks/int8_profile.py

    with tempfile.TemporaryDirectory(prefix="fsrfer-s2before-") as tmp:
        before = Path(tmp) / "before"
        proc = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(before), args.before],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"--before {args.before}: git worktree add failed: {proc.stderr.strip()}")
        try:
            srcs = {"before": before, "after": REPO}
            load_start = loadavg()
            rounds = []
            for r in range(args.rounds):
                order = list(srcs) if r % 2 == 0 else list(srcs)[::-1]
                res = {k: run_worker(srcs[k], args.config, args.steps, args.warmup, args.threads) for k in order}
                rounds.append({k: res[k]["median_s"] for k in srcs})
                print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in rounds[-1].items()),
                      flush=True)
            load_end = loadavg()
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before)],
                           capture_output=True, check=False)
    med = {k: statistics.median(r[k] for r in rounds) for k in ("before", "after")}
    ratios = [r["after"] / r["before"] for r in rounds]
    doc = {"command": "python benchmarks/stage2_step.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "before": args.before, "config": str(args.config.relative_to(REPO)) if args.config.is_relative_to(REPO)
           else str(args.config), "threads": args.threads, "steps_per_round": args.steps,
           "rounds": [{k: round(v * 1000, 1) for k, v in r.items()} for r in rounds],
           "median_ms": {k: round(v * 1000, 1) for k, v in med.items()},
           "ratio_after_over_before": {"median": round(statistics.median(ratios), 3), "min": round(min(ratios), 3),
                                       "max": round(max(ratios), 3)},
           "load_average": {"start": load_start, "end": load_end}, "cpu_count": os.cpu_count()}
    write_json(args.out, doc)
    print(f"after / before: {doc['ratio_after_over_before']['median']:.2f} (median of {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
