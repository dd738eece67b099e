"""Trainer: losses, re-weighting, a stage-2 step using G and D, resume equivalence, the tiny pipeline."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fsrfer_edge.errors import ConfigError, DataError, ModelError  # noqa: E402
from fsrfer_edge.fileio import sha256_file  # noqa: E402
from trainer import checkpoint, config, losses  # noqa: E402
from trainer.cli import eval_main, train_main  # noqa: E402
from trainer.models import FeatureCritic, FeatureGenerator, Head, InferenceModel, SpatialFeatureGenerator  # noqa: E402
from trainer.train import Stage2Step, load_data, train_stage1  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def tiny_cfg(**over):
    cfg = config.load(REPO / "configs" / "tiny.yaml")
    d = {**cfg.to_dict(), "device": "cpu"}  # bit-exact comparisons below; GPUs: tests/test_train_device.py
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) else v
    return config.from_dict(d)


# -- losses -----------------------------------------------------------------------------------

def test_reweight_values():
    p = torch.tensor([1.0, 0.5, 0.0, 0.9])
    np.testing.assert_allclose(losses.reweight(p).numpy(), [0.25, 1.0, 2.25, 0.36], rtol=1e-6)


def test_reweight_power_leans_harder_on_misclassified_faces_and_is_range_checked(tmp_path):
    p = torch.tensor([1.0, 0.5, 0.0])
    np.testing.assert_allclose(losses.reweight(p, 4.0).numpy(), [0.0625, 1.0, 5.0625], rtol=1e-6)
    step2, batch = _step(config.LossConfig(adversarial=0.0, head=0.0))
    step4, _ = _step(config.LossConfig(adversarial=0.0, head=0.0, reweight_power=4.0))
    with torch.no_grad():
        w2, w4 = (s.weights(s.generate(batch[0]), batch[2]) for s in (step2, step4))
    torch.testing.assert_close(w4, w2 ** 2)  # (1.5 - p)^4 = ((1.5 - p)^2)^2, from the same frozen head
    d = config.load(REPO / "configs" / "tiny.yaml").to_dict()
    d["stage2"]["losses"]["reweight_power"] = 0.0
    with pytest.raises(ConfigError, match="reweight_power"):
        config.from_dict(d)


def test_true_class_prob_and_weights_favour_misclassified():
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    labels = torch.tensor([0, 0])
    p = losses.true_class_prob(logits, labels)
    assert p[0] > 0.99 and p[1] < 0.01
    w = losses.reweight(p)
    assert w[1] / w[0] > 8.5  # up to 9x more weight on the face the frozen model gets wrong


def test_feature_mse_and_weighted_mean():
    y, t = torch.zeros(2, 4), torch.tensor([[1.0] * 4, [2.0] * 4])
    np.testing.assert_allclose(losses.feature_mse(y, t).numpy(), [1.0, 4.0])
    assert float(losses.weighted_mean(losses.feature_mse(y, t), torch.tensor([1.0, 0.5]))) == pytest.approx(1.5)


def test_critic_and_generator_adversarial_signs():
    w = torch.ones(3)
    assert float(losses.critic_loss(torch.full((3,), -1.0), torch.full((3,), 2.0), w)) == pytest.approx(-3.0)
    assert float(losses.generator_adversarial(torch.full((3,), 2.0), w)) == pytest.approx(2.0)


def test_wgan_div_penalty_on_linear_critic():
    # D(x) = a.x has gradient a everywhere: penalty = k * ||a||^p.
    critic = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        critic.weight[:] = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    d = lambda x: critic(x).squeeze(1)  # noqa: E731
    pen = losses.wgan_div_penalty(d, torch.randn(5, 4), torch.randn(5, 4), torch.ones(5), k=2.0, p=6.0)
    assert float(pen.detach()) == pytest.approx(2.0 * math.sqrt(2) ** 6, rel=1e-5)


# -- a stage-2 step ---------------------------------------------------------------------------

def _step(loss_cfg):
    torch.manual_seed(0)
    dim = 16
    head = Head(dim, 8, 7).eval()
    g, d = FeatureGenerator(dim, blocks=1, growth=8), FeatureCritic(dim, 16, 2)
    opt_g, opt_d = torch.optim.Adam(g.parameters(), 1e-3), torch.optim.Adam(d.parameters(), 1e-3)
    batch = (torch.randn(32, dim), torch.randn(32, dim), torch.randint(0, 7, (32,)))
    return Stage2Step(head, g, d, loss_cfg, opt_g, opt_d), batch


def test_stage2_step_updates_g_and_d():
    step, batch = _step(config.LossConfig(adversarial=1.0))
    g0 = [p.detach().clone() for p in step.g.parameters()]
    d0 = [p.detach().clone() for p in step.d.parameters()]
    d_loss_before = float(step.critic_loss(*batch).detach())
    stats = step(*batch)
    assert {"d_loss", "adv", "rec", "head", "g_loss"} <= set(stats)
    assert any(not torch.equal(a, b) for a, b in zip(g0, step.g.parameters())), "G was not updated"
    assert any(not torch.equal(a, b) for a, b in zip(d0, step.d.parameters())), "D was not updated"
    assert float(step.critic_loss(*batch).detach()) != pytest.approx(d_loss_before), "critic loss did not change"


@pytest.mark.parametrize("term", ["adversarial", "reconstruction", "head"])
def test_each_generator_term_sends_gradient_to_g(term):
    weights = {"adversarial": 0.0, "reconstruction": 0.0, "head": 0.0, term: 1.0}
    step, (f_lr, f_hr, y) = _step(config.LossConfig(**weights))
    with torch.no_grad():  # make G non-trivial so the head/adv terms depend on its parameters
        for p in step.g.parameters():
            p.add_(0.1 * torch.randn_like(p))
    loss, parts = step.generator_loss(f_lr, f_hr, y)
    loss.backward()
    assert set(parts) - {"w_mean"} == {{"adversarial": "adv", "reconstruction": "rec", "head": "head"}[term]}
    assert sum(float(p.grad.abs().sum()) for p in step.g.parameters() if p.grad is not None) > 0


def test_reweighting_changes_the_loss_and_is_off_in_the_ablation():
    step_w, batch = _step(config.LossConfig(adversarial=0.0, head=0.0, reweight=True))
    step_u, _ = _step(config.LossConfig(adversarial=0.0, head=0.0, reweight=False))
    lw, pw = step_w.generator_loss(*batch)
    lu, pu = step_u.generator_loss(*batch)
    assert pu["w_mean"] == 1.0
    assert 0.25 <= pw["w_mean"] <= 2.25 and pw["w_mean"] != 1.0
    assert lw.item() != pytest.approx(lu.item())


def test_cross_entropy_on_votes_uses_the_distributions_and_equals_majority_ce_on_one_hot_votes():
    cfg = dict(adversarial=0.0, reconstruction=0.0, head=0.0, reweight=False, cross_entropy=1.0)
    step_m, (f_lr, f_hr, y) = _step(config.LossConfig(**cfg))
    step_v, _ = _step(config.LossConfig(**cfg, cross_entropy_targets="votes"))
    with pytest.raises(ConfigError, match="vote distributions"):
        step_v.generator_loss(f_lr, f_hr, y)
    step_v.targets = torch.nn.functional.one_hot(y, 7).float()
    majority, _ = step_m.generator_loss(f_lr, f_hr, y)
    assert step_v.generator_loss(f_lr, f_hr, y)[0].item() == pytest.approx(majority.item(), rel=1e-6)
    step_v.targets = torch.full((len(y), 7), 1 / 7)  # votes spread evenly: another loss
    assert step_v.generator_loss(f_lr, f_hr, y)[0].item() != pytest.approx(majority.item(), rel=1e-3)
    base = {"data": {"synthetic": 50}, "stage2": {"losses": {"cross_entropy": 1.0, "cross_entropy_targets": "votes"}}}
    with pytest.raises(ConfigError, match="'votes' needs data.soft_labels: true"):
        config.from_dict(base)
    with pytest.raises(ConfigError, match="cross_entropy_targets must be 'majority' or 'votes'"):
        config.from_dict({"stage2": {"losses": {"cross_entropy_targets": "soft"}}})


def test_untrained_generator_is_identity():
    g = FeatureGenerator(32, blocks=2, growth=8)
    f = torch.randn(4, 32)
    assert torch.equal(g(f), f)


def test_map_level_model_with_untrained_g_equals_the_hr_model():
    spec = {"method": "fsrfer", "backbone": "resnet10_half", "feature_level": "layer3",
            "generator": {"blocks": 1, "growth": 8}}
    m = InferenceModel(spec).eval()
    assert isinstance(m.generator, SpatialFeatureGenerator)
    hr = InferenceModel({"method": "hr", "backbone": "resnet10_half"}).eval()
    hr.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("generator.")})
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(m(x), hr(x), atol=1e-6)
        trunk = m.fer.trunk
        assert trunk.forward_to(x, "layer3").shape == (3, 128, 6, 6)
        assert torch.allclose(trunk.forward_from(trunk.forward_to(x, "layer3"), "layer3"), trunk(x), atol=1e-6)
    with pytest.raises(ConfigError, match="feature level"):
        InferenceModel({**spec, "feature_level": "layer9"})


def test_stage2_step_trains_a_map_level_generator():
    from trainer.models import FERNet, LevelHead, SpatialFeatureCritic

    torch.manual_seed(0)
    fer = FERNet("tiny", head_hidden=16).eval().requires_grad_(False)
    head = LevelHead(fer, "layer1")
    g = SpatialFeatureGenerator(8, blocks=1, growth=4)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.1 * torch.randn_like(p))
    d = SpatialFeatureCritic(8, hidden=8, size=24)
    x = torch.randn(6, 1, 48, 48)
    f_hr = fer.trunk.forward_to(x, "layer1")
    f_lr = f_hr + 0.3 * torch.randn_like(f_hr)
    step = Stage2Step(head, g, d, config.LossConfig(adversarial=1.0), torch.optim.Adam(g.parameters(), 1e-3),
                      torch.optim.Adam(d.parameters(), 1e-3))
    g0 = [p.detach().clone() for p in g.parameters()]
    stats = step(f_lr, f_hr, torch.randint(0, 7, (6,)))
    assert {"d_loss", "adv", "rec", "head"} <= set(stats)
    assert any(not torch.equal(a, b) for a, b in zip(g0, g.parameters()))
    assert all(p.grad is None for p in fer.parameters()), "the frozen FER model must not get gradients"


# -- config -----------------------------------------------------------------------------------

def test_config_refuses_a_key_given_twice(tmp_path):
    text = (REPO / "configs" / "tiny.yaml").read_text()
    assert config.load(REPO / "configs" / "tiny.yaml").stage1.batch_size != 64  # the default it would fall back to
    twice = tmp_path / "twice.yaml"
    twice.write_text(text + "\nstage1: {epochs: 3}\n")  # PyYAML alone keeps this block and drops the first
    with pytest.raises(ConfigError, match="key 'stage1' is given twice in one mapping"):
        config.load(twice)
    nested = tmp_path / "nested.yaml"
    nested.write_text("name: n\nstage1:\n  epochs: 2\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="key 'epochs' is given twice"):
        config.load(nested)


def test_config_rejects_unknown_and_mistyped_options(tmp_path):
    with pytest.raises(ConfigError, match="unknown option.*epoch"):
        config.from_dict({"stage1": {"epoch": 3}})
    with pytest.raises(ConfigError, match="expected a number"):
        config.from_dict({"stage1": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="backbone"):
        config.from_dict({"model": {"backbone": "vgg99"}})
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.yaml")


def test_shipped_configs_parse():
    for p in sorted((REPO / "configs").glob("*.yaml")):
        config.load(p)


# -- resume -----------------------------------------------------------------------------------

def _state(path):
    return {k: v for k, v in checkpoint.load(path, kind="model")["state_dict"].items()}


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    cfg = tiny_cfg(data={"synthetic": 200}, stage1={"epochs": 3})
    data = load_data(cfg, None)
    full = train_stage1(cfg, data, tmp_path / "full", resume=False)
    # "Kill" after one epoch, then resume twice (1 more epoch each time).
    assert train_stage1(cfg, data, tmp_path / "cut", resume=False, stop_after=1) is None
    assert train_stage1(cfg, data, tmp_path / "cut", resume=True, stop_after=1) is None
    resumed = train_stage1(cfg, data, tmp_path / "cut", resume=True)
    a, b = _state(full), _state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_stage1_can_start_from_another_checkpoints_fer_network(tmp_path):
    cfg = tiny_cfg(data={"synthetic": 200}, stage1={"epochs": 1})
    data = load_data(cfg, None)
    first = train_stage1(cfg, data, tmp_path / "first", resume=False)
    # A negligible learning rate: one epoch moves the weights by nothing visible, so the start shows in the result.
    frozen = {"epochs": 1, "lr": 1e-9, "init": str(first)}
    started = train_stage1(tiny_cfg(data={"synthetic": 200}, stage1=frozen), data, tmp_path / "init", resume=False)
    scratch = train_stage1(tiny_cfg(data={"synthetic": 200}, stage1={**frozen, "init": ""}), data, tmp_path / "scratch",
                           resume=False)
    a, b, c = _state(first), _state(started), _state(scratch)
    convs = [k for k in a if k.endswith("conv1.weight")]
    close = lambda x, y: torch.allclose(x, y, atol=1e-6)  # noqa: E731
    assert convs and all(close(a[k], b[k]) for k in convs) and not any(close(a[k], c[k]) for k in convs)
    meta = checkpoint.load(started, kind="model")["meta"]
    assert meta["stage1_init"]["path"] == str(first) and len(meta["stage1_init"]["sha256"]) == 64
    with pytest.raises(DataError, match="stage1.init: .*nothing.pt does not exist"):
        train_stage1(tiny_cfg(data={"synthetic": 200}, stage1={"init": str(tmp_path / "nothing.pt")}), data,
                     tmp_path / "missing", resume=False)
    other = tiny_cfg(data={"synthetic": 200}, stage1={"init": str(first)}, model={"head_hidden": 24})
    with pytest.raises(ConfigError, match="does not match model.backbone"):
        train_stage1(other, data, tmp_path / "other", resume=False)


def test_stage1_init_can_be_pinned_to_one_network_whatever_file_holds_it(tmp_path):
    cfg = tiny_cfg(data={"synthetic": 200}, stage1={"epochs": 1})
    data = load_data(cfg, None)
    first = train_stage1(cfg, data, tmp_path / "first", resume=False)
    digest = checkpoint.weights_sha256(checkpoint.load_model(first)[0].fer)
    # The same weights stored in another form (the shipped default's byte planes) keep the digest, not the file hash.
    restored = tmp_path / "restored.pt"
    checkpoint.save(restored, checkpoint.load(first, kind="model"), compress=True)
    assert sha256_file(restored) != sha256_file(first)
    pinned = {"epochs": 1, "lr": 1e-9, "init": str(restored), "init_fer_sha256": digest}
    started = train_stage1(tiny_cfg(data={"synthetic": 200}, stage1=pinned), data, tmp_path / "pinned", resume=False)
    assert checkpoint.load(started, kind="model")["meta"]["stage1_init"]["fer_sha256"] == digest
    # Another network under the same settings is refused, naming both digests.
    second = train_stage1(tiny_cfg(data={"synthetic": 200}, seed=1, stage1={"epochs": 1}), data, tmp_path / "second",
                          resume=False)
    with pytest.raises(ConfigError, match=f"has weights SHA-256 [0-9a-f]{{64}}; this config was run from {digest}"):
        train_stage1(tiny_cfg(data={"synthetic": 200}, stage1={**pinned, "init": str(second)}), data, tmp_path / "x",
                     resume=False)
    with pytest.raises(ConfigError, match="init_fer_sha256 must be 64 lower-case hex digits and needs stage1.init"):
        tiny_cfg(data={"synthetic": 200}, stage1={"init_fer_sha256": digest})


def test_stage1_can_distil_a_checkpoints_network_with_the_test_time_flip(tmp_path):
    from trainer.train import stage1_teacher

    cfg = tiny_cfg(data={"synthetic": 200}, stage1={"epochs": 1})
    data = load_data(cfg, None)
    first = train_stage1(cfg, data, tmp_path / "first", resume=False)
    taught = {"epochs": 1, "lr": 0.01, "init": str(first), "distill_from": str(first), "distill": 5.0}
    tcfg = tiny_cfg(data={"synthetic": 200}, stage1=taught)
    # The teacher answers as the exported --flip graph: the mean of the softmaxes on each face and its mirror.
    teacher, record = stage1_teacher(tcfg, torch.device("cpu"))
    fer = checkpoint.load_model(first)[0].fer.eval()
    x = torch.randn(5, 1, 48, 48)
    with torch.no_grad():
        want = torch.log((fer(x).softmax(1) + fer(x.flip(3)).softmax(1)) / 2)
        assert torch.allclose(teacher(x), want, atol=1e-5)
    assert record is not None and record["weight"] == 5.0 and record["teacher"] == "flip average"
    with_kd = train_stage1(tcfg, data, tmp_path / "kd", resume=False)
    plain = train_stage1(tiny_cfg(data={"synthetic": 200}, stage1={**taught, "distill_from": "", "distill": 0.0}),
                         data, tmp_path / "plain", resume=False)
    a, b = _state(with_kd), _state(plain)
    convs = [k for k in a if k.endswith("conv1.weight")]
    assert convs and not all(torch.allclose(a[k], b[k]) for k in convs)  # the term moved the training
    meta = checkpoint.load(with_kd, kind="model")["meta"]
    assert meta["stage1_distill"]["path"] == str(first) and len(meta["stage1_distill"]["sha256"]) == 64
    assert "stage1_distill" not in checkpoint.load(plain, kind="model")["meta"]
    # Several checkpoints: an ensemble teacher, the mean of the members' flip-averaged softmaxes.
    second = train_stage1(tiny_cfg(data={"synthetic": 200}, stage1={"epochs": 1}, seed=1), data, tmp_path / "second",
                          resume=False)
    ens_cfg = tiny_cfg(data={"synthetic": 200}, stage1={**taught, "distill_from": f"{first}, {second}"})
    ens, ens_record = stage1_teacher(ens_cfg, torch.device("cpu"))
    fer2 = checkpoint.load_model(second)[0].fer.eval()
    with torch.no_grad():
        p1 = (fer(x).softmax(1) + fer(x.flip(3)).softmax(1)) / 2
        p2 = (fer2(x).softmax(1) + fer2(x.flip(3)).softmax(1)) / 2
        assert torch.allclose(ens(x), torch.log((p1 + p2) / 2), atol=1e-5)
        assert not torch.allclose(p1, p2, atol=1e-3)  # two different members
    assert ens_record is not None and ens_record["teacher"] == "mean of 2 flip averages"
    assert [m["path"] for m in ens_record["members"]] == [str(first), str(second)]
    assert all(len(m["sha256"]) == 64 for m in ens_record["members"])
    with pytest.raises(DataError, match="stage1.distill_from: .*nothing.pt does not exist"):
        stage1_teacher(tiny_cfg(data={"synthetic": 200}, stage1={**taught, "distill_from": f"{first},{tmp_path}/nothing.pt"}),
                       torch.device("cpu"))
    for bad in ({"distill": 1.0}, {"distill_from": str(first)}):
        with pytest.raises(ConfigError, match="stage1.distill .* and stage1.distill_from .* go together"):
            tiny_cfg(data={"synthetic": 200}, stage1=bad)
    with pytest.raises(DataError, match="stage1.distill_from: .*nothing.pt does not exist"):
        train_stage1(tiny_cfg(data={"synthetic": 200}, stage1={"distill_from": str(tmp_path / "nothing.pt"),
                                                              "distill": 1.0}), data, tmp_path / "missing", resume=False)


def test_stage1_distils_precomputed_teacher_answers(tmp_path):
    """stage1.distill_from: FILE.npz, answers made once by scripts/teacher_answers.py on the clean faces."""
    import yaml

    from _scripts import load_script
    from trainer.train import PRE, CachedAnswers, load_answers, stage1_teacher, teacher_answers, write_answers

    cfg = tiny_cfg(data={"synthetic": 200}, stage1={"epochs": 1})
    data = load_data(cfg, None)
    first = train_stage1(cfg, data, tmp_path / "first", resume=False)
    second = train_stage1(tiny_cfg(data={"synthetic": 200}, stage1={"epochs": 1}, seed=1), data, tmp_path / "second",
                          resume=False)
    # The script answers the config's training split as the online ensemble teacher would, on the clean faces.
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.to_dict()))
    answers = tmp_path / "answers.npz"
    script = load_script("scripts/teacher_answers.py", "teacher_answers_script")
    assert script.main([str(first), str(second), "--config", str(cfg_file), "--out", str(answers), "--threads", "1"]) == 0
    online, _ = stage1_teacher(tiny_cfg(data={"synthetic": 200}, stage1={"distill_from": f"{first},{second}",
                                                                        "distill": 1.0}), torch.device("cpu"))
    assert isinstance(online, torch.nn.Module)
    with torch.no_grad():
        want = online(torch.from_numpy(PRE.normalize(data.train.images[:7].astype(np.float32))[:, None]))
    with np.load(answers) as z:
        got = torch.from_numpy(z["log_probs"])
        assert list(z["members"]) == [str(first), str(second)]
    assert got.shape == (len(data.train.labels), want.shape[1])
    assert torch.allclose(got[:7], want, atol=1e-5)
    np.testing.assert_allclose(teacher_answers([first, second], data.train.images[:7]), want.numpy(), atol=1e-5)
    # Training reads them by face index and records the file; the term moves the training.
    taught = {"epochs": 1, "lr": 0.01, "init": str(first), "distill_from": str(answers), "distill": 5.0}
    tcfg = tiny_cfg(data={"synthetic": 200}, stage1=taught)
    cached, record = stage1_teacher(tcfg, torch.device("cpu"), data.train)
    assert isinstance(cached, CachedAnswers)
    assert torch.equal(cached.lookup(np.array([5, 0]), torch.device("cpu")), got[[5, 0]])
    assert record is not None and record["members"] == [str(first), str(second)] and len(record["sha256"]) == 64
    with_kd = train_stage1(tcfg, data, tmp_path / "kd", resume=False)
    plain = train_stage1(tiny_cfg(data={"synthetic": 200}, stage1={**taught, "distill_from": "", "distill": 0.0}),
                         data, tmp_path / "plain", resume=False)
    a, b = _state(with_kd), _state(plain)
    convs = [k for k in a if k.endswith("conv1.weight")]
    assert convs and not all(torch.allclose(a[k], b[k]) for k in convs)
    assert checkpoint.load(with_kd, kind="model")["meta"]["stage1_distill"]["path"] == str(answers)
    # scripts/stage1_history.py reads the run back from the checkpoint's metadata for the README's figures.
    history = load_script("scripts/stage1_history.py", "stage1_history").run_history(with_kd)
    assert history["distill"]["path"] == str(answers) and history["init"] == str(first)
    recorded = checkpoint.load(with_kd, kind="model")["meta"]["history"]
    assert [e["epoch"] for e in history["epochs"]] == [1]
    # Rounded (the record to 0.01 s, the history to 0.1 s): a tiny epoch on a fast machine reads 0.0, so compare
    # the history with the record, not with zero.
    assert history["epochs"][0]["seconds"] == round(float(recorded[0]["seconds"]), 1)
    assert history["best_val"] == history["epochs"][0]["val"] and 0 <= history["best_val"] <= 100
    # Answers made for other faces, a file that is not one, and mixup are refused with what was expected.
    fewer = tiny_cfg(data={"synthetic": 200, "limit_train": 100}, stage1=taught)
    with pytest.raises(DataError, match="answers 140 other training faces than this run's 100"):
        train_stage1(fewer, load_data(fewer, None), tmp_path / "fewer", resume=False)
    shuffled = tmp_path / "shuffled.npz"
    write_answers(shuffled, got.numpy(), data.train.images[::-1], ["x"])
    with pytest.raises(DataError, match="other training faces"):
        load_answers(shuffled, data.train)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(answers.read_bytes()[:100])
    with pytest.raises(DataError, match="is not a teacher-answers file"):
        load_answers(broken, data.train)
    with pytest.raises(DataError, match="gone.npz does not exist; expected a teacher-answers file"):
        stage1_teacher(tiny_cfg(data={"synthetic": 200}, stage1={**taught, "distill_from": str(tmp_path / "gone.npz")}),
                       torch.device("cpu"), data.train)
    for bad in ({"mixup": 0.2}, {"distill_from": f"{answers},{first}"}):
        with pytest.raises(ConfigError, match="an answers file .* stands alone"):
            tiny_cfg(data={"synthetic": 200}, stage1={**taught, **bad})
    with pytest.raises(SystemExit):  # the suffix is how stage1.distill_from tells answers from checkpoints
        script.main([str(first), "--config", str(cfg_file), "--out", str(tmp_path / "a.npy")])
    assert not (tmp_path / "a.npy").exists()


def test_stage1_weight_averaging_averages_the_epochs_and_resumes(tmp_path):
    base = tiny_cfg(data={"synthetic": 200}, stage1={"epochs": 2})
    data = load_data(base, None)
    first = train_stage1(base, data, tmp_path / "first", resume=False)
    swa = {"epochs": 0, "init": str(first), "swa_epochs": 2, "swa_lr": 0.01}
    cfg = tiny_cfg(data={"synthetic": 200}, stage1=swa)
    full = train_stage1(cfg, data, tmp_path / "full", resume=False)
    meta = checkpoint.load(full, kind="model")["meta"]
    assert meta["swa"] == {"epochs": 2, "lr": 0.01} and len(meta["history"]) == 2
    a, start = _state(full), _state(first)
    convs = [k for k in a if k.endswith("conv1.weight")]
    assert convs and not any(torch.allclose(a[k], start[k]) for k in convs)  # it trained
    # BatchNorm statistics were recomputed for the averaged weights (a fresh layer has mean 0, var 1).
    means = [k for k in a if k.endswith("running_mean")]
    assert means and all(not torch.allclose(a[k], torch.zeros_like(a[k])) for k in means)
    # Killed after the first averaging epoch and resumed: the same network.
    assert train_stage1(cfg, data, tmp_path / "cut", resume=False, stop_after=1) is None
    resumed = train_stage1(cfg, data, tmp_path / "cut", resume=True)
    b = _state(resumed)
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float()), k


def test_stage1_mixup_blends_batches_and_leaves_the_plain_stream_alone(tmp_path):
    from trainer.train import mix_batch

    rng = np.random.default_rng(0)
    assert mix_batch(8, 0.0, rng) == (1.0, None)
    assert rng.bit_generator.state == np.random.default_rng(0).bit_generator.state  # nothing drawn when off
    lam, perm = mix_batch(8, 0.2, rng)
    assert 0.0 <= lam <= 1.0 and perm is not None and sorted(perm.tolist()) == list(range(8))
    base = tiny_cfg(data={"synthetic": 200}, stage1={"epochs": 1})
    data = load_data(base, None)
    plain = train_stage1(base, data, tmp_path / "plain", resume=False)
    again = train_stage1(tiny_cfg(data={"synthetic": 200}, stage1={"epochs": 1, "mixup": 0.0}), data,
                         tmp_path / "again", resume=False)
    mixed = train_stage1(tiny_cfg(data={"synthetic": 200}, stage1={"epochs": 1, "mixup": 0.4}), data,
                         tmp_path / "mixed", resume=False)
    a, b, c = _state(plain), _state(again), _state(mixed)
    convs = [k for k in a if k.endswith("conv1.weight")]
    assert convs and all(torch.equal(a[k], b[k]) for k in convs)
    assert not any(torch.allclose(a[k], c[k]) for k in convs)  # the blend changed what it learned
    # Vote distributions as targets (FER+): blended the same way, and mixup still changes the result.
    n_cls = int(data.train.labels.max()) + 1
    data.train.targets = (0.7 * np.eye(n_cls)[data.train.labels] + 0.3 / n_cls).astype(np.float32)
    soft = _state(train_stage1(base, data, tmp_path / "soft", resume=False))
    soft_mixed = _state(train_stage1(tiny_cfg(data={"synthetic": 200}, stage1={"epochs": 1, "mixup": 0.4}), data,
                                     tmp_path / "soft_mixed", resume=False))
    assert not any(torch.allclose(soft[k], soft_mixed[k]) for k in convs)
    with pytest.raises(ConfigError, match="stage1.mixup must be a Beta concentration"):
        tiny_cfg(stage1={"mixup": -0.1})


# -- the tiny pipeline, end to end through the CLIs ---------------------------------------------

def test_tiny_config_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(["--config", str(REPO / "configs" / "tiny.yaml"), "--out", str(out)]) == 0
    names = {p.stem for p in (out / "models").glob("*.pt")}
    assert names == {"hr", "lr_finetune", "image_sr", "fsrfer", "fsrfer_no_reweight", "fsrfer_no_adversarial"}
    res = json.loads((out / "eval" / "val" / "results.json").read_text())
    assert set(res) == names
    for r in res.values():
        assert set(r["factors"]) == {"1", "2", "3", "4", "6", "8"}
        for v in r["factors"].values():
            assert 0.0 <= v["accuracy"] <= 1.0 and np.asarray(v["confusion"]).shape == (7, 7)
    assert (out / "eval" / "val" / "accuracy_vs_factor.png").stat().st_size > 1000
    # the HR model learned the synthetic faces: well above chance at x1
    assert res["hr"]["factors"]["1"]["accuracy"] > 0.4
    # a run whose models exist is skipped on --resume
    assert train_main(["--config", str(REPO / "configs" / "tiny.yaml"), "--out", str(out), "--resume",
                       "--steps", "stage1,stage2"]) == 0
    # the test split is evaluated only when asked for
    assert not (out / "eval" / "test").exists()
    assert train_main(["--config", str(REPO / "configs" / "tiny.yaml"), "--out", str(out), "--resume",
                       "--steps", "eval-test"]) == 0
    assert set(json.loads((out / "eval" / "test" / "results.json").read_text())) == names
    # --resume never keeps a model trained with other settings: a changed stage-2 loss weight stops it,
    # naming the setting, while the HR model (not affected by stage 2) is still kept.
    changed = tmp_path / "changed.yaml"
    changed.write_text((REPO / "configs" / "tiny.yaml").read_text().replace(
        "stage2:\n", "stage2:\n  losses:\n    cross_entropy: 0.5\n", 1))
    assert train_main(["--config", str(changed), "--out", str(out), "--resume", "--steps", "stage1"]) == 0
    assert train_main(["--config", str(changed), "--out", str(out), "--resume", "--steps", "stage1,stage2"]) == 2
    assert "stage2.losses.cross_entropy: 0.0 in the model, 0.5 now" in capsys.readouterr().err


def test_fsrfer_eval_cli_on_a_checkpoint(tmp_path):
    from trainer.synthetic import make_faces

    imgs, labels = make_faces(40, seed=3)
    npz = tmp_path / "faces.npz"
    np.savez(npz, images=imgs, labels=labels.astype(np.int8), split=np.array(["test"] * 40))
    spec = {"method": "fsrfer", "backbone": "tiny"}
    ckpt = tmp_path / "m.pt"
    from fsrfer_edge.preprocessing import Preprocessing

    checkpoint.save(ckpt, checkpoint.model_payload(InferenceModel(spec).eval(), spec, Preprocessing(), {}))
    out = tmp_path / "e.json"
    assert eval_main(["--checkpoint", str(ckpt), "--data", str(npz), "--labels", "fer2013", "--factors", "1,4",
                      "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["factors"]) == {"1", "4"} and res["n"] == 40
    assert res["labels"] == "npz"  # a plain archive's own labels, whatever --labels names


def test_corrupt_checkpoint_is_a_model_error(tmp_path):
    p = tmp_path / "bad.pt"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="could not be read"):
        checkpoint.load_model(p)
    with pytest.raises(ModelError, match="does not exist"):
        checkpoint.load_model(tmp_path / "missing.pt")


def test_a_compressed_checkpoint_is_smaller_and_loads_the_same(tmp_path):
    import zipfile

    from trainer.train import PRE

    torch.manual_seed(0)
    m = InferenceModel({"method": "hr", "backbone": "resnet10_half"}).eval()
    with torch.no_grad():  # trained-looking weights: not the init's repeated values
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    plain, small = tmp_path / "plain.pt", tmp_path / "small.pt"
    checkpoint.save(plain, checkpoint.model_payload(m, m.spec, PRE, {"name": "m"}))
    checkpoint.save(small, checkpoint.model_payload(m, m.spec, PRE, {"name": "m"}), compress=True)
    with zipfile.ZipFile(small) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
    assert small.stat().st_size < 0.9 * plain.stat().st_size  # deflate alone: about 0.93
    a, _, _ = checkpoint.load_model(plain)
    b, _, ckpt = checkpoint.load_model(small)
    assert ckpt["meta"] == {"name": "m"}
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.pt", "small.pt"]  # no temporary left


def test_a_compressed_checkpoint_keeps_every_dtype_and_refuses_damaged_planes(tmp_path):
    import sys

    torch.manual_seed(0)
    tensors = {"f32": torch.randn(3, 5), "f16": torch.randn(7).half(), "bf16": torch.randn(2, 2).bfloat16(),
               "f64": torch.randn(()).double(), "i64": torch.tensor(4), "empty": torch.zeros(0, 3)}
    path = tmp_path / "c.pt"
    checkpoint.save(path, {"kind": "state", "tensors": tensors, "more": [torch.ones(2)]}, compress=True)
    back = checkpoint.load(path, kind="state")
    assert back["version"] == checkpoint.VERSION
    for k, v in tensors.items():
        assert back["tensors"][k].dtype == v.dtype and torch.equal(back["tensors"][k], v), k
    assert torch.equal(back["more"][0], torch.ones(2))
    raw = torch.load(path, weights_only=True)  # a bare torch.load sees the planes
    assert raw["tensors"]["f32"][checkpoint.BYTE_PLANES] == 1 and raw["tensors"]["f32"]["planes"].shape == (4, 15)
    assert torch.equal(raw["tensors"]["i64"], torch.tensor(4))
    checkpoint.save(path, {"kind": "state", "same": tensors}, compress=True)
    first = path.read_bytes()
    checkpoint.save(path, {"kind": "state", "same": tensors}, compress=True)
    assert path.read_bytes() == first  # no write times inside: the same payload, the same file

    raw["tensors"]["f32"]["shape"] = [4, 5]
    damaged = tmp_path / "damaged.pt"
    torch.save(raw, damaged)
    with pytest.raises(ModelError, match=r"byte planes is damaged .*expected \(4, 20\)"):
        checkpoint.load(damaged)
    for bad in ({"shape": [3, 5], "dtype": "load"}, {"dtype": "float32", "shape": [None]}, {"shape": [3.0, 5]},
                {"shape": [3, 5], "byteorder": "middle"}):
        raw["tensors"]["f32"].update(bad)
        torch.save(raw, damaged)
        with pytest.raises(ModelError, match="byte planes of dtype .* not as save.. writes them"):
            checkpoint.load(damaged)
    raw["tensors"]["f32"].update(shape=[3, 5], byteorder="big" if sys.byteorder == "little" else "little")
    raw["tensors"]["f32"]["planes"] = raw["tensors"]["f32"]["planes"].flip(0)  # as the other byte order writes it
    torch.save(raw, damaged)
    assert torch.equal(checkpoint.load(damaged)["tensors"]["f32"], tensors["f32"])
    plain = tmp_path / "plain.pt"
    checkpoint.save(plain, {"kind": "state", "same": tensors})
    assert torch.load(plain, weights_only=True)["version"] == 1  # no planes: an older trainer still reads it


def test_missing_data_is_a_clear_error(tmp_path):
    cfg = tiny_cfg(data={"synthetic": 0, "path": str(tmp_path / "none.npz")})
    with pytest.raises(DataError, match="not found"):
        load_data(cfg, tmp_path / "none.npz")


def test_image_sr_baseline_learns_to_restore_lr_faces(tmp_path):
    """The SR network must move away from the identity (an L1 loss left it there)."""
    from trainer.train import train_image_sr
    from trainer.degrade import DegradeConfig, random_lr

    cfg = tiny_cfg(data={"synthetic": 300}, stage1={"epochs": 1}, baselines={"image_sr_epochs": 3, "image_sr_lr": 2e-3})
    data = load_data(cfg, None)
    hr = train_stage1(cfg, data, tmp_path, resume=False)
    path = train_image_sr(cfg, data, hr, tmp_path, resume=False)
    model, _, _ = checkpoint.load_model(path)
    imgs = data.val.images
    from trainer.train import _tensor

    x = _tensor(random_lr(imgs, DegradeConfig(factors=(4,)), np.random.default_rng(0))[0])
    y = _tensor(imgs.astype(np.float32))
    with torch.no_grad():
        assert float(((model.sr(x) - y) ** 2).mean()) < 0.995 * float(((x - y) ** 2).mean())


def test_cosine_lr_warms_up_linearly_without_passing_the_base_then_decays_to_zero():
    from trainer.runner import cosine_lr

    steps, base = 7, 0.1  # a warm-up of half an epoch is not a whole number of steps
    lrs = [cosine_lr(base, e, s, steps, 5, warmup_epochs=0.5) for e in range(5) for s in range(steps)]
    assert lrs[0] == pytest.approx(base / steps / 0.5) and max(lrs) == pytest.approx(base)
    peak = lrs.index(max(lrs))
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a > b for a, b in zip(lrs[peak:], lrs[peak + 1:])) and lrs[-1] < 0.01 * base
    assert cosine_lr(base, 5, 0, steps, 5) == pytest.approx(0.0)
