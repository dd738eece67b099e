"""Edge budget of a candidate expression model against today's shipped model, measured in one run.

    python scripts/edge_budget.py                                   # the shipped model against itself
    python scripts/edge_budget.py --candidate engines/new.fp32.onnx  # a candidate against the shipped model

Issue 12's "Edge budget" targets, on ONNX Runtime CPU at batch 64 (``--batch``):

- the candidate's FP32 throughput is at least 0.7x the reference's (default reference: the shipped
  ``fsrfer_edge/models/default.onnx``);
- the candidate's INT8 u8s8 file is at least 3x the candidate FP32 file's throughput;
- it loses at most 0.5 accuracy points against the FP32 file at any down-sample factor on FER+
  (``--split``, test by default), evaluated as ``fsrfer-eval`` does.

Absolute speeds on a shared 2-core machine vary several-fold, so the three files are timed against
each other in one run: each timing is ``fsrfer-bench`` (``python -m fsrfer_edge.bench``) in its own
process (two ONNX Runtime sessions in one process steal each other's cores), in ``--rounds``
interleaved rounds with a rotating order; the figures are medians over the rounds, and the load
average is recorded beside every timing. Ratios are the ratios of the medians.

Without ``--candidate-int8`` the INT8 file is made here, into a temporary folder, as
``scripts/reproduce.sh`` makes it: ``quantize_int8`` (u8s8, percentile calibration on small crops at every
factor in turn (``--calib-factors``), G quantized when it starts
early, as ``fsrfer-export`` decides; ``--int8-quantize-g`` / ``--int8-float-g`` choose) on 512 faces of the data set's FER+ train split, then checked against the
FP32 file as ``fsrfer-export`` checks it. Writes ``--out`` (default results/edge_budget.json) atomically.
Exit status: 0 when measured (targets may pass or fail; see the JSON), 2 on an error.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fsrfer_edge.errors import (
    CliParser,
    DataError,
    FsrferError,
    InputError,
    ModelError,
    one_line,
)
from fsrfer_edge.bench import machine_info, parse_int_list
from fsrfer_edge.fileio import check_output_path, file_problem, sha256_file, write_json
from fsrfer_edge.preprocessing import FACTORS
from fsrfer_edge.recognizer import DEFAULT_MODEL

log = logging.getLogger("edge_budget")

SCHEMA = "fsrfer-edge-budget/1"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "fer2013.npz"
DEFAULT_OUT = REPO / "results" / "edge_budget.json"
#: Issue 12's edge-budget thresholds.
MIN_FP32_VS_REFERENCE = 0.7
MIN_INT8_VS_FP32 = 3.0
MAX_INT8_DROP_POINTS = 0.5
#: Timed files, in the order of round 0 (later rounds rotate it).
ROLES = ("reference_fp32", "candidate_fp32", "candidate_int8")
#: Calibration as scripts/reproduce.sh runs fsrfer-export: 512 train faces, percentile ranges.
CALIB_SIZE = 512
CALIB_METHOD = "percentile"

#: (model path, batch, threads, warmup, iters) -> one timing (see :func:`time_in_subprocess`).
Timer = Callable[[Path, int, int, int, int], "dict[str, Any]"]


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
def _existing(path: Path, what: str) -> Path:
    problem = file_problem(path)
    if problem:
        raise InputError(f"{what} {path} {problem}; expected an fsrfer .onnx file")
    return path


def check_model(path: Path, what: str, precision: str, scheme: str = "") -> dict[str, Any]:
    """Path, sha256 and precision of an fsrfer ONNX file, refusing one of another precision or scheme.

    Raises:
        InputError: the file is missing. ModelError: no fsrfer metadata, or the wrong precision/scheme.
    """
    from fsrfer_edge.export.onnx_export import read_model_info

    _existing(path, what)
    info = read_model_info(path)
    if info.precision != precision or (scheme and info.int8_scheme != scheme):
        got = info.precision + (f" {info.int8_scheme}" if info.int8_scheme else "")
        raise ModelError(f"{what} {path} is {got}; expected {precision} {scheme}".rstrip())
    return {"path": _show(path), "sha256": sha256_file(path), "precision": info.precision,
            "int8_scheme": info.int8_scheme or None, "size_mb": round(path.stat().st_size / 2**20, 2)}


def _show(path: Path) -> str:
    """``path`` relative to the repository where it lies inside it (JSON that does not name this machine)."""
    full = path.resolve()
    for base, prefix in ((REPO, ""), (REPO.parent, "../")):
        try:
            return prefix + str(full.relative_to(base))
        except ValueError:
            pass
    return str(path)


def make_int8(fp32: Path, dst: Path, data: Optional[Path], calib: Optional[Path], calib_size: int,
              calib_method: str, quantize_g: Optional[bool], calib_factors: Sequence[int] = FACTORS,
              quantize_film: Optional[bool] = None) -> dict[str, Any]:
    """The candidate's INT8 u8s8 file, made and checked as ``fsrfer-export --int8`` makes and checks it.

    Calibration faces come from ``calib`` (an .npz's train rows or a folder, as ``fsrfer-export --calib``
    reads it), else from the FER+ train split of ``data``, sampled as ``scripts/reproduce.sh`` does
    (it saves that split to an .npz and exports with ``--calib-size 512``).

    Returns:
        How the file was made (calibration source, faces, method, G, seconds) and the FP32 -> INT8 check.

    Raises:
        ExportCheckError: the INT8 logits are outside the exporter's INT8 tolerance.
        DataError, ModelError: as the loaders and the quantizer raise them.
    """
    import numpy as np

    from fsrfer_edge.export import check
    from fsrfer_edge.export.calib import calibration_inputs, load_faces
    from fsrfer_edge.export.cli import CHECK_FACES
    from fsrfer_edge.export.onnx_export import read_model_info
    from fsrfer_edge.export.onnx_export import load_onnx
    from fsrfer_edge.export.quantize import quantize_int8, resolve_quantize_film, resolve_quantize_generator

    t0 = time.perf_counter()
    info = read_model_info(fp32)
    source = calib
    described = _show(calib) if calib is not None else ""
    if source is None:
        if data is None:
            raise DataError("no calibration faces for the INT8 file: pass --candidate-int8 FILE, --calib PATH or --data NPZ")
        from trainer.data import load_dataset

        fs = load_dataset(data, labels="ferplus")
        train = fs.split == "train"
        if not train.any():
            raise DataError(f"{data} has no 'train' faces for INT8 calibration; pass --calib PATH")
        source = dst.parent / "calib_faces.npz"
        np.savez(source, images=fs.images[train], split=fs.split[train])
        described = f"{_show(data)} (FER+ train split)"
    calib_inputs = calibration_inputs(source, calib_size, calib_factors, info)
    graph = load_onnx(fp32)
    quantize_g = resolve_quantize_generator(graph, quantize_g)
    film = resolve_quantize_film(graph, "u8s8", quantize_film)
    log.info("quantizing %s to u8s8 (%d faces, %s, G %s, FiLM %s)", fp32.name, len(calib_inputs), calib_method,
             "int8" if quantize_g else "float", "int8" if film else "float")
    quantize_int8(fp32, dst, calib_inputs, "u8s8", calib_method, quantize_generator=quantize_g, quantize_film=film)
    faces = check.face_pixels(load_faces(source, size=CHECK_FACES, seed=1), info)
    checked = check.check_step("fp32->int8-u8s8", check.onnx_runner(fp32), check.onnx_runner(dst), "int8",
                               check.random_pixels(info), faces)
    return {"made_by": "fsrfer_edge.export.quantize.quantize_int8 (scheme u8s8)",
            "calibration": {"source": described,
                            "faces": len(calib_inputs), "method": calib_method,
                            "factors": list(calib_factors),
                            "generator": "int8" if quantize_g else "float",
                            "film_maps": "int8" if film else "float"},
            "check": checked, "seconds": round(time.perf_counter() - t0, 1)}


# ---------------------------------------------------------------------------------------------
# Throughput
# ---------------------------------------------------------------------------------------------
def loadavg() -> Optional[list[float]]:
    """The 1, 5 and 15-minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def bench_in_subprocess(model: Path, batch_sizes: Sequence[int], threads: int, warmup: int, iters: int,
                        sessions: Optional[int] = None) -> dict[str, Any]:
    """``fsrfer-bench`` on the CPU provider in a fresh process (two ONNX Runtime sessions in one process steal
    each other's cores); returns its JSON document.

    Raises:
        ModelError: the benchmark process failed (its last error line is in the message).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory(prefix="fsrfer-budget-") as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "fsrfer_edge.bench", "--model", str(model), "--batch-sizes",
               ",".join(map(str, batch_sizes)), "--threads", str(threads), "--warmup", str(warmup), "--iters",
               str(iters), "--overhead-batch", "0", "--providers", "cpu", "--backend", "onnxruntime",
               "--json", str(out), "-q"] + (["--sessions", str(sessions)] if sessions is not None else [])
        proc = subprocess.run(cmd, env=env, cwd=str(REPO), capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelError(f"timing {model} failed (fsrfer-bench exit {proc.returncode}): {last}")
        doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def time_in_subprocess(model: Path, batch: int, threads: int, warmup: int, iters: int) -> dict[str, Any]:
    """Throughput of one file at one batch size (:func:`bench_in_subprocess`).

    Returns:
        ``throughput_fps`` (faces/s at the median batch latency), ``p50_ms``, ``min_ms``, the 1-minute
        load average just before and after the timing (measured in that process) and ``seconds``.

    Raises:
        ModelError: the benchmark process failed (its last error line is in the message).
    """
    t0 = time.perf_counter()
    doc = bench_in_subprocess(model, [batch], threads, warmup, iters)
    lat = doc["latency"][0]
    return {"throughput_fps": float(lat["throughput_fps"]), "p50_ms": float(lat["p50_ms"]),
            "min_ms": float(lat["min_ms"]), "load_before": doc["load_average"]["before"],
            "load_after": doc["load_average"]["after"], "seconds": round(time.perf_counter() - t0, 2)}


def calibration_data(data: Path) -> Path:
    """``data`` where it is a file: the FER2013 archive whose FER+ train faces calibrate INT8 files made here.

    Raises:
        DataError: it does not exist.
    """
    if not Path(data).is_file():
        raise DataError(f"--data {data} does not exist; expected fer2013.npz with ferplus_labels.npz beside it "
                        "(INT8 calibration faces)")
    return Path(data)


def round_order(r: int, roles: Sequence[str] = ROLES) -> list[str]:
    """Round ``r``'s order: ``roles`` rotated by ``r``, so no file is always first or always last."""
    k = r % len(roles)
    return list(roles[k:]) + list(roles[:k])


