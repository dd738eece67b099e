"""Tests that kill hand-made mutants the rest of the suite let through (round 65c: the exported graph), and two
guards against mutants that are equivalent with the torch and onnxsim installed now.

Each test checks what an exported ONNX model computes or says about itself, or what the served network computes
from the face's factor: the batch axis of the logits, the opset asked for, which factors reach the metadata, the
doc string simplification keeps, and the layers of the scale-aware G (FiLM, per-factor BatchNorm, routing).
Tiny models only (backbone "tiny"), CPU only.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from fsrfer_edge.export.onnx_export import export_onnx, load_onnx, metadata_props, read_model_info  # noqa: E402
from fsrfer_edge.preprocessing import Preprocessing  # noqa: E402


def _checkpoint(path: Path, spec: dict[str, Any], meta: Any = None, pre: Preprocessing = Preprocessing(),
                perturb_g: bool = False) -> Path:
    from trainer import checkpoint
    from trainer.models import InferenceModel

    torch.manual_seed(0)
    model = InferenceModel(spec).eval()
    if perturb_g:
        assert model.generator is not None
        with torch.no_grad():  # as if trained: G is no longer the identity
            for p in model.generator.parameters():
                p.add_(0.2 * torch.randn_like(p))
    payload = checkpoint.model_payload(model, spec, pre, {"note": "test"} if meta is None else meta)
    checkpoint.save(path, payload)
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"faces": x})[0]


# -- the exported graph's interface -----------------------------------------------------------------------


def test_the_logits_batch_axis_is_dynamic_in_the_file_not_only_when_onnx_runtime_runs_it(tmp_path: Path) -> None:
    """TensorRT, Triton and the engine builder read the declared shapes: a logits (2, 7) would be a fixed batch of 2,
    which ONNX Runtime runs anyway (with a warning). A guard: with torch 2.x the mutant "dynamic_axes names the input
    only" is equivalent (the exporter carries the input's "batch" over to the logits), a later exporter may not."""
    ckpt = _checkpoint(tmp_path / "m.pt", {"method": "hr", "backbone": "tiny"})
    export_onnx(ckpt, tmp_path / "m.onnx")
    graph = load_onnx(tmp_path / "m.onnx").graph
    for value in (*graph.input, *graph.output):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param and not dims[0].HasField("dim_value"), (value.name, dims)
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim[1:]] == [7]


def test_the_opset_asked_for_is_the_opset_of_the_file(tmp_path: Path) -> None:
    """Mutant: the exporter ignores ``opset`` and writes opset 17 (the default every test used), while the metadata
    still says the opset asked for; an older TensorRT or ONNX Runtime then refuses the file."""
    ckpt = _checkpoint(tmp_path / "m.pt", {"method": "hr", "backbone": "tiny"})
    export_onnx(ckpt, tmp_path / "m.onnx", opset=13)
    model = load_onnx(tmp_path / "m.onnx")
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {13}
    assert "opset 13" in metadata_props(model)["fsrfer.exporter"]


def test_a_grey_network_with_rgb_preprocessing_is_refused_by_channels_not_by_a_torch_error(tmp_path: Path) -> None:
    """Mutant: the channel check refuses only a network with more channels than its preprocessing. The other way
    round torch failed inside the export, and the message named the opset and convolution weights instead."""
    from fsrfer_edge.errors import ModelError

    ckpt = _checkpoint(tmp_path / "g.pt", {"method": "hr", "backbone": "tiny"}, pre=Preprocessing(channels=3))
    with pytest.raises(ModelError, match=r"g\.pt.*1 input channel.*preprocessing gives 3") as err:
        export_onnx(ckpt, tmp_path / "g.onnx")
    assert "opset" not in str(err.value)
    assert not (tmp_path / "g.onnx").exists()


# -- the factors the metadata carries ----------------------------------------------------------------------


def test_meta_factors_win_over_the_trainers_degrade_factors(tmp_path: Path) -> None:
    """Mutant: config.degrade.factors read before meta.factors. A checkpoint with both (a G fine-tuned on fewer
    factors than the run's degrade config) then says it was trained for factors it was not."""
    meta = {"factors": [1, 2], "config": {"degrade": {"factors": [1, 2, 4, 8]}}}
    ckpt = _checkpoint(tmp_path / "m.pt", {"method": "hr", "backbone": "tiny"}, meta=meta)
    assert export_onnx(ckpt, tmp_path / "m.onnx").factors == (1, 2)
    assert read_model_info(tmp_path / "m.onnx").factors == (1, 2)


