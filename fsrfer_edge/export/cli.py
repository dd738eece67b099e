"""``fsrfer-export``: checkpoint -> checked FP32 / FP16 / INT8 ONNX files (+ TensorRT engine).

Given a checkpoint it exports, simplifies and checks FP32, then makes the requested variants,
checks each against FP32, optionally gates INT8 on accuracy, and only then moves every file into
the output directory (nothing is half-written: files are staged in a temporary folder there and
renamed at the end). Given an ``.onnx`` file with ``--engine`` it builds a TensorRT engine.

Output names: NAME.fp32.onnx, NAME.fp16.onnx, NAME.int8-s8s8.onnx (TensorRT),
NAME.int8-u8s8.onnx (ONNX Runtime CPU), NAME.report.json, and engines named by
:class:`fsrfer_edge.engine_cache.EngineKey`.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import AbstractSet, Any, Optional, Sequence

import numpy as np

from .. import engine_cache
from ..errors import (READER_GONE, BackendUnavailable, CliParser, ConfigError, DataError, FsrferError, ModelError,
                      WriteError, cli_main, cli_path, one_line, sigterm_interrupts)
from ..confidence import SUFFIX as SCORES_SUFFIX
from ..fileio import check_output_path, os_error_of, same_file, write_json
from ..preprocessing import FACTORS

log = logging.getLogger(__name__)

#: Engines are built from the lowest precision TensorRT-ready file the run produced.
ENGINE_PREFERENCE = ("int8-s8s8", "fp16", "fp32")
CHECK_FACES = 128
#: The longest --name, in UTF-8 bytes: a file name holds 255, and an export adds up to about 100 (an engine's key).
MAX_NAME_BYTES = 128


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """Everything one ``fsrfer-export`` run does (mirrors the command line)."""

    source: Path
    out_dir: Path = Path("engines")
    name: str = ""
    uint8_input: bool = False
    flip: bool = False
    opset: int = 17
    simplify: bool = True
    fp16: bool = False
    int8: bool = False
    calib: Optional[Path] = None
    calib_size: int = 256
    calib_method: str = "percentile"
    calib_factors: tuple[int, ...] = FACTORS
    int8_target: str = "both"
    int8_quantize_g: Optional[bool] = None
    int8_quantize_film: Optional[bool] = None
    eval_data: Optional[Path] = None
    labels: Optional[str] = None
    eval_size: int = 0
    factors: tuple[int, ...] = FACTORS
    max_int8_drop: float = 1.0
    force: bool = False
    engine: bool = False
    min_batch: int = 1
    opt_batch: int = 32
    max_batch: int = 128
    workspace_mb: Optional[int] = 1024
    timing_cache: Optional[Path] = None
    triton_repo: Optional[Path] = None
    triton_kind: str = "KIND_AUTO"
    triton_instances: int = 1
    triton_max_queue_delay_us: int = 2000
    triton_threads: Optional[int] = None
    deepstream: Optional[Path] = None
    deepstream_batch: Optional[int] = None  # None: deepstream.BATCH_SIZE
    deepstream_engine: bool = False

    @property
    def model_name(self) -> str:
        return self.name or self.source.stem


# ---------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------


def _check_folder(path: Path, option: str) -> None:
    """Refuse a folder option that names a file or lies under one."""
    blocked = next((d for d in (path, *path.parents) if d.exists()), None)
    if blocked is not None and not blocked.is_dir():
        raise ConfigError(f"{option} {path}: {blocked} is a file; expected a folder (or a new path)")


def _check_name(opts: ExportOptions, given: Optional[AbstractSet[str]]) -> None:
    """Refuse a --name no output file can be named after, before the output folder is made (``given``: see
    :func:`_refuse_options_of_outputs_not_made`; ``--name ''`` named there is refused, not read as no name)."""
    from .deepstream import check_name

    name = opts.name
    if not name and not (given is not None and "name" in given):
        return
    if not name.strip() or not name.isprintable():
        raise ConfigError(f"--name {name!r}: expected a file name stem of printable characters, e.g. mymodel (or "
                          "leave --name out: the source file's name)")
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > MAX_NAME_BYTES:
        raise ConfigError(f"--name {name[:24]!r}... is {size} bytes long; expected at most {MAX_NAME_BYTES} (a file "
                          "name holds 255 bytes, and the export adds its suffixes to the name)")
    for option, folder in (("--triton-repo", opts.triton_repo), ("--deepstream", opts.deepstream)):
        if folder is not None:
            try:
                check_name(name)
            except ConfigError:
                raise ConfigError(f"--name with {option}: name={name!r}; expected letters, digits, '.', '_' or '-' "
                                  f"(the name of the model in the files {option} writes)") from None


def _validate(opts: ExportOptions, given: Optional[AbstractSet[str]] = None) -> None:
    """Refuse, before any work, options that are invalid or that the run would ignore (``given``: see
    :func:`_refuse_options_of_outputs_not_made`)."""
    from .calib import is_fer2013_archive
    from .quantize import CALIB_METHODS, INT8_MIN_OPSET, TARGETS
    from .trt_check import opset_range

    if not opts.source.exists():
        raise ConfigError(f"{opts.source} does not exist; expected a model checkpoint or an .onnx file")
    _check_folder(opts.out_dir, "--out-dir")
    _check_name(opts, given)
    if opts.triton_repo is not None:
        _check_folder(opts.triton_repo, "--triton-repo")
    if opts.deepstream is not None:
        from .deepstream import check_name

        _check_folder(opts.deepstream, "--deepstream")
        batch = _deepstream_batch(opts)
        if not 1 <= batch <= 1024:
            raise ConfigError(f"--deepstream-batch {batch}; expected 1..1024 (nvinfer's batch-size)")
        if opts.uint8_input:
            raise ConfigError("--deepstream with --uint8-input: nvinfer feeds the network normalised float32 faces; "
                              "drop --uint8-input")
        check_name(opts.name or "fsrfer")  # stricter than the file names of an export: it must sit in the config
        target = opts.deepstream / f"{opts.name or 'fsrfer'}.onnx"
        if target.exists() and same_file(target, opts.source):
            raise ConfigError(f"--deepstream {opts.deepstream} would replace {opts.source} with its DeepStream copy; "
                              "expected another folder or --name")
    elif opts.deepstream_batch is not None or opts.deepstream_engine:
        if opts.deepstream_engine:
            raise ConfigError("--deepstream-engine builds the engine of --deepstream DIR; pass it too")
        raise ConfigError(f"--deepstream-batch {opts.deepstream_batch} sets the batch of --deepstream DIR; pass it too")
    _refuse_options_of_outputs_not_made(opts, given)
    if opts.timing_cache is not None:
        if opts.timing_cache.is_dir():  # the build would be thrown away when the cache cannot be saved
            raise ConfigError(f"--timing-cache {opts.timing_cache} is a folder; expected a file, e.g. "
                              f"{opts.timing_cache / 'orin.cache'}")
        check_output_path(opts.timing_cache, "--timing-cache")
    if opts.source.suffix == ".onnx":
        extra = [f for f, on in (("--fp16", opts.fp16), ("--int8", opts.int8), ("--uint8-input", opts.uint8_input),
                                 ("--flip", opts.flip), ("--calib", opts.calib is not None),
                                 (f"--opset {opts.opset}", opts.opset != ExportOptions.opset),
                                 ("--no-simplify", not opts.simplify),
                                 ("--eval-data", opts.eval_data is not None),
                                 ("--int8-quantize-film" if opts.int8_quantize_film else "--int8-float-film",
                                  opts.int8_quantize_film is not None),
                                 ("--int8-quantize-g" if opts.int8_quantize_g else "--int8-float-g",
                                  opts.int8_quantize_g is not None)) if on]
        if not (opts.engine or opts.triton_repo or opts.deepstream) or extra:
            raise ConfigError(
                f"given an .onnx file ({opts.source.name}) fsrfer-export only builds an engine, a Triton "
                "repository and/or a DeepStream classifier: pass --engine, --triton-repo DIR and/or --deepstream DIR"
                + (f" and drop {' '.join(extra)} (make variants from the checkpoint)" if extra else ""))
        if opts.name and opts.triton_repo is None and opts.deepstream is None:
            raise ConfigError(f"--name {opts.name} names the models of --triton-repo DIR and --deepstream DIR; the "
                              f"engine built from {opts.source.name} is named after that file: drop --name, or pass "
                              "--triton-repo DIR or --deepstream DIR")
    else:
        low, high = opset_range()
        low = max(low, INT8_MIN_OPSET) if opts.int8 else low
        if not low <= opts.opset <= high:
            raise ConfigError(f"--opset {opts.opset}; expected {low}..{high}: the opsets TensorRT 8.5 and 10.x both "
                              "parse" + (f", {INT8_MIN_OPSET} or more with --int8 (per-channel weight scales)"
                                         if opts.int8 else "") + " (default 17)")
    if opts.name and (opts.name != Path(opts.name).name or opts.name in (".", "..")):
        raise ConfigError(f"--name {opts.name!r}; expected a file name stem without folders, e.g. mymodel "
                          "(choose the folder with --out-dir)")
    if opts.calib_size < 1 or opts.eval_size < 0:
        raise ConfigError(f"--calib-size {opts.calib_size} / --eval-size {opts.eval_size}; expected >= 1 / >= 0 "
                          "(0 evaluates every face)")
    if not opts.calib_factors or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in opts.calib_factors):
        raise ConfigError(f"--calib-factors {opts.calib_factors!r}; expected integers >= 1, e.g. 1,2,3,4,6,8")
    if opts.labels is not None and opts.eval_data is None:
        raise ConfigError(f"--labels {opts.labels} chooses the labels of --eval-data; pass --eval-data NPZ too")
    if opts.int8 and opts.calib is None:
        raise ConfigError("--int8 needs --calib PATH (an .npz with 'images', or a folder of face images)")
    # Before the export runs, not after it (the loaders say the same later, for a file that goes away meanwhile).
    if opts.calib is not None and not Path(opts.calib).exists():
        raise DataError(f"calibration data {opts.calib} does not exist; expected an .npz file or a folder of face images")
    if opts.eval_data is not None and not Path(opts.eval_data).is_file():
        raise DataError(f"evaluation data {opts.eval_data} "
                        f"{'is a folder' if Path(opts.eval_data).is_dir() else 'does not exist'}; "
                        "expected an .npz with 'images' and 'labels', or a folder holding fer2013.npz (as "
                        "fsrfer-eval --data)")
    if opts.labels is not None and opts.eval_data is not None and not is_fer2013_archive(opts.eval_data):
        raise ConfigError(f"--labels {opts.labels} chooses between the FER+ and the original labels of a FER2013 "
                          f"archive (one with 'orig_row'); {opts.eval_data} has no 'orig_row', so its own 'labels' "
                          "are scored: drop --labels")
    if not (math.isfinite(opts.max_int8_drop) and opts.max_int8_drop >= 0):
        raise ConfigError(f"--max-int8-drop {opts.max_int8_drop}; expected a number of accuracy points >= 0, e.g. 1.0")
    if opts.calib_method not in CALIB_METHODS:
        raise ConfigError(f"--calib-method {opts.calib_method!r}; expected one of {CALIB_METHODS}")
    if opts.int8_target not in TARGETS:
        raise ConfigError(f"--int8-target {opts.int8_target!r}; expected one of {sorted(TARGETS)}")
    _refuse_options_of_steps_not_run(opts, given)
    if opts.int8_quantize_film is not None and not (opts.int8 and "u8s8" in TARGETS[opts.int8_target]):
        raise ConfigError(f"{'--int8-quantize-film' if opts.int8_quantize_film else '--int8-float-film'} applies to "
                          "the u8s8 (CPU) INT8 file only; expected --int8 with --int8-target cpu or both (the s8s8 "
                          "TensorRT file always keeps FiLM in float)")
    if opts.int8_quantize_g is not None and not opts.int8:
        raise ConfigError(f"{'--int8-quantize-g' if opts.int8_quantize_g else '--int8-float-g'} chooses how G is "
                          "quantized in the INT8 files; expected --int8 beside it")
    if opts.triton_repo is not None and opts.engine and opts.min_batch != 1:
        raise ConfigError(f"--min-batch {opts.min_batch} with --triton-repo: Triton's dynamic batcher sends batches "
                          "from 1 up; expected --min-batch 1 (the default)")
    if opts.triton_repo is not None and (opts.triton_instances < 1 or opts.triton_max_queue_delay_us < 0):
        raise ConfigError(f"--triton-instances {opts.triton_instances} / --triton-max-queue-delay-us "
                          f"{opts.triton_max_queue_delay_us}; expected >= 1 / >= 0")
    if opts.triton_threads is not None and (opts.triton_repo is None or opts.triton_threads < 1):
        raise ConfigError(f"--triton-threads {opts.triton_threads}; expected an integer >= 1, with --triton-repo DIR")
    if opts.triton_repo is not None:  # write_triton_repo's limits, checked before the export and not after it
        from ..serving.triton_repo import INT32_MAX, UINT64_MAX

        for flag, value, high in (("--triton-instances", opts.triton_instances, INT32_MAX),
                                  ("--triton-threads", opts.triton_threads, INT32_MAX),
                                  ("--triton-max-queue-delay-us", opts.triton_max_queue_delay_us, UINT64_MAX)):
            if value is not None and value > high:
                raise ConfigError(f"{flag} {value}; expected at most {high} (the largest value Triton's config holds)")
    if opts.workspace_mb is not None and opts.workspace_mb < 1:
        raise ConfigError(f"--workspace-mb {opts.workspace_mb}; expected a number of MiB >= 1 (default 1024)")
    if not 1 <= opts.min_batch <= opts.opt_batch <= opts.max_batch:
        raise ConfigError(f"batch range {opts.min_batch}/{opts.opt_batch}/{opts.max_batch}; expected "
                          "1 <= --min-batch <= --opt-batch <= --max-batch")
    if opts.calib is not None and opts.source.suffix != ".onnx":
        # Read now, not after minutes of export: a malformed file, or too few faces for --int8's factors.
        from .calib import calibration_faces, load_faces

        if opts.int8:
            calibration_faces(opts.calib, opts.calib_size, opts.calib_factors)
        else:  # only the step checks' faces (_check_faces)
            load_faces(opts.calib, size=CHECK_FACES, seed=1)
    if opts.deepstream is not None and opts.source.suffix == ".onnx":
        # A model nvinfer cannot take is refused before an engine or a Triton repository is made from it.
        from .deepstream import check_deepstream

        check_deepstream(opts.source, opts.name or "fsrfer", batch_size=_deepstream_batch(opts),
                         engine=opts.deepstream_engine)
    elif opts.deepstream_engine:  # from a checkpoint the folder takes the FP32 file, which nvinfer builds itself
        raise ConfigError("--deepstream-engine builds an s8s8 INT8 file's engine for nvinfer; a checkpoint's "
                          "--deepstream folder takes its FP32 file, whose engine nvinfer builds itself: give the "
                          "exported NAME.int8-s8s8.onnx instead")


def _with_data_files(opts: ExportOptions) -> ExportOptions:
    """``opts`` with a data folder that holds the FER2013 archive read as that archive, as fsrfer-eval --data reads it
    (:func:`trainer.data.npz_path`): ``--eval-data FOLDER``, and ``--calib FOLDER`` where the folder holds no face
    images (a folder of images stays one)."""
    from trainer.data import npz_path

    from .calib import image_files

    def archive(folder: Optional[Path], option: str) -> Optional[Path]:
        if folder is None or not Path(folder).is_dir() or (option == "--calib" and image_files(Path(folder))):
            return folder
        npz = npz_path(Path(folder))
        if npz is None or not npz.is_file():
            return folder  # refused by _validate, or read as an image folder, with the reason
        log.info("%s %s: reading %s, the FER2013 archive of that folder", option, folder, npz)
        return npz

    return dataclasses.replace(opts, eval_data=archive(opts.eval_data, "--eval-data"),
                               calib=archive(opts.calib, "--calib"))


def _refuse_options_of_outputs_not_made(opts: ExportOptions, given: Optional[AbstractSet[str]] = None) -> None:
    """Refuse an engine, batch or Triton option given without the output it shapes: it would be ignored.

    Args:
        given: the fields the command line named (:func:`given_options`), whatever their values; None (a library
            call): those whose values differ from their defaults.
    """
    def is_given(field: str) -> bool:
        return _is_given(opts, field, given)

    engine_only = [(f"--min-batch {opts.min_batch}", is_given("min_batch")),
                   (f"--opt-batch {opts.opt_batch}", is_given("opt_batch")),
                   (f"--max-batch {opts.max_batch}", is_given("max_batch"))]
    builds = [(f"--workspace-mb {opts.workspace_mb}", is_given("workspace_mb")),
              (f"--timing-cache {opts.timing_cache}", is_given("timing_cache"))]
    triton = [(f"--triton-kind {opts.triton_kind}", is_given("triton_kind")),
              (f"--triton-instances {opts.triton_instances}", is_given("triton_instances")),
              (f"--triton-max-queue-delay-us {opts.triton_max_queue_delay_us}", is_given("triton_max_queue_delay_us")),
              (f"--triton-threads {opts.triton_threads}", is_given("triton_threads"))]
    unused = [([o for o, on in engine_only if on] if not opts.engine else [],
               "the batch range of the TensorRT engine that --engine builds", "builds no engine", "--engine"),
              ([o for o, on in builds if on] if not (opts.engine or opts.deepstream_engine) else [],
               "the TensorRT build of --engine (or --deepstream-engine)", "builds no engine", "--engine"),
              ([o for o, on in triton if on] if opts.triton_repo is None else [],
               "the models of --triton-repo DIR", "writes no Triton repository", "--triton-repo DIR")]
    _refuse_unused(unused)


def _is_given(opts: ExportOptions, field: str, given: Optional[AbstractSet[str]]) -> bool:
    """Whether the command line named ``field`` (``given``), or, for a library call (None), it is not at its default."""
    return field in given if given is not None else getattr(opts, field) != getattr(ExportOptions, field)


def _refuse_unused(unused: Sequence[tuple[list[str], str, str, str]], onnx_source: Optional[Path] = None) -> None:
    """Raise for every (options named, what they set, what the run does not do, what to pass) with options, in one
    message (one run names them all). ``onnx_source``: the run's .onnx source, where the options apply to an export
    from a checkpoint only (passing what they need beside it would be refused by the .onnx rule): the message says so
    instead."""
    messages = []
    for named, what, missing, needed in unused:
        if named:
            one = len(named) == 1
            sets = f"{' '.join(named)}: {'this option sets' if one else 'these options set'} {what}"
            if onnx_source is not None:
                messages.append(f"{sets}, in an export from a model checkpoint (.pt) only, and {onnx_source.name} "
                                f"is an .onnx file; export from the checkpoint with {needed}, or drop "
                                f"{'it' if one else 'them'}")
            else:
                messages.append(f"{sets}, and this run {missing}; pass {needed}, or drop {'it' if one else 'them'}")
    if messages:
        raise ConfigError(". ".join(messages))


def _refuse_options_of_steps_not_run(opts: ExportOptions, given: Optional[AbstractSet[str]] = None) -> None:
    """Refuse a calibration, evaluation or accuracy-gate option given without the step it shapes (``--int8``,
    ``--eval-data``, both for the gate): it would be ignored. ``given``: see
    :func:`_refuse_options_of_outputs_not_made`."""
    def named(*fields: str) -> list[str]:
        return [_option_text(opts, f) for f in fields if _is_given(opts, f, given)]

    onnx = opts.source.suffix == ".onnx"  # --int8, --calib and --eval-data are refused with it (_validate)
    gate_needs = " and ".join(n for n, missing in (("--int8", not opts.int8 or onnx),
                                                   ("--eval-data NPZ", opts.eval_data is None or onnx)) if missing)
    _refuse_unused([
        (named("calib_size", "calib_method", "calib_factors", "int8_target") if not opts.int8 or onnx else [],
         "the INT8 calibration and files of --int8", "makes no INT8 file",
         "--int8" if opts.calib is not None and not onnx else "--int8 --calib PATH"),
        (named("eval_size") if opts.eval_data is None or onnx else [],
         "how many --eval-data faces are evaluated", "evaluates no faces", "--eval-data NPZ"),
        (named("max_int8_drop", "force") if gate_needs else [],
         "the INT8 accuracy gate, which needs --int8 and --eval-data", "gates no INT8 file", gate_needs)],
        opts.source if onnx else None)


def _option_text(opts: ExportOptions, field: str) -> str:
    """``--flag VALUE`` as the command line gave it (``--force`` alone; factors as 1,2,3)."""
    flag, value = "--" + field.replace("_", "-"), getattr(opts, field)
    if isinstance(value, bool):
        return flag
    return f"{flag} {','.join(str(v) for v in value) if isinstance(value, tuple) else value}"


def _file_entry(path: Path, info: Any) -> dict[str, Any]:
    from ..fileio import sha256_file

    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path), "model_info": info.to_dict()}


def _check_faces(opts: ExportOptions, info: Any) -> Optional[np.ndarray]:
    """Real faces for the step checks: eval data if given (not used for calibration), else calib."""
    from .calib import load_faces, load_labelled
    from .check import face_pixels

    if opts.eval_data is not None:
        images, _ = load_labelled(opts.eval_data, size=CHECK_FACES, classes=len(info.classes))
        return face_pixels(images, info)
    if opts.calib is not None:
        return face_pixels(load_faces(opts.calib, size=CHECK_FACES, seed=1), info)
    return None


def _export_fp32(opts: ExportOptions, stage: Path, report: dict[str, Any]) -> tuple[Path, Any, np.ndarray,
                                                                                     Optional[np.ndarray]]:
    from . import check
    from .onnx_export import export_onnx, flip_average, load_checkpoint, simplify

    name = opts.model_name
    raw = stage / f"{name}.raw.onnx"
    info = export_onnx(opts.source, raw, uint8_input=opts.uint8_input, opset=opts.opset, flip=opts.flip)
    fp32 = stage / f"{name}.fp32.onnx"
    if opts.simplify:
        simplify(raw, fp32)
    else:
        log.warning("--no-simplify: writing the unsimplified graph")
        os.replace(raw, fp32)
    random = check.random_pixels(info)
    faces = _check_faces(opts, info)
    model, _, _ = load_checkpoint(opts.source)
    if opts.flip:
        model = flip_average(model, info.preprocessing.input_size)
    checks = report["checks"]
    ref = check.onnx_runner(raw if opts.simplify else fp32)
    checks.append(check.check_step("pytorch->onnx", check.torch_runner(model, info), ref, "fp32", random, faces))
    if opts.simplify:
        checks.append(check.check_step("onnx->simplified", ref, check.onnx_runner(fp32), "fp32", random, faces))
        raw.unlink()
    report["files"]["fp32"] = _file_entry(fp32, info)
    return fp32, info, random, faces


def _check_calib_factors(factors: Sequence[int], input_size: int) -> None:
    """Refuse a ``--calib-factors`` factor larger than the model's input size: its calibration crops would be
    less than one pixel wide (they are made one pixel, a face no app passes).

    Raises:
        ConfigError: naming the factors and the input size.
    """
    too_large = sorted({int(f) for f in factors if f > input_size})
    if too_large:
        raise ConfigError(f"--calib-factors {','.join(str(f) for f in factors)}: factor(s) "
                          f"{', '.join(str(f) for f in too_large)} exceed the model's input size of {input_size} px, "
                          f"so their calibration crops would be under one pixel; expected factors from 1 to "
                          f"{input_size}, e.g. 1,2,3,4,6,8")


def _make_variants(opts: ExportOptions, stage: Path, fp32: Path, info: Any, random: np.ndarray,
                   faces: Optional[np.ndarray], report: dict[str, Any]) -> dict[str, Path]:
    from . import check
    from .calib import calibration_inputs
    from .onnx_export import load_onnx
    from .quantize import TARGETS, convert_fp16, quantize_int8, resolve_quantize_film, resolve_quantize_generator

    if opts.int8:  # before any variant is made: the input size is known only now, from the exported model
        _check_calib_factors(opts.calib_factors, info.preprocessing.input_size)
    name, variants = opts.model_name, {"fp32": fp32}
    ref = check.onnx_runner(fp32)
    if opts.fp16:
        path = stage / f"{name}.fp16.onnx"
        vinfo = convert_fp16(fp32, path)
        report["checks"].append(check.check_step("fp32->fp16", ref, check.onnx_runner(path), "fp16", random, faces))
        report["files"]["fp16"] = _file_entry(path, vinfo)
        variants["fp16"] = path
    if opts.int8:
        if opts.calib is None:
            raise ConfigError("--int8 needs --calib PATH")
        t0 = time.perf_counter()
        graph = load_onnx(fp32)
        quantize_g = resolve_quantize_generator(graph, opts.int8_quantize_g)
        calib = calibration_inputs(opts.calib, opts.calib_size, opts.calib_factors, info)
        film: dict[str, str] = {}
        for scheme in TARGETS[opts.int8_target]:
            key = f"int8-{scheme}"
            path = stage / f"{name}.{key}.onnx"
            quantize_film = resolve_quantize_film(graph, scheme, opts.int8_quantize_film)
            film[scheme] = "int8" if quantize_film else "float"
            vinfo = quantize_int8(fp32, path, calib, scheme, opts.calib_method, quantize_generator=quantize_g,
                                  quantize_film=quantize_film)
            report["checks"].append(check.check_step(f"fp32->{key}", ref, check.onnx_runner(path), "int8", random, faces))
            report["files"][key] = _file_entry(path, vinfo)
            variants[key] = path
        report["calibration"] = {"source": str(opts.calib), "faces": len(calib), "method": opts.calib_method,
                                 "factors": list(opts.calib_factors),
                                 "generator": "int8" if quantize_g else "float", "film_maps": film,
                                 "seconds": round(time.perf_counter() - t0, 1)}
    return variants


def _accuracy(opts: ExportOptions, info: Any, variants: dict[str, Path], report: dict[str, Any]) -> None:
    from . import check

    int8_names = [k for k in variants if k.startswith("int8")]
    if opts.eval_data is None:
        if int8_names:
            log.warning("no --eval-data: the INT8 accuracy change was not measured or gated")
        return
    images, labels, label_set = _eval_faces(opts.eval_data, opts, len(info.classes))
    runners = {k: check.onnx_runner(p) for k, p in variants.items()}
    table = check.accuracy_table(runners, images, labels, info, opts.factors)
    report["accuracy"] = {"eval_data": str(opts.eval_data), "labels": label_set, "faces": len(labels), "percent": table}
    report["accuracy"]["gate"] = check.accuracy_gate(table, "fp32", int8_names, opts.max_int8_drop, opts.force)
    _score_calibration(opts, info, runners["fp32"], images, labels, label_set, variants["fp32"].parent, report)


def _score_calibration(opts: ExportOptions, info: Any, fp32: Any, images: np.ndarray, labels: np.ndarray,
                       label_set: str, stage: Path, report: dict[str, Any]) -> None:
    """``NAME.scores.json`` in ``stage``: the FP32 file's confidence maps (:mod:`fsrfer_edge.confidence`, logistic per
    factor), fitted on the --eval-data faces given as small crops at each factor through the SDK's preprocessing,
    keyed as the SDK reads a crop (input side over crop side), where ``Recognizer(confidence="auto")`` finds it for
    every file of the export. Not made from faces of another size than the model's input, nor from a single class."""
    from ..confidence import ScoreCalibration
    from ..preprocessing import shrink, spatial

    pre = info.preprocessing
    if images.shape[1:3] != (pre.input_size, pre.input_size) or len(np.unique(labels)) < 2:
        log.info("no score calibration: --eval-data faces are %dx%d, not %dx%d, or hold one class", *images.shape[1:3],
                 pre.input_size, pre.input_size)
        return
    logits, wanted, jpeg_logits, jpeg_labels = {}, {}, {}, {}
    for f in opts.factors:
        crops = spatial(images, lambda x: shrink(x, int(f)))
        factor = pre.input_size / crops.shape[1]
        logits[factor] = fp32(pre.to_pixels(list(crops)))
        wanted[factor] = labels
        if pre.channels == 1 and images.ndim == 3:  # JPEG snapshots of gray faces, as protocol (c) makes them
            marks: list[bool] = []
            z = fp32(pre.to_pixels(list(_jpeg_crops(images, crops.shape[1])), jpeg=marks))
            jpeg_logits[factor], jpeg_labels[factor] = z[np.asarray(marks, bool)], labels[np.asarray(marks, bool)]
    cal = ScoreCalibration.fit(logits, wanted, info.classes, checkpoint_sha256=info.checkpoint_sha256, source=(
        f"fsrfer-export --eval-data {opts.eval_data}: {len(labels)} val faces ({label_set} labels) as small crops at "
        f"factors {','.join(str(f) for f in opts.factors)}; jpeg_params from the same faces area-shrunk and saved as "
        f"JPEG quality {JPEG_QUALITY}, those the SDK marks"))
    if jpeg_logits:
        cal = cal.with_jpeg(jpeg_logits, jpeg_labels)
    cal = dataclasses.replace(cal, size_weights=_size_weights(images, opts.factors, pre))
    name = f"{opts.model_name}{SCORES_SUFFIX}"
    cal.save(stage / name)
    jpeg = None if cal.jpeg_params is None else [list(q) for q in cal.jpeg_params]
    report["score_calibration"] = {"file": name, "factors": list(cal.factors), "params": [list(q) for q in cal.params],
                                   "jpeg_params": jpeg, "size_weights": list(cal.size_weights or ())}


