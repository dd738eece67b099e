"""fsrfer-demo: find the faces in one image and recognise their expressions at several resolutions.

Runs on a fresh machine with no data set: without an image argument it uses scikit-image's
public-domain ``astronaut`` photograph (pip extra ``demo``). Each detected face is cropped, brought to
the model's input size, and down-sampled by each factor, then given to the recogniser as that small crop, as a
camera would give a small face (protocol (b) of the result tables: at x4 a face has 12 pixels across; the
recogniser resizes it); the prediction, its confidence at that size and the latency of each factor's batch are
printed, and an annotated PNG shows the boxes and the low-resolution crops.

Example::

    fsrfer-demo --factors 1,2,4,8 --out demo.png
    fsrfer-demo crowd.jpg --model engines/fsrfer.int8-u8s8.onnx --json demo.json
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .confidence import SUFFIX as SCORES_SUFFIX
from .crowd import DEFAULT_MIN_FACE, MARGIN_RANGE, check_margin, crop_face, default_margin
from .crowd_cli import THREADS_HELP, check_shared_options, count_faces, threads_option
from .detection import DEFAULT_SCORES, DETECTORS, create_detector, detector_model_inputs, detector_settings
from .detection.base import as_rgb_frame
from .detection.frames import check_image_name, read_image, write_image
from .errors import READER_GONE, CliParser, FsrferError, InputError, cli_main, expand_home, one_line, sigterm_interrupts
from .fileio import check_distinct_files, check_output_path, write_json
from .preprocessing import shrink
from .recognizer import Prediction, Recognizer, resolve_model_path
from .sidecars import besides

logger = logging.getLogger(__name__)

DEFAULT_FACTORS = (1, 2, 4, 8)
SAMPLE_NAME = "astronaut"
SAMPLE_SOURCE = "scikit-image skimage.data.astronaut() (NASA photograph, public domain)"
#: The ``"schema"`` of the ``--json`` document (docs/crowd.md, "The JSON documents"): a new key keeps it; a key
#: renamed, removed or given another type or meaning takes the number after the slash up.
SCHEMA = "fsrfer-demo/1"


@dataclasses.dataclass(frozen=True)
class FactorResult:
    """One face at one down-sample factor."""

    factor: int
    pixels: int  # the face's side length after down-sampling, in pixels
    prediction: Prediction
    crop: np.ndarray = dataclasses.field(compare=False, repr=False)  # the low-resolution crop (uint8)


@dataclasses.dataclass(frozen=True)
class DemoFace:
    box: tuple[float, float, float, float]
    score: float
    results: tuple[FactorResult, ...]


def sample_image() -> np.ndarray:
    """scikit-image's public-domain astronaut photograph, 512x512x3 uint8 RGB.

    Raises:
        BackendUnavailable: scikit-image is not installed (pip extra ``demo``).
    """
    from .errors import require

    data = require("skimage.data", "demo", "the sample image")
    return np.ascontiguousarray(data.astronaut())


def run_demo(frame: np.ndarray, rec: Recognizer, detector: Any, factors: Sequence[int] = DEFAULT_FACTORS,
             margin: Optional[float] = None, repeats: int = 5) -> tuple[list[DemoFace], dict[str, Any]]:
    """Detect faces in ``frame`` and recognise each at every factor.

    Args:
        frame: HxWx3 uint8 RGB image.
        rec: the recogniser.
        detector: a :class:`fsrfer_edge.detection.FaceDetector`.
        factors: down-sample factors relative to the model's input size (1 = full resolution).
        margin: extra border around each detector box, as a fraction of the box side, in
            :data:`~fsrfer_edge.crowd.MARGIN_RANGE` (None: the detector's, as the crowd analyzer).
        repeats: timed repetitions per factor (the median is reported).

    Returns:
        The faces with their per-factor results, and timings in ms
        (``{"detect_ms": ..., "predict_ms": {factor: ...}}``).

    Raises:
        InputError: a factor or ``repeats`` is not an integer >= 1, a margin out of range, or the frame is not an
            HxWx3 uint8 image.
    """
    bad = [f for f in factors if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 1]
    if bad or not factors:
        raise InputError(f"factors {list(factors)}: expected integers >= 1, e.g. 1,2,4,8")
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise InputError(f"repeats={repeats!r}; expected an integer >= 1 (timed runs per factor, the median "
                         "reported)")
    check_factors(factors, rec.info.preprocessing.input_size, f"factors {list(factors)}")  # before detecting
    frame = as_rgb_frame(frame)
    margin = default_margin(detector) if margin is None else check_margin(margin)
    t0 = time.perf_counter()
    detections = detector.detect(frame)
    timings: dict[str, Any] = {"detect_ms": 1e3 * (time.perf_counter() - t0), "predict_ms": {}}
    pre = rec.info.preprocessing
    # The faces as the camera gave them, with the recogniser's corrections but no contrast floor yet: predict()
    # applies it to each simulated crop.
    pixels = (pre.to_pixels([crop_face(frame, d.box, margin) for d in detections], raise_low_contrast=False,
                            corrections=rec.corrections)
              if detections else np.zeros((0, pre.input_size, pre.input_size), np.uint8))
    per_factor: dict[int, tuple[list[Prediction], np.ndarray]] = {}
    for f in factors:
        lr = shrink(pixels, int(f))
        crops = list(np.moveaxis(lr, 1, -1))  # (N, C, h, w) pixels -> hxwxC faces
        preds = rec.predict(crops) if crops else []
        times = []
        for _ in range(int(repeats) if len(lr) else 0):
            t = time.perf_counter()
            rec.predict(crops)
            times.append(1e3 * (time.perf_counter() - t))
        timings["predict_ms"][int(f)] = float(np.median(times)) if times else 0.0
        per_factor[int(f)] = (preds, np.stack(crops) if crops else lr)
    faces = []
    for i, d in enumerate(detections):
        results = tuple(
            FactorResult(f, max(1, round(pre.input_size / f)), per_factor[f][0][i], per_factor[f][1][i][..., 0]
                         if per_factor[f][1][i].shape[-1] == 1 else per_factor[f][1][i])
            for f in per_factor
        )
        faces.append(DemoFace(tuple(float(v) for v in d.box), float(d.score), results))  # type: ignore[arg-type]
    return faces, timings


def check_factors(factors: Sequence[int], input_size: int, what: str = "factors") -> None:
    """Refuse a factor that leaves less than one pixel of the model's ``input_size`` faces (``what`` names the
    factors in the message, e.g. ``"--factors 1,49"``).

    Raises:
        InputError: the first such factor.
    """
    for f in factors:
        if f > input_size:
            raise InputError(f"{what}: {f} leaves less than one pixel of the model's {input_size}x{input_size} input; "
                             f"expected factors from 1 to {input_size}")


def report_lines(faces: Sequence[DemoFace], timings: dict[str, Any], source: str, frame_shape: tuple[int, ...],
                 detector_name: str) -> list[str]:
    """The printed report: one line per face and factor, with latencies."""
    h, w = frame_shape[:2]
    lines = [f"image: {source}, {w}x{h}",
             f"detector {detector_name}: {count_faces(len(faces))} in {timings['detect_ms']:.1f} ms"]
    for i, face in enumerate(faces, 1):
        x0, y0, x1, y1 = face.box
        lines.append(f"face {i}: box ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}), {x1 - x0:.0f}x{y1 - y0:.0f} px, "
                     f"detector score {face.score:.2f} (det_score)")
        for r in face.results:
            conf = r.prediction.confidence
            lines.append(f"  x{r.factor:<2d} ({r.pixels:2d} px face): {r.prediction.label:9s} {r.prediction.score:.2f}"
                         + ("" if conf is None else f"  confidence {conf:.2f}"))
    for f, ms in timings["predict_ms"].items() if faces else ():  # no face, nothing was timed
        lines.append(f"latency x{f}: {ms:.2f} ms for {count_faces(len(faces))} (median, Recognizer.predict)")
    return lines


def no_confidence_line(model_path: Path) -> str:
    """The printed line that says why the report has no confidence column: the model has no score calibration
    (``NAME.scores.json``, looked for beside it and among the package's files). The file named is the one fsrfer-export
    writes for it: NAME of the export (``mymodel`` of ``mymodel.fp32.onnx`` or of one of its engines), among the names
    it is looked for under."""
    from .sidecars import model_names

    own = [p.name for p in besides(model_path, SCORES_SUFFIX)][:len(model_names(Path(model_path)))]
    name = own[-1]  # its own names come first: the model's, then that of the export it is a file of
    return (f"no confidence column: no score calibration found for this model ({name} beside it); "
            "fsrfer-export --eval-data writes one beside the models it exports")


def annotate(frame: np.ndarray, faces: Sequence[DemoFace], tile: int = 96) -> np.ndarray:
    """The frame with boxes and x1 labels, and under it one row per face of its low-resolution crops
    (enlarged with nearest-neighbour so their pixels show) labelled with each factor's prediction."""
    from .errors import require

    pil = require("PIL.Image", "demo", "drawing the annotated image")
    draw_mod = require("PIL.ImageDraw", "demo", "drawing the annotated image")
    img = pil.fromarray(frame).convert("RGB")
    d = draw_mod.Draw(img)
    for i, face in enumerate(faces, 1):
        x0, y0, x1, y1 = face.box
        d.rectangle([x0, y0, x1, y1], outline=(255, 220, 0), width=max(2, img.width // 256))
        top = face.results[0].prediction if face.results else None
        text = f"{i}: {top.label} {top.score:.2f}" if top else str(i)
        d.rectangle([x0, max(0, y0 - 14), x0 + 7 * len(text) + 4, max(14, y0)], fill=(0, 0, 0))
        d.text((x0 + 2, max(0, y0 - 13)), text, fill=(255, 220, 0))
    nf = max((len(f.results) for f in faces), default=0)
    row_h = tile + 28
    width = max(img.width, nf * (tile + 8) + 48)
    canvas = pil.new("RGB", (width, img.height + row_h * len(faces)), (255, 255, 255))
    canvas.paste(img, (0, 0))
    d = draw_mod.Draw(canvas)
    for i, face in enumerate(faces):
        y = img.height + i * row_h + 4
        d.text((4, y + tile // 2), f"{i + 1}", fill=(0, 0, 0))
        for j, r in enumerate(face.results):
            x = 32 + j * (tile + 8)
            canvas.paste(pil.fromarray(r.crop).resize((tile, tile), pil.NEAREST).convert("RGB"), (x, y))
            d.text((x, y + tile + 2), f"x{r.factor} {r.prediction.label} {r.prediction.score:.2f}", fill=(0, 0, 0))
    return np.asarray(canvas)


def faces_to_dict(faces: Sequence[DemoFace], timings: dict[str, Any], source: str) -> dict[str, Any]:
    return {
        "image": source,
        "timings_ms": {"detect": timings["detect_ms"], "predict": {str(k): v for k, v in timings["predict_ms"].items()}},
        "faces": [
            {"box": list(f.box), "det_score": f.score,
             "factors": {str(r.factor): {"face_pixels": r.pixels, "label": r.prediction.label,
                                         "expr_score": r.prediction.score, "confidence": r.prediction.confidence,
                                         "probs": [float(p) for p in r.prediction.probs]} for r in f.results}}
            for f in faces
        ],
    }


def _factors(text: str) -> tuple[int, ...]:
    """``--factors``'s type (argparse names the option in front of the message)."""
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers, e.g. 1,2,4,8") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers >= 1, e.g. 1,2,4,8")
    twice = sorted({v for v in vals if vals.count(v) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"{text!r} lists {', '.join(map(str, twice))} more than once; expected "
                                         "distinct factors, e.g. 1,2,4,8")
    return vals


def check_options(args: argparse.Namespace) -> None:
    """Refuse, before any work, option values argparse's types let through; each message names its option.

    Raises:
        InputError: the first bad option.
    """
    if not args.out.strip():  # an unset shell variable: Path("") is the current folder
        raise InputError(f"--out {args.out!r} is an empty path; expected an image file to write, e.g. demo.png")
    if Path(args.out).is_dir():  # before its suffix is judged: "cannot write an image named outdir" says too little
        raise InputError(f"--out {args.out} is a folder; expected an image file to write, e.g. "
                         f"{Path(args.out) / 'demo.png'}")
    try:
        check_image_name(args.out)
    except InputError as exc:
        raise InputError(f"--out {args.out}: {exc}") from None
    check_shared_options(args)  # --min-score, --min-face, --margin, --sessions, --threads: as fsrfer-crowd does


@cli_main
def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = CliParser(prog="fsrfer-demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", nargs="?", type=expand_home,
                    help="an RGB image (PNG/JPEG); default: scikit-image's astronaut")
    ap.add_argument("--model", type=expand_home, help="ONNX model or TensorRT engine (default: the shipped model)")
    ap.add_argument("--detector", choices=DETECTORS, default="auto",
                    help="face detector (default auto: YuNet when onnxruntime is installed, else OpenCV)")
    ap.add_argument("--factors", type=_factors, default=DEFAULT_FACTORS, help="down-sample factors, e.g. 1,2,4,8")
    # The same defaults as fsrfer-crowd and CrowdAnalyzer (chosen on the crowd benchmark's score sweep).
    ap.add_argument("--min-score", type=float, default=None, help="detector score threshold (default: the "
                    "detector's, as fsrfer-crowd: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_SCORES.items()) + ")")
    ap.add_argument("--min-face", type=float, default=DEFAULT_MIN_FACE, help="smallest face side to look for, in "
                    f"pixels (default {DEFAULT_MIN_FACE:g}, as fsrfer-crowd; smaller costs detection time)")
    ap.add_argument("--margin", type=float, default=None, help="crop margin around each box, fraction of its side, "
                    f"from {MARGIN_RANGE[0]} to {MARGIN_RANGE[1]} (default: the detector's, as fsrfer-crowd)")
    ap.add_argument("--out", type=expand_home, default="demo.png",
                    help="annotated image to write, .png or .jpg (default demo.png)")
    ap.add_argument("--json", type=expand_home, help="also write the predictions and timings as JSON")
    ap.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    ap.add_argument("--sessions", type=int, default=None,
                    help="expression model on the CPU: sessions that split each factor's faces between them "
                         "(Recognizer(sessions=); faster for INT8 models on batches, not for one face)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    written: list[str] = []  # outputs of this run already in place, removed if it is interrupted before the end
    try:
        with sigterm_interrupts():  # a stopped run cleans up after itself, as after Ctrl-C
            check_options(args)  # refused before any work, as fsrfer-crowd does
            check_output_path(args.out, "--out")
            if args.json is not None:  # an empty --json too: refused, not ignored
                check_output_path(args.json, "--json")
            model = resolve_model_path(args.model)
            inputs = [("the input", args.image), ("--model", model), *detector_model_inputs()]
            check_distinct_files(inputs + [("--out", args.out), ("--json", args.json)], inputs=len(inputs))
            frame = as_rgb_frame(sample_image() if args.image is None else read_image(args.image))
            source = SAMPLE_SOURCE if args.image is None else str(args.image)
            with Recognizer(model, threads=threads_option(args.threads), spinning=False,
                            sessions=args.sessions) as rec:
                check_factors(args.factors, rec.info.preprocessing.input_size,
                              "--factors " + ",".join(map(str, args.factors)))  # before the detector runs
                # --threads for the detector too, as fsrfer-crowd does (OpenCV's cascade takes none)
                detector_threads = threads_option(args.threads) if args.detector != "opencv" else None
                with create_detector(args.detector, min_face=args.min_face, min_score=args.min_score,
                                     threads=detector_threads) as det:
                    margin = default_margin(det) if args.margin is None else args.margin
                    faces, timings = run_demo(frame, rec, det, args.factors, margin)
                    name = det.name
                    settings = detector_settings(det, margin)
                calibrated, model_path = rec.score_calibration is not None, rec.model_path
                classes = list(rec.classes)  # the order of each answer's "probs"
                recognizer = {"backend": rec.backend.name, "model": str(rec.model_path),
                              "sessions": getattr(rec.backend, "sessions", 1),
                              "threads": getattr(rec.backend, "threads", None)}
            for line in report_lines(faces, timings, source, frame.shape, name):
                print(line)
            if not faces:
                print("no faces found; the PNG shows the image unannotated")
            elif not calibrated:  # the confidence column is missing: say why, not leave it to be noticed
                print(no_confidence_line(model_path))
            write_image(args.out, annotate(frame, faces))
            written.append(args.out)
            print(f"wrote {args.out}")
            if args.json is not None:
                write_json(args.json, dict(faces_to_dict(faces, timings, source), detector=settings,
                                           recognizer=recognizer, classes=classes, schema=SCHEMA))
                print(f"wrote {args.json}")
            written.clear()  # the run is complete
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the outputs are all or nothing
        _discard(written)
        print("fsrfer-demo: interrupted; the partial output was discarded", file=sys.stderr)
        return 130
    except FsrferError as exc:
        _discard(written)
        print(f"fsrfer-demo: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except READER_GONE:  # stdout's reader went (fsrfer-demo | head -1): all or nothing too; cli_main ends quietly
        _discard(written)
        raise
    return 0


def _discard(paths: Sequence[str]) -> None:
    """Remove the outputs a failed or interrupted run already wrote (the image without its JSON)."""
    for path in paths:
        with contextlib.suppress(OSError):
            Path(path).unlink()


if __name__ == "__main__":
    sys.exit(main())