def measure_rounds(models: dict[str, Path], rounds: int, batch: int, threads: int, warmup: int, iters: int,
                   timer: Timer = time_in_subprocess) -> dict[str, Any]:
    """Time every file once per round, one process each, in rotating order (the edge budget's roles in
    their order, then any other names, in ``models``' order).

    Returns:
        ``{"rounds": [{"round", "order", "loadavg_start", "<role>": timing, ...}], "median_fps": {role: fps}}``.
    """
    roles = [r for r in ROLES if r in models] + [r for r in models if r not in ROLES]
    records = []
    for r in range(rounds):
        order = round_order(r, roles)
        rec: dict[str, Any] = {"round": r + 1, "order": order, "loadavg_start": loadavg()}
        for role in order:
            rec[role] = timer(models[role], batch, threads, warmup, iters)
        log.info("round %d/%d: %s", r + 1, rounds, ", ".join(
            f"{role} {rec[role]['throughput_fps']:.0f} faces/s (load {rec[role]['load_before']})" for role in roles))
        records.append(rec)
    medians = {role: statistics.median(rec[role]["throughput_fps"] for rec in records) for role in roles}
    return {"rounds": records, "median_fps": medians}


def check_timing_args(args: argparse.Namespace) -> None:
    """Refuse timing options :func:`measure_rounds` cannot use, before anything is made or timed.

    Raises:
        InputError: rounds, iters, batch or threads under 1, or warmup under 0.
    """
    if args.rounds < 1 or args.iters < 1 or args.warmup < 0 or args.batch < 1 or args.threads < 1:
        raise InputError(f"--rounds {args.rounds}, --iters {args.iters}, --warmup {args.warmup}, --batch {args.batch}, "
                         f"--threads {args.threads}; expected rounds, iters, batch, threads >= 1 and warmup >= 0")


