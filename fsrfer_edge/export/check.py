"""Compare every export step with the one before it, with a tolerance per precision.

PyTorch -> ONNX -> simplified -> FP16 / INT8: each pair runs on the same inputs (random pixels, and
real faces when given) and :func:`check_step` raises :class:`ExportCheckError` with the numbers when
the candidate strays. The accuracy gate (:func:`accuracy_table`, :func:`accuracy_gate`) measures
FP16 and INT8 accuracy against FP32 on labelled faces degraded by each factor.

A *runner* maps a pixel batch (N, C, S, S) float32 in [0, 255] to logits (N, classes); each runner
turns pixels into its own model input, as the runtime would.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import InputError, ModelError, check_flag, require
from ..metadata import ModelInfo
from ..preprocessing import degrade, spatial
from .calib import faces_to_pixels, to_model_input

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
Runner = Callable[[np.ndarray], np.ndarray]


class ExportCheckError(ModelError):
    """An exported model does not match the step before it, or loses too much accuracy.

    ``report`` holds the numbers (the same dict the CLI writes into its JSON report).
    """

    def __init__(self, message: str, report: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(message)
        self.report = dict(report or {})


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far a candidate may stray from its reference.

    ``max_abs``: largest allowed |logit difference|, relative to ``max(1, max |reference logit|)``.
    ``min_agreement``: smallest allowed top-1 agreement. For FP32/FP16 a disagreement counts only
    where the reference's own margin between the two classes exceeds twice the logit tolerance (both
    logits may move by the tolerance, so a near tie may flip under legitimate rounding); for INT8
    every disagreement counts.
    """

    max_abs: float
    min_agreement: float
    count_ties: bool = False

    def __post_init__(self) -> None:
        """Refuse a limit that would pass or fail every comparison whatever the logits (NaN, a negative one)."""
        if not _real(self.max_abs) or not self.max_abs >= 0:
            raise InputError(f"Tolerance max_abs={self.max_abs!r}; expected a number >= 0 (math.inf: no logit limit)")
        if not _real(self.min_agreement) or not 0 <= self.min_agreement <= 1:
            raise InputError(f"Tolerance min_agreement={self.min_agreement!r}; expected a fraction from 0 to 1")
        check_flag("Tolerance count_ties", self.count_ties)


