"""Faces followed from frame to frame, each face's expression averaged over the frames it was seen in.

In a video a small face is seen again in every frame, each time at another sub-pixel position and with other
sensor noise, so one frame's mistakes are not every frame's. :class:`FaceTracker` gives each face of a frame
the track it continues (matched by its box) and a weighted mean of that track's class probabilities so far,
each earlier frame's weight halving every ``half_life`` frames. What that buys on small faces, and the rule
that set the defaults: docs/experiments.md, "A face seen over several video frames". Each track looks for its face
where the face's velocity takes it (``motion``; docs/crowd.md, "Faces that walk past each other").

Example::

    tracker = FaceTracker()
    for boxes, probs in frames:                   # (N, 4) boxes (x0, y0, x1, y1), (N, C) probabilities
        ids, smoothed = tracker.update(boxes, probs)

``CrowdAnalyzer.analyze_stream(source, track=True)`` and ``fsrfer-crowd --track`` do this for you.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Tuple

import numpy as np

from .detection.base import box_iou, overlapping_iou
from .errors import InputError

#: How a track's frames are averaged: the class probabilities themselves, or their logarithms (a product of
#: the frames' answers, renormalised).
AGGREGATES = ("probs", "log")
#: Each earlier frame's weight halves every this many frames (a changed expression takes over the label in
#: about two to three frames).
DEFAULT_HALF_LIFE = 2.0
DEFAULT_AGGREGATE = "probs"
#: A face continues a track whose last box (moved on by its velocity with ``motion``) overlaps its box by at least
#: this intersection over union ...
DEFAULT_MIN_IOU = 0.3
#: ... or, failing that, whose last box's centre is at most this many face sides from its centre (a small face
#: moving its own width between frames overlaps nothing), at a size within a factor of two.
DEFAULT_MAX_SHIFT = 1.0
#: A track not seen for more than this many frames ends; a face seen after that starts a new track.
DEFAULT_MAX_MISSED = 5
#: Frames after its last detection in which a track found in at least ``coast_after`` frames is still
#: recognised at its last box, moved on likewise (:meth:`FaceTracker.coasting`); 0: only detected faces are
#: recognised.
#: The frames a track must have been found in before its face is reported (:meth:`FaceTracker.reported`); 1: every
#: detection is reported at once.
#: Coasting 2 frames and confirming after 2 were adopted together by the rule in docs/crowd.md, "Coasting and
#: confirmation together" (results/crowd/clips_coast_confirm.json): each alone failed its own rule.
DEFAULT_COAST = 2
DEFAULT_COAST_AFTER = 2
DEFAULT_CONFIRM = 2
#: Whether a track's box is moved on by its face's velocity before matching and coasting (:class:`FaceTracker`'s
#: ``motion``): adopted by the rule in docs/crowd.md, "Faces that walk past each other" (results/crowd/walk.json,
#: results/crowd/clips_motion.json): on walking crowds a third of the identity switches, fewer false faces and more
#: right answers; on drifting ones level.
DEFAULT_MOTION = True
#: Each new displacement's weight in a track's velocity (an exponential mean of the displacements between its
#: detections): 0.5 follows a walker's steady pace within two frames and halves one frame's box jitter.
VELOCITY_WEIGHT = 0.5
#: A weak detection continues a track (:meth:`FaceTracker.continuing`) only at this IoU with its expected box or
#: more: ByteTrack's second association (0.3, the first try, kept too many boxes that were not the face).
WEAK_IOU = 0.5
#: ... and only a track whose best detection scored at least this (:class:`FaceTracker`'s ``weak_track_score``): as
#: ByteTrack, whose second association continues only tracks started by a high-score detection. A detector's false
#: face on the background scores near its threshold, and weak boxes would keep its track alive (docs/crowd.md, "Weak
#: detections only for tracks once found with confidence"). Chosen for YuNet's threshold of 0.3: for a detector whose
#: threshold is 0.5 or more (BlazeFace) it holds no track back.
DEFAULT_WEAK_TRACK_SCORE = 0.5
#: Probabilities are floored at this before their logarithm ("log").
LOG_FLOOR = 1e-6
#: A row of probabilities may miss a sum of 1 by this much (float16 models, values rounded to 4 decimals);
#: more is not a row of probabilities (logits, scores, zeros).
SUM_TOLERANCE = 0.01
_NUMBERS = (int, float, np.integer, np.floating)


def check_half_life(value: Any, name: str = "half_life") -> float:
    """``value`` as a float half-life in frames: > 0, ``math.inf`` for a plain mean; else :class:`InputError`.

    ``name`` is how the caller spelled the option: a command-line option (``"--half-life"``) gets a message in
    the command line's terms (``inf``, not ``math.inf``)."""
    cli = name.startswith("--")
    try:
        ok = not isinstance(value, bool) and isinstance(value, _NUMBERS) and float(value) > 0  # NaN > 0 is False
    except OverflowError:  # an int too large for a float
        ok = False
    if not ok:
        raise InputError(f"{name}{' ' if cli else '='}{value!r}; expected a number of frames > 0 "
                         f"({'inf' if cli else 'math.inf'}: a plain mean of every frame)")
    return float(value)


def _numbers(value: Any, what: str, expected: str) -> np.ndarray:
    """``value`` as a float64 array, or InputError saying what was received and ``expected``: real numbers only
    (``np.asarray(..., dtype=float)`` would read text digits, booleans and the real part of complex numbers)."""
    try:
        a = np.asarray(value)
        if a.dtype.kind not in "iuf":
            raise TypeError(f"received {a.dtype} values")
        return a.astype(np.float64)
    except (TypeError, ValueError) as exc:  # rows of other lengths, text, complex numbers
        raise InputError(f"{what} could not be read as numbers ({exc}); expected {expected}") from exc


