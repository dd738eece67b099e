"""Does routing on the image, with each path's stem conv quantized, make the INT8 u8s8 file faster?

    git show 893927d:fsrfer_edge/models/default.onnx > engines/route_on_map.fp32.onnx
    fsrfer-export fsrfer_edge/models/default.pt --name route_on_image --out-dir engines
    python scripts/int8_layout.py --before engines/route_on_map.fp32.onnx \
        --model engines/route_on_image.fp32.onnx

Two FP32 graphs of one checkpoint: ``--before``, exported with the routed graph gathering each path's faces
from the stem's output map (the stem conv reads the image, shared with the factor estimator, so it stays
in float), and ``--model``, exported at commit 55cd4ac, where ``InferenceModel.routed`` gathered each
path's faces from the image and ran the stem on each path, and ``quantize.routed_image_conv_nodes`` let the
u8s8 file quantize each path's stem conv. That change was measured here and reverted (docs/DESIGN.md): run
the commands above with commit 55cd4ac checked out. Each gets its u8s8 file as ``fsrfer-export --int8 --int8-quantize-g``
makes it (512 FER+ train faces, small crops at every factor, percentile ranges). Measured:

- the two FP32 graphs give the same logits (largest difference on ``--split``, every factor);
- the Transposes in ONNX Runtime's optimized INT8 graph (CPU provider, all optimizations): how many, and
  how many of them sit on a feature map (rank 4, more than one channel) rather than on FiLM's per-face
  parameters, the index of a NonZero or the image;
- accuracy of each INT8 file against its own FP32 file on FER+ ``--split`` (val), protocol (a), face by
  face, as ``scripts/int8_sensitivity.py`` compares them;
- speed: the four files, each timed by ``fsrfer-bench`` in its own process, in ``--rounds`` interleaved
  rounds with a rotating order (``scripts/edge_budget.py``'s timer; batch 64, 2 threads); medians over rounds
  and the per-round ratio of the two INT8 files, load average beside them. Wall-clock throughput on this
  shared 2-core machine swings by tens of percent between rounds, so the two INT8 files are also profiled
  (``benchmarks/int8_profile.py``'s ONNX Runtime profiler, one process per file, ``--rounds`` alternating
  rounds): kernel milliseconds per batch of 64 small-looking faces, per part of the graph.

Val, not test: this chooses the export's default.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "benchmarks"))

import edge_budget  # noqa: E402  (scripts/edge_budget.py: the timer and the rotating rounds)
import int8_profile  # noqa: E402  (benchmarks/int8_profile.py: kernel time per part of the graph)
from int8_sensitivity import compare, faces_and_calibration, io_problem, logits_per_factor, parser  # noqa: E402

GRAPHS = ("before", "after")


def optimized_transposes(path: Path, threads: int) -> list[dict[str, Any]]:
    """The Transposes of ONNX Runtime's optimized graph of ``path`` (CPU provider, every optimization): each
    with the op that feeds it, the ops it feeds, and whether it moves a feature map (:func:`_is_map` of its
    input's shape in the INT8 file; by its producer where ONNX Runtime renamed the tensor)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        graph = onnx.load(so.optimized_model_filepath).graph
    shapes = _shapes(path)
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[str]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    out = []
    for n in graph.node:
        if n.op_type != "Transpose":
            continue
        src = producer.get(n.input[0])
        # The optimized graph renames what it rewrites; a map is recognised by the tensor it came from where
        # the original graph has it, else by its producer (a quantized conv, add or concat moves a map).
        shape = shapes.get(n.input[0]) or shapes.get(_original_name(n.input[0]))
        is_map = _is_map(shape) if shape is not None \
            else getattr(src, "op_type", "") in ("QLinearConv", "QLinearAdd", "QLinearConcat")
        out.append({"from": getattr(src, "op_type", "graph input"), "to": sorted(set(consumers.get(n.output[0], []))),
                    "feature_map": bool(is_map)})
    return out


def gathered_stem_convs(model: Any) -> list[str]:
    """The Conv nodes that read a Gather of the graph input: each path's stem conv in a graph that gathers
    each path's faces from the image (the u8s8 file of commit 55cd4ac quantized them); none where the route
    gathers the stem's map."""
    inputs = {i.name for i in model.graph.input}
    gathers = {n.output[0] for n in model.graph.node if n.op_type == "Gather" and n.input[0] in inputs}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and n.input[0] in gathers]


