"""fsrfer-export --check-trt takes the Q/DQ pattern quantization-aware training exports (float weights -> per-channel
QuantizeLinear -> DequantizeLinear on axis 0), which TensorRT quantizes itself at build time ("Explicit
Quantization", Quantized Weights: weights may be given in high precision, quantized with the IQuantizeLayer's scale);
it flagged both nodes as "per-channel scales on an activation" (found by helper K66c). Activations quantized per
channel, and weights quantized on another axis, are still refused."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fsrfer_edge.export.trt_check import check_model  # noqa: E402


def _model(weight_axis: int = 0, channels: int = 1, per_channel_x: bool = False,
           weight_q: bool = True) -> "onnx.ModelProto":
    """x (1,channels,4,4) -> Q/DQ (per tensor, or per channel with ``per_channel_x``) -> Conv with 2 output channels
    whose weights are float -> Q -> DQ (``weight_q``) or int8 -> DQ, quantized on ``weight_axis``."""
    c = channels
    w = np.array([0.3, -1.0], np.float32).reshape(2, 1, 1, 1).repeat(c, axis=1)
    scales = 2 if weight_axis == 0 else c
    xs = (c,) if per_channel_x else ()
    inits = [numpy_helper.from_array(w if weight_q else np.round(w / 0.01).astype(np.int8), "w"),
             numpy_helper.from_array(np.full(scales, 0.01, np.float32), "w_scale"),
             numpy_helper.from_array(np.zeros(scales, np.int8), "w_zp"),
             numpy_helper.from_array(np.full(xs, 0.05, np.float32), "x_scale"),
             numpy_helper.from_array(np.zeros(xs, np.int8), "x_zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"], name="x_q", axis=1),
             helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"], name="x_dq", axis=1)]
    if weight_q:
        nodes.append(helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zp"], ["w_q"], name="w_q",
                                      axis=weight_axis))
    nodes += [helper.make_node("DequantizeLinear", ["w_q" if weight_q else "w", "w_scale", "w_zp"], ["w_dq"],
                               name="w_dq", axis=weight_axis),
              helper.make_node("Conv", ["x_dq", "w_dq"], ["y"], name="conv")]
    graph = helper.make_graph(nodes, "qat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("weight_q", [True, False], ids=["float-weights-q-dq", "int8-weights-dq"])
def test_weights_quantized_per_output_channel_pass_in_either_form(weight_q: bool) -> None:
    report = check_model(_model(weight_q=weight_q))
    assert report.ok and report.errors == [], report.errors
    assert report.int8_layers == ["conv"]


def test_per_channel_scales_on_an_activation_are_still_refused() -> None:
    errors = check_model(_model(channels=3, per_channel_x=True)).errors
    assert sorted(e.split(":")[0] for e in errors) == ["DequantizeLinear 'x_dq'", "QuantizeLinear 'x_q'"], errors
    assert all("per-channel scales on an activation" in e for e in errors)


@pytest.mark.parametrize("weight_q", [True, False], ids=["float-weights-q-dq", "int8-weights-dq"])
def test_weights_quantized_on_another_axis_are_refused(weight_q: bool) -> None:
    errors = check_model(_model(weight_axis=1, channels=3, weight_q=weight_q)).errors
    assert errors and all("per-channel scales on axis 1" in e for e in errors), errors
    assert any("'w_dq'" in e for e in errors)
