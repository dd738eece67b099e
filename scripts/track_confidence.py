"""A tracked face's confidence: does the per-size score map, applied to the score of a track's weighted mean over
frames, still give the chance the track's label is right?

    python scripts/track_confidence.py --json results/ferplus/track_confidence_val.json

The rule is in docs/experiments.md, "A tracked face's confidence". The clips are those of
``scripts/temporal_views.py`` (same frames, seed and rows); every frame goes to the SDK as a small crop; the track's
mean after k frames is ``fsrfer_edge.tracking.smooth_sequence`` of the first k at the tracker's default half-life.
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
from trainer.cli import add_sdk_faces_args  # noqa: E402  (imports no torch)

from score_reliability import ECE_BINS, expected_calibration_error  # noqa: E402
from temporal_views import FACTORS, FRAMES, JPEG_QUALITY, NOISE, ROWS, SEED, clip_logits  # noqa: E402

#: Frames after which the track's mean is read.
COUNTS = (1, 2, 4, 8)
#: The rule: at most one frame's map error plus this (points), on clean clips, at every factor and k >= 2.
SLACK = 1.0


def cell(logits: np.ndarray, labels: np.ndarray, cal: Any, factor: float, half_life: float) -> dict[str, Any]:
    """Per frame count k: the accuracy of the track's mean after k frames and the calibration error of its score and
    of the map on it; and one frame's map error (over all frames). ``logits``: (FRAMES, N, C)."""
    from fsrfer_edge.preprocessing import softmax
    from fsrfer_edge.tracking import smooth_sequence

    probs = softmax(logits.reshape(-1, logits.shape[-1])).reshape(logits.shape).astype(np.float64)
    flat = logits.reshape(-1, logits.shape[-1])
    one_right = (flat.argmax(1) == np.tile(labels, len(logits))).astype(np.float64)
    out: dict[str, Any] = {"one_frame_map": round(expected_calibration_error(cal.confidence(flat, factor), one_right),
                                                  2)}
    for k in COUNTS:
        mean = smooth_sequence(probs[:k], half_life).astype(np.float64)
        right = (mean.argmax(1) == labels).astype(np.float64)
        score = mean.max(1)
        # the map reads a score; a mean's log-probabilities are logits whose softmax is the mean itself
        conf = cal.confidence(np.log(np.maximum(mean, 1e-30)), factor)
        out[str(k)] = {"accuracy": round(100 * float(right.mean()), 2),
                       "score": round(expected_calibration_error(score, right), 2),
                       "map": round(expected_calibration_error(conf, right), 2),
                       "mean_score": round(100 * float(score.mean()), 2),
                       "mean_map": round(100 * float(conf.mean()), 2)}
    return out


def decide(cells: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The rule on the clean and camera cells."""
    clean = cells["clean"]
    within = all(clean[str(f)][str(k)]["map"] <= clean[str(f)]["one_frame_map"] + SLACK for f in FACTORS
                 for k in COUNTS[1:])
    under_score = all(clean[str(f)][str(k)]["map"] <= clean[str(f)][str(k)]["score"] for f in FACTORS
                      for k in COUNTS[1:])
    cam = cells["camera"]
    cam_map = float(np.mean([cam[str(f)][str(COUNTS[-1])]["map"] for f in FACTORS]))
    cam_score = float(np.mean([cam[str(f)][str(COUNTS[-1])]["score"] for f in FACTORS]))
    return {"clean_within_one_frame_plus_slack": within, "clean_at_most_score": under_score,
            "camera_mean_map_at_last": round(cam_map, 2), "camera_mean_score_at_last": round(cam_score, 2),
            "adopted": bool(within and under_score and cam_map < cam_score)}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sdk_faces_args(ap)
    args = ap.parse_args(argv)
    from fsrfer_edge import Recognizer
    from fsrfer_edge.ferplus import load_labelled_faces
    from fsrfer_edge.fileio import check_output_path, sha256_file, write_json
    from fsrfer_edge.tracking import DEFAULT_HALF_LIFE

    check_output_path(args.json, "--json", json_output=True)
    faces = load_labelled_faces(args.data, "ferplus", args.split)
    labels = faces.labels
    rng = np.random.default_rng(SEED)
    cells: dict[str, dict[str, dict[str, Any]]] = {r: {} for r in ROWS}
    with Recognizer(args.model, threads=args.threads) as rec:
        cal = rec.score_calibration
        if cal is None:
            raise SystemExit(f"{args.model}: no score calibration found (MODEL.scores.json); write one with "
                             "scripts/score_calibration.py --write-calibration first")
        for f, row, side, logits in clip_logits(rec, faces.images, rng):
            cells[row][str(f)] = cell(logits.astype(np.float64), labels, cal, rec.info.preprocessing.input_size / side,
                                      DEFAULT_HALF_LIFE)
            print(row, f, cells[row][str(f)], flush=True)
    verdict = decide(cells)
    write_json(args.json, {
        "command": f"python scripts/track_confidence.py --json {args.json}"
                   + ("" if args.split == "val" else f" --split {args.split}"),
        "model": {"path": os.path.relpath(args.model, REPO), "sha256": sha256_file(args.model)},
        "split": args.split, "n": int(len(labels)), "frames": FRAMES, "counts": list(COUNTS),
        "noise_grey_levels": NOISE, "jpeg_quality": JPEG_QUALITY, "seed": SEED, "half_life": DEFAULT_HALF_LIFE,
        "ece_bins": ECE_BINS, "slack": SLACK, "threads": args.threads,
        "rule": "docs/experiments.md, 'A tracked face's confidence'",
        "note": "per row, factor and frame count k: accuracy of the track's mean after k frames, calibration error "
                "(points) of its score and of the per-size map on it; one_frame_map: the map's error on each single "
                "frame, over all frames",
        "cells": cells, **verdict})
    print(verdict)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
