"""The app-facing API: ``Recognizer(model).predict(faces)``.

The Recognizer picks a backend once, at construction, and afterwards only calls its
``infer(batch) -> logits``; preprocessing comes from the model's own metadata.

Example::

    from fsrfer_edge import Recognizer
    with Recognizer("fsrfer.onnx") as rec:
        for p in rec.predict(face_crops):  # one gray/RGB uint8 crop, or a list of crops of any sizes
            print(p.label, p.score)
"""
from __future__ import annotations

import dataclasses
import logging
import os
import reprlib
from pathlib import Path
from types import TracebackType
from typing import Any, Optional, Sequence, Union

import numpy as np

from . import sidecars
from .backends import BACKENDS, Backend, BackendClosedError
from .confidence import SUFFIX as SCORES_SUFFIX, ScoreCalibration
from .errors import InputError, ModelError, one_line
from .fileio import as_path, file_problem
from .metadata import ModelInfo
from .preprocessing import (Corrections, FaceInput, Preprocessing, any_jpeg_image, any_linear_enlarging,
                            any_low_contrast, any_pixel_repetition, as_corrections, check_faces, jpeg_quality,
                            raise_contrast, softmax, unmasked)

logger = logging.getLogger(__name__)

#: Where the shipped default model lives (package data).
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "default.onnx"
ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan")

PathLike = Union[str, "os.PathLike[str]"]

