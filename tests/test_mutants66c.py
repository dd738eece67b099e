"""Tests that kill hand-made mutants the rest of the suite let through (round 66c: INT8 quantization, its calibration
data and the export checks).

Each test checks a behaviour of ``fsrfer_edge.export.calib``, ``.quantize``, ``.check`` or ``.trt_check`` that a user
depends on but would not notice at once when it broke. Tiny synthetic arrays and ONNX graphs built with onnx.helper;
CPU only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.metadata import ModelInfo
from fsrfer_edge.preprocessing import Preprocessing, resize


# -- calibration data: pixels are rounded to the nearest grey level, as the runtime rounds them ----------------------
def test_uint8_model_input_rounds_pixels_to_the_nearest_level() -> None:
    """Mutant: to_model_input truncated float pixels to uint8 (100.7 -> 100), so a uint8-input model was calibrated
    on faces half a grey level darker than the runtime gives it."""
    from fsrfer_edge.export.calib import to_model_input

    info = ModelInfo(preprocessing=Preprocessing(), input_dtype="uint8")
    pixels = np.array([0.4, 99.5, 100.7, 254.6, 300.0, -3.0], np.float32).reshape(1, 1, 1, 6)
    out = to_model_input(pixels, info)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out.ravel(), [0, 100, 101, 255, 255, 0])


def test_calibration_crops_are_rounded_to_the_nearest_level() -> None:
    """Mutant: mix_factors truncated the anti-aliased small crop to uint8 instead of rounding it, so every calibration
    crop came out on average half a grey level darker than preprocessing.degrade's low-resolution face."""
    from fsrfer_edge.export.calib import mix_factors

    face = (np.add.outer(np.arange(24), np.arange(24)) * 5 % 256).astype(np.uint8)
    (small,) = mix_factors([face], [3])
    want = resize(face.astype(np.float32), (8, 8), "bicubic", antialias=True)
    np.testing.assert_array_equal(small, np.clip(np.rint(want), 0, 255).astype(np.uint8))


def test_a_factor_as_large_as_the_input_size_is_a_one_pixel_crop_not_refused(tmp_path: Path) -> None:
    """Mutant: calibration_inputs refused a factor equal to the model's input size (48 px faces at x48 are 1-pixel
    crops, as degrade accepts), telling the user to pick factors "from 1 to 48"."""
    from fsrfer_edge.errors import InputError
    from fsrfer_edge.export.calib import calibration_inputs

    faces = np.random.default_rng(0).integers(0, 256, size=(2, 48, 48)).astype(np.uint8)
    np.savez(tmp_path / "faces.npz", images=faces)
    info = ModelInfo(preprocessing=Preprocessing())
    out = calibration_inputs(tmp_path / "faces.npz", 0, [1, 48], info)
    assert out.shape == (2, 1, 48, 48) and out.dtype == np.float32
    with pytest.raises(InputError, match=r"calibration factors \[49\] exceed"):
        calibration_inputs(tmp_path / "faces.npz", 0, [1, 49], info)



def test_a_calibration_sample_is_the_same_faces_every_run(tmp_path: Path) -> None:
    """Mutant: load_faces drew its sample without the seed, so two exports of one model calibrated on different faces
    (INT8 files that differ from run to run) and the seed argument did nothing."""
    from fsrfer_edge.export.calib import load_faces

    faces = np.arange(40, dtype=np.uint8)[:, None, None] * np.ones((1, 4, 4), np.uint8)
    np.savez(tmp_path / "faces.npz", images=faces)

    def drawn(seed: int) -> list[int]:
        return [int(f[0, 0]) for f in load_faces(tmp_path / "faces.npz", size=5, seed=seed)]

    assert drawn(0) == drawn(0) == drawn(0)
    assert len({tuple(drawn(s)) for s in range(4)}) > 1

# -- export checks ---------------------------------------------------------------------------------------------------
def test_int8_check_needs_nine_in_ten_decisions_kept() -> None:
    """Mutant: the INT8 check let an INT8 file through that changed the class of 15% of the faces (the documented
    floor is 90% top-1 agreement)."""
    from fsrfer_edge.export.check import TOLERANCES, compare

    ref = np.eye(7, dtype=np.float32)[np.arange(20) % 7] * 4.0
    cand = ref.copy()
    cand[:3] = np.roll(ref[:3], 1, axis=1)  # 3 of 20 faces change class: 85% agreement
    assert compare(ref, cand, TOLERANCES["int8"])["passed"] is False
    cand = ref.copy()
    cand[:2] = np.roll(ref[:2], 1, axis=1)  # 2 of 20: 90%, the floor itself
    assert compare(ref, cand, TOLERANCES["int8"])["passed"] is True