def _size_weights(images: np.ndarray, factors: Sequence[int], pre: Any) -> tuple[float, ...]:
    """The confidence's size estimate (``ScoreCalibration.size_weights``): fitted on the --eval-data faces shrunk by
    each factor and enlarged back by bicubic, as an app that resizes its own crops gives them, through the SDK's
    preprocessing (docs/experiments.md, "Crops an app enlarged itself"). Each is read as the factor the maps key its
    source by (input side over its side: 40 px faces shrunk by 6 are 7 px, x5.71), the scale the estimate is used on."""
    from ..confidence import fit_size_estimator
    from ..preprocessing import degrade, spatial

    pixels, truth = [], []
    for f in factors:
        crops = np.clip(np.rint(spatial(images, lambda x: degrade(x, int(f)))), 0, 255).astype(np.uint8)
        pixels.append(pre.to_pixels(list(crops)))
        truth.append(np.full(len(crops), pre.input_size / max(1, round(pre.input_size / int(f)))))
    return fit_size_estimator(np.concatenate(pixels), np.concatenate(truth))


def _eval_faces(path: Path, opts: ExportOptions, classes: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Labelled ``val`` faces of --eval-data and their label set, read as fsrfer-eval reads them: a FER2013
    archive gets FER+ labels when ferplus_labels.npz lies beside it (or as --labels says); a plain archive's
    labels must be among the model's ``classes``."""
    from ..ferplus import load_labelled_faces
    from .calib import DEFAULT_SEED, _sample, is_fer2013_archive, load_labelled

    if not is_fer2013_archive(path):  # a plain archive: its own labels
        images, labels = load_labelled(path, size=opts.eval_size, classes=classes)
        return images, labels, "npz"
    faces = load_labelled_faces(path, opts.labels, split="val")
    rows = _sample(len(faces.labels), opts.eval_size, DEFAULT_SEED)
    return faces.images[rows], faces.labels[rows], faces.label_set


#: The JPEG quality of the snapshots the JPEG maps are fitted on (protocol (c)'s).
JPEG_QUALITY = 50


def _jpeg_crops(images: np.ndarray, side: int) -> np.ndarray:
    """Gray faces (N, S, S) shrunk by area averaging to ``side`` pixels and round-tripped through JPEG at
    :data:`JPEG_QUALITY` (Pillow), as protocol (c) makes a camera-like crop: (N, side, side) uint8."""
    import io

    from PIL import Image

    from ..preprocessing import resize

    small = (images.astype(np.float32) if side == images.shape[-1]
             else resize(images, (side, side), "box", antialias=True))
    out = np.empty(small.shape, np.uint8)
    for i, img in enumerate(np.clip(np.rint(small), 0, 255).astype(np.uint8)):
        buf = io.BytesIO()
        Image.fromarray(img, mode="L").save(buf, "JPEG", quality=JPEG_QUALITY)
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("L"))
    return out