def _real(value: Any) -> bool:
    """Whether ``value`` is a real number (not a bool, a string or None)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs=1e-3, min_agreement=1.0),
    "fp16": Tolerance(max_abs=2e-2, min_agreement=1.0),
    # INT8 logits move by design; top-1 decisions must mostly survive. Gated on real faces when
    # given (random noise is far outside the calibration distribution).
    "int8": Tolerance(max_abs=math.inf, min_agreement=0.90, count_ties=True),
}


# ---------------------------------------------------------------------------------------------
# Runners
# ---------------------------------------------------------------------------------------------


def _check_pixels(pixels: Any, info: ModelInfo) -> None:
    """Refuse a pixel batch that is not (N, C, S, S) for ``info``'s model (the runtime would fail with its own
    message about ranks or dimensions)."""
    pre = info.preprocessing
    want = (pre.channels, pre.input_size, pre.input_size)
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 4 or pixels.shape[1:] != want:
        what = f"an array of shape {pixels.shape}" if isinstance(pixels, np.ndarray) else f"a {type(pixels).__name__}"
        shape = ", ".join(map(str, want))
        raise InputError(f"pixels: received {what}; expected a numpy pixel batch of shape (N, {shape}) (random_pixels "
                         "or face_pixels make one)")


def torch_runner(model: Any, info: ModelInfo) -> Runner:
    """Runner for a PyTorch InferenceModel taking normalised float32 input (the checkpoint model)."""
    torch = require("torch", "export", "checking the export against PyTorch")

    def run(pixels: np.ndarray) -> np.ndarray:
        _check_pixels(pixels, info)
        x = info.preprocessing.normalize(pixels)
        with torch.no_grad():
            return np.asarray(model(torch.from_numpy(x)).numpy(), dtype=np.float32)

    return run


def onnx_runner(path: PathLike, threads: Optional[int] = None, batch_size: int = 128) -> Runner:
    """Runner for an fsrfer ONNX file on ONNX Runtime CPU (input made from its own metadata).

    Raises:
        InputError: ``threads`` or ``batch_size`` is not a count; (the runner) pixels that are not (N, C, S, S).
        ModelError: the file is not a loadable fsrfer model.
    """
    from .onnx_export import ort_session, read_model_info

    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size={batch_size!r}; expected an integer >= 1")
    info = read_model_info(path)
    sess = ort_session(path, threads)

    def run(pixels: np.ndarray) -> np.ndarray:
        _check_pixels(pixels, info)
        x = to_model_input(pixels, info)
        outs = [sess.run([info.output_name], {info.input_name: x[i:i + batch_size]})[0]
                for i in range(0, len(x), batch_size)]
        return np.concatenate(outs).astype(np.float32)

    return run


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def random_pixels(info: ModelInfo, n: int = 32, seed: int = 0) -> np.ndarray:
    """Integer-valued random pixels (N, C, S, S) float32: half noise, half smooth random images."""
    pre = info.preprocessing
    rng = np.random.default_rng(seed)
    shape = (n, pre.channels, pre.input_size, pre.input_size)
    noise = rng.integers(0, 256, size=shape).astype(np.float32)
    # Smooth images (low-frequency noise blown up) look more like faces than white noise does.
    coarse = rng.uniform(0, 255, size=(n, pre.channels, 6, 6)).astype(np.float32)
    from ..preprocessing import resize

    smooth = np.clip(np.rint(resize(coarse, (pre.input_size, pre.input_size))), 0, 255)
    half = n // 2
    return np.concatenate([noise[:n - half], smooth[:half]]).astype(np.float32)


def face_pixels(faces: Any, info: ModelInfo) -> np.ndarray:
    """Real faces -> integer-valued pixel batch, so float and uint8 graphs see identical values."""
    out: np.ndarray = np.clip(np.rint(faces_to_pixels(faces, info)), 0, 255).astype(np.float32)
    return out


# ---------------------------------------------------------------------------------------------
# Comparisons
# ---------------------------------------------------------------------------------------------


def compare(ref: np.ndarray, cand: np.ndarray, tol: Tolerance) -> dict[str, Any]:
    """Numbers describing how far ``cand`` logits are from ``ref`` logits, and whether within ``tol``."""
    if ref.shape != cand.shape:
        return {"passed": False, "error": f"output shapes differ: {ref.shape} vs {cand.shape}"}
    if ref.ndim != 2 or 0 in ref.shape:  # nothing compared is not a pass
        return {"passed": False, "error": f"nothing to compare: logits of shape {ref.shape}; expected "
                                          "(N, classes) with N >= 1 and classes >= 1"}
    diff = np.abs(ref.astype(np.float64) - cand.astype(np.float64))
    scale = max(1.0, float(np.abs(ref).max()))
    allowed = tol.max_abs * scale
    r1, c1 = ref.argmax(1), cand.argmax(1)
    rows = np.arange(len(ref))
    margin = ref[rows, r1] - ref[rows, c1]
    flips = (r1 != c1) if tol.count_ties else (r1 != c1) & (margin > 2 * min(allowed, 1e9))
    agreement = 1.0 - float(flips.mean())
    report = {
        "n": len(ref),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "logit_scale": scale,
        "allowed_abs_diff": allowed if math.isfinite(allowed) else None,
        "top1_agreement": float((r1 == c1).mean()),
        "gated_agreement": agreement,
        "min_agreement": tol.min_agreement,
    }
    report["passed"] = bool(float(diff.max()) <= allowed and agreement >= tol.min_agreement)
    return report


def check_step(stage: str, ref: Runner, cand: Runner, precision: str, random: np.ndarray,
               faces: Optional[np.ndarray] = None, tolerance: Optional[Tolerance] = None) -> dict[str, Any]:
    """Run ``ref`` and ``cand`` on the same pixels and compare their logits.

    Args:
        stage: a name for the step, e.g. ``"pytorch->onnx"``.
        ref: the step before (runner).
        cand: the step being checked (runner).
        precision: the candidate's precision (``fp32``, ``fp16``, ``int8``): picks the tolerance.
        random: random pixel batch (see :func:`random_pixels`).
        faces: optional real-face pixel batch (see :func:`face_pixels`).
        tolerance: overrides ``TOLERANCES[precision]``.

    Returns:
        ``{"stage", "precision", "random": {...}, "faces": {...}, "passed"}``.

    Raises:
        ExportCheckError: the candidate is outside the tolerance (the message has the numbers), or a pixel
            batch holds no image (nothing compared is not a pass).
        InputError: ``precision`` has no tolerance (and none is given).
    """
    if tolerance is None and precision not in TOLERANCES:
        raise InputError(f"check {stage}: precision {precision!r}; expected one of {sorted(TOLERANCES)}, or pass a "
                         "tolerance")
    tol = tolerance or TOLERANCES[precision]
    report: dict[str, Any] = {"stage": stage, "precision": precision}
    sets = {"random": random} if faces is None else {"random": random, "faces": faces}
    for name, pixels in sets.items():
        if len(pixels) == 0:  # refused before the models run: nothing compared is not a pass
            raise ExportCheckError(f"check {stage} ({precision}): the {name!r} pixel batch has shape "
                                   f"{np.shape(pixels)}: nothing would be compared; expected at least one image "
                                   "(N >= 1)", report)
    for name, pixels in sets.items():
        report[name] = compare(ref(pixels), cand(pixels), tol)
    # INT8 is gated on real faces when there are some; the random-input numbers are informative.
    gated = ["faces"] if (precision == "int8" and faces is not None) else list(sets)
    report["gated_on"] = gated
    report["passed"] = all(report[g]["passed"] for g in gated)
    summary = ", ".join(
        f"{g}: {report[g]['error']}" if "error" in report[g] else
        f"{g}: max|diff| {report[g].get('max_abs_diff', float('nan')):.3g} "
        f"({_allowed(report[g].get('allowed_abs_diff'))}), top-1 agreement {report[g].get('gated_agreement', 0):.3f} "
        + (f"(min {tol.min_agreement})" if g in gated else "(not gated: informative)") for g in sets)
    if not report["passed"]:
        raise ExportCheckError(f"check {stage} ({precision}) failed: {summary}", report)
    log.info("check %s (%s) passed: %s", stage, precision, summary)
    return report


def _allowed(limit: Optional[float]) -> str:
    """The logit limit as the check log gives it: INT8 has none (its logits move by design; top-1 is gated)."""
    return "no limit" if limit is None else f"allowed {limit:.3g}"


# ---------------------------------------------------------------------------------------------
# Accuracy gate
# ---------------------------------------------------------------------------------------------


def accuracy_table(runners: Mapping[str, Runner], images: np.ndarray, labels: np.ndarray, info: ModelInfo,
                   factors: Iterable[int]) -> dict[str, dict[str, float]]:
    """Accuracy (%) of each runner on ``images`` (N, H, W) or (N, H, W, 3) degraded by each factor, plus their
    ``mean``.

    Returns:
        ``{runner name: {"x1": acc, "x4": acc, ..., "mean": acc}}``.

    Raises:
        InputError: ``labels`` is not one integer per image, or no factors are given.
    """
    table: dict[str, dict[str, float]] = {name: {} for name in runners}
    factors = list(factors)
    n = len(images) if isinstance(images, np.ndarray) and images.ndim >= 1 else None
    if not isinstance(labels, np.ndarray) or labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        shape = labels.shape if isinstance(labels, np.ndarray) else type(labels).__name__
        raise InputError(f"labels: received {shape}; expected a numpy array of {n} integer labels, one per image")
    if not factors:  # the mean of no accuracies would be NaN
        raise InputError("accuracy_table: no factors; expected at least one down-sample factor, e.g. [1, 2, 4]")
    for f in factors:
        low = spatial(images, lambda x: degrade(x, int(f)))
        pixels = face_pixels(np.clip(low, 0.0, 255.0), info)  # clipped: bicubic overshoots
        for name, run in runners.items():
            pred = run(pixels).argmax(1)
            table[name][f"x{f}"] = 100.0 * float((pred == labels).mean())
    for name in runners:
        table[name]["mean"] = float(np.mean([table[name][f"x{f}"] for f in factors]))
    log.info("accuracy: %s", {n: round(t["mean"], 2) for n, t in table.items()})
    return table


def accuracy_gate(table: Mapping[str, Mapping[str, float]], reference: str, int8_names: Sequence[str],
                  max_int8_drop: float, force: bool = False) -> dict[str, Any]:
    """Accuracy change of every variant vs ``reference``; refuse INT8 variants that drop too much.

    The gate is on the mean over factors (per-factor numbers on small sets are noisy); the
    per-factor deltas are reported too.

    Returns:
        ``{"delta": {name: {factor: delta}}, "max_int8_drop": ..., "refused": [...], "forced": bool}``.

    Raises:
        ExportCheckError: an INT8 variant's mean accuracy drops by more than ``max_int8_drop``
            points and ``force`` is false.
        InputError: ``reference`` is not in ``table``, ``max_int8_drop`` is not a number >= 0 (NaN would pass
            every variant), or ``force`` is not True or False.
    """
    if not _real(max_int8_drop) or not max_int8_drop >= 0:
        raise InputError(f"max_int8_drop={max_int8_drop!r}; expected a number of accuracy points >= 0, e.g. 1.0")
    force = check_flag("force", force)
    if reference not in table:
        raise InputError(f"accuracy gate: reference {reference!r} is not in the table; expected one of {sorted(table)}")
    ref = table[reference]
    delta = {name: {k: round(v - ref[k], 4) for k, v in row.items()} for name, row in table.items() if name != reference}
    refused = [n for n in int8_names if n in delta and -delta[n]["mean"] > max_int8_drop]
    report = {"reference": reference, "delta": delta, "max_int8_drop": max_int8_drop, "refused": refused,
              "forced": bool(force and refused)}
    if refused and not force:
        numbers = ", ".join(f"{n}: {table[n]['mean']:.2f}% vs {ref['mean']:.2f}% ({delta[n]['mean']:+.2f} points)"
                            for n in refused)
        raise ExportCheckError(
            f"INT8 accuracy drop exceeds --max-int8-drop {max_int8_drop} points ({numbers}); nothing was written. "
            "Try another --calib-method or more --calib-size faces, or pass --force to write it anyway", report)
    if refused:
        log.warning("writing INT8 file(s) %s despite an accuracy drop over %s points (--force)", refused, max_int8_drop)
    return report