def test_logit_tolerance_grows_with_the_largest_reference_logit() -> None:
    """Mutant: the logit tolerance was absolute (2e-2 for FP16 whatever the logits), so a model with logits around
    10 failed its FP16 check on differences of 0.05, well within FP16's relative precision."""
    from fsrfer_edge.export.check import TOLERANCES, compare

    ref = np.tile(np.linspace(-10, 10, 7, dtype=np.float32), (3, 1))
    report = compare(ref, ref + 0.05, TOLERANCES["fp16"])
    assert report["logit_scale"] == pytest.approx(10.0) and report["allowed_abs_diff"] == pytest.approx(0.2)
    assert report["passed"] is True
    assert compare(ref, ref + 0.25, TOLERANCES["fp16"])["passed"] is False

def test_a_near_tie_flipped_within_the_logit_tolerance_is_not_a_disagreement() -> None:
    """Mutant: an FP32 check counted a flip of two classes whose reference margin (1.5e-3) is under twice the logit
    tolerance (1e-3 each way), although both logits moved by less than the tolerance: a legitimate rounding flip
    failed the export."""
    from fsrfer_edge.export.check import TOLERANCES, compare

    ref = np.array([[0.5, 0.4985, 0.0]], np.float32)
    cand = np.array([[0.4993, 0.4994, 0.0]], np.float32)  # each logit within 1e-3; the top class flips
    report = compare(ref, cand, TOLERANCES["fp32"])
    assert report["top1_agreement"] == 0.0 and report["gated_agreement"] == 1.0 and report["passed"] is True
    wide = np.array([[0.5, 0.497, 0.0]], np.float32)  # a margin of 3e-3 cannot flip within tolerance
    assert compare(wide, np.array([[0.4985, 0.4986, 0.0]], np.float32), TOLERANCES["fp32"])["passed"] is False


def _runner(shift_random: float) -> Any:
    """A runner whose logits move by ``shift_random`` on noise-like pixels (std > 40) and not on smooth faces."""
    def run(pixels: np.ndarray) -> np.ndarray:
        logits = np.tile(np.linspace(0, 1, 7, dtype=np.float32), (len(pixels), 1))
        noisy = pixels.reshape(len(pixels), -1).std(1) > 40
        logits[noisy] += np.float32(shift_random)
        return logits
    return run


def test_fp16_is_checked_on_random_pixels_even_when_faces_are_given() -> None:
    """Mutant: every precision was gated on the faces alone when faces were given, so an FP16 file whose logits
    stray on the random inputs passed (only INT8, whose logits move by design, is gated on faces alone)."""
    from fsrfer_edge.export.check import ExportCheckError, check_step

    random = np.random.default_rng(0).integers(0, 256, size=(4, 1, 48, 48)).astype(np.float32)
    faces = np.full((4, 1, 48, 48), 120.0, np.float32)
    with pytest.raises(ExportCheckError, match=r"check onnx->fp16 \(fp16\) failed"):
        check_step("onnx->fp16", _runner(0.0), _runner(0.5), "fp16", random, faces)
    report = check_step("onnx->int8", _runner(0.0), _runner(0.5), "int8", random, faces)
    assert report["gated_on"] == ["faces"] and report["passed"] is True


def test_accuracy_gate_is_on_the_mean_over_factors_not_the_worst_factor() -> None:
    """Mutant: the INT8 gate refused a file whose worst factor dropped more than --max-int8-drop although the mean
    over factors (what the gate is documented to use; per-factor numbers on small sets are noisy) dropped less."""
    from fsrfer_edge.export.check import accuracy_gate

    table = {"fp32": {"x1": 80.0, "x8": 60.0, "mean": 70.0}, "int8": {"x1": 80.5, "x8": 58.5, "mean": 69.5}}
    report = accuracy_gate(table, "fp32", ["int8"], max_int8_drop=1.0)
    assert report["refused"] == [] and report["delta"]["int8"] == {"x1": 0.5, "x8": -1.5, "mean": -0.5}


def test_force_is_reported_only_when_it_overrode_a_refusal() -> None:
    """Mutant: the report said "forced" whenever --force was given, even when no INT8 file was refused."""
    from fsrfer_edge.export.check import accuracy_gate

    table = {"fp32": {"x1": 80.0, "mean": 80.0}, "int8": {"x1": 79.5, "mean": 79.5}}
    assert accuracy_gate(table, "fp32", ["int8"], max_int8_drop=1.0, force=True)["forced"] is False
    assert accuracy_gate(table, "fp32", ["int8"], max_int8_drop=0.1, force=True)["forced"] is True