def test_the_trainers_factors_in_any_order_and_with_repeats_reach_the_metadata_sorted_once(tmp_path: Path) -> None:
    """Mutant: the factors are passed on as written. fsrfer-train draws from degrade.factors in any order and with
    repeats (a weighting); the export then fails on a checkpoint the trainer wrote."""
    meta = {"config": {"degrade": {"factors": [4, 1, 2, 2, 8]}}}
    ckpt = _checkpoint(tmp_path / "m.pt", {"method": "hr", "backbone": "tiny"}, meta=meta)
    assert export_onnx(ckpt, tmp_path / "m.onnx").factors == (1, 2, 4, 8)
    assert read_model_info(tmp_path / "m.onnx").factors == (1, 2, 4, 8)


# -- simplification keeps what the file says about itself ------------------------------------------------


def test_simplification_keeps_the_doc_string(tmp_path: Path) -> None:
    """The doc string (what the model is, its classes, the flip note) is what Netron and ``onnx.load(...).doc_string``
    show. A guard: the mutant that drops simplify's own copy of it is equivalent with the onnxsim installed now (it
    keeps the doc string itself), another onnxsim version may not."""
    pytest.importorskip("onnxsim")
    from fsrfer_edge.export.onnx_export import FLIP_NOTE, simplify

    ckpt = _checkpoint(tmp_path / "m.pt", {"method": "hr", "backbone": "tiny"})
    export_onnx(ckpt, tmp_path / "raw.onnx", flip=True)
    simplify(tmp_path / "raw.onnx", tmp_path / "s.onnx")
    doc = load_onnx(tmp_path / "s.onnx").doc_string
    assert doc == load_onnx(tmp_path / "raw.onnx").doc_string
    assert "happy" in doc.lower() and FLIP_NOTE in doc


# -- the served network ------------------------------------------------------------------------------------


def test_a_trained_embedding_g_changes_the_exported_logits(tmp_path: Path) -> None:
    """Mutant: InferenceModel skips G at the embedding level (head(trunk(x))). Every export test made its
    checkpoint with an untrained G (the identity), and compared the graph with the same PyTorch model."""
    from trainer.checkpoint import load_model

    ckpt = _checkpoint(tmp_path / "g.pt", {"method": "fsrfer", "backbone": "tiny"}, perturb_g=True)
    export_onnx(ckpt, tmp_path / "g.onnx")
    model: Any = load_model(ckpt)[0]
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        plain = model.fer(x).numpy()  # trunk -> head without G
        want = model.fer.head(model.generator(model.fer.trunk(x))).numpy()
    got = _run(tmp_path / "g.onnx", x.numpy())
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.abs(got - plain).max() > 1e-2


def test_factor_features_are_one_log2_and_its_square() -> None:
    """Mutant: the third feature is log2 f instead of its square: FiLM of a trained checkpoint then reads other
    features than it was trained on (x5, between the anchors, no longer interpolates the same way)."""
    from trainer.models import factor_features

    got = factor_features(torch.tensor([1.0, 2.0, 5.0, 8.0]))
    lf = torch.log2(torch.tensor([1.0, 2.0, 5.0, 8.0]))
    torch.testing.assert_close(got, torch.stack([torch.ones(4), lf, lf * lf], 1))


def test_film_scales_with_the_first_half_and_shifts_with_the_second() -> None:
    """Mutant: gamma and beta swapped. A trained FiLM (weights in a checkpoint) then scales where it should shift."""
    from trainer.models import FiLM

    film = FiLM(3).eval()
    with torch.no_grad():
        last: Any = film.net[2]
        last.bias.copy_(torch.tensor([1.0, 0.0, -0.5, 0.25, 0.0, 2.0]))  # gamma (1, 0, -0.5), beta (0.25, 0, 2)
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        got = film(x, torch.tensor([1.0, 4.0]))
    want = x * torch.tensor([2.0, 1.0, 0.5])[None, :, None, None] + torch.tensor([0.25, 0.0, 2.0])[None, :, None, None]
    torch.testing.assert_close(got, want)


def _factor_bn(anchors: tuple[int, ...]) -> Any:
    from trainer.models import FactorBatchNorm

    k = len(anchors)
    bn = FactorBatchNorm(2, anchors).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.arange(k, dtype=torch.float32)[:, None] * torch.tensor([1.0, 10.0]))
        bn.running_var.copy_(1.0 + torch.arange(k, dtype=torch.float32)[:, None] * torch.tensor([1.0, 3.0]))
    return bn


def test_factor_batchnorm_interpolates_in_log2_between_unevenly_spaced_anchors_and_clamps() -> None:
    """Mutants: the spacing to the anchor below and above swapped (the same wherever the anchors are evenly spaced in
    log2, as 1, 2, 4, 8 are); the clamp at the last anchor dropped (a factor beyond it got statistics of zero); each
    face given the first anchor's statistics."""
    bn = _factor_bn((1, 2, 8))  # log2: 0, 1, 3
    f = torch.tensor([1.0, 2 ** 0.5, 2.0, 4.0, 8.0, 16.0, 0.5])
    w = bn.weights(f)
    want = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0, 1, 0], [0, 0.5, 0.5], [0, 0, 1], [0, 0, 1], [1, 0, 0]])
    torch.testing.assert_close(w, want)
    bn.factor = f
    x = torch.randn(len(f), 2, 3, 3)
    with torch.no_grad():
        got = bn(x)
    mean, var = w @ bn.running_mean, w @ bn.running_var
    torch.testing.assert_close(got, (x - mean[:, :, None, None]) / torch.sqrt(var[:, :, None, None] + bn.eps))


