"""Walking crowds: faces that walk across the frame and pass each other, tracked with and without motion.

    python scripts/crowd_walk.py --seed 1 --out results/crowd/walk.json

Each clip is a crowd benchmark scene (``fsrfer_edge.crowd_bench``: FER2013 test faces with FER+ labels, 6-48 px
on plain and cluttered backgrounds) whose faces walk to the left or the right (within :data:`MAX_ANGLE` degrees of
the horizontal) at a pace of ``--speed`` face sides a frame (default 0.1-0.4: a face 0.2 m tall at 1.2-1.5 m/s is
0.24-0.3 sides a frame at 25 frames a second), over ``--frames`` frames, each drawn at its sub-pixel position with
new sensor noise in each frame. Larger faces (nearer the camera) are drawn over smaller ones, so faces that pass
each other hide each other for a few frames, and faces walk out of the frame. Row "jpeg" JPEG-compresses each
whole frame at quality :data:`~crowd_clips.JPEG_QUALITY`.

``CrowdAnalyzer.analyze_stream`` runs every clip with the default detector and the shipped model: one frame at a
time (``track=False``), tracked with ``FaceTracker(motion=False)`` (the default before the rule in docs/crowd.md, "Faces
that walk past each other"), and tracked with ``FaceTracker(motion=True)``. Scored at
frames 2 and later, over the faces at least half visible (in the frame and not hidden by a nearer face): accuracy (a
face not reported counts as wrong); identity switches (a face's track id changing between the frames it was
reported in, as the MOT benchmarks count them); false faces per frame (reported faces on no face; the true boxes are
clipped to the frame for that match, as the detector's are). "crossing"
repeats the scores for the faces whose box overlaps another face's box in some frame. Without ``../shared/data``
the public-domain astronaut face is used and only the tracking is scored.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
from crowd_clips import (JPEG_QUALITY, NOISE, ROWS, add_clip_arguments, add_run_arguments, camera_frame,  # noqa: E402
                         clip_inputs, detect_every_values, timing_note)
from temporal_views import shift_bilinear  # noqa: E402

FRAMES = 12
SPEED = (0.1, 0.4)
MAX_ANGLE = 15.0
VISIBLE = 0.5


def render_walk(pool: Any, seed: int, n_faces: int, size: tuple[int, int], background: str, row: str,
                frames: int = FRAMES, speed: tuple[float, float] = SPEED) -> dict[str, Any]:
    """One clip: ``frames`` RGB frames, (T, N, 4) true boxes, (T, N) visible fractions, (N,) labels, (N,) crossing
    flags (the face's box overlaps another's in some frame)."""
    from fsrfer_edge.crowd_bench import MAX_FACE, MIN_FACE, _place, make_background
    from fsrfer_edge.preprocessing import resize

    h, w = size
    rng = np.random.default_rng(seed)
    base = make_background(rng, h, w, background)
    sizes = np.rint(np.exp(rng.uniform(math.log(MIN_FACE), math.log(MAX_FACE + 0.5), n_faces))).clip(
        MIN_FACE, MAX_FACE).astype(int)
    placed = sorted(_place(rng, sizes.tolist(), h, w), key=lambda p: p[2])  # small (far) faces drawn first
    n = len(placed)
    ids = rng.choice(len(pool.images), size=n, replace=n > len(pool.images))
    side = np.asarray([s for _, _, s in placed], dtype=np.float64)
    angle = np.deg2rad(rng.uniform(-MAX_ANGLE, MAX_ANGLE, n)) + np.pi * (rng.random(n) < 0.5)
    pace = rng.uniform(speed[0], speed[1], n) * side  # px a frame
    faces = [np.clip(resize(pool.images[i], (s, s)), 0, 255).astype(np.float32) for (_, _, s), i in zip(placed, ids)]
    labels = np.asarray([int(pool.labels[i]) for i in ids], dtype=np.int64)
    out_frames, boxes, visible = [], np.zeros((frames, n, 4)), np.zeros((frames, n))
    for t in range(frames):
        img = base.copy()
        owner = np.full((h, w), -1, dtype=np.int64)
        for j, ((x, y, s), face) in enumerate(zip(placed, faces)):
            px, py = x + pace[j] * t * math.cos(angle[j]), y + pace[j] * t * math.sin(angle[j])
            boxes[t, j] = (px, py, px + s, py + s)
            ix, iy = int(math.floor(px)), int(math.floor(py))
            x0, y0, x1, y1 = max(ix, 0), max(iy, 0), min(ix + s, w), min(iy + s, h)
            if x1 <= x0 or y1 <= y0:
                continue  # walked out of the frame
            moved = shift_bilinear(face[None], np.array([py - iy]), np.array([px - ix]))[0]
            img[y0:y1, x0:x1] = moved[y0 - iy:y1 - iy, x0 - ix:x1 - ix, None]
            owner[y0:y1, x0:x1] = j
        for j, (_, _, s) in enumerate(placed):
            visible[t, j] = float((owner == j).sum()) / (s * s)
        out_frames.append(camera_frame(img, rng, row))
    from fsrfer_edge.detection.base import box_iou

    crossing = np.zeros(n, dtype=bool)
    for t in range(frames):
        iou = box_iou(boxes[t], boxes[t])
        np.fill_diagonal(iou, 0)
        crossing |= (iou > 0).any(axis=1)
    return {"frames": out_frames, "boxes": boxes, "visible": visible, "labels": labels, "crossing": crossing}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_clip_arguments(ap)
    ap.add_argument("--frames", type=int, default=FRAMES, help=f"frames per clip (default {FRAMES})")
    ap.add_argument("--speed", default=f"{SPEED[0]},{SPEED[1]}", help="slowest and fastest pace in face sides a "
                    f"frame (default {SPEED[0]},{SPEED[1]})")
    ap.add_argument("--coast", default="", help="comma-separated coast values, one more run with motion each "
                    "(FaceTracker(coast=K, confirm=2, motion=True); default: none)")
    add_run_arguments(ap)
    ap.add_argument("--out", required=True, help="result JSON")
    args = ap.parse_args(argv)
    try:
        speed = tuple(float(v) for v in args.speed.split(","))
    except ValueError:
        speed = ()
    if len(speed) != 2 or not 0 <= speed[0] <= speed[1] < 10:
        ap.error(f"--speed {args.speed!r}: expected two paces in face sides a frame, slowest first (e.g. 0.1,0.4)")
    try:
        args.coast = [int(v) for v in args.coast.split(",") if v.strip()]
    except ValueError:
        args.coast = [-1]
    if any(not 0 <= k <= 5 for k in args.coast):
        ap.error("--coast: expected comma-separated integers from 0 to 5 (frames; a track ends after 5 unseen)")
    args.detect_every = detect_every_values(ap, args.detect_every)
    if args.weak is not None and not 0 <= args.weak < 1:
        ap.error(f"--weak {args.weak}: expected a score in [0, 1), under the detector's threshold")
    if args.frames < 2 or args.clips < 1 or args.faces < 1:
        ap.error("--frames must be >= 2, --clips and --faces >= 1")
    from fsrfer_edge.crowd import CrowdAnalyzer
    from fsrfer_edge.crowd_bench import BACKGROUNDS, match
    from fsrfer_edge.detection import Detection
    from fsrfer_edge.fileio import check_output_path, write_json
    from fsrfer_edge.tracking import FaceTracker

    check_output_path(args.out, "--out", json_output=True)
    h, w, pool, seeds = clip_inputs(args)
    labelled = bool(pool.labelled)
    makers: dict[str, Any] = {"tracked": lambda: FaceTracker(motion=False),
                              "tracked, motion": lambda: FaceTracker(motion=True)}
    for k in args.coast:  # more coasting with motion, confirmed after 2 as by default
        makers[f"tracked, motion, coast {k}"] = (lambda c: lambda: FaceTracker(coast=c, confirm=2, motion=True))(k)
    weak_run = None if args.weak is None else f"tracked, motion, weak {args.weak:g}"
    if weak_run:  # weak detections continue followed faces (CrowdAnalyzer(weak_score=))
        makers[weak_run] = lambda: FaceTracker(motion=True)
    every: dict[str, int] = {}  # run -> detect_every, where not 1
    for k in args.detect_every:
        makers[f"tracked, motion, detect every {k}"] = lambda: FaceTracker(motion=True)
        every[f"tracked, motion, detect every {k}"] = k
    runs_of: dict[str, Any] = {"one frame": lambda: False, **makers}
    runs = {"one frame": "track=False", **{n: repr(make()).replace(", tracks=0", "") for n, make in makers.items()}}
    if weak_run:
        runs[weak_run] += f" with CrowdAnalyzer(weak_score={args.weak:g})"
    for name, k in every.items():
        runs[name] += f" with analyze_stream(detect_every={k})"
    load = round(os.getloadavg()[0], 2)
    rows: dict[str, Any] = {}
    with CrowdAnalyzer() as analyzer, (CrowdAnalyzer(analyzer.recognizer, weak_score=args.weak) if weak_run
                                       else contextlib.nullcontext()) as weak_analyzer:
        for row in ROWS:
            tally = {sub: {n: {"scored": 0, "correct": 0, "switches": 0, "followed": 0, "one_track": 0}
                           for n in runs_of} for sub in ("all", "crossing")}
            n_false = {n: 0 for n in runs_of}
            ms = {n: 0.0 for n in runs_of}  # detection and recognition, summed over the run's frames
            n_frames = n_faces = n_crossing = 0
            for k, seed in enumerate(seeds):
                clip = render_walk(pool, int(seed), args.faces, (h, w), BACKGROUNDS[k % 2], row, args.frames, speed)
                n_faces += len(clip["labels"])
                n_crossing += int(clip["crossing"].sum())
                n_frames += args.frames
                for name, make in runs_of.items():
                    track_ids: list[list[int]] = [[] for _ in clip["labels"]]
                    by = weak_analyzer if name == weak_run else analyzer
                    for t, r in enumerate(by.analyze_stream(clip["frames"], track=make(),
                                                            detect_every=every.get(name, 1))):
                        ms[name] += sum(r.timings_ms.values())
                        # the true boxes as far as they are in the frame, as the detector's boxes are clipped
                        truth = np.clip(clip["boxes"][t], 0, [w, h, w, h])
                        hit = match(truth, [Detection(f.box, f.score) for f in r.faces])
                        n_false[name] += len(r.faces) - int((hit >= 0).sum())
                        for j, d in enumerate(hit):
                            if d >= 0 and r.faces[d].track_id is not None:
                                track_ids[j].append(int(r.faces[d].track_id))  # type: ignore[arg-type]
                            if t == 0 or clip["visible"][t, j] < VISIBLE:
                                continue
                            right = int(d >= 0 and r.faces[d].index == clip["labels"][j])
                            for sub in ("all", "crossing"):
                                if sub == "all" or clip["crossing"][j]:
                                    tally[sub][name]["scored"] += 1
                                    tally[sub][name]["correct"] += right
                    for j, seq in enumerate(track_ids):
                        for sub in ("all", "crossing"):
                            if (sub == "all" or clip["crossing"][j]) and len(seq) >= 2:
                                c = tally[sub][name]
                                c["followed"] += 1
                                c["switches"] += sum(a != b for a, b in zip(seq, seq[1:]))
                                c["one_track"] += int(len(set(seq)) == 1)
                print(row, k, f"{len(clip['labels'])} faces, {int(clip['crossing'].sum())} crossing", flush=True)
            entry: dict[str, Any] = {"faces": n_faces, "crossing_faces": n_crossing,
                                     "false_faces_per_frame": {n: round(v / n_frames, 3) for n, v in n_false.items()}}
            if every:  # the runs take turns clip by clip, so that a change of the machine's load falls on all
                entry["ms_per_frame"] = {n: round(v / n_frames, 1) for n, v in ms.items()}
            for sub, by_run in tally.items():
                entry[sub] = {}
                for n, c in by_run.items():
                    e: dict[str, Any] = {"faces_followed": c["followed"], "one_track": c["one_track"]}
                    if n != "one frame":
                        e["identity_switches"] = c["switches"]
                    if labelled:
                        e["scored_face_frames"] = c["scored"]
                        e["accuracy"] = round(100.0 * c["correct"] / c["scored"], 2) if c["scored"] else None
                    entry[sub][n] = e
            rows[row] = entry
    write_json(args.out, {
        "command": "python scripts/crowd_walk.py" + (f" --seed {args.seed}" if args.seed else "")
                   + ("" if args.clips == 24 else f" --clips {args.clips}")
                   + ("" if args.faces == 50 else f" --faces {args.faces}")
                   + ("" if args.frames == FRAMES else f" --frames {args.frames}")
                   + ("" if speed == SPEED else f" --speed {args.speed}")
                   + ("" if (h, w) == (480, 640) else f" --size {args.size}")
                   + ("" if not args.coast else " --coast " + ",".join(map(str, args.coast)))
                   + ("" if args.weak is None else f" --weak {args.weak:g}")
                   + ("" if not args.detect_every else " --detect-every " + ",".join(map(str, args.detect_every)))
                   + f" --out {args.out}",
        "faces_from": pool.source, "labelled": labelled, "clips": args.clips, "faces_per_clip": args.faces,
        "frame_size": [h, w], "frames": args.frames, "pace_face_sides_per_frame": list(speed),
        "max_angle_degrees": MAX_ANGLE, "noise_grey_levels": NOISE, "jpeg_quality": JPEG_QUALITY, "seed": args.seed,
        "note": f"scored at frames 2-{args.frames} over faces at least {VISIBLE:g} visible: accuracy % (a face not "
                "reported counts as wrong); identity_switches: changes of a face's track id between the frames it was "
                "reported in; faces_followed: faces reported in 2 or more frames, one_track: those with one track id "
                "throughout; crossing: faces whose box overlaps another face's in some frame; false faces: reported "
                "faces overlapping no face",
        "runs": runs, "rows": rows,
        **({"ms_per_frame_note": timing_note(load)} if every else {})})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