def _is_map(shape: list[Optional[int]]) -> bool:
    """Whether an NCHW ``shape`` is a feature map: rank 4, more than one channel, more than one pixel (not
    the image, not FiLM's per-face (N, C, 1, 1) scales and shifts)."""
    return len(shape) == 4 and (shape[1] or 0) > 1 and not (shape[2] == 1 and shape[3] == 1)


def _original_name(name: str) -> str:
    """The tensor a QuantizeLinear output in ONNX Runtime's graph quantizes (``X_QuantizeLinear_Output``)."""
    for suffix in ("_QuantizeLinear_Output", "_quantized"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _shapes(path: Path) -> dict[str, Any]:
    """Static shapes (None for a symbolic dimension) of ``path``'s tensors, by ONNX shape inference."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    dims: dict[str, Any] = {}
    for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        t = v.type.tensor_type
        if t.HasField("shape"):
            dims[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return dims


def main(argv: Optional[list[str]] = None) -> int:
    ap = parser(__doc__, REPO / "results" / "ferplus" / "int8_layout_val.json")
    ap.add_argument("--before", type=Path, required=True,
                    help="the FP32 graph of the same checkpoint, exported with the route on the stem's map")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (default: 7)")
    args = ap.parse_args(argv)
    if args.rounds < 1:  # before minutes of quantizing and evaluating (the median of no rounds fails at the end)
        ap.error(f"--rounds {args.rounds}; expected a number of timing rounds >= 1")
    import numpy as np

    from fsrfer_edge.export.onnx_export import load_onnx, read_model_info
    from fsrfer_edge.export.quantize import quantize_int8
    from fsrfer_edge.fileio import files_problem, sha256_file, write_json

    problem = io_problem(args) or files_problem(args.before)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    fp32 = {"before": args.before.resolve(), "after": args.model.resolve()}
    sums = {g: read_model_info(p).checkpoint_sha256 for g, p in fp32.items()}
    if sums["before"] != sums["after"]:
        print(f"error: {args.before} and {args.model} are exports of different checkpoints ({sums}); expected "
              "two graphs of one checkpoint", file=sys.stderr)
        return 2
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        images, labels, factors, calib = faces_and_calibration(args.model, args.data, args.split, Path(tmp))
        files = {f"{g}_fp32": p for g, p in fp32.items()}
        for g in GRAPHS:
            files[f"{g}_int8"] = Path(tmp) / f"{g}.int8-u8s8.onnx"
            quantize_int8(fp32[g], files[f"{g}_int8"], calib, "u8s8", "percentile", quantize_generator=True)
        # Timing first, on a machine this script has not loaded yet.
        timing = edge_budget.measure_rounds(files, args.rounds, 64, args.threads, 5, 50)
        profiles = []
        for r in range(args.rounds):
            order = ["before_int8", "after_int8"][:: 1 if r % 2 == 0 else -1]
            profiles.append({f: int8_profile.profile_in_subprocess(files[f], 64, args.threads, 5, 20) for f in order})
        ref = {g: logits_per_factor(fp32[g], images, factors, args.threads) for g in GRAPHS}
        fp32_diff = max(float(np.abs(ref["before"][f] - ref["after"][f]).max()) for f in factors)
        for g in GRAPHS:
            got = logits_per_factor(files[f"{g}_int8"], images, factors, args.threads)
            per = {str(f): compare(ref[g][f], got[f], labels) for f in factors}
            transposes = optimized_transposes(files[f"{g}_int8"], args.threads)
            rows[g] = {"fp32_sha256": sha256_file(fp32[g]),
                       "stem_convs_quantized": gathered_stem_convs(load_onnx(fp32[g])),
                       "per_factor": per, "worst_points_lost": max(v["points_lost"] for v in per.values()),
                       "transposes": len(transposes),
                       "transposes_on_feature_maps": sum(t["feature_map"] for t in transposes),
                       "transpose_detail": transposes}
            print(f"{g:7s} transposes {len(transposes)} (on maps {rows[g]['transposes_on_feature_maps']})  "
                  + "  ".join(f"x{f} lost {v['points_lost']:+.2f} flips {v['flips']:.2f}" for f, v in per.items()),
                  flush=True)
    med = timing["median_fps"]
    per_round = [r["after_int8"]["throughput_fps"] / r["before_int8"]["throughput_fps"] for r in timing["rounds"]]
    speed = {"median_fps": med,
             "before_int8_vs_before_fp32": med["before_int8"] / med["before_fp32"],
             "after_int8_vs_after_fp32": med["after_int8"] / med["after_fp32"],
             "after_fp32_vs_before_fp32": med["after_fp32"] / med["before_fp32"],
             "after_int8_vs_before_int8": med["after_int8"] / med["before_int8"],
             "after_int8_vs_before_int8_per_round": per_round,
             "after_int8_vs_before_int8_median_of_rounds": statistics.median(per_round), "rounds": timing["rounds"]}
    kernel = {g: [sum(r[f"{g}_int8"]["kernel_ms"].values()) for r in profiles] for g in GRAPHS}
    parts = sorted({k for r in profiles for f in r for k in r[f]["kernel_ms"]})
    speed["kernel_ms_per_batch"] = {
        "median_total": {g: round(statistics.median(v), 3) for g, v in kernel.items()},
        "after_vs_before_per_round": [round(a / b, 4) for a, b in zip(kernel["after"], kernel["before"])],
        "median_by_part": {g: {k: round(statistics.median(r[f"{g}_int8"]["kernel_ms"].get(k, 0.0) for r in profiles), 3)
                               for k in parts} for g in GRAPHS}}
    print("INT8 kernel ms per batch (median): " + ", ".join(f"{g} {v:.2f}" for g, v in
                                                        speed["kernel_ms_per_batch"]["median_total"].items()))
    print("throughput (faces/s, median of rounds): " + ", ".join(f"{k} {v:.0f}" for k, v in med.items())
          + "; after_int8 / before_int8 per round: " + ", ".join(f"{r:.3f}" for r in per_round))
    write_json(args.out, {
        "command": f"python scripts/int8_layout.py --before {args.before} --model {args.model}"
                   + (f" --split {args.split}" if args.split != "val" else "")
                   + (f" --rounds {args.rounds}" if args.rounds != 7 else "") + f" --out {args.out}",
        "checkpoint_sha256": sums["after"], "split": args.split, "n": int(len(labels)),
        "one_face_points": round(100 / len(labels), 3),
        "fp32_max_abs_logit_difference": fp32_diff,
        "calibration": {"faces": 512, "method": "percentile", "factors": factors, "scheme": "u8s8", "generator": "int8"},
        "timing": {"batch": 64, "threads": args.threads, "rounds": args.rounds, "warmup": 5, "iters": 50,
                   "profile": {"warmup": 5, "iters": 20, "faces": "fsrfer_edge.bench.random_faces (small-looking)"}},
        "fp32_accuracy_per_factor": {str(f): round(100 * float((ref["after"][f].argmax(1) == labels).mean()), 2)
                                     for f in factors},
        "graphs": rows, "speed": speed, "load_average_at_end": list(os.getloadavg())})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
