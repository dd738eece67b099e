"""A confidence that means the same at every face size: one temperature, a temperature per factor, and a logistic
map of the label's score per factor, scored by calibration error on FER+ (the rules: docs/experiments.md, "A
confidence that means the same at every size" and the section after it).

    python scripts/score_calibration.py --json results/ferplus/score_calibration_val.json
    python scripts/score_calibration.py --split test --json results/ferplus/score_calibration_test.json
    python scripts/score_calibration.py --write-calibration fsrfer_edge/models/default.scores.json
    python scripts/score_calibration.py --variants engines/default.fp16.onnx engines/default.int8-u8s8.onnx \
        --json results/ferplus/score_calibration_variants_val.json

On val each half's confidences come from maps fitted on the other half (2-fold cross-fitting); on test from maps
fitted on all of val. Maps are fitted on protocol (b) small crops; (c) camera-like crops and (a) crops resized back
to 48 px are scored with them ((a)'s faces with x1's map under the per-size methods: the SDK cannot tell them from
48 px faces). ``--variants``: the packaged maps (``--calibration``) on the FP32 file and on each variant file of the
same checkpoint, val (b) crops (the rule: docs/experiments.md, "The FP16 and INT8 files").
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

from score_reliability import ECE_BINS, expected_calibration_error  # noqa: E402

FACTORS = (1, 2, 3, 4, 6, 8)
PROTOCOLS = ("small", "camera", "resized")
#: The rule's bound on the calibration error at each factor under (b), in points.
BOUND = 3.0
#: The rule's least lead of "per size" over "one for all" on the mean under (b), in points.
LEAD = 1.0
METHODS = ("score", "one_for_all", "per_size", "logistic")
#: Draws of the noise floor: each face right with probability its confidence.
FLOOR_DRAWS = 20


def _shown(path: str) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else path


def study_args(ap: argparse.ArgumentParser, limit: bool = True) -> None:
    """The options every confidence study takes: the model, the data, the split, the val halves' seed, threads (and a
    quick check's ``--limit``)."""
    ap.add_argument("--model", default=str(REPO / "fsrfer_edge" / "models" / "default.onnx"))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fer2013.npz"))
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--seed", type=int, default=0, help="the halves of val's cross-fitting")
    ap.add_argument("--threads", type=int, default=None)
    if limit:
        ap.add_argument("--limit", type=int, default=0, help="the first N faces of each split only (a quick check)")


