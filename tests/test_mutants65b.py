"""Tests that kill hand-made mutants the rest of the suite let through (round 65b: the method's losses and
re-weighting, the stage-2 step, per-factor evaluation).

Each test checks, on tiny tensors, a value a user depends on but would not notice at once when it broke: what the
re-weighting, the attention and contrastive terms, the WGAN-div penalty and the distillation compute, that each
configured weight reaches its term of the generator's loss, that the critic's loss is the weighted WGAN-div loss of
the HR and the generated features, one critic step per generator step, and the confusion matrix, macro-F1 and
per-factor accuracy of the evaluation.
"""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fsrfer_edge.preprocessing import Preprocessing  # noqa: E402
from trainer import config, losses  # noqa: E402
from trainer.evaluate import confusion, evaluate_fn, macro_f1  # noqa: E402
from trainer.models import FeatureCritic, FeatureGenerator, Head  # noqa: E402
from trainer.train import Stage2Step  # noqa: E402


# -- losses ---------------------------------------------------------------------------------------------------------

def test_reweight_is_a_fixed_weight_no_gradient_flows_into_the_probabilities():
    p = torch.tensor([0.2, 0.9], requires_grad=True)
    w = losses.reweight(p)
    torch.testing.assert_close(w, torch.tensor([1.69, 0.36]))
    assert not w.requires_grad  # a weight, not a term: the head's answer is not pushed by the weight


def test_true_class_prob_is_each_faces_own_softmax_over_the_classes():
    logits = torch.tensor([[math.log(3.0), 0.0, 0.0], [0.0, 0.0, 0.0], [5.0, 5.0, 5.0]])  # one face per row
    p = losses.true_class_prob(logits, torch.tensor([0, 2, 1]))
    torch.testing.assert_close(p, torch.tensor([0.6, 1 / 3, 1 / 3]))


def test_smoothed_spreads_the_smoothing_over_the_classes_not_the_faces():
    t = torch.nn.functional.one_hot(torch.tensor([0, 3]), 4).float()  # 2 faces, 4 classes
    torch.testing.assert_close(losses.smoothed(t, 0.2), t * 0.8 + 0.05)
    torch.testing.assert_close(losses.smoothed(t, 0.2).sum(1), torch.ones(2))


def test_attention_map_is_the_normalised_channel_mean_of_the_squared_map():
    fmap = torch.tensor([[[[1.0, 2.0]], [[-1.0, 0.0]]]])  # (1, 2 channels, 1, 2): squares' mean [1, 2]
    torch.testing.assert_close(losses.attention_map(fmap), torch.tensor([[1.0, 2.0]]) / math.sqrt(5.0))


def test_attention_transfer_is_the_mean_over_positions_summed_over_levels():
    on_left, on_right = torch.tensor([[[[3.0, 0.0]]]]), torch.tensor([[[[0.0, 5.0]]]])  # maps [1, 0] and [0, 1]
    one = losses.attention_transfer([on_left], [on_right])
    torch.testing.assert_close(one, torch.tensor([1.0]))  # mean of [1, 1] over the 2 positions, not their sum
    torch.testing.assert_close(losses.attention_transfer([on_left, on_left], [on_right, on_left]), torch.tensor([1.0]))


def test_cross_resolution_nce_divides_the_similarities_by_the_temperature():
    e = torch.eye(2)
    for t in (0.5, 2.0):
        want = math.log(1.0 + math.exp(-1.0 / t))  # own similarity 1, the other face's 0
        torch.testing.assert_close(losses.cross_resolution_nce(e, e, t), torch.full((2,), want))


