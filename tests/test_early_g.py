"""Issue 12's trainer pieces: a G that starts early (copied stages, FiLM on the factor), distillation,
soft labels from the FER+ votes, and per-face down-sampling kernels."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from _scripts import load_script

torch = pytest.importorskip("torch")

from fsrfer_edge.errors import ConfigError, DataError  # noqa: E402
from trainer import config, data, losses  # noqa: E402
from trainer.degrade import DegradeConfig, random_lr  # noqa: E402
from trainer.evaluate import evaluate_fn, protocol_inputs, torch_logits_fn  # noqa: E402
from trainer.models import DeepGenerator, FiLM, InferenceModel  # noqa: E402
from trainer.synthetic import make_faces  # noqa: E402
from trainer.train import PRE, fit_factor_estimator, load_data, train_stage1, train_stage2  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEEP = {"method": "fsrfer", "backbone": "resnet10_half", "feature_level": "layer3",
        "generator": {"blocks": 1, "growth": 8, "start": "layer1", "scale_aware": True}}


def _deep_model(start: str = "layer1", level: str = "layer3") -> InferenceModel:
    torch.manual_seed(0)
    m = InferenceModel({**DEEP, "feature_level": level, "generator": {**DEEP["generator"], "start": start}}).eval()
    m.generator.init_from(m.fer.trunk)
    return m


@pytest.mark.parametrize("start,level", [("layer1", "layer3"), ("stem", "layer4"), ("layer3", "layer4")])
def test_untrained_deep_g_reproduces_the_hr_model_at_every_factor(start, level):
    # layer4: the last stage's map, with only pooling and the head above G
    m = _deep_model(start, level)
    assert isinstance(m.generator, DeepGenerator) and m.scale_aware and m.start == start
    hr = InferenceModel({"method": "hr", "backbone": "resnet10_half"}).eval()
    hr.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("generator.")})
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        for f in (1, 3, 8):
            assert torch.allclose(m(x, torch.full((4,), f)), hr(x), atol=1e-5)


def test_g_cannot_start_at_or_above_its_level():
    for start, level in (("layer4", "layer4"), ("layer3", "layer3"), ("layer4", "layer3")):
        with pytest.raises(ConfigError, match="start level before its target level.*layer4"):
            _deep_model(start, level)


def test_scale_aware_g_needs_the_factor_and_uses_it():
    m = _deep_model()
    x = torch.randn(3, 1, 48, 48)
    with pytest.raises(ConfigError, match="factor"):
        m(x)
    with torch.no_grad():  # a trained FiLM: different factors give different outputs
        for film in m.generator.films:
            film.net[2].weight.normal_(0, 0.5)
        a, b = m(x, torch.full((3,), 1)), m(x, torch.full((3,), 4))
    assert not torch.allclose(a, b)


def test_film_at_stages_keeps_one_film_per_copied_stage_and_checks_its_config(tmp_path):
    every = InferenceModel(DEEP).generator
    ends = InferenceModel({**DEEP, "generator": {**DEEP["generator"], "film_at": "stages"}}).eval()
    ends.generator.init_from(ends.fer.trunk)
    g = ends.generator
    # layer1 -> layer3 of resnet10 (one block per stage): one FiLM per block either way
    assert len(every.films) == len(every.stages) and g._film_blocks == list(range(len(g.stages)))
    stem = InferenceModel({**DEEP, "backbone": "resnet18_half",
                           "generator": {**DEEP["generator"], "start": "stem", "film_at": "stages"}}).generator
    assert len(stem.stages) == 6 and stem._film_blocks == [1, 3, 5] and len(stem.films) == 3  # two blocks a stage
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():  # the FiLMs it keeps condition on the factor
        for film in g.films:
            film.net[2].weight.normal_(0, 0.5)
        assert not torch.allclose(ends(x, torch.full((3,), 1)), ends(x, torch.full((3,), 4)))
    with pytest.raises(ConfigError, match="film_at: received 'layers'"):
        InferenceModel({**DEEP, "generator": {**DEEP["generator"], "film_at": "layers"}})
    with pytest.raises(ConfigError, match="film_at must be 'blocks'"):
        InferenceModel({**DEEP, "generator": {**DEEP["generator"], "film_at": "stages", "adapter_width": 0.25}})
    with pytest.raises(ConfigError, match="film_at 'stages' needs stage2.scale_aware"):
        _cfg(tmp_path, stage2={"feature_level": "layer1", "generator_start": "stem", "film_at": "stages"})
    from trainer.train import spec_for

    cfg = _cfg(tmp_path, stage2={"feature_level": "layer3", "generator_start": "stem", "scale_aware": True,
                                 "film_at": "stages"})
    assert spec_for(cfg, "fsrfer")["generator"]["film_at"] == "stages"
    blocks = _cfg(tmp_path, stage2={"feature_level": "layer3", "generator_start": "stem", "scale_aware": True})
    assert "film_at" not in spec_for(blocks, "fsrfer")["generator"]  # older checkpoints' specs unchanged


def test_film_starts_at_identity_and_is_smooth_in_the_factor():
    film = FiLM(4)
    x = torch.randn(2, 4, 3, 3)
    assert torch.equal(film(x, torch.tensor([1, 8])), x)
    with torch.no_grad():
        film.net[2].weight.normal_()
    y = [film(x[:1], torch.tensor([f])) for f in (4, 5, 6)]
    # x5 (never trained) lies between x4 and x6 in the conditioning features' space: finite, distinct
    assert all(torch.isfinite(t).all() for t in y) and not torch.allclose(y[0], y[1])


def test_deep_g_batchnorm_statistics_stay_those_of_the_hr_model():
    m = _deep_model()
    g = m.generator.train()
    before = {k: v.clone() for k, v in g.state_dict().items() if "running" in k}
    fmap = m.fer.trunk.forward_to(torch.randn(8, 1, 48, 48) * 3, "layer1")
    g(fmap, torch.full((8,), 4))
    after = {k: v for k, v in g.state_dict().items() if "running" in k}
    assert before and all(torch.equal(before[k], after[k]) for k in before)


def test_deep_g_keeps_hr_statistics_also_with_gpu_ddps_sync_batchnorm():
    # DDP on GPUs replaces each BatchNorm2d by torch.nn.SyncBatchNorm, which is not a BatchNorm2d
    g = torch.nn.SyncBatchNorm.convert_sync_batchnorm(_deep_model().generator)
    syncs = [m for m in g.stages.modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    g.train()
    assert syncs and not any(m.training for m in syncs)


def test_deep_g_copies_can_re_estimate_their_batchnorm_statistics_like_the_baseline(tmp_path):
    torch.manual_seed(0)
    spec = {**DEEP, "generator": {**DEEP["generator"], "batchnorm": "train"}}
    m = InferenceModel(spec).eval()
    m.generator.init_from(m.fer.trunk)
    g = m.generator.train()
    before = {k: v.clone() for k, v in g.state_dict().items() if "running_mean" in k}
    fmap = m.fer.trunk.forward_to(torch.randn(8, 1, 48, 48) * 3, "layer1")
    g(fmap, torch.full((8,), 4))
    after = g.state_dict()
    assert before and all(not torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ConfigError, match="copy_batchnorm must be one of"):
        _cfg(tmp_path, stage2={"feature_level": "layer1", "generator_start": "stem", "copy_batchnorm": "frozen"})
    with pytest.raises(ConfigError, match="copy_batchnorm 'train' needs stage2.generator_start"):
        _cfg(tmp_path, stage2={"feature_level": "layer1", "copy_batchnorm": "train"})
    with pytest.raises(ConfigError, match="gated G"):
        InferenceModel({**DEEP, "generator": {**DEEP["generator"], "batchnorm": "train", "adapter_width": 0.25}})
    cfg = _cfg(tmp_path, stage2={"feature_level": "layer1", "generator_start": "stem", "copy_batchnorm": "train"})
    from trainer.train import spec_for

    assert spec_for(cfg, "fsrfer")["generator"]["batchnorm"] == "train"
    assert "batchnorm" not in spec_for(_cfg(tmp_path, stage2={"feature_level": "layer1", "generator_start": "stem"}),
                                       "fsrfer")["generator"]  # older checkpoints' specs unchanged


@pytest.mark.filterwarnings("ignore:torch.tensor results are registered as constants")  # the anchors: constants by design
def test_per_factor_batchnorm_starts_as_the_hr_model_trains_each_factors_statistics_and_exports(tmp_path):
    pytest.importorskip("onnx")
    import onnxruntime as ort

    from fsrfer_edge.export.onnx_export import export_onnx
    from trainer import checkpoint
    from trainer.models import FactorBatchNorm

    torch.manual_seed(0)
    m = InferenceModel({**DEEP, "generator": {**DEEP["generator"], "batchnorm": "per_factor"}}).eval()
    m.generator.init_from(m.fer.trunk)
    hr = InferenceModel({"method": "hr", "backbone": "resnet10_half"}).eval()
    hr.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("generator.")})
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():  # every anchor starts at the HR statistics: the HR model at any factor
        for f in (1, 3, 5, 8):
            assert torch.allclose(m(x, torch.full((4,), f)), hr(x), atol=1e-5)
    bn = m.generator.factor_bns[0]
    assert isinstance(bn, FactorBatchNorm) and len(m.generator.factor_bns) >= 4
    w = bn.weights(torch.tensor([1.0, 1.25, 5.0, 8.0, 16.0]))
    assert torch.allclose(w.sum(1), torch.ones(5)) and w[0, 0] == 1 and w[3, -1] == 1 and w[4, -1] == 1
    assert w[2, 3] > 0 and w[2, 4] > w[2, 3]  # x5: between x4 and x6, nearer x6 in log2
    # training moves only the statistics of the factors in the batch
    g = m.generator.train()
    before = bn.running_mean.clone()
    g(m.fer.trunk.forward_to(torch.randn(8, 1, 48, 48) * 3, "layer1"), torch.tensor([2, 2, 2, 2, 8, 8, 8, 8]))
    moved = (bn.running_mean != before).any(1).tolist()
    assert moved == [False, True, False, False, False, True]
    g.eval()
    with torch.no_grad():
        assert not torch.allclose(m(x, torch.full((4,), 8)), m(x, torch.full((4,), 1)))
        assert torch.allclose(m(x, torch.full((4,), 1)), hr(x), atol=1e-5)  # x1's statistics untouched
    with pytest.raises(ConfigError, match="needs scale_aware"):
        InferenceModel({**DEEP, "generator": {**DEEP["generator"], "batchnorm": "per_factor", "scale_aware": False}})
    with pytest.raises(ConfigError, match="'per_factor' needs stage2.scale_aware"):
        _cfg(tmp_path, stage2={"feature_level": "layer1", "generator_start": "stem", "copy_batchnorm": "per_factor"})
    from trainer.train import spec_for

    cfg = _cfg(tmp_path, degrade={"factors": [2, 4, 8]}, stage2={
        "feature_level": "layer1", "generator_start": "stem", "scale_aware": True, "copy_batchnorm": "per_factor"})
    assert spec_for(cfg, "fsrfer")["generator"]["batchnorm_anchors"] == [1, 2, 4, 8]  # the factors it trains on
    assert InferenceModel({**DEEP, "generator": {**DEEP["generator"], "batchnorm": "per_factor",
                                                 "batchnorm_anchors": [2, 4, 8]}}).generator.factor_bns[0].anchors == (1, 2, 4, 8)
    # a checkpoint round trip, and one graph that estimates the factor and interpolates the statistics
    # (weights moved as training moves them: ONNX Runtime's optimiser rejects the graph of an untrained
    # one, whose identical all-ones BatchNorm weights the exporter folds into one shared initializer)
    with torch.no_grad():
        for p in m.generator.parameters():
            p.add_(0.01 * torch.randn_like(p))
    faces, _ = make_faces(400, seed=3)
    fit_factor_estimator(m, faces[:300], faces[300:], DegradeConfig(factors=(1, 2, 4, 8)), seed=0, n=300)
    ckpt = tmp_path / "pf.pt"
    checkpoint.save(ckpt, checkpoint.model_payload(m, m.spec, PRE, {"name": "pf"}))
    back, _, _ = checkpoint.load_model(ckpt)
    assert torch.equal(back.generator.factor_bns[0].running_mean, bn.running_mean)
    export_onnx(ckpt, tmp_path / "pf.onnx")
    sess = ort.InferenceSession(str(tmp_path / "pf.onnx"), providers=["CPUExecutionProvider"])
    xs = torch.from_numpy(protocol_inputs(faces[300:306], 8, PRE))
    with torch.no_grad():
        np.testing.assert_allclose(sess.run(None, {"faces": xs.numpy()})[0], m(xs).numpy(), atol=1e-4)


def test_evaluate_passes_each_factor_to_a_scale_aware_model():
    seen = []

    def fn(x, factor):
        seen.append(factor)
        return np.zeros((len(x), 7), np.float32)

    imgs = np.zeros((5, 48, 48), np.uint8)
    evaluate_fn(fn, imgs, np.zeros(5, np.int64), (1, 4), PRE, batch_size=3)
    assert seen == [1, 1, 4, 4]
    out = torch_logits_fn(_deep_model())(PRE.normalize(imgs.astype(np.float32))[:, None], 4)
    assert out.shape == (5, 7)


def test_distillation_is_zero_for_equal_logits_and_grows_with_disagreement():
    a = torch.randn(4, 7)
    assert torch.allclose(losses.distillation(a, a), torch.zeros(4), atol=1e-6)
    far = losses.distillation(a, a + torch.randn(4, 7) * 3)
    assert (far > 0).all()


def test_soft_cross_entropy_equals_hard_for_one_hot_targets():
    logits = torch.randn(5, 7)
    y = torch.tensor([0, 3, 6, 2, 2])
    onehot = torch.nn.functional.one_hot(y, 7).float()
    assert torch.allclose(losses.soft_cross_entropy(logits, onehot), torch.nn.functional.cross_entropy(logits, y))


def test_vote_distribution_maps_the_ferplus_columns_to_classes():
    votes = np.zeros((2, 10), np.uint8)
    votes[0, [0, 1, 7]] = [6, 2, 2]  # neutral 6, happiness 2, contempt 2 (dropped)
    t = data.vote_distribution(votes)
    np.testing.assert_allclose(t[0], np.eye(7)[6] * 0.75 + np.eye(7)[3] * 0.25)
    np.testing.assert_allclose(t[1], np.full(7, 1 / 7))  # no votes at all: uniform


def _write_voted_pair(d: Path, n: int = 96) -> Path:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, n)
    votes = np.zeros((n, 10), np.uint8)
    col_of = {c: i for i, c in enumerate((6, 3, 5, 4, 0, 1, 2))}
    votes[np.arange(n), [col_of[int(c)] for c in labels]] = 7
    votes[np.arange(n), rng.integers(0, 7, n)] += 3
    split = np.array(["train"] * (n - 32) + ["val"] * 16 + ["test"] * 16)
    np.savez(d / "fer2013.npz", images=rng.integers(0, 256, (n, 48, 48)).astype(np.uint8),
             labels=labels.astype(np.int8), split=split, orig_row=np.arange(n, dtype=np.int32))
    np.savez(d / "ferplus_labels.npz", orig_row=np.arange(n, dtype=np.int32), votes=votes,
             labels=labels.astype(np.int8), split=split)
    return d / "fer2013.npz"


def test_soft_labels_load_with_their_faces_and_train_stage1(tmp_path):
    path = _write_voted_pair(tmp_path)
    fs = data.load_npz(path)
    assert fs.targets is not None and fs.targets.shape == (len(fs), 7)
    # the majority label is the distribution's mode, row by row (also after subset())
    train = fs.subset("train")
    np.testing.assert_array_equal(train.targets.argmax(1), train.labels)
    cfg = _cfg(tmp_path, data={"path": str(path), "soft_labels": True, "synthetic": 0}, stage1={"epochs": 1, "batch_size": 16})
    d = load_data(cfg, path)
    assert d.train.targets is not None and d.val.targets is not None
    hr = train_stage1(cfg, d, tmp_path / "run", resume=False)
    assert hr is not None
    # an early G's cross-entropy term on the votes: each batch carries them to the step
    cfg2 = _cfg(tmp_path, data={"path": str(path), "soft_labels": True, "synthetic": 0},
                stage2={"feature_level": "layer1", "generator_start": "stem", "pretrain_epochs": 0, "epochs": 1,
                        "batch_size": 16, "losses": {"cross_entropy": 1.0, "cross_entropy_targets": "votes"}})
    from trainer import checkpoint

    g = train_stage2(cfg2, d, hr, tmp_path / "run", "fsrfer", cfg2.stage2.losses, resume=False)
    assert checkpoint.load(g)["meta"]["history"][0]["ce"] > 0
    with pytest.raises(DataError, match="votes"):
        load_data(_cfg(tmp_path, data={"synthetic": 50, "soft_labels": True}), None)


def _cfg(tmp_path, **over):
    cfg = config.load(REPO / "configs" / "tiny.yaml")
    d = {**cfg.to_dict(), "device": "cpu"}
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) else v
    return config.from_dict(d)


def _train_tiny_early_g(tmp_path, stage2_losses: dict, **stage2):
    """A G from the stem to layer2 (FiLM), one GAN epoch on 64 synthetic faces with ``stage2_losses`` (and
    other ``stage2`` options); the checkpoint's path."""
    cfg = _cfg(tmp_path, data={"synthetic": 64}, stage1={"epochs": 1},
               stage2={"feature_level": "layer2", "generator_start": "stem", "scale_aware": True, "pretrain_epochs": 0,
                       "epochs": 1, "batch_size": 16, "losses": stage2_losses, **stage2})
    d = load_data(cfg, None)
    hr = train_stage1(cfg, d, tmp_path / "run", resume=False)
    return train_stage2(cfg, d, hr, tmp_path / "run", "fsrfer", cfg.stage2.losses, resume=False)


