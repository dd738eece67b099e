"""Does quantizing FiLM's ops on the feature maps make the INT8 u8s8 file faster, and what does it cost?

    python scripts/int8_film.py      # writes results/ferplus/int8_film_val.json

Two u8s8 files of one FP32 model, made as ``fsrfer-export --int8 --int8-quantize-g`` makes them (512 FER+
train faces, small crops at every factor, percentile ranges): ``film_float`` keeps FiLM's multiply and add
on each copied block's map in float (the export before this measurement), ``film_int8`` quantizes them
(``quantize_int8(quantize_film=True)``; ONNX Runtime runs them as QLinearMul / QLinearAdd). The factor
estimator and the small network from the factor to FiLM's scales and shifts stay in float in both.

- Accuracy: each file against the FP32 file on FER+ ``--split`` (val), protocol (a), face by face, as
  ``scripts/int8_sensitivity.py`` compares them (points lost, % of faces whose class changed, KL).
- Speed: the FP32 file and the two INT8 files, each timed by ``fsrfer-bench`` in its own process, in
  ``--rounds`` interleaved rounds with a rotating order (``scripts/edge_budget.py``'s timer; batch 64,
  2 threads); medians over rounds and the per-round ratio of the two INT8 files, load average beside them.

Val, not test: this chooses the export's default.
"""
from __future__ import annotations

import os
import statistics
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import edge_budget  # noqa: E402  (scripts/edge_budget.py: the timer and the rotating rounds)
from int8_sensitivity import compare, faces_and_calibration, io_problem, logits_per_factor, parser  # noqa: E402

VARIANTS = {"film_float": False, "film_int8": True}


def main(argv: Optional[list[str]] = None) -> int:
    ap = parser(__doc__, REPO / "results" / "ferplus" / "int8_film_val.json")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default: 5)")
    args = ap.parse_args(argv)
    from fsrfer_edge.export.quantize import quantize_int8
    from fsrfer_edge.fileio import sha256_file, write_json

    problem = io_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        images, labels, factors, calib = faces_and_calibration(args.model, args.data, args.split, Path(tmp))
        files = {"fp32": args.model}
        for name, film in VARIANTS.items():
            files[name] = Path(tmp) / f"{name}.int8-u8s8.onnx"
            quantize_int8(args.model, files[name], calib, "u8s8", "percentile", quantize_generator=True,
                          quantize_film=film)
        # Timing first, on a machine this script has not loaded yet.
        timing = edge_budget.measure_rounds(files, args.rounds, 64, args.threads, 5, 50)
        ref = logits_per_factor(args.model, images, factors, args.threads)
        for name in VARIANTS:
            got = logits_per_factor(files[name], images, factors, args.threads)
            per = {str(f): compare(ref[f], got[f], labels) for f in factors}
            rows[name] = {"film_maps": "int8" if VARIANTS[name] else "float", "per_factor": per,
                          "worst_points_lost": max(v["points_lost"] for v in per.values()),
                          "size_mb": round(files[name].stat().st_size / 2**20, 2)}
            print(f"{name:10s} " + "  ".join(f"x{f} lost {v['points_lost']:+.2f} flips {v['flips']:.2f} kl {v['kl']:.1f}"
                                          for f, v in per.items()), flush=True)
    med = timing["median_fps"]
    per_round = [r["film_int8"]["throughput_fps"] / r["film_float"]["throughput_fps"] for r in timing["rounds"]]
    speed = {"median_fps": med, "film_float_vs_fp32": med["film_float"] / med["fp32"],
             "film_int8_vs_fp32": med["film_int8"] / med["fp32"],
             "film_int8_vs_film_float": med["film_int8"] / med["film_float"],
             "film_int8_vs_film_float_per_round": per_round,
             "film_int8_vs_film_float_median_of_rounds": statistics.median(per_round), "rounds": timing["rounds"]}
    print("throughput (faces/s, median of rounds): " + ", ".join(f"{k} {v:.0f}" for k, v in med.items())
          + "; film_int8 / film_float per round: " + ", ".join(f"{r:.3f}" for r in per_round))
    write_json(args.out, {
        "command": " ".join(["python scripts/int8_film.py", *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))])
                   + (f" --rounds {args.rounds}" if args.rounds != 5 else ""),
        "model": args.model.name, "model_sha256": sha256_file(args.model), "split": args.split, "n": int(len(labels)),
        "one_face_points": round(100 / len(labels), 3),
        "calibration": {"faces": 512, "method": "percentile", "factors": factors, "scheme": "u8s8", "generator": "int8"},
        "timing": {"batch": 64, "threads": args.threads, "rounds": args.rounds, "warmup": 5, "iters": 50},
        "fp32_accuracy_per_factor": {str(f): round(100 * float((ref[f].argmax(1) == labels).mean()), 2) for f in factors},
        "variants": rows, "speed": speed, "load_average_at_end": list(os.getloadavg())})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