def per_round(rounds: Sequence[dict[str, Any]], num: str, den: str) -> list[float]:
    """``num``'s throughput over ``den``'s in each round of :func:`measure_rounds`."""
    return [rec[num]["throughput_fps"] / rec[den]["throughput_fps"] for rec in rounds]


def ratios(timing: dict[str, Any]) -> dict[str, Any]:
    """The two throughput ratios, from the medians; beside each, the median of the per-round ratios
    (each round's files ran seconds apart, so that one is less sensitive to slow load drift)."""
    med = timing["median_fps"]
    out: dict[str, Any] = {}
    for name, num, den in (("candidate_fp32_vs_reference_fp32", "candidate_fp32", "reference_fp32"),
                           ("candidate_int8_vs_candidate_fp32", "candidate_int8", "candidate_fp32")):
        paired = per_round(timing["rounds"], num, den)
        out[name] = {"of_medians": med[num] / med[den], "median_of_rounds": statistics.median(paired),
                     "per_round": paired}
    return out


# ---------------------------------------------------------------------------------------------
# Accuracy
# ---------------------------------------------------------------------------------------------
def measure_accuracy(files: dict[str, Path], data: Path, split: str, factors: Sequence[int],
                     threads: int) -> dict[str, Any]:
    """Per-factor accuracy of each file, as ``fsrfer-eval --labels ferplus --split SPLIT`` computes it.

    Returns:
        ``n``, ``split``, ``labels`` and, per file, ``{factor: accuracy}`` (fractions, as fsrfer-eval writes them).
    """
    import numpy as np

    from trainer.data import load_dataset
    from trainer.evaluate import evaluate_fn, onnx_logits_fn

    fs = load_dataset(data, labels="ferplus").subset(split)
    images, labels = fs.images, fs.labels.astype(np.int64)
    out: dict[str, Any] = {"data": _show(data), "split": split, "labels": fs.source, "n": len(labels),
                           "protocol": "resized"}
    for role, path in files.items():
        t0 = time.perf_counter()
        fn, pre = onnx_logits_fn(path, threads)
        res = evaluate_fn(fn, images, labels, factors, pre, protocol="resized")
        out[role] = {f: v["accuracy"] for f, v in res["factors"].items()}
        log.info("%s on %d %s faces (%.0f s): %s", role, len(labels), split, time.perf_counter() - t0,
                 " ".join(f"x{f} {100 * a:.2f}" for f, a in out[role].items()))
    return out


