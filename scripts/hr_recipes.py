"""Compare stage-1 (HR network) recipes over seeds: FER+ val accuracy at x1 per run, each recipe's mean and
spread, and each recipe against a reference recipe under the rule the variant configs state (a candidate only
if its mean is at least --min-gain above the reference's mean and every one of its seeds is above that mean).

    python scripts/hr_recipes.py --json results/ferplus/hr_recipes_val.json --reference ferplus_soft_aug_long \\
        --eval ferplus_soft_aug_long:0=results/ferplus/hr_shipped_val.json \\
        --log ferplus_soft_aug_long:1=CALL1/logs/ferplus_soft_aug_long_s1.log,CALL2/logs/ferplus_soft_aug_long_s1.log \\
        --eval ferplus_soft_aug_long:1=RUNS/ferplus_soft_aug_long_s1.val.json ...

A run is RECIPE:SEED. ``--log`` gives the training log(s) of ``fsrfer-train --steps stage1`` (several when the
run was resumed; later files win for a repeated epoch): the per-epoch val accuracy, the best epoch (the one the
run keeps) and the seconds per epoch. ``--eval`` gives an ``fsrfer-eval --factors 1 --split val --json`` file of
the kept network. ``--history`` takes the same per-epoch figures from the run's ``models/hr.pt`` (the trainer
keeps its history there), for a run whose logs are lost or were overwritten on a resume. A run's figure is the
evaluation file's where given, else the log's best epoch; where both are given, both are recorded (they must
agree: the same faces, the same network). ``--runs-from FILE[:RECIPE]`` takes runs already recorded in an
earlier result file of this script (only RECIPE's where given), so a new recipe can be compared with a
reference whose logs are gone:

    python scripts/hr_recipes.py --json results/ferplus/hr_120ep_val.json --reference ferplus_soft_aug_long \\
        --runs-from results/ferplus/hr_recipes_val.json:ferplus_soft_aug_long \\
        --history ferplus_soft_aug_120ep:0=RUN/models/hr.pt --eval ferplus_soft_aug_120ep:0=RUN.val.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fsrfer_edge.fileio import write_json  # noqa: E402

EPOCH = re.compile(r"stage1 epoch (\d+)/(\d+): \{.*'val_score': ([0-9.]+), 'seconds': ([0-9.]+)")


def _run_key(spec: str, flag: str) -> tuple[str, int, str]:
    key, sep, value = spec.partition("=")
    recipe, _, seed = key.rpartition(":")
    if not sep or not recipe or not seed.isdigit() or not value:
        raise SystemExit(f"{flag} {spec!r}: expected RECIPE:SEED=PATH[,PATH...]")
    return recipe, int(seed), value


def parse_logs(paths: list[Path]) -> dict[str, Any]:
    """Per-epoch val accuracy (%) and seconds from stage-1 training logs, and the best epoch (first of ties)."""
    epochs: dict[int, tuple[float, float]] = {}
    total = 0
    for path in paths:
        try:
            text = path.read_text()
        except OSError as e:
            raise SystemExit(f"cannot read the training log {path}: {e}") from e
        for m in EPOCH.finditer(text):
            epochs[int(m.group(1))] = (100.0 * float(m.group(3)), float(m.group(4)))
            total = int(m.group(2))
    if not epochs:
        raise SystemExit(f"no 'stage1 epoch N/M' lines in {[str(p) for p in paths]}: not a stage-1 training log")
    return epoch_summary(epochs, total)


def epoch_summary(epochs: dict[int, tuple[float, float]], total: int) -> dict[str, Any]:
    """What is recorded of a run's epochs ({epoch: (val %, seconds)} of ``total``): how many, the best
    (first of ties: the one the trainer keeps), the last, the lowest and highest of the last ten recorded
    (how much keeping the best epoch can have picked), and the mean seconds per epoch."""
    best = max(sorted(epochs), key=lambda e: epochs[e][0])
    last10 = [epochs[e][0] for e in sorted(epochs)[-10:]]
    return {"epochs": len(epochs), "of": total, "finished": len(epochs) == total, "best_epoch": best,
            "best_val": round(epochs[best][0], 2), "last_val": round(epochs[max(epochs)][0], 2),
            "last_10_val": [round(min(last10), 2), round(max(last10), 2)],
            "seconds_per_epoch": round(float(np.mean([s for _, s in epochs.values()])), 2)}


def checkpoint_history(path: Path) -> dict[str, Any]:
    """The per-epoch history a stage-1 checkpoint keeps (``models/hr.pt`` of ``fsrfer-train --steps stage1``),
    summarised as :func:`parse_logs` does a log's: the same figures, where the logs are lost or incomplete."""
    from trainer import checkpoint
    from fsrfer_edge.errors import ModelError

    try:
        meta = checkpoint.load(path, kind="model")["meta"]
        total = int(meta["config"]["stage1"]["epochs"])
        epochs = {int(h["epoch"]): (100.0 * float(h["val_score"]), float(h["seconds"])) for h in meta["history"]}
    except ModelError as e:
        raise SystemExit(str(e)) from e
    except (KeyError, TypeError, ValueError) as e:
        raise SystemExit(f"{path}: expected a model checkpoint of fsrfer-train --steps stage1 with its "
                         f"per-epoch history ({e!r})") from e
    if meta.get("name") != "hr" or not epochs:
        raise SystemExit(f"{path}: not a stage-1 (HR) model checkpoint with a history "
                         f"(name {meta.get('name')!r}, {len(epochs)} epochs)")
    return epoch_summary(epochs, total)


