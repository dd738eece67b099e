"""Collect early-G runs (scripts/early_g.py) into one result file: accuracy per method, protocol and
factor for each run, the mean and spread over seeds, and each method's training cost.

    python scripts/early_g_summary.py --json results/ferplus/early_g_val.json \\
        full=/tmp/runs/early_g no_film=/tmp/runs/early_g_no_film ...

Each argument is LABEL=RUN_DIR (LABEL may repeat for several seeds; the seed is read from the run's
config.json). Every model in the run's evaluation becomes the row "LABEL/MODEL" (e.g. "full/fsrfer",
"full/lr_finetune"), so an equal-budget baseline trained in the same run sits beside the method.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PROTOCOL_FILES = {"resized": "results.json", "small": "results_small.json", "camera": "results_camera.json"}


def training_cost(ckpt: Path) -> dict[str, Any]:
    """Epochs, optimizer steps and seconds of a model's training, from its checkpoint's history."""
    from trainer import checkpoint

    meta = checkpoint.load(ckpt, kind="model").get("meta", {})
    hist = list(meta.get("pretrain_history", [])) + list(meta.get("history", []))
    cfg = meta.get("config", {})
    return {"epochs": len(hist), "seconds": round(float(sum(h.get("seconds", 0.0) for h in hist)), 1),
            "device": cfg.get("device", "?")}


def kept_runs(spec: str, split: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """LABEL=FILE:PREFIX: the per-seed accuracies and costs of the rows PREFIX/MODEL of the summary FILE
    (written by this script on the same split), as the rows LABEL/MODEL; for runs whose folders are gone."""
    label, _, rest = spec.partition("=")
    path, _, prefix = rest.rpartition(":")
    if not label or not path or not prefix:
        raise SystemExit(f"--kept {spec!r}: expected LABEL=FILE:PREFIX")
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"--kept {spec!r}: cannot read {path}: {e}") from e
    if doc.get("split") != split:
        raise SystemExit(f"--kept {spec!r}: {path} is on the {doc.get('split')!r} split, not {split!r}")
    found = {name.split("/", 1)[1]: row for name, row in doc.get("rows", {}).items()
             if name.startswith(prefix + "/")}
    if not found:
        raise SystemExit(f"--kept {spec!r}: {path} has no row {prefix}/...")
    return label, {f"{label}/{model}": {"runs": row["runs"], "cost": row.get("cost", {})}
                   for model, row in found.items()}


def merge_kept(rows: dict[str, dict[str, Any]], kept: dict[str, dict[str, Any]]) -> None:
    """Add kept rows' seeds to ``rows``; a seed that is already there is an error (counted twice)."""
    for name, row in kept.items():
        dst = rows.setdefault(name, {"runs": {}, "cost": {}})
        for protocol, by_seed in row["runs"].items():
            have = dst["runs"].setdefault(protocol, {})
            twice = sorted(set(have) & set(by_seed))
            if twice:
                raise SystemExit(f"{name} ({protocol}): seed(s) {', '.join(twice)} given twice")
            have.update(by_seed)
        for seed, cost in row["cost"].items():
            dst["cost"].setdefault(seed, cost)


def run_seed(run: Path) -> int:
    """The seed of a run: from its config.json, or, for the evaluation folders that come back from the lent
    GPU machine (scripts/device_runs.sh, which names each run CONFIG_s<SEED>), from the folder's name."""
    cfg = run / "config.json"
    if cfg.is_file():
        return int(json.loads(cfg.read_text())["seed"])
    m = re.fullmatch(r".*_s(\d+)", run.name)
    if m is None or not (run / "eval").is_dir():
        raise SystemExit(f"{run}: expected a run folder with config.json, or a device run's folder CONFIG_s<SEED> "
                         "holding eval/")
    return int(m.group(1))


