"""The fused model as a DeepStream Gst-nvinfer secondary classifier (an SGIE on a face detector's objects).

:func:`write_deepstream` writes a folder that ``nvinfer`` loads as it is:

- ``NAME.onnx``: the fused graph with a Softmax after its logits (output ``probs``). nvinfer's own classifier
  parser reads every output layer as class probabilities and keeps the largest above ``classifier-threshold``;
  it applies no softmax itself.
- ``NAME_labels.txt``: the class names on one line, separated by ``;`` (one line per output layer).
- ``config_infer_NAME.txt``: the ``[property]`` group, with the model's normalisation written as nvinfer's
  ``net-scale-factor`` and ``offsets`` (``y = net-scale-factor * (x - offsets)`` on 0-255 pixels).
- for an s8s8 INT8 source, ``NAME_int8_calib.txt`` (:data:`CALIB_NOTE`), and with ``engine`` the INT8 engine the
  config names, built here with TensorRT.

:func:`square_rect` squares a detector's box for a pad probe before the classifier; averaging a face's answers
over frames is :class:`fsrfer_edge.tracking.ExpressionSmoother` (docs/deepstream.md has both probes).

The SDK's own preprocessing does not run inside DeepStream: nvinfer crops and scales each face itself, so
a face is neither squared by repeating its edges, nor raised to the contrast floor, nor freed of an app's
enlarging. ``scripts/deepstream_inputs.py`` measures what that costs; docs/deepstream.md says which settings
it chose and why. onnx is imported lazily.
"""
from __future__ import annotations

import glob
import logging
import math
import numbers
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional, Union


from ..errors import ConfigError, InputError, ModelError, check_flag, check_out_folder
from ..fileio import atomic_write_bytes, same_file, sha256_file
from ..metadata import METADATA_KEY, ModelInfo
from ..preprocessing import Preprocessing

if TYPE_CHECKING:  # pragma: no cover
    import onnx

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
#: The output nvinfer reads: class probabilities.
PROBS = "probs"
#: Metadata key of a DeepStream file (it replaces the fsrfer metadata: ``Recognizer`` must not load a graph whose
#: output is already probabilities).
DEEPSTREAM_KEY = "fsrfer.deepstream"


def normalisation(pre: Preprocessing) -> tuple[float, float]:
    """nvinfer's ``(net-scale-factor, offset)`` for ``pre``: ``scale * (x - offset) == (x / 255 - mean) / std``."""
    return 1.0 / (255.0 * float(pre.std)), 255.0 * float(pre.mean)


def with_probabilities(model: "onnx.ModelProto", info: ModelInfo) -> "onnx.ModelProto":
    """A copy of the fused graph whose one output is ``probs``, the softmax of its logits over the classes.

    Raises:
        ModelError: the graph does not have the input and output its metadata names, or takes uint8 pixels
            (nvinfer feeds the network normalised floats).
    """
    import onnx
    from onnx import helper

    if info.input_dtype != "float32":
        raise ModelError(f"the model takes {info.input_dtype} pixels; nvinfer feeds a network normalised float32 "
                         "faces: export the model without --uint8-input")
    graph = model.graph
    inputs = [i.name for i in graph.input]
    outputs = [o.name for o in graph.output]
    if inputs != [info.input_name] or outputs != [info.output_name]:
        raise ModelError(f"graph inputs {inputs} and outputs {outputs}; expected exactly {info.input_name!r} and "
                         f"{info.output_name!r}, as its metadata says: export it again")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    logits = onnx.ValueInfoProto()
    logits.CopyFrom(out.graph.output[0])  # a copy: the graph's outputs are replaced below
    out.graph.node.append(helper.make_node("Softmax", [info.output_name], [PROBS], axis=1, name="deepstream_softmax"))
    del out.graph.output[:]
    probs = out.graph.output.add()
    probs.CopyFrom(logits)
    probs.name = PROBS
    props = {p.key: p.value for p in out.metadata_props if p.key != METADATA_KEY}
    props[DEEPSTREAM_KEY] = ("a Gst-nvinfer classifier: output 'probs' is softmax('" + info.output_name + "') of the "
                             "fsrfer model " + info.to_json())
    del out.metadata_props[:]
    for key in sorted(props):
        entry = out.metadata_props.add()
        entry.key, entry.value = key, props[key]
    return out


