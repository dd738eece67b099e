"""Every folder ``write_deepstream`` writes, through nvinfer's config handling of DeepStream 6.2, 8.0 and 9.1.

tests/fake_nvinfer.py re-implements, from those versions' sources, what nvinfer does with our files: GLib's
key-file parsing, the [property] parser, the context's checks on the ONNX/labels, the engine file it
serialises and the minimum object size. Each check below is a function, and the mutation tests show that it
fails, with nvinfer's own message, on a config broken in the way it guards against.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx not installed (pip install -e '.[export]')")
pytest.importorskip("torch", reason="torch is needed to make the tiny test models")

import fake_nvinfer as nv  # noqa: E402
from _onnx_models import edit_metadata, make_tiny_onnx  # noqa: E402

from fsrfer_edge.export.deepstream import write_deepstream  # noqa: E402
from fsrfer_edge.preprocessing import CLASSES, Preprocessing  # noqa: E402

VERSIONS = nv.VERSIONS
#: Every kind of folder the exporter writes: FP32 or s8s8 INT8 source, default and extreme batch sizes, names.
VARIANTS = {
    "fp32-default": {"source": "fp32", "name": "fsrfer", "kw": {}},
    "fp32-b16-gie3": {"source": "fp32", "name": "expr", "kw": {"batch_size": 16, "gie_id": 3, "operate_on_gie_id": 1}},
    "fp32-b1-dotted": {"source": "fp32", "name": "faces.v2_x-1",
                       "kw": {"batch_size": 1, "gie_id": 7, "operate_on_gie_id": 4}},
    "fp32-b1024": {"source": "fp32", "name": "big", "kw": {"batch_size": 1024, "gie_id": 1024, "operate_on_gie_id": 0}},
    "s8s8-default": {"source": "s8s8", "name": "fsrfer", "kw": {}},
    "s8s8-b32": {"source": "s8s8", "name": "q8", "kw": {"batch_size": 32, "gie_id": 5, "operate_on_gie_id": 2}},
}
FP32 = [k for k, v in VARIANTS.items() if v["source"] == "fp32"]
S8S8 = [k for k, v in VARIANTS.items() if v["source"] == "s8s8"]


def _defaults(variant: str) -> dict:
    kw = {"batch_size": 64, "gie_id": 2, "operate_on_gie_id": 1}
    kw.update(VARIANTS[variant]["kw"])
    return kw


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")

    def s8s8(doc: dict) -> dict:
        doc.update(precision="int8", int8_scheme="s8s8")
        return doc

    return {"fp32": make_tiny_onnx(d / "tiny.onnx"),
            "s8s8": edit_metadata(make_tiny_onnx(d / "tiny.int8-s8s8.onnx"), s8s8)}


@pytest.fixture(scope="module")
def folders(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """variant -> the config file write_deepstream wrote (one folder each, never modified)."""
    out = {}
    for variant, spec in VARIANTS.items():
        folder = tmp_path_factory.mktemp(f"ds-{variant}")
        out[variant] = write_deepstream(folder, models[spec["source"]], spec["name"], **spec["kw"])
    return out


def _copy(config: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(config.parent, dest)
    return dest / config.name


def _set(config: Path, key: str, value: str | None) -> Path:
    """Replace the ``key=`` line (or append it; ``None`` removes it)."""
    lines = config.read_text().splitlines()
    found = [i for i, line in enumerate(lines) if line.split("=", 1)[0] == key]
    if value is None:
        lines = [line for i, line in enumerate(lines) if i not in found]
    elif found:
        lines[found[0]] = f"{key}={value}"
    else:
        lines.append(f"{key}={value}")
    config.write_text("\n".join(lines) + "\n")
    return config


def _written_keys(config: Path) -> list[str]:
    lines = config.read_text().splitlines()
    start = lines.index("[property]")
    return [line.split("=", 1)[0] for line in lines[start + 1:] if line and not line.startswith("#")]


# ---------------------------------------------------------------------------------------------------------------
# The checks (each is shown to fail below)
# ---------------------------------------------------------------------------------------------------------------
def assert_parses_cleanly(r: nv.ParseResult) -> None:
    """nvinfer accepts the file and prints nothing: no error, no unknown-key warning, no info line."""
    assert r.ok, r.stderr
    assert r.stderr == [] and r.stdout == [], r.stderr + r.stdout
    assert r.unknown_keys == []


def assert_values_land(r: nv.ParseResult, config: Path, variant: str) -> None:
    """Every value written reaches nvinfer's init params / element fields as intended."""
    kw, spec = _defaults(variant), VARIANTS[variant]
    ip, el = r.init, r.element
    folder = os.path.realpath(config.parent)
    name = spec["name"]
    int8 = spec["source"] == "s8s8"
    assert ip.networkType == 1 and not el.process_full_frame  # classifier, secondary (operates on objects)
    assert ip.networkMode == (1 if int8 else 2)  # INT8 / FP16
    assert (ip.uniqueID, el.unique_id, el.operate_on_gie_id) == (kw["gie_id"], kw["gie_id"], kw["operate_on_gie_id"])
    assert (ip.maxBatchSize, el.max_batch_size, ip.gpuID) == (kw["batch_size"], kw["batch_size"], 0)
    assert ip.inferInputDims == (1, 48, 48) and ip.networkInputFormat == "GRAY"
    assert (el.compute_mode, el.transform_filter) == (1, 2)  # GPU, Algo1 = bicubic on the GPU
    assert not el.maintain_aspect_ratio and not el.symmetric_padding
    assert (el.min_input_object_width, el.min_input_object_height) == (6, 6)
    assert el.secondary_reinfer_interval == 0 and not el.classifier_async_mode
    assert el.output_tensor_meta  # each face's probabilities, for ExpressionSmoother (docs/deepstream.md)
    assert ip.classifierThreshold == 0.0 and el.classifier_type == "expression"
    assert ip.outputLayerNames == ["probs"]
    assert el.operate_on_class_ids == []  # all of the detector's classes
    assert ip.onnxFilePath == f"{folder}/{name}.onnx"
    assert ip.labelsFilePath == f"{folder}/{name}_labels.txt"
    mode = "int8" if int8 else "fp16"
    assert ip.modelEngineFilePath == f"{folder}/{name}.onnx_b{kw['batch_size']}_gpu0_{mode}.engine"
    assert ip.int8CalibrationFilePath == (f"{folder}/{name}_int8_calib.txt" if int8 else "")


