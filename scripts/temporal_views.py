"""A small face seen over several video frames: how much does averaging its answers lift one frame's accuracy?

    python scripts/temporal_views.py --json results/ferplus/temporal_views_val.json

The rule is in docs/experiments.md, "A face seen over several video frames". Each FER+ face becomes, at each
factor, a clip of :data:`FRAMES` frames: the 48-px face shifted by a random sub-pixel offset (at most half a
small-face pixel either way), shrunk by area averaging (``trainer.evaluate.lr_crops``, protocol (c)'s kernel),
given Gaussian noise of :data:`NOISE` grey levels and rounded; row "camera" JPEG-compresses each frame at
quality 50 as protocol (c) does. Every frame goes to the SDK as a small crop. The averages are the tracker's own
(``fsrfer_edge.tracking.smooth_sequence``, what ``FaceTracker`` gives a face seen in every frame).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from trainer.cli import add_sdk_faces_args  # noqa: E402  (imports no torch)

FACTORS = (1, 2, 3, 4, 6, 8)
FRAMES = 8
NOISE = 2.0
JPEG_QUALITY = 50
ROWS = ("clean", "camera")
HALF_LIVES = (1.0, 2.0, 4.0, math.inf)
#: The rule: at this half-life, with the better aggregate, the least gain over x2..x8 in each row (points) and
#: the most any factor may lose (points).
RULE_HALF_LIFE = 2.0
MIN_GAIN = 1.0
MAX_LOSS = 0.3
SEED = 0


def shift_bilinear(images: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """(N, H, W) float32 images moved by (dy[i], dx[i]) pixels each (bilinear, edge pixels repeated)."""
    n, h, w = images.shape
    ys = np.arange(h, dtype=np.float64)[None, :] - dy[:, None]  # (N, H) source rows
    xs = np.arange(w, dtype=np.float64)[None, :] - dx[:, None]

    def taps(pos: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip(pos, 0, size - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, size - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = taps(ys, h)
    x0, x1, fx = taps(xs, w)
    idx = np.arange(n)[:, None, None]
    img = images.astype(np.float32)
    top = img[idx, y0[:, :, None], x0[:, None, :]] * (1 - fx[:, None, :]) + img[idx, y0[:, :, None], x1[:, None, :]] * fx[:, None, :]
    bot = img[idx, y1[:, :, None], x0[:, None, :]] * (1 - fx[:, None, :]) + img[idx, y1[:, :, None], x1[:, None, :]] * fx[:, None, :]
    return top * (1 - fy[:, :, None]) + bot * fy[:, :, None]


def clip_frames(images: np.ndarray, factor: int, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """{row: FRAMES arrays of (N, s, s) uint8 crops}: each frame a new random shift and noise, per face."""
    from trainer.degrade import _jpeg
    from trainer.evaluate import lr_crops

    out: dict[str, list[np.ndarray]] = {r: [] for r in ROWS}
    for _ in range(FRAMES):
        dy, dx = (rng.uniform(-factor / 2, factor / 2, len(images)) for _ in range(2))
        small = lr_crops(np.clip(np.rint(shift_bilinear(images, dy, dx)), 0, 255).astype(np.uint8), factor, "box")
        noisy = np.clip(np.rint(small.astype(np.float32) + rng.normal(0.0, NOISE, small.shape)), 0, 255)
        out["clean"].append(noisy.astype(np.uint8))
        out["camera"].append(_jpeg(noisy.astype(np.float32), np.full(len(noisy), JPEG_QUALITY)).astype(np.uint8))
    return out


def clip_logits(rec: Any, images: np.ndarray, rng: np.random.Generator) -> Any:
    """For each factor and row in turn, ``(factor, row, side, logits)``: the (FRAMES, N, C) logits of the faces'
    clips (:func:`clip_frames`) given to the SDK as small crops, and the crops' side."""
    pre = rec.info.preprocessing
    for f in FACTORS:
        clips = clip_frames(images, f, rng)
        for row in ROWS:
            yield f, row, clips[row][0].shape[-1], np.stack(
                [rec.predict_logits(pre.normalize(pre.to_pixels(list(c)))) for c in clips[row]])