def labels_text(info: ModelInfo) -> str:
    """nvinfer's labels file for a classifier: one line per output layer, its classes separated by ``;``."""
    classes = info.preprocessing.classes
    bad = [c for c in classes if not c or any(ch in c for ch in ";\n\r")]
    if bad:
        raise ConfigError(f"class names {bad} cannot be written to an nvinfer labels file (';' separates them)")
    return ";".join(classes) + "\n"


def _write(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def check_name(name: str) -> str:
    """Refuse a file name stem nvinfer's config could not hold as it is, or one whose files (those written, and the
    engine nvinfer saves at the largest batch-size) would have names over :data:`NAME_MAX` bytes."""
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "._-" for c in name) \
            or name in (".", ".."):
        raise ConfigError(f"name={name!r}; expected letters, digits, '.', '_' or '-'")
    def derived(stem: str) -> list[str]:
        onnx_name = f"{stem}.onnx"
        return [engine_name(onnx_name, MAX_BATCH_SIZE), f"config_infer_{stem}.txt", f"{stem}_labels.txt",
                calib_name(onnx_name), onnx_name]

    size = len(name.encode("utf-8"))
    over = max(len(n.encode("utf-8")) for n in derived(name)) - NAME_MAX
    if over > 0:
        raise ConfigError(f"name={name[:24]!r}... is {size} bytes long (UTF-8); expected at most {size - over} bytes: "
                          f"it names the files {derived('NAME')[0]} (the engine nvinfer saves at batch-size "
                          f"{MAX_BATCH_SIZE}) and {derived('NAME')[1]}, and a file name holds {NAME_MAX} bytes")
    return name


#: nvinfer's ``model-color-format`` per channel count (0 RGB, 1 BGR, 2 GRAY); fsrfer RGB models take RGB.
COLOR_FORMAT = {1: 2, 3: 0}
#: ``scaling-filter=2`` is NvBufSurfTransformInter_Algo1: bicubic on the GPU (5-tap on VIC). nvinfer's default is
#: nearest; scripts/deepstream_inputs.py measures each (docs/deepstream.md).
SCALING_FILTER = 2
#: ``scaling-compute-hw=1``: scale on the GPU (bicubic), which also lifts DeepStream 7.1+'s 16x16 minimum object on
#: Jetson (it applies with VIC scaling, the Jetson default).
SCALING_COMPUTE_HW = 1
#: Default ``batch-size``: faces classified in one engine run (a 640x480 crowd frame holds about 50).
BATCH_SIZE = 64
#: Largest ``batch-size`` (its engine's name, ``_b1024``, is the longest nvinfer saves).
MAX_BATCH_SIZE = 1024
#: Most bytes of a file name (NAME_MAX of Linux' file systems).
NAME_MAX = 255


def engine_name(onnx_name: str, batch_size: int, gpu_id: int = 0, precision: str = "fp16") -> str:
    """The file nvinfer serialises the engine it builds from ``onnx_name`` to (beside it), so a config that names it
    as ``model-engine-file`` reuses it from the second run on."""
    return f"{onnx_name}_b{batch_size}_gpu{gpu_id}_{precision}.engine"


def calib_name(onnx_name: str) -> str:
    """The file an s8s8 config names as ``int8-calib-file`` (see :data:`CALIB_NOTE`)."""
    return f"{onnx_name[:-len('.onnx')] if onnx_name.endswith('.onnx') else onnx_name}_int8_calib.txt"


#: The whole of that file: nvinfer sets TensorRT's INT8 flag only when ``int8-calib-file`` names a readable file
#: (``NvDsInferContextImpl`` in nvdsinfer_context_impl.cpp, DS 6.2/8.0/9.1), and TensorRT uses no calibrator for a
#: network with Q/DQ layers ("Calibrator won't be used in explicit precision mode").
CALIB_NOTE = ("# Not a calibration table: the ONNX file carries its own Q/DQ scales and TensorRT uses no calibrator "
              "for it.\n# nvinfer sets TensorRT's INT8 flag only when int8-calib-file names a file that exists: this "
              "one.\n")


