"""FP16 and INT8 (Q/DQ) variants of an FP32 ONNX file; the precision is written into its metadata.

INT8 comes in two schemes, each for its target:

- ``s8s8``: symmetric int8 activations (zero point 0) and symmetric int8 weights. TensorRT's
  explicit quantization needs exactly this; it is the file ``fsrfer-export --engine`` builds from.
  Q/DQ sit where NVIDIA's placement guidance puts them (see :func:`tensorrt_qdq_options`): on the
  inputs of weighted ops and on the residual input of Add, never after a Conv's output; biases stay
  float (TensorRT's DequantizeLinear takes INT8 only, so an INT32 bias behind one does not parse).
  ONNX Runtime CPU runs it too, but without its fast integer kernels (about FP32 speed).
- ``u8s8``: asymmetric uint8 activations and int8 weights, after ONNX Runtime's
  ``quant_pre_process``: the combination ONNX Runtime's CPU integer kernels are fast for.
  TensorRT refuses it (asymmetric activations).

Calibration data are real face crops, preprocessed as the runtime does (see :mod:`.calib`).
onnxruntime and onnx are imported lazily.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence, Union

import numpy as np

from ..errors import WRITE_ERRNOS, ConfigError, InputError, ModelError, WriteError, check_flag, require
from ..fileio import os_error_of, same_file
from ..metadata import INT8_SCHEMES, ModelInfo
from .calib import CalibrationPasses
from .onnx_export import (
    load_onnx,
    metadata_props,
    save_onnx,
    set_metadata_props,
    variant_info,
    write_model_info,
)

if TYPE_CHECKING:  # pragma: no cover
    import onnx

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
SCHEMES = INT8_SCHEMES  # the ones model metadata may name (metadata.INT8_SCHEMES)
#: Which INT8 files each ``--int8-target`` produces.
TARGETS: dict[str, tuple[str, ...]] = {"tensorrt": ("s8s8",), "cpu": ("u8s8",), "both": ("s8s8", "u8s8")}
CALIB_METHODS = ("percentile", "minmax", "entropy")
#: The lowest opset of an INT8 file: its weights have per-channel scales (DequantizeLinear's ``axis``, opset 13).
INT8_MIN_OPSET = 13
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 2048, 128
_POOL_OPS = ("ReduceMean", "GlobalAveragePool")
#: Ops whose inputs the s8s8 (TensorRT) file quantizes; their outputs are never quantized.
TENSORRT_QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")
_WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: Activation zero-point dtype each scheme must produce.
SCHEME_ZERO_POINT_DTYPE = {"s8s8": np.int8, "u8s8": np.uint8}


class _ToDebug(logging.Filter):
    """Re-log ONNX Runtime's quantization chatter (root-logger INFO/WARNING) at DEBUG on our logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR and "onnxruntime" in record.pathname:
            log.debug("onnxruntime: %s", record.getMessage())
            return False
        return True


@contextlib.contextmanager
def _ort_chatter_to_debug() -> Iterator[None]:
    """ONNX Runtime's calibrators print progress to stdout and log advice on the root logger (e.g.
    "consider pre-processing", deliberately not done for the TensorRT file); keep stdout clean."""
    root = logging.getLogger()
    filt = _ToDebug()
    handlers = list(root.handlers)
    for h in handlers:
        h.addFilter(filt)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        for h in handlers:
            h.removeFilter(filt)
        for line in buf.getvalue().splitlines():
            log.debug("onnxruntime: %s", line)


def _check_distinct(src: PathLike, dst: PathLike) -> None:
    """Refuse a ``dst`` that names ``src``: the FP32 file every variant is made from would be replaced."""
    if same_file(src, dst):
        raise InputError(f"output {dst} is the same file as the FP32 source {src} and would overwrite it; "
                         "expected a different file name for the variant")


def _check_choice(what: str, choice: Any) -> None:
    if choice is not None and not isinstance(choice, (bool, np.bool_)):
        raise ConfigError(f"{what} {choice!r}; expected True, False or None (decide from the graph)")


def _check_prefixes(prefixes: Any) -> None:
    """Refuse ``keep_float`` prefixes that are not a list of strings (one string's characters would be read as
    prefixes, one by one)."""
    if isinstance(prefixes, (str, bytes)):
        raise ConfigError(f"keep_float {prefixes!r}; expected a sequence of module-path prefixes, "
                          f"e.g. [{prefixes!r}]")
    if not isinstance(prefixes, (list, tuple)) or not all(isinstance(p, str) for p in prefixes):
        raise ConfigError(f"keep_float {prefixes!r}; expected a list of module-path prefixes (strings), "
                          "e.g. ['/generator/'], or () for none")