def test_wgan_div_penalty_is_taken_on_interpolates_of_real_and_fake():
    # D(x) = ||x||^2 / 2 has gradient x: the penalty reads where x_hat lies between the real and the fake sample.
    critic = lambda x: 0.5 * (x ** 2).sum(1)  # noqa: E731
    real, fake, w = torch.ones(3, 4), torch.zeros(3, 4), torch.tensor([1.0, 2.0, 0.5])
    a = torch.rand(3, 1, generator=torch.Generator().manual_seed(7))
    want = 3.0 * ((a[:, 0] * 2.0) ** 4 * w).mean()  # ||a * 1 + (1 - a) * 0|| = 2a in 4 dimensions
    got = losses.wgan_div_penalty(critic, real, fake, w, k=3.0, p=4.0, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(got.detach(), want)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_distillation_is_kl_teacher_to_student_at_the_temperature_times_its_square(temperature):
    torch.manual_seed(0)
    s, t = torch.randn(4, 7), torch.randn(4, 7) * 2
    ls, lt = torch.log_softmax(s / temperature, 1), torch.log_softmax(t / temperature, 1)
    want = torch.nn.functional.kl_div(ls, lt, reduction="none", log_target=True).sum(1) * temperature ** 2
    torch.testing.assert_close(losses.distillation(s, t, temperature), want)


# -- the stage-2 step -----------------------------------------------------------------------------------------------

def _step(loss_cfg):
    torch.manual_seed(0)
    dim = 16
    head = Head(dim, 8, 7).eval()
    with torch.no_grad():  # confident, varied answers: weights far from 1 and from each other
        for p in head.parameters():
            p.mul_(5.0)
    g, d = FeatureGenerator(dim, blocks=1, growth=8), FeatureCritic(dim, 16, 2)
    with torch.no_grad():  # G not the identity, so its output differs from f_lr and f_hr
        for p in g.parameters():
            p.add_(0.1 * torch.randn_like(p))
    opt_g, opt_d = torch.optim.Adam(g.parameters(), 1e-3), torch.optim.Adam(d.parameters(), 1e-3)
    batch = (torch.randn(12, dim), torch.randn(12, dim), torch.randint(0, 7, (12,)))
    return Stage2Step(head, g, d, loss_cfg, opt_g, opt_d), batch


def test_each_configured_weight_reaches_its_term_and_the_weights_come_from_the_head_on_gs_output():
    cfg = config.LossConfig(adversarial=0.5, reconstruction=2.0, head=3.0)
    step, (f_lr, f_hr, y) = _step(cfg)
    loss, parts = step.generator_loss(f_lr, f_hr, y)
    with torch.no_grad():
        out = step.g(f_lr)
        w = losses.reweight(losses.true_class_prob(step.head(out), y), cfg.reweight_power)
        adv = losses.generator_adversarial(step.d(out), w)
        rec = losses.weighted_mean(losses.feature_mse(out, f_hr), w)
        act = losses.weighted_mean(losses.feature_mse(step.head.activation(out), step.head.activation(f_hr)), w)
    assert parts["w_mean"] == pytest.approx(float(w.mean()), rel=1e-5)
    assert parts["adv"] == pytest.approx(0.5 * float(adv), rel=1e-4)
    assert parts["rec"] == pytest.approx(2.0 * float(rec), rel=1e-5)
    assert parts["head"] == pytest.approx(3.0 * float(act), rel=1e-5)
    assert float(loss.detach()) == pytest.approx(0.5 * float(adv) + 2.0 * float(rec) + 3.0 * float(act), rel=1e-5)


def test_critic_loss_is_the_weighted_wgan_div_loss_of_hr_and_generated_features():
    cfg = config.LossConfig(div_k=3.0, div_p=4.0)
    step, (f_lr, f_hr, y) = _step(cfg)
    torch.manual_seed(11)  # the penalty's interpolation weights come from the default CPU generator
    got = step.critic_loss(f_lr, f_hr, y)
    with torch.no_grad():
        fake = step.g(f_lr)
        w = losses.reweight(losses.true_class_prob(step.head(fake), y), cfg.reweight_power)
        assert float(w.std()) > 0.1  # the weights matter here
    torch.manual_seed(11)
    want = losses.critic_loss(step.d(f_hr), step.d(fake), w) + losses.wgan_div_penalty(step.d, f_hr, fake, w, 3.0, 4.0)
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-5)