def config_text(info: ModelInfo, onnx_name: str, labels_name: str, *, batch_size: int = BATCH_SIZE,
                gie_id: int = 2, operate_on_gie_id: int = 1, source: str = "") -> str:
    """nvinfer's ``[property]`` group for the model as a secondary classifier of ``operate_on_gie_id``'s objects."""
    pre = info.preprocessing
    if pre.channels not in COLOR_FORMAT:
        raise ModelError(f"the model takes {pre.channels} channels; nvinfer feeds 1 (GRAY) or 3 (RGB)")
    for what, value, low in (("batch_size", batch_size, 1), ("gie_id", gie_id, 1),
                             ("operate_on_gie_id", operate_on_gie_id, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 1024:
            raise ConfigError(f"{what}={value!r}; expected an integer from {low} to 1024")
    if gie_id == operate_on_gie_id:
        raise ConfigError(f"gie_id={gie_id} is the detector's own id (operate_on_gie_id); expected another")
    if info.precision == "int8" and info.int8_scheme != "s8s8":
        raise ModelError(f"an INT8 file of scheme {info.int8_scheme or 'unknown'!r}; TensorRT takes the s8s8 file "
                         "(NAME.int8-s8s8.onnx), or give the FP32 file")
    int8 = info.precision == "int8"
    scale, offset = normalisation(pre)
    s = pre.input_size
    engine = engine_name(onnx_name, batch_size, precision="int8" if int8 else "fp16")

    def shapes(flag: str, batch: int) -> str:  # one shell word however the model names its input (spaces, ';', $)
        return shlex.quote(f"--{flag}={info.input_name}:{batch}x{pre.channels}x{s}x{s}")

    precision = ([
        "# INT8 (Q/DQ). Faster: build the engine on the device first, with the TensorRT of the DeepStream install",
        "# (INT8 and FP16): fsrfer-export <the s8s8 file> --deepstream <this folder> --deepstream-engine, or in this",
        "# folder (TensorRT 8.5-10.x):",
        "#   " + _comment(f"trtexec --onnx={onnx_name} --int8 --fp16 {shapes('minShapes', 1)} "
                        f"{shapes('optShapes', batch_size)} {shapes('maxShapes', batch_size)} --saveEngine={engine}"),
        "# Without it nvinfer builds this INT8 engine itself (the layers outside Q/DQ in FP32). It sets TensorRT's INT8",
        "# flag only when int8-calib-file names a file that exists; for a graph with its own Q/DQ scales TensorRT",
        "# uses no calibrator, so that file only has to be there.",
        "network-mode=1",
        f"int8-calib-file={calib_name(onnx_name)}",
    ] if int8 else [
        "# FP16. For INT8 export the s8s8 file with --deepstream (docs/deepstream.md).",
        "network-mode=2",
    ])
    return "\n".join([
        f"# Gst-nvinfer secondary classifier: facial expressions of the faces detector gie-unique-id={operate_on_gie_id} "
        "finds.",
        f"# Written by fsrfer-export{f' from {_comment(source)}' if source else ''}; docs/deepstream.md says why each "
        "value is what it is.",
        "# Faces nvinfer skips are never classified: DeepStream 6.0-6.2 skip every object under 16x16 pixels; 7.1 and",
        "# later only with VIC scaling on Jetson (scaling-compute-hw below keeps it on the GPU). Check the log for",
        "# 'Setting min object dimensions as 16x16'.",
        "[property]",
        "gpu-id=0",
        f"gie-unique-id={gie_id}",
        "process-mode=2",
        "network-type=1",
        f"operate-on-gie-id={operate_on_gie_id}",
        "# operate-on-class-ids=0  (the detector's face class, when it finds other objects too)",
        f"onnx-file={onnx_name}",
        "# nvinfer builds this engine from onnx-file on the first run (minutes on a Jetson) and saves it under this",
        "# name; change batch-size and the name's _b<N> together.",
        f"model-engine-file={engine}",
        f"batch-size={batch_size}",
        *precision,
        f"infer-dims={pre.channels};{s};{s}",
        f"model-color-format={COLOR_FORMAT[pre.channels]}",
        f"# y = net-scale-factor * (x - offsets) == (x / 255 - {float(pre.mean):g}) / {float(pre.std):g}",
        f"net-scale-factor={scale!r}",
        "offsets=" + ";".join([repr(offset)] * pre.channels),
        "# Bicubic on the GPU; nvinfer's default (nearest) loses far more on small faces, bilinear a little.",
        f"scaling-compute-hw={SCALING_COMPUTE_HW}",
        f"scaling-filter={SCALING_FILTER}",
        "# Stretched to the square: black padding (maintain-aspect-ratio=1) loses far more on small faces. Square",
        "# boxes do best: nvinfer cannot square them by repeating edges as the SDK does.",
        "maintain-aspect-ratio=0",
        f"input-object-min-width={max(2, s // 8)}",
        f"input-object-min-height={max(2, s // 8)}",
        f"labelfile-path={labels_name}",
        f"output-blob-names={PROBS}",
        "classifier-threshold=0",
        "classifier-type=expression",
        "# A tracked face's expression changes while its box does not: classify it in every frame.",
        "secondary-reinfer-interval=0",
        "# Each face's class probabilities as tensor meta, to average them over frames (docs/deepstream.md).",
        "output-tensor-meta=1",
        "",
    ])


def _comment(text: str) -> str:
    """``text`` as it can stand in a config comment: one line (GKeyFile refuses a line that is neither a comment, a
    group nor a key) of UTF-8 (a file name that is not is shown with backslash escapes)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\r", "\\r").replace("\n", "\\n")


class _Prepared(NamedTuple):
    model: "onnx.ModelProto"
    info: ModelInfo
    onnx_name: str
    labels_name: str
    labels: str
    config: str


def _prepare(onnx_path: PathLike, name: str, batch_size: int, gie_id: int, operate_on_gie_id: int) -> _Prepared:
    from .onnx_export import load_onnx, read_model_info

    check_name(name)
    model = load_onnx(onnx_path)
    info = read_model_info(model)
    ds = with_probabilities(model, info)
    onnx_name, labels_name = f"{name}.onnx", f"{name}_labels.txt"
    text = config_text(info, onnx_name, labels_name, batch_size=batch_size, gie_id=gie_id,
                       operate_on_gie_id=operate_on_gie_id, source=Path(onnx_path).name)
    return _Prepared(ds, info, onnx_name, labels_name, labels_text(info), text)


def check_deepstream(onnx_path: PathLike, name: str = "fsrfer", *, batch_size: int = BATCH_SIZE, gie_id: int = 2,
                     operate_on_gie_id: int = 1, engine: bool = False) -> None:
    """Raise what :func:`write_deepstream` would raise for these arguments, writing nothing (the folder aside)."""
    engine = check_flag("engine", engine)
    p = _prepare(onnx_path, name, batch_size, gie_id, operate_on_gie_id)
    if engine:
        check_engine_source(p.info)
        from .engine import import_tensorrt

        import_tensorrt(onnx_path)


def write_deepstream(out_dir: PathLike, onnx_path: PathLike, name: str = "fsrfer", *, batch_size: int = BATCH_SIZE,
                     gie_id: int = 2, operate_on_gie_id: int = 1, engine: bool = False,
                     workspace_mb: Optional[int] = None, timing_cache: Optional[PathLike] = None) -> Path:
    """Write ``NAME.onnx``, ``NAME_labels.txt`` and ``config_infer_NAME.txt`` into ``out_dir`` (created).

    With ``engine`` (an s8s8 INT8 source only, on the device, with the TensorRT of its DeepStream install), also
    build the engine the config names, as nvinfer would load it: TensorRT's builder as :mod:`.engine` drives it
    (INT8 and FP16 flags on 8.5-10.x, strongly typed on 11), one optimisation profile of batches 1 to
    ``batch_size``, on GPU 0 (the config's ``gpu-id``). nvinfer's own build of that file (through the calibration
    note) sets the INT8 flag alone, so the layers outside Q/DQ run in FP32, and takes minutes at the first run. FP32
    and FP16 sources need no such step (nvinfer builds them in FP16).
    ``workspace_mb`` and ``timing_cache`` are as for :func:`.engine.build_engine`. The engine is built before any
    file of ``out_dir`` is written or removed, so a build that fails leaves the folder as it was.

    Each file is written whole or not at all, the config last, so a config never names files that are not there.
    Files of the same names are replaced; other files in ``out_dir`` are left alone, except the engines nvinfer
    built from an earlier ``NAME.onnx`` (``NAME.onnx_b*_*.engine``): they are removed whenever ``NAME.onnx`` is
    new or changed, since nvinfer would load them instead of building one from the new file (a folder of such a name
    is left alone, with a warning).

    Returns:
        The config file's path.

    Raises:
        ModelError: ``onnx_path`` is not an fsrfer ONNX file nvinfer can feed (see :func:`with_probabilities`).
        ConfigError: an option out of range, ``workspace_mb`` or ``timing_cache`` without ``engine``, a name that
            cannot be a file name, ``out_dir`` is empty, a file or lies under one, or ``onnx_path`` is ``out_dir/NAME.onnx``
            itself (it would be replaced by its DeepStream copy).
        InputError: a file this call writes is a folder in ``out_dir`` (found before anything is written), or
            ``engine`` is not a bool (``"no"`` would read as true).
    """
    from .onnx_export import save_onnx

    engine = check_flag("engine", engine)
    check_out_folder("out_dir", out_dir, "the classifier's folder")

    if workspace_mb is not None and (isinstance(workspace_mb, bool) or not isinstance(workspace_mb, int)
                                     or workspace_mb < 1):
        raise ConfigError(f"workspace_mb={workspace_mb!r}; expected a whole number of MiB >= 1, or None for "
                          "TensorRT's default")
    unused = [n for n, v in (("workspace_mb", workspace_mb), ("timing_cache", timing_cache)) if v is not None]
    if unused and not engine:
        raise ConfigError(f"{' and '.join(unused)} given with engine=False: they set TensorRT's build of the engine, "
                          "and no engine is built; expected engine=True, or leave them out (nvinfer builds the "
                          "engine itself on first use)")
    p = _prepare(onnx_path, name, batch_size, gie_id, operate_on_gie_id)
    if engine:
        check_engine_source(p.info)
        from .engine import import_tensorrt

        import_tensorrt(onnx_path)  # here, before anything is written: BackendUnavailable names the install
    out = Path(out_dir)
    blocked = next((d for d in (out, *out.parents) if d.exists()), None)
    if blocked is not None and not blocked.is_dir():
        raise ConfigError(f"{out}: {blocked} is a file; expected a folder (or a new path)")
    target = out / p.onnx_name
    if target.exists() and same_file(target, onnx_path):
        raise ConfigError(f"{target} would replace {onnx_path} with its DeepStream copy; expected another folder "
                          "or name")
    plan_path = out / engine_name(p.onnx_name, batch_size, precision="int8")
    config = out / f"config_infer_{name}.txt"
    # Every file this call writes, checked before the first is written (or an engine is built): a folder in the way
    # of the config would leave the new NAME.onnx beside the earlier config and labels.
    targets = [target, *([plan_path] if engine else []), out / p.labels_name,
               *([out / calib_name(p.onnx_name)] if p.info.precision == "int8" else []), config]
    folders = [t.name for t in targets if t.is_dir()]
    if folders:
        raise InputError(f"{out} holds the folder(s) {', '.join(folders)} where the DeepStream classifier writes "
                         "files; expected files (replaced) or nothing of those names: move the folder(s) away, or "
                         "choose another folder or name")
    # Built before any file of the folder changes (from a copy elsewhere): a build that fails leaves the folder's
    # earlier export whole, not its config beside this ONNX file with that export's engines removed.
    plan = _build_for_nvinfer(p.model, p.onnx_name, p.info, plan_path, batch_size, workspace_mb,
                              timing_cache) if engine else None
    out.mkdir(parents=True, exist_ok=True)
    before = sha256_file(target) if target.is_file() else None
    save_onnx(p.model, target)
    if before != sha256_file(target):
        # nvinfer reuses an engine whose batch and shapes fit, whichever model it was built from; one without its
        # ONNX file beside it was built from a model removed since
        for stale in sorted(out.glob(f"{glob.escape(p.onnx_name)}_b*_*.engine")):
            if stale.is_dir() and not stale.is_symlink():  # not an engine nvinfer wrote: someone's folder, kept
                log.warning("left %s alone: it is a folder, not a file (nvinfer saves engines as files); should the "
                            "config name it (model-engine-file), move it away, or nvinfer cannot save its engine",
                            stale)
                continue
            stale.unlink()
            log.warning("removed %s: nvinfer built it from an earlier %s, and would have run it instead of the new "
                        "model", stale, p.onnx_name)
    if plan is not None:
        atomic_write_bytes(plan_path, plan)
        log.info("wrote %s", plan_path)
    _write(out / p.labels_name, p.labels)
    if p.info.precision == "int8":
        _write(out / calib_name(p.onnx_name), CALIB_NOTE)
    _write(config, p.config)
    log.info("wrote the DeepStream classifier %s (with %s, %s)", config, p.onnx_name, p.labels_name)
    return config


def check_engine_source(info: ModelInfo) -> None:
    """ConfigError unless ``info`` is an s8s8 INT8 model, the one kind whose engine is better built here (INT8 and
    FP16) than by nvinfer (INT8 alone)."""
    if info.precision != "int8":
        raise ConfigError(f"a {info.precision} model: nvinfer builds its FP16 engine itself on the first run; "
                          "building one here is for an s8s8 INT8 file (NAME.int8-s8s8.onnx), whose own nvinfer "
                          "build runs the layers outside Q/DQ in FP32")


def _build_for_nvinfer(model: "onnx.ModelProto", onnx_name: str, info: ModelInfo, out: Path, batch_size: int,
                       workspace_mb: Optional[int], timing_cache: Optional[PathLike]) -> bytes:
    """The engine of ``model`` (the DeepStream copy, built from a temporary ``onnx_name``) as nvinfer loads it from
    ``out``: batches 1..``batch_size``. Returns the plan; writes nothing into ``out``'s folder (the caller does)."""
    import tempfile

    from .. import engine_cache
    from .engine import _build_serialized, import_tensorrt, on_device, require_writable
    from .onnx_export import save_onnx

    trt_version = str(import_tensorrt(onnx_name).__version__)
    with on_device(0) as gpu:  # the config's gpu-id, and the _gpu0 of the engine's name
        key = engine_cache.EngineKey(trt_version, gpu.compute_capability, info.precision, 1, batch_size, batch_size,
                                     gpu.key)
        require_writable(out.parent, out.name)  # before minutes of building, not after
        with tempfile.TemporaryDirectory(prefix="fsrfer-deepstream-") as tmp:
            copy = save_onnx(model, Path(tmp) / onnx_name)
            plan, build = _build_serialized(copy, info, key, workspace_mb, timing_cache)
    log.info("built %s for nvinfer (TensorRT %s, %s, %s, batch 1-%d)", out.name, trt_version, build["network"],
             build["builder_flags"] or "no precision flags", batch_size)
    return plan


def square_rect(left: float, top: float, width: float, height: float, frame_width: float,
                frame_height: float) -> tuple[float, float, float, float]:
    """A detector's box made square for nvinfer, which stretches a crop to the network's square (or pads it black):
    ``(left, top, side, side)``, its side the box's larger one (at most the frame's smaller side), centred on the box
    and moved, not cut, to lie inside the frame. For a DeepStream pad probe before this classifier, on each object's
    ``rect_params`` in the muxer's frame size (docs/deepstream.md, "Square boxes").

    Raises:
        InputError: a value that is not a finite number, a box of no size or a frame of no size.
    """
    values = dict(left=left, top=top, width=width, height=height, frame_width=frame_width, frame_height=frame_height)
    # numbers.Real: numpy's numbers too (a box from a float32 array), as the SDK's other checks take them
    bad = {k: v for k, v in values.items() if isinstance(v, bool) or not isinstance(v, numbers.Real)
           or not math.isfinite(v)}
    if bad or width <= 0 or height <= 0 or frame_width <= 0 or frame_height <= 0:
        raise InputError(f"square_rect({', '.join(f'{k}={v!r}' for k, v in values.items())}); expected finite "
                         "numbers, a box and a frame of positive size")
    left, top, width, height, frame_width, frame_height = (float(v) for v in values.values())
    side = min(max(width, height), frame_width, frame_height)
    x = min(max(left + width / 2 - side / 2, 0.0), frame_width - side)
    y = min(max(top + height / 2 - side / 2, 0.0), frame_height - side)
    return x, y, side, side
