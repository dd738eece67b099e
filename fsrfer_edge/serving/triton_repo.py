"""A Triton model repository for NVIDIA's production ``tritonserver``, written from exported files.

Layout (one Triton model per file given; both may be given)::

    DIR/<name>_onnx/config.pbtxt      platform "onnxruntime_onnx"
    DIR/<name>_onnx/1/model.onnx
    DIR/<name>_onnx/labels.txt
    DIR/<name>_trt/config.pbtxt       platform "tensorrt_plan"
    DIR/<name>_trt/1/model.plan
    DIR/<name>_trt/labels.txt

The two variants are separate models because a TensorRT engine only runs where its TensorRT version
and GPU architecture match (see :mod:`fsrfer_edge.engine_cache`), while the ONNX model runs anywhere:
an operator serves ``<name>_trt`` on the GPUs it was built for and keeps ``<name>_onnx`` as the portable
fallback (other GPUs, CPU nodes), and clients pick one by model name.

Names, shapes and types come from the model's own :class:`~fsrfer_edge.metadata.ModelInfo` (ONNX
metadata, or the engine's JSON sidecar); the ModelInfo JSON is also stored as the model config
parameter ``fsrfer`` so that :class:`~fsrfer_edge.serving.RemoteRecognizer` preprocesses faces exactly
as the served model expects.
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union


from ..errors import ConfigError, ModelError, WriteError, check_flag, check_out_folder, require
from ..fileio import file_problem, short_name
from ..metadata import METADATA_KEY, ModelInfo

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Instance kinds accepted for the ONNX model (a TensorRT engine always runs on KIND_GPU).
KINDS = ("KIND_GPU", "KIND_CPU", "KIND_AUTO")
DEFAULT_MAX_BATCH = 64
DEFAULT_QUEUE_DELAY_US = 2000
LABELS_FILE = "labels.txt"
#: Model config parameter holding the ModelInfo JSON (the same key as the ONNX metadata).
INFO_PARAMETER = METADATA_KEY
TRITON_DTYPES = {"float32": "TYPE_FP32", "uint8": "TYPE_UINT8"}
# ONNX TensorProto element types for the dtypes above.
_ONNX_ELEM = {"float32": 1, "uint8": 2}
#: The ONNX Runtime backend's model parameter for each instance's intra-op threads
#: (triton-inference-server/onnxruntime_backend README, "Model Config Options"; 0 = all cores).
ORT_THREADS_PARAMETER = "intra_op_thread_count"


def parse_config(path: PathLike) -> Any:
    """Parse a ``config.pbtxt`` with Triton's own protobuf schema (``tritonclient``'s model_config_pb2).

    Args:
        path: a ``config.pbtxt`` file, or a model directory containing one.

    Returns:
        The ``inference.ModelConfig`` protobuf message.

    Raises:
        ConfigError: the file is missing or does not parse as a Triton model configuration.
        BackendUnavailable: tritonclient is not installed (extra ``client``).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "config.pbtxt"
    if not p.is_file():
        raise ConfigError(f"{p} does not exist; expected a Triton config.pbtxt (or a model folder holding one)")
    pb2 = require("tritonclient.grpc.model_config_pb2", "client", "parsing Triton model configurations")
    text_format = require("google.protobuf.text_format", "client", "parsing Triton model configurations")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p} cannot be read as text ({exc}); expected a Triton config.pbtxt, UTF-8 protobuf "
                          "text format") from exc
    config = pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ConfigError(f"{p} is not a valid Triton model configuration: {exc}") from exc
    return config


#: Most bytes of a file or folder name (NAME_MAX of Linux' file systems; Windows' and macOS' hold 255 characters).
NAME_MAX = 255
#: Suffixes of the Triton model folders, added to ``model_name``.
_MODEL_SUFFIXES = ("_onnx", "_trt")
#: Prefix of a model folder that :func:`write_triton_repo` replaces, while it is replaced.
_OLD_PREFIX = ".old-"


