"""Seeded crowd benchmark: synthetic crowd scenes with known faces, detection recall and expression accuracy.

Scenes are composed from FER2013 ``test``-split faces (FER+ labels, read from ``../shared/data`` with numpy
only) pasted at random sizes (6-48 px, log-uniform) and random non-overlapping positions on plain or
cluttered backgrounds (seeded value noise and random shapes). Every face's box and label is known.
Without the data set, scikit-image's public-domain astronaut face (NASA photograph) is pasted instead
and only detection is measured (``accuracy`` is null, with the reason).

Reported per face-size bin: detection recall, end-to-end expression accuracy (a missed face counts as
wrong), accuracy on the detected faces, and accuracy with the true boxes (no detector); plus precision,
and frames per second of :meth:`CrowdAnalyzer.analyze` (and of the pipelined stream) on a 50-face scene.

Run (writes the JSON atomically)::

    fsrfer-crowd-bench --out results/crowd/bench.json            # python -m fsrfer_edge.crowd_bench
    fsrfer-crowd-bench --scenes 2 --faces 10 --size 320x240 --out /tmp/small.json   # CI size
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib
import logging
import math
import os
import platform
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from .backends.onnxruntime_backend import MAX_THREADS
from .crowd import DEFAULT_MARGIN, DEFAULT_MIN_FACE, CrowdAnalyzer, check_margin, crop_face
from .crowd_cli import check_threads, threads_option  # --threads as fsrfer-crowd and fsrfer-demo take it
from .detection import MAX_FRAME_PIXELS, Detection, box_iou, create_detector, detector_model_inputs
from .detection.frames import check_image_name, optional_module, write_image
from .detection.pyramid import PyramidDetector
from .errors import (CliParser, DataError, FsrferError, InputError, check_count, cli_main, cli_path, one_line,
                     sigterm_interrupts)
from .ferplus import FERPLUS_FILE, load_labelled_faces
from .fileio import check_distinct_files, check_output_path, files_problem, loads_json, write_json
from .preprocessing import CLASSES, resize
from .recognizer import resolve_model_path

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
#: Face-size bins [lo, hi) in pixels (the last one includes 48).
SIZE_BINS: tuple[tuple[int, int], ...] = ((6, 8), (8, 12), (12, 16), (16, 24), (24, 32), (32, 49))
MIN_FACE, MAX_FACE = 6, 48
BACKGROUNDS = ("plain", "clutter")
#: A ground-truth face counts as detected when a detection overlaps it by at least this IoU.
MATCH_IOU = 0.3
#: "Reliably detected": recall of at least this in a size bin and every larger bin.
RELIABLE_RECALL = 0.9
DEFAULT_DATA = Path(os.environ.get("FSRFER_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
# FER+ vote columns -> class index (as trainer.data.FERPLUS_VOTE_TO_CLASS; the labels array already holds it).
ASTRONAUT_FACE = (66, 172, 108)  # (top, left, side) of the face in skimage.data.astronaut(), FER-like framing


# --------------------------------------------------------------------------------------------
# Faces
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FacePool:
    """Gray square faces to paste, with labels (-1: unknown) and where they came from."""

    images: np.ndarray  # (N, S, S) uint8
    labels: np.ndarray  # (N,) int64
    source: str

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())


def data_files(data_dir: PathLike) -> tuple[Path, Path]:
    """The FER2013 archive and the FER+ labels archive in ``data_dir``."""
    d = Path(data_dir)
    return d / "fer2013.npz", d / FERPLUS_FILE


def load_test_faces(data_dir: PathLike) -> FacePool:
    """FER2013 ``test`` faces with FER+ majority labels (faces without one are dropped), read and checked as
    ``fsrfer-eval`` reads them (:func:`ferplus.load_labelled_faces`), numpy only.

    Raises:
        DataError: the archives are missing or malformed.
    """
    fer_path, plus_path = data_files(data_dir)
    problem = files_problem(fer_path, plus_path)
    if problem:
        raise DataError(f"{problem}; expected fer2013.npz and {FERPLUS_FILE} in {data_dir} "
                        "(see ../shared/data/README.md), or pass --no-data for the public-domain face")
    faces = load_labelled_faces(fer_path, "ferplus", "test")
    if (faces.label_set, faces.split) != ("ferplus", "test"):
        raise DataError(f"{fer_path} has no 'orig_row' or no 'split' array; expected the FER2013 archive with arrays "
                        "images, labels, split and orig_row (see ../shared/data/README.md)")
    return FacePool(faces.images, faces.labels, "FER2013 test split, FER+ majority labels")


def _skimage_data(why: str, hint: str = "") -> Any:
    """``skimage.data``, or DataError saying ``why`` it is needed."""
    try:
        return importlib.import_module("skimage.data")
    except ImportError as exc:
        raise DataError(f"{why}, but scikit-image is not installed: pip install scikit-image{hint}") from exc


def public_domain_faces(n_variants: int = 8, seed: int = 0) -> FacePool:
    """Variants (mirrored, brightness/contrast jitter) of the face in scikit-image's astronaut photo.

    The photograph (Eileen Collins, NASA) is in the public domain. Labels are unknown (-1).

    Raises:
        DataError: scikit-image is not installed.
    """
    check_count("n_variants", n_variants, 1)
    skdata = _skimage_data("without the FER data the benchmark pastes scikit-image's public-domain astronaut face",
                           " (or pass --data)")
    top, left, side = ASTRONAUT_FACE
    rgb = skdata.astronaut()[top:top + side, left:left + side].astype(np.float32)
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    base = resize(gray, (48, 48))
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_variants):
        face = base[:, ::-1] if i % 2 else base
        gain, bias = rng.uniform(0.75, 1.2), rng.uniform(-25, 25)
        out.append(np.clip(face * gain + bias, 0, 255))
    images = np.rint(np.stack(out)).astype(np.uint8)
    return FacePool(images, np.full(len(images), -1, dtype=np.int64),
                    "scikit-image astronaut face (public domain), no expression labels")


# --------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Scene:
    """A synthetic crowd frame with its true faces."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: np.ndarray  # (N, 4) float64 x0, y0, x1, y1 of each pasted face
    labels: np.ndarray  # (N,) int64 class index, -1 unknown
    background: str
    seed: int

    @property
    def sizes(self) -> np.ndarray:
        return self.boxes[:, 2] - self.boxes[:, 0]


