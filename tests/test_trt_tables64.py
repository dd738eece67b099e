"""onnx-tensorrt's 10.1-GA operator table types ConstantOfShape's value as "INF64" (a typo upstream, for INT64), so
``fsrfer-export --check-trt`` refused an INT64 ConstantOfShape under TensorRT 10.x, and named its input where the
value attribute's type was meant."""
from __future__ import annotations

import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from fsrfer_edge.export.trt_check import check_model, load_table  # noqa: E402


def _model(value_type: int) -> "onnx.ModelProto":
    value = helper.make_tensor("value", value_type, [1], [0])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [2, 3])
    node = helper.make_node("ConstantOfShape", ["shape"], ["y"], value=value)
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", value_type, [2, 3])],
                              initializer=[shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_10_table_lists_int64_for_constant_of_shape_not_the_upstream_typo() -> None:
    types = load_table("tensorrt-10.1").operators["ConstantOfShape"]["types"]
    assert "INT64" in types and "INF64" not in types


def test_an_int64_constant_of_shape_passes_the_10_check() -> None:
    report = check_model(_model(TensorProto.INT64), tables=["tensorrt-10.1"])
    assert not report.errors, report.errors


def test_a_constant_of_shape_of_another_type_names_its_value_not_its_input() -> None:
    report = check_model(_model(TensorProto.UINT8), tables=["tensorrt-10.1"])
    assert len(report.errors) == 1 and "value" in report.errors[0] and "input 'shape'" not in report.errors[0]