def test_factor_batchnorm_of_a_batchnorm_computes_what_it_did_at_every_factor() -> None:
    """Mutant: a larger epsilon in FactorBatchNorm. Loaded from the HR model's BatchNorm (how a per-factor deep G
    starts), it must give that BatchNorm's output exactly, also for channels of small variance."""
    from trainer.models import FactorBatchNorm

    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(4).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.copy_(torch.tensor([1e-4, 1e-3, 1.0, 4.0]))
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    fbn = FactorBatchNorm.from_batchnorm(bn, (1, 2, 4, 8)).eval()
    x = torch.randn(3, 4, 5, 5) * 0.05
    with torch.no_grad():
        want = bn(x)
        for f in (1.0, 3.0, 8.0):
            fbn.factor = torch.full((3,), f)
            torch.testing.assert_close(fbn(x), want, rtol=1e-5, atol=1e-5)


ROUTED = {"method": "fsrfer", "backbone": "tiny", "feature_level": "layer2", "route_hr_below": 2 ** 0.5,
          "generator": {"blocks": 1, "growth": 4, "start": "stem", "scale_aware": True}}


def test_routing_sends_faces_below_the_threshold_not_only_hr_faces_to_the_hr_stages() -> None:
    """Mutant: the route compares the factor with 1 instead of route_hr_below: a face estimated at x1.2 (an HR
    face the estimator misjudged, which is what the threshold at sqrt(2) is for) went through G."""
    from trainer.models import InferenceModel

    torch.manual_seed(0)
    m: Any = InferenceModel(ROUTED).eval()
    m.generator.init_from(m.fer.trunk)
    with torch.no_grad():
        for p in m.generator.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        hr = m.fer(x)
        got = m(x, torch.tensor([1.0, 1.2, 1.5, 4.0]))
    torch.testing.assert_close(got[:2], hr[:2])
    assert (got[2:] - hr[2:]).abs().max() > 1e-3  # G serves the others


def _scale_aware_model(**spec: Any) -> Any:
    """A tiny scale-aware InferenceModel with G from the stem on, its FiLMs given weights (as if trained)."""
    from trainer.models import InferenceModel

    torch.manual_seed(0)
    m: Any = InferenceModel({"method": "fsrfer", "backbone": "tiny", "feature_level": "layer2", **spec,
                             "generator": {"blocks": 1, "growth": 4, "start": "stem", "scale_aware": True}}).eval()
    m.generator.init_from(m.fer.trunk)
    with torch.no_grad():
        for film in m.generator.films:
            film.net[2].weight.normal_(0, 0.5)
    return m


def test_a_given_factor_is_used_even_where_the_model_has_an_estimator() -> None:
    """Mutant: the estimator's factor replaces the one fsrfer-eval passes (each face's true factor) whenever the
    model has an estimator."""
    m = _scale_aware_model(factor_estimator=True)
    with torch.no_grad():
        m.factor_estimator.fitted.fill_(1.0)  # estimates x1 for every face (zero weights)
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        est = m(x)
        given = m(x, torch.full((3,), 8.0))
        torch.testing.assert_close(m(x, torch.ones(3)), est)
    assert (given - est).abs().max() > 1e-3


def test_a_scale_aware_map_level_g_reads_each_faces_factor() -> None:
    """Mutant: InferenceModel hands G factor 1 for every face; the FiLM layers then never see the factor."""
    m = _scale_aware_model()
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        a, b = m(x, torch.ones(3)), m(x, torch.full((3,), 4.0))
        direct = m.fer.head(m.fer.trunk.forward_from(m.generator(m.fer.trunk.forward_to(x, "stem"),
                                                                 torch.full((3,), 4.0)), "layer2"))
    torch.testing.assert_close(b, direct)
    assert (a - b).abs().max() > 1e-3


def test_hr_gate_grows_with_log2_and_the_step_gate_stops_at_one() -> None:
    from trainer.models import hr_gate

    f = torch.tensor([1.0, 2.0, 4.0, 8.0])
    assert hr_gate(f).flatten().tolist() == [0.0, 1.0, 2.0, 3.0]
    assert hr_gate(f, "step").flatten().tolist() == [0.0, 1.0, 1.0, 1.0]
    assert hr_gate(f).shape == (4, 1, 1, 1)
    assert math.isclose(float(hr_gate(torch.tensor([2 ** 0.5]))), 0.5, rel_tol=1e-6)
