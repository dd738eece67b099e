"""Per-factor evaluation: accuracy, macro-F1 and confusion matrices, JSON and PNG plots.

Every method is evaluated the same way: the test faces are degraded by each factor with
:func:`fsrfer_edge.preprocessing.degrade` (anti-aliased down-sampling, resize back), normalised with
the model's own preprocessing, and classified.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np

from fsrfer_edge.errors import InputError
from fsrfer_edge.fileio import write_json as write_json  # noqa: F401  (re-exported for the trainer)
from fsrfer_edge.preprocessing import CLASSES, Preprocessing, degrade

log = logging.getLogger(__name__)

#: (normalised float32 NCHW batch, the batch's down-sample factor) -> logits. The factor is what a
#: scale-aware model is told (the SDK knows it from each crop's size); other models ignore it.
LogitsFn = Callable[[np.ndarray, int], np.ndarray]


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int = len(CLASSES)) -> np.ndarray:
    """(k, k) counts of true class (rows) against predicted class (columns).

    Raises:
        InputError: on labels or predictions outside 0..k-1 (a -1 would be counted as the last class).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    for name, y in (("labels", y_true), ("predictions", y_pred)):
        if not np.issubdtype(y.dtype, np.integer) or (y.size and (y.min() < 0 or y.max() >= k)):
            got = f"values {y.min()}..{y.max()}" if np.issubdtype(y.dtype, np.integer) else f"dtype {y.dtype}"
            raise InputError(f"received {name} of {got}; expected class indices 0..{k - 1}")
    m = np.zeros((k, k), np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def macro_f1(conf: np.ndarray) -> float:
    """Macro-averaged F1 over the classes that occur in the ground truth."""
    tp = np.diag(conf).astype(float)
    support, predicted = conf.sum(1), conf.sum(0)
    prec = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    rec = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(tp), where=(prec + rec) > 0)
    present = support > 0
    return float(f1[present].mean()) if present.any() else 0.0


def degraded_inputs(images: np.ndarray, factor: int, pre: Preprocessing) -> np.ndarray:
    """Faces (N,H,W) uint8 at the model size -> degraded, normalised (N,1,H,W) float32."""
    lr = np.clip(degrade(images, factor, pre.resize_kernel), 0, 255)
    return pre.normalize(lr)[:, None]


#: How a low-resolution test face reaches the model (issue 12's three protocols):
#: ``resized``: down-sampled by the factor and resized back to the model size in float (the tables'
#: protocol, :func:`degraded_inputs`); ``small``: down-sampled (bicubic, anti-aliased) to a small uint8
#: crop that the SDK's own preprocessing (``Preprocessing.to_pixels``, what ``Recognizer`` runs) brings
#: to the model size; ``camera``: like ``small`` but area-averaged (box kernel, as camera pipelines and
#: OpenCV's INTER_AREA down-sample) and JPEG-compressed at quality ``CAMERA_JPEG_QUALITY``.
PROTOCOLS = ("resized", "small", "camera")
CAMERA_JPEG_QUALITY = 50


def small_crops(images: np.ndarray, factor: int, protocol: str = "small") -> np.ndarray:
    """(N, s, s) uint8 crops of side s = round(H / factor), as a camera-side crop of a small face would be."""
    if protocol not in PROTOCOLS[1:]:
        raise ValueError(f"protocol {protocol!r} makes no small crops; expected one of {PROTOCOLS[1:]}")
    if protocol == "camera":
        return lr_crops(images, factor, "box", CAMERA_JPEG_QUALITY)
    return lr_crops(images, factor, "bicubic")


def sdk_factor(factor: int, image_side: int, input_size: int) -> float:
    """The factor the SDK reads for :func:`small_crops`'s crop of a face ``image_side`` pixels wide at ``factor``: the
    model's input side over the crop's side (``CrowdAnalyzer.factors``, ``Recognizer``'s confidence). It is
    ``factor`` for a 48 px model on 48 px FER faces; a calibration file keys its factors this way, so that a model
    of another input size reads them as its crops were measured."""
    return input_size / max(1, round(image_side / factor))


def lr_crops(images: np.ndarray, factor: int, kernel: str, jpeg_quality: Optional[int] = None) -> np.ndarray:
    """(N, s, s) uint8 crops of side s = round(H / factor), down-sampled (anti-aliased) with ``kernel`` and,
    with ``jpeg_quality``, JPEG-compressed at that quality (the protocols' crops, and their parts)."""
    from fsrfer_edge.preprocessing import resize

    if not isinstance(images, np.ndarray) or images.ndim < 2:
        raise InputError(f"received images {type(images).__name__}; expected an (N, H, W) uint8 numpy array of faces")
    if isinstance(factor, (bool, np.bool_)) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise InputError(f"received down-sample factor {factor!r}; expected an integer >= 1")
    q = jpeg_quality
    if q is not None and (isinstance(q, (bool, np.bool_)) or not isinstance(q, (int, np.integer)) or not 1 <= q <= 100):
        raise InputError(f"received jpeg_quality={jpeg_quality!r}; expected an integer in 1..100 (or None: no JPEG)")
    h = images.shape[-1]
    if factor > min(images.shape[-2:]):  # a 1-pixel crop whatever the factor, reported as xFACTOR (as degrade())
        raise InputError(f"down-sample factor {factor} on {images.shape[-2]}x{h} faces leaves less than one pixel; "
                         f"expected a factor from 1 to {min(images.shape[-2:])}")
    s = max(1, round(h / factor))
    small = images.astype(np.float32) if s == h else resize(images, (s, s), kernel, antialias=True)
    small = np.clip(np.rint(small), 0, 255).astype(np.float32)
    if jpeg_quality is not None:
        from .degrade import _jpeg

        small = _jpeg(small, np.full(len(small), int(jpeg_quality)))
    return small.astype(np.uint8)


