"""How fast could the INT8 u8s8 file be with a G whose conditioning cost nothing? A speed bound, not a model.

    python scripts/int8_film_bound.py      # writes results/ferplus/int8_film_bound.json

The shipped graph's G ends each copied block with FiLM: a per-face scale and shift of the block's map,
computed from the face's down-sample factor. ONNX Runtime runs them in float between quantized convs, and
the README's edge-budget section has so far read the missing INT8 speed-up as their cost. This script
removes them: ``strip_film`` rewires each block's map past its FiLM multiply and add and drops what only
they read (the small networks from the factor to the scales and shifts). The factor estimator stays: the
graph still routes each face by it. The result computes a different, untrained function (its accuracy means
nothing), but any cheaper conditioning of G (FiLM at stage ends, a shift folded into a conv, none at all)
costs at least this graph's time.

Both graphs' INT8 u8s8 files are made as ``scripts/edge_budget.py`` makes them (512 FER+ train faces, small
crops at every factor, percentile ranges, G quantized), and the four files are timed by ``fsrfer-bench``,
each in its own process, in ``--rounds`` interleaved rounds with a rotating order (edge_budget's timer; batch
64, 2 threads, load average beside every timing). Ratios are medians of the per-round ratios.

The question, written before the first committed run: if the FiLM-free graph's INT8 file reaches 3x its
own FP32 file, a cheaper conditioning could meet issue 12's INT8 target and is worth a retraining; if it
does not, no change to FiLM can, and the README says so.

``--plain ONNX`` times a plain network beside them, FP32 and INT8 made the same way (e.g. the frozen HR
network exported alone, ``fsrfer-export HR_CHECKPOINT``: the same backbone with no G, FiLM, estimator or
route), for the INT8 speed-up of the backbone itself on this machine.
"""
from __future__ import annotations

import argparse
import re
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import edge_budget  # noqa: E402  (scripts/edge_budget.py: INT8 as it makes it, the timer, the rounds)

from fsrfer_edge.errors import CliParser, FsrferError, ModelError, one_line  # noqa: E402
from fsrfer_edge.recognizer import DEFAULT_MODEL  # noqa: E402

DEFAULT_OUT = REPO / "results" / "ferplus" / "int8_film_bound.json"
#: The exported name of FiLM's multiply of block i's map by its scale (``trainer.generator.FiLM``).
FILM_MUL = re.compile(r"^/generator/films\.(\d+)/Mul_\d+$")


def strip_film(model: Any) -> tuple[Any, int]:
    """``model`` (an ``onnx.ModelProto``, changed in place) without FiLM on G's maps.

    A FiLM is a ``Mul`` named ``/generator/films.I/Mul_K`` whose first input is a map from outside
    ``/generator/films.I/`` and whose only reader is an ``Add`` in the same scope (the shift). Every reader
    of that ``Add`` reads the map instead; nodes and initializers no graph output needs are then dropped.

    Returns:
        The model and the number of FiLMs removed.

    Raises:
        ModelError: the graph has no FiLM of that shape (not a scale-aware G's export).
    """
    import onnx

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    bypass: dict[str, str] = {}
    for n in graph.node:
        m = FILM_MUL.match(n.name)
        if n.op_type != "Mul" or m is None:
            continue
        scope = f"/generator/films.{m.group(1)}/"
        src = producer.get(n.input[0])
        after = readers.get(n.output[0], [])
        if (src is None or src.name.startswith(scope) or len(after) != 1 or after[0].op_type != "Add"
                or not after[0].name.startswith(scope)):
            continue
        bypass[after[0].output[0]] = n.input[0]
    if not bypass:
        raise ModelError("no FiLM on G's maps found (expected Mul -> Add pairs named /generator/films.I/...: "
                         "a scale-aware G's export, such as fsrfer_edge/models/default.onnx)")
    for n in graph.node:
        for k, name in enumerate(n.input):
            if name in bypass:
                n.input[k] = bypass[name]
    needed = {o.name for o in graph.output}
    kept = []
    for n in reversed(graph.node):
        if any(o in needed for o in n.output):
            kept.append(n)
            needed.update(i for i in n.input if i)
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    infos = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(infos)
    onnx.checker.check_model(model)
    return model, len(bypass)


def paired(rounds: Sequence[dict[str, Any]], num: str, den: str) -> dict[str, Any]:
    """``num``'s throughput over ``den``'s, round by round, and their median."""
    per = edge_budget.per_round(rounds, num, den)
    return {"median_of_rounds": round(statistics.median(per), 3), "per_round": [round(v, 3) for v in per]}


