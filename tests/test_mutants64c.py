"""Tests that kill hand-made mutants the rest of the suite let through (round 64c: exporter and serving).

Each test checks a behaviour a user depends on but would not notice at once when it broke: the DeepStream config of
an RGB model, the max_batch and repeated preferred sizes of a Triton repository, the client's retry count, and the
client's checks of what a served model says and answers. No torch: the ONNX model is built with onnx.helper.
"""
from __future__ import annotations

import configparser
import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from fsrfer_edge.errors import ConfigError, ModelError
from fsrfer_edge.metadata import ModelInfo
from fsrfer_edge.preprocessing import Preprocessing
from _http import QuietHandler, client_stand_in, triton_model_config
from _onnx_models import make_flat_onnx


def _property_group(text: str) -> dict[str, str]:
    """The [property] group as nvinfer's GKeyFile reads it (keys as written, no interpolation)."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive in GKeyFile
    parser.read_string(text)
    return dict(parser["property"])


# -- DeepStream: an RGB model -------------------------------------------------------------------------


def test_deepstream_config_of_an_rgb_model_feeds_rgb_normalised_on_every_channel() -> None:
    """Mutants: model-color-format 1 (BGR) for 3 channels; one offset for three channels (nvinfer then subtracts
    nothing from G and B). Every test model was grey, so neither showed."""
    from fsrfer_edge.export.deepstream import config_text

    pre = Preprocessing(channels=3, mean=0.5, std=0.25)
    props = _property_group(config_text(ModelInfo(preprocessing=pre), "m.onnx", "m_labels.txt"))
    assert props["model-color-format"] == "0"  # RGB: fsrfer RGB models take RGB
    assert props["infer-dims"] == "3;48;48"
    offsets = [float(v) for v in props["offsets"].split(";")]
    assert len(offsets) == 3
    scale = float(props["net-scale-factor"])
    x = np.arange(256, dtype=np.float64)
    for offset in offsets:  # y = net-scale-factor * (x - offset) is the SDK's normalisation on each channel
        np.testing.assert_allclose(scale * (x - offset), pre.normalize(x.astype(np.float32)), rtol=0, atol=2e-6)


# -- Triton repository ---------------------------------------------------------------------------------


def _tiny_onnx(path: Path) -> Path:
    """A grey 48x48 -> 7 logits fsrfer ONNX file (Flatten, MatMul) with a dynamic batch axis and fsrfer metadata."""
    return make_flat_onnx(path)


def test_triton_onnx_model_gets_the_max_batch_asked_for(tmp_path: Path) -> None:
    """Mutant: the ONNX model's max_batch_size was always the default 64, whatever max_batch said."""
    pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient not installed")
    from fsrfer_edge.serving import parse_config, write_triton_repo

    repo = write_triton_repo(tmp_path / "repo", onnx_path=_tiny_onnx(tmp_path / "tiny.onnx"), max_batch=8,
                             preferred_batch_sizes=[4, 2])
    config = parse_config(repo / "fsrfer_onnx")
    assert config.max_batch_size == 8
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]


def test_triton_repeated_preferred_batch_sizes_are_refused(tmp_path: Path) -> None:
    """Mutant: a size given twice was written twice instead of refused, as documented."""
    from fsrfer_edge.serving import write_triton_repo

    with pytest.raises(ConfigError, match=r"preferred batch sizes \[8, 8\] repeat a value"):
        write_triton_repo(tmp_path / "repo", onnx_path=_tiny_onnx(tmp_path / "tiny.onnx"),
                          preferred_batch_sizes=[8, 8])
    assert not (tmp_path / "repo").exists()


# -- Triton client ----------------------------------------------------------------------------------------


