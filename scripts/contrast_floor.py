"""Faces of low contrast or brightness (a dim or washed-out camera): does a floor before the graph win them back?

    python scripts/contrast_floor.py --json results/ferplus/contrast_floor_val.json
    python scripts/contrast_floor.py --kind brightness --json results/ferplus/brightness_floor_val.json

The rules and their candidates are in docs/experiments.md, "A contrast floor in the SDK" and "A brightness
floor after it". Each FER+ face is lit one way at 48 px and rounded to uint8 (clean; contrast scaled about its
mean; dark; haze), shrunk by the factor with area averaging (``cv2.INTER_AREA``, as a camera pipeline would)
and given to the SDK as a small crop. Only the faces a candidate changes are run again.

- ``--kind contrast``: the SDK's preprocessing without its contrast floor is "none"; every candidate floor
  ``T`` stretches a resized face whose pixel standard deviation ``s`` is below ``T`` to ``c + (x - m) * S / s``
  (``m`` its mean), with the target spread ``S`` either ``T`` or :data:`TRAIN_STD` and the centre ``c`` either
  the face's mean or :data:`TRAIN_MEAN`.
- ``--kind brightness``: the SDK's preprocessing as it is (contrast floor included) is "none"; every candidate
  floor ``B`` brings a face whose mean grey ``m`` is below ``B`` up to ``B``, by adding ``B - m`` or by
  multiplying by ``B / m``.
"""
from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from trainer.cli import add_sdk_faces_args  # noqa: E402  (imports no torch)
FACTORS = (1, 2, 3, 4, 6, 8)
FLOORS = (15.0, 20.0, 25.0, 30.0)
BRIGHTNESS_FLOORS = (40.0, 50.0, 60.0, 70.0)
#: The FER2013 ``train`` faces' median pixel standard deviation (53.6) and median mean grey (129.5) at 48 px.
TRAIN_STD = 54.0
TRAIN_MEAN = 129.0
#: How each face is lit before it is shrunk: grey -> grey, on float pixels, then rounded to uint8.
LIGHTS = {
    "clean": lambda x, m: x,
    "contrast 0.5": lambda x, m: (x - m) * 0.5 + m,
    "contrast 0.25": lambda x, m: (x - m) * 0.25 + m,
    "dark (x0.3)": lambda x, m: x * 0.3,
    "haze (x0.4 + 120)": lambda x, m: x * 0.4 + 120.0,
}


def lit(images: np.ndarray, light: str) -> np.ndarray:
    x = images.astype(np.float32)
    m = x.mean(axis=(1, 2), keepdims=True)
    return np.clip(np.rint(LIGHTS[light](x, m)), 0, 255).astype(np.uint8)


def stretch(pixels: np.ndarray, floor: float, target: Optional[float], centre: Optional[float]) -> tuple[np.ndarray,
                                                                                                         np.ndarray]:
    """The candidate applied to an (N, C, S, S) pixel batch: the stretched faces and the mask of those it changed.
    ``target`` None: raise to the floor itself; ``centre`` None: each face's own mean. (The SDK's raise_contrast
    also leaves flat faces, standard deviation under 1, alone; none of the lit and shrunk FER+ val or test faces is.)"""
    m = pixels.mean(axis=(1, 2, 3), keepdims=True)
    s = pixels.std(axis=(1, 2, 3), keepdims=True)
    low = (s < floor).reshape(-1)
    gain = (floor if target is None else target) / np.maximum(s, 1e-3)
    c = m if centre is None else centre
    out = np.clip(c + (pixels - m) * gain, 0.0, 255.0).astype(np.float32)
    return out[low], low


