"""Review of the model-file layer (onnx_export.py, metadata.py): checkpoints of other kinds, metadata that is
incomplete or of the wrong type, and what the exporter writes about a model that its graph contradicts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fsrfer_edge.errors import ConfigError, ModelError
from fsrfer_edge.metadata import ModelInfo
from fsrfer_edge.preprocessing import Preprocessing


def _checkpoint(path: Path, spec: dict[str, Any], meta: Any = None, pre: Preprocessing = Preprocessing()) -> Path:
    torch = pytest.importorskip("torch")
    from trainer import checkpoint
    from trainer.models import InferenceModel

    torch.manual_seed(0)
    model = InferenceModel(spec).eval()
    payload = checkpoint.model_payload(model, spec, pre, {})
    payload["meta"] = {"note": "test"} if meta is None else meta
    checkpoint.save(path, payload)
    return path


def _export() -> Any:
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from fsrfer_edge.export.onnx_export import export_onnx

    return export_onnx


# -- metadata --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("drop", ["preprocessing", "input_name", "input_dtype", "precision", "factors"])
def test_metadata_missing_a_field_is_refused_not_defaulted(drop: str) -> None:
    doc = ModelInfo().to_dict()
    del doc[drop]
    with pytest.raises(ModelError, match=rf"m\.onnx.*{drop}"):
        ModelInfo.from_dict(doc, "m.onnx")


@pytest.mark.parametrize("drop", ["mean", "std", "input_size", "classes"])
def test_metadata_preprocessing_missing_a_field_is_refused_not_defaulted(drop: str) -> None:
    doc = ModelInfo().to_dict()
    del doc["preprocessing"][drop]
    with pytest.raises(ModelError, match=rf"m\.onnx.*{drop}"):
        ModelInfo.from_dict(doc, "m.onnx")


def test_metadata_with_an_unknown_key_names_it_and_the_known_ones() -> None:
    with pytest.raises(ModelError, match=r"m\.onnx.*unknown.*'colour'.*input_dtype.*upgrade") as err:
        ModelInfo.from_dict({**ModelInfo().to_dict(), "colour": "rgb"}, "m.onnx")
    assert "__init__" not in str(err.value)


def test_complete_metadata_still_round_trips() -> None:
    info = ModelInfo(precision="int8", int8_scheme="u8s8", factors=(1, 2))
    assert ModelInfo.from_json(info.to_json()) == info


# -- export ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["hr", "lr_finetune"])
def test_a_baseline_checkpoint_exports_with_its_method(tmp_path: Path, method: str) -> None:
    export = _export()
    ckpt = _checkpoint(tmp_path / "b.pt", {"method": method, "backbone": "tiny"})
    info = export(ckpt, tmp_path / "dir with spaces ü" / "b.onnx")
    from fsrfer_edge.export.onnx_export import read_model_info

    assert info.method == method == read_model_info(tmp_path / "dir with spaces ü" / "b.onnx").method


def test_a_model_with_more_outputs_than_its_classes_is_refused(tmp_path: Path) -> None:
    export = _export()
    ckpt = _checkpoint(tmp_path / "c8.pt", {"method": "hr", "backbone": "tiny", "num_classes": 8})
    with pytest.raises(ModelError, match=r"c8\.pt.*8.*7 classes"):
        export(ckpt, tmp_path / "c8.onnx")
    assert not (tmp_path / "c8.onnx").exists()


def test_a_model_whose_channels_differ_from_its_preprocessing_is_a_clear_error(tmp_path: Path) -> None:
    export = _export()
    ckpt = _checkpoint(tmp_path / "rgb.pt", {"method": "hr", "backbone": "tiny", "in_channels": 3})
    with pytest.raises(ModelError, match=r"rgb\.pt.*3 .*channel.*preprocessing.*1") as err:
        export(ckpt, tmp_path / "rgb.onnx")
    assert "opset" not in str(err.value)


@pytest.mark.parametrize("factors", ["1,2", [1.5, 2], [0, 2], None, 4])
def test_bad_checkpoint_factors_are_a_model_error_naming_the_checkpoint(tmp_path: Path, factors: Any) -> None:
    export = _export()
    ckpt = _checkpoint(tmp_path / "f.pt", {"method": "hr", "backbone": "tiny"}, meta={"factors": factors})
    with pytest.raises(ModelError, match=r"f\.pt.*factors"):
        export(ckpt, tmp_path / "f.onnx")
    assert not (tmp_path / "f.onnx").exists()


def test_a_meta_that_is_not_a_dict_is_a_model_error(tmp_path: Path) -> None:
    export = _export()
    ckpt = _checkpoint(tmp_path / "m.pt", {"method": "hr", "backbone": "tiny"}, meta=["x"])
    with pytest.raises(ModelError, match=r"m\.pt.*meta"):
        export(ckpt, tmp_path / "m.onnx")


def test_the_trainers_degrade_factors_reach_the_metadata(tmp_path: Path) -> None:
    export = _export()
    meta = {"name": "hr", "config": {"degrade": {"factors": [1, 2, 4]}}}
    ckpt = _checkpoint(tmp_path / "t.pt", {"method": "hr", "backbone": "tiny"}, meta=meta)
    assert export(ckpt, tmp_path / "t.onnx").factors == (1, 2, 4)


@pytest.mark.parametrize("opset", [17.0, "17", True])
def test_an_opset_that_is_not_an_integer_is_refused_before_the_export(tmp_path: Path, opset: Any) -> None:
    export = _export()
    ckpt = _checkpoint(tmp_path / "o.pt", {"method": "hr", "backbone": "tiny"})
    with pytest.raises(ConfigError, match=r"opset.*integer"):
        export(ckpt, tmp_path / "o.onnx", opset=opset)


# -- reading ---------------------------------------------------------------------------------------------


def _two_input_model(tmp_path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("torch")
    from onnx import TensorProto, helper

    from _onnx_models import make_tiny_onnx

    model = onnx.load(str(make_tiny_onnx(tmp_path / "tiny.onnx")))
    graph = model.graph
    for node in graph.node:
        node.input[:] = ["shifted" if x == "faces" else x for x in node.input]
    graph.node.insert(0, helper.make_node("Add", ["faces", "bias"], ["shifted"]))
    graph.input.append(helper.make_tensor_value_info("bias", TensorProto.FLOAT, [1]))
    path = tmp_path / "two inputs.onnx"
    onnx.save(model, str(path))
    return path


def test_a_graph_with_a_second_input_is_refused_when_its_info_is_read(tmp_path: Path) -> None:
    from fsrfer_edge.export.onnx_export import load_onnx, read_model_info

    path = _two_input_model(tmp_path)
    with pytest.raises(ModelError, match=r"two inputs\.onnx.*'bias'.*one input 'faces'"):
        read_model_info(path)
    with pytest.raises(ModelError, match=r"'bias'"):
        read_model_info(load_onnx(path))


def test_a_graph_with_a_second_input_is_refused_when_the_recognizer_opens_it(tmp_path: Path) -> None:
    """ONNX Runtime took it at load and failed the first predict with its own ValueError ('Required inputs')."""
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer

    with pytest.raises(ModelError, match=r"needs inputs \['bias'\] besides 'faces'"):
        Recognizer(_two_input_model(tmp_path), threads=1)


def test_a_graph_with_dynamic_face_size_still_reads_its_info(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("torch")
    from _onnx_models import make_tiny_onnx
    from fsrfer_edge.export.onnx_export import read_model_info

    model = onnx.load(str(make_tiny_onnx(tmp_path / "tiny.onnx")))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    onnx.save(model, str(tmp_path / "dyn.onnx"))
    assert read_model_info(tmp_path / "dyn.onnx").preprocessing.input_size == 48