def test_client_retries_exactly_as_often_as_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: ``retries=2`` made four attempts (one retry more than asked, each a timeout long on a dead host)."""
    pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")
    from fsrfer_edge.serving import ServerUnavailable
    from fsrfer_edge.serving import client as client_mod

    calls: list[int] = []

    def refused(self: Any, client: Any) -> Any:
        calls.append(1)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(client_mod.TritonClientBackend, "_get_config", refused)
    with pytest.raises(ServerUnavailable, match="gave up after 3 attempts"):
        client_mod.TritonClientBackend("127.0.0.1:8000", retries=2, retry_delay_s=0)
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(ServerUnavailable, match="is unreachable"):
        client_mod.TritonClientBackend("127.0.0.1:8000", retries=0, retry_delay_s=0)
    assert len(calls) == 1


def _config_with(**changes: Any) -> bytes:
    doc = json.loads(triton_model_config())
    for key, value in changes.items():
        doc[key] = [{**doc[key][0], **value}]
    return json.dumps(doc).encode()


class _FakeTriton(QuietHandler):
    """Triton's HTTP endpoint: the model config, and inference answering ``logit_columns`` logits per face (JSON)."""

    protocol_version = "HTTP/1.1"
    config = triton_model_config()
    logit_columns = len(ModelInfo().classes)

    def do_GET(self) -> None:
        found = self.path == "/v2/models/fsrfer/config"
        self._reply(200 if found else 404, self.config if found else b'{"error": "not found"}')

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        header = json.loads(body[:int(self.headers.get("Inference-Header-Content-Length", len(body)))])
        n = int(header["inputs"][0]["shape"][0])
        shape = [n, self.logit_columns]
        self._reply(200, json.dumps({"model_name": "fsrfer", "outputs": [
            {"name": "logits", "datatype": "FP32", "shape": shape, "data": [0.5] * (shape[0] * shape[1])}]}).encode())


@contextlib.contextmanager
def _served(**attributes: Any) -> Iterator[str]:
    handler = type("_Handler", (_FakeTriton,), attributes)
    with client_stand_in(handler) as address:
        yield address


def test_client_refuses_a_served_input_of_other_dims_when_connecting() -> None:
    """Mutant: the served input's dims were not compared with the metadata's (a 64x64 model was taken for 48x48,
    and every request then failed on the server)."""
    from fsrfer_edge.serving import RemoteRecognizer

    with _served(config=_config_with(input={"dims": [1, 64, 64]})) as address:
        with pytest.raises(ModelError, match=r"input 'faces' is TYPE_FP32 \[1, 64, 64\].*\[1, 48, 48\]"):
            RemoteRecognizer(address, timeout_s=10)


def test_client_refuses_logits_of_another_class_count() -> None:
    """Mutant: only the batch axis of the answer was checked, so 8 logits per face for a 7-class model were
    returned as they were."""
    from fsrfer_edge.serving import RemoteError, RemoteRecognizer

    batch = np.zeros((3, 1, 48, 48), np.float32)
    with _served() as address, RemoteRecognizer(address, timeout_s=10, confidence=None) as rec:
        assert rec.predict_logits(batch).shape == (3, 7)  # the stand-in answers as Triton does
    with _served(logit_columns=8) as address, RemoteRecognizer(address, timeout_s=10, confidence=None) as rec:
        with pytest.raises(RemoteError, match=r"returned \(3, 8\) logits for a batch of 3; expected \(3, 7\)"):
            rec.predict_logits(batch)



# -- export checks -------------------------------------------------------------------------------------------


def test_int8_check_counts_every_changed_decision() -> None:
    """Mutant: INT8's count_ties was ignored, so with its unlimited logit tolerance no disagreement ever counted and
    an INT8 file whose every top-1 answer changed passed the check."""
    from fsrfer_edge.export.check import TOLERANCES, compare

    ref = np.eye(7, dtype=np.float32)[[0, 1, 2, 3]] * 5.0
    cand = np.roll(ref, 1, axis=1)  # every face's top class moved
    report = compare(ref, cand, TOLERANCES["int8"])
    assert report["gated_agreement"] == 0.0 and report["passed"] is False
    assert compare(ref, ref.copy(), TOLERANCES["int8"])["passed"] is True


