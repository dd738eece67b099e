"""Faces an app enlarged to the model's 48x48 input itself, with OpenCV's kernels, given to ``Recognizer``.

Each FER+ face is shrunk by a factor with area averaging (``cv2.INTER_AREA``, as a camera pipeline would) and
then either given as the small crop (protocol (b)'s path, through the SDK's own resize) or enlarged back to
48x48 by the app with ``cv2.INTER_NEAREST`` (pixel repetition), ``INTER_LINEAR`` or ``INTER_CUBIC``. The
row "nearest, as given" feeds the nearest-enlarged pixels to the model unchanged, as the SDK did before it
reduced such crops back to their source pixels (``fsrfer_edge.preprocessing.undo_pixel_repetition``).

    python scripts/app_enlarged.py --json results/ferplus/app_enlarged_val.json
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
FACTORS = (2, 3, 4, 6, 8)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "fsrfer_edge" / "models" / "default.onnx"),
                    help="an exported fsrfer ONNX file (default: the shipped default)")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fer2013.npz"))
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    from fsrfer_edge import Recognizer
    from fsrfer_edge.detection.frames import require_cv2
    from fsrfer_edge.ferplus import load_labelled_faces
    from fsrfer_edge.fileio import check_output_path, sha256_file, write_json

    check_output_path(args.json, "--json")
    cv2 = require_cv2("enlarging faces as an app would")
    faces = load_labelled_faces(args.data, "ferplus", args.split)
    labels = faces.labels
    rows: dict[str, dict[str, float]] = {}
    with Recognizer(args.model, threads=args.threads) as rec:
        if rec.info.input_dtype != "float32":
            raise SystemExit(f"{args.model}: expected a float32-input model (the row 'as given' normalises pixels here)")
        pre = rec.info.preprocessing

        def accuracy(pred: np.ndarray) -> float:
            return round(100.0 * float((pred == labels).mean()), 2)

        for f in FACTORS:
            side = round(pre.input_size / f)
            small = [cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA) for im in faces.images]
            size = (pre.input_size, pre.input_size)
            crops: dict[str, Any] = {
                "small crop (b)": small,
                "nearest (pixel repetition)": [cv2.resize(s, size, interpolation=cv2.INTER_NEAREST) for s in small],
                "bilinear": [cv2.resize(s, size, interpolation=cv2.INTER_LINEAR) for s in small],
                "bicubic": [cv2.resize(s, size, interpolation=cv2.INTER_CUBIC) for s in small],
            }
            for name, batch in crops.items():
                rows.setdefault(name, {})[str(f)] = accuracy(np.array([p.index for p in rec.predict(batch)]))
            given = pre.normalize(np.stack(crops["nearest (pixel repetition)"])[:, None].astype(np.float32))
            rows.setdefault("nearest, as given (before the SDK reduced it)", {})[str(f)] = accuracy(
                rec.predict_logits(given).argmax(axis=1))
            print(f"x{f}: " + ", ".join(f"{k} {v[str(f)]:.2f}" for k, v in rows.items()), flush=True)
    from fsrfer_edge.preprocessing import undo_pixel_repetition

    changed = sum(undo_pixel_repetition(im[None].astype(np.float32)).shape[1:] != im.shape for im in faces.images)
    write_json(args.json, {
        "command": f"python scripts/app_enlarged.py --json {args.json}" + ("" if args.split == "val" else f" --split {args.split}"),
        "model": {"path": os.path.relpath(args.model, REPO), "sha256": sha256_file(args.model)},
        "split": args.split, "n": int(len(labels)), "opencv": cv2.__version__,
        "note": "accuracy % per factor; faces shrunk with cv2.INTER_AREA, then given small or enlarged to 48x48 by the "
                "app with the row's OpenCV kernel, through Recognizer (the last row bypasses its preprocessing)",
        "rows": rows,
        "hr_faces_reduced": int(changed)})  # the split's 48 px originals that undo_pixel_repetition would reduce
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