def summarize(timing: dict[str, Any], target: float = edge_budget.MIN_INT8_VS_FP32) -> dict[str, Any]:
    """Each graph's INT8-over-FP32 ratio (the plain network's where it was timed) and whether the FiLM-free
    bound reaches ``target``."""
    rounds = timing["rounds"]
    bound = paired(rounds, "film_free_int8", "film_free_fp32")
    out = {"shipped_int8_vs_fp32": paired(rounds, "shipped_int8", "shipped_fp32"), "film_free_int8_vs_fp32": bound,
           "film_free_fp32_vs_shipped_fp32": paired(rounds, "film_free_fp32", "shipped_fp32"),
           "film_free_int8_vs_shipped_int8": paired(rounds, "film_free_int8", "shipped_int8"),
           "target": target, "bound_reaches_target": bound["median_of_rounds"] >= target}
    if "plain_fp32" in timing["median_fps"]:
        out["plain_int8_vs_fp32"] = paired(rounds, "plain_int8", "plain_fp32")
    return out


def run(args: argparse.Namespace, argv: Sequence[str], timer: edge_budget.Timer) -> dict[str, Any]:
    import importlib

    import onnx

    importlib.import_module("onnxruntime")   # loaded, so that machine_info records its version

    from fsrfer_edge.bench import machine_info
    from fsrfer_edge.export.onnx_export import read_model_info
    from fsrfer_edge.fileio import check_output_path

    edge_budget.check_timing_args(args)
    check_output_path(args.out, "--out", json_output=True)
    model = edge_budget.check_model(args.model, "--model", "fp32")
    plain = None
    if args.plain:
        plain = {**edge_budget.check_model(args.plain, "--plain", "fp32"),
                 "checkpoint_sha256": read_model_info(args.plain).checkpoint_sha256 or None}
    data = edge_budget.calibration_data(Path(args.data))
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="fsrfer-film-bound-") as tmp:
        free = Path(tmp) / "film_free.fp32.onnx"
        stripped, removed = strip_film(onnx.load(str(args.model)))
        onnx.save(stripped, str(free))
        files = {"shipped_fp32": args.model, "shipped_int8": Path(tmp) / "shipped.int8-u8s8.onnx",
                 "film_free_fp32": free, "film_free_int8": Path(tmp) / "film_free.int8-u8s8.onnx"}
        if args.plain:
            files.update(plain_fp32=args.plain, plain_int8=Path(tmp) / "plain.int8-u8s8.onnx")
        made = {f"{key}_int8": edge_budget.make_int8(files[f"{key}_fp32"], files[f"{key}_int8"], data, None,
                                                     edge_budget.CALIB_SIZE, edge_budget.CALIB_METHOD, True)
                for key in ("shipped", "film_free", "plain") if f"{key}_fp32" in files}
        nodes = {name: len(onnx.load(str(p), load_external_data=False).graph.node) for name, p in files.items()}
        timing = edge_budget.measure_rounds(files, args.rounds, args.batch, args.threads, args.warmup, args.iters,
                                            timer)
    return {
        "command": " ".join(["python scripts/int8_film_bound.py", *(shlex.quote(a) for a in argv)]),
        "note": args.note,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "model": model, "plain": plain, "films_removed": removed,
        "nodes": nodes,
        "int8": made,
        "machine": machine_info(),
        "settings": {"batch": args.batch, "threads": args.threads, "rounds": args.rounds, "warmup": args.warmup,
                     "iters": args.iters, "timer": "fsrfer-bench, one process per file per round"},
        "throughput": timing,
        "ratios": summarize(timing),
    }


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="scripts/int8_film_bound.py", description=__doc__.split("\n\n")[0].strip())
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="FP32 fused graph with a scale-aware G "
                   "(default: the shipped default.onnx)")
    p.add_argument("--plain", type=Path, metavar="ONNX",
                   help="a plain FP32 network of the same backbone to time beside them (e.g. the HR network alone)")
    p.add_argument("--data", default=str(edge_budget.DEFAULT_DATA), help="fer2013.npz (INT8 calibration faces)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (default: 7)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--note", default="", help="recorded in the result file as it is (e.g. what else ran on the machine)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return p


def main(argv: Optional[Sequence[str]] = None, timer: edge_budget.Timer = edge_budget.time_in_subprocess) -> int:
    """Entry point; 0 when measured (the bound may or may not reach 3x; see the JSON), 2 on an error."""
    from fsrfer_edge.fileio import write_json

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        doc = run(args, argv, timer)
        out = write_json(args.out, doc, default=str)
    except FsrferError as exc:
        print(f"int8_film_bound: error: {one_line(exc)}", file=sys.stderr)
        return 2
    r = doc["ratios"]
    plain = f", plain {r['plain_int8_vs_fp32']['median_of_rounds']:.2f}x" if "plain_int8_vs_fp32" in r else ""
    print(f"INT8 / FP32, median of {args.rounds} rounds: shipped {r['shipped_int8_vs_fp32']['median_of_rounds']:.2f}x, "
          f"FiLM-free {r['film_free_int8_vs_fp32']['median_of_rounds']:.2f}x{plain} (target {r['target']:.1f}x: "
          f"{'reached' if r['bound_reaches_target'] else 'not reached'})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
