"""fsrfer-bench: latency, throughput, SDK overhead and per-factor accuracy of an exported model.

Everything is measured through :class:`~fsrfer_edge.recognizer.Recognizer` (what an app calls):

- latency p50/p99 (ms per batch) and throughput (faces/s) for each batch size, on random uint8
  48x48 faces;
- SDK overhead at one batch size (64, or the one a model with a fixed batch size takes): ``rec.predict``
  on faces already at the input size against a bare ``onnxruntime.InferenceSession.run`` on the same
  prepared tensor, with the same session options, in interleaved repetitions (ONNX Runtime models only);
- with ``--data``, accuracy for each down-sampling factor on the data set's ``test`` split, on the same backend,
  scored as ``fsrfer-eval`` scores it (its ``resized`` protocol: no SDK crop corrections; :func:`protocol_inputs`).

Example::

    fsrfer-bench --model fsrfer.onnx --batch-sizes 1,8,32,128 --data ../shared/data/fer2013.npz --json bench.json

With ``--data`` the labels are FER+ when ``ferplus_labels.npz`` lies beside the data (as ``fsrfer-eval``
reads them), else the archive's own; ``--labels`` chooses, and the output and JSON say which.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from . import __version__
from .cpus import cpu_quota, usable_cpus
# --threads as fsrfer-crowd and fsrfer-demo take it
from .crowd_cli import THREADS_HELP, check_sessions, check_threads, threads_option
from .engine_cache import sidecar_path
from .fileio import check_distinct_files, check_output_path, sha256_file, write_json
from .errors import (CliParser, FsrferError, InputError, check_count, cli_main, expand_home, one_line,
                     sigterm_interrupts)
from .ferplus import FERPLUS_FILE, LABEL_SETS, LabelledFaces, load_labelled_faces
from .preprocessing import FACTORS, Corrections, degrade, resize, shrink
from .recognizer import ENGINE_SUFFIXES, Recognizer, resolve_model_path

logger = logging.getLogger(__name__)

SCHEMA = "fsrfer-bench/1"
OVERHEAD_TARGET_PCT = 10.0
#: The largest batch size the command line takes (--batch-sizes, --overhead-batch): far above any edge batch,
#: far below one whose random faces alone would not fit in memory (1e8 faces died of a MemoryError traceback).
MAX_BATCH_SIZE = 4096
#: Interleaved repetitions of the SDK-overhead measurement on the command line (--overhead-reps).
OVERHEAD_REPS = 100


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------
#: The timed faces are random images of this many pixels a side, resized up to the model's input size.
TIMED_FACE_PX = 12


def random_faces(n: int, size: int = 48, seed: int = 0) -> np.ndarray:
    """``n`` random gray uint8 faces of ``size`` x ``size``: random :data:`TIMED_FACE_PX`-pixel images
    resized up (the SDK's bicubic resize), so they look like small faces. For most graphs content does
    not affect speed; a routed graph (``route_hr_below``) sends faces it judges not down-sampled through
    the HR stages and the rest through G, the slower path, which these faces take."""
    small = np.random.default_rng(seed).integers(0, 256, size=(n, TIMED_FACE_PX, TIMED_FACE_PX), dtype=np.uint8)
    return np.clip(np.rint(resize(small, (size, size))), 0, 255).astype(np.uint8)


def _stats_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "min_ms": float(ms.min()), "max_ms": float(ms.max())}


def measure_latency(rec: Recognizer, batch_size: int, warmup: int = 5, iters: int = 50, seed: int = 0) -> dict[str, Any]:
    """Time ``rec.predict`` on ``batch_size`` random faces at the model's input size.

    Returns:
        ``batch_size``, ``iters``, p50/p99/mean/min/max in ms per batch, ``throughput_fps``
        (faces/s at the median latency) and ``backend_calls`` (batches above ``rec.max_batch`` are split).
    """
    for name, value, least in (("batch_size", batch_size, 1), ("warmup", warmup, 0), ("iters", iters, 1)):
        check_count(name, value, least)
    faces = random_faces(batch_size, rec.info.preprocessing.input_size, seed)
    for _ in range(warmup):
        rec.predict(faces)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        rec.predict(faces)
        times.append(time.perf_counter() - t0)
    stats = _stats_ms(times)
    return {"batch_size": batch_size, "iters": iters, **stats,
            "throughput_fps": batch_size / (stats["p50_ms"] / 1e3),
            "backend_calls": math.ceil(batch_size / rec.max_batch)}


def measure_overhead(rec: Recognizer, batch_size: int = 64, reps: int = 30, warmup: int = 3,
                     seed: int = 1) -> dict[str, Any]:
    """SDK overhead: ``rec.predict`` on input-size uint8 faces vs a bare ``InferenceSession.run``.

    The bare call is ``run`` on the Recognizer's own ONNX Runtime session, fed the tensor
    ``rec.prepare`` produced, so the difference is exactly what the SDK adds (validation,
    preprocessing, softmax, Python). A second session would have its own intra-op thread pool, and on
    a small CPU the two pools' spinning threads slow each other down when calls alternate: measured
    on 2 cores, a second session gave 26-37 % median "overhead" with minima 1-2 % apart. The two are
    timed in interleaved repetitions (alternating which goes first), so drifts in machine load hit
    both alike. Both run the batch in one call: a ``batch_size`` the Recognizer would split or pad (above
    ``rec.max_batch``; a graph with a fixed batch size takes exactly that many) is replaced by the nearest
    one it runs whole, and a ``note`` says so.

    Returns:
        ``batch_size`` measured, medians and minima of both, ``overhead_pct`` (median over repetitions of
        sdk/bare - 1), ``overhead_pct_min`` (from the two minima, the least load-sensitive estimate),
        the 10 % target and whether it is met; or ``{"skipped": reason}`` for non-ONNX-Runtime backends.
    """
    for name, value, least in (("batch_size", batch_size, 1), ("reps", reps, 1), ("warmup", warmup, 0)):
        check_count(name, value, least)
    if rec.backend.name != "onnxruntime":
        return {"skipped": f"overhead is measured against a bare onnxruntime session; backend is {rec.backend.name}"}
    least, most = rec.backend.min_batch, rec.max_batch
    requested, batch_size = batch_size, min(max(batch_size, least), most)
    info = rec.info
    bare = rec.backend.session  # type: ignore[attr-defined]
    faces = random_faces(batch_size, info.preprocessing.input_size, seed)
    feed = {info.input_name: rec.prepare(faces)}
    outputs = [info.output_name]
    for _ in range(warmup):
        rec.predict(faces)
        bare.run(outputs, feed)
    sdk: list[float] = []
    raw: list[float] = []
    for r in range(reps):
        order = ("sdk", "bare") if r % 2 == 0 else ("bare", "sdk")
        for which in order:
            t0 = time.perf_counter()
            if which == "sdk":
                rec.predict(faces)
            else:
                bare.run(outputs, feed)
            (sdk if which == "sdk" else raw).append(time.perf_counter() - t0)
    s, b = _stats_ms(sdk), _stats_ms(raw)
    # Paired: each repetition's two timings are adjacent in time, so their ratio cancels slow load drift.
    pct = 100.0 * (float(np.median(np.asarray(sdk) / np.asarray(raw))) - 1.0)
    pct_min = 100.0 * (s["min_ms"] - b["min_ms"]) / b["min_ms"]
    doc: dict[str, Any] = {
        "batch_size": batch_size, "reps": reps, "sdk_p50_ms": s["p50_ms"], "bare_p50_ms": b["p50_ms"],
        "sdk_min_ms": s["min_ms"], "bare_min_ms": b["min_ms"], "overhead_pct": pct, "overhead_pct_min": pct_min,
        "target_pct": OVERHEAD_TARGET_PCT, "meets_target": bool(pct < OVERHEAD_TARGET_PCT),
        "bare_providers": list(bare.get_providers())}
    if batch_size != requested:
        doc["note"] = (f"measured at batch {batch_size}, not the requested {requested}: "
                       + (f"the model takes exactly {least} faces at a time" if rec.backend.max_batch == least
                          else f"the Recognizer runs {least} to {most} faces in one call"))
    return doc


def load_eval_data(path: Union[str, os.PathLike[str]], labels: Optional[str] = None) -> LabelledFaces:
    """Faces and labels of the ``test`` split (all rows when there is no split), as ``fsrfer-eval`` reads them.

    Args:
        labels: ``"ferplus"``, ``"fer2013"``, or None: FER+ when ``ferplus_labels.npz`` lies beside the data.

    Raises:
        DataError: the file is missing or lacks ``images``/``labels``, or shapes disagree.
    """
    return load_labelled_faces(path, labels, split="test")


def protocol_inputs(rec: Recognizer, lr: np.ndarray) -> np.ndarray:
    """The model input for faces already degraded and resized back (``lr``, float pixels in [0, 255]), as
    ``fsrfer-eval`` makes it (its ``resized`` protocol, the result tables'): resized to the input size where they
    are not at it, and normalised (rounded to uint8 for a graph that takes raw pixels), with none of the SDK's crop
    corrections (:class:`~fsrfer_edge.preprocessing.Corrections`). Those are for crops an app passes; on these
    faces they would fire on the protocol's own resizing (a smooth face read as one an app enlarged, a dim face
    raised to the contrast floor) and move the scores away from fsrfer-eval's and the README's tables."""
    pre = rec.info.preprocessing
    pixels = pre.to_pixels(lr, raise_low_contrast=False, corrections=Corrections.none())
    if rec.info.input_dtype == "uint8":
        return np.rint(pixels).astype(np.uint8)
    return pre.normalize(pixels, in_place=True)


def measure_accuracy(rec: Recognizer, images: np.ndarray, labels: np.ndarray,
                     factors: Sequence[int] = FACTORS, chunk: int = 512) -> dict[str, float]:
    """Top-1 accuracy per down-sampling factor, on the Recognizer's backend, scored as ``fsrfer-eval`` scores it.

    Each face is degraded with :func:`~fsrfer_edge.preprocessing.degrade` (down by the factor, back
    up to its size), clipped to [0, 255], made into the model input by :func:`protocol_inputs` and recognised
    with ``rec.predict_logits``.
    """
    check_count("chunk", chunk, 1)  # a negative step would score no face and report accuracy 0
    out: dict[str, float] = {}
    for f in factors:
        correct = 0
        for i in range(0, len(images), chunk):
            lr = np.clip(degrade(images[i:i + chunk], int(f)), 0.0, 255.0)
            pred = rec.predict_logits(protocol_inputs(rec, lr)).argmax(axis=1)
            correct += int((pred == labels[i:i + chunk]).sum())
        out[str(f)] = correct / max(1, len(images))
        logger.info("accuracy x%d: %.4f", f, out[str(f)])
    return out


def measure_confidence(rec: Recognizer, images: np.ndarray, labels: np.ndarray,
                       factors: Sequence[int] = FACTORS, chunk: int = 512) -> dict[str, dict[str, float]]:
    """How well ``Prediction.confidence`` holds on this backend, per factor: each face given to ``rec.predict`` as
    the small crop a camera gives (:func:`~fsrfer_edge.preprocessing.shrink`, protocol (b), with the SDK's
    corrections, as an app runs it), scored by the calibration error of the confidences (points) beside the
    accuracy and mean confidence (%). The shipped model's maps were fitted on FER+ val with ONNX Runtime on a CPU:
    docs/experiments.md, "A confidence that means the same at every size"."""
    from .confidence import calibration_error

    check_count("chunk", chunk, 1)
    if rec.score_calibration is None:
        raise InputError("measure_confidence: this Recognizer has no score calibration (its predictions' confidence "
                         "is None); expected one with confidence maps (NAME.scores.json beside the model, or "
                         "Recognizer(confidence=...))")
    out: dict[str, dict[str, float]] = {}
    for f in factors:
        conf, right = [], []
        for i in range(0, len(images), chunk):
            preds = rec.predict(list(shrink(images[i:i + chunk], int(f))))
            conf += [np.nan if p.confidence is None else p.confidence for p in preds]
            right += [p.index == y for p, y in zip(preds, labels[i:i + chunk])]
        c, r = np.asarray(conf), np.asarray(right, dtype=np.float64)
        out[str(f)] = {"accuracy": round(100 * float(r.mean()), 2), "mean_confidence": round(100 * float(c.mean()), 2),
                       "calibration_error": round(calibration_error(c, r), 2)}
        logger.info("confidence x%d: %s", f, out[str(f)])
    return out


def load_average() -> Optional[float]:
    """The 1-minute load average (None where the OS has none): timings from a busy machine are not comparable."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def cpu_seconds() -> Optional[tuple[float, float]]:
    """(CPU seconds every process of the machine has run since boot, this process's own), or None where
    ``/proc/stat`` is missing (not Linux). Their changes over a run give what *other* work took from the
    CPU meanwhile, which the load average cannot: it counts the benchmark's own threads too."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        # user nice system idle iowait irq softirq steal (guest time is inside user): busy = all but idle and
        # iowait. A virtual machine's steal is the host running something else, so it counts as other work.
        ticks = [int(v) for v in fields[1:9]]
        busy = sum(ticks) - ticks[3] - ticks[4]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    own = os.times()
    return busy / hz, own.user + own.system


def other_cpu(start: Optional[tuple[float, float]], start_wall: float) -> Optional[float]:
    """Cores' worth of CPU that other processes used on average since ``start`` (from :func:`cpu_seconds`
    and ``time.perf_counter()``), or None where that cannot be measured."""
    end, wall = cpu_seconds(), time.perf_counter() - start_wall
    if start is None or end is None or wall <= 0:
        return None
    return round(max(0.0, (end[0] - start[0]) - (end[1] - start[1])) / wall, 2)


#: CPU features that decide which int8 kernels ONNX Runtime runs (x86 VNNI/AMX, Arm dot product and i8mm).
INT8_CPU_FEATURES = frozenset({"avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})


def cpu_info(cpuinfo: Optional[str] = None) -> dict[str, Any]:
    """The CPU's model name and its :data:`INT8_CPU_FEATURES`, from ``/proc/cpuinfo`` (or its text
    ``cpuinfo``); empty where there is none to read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {}
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("model name", "flags", "Features"):
            fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split()) | set(fields.get("Features", "").split())
    return {"cpu_model": fields.get("model name"), "cpu_int8_features": sorted(flags & INT8_CPU_FEATURES)}


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    doc: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                           "processor": platform.processor(), "cpu_count": os.cpu_count(),
                           # what this process may use: its CPU set and cgroup CPU quota (None: no quota), which
                           # set ONNX Runtime's default threads (a container's limit, not the host's cores)
                           "usable_cpus": usable_cpus(), "cpu_quota": cpu_quota(), **cpu_info(),
                           "python": platform.python_version(), "numpy": np.__version__,
                           "fsrfer_edge": __version__}
    for mod, dists in (("onnxruntime", ("onnxruntime", "onnxruntime-gpu")), ("tensorrt", ("tensorrt",))):
        m = sys.modules.get(mod)
        if m is not None and hasattr(m, "__version__"):
            doc[mod] = m.__version__
            continue
        for dist in dists:  # installed but not imported by this process (a script timing other processes)
            try:
                doc[mod] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    try:  # Jetson boards name themselves here
        doc["device_model"] = Path("/proc/device-tree/model").read_text().strip("\x00\n ")
    except OSError:
        pass
    return doc


