"""The TensorRT path per TensorRT version, against the version-faithful fakes in tests/fake_trt.

Each numbered test names the defect of issue 13 it guards (docs/tensorrt.md lists them with the
NVIDIA sources they were checked against). Builder, runtime and CUDA memory layer run for real;
only TensorRT and the CUDA libraries are fakes, shaped like 8.5.2 (JetPack 5), 8.6, 10.3 (JetPack 6)
and 11.x. Real-GPU runs are in test_tensorrt_gpu.py and test_engine_build.py.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import types
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
from _pids import exited_pid  # tests/ is on sys.path

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxsim")

from fsrfer_edge import Recognizer, engine_cache  # noqa: E402
from fsrfer_edge.backends import cuda_memory  # noqa: E402
from fsrfer_edge.backends.cuda_memory import (  # noqa: E402
    CudaPythonMemory,
    PyCudaMemory,
    select_memory,
)
from fsrfer_edge.backends.tensorrt_backend import TensorRTBackend  # noqa: E402
from fsrfer_edge.errors import EngineError, InputError, ModelError  # noqa: E402
from fsrfer_edge.export import cli, engine, quantize, trt_check  # noqa: E402
from fsrfer_edge.export.onnx_export import load_onnx  # noqa: E402
from fsrfer_edge.preprocessing import Preprocessing, resize  # noqa: E402

try:
    from .fake_trt import VERSIONS, fake_logits, install, make_tensorrt
    from .fake_trt.cuda import GPU_KEY, FakeCudart, make_fake_pycuda
except ImportError:
    from fake_trt import VERSIONS, fake_logits, install, make_tensorrt  # type: ignore[no-redef]
    from fake_trt.cuda import GPU_KEY, FakeCudart, make_fake_pycuda  # type: ignore[no-redef]


def _faces(n: int, seed: int) -> np.ndarray:
    coarse = np.random.default_rng(seed).uniform(0, 255, size=(n, 6, 6)).astype(np.float32)
    return np.clip(np.rint(resize(coarse, (48, 48))), 0, 255).astype(np.uint8)


def _both_paths(n: int, seed: int) -> np.ndarray:
    """``n`` smooth faces (judged down-sampled) then ``n`` sharp ones (judged 48 px): calibration faces that
    reach both paths of the routed shipped graph (a path without any would get no INT8 ranges). The sharp
    ones are synthetic 48 px faces: uniform noise is far sharper than any face, and the shipped estimator's
    fit (quadratic in its log statistics) puts it near x3."""
    from trainer.synthetic import make_faces

    sharp, _ = make_faces(n, seed=seed + 100)
    return np.concatenate([_faces(n, seed), sharp.astype(np.uint8)])


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny.{fp32,fp16,int8-s8s8,int8-u8s8}.onnx from one fsrfer-export run."""
    from trainer import checkpoint
    from trainer.models import InferenceModel

    d = tmp_path_factory.mktemp("trtv")
    torch.manual_seed(0)
    spec = {"method": "fsrfer", "backbone": "tiny"}
    model = InferenceModel(spec).eval()
    with torch.no_grad():
        model.fer.head.fc2.weight.mul_(20.0)
    checkpoint.save(d / "tiny.pt", checkpoint.model_payload(model, spec, Preprocessing(), {}))
    np.savez(d / "faces.npz", images=_faces(48, 1))
    assert cli.main([str(d / "tiny.pt"), "--out-dir", str(d), "--fp16", "--int8", "--calib", str(d / "faces.npz"),
                     "--calib-size", "32", "--calib-method", "minmax", "-q"]) == 0
    return d