def _quantization() -> Any:
    return require("onnxruntime.quantization", "export", "quantizing models")


def _raise_if_disk(exc: Exception, dst: Path) -> None:
    """A WriteError naming ``dst`` where ``exc`` comes of a failed write (a full disk, a quota, a read-only file
    system): ONNX Runtime writes its working files (the augmented and the quantized model) in a temporary folder beside
    ``dst``; that is no fault of the model."""
    cause = os_error_of(exc)
    if cause is not None and cause.errno in WRITE_ERRNOS:
        raise WriteError(dst, cause) from exc


def convert_fp16(src: PathLike, dst: PathLike) -> ModelInfo:
    """Write an FP16 copy of an FP32 fsrfer ONNX file (inputs and outputs stay as they were).

    Raises:
        ModelError: ``src`` is not an FP32 fsrfer model.
        InputError: ``dst`` is ``src``.
        BackendUnavailable: onnxruntime (which ships the converter) is not installed.
    """
    _check_distinct(src, dst)
    float16 = require("onnxruntime.transformers.float16", "export", "converting a model to FP16")
    model = load_onnx(src)
    info = _fp32_info(model, src)
    props = metadata_props(model)
    try:
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:  # the converter raises assorted types on graphs it cannot handle
        raise ModelError(f"FP16 conversion of {src} failed ({type(exc).__name__}: {exc})") from exc
    # The converter appends its input/output Cast nodes at the end; ONNX requires node order.
    toposort(half.graph)
    out = variant_info(info, precision="fp16")
    set_metadata_props(half, props, replace=True)
    write_model_info(half, out)
    save_onnx(half, dst)
    log.info("wrote FP16 %s", Path(dst).name)
    return out


def toposort(graph: "onnx.GraphProto") -> None:
    """Reorder ``graph.node`` in place so every node comes after the producers of its inputs.

    Raises:
        ModelError: the graph has a cycle or an input nobody produces.
    """
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            missing = sorted({i for n in pending for i in n.input if i not in available})[:5]
            raise ModelError(f"graph {graph.name!r} cannot be ordered: inputs {missing} are never produced")
        for n in ready:
            available.update(n.output)
        ordered.extend(ready)
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)


def _fp32_info(model: "onnx.ModelProto", src: PathLike) -> ModelInfo:
    info = ModelInfo.from_props(metadata_props(model), source=str(src))
    if info.precision != "fp32":
        raise ModelError(f"{src} has precision {info.precision!r}; FP16 and INT8 variants are made from the FP32 file")
    return info


def _validate(scheme: str, calib_method: str) -> None:
    if scheme not in SCHEMES:
        raise ConfigError(f"INT8 scheme {scheme!r}; expected one of {SCHEMES} (s8s8 for TensorRT, u8s8 for ONNX Runtime CPU)")
    if calib_method not in CALIB_METHODS:
        raise ConfigError(f"calibration method {calib_method!r}; expected one of {CALIB_METHODS}")


#: The exporter's wrappers (``onnx_export.fused_module``'s uint8 input, ``onnx_export.flip_average``)
#: hold the model as ``self.model``, so torch.onnx.export names its nodes ``/model/...`` there.
WRAPPER_PREFIX = "/model"


def module_path(node_name: str) -> str:
    """A node's name as the unwrapped InferenceModel's export names it (``/model`` wrappers removed):
    ``/model/model/generator/films.0/Mul`` -> ``/generator/films.0/Mul``."""
    while node_name.startswith(WRAPPER_PREFIX + "/"):
        node_name = node_name[len(WRAPPER_PREFIX):]
    return node_name