def _check_probs(p: np.ndarray, what: str = "probs") -> None:
    """Refuse values that are not class probabilities: not finite, negative, or rows not summing to 1."""
    if not np.isfinite(p).all():
        raise InputError(f"{what} must be finite (a NaN or inf was given); expected class probabilities")
    if p.ndim and not p.shape[-1] and math.prod(p.shape[:-1]):
        raise InputError(f"{what} has shape {p.shape}: rows of no classes; expected class probabilities")
    if p.size and ((p < 0).any() or (np.abs(p.sum(axis=-1) - 1.0) > SUM_TOLERANCE).any()):
        raise InputError(f"{what} must be class probabilities: each value >= 0 and each face's row must sum to 1 "
                         "(a softmax of the logits, as Recognizer's Prediction.probs); got values from "
                         f"{p.min():.4g} to {p.max():.4g}, rows summing to {p.sum(axis=-1).min():.4g} to "
                         f"{p.sum(axis=-1).max():.4g}")


def _decay(half_life: float) -> float:
    return 1.0 if math.isinf(half_life) else 0.5 ** (1.0 / half_life)


def _terms(probs: np.ndarray, aggregate: str) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    return np.log(np.maximum(p, LOG_FLOOR)) if aggregate == "log" else p


def _normalised(mean: np.ndarray, aggregate: str) -> np.ndarray:
    if aggregate == "log":
        e = np.exp(mean - mean.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return (mean / mean.sum(axis=-1, keepdims=True)).astype(np.float32)


def _spread(num: np.ndarray, den: float, den2: float, sq: np.ndarray) -> float:
    """:attr:`FaceTracker.spread` of a track (aggregate "probs") from its weighted sums of probabilities (``num``),
    of weights (``den``), of squared weights (``den2``) and of squared probabilities (``sq``): sigma ln n_eff, sigma
    the weighted standard deviation over its frames of the probability of its mean's label."""
    mean = num / den
    k = int(np.argmax(mean))
    sigma = math.sqrt(max(float(sq[k]) / den - float(mean[k]) ** 2, 0.0))
    n_eff = den ** 2 / den2 if den2 > 0 else 1.0
    return sigma * math.log(max(n_eff, 1.0))


def smooth_sequence(probs: np.ndarray, half_life: float = DEFAULT_HALF_LIFE,
                    aggregate: str = DEFAULT_AGGREGATE) -> np.ndarray:
    """The tracker's answer after the last of T frames of the same faces.

    Args:
        probs: (T, N, C) class probabilities of N faces in T frames, oldest first.
        half_life: frames over which a frame's weight halves (``math.inf``: a plain mean).
        aggregate: one of :data:`AGGREGATES`.

    Returns:
        (N, C) float32: the weighted mean, frame t of T weighted 2 ** (-(T - 1 - t) / half_life), renormalised.

    Raises:
        InputError: another shape, values that are not finite or rows that are not probabilities (each value
            >= 0, each row summing to 1), a bad ``half_life`` or ``aggregate``.
    """
    half_life = check_half_life(half_life)
    _check_aggregate(aggregate)
    p = _numbers(probs, "probs", "a (T, N, C) array")
    if p.ndim != 3 or not len(p):
        raise InputError(f"probs has shape {p.shape}; expected (T, N, C) with T >= 1 frames")
    _check_probs(p)
    t = p.shape[0]
    w = _decay(half_life) ** np.arange(t - 1, -1, -1, dtype=np.float64)
    mean = np.tensordot(w, _terms(p, aggregate), axes=(0, 0)) / w.sum()
    return _normalised(mean, aggregate)


def _check_aggregate(aggregate: Any) -> str:
    if not isinstance(aggregate, str) or aggregate not in AGGREGATES:  # an array "in" the names compares elementwise
        raise InputError(f"aggregate={aggregate!r}; expected one of {AGGREGATES}")
    return str(aggregate)


@dataclasses.dataclass
class _Track:
    id: int
    box: np.ndarray
    num: np.ndarray
    den: float
    missed: int = 0  # frames the detector looked at since the track was last found (skipped frames not counted)
    since: int = 0  # frames since the track was last found, skipped ones counted (without skipping: ``missed``)
    shown: bool = True  # whether the last frame the detector looked at gave it a box (found, or coasted)
    hits: int = 0
    velocity: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(2))  # px a frame, (dx, dy)
    best_score: Optional[float] = None  # the best detection score given to update() (None: none was given)
    den2: float = 0.0  # the sum of the frames' squared weights (n_eff = den ** 2 / den2)
    sq: Optional[np.ndarray] = None  # the weighted sum of the frames' squared probabilities (aggregate "probs")


