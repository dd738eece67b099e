"""Faces cut from JPEG frames: do the JPEG maps give them the right chance, if every crop of a frame the SDK marks
takes them (the rule: docs/experiments.md, "Faces cut from JPEG frames")?

    python scripts/jpeg_frame_calibration.py --json results/ferplus/jpeg_frames_val.json
    python scripts/jpeg_frame_calibration.py --split test --json results/ferplus/jpeg_frames_test.json

Each face at each factor is area-shrunk to its side and set into a frame of its own surroundings (mirrored outwards
by :data:`BORDER` pixels, then moved down and right by a seeded offset of 0-7 pixels, so that its corner falls at every
phase of the codec's grid); the frame is saved as JPEG and the face's box cut back out of the decoded frame. Maps as
shipped (the (b) maps, and JPEG maps fitted on the marked quality-50 crops of ``score_calibration.py --jpeg``), fitted
on the other half of val (its halves, seed 0), or on all of val for test.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from jpeg_quality_calibration import crops_data  # noqa: E402
from score_calibration import (FACTORS, JPEG_MIN_FACES, _shown, shipped_kind,  # noqa: E402
                               study_args, study_command, study_faces, study_folds)
from score_reliability import ECE_BINS, expected_calibration_error  # noqa: E402

#: The frames' JPEG qualities: the rule's, and the one it is checked at beside it.
QUALITIES = (50, 75)
#: Pixels of mirrored surroundings on each side of the face.
BORDER = 16
#: The rule: the least fall of the quality-50 mean, the most a quality-50 factor and the quality-75 mean may rise.
GAIN, RISE, RISE_AT_75 = 1.0, 0.3, 0.3
METHODS = ("today", "frame")


def frame_crops(small: np.ndarray, quality: int, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each (s, s) face of ``small`` (N, s, s) set into a frame of its mirrored surroundings at its offset (N, 2: down,
    right), the frame round-tripped through JPEG at ``quality`` (Pillow): the face's box cut back out (N, s, s) uint8,
    and (N,) whether :func:`~fsrfer_edge.preprocessing.jpeg_quality` marks the frame."""
    from PIL import Image

    from fsrfer_edge.preprocessing import jpeg_quality

    n, s, _ = small.shape
    out = np.empty_like(small)
    marked = np.zeros(n, dtype=bool)
    for i in range(n):
        dy, dx = (int(v) for v in offsets[i])
        frame = np.pad(small[i], ((BORDER + dy, BORDER), (BORDER + dx, BORDER)), mode="symmetric")
        buf = io.BytesIO()
        Image.fromarray(frame, mode="L").save(buf, "JPEG", quality=int(quality))
        with Image.open(io.BytesIO(buf.getvalue())) as im:
            decoded = np.asarray(im, dtype=np.uint8)
        out[i] = decoded[BORDER + dy:BORDER + dy + s, BORDER + dx:BORDER + dx + s]
        marked[i] = jpeg_quality(decoded) is not None
    return out, marked