def test_config_checks_the_early_g_options(tmp_path):
    with pytest.raises(ConfigError, match="generator_start"):
        _cfg(tmp_path, stage2={"feature_level": "layer1", "generator_start": "layer2"})
    with pytest.raises(ConfigError, match="scale_aware"):
        _cfg(tmp_path, stage2={"feature_level": "layer1", "scale_aware": True})
    assert _cfg(tmp_path, stage2={"feature_level": "layer1", "generator_start": "stem"}).stage2.generator_start == "stem"


def test_early_g_trains_on_images_and_moves_towards_the_hr_features(tmp_path):
    cfg = _cfg(tmp_path, data={"synthetic": 160}, stage1={"epochs": 3},
               degrade={"kernels": ["box", "bicubic"], "jpeg_prob": 0.5},
               stage2={"feature_level": "layer1", "generator_start": "stem", "scale_aware": True,
                       "pretrain_epochs": 1, "epochs": 1, "batch_size": 16,
                       "losses": {"distill": 1.0, "adversarial": 1.0}})
    d = load_data(cfg, None)
    hr = train_stage1(cfg, d, tmp_path / "run", resume=False)
    path = train_stage2(cfg, d, hr, tmp_path / "run", "fsrfer", cfg.stage2.losses, resume=False)
    from trainer import checkpoint

    model, _, ckpt = checkpoint.load_model(path)
    assert model.scale_aware and model.start == "stem"
    hist = ckpt["meta"]["history"]
    assert {"kd", "adv", "rec", "head", "d_loss"} <= set(hist[0])
    # G moved: its copied stem-to-layer1 stage differs from the HR model's layer1
    hr_model, _, _ = checkpoint.load_model(hr)
    g_stage = model.generator.stages[0].conv1.weight
    assert not torch.equal(g_stage, hr_model.fer.trunk.layers[0].conv1.weight)


def test_g_can_train_with_the_baselines_sgd_and_warm_up(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"g_optimizer must be one of \['adam', 'sgd'\], got 'rmsprop'"):
        _cfg(tmp_path, stage2={"g_optimizer": "rmsprop"})
    from trainer import train

    cfg = _cfg(tmp_path, data={"synthetic": 160}, stage1={"epochs": 1},
               stage2={"feature_level": "layer1", "generator_start": "stem", "scale_aware": True,
                       "pretrain_epochs": 1, "epochs": 5, "batch_size": 16, "g_optimizer": "sgd", "lr_g": 0.01,
                       "losses": {"distill": 1.0}})
    d = load_data(cfg, None)
    hr = train_stage1(cfg, d, tmp_path / "run", resume=False)
    seen: list[tuple[str, float]] = []
    real_set_lr = train.set_lr
    monkeypatch.setattr(train, "set_lr", lambda opt, lr: (seen.append((type(opt).__name__, lr)), real_set_lr(opt, lr)))
    # stopped after the first of its 5 GAN epochs (the state is kept)
    assert train_stage2(cfg, d, hr, tmp_path / "run", "fsrfer", cfg.stage2.losses, resume=False, stop_after=1) is None
    sgd = [lr for kind, lr in seen if kind == "SGD"]
    steps = len(sgd)  # one epoch of 5: warm-up over the first half (min(1, epochs / 10) epochs), then cosine
    assert steps >= 4 and sgd[0] == pytest.approx(0.01 / steps / 0.5)
    peak = int(np.argmax(sgd))
    assert all(np.diff(sgd[:peak + 1]) > 0) and all(np.diff(sgd[peak:]) < 0) and sgd[peak] == pytest.approx(0.01)
    state = torch.load(tmp_path / "run" / "state" / "fsrfer.gan.pt", map_location="cpu", weights_only=False)
    group = state["optimizers"]["g"]["param_groups"][0]
    assert group["nesterov"] and group["momentum"] == cfg.stage1.momentum
    assert group["weight_decay"] == cfg.stage1.weight_decay
    assert "betas" in state["optimizers"]["d"]["param_groups"][0]  # the critic keeps Adam


def test_the_lr_finetuned_baseline_can_distil_the_hr_model(tmp_path, monkeypatch):
    from trainer import losses as losses_mod
    from trainer.train import train_lr_finetune

    cfg = _cfg(tmp_path, data={"synthetic": 160}, stage1={"epochs": 1}, baselines={"lr_finetune_epochs": 1})
    d = load_data(cfg, None)
    hr = train_stage1(cfg, d, tmp_path / "run", resume=False)
    calls = []
    real = losses_mod.distillation
    monkeypatch.setattr(losses_mod, "distillation", lambda s, t, temp: (calls.append((s, t, temp)), real(s, t, temp))[1])
    train_lr_finetune(cfg, d, hr, tmp_path / "plain", resume=False)
    assert not calls  # off by default: the baseline as before
    kd = config.from_dict({**cfg.to_dict(), "baselines": {**cfg.to_dict()["baselines"], "lr_finetune_distill": 1.0}})
    train_lr_finetune(kd, d, hr, tmp_path / "kd", resume=False)
    assert calls and calls[0][2] == kd.stage2.losses.distill_temperature
    student, teacher, _ = calls[0]
    assert student.requires_grad and not teacher.requires_grad and student.shape == teacher.shape
    # the teacher is the frozen HR model on the HR faces: its answers differ from the student's on LR ones
    assert not torch.allclose(student.detach(), teacher)


def test_a_g_up_to_the_last_stage_trains_and_exports_to_one_graph(tmp_path):
    # tiny has two stages: layer2 is its last map, with only pooling and the head above G
    ort = pytest.importorskip("onnxruntime")
    cfg = _cfg(tmp_path, data={"synthetic": 96}, stage1={"epochs": 1},
               stage2={"feature_level": "layer2", "generator_start": "stem", "scale_aware": True,
                       "pretrain_epochs": 1, "epochs": 1, "batch_size": 16, "losses": {"distill": 1.0}})
    d = load_data(cfg, None)
    hr = train_stage1(cfg, d, tmp_path / "run", resume=False)
    path = train_stage2(cfg, d, hr, tmp_path / "run", "fsrfer", cfg.stage2.losses, resume=False)
    from fsrfer_edge.export.onnx_export import export_onnx
    from trainer import checkpoint

    model, _, _ = checkpoint.load_model(path)
    assert model.level == "layer2" and len(model.generator.stages) == 2  # copies of both stages
    export_onnx(path, tmp_path / "g.onnx")
    faces, _ = make_faces(6, seed=4)
    x = torch.from_numpy(protocol_inputs(faces, 3, PRE))
    got = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"faces": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model.eval()(x).numpy(), atol=1e-4)


def test_random_lr_draws_a_kernel_per_face_and_box_differs_from_bicubic():
    imgs = np.random.default_rng(0).integers(0, 256, (40, 48, 48)).astype(np.uint8)
    box, _ = random_lr(imgs, DegradeConfig(factors=(4,), kernels=("box",)), np.random.default_rng(1))
    bic, _ = random_lr(imgs, DegradeConfig(factors=(4,)), np.random.default_rng(1))
    assert np.abs(box - bic).mean() > 1.0
    mix, _ = random_lr(imgs, DegradeConfig(factors=(4,), kernels=("box", "bicubic")), np.random.default_rng(1))
    is_box = np.isclose(mix, box, atol=1e-3).all(axis=(1, 2))
    is_bic = np.isclose(mix, bic, atol=1e-3).all(axis=(1, 2))
    assert is_box.any() and is_bic.any() and (is_box | is_bic).all()
    with pytest.raises(ConfigError, match="kernels"):
        DegradeConfig(kernels=("lanczos",))


