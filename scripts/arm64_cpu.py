"""The SDK's ONNX Runtime path on Arm CPUs, emulated with QEMU (docs/experiments.md, "The SDK on Arm CPUs").

    python scripts/arm64_cpu.py --qemu QEMU_AARCH64 --sysroot ROOT --site SITE     # results/ferplus/arm64_cpu_val.json

Needs, besides this checkout: ``qemu-aarch64-static`` (QEMU >= 7.2; Debian's ``qemu-user-static``), an aarch64
Python 3.11 in ``--sysroot`` (Debian bookworm's arm64 packages ``python3.11-minimal``, ``libpython3.11-stdlib`` and
the libraries they need, unpacked with ``dpkg -x``), and aarch64 wheels of numpy, onnx and onnxruntime in ``--site``
(``pip install --target SITE --platform manylinux_2_28_aarch64 --only-binary=:all: --python-version 3.11 numpy onnx
onnxruntime==1.32.0``); root, for a mount namespace: ONNX Runtime reads ``/proc/cpuinfo``, which under the
emulator is the host's x86 file (it crashes on it), so an Arm one for each CPU is bound over it for the run.

The first ``--limit`` FER+ val faces under protocol (a), x1..x8: the shipped FP32 file and its INT8 u8s8 file (made
as ``scripts/int8_avx2.py`` makes it) natively on this x86 CPU, then the FP32 file on the emulated ``cortex-a57`` and
the INT8 file on ``cortex-a57``, ``neoverse-n1`` and ``max``, each run in its own process. Writes ``--out``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
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

log = logging.getLogger("arm64_cpu")

#: Each emulated CPU: its /proc/cpuinfo part number and feature list (as Linux prints them on such a core).
CPUS = {
    "cortex-a57": ("0xd07", "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"),
    "neoverse-n1": ("0xd0c", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
                             "dcpop asimddp ssbs"),
    "max": ("0xd40", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc "
                     "dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg dcpodp "
                     "sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svebf16 i8mm bf16"),
}
#: (run name, file, CPU): what the rule measures.
RUNS = (("fp32 x86", "fp32", None), ("int8 x86", "int8", None), ("fp32 cortex-a57", "fp32", "cortex-a57"),
        ("int8 cortex-a57", "int8", "cortex-a57"), ("int8 neoverse-n1", "int8", "neoverse-n1"),
        ("int8 max", "int8", "max"))
MAX_DISAGREEMENT = 1.0  # % of faces
MAX_INT8_DROP = 0.5  # points


def cpuinfo(cpu: str, cores: int = 2) -> str:
    part, features = CPUS[cpu]
    block = (f"BogoMIPS\t: 50.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
             f"CPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 1\n")
    return "".join(f"processor\t: {i}\n{block}\n" for i in range(cores))


def prefix(qemu: Path, sysroot: Path, site: Path, cpu: str, cpuinfo_file: Path) -> list[str]:
    """The command that runs an aarch64 program under the emulator as ``cpu``, with an Arm /proc/cpuinfo."""
    return ["unshare", "-m", "sh", "-c", f'mount --bind {cpuinfo_file} /proc/cpuinfo && exec "$@"', "sh",
            str(qemu), "-L", str(sysroot), "-cpu", cpu, "-E", f"PYTHONPATH={site}:{REPO}"]


def summarise(labels: np.ndarray, runs: dict[str, dict[str, Any]], factors: Sequence[int]) -> dict[str, Any]:
    def top1(name: str, f: int) -> np.ndarray:
        return np.asarray(runs[name]["logits"][f"x{f}"]).argmax(1)

    acc = {name: {str(f): round(100.0 * float((top1(name, f) == labels).mean()), 2) for f in factors} for name in runs}
    out: dict[str, Any] = {"accuracy": acc, "disagreement_with_x86": {}, "int8_drop_vs_arm_fp32": {},
                           "max_logit_difference_with_x86": {}}
    for name in runs:
        file, where = name.split(" ", 1)
        if where == "x86":
            continue
        ref = f"{file} x86"
        out["disagreement_with_x86"][name] = {str(f): round(100.0 * float((top1(name, f) != top1(ref, f)).mean()), 2)
                                              for f in factors}
        out["max_logit_difference_with_x86"][name] = round(max(float(np.abs(
            np.asarray(runs[name]["logits"][f"x{f}"]) - np.asarray(runs[ref]["logits"][f"x{f}"])).max())
            for f in factors), 4)
        if file == "int8":
            out["int8_drop_vs_arm_fp32"][name] = {str(f): round(acc["fp32 cortex-a57"][str(f)] - acc[name][str(f)], 2)
                                                  for f in factors}
    worst_dis = max(max(v.values()) for v in out["disagreement_with_x86"].values())
    worst_drop = max(max(v.values()) for v in out["int8_drop_vs_arm_fp32"].values())
    out["verdict"] = {"worst_disagreement_percent": worst_dis, "worst_int8_drop_points": worst_drop,
                      "problem": bool(worst_dis > MAX_DISAGREEMENT or worst_drop > MAX_INT8_DROP)}
    return out


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="arm64_cpu.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--qemu", type=Path, required=True, help="qemu-aarch64-static (QEMU >= 7.2)")
    p.add_argument("--sysroot", type=Path, required=True, help="the unpacked aarch64 Debian packages")
    p.add_argument("--site", type=Path, required=True, help="aarch64 numpy, onnx and onnxruntime")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013.npz")
    p.add_argument("--limit", type=int, default=500, help="the val split's first N faces (default 500)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "results" / "ferplus" / "arm64_cpu_val.json")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        python = args.sysroot / "usr" / "bin" / "python3.11"
        for path, what in ((args.qemu, "the qemu-aarch64-static binary"), (python, "an aarch64 python3.11 in --sysroot"),
                           (args.site / "onnxruntime", "aarch64 onnxruntime in --site")):
            if not path.exists():
                raise InputError(f"{path} does not exist; expected {what}")
        if not args.data.is_file():
            raise DataError(f"--data {args.data} does not exist; expected the FER2013 archive (../shared/data)")
        check_output_path(args.out, "--out", json_output=True)
        return measure(args, python, sys.argv[1:] if argv is None else list(argv))
    except FsrferError as exc:
        print(f"arm64_cpu.py: error: {one_line(exc)}", file=sys.stderr)
        return 2


def measure(args: argparse.Namespace, python: Path, argv: Sequence[str]) -> int:
    from edge_budget import make_int8
    from int8_avx2 import _qemu_version, make_inputs, run_worker

    from fsrfer_edge.bench import machine_info

    factors = list(FACTORS)
    with tempfile.TemporaryDirectory(prefix="arm64_cpu_") as tmp_name:
        tmp = Path(tmp_name)
        int8 = tmp / "default.int8-u8s8.onnx"
        made = make_int8(DEFAULT_MODEL, int8, args.data, None, 512, "percentile", True)
        made["sha256"] = sha256_file(int8)
        files = {"fp32": DEFAULT_MODEL, "int8": int8}
        inputs = tmp / "inputs.npz"
        labels = make_inputs(args.data, "val", factors, args.limit, inputs)
        runs: dict[str, dict[str, Any]] = {}
        for name, key, cpu in RUNS:
            log.info("%s: %s", name, files[key].name)
            if cpu is None:
                runs[name] = run_worker(files[key], inputs, tmp / "w.npz", args.threads, None)
            else:
                info = tmp / f"cpuinfo-{cpu}"
                info.write_text(cpuinfo(cpu))
                runs[name] = run_worker(files[key], inputs, tmp / "w.npz", args.threads, None,
                                        prefix=prefix(args.qemu, args.sysroot, args.site, cpu, info), python=str(python))
            log.info("  %.0f s, probe %d", runs[name]["wall_seconds"], runs[name]["probe"])
        summary = summarise(labels, runs, factors)
    doc = {
        "command": "python scripts/arm64_cpu.py " + " ".join(argv),
        "rule": "docs/experiments.md, 'The SDK on Arm CPUs' (written 2026-12-06 07:03 UTC)",
        "machine": machine_info(), "emulator": {"binary": args.qemu.name, "version": _qemu_version(args.qemu),
                                                "cpus": {cpu: {"cpuinfo_part": p, "features": f} for cpu, (p, f) in CPUS.items()}},
        "data": args.data.name, "split": "val", "n": int(len(labels)), "protocol": "resized (a)",
        "files": {"fp32": {"path": str(DEFAULT_MODEL.relative_to(REPO)), "sha256": sha256_file(DEFAULT_MODEL)},
                  "int8": made},
        "probe_matmulinteger": {name: r["probe"] for name, r in runs.items()},
        "seconds": {name: round(r["wall_seconds"], 1) for name, r in runs.items()},
        **summary,
    }
    out = write_json(args.out, doc)
    log.info("%s", json.dumps({"accuracy": doc["accuracy"], "verdict": doc["verdict"]}, indent=1))
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