def test_face_pixels_are_whole_grey_levels() -> None:
    """Mutant: face_pixels left the resize's fractions in, so a float graph and a uint8 graph (which rounds its
    input) were compared on different pixels."""
    from fsrfer_edge.export.check import face_pixels

    info = ModelInfo(preprocessing=Preprocessing())
    face = (np.add.outer(np.arange(20), np.arange(20)) * 7 % 256).astype(np.uint8)
    out = face_pixels([face], info)
    assert out.shape == (1, 1, 48, 48) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.rint(out))
    assert out.min() >= 0 and out.max() <= 255


# -- TensorRT check of a tiny Q/DQ graph: x -> Q -> DQ -> Conv(DQ(int8 weights, per channel on axis 0)) -------------
def _qdq_conv(opset: int = 17, act_zero_point: object = None, quantize_input: bool = True,
              extra_domains: tuple[tuple[str, int], ...] = ()) -> Any:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    zp = np.zeros((), np.int8) if act_zero_point is None else np.asarray(act_zero_point)
    inits = [numpy_helper.from_array(np.array([[[[3]]], [[[-5]]]], np.int8), "w_q"),
             numpy_helper.from_array(np.array([0.1, 0.2], np.float32), "w_scale"),
             numpy_helper.from_array(np.zeros(2, np.int8), "w_zp"),
             numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
             numpy_helper.from_array(zp, "x_zp")]
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], name="w_dq", axis=0)]
    if quantize_input:
        nodes += [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"], name="x_q"),
                  helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"], name="x_dq")]
    nodes.append(helper.make_node("Conv", ["x_dq" if quantize_input else "x", "w"], ["y"], name="conv"))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], inits)
    imports = [helper.make_opsetid(d, v) for d, v in extra_domains] + [helper.make_opsetid("", opset)]
    return helper.make_model(graph, opset_imports=imports)


def test_trt_check_takes_the_highest_opset_of_each_table() -> None:
    """Mutant: an opset equal to a table's highest (17 for TensorRT 8.5, the exporter's default) was refused."""
    from fsrfer_edge.export.trt_check import check_model

    report = check_model(_qdq_conv(opset=17))
    assert report.ok, report.errors
    errors = check_model(_qdq_conv(opset=18)).errors
    assert any("[tensorrt-8.5] opset 18 is outside" in e for e in errors), errors


def test_trt_check_reads_the_opset_of_the_onnx_domain() -> None:
    """Mutant: the check took the first opset import whatever its domain, so a file that also imports ONNX Runtime's
    com.microsoft domain (version 1) was refused for "opset 1"."""
    from fsrfer_edge.export.trt_check import check_model

    report = check_model(_qdq_conv(extra_domains=(("com.microsoft", 1),)))
    assert report.ok, report.errors


def test_trt_check_counts_a_layer_in_int8_only_when_data_and_weights_are_int8() -> None:
    """Mutant: a conv with INT8 weights but float input (no Q/DQ on its data) was reported as running in INT8."""
    from fsrfer_edge.export.trt_check import check_model

    both = check_model(_qdq_conv())
    assert (both.int8_layers, both.float_layers) == (["conv"], [])
    weights_only = check_model(_qdq_conv(quantize_input=False))
    assert (weights_only.int8_layers, weights_only.float_layers) == ([], ["conv"])



def test_trt_check_reads_a_missing_axis_as_onnx_default_of_one() -> None:
    """Mutant: a per-channel DequantizeLinear without an ``axis`` attribute was read as axis 0; ONNX (and TensorRT's
    parser) read it as axis 1, the input channels of a conv weight, which TensorRT does not take."""
    from fsrfer_edge.export.trt_check import check_model

    model = _qdq_conv()
    dq = next(n for n in model.graph.node if n.name == "w_dq")
    del dq.attribute[:]
    errors = check_model(model).errors
    assert any("'w_dq': per-channel scales on axis 1" in e for e in errors), errors

@pytest.mark.parametrize("zero_point, message", [(np.array(3, np.int8), "zero point is not 0"),
                                                 (np.array(0, np.uint8), "zero point is uint8")])
def test_trt_check_refuses_activation_zero_points_tensorrt_cannot_take(zero_point: np.ndarray, message: str) -> None:
    """Mutants: a non-zero int8 activation zero point, or a uint8 one (the u8s8 file for ONNX Runtime CPU), passed the
    TensorRT check (TensorRT takes symmetric int8 only)."""
    from fsrfer_edge.export.trt_check import check_model

    errors = check_model(_qdq_conv(act_zero_point=zero_point)).errors
    assert any(message in e for e in errors), errors