def eval_accuracy(path: Path) -> float:
    """Accuracy (%) at x1 of an ``fsrfer-eval --json`` file on FER+ val."""
    try:
        doc = json.loads(path.read_text())
        if doc.get("split") != "val":
            raise SystemExit(f"{path} is on the {doc.get('split')!r} split; expected val")
        return round(100.0 * float(doc["factors"]["1"]["accuracy"]), 2)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"{path}: expected an fsrfer-eval --json file with factors['1'].accuracy ({e})") from e


def recorded_runs(spec: str) -> dict[tuple[str, int], dict[str, Any]]:
    """The runs of an earlier result file of this script, all or one recipe's (``FILE[:RECIPE]``)."""
    # the recipe follows the last colon, and only where the whole of spec is not itself a file (a path may hold ':')
    path, recipe = (spec, "") if Path(spec).is_file() or ":" not in spec else spec.rsplit(":", 1)
    got: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        for key, run in json.loads(Path(path).read_text())["runs"].items():
            name, _, seed = key.rpartition(":")
            if not recipe or name == recipe:
                got[(name, int(seed))] = {**run, "val": float(run["val"]), "recorded_in": path}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise SystemExit(f"--runs-from {spec!r}: expected a result file of scripts/hr_recipes.py ({e!r})") from e
    if not got:
        raise SystemExit(f"--runs-from {spec!r}: no runs of recipe {recipe!r} in {path}")
    return got


def summarise(runs: dict[tuple[str, int], dict[str, Any]], reference: str, min_gain: float) -> dict[str, Any]:
    """Each recipe's seeds, mean and spread (sample std), and each other recipe against ``reference``."""
    recipes: dict[str, dict[str, Any]] = {}
    for (recipe, seed), run in sorted(runs.items()):
        recipes.setdefault(recipe, {"seeds": {}})["seeds"][str(seed)] = run["val"]
    for r in recipes.values():
        vals = list(r["seeds"].values())
        r["mean"] = round(float(np.mean(vals)), 2)
        r["std"] = round(float(np.std(vals, ddof=1)), 2) if len(vals) > 1 else None
    if reference not in recipes:
        raise SystemExit(f"--reference {reference!r} has no runs; recipes given: {sorted(recipes)}")
    ref = float(np.mean(list(recipes[reference]["seeds"].values())))
    for name, r in recipes.items():
        if name == reference:
            continue
        gain = float(np.mean(list(r["seeds"].values()))) - ref
        above = all(v > ref for v in r["seeds"].values())
        r["against_reference"] = {"gain": round(gain, 2), "every_seed_above_reference_mean": above,
                                  "candidate": bool(gain >= min_gain and above)}
    return recipes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True, type=Path, help="result file to write")
    ap.add_argument("--reference", required=True, help="the recipe every other is compared with")
    ap.add_argument("--min-gain", type=float, default=0.3, help="the rule's line in points (default 0.3)")
    ap.add_argument("--log", action="append", default=[], metavar="RECIPE:SEED=LOG[,LOG]")
    ap.add_argument("--history", action="append", default=[], metavar="RECIPE:SEED=CHECKPOINT",
                    help="a run's per-epoch history from its models/hr.pt, in place of --log")
    ap.add_argument("--eval", action="append", default=[], metavar="RECIPE:SEED=JSON")
    ap.add_argument("--runs-from", action="append", default=[], metavar="JSON[:RECIPE]",
                    help="runs recorded in an earlier result file of this script (all, or RECIPE's)")
    ap.add_argument("--note", default="", help="what the runs were, where and when")
    args = ap.parse_args(argv)
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    recorded: dict[tuple[str, int], dict[str, Any]] = {}
    for spec in args.runs_from:
        recorded.update(recorded_runs(spec))
    for spec in args.log:
        recipe, seed, value = _run_key(spec, "--log")
        runs.setdefault((recipe, seed), {})["log"] = parse_logs([Path(p) for p in value.split(",")])
    for spec in args.history:
        recipe, seed, value = _run_key(spec, "--history")
        if "log" in runs.get((recipe, seed), {}):
            raise SystemExit(f"{recipe}:{seed}: give --log or --history, not both")
        runs.setdefault((recipe, seed), {})["log"] = {**checkpoint_history(Path(value)), "from": "checkpoint"}
    for spec in args.eval:
        recipe, seed, value = _run_key(spec, "--eval")
        runs.setdefault((recipe, seed), {})["eval_val"] = eval_accuracy(Path(value))
    if not runs:
        raise SystemExit("no runs: give --log, --history and/or --eval RECIPE:SEED=...")
    for key, run in runs.items():
        if key in recorded:
            raise SystemExit(f"{key[0]}:{key[1]} is both given and recorded in {recorded[key]['recorded_in']}")
        if "log" in run and not run["log"]["finished"]:
            raise SystemExit(f"{key[0]}:{key[1]}: its log ends at epoch {run['log']['epochs']} of {run['log']['of']}")
        run["val"] = run["eval_val"] if "eval_val" in run else run["log"]["best_val"]
        run["source"] = "eval" if "eval_val" in run else "log"
    runs.update(recorded)
    doc = {"split": "val", "metric": "FER+ val accuracy at x1 (%), majority labels", "note": args.note,
           "command": shlex.join(["python", "scripts/hr_recipes.py", *(sys.argv[1:] if argv is None else argv)]),
           "load_average": list(os.getloadavg()),
           "rule": {"reference": args.reference, "min_gain": args.min_gain},
           "runs": {f"{r}:{s}": run for (r, s), run in sorted(runs.items())},
           "recipes": summarise(runs, args.reference, args.min_gain)}
    write_json(args.json, doc)
    for name, r in doc["recipes"].items():
        print(name, r["seeds"], "mean", r["mean"], "std", r["std"], r.get("against_reference", ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
