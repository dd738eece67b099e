"""The shipped model's INT8 u8s8 file on an x86 CPU without VNNI (AVX2 only), emulated with QEMU.

    python scripts/int8_avx2.py --qemu /path/to/qemu-x86_64-static     # writes results/ferplus/int8_avx2_val.json

QEMU without installing it (Debian/Ubuntu): ``apt-get download qemu-user-static && dpkg -x qemu-user-static_*.deb
qemu``, then ``--qemu qemu/usr/bin/qemu-x86_64-static``.

On CPUs with VNNI (or AMX) ONNX Runtime's u8s8 kernels add every uint8 x int8 product exactly in int32. On AVX2
CPUs without VNNI they use ``VPMADDUBSW``, which adds pairs of products in int16 and saturates them (ONNX
Runtime's quantization guide warns of it). ``qemu-x86_64-static -cpu Haswell`` (QEMU >= 7.2, whose TCG emulates
AVX2; Debian's ``qemu-user-static``) runs this same Python and ONNX Runtime and answers CPUID as a Haswell, so
ONNX Runtime picks its AVX2 kernels. The rule this script answers is in docs/experiments.md ("The INT8 u8s8 file
on CPUs without VNNI").

Steps, each model run in its own process:
1. a probe (a ``MatMulInteger`` of 64 products 255 x 127) natively and under the emulator: exact and saturated
   sums show which kernels each ran;
2. the shipped FP32 file's INT8 u8s8 file, made as ``scripts/edge_budget.py --int8-quantize-g`` makes it;
3. FER+ ``--split`` faces under protocol (a) (down-sample by each factor, resize back: the edge budget's
   accuracy protocol), made once here; each file's logits natively, and each INT8 file's under the emulator;
4. accuracy per factor, each INT8 run's loss against FP32 and against itself run natively, top-1 agreement.

Writes ``--out`` atomically. Exit status 0 when measured, 2 on an error (no emulator, no data).
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from fsrfer_edge.errors import CliParser, DataError, FsrferError, InputError, one_line  # noqa: E402
from fsrfer_edge.fileio import check_output_path, sha256_file, write_json  # noqa: E402
from fsrfer_edge.preprocessing import FACTORS  # noqa: E402
from fsrfer_edge.recognizer import DEFAULT_MODEL  # noqa: E402

log = logging.getLogger("int8_avx2")

#: The CPU model the emulator answers CPUID as: AVX2 and FMA, no AVX-512, no VNNI.
CPU = "Haswell"
#: The probe: K products of 255 x 127; their exact sum, and what int16-saturated pairs give.
PROBE_K = 64
PROBE_EXACT = 255 * 127 * PROBE_K
PROBE_SATURATED = 32767 * PROBE_K // 2
#: The rule's lines (points).
MAX_DROP_VS_FP32 = 0.5
MAX_DROP_VS_NATIVE = 0.3


def probe() -> int:
    """The MatMulInteger probe's first output on this CPU."""
    import onnx  # noqa: F401  (the helper below needs it)
    import onnxruntime as ort
    from onnx import TensorProto, helper

    w = np.full((PROBE_K, 8), 127, np.int8)
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "W"], ["Y"])], "probe",
                              [helper.make_tensor_value_info("A", TensorProto.UINT8, [1, PROBE_K])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, [1, 8])],
                              [helper.make_tensor("W", TensorProto.INT8, [PROBE_K, 8], w.flatten().tolist())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return int(sess.run(None, {"A": np.full((1, PROBE_K), 255, np.uint8)})[0][0, 0])


def worker(model: Path, inputs: Path, out: Path, threads: int) -> None:
    """Every factor's logits of ``model`` on the saved inputs, to ``out`` (.npz)."""
    from trainer.evaluate import onnx_logits_fn

    fn, _ = onnx_logits_fn(model, threads)
    saved = np.load(inputs)
    logits = {}
    t0 = time.perf_counter()
    for key in saved.files:
        x = saved[key]
        logits[key] = np.concatenate([fn(x[s:s + 256]) for s in range(0, len(x), 256)])
    np.savez(out, seconds=time.perf_counter() - t0, probe=probe(), **logits)


def run_worker(model: Path, inputs: Path, out: Path, threads: int, qemu: Optional[Path],
               prefix: Optional[Sequence[str]] = None, python: str = sys.executable) -> dict[str, Any]:
    """:func:`worker` in its own process: natively, under ``qemu -cpu`` :data:`CPU`, or after ``prefix`` (another
    emulator's command line) with ``python`` (that emulator's interpreter)."""
    if prefix is None:
        prefix = [str(qemu), "-cpu", CPU] if qemu else []
    cmd = list(prefix) + [python, __file__, "--worker", str(model), "--inputs", str(inputs), "--worker-out", str(out),
                          "--threads", str(threads)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(line for line in proc.stderr.splitlines() if "TCG doesn't support" not in line)[-2000:]
        raise FsrferError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}): {tail}")
    with np.load(out) as z:
        got = {k: z[k] for k in z.files}
    return {"logits": {k: v for k, v in got.items() if k.startswith("x")}, "probe": int(got["probe"]),
            "seconds": float(got["seconds"]), "wall_seconds": time.perf_counter() - t0}


