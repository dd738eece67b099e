"""Tests that kill hand-made mutants (round 68, task K68h) of the SDK-input and model-tool scripts:
scripts/convert_blazeface.py (the graph edit that makes the converted BlazeFace take any batch and size of
[0, 255] NHWC pixels, the numpy TFLite reference's SAME padding, convolution and bilinear resize, the check
against that reference, the metadata and the variant table the shipped file was made with), scripts/verify_yunet.py
(the sha256 and load check, --install), scripts/deepstream_inputs.py (nvinfer's stretch or letterbox, the
--pad-value range, the rows fed as nvinfer feeds them), scripts/app_inputs.py (its rows, the enlarging residual
restored, the HR faces it counts), scripts/estimator_contrast.py (accuracy with the estimated and the true factor,
the HR-path share, --contrasts), scripts/factor_estimator_report.py, scripts/fit_factor_estimator.py
(--round-input), scripts/input_rounding.py, scripts/score_reliability.py, scripts/teacher_answers.py,
scripts/trt_op_tables.py and scripts/arm64_cpu.py (the verdict's lines). Tiny synthetic graphs, faces and
result files, fake models and temporary folders only."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from _scripts import load_script

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# scripts/convert_blazeface.py
# --------------------------------------------------------------------------------------------
def _conv() -> ModuleType:
    return load_script("scripts/convert_blazeface.py", "convert_blazeface_68h")


def _converted_like() -> Any:
    """A graph shaped as tflite2onnx leaves BlazeFace: one NCHW input of batch 1, a Resize by sizes (2x rows,
    3x columns) and two Reshape outputs with a leading batch of 1."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([1, 3, 8, 12], np.int64), "sizes"),
             numpy_helper.from_array(np.array([1, -1, 16], np.int64), "reg_shape"),
             numpy_helper.from_array(np.array([1, -1, 1], np.int64), "cls_shape")]
    nodes = [helper.make_node("Resize", ["x", "", "", "sizes"], ["up"], name="up", mode="nearest"),
             helper.make_node("Reshape", ["up", "reg_shape"], ["reg_raw"], name="reg"),
             helper.make_node("Reshape", ["up", "cls_shape"], ["cls_raw"], name="cls")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("reg_raw", TensorProto.FLOAT, [1, 18, 16]),
                               helper.make_tensor_value_info("cls_raw", TensorProto.FLOAT, [1, 288, 1])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _expected(img: np.ndarray) -> list[np.ndarray]:
    """What the edited tiny graph computes from (N, H, W, 3) pixels in [0, 255]."""
    x = (img.astype(np.float64) / 127.5 - 1.0).transpose(0, 3, 1, 2)
    up = np.repeat(np.repeat(x, 2, axis=2), 3, axis=3)
    return [up.reshape(len(img), -1, 16), up.reshape(len(img), -1, 1)]


@pytest.mark.needs("onnx", "onnxruntime")
def test_edit_graph_takes_any_batch_and_size_of_0_255_nhwc_pixels_and_names_the_outputs() -> None:
    # kills: pixel scale/shift constants, Sub->Add, the transpose perm, the Reshape batch 0, swapped Resize scales,
    # swapped output names or dims, unused initializers kept
    import onnxruntime as ort

    model = _conv().edit_graph(_converted_like())
    g = model.graph
    assert [i.name for i in g.input] == ["image"] and [o.name for o in g.output] == ["regressors", "classificators"]
    assert [d.dim_param or d.dim_value for d in g.input[0].type.tensor_type.shape.dim] == ["N", "H", "W", 3]
    assert [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in g.output] == \
        [["N", "anchors", 16], ["N", "anchors", 1]]
    names = [t.name for t in g.initializer]
    assert names == sorted(names) and not {"sizes", "reg_shape", "cls_shape"} & set(names)
    assert set(names) <= {i for n in g.node for i in n.input}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape in ((2, 4, 4, 3), (1, 4, 8, 3)):  # another batch, and a non-square size
        img = rng.uniform(0, 255, shape).astype(np.float32)
        reg, cls = sess.run(["regressors", "classificators"], {"image": img})
        want = _expected(img)
        np.testing.assert_allclose(reg, want[0], atol=1e-5)
        np.testing.assert_allclose(cls, want[1], atol=1e-5)


@pytest.mark.needs("onnx")
def test_edit_graph_refuses_a_reshape_without_a_batch_of_one_and_a_resize_with_scales() -> None:
    # kills: the dropped "leading batch of 1" and "sizes only" checks
    from onnx import numpy_helper

    from fsrfer_edge.errors import ModelError

    conv = _conv()
    m = _converted_like()
    for i, t in enumerate(m.graph.initializer):
        if t.name == "reg_shape":
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.array([2, -1, 16], np.int64), "reg_shape"))
    with pytest.raises(ModelError, match="leading batch of 1"):
        conv.edit_graph(m)
    m = _converted_like()
    m.graph.initializer.append(numpy_helper.from_array(np.array([1, 1, 2, 3], np.float32), "scales0"))
    m.graph.node[0].input[2] = "scales0"
    with pytest.raises(ModelError, match="already has scales"):
        conv.edit_graph(m)


