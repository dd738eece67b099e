"""JPEG crops of other qualities: do the quality-50 JPEG maps hold, and do maps chosen by the quality the SDK reads do
better (the rule: docs/experiments.md, "JPEG crops of other qualities")?

    python scripts/jpeg_quality_calibration.py --json results/ferplus/score_calibration_jpeg_qualities_val.json
    python scripts/jpeg_quality_calibration.py --split test \
        --json results/ferplus/score_calibration_jpeg_qualities_test.json

Crops as protocol (c) makes them (area-shrunk to the factor's side, then JPEG) at each of :data:`QUALITIES`, through
the SDK's preprocessing. On val each half is scored with maps fitted on the other half (the halves of
``score_calibration.py``, seed 0); on test with maps fitted on all of val. Three ways to give a crop its map:
``base`` (the (b) maps for every crop), ``q50`` (the shipped kind: crops the SDK marks take maps fitted on marked
quality-50 crops) and ``per_quality`` (a marked crop takes the maps fitted on the marked crops of the fitted quality
nearest to the quality the SDK reads for it, ties to the lower).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from score_calibration import (FACTORS, JPEG_MIN_FACES, _shown, fits, study_args,  # noqa: E402
                               study_command, study_faces, study_folds)
from score_reliability import ECE_BINS, expected_calibration_error  # noqa: E402

#: The qualities the crops are saved at, and those the per-quality maps are fitted at.
QUALITIES = (20, 30, 40, 50, 60, 70, 80, 90)
FITTED = (30, 50, 70)
#: The rule: the least fall of the mean over qualities, the most a quality's mean and a quality-50 factor may rise.
GAIN, RISE, RISE_AT_50 = 0.5, 0.3, 0.3
METHODS = ("base", "q50", "per_quality")


def read_quality(crop: np.ndarray, size: int = 48) -> Optional[int]:
    """The quality the SDK reads for a gray crop: :func:`~fsrfer_edge.preprocessing.jpeg_quality` after the
    corrections ``Preprocessing.to_pixels`` makes before it looks (default :class:`Corrections`); None for a crop
    wider than ``size``, the model's input side, which the SDK does not read."""
    from fsrfer_edge.preprocessing import jpeg_quality, undo_linear_enlarging, undo_pixel_repetition

    img = undo_linear_enlarging(undo_pixel_repetition(crop.astype(np.float32)[None]))
    return jpeg_quality(img[0]) if max(img.shape[-2:]) <= size else None


def crops_data(fn: Any, pre: Any, images: np.ndarray, factor: int, quality: Optional[int],
               batch: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, C) logits of the faces as crops at ``factor`` (area-shrunk, JPEG at ``quality``; None: protocol (b)'s
    bicubic crops), (N,) the SDK's marks, and (N,) the quality it reads (0 where none)."""
    from trainer.evaluate import lr_crops

    out, marks, read = [], [], []
    for i in range(0, len(images), batch):
        crops = (lr_crops(images[i:i + batch], factor, "bicubic") if quality is None
                 else lr_crops(images[i:i + batch], factor, "box", quality))
        flags: list[bool] = []
        x = pre.normalize(pre.to_pixels(list(crops), jpeg=flags))
        out.append(np.asarray(fn(x, factor), dtype=np.float64))
        marks += flags
        read += [(read_quality(c, pre.input_size) or 0) if m else 0 for c, m in zip(crops, flags)]
    return np.concatenate(out), np.asarray(marks, dtype=bool), np.asarray(read, dtype=np.int64)


def nearest_fitted(read: np.ndarray) -> np.ndarray:
    """For each quality read (0: none), the fitted quality nearest to it, ties to the lower (0 for none)."""
    fitted = np.asarray(FITTED)
    idx = np.argmin(np.abs(read[:, None] - fitted[None, :]) * 2 + (read[:, None] < fitted[None, :]), axis=1)
    return np.where(read > 0, fitted[idx], 0)


def fit_maps(small: dict[int, np.ndarray], jpeg: dict[int, dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]],
             labels: np.ndarray, keep: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """The (b) maps, and each fitted quality's JPEG maps, from the faces ``keep`` marks."""
    base = fits({f: small[f][keep] for f in FACTORS}, labels[keep], classes)["logistic"]
    out: dict[str, Any] = {"base": base}
    for q in FITTED:
        cam = {f: (jpeg[q][f][0][keep], jpeg[q][f][1][keep]) for f in FACTORS}
        out[q] = base.with_jpeg({f: z[m] for f, (z, m, *_) in cam.items()},
                                {f: labels[keep][m] for f, (_, m) in cam.items()}, JPEG_MIN_FACES)
    return out


def confidences(maps: dict[str, Any], z: np.ndarray, marks: np.ndarray, read: np.ndarray,
                factor: int) -> dict[str, np.ndarray]:
    """Each method's confidence of crops at ``factor``."""
    f = np.full(len(z), float(factor))
    per_quality = maps["base"].confidence(z, f)
    near = nearest_fitted(read)
    for q in FITTED:
        rows = marks & (near == q)
        if rows.any():
            per_quality[rows] = maps[q].confidence(z[rows], f[rows], np.ones(int(rows.sum()), bool))
    return {"base": maps["base"].confidence(z, f), "q50": maps[50].confidence(z, f, marks), "per_quality": per_quality}


