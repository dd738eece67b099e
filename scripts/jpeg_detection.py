"""How often ``preprocessing.jpeg_quality`` marks a crop, per kind of crop and factor, on FER+ train faces (where
its settings were fixed; docs/experiments.md, "JPEG-compressed small crops"):

    python scripts/jpeg_detection.py --json results/ferplus/jpeg_detection_train.json

Clean crops (bicubic, area, and area crops an app enlarged to 48 px with OpenCV's bilinear, bicubic or Lanczos
resize) must not be marked; area crops JPEG-compressed through Pillow at qualities 90-30 should be, at the
quality they were written with; "area + JPEG q50, cut at an offset" compresses a 16-pixel border around the area
crop and cuts the crop out again at a random offset (the codec's grid no longer at its corner).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FACTORS = (1, 2, 3, 4, 6, 8)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fer2013.npz"))
    ap.add_argument("--faces", type=int, default=600, help="the first N FER+ train faces (default 600)")
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    from fsrfer_edge.detection.frames import require_cv2
    from fsrfer_edge.ferplus import load_labelled_faces
    from fsrfer_edge.fileio import check_output_path, write_json
    from fsrfer_edge.preprocessing import JPEG_QUALITIES, jpeg_quality
    from trainer.degrade import _jpeg
    from trainer.evaluate import lr_crops

    check_output_path(args.json, "--json", json_output=True)
    cv2 = require_cv2("enlarging crops as an app would")
    images = load_labelled_faces(args.data, "ferplus", "train").images[:args.faces]
    rng = np.random.default_rng(0)
    marked: dict[str, dict[str, float]] = {}
    right_quality: dict[str, dict[str, float]] = {}

    def record(kind: str, f: int, crops: Any, quality: Optional[int] = None) -> None:
        found = [jpeg_quality(c) for c in crops]
        marked.setdefault(kind, {})[str(f)] = round(100.0 * float(np.mean([q is not None for q in found])), 1)
        if quality is not None and quality in JPEG_QUALITIES:
            hits = [q for q in found if q is not None]
            right_quality.setdefault(kind, {})[str(f)] = (
                round(100.0 * float(np.mean([q == quality for q in hits])), 1) if hits else None)

    for f in FACTORS:
        area = lr_crops(images, f, "box")
        record("bicubic", f, lr_crops(images, f, "bicubic"))
        record("area", f, area)
        if f > 1:
            for name, interp in (("bilinear", cv2.INTER_LINEAR), ("bicubic", cv2.INTER_CUBIC),
                                 ("lanczos", cv2.INTER_LANCZOS4)):
                record(f"area, enlarged to 48 px ({name})", f,
                       [cv2.resize(c, (48, 48), interpolation=interp) for c in area])
        for q in (90, 75, 50, 30):
            record(f"area + JPEG q{q}", f, lr_crops(images, f, "box", q), q)
        s = area.shape[-1]
        framed = _jpeg(np.pad(area, ((0, 0), (16, 16), (16, 16)), mode="reflect").astype(np.float32),
                       np.full(len(area), 50)).astype(np.uint8)
        offsets = rng.integers(1, 8, size=(len(area), 2))  # never a multiple of 8 from the frame's corner
        record("area + JPEG q50, cut at an offset", f,
               [fr[16 + dy:16 + dy + s, 16 + dx:16 + dx + s] for fr, (dy, dx) in zip(framed, offsets)], 50)
        print(f, {k: v[str(f)] for k, v in marked.items() if str(f) in v}, flush=True)
    write_json(args.json, {
        "command": f"python scripts/jpeg_detection.py --json {args.json}"
                   + ("" if args.faces == 600 else f" --faces {args.faces}"),
        "faces": f"the first {len(images)} FER+ train faces", "opencv": cv2.__version__,
        "qualities_tested": list(JPEG_QUALITIES),
        "note": "marked: % of crops jpeg_quality marks, per crop kind and factor; right_quality: % of the marked "
                "JPEG crops given the quality they were written with (None: none marked)",
        "marked": marked, "right_quality": right_quality})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