def _commit(stage: Path, out_dir: Path, report: dict[str, Any], name: str) -> Path:
    """Move staged files into ``out_dir``, the report last: all or nothing. The report is written in the
    staging folder first, so a full disk fails before any file reaches ``out_dir``; a folder in the way of any
    file is refused before the first move, and a move that fails all the same is undone (:func:`_move_all`)."""
    made = {entry["file"] for entry in report["files"].values()}
    if "score_calibration" in report:
        made.add(report["score_calibration"]["file"])
    # this model's own variants (not another model's NAME.v2.fp32.onnx)
    ours = [out_dir / f"{name}{suffix}.onnx" for suffix in engine_cache.VARIANT_SUFFIXES]
    stale = sorted(p.name for p in [*ours, out_dir / f"{name}{SCORES_SUFFIX}"] if p.is_file() and p.name not in made)
    if stale:
        log.warning("%s also holds %s from an earlier export; they do not belong to this one (delete them)",
                    out_dir, ", ".join(stale))
        report["stale_files"] = stale
    staged = write_report(stage / f"{name}.report.json", report)
    names = [str(entry["file"]) for entry in report["files"].values()] + (
        [report["score_calibration"]["file"]] if "score_calibration" in report else []) + [staged.name]
    folders = [n for n in names if (out_dir / n).is_dir()]
    if folders:
        raise ConfigError(f"--out-dir {out_dir} holds the folder(s) {', '.join(folders)} where this export writes "
                          "files; expected files (replaced) or nothing of those names: move the folder(s) away, or "
                          "pick another --out-dir or --name")
    _move_all(stage, out_dir, names)
    return out_dir / staged.name


