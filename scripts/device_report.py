"""What the CUDA checks of scripts/device_runs.sh measured, from the logs its calls brought back, as one JSON.

    python scripts/device_report.py CALL_DIR [CALL_DIR ...] --json results/device/checks.json

CALL_DIR: a call's unpacked results.tar.gz (its logs/checks.log and logs/pytest_gpu.log). Per call: the
versions and GPU identity the SDK's CUDA layer read, the gpu-marked tests' outcome (passed/skipped counts
and each skip's reason), and the GPU-vs-CPU first-epoch loss of tests/test_train_device.py.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

IDENTITY = re.compile(r"memory layer (\S+) identity DeviceIdentity\(compute_capability='([^']*)', name='([^']*)', "
                      r"multiprocessors=(\d+), memory_gib=(\d+)\) key (\S+)")
LOSS = re.compile(r"GPU vs CPU first-epoch loss: (\S+) vs (\S+), relative difference (\S+)")
COUNTS = re.compile(r"=+ (.*) in [\d.]+s")
SKIP = re.compile(r"SKIPPED \[(\d+)\] ([^:]+:\d+): (.*)")


def read_call(d: Path) -> dict[str, Any]:
    checks = (d / "logs" / "checks.log").read_text()
    tests = (d / "logs" / "pytest_gpu.log").read_text()
    out: dict[str, Any] = {"call": d.name}
    for line in checks.splitlines():
        if line.startswith("torch "):
            out["torch"] = line.split()[1]
        elif line.startswith("cuda-bindings "):
            out["cuda_bindings"] = line.split(maxsplit=1)[1]
        elif line.startswith("GPU 0: "):
            out["gpu"] = line[len("GPU 0: "):].split(" (UUID")[0]
    m = IDENTITY.search(checks)
    if m is None:
        raise SystemExit(f"{d}: checks.log has no GPU identity line; did the CUDA layer fail? (see the log)")
    out["cuda_layer"] = {"memory": m[1], "compute_capability": m[2], "name": m[3], "multiprocessors": int(m[4]),
                         "memory_gib": int(m[5]), "engine_key": m[6]}
    counts = COUNTS.findall(tests)
    if not counts:
        raise SystemExit(f"{d}: pytest_gpu.log has no pytest summary line")
    out["gpu_tests"] = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|deselected|error)", counts[-1])}
    out["gpu_tests"]["skips"] = [{"count": int(n), "where": w, "reason": r} for n, w, r in SKIP.findall(tests)]
    passed = re.findall(r"^PASSED (\S+)", tests, re.M)  # listed where pytest ran with -rA
    if passed:
        out["gpu_tests"]["passed_tests"] = passed
    loss = LOSS.search(tests)
    if loss:
        out["gpu_vs_cpu_first_epoch_loss"] = {"gpu": float(loss[1]), "cpu": float(loss[2]),
                                              "relative_difference": float(loss[3])}
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("calls", nargs="+", help="unpacked results.tar.gz of each device call")
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    from fsrfer_edge.fileio import write_json

    write_json(args.json, {"command": "python scripts/device_report.py " + " ".join(f"CALL_DIR{i + 1}" for i in
                                                                                 range(len(args.calls)))
                           + f" --json {args.json}", "calls": [read_call(Path(c)) for c in args.calls]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