def assert_sdk_normalisation(r: nv.ParseResult) -> None:
    """nvinfer's y = scale * (x - offset), with its float32 fields, is the SDK's normalisation of every grey level."""
    pre = Preprocessing()
    assert len(r.init.offsets) == 1 and r.init.networkScaleFactor > 0
    x = np.arange(256, dtype=np.float32)
    y = np.float32(r.init.networkScaleFactor) * (x - np.float32(r.init.offsets[0]))
    np.testing.assert_allclose(y, pre.normalize(x), rtol=0, atol=2e-6)


def assert_context_inits(i: nv.InitResult) -> None:
    """NvDsInferContext accepts the ONNX and the labels: 1x48x48 GRAY, one output layer of 7 classes, one
    labels line of the 7 class names in output order."""
    assert i.ok, i.log
    assert i.network == (1, 48, 48)
    assert i.classes_per_output == [len(CLASSES)]
    assert i.labels == [list(CLASSES)]
    assert len(i.labels) == len(i.classes_per_output) and len(i.labels[0]) == i.classes_per_output[0]
    assert not [m for m in i.log if "Could not find output layer" in m]


def assert_engine_reused(r: nv.ParseResult, i: nv.InitResult) -> None:
    """The engine nvinfer serialises on the first run is the model-engine-file it loads on the next."""
    assert i.serialized and i.serialized == r.init.modelEngineFilePath, (i.serialized, r.init.modelEngineFilePath)