#: Faces ``Recognizer.predict`` prepares and runs at a time (rounded up to a whole number of ``max_batch``): one
#: chunk's batch and temporaries (about 20 MB for 256 faces at 48 px, the score calibration's size estimate
#: included) are all the memory a call needs beside its faces and predictions, however many faces it is given.
PREDICT_CHUNK = 256


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The expression recognised on one face.

    Attributes:
        label: class name, e.g. ``"happy"``.
        index: class index into ``Recognizer.info.classes``.
        score: probability of ``label`` (softmax of the logits). The shipped model learnt annotators' vote shares, so
            this is not how often the label is right, and means different things at different face sizes.
        probs: (num_classes,) float32 probabilities of every class (read-only).
        confidence: the chance that ``label`` is right, read from ``score`` and the face's size by the model's score
            calibration (:mod:`fsrfer_edge.confidence`; measured on FER+ val); None without one. One threshold on
            it keeps about one error rate at every size, for crops given as the camera cut them. A crop an app
            enlarged itself by repeating pixels or bilinearly is read at its source's size; one enlarged otherwise
            (bicubic, say) takes the size the calibration's estimate reads from its pixels where it has one
            (``size_weights``) and the crop is not marked as a JPEG image, else it reads as a large face and is
            overstated.
            A ``fsrfer_edge.serving.RemoteRecognizer`` finds the packaged calibration of the served model's
            checkpoint, or one beside its local ``model`` copy.
        factor: the down-sample factor ``confidence`` was read at (the input side over the crop's, or the size
            estimate's); None without a confidence.
        jpeg: whether ``confidence`` took the maps for JPEG images; None without a confidence.
    """

    label: str
    index: int
    score: float
    probs: np.ndarray = dataclasses.field(compare=False, repr=False)
    confidence: Optional[float] = dataclasses.field(default=None, compare=False)
    factor: Optional[float] = dataclasses.field(default=None, compare=False, repr=False)
    jpeg: Optional[bool] = dataclasses.field(default=None, compare=False, repr=False)


def resolve_model_path(model: Optional[PathLike]) -> Path:
    """The model file to load: ``model``, or the shipped default model when None.

    Raises:
        InputError: ``model`` is not a path, or an empty one.
        ModelError: the file does not exist, is a directory, or has an unsupported suffix.
    """
    if model is None:
        if not DEFAULT_MODEL.is_file():
            raise ModelError(
                f"no model was given and the default model {DEFAULT_MODEL} is not installed. Pass a model "
                "path, e.g. Recognizer('fsrfer.onnx') (export one from a checkpoint with fsrfer-export), "
                f"or place an exported model at {DEFAULT_MODEL}"
            )
        return DEFAULT_MODEL
    if not isinstance(model, (str, os.PathLike)):
        raise InputError(f"model={model!r} ({type(model).__name__}); expected a path to an .onnx, .engine or .plan file")
    if not os.fspath(model).strip():  # Path("") would read it as the current directory
        raise InputError(f"model={model!r} is an empty path; expected the path of an .onnx model (from fsrfer-export) "
                         "or a TensorRT .engine/.plan file, or None (leave it out) for the shipped default model")
    path = Path(model)
    if os.path.isdir(path):  # before the suffix: a folder is not searched for a model
        raise ModelError(f"model {path} is a directory; expected the path of an .onnx model or a TensorRT "
                         ".engine/.plan file, or None (leave it out) for the shipped default model")
    if path.suffix.lower() not in ONNX_SUFFIXES + ENGINE_SUFFIXES:
        hint = (f"; a training checkpoint becomes one with: fsrfer-export {path}" if path.suffix.lower() in (".pt", ".pth")
                else "")
        raise ModelError(f"model {path} has suffix {path.suffix!r}; expected an .onnx model or a TensorRT .engine/.plan"
                         + hint)
    problem = file_problem(path)
    if problem:
        raise ModelError(f"model file {path} {problem}; expected an .onnx model or a TensorRT .engine/.plan")
    if path.suffix.lower() in ONNX_SUFFIXES:  # before any backend reads it (TensorRT's parser too)
        from .backends.onnxruntime_backend import check_external_data

        check_external_data(path)
    return path


def open_backend(path: PathLike, backend: str = "auto", device: int = 0, max_batch: int = 64,
                 providers: Union[None, str, Sequence[Any]] = None, threads: Optional[int] = None,
                 spinning: bool = True, sessions: Optional[int] = None) -> Backend:
    """Create the backend for a model file (the only place that chooses one).

    ``auto``: a TensorRT engine runs on TensorRT. An ONNX model runs on TensorRT where TensorRT, a
    CUDA binding and a GPU are present (like jetson-inference: the first use builds the engine, FP16
    or INT8 for an s8s8 file, and caches it under the engine cache dir, keyed by TensorRT version and
    GPU; later uses load it), else on ONNX Runtime (CUDA provider when this onnxruntime build has
    it, else CPU), with one log line saying why. ``providers=``/``threads=``/``sessions=`` ask for ONNX
    Runtime (``sessions`` > 1: on the CPU provider, ``providers="cpu"`` implied where not given);
    ``spinning`` is a hint for ONNX Runtime's CPU threads that other backends ignore.
    ``tensorrt`` with an ONNX model looks up an engine built from it (beside it, then in the engine
    cache) and refuses when none is valid.

    Raises:
        InputError: unknown backend, a ``path`` that is not a path, or a combination that cannot work.
        ModelError / EngineError / BackendUnavailable: from the backend's loader.
    """
    path = as_path(path, "open_backend: the model (an .onnx file or a TensorRT .engine/.plan file)")
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise InputError(f"backend={backend!r}; expected one of {BACKENDS}")
    # An int (numpy's too) only: an array or numpy bool would be compared element-wise or read as 1; the backend
    # refuses those with its own message.
    if isinstance(sessions, (int, np.integer)) and not isinstance(sessions, bool) and sessions == 1:
        sessions = None  # one session is what every backend runs; it asks for nothing
    is_engine = path.suffix.lower() in ENGINE_SUFFIXES
    if is_engine:
        if backend == "onnxruntime":
            raise InputError(
                f"{path.name} is a TensorRT engine, which only TensorRT can run; pass backend='tensorrt' "
                "(or 'auto'), or give the .onnx model to use ONNX Runtime"
            )
        if providers is not None or threads is not None or sessions is not None:
            raise InputError("providers=, threads= and sessions= apply to ONNX Runtime only; drop them for a "
                             "TensorRT engine")
        from .backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, device=device)
    if backend == "tensorrt":
        if providers is not None or threads is not None or sessions is not None:
            raise InputError("providers=, threads= and sessions= apply to ONNX Runtime only; drop them for "
                             "backend='tensorrt'")
        from .backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend.for_onnx(path, device=device, min_max_batch=max_batch)
    if backend == "auto" and providers is None and threads is None and sessions is None:
        from .backends.tensorrt_backend import TensorRTBackend, tensorrt_unavailable_reason

        reason = tensorrt_unavailable_reason(path, device)
        if reason is None:
            return TensorRTBackend.for_onnx(path, device=device, min_max_batch=max_batch, build=True)
        logger.info("backend='auto' runs %s on ONNX Runtime: %s", path.name, reason)
    from .backends.onnxruntime_backend import OnnxRuntimeBackend

    if sessions is not None and providers is None:
        providers = "cpu"
    return OnnxRuntimeBackend(path, providers=providers, threads=threads, device=device, spinning=spinning,
                              sessions=sessions)


def _check_confidence(value: Any) -> None:
    """Refuse a ``confidence=`` that cannot give a score calibration before a model is opened: another type, or a
    file that is not one (ModelError). Whether it belongs to the model is checked once the model is open."""
    if isinstance(value, str) and not value.strip():
        raise InputError("confidence is an empty string; expected 'auto', None, a ScoreCalibration or the path of its "
                         "JSON file")
    if isinstance(value, os.PathLike) or (isinstance(value, str) and value != "auto"):
        ScoreCalibration.load(value)
    elif not (value is None or isinstance(value, (str, ScoreCalibration))):
        raise InputError(f"confidence is a {type(value).__name__}; expected 'auto', None, a ScoreCalibration or the "
                         "path of its JSON file")


def _resolve_confidence(value: Any, model_path: Optional[PathLike], info: ModelInfo) -> Optional[ScoreCalibration]:
    """The score calibration ``confidence=`` names for a model (``model_path`` None: one with no local file, which
    finds only the package's), refused when it belongs to another model (:func:`fsrfer_edge.sidecars.resolve`)."""
    return sidecars.resolve(value, ScoreCalibration, model_path, info.classes, info.checkpoint_sha256, SCORES_SUFFIX,
                            "score calibration", "confidence",
                            "python scripts/score_calibration.py --model MODEL --write-calibration MODEL.scores.json")


def _positive_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name}={value!r}; expected an integer >= {minimum}")
    return int(value)


class Recognizer:
    """Recognise facial expressions on (low-resolution) face crops with an exported FSR-FER model.

    Args:
        model: an ``.onnx`` model from fsrfer-export, a TensorRT ``.engine``/``.plan``, or None for
            the shipped default model.
        backend: ``"auto"``, ``"onnxruntime"`` or ``"tensorrt"`` (see :func:`open_backend`).
        device: GPU index (CUDA provider or TensorRT).
        max_batch: largest batch sent to the backend at once; larger inputs are split, in order.
        providers: ONNX Runtime providers: None/``"auto"``, ``"cpu"``, ``"cuda"`` or a provider list.
        threads: ONNX Runtime intra-op threads, of each session where there are several (None: for one session
            one per physical core, or the CPUs a CPU set or a container's CPU quota leaves this process
            (``fsrfer_edge.cpus.usable_cpus``); 1 for each of several).
        spinning: ONNX Runtime's idle threads spin-wait for work (the default, fastest alone); pass False
            when other ONNX Runtime sessions run in turn with this one in the process, as a face detector
            does (``CrowdAnalyzer`` does so for the recogniser it makes). Ignored by TensorRT.
        sessions: ONNX Runtime CPU sessions that split each batch and run their shares at once (e.g. one
            per core, each with one thread: more faces per second at large batches on a small CPU, most of
            all for INT8 files; ``benchmarks/sessions.py``). None: one session.
        corrections: what is done to each crop beside resizing it (:class:`~fsrfer_edge.preprocessing.Corrections`:
            crops an app enlarged by repeating pixels or bilinearly are reduced to their source, dim faces raised
            to a contrast floor). None: all on, with their defaults; ``Corrections.none()``: all off; or a dict
            such as ``{"contrast_floor": 0}``.
        confidence: the score calibration that gives each prediction its ``confidence``: ``"auto"`` (the model's
            ``NAME.scores.json`` beside it, or the packaged one of the shipped model), a
            :class:`~fsrfer_edge.confidence.ScoreCalibration` or the path of its file, or None (``confidence`` None).

    Raises:
        ModelError: the model is missing, corrupt, or not an fsrfer model (EngineError for engines).
        BackendUnavailable: the runtime library is not installed; the message names the pip extra.
        InputError: invalid arguments.

    One Recognizer may be shared by threads (calls are serialised on TensorRT); for parallel
    throughput create one Recognizer per thread, or, for one caller's batches on a CPU, pass ``sessions=``.
    """

    _scores: Optional[ScoreCalibration]

    def __init__(self, model: Optional[PathLike] = None, backend: str = "auto", device: int = 0,
                 max_batch: int = 64, providers: Union[None, str, Sequence[Any]] = None,
                 threads: Optional[int] = None, spinning: bool = True, sessions: Optional[int] = None,
                 corrections: Union[None, Corrections, dict[str, Any]] = None,
                 confidence: Union[None, str, "os.PathLike[str]", ScoreCalibration] = "auto") -> None:
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise InputError(f"backend={backend!r}; expected one of {BACKENDS}")
        fix = as_corrections(corrections)  # checked before a model is opened
        _check_confidence(confidence)      # so is this (a TensorRT engine may be built first)
        self._device = _positive_int("device", device, 0)
        requested = _positive_int("max_batch", max_batch, 1)
        self.model_path = resolve_model_path(model)
        if not isinstance(spinning, bool):
            raise InputError(f"spinning={spinning!r}; expected True or False")
        opened = open_backend(self.model_path, backend, self._device, requested, providers, threads, spinning,
                              sessions)
        try:
            opened.check_model()  # one dry run: a broken model is refused here, not at the first predict
            self._attach(opened, requested, fix)
            self._scores = _resolve_confidence(confidence, self.model_path, opened.info)
        except BaseException:
            opened.close()
            raise

    def _attach(self, backend: Backend, requested: int, corrections: Optional[Corrections] = None) -> None:
        """Adopt an open backend (also used by fsrfer_edge.serving's RemoteRecognizer)."""
        self._backend = backend
        self._corrections = as_corrections(corrections)
        self._scores = None
        limit = self._backend.max_batch
        self._max_batch = min(requested, limit) if limit is not None else requested
        if self._max_batch < backend.min_batch:
            raise InputError(f"max_batch={requested}; this model runs batches of at least {backend.min_batch}"
                             + (f" and at most {limit}" if limit is not None else "")
                             + f", so max_batch must be at least {backend.min_batch}")
        self._info = self._backend.info
        self._pre = self._info.preprocessing
        self._raw_input = self._info.input_dtype == "uint8"
        # normalize() of every possible uint8 pixel value: input-size uint8 faces are normalised
        # with one table look-up (exactly equal to normalize(), about 4x faster).
        self._lut = self._pre.normalize(np.arange(256, dtype=np.uint8))

    def __reduce_ex__(self, protocol: Any) -> Any:
        # pickle, copy.copy and copy.deepcopy all come here. A copy would share (or fail to carry) the open
        # session, and closing one would close both: say what to do instead.
        what = ("its model path (.model_path)" if hasattr(self, "model_path")
                else "its server's address and model name (.url, .model_name)")
        raise TypeError(f"a {type(self).__name__} holds an open inference session and cannot be pickled or copied; "
                        f"pass {what} and settings to the other process or thread and create one there (one "
                        f"{type(self).__name__} may also be shared by threads)")

    # -- description ------------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        """The model's metadata: classes, preprocessing, precision, input dtype."""
        return self._info

    @property
    def classes(self) -> tuple[str, ...]:
        return self._info.classes

    @property
    def backend(self) -> Backend:
        """The backend running the model (``.name``, ``.providers`` for logs)."""
        return self._backend

    @property
    def corrections(self) -> Corrections:
        """What is done to each crop beside resizing it (``Recognizer(corrections=...)``)."""
        return self._corrections

    @property
    def score_calibration(self) -> Optional[ScoreCalibration]:
        """What gives each prediction its ``confidence`` (``Recognizer(confidence=...)``), or None."""
        return self._scores

    @property
    def max_batch(self) -> int:
        """Largest batch sent to the backend at once."""
        return self._max_batch

    # -- running ----------------------------------------------------------------------------
    def prepare(self, faces: FaceInput) -> np.ndarray:
        """Turn faces into the model's input batch (N, C, S, S): float32 normalised or uint8 pixels.

        The batch is always a new array, never a view of ``faces`` (an app may reuse its buffer).

        Raises:
            InputError: see :meth:`predict`.
        """
        batch = self._prepare(faces)
        return batch.copy() if isinstance(faces, np.ndarray) and np.may_share_memory(batch, faces) else batch

    def _prepare(self, faces: FaceInput, sides: Optional[list[int]] = None,
                 jpeg: Optional[list[bool]] = None, sizes: Optional[list[float]] = None) -> np.ndarray:
        """:meth:`prepare` without its copy: for uint8-input models, input-size uint8 faces pass as a view.
        ``sides`` and ``jpeg``, lists, are given each crop's side as resized and whether it is a JPEG image
        (:meth:`Preprocessing.to_pixels`); ``sizes`` (with ``sides``, and a calibration with a size estimate), each
        crop's factor as the estimate reads it from the pixels the model sees, for crops read at the input size or
        larger (NaN for smaller ones)."""
        if isinstance(faces, np.ndarray):
            faces = unmasked(faces, "faces")
        pixels, fix = _input_size_pixels(faces, self._pre), self._corrections
        if pixels is not None and not _to_reduce(pixels, fix):  # uint8 at the input size: no resampling needed
            if sides is not None:
                sides.extend([self._pre.input_size] * len(pixels))
            if jpeg is not None:  # with soften_jpeg on, _to_reduce found none; else each is looked at here
                jpeg.extend([False] * len(pixels) if fix.soften_jpeg > 0
                            else [jpeg_quality(p[0]) is not None for p in pixels])
            if fix.contrast_floor > 0 and any_low_contrast(pixels, fix.contrast_floor):
                # what to_pixels gives them: its resize is the identity, then the floor
                raised = raise_contrast(pixels.astype(np.float32), fix.contrast_floor)
                self._estimate_sizes(raised, sides, sizes)
                if self._raw_input:
                    return np.rint(raised).astype(np.uint8)
                return self._pre.normalize(raised, in_place=True)
            self._estimate_sizes(pixels, sides, sizes)
            return pixels if self._raw_input else np.take(self._lut, pixels)
        resized = self._pre.to_pixels(faces, corrections=fix, sides=sides, jpeg=jpeg)
        self._estimate_sizes(resized, sides, sizes)
        if self._raw_input:
            return np.rint(resized).astype(np.uint8)
        return self._pre.normalize(resized, in_place=True)  # resized is this call's own array

    def _estimate_sizes(self, pixels: np.ndarray, sides: Optional[list[int]], sizes: Optional[list[float]]) -> None:
        """Fill ``sizes`` (see :meth:`_prepare`) from the batch's pixels, before they are normalised."""
        if sizes is None or sides is None or self._scores is None or self._scores.size_weights is None:
            return
        out = np.full(len(pixels), np.nan)
        at_input = np.flatnonzero(np.asarray(sides[-len(pixels):]) >= self._pre.input_size)
        if at_input.size:
            out[at_input] = self._scores.estimated_factors(pixels[at_input])
        sizes.extend(out.tolist())

    def predict(self, faces: FaceInput, *,
                jpeg: "bool | np.bool_ | Sequence[bool | np.bool_] | np.ndarray | None" = None) -> list[Prediction]:
        """Recognise the expression of each face.

        Args:
            faces: one face (HxW gray or HxWx3 RGB), a list of faces of any (different) sizes, or
                an NxHxW / NxHxWx3 array. Pixels are uint8, or float in [0, 255] (the contract of
                :func:`~fsrfer_edge.preprocessing.check_pixels`: floats scaled to [0, 1] or outside
                [0, 255] are refused). Faces are resized to the model's input size.
            jpeg: whether the faces were cut from a JPEG image, for their ``confidence``: compressed faces are
                right less often at the same score, and the confidence has maps of its own for them (and a crop
                marked so keeps the factor of its side, not the size estimate's: ``Prediction.confidence``). None (the
                default): a crop counts as one where it is itself a decoded JPEG image (its own corner on the codec's
                grid); a face cut out of a JPEG frame is not, so pass ``True`` for the faces of a frame
                :func:`~fsrfer_edge.preprocessing.jpeg_frame_quality` reads a quality for (``CrowdAnalyzer`` does),
                ``False`` for faces you know were not compressed, or one bool per face (a sequence, or a 1-D
                array of bools). Only the confidence depends on it.

        Returns:
            One :class:`Prediction` per face, in input order. A single face also gives a list
            (of one).

        Raises:
            InputError: empty input, a wrong dtype (e.g. int64, bool, str), a 0-size or too large
                image, a 4-channel image, a 5-D array, masked pixels, NaN/infinite values, or floats
                outside [0, 255] or scaled to [0, 1]; a ``jpeg`` that is not None, one bool or one bool per face
                (refused before the model runs).
            ModelError: the model returned malformed logits (wrong shape, NaN).
            BackendClosedError: the Recognizer was closed.
        """
        self._check_open()
        given = _jpeg_flags(jpeg)
        sides: list[int] = []
        cal = self._scores
        marks: Optional[list[bool]] = ([] if given is None and cal is not None
                                       and (cal.jpeg_params is not None or cal.size_weights is not None) else None)
        sizes: Optional[list[float]] = [] if cal is not None and cal.size_weights is not None else None
        # Every face is checked first (errors name the caller's index; nothing runs before a bad face is found),
        # then the faces are prepared and run a chunk at a time: the memory a call needs beside its faces and
        # predictions stays that of one chunk, however many faces it is given. A chunk is a whole number of
        # max_batch, so the model runs the same batches as on one prepared batch (the same logits, bit for bit).
        items = check_faces(faces)
        count = len(items)
        if given is not None:
            marks = [given] * count if isinstance(given, bool) else given
            if len(marks) != count:
                raise InputError(f"jpeg: {len(marks)} flags for {count} faces; expected one bool per face, "
                                 "or one bool for all")
        step = self._max_batch * max(1, -(-PREDICT_CHUNK // self._max_batch))
        out: list[Prediction] = []
        for i in range(0, count, step):
            logits = self.predict_logits(self._prepare(items[i:i + step], sides, marks if given is None else None,
                                                       sizes))
            out += self._to_predictions(logits, sides[i:i + step], None if marks is None else marks[i:i + step],
                                        None if sizes is None else sizes[i:i + step])
        return out

    def predict_logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw logits for an already prepared (N, C, S, S) batch (see :meth:`prepare`).

        Batches larger than :attr:`max_batch` are split and the results concatenated in order. A batch in the
        other byte order (big-endian ``>f4`` read from a file, say) is taken in native order, values unchanged.

        Raises:
            InputError: the batch does not match the model's input dtype/shape.
        """
        self._check_open()
        if isinstance(batch, np.ndarray) and not batch.dtype.isnative:
            # Byte order is how the values are stored, not what they mean: a copy in native order holds the same
            # values, and is then checked (dtype, shape, finite) as any batch is.
            batch = batch.astype(batch.dtype.newbyteorder("="))
        n, least = self._max_batch, self._backend.min_batch
        if not isinstance(batch, np.ndarray) or batch.ndim != 4 or least <= batch.shape[0] <= n:
            return self._backend.infer(batch)  # the backend validates and explains
        # Checked whole (errors name the caller's batch, not a chunk; nothing runs before a bad row is
        # found), then run in chunks of at most max_batch; a chunk below the model's smallest batch (an
        # engine built for at least 4, say) is padded with zero rows whose logits are dropped.
        batch = self._backend.validate(batch, any_size=True)
        out = []
        for i in range(0, batch.shape[0], n):
            chunk = batch[i:i + n]
            k = chunk.shape[0]
            if k < least:
                chunk = np.concatenate([chunk, np.zeros((least - k,) + chunk.shape[1:], chunk.dtype)])
            out.append(self._backend.infer(chunk)[:k])
        return np.concatenate(out)

    def _to_predictions(self, logits: np.ndarray, sides: Optional[Sequence[int]] = None,
                        jpeg: Optional[Sequence[bool]] = None,
                        sizes: Optional[Sequence[float]] = None) -> list[Prediction]:
        """Predictions from logits; with each crop's side as resized (``sides``), their confidences too (``jpeg``:
        which crops are JPEG images, for a calibration with maps of their own for them; ``sizes``: the factors the
        calibration's size estimate read for crops at the input size, which those not marked as JPEG images take:
        docs/experiments.md, "Crops an app enlarged itself")."""
        probs = softmax(logits)
        probs.setflags(write=False)
        idx = probs.argmax(axis=1)
        classes = self._info.classes
        conf: list[Optional[float]] = [None] * len(probs)
        read: list[tuple[Optional[float], Optional[bool]]] = [(None, None)] * len(probs)
        if self._scores is not None and sides is not None and len(sides) == len(probs):
            factors = self._pre.input_size / np.asarray(sides, dtype=np.float64)
            marks = jpeg if jpeg is not None and len(jpeg) == len(probs) else None
            if sizes is not None and len(sizes) == len(probs):
                estimated = np.asarray(sizes, dtype=np.float64)
                use = ~np.isnan(estimated) & (True if marks is None else ~np.asarray(marks, dtype=bool))
                factors = np.where(use, estimated, factors)
            conf = [float(c) for c in self._scores.confidence(logits, factors, marks)]
            took_jpeg = self._scores.jpeg_params is not None and marks is not None
            read = [(float(f), bool(took_jpeg and m)) for f, m in zip(factors, marks or [False] * len(probs))]
        return [Prediction(classes[int(i)], int(i), float(p[i]), p, c, f, j)
                for i, p, c, (f, j) in zip(idx, probs, conf, read)]

    # -- lifetime ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._backend.closed:
            raise BackendClosedError("this Recognizer was closed; create a new one to run inference")

    def close(self) -> None:
        """Release the model and its buffers; closing twice is fine."""
        self._backend.close()

    def __enter__(self) -> "Recognizer":
        self._check_open()
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Recognizer(model={str(self.model_path)!r}, backend={self._backend.name!r}, "
                f"providers={list(self._backend.providers)}, max_batch={self._max_batch}{self._corrections_repr()}"
                f"{'' if self._scores is not None else ', confidence=None'})")

    def _corrections_repr(self) -> str:
        """``, corrections=...`` where they are not the defaults (for ``__repr__``)."""
        return "" if self._corrections == Corrections() else f", corrections={self._corrections}"


def fast_pixels(faces: FaceInput, pre: Preprocessing,
                corrections: Union[None, Corrections, dict[str, Any]] = None) -> Optional[np.ndarray]:
    """(N, 1, S, S) uint8 pixels when ``faces`` are gray uint8 crops already at the input size that need nothing
    but normalising, else None.

    Such faces need no resampling (the resize would be the identity). None for anything else, and for a batch with a
    crop an app may have enlarged by repeating pixels (:func:`~fsrfer_edge.preprocessing.any_pixel_repetition`)
    or bilinearly (:func:`~fsrfer_edge.preprocessing.any_linear_enlarging`), a JPEG image
    (:func:`~fsrfer_edge.preprocessing.any_jpeg_image`), or a face of low contrast
    (:func:`~fsrfer_edge.preprocessing.any_low_contrast`), each only where ``corrections`` (None: the defaults)
    has that step on. (``Recognizer`` raises a dim face at the input size itself, with the bits
    :meth:`Preprocessing.to_pixels` would give it.)

    Raises:
        InputError: a masked array with masked pixels.
    """
    if isinstance(faces, np.ndarray):
        faces = unmasked(faces, "faces")
    pixels = _input_size_pixels(faces, pre)
    if pixels is None:
        return None
    fix = as_corrections(corrections)
    if _to_reduce(pixels, fix) or (fix.contrast_floor > 0 and any_low_contrast(pixels, fix.contrast_floor)):
        return None
    return pixels


def _to_reduce(pixels: np.ndarray, fix: Corrections) -> bool:
    """Whether a crop of an (N, C, S, S) batch is one the corrections ``fix`` change before resizing: reduce to a
    smaller source, or soften as a JPEG image."""
    return ((fix.undo_pixel_repetition and any_pixel_repetition(pixels))
            or (fix.undo_linear_enlarging and any_linear_enlarging(pixels))
            or (fix.soften_jpeg > 0 and any_jpeg_image(pixels)))


def _jpeg_flags(jpeg: Any) -> "bool | list[bool] | None":
    """``Recognizer.predict``'s ``jpeg``: None, one bool, or a sequence (or 1-D array) of bools (numpy bools, and a
    0-d bool array, taken as bools).

    Raises:
        InputError: anything else, saying what was received (on one line, however long ``jpeg`` is).
    """
    if jpeg is None:
        return None
    if isinstance(jpeg, (bool, np.bool_)) or (isinstance(jpeg, np.ndarray) and jpeg.ndim == 0 and jpeg.dtype == bool):
        return bool(jpeg)
    expected = "expected None, True, False or one bool per face"
    if isinstance(jpeg, np.ndarray) and jpeg.ndim != 1:
        raise InputError(f"jpeg: received an array of shape {jpeg.shape} and dtype {jpeg.dtype}; {expected}")
    if isinstance(jpeg, (str, bytes)) or not isinstance(jpeg, (Sequence, np.ndarray)):
        raise InputError(f"jpeg={one_line(reprlib.repr(jpeg))} ({type(jpeg).__name__}); {expected}")
    flags = list(jpeg)
    for i, f in enumerate(flags):
        if not isinstance(f, (bool, np.bool_)):
            raise InputError(f"jpeg[{i}]={one_line(reprlib.repr(f))} ({type(f).__name__}) of {len(flags)} flags; "
                             f"{expected}")
    return [bool(f) for f in flags]


def _input_size_pixels(faces: FaceInput, pre: Preprocessing) -> Optional[np.ndarray]:
    s = pre.input_size
    if pre.channels != 1:
        return None
    if isinstance(faces, np.ndarray) and faces.dtype == np.uint8:
        if faces.shape == (s, s):  # C order, as to_pixels makes its batch: float32 sums add up in the same order
            return np.ascontiguousarray(faces[None, None])
        # A 3-D array whose last axis is 1/3/4 is one HxWxC image (as to_pixels reads it).
        if faces.ndim == 3 and faces.shape[0] > 0 and faces.shape[1:] == (s, s) and s not in (1, 3, 4):
            return np.ascontiguousarray(faces[:, None])
        return None
    if isinstance(faces, (list, tuple)) and faces and all(
            isinstance(f, np.ndarray) and not isinstance(f, np.ma.MaskedArray) and f.dtype == np.uint8
            and f.shape == (s, s) for f in faces):
        # np.asarray: np.stack cannot stack np.matrix crops (it adds an axis to each, which a matrix refuses)
        return np.ascontiguousarray(np.stack([np.asarray(f) for f in faces])[:, None])
    return None
