"""How a group of faces divides among the expressions, corrected for what the model confuses at each face size.

Counting each face's label, or averaging its probabilities, leans towards the classes the model guesses when a
face is too small to tell. If ``M[i, j]`` is the mean output for class ``i`` over faces of true class ``j`` (a
confusion matrix of labels, or of probabilities), a group's observed mean output is about ``M q`` for its true
class shares ``q``; the adjusted estimate is the point of the probability simplex that ``M`` maps closest to it
(adjusted count and probabilistic adjusted count: Forman 2008, Bella et al. 2010). Faces of different sizes
bring the matrix of their own size, and the group's is the mean of its faces'.

    cal = GroupCalibration.fit({f: probs_f for f in factors}, {f: labels for f in factors}, classes)
    shares = cal.estimate(probs, factors_of_the_faces)          # (C,) class shares of the group

numpy only (the SDK's runtime path).
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import logging
import math
import os
from typing import Any, ClassVar, Mapping, Optional, Sequence, Union

import numpy as np

from . import sidecars
from .errors import InputError, ModelError

logger = logging.getLogger(__name__)

#: Where a model's group calibration is looked for: beside the model, its name with this suffix instead of the
#: model's (``mymodel.onnx`` -> ``mymodel.groups.json``), then among the package's (the shipped model's).
SUFFIX = ".groups.json"
PACKAGED = sidecars.PACKAGED

#: What a calibration's matrices average: each face's probabilities, or its label counted once.
KINDS = ("probs", "counts")


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row of ``v`` (..., C) onto the probability simplex (Duchi et al. 2008)."""
    v = np.asarray(v, dtype=np.float64)
    u = -np.sort(-v, axis=-1)
    css = np.cumsum(u, axis=-1) - 1.0
    k = np.arange(1, v.shape[-1] + 1)
    rho = np.sum(u - css / k > 0, axis=-1, keepdims=True)  # >= 1 always (the largest entry passes)
    theta = np.take_along_axis(css, rho - 1, axis=-1) / rho
    return np.maximum(v - theta, 0.0)


#: Up to this many classes the simplex least squares are solved exactly, every support at once (2^C - 1 small
#: linear systems: 127 for FER's 7 classes, about 0.2 ms a group); above it, iteratively.
EXACT_MAX_CLASSES = 10


