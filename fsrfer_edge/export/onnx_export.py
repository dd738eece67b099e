"""Checkpoint -> one fused ONNX graph (trunk -> G -> head), its metadata, and simplification.

The exported graph takes ``faces`` (N, C, S, S) and returns ``logits`` (N, classes), with a dynamic
batch axis. With ``uint8_input`` the graph takes raw pixels and normalises inside, using the
:class:`~fsrfer_edge.preprocessing.Preprocessing` stored in the checkpoint (the same object the
trainer used), so no copy of the normalisation constants exists anywhere else.

Every function that writes a model writes it atomically and carries ``metadata_props`` over.
torch, onnx and onnxsim are imported lazily: ``import fsrfer_edge.export`` needs numpy only.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

from ..errors import ConfigError, InputError, ModelError, check_flag, require
from ..fileio import atomic_write_bytes, file_problem
from ..metadata import METADATA_KEY, ModelInfo
from ..preprocessing import FACTORS, Preprocessing

if TYPE_CHECKING:  # pragma: no cover
    import onnx

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
#: Producer name written into every exported file.
PRODUCER = "fsrfer-export"
#: Extra metadata key: which tool versions made the file (informational).
EXPORTER_KEY = "fsrfer.exporter"
#: Extra metadata key of a graph with a test-time flip folded in (``export_onnx(flip=True)``).
TEST_TIME_KEY = "fsrfer.test_time"
FLIP_NOTE = ("flip: class log-probabilities averaged over each face and its left-right mirror image "
             "(the network runs on twice the batch)")


def _onnx() -> Any:
    return require("onnx", "export", "reading and writing ONNX models")


def package_version() -> str:
    """The installed fsrfer-edge version, or ``0+unknown`` when run from a source tree."""
    from importlib import metadata

    try:
        return metadata.version("fsrfer-edge")
    except metadata.PackageNotFoundError:
        return "0+unknown"


# ---------------------------------------------------------------------------------------------
# ONNX file helpers (shared by quantize.py, check.py, engine.py)
# ---------------------------------------------------------------------------------------------


def load_onnx(path: PathLike) -> "onnx.ModelProto":
    """Load an ONNX file.

    Raises:
        ModelError: the file is missing or is not a readable ONNX model.
    """
    onnx_lib = _onnx()
    p = Path(path)
    problem = file_problem(p)
    if problem:
        raise ModelError(f"ONNX file {p} {problem}; expected an .onnx file")
    try:
        model: onnx.ModelProto = onnx_lib.load(str(p))
    except Exception as exc:  # protobuf raises its own DecodeError, onnx raises various types
        raise ModelError(f"{p} is not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    if not model.HasField("graph"):  # an empty (or all-unknown-fields) file parses as an empty ModelProto
        raise ModelError(f"{p} is not an ONNX model (it holds no graph); the file may be empty, truncated or of "
                         "another format")
    return model


def metadata_props(model: "onnx.ModelProto") -> dict[str, str]:
    """The model's ``metadata_props`` as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def set_metadata_props(model: "onnx.ModelProto", props: Mapping[str, str], replace: bool = False) -> None:
    """Set (add or replace) entries of ``metadata_props``; with ``replace`` drop all others."""
    if not isinstance(props, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in props.items()):
        raise InputError(f"metadata props {props!r}; expected a mapping of strings to strings (ONNX metadata_props "
                         "hold text): json.dumps a structured value")
    current = {} if replace else metadata_props(model)
    current.update(props)
    del model.metadata_props[:]
    for key in sorted(current):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, current[key]


