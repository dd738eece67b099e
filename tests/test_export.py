"""fsrfer-export on CPU: fused FP32 export, simplification, checks, FP16/INT8 variants, the INT8
accuracy gate, all-or-nothing writes, and the --engine path without TensorRT.

Uses tiny models (backbone "tiny") and synthetic faces the tests make; runs in well under a minute.
"""
from __future__ import annotations

import contextlib
import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxsim")

from fsrfer_edge.errors import BackendUnavailable, ConfigError, InputError, ModelError  # noqa: E402
from fsrfer_edge.export import check, cli, engine, quantize  # noqa: E402
from fsrfer_edge.export.onnx_export import (  # noqa: E402
    export_onnx,
    load_onnx,
    metadata_props,
    read_model_info,
    simplify,
)
from fsrfer_edge.metadata import METADATA_KEY, ModelInfo  # noqa: E402
from fsrfer_edge.preprocessing import Preprocessing, degrade, resize  # noqa: E402


def _make_checkpoint(path: Path, method: str) -> Path:
    from trainer import checkpoint
    from trainer.models import InferenceModel

    torch.manual_seed(0)
    spec = {"method": method, "backbone": "tiny"}
    model = InferenceModel(spec).eval()
    with torch.no_grad():  # spread the logits so top-1 decisions are not all near-ties
        model.fer.head.fc2.weight.mul_(20.0)
    checkpoint.save(path, checkpoint.model_payload(model, spec, Preprocessing(), {"note": "test"}))
    return path


