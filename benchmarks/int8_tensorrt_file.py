"""The shipped default's s8s8 (TensorRT) INT8 file: does it pass the TensorRT check, where are its Q/DQ
nodes, and how close is it to FP32 (ONNX Runtime CPU runs the Q/DQ graph; a TensorRT engine built from it
is measured by scripts/device_check.sh on a device).

    python benchmarks/int8_tensorrt_file.py [--data ../shared/data/fer2013.npz] [--out benchmarks/results/int8_tensorrt_file.json]

Calibration: --calib-size faces of the train split (fixed seed), percentile, each a small crop at one of
--calib-factors in turn, as fsrfer-export does (a routed graph needs faces on both of its paths).
Evaluation: the val split with FER+ labels (as fsrfer-eval reads them), each face as the small crop at every
--factors (protocol (b)), so both paths of a routed graph are measured; ``per_factor`` holds each factor,
the top-level figures are the first factor's (x1 by default).
For comparison, the same calibration with ONNX Runtime's default Q/DQ placement (INT32 biases, Q/DQ after
every Conv), which was the s8s8 file before issue 13 and which TensorRT's parser refuses.
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    from fsrfer_edge.export import quantize, trt_check
    from fsrfer_edge.bench import parse_int_list
    from fsrfer_edge.export.calib import faces_to_pixels, mix_factors, to_model_input
    from fsrfer_edge.export.onnx_export import load_onnx, read_model_info
    from fsrfer_edge.ferplus import load_labelled_faces
    from fsrfer_edge.fileio import sha256_file, write_json
    from fsrfer_edge.preprocessing import FACTORS
    from fsrfer_edge.recognizer import DEFAULT_MODEL

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013.npz")
    p.add_argument("--calib-size", type=int, default=256)
    p.add_argument("--calib-factors", type=parse_int_list, default=FACTORS, help="default 1,2,3,4,6,8")
    p.add_argument("--factors", type=parse_int_list, default=FACTORS, help="evaluated factors (default 1,2,3,4,6,8)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "int8_tensorrt_file.json")
    args = p.parse_args(argv)
    import onnxruntime as ort

    info = read_model_info(load_onnx(DEFAULT_MODEL))
    train = load_labelled_faces(args.data, split="train").images
    calib_faces = train[np.random.default_rng(0).permutation(len(train))[:args.calib_size]]
    calib = to_model_input(faces_to_pixels(mix_factors(list(calib_faces), args.calib_factors), info), info)
    val = load_labelled_faces(args.data, split="val")
    keep = val.labels >= 0
    y = val.labels[keep]
    xs = {f: to_model_input(faces_to_pixels(mix_factors(list(val.images[keep]), (f,)), info), info)
          for f in args.factors}
    with tempfile.TemporaryDirectory() as tmp:
        s8 = Path(tmp) / "default.int8-s8s8.onnx"
        quantize.quantize_int8(DEFAULT_MODEL, s8, calib, "s8s8", "percentile")
        report = trt_check.check_file(s8)
        model = load_onnx(s8)
        ops = collections.Counter(n.op_type for n in model.graph.node)

        def logits(path: Path) -> dict[int, np.ndarray]:
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            return {f: np.concatenate([sess.run(None, {info.input_name: x[i:i + 256]})[0] for i in range(0, len(x), 256)])
                    for f, x in xs.items()}

        refs, qs = logits(DEFAULT_MODEL), logits(s8)
        old = Path(tmp) / "ort-defaults.onnx"
        _ort_default_placement(DEFAULT_MODEL, old, calib, info.input_name)
        q_olds, old_report = logits(old), trt_check.check_file(old)

    def scores(ref: np.ndarray, q: np.ndarray, q_old: np.ndarray) -> dict[str, Any]:
        return {"top1_agreement_with_fp32": float((q.argmax(1) == ref.argmax(1)).mean()),
                "accuracy_percent": {"fp32": float(100 * (ref.argmax(1) == y).mean()),
                                     "int8-s8s8": float(100 * (q.argmax(1) == y).mean())},
                "max_abs_logit_diff": float(np.abs(q - ref).max()),
                "before_issue_13": {"top1_agreement_with_fp32": float((q_old.argmax(1) == ref.argmax(1)).mean()),
                                    "accuracy_percent": float(100 * (q_old.argmax(1) == y).mean())}}

    per_factor = {str(f): scores(refs[f], qs[f], q_olds[f]) for f in args.factors}
    first = per_factor[str(args.factors[0])]
    doc = {"model": str(DEFAULT_MODEL.relative_to(REPO)), "model_sha256": sha256_file(DEFAULT_MODEL),
           "data": str(args.data), "split": "val", "labels": val.label_set, "faces": int(len(y)),
           "calibration": {"split": "train", "faces": int(len(calib)), "method": "percentile", "seed": 0,
                           "factors": list(args.calib_factors)},
           "protocol": "small", "factors": list(args.factors),
           "tensorrt_check": {"ok": report.ok, "tables": report.tables, "errors": report.errors,
                              "int8_layers": len(report.int8_layers), "float_layers": len(report.float_layers)},
           "qdq_nodes": {"QuantizeLinear": ops["QuantizeLinear"], "DequantizeLinear": ops["DequantizeLinear"]},
           "top1_agreement_with_fp32": first["top1_agreement_with_fp32"],
           "accuracy_percent": first["accuracy_percent"], "max_abs_logit_diff": first["max_abs_logit_diff"],
           "before_issue_13": {"placement": "onnxruntime defaults (INT32 biases, Q/DQ after every Conv)",
                               "tensorrt_check_ok": old_report.ok, "tensorrt_check_errors": len(old_report.errors),
                               **first["before_issue_13"]},
           "per_factor": per_factor,
           "command": "python benchmarks/int8_tensorrt_file.py" + "".join(f" {a}" for a in (argv or sys.argv[1:])),
           "runtime": f"onnxruntime {ort.__version__} CPU (Q/DQ emulated in float; not a TensorRT engine)"}
    write_json(args.out, doc)
    print(f"wrote {args.out}: check {'ok' if report.ok else 'FAILED'}, agreement {doc['top1_agreement_with_fp32']:.4f}, "
          f"accuracy fp32 {doc['accuracy_percent']['fp32']:.2f} int8 {doc['accuracy_percent']['int8-s8s8']:.2f}")
    return 0


def _ort_default_placement(src: Path, dst: Path, calib: np.ndarray, input_name: str) -> None:
    """The s8s8 file as quantize_int8 made it before issue 13: ONNX Runtime's default QDQ placement (one batch of
    all calibration faces, as quantize_int8 calibrates a routed graph: each path's tensors have as many rows as
    faces took it, which ONNX Runtime's histogram calibrators cannot stack across batches)."""
    from onnxruntime import quantization as q

    from fsrfer_edge.export.calib import FaceCalibrationReader
    from fsrfer_edge.export.onnx_export import load_onnx
    from fsrfer_edge.export.quantize import float_tail_nodes

    q.quantize_static(str(src), str(dst), FaceCalibrationReader(calib, input_name, len(calib)), quant_format=q.QuantFormat.QDQ,
                      per_channel=True, activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                      calibrate_method=q.CalibrationMethod.Percentile, nodes_to_exclude=float_tail_nodes(load_onnx(src)),
                      extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})


if __name__ == "__main__":
    sys.exit(main())