class _FakeReference:
    """Stands in for the numpy TFLite interpreter: the tiny graph's outputs from a [-1, 1] input, plus ``bias``."""

    def __init__(self, bias: float) -> None:
        self.bias = bias

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return [v + self.bias for v in _expected((x + 1.0) * 127.5)]


@pytest.mark.needs("onnx", "onnxruntime")
def test_check_compares_each_image_and_a_wider_frame_with_the_reference_and_raises_past_atol(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # kills: the reference fed /255 or without the -1 shift, the wider frame dropped, ">" atol turned around
    from fsrfer_edge.errors import ModelError

    conv = _conv()
    data = conv.edit_graph(_converted_like()).SerializeToString()
    monkeypatch.setattr(conv, "TFLiteReference", lambda path: _FakeReference(0.0))
    report = conv.check(data, tmp_path / "unused.tflite", 8, 2e-3)
    assert report["sizes"] == [[8, 8], [8, 12]] and report["images"] == len(conv.test_images(8)) + 1
    assert report["max_abs_diff_regressors"] < 1e-4 and report["max_abs_diff_classificators"] < 1e-4
    assert report["max_abs_diff_batch_vs_single"] < 1e-5 and report["atol"] == 2e-3
    monkeypatch.setattr(conv, "TFLiteReference", lambda path: _FakeReference(1e-3))
    assert conv.check(data, tmp_path / "unused.tflite", 8, 2e-3)["max_abs_diff_regressors"] == pytest.approx(1e-3, abs=1e-4)
    monkeypatch.setattr(conv, "TFLiteReference", lambda path: _FakeReference(0.01))
    with pytest.raises(ModelError, match="differs from the TFLite reference"):
        conv.check(data, tmp_path / "unused.tflite", 8, 2e-3)


def test_test_images_are_noise_blocks_of_8_and_stay_in_0_255() -> None:
    # kills: a changed block size, the dropped clip
    imgs = _conv().test_images(16)
    assert imgs.dtype == np.float32 and imgs.shape[1:] == (16, 16, 3) and len(imgs) >= 2
    assert imgs.min() >= 0 and imgs.max() <= 255
    block = imgs[1]
    for y in (0, 8):
        for x in (0, 8):
            assert np.ptp(block[y:y + 8, x:x + 8], axis=(0, 1)).max() == 0  # one grey per 8x8 block and channel
    assert np.ptp(imgs[0], axis=(0, 1)).min() > 0


def _reference() -> Any:
    conv = _conv()
    ref = object.__new__(conv.TFLiteReference)
    ref.tfl = SimpleNamespace(Padding=SimpleNamespace(SAME=0, VALID=1),
                              ActivationFunctionType=SimpleNamespace(NONE=0, RELU=1, RELU6=3),
                              Conv2DOptions=None, ResizeBilinearOptions=None, Pool2DOptions=None)
    return ref


def _opts(**values: Any) -> Any:
    return SimpleNamespace(**{k: (lambda v=v: v) for k, v in values.items()})


def test_same_padding_puts_the_odd_pixel_after_as_tflite_does() -> None:
    # kills: before/after swapped, floor instead of ceil for the output size
    pads = _conv().TFLiteReference._same_pads
    assert pads(4, 3, 2) == (0, 1)    # out 2: (2-1)*2+3-4 = 1 pixel, after
    assert pads(5, 3, 2) == (1, 1)    # out 3: 2*2+3-5 = 2
    assert pads(5, 3, 1) == (1, 1) and pads(4, 1, 1) == (0, 0)
    assert pads(7, 2, 2) == (0, 1)    # out 4: 3*2+2-7 = 1


def _naive_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, sh: int, sw: int) -> np.ndarray:
    """Direct loops: TFLite CONV_2D, SAME padding (extra pixel after), NHWC input, (O, kh, kw, C) weights."""
    n, h, wd, c = x.shape
    o, kh, kw, _ = w.shape
    oh, ow = -(-h // sh), -(-wd // sw)
    th, tw = max((oh - 1) * sh + kh - h, 0), max((ow - 1) * sw + kw - wd, 0)
    xp = np.pad(x, ((0, 0), (th // 2, th - th // 2), (tw // 2, tw - tw // 2), (0, 0)))
    out = np.zeros((n, oh, ow, o))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :]
            out[:, i, j, :] = np.einsum("nijc,oijc->no", patch, w) + b
    return out


def test_reference_conv_matches_direct_loops_with_same_padding_stride_and_relu6() -> None:
    # kills: the window stride, the einsum's weight axes, the bias dropped, RELU6's clip
    ref = _reference()
    rng = np.random.default_rng(1)
    x, w, b = rng.normal(size=(1, 5, 6, 2)) * 4, rng.normal(size=(3, 3, 2, 2)), rng.normal(size=3)
    for act, fn, sh, sw in ((0, lambda v: v, 2, 2), (3, lambda v: np.clip(v, 0, 6), 2, 2),
                            (1, lambda v: np.maximum(v, 0), 1, 2)):
        ref._options = lambda op, cls, act=act, sh=sh, sw=sw: _opts(
            DilationHFactor=1, DilationWFactor=1, StrideH=sh, StrideW=sw, Padding=0, FusedActivationFunction=act)
        np.testing.assert_allclose(ref._conv(None, [x, w, b]), fn(_naive_conv(x, w, b, sh, sw)), atol=1e-9)


def test_reference_maxpool_pads_with_minus_infinity() -> None:
    # kills: the -inf fill of a max pool's padding
    ref = _reference()
    ref._options = lambda op, cls: _opts(FilterHeight=2, FilterWidth=2, StrideH=2, StrideW=2, Padding=0,
                                         FusedActivationFunction=0)
    x = -np.arange(1, 10, dtype=np.float64).reshape(1, 3, 3, 1)  # all negative: a 0 fill would win
    got = ref._maxpool(None, [x])
    np.testing.assert_array_equal(got[0, :, :, 0], [[-1.0, -3.0], [-7.0, -9.0]])


@pytest.mark.needs("torch")
@pytest.mark.parametrize("align", [False, True])
def test_reference_bilinear_resize_follows_the_graph_ratio_and_its_corner_mode(align: bool) -> None:
    # kills: the output size from the static shape, align-corners' and half-pixel scales, lo/hi clamps, weights
    import torch

    ref = _reference()
    ref._options = lambda op, cls: _opts(AlignCorners=align, HalfPixelCenters=not align)
    ref.graph = SimpleNamespace(Tensors=lambda i: SimpleNamespace(ShapeAsNumpy=lambda: np.array([1, 4, 4, 2])))
    op = SimpleNamespace(Inputs=lambda k: 0)
    img = np.random.default_rng(2).normal(size=(1, 6, 8, 2))  # larger than the graph's 4x4: the same 2x ratio
    got = ref._resize(op, [img, np.array([8, 8], np.int32)])
    want = torch.nn.functional.interpolate(torch.from_numpy(img).permute(0, 3, 1, 2), size=(12, 16), mode="bilinear",
                                           align_corners=align).permute(0, 2, 3, 1).numpy()
    assert got.shape == (1, 12, 16, 2)
    np.testing.assert_allclose(got, want, atol=1e-9)


@pytest.mark.needs("onnx")
def test_the_back_variant_is_the_layout_the_shipped_model_records() -> None:
    # kills: a changed stride, anchors per cell, input size, face_px or metadata key of the shipped variant
    import onnx

    conv = _conv()
    model = onnx.load(str(REPO / "fsrfer_edge" / "models" / "blazeface_back.onnx"), load_external_data=False)
    meta = json.loads({p.key: p.value for p in model.metadata_props}[conv.METADATA_KEY])
    v = conv.VARIANTS[conv.DEFAULT_VARIANT]
    assert conv.DEFAULT_VARIANT == meta["variant"] == "back" and v["file"] == meta["source"]["file"]
    assert (v["input_size"], v["strides"], v["anchors_per_cell"], v["face_px"]) == \
        (meta["input_size"], meta["strides"], meta["anchors_per_cell"], meta["face_px"])
    assert all(v["input_size"] % max(v["strides"]) == 0 for v in conv.VARIANTS.values())


@pytest.mark.needs("onnx")
def test_add_metadata_replaces_what_was_there_with_one_sorted_entry() -> None:
    # kills: old metadata kept, unsorted JSON, another key or producer
    conv = _conv()
    model = _converted_like()
    old = model.metadata_props.add()
    old.key, old.value = "converter_noise", "x"
    doc = {"variant": "back", "format": 1, "strides": [16, 32]}
    conv.add_metadata(model, doc)
    assert [(p.key, p.value) for p in model.metadata_props] == [("fsrfer_detector", json.dumps(doc, sort_keys=True))]
    assert model.producer_name == "fsrfer-edge scripts/convert_blazeface.py"


# --------------------------------------------------------------------------------------------
# scripts/verify_yunet.py
# --------------------------------------------------------------------------------------------
@pytest.mark.needs("onnxruntime")
def test_verify_yunet_passes_the_shipped_file_and_installs_a_checked_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # kills: the sha256 comparison turned around, the result-count check, the install condition or target
    mod = load_script("scripts/verify_yunet.py", "verify_yunet_68h")
    download = tmp_path / "yunet_n_dynamic.onnx"
    shutil.copyfile(mod.DEFAULT_YUNET, download)
    assert mod.check(download) == []
    target = tmp_path / "models" / "yunet_n.onnx"
    target.parent.mkdir()
    monkeypatch.setattr(mod, "DEFAULT_YUNET", target)
    assert mod.main(["--install", str(download)]) == 0
    assert target.read_bytes() == download.read_bytes() and "installed" in capsys.readouterr().out
    # a file that loads but is not the recorded one: refused, nothing installed
    monkeypatch.setattr(mod, "YUNET_SHA256", "0" * 64)
    other = tmp_path / "models2" / "yunet_n.onnx"
    monkeypatch.setattr(mod, "DEFAULT_YUNET", other)
    problems = mod.check(download)
    assert len(problems) == 1 and "sha256" in problems[0] and mod.SOURCE in problems[0]
    assert mod.main(["--install", str(download)]) == 2 and not other.exists()
    assert "verify_yunet: " in capsys.readouterr().err


def test_verify_yunet_names_the_download_for_a_missing_file(tmp_path: Path) -> None:
    # kills: the missing-file branch
    mod = load_script("scripts/verify_yunet.py", "verify_yunet_68h")
    problems = mod.check(tmp_path / "none.onnx")
    assert len(problems) == 1 and "does not exist" in problems[0] and mod.SOURCE in problems[0]
    assert mod.main(["--install", str(tmp_path / "none.onnx")]) == 2


# --------------------------------------------------------------------------------------------
# scripts/deepstream_inputs.py and scripts/app_inputs.py
# --------------------------------------------------------------------------------------------
@pytest.mark.needs("cv2")
def test_nvinfer_fit_letterboxes_the_longer_side_and_centres_it_in_the_padding() -> None:
    # kills: max -> min side, the centring offsets, the pad value, the square shortcut
    import cv2

    ds = load_script("scripts/deepstream_inputs.py", "deepstream_inputs_68h")
    rng = np.random.default_rng(3)
    wide = rng.integers(0, 256, (10, 20), dtype=np.uint8)
    out = ds.fit(wide, 48, cv2.INTER_NEAREST, 7, cv2)
    assert out.shape == (48, 48) and out.dtype == np.uint8
    assert (out[:12] == 7).all() and (out[36:] == 7).all()
    np.testing.assert_array_equal(out[12:36], cv2.resize(wide, (48, 24), interpolation=cv2.INTER_NEAREST))
    tall = rng.integers(0, 256, (24, 12), dtype=np.uint8)
    out = ds.fit(tall, 48, cv2.INTER_LINEAR, 200, cv2)
    assert (out[:, :12] == 200).all() and (out[:, 36:] == 200).all()
    np.testing.assert_array_equal(out[:, 12:36], cv2.resize(tall, (24, 48), interpolation=cv2.INTER_LINEAR))
    np.testing.assert_array_equal(ds.fit(wide, 48, cv2.INTER_CUBIC, None, cv2),
                                  cv2.resize(wide, (48, 48), interpolation=cv2.INTER_CUBIC))
    square = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    np.testing.assert_array_equal(ds.fit(square, 48, cv2.INTER_LINEAR, 9, cv2), ds.fit(square, 48, cv2.INTER_LINEAR, None, cv2))


def _tiny_faces(tmp_path: Path, height_cut: bool = False) -> tuple[Path, np.ndarray, np.ndarray]:
    """Six 48 px faces (two of them enlarged 2x by pixel repetition) labelled with the shipped model's own answers
    on them as they are (or, ``height_cut``, on their middle 80% rows through ``Recognizer``), in a plain .npz."""
    from fsrfer_edge import Recognizer

    rng = np.random.default_rng(4)
    smooth = [np.kron(rng.integers(0, 256, (6, 6)), np.ones((8, 8))) for _ in range(4)]
    faces = np.stack([np.clip(s + rng.normal(0, 20, s.shape), 0, 255) for s in smooth]
                     + [np.kron(rng.integers(0, 256, (24, 24)), np.ones((2, 2))) for _ in range(2)]).astype(np.uint8)
    with Recognizer(threads=1) as rec:
        pre = rec.info.preprocessing
        if height_cut:
            labels = np.array([p.index for p in rec.predict(list(faces[:, 5:43]))])
            # the premise of the test that uses it: the narrower box gets other answers
            assert (np.array([p.index for p in rec.predict(list(faces[:, :, 5:43]))]) != labels).any()
        else:
            labels = rec.predict_logits(pre.normalize(faces[:, None].astype(np.float32))).argmax(axis=1)
    path = tmp_path / "faces.npz"
    np.savez(path, images=faces, labels=labels.astype(np.int64))
    return path, faces, labels


@pytest.mark.needs("cv2", "onnxruntime")
def test_deepstream_inputs_feed_the_model_as_nvinfer_does_and_record_the_padding(tmp_path: Path) -> None:
    # kills: nvinfer's scale * (x - offset) turned around, the pad-value range, a missing row, the command
    ds = load_script("scripts/deepstream_inputs.py", "deepstream_inputs_68h")
    data, _, labels = _tiny_faces(tmp_path)
    with pytest.raises(SystemExit, match="pad-value 256"):
        ds.main(["--data", str(data), "--json", str(tmp_path / "bad.json"), "--pad-value", "256"])
    out = tmp_path / "ds.json"
    assert ds.main(["--data", str(data), "--json", str(out), "--pad-value", "255", "--threads", "1"]) == 0
    doc = json.loads(out.read_text())
    assert doc["pad_value"] == 255 and doc["command"].endswith("--pad-value 255") and doc["n"] == len(labels)
    sq, narrow = doc["rows"]["square box"], doc["rows"]["80% of the width"]
    # x1 on the square box: every filter resizes 48 to 48 unchanged, so the model sees the faces themselves
    assert sq["nearest, stretched"]["1"] == 100.0 and sq["sdk"]["1"] == 100.0
    assert "cubic, stretched, video range (16-235)" in sq and "cubic, padded" not in sq
    assert {"nearest, padded", "bilinear, padded", "cubic, padded"} <= set(narrow)
    assert all(set(row) == {"1", "2", "3", "4", "6", "8"} for row in sq.values())
    from fsrfer_edge.preprocessing import Preprocessing

    pre = Preprocessing()
    scale, offset = doc["normalisation"]["net-scale-factor"], doc["normalisation"]["offsets"]
    assert scale * (255 - offset) == pytest.approx((1 - pre.mean) / pre.std)


@pytest.mark.needs("cv2", "onnxruntime")
def test_app_inputs_restores_the_enlarging_residual_and_counts_enlarged_hr_faces(tmp_path: Path) -> None:
    # kills: the residual left at 0, hr_faces_reduced miscounted, a missing row or factor, the command's split
    from fsrfer_edge import preprocessing

    app = load_script("scripts/app_inputs.py", "app_inputs_68h")
    data, faces, labels = _tiny_faces(tmp_path, height_cut=True)
    before = preprocessing.LINEAR_ENLARGING_RESIDUAL
    out = tmp_path / "app.json"
    assert app.main(["--data", str(data), "--json", str(out), "--split", "test", "--threads", "1"]) == 0
    assert preprocessing.LINEAR_ENLARGING_RESIDUAL == before
    doc = json.loads(out.read_text())
    assert doc["split"] == "test" and doc["command"].endswith("--split test") and doc["n"] == len(labels)
    want = sum(preprocessing.undo_pixel_repetition(im[None].astype(np.float32)).shape[1:] != im.shape for im in faces)
    assert doc["hr_faces_reduced"] == want >= 2
    assert set(doc["enlarged"]["nearest, as given (before the SDK reduced it)"]) == {"2", "3", "4", "6", "8"}
    ns = doc["non_square"]
    assert set(ns) == {f"{w}, {k}" for w in ("80% of the width", "80% of the height")
                       for k in ("given", "stretched (before the SDK squared it)")}
    assert all(set(row) == {"1", "2", "3", "4", "6", "8"} for row in ns.values())
    # labelled by the model's answers on the middle 80% rows (round(0.1 * 48) = 5 cut off top and bottom)
    assert ns["80% of the height, given"]["1"] == 100.0 > ns["80% of the width, given"]["1"]


# --------------------------------------------------------------------------------------------
# scripts/estimator_contrast.py
# --------------------------------------------------------------------------------------------
class _FactorModel:
    """Answers class 1 when told a factor above 2.5, else class 0; estimates factors spread over 1..4."""

    route_hr_below = 2.0

    def factor_estimator(self, x: Any) -> Any:
        import torch

        return torch.linspace(1.0, 4.0, len(x))

    def __call__(self, x: Any, f: Any) -> Any:
        import torch

        return torch.stack([(f <= 2.5).float(), (f > 2.5).float()], dim=1)


@pytest.mark.needs("torch")
def test_contrast_rows_score_the_estimated_and_the_true_factor_and_the_hr_share() -> None:
    # kills: the true factor not passed on, the HR share's comparison, the difference's sign, the contrast order
    from trainer.train import PRE

    ec = load_script("scripts/estimator_contrast.py", "estimator_contrast_68h")
    faces = np.random.default_rng(5).integers(0, 256, (7, 48, 48), dtype=np.uint8)
    labels = np.ones(7, np.int64)
    rows = ec.contrast_rows(_FactorModel(), PRE, faces, labels, (0.5, 1.0), (1, 4), "small", batch=7)
    assert [r["contrast"] for r in rows] == [0.5, 1.0]
    est = np.linspace(1.0, 4.0, 7)
    x4 = rows[1]["factors"]["4"]
    assert x4["accuracy_true_factor"] == 100.0 and rows[1]["factors"]["1"]["accuracy_true_factor"] == 0.0
    assert x4["accuracy_estimated"] == round(100 * float(np.mean(est > 2.5)), 2)
    assert x4["true_minus_estimated"] == round(100 - 100 * float(np.mean(est > 2.5)), 2) > 0
    assert x4["hr_path_share"] == round(float(np.mean(est < 2.0)), 4) and x4["median_estimate"] == 2.5


def test_estimator_contrast_accepts_contrasts_in_0_1_and_refuses_others(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # kills: "c <= 1" -> "c < 1", a dropped parse-error fallback
    ec = load_script("scripts/estimator_contrast.py", "estimator_contrast_68h")
    common = ["--checkpoint", str(tmp_path / "none.pt"), "--data", str(tmp_path / "none.npz"),
              "--json", str(tmp_path / "o.json")]
    for bad in ("1.5", "abc", "0.5,0"):
        assert ec.main(["--contrasts", bad, *common]) == 2
        assert "expected comma-separated numbers in (0, 1]" in capsys.readouterr().err
    pytest.importorskip("torch")
    assert ec.main(["--contrasts", "1,0.5", *common]) == 2  # accepted; then the missing files are named
    err = capsys.readouterr().err
    assert "does not exist" in err and "comma-separated" not in err


# --------------------------------------------------------------------------------------------
# scripts/factor_estimator_report.py and scripts/fit_factor_estimator.py
# --------------------------------------------------------------------------------------------
@pytest.mark.needs("torch")
def test_factor_estimator_report_reads_each_protocols_true_factor_file(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the protocol -> results file map, estimated minus true turned around, the run's name, the fit record
    from trainer import checkpoint

    rep = load_script("scripts/factor_estimator_report.py", "factor_estimator_report_68h")
    fit = {"2": {"mean_estimate": 2.1, "mae_log2": 0.1, "faces": 9}}
    monkeypatch.setattr(checkpoint, "load", lambda path, kind: {"meta": {"factor_estimator": fit}})
    run = tmp_path / "run"
    (run / "eval" / "val").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"name": "early_g_film"}))
    for name, acc in (("results.json", 0.9), ("results_small.json", 0.6), ("results_camera.json", 0.3)):
        (run / "eval" / "val" / name).write_text(json.dumps({"fsrfer": {"factors": {"1": {"accuracy": acc},
                                                                                   "2": {"accuracy": acc - 0.1}}}}))
    est = tmp_path / "est_small.json"
    est.write_text(json.dumps({"factors": {"1": {"accuracy": 0.55}, "2": {"accuracy": 0.5}}}))
    out = tmp_path / "report.json"
    assert rep.main([f"small={est}", "--run", str(run), "--checkpoint", str(tmp_path / "c.pt"), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["run_config"] == "early_g_film" and doc["estimator_fit_on_val"] == fit and doc["split"] == "val"
    assert doc["accuracy"] == {"small": {"true_factor": {"1": 60.0, "2": 50.0}, "estimated_factor": {"1": 55.0, "2": 50.0},
                                         "estimated_minus_true": {"1": -5.0, "2": 0.0}}}
    with pytest.raises(SystemExit, match="PROTOCOL=FILE"):
        rep.main([f"tiny={est}", "--run", str(run), "--checkpoint", str(tmp_path / "c.pt"), "--json", str(out)])
    # an exported model evaluated at fewer factors than the run: a message naming them (a KeyError traceback before)
    est.write_text(json.dumps({"factors": {"1": {"accuracy": 0.55}}}))
    with pytest.raises(SystemExit, match=r"lacks factor\(s\) \['2'\]"):
        rep.main([f"small={est}", "--run", str(run), "--checkpoint", str(tmp_path / "c.pt"), "--json", str(out)])
    monkeypatch.setattr(checkpoint, "load", lambda path, kind: {"meta": {}})
    with pytest.raises(SystemExit, match="no fitted factor estimator"):
        rep.main([f"small={est}", "--run", str(run), "--checkpoint", str(tmp_path / "c.pt"), "--json", str(out)])


@pytest.mark.needs("torch")
def test_fit_factor_estimator_rounds_inputs_only_when_asked_and_stores_the_fit(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: --round-input's preprocessing passed the other way round, --faces not passed on, the meta key
    from trainer import checkpoint
    from trainer import config as config_mod
    from trainer import train

    ffe = load_script("scripts/fit_factor_estimator.py", "fit_factor_estimator_68h")
    calls: list[tuple[Any, ...]] = []
    saved: dict[str, Any] = {}
    model = SimpleNamespace(spec={}, eval=lambda: model)
    data = SimpleNamespace(train=SimpleNamespace(images="TRAIN"), val=SimpleNamespace(images="VAL"))
    monkeypatch.setattr(checkpoint, "load_model", lambda path: (model, "PRE", {"meta": {"config": {"seed": 3}}}))
    monkeypatch.setattr(config_mod, "from_dict", lambda d: SimpleNamespace(seed=d["seed"]))
    monkeypatch.setattr(config_mod, "resolve_data_path", lambda cfg, data, where: "DATA")
    monkeypatch.setattr(train, "load_data", lambda cfg, path: data)
    monkeypatch.setattr(train, "_degrade_cfg", lambda cfg: "DCFG")
    fit = {"2": {"mean_estimate": 2.0, "mae_log2": 0.1, "faces": 5}}
    monkeypatch.setattr(train, "fit_factor_estimator", lambda *a: calls.append(a) or fit)
    monkeypatch.setattr(checkpoint, "model_payload", lambda m, spec, pre, meta: {"meta": meta})
    monkeypatch.setattr(checkpoint, "save", lambda path, payload, compress: saved.update({path: payload}))
    out = str(tmp_path / "est.pt")
    assert ffe.main(["in.pt", "--out", out, "--faces", "77"]) == 0
    assert calls[-1] == (model, "TRAIN", "VAL", "DCFG", 3, 77, None)
    assert saved[out]["meta"]["factor_estimator"] == fit and saved[out]["meta"]["config"] == {"seed": 3}
    assert ffe.main(["in.pt", "--out", out, "--round-input"]) == 0
    assert calls[-1] == (model, "TRAIN", "VAL", "DCFG", 3, 6000, "PRE")


# --------------------------------------------------------------------------------------------
# scripts/input_rounding.py, scripts/score_reliability.py, scripts/teacher_answers.py
# --------------------------------------------------------------------------------------------
def test_input_rounding_rounds_the_pixels_not_the_normalised_values() -> None:
    # kills: rounding in the normalised domain, the 255 scale, the dropped clip
    from fsrfer_edge.preprocessing import Preprocessing

    ir = load_script("scripts/input_rounding.py", "input_rounding_68h")
    pre = Preprocessing()
    pixels = np.array([[0.4, 10.6, 127.49, 254.7, 300.0, -3.0]])
    got = ir.rounded(pre.normalize(pixels), pre)
    np.testing.assert_allclose(got, pre.normalize(np.array([[0.0, 11.0, 127.0, 255.0, 255.0, 0.0]])), atol=1e-6)


def test_score_reliability_summary_reports_the_calibration_error_of_the_label_scores() -> None:
    # kills: the ECE of the wrong outcomes or of another score
    from fsrfer_edge.confidence import calibration_error

    sr = load_script("scripts/score_reliability.py", "score_reliability_68h")
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55]])
    labels = np.array([0, 0, 0, 1])
    s = sr.summary(probs, labels, np.full((4, 2), 0.5))
    score, right = np.array([0.9, 0.8, 0.6, 0.55]), np.array([1.0, 0.0, 1.0, 1.0])
    assert s["ece"] == round(calibration_error(score, right), 2) and s["ece"] > 0
    assert [r["n"] for r in s["reliability"]] == [0, 0, 2, 1, 1]


def test_teacher_answers_refuse_an_output_that_is_not_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # kills: the dropped .npz check (training tells answers from checkpoints by it)
    pytest.importorskip("torch")
    ta = load_script("scripts/teacher_answers.py", "teacher_answers_68h")
    with pytest.raises(SystemExit) as exc:
        ta.main([str(tmp_path / "a.pt"), "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "answers.pt")])
    assert exc.value.code == 2 and "expected an .npz path" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# scripts/trt_op_tables.py
# --------------------------------------------------------------------------------------------
def test_trt_op_tables_parse_support_types_typos_and_restrictions() -> None:
    # kills: the header row kept, "Y" read loosely, the typo map, the restrictions' strip
    mod = load_script("scripts/trt_op_tables.py", "trt_op_tables_68h")
    md = ("| Operator | Supported | Supported Types | Restrictions |\n|---|---|---|---|\n"
          "| ConstantOfShape | Y | FP32, INF64 | `value` must be static |\n| Loop | N | | |\n"
          "| Abs | Y | FP32,FP16 |  |\n| Cast | Y | FP32 | no BOOL | |\n")  # a row with one empty column too many
    ops = mod.parse(md)
    assert set(ops) == {"ConstantOfShape", "Loop", "Abs", "Cast"}
    assert ops["Cast"]["restrictions"] == "no BOOL"
    assert ops["ConstantOfShape"] == {"supported": True, "types": ["FP32", "INT64"], "restrictions": "`value` must be static"}
    assert ops["Loop"] == {"supported": False, "types": [], "restrictions": ""}
    assert ops["Abs"]["types"] == ["FP32", "FP16"]


def test_trt_op_tables_record_each_tables_ref_commit_and_opsets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: another ref read or recorded, the opset range swapped, the commit not recorded, the usage check
    mod = load_script("scripts/trt_op_tables.py", "trt_op_tables_68h")
    seen: list[list[str]] = []

    def git(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        ref = cmd[4].split(":")[0] if cmd[3] == "show" else cmd[4]
        out = f"| Abs | Y | FP32 | {ref} |\n" if cmd[3] == "show" else f"c0ffee-{ref}\n"
        return subprocess.CompletedProcess(cmd, 0, out, "")

    monkeypatch.setattr(mod, "OUT", tmp_path / "trt_ops")
    monkeypatch.setattr(mod, "REPO", tmp_path)
    monkeypatch.setattr(mod.subprocess, "run", git)
    assert mod.main([]) == 2 and mod.main(["a", "b"]) == 2 and not seen
    assert mod.main(["/onnx-tensorrt"]) == 0
    assert all(c[:3] == ["git", "-C", "/onnx-tensorrt"] for c in seen)
    for name, (ref, versions, (lo, hi)) in mod.TABLES.items():
        doc = json.loads((tmp_path / "trt_ops" / f"{name}.json").read_text())
        assert doc["source"] == {"repository": "https://github.com/onnx/onnx-tensorrt", "ref": ref,
                                 "commit": f"c0ffee-{ref}", "path": "docs/operators.md"}
        assert doc["opset"] == {"min": lo, "max": hi} and lo < hi and doc["tensorrt"] == versions
        assert doc["operators"]["Abs"]["restrictions"] == ref
    assert mod.TABLES["tensorrt-8.5"][2] == (1, 17) and mod.TABLES["tensorrt-10.1"][2] == (9, 20)


# --------------------------------------------------------------------------------------------
# scripts/arm64_cpu.py
# --------------------------------------------------------------------------------------------
def _arm() -> ModuleType:
    pytest.importorskip("onnxruntime")
    return load_script("scripts/arm64_cpu.py", "arm64_cpu_68h")


def _onehot(top: np.ndarray) -> np.ndarray:
    out = np.zeros((len(top), 3), np.float32)
    out[np.arange(len(top)), top] = 1.0
    return out


def test_arm_verdict_allows_disagreement_on_the_line_and_reads_the_drop_against_arm_fp32() -> None:
    # kills: ">" -> ">=" on the disagreement line, the drop taken against x86's FP32, the logit difference
    arm = _arm()
    labels = np.zeros(500, np.int64)
    good = np.where(np.arange(500) < 450, 0, 1)
    runs = {name: {"logits": {"x1": _onehot(good)}} for name, _, _ in arm.RUNS}
    moved = good.copy()
    moved[450:455] = 2  # 1% of answers differ from x86, all of them wrong either way: no accuracy lost
    runs["int8 neoverse-n1"] = {"logits": {"x1": _onehot(moved)}}
    s = arm.summarise(labels, runs, [1])
    assert s["disagreement_with_x86"]["int8 neoverse-n1"] == {"1": 1.0}
    assert s["verdict"] == {"worst_disagreement_percent": 1.0, "worst_int8_drop_points": 0.0, "problem": False}
    assert s["max_logit_difference_with_x86"] == {"fp32 cortex-a57": 0.0, "int8 cortex-a57": 0.0,
                                                  "int8 neoverse-n1": 1.0, "int8 max": 0.0}
    worse = good.copy()
    worse[:3] = 1  # Arm's FP32 loses 0.6 points; the INT8 runs, as good as x86, then gain 0.6 on it
    runs = {name: {"logits": {"x1": _onehot(worse if name == "fp32 cortex-a57" else good)}} for name, _, _ in arm.RUNS}
    s = arm.summarise(labels, runs, [1])
    assert s["int8_drop_vs_arm_fp32"] == {n: {"1": -0.6} for n in ("int8 cortex-a57", "int8 neoverse-n1", "int8 max")}
    assert set(s["disagreement_with_x86"]) == {"fp32 cortex-a57", "int8 cortex-a57", "int8 neoverse-n1", "int8 max"}


def test_arm_script_names_a_missing_site_or_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # kills: the onnxruntime-in-site and data checks dropped
    arm = _arm()
    q = tmp_path / "qemu"
    q.write_text("")
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "bin" / "python3.11").write_text("")
    args = ["--qemu", str(q), "--sysroot", str(tmp_path), "--site", str(tmp_path), "--out", str(tmp_path / "o.json"),
            "--data", str(tmp_path / "none.npz")]
    assert arm.main(args) == 2 and "expected aarch64 onnxruntime in --site" in capsys.readouterr().err
    (tmp_path / "onnxruntime").mkdir()
    assert arm.main(args) == 2 and "expected the FER2013 archive" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()