def accuracy_drop(acc: dict[str, Any]) -> dict[str, Any]:
    """FP32 minus INT8 accuracy in points per factor, and the worst factor."""
    fp32, int8 = acc["candidate_fp32"], acc["candidate_int8"]
    # Rounded so that float noise (100 * (0.8 - 0.795) = 0.5000000000000004) cannot fail a target at its edge.
    drop = {f: round(100.0 * (fp32[f] - int8[f]), 6) for f in fp32}
    worst = max(drop, key=lambda f: drop[f])
    return {"points_per_factor": drop, "worst_points": drop[worst], "worst_factor": worst}


# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------
def targets(ratio: dict[str, Any], drop: Optional[dict[str, Any]], skipped: Optional[str]) -> list[dict[str, Any]]:
    """Each target with its threshold, measured value and ``passed`` (None when it was not measured)."""
    fp32 = ratio["candidate_fp32_vs_reference_fp32"]["of_medians"]
    int8 = ratio["candidate_int8_vs_candidate_fp32"]["of_medians"]
    out = [
        {"target": "candidate FP32 throughput / reference FP32 throughput (batch median faces/s)",
         "comparison": ">=", "threshold": MIN_FP32_VS_REFERENCE, "measured": fp32, "passed": fp32 >= MIN_FP32_VS_REFERENCE},
        {"target": "candidate INT8 u8s8 throughput / candidate FP32 throughput",
         "comparison": ">=", "threshold": MIN_INT8_VS_FP32, "measured": int8, "passed": int8 >= MIN_INT8_VS_FP32},
    ]
    acc: dict[str, Any] = {"target": "INT8 accuracy lost against FP32 at the worst factor (points)",
                           "comparison": "<=", "threshold": MAX_INT8_DROP_POINTS}
    if drop is None:
        acc.update(measured=None, passed=None, skipped=skipped)
    else:
        acc.update(measured=drop["worst_points"], factor=drop["worst_factor"],
                   passed=drop["worst_points"] <= MAX_INT8_DROP_POINTS)
    out.append(acc)
    return out