def read_model_info(model: Union[PathLike, "onnx.ModelProto"]) -> ModelInfo:
    """Read the :class:`ModelInfo` an ONNX file (or loaded model) carries.

    Raises:
        ModelError: the file is unreadable, was not written by fsrfer-export, or its graph needs inputs besides
            the one its metadata names (every runtime feeds that one alone).
    """
    if isinstance(model, (str, os.PathLike)):
        source = str(model)
        model = load_onnx(model)
    else:
        source = model.graph.name or "ONNX model"
    info = ModelInfo.from_props(metadata_props(model), source=source)
    weights = {t.name for t in model.graph.initializer}
    needed = [i.name for i in model.graph.input if i.name not in weights]
    extra = [name for name in needed if name != info.input_name]
    if info.input_name in needed and extra:  # a renamed input is left to the callers' own messages
        raise ModelError(f"{source}: the graph needs inputs {needed}, {extra} besides its metadata's input; expected "
                         f"one input {info.input_name!r} (the faces), as fsrfer-export writes it: the runtimes feed "
                         "the faces alone")
    return info


def write_model_info(model: "onnx.ModelProto", info: ModelInfo) -> None:
    """Store ``info`` under :data:`~fsrfer_edge.metadata.METADATA_KEY` and set producer fields."""
    set_metadata_props(model, {METADATA_KEY: info.to_json()})
    model.producer_name = PRODUCER
    model.producer_version = package_version()


def save_onnx(model: "onnx.ModelProto", path: PathLike) -> Path:
    """Check and write ``model`` atomically (temporary file beside ``path``, then rename).

    Raises:
        ModelError: the model fails ``onnx.checker`` (a bug in a transformation; nothing is written).
    """
    onnx = _onnx()
    path = Path(path)
    if not isinstance(model, onnx.ModelProto):  # onnx.checker would read a path string as a file to check
        raise InputError(f"save_onnx received a {type(model).__name__} as the model; expected an onnx.ModelProto "
                         "(load a file with load_onnx)")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"refusing to write {path.name}: the model is not valid ONNX ({exc})") from exc
    return atomic_write_bytes(path, model.SerializeToString())


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


def fused_module(model: Any, pre: Preprocessing, uint8_input: bool) -> Any:
    """Wrap an InferenceModel so that it takes the exported graph's input.

    With ``uint8_input`` the wrapper casts raw pixels to float32 and normalises them with
    ``pre.mean``/``pre.std`` exactly as :meth:`Preprocessing.normalize` does; otherwise it returns
    ``model`` itself (input already normalised float32).
    """
    if not uint8_input:
        return model
    torch = require("torch", "export", "exporting a checkpoint to ONNX")

    class _PixelInput(torch.nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Any) -> Any:
            return self.model((x.to(torch.float32) / 255.0 - pre.mean) / pre.std)

    return _PixelInput().eval()


