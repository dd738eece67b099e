"""Crops enlarged by other kernels: is the size estimate, fitted on bicubic crops, right for crops an app enlarged
with OpenCV's or PIL's kernels (the rule: docs/experiments.md, "Crops enlarged by other kernels")?

    python scripts/enlarging_kernels.py --json results/ferplus/enlarging_kernels_val.json
    python scripts/enlarging_kernels.py --split test --json results/ferplus/enlarging_kernels_test.json

Each face is shrunk to 48/f px by area averaging (a camera's crop), then enlarged to 48 px by the app in each of
:data:`WAYS`, as uint8, and given to the SDK's preprocessing. The crops read at the input size and not marked as JPEG
take the map at a factor read three ways: x1's (``today``), the shipped estimate's (``shipped``: weights fitted on
protocol (a)'s bicubic crops) and the candidate's (``mixed``: fitted on (a) crops and every way's crops); ``held_out``
is the candidate fitted without the row's way. Maps and weights are fitted on the other half of val (2-fold
cross-fitting, seeded halves), or on all of val for test.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from enlarged_confidence import enlarged, factors_of, sdk_data  # noqa: E402
from jpeg_quality_calibration import crops_data  # noqa: E402
from score_calibration import (FACTORS, _shown, shipped_kind, study_args,  # noqa: E402
                               study_command, study_faces, study_folds)
from score_reliability import ECE_BINS, expected_calibration_error  # noqa: E402

#: The rule: the least fall of the six ways' mean over x2..x8, the most the (a) and 48 px rows may rise (points).
GAIN, RISE = 0.5, 0.3
METHODS = ("today", "shipped", "mixed", "held_out")


def _unsharp(x: np.ndarray) -> np.ndarray:
    import cv2

    f = x.astype(np.float32)
    return np.clip(np.rint(2 * f - cv2.GaussianBlur(f, (0, 0), 1.0, borderType=cv2.BORDER_REPLICATE)), 0, 255
                   ).astype(np.uint8)


def _ways() -> dict[str, Callable[[np.ndarray, int], np.ndarray]]:
    """Each way an app enlarges a uint8 (h, w) face to (size, size), by name."""
    import cv2
    from PIL import Image

    def cv(flag: int) -> Callable[[np.ndarray, int], np.ndarray]:
        return lambda s, n: cv2.resize(s, (n, n), interpolation=flag)

    def pil(flag: Any) -> Callable[[np.ndarray, int], np.ndarray]:
        return lambda s, n: np.asarray(Image.fromarray(s).resize((n, n), flag))

    r = Image.Resampling
    return {"cv2_cubic": cv(cv2.INTER_CUBIC), "cv2_lanczos4": cv(cv2.INTER_LANCZOS4), "pil_bicubic": pil(r.BICUBIC),
            "pil_lanczos": pil(r.LANCZOS), "pil_bilinear": pil(r.BILINEAR),
            "cv2_cubic_sharpened": lambda s, n: _unsharp(cv2.resize(s, (n, n), interpolation=cv2.INTER_CUBIC))}


WAYS = ("cv2_cubic", "cv2_lanczos4", "pil_bicubic", "pil_lanczos", "pil_bilinear", "cv2_cubic_sharpened")


def app_enlarged(images: np.ndarray, factor: int, way: str) -> np.ndarray:
    """(N, S, S) uint8 faces shrunk to S/factor px by area averaging, then enlarged back to S px by ``way``."""
    import cv2

    n = images.shape[-1]
    side = max(1, round(n / factor))
    enlarge = _ways()[way]
    faces = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    return np.stack([enlarge(cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA), n) for im in faces])


def fit_weights(parts: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """Least-squares weights from (features, factor) parts, as the shipped estimate is fitted."""
    feats = np.concatenate([x for x, _ in parts])
    truth = np.concatenate([np.full(len(x), np.log2(f)) for x, f in parts])
    w, *_ = np.linalg.lstsq(feats, truth, rcond=None)
    return np.asarray(w)


def decide(cells: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """The rule on the six ways' cells, the (a) cells and the 48 px cells."""
    small = [str(f) for f in FACTORS if f > 1]

    def mean(rows: list[str], m: str) -> float:
        return float(np.mean([cells[r][f][m] for r in rows for f in small]))

    fall = mean(list(WAYS), "shipped") - mean(list(WAYS), "mixed")
    rise_a = mean(["a"], "mixed") - mean(["a"], "shipped")
    rise_1 = cells["a"]["1"]["mixed"] - cells["a"]["1"]["shipped"]
    rise_c = cells["c"]["1"]["mixed"] - cells["c"]["1"]["shipped"]
    return {"ways_mean_shipped": round(mean(list(WAYS), "shipped"), 2),
            "ways_mean_mixed": round(mean(list(WAYS), "mixed"), 2),
            "ways_mean_today": round(mean(list(WAYS), "today"), 2),
            "ways_mean_held_out": round(mean(list(WAYS), "held_out"), 2),
            "ways_mean_fall": round(fall, 2), "a_rise_x2_x8": round(rise_a, 2), "rise_48px": round(rise_1, 2),
            "rise_48px_jpeg": round(rise_c, 2),
            "met": bool(fall >= GAIN and rise_a <= RISE and rise_1 <= RISE and rise_c <= RISE)}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    study_args(ap)
    ap.add_argument("--json", required=True, help="the study's result file")
    args = ap.parse_args(argv)
    from fsrfer_edge.fileio import sha256_file, write_json

    from trainer.evaluate import lr_crops, onnx_logits_fn

    fn, pre = onnx_logits_fn(args.model, threads=args.threads)
    classes, size = list(pre.classes), pre.input_size
    small_factors = [f for f in FACTORS if f > 1]

    def data(images: np.ndarray) -> dict[str, dict[int, dict[str, np.ndarray]]]:
        d = {"a": {f: sdk_data(fn, pre, enlarged(images, f), f) for f in FACTORS},
             "c": {1: sdk_data(fn, pre, lr_crops(images, 1, "box", 50), 1)}}
        for way in WAYS:
            d[way] = {f: sdk_data(fn, pre, app_enlarged(images, f, way), f) for f in small_factors}
            print(f"{way}: read at the input size "
                  + ", ".join(f"x{f} {100 * float((d[way][f]['sides'] >= size).mean()):.1f}%" for f in small_factors),
                  flush=True)
        return d

    val_images, val_labels = study_faces(args, "val")
    small = {f: crops_data(fn, pre, val_images, f, None)[0] for f in FACTORS}
    cam = {f: crops_data(fn, pre, val_images, f, 50)[:2] for f in FACTORS}
    vd = data(val_images)

    def fit(keep: np.ndarray) -> tuple[Any, dict[str, np.ndarray]]:
        cal = shipped_kind(small, cam, val_labels, keep, classes)
        a = [(vd["a"][f]["features"][keep], float(f)) for f in FACTORS]

        def way_parts(ways: list[str]) -> list[tuple[np.ndarray, float]]:
            return [p for way in ways for p in [(vd["a"][1]["features"][keep], 1.0)]
                    + [(vd[way][f]["features"][keep], float(f)) for f in small_factors]]

        weights = {"shipped": fit_weights(a), "mixed": fit_weights(a + way_parts(list(WAYS)))}
        weights.update({f"without_{way}": fit_weights(a + way_parts([w for w in WAYS if w != way])) for way in WAYS})
        return cal, weights

    labels, d, folds = study_folds(args, val_labels, vd, data, fit)
    largest = float(max(FACTORS))
    cells: dict[str, dict[str, dict[str, float]]] = {}
    for p, by_factor in d.items():
        cells[p] = {}
        for f, dd in by_factor.items():
            conf: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
            est: dict[str, list[np.ndarray]] = {m: [] for m in METHODS[1:]}
            right = []
            for idx, (cal, ws) in folds:
                z, marks = dd["logits"][idx], dd["marks"][idx]
                chosen = {"today": None, "shipped": ws["shipped"], "mixed": ws["mixed"],
                          "held_out": ws.get(f"without_{p}", ws["mixed"])}
                for m, w in chosen.items():
                    fac = factors_of(dd, idx, size, w, largest, marked_too=False)
                    conf[m].append(cal.confidence(z, fac, marks))
                    if m != "today":
                        est[m].append(fac)
                right.append((z.argmax(1) == labels[idx]).astype(np.float64))
            r = np.concatenate(right)
            cell = {m: round(expected_calibration_error(np.concatenate(conf[m]), r), 2) for m in METHODS}
            cell.update({f"estimate_{m}": round(float(np.exp2(np.log2(np.concatenate(e)).mean())), 2)
                         for m, e in est.items()})
            cell.update(accuracy=round(100 * float(r.mean()), 2), marked=round(100 * float(dd["marks"].mean()), 2),
                        read_at_input=round(100 * float((dd["sides"] >= size).mean()), 2))
            cells[p][str(f)] = cell
            print(f"{p} x{f}: accuracy {cell['accuracy']:.2f}, read at input {cell['read_at_input']:.1f}%, "
                  f"estimates {cell['estimate_shipped']:.2f}/{cell['estimate_mixed']:.2f}; error today "
                  f"{cell['today']:.2f}, shipped {cell['shipped']:.2f}, mixed {cell['mixed']:.2f}, held out "
                  f"{cell['held_out']:.2f}", flush=True)
    decision = decide(cells)
    print(decision)
    write_json(args.json, {
        "command": study_command("scripts/enlarging_kernels.py", args),
        "model": {"path": _shown(args.model), "sha256": sha256_file(args.model)}, "split": args.split,
        "n": int(len(labels)), "factors": list(FACTORS), "ways": list(WAYS), "ece_bins": ECE_BINS, "gain": GAIN,
        "rise": RISE,
        "load_average": list(os.getloadavg()),
        "weights": [{k: [round(float(v), 6) for v in w] for k, w in ws.items()} for _, (_, ws) in folds],
        "note": "calibration error (points, 15 bins, majority label) of crops read at the input size and not marked "
                "as JPEG taking the map at the factor read: today x1's, shipped the estimate fitted on (a) crops, "
                "mixed the estimate fitted on (a) crops and every way's crops, held_out the same without the row's "
                "way; ways: faces area-shrunk to 48/f px and enlarged to 48 px by the app (cv2 4.14 / PIL), uint8; "
                "a: shrunk and enlarged back by the SDK's bicubic; c: 48 px crops saved as JPEG at 50; "
                "read_at_input: % of crops read at the input size (the rest were reduced by the corrections); "
                "estimate_*: geometric mean of the factors read; "
                + ("maps and weights fitted on the other half of val (2-fold cross-fitting, seeded halves)"
                   if args.split == "val" else "maps and weights fitted on all of FER+ val"),
        "cells": cells, "decision": decision})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