def test_calibration_factors_go_to_faces_in_a_seeded_shuffled_order() -> None:
    """Mutant: mix_factors handed the factors round in the archive's row order, whatever the seed, so faces stored in
    a regular order (by class, by subject) got their factor by that order; the seed changed nothing."""
    from fsrfer_edge.export.calib import mix_factors

    faces = [np.full((48, 48), 10 * i, np.uint8) for i in range(12)]

    def sides(seed: int) -> list[int]:
        return [f.shape[0] for f in mix_factors(faces, (1, 2, 4), seed=seed)]

    assert sides(0) == sides(0) and sorted(sides(0)) == [12] * 4 + [24] * 4 + [48] * 4
    assert len({tuple(sides(s)) for s in range(4)}) > 1
    assert sides(0) != [48, 24, 12] * 4  # not the row order


# -- INT8 files of the shipped model, calibrated on 6 faces (conftest.int8_files) ----------------------------------
def _weight_dtypes(model: Any) -> set[np.dtype]:
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    return {numpy_helper.to_array(inits[n.input[0]]).dtype for n in model.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in inits}


def test_u8s8_file_has_int8_weights(int8_files: dict[str, Any]) -> None:
    """Mutant: the u8s8 file stored its weights as uint8 (a u8u8 file, labelled u8s8: not the combination ONNX
    Runtime's CPU integer kernels are fast for)."""
    u8s8 = _weight_dtypes(int8_files["u8s8"])
    assert np.dtype(np.int8) in u8s8 and np.dtype(np.uint8) not in u8s8  # (and its biases int32)


@pytest.mark.parametrize("method, expected", [("percentile", "Percentile"), ("minmax", "MinMax")])
def test_calibration_method_reaches_onnx_runtime(int8_files: dict[str, Any], tmp_path: Any, method: str,
                                                 expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: calib_method "percentile" ran ONNX Runtime's min/max calibration, so the documented 99.999th-percentile
    ranges (which leave the rarest outliers out) were never used. (On a handful of calibration faces both give
    almost the same scales, so the choice is checked where it is handed to ONNX Runtime.)"""
    import onnxruntime.quantization as ortq  # type: ignore[import-untyped]

    from fsrfer_edge.errors import ModelError
    from fsrfer_edge.export import quantize
    from fsrfer_edge.recognizer import DEFAULT_MODEL

    seen = {}

    def fake_quantize_static(*args: object, **kwargs: object) -> None:
        seen.update(kwargs)
        raise RuntimeError("stopped after the call")

    monkeypatch.setattr(ortq, "quantize_static", fake_quantize_static)
    with pytest.raises(ModelError, match="stopped after the call"):
        quantize.quantize_int8(DEFAULT_MODEL, tmp_path / "x.onnx", int8_files["calib"], "s8s8", method)
    assert seen["calibrate_method"] == getattr(ortq.CalibrationMethod, expected)


def test_film_layers_stay_in_float_even_with_a_quantized_generator(int8_files: dict[str, Any]) -> None:
    """Mutant: FiLM was not among the always-float prefixes, so quantizing an early G (the default for one) quantized
    the factor-driven FiLM layers too (quantized, they misjudge the smallest faces)."""
    from fsrfer_edge.export.quantize import FILM_PREFIX, float_tail_nodes, module_path

    model = int8_files["fp32"]
    film = [n.name for n in model.graph.node if module_path(n.name).startswith(FILM_PREFIX)]
    kept = set(float_tail_nodes(model, generator=False))
    assert film and set(film) <= kept
    assert not any(module_path(n).startswith("/generator/stages.") for n in kept)


def test_nodes_after_a_global_average_pool_stay_in_float() -> None:
    """Mutant: GlobalAveragePool was not taken for the trunk's global pooling, so the head of a model pooled by it
    (rather than by ReduceMean) was quantized."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from fsrfer_edge.export.quantize import float_tail_nodes

    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="/trunk/Conv"),
             helper.make_node("Relu", ["c"], ["r"], name="/trunk/Relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="/pool/GlobalAveragePool"),
             helper.make_node("Flatten", ["p"], ["f"], name="/head/Flatten"),
             helper.make_node("Gemm", ["f", "g"], ["y"], name="/head/Gemm")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor("w", TensorProto.FLOAT, [2, 1, 1, 1], [1.0, 2.0]),
                               helper.make_tensor("g", TensorProto.FLOAT, [2, 3], [0.0] * 6)])
    kept = float_tail_nodes(helper.make_model(graph), image_conv=False)
    assert kept == ["/pool/GlobalAveragePool", "/head/Flatten", "/head/Gemm"]


