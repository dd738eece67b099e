"""A face's confidence: the chance its label is right, at every face size.

A face's ``score`` (the probability of its label) means different things at different sizes for the shipped model,
which learnt FER+'s vote distributions: at 48 px its labels are right far more often than their scores say, at 6 px
about as often (docs/experiments.md, "What a face's score means"). Temperature scaling (Guo et al., ICML 2017)
fixes that per size: the confidence is the largest probability of ``softmax(logits / T)``, with one ``T`` per
down-sample factor, fitted on FER+ val by the likelihood of the majority label; a face of another size takes
``log T`` interpolated linearly in ``log factor`` (the nearest end's ``T`` outside the fitted factors). ``T`` changes
no label. A second kind, ``logistic``, maps the label's score itself: ``sigmoid(a * logit(score) + b)`` with ``a``
and ``b`` per factor, fitted by the likelihood of "the label is right" (Platt scaling of the top label; Gupta and
Ramdas, ICLR 2022), interpolated the same way.

    cal = ScoreCalibration.fit({f: logits_f for f in factors}, {f: labels for f in factors}, classes, kind="logistic")
    conf = cal.confidence(logits, factors_of_the_faces)         # (N,) chance each label is right

numpy only (the SDK's runtime path).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import reprlib
from typing import Any, ClassVar, Mapping, Optional, Sequence, Union

import numpy as np

from . import sidecars
from .sidecars import count_value as _count, real_value as _real, text_value as _name
from .errors import InputError, ModelError, one_line

logger = logging.getLogger(__name__)

#: Where a model's score calibration is looked for: beside the model, its name with this suffix instead of the
#: model's (``mymodel.onnx`` -> ``mymodel.scores.json``), then among the package's (the shipped model's).
SUFFIX = ".scores.json"

#: The temperatures a fit chooses among: 401 values of log T, evenly from log 0.05 to log 5.
LOG_T_GRID = np.linspace(np.log(0.05), np.log(5.0), 401)


def _log_softmax(z: np.ndarray, t: Any = None) -> np.ndarray:
    """``log softmax(z / t)`` by rows (``t`` None: 1), shifted by each row's largest logit before dividing: logits
    of any finite size (a logit under the largest by more than float64 holds is -inf: probability 0)."""
    with np.errstate(over="ignore"):
        z = z - z.max(axis=1, keepdims=True)
        if t is not None:
            z = z / t
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _floats(value: Any, what: str, expected: str, bools: bool = False) -> np.ndarray:
    """``value`` as a float64 array, or InputError saying what was received and ``expected``: real numbers (and
    booleans where ``bools``), not complex numbers (a cast would drop their imaginary parts), strings, dates or
    booleans read as numbers."""
    try:
        a = np.asarray(value)
        if a.dtype == object:  # a list mixing numbers with other things: each element is looked at
            odd = next((v for v in a.flat if isinstance(v, (str, bytes, complex, np.complexfloating))
                        or (not bools and isinstance(v, (bool, np.bool_)))), None)
            if odd is not None:
                raise TypeError(f"received {odd!r} ({type(odd).__name__})")
        elif a.dtype.kind not in ("biuf" if bools else "iuf"):
            raise TypeError(f"received dtype {a.dtype}")
        return a.astype(np.float64, copy=False)
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: an int past a float
        raise InputError(f"{what}: {exc}; expected {expected}") from None


def _check_logits(logits: Any, what: str = "logits") -> np.ndarray:
    z = _floats(logits, what, "(N, num_classes) finite numbers")
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise InputError(f"{what} of shape {z.shape}; expected (N, num_classes) with N >= 1 and at least 2 classes")
    if not np.isfinite(z).all():
        raise InputError(f"{what} hold NaN or infinite values; expected finite logits")
    return z


def _marks(jpeg: Any, shape: tuple[int, ...]) -> Optional[np.ndarray]:
    """``jpeg`` (None, or one JPEG mark per face) as bools of ``shape``, or InputError."""
    if jpeg is None:
        return None
    marked = np.asarray(jpeg)
    if marked.dtype != bool:  # a cast would read "no", 0.5 and NaN as marks
        received = f"dtype {marked.dtype}" if marked.dtype != object else one_line(reprlib.repr(jpeg))
        raise InputError(f"jpeg of {received}; expected one bool per face, {shape} (True: a JPEG image)")
    marked = marked.reshape(-1)
    if marked.shape != shape:
        raise InputError(f"jpeg of shape {marked.shape}; expected one flag per face, {shape}")
    return marked


def _check_labels(labels: Any, n: int, c: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (n and (y.min() < 0 or y.max() >= c)):
        raise InputError(f"labels of shape {y.shape} and dtype {y.dtype}; expected ({n},) integer class indices in "
                         f"0..{c - 1}")
    return y


def fit_temperature(logits: Any, labels: Any, grid: np.ndarray = LOG_T_GRID) -> float:
    """The temperature of ``grid`` (log values) whose ``softmax(logits / T)`` gives ``labels`` the highest mean
    log-likelihood.

    Raises:
        InputError: malformed logits or labels, or a grid that is not (K,) finite numbers.
    """
    grid = _floats(grid, "grid", "log temperatures")
    if grid.ndim != 1 or not grid.size or not np.isfinite(grid).all():
        raise InputError(f"grid of shape {grid.shape}; expected (K,) finite log temperatures, K >= 1")
    z = _check_logits(logits)
    y = _check_labels(labels, z.shape[0], z.shape[1])
    rows = np.arange(len(y))
    nll = [-_log_softmax(z, np.exp(t))[rows, y].mean() for t in grid]
    return float(np.exp(grid[int(np.argmin(nll))]))


def _check_mappings(logits: Any, labels: Any, where: str) -> None:
    """InputError where ``logits`` or ``labels`` is not a mapping of factors (one factor's array given alone)."""
    for name, value in (("logits", logits), ("labels", labels)):
        if not isinstance(value, Mapping):
            shape = f" of shape {value.shape}" if isinstance(value, np.ndarray) else ""
            raise InputError(f"{where}{name}: a {type(value).__name__}{shape}; expected a mapping of each down-sample "
                             f"factor to its faces' {'logits (N, C)' if name == 'logits' else 'labels (N,)'}, e.g. "
                             f"{{1.0: {name}}}")


#: Scores are clipped to [EPS, 1 - EPS] before their logit.
EPS = 1e-6


def _score_logit(score: np.ndarray) -> np.ndarray:
    s = np.clip(score, EPS, 1 - EPS)
    return np.log(s) - np.log1p(-s)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def _probabilities_and_outcomes(values: Any, right: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (N >= 1 probabilities) and ``right`` (one 0/1 outcome each) as float64 arrays, or InputError."""
    v = _floats(values, what, "N >= 1 finite probabilities and one 0/1 outcome each")
    r = _floats(right, "right", "0/1 outcomes (whether each label was right)", bools=True)
    if v.ndim != 1 or not len(v) or r.shape != v.shape or not np.isfinite(v).all() or (v < 0).any() or (v > 1).any():
        raise InputError(f"{what} of shape {v.shape}; expected N >= 1 finite probabilities and one 0/1 outcome each")
    if not np.isin(r, (0.0, 1.0)).all():
        raise InputError("right: expected 0/1 outcomes (whether each label was right), one per probability")
    return v, r


def fit_logistic(score: Any, right: Any, iterations: int = 100) -> tuple[float, float]:
    """``(a, b)`` of ``sigmoid(a * logit(score) + b)`` with the highest likelihood of ``right`` (Newton's method;
    a ridge of 1e-6 keeps it finite when the faces are separable).

    Raises:
        InputError: scores outside [0, 1], ``right`` not one 0/1 value per score, or ``iterations`` not >= 1.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise InputError(f"iterations={iterations!r}; expected a whole number of Newton steps >= 1")
    s, r = _probabilities_and_outcomes(score, right, "scores")
    x = np.stack([_score_logit(s), np.ones_like(s)], axis=1)

    def loss(w: np.ndarray) -> float:  # mean negative log-likelihood, with the ridge
        t = x @ w
        return float(np.mean(np.logaddexp(0.0, t) - r * t) + 0.5e-6 * w @ w)

    w = np.array([1.0, 0.0])
    current = loss(w)
    for _ in range(iterations):
        p = _sigmoid(x @ w)
        grad = x.T @ (p - r) / len(s) + 1e-6 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x / len(s) + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        size = 1.0
        while loss(w - size * step) > current and size > 1e-8:  # halve the step until the loss falls
            size /= 2
        if size <= 1e-8:
            break
        w = w - size * step
        current = loss(w)
        if np.abs(size * step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


#: Equal-width bins of :func:`calibration_error`.
ECE_BINS = 15


def calibration_error(confidence: Any, right: Any, bins: int = ECE_BINS) -> float:
    """Expected calibration error, in points: over equal-width confidence bins, the bin's share of the faces times
    the gap between how often their labels are right and their mean confidence (Guo et al. 2017).

    Raises:
        InputError: not one 0/1 outcome per confidence in [0, 1], or fewer than one bin.
    """
    c, r = _probabilities_and_outcomes(confidence, right, "confidence")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise InputError(f"bins={bins!r}; expected an integer >= 1")
    idx = np.minimum((c * bins).astype(int), bins - 1)
    err = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            err += m.mean() * abs(r[m].mean() - c[m].mean())
    return 100 * float(err)


#: What a calibration maps: the logits through one temperature per size, or the label's score through a logistic
#: map per size.
KINDS = ("temperature", "logistic")


@dataclasses.dataclass(frozen=True, eq=False)
class ScoreCalibration(sidecars.MeasuredFile):
    """A map from a face's output and size to the chance its label is right, measured for one model.

    Attributes:
        classes: the model's classes.
        kind: ``"temperature"`` (``params`` per factor: ``(T,)``) or ``"logistic"`` (``(a, b)``).
        factors: the down-sample factors it was fitted at (input side over the crop's side), increasing; one
            factor means one map for every size.
        params: one tuple per factor.
        n: faces each factor's map was fitted on.
        checkpoint_sha256: the checkpoint the model was exported from ('' if unknown).
        source: how it was measured (free text).
        jpeg_params: None, or a second set like ``params`` for crops that are themselves JPEG images (the SDK marks
            them with :func:`~fsrfer_edge.preprocessing.jpeg_quality`), which are right less often at the same score.
        size_weights: None, or the :data:`SIZE_WEIGHTS` weights of a size estimate (:func:`estimate_size`): a crop
            the SDK reads at the input size or larger and does not mark as a JPEG image takes the map at the factor
            it gives (a crop an app enlarged itself would otherwise read as a full-size face).
        track_params: None, or per factor ``(c, d, c_jpeg, d_jpeg)``: what a tracked face's confidence adds to its
            current frame's map for how its frames differ (:meth:`track_confidence`), for frames not marked and
            marked as JPEG images. Logistic calibrations only.
        track_half_life: the tracker half-life ``track_params`` were fitted for (a track of another half-life, or
            averaging log-probabilities, gets no tracked confidence).
    """

    WHAT: ClassVar[str] = "score calibration"
    classes: tuple[str, ...]
    kind: str
    factors: tuple[float, ...]
    params: tuple[tuple[float, ...], ...]
    n: tuple[int, ...] = ()
    checkpoint_sha256: str = ""
    source: str = ""
    jpeg_params: Optional[tuple[tuple[float, ...], ...]] = None
    size_weights: Optional[tuple[float, ...]] = None
    track_params: Optional[tuple[tuple[float, ...], ...]] = None
    track_half_life: Optional[float] = None

    def __post_init__(self) -> None:
        # Held as tuples of str, float and int whatever sequences built it (lists, numpy arrays and numbers): then a
        # list of the model's classes is the model's, it hashes, compares equal to its file and is written as JSON.
        # Nothing is read as what it is not (a file's "12" as the numbers 1 and 2, null as the name 'None').
        for name, convert in (("classes", _name), ("factors", _real), ("n", _count)):
            value = getattr(self, name)
            try:
                if isinstance(value, (str, bytes)):
                    raise TypeError(f"a {type(value).__name__}, {value!r}")
                object.__setattr__(self, name, tuple(convert(v) for v in value))
            except (TypeError, ValueError) as exc:
                expected = {"classes": "a list of at least 2 class names", "factors": "increasing factors >= 1",
                            "n": "one face count >= 1 per factor, or none"}[name]
                raise ModelError(f"score calibration: {name} {value!r} ({exc}); expected {expected}") from None
        for name in ("checkpoint_sha256", "source"):
            if not isinstance(getattr(self, name), str):
                raise ModelError(f"score calibration: {name} {getattr(self, name)!r}; expected a str ('' if unknown)")
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise ModelError(f"score calibration: kind {self.kind!r}; expected one of {KINDS}")
        f = np.asarray(self.factors, float)
        self._check_params("params")
        if self.jpeg_params is not None:
            self._check_params("jpeg_params")
        if self.size_weights is not None:
            try:
                if isinstance(self.size_weights, (str, bytes)):
                    raise TypeError(f"a {type(self.size_weights).__name__}")
                object.__setattr__(self, "size_weights", tuple(_real(v) for v in self.size_weights))
            except (TypeError, ValueError) as exc:
                raise ModelError(f"score calibration: size_weights {self.size_weights!r} ({exc}); expected "
                                 f"{SIZE_WEIGHTS} finite numbers") from None
            if len(self.size_weights) != SIZE_WEIGHTS or not np.isfinite(self.size_weights).all():
                raise ModelError(f"score calibration: size_weights {list(self.size_weights)}; expected "
                                 f"{SIZE_WEIGHTS} finite numbers")
        if self.track_params is not None:
            self._check_track()
        elif self.track_half_life is not None:  # not written to a file without the terms: it would not come back
            raise ModelError(f"score calibration: track_half_life {self.track_half_life!r} without track_params; "
                             "expected both (the tracked-face terms and the half-life they were fitted for) or "
                             "neither")
        if not (np.isfinite(f).all() and (f >= 1).all() and (np.diff(f) > 0).all()):
            raise ModelError(f"score calibration: factors {list(self.factors)}; expected increasing factors >= 1")
        if len(self.classes) < 2:
            raise ModelError(f"score calibration: classes {list(self.classes)}; expected at least 2")
        if self.n and (len(self.n) != len(f) or min(self.n) < 1):
            raise ModelError(f"score calibration: n {list(self.n)}; expected one face count >= 1 per factor "
                             f"({len(f)}), or none")

    def _check_params(self, name: str) -> None:
        """Hold ``params`` (or ``jpeg_params``) as tuples of floats, one tuple per factor of the kind's width."""
        width = 1 if self.kind == "temperature" else 2
        value = getattr(self, name)
        try:
            if isinstance(value, (str, bytes)):
                raise TypeError(f"a {type(value).__name__}")
            object.__setattr__(self, name, tuple(tuple(_real(v) for v in q) for q in value))
        except (TypeError, ValueError) as exc:
            raise ModelError(f"score calibration: {name} {value!r} ({exc}); expected, per factor, {width} "
                             f"number(s) for kind {self.kind!r}") from None
        held = getattr(self, name)
        if not len(self.factors) or len(held) != len(self.factors) or any(len(q) != width for q in held):
            raise ModelError(f"score calibration: {len(self.factors)} factors and {name} {list(held)}; expected, per "
                             f"factor, {width} number(s) for kind {self.kind!r}, at least one factor")
        q = np.asarray(held, float)
        if not np.isfinite(q).all() or (self.kind == "temperature" and (q <= 0).any()):
            raise ModelError(f"score calibration: {name} {list(held)}; expected finite numbers"
                             + (", temperatures > 0" if self.kind == "temperature" else ""))

    def _check_track(self) -> None:
        """Hold ``track_params`` as tuples of 4 floats per factor, with a finite half-life > 0, on a logistic map."""
        value: Any = self.track_params
        try:
            if isinstance(value, (str, bytes)):
                raise TypeError(f"a {type(value).__name__}")
            held = tuple(tuple(_real(v) for v in q) for q in value)
            half_life = _real(self.track_half_life)  # a bool is not a number of frames; None: a TypeError
        except (TypeError, ValueError) as exc:
            raise ModelError(f"score calibration: track_params {value!r}, track_half_life {self.track_half_life!r} "
                             f"({exc}); expected, per factor, 4 numbers (c, d, c_jpeg, d_jpeg), and a half-life > 0 "
                             "(frames)") from None
        object.__setattr__(self, "track_params", held)
        object.__setattr__(self, "track_half_life", half_life)
        if self.kind != "logistic" or len(held) != len(self.factors) or any(len(q) != 4 for q in held) \
                or not np.isfinite(np.asarray(held, float)).all() or not (math.isfinite(half_life) and half_life > 0):
            raise ModelError(f"score calibration: track_params {[list(q) for q in held]} (kind {self.kind!r}, "
                             f"{len(self.factors)} factors), track_half_life {half_life}; expected a "
                             "logistic calibration with 4 finite numbers per factor and a finite half-life > 0")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScoreCalibration):
            return NotImplemented
        return dataclasses.astuple(self) == dataclasses.astuple(other)

    def __hash__(self) -> int:
        return hash(dataclasses.astuple(self))

    # -- fitting ------------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, logits: Mapping[float, Any], labels: Mapping[float, Any], classes: Sequence[str],
            kind: str = "logistic", checkpoint_sha256: str = "", source: str = "") -> "ScoreCalibration":
        """One map per factor from each factor's logits and true labels (:func:`fit_temperature`,
        :func:`fit_logistic`).

        Raises:
            InputError: no factors, mismatched keys, an unknown kind, or malformed logits or labels.
        """
        if not isinstance(kind, str) or kind not in KINDS:  # an array "in" the names compares elementwise
            raise InputError(f"kind={kind!r}; expected one of {KINDS}")
        try:
            named = not isinstance(classes, (str, bytes)) and all(isinstance(c, str) for c in classes)
        except TypeError:  # not iterable: None, a number
            named = False
        if not named:
            raise InputError(f"classes {classes!r}; expected a list of class names (str), the model's")
        _check_mappings(logits, labels, "")
        if not logits or set(logits) != set(labels):
            raise InputError(f"factors {sorted(logits)} of logits and {sorted(labels)} of labels; expected the same "
                             "factors, at least one")
        try:
            by = {float(f): f for f in logits}
        except (TypeError, ValueError):
            by = {}
        if len(by) != len(logits) or not all(np.isfinite(f) and f >= 1 for f in by):
            raise InputError(f"factors {list(logits)}; expected distinct factors >= 1 (the input side over the "
                             "crop's side)")
        params: list[tuple[float, ...]] = []
        n: list[int] = []
        for f in sorted(by):
            z = _check_logits(logits[by[f]], f"logits at factor {f:g}")
            if z.shape[1] != len(classes):
                raise InputError(f"logits at factor {f:g} have {z.shape[1]} classes; expected {len(classes)}")
            y = _check_labels(labels[by[f]], z.shape[0], z.shape[1])
            if kind == "temperature":
                params.append((fit_temperature(z, y),))
            else:
                lp = _log_softmax(z)
                params.append(fit_logistic(np.exp(lp.max(1)), (lp.argmax(1) == y).astype(np.float64)))
            n.append(int(z.shape[0]))
        return cls(tuple(str(c) for c in classes), kind, tuple(sorted(by)), tuple(params), tuple(n),
                   checkpoint_sha256, source)

    # -- using --------------------------------------------------------------------------------------------------
    def with_jpeg(self, logits: Mapping[float, Any], labels: Mapping[float, Any],
                  min_faces: int = 100) -> "ScoreCalibration":
        """This calibration with :attr:`jpeg_params` fitted per factor on crops that are JPEG images (each factor's
        logits and labels, keyed as :attr:`factors`); a factor with fewer than ``min_faces`` of them keeps its
        ``params`` there (none with enough: this calibration, without ``jpeg_params``). Logistic calibrations only.

        Raises:
            InputError: another kind, keys that are not this calibration's factors, a ``min_faces`` under 1, logits of
                another class count, or malformed logits or labels.
        """
        if self.kind != "logistic":
            raise InputError(f"with_jpeg: kind {self.kind!r}; expected a logistic calibration")
        _check_mappings(logits, labels, "with_jpeg: ")
        if isinstance(min_faces, bool) or not isinstance(min_faces, (int, np.integer)) or min_faces < 1:
            raise InputError(f"with_jpeg: min_faces={min_faces!r}; expected an integer >= 1")
        by, lab = self._by_factor(logits, "logits"), self._by_factor(labels, "labels")
        out: list[tuple[float, ...]] = []
        for f, base in zip(self.factors, self.params):
            z = _floats(logits[by[f]], f"logits at factor {f:g}", "(N, num_classes) finite numbers")
            if z.ndim == 2 and z.shape[1] != len(self.classes):  # another model's logits, even unused
                raise InputError(f"with_jpeg: logits at factor {f:g} have {z.shape[1]} classes; expected "
                                 f"{len(self.classes)}, this calibration's")
            if z.ndim and len(z) < min_faces:
                out.append(base)
                continue
            z = _check_logits(z, f"logits at factor {f:g}")
            y = _check_labels(labels[lab[f]], z.shape[0], z.shape[1])
            lp = _log_softmax(z)
            out.append(fit_logistic(np.exp(lp.max(1)), (lp.argmax(1) == y).astype(np.float64)))
        if tuple(out) == self.params:  # no factor had enough: no maps of their own (and no JPEG check per crop)
            return self
        return dataclasses.replace(self, jpeg_params=tuple(out))

    def _by_factor(self, given: Mapping[Any, Any], what: str) -> dict[float, Any]:
        """``given``'s keys by the factor each names, or InputError where they are not this calibration's factors."""
        try:
            by = {float(f): f for f in given}
        except (TypeError, ValueError):
            by = {}
        if len(by) != len(given) or set(by) != set(self.factors):
            raise InputError(f"with_jpeg: {what} at factors {list(given)}; expected this calibration's "
                             f"{list(self.factors)}")
        return by

    def params_at(self, factors: Any, jpeg: Any = None) -> np.ndarray:
        """(N, width) each face's parameters at its factor: interpolated linearly in log factor (log T for
        temperatures), the nearest end's outside the fitted factors (a factor under 1, a crop larger than the
        input, takes the first's); from :attr:`jpeg_params` for the faces ``jpeg`` marks (N booleans), where
        there are some."""
        f = _floats(factors, "factors", "positive finite numbers")
        if f.ndim > 1:  # (2, 2) would be read as 4 faces, as confidence() refuses it
            raise InputError(f"factors of shape {f.shape}; expected one factor per face, (N,)")
        f = f.reshape(-1)
        bad = ~np.isfinite(f) | (f <= 0)
        if bad.any():  # the bad ones named (at most 8), not the first 8 of a large batch
            raise InputError(f"factors {f[bad][:8].tolist()} ({int(bad.sum())} of {len(f)}); expected positive finite "
                             "numbers")
        out = self._interpolate(self.params, f)
        marked = _marks(jpeg, f.shape)  # checked also where there are no JPEG maps: a wrong count is a mistake
        if marked is not None and self.jpeg_params is not None and marked.any():
            out = np.where(marked[:, None], self._interpolate(self.jpeg_params, f), out)
        return out

    def _interpolate(self, params: tuple[tuple[float, ...], ...], f: np.ndarray) -> np.ndarray:
        q = np.asarray(params, np.float64)
        if self.kind == "temperature":
            q = np.log(q)
        if len(self.factors) == 1:
            out = np.repeat(q, len(f), axis=0)
        else:
            x = np.log(np.asarray(self.factors, np.float64))
            out = np.stack([np.interp(np.log(f), x, q[:, k]) for k in range(q.shape[1])], axis=1)
        return np.exp(out) if self.kind == "temperature" else out

    def confidence(self, logits: Any, factors: Any, jpeg: Any = None) -> np.ndarray:
        """(N,) for each face the chance its label (the argmax, unchanged) is right, at its factor (with
        :attr:`jpeg_params` for the faces ``jpeg`` marks as JPEG images, where the calibration has them).

        Raises:
            InputError: malformed logits, factors that are not one positive number per face (or one for all), or a
                ``jpeg`` that is not one bool per face (numbers, strings and complex values are not read as others).
        """
        z = _check_logits(logits)
        f = _floats(factors, "factors", "one positive number per face (or one for all)")
        if f.ndim == 0:
            f = np.full(z.shape[0], float(f))
        if f.shape != (z.shape[0],):
            raise InputError(f"factors of shape {f.shape}; expected one per face, ({z.shape[0]},)")
        if z.shape[1] != len(self.classes):
            raise InputError(f"logits have {z.shape[1]} classes; this calibration has {len(self.classes)}")
        q = self.params_at(f, jpeg)
        if self.kind == "temperature":
            return np.exp(_log_softmax(z, q[:, :1]).max(axis=1))
        score = np.exp(_log_softmax(z).max(axis=1))
        return _sigmoid(q[:, 0] * _score_logit(score) + q[:, 1])

    def track_confidence(self, probs: Any, spread: Any, factors: Any, jpeg: Any = None) -> np.ndarray:
        """(N,) for each tracked face the chance its label (the argmax of its track's mean ``probs``) is right:
        ``sigmoid(a z + b + c g + d g z)``, with ``(a, b)`` the map its current frame takes (its factor, and
        :attr:`jpeg_params` where ``jpeg`` marks it), ``z`` the logit of the mean's largest probability, ``g`` its
        track's ``spread`` (:attr:`fsrfer_edge.tracking.FaceTracker.spread`: 0 where the frames repeat each other,
        which then take the frame's map exactly) and ``(c, d)`` from :attr:`track_params` at that factor and mark
        (docs/experiments.md, "Terms per JPEG mark, decided on fresh clips").

        Raises:
            ModelError: this calibration has no :attr:`track_params`.
            InputError: malformed probabilities (a row summing to 0 included), spreads (finite, >= 0, one per face),
                factors, or a ``jpeg`` that is not one bool per face.
        """
        if self.track_params is None:
            raise ModelError("this score calibration has no tracked-face terms (track_params); expected a calibration "
                             "fitted with them (scripts/track_maps.py --write-calibration)")
        p = _floats(probs, "probs", "(N, num_classes) probabilities")
        if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] != len(self.classes) or not np.isfinite(p).all() \
                or (p < 0).any():
            raise InputError(f"probs of shape {p.shape}; expected (N, {len(self.classes)}) finite probabilities >= 0, "
                             "N >= 1")
        empty = np.flatnonzero(p.sum(axis=1) <= 0)
        if empty.size:  # no largest probability to read a label or a confidence from
            raise InputError(f"probs: row {int(empty[0])} sums to 0 ({empty.size} of {len(p)} rows); expected each "
                             "face's track mean probabilities, which sum to 1")
        g = _floats(spread, "spread", "one finite number >= 0 per face").reshape(-1)
        if g.shape != (p.shape[0],) or not np.isfinite(g).all() or (g < 0).any():
            raise InputError(f"spread of shape {g.shape}; expected one finite number >= 0 per face, ({p.shape[0]},)")
        f = _floats(factors, "factors", "one positive number per face (or one for all)")
        if f.ndim == 0:
            f = np.full(p.shape[0], float(f))
        if f.shape != (p.shape[0],):
            raise InputError(f"factors of shape {f.shape}; expected one per face, ({p.shape[0]},)")
        ab = self.params_at(f, jpeg)
        cd = self._interpolate(self.track_params, f)
        marked = _marks(jpeg, f.shape)
        cd = cd[:, :2] if marked is None else np.where(marked[:, None], cd[:, 2:], cd[:, :2])
        z = _score_logit(np.max(p, axis=1) / np.maximum(p.sum(axis=1), 1e-30))
        return _sigmoid(ab[:, 0] * z + ab[:, 1] + cd[:, 0] * g + cd[:, 1] * g * z)

    # -- files --------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"classes": list(self.classes), "kind": self.kind, "factors": list(self.factors),
             "params": [list(q) for q in self.params], "n": list(self.n),
             "checkpoint_sha256": self.checkpoint_sha256, "source": self.source}
        if self.jpeg_params is not None:
            d["jpeg_params"] = [list(q) for q in self.jpeg_params]
        if self.size_weights is not None:
            d["size_weights"] = list(self.size_weights)
        if self.track_params is not None:
            d["track_params"] = [list(q) for q in self.track_params]
            d["track_half_life"] = self.track_half_life
        return d

    def estimated_factors(self, pixels: Any) -> np.ndarray:
        """(N,) the down-sample factor :attr:`size_weights` read from faces at the input size ((N, S, S) or
        (N, C, S, S) pixel values; :func:`estimate_size`), within 1 and the largest fitted factor.

        Raises:
            ModelError: this calibration has no size estimate.
        """
        if self.size_weights is None:
            raise ModelError("this score calibration has no size estimate (size_weights); expected one: "
                             "fsrfer-export --eval-data or scripts/enlarged_confidence.py --write-calibration adds it")
        return estimate_size(pixels, self.size_weights, max(self.factors))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ScoreCalibration":
        sidecars.refuse_unknown_fields(cls, d, "score calibration")  # a misspelled "jpeg_params": no JPEG maps
        try:  # each value as the file holds it: checked, and its errors named, by __post_init__
            return cls(d["classes"], d["kind"], d["factors"], d["params"], d.get("n", ()),
                       d.get("checkpoint_sha256", ""), d.get("source", ""), d.get("jpeg_params"),
                       d.get("size_weights"), d.get("track_params"), d.get("track_half_life"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"score calibration: expected classes, kind, factors and params; {exc!r}") from None


#: Added to the size statistics before their logs (grey levels): a flat face's Laplacian and gradient are 0.
SIZE_EPS = 1e-3
#: How many weights the size estimate has: a constant, three statistics and their squares.
SIZE_WEIGHTS = 7
#: Faces :func:`size_features` reads at a time.
SIZE_CHUNK = 1024


def size_features(pixels: Any) -> np.ndarray:
    """(N, 7) the statistics a face's size is estimated from, of (N, S, S) or (N, C, S, S) pixel values (the
    channels' mean, rounded to whole grey levels): 1, then the logs of the mean |Laplacian|, the mean |gradient| and
    the standard deviation, then their squares. A face down-sampled and enlarged back has lost its high frequencies,
    which is what they measure (as the fused graph's own factor estimator, ``trainer.models.FactorEstimator``).
    Computed :data:`SIZE_CHUNK` faces at a time, so that a large set costs time, not memory."""
    if isinstance(pixels, np.ndarray) and pixels.ndim in (3, 4) and len(pixels) > SIZE_CHUNK:
        return np.concatenate([size_features(pixels[i:i + SIZE_CHUNK]) for i in range(0, len(pixels), SIZE_CHUNK)])
    g = _floats(pixels, "pixels", "(N, S, S) or (N, C, S, S) pixel values")
    shape = g.shape
    if g.ndim == 4 and g.shape[1] > 0:
        g = g.mean(axis=1)
    if g.ndim != 3 or min(g.shape[1:]) < 3 or not np.isfinite(g).all():
        raise InputError(f"pixels of shape {shape}; expected (N, S, S) or (N, C, S, S) finite pixel values, S >= 3")
    g = np.rint(g)
    lap = np.abs(4.0 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:])
    grad = np.abs(np.diff(g, axis=2)).mean(axis=(1, 2)) + np.abs(np.diff(g, axis=1)).mean(axis=(1, 2))
    stats = np.log(np.stack([lap.mean(axis=(1, 2)), grad, g.std(axis=(1, 2))], axis=1) + SIZE_EPS)
    return np.concatenate([np.ones((len(g), 1)), stats, stats * stats], axis=1)


