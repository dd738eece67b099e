"""Tests that kill hand-made mutants the rest of the suite let through (round 66e: the trainer's models, per-factor
evaluation, checkpoints and synthetic faces).

Rounds 65b/65e/65h covered the losses, resuming and the config; round 65c the exported graph and the scale-aware
layers. Each test here checks, on tiny tensors or arrays, a behaviour a user depends on but would not notice at once
when it broke: the residual scale of G's dense blocks, that an untrained G (and image SR net) leaves the HR model as
it is, the factor estimator's floor at x1 and its whole grey levels, per-factor BatchNorm's running variance, the HR
BatchNorm statistics of a deep G's copies, the critic on odd-sized maps, a scale-aware model without an estimator,
the small crops' side and the range of the evaluation's inputs, the factor torch_logits_fn passes, the pixels a uint8
ONNX file is evaluated on, a checkpoint of a newer version, a checkpoint written on a machine of the other byte
order, atomic checkpoint writes, and the classes and seeds of the synthetic faces. Tiny models, CPU only.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")


# -- models ------------------------------------------------------------------------------------------------


def test_a_dense_block_adds_its_output_scaled_by_res_scale() -> None:
    """Mutant: res_scale ignored (x + out(...)): every G's dense blocks then change the feature five times as much as
    the architecture (and a trained checkpoint's weights) assume."""
    from trainer.models import DenseResidualBlock

    torch.manual_seed(0)
    block = DenseResidualBlock(6, 4, layers=2, res_scale=0.2)
    x = torch.randn(3, 6)
    with torch.no_grad():
        full = block.out(torch.cat(_dense_feats(block, x), 1))
        torch.testing.assert_close(block(x), x + 0.2 * full)
        block.res_scale = 0.0
        torch.testing.assert_close(block(x), x)


def _dense_feats(block: Any, x: Any) -> list[Any]:
    feats = [x]
    for fc in block.fcs:
        feats.append(torch.nn.functional.leaky_relu(fc(torch.cat(feats, 1)), 0.2))
    return feats


@pytest.mark.parametrize("level", ["embedding", "layer2"])
def test_an_untrained_g_leaves_the_hr_model_as_it_is(level: str) -> None:
    """Mutants: G's global skip dropped (proj(blocks(f)) alone: an untrained G maps every face to zero), or its last
    projection not zero-initialised: stage 2 then starts from a model that has lost the HR accuracy it is meant to
    keep. At the embedding and on a map (the spatial G)."""
    from trainer.models import InferenceModel

    torch.manual_seed(0)
    m = InferenceModel({"method": "fsrfer", "backbone": "tiny", "feature_level": level,
                        "generator": {"blocks": 1, "growth": 4}}).eval()
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(m(x), m.fer(x))


def test_an_untrained_image_sr_net_returns_its_input() -> None:
    """Mutant: the image SR net's global skip dropped: the untrained baseline then hands the HR model a black image."""
    from trainer.models import ImageSR

    torch.manual_seed(0)
    x = torch.rand(2, 1, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(ImageSR(1, width=4, blocks=1)(x), x)


def test_the_factor_estimator_never_estimates_below_x1() -> None:
    """Mutant: the floor at log2 f = 0 dropped: an HR face whose statistics fall outside the fit is then estimated at
    x0.5, and FiLM and per-factor BatchNorm read a factor no face was trained at."""
    from trainer.models import FactorEstimator

    est = FactorEstimator(max_factor=8.0)
    with torch.no_grad():
        est.fitted.fill_(1.0)
        est.weights.zero_()
        est.weights[0] = -1.0  # log2 f = -1 for every face
        f = est(torch.randn(2, 1, 48, 48))
    torch.testing.assert_close(f, torch.ones(2))
    with torch.no_grad():
        est.weights[0] = 5.0  # log2 f = 5, above log2(8)
        torch.testing.assert_close(est(torch.randn(2, 1, 48, 48)), torch.full((2,), 8.0))


def test_factor_batchnorm_running_statistics_follow_batchnorm2d_at_one_factor() -> None:
    """Mutant: the running variance updated with the biased batch variance. With every face at one anchor,
    FactorBatchNorm in training must do what BatchNorm2d does (its running statistics then match at evaluation)."""
    from trainer.models import FactorBatchNorm

    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(3)
    fbn = FactorBatchNorm.from_batchnorm(bn, (1, 2, 4))
    bn.train()
    fbn.train()
    x = torch.randn(4, 3, 2, 2) * 3 + 1
    fbn.factor = torch.full((4,), 2.0)
    torch.testing.assert_close(fbn(x), bn(x))
    torch.testing.assert_close(fbn.running_mean[1], bn.running_mean)
    torch.testing.assert_close(fbn.running_var[1], bn.running_var)
    torch.testing.assert_close(fbn.running_var[0], torch.ones(3))  # the other factors' statistics untouched


def test_a_deep_g_keeps_the_hr_batchnorm_statistics_while_it_trains() -> None:
    """Mutant: DeepGenerator.train() leaves its copies' BatchNorm layers in training mode with batchnorm "hr": the
    copies then normalise with batch statistics and overwrite the HR model's running statistics during stage 2."""
    from trainer.models import InferenceModel

    torch.manual_seed(0)
    m = InferenceModel({"method": "fsrfer", "backbone": "tiny", "feature_level": "layer2",
                        "generator": {"blocks": 0, "start": "stem", "scale_aware": True}})
    g: Any = m.generator
    g.init_from(m.fer.trunk)
    before = {k: v.clone() for k, v in g.state_dict().items() if "running" in k}
    fmap = torch.randn(4, 8, 24, 24) * 5 + 3
    f = torch.full((4,), 2.0)
    g.train()
    with torch.no_grad():
        y_train = g(fmap, f)
        g.eval()
        y_eval = g(fmap, f)
    torch.testing.assert_close(y_train, y_eval)
    for k, v in before.items():
        torch.testing.assert_close(g.state_dict()[k], v)


def test_the_factor_estimator_with_pixels_reads_whole_grey_levels() -> None:
    """Mutant: the rounding to whole grey levels dropped: a float face and the same face stored as uint8 (what a
    uint8 ONNX file sees) then get different factor estimates, although the spec's factor_estimator_pixels says not."""
    from trainer.models import FactorEstimator

    scale, offset = 255 * 0.5, 255 * 0.5
    est = FactorEstimator(pixels=(scale, offset))
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 1, 48, 48)).astype(np.float32))
    x = (pixels - offset) / scale
    jitter = (torch.rand_like(x) - 0.5) * 0.6 / scale  # under half a grey level
    torch.testing.assert_close(est.features(x + jitter), est.features(x))


