"""A tracked face's confidence from how its frames differ: the single-frame map plus the track's spread (the rule:
docs/experiments.md, "A tracked face's confidence from how its frames differ").

    python scripts/track_maps.py --json results/ferplus/track_maps_val.json
    python scripts/track_maps.py --split test --json results/ferplus/track_maps_test.json
    python scripts/track_maps.py --per-mark --clip-seed 1 --json results/ferplus/track_maps_marks_val.json
    python scripts/track_maps.py --per-mark --clip-seed 1 --split test --json results/ferplus/track_maps_marks_test.json

Clips as ``scripts/temporal_views.py`` makes them (rows clean and camera, seed 0), and "drift" clips whose
sub-pixel shift moves a little each frame; every frame goes to the SDK as a small crop. Regimes: moving (the
clips' frames), still (the first frame repeated), half-still (each frame repeats the one before with probability
1/2), drift. The candidate's (c, d) per size are fitted on moving and still tracks of the other half of val, or of
all of val for test. ``--per-mark``: (c, d) per size and per the current frame's JPEG mark (the third rule);
``--clip-seed S``: the cells are read on clips drawn afresh (the fit keeps val's seed-0 clips).

    python scripts/track_maps.py --write-calibration fsrfer_edge/models/default.scores.json \
        --from-json results/ferplus/track_maps_marks_test.json

writes the terms a --per-mark run on test fitted on all of val (its ``track_params``) into a score calibration
file, for the SDK's tracked faces (``ScoreCalibration.track_params``); nothing is run.
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

from score_calibration import cross_fitted  # noqa: E402
from score_reliability import ECE_BINS, expected_calibration_error  # noqa: E402
from temporal_views import FACTORS, FRAMES, JPEG_QUALITY, NOISE, ROWS, SEED, clip_frames, shift_bilinear  # noqa: E402

COUNTS = (1, 2, 4, 8)
FIT_COUNTS = (2, 4, 8)
REGIMES = ("moving", "still", "half_still", "drift")
FIT_REGIMES = ("moving", "still")
#: The rule: the most the mean over sizes, and any one size, may exceed one frame's map error (points).
MEAN_SLACK, SIZE_SLACK = 1.0, 2.5
#: Drift: the largest step of the shift a frame, in small-face pixels.
DRIFT_STEP = 1 / 8
#: --per-mark: a mark with fewer fitting tracks than this at a size takes the size's shared (c, d).
MIN_MARK_TRACKS = 200


def drift_frames(images: np.ndarray, factor: int, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """As :func:`temporal_views.clip_frames`, but each face's shift starts at random (at most half a small-face pixel
    either way) and moves by a fixed random step of at most :data:`DRIFT_STEP` small-face pixel a frame."""
    from trainer.degrade import _jpeg
    from trainer.evaluate import lr_crops

    start = rng.uniform(-factor / 2, factor / 2, (2, len(images)))
    step = rng.uniform(-factor * DRIFT_STEP, factor * DRIFT_STEP, (2, len(images)))
    out: dict[str, list[np.ndarray]] = {r: [] for r in ROWS}
    for t in range(FRAMES):
        dy, dx = start + t * step
        small = lr_crops(np.clip(np.rint(shift_bilinear(images, dy, dx)), 0, 255).astype(np.uint8), factor, "box")
        noisy = np.clip(np.rint(small.astype(np.float32) + rng.normal(0.0, NOISE, small.shape)), 0, 255)
        out["clean"].append(noisy.astype(np.uint8))
        out["camera"].append(_jpeg(noisy.astype(np.float32), np.full(len(noisy), JPEG_QUALITY)).astype(np.uint8))
    return out


def frame_data(rec: Any, frames: list[np.ndarray]) -> dict[str, np.ndarray]:
    """(T, N, C) logits of a clip's frames given to the SDK as small crops, (T, N) the SDK's JPEG marks, the side."""
    pre = rec.info.preprocessing
    z, marks = [], []
    for crops in frames:
        flags: list[bool] = []
        z.append(rec.predict_logits(pre.normalize(pre.to_pixels(list(crops), jpeg=flags))))
        marks.append(flags)
    return {"logits": np.stack(z).astype(np.float64), "marks": np.asarray(marks, dtype=bool),
            "side": np.int64(frames[0].shape[-1])}


def sequences(regime: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(FRAMES, n) the clip frame each track frame shows."""
    t = np.repeat(np.arange(FRAMES)[:, None], n, axis=1)
    if regime == "still":
        return np.zeros_like(t)
    if regime == "half_still":
        seq = t.copy()
        repeat = rng.random((FRAMES, n)) < 0.5
        for k in range(1, FRAMES):
            seq[k] = np.where(repeat[k], seq[k - 1], k)
        return seq
    return t