class FaceTracker:
    """Follow faces across the frames of one stream and average each face's probabilities over its track.

    Args:
        half_life: frames over which an earlier frame's weight halves (> 0; ``math.inf`` averages every
            frame of the track alike). 1 frame: the last frame weighs as much as all before it together.
        aggregate: ``"probs"`` averages the probabilities, ``"log"`` their logarithms (:data:`AGGREGATES`).
        min_iou: a face continues the track whose last box (moved on by its velocity with ``motion``) it overlaps
            most, at this IoU or more.
        max_shift: a face that overlaps no track that well continues the nearest track whose last box's
            centre (moved on likewise) is within this many face sides (the larger of the two boxes' sides) and
            whose size is within a factor of two; 0 turns that off.
        max_missed: a track unseen for more than this many frames ends (>= 0).
        coast: a track the detector found in at least ``coast_after`` frames and missed in this one is
            recognised at its last box (moved on by its velocity with ``motion``) for up to this many frames after
            its last detection (:meth:`coasting`; at most ``max_missed``); 0: never; None: :data:`DEFAULT_COAST`, or
            ``max_missed`` if that is less.
            ``max_missed`` and ``coast`` count the frames the detector looked at: with ``detect_every=N`` a lost face
            is still recognised for up to (coast + 1) * N - 1 frames after its last detection.
        coast_after: the frames a track must have been found in before it coasts (>= 1).
        confirm: the frames a track must have been found in before its face is reported (:meth:`reported`; >= 1):
            2 holds back the first frame of every new face, where a detection seen once (often a false one) ends.
        motion: move each track's last box on by its face's velocity (a mean of the displacements between its
            detections, :data:`VELOCITY_WEIGHT`) before matching and coasting, so that a walking face is looked for
            where it will be, and faces that pass each other keep their tracks.
        weak_track_score: a weak detection continues only a track whose best detection score (``scores`` given to
            :meth:`update`) is at least this (:meth:`continuing`); a track given no scores is not held back.

    Frames without a face still count: call :meth:`update` with no boxes, and every track's frames weigh less
    as time passes. A tracker follows one stream at a time, frame after frame: its tracks go on into whatever
    frames it is given next, so call :meth:`reset` (or make a new tracker) before a new, unrelated video.
    Matching is greedy (the best overlap first, then the nearest centre), which is what
    crowds of separate faces need; without ``motion`` faces that cross each other may swap tracks.
    """

    def __init__(self, half_life: float = DEFAULT_HALF_LIFE, aggregate: str = DEFAULT_AGGREGATE, *,
                 min_iou: float = DEFAULT_MIN_IOU, max_shift: float = DEFAULT_MAX_SHIFT,
                 max_missed: int = DEFAULT_MAX_MISSED, coast: Optional[int] = None,
                 coast_after: int = DEFAULT_COAST_AFTER, confirm: int = DEFAULT_CONFIRM,
                 motion: bool = DEFAULT_MOTION, weak_track_score: float = DEFAULT_WEAK_TRACK_SCORE) -> None:
        self.half_life = check_half_life(half_life)
        self.aggregate = _check_aggregate(aggregate)
        self.min_iou = _fraction("min_iou", min_iou)
        if isinstance(max_shift, bool) or not isinstance(max_shift, _NUMBERS) or not _finite(max_shift) \
                or not max_shift >= 0:
            raise InputError(f"max_shift={max_shift!r}; expected a number of face sides >= 0")
        self.max_shift = float(max_shift)
        if isinstance(max_missed, bool) or not isinstance(max_missed, (int, np.integer)) or max_missed < 0:
            raise InputError(f"max_missed={max_missed!r}; expected an integer >= 0 (frames)")
        self.max_missed = int(max_missed)
        if coast is None:  # the default, within a shorter max_missed
            coast = min(DEFAULT_COAST, self.max_missed)
        if isinstance(coast, bool) or not isinstance(coast, (int, np.integer)) or not 0 <= coast <= self.max_missed:
            raise InputError(f"coast={coast!r}; expected an integer from 0 to max_missed ({self.max_missed}) frames")
        self.coast = int(coast)
        if isinstance(coast_after, bool) or not isinstance(coast_after, (int, np.integer)) or coast_after < 1:
            raise InputError(f"coast_after={coast_after!r}; expected an integer >= 1 (frames a track was found in)")
        self.coast_after = int(coast_after)
        if isinstance(confirm, bool) or not isinstance(confirm, (int, np.integer)) or confirm < 1:
            raise InputError(f"confirm={confirm!r}; expected an integer >= 1 (frames a track was found in)")
        self.confirm = int(confirm)
        if not isinstance(motion, (bool, np.bool_)):
            raise InputError(f"motion={motion!r}; expected True or False")
        self.motion = bool(motion)
        self.weak_track_score = _number("weak_track_score", weak_track_score, "a detection score")
        self._decay = _decay(self.half_life)
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._looked = 0  # frames the detector looked at (not skipped: detect_every) since made or reset
        self._spread: Optional[np.ndarray] = None
        #: (height, width) of the last frame a stream fed this tracker (``CrowdAnalyzer.analyze_stream`` sets it, to
        #: warn when frames of another size continue its tracks); None when made or reset.
        self.frame_size: Optional[tuple[int, int]] = None

    @property
    def spread(self) -> Optional[np.ndarray]:
        """(N,) for each face of the last :meth:`update`, how much its track's frames differ: the weighted standard
        deviation, over the track's frames, of the probability of the mean's label, times ``ln n_eff`` (``n_eff``,
        the frames' effective number: (sum of weights)^2 / sum of their squares; 1 for one frame). 0 where the
        frames repeat each other. What a tracked face's confidence reads
        (:meth:`~fsrfer_edge.confidence.ScoreCalibration.track_confidence`). None before any update (and after
        :meth:`reset`), and with ``aggregate="log"``."""
        return self._spread

    @property
    def n_tracks(self) -> int:
        """Tracks alive now (seen within the last ``max_missed`` frames)."""
        return len(self._tracks)

    def reset(self) -> None:
        """Forget every track (a new stream); track ids go on counting. :attr:`spread` is None until the next
        :meth:`update` (the faces it was of belong to tracks forgotten)."""
        self._tracks = []
        self._looked = 0
        self._spread = None
        self.frame_size = None

    def coasting(self, boxes: Any, looked: bool = True, weak: Any = None) -> np.ndarray:
        """The faces to recognise in this frame although the detector did not find them: call before
        :meth:`update` with the frame's detected boxes.

        Args:
            boxes: the frame's detected boxes.
            looked: False for a frame the detector skipped (``boxes`` then empty): every face the last frame the
                detector looked at gave (found there, or coasted) is recognised again where it is expected.
            weak: (N,) bools marking the weak boxes :meth:`continuing` kept among ``boxes`` (None: none).

        Returns:
            (K, 4) float64: the last boxes (moved on by their velocities with ``motion``) of the tracks found in
            at least ``coast_after`` frames, none of
            ``boxes`` continues or overlaps (a detection there is that face, or another: one place, one face), and
            missed in at most ``coast`` frames the detector looked at since (K = 0 with ``coast=0``); with
            ``looked=False``, those of the tracks the last frame the detector looked at gave a box (found there, or
            coasted there). Give them to :meth:`update` after the detected faces, with ``detected`` False.

        Raises:
            InputError: boxes that are not (N, 4) finite numbers, or one of no size (x1 <= x0 or y1 <= y0), as
                :meth:`update` refuses them; ``looked`` not a bool; ``weak`` not one bool per box.
        """
        b = self._boxes(boxes)
        _check_looked(looked)
        light = self._weak_mask(weak, len(b))
        if (looked and not self.coast) or not self._tracks:
            return np.zeros((0, 4))
        taken = set(self._match(b, weak=light).values())
        out = np.array([self._expected(tr) for j, tr in enumerate(self._tracks)
                        if j not in taken and self._coasts(tr, looked)], dtype=np.float64).reshape(-1, 4)
        hit = np.zeros(len(out), dtype=bool)
        hit[overlapping_iou(out, b)[0]] = True  # the nonzero cells of box_iou(out, b), without the K x N matrix
        return out[~hit]

    def continuing(self, boxes: Any, weak: Any) -> np.ndarray:
        """Which weak detections (scored under the detector's threshold) continue a face this tracker follows: call
        before :meth:`coasting` with the frame's detections (``boxes``) and its weak ones, then give the weak boxes
        kept to both as detections, marked in their ``weak`` argument (matched after the others, so that each goes
        to the track it was kept for). As ByteTrack's second association: a weak box is kept only where it overlaps
        (IoU at least :data:`WEAK_IOU`) the expected box of a track found in at least ``coast_after`` frames, whose
        best detection scored at least ``weak_track_score``, and that none of ``boxes`` continues, one box a track,
        the best overlap first; a weak box alone never starts a track. Unlike ByteTrack's, a track missed in the last
        frames (but still followed: ``max_missed``) may be continued too, at the box its velocity takes it to.

        Returns:
            (M,) bools, one per weak box.

        Raises:
            InputError: ``boxes`` or ``weak`` that are not (N, 4) finite numbers, or a box of no size (x1 <= x0 or
                y1 <= y0), as :meth:`update` refuses them.
        """
        b, w = self._boxes(boxes), self._boxes(weak, "weak box")
        pairs = self._match(np.vstack([b, w]), weak=np.arange(len(b) + len(w)) >= len(b))
        return np.array([len(b) + i in pairs for i in range(len(w))], dtype=bool)

    def reported(self, ids: Any) -> np.ndarray:
        """(N,) bools: whether each of ``ids`` (from the last :meth:`update`) belongs to a track found in at least
        ``confirm`` frames, so that its face is reported; all True with ``confirm=1``, and in a stream's first frame
        (since the tracker was made or reset), where nothing can have been found before (as SORT reports its first
        frames): a one-frame video, or a stream's first frame, shows its faces (and so do the frames the detector
        skips after it).

        Raises:
            InputError: ``ids`` that are not whole numbers (track ids)."""
        wanted = _track_ids(ids)
        if self._looked <= 1:
            return np.ones(wanted.shape, dtype=bool)
        hits = {tr.id: tr.hits for tr in self._tracks}
        return np.array([hits.get(int(i), 0) >= self.confirm for i in wanted], dtype=bool)

    def _coasts(self, tr: _Track, looked: bool = True) -> bool:
        """Whether ``tr`` is recognised without a detection in this frame: coasted in a frame the detector looked at;
        in a frame it skipped, as in the last frame it looked at (found there, or coasted there)."""
        if looked:
            return tr.hits >= self.coast_after and tr.missed < self.coast
        return tr.shown

    def _expected(self, tr: _Track) -> np.ndarray:
        """Where the track's face is looked for in the coming frame: its last box, moved on by its velocity over
        the frames since it was found with ``motion``."""
        if not self.motion:
            return tr.box
        return tr.box + np.tile(tr.velocity * (tr.since + 1), 2)

    def update(self, boxes: Any, probs: Any, detected: Any = None, scores: Any = None, *,
               looked: bool = True, weak: Any = None) -> Tuple[np.ndarray, np.ndarray]:
        """Take one frame's faces.

        Args:
            boxes: (N, 4) boxes (x0, y0, x1, y1) in frame pixels; N may be 0.
            probs: (N, C) class probabilities of those faces (each row sums to 1).
            detected: (N,) bools, False for the boxes :meth:`coasting` gave for this frame (each goes to its
                own track, which stays missed); None: all detected.
            scores: (N,) the detector's scores of the boxes, finite (those of boxes not detected are not kept: give
                0); each track keeps its best, which ``weak_track_score`` reads. None: not known.
            looked: False for a frame the detector skipped (``CrowdAnalyzer.analyze_stream(detect_every=N)``): only
                :meth:`coasting`'s boxes may be given, and a track not in it is not counted missed (so it neither
                coasts less nor ends sooner for the frames the detector did not look at), while its expected box
                moves on by its velocity with ``motion``.
            weak: (N,) bools marking the weak boxes :meth:`continuing` kept (detected; None: none): each continues
                the track it was kept for, and none starts a track.

        Returns:
            (ids, smoothed): (N,) int64 track ids and (N, C) float32 probabilities averaged over each track,
            this frame included, in the order of ``boxes``.

        Raises:
            InputError: shapes that do not match, boxes or probabilities that are not finite, rows that are not
                probabilities (negative values, a sum other than 1), a class count other than the tracks' own, a
                box marked not detected that :meth:`coasting` did not give, scores not finite or not one per box, a
                detected box in a frame not ``looked`` at, a weak box that continues no track. The tracks are left as
                they were.
        """
        b, p = self._check(boxes, probs)
        found = np.ones(len(b), dtype=bool) if detected is None else _marks("detected", detected, len(b))
        score = None if scores is None else self._scores(scores, len(b))
        _check_looked(looked)
        if not looked and found.any():
            raise InputError("a box is marked detected in a frame the detector skipped (looked=False); expected only "
                             "coasting()'s boxes there, with detected False")
        light = self._weak_mask(weak, len(b))
        if light is not None and (light & ~found).any():
            raise InputError("a weak box is marked not detected; expected weak only for detections continuing() kept")
        coasted: dict[int, int] = {}  # face index -> track index, for the faces the detector missed
        # coasting() gave only tracks no detected face continues: two tracks expected at one box (motion: faces
        # that meet) must not swap, the coasted box to the track the detection continues
        continued = set(self._match(b[found], weak=None if light is None else light[found]).values()) \
            if not found.all() else set()
        missed = np.flatnonzero(~found).tolist()
        # each such box takes the first track not yet taken that coasts and is expected exactly there: tracks looked
        # up by their expected box (one pass, not one per box: a frame of 1000 coasted faces was cubic in them)
        at: dict[tuple[float, ...], list[int]] = {}
        if missed:
            for t, track in enumerate(self._tracks):
                if t not in continued and self._coasts(track, looked):
                    at.setdefault(tuple(self._expected(track).tolist()), []).append(t)
            for there in at.values():
                there.reverse()  # popped from the end: the first track first
        for k in missed:
            same = at.get(tuple(b[k].tolist()))
            if not same:
                raise InputError(f"box {k} is marked not detected but is none of coasting()'s boxes for this frame; "
                                 "expected detected=False only for the boxes coasting() returned, each once")
            coasted[k] = same.pop()
        rest = np.flatnonzero(found)
        taken = set(coasted.values())
        free = [j for j in range(len(self._tracks)) if j not in taken]
        pairs = {int(rest[i]): free[j]
                 for i, j in self._match(b[rest], free, None if light is None else light[rest]).items()}
        if light is not None and not all(int(i) in pairs for i in np.flatnonzero(light)):
            raise InputError("a box marked weak continues no track; expected weak only for the boxes continuing() kept "
                             "for this frame")
        pairs.update(coasted)
        for tr in self._tracks:  # a frame passes for every track, seen or not
            tr.num *= self._decay
            tr.den *= self._decay
            tr.den2 *= self._decay ** 2
            if tr.sq is not None:
                tr.sq = tr.sq * self._decay
        ids = np.empty(len(b), dtype=np.int64)
        out = np.empty(p.shape, dtype=np.float32)
        spread = np.zeros(len(b)) if self.aggregate == "probs" else None
        seen: set[int] = set()  # the tracks found in this frame
        boxed: set[int] = set()  # ... and those coasted in it
        terms = _terms(p, self.aggregate)
        for i in range(len(b)):
            j = pairs.get(i)
            if j is None:
                tr = _Track(self._next_id, b[i].copy(), np.zeros(p.shape[1]), 0.0)
                self._next_id += 1
                self._tracks.append(tr)
            else:
                tr = self._tracks[j]
            tr.num = tr.num + terms[i]
            tr.den += 1.0
            tr.den2 += 1.0
            ids[i] = tr.id
            boxed.add(id(tr))
            out[i] = _normalised(tr.num / tr.den, self.aggregate)
            if spread is not None:
                tr.sq = (np.zeros(p.shape[1]) if tr.sq is None else tr.sq) + p[i] ** 2
                spread[i] = _spread(tr.num, tr.den, tr.den2, tr.sq)
            if not found[i]:
                continue  # recognised at its last box: the track stays missed, its box where it was found
            if self.motion and tr.hits:  # the displacement a frame since the track was last found
                step = (_centre(b[i]) - _centre(tr.box)) / (tr.since + 1)
                tr.velocity = step if tr.hits == 1 else (1 - VELOCITY_WEIGHT) * tr.velocity + VELOCITY_WEIGHT * step
            tr.box = b[i].copy()
            if score is not None:
                tr.best_score = float(score[i]) if tr.best_score is None else max(tr.best_score, float(score[i]))
            tr.missed = tr.since = 0
            tr.hits += 1
            seen.add(id(tr))
        for tr in self._tracks:
            if looked:  # the frames the detector skips until its next look show what this one showed
                tr.shown = id(tr) in boxed
            if id(tr) not in seen:
                tr.missed += int(looked)
                tr.since += 1
        self._tracks = [tr for tr in self._tracks if tr.missed <= self.max_missed]
        self._looked += int(looked)
        self._spread = spread
        return ids, out

    @staticmethod
    def _boxes(boxes: Any, what: str = "box") -> np.ndarray:
        """(N, 4) float64 boxes, each finite and of positive size: the one check of :meth:`update`,
        :meth:`coasting` and :meth:`continuing` (``what``: how a message names one of them)."""
        b = _numbers(boxes, "boxes", "(N, 4) boxes (x0, y0, x1, y1)")
        if b.size == 0:
            return b.reshape(0, 4)
        if b.ndim != 2 or b.shape[1] != 4:
            raise InputError(f"boxes has shape {b.shape}; expected (N, 4) boxes (x0, y0, x1, y1)")
        if not np.isfinite(b).all():
            raise InputError("boxes must be finite (a NaN or inf was given)")
        empty = np.flatnonzero((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1]))
        if len(empty):  # no face lies in it; a detector's degenerate box is the caller's to drop
            i = int(empty[0])
            raise InputError(f"{what} {i} is {tuple(b[i].tolist())}: x1 <= x0 or y1 <= y0; expected (x0, y0, x1, y1) "
                             "with positive size (drop empty boxes before tracking)")
        return b

    @staticmethod
    def _weak_mask(weak: Any, n: int) -> Optional[np.ndarray]:
        return None if weak is None else _marks("weak", weak, n)

    @staticmethod
    def _scores(scores: Any, n: int) -> np.ndarray:
        s = _numbers(scores, "scores", f"({n},) detection scores").reshape(-1)
        if len(s) != n:
            raise InputError(f"scores has {len(s)} entries; expected one per box ({n})")
        if not np.isfinite(s).all():
            raise InputError("scores must be finite (a NaN or inf was given); expected the detector's scores")
        return s

    def _check(self, boxes: Any, probs: Any) -> Tuple[np.ndarray, np.ndarray]:
        b = self._boxes(boxes)
        p = _numbers(probs, "probs", f"({len(b)}, num_classes)")
        classes = len(self._tracks[0].num) if self._tracks else None
        if b.size == 0 and p.size == 0:
            given = p.shape[-1] if p.ndim == 2 else 0
            if classes is not None and given not in (0, classes):
                raise InputError(f"probs has {given} classes; expected {classes}, the tracks' own (a new stream "
                                 "with other classes: call reset() first)")
            return b, p.reshape(0, given or (classes or 0))
        if p.ndim != 2 or len(p) != len(b):
            raise InputError(f"probs has shape {p.shape}; expected ({len(b)}, num_classes), one row per box")
        _check_probs(p)
        if classes is not None and p.shape[1] != classes:
            raise InputError(f"probs has {p.shape[1]} classes; expected {classes}, the tracks' own (a new stream "
                             "with other classes: call reset() first)")
        return b, p

    def _match(self, b: np.ndarray, among: Any = None, weak: Optional[np.ndarray] = None) -> dict[int, int]:
        """{face index: index into ``among``} (default: every track) for the faces that continue a track. The
        ``weak`` boxes (bools; None: none) are matched after the others, each only to a free track that
        :meth:`continuing` accepts (IoU at least :data:`WEAK_IOU`, the best overlap first); they start no track."""
        among = list(range(len(self._tracks))) if among is None else list(among)
        if weak is None or not np.any(weak):
            return self._match_strong(b, among)
        strong, light = np.flatnonzero(~weak), np.flatnonzero(weak)
        pairs = {int(strong[i]): j for i, j in self._match_strong(b[strong], among).items()}
        free = [k for k, j in enumerate(among) if k not in pairs.values() and self._weak_continues(self._tracks[j])]
        if len(light) and free:
            iou = box_iou(b[light], np.stack([self._expected(self._tracks[among[k]]) for k in free]))
            rows, cols = np.nonzero(iou >= WEAK_IOU)
            found: dict[int, int] = {}
            _pair_greedily(-iou[rows, cols], rows, cols, found, set())
            pairs.update({int(light[i]): free[k] for i, k in found.items()})
        return pairs

    def _weak_continues(self, tr: _Track) -> bool:
        """Whether a weak detection may continue ``tr``: found in ``coast_after`` frames, with a confident best score."""
        return tr.hits >= self.coast_after and (tr.best_score is None or tr.best_score >= self.weak_track_score)

    def _match_strong(self, b: np.ndarray, among: list[int]) -> dict[int, int]:
        pairs: dict[int, int] = {}
        tracks = [self._tracks[j] for j in among]
        if not len(b) or not tracks:
            return pairs
        t = np.stack([self._expected(tr) for tr in tracks])
        rows, cols, iou = overlapping_iou(b, t)
        taken: set[int] = set()
        ok = iou >= self.min_iou
        _pair_greedily(-iou[ok], rows[ok], cols[ok], pairs, taken)
        if self.max_shift > 0:
            # only faces and tracks the overlaps left free can pair here: with most faces matched, a crowd's full
            # face x track distance matrix is not needed
            fb = np.array([i for i in range(len(b)) if i not in pairs], dtype=np.int64)
            ft = np.array([j for j in range(len(t)) if j not in taken], dtype=np.int64)
            if not len(fb) or not len(ft):
                return pairs
            bb, tt = b[fb], t[ft]
            side_b = np.maximum(bb[:, 2] - bb[:, 0], bb[:, 3] - bb[:, 1])
            side_t = np.maximum(tt[:, 2] - tt[:, 0], tt[:, 3] - tt[:, 1])
            cb = (bb[:, :2] + bb[:, 2:]) / 2
            ct = (tt[:, :2] + tt[:, 2:]) / 2
            dist = (np.linalg.norm(cb[:, None, :] - ct[None, :, :], axis=2)
                    / np.maximum(side_b[:, None], side_t[None, :]))
            ratio = side_b[:, None] / side_t[None, :]
            dist = np.where((ratio >= 0.5) & (ratio <= 2.0), dist, np.inf)
            # a track with no velocity to move it on (found once, or no motion) is sought at its last box: over frames
            # the detector skipped (detect_every) its face went on moving, so the distance allowed is per frame; the
            # nearest pairs still go first, so such a track does not take a face nearer another track's box
            frames = 1.0 + np.array([tr.since - tr.missed if (not self.motion or tr.hits <= 1) else 0
                                     for tr in (tracks[j] for j in ft)])
            found: dict[int, int] = {}
            rows, cols = np.nonzero(dist <= self.max_shift * frames[None, :])
            _pair_greedily(dist[rows, cols], rows, cols, found, set())
            pairs.update({int(fb[i]): int(ft[j]) for i, j in found.items()})
        return pairs

    def __repr__(self) -> str:
        return (f"FaceTracker(half_life={self.half_life:g}, aggregate={self.aggregate!r}, min_iou={self.min_iou:g}, "
                f"max_shift={self.max_shift:g}, max_missed={self.max_missed}, coast={self.coast}, "
                f"coast_after={self.coast_after}, confirm={self.confirm}, motion={self.motion}, "
                f"weak_track_score={self.weak_track_score:g}, tracks={self.n_tracks})")