# ---------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------
def resolve_data(data: Optional[str], no_accuracy: bool) -> tuple[Optional[Path], Optional[str]]:
    """The data file and, when accuracy is not measured, why.

    An explicit ``--data`` that is not there is an error; the default path being absent only skips accuracy.

    Raises:
        DataError: ``--data`` was given and is not a readable file.
    """
    if data is not None:
        path = Path(data)
        problem = file_problem(path)
        if problem:
            raise DataError(f"--data {path} {problem}; expected fer2013.npz with ferplus_labels.npz beside it")
        return path, ("--no-accuracy was given" if no_accuracy else None)
    if DEFAULT_DATA.is_file():
        return DEFAULT_DATA, ("--no-accuracy was given" if no_accuracy else None)
    if no_accuracy:  # the user's own reason, whether or not the default data is there
        return None, "--no-accuracy was given"
    return None, f"no data: the default {_show(DEFAULT_DATA)} does not exist (pass --data NPZ)"


def run(args: argparse.Namespace, argv: Sequence[str], timer: Timer = time_in_subprocess) -> dict[str, Any]:
    """The whole measurement; returns the JSON document (not yet written).

    Raises:
        FsrferError: a missing or wrong model or data file, a failed quantization, check or timing.
    """
    check_timing_args(args)
    check_output_path(args.out, "--out", json_output=True)
    reference = Path(args.reference) if args.reference else DEFAULT_MODEL
    candidate = Path(args.candidate) if args.candidate else DEFAULT_MODEL
    models = {"reference_fp32": check_model(reference, "--reference", "fp32"),
              "candidate_fp32": check_model(candidate, "--candidate", "fp32")}
    models["candidate_fp32"]["same_file_as_reference"] = models["candidate_fp32"]["sha256"] == models["reference_fp32"]["sha256"]
    data, skipped = resolve_data(args.data, args.no_accuracy)
    calib = Path(args.calib) if args.calib else None
    if calib is not None and not calib.exists():
        raise DataError(f"--calib {calib} does not exist; expected an .npz of faces or a folder of face images")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="fsrfer-edge-budget-") as tmp:
        if args.candidate_int8:
            int8 = Path(args.candidate_int8)
            models["candidate_int8"] = check_model(int8, "--candidate-int8", "int8", "u8s8")
            models["candidate_int8"]["made_by"] = "given (--candidate-int8)"
        else:
            int8 = Path(tmp) / "candidate.int8-u8s8.onnx"
            made = make_int8(candidate, int8, data, calib, args.calib_size, args.calib_method, args.int8_quantize_g,
                             args.calib_factors, args.int8_quantize_film)
            models["candidate_int8"] = {**check_model(int8, "the INT8 file made", "int8", "u8s8"), **made,
                                        "path": "(a temporary file, made here)"}
        paths = {"reference_fp32": reference, "candidate_fp32": candidate, "candidate_int8": int8}
        timing = measure_rounds(paths, args.rounds, args.batch, args.threads, args.warmup, args.iters, timer)
        ratio = ratios(timing)
        accuracy: Optional[dict[str, Any]] = None
        drop = None
        if skipped is None:
            assert data is not None
            accuracy = measure_accuracy({"candidate_fp32": candidate, "candidate_int8": int8}, data, args.split,
                                        args.factors, args.threads)
            drop = accuracy_drop(accuracy)
            accuracy["int8_drop"] = drop
    return {
        "schema": SCHEMA,
        "command": "python scripts/edge_budget.py" + ("" if not argv else " " + " ".join(shlex.quote(a) for a in argv)),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": machine_info(),  # the CPU's model and int8 features: the INT8 / FP32 ratio depends on them
        "settings": {"batch": args.batch, "threads": args.threads, "rounds": args.rounds, "warmup": args.warmup,
                     "iters": args.iters, "backend": "onnxruntime CPU", "timer": "fsrfer-bench, one process per file per round"},
        "models": models,
        "throughput": {"batch": args.batch, "rounds": timing["rounds"], "median_fps": timing["median_fps"]},
        "ratios": ratio,
        "accuracy": accuracy if accuracy is not None else {"skipped": skipped},
        "targets": targets(ratio, drop, skipped),
    }


