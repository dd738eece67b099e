"""INT8 with G in float (the default) or quantized (``fsrfer-export --int8-quantize-g``): accuracy and speed.

    python scripts/int8_generator.py            # after scripts/reproduce.sh ferplus
    python scripts/readme_tables.py int8_generator

Quantizes engines/ferplus.fp32.onnx both ways for both schemes, with the calibration reproduce.sh
uses (512 faces of runs/ferplus_faces.npz), evaluates every file on the FER+ val and test splits and
times batch 64 on ONNX Runtime CPU. Writes results/ferplus/int8_generator.json. The choice of default
is made on val; test is reported alongside.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fp32", type=Path, default=REPO / "engines" / "ferplus.fp32.onnx")
    ap.add_argument("--calib", type=Path, default=REPO / "runs" / "ferplus_faces.npz")
    ap.add_argument("--calib-size", type=int, default=512)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013.npz")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "ferplus" / "int8_generator.json")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from fsrfer_edge import Recognizer
    from fsrfer_edge import bench
    from fsrfer_edge.export.calib import faces_to_pixels, load_faces, to_model_input
    from fsrfer_edge.export.quantize import quantize_int8
    from fsrfer_edge.fileio import write_json
    from trainer.cli import eval_main

    for p in (args.fp32, args.calib, args.data):
        if not p.is_file():
            raise SystemExit(f"{p} is missing: run `bash scripts/reproduce.sh ferplus` first")
    with Recognizer(args.fp32, threads=args.threads) as rec:
        info = rec.info
    calib = to_model_input(faces_to_pixels(load_faces(args.calib, args.calib_size), info), info)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fsrfer-int8g-") as tmp:
        files = {("fp32", "float"): args.fp32}
        for scheme in ("u8s8", "s8s8"):
            for g in ("float", "int8"):
                path = Path(tmp) / f"{scheme}.g{g}.onnx"
                quantize_int8(args.fp32, path, calib, scheme, "percentile", quantize_generator=g == "int8")
                files[(scheme, g)] = path
        for (scheme, g), path in files.items():
            row: dict[str, Any] = {"file": "fp32" if scheme == "fp32" else f"int8-{scheme}", "generator": g}
            for split in ("val", "test"):
                out = Path(tmp) / f"{scheme}.{g}.{split}.json"
                eval_main(["--checkpoint", str(path), "--data", str(args.data), "--labels", "ferplus",
                           "--split", split, "--threads", str(args.threads), "--json", str(out)])
                ev = json.loads(out.read_text())
                row[split] = {f: round(100 * v["accuracy"], 2) for f, v in ev["factors"].items()}
                row[split]["mean"] = round(100 * ev["mean_accuracy"], 2)
            out = Path(tmp) / f"{scheme}.{g}.bench.json"
            bench.main(["--model", str(path), "--batch-sizes", "64", "--threads", str(args.threads),
                        "--overhead-batch", "0", "--json", str(out), "-q"])
            lat = json.loads(out.read_text())["latency"][0]
            row["faces_per_s_batch64"] = round(lat["throughput_fps"])
            row["p50_ms_batch64"] = round(lat["p50_ms"], 2)
            rows.append(row)
    ref = rows[0]
    for r in rows[1:]:
        for split in ("val", "test"):
            drops = {f: round(ref[split][f] - r[split][f], 2) for f in ref[split] if f != "mean"}
            r[f"{split}_worst_drop"] = max(drops.values())
            r[f"{split}_worst_factor"] = "x" + max(drops, key=lambda f: drops[f])
    write_json(args.out, {"command": " ".join(["python scripts/int8_generator.py",
                                          *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))]),
                          "model": str(args.fp32.relative_to(REPO))
                          if args.fp32.is_relative_to(REPO) else str(args.fp32),
                          "calibration": {"source": str(args.calib.name), "faces": len(calib), "method": "percentile"},
                          "threads": args.threads, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
