"""Add a fitted factor estimator to a scale-aware FSR-FER checkpoint, so that it exports to one graph.

    python scripts/fit_factor_estimator.py /tmp/runs/early_g/models/fsrfer.pt --out /tmp/runs/early_g/models/fsrfer_est.pt

A scale-aware G (FiLM on each face's down-sample factor) needs the factor. The fused graph has one
input, the faces, so the factor is estimated from the image (:class:`trainer.models.FactorEstimator`,
fitted by :func:`trainer.train.fit_factor_estimator` on training faces degraded as the checkpoint's
config degrades them). Stage 2 fits it itself since it exists; this script is for checkpoints trained
before. Prints and stores (``meta.factor_estimator``) the estimator's error per factor on val.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="a scale-aware fsrfer model checkpoint (.pt)")
    ap.add_argument("--out", required=True, help="where to write the checkpoint with the estimator")
    ap.add_argument("--data", help="data path (default: the checkpoint config's)")
    ap.add_argument("--faces", type=int, default=6000, help="training faces to fit on (default: 6000)")
    ap.add_argument("--round-input", action="store_true",
                    help="a new estimator that rounds the image to whole grey levels before its statistics, so "
                         "float and uint8 inputs get the same estimate (replaces the checkpoint's estimator)")
    args = ap.parse_args(argv)
    from trainer import checkpoint
    from trainer import config as config_mod
    from trainer.train import _degrade_cfg, fit_factor_estimator, load_data

    model, pre, ckpt = checkpoint.load_model(args.checkpoint)
    meta = dict(ckpt.get("meta") or {})
    if "config" not in meta:
        raise SystemExit(f"{args.checkpoint}: no training config in its meta; expected an fsrfer-train checkpoint")
    cfg = config_mod.from_dict(meta["config"])
    data = load_data(cfg, config_mod.resolve_data_path(cfg, args.data, str(REPO / "configs" / "x.yaml")))
    meta["factor_estimator"] = fit_factor_estimator(model, data.train.images, data.val.images, _degrade_cfg(cfg),
                                                    cfg.seed, args.faces, pre if args.round_input else None)
    checkpoint.save(args.out, checkpoint.model_payload(model.eval(), model.spec, pre, meta), compress=True)
    for k, v in meta["factor_estimator"].items():
        print(f"x{k}: estimated {v['mean_estimate']:.2f} on average, MAE of log2 {v['mae_log2']:.3f} ({v['faces']} val faces)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from fsrfer_edge.errors import FsrferError, one_line

    try:
        raise SystemExit(main())
    except FsrferError as exc:  # a missing or corrupt checkpoint, bad data: one line, as fsrfer-train says it
        print(f"fit_factor_estimator.py: error: {one_line(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
