"""Check the accuracy targets of the published runs against their committed result files.

    python scripts/targets.py                 # writes results/targets.json
    python scripts/targets.py --check         # exit 1 if it is out of date
    python scripts/readme_tables.py targets   # README's targets table from it

Reads results/ferplus/test.json, results/fer2013/test.json (written by scripts/reproduce.sh through
scripts/report.py) and computes each target's measured value and whether it is met. Nothing here is
typed by hand except the targets themselves. A missing result file gives a target "not run".
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
BASELINES = ("hr", "lr_finetune", "image_sr")
FSR = "fsrfer"
QUANTIZED = ("fsrfer_onnx_fp16", "fsrfer_onnx_int8-s8s8", "fsrfer_onnx_int8-u8s8")


#: fsrfer-eval on FER2013 test (original labels) of configs/fer2013_from_ferplus_30ep.yaml's HR network, which
#: replaced configs/fer2013_from_ferplus.yaml's (results/fer2013/hr_from_ferplus_test.json) by its config's rule.
FER2013_FROM_FERPLUS = "results/fer2013/hr_from_ferplus_30ep_test.json"

sys.path.insert(0, str(REPO / "scripts"))
from ship_default import LIMIT_BYTES as PACKAGE_BUDGET_BYTES  # noqa: E402  (30 million bytes: the strict reading)
#: The shipped files the package budget counts.
PACKAGE_FILES = ("default.onnx", "default.pt")
#: results/edge_budget.json's run repeated: on another CPU (docs/experiments.md, "The INT8 target on another CPU"),
#: and with the INT8 file today's code makes ("The INT8 file today's code makes"), each with how the targets table
#: names it (None: by its CPU).
EDGE_BUDGET_OTHER_RUNS = {"results/ferplus/edge_budget_xeon.json": None,
                          "results/ferplus/edge_budget_xeon_calib_floor.json":
                              "in the run with the INT8 file calibrated through the contrast floor (today's), on the Xeon"}


def _acc(table: dict[str, Any], method: str, factor: int) -> float:
    return 100.0 * table[method]["factors"][str(factor)]["accuracy"]


def _load(path: Path) -> Optional[dict[str, Any]]:
    return json.loads(path.read_text()) if path.is_file() else None


def compute(ferplus: Optional[dict[str, Any]], fer2013: Optional[dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets, each with ``target``, ``measured`` (text), ``met`` (bool or None when not run)."""
    out: list[dict[str, Any]] = []

    def add(target: str, source: str, measured: Optional[str], met: Optional[bool], detail: Any = None) -> None:
        out.append({"target": target, "source": source, "measured": measured or "not run", "met": met,
                    **({"detail": detail} if detail is not None else {})})

    for name, table, goal in (("FER2013", fer2013, 73.0), ("FER+", ferplus, 88.0)):
        src = f"results/{'fer2013' if name == 'FER2013' else 'ferplus'}/test.json"
        if table is None or "hr" not in table:
            add(f"HR model >= {goal:g}% on {name} test", src, None, None)
            continue
        hr = _acc(table, "hr", 1)
        add(f"HR model >= {goal:g}% on {name} test", src, f"{hr:.2f}%", hr >= goal)

    src = "results/ferplus/test.json"
    if ferplus is None or FSR not in ferplus:
        for t in ("full FSR-FER beats every baseline at x3, x4, x6", "x2 within 1.5 points of HR",
                  "G costs <= 0.5 point at x1", "INT8 loses <= 0.5 point against FP32"):
            add(t, src, None, None)
        return out
    detail = {}
    for f in (3, 4, 6):
        best = max(BASELINES, key=lambda m: _acc(ferplus, m, f) if m in ferplus else -1.0)
        detail[f"x{f}"] = {"fsrfer": round(_acc(ferplus, FSR, f), 2), "best_baseline": best,
                           "best_baseline_accuracy": round(_acc(ferplus, best, f), 2)}
    met = all(v["fsrfer"] > v["best_baseline_accuracy"] for v in detail.values())
    text = "; ".join(f"{k}: {v['fsrfer']:.2f} vs {v['best_baseline']} {v['best_baseline_accuracy']:.2f}"
                     for k, v in detail.items())
    add("full FSR-FER beats every baseline at x3, x4, x6 (FER+ test)", src, text, met, detail)

    x2, hr1 = _acc(ferplus, FSR, 2), _acc(ferplus, "hr", 1)
    add("FSR-FER at x2 within 1.5 points of HR (FER+ test)", src,
        f"{x2:.2f} at x2 vs {hr1:.2f} HR at x1: {hr1 - x2:.2f} points", hr1 - x2 <= 1.5)
    g1 = _acc(ferplus, FSR, 1)
    add("with G in the path, x1 accuracy drops <= 0.5 point (FER+ test)", src,
        f"{g1:.2f} vs {hr1:.2f}: {hr1 - g1:+.2f} points drop", hr1 - g1 <= 0.5)

    ref = "fsrfer_onnx_fp32" if "fsrfer_onnx_fp32" in ferplus else FSR
    drops = {}
    for q in QUANTIZED[1:]:
        if q in ferplus:
            per = {f: _acc(ferplus, ref, int(f)) - _acc(ferplus, q, int(f)) for f in ferplus[ref]["factors"]}
            mean = 100.0 * (ferplus[ref]["mean_accuracy"] - ferplus[q]["mean_accuracy"])
            worst = max(per, key=lambda f: per[f])
            drops[q.removeprefix("fsrfer_onnx_")] = {"mean_drop": round(mean, 2), "worst_factor": f"x{worst}",
                                                     "worst_drop": round(per[worst], 2)}
    if drops:
        text = "; ".join(f"{k}: mean {v['mean_drop']:+.2f}, worst {v['worst_factor']} {v['worst_drop']:+.2f}"
                         for k, v in drops.items())
        met_q = all(v["worst_drop"] <= 0.5 for v in drops.values())
        add("INT8 loses <= 0.5 point against FP32 at every factor (FER+ test, ONNX Runtime CPU)", src,
            f"drop in points, {text}", met_q, drops)
    else:
        add("INT8 loses <= 0.5 point against FP32", src, None, None)
    return out