def track_features(probs: np.ndarray, half_life: float) -> dict[str, np.ndarray]:
    """For (k, N, C) probabilities of k frames, oldest first: the track's weighted mean (N, C) as the tracker gives
    it, its label, score logit z, the label probability's weighted spread sigma, n_eff and g = sigma ln n_eff."""
    from fsrfer_edge.confidence import _score_logit

    k = len(probs)
    w = (0.5 ** (1.0 / half_life)) ** np.arange(k - 1, -1, -1, dtype=np.float64)
    mean = np.tensordot(w, probs, axes=1) / w.sum()
    label = mean.argmax(1)
    s = mean[np.arange(len(label)), label]
    pl = probs[:, np.arange(len(label)), label]  # (k, N) each frame's probability of the track's label
    sigma = np.sqrt(np.maximum(np.tensordot(w, pl ** 2, axes=1) / w.sum() - s ** 2, 0.0))
    n_eff = w.sum() ** 2 / (w ** 2).sum()
    return {"mean": mean, "label": label, "z": _score_logit(s), "sigma": sigma, "n_eff": np.full(len(s), n_eff),
            "g": sigma * np.log(n_eff)}


def fit_cd(offset: np.ndarray, z: np.ndarray, g: np.ndarray, right: np.ndarray, ridge: float = 1e-3,
           iters: int = 50) -> np.ndarray:
    """(c, d) of sigmoid(offset + c g + d g z) by Newton's method on the log loss (a small ridge keeps it finite)."""
    x = np.stack([g, g * z], axis=1)
    cd = np.zeros(2)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(offset + x @ cd)))
        grad = x.T @ (p - right) + ridge * cd
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        cd -= step
        if np.abs(step).max() < 1e-9:
            break
    return cd


