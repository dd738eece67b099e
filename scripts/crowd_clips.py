"""Crowd clips: the detector, the tracker and the recogniser together on short synthetic videos of moving faces.

    python scripts/crowd_clips.py --coast-confirm 2 --out results/crowd/clips.json

Each clip is a crowd benchmark scene (``fsrfer_edge.crowd_bench``: FER2013 test faces with FER+ labels, 6-48 px,
plain and cluttered backgrounds) whose faces drift: each face moves in a random direction at a random speed of
up to :data:`MAX_SPEED` pixels a frame, drawn at its sub-pixel position in every frame, over :data:`FRAMES`
frames with new sensor noise in each; row "jpeg" then JPEG-compresses each whole frame at quality
:data:`JPEG_QUALITY`. ``CrowdAnalyzer.analyze_stream`` runs each clip frame by frame, tracked
(``FaceTracker(coast=0, confirm=1, motion=False)``), and tracked with the options the command names (coasting ``--coast-after``,
confirmation ``--confirm``, both ``--coast-confirm``), with the default detector and the shipped model. Reported
per face size: accuracy at the clip's last frame and over frames 2-8 (a face the detector missed counts as wrong, as
the crowd benchmark's "end to end"), false faces per frame, and
how many faces kept one track over the frames they were found in. Without ``../shared/data`` the public-domain
astronaut face is used and only the tracking is reported.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
from temporal_views import shift_bilinear  # noqa: E402

FRAMES = 8
MAX_SPEED = 1.0
NOISE = 2.0
JPEG_QUALITY = 50
ROWS = ("clean", "jpeg")


def camera_frame(img: np.ndarray, rng: np.random.Generator, row: str) -> np.ndarray:
    """A drawn frame as the camera gives it: sensor noise of :data:`NOISE` grey levels, uint8, and in row "jpeg"
    JPEG-compressed at :data:`JPEG_QUALITY`."""
    img = np.clip(np.rint(img + rng.normal(0, NOISE, img.shape)), 0, 255).astype(np.uint8)
    if row == "jpeg":
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=JPEG_QUALITY)
        buf.seek(0)
        with Image.open(buf) as im:
            img = np.asarray(im.convert("RGB"))
    return img


def render_clip(pool: Any, seed: int, n_faces: int, size: tuple[int, int], background: str,
                row: str, switch_at: Optional[int] = None) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """(frames, true boxes per frame, (FRAMES, N) labels per frame): a scene's faces drifting over FRAMES frames.

    With ``switch_at`` every face is replaced, from that frame on, by another face of the pool with another label
    at the same place (an expression that changes; drawn from a generator of its own, so the clip is otherwise the
    same)."""
    from fsrfer_edge.crowd_bench import MAX_FACE, MIN_FACE, _place, make_background
    from fsrfer_edge.preprocessing import resize

    h, w = size
    rng = np.random.default_rng(seed)
    base = make_background(rng, h, w, background)
    sizes = np.rint(np.exp(rng.uniform(math.log(MIN_FACE), math.log(MAX_FACE + 0.5), n_faces))).clip(
        MIN_FACE, MAX_FACE).astype(int)
    margin = int(math.ceil(MAX_SPEED * FRAMES)) + 1
    placed = [(x, y, s) for x, y, s in _place(rng, sizes.tolist(), h - 2 * margin, w - 2 * margin)]
    ids = rng.choice(len(pool.images), size=len(placed), replace=len(placed) > len(pool.images))
    angle = rng.uniform(0, 2 * math.pi, len(placed))
    speed = rng.uniform(0, MAX_SPEED, len(placed))
    faces = [np.clip(resize(pool.images[i], (s, s)), 0, 255).astype(np.float32) for (_, _, s), i in zip(placed, ids)]
    labels = np.asarray([int(pool.labels[i]) for i in ids], dtype=np.int64)
    later, later_labels = faces, labels
    if switch_at is not None:
        other = np.random.default_rng([seed, 1])
        new_ids = []
        for lab in labels:
            pick = np.flatnonzero(pool.labels != lab) if pool.labelled else np.arange(len(pool.images))
            new_ids.append(int(other.choice(pick)))
        later = [np.clip(resize(pool.images[i], (s, s)), 0, 255).astype(np.float32)
                 for (_, _, s), i in zip(placed, new_ids)]
        later_labels = np.asarray([int(pool.labels[i]) for i in new_ids], dtype=np.int64)
    frames, boxes, per_frame = [], [], []
    for t in range(FRAMES):
        img = base.copy()
        bx = []
        switched = switch_at is not None and t >= switch_at
        per_frame.append(later_labels if switched else labels)
        for (x, y, s), face, a, v in zip(placed, later if switched else faces, angle, speed):
            px, py = margin + x + v * t * math.cos(a), margin + y + v * t * math.sin(a)
            ix, iy = int(math.floor(px)), int(math.floor(py))
            moved = shift_bilinear(face[None], np.array([py - iy]), np.array([px - ix]))[0]
            img[iy:iy + s, ix:ix + s] = moved[:, :, None]
            bx.append((px, py, px + s, py + s))
        frames.append(camera_frame(img, rng, row))
        boxes.append(np.asarray(bx, dtype=np.float64).reshape(-1, 4))
    return frames, boxes, np.stack(per_frame) if per_frame else np.zeros((0, len(labels)), np.int64)


def add_clip_arguments(ap: argparse.ArgumentParser) -> None:
    """The options every clip script takes: where the faces come from, how many clips and faces, frame size, seed."""
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="folder of fer2013.npz and "
                    "ferplus_labels.npz (default ../shared/data); without it the astronaut face, tracking only")
    ap.add_argument("--clips", type=int, default=24, help="clips per row (default 24)")
    ap.add_argument("--faces", type=int, default=50, help="faces per clip (default 50)")
    ap.add_argument("--size", default="480x640", help="HxW of the frames (default 480x640)")
    ap.add_argument("--seed", type=int, default=0)


def add_run_arguments(ap: argparse.ArgumentParser) -> None:
    """The runs every clip script can add beside its own, each with the tracker's defaults (motion): weak detections
    and detecting every N-th frame."""
    ap.add_argument("--weak", type=float, default=None, metavar="SCORE", help="one more run, where detections "
                    "scoring from SCORE up to the detector's threshold continue followed faces "
                    "(CrowdAnalyzer(weak_score=SCORE); default: none)")
    ap.add_argument("--detect-every", default="", help="comma-separated N, one more run each, where the detector "
                    "runs on every N-th frame (analyze_stream(detect_every=N); default: none)")


def detect_every_values(ap: argparse.ArgumentParser, text: str) -> list[int]:
    """``--detect-every``'s comma-separated N, each from 2 to 30; else ``ap.error``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = [0]
    if any(not 2 <= k <= 30 for k in values):
        ap.error(f"--detect-every {text!r}: expected comma-separated integers from 2 to 30 (frames)")
    return values