def flip_average(model: Any, size: int) -> Any:
    """Wrap a model so that it classifies each face and its left-right mirror image in one batch of twice
    the size and returns the log of the mean of the two softmaxes (log-probabilities: a softmax of the
    output gives the mean probabilities, and its argmax is the averaged prediction).

    The mirror image is a Gather with a constant reversed index (ONNX Runtime and TensorRT alike); the
    average is log-sum-exp of the two log-softmaxes minus log 2, finite where a probability underflows.
    ``size``: the faces' width (the model's input size)."""
    torch = require("torch", "export", "exporting a checkpoint to ONNX")
    import math

    class _FlipAverage(torch.nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("mirror", torch.arange(size - 1, -1, -1), persistent=False)

        def forward(self, x: Any) -> Any:
            both = torch.cat([x, x.index_select(3, self.mirror)], 0)
            logp = torch.log_softmax(self.model(both), dim=1)
            pair = logp.reshape(2, -1, logp.shape[1])
            return torch.logsumexp(pair, dim=0) - math.log(2.0)

    return _FlipAverage().eval()


def _torch_to_onnx(module: Any, pre: Preprocessing, uint8_input: bool, opset: int) -> "onnx.ModelProto":
    import io

    torch = require("torch", "export", "exporting a checkpoint to ONNX")
    onnx_lib = _onnx()
    dtype = torch.uint8 if uint8_input else torch.float32
    dummy = torch.zeros((2, pre.channels, pre.input_size, pre.input_size), dtype=dtype)
    info = ModelInfo()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter announces its own deprecation; dynamo=False is deliberate
        # (the dynamo exporter needs onnxscript).
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        try:
            with torch.no_grad():
                torch.onnx.export(
                    module, (dummy,), buf, input_names=[info.input_name], output_names=[info.output_name],
                    dynamic_axes={info.input_name: {0: "batch"}, info.output_name: {0: "batch"}},
                    opset_version=opset, do_constant_folding=True, dynamo=False,
                )
        except Exception as exc:  # the exporter raises torch.onnx errors, RuntimeError, ValueError...
            raise ModelError(f"torch.onnx.export failed at opset {opset} ({type(exc).__name__}: {exc})") from exc
    model: onnx.ModelProto = onnx_lib.load_from_string(buf.getvalue())
    return model


def load_checkpoint(checkpoint_path: PathLike) -> tuple[Any, Preprocessing, dict[str, Any]]:
    """Load a model checkpoint with the trainer's loader (torch imported lazily).

    Returns:
        (InferenceModel in eval mode, Preprocessing, checkpoint dict).

    Raises:
        BackendUnavailable: torch is not installed (extra ``export``).
        ModelError: the checkpoint is missing, corrupt or not a model checkpoint.
    """
    require("torch", "export", "exporting a checkpoint to ONNX")
    from trainer import checkpoint

    return checkpoint.load_model(checkpoint_path)


def checkpoint_factors(ckpt: Mapping[str, Any], source: str = "checkpoint") -> tuple[int, ...]:
    """The down-sample factors a checkpoint's model was trained for, increasing and each once: ``meta.factors``
    where a checkpoint has it, else the trainer's ``meta.config.degrade.factors`` (what fsrfer-train writes), else
    :data:`FACTORS`.

    Raises:
        ModelError: ``meta`` is not a dict, or the factors are not a list of positive integers.
    """
    meta = ckpt.get("meta")
    meta = {} if meta is None else meta
    if not isinstance(meta, Mapping):
        raise ModelError(f"{source}: its 'meta' entry is a {type(meta).__name__}; expected a dict, as fsrfer-train "
                         "writes it")
    config = meta.get("config")
    degrade = config.get("degrade") if isinstance(config, Mapping) else None
    if "factors" in meta:
        factors, where = meta["factors"], "meta.factors"
    elif isinstance(degrade, Mapping) and "factors" in degrade:
        factors, where = degrade["factors"], "meta.config.degrade.factors"
    else:
        return FACTORS
    if not isinstance(factors, (list, tuple)) or not factors or not all(
            isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in factors):
        raise ModelError(f"{source}: {where} is {factors!r}; expected a non-empty list of positive integers, "
                         "e.g. [1, 2, 4] (the fused model's metadata carries them)")
    return tuple(sorted(set(factors)))  # a set: the trainer draws from degrade.factors in any order, with repeats


def checkpoint_info(ckpt: Mapping[str, Any], pre: Preprocessing, uint8_input: bool, sha256: str,
                    source: str = "checkpoint") -> ModelInfo:
    """The ModelInfo of an FP32 export of ``ckpt`` (``source``: its path, for messages).

    Raises:
        ModelError: the checkpoint's factors are invalid (:func:`checkpoint_factors`).
    """
    factors = checkpoint_factors(ckpt, source)
    return ModelInfo(preprocessing=pre, method=str(ckpt["spec"].get("method", "fsrfer")),
                     input_dtype="uint8" if uint8_input else "float32", precision="fp32",
                     factors=factors, checkpoint_sha256=sha256)


def _check_input_channels(model: Any, pre: Preprocessing, source: PathLike) -> None:
    """Refuse a network whose first layer takes other channels than the checkpoint's preprocessing gives it
    (torch would fail inside the export with a message about convolution weights)."""
    spec = getattr(model, "spec", None)
    channels = spec.get("in_channels", 1) if isinstance(spec, Mapping) else pre.channels
    if channels != pre.channels:
        raise ModelError(f"{source}: its network takes {channels} input channel(s), but its preprocessing gives "
                         f"{pre.channels} (channels={pre.channels}); expected the same number: the checkpoint's spec "
                         "and preprocessing do not belong together")


def _check_output_classes(onnx_model: "onnx.ModelProto", info: ModelInfo, pre: Preprocessing,
                          source: PathLike) -> None:
    """Refuse a graph whose logits do not have one entry per class the metadata would name: every runtime
    maps logit i to ``classes[i]``."""
    outputs = [o for o in onnx_model.graph.output if o.name == info.output_name]
    dims = outputs[0].type.tensor_type.shape.dim if outputs else []
    width = dims[1].dim_value if len(dims) == 2 and dims[1].HasField("dim_value") else None
    if width is not None and width != len(pre.classes):
        raise ModelError(f"{source}: its network gives {width} logits per face, but its preprocessing names "
                         f"{len(pre.classes)} classes {list(pre.classes)}; expected one logit per class (spec "
                         "num_classes and preprocessing classes must agree); nothing was written")


def export_onnx(checkpoint_path: PathLike, out_path: PathLike, uint8_input: bool = False,
                opset: int = 17, flip: bool = False) -> ModelInfo:
    """Export a model checkpoint to one fused FP32 ONNX graph with fsrfer metadata.

    Args:
        checkpoint_path: a model checkpoint written by fsrfer-train.
        out_path: the ``.onnx`` file to write (atomically).
        uint8_input: take raw uint8 NCHW pixels and normalise inside the graph.
        opset: ONNX opset (17 suits TensorRT 8.5 to 10.x and ONNX Runtime).
        flip: fold a test-time left-right flip into the graph (:func:`flip_average`): about twice the
            compute per face; the file's metadata says so under :data:`TEST_TIME_KEY`.

    Returns:
        The ModelInfo written under the ``fsrfer`` metadata key.

    Raises:
        BackendUnavailable: torch or onnx is not installed.
        ConfigError: ``opset`` is not an integer.
        InputError: ``uint8_input`` or ``flip`` is not True or False.
        ModelError: the checkpoint is missing or corrupt, or its spec, preprocessing and factors disagree (input
            channels, one logit per class); nothing is written.
    """
    from ..fileio import sha256_file as file_sha256

    if isinstance(opset, bool) or not isinstance(opset, int):  # torch would fail deep inside, or take True as 1
        raise ConfigError(f"opset={opset!r}; expected an integer, e.g. 17")
    uint8_input, flip = check_flag("uint8_input", uint8_input), check_flag("flip", flip)
    model, pre, ckpt = load_checkpoint(checkpoint_path)
    _check_input_channels(model, pre, checkpoint_path)
    if getattr(model, "scale_aware", False) and getattr(model, "factor_estimator", None) is None:
        raise ModelError(
            f"{checkpoint_path}: its G is scale-aware (FiLM on each face's down-sample factor) but it has no factor "
            "estimator, and the fused graph has one input, the faces; add one with scripts/fit_factor_estimator.py "
            "(stage 2 fits it itself since the estimator exists)")
    info = checkpoint_info(ckpt, pre, uint8_input, file_sha256(checkpoint_path), str(checkpoint_path))
    log.info("exporting %s (%s, %s input, opset %d)", checkpoint_path, info.method, info.input_dtype, opset)
    net = flip_average(model, pre.input_size) if flip else model
    onnx_model = _torch_to_onnx(fused_module(net, pre, uint8_input), pre, uint8_input, opset)
    _check_output_classes(onnx_model, info, pre, checkpoint_path)
    torch = require("torch", "export")
    onnx_model.graph.name = f"fsrfer_{info.method}"
    onnx_model.doc_string = (f"FSR-FER fused model ({info.method}): faces -> logits over {list(pre.classes)}"
                             + (f"; {FLIP_NOTE}" if flip else ""))
    write_model_info(onnx_model, info)
    set_metadata_props(onnx_model, {EXPORTER_KEY: f"torch {torch.__version__}; opset {opset}",
                                    **({TEST_TIME_KEY: FLIP_NOTE} if flip else {})})
    save_onnx(onnx_model, out_path)
    return info


def simplify(in_path: PathLike, out_path: PathLike) -> ModelInfo:
    """Simplify an ONNX file with onnxsim, keeping its metadata; no silent fallback.

    Raises:
        BackendUnavailable: onnxsim is not installed (extra ``export``).
        ModelError: onnxsim failed or could not verify its result (use ``--no-simplify`` to skip
            simplification deliberately).
    """
    onnxsim = require("onnxsim", "export", "simplifying the exported ONNX graph")
    model = load_onnx(in_path)
    props = metadata_props(model)
    info = ModelInfo.from_props(props, source=str(in_path))
    import inspect

    kwargs: dict[str, Any] = {"check_n": 0}
    if "certify" in inspect.signature(onnxsim.simplify).parameters:
        kwargs["certify"] = False  # newer onnxsim: skip its optional Z3 proof (slow, informational)
    try:
        simplified, ok = onnxsim.simplify(model, **kwargs)
    except Exception as exc:  # onnxsim raises RuntimeError/ValueError/its own types from C++
        raise ModelError(
            f"onnxsim failed on {in_path} ({type(exc).__name__}: {exc}); fix the model, or pass "
            "--no-simplify to ship the unsimplified graph deliberately"
        ) from exc
    if not ok:
        raise ModelError(f"onnxsim could not validate the simplified {in_path}; pass --no-simplify to skip it")
    # onnxsim records its own bookkeeping (removed node lists...) in metadata_props; keep ours only.
    set_metadata_props(simplified, props, replace=True)
    simplified.producer_name = model.producer_name
    simplified.producer_version = model.producer_version
    simplified.doc_string = model.doc_string
    save_onnx(simplified, out_path)
    log.info("simplified %s: %d -> %d nodes", Path(in_path).name, len(model.graph.node), len(simplified.graph.node))
    return info


def variant_info(info: ModelInfo, **changes: Any) -> ModelInfo:
    """A copy of ``info`` with some fields changed (precision, int8_scheme).

    Raises:
        InputError: ``info`` is not a ModelInfo, ``changes`` names a field ModelInfo does not have, or the copy
            is not a valid ModelInfo (``ModelInfo``'s checks).
    """
    import dataclasses

    from ..errors import InputError

    if not isinstance(info, ModelInfo):
        raise InputError(f"variant_info received a {type(info).__name__}; expected a ModelInfo")
    fields = [f.name for f in dataclasses.fields(ModelInfo)]
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        raise InputError(f"variant_info: unknown ModelInfo field(s) {unknown}; expected some of {fields}")
    return dataclasses.replace(info, **changes)  # ModelInfo.__post_init__ checks the copy


def ort_session(path: PathLike, threads: Optional[int] = None) -> Any:
    """An ONNX Runtime CPU session for checks and measurements.

    Raises:
        BackendUnavailable: onnxruntime is not installed.
        InputError: ``threads`` is not None or an integer from 0 (ONNX Runtime's choice) to
            :data:`~fsrfer_edge.backends.onnxruntime_backend.MAX_THREADS`.
        ModelError: ONNX Runtime cannot load the file.
    """
    import numpy as np

    from ..backends.onnxruntime_backend import MAX_THREADS

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                or not 0 <= threads <= MAX_THREADS):
        raise InputError(f"threads={threads!r}; expected an integer from 1 to {MAX_THREADS}, or None (all cores)")
    ort = require("onnxruntime", "export", "checking exported models")
    problem = file_problem(path)
    if problem:  # ONNX Runtime's own message for a folder is "Protobuf parsing failed"
        raise ModelError(f"ONNX file {path} {problem}; expected an .onnx file")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
        raise ModelError(f"ONNX Runtime cannot load {path} ({type(exc).__name__}: {exc})") from exc
