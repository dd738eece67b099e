"""Flat blocks in JPEG frames: the frame reader's DC test with and without the flat-block tolerance (the rule:
docs/experiments.md, "Flat blocks in JPEG frames"), on photos the reader had not been tuned on, on clean frames, and
what the same change would do to crop marks:

    python scripts/jpeg_flat_blocks.py --json results/crowd/jpeg_flat_blocks.json

``old``: :data:`~fsrfer_edge.preprocessing.JPEG_FLAT_TOLERANCE` set to the test's tolerance for other blocks (the test
before the change); ``new``: as shipped. Held-out photos: scikit-image samples, saved by Pillow at qualities 20-80 and
decoded (as ``jpeg_frame_reads.py``). Clean frames: those and ``jpeg_frame_reads.py``'s photos as they are and
area-shrunk by 2 and 3, never saved as JPEG. Crops: FER+ faces of ``--split`` at each factor, area-shrunk and saved as
JPEG at each of :data:`CROP_QUALITIES` (protocol (c)'s crops) and not saved (clean), read as the SDK reads a crop
(``jpeg_quality_calibration.read_quality``) with the DC test as crops have it and with the flat-block tolerance.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import jpeg_frame_reads  # noqa: E402

QUALITIES = jpeg_frame_reads.QUALITIES
#: Held-out photos: colour ones (also read in gray) and gray ones.
COLOUR = ("cat", "rocket", "stereo_motorcycle", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel")
GRAY = ("coins", "clock", "moon", "brick", "grass", "gravel", "cell", "page", "text")
#: Area-shrink factors of the clean frames (1: as it is).
CLEAN_SHRINKS = (1, 2, 3)
CROP_QUALITIES = (20, 30, 40, 50, 60, 70, 80, 90)
CROP_FACTORS = (1, 2, 3, 4, 6, 8)


def held_out_photos() -> dict[str, np.ndarray]:
    """{name: uint8 image} of the held-out photos (a colour one also as Pillow's L)."""
    from PIL import Image
    from skimage import data

    out: dict[str, np.ndarray] = {}
    for name in COLOUR + GRAY:
        img = getattr(data, name)()
        img = np.asarray(img[0] if isinstance(img, tuple) else img, dtype=np.uint8)
        if name in GRAY and img.ndim == 3:
            img = np.asarray(Image.fromarray(img).convert("L"))
        out[name] = img
        if name in COLOUR:
            out[f"{name} (gray)"] = np.asarray(Image.fromarray(img).convert("L"))
    return out


@contextlib.contextmanager
def old_frame_test() -> Iterator[None]:
    """The frame reader's DC test as it was before the flat-block tolerance (flat blocks held to the usual one)."""
    from fsrfer_edge import preprocessing

    kept = preprocessing.JPEG_FLAT_TOLERANCE
    preprocessing.JPEG_FLAT_TOLERANCE = preprocessing.JPEG_TOLERANCE
    try:
        yield
    finally:
        preprocessing.JPEG_FLAT_TOLERANCE = kept


@contextlib.contextmanager
def flat_crop_test() -> Iterator[None]:
    """Crops read with the frame reader's flat-block tolerance (what the change would do to crop marks)."""
    from fsrfer_edge import preprocessing

    kept = preprocessing._dc_qualities
    preprocessing._dc_qualities = lambda blocks, unclipped, flat_blocks=True: kept(blocks, unclipped, True)
    try:
        yield
    finally:
        preprocessing._dc_qualities = kept


def both_reads(frame: np.ndarray) -> tuple[Optional[int], Optional[int]]:
    """(old, new): the quality each test reads for a decoded frame."""
    from fsrfer_edge.preprocessing import jpeg_frame_quality

    with old_frame_test():
        old = jpeg_frame_quality(frame)
    return old, jpeg_frame_quality(frame)


def decoded(img: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


def shrunk(img: np.ndarray, k: int) -> np.ndarray:
    from PIL import Image

    if k == 1:
        return img
    h, w = img.shape[:2]
    return np.asarray(Image.fromarray(img).resize((max(1, w // k), max(1, h // k)), Image.Resampling.BOX))


def held_out(photos: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per photo and quality, (old, new) reads, and the rule's counts."""
    reads = {name: {str(q): list(both_reads(decoded(img, q))) for q in QUALITIES} for name, img in photos.items()}
    cells = [(int(q), o, n) for r in reads.values() for q, (o, n) in r.items()]
    return {"reads": reads, "frames": len(cells),
            "read_old": sum(o == q for q, o, _ in cells), "read_new": sum(n == q for q, _, n in cells),
            "lost": sum(o == q and n != q for q, o, n in cells),
            "wrong_old": sum(o is not None and o != q for q, o, _ in cells),
            "wrong_new": sum(n is not None and n != q for q, _, n in cells)}


def clean(photos: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per photo and shrink, (old, new) reads of frames never saved as JPEG."""
    reads = {name: {str(k): list(both_reads(shrunk(img, k))) for k in CLEAN_SHRINKS} for name, img in photos.items()}
    cells = [v for r in reads.values() for v in r.values()]
    return {"reads": reads, "frames": len(cells), "read_old": sum(o is not None for o, _ in cells),
            "read_new": sum(n is not None for _, n in cells)}


def crop_marks(args: argparse.Namespace) -> dict[str, Any]:
    """Per quality (and 'clean') and factor: crops marked by each test, and how many marks differ."""
    from jpeg_quality_calibration import read_quality
    from score_calibration import study_faces

    from trainer.evaluate import lr_crops

    images, _ = study_faces(args, args.split)
    out: dict[str, Any] = {}
    for quality in (None,) + CROP_QUALITIES:
        row: dict[str, Any] = {}
        for factor in CROP_FACTORS:
            crops = lr_crops(images, factor, "box", quality)
            old = np.array([(read_quality(c) or 0) for c in crops])
            with flat_crop_test():
                new = np.array([(read_quality(c) or 0) for c in crops])
            row[str(factor)] = {"marked_old": round(100.0 * float((old > 0).mean()), 2),
                                "marked_new": round(100.0 * float((new > 0).mean()), 2),
                                "changed": int((old != new).sum()), "n": int(len(crops))}
        out["clean" if quality is None else str(quality)] = row
        print(f"crops at {quality or 'clean'}: changed " + ", ".join(f"x{f} {row[str(f)]['changed']}"
                                                                    for f in CROP_FACTORS), flush=True)
    return out


def main(argv: Optional[list[str]] = None) -> int:
    from score_calibration import study_args

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="where to write the result file")
    study_args(ap)
    ap.add_argument("--no-crops", action="store_true", help="leave out the crop marks (no FER+ data needed)")
    args = ap.parse_args(argv)
    from fsrfer_edge.fileio import check_output_path, write_json

    check_output_path(args.json, "--json", json_output=True)
    try:
        import skimage
    except ImportError:
        raise SystemExit("needs scikit-image for its sample photos: pip install scikit-image") from None
    photos = held_out_photos()
    result = held_out(photos)
    print(f"held-out photos: read {result['read_old']} -> {result['read_new']} of {result['frames']} at their "
          f"quality; lost {result['lost']}; wrong {result['wrong_old']} -> {result['wrong_new']}", flush=True)
    both = {**jpeg_frame_reads.photos(), **photos}
    cleaned = clean(both)
    print(f"clean frames: read {cleaned['read_old']} -> {cleaned['read_new']} of {cleaned['frames']}", flush=True)
    doc: dict[str, Any] = {
        "command": f"python scripts/jpeg_flat_blocks.py --json {args.json}" + (" --no-crops" if args.no_crops else "")
        + ("" if args.split == "val" else f" --split {args.split}")
        + (f" --limit {args.limit}" if args.limit else ""),
        "qualities": list(QUALITIES), "held_out": result, "clean": cleaned, "clean_shrinks": list(CLEAN_SHRINKS),
        "encoder": "Pillow (libjpeg standard tables, 4:2:0)", "scikit_image": skimage.__version__,
        "adopted": (result["lost"] == 0 and result["read_new"] > result["read_old"]
                    and result["wrong_new"] <= result["wrong_old"] and cleaned["read_new"] == 0),
        "note": "old: the frame reader's DC test before the flat-block tolerance; new: with it. held_out: reads "
                "[old, new] of photos saved by Pillow at each quality; clean: reads [old, new] of frames never "
                "saved as JPEG, per area-shrink; crops: % of FER+ crops marked by the crop test as it is (old) "
                "and with the flat-block tolerance (new), and how many marks differ"}
    if not args.no_crops:
        doc["split"] = args.split
        doc["crops"] = crop_marks(args)
    doc["load_average"] = list(os.getloadavg())
    write_json(args.json, doc)
    print(f"rule's parts 2 and 3 {'met' if doc['adopted'] else 'not met'}; wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
