"""fsrfer-crowd: find every face in an image or video, recognise its expression, draw boxes and labels.

Examples::

    fsrfer-crowd station.jpg --out annotated.png --json results.json
    fsrfer-crowd platform.mp4 --out annotated.mp4 --max-frames 300
    fsrfer-crowd 0 --out camera.mp4 --max-frames 100          # camera index 0 (OpenCV)
    fsrfer-crowd 0 --out camera.mp4                           # until Ctrl-C (or SIGTERM)

The input kind follows its name: a number is a camera, an image suffix (.png, .jpg, ...) an image,
anything else a video. Images need Pillow (or OpenCV); videos and cameras need OpenCV (pip extra
``crowd``). Exit status: 0 on success (also when no face is found), 2 on bad input or a missing library,
130 when interrupted (Ctrl-C) or stopped (SIGTERM): a camera recording ends after the frame in hand and its video
and JSON are written (a second signal ends it at once, discarding it); the partial output of an image or a video
file is discarded.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from .backends.onnxruntime_backend import MAX_THREADS
from .crowd import (DEFAULT_MIN_FACE, DEFAULT_TRACK, MARGINS, CrowdAnalyzer, CrowdResult, FaceResult, TrackLog,
                    VideoFrames, check_margin, own_probs, video_frames)
from .detection import (DEFAULT_SCORES, DETECTORS, MAX_FRAME_PIXELS, create_detector, detector_model_inputs,
                        detector_settings)
from .detection.frames import (
    is_image_file,
    optional_module,
    read_image,
    require_cv2,
    WRITABLE_IMAGES,
    write_image,
)
from .detection.pyramid import check_number
from .errors import (CliParser, FsrferError, InputError, WriteError, cli_main, cli_path, expand_home, one_line,
                     signal_handled)
from .fileio import (check_distinct_files, check_output_path, existing_output_problem, file_problem, set_default_mode,
                     short_name, write_json)
from .groups import GroupTally
from .tracking import (DEFAULT_COAST, DEFAULT_CONFIRM, DEFAULT_HALF_LIFE, DEFAULT_MAX_MISSED, DEFAULT_MOTION,
                       FaceTracker, check_half_life)

logger = logging.getLogger(__name__)

#: The ``"schema"`` of the ``--json`` document (docs/crowd.md, "The JSON documents"): a new key keeps it; a key
#: renamed, removed or given another type or meaning takes the number after the slash up.
SCHEMA = "fsrfer-crowd/1"
#: Output suffixes for annotated videos and the OpenCV codec used for each.
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
#: Box colour per class (RGB).
COLOURS = {"angry": (230, 40, 40), "disgust": (120, 170, 20), "fear": (160, 60, 220), "happy": (250, 200, 0),
           "sad": (40, 110, 240), "surprise": (0, 210, 210), "neutral": (225, 225, 225)}


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------
def count_faces(n: int) -> str:
    """``"1 face"``, ``"2 faces"``, ``"0 faces"``."""
    return plural(n, "face")


def plural(n: int, noun: str) -> str:
    """``"1 frame"``, ``"2 frames"``, ``"0 frames"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def annotate(frame: np.ndarray, result: CrowdResult, scale: int = 1, labels: bool = True,
             coasted: Optional[Collection[int]] = None) -> np.ndarray:
    """The frame (enlarged ``scale`` times, nearest neighbour) with a box and label per face, a one-line
    group summary at the top and a legend at the bottom (box colour per expression; the number after a
    label is the expression's probability, not the detector's score). In a tracked stream each label starts with
    its face's track id (``#12``), and a face the detector missed in this frame (coasted, ``detected`` False) has
    a dashed box. In a frame the detector skipped (``detect_every``; the result's ``detector_ran`` False) a face is
    drawn as in the last frame it ran on, so that boxes do not blink from frame to frame: dashed if its track is in
    ``coasted`` (the tracks coasted there), else solid.

    Raises:
        BackendUnavailable: Pillow is not installed.
    """
    pil = optional_module("PIL.Image")
    draw_mod = optional_module("PIL.ImageDraw")
    font_mod = optional_module("PIL.ImageFont")
    if pil is None or draw_mod is None or font_mod is None:
        from .errors import BackendUnavailable

        raise BackendUnavailable("drawing boxes needs Pillow: pip install pillow (or pip install -e '.[crowd]')")
    img = pil.fromarray(frame)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), pil.NEAREST)
    draw = draw_mod.Draw(img)
    size = max(10, min(img.width, img.height) // 60)
    try:
        font = font_mod.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed-size bitmap font
        font = font_mod.load_default()
    for face in result.faces:
        colour = COLOURS.get(face.label, (255, 255, 255))
        x0, y0, x1, y1 = (v * scale for v in face.box)
        if (face.detected is False) if result.detector_ran else face.track_id in (coasted or ()):
            _dashed_rectangle(draw, (x0, y0, x1, y1), colour, max(1, scale), dash=max(2, 2 * scale))
        else:
            draw.rectangle([x0, y0, x1, y1], outline=colour, width=max(1, scale))
        if labels:
            text = face_caption(face)
            tx, ty = x0, max(0.0, y0 - size - 2)
            box = draw.textbbox((tx, ty), text, font=font)
            draw.rectangle(box, fill=(0, 0, 0))
            draw.text((tx, ty), text, fill=colour, font=font)
    s = result.summary
    counts = ", ".join(f"{c} {n}" for c, n in s.counts.items() if n)
    head = count_faces(s.n_faces) + (f": {counts}" if counts else "")
    box = draw.textbbox((4, 4), head, font=font)
    draw.rectangle(box, fill=(0, 0, 0))
    draw.text((4, 4), head, fill=(255, 255, 255), font=font)
    _legend(draw, font, size, img.width, img.height, result.classes, labels)
    return np.asarray(img)


def shares_text(shares: Optional[dict[str, float]]) -> str:
    """The group's estimated shares for the printed line (``"; estimated shares (corrected for face sizes): neutral
    41%, happy 30%"``), largest first, those under half a percent left out; empty without shares."""
    if not shares:
        return ""
    parts = [f"{c} {100 * p:.0f}%" for c, p in sorted(shares.items(), key=lambda kv: -kv[1]) if p >= 0.005]
    return "; estimated shares (corrected for face sizes): " + ", ".join(parts)


def face_caption(face: FaceResult) -> str:
    """A face's label on the annotated frame: its expression and that expression's probability, after its track id
    in a tracked stream (``"#12 happy 0.91"``)."""
    text = f"{face.label} {face.probs[face.index]:.2f}"
    return text if face.track_id is None else f"#{face.track_id} {text}"


def _dashed_rectangle(draw: Any, box: Tuple[float, float, float, float], colour: Tuple[int, int, int], width: int,
                      dash: int) -> None:
    """A rectangle outline drawn as dashes of ``dash`` pixels with gaps as long (Pillow draws solid lines only)."""
    x0, y0, x1, y1 = box
    for (ax, ay), (bx, by) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = max(abs(bx - ax), abs(by - ay))
        steps = max(1, int(length // dash))
        for k in range(0, steps, 2):
            t0, t1 = k / steps, min(1.0, (k + 1) / steps)
            draw.line([(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                      fill=colour, width=width)


LegendItem = Tuple[str, Optional[Tuple[int, int, int]], float]  # text, swatch colour (None: text only), width


def legend_lines(textlength: Callable[[str], float], size: int, width: int, classes: Sequence[str],
                 labels: bool) -> list[list[LegendItem]]:
    """The legend's items, wrapped into lines that fit ``width`` pixels (``textlength``: a text's width)."""
    items: list[tuple[str, Optional[tuple[int, int, int]]]] = [(c, COLOURS.get(c, (255, 255, 255))) for c in classes]
    if labels:
        items.append(("label p = expression probability", None))
    lines: list[list[LegendItem]] = [[]]
    x = 4.0
    for name, colour in items:
        w = textlength(name) + (size + 2 if colour is not None else 0) + 8
        if lines[-1] and x + w > width - 4:
            lines.append([])
            x = 4.0
        lines[-1].append((name, colour, w))
        x += w
    return lines


def _legend(draw: Any, font: Any, size: int, width: int, height: int, classes: Sequence[str], labels: bool) -> None:
    """At the bottom: a colour swatch per expression, and what the number after a label means, in as many
    lines as the frame's width needs (one on a wide frame)."""
    lines = legend_lines(lambda text: float(draw.textlength(text, font=font)), size, width, classes, labels)
    line_h = size + 6
    top = height - line_h * len(lines)
    widest = max(sum(w for _, _, w in line) for line in lines)
    draw.rectangle([0, top - 3, min(width, 4 + widest + 4), height], fill=(0, 0, 0))
    for i, line in enumerate(lines):
        x, y = 4.0, top + i * line_h
        for name, colour, w in line:
            if colour is not None:
                draw.rectangle([x, y + 2, x + size - 2, y + size], fill=colour)
                draw.text((x + size + 2, y), name, fill=colour, font=font)
            else:
                draw.text((x, y), name, fill=(255, 255, 255), font=font)
            x += w


# --------------------------------------------------------------------------------------------
# Inputs and outputs
# --------------------------------------------------------------------------------------------
def input_kind(source: str) -> str:
    """``"camera"``, ``"image"`` or ``"video"``, from the input's name (an image's content when its name has no
    image suffix)."""
    if source.isdigit():
        return "camera"
    return "image" if is_image_file(source) else "video"


def check_output(kind: str, out: Path) -> None:
    """Raise InputError when the output suffix does not fit the input kind."""
    suffix = out.suffix.lower()
    if kind == "image" and suffix not in WRITABLE_IMAGES:
        raise InputError(f"--out {out}: an image input needs an image output; expected one of {WRITABLE_IMAGES}")
    if kind != "image" and suffix not in VIDEO_CODECS:
        why = " (it is not an image by its suffix or its first bytes, so it is read as a video)" \
            if kind == "video" and suffix in WRITABLE_IMAGES else ""
        raise InputError(f"--out {out}: a {kind} input{why} needs a video output; expected one of {tuple(VIDEO_CODECS)}")


def container_problem(path: Path) -> Optional[str]:
    """Why the .mp4 or .avi file at ``path`` is not a whole container, or None: its top-level parts (MP4 boxes, AVI
    RIFF chunks) must follow one another to its last byte exactly, and an MP4 must hold its index (``moov``). Only
    the parts' headers are read."""
    mp4 = path.suffix.lower() == ".mp4"
    size = path.stat().st_size
    if size == 0:
        return "it is empty"
    kinds, pos = [], 0
    with open(path, "rb") as f:
        while pos < size:
            f.seek(pos)
            head = f.read(16)
            if len(head) < 8:
                return f"it ends inside a header, at byte {size}"
            if mp4:  # ISO BMFF box: 32-bit big-endian size (1: a 64-bit one follows; 0: to the end), then type
                kind, n = head[4:8], int.from_bytes(head[:4], "big")
                if n == 1 and len(head) == 16:
                    n = int.from_bytes(head[8:16], "big")
                elif n == 0:
                    n = size - pos
            else:  # RIFF chunk: id, then 32-bit little-endian size of the data, padded to an even length
                kind, n = head[:4], int.from_bytes(head[4:8], "little") + 8
                n += n % 2
            if n < 8:
                return f"it holds a part {kind!r} of {n} bytes at byte {pos}"
            kinds.append(kind)
            pos += n
    if pos != size:
        return f"it is {size} bytes long, its parts end at byte {pos}"
    if mp4 and b"moov" not in kinds:
        return "it has no index (moov)"
    if not mp4 and any(k != b"RIFF" for k in kinds):
        return f"its parts {kinds} are not all RIFF chunks"
    return None


class AtomicVideoWriter:
    """OpenCV VideoWriter to a temporary file beside ``path``, renamed into place by :meth:`commit`."""

    def __init__(self, path: Path, fps: float) -> None:
        self.cv2 = require_cv2("writing annotated videos")
        self.path = path
        self.fps = fps if fps and np.isfinite(fps) and fps > 0 else 25.0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{short_name(path.stem)}.", suffix=path.suffix, dir=path.parent)
        except OSError as exc:
            raise InputError(f"--out {path}: cannot write a file there ({exc.strerror or exc}); choose another "
                             "path") from exc
        os.close(fd)
        self.tmp = Path(tmp)
        self.writer: Any = None
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        if self.writer is None:
            fourcc = self.cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.path.suffix.lower()])
            self.writer = self.cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (rgb.shape[1], rgb.shape[0]))
            if not self.writer.isOpened():
                raise InputError(f"OpenCV cannot write {self.path.suffix} video here (codec "
                                 f"{VIDEO_CODECS[self.path.suffix.lower()]}); try --out with .avi")
        self.writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
        self.frames += 1

    def commit(self) -> None:
        """Rename the finished video into place.

        Raises:
            InputError: no frame was written, or ``path`` was made read-only meanwhile.
            WriteError: the video is incomplete (:meth:`incomplete`); the temporary file is removed.
        """
        if self.writer is not None:
            self.writer.release()
        if not self.frames:
            raise InputError("no frame was read from the input; nothing to write")
        why = self.incomplete()
        if why:
            self.discard()
            raise WriteError(self.path, OSError(f"the video OpenCV wrote is incomplete ({why}); OpenCV does not say "
                                                "why, most likely a full disk or a quota: free some space"))
        set_default_mode(self.tmp)
        problem = existing_output_problem(self.path)  # made read-only while the video was written: kept
        if problem:
            raise InputError(f"--out {self.path} {problem}")
        os.replace(self.tmp, self.path)

    def incomplete(self) -> Optional[str]:
        """Why the finished temporary video is not whole, or None. OpenCV's ``VideoWriter.write`` ignores a write
        that fails (a full disk, a quota): the file is cut short, and the writer still says it is open. Such a file
        is empty, or its parts do not end at its end (the container's writer patches in the sizes it meant to
        write), or an MP4 lacks its index (``moov``, written last)."""
        return container_problem(self.tmp)

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.release()
        if self.tmp.exists():
            self.tmp.unlink()


def check_scale(scale: int, height: int, width: int) -> None:
    """Refuse, before any detection, a ``--scale`` that would make the annotated output of a ``width`` x
    ``height`` input larger than the frame limit (:data:`~.detection.base.MAX_FRAME_PIXELS`)."""
    if height * width * scale * scale > MAX_FRAME_PIXELS:
        largest = math.isqrt(MAX_FRAME_PIXELS // (height * width))
        raise InputError(f"--scale {scale}: the annotated output of this {width}x{height} input would be "
                         f"{width * scale}x{height * scale} pixels, over the limit of {MAX_FRAME_PIXELS / 1e6:.1f} "
                         f"megapixels; expected --scale {largest} or less")


#: What the message after a run a signal ended says happened, per signal.
STOPPED_BY: dict[int, str] = {signal.SIGINT: "interrupted (Ctrl-C)", signal.SIGTERM: "stopped (SIGTERM)"}


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a supervisor or job scheduler stopping the run), raised as Ctrl-C's KeyboardInterrupt is,
    so that the run cleans up after itself either way, and told apart from it in the message."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def sigterm_raises() -> contextlib.AbstractContextManager[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt), as Ctrl-C raises
    KeyboardInterrupt: the partial output is discarded and no temporary file is left behind."""
    return signal_handled(signal.SIGTERM, _terminate)


@contextlib.contextmanager
def stop_signals_set(stop: threading.Event, caught: list[int]) -> Iterator[None]:
    """While active, Ctrl-C (SIGINT) and SIGTERM set ``stop`` (and append their number to ``caught``) instead of
    raising KeyboardInterrupt: a camera recording ends after the frame in hand and its outputs are written, whether
    a person or a supervisor stopped it. A second signal, once ``stop`` is set, raises at once as it would without
    this block (KeyboardInterrupt, or :class:`Terminated` for SIGTERM): the way out of a frame that takes too long.
    Python runs handlers between bytecodes only, so neither ends a C call that never returns (a camera read that
    hangs). Python handles signals in its main thread only; in another thread this does nothing."""
    def handler(signum: int, frame: Any) -> None:
        caught.append(signum)
        if stop.is_set():  # asked again: the frame in hand takes too long
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        stop.set()

    with signal_handled(signal.SIGINT, handler, signal.default_int_handler), \
            signal_handled(signal.SIGTERM, handler):
        yield


def run_image(analyzer: CrowdAnalyzer, source: str, out: Path, scale: int, labels: bool) -> dict[str, Any]:
    frame = read_image(source)
    check_scale(scale, frame.shape[0], frame.shape[1])
    result = analyzer.analyze(frame)
    write_image(out, annotate(frame, result, scale, labels))
    return result.to_dict()


def run_video(analyzer: CrowdAnalyzer, source: str, out: Path, scale: int, labels: bool,
              max_frames: Optional[int], stop: Optional[threading.Event] = None,
              track: Union[bool, FaceTracker] = False, detect_every: int = 1,
              keep_frames: bool = True) -> dict[str, Any]:
    """Analyse a video file or a camera (``source``: a path or a camera index) and write the annotated video.

    ``keep_frames=False``: ``"frames"`` is None, not every frame's result (for a run whose JSON is not written: a
    camera recorded for hours would otherwise hold one result per frame in memory); the totals are the same.

    ``track`` follows faces over frames and labels each with its track's mean answer
    (``CrowdAnalyzer.analyze_stream``); the JSON's faces then carry ``track_id`` and their frame's own answer,
    and ``"tracks"`` lists each face followed, with its frames and its expression over them (:class:`TrackLog`;
    None without tracking). ``detect_every`` runs the detector on every that many frames (tracking only;
    ``CrowdAnalyzer.analyze_stream``).

    A set ``stop`` ends the run after the frame in hand, keeping the frames so far (``"interrupted": true``):
    how Ctrl-C and SIGTERM end a camera recording (:func:`stop_signals_set`). ``"truncated"`` says whether a video file
    decoded far fewer frames than its header announces (``"frames_in_header"``; a warning is logged).
    Any exception, KeyboardInterrupt included, discards the partial video.
    """
    video = video_frames(int(source) if source.isdigit() else source)
    try:
        check_scale(scale, *video.frame_size)
        writer = AtomicVideoWriter(out, video.fps)
        frames: list[dict[str, Any]] = []
        n_frames = 0
        totals: dict[str, int] = {c: 0 for c in analyzer.classes}
        tracks = TrackLog(analyzer.classes)
        tally = None if analyzer.groups is None else GroupTally(analyzer.groups)
        try:
            coasted: set[int] = set()  # the tracks coasted in the last frame the detector ran on
            for frame, result in _with_frames(analyzer, video, max_frames, track, detect_every):
                if result.detector_ran:
                    coasted = {f.track_id for f in result.faces if not f.detected and f.track_id is not None}
                writer.write(annotate(frame, result, scale, labels, coasted))
                n_frames += 1
                if keep_frames:
                    frames.append(result.to_dict())
                tracks.add(result)
                for c, n in result.summary.counts.items():
                    totals[c] += n
                if tally is not None and result.faces:  # each face in each frame, with its frame's own answer
                    tally.add(own_probs(result.faces), analyzer.factors(result.faces))
                logger.info("frame %d: %d faces", result.frame_index, result.summary.n_faces)
                if stop is not None and stop.is_set():
                    break
            writer.commit()
        except BaseException:
            writer.discard()
            raise
    finally:
        video.close()
    tracked = track is not False
    shares = None if tally is None else tally.shares()
    return {"frames": frames if keep_frames else None, "n_frames": n_frames, "fps": writer.fps, "face_counts_all_frames": totals,
            "shares_all_frames": None if shares is None else {c: round(float(p), 4)
                                                              for c, p in zip(analyzer.classes, shares)},
            "tracks": tracks.to_list() if tracked else None, "frames_in_header": video.frames_in_header,
            "truncated": video.truncated, "interrupted": stop is not None and stop.is_set()}


def _with_frames(analyzer: CrowdAnalyzer, video: VideoFrames, max_frames: Optional[int],
                 track: Union[bool, FaceTracker] = False,
                 detect_every: int = 1) -> Iterator[tuple[np.ndarray, CrowdResult]]:
    """(frame, result) pairs; the frames are kept beside the stream so they can be drawn on."""
    kept: list[np.ndarray] = []

    def remember() -> Iterator[np.ndarray]:
        for f in video:
            kept.append(f)
            yield f

    for result in analyzer.analyze_stream(remember(), max_frames=max_frames, track=track, detect_every=detect_every):
        yield kept.pop(0), result


def tracking_json(tracker: Optional[FaceTracker], detect_every: int = 1) -> Optional[dict[str, Any]]:
    """The JSON's ``"tracking"``: None without tracking, else the half-life (None for ``inf``, a plain mean of
    every frame: JSON has no infinity), the aggregate, the other tracker options and ``detect_every``."""
    if tracker is None:
        return None
    return {"half_life": tracker.half_life if math.isfinite(tracker.half_life) else None,
            "aggregate": tracker.aggregate, "coast": tracker.coast, "confirm": tracker.confirm,
            "motion": tracker.motion, "detect_every": detect_every}


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def _per_detector(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in values.items())


#: ``--threads``'s help, as fsrfer-crowd and fsrfer-demo both say it (0 and leaving it out mean the same).
THREADS_HELP = (f"ONNX Runtime intra-op threads, 1 to {MAX_THREADS} (default, or 0: ONNX Runtime's own, one per "
                "physical core, or the CPUs a CPU set or quota leaves this process; with --sessions, threads of each "
                "session, default 1)")


def check_shared_options(args: argparse.Namespace) -> None:
    """Refuse, before any work, values of the options fsrfer-crowd and fsrfer-demo share (``--min-score``,
    ``--min-face``, ``--margin``, ``--sessions``, ``--threads``) that the library would refuse in its own argument
    spelling (``min_face=0.0``); each message names its option as it is typed. ``--threads 0`` is taken as leaving
    it out (:func:`threads_option`).

    Raises:
        InputError: the first bad option.
    """
    if args.min_score is not None:
        check_number("--min-score", args.min_score, 0.0, 1.0)
    check_number("--min-face", args.min_face, 1.0)
    if args.margin is not None:
        check_margin(args.margin, "--margin")
    check_sessions(args.sessions)
    check_threads(args.threads)


def check_sessions(sessions: Optional[int]) -> None:
    """``--sessions`` of fsrfer-demo, fsrfer-crowd and fsrfer-bench: None (one session) or 1 to the ONNX Runtime
    backend's limit, named as the flag (the backend refuses it too, as ``sessions=``, only once the model loads)."""
    if sessions is not None and not 1 <= sessions <= MAX_THREADS:
        raise InputError(f"--sessions={sessions}; expected an integer >= 1, at most {MAX_THREADS} (more than one "
                         "per core does not help)")