def test_logit_tolerance_is_relative_to_at_least_one() -> None:
    """Mutant: the tolerance scaled with the largest reference logit even below 1, so near-zero logits (an untrained
    or flat model) failed an FP16 check on differences far under the documented 2e-2."""
    from fsrfer_edge.export.check import TOLERANCES, compare

    ref = np.full((2, 7), 0.01, np.float32)
    ref[:, 0] = 0.05
    report = compare(ref, ref + 0.01, TOLERANCES["fp16"])
    assert report["allowed_abs_diff"] == pytest.approx(2e-2) and report["passed"] is True
    assert compare(ref, ref + 0.03, TOLERANCES["fp16"])["passed"] is False


def test_accuracy_gate_refuses_a_drop_just_over_the_limit() -> None:
    """Mutant: the gate let drops up to one point over --max-int8-drop through."""
    from fsrfer_edge.export.check import ExportCheckError, accuracy_gate

    table = {"fp32": {"mean": 80.0, "1": 80.0}, "int8": {"mean": 78.5, "1": 78.5}, "ok": {"mean": 79.0, "1": 79.0}}
    with pytest.raises(ExportCheckError, match="int8: 78.50% vs 80.00%"):
        accuracy_gate(table, "fp32", ["int8"], max_int8_drop=1.0)
    assert accuracy_gate(table, "fp32", ["ok"], max_int8_drop=1.0)["refused"] == []


# -- metadata --------------------------------------------------------------------------------------------------


def test_metadata_of_a_newer_format_says_upgrade_before_its_new_fields() -> None:
    """Mutant: a format_version one newer went on to the field checks, which called its new field unknown instead
    of telling the user to upgrade fsrfer-edge."""
    doc = dict(json.loads(ModelInfo().to_json()), format_version=2, new_field=1)
    with pytest.raises(ModelError, match="metadata format 2 is newer than this fsrfer_edge understands.*upgrade"):
        ModelInfo.from_dict(doc)


# -- INT8 files (conftest.int8_files: the shipped model, quantized on 6 faces) --------------------------------
def _weight_scale_sizes(model: Any) -> list[int]:
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    return [numpy_helper.to_array(inits[n.input[1]]).size for n in model.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in inits and n.input[1] in inits]


def test_per_channel_choice_reaches_the_int8_file(int8_files: dict[str, Any]) -> None:
    """Mutant: per_channel was not passed on, so every file had per-tensor weight scales whatever was asked."""
    assert max(_weight_scale_sizes(int8_files["s8s8"])) > 1
    assert set(_weight_scale_sizes(int8_files["s8s8_tensor"])) == {1}


def test_u8s8_activations_are_asymmetric_and_s8s8_symmetric(int8_files: dict[str, Any]) -> None:
    """Mutant: symmetric activations in the u8s8 file too (zero point 128 throughout: half of uint8's range lost
    on every non-negative activation, ONNX Runtime's CPU file less accurate)."""
    from fsrfer_edge.export.quantize import activation_zero_points

    u8 = activation_zero_points(int8_files["u8s8"])
    assert {z.dtype for z in u8} == {np.dtype(np.uint8)} and any(np.any(z != 128) for z in u8)
    s8 = activation_zero_points(int8_files["s8s8"])
    assert {z.dtype for z in s8} == {np.dtype(np.int8)} and all(np.all(z == 0) for z in s8)


def test_s8s8_file_quantizes_the_residual_adds(int8_files: dict[str, Any]) -> None:
    """Mutant: Add left out of the TensorRT ops to quantize, so a block whose shortcut is a convolution added two
    float convolution outputs (no INT8 input on either side: TensorRT cannot fuse the Add into the branch's
    convolution, a slower engine). Each residual Add must take its shortcut side through Q/DQ."""
    model = int8_files["s8s8"]
    producer = {o: str(n.op_type) for n in model.graph.node for o in n.output}
    residual = [[producer.get(i, "") for i in n.input] for n in model.graph.node
                if n.op_type == "Add" and "Conv" in [producer.get(i, "") for i in n.input]]
    assert len(residual) >= 8
    assert all(sorted(feeds) == ["Conv", "DequantizeLinear"] for feeds in residual), residual


