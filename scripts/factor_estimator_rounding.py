"""The factor estimator on faces rounded to whole grey levels, and what a fit on rounded faces would give.

    python scripts/factor_estimator_rounding.py    # writes results/ferplus/factor_estimator_rounding_val.json

An app that resizes a small crop to 48 px itself hands over whole grey levels; rounding moves the
estimator's statistics of a face resized up from a few pixels (``results/ferplus/input_rounding_val.json``).
This draws training and val faces degraded as ``fit_factor_estimator`` draws them (the checkpoint's
stage-2 degradations, one draw per face, the same seeds) and reports, per factor, the mean estimated
factor and the mean absolute error of log2(factor) on val for:

- ``shipped``: the checkpoint's estimator on the faces as drawn (float pixel values);
- ``shipped_rounded``: the same estimator on those faces rounded to whole grey levels;
- ``refit_rounded``: least squares on rounded training faces, evaluated on rounded val faces: what an
  estimator that rounds its input itself would do on float and uint8 inputs alike;
- ``refit_both_float`` / ``refit_both_rounded``: one fit on both kinds, evaluated on each.

Nothing is written into the checkpoint. Accuracy only, no timing.
"""
from __future__ import annotations

import argparse
import copy
import shlex
import sys
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=REPO / "fsrfer_edge" / "models" / "default.pt")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013.npz")
    ap.add_argument("--faces", type=int, default=6000)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "ferplus" / "factor_estimator_rounding_val.json")
    args = ap.parse_args(argv)
    import numpy as np
    import torch

    from fsrfer_edge.fileio import check_output_path, files_problem, write_json
    from trainer import checkpoint
    from trainer import config as config_mod
    from trainer.train import _degrade_cfg, _tensor, estimator_faces, load_data

    problem = files_problem(args.checkpoint, args.data)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    check_output_path(args.out, "--out", json_output=True)
    model, _, payload = checkpoint.load_model(args.checkpoint)
    if model.factor_estimator is None or "config" not in payload["meta"]:
        print(f"error: {args.checkpoint} has no factor estimator or no training config", file=sys.stderr)
        return 2
    cfg = config_mod.from_dict(payload["meta"]["config"])
    data = load_data(cfg, args.data)
    dcfg = _degrade_cfg(cfg)

    train_lr, train_f = estimator_faces(data.train.images, dcfg, cfg.seed, "train", args.faces)
    val_lr, val_f = estimator_faces(data.val.images, dcfg, cfg.seed, "val", args.faces)

    def rounded(lr: Any) -> Any:
        return np.clip(np.rint(lr), 0, 255)

    def features(est: Any, lr: Any) -> Any:
        with torch.no_grad():
            return est.features(_tensor(lr)).double()

    def fit(est: Any, lrs: list[Any], factors: Any) -> Any:
        est = copy.deepcopy(est)
        x = torch.cat([features(est, lr) for lr in lrs])
        y = torch.from_numpy(np.log2(np.concatenate([factors] * len(lrs)).astype(np.float64)))
        est.weights.copy_(torch.linalg.lstsq(x, y[:, None]).solution[:, 0].float())
        return est

    def report(est: Any, lr: Any) -> dict[str, Any]:
        with torch.no_grad():
            pred = est.log2_factor(features(est, lr).float()).numpy()
        return {str(k): {"mean_estimate": round(float(np.mean(2.0 ** pred[val_f == k])), 3),
                         "mae_log2": round(float(np.mean(np.abs(pred[val_f == k] - np.log2(k)))), 3)}
                for k in sorted(set(int(v) for v in val_f))}

    shipped = model.factor_estimator
    both = fit(shipped, [train_lr, rounded(train_lr)], train_f)
    rows = {"shipped": report(shipped, val_lr), "shipped_rounded": report(shipped, rounded(val_lr)),
            "refit_rounded": report(fit(shipped, [rounded(train_lr)], train_f), rounded(val_lr)),
            "refit_both_float": report(both, val_lr), "refit_both_rounded": report(both, rounded(val_lr))}
    for name, per in rows.items():
        print(f"{name:20s} " + "  ".join(f"x{k} {v['mean_estimate']:.2f} ({v['mae_log2']:.3f})" for k, v in per.items()))
    command = " ".join(["python scripts/factor_estimator_rounding.py",
                        *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))])
    write_json(args.out, {"command": command,
                          "checkpoint": str(args.checkpoint.name),
                          "split": "val", "train_faces": int(len(train_f)), "val_faces": int(len(val_f)),
                          "whole_grey_share_of_drawn_train_faces": round(float(np.mean(
                              [np.array_equal(a, np.rint(a)) for a in train_lr])), 3),
                          "per_estimator": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