#: Node-name prefix torch.onnx.export gives the modules of ``InferenceModel.generator``.
GENERATOR_PREFIX = "/generator/"
#: Always in float, even with a quantized G: a scale-aware model's factor estimator (statistics of
#: the input: a 1-channel Laplacian, means, logs) and the FiLM layers it drives. They cost next to
#: nothing, and quantized they misjudge the factor of the smallest faces (an early G lost 6 points at
#: x8 with them in INT8: results/ferplus/edge_budget_estimator_quantized.json).
ALWAYS_FLOAT_PREFIXES = ("/factor_estimator/", "/generator/films.")
#: Node-name prefixes of the factor estimator and of the FiLM layers (see :func:`film_map_nodes`).
ESTIMATOR_PREFIX = "/factor_estimator/"
FILM_PREFIX = "/generator/films."
#: Whether a u8s8 file quantizes FiLM's ops on the maps when nobody chooses (:func:`resolve_quantize_film`).
#: No: quantized they cost no accuracy but ran no faster on ONNX Runtime's CPU provider (QLinearMul with
#: a per-face broadcast scale; results/ferplus/int8_film_val.json, ``scripts/int8_film.py``; docs/DESIGN.md).
DEFAULT_QUANTIZE_FILM = False


#: Node-name prefixes of the stage copies of a G that starts below its feature level: trainable
#: copies, or (a gated G, ``stage2.adapter_width``) frozen ones run beside their low-rank adapters.
EARLY_GENERATOR_PREFIX = ("/generator/stages.", "/generator/adapters.")


def generator_is_early(model: "onnx.ModelProto") -> bool:
    """Whether the graph's G starts below its feature level (``stage2.generator_start``): it then holds
    copies of the trunk's stages, most of the network's compute."""
    return any(module_path(n.name).startswith(EARLY_GENERATOR_PREFIX) for n in model.graph.node)


def resolve_quantize_generator(model: "onnx.ModelProto", choice: Optional[bool]) -> bool:
    """``choice`` if given, else quantize G exactly when it starts early: an early G kept in float would
    leave an INT8 file running mostly in float (no faster than FP32), while a G on the layer3 map or the
    embedding is a small part of the time and costs accuracy on the smallest faces when quantized.

    Raises:
        ConfigError: ``choice`` is not True, False or None.
    """
    _check_choice("quantize_generator", choice)
    return generator_is_early(model) if choice is None else bool(choice)


def film_map_nodes(model: "onnx.ModelProto") -> list[str]:
    """Names of FiLM's ops on the feature map: the multiply by its scale and the add of its shift after each
    copied block. They are the FiLM nodes computed from a convolution's output (not the estimator's); the
    rest of FiLM is the small network from the factor to the scales and shifts, run once per face.

    ``quantize_int8(quantize_film=True)`` quantizes these (and leaves the small network and the estimator
    in float): they run on every pixel of every channel, and in float they sit between quantized convs.
    """
    from_map: set[str] = set()
    names = []
    for node in model.graph.node:  # in topological order, as the exporter writes it
        path = module_path(node.name)
        seed = node.op_type == "Conv" and not path.startswith(ESTIMATOR_PREFIX)
        if seed or any(i in from_map for i in node.input):
            from_map.update(node.output)
            if path.startswith(FILM_PREFIX):
                names.append(node.name)
    return names


