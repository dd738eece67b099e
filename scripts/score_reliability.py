"""What a face's ``score`` (the probability of its label) means, per face size: how often the label is right at
each score, and how it compares with the share of FER+'s ten annotators who chose that label (the shipped model
is trained on their vote distributions). A report: it changes nothing in the SDK.

    python scripts/score_reliability.py --json results/ferplus/score_reliability_test.json
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
from fsrfer_edge.confidence import ECE_BINS, calibration_error as expected_calibration_error  # noqa: E402

FACTORS = (1, 2, 3, 4, 6, 8)
PROTOCOLS = ("small", "camera")
#: Edges of the score bins of the reliability rows (the last bin includes 1).
BIN_EDGES = (0.0, 0.3, 0.5, 0.7, 0.9, 1.0)


def reliability(score: np.ndarray, right: np.ndarray, edges: tuple[float, ...] = BIN_EDGES) -> list[dict[str, Any]]:
    """Per score bin: faces, mean score and accuracy (in %); empty bins have None."""
    rows = []
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        m = (score >= lo) & ((score < hi) if k < len(edges) - 2 else (score <= hi))
        rows.append({"bin": [lo, hi], "n": int(m.sum()),
                     "mean_score": round(100 * float(score[m].mean()), 2) if m.any() else None,
                     "accuracy": round(100 * float(right[m].mean()), 2) if m.any() else None})
    return rows


def summary(probs: np.ndarray, labels: np.ndarray, votes: np.ndarray) -> dict[str, Any]:
    """One cell: accuracy, mean score, ECE, the annotators' mean share for the predicted label, reliability rows."""
    pred = probs.argmax(1)
    score = probs[np.arange(len(pred)), pred]
    right = (pred == labels).astype(np.float64)
    share = votes[np.arange(len(pred)), pred]
    return {"accuracy": round(100 * float(right.mean()), 2), "mean_score": round(100 * float(score.mean()), 2),
            "ece": round(expected_calibration_error(score, right), 2),
            "vote_share_of_label": round(100 * float(share.mean()), 2),
            "mean_abs_score_minus_vote_share": round(100 * float(np.abs(score - share).mean()), 2),
            "reliability": reliability(score, right)}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "fsrfer_edge" / "models" / "default.onnx"))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fer2013.npz"))
    ap.add_argument("--split", default="test", choices=("val", "test"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    from fsrfer_edge.fileio import sha256_file, write_json
    from fsrfer_edge.preprocessing import softmax
    from trainer.data import load_npz
    from trainer.evaluate import onnx_logits_fn, protocol_logits

    faces = load_npz(args.data, labels="ferplus").subset(args.split)
    if faces.targets is None:
        raise SystemExit(f"{args.data}: no FER+ votes beside it (ferplus_labels.npz); this report needs them")
    fn, pre = onnx_logits_fn(args.model, threads=args.threads)
    rows: dict[str, dict[str, Any]] = {p: {} for p in PROTOCOLS}
    for p in PROTOCOLS:
        for f in FACTORS:
            logits = protocol_logits(fn, faces.images, f, pre, p, 512)
            rows[p][str(f)] = summary(softmax(logits).astype(np.float64), faces.labels, faces.targets)
            r = rows[p][str(f)]
            print(f"{p:6s} x{f}: accuracy {r['accuracy']:.2f} mean score {r['mean_score']:.2f} ECE {r['ece']:.2f} "
                  f"annotators' share of the label {r['vote_share_of_label']:.2f}", flush=True)
    write_json(args.json, {
        "command": f"python scripts/score_reliability.py --json {args.json}"
                   + ("" if args.split == "test" else f" --split {args.split}"),
        "model": {"path": os.path.relpath(args.model, REPO), "sha256": sha256_file(args.model)},
        "split": args.split, "n": int(len(faces.labels)), "factors": list(FACTORS), "ece_bins": ECE_BINS,
        "load_average": list(os.getloadavg()),
        "note": "score: the probability of the predicted label (Prediction.score); accuracy against the FER+ "
                "majority label; vote_share_of_label: the share of the face's FER+ annotators (votes over the "
                "model's classes) who chose the predicted label; small crops under protocols (b) and (c)",
        "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