def check_threads(threads: Optional[int]) -> None:
    """Refuse a ``--threads`` outside 0..:data:`MAX_THREADS` (0 or None: ONNX Runtime's default), as every CLI
    that takes it says it.

    Raises:
        InputError: naming the option and the range.
    """
    if threads is not None and not 0 <= threads <= MAX_THREADS:
        raise InputError(f"--threads={threads}; expected an integer from 1 to {MAX_THREADS}, or 0 (or leave it "
                         "out) for the default (ONNX Runtime's: one thread per physical core, or the CPUs a CPU set or quota "
                         "leaves this process)")


def threads_option(threads: Optional[int]) -> Optional[int]:
    """``--threads`` as ``Recognizer(threads=)`` takes it: None for 0 or left out (ONNX Runtime's default)."""
    return threads or None


def check_options(args: argparse.Namespace) -> None:
    """fsrfer-crowd's options that argparse's types let through, checked before any work: those it shares with
    fsrfer-demo (:func:`check_shared_options`, ``--threads`` among them) and ``--min-size``.

    Raises:
        InputError: the first bad option.
    """
    check_shared_options(args)
    check_number("--min-size", args.min_size, 0.0)


def build_parser() -> argparse.ArgumentParser:
    ap = CliParser(
        prog="fsrfer-crowd",
        description="Detect every face in an image, video or camera stream, recognise its expression, and write "
                    "the annotated image/video (and optionally the results as JSON).")
    ap.add_argument("input", type=expand_home, help="image (.png/.jpg/...), video file, or camera index (e.g. 0)")
    ap.add_argument("--out", type=cli_path, required=True,
                    help="annotated output: .png/.jpg for an image input, .mp4/.avi for a video or camera")
    ap.add_argument("--json", type=cli_path, default=None, help="also write per-face results and group counts as JSON")
    ap.add_argument("--model", type=expand_home, default=None,
                    help="expression model .onnx/.engine (default: the shipped model)")
    ap.add_argument("--detector", choices=DETECTORS, default="auto", help="face detector (default auto: YuNet "
                    "when onnxruntime is installed, else OpenCV)")
    ap.add_argument("--min-face", type=float, default=DEFAULT_MIN_FACE,
                    help=f"smallest face the detector looks for, in pixels (default {DEFAULT_MIN_FACE:g}; smaller "
                         "is slower: time grows as (1/size)^2)")
    ap.add_argument("--min-size", type=float, default=0.0,
                    help="drop faces smaller than this many pixels from the results (default 0: keep all)")
    ap.add_argument("--min-score", type=float, default=None, help="detector score threshold (default: the "
                    "detector's, chosen on the crowd benchmark: " + _per_detector(DEFAULT_SCORES) + ")")
    ap.add_argument("--margin", type=float, default=None,
                    help="crop border around each box, fraction of its side (default: the detector's, "
                         + _per_detector(MARGINS) + ")")
    ap.add_argument("--max-frames", type=int, default=None, help="video/camera: stop after this many frames")
    ap.add_argument("--track", dest="track", action="store_true", default=None,
                    help="video/camera: follow each face over frames and label it with its answers' mean over "
                         "them (default " + ("on" if DEFAULT_TRACK else "off") + "; docs/crowd.md)")
    ap.add_argument("--no-track", dest="track", action="store_false", help="video/camera: every frame alone")
    ap.add_argument("--half-life", type=float, default=None,
                    help=f"with tracking: frames over which an earlier frame's weight halves (> 0, default "
                         f"{DEFAULT_HALF_LIFE:g}; larger is steadier and slower to follow a change; inf: a plain "
                         "mean of every frame, written as null in the JSON's \"tracking\")")
    ap.add_argument("--coast", type=int, default=None,
                    help=f"with tracking: frames after its last detection in which a face the detector lost is still "
                         "recognised at its last box, moved on by its velocity with motion (with --detect-every: "
                         "detector passes) "
                         f"(default {DEFAULT_COAST}; 0: never)")
    ap.add_argument("--confirm", type=int, default=None,
                    help=f"with tracking: frames a face must be found in before it is reported (default "
                         f"{DEFAULT_CONFIRM}; 1: at once)")
    ap.add_argument("--motion", dest="motion", action="store_true", default=None,
                    help="with tracking: look for each face where its velocity takes it (walking faces, faces that "
                         "pass each other; default " + ("on" if DEFAULT_MOTION else "off") + ")")
    ap.add_argument("--no-motion", dest="motion", action="store_false", help="with tracking: look for each face at its "
                    "last box")
    ap.add_argument("--detect-every", type=int, default=None, metavar="N",
                    help="with tracking: run the detector on every N-th frame and recognise each followed face where "
                         "the tracker expects it in the frames between (faster, less accurate on moving crowds; "
                         "default 1: every frame)")
    ap.add_argument("--scale", type=int, default=1, help="enlarge the annotated output this many times (default 1)")
    ap.add_argument("--no-labels", action="store_true", help="draw boxes only")
    ap.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    ap.add_argument("--sessions", type=int, default=None,
                    help="expression model on the CPU: sessions that split each frame's faces between them, "
                         "--threads each (default 1 with this flag); faster for INT8 models (Recognizer(sessions=))")
    return ap


