"""Crops an app enlarged itself: does the SDK's own estimate of a face's factor make their confidence right (the
rule: docs/experiments.md, "Crops an app enlarged itself")?

    python scripts/enlarged_confidence.py --json results/ferplus/enlarged_confidence_val.json
    python scripts/enlarged_confidence.py --split test --json results/ferplus/enlarged_confidence_test.json
    python scripts/enlarged_confidence.py --write-calibration fsrfer_edge/models/default.scores.json

Protocol (a)'s crops (each face shrunk by the factor and enlarged back to 48 px by bicubic, as whole grey levels: what
an app that resized its crops itself gives) and (c)'s 48 px crops (JPEG at 50), through the SDK's preprocessing.
Today a crop read at the input size takes x1's map; with the estimate, the map at the factor
:func:`fsrfer_edge.confidence.estimate_size` gives it, with weights fitted on (a) crops of every factor. Maps as
shipped ((b) maps, JPEG maps from marked quality-50 crops) and the weights fitted on the other half of val (its
halves, seed 0), or on all of val for test. ``--write-calibration`` adds the weights, fitted on all of val, to the
calibration file it names (its maps unchanged).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from jpeg_quality_calibration import crops_data  # noqa: E402
from score_calibration import (FACTORS, _shown, shipped_kind, study_args,  # noqa: E402
                               study_command, study_faces, study_folds)
from score_reliability import ECE_BINS, expected_calibration_error  # noqa: E402

#: The rule: the least fall of the (a) mean over x2..x8, the most the 48 px rows may rise (points).
GAIN, RISE = 3.0, 0.3
METHODS = ("today", "estimate", "estimate_unmarked")


def enlarged(images: np.ndarray, factor: int) -> np.ndarray:
    """Protocol (a)'s crops as an app gives them: shrunk by ``factor`` and enlarged back by bicubic, uint8."""
    from fsrfer_edge.preprocessing import degrade

    return np.clip(np.rint(degrade(images, factor)), 0, 255).astype(np.uint8)


def sdk_data(fn: Any, pre: Any, crops: np.ndarray, factor: int, batch: int = 512) -> dict[str, np.ndarray]:
    """The crops through the SDK's preprocessing: logits, each crop's side after the corrections, the SDK's JPEG
    marks, and the size statistics of the pixels the model sees (those the estimate reads)."""
    from fsrfer_edge.confidence import size_features

    z, sides, marks, feats = [], [], [], []
    for i in range(0, len(crops), batch):
        s: list[int] = []
        m: list[bool] = []
        pixels = pre.to_pixels(list(crops[i:i + batch]), sides=s, jpeg=m)
        feats.append(size_features(pixels))
        z.append(np.asarray(fn(pre.normalize(pixels), factor), dtype=np.float64))
        sides += s
        marks += m
    return {"logits": np.concatenate(z), "sides": np.asarray(sides), "marks": np.asarray(marks, dtype=bool),
            "features": np.concatenate(feats)}


def factors_of(d: dict[str, np.ndarray], rows: np.ndarray, input_size: int, weights: Optional[np.ndarray],
               largest: float, marked_too: bool = True) -> np.ndarray:
    """Each crop's factor as the SDK would read it: input side over its side, or, with ``weights``, the estimate for
    the crops read at the input size (only the unmarked ones unless ``marked_too``)."""
    f = input_size / d["sides"][rows].astype(np.float64)
    if weights is None:
        return f
    est = np.clip(np.exp2(d["features"][rows] @ weights), 1.0, largest)
    use = (d["sides"][rows] >= input_size) & (marked_too | ~d["marks"][rows])
    return np.where(use, est, f)


