"""Tests that kill hand-made mutants the rest of the suite let through (round 66h: model metadata, the fused ONNX
export and the DeepStream config).

Each test checks a behaviour a user depends on but would not notice at once when it broke: what metadata without a
field or with an unwritable class name is told, and what the DeepStream folder says and computes. No torch: the
ONNX models are built with onnx.helper.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fsrfer_edge.errors import ModelError
from fsrfer_edge.metadata import ModelInfo


# -- metadata ---------------------------------------------------------------------------------------------------


def test_metadata_without_a_format_version_is_refused_as_a_missing_field() -> None:
    """Mutant: the format version read as ``d["format_version"]``; metadata without one (hand-edited, or a tool that
    drops it) then raised a bare KeyError instead of the ModelError that names the field and says to export again."""
    doc = json.loads(ModelInfo().to_json())
    del doc["format_version"]
    with pytest.raises(ModelError, match=r"m\.onnx: fsrfer metadata has no \['format_version'\].*fsrfer-export"):
        ModelInfo.from_json(json.dumps(doc), source="m.onnx")


def test_a_class_name_holding_a_lone_surrogate_is_refused_when_read() -> None:
    """Mutant: only control characters (Unicode Cc) refused, not lone surrogates (Cs). A JSON "\\ud800" in a class
    name then loaded, and the labels file of fsrfer-export --deepstream failed half-way with a UnicodeEncodeError."""
    doc = json.loads(ModelInfo().to_json())
    doc["preprocessing"]["classes"][0] = "\ud800"
    text = json.dumps(doc)  # ensure_ascii: the surrogate is written as the escape "\ud800"
    assert "\\ud800" in text
    with pytest.raises(ModelError, match=r"classes\[0\].*lone surrogate"):
        ModelInfo.from_json(text, source="m.onnx")


def test_preprocessing_without_its_std_is_refused_not_filled_with_the_default() -> None:
    """Mutant: the preprocessing keys not checked. Metadata without ``std`` then loaded with the default 0.25, and
    every face was normalised with another std than the model was trained on, silently."""
    doc = json.loads(ModelInfo().to_json())
    doc["preprocessing"]["std"] = 0.2
    assert ModelInfo.from_dict(doc).preprocessing.std == pytest.approx(0.2)
    del doc["preprocessing"]["std"]
    with pytest.raises(ModelError, match=r"m\.onnx: fsrfer metadata preprocessing has no \['std'\]"):
        ModelInfo.from_dict(doc, source="m.onnx")


# -- ONNX files ---------------------------------------------------------------------------------------------------


def _tiny_model(info: ModelInfo = ModelInfo(), weight_as_input: bool = False, extra_input: str = "") -> Any:
    """A 48x48 -> 7 logits fsrfer graph (Flatten, MatMul) with a dynamic batch axis and ``info`` as metadata;
    ``weight_as_input``: its weight also listed as a graph input (as IR < 4 files do); ``extra_input``: the name of
    a second input the graph needs (added to the logits)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from fsrfer_edge.export.onnx_export import write_model_info

    pre = info.preprocessing
    size = pre.channels * pre.input_size * pre.input_size
    weight = np.random.default_rng(0).normal(size=(size, len(info.classes))).astype(np.float32)
    nodes = [helper.make_node("Flatten", [info.input_name], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "w"], ["mm" if extra_input else info.output_name])]
    inputs = [helper.make_tensor_value_info(info.input_name, TensorProto.FLOAT,
                                            ["batch", pre.channels, pre.input_size, pre.input_size])]
    if extra_input:
        nodes.append(helper.make_node("Add", ["mm", extra_input], [info.output_name]))
        inputs.append(helper.make_tensor_value_info(extra_input, TensorProto.FLOAT, ["batch", 1]))
    if weight_as_input:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, list(weight.shape)))
    graph = helper.make_graph(nodes, "tiny", inputs,
                              [helper.make_tensor_value_info(info.output_name, TensorProto.FLOAT,
                                                             ["batch", len(info.classes)])],
                              [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    write_model_info(model, info)
    return model


def test_save_onnx_refuses_an_invalid_graph_and_writes_nothing(tmp_path: Path) -> None:
    """Mutant: save_onnx skips onnx.checker. A transformation's bug (a node reading a tensor no one makes) was then
    written as a file that every runtime refuses later, with its own message, far from the cause."""
    pytest.importorskip("onnx")
    from onnx import helper

    from fsrfer_edge.export.onnx_export import save_onnx

    model = _tiny_model()
    save_onnx(model, tmp_path / "ok.onnx")
    assert (tmp_path / "ok.onnx").stat().st_size > 0
    model.graph.node.append(helper.make_node("Relu", ["nowhere"], ["relu_out"]))
    with pytest.raises(ModelError, match=r"refusing to write bad\.onnx: the model is not valid ONNX"):
        save_onnx(model, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_simplify_refuses_a_result_onnxsim_could_not_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: onnxsim's "not validated" answer ignored. A simplified graph that onnxsim itself found to compute
    other logits was then shipped in place of the exported one; the docs promise no silent fallback either way."""
    onnxsim = pytest.importorskip("onnxsim")
    from fsrfer_edge.export.onnx_export import save_onnx, simplify

    save_onnx(_tiny_model(), tmp_path / "raw.onnx")
    monkeypatch.setattr(onnxsim, "simplify", lambda model, **kwargs: (model, False))
    with pytest.raises(ModelError, match=r"onnxsim could not validate the simplified .*raw\.onnx.*--no-simplify"):
        simplify(tmp_path / "raw.onnx", tmp_path / "s.onnx")
    assert not (tmp_path / "s.onnx").exists()


def test_a_graph_needing_a_second_input_is_refused_when_its_info_is_read(tmp_path: Path) -> None:
    """Mutant: read_model_info does not look at the graph's other inputs. A graph that also needs each face's factor
    (a scale-aware G exported without its estimator) then loaded, and every runtime, which feeds the faces alone,
    failed at the first batch with ONNX Runtime's or TensorRT's message about a missing input."""
    pytest.importorskip("onnx")
    from fsrfer_edge.export.onnx_export import read_model_info, save_onnx

    save_onnx(_tiny_model(extra_input="factor"), tmp_path / "two.onnx")
    with pytest.raises(ModelError, match=r"two\.onnx: the graph needs inputs \['faces', 'factor'\], \['factor'\] "
                                         r"besides its metadata's input; expected one input 'faces'"):
        read_model_info(tmp_path / "two.onnx")


def test_a_graph_listing_its_weights_as_inputs_still_reads_as_one_input(tmp_path: Path) -> None:
    """Mutant: the initializers not told apart from the inputs a runtime feeds. A file that lists its weights among
    the graph's inputs (as exporters of IR < 4 did, and some tools still do; each has its value in the file) was
    then refused as needing inputs besides the faces."""
    pytest.importorskip("onnx")
    from fsrfer_edge.export.onnx_export import read_model_info, save_onnx

    save_onnx(_tiny_model(weight_as_input=True), tmp_path / "w.onnx")
    assert read_model_info(tmp_path / "w.onnx") == ModelInfo()


def test_variant_info_names_a_misspelt_field() -> None:
    """Mutant: variant_info leaves unknown fields to dataclasses.replace, whose TypeError ("unexpected keyword
    argument") is not the SDK's error (one except FsrferError misses it) and lists no valid fields."""
    from fsrfer_edge.errors import InputError
    from fsrfer_edge.export.onnx_export import variant_info

    assert variant_info(ModelInfo(), precision="fp16").precision == "fp16"
    with pytest.raises(InputError, match=r"unknown ModelInfo field\(s\) \['precison'\]; expected some of "
                                         r".*'precision'"):
        variant_info(ModelInfo(), precison="fp16")


# -- DeepStream -----------------------------------------------------------------------------------------------------


def _property_group(path: Path) -> dict[str, str]:
    """The [property] group as nvinfer's GKeyFile reads it (keys as written, no interpolation)."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive in GKeyFile
    parser.read(path, encoding="utf-8")
    return dict(parser["property"])


def test_the_deepstream_copy_is_not_loadable_as_an_fsrfer_model(tmp_path: Path) -> None:
    """Mutant: the DeepStream copy keeps the fsrfer metadata beside its own. Its output is already probabilities,
    and the SDK (Recognizer, fsrfer-check) would load it and take the softmax of the probabilities: the same top
    class, but confidences squeezed towards 1/7."""
    pytest.importorskip("onnx")
    from fsrfer_edge.export.deepstream import DEEPSTREAM_KEY, write_deepstream
    from fsrfer_edge.export.onnx_export import load_onnx, metadata_props, read_model_info, save_onnx

    save_onnx(_tiny_model(), tmp_path / "m.onnx")
    write_deepstream(tmp_path / "ds", tmp_path / "m.onnx", name="m")
    props = metadata_props(load_onnx(tmp_path / "ds" / "m.onnx"))
    assert DEEPSTREAM_KEY in props
    with pytest.raises(ModelError, match=r"has no 'fsrfer' metadata"):
        read_model_info(tmp_path / "ds" / "m.onnx")


def test_rewriting_the_folder_replaces_the_config_and_labels_whole(tmp_path: Path) -> None:
    """Mutant: the labels and config files written in place (truncated, then written). A pipeline that reads them
    while fsrfer-export rewrites the folder (or an export killed half-way) then got an empty or half-written file;
    written to a temporary file and renamed, a reader that opened the earlier file reads it whole."""
    pytest.importorskip("onnx")
    from fsrfer_edge.export.deepstream import write_deepstream
    from fsrfer_edge.export.onnx_export import save_onnx
    from fsrfer_edge.preprocessing import Preprocessing

    save_onnx(_tiny_model(), tmp_path / "a.onnx")
    renamed = ModelInfo(preprocessing=Preprocessing(classes=tuple(f"c{i}" for i in range(7))))
    save_onnx(_tiny_model(renamed), tmp_path / "b.onnx")
    config = write_deepstream(tmp_path / "ds", tmp_path / "a.onnx", batch_size=8)
    labels = tmp_path / "ds" / "fsrfer_labels.txt"
    old_config, old_labels = config.read_text(), labels.read_text()
    with open(config, encoding="utf-8") as held_config, open(labels, encoding="utf-8") as held_labels:
        write_deepstream(tmp_path / "ds", tmp_path / "b.onnx", batch_size=16)
        assert (held_config.read(), held_labels.read()) == (old_config, old_labels)
    assert labels.read_text() == "c0;c1;c2;c3;c4;c5;c6\n"
    assert _property_group(config)["batch-size"] == "16"
