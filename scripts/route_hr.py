"""Route each HR face (factor below sqrt(2)) of a scale-aware early-G checkpoint through the frozen HR
stages instead of G: a copy of the checkpoint with ``spec.route_hr_below`` set.

    python scripts/route_hr.py RUN/models/fsrfer.pt --out RUN/models/fsrfer_routed.pt

One G serves every factor, and its copies of the trunk's stages, trained on every factor, cost 48 px
faces about two points against the HR model (README). The HR stages are in the checkpoint already (the
frozen trunk) and the factor is known (given, or estimated inside the graph), so a face that is not
down-sampled can take them instead: it gets exactly the HR model's answer, at the cost of one path per
face, and the fused graph holds the HR stages beside G's copies (``InferenceModel.routed``). Nothing is
retrained; G still serves every other factor. ``--below 0`` writes a copy without routing.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="a scale-aware early-G fsrfer model checkpoint (.pt)")
    ap.add_argument("--out", required=True, help="where to write the routed checkpoint")
    ap.add_argument("--below", type=float, default=math.sqrt(2.0),
                    help="faces whose factor is below this take the HR stages (default: sqrt(2), halfway "
                         "between x1 and x2 in log2; 0: no routing)")
    args = ap.parse_args(argv)
    from trainer import checkpoint
    from fsrfer_edge.errors import ConfigError
    from trainer.models import InferenceModel

    model, pre, ckpt = checkpoint.load_model(args.checkpoint)
    spec = {k: v for k, v in ckpt["spec"].items() if k != "route_hr_below"}
    if args.below:
        spec["route_hr_below"] = float(args.below)
    try:
        routed = InferenceModel(spec)
    except ConfigError as exc:
        raise SystemExit(f"{args.checkpoint}: {exc}") from None
    routed.load_state_dict(model.state_dict())
    # Deflated: the routed graph holds the HR stages beside G's copies (about 2.8 MB more), and the
    # shipped graph plus checkpoint must stay within the 30 MB package budget.
    checkpoint.save(args.out, checkpoint.model_payload(routed.eval(), spec, pre, dict(ckpt.get("meta") or {})),
                    compress=True)
    print(f"wrote {args.out}" + (f" (faces below x{args.below:.4g} take the HR stages)" if args.below else ""))
    return 0


if __name__ == "__main__":
    from fsrfer_edge.errors import FsrferError, one_line

    try:
        raise SystemExit(main())
    except FsrferError as exc:  # a missing or corrupt checkpoint, bad data: one line, as fsrfer-train says it
        print(f"route_hr.py: error: {one_line(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