def make_inputs(data: Path, split: str, factors: Sequence[int], limit: Optional[int], dst: Path) -> np.ndarray:
    """Protocol (a) model inputs per factor, saved to ``dst``; returns the labels."""
    from trainer.data import load_dataset
    from trainer.evaluate import protocol_inputs
    from fsrfer_edge.export.onnx_export import read_model_info

    fs = load_dataset(data, labels="ferplus").subset(split)
    images, labels = fs.images, fs.labels.astype(np.int64)
    if limit:
        images, labels = images[:limit], labels[:limit]
    pre = read_model_info(DEFAULT_MODEL).preprocessing
    np.savez(dst, **{f"x{f}": protocol_inputs(images, int(f), pre, "resized") for f in factors})
    return labels


def summarise(labels: np.ndarray, runs: dict[str, dict[str, Any]], factors: Sequence[int]) -> dict[str, Any]:
    acc = {name: {str(f): round(100.0 * float((r["logits"][f"x{f}"].argmax(1) == labels).mean()), 2)
                  for f in factors} for name, r in runs.items()}
    out: dict[str, Any] = {"accuracy": acc, "drops": {}, "agreement": {}}
    for name in runs:
        if name == "fp32":
            continue
        ref = name.replace("emulated", "native")
        drop = {"vs_fp32": {str(f): round(acc["fp32"][str(f)] - acc[name][str(f)], 2) for f in factors}}
        if ref != name:
            drop["vs_native"] = {str(f): round(acc[ref][str(f)] - acc[name][str(f)], 2) for f in factors}
            out["agreement"][name] = {str(f): round(100.0 * float(
                (runs[ref]["logits"][f"x{f}"].argmax(1) == runs[name]["logits"][f"x{f}"].argmax(1)).mean()), 2)
                for f in factors}
            out["agreement"][name + " max |logit difference|"] = round(max(float(np.abs(
                runs[ref]["logits"][f"x{f}"] - runs[name]["logits"][f"x{f}"]).max()) for f in factors), 4)
        out["drops"][name] = drop
    return out


