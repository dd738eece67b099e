"""INT8 calibration settings for the shipped model, compared on FER+ val: accuracy lost against FP32 per factor.

    python scripts/int8_calibration.py      # writes results/ferplus/int8_calibration_val.json

Each variant is the u8s8 file ``fsrfer-export --int8 --int8-quantize-g`` would make (G in INT8, the factor
estimator and FiLM in float) from train-split faces of ``--data``, calibrated on small crops at every
factor in turn (``mix_factors``) or on 48 px faces only, with a number of faces and a range method; each is
evaluated as ``fsrfer-eval`` evaluates (protocol (a), the val split), beside the FP32 file. Val, not test:
this chooses a setting. Accuracy only, no timing, so it may share the CPU.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: name -> (faces, method, factors)
VARIANTS = {
    "48px_512_percentile": (512, "percentile", (1,)),
    "mix_512_percentile": (512, "percentile", (1, 2, 3, 4, 6, 8)),
    "mix_1536_percentile": (1536, "percentile", (1, 2, 3, 4, 6, 8)),
    "mix_3072_percentile": (3072, "percentile", (1, 2, 3, 4, 6, 8)),
    "mix_1536_minmax": (1536, "minmax", (1, 2, 3, 4, 6, 8)),
    "mix_1536_entropy": (1536, "entropy", (1, 2, 3, 4, 6, 8)),
}


def evaluate(model: Path, data: Path, out: Path) -> dict[str, Any]:
    """``fsrfer-eval`` on the val split (protocol (a)), in this process: accuracy only, no timing."""
    import json

    from trainer.cli import eval_main

    if eval_main(["--checkpoint", str(model), "--data", str(data), "--labels", "ferplus", "--split", "val",
                  "--threads", "2", "--json", str(out)]) != 0:
        raise SystemExit(f"error: fsrfer-eval failed on {model}")
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "fsrfer_edge" / "models" / "default.onnx")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013.npz")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "ferplus" / "int8_calibration_val.json")
    args = ap.parse_args(argv)
    import os

    import numpy as np

    from fsrfer_edge.export.calib import calibration_inputs
    from fsrfer_edge.export.onnx_export import read_model_info
    from fsrfer_edge.export.quantize import quantize_int8
    from fsrfer_edge.fileio import sha256_file, write_json
    from trainer.data import load_dataset

    if not args.data.is_file():
        print(f"error: {args.data} is missing (FER2013 with ferplus_labels.npz beside it)", file=sys.stderr)
        return 2
    info = read_model_info(args.model)
    fs = load_dataset(args.data, labels="ferplus")
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        train = Path(tmp) / "train.npz"
        np.savez(train, images=fs.images[fs.split == "train"])
        ref = evaluate(args.model, args.data, Path(tmp) / "fp32.json")
        for name, (n, method, factors) in VARIANTS.items():
            path = Path(tmp) / f"{name}.int8-u8s8.onnx"
            quantize_int8(args.model, path, calibration_inputs(train, n, factors, info), "u8s8", method,
                          quantize_generator=True)
            got = evaluate(path, args.data, Path(tmp) / f"{name}.json")
            drop = {f: round(100 * (ref["factors"][f]["accuracy"] - got["factors"][f]["accuracy"]), 2)
                    for f in ref["factors"]}
            rows[name] = {"faces": n, "method": method, "factors": list(factors), "points_lost_per_factor": drop,
                          "accuracy_per_factor": {f: round(100 * v["accuracy"], 2) for f, v in got["factors"].items()}}
            print(f"{name:22s} " + " ".join(f"x{f} {v:+.2f}" for f, v in drop.items()), flush=True)
    write_json(args.out, {
        "command": " ".join(["python scripts/int8_calibration.py",
                             *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))]),
        "model": args.model.name, "model_sha256": sha256_file(args.model),
        "split": "val", "n": ref["n"], "one_face_points": round(100 / ref["n"], 3),
        "fp32_accuracy_per_factor": {f: round(100 * v["accuracy"], 2) for f, v in ref["factors"].items()},
        "variants": rows, "load_average_at_end": list(os.getloadavg())})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