def _one_line(text: str) -> str:
    """``text`` as it can stand in a config.pbtxt comment: one line (a file name may hold a newline) of UTF-8 (a
    file name that is not is shown with backslash escapes)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\r", "\\r").replace("\n", "\\n")


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quote(text: str) -> str:
    """A protobuf text-format string literal, every control character escaped (as protobuf's own ``CEscape``): Triton's
    C++ tokenizer ends a string at a NUL or a line break, where Python's parser (the staged check) reads on."""
    return '"' + "".join(_ESCAPES.get(c) or (f"\\{ord(c):03o}" if ord(c) < 0x20 or c == "\x7f" else c)
                         for c in text) + '"'


#: Largest values Triton's model config schema holds: ``max_batch_size``, ``count`` and ``preferred_batch_size`` are
#: int32 and ``max_queue_delay_microseconds`` uint64 (model_config.proto); ONNX Runtime reads its thread count as int.
INT32_MAX = 2**31 - 1
UINT64_MAX = 2**64 - 1


def _positive(name: str, value: Any, minimum: int = 1, maximum: int = INT32_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ConfigError(f"{name}={value!r}; expected an integer from {minimum} to {maximum}")
    return value


def _onnx_info(path: Path) -> ModelInfo:
    """ModelInfo of an fsrfer ONNX file, checked against the graph Triton will see."""
    from ..export.onnx_export import load_onnx, read_model_info

    model = load_onnx(path)
    info = read_model_info(model)
    graph = model.graph
    inputs = {i.name: i for i in graph.input}
    outputs = {o.name: o for o in graph.output}
    if info.input_name not in inputs or info.output_name not in outputs:
        raise ModelError(f"{path}: metadata names input {info.input_name!r} and output {info.output_name!r}, but "
                         f"the graph has inputs {sorted(inputs)} and outputs {sorted(outputs)}; export it again")
    tensor = inputs[info.input_name].type.tensor_type
    if tensor.elem_type != _ONNX_ELEM[info.input_dtype]:
        raise ModelError(f"{path}: input {info.input_name!r} has ONNX element type {tensor.elem_type}, but the "
                         f"metadata says {info.input_dtype}; export it again")
    dims = tensor.shape.dim
    if len(dims) != 4 or (dims[0].HasField("dim_value") and dims[0].dim_value > 0):
        shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
        raise ModelError(f"{path}: input {info.input_name!r} has shape {shape}; Triton's dynamic batcher needs a "
                         "dynamic batch axis [N, C, H, W]. Export with fsrfer-export (it writes one)")
    if outputs[info.output_name].type.tensor_type.elem_type != _ONNX_ELEM["float32"]:
        raise ModelError(f"{path}: output {info.output_name!r} is not float32 logits; export it again")
    return info


def _engine_info(path: Path) -> tuple[ModelInfo, Any]:
    from ..engine_cache import read_sidecar

    problem = file_problem(path)
    if problem:
        raise ModelError(f"engine file {path} {problem}; expected a TensorRT engine file (with its JSON sidecar)")
    doc = read_sidecar(path)
    return doc["model_info"], doc["key"]


def render_config(name: str, platform: str, info: ModelInfo, max_batch: int, preferred: Sequence[int],
                  max_queue_delay_us: int, instances: int, kind: str, comments: Sequence[str] = (),
                  threads: Optional[int] = None) -> str:
    """The ``config.pbtxt`` text of one model (protobuf text format).

    ``threads`` sets the ONNX Runtime backend's ``intra_op_thread_count`` model parameter (threads of
    each instance); None leaves the backend's default, all cores per instance.
    """
    pre = info.preprocessing
    lines = [f"# {_one_line(c)}" for c in comments] + [
        f"name: {_quote(name)}",
        f"platform: {_quote(platform)}",
        f"max_batch_size: {max_batch}",
        "input [",
        "  {",
        f"    name: {_quote(info.input_name)}",
        f"    data_type: {TRITON_DTYPES[info.input_dtype]}",
        f"    dims: [ {pre.channels}, {pre.input_size}, {pre.input_size} ]",
        "  }",
        "]",
        "output [",
        "  {",
        f"    name: {_quote(info.output_name)}",
        "    data_type: TYPE_FP32",
        f"    dims: [ {len(info.classes)} ]",
        f"    label_filename: {_quote(LABELS_FILE)}",
        "  }",
        "]",
        "dynamic_batching {",
    ]
    if preferred:
        lines.append(f"  preferred_batch_size: [ {', '.join(str(b) for b in preferred)} ]")
    lines += [
        f"  max_queue_delay_microseconds: {max_queue_delay_us}",
        "}",
        "instance_group [",
        "  {",
        f"    count: {instances}",
        f"    kind: {kind}",
        "  }",
        "]",
        "parameters {",
        f"  key: {_quote(INFO_PARAMETER)}",
        f"  value {{ string_value: {_quote(info.to_json())} }}",
        "}",
    ]
    if threads is not None:
        lines += ["parameters {", f"  key: {_quote(ORT_THREADS_PARAMETER)}",
                  f"  value {{ string_value: {_quote(str(threads))} }}", "}"]
    return "\n".join(lines) + "\n"


def _preferred(preferred: Any) -> tuple[Any, ...]:
    """``preferred_batch_sizes`` as a tuple; a single number or a string is refused, not iterated."""
    if preferred is None:
        return ()
    if isinstance(preferred, (str, bytes)) or not isinstance(preferred, Iterable):
        raise ConfigError(f"preferred_batch_sizes={preferred!r}; expected a list of batch sizes, e.g. [8, 32] "
                          "(or None for none)")
    return tuple(preferred)


def _check_batching(max_batch: int, preferred: Sequence[int], what: str) -> tuple[int, ...]:
    out = tuple(preferred)
    for b in out:
        if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= max_batch:
            raise ConfigError(f"preferred batch size {b!r} for {what}; expected integers in 1..{max_batch} "
                              "(the model's max_batch)")
    if len(set(out)) != len(out):
        raise ConfigError(f"preferred batch sizes {list(out)} repeat a value; give each size once")
    return tuple(sorted(out))


def _make_stage(out: Path) -> Path:
    """A new, empty staging folder beside ``out``, with the umask's permissions (it may become the repository
    folder; mkdtemp's 0700 would carry over): ``mkdir`` applies the umask itself, so nothing reads it. Its name
    holds at most the first 200 bytes of ``out``'s, so that a repository folder of a long name has one too.

    Raises:
        ConfigError: the folder of ``out`` refuses new folders (read-only, /proc), naming it.
    """
    for _ in range(100):
        stage = out.parent / f".{short_name(out.name)}.staging-{secrets.token_hex(4)}"
        try:
            stage.mkdir()
            return stage
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigError(f"cannot write the Triton model repository {out}: {out.parent} refuses a new folder "
                              f"({exc.strerror or exc}); expected a folder this user can write, or another "
                              "out_dir") from exc
    raise FileExistsError(f"no free staging folder name beside {out}")


def _stage_model(stage: Path, name: str, src: Path, filename: str, info: ModelInfo, config: str) -> None:
    model_dir = stage / name
    (model_dir / "1").mkdir(parents=True)
    shutil.copyfile(src, model_dir / "1" / filename)
    (model_dir / LABELS_FILE).write_text("\n".join(info.classes) + "\n", encoding="utf-8")
    (model_dir / "config.pbtxt").write_text(config, encoding="utf-8")


def _validate_staged(stage: Path, names: Sequence[str]) -> None:
    """Parse each staged config with Triton's schema when tritonclient is installed."""
    try:
        require("tritonclient.grpc.model_config_pb2", "client")
    except ImportError:
        log.info("tritonclient is not installed: config.pbtxt not parsed with Triton's schema "
                 "(pip install -e '.[client]' to check it)")
        return
    for name in names:
        parse_config(stage / name)


def _commit(stage: Path, out_dir: Path, names: Sequence[str], overwrite: bool) -> None:
    """Move the staged models into ``out_dir``; a new repository appears in one rename. A model of the same name is
    replaced by a rename, its folder first moved into ``stage`` as ``.old-<name>`` (deleted with ``stage``). Should a
    move fail (or an interrupt come), the models this call moved are moved back, so that the repository is as it was.

    Raises:
        WriteError: a move failed, naming the model folder (or the repository's, for a new one). An earlier model that
            could not be moved back stays in ``stage`` (the message names it; the caller keeps ``stage``); a new one
            that could not be taken back out stays in ``out_dir`` (the message names it too).
    """
    if not out_dir.exists():
        try:
            os.replace(stage, out_dir)
        except OSError as exc:
            raise WriteError(out_dir, exc) from exc
        return
    if not out_dir.is_dir():
        raise ConfigError(f"{out_dir} exists and is not a folder; expected a Triton model repository folder")
    clash = [n for n in names if (out_dir / n).exists()]
    if clash and not overwrite:
        raise ConfigError(f"{out_dir} already holds model(s) {clash}; pass overwrite=True (--triton-overwrite) "
                          "to replace them, or choose another folder or model name")
    touched: list[str] = []  # in order; an old folder is deleted only once every model is in
    aside: set[str] = set()  # models whose earlier folder is in stage
    moved_in: set[str] = set()
    try:
        for n in names:
            touched.append(n)
            if (out_dir / n).exists():
                os.replace(out_dir / n, stage / f"{_OLD_PREFIX}{n}")
                aside.add(n)
            os.replace(stage / n, out_dir / n)
            moved_in.add(n)
    except BaseException as exc:
        stranded, left_in = _move_back(stage, out_dir, touched, aside, moved_in)
        if not isinstance(exc, OSError):
            raise
        error = WriteError(out_dir / touched[-1], exc)
        if stranded or left_in:
            error.message = f"cannot write {out_dir / touched[-1]}: {error.strerror}"
            if left_in:
                error.message += (f"; the new model(s) {left_in} could not be taken back out of {out_dir} and are "
                                  "still there")
            if stranded:
                error.message += (f"; moving back the earlier model(s) {stranded} failed too: they are kept in {stage} "
                                  f"(as {_OLD_PREFIX}<name>); move them back into {out_dir} by hand")
            error.message += ", then fix the cause and try again"
        raise error from exc


def _move_back(stage: Path, out_dir: Path, touched: Sequence[str], aside: set[str],
               moved_in: set[str]) -> tuple[list[str], list[str]]:
    """Undo the moves of :func:`_commit`, last first: each model moved in goes back to ``stage``, each earlier one
    back into ``out_dir``. Returns the earlier models that stay in ``stage`` and the new ones that stay in ``out_dir``
    (a move back failed; logged)."""
    stranded, left_in = [], []
    for n in reversed(touched):
        try:
            if n in moved_in:
                try:
                    os.replace(out_dir / n, stage / n)
                except OSError:
                    left_in.append(n)
                    raise
            if n in aside:
                os.replace(stage / f"{_OLD_PREFIX}{n}", out_dir / n)
        except OSError as exc:
            log.warning("could not move %s back as it was: %s", out_dir / n, exc)
            if n in aside:
                stranded.append(n)
    return stranded, left_in


def _remove_stage(stage: Path, committed: bool) -> None:
    """Delete ``stage``, unless the commit failed and an earlier model stays in it (:func:`_commit`'s message names
    it); one that cannot be deleted is named in a warning (it holds copies of the models, out of Triton's sight)."""
    if not committed:
        try:
            if any(p.name.startswith(_OLD_PREFIX) for p in stage.iterdir()):
                return
        except FileNotFoundError:
            return
        except OSError:  # unreadable: it may hold an earlier model, kept
            return
    shutil.rmtree(stage, ignore_errors=True)
    if os.path.lexists(stage):
        log.warning("could not remove the staging folder %s; remove it by hand", stage)


def write_triton_repo(out_dir: PathLike, onnx_path: Optional[PathLike] = None,
                      engine_path: Optional[PathLike] = None, model_name: str = "fsrfer",
                      max_batch: Optional[int] = None, preferred_batch_sizes: Optional[Sequence[int]] = None,
                      max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US, instances: int = 1,
                      kind: str = "KIND_AUTO", overwrite: bool = False, threads: Optional[int] = None) -> Path:
    """Write a Triton model repository holding the fused model as ONNX and/or a TensorRT plan.

    Args:
        out_dir: the repository folder (created; other models already in it are left alone).
        onnx_path: an fsrfer ``.onnx`` file -> model ``<model_name>_onnx`` (``onnxruntime_onnx``).
        engine_path: a TensorRT engine with its JSON sidecar -> model ``<model_name>_trt``
            (``tensorrt_plan``; only runs where its TensorRT version and GPU match the sidecar).
        model_name: prefix of the Triton model names.
        max_batch: Triton ``max_batch_size``; default 64 for ONNX and the engine's profile maximum
            for TensorRT (a larger value than the engine's maximum is refused).
        preferred_batch_sizes: dynamic batcher's preferred sizes; default none for ONNX (the batcher
            forms the largest batch it can within the delay) and the engine's ``opt_batch`` for TensorRT.
        max_queue_delay_us: how long a request may wait for others to form a batch.
        instances: model instances per device (``instance_group.count``).
        kind: ``KIND_GPU``, ``KIND_CPU`` or ``KIND_AUTO`` (the default: a GPU where there is one, else the CPU, so
            the portable model also loads on CPU-only nodes) for the ONNX model.
        overwrite: replace models of the same names already in ``out_dir``.
        threads: ONNX Runtime intra-op threads of each instance of the ONNX model (its backend's
            ``intra_op_thread_count``); default: the backend's, all cores for each instance. On a CPU,
            ``instances`` x ``threads`` at most the cores avoids instances fighting over them (the
            serving analogue of ``Recognizer(sessions=N)``). Not allowed without ``onnx_path``.

    Returns:
        ``out_dir``.

    Raises:
        ConfigError: no model given, an empty ``out_dir``, one that starts with an unexpanded ``~``, or one whose
            folder refuses new folders, invalid options (a ``model_name`` too long for a folder name), or models of
            these names exist (without overwrite).
        InputError: ``overwrite`` is not a bool (``"no"`` would read as true and replace the models).
        ModelError / EngineError: a file is missing, not an fsrfer model, or has no sidecar.
        WriteError: copying a model or moving it into ``out_dir`` failed (a full disk, an I/O error), naming the model
            folder; the models this call replaced are moved back, so the repository is as it was.
    """
    overwrite = check_flag("overwrite", overwrite)
    check_out_folder("out_dir", out_dir, "the repository's folder")
    if onnx_path is None and engine_path is None:
        raise ConfigError("write_triton_repo needs onnx_path and/or engine_path; received neither")
    if not isinstance(model_name, str) or not model_name or not all(c.isalnum() or c in "._-" for c in model_name):
        raise ConfigError(f"model_name={model_name!r}; expected letters, digits, '.', '_' or '-'")
    longest = NAME_MAX - max(len(s) for s in _MODEL_SUFFIXES) - len(_OLD_PREFIX)
    if len(model_name.encode("utf-8")) > longest:
        raise ConfigError(f"model_name={model_name[:40]!r}... is {len(model_name.encode('utf-8'))} bytes long (UTF-8); "
                          f"expected at most {longest} bytes: it names the model folder <model_name>_onnx or _trt "
                          f"(renamed {_OLD_PREFIX}<folder> while it is replaced), and a file name holds {NAME_MAX}")
    if kind not in KINDS:
        raise ConfigError(f"kind={kind!r}; expected one of {KINDS}")
    _positive("instances", instances)
    if threads is not None:
        _positive("threads", threads)
        if onnx_path is None:
            raise ConfigError(f"threads={threads} sets ONNX Runtime threads of the ONNX model; no onnx_path was "
                              "given (a TensorRT engine has no such setting)")
    _positive("max_queue_delay_us", max_queue_delay_us, 0, UINT64_MAX)
    if max_batch is not None:
        _positive("max_batch", max_batch)
    preferred = _preferred(preferred_batch_sizes)
    out = Path(out_dir)
    blocked = next((d for d in (out, *out.parents) if d.exists()), None)
    if blocked is not None and not blocked.is_dir():  # before a staging folder is made beside it
        raise ConfigError(f"{out}: {blocked} exists and is not a folder; expected a Triton model repository folder "
                          "(or a new path)")
    models: list[tuple[str, str, Path, str, ModelInfo, str]] = []
    if onnx_path is not None:
        src = Path(onnx_path)
        problem = file_problem(src)
        if problem:
            raise ModelError(f"ONNX file {src} {problem}; expected an .onnx file written by fsrfer-export")
        info = _onnx_info(src)
        mb = max_batch or DEFAULT_MAX_BATCH
        pref = _check_batching(mb, preferred, f"{model_name}_onnx")
        name = f"{model_name}_onnx"
        comments = [f"Written by fsrfer-edge from {src.name} ({info.precision}, input {info.input_dtype}).",
                    "Runs on Triton's ONNX Runtime backend on any GPU (KIND_GPU) or CPU (KIND_CPU)."]
        models.append((name, "onnxruntime_onnx", src, "model.onnx", info,
                       render_config(name, "onnxruntime_onnx", info, mb, pref, max_queue_delay_us, instances,
                                     kind, comments, threads)))
    if engine_path is not None:
        src = Path(engine_path)
        info, key = _engine_info(src)
        if key.min_batch != 1:
            raise ConfigError(f"engine {src.name} has a batch profile {key.min_batch}-{key.max_batch}; Triton's "
                              "dynamic batcher sends batches from 1 up, so build it with --min-batch 1")
        mb = max_batch or key.max_batch
        if mb > key.max_batch:
            raise ConfigError(f"max_batch={mb} exceeds the engine's profile maximum {key.max_batch}; pass a "
                              f"max_batch <= {key.max_batch} or rebuild the engine with --max-batch {mb}")
        # No preferred size by default: Triton's batcher then fills batches up to max_batch_size, and its guide
        # says a preferred size is for TensorRT models with several optimisation profiles, not one (batcher.md).
        pref = _check_batching(mb, preferred, f"{model_name}_trt")
        name = f"{model_name}_trt"
        comments = [f"Written by fsrfer-edge from {src.name} ({info.precision}, input {info.input_dtype}).",
                    f"TensorRT {key.tensorrt_version}, GPU compute capability {key.compute_capability}: serve it "
                    "with a Triton image whose TensorRT version is the same, on GPUs of that architecture."]
        models.append((name, "tensorrt_plan", src, "model.plan", info,
                       render_config(name, "tensorrt_plan", info, mb, pref, max_queue_delay_us, instances,
                                     "KIND_GPU", comments)))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder {out.parent} of the Triton model repository {out} "
                          f"({exc.strerror or exc}); expected a path this user can write") from exc
    stage = _make_stage(out)
    committed = False
    try:
        for name, _, src, filename, info, config in models:
            try:
                _stage_model(stage, name, src, filename, info, config)
            except OSError as exc:  # a full disk while copying the model; not one about the source file
                if exc.filename is not None and not os.fspath(exc.filename).startswith(os.fspath(stage)):
                    raise
                raise WriteError(out / name, exc) from exc
        names = [m[0] for m in models]
        _validate_staged(stage, names)
        _commit(stage, out, names, overwrite)
        committed = True
    finally:
        _remove_stage(stage, committed)
    log.info("wrote Triton model repository %s: %s", out, ", ".join(m[0] for m in models))
    return out


def info_from_config(config: Any) -> Optional[ModelInfo]:
    """The ModelInfo stored in a model config (dict from tritonclient, either protocol), or None."""
    if not isinstance(config, dict):
        return None
    params = config.get("parameters") or {}
    entry = params.get(INFO_PARAMETER) if isinstance(params, dict) else None
    text = entry.get("string_value") if isinstance(entry, dict) else None
    if not text:
        return None
    return ModelInfo.from_json(text, source=f"Triton model config {config.get('name', '')!r}")