# ---------------------------------------------------------------------------------------------------------------
# Every config, every version
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("version", VERSIONS)
def test_every_config_parses_with_no_error_and_no_warning(version: str, variant: str,
                                                          folders: dict[str, Path]) -> None:
    config = folders[variant]
    for platform in nv.PLATFORMS:
        assert_parses_cleanly(nv.parse_config_file(config, version, platform))
    keys = _written_keys(config)
    assert len(keys) == len(set(keys)), "a key written twice: GKeyFile keeps the last, nvinfer parses both"
    assert set(keys) <= nv.config_keys(version)
    assert not [k for k in keys if k in nv.config_keys("9.1") - nv.config_keys("6.2")], "a key 6.2 does not know"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("version", VERSIONS)
def test_every_value_lands_in_nvinfers_params(version: str, variant: str, folders: dict[str, Path]) -> None:
    config = folders[variant]
    r = nv.parse_config_file(config, version, nv.DGPU)
    assert_values_land(r, config, variant)
    assert_sdk_normalisation(r)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("version", VERSIONS)
def test_context_takes_the_onnx_and_the_labels(version: str, variant: str, folders: dict[str, Path]) -> None:
    assert_context_inits(nv.init_context(nv.parse_config_file(folders[variant], version)))


@pytest.mark.parametrize("variant", FP32)
@pytest.mark.parametrize("version", VERSIONS)
def test_the_engine_nvinfer_builds_is_the_one_it_loads_next_time(version: str, variant: str,
                                                                 folders: dict[str, Path], tmp_path: Path) -> None:
    config = _copy(folders[variant], tmp_path)
    r = nv.parse_config_file(config, version)
    first = nv.init_context(r)
    assert first.built_mode == "fp16" and not first.deserialized
    assert_engine_reused(r, first)
    Path(first.serialized).write_bytes(b"plan")  # what serializeEngine wrote
    second = nv.init_context(nv.parse_config_file(config, version))
    assert second.deserialized == first.serialized and not second.serialized and second.ok


@pytest.mark.parametrize("variant", S8S8)
@pytest.mark.parametrize("version", VERSIONS)
def test_the_engine_nvinfer_builds_from_an_s8s8_folder_is_the_one_it_loads_next_time(
        version: str, variant: str, folders: dict[str, Path], tmp_path: Path) -> None:
    """nvinfer builds INT8 only with an accessible int8-calib-file (NvDsInferContextImpl::buildModel, CTX 6.2:1709
    8.0:2130 9.1:2209); the folder's note file is one, so it builds the _int8.engine the config names. Without the
    file it warns 'INT8 calibration file not specified. Trying FP16 mode.' (MB 6.2:1041 8.0:990 9.1:1050) and
    writes an _fp16.engine the config never loads: every start would rebuild."""
    config = _copy(folders[variant], tmp_path)
    r = nv.parse_config_file(config, version)
    first = nv.init_context(r)
    assert first.built_mode == "int8" and not first.deserialized
    assert "INT8 calibration file not specified" not in " ".join(first.log)
    assert_engine_reused(r, first)
    Path(r.init.int8CalibrationFilePath).unlink()
    fallback = nv.init_context(nv.parse_config_file(config, version))
    assert "WARNING: INT8 calibration file not specified. Trying FP16 mode." in fallback.log
    assert fallback.built_mode == "fp16" and fallback.serialized != r.init.modelEngineFilePath


@pytest.mark.parametrize("variant", S8S8)
@pytest.mark.parametrize("version", VERSIONS)
def test_s8s8_folders_get_their_engine_from_the_trtexec_line(version: str, variant: str, folders: dict[str, Path],
                                                              tmp_path: Path) -> None:
    """The config's trtexec line (INT8 and FP16, faster than nvinfer's INT8-only build), run in the folder, writes
    model-engine-file with nvinfer's own profile (min 1, opt = max = batch-size: createDynamicParams, MB 6.2:875
    8.0:765 9.1:799), which nvinfer then deserialises instead of building."""
    config = _copy(folders[variant], tmp_path)
    r = nv.parse_config_file(config, version)
    line = next(ln for ln in config.read_text().splitlines() if "trtexec" in ln)
    args = dict(re.findall(r"--(\w+)=(\S+)", line))
    batch = r.init.maxBatchSize
    assert args["onnx"] == Path(r.init.onnxFilePath).name
    assert (args["minShapes"], args["optShapes"], args["maxShapes"]) == (
        "faces:1x1x48x48", f"faces:{batch}x1x48x48", f"faces:{batch}x1x48x48")
    assert "--int8" in line.split() and "--fp16" in line.split()
    assert os.path.join(os.path.realpath(config.parent), args["saveEngine"]) == r.init.modelEngineFilePath
    Path(r.init.modelEngineFilePath).write_bytes(b"plan")  # trtexec --saveEngine, run in the folder
    loaded = nv.init_context(nv.parse_config_file(config, version))
    assert loaded.ok and loaded.deserialized == r.init.modelEngineFilePath and not loaded.serialized