def frame_data(fn: Any, pre: Any, images: np.ndarray, factor: int, quality: int, offsets: np.ndarray,
               batch: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, C) logits of the faces cut from their JPEG frames at ``factor``, (N,) the SDK's marks of the crops
    themselves, and (N,) the marks of their frames."""
    from trainer.evaluate import lr_crops

    out, own, framed = [], [], []
    for i in range(0, len(images), batch):
        crops, marked = frame_crops(lr_crops(images[i:i + batch], factor, "box"), quality, offsets[i:i + batch])
        flags: list[bool] = []
        x = pre.normalize(pre.to_pixels(list(crops), jpeg=flags))
        out.append(np.asarray(fn(x, factor), dtype=np.float64))
        own += flags
        framed.append(marked)
    return np.concatenate(out), np.asarray(own, dtype=bool), np.concatenate(framed)


def decide(cells: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """The rule on the per-quality, per-factor errors."""
    def mean(q: int, m: str) -> float:
        return float(np.mean([cells[str(q)][str(f)][m] for f in FACTORS]))

    fall = mean(50, "today") - mean(50, "frame")
    rise = max(cells["50"][str(f)]["frame"] - cells["50"][str(f)]["today"] for f in FACTORS)
    rise75 = mean(75, "frame") - mean(75, "today")
    return {"means": {str(q): {m: round(mean(q, m), 2) for m in METHODS} for q in QUALITIES},
            "mean_fall_at_50": round(fall, 2), "worst_rise_at_50": round(rise, 2), "mean_rise_at_75": round(rise75, 2),
            "adopted": bool(fall >= GAIN and rise <= RISE and rise75 <= RISE_AT_75)}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    study_args(ap)
    ap.add_argument("--json", required=True, help="the study's result file")
    ap.add_argument("--small-jpeg-maps", action="store_true",
                    help="a factor whose crops are smaller than one 8x8 block takes all its (c) crops for its JPEG map")
    args = ap.parse_args(argv)
    from fsrfer_edge.fileio import sha256_file, write_json

    from trainer.evaluate import onnx_logits_fn

    fn, pre = onnx_logits_fn(args.model, threads=args.threads)
    classes = list(pre.classes)
    val_images, val_labels = study_faces(args, "val")
    small = {f: crops_data(fn, pre, val_images, f, None)[0] for f in FACTORS}
    cam = {f: crops_data(fn, pre, val_images, f, 50)[:2] for f in FACTORS}

    def fit(keep: np.ndarray) -> Any:
        return shipped_kind(small, cam, val_labels, keep, classes,
                            val_images.shape[-1] if args.small_jpeg_maps else 0)

    labels, images, folds = study_folds(args, val_labels, val_images, lambda images: images, fit)
    offsets = np.random.default_rng(args.seed + 1).integers(0, 8, (len(labels), 2))
    cells: dict[str, dict[str, dict[str, float]]] = {}
    for q in QUALITIES:
        cells[str(q)] = {}
        for f in FACTORS:
            z, own, framed = frame_data(fn, pre, images, f, q, offsets)
            conf: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
            right = []
            for idx, cal in folds:
                fs = np.full(len(idx), float(f))
                conf["today"].append(cal.confidence(z[idx], fs, own[idx]))
                conf["frame"].append(cal.confidence(z[idx], fs, framed[idx]))
                right.append((z[idx].argmax(1) == labels[idx]).astype(np.float64))
            r = np.concatenate(right)
            cell = {m: round(expected_calibration_error(np.concatenate(conf[m]), r), 2) for m in METHODS}
            cell.update({f"mean_{m}": round(100 * float(np.concatenate(conf[m]).mean()), 2) for m in METHODS})
            cell.update(accuracy=round(100 * float(r.mean()), 2), crops_marked=round(100 * float(own.mean()), 2),
                        frames_marked=round(100 * float(framed.mean()), 2))
            cells[str(q)][str(f)] = cell
            print(f"q{q} x{f}: frames marked {cell['frames_marked']:.1f}%, crops {cell['crops_marked']:.1f}%, "
                  f"accuracy {cell['accuracy']:.2f}; today {cell['today']:.2f}, frame's mark {cell['frame']:.2f}",
                  flush=True)
    decision = decide(cells)
    print(decision)
    write_json(args.json, {
        "command": study_command("scripts/jpeg_frame_calibration.py", args)
                   + (" --small-jpeg-maps" if args.small_jpeg_maps else ""),
        "small_jpeg_maps": bool(args.small_jpeg_maps),
        "model": {"path": _shown(args.model), "sha256": sha256_file(args.model)}, "split": args.split,
        "n": int(len(labels)), "factors": list(FACTORS), "qualities": list(QUALITIES), "border": BORDER,
        "ece_bins": ECE_BINS, "min_faces": JPEG_MIN_FACES, "gain": GAIN, "rise": RISE, "rise_at_75": RISE_AT_75,
        "load_average": list(os.getloadavg()),
        "note": "calibration error (points, 15 bins, majority label) of faces area-shrunk, set into a frame of their "
                f"mirrored surroundings ({BORDER} px, then a seeded offset of 0-7 px down and right), the frame saved "
                "as JPEG and the face's box cut back out; today: the JPEG maps only for crops the SDK marks itself; "
                "frame: the JPEG maps for every crop of a frame jpeg_quality marks; crops_marked / frames_marked: % "
                "marked; " + ("maps fitted on the other half of val (2-fold cross-fitting, seeded halves)"
                              if args.split == "val" else "maps fitted on all of FER+ val"),
        "cells": cells, **decision})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