def write_calibration(path: str, result: str) -> int:
    """Put the (c, d) of ``result`` (a --per-mark run on test: its fit used all of val) into the score calibration
    file ``path`` as its ``track_params``, with the half-life they were fitted for."""
    import dataclasses
    import json

    from fsrfer_edge.confidence import ScoreCalibration

    doc = json.loads(Path(result).read_text())
    if not doc.get("per_mark") or doc.get("split") != "test" or len(doc.get("track_params", [])) != 1:
        raise SystemExit(f"{result}: expected the result of a --per-mark run on --split test (one fit, on all of val)")
    cal = ScoreCalibration.load(path)
    terms = doc["track_params"][0]
    if sorted(float(f) for f in terms) != list(cal.factors):
        raise SystemExit(f"{result}: terms at factors {sorted(terms)}; expected the calibration's {list(cal.factors)}")
    by_factor = {float(k): v for k, v in terms.items()}  # "2", "2.0" and "1.5" keyed by their value
    params = tuple(tuple(float(v) for pair in by_factor[f] for v in pair) for f in cal.factors)
    cal = dataclasses.replace(cal, track_params=params, track_half_life=float(doc["half_life"]), source=cal.source + (
        f"; track_params: python scripts/track_maps.py --write-calibration {path} --from-json {result} (fitted on "
        f"moving and still tracks of FER+ val's seed-{doc['seed']} clips, per size and JPEG mark)"))
    cal.save(path)
    print("wrote", path, cal.track_params)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--write-calibration" in argv:
        wp = argparse.ArgumentParser(description="write a --per-mark test run's terms into a score calibration file")
        wp.add_argument("--write-calibration", required=True, metavar="PATH")
        wp.add_argument("--from-json", required=True, metavar="RESULT")
        w = wp.parse_args(argv)
        return write_calibration(w.write_calibration, w.from_json)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sdk_faces_args(ap)
    ap.add_argument("--limit", type=int, default=0, help="the first N faces of each split only (a quick check)")
    ap.add_argument("--per-mark", action="store_true",
                    help="(c, d) per size and per the current frame's JPEG mark (default: per size)")
    ap.add_argument("--clip-seed", type=int, default=0,
                    help="read the cells on clips of this seed (default 0, the clips the fit uses)")
    # taken before this parser (no run, no --json): listed here for --help
    ap.add_argument("--write-calibration", metavar="PATH",
                    help="with --from-json RESULT: write a --per-mark test run's terms into this score calibration "
                    "file (nothing is run)")
    ap.add_argument("--from-json", metavar="RESULT", help="the result file whose terms --write-calibration writes")
    args = ap.parse_args(argv)
    if args.clip_seed < 0:
        ap.error(f"--clip-seed must be >= 0, got {args.clip_seed}")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.confidence import _sigmoid
    from fsrfer_edge.ferplus import load_labelled_faces
    from fsrfer_edge.fileio import check_output_path, sha256_file, write_json
    from fsrfer_edge.preprocessing import softmax
    from fsrfer_edge.tracking import DEFAULT_HALF_LIFE

    check_output_path(args.json, "--json")

    def faces_of(split: str) -> tuple[np.ndarray, np.ndarray]:
        faces = load_labelled_faces(args.data, "ferplus", split)
        n = args.limit or len(faces.labels)
        return faces.images[:n], faces.labels[:n]

    with Recognizer(args.model, threads=args.threads) as rec:
        cal = rec.score_calibration
        if cal is None:
            raise SystemExit(f"{args.model}: no score calibration found (MODEL.scores.json)")
        size = rec.info.preprocessing.input_size

        def clips(images: np.ndarray, seed: int) -> dict[str, dict[int, dict[str, dict[str, np.ndarray]]]]:
            """{clip set: {factor: {row: frame_data}}}, the moving clips drawn as temporal_views draws them (seed 0)."""
            rng, drift_rng = np.random.default_rng(SEED + 3 * seed), np.random.default_rng(SEED + 3 * seed + 1)
            out: dict[str, dict[int, dict[str, dict[str, np.ndarray]]]] = {"moving": {}, "drift": {}}
            for f in FACTORS:
                for name, frames in (("moving", clip_frames(images, f, rng)), ("drift", drift_frames(images, f,
                                                                                                     drift_rng))):
                    out[name][f] = {row: frame_data(rec, frames[row]) for row in ROWS}
                print(f"x{f}: clips inferred", flush=True)
            return out

        def tracks(data: dict[str, Any], n: int,
                   seed: int) -> dict[str, dict[int, dict[str, dict[int, dict[str, np.ndarray]]]]]:
            """{regime: {factor: {row: {k: features, with the current frame's (a, b) and the factor}}}}."""
            seq_rng = np.random.default_rng(SEED + 3 * seed + 2)
            seqs = {r: sequences(r, n, seq_rng) for r in REGIMES}
            out: dict[str, Any] = {}
            for regime in REGIMES:
                out[regime] = {}
                for f in FACTORS:
                    out[regime][f] = {}
                    for row in ROWS:
                        d = data["drift" if regime == "drift" else "moving"][f][row]
                        probs = softmax(d["logits"].reshape(-1, d["logits"].shape[-1])).reshape(
                            d["logits"].shape).astype(np.float64)
                        seq = seqs[regime]
                        cols = np.arange(n)
                        out[regime][f][row] = {}
                        for k in COUNTS:
                            feats = track_features(probs[seq[:k], cols], DEFAULT_HALF_LIFE)
                            factor = size / float(d["side"])
                            feats["ab"] = cal.params_at(np.full(n, factor), d["marks"][seq[k - 1], cols])
                            feats["factor"] = np.full(n, factor)
                            feats["mark"] = d["marks"][seq[k - 1], cols]
                            feats["frame_logits"] = d["logits"][seq[k - 1], cols]
                            out[regime][f][row][k] = feats
            return out

        val_images, val_labels = faces_of("val")
        val_clips = clips(val_images, 0)
        val_tracks = tracks(val_clips, len(val_labels), 0)

        def fit(keep: np.ndarray) -> dict[int, np.ndarray]:
            """{factor: (2, 2)}: (c, d) for unmarked frames, then for JPEG-marked ones (the same without --per-mark)."""
            params = {}
            for f in FACTORS:
                parts = [val_tracks[r][f][row][k] for r in FIT_REGIMES for row in ROWS for k in FIT_COUNTS]
                offset = np.concatenate([p["ab"][keep, 0] * p["z"][keep] + p["ab"][keep, 1] for p in parts])
                z = np.concatenate([p["z"][keep] for p in parts])
                g = np.concatenate([p["g"][keep] for p in parts])
                right = np.concatenate([(p["label"][keep] == val_labels[keep]).astype(np.float64) for p in parts])
                mark = np.concatenate([p["mark"][keep] for p in parts])
                params[f] = fit_marks(offset, z, g, right, mark if args.per_mark else None)
            return params

        if args.split == "val":
            labels = val_labels
            data_clips = val_clips if args.clip_seed == 0 else clips(val_images, args.clip_seed)
            data_tracks = val_tracks if args.clip_seed == 0 else tracks(data_clips, len(labels), args.clip_seed)
            folds = cross_fitted(len(labels), 0, fit)
        else:
            images, labels = faces_of("test")
            data_clips = clips(images, args.clip_seed)
            data_tracks = tracks(data_clips, len(labels), args.clip_seed)
            folds = [(np.arange(len(labels)), fit(np.ones(len(val_labels), dtype=bool)))]

        # one frame's map error: every frame of the clip set's row, each as a single crop
        one_frame: dict[str, dict[str, dict[str, float]]] = {}
        for name in ("moving", "drift"):
            one_frame[name] = {row: {} for row in ROWS}
            for f in FACTORS:
                for row in ROWS:
                    d = data_clips[name][f][row]
                    flat = d["logits"].reshape(-1, d["logits"].shape[-1])
                    conf = cal.confidence(flat, size / float(d["side"]), d["marks"].reshape(-1))
                    right = (flat.argmax(1) == np.tile(labels, FRAMES)).astype(np.float64)
                    one_frame[name][row][str(f)] = round(expected_calibration_error(conf, right), 2)

        cells: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        for regime in REGIMES:
            cells[regime] = {row: {} for row in ROWS}
            for f in FACTORS:
                for row in ROWS:
                    c: dict[str, Any] = {"one_frame_map": one_frame["drift" if regime == "drift" else "moving"][row][
                        str(f)]}
                    for k in COUNTS:
                        t = data_tracks[regime][f][row][k]
                        cand, onmean, right, own, own_right = [], [], [], [], []
                        for idx, params in folds:
                            ab, z, g = t["ab"][idx], t["z"][idx], t["g"][idx]
                            cd = params[f][t["mark"][idx].astype(np.intp)]
                            cand.append(_sigmoid(ab[:, 0] * z + ab[:, 1] + cd[:, 0] * g + cd[:, 1] * g * z))
                            onmean.append(cal.confidence(np.log(np.maximum(t["mean"][idx], 1e-30)), t["factor"][idx],
                                                         t["mark"][idx]))
                            right.append((t["label"][idx] == labels[idx]).astype(np.float64))
                            fz = t["frame_logits"][idx]  # the current frame's own answer, as frame_confidence reads it
                            own.append(cal.confidence(fz, t["factor"][idx], t["mark"][idx]))
                            own_right.append((fz.argmax(1) == labels[idx]).astype(np.float64))
                        r, cc = np.concatenate(right), np.concatenate(cand)
                        c[str(k)] = {"accuracy": round(100 * float(r.mean()), 2),
                                     "candidate": round(expected_calibration_error(cc, r), 2),
                                     "map_on_mean": round(expected_calibration_error(np.concatenate(onmean), r), 2),
                                     "frame_map": round(expected_calibration_error(np.concatenate(own),
                                                                                   np.concatenate(own_right)), 2),
                                     "mean_candidate": round(100 * float(cc.mean()), 2),
                                     "mean_g": round(float(t["g"].mean()), 4)}
                    cells[regime][row][str(f)] = c
                    print(regime, row, f"x{f}", {k: (v["accuracy"], v["candidate"], v["map_on_mean"])
                                                 for k, v in c.items() if k != "one_frame_map"},
                          "one frame", c["one_frame_map"], flush=True)
    verdict = decide(cells)
    verdict["same_faces"] = decide(cells, same_faces=True)
    print(verdict)
    options = (" --per-mark" if args.per_mark else "") + (f" --clip-seed {args.clip_seed}" if args.clip_seed else "")
    write_json(args.json, {
        "command": f"python scripts/track_maps.py{options} --json {args.json}"
                   + ("" if args.split == "val" else " --split test") + (f" --limit {args.limit}" if args.limit else ""),
        "model": {"path": os.path.relpath(args.model, REPO), "sha256": sha256_file(args.model)},
        "split": args.split, "n": int(len(labels)), "frames": FRAMES, "counts": list(COUNTS),
        "fit_counts": list(FIT_COUNTS), "regimes": list(REGIMES), "fit_regimes": list(FIT_REGIMES),
        "noise_grey_levels": NOISE, "jpeg_quality": JPEG_QUALITY, "seed": SEED, "clip_seed": args.clip_seed,
        "per_mark": args.per_mark, "min_mark_tracks": MIN_MARK_TRACKS, "drift_step": DRIFT_STEP,
        "half_life": DEFAULT_HALF_LIFE, "ece_bins": ECE_BINS, "mean_slack": MEAN_SLACK, "size_slack": SIZE_SLACK,
        "threads": args.threads, "load_average": list(os.getloadavg()),
        "track_params": [{str(f): (np.round(cd, 6).tolist() if args.per_mark else np.round(cd[0], 6).tolist())
                          for f, cd in params.items()} for _, params in folds],
        "rule": "docs/experiments.md, " + ("'Terms per JPEG mark, decided on fresh clips'" if args.per_mark else
                                           "'A tracked face's confidence from how its frames differ'"),
        "note": "per regime, row, factor and frame count k: accuracy of the track's mean after k frames and the "
                "calibration error (points, 15 bins) of the candidate (single-frame map plus c g + d g z) and of the "
                "map on the mean's score; one_frame_map: the map's error on every frame of the row as a single crop; "
                + ("(c, d) fitted on the other half of val (2-fold cross-fitting, seeded halves)"
                   if args.split == "val" else "(c, d) fitted on all of FER+ val")
                + (", per size and JPEG mark of the current frame (track_params: [[c, d] unmarked, [c, d] marked])"
                   if args.per_mark else "")
                + (f"; the fit on val's seed-0 clips, the cells on clips of seed {args.clip_seed}"
                   if args.clip_seed else ""),
        "cells": cells, **verdict})
    print(f"wrote {args.json}")
    return 0