def _faces(n: int, seed: int) -> np.ndarray:
    """Smooth synthetic 48x48 'faces' (uint8)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(n, 6, 6)).astype(np.float32)
    return np.clip(np.rint(resize(coarse, (48, 48))), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("export")
    _make_checkpoint(d / "tiny.pt", "fsrfer")
    _make_checkpoint(d / "sr.pt", "image_sr")
    images = _faces(96, 1)
    split = np.array(["train"] * 64 + ["val"] * 32)
    np.savez(d / "faces.npz", images=images, labels=np.random.default_rng(2).integers(0, 7, 96).astype(np.int8),
             split=split)
    return d


@pytest.fixture(scope="module")
def variants(work: Path) -> Path:
    """One CLI run making every variant (shared by several tests)."""
    out = work / "variants"
    rc = cli.main([str(work / "tiny.pt"), "--out-dir", str(out), "--fp16", "--int8", "--calib", str(work / "faces.npz"),
                   "--calib-size", "32", "--calib-method", "minmax", "--eval-data", str(work / "faces.npz"),
                   "--max-int8-drop", "100", "-q"])
    assert rc == 0
    return out


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"faces": x})[0]


@pytest.mark.parametrize("method", ["fsrfer", "image_sr"])
def test_fp32_export_matches_pytorch(work: Path, tmp_path: Path, method: str) -> None:
    ckpt = work / ("tiny.pt" if method == "fsrfer" else "sr.pt")
    info = export_onnx(ckpt, tmp_path / "m.onnx")
    assert info.method == method and info.precision == "fp32" and info.input_dtype == "float32"
    from fsrfer_edge.fileio import sha256_file as file_sha256
    from trainer.checkpoint import load_model

    assert info.checkpoint_sha256 == file_sha256(ckpt)
    model, _, _ = load_model(ckpt)
    pixels = np.concatenate([check.random_pixels(info, 16), check.face_pixels(_faces(16, 3), info)])
    rep = check.check_step("pytorch->onnx", check.torch_runner(model, info), check.onnx_runner(tmp_path / "m.onnx"),
                           "fp32", pixels)
    print(f"{method}: PyTorch vs ONNX max abs logit diff {rep['random']['max_abs_diff']:.2e}")
    assert rep["random"]["max_abs_diff"] <= 1e-4
    # dynamic batch axis
    x = info.preprocessing.normalize(pixels)
    assert _run(tmp_path / "m.onnx", x[:3]).shape == (3, 7)
    assert _run(tmp_path / "m.onnx", x).shape == (32, 7)


def test_simplified_matches_and_metadata_round_trips(work: Path, tmp_path: Path) -> None:
    info = export_onnx(work / "tiny.pt", tmp_path / "raw.onnx")
    simplify(tmp_path / "raw.onnx", tmp_path / "s.onnx")
    raw, simp = load_onnx(tmp_path / "raw.onnx"), load_onnx(tmp_path / "s.onnx")
    assert len(simp.graph.node) <= len(raw.graph.node)
    assert metadata_props(simp) == metadata_props(raw)  # onnxsim's own bookkeeping is dropped
    assert ModelInfo.from_props(metadata_props(simp)) == info == read_model_info(tmp_path / "s.onnx")
    assert simp.producer_name == "fsrfer-export" and METADATA_KEY in metadata_props(simp)
    # ONNX Runtime sees the same metadata the runtime will read
    sess = ort.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"])
    assert ModelInfo.from_props(sess.get_modelmeta().custom_metadata_map) == info
    pixels = check.random_pixels(info, 16)
    rep = check.check_step("onnx->simplified", check.onnx_runner(tmp_path / "raw.onnx"),
                           check.onnx_runner(tmp_path / "s.onnx"), "fp32", pixels)
    assert rep["passed"] and rep["random"]["max_abs_diff"] <= 1e-5


def test_uint8_input_matches_float(work: Path, tmp_path: Path) -> None:
    f_info = export_onnx(work / "tiny.pt", tmp_path / "f.onnx")
    u_info = export_onnx(work / "tiny.pt", tmp_path / "u.onnx", uint8_input=True)
    assert u_info.input_dtype == "uint8" and u_info.preprocessing == f_info.preprocessing
    model = load_onnx(tmp_path / "u.onnx")
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    pixels = check.face_pixels(_faces(8, 4), f_info)
    a = _run(tmp_path / "f.onnx", f_info.preprocessing.normalize(pixels))
    b = _run(tmp_path / "u.onnx", pixels.astype(np.uint8))
    assert np.abs(a - b).max() <= 1e-4


def test_int8_keeps_the_image_path_and_keep_float_prefixes_in_float(work: Path, tmp_path: Path) -> None:
    """The conv reading the image, and whatever runs on the image before it (the uint8 wrapper's
    normalisation, the flip wrapper's Concat), stay in float: nothing rounds the image to 8 bits before
    that conv. ``keep_float`` adds module-path prefixes and refuses one that names no node."""
    from fsrfer_edge.export import calib

    for uint8, flip in ((False, False), (True, False), (False, True)):
        export_onnx(work / "tiny.pt", tmp_path / "raw.onnx", uint8_input=uint8, flip=flip)
        simplify(tmp_path / "raw.onnx", tmp_path / "m.onnx")
        m = load_onnx(tmp_path / "m.onnx")
        convs = [n.name for n in m.graph.node if n.op_type == "Conv"]
        first = quantize.image_conv_nodes(m)
        assert len(first) == 1 and quantize.module_path(first[0]) == "/trunk/stem/stem.0/Conv" and first[0] == convs[0]
        assert set(first) <= set(quantize.image_path_nodes(m))
        info = read_model_info(tmp_path / "m.onnx")
        calib_x = calib.to_model_input(check.face_pixels(_faces(16, 5), info), info)
        quantize.quantize_int8(tmp_path / "m.onnx", tmp_path / "q.onnx", calib_x, "u8s8",
                               keep_float=("/trunk/layers/layers.1/",))
        q = load_onnx(tmp_path / "q.onnx")
        producer = {o: n for n in q.graph.node for o in n.output}
        # A quantized conv's weights come through a DequantizeLinear; a float conv's are an initializer.
        weights = {quantize.module_path(n.name): getattr(producer.get(n.input[1]), "op_type", "initializer")
                   for n in q.graph.node if n.op_type == "Conv"}
        assert weights["/trunk/stem/stem.0/Conv"] != "DequantizeLinear"
        kept = [k for k in weights if k.startswith("/trunk/layers/layers.1/")]
        assert kept and all(weights[k] != "DequantizeLinear" for k in kept)
        assert weights["/trunk/layers/layers.0/conv1/Conv"] == "DequantizeLinear"
        stem = next(n for n in q.graph.node if quantize.module_path(n.name) == "/trunk/stem/stem.0/Conv")
        above, todo = set(), [stem.input[0]]
        while todo:
            node = producer.get(todo.pop())
            if node is not None and node.name not in above:
                above.add(node.name)
                todo.extend(node.input)
        assert not any(producer_op == "QuantizeLinear" for producer_op in
                       (n.op_type for n in q.graph.node if n.name in above)), (uint8, flip)
    with pytest.raises(ConfigError, match="no node of the graph is under '/layer9/'"):
        quantize.quantize_int8(tmp_path / "m.onnx", tmp_path / "bad.onnx", calib_x, "u8s8", keep_float=("/layer9/",))
    assert not (tmp_path / "bad.onnx").exists()


def test_flip_folded_into_the_graph_averages_each_face_with_its_mirror_image(work: Path, tmp_path: Path) -> None:
    from fsrfer_edge.export.onnx_export import TEST_TIME_KEY

    export_onnx(work / "tiny.pt", tmp_path / "plain.onnx")
    info = export_onnx(work / "tiny.pt", tmp_path / "flip.onnx", flip=True)
    assert info == read_model_info(tmp_path / "plain.onnx")  # same ModelInfo: the SDK reads either alike
    assert "mirror" in metadata_props(load_onnx(tmp_path / "flip.onnx"))[TEST_TIME_KEY]
    assert TEST_TIME_KEY not in metadata_props(load_onnx(tmp_path / "plain.onnx"))
    x = info.preprocessing.normalize(check.face_pixels(_faces(5, 7), info))
    z, zm = _run(tmp_path / "plain.onnx", x), _run(tmp_path / "plain.onnx", np.ascontiguousarray(x[..., ::-1]))

    def softmax(a: np.ndarray) -> np.ndarray:
        e = np.exp(a - a.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    got = _run(tmp_path / "flip.onnx", x)
    np.testing.assert_allclose(np.exp(got), (softmax(z) + softmax(zm)) / 2, atol=1e-5)
    assert (np.abs(softmax(z) - softmax(zm)).max() > 1e-3)  # the mirror image does change the answer
    assert _run(tmp_path / "flip.onnx", x[:1]).shape == (1, 7)  # dynamic batch: pairs stay pairs
    np.testing.assert_allclose(_run(tmp_path / "flip.onnx", x[:1]), got[:1], atol=1e-5)
    # Through the CLI: the torch check compares against the flipped model, INT8 files are made and gated.
    out = tmp_path / "cli"
    assert cli.main([str(work / "tiny.pt"), "--out-dir", str(out), "--flip", "--int8", "--calib", str(work / "faces.npz"),
                     "--calib-size", "32", "--calib-method", "minmax", "-q"]) == 0
    report = json.loads((out / "tiny.report.json").read_text())
    stages = {c["stage"]: c["passed"] for c in report["checks"]}
    assert stages["pytorch->onnx"] and stages["onnx->simplified"] and "fp32->int8-u8s8" in stages
    for name in ("tiny.fp32.onnx", "tiny.int8-u8s8.onnx", "tiny.int8-s8s8.onnx"):
        assert TEST_TIME_KEY in metadata_props(load_onnx(out / name)), name
    np.testing.assert_allclose(_run(out / "tiny.fp32.onnx", x), got, atol=1e-5)
    with pytest.raises(ConfigError, match="--flip"):  # an .onnx source cannot be re-exported with a flip
        cli.run(cli.ExportOptions(source=out / "tiny.fp32.onnx", flip=True, engine=True))


def test_variants_written_with_metadata_and_run_on_cpu(variants: Path) -> None:
    files = sorted(p.name for p in variants.iterdir())
    assert files == ["tiny.fp16.onnx", "tiny.fp32.onnx", "tiny.int8-s8s8.onnx", "tiny.int8-u8s8.onnx",
                     "tiny.report.json", "tiny.scores.json"]
    expect = {"fp32": ("fp32", ""), "fp16": ("fp16", ""), "int8-s8s8": ("int8", "s8s8"), "int8-u8s8": ("int8", "u8s8")}
    x = Preprocessing().normalize(check.random_pixels(ModelInfo(), 4))
    for key, (precision, scheme) in expect.items():
        info = read_model_info(variants / f"tiny.{key}.onnx")
        assert (info.precision, info.int8_scheme, info.method) == (precision, scheme, "fsrfer")
        out = _run(variants / f"tiny.{key}.onnx", x)
        assert out.shape == (4, 7) and out.dtype == np.float32  # FP16 file keeps float32 I/O
    report = json.loads((variants / "tiny.report.json").read_text())
    stages = [c["stage"] for c in report["checks"]]
    assert stages == ["pytorch->onnx", "onnx->simplified", "fp32->fp16", "fp32->int8-s8s8", "fp32->int8-u8s8"]
    assert report["checks"][0]["random"]["max_abs_diff"] <= 1e-3
    assert set(report["accuracy"]["percent"]) == {"fp32", "fp16", "int8-s8s8", "int8-u8s8"}
    assert set(report["accuracy"]["percent"]["fp32"]) == {"x1", "x2", "x3", "x4", "x6", "x8", "mean"}
    assert report["files"]["int8-s8s8"]["model_info"]["int8_scheme"] == "s8s8"
    # A G on the layer3 map or the embedding stays in float unless asked; calibration covers every factor.
    assert not quantize.generator_is_early(load_onnx(variants / "tiny.fp32.onnx"))
    assert report["calibration"]["generator"] == "float"
    assert report["calibration"]["factors"] == [1, 2, 3, 4, 6, 8]


def test_with_eval_data_the_export_writes_the_confidence_maps_every_file_finds(variants: Path) -> None:
    from fsrfer_edge import Recognizer
    from fsrfer_edge.confidence import ScoreCalibration

    cal = ScoreCalibration.load(variants / "tiny.scores.json")
    report = json.loads((variants / "tiny.report.json").read_text())
    info = read_model_info(variants / "tiny.fp32.onnx")
    assert cal.kind == "logistic" and cal.factors == (1.0, 2.0, 3.0, 4.0, 6.0, 8.0) and cal.n == (32,) * 6  # val
    assert cal.checkpoint_sha256 == info.checkpoint_sha256 and report["score_calibration"]["file"] == "tiny.scores.json"
    # with 32 val faces no factor has the 100 marked ones a JPEG map of its own needs: none
    assert cal.jpeg_params is None and report["score_calibration"]["jpeg_params"] is None
    # the size estimate for crops an app enlarged itself, fitted on the same faces: it reads them smaller
    assert cal.size_weights is not None and report["score_calibration"]["size_weights"] == list(cal.size_weights)
    faces = _faces(8, 5)
    enlarged = np.clip(np.rint(degrade(faces, 8)), 0, 255)
    assert cal.estimated_factors(enlarged).mean() > cal.estimated_factors(faces).mean()
    for key in ("fp32", "fp16", "int8-u8s8"):
        with Recognizer(variants / f"tiny.{key}.onnx", threads=1) as rec:
            assert rec.score_calibration == cal
            assert rec.predict(_faces(1, 9)[0][::4, ::4])[0].confidence is not None   # a 12 px crop


def test_an_export_without_eval_data_writes_no_confidence_maps(work: Path, tmp_path: Path) -> None:
    assert cli.main([str(work / "tiny.pt"), "--out-dir", str(tmp_path), "-q"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.fp32.onnx", "tiny.report.json"]
    # an earlier export's maps left in the folder are named in the report as not this export's
    (tmp_path / "tiny.scores.json").write_text("{}")
    assert cli.main([str(work / "tiny.pt"), "--out-dir", str(tmp_path), "-q"]) == 0
    assert json.loads((tmp_path / "tiny.report.json").read_text())["stale_files"] == ["tiny.scores.json"]


def test_int8_zero_points_match_scheme(variants: Path) -> None:
    s8 = quantize.activation_zero_points(load_onnx(variants / "tiny.int8-s8s8.onnx"))
    u8 = quantize.activation_zero_points(load_onnx(variants / "tiny.int8-u8s8.onnx"))
    assert s8 and all(z.dtype == np.int8 and np.all(z == 0) for z in s8)
    assert u8 and all(z.dtype == np.uint8 for z in u8)
    with pytest.raises(ModelError, match="uint8"):
        quantize.check_zero_points(load_onnx(variants / "tiny.int8-u8s8.onnx"), "s8s8", "u8s8 file")


def test_int8_gate_refuses_and_force_overrides(work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    measured = check.accuracy_table

    def int8_loses_points(*args: object, **kwargs: object) -> dict:  # the tiny model loses none
        table = measured(*args, **kwargs)
        return {k: {f: v - 5 if k.startswith("int8") else v for f, v in row.items()} for k, row in table.items()}

    monkeypatch.setattr(check, "accuracy_table", int8_loses_points)
    out = tmp_path / "out"
    out.mkdir()
    args = [str(work / "tiny.pt"), "--out-dir", str(out), "--int8", "--int8-target", "cpu", "--calib",
            str(work / "faces.npz"), "--calib-size", "16", "--calib-method", "minmax", "--eval-data",
            str(work / "faces.npz"), "--max-int8-drop", "1", "-q"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("fsrfer-export: error: INT8 accuracy drop exceeds --max-int8-drop 1.0") and "Traceback" not in err
    assert "(-5.00 points)" in err
    assert list(out.iterdir()) == []  # nothing half-written, no staging folder left
    assert cli.main(args + ["--force"]) == 0
    report = json.loads((out / "tiny.report.json").read_text())
    assert report["accuracy"]["gate"]["forced"] is True and report["accuracy"]["gate"]["refused"] == ["int8-u8s8"]
    assert (out / "tiny.int8-u8s8.onnx").is_file()


def test_entropy_calibration(variants: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.export.calib import to_model_input

    monkeypatch.setattr(quantize, "ENTROPY_BINS", 256)  # the KL search is O(bins^2) per tensor: keep it fast
    info = read_model_info(variants / "tiny.fp32.onnx")
    x = to_model_input(check.face_pixels(_faces(16, 5), info), info)
    out = quantize.quantize_int8(variants / "tiny.fp32.onnx", tmp_path / "e.onnx", x, "s8s8", "entropy")
    assert (out.precision, out.int8_scheme) == ("int8", "s8s8")
    quantize.check_zero_points(load_onnx(tmp_path / "e.onnx"), "s8s8", "entropy file")
    minmax = quantize.quantize_int8(variants / "tiny.fp32.onnx", tmp_path / "m.onnx", x, "s8s8", "minmax")
    assert minmax == out
    scales = [quantize._activation_scales(load_onnx(tmp_path / f)) for f in ("e.onnx", "m.onnx")]
    assert scales[0] != scales[1]  # the entropy search clipped some ranges, unlike ORT's 128-bin default
    with pytest.raises(ConfigError, match="calibration method"):
        quantize.quantize_int8(variants / "tiny.fp32.onnx", tmp_path / "x.onnx", x, "s8s8", "kl")
    with pytest.raises(InputError, match="dtype"):
        quantize.quantize_int8(variants / "tiny.fp32.onnx", tmp_path / "x.onnx", x.astype(np.float64), "s8s8")
    with pytest.raises(ModelError, match="FP32"):
        quantize.quantize_int8(tmp_path / "e.onnx", tmp_path / "x.onnx", x, "s8s8")


def test_int8_calibration_inputs_of_the_wrong_shape_or_not_finite_are_clear_errors(variants: Path,
                                                                                   tmp_path: Path) -> None:
    """Faces without their channel axis or of another size failed inside ONNX Runtime ("Invalid rank for input"),
    and NaN pixels as its "AssertionError: scale issue"; a routed graph's probe run raised ONNX Runtime's own error."""
    src = variants / "tiny.fp32.onnx"
    for bad, words in ((np.zeros((8, 48, 48), np.float32), r"shape \(8, 48, 48\); .*takes \(N, 1, 48, 48\)"),
                       (np.zeros((8, 1, 32, 32), np.float32), r"shape \(8, 1, 32, 32\); .*takes \(N, 1, 48, 48\)"),
                       (np.full((8, 1, 48, 48), np.nan, np.float32), "NaN or infinite")):
        with pytest.raises(InputError, match=words):
            quantize.quantize_int8(src, tmp_path / "x.onnx", bad, "s8s8", "minmax")
    assert not (tmp_path / "x.onnx").exists()


def test_failed_export_leaves_nothing(work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    import onnxsim

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated onnxsim crash")

    monkeypatch.setattr(onnxsim, "simplify", broken)
    out = tmp_path / "new" / "out"
    assert cli.main([str(work / "tiny.pt"), "--out-dir", str(out), "--fp16", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fsrfer-export: error: onnxsim failed") and "--no-simplify" in err
    assert not out.exists()
    # The explicit opt-out works and is the only way past a broken onnxsim.
    assert cli.main([str(work / "tiny.pt"), "--out-dir", str(out), "--no-simplify", "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["tiny.fp32.onnx", "tiny.report.json"]


def test_check_raises_with_numbers() -> None:
    ref = lambda px: np.tile(np.arange(7, dtype=np.float32), (len(px), 1))  # noqa: E731
    off = lambda px: ref(px) + 0.01  # noqa: E731
    pixels = check.random_pixels(ModelInfo(), 4)
    with pytest.raises(check.ExportCheckError, match=r"max\|diff\| 0\.01") as e:
        check.check_step("a->b", ref, off, "fp32", pixels)
    assert e.value.report["random"]["max_abs_diff"] == pytest.approx(0.01, rel=1e-3)
    assert check.check_step("a->b", ref, off, "fp16", pixels)["passed"]  # within FP16 tolerance


def test_corrupt_checkpoint_is_model_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="could not be read"):
        export_onnx(bad, tmp_path / "x.onnx")
    assert cli.main([str(bad), "--out-dir", str(tmp_path / "o"), "-q"]) == 2
    assert capsys.readouterr().err.startswith("fsrfer-export: error: checkpoint")
    assert not (tmp_path / "o").exists() and not (tmp_path / "x.onnx").exists()


def test_bad_options_are_config_errors(work: Path, variants: Path) -> None:
    with pytest.raises(ConfigError, match="--calib"):
        cli.run(cli.ExportOptions(source=work / "tiny.pt", int8=True))
    with pytest.raises(ConfigError, match="--engine"):
        cli.run(cli.ExportOptions(source=variants / "tiny.fp32.onnx", fp16=True))


def _real_tensorrt() -> bool:
    try:
        engine.import_tensorrt()
    except BackendUnavailable:
        return False
    return True


@pytest.mark.skipif(_real_tensorrt(), reason="TensorRT is installed: tests/test_engine_build.py covers --engine")
def test_engine_without_tensorrt(work: Path, variants: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main([str(variants / "tiny.fp32.onnx"), "--engine", "--out-dir", str(tmp_path / "e"), "-q"])
    err = capsys.readouterr().err
    assert rc != 0 and "TensorRT is not installed here" in err and "fsrfer-export --engine tiny.fp32.onnx" in err
    # From a checkpoint: refused before the export (it used to write the ONNX files, then fail without
    # saying so), naming the file the engine would be built from and how to get the ONNX files alone.
    out = tmp_path / "o"
    assert cli.main([str(work / "tiny.pt"), "--out-dir", str(out), "--fp16", "--engine", "-q"]) == 2
    err = capsys.readouterr().err
    assert "TensorRT is not installed" in err and "--engine tiny.fp16.onnx" in err and "leave out --engine" in err
    assert not out.exists()


def test_engine_refuses_u8s8_before_needing_tensorrt(variants: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"tiny\.int8-s8s8\.onnx"):
        engine.build_engine(variants / "tiny.int8-u8s8.onnx", tmp_path)
    assert engine.model_stem("face.int8-s8s8.onnx") == "face" and engine.model_stem("face.onnx") == "face"


def test_calibration_from_image_folder(tmp_path: Path) -> None:
    pil = pytest.importorskip("PIL.Image")
    from fsrfer_edge.export import calib

    for i, face in enumerate(_faces(5, 7)):
        pil.fromarray(face).save(tmp_path / f"{i}.png")
    pil.fromarray(np.zeros((30, 20, 3), np.uint8)).save(tmp_path / "rgb.jpg")
    faces = calib.load_faces(tmp_path, size=4)
    assert len(faces) == 4
    pixels = calib.faces_to_pixels(faces, ModelInfo())
    assert pixels.shape == (4, 1, 48, 48)
    u8 = calib.to_model_input(pixels, ModelInfo(input_dtype="uint8"))
    assert u8.dtype == np.uint8
    from fsrfer_edge.errors import DataError

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        calib.load_faces(tmp_path / "empty")
    # A 16-bit gray face is scaled to 8 bits, not clipped (Pillow's convert("L") would make it almost white).
    deep = tmp_path / "deep"
    deep.mkdir()
    ramp = np.tile(np.linspace(0, 65535, 48).astype(np.uint16), (48, 1))
    pil.fromarray(ramp).save(deep / "ramp.png")
    (face,) = calib.load_faces(deep)
    np.testing.assert_array_equal(face, (ramp >> 8).astype(np.uint8))


def test_damaged_or_tiny_calibration_data_and_a_file_as_out_dir_are_clear_errors(
        work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from fsrfer_edge.errors import DataError
    from fsrfer_edge.export import calib

    good = tmp_path / "good.npz"
    np.savez(good, images=np.stack(_faces(5, 7)))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    single = tmp_path / "single.npy"
    np.save(single, np.stack(_faces(5, 7)))
    for bad, words in ((truncated, "could not be read|damaged"), (tmp_path / "empty.npz", "could not be read"),
                       (single, "not an .npz archive")):
        if bad.name == "empty.npz":
            bad.write_bytes(b"")
        with pytest.raises(DataError, match=words):
            calib.load_faces(bad)
    assert cli.main([str(work / "tiny.pt"), "--int8", "--calib", str(truncated), "--out-dir", str(tmp_path / "o"),
                     "-q"]) == 2
    assert capsys.readouterr().err.startswith("fsrfer-export: error: ")
    # Five faces for six factors: refused; fewer than --calib-size asks for: used, with a warning.
    with pytest.raises(DataError, match="5 calibration face.*at least one per down-sample factor"):
        calib.calibration_inputs(good, 256, (1, 2, 3, 4, 6, 8), ModelInfo())
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge.export.calib"):
        assert len(calib.calibration_inputs(good, 256, (1, 2), ModelInfo())) == 5
    assert "uses all 5 faces" in caplog.text
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        assert cli.main([str(work / "tiny.pt"), "--out-dir", str(out), "-q"]) == 2
        assert "is a file; expected a folder" in capsys.readouterr().err


def test_full_disk_is_one_error_line_and_leaves_no_output(work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import errno

    from fsrfer_edge import fileio

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full)
    out = tmp_path / "o"
    assert cli.main([str(work / "tiny.pt"), "--out-dir", str(out), "-q"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert not out.exists()
    monkeypatch.undo()
    # The disk fills up only at the report, the last file: no model file reaches the folder without it.
    monkeypatch.setattr(cli, "write_report", lambda path, report: full(0))
    assert cli.main([str(work / "tiny.pt"), "--out-dir", str(out), "-q"]) == 2
    assert not out.exists()


def test_parser_defaults_are_export_options_defaults_and_every_option_has_help() -> None:
    """Defaults are written twice (ExportOptions for library callers, the parser for --help): they must agree."""
    import dataclasses

    parser = cli.build_parser()
    fields = {f.name: f.default for f in dataclasses.fields(cli.ExportOptions) if f.name != "source"}
    for action in parser._actions:
        if action.dest in fields:
            assert action.default == fields[action.dest], action.dest
        if action.option_strings and action.dest != "help":
            assert action.help, f"{action.option_strings} has no help text"


def test_calibration_mixes_every_factor_as_small_crops() -> None:
    from fsrfer_edge.errors import InputError
    from fsrfer_edge.export import calib
    from fsrfer_edge.preprocessing import degrade

    faces = list(_faces(12, 3))
    mixed = calib.mix_factors(faces, (1, 2, 4))
    sides = sorted(f.shape[0] for f in mixed)
    assert sides == [12] * 4 + [24] * 4 + [48] * 4  # each factor gets a third of the faces
    for face, small in zip(faces, mixed):
        assert small.dtype == np.uint8 and small.shape[0] == small.shape[1]
        f = 48 // small.shape[0]
        # the runtime's resize of the small crop is the bicubic protocol's low-resolution face
        back = Preprocessing().to_pixels([small])[0, 0]
        assert np.abs(back - degrade(face.astype(np.float32), f)).mean() < 1.5
    assert [a.shape for a in calib.mix_factors(faces, (4,), seed=5)] == [(12, 12)] * 12
    rgb = calib.mix_factors([np.zeros((48, 40, 3), np.uint8)], (8,))
    assert rgb[0].shape == (6, 5, 3)
    assert all(a is b for a, b in zip(calib.mix_factors(faces, (1,)), faces))
    for bad in ((), (0,), (2.5,)):
        with pytest.raises(InputError, match="factor"):
            calib.mix_factors(faces, bad)


def test_import_is_light() -> None:
    code = ("import sys, fsrfer_edge.export, fsrfer_edge.export.cli; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'onnxsim', 'tensorrt') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Engine builder logic against a fake TensorRT (the real one is covered by test_engine_build.py)
# ---------------------------------------------------------------------------------------------


def _fake_tensorrt(flavour: str) -> object:
    """A stand-in ``tensorrt`` module with the API shape of TensorRT 8.5, 10.x or 11.x."""
    import types

    calls: dict[str, list] = {"network_flags": [], "flags": [], "pool": [], "shapes": [], "cache": []}
    mod = types.ModuleType("tensorrt")
    mod.__version__ = {"8.5": "8.5.2.2", "10": "10.3.0", "11": "11.3.0"}[flavour]
    mod.calls = calls

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            pass

    creation = {"8.5": {"EXPLICIT_BATCH": 0}, "10": {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1},
                "11": {"STRONGLY_TYPED": 1}}[flavour]
    mod.NetworkDefinitionCreationFlag = types.SimpleNamespace(**creation)
    mod.BuilderFlag = types.SimpleNamespace(**({} if flavour == "11" else {"FP16": "FP16", "INT8": "INT8"}))
    mod.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    mod.Dims = lambda shape: tuple(shape)

    class Cache:
        def serialize(self) -> bytes:
            return b"timing-cache"

    class Config:
        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            calls["pool"].append((pool, size))

        def set_flag(self, flag: str) -> None:
            calls["flags"].append(flag)

        def add_optimization_profile(self, profile: object) -> int:
            return 0

        def create_timing_cache(self, data: bytes) -> Cache:
            calls["cache"].append(bytes(data))
            return Cache()

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> bool:
            return True

        def get_timing_cache(self) -> Cache:
            return Cache()

    class Profile:
        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
            calls["shapes"].append((name, lo, opt, hi))

    class Network:
        num_inputs = 1

        def get_input(self, i: int) -> object:
            return types.SimpleNamespace(name="faces")

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, flags: int = 0) -> Network:
            calls["network_flags"].append(flags)
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            return b"engine-bytes"

    if flavour == "8.5":
        Builder.max_batch_size = 1  # implicit batch still exists

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: Network, logger: Logger) -> None:
            pass

        def parse(self, data: bytes) -> bool:
            return data[:1] != b""

    class Runtime:  # reads back what Builder writes; None for anything else, as TensorRT answers a foreign plan
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> object:
            return object() if bytes(data) == b"engine-bytes" else None

    mod.Logger, mod.Builder, mod.OnnxParser, mod.Runtime = Logger, Builder, OnnxParser, Runtime
    return mod


@pytest.mark.parametrize("flavour", ["8.5", "10", "11"])
def test_engine_builder_logic_with_fake_tensorrt(variants: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture, flavour: str) -> None:
    import logging

    from fsrfer_edge import engine_cache

    fake = _fake_tensorrt(flavour)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    from fsrfer_edge.backends.cuda_memory import DeviceIdentity

    @contextlib.contextmanager
    def orin(device: int = 0) -> Iterator[DeviceIdentity]:
        yield DeviceIdentity("8.7", "Orin", 16, 64)

    monkeypatch.setattr(engine, "on_device", orin)
    calls = fake.calls  # type: ignore[attr-defined]
    built = {}
    for variant in ("fp32", "fp16", "int8-s8s8"):
        built[variant] = engine.build_engine(variants / f"tiny.{variant}.onnx", tmp_path, 1, 8, 16,
                                             workspace_mb=256, timing_cache=tmp_path / "t.cache")
    names = sorted(p.name for p in tmp_path.glob("*.engine"))
    v = fake.__version__  # type: ignore[attr-defined]
    assert names == sorted(f"tiny.{p}.{engine_cache.sha256_file(variants / f'tiny.{f}.onnx')[:8]}.trt{v}.sm87"
                           ".orin-16sm-64g.b1-8-16.engine" for p, f in (("fp32", "fp32"), ("fp16", "fp16"), ("int8", "int8-s8s8")))
    for variant, path in built.items():
        doc = engine_cache.check_engine(path, v, "8.7", variants / f"tiny.{variant}.onnx")
        assert doc["onnx_file"] == f"tiny.{variant}.onnx"
        # written through mkstemp (0600), but ordinary readable files in the end
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        assert stat.S_IMODE(engine_cache.sidecar_path(path).stat().st_mode) == 0o644
    assert calls["shapes"][0] == ("faces", (1, 1, 48, 48), (8, 1, 48, 48), (16, 1, 48, 48))
    assert calls["pool"][0] == ("WORKSPACE", 256 << 20)
    assert (tmp_path / "t.cache").read_bytes() == b"timing-cache" and calls["cache"][1] == b"timing-cache"
    explicit, strong = 1 << 0, 1 << 1
    if flavour == "8.5":  # explicit batch requested; precision from weak-typing flags
        assert calls["network_flags"] == [explicit] * 3
        assert calls["flags"] == ["FP16", "INT8", "FP16"]
    elif flavour == "10":  # explicit batch is the default; flags still exist
        assert calls["network_flags"] == [0, 0, 0]
        assert calls["flags"] == ["FP16", "INT8", "FP16"]
    else:  # 11: no precision flags; strongly typed networks take the precision from the file
        assert calls["network_flags"] == [0, strong, strong] and calls["flags"] == []
    # Second call: valid cached engine reused, nothing rebuilt.
    n = len(calls["network_flags"])
    with caplog.at_level(logging.INFO, logger="fsrfer_edge.export.engine"):
        assert engine.build_engine(variants / "tiny.fp16.onnx", tmp_path, 1, 8, 16) == built["fp16"]
    assert "cached" in caplog.text and len(calls["network_flags"]) == n
    # Built for another GPU (foreign sidecar): rebuilt.
    doc = json.loads(engine_cache.sidecar_path(built["fp16"]).read_text())
    doc["key"]["compute_capability"] = "7.2"
    engine_cache.sidecar_path(built["fp16"]).write_text(json.dumps(doc))
    with caplog.at_level(logging.INFO, logger="fsrfer_edge.export.engine"):
        engine.build_engine(variants / "tiny.fp16.onnx", tmp_path, 1, 8, 16)
    assert "rebuilding" in caplog.text and len(calls["network_flags"]) == n + 1
    with pytest.raises(ModelError, match="int8-s8s8"):
        engine.build_engine(variants / "tiny.int8-u8s8.onnx", tmp_path)


def test_map_level_generator_stays_in_float_in_int8(tmp_path: Path) -> None:
    from trainer import checkpoint
    from trainer.models import InferenceModel

    torch.manual_seed(0)
    spec = {"method": "fsrfer", "backbone": "tiny", "feature_level": "layer1", "generator": {"blocks": 1, "growth": 4}}
    model = InferenceModel(spec).eval()
    checkpoint.save(tmp_path / "map.pt", checkpoint.model_payload(model, spec, Preprocessing(), {"note": "test"}))
    export_onnx(tmp_path / "map.pt", tmp_path / "map.raw.onnx")
    simplify(tmp_path / "map.raw.onnx", tmp_path / "map.onnx")
    m = load_onnx(tmp_path / "map.onnx")
    gen = [n.name for n in m.graph.node if n.name.startswith(quantize.GENERATOR_PREFIX)]
    # The conv that reads the image stays in float (quantize.image_conv_nodes); the rest of the trunk does not.
    assert quantize.image_conv_nodes(m) == ["/stem/stem.0/Conv"]
    trunk_convs = [n.name for n in m.graph.node if n.op_type == "Conv" and not n.name.startswith(("/generator/", "/stem/"))]
    assert gen and trunk_convs
    floats = set(quantize.float_tail_nodes(m))
    assert set(gen) <= floats and not set(trunk_convs) & floats and "/stem/stem.0/Conv" in floats
    # --int8-quantize-g: G is quantized like the trunk; the tail after the pooling stays in float.
    floats_g = set(quantize.float_tail_nodes(m, generator=False))
    assert not set(gen) & floats_g and floats_g <= floats and floats_g
    rng = np.random.default_rng(0)
    calib = rng.normal(0, 1, (16, 1, 48, 48)).astype(np.float32)
    quantize.quantize_int8(tmp_path / "map.onnx", tmp_path / "map.g8.onnx", calib, "u8s8", quantize_generator=True)
    q = load_onnx(tmp_path / "map.g8.onnx")
    produced_by = {o: n for n in q.graph.node for o in n.output}
    g_convs = [n for n in q.graph.node if n.op_type == "Conv" and n.name.startswith(quantize.GENERATOR_PREFIX)]
    assert g_convs and all(produced_by[n.input[0]].op_type == "DequantizeLinear" for n in g_convs)


def test_calibration_reader_gives_equal_batches_over_every_face():
    """ONNX Runtime's histogram calibrators fail on a shorter last batch: every batch is the same size,
    and every face is read once."""
    from fsrfer_edge.export.calib import FaceCalibrationReader

    for n, want in ((512, 32), (400, 25), (70, 14), (31, 31), (37, 1)):
        x = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
        reader = FaceCalibrationReader(x, "input")
        batches = [b["input"] for b in iter(reader.get_next, None)]
        assert {len(b) for b in batches} == {want} and len(reader) == n // want
        np.testing.assert_array_equal(np.concatenate(batches), x)


def test_the_export_fits_jpeg_maps_where_enough_of_its_faces_are_marked(variants: Path, tmp_path: Path) -> None:
    from fsrfer_edge.confidence import ScoreCalibration

    info = read_model_info(variants / "tiny.fp32.onnx")
    images = _faces(150, 7)
    labels = np.random.default_rng(8).integers(0, 7, 150)
    opts = cli.ExportOptions(source=variants / "tiny.fp32.onnx", name="mine", eval_data=tmp_path / "x.npz",
                             factors=(1, 2))
    report: dict = {}
    cli._score_calibration(opts, info, check.onnx_runner(variants / "tiny.fp32.onnx"), images, labels, "npz",
                           tmp_path, report)
    cal = ScoreCalibration.load(tmp_path / "mine.scores.json")
    assert cal.factors == (1.0, 2.0) and cal.n == (150, 150)
    # 48 and 24 px JPEG snapshots are marked (150 >= 100 of them): maps of their own at both factors
    assert all(j != p for j, p in zip(cal.jpeg_params, cal.params))
    assert report["score_calibration"]["jpeg_params"] == [list(q) for q in cal.jpeg_params]


def test_colour_eval_faces_are_degraded_across_the_face_not_across_its_width_and_channels(variants: Path,
                                                                                        tmp_path: Path) -> None:
    """--eval-data may hold colour faces (N, H, W, 3): the accuracy table and the confidence maps shrink each face,
    so faces whose three channels are the gray face score as the gray faces do (a gray model sees the same pixels)."""
    import types

    gray = _faces(40, 11)
    colour = np.repeat(gray[..., None], 3, axis=-1)
    labels = np.random.default_rng(3).integers(0, 7, 40)
    info = read_model_info(variants / "tiny.fp32.onnx")
    runner = check.onnx_runner(variants / "tiny.fp32.onnx")
    factors = (1, 2, 4, 8)
    assert (check.accuracy_table({"fp32": runner}, colour, labels, info, factors)
            == check.accuracy_table({"fp32": runner}, gray, labels, info, factors))
    opts = cli.ExportOptions(source=variants / "tiny.fp32.onnx", name="m", eval_data=tmp_path / "x.npz",
                             factors=factors)
    fitted = {}
    for name, faces in (("gray", gray), ("colour", colour)):
        out = tmp_path / name
        out.mkdir()
        cli._score_calibration(opts, info, runner, faces, labels, "npz", out, {})
        fitted[name] = types.SimpleNamespace(**json.loads((out / "m.scores.json").read_text()))
    assert fitted["colour"].factors == fitted["gray"].factors == [1.0, 2.0, 4.0, 8.0]
    # the same fit, to the rounding of a colour face's conversion to gray
    np.testing.assert_allclose(fitted["colour"].params, fitted["gray"].params, rtol=1e-4)


def test_load_onnx_names_a_folder_and_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    """A folder is a folder (not "does not exist"); an empty file parses as an empty ModelProto, which is not an ONNX
    model (not an "opset 0" one)."""
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(ModelError, match="is a directory"):
        load_onnx(tmp_path / "folder.onnx")
    with pytest.raises(ModelError, match="does not exist"):
        load_onnx(tmp_path / "gone.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match="not an ONNX model"):
        load_onnx(tmp_path / "empty.onnx")