def resolve_quantize_film(model: "onnx.ModelProto", scheme: str, choice: Optional[bool]) -> bool:
    """Whether ``scheme``'s file of ``model`` quantizes FiLM's ops on the maps (:func:`film_map_nodes`): never
    in an s8s8 (TensorRT) file; in a u8s8 file ``choice`` if given, else :data:`DEFAULT_QUANTIZE_FILM` where
    the graph has FiLM.

    Raises:
        ConfigError: an unknown ``scheme``, or a ``choice`` that is not True, False or None.
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"INT8 scheme {scheme!r}; expected one of {SCHEMES}")
    _check_choice("quantize_film", choice)
    if scheme != "u8s8":
        return False
    if choice is not None:
        return bool(choice)
    return DEFAULT_QUANTIZE_FILM and bool(film_map_nodes(model))


def image_conv_nodes(model: "onnx.ModelProto") -> list[str]:
    """Names of the convolutions that read the image: Conv nodes with no Conv above them (the stem's first
    conv; through the uint8 wrapper's Cast and normalisation too).

    They stay in float. On the shipped stem-level G, this one conv (1 input channel, under 0.2% of the
    multiply-adds a face goes through) in INT8 changed the class of 7.9% of FER+ val faces at x8 and 2.6%
    at x6 against FP32; kept in float, 1.3% and 0.9% (results/ferplus/int8_sensitivity_val.json,
    ``scripts/int8_sensitivity.py``). The cause is the input's 8-bit grid reaching the factor estimator
    (ONNX Runtime hands the float estimator the same dequantized input): a face resized up from a few
    pixels differs from its neighbours by less than one grey level, so rounding noise dominates the
    estimator's statistics and its x8 estimates drop (results/ferplus/input_rounding_val.json).
    """
    below_conv: set[str] = set()
    names = []
    for node in model.graph.node:
        if node.op_type == "Conv":
            if not any(i in below_conv for i in node.input):
                names.append(node.name)
            below_conv.update(node.output)
        elif any(i in below_conv for i in node.input):
            below_conv.update(node.output)
    return names


def image_path_nodes(model: "onnx.ModelProto") -> list[str]:
    """:func:`image_conv_nodes` and every node above them: what runs on the image before its first conv
    (the uint8 wrapper's Cast and normalisation, the flip wrapper's mirror image and Concat).

    All of it stays in float: ONNX Runtime quantizes a Concat or an Add as readily as a conv, and one
    quantized op there rounds the image to an 8-bit grid before the float conv reads it (the flipped graph's
    Concat did, and its INT8 file still lost 0.67 points at x8 on test with the conv itself in float).
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    convs = image_conv_nodes(model)
    by_name = {n.name: n for n in model.graph.node}
    seen: set[str] = set()
    todo = [by_name[c] for c in convs]
    while todo:
        node = todo.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        todo.extend(producer[i] for i in node.input if i in producer)
    return [n.name for n in model.graph.node if n.name in seen]


def float_tail_nodes(model: "onnx.ModelProto", generator: bool = True, image_conv: bool = True,
                     film_maps: bool = True) -> list[str]:
    """Names of the nodes that stay in float: G (wherever it sits; the exporter names its nodes
    ``/generator/...``; only with ``generator=True``), everything from the global pooling on (the
    embedding, G on it, the head), and always the factor estimator and FiLM (:data:`ALWAYS_FLOAT_PREFIXES`)
    and the convolutions that read the image with everything above them (:func:`image_path_nodes`; not
    with ``image_conv=False``). ``film_maps=False``: FiLM's ops on the feature map are not kept in float
    (:func:`film_map_nodes`).

    The fully-connected tail is about 1% of ONNX Runtime CPU time for resnet18 at batch 32. G on the
    layer3 map is not small: in the u8s8 file it takes about 40% of the time when it stays in float,
    and quantizing it costs accuracy on the smallest faces (results/ferplus/int8_generator.json,
    ``scripts/int8_generator.py``). By default G stays in float, because its feature correction is what
    FSR-FER adds to the trunk; ``generator=False`` quantizes it (``fsrfer-export --int8-quantize-g``).
    """
    tainted: set[str] = set()
    image_convs = set(image_path_nodes(model)) if image_conv else set()
    quantized_film = set() if film_maps else set(film_map_nodes(model))
    names = []
    for node in model.graph.node:
        path = module_path(node.name)
        if node.name in quantized_film:
            continue
        if path.startswith(ALWAYS_FLOAT_PREFIXES) or node.name in image_convs:
            # The estimator pools the input image: that is not the trunk's global pooling, and what its
            # factor drives (FiLM -> G -> the frozen stages above G) is not the tail.
            names.append(node.name)
            continue
        after_pool = node.op_type in _POOL_OPS or any(i in tainted for i in node.input)
        if after_pool:  # through G too: the head after an embedding-level G stays in float
            tainted.update(node.output)
        if path.startswith(GENERATOR_PREFIX):
            if generator:
                names.append(node.name)
        elif after_pool:
            names.append(node.name)
    return names


def prefixed_nodes(model: "onnx.ModelProto", prefixes: Sequence[str], already: Sequence[str] = ()) -> list[str]:
    """Names of the nodes whose :func:`module_path` starts with one of ``prefixes`` (not in ``already``).

    Raises:
        ConfigError: ``prefixes`` is not a list of strings, or a prefix names no node (a typo would otherwise
            quantize everything silently).
    """
    _check_prefixes(prefixes)
    skip = set(already)
    names = []
    for prefix in prefixes:
        hits = [n.name for n in model.graph.node if module_path(n.name).startswith(prefix)]
        if not hits:
            convs = [module_path(n.name).rsplit("/", 1)[0] + "/" for n in model.graph.node if n.op_type == "Conv"]
            raise ConfigError(f"no node of the graph is under {prefix!r}; expected the start of a module path, "
                              "such as these convs' " + ", ".join(convs[:6]))
        names += [h for h in hits if h not in skip and h not in names]
    return names


def _entropy_overrides(model_path: str, reader: CalibrationPasses, symmetric: bool,
                       tmp: str) -> dict[str, list[dict[str, Any]]]:
    """Activation ranges from KL-divergence (entropy) calibration, as ``TensorQuantOverrides``.

    ``quantize_static``'s own entropy calibrator uses 128 histogram bins for 128 quantized bins,
    which leaves a single candidate threshold: the min/max range. This runs the entropy search the
    way TensorRT's entropy calibrator does (2048 bins into 128).
    """
    calibrate = require("onnxruntime.quantization.calibrate", "export", "entropy calibration")
    calibrator = calibrate.create_calibrator(
        model_path, None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
        calibrate_method=calibrate.CalibrationMethod.Entropy,
        extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS, "symmetric": symmetric})
    for i in range(len(reader)):  # pass by pass, as quantize_static with CalibStridedMinMax=1
        reader.set_range(i, i + 1)
        calibrator.collect_data(reader)
    ranges = calibrator.compute_data()
    reader.rewind()
    return {name: [{"rmin": np.float32(d.range_value[0]), "rmax": np.float32(d.range_value[1])}]
            for name, d in ranges.data.items()}