def test_protocols_small_matches_resized_up_to_rounding_and_camera_differs(monkeypatch):
    from fsrfer_edge import preprocessing
    from trainer.evaluate import PROTOCOLS, protocol_inputs, small_crops

    imgs = np.random.default_rng(0).integers(0, 256, (6, 48, 48)).astype(np.uint8)
    assert small_crops(imgs, 4).shape == (6, 12, 12) and small_crops(imgs, 4).dtype == np.uint8
    # Small crops go through the SDK's preprocessing, which raises faces of low contrast (these noise faces, once
    # averaged down to 12 px, are); the tables' protocol does not. Apart from that floor, only rounding differs.
    raised = protocol_inputs(imgs, 4, PRE, "small")
    monkeypatch.setattr(preprocessing, "CONTRAST_FLOOR", 0.0)
    a, b, c = (protocol_inputs(imgs, 4, PRE, p) for p in PROTOCOLS)
    px = 1 / (255 * PRE.std)  # one grey level in normalised units
    assert np.abs(a - b).max() < 2 * px  # the small crop only adds uint8 rounding
    assert np.abs(raised - b).max() > 10 * px
    assert np.abs(a - c).mean() > 2 * px  # area + JPEG is another image
    # factor 1 under "small" is the face itself
    np.testing.assert_allclose(protocol_inputs(imgs, 1, PRE, "small"), protocol_inputs(imgs, 1, PRE, "resized"), atol=1e-6)
    # The camera crop is its two parts in turn (scripts/camera_gap.py steps through them): area down-sampling,
    # then JPEG; lower quality moves it further from the area crop.
    from trainer.evaluate import CAMERA_JPEG_QUALITY, lr_crops

    smooth = np.repeat(np.repeat(imgs[:, ::4, ::4], 4, 1), 4, 2)  # blocky faces: JPEG keeps more of them
    np.testing.assert_array_equal(small_crops(smooth, 2, "camera"), lr_crops(smooth, 2, "box", CAMERA_JPEG_QUALITY))
    np.testing.assert_array_equal(small_crops(smooth, 2, "small"), lr_crops(smooth, 2, "bicubic"))
    area = lr_crops(smooth, 2, "box").astype(float)
    err = [np.abs(lr_crops(smooth, 2, "box", q) - area).mean() for q in (95, 50, 10)]
    assert 0 < err[0] < err[1] < err[2], err


def test_fsrfer_eval_takes_a_protocol(tmp_path):
    from trainer import checkpoint
    from trainer.cli import eval_main

    path = _write_voted_pair(tmp_path)
    m = _deep_model()
    ckpt = tmp_path / "m.pt"
    checkpoint.save(ckpt, checkpoint.model_payload(m, m.spec, PRE, {"name": "deep"}))
    for protocol in ("small", "camera"):
        out = tmp_path / f"{protocol}.json"
        assert eval_main(["--checkpoint", str(ckpt), "--data", str(path), "--split", "test", "--factors", "1,4",
                          "--protocol", protocol, "--json", str(out)]) == 0
        import json

        assert json.loads(out.read_text())["protocol"] == protocol


def test_an_early_g_exports_to_one_graph_and_a_scale_aware_one_is_refused(tmp_path):
    pytest.importorskip("onnx")
    import onnxruntime as ort

    from fsrfer_edge.errors import ModelError
    from fsrfer_edge.export.onnx_export import export_onnx
    from trainer import checkpoint

    plain = InferenceModel({**DEEP, "generator": {**DEEP["generator"], "scale_aware": False}}).eval()
    plain.generator.init_from(plain.fer.trunk)
    with torch.no_grad():
        for p in plain.generator.parameters():
            p.add_(0.01 * torch.randn_like(p))
    ckpt = tmp_path / "plain.pt"
    checkpoint.save(ckpt, checkpoint.model_payload(plain, plain.spec, PRE, {"name": "plain"}))
    export_onnx(ckpt, tmp_path / "plain.onnx")
    x = torch.randn(3, 1, 48, 48)
    got = ort.InferenceSession(str(tmp_path / "plain.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"faces": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, plain(x).numpy(), atol=1e-4)
    aware = _deep_model()
    ckpt2 = tmp_path / "aware.pt"
    checkpoint.save(ckpt2, checkpoint.model_payload(aware, aware.spec, PRE, {"name": "aware"}))
    with pytest.raises(ModelError, match="fit_factor_estimator"):  # FiLM needs the factor: no estimator, no graph
        export_onnx(ckpt2, tmp_path / "aware.onnx")
    assert not (tmp_path / "aware.onnx").exists()
    # With a fitted estimator the scale-aware model is one single-input graph that estimates each factor.
    faces, _ = make_faces(400, seed=3)
    report = fit_factor_estimator(aware, faces[:300], faces[300:], DegradeConfig(factors=(1, 2, 4, 8)), seed=0, n=300)
    assert set(report) == {"1", "2", "4", "8"}
    checkpoint.save(ckpt2, checkpoint.model_payload(aware, aware.spec, PRE, {"name": "aware"}))
    export_onnx(ckpt2, tmp_path / "aware.onnx")
    sess = ort.InferenceSession(str(tmp_path / "aware.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["faces"]
    x = torch.from_numpy(protocol_inputs(faces[300:306], 4, PRE))
    with torch.no_grad():
        np.testing.assert_allclose(sess.run(None, {"faces": x.numpy()})[0], aware(x).numpy(), atol=1e-4)
    # INT8 keeps the estimator and FiLM in float even when G is quantized (--int8-quantize-g).
    from fsrfer_edge.export.onnx_export import load_onnx
    from fsrfer_edge.export.quantize import float_tail_nodes

    graph = load_onnx(tmp_path / "aware.onnx")
    kept = float_tail_nodes(graph, generator=False)
    assert any(n.startswith("/factor_estimator/") for n in kept) and any(n.startswith("/generator/films.") for n in kept)
    assert not any(n.startswith("/generator/stages.") for n in kept)
    # ... and the estimator's pooling does not drag the frozen stages above G into the float tail.
    convs = [n.name for n in graph.graph.node if n.op_type == "Conv" and not n.name.startswith(("/generator/", "/factor_estimator/"))]
    above_g = [n for n in convs if not n.startswith(("/stem", "/layers.0", "/layers.1"))]
    assert above_g and not set(above_g) & set(kept), (above_g, kept)
    assert any(n.startswith("/generator/stages.") for n in float_tail_nodes(graph, generator=True))
    # FiLM's ops on the maps (scale, then shift, after each copied block) can be quantized on their own;
    # the network from the factor to their parameters and the estimator stay in float.
    from fsrfer_edge.export.quantize import film_map_nodes

    film_ops = film_map_nodes(graph)
    by_name = {n.name: n for n in graph.graph.node}
    assert [by_name[n].op_type for n in film_ops] == ["Mul", "Add"] * len(aware.generator.films), film_ops
    film_kept = float_tail_nodes(graph, generator=False, film_maps=False)
    assert set(kept) - set(film_kept) == set(film_ops)
    assert any(by_name[n].op_type == "Gemm" and n.startswith("/generator/films.") for n in film_kept)
    # Without a choice, an early G is quantized (it holds most of the compute); a layer3 G is not.
    from fsrfer_edge.export.quantize import generator_is_early, resolve_quantize_generator

    assert generator_is_early(graph) and generator_is_early(load_onnx(tmp_path / "plain.onnx"))
    assert resolve_quantize_generator(graph, None) and not resolve_quantize_generator(graph, False)
    # A uint8-input graph wraps the model (its nodes are /model/...): the same nodes stay in float.
    from fsrfer_edge.export.quantize import module_path

    export_onnx(ckpt2, tmp_path / "aware_u8.onnx", uint8_input=True)
    wrapped = load_onnx(tmp_path / "aware_u8.onnx")
    assert all(n.name.startswith("/model/") for n in wrapped.graph.node if n.name.count("/") > 1)
    assert generator_is_early(wrapped)
    from fsrfer_edge.export.quantize import image_path_nodes

    wrapper_ops = set(image_path_nodes(wrapped)) - {n.name for n in wrapped.graph.node if n.name.startswith("/model/")}
    assert wrapper_ops, "the wrapper's Cast and normalisation run on the image above the stem conv"
    for g in (False, True):
        floats = set(float_tail_nodes(wrapped, generator=g))
        assert wrapper_ops <= floats  # nothing rounds the image to 8 bits before the (float) stem conv
        assert {module_path(n) for n in floats - wrapper_ops} == set(float_tail_nodes(graph, generator=g))


def test_factor_estimator_is_fitted_from_degraded_faces_and_refuses_to_guess_unfitted():
    model = _deep_model()
    model.spec["factor_estimator"] = True
    rebuilt = InferenceModel(model.spec)  # a checkpoint's spec rebuilds an (unfitted) estimator
    with pytest.raises(ConfigError, match="not fitted"):
        rebuilt(torch.zeros(2, 1, 48, 48))
    faces, _ = make_faces(1200, seed=5)
    report = fit_factor_estimator(model, faces[:900], faces[900:], DegradeConfig(factors=(1, 2, 3, 4, 6, 8)), seed=0)
    est = model.factor_estimator
    # Held-out faces at each factor: the estimate is near the truth and grows with the factor.
    means = []
    for f in (1, 2, 4, 8):
        x = torch.from_numpy(protocol_inputs(faces[900:], f, PRE))
        with torch.no_grad():
            got = est(x).numpy()
        assert np.all((got >= 1.0) & (got <= 8.0))
        means.append(float(np.exp(np.log(got).mean())))
        assert report[str(f)]["mae_log2"] < 0.5, report
    assert means == sorted(means) and means[0] < 1.5 and means[-1] > 5.0, means
    with pytest.raises(ConfigError, match="scale-aware"):
        fit_factor_estimator(InferenceModel({**DEEP, "generator": {**DEEP["generator"], "scale_aware": False}}),
                             faces, faces, DegradeConfig(), seed=0)


def test_rounding_estimator_gives_float_and_uint8_inputs_one_estimate(tmp_path: Path) -> None:
    """``round_pixels``: the estimator's statistics on whole grey levels, so a face resized up in float and
    the same face stored as uint8 get the same factor; the spec rebuilds it from a checkpoint, and its ONNX
    graph (with Round, in both TensorRT tables) matches PyTorch."""
    ort = pytest.importorskip("onnxruntime")
    from fsrfer_edge.export.onnx_export import export_onnx, load_onnx
    from fsrfer_edge.export.trt_check import check_file
    from trainer import checkpoint
    from trainer.evaluate import degraded_inputs

    faces, _ = make_faces(900, seed=6)
    dcfg = DegradeConfig(factors=(1, 2, 4, 8))
    x = torch.from_numpy(degraded_inputs(faces[700:760], 8, PRE))  # resized up in float
    rounded = torch.from_numpy(PRE.normalize(np.clip(np.rint((x.numpy() * PRE.std + PRE.mean) * 255), 0, 255)))
    plain, rounding = _deep_model(), _deep_model()
    fit_factor_estimator(plain, faces[:700], faces[700:], dcfg, seed=0, n=700)
    fit_factor_estimator(rounding, faces[:700], faces[700:], dcfg, seed=0, n=700, round_pixels=PRE)
    assert rounding.spec["factor_estimator_pixels"] == [255.0 * PRE.std, 255.0 * PRE.mean]
    assert "factor_estimator_pixels" not in plain.spec
    with torch.no_grad():
        a, b = rounding.factor_estimator(x), rounding.factor_estimator(rounded)
        pa, pb = plain.factor_estimator(x), plain.factor_estimator(rounded)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5)
    assert float((pa - pb).abs().max()) > 0.01  # the plain estimator's statistics move with the rounding
    path = tmp_path / "round.pt"
    checkpoint.save(path, checkpoint.model_payload(rounding, rounding.spec, PRE, {"name": "round"}))
    rebuilt, _, _ = checkpoint.load_model(path)
    assert rebuilt.factor_estimator is not None and rebuilt.factor_estimator.pixels is not None
    with torch.no_grad():
        np.testing.assert_allclose(rebuilt.factor_estimator(x).numpy(), a.numpy(), rtol=1e-6)
        want = rebuilt(x).numpy()
    export_onnx(path, tmp_path / "round.onnx")
    assert any(n.op_type == "Round" for n in load_onnx(tmp_path / "round.onnx").graph.node)
    sess = ort.InferenceSession(str(tmp_path / "round.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"faces": x.numpy()})[0], want, atol=1e-4)
    report = check_file(tmp_path / "round.onnx")
    assert report.ok, report.errors


def test_seed_summary_pairs_each_row_with_the_method_seed_by_seed():
    mod = load_script("scripts/early_g_summary.py", "early_g_summary")
    # Seed 1 is a harder subset for both: the paired difference has no spread, the raw rows do.
    method = {"0": {"2": 80.0, "4": 70.0}, "1": {"2": 76.0, "4": 66.0}}
    base = {"0": {"2": 79.0, "4": 71.0}, "1": {"2": 75.0, "4": 67.0}, "2": {"2": 50.0, "4": 50.0}}
    rows = {"g/fsrfer": {"runs": {"resized": method}}, "g/lr_finetune": {"runs": {"resized": base}}}
    diff = mod.paired(rows, "g/fsrfer")["g/lr_finetune"]["resized"]
    assert diff["seeds"] == 2  # seed 2 has no method run to pair with
    assert diff["mean"] == {"2": -1.0, "4": 1.0} and diff["std"] == {"2": 0.0, "4": 0.0}
    with pytest.raises(SystemExit, match="no such row"):
        mod.paired(rows, "g/missing")


def test_summary_keeps_a_film_check_only_of_the_same_run_and_split(tmp_path):
    import json

    mod = load_script("scripts/early_g_summary.py", "early_g_summary")
    check = {"run": "early_g", "accuracy": {"true factor": {"2": 80.0}}}
    path = tmp_path / "val.json"
    path.write_text(json.dumps({"split": "val", "film_check": check}))
    assert mod.kept_film_check(path, "early_g", "val") == check
    with pytest.raises(SystemExit, match="no film check of 'stem'"):
        mod.kept_film_check(path, "stem", "val")
    with pytest.raises(SystemExit, match="on the test split"):
        mod.kept_film_check(path, "early_g", "test")
    with pytest.raises(SystemExit, match="cannot read"):
        mod.kept_film_check(tmp_path / "missing.json", "early_g", "val")
    with pytest.raises(SystemExit, match="needs --film-check"):
        mod.main(["--json", str(path), "--keep-film-check", f"a={tmp_path}"])


def test_summary_takes_kept_seeds_from_an_earlier_file_beside_run_folders(tmp_path):
    import json

    mod = load_script("scripts/early_g_summary.py", "early_g_summary")

    def factors(a2, a4):
        return {"factors": {"2": {"accuracy": a2}, "4": {"accuracy": a4}}}

    run = tmp_path / "run_s1"  # seed 1's folder: one protocol, two models
    (run / "eval" / "val").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"seed": 1}))
    (run / "eval" / "val" / "results.json").write_text(json.dumps(
        {"fsrfer": factors(0.70, 0.60), "lr_finetune": factors(0.72, 0.61)}))
    old = tmp_path / "old.json"  # seed 0, summarised earlier under another label; its folder is gone
    old.write_text(json.dumps({"split": "val", "rows": {
        "long/fsrfer": {"runs": {"resized": {"0": {"2": 80.0, "4": 62.0}}}, "cost": {"0": {"seconds": 9.0}}},
        "long/lr_finetune": {"runs": {"resized": {"0": {"2": 78.0, "4": 63.0}}}, "cost": {}},
        "other/fsrfer": {"runs": {"resized": {"0": {"2": 1.0, "4": 1.0}}}, "cost": {}}}}))
    out = tmp_path / "seeds.json"
    assert mod.main(["--json", str(out), "--against", "g/lr_finetune", "--kept", f"g={old}:long", f"g={run}"]) == 0
    doc = json.loads(out.read_text())
    assert sorted(doc["rows"]) == ["g/fsrfer", "g/lr_finetune"]  # "other" is not taken
    summ = doc["rows"]["g/fsrfer"]["summary"]["resized"]
    assert summ["seeds"] == 2 and summ["mean"] == {"2": 75.0, "4": 61.0}
    assert doc["rows"]["g/fsrfer"]["cost"]["0"] == {"seconds": 9.0}
    diff = doc["paired"][0]["difference"]["g/fsrfer"]["resized"]
    assert diff["seeds"] == 2 and diff["mean"] == {"2": 0.0, "4": -1.0}
    ov = doc["paired"][0]["overall"]["g/fsrfer"]  # over factors (and protocols), seed by seed
    assert ov["by_seed"] == {"0": 0.5, "1": -1.5} and ov["mean"] == -0.5 and ov["std"] == 1.41
    assert f"--kept g={old}:long" in doc["command"]
    # the mean over seeds is of the exact gaps: rounded first, these three would average 0.50
    rows = {"a/m": {"runs": {"resized": {s: {"2": 50 + g} for s, g in (("0", 0.436), ("1", 0.399), ("2", 0.647))}}},
            "b/m": {"runs": {"resized": {s: {"2": 50.0} for s in "012"}}}}
    exact = mod.overall(rows, "b/m")["a/m"]
    assert exact["by_seed"] == {"0": 0.44, "1": 0.4, "2": 0.65} and exact["mean"] == 0.49
    with pytest.raises(SystemExit, match="seed\\(s\\) 0 given twice"):
        mod.main(["--json", str(out), "--kept", f"g={old}:long", "--kept", f"g={old}:long"])
    with pytest.raises(SystemExit, match="no row missing/"):
        mod.main(["--json", str(out), "--kept", f"g={old}:missing"])
    with pytest.raises(SystemExit, match="not 'test'"):
        mod.main(["--json", str(out), "--split", "test", "--kept", f"g={old}:long"])
    with pytest.raises(SystemExit, match="LABEL=FILE:PREFIX"):
        mod.main(["--json", str(out), "--kept", str(old)])
    with pytest.raises(SystemExit, match="nothing to collect"):
        mod.main(["--json", str(out)])


def test_summary_reads_device_run_folders_by_their_seed_suffix(tmp_path):
    """scripts/device_runs.sh brings back each run's eval/ in a folder CONFIG_s<SEED>, without config.json."""
    import json

    mod = load_script("scripts/early_g_summary.py", "early_g_summary")
    for seed, acc in ((0, 0.5), (12, 0.7)):
        d = tmp_path / f"cfg_bn_rec1000_s{seed}" / "eval" / "val"
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps({"fsrfer": {"factors": {"4": {"accuracy": acc}}}}))
    out = tmp_path / "gpu.json"
    assert mod.main(["--json", str(out)] + [f"r={p}" for p in sorted(tmp_path.glob("cfg_*"))]) == 0
    assert json.loads(out.read_text())["rows"]["r/fsrfer"]["runs"]["resized"] == {"0": {"4": 50.0}, "12": {"4": 70.0}}
    bare = tmp_path / "no_seed"
    (bare / "eval").mkdir(parents=True)
    with pytest.raises(SystemExit, match="CONFIG_s<SEED>"):
        mod.run_seed(bare)
    with pytest.raises(SystemExit, match="config.json \\(or a device run's eval/\\)"):
        mod.main(["--json", str(out), f"r={tmp_path / 'missing_s1'}"])


def test_device_data_packs_and_unpacks_losslessly(tmp_path):
    import numpy as np

    mod = load_script("scripts/device_data.py", "device_data")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 48, 48), dtype=np.uint8)
    images[0] = 255  # flat and extreme faces wrap around the residual's modulus
    images[1] = np.linspace(0, 255, 48 * 48).reshape(48, 48).astype(np.uint8)
    np.testing.assert_array_equal(mod.decode(mod.encode(images)), images)
    src = tmp_path / "fer2013.npz"
    split = np.array(["train", "val", "test", "train", "test", "val", "train"])
    np.savez(src, images=images, labels=np.arange(7, dtype=np.int8), split=split, orig_row=np.arange(7, dtype=np.int32) * 3)
    mod.main(["pack", str(src), str(tmp_path / "pack")])
    mod.main(["unpack", str(tmp_path / "pack"), str(tmp_path / "out" / "fer2013.npz")])
    got = np.load(tmp_path / "out" / "fer2013.npz")
    keep = split != "test"
    np.testing.assert_array_equal(got["images"][keep], images[keep])
    assert not got["images"][~keep].any()  # test rows do not travel
    for k in ("labels", "split", "orig_row"):
        np.testing.assert_array_equal(got[k], np.load(src)[k])
    # a damaged pack is refused, and nothing is written
    res = bytearray(mod.lzma.decompress((tmp_path / "pack" / "images.xz").read_bytes()))
    res[100] ^= 1
    (tmp_path / "pack" / "images.xz").write_bytes(mod.lzma.compress(bytes(res)))
    with pytest.raises(SystemExit, match="SHA-256"):
        mod.main(["unpack", str(tmp_path / "pack"), str(tmp_path / "bad" / "fer2013.npz")])
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())