@cli_main
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from .recognizer import Recognizer, resolve_model_path

    stop = threading.Event()  # set by Ctrl-C or SIGTERM during a camera recording (stop_signals_set)
    caught: list[int] = []  # the signals that set it
    written = False  # --out is in place; removed if writing --json then fails or is interrupted (all or nothing)
    recorded: Optional[dict[str, Any]] = None  # a camera's recording, in place and kept whatever follows
    try:
        if args.scale < 1 or args.scale > 16:
            raise InputError(f"--scale {args.scale}; expected an integer from 1 to 16")
        if args.max_frames is not None and args.max_frames < 1:
            raise InputError(f"--max-frames {args.max_frames}; expected a positive integer")
        check_options(args)
        kind = input_kind(args.input)
        problem = "" if kind == "camera" else file_problem(args.input)
        if problem:
            raise InputError(f"input {args.input} {problem}; expected an image file, a video file or a camera index "
                             "(e.g. 0)")
        tracking = (("--half-life", args.half_life), ("--coast", args.coast), ("--confirm", args.confirm),
                    ("--motion/--no-motion", args.motion), ("--detect-every", args.detect_every))
        for flag, value in (("--max-frames", args.max_frames), ("--track/--no-track", args.track), *tracking):
            if kind == "image" and value is not None:
                raise InputError(f"{flag} applies to a video or a camera; {args.input} is an image (drop it)")
        track = DEFAULT_TRACK if args.track is None else args.track
        for flag, value in tracking:
            if value is not None and not track:
                raise InputError(f"{flag} applies with tracking, which --no-track turns off; drop one of the two")
        for flag, value, low in (("--coast", args.coast, 0), ("--confirm", args.confirm, 1),
                                 ("--detect-every", args.detect_every, 1)):
            if value is not None and value < low:
                raise InputError(f"{flag} {value}; expected an integer >= {low} (frames)")
        if args.coast is not None and args.coast > DEFAULT_MAX_MISSED:
            raise InputError(f"--coast {args.coast}; expected at most {DEFAULT_MAX_MISSED} frames (a track ends after "
                             f"{DEFAULT_MAX_MISSED} frames unseen)")
        tracker = FaceTracker(check_half_life(DEFAULT_HALF_LIFE if args.half_life is None else args.half_life,
                                              "--half-life"),
                              coast=args.coast, confirm=DEFAULT_CONFIRM if args.confirm is None else args.confirm,
                              motion=DEFAULT_MOTION if args.motion is None else args.motion) \
            if track else None
        if args.out.is_dir():  # before its suffix is judged: "an image input needs an image output" says too little
            raise InputError(f"--out {args.out} is a folder; expected a file to write, e.g. "
                             f"{args.out / ('annotated.png' if kind == 'image' else 'annotated.mp4')}")
        check_output(kind, args.out)
        check_output_path(args.out, "--out")  # a folder, or a path under a file: refused before any work
        if args.json is not None:
            check_output_path(args.json, "--json")
        inputs = [("the input", None if kind == "camera" else args.input), ("--model", resolve_model_path(args.model))]
        inputs += detector_model_inputs()
        check_distinct_files(inputs + [("--out", args.out), ("--json", args.json)], inputs=len(inputs))
        threads = threads_option(args.threads) if args.detector != "opencv" else None
        # SIGTERM (kill, a supervisor) raises KeyboardInterrupt as Ctrl-C does: no temporary video is left behind;
        # during a camera recording both end it after the frame in hand instead, and it is kept
        with sigterm_raises(), \
                Recognizer(args.model, threads=threads_option(args.threads), spinning=False,
                           sessions=args.sessions) as rec, \
                create_detector(args.detector, min_face=args.min_face, min_score=args.min_score,
                                threads=threads) as det, \
                (stop_signals_set(stop, caught) if kind == "camera" else contextlib.nullcontext()):
            analyzer = CrowdAnalyzer(rec, det, margin=args.margin, min_score=args.min_score, min_size=args.min_size)
            if kind == "image":
                doc = run_image(analyzer, args.input, args.out, args.scale, not args.no_labels)
                summary = doc["summary"]
                message = count_faces(summary["n_faces"]) + ": " + ", ".join(
                    f"{c} {n}" for c, n in summary["counts"].items() if n) + shares_text(summary.get("shares"))
            else:
                detect_every = 1 if args.detect_every is None else args.detect_every
                doc = run_video(analyzer, args.input, args.out, args.scale, not args.no_labels, args.max_frames,
                                stop, tracker if tracker is not None else False, detect_every,
                                keep_frames=args.json is not None)
                doc["tracking"] = tracking_json(tracker, detect_every)
                message = video_summary(doc)
            written = kind != "camera"  # a camera's recording cannot be taken again: it is kept
            recorded = doc if kind == "camera" else None
            doc.update({"schema": SCHEMA, "input": args.input, "detector": repr(det),
                        "detector_settings": detector_settings(det, analyzer.margin), "model": str(rec.model_path),
                        "sessions": getattr(rec.backend, "sessions", 1)})
            if args.json is not None:
                write_json(args.json, doc)
            written = False  # the run is complete
    except KeyboardInterrupt as exc:
        _discard(args.out, written)
        how = STOPPED_BY[signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT]
        if recorded is not None:  # a second signal while its JSON was written (the first one set ``stop``)
            print(f"fsrfer-crowd: {how}; kept the {plural(recorded['n_frames'], 'frame')} recorded in {args.out}; "
                  f"--json {args.json} was not written", file=sys.stderr)
        else:
            print(f"fsrfer-crowd: {how}; the partial output was discarded", file=sys.stderr)
        return 130
    except FsrferError as exc:
        _discard(args.out, written)
        print(f"fsrfer-crowd: error: {one_line(exc)}", file=sys.stderr)
        return 2
    if stop.is_set():
        how = STOPPED_BY[caught[0] if caught else signal.SIGINT]  # the first signal: the one that ended it
        print(f"fsrfer-crowd: {how}; kept the {plural(doc['n_frames'], 'frame')} recorded so far", file=sys.stderr)
    print(message.rstrip(": "))
    print(f"wrote {args.out}" + (f" and {args.json}" if args.json else ""))
    return 130 if stop.is_set() else 0


def video_summary(doc: dict[str, Any]) -> str:
    """The line printed after a video or camera run (``doc``: :func:`run_video`'s): its frames, the faces followed
    (with tracking), the faces per class over all frames and the group's estimated shares."""
    followed = "" if doc["tracks"] is None else ", " + plural(len(doc["tracks"]), "face") + " followed"
    counts = ", ".join(f"{c} {n}" for c, n in doc["face_counts_all_frames"].items() if n)
    return (plural(doc["n_frames"], "frame") + followed + ", faces per class over all frames: " + counts
            + shares_text(doc["shares_all_frames"]))


def _discard(out: Path, written: bool) -> None:
    """Remove the annotated output of a run that failed or was interrupted after writing it (before its JSON)."""
    if written:
        with contextlib.suppress(OSError):
            out.unlink()


if __name__ == "__main__":
    sys.exit(main())
