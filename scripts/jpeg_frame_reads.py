"""Which JPEG qualities ``preprocessing.jpeg_frame_quality`` reads on real photos (docs/crowd.md, where a frame's
faces take the maps for compressed faces):

    python scripts/jpeg_frame_reads.py --json results/crowd/jpeg_frame_reads.json

scikit-image's sample photos (astronaut, coffee, chelsea in colour and gray, camera in gray), each saved by Pillow
with libjpeg's standard tables at qualities 20 to 80 in steps of 5 (4:2:0 subsampling, Pillow's default) and decoded
again; per photo and quality, the quality the reader gives (null: not read).
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QUALITIES = tuple(range(20, 81, 5))
PHOTOS = ("astronaut", "coffee", "chelsea", "camera")


def photos() -> dict[str, np.ndarray]:
    """{name: uint8 image}: each colour photo and its gray version (Pillow's L), and camera (gray already)."""
    from PIL import Image
    from skimage import data

    out: dict[str, np.ndarray] = {}
    for name in PHOTOS:
        img = np.asarray(getattr(data, name)(), dtype=np.uint8)
        out[name] = img
        if img.ndim == 3:
            out[f"{name} (gray)"] = np.asarray(Image.fromarray(img).convert("L"))
    return out


def read_at(img: np.ndarray, quality: int) -> Optional[int]:
    """The quality ``jpeg_frame_quality`` reads from ``img`` saved by Pillow at ``quality`` and decoded."""
    from PIL import Image

    from fsrfer_edge.preprocessing import jpeg_frame_quality

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    return jpeg_frame_quality(decoded)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="where to write the result file")
    args = ap.parse_args(argv)
    from fsrfer_edge.fileio import check_output_path, write_json

    check_output_path(args.json, "--json", json_output=True)
    try:
        import skimage
    except ImportError:
        raise SystemExit("needs scikit-image for its sample photos: pip install scikit-image") from None
    reads: dict[str, dict[str, Any]] = {}
    for name, img in photos().items():
        reads[name] = {"shape": list(img.shape), "read": {str(q): read_at(img, q) for q in QUALITIES}}
        missed = [q for q in QUALITIES if reads[name]["read"][str(q)] is None]
        print(f"{name}: not read at {missed or 'none'}", flush=True)
    n = len(reads) * len(QUALITIES)
    read = sum(v is not None for r in reads.values() for v in r["read"].values())
    right = sum(v == int(q) for r in reads.values() for q, v in r["read"].items())
    write_json(args.json, {
        "command": f"python scripts/jpeg_frame_reads.py --json {args.json}",
        "qualities": list(QUALITIES), "photos": reads, "encoder": "Pillow (libjpeg standard tables, 4:2:0)",
        "scikit_image": skimage.__version__, "frames": n, "read": read, "read_right": right,
        "load_average": list(os.getloadavg()),
        "note": "per photo and quality: the quality jpeg_frame_quality reads from the decoded frame (null: not "
                "read; the frame's faces then take the maps for clean faces)"})
    print(f"read {read} of {n} frames ({right} at the quality saved); wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