def decide(means: dict[str, dict[str, float]], at50: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The rule on the per-quality means and quality 50's per-factor errors."""
    overall = {m: float(np.mean([means[str(q)][m] for q in QUALITIES])) for m in METHODS}
    fall = overall["q50"] - overall["per_quality"]
    rise = max(means[str(q)]["per_quality"] - means[str(q)]["q50"] for q in QUALITIES)
    rise50 = max(at50[str(f)]["per_quality"] - at50[str(f)]["q50"] for f in FACTORS)
    return {"overall": {m: round(v, 2) for m, v in overall.items()}, "mean_fall": round(fall, 2),
            "worst_quality_rise": round(rise, 2), "worst_rise_at_50": round(rise50, 2),
            "adopted": bool(fall >= GAIN and rise <= RISE and rise50 <= RISE_AT_50)}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    study_args(ap)
    ap.add_argument("--json", required=True, help="the study's result file")
    args = ap.parse_args(argv)
    from fsrfer_edge.fileio import sha256_file, write_json

    from trainer.evaluate import onnx_logits_fn

    fn, pre = onnx_logits_fn(args.model, threads=args.threads)
    classes = list(pre.classes)

    def data(images: np.ndarray, qualities: tuple[int, ...]) -> tuple[dict, dict]:
        small = {f: crops_data(fn, pre, images, f, None)[0] for f in FACTORS}
        jpeg = {q: {f: crops_data(fn, pre, images, f, q) for f in FACTORS} for q in qualities}
        return small, jpeg

    val_images, val_labels = study_faces(args, "val")
    v_small, v_jpeg = data(val_images, QUALITIES if args.split == "val" else FITTED)
    labels, jpeg, folds = study_folds(args, val_labels, v_jpeg, lambda images: data(images, QUALITIES)[1],
                                      lambda keep: fit_maps(v_small, v_jpeg, val_labels, keep, classes))
    cells: dict[str, dict[str, dict[str, float]]] = {}
    means: dict[str, dict[str, float]] = {}
    for q in QUALITIES:
        cells[str(q)] = {}
        for f in FACTORS:
            z, marks, read = jpeg[q][f]
            conf: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
            right = []
            for idx, maps in folds:
                for m, c in confidences(maps, z[idx], marks[idx], read[idx], f).items():
                    conf[m].append(c)
                right.append((z[idx].argmax(1) == labels[idx]).astype(np.float64))
            r = np.concatenate(right)
            cell = {m: round(expected_calibration_error(np.concatenate(conf[m]), r), 2) for m in METHODS}
            cell.update({f"mean_{m}": round(100 * float(np.concatenate(conf[m]).mean()), 2) for m in METHODS})
            cell["accuracy"] = round(100 * float(r.mean()), 2)
            cell["marked"] = round(100 * float(marks.mean()), 2)
            cell["read_own"] = round(100 * float((read[marks] == q).mean()), 2) if marks.any() else None
            cell["read_within_5"] = (round(100 * float((np.abs(read[marks] - q) <= 5).mean()), 2) if marks.any()
                                     else None)
            cells[str(q)][str(f)] = cell
            print(f"q{q} x{f}: marked {cell['marked']:.1f}% (read own {cell['read_own']}), accuracy "
                  f"{cell['accuracy']:.2f}; base {cell['base']:.2f}, q50 {cell['q50']:.2f}, per quality "
                  f"{cell['per_quality']:.2f}", flush=True)
        means[str(q)] = {m: round(float(np.mean([cells[str(q)][str(f)][m] for f in FACTORS])), 2) for m in METHODS}
    decision = decide(means, cells["50"])
    print(decision)
    write_json(args.json, {
        "command": study_command("scripts/jpeg_quality_calibration.py", args),
        "model": {"path": _shown(args.model), "sha256": sha256_file(args.model)}, "split": args.split,
        "n": int(len(labels)), "factors": list(FACTORS), "qualities": list(QUALITIES), "fitted": list(FITTED),
        "ece_bins": ECE_BINS, "min_faces": JPEG_MIN_FACES, "gain": GAIN, "rise": RISE, "rise_at_50": RISE_AT_50,
        "load_average": list(os.getloadavg()),
        "note": "calibration error (points, 15 bins, majority label) of crops area-shrunk and saved as JPEG at each "
                "quality, through the SDK's preprocessing; base: the (b) maps for every crop; q50: marked crops take "
                "maps fitted on marked quality-50 crops (the shipped kind); per_quality: marked crops take the maps "
                "of the fitted quality nearest to the one the SDK reads (ties to the lower); marked: % of crops the "
                "SDK marks; read_own / read_within_5: % of marked crops whose quality it reads as the crop's own / "
                "within 5; " + ("maps fitted on the other half of val (2-fold cross-fitting, seeded halves)"
                                if args.split == "val" else "maps fitted on all of FER+ val"),
        "cells": cells, "means": means, **decision})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