def aggregate_name(half_life: float, aggregate: str) -> str:
    return f"{aggregate}, half_life {'none' if math.isinf(half_life) else f'{half_life:g}'}"


def decide(acc: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """The rule's reading: the better aggregate at RULE_HALF_LIFE, its gains per row over x2..x8, its worst loss
    at any factor, and whether it is adopted."""
    lr = [str(f) for f in FACTORS if f > 1]
    gains: dict[str, dict[str, float]] = {}
    worst: dict[str, float] = {}
    for agg in ("probs", "log"):
        name = aggregate_name(RULE_HALF_LIFE, agg)
        gains[name] = {row: round(float(np.mean([acc[row][name][f] - acc[row]["one frame"][f] for f in lr])), 3)
                       for row in ROWS}
        worst[name] = round(min(acc[row][name][f] - acc[row]["one frame"][f] for row in ROWS for f in acc[row][name]), 3)
    pick = max(gains, key=lambda k: (float(np.mean(list(gains[k].values()))), k.startswith("probs")))
    adopted = all(v >= MIN_GAIN for v in gains[pick].values()) and worst[pick] >= -MAX_LOSS
    return {"pick": pick, "gain_over_one_frame": gains, "worst_change_any_factor": worst, "adopted": adopted}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sdk_faces_args(ap)
    args = ap.parse_args(argv)
    from fsrfer_edge import Recognizer
    from fsrfer_edge.ferplus import load_labelled_faces
    from fsrfer_edge.fileio import check_output_path, sha256_file, write_json
    from fsrfer_edge.preprocessing import softmax
    from fsrfer_edge.tracking import smooth_sequence

    check_output_path(args.json, "--json", json_output=True)
    faces = load_labelled_faces(args.data, "ferplus", args.split)
    labels = faces.labels
    rng = np.random.default_rng(SEED)
    acc: dict[str, dict[str, dict[str, float]]] = {r: {} for r in ROWS}
    unsteady: dict[str, dict[str, float]] = {r: {} for r in ROWS}
    with Recognizer(args.model, threads=args.threads) as rec:
        if rec.info.input_dtype != "float32":
            raise SystemExit(f"{args.model}: expected a float32-input model (faces are normalised here)")
        for f, row, _, logits in clip_logits(rec, faces.images, rng):
            probs = np.stack([softmax(z) for z in logits])
            answers = probs.argmax(axis=2)  # (FRAMES, N)
            acc[row].setdefault("one frame", {})[str(f)] = round(100.0 * float((answers == labels).mean()), 2)
            for agg in ("probs", "log"):
                for h in HALF_LIVES:
                    pred = smooth_sequence(probs, h, agg).argmax(axis=1)
                    acc[row].setdefault(aggregate_name(h, agg), {})[str(f)] = \
                        round(100.0 * float((pred == labels).mean()), 2)
            unsteady[row][str(f)] = round(100.0 * float((answers != answers[:1]).any(axis=0).mean()), 2)
            print(row, f, {k: v[str(f)] for k, v in acc[row].items()}, "unsteady", unsteady[row][str(f)], flush=True)
    verdict = decide(acc)
    write_json(args.json, {
        "command": f"python scripts/temporal_views.py --json {args.json}"
                   + ("" if args.split == "val" else f" --split {args.split}"),
        "model": {"path": os.path.relpath(args.model, REPO), "sha256": sha256_file(args.model)},
        "split": args.split, "n": int(len(labels)), "frames": FRAMES, "noise_grey_levels": NOISE,
        "jpeg_quality": JPEG_QUALITY, "seed": SEED, "threads": args.threads,
        "rule": "docs/experiments.md, 'A face seen over several video frames'",
        "note": "accuracy % per row, answer and factor: 'one frame' is every frame's own answer (over all frames); "
                "each other answer is fsrfer_edge.tracking.smooth_sequence over the clip's frames, read at its last; "
                "unsteady: % of faces whose frames do not all give the same answer",
        "accuracy": acc, "unsteady": unsteady,
        "rule_half_life": RULE_HALF_LIFE, "min_gain": MIN_GAIN, "max_loss": MAX_LOSS, **verdict})
    print(verdict)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