#: Where the ablations of the adversarial term and the re-weighting come from, first present first: the
#: shipped configuration's own on the shipped model's 120-epoch HR network (lrg_rec3000, seeds 0-2 on the
#: CPU), then the same on the 60-epoch HR network the default had before (seeds 0-2 on a lent GPU), then the
#: earlier reduced-budget study.
ABLATION_SOURCES = (
    ("results/ferplus/early_g_hr120_ablations_val.json", "the shipped stage-2 configuration at its full budget, "
     "paired seeds, on the shipped model's 120-epoch HR network"),
    ("results/ferplus/early_g_gpu_lr.json", "the shipped stage-2 configuration at its full budget, paired seeds, "
     "on the 60-epoch HR network; the shipped model's is the 120-epoch one"),
    ("results/ferplus/early_g_seeds.json", "reduced budget: see the file's note"),
)


def compute_issue12(ferplus: Optional[dict[str, Any]], shipped: dict[str, Optional[dict[str, Any]]],
                    seeds: Optional[dict[str, Any]], edge: Optional[dict[str, Any]],
                    fer2013: Optional[dict[str, Any]] = None, flip: Optional[dict[str, Any]] = None,
                    shipped_sha256: str = "", fer2013_from_ferplus: Optional[dict[str, Any]] = None,
                    seeds_source: tuple[str, str] = ABLATION_SOURCES[-1],
                    package_bytes: Optional[dict[str, int]] = None,
                    other_cpus: Optional[dict[str, dict[str, Any]]] = None) -> list[dict[str, Any]]:
    """Issue 12's "Done when" rows (FER+ test), from the shipped model's protocol files
    (results/default_model/test*.json) beside its equal-budget LR-fine-tuned baseline and the frozen HR
    model on the same faces (baseline_test*.json, hr_test*.json, written by scripts/ship_early_g.sh; the
    full run's table results/ferplus/test.json where those are absent), the seed study (``seeds``, read from
    ``seeds_source``: its path and what its ablations were trained as) and the edge-budget file.
    ``flip``: scripts/flip_tta.py on FER+ test (results/ferplus/flip_tta_test.json), taken
    only when it was measured on the checkpoint whose sha256 is ``shipped_sha256``. FER2013: the better of the
    full run's FER2013 HR model (``fer2013``, results/fer2013/test.json) and the FER+ HR network fine-tuned on
    the FER2013 labels (``fer2013_from_ferplus``, an fsrfer-eval file: :data:`FER2013_FROM_FERPLUS`).
    ``package_bytes``: the shipped files' sizes in bytes (default.onnx, default.pt), for the 30 MB package
    budget, read strictly as 30 million bytes (:data:`PACKAGE_BUDGET_BYTES`). ``other_cpus``: the same edge-budget
    run again (:data:`EDGE_BUDGET_OTHER_RUNS`, by path), each target met only where met in all."""
    out: list[dict[str, Any]] = []

    def add(target: str, source: str, measured: Optional[str], met: Optional[bool], detail: Any = None) -> None:
        out.append({"target": f"issue 12: {target}", "source": source, "measured": measured or "not run",
                    "met": met, **({"detail": detail} if detail is not None else {})})

    def acc(doc: dict[str, Any], f: str) -> float:
        return 100.0 * doc["factors"][f]["accuracy"]

    lr_factors = ("2", "3", "4", "6", "8")
    a, b, c = shipped.get("resized"), shipped.get("small"), shipped.get("camera")
    hr = shipped.get("hr_resized")
    # Stage 1: the shipped model's own HR network (its frozen trunk and head), majority labels.
    hr1 = None if hr is None else acc(hr, "1")
    add("HR model (the shipped model's frozen network) >= 88.0 at x1, FER+ test", "results/default_model/hr_test.json",
        None if hr1 is None else f"{hr1:.2f}%", None if hr1 is None else hr1 >= 88.0)
    flip_target = ("HR model >= 88.0 at x1 with the test-time flip folded in (fsrfer-export --flip; about half "
                   "the throughput, so not in the shipped graph), FER+ test")
    src_flip = "results/ferplus/flip_tta_test.json"
    if flip is not None and flip.get("split") == "test" and flip.get("checkpoint", {}).get("sha256") == shipped_sha256:
        hf = float(flip["rows"]["hr"]["flip"]["1"])
        add(flip_target, src_flip, f"{hf:.2f}%", hf >= 88.0)
    else:
        add(flip_target, src_flip, None if flip is None else "measured on another checkpoint than the shipped one", None)
    f13 = [(_acc(fer2013, "hr", 1), "results/fer2013/test.json")] if fer2013 is not None and "hr" in fer2013 else []
    if fer2013_from_ferplus is not None:
        f13.append((acc(fer2013_from_ferplus, "1"), FER2013_FROM_FERPLUS))
    best = max(f13) if f13 else None
    add("HR model >= 72 on FER2013 test", best[1] if best else "results/fer2013/test.json",
        None if best is None else f"{best[0]:.2f}%", None if best is None else best[0] >= 72.0)
    src_s = "results/default_model/test.json, test_small.json, test_camera.json"
    for protocol, title, doc in (("resized", "(a)", a), ("small", "(b)", b)):
        target = f"shipped FSR-FER >= LR-fine-tuned baseline + 1.0 at x2..x8, protocol {title}"
        ref = shipped.get(f"baseline_{protocol}")
        name = "test.json" if protocol == "resized" else f"test_{protocol}.json"
        if doc is not None and ref is not None:
            # The equal-budget baseline (same HR network, degraded faces and epochs) on the same test faces.
            gaps = {f"x{f}": round(acc(doc, f) - acc(ref, f), 2) for f in lr_factors}
            # A file measured again after a change of the SDK's preprocessing (scripts/refresh_protocols.sh) beside
            # one that could not be: the row says so.
            refreshed = [d.get("command") == "bash scripts/refresh_protocols.sh" for d in (doc, ref)]
            caveat = (" (the baseline's file measured before the SDK's contrast floor, the shipped model's with it)"
                      if refreshed == [True, False] else "")
            add(target, f"results/default_model/{name}, baseline_{name}",
                "FSR-FER minus the equal-budget baseline: " + ", ".join(f"{k} {v:+.2f}" for k, v in gaps.items())
                + caveat, all(v >= 1.0 for v in gaps.values()), gaps)
        elif protocol == "resized" and ferplus is not None and {FSR, "lr_finetune"} <= set(ferplus):
            src = "results/ferplus/test.json"
            gaps = {f"x{f}": round(_acc(ferplus, FSR, int(f)) - _acc(ferplus, "lr_finetune", int(f)), 2)
                    for f in lr_factors}
            add(target, src, "FSR-FER minus baseline: " + ", ".join(f"{k} {v:+.2f}" for k, v in gaps.items()),
                all(v >= 1.0 for v in gaps.values()), gaps)
        else:
            add(target, f"results/default_model/{name}, baseline_{name}", None, None)
    if a is not None and hr is not None:
        d1 = acc(hr, "1") - acc(a, "1")
        add("shipped FSR-FER at x1 within 0.3 of the HR model", "results/default_model/test.json, hr_test.json",
            f"{d1:+.2f} points below HR", abs(d1) <= 0.3)
    elif ferplus is not None and {FSR, "hr"} <= set(ferplus):
        d1 = _acc(ferplus, "hr", 1) - _acc(ferplus, FSR, 1)
        add("shipped FSR-FER at x1 within 0.3 of the HR model", "results/ferplus/test.json",
            f"{d1:+.2f} points below HR", abs(d1) <= 0.3)
    else:
        add("shipped FSR-FER at x1 within 0.3 of the HR model", "results/default_model/test.json, hr_test.json",
            None, None)
    if a is not None and c is not None:
        drop = {f"x{f}": round(acc(a, f) - acc(c, f), 2) for f in ("2", "3", "4")}
        add("protocol (c): shipped model within 5 points of its protocol (a) at x2, x3, x4", src_s,
            "(a) minus (c): " + ", ".join(f"{k} {v:.2f}" for k, v in drop.items()), all(v <= 5.0 for v in drop.values()), drop)
    else:
        add("protocol (c): shipped model within 5 points of its protocol (a) at x2, x3, x4", src_s, None, None)
    src_seeds, seeds_note = seeds_source
    if seeds is not None:
        counts = {name: row["summary"].get("resized", {}).get("seeds", 0) for name, row in seeds["rows"].items()
                  if name.split("/")[-1].startswith("fsrfer_no_")}
        add("ablations of the adversarial term and the re-weighting with >= 3 seeds (mean and spread)", src_seeds,
            ", ".join(f"{k}: {v} seeds" for k, v in counts.items()) + f" ({seeds_note})",
            bool(counts) and min(counts.values()) >= 3, counts)
    else:
        add("ablations of the adversarial term and the re-weighting with >= 3 seeds (mean and spread)", src_seeds, None, None)
    src_edge = "results/edge_budget.json"
    targets = (edge or {}).get("targets")
    if targets:
        cand = (edge.get("models") or {}).get("candidate_fp32", {}) if edge else {}
        which = f" (candidate {Path(cand['path']).name})" if isinstance(cand, dict) and cand.get("path") else ""
        for t in targets:
            m = t.get("measured")
            cell = ("not measured: " + str(t.get("skipped"))) if m is None else f"{m:.2f}{which}"
            met, sources = t.get("passed"), [src_edge]
            # The same run on another CPU (the ratios depend on its int8 kernels): met only where met on every CPU.
            for src, doc in (other_cpus or {}).items():
                same = next((o for o in doc.get("targets", []) if o["target"] == t["target"]), None)
                if same is None or same.get("measured") is None:
                    continue
                label = EDGE_BUDGET_OTHER_RUNS.get(src) or f"on {(doc.get('machine') or {}).get('cpu_model') or 'another CPU'}"
                cell += f"; {same['measured']:.2f} {label}"
                passed = same.get("passed")
                met = False if False in (met, passed) else None if None in (met, passed) else True
                sources.append(src)
            add(f"edge budget: {t['target']} {t['comparison']} {t['threshold']:g}", ", ".join(sources), cell, met)
    else:
        add("edge budget (FP32 >= 0.7x today's, INT8 >= 3x FP32, <= 0.5 point lost)", src_edge, None, None)
    package_target = "package: the shipped ONNX plus checkpoint <= 30 MB (30 million bytes)"
    if package_bytes:
        total = sum(package_bytes.values())
        add(package_target, "fsrfer_edge/models/" + ", ".join(package_bytes),
            f"{total / 1e6:.2f} MB ({total / 2**20:.2f} MiB; under 30 only when MB is read as MiB)"
            if total / 2**20 <= 30 < total / 1e6 else f"{total / 1e6:.2f} MB ({total / 2**20:.2f} MiB)",
            total <= PACKAGE_BUDGET_BYTES, dict(package_bytes))
    else:
        add(package_target, "fsrfer_edge/models/default.onnx, default.pt", None, None)
    return out