def protocol_inputs(images: np.ndarray, factor: int, pre: Preprocessing, protocol: str = "resized") -> np.ndarray:
    """Normalised (N, 1, S, S) model inputs for test faces at ``factor`` under ``protocol``."""
    if protocol == "resized":
        return degraded_inputs(images, factor, pre)
    return crop_inputs(small_crops(images, factor, protocol), pre)


def crop_inputs(crops: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Normalised model inputs for small uint8 crops, through the SDK's preprocessing (what ``Recognizer`` runs)."""
    return pre.normalize(pre.to_pixels(list(crops)))


def evaluate_fn(logits_fn: LogitsFn, images: np.ndarray, labels: np.ndarray, factors: Iterable[int],
                pre: Preprocessing, batch_size: int = 256, protocol: str = "resized",
                inputs: Optional[Callable[[np.ndarray, int], np.ndarray]] = None) -> dict[str, Any]:
    """Evaluate a logits function per factor under one of :data:`PROTOCOLS`, or with ``inputs(faces,
    factor)`` making the model inputs instead (e.g. crops of other kernels or JPEG qualities).

    Returns {"factors": {"1": {...}, ...}, "mean_accuracy", "protocol"}.

    Raises:
        InputError: on faces that are not an (N, H, W) array, labels that are not N class indices, factors that
            are not a list of integers >= 1, or a batch size below 1."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}; expected one of {PROTOCOLS}")
    if not isinstance(images, np.ndarray) or images.ndim != 3:
        got = f"shape {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise InputError(f"received images of {got}; expected an (N, H, W) numpy array of faces")
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"received labels of shape {labels.shape} ({labels.dtype}); expected ({len(images)},) "
                         "integer class indices, one per face")
    if labels.size and (labels.min() < 0 or labels.max() >= len(pre.classes)):
        raise InputError(f"received labels with values {labels.min()}..{labels.max()}; expected class indices "
                         f"0..{len(pre.classes) - 1}, one per face")
    if isinstance(factors, (str, bytes)) or not isinstance(factors, Iterable):
        raise InputError(f"received factors={factors!r}; expected a list of down-sample factors (integers >= 1)")
    factors = list(factors)
    for f in factors:
        if isinstance(f, (bool, np.bool_)) or not isinstance(f, (int, np.integer)) or f < 1:
            raise InputError(f"received down-sample factor {f!r} in factors; expected integers >= 1")
    _check_batch_size(batch_size)
    side = (pre.input_size, pre.input_size)
    if inputs is None and protocol == "resized" and tuple(images.shape[1:]) != side:
        raise InputError(
            f"received {'x'.join(map(str, images.shape[1:]))} faces; the model takes {side[0]}x{side[1]} faces, and "
            "protocol 'resized' degrades the faces at their own size. Give faces of the model's size, or use "
            "protocol 'small' (fsrfer-eval --protocol small: crops brought to the model's size by the SDK's "
            "preprocessing)")
    out: dict[str, Any] = {"n": int(len(labels)), "factors": {}, "protocol": protocol}
    for f in factors:
        pred = protocol_logits(logits_fn, images, int(f), pre, protocol, batch_size, inputs).argmax(1)
        conf = confusion(labels, pred, len(pre.classes))
        out["factors"][str(f)] = {"accuracy": float((pred == labels).mean()), "macro_f1": macro_f1(conf),
                                  "confusion": conf.tolist()}
    out["mean_accuracy"] = float(np.mean([v["accuracy"] for v in out["factors"].values()]))
    return out


def protocol_logits(logits_fn: LogitsFn, images: np.ndarray, factor: int, pre: Preprocessing,
                    protocol: str = "resized", batch_size: int = 256,
                    inputs: Optional[Callable[[np.ndarray, int], np.ndarray]] = None) -> np.ndarray:
    """(N, C) logits of test faces at ``factor`` under ``protocol`` (or ``inputs(faces, factor)``), in batches."""
    _check_batch_size(batch_size)
    make = inputs or (lambda faces, f: protocol_inputs(faces, f, pre, protocol))
    return np.concatenate([np.asarray(logits_fn(make(images[s:s + batch_size], factor), factor))
                           for s in range(0, len(images), batch_size)])


def _check_batch_size(batch_size: Any) -> None:
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"received batch_size={batch_size!r}; expected an integer >= 1")


def torch_logits_fn(model: Any) -> LogitsFn:
    """Logits function of a torch model: batches go to the model's device (CPU or GPU), logits come
    back as numpy."""
    import torch

    params = list(model.parameters())
    dev = params[0].device if params else torch.device("cpu")
    scale_aware = bool(getattr(model, "scale_aware", False))

    def fn(x: np.ndarray, factor: int = 1) -> np.ndarray:
        with torch.no_grad():
            t = torch.from_numpy(x).to(dev)
            if scale_aware:
                return model(t, torch.full((len(x),), factor, device=dev)).cpu().numpy()
            return model(t).cpu().numpy()

    return fn


def onnx_logits_fn(path: str | os.PathLike[str], threads: Optional[int] = None) -> tuple[LogitsFn, Preprocessing]:
    """Logits function of an exported ONNX file on the SDK's ONNX Runtime backend (CPU), as users run it."""
    from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(path, providers="cpu", threads=threads)
    info = backend.info
    pre = info.preprocessing

    def fn(x: np.ndarray, factor: int = 1) -> np.ndarray:
        if info.input_dtype == "uint8":
            x = np.clip(np.rint(x * pre.std * 255 + pre.mean * 255), 0, 255).astype(np.uint8)
        return backend.infer(x)

    return fn, pre


#: Each method's name as the README's result tables print it, and its colour in every plot.
METHOD_NAMES: dict[str, str] = {
    "hr": "HR model on bicubic LR input",
    "lr_finetune": "LR-fine-tuned model",
    "image_sr": "image SR + HR model",
    "fsrfer_no_reweight": "FSR-FER without re-weighting",
    "fsrfer_no_adversarial": "FSR-FER without adversarial loss",
    "fsrfer_no_reweight_no_adversarial": "FSR-FER without re-weighting and adversarial loss",
    "fsrfer": "FSR-FER (full)",
    "fsrfer_onnx_fp32": "FSR-FER, ONNX FP32 (ONNX Runtime CPU)",
    "fsrfer_onnx_fp16": "FSR-FER, ONNX FP16 (ONNX Runtime CPU)",
    "fsrfer_onnx_int8-s8s8": "FSR-FER, INT8 s8s8 for TensorRT (ONNX Runtime CPU)",
    "fsrfer_onnx_int8-u8s8": "FSR-FER, INT8 u8s8 (ONNX Runtime CPU)",
}
METHOD_COLOURS: dict[str, str] = {  # tab10/tab20; the ONNX rows are shades of FSR-FER's blue
    "hr": "#7f7f7f", "lr_finetune": "#ff7f0e", "image_sr": "#2ca02c", "fsrfer_no_reweight": "#9467bd",
    "fsrfer_no_adversarial": "#8c564b", "fsrfer_no_reweight_no_adversarial": "#e377c2", "fsrfer": "#1f77b4",
    "fsrfer_onnx_fp32": "#17becf", "fsrfer_onnx_fp16": "#aec7e8", "fsrfer_onnx_int8-s8s8": "#393b79",
    "fsrfer_onnx_int8-u8s8": "#6b6ecf",
}
_SIZE_PX = {"1": "48", "2": "24", "3": "16", "4": "12", "6": "8", "8": "6"}


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def _save_fig(fig: Any, path: Path) -> None:
    from fsrfer_edge.fileio import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))


