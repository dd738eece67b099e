"""A lead, not an SDK step: would the bilinear undo's span-and-dip test find crops an app enlarged with OpenCV's
Lanczos kernel (``cv2.INTER_LANCZOS4``), which still cost up to 2 points (``results/ferplus/app_inputs_val.json``,
row "lanczos")?

    python scripts/lanczos_enlarging_scan.py --json results/ferplus/lanczos_enlarging_scan_train.json

``lanczos4_matrix`` builds OpenCV's enlarging matrix (8 taps, ``sinc(x) sinc(x / 4)`` normalised, the half-pixel
convention, edge pixels repeated); ``matrix_error`` is its largest difference from ``cv2.resize`` on float input.
For ``--faces`` FER2013 train faces (not val or test), each shrunk to sizes 6..32 with ``cv2.INTER_AREA`` and
enlarged back to 48 px with Lanczos, bilinear or bicubic, and each blurred at 48 px (Gaussian, sigma 1, 1.5,
2.5, 4), it runs the SDK's test (``preprocessing.LINEAR_ENLARGING_RESIDUAL``, ``LINEAR_ENLARGING_DIP``) with the
Lanczos spans in place of the bilinear ones and reports, per kind, how many crops it marks on both axes, how many
at their true size, and the residual ratio at the first size under the threshold (the dip's margin).
"""
from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
from linear_enlarging_rule import BLURS, min_max, train_crops  # noqa: E402  (the same crops as the SDK step's)

SIZES = (6, 8, 10, 12, 16, 20, 24, 28, 32)


def lanczos4_matrix(n: int, side: int, a: int = 4) -> np.ndarray:
    """The (side, n) matrix of OpenCV's ``INTER_LANCZOS4`` enlarging from n to side (float64)."""
    centres = (np.arange(side) + 0.5) * n / side - 0.5
    w = np.zeros((side, n))
    for i, c in enumerate(centres):
        f = math.floor(c)
        for k in range(f - a + 1, f + a + 1):
            w[i, min(max(k, 0), n - 1)] += float(np.sinc(k - c) * np.sinc((k - c) / a))
    return w / w.sum(axis=1, keepdims=True)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fer2013.npz"))
    ap.add_argument("--faces", type=int, default=1000)
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    from fsrfer_edge import preprocessing as P
    from fsrfer_edge.detection.frames import require_cv2
    from fsrfer_edge.ferplus import load_labelled_faces
    from fsrfer_edge.fileio import check_output_path, write_json

    check_output_path(args.json, "--json", json_output=True)
    cv2 = require_cv2("enlarging crops as an app would")
    g = np.random.default_rng(0)
    error = 0.0
    for n in (8, 12, 17):
        x = g.random((3, n)).astype(np.float32)
        error = max(error, float(np.abs(cv2.resize(x, (48, 3), interpolation=cv2.INTER_LANCZOS4)[1]
                                        - lanczos4_matrix(n, 48) @ x[1]).max()))
    sizes = list(range(P.MIN_LINEAR_SOURCE - 1, P.MAX_LINEAR_SOURCE + 1))
    bases = [np.linalg.qr(lanczos4_matrix(n, 48))[0] for n in sizes]
    basis = np.concatenate(bases, axis=1)
    starts = np.cumsum([0] + [b.shape[1] for b in bases[:-1]])

    def residuals(img: np.ndarray) -> np.ndarray:
        x = img.astype(np.float64)
        x = x - x.mean(axis=-1, keepdims=True)
        proj = np.add.reduceat(np.square(x @ basis), starts, axis=-1).sum(axis=0)
        return np.sqrt(np.maximum((x * x).sum() - proj, 0.0) / x.size)

    def axis(img: np.ndarray) -> tuple[Optional[int], float]:
        r = residuals(img)
        ok = (r[1:] < P.LINEAR_ENLARGING_RESIDUAL) & (r[:-1] >= P.LINEAR_ENLARGING_DIP * r[1:])
        under = np.flatnonzero(r[1:] < P.LINEAR_ENLARGING_RESIDUAL) + 1
        ratio = float(r[under[0] - 1] / max(r[under[0]], 1e-9)) if len(under) else float("nan")
        found = np.flatnonzero(ok)
        return (sizes[found[0] + 1] if len(found) else None), ratio

    tally: dict[str, dict[str, Any]] = {}

    def count(kind: str, crop: np.ndarray, size: Optional[int]) -> None:
        t = tally.setdefault(kind, {"crops": 0, "marked": 0, "true_size": 0, "ratios": []})
        (w, rw), (h, rh) = axis(crop), axis(crop.T)
        t["crops"] += 1
        if not (math.isnan(rw) or math.isnan(rh)):
            t["ratios"].append(min(rw, rh))
        if w is not None and h is not None:
            t["marked"] += 1
            t["true_size"] += int(w == size and h == size)

    kinds = {"lanczos": cv2.INTER_LANCZOS4, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
    faces = load_labelled_faces(args.data, "fer2013", "train").images[:args.faces]
    for kind, crop, size in train_crops(cv2, faces, SIZES, kinds):
        count(kind, crop, size)
    for t in tally.values():
        t["ratio_at_first_size_under_min_max"] = min_max(t.pop("ratios"))
    command = " ".join(["python scripts/lanczos_enlarging_scan.py",
                        *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))])
    doc = {"command": command, "opencv": cv2.__version__, "faces": int(len(faces)), "split": "fer2013 train",
           "sizes": list(SIZES), "blur_sigmas": list(BLURS),
           "residual": P.LINEAR_ENLARGING_RESIDUAL, "dip": P.LINEAR_ENLARGING_DIP,
           "matrix_error": error, "kinds": tally}
    print(doc)
    write_json(args.json, doc)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