def _value_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth (h, w, 3) noise in [0, 1]: a coarse random grid enlarged bilinearly."""
    gh, gw = max(2, h * cells // max(h, w)), max(2, w * cells // max(h, w))
    grid = rng.uniform(0, 1, (3, gh, gw)).astype(np.float32)
    return np.moveaxis(resize(grid, (h, w), kernel="bilinear", antialias=False), 0, -1)


def make_background(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    """A seeded (h, w, 3) float32 background: ``plain`` (one colour, faint gradient) or ``clutter``."""
    if kind == "plain":
        colour = rng.uniform(40, 215, 3).astype(np.float32)
        ramp = np.linspace(-1, 1, h, dtype=np.float32)[:, None, None] * rng.uniform(-15, 15)
        img = np.broadcast_to(colour, (h, w, 3)) + ramp + rng.normal(0, 2, (h, w, 3)).astype(np.float32)
        return np.clip(img, 0, 255)
    if kind != "clutter":
        raise InputError(f"background={kind!r}; expected one of {BACKGROUNDS}")
    img = rng.uniform(-40, 40, 3).astype(np.float32) + np.zeros((h, w, 3), np.float32)
    for cells, amplitude in ((4, 120.0), (16, 70.0), (64, 40.0)):
        img += _value_noise(rng, h, w, cells) * amplitude
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(30, 60))):
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(3, max(4.0, w / 8)), rng.uniform(3, max(4.0, h / 8))
        shape = rng.integers(3)
        if shape == 0:  # rectangle
            mask = (np.abs(xx - cx) < rx) & (np.abs(yy - cy) < ry)
        elif shape == 1:  # ellipse
            mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        else:  # thick line
            angle = rng.uniform(0, math.pi)
            dist = np.abs((xx - cx) * math.sin(angle) - (yy - cy) * math.cos(angle))
            mask = (dist < rng.uniform(1, 4)) & (np.hypot(xx - cx, yy - cy) < rx * 2)
        img[mask] = colour
    img += rng.normal(0, 6, (h, w, 3)).astype(np.float32)
    return np.clip(img, 0, 255)


def _place(rng: np.random.Generator, sizes: Sequence[int], h: int, w: int,
           tries: int = 200) -> list[tuple[int, int, int]]:
    """Non-overlapping (x, y, size) positions; a gap of half the larger face keeps crops apart."""
    placed: list[tuple[int, int, int]] = []
    for s in sorted(sizes, reverse=True):  # big faces first: they are the hardest to fit
        for _ in range(tries):
            x, y = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
            if all(x + s + max(s, t) // 2 <= px or px + t + max(s, t) // 2 <= x or
                   y + s + max(s, t) // 2 <= py or py + t + max(s, t) // 2 <= y for px, py, t in placed):
                placed.append((x, y, s))
                break
    return placed


def make_scene(pool: FacePool, seed: int, n_faces: int = 50, size: tuple[int, int] = (480, 640),
               background: str = "plain", face_range: tuple[int, int] = (MIN_FACE, MAX_FACE)) -> Scene:
    """One seeded scene: ``n_faces`` faces from ``pool`` (fewer if they do not fit) on a background.

    Args:
        pool: faces to paste.
        seed: the scene is a function of (pool, seed, n_faces, size, background, face_range) only.
        size: (height, width) of the frame.
        face_range: smallest and largest face side in pixels (log-uniform in between).

    Raises:
        InputError: bad sizes or background.
    """
    h, w = size
    lo, hi = face_range
    if not 1 <= lo <= hi or hi > min(h, w):
        raise InputError(f"face_range={face_range} for a {h}x{w} frame; expected 1 <= lo <= hi <= {min(h, w)}")
    if n_faces < 0 or not len(pool.images):
        raise InputError(f"n_faces={n_faces} with {len(pool.images)} faces in the pool; expected n_faces >= 0 and faces")
    rng = np.random.default_rng(seed)
    img = make_background(rng, h, w, background)
    sizes = np.rint(np.exp(rng.uniform(math.log(lo), math.log(hi + 0.5), n_faces))).clip(lo, hi).astype(int)
    placed = _place(rng, sizes.tolist(), h, w)
    ids = rng.choice(len(pool.images), size=len(placed), replace=len(placed) > len(pool.images))
    boxes, labels = [], []
    for (x, y, s), i in zip(placed, ids):
        face = resize(pool.images[i], (s, s))  # anti-aliased bicubic, as the LR evaluation protocol
        img[y:y + s, x:x + s] = np.clip(face, 0, 255)[:, :, None]
        boxes.append((x, y, x + s, y + s))
        labels.append(int(pool.labels[i]))
    return Scene(np.rint(img).astype(np.uint8), np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                 np.asarray(labels, dtype=np.int64), background, seed)


def make_scenes(pool: FacePool, n_scenes: int, seed: int = 0, n_faces: int = 50,
                size: tuple[int, int] = (480, 640)) -> list[Scene]:
    """``n_scenes`` scenes alternating plain and cluttered backgrounds; scene i depends on (seed, i) only."""
    check_count("n_scenes", n_scenes, 0)
    seeds = np.random.SeedSequence(seed).generate_state(max(n_scenes, 1)).tolist()[:n_scenes]
    return [make_scene(pool, int(s), n_faces, size, BACKGROUNDS[i % 2]) for i, s in enumerate(seeds)]


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------
def match(truth: np.ndarray, dets: Sequence[Detection], min_iou: float = MATCH_IOU) -> np.ndarray:
    """For each true box, the index of its detection (greedy by IoU, one-to-one), or -1."""
    out = np.full(len(truth), -1, dtype=np.int64)
    if not len(truth) or not dets:
        return out
    iou = box_iou(truth, np.array([d.box for d in dets]))
    for flat in np.argsort(-iou, axis=None):
        t, d = np.unravel_index(flat, iou.shape)
        if iou[t, d] < min_iou:
            break
        if out[t] < 0 and d not in out:
            out[t] = d
    return out


def _bin_label(lo: int, hi: int) -> str:
    """``"6-8"`` for the bin [6, 8); the last bin, which includes MAX_FACE, is ``"32-48"``."""
    return f"{lo}-{min(hi, MAX_FACE + 1) - 1 if hi > MAX_FACE else hi}"


def _bin_of(size: float) -> int:
    for k, (lo, hi) in enumerate(SIZE_BINS):
        if lo <= size < hi:
            return k
    return -1


def evaluate(analyzer: CrowdAnalyzer, scenes: Sequence[Scene], margins: Sequence[float] = (DEFAULT_MARGIN,),
             labelled: bool = True) -> dict[str, Any]:
    """Recall, precision and accuracy per size bin (accuracy for each crop margin when ``labelled``).

    Detection runs once per scene; each margin only re-crops and re-recognises the same faces.
    """
    recognizer = analyzer.recognizer
    rows: list[dict[str, Any]] = []
    n_dets = n_true_dets = 0
    per_bg = {bg: [0, 0, 0] for bg in BACKGROUNDS}  # faces, found, false detections
    scene_dets: list[tuple[Scene, list[Detection]]] = []  # every scene's detections, for score_sweep
    for k, scene in enumerate(scenes):
        dets = analyzer._detect(scene.image)
        hit = match(scene.boxes, dets)
        n_dets += len(dets)
        n_true_dets += int((hit >= 0).sum())
        per_bg[scene.background][0] += len(scene.boxes)
        per_bg[scene.background][1] += int((hit >= 0).sum())
        per_bg[scene.background][2] += len(dets) - int((hit >= 0).sum())
        scene_dets.append((scene, dets))
        pred: dict[float, np.ndarray] = {}
        oracle: dict[float, np.ndarray] = {}
        if labelled and len(scene.boxes):
            for m in margins:
                matched = [dets[i] for i in hit if i >= 0]
                p = recognizer.predict([crop_face(scene.image, d.box, m) for d in matched]) if matched else []
                col = np.full(len(scene.boxes), -1, dtype=np.int64)
                col[hit >= 0] = [q.index for q in p]
                pred[m] = col
                oracle[m] = np.array([q.index for q in recognizer.predict(
                    [crop_face(scene.image, b, m) for b in scene.boxes])], dtype=np.int64)
        for j, (box, label) in enumerate(zip(scene.boxes, scene.labels)):
            rows.append({"size": float(box[2] - box[0]), "found": bool(hit[j] >= 0), "label": int(label),
                         "pred": {m: int(pred[m][j]) for m in pred}, "oracle": {m: int(oracle[m][j]) for m in oracle}})
        logger.info("scene %d/%d (%s): %d of %d faces found, %d detections", k + 1, len(scenes), scene.background,
                    int((hit >= 0).sum()), len(scene.boxes), len(dets))
    return {"rows": rows, "detections": n_dets, "true_detections": n_true_dets, "per_background": per_bg,
            "scene_detections": scene_dets}


def _rate(num: int, den: int) -> Optional[float]:
    return round(num / den, 4) if den else None


def _per(num: int, den: int) -> Optional[float]:
    """``num`` per scene, photo... (3 decimals); None where there is none to count on."""
    return round(num / den, 3) if den else None


def summarize_rows(ev: dict[str, Any], margin: float, labelled: bool) -> dict[str, Any]:
    """Per-bin and overall table for one margin from :func:`evaluate`'s rows."""
    rows = ev["rows"]
    bins = []
    for k, (lo, hi) in enumerate(SIZE_BINS):
        sel = [r for r in rows if _bin_of(r["size"]) == k]
        found = [r for r in sel if r["found"]]
        entry: dict[str, Any] = {"bin": _bin_label(lo, hi),
                                 "lo": lo, "hi": hi, "faces": len(sel), "found": len(found),
                                 "recall": _rate(len(found), len(sel))}
        if labelled:
            correct = sum(r["pred"][margin] == r["label"] for r in found)
            entry["accuracy"] = _rate(correct, len(sel))
            entry["accuracy_detected"] = _rate(correct, len(found))
            entry["accuracy_true_boxes"] = _rate(sum(r["oracle"][margin] == r["label"] for r in sel), len(sel))
        bins.append(entry)
    found_all = [r for r in rows if r["found"]]
    overall: dict[str, Any] = {"faces": len(rows), "found": len(found_all), "recall": _rate(len(found_all), len(rows)),
                               "detections": ev["detections"],
                               "precision": _rate(ev["true_detections"], ev["detections"])}
    if labelled:
        correct = sum(r["pred"][margin] == r["label"] for r in found_all)
        overall["accuracy"] = _rate(correct, len(rows))
        overall["accuracy_detected"] = _rate(correct, len(found_all))
        overall["accuracy_true_boxes"] = _rate(sum(r["oracle"][margin] == r["label"] for r in rows), len(rows))
    return {"bins": bins, "overall": overall}