class FakeGpu:
    """Installs a fake TensorRT of one version and fake CUDA layers."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, version: str, cudart: Optional[FakeCudart] = None,
                 pycuda: Optional[types.ModuleType] = None) -> None:
        self.trt = make_tensorrt(version)
        self.cudart = cudart if cudart is not None else FakeCudart()
        self.pycuda = pycuda if pycuda is not None else make_fake_pycuda()
        install(monkeypatch, self.trt, self.cudart, self.pycuda)


def _build(variants: Path, out: Path, variant: str, **kw: Any) -> Path:
    return engine.build_engine(variants / f"tiny.{variant}.onnx", out, 1, 4, 8, **kw)


def _sidecar(path: Path) -> dict[str, Any]:
    return dict(json.loads(engine_cache.sidecar_path(path).read_text()))


# ---------------------------------------------------------------------------------------------
# 1 and 8: the s8s8 file parses in TensorRT, with Q/DQ where NVIDIA's guidance puts them
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["8.5.2.2", "10.3.0.26"])
def test_1_s8s8_file_parses_in_tensorrt(variants: Path, version: str) -> None:
    path = variants / "tiny.int8-s8s8.onnx"
    model = load_onnx(path)
    inits = {t.name: t for t in model.graph.initializer}
    dq_inputs = [inits[n.input[0]].data_type for n in model.graph.node
                 if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert dq_inputs and set(dq_inputs) == {onnx.TensorProto.INT8}  # no INT32 bias behind a DequantizeLinear
    trt = make_tensorrt(version)
    network = trt.Builder(trt.Logger()).create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, trt.Logger())
    assert parser.parse(path.read_bytes()), [parser.get_error(i) for i in range(parser.num_errors)]
    report = trt_check.check_file(path)
    assert report.ok and report.int8_layers and set(report.int8_layers).isdisjoint(report.float_layers)


def test_8_qdq_on_weighted_inputs_and_residual_only(variants: Path) -> None:
    model = load_onnx(variants / "tiny.int8-s8s8.onnx")
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    # No op's output is quantized for its own sake: a QuantizeLinear after a weighted op or an Add
    # only exists as the residual input of an Add (a downsampling block's 1x1 shortcut Conv).
    for q in (n for n in model.graph.node if n.op_type == "QuantizeLinear"):
        src = producer.get(q.input[0])
        if src is not None and src.op_type in ("Conv", "Gemm", "MatMul", "Add"):
            readers = [c for dq in consumers[q.output[0]] for c in consumers[dq.output[0]]]
            assert readers and all(c.op_type == "Add" for c in readers), q.name
    # Every quantized Conv has both inputs dequantized; every residual Add has exactly one (the skip).
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.input[0] in producer
             and producer[n.input[0]].op_type == "DequantizeLinear"]
    assert convs and all(producer[n.input[1]].op_type == "DequantizeLinear" for n in convs)
    adds = [n for n in model.graph.node if n.op_type == "Add" and not n.name.startswith("/generator/")
            and any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input)]
    assert adds
    for add in adds:
        kinds = sorted(producer[i].op_type for i in add.input)
        assert kinds == ["Conv", "DequantizeLinear"], (add.name, kinds)


def test_8_residual_rule_picks_the_shortcut_of_a_downsampling_block() -> None:
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1, 1], [1.0])
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="conv1"),
             helper.make_node("Conv", ["a", "w"], ["b"], name="conv2"),  # branch
             helper.make_node("Conv", ["x", "w"], ["s"], name="shortcut")]
    for t in ("b", "s"):
        nodes += [helper.make_node("QuantizeLinear", [t, "sc", "zp"], [t + "_q"]),
                  helper.make_node("DequantizeLinear", [t + "_q", "sc", "zp"], [t + "_dq"])]
    nodes.append(helper.make_node("Add", ["s_dq", "b_dq"], ["y"], name="add"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 2])],
                              [w, helper.make_tensor("sc", TensorProto.FLOAT, [], [0.1]),
                               helper.make_tensor("zp", TensorProto.INT8, [], [0])])
    model = helper.make_model(graph)
    assert quantize.keep_residual_qdq_only(model) == 1
    add = next(n for n in model.graph.node if n.op_type == "Add")
    assert list(add.input) == ["s_dq", "b"]
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) == 1


# ---------------------------------------------------------------------------------------------
# The compatibility check (no GPU)
# ---------------------------------------------------------------------------------------------
def test_check_trt_cli_passes_good_files_and_refuses_a_broken_one(variants: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    for variant in ("fp32", "fp16", "int8-s8s8"):
        assert cli.main(["--check-trt", str(variants / f"tiny.{variant}.onnx")]) == 0
    out = capsys.readouterr().out
    assert "passed" in out and "in INT8: 0" in out
    # The u8s8 CPU file: uint8 zero points
    assert cli.main(["--check-trt", str(variants / "tiny.int8-u8s8.onnx")]) == 2
    err = capsys.readouterr().err
    assert "scheme 'u8s8'" in err and "tiny.int8-s8s8.onnx" in err and len(err.strip().splitlines()) == 1
    assert len(err) < 600  # one sentence, not one per quantized node (it was about 90 KB on the shipped model)
    # A broken file: an INT32 bias behind a DequantizeLinear, as ONNX Runtime's defaults make it.
    model = load_onnx(variants / "tiny.int8-s8s8.onnx")
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and len(n.input) == 3)
    from onnx import TensorProto, helper

    bias = next(t for t in model.graph.initializer if t.name == conv.input[2])
    n_out = bias.dims[0]
    model.graph.initializer.extend([
        helper.make_tensor("b_q", TensorProto.INT32, [n_out], [1] * n_out),
        helper.make_tensor("b_s", TensorProto.FLOAT, [n_out], [0.01] * n_out),
        helper.make_tensor("b_z", TensorProto.INT32, [n_out], [0] * n_out)])
    model.graph.node.insert(0, helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_z"], ["b_dq"], name="bias_dq", axis=0))
    conv.input[2] = "b_dq"
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    assert cli.main(["--check-trt", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fsrfer-export: error: broken.onnx would not build in TensorRT") and "bias_dq" in err
    assert "is INT32" in err and "takes INT8" in err and len(err.strip().splitlines()) == 1


def test_check_refuses_unsupported_op_opset_and_per_channel_activation(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    g = helper.make_graph([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
                           helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], axis=1),
                           helper.make_node("Hardmax", ["d"], ["y"])], "g", [x], [y],
                          [helper.make_tensor("s", TensorProto.FLOAT, [4], [0.1] * 4),
                           helper.make_tensor("z", TensorProto.INT8, [4], [0, 0, 0, 1])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    report = trt_check.check_model(model, "m.onnx")
    text = "\n".join(report.errors)
    assert "opset 21 is outside" in text and "Hardmax is not supported" in text
    assert "per-channel scales on an activation" in text and "zero point is not 0" in text


def test_check_reads_constant_of_shape_by_its_fill_value_not_its_shape_input() -> None:
    # ConstantOfShape's input is always an INT64 shape; TensorRT's table lists the types of the value.
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    outs = []
    for kind, value_type in (("f", TensorProto.FLOAT), ("d", TensorProto.DOUBLE)):
        outs.append(helper.make_tensor_value_info(kind, value_type, [2, 3]))
    g = helper.make_graph([helper.make_node("Shape", ["x"], ["s"]),
                           helper.make_node("ConstantOfShape", ["s"], ["f"],
                                            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
                           helper.make_node("ConstantOfShape", ["s"], ["d"],
                                            value=helper.make_tensor("w", TensorProto.DOUBLE, [1], [1.0]))],
                          "g", [x], outs)
    report = trt_check.check_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), "m.onnx")
    bad = [e for e in report.errors if "ConstantOfShape" in e]
    assert bad and all("is DOUBLE" in e for e in bad), report.errors  # the FP32 one passes, the DOUBLE one not


def test_check_passes_the_shipped_default_fp16_and_a_fresh_s8s8(tmp_path: Path) -> None:
    from fsrfer_edge.export.calib import faces_to_pixels, to_model_input
    from fsrfer_edge.export.onnx_export import read_model_info
    from fsrfer_edge.recognizer import DEFAULT_MODEL

    quantize.convert_fp16(DEFAULT_MODEL, tmp_path / "default.fp16.onnx")
    assert trt_check.check_file(tmp_path / "default.fp16.onnx").ok
    info = read_model_info(load_onnx(DEFAULT_MODEL))
    calib = to_model_input(faces_to_pixels(_both_paths(4, 3), info), info)
    quantize.quantize_int8(DEFAULT_MODEL, tmp_path / "default.int8-s8s8.onnx", calib, "s8s8", "minmax",
                           quantize_generator=False)
    report = trt_check.check_file(tmp_path / "default.int8-s8s8.onnx")
    assert report.ok, report.errors
    # The trunk's convolutions outside G run in INT8; G (kept float by default), the estimator, the head and
    # the conv that reads the image (quantize.image_conv_nodes) do not.
    convs = [n.name for n in load_onnx(DEFAULT_MODEL).graph.node if n.op_type == "Conv"]
    trunk = [n for n in convs if not n.startswith(("/generator/", "/factor_estimator/", "/stem/"))]
    assert trunk and set(trunk) <= set(report.int8_layers), (trunk, report.int8_layers)
    assert "/stem/stem.0/Conv" in report.float_layers
    assert any("/generator/" in n for n in report.float_layers)
    assert not any(n.startswith(("/generator/", "/factor_estimator/", "/head/")) for n in report.int8_layers)
    # With G quantized too (the default for an early G, as the shipped one), G's convolutions join them.
    assert quantize.generator_is_early(load_onnx(DEFAULT_MODEL))
    quantize.quantize_int8(DEFAULT_MODEL, tmp_path / "g.int8-s8s8.onnx", calib, "s8s8", "minmax")
    report = trt_check.check_file(tmp_path / "g.int8-s8s8.onnx")
    assert report.ok, report.errors
    g_convs = [n for n in convs if n.startswith("/generator/")]
    assert set(trunk + g_convs) <= set(report.int8_layers)


def test_export_of_the_shipped_checkpoint_writes_tensorrt_ready_files(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge.recognizer import DEFAULT_MODEL

    np.savez(tmp_path / "faces.npz", images=_both_paths(8, 4))
    assert cli.main([str(DEFAULT_MODEL.with_suffix(".pt")), "--name", "x", "--out-dir", str(tmp_path / "out"),
                     "--fp16", "--int8", "--calib", str(tmp_path / "faces.npz"), "--calib-size", "16",
                     "--calib-factors", "1",
                     "--calib-method", "minmax", "--int8-target", "both", "--int8-quantize-film", "-q"]) == 0
    out = capsys.readouterr().out
    assert "tensorrt check int8-s8s8" in out and "tensorrt check fp16" in out
    report = json.loads((tmp_path / "out" / "x.report.json").read_text())
    assert set(report["tensorrt_check"]) == {"fp32", "fp16", "int8-s8s8"}
    assert report["tensorrt_check"]["int8-s8s8"]["int8_layers"] >= 15
    assert report["calibration"]["generator"] == "int8"  # an early G is quantized unless --int8-float-g
    # --int8-quantize-film reaches the u8s8 file only; TensorRT's keeps FiLM in float.
    assert report["calibration"]["film_maps"] == {"s8s8": "float", "u8s8": "int8"}
    for f in ("x.fp16.onnx", "x.int8-s8s8.onnx"):
        assert trt_check.check_file(tmp_path / "out" / f).ok


def test_export_writes_nothing_when_a_file_fails_the_tensorrt_check(variants: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    real = trt_check.check_model

    def fp16_fails(model: Any, source: str = "model", tables: Any = trt_check.DEFAULT_TABLES) -> Any:
        report = real(model, source, tables)
        if source.endswith(".fp16.onnx"):
            report.errors.append("[tensorrt-8.5] Foo 'x': operator Foo is not supported")
        return report

    monkeypatch.setattr(trt_check, "check_model", fp16_fails)
    out = tmp_path / "out"
    assert cli.main([str(variants / "tiny.pt"), "--out-dir", str(out), "--fp16", "-q"]) == 2
    assert "tiny.fp16.onnx would not build in TensorRT" in capsys.readouterr().err
    assert not out.exists() or not list(out.glob("*.onnx"))


# ---------------------------------------------------------------------------------------------
# 2, 4, 9, 10, 11: builder and runtime per version
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_2_4_build_then_find_and_run_per_version(variants: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 version: str) -> None:
    gpu = FakeGpu(monkeypatch, version)
    for variant in ("fp16", "int8-s8s8"):
        built = _build(variants, tmp_path, variant)
        digest = engine_cache.sha256_file(variants / f"tiny.{variant}.onnx")[:engine_cache.SOURCE_DIGITS]
        assert built.name.startswith(f"tiny.{'int8' if variant.startswith('int8') else 'fp16'}.{digest}.trt{version}"
                                     f".sm87.{GPU_KEY}.")
        # 2: the runtime finds the engine from the file it was built from (stem "tiny", not "tiny.fp16")
        with TensorRTBackend.for_onnx(variants / f"tiny.{variant}.onnx", memory="cuda-python",
                                      search_dirs=[tmp_path]) as be:
            assert be.path == built
            # 4: on 8.5.2 with NumPy < 2, trt.nptype raises; the backend never calls it
            x = np.random.default_rng(0).standard_normal((5, 1, 48, 48)).astype(np.float32)
            np.testing.assert_allclose(be.infer(x), fake_logits(x), rtol=1e-5, atol=1e-5)
    if version.startswith("8.5"):
        with pytest.raises(AttributeError, match="bool"):
            gpu.trt.nptype(gpu.trt.DataType.FLOAT)


@pytest.mark.parametrize("version", ["8.5.2.2", "10.3.0.26"])
def test_build_logs_progress_where_tensorrt_reports_it(variants: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture, version: str) -> None:
    FakeGpu(monkeypatch, version)
    with caplog.at_level(logging.INFO, logger="fsrfer_edge.export.engine"):
        _build(variants, tmp_path, "fp16")
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("TensorRT build:")]
    if version.startswith("8."):  # no IProgressMonitor before 10.0
        assert progress == []
    else:
        assert progress[0] == "TensorRT build: Building engine (20 steps)" and progress[-1].endswith("20/20")


def test_9_foreign_timing_cache_is_replaced_not_passed_as_none(variants: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    FakeGpu(monkeypatch, "10.3.0.26")
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"timing-cache/8.5.2.2/entries")  # written by JetPack 5's TensorRT
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge.export.engine"):
        _build(variants, tmp_path, "fp16", timing_cache=cache)
    assert "another TensorRT version" in caplog.text
    assert cache.read_bytes().startswith(b"timing-cache/10.3.0.26/")


@pytest.mark.parametrize("version", VERSIONS)
def test_10_11_precision_flags_per_version(variants: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           version: str) -> None:
    gpu = FakeGpu(monkeypatch, version)
    docs = {v: _sidecar(_build(variants, tmp_path, v)) for v in ("fp32", "fp16", "int8-s8s8")}
    fp32_spec = gpu.trt.log["built"][0]
    assert "TF32" not in fp32_spec["flags"], "an fp32 engine must not run convolutions in TF32"  # 10
    assert "-TF32" in docs["fp32"]["builder_flags"]
    if version.startswith("11"):  # 11: no precision flags; strongly typed, types from the file
        assert docs["int8-s8s8"]["network"] == docs["fp16"]["network"] == "strongly typed"
    else:  # 8.5-10.x: weakly typed on purpose, so G and the head of the s8s8 file may run in FP16
        assert docs["int8-s8s8"]["network"] == "weakly typed"
        assert docs["int8-s8s8"]["builder_flags"] == ["INT8", "FP16"] and docs["fp16"]["builder_flags"] == ["FP16"]
    explicit = getattr(gpu.trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if version.startswith("8."):  # implicit batch still exists: explicit batch must be asked for
        assert all(f & (1 << int(explicit)) for f in gpu.trt.log["network_flags"])


# ---------------------------------------------------------------------------------------------
# 7 and 12: CUDA layers and engine identity
# ---------------------------------------------------------------------------------------------
def test_7_auto_memory_falls_back_to_pycuda_when_cuda_python_cannot_reach_the_driver(
        monkeypatch: pytest.MonkeyPatch) -> None:
    FakeGpu(monkeypatch, "10.3.0.26", cudart=FakeCudart(driver_error=35))
    with pytest.raises(EngineError, match="insufficient"):
        CudaPythonMemory(0)
    mem = select_memory("auto")
    assert isinstance(mem, PyCudaMemory)
    mem.close()
    assert engine.compute_capability(0) == "8.7"
    assert engine.gpu_identity(0).key == GPU_KEY


def test_7_auto_memory_reports_every_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeGpu(monkeypatch, "10.3.0.26", cudart=FakeCudart(driver_error=35), pycuda=make_fake_pycuda(init_error=True))
    with pytest.raises(EngineError, match=r"cuda-python: .*insufficient.* \| pycuda: .*cuInit"):
        select_memory("auto")


def test_12_device_is_restored_and_streams_do_not_block(variants: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = FakeGpu(monkeypatch, "10.3.0.26")
    builder_init = gpu.trt.Builder.__init__
    built_on: list[int] = []

    def builder_on_the_current_device(self: Any, logger: Any) -> None:
        built_on.append(gpu.cudart.current)  # TensorRT's builder takes the current device
        builder_init(self, logger)

    monkeypatch.setattr(gpu.trt.Builder, "__init__", builder_on_the_current_device)
    built = _build(variants, tmp_path, "fp16", device=1)
    assert built_on == [1]
    assert gpu.cudart.current == 0  # the builder's device probe left the caller's device alone
    with TensorRTBackend(built, device=1, memory="cuda-python") as be:
        assert gpu.cudart.current == 0
        be.infer(np.zeros((2, 1, 48, 48), np.float32))
        assert gpu.cudart.current == 0 and 1 in gpu.cudart.set_device_calls
        assert list(gpu.cudart.streams.values()) == [FakeCudart.cudaStreamNonBlocking]
    with TensorRTBackend(built, device=1, memory="pycuda"):
        assert gpu.pycuda.state["stream_flags"] == [1]  # CU_STREAM_NON_BLOCKING


def test_a_run_that_raises_waits_for_the_queued_copy_before_the_next_batch(variants: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """execute_async_v3 may raise instead of returning False; the input copy it follows is already queued from the
    pinned buffer that the next call refills, so the stream is synchronised before the error goes up."""
    FakeGpu(monkeypatch, "10.3.0.26")
    built = _build(variants, tmp_path, "fp16")
    with TensorRTBackend(built, memory="cuda-python") as be:
        synced: list[object] = []
        sync = be._mem.synchronize
        monkeypatch.setattr(be._mem, "synchronize", lambda stream: (synced.append(stream), sync(stream))[1])
        monkeypatch.setattr(be._context, "execute_async_v3", lambda handle: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            be.infer(np.zeros((2, 1, 48, 48), np.float32))
        assert synced == [be._stream]
        # The output copy failing (a CUDA error) is the same hazard: the input copy is queued before it.
        monkeypatch.undo()
        FakeGpu(monkeypatch, "10.3.0.26")
        monkeypatch.setattr(be._mem, "synchronize", lambda stream: (synced.append(stream), sync(stream))[1])

        def fails(*args: Any) -> None:
            raise EngineError("cudaMemcpyAsync failed")

        monkeypatch.setattr(be._mem, "dtoh_async", fails)
        with pytest.raises(EngineError, match="cudaMemcpyAsync"):
            be.infer(np.zeros((2, 1, 48, 48), np.float32))
        assert synced == [be._stream, be._stream]


def test_an_engine_refuses_a_batch_below_its_profile(variants: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine built for batches of 2-8 refuses a lone face with what to do (the base validation's check)."""
    FakeGpu(monkeypatch, "10.3.0.26")
    built = engine.build_engine(variants / "tiny.fp16.onnx", tmp_path, 2, 4, 8)
    with TensorRTBackend(built, memory="cuda-python") as be:
        with pytest.raises(InputError, match="received a batch of 1; this model accepts at least 2 at once"):
            be.infer(np.zeros((1, 1, 48, 48), np.float32))
        assert be.infer(np.zeros((2, 1, 48, 48), np.float32)).shape[0] == 2


