"""FaceTracker.update's time per frame against the number of faces, with the matching before session 65 beside it.

    python benchmarks/tracker_scale.py --out benchmarks/results/tracker_scale.json

A crowd of N faces on a lattice (a station concourse seen from above: faces apart, a few pixels of jitter per
frame), followed over ``--frames`` frames by ``FaceTracker()`` and by the previous matching (every face x track
cell of the overlap and distance matrices sorted, kept in tests/test_tracking_sparse65.py as the equivalence
reference), each in its own process, in ``--rounds`` interleaved rounds. Reported: the median seconds of one
``update`` per N and variant, the per-round ratios previous / current, and the load average at the start and end.
Both give the same ids (the test checks that); only the time differs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fsrfer_edge.fileio import write_json  # noqa: E402

VARIANTS = ("current", "previous")


def _time_one(variant: str, n: int, frames: int) -> float:
    """The median seconds of one update over ``frames`` frames of an N-face crowd (run in a child process)."""
    import numpy as np

    from fsrfer_edge.tracking import FaceTracker

    if variant == "previous":
        sys.path.insert(0, str(REPO / "tests"))
        from test_tracking_sparse65 import _FullMatrixTracker
        tracker: FaceTracker = _FullMatrixTracker()
    else:
        tracker = FaceTracker()
    rng = np.random.default_rng(0)
    cols = int(np.ceil(np.sqrt(n)))
    xy = np.stack(np.divmod(np.arange(n), cols), axis=1)[:, ::-1] * 30.0
    boxes = np.concatenate([xy, xy + 20.0], axis=1)
    probs = rng.dirichlet(np.ones(7), n)
    tracker.update(boxes, probs)
    times = []
    for _ in range(frames):
        b = boxes + rng.normal(0, 1.0, boxes.shape)
        t0 = time.perf_counter()
        tracker.update(b, probs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, nargs="+", default=[100, 300, 1000, 3000])
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="JSON file to write (default: print only)")
    ap.add_argument("--child", nargs=3, metavar=("VARIANT", "N", "FRAMES"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_time_one(args.child[0], int(args.child[1]), int(args.child[2]))))
        return 0
    if min(args.faces) < 1 or args.frames < 1 or args.rounds < 1:
        ap.error("--faces, --frames and --rounds must be at least 1")
    load_start = os.getloadavg()
    seconds: dict[str, dict[str, list[float]]] = {str(n): {v: [] for v in VARIANTS} for n in args.faces}
    for r in range(args.rounds):
        for n in args.faces:
            order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
            for v in order:
                out = subprocess.run([sys.executable, __file__, "--child", v, str(n), str(args.frames)],
                                     check=True, capture_output=True, text=True).stdout
                seconds[str(n)][v].append(float(out.strip().splitlines()[-1]))
    report: dict[str, Any] = {
        "command": "python benchmarks/tracker_scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "frames": args.frames, "rounds": args.rounds, "cpus": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "faces": {},
    }
    for n, per in seconds.items():
        ratios = [p / c for p, c in zip(per["previous"], per["current"])]
        report["faces"][n] = {
            "current_median_s": statistics.median(per["current"]),
            "previous_median_s": statistics.median(per["previous"]),
            "previous_over_current_per_round": [round(x, 2) for x in ratios],
        }
        print(f"{n:>5} faces: current {statistics.median(per['current']) * 1e3:8.1f} ms  previous "
              f"{statistics.median(per['previous']) * 1e3:8.1f} ms  ratio {statistics.median(ratios):.1f}x")
    if args.out is not None:
        print(f"wrote {write_json(args.out, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