def test_device_runs_refuses_bad_jobs_before_starting_any(tmp_path):
    import os
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DATA_PACK": str(tmp_path), "RESULTS_DIR": str(tmp_path / "out"), "WORK": str(tmp_path / "w")}
    for jobs, msg in (("configs/tiny.yaml:x", "expected CONFIG:SEED"), ("missing.yaml:1", "CONFIG a file"),
                      ("configs/tiny.yaml:1:stage1 configs/tiny.yaml:2", "HR_CKPT, which is not a file")):
        r = subprocess.run(["bash", "scripts/device_runs.sh"], cwd=repo, env={**env, "JOBS": jobs},
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and msg in r.stderr, (jobs, r.stderr)
        assert not (tmp_path / "w").exists()  # nothing started


FAKE_PYTHON = """#!{exe}
import os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(" ".join(args) + "\\n")
def opt(name):
    return args[args.index(name) + 1]
if args[:1] == ["-"]:
    print("checks ran")
elif args[:2] == ["-m", "pytest"]:
    print("2 passed")
elif args[:1] == ["scripts/device_data.py"]:
    Path(args[3]).parent.mkdir(parents=True, exist_ok=True)
    Path(args[3]).write_bytes(b"faces")
elif args[:2] == ["-m", "trainer.cli"]:
    out = Path(opt("--out"))
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "models" / "hr.pt").write_text("hr " + opt("--seed"))
else:  # scripts/early_g.py
    out = Path(opt("--out"))
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "models" / "fsrfer.pt").write_text("g " + opt("--seed"))
    (out / "eval" / "val").mkdir(parents=True, exist_ok=True)
    (out / "eval" / "val" / "results.json").write_text("{{}}")
    Path(opt("--json")).write_text("{{}}")
"""


def test_device_runs_brings_back_hr_networks_kept_models_and_results(tmp_path):
    """The whole of scripts/device_runs.sh on this machine, each step's python replaced by a fake that writes
    what the real one would (PYTHON): stage-1 jobs' HR networks, KEEP_MODELS' stage-2 models, the tarball."""
    import os
    import subprocess
    import sys
    import tarfile

    repo = Path(__file__).resolve().parents[1]
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON.format(exe=sys.executable))
    fake.chmod(0o755)
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "ferplus_labels.npz").write_bytes(b"votes")
    (tmp_path / "hr.pt").write_text("hr")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": str(fake), "FAKE_LOG": str(tmp_path / "calls.log"), "DATA_PACK": str(pack),
           "RESULTS_DIR": str(out), "WORK": str(tmp_path / "w"), "HR_CKPT": str(tmp_path / "hr.pt"), "RUN_MIN": "1",
           "JOBS": "configs/tiny.yaml:3:stage1 configs/tiny.yaml:0 configs/tiny.yaml:1:stage2,baselines,eval",
           "KEEP_MODELS": "tiny_s1 tiny_s7"}
    r = subprocess.run(["bash", "scripts/device_runs.sh"], cwd=repo, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert (out / "tiny_s3.hr.pt").read_text() == "hr 3" and (out / "tiny_s1.fsrfer.pt").read_text() == "g 1"
    assert not (out / "tiny_s7.fsrfer.pt").exists() and "KEEP_MODELS: no " in r.stderr  # named, never run
    assert not (out / "tiny_s0.fsrfer.pt").exists()  # not named in KEEP_MODELS
    with tarfile.open(out / "results.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"res/tiny_s0.json", "res/tiny_s1.json", "runs/tiny_s1/eval/val/results.json",
            "logs/checks.log", "logs/tiny_s3.log"} <= names
    calls = (tmp_path / "calls.log").read_text().splitlines()
    stage1 = [c for c in calls if c.startswith("-m trainer.cli")]
    assert len(stage1) == 1 and "--resume" in stage1[0] and "--steps stage1" in stage1[0]  # a warm rerun resumes
    assert any("--steps stage2,baselines,eval" in c and "--seed 1" in c for c in calls)
    assert any("--steps stage2,eval" in c and "--seed 0" in c for c in calls)  # the default steps


def test_device_report_reads_a_calls_logs(tmp_path):
    import json

    mod = load_script("scripts/device_report.py", "device_report")
    logs = tmp_path / "call" / "logs"
    logs.mkdir(parents=True)
    (logs / "checks.log").write_text(
        "GPU 0: NVIDIA H200 (UUID: GPU-x)\ntorch 2.11.0+cu130 cuda 13.0 gpu NVIDIA H200\ncuda-bindings 13.3.1\n"
        "memory layer cuda-python identity DeviceIdentity(compute_capability='9.0', name='NVIDIA H200', "
        "multiprocessors=132, memory_gib=140) key nvidia-h200-132sm-140g\n")
    (logs / "pytest_gpu.log").write_text(
        "GPU vs CPU first-epoch loss: 1.5 vs 1.25, relative difference 2.00e-01\n"
        "PASSED tests/test_tensorrt_gpu.py::test_cuda_memory_roundtrip[cuda-python]\n"
        "SKIPPED [4] tests/test_tensorrt_gpu.py:33: TensorRT is not installed\n"
        "================= 2 passed, 7 skipped, 6 deselected in 16.58s ==================\n")
    out = tmp_path / "r.json"
    assert mod.main([str(tmp_path / "call"), "--json", str(out)]) == 0
    call = json.loads(out.read_text())["calls"][0]
    assert call["cuda_layer"]["engine_key"] == "nvidia-h200-132sm-140g" and call["cuda_layer"]["multiprocessors"] == 132
    assert call["gpu_tests"]["passed"] == 2 and call["gpu_tests"]["skipped"] == 7
    assert call["gpu_tests"]["skips"] == [{"count": 4, "where": "tests/test_tensorrt_gpu.py:33",
                                           "reason": "TensorRT is not installed"}]
    assert call["gpu_tests"]["passed_tests"] == ["tests/test_tensorrt_gpu.py::test_cuda_memory_roundtrip[cuda-python]"]
    assert call["gpu_vs_cpu_first_epoch_loss"] == {"gpu": 1.5, "cpu": 1.25, "relative_difference": 0.2}
    (logs / "checks.log").write_text("Traceback ...\n")
    with pytest.raises(SystemExit, match="no GPU identity line"):
        mod.main([str(tmp_path / "call"), "--json", str(out)])


GATED = {**DEEP, "generator": {**DEEP["generator"], "start": "stem", "adapter_width": 0.25}}


def test_a_gated_g_is_exactly_the_hr_network_at_factor_1_and_only_there():
    torch.manual_seed(0)
    m = InferenceModel(GATED).eval()
    m.generator.init_from(m.fer.trunk)
    with torch.no_grad():  # as if trained: adapters, FiLM and the dense block all move
        for name, p in m.generator.named_parameters():
            if not name.startswith("stages."):
                p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        hr = m.fer(x)
        assert torch.equal(m(x, torch.ones(4)), hr)
        for f in (2, 8):
            assert not torch.allclose(m(x, torch.full((4,), f)), hr, atol=1e-3)
    g = m.generator
    assert not any(p.requires_grad for p in g.stages.parameters())
    assert all(p.requires_grad for p in g.adapters.parameters())
    # The copies are stored once: no adapter holds its block.
    assert not any(k.startswith("adapters.") and ".conv1." in k for k in g.state_dict())
    with pytest.raises(ConfigError, match="scale_aware"):
        InferenceModel({**GATED, "generator": {**GATED["generator"], "scale_aware": False}})
    with pytest.raises(ConfigError, match="adapter_width"):
        InferenceModel({**GATED, "generator": {**GATED["generator"], "adapter_width": 2.0}})
    # The step gate: also exactly HR at x1; the same change at x2 and x8 but for FiLM.
    from trainer.models import hr_gate

    assert hr_gate(torch.tensor([1.0, 2.0, 8.0]), "step").flatten().tolist() == [0.0, 1.0, 1.0]
    assert hr_gate(torch.tensor([1.0, 2.0, 8.0])).flatten().tolist() == [0.0, 1.0, 3.0]
    step = InferenceModel({**GATED, "generator": {**GATED["generator"], "gate": "step"}}).eval()
    step.load_state_dict(m.state_dict())
    with torch.no_grad():
        assert torch.equal(step(x, torch.ones(4)), hr)
        assert not torch.allclose(step(x, torch.full((4,), 8)), m(x, torch.full((4,), 8)), atol=1e-3)
    with pytest.raises(ConfigError, match="gate"):
        InferenceModel({**GATED, "generator": {**GATED["generator"], "gate": "linear"}})


def test_a_gated_g_can_widen_only_its_top_stage():
    spec = {"method": "fsrfer", "backbone": "resnet18_half", "feature_level": "layer3",
            "generator": {"start": "stem", "scale_aware": True, "adapter_width": 0.25, "adapter_top_width": 1.0}}
    g = InferenceModel(spec).generator
    # layer1 and layer2 (32 and 64 channels) at a quarter; layer3's two blocks (128) at full width.
    assert [(a.a1.down.out_channels, a.a2.down.out_channels) for a in g.adapters] == \
        [(8, 8), (8, 8), (16, 16), (16, 16), (128, 128), (128, 128)]
    g2 = InferenceModel({**spec, "feature_level": "layer2", "generator": {**spec["generator"], "start": "layer1"}}).generator
    assert [a.a1.down.out_channels for a in g2.adapters] == [64, 64]  # G covers layer2 only: all of it is top
    plain = InferenceModel({**spec, "generator": {**spec["generator"], "adapter_top_width": 0.0}}).generator
    assert [a.a1.down.out_channels for a in plain.adapters] == [8, 8, 16, 16, 32, 32]
    with pytest.raises(ConfigError, match="adapter_top_width needs adapter_width"):
        InferenceModel({**spec, "generator": {**spec["generator"], "adapter_width": 0.0}})
    with pytest.raises(ConfigError, match=r"adapter_top_width: received 1.5; expected a fraction in \[0, 1\]"):
        InferenceModel({**spec, "generator": {**spec["generator"], "adapter_top_width": 1.5}})


def test_a_gated_g_trains_only_its_adapters_and_exports(tmp_path):
    pytest.importorskip("onnx")
    import onnxruntime as ort

    from fsrfer_edge.export.onnx_export import export_onnx, load_onnx
    from fsrfer_edge.export.quantize import float_tail_nodes, generator_is_early
    from trainer import checkpoint

    with pytest.raises(ConfigError, match="adapter_width"):
        _cfg(tmp_path, stage2={"feature_level": "layer1", "generator_start": "stem", "adapter_width": 0.25})
    with pytest.raises(ConfigError, match="adapter_gate"):
        _cfg(tmp_path, stage2={"feature_level": "layer1", "generator_start": "stem", "scale_aware": True,
                               "adapter_width": 0.25, "adapter_gate": "linear"})
    with pytest.raises(ConfigError, match=r"adapter_width = 1.5; expected a number in \[0, 1\]"):
        _cfg(tmp_path, stage2={"feature_level": "layer1", "generator_start": "stem", "scale_aware": True,
                               "adapter_width": 1.5})
    with pytest.raises(ConfigError, match="adapter_top_width needs stage2.adapter_width"):
        _cfg(tmp_path, stage2={"feature_level": "layer1", "generator_start": "stem", "scale_aware": True,
                               "adapter_top_width": 1.0})
    cfg = _cfg(tmp_path, data={"synthetic": 160}, stage1={"epochs": 2},
               stage2={"feature_level": "layer1", "generator_start": "stem", "scale_aware": True,
                       "adapter_width": 0.25, "adapter_top_width": 0.5, "pretrain_epochs": 1, "epochs": 1, "batch_size": 16,
                       "losses": {"distill": 1.0}})
    d = load_data(cfg, None)
    hr = train_stage1(cfg, d, tmp_path / "run", resume=False)
    path = train_stage2(cfg, d, hr, tmp_path / "run", "fsrfer", cfg.stage2.losses, resume=False)
    model, _, _ = checkpoint.load_model(path)
    hr_model, _, _ = checkpoint.load_model(hr)
    g = model.generator
    assert (g.adapter_width, g.adapter_top_width) == (0.25, 0.5)
    assert g.adapters[0].a1.down.out_channels == 4  # the tiny trunk's layer1 (8 channels) is G's top stage
    assert torch.equal(g.stages[0].conv1.weight, hr_model.fer.trunk.layers[0].conv1.weight)  # frozen copy
    assert g.adapters[0].a1.up.weight.abs().sum() > 0  # zero-initialised, then trained
    x = torch.from_numpy(protocol_inputs(d.val.images[:8], 1, PRE))
    with torch.no_grad():
        assert torch.equal(model(x, torch.ones(8)), hr_model.fer(x))
    export_onnx(path, tmp_path / "gated.onnx")  # stage 2 fitted the factor estimator
    sess = ort.InferenceSession(str(tmp_path / "gated.onnx"), providers=["CPUExecutionProvider"])
    x4 = torch.from_numpy(protocol_inputs(d.val.images[:8], 4, PRE))
    with torch.no_grad():
        np.testing.assert_allclose(sess.run(None, {"faces": x4.numpy()})[0], model(x4).numpy(), atol=1e-4)
    graph = load_onnx(tmp_path / "gated.onnx")
    assert generator_is_early(graph)  # an INT8 file quantizes it by default
    assert not any(n.startswith("/generator/adapters.") for n in float_tail_nodes(graph, generator=False))


def test_routing_gives_hr_faces_the_hr_model_and_exports_to_one_graph(tmp_path):
    """route_hr_below: faces below the factor take the frozen HR stages, the others G, each face one path;
    through scripts/route_hr.py on a checkpoint, in torch and in the exported graph (also when one path
    gets no face), in FP32 and INT8, and within TensorRT's tables."""
    pytest.importorskip("onnx")
    import onnxruntime as ort

    from fsrfer_edge.export.onnx_export import export_onnx
    from fsrfer_edge.export.quantize import quantize_int8
    from fsrfer_edge.export.trt_check import check_file
    from trainer import checkpoint

    m = _deep_model("stem")
    with torch.no_grad():  # as if trained: G's copies, FiLM and the dense block all move
        for p in m.generator.parameters():
            p.add_(0.05 * torch.randn_like(p))
    faces, _ = make_faces(360, seed=5)
    fit_factor_estimator(m, faces[:300], faces[300:], DegradeConfig(factors=(1, 2, 4, 8)), seed=0, n=300)
    src, dst = tmp_path / "g.pt", tmp_path / "routed.pt"
    checkpoint.save(src, checkpoint.model_payload(m, m.spec, PRE, {"name": "g"}))
    script = load_script("scripts/route_hr.py", "route_hr")
    assert script.main([str(src), "--out", str(dst)]) == 0
    routed, _, ckpt = checkpoint.load_model(dst)
    assert ckpt["spec"]["route_hr_below"] == pytest.approx(2 ** 0.5)
    x = torch.randn(6, 1, 48, 48)
    f = torch.tensor([1.0, 2.0, 1.0, 4.0, 8.0, 1.3])
    with torch.no_grad():
        got, hr, g = routed(x, f), m.fer(x), m(x, f)
    is_hr = f < 2 ** 0.5
    assert torch.allclose(got[is_hr], hr[is_hr], atol=1e-5) and torch.allclose(got[~is_hr], g[~is_hr], atol=1e-5)
    assert not torch.allclose(g[is_hr], hr[is_hr], atol=1e-3)  # without the route, G changes HR faces
    # The graph: one input, the factor estimated; mixed batches and batches with one path empty.
    export_onnx(dst, tmp_path / "routed.onnx")
    report = check_file(tmp_path / "routed.onnx")
    assert report.ok, report.errors
    sess = ort.InferenceSession(str(tmp_path / "routed.onnx"), providers=["CPUExecutionProvider"])
    small = torch.from_numpy(protocol_inputs(faces[300:304], 4, PRE))
    full = torch.from_numpy(protocol_inputs(faces[304:308], 1, PRE))
    for batch in (torch.cat([small[:2], full[:2], small[2:], full[2:]]), small, full):
        with torch.no_grad():
            want = routed(batch)
        np.testing.assert_allclose(sess.run(None, {"faces": batch.numpy()})[0], want.numpy(), atol=1e-4)
    with torch.no_grad():  # the estimator sends 48 px faces to the HR stages and 12 px ones to G
        assert bool((routed.factor_estimator(full) < 2 ** 0.5).all()) and bool((routed.factor_estimator(small) > 2 ** 0.5).all())
        np.testing.assert_allclose(routed(full).numpy(), m.fer(full).numpy(), atol=1e-5)
    # INT8 (TensorRT's s8s8): both paths' convolutions quantized, and it still runs with one path empty.
    unrouted = tmp_path / "g.onnx"
    export_onnx(src, unrouted)
    # Calibration faces at x1 and x4, as fsrfer-export mixes factors: each path sees some.
    calib = np.concatenate([protocol_inputs(faces[:32], 1, PRE), protocol_inputs(faces[32:64], 4, PRE)])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a path without calibration data divides by zero
        for name in ("routed", "g"):
            quantize_int8(tmp_path / f"{name}.onnx", tmp_path / f"{name}.int8.onnx", calib, scheme="s8s8")
    # Calibration faces that all take one path would leave the other without ranges: refused, nothing written.
    from fsrfer_edge.errors import ModelError
    from fsrfer_edge.export.quantize import route_counts
    from fsrfer_edge.export.onnx_export import load_onnx

    # The factor estimator reads the float image, not a dequantized 8-bit copy of it (rounding a face resized
    # up from a few pixels moves the estimate: results/ferplus/input_rounding_val.json).
    def input_quantized(path: Path) -> bool:
        q = load_onnx(path)
        assert any(n.name.startswith("/factor_estimator/") and n.input[:1] in (["faces"], ["faces_DequantizeLinear_Output"])
                   for n in q.graph.node)
        return any(n.op_type == "QuantizeLinear" and n.input[0] == "faces" for n in q.graph.node)

    quantize_int8(unrouted, tmp_path / "g.u8.onnx", calib, scheme="u8s8")
    # quantize_film: FiLM's multiply and add on the maps read quantized maps and parameters (ONNX Runtime
    # fuses them into QLinearMul / QLinearAdd). Only the u8s8 file: TensorRT's s8s8 file quantizes the inputs
    # of weighted ops and residual adds only.
    from fsrfer_edge.export.quantize import film_map_nodes

    path = tmp_path / "g.film.u8s8.onnx"
    quantize_int8(unrouted, path, calib, scheme="u8s8", quantize_film=True)
    q = load_onnx(path)
    dq_out = {o for n in q.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    film_ops = [n for n in q.graph.node if n.name in set(film_map_nodes(load_onnx(unrouted)))]
    assert film_ops and all(set(n.input) <= dq_out for n in film_ops), [list(n.input) for n in film_ops]
    gemms = [n for n in q.graph.node if n.op_type == "Gemm" and n.name.startswith("/generator/films.")]
    assert gemms and not any(i in dq_out for n in gemms for i in n.input)
    assert not input_quantized(path)
    with pytest.raises(ConfigError, match="quantize_film applies to the u8s8 file"):
        quantize_int8(unrouted, tmp_path / "g.film.s8s8.onnx", calib, scheme="s8s8", quantize_film=True)
    assert not (tmp_path / "g.film.s8s8.onnx").exists()
    plain = load_onnx(tmp_path / "g.u8.onnx")
    dq_plain = {o for n in plain.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    plain_film = [n for n in plain.graph.node if n.name in set(film_map_nodes(plain))]
    assert plain_film and not any(set(n.input) <= dq_plain for n in plain_film)  # by default FiLM runs in float
    quantize_int8(unrouted, tmp_path / "g.u8_old.onnx", calib, scheme="u8s8", float_image_conv=False)
    assert input_quantized(tmp_path / "g.u8_old.onnx")  # before: the estimator read a rounded copy
    for path in (tmp_path / "routed.int8.onnx", tmp_path / "g.int8.onnx", tmp_path / "g.u8.onnx"):
        assert not input_quantized(path), path.name
    # ONNX Runtime's optimized u8s8 graph transposes the first stage's maps around its residual adds: the
    # float stem's NCHW map is read by both paths' Gathers (docs/DESIGN.md; scripts/int8_layout.py measured
    # gathering the image instead, and it was no faster).
    quantize_int8(tmp_path / "routed.onnx", tmp_path / "routed.u8.onnx", calib, scheme="u8s8")
    layout = load_script("scripts/int8_layout.py", "int8_layout")
    moved = [t for t in layout.optimized_transposes(tmp_path / "routed.u8.onnx", 1) if t["feature_map"]]
    assert any("QLinearAdd" in t["to"] for t in moved), moved
    assert not any(t["from"] == "Unsqueeze" for t in moved)  # FiLM's per-face (N, C, 1, 1) vectors are no maps
    assert layout.gathered_stem_convs(load_onnx(tmp_path / "routed.onnx")) == []
    assert route_counts(load_onnx(tmp_path / "routed.onnx"), calib, "faces") == [32, 32]
    assert route_counts(load_onnx(unrouted), calib, "faces") == []
    with pytest.raises(ModelError, match=r"all took one path of its routed graph \(faces per path: \[0, 32\]\)"):
        quantize_int8(tmp_path / "routed.onnx", tmp_path / "one_path.int8.onnx", calib[32:], scheme="s8s8")
    assert not (tmp_path / "one_path.int8.onnx").exists()
    r_int8, g_int8 = check_file(tmp_path / "routed.int8.onnx"), check_file(tmp_path / "g.int8.onnx")
    assert r_int8.ok, r_int8.errors
    hr_convs = sum(1 for blk in m.generator.stages for mod in blk.modules() if isinstance(mod, torch.nn.Conv2d))
    assert len(r_int8.int8_layers) == len(g_int8.int8_layers) + hr_convs
    q = ort.InferenceSession(str(tmp_path / "routed.int8.onnx"), providers=["CPUExecutionProvider"])
    for batch in (full, small):
        out = q.run(None, {"faces": batch.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(out, routed(batch).numpy(), atol=0.25 * float(routed(batch).abs().max()))
    # Only an early, scale-aware G can route; the factor must lie between x1 and x2.
    with pytest.raises(ConfigError, match="route_hr_below needs a scale-aware G"):
        InferenceModel({**DEEP, "generator": {**DEEP["generator"], "scale_aware": False}, "route_hr_below": 1.5})
    with pytest.raises(ConfigError, match=r"route_hr_below: received 3.0; expected a factor in \(1, 2\]"):
        InferenceModel({**DEEP, "route_hr_below": 3.0})
    assert script.main([str(dst), "--out", str(tmp_path / "plain.pt"), "--below", "0"]) == 0
    assert "route_hr_below" not in checkpoint.load(tmp_path / "plain.pt", kind="model")["spec"]


def test_a_routed_g_trains_only_on_the_faces_it_serves(tmp_path, monkeypatch):
    """stage2.route_hr: G's training faces are never at factor 1 (those take the HR stages), the factor
    estimator is still fitted on every factor, and the checkpoint routes."""
    with pytest.raises(ConfigError, match="route_hr needs stage2.scale_aware"):
        _cfg(tmp_path, stage2={"feature_level": "layer1", "generator_start": "stem", "route_hr": True})
    with pytest.raises(ConfigError, match=r"route_hr trains G on degrade.factors other than 1; got \[1\]"):
        _cfg(tmp_path, degrade={"factors": [1]},
             stage2={"feature_level": "layer1", "generator_start": "stem", "scale_aware": True, "route_hr": True})
    from trainer import checkpoint, train
    from trainer import degrade as degrade_mod

    cfg = _cfg(tmp_path, data={"synthetic": 160}, stage1={"epochs": 1}, degrade={"factors": [1, 2, 4]},
               stage2={"feature_level": "layer1", "generator_start": "stem", "scale_aware": True, "route_hr": True,
                       "pretrain_epochs": 1, "epochs": 1, "batch_size": 16, "losses": {"distill": 1.0}})
    d = load_data(cfg, None)
    hr = train_stage1(cfg, d, tmp_path / "run", resume=False)  # stage 1 draws no LR faces
    drawn: list[tuple[int, ...]] = []
    real = degrade_mod.random_lr
    monkeypatch.setattr(degrade_mod, "random_lr", lambda faces, dcfg, rng: (drawn.append(tuple(dcfg.factors)), real(faces, dcfg, rng))[1])
    fitted: list[int] = []  # how many LR draws G's training had made when the estimator was fitted
    real_fit = train.fit_factor_estimator
    monkeypatch.setattr(train, "fit_factor_estimator",
                        lambda model, a, b, dcfg, seed, *rest: (fitted.append(len(drawn)), real_fit(model, a, b, dcfg, seed, *rest))[1])
    path = train_stage2(cfg, d, hr, tmp_path / "run", "fsrfer", cfg.stage2.losses, resume=False)
    assert len(fitted) == 1 and fitted[0] > 0
    g_draws, estimator_draws = drawn[:fitted[0]], drawn[fitted[0]:]
    assert set(g_draws) == {(2, 4)} and set(estimator_draws) == {(1, 2, 4)}
    model, _, ckpt = checkpoint.load_model(path)
    assert ckpt["spec"]["route_hr_below"] == pytest.approx(2 ** 0.5)
    x = torch.from_numpy(protocol_inputs(d.val.images[:8], 1, PRE))
    hr_model, _, _ = checkpoint.load_model(hr)
    with torch.no_grad():
        assert torch.allclose(model(x, torch.ones(8)), hr_model.fer(x), atol=1e-5)


def test_estimator_contrast_compares_the_estimated_and_the_true_factor_on_dimmed_faces():
    script = load_script("scripts/estimator_contrast.py", "estimator_contrast")
    faces, labels = make_faces(120, seed=3)
    dim = script.scale_contrast(faces, 0.25)
    assert dim.dtype == np.uint8 and dim.std(axis=(1, 2)).mean() < 0.3 * faces.astype(np.float32).std(axis=(1, 2)).mean()
    np.testing.assert_allclose(dim.mean(axis=(1, 2)), faces.mean(axis=(1, 2)), atol=1.0)  # about each face's mean
    m = _deep_model("stem")
    fit_factor_estimator(m, faces[:80], faces[80:], DegradeConfig(factors=(1, 2, 4, 8)), seed=0, n=80)
    m.eval()
    rows = script.contrast_rows(m, PRE, faces[80:], labels[80:], (1.0, 0.25), (1, 4), "small", batch=16)
    assert [r["contrast"] for r in rows] == [1.0, 0.25]
    with torch.no_grad():  # the estimated row is the model as deployed: its own estimate
        x = torch.from_numpy(protocol_inputs(faces[80:], 4, PRE, "small"))
        want = 100 * float(np.mean(m(x).argmax(1).numpy() == labels[80:]))
        median = float(np.median(m.factor_estimator(x).numpy()))
    got = rows[0]["factors"]["4"]
    assert got["accuracy_estimated"] == pytest.approx(want, abs=0.01)
    assert got["median_estimate"] == pytest.approx(median, abs=1e-3) and got["hr_path_share"] is None  # not routed
    assert got["true_minus_estimated"] == pytest.approx(got["accuracy_true_factor"] - got["accuracy_estimated"], abs=0.02)
    assert script.main(["--contrasts", "0,1", "--json", "/tmp/never.json"]) == 2


# -- attention transfer at G's stage boundaries (stage2.losses.attention) ----------------------

def test_attention_maps_are_scale_free_and_their_transfer_loss_is_zero_only_when_they_agree():
    torch.manual_seed(0)
    a = torch.randn(4, 8, 6, 6)
    at = losses.attention_map(a)
    assert at.shape == (4, 36) and torch.allclose(at.norm(dim=1), torch.ones(4))
    assert torch.allclose(losses.attention_map(3.0 * a), at, atol=1e-6)  # only where, not how strongly
    same = losses.attention_transfer([a, a[:, :4]], [3.0 * a, a[:, :4]])
    assert same.shape == (4,) and float(same.abs().max()) < 1e-10
    moved = a.clone()
    moved[:, :, :3] = 0  # attention on the lower half only
    assert (losses.attention_transfer([moved], [a]) > 1e-3).all()
    with pytest.raises(ValueError, match="one target per map"):
        losses.attention_transfer([a], [a, a])


def test_untrained_deep_g_keeps_the_hr_trunks_maps_at_its_stage_boundaries():
    m = _deep_model("stem", "layer3")
    g, trunk = m.generator, m.fer.trunk
    assert g.tap_levels == ["layer1", "layer2"]
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        maps = trunk.forward_maps(x, ["layer1", "layer2", "layer3"])
        for level, fmap in zip(["layer1", "layer2", "layer3"], maps):
            assert torch.allclose(fmap, trunk.forward_to(x, level), atol=1e-6)
        g(trunk.forward_to(x, "stem"), torch.full((3,), 4))
        assert g.taps == []  # kept only when asked: inference and export keep nothing
        g.keep_taps = True
        out = g(trunk.forward_to(x, "stem"), torch.full((3,), 4))
    assert [t.shape for t in g.taps] == [t.shape for t in maps[:2]]
    for tap, fmap in zip(g.taps, maps):
        assert torch.allclose(tap, fmap, atol=1e-5)
    assert torch.allclose(out, maps[2], atol=1e-5)


def test_attention_term_alone_sends_gradient_to_gs_lower_stages_and_needs_the_hr_maps():
    from trainer.models import LevelHead, SpatialFeatureCritic
    from trainer.train import Stage2Step

    m = _deep_model("stem", "layer3")
    g, trunk = m.generator.train(), m.fer.trunk.requires_grad_(False)
    g.keep_taps = True
    x_hr = torch.randn(6, 1, 48, 48)
    x_lr = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x_hr, 4), size=48, mode="bilinear")
    only_at = config.LossConfig(adversarial=0.0, reconstruction=0.0, head=0.0, reweight=False, attention=1000.0)
    d = SpatialFeatureCritic(128, hidden=8, size=6)
    step = Stage2Step(LevelHead(m.fer, "layer3"), g, d, only_at, torch.optim.Adam(g.parameters(), 1e-3),
                      torch.optim.Adam(d.parameters(), 1e-3))
    step.factor = torch.full((6,), 4)
    f_lr = trunk.forward_to(x_lr, "stem")
    *hr_maps, f_hr = trunk.forward_maps(x_hr, ["layer1", "layer2", "layer3"])
    y = torch.randint(0, 7, (6,))
    with pytest.raises(ConfigError, match="attention needs"):
        step.generator_loss(f_lr, f_hr, y)
    step.hr_maps = hr_maps
    loss, parts = step.generator_loss(f_lr, f_hr, y)
    assert set(parts) == {"at", "w_mean"} and parts["at"] > 0
    loss.backward()
    assert float(g.stages[0].conv1.weight.grad.abs().sum()) > 0  # reaches the first copied block
    assert all(p.grad is None for p in g.stages[-1].parameters())  # nothing above the last boundary


def test_attention_option_is_checked_and_trains_end_to_end(tmp_path):
    with pytest.raises(ConfigError, match="attention needs stage2.generator_start"):
        _cfg(tmp_path, stage2={"feature_level": "layer2", "losses": {"attention": 1000.0}})
    with pytest.raises(ConfigError, match="needs a stage boundary inside G"):
        _cfg(tmp_path, stage2={"feature_level": "layer2", "generator_start": "layer1", "losses": {"attention": 1000.0}})
    path = _train_tiny_early_g(tmp_path, {"distill": 1.0, "attention": 1000.0})
    from trainer import checkpoint

    model, _, meta = checkpoint.load_model(path)
    assert model.generator.tap_levels == ["layer1"] and not model.generator.keep_taps
    assert any(row.get("at", 0) > 0 for row in meta["meta"]["history"])  # the term was trained with


# -- cross-resolution contrast (stage2.losses.contrastive) ---------------------------------------

def test_cross_resolution_nce_is_small_for_own_matches_and_large_for_swapped_ones():
    e = torch.eye(4) * 5.0  # four well-separated embeddings
    own = losses.cross_resolution_nce(e, 2.0 * e, temperature=0.1)
    assert own.shape == (4,) and float(own.max()) < 1e-3  # scale-free: only the direction counts
    swapped = losses.cross_resolution_nce(e[[1, 0, 2, 3]], e, temperature=0.1)
    assert float(swapped[:2].min()) > 5.0 and float(swapped[2:].max()) < 1e-3
    hr = torch.randn(4, 3, requires_grad=True)
    lr = torch.randn(4, 3, requires_grad=True)
    losses.cross_resolution_nce(lr, hr, 0.5).sum().backward()
    assert hr.grad is None and float(lr.grad.abs().sum()) > 0  # the HR embedding is a fixed target
    with pytest.raises(ValueError, match="two \\(N, D\\) embeddings of one shape"):
        losses.cross_resolution_nce(e, e[:3], 0.1)


def test_contrastive_term_alone_sends_gradient_to_g_and_is_reweighted():
    from trainer.models import LevelHead, SpatialFeatureCritic
    from trainer.train import Stage2Step

    m = _deep_model("stem", "layer3")
    g, trunk = m.generator.train(), m.fer.trunk.requires_grad_(False)
    x_hr = torch.randn(6, 1, 48, 48)
    x_lr = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x_hr, 4), size=48, mode="bilinear")
    only = config.LossConfig(adversarial=0.0, reconstruction=0.0, head=0.0, reweight=False, contrastive=1.0)
    d = SpatialFeatureCritic(128, hidden=8, size=6)
    head = LevelHead(m.fer, "layer3")
    step = Stage2Step(head, g, d, only, torch.optim.Adam(g.parameters(), 1e-3), torch.optim.Adam(d.parameters(), 1e-3))
    step.factor = torch.full((6,), 4)
    f_lr, f_hr = trunk.forward_to(x_lr, "stem"), trunk.forward_to(x_hr, "layer3")
    y = torch.randint(0, 7, (6,))
    loss, parts = step.generator_loss(f_lr, f_hr, y)
    assert set(parts) == {"nce", "w_mean"} and parts["nce"] > 0
    loss.backward()
    assert float(g.stages[0].conv1.weight.grad.abs().sum()) > 0  # reaches G's first copied block
    with torch.no_grad():
        want = losses.cross_resolution_nce(head.embed(g(f_lr, step.factor)), head.embed(f_hr), 0.1).mean()
    assert parts["nce"] == pytest.approx(float(want), rel=1e-4)
    step.cfg = config.LossConfig(adversarial=0.0, reconstruction=0.0, head=0.0, contrastive=1.0)
    _, weighted = step.generator_loss(f_lr, f_hr, y)
    assert weighted["nce"] != pytest.approx(parts["nce"], rel=1e-3)  # classification-aware weights apply


def test_contrastive_option_is_checked_and_trains_end_to_end(tmp_path):
    with pytest.raises(ConfigError, match="contrastive_temperature"):
        _cfg(tmp_path, stage2={"losses": {"contrastive": 1.0, "contrastive_temperature": 0.0}})
    with pytest.raises(ConfigError, match="contrastive"):
        _cfg(tmp_path, stage2={"losses": {"contrastive": -1.0}})
    path = _train_tiny_early_g(tmp_path, {"distill": 1.0, "contrastive": 1.0})
    from trainer import checkpoint

    _, _, meta = checkpoint.load_model(path)
    assert any(row.get("nce", 0) > 0 for row in meta["meta"]["history"])  # the term was trained with
    assert meta["meta"]["losses"]["contrastive"] == 1.0


# -- distillation weighted by the face's factor (stage2.losses.distill_from_factor) ----------------

def test_distill_by_factor_weights_each_faces_term_by_its_factor():
    from trainer.models import LevelHead, SpatialFeatureCritic
    from trainer.train import Stage2Step

    m = _deep_model("stem", "layer3")
    g, trunk = m.generator.train(), m.fer.trunk.requires_grad_(False)
    torch.manual_seed(0)
    x_hr = torch.randn(6, 1, 48, 48)
    x_lr = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x_hr, 4), size=48, mode="bilinear")
    plain = config.LossConfig(adversarial=0.0, reconstruction=0.0, head=0.0, reweight=False, distill=1.0)
    head = LevelHead(m.fer, "layer3")
    d = SpatialFeatureCritic(128, hidden=8, size=6)
    step = Stage2Step(head, g.eval(), d, plain, torch.optim.Adam(g.parameters(), 1e-3), torch.optim.Adam(d.parameters(), 1e-3))
    step.factor = torch.tensor([2, 4, 6, 8, 8, 1])
    f_lr, f_hr = trunk.forward_to(x_lr, "stem"), trunk.forward_to(x_hr, "layer3")
    y = torch.randint(0, 7, (6,))
    with torch.no_grad():
        kd = losses.distillation(head(g(f_lr, step.factor)), head(f_hr), 2.0)
        _, base = step.generator_loss(f_lr, f_hr, y)
        step.cfg = dataclasses.replace(plain, distill_from_factor=6, distill_high=10.0)
        _, high = step.generator_loss(f_lr, f_hr, y)
        step.cfg = dataclasses.replace(plain, distill_from_factor=16, distill_high=10.0)
        _, none_high = step.generator_loss(f_lr, f_hr, y)
    assert base["kd"] == pytest.approx(float(kd.mean()), rel=1e-4)
    want = float((kd * torch.tensor([1.0, 1.0, 10.0, 10.0, 10.0, 1.0])).mean())
    assert high["kd"] == pytest.approx(want, rel=1e-4) and high["kd"] > base["kd"]
    assert none_high["kd"] == pytest.approx(base["kd"], rel=1e-5)  # no face down-sampled that far


