"""Per-epoch FER+ val accuracy and seconds of stage-1 runs, from their checkpoints' metadata.

    python scripts/stage1_history.py NAME=CHECKPOINT [NAME=CHECKPOINT ...] --json results/ferplus/hr_distill_history.json

For each run (its ``models/hr.pt``): the config name, what it started from and distilled (``stage1_init``,
``stage1_distill``), the best val score and, epoch by epoch, the val score (accuracy at x1, %) and the seconds
the epoch took, with the median. The README's training-cost and trajectory figures for HR attempts come
from this file, not from logs.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from statistics import median
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_history(path: Path) -> dict[str, Any]:
    """What a stage-1 checkpoint's metadata says about its run (val scores in %, seconds per epoch)."""
    from trainer import checkpoint

    meta = checkpoint.load(path, kind="model")["meta"]
    hist = meta.get("history") or []
    if not hist:
        raise SystemExit(f"{path}: its metadata holds no training history; expected a stage-1 models/hr.pt")
    secs = [float(h["seconds"]) for h in hist]
    distill = meta.get("stage1_distill") or {}
    return {"checkpoint": str(path), "config": meta["config"]["name"],
            "init": (meta.get("stage1_init") or {}).get("path"),
            "distill": {k: distill[k] for k in ("path", "weight", "temperature", "teacher") if k in distill} or None,
            "best_val": round(100.0 * float(meta["best_val_score"]), 2),
            "median_seconds_per_epoch": round(median(secs), 1),
            "epochs": [{"epoch": int(h["epoch"]), "val": round(100.0 * float(h["val_score"]), 2),
                        "seconds": round(float(h["seconds"]), 1)} for h in hist]}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", metavar="NAME=CHECKPOINT")
    ap.add_argument("--json", required=True, help="the file to write")
    args = ap.parse_args(argv)
    from fsrfer_edge.fileio import write_json

    runs = {}
    for item in args.runs:
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path).is_file():
            ap.error(f"{item!r}: expected NAME=CHECKPOINT with an existing checkpoint")
        runs[name] = run_history(Path(path))
    cmd = "python " + shlex.join(["scripts/stage1_history.py", *(argv if argv is not None else sys.argv[1:])])
    write_json(args.json, {"command": cmd, "metric": "FER+ val accuracy at x1 (%) per epoch, as stage 1 scores it",
                           "runs": runs})
    for name, r in runs.items():
        print(f"{name}: best {r['best_val']}, {len(r['epochs'])} epochs, median {r['median_seconds_per_epoch']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