@pytest.mark.parametrize("version", VERSIONS)
def test_paths_resolve_against_the_config_folder_wherever_it_is(version: str, folders: dict[str, Path],
                                                                tmp_path: Path) -> None:
    config = folders["fp32-b16-gie3"]
    text = config.read_text()
    for key in ("onnx-file", "model-engine-file", "labelfile-path"):
        assert not re.search(rf"^{key}=/", text, re.MULTILINE), f"{key} must be relative: the folder is moved"
    moved = _copy(config, tmp_path)
    link = tmp_path / "link"
    link.symlink_to(moved.parent, target_is_directory=True)
    for path in (moved, link / moved.name):  # realpath(config) resolves the link: both give the real folder
        r = nv.parse_config_file(path, version)
        assert r.init.onnxFilePath == f"{os.path.realpath(moved.parent)}/expr.onnx"
        i = nv.init_context(r)
        assert_context_inits(i)
        assert_engine_reused(r, i)
    r = nv.parse_config_file(os.path.relpath(moved, Path.cwd()), version)  # a relative config path too
    assert r.init.labelsFilePath == f"{os.path.realpath(moved.parent)}/expr_labels.txt"


# ---------------------------------------------------------------------------------------------------------------
# The minimum object size
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("platform", nv.PLATFORMS, ids=lambda p: p.name)
@pytest.mark.parametrize("version", VERSIONS)
def test_minimum_object_is_6px_from_ds8_and_16px_on_ds62(version: str, platform: nv.Platform,
                                                        folders: dict[str, Path]) -> None:
    r = nv.parse_config_file(folders["fp32-default"], version, platform)
    expected = (16, 16) if version == "6.2" else (6, 6)
    assert nv.min_object_size(version, platform, r) == expected
    assert nv.start_messages(version, platform, r) == []