def test_distill_by_factor_option_is_checked_and_trains_end_to_end(tmp_path):
    early = {"feature_level": "layer2", "generator_start": "stem", "scale_aware": True}
    for bad, stage2 in (({"distill": 1.0, "distill_from_factor": 8}, early),  # no weight for those faces
                        ({"distill": 1.0, "distill_high": 10.0}, early),  # no factor
                        ({"distill": 1.0, "distill_from_factor": 1, "distill_high": 10.0}, early),  # every face
                        ({"distill_from_factor": 8, "distill_high": 10.0}, early),  # no distillation
                        ({"distill": 1.0, "distill_from_factor": 8, "distill_high": 10.0},
                         {**early, "scale_aware": False})):
        with pytest.raises(ConfigError, match="distill_from_factor"):
            _cfg(tmp_path, stage2={**stage2, "losses": bad})
    path = _train_tiny_early_g(tmp_path, {"distill": 1.0, "distill_from_factor": 4, "distill_high": 10.0})
    from trainer import checkpoint

    _, _, meta = checkpoint.load_model(path)
    assert meta["meta"]["losses"]["distill_from_factor"] == 4 and meta["meta"]["losses"]["distill_high"] == 10.0
    assert any(row.get("kd", 0) > 0 for row in meta["meta"]["history"])