def brighten(pixels: np.ndarray, floor: float, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """A brightness candidate applied to an (N, C, S, S) pixel batch: the faces whose mean grey is below ``floor``,
    brought up to it (``mode`` "add": by adding the difference; "gain": by multiplying), and their mask."""
    m = pixels.mean(axis=(1, 2, 3), keepdims=True)
    low = (m < floor).reshape(-1)
    out = pixels + (floor - m) if mode == "add" else pixels * (floor / np.maximum(m, 1e-3))
    return np.clip(out, 0.0, 255.0).astype(np.float32)[low], low


Candidate = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def candidates_for(kind: str) -> tuple[dict[str, Candidate], dict[str, dict[str, Any]]]:
    """The rule's candidates of ``kind``: name -> function of a pixel batch, and name -> its parameters."""
    fns: dict[str, Candidate] = {}
    params: dict[str, dict[str, Any]] = {}
    if kind == "contrast":
        for floor, target, centre in itertools.product(FLOORS, (None, TRAIN_STD), (None, TRAIN_MEAN)):
            name = (f"T={floor:g}, S={'T' if target is None else f'{target:g}'}, "
                    f"c={'m' if centre is None else f'{centre:g}'}")
            fns[name] = functools.partial(stretch, floor=floor, target=target, centre=centre)
            params[name] = {"floor": floor, "target": target, "centre": centre}
    else:
        for floor, mode in itertools.product(BRIGHTNESS_FLOORS, ("add", "gain")):
            name = f"B={floor:g}, {mode}"
            fns[name] = functools.partial(brighten, floor=floor, mode=mode)
            params[name] = {"floor": floor, "mode": mode}
    return fns, params


def select(acc: dict[str, dict[str, dict[str, float]]], params: dict[str, dict[str, Any]], n: int,
           fixed: Optional[str] = None) -> tuple[dict[str, float], dict[str, bool], Optional[str]]:
    """The rule's score (mean over the lit conditions, all but "clean", and the factors), whether each candidate's
    clean faces lose at most 0.1 points at every factor (counted in faces: at most 0.1% of ``n``), and the pick:
    the best score among those that do, a tie to the smaller floor; ``fixed`` (the val run's pick, for the test
    split) is the pick whatever."""
    score = {k: round(float(np.mean([v for light, row in a.items() if light != "clean" for v in row.values()])), 3)
             for k, a in acc.items()}

    def faces(accuracy: float) -> int:  # the count behind a percentage rounded to 0.01 (exact below 10000 faces)
        return round(accuracy * n / 100.0)

    clean_ok = {k: all(faces(acc["none"]["clean"][f]) - faces(a["clean"][f]) <= 0.001 * n for f in a["clean"])
                for k, a in acc.items()}
    if fixed is not None:
        return score, clean_ok, fixed
    eligible = [k for k in acc if k != "none" and clean_ok[k]]
    return score, clean_ok, max(eligible, key=lambda k: (score[k], -params[k]["floor"])) if eligible else None


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sdk_faces_args(ap)
    ap.add_argument("--kind", default="contrast", choices=("contrast", "brightness"),
                    help="which rule's candidates (default contrast)")
    ap.add_argument("--pick-from", metavar="VAL_JSON",
                    help="run only 'none' and the candidate this earlier result file (the val run) picked")
    args = ap.parse_args(argv)
    from fsrfer_edge import Recognizer
    from fsrfer_edge.detection.frames import require_cv2
    from fsrfer_edge.ferplus import load_labelled_faces
    from fsrfer_edge.fileio import check_output_path, sha256_file, write_json

    check_output_path(args.json, "--json", json_output=True)
    cv2 = require_cv2("shrinking faces as a camera pipeline would")
    faces = load_labelled_faces(args.data, "ferplus", args.split)
    labels = faces.labels
    candidates, params = candidates_for(args.kind)
    if args.pick_from:
        with open(args.pick_from) as fh:
            picked = json.load(fh)["pick"]
        if picked not in candidates:
            raise SystemExit(f"{args.pick_from}: its pick {picked!r} is not one of this script's candidates")
        candidates = {picked: candidates[picked]}
    acc: dict[str, dict[str, dict[str, float]]] = {"none": {}, **{k: {} for k in candidates}}
    changed: dict[str, dict[str, dict[str, float]]] = {k: {} for k in candidates}
    with Recognizer(args.model, threads=args.threads) as rec:
        if rec.info.input_dtype != "float32":
            raise SystemExit(f"{args.model}: expected a float32-input model (faces are normalised here)")
        pre = rec.info.preprocessing

        def predict(pixels: np.ndarray) -> np.ndarray:
            return rec.predict_logits(pre.normalize(pixels)).argmax(axis=1)

        for light in LIGHTS:
            images = lit(faces.images, light)
            for f in FACTORS:
                small = [im if f == 1 else cv2.resize(im, (round(im.shape[1] / f), round(im.shape[0] / f)),
                                                      interpolation=cv2.INTER_AREA) for im in images]
                pixels = pre.to_pixels(small, raise_low_contrast=args.kind != "contrast")
                base = predict(pixels)
                acc["none"].setdefault(light, {})[str(f)] = round(100.0 * float((base == labels).mean()), 2)
                for name, candidate in candidates.items():
                    new, low = candidate(pixels)
                    pred = base.copy()
                    if low.any():
                        pred[low] = predict(new)
                    acc[name].setdefault(light, {})[str(f)] = round(100.0 * float((pred == labels).mean()), 2)
                    changed[name].setdefault(light, {})[str(f)] = round(100.0 * float(low.mean()), 2)
                print(light, f, acc["none"][light][str(f)], flush=True)
    score, clean_ok, pick = select(acc, params, len(labels), fixed=next(iter(candidates)) if args.pick_from else None)
    write_json(args.json, {
        "command": "python scripts/contrast_floor.py" + ("" if args.kind == "contrast" else f" --kind {args.kind}")
                   + f" --json {args.json}" + ("" if args.split == "val" else f" --split {args.split}")
                   + (f" --pick-from {args.pick_from}" if args.pick_from else ""),
        "kind": args.kind,
        "model": {"path": os.path.relpath(args.model, REPO), "sha256": sha256_file(args.model)},
        "split": args.split, "n": int(len(labels)), "opencv": cv2.__version__,
        "rule": "docs/experiments.md, " + ("'A contrast floor in the SDK'" if args.kind == "contrast"
                                            else "'A brightness floor after it'"),
        "note": "accuracy % per lighting and factor (small crops through the SDK's resize); changed: % of faces a "
                "candidate changed; score: mean over the lit conditions (all but clean) and factors; clean_ok: clean accuracy at every "
                "factor at most 0.1 below none's (the rule's constraint, on val; with --pick-from only reported)",
        "candidates": {k: params[k] for k in candidates},
        "accuracy": acc, "changed": changed, "score": score, "clean_ok": clean_ok, "pick": pick,
        "gain_over_none": None if pick is None else round(score[pick] - score["none"], 3)})
    print(f"pick {pick}: score {score.get(pick) if pick else None} against none {score['none']}")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