def tensorrt_qdq_options() -> tuple[list[str], dict[str, Any]]:
    """``op_types_to_quantize`` and ``extra_options`` of ``quantize_static`` for the s8s8 file.

    Following NVIDIA's Q/DQ placement guidance (TensorRT developer guide, "Q/DQ Layer-Placement
    Recommendations"): quantize the inputs of weighted ops (Conv, Gemm, MatMul) and the inputs of
    Add (the branch input is dropped again afterwards, see :func:`keep_residual_qdq_only`), and
    quantize no op's output, so TensorRT fuses Conv+bias+ReLU(+Add) and rounds once per layer:

    - ``OpTypesToExcludeOutputQuantization``: ONNX Runtime's QDQ quantizer otherwise puts Q/DQ
      after every Conv (Conv->Q->DQ->Relu, Conv->Q->DQ->Add), rounding twice and splitting fusions;
    - ``QuantizeBias: False``: ONNX Runtime otherwise stores each bias as INT32 behind a
      DequantizeLinear, which TensorRT's parser refuses (DequantizeLinear takes INT8 only,
      onnx-tensorrt docs/operators.md 8.5-GA and 10.1-GA; onnx-tensorrt#850). TensorRT quantizes
      the float bias itself when it fuses the layer.

    Both options are read by onnxruntime's ``QDQQuantizer`` (``qdq_quantizer.py``) in the versions
    the ``export`` extra allows; :func:`fsrfer_edge.export.trt_check.require_trt_compatible` checks
    the result either way.
    """
    return list(TENSORRT_QUANTIZED_OPS), {"OpTypesToExcludeOutputQuantization": list(TENSORRT_QUANTIZED_OPS),
                                          "QuantizeBias": False}


def keep_residual_qdq_only(model: "onnx.ModelProto") -> int:
    """At each Add fed by a weighted op on one side (the block's branch) and by the block input on
    the other (the residual), remove the Q/DQ pair on the branch side, so TensorRT can fuse the
    Add into the Conv that feeds it; returns the number of pairs removed.

    When both sides come from Convs (a downsampling block), the residual is the Conv whose input is
    an ancestor of the other Conv's input (the 1x1 shortcut reads the block input; the branch's last
    Conv reads a tensor computed from it).
    """
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}

    def through_qdq(tensor: str) -> Optional[tuple[str, Any, Any]]:
        dq = producer.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            return None
        return q.input[0], q, dq

    def ancestors(tensor: str) -> set[str]:
        seen, todo = set(), [tensor]
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            node = producer.get(t)
            if node is not None:
                todo.extend(i for i in node.input if i)
        return seen

    removed = 0
    for add in [n for n in graph.node if n.op_type == "Add" and len(n.input) == 2]:
        sides = [through_qdq(t) for t in add.input]
        if sides[0] is None or sides[1] is None:
            continue
        srcs = [producer.get(side[0]) for side in sides if side is not None]
        weighted = [s is not None and s.op_type in _WEIGHTED_OPS for s in srcs]
        if weighted == [True, False]:
            branch = 0
        elif weighted == [False, True]:
            branch = 1
        elif all(weighted) and srcs[0] is not None and srcs[1] is not None:
            if srcs[0].input[0] in ancestors(srcs[1].input[0]):
                branch = 1  # input 0 is the shortcut
            elif srcs[1].input[0] in ancestors(srcs[0].input[0]):
                branch = 0
            else:
                continue
        else:
            continue
        side = sides[branch]
        assert side is not None  # checked above
        add.input[branch] = side[0]
        removed += 1
    # Drop Q/DQ nodes nobody reads any more.
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)
    return removed