def _pair_greedily(cost: np.ndarray, rows: np.ndarray, cols: np.ndarray, pairs: dict[int, int],
                   taken: set[int]) -> None:
    """Pairs ``rows`` with ``cols`` (candidate cells in row-major order) greedily, lowest ``cost`` first (ties in that
    order), each row and column at most once; adds to ``pairs`` ({row: column}) and ``taken`` (columns)."""
    for k in np.argsort(cost, kind="stable"):
        i, j = int(rows[k]), int(cols[k])
        if i not in pairs and j not in taken:
            pairs[i] = j
            taken.add(j)


def _centre(box: np.ndarray) -> np.ndarray:
    return (box[:2] + box[2:]) / 2


def _check_looked(looked: Any) -> None:
    if not isinstance(looked, (bool, np.bool_)):
        raise InputError(f"looked={looked!r}; expected True, or False for a frame the detector skipped")


def _marks(name: str, value: Any, n: int) -> np.ndarray:
    """(n,) bools from ``value``: bools (or the numbers 0 and 1), one per box; else :class:`InputError` (text, 0.5 or
    2 are not read as True, nor another shape flattened)."""
    try:
        a = np.asarray(value)
    except (TypeError, ValueError) as exc:  # rows of other lengths
        raise InputError(f"{name} could not be read as one array ({exc}); expected ({n},) bools, one per box") \
            from None
    if a.ndim != 1 or not (a.dtype.kind == "b" or (a.dtype.kind in "iuf" and np.isin(a, (0, 1)).all())):
        shown = repr(value) if len(repr(value)) <= 80 else f"{repr(value)[:77]}..."
        raise InputError(f"{name}={shown} (shape {a.shape}, {a.dtype}); expected ({n},) bools, one per box")
    if len(a) != n:
        raise InputError(f"{name} has {len(a)} entries; expected one per box ({n})")
    return a.astype(bool)


