"""Where protocol (c)'s loss comes from: an exported model's accuracy per factor on small crops made in
steps from protocol (b) to protocol (c): bicubic crops (b), area-averaged crops (box kernel) without JPEG,
then area-averaged crops JPEG-compressed at several qualities (quality 50 is protocol (c)). Each crop goes
through the SDK's own preprocessing, as ``Recognizer`` gives it to the model.

    python scripts/camera_gap.py --json results/ferplus/camera_gap_val.json
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
QUALITIES = (90, 75, 50, 30)


def steps(qualities: tuple[int, ...]) -> list[tuple[str, str, Optional[int]]]:
    """(row name, down-sampling kernel, JPEG quality or None), from protocol (b) to (c) and beyond."""
    return [("bicubic (b)", "bicubic", None), ("area", "box", None)] + \
        [(f"area + JPEG q{q}" + (" (c)" if q == 50 else ""), "box", q) for q in qualities]


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "fsrfer_edge" / "models" / "default.onnx"),
                    help="an exported fsrfer ONNX file (default: the shipped default)")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fer2013.npz"))
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--factors", default="1,2,3,4", help="comma-separated factors (default 1,2,3,4)")
    ap.add_argument("--qualities", default=",".join(map(str, QUALITIES)), help="JPEG qualities after area down-sampling")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    try:
        factors = tuple(int(f) for f in args.factors.split(","))
        qualities = tuple(int(q) for q in args.qualities.split(","))
    except ValueError:
        raise SystemExit(f"--factors {args.factors!r} / --qualities {args.qualities!r}: expected comma-separated integers")
    if any(f < 1 for f in factors) or any(not 1 <= q <= 100 for q in qualities):
        raise SystemExit(f"--factors {factors} / --qualities {qualities}: expected factors >= 1 and qualities in 1..100")
    from fsrfer_edge.ferplus import load_labelled_faces
    from fsrfer_edge.fileio import sha256_file, write_json
    from trainer.evaluate import crop_inputs, evaluate_fn, lr_crops, onnx_logits_fn

    faces = load_labelled_faces(args.data, "ferplus", args.split)
    images, labels = faces.images, faces.labels
    fn, pre = onnx_logits_fn(args.model, threads=args.threads)
    rows: list[dict[str, Any]] = []  # a list: the steps' order is the point
    for name, kernel, q in steps(qualities):
        res = evaluate_fn(fn, images, labels, factors, pre,
                          inputs=lambda faces, f, k=kernel, q=q: crop_inputs(lr_crops(faces, f, k, q), pre))
        rows.append({"crop": name, "kernel": kernel, "jpeg_quality": q,
                     "accuracy": {f: round(100 * v["accuracy"], 2) for f, v in res["factors"].items()}})
        print(f"{name:22s} " + " ".join(f"x{f}:{v:.2f}" for f, v in rows[-1]["accuracy"].items()), flush=True)
    write_json(args.json, {
        "command": shlex.join(["python", "scripts/camera_gap.py", *(sys.argv[1:] if argv is None else argv)]),
        "model": {"path": os.path.relpath(args.model, REPO), "sha256": sha256_file(args.model)},
        "split": args.split, "n": int(len(labels)), "load_average": list(os.getloadavg()),
        "note": "accuracy % per factor of small crops through the SDK's preprocessing; each row changes one "
                "thing from the row above it: bicubic -> area (box) down-sampling -> JPEG at falling quality",
        "rows": rows})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
