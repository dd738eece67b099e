"""Faces as DeepStream's Gst-nvinfer would give them to the model, emulated on the CPU, beside the SDK's own path.

An nvinfer secondary classifier crops each object's box from the frame, scales the crop to the network's size
itself (``scaling-filter``: nearest, bilinear or cubic), either stretched or fitted inside the network's square
with the rest padded (``maintain-aspect-ratio``, ``symmetric-padding``), keeps it as 8-bit pixels, and feeds
the network ``net-scale-factor * (x - offsets)``. None of the SDK's preprocessing runs there: no squaring of a
non-square box by repeating its edges, no contrast floor, no undoing of an enlarging. This script measures what
that costs on FER+ faces, with OpenCV's resizers standing in for NVIDIA's (``cv2.INTER_NEAREST``,
``INTER_LINEAR``, ``INTER_CUBIC``: not bit-exact emulations of NvBufSurfTransform's GPU or VIC filters).

Each FER+ face is shrunk by a factor with area averaging (as in scripts/app_inputs.py), from its whole square
box or from a box that keeps 80% of its width (a detector's box narrower than tall), then:

- ``sdk``: given to ``Recognizer`` as a small crop (protocol (b)'s path; the reference);
- ``<filter>, stretched``: resized straight to 48x48 (nvinfer's default, ``maintain-aspect-ratio=0``);
- ``<filter>, padded``: the longer side resized to 48, centred, the rest filled with ``--pad-value``
  (``maintain-aspect-ratio=1``, ``symmetric-padding=1``); on a square box it equals the stretched row;
- ``cubic, stretched, video range (16-235)``: the grey levels squeezed into 16-235, as a video's limited-range luma
  plane holds them (what nvinfer gives a gray model with VIC scaling on Jetson; GPU scaling's conversion is not
  documented).

The model's normalisation is applied as the generated nvinfer config writes it (``fsrfer_edge.export.deepstream``).

    python scripts/deepstream_inputs.py --json results/ferplus/deepstream_inputs_val.json
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

FACTORS = (1, 2, 3, 4, 6, 8)
FILTERS = ("nearest", "bilinear", "cubic")


def fit(crop: np.ndarray, side: int, interpolation: int, pad: Optional[int], cv2: object) -> np.ndarray:
    """``crop`` scaled to ``side`` x ``side``: stretched (``pad`` None), or fitted and centred with ``pad`` around."""
    h, w = crop.shape
    if pad is None or h == w:
        return cv2.resize(crop, (side, side), interpolation=interpolation)  # type: ignore[attr-defined]
    s = side / max(h, w)
    nh, nw = max(1, min(side, round(h * s))), max(1, min(side, round(w * s)))
    out = np.full((side, side), pad, dtype=np.uint8)
    y, x = (side - nh) // 2, (side - nw) // 2
    out[y:y + nh, x:x + nw] = cv2.resize(crop, (nw, nh), interpolation=interpolation)  # type: ignore[attr-defined]
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sdk_faces_args(ap)
    ap.add_argument("--pad-value", type=int, default=0, help="grey level of nvinfer's padding (default 0, black)")
    args = ap.parse_args(argv)
    from fsrfer_edge import Recognizer
    from fsrfer_edge.detection.frames import require_cv2
    from fsrfer_edge.export.deepstream import normalisation
    from fsrfer_edge.ferplus import load_labelled_faces
    from fsrfer_edge.fileio import check_output_path, sha256_file, write_json

    check_output_path(args.json, "--json", json_output=True)
    if not 0 <= args.pad_value <= 255:
        raise SystemExit(f"--pad-value {args.pad_value}; expected a grey level 0-255")
    cv2 = require_cv2("resizing faces as nvinfer would")
    inter = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
    faces = load_labelled_faces(args.data, "ferplus", args.split)
    labels = faces.labels
    side = faces.images.shape[1]
    cut = round(0.1 * side)
    boxes = {"square box": faces.images, "80% of the width": faces.images[:, :, cut:side - cut]}
    rows: dict[str, dict[str, dict[str, float]]] = {}
    with Recognizer(args.model, threads=args.threads) as rec:
        if rec.info.input_dtype != "float32" or rec.info.preprocessing.channels != 1:
            raise SystemExit(f"{args.model}: expected a float32-input gray model")
        size = rec.info.preprocessing.input_size
        scale, offset = normalisation(rec.info.preprocessing)

        def accuracy(pred: np.ndarray) -> float:
            return round(100.0 * float((pred == labels).mean()), 2)

        def nvinfer(pixels: np.ndarray) -> float:  # (N, S, S) uint8 straight to the model, as nvinfer feeds it
            x = scale * (pixels[:, None].astype(np.float32) - offset)
            return accuracy(rec.predict_logits(x.astype(np.float32)).argmax(axis=1))

        def shrink(im: np.ndarray, f: int) -> np.ndarray:
            h, w = im.shape
            return im if f == 1 else cv2.resize(im, (max(1, round(w / f)), max(1, round(h / f))),
                                                interpolation=cv2.INTER_AREA)

        for box, images in boxes.items():
            table = rows.setdefault(box, {})
            for f in FACTORS:
                small = [shrink(im, f) for im in images]
                table.setdefault("sdk", {})[str(f)] = accuracy(np.array([p.index for p in rec.predict(small)]))
                for name in FILTERS:
                    table.setdefault(f"{name}, stretched", {})[str(f)] = nvinfer(
                        np.stack([fit(c, size, inter[name], None, cv2) for c in small]))
                    if box == "square box" and name == "cubic":  # nvinfer's grey from a video's Y plane, 16-235
                        table.setdefault("cubic, stretched, video range (16-235)", {})[str(f)] = nvinfer(np.stack(
                            [np.rint(16 + fit(c, size, inter[name], None, cv2) * (219 / 255)).astype(np.uint8)
                             for c in small]))
                    if box != "square box":
                        table.setdefault(f"{name}, padded", {})[str(f)] = nvinfer(
                            np.stack([fit(c, size, inter[name], args.pad_value, cv2) for c in small]))
                print(box, f, {k: v[str(f)] for k, v in table.items()}, flush=True)
    write_json(args.json, {
        "command": f"python scripts/deepstream_inputs.py --json {args.json}"
                   + ("" if args.split == "val" else f" --split {args.split}")
                   + ("" if args.pad_value == 0 else f" --pad-value {args.pad_value}"),
        "model": {"path": os.path.relpath(args.model, REPO), "sha256": sha256_file(args.model)},
        "split": args.split, "n": int(len(labels)), "opencv": cv2.__version__,
        "normalisation": {"net-scale-factor": scale, "offsets": offset}, "pad_value": args.pad_value,
        "note": "accuracy % per factor; 'sdk' gives the small crop to Recognizer, every other row resizes it with "
                "OpenCV's filter of that name and feeds the model as an nvinfer config would (no SDK preprocessing)",
        "rows": rows})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