def fit_size_estimator(pixels: Any, factors: Any) -> tuple[float, ...]:
    """The :data:`SIZE_WEIGHTS` weights mapping :func:`size_features` of faces at the input size to log2 of their
    down-sample ``factors`` (N,), by least squares."""
    x = size_features(pixels)
    f = _floats(factors, "factors", "one factor >= 1 per face").reshape(-1)
    if f.shape != (len(x),):
        raise InputError(f"factors of shape {f.shape}; expected one factor >= 1 per face, ({len(x)},)")
    bad = ~(np.isfinite(f) & (f >= 1))
    if bad.any():
        raise InputError(f"factors {f[bad][:8].tolist()} ({int(bad.sum())} of {len(f)}); expected one finite factor "
                         ">= 1 per face")
    w, *_ = np.linalg.lstsq(x, np.log2(f), rcond=None)
    return tuple(float(v) for v in w)


def estimate_size(pixels: Any, weights: Sequence[float], largest: float) -> np.ndarray:
    """(N,) each face's estimated down-sample factor from :func:`size_features`, within 1..``largest``.

    Raises:
        InputError: ``weights`` that are not :data:`SIZE_WEIGHTS` finite numbers, a ``largest`` under 1, or pixels
            that are not faces (:func:`size_features`).
    """
    w = _floats(weights, "weights", f"{SIZE_WEIGHTS} finite numbers")
    if w.shape != (SIZE_WEIGHTS,) or not np.isfinite(w).all():
        raise InputError(f"weights of shape {w.shape}; expected {SIZE_WEIGHTS} finite numbers")
    top = _floats(largest, "largest", "one factor >= 1")
    if top.shape != () or not (np.isfinite(top) and top >= 1):
        raise InputError(f"largest={largest!r}; expected one finite factor >= 1")
    # the exponent bounded first: weights from a small fit may send a flat face's past what exp2 holds
    log2_factor = np.clip(size_features(pixels) @ w, 0.0, np.log2(float(top)) + 1.0)
    return np.clip(np.exp2(log2_factor), 1.0, float(top))


def score_calibration_for(model_path: Union[str, "os.PathLike[str]"], classes: Sequence[str],
                          checkpoint_sha256: str) -> Optional[ScoreCalibration]:
    """The score calibration of a model, or None: ``NAME.scores.json`` beside ``NAME.onnx`` (or ``NAME.fp16.onnx``,
    ``NAME.int8-u8s8.onnx``, ``NAME.int8.<digest>...engine``), else a packaged one measured on the same checkpoint
    (:func:`fsrfer_edge.sidecars.find`)."""
    return sidecars.find(model_path, classes, checkpoint_sha256, SUFFIX, ScoreCalibration.load, "score calibration")
