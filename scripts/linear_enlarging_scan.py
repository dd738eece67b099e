"""Can a crop an app enlarged with OpenCV's bilinear kernel be told from a 48 px face? (The scan that led to the SDK's
``preprocessing.undo_linear_enlarging``; ``scripts/linear_enlarging_rule.py`` measures the step itself.)

    python scripts/linear_enlarging_scan.py --json results/ferplus/linear_enlarging_scan_val.json

The SDK reduces crops enlarged by repeating pixels (``preprocessing.undo_pixel_repetition``); bilinear enlarging
(``cv2.INTER_LINEAR``) cost about a point before it reduced those too (``results/ferplus/app_inputs_val.json``, row
"bilinear, as given"). Such a crop lies, up
to uint8 rounding, in the span of a bilinear enlarging from some smaller size ``n``: for each candidate ``n`` this
projects the crop onto that span (least squares, separable: ``M^+ I M^+T``, ``M`` the 48 x n bilinear matrix of
``preprocessing.resize_matrix``, OpenCV's half-pixel convention) and records the RMS residual. For the split's
48 px originals and for their area-shrunk crops enlarged back bilinearly, it reports the smallest residual over
``n`` = 6..32 and how often the smallest ``n`` whose residual is under ``--threshold`` is the true size.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SIZES = (24, 16, 12, 8, 6)


def residuals(img: np.ndarray, spans: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict[int, float]:
    """RMS residual of a 48x48 crop after projection onto each candidate size's span of bilinear enlargements."""
    out = {}
    for n, (m, mp) in spans.items():
        r = img - m @ (mp @ img @ mp.T) @ m.T
        out[n] = float(np.sqrt((r ** 2).mean()))
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fer2013.npz"))
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--faces", type=int, default=1000, help="how many of the split's faces (default 1000)")
    ap.add_argument("--threshold", type=float, default=0.5, help="RMS residual (grey levels) that marks an enlargement")
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    from fsrfer_edge.detection.frames import require_cv2
    from fsrfer_edge.ferplus import load_labelled_faces
    from fsrfer_edge.fileio import check_output_path, write_json
    from fsrfer_edge.preprocessing import resize_matrix

    check_output_path(args.json, "--json", json_output=True)
    cv2 = require_cv2("enlarging crops as an app would")
    faces = load_labelled_faces(args.data, "ferplus", args.split).images[:args.faces]
    spans = {}
    for n in range(6, 33):
        m = resize_matrix(n, 48, "bilinear", antialias=False).astype(np.float64)
        spans[n] = (m, np.linalg.pinv(m))

    def smallest(res: dict[int, float]) -> Optional[int]:
        return min((n for n, r in res.items() if r < args.threshold), default=None)

    originals = [residuals(f.astype(np.float64), spans) for f in faces]
    best = np.array([min(r.values()) for r in originals])
    command = " ".join(["python scripts/linear_enlarging_scan.py",
                        *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))])
    doc = {"command": command, "split": args.split,
           "faces": int(len(faces)), "threshold": args.threshold, "opencv": cv2.__version__,
           "originals": {"smallest_residual_percentiles_0_1_5_50": [round(float(v), 3) for v in
                                                                    np.percentile(best, [0, 1, 5, 50])],
                         "marked_as_enlarged": int(sum(smallest(r) is not None for r in originals))},
           "enlarged": {}}
    for size in SIZES:
        res = []
        for f in faces:
            small = cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
            res.append(residuals(cv2.resize(small, (48, 48), interpolation=cv2.INTER_LINEAR).astype(np.float64), spans))
        own = np.array([r[size] for r in res])
        doc["enlarged"][str(size)] = {
            "residual_at_true_size_percentiles_50_95_100": [round(float(v), 3) for v in np.percentile(own, [50, 95, 100])],
            "smallest_size_under_threshold_is_true": round(float(np.mean([smallest(r) == size for r in res])), 4)}
        print(size, doc["enlarged"][str(size)], flush=True)
    print(doc["originals"])
    write_json(args.json, doc)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