def route_counts(model: "onnx.ModelProto", inputs: np.ndarray, input_name: str) -> list[int]:
    """How many of ``inputs`` take each path of a routed graph (``InferenceModel.routed``): the sum of each
    NonZero node's float mask, from one ONNX Runtime run of the FP32 graph with those masks as outputs.
    Empty for a graph without routing."""
    masks = [n.input[0] for n in model.graph.node if n.op_type == "NonZero"]
    if not masks:
        return []
    onnx_lib = require("onnx", "export", "quantizing models")
    ort = require("onnxruntime", "export", "quantizing models")
    probe = onnx_lib.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    for name in masks:
        probe.graph.output.append(onnx_lib.helper.make_tensor_value_info(name, onnx_lib.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return [int(round(float(np.sum(m)))) for m in sess.run(masks, {input_name: inputs})]


def quantize_int8(src: PathLike, dst: PathLike, calib_inputs: np.ndarray, scheme: str = "s8s8",
                  calib_method: str = "percentile", per_channel: bool = True, quantize_head: bool = False,
                  batch_size: int = 32, quantize_generator: Optional[bool] = None,
                  keep_float: Sequence[str] = (), float_image_conv: bool = True,
                  quantize_film: bool = False) -> ModelInfo:
    """Quantize an FP32 fsrfer ONNX file to INT8 with Q/DQ nodes, calibrated on real faces.

    Args:
        src: the FP32 (simplified) ONNX file.
        dst: the INT8 file to write (atomically).
        calib_inputs: model inputs (N, C, S, S) made from real faces by
            :func:`~fsrfer_edge.export.calib.to_model_input` (uint8 for uint8-input models).
        scheme: ``s8s8`` (TensorRT) or ``u8s8`` (ONNX Runtime CPU).
        calib_method: ``percentile`` (99.999th percentile of |activation|), ``minmax`` or
            ``entropy`` (KL divergence, 2048 histogram bins as TensorRT's calibrator).
        per_channel: per-output-channel weight scales (TensorRT and ONNX Runtime support both).
        quantize_head: also quantize the embedding, G and head (see :func:`float_tail_nodes`).
        batch_size: calibration batch size; the last batch is shorter where it does not divide the faces
            (:class:`~fsrfer_edge.export.calib.CalibrationPasses`).
        quantize_generator: also quantize G (faster, less accurate on the smallest faces; see
            :func:`float_tail_nodes`); None: only when G starts early (:func:`resolve_quantize_generator`).
        keep_float: module-path prefixes to keep in float as well (:func:`prefixed_nodes`).
        float_image_conv: keep the convs that read the image, and what is above them, in float
            (:func:`image_path_nodes`); False only to measure the old behaviour.
        quantize_film: quantize FiLM's scale and shift of the feature maps (:func:`film_map_nodes`); the
            estimator and the network from the factor to FiLM's parameters stay in float. u8s8 only.

    Returns:
        The ModelInfo written into ``dst`` (precision ``int8``, ``int8_scheme`` set).

    Raises:
        ConfigError: unknown scheme or calibration method, or ``keep_float`` is not a list of strings.
        InputError: a flag (``per_channel``, ``quantize_head``, ``float_image_conv``, ``quantize_film``) is not
            True or False; ``calib_inputs`` is not a numpy array, or not of the dtype and shape ``src`` takes, or holds
            NaN or infinite values; or ``dst`` is ``src``.
        ModelError: ``src`` is not FP32 (or not a readable ONNX file), or the result does not have the scheme's
            zero points.
        WriteError: writing ``dst``, or ONNX Runtime's working files beside it, failed (a full disk, a quota, a
            read-only file system); nothing is left there.
    """
    _validate(scheme, calib_method)
    _check_prefixes(keep_float)
    per_channel, quantize_head = check_flag("per_channel", per_channel), check_flag("quantize_head", quantize_head)
    float_image_conv = check_flag("float_image_conv", float_image_conv)
    quantize_film = check_flag("quantize_film", quantize_film)
    if not isinstance(calib_inputs, np.ndarray):
        raise InputError(f"calibration inputs are a {type(calib_inputs).__name__}; expected a numpy array "
                         "(N, C, S, S) made by calib.to_model_input")
    _check_distinct(src, dst)
    if quantize_film and scheme != "u8s8":
        raise ConfigError(f"quantize_film applies to the u8s8 file (ONNX Runtime's QLinearMul / QLinearAdd); "
                          f"received scheme {scheme!r}, whose Q/DQ placement quantizes only the inputs of "
                          "weighted ops and residual adds, as TensorRT fuses them")
    q = _quantization()
    model = load_onnx(src)
    info = _fp32_info(model, src)
    props = metadata_props(model)
    expected_dtype = np.uint8 if info.input_dtype == "uint8" else np.float32
    if calib_inputs.dtype != expected_dtype:
        raise InputError(f"calibration inputs have dtype {calib_inputs.dtype}; {src} takes {np.dtype(expected_dtype)}: "
                         "make them with calib.to_model_input(pixels, info)")
    pre = info.preprocessing
    want = (pre.channels, pre.input_size, pre.input_size)
    if calib_inputs.ndim != 4 or calib_inputs.shape[1:] != want:
        raise InputError(f"calibration inputs have shape {calib_inputs.shape}; {src} takes "
                         f"(N, {', '.join(map(str, want))}) faces: make them with "
                         "calib.to_model_input(calib.faces_to_pixels(faces, info), info)")
    if not np.isfinite(calib_inputs).all():
        raise InputError("calibration inputs hold NaN or infinite values; expected pixels made from real faces by "
                         "calib.to_model_input")
    # "entropy" runs its own calibration pass and hands the ranges over as overrides (see
    # _entropy_overrides); quantize_static then only needs min/max for tensors without one.
    methods = {"entropy": q.CalibrationMethod.MinMax, "percentile": q.CalibrationMethod.Percentile,
               "minmax": q.CalibrationMethod.MinMax}
    dst = Path(dst)
    with tempfile.TemporaryDirectory(prefix=".fsrfer-quant-", dir=dst.parent if dst.parent.is_dir() else None) as tmp:
        source = str(src)
        if scheme == "u8s8":
            source = str(Path(tmp) / "pre.onnx")
            pre_process = require("onnxruntime.quantization.shape_inference", "export").quant_pre_process
            try:
                with _ort_chatter_to_debug():
                    pre_process(str(src), source)
            except Exception as exc:  # symbolic shape inference raises assorted types
                _raise_if_disk(exc, dst)
                raise ModelError(f"quant_pre_process failed on {src} ({type(exc).__name__}: {exc})") from exc
        out_tmp = str(Path(tmp) / "int8.onnx")
        pre = load_onnx(source)
        quantize_g = resolve_quantize_generator(pre, quantize_generator)
        exclude = [] if quantize_head else float_tail_nodes(pre, generator=not quantize_g, image_conv=float_image_conv,
                                                            film_maps=not quantize_film)
        exclude += prefixed_nodes(pre, keep_float, exclude)
        counts = route_counts(pre, calib_inputs, info.input_name)
        if counts:
            # A routed graph (InferenceModel.routed): each path's tensors have as many rows as faces took
            # it, which differs between batches, and ONNX Runtime's histogram calibrators stack every
            # batch's copy of a tensor into one array. One batch of all faces gives the same histogram.
            # A path no calibration face took would get no ranges at all (a broken INT8 file).
            if min(counts) == 0:
                raise ModelError(f"the calibration faces of {Path(src).name} all took one path of its routed graph "
                                 f"(faces per path: {counts}); expected some 48 px faces and some small ones "
                                 "(--calib-factors with 1 and larger factors, on real faces)")
            batch_size = len(calib_inputs)
        reader = CalibrationPasses(calib_inputs, info.input_name, batch_size)
        # CalibStridedMinMax=1: one collect_data per pass of the reader (full batches, then the shorter last one),
        # whose ranges (minmax) or histograms (percentile) ONNX Runtime merges.
        extra: dict[str, Any] = {"ActivationSymmetric": scheme == "s8s8", "WeightSymmetric": True,
                                 "CalibStridedMinMax": 1}
        # u8s8 keeps ONNX Runtime's defaults (its CPU kernels fuse Q/DQ around every op they have).
        op_types: Optional[list[str]] = None
        if scheme == "s8s8":
            op_types, trt_extra = tensorrt_qdq_options()
            extra.update(trt_extra)
        log.info("calibrating %s INT8 (%s, %d faces, %d tail nodes kept in float)", scheme, calib_method,
                 len(calib_inputs), len(exclude))
        try:
            with _ort_chatter_to_debug():
                if calib_method == "entropy":
                    extra["TensorQuantOverrides"] = _entropy_overrides(source, reader, scheme == "s8s8", tmp)
                q.quantize_static(
                    source, out_tmp, reader, quant_format=q.QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=q.QuantType.QInt8 if scheme == "s8s8" else q.QuantType.QUInt8,
                    weight_type=q.QuantType.QInt8, calibrate_method=methods[calib_method],
                    nodes_to_exclude=exclude or None, extra_options=extra, op_types_to_quantize=op_types,
                )
        except Exception as exc:  # ORT raises ValueError/RuntimeError/its own Fail types
            _raise_if_disk(exc, dst)
            raise ModelError(f"ONNX Runtime could not quantize {src} to {scheme} "
                             f"({type(exc).__name__}: {exc})") from exc
        quantized = load_onnx(out_tmp)
    if scheme == "s8s8":
        log.debug("removed %d Q/DQ pairs from residual branches", keep_residual_qdq_only(quantized))
    check_zero_points(quantized, scheme, str(dst))
    out = variant_info(info, precision="int8", int8_scheme=scheme)
    set_metadata_props(quantized, props, replace=True)
    write_model_info(quantized, out)
    if scheme == "s8s8":  # the TensorRT file: refuse to write one TensorRT's parser would reject
        from .trt_check import check_model

        report = check_model(quantized, dst.name)
        if not report.ok:
            raise ModelError(f"the s8s8 INT8 file {dst.name} would not build in TensorRT: "
                             + "; ".join(report.errors[:5]) + "; nothing was written")
    save_onnx(quantized, dst)
    log.info("wrote INT8 %s %s", scheme, dst.name)
    return out


def activation_zero_points(model: "onnx.ModelProto") -> list[np.ndarray]:
    """The zero points of every QuantizeLinear node (activations; weights are stored quantized)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    out = []
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3 or not node.input[2]:
            continue
        name = node.input[2]
        if name in inits:
            out.append(numpy_helper.to_array(inits[name]))
        elif name in consts:
            out.append(numpy_helper.to_array(consts[name].attribute[0].t))
    return out


def _activation_scales(model: "onnx.ModelProto") -> list[float]:
    """Scales of the QuantizeLinear nodes (for tests and reports)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    return [float(numpy_helper.to_array(inits[n.input[1]]).ravel()[0])
            for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[1] in inits]


def check_zero_points(model: "onnx.ModelProto", scheme: str, source: str) -> None:
    """Verify that the Q/DQ graph is of ``scheme`` (TensorRT needs int8 zero points equal to 0).

    Raises:
        ModelError: no QuantizeLinear node, or zero points of another dtype (or non-zero for s8s8).
    """
    zps = activation_zero_points(model)
    if not zps:
        raise ModelError(f"{source}: no QuantizeLinear nodes with zero points; quantization produced no Q/DQ graph")
    want = SCHEME_ZERO_POINT_DTYPE[scheme]
    wrong = sorted({str(z.dtype) for z in zps if z.dtype != want})
    if wrong:
        raise ModelError(f"{source}: activation zero points have dtype {wrong}; scheme {scheme} needs {np.dtype(want)}")
    if scheme == "s8s8" and any(np.any(z != 0) for z in zps):
        raise ModelError(f"{source}: s8s8 activation zero points are not all 0; TensorRT needs symmetric activations")


def scheme_of(model: "onnx.ModelProto") -> str:
    """``s8s8`` or ``u8s8`` from the graph's activation zero points ("" when it has no Q/DQ nodes)."""
    zps = activation_zero_points(model)
    if not zps:
        return ""
    if any(z.dtype == np.uint8 for z in zps):
        return "u8s8"
    return "s8s8" if all(np.all(z == 0) for z in zps) else "asymmetric-s8"