#: scikit-image sample photographs without a human face (a cat's face counts as a false face too), and
#: the astronaut photo with its one face, for false faces on real photos rather than synthetic clutter.
FACE_FREE_PHOTOS = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "coins", "moon",
                    "brick", "grass", "gravel", "text", "page", "stereo_motorcycle", "colorwheel", "logo",
                    "clock", "cell")
#: Detection score thresholds compared by :func:`score_sweep`.
SWEEP_SCORES = (0.4, 0.5, 0.6, 0.7)


def real_photos() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, HxWx3 uint8 RGB, true face boxes) of scikit-image's sample photos: the face-free ones and
    the astronaut (one face, :data:`ASTRONAUT_FACE`).

    Raises:
        DataError: scikit-image is not installed.
    """
    skdata = _skimage_data("false faces on real photos are measured on scikit-image's sample photos")
    top, left, side = ASTRONAUT_FACE
    out = [("astronaut", skdata.astronaut(), np.array([[left, top, left + side, top + side]], dtype=np.float64))]
    for name in FACE_FREE_PHOTOS:
        img = getattr(skdata, name)()
        img = img[0] if isinstance(img, tuple) else img  # stereo pairs: the left image
        out.append((name, img, np.zeros((0, 4))))
    return out


def score_sweep(analyzer: CrowdAnalyzer, scenes: Sequence[Scene], thresholds: Sequence[float] = SWEEP_SCORES,
                labelled: bool = False, photos: Optional[Sequence[tuple[str, np.ndarray, np.ndarray]]] = None
                ) -> dict[str, Any]:
    """Recall and accuracy (synthetic scenes) against false faces (synthetic and real photos) per score threshold.

    The detector runs again at each threshold (its ``min_score`` set to it, as ``fsrfer-crowd --min-score``
    does), on the scenes and on ``photos`` (default :func:`real_photos`); end-to-end accuracy is at the
    analyzer's margin (a missed face counts as wrong).

    Raises:
        InputError: the detector has no ``min_score`` to set (OpenCV's cascade scores every face 1.0).
    """
    det = analyzer.detector
    if not hasattr(det, "min_score"):
        raise InputError(f"score_sweep: the {det.name} detector has no score threshold; run it with --score-sweep=")
    photos = real_photos() if photos is None else photos
    saved = det.min_score, analyzer.min_score
    weak = det.weak_score if isinstance(det, PyramidDetector) else None
    out: dict[str, Any] = {"thresholds": {}, "photos": [name for name, _, _ in photos]}
    try:
        analyzer.min_score = None
        if isinstance(det, PyramidDetector) and weak is not None:  # each threshold alone: weak boxes are not
            det.weak_score = None  # detections, and a threshold at or under them is refused
        for t in thresholds:
            det.min_score = float(t)
            ev = evaluate(analyzer, scenes, (analyzer.margin,), labelled)
            photo_dets = [(name, truth, analyzer._detect(img)) for name, img, truth in photos]
            row = _sweep_row(ev, photo_dets, t)
            row["accuracy"] = summarize_rows(ev, analyzer.margin, True)["overall"]["accuracy"] if labelled else None
            out["thresholds"][f"{t:g}"] = row
    finally:
        det.min_score, analyzer.min_score = saved
        if isinstance(det, PyramidDetector) and weak is not None:
            det.weak_score = weak
    return out


def _sweep_row(ev: dict[str, Any], photo_dets: Sequence[tuple[str, np.ndarray, Sequence[Detection]]],
               t: float) -> dict[str, Any]:
    """Recall, precision and false faces of the detections scoring at least ``t``, matched again."""
    n_clutter = sum(sc.background == "clutter" for sc, _ in ev["scene_detections"])
    faces = found = dets_n = false_clutter = 0
    by_bin = [[0, 0] for _ in SIZE_BINS]
    for sc, dets in ev["scene_detections"]:
        kept = [d for d in dets if d.score >= t]
        hit = match(sc.boxes, kept)
        for size, h in zip(sc.sizes, hit):
            k = _bin_of(float(size))
            if k >= 0:
                by_bin[k][0] += 1
                by_bin[k][1] += int(h >= 0)
        faces += len(sc.boxes)
        found += int((hit >= 0).sum())
        dets_n += len(kept)
        if sc.background == "clutter":
            false_clutter += len(kept) - int((hit >= 0).sum())
    per_photo = {}
    for name, truth, dets in photo_dets:
        kept = [d for d in dets if d.score >= t]
        hit = match(truth, kept)
        per_photo[name] = len(kept) - int((hit >= 0).sum())
    return {
        "recall": _rate(found, faces), "precision": _rate(found, dets_n),
        "recall_bins": {_bin_label(lo, hi): _rate(f, n) for (lo, hi), (n, f) in zip(SIZE_BINS, by_bin)},
        "false_faces_per_clutter_scene": _per(false_clutter, n_clutter),  # None: no cluttered scene
        "false_faces_real_photos": sum(per_photo.values()),
        "false_faces_per_real_photo": round(sum(per_photo.values()) / max(1, len(per_photo)), 3),
        "real_photos_with_false_faces": sum(v > 0 for v in per_photo.values()),
        "false_faces_by_photo": per_photo,
    }


def smallest_reliable(bins: Sequence[dict[str, Any]], threshold: float = RELIABLE_RECALL) -> Optional[int]:
    """The lower edge of the smallest bin from which every bin has recall >= threshold (None if none)."""
    best = None
    for b in reversed(bins):
        if b["recall"] is None:
            continue
        if b["recall"] < threshold:
            break
        best = b["lo"]
    return best


def measure_fps(analyzer: CrowdAnalyzer, scene: Scene, repeats: int = 3) -> dict[str, Any]:
    """Frames per second of analyze() (median of ``repeats``) and of the pipelined analyze_stream()."""
    check_count("repeats", repeats, 1)
    analyzer.analyze(scene.image)  # warm-up: sessions, caches
    times, det_ms, rec_ms = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = analyzer.analyze(scene.image)
        times.append(time.perf_counter() - t0)
        det_ms.append(r.timings_ms["detect"])
        rec_ms.append(r.timings_ms["recognize"])
    t0 = time.perf_counter()
    n = sum(1 for _ in analyzer.analyze_stream([scene.image] * repeats, pipeline=True))
    stream = time.perf_counter() - t0
    med = float(np.median(times))
    return {"frame_size": [int(scene.image.shape[0]), int(scene.image.shape[1])], "faces": len(scene.boxes),
            "faces_found": len(r.faces), "repeats": repeats, "seconds_per_frame": round(med, 4),
            "fps": round(1.0 / med, 3), "detect_ms": round(float(np.median(det_ms)), 2),
            "recognize_ms": round(float(np.median(rec_ms)), 2), "fps_stream_pipelined": round(n / stream, 3)}


def run_benchmark(analyzer: CrowdAnalyzer, pool: FacePool, n_scenes: int = 20, n_faces: int = 50,
                  size: tuple[int, int] = (480, 640), seed: int = 0, margins: Sequence[float] = (DEFAULT_MARGIN,),
                  fps_repeats: int = 3, fps_size: Optional[tuple[int, int]] = None,
                  score_thresholds: Sequence[float] = ()) -> dict[str, Any]:
    """Make the scenes, evaluate and time; returns the JSON-able report.

    Args:
        analyzer: the analyzer under test (its detector, recogniser and margin).
        pool: faces to paste (:func:`load_test_faces` or :func:`public_domain_faces`).
        margins: crop margins to report accuracy for; the analyzer's own margin is the headline.
        fps_repeats: timed repetitions on one 50-face scene of ``fps_size`` (default: ``size``; 0 repeats:
            no timing). A small frame holds fewer than 50 faces; the report says how many.
        score_thresholds: detection thresholds for :func:`score_sweep` (recall against false faces on
            real photos; needs scikit-image); empty: no sweep.
    """
    if n_scenes < 1 or n_faces < 1:
        raise InputError(f"n_scenes={n_scenes}, n_faces={n_faces}; expected both >= 1")
    margins = sorted({float(m) for m in margins} | {analyzer.margin})
    scenes = make_scenes(pool, n_scenes, seed, n_faces, size)
    labelled = pool.labelled
    t0 = time.perf_counter()
    ev = evaluate(analyzer, scenes, margins, labelled)
    head = summarize_rows(ev, analyzer.margin, labelled)
    report: dict[str, Any] = {
        "benchmark": "fsrfer-crowd-bench",
        "config": {"scenes": n_scenes, "faces_per_scene": n_faces, "frame_size": list(size), "seed": seed,
                   "face_sizes": f"{MIN_FACE}-{MAX_FACE} px, log-uniform", "backgrounds": list(BACKGROUNDS),
                   "match_iou": MATCH_IOU, "margin": analyzer.margin, "min_size": analyzer.min_size,
                   "min_face": getattr(analyzer.detector, "min_face", None),
                   "min_score": analyzer.min_score, "detector": repr(analyzer.detector),
                   "detector_name": analyzer.detector.name,
                   "detector_min_score": getattr(analyzer.detector, "min_score", None),
                   "model": str(analyzer.recognizer.model_path), "model_sha256": _sha256(analyzer.recognizer.model_path),
                   "reliable_recall": RELIABLE_RECALL},
        "faces_source": pool.source,
        "detection": {"bins": [{k: b[k] for k in ("bin", "lo", "hi", "faces", "found", "recall")}
                               for b in head["bins"]],
                      "overall": {k: head["overall"][k] for k in ("faces", "found", "recall", "detections", "precision")},
                      "per_background": {bg: {"faces": v[0], "recall": _rate(v[1], v[0]),
                                              "false_detections_per_scene": _per(v[2], sum(
                                                  s.background == bg for s in scenes))}
                                         for bg, v in ev["per_background"].items()},
                      "smallest_reliable_px": smallest_reliable(head["bins"])},
        "eval_seconds": round(time.perf_counter() - t0, 2),
    }
    if score_thresholds:
        report["score_sweep"] = score_sweep(analyzer, scenes, score_thresholds, labelled)
    if labelled:
        report["accuracy"] = {"bins": [{k: b[k] for k in ("bin", "faces", "accuracy", "accuracy_detected",
                                                        "accuracy_true_boxes")} for b in head["bins"]],
                              "overall": {k: head["overall"][k] for k in ("accuracy", "accuracy_detected",
                                                                          "accuracy_true_boxes")},
                              "chance": round(1 / len(CLASSES), 4)}
        report["margin_sweep"] = {f"{m:g}": summarize_rows(ev, m, True)["overall"] for m in margins}
    else:
        report["accuracy"] = None
        report["accuracy_skipped"] = f"faces from {pool.source}: no expression labels; pass --data with the FER arrays"
    if fps_repeats > 0:
        fps_scene = make_scene(pool, seed + 1, 50, fps_size or size, "clutter")
        report["speed"] = measure_fps(analyzer, fps_scene, fps_repeats)
        report["speed"].update(_environment(analyzer))
    return report


def _sha256(path: Any) -> Optional[str]:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except (OSError, TypeError):
        return None


def _environment(analyzer: CrowdAnalyzer) -> dict[str, Any]:
    env: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                           "load_average_at_end": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
                           "recognizer_providers": list(analyzer.recognizer.backend.providers)}
    ort = optional_module("onnxruntime")
    if ort is not None:
        env["onnxruntime"] = ort.__version__
    return env


def markdown_table(report: dict[str, Any]) -> str:
    """The per-size-bin table of a report, as Markdown (for the README)."""
    acc = report.get("accuracy")
    head = "| face size (px) | faces | detection recall |"
    rule = "|---|---:|---:|"
    if acc:
        head += " accuracy, end to end | accuracy, detected faces | accuracy, true boxes |"
        rule += "---:|---:|---:|"
    lines = [head, rule]

    def pct(v: Optional[float]) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    rows = zip(report["detection"]["bins"], acc["bins"] if acc else [None] * len(report["detection"]["bins"]))
    for d, a in rows:
        line = f"| {d['bin']} | {d['faces']} | {pct(d['recall'])} |"
        if a:
            line += f" {pct(a['accuracy'])} | {pct(a['accuracy_detected'])} | {pct(a['accuracy_true_boxes'])} |"
        lines.append(line)
    o = report["detection"]["overall"]
    line = f"| all | {o['faces']} | {pct(o['recall'])} |"
    if acc:
        ao = acc["overall"]
        line += f" {pct(ao['accuracy'])} | {pct(ao['accuracy_detected'])} | {pct(ao['accuracy_true_boxes'])} |"
    lines.append(line)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Detectors side by side: one process per detector, interleaved timing rounds
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DetectorSpec:
    """A detector configuration to benchmark (None: the detector's default, as fsrfer-crowd uses)."""

    name: str
    min_face: float = DEFAULT_MIN_FACE
    min_score: Optional[float] = None
    margin: Optional[float] = None
    model: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Job:
    """What every detector's process runs (picklable: it crosses to the worker processes)."""

    data_dir: Optional[str]  # None: the public-domain face
    model: Optional[str]
    threads: Optional[int]
    scenes: int = 20
    faces: int = 50
    size: tuple[int, int] = (480, 640)
    seed: int = 0
    margins: tuple[float, ...] = ()
    score_thresholds: tuple[float, ...] = ()
    fps_repeats: int = 3
    fps_size: tuple[int, int] = (480, 640)


def _make_analyzer(spec: DetectorSpec, job: Job) -> CrowdAnalyzer:
    from .recognizer import Recognizer

    rec = Recognizer(job.model, threads=job.threads, spinning=False)
    try:
        det = create_detector(spec.name, min_face=spec.min_face, min_score=spec.min_score, model=spec.model,
                              threads=job.threads if spec.name != "opencv" else None)
    except BaseException:
        rec.close()
        raise
    analyzer = CrowdAnalyzer(rec, det, margin=spec.margin)
    analyzer._owned.extend([det, rec])  # close both with the analyzer
    return analyzer


def _pool(job: Job) -> FacePool:
    return load_test_faces(job.data_dir) if job.data_dir is not None else public_domain_faces()


def _leave_ctrl_c_to_the_parent() -> None:
    """In a worker process: ignore Ctrl-C, which a terminal sends to the whole process group; the parent ends
    its workers when it is interrupted (no traceback from each of them)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _end(proc: Any, grace: float) -> None:
    """Wait up to ``grace`` seconds for a worker process to exit, then terminate it."""
    proc.join(timeout=grace)
    if proc.is_alive():
        proc.terminate()
        proc.join()


def _worker(conn: Any, spec: DetectorSpec, job: Job) -> None:
    """A detector's process: evaluate on request, then time frames when asked (one request at a time)."""
    _leave_ctrl_c_to_the_parent()
    logging.basicConfig(level=logging.INFO, format=f"[{spec.name}] %(message)s")
    try:
        with _make_analyzer(spec, job) as analyzer:
            pool = _pool(job)
            conn.send(("ok", None))
            while True:
                cmd, arg = conn.recv()
                if cmd == "evaluate":
                    own = getattr(analyzer.detector, "min_score", None)  # in the sweep, for the comparison table
                    sweep = tuple(sorted(set(job.score_thresholds) | {own})) if own is not None and \
                        job.score_thresholds else ()
                    conn.send(("ok", run_benchmark(analyzer, pool, job.scenes, job.faces, job.size, job.seed,
                                                   job.margins, 0, None, sweep)))
                elif cmd == "speed":
                    scene = make_scene(pool, job.seed + 1, 50, job.fps_size, "clutter")
                    conn.send(("ok", dict(measure_fps(analyzer, scene, int(arg)), **_environment(analyzer))))
                else:
                    return
    except FsrferError as exc:
        conn.send(("error", str(exc)))
    except Exception as exc:  # a bug: say which, the parent turns it into one line
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def big_frame(megapixels: float) -> np.ndarray:
    """A 4:3 frame of ``megapixels``, tiled with scikit-image's astronaut photo (a 108-px face per tile)."""
    if isinstance(megapixels, bool) or not isinstance(megapixels, (int, float, np.integer, np.floating)) or \
            not 0 < megapixels <= MAX_FRAME_PIXELS / 1e6:
        raise InputError(f"megapixels={megapixels!r}; expected a number in (0, {MAX_FRAME_PIXELS / 1e6:.1f}]")
    photo = np.ascontiguousarray(_skimage_data("the large-photo measurement tiles the astronaut photo").astronaut())
    w = int(round(math.sqrt(megapixels * 1e6 * 4 / 3)))
    h = int(round(w * 3 / 4))
    out = np.empty((h, w, 3), np.uint8)
    ph, pw = photo.shape[:2]
    for y in range(0, h, ph):
        for x in range(0, w, pw):
            out[y:y + ph, x:x + pw] = photo[:h - y, :w - x]
    return out


def _big_photo(conn: Any, spec: DetectorSpec, job: Job, megapixels: float) -> None:
    """A fresh process: analyze one large photo; its peak resident memory is the process's ru_maxrss."""
    import resource

    def rss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes

    _leave_ctrl_c_to_the_parent()
    try:
        with _make_analyzer(spec, job) as analyzer:
            analyzer.analyze(np.zeros((480, 640, 3), np.uint8))  # warm-up: ONNX Runtime's first-run allocations
            loaded = rss_mb()
            frame = big_frame(megapixels)
            with_frame = rss_mb()
            t0 = time.perf_counter()
            r = analyzer.analyze(frame)
            seconds = time.perf_counter() - t0
        conn.send(("ok", {"megapixels": round(frame.shape[0] * frame.shape[1] / 1e6, 2),
                          "frame_size": [int(frame.shape[0]), int(frame.shape[1])], "seconds": round(seconds, 2),
                          "detect_s": round(r.timings_ms["detect"] / 1e3, 2), "faces_found": len(r.faces),
                          "peak_rss_mb": round(rss_mb()), "rss_models_loaded_mb": round(loaded),
                          "rss_with_frame_mb": round(with_frame)}))
    except FsrferError as exc:
        conn.send(("error", str(exc)))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _reply(conn: Any, proc: Any, what: str) -> Any:
    """The answer of a worker process, or DataError when it fails or dies."""
    while not conn.poll(1.0):
        if not proc.is_alive():
            raise DataError(f"the {what} process ended without an answer (exit code {proc.exitcode})")
    status, value = conn.recv()
    if status != "ok":
        raise DataError(f"{what}: {value}")
    return value


def _load() -> Optional[list[float]]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _median_speed(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    spf = float(np.median([r["seconds_per_frame"] for r in rounds]))
    out = dict(rounds[-1])
    out.update({"seconds_per_frame": round(spf, 4), "fps": round(1 / spf, 3),
                "detect_ms": round(float(np.median([r["detect_ms"] for r in rounds])), 2),
                "recognize_ms": round(float(np.median([r["recognize_ms"] for r in rounds])), 2),
                "fps_stream_pipelined": round(float(np.median([r["fps_stream_pipelined"] for r in rounds])), 3),
                "rounds": len(rounds), "per_round": [{k: r[k] for k in ("seconds_per_frame", "detect_ms",
                                                                          "recognize_ms", "fps_stream_pipelined",
                                                                          "load_average")} for r in rounds]})
    return out


def compare(specs: Sequence[DetectorSpec], job: Job, rounds: int = 3,
            big_photos: Sequence[float] = ()) -> list[dict[str, Any]]:
    """Benchmark each detector in its own process, with the same scenes, photos and expression model.

    Accuracy is evaluated one detector at a time. Speed is measured in ``rounds`` interleaved rounds (each
    round times every detector once, in a rotating order, while the others wait), so that a change in the
    machine's load hits all detectors alike; medians over rounds are reported, with the load average of
    each round. Each large photo runs in a fresh process of its own, whose peak resident memory is read
    from ``getrusage``.

    Returns:
        One report per spec (as :func:`run_benchmark`'s, with ``speed`` and ``big_photo``).

    Raises:
        DataError: a worker process failed (its message is kept).
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding ONNX Runtime thread pools
    workers = []
    finished = False  # until then, an exception (Ctrl-C, SIGTERM, a worker's failure) ends the workers at once
    try:
        for spec in specs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, spec, job), daemon=True)
            proc.start()
            workers.append((spec, proc, parent))
            _reply(parent, proc, f"detector {spec.name}")
        reports = []
        for spec, proc, conn in workers:
            logger.info("evaluating %s", spec.name)
            conn.send(("evaluate", None))
            reports.append(_reply(conn, proc, f"detector {spec.name}"))
        speeds: list[list[dict[str, Any]]] = [[] for _ in workers]
        for r in range(rounds if job.fps_repeats > 0 else 0):
            for i in [(r + k) % len(workers) for k in range(len(workers))]:
                spec, proc, conn = workers[i]
                conn.send(("speed", job.fps_repeats))
                speeds[i].append(dict(_reply(conn, proc, f"detector {spec.name}"), load_average=_load()))
            logger.info("speed round %d/%d: %s", r + 1, rounds, ", ".join(
                f"{w[0].name} {s[-1]['detect_ms']:.0f} ms" for w, s in zip(workers, speeds)))
        for (spec, proc, conn), report, sp in zip(workers, reports, speeds):
            conn.send(("stop", None))
            if sp:
                report["speed"] = _median_speed(sp)
        finished = True
    finally:
        for _, proc, _ in workers:
            _end(proc, 10 if finished else 0)
    for spec, report in zip(specs, reports):
        runs = []
        for mp in big_photos:  # every detector, OpenCV's fallback too: all of them tile the enlarged frame
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_big_photo, args=(child, spec, job, float(mp)), daemon=True)
            proc.start()
            try:
                runs.append(_reply(parent, proc, f"{spec.name} on a {mp:g} MP photo"))
            except BaseException:
                _end(proc, 0)
                raise
            _end(proc, 10)
            logger.info("%s, %g MP photo: %s", spec.name, mp, runs[-1])
        if runs:
            report["big_photo"] = runs
    return reports


def _speedups(reports: Sequence[dict[str, Any]], baseline: int) -> list[Optional[float]]:
    """Median over rounds of the baseline's detection time over each detector's (same round)."""
    base = reports[baseline].get("speed", {}).get("per_round")
    out: list[Optional[float]] = []
    for r in reports:
        mine = r.get("speed", {}).get("per_round")
        if not base or not mine:
            out.append(None)
            continue
        out.append(round(float(np.median([b["detect_ms"] / max(m["detect_ms"], 1e-9) for b, m in zip(base, mine)])), 2))
    return out


def comparison_table(report: dict[str, Any]) -> str:
    """The detectors side by side (``comparison`` of a report), as Markdown."""
    comp = report["comparison"]
    rows = comp["detectors"]
    bins = ("8-12", "12-16", "16-24")
    big_mp = sorted({b["megapixels"] for r in rows for b in r["report"].get("big_photo") or []})
    head = ("| detector | min score | margin | accuracy, end to end | " + " | ".join(f"recall {b} px" for b in bins)
            + " | false faces, real photos | detect ms per frame | detection speed-up | frames/s | frames/s, "
            "pipelined stream |" + "".join(f" {mp:g} MP photo: s, peak MB |" for mp in big_mp))
    lines = [head, "|---|---:|---:|---:|" + "---:|" * len(bins) + "---:|---:|---:|---:|---:|" + "---:|" * len(big_mp)]

    def pct(v: Optional[float]) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    def num(v: Optional[float], spec: str) -> str:  # no speed measured (--fps-repeats 0): "-"
        return "-" if v is None else format(v, spec)

    for r in rows:
        rep = r["report"]
        acc = rep["accuracy"]["overall"]["accuracy"] if rep.get("accuracy") else None
        recall = {b["bin"]: b["recall"] for b in rep["detection"]["bins"]}
        sw = (rep.get("score_sweep") or {}).get("thresholds", {})
        thr = r["min_score"]
        false = sw.get(f"{thr:g}", {}).get("false_faces_real_photos", "-") if thr is not None else "-"
        sp = rep.get("speed") or {}
        speedup = "-" if r.get("detect_speedup") is None else f"{r['detect_speedup']:.1f}x"
        big = {b["megapixels"]: b for b in rep.get("big_photo") or []}
        line = (f"| {r['label']} | {'-' if thr is None else f'{thr:g}'} | {r['margin']:g} | {pct(acc)} | "
                + " | ".join(pct(recall.get(b)) for b in bins)
                + f" | {false} | {num(sp.get('detect_ms'), '.0f')} | {speedup} | {num(sp.get('fps'), '.2f')} | "
                f"{num(sp.get('fps_stream_pipelined'), '.2f')} |"
                + "".join(f" {big[mp]['seconds']:.0f}, {big[mp]['peak_rss_mb']} |" if mp in big else " - |"
                          for mp in big_mp))
        lines.append(line)
    return "\n".join(lines)


def comparison_summary(report: dict[str, Any]) -> str:
    """Sentences comparing the report's detector with the baseline of its ``comparison`` (same run)."""
    comp = report.get("comparison")
    if not comp:
        return ""
    rows = {r["label"]: r for r in comp["detectors"]}
    me = comp["detectors"][0]
    base = rows.get(comp["baseline"])
    if base is None or base is me:
        return ""

    def facts(r: dict[str, Any]) -> dict[str, Any]:
        rep = r["report"]
        sw = (rep.get("score_sweep") or {}).get("thresholds", {})
        return {"acc": (rep.get("accuracy") or {}).get("overall", {}).get("accuracy"),
                "false": sw.get(f"{r['min_score']:g}", {}).get("false_faces_real_photos") if r["min_score"] is not None
                else None, "n_photos": len((rep.get("score_sweep") or {}).get("photos", [])),
                "speed": rep.get("speed") or {}, "big": rep.get("big_photo") or []}

    a, b = facts(me), facts(base)
    parts = []
    if a["acc"] is not None and b["acc"] is not None:
        parts.append(f"end-to-end accuracy {100 * a['acc']:.1f}% against {100 * b['acc']:.1f}%")
    if a["false"] is not None and b["false"] is not None:
        parts.append(f"{a['false']} false faces on the {a['n_photos']} real photos against {b['false']}")
    if me.get("detect_speedup"):
        parts.append(f"detection {me['detect_speedup']:.1f} times faster ({a['speed']['detect_ms']:.0f} against "
                     f"{b['speed']['detect_ms']:.0f} ms per {a['speed']['frame_size'][1]}x{a['speed']['frame_size'][0]} "
                     f"frame; median of the per-round ratios over {comp['rounds']} rounds)")
    def score(r: dict[str, Any]) -> str:  # OpenCV's cascade has no score threshold: null
        return "-" if r["min_score"] is None else f"{r['min_score']:g}"

    text = (f"**{me['label']}** (score {score(me)}, margin {me['margin']:g}) against **{base['label']}** "
            f"(score {score(base)}, margin {base['margin']:g}), in this one run: " + "; ".join(parts) + ".")
    sp = a["speed"]
    if sp:
        text += (f" A {sp['frame_size'][1]}x{sp['frame_size'][0]} frame of {sp['faces']} faces runs at "
                 f"{sp['fps']:.1f} frames/s ({sp['detect_ms']:.0f} ms detection, {sp['recognize_ms']:.0f} ms to "
                 f"recognise the {sp['faces_found']} faces found), {sp['fps_stream_pipelined']:.1f} frames/s as a "
                 "pipelined stream (detection of frame t+1 overlapping recognition of frame t).")
    for name, f in ((me["label"], a), (base["label"], b)):
        if f["big"]:
            runs = "; ".join(f"{g['megapixels']:g} MP in {g['seconds']:.0f} s, peak memory {g['peak_rss_mb']} MB"
                             for g in f["big"])
            text += f" {name} on large photos (whole process, fresh for each photo): {runs}."
    load = comp.get("load_average_at_start"), comp.get("load_average_at_end")
    if all(load):
        text += (f" Machine: {sp.get('cpu_count', '?')} cores, load average {load[0][0]:.1f} at the start and "
                 f"{load[1][0]:.1f} at the end (other jobs shared the CPU; compare speeds within this run only).")
    return text


def sweep_table(report: dict[str, Any]) -> str:
    """The score sweep of each detector in the report's comparison (or of the report alone), as Markdown."""
    entries = [(r["label"], r["report"]) for r in report["comparison"]["detectors"]] if report.get("comparison") \
        else [(report["config"].get("detector_name", "detector"), report)]
    entries = [(n, r) for n, r in entries if r.get("score_sweep")]
    if not entries:
        return ""
    bins = [b["bin"] for b in entries[0][1]["detection"]["bins"]]
    lines = ["| detector | min score | accuracy, end to end | recall | " + " | ".join(f"recall {b} px" for b in bins)
             + " | precision (synthetic) | false faces per cluttered scene | false faces on real photos | "
             "real photos with a false face |",
             "|---|---:|---:|---:|" + "---:|" * len(bins) + "---:|---:|---:|---:|"]

    def pct(v: Optional[float]) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    for name, rep in entries:
        sw = rep["score_sweep"]
        for k, v in sorted(sw["thresholds"].items(), key=lambda kv: float(kv[0])):
            lines.append(f"| {name} | {k} | {pct(v.get('accuracy'))} | {pct(v['recall'])} | "
                         + " | ".join(pct(v["recall_bins"][b]) for b in bins) + f" | {pct(v['precision'])} | "
                         + ("-" if v["false_faces_per_clutter_scene"] is None
                            else f"{v['false_faces_per_clutter_scene']:.1f}")
                         + f" | {v['false_faces_real_photos']} | "
                         f"{v['real_photos_with_false_faces']} of {len(sw['photos'])} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 640x480") from None
    if w < 64 or h < 64 or w * h > MAX_FRAME_PIXELS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected at least 64x64 and at most "
                                         f"{MAX_FRAME_PIXELS / 1e6:.1f} megapixels")
    return h, w


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers, e.g. 0,0.1,0.2") from None


def _names(text: str) -> list[str]:
    from .detection import DETECTORS

    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [n for n in names if n not in DETECTORS]
    if bad:
        raise argparse.ArgumentTypeError(f"{text!r}: unknown detector(s) {bad}; expected names from {DETECTORS}")
    return names


def _compare(text: str) -> list[tuple[str, Optional[float]]]:
    """``--compare``: detector names, each optionally ``@MIN_FACE`` (the same detector looking for smaller faces)."""
    from .detection import DETECTORS

    out: list[tuple[str, Optional[float]]] = []
    for item in (v.strip() for v in text.split(",") if v.strip()):
        name, at, size = item.partition("@")
        if name not in DETECTORS:
            raise argparse.ArgumentTypeError(f"{text!r}: unknown detector {name!r}; expected names from {DETECTORS}, "
                                             "each optionally @MIN_FACE, e.g. blazeface,yunet@6")
        try:
            min_face = float(size) if at else None
        except ValueError:
            min_face = math.nan
        if min_face is not None and not (math.isfinite(min_face) and 2 <= min_face <= 1024):
            raise argparse.ArgumentTypeError(f"{text!r}: {item!r}; expected NAME@MIN_FACE with a face side of 2 to "
                                             "1024 pixels, e.g. yunet@6")
        out.append((name, min_face))
    return out


def spec_label(spec: "DetectorSpec", min_face: float) -> str:
    """A detector's name in the comparison, with ``@MIN_FACE`` where it looks for another face size than the run's."""
    return spec.name if spec.min_face == min_face else f"{spec.name}@{spec.min_face:g}"


def baseline_index(specs: Sequence["DetectorSpec"], min_face: float) -> int:
    """The comparison's baseline: BlazeFace at the run's ``min_face``, else the first BlazeFace, else the
    ``--detector`` (``specs[0]``)."""
    blaze = [i for i, s in enumerate(specs) if s.name == "blazeface"]
    return next((i for i in blaze if specs[i].min_face == min_face), blaze[0] if blaze else 0)


def _name(text: str) -> str:
    from .detection import DETECTORS

    names = _names(text)
    if len(names) != 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected one detector name from {DETECTORS} "
                                         "(more detectors go in --compare)")
    return names[0]


def build_parser() -> argparse.ArgumentParser:
    ap = CliParser(
        prog="fsrfer-crowd-bench",
        description="Seeded synthetic crowd benchmark: detection recall and expression accuracy per face-size bin, "
                    "false faces on real photos per score threshold, and frames/s on a 50-face scene, for one "
                    "detector or several side by side (each in its own process). Writes a JSON report.")
    ap.add_argument("--data", type=cli_path, default=None,
                    help=f"folder with fer2013.npz and ferplus_labels.npz (default {DEFAULT_DATA} when present; "
                         "without it the public-domain astronaut face is used and accuracy is skipped)")
    ap.add_argument("--no-data", action="store_true", help="use the public-domain face even when the data exists")
    ap.add_argument("--out", type=cli_path, default=None, help="JSON report to write, e.g. results/crowd/bench.json")
    ap.add_argument("--table", type=cli_path, default=None,
                    help="print the Markdown tables of an existing report JSON and exit")
    ap.add_argument("--scenes", type=int, default=20, help="number of scenes (default 20)")
    ap.add_argument("--faces", type=int, default=50, help="faces per scene (default 50)")
    ap.add_argument("--size", type=_size, default=(480, 640), help="frame size WIDTHxHEIGHT (default 640x480)")
    ap.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    ap.add_argument("--model", default=None, help="expression model .onnx/.engine (default: the shipped model)")
    ap.add_argument("--detector", default="auto", type=_name,
                    help="the detector reported at the top level: auto | yunet | blazeface | opencv (default auto)")
    ap.add_argument("--compare", type=_compare, default=[],
                    help="more detectors to run side by side at their defaults, e.g. blazeface,opencv (each in its "
                         "own process; speed in interleaved rounds); NAME@MIN_FACE looks for faces from MIN_FACE "
                         "pixels, e.g. yunet@6 beside the default yunet (the --detector's own name keeps its "
                         "--min-score, --margin and --detector-model)")
    ap.add_argument("--detector-model", default=None, help="the --detector's .onnx (default: the shipped one)")
    ap.add_argument("--min-face", type=float, default=DEFAULT_MIN_FACE,
                    help=f"smallest face the detectors look for, pixels (default {DEFAULT_MIN_FACE:g})")
    ap.add_argument("--margin", type=float, default=None, help="crop margin of the --detector (default: the "
                    "detector's, as fsrfer-crowd)")
    ap.add_argument("--min-score", type=float, default=None,
                    help="score threshold of the --detector (default: the detector's, as fsrfer-crowd)")
    ap.add_argument("--margins", type=_floats, default=[],
                    help="extra crop margins to report accuracy for, e.g. -0.1,0,0.1,0.2 (a sweep)")
    ap.add_argument("--score-sweep", type=_floats, default=list(SWEEP_SCORES),
                    help="detection score thresholds at which to run each detector again, for recall and accuracy "
                         "against false faces on scikit-image's sample photos (default "
                         + ",".join(f"{t:g}" for t in SWEEP_SCORES) + "; empty: skip)")
    ap.add_argument("--fps-repeats", type=int, default=3, help="timed frames per round for frames/s (0: skip; default 3)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default 3)")
    ap.add_argument("--fps-size", type=_size, default=(480, 640),
                    help="frame size WIDTHxHEIGHT of the 50-face scene timed for frames/s (default 640x480)")
    ap.add_argument("--big-photo", type=_floats, default=[],
                    help="also time each detector on photos of these many megapixels, each in a fresh process "
                         "whose peak memory is recorded, e.g. 12,48 (default: none)")
    ap.add_argument("--threads", type=int, default=None,
                    help=f"ONNX Runtime intra-op threads, 1 to {MAX_THREADS} (default, or 0: ONNX Runtime's own, one "
                         "per physical core, or the CPUs a CPU set or quota leaves this process)")
    ap.add_argument("--save-scene", type=cli_path, default=None,
                    help="also write the first scene as a PNG, once the run has succeeded (only with --no-data: "
                         "never FER faces in files you share)")
    return ap


def report_tables(path: Path) -> str:
    """The Markdown tables of a report written by ``--out`` (as ``--table`` prints them).

    Raises:
        InputError: ``path`` cannot be read, or is not such a report.
    """
    try:
        report = loads_json(path.read_text())  # a key given twice: refused, not its last value
        if not isinstance(report, dict):
            raise ValueError(f"it holds a JSON {type(report).__name__}, not an object")
        text = markdown_table(report)
        if report.get("comparison"):
            text += "\n\n" + comparison_table(report) + "\n\n" + comparison_summary(report)
        if sweep_table(report):
            text += "\n\n" + sweep_table(report)
    # any JSON: any shape; RecursionError: nested too deep
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise InputError(f"{path} is not a readable benchmark report ({exc}); expected a JSON report written by "
                         "fsrfer-crowd-bench --out") from exc
    return text


def check_options(args: argparse.Namespace) -> None:
    """InputError for an option value out of range (before any work)."""
    if args.scenes < 1 or args.faces < 1 or args.rounds < 1 or args.fps_repeats < 0:
        raise InputError(f"--scenes {args.scenes}, --faces {args.faces}, --rounds {args.rounds}, --fps-repeats "
                         f"{args.fps_repeats}; expected scenes, faces and rounds >= 1, fps-repeats >= 0")
    if args.seed < 0:
        raise InputError(f"--seed {args.seed}; expected an integer >= 0")
    if args.no_data and args.data is not None:  # one would silently win over the other
        raise InputError(f"--no-data with --data {args.data}; expected one of them: --data DIR to use that folder's "
                         "FER faces, --no-data for the public-domain face")
    defaults = build_parser()
    if args.fps_repeats == 0 and args.fps_size != defaults.get_default("fps_size"):
        raise InputError(f"--fps-size {args.fps_size[1]}x{args.fps_size[0]} with --fps-repeats 0, which skips the "
                         "frames/s timing it sizes; drop --fps-size, or give --fps-repeats N >= 1")
    if args.fps_repeats == 0 and args.rounds != defaults.get_default("rounds"):
        raise InputError(f"--rounds {args.rounds} with --fps-repeats 0, which skips the frames/s timing that runs in "
                         "rounds; drop --rounds, or give --fps-repeats N >= 1")
    for m in args.margins:
        check_margin(m, "--margins")
    if args.margin is not None:  # the --detector's: refused here, not by the worker after the data has loaded
        check_margin(args.margin, "--margin")
    if args.min_score is not None and not 0 <= args.min_score <= 1:
        raise InputError(f"--min-score {args.min_score}; expected a detection score threshold in [0, 1]")
    if not (math.isfinite(args.min_face) and args.min_face >= 1):  # inf: each worker would refuse it, as min_face=
        raise InputError(f"--min-face {args.min_face}; expected a face side of at least 1 pixel (a finite number)")
    check_threads(args.threads)  # as fsrfer-crowd and fsrfer-demo
    bad_scores = [t for t in args.score_sweep if not 0 <= t <= 1]
    if bad_scores:
        raise InputError(f"--score-sweep {bad_scores}; expected detection score thresholds in [0, 1]")
    bad_mp = [mp for mp in args.big_photo if not 0 < mp <= MAX_FRAME_PIXELS / 1e6]
    if bad_mp:
        raise InputError(f"--big-photo {bad_mp}; expected megapixels in (0, {MAX_FRAME_PIXELS / 1e6:.1f}]")


def check_table_alone(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """InputError where --table, which only prints an existing report, comes with an option of a run (ignored)."""
    given = [a.option_strings[0] for a in parser._actions
             if a.option_strings and a.dest not in ("table", "help") and getattr(args, a.dest) != a.default]
    if given:
        raise InputError(f"--table with {', '.join(given)}; --table prints the tables of an existing report and runs "
                         f"nothing, so {'that option' if len(given) == 1 else 'those options'} would be ignored; "
                         f"drop {'it' if len(given) == 1 else 'them'}, or drop --table to run the benchmark")


@cli_main
def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.table is not None:
        try:
            check_table_alone(parser, args)
            print(report_tables(args.table))
        except InputError as exc:
            print(f"fsrfer-crowd-bench: error: {one_line(exc)}", file=sys.stderr)
            return 2
        return 0
    if args.out is None:
        parser.error("--out is required (or --table REPORT.json)")
    try:
        with sigterm_interrupts():
            check_options(args)
            data_dir = args.data if args.data is not None else DEFAULT_DATA
            use_data = not args.no_data and (args.data is not None or (DEFAULT_DATA / "fer2013.npz").is_file())
            inputs = [("--data", f if use_data else None) for f in data_files(data_dir)]
            check_output_path(args.out, "--out")
            if args.save_scene is not None:
                check_image_name(args.save_scene)
                check_output_path(args.save_scene, "--save-scene")
            inputs += [("--model", resolve_model_path(args.model)), ("--detector-model", args.detector_model)]
            inputs += detector_model_inputs()  # read whatever --detector-model says
            check_distinct_files([*inputs, ("--save-scene", args.save_scene), ("--out", args.out)], inputs=len(inputs),
                                 json_outputs=("--out",))
            pool = load_test_faces(data_dir) if use_data else public_domain_faces()  # fails here, not in a worker
            if args.save_scene is not None and pool.labelled:
                raise InputError("--save-scene writes FER faces into a file; use it with --no-data only")
            main_name = _resolve(args.detector)
            specs = [DetectorSpec(main_name, args.min_face, args.min_score, args.margin, args.detector_model)]
            for n, mf in args.compare:
                spec = DetectorSpec(_resolve(n), args.min_face if mf is None else mf)
                if spec.name == main_name:  # the --detector itself at another face size: its settings otherwise
                    spec = dataclasses.replace(specs[0], min_face=spec.min_face)
                if (spec.name, spec.min_face) not in {(s.name, s.min_face) for s in specs}:
                    specs.append(spec)
            job = Job(str(data_dir) if use_data else None, args.model, threads_option(args.threads), args.scenes,
                      args.faces, args.size, args.seed, tuple(args.margins), tuple(args.score_sweep), args.fps_repeats,
                      args.fps_size)
            load_start = _load()
            reports = compare(specs, job, args.rounds, args.big_photo)
            report = reports[0]
            if len(specs) > 1:
                base = baseline_index(specs, args.min_face)
                report["comparison"] = {  # the baseline by its label: blazeface@6 is not the row "blazeface"
                    "baseline": spec_label(specs[base], args.min_face),
                    "rounds": args.rounds if job.fps_repeats > 0 else 0,  # --fps-repeats 0: no speed round ran
                    "load_average_at_start": load_start,
                    "load_average_at_end": _load(),
                    "detectors": [{"label": spec_label(s, args.min_face), "detector": r["config"]["detector"], "min_face": s.min_face,
                                   "min_score": r["config"]["detector_min_score"], "margin": r["config"]["margin"],
                                   "detect_speedup": sp, "report": dict(r)}
                                  for s, r, sp in zip(specs, reports, _speedups(reports, base))]}
            report["command"] = "fsrfer-crowd-bench " + shlex.join(sys.argv[1:] if argv is None else argv)  # as typed
            if args.save_scene is not None:  # only once the run has succeeded
                write_image(args.save_scene, make_scenes(pool, 1, args.seed, args.faces, args.size)[0].image)
            try:
                write_json(args.out, report)
            except BaseException:  # failed or interrupted: no scene without its report (all or nothing)
                if args.save_scene is not None:
                    with contextlib.suppress(OSError):
                        args.save_scene.unlink()
                raise
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the worker processes have been ended
        print("fsrfer-crowd-bench: interrupted; no report was written", file=sys.stderr)
        return 130
    except FsrferError as exc:
        print(f"fsrfer-crowd-bench: error: {one_line(exc)}", file=sys.stderr)
        return 2
    det_rep = report["detection"]
    print("recall per size bin: " + ", ".join(f"{b['bin']}px {b['recall']}" for b in det_rep["bins"]))
    if report["accuracy"]:
        print("end-to-end accuracy per size bin: " + ", ".join(
            f"{b['bin']}px {b['accuracy']}" for b in report["accuracy"]["bins"]))
    if "speed" in report:
        s = report["speed"]
        print(f"speed: {s['fps']} frames/s ({s['frame_size'][1]}x{s['frame_size'][0]}, {s['faces']} faces); "
              f"pipelined stream {s['fps_stream_pipelined']} frames/s")
    if "comparison" in report:
        print(comparison_table(report))
    print(f"wrote {args.out}")
    return 0


def _resolve(name: str) -> str:
    """``auto`` as :func:`create_detector` resolves it here."""
    if name != "auto":
        return name
    return "yunet" if optional_module("onnxruntime") is not None else "opencv"


if __name__ == "__main__":
    sys.exit(main())