def collect(runs: list[tuple[str, Path]], split: str,
            kept: Optional[list[dict[str, dict[str, Any]]]] = None) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for more in kept or []:
        merge_kept(rows, more)
    for label, run in runs:
        seed = run_seed(run)
        for protocol, name in PROTOCOL_FILES.items():
            f = run / "eval" / split / name
            if not f.is_file():
                continue
            for model, res in json.loads(f.read_text()).items():
                row = rows.setdefault(f"{label}/{model}", {"runs": {}, "cost": {}})
                accs = {k: 100 * v["accuracy"] for k, v in res["factors"].items()}
                if str(seed) in row["runs"].get(protocol, {}):
                    raise SystemExit(f"{label}/{model} ({protocol}): seed {seed} twice ({run})")
                row["runs"].setdefault(protocol, {})[str(seed)] = accs
                ckpt = run / "models" / f"{model}.pt"
                if ckpt.is_file() and str(seed) not in row["cost"]:
                    row["cost"][str(seed)] = training_cost(ckpt)
    for row in rows.values():
        row["summary"] = {}
        for protocol, by_seed in row["runs"].items():
            factors = sorted(next(iter(by_seed.values())), key=int)
            arr = np.array([[by_seed[s][f] for f in factors] for s in sorted(by_seed)])
            row["summary"][protocol] = {
                "seeds": len(arr),
                "mean": {f: round(float(arr[:, i].mean()), 2) for i, f in enumerate(factors)},
                "std": {f: round(float(arr[:, i].std(ddof=1)), 2) if len(arr) > 1 else None for i, f in enumerate(factors)},
                "mean_over_factors": round(float(arr.mean()), 2),
            }
    return rows


def paired(rows: dict[str, Any], against: str) -> dict[str, Any]:
    """Each row minus row ``against``, seed by seed (same seed: same training subset and HR model), per
    protocol and factor: mean and spread of the difference over the seeds both rows have, at the factors both have."""
    if against not in rows:
        raise SystemExit(f"--against {against}: no such row; rows are {sorted(rows)}")
    out: dict[str, Any] = {}
    for name, row in rows.items():
        if name == against:
            continue
        for protocol, by_seed in row["runs"].items():
            ref = rows[against]["runs"].get(protocol, {})
            seeds = sorted(set(by_seed) & set(ref))
            if not seeds:
                continue
            # the factors both rows have at every shared seed (a row evaluated at fewer factors: the others left out)
            factors = sorted(set.intersection(*(set(by_seed[s]) & set(ref[s]) for s in seeds)), key=int)
            if not factors:
                continue
            d = np.array([[by_seed[s][f] - ref[s][f] for f in factors] for s in seeds])
            out.setdefault(name, {})[protocol] = {
                "seeds": len(seeds),
                "mean": {f: round(float(d[:, i].mean()), 2) for i, f in enumerate(factors)},
                "std": {f: round(float(d[:, i].std(ddof=1)), 2) if len(d) > 1 else None for i, f in enumerate(factors)},
            }
    return out


def overall(rows: dict[str, Any], against: str) -> dict[str, Any]:
    """Each row minus row ``against`` averaged over every factor and protocol both have (the number the
    shipping rules compare), seed by seed, then the mean and spread over those seeds."""
    if against not in rows:
        raise SystemExit(f"--against {against}: no such row; rows are {sorted(rows)}")
    ref = rows[against]["runs"]
    out: dict[str, Any] = {}
    for name, row in rows.items():
        if name == against:
            continue
        protocols = sorted(set(row["runs"]) & set(ref))
        seeds = sorted(set.intersection(*(set(row["runs"][p]) & set(ref[p]) for p in protocols))) if protocols else []
        if not seeds:
            continue
        # the seeds' gaps unrounded into the mean and spread (rounded only as stored): a mean of rounded
        # gaps can cross a rule's line the exact one does not
        vals = np.array([np.mean([row["runs"][p][sd][f] - ref[p][sd][f] for p in protocols for f in row["runs"][p][sd]])
                         for sd in seeds])
        out[name] = {"protocols": protocols, "by_seed": {sd: round(float(v), 2) for sd, v in zip(seeds, vals)},
                     "mean": round(float(vals.mean()), 2),
                     "std": round(float(vals.std(ddof=1)), 2) if len(vals) > 1 else None}
    return out


def film_check(run: Path, split: str, constants: tuple[int, ...] = (1, 2, 4, 8)) -> dict[str, Any]:
    """Does the scale-aware G use the factor? Accuracy per factor of RUN's fsrfer model when FiLM is
    told each face's true factor, and when it is told one constant factor for every face instead."""
    from trainer import checkpoint
    from trainer.evaluate import evaluate_fn, torch_logits_fn
    from trainer.train import PRE, load_data
    from trainer import config as config_mod

    cfg = config_mod.from_dict(json.loads((run / "config.json").read_text()))
    data = load_data(cfg, config_mod.resolve_data_path(cfg, None, str(REPO / "configs" / "x.yaml")))
    s = getattr(data, split)
    model, _, _ = checkpoint.load_model(run / "models" / "fsrfer.pt")
    if not getattr(model, "scale_aware", False):
        raise SystemExit(f"{run}: its fsrfer model is not scale-aware")
    fn = torch_logits_fn(model)
    out: dict[str, Any] = {}
    for label, const in [("true factor", None)] + [(f"constant x{c}", c) for c in constants]:
        res = evaluate_fn(lambda x, f, c=const: fn(x, c or f), s.images, s.labels, tuple(cfg.eval.factors), PRE)
        out[label] = {f: round(100 * v["accuracy"], 2) for f, v in res["factors"].items()}
        print(f"{label:14s} " + " ".join(f"x{f}:{v:.2f}" for f, v in out[label].items()))
    return out