def test_one_tensorrt_logger_serves_every_engine_and_build(variants: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorRT keeps a single logger pointer per process: every runtime and builder gets the same logger, which
    outlives any backend (a logger per engine would be freed with the first backend while the next still uses
    it; NVIDIA/TensorRT#4134)."""
    from fsrfer_edge.backends import tensorrt_backend

    gpu = FakeGpu(monkeypatch, "10.3.0.26")
    seen: list[object] = []
    real_builder = gpu.trt.Builder
    monkeypatch.setattr(gpu.trt, "Builder", lambda logger: (seen.append(logger), real_builder(logger))[1])
    built = _build(variants, tmp_path, "fp16")
    first = TensorRTBackend(built, memory="cuda-python")
    second = TensorRTBackend(built, memory="cuda-python")
    logger = first._trt_logger
    first.close()
    assert second._trt_logger is logger and seen == [logger]
    assert tensorrt_backend.shared_logger(gpu.trt) is logger
    second.close()
    assert TensorRTBackend(built, memory="cuda-python")._trt_logger is logger


def test_a_stream_handle_comes_from_cuda_bindings_where_it_can(monkeypatch: pytest.MonkeyPatch) -> None:
    """cuda-bindings 13 deprecates int(stream) for the address TensorRT takes; its utility is used where present."""
    class Stream:
        def __int__(self) -> int:
            raise DeprecationWarning("int(cuda_obj) is deprecated")

    utils = types.ModuleType("cuda.bindings.utils")
    utils.get_cuda_native_handle = lambda obj: 0xBEEF  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cuda.bindings.utils", utils)
    assert cuda_memory.native_handle(Stream()) == 0xBEEF
    monkeypatch.setitem(sys.modules, "cuda.bindings.utils", None)  # an older cuda-python: int() it is
    assert cuda_memory.native_handle(7) == 7


def test_12_engine_of_another_gpu_model_with_the_same_sm_is_refused(variants: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    FakeGpu(monkeypatch, "10.3.0.26")  # AGX Orin 64 GB
    built = _build(variants, tmp_path, "fp16")
    nano = FakeGpu(monkeypatch, "10.3.0.26", cudart=FakeCudart(sms=8, memory=8 * 2**30))  # Orin Nano 8 GB, sm87 too
    with pytest.raises(EngineError, match=rf"built on GPU {GPU_KEY}, but this GPU is orin-8sm-8g"):
        TensorRTBackend(built, memory="cuda-python")
    assert nano.trt.log["deserialized"] == []


def test_12_engine_with_an_extra_output_is_refused(variants: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = FakeGpu(monkeypatch, "10.3.0.26")
    built = _build(variants, tmp_path, "fp16")
    spec = json.loads(built.read_bytes())
    spec["outputs"].append("embedding")
    built.write_bytes(json.dumps(spec).encode())
    doc = _sidecar(built)
    doc["engine_sha256"] = engine_cache.sha256_file(built)
    engine_cache.sidecar_path(built).write_text(json.dumps(doc))
    with pytest.raises(EngineError, match=r"engine outputs are \['logits', 'embedding'\]; metadata expects exactly") as err:
        TensorRTBackend(built, memory="cuda-python")
    assert len(gpu.trt.log["deserialized"]) == 1
    # The failed load's traceback holds no execution context: close() released it, inside the CUDA context.
    tb, held = err.value.__traceback__, []
    while tb is not None:
        held += [v for v in tb.tb_frame.f_locals.values() if isinstance(v, gpu.trt.IExecutionContext)]
        tb = tb.tb_next
    assert held == []


# ---------------------------------------------------------------------------------------------
# Recognizer(): build on first use, cache, reload; stale or foreign engines rebuilt, never run
# ---------------------------------------------------------------------------------------------
def test_recognizer_auto_builds_once_caches_and_reloads(variants: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("FSRFER_ENGINE_DIR", str(cache))
    model = tmp_path / "face.onnx"  # an FP32 file, as the shipped default is
    model.write_bytes((variants / "tiny.fp32.onnx").read_bytes())
    gpu = FakeGpu(monkeypatch, "10.3.0.26")
    faces = _faces(6, 9)
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge"), Recognizer(model) as rec:
        assert rec.backend.name == "tensorrt" and rec.info.precision == "fp16"
        x = rec.prepare(faces)
        assert [p.index for p in rec.predict(faces)] == fake_logits(x).argmax(1).tolist()
    assert "first use" in caplog.text
    engines = sorted(cache.glob("*.engine"))
    digest = engine_cache.sha256_file(model)[:engine_cache.SOURCE_DIGITS]
    assert [e.name for e in engines] == [f"face.fp16.{digest}.trt10.3.0.26.sm87.{GPU_KEY}.b1-32-128.engine"]
    assert (cache / "timing.cache").is_file() and len(gpu.trt.log["built"]) == 1
    with Recognizer(model) as rec:  # second use: loaded from the cache, nothing built
        assert rec.backend.name == "tensorrt"
    assert len(gpu.trt.log["built"]) == 1
    # The model file changes: the cached engine is stale, rebuilt, and the stale one never ran.
    model.write_bytes((variants / "tiny.int8-s8s8.onnx").read_bytes())
    n_deser = len(gpu.trt.log["deserialized"])
    with Recognizer(model) as rec:
        assert rec.info.precision == "int8"
    assert len(gpu.trt.log["built"]) == 2 and len(gpu.trt.log["deserialized"]) == n_deser + 1
    assert json.loads(gpu.trt.log["deserialized"][-1])["precisions"] == ["int8"]
    # Another TensorRT (JetPack upgrade): engines of 10.3 are foreign, a new one is built for 11.
    gpu11 = FakeGpu(monkeypatch, "11.1.0.10")
    with Recognizer(model) as rec:
        assert rec.backend.name == "tensorrt"
    assert len(gpu11.trt.log["built"]) == 1 and len(gpu11.trt.log["deserialized"]) == 1


def test_processes_starting_at_once_build_one_engine(variants: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes that open a new model at once on a new device (camera or server workers) take turns at the
    build: one builds, the rest wait and load its engine, and the engine and its sidecar are one build's."""
    import multiprocessing

    cache = tmp_path / "cache"
    monkeypatch.setenv("FSRFER_ENGINE_DIR", str(cache))
    model = tmp_path / "face.onnx"
    model.write_bytes((variants / "tiny.fp32.onnx").read_bytes())
    FakeGpu(monkeypatch, "10.3.0.26")
    builds = tmp_path / "builds.txt"
    real = engine._build_serialized
    plans = iter(range(1000))

    def slow_build(*args: Any, **kwargs: Any) -> Any:  # long enough that the processes' first looks overlap
        with builds.open("a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(1.5)
        plan, record = real(*args, **kwargs)
        spec = dict(json.loads(plan), built_by=[os.getpid(), next(plans)])  # real builds differ in their bytes
        return json.dumps(spec).encode(), record

    monkeypatch.setattr(engine, "_build_serialized", slow_build)
    copies = tmp_path / "copies.txt"
    real_copy = engine.first_use_source

    def counted_copy(*args: Any) -> Any:
        with copies.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return real_copy(*args)

    monkeypatch.setattr(engine, "first_use_source", counted_copy)
    faces = _faces(4, 3)

    def worker(i: int) -> None:
        with Recognizer(model) as rec:
            (tmp_path / f"worker{i}.json").write_text(json.dumps(
                {"engine": str(rec.backend.path), "labels": [p.index for p in rec.predict(faces)]}))

    ctx = multiprocessing.get_context("fork")  # the children keep this process's fake TensorRT
    procs = [ctx.Process(target=worker, args=(i,)) for i in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    hung = [proc for proc in procs if proc.is_alive()]
    for proc in hung:
        proc.terminate()
    assert not hung and [proc.exitcode for proc in procs] == [0, 0, 0]
    assert len(builds.read_text().split()) == 1  # each built its own before
    assert len(copies.read_text().split()) == 1  # and the ones that waited made no FP16 copy: they found the engine
    done = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(3)]
    assert len({d["engine"] for d in done}) == 1 and len({tuple(d["labels"]) for d in done}) == 1
    path = Path(done[0]["engine"])
    engine_cache.check_engine(path, "10.3.0.26", _sidecar(path)["key"]["compute_capability"], model,
                              device=GPU_KEY)  # its sidecar describes the engine on disk


def test_build_lock_waits_then_gives_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with engine_cache.build_lock(tmp_path) as held:
        assert held
        with engine_cache.build_lock(tmp_path) as again:  # re-entrant in this thread (first use nests it)
            assert again
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # another process: it waits, says for whom, and after its limit goes on without the lock
            code = 1
            try:
                said: list[str] = []
                handler = logging.Handler()
                handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
                logging.getLogger("fsrfer_edge.engine_cache").addHandler(handler)
                t0 = time.monotonic()
                with engine_cache.build_lock(tmp_path, wait_s=0.6, poll_s=0.1) as other:
                    waited = time.monotonic() - t0
                told = sum(f"(pid {parent} on " in m for m in said)
                code = 0 if (not other and waited >= 0.6 and told == 2) else 2  # waiting, then building anyway
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert f"pid {os.getpid()} on " in (tmp_path / engine_cache.BUILD_LOCK_NAME).read_text()
        import threading

        got: list[bool] = []
        other_thread = threading.Thread(target=lambda: got.append(
            engine_cache.build_lock(tmp_path, wait_s=0.3, poll_s=0.05).__enter__()))
        other_thread.start()
        other_thread.join(10)
        assert got == [False]  # another thread of this process waits as another process does
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge.engine_cache"):
        with engine_cache.build_lock(tmp_path, wait_s=0) as held:  # released: taken at once, nothing said
            assert held
    assert not caplog.records
    (tmp_path / "a_file").write_bytes(b"")
    with engine_cache.build_lock(tmp_path / "a_file") as held:  # no folder to lock (or a read-only one): no lock
        assert not held


def test_a_waiter_that_gave_up_does_not_wait_again_in_nested_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """First use nests the lock three deep (lookup, FP16 copy, build_engine): a waiter that gave up on a stuck holder
    waited the whole limit again at each level (three hours, not the documented one)."""
    import threading

    monkeypatch.setattr(engine_cache, "BUILD_LOCK_WAIT_S", 0.4)
    taken, release = threading.Event(), threading.Event()

    def stuck_holder() -> None:
        with engine_cache.build_lock(tmp_path):
            taken.set()
            release.wait(30)

    holder = threading.Thread(target=stuck_holder)
    holder.start()
    try:
        assert taken.wait(10)
        with caplog.at_level(logging.WARNING, logger="fsrfer_edge.engine_cache"):
            with engine_cache.build_lock(tmp_path, poll_s=0.05) as outer:
                with engine_cache.build_lock(tmp_path, poll_s=0.05) as inner:
                    with engine_cache.build_lock(tmp_path, poll_s=0.05) as innermost:
                        pass
    finally:
        release.set()
        holder.join(10)
    assert (outer, inner, innermost) == (False, False, False)
    assert sum("building anyway" in r.getMessage() for r in caplog.records) == 1
    with engine_cache.build_lock(tmp_path, wait_s=0) as held:  # the holder is gone: taken at once, as before
        assert held


def test_prune_leaves_a_running_builds_hidden_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A first use's FP16 copy lives as long as its build, which can pass the grace period on a Jetson: while another
    process holds the folder's build lock, prune leaves hidden files alone; once it is free they go."""
    old = time.time() - 2 * engine_cache.UNFINISHED_GRACE_S
    copy = tmp_path / ".face.fp16.abc.tmp"
    copy.write_bytes(b"onnx")
    os.utime(copy, (old, old))
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the build
        try:
            with engine_cache.build_lock(tmp_path):
                os.write(ready_w, b"1")
                os.read(done_r, 1)
        finally:
            os._exit(0)
    os.read(ready_r, 1)
    try:
        with caplog.at_level(logging.WARNING, logger="fsrfer_edge.engine_cache"):
            assert engine_cache.prune(tmp_path) == ([], [])
        assert copy.exists() and not caplog.records  # asked, not waited: nothing said
    finally:
        os.write(done_w, b"1")
        os.waitpid(pid, 0)
    removed, errors = engine_cache.prune(tmp_path)
    assert [e.path for e in removed] == [copy] and not errors and not copy.exists()


def test_a_lock_file_another_user_made_is_locked_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / engine_cache.BUILD_LOCK_NAME).write_bytes(b"")
    real_open = os.open

    def not_for_writing(path: Any, flags: int, *args: Any) -> int:
        if str(path).endswith(engine_cache.BUILD_LOCK_NAME) and flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", not_for_writing)
    with engine_cache.build_lock(tmp_path) as held:
        assert held


def test_a_cached_engine_is_reused_where_the_lock_cannot_be_made(variants: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Engines in a folder this user may not write (an image's read-only engine folder) are still reused."""
    gpu = FakeGpu(monkeypatch, "10.3.0.26")
    first = _build(variants, tmp_path, "fp16")
    (tmp_path / engine_cache.BUILD_LOCK_NAME).unlink()
    real_open = os.open

    def refuse_lock(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(engine_cache.BUILD_LOCK_NAME):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_lock)
    assert _build(variants, tmp_path, "fp16") == first and len(gpu.trt.log["built"]) == 1
    # An engine that must be built there is refused before the build, not after it; on first use, before the
    # FP16 copy of an FP32 file is made there.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    with pytest.raises(EngineError, match="is not writable here"):
        _build(variants, tmp_path, "fp32")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(EngineError, match=f"{tmp_path} is not writable here"):
        TensorRTBackend.for_onnx(variants / "tiny.fp32.onnx", memory="cuda-python", build=True, cache_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before and len(gpu.trt.log["built"]) == 1


def test_the_cache_drops_what_can_never_run_again(variants: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A model updated in place leaves no engine behind on first use (nor the FP16 copy it was built from); the
    engines of an older TensorRT, lost sidecars and killed builds' partial files go with fsrfer-engines --prune,
    and nothing that may still run here (or on another GPU sharing the folder) goes."""
    from fsrfer_edge import engines_cli

    cache = tmp_path / "cache"
    monkeypatch.setenv("FSRFER_ENGINE_DIR", str(cache))
    model = tmp_path / "face.onnx"
    model.write_bytes((variants / "tiny.fp32.onnx").read_bytes())
    other = tmp_path / "other.onnx"
    other.write_bytes((variants / "tiny.fp16.onnx").read_bytes())
    gpu = FakeGpu(monkeypatch, "10.3.0.26")
    cache.mkdir()
    users = cache / "face.fp16.onnx"  # a file of the user's own of the name the FP16 copy once had
    users.write_bytes(b"the user's")
    with Recognizer(model) as rec:
        first = rec.backend.path
    with Recognizer(other) as rec:
        kept = rec.backend.path
    assert users.read_bytes() == b"the user's"
    assert sorted(p.name for p in cache.iterdir() if p.suffix in (".onnx", ".tmp")) == [users.name]  # no FP16 copy
    assert _sidecar(first)["source_path"] == os.path.abspath(model)
    # The same engine as another GPU model's (a folder shared by devices): its model file is not this machine's to
    # judge, and a rebuild still writing an engine (its sidecar older than it) is left alone too.
    shared = cache / first.name.replace(GPU_KEY, "orin-8sm-8g")
    shared.write_bytes(first.read_bytes())
    doc = _sidecar(first)
    doc["key"]["device"] = "orin-8sm-8g"
    engine_cache.sidecar_path(shared).write_text(json.dumps(doc))
    model.write_bytes((variants / "tiny.int8-s8s8.onnx").read_bytes())  # the model is updated in place
    with Recognizer(model) as rec:
        second = rec.backend.path
    assert second != first and not first.exists() and not engine_cache.sidecar_path(first).exists()
    assert kept.exists() and shared.exists() and len(gpu.trt.log["built"]) == 3
    shared.unlink()
    engine_cache.sidecar_path(shared).unlink()
    # Beside them: an engine of another GPU model (kept), a sidecar without its engine, engines without a
    # sidecar (one from a build still writing it, kept), one with a corrupt sidecar, a killed build's partial file.
    foreign = cache / kept.name.replace(GPU_KEY, "orin-8sm-8g")
    foreign.write_bytes(kept.read_bytes())
    doc = _sidecar(kept)
    doc["key"]["device"] = "orin-8sm-8g"
    engine_cache.sidecar_path(foreign).write_text(json.dumps(doc))
    (cache / "gone.fp16.0.engine.json").write_text("{}")
    old = time.time() - 2 * engine_cache.UNFINISHED_GRACE_S
    for name in ("lost.engine", "young.engine", "corrupt.engine", ".face.engine.x1.tmp"):
        (cache / name).write_bytes(b"plan")
        if name != "young.engine":
            os.utime(cache / name, (old, old))
    engine_cache.sidecar_path(cache / "corrupt.engine").write_bytes(b"\xff\xfe{not json")
    rebuilding = cache / "rebuilding.engine"  # renamed into place; its new sidecar not written yet
    rebuilding.write_bytes(b"new plan")
    engine_cache.sidecar_path(rebuilding).write_text(engine_cache.sidecar_path(kept).read_text())
    os.utime(engine_cache.sidecar_path(rebuilding), (old, old))
    stale = {e.path.name: e.stale for e in engine_cache.list_engines(cache, "10.3.0.26") if e.stale}
    assert set(stale) == {"gone.fp16.0.engine", "lost.engine", "corrupt.engine", ".face.engine.x1.tmp"}
    assert "no sidecar" in stale["lost.engine"] and "unreadable" in stale["corrupt.engine"]
    rebuilding.unlink()
    engine_cache.sidecar_path(rebuilding).unlink()
    # Sidecars written on another machine sharing the folder: their paths are not this machine's to judge.
    elsewhere = _sidecar(kept)
    elsewhere["source_host"] = "another-device"
    engine_cache.sidecar_path(kept).write_text(json.dumps(elsewhere))
    other.write_bytes(b"changed")
    assert engine_cache.list_engines(cache)[[e.path for e in engine_cache.list_engines(cache)].index(kept)].stale is None
    engine_cache.sidecar_path(kept).write_text(json.dumps(_sidecar(kept) | {"source_host": socket.gethostname()}))
    assert "changed since" in str({e.path: e.stale for e in engine_cache.list_engines(cache)}[kept])
    other.write_bytes((variants / "tiny.fp16.onnx").read_bytes())
    # JetPack upgrade: TensorRT 11 builds its own engine on first use; the 10.3 ones are judged stale only now.
    gpu11 = FakeGpu(monkeypatch, "11.1.0.10")
    with Recognizer(model) as rec:
        new = rec.backend.path
    assert second.exists() and len(gpu11.trt.log["built"]) == 1
    before = sorted(p.name for p in cache.iterdir())
    assert engines_cli.main(["--prune", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in cache.iterdir()) == before  # a dry run removes nothing
    assert f"{second.name} " in out and "built with TensorRT 10.3.0.26; TensorRT 11.1.0.10 is installed" in out
    assert "would remove 7 stale engine file(s)" in out  # second, kept, foreign, and the four above
    assert engines_cli.main(["--prune"]) == 0
    left = sorted(p.name for p in cache.iterdir() if not p.name.endswith(".cache"))
    # the build lock stays: removing a lock file another process may be waiting on would let two builds run
    assert left == sorted([new.name, engine_cache.sidecar_path(new).name, "young.engine", users.name,
                           engine_cache.BUILD_LOCK_NAME])
    with Recognizer(model) as rec:  # what is left still runs, and nothing is built again
        assert rec.backend.path == new
    assert len(gpu11.trt.log["built"]) == 1
    # A model deleted or moved away: its engine is stale only when asked.
    other.write_bytes((variants / "tiny.fp16.onnx").read_bytes())
    with Recognizer(other) as rec:
        mine = rec.backend.path
    other.unlink()
    assert engines_cli.main(["--prune"]) == 0 and mine.exists()
    assert engines_cli.main(["--prune", "--missing-sources"]) == 0 and not mine.exists()
    assert "no longer exists" in capsys.readouterr().out


def test_a_model_behind_a_switched_symlink_leaves_no_engine_behind(variants: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment that points current.onnx at each new version: the engine of the version it pointed at before
    goes on first use of the new one."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FSRFER_ENGINE_DIR", str(cache))
    FakeGpu(monkeypatch, "10.3.0.26")
    current = tmp_path / "current.onnx"
    current.symlink_to(variants / "tiny.fp16.onnx")
    with Recognizer(current) as rec:
        v1 = rec.backend.path
    current.unlink()
    current.symlink_to(variants / "tiny.int8-s8s8.onnx")
    with Recognizer(current) as rec:
        v2 = rec.backend.path
    assert not v1.exists() and sorted(cache.glob("*.engine")) == [v2]


def test_fsrfer_engines_refuses_what_it_cannot_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge import engines_cli
    from fsrfer_edge.metadata import ModelInfo

    with pytest.raises(SystemExit) as exit_:
        engines_cli.main(["--dry-run", "--dir", str(tmp_path)])
    assert exit_.value.code == 2 and "--dry-run only applies with --prune" in capsys.readouterr().err
    # Any other version's engines are pruned: "banana" or a short "10.3" removed every engine of the folder.
    key = engine_cache.EngineKey("10.3.0.26", "8.7", "fp16", 1, 32, 128, GPU_KEY)
    built = tmp_path / key.filename("face", "0" * 64)
    built.write_bytes(b"plan")
    engine_cache.write_sidecar(built, key, "0" * 64, ModelInfo())
    old = time.time() - 2 * engine_cache.UNFINISHED_GRACE_S
    for p in (built, engine_cache.sidecar_path(built)):
        os.utime(p, (old, old))
    for version in (" ", "banana", "10.3", "10.3.x"):
        with pytest.raises(SystemExit) as exit_:
            engines_cli.main(["--prune", "--tensorrt-version", version, "--dir", str(tmp_path)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and f"--tensorrt-version {version!r}; expected TensorRT's full version" in err
    assert built.exists()
    # The same release written shorter (as on some images) is a slip, not an upgrade: refused, nothing removed.
    for version in ("10.3.0", "10.3.0.26.1"):
        with pytest.raises(SystemExit) as exit_:
            engines_cli.main(["--prune", "--tensorrt-version", version, "--dir", str(tmp_path)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "10.3.0.26 is the same release written otherwise" in err
    assert built.exists()
    assert engines_cli.main(["--tensorrt-version", "10.3.0", "--dir", str(tmp_path)]) == 0  # listing: only judged
    capsys.readouterr()
    assert engines_cli.main(["--prune", "--tensorrt-version", "10.3.0.26", "--dir", str(tmp_path)]) == 0
    assert built.exists() and "removed 0 stale" in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    assert engines_cli.main(["--dir", str(tmp_path / "file")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    # A mistyped --dir said "0 engine file(s)"; the default cache folder is made on first use, so may be missing.
    with pytest.raises(SystemExit) as exit_:
        engines_cli.main(["--dir", str(tmp_path / "nothing-yet"), "--prune"])
    assert exit_.value.code == 2 and "--dir " + str(tmp_path / "nothing-yet") + " does not exist" in capsys.readouterr().err
    monkeypatch.setenv("FSRFER_ENGINE_DIR", str(tmp_path / "nothing-yet"))
    assert engines_cli.main(["--prune"]) == 0
    assert "0 engine file(s)" in capsys.readouterr().out


def test_fsrfer_engines_prune_removes_the_staging_folders_of_killed_exports(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str],
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    """fsrfer-export --engine writes into the folder fsrfer-engines prunes; an export killed by SIGKILL left its
    hidden staging folder (model files, tens of MB) there for good. The listing names it, --prune removes it, and
    a staging folder of a running export, of another machine or without an owner is left alone."""
    from fsrfer_edge import engines_cli

    gone = exited_pid()
    host = socket.gethostname()
    owners = {"killed00": f"pid {gone} on {host}\n", "running0": f"pid {os.getpid()} on {host}\n",
              "elsewher": f"pid {gone} on not-{host}\n", "olderver": None}
    for suffix, owner in owners.items():
        folder = tmp_path / f".face.staging-{suffix}"
        folder.mkdir()
        (folder / "face.fp32.onnx").write_bytes(b"x" * 1000)
        if owner is not None:
            (folder / ".owner").write_text(owner)
    killed = tmp_path / ".face.staging-killed00"
    argv = ["--dir", str(tmp_path), "--tensorrt-version", "10.3.0.26"]
    assert engines_cli.main(argv) == 0
    listed = capsys.readouterr().out
    assert killed.name in listed and "fsrfer-engines --prune removes them" in listed
    assert all(f".face.staging-{s}" not in listed for s in owners if s != "killed00")
    assert engines_cli.main(argv + ["--prune", "--dry-run"]) == 0
    assert killed.exists() and "would remove 1 staging folder" in capsys.readouterr().out
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge"):
        assert engines_cli.main(argv + ["--prune"]) == 0
    assert "removed 1 staging folder" in capsys.readouterr().out
    left = sorted(p.name for p in tmp_path.iterdir() if ".staging-" in p.name)
    assert left == sorted(f".face.staging-{s}" for s in owners if s != "killed00")
    assert [r.getMessage() for r in caplog.records if "staging" in r.getMessage() and str(killed) in r.getMessage()]


def test_two_files_of_one_name_keep_an_engine_each(variants: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A model's .fp32 and .fp16 files both build FP16 engines, and two versions of model.onnx share a cache:
    each file gets its own engine, so using them in turn builds each once (named by stem alone, each use
    found the other's engine stale and rebuilt it over it)."""
    monkeypatch.setenv("FSRFER_ENGINE_DIR", str(tmp_path / "cache"))
    gpu = FakeGpu(monkeypatch, "10.3.0.26")
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    first = tmp_path / "a" / "model.onnx"
    first.write_bytes((variants / "tiny.fp32.onnx").read_bytes())
    second = tmp_path / "b" / "model.onnx"
    second.write_bytes((variants / "tiny.fp16.onnx").read_bytes())  # another model.onnx, also built as FP16
    files = [variants / "tiny.fp32.onnx", variants / "tiny.fp16.onnx", first, second]
    for _ in range(2):
        for f in files:
            with Recognizer(f) as rec:
                assert rec.backend.name == "tensorrt"
    assert len(gpu.trt.log["built"]) == len(files) and len(list((tmp_path / "cache").glob("*.engine"))) == len(files)


def test_an_engine_tensorrt_cannot_load_is_rebuilt_by_the_builder_and_on_first_use(
        variants: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Sidecar checks pass (same TensorRT version string, GPU, ONNX file) but TensorRT cannot deserialise the
    plan (a CUDA 12 and a CUDA 13 build of one version): fsrfer-export --engine, which the load error tells the
    user to run, rebuilds it instead of answering "cached", and Recognizer rebuilds it on its own."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FSRFER_ENGINE_DIR", str(cache))
    model = tmp_path / "face.onnx"
    model.write_bytes((variants / "tiny.fp32.onnx").read_bytes())
    gpu = FakeGpu(monkeypatch, "10.3.0.26")

    def unreadable(engine: Path) -> None:  # another build's plan, with a sidecar that matches it
        spec = json.loads(engine.read_bytes())
        engine.write_bytes(json.dumps({**spec, "trt": "10.3.0.26+cuda13"}).encode())
        doc = _sidecar(engine)
        doc["engine_sha256"] = engine_cache.sha256_file(engine)
        engine_cache.sidecar_path(engine).write_text(json.dumps(doc))

    with Recognizer(model) as rec:
        engine = rec.backend.path
    unreadable(engine)
    with pytest.raises(EngineError, match="could not deserialise"):
        TensorRTBackend(engine, memory="cuda-python")
    with Recognizer(model) as rec:  # first use again: rebuilt in the cache, and run
        assert rec.backend.name == "tensorrt" and rec.backend.path == engine
        assert [p.index for p in rec.predict(_faces(3, 1))] == fake_logits(rec.prepare(_faces(3, 1))).argmax(1).tolist()
    assert len(gpu.trt.log["built"]) == 2
    fp16 = _build(variants, tmp_path, "fp16")
    unreadable(fp16)
    assert _build(variants, tmp_path, "fp16") == fp16 and len(gpu.trt.log["built"]) == 4
    assert _build(variants, tmp_path, "fp16") == fp16 and len(gpu.trt.log["built"]) == 4  # now cached
    TensorRTBackend(fp16, memory="cuda-python").close()
    # An unreadable FP16 engine beside the ONNX file (its first-use precision), preferred by its batch range: passed
    # over for the cache's, built once; later uses find the cache's without building again.
    from fsrfer_edge.export import engine as export_engine

    beside = export_engine.build_engine(variants / "tiny.fp16.onnx", tmp_path, 1, 32, 64, source_onnx=model)
    unreadable(beside)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fsrfer_edge"):
        for _ in range(2):
            with Recognizer(model) as rec:
                assert rec.backend.path == engine
    assert len(gpu.trt.log["built"]) == 5 and "first use" not in caplog.text  # no FP16 copy made again
    assert caplog.text.count("looking for another engine") == 2


def test_recognizer_auto_without_tensorrt_uses_onnxruntime_and_says_why(variants: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with caplog.at_level(logging.INFO, logger="fsrfer_edge"), Recognizer(variants / "tiny.fp32.onnx") as rec:
        assert rec.backend.name == "onnxruntime"
    lines = [r.getMessage() for r in caplog.records if "ONNX Runtime:" in r.getMessage()]
    assert len(lines) == 1 and "TensorRT is not installed" in lines[0]
    # TensorRT present, but the driver refuses every CUDA binding: ONNX Runtime, with the reason
    FakeGpu(monkeypatch, "10.3.0.26", cudart=FakeCudart(driver_error=35), pycuda=make_fake_pycuda(init_error=True))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fsrfer_edge"), Recognizer(variants / "tiny.int8-u8s8.onnx") as rec:
        assert rec.backend.name == "onnxruntime"
    assert "no CUDA binding can use GPU 0" in caplog.text


def test_recognizer_auto_keeps_u8s8_on_onnxruntime(variants: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = FakeGpu(monkeypatch, "10.3.0.26")
    with Recognizer(variants / "tiny.int8-u8s8.onnx") as rec:
        assert rec.backend.name == "onnxruntime"
    assert gpu.trt.log["built"] == []


def test_build_refuses_u8s8_and_broken_files_before_tensorrt(variants: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = FakeGpu(monkeypatch, "8.5.2.2")
    with pytest.raises(ModelError, match="s8s8"):
        _build(variants, tmp_path, "int8-u8s8")
    assert gpu.trt.log["built"] == []


def test_a_check_step_whose_outputs_differ_in_shape_says_so() -> None:
    """check_step's message showed only 'max|diff| nan (allowed None), top-1 agreement 0.000' for a candidate whose
    output has another shape: the reason compare() found was in the report but not in the error."""
    from fsrfer_edge.export.check import ExportCheckError, check_step

    pixels = np.zeros((4, 1, 48, 48), np.float32)
    with pytest.raises(ExportCheckError, match=r"output shapes differ: \(4, 7\) vs \(4, 8\)"):
        check_step("onnx->simplified", lambda x: np.zeros((len(x), 7), np.float32),
                   lambda x: np.zeros((len(x), 8), np.float32), "fp32", pixels)