def timing_note(load_at_start: float) -> str:
    """How ``ms_per_frame`` was measured, for a result file: the machine's cores and load average."""
    return ("detection and recognition time per frame (CrowdResult.timings_ms), one process, the runs taking turns "
            f"clip by clip; machine: {os.cpu_count()} cores, load average {load_at_start} at the start and "
            f"{round(os.getloadavg()[0], 2)} at the end")


def clip_inputs(args: argparse.Namespace) -> tuple[int, int, Any, list[int]]:
    """(height, width, face pool, one seed per clip) from :func:`add_clip_arguments`' options: FER test faces with
    FER+ labels from ``--data``, or the public-domain astronaut face without it."""
    from fsrfer_edge.crowd_bench import load_test_faces, public_domain_faces

    h, w = (int(v) for v in args.size.split("x"))
    data = Path(args.data)
    pool = load_test_faces(data) if (data / "fer2013.npz").is_file() else public_domain_faces()
    return h, w, pool, np.random.SeedSequence(args.seed).generate_state(args.clips).tolist()


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_clip_arguments(ap)
    ap.add_argument("--coast-after", default="2", help="comma-separated coast_after values, one coasting run "
                    "(coast=2) each (default 2)")
    ap.add_argument("--confirm", default="", help="comma-separated confirm values, one run (no coasting) each; "
                    "give --coast-after= to leave the coasting runs out (default: none)")
    ap.add_argument("--coast-confirm", default="", help="comma-separated confirm values, one run with coast=2 each "
                    "(default: none)")
    ap.add_argument("--motion", action="store_true", help="one more run: the tracker's defaults with motion "
                    "(FaceTracker(coast=2, coast_after=2, confirm=2, motion=True))")
    ap.add_argument("--motion-coast", default="", help="comma-separated coast values, one run each with motion, "
                    "confirmed after 2 (FaceTracker(coast=K, coast_after=2, confirm=2, motion=True); default: none)")
    add_run_arguments(ap)
    ap.add_argument("--switch-at", type=int, default=None, metavar="FRAME",
                    help=f"replace every face by a face of another expression from this frame (2-{FRAMES}; frame 1 has no earlier face to switch from) on, and "
                         "record the accuracy at every frame (default: no change)")
    ap.add_argument("--out", required=True, help="result JSON")
    args = ap.parse_args(argv)
    if args.switch_at is not None:
        if not 2 <= args.switch_at <= FRAMES:
            ap.error(f"--switch-at {args.switch_at}: expected a frame from 2 to {FRAMES}")
        args.switch_at -= 1  # counted from 0 below
    args.detect_every = detect_every_values(ap, args.detect_every)
    for name in ("coast_after", "confirm", "coast_confirm", "motion_coast"):
        text = getattr(args, name)
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            ap.error(f"--{name.replace('_', '-')} {text!r}: expected integers >= 1, comma-separated")
        if values and min(values) < 1:
            ap.error(f"--{name.replace('_', '-')} {text}: expected integers >= 1")
        setattr(args, name, values)
    from fsrfer_edge.crowd import CrowdAnalyzer
    from fsrfer_edge.crowd_bench import BACKGROUNDS, SIZE_BINS, _bin_label, _bin_of, match
    from fsrfer_edge.detection import Detection
    from fsrfer_edge.fileio import check_output_path, write_json
    from fsrfer_edge.tracking import FaceTracker

    check_output_path(args.out, "--out", json_output=True)
    h, w, pool, seeds = clip_inputs(args)
    labelled = bool(pool.labelled)
    # Every run names each option (the tracker's defaults moved with these measurements).
    runs_of: dict[str, Any] = {"one frame": lambda: False, "tracked": lambda: FaceTracker(coast=0, confirm=1, motion=False)}
    for after in args.coast_after:
        name = "tracked, coast 2" + ("" if after == 2 else f" after {after}")
        runs_of[name] = (lambda a: lambda: FaceTracker(coast=2, coast_after=a, confirm=1, motion=False))(after)
    for k in args.confirm:
        runs_of[f"tracked, confirm {k}"] = (lambda c: lambda: FaceTracker(coast=0, confirm=c, motion=False))(k)
    for k in args.coast_confirm:
        runs_of[f"tracked, coast 2, confirm {k}"] = (lambda c: lambda: FaceTracker(coast=2, coast_after=2,
                                                                                     confirm=c, motion=False))(k)
    motion_run = "tracked, coast 2, confirm 2, motion"
    if args.motion:
        runs_of[motion_run] = lambda: FaceTracker(coast=2, coast_after=2, confirm=2, motion=True)
    for k in args.motion_coast:
        runs_of[f"tracked, coast {k}, confirm 2, motion"] = (
            lambda c: lambda: FaceTracker(coast=c, coast_after=2, confirm=2, motion=True))(k)
    weak_run = None if args.weak is None else f"tracked, coast 2, confirm 2, motion, weak {args.weak:g}"
    if weak_run:
        runs_of[weak_run] = lambda: FaceTracker(coast=2, coast_after=2, confirm=2, motion=True)
    every: dict[str, int] = {}  # run -> detect_every, where not 1
    for k in args.detect_every:
        every[f"tracked, coast 2, confirm 2, motion, detect every {k}"] = k
        runs_of[f"tracked, coast 2, confirm 2, motion, detect every {k}"] = \
            lambda: FaceTracker(coast=2, coast_after=2, confirm=2, motion=True)
    load = round(os.getloadavg()[0], 2)
    ms_per_frame: dict[str, dict[str, float]] = {}
    out: dict[str, Any] = {}
    false_faces: dict[str, dict[str, float]] = {}
    accuracy_by_frame: dict[str, dict[str, list[float]]] = {}
    with CrowdAnalyzer() as analyzer, (CrowdAnalyzer(analyzer.recognizer, weak_score=args.weak) if weak_run
                                       else contextlib.nullcontext()) as weak_analyzer:
        for row in ROWS:
            per_face: list[dict[str, Any]] = []
            n_false = {n: 0 for n in runs_of}
            by_frame = {n: [0] * FRAMES for n in runs_of}  # correct answers at each frame, over every clip's faces
            ms = {n: 0.0 for n in runs_of}  # detection and recognition, summed over the run's frames
            n_frames = n_faces = 0
            for k, seed in enumerate(seeds):
                frames, truth, labels = render_clip(pool, int(seed), args.faces, (h, w), BACKGROUNDS[k % 2], row,
                                                    args.switch_at)
                faces = [{"size": float(s), "found_in": 0, "tracks": set()}
                         for j, s in enumerate(truth[0][:, 2] - truth[0][:, 0])]
                for name, make in runs_of.items():
                    by = weak_analyzer if name == weak_run else analyzer
                    for t, r in enumerate(by.analyze_stream(frames, track=make(), detect_every=every.get(name, 1))):
                        ms[name] += sum(r.timings_ms.values())
                        hit = match(truth[t], [Detection(f.box, f.score) for f in r.faces])
                        n_false[name] += len(r.faces) - int((hit >= 0).sum())
                        for j, d in enumerate(hit):
                            pred = r.faces[d].index if d >= 0 else -1
                            right = int(pred == labels[t][j])
                            by_frame[name][t] += right
                            if t >= 1:  # frames 2..FRAMES: every run has had a frame to start its tracks
                                faces[j][f"correct {name}"] = faces[j].get(f"correct {name}", 0) + right
                            if t == FRAMES - 1:
                                faces[j][f"last {name}"] = right
                                faces[j][name] = int(pred)
                            if name == "tracked" and d >= 0:
                                faces[j]["found_in"] += 1
                                faces[j]["tracks"].add(int(r.faces[d].track_id))  # type: ignore[arg-type]
                n_frames += len(frames)
                n_faces += len(faces)
                for f in faces:
                    f["tracks"] = len(f["tracks"])
                per_face += faces
                print(row, k, f"{len(labels)} faces", flush=True)
            bins = []
            for b, (lo, hi) in enumerate(SIZE_BINS + ((0, 10 ** 9),)):
                sel = [f for f in per_face if (_bin_of(f["size"]) == b if hi < 10 ** 9 else True)]
                seen2 = [f for f in sel if f["found_in"] >= 2]
                entry: dict[str, Any] = {"bin": "all" if hi >= 10 ** 9 else _bin_label(lo, hi), "faces": len(sel),
                                         "found_at_last_frame": sum(f["one frame"] >= 0 for f in sel),
                                         "found_in_2_or_more_frames": len(seen2),
                                         "one_track": sum(f["tracks"] == 1 for f in seen2)}
                if labelled:
                    for n in runs_of:
                        entry[f"accuracy {n}"] = round(100.0 * sum(f[f"last {n}"] for f in sel) / len(sel), 2) \
                            if sel else None
                        entry[f"accuracy frames 2-{FRAMES} {n}"] = round(
                            100.0 * sum(f[f"correct {n}"] for f in sel) / (len(sel) * (FRAMES - 1)), 2) if sel else None
                bins.append(entry)
            out[row] = bins
            false_faces[row] = {n: round(v / n_frames, 3) for n, v in n_false.items()}
            if every:  # the runs take turns clip by clip, so that a change of the machine's load falls on all
                ms_per_frame[row] = {n: round(v / n_frames, 1) for n, v in ms.items()}
            if labelled:
                accuracy_by_frame[row] = {n: [round(100.0 * c / n_faces, 2) for c in v] for n, v in by_frame.items()}
    write_json(args.out, {
        "command": "python scripts/crowd_clips.py" + (f" --seed {args.seed}" if args.seed else "")
                   + ("" if args.clips == 24 else f" --clips {args.clips}")
                   + ("" if args.faces == 50 else f" --faces {args.faces}")
                   + ("" if (h, w) == (480, 640) else f" --size {args.size}")
                   + ("" if args.coast_after == [2] else " --coast-after=" + ",".join(map(str, args.coast_after)))
                   + ("" if not args.confirm else " --confirm " + ",".join(map(str, args.confirm)))
                   + ("" if not args.coast_confirm else " --coast-confirm " + ",".join(map(str, args.coast_confirm)))
                   + (" --motion" if args.motion else "")
                   + ("" if not args.motion_coast else " --motion-coast " + ",".join(map(str, args.motion_coast)))
                   + ("" if args.weak is None else f" --weak {args.weak:g}")
                   + ("" if not every else " --detect-every " + ",".join(map(str, args.detect_every)))
                   + ("" if args.switch_at is None else f" --switch-at {args.switch_at + 1}")
                   + f" --out {args.out}",
        "faces_from": pool.source,
        "labelled": labelled, "clips": args.clips, "faces_per_clip": args.faces, "frame_size": [h, w],
        "frames": FRAMES, "max_speed_px_per_frame": MAX_SPEED, "noise_grey_levels": NOISE,
        "jpeg_quality": JPEG_QUALITY, "seed": args.seed,
        "note": "accuracy % at each clip's last frame over all true faces (a missed face counts as wrong), and over "
                f"frames 2-{FRAMES}; one_track: faces found in 2 or more frames whose detections all had one track "
                "id (tracked, without coasting); false_faces_per_frame: reported faces overlapping no true face",
        "runs": {"one frame": "track=False", "tracked": "FaceTracker(coast=0, confirm=1, motion=False)",
                 **{("tracked, coast 2" + ("" if a == 2 else f" after {a}")):
                    f"FaceTracker(coast=2, coast_after={a}, confirm=1, motion=False)" for a in args.coast_after},
                 **{f"tracked, confirm {k}": f"FaceTracker(coast=0, confirm={k}, motion=False)" for k in args.confirm},
                 **{f"tracked, coast 2, confirm {k}": f"FaceTracker(coast=2, coast_after=2, confirm={k}, motion=False)"
                    for k in args.coast_confirm},
                 **({motion_run: "FaceTracker(coast=2, coast_after=2, confirm=2, motion=True)"} if args.motion else {}),
                 **{f"tracked, coast {k}, confirm 2, motion": f"FaceTracker(coast={k}, coast_after=2, confirm=2, "
                    "motion=True)" for k in args.motion_coast},
                 **{n: f"FaceTracker(coast=2, coast_after=2, confirm=2, motion=True) with analyze_stream(detect_every={k})"
                    for n, k in every.items()},
                 **({weak_run: "FaceTracker(coast=2, coast_after=2, confirm=2, motion=True) with "
                               f"CrowdAnalyzer(weak_score={args.weak:g})"} if weak_run else {})},
        "rows": out, "false_faces_per_frame": false_faces,
        **({"ms_per_frame": ms_per_frame, "ms_per_frame_note": timing_note(load)} if every else {}),
        **({"accuracy_by_frame": accuracy_by_frame} if args.switch_at is not None else {}),
        **({"switch_at_frame": args.switch_at + 1} if args.switch_at is not None else {})})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