def _move_all(src: Path, dst: Path, names: Sequence[str]) -> None:
    """Move ``src/NAME`` over ``dst/NAME`` for each of ``names`` in turn (each rename atomic), all or nothing:
    what a move replaces is kept in ``src/.replaced`` (a hard link, else a copy) until every move is done, and
    should one fail, the files moved so far are taken out again and the replaced ones put back (each in turn: one
    that cannot be is logged, and the others are still put back).

    Raises:
        WriteError: a move (or the copy of what it replaces) failed, naming the file of ``dst`` it was for.
    """
    kept = src / ".replaced"
    kept.mkdir()
    begun: list[str] = []
    try:
        for name in names:
            begun.append(name)
            if os.path.lexists(dst / name):
                try:
                    os.link(dst / name, kept / name, follow_symlinks=False)
                except (OSError, NotImplementedError):  # no hard links here (FAT, some network file systems)
                    try:
                        shutil.copy2(dst / name, kept / name, follow_symlinks=False)
                    except BaseException:  # a half copy must not be "put back" over the intact file
                        if os.path.lexists(kept / name):
                            os.unlink(kept / name)
                        raise
            os.replace(src / name, dst / name)
    except BaseException as exc:
        for name in reversed(begun):
            try:
                if os.path.lexists(kept / name):
                    os.replace(kept / name, dst / name)
                elif not os.path.lexists(src / name):  # moved in where nothing was
                    os.unlink(dst / name)
            except OSError as again:  # the disk that failed the move fails this too: put back what can be
                log.error("could not put back the earlier %s (%s); it holds this export's file", dst / name,
                          again.strerror or again)
        cause = os_error_of(exc) if isinstance(exc, Exception) else None
        if cause is not None and begun:
            raise WriteError(dst / begun[-1], cause) from exc
        raise