def verdict(summary: dict[str, Any], name: str) -> dict[str, Any]:
    d = summary["drops"][name]
    worst_fp32 = max(d["vs_fp32"].values())
    worst_native = max(d["vs_native"].values())
    return {"worst_drop_vs_fp32": worst_fp32, "worst_drop_vs_native": worst_native,
            "problem": bool(worst_fp32 > MAX_DROP_VS_FP32 or worst_native > MAX_DROP_VS_NATIVE)}


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="int8_avx2.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--qemu", type=Path, help="qemu-x86_64-static (QEMU >= 7.2)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013.npz")
    p.add_argument("--split", default="val", choices=("val", "test"))
    p.add_argument("--limit", type=int, default=None, help="the split's first N faces only (a quick look)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "results" / "ferplus" / "int8_avx2_val.json")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        worker(args.worker, args.inputs, args.worker_out, args.threads)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.qemu is None or not args.qemu.is_file():
            raise InputError(f"--qemu {args.qemu}: expected the qemu-x86_64-static binary (QEMU >= 7.2)")
        if not args.data.is_file():
            raise DataError(f"--data {args.data} does not exist; expected the FER2013 archive (../shared/data)")
        check_output_path(args.out, "--out", json_output=True)
        return measure(args, sys.argv[1:] if argv is None else list(argv))
    except FsrferError as exc:
        print(f"int8_avx2.py: error: {one_line(exc)}", file=sys.stderr)
        return 2


def measure(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from edge_budget import make_int8

    from fsrfer_edge.bench import machine_info

    factors = list(FACTORS)
    with tempfile.TemporaryDirectory(prefix="int8_avx2_") as tmp_name:
        tmp = Path(tmp_name)
        files = {"fp32": DEFAULT_MODEL}
        made = {}
        int8 = tmp / "default.int8-u8s8.onnx"
        made["int8"] = make_int8(DEFAULT_MODEL, int8, args.data, None, 512, "percentile", True)
        made["int8"]["sha256"] = sha256_file(int8)
        committed = json.loads((REPO / "results" / "edge_budget.json").read_text())["models"]["candidate_int8"]
        made["int8"]["same_file_as_results/edge_budget.json"] = made["int8"]["sha256"] == committed["sha256"]
        files["int8"] = int8
        inputs = tmp / "inputs.npz"
        labels = make_inputs(args.data, args.split, factors, args.limit, inputs)
        runs: dict[str, dict[str, Any]] = {}
        plan = [("fp32", "fp32", None), ("int8 native", "int8", None), ("int8 emulated", "int8", args.qemu)]
        for name, key, qemu in plan:
            log.info("%s: %s%s", name, files[key].name, f" under {args.qemu.name} -cpu {CPU}" if qemu else "")
            runs[name] = run_worker(files[key], inputs, tmp / f"{name.replace(' ', '_')}.npz", args.threads, qemu)
            log.info("  %.0f s", runs[name]["wall_seconds"])
        summary = summarise(labels, runs, factors)
    probes = {name: r["probe"] for name, r in runs.items()}
    doc = {
        "command": "python scripts/int8_avx2.py " + " ".join(argv),
        "rule": "docs/experiments.md, 'The INT8 u8s8 file on CPUs without VNNI' (written 2026-12-06 06:11 UTC)",
        "machine": machine_info(),
        "emulator": {"binary": args.qemu.name, "cpu": CPU, "version": _qemu_version(args.qemu)},
        "probe": {"exact": PROBE_EXACT, "saturated": PROBE_SATURATED, **probes,
                  "emulator_saturates": probes["int8 emulated"] == PROBE_SATURATED,
                  "host_exact": probes["int8 native"] == PROBE_EXACT},
        "data": str(args.data.name), "split": args.split, "n": int(len(labels)), "protocol": "resized (a)",
        "files": {"fp32": {"path": str(DEFAULT_MODEL.relative_to(REPO)), "sha256": sha256_file(DEFAULT_MODEL)},
                  "int8": made["int8"]},
        "seconds": {name: round(r["wall_seconds"], 1) for name, r in runs.items()},
        **summary,
        "verdict": {"int8 emulated": verdict(summary, "int8 emulated")},
    }
    out = write_json(args.out, doc)
    log.info("%s", json.dumps({"accuracy": doc["accuracy"], "verdict": doc["verdict"]}, indent=1))
    log.info("wrote %s", out)
    return 0


def _qemu_version(qemu: Path) -> str:
    proc = subprocess.run([str(qemu), "--version"], capture_output=True, text=True)
    return proc.stdout.splitlines()[0] if proc.stdout else ""


if __name__ == "__main__":
    sys.exit(main())