# -- G's warm-up at the GAN phase's start (stage2.gan_warmup) -----------------------------------

@pytest.mark.parametrize("warmup", [0.0, 1.0])
def test_gan_warmup_starts_gs_rate_low_and_leaves_the_critics(tmp_path, monkeypatch, warmup):
    import trainer.train as train_mod

    first: dict[int, float] = {}  # each Adam's first rate: G's and the critic's (no pre-training; stage 1 is SGD)
    real = train_mod.set_lr

    def spy(opt, lr):
        if isinstance(opt, torch.optim.Adam):
            first.setdefault(id(opt), lr)
        real(opt, lr)

    monkeypatch.setattr(train_mod, "set_lr", spy)
    _train_tiny_early_g(tmp_path, {"distill": 1.0}, gan_warmup=warmup, lr_g=1e-3, lr_d=1e-3)
    assert len(first) == 2 and max(first.values()) == pytest.approx(1e-3)  # the critic starts at its full rate
    assert min(first.values()) == pytest.approx(1e-3) if not warmup else min(first.values()) < 0.6e-3


def test_gan_warmup_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="gan_warmup"):
        _cfg(tmp_path, stage2={"gan_warmup": 0.5, "g_optimizer": "sgd"})
    with pytest.raises(ConfigError, match="at most stage2.epochs"):
        _cfg(tmp_path, stage2={"gan_warmup": 3.0, "epochs": 2})
    with pytest.raises(ConfigError, match="gan_warmup"):
        _cfg(tmp_path, stage2={"gan_warmup": -1.0})
    assert _cfg(tmp_path, stage2={"gan_warmup": 0.5, "epochs": 2}).stage2.gan_warmup == 0.5


