"""Which part of the shipped graph loses accuracy in INT8: each variant keeps one group of nodes in float.

    python scripts/int8_sensitivity.py      # writes results/ferplus/int8_sensitivity_val.json

Every variant is the u8s8 file ``fsrfer-export --int8 --int8-quantize-g`` makes (512 train faces, small crops
at every factor, percentile ranges; the factor estimator and FiLM in float). ``as_exported`` is that file;
``all_int8`` quantizes the conv that reads the image too (as the export did before this measurement), and
each other variant keeps one group of nodes in float on top of ``all_int8``
(``quantize_int8(keep_float=..., float_image_conv=False)``). Each is compared with the FP32 file on the FER+
val split, protocol (a), face by face:

- ``points_lost``: FP32 accuracy minus INT8 accuracy (what the edge-budget target reads);
- ``flips``: % of faces whose top-1 class changed, and ``lost`` / ``gained``: % that went from right to
  wrong / wrong to right. The points lost are ``lost - gained``, a difference of two counts, so a group
  is judged on ``flips`` and ``kl`` (how far INT8 moves the output), which are far less noisy;
- ``kl``: mean KL divergence of the INT8 softmax from the FP32 softmax (nats x 1000).

``input_rounding_only`` is no INT8 file: the FP32 file fed its input rounded to the 8-bit grid
``all_int8`` quantizes the input to (that file's QuantizeLinear scale and zero point on the graph input),
which separates what the input's quantization does from what the stem conv's weights do.

Val, not test: this chooses a setting. Accuracy only, no timing, so it may share the CPU.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: name -> (module-path prefixes kept in float beyond the export's own (factor estimator, FiLM, tail),
#: whether the conv that reads the image stays in float). "all_int8" is the export before the image conv
#: was kept in float; each group after it is kept in float on top of that, one at a time.
VARIANTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "as_exported": ((), True),
    "all_int8": ((), False),
    "g_stages_0_1": (("/generator/stages.0/", "/generator/stages.1/"), False),
    "g_stages_2_3": (("/generator/stages.2/", "/generator/stages.3/"), False),
    "g_stages_4_5": (("/generator/stages.4/", "/generator/stages.5/"), False),
    "g_refine": (("/generator/refine",), False),
    "upper_stages": (("/layers.6/", "/layers.7/"), False),
    "g_all": (("/generator/",), False),
}


def logits_per_factor(model: Path, images: Any, factors: list[int], threads: int,
                      transform: Optional[Callable[[Any], Any]] = None) -> dict[int, Any]:
    """Logits of ``model`` on every face at every factor, protocol (a), as ``fsrfer-eval`` computes them
    (``transform``, if given, applied to each batch of model inputs first)."""
    import numpy as np

    from trainer.evaluate import onnx_logits_fn, protocol_inputs

    fn, pre = onnx_logits_fn(model, threads)
    t = transform or (lambda x: x)
    return {f: np.concatenate([np.asarray(fn(t(protocol_inputs(images[s:s + 256], f, pre)), f))
                               for s in range(0, len(images), 256)]) for f in factors}


def parser(doc: str, out: Path) -> argparse.ArgumentParser:
    """The options this script and ``scripts/int8_film.py`` share: the FP32 model, the data, the split, threads
    and the output file (default ``out``)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "fsrfer_edge" / "models" / "default.onnx")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013.npz")
    ap.add_argument("--split", default="val")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=out)
    return ap