def decide(cells: dict[str, dict[str, dict[str, float]]], method: str) -> dict[str, Any]:
    """The rule for ``method`` on the (a) cells and the 48 px (c) cell."""
    small = [str(f) for f in FACTORS if f > 1]
    fall = float(np.mean([cells["a"][f]["today"] for f in small]) - np.mean([cells["a"][f][method] for f in small]))
    rise_a = cells["a"]["1"][method] - cells["a"]["1"]["today"]
    rise_c = cells["c"]["1"][method] - cells["c"]["1"]["today"]
    return {"mean_fall_x2_x8": round(fall, 2), "rise_48px": round(rise_a, 2), "rise_48px_jpeg": round(rise_c, 2),
            "met": bool(fall >= GAIN and rise_a <= RISE and rise_c <= RISE)}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    study_args(ap)
    ap.add_argument("--json", help="the study's result file")
    ap.add_argument("--write-calibration", metavar="PATH",
                    help="add the size estimate's weights, fitted on all of val, to this calibration file")
    args = ap.parse_args(argv)
    if args.json is None and args.write_calibration is None:
        ap.error("give --json, --write-calibration or both")
    from fsrfer_edge.confidence import ScoreCalibration
    from fsrfer_edge.fileio import sha256_file, write_json

    from trainer.evaluate import lr_crops, onnx_logits_fn

    fn, pre = onnx_logits_fn(args.model, threads=args.threads)
    classes, size = list(pre.classes), pre.input_size

    def data(images: np.ndarray) -> dict[str, Any]:
        return {"a": {f: sdk_data(fn, pre, enlarged(images, f), f) for f in FACTORS},
                "c": {1: sdk_data(fn, pre, lr_crops(images, 1, "box", 50), 1)}}

    val_images, val_labels = study_faces(args, "val")
    small = {f: crops_data(fn, pre, val_images, f, None)[0] for f in FACTORS}
    cam = {f: crops_data(fn, pre, val_images, f, 50)[:2] for f in FACTORS}
    vd = data(val_images)

    def fit(keep: np.ndarray) -> tuple[Any, np.ndarray]:
        cal = shipped_kind(small, cam, val_labels, keep, classes)
        feats = np.concatenate([vd["a"][f]["features"][keep] for f in FACTORS])
        truth = np.concatenate([np.full(int(keep.sum()), float(f)) for f in FACTORS])
        w, *_ = np.linalg.lstsq(feats, np.log2(truth), rcond=None)
        return cal, w

    everything = np.ones(len(val_labels), dtype=bool)
    if args.write_calibration:
        cal = ScoreCalibration.load(args.write_calibration)
        _, w = fit(everything)
        cal = dataclasses.replace(cal, size_weights=tuple(float(v) for v in w), source=cal.source + (
            f"; size_weights: python scripts/enlarged_confidence.py --write-calibration {args.write_calibration}, "
            f"FER+ val ({len(val_labels)} faces) shrunk by each factor and enlarged back by bicubic"))
        cal.save(args.write_calibration)
        print("wrote", args.write_calibration, cal.size_weights)
        if args.json is None:
            return 0
    labels, d, folds = study_folds(args, val_labels, vd, data, fit)
    largest = float(max(FACTORS))
    cells: dict[str, dict[str, dict[str, float]]] = {"a": {}, "c": {}}
    for p, by_factor in d.items():
        for f, dd in by_factor.items():
            conf: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
            right, est = [], []
            for idx, (cal, w) in folds:
                z, marks = dd["logits"][idx], dd["marks"][idx]
                for m, (weights, marked_too) in {"today": (None, True), "estimate": (w, True),
                                                 "estimate_unmarked": (w, False)}.items():
                    conf[m].append(cal.confidence(z, factors_of(dd, idx, size, weights, largest, marked_too), marks))
                est.append(factors_of(dd, idx, size, w, largest))
                right.append((z.argmax(1) == labels[idx]).astype(np.float64))
            r = np.concatenate(right)
            e = np.concatenate(est)
            cell = {m: round(expected_calibration_error(np.concatenate(conf[m]), r), 2) for m in METHODS}
            cell.update({f"mean_{m}": round(100 * float(np.concatenate(conf[m]).mean()), 2) for m in METHODS})
            cell.update(accuracy=round(100 * float(r.mean()), 2), marked=round(100 * float(dd["marks"].mean()), 2),
                        read_at_input=round(100 * float((dd["sides"] >= size).mean()), 2),
                        mean_estimate=round(float(np.exp2(np.log2(e).mean())), 2))
            cells[p][str(f)] = cell
            print(f"({p}) x{f}: accuracy {cell['accuracy']:.2f}, estimate {cell['mean_estimate']:.2f}; today "
                  f"{cell['today']:.2f}, estimate {cell['estimate']:.2f}, unmarked only "
                  f"{cell['estimate_unmarked']:.2f}", flush=True)
    decision = {m: decide(cells, m) for m in METHODS[1:]}
    chosen = ("estimate" if decision["estimate"]["met"] else
              "estimate_unmarked" if decision["estimate_unmarked"]["met"] else None)
    print(decision, "chosen:", chosen)
    if args.json:
        write_json(args.json, {
            "command": study_command("scripts/enlarged_confidence.py", args),
            "model": {"path": _shown(args.model), "sha256": sha256_file(args.model)}, "split": args.split,
            "n": int(len(labels)), "factors": list(FACTORS), "ece_bins": ECE_BINS, "gain": GAIN, "rise": RISE,
            "load_average": list(os.getloadavg()),
            "weights": [[round(float(v), 6) for v in w] for _, (_, w) in folds],
            "note": "calibration error (points, 15 bins, majority label); a: crops shrunk by the factor and enlarged "
                    "back to 48 px by bicubic, as whole grey levels; c: 48 px crops saved as JPEG at 50; today: a crop "
                    "read at the input size takes x1's map; estimate: the map at the SDK's estimated factor; "
                    "estimate_unmarked: the same for crops not marked as JPEG images only; read_at_input: % of crops "
                    "read at the input size (the rest were reduced by the corrections); mean_estimate: geometric "
                    "mean of the factors read with the estimate; "
                    + ("maps and weights fitted on the other half of val (2-fold cross-fitting, seeded halves)"
                       if args.split == "val" else "maps and weights fitted on all of FER+ val"),
            "cells": cells, "decisions": decision, "chosen": chosen})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