def write_report(path: Path, report: dict[str, Any]) -> Path:
    """Write the JSON report atomically."""
    return write_json(path, report, default=str)


def export_checkpoint(opts: ExportOptions) -> dict[str, Any]:
    """Export, check and write every requested ONNX variant of a checkpoint; all or nothing.

    Returns:
        The report (also written as ``NAME.report.json`` in ``opts.out_dir``).

    Raises:
        FsrferError: any stage failed or a check/gate refused; nothing is left in ``out_dir``.
    """
    opts = _with_data_files(opts)
    out_dir = opts.out_dir
    report: dict[str, Any] = {"name": opts.model_name, "source": str(opts.source), "files": {}, "checks": [],
                              "options": {k: (str(v) if isinstance(v, Path) else v)
                                          for k, v in dataclasses.asdict(opts).items()}}
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    stage: Optional[Path] = None
    try:
        for error in engine_cache.remove_dead_staging(out_dir)[1]:  # those SIGKILL left; each removed one is logged
            log.warning("could not remove the staging folder of an export that was killed: %s", error)
        stage = engine_cache.make_staging_folder(out_dir, opts.model_name)  # names this process as its owner
        fp32, info, random, faces = _export_fp32(opts, stage, report)
        variants = _make_variants(opts, stage, fp32, info, random, faces, report)
        _accuracy(opts, info, variants, report)
        _check_tensorrt_files(stage, report)
        report["report"] = str(_commit(stage, out_dir, report, opts.model_name))
    except BaseException:
        try:
            if created and not any(p for p in out_dir.iterdir() if p != stage):
                shutil.rmtree(out_dir, ignore_errors=True)
        except OSError:  # the disk that failed the export: its own error is the one to report
            pass
        raise
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
    return report


