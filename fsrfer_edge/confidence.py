"""A face's confidence: the chance its label is right, at every face size.

A face's ``score`` (the probability of its label) means different things at different sizes for the shipped model,
which learnt FER+'s vote distributions: at 48 px its labels are right far more often than their scores say, at 6 px
about as often (docs/experiments.md, "What a face's score means"). Temperature scaling (Guo et al., ICML 2017)
fixes that per size: the confidence is the largest probability of ``softmax(logits / T)``, with one ``T`` per
down-sample factor, fitted on FER+ val by the likelihood of the majority label; a face of another size takes
``log T`` interpolated linearly in ``log factor`` (the nearest end's ``T`` outside the fitted factors). ``T`` changes
no label.

    cal = ScoreCalibration.fit({f: logits_f for f in factors}, {f: labels for f in factors}, classes)
    conf = cal.confidence(logits, factors_of_the_faces)         # (N,) chance each label is right

numpy only (the SDK's runtime path).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from .errors import InputError, ModelError

logger = logging.getLogger(__name__)

#: Where a model's score calibration is looked for: beside the model, its name with this suffix instead of the
#: model's (``mymodel.onnx`` -> ``mymodel.scores.json``), then among the package's (the shipped model's).
SUFFIX = ".scores.json"

#: The temperatures a fit chooses among: 401 values of log T, evenly from log 0.05 to log 5.
LOG_T_GRID = np.linspace(np.log(0.05), np.log(5.0), 401)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _check_logits(logits: Any, what: str = "logits") -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise InputError(f"{what} of shape {z.shape}; expected (N, num_classes) with N >= 1 and at least 2 classes")
    if not np.isfinite(z).all():
        raise InputError(f"{what} hold NaN or infinite values; expected finite logits")
    return z


def fit_temperature(logits: Any, labels: Any, grid: np.ndarray = LOG_T_GRID) -> float:
    """The temperature of ``grid`` (log values) whose ``softmax(logits / T)`` gives ``labels`` the highest mean
    log-likelihood.

    Raises:
        InputError: malformed logits or labels.
    """
    z = _check_logits(logits)
    y = np.asarray(labels)
    if y.shape != (z.shape[0],) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= z.shape[1]:
        raise InputError(f"labels of shape {y.shape} and dtype {y.dtype}; expected ({z.shape[0]},) integer class "
                         f"indices in 0..{z.shape[1] - 1}")
    rows = np.arange(len(y))
    nll = [-_log_softmax(z / np.exp(t))[rows, y].mean() for t in grid]
    return float(np.exp(grid[int(np.argmin(nll))]))


@dataclasses.dataclass(frozen=True, eq=False)
class ScoreCalibration:
    """Temperatures per face size, measured for one model.

    Attributes:
        classes: the model's classes.
        factors: the down-sample factors the temperatures were fitted at (input side over the crop's side),
            increasing; one factor means one temperature for every size.
        temperatures: one per factor.
        n: faces each temperature was fitted on.
        checkpoint_sha256: the checkpoint the model was exported from ('' if unknown).
        source: how it was measured (free text).
    """

    classes: tuple[str, ...]
    factors: tuple[float, ...]
    temperatures: tuple[float, ...]
    n: tuple[int, ...] = ()
    checkpoint_sha256: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        f, t = np.asarray(self.factors, float), np.asarray(self.temperatures, float)
        if f.ndim != 1 or not len(f) or f.shape != t.shape:
            raise ModelError(f"score calibration: {len(f)} factors and {len(t)} temperatures; expected one "
                             "temperature per factor, at least one")
        if not (np.isfinite(f).all() and (f >= 1).all() and (np.diff(f) > 0).all()):
            raise ModelError(f"score calibration: factors {list(self.factors)}; expected increasing factors >= 1")
        if not (np.isfinite(t).all() and (t > 0).all()):
            raise ModelError(f"score calibration: temperatures {list(self.temperatures)}; expected positive numbers")
        if len(self.classes) < 2:
            raise ModelError(f"score calibration: classes {list(self.classes)}; expected at least 2")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScoreCalibration):
            return NotImplemented
        return dataclasses.astuple(self) == dataclasses.astuple(other)

    def __hash__(self) -> int:
        return hash(dataclasses.astuple(self))

    # -- fitting ------------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, logits: Mapping[float, Any], labels: Mapping[float, Any], classes: Sequence[str],
            checkpoint_sha256: str = "", source: str = "") -> "ScoreCalibration":
        """One temperature per factor from each factor's logits and true labels (:func:`fit_temperature`).

        Raises:
            InputError: no factors, mismatched keys, or malformed logits or labels.
        """
        if not logits or set(logits) != set(labels):
            raise InputError(f"factors {sorted(logits)} of logits and {sorted(labels)} of labels; expected the same "
                             "factors, at least one")
        factors = sorted(float(f) for f in logits)
        by = {float(f): f for f in logits}
        temps, n = [], []
        for f in factors:
            z = _check_logits(logits[by[f]], f"logits at factor {f:g}")
            if z.shape[1] != len(classes):
                raise InputError(f"logits at factor {f:g} have {z.shape[1]} classes; expected {len(classes)}")
            temps.append(fit_temperature(z, labels[by[f]]))
            n.append(int(z.shape[0]))
        return cls(tuple(str(c) for c in classes), tuple(factors), tuple(temps), tuple(n), checkpoint_sha256, source)

    # -- using --------------------------------------------------------------------------------------------------
    def temperature(self, factors: Any) -> np.ndarray:
        """The temperature for each face's factor: log T interpolated linearly in log factor, the nearest end's
        outside the fitted factors (a factor under 1, a crop larger than the input, takes the first's)."""
        f = np.asarray(factors, dtype=np.float64)
        if not np.isfinite(f).all() or (f <= 0).any():
            raise InputError(f"factors {f.tolist()[:8]}...; expected positive finite numbers")
        log_t = np.log(np.asarray(self.temperatures, float))
        if len(log_t) == 1:
            return np.full(f.shape, float(np.exp(log_t[0])))
        return np.exp(np.interp(np.log(f), np.log(np.asarray(self.factors, float)), log_t))

    def confidence(self, logits: Any, factors: Any) -> np.ndarray:
        """(N,) for each face the largest probability of ``softmax(logits / T)`` at its factor's ``T``: the chance
        its label (the argmax, unchanged) is right.

        Raises:
            InputError: malformed logits, or factors that are not one positive number per face.
        """
        z = _check_logits(logits)
        f = np.broadcast_to(np.asarray(factors, dtype=np.float64), (z.shape[0],)) if np.ndim(factors) == 0 \
            else np.asarray(factors, dtype=np.float64)
        if f.shape != (z.shape[0],):
            raise InputError(f"factors of shape {f.shape}; expected one per face, ({z.shape[0]},)")
        if z.shape[1] != len(self.classes):
            raise InputError(f"logits have {z.shape[1]} classes; this calibration has {len(self.classes)}")
        t = self.temperature(f)
        return np.exp(_log_softmax(z / t[:, None]).max(axis=1))

    # -- files --------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "factors": list(self.factors),
                "temperatures": [round(t, 6) for t in self.temperatures], "n": list(self.n),
                "checkpoint_sha256": self.checkpoint_sha256, "source": self.source}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ScoreCalibration":
        try:
            return cls(tuple(str(c) for c in d["classes"]), tuple(float(f) for f in d["factors"]),
                       tuple(float(t) for t in d["temperatures"]), tuple(int(v) for v in d.get("n", ())),
                       str(d.get("checkpoint_sha256", "")), str(d.get("source", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"score calibration: expected classes, factors and temperatures; {exc!r}") from None

    def save(self, path: Union[str, "os.PathLike[str]"]) -> Path:
        """Write it as JSON (atomically: a killed write leaves no half file)."""
        from .fileio import write_json

        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "ScoreCalibration":
        """Read a file :meth:`save` wrote. Raises ModelError for a missing, unreadable or malformed one."""
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ModelError(f"{path}: not a readable score calibration (JSON written by ScoreCalibration.save): "
                             f"{exc}") from None
        if not isinstance(d, dict):
            raise ModelError(f"{path}: expected a JSON object of a score calibration")
        try:
            return cls.from_dict(d)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None

    def mismatch(self, classes: Sequence[str], checkpoint_sha256: str) -> Optional[str]:
        """Why it does not belong to a model with these classes and checkpoint, or None when it does."""
        if tuple(classes) != self.classes:
            return f"its classes {list(self.classes)} are not the model's {list(classes)}"
        if self.checkpoint_sha256 and checkpoint_sha256 and self.checkpoint_sha256 != checkpoint_sha256:
            return (f"it was measured on checkpoint {self.checkpoint_sha256[:12]}…, the model comes from "
                    f"{checkpoint_sha256[:12]}…")
        return None