def run_bench(model: Union[str, os.PathLike[str]], batch_sizes: Sequence[int], data: Optional[Union[str, os.PathLike[str]]] = None,
              factors: Sequence[int] = FACTORS, warmup: int = 5, iters: int = 50, backend: str = "auto",
              providers: Union[None, str, Sequence[Any]] = None, threads: Optional[int] = None, device: int = 0,
              overhead_batch: Optional[int] = 64, overhead_reps: int = 30, max_batch: Optional[int] = None,
              labels: Optional[str] = None, sessions: Optional[int] = None) -> dict[str, Any]:
    """Run the whole benchmark and return the JSON document.

    Args:
        model: ``.onnx`` or TensorRT ``.engine``/``.plan``.
        batch_sizes: batch sizes to time.
        data: optional ``.npz`` for per-factor accuracy.
        labels: label set of ``data``: ``"ferplus"``, ``"fer2013"``, or None (FER+ when its labels file
            lies beside the data, as fsrfer-eval reads it).
        overhead_batch: batch size of the SDK-overhead measurement; None skips it.
        max_batch: Recognizer's max batch (default: the largest batch size).
        sessions: ONNX Runtime CPU sessions sharing each batch (``Recognizer(sessions=...)``).

    Raises:
        InputError, ModelError, DataError, BackendUnavailable: as the Recognizer and loaders do.
    """
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise InputError(f"batch sizes {list(batch_sizes)}; expected a non-empty list of integers >= 1")
    if warmup < 0 or iters < 1:
        raise InputError(f"warmup={warmup}, iters={iters}; expected warmup >= 0 and iters >= 1")
    if (overhead_batch is not None and overhead_batch < 1) or overhead_reps < 1:
        raise InputError(f"overhead batch {overhead_batch}, repetitions {overhead_reps}; expected a batch >= 1 "
                         "(0 on the command line skips the measurement) and repetitions >= 1")
    # The data and the factors first: a bad file or factor is refused before the timings, not after them.
    faces = load_eval_data(data, labels) if data is not None else None
    if faces is not None and labels is not None and faces.label_set == "npz":
        # the loader scores a plain archive's own labels whatever labels= asks: say so rather than ignore it
        raise InputError(f"--labels {labels}: {data} has no 'orig_row' array (by which a FER2013 archive's labels and "
                         "FER+'s are joined), so only its own labels can be scored; drop --labels, or pass a FER2013 "
                         "archive such as ../shared/data/fer2013.npz")
    if faces is not None:
        for f in factors:  # degrade refuses a factor that leaves less than one pixel of these faces
            degrade(faces.images[:1], int(f))
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = load_average()
    cpu_start, wall_start = cpu_seconds(), time.perf_counter()
    # 0 is the user's value (refused by the Recognizer), not "not given"
    mb = max_batch if max_batch is not None else max(max(batch_sizes), overhead_batch or 1)
    with Recognizer(model, backend=backend, device=device, max_batch=mb, providers=providers, threads=threads,
                    sessions=sessions) as rec:
        if device != 0 and rec.backend.name == "onnxruntime" and \
                list(rec.backend.providers) == ["CPUExecutionProvider"]:
            # the CPU provider has no device: timings recorded under "device": N would claim a GPU that never ran
            raise InputError(f"--device {device} picks a GPU, but {Path(model).name} runs on ONNX Runtime's CPU "
                             "provider, which ignores it; drop --device, or run where a GPU provider or TensorRT is "
                             "installed")
        logger.info("benchmarking %s on %s %s", model, rec.backend.name, list(rec.backend.providers))
        latency = []
        for b in batch_sizes:
            latency.append(measure_latency(rec, b, warmup, iters))
            logger.debug("batch %d timed", b)  # the results are printed once, in the summary
        overhead: Optional[dict[str, Any]] = None
        if overhead_batch and getattr(rec.backend, "sessions", 1) > 1:
            overhead = {"skipped": "the bare session it is measured against runs a whole batch alone; with "
                                   "sessions > 1 the SDK splits it, so the difference would not be the SDK's overhead"}
        elif overhead_batch:
            overhead = measure_overhead(rec, overhead_batch, overhead_reps)
        accuracy: Optional[dict[str, Any]] = None
        if faces is not None:
            accuracy = {"data": str(data), "split": faces.split, "labels": faces.label_set, "n": int(len(faces.labels)),
                        "protocol": "resized", "corrections": "none",  # fsrfer-eval's (protocol_inputs)
                        "per_factor": measure_accuracy(rec, faces.images, faces.labels, factors)}
            if rec.score_calibration is not None:
                accuracy["confidence"] = {"protocol": "small", "corrections": "sdk",
                                          "per_factor": measure_confidence(rec, faces.images, faces.labels, factors)}
        doc = {
            "schema": SCHEMA,
            "created": started.isoformat(timespec="seconds"),
            "model": str(model),
            "model_sha256": sha256_file(model),
            "model_info": rec.info.to_dict(),
            "backend": rec.backend.name,
            "providers": list(rec.backend.providers),
            "threads": getattr(rec.backend, "threads", threads),
            # what was asked of ONNX Runtime (threads, or the CPUs a CPU set or quota leaves; None: its own default)
            "intra_op_threads": getattr(rec.backend, "intra_op_threads", None),
            "sessions": getattr(rec.backend, "sessions", 1),
            "device": device,
            "max_batch": rec.max_batch,
            "machine": machine_info(),
            # "after" counts the benchmark's own threads; other_cpu_cores does not (None where unmeasurable).
            "load_average": {"before": load_before, "after": load_average(), "cpu_count": os.cpu_count(),
                             "other_cpu_cores": other_cpu(cpu_start, wall_start)},
            "warmup": warmup,
            "latency": latency,
            "overhead": overhead,
            "accuracy": accuracy,
        }
    return doc


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def parse_int_list(text: str) -> list[int]:
    """``"1,8,32"`` -> ``[1, 8, 32]``; for argparse (raises ArgumentTypeError on bad input: not integers, none,
    one below 1, or one listed twice)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers, e.g. 1,8,32") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers >= 1, e.g. 1,8,32")
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:  # a batch size timed twice, or a factor scored twice, is a typo: say so rather than run it
        raise argparse.ArgumentTypeError(f"{text!r} lists {', '.join(map(str, twice))} more than once; expected "
                                         "distinct integers, e.g. 1,8,32")
    return values


def parse_batch_sizes(text: str) -> list[int]:
    """:func:`parse_int_list` of batch sizes, each at most :data:`MAX_BATCH_SIZE`."""
    values = parse_int_list(text)
    if max(values) > MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r}: expected batch sizes from 1 to {MAX_BATCH_SIZE}, e.g. 1,8,32")
    return values


def build_parser() -> argparse.ArgumentParser:
    # Every default is written once, in its help text (ArgumentDefaultsHelpFormatter would add a second copy).
    p = CliParser(
        prog="fsrfer-bench",
        description="Latency, throughput, SDK overhead and per-factor accuracy of an fsrfer model. Timings depend "
                    "on what else the machine runs: the 1-minute load average is recorded and a busy machine is "
                    "reported.")
    p.add_argument("--model", type=expand_home,
                   help="exported model: .onnx, or a TensorRT .engine/.plan (default: the shipped default model)")
    p.add_argument("--batch-sizes", type=parse_batch_sizes, default=[1, 8, 32, 128], metavar="N,N,...",
                   help=f"batch sizes to time, comma-separated, each 1 to {MAX_BATCH_SIZE} (default: 1,8,32,128)")
    p.add_argument("--data", type=expand_home, default=None, metavar="NPZ",
                   help="npz with images (N,48,48) uint8, labels (N,) and optional split (uses 'test'): per-factor accuracy")
    p.add_argument("--labels", choices=LABEL_SETS, default=None,
                   help="label set of --data: ferplus (FER+, joined from ferplus_labels.npz beside the data) or "
                        "fer2013 (the original labels); default: ferplus when that file is there, as fsrfer-eval")
    p.add_argument("--factors", type=parse_int_list, default=None, metavar="F,F,...",
                   help="down-sampling factors for --data (default: " + ",".join(map(str, FACTORS)) + ")")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls before each batch size (default: 5)")
    p.add_argument("--iters", type=int, default=50, help="timed calls per batch size (default: 50)")
    p.add_argument("--backend", choices=("auto", "onnxruntime", "tensorrt"), default="auto", help="default: auto")
    p.add_argument("--providers", choices=("auto", "cpu", "cuda"), default=None,
                   help="ONNX Runtime providers (default: auto)")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--sessions", type=int, default=None,
                   help="ONNX Runtime CPU sessions that split each batch (Recognizer(sessions=...)), at most one per "
                        "CPU (default: one)")
    p.add_argument("--device", type=int, default=0, help="GPU index (default: 0)")
    p.add_argument("--overhead-batch", type=int, default=64,
                   help="batch size of the SDK-overhead measurement (a model with a fixed batch size is measured "
                        "at its own); 0 skips it (default: 64)")
    # None: not given (OVERHEAD_REPS), so that one given where no overhead is measured can be refused
    p.add_argument("--overhead-reps", type=int, default=None,
                   help=f"interleaved repetitions for the overhead (default: {OVERHEAD_REPS})")
    p.add_argument("--json", type=expand_home, required=True, metavar="OUT",
                   help="where to write the results (JSON, written atomically)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return p


def check_options(args: argparse.Namespace) -> None:
    """Refuse, before any work, option values argparse's types let through; each message names its option.

    Raises:
        InputError: the first bad option.
    """
    for flag, value, least in (("--warmup", args.warmup, 0), ("--iters", args.iters, 1), ("--device", args.device, 0)):
        if value < least:
            raise InputError(f"{flag} {value}; expected an integer >= {least}")
    if args.overhead_reps is not None and args.overhead_reps < 1:
        raise InputError(f"--overhead-reps {args.overhead_reps}; expected repetitions >= 1")
    if not 0 <= args.overhead_batch <= MAX_BATCH_SIZE:
        raise InputError(f"--overhead-batch {args.overhead_batch}; expected a batch >= 1 and at most {MAX_BATCH_SIZE}, "
                         "or 0 to skip the measurement")
    check_threads(args.threads)  # as fsrfer-crowd and fsrfer-demo
    check_sessions(args.sessions)
    if args.sessions is not None and args.sessions > 1 and args.providers == "cuda":
        raise InputError(f"--sessions {args.sessions} with --providers cuda: several sessions split each batch between "
                         "CPU sessions, and a GPU provider runs a whole batch at once; drop --sessions, or pass "
                         "--providers cpu")
    # open_backend refuses these too, but in its keyword names (threads=) and only after --data has been read
    engine = args.model is not None and Path(args.model).suffix.lower() in ENGINE_SUFFIXES
    if engine and args.backend == "onnxruntime":
        raise InputError(f"--backend onnxruntime with --model {args.model}, a TensorRT engine, which only TensorRT "
                         "runs; drop --backend (or pass --backend tensorrt), or give the .onnx model to time ONNX "
                         "Runtime")
    if engine or args.backend == "tensorrt":
        # --threads 0 asks for nothing (ONNX Runtime's default, as when left out), as one session does
        for flag, value in (("--providers", args.providers), ("--threads", threads_option(args.threads)),
                            ("--sessions", args.sessions)):
            if value is not None and not (flag == "--sessions" and value == 1):  # one session asks for nothing
                where = "a TensorRT engine" if engine else "--backend tensorrt"
                raise InputError(f"{flag} applies to ONNX Runtime only, not to {where}; drop {flag}"
                                 + ("" if engine else ", or pass --backend onnxruntime"))
    cpus = usable_cpus()  # a container's CPU set, not the host's
    if args.sessions is not None and args.sessions > cpus:
        # Each session runs its share at once on a thread of its own: more of them than CPUs only slow each other down
        # (the Recognizer warns of it), and each holds its own copy of the model's weights.
        raise InputError(f"--sessions {args.sessions}, but this process may use {cpus} CPUs; expected 1 to {cpus} (each "
                         "session runs its share of a batch at once, on a CPU of its own)")
    _check_overhead_reps(args, engine)
    if args.data is None:  # they only change the accuracy, which needs --data: dropping them silently misleads
        for flag, value in (("--factors", args.factors), ("--labels", args.labels)):
            if value is not None:
                raise InputError(f"{flag} applies with --data (the accuracy per factor); add --data NPZ or drop {flag}")


def _check_overhead_reps(args: argparse.Namespace, engine: bool) -> None:
    """Refuse an --overhead-reps given where the run measures no SDK overhead: it would be silently unused."""
    if args.overhead_reps is None:
        return
    bare = "the overhead is measured against a bare ONNX Runtime session only"
    if args.overhead_batch == 0:
        off, why, instead = ("--overhead-batch 0", "which skips the SDK-overhead measurement",
                             ", or pass --overhead-batch N")
    elif args.sessions is not None and args.sessions > 1:
        off, why, instead = (f"--sessions {args.sessions}", "with which the SDK splits each batch, so the overhead is "
                             "not measured", ", or run without --sessions to measure it")
    elif engine:
        off, why, instead = f"--model {args.model}", f"a TensorRT engine: {bare}", ""
    elif args.backend == "tensorrt":
        off, why, instead = "--backend tensorrt", bare, ""
    else:
        return
    raise InputError(f"--overhead-reps {args.overhead_reps} with {off}, {why}; drop --overhead-reps{instead}")


def input_files(model: Union[str, os.PathLike[str]], data: Optional[str],
                labels: Optional[str]) -> list[tuple[str, Any]]:
    """Every file the run reads, as ``(what, path)`` for :func:`check_distinct_files`: the model (and a TensorRT
    engine's ``.json`` sidecar), the data, and the FER+ labels read beside it."""
    files: list[tuple[str, Any]] = [("--model", model)]
    if Path(model).suffix.lower() in ENGINE_SUFFIXES:
        files.append(("the engine's sidecar", sidecar_path(model)))
    files.append(("--data", data))
    if data is not None and labels != "fer2013" and Path(data).name:  # "." or "": a folder, refused on reading
        files.append(("the FER+ labels beside --data", Path(data).with_name(FERPLUS_FILE)))
    return files


@cli_main
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``fsrfer-bench``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        with sigterm_interrupts():  # a stopped run cleans up after itself (atomic_write's temporary file)
            check_options(args)
            check_output_path(args.json, "--json")
            model = args.model if args.model is not None else resolve_model_path(None)
            inputs = input_files(model, args.data, args.labels)
            check_distinct_files(inputs + [("--json", args.json)], inputs=len(inputs))
            doc = run_bench(model, args.batch_sizes, data=args.data, factors=args.factors or FACTORS,
                            warmup=args.warmup, iters=args.iters, backend=args.backend, providers=args.providers,
                            threads=threads_option(args.threads), device=args.device,
                            overhead_batch=None if args.overhead_batch == 0 else args.overhead_batch,
                            overhead_reps=OVERHEAD_REPS if args.overhead_reps is None else args.overhead_reps,
                            labels=args.labels, sessions=args.sessions)
            out = write_json(args.json, doc)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM
        print("fsrfer-bench: interrupted; no results were written", file=sys.stderr)
        return 130
    except FsrferError as exc:
        print(f"fsrfer-bench: error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(format_summary(doc))
    print(f"wrote {out}")
    return 0


def format_summary(doc: dict[str, Any]) -> str:
    """A short human-readable table of a bench document."""
    lines = [f"{doc['model']} on {doc['backend']} {doc['providers']}"]
    if doc["backend"] == "onnxruntime":  # TensorRT has no thread setting: its None is not ONNX Runtime's default
        threads = doc["threads"] if doc["threads"] is not None else "ONNX Runtime's default"
        lines[0] += f" (threads={threads}" + (f", sessions={doc['sessions']})" if doc.get("sessions", 1) > 1 else ")")
    load = doc.get("load_average") or {}
    cores = load.get("cpu_count") or 1
    # Other work during the run where measured; else the load average before it (the one after counts this
    # benchmark's own threads, so it would call every long run busy).
    other, before = load.get("other_cpu_cores"), load.get("before")
    if other is not None:
        busy, seen = other >= 0.25 * cores, f"other processes used {other:.2f} of {cores} cores during the run"
    elif before is not None:
        busy, seen = before >= 0.5 * cores, f"load average {before:.2f} on {cores} cores before the run"
    else:
        busy, seen = False, ""
    if seen:
        lines.append(f"BUSY: {seen}; other work shared the CPU, so these timings can be several times slower "
                     "than on an idle machine" if busy else seen)
    lines.append("batch    p50 ms    p99 ms     faces/s")
    for r in doc["latency"]:
        lines.append(f"{r['batch_size']:5d} {r['p50_ms']:9.2f} {r['p99_ms']:9.2f} {r['throughput_fps']:11.0f}")
    ov = doc.get("overhead")
    if ov and "overhead_pct" in ov:
        lines.append(f"SDK overhead at batch {ov['batch_size']}: {ov['overhead_pct']:.1f} % (median of paired ratios), "
                     f"{ov['overhead_pct_min']:.1f} % (minima) (target < {ov['target_pct']:.0f} %)"
                     + (f"; {ov['note']}" if ov.get("note") else ""))
    elif ov and "skipped" in ov:
        lines.append(f"SDK overhead: not measured ({ov['skipped']})")
    acc = doc.get("accuracy")
    if acc:
        which = "" if acc["split"] == "all" else f" {acc['split']}"  # an archive without splits: every face
        lines.append(f"accuracy on {acc['n']}{which} faces ({acc.get('labels', '?')} labels): " +
                     ", ".join(f"x{f} {a:.4f}" for f, a in acc["per_factor"].items()))
        conf = acc.get("confidence")
        if conf:
            lines.append("confidence on small crops, calibration error in points (accuracy %, mean confidence %): "
                         + ", ".join(f"x{f} {c['calibration_error']:.2f} ({c['accuracy']:.1f}, "
                                     f"{c['mean_confidence']:.1f})" for f, c in conf["per_factor"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
