"""Low-contrast faces and the factor estimator: does the estimator's drift on them cost accuracy?

    python scripts/estimator_contrast.py --json results/ferplus/estimator_contrast_val.json

A dim or washed-out camera gives faces of low contrast. The shipped graph estimates each face's
down-sample factor from the image (``trainer.models.FactorEstimator``: log Laplacian, gradient and
standard deviation), and those statistics shrink with contrast, so such a face's factor comes out larger
than the one it was down-sampled by. This measures, on FER+ ``--split`` faces whose contrast is scaled by
each of ``--contrasts`` about the face's mean grey (then rounded to uint8, as a camera stores it), under
``--protocol`` (default (b), small crops through the SDK's preprocessing):

- the estimator's median estimate per factor, and the share of faces it sends through the HR path;
- the checkpoint's accuracy per factor with the factor it estimates (as deployed) and when told the true
  factor instead (PyTorch, the same weights), and the difference.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CONTRASTS = (1.0, 0.5, 0.25)


def scale_contrast(images: Any, contrast: float) -> Any:
    """(N, H, W) uint8 faces with their contrast scaled by ``contrast`` about each face's mean grey, rounded
    and clipped to uint8."""
    import numpy as np

    x = images.astype(np.float32)
    m = x.mean(axis=(1, 2), keepdims=True)
    return np.clip(np.rint((x - m) * contrast + m), 0, 255).astype(np.uint8)


def contrast_rows(model: Any, pre: Any, images: Any, labels: Any, contrasts: Sequence[float],
                  factors: Sequence[int], protocol: str, batch: int = 512) -> list[dict[str, Any]]:
    """One row per contrast: per factor, the median estimate, the share of faces routed to the HR path (a
    routed model; else None), and accuracy with the estimated and with the true factor."""
    import numpy as np
    import torch

    from trainer.evaluate import protocol_inputs

    below = float(getattr(model, "route_hr_below", 0.0) or 0.0)
    rows = []
    for c in contrasts:
        faces = scale_contrast(images, c)
        per: dict[str, Any] = {}
        for f in factors:
            est, pred_est, pred_true = [], [], []
            for s in range(0, len(faces), batch):
                x = torch.from_numpy(protocol_inputs(faces[s:s + batch], f, pre, protocol))
                with torch.no_grad():
                    e = model.factor_estimator(x)
                    est.append(e.numpy())
                    pred_est.append(model(x, e).argmax(1).numpy())
                    pred_true.append(model(x, torch.full((len(x),), float(f))).argmax(1).numpy())
            e_all = np.concatenate(est)
            acc_est = 100 * float(np.mean(np.concatenate(pred_est) == labels))
            acc_true = 100 * float(np.mean(np.concatenate(pred_true) == labels))
            per[str(f)] = {"median_estimate": round(float(np.median(e_all)), 3),
                           "hr_path_share": round(float(np.mean(e_all < below)), 4) if below else None,
                           "accuracy_estimated": round(acc_est, 2), "accuracy_true_factor": round(acc_true, 2),
                           "true_minus_estimated": round(acc_true - acc_est, 2)}
        rows.append({"contrast": c, "factors": per})
        print(f"contrast {c}: " + " | ".join(
            f"x{f} est {v['median_estimate']:.2f} acc {v['accuracy_estimated']:.2f} (true f {v['true_minus_estimated']:+.2f})"
            for f, v in per.items()), flush=True)
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=REPO / "fsrfer_edge" / "models" / "default.pt",
                    help="a scale-aware fsrfer checkpoint with a fitted factor estimator (default: the shipped one)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013.npz")
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--protocol", default="small", choices=("resized", "small", "camera"))
    ap.add_argument("--contrasts", default=",".join(map(str, CONTRASTS)), help="comma-separated contrast scales in (0, 1]")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        contrasts = tuple(float(c) for c in args.contrasts.split(","))
    except ValueError:
        contrasts = ()
    if not contrasts or any(not 0 < c <= 1 for c in contrasts):
        print(f"error: --contrasts {args.contrasts!r}: expected comma-separated numbers in (0, 1]", file=sys.stderr)
        return 2
    import torch

    from fsrfer_edge.fileio import check_output_path, files_problem, sha256_file, write_json
    from fsrfer_edge.preprocessing import FACTORS
    from trainer import checkpoint
    from trainer.data import load_dataset

    problem = files_problem(args.checkpoint, args.data)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    check_output_path(args.json, "--json", json_output=True)
    torch.set_num_threads(args.threads)
    model, pre, _ = checkpoint.load_model(args.checkpoint)
    if getattr(model, "factor_estimator", None) is None:
        print(f"error: {args.checkpoint} has no factor estimator; expected a scale-aware fsrfer checkpoint "
              "(scripts/fit_factor_estimator.py adds one)", file=sys.stderr)
        return 2
    model.eval()
    faces = load_dataset(args.data, labels="ferplus").subset(args.split)
    factors = [int(f) for f in FACTORS]
    rows = contrast_rows(model, pre, faces.images, faces.labels, contrasts, factors, args.protocol)
    write_json(args.json, {
        "command": f"python scripts/estimator_contrast.py --json {args.json}"
                   + (f" --split {args.split}" if args.split != "val" else "")
                   + (f" --protocol {args.protocol}" if args.protocol != "small" else "")
                   + (f" --contrasts {args.contrasts}" if contrasts != CONTRASTS else ""),
        "checkpoint": str(args.checkpoint), "checkpoint_sha256": sha256_file(args.checkpoint),
        "split": args.split, "n": int(len(faces.labels)), "protocol": args.protocol,
        "route_hr_below": float(getattr(model, "route_hr_below", 0.0) or 0.0),
        "rows": rows, "load_average_at_end": list(os.getloadavg())})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