@pytest.mark.parametrize("compute_hw", ["0", "2", None])
@pytest.mark.parametrize("version", ["8.0", "9.1"])
def test_vic_or_default_scaling_raises_the_minimum_to_16_on_jetson_only(version: str, compute_hw: str | None,
                                                                       folders: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    """Why the config sets scaling-compute-hw=1: without it (Default) or with VIC, Jetson's nvgpu driver gets 16."""
    config = _set(_copy(folders["fp32-default"], tmp_path), "scaling-compute-hw", compute_hw)
    jetson = nv.parse_config_file(config, version, nv.JETSON)
    assert_parses_cleanly(jetson)
    assert nv.min_object_size(version, nv.JETSON, jetson) == (16, 16)
    assert nv.start_messages(version, nv.JETSON, jetson) == [
        "Setting min object dimensions as 16x16 instead of 1x1 to support VIC compute mode."]
    if compute_hw != "2":  # VIC does not parse on x86 (below)
        dgpu = nv.parse_config_file(config, version, nv.DGPU)
        assert nv.min_object_size(version, nv.DGPU, dgpu) == (6, 6)


@pytest.mark.parametrize("version", VERSIONS)
def test_vic_scaling_is_refused_off_aarch64(version: str, folders: dict[str, Path], tmp_path: Path) -> None:
    config = _set(_copy(folders["fp32-default"], tmp_path), "scaling-compute-hw", "2")
    assert_parses_cleanly(nv.parse_config_file(config, version, nv.JETSON))
    assert_parses_cleanly(nv.parse_config_file(config, version, nv.SBSA))
    r = nv.parse_config_file(config, version, nv.DGPU)
    assert not r.ok
    assert r.stderr[0] == "Error. Invalid value for 'scaling-compute-hw':'2'"
    assert r.stderr[1] == "Failed to parse group property"
    assert r.stderr[2].startswith("** ERROR: <gst_nvinfer_parse_config_file:")


# ---------------------------------------------------------------------------------------------------------------
# Each check fails on the config it guards against, with nvinfer's message
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_a_misspelt_key_is_only_a_warning_and_the_clean_parse_check_catches_it(
        version: str, folders: dict[str, Path], tmp_path: Path) -> None:
    config = _copy(folders["fp32-default"], tmp_path)
    text = config.read_text().replace("net-scale-factor=", "net-scale-facter=")
    config.write_text(text)
    r = nv.parse_config_file(config, version)
    assert r.ok  # nvinfer goes on...
    assert r.stderr == ["Unknown or legacy key specified 'net-scale-facter' for group [property]"]
    assert r.init.networkScaleFactor == 1.0  # ...with its default scale: every face is fed unnormalised
    with pytest.raises(AssertionError):
        assert_parses_cleanly(r)
    with pytest.raises(AssertionError):
        assert_sdk_normalisation(r)


@pytest.mark.parametrize("version", VERSIONS)
def test_two_offsets_for_one_channel_fail_at_context_init(version: str, folders: dict[str, Path],
                                                          tmp_path: Path) -> None:
    config = _set(_copy(folders["fp32-default"], tmp_path), "offsets", "127.5;127.5")
    r = nv.parse_config_file(config, version)
    assert_parses_cleanly(r)  # the parser only caps the count at 4
    i = nv.init_context(r)
    assert i.errors == ["ERROR: Preprocessor set scale and offsets failed.",
                        "ERROR: Infer Context prepare preprocessing resource failed."]
    with pytest.raises(AssertionError):
        assert_context_inits(i)
    five = nv.parse_config_file(_set(config, "offsets", "1;2;3;4;5"), version)
    assert five.stderr[0] == "Error. Maximum  length of 4 is allowed for 'offsets'" and not five.ok


@pytest.mark.parametrize("version", VERSIONS)
def test_rgb_colour_format_for_a_grey_model_fails_at_context_init(version: str, folders: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    config = _set(_copy(folders["fp32-default"], tmp_path), "model-color-format", "0")
    r = nv.parse_config_file(config, version)
    assert_parses_cleanly(r)
    with pytest.raises(AssertionError):
        assert_values_land(r, config, "fp32-default")
    i = nv.init_context(r)
    assert i.errors[0] == "ERROR: RGB/BGR input format specified but network input channels is not 3"
    with pytest.raises(AssertionError):
        assert_context_inits(i)
    bad = nv.parse_config_file(_set(config, "model-color-format", "3"), version)
    assert bad.stderr[0] == "Error. Invalid value for 'model-color-format':'3'" and not bad.ok


def _three_channel_onnx(path: Path) -> Path:
    """A 3x48x48 -> 3 classes graph (GlobalAveragePool, Flatten, Softmax), output ``probs``."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["faces"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
         helper.make_node("Softmax", ["flat"], ["probs"], axis=1)],
        "rgb", [helper.make_tensor_value_info("faces", TensorProto.FLOAT, ["N", 3, 48, 48])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("version", VERSIONS)
def test_gray_for_a_three_channel_network_fails_at_context_init(version: str, folders: dict[str, Path],
                                                                tmp_path: Path) -> None:
    config = _copy(folders["fp32-default"], tmp_path)
    _three_channel_onnx(config.parent / "rgb.onnx")
    _set(config, "onnx-file", "rgb.onnx")
    _set(config, "model-engine-file", "rgb.onnx_b64_gpu0_fp16.engine")
    _set(config, "infer-dims", "3;48;48")
    _set(config, "offsets", "127.5;127.5;127.5")
    r = nv.parse_config_file(config, version)
    assert_parses_cleanly(r)
    i = nv.init_context(r)
    assert i.errors == ["ERROR: GRAY input format specified but network input channels is not 1.",
                        "ERROR: Infer Context prepare preprocessing resource failed."]
    rgb = nv.init_context(nv.parse_config_file(_set(config, "model-color-format", "0"), version))
    assert rgb.ok and rgb.network == (3, 48, 48) and rgb.classes_per_output == [3]
    assert_engine_reused(r, rgb)


@pytest.mark.parametrize("version", VERSIONS)
def test_infer_dims_other_than_the_onnx_input_do_not_build(version: str, folders: dict[str, Path],
                                                           tmp_path: Path) -> None:
    config = _set(_copy(folders["fp32-default"], tmp_path), "infer-dims", "1;40;40")
    i = nv.init_context(nv.parse_config_file(config, version))
    assert i.errors[-1] == "ERROR: build engine file failed"
    with pytest.raises(AssertionError):
        assert_context_inits(i)
    rank = nv.init_context(nv.parse_config_file(_set(config, "infer-dims", "48;48;1;1"), version))
    assert not rank.ok  # 4 values: refused by the parser already
    no_dims = nv.init_context(nv.parse_config_file(_set(config, "infer-dims", None), version))
    assert_context_inits(no_dims)  # without infer-dims nvinfer takes the ONNX's own 1x48x48


@pytest.mark.parametrize("version", VERSIONS)
def test_a_wrong_engine_name_is_rebuilt_every_run(version: str, folders: dict[str, Path], tmp_path: Path) -> None:
    config = _set(_copy(folders["fp32-b16-gie3"], tmp_path), "batch-size", "8")  # the name still says _b16
    r = nv.parse_config_file(config, version)
    i = nv.init_context(r)
    assert i.serialized.endswith("expr.onnx_b8_gpu0_fp16.engine")
    with pytest.raises(AssertionError):
        assert_engine_reused(r, i)


@pytest.mark.parametrize("version", VERSIONS)
def test_labels_that_do_not_match_the_output_fail_the_labels_check(version: str, folders: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    config = _copy(folders["fp32-default"], tmp_path)
    labels = config.parent / "fsrfer_labels.txt"
    labels.write_text("\n".join(CLASSES) + "\n")  # one class per line: 7 "output layers" of one label each
    i = nv.init_context(nv.parse_config_file(config, version))
    assert i.ok and len(i.labels) == 7 and i.labels[0] == ["angry"]
    with pytest.raises(AssertionError):
        assert_context_inits(i)
    labels.unlink()
    gone = nv.init_context(nv.parse_config_file(config, version))
    assert gone.errors[0] == f"ERROR: Could not open labels file:{os.path.realpath(config.parent)}/fsrfer_labels.txt"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_missing_onnx_fails_the_build(version: str, folders: dict[str, Path], tmp_path: Path) -> None:
    config = _copy(folders["fp32-default"], tmp_path)
    (config.parent / "fsrfer.onnx").unlink()
    r = nv.parse_config_file(config, version)
    assert_parses_cleanly(r)  # a path that does not exist resolves as joined
    assert r.init.onnxFilePath == f"{os.path.realpath(config.parent)}/fsrfer.onnx"
    i = nv.init_context(r)
    assert i.errors == [f"ERROR: Cannot access ONNX file '{r.init.onnxFilePath}'", "ERROR: build engine file failed"]


BAD_VALUES = [
    # key, value, versions that refuse it, nvinfer's first stderr line
    ("network-mode", "3", {"6.2"}, "Error. Invalid value for 'network-mode':'3'"),
    ("network-mode", "4", set(VERSIONS), "Error. Invalid value for 'network-mode':'4'"),
    ("network-type", "5", set(VERSIONS), "Error. Invalid value for 'network-type':'5'"),
    ("process-mode", "3", set(VERSIONS), "Error: Invalid value for process-mode (3)"),
    ("process-mode", "-1", set(VERSIONS), "Error: Invalid value for process-mode (-1)"),
    ("scaling-filter", "7", set(VERSIONS), "Error. Invalid value for 'scaling-filter':'7'"),
    ("scaling-compute-hw", "-1", set(VERSIONS), "Error. Invalid value for 'scaling-compute-hw':'-1'"),
    ("infer-dims", "1;48", set(VERSIONS), "Error. 'infer-dims' array length is 2. Should be 3 as [c;h;w] order."),
    # the message prints the ELEMENT's value (defaults 1 and 15), not the config's
    ("batch-size", "0", set(VERSIONS), "Error: batch-size(1) should be in the range [1,1024]"),
    ("batch-size", "1025", set(VERSIONS), "Error: batch-size(1) should be in the range [1,1024]"),
    ("gie-unique-id", "0", set(VERSIONS), "Error: gie-unique-id (15) should be > 0"),
    ("classifier-threshold", "-0.1", set(VERSIONS), "Error: Negative value specified for classifier-threshold(-0.10)"),
    ("input-object-min-width", "-1", set(VERSIONS), "Error: Negative value specified for input-object-min-width(-1)"),
    ("maintain-aspect-ratio", "yes", set(VERSIONS), ("Error while parsing config file: Key file contains key "
                                                     "\u201cmaintain-aspect-ratio\u201d which has a value that "
                                                     "cannot be interpreted.")),
    ("secondary-reinfer-interval", "0.5", set(VERSIONS), ("Error while parsing config file: Key file contains key "
                                                          "\u201csecondary-reinfer-interval\u201d in group "
                                                          "\u201cproperty\u201d which has a value that cannot be "
                                                          "interpreted.")),
    # a trailing space: fatal after a double, harmless after an integer
    ("net-scale-factor", "0.0156862745 ", set(VERSIONS), ("Error while parsing config file: Key file contains key "
                                                          "\u201cnet-scale-factor\u201d in group \u201cproperty\u201d "
                                                          "which has a value that cannot be interpreted.")),
    ("offsets", "127.5 ", set(VERSIONS), ("Error while parsing config file: Value \u201c127.5 \u201d cannot be "
                                          "interpreted as a float number.")),
    ("batch-size", "64  ", set(), ""),
    ("network-mode", "2 # FP16", set(), ""),  # strtol stops at the space: 2
    ("net-scale-factor", "0.0156862745", set(), ""),
    ("net-scale-factor", "  1.5686274509803922e-02", set(), ""),  # leading spaces go with the key's '='
    ("offsets", "127.5;", set(), ""),  # an empty last piece is dropped
    ("classifier-threshold", "0.0", set(), ""),
    ("maintain-aspect-ratio", "false ", set(), ""),
]


@pytest.mark.parametrize("key,value,refused,message", BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _, _ in BAD_VALUES])
@pytest.mark.parametrize("version", VERSIONS)
def test_values_nvinfer_refuses_and_values_it_reads_differently(version: str, key: str, value: str, refused: set,
                                                                message: str, folders: dict[str, Path],
                                                                tmp_path: Path) -> None:
    config = _set(_copy(folders["fp32-default"], tmp_path), key, value)
    r = nv.parse_config_file(config, version)
    if version in refused:
        assert not r.ok
        assert r.stderr[0] == message
        assert r.stderr[-2:][0] == "Failed to parse group property"
        with pytest.raises(AssertionError):
            assert_parses_cleanly(r)
    else:
        assert_parses_cleanly(r)
    if key == "network-mode" and value == "2 # FP16":
        assert r.init.networkMode == 2
    if key == "net-scale-factor" and r.ok:
        assert r.init.networkScaleFactor == nv._f32(float(value))


@pytest.mark.parametrize("version", VERSIONS)
def test_keys_differ_between_versions(version: str, folders: dict[str, Path], tmp_path: Path) -> None:
    """A key a version does not know is a warning there, not an error: 9.1's strongly-typed in 6.2/8.0,
    8.0's dump-input-tensor in 6.2; 6.2 parses none of disable-output-host-copy (defined, never compared)."""
    config = _copy(folders["fp32-default"], tmp_path)
    _set(config, "strongly-typed", "0")
    _set(config, "dump-input-tensor", "0")
    r = nv.parse_config_file(config, version)
    expected = {"6.2": ["strongly-typed", "dump-input-tensor"], "8.0": ["strongly-typed"], "9.1": []}[version]
    assert r.ok and r.unknown_keys == expected
    assert_values_land(r, config, "fp32-default")


# ---------------------------------------------------------------------------------------------------------------
# GKeyFile as nvinfer uses it
# ---------------------------------------------------------------------------------------------------------------
def _kf(text: str) -> nv.GKeyFile:
    kf = nv.GKeyFile()
    kf.load_from_data(text)
    return kf


def test_gkeyfile_lists_numbers_and_booleans() -> None:
    kf = _kf("# comment\n  # indented comment\n[property]\n"
             "a=1;48;48\nb=1; 48 ;48;\nc=127.5 ;127.5\nd=127.5; 127.5\ne=x\\;y;z\n"
             "f = 16  \ng=2.0\nh=0.0156862745\ni=true  \nj=True\nk=0x1p-6\nl=1e-2\nm=nan\nn=1_0\n"
             "key with space=1\ndup=1\ndup=2\r\n")
    p = "property"
    assert kf.get_integer_list(p, "a") == [1, 48, 48]
    assert kf.get_integer_list(p, "b") == [1, 48, 48]  # spaces around an integer are fine, a last ';' dropped
    with pytest.raises(nv.GError, match="Value \u201c127.5 \u201d cannot be interpreted as a float number."):
        kf.get_double_list(p, "c")  # a space BEFORE ';' is not
    assert kf.get_double_list(p, "d") == [127.5, 127.5]  # strtod skips a leading one
    assert kf.get_string_list(p, "e") == ["x;y", "z"]
    assert kf.get_integer(p, "f") == 16  # key and value around '=' are trimmed, the trailing spaces ignored
    with pytest.raises(nv.GError, match="in group \u201cproperty\u201d which has a value that cannot be"):
        kf.get_integer(p, "g")
    assert kf.get_double(p, "h") == 0.0156862745
    assert kf.get_boolean(p, "i") is True
    with pytest.raises(nv.GError, match="Key file contains key \u201cj\u201d which has a value"):
        kf.get_boolean(p, "j")
    assert kf.get_double(p, "k") == 2 ** -6 and kf.get_double(p, "l") == 0.01
    assert np.isnan(kf.get_double(p, "m"))
    with pytest.raises(nv.GError):
        kf.get_integer(p, "n")  # C's strtol, not Python's int()
    assert kf.get_integer(p, "key with space") == 1
    assert kf.get_keys(p).count("dup") == 2 and kf.get_integer(p, "dup") == 2  # listed twice, the last wins


def test_gkeyfile_refuses_what_glib_refuses() -> None:
    with pytest.raises(nv.GError, match="Key file does not start with a group"):
        _kf("a=1\n[property]\n")
    with pytest.raises(nv.GError, match="which is not a key-value pair, group, or comment"):
        _kf("[property]\nnetwork-mode\n")
    with pytest.raises(nv.GError, match="which is not a key-value pair, group, or comment"):
        _kf("[property]\n=1\n")
    with pytest.raises(nv.GError, match="Invalid key name: a]b"):
        _kf("[property]\na]b=1\n")


def test_the_fake_refuses_a_missing_property_group(tmp_path: Path) -> None:
    config = tmp_path / "c.txt"
    config.write_text("[other]\nbatch-size=1\n")
    r = nv.parse_config_file(config, "8.0")
    assert not r.ok and r.stderr[0] == "Could not find group property"
    missing = nv.parse_config_file(tmp_path / "none.txt", "9.1")
    assert not missing.ok and missing.stderr[0].startswith("Failed to load config file:")


@pytest.mark.parametrize("version", VERSIONS)
def test_the_fakes_key_lists_are_the_keys_its_parser_knows(version: str, tmp_path: Path) -> None:
    config = tmp_path / "c.txt"
    for key in sorted(nv.config_keys("9.1") | nv.config_keys("6.2") | {"no-such-key"}):
        config.write_text(f"[property]\n{key}=0\n")
        r = nv.parse_config_file(config, version, nv.JETSON)
        assert (r.unknown_keys == [key]) == (key not in nv.config_keys(version)), (key, r.stderr)
