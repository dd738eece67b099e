"""Faces as applications hand them to ``Recognizer``: enlarged by the app itself, or cut from a box that is not square.

Each FER+ face is shrunk by a factor with area averaging (``cv2.INTER_AREA``, as a camera pipeline would).

- ``enlarged``: the small crop is given as it is (protocol (b)'s path, through the SDK's own resize), or
  enlarged back to 48x48 by the app with ``cv2.INTER_NEAREST`` (pixel repetition), ``INTER_LINEAR``,
  ``INTER_CUBIC`` or ``INTER_LANCZOS4``. The row "nearest, as given" feeds the nearest-enlarged pixels to the
  model unchanged, as the SDK did before it reduced such crops to their source pixels
  (``preprocessing.undo_pixel_repetition``); the row "bilinear, as given" gives the bilinear crops to
  ``Recognizer`` with ``preprocessing.undo_linear_enlarging`` turned off (``LINEAR_ENLARGING_RESIDUAL = 0``), as
  the SDK was before it reduced them too.
- ``non_square``: the face's box keeps 80% of its width (or of its height), centred, as a detector's tighter box
  would, then is shrunk by the factor (x1: not shrunk). Given to ``Recognizer``, which centres it in a square
  by repeating its edge pixels (``preprocessing.resize_square``); the rows "stretched" resize it straight to
  48x48, as the SDK did before.

    python scripts/app_inputs.py --json results/ferplus/app_inputs_val.json
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from trainer.cli import add_sdk_faces_args  # noqa: E402  (imports no torch)
FACTORS = (2, 3, 4, 6, 8)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sdk_faces_args(ap)
    args = ap.parse_args(argv)
    from fsrfer_edge import Recognizer
    from fsrfer_edge.detection.frames import require_cv2
    from fsrfer_edge.ferplus import load_labelled_faces
    from fsrfer_edge.fileio import check_output_path, sha256_file, write_json
    from fsrfer_edge import preprocessing
    from fsrfer_edge.preprocessing import resize, undo_linear_enlarging, undo_pixel_repetition

    check_output_path(args.json, "--json", json_output=True)
    cv2 = require_cv2("resizing faces as an app would")
    faces = load_labelled_faces(args.data, "ferplus", args.split)
    labels = faces.labels
    enlarged: dict[str, dict[str, float]] = {}
    non_square: dict[str, dict[str, float]] = {}
    with Recognizer(args.model, threads=args.threads) as rec:
        if rec.info.input_dtype != "float32":
            raise SystemExit(f"{args.model}: expected a float32-input model (the 'as given' rows normalise pixels here)")
        pre = rec.info.preprocessing
        size = (pre.input_size, pre.input_size)

        def accuracy(pred: np.ndarray) -> float:
            return round(100.0 * float((pred == labels).mean()), 2)

        def given(crops: list[np.ndarray]) -> float:
            return accuracy(np.array([p.index for p in rec.predict(crops)]))

        def bypassed(pixels: np.ndarray) -> float:  # (N, S, S) pixels straight to the model, no SDK preprocessing
            return accuracy(rec.predict_logits(pre.normalize(pixels[:, None].astype(np.float32))).argmax(axis=1))

        def shrink(im: np.ndarray, f: int) -> np.ndarray:
            h, w = im.shape
            return im if f == 1 else cv2.resize(im, (max(1, round(w / f)), max(1, round(h / f))),
                                                interpolation=cv2.INTER_AREA)

        for f in FACTORS:
            small = [shrink(im, f) for im in faces.images]
            nearest = [cv2.resize(s, size, interpolation=cv2.INTER_NEAREST) for s in small]
            bilinear = [cv2.resize(s, size, interpolation=cv2.INTER_LINEAR) for s in small]
            for name, crops in (("small crop (b)", small), ("nearest (pixel repetition)", nearest),
                                ("bilinear", bilinear),
                                ("bicubic", [cv2.resize(s, size, interpolation=cv2.INTER_CUBIC) for s in small]),
                                ("lanczos", [cv2.resize(s, size, interpolation=cv2.INTER_LANCZOS4) for s in small])):
                enlarged.setdefault(name, {})[str(f)] = given(crops)
            enlarged.setdefault("nearest, as given (before the SDK reduced it)", {})[str(f)] = bypassed(np.stack(nearest))
            on, preprocessing.LINEAR_ENLARGING_RESIDUAL = preprocessing.LINEAR_ENLARGING_RESIDUAL, 0.0
            try:
                enlarged.setdefault("bilinear, as given (before the SDK reduced it)", {})[str(f)] = given(bilinear)
            finally:
                preprocessing.LINEAR_ENLARGING_RESIDUAL = on
        side = faces.images.shape[1]
        cut = round(0.1 * side)
        for f in (1,) + FACTORS:
            for what, boxes in (("80% of the width", faces.images[:, :, cut:side - cut]),
                                ("80% of the height", faces.images[:, cut:side - cut, :])):
                crops = [shrink(im, f) for im in boxes]
                non_square.setdefault(f"{what}, given", {})[str(f)] = given(crops)
                stretched = np.stack([resize(undo_pixel_repetition(c[None].astype(np.float32)), size)[0] for c in crops])
                non_square.setdefault(f"{what}, stretched (before the SDK squared it)", {})[str(f)] = bypassed(
                    np.clip(stretched, 0, 255))
        print({k: v for k, v in {**enlarged, **non_square}.items()}, flush=True)
    changed = sum(undo_pixel_repetition(im[None].astype(np.float32)).shape[1:] != im.shape for im in faces.images)
    changed_bilinear = sum(undo_linear_enlarging(im.astype(np.float32)).shape != im.shape for im in faces.images)
    write_json(args.json, {
        "command": f"python scripts/app_inputs.py --json {args.json}" + ("" if args.split == "val" else f" --split {args.split}"),
        "model": {"path": os.path.relpath(args.model, REPO), "sha256": sha256_file(args.model)},
        "split": args.split, "n": int(len(labels)), "opencv": cv2.__version__,
        "note": "accuracy % per factor through Recognizer; the rows 'nearest, as given' and 'stretched' bypass its "
                "preprocessing, the row 'bilinear, as given' runs it with undo_linear_enlarging turned off",
        "enlarged": enlarged, "non_square": non_square,
        "hr_faces_reduced": int(changed),  # the split's 48 px originals that undo_pixel_repetition would reduce
        "hr_faces_reduced_bilinear": int(changed_bilinear)})  # ... and that undo_linear_enlarging would
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
