"""Does estimating the factor inside the graph cost accuracy? A scale-aware early G told each face's true
factor (its run's own evaluation, PyTorch) against the same model exported to one graph that estimates the
factor from the image (fsrfer-eval on the .onnx, as users run it), per protocol and factor.

    python scripts/fit_factor_estimator.py RUN/models/fsrfer.pt --out RUN/models/fsrfer_est.pt
    fsrfer-export RUN/models/fsrfer_est.pt --out-dir OUT --name early_g_film
    for p in resized small camera; do fsrfer-eval --checkpoint OUT/early_g_film.fp32.onnx \\
        --data ../shared/data/fer2013.npz --labels ferplus --split val --protocol $p --json OUT/val_$p.json; done
    python scripts/factor_estimator_report.py --run RUN --checkpoint RUN/models/fsrfer_est.pt \\
        resized=OUT/val_resized.json small=OUT/val_small.json camera=OUT/val_camera.json \\
        --json results/ferplus/factor_estimator_val.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TRUE_FILES = {"resized": "results.json", "small": "results_small.json", "camera": "results_camera.json"}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("estimated", nargs="+", help="PROTOCOL=FSRFER_EVAL_JSON of the exported (estimating) model")
    ap.add_argument("--run", required=True, type=Path, help="the scripts/early_g.py run (its eval/<split> has the true-factor results)")
    ap.add_argument("--checkpoint", required=True, type=Path, help="the checkpoint with the fitted estimator (its fit report)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    from fsrfer_edge.fileio import write_json
    from trainer import checkpoint

    fit = checkpoint.load(args.checkpoint, kind="model").get("meta", {}).get("factor_estimator")
    if fit is None:
        raise SystemExit(f"{args.checkpoint}: no fitted factor estimator (scripts/fit_factor_estimator.py adds one)")
    rows: dict[str, Any] = {}
    for item in args.estimated:
        protocol, _, path = item.partition("=")
        if protocol not in TRUE_FILES or not Path(path).is_file():
            raise SystemExit(f"{item!r}: expected PROTOCOL=FILE with PROTOCOL in {sorted(TRUE_FILES)} and an existing file")
        est = json.loads(Path(path).read_text())
        true = json.loads((args.run / "eval" / args.split / TRUE_FILES[protocol]).read_text())["fsrfer"]
        acc_t = {f: round(100 * v["accuracy"], 2) for f, v in true["factors"].items()}
        acc_e = {f: round(100 * v["accuracy"], 2) for f, v in est["factors"].items()}
        if set(acc_t) - set(acc_e):
            raise SystemExit(f"{path}: lacks factor(s) {sorted(set(acc_t) - set(acc_e), key=int)} of the run's "
                             f"true-factor results; evaluate the exported model at the run's factors")
        rows[protocol] = {"true_factor": acc_t, "estimated_factor": acc_e,
                          "estimated_minus_true": {f: round(acc_e[f] - acc_t[f], 2) for f in acc_t}}
    doc = {"command": "see scripts/factor_estimator_report.py's docstring (fit, export, fsrfer-eval per protocol, this script)",
           "split": args.split, "run_config": json.loads((args.run / "config.json").read_text())["name"],
           "estimator_fit_on_val": fit, "accuracy": rows}
    write_json(args.json, doc)
    for p, r in rows.items():
        print(f"{p:8s} estimated - true: " + " ".join(f"x{f}:{v:+.2f}" for f, v in r["estimated_minus_true"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
