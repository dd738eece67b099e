"""``stage2.route_hr`` against ``bn``, seed by seed, both routed: the second rule of
configs/ferplus_soft_aug_early_g_stem_camera_6ep_bn_route.yaml.

    python scripts/route_hr_seeds.py     # writes results/ferplus/route_hr_train_seeds.json

Reads the committed ``scripts/route_hr_report.py`` files of each pair (seed 0: ``route_hr_train_val.json``
against ``route_hr_bn_val.json``; seed N: ``route_hr_train_seedN_val.json`` against
``route_hr_bn_seedN_val.json``), takes ``checks.mean_x2_x8.routed`` of each (FER+ val, mean over x2..x8 and
protocols (a), (b), (c)) and applies the rule: at least ``--line`` points on the mean of the per-seed
differences and ahead in every seed makes a candidate default; ahead in every seed by less is ahead
within noise; anything else changes nothing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "ferplus"


def pair_files(seed: int) -> tuple[Path, Path]:
    """(route_hr config's report, bn's report) for one seed."""
    tag = "" if seed == 0 else f"_seed{seed}"
    return RESULTS / f"route_hr_train{tag}_val.json", RESULTS / f"route_hr_bn{tag}_val.json"


def summarize(rows: list[dict[str, Any]], line: float) -> dict[str, Any]:
    """Mean and spread of the per-seed differences and the rule's verdict."""
    diffs = [r["difference"] for r in rows]
    mean = statistics.fmean(diffs)
    ahead = all(d > 0 for d in diffs)
    if ahead and mean >= line:
        verdict = "candidate default"
    elif ahead:
        verdict = "ahead in every seed, within noise: reported, nothing changes"
    else:
        verdict = "not ahead in every seed: reported, nothing changes"
    return {"seeds": [r["seed"] for r in rows], "mean_difference": round(mean, 3),
            "sd_difference": round(statistics.stdev(diffs), 3) if len(diffs) > 1 else None,
            "ahead_in_every_seed": ahead, "line": line, "verdict": verdict}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--line", type=float, default=0.5, help="points on the mean difference (the rule's +0.5)")
    ap.add_argument("--out", type=Path, default=RESULTS / "route_hr_train_seeds.json")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from fsrfer_edge.fileio import write_json

    rows = []
    for seed in args.seeds:
        ours, bn = pair_files(seed)
        missing = [p for p in (ours, bn) if not p.is_file()]
        if missing:
            print(f"error: seed {seed}: {', '.join(str(p.relative_to(REPO)) for p in missing)} missing; run "
                  "scripts/route_hr_report.py on that seed's checkpoint first", file=sys.stderr)
            return 2
        a, b = (json.loads(p.read_text())["checks"]["mean_x2_x8"]["routed"] for p in (ours, bn))
        rows.append({"seed": seed, "route_hr": a, "bn": b, "difference": round(a - b, 3),
                     "files": [str(p.relative_to(REPO)) for p in (ours, bn)]})
    doc = {"command": "python scripts/route_hr_seeds.py", "split": "val",
           "measure": "checks.mean_x2_x8.routed: FER+ val accuracy %, mean over x2..x8 and protocols (a), (b), (c)",
           "rule": "configs/ferplus_soft_aug_early_g_stem_camera_6ep_bn_route.yaml (second rule)",
           "per_seed": rows, "summary": summarize(rows, args.line)}
    write_json(args.out, doc)
    s = doc["summary"]
    print(f"mean {s['mean_difference']:+.2f} (sd {s['sd_difference']}) over seeds {s['seeds']}: {s['verdict']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
