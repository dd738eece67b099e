"""ExpressionSmoother forgets by scanning only the faces of the stream whose frame number advanced.

The index by stream must not change anything a caller sees: ``_ReferenceSmoother`` is the implementation that
scanned every face of every stream (pasted verbatim, docstrings cut), driven side by side with the new one.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import pytest

from fsrfer_edge.errors import InputError
from fsrfer_edge.tracking import (DEFAULT_AGGREGATE, DEFAULT_HALF_LIFE, ExpressionSmoother, _check_aggregate,
                                  _check_probs, _decay, _hashable, _normalised, _numbers, _spread, _terms,
                                  check_half_life)


class _ReferenceSmoother:
    """(reference copy; see ExpressionSmoother)"""

    def __init__(self, half_life: float = DEFAULT_HALF_LIFE, aggregate: str = DEFAULT_AGGREGATE, *,
                 max_age: int = 30) -> None:
        self.half_life = check_half_life(half_life)
        self.aggregate = _check_aggregate(aggregate)
        if isinstance(max_age, bool) or not isinstance(max_age, (int, np.integer)) or max_age < 0:
            raise InputError(f"max_age={max_age!r}; expected an integer number of frames >= 0")
        self.max_age = int(max_age)
        self._decay = _decay(self.half_life)
        # key -> (weighted sum, weight, last frame, stream, sum of squared weights, weighted sum of squares, the
        # stream's count of frames at that update)
        self._faces: dict[Any, tuple[np.ndarray, float, int, Any, float, np.ndarray, int]] = {}
        # each stream's last frame number and its count of frames (steps up of its frame number), for forgetting: a
        # stream whose numbers started again never passes its old highest one, but its count goes on
        self._latest: dict[Any, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._faces)

    def update(self, key: Any, probs: Any, frame: int, stream: Any = None) -> np.ndarray:
        """(reference copy; see ExpressionSmoother)"""
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
            raise InputError(f"frame={frame!r}; expected the frame's integer number")
        frame = int(frame)
        p = _numbers(probs, "probs", "(C,) class probabilities")
        if p.ndim != 1 or not p.size:
            raise InputError(f"probs has shape {p.shape}; expected (C,) class probabilities of one face")
        _check_probs(p)
        try:
            earlier = self._faces.get(key)
        except TypeError as exc:
            raise InputError(f"key={key!r} cannot be hashed ({exc}); expected e.g. (source_id, object_id)") from exc
        try:
            latest = self._latest.get(stream)
        except TypeError as exc:
            raise InputError(f"stream={stream!r} cannot be hashed ({exc}); expected e.g. a source_id") from exc
        if earlier is not None and earlier[3] != stream:
            raise InputError(f"{key!r} was given with stream={earlier[3]!r}, now {stream!r}; expected one stream per "
                             "face")
        if earlier is not None and frame - earlier[2] > self.max_age:  # stale in its own count of frames
            earlier = None
        terms = _terms(p, self.aggregate)
        if earlier is not None:  # checked before anything changes: a refused call forgets no face
            if frame <= earlier[2]:
                raise InputError(f"frame {frame} for {key!r}, whose last frame was {earlier[2]}; expected each face "
                                 "once a frame, frames in order (a stream that restarted its frame numbers: "
                                 "reset(stream) first)")
            if earlier[0].shape != terms.shape:
                raise InputError(f"probs of {terms.shape[0]} classes for {key!r}, whose earlier ones had "
                                 f"{earlier[0].shape[0]}; expected the same model's classes")
        advanced = latest is None or frame > latest[0]
        count = 0 if latest is None else latest[1] + int(advanced)
        if latest is None or frame != latest[0]:
            self._latest[stream] = (frame, count)
        if advanced:
            # frames in order: the count never forgets a face the frame numbers keep (each step is a frame or more);
            # numbers that started again forget the old numbers' faces, which the new ones may never pass
            self._faces = {k: v for k, v in self._faces.items()
                           if v[3] != stream or (frame - v[2] <= self.max_age and count - v[6] <= self.max_age)}
        if earlier is None:
            num, den, den2, sq = terms, 1.0, 1.0, p ** 2
        else:
            e_num, e_den, last, _, e_den2, e_sq, _ = earlier
            k = self._decay ** (frame - last)
            num, den = e_num * k + terms, e_den * k + 1.0
            den2, sq = e_den2 * k * k + 1.0, e_sq * k + p ** 2
        self._faces[key] = (num, den, frame, stream, den2, sq, count)
        return _normalised(num / den, self.aggregate)

    _EVERY_STREAM = object()

    def reset(self, stream: Any = _EVERY_STREAM) -> int:
        """(reference copy; see ExpressionSmoother)"""
        if stream is _ReferenceSmoother._EVERY_STREAM:
            n = len(self._faces)
            self._faces.clear()
            self._latest.clear()
            return n
        if not _hashable(stream):
            raise InputError(f"stream={stream!r} cannot be hashed; expected e.g. a source_id, as update() takes")
        kept = {k: v for k, v in self._faces.items() if v[3] != stream}
        n = len(self._faces) - len(kept)
        self._faces = kept
        self._latest.pop(stream, None)
        return n

    def spread(self, key: Any) -> Optional[float]:
        """(reference copy; see ExpressionSmoother)"""
        if not _hashable(key):
            raise InputError(f"key={key!r} cannot be hashed; expected e.g. (source_id, object_id), as update() takes")
        face = self._faces.get(key)
        if face is None:
            raise InputError(f"key={key!r} has no frames (never updated, or forgotten after max_age); expected a key "
                             "given to update()")
        if self.aggregate != "probs":
            return None
        num, den, _, _, den2, sq, _ = face
        return _spread(num, den, den2, sq)

    def __repr__(self) -> str:
        return (f"ExpressionSmoother(half_life={self.half_life:g}, aggregate={self.aggregate!r}, "
                f"max_age={self.max_age})")


NAN = float("nan")  # one object: found again by identity, yet never equal to itself
#: streams: equal ones of other types (1, 1.0, True) are one stream, as a dict takes them
STREAMS: list[Any] = [None, 0, 1, 1.0, True, "cam", ("src", 2), NAN]
SHARED_KEYS: list[Any] = [7, 7.0, "face", ("src", 2), NAN]


def _outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001 - compared by type and message
        return "error", (type(exc), str(exc))
    if isinstance(out, np.ndarray):
        return "array", (out.dtype.str, out.shape, out.tobytes())
    return "value", out


def _same(ref: _ReferenceSmoother, new: ExpressionSmoother, call: Callable[[Any], Any], what: str) -> tuple[str, Any]:
    a, b = _outcome(lambda: call(ref)), _outcome(lambda: call(new))
    assert a[0] == b[0] and (a[1] == b[1] or (a[0] == "value" and a[1] != a[1] and b[1] != b[1])), \
        f"{what}: reference {a}, new {b}"
    assert len(ref) == len(new), f"after {what}: reference keeps {len(ref)} faces, new {len(new)}"
    return a


def _probs(rng: np.random.Generator) -> Any:
    r = rng.random()
    if r < 0.03:
        return rng.dirichlet(np.ones(4))  # another class count
    if r < 0.05:
        return np.array([1.2, -0.1, -0.1])  # not probabilities
    return rng.dirichlet(np.ones(3))


def _frame(rng: np.random.Generator, clock: dict[int, int], s: int, max_age: int) -> Any:
    r = rng.random()
    if r < 0.6:
        clock[s] += int(rng.integers(0, 3))
    elif r < 0.7:
        clock[s] = int(rng.integers(0, 3))  # the numbers start again (a looping file)
    elif r < 0.8:
        clock[s] = max(0, clock[s] - int(rng.integers(1, 4)))
    elif r < 0.87:
        clock[s] += max_age + int(rng.integers(1, 3))  # a gap longer than max_age
    elif r < 0.89:
        return [True, 2.0, "3"][int(rng.integers(3))]  # not an integer
    f = clock[s]
    return np.int64(f) if rng.random() < 0.1 else f


def _key(rng: np.random.Generator, s: int) -> Any:
    r = rng.random()
    if r < 0.01:
        return [s]  # cannot be hashed
    if r < 0.1:
        return SHARED_KEYS[int(rng.integers(len(SHARED_KEYS)))]  # given with more than one stream
    return (s % 4, int(rng.integers(6)))


@pytest.mark.parametrize("seed, aggregate, max_age", [(0, "probs", 3), (1, "log", 1), (2, "probs", 0),
                                                      (3, "probs", 30), (4, "log", 5)])
def test_smoother_answers_as_the_full_scan_did_over_random_streams(seed: int, aggregate: str, max_age: int) -> None:
    rng = np.random.default_rng(seed)
    ref, new = _ReferenceSmoother(1.5, aggregate, max_age=max_age), ExpressionSmoother(1.5, aggregate, max_age=max_age)
    assert repr(ref) == repr(new)
    clock = {s: 0 for s in range(len(STREAMS))}
    kinds: dict[str, int] = {}
    for step in range(1200):
        r = rng.random()
        s = int(rng.integers(len(STREAMS)))
        stream: Any = STREAMS[s]
        if r < 0.8:
            key, probs, frame = _key(rng, s), _probs(rng), _frame(rng, clock, s, max_age)
            if rng.random() < 0.005:
                stream = {"unhashable": s}
            kind = _same(ref, new, lambda sm: sm.update(key, probs, frame, stream=stream),
                         f"step {step}: update({key!r}, frame={frame!r}, stream={stream!r})")[0]
        elif r < 0.93:
            key = _key(rng, s)
            kind = "spread-" + _same(ref, new, lambda sm: sm.spread(key), f"step {step}: spread({key!r})")[0]
        elif r < 0.99:
            if rng.random() < 0.02:
                stream = ["unhashable"]
            kind = "reset-" + _same(ref, new, lambda sm: sm.reset(stream), f"step {step}: reset({stream!r})")[0]
        else:
            kind = "reset-all-" + _same(ref, new, lambda sm: sm.reset(), f"step {step}: reset()")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    for key in [(i, j) for i in range(4) for j in range(6)] + SHARED_KEYS:
        _same(ref, new, lambda sm: sm.spread(key), f"end: spread({key!r})")
    # the run went through answers and refusals alike
    assert kinds.get("array", 0) > 300 and kinds.get("error", 0) > 50 and kinds.get("spread-error", 0) > 5, kinds
    assert kinds.get("reset-value", 0) > 10, kinds


class _CountedKey:
    """A face key that counts how often it is hashed: a dict touches a key it stores or looks up by hashing it."""

    hashed: dict[Any, int] = {}

    def __init__(self, stream: int, n: int) -> None:
        self.stream, self.n = stream, n

    def __hash__(self) -> int:
        _CountedKey.hashed[self.stream] = _CountedKey.hashed.get(self.stream, 0) + 1
        return hash((self.stream, self.n))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _CountedKey) and (self.stream, self.n) == (other.stream, other.n)

    def __repr__(self) -> str:
        return f"_CountedKey({self.stream}, {self.n})"


def _hashed_by_one_update(n_streams: int, faces: int = 10) -> tuple[int, Optional[int], int]:
    """Stream 0's keys hashed, other streams' keys hashed and faces kept by one update that advances stream 0."""
    s = ExpressionSmoother(max_age=2)
    p = np.array([0.6, 0.3, 0.1])
    for stream in range(n_streams):
        for n in range(faces):
            s.update(_CountedKey(stream, n), p, 0, stream=stream)
    for frame in range(1, 3):  # stream 0 goes on, its faces but face 0 unseen
        s.update(_CountedKey(0, 0), p, frame, stream=0)
    _CountedKey.hashed.clear()
    s.update(_CountedKey(0, 0), p, 3, stream=0)  # forgets stream 0's 9 faces unseen for 3 frames
    own = _CountedKey.hashed.pop(0, 0)
    others = sum(_CountedKey.hashed.values()) if _CountedKey.hashed else None
    return own, others, len(s)


def test_smoother_forgetting_touches_only_the_faces_of_the_stream_that_advanced() -> None:
    # 30 cameras x 10 faces: advancing one stream once must not visit the 290 faces of the 29 others
    own, others, kept = _hashed_by_one_update(30)
    assert kept == 1 + 29 * 10  # stream 0's unseen faces were forgotten, the others' kept
    assert others is None, f"one update of stream 0 hashed other streams' keys {others} times"
    # and its own work is the same whether 1 or 29 other streams hold faces
    assert _hashed_by_one_update(2)[:2] == (own, None)
    assert own <= 4 * 10, f"stream 0's 10 keys hashed {own} times by one update"