def simplex_least_squares(m: np.ndarray, b: np.ndarray, tol: float = 1e-10, max_iter: int = 20000) -> np.ndarray:
    """argmin over the simplex of ||m q - b||, for each of a batch: ``m`` (..., K, C), ``b`` (..., K) -> (..., C).

    Exact for up to :data:`EXACT_MAX_CLASSES` classes (:func:`_exact_simplex_least_squares`), else iterative
    (:func:`_iterative_simplex_least_squares`, to ``tol``)."""
    m = np.asarray(m, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if m.shape[-1] <= EXACT_MAX_CLASSES:
        return _exact_simplex_least_squares(m, b)
    return _iterative_simplex_least_squares(m, b, tol, max_iter)


@functools.lru_cache(maxsize=None)
def _supports(c: int) -> np.ndarray:
    """(2^c - 1, c) bools: every non-empty subset of c classes."""
    return (np.arange(1, 2 ** c)[:, None] >> np.arange(c)) & 1 == 1


#: The exact solver's part of a batch holds at most about this many numbers in its KKT systems (8 MiB of them:
#: 129 problems of 7 classes, 8 of 10), so that a large batch costs time, not memory.
_EXACT_PART_ELEMENTS = 1 << 20
#: Bootstrap draws :meth:`GroupCalibration.interval` holds at a time (resamples x faces): 8 MB of counts.
_RESAMPLE_BLOCK = 1 << 20


def _exact_simplex_least_squares(m: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The optimum is the best of the points that solve the problem with the simplex's equality alone on some
    support (the others held at 0) and are non-negative: the optimum's own support gives it, and every other such
    point is feasible, so no better. Each support's KKT system [[G_SS, 1], [1^T, 0]] is solved at once for a part
    of the batch (G = m^T m); a singular one (columns of ``m`` alike) by least squares. ``m`` and ``b``'s batch
    dimensions broadcast (one matrix for many groups)."""
    (k, c), batch = m.shape[-2:], np.broadcast_shapes(m.shape[:-2], b.shape[:-1])
    m2 = np.broadcast_to(m, batch + (k, c)).reshape(-1, k, c)
    b2 = np.broadcast_to(b, batch + (k,)).reshape(-1, k)
    part = max(1, _EXACT_PART_ELEMENTS // ((2 ** c - 1) * (c + 1) ** 2))
    out = np.empty((len(b2), c))
    for s in range(0, len(b2), part):
        out[s:s + part] = _exact_part(m2[s:s + part], b2[s:s + part])
    return out.reshape(batch + (c,))


def _exact_part(m2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """:func:`_exact_simplex_least_squares` of ``m2`` (n, K, C), ``b2`` (n, K) -> (n, C)."""
    c = m2.shape[-1]
    g = np.swapaxes(m2, -1, -2) @ m2                              # (n, C, C)
    h = (np.swapaxes(m2, -1, -2) @ b2[..., None])[..., 0]         # (n, C)
    sup = _supports(c)                                            # (s, C)
    a = np.zeros((len(g), len(sup), c + 1, c + 1))
    a[..., :c, :c] = g[:, None] * (sup[:, :, None] & sup[:, None, :])
    a[..., np.arange(c), np.arange(c)] += ~sup                    # q_j = 0 off the support
    a[..., :c, c] = sup
    a[..., c, :c] = sup
    rhs = np.concatenate([h[:, None] * sup, np.ones((len(g), len(sup), 1))], axis=-1)
    try:
        sol = np.linalg.solve(a, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        sol = (np.linalg.pinv(a) @ rhs[..., None])[..., 0]
    q = sol[..., :c]
    obj = np.einsum("nsi,nij,nsj->ns", q, g, q) - 2 * np.einsum("nsi,ni->ns", q, h)
    feasible = np.all(q >= -1e-10, axis=-1) & (np.abs(q.sum(-1) - 1.0) < 1e-8)
    obj = np.where(feasible, obj, np.inf)
    best = np.take_along_axis(q, obj.argmin(1)[:, None, None], axis=1)[:, 0]
    best = np.maximum(best, 0.0)
    return best / best.sum(-1, keepdims=True)


def _iterative_simplex_least_squares(m: np.ndarray, b: np.ndarray, tol: float, max_iter: int) -> np.ndarray:
    """Accelerated projected gradient (FISTA) from the uniform point, step 1 / ||m||_2^2 per problem, its momentum
    restarted where it stops helping (O'Donoghue and Candes 2015), until a plain projected-gradient step (one
    taken without momentum) moves no entry more than ``tol``: that is the optimum's fixed-point condition. An
    accelerated step that does not move proves nothing (momentum past a vertex projects back onto it), so
    there the momentum restarts instead."""
    c = m.shape[-1]
    mt_m = np.swapaxes(m, -1, -2) @ m
    mt_b = (np.swapaxes(m, -1, -2) @ b[..., None])[..., 0]
    lip = np.linalg.norm(m, 2, axis=(-2, -1))[..., None] ** 2
    step = 1.0 / np.maximum(lip, 1e-12)
    q = np.full(b.shape[:-1] + (c,), 1.0 / c)
    y, t = q.copy(), np.ones(b.shape[:-1] + (1,))
    for _ in range(max_iter):
        plain = np.all(y == q, axis=-1, keepdims=True)  # this step is taken without momentum
        grad = (mt_m @ y[..., None])[..., 0] - mt_b
        q_next = project_simplex(y - step * grad)
        still = np.max(np.abs(q_next - q), axis=-1, keepdims=True) <= tol
        if np.all(still & plain):
            return q_next
        restart = still | (np.sum((y - q_next) * (q_next - q), axis=-1, keepdims=True) > 0)
        t_next = np.where(restart, 1.0, (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0)
        y = np.where(restart, q_next, q_next + ((t - 1.0) / t_next) * (q_next - q))
        q, t = q_next, t_next
    return q


def _checked_group(probs: Any, factors: Any, c: int) -> tuple[np.ndarray, np.ndarray]:
    """A group's probabilities (N, C) and factors (N,) as float arrays, or InputError saying what was expected."""
    try:
        p = np.asarray(probs, dtype=np.float64)
        f = np.asarray(factors, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:  # text, rows of other lengths, ints past a float
        raise InputError(f"expected probabilities (N, {c}) and factors (N,) as numbers; they could not be read as "
                         f"numbers ({exc})") from None
    if p.ndim <= 2 and not p.size and f.shape == (0,):  # no faces, given as [] or crowd.own_probs' (0, 0)
        p = p.reshape(0, c)
    if p.ndim != 2 or p.shape[1] != c or f.shape != (len(p),):
        raise InputError(f"expected probabilities (N, {c}) and factors (N,); got {p.shape}, {f.shape}")
    bad_p, bad_f = p[~np.isfinite(p)], f[~(np.isfinite(f) & (f > 0))]
    if bad_p.size or bad_f.size:
        raise InputError(f"expected probabilities (N, {c}) and factors (N,), all finite, factors > 0 (48 px / the "
                         f"face's side for a 48 px model); got {bad_p.size} probabilities not finite "
                         f"{bad_p[:5].tolist()} and {bad_f.size} factors not finite and > 0 {bad_f[:5].tolist()}")
    if len(p) and (np.any(p < 0) or not np.allclose(p.sum(1), 1.0, atol=1e-3)):
        raise InputError("expected probabilities (rows of non-negative numbers summing to 1, the model's "
                         "softmax), not logits")
    return p, f


def _same(a: Any, b: Any) -> bool:
    """Whether two fields are equal, arrays by value (shape and entries)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    return bool(a == b)


def stratified_picks(labels: np.ndarray, resamples: int, seed: int = 0,
                     rows: Optional[np.ndarray] = None) -> list[np.ndarray]:
    """``resamples`` index arrays into ``labels``, each ``rows`` (default: all) resampled with replacement within
    each class, so that every class keeps its number of faces. Seeded."""
    rows = np.arange(len(labels)) if rows is None else np.asarray(rows)
    rng = np.random.default_rng(seed)
    by_class = [rows[labels[rows] == c] for c in np.unique(labels[rows])]
    return [np.concatenate([rng.choice(r, size=len(r)) for r in by_class]) for _ in range(resamples)]


def _resampled(d: Any) -> Optional[np.ndarray]:
    """:attr:`GroupCalibration.resampled` from its JSON form (None stays None); ModelError saying what was expected
    for a malformed, corrupt or truncated one."""
    if d is None:
        return None
    expected = ('group calibration: expected resampled as {"shape": [R, F, C, C], "float32_base64": the R*F*C*C '
                "little-endian float32 numbers in base64}; ")
    try:
        shape = tuple(int(v) for v in d["shape"])
        data = base64.b64decode(d["float32_base64"], validate=True)  # junk characters are an error, not skipped
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ModelError(expected + f"got {type(exc).__name__}: {exc}") from None
    if len(shape) != 4 or min(shape) < 0 or len(data) != 4 * int(np.prod(shape)):
        raise ModelError(expected + f"got shape {list(shape)} and {len(data)} bytes (truncated or corrupt?)")
    return np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float64)


def _integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _read_labels(value: Any, where: str) -> np.ndarray:
    """Labels as an array, or InputError (rows of other lengths cannot be read as one)."""
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: expected labels (N,), integers 0..C-1 (class indices); they could not be read as "
                         f"one array ({exc})") from None


def _check_fit_arguments(probs: Any, labels: Any, classes: Any, resamples: Any, seed: Any) -> None:
    """InputError for arguments of :meth:`GroupCalibration.fit` that are not of the kinds it takes (its faces are
    checked where they are read)."""
    for name, value in (("probs", probs), ("labels", labels)):
        if not isinstance(value, Mapping):
            raise InputError(f"{name}: expected a mapping of each down-sample factor to its faces' "
                             f"{'probabilities (N, C)' if name == 'probs' else 'labels (N,)'}; got "
                             f"{type(value).__name__}")
    bad = [f for f in dict.fromkeys([*probs, *labels]) if isinstance(f, (bool, np.bool_))
           or not isinstance(f, (int, float, np.integer, np.floating)) or not (math.isfinite(f) and f >= 1)]
    if bad:
        raise InputError(f"factors: expected finite numbers >= 1 (48 px / the faces' side for a 48 px model); got "
                         f"{bad}")
    try:
        names = None if isinstance(classes, str) else list(classes)
    except TypeError:  # not iterable
        names = None
    # names as a file stores them (text only: a file of the numbers 0..C-1 would not load back)
    if names is None or len(names) < 2 or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise InputError(f"classes: expected 2 or more distinct class names (str), in the model's probability order; "
                         f"got {names if names is not None else repr(classes)}")
    if not _integer(resamples) or resamples == 1 or resamples < 0:
        raise InputError(f"resamples={resamples!r}: expected an integer, 0 or >= 2 (sets of resampled matrices, "
                         "e.g. 200)")
    _check_seed(seed)


def _check_seed(seed: Any) -> None:
    if not _integer(seed) or seed < 0:  # numpy's generators take no other
        raise InputError(f"seed={seed!r}: expected an integer >= 0")


class GroupTally:
    """A group estimate over faces that arrive in parts (the frames of a video): running sums of the faces'
    outputs and of their sizes' weights, so that :meth:`shares` over every face so far costs no more than one
    frame's. The same as :meth:`GroupCalibration.estimate` of all the faces at once."""

    def __init__(self, calibration: GroupCalibration, kind: str = "probs") -> None:
        if not isinstance(calibration, GroupCalibration):
            raise InputError(f"calibration: expected a GroupCalibration (e.g. CrowdAnalyzer's groups, or "
                             f"GroupCalibration.load(path)); got {type(calibration).__name__}")
        if not isinstance(kind, str) or kind not in KINDS:  # an array "in" the names compares elementwise
            raise InputError(f"kind {kind!r}; expected one of {KINDS}")
        self.calibration, self.kind = calibration, kind
        self._observed = np.zeros(len(calibration.classes))
        self._weights = np.zeros(len(calibration.factors))
        self.n = 0

    def add(self, probs: np.ndarray, factors: np.ndarray | Sequence[float]) -> None:
        """Add faces: ``probs`` (N, C) their probabilities, ``factors`` (N,) their down-sample factors (N may be 0)."""
        c = len(self.calibration.classes)
        p, f = _checked_group(probs, factors, c)
        if not len(p):
            return
        self._observed += p.sum(0) if self.kind == "probs" else np.bincount(p.argmax(1), minlength=c)
        self._weights += _factor_weights(self.calibration.factors, np.maximum(f, 1.0)).sum(0)
        self.n += len(p)

    def shares(self) -> Optional[np.ndarray]:
        """Class shares (C,) of every face added so far; None before the first."""
        if not self.n:
            return None
        m = np.tensordot(self._weights / self.n, getattr(self.calibration, self.kind), axes=1)
        return simplex_least_squares(m, self._observed / self.n)


def _factor_weights(table: Sequence[float], factors: np.ndarray) -> np.ndarray:
    """(N, F) weights of the table's factors for each face's factor: linear in log2 between the two that bracket
    it, clamped to the table's ends."""
    logs = np.log2(np.asarray(table, dtype=np.float64))
    x = np.clip(np.log2(factors), logs[0], logs[-1])
    hi = np.clip(np.searchsorted(logs, x, side="left"), 1, len(logs) - 1) if len(logs) > 1 else np.zeros(len(x), int)
    w = np.zeros((len(x), len(logs)))
    if len(logs) == 1:
        w[:, 0] = 1.0
        return w
    lo = hi - 1
    frac = (x - logs[lo]) / (logs[hi] - logs[lo])
    rows = np.arange(len(x))
    w[rows, lo] = 1.0 - frac
    w[rows, hi] += frac
    return w


@dataclasses.dataclass(frozen=True)
class GroupCalibration(sidecars.MeasuredFile):
    """A model's confusions at each tabulated face-size factor, and the group estimate they correct.

    Attributes:
        classes: class names, in the model's probability order.
        factors: down-sample factors of the table (48 px / factor is the face side), increasing.
        probs: (F, C, C) ``probs[k, i, j]``: mean probability of class ``i`` over faces of class ``j`` at
            ``factors[k]``.
        counts: (F, C, C) the same for labels: share of class-``j`` faces labelled ``i``.
        n: faces of each class the matrices were measured on (C,), the smallest of the factors'.
        checkpoint_sha256: the checkpoint of the model it was measured on (its ``ModelInfo.checkpoint_sha256``;
            empty: not recorded, and not checked).
        source: what it was measured on and how (free text, e.g. the command).
        resampled: optional (R, F, C, C) probability matrices, each measured on the faces resampled with
            replacement within each class: what :meth:`interval` needs to see the matrices' own error.
    """

    WHAT: ClassVar[str] = "group calibration"
    classes: tuple[str, ...]
    factors: tuple[float, ...]
    probs: np.ndarray = dataclasses.field(hash=False)     # hashed by the other fields (arrays are unhashable)
    counts: np.ndarray = dataclasses.field(hash=False)
    n: tuple[int, ...] = ()
    checkpoint_sha256: str = ""
    source: str = ""
    resampled: Optional[np.ndarray] = dataclasses.field(default=None, repr=False, hash=False)

    def __post_init__(self) -> None:
        self._check_record_fields()
        c, f = len(self.classes), len(self.factors)
        if c < 2 or f < 1 or any(not (1 <= x < math.inf) for x in self.factors) \
                or list(self.factors) != sorted(set(self.factors)):
            raise ModelError(f"group calibration: expected 2+ classes and increasing finite factors >= 1; got "
                             f"{c} classes, factors {list(self.factors)}")
        for name in KINDS:
            a = getattr(self, name)
            if not isinstance(a, np.ndarray) or a.shape != (f, c, c) or not np.all(np.isfinite(a)) or np.any(a < 0) \
                    or not np.allclose(a.sum(axis=1), 1.0, atol=1e-3):
                got = f"shape {getattr(a, 'shape', type(a).__name__)}"
                if isinstance(a, np.ndarray) and a.shape == (f, c, c):
                    sums = a.sum(axis=1)
                    got += (f", column sums {np.nanmin(sums):.3f} to {np.nanmax(sums):.3f}, smallest entry "
                            f"{np.min(a):.3g}")
                raise ModelError(f"group calibration: {name} must be ({f}, {c}, {c}) non-negative with columns "
                                 f"summing to 1; got {got}")
        r = self.resampled
        if r is not None and (not isinstance(r, np.ndarray) or r.dtype.kind not in "fiu" or r.ndim != 4
                              or r.shape[1:] != (f, c, c) or len(r) < 2 or not np.all(np.isfinite(r))
                              or np.any(r < 0) or not np.allclose(r.sum(axis=2), 1.0, atol=1e-3)):
            got = f"shape {getattr(r, 'shape', type(r).__name__)}"
            if isinstance(r, np.ndarray) and r.dtype.kind in "fiu" and r.size and r.ndim >= 3:
                sums = r.sum(axis=2)
                got += (f", column sums {np.nanmin(sums):.3f} to {np.nanmax(sums):.3f}, smallest entry "
                        f"{np.min(r):.3g}")
            raise ModelError(f"group calibration: resampled must be (R >= 2, {f}, {c}, {c}) non-negative "
                             f"probability matrices with columns summing to 1; got {got}")

    def _check_record_fields(self) -> None:
        """Hold ``classes``, ``factors`` and ``n`` as tuples of str, float and int whatever sequences built them (lists,
        numpy arrays), and refuse what a file could not hold or would read back as something else (numbers as class
        names, text as factors), as a ``checkpoint_sha256`` or ``source`` that is not text: what :meth:`save` writes
        must load back."""
        expected = {"classes": "a list of 2 or more class names (str)", "factors": "increasing finite factors >= 1",
                    "n": "the faces of each class (C whole numbers), or none"}
        for name, convert in (("classes", sidecars.text_value), ("factors", sidecars.real_value),
                              ("n", sidecars.count_value)):
            value = getattr(self, name)
            try:
                if isinstance(value, (str, bytes)):
                    raise TypeError(f"a {type(value).__name__}")
                held = tuple(convert(v) for v in value)
            except (TypeError, ValueError) as exc:
                raise ModelError(f"group calibration: {name} {value!r} ({exc}); expected {expected[name]}") from None
            object.__setattr__(self, name, held)
        for name in ("checkpoint_sha256", "source"):
            if not isinstance(getattr(self, name), str):
                raise ModelError(f"group calibration: {name} {getattr(self, name)!r}; expected a str ('' if unknown)")

    def __eq__(self, other: object) -> bool:
        """Equal when every field is, the arrays by value (the generated comparison would ask numpy for the
        truth of an array)."""
        if not isinstance(other, GroupCalibration):
            return NotImplemented
        return all(_same(getattr(self, k.name), getattr(other, k.name)) for k in dataclasses.fields(self))

    @classmethod
    def fit(cls, probs: Mapping[float, np.ndarray], labels: Mapping[float, np.ndarray],
            classes: Sequence[str], resamples: int = 0, seed: int = 0) -> "GroupCalibration":
        """Measure the matrices from labelled faces: ``probs[f]`` (N_f, C) the model's probabilities of faces at
        factor ``f``, ``labels[f]`` (N_f,) their true classes. Every class needs faces at every factor. With
        ``resamples``, also that many sets of probability matrices from the faces resampled with replacement
        within each class (the same faces at every factor, so every factor's labels must be the same), seeded:
        :attr:`resampled`, for :meth:`interval`.

        Raises:
            InputError: ``probs`` or ``labels`` is not a mapping of factors (finite numbers >= 1), their factors
                differ, ``classes`` are not 2 or more distinct names, ``resamples`` is not an integer 0 or >= 2,
                ``seed`` is not an integer >= 0, or the faces are not as above (a class without faces at some factor,
                labels out of range, logits for probabilities)."""
        _check_fit_arguments(probs, labels, classes, resamples, seed)
        if resamples:
            if not labels:
                raise InputError("resamples: expected labelled faces at one factor or more; got none")
            first = _read_labels(next(iter(labels.values())), "resamples")
            if resamples < 2 or any(not np.array_equal(np.asarray(v), first) for v in labels.values()):
                raise InputError(f"resamples={resamples}: expected 0 or >= 2, and the same faces (labels) at every "
                                 "factor")
            base = cls.fit(probs, labels, classes)
            sets = [cls.fit({f: np.asarray(p)[pick] for f, p in probs.items()}, {f: first[pick] for f in labels},
                            classes).probs for pick in stratified_picks(first, resamples, seed)]
            return dataclasses.replace(base, resampled=np.stack(sets))
        c = len(classes)
        factors = sorted(probs)
        if not factors or sorted(labels) != factors:
            raise InputError(f"probabilities and labels must cover the same factors; got {sorted(probs)} and "
                             f"{sorted(labels)}")
        pm, cm, n = [], [], np.full(c, np.iinfo(np.int64).max)
        for f in factors:
            try:
                p = np.asarray(probs[f], dtype=np.float64)
            except (TypeError, ValueError, OverflowError) as exc:  # text, rows of other lengths, ints past a float
                raise InputError(f"factor {f}: expected probabilities (N, {c}) as numbers; they could not be read as "
                                 f"numbers ({exc})") from None
            y = _read_labels(labels[f], f"factor {f}")
            if p.ndim != 2 or p.shape[1] != c or y.shape != (len(p),):
                raise InputError(f"factor {f}: expected probabilities (N, {c}) and labels (N,); got {p.shape}, "
                                 f"{y.shape}")
            if len(y) and (y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= c):
                got = f"from {y.min()} to {y.max()}" if y.dtype.kind in "iufb" else f"{y[:3].tolist()}..."
                raise InputError(f"factor {f}: labels must be integers 0..{c - 1} (class indices); got {y.dtype} "
                                 f"{got}")
            if not (np.all(np.isfinite(p)) and np.all(p >= 0) and np.allclose(p.sum(1), 1.0, atol=1e-3)):
                raise InputError(f"factor {f}: expected probabilities (rows of non-negative numbers summing to 1, "
                                 "the model's softmax), not logits")
            counts = np.bincount(y.astype(np.int64), minlength=c)
            if np.any(counts == 0):
                raise InputError(f"factor {f}: every class needs labelled faces (labels 0..{c - 1}); counts "
                                 f"{counts.tolist()}")
            onehot = np.eye(c)[y]                                   # (N, C) true class
            pm.append(p.T @ onehot / counts)                        # [i, j]: mean p_i over class j
            cm.append(np.eye(c)[p.argmax(1)].T @ onehot / counts)   # [i, j]: share of class j labelled i
            n = np.minimum(n, counts)
        return cls(tuple(classes), tuple(float(f) for f in factors), np.stack(pm), np.stack(cm),
                   tuple(int(v) for v in n))

    def matrix(self, factors: np.ndarray, kind: str = "probs") -> np.ndarray:
        """The mean over faces of each face's matrix at its factor (interpolated in log2 between the table's
        factors, clamped to its ends): (C, C)."""
        if not isinstance(kind, str) or kind not in KINDS:  # an array "in" the names compares elementwise
            raise InputError(f"kind {kind!r}; expected one of {KINDS}")
        try:
            f = np.asarray(factors, dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InputError(f"expected factors (N,) as numbers; they could not be read as numbers ({exc})") from None
        if f.ndim != 1:  # a (1, N) array would weigh the table's matrices N times over
            raise InputError(f"expected factors (N,), one per face; got shape {f.shape}")
        if not f.size or not np.all(np.isfinite(f) & (f > 0)):
            raise InputError(f"expected a factor (finite, > 0) for each of one face or more; got {f.size} factors, "
                             f"{np.sum(~(np.isfinite(f) & (f > 0)))} of them not finite and > 0")
        w = _factor_weights(self.factors, f).mean(0)
        return np.tensordot(w, getattr(self, kind), axes=1)

    def estimate(self, probs: np.ndarray, factors: np.ndarray | Sequence[float], kind: str = "probs") -> np.ndarray:
        """Class shares (C,) of a group: ``probs`` (N, C) its faces' probabilities, ``factors`` (N,) each face's
        down-sample factor (48 / side in pixels for a 48 px model; a face larger than the model counts as 1).
        Assumes the faces' sizes do not depend on their expressions."""
        tally = GroupTally(self, kind)
        tally.add(probs, factors)
        shares = tally.shares()
        if shares is None:
            raise InputError("an empty group has no class shares")
        return shares

    def interval(self, probs: np.ndarray, factors: np.ndarray | Sequence[float], level: float = 0.9,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """How sure :meth:`estimate` is: a bootstrap interval of the group's shares. Its faces are resampled with
        replacement (each with its own factor) once per set of :attr:`resampled` matrices, the r-th resample is
        solved with the r-th set, and per class the percentiles leaving ``(1 - level) / 2`` on each side are
        returned: (low, high), each (C,). Seeded. On FER+ val groups of 30 faces of mixed sizes, nominal 90%
        intervals held the true share in 91% (bicubic crops) and 86% (compressed crops) of cases, less on faces
        all 16 px or smaller (docs/crowd.md, "How sure the shares are").

        Raises:
            ModelError: the calibration holds no :attr:`resampled` matrices.
            InputError: a group as :meth:`estimate` refuses, an empty one, ``level`` not in (0, 1), or ``seed`` not
                an integer >= 0."""
        if self.resampled is None:
            raise ModelError("this group calibration holds no resampled matrices; make it with "
                             "GroupCalibration.fit(..., resamples=200) (scripts/group_estimates.py "
                             "--write-calibration does)")
        if isinstance(level, bool) or not isinstance(level, (int, float, np.integer, np.floating)) or not 0 < level < 1:
            raise InputError(f"level={level!r}; expected 0 < level < 1")
        _check_seed(seed)
        p, f = _checked_group(probs, factors, len(self.classes))
        if not len(p):
            raise InputError("an empty group has no class shares")
        n, r = len(p), len(self.resampled)
        rng = np.random.default_rng(seed)
        weights = _factor_weights(self.factors, np.maximum(f, 1.0))
        mixed, observed = np.empty((r, weights.shape[1])), np.empty((r, p.shape[1]))
        # The resamples a block at a time (the same draws as all at once): (R, N) draws and counts of a large group
        # were 3 kB a face (320 MB for 100 000 faces); a block holds at most _RESAMPLE_BLOCK of each.
        rows = max(1, _RESAMPLE_BLOCK // n)
        for a in range(0, r, rows):
            idx = rng.integers(0, n, size=(min(rows, r - a), n))
            picked = np.empty(idx.shape)              # how often each resample holds each face: no (R, N, C) copies
            for k in range(len(idx)):
                picked[k] = np.bincount(idx[k], minlength=n)
            del idx
            picked /= n
            mixed[a:a + len(picked)] = picked @ weights
            observed[a:a + len(picked)] = picked @ p
        m = np.einsum("rf,rfij->rij", mixed, self.resampled)
        shares = simplex_least_squares(m, observed)
        tail = (1.0 - level) / 2
        return np.quantile(shares, tail, axis=0), np.quantile(shares, 1.0 - tail, axis=0)

    def to_dict(self) -> dict[str, Any]:
        d = {"classes": list(self.classes), "factors": list(self.factors), "n": list(self.n),
             "probs": np.round(self.probs, 6).tolist(), "counts": np.round(self.counts, 6).tolist(),
             "checkpoint_sha256": self.checkpoint_sha256, "source": self.source}
        if self.resampled is not None:  # float32 little-endian, base64: 60,000 numbers in one line, not 60,000
            r = self.resampled.astype("<f4")
            d["resampled"] = {"shape": list(r.shape), "float32_base64": base64.b64encode(r.tobytes()).decode()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GroupCalibration":
        sidecars.refuse_unknown_fields(cls, d, "group calibration")
        try:  # each value as the file holds it: classes, factors, n and the texts are checked by __post_init__
            return cls(d["classes"], d["factors"], sidecars.real_array(d["probs"]), sidecars.real_array(d["counts"]),
                       d.get("n", ()), d.get("checkpoint_sha256", ""), d.get("source", ""),
                       _resampled(d.get("resampled")))
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise ModelError(f"group calibration: expected classes, factors, probs and counts; {exc}") from None


def calibration_for(model_path: Union[str, "os.PathLike[str]"], classes: Sequence[str],
                    checkpoint_sha256: str) -> Optional[GroupCalibration]:
    """The group calibration of a model, or None: ``NAME.groups.json`` beside ``NAME.onnx`` (or ``NAME.fp16.onnx``,
    ``NAME.int8-u8s8.onnx``, ``NAME.int8.<digest>...engine``), else a packaged one measured on the same
    checkpoint (the shipped model's serves its FP16 and INT8 files too). A file beside the model that is
    unreadable or belongs to another model is skipped with a warning."""
    return sidecars.find(model_path, classes, checkpoint_sha256, SUFFIX, GroupCalibration.load, "group calibration")