def plot_accuracy(results: dict[str, dict[str, Any]], path: str | os.PathLike[str], title: str = "") -> None:
    """Accuracy against face size, one line per method (README names, one fixed colour per method); the
    x axis has the measured factors only, so no tick stands at a size nobody evaluated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    factors = sorted({f for r in results.values() for f in r["factors"]}, key=int)
    pos = {f: i for i, f in enumerate(factors)}
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    order = [m for m in METHOD_NAMES if m in results] + [m for m in results if m not in METHOD_NAMES]
    for m in order:
        fs = [f for f in factors if f in results[m]["factors"]]
        ax.plot([pos[f] for f in fs], [100 * results[m]["factors"][f]["accuracy"] for f in fs], marker="o",
                color=METHOD_COLOURS.get(m), label=method_name(m), linewidth=2.2 if m == "fsrfer" else 1.3,
                linestyle="--" if "_onnx_" in m else "-")
    ax.set_xticks(range(len(factors)), [f"x{f}\n{_SIZE_PX.get(f, '?')} px" for f in factors])
    ax.set_xlabel("down-sample factor and face size")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "Accuracy against face size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    _save_fig(fig, Path(path))
    plt.close(fig)


def plot_confusion(conf: list[list[int]], classes: Iterable[str], path: str | os.PathLike[str], title: str) -> None:
    """Row-normalised confusion matrix (% of each true class), with its colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(conf, float)
    norm = 100 * m / np.maximum(m.sum(1, keepdims=True), 1)
    names = list(classes)
    fig, ax = plt.subplots(figsize=(6.2, 5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=100)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{norm[i, j]:.0f}", ha="center", va="center",
                    color="white" if norm[i, j] > 50 else "black", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="% of the true class")
    _save_fig(fig, Path(path))
    plt.close(fig)