def _track_ids(ids: Any) -> np.ndarray:
    """``ids`` as (N,) int64 track ids; else :class:`InputError` (0.7 is not track 0, nor text a track)."""
    try:
        a = np.asarray(ids).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"ids could not be read as one array ({exc}); expected the track ids update() returned") \
            from None
    whole = a.dtype.kind in "iu" or (a.dtype.kind == "f" and bool(np.all(np.isfinite(a) & (a == np.round(a))
                                                                      & (np.abs(a) < 2.0 ** 63))))
    if a.size and not whole:
        shown = repr(ids) if len(repr(ids)) <= 80 else f"{repr(ids)[:77]}..."
        raise InputError(f"ids={shown} ({a.dtype}); expected the track ids update() returned (whole numbers)")
    return a.astype(np.int64)


def _number(name: str, value: Any, what: str) -> float:
    """``value`` as a finite float; else :class:`InputError` naming ``what`` was expected."""
    if isinstance(value, bool) or not isinstance(value, _NUMBERS) or not _finite(value):
        raise InputError(f"{name}={value!r}; expected {what} (a finite number)")
    return float(value)


def _finite(value: Any) -> bool:
    """Whether a number is finite as a float (an int too large for one is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, _NUMBERS) or not 0 < value <= 1:
        raise InputError(f"{name}={value!r}; expected a number in (0, 1]")
    return float(value)



def _hashable(key: Any) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True


class ExpressionSmoother:
    """:class:`FaceTracker`'s averaging without its matching, for faces another tracker follows.

    Where something else gives each face an identity (DeepStream's nvtracker ``object_id``, a tracker of your own),
    ``update(key, probs, frame)`` returns that face's class probabilities averaged over the frames it was seen in,
    each earlier frame's weight halving every ``half_life`` frames, exactly as :class:`FaceTracker` weights a track:
    over consecutive frames the answer is :func:`smooth_sequence`'s, and a frame in which the face was not seen still
    counts as a frame that passed. docs/deepstream.md shows it fed from nvinfer's output tensors.

    Args:
        half_life, aggregate: as for :class:`FaceTracker`.
        max_age: a face not updated for more than this many frames is forgotten (its next update starts afresh):
            frames of its own stream (``update(..., stream=)``), whose numbers are compared only with each other. A
            stream whose numbers start again (a looping file, a reconnected camera) without :meth:`reset` forgets
            the faces of its old numbers once it has gone on for more than ``max_age`` frames of its new ones.

    Raises:
        InputError: a bad ``half_life``, ``aggregate`` or ``max_age``.
    """

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
        # each stream's face keys, so that forgetting visits the faces of the stream that advanced, not every
        # stream's (thirty cameras: thirty times fewer): every key of self._faces is in its stream's set
        self._keys: dict[Any, set[Any]] = {}

    def __len__(self) -> int:
        return len(self._faces)

    def update(self, key: Any, probs: Any, frame: int, stream: Any = None) -> np.ndarray:
        """Add the face ``key``'s class probabilities of frame ``frame``; return its weighted mean so far.

        Args:
            key: the face's identity (any hashable, e.g. ``(source_id, object_id)``).
            probs: (C,) class probabilities (each >= 0, summing to 1), as a softmax gives them.
            frame: the frame's number (an integer, higher than this face's previous one).
            stream: the stream whose frames ``frame`` counts (any hashable, e.g. DeepStream's ``source_id``): faces
                are forgotten by how far their stream's own frames have gone on, so sources whose frame numbers
                differ (a camera that joined later, another frame rate) do not make each other's faces forgotten.
                None: one stream.

        Returns:
            (C,) float32 probabilities.

        Raises:
            InputError: ``probs`` that are not one face's class probabilities (or of another class count than
                the face's earlier ones), a frame number that is not an integer or not after the face's last, a
                key or stream that cannot be hashed, or a key given before with another stream.
        """
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
            self._forget(stream, frame, count)
        if earlier is None:
            num, den, den2, sq = terms, 1.0, 1.0, p ** 2
        else:
            e_num, e_den, last, _, e_den2, e_sq, _ = earlier
            k = self._decay ** (frame - last)
            num, den = e_num * k + terms, e_den * k + 1.0
            den2, sq = e_den2 * k * k + 1.0, e_sq * k + p ** 2
        self._faces[key] = (num, den, frame, stream, den2, sq, count)
        self._keys.setdefault(stream, set()).add(key)
        return _normalised(num / den, self.aggregate)

    def _forget(self, stream: Any, frame: int, count: int) -> None:
        """Forget the faces of ``stream`` not updated for more than ``max_age`` of its frames or of its count."""
        keys = self._keys.get(stream)
        if not keys:
            return
        # frames in order: the count never forgets a face the frame numbers keep (each step is a frame or more);
        # numbers that started again forget the old numbers' faces, which the new ones may never pass. ``!=`` as
        # well: a stream that is not equal to itself (a NaN) never forgets, as when every face was scanned
        faces, max_age = self._faces, self.max_age
        gone = []
        for k in keys:
            v = faces[k]
            if not (v[3] != stream or (frame - v[2] <= max_age and count - v[6] <= max_age)):
                gone.append(k)
        self._drop(stream, keys, gone)

    def _drop(self, stream: Any, keys: set[Any], gone: list[Any]) -> None:
        for k in gone:
            del self._faces[k]
            keys.discard(k)
        if not keys:
            del self._keys[stream]

    _EVERY_STREAM = object()

    def reset(self, stream: Any = _EVERY_STREAM) -> int:
        """Forget the faces of ``stream`` (as :meth:`update` takes it; None: the default stream) and its latest frame,
        or of every stream when left out; return how many faces were forgotten. For a stream that restarts its frame
        numbers (a looping file, a camera that reconnected: DeepStream's EOS of a source) or that has ended: its
        faces are otherwise kept (those of an ended stream until it is reset; those of a restarted one until its new
        numbers pass the old ones, or go on for more than ``max_age`` frames), and a face whose key comes again
        meanwhile is refused (frames in order).

        Raises:
            InputError: ``stream`` cannot be hashed.
        """
        if stream is ExpressionSmoother._EVERY_STREAM:
            n = len(self._faces)
            self._faces.clear()
            self._latest.clear()
            self._keys.clear()
            return n
        if not _hashable(stream):
            raise InputError(f"stream={stream!r} cannot be hashed; expected e.g. a source_id, as update() takes")
        keys = self._keys.get(stream)
        gone = [] if keys is None else [k for k in keys if not self._faces[k][3] != stream]
        if keys is not None:
            self._drop(stream, keys, gone)
        self._latest.pop(stream, None)
        return len(gone)

    def spread(self, key: Any) -> Optional[float]:
        """How much the frames averaged for ``key`` so far differ (as :attr:`FaceTracker.spread`, after its last
        :meth:`update`): what its confidence reads
        (:meth:`~fsrfer_edge.confidence.ScoreCalibration.track_confidence`). None with ``aggregate="log"``.

        Raises:
            InputError: ``key`` was never updated, or has been forgotten.
        """
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