def _check_tensorrt_files(stage: Path, report: dict[str, Any]) -> None:
    """Run the TensorRT compatibility check on every file made for TensorRT (FP32, FP16, s8s8);
    a failing one stops the export before anything is written (see :mod:`.trt_check`)."""
    from .trt_check import require_trt_compatible

    for key in ENGINE_PREFERENCE:
        if key in report["files"]:
            checked = require_trt_compatible(stage / str(report["files"][key]["file"]))
            report.setdefault("tensorrt_check", {})[key] = {
                "tables": checked.tables, "int8_layers": len(checked.int8_layers),
                "float_layers": len(checked.float_layers)}


# --check-trt's error line names at most this many problems (a graph with the same fault at every node has hundreds).
MAX_ERRORS_SHOWN = 10


def check_trt_main(path: Path) -> int:
    """``fsrfer-export --check-trt FILE``: print the report; 0 when the file passes, else 2."""
    from .engine import refuse_non_tensorrt_int8
    from .onnx_export import load_onnx, read_model_info
    from .trt_check import check_file

    try:
        model = load_onnx(path)
    except ModelError as exc:  # it says what FILE is; say what --check-trt takes
        raise ModelError(f"{one_line(exc)}; expected an .onnx model file, e.g. one fsrfer-export wrote "
                         "(engines/NAME.int8-s8s8.onnx)") from exc
    try:
        info = read_model_info(model)
        int8, declared = info.precision == "int8", info.int8_scheme
    except ModelError:  # an ONNX file from elsewhere: its graph alone says whether it is INT8
        int8, declared = False, None
    refuse_non_tensorrt_int8(path, model, int8, declared)  # one line, not one error per quantized node
    report = check_file(path)
    if not report.ok:
        shown = list(dict.fromkeys(report.errors))  # the same problem in several TensorRT versions: once
        more = f"; and {len(shown) - MAX_ERRORS_SHOWN} more" if len(shown) > MAX_ERRORS_SHOWN else ""
        raise ModelError(f"{report.file} would not build in TensorRT: " + "; ".join(shown[:MAX_ERRORS_SHOWN]) + more)
    print(report.summary())
    return 0


def _engine_source(opts: ExportOptions, report: Optional[dict[str, Any]]) -> Path:
    if report is None:
        return opts.source
    for key in ENGINE_PREFERENCE:
        if key in report["files"]:
            return opts.out_dir / str(report["files"][key]["file"])
    raise ConfigError("no TensorRT-ready ONNX file was produced")  # pragma: no cover


def run(opts: ExportOptions, given: Optional[AbstractSet[str]] = None) -> dict[str, Any]:
    """The whole ``fsrfer-export`` run: variants from a checkpoint and/or an engine.

    Args:
        given: the options the command line named (:func:`given_options`): an engine, batch or Triton option named
            without the output it shapes is refused even at its default value. None: refused where not at its default.

    Raises:
        FsrferError: see :func:`export_checkpoint` and :func:`fsrfer_edge.export.engine.build_engine`.
    """
    opts = _with_data_files(opts)
    _validate(opts, given)
    if opts.engine and opts.triton_repo is None and opts.source.suffix != ".onnx":
        # Before the export, not after it: without TensorRT the run would write ONNX files and then fail.
        # (With --triton-repo the ONNX-only repository is still written, as documented.)
        from .engine import import_tensorrt
        from .quantize import TARGETS

        writes = {"fp32", "fp16" if opts.fp16 else "fp32",
                  "int8-s8s8" if opts.int8 and "s8s8" in TARGETS[opts.int8_target] else "fp32"}
        variant = next(k for k in ENGINE_PREFERENCE if k in writes)  # what _engine_source will build from
        onnx = opts.out_dir / f"{opts.name or opts.source.stem}.{variant}.onnx"
        try:
            import_tensorrt(onnx)
        except BackendUnavailable as exc:  # the file the message says to copy is not made yet: say how to make it
            raise BackendUnavailable(f"{exc}. Nothing was written: leave out --engine to write {onnx} (and the "
                                     "other ONNX files) here first") from exc
    report = None if opts.source.suffix == ".onnx" else export_checkpoint(opts)
    if opts.engine:
        from .engine import build_engine

        src = _engine_source(opts, report)
        try:
            engine = build_engine(src, opts.out_dir, opts.min_batch, opts.opt_batch, opts.max_batch,
                                  opts.workspace_mb, opts.timing_cache)
        except BackendUnavailable as exc:
            if opts.triton_repo is None:
                raise
            # No TensorRT here (a CPU machine): the portable part of the repository is still written.
            _write_triton_repo(opts, opts.triton_repo, report or {})
            raise BackendUnavailable(f"wrote the Triton model repository {opts.triton_repo} with the ONNX model "
                                     f"only; the engine was not built: {exc}") from exc
        if report is not None:
            report["engine"] = {"file": engine.name, "from": src.name}
            write_report(Path(report["report"]), report)
        else:
            report = {"engine": {"file": engine.name, "from": src.name}}
    if opts.triton_repo is not None:
        report = _write_triton_repo(opts, opts.triton_repo, report or {})
    if opts.deepstream is not None:
        report = _write_deepstream(opts, opts.deepstream, report or {})
    return report or {}


