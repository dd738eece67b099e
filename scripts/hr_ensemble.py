"""How much stronger is an ensemble of HR networks than each of them (FER+ val, x1)? The question behind
distilling an ensemble into one edge-sized HR network: the recipe's single networks stop near 88.5 on val
(results/ferplus/hr_recipes_val.json), and a teacher is only worth distilling if it is clearly above that.

    python scripts/hr_ensemble.py NAME=CHECKPOINT [NAME=CHECKPOINT ...] --json results/ferplus/hr_ensemble_val.json

Each checkpoint's FER network answers every val face (plain and, with the test-time flip, the mean of its
softmaxes on the face and its mirror image); the ensemble is the mean of the members' softmaxes. Writes each
member's accuracy, the ensemble's, and the ensemble of every prefix of the list (1, 2, ... members, in the
order given), so the file shows how the gain grows with the number of members.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ensemble_accuracies(probs: list[np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    """Accuracy (%) of each member (``probs``: (N, C) softmaxes) and of the mean of every prefix of them."""
    if not probs or any(p.shape != probs[0].shape or p.shape[0] != len(labels) for p in probs):
        raise SystemExit(f"expected one (N={len(labels)}, C) softmax per member, all the same shape")

    def acc(p: np.ndarray) -> float:
        return round(100.0 * float((p.argmax(1) == labels).mean()), 2)

    prefix = [acc(np.mean(probs[:k], axis=0)) for k in range(1, len(probs) + 1)]
    return {"members": [acc(p) for p in probs], "ensemble": prefix[-1], "ensemble_of_first_k": prefix}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("members", nargs="+", metavar="NAME=CHECKPOINT")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fer2013.npz"))
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--json", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    members = []
    for spec in args.members:
        name, sep, path = spec.partition("=")
        if not sep or not name or not Path(path).is_file():
            raise SystemExit(f"{spec!r}: expected NAME=CHECKPOINT with CHECKPOINT a file")
        members.append((name, Path(path)))
    if not Path(args.data).exists():
        raise SystemExit(f"--data {args.data} does not exist; expected fer2013.npz (../shared/data, see its README)")
    import torch

    from fsrfer_edge.fileio import write_json
    from trainer import checkpoint
    from trainer.data import load_dataset
    from trainer.evaluate import protocol_inputs

    torch.set_num_threads(args.threads)
    fs = load_dataset(args.data, labels="ferplus")
    keep = fs.split == args.split
    images, labels = fs.images[keep], fs.labels[keep].astype(np.int64)
    plain, flipped = [], []
    for name, path in members:
        model, pre, _ = checkpoint.load_model(path)
        fer = model.fer.eval()
        p, q = [], []
        with torch.no_grad():
            for s in range(0, len(images), 256):
                x = torch.from_numpy(protocol_inputs(images[s:s + 256], 1, pre))
                a, b = softmax(fer(x).numpy()), softmax(fer(x.flip(3)).numpy())
                p.append(a)
                q.append((a + b) / 2)
        plain.append(np.concatenate(p))
        flipped.append(np.concatenate(q))
        print(f"{name}: {100 * float((plain[-1].argmax(1) == labels).mean()):.2f}")
    doc = {"split": args.split, "n": int(len(labels)), "metric": "FER+ accuracy at x1 (%), majority labels",
           "command": shlex.join(["python", "scripts/hr_ensemble.py", *(sys.argv[1:] if argv is None else argv)]),
           "load_average": list(os.getloadavg()),
           "members": [{"name": n, "path": str(p)} for n, p in members],
           "plain": ensemble_accuracies(plain, labels), "flip": ensemble_accuracies(flipped, labels)}
    write_json(args.json, doc)
    print("ensemble", doc["plain"]["ensemble"], "with the flip", doc["flip"]["ensemble"],
          "by members", doc["plain"]["ensemble_of_first_k"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