# -- the test-time flip's answer as the distillation target (stage2.losses.distill_teacher) -----

def test_flip_teacher_is_the_mean_of_the_two_tempered_softmaxes():
    torch.manual_seed(0)
    a, b = torch.randn(5, 7), torch.randn(5, 7)
    for t in (1.0, 2.0):
        got = torch.softmax(losses.flip_teacher_logits(a, b, t) / t, dim=1)
        want = (torch.softmax(a / t, dim=1) + torch.softmax(b / t, dim=1)) / 2
        assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(torch.softmax(losses.flip_teacher_logits(a, a, 2.0) / 2, 1), torch.softmax(a / 2, 1), atol=1e-6)
    # a symmetric teacher: distilling towards the flip target differs from the plain one
    assert not torch.allclose(losses.distillation(b, losses.flip_teacher_logits(a, b)), losses.distillation(b, a))


def test_flip_teacher_option_is_checked_and_reaches_the_distillation_term(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="must be 'plain' or 'flip'"):
        _cfg(tmp_path, stage2={"losses": {"distill_teacher": "mirror"}})
    with pytest.raises(ConfigError, match="'flip' needs stage2.generator_start"):
        _cfg(tmp_path, stage2={"feature_level": "layer2", "losses": {"distill": 1.0, "distill_teacher": "flip"}})
    with pytest.raises(ConfigError, match="'flip' needs stage2.generator_start"):
        _cfg(tmp_path, stage2={"feature_level": "layer2", "generator_start": "stem", "losses": {"distill_teacher": "flip"}})
    from trainer import train as train_mod

    seen = []
    real = train_mod.Stage2Step.generator_loss

    def spy(self, f_lr, f_hr, labels, **kw):
        seen.append(self.teacher is not None and not torch.allclose(self.teacher, self.head(f_hr)))
        return real(self, f_lr, f_hr, labels, **kw)

    monkeypatch.setattr(train_mod.Stage2Step, "generator_loss", spy)
    _train_tiny_early_g(tmp_path, {"distill": 1.0, "distill_teacher": "flip"})
    assert seen and all(seen)  # every step distilled towards the flip's answer, not the plain one