def _deepstream_batch(opts: ExportOptions) -> int:
    from .deepstream import BATCH_SIZE

    return BATCH_SIZE if opts.deepstream_batch is None else opts.deepstream_batch


def _write_deepstream(opts: ExportOptions, folder: Path, report: dict[str, Any]) -> dict[str, Any]:
    """DeepStream nvinfer classifier folder from this run's FP32 ONNX file (or the .onnx given)."""
    from .deepstream import write_deepstream

    onnx_path = opts.out_dir / str(report["files"]["fp32"]["file"]) if "files" in report else opts.source
    config = write_deepstream(folder, onnx_path, opts.name or "fsrfer", batch_size=_deepstream_batch(opts),
                              engine=opts.deepstream_engine,  # the build options only for its engine's build
                              workspace_mb=opts.workspace_mb if opts.deepstream_engine else None,
                              timing_cache=opts.timing_cache if opts.deepstream_engine else None)
    report["deepstream"] = str(config)
    if "report" in report:
        write_report(Path(report["report"]), report)
    return report


def _write_triton_repo(opts: ExportOptions, repo: Path, report: dict[str, Any]) -> dict[str, Any]:
    """Triton model repository from this run's FP32 ONNX file and, where built, its engine."""
    from ..serving.triton_repo import write_triton_repo

    onnx_path = opts.out_dir / str(report["files"]["fp32"]["file"]) if "files" in report else opts.source
    engine_path = opts.out_dir / str(report["engine"]["file"]) if "engine" in report else None
    earlier_trt = repo / f"{opts.name or 'fsrfer'}_trt"
    if engine_path is None and earlier_trt.is_dir():  # served beside this run's model: it may be of another one
        log.warning("%s was left as it is: an engine an earlier export wrote, which Triton serves beside this run's "
                    "ONNX model; if it is not of this model, remove it or run this export with --engine on the GPU",
                    earlier_trt)
    write_triton_repo(repo, onnx_path=onnx_path, engine_path=engine_path, model_name=opts.name or "fsrfer",
                      instances=opts.triton_instances, kind=opts.triton_kind,
                      max_queue_delay_us=opts.triton_max_queue_delay_us, overwrite=True,
                      threads=opts.triton_threads)
    report["triton_repo"] = str(repo)
    if "report" in report:
        write_report(Path(report["report"]), report)
    return report


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(
        prog="fsrfer-export",
        description="Export an fsrfer checkpoint to checked ONNX files (FP32, FP16, INT8 Q/DQ) and build "
                    "TensorRT engines. Writes NAME.fp32.onnx, NAME.fp16.onnx, NAME.int8-s8s8.onnx (TensorRT), "
                    "NAME.int8-u8s8.onnx (ONNX Runtime CPU) and NAME.report.json.")
    p.add_argument("source", type=cli_path, metavar="CHECKPOINT_OR_ONNX", nargs="?",
                   help="a model checkpoint (export) or an fsrfer .onnx file (with --engine)")
    p.add_argument("--check-trt", type=cli_path, metavar="FILE",
                   help="only check that FILE (.onnx) will build in TensorRT 8.5 and 10.x, without a GPU: operators, "
                        "types, opset, Q/DQ rules; prints which layers run in INT8 (exit 2 if it fails)"),
    p.add_argument("--out-dir", type=cli_path, default=Path("engines"), help="output folder (default: engines/)")
    p.add_argument("--name", default="", help="output name stem (default: the source file's name)")
    p.add_argument("--uint8-input", action="store_true",
                   help="graph takes raw uint8 NCHW pixels and normalises inside")
    p.add_argument("--flip", action="store_true",
                   help="fold a test-time left-right flip into the graph: each face and its mirror image, "
                        "softmaxes averaged; about 2x the compute per face (results/ferplus/flip_tta_val.json "
                        "says what it buys)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-simplify", dest="simplify", action="store_false",
                   help="skip onnxsim deliberately (otherwise an onnxsim failure is an error)")
    p.add_argument("--fp16", action="store_true", help="also write NAME.fp16.onnx")
    q = p.add_argument_group("INT8")
    q.add_argument("--int8", action="store_true", help="also write INT8 Q/DQ file(s); needs --calib")
    q.add_argument("--calib", type=cli_path, metavar="PATH",
                   help="calibration faces: .npz with images (N,H,W) uint8 [+ split: 'train' rows used] or a folder of images")
    q.add_argument("--calib-size", type=int, default=256, metavar="N", help="faces sampled with a fixed seed (default 256)")
    q.add_argument("--calib-method", default="percentile", choices=("percentile", "minmax", "entropy"),
                   help="activation ranges: percentile (99.999%%, default), minmax, or entropy (KL, 2048 bins)")
    q.add_argument("--calib-factors", type=_factor_list, default=FACTORS, metavar="F,F,...",
                   help="calibrate on small crops at these down-sample factors, in turn, as the model will see them "
                        "(default: 1,2,3,4,6,8; 1 for 48 px faces only)")
    q.add_argument("--int8-target", default="both", choices=("tensorrt", "cpu", "both"),
                   help="tensorrt: s8s8 file; cpu: u8s8 file; both (default)")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--int8-quantize-g", dest="int8_quantize_g", action="store_const", const=True, default=None,
                   help="also quantize G: faster, less accurate on the smallest faces (results/ferplus/"
                        "int8_generator.json). Default: only when G starts early (it then holds most of the compute)")
    g.add_argument("--int8-float-g", dest="int8_quantize_g", action="store_const", const=False,
                   help="keep G in float even when it starts early")
    f = q.add_mutually_exclusive_group()
    f.add_argument("--int8-quantize-film", dest="int8_quantize_film", action="store_const", const=True, default=None,
                   help="quantize a scale-aware G's FiLM scale and shift of the feature maps in the u8s8 (cpu) file")
    f.add_argument("--int8-float-film", dest="int8_quantize_film", action="store_const", const=False,
                   help="keep FiLM in float in the u8s8 file. The s8s8 (TensorRT) file always keeps it in float")
    a = p.add_argument_group("accuracy gate")
    a.add_argument("--eval-data", type=cli_path, metavar="NPZ",
                   help=".npz with images, labels [+ split: 'val' rows used]: report FP16/INT8 accuracy vs FP32, "
                        "and write NAME.scores.json, the confidence maps fitted on those faces")
    a.add_argument("--labels", choices=("ferplus", "fer2013"), default=None,
                   help="labels of a FER2013 --eval-data archive: ferplus (joined from ferplus_labels.npz beside it) "
                        "or fer2013 (original); default: ferplus when that file is there, as fsrfer-eval")
    a.add_argument("--eval-size", type=int, default=0, metavar="N", help="evaluate on N sampled faces (default all)")
    a.add_argument("--max-int8-drop", type=float, default=1.0, metavar="POINTS",
                   help="refuse INT8 files whose mean accuracy drops more than this (default 1.0)")
    a.add_argument("--force", action="store_true", help="write INT8 files even if they fail the accuracy gate")
    e = p.add_argument_group("TensorRT engine")
    e.add_argument("--engine", action="store_true",
                   help="build a TensorRT engine (from the .onnx given, or the lowest-precision TensorRT file made)")
    e.add_argument("--min-batch", type=int, default=1, metavar="N",
                   help="smallest batch of the engine's optimisation profile (default 1; min <= opt <= max)")
    e.add_argument("--opt-batch", type=int, default=32, metavar="N", help="the batch TensorRT tunes for (default 32)")
    e.add_argument("--max-batch", type=int, default=128, metavar="N", help="largest batch the engine runs (default 128)")
    e.add_argument("--workspace-mb", type=int, default=1024, metavar="MB", help="builder workspace limit (default 1024)")
    e.add_argument("--timing-cache", type=cli_path, metavar="PATH", help="TensorRT timing cache to load and update")
    t = p.add_argument_group("Triton model repository")
    t.add_argument("--triton-repo", type=cli_path, metavar="DIR",
                   help="also write a Triton model repository: DIR/<name>_onnx (FP32 ONNX) and, with --engine, "
                        "DIR/<name>_trt (the engine), replacing models of those names; <name> is --name or 'fsrfer'")
    t.add_argument("--triton-kind", default="KIND_AUTO", choices=("KIND_GPU", "KIND_CPU", "KIND_AUTO"),
                   help="instance kind of the ONNX model (default KIND_AUTO: a GPU where there is one, else the "
                        "CPU; the engine is always KIND_GPU)")
    t.add_argument("--triton-instances", type=int, default=1, metavar="N", help="model instances per device (default 1)")
    t.add_argument("--triton-max-queue-delay-us", type=int, default=2000, metavar="US",
                   help="dynamic batcher's maximum queue delay (default 2000)")
    t.add_argument("--triton-threads", type=int, metavar="N",
                   help="ONNX Runtime threads of each ONNX model instance (intra_op_thread_count; default: the "
                        "backend's, all cores). On a CPU, instances x threads <= cores")
    d = p.add_argument_group("DeepStream")
    d.add_argument("--deepstream", type=cli_path, metavar="DIR",
                   help="also write a Gst-nvinfer secondary classifier: DIR/<name>.onnx (the FP32 graph with a "
                        "softmax, FP16 engine; also with --int8), DIR/<name>_labels.txt and "
                        "DIR/config_infer_<name>.txt; <name> is --name or 'fsrfer'. For INT8 give the exported "
                        "NAME.int8-s8s8.onnx instead (docs/deepstream.md)")
    d.add_argument("--deepstream-batch", type=int, default=None, metavar="N",
                   help="faces per engine run, nvinfer's batch-size (default 64)")
    d.add_argument("--deepstream-engine", action="store_true",
                   help="also build, here on the device, the engine the config names (an s8s8 INT8 file only: "
                        "INT8 and FP16, where nvinfer's own build is INT8 alone; uses --workspace-mb and "
                        "--timing-cache)")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return p