def test_the_spatial_critic_scores_odd_sized_maps() -> None:
    """Mutant: the critic's linear layer sized for size // 2 after the strided convolution: a map of odd side (the
    last stage of resnet18 at 48 px is 3x3, at 40 px the third is 5x5) then fails in the first GAN step."""
    from trainer.models import SpatialFeatureCritic

    for size in (3, 5, 6):
        d = SpatialFeatureCritic(4, hidden=8, size=size)
        assert d(torch.randn(2, 4, size, size)).shape == (2,)


def test_a_scale_aware_model_without_an_estimator_asks_for_the_factor() -> None:
    """Mutant: every scale-aware model gets a factor estimator, whatever the spec says: one trained without it then
    answers a call without factors with "the factor estimator is not fitted" (and its checkpoints carry weights the
    spec does not describe) instead of asking for each face's factor."""
    from fsrfer_edge.errors import ConfigError
    from trainer.models import InferenceModel

    m = InferenceModel({"method": "fsrfer", "backbone": "tiny", "feature_level": "layer2",
                        "generator": {"blocks": 0, "start": "stem", "scale_aware": True}}).eval()
    assert not any(k.startswith("factor_estimator.") for k in m.state_dict())
    with pytest.raises(ConfigError, match="down-sample factor"):
        m(torch.zeros(1, 1, 48, 48))


# -- evaluation --------------------------------------------------------------------------------------------


def test_small_crops_have_side_round_h_over_factor() -> None:
    """Mutant: the side floored (h // factor): a 48 px face at x5 becomes a 9 px crop instead of 10 (and 50 px faces
    at x3 16 instead of 17), so the crops do not match degrade()'s nor what the data set's README states."""
    from trainer.evaluate import lr_crops, small_crops

    faces = np.full((2, 48, 48), 100, np.uint8)
    assert small_crops(faces, 5).shape == (2, 10, 10)
    assert small_crops(faces, 5, "camera").shape == (2, 10, 10)
    assert lr_crops(np.full((1, 50, 50), 100, np.uint8), 3, "box").shape == (1, 17, 17)


def test_resized_inputs_stay_within_the_pixel_range() -> None:
    """Mutant: the degraded faces not clipped to 0..255: bicubic overshoot at hard edges then gives inputs outside
    what the model ever sees from an image (a uint8 face), and the protocol's accuracy is not the SDK's."""
    from fsrfer_edge.preprocessing import Preprocessing
    from trainer.evaluate import degraded_inputs

    pre = Preprocessing()
    block = np.kron((np.indices((12, 12)).sum(0) % 2 * 255).astype(np.uint8), np.ones((4, 4), np.uint8))[None]
    x = degraded_inputs(block, 3, pre)
    lo, hi = pre.normalize(np.array([[[0, 255]]], np.uint8))[0, 0]
    assert x.min() >= lo - 1e-6 and x.max() <= hi + 1e-6
    assert x.min() < lo + 0.2 and x.max() > hi - 0.2  # the test's face does reach both ends