def test_one_critic_step_per_generator_step():
    step, batch = _step(config.LossConfig(adversarial=1.0))
    calls = {"d": 0, "g": 0}
    for name, opt in (("d", step.opt_d), ("g", step.opt_g)):
        real = opt.step

        def counted(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)
        opt.step = counted
    for _ in range(3):
        step(*batch)
    assert calls == {"d": 3, "g": 3}


# -- evaluation -----------------------------------------------------------------------------------------------------

def test_confusion_counts_true_classes_in_rows_and_predictions_in_columns():
    m = confusion(np.array([0, 0, 1]), np.array([2, 2, 1]), k=3)
    np.testing.assert_array_equal(m, [[0, 0, 2], [0, 1, 0], [0, 0, 0]])


def test_macro_f1_values_and_classes_absent_from_the_ground_truth_are_left_out():
    # class 0: precision 2/2, recall 2/3, F1 0.8; class 1: precision 1/2, recall 1/1, F1 2/3
    assert macro_f1(np.array([[2, 1], [0, 1]])) == pytest.approx((0.8 + 2 / 3) / 2)
    # class 2 is predicted once but never true: its F1 of 0 is not averaged in
    conf = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]])
    assert macro_f1(conf) == pytest.approx((2 / 3 + 1.0) / 2)


def test_each_factor_is_evaluated_at_its_own_factor():
    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48)).astype(np.uint8)
    labels = np.array([0, 1, 2, 3])

    def logits_fn(x, factor):  # at factor 2 right on 3 of the 4 faces, at factor 1 on none
        return np.eye(7)[np.array([0, 1, 2, 0]) if factor == 2 else (labels + 1) % 7]

    out = evaluate_fn(logits_fn, faces, labels, [1, 2], Preprocessing(input_size=48, channels=1))
    assert out["factors"]["1"]["accuracy"] == 0.0 and out["factors"]["2"]["accuracy"] == 0.75
    assert out["factors"]["2"]["macro_f1"] == pytest.approx((2 / 3 + 1 + 1 + 0) / 4)
    assert out["mean_accuracy"] == pytest.approx(0.375)  # the factors' mean accuracy, not their mean F1


# -- the frozen HR model stays frozen through stage 2 ---------------------------------------------------------------

def test_an_early_g_keeps_the_hr_model_frozen_and_in_eval_mode(tmp_path, monkeypatch):
    """The layers above an early G (built afresh, in training mode) read the HR model's statistics with dropout
    off (the re-weighting's answers are the HR model's, not a noisy draw), and the fused model carries the HR
    model's own weights and statistics. (G on cached features loads the HR model in eval mode already.)"""
    from pathlib import Path

    from trainer import checkpoint
    from trainer import train as train_mod

    cfg = config.load(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml").to_dict()
    cfg.update(device="cpu", data={**cfg["data"], "synthetic": 32}, stage1={**cfg["stage1"], "epochs": 1})
    cfg["stage2"] = {**cfg["stage2"], "pretrain_epochs": 0, "epochs": 1, "batch_size": 16, "feature_level": "layer2",
                     "generator_start": "layer1"}
    c = config.from_dict(cfg)
    seen = []
    real = train_mod.Stage2Step.generator_loss

    def spy(self, *a, **k):
        seen.append(any(m.training for m in self.head.modules() if m is not self.head))  # the wrapper: no state
        return real(self, *a, **k)

    monkeypatch.setattr(train_mod.Stage2Step, "generator_loss", spy)
    data = train_mod.load_data(c, None)
    hr = train_mod.train_stage1(c, data, tmp_path / "run", resume=False)
    out = train_mod.train_stage2(c, data, hr, tmp_path / "run", "fsrfer", c.stage2.losses, resume=False)
    assert seen and not any(seen)
    before = {k: v for k, v in checkpoint.load(hr, kind="model")["state_dict"].items() if k.startswith("fer.")}
    after = checkpoint.load(out, kind="model")["state_dict"]
    assert before and all(torch.equal(v, after[k]) for k, v in before.items())