def io_problem(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with ``--model`` / ``--data`` (missing, unreadable) or ``--out`` (not writable), or None."""
    from fsrfer_edge.errors import InputError
    from fsrfer_edge.fileio import check_output_path, files_problem

    problem = files_problem(args.model, args.data)  # "" when both can be read
    if not problem:
        try:
            check_output_path(args.out, "--out", json_output=True)
        except InputError as exc:
            return str(exc)
    return problem or None


def faces_and_calibration(model: Path, data: Path, split: str, tmp: Path) -> tuple[Any, Any, list[int], Any]:
    """FER+ ``split``'s faces and labels, the factors, and ``model``'s INT8 calibration inputs: 512 faces of
    the train split as small crops at every factor in turn, as ``fsrfer-export --int8`` makes them."""
    import numpy as np

    from fsrfer_edge.export.calib import calibration_inputs
    from fsrfer_edge.export.onnx_export import read_model_info
    from fsrfer_edge.preprocessing import FACTORS
    from trainer.data import load_dataset

    fs = load_dataset(data, labels="ferplus")
    part = fs.subset(split)
    factors = [int(f) for f in FACTORS]
    train = tmp / "train.npz"
    np.savez(train, images=fs.images[fs.split == "train"])
    calib = calibration_inputs(train, 512, factors, read_model_info(model))
    return part.images, part.labels.astype(np.int64), factors, calib


def input_grid(path: Path, input_name: str) -> tuple[float, int]:
    """Scale and zero point of the QuantizeLinear an INT8 file applies to its graph input."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] == input_name:
            return float(init[node.input[1]]), int(init[node.input[2]])
    raise SystemExit(f"error: {path.name} does not quantize its input {input_name!r}")


def compare(ref: Any, got: Any, labels: Any) -> dict[str, float]:
    """Face-by-face comparison of INT8 logits with FP32 logits (see the module docstring)."""
    import numpy as np

    def softmax(z: Any) -> Any:
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p, q = softmax(ref.astype(np.float64)), softmax(got.astype(np.float64))
    a, b = ref.argmax(1) == labels, got.argmax(1) == labels
    kl = float(np.mean(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)), axis=1)))
    return {"points_lost": round(100 * float(a.mean() - b.mean()), 2),
            "flips": round(100 * float(np.mean(ref.argmax(1) != got.argmax(1))), 2),
            "lost": round(100 * float(np.mean(a & ~b)), 2), "gained": round(100 * float(np.mean(~a & b)), 2),
            "kl": round(1000 * kl, 3)}


def main(argv: Optional[list[str]] = None) -> int:
    ap = parser(__doc__, REPO / "results" / "ferplus" / "int8_sensitivity_val.json")
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    args = ap.parse_args(argv)
    import numpy as np

    from fsrfer_edge.export.onnx_export import read_model_info
    from fsrfer_edge.export.quantize import quantize_int8
    from fsrfer_edge.fileio import sha256_file, write_json

    problem = io_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    info = read_model_info(args.model)
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        images, labels, factors, calib = faces_and_calibration(args.model, args.data, args.split, Path(tmp))
        ref = logits_per_factor(args.model, images, factors, args.threads)
        for name in args.variants:
            path = Path(tmp) / f"{name}.int8-u8s8.onnx"
            prefixes, image_conv = VARIANTS[name]
            quantize_int8(args.model, path, calib, "u8s8", "percentile", quantize_generator=True,
                          keep_float=prefixes, float_image_conv=image_conv)
            got = logits_per_factor(path, images, factors, args.threads)
            per = {str(f): compare(ref[f], got[f], labels) for f in factors}
            rows[name] = {"keep_float": list(prefixes), "image_conv_float": image_conv, "per_factor": per,
                          "size_mb": round(path.stat().st_size / 2**20, 2)}
            if name == "all_int8":
                scale, zero = input_grid(path, info.input_name)
                rounded = logits_per_factor(args.model, images, factors, args.threads,
                                            lambda x: ((np.clip(np.rint(x / scale) + zero, 0, 255) - zero) * scale).astype(np.float32))
                rows["input_rounding_only"] = {"input_scale": scale, "input_zero_point": zero, "per_factor": {
                    str(f): compare(ref[f], rounded[f], labels) for f in factors}}
            print(f"{name:14s} " + "  ".join(f"x{f} lost {v['points_lost']:+.2f} flips {v['flips']:.2f} kl {v['kl']:.1f}"
                                             for f, v in per.items()), flush=True)
    write_json(args.out, {
        "command": " ".join(["python scripts/int8_sensitivity.py",
                             *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))]),
        "model": args.model.name, "model_sha256": sha256_file(args.model), "split": args.split, "n": int(len(labels)),
        "one_face_points": round(100 / len(labels), 3), "calibration": {"faces": 512, "method": "percentile",
                                                                        "factors": factors, "scheme": "u8s8"},
        "fp32_accuracy_per_factor": {str(f): round(100 * float((ref[f].argmax(1) == labels).mean()), 2) for f in factors},
        "variants": rows, "load_average_at_end": list(os.getloadavg())})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