def build() -> dict[str, Any]:
    """results/targets.json's content, computed from the committed result files."""
    ferplus = _load(REPO / "results" / "ferplus" / "test.json")
    fer2013 = _load(REPO / "results" / "fer2013" / "test.json")
    rows = compute(ferplus, fer2013)
    shipped: dict[str, Optional[dict[str, Any]]] = {}
    for p in ("resized", "small", "camera"):
        suffix = "" if p == "resized" else "_" + p
        for who in ("", "baseline_", "hr_"):
            shipped[f"{who}{p}" if who else p] = _load(REPO / "results" / "default_model" / f"{who}test{suffix}.json")
    from fsrfer_edge.fileio import sha256_file

    # The ablations: of the shipped configuration where they were run (full budget), else the seed study's.
    seeds_source = next((src for src in ABLATION_SOURCES if (REPO / src[0]).is_file()), ABLATION_SOURCES[-1])
    rows += compute_issue12(ferplus, shipped, _load(REPO / seeds_source[0]),
                            _load(REPO / "results" / "edge_budget.json"), fer2013,
                            _load(REPO / "results" / "ferplus" / "flip_tta_test.json"),
                            sha256_file(REPO / "fsrfer_edge" / "models" / "default.pt"),
                            _load(REPO / FER2013_FROM_FERPLUS), seeds_source,
                            {f: (REPO / "fsrfer_edge" / "models" / f).stat().st_size for f in PACKAGE_FILES
                             if (REPO / "fsrfer_edge" / "models" / f).is_file()},
                            {src: doc for src in EDGE_BUDGET_OTHER_RUNS if (doc := _load(REPO / src)) is not None})
    return {"command": "python scripts/targets.py", "targets": rows}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "targets.json")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if --out is not what the result files give (a result changed since)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from fsrfer_edge.fileio import write_json

    doc = build()
    if args.check:
        current = _load(args.out)
        if current != json.loads(json.dumps(doc)):
            print(f"{args.out} is not what the result files give; run python scripts/targets.py "
                  "(then python scripts/readme_tables.py)")
            return 1
        return 0
    write_json(args.out, doc)
    for r in doc["targets"]:
        print(f"{'met' if r['met'] else 'NOT met' if r['met'] is False else 'not run':8} {r['target']}: {r['measured']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