def format_table(doc: dict[str, Any]) -> str:
    """A short human-readable summary of a budget document."""
    thr = doc["throughput"]
    lines = [(f"batch {thr['batch']}, {doc['settings']['threads']} threads, {len(thr['rounds'])} round(s); "
             "faces/s per round (1-min load before it)")]
    for role, med in thr["median_fps"].items():
        per = "  ".join(f"{rec[role]['throughput_fps']:.0f} ({rec[role]['load_before']})" for rec in thr["rounds"])
        lines.append(f"  {role:15s} median {med:8.0f}   {per}")
    acc = doc["accuracy"]
    if "skipped" in acc:
        lines.append(f"accuracy: skipped ({acc['skipped']})")
    else:
        lines.append(f"accuracy on {acc['n']} FER+ {acc['split']} faces (%):  " +
                     "  ".join(f"x{f}" for f in acc["candidate_fp32"]))
        for role in ("candidate_fp32", "candidate_int8"):
            lines.append(f"  {role:15s} " + "  ".join(f"{100 * a:.2f}" for a in acc[role].values()))
        lines.append(f"  {'drop (points)':15s} " + "  ".join(f"{d:+.2f}" for d in acc["int8_drop"]["points_per_factor"].values()))
    for t in doc["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "NOT MEASURED"}[t["passed"]]
        value = "-" if t["measured"] is None else f"{t['measured']:.2f}"
        lines.append(f"{verdict:12s} {t['target']}: {value} (target {t['comparison']} {t['threshold']:g})")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="scripts/edge_budget.py", description=__doc__.split("\n\n")[0].strip())
    p.add_argument("--candidate", metavar="ONNX", help="FP32 fused fsrfer model (default: the shipped default.onnx)")
    p.add_argument("--candidate-int8", metavar="ONNX",
                   help="its INT8 u8s8 file (default: made here from --candidate, in a temporary folder)")
    p.add_argument("--reference", metavar="ONNX", help="FP32 model to compare with (default: the shipped default.onnx)")
    p.add_argument("--data", metavar="NPZ",
                   help=f"fer2013.npz with ferplus_labels.npz beside it: FER+ accuracy and INT8 calibration faces "
                        f"(default: {_show(DEFAULT_DATA)}; accuracy is skipped when the default is absent)")
    p.add_argument("--split", choices=("test", "val"), default="test", help="FER+ split for accuracy (default: test)")
    p.add_argument("--factors", type=parse_int_list, default=list(FACTORS), metavar="F,F,...",
                   help="down-sample factors (default: 1,2,3,4,6,8)")
    p.add_argument("--no-accuracy", action="store_true", help="measure throughput only")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default: 5)")
    p.add_argument("--batch", type=int, default=64, help="batch size timed (default: 64)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default: 2)")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches per file per round (default: 5)")
    p.add_argument("--iters", type=int, default=50, help="timed batches per file per round (default: 50)")
    q = p.add_argument_group("INT8 file made here (without --candidate-int8)")
    q.add_argument("--calib", metavar="PATH",
                   help="calibration faces as fsrfer-export --calib reads them (default: the FER+ train split of --data)")
    q.add_argument("--calib-size", type=int, default=CALIB_SIZE, help=f"faces sampled (default: {CALIB_SIZE})")
    q.add_argument("--calib-method", choices=("percentile", "minmax", "entropy"), default=CALIB_METHOD,
                   help=f"activation ranges (default: {CALIB_METHOD})")
    q.add_argument("--calib-factors", type=parse_int_list, default=list(FACTORS), metavar="F,F,...",
                   help="calibrate on small crops at these factors in turn, as fsrfer-export --calib-factors "
                        "(default: 1,2,3,4,6,8)")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--int8-quantize-g", dest="int8_quantize_g", action="store_const", const=True, default=None,
                   help="also quantize G, as fsrfer-export --int8-quantize-g (default: only when G starts early)")
    g.add_argument("--int8-float-g", dest="int8_quantize_g", action="store_const", const=False,
                   help="keep G in float, as fsrfer-export --int8-float-g")
    f = q.add_mutually_exclusive_group()
    f.add_argument("--int8-quantize-film", dest="int8_quantize_film", action="store_const", const=True, default=None,
                   help="quantize FiLM's scale and shift of the maps, as fsrfer-export --int8-quantize-film")
    f.add_argument("--int8-float-film", dest="int8_quantize_film", action="store_const", const=False,
                   help="keep FiLM in float, as fsrfer-export --int8-float-film")
    p.add_argument("--out", default=str(DEFAULT_OUT), metavar="JSON",
                   help=f"where to write the results, atomically (default: {_show(DEFAULT_OUT)})")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return p


def main(argv: Optional[Sequence[str]] = None, timer: Timer = time_in_subprocess) -> int:
    """Entry point; returns 0 when measured (whatever the targets' outcome), 2 on an error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        doc = run(args, argv, timer)
        out = write_json(args.out, doc, default=str)
    except FsrferError as exc:
        print(f"edge_budget: error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(format_table(doc))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