def test_torch_logits_fn_tells_a_scale_aware_model_each_batchs_factor() -> None:
    """Mutant: torch_logits_fn hands a scale-aware model factor 1 whatever the batch's factor: fsrfer-eval then
    measures G's x1 behaviour at every factor (the shape-only check of the suite lets it through)."""
    from trainer.evaluate import torch_logits_fn

    module: Any = torch.nn.Module

    class Probe(module):  # type: ignore[misc]
        scale_aware = True

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x: Any, factor: Any) -> Any:
            return factor[:, None].float().expand(len(x), 7) + self.w

    out = torch_logits_fn(Probe())(np.zeros((3, 1, 48, 48), np.float32), 4)
    np.testing.assert_array_equal(out, np.full((3, 7), 4.0, np.float32))


def test_a_uint8_onnx_model_gets_the_nearest_grey_level_of_a_degraded_face(tmp_path: Path) -> None:
    """Mutant: the normalised batch turned back into pixels by truncation instead of rounding: a degraded face (the
    "resized" protocol's float pixels) then reaches a uint8 ONNX file up to one grey level darker, as no SDK user's
    image would."""
    make_tiny_onnx = importlib.import_module("_onnx_models").make_tiny_onnx  # tests/_onnx_models.py

    from fsrfer_edge.backends.onnxruntime_backend import OnnxRuntimeBackend
    from trainer.evaluate import onnx_logits_fn

    path = make_tiny_onnx(tmp_path / "u8.onnx", input_dtype="uint8")
    fn, pre = onnx_logits_fn(path, threads=1)
    pixels = np.random.default_rng(0).integers(1, 255, (4, 48, 48))
    x = pre.normalize((pixels - 0.3).astype(np.float32))[:, None]  # 0.3 below each grey level: rounds up to it
    want = OnnxRuntimeBackend(path, providers="cpu", threads=1).infer(pixels[:, None].astype(np.uint8))
    np.testing.assert_allclose(fn(x, 1), want, rtol=0, atol=1e-6)


# -- checkpoints -------------------------------------------------------------------------------------------


def test_a_checkpoint_of_a_newer_version_is_refused(tmp_path: Path) -> None:
    """Mutant: the version check one too lenient: a checkpoint of a future format (version 3) would be read as if
    this trainer understood it, its tensors possibly misread without an error."""
    from fsrfer_edge.errors import ModelError
    from trainer import checkpoint

    path = tmp_path / "future.pt"
    torch.save({"format": checkpoint.FORMAT, "version": checkpoint.VERSION + 1, "kind": "state"}, path)
    with pytest.raises(ModelError, match=f"version {checkpoint.VERSION + 1}"):
        checkpoint.load(path, "state")


def test_a_compressed_checkpoint_from_a_machine_of_the_other_byte_order_loads(tmp_path: Path) -> None:
    """Mutant: the byte-order flag of the byte planes ignored: a compressed checkpoint written on a big-endian
    machine (or read on one) loads with every float's bytes reversed: garbage weights, no error."""
    from trainer import checkpoint

    t = torch.tensor([1.5, -2.25, 3.0e-3], dtype=torch.float32)
    planes = checkpoint._to_byte_planes(t)
    other = "big" if sys.byteorder == "little" else "little"
    foreign = {**planes, "byteorder": other, "planes": planes["planes"].flip(0).contiguous()}
    torch.testing.assert_close(checkpoint._decode({"w": foreign})["w"], t, rtol=0, atol=0)


def test_a_failed_save_leaves_the_previous_checkpoint_whole(tmp_path: Path) -> None:
    """Mutant: an uncompressed checkpoint written in place (torch.save to the path): a save that fails half way
    (here: a payload torch cannot pickle; in a run: a full disk or a kill) then leaves a truncated file where the last
    good checkpoint was."""
    from trainer import checkpoint

    path = tmp_path / "m.pt"
    checkpoint.save(path, {"kind": "state", "w": torch.arange(4.0)})
    with pytest.raises(Exception):
        checkpoint.save(path, {"kind": "state", "w": torch.arange(4.0), "bad": lambda: 0})
    torch.testing.assert_close(checkpoint.load(path, "state")["w"], torch.arange(4.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


# -- synthetic faces ---------------------------------------------------------------------------------------


def test_synthetic_faces_cover_every_class_and_follow_the_seed() -> None:
    """Mutants: labels drawn from 0..5 (no neutral face: a 7-class model trained on them never sees class 6), or the
    seed ignored (train and test sets drawn with different seeds would be the same faces)."""
    from trainer.synthetic import make_faces

    a, la = make_faces(60, seed=1, size=16)
    b, lb = make_faces(60, seed=2, size=16)
    assert set(la.tolist()) == set(range(7))
    assert not np.array_equal(a, b) and not np.array_equal(la, lb)
    a2, la2 = make_faces(60, seed=1, size=16)
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(la, la2)