def study_faces(args: argparse.Namespace, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a FER+ split, the first ``--limit`` only where given."""
    from fsrfer_edge.ferplus import load_labelled_faces

    faces = load_labelled_faces(args.data, "ferplus", split)
    n = getattr(args, "limit", 0) or len(faces.labels)
    return faces.images[:n], faces.labels[:n]


def study_command(script: str, args: argparse.Namespace) -> str:
    """The command that rewrites a study's result file, as its JSON records it."""
    return (f"python {script} --json {_shown(args.json)}" + ("" if args.split == "val" else " --split test")
            + ("" if args.seed == 0 else f" --seed {args.seed}")
            + (f" --limit {args.limit}" if getattr(args, "limit", 0) else ""))


def cross_fitted(n: int, seed: int, fit: Any) -> list[tuple[np.ndarray, Any]]:
    """Val's two seeded halves, each with ``fit(keep)`` of the other half (``keep``: (n,) bools)."""
    halves = np.array_split(np.random.default_rng(seed).permutation(n), 2)
    folds = []
    for k in range(2):
        keep = np.zeros(n, dtype=bool)
        keep[halves[1 - k]] = True
        folds.append((halves[k], fit(keep)))
    return folds


def study_folds(args: argparse.Namespace, val_labels: np.ndarray, val_data: Any, data_of: Any,
                fit: Any) -> tuple[np.ndarray, Any, list[tuple[np.ndarray, Any]]]:
    """A study's scored faces: on val, ``val_data`` and its halves, each with ``fit(keep)`` of the other half; on
    test, ``data_of(images)`` of the test faces, all with ``fit`` of all of val. (labels, data, [(rows, fitted)])."""
    if args.split == "val":
        return val_labels, val_data, cross_fitted(len(val_labels), args.seed, fit)
    images, labels = study_faces(args, "test")
    return labels, data_of(images), [(np.arange(len(labels)), fit(np.ones(len(val_labels), dtype=bool)))]


def shipped_kind(small: dict[int, np.ndarray], camera: dict[int, tuple[np.ndarray, np.ndarray]], labels: np.ndarray,
                 keep: np.ndarray, classes: list[str], small_jpeg_side: int = 0) -> Any:
    """Maps as the shipped file holds them, from the faces ``keep`` marks: logistic per factor from (b) logits
    (``small``), JPEG maps from the (c) crops the SDK marks (``camera``: logits, marks). With ``small_jpeg_side``
    (the faces' side), a factor whose crops are smaller than one 8x8 block (none can mark itself) takes all its (c)
    crops for its JPEG map (docs/experiments.md, "A JPEG map for 6 px faces")."""
    base = fits({f: small[f][keep] for f in FACTORS}, labels[keep], classes)["logistic"]
    used = {f: (m | (round(small_jpeg_side / f) < 8) if small_jpeg_side else m) for f, (_, m) in camera.items()}
    return base.with_jpeg({f: z[keep][used[f][keep]] for f, (z, _) in camera.items()},
                          {f: labels[keep][used[f][keep]] for f in camera}, JPEG_MIN_FACES)


def fits(logits: dict[int, np.ndarray], labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Both calibrations from (b) logits per factor of the faces ``labels`` belong to."""
    from fsrfer_edge.confidence import ScoreCalibration

    per_size = ScoreCalibration.fit({f: logits[f] for f in FACTORS}, {f: labels for f in FACTORS}, classes,
                                    kind="temperature")
    pooled = ScoreCalibration.fit({1: np.concatenate([logits[f] for f in FACTORS])},
                                  {1: np.tile(labels, len(FACTORS))}, classes, kind="temperature")
    logistic = ScoreCalibration.fit({f: logits[f] for f in FACTORS}, {f: labels for f in FACTORS}, classes,
                                    kind="logistic")
    return {"per_size": per_size, "one_for_all": pooled, "logistic": logistic}


def confidences(cals: dict[str, Any], logits: np.ndarray, protocol: str, factor: int) -> dict[str, np.ndarray]:
    """Each method's confidence of each face."""
    from fsrfer_edge.preprocessing import softmax

    seen = 1 if protocol == "resized" else factor  # (a) crops are 48 px: the SDK reads them as x1
    return {"score": softmax(logits).max(1).astype(np.float64),
            **{m: cals[m].confidence(logits, np.full(len(logits), float(seen))) for m in METHODS[1:]}}


def decide(cells: dict[str, dict[str, dict[str, float]]], candidate: str = "per_size") -> dict[str, Any]:
    """A rule, on the (b) and (c) cells: whether ``candidate`` (the first rule: per-size temperatures; the second:
    the logistic map) goes into the SDK, and, under the first rule only, one-for-all in its place."""
    def mean(p: str, m: str) -> float:
        return float(np.mean([cells[p][str(f)][m] for f in FACTORS]))

    def bounded(m: str) -> bool:
        return all(cells["small"][str(f)][m] <= BOUND for f in FACTORS)

    per = {"bound_at_each_factor_b": bounded(candidate),
           "at_most_score_at_each_factor_b": all(cells["small"][str(f)][candidate] <= cells["small"][str(f)]["score"]
                                                 for f in FACTORS),
           "lead_over_one_for_all_b": round(mean("small", "one_for_all") - mean("small", candidate), 2),
           "camera_mean_below_score": mean("camera", candidate) < mean("camera", "score")}
    one = {"bound_at_each_factor_b": bounded("one_for_all"),
           "camera_mean_below_score": mean("camera", "one_for_all") < mean("camera", "score")}
    chosen: Optional[str] = None
    if (per["bound_at_each_factor_b"] and per["at_most_score_at_each_factor_b"]
            and per["lead_over_one_for_all_b"] >= LEAD and per["camera_mean_below_score"]):
        chosen = candidate
    elif candidate == "per_size" and one["bound_at_each_factor_b"] and one["camera_mean_below_score"]:
        chosen = "one_for_all"
    out = {candidate: per, "means": {p: {m: round(mean(p, m), 2) for m in METHODS} for p in PROTOCOLS},
           "chosen": chosen}
    if candidate == "per_size":
        out["one_for_all"] = one
    return out


#: Thresholds of the selective rows: the faces an app keeps when it drops those under a threshold.
THRESHOLDS = (0.5, 0.7, 0.8, 0.9)


def kept_and_right(conf: np.ndarray, score: np.ndarray, right: np.ndarray) -> dict[str, Any]:
    """Per threshold t: the % of faces whose confidence (and, beside it, whose score) is at least t, and the %
    of those whose label is right (None where none is kept)."""
    out: dict[str, Any] = {}
    for t in THRESHOLDS:
        row = {}
        for name, v in (("confidence", conf), ("score", score)):
            keep = v >= t
            row[name] = {"kept": round(100 * float(keep.mean()), 2),
                         "accuracy": round(100 * float(right[keep].mean()), 2) if keep.any() else None}
        out[str(t)] = row
    return out


def noise_floor(conf: np.ndarray, rng: np.random.Generator) -> float:
    """The mean calibration error, over :data:`FLOOR_DRAWS` draws, of ``conf`` against outcomes drawn right with
    probability ``conf``: what a perfectly calibrated confidence of this spread shows on this many faces."""
    return float(np.mean([expected_calibration_error(conf, (rng.random(len(conf)) < conf).astype(np.float64))
                          for _ in range(FLOOR_DRAWS)]))


#: The variants' rule: at most the FP32 file's error plus this at every factor (points).
VARIANT_SLACK = 1.0


def variants(args: argparse.Namespace) -> int:
    """The packaged maps' calibration error on the FP32 file and each variant, per factor, on (b) crops of a split."""
    from fsrfer_edge.confidence import ScoreCalibration
    from fsrfer_edge.ferplus import load_labelled_faces
    from fsrfer_edge.fileio import sha256_file, write_json

    from trainer.evaluate import onnx_logits_fn, protocol_logits

    cal = ScoreCalibration.load(args.calibration)
    faces = load_labelled_faces(args.data, "ferplus", args.split)
    files: dict[str, Any] = {}
    for path in [args.model] + list(args.variants):
        fn, pre = onnx_logits_fn(path, threads=args.threads)
        cells = {}
        for f in FACTORS:
            z = protocol_logits(fn, faces.images, f, pre, "small", 512).astype(np.float64)
            right = (z.argmax(1) == faces.labels).astype(np.float64)
            conf = cal.confidence(z, float(f))
            cells[str(f)] = {"accuracy": round(100 * float(right.mean()), 2),
                             "map": round(expected_calibration_error(conf, right), 2),
                             "mean_map": round(100 * float(conf.mean()), 2)}
        files[_shown(path)] = {"sha256": sha256_file(path), "cells": cells}
        print(_shown(path), cells, flush=True)
    base = files[_shown(args.model)]["cells"]
    for name, d in list(files.items())[1:]:
        d["keeps_the_maps"] = all(d["cells"][str(f)]["map"] <= base[str(f)]["map"] + VARIANT_SLACK for f in FACTORS)
    write_json(args.json, {
        "command": "python scripts/score_calibration.py --variants " + " ".join(_shown(v) for v in args.variants)
                   + f" --json {args.json}" + ("" if args.split == "val" else f" --split {args.split}"),
        "calibration": {"path": _shown(args.calibration), "sha256": sha256_file(args.calibration)},
        "reference": _shown(args.model), "split": args.split, "n": int(len(faces.labels)), "ece_bins": ECE_BINS,
        "slack": VARIANT_SLACK, "load_average": list(os.getloadavg()),
        "note": "protocol (b) small crops; map: the calibration error (points) of the packaged maps on each file's "
                "logits against the FER+ majority label (in-sample on val, where the maps were fitted); "
                "keeps_the_maps: at most the reference (FP32) file's error + slack at every factor",
        "files": files})
    print(f"wrote {args.json}")
    return 0


#: The JPEG rule: the least fall of the (c) mean error, the most any (c) factor may rise, the most any (b) factor may
#: change (points), and the fewest marked faces a factor's own JPEG map is fitted on.
JPEG_GAIN, JPEG_RISE, JPEG_CLEAN, JPEG_MIN_FACES = 1.0, 0.3, 0.1, 100


def logits_and_marks(fn: Any, pre: Any, images: np.ndarray, factor: int, protocol: str,
                     batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) logits of the faces as ``protocol``'s small crops at ``factor`` through the SDK's preprocessing, and
    (N,) whether the SDK marks each crop as a JPEG image."""
    from trainer.evaluate import small_crops

    out, marks = [], []
    for i in range(0, len(images), batch):
        flags: list[bool] = []
        x = pre.normalize(pre.to_pixels(list(small_crops(images[i:i + batch], factor, protocol)), jpeg=flags))
        out.append(np.asarray(fn(x, factor), dtype=np.float64))
        marks += flags
    return np.concatenate(out), np.asarray(marks, dtype=bool)


def jpeg_decide(cells: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """The JPEG rule on the (b) and (c) cells (``base`` and ``jpeg`` errors per factor)."""
    cam, clean = cells["camera"], cells["small"]
    fall = float(np.mean([cam[str(f)]["base"] for f in FACTORS]) - np.mean([cam[str(f)]["jpeg"] for f in FACTORS]))
    worst_rise = max(cam[str(f)]["jpeg"] - cam[str(f)]["base"] for f in FACTORS)
    clean_change = max(abs(clean[str(f)]["jpeg"] - clean[str(f)]["base"]) for f in FACTORS)
    return {"camera_mean_fall": round(fall, 2), "camera_worst_rise": round(worst_rise, 2),
            "clean_largest_change": round(clean_change, 2),
            "adopted": bool(fall >= JPEG_GAIN and worst_rise <= JPEG_RISE and clean_change <= JPEG_CLEAN)}


def write_shipped(args: argparse.Namespace, fitted: Any, image_side: int, input_size: int, n: int,
                  more: str = "") -> None:
    """Write ``fitted`` (fitted on all of FER+ val) to --write-calibration, its factors keyed as the SDK reads a crop,
    with the model's checkpoint and how it was made."""
    import onnx

    from fsrfer_edge.fileio import sha256_file
    from fsrfer_edge.metadata import ModelInfo

    from trainer.evaluate import sdk_factor

    info = ModelInfo.from_props({p.key: p.value for p in onnx.load(args.model, load_external_data=False)
                                 .metadata_props}, source=args.model)
    factors = tuple(sdk_factor(int(f), image_side, input_size) for f in fitted.factors)
    full = dataclasses.replace(fitted, factors=factors, checkpoint_sha256=info.checkpoint_sha256, source=(
        f"python scripts/score_calibration.py --model {_shown(args.model)}{' --jpeg' if args.jpeg else ''} "
        f"--write-calibration {args.write_calibration}: FER+ val ({n} faces), protocol (b) small crops{more}, model "
        f"sha256 {sha256_file(args.model)}"))
    full = _keep_size_estimate(full, args.write_calibration)
    full.save(args.write_calibration)
    print("wrote", args.write_calibration, full.kind, full.params, full.jpeg_params)


def _keep_size_estimate(cal: Any, path: str) -> Any:
    """``cal`` with the size estimate of the file it replaces at ``path``, if that has one: the estimate reads the
    pixels, not the model's answers, and ``scripts/enlarged_confidence.py --write-calibration`` fits it on its own."""
    from fsrfer_edge.confidence import ScoreCalibration

    if not Path(path).is_file():
        return cal
    old = ScoreCalibration.load(path)
    if old.size_weights is None:
        return cal
    keep = "; size_weights: " + old.source.split("; size_weights: ", 1)[1] if "; size_weights: " in old.source else ""
    print(f"kept the size estimate of {path}")
    return dataclasses.replace(cal, size_weights=old.size_weights, source=cal.source + keep)


def jpeg_study(args: argparse.Namespace) -> int:
    """Maps of their own for crops the SDK marks as JPEG images (the rule: docs/experiments.md, "Crops that are JPEG
    images"): cross-fitted on val, or fitted on all of val and scored on test; with --write-calibration, the
    shipped file with them."""
    from fsrfer_edge.ferplus import load_labelled_faces
    from fsrfer_edge.fileio import sha256_file, write_json

    from trainer.evaluate import onnx_logits_fn

    fn, pre = onnx_logits_fn(args.model, threads=args.threads)
    classes = list(pre.classes)
    rows = ("small", "camera")

    def data(images: np.ndarray) -> dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]:
        return {p: {f: logits_and_marks(fn, pre, images, f, p) for f in FACTORS} for p in rows}

    def fit(d: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]], labels: np.ndarray, keep: np.ndarray) -> Any:
        return shipped_kind({f: d["small"][f][0] for f in FACTORS}, d["camera"], labels, keep, classes)

    val = load_labelled_faces(args.data, "ferplus", "val")
    vd = data(val.images)
    everything = np.ones(len(val.labels), dtype=bool)
    if args.write_calibration:
        write_shipped(args, fit(vd, val.labels, everything), val.images.shape[-1], pre.input_size, len(val.labels),
                      "; jpeg_params from the protocol (c) crops the SDK marks as JPEG images")
        if args.json is None:
            return 0
    if args.split == "val":
        labels, d = val.labels, vd
        folds = cross_fitted(len(labels), args.seed, lambda keep: fit(vd, labels, keep))
    else:
        test = load_labelled_faces(args.data, "ferplus", "test")
        labels, d = test.labels, data(test.images)
        folds = [(np.arange(len(labels)), fit(vd, val.labels, everything))]
    cells: dict[str, dict[str, dict[str, float]]] = {p: {} for p in rows}
    for p in rows:
        for f in FACTORS:
            z, marks = d[p][f]
            base, withj, right = [], [], []
            for idx, cal in folds:
                base.append(cal.confidence(z[idx], float(f)))
                withj.append(cal.confidence(z[idx], float(f), marks[idx]))
                right.append((z[idx].argmax(1) == labels[idx]).astype(np.float64))
            r = np.concatenate(right)
            cells[p][str(f)] = {"base": round(expected_calibration_error(np.concatenate(base), r), 2),
                                "jpeg": round(expected_calibration_error(np.concatenate(withj), r), 2),
                                "marked": round(100 * float(marks.mean()), 2),
                                "accuracy": round(100 * float(r.mean()), 2),
                                "mean_base": round(100 * float(np.concatenate(base).mean()), 2),
                                "mean_jpeg": round(100 * float(np.concatenate(withj).mean()), 2)}
            print(p, f, cells[p][str(f)], flush=True)
    decision = jpeg_decide(cells)
    print(decision)
    write_json(args.json, {
        "command": f"python scripts/score_calibration.py --jpeg --json {args.json}"
                   + ("" if args.split == "val" else " --split test")
                   + ("" if args.seed == 0 else f" --seed {args.seed}"),
        "model": {"path": _shown(args.model), "sha256": sha256_file(args.model)}, "split": args.split,
        "n": int(len(labels)), "factors": list(FACTORS), "ece_bins": ECE_BINS, "min_faces": JPEG_MIN_FACES,
        "gain": JPEG_GAIN, "rise": JPEG_RISE, "clean": JPEG_CLEAN, "load_average": list(os.getloadavg()),
        "fits": [c.to_dict() | {"source": None} for _, c in folds],
        "note": "calibration error (points, 15 bins, majority label) of the logistic maps per factor alone (base) and "
                "with maps of their own for crops the SDK marks as JPEG images (jpeg); marked: % of the crops marked; "
                + ("maps fitted on the other half of val (2-fold cross-fitting, seeded halves)" if args.split == "val"
                   else "maps fitted on all of FER+ val"),
        "cells": cells, **decision})
    print(f"wrote {args.json}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    study_args(ap, limit=False)
    ap.add_argument("--json", help="the study's result file")
    ap.add_argument("--write-calibration", metavar="PATH",
                    help="write the model's per-size calibration (logistic maps from (b) crops of all of FER+ val) "
                         "to PATH, e.g. fsrfer_edge/models/default.scores.json or MODEL.scores.json beside your "
                         "model; without --json, nothing else is run")
    ap.add_argument("--variants", nargs="+", metavar="ONNX",
                    help="files of --model's checkpoint (FP16, INT8) to score with the packaged maps beside it")
    ap.add_argument("--calibration", default=str(REPO / "fsrfer_edge" / "models" / "default.scores.json"),
                    help="with --variants: the maps (default: the packaged ones)")
    ap.add_argument("--jpeg", action="store_true",
                    help="maps of their own for crops the SDK marks as JPEG images: their study (--json), or the "
                         "calibration file with them (--write-calibration)")
    args = ap.parse_args(argv)
    if args.json is None and args.write_calibration is None:
        ap.error("give --json, --write-calibration or both")
    if args.jpeg and args.variants:
        ap.error("--jpeg and --variants are separate runs")
    if args.jpeg:
        return jpeg_study(args)
    if args.variants:
        if args.json is None or args.write_calibration:
            ap.error("--variants takes --json and no --write-calibration")
        return variants(args)
    from fsrfer_edge.ferplus import load_labelled_faces
    from fsrfer_edge.fileio import sha256_file, write_json

    from trainer.evaluate import onnx_logits_fn, protocol_logits

    fn, pre = onnx_logits_fn(args.model, threads=args.threads)
    classes = list(pre.classes)

    def logits_of(images: np.ndarray, protocols: tuple[str, ...]) -> dict[str, dict[int, np.ndarray]]:
        return {p: {f: protocol_logits(fn, images, f, pre, p, 512).astype(np.float64) for f in FACTORS}
                for p in protocols}

    val = load_labelled_faces(args.data, "ferplus", "val")
    val_logits = logits_of(val.images, PROTOCOLS if args.split == "val" and args.json else ("small",))
    if args.write_calibration:
        write_shipped(args, fits(val_logits["small"], val.labels, classes)["logistic"], val.images.shape[-1],
                      pre.input_size, len(val.labels))
        if args.json is None:
            return 0
    if args.split == "val":
        labels, logits = val.labels, val_logits
        halves = np.array_split(np.random.default_rng(args.seed).permutation(len(labels)), 2)
        folds = [(halves[k], fits({f: val_logits["small"][f][halves[1 - k]] for f in FACTORS},
                                  labels[halves[1 - k]], classes)) for k in range(2)]
    else:
        test = load_labelled_faces(args.data, "ferplus", "test")
        labels, logits = test.labels, logits_of(test.images, PROTOCOLS)
        folds = [(np.arange(len(labels)), fits(val_logits["small"], val.labels, classes))]
    cells: dict[str, dict[str, dict[str, float]]] = {}
    selective: dict[str, dict[str, Any]] = {}
    floor_rng = np.random.default_rng(args.seed)
    for p in PROTOCOLS:
        cells[p] = {}
        for f in FACTORS:
            conf: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
            right = []
            for rows, cals in folds:
                z = logits[p][f][rows]
                for m, c in confidences(cals, z, p, f).items():
                    conf[m].append(c)
                right.append((z.argmax(1) == labels[rows]).astype(np.float64))
            r = np.concatenate(right)
            cell: dict[str, float] = {m: round(expected_calibration_error(np.concatenate(conf[m]), r), 2)
                                      for m in METHODS}
            cell.update({f"floor_{m}": round(noise_floor(np.concatenate(conf[m]), floor_rng), 2) for m in METHODS})
            cell["accuracy"] = round(100 * float(r.mean()), 2)
            cell.update({f"mean_{m}": round(100 * float(np.concatenate(conf[m]).mean()), 2) for m in METHODS})
            cells[p][str(f)] = cell
            selective.setdefault(p, {})[str(f)] = kept_and_right(np.concatenate(conf["logistic"]),
                                                                 np.concatenate(conf["score"]), r)
            print(f"{p:7s} x{f}: accuracy {cell['accuracy']:.2f}; ECE score {cell['score']:.2f}, one for all "
                  f"{cell['one_for_all']:.2f}, per size {cell['per_size']:.2f}, logistic {cell['logistic']:.2f} "
                  f"(floor {cell['floor_logistic']:.2f})", flush=True)
    decisions = {"temperature": decide(cells, "per_size"), "logistic": decide(cells, "logistic")}
    print("decisions:", decisions)
    command = (f"python scripts/score_calibration.py --json {args.json}"
               + ("" if args.split == "val" else " --split test") + ("" if args.seed == 0 else f" --seed {args.seed}"))
    write_json(args.json, {
        "command": command, "model": {"path": _shown(args.model), "sha256": sha256_file(args.model)},
        "split": args.split, "n": int(len(labels)), "factors": list(FACTORS), "ece_bins": ECE_BINS,
        "bound": BOUND, "lead": LEAD, "load_average": list(os.getloadavg()),
        "fits": [{m: c[m].to_dict() | {"source": None} for m in METHODS[1:]} for _, c in folds],
        "note": ("calibration error (points, 15 equal-width bins) of each method's confidence against the FER+ "
                 "majority label; score: Prediction.score; one_for_all: one temperature; per_size: a temperature per "
                 "factor; logistic: sigmoid(a * logit(score) + b) per factor; floor_*: the mean error of the same "
                 "confidences against outcomes drawn right with probability the confidence (20 draws); maps fitted "
                 "on protocol (b) small crops "
                 + ("of the other half of val (2-fold cross-fitting, seeded halves)" if args.split == "val"
                    else "of all of FER+ val") + "; 'resized' crops are read as x1 by both calibrations; selective: "
                 "per threshold, the % of faces whose logistic confidence (or score) is at least it and the % of "
                 "those whose label is right"),
        "thresholds": list(THRESHOLDS), "selective": selective, "cells": cells, "decisions": decisions})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