def kept_film_check(path: Path, label: str, split: str) -> dict[str, Any]:
    """The film check of LABEL already in the result file PATH (written on the same split)."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"--keep-film-check: cannot read {path}: {e}") from e
    check = old.get("film_check")
    if not isinstance(check, dict) or check.get("run") != label or old.get("split") != split:
        raise SystemExit(f"--keep-film-check: {path} has no film check of {label!r} on the {split} split; "
                         f"run without --keep-film-check to evaluate it")
    return check


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", help="LABEL=RUN_DIR")
    ap.add_argument("--kept", metavar="LABEL=FILE:PREFIX", action="append", default=[],
                    help="also take the seeds of the rows PREFIX/* of an earlier summary FILE as LABEL/* "
                         "(runs whose folders are gone); may repeat")
    ap.add_argument("--split", default="val")
    ap.add_argument("--json", required=True)
    ap.add_argument("--note", default="", help="what these runs are (kept in the file)")
    ap.add_argument("--against", metavar="ROW", action="append", default=[],
                    help="also write every row's per-seed difference to ROW (e.g. early_g/fsrfer): mean and "
                         "spread; may repeat")
    ap.add_argument("--film-check", metavar="LABEL",
                    help="also evaluate LABEL's scale-aware fsrfer model with a constant factor for every face")
    ap.add_argument("--keep-film-check", action="store_true",
                    help="with --film-check: take LABEL's check from the existing --json file instead of "
                         "evaluating it again (about 40 min on a 2-core CPU; same run and faces, deterministic)")
    args = ap.parse_args(argv)
    if not args.runs and not args.kept:
        raise SystemExit("nothing to collect: give LABEL=RUN_DIR arguments or --kept")
    if args.keep_film_check and not args.film_check:
        raise SystemExit("--keep-film-check needs --film-check LABEL")
    runs = []
    for item in args.runs:
        label, _, path = item.partition("=")
        if not path or not (Path(path, "config.json").is_file() or Path(path, "eval").is_dir()):
            raise SystemExit(f"{item!r}: expected LABEL=RUN_DIR with a run's config.json (or a device run's eval/) "
                             "in RUN_DIR")
        runs.append((label, Path(path)))
    from fsrfer_edge.fileio import write_json

    kept = [kept_runs(k, args.split) for k in args.kept]
    shown = [f"--json {args.json}"] + [f"--against {a}" for a in args.against] + \
        [f"--kept {k}" for k in args.kept] + \
        ([f"--film-check {args.film_check}"] if args.film_check else []) + \
        (["--keep-film-check"] if args.keep_film_check else []) + \
        [f"{label}=RUN_DIR" + (f" (x{n}, one per seed)" if n > 1 else "")
         for label, n in {label: sum(1 for lb, _ in runs if lb == label) for label, _ in runs}.items()]
    doc = {"command": "python scripts/early_g_summary.py " + " ".join(shown) + " (RUN_DIR: a scripts/early_g.py run)",
           "split": args.split, "note": args.note, "load_average": list(os.getloadavg()),
           "rows": collect(runs, args.split, [rows for _, rows in kept])}
    if args.against:
        doc["paired"] = [{"against": a, "difference": paired(doc["rows"], a), "overall": overall(doc["rows"], a)}
                         for a in args.against]
    if args.keep_film_check:
        doc["film_check"] = kept_film_check(Path(args.json), args.film_check, args.split)
    elif args.film_check:
        doc["film_check"] = {"run": args.film_check, "accuracy": film_check(dict(runs)[args.film_check], args.split)}
    write_json(args.json, doc)
    for name, row in doc["rows"].items():
        for protocol, s in row["summary"].items():
            print(f"{name:32s} {protocol:8s} " + " ".join(f"x{f}:{v:.2f}" for f, v in s["mean"].items())
                  + f"  mean {s['mean_over_factors']:.2f} ({s['seeds']} seed(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