def test_soup_averages_one_networks_checkpoints_and_takes_a_fitted_estimator(tmp_path):
    """scripts/soup.py: the mean of G's weights (BatchNorm statistics too), one HR network, an estimator taken
    from a checkpoint that has one fitted; other networks or HR networks are refused, nothing written."""
    from trainer import checkpoint

    soup = load_script("scripts/soup.py", "soup")
    paths = []
    for i in range(3):
        m = _deep_model("stem")
        with torch.no_grad():  # the same start, trained apart
            for p in m.generator.parameters():
                p.add_(0.05 * (i + 1) * torch.randn_like(p))
            for name, b in m.generator.named_buffers():
                if b.is_floating_point():
                    b.add_(float(i))
        paths.append(tmp_path / f"g{i}.pt")
        checkpoint.save(paths[-1], checkpoint.model_payload(m, m.spec, PRE, {"name": f"g{i}"}))
    fitted = _deep_model("stem")
    faces, _ = make_faces(200, seed=3)
    fit_factor_estimator(fitted, faces[:150], faces[150:], DegradeConfig(factors=(1, 2, 4)), seed=0, n=150)
    est = tmp_path / "est.pt"
    checkpoint.save(est, checkpoint.model_payload(fitted, fitted.spec, PRE, {"name": "est"}))
    out = tmp_path / "soup" / "s.pt"
    assert soup.main([*map(str, paths), "--estimator-from", str(est), "--out", str(out)]) == 0
    states = [checkpoint.load(p, kind="model")["state_dict"] for p in paths]
    got = checkpoint.load(out, kind="model")
    for k, v in got["state_dict"].items():
        if k.startswith("factor_estimator."):
            assert torch.equal(v, checkpoint.load(est, kind="model")["state_dict"][k]), k
        elif v.is_floating_point():
            assert torch.allclose(v, sum(s[k] for s in states) / 3, atol=1e-6), k
        else:
            assert torch.equal(v, states[0][k]), k
    assert [i["path"] for i in got["meta"]["soup"]["ingredients"]] == list(map(str, paths))
    assert len(got["meta"]["soup"]["estimator_from"]["sha256"]) == 64
    model, _, _ = checkpoint.load_model(out)  # a whole model: it loads and answers
    with torch.no_grad():
        assert model(torch.randn(2, 1, 48, 48)).shape == (2, 7)
    # Refused: another HR network, another network, a single checkpoint.
    other = _deep_model("stem")
    with torch.no_grad():
        next(other.fer.parameters()).add_(1.0)
    checkpoint.save(tmp_path / "other_hr.pt", checkpoint.model_payload(other, other.spec, PRE, {}))
    with pytest.raises(SystemExit, match="frozen HR network differs"):
        soup.main([str(paths[0]), str(tmp_path / "other_hr.pt"), "--out", str(tmp_path / "x.pt")])
    layer1 = _deep_model("layer1")
    checkpoint.save(tmp_path / "layer1.pt", checkpoint.model_payload(layer1, layer1.spec, PRE, {}))
    with pytest.raises(SystemExit, match="network spec differs .*generator"):
        soup.main([str(paths[0]), str(tmp_path / "layer1.pt"), "--out", str(tmp_path / "x.pt")])
    with pytest.raises(SystemExit, match="a soup needs two or more"):
        soup.main([str(paths[0]), "--out", str(tmp_path / "x.pt")])
    assert not (tmp_path / "x.pt").exists()


def test_early_g_script_says_what_is_wrong_in_one_line(tmp_path, capsys):
    """A missing HR checkpoint or a config the backbone cannot build: exit 2 and one line, not a traceback."""
    mod = load_script("scripts/early_g.py", "early_g_script")
    cfg = tmp_path / "g.yaml"
    cfg.write_text("name: g\ndata: {synthetic: 200}\nmodel: {backbone: tiny, head_hidden: 16}\n"
                   "stage2: {feature_level: layer3, generator_start: stem, epochs: 1}\n")
    assert mod.main(["--config", str(cfg), "--hr", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "run")]) == 2
    assert "missing.pt does not exist" in capsys.readouterr().err
    (tmp_path / "run2" / "models").mkdir(parents=True)
    (tmp_path / "run2" / "models" / "hr.pt").write_bytes(b"not a checkpoint")
    assert mod.main(["--config", str(cfg), "--out", str(tmp_path / "run2"), "--steps", "stage2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("early_g.py: error: ") and "hr.pt" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("script", ["scripts/route_hr.py", "scripts/fit_factor_estimator.py"])
def test_ship_chain_scripts_say_a_missing_checkpoint_in_one_line(tmp_path, script):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, script, str(tmp_path / "missing.pt"), "--out", str(tmp_path / "out.pt")],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "missing.pt does not exist" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("batchnorm", ["hr", "train", "per_factor"])
def test_the_stage2_step_runs_g_once_and_trains_as_the_two_forward_step(batchnorm):
    """Stage2Step reuses G's one forward for the critic and the generator step; the paper's step ran G
    again for each. With every loss term on, three steps of each give the same weights, critic and
    BatchNorm statistics (G's copies train theirs under "train" and "per_factor": momentum applied twice)."""
    import copy

    from trainer.models import LevelHead, SpatialFeatureCritic
    from trainer.train import Stage2Step

    torch.manual_seed(0)
    spec = {**DEEP, "feature_level": "layer3", "generator": {**DEEP["generator"], "start": "stem", "batchnorm": batchnorm}}
    m = InferenceModel(spec).eval()
    m.generator.init_from(m.fer.trunk)
    trunk = m.fer.trunk.requires_grad_(False)
    cfg = config.LossConfig(adversarial=1.0, reconstruction=1.0, head=1.0, cross_entropy=0.5, distill=1.0,
                            reweight=True)

    def make():
        g = copy.deepcopy(m.generator).train()
        torch.manual_seed(1)
        d = SpatialFeatureCritic(128, hidden=8, size=6)
        return Stage2Step(LevelHead(m.fer, "layer3"), g, d, cfg, torch.optim.Adam(g.parameters(), 1e-2),
                          torch.optim.Adam(d.parameters(), 1e-3))

    new, old = make(), make()
    for i in range(3):
        torch.manual_seed(10 + i)
        x_hr = torch.randn(8, 1, 48, 48)
        factor = torch.tensor([1, 2, 3, 4, 6, 8, 2, 4])
        x_lr = torch.stack([torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x[None], int(f)), size=48,
                                                            mode="bilinear")[0] for x, f in zip(x_hr, factor)])
        f_lr, f_hr = trunk.forward_to(x_lr, "stem"), trunk.forward_to(x_hr, "layer3")
        labels = torch.randint(0, 7, (8,))
        new.factor = old.factor = factor.float()
        torch.manual_seed(100 + i)
        new(f_lr, f_hr, labels)
        torch.manual_seed(100 + i)  # the paper's step: G again for the critic (no grad), then for G's loss
        with torch.no_grad():
            fake = old.generate(f_lr)
        w = old.weights(fake, labels)
        ld = losses.critic_loss(old.d(f_hr), old.d(fake), w) + losses.wgan_div_penalty(old.d, f_hr, fake, w, cfg.div_k,
                                                                                       cfg.div_p)
        old.opt_d.zero_grad()
        ld.backward()
        old.opt_d.step()
        lg, _ = old.generator_loss(f_lr, f_hr, labels)
        old.opt_g.zero_grad()
        lg.backward()
        old.opt_g.step()
    a, b = new.g.state_dict(), old.g.state_dict()
    assert a.keys() == b.keys()
    moved = 0
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
        moved += not torch.equal(a[k], m.generator.state_dict()[k])
    assert moved > len(a) // 2  # the steps trained G: the comparison is not of untouched weights
    for p, q in zip(new.d.parameters(), old.d.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    stats = [k for k in a if "running_mean" in k]
    assert stats and any(not torch.equal(a[k], m.generator.state_dict()[k]) for k in stats) == (batchnorm != "hr")
    assert all(new_m.momentum == old_m.momentum for new_m, old_m in zip(new.g.modules(), old.g.modules())
               if hasattr(new_m, "momentum"))  # restored after each step


@pytest.mark.parametrize("terms", [
    {"cross_entropy": 0.5, "distill": 1.0, "contrastive": 0.3},
    {"cross_entropy": 1.0, "cross_entropy_targets": "votes", "distill": 1.0, "distill_from_factor": 6,
     "distill_high": 5.0, "reweight_power": 4.0},
    {"distill": 2.0, "distill_temperature": 4.0, "reweight": False, "attention": 100.0},
])
def test_generator_loss_shares_the_frozen_layers_and_equals_the_term_by_term_formulation(terms):
    """generator_loss runs the frozen layers above G once on G's map and once on the HR map, shared by every
    term; written term by term, each calling the head itself (as the step was first written), the loss and
    G's gradient are the same."""
    import copy

    from trainer.models import LevelHead, SpatialFeatureCritic
    from trainer.train import Stage2Step

    m = _deep_model("stem", "layer3")
    with torch.no_grad():  # confident answers, so that every term is far from zero
        m.fer.head.fc1.weight.mul_(10.0)
        m.fer.head.fc2.weight.mul_(10.0)
    trunk = m.fer.trunk.requires_grad_(False)
    g = m.generator.train()
    g.keep_taps = True
    cfg = config.LossConfig(adversarial=1.0, reconstruction=1.0, head=1.0, **terms)
    torch.manual_seed(3)
    x_hr = torch.randn(6, 1, 48, 48)
    x_lr = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x_hr, 4), size=48, mode="bilinear")
    f_lr = trunk.forward_to(x_lr, "stem")
    *hr_maps, f_hr = trunk.forward_maps(x_hr, ["layer1", "layer2", "layer3"])
    labels = torch.randint(0, 7, (6,))
    head, d = LevelHead(m.fer, "layer3"), SpatialFeatureCritic(128, hidden=8, size=6)
    step = Stage2Step(head, g, d, cfg, torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters()))
    step.factor = torch.tensor([2.0, 3.0, 4.0, 6.0, 8.0, 8.0])
    step.targets = torch.softmax(torch.randn(6, 7), 1)
    step.hr_maps = hr_maps
    g2 = copy.deepcopy(g)  # before G's forward: the same weights and statistics
    loss, parts = step.generator_loss(f_lr, f_hr, labels)
    assert all(abs(v) > 1e-3 for k, v in parts.items()), parts
    grads = torch.autograd.grad(loss, list(g.parameters()))

    y = g2(f_lr, step.factor)
    w = (losses.reweight(losses.true_class_prob(head(y).detach(), labels), cfg.reweight_power) if cfg.reweight
         else torch.ones(6))
    ref = cfg.adversarial * losses.generator_adversarial(d(y), w)
    ref = ref + cfg.reconstruction * losses.weighted_mean(losses.feature_mse(y, f_hr), w)
    ref = ref + cfg.head * losses.weighted_mean(losses.feature_mse(head.activation(y), head.activation(f_hr)), w)
    if cfg.cross_entropy:
        ce = (losses.soft_cross_entropy(head(y), step.targets, reduction="none") if cfg.cross_entropy_targets == "votes"
              else torch.nn.functional.cross_entropy(head(y), labels, reduction="none"))
        ref = ref + cfg.cross_entropy * losses.weighted_mean(ce, w)
    if cfg.distill:
        kd = losses.distillation(head(y), head(f_hr), cfg.distill_temperature)
        scale = (torch.where(step.factor >= cfg.distill_from_factor, cfg.distill_high, cfg.distill)
                 if cfg.distill_from_factor else torch.full((6,), cfg.distill))
        ref = ref + losses.weighted_mean(kd * scale, w)
    if cfg.attention:
        ref = ref + cfg.attention / 2 * losses.weighted_mean(losses.attention_transfer(g2.taps, hr_maps), w)
    if cfg.contrastive:
        nce = losses.cross_resolution_nce(head.embed(y).flatten(1), head.embed(f_hr).flatten(1),
                                          cfg.contrastive_temperature)
        ref = ref + cfg.contrastive * losses.weighted_mean(nce, w)
    ref_grads = torch.autograd.grad(ref, list(g2.parameters()))
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, ref_grads):
        # Absolute tolerance relative to each tensor's largest gradient: some elements are small sums of large
        # opposite terms, whose float32 rounding differs between CPU kernels (about 1e-6 of the largest on
        # AVX-512, AVX2 and SSE4 alike); a missing or mis-weighted term moves them by far more.
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def test_early_g_records_the_data_it_was_given(tmp_path, monkeypatch):
    """--data goes into the run's config (config.json, every model's settings) as an absolute path, as fsrfer-train
    --data records it, so a resumed run on other data is refused rather than mixing models."""
    import trainer.train

    mod = load_script("scripts/early_g.py", "early_g_script_data")
    cfg = tmp_path / "g.yaml"
    cfg.write_text("name: g\ndata: {synthetic: 200}\nmodel: {backbone: tiny, head_hidden: 16}\n")
    seen = {}
    monkeypatch.setattr(mod, "extract_hr", lambda src, dst, c: seen.setdefault("hr", c))
    monkeypatch.setattr(trainer.train, "load_data", lambda c, path: seen.setdefault("data", (c, path)))
    monkeypatch.setattr(trainer.train, "run_pipeline", lambda c, data, out, **kw: seen.setdefault("run", c) and True)
    monkeypatch.chdir(tmp_path)
    assert mod.main(["--config", str(cfg), "--data", "faces.npz", "--out", str(tmp_path / "run")]) == 0
    for key in ("hr", "run"):
        assert seen[key].data.path == str(tmp_path / "faces.npz") and seen[key].data.synthetic == 0