def _copy(model: Any) -> Any:
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _set_first_activation_zero_point(model: Any, value: int) -> None:
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    node = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[2] in inits)
    zp = numpy_helper.to_array(inits[node.input[2]])
    inits[node.input[2]].CopyFrom(numpy_helper.from_array(np.full_like(zp, value), node.input[2]))


def test_s8s8_zero_points_must_be_zero(int8_files: dict[str, Any]) -> None:
    """Mutants: an int8 file with a non-zero activation zero point passed check_zero_points as s8s8 and was called
    s8s8 by scheme_of (TensorRT refuses asymmetric activations)."""
    from fsrfer_edge.export.quantize import check_zero_points, scheme_of

    model = _copy(int8_files["s8s8"])
    check_zero_points(model, "s8s8", "ok.onnx")
    assert scheme_of(model) == "s8s8"
    _set_first_activation_zero_point(model, 3)
    with pytest.raises(ModelError, match="s8s8 activation zero points are not all 0"):
        check_zero_points(model, "s8s8", "bad.onnx")
    assert scheme_of(model) == "asymmetric-s8"


# -- TensorRT check ---------------------------------------------------------------------------------------------


def _first(model: Any, op_type: str, weight: bool) -> Any:
    inits = {t.name for t in model.graph.initializer}
    return next(n for n in model.graph.node if n.op_type == op_type and (n.input[0] in inits) == weight)


def test_trt_check_refuses_weight_scales_on_another_axis(int8_files: dict[str, Any]) -> None:
    """Mutant: per-channel weight scales on axis 1 passed (TensorRT takes axis 0, the output channels)."""
    from fsrfer_edge.export.trt_check import check_model

    model = _copy(int8_files["s8s8"])
    assert check_model(model).ok
    weights = {t.name for t in model.graph.initializer}
    node = next(n for n in model.graph.node if n.op_type == "DequantizeLinear"
                and any(a.name == "axis" for a in n.attribute) and n.input[0] in weights)
    next(a for a in node.attribute if a.name == "axis").i = 1
    assert any("per-channel scales on axis 1" in e for e in check_model(model).errors)


def test_trt_check_refuses_a_zero_scale(int8_files: dict[str, Any]) -> None:
    """Mutant: a scale of 0 passed as positive (TensorRT refuses it; every value through it would become 0)."""
    from onnx import numpy_helper

    from fsrfer_edge.export.trt_check import check_model

    model = _copy(int8_files["s8s8"])
    node = _first(model, "QuantizeLinear", weight=False)
    init = next(t for t in model.graph.initializer if t.name == node.input[1])
    init.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(init)), init.name))
    assert any("scales must all be positive" in e for e in check_model(model).errors)


def test_trt_check_refuses_an_onnx_runtime_contrib_operator(int8_files: dict[str, Any]) -> None:
    """Mutant: operators of ONNX Runtime's com.microsoft domain were taken for standard ones."""
    from fsrfer_edge.export.trt_check import check_model

    model = _copy(int8_files["s8s8_tensor"])
    node = next(n for n in model.graph.node if n.op_type == "Relu")
    node.domain = "com.microsoft"
    assert any("operator domain 'com.microsoft' is not ONNX's" in e for e in check_model(model).errors)


def test_opset_range_is_what_every_table_parses() -> None:
    """Mutant: the range of the default tables was their union (opsets 1-20 for 8.5 and 10.1), not the
    opsets both parse."""
    from fsrfer_edge.export.trt_check import DEFAULT_TABLES, load_table, opset_range

    low, high = opset_range(DEFAULT_TABLES)
    assert low <= high
    for name in DEFAULT_TABLES:
        table = load_table(name)
        assert table.opset_min <= low and high <= table.opset_max