def test_calibration_faces_that_all_take_one_path_of_a_routed_graph_are_refused(int8_files: dict[str, Any],
                                                                              tmp_path: Path) -> None:
    """Mutant: a routed graph was quantized when its calibration faces all took one path (the other path's tensors
    got no ranges: a broken INT8 file), as long as some path was taken."""
    from fsrfer_edge.errors import ModelError
    from fsrfer_edge.export.quantize import quantize_int8
    from fsrfer_edge.recognizer import DEFAULT_MODEL

    one_path = int8_files["calib"][3:]  # the synthetic 48 px faces only
    with pytest.raises(ModelError, match=r"all took one path of its routed graph \(faces per path: \[(0, 3|3, 0)\]\)"):
        quantize_int8(DEFAULT_MODEL, tmp_path / "x.onnx", one_path, "s8s8", "minmax")
    assert not (tmp_path / "x.onnx").exists()


def test_an_s8s8_file_tensorrt_would_refuse_is_not_written(int8_files: dict[str, Any], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: quantize_int8 wrote the s8s8 (TensorRT) file without heeding the TensorRT check's verdict."""
    from fsrfer_edge.errors import ModelError
    from fsrfer_edge.export import trt_check
    from fsrfer_edge.export.quantize import quantize_int8
    from fsrfer_edge.recognizer import DEFAULT_MODEL

    def failing(model: Any, source: str = "model", tables: Any = trt_check.DEFAULT_TABLES) -> Any:
        return trt_check.TrtCheckReport(source, list(tables), errors=["Conv 'x': a stand-in problem"])

    monkeypatch.setattr(trt_check, "check_model", failing)
    with pytest.raises(ModelError, match="would not build in TensorRT: Conv 'x': a stand-in problem; nothing was"):
        quantize_int8(DEFAULT_MODEL, tmp_path / "x.onnx", int8_files["calib"], "s8s8", "minmax")
    assert not (tmp_path / "x.onnx").exists()


def test_a_routed_graph_calibrates_with_histograms_in_small_batches(int8_files: dict[str, Any], tmp_path: Path) -> None:
    """Mutant: a routed graph was calibrated in batches of batch_size, so each path's tensors had a different number
    of rows in each batch and ONNX Runtime's histogram calibrators (percentile, entropy) failed to stack them."""
    from fsrfer_edge.export.quantize import quantize_int8
    from fsrfer_edge.recognizer import DEFAULT_MODEL

    info = quantize_int8(DEFAULT_MODEL, tmp_path / "p.onnx", int8_files["calib"], "s8s8", "percentile", batch_size=2)
    assert info.precision == "int8" and (tmp_path / "p.onnx").is_file()



@pytest.mark.parametrize("name, path", [
    ("/model/model/generator/films.0/Mul", "/generator/films.0/Mul"),  # a wrapper inside a wrapper
    ("/model/generator/films.0/Mul", "/generator/films.0/Mul"),
    ("/generator/films.0/Mul", "/generator/films.0/Mul"),
    ("/modelx/generator/Mul", "/modelx/generator/Mul"),  # not a wrapper: only "/model/" is one
])
def test_module_path_removes_every_model_wrapper(name: str, path: str) -> None:
    """Q20: removing one "/model" only left "/model/generator/..." for a twice-wrapped export, whose G, FiLM and
    keep-in-float prefixes were then missed."""
    from fsrfer_edge.export.quantize import module_path

    assert module_path(name) == path


@pytest.mark.parametrize("scheme, symmetric", [("u8s8", False), ("s8s8", True)])
def test_entropy_calibration_is_symmetric_for_tensorrt_only(int8_files: dict[str, Any], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, scheme: str,
                                                            symmetric: bool) -> None:
    """Q19: entropy ranges made symmetric for the u8s8 file (zero point 128 everywhere, half of uint8's levels
    unused by the non-negative activations after ReLU). The entropy search itself is replaced by a recorder (it
    takes minutes here): what matters is the range kind asked of it."""
    from fsrfer_edge.export import quantize
    from fsrfer_edge.recognizer import DEFAULT_MODEL

    asked: list[bool] = []

    def recorder(model_path: str, reader: Any, sym: bool, tmp: str) -> dict[str, list[dict[str, Any]]]:
        asked.append(sym)
        return {}

    monkeypatch.setattr(quantize, "_entropy_overrides", recorder)
    quantize.quantize_int8(DEFAULT_MODEL, tmp_path / f"{scheme}.onnx", int8_files["calib"], scheme, "entropy")
    assert asked == [symmetric]