def fit_marks(offset: np.ndarray, z: np.ndarray, g: np.ndarray, right: np.ndarray,
              mark: Optional[np.ndarray]) -> np.ndarray:
    """(2, 2): the (c, d) of unmarked and of JPEG-marked frames. Without ``mark`` both are one shared fit; a mark with
    fewer than :data:`MIN_MARK_TRACKS` tracks takes the shared fit too."""
    shared = fit_cd(offset, z, g, right)
    out = np.stack([shared, shared])
    if mark is not None:
        for m in (0, 1):
            sel = mark == bool(m)
            if sel.sum() >= MIN_MARK_TRACKS:
                out[m] = fit_cd(offset[sel], z[sel], g[sel], right[sel])
    return out


def decide(cells: dict[str, dict[str, dict[str, dict[str, Any]]]], same_faces: bool = False) -> dict[str, Any]:
    """The rule: in every regime and row at k = 2, 4, 8, the candidate's mean over sizes within the reference's mean
    plus MEAN_SLACK, and each size within its reference plus SIZE_SLACK. The reference: one frame's map error over
    every frame of the row, or (``same_faces``, the second rule) the tracks' current frames' own map error."""
    worst_mean, worst_size = -np.inf, -np.inf
    for regime, rows in cells.items():
        for row, by_factor in rows.items():
            for k in FIT_COUNTS:
                gaps = [c[str(k)]["candidate"] - (c[str(k)]["frame_map"] if same_faces else c["one_frame_map"])
                        for c in by_factor.values()]
                worst_mean = max(worst_mean, float(np.mean(gaps)))
                worst_size = max(worst_size, float(max(gaps)))
    return {"worst_mean_over_one_frame": round(worst_mean, 2), "worst_size_over_one_frame": round(worst_size, 2),
            "adopted": bool(worst_mean <= MEAN_SLACK and worst_size <= SIZE_SLACK)}


if __name__ == "__main__":
    raise SystemExit(main())