def given_options(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> frozenset[str]:
    """The destinations of the options ``argv`` names, whatever their values (``--min-batch 1`` too, its default):
    ``argv`` parsed again with no option defaults, so that only what it names is set (an optional positional is
    named where it is not None). The parser's own defaults stay those of --help and of :class:`ExportOptions`."""
    bare = copy.deepcopy(parser)
    for action in bare._actions:
        if action.option_strings:  # a positional's default would go through its type (Path("==SUPPRESS=="))
            action.default = argparse.SUPPRESS
    return frozenset(k for k, v in vars(bare.parse_args(argv)).items() if v is not None)



def _factor_list(text: str) -> tuple[int, ...]:
    from ..bench import parse_int_list

    return tuple(parse_int_list(text))


def _summary(report: dict[str, Any]) -> str:
    lines = []
    for c in report.get("checks", []):
        parts = [f"{k}: max|diff| {c[k]['max_abs_diff']:.2e}, top-1 {c[k]['top1_agreement']:.3f}"
                 for k in ("random", "faces") if k in c]
        lines.append(f"check {c['stage']:<22} ok  ({'; '.join(parts)})")
    acc = report.get("accuracy")
    if acc:
        for name, row in acc["percent"].items():
            lines.append(f"accuracy {name:<10} " + " ".join(f"{k} {v:.2f}" for k, v in row.items())
                         + f" ({acc.get('labels', '?')} labels)")
    for key, c in report.get("tensorrt_check", {}).items():
        lines.append(f"tensorrt check {key:<13} ok  ({c['int8_layers']} weighted layers in INT8, "
                     f"{c['float_layers']} in float; {', '.join(c['tables'])})")
    folder = Path(report["report"]).parent if "report" in report else Path()
    for entry in report.get("files", {}).values():
        lines.append(f"wrote {folder / entry['file']} ({entry['bytes'] / 1e6:.2f} MB)")
    if "score_calibration" in report:
        lines.append(f"wrote {folder / report['score_calibration']['file']}")
    if "report" in report:
        lines.append(f"wrote {report['report']}")
    if "engine" in report:
        lines.append(f"engine {report['engine']['file']} (from {report['engine']['from']})")
    if "triton_repo" in report:
        lines.append(f"Triton model repository {report['triton_repo']}")
    if "deepstream" in report:
        lines.append(f"DeepStream classifier {report['deepstream']}")
    return "\n".join(lines)


@cli_main
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("fsrfer_edge").setLevel(logging.WARNING if args.quiet else logging.INFO)
    check_trt = vars(args).pop("check_trt")
    if check_trt is None and args.source is None:
        print("fsrfer-export: error: give a CHECKPOINT_OR_ONNX to export, or --check-trt FILE", file=sys.stderr)
        return 2
    given = given_options(parser, argv)  # named on the command line, even at their default values
    if check_trt is not None and given - {"quiet", "check_trt"}:
        named = " ".join("CHECKPOINT_OR_ONNX" if k == "source" else "--" + k.replace("_", "-")
                         for k in vars(args) if k in given and k != "quiet")
        print(f"fsrfer-export: error: --check-trt FILE only checks FILE; expected no {named} with it (an export "
              "checks every file it makes for TensorRT the same way: run it without --check-trt)", file=sys.stderr)
        return 2
    try:
        with sigterm_interrupts():
            if check_trt is not None:
                return check_trt_main(check_trt)
            report = run(ExportOptions(**{k: v for k, v in vars(args).items() if k != "quiet"}),
                         given=given)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the run has removed its staged files
        print("fsrfer-export: interrupted", file=sys.stderr)
        return 130
    except FsrferError as exc:
        print("fsrfer-export: error: " + one_line(exc), file=sys.stderr)
        return 2
    except READER_GONE:  # stdout's reader went (--check-trt's report | head -0): cli_main ends quietly
        raise
    except OSError as exc:  # the disk, not the model: a full disk, a read-only folder
        print(f"fsrfer-export: error: a file could not be read or written ({exc}); free space or pick another --out-dir",
              file=sys.stderr)
        return 2
    print(_summary(report))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
