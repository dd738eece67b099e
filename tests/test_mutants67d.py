"""Tests that kill hand-made mutants the rest of the suite let through (round 67d: the trainer's training loops
outside the losses: stage 1, stage 2's loop, the baselines, and what each stage writes).

Each test checks, on a few synthetic faces and one or two epochs, something a user relies on without seeing it at
once when it breaks: that stage 1's label smoothing reaches the loss (hard and soft labels), that training batches
are augmented, that stage 1 picks its epoch on the val split and ships that epoch's weights, that stage 2 feeds G
the LR features of the same faces whose HR features it must match, each face at its own factor, with the HR model
frozen and in eval mode and each optimiser over its own network, that the GAN step's gradients are this step's
alone, that G is chosen on val accuracy over ``eval.factors``, that the LR-fine-tuned baseline trains on LR faces,
that image SR leaves the HR model under it as it was, and what the stages write.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

from trainer import checkpoint, config  # noqa: E402
from trainer import train as train_mod  # noqa: E402
from trainer.models import FeatureCritic, FeatureGenerator, Head  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _cfg(**over: Any) -> config.TrainConfig:
    d = {**config.load(REPO / "configs" / "tiny.yaml").to_dict(), "device": "cpu"}
    over = {"data": {"synthetic": 48}, **over}
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) else v
    return config.from_dict(d)


def _fer_state(path: Path) -> dict[str, torch.Tensor]:
    sd = checkpoint.load(path, kind="model")["state_dict"]
    return {k: v for k, v in sd.items() if k.startswith("fer.")}


@pytest.fixture(scope="module")
def hr_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[config.TrainConfig, Any, Path]:
    """A tiny HR model (one stage-1 epoch on 33 training faces), shared by the stage-2 and baseline tests."""
    cfg = _cfg(stage1={"epochs": 1, "batch_size": 8}, stage2={"batch_size": 8})
    data = train_mod.load_data(cfg, None)
    out = tmp_path_factory.mktemp("hr")
    hr = train_mod.train_stage1(cfg, data, out, resume=False)
    assert hr is not None
    return cfg, data, hr


# -- stage 1: one classifier epoch -----------------------------------------------------------------------------------


class _Fixed(torch.nn.Module):
    """Answers the same logits for every face; records its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.b = torch.nn.Parameter(torch.tensor([2.0, 0.5, 0.0, -1.0, 0.3, 0.0, -0.5]))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.b.expand(len(x), 7) * 1.0


def _one_epoch(cfg: config.TrainConfig, split: Any) -> tuple[dict[str, float], _Fixed]:
    model = _Fixed()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    epoch = train_mod._classifier_epoch(model, opt, split, cfg, 1, 0.0, lr_inputs=False, dev=torch.device("cpu"))
    return epoch(0, np.random.default_rng(0)), model


def _faces(n: int = 8) -> Any:
    from trainer.synthetic import make_faces

    imgs, labels = make_faces(n, seed=3)
    return train_mod.Split(imgs, labels)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_stage1_label_smoothing_reaches_the_hard_label_loss(smoothing: float) -> None:
    """Mutant: the cross-entropy built without ``stage1.label_smoothing``."""
    split = _faces()
    stats, model = _one_epoch(_cfg(stage1={"batch_size": 8, "label_smoothing": smoothing}), split)
    want = torch.nn.functional.cross_entropy(model.b.detach().expand(8, 7), torch.from_numpy(split.labels),
                                             label_smoothing=smoothing)
    assert stats["loss"] == pytest.approx(float(want), rel=1e-5)


def test_stage1_label_smoothing_reaches_soft_labels() -> None:
    """Mutant: the vote distributions (data.soft_labels) used as they are, unsmoothed."""
    split = _faces()
    votes = np.random.default_rng(1).dirichlet(np.ones(7), 8).astype(np.float32)
    split.targets = votes
    stats, model = _one_epoch(_cfg(stage1={"batch_size": 8, "label_smoothing": 0.3}), split)
    t = torch.from_numpy(votes) * 0.7 + 0.3 / 7
    want = -(t * torch.log_softmax(model.b.detach(), 0)).sum(1).mean()
    assert stats["loss"] == pytest.approx(float(want), rel=1e-5)


def test_stage1_trains_on_augmented_faces_only_when_augment_is_on() -> None:
    """Mutant: the training batches taken as they are, whatever ``stage1.augment`` says."""
    split = _faces()
    plain = [train_mod._tensor(split.images[i][None].astype(np.float32))[0] for i in range(8)]

    def rows_seen(augment: bool) -> list[bool]:
        cfg = _cfg(stage1={"batch_size": 8, "augment": augment, "rotate": 10.0, "scale": 0.1})
        _, model = _one_epoch(cfg, split)
        x = torch.cat(model.seen)
        return [any(torch.equal(r, p) for p in plain) for r in x]

    assert all(rows_seen(False))
    assert not any(rows_seen(True))


# -- stage 1: which epoch is kept, and which network trains -------------------------------------------------------


def test_stage1_scores_epochs_on_val_and_ships_the_best_epochs_weights(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutants: the epochs scored on the training split; the last epoch's weights saved instead of the best's;
    the saved history or best score left out."""
    cfg = _cfg(stage1={"epochs": 2, "batch_size": 8})
    data = train_mod.load_data(cfg, None)
    scores, seen = iter([0.9, 0.2]), []

    def scripted(model: Any, split: Any, factors: Any, bs: int) -> float:
        assert split is data.val and tuple(factors) == (1,)
        seen.append({k: v.clone() for k, v in model.fer.state_dict().items()})
        return next(scores)

    monkeypatch.setattr(train_mod, "_mean_acc", scripted)
    hr = train_mod.train_stage1(cfg, data, tmp_path, resume=False)
    assert hr is not None and len(seen) == 2
    assert not all(torch.equal(v, seen[1][k]) for k, v in seen[0].items())  # epoch 2 changed the weights
    saved = _fer_state(hr)
    assert all(torch.equal(saved["fer." + k], v) for k, v in seen[0].items())
    meta = checkpoint.load(hr, kind="model")["meta"]
    assert [h["val_score"] for h in meta["history"]] == [0.9, 0.2] and meta["best_val_score"] == 0.9


def test_stage1_ships_the_best_weight_average_when_swa_epochs_are_set(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: the averaged weights scored but never put into the model: the last SWA epoch's plain weights
    shipped as the HR model."""
    cfg = _cfg(stage1={"epochs": 1, "batch_size": 8, "swa_epochs": 2, "swa_lr": 0.01})
    data = train_mod.load_data(cfg, None)
    scores, seen = iter([0.5, 0.3, 0.9]), []  # stage 1's epoch, then the two averages: the second is best

    def scripted(model: Any, split: Any, factors: Any, bs: int) -> float:
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scores)

    monkeypatch.setattr(train_mod, "_mean_acc", scripted)
    hr = train_mod.train_stage1(cfg, data, tmp_path, resume=False)
    assert hr is not None and len(seen) == 3
    saved = _fer_state(hr)
    assert all(torch.equal(saved["fer." + k], v) for k, v in seen[2].items())
    assert checkpoint.load(hr, kind="model")["meta"]["swa"] == {"epochs": 2, "lr": 0.01}


def test_stage1_trains_the_trunk_as_well_as_the_head(tmp_path: Path) -> None:
    """Mutant: the optimiser over the head's parameters alone."""
    from trainer.models import InferenceModel

    cfg = _cfg(stage1={"epochs": 1, "batch_size": 8})
    hr = train_mod.train_stage1(cfg, train_mod.load_data(cfg, None), tmp_path, resume=False)
    assert hr is not None
    torch.manual_seed(cfg.seed)
    init = InferenceModel(train_mod.spec_for(cfg, "hr")).fer.state_dict()
    saved = _fer_state(hr)
    convs = [k for k in init if k.startswith("trunk.") and k.endswith("weight") and init[k].ndim == 4]
    assert convs and all(not torch.equal(saved["fer." + k], init[k]) for k in convs)


# -- stage 2 ----------------------------------------------------------------------------------------------------------


def _stage2(hr_run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scores: list[float] | None = None
            ) -> tuple[Path, list[dict[str, Any]], list[dict[str, Any]], list[Any]]:
    """Stage 2 (1 pre-training epoch, 2 GAN epochs) from the shared HR model, with spies on each GAN step, on the
    step's optimisers and on G's validation scores (scripted when ``scores``)."""
    cfg0, data, hr = hr_run
    d = cfg0.to_dict()
    d["stage2"] = {**d["stage2"], "pretrain_epochs": 1, "epochs": 2, "batch_size": 8}
    d["degrade"] = {**d["degrade"], "factors": [1, 2, 3, 4, 6, 8]}
    cfg = config.from_dict(d)
    steps: list[dict[str, Any]] = []
    vals: list[dict[str, Any]] = []
    inits: list[Any] = []
    real_call, real_init, real_score = (train_mod.Stage2Step.__call__, train_mod.Stage2Step.__init__,
                                        train_mod._feature_val_score)

    def init(self: Any, head: Any, g: Any, dnet: Any, loss_cfg: Any, opt_g: Any, opt_d: Any) -> None:
        inits.append((g, dnet, opt_g, opt_d))
        real_init(self, head, g, dnet, loss_cfg, opt_g, opt_d)

    def call(self: Any, f_lr: torch.Tensor, f_hr: torch.Tensor, labels: torch.Tensor, shard: Any = None) -> Any:
        steps.append({"f_lr": f_lr.clone(), "f_hr": f_hr.clone(), "labels": labels.clone(),
                      "head_training": any(m.training for m in self.head.modules() if m is not self.head)})
        return real_call(self, f_lr, f_hr, labels, shard)

    def score(head: Any, g: Any, feats: Any, labels: Any, factors: Any) -> float:
        vals.append({"g": {k: v.clone() for k, v in g.state_dict().items()}, "factors": tuple(factors),
                     "labels": labels})
        real = real_score(head, g, feats, labels, factors)
        return real if scores is None else scores[len(vals) - 1]

    monkeypatch.setattr(train_mod.Stage2Step, "__call__", call)
    monkeypatch.setattr(train_mod.Stage2Step, "__init__", init)
    monkeypatch.setattr(train_mod, "_feature_val_score", score)
    out = train_mod.train_stage2(cfg, data, hr, tmp_path, "fsrfer", cfg.stage2.losses, resume=False)
    assert out is not None
    return out, steps, vals, inits


def test_stage2_batches_pair_each_faces_lr_features_at_its_own_factor_with_its_hr_features(
        hr_run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutants: the HR features taken from the LR ones (or the LR from the HR), one factor for the whole batch,
    the head above G left in training mode (dropout in the re-weighting's answers)."""
    _, data, _ = hr_run
    _, steps, _, _ = _stage2(hr_run, tmp_path, monkeypatch)
    with np.load(tmp_path / "cache" / "train_features.npz") as z:
        feats = {int(k[1:]): z[k] for k in z.files if k.startswith("f")}
    hr_rows = {feats[1][i].tobytes(): i for i in range(len(feats[1]))}
    mixed = 0
    assert steps
    for s in steps:
        assert not s["head_training"]
        factors = []
        for lr_row, hr_row, y in zip(s["f_lr"].numpy(), s["f_hr"].numpy(), s["labels"].numpy()):
            i = hr_rows[hr_row.tobytes()]  # an HR face of the training split (KeyError otherwise)
            assert y == data.train.labels[i]
            at = [f for f in feats if np.array_equal(feats[f][i], lr_row)]
            assert at, "G's input is not this face's features at any factor"
            factors.append(at[0])
        mixed += len(set(factors)) > 1
        assert any(f != 1 for f in factors) or len(factors) < 4
    assert mixed >= len(steps) - 1  # a factor drawn per face, not per batch


def test_stage2_optimisers_each_own_their_network_and_gradients_stay_in_theirs(
        hr_run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: G's optimiser over D's parameters too (G's step then moves D towards G's loss)."""
    _, _, _, inits = _stage2(hr_run, tmp_path, monkeypatch)
    g, d, opt_g, opt_d = inits[-1]

    def ids(params: Any) -> set[int]:
        return {id(p) for p in params}

    assert ids(p for grp in opt_g.param_groups for p in grp["params"]) == ids(g.parameters())
    assert ids(p for grp in opt_d.param_groups for p in grp["params"]) == ids(d.parameters())


def test_stage2_ships_the_g_of_the_best_val_epoch_scored_over_eval_factors(
        hr_run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutants: the last GAN epoch's G saved instead of the best's; G scored at factor 1 alone; the GAN phase's
    history replaced by the pre-training's."""
    cfg, data, _ = hr_run
    out, _, vals, _ = _stage2(hr_run, tmp_path, monkeypatch, scores=[0.5, 0.9, 0.1])  # pre 1, GAN 1, GAN 2
    assert len(vals) == 3
    assert all(v["factors"] == tuple(cfg.eval.factors) and v["labels"] is data.val.labels for v in vals)
    sd = checkpoint.load(out, kind="model")["state_dict"]
    best = vals[1]["g"]
    assert not all(torch.equal(best[k], vals[2]["g"][k]) for k in best)
    assert all(torch.equal(sd["generator." + k], v) for k, v in best.items())
    meta = checkpoint.load(out, kind="model")["meta"]
    assert [h["val_score"] for h in meta["history"]] == [0.9, 0.1] and "d_loss" in meta["history"][0]
    assert [h["val_score"] for h in meta["pretrain_history"]] == [0.5]


def test_feature_val_score_is_the_mean_accuracy_over_the_factors() -> None:
    """Mutant: one factor's accuracy (the last) taken for the score."""
    head = torch.nn.Identity()
    g = torch.nn.Linear(3, 3)
    with torch.no_grad():
        g.weight.copy_(torch.eye(3))
        g.bias.zero_()
    labels = np.array([0, 1, 2, 0])
    right = np.eye(3, dtype=np.float32)[labels]
    wrong = np.eye(3, dtype=np.float32)[(labels + 1) % 3]
    half = np.concatenate([right[:2], wrong[2:]])
    assert train_mod._feature_val_score(head, g, {1: right, 4: half, 8: wrong}, labels, (1, 4, 8)) \
        == pytest.approx(0.5)


def _gan_step(cfg: config.LossConfig) -> tuple[Any, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    dim = 16
    head = Head(dim, 8, 7).eval()
    g, d = FeatureGenerator(dim, blocks=1, growth=8).eval(), FeatureCritic(dim, 16, 2)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.1 * torch.randn_like(p))
    opt_g, opt_d = torch.optim.SGD(g.parameters(), 0.05), torch.optim.SGD(d.parameters(), 0.05)
    return (train_mod.Stage2Step(head, g, d, cfg, opt_g, opt_d),
            (torch.randn(8, dim), torch.randn(8, dim), torch.randint(0, 7, (8,))))


def test_each_gan_step_steps_on_its_own_losses_gradients_alone() -> None:
    """Mutants: the critic's or the generator's gradients not cleared before its backward: each step then also
    follows the earlier steps' gradients, and the critic the generator loss's gradient through D."""
    cfg = config.LossConfig(adversarial=1.0, div_k=0.0)  # no penalty: the critic's loss is deterministic
    step, batch = _gan_step(cfg)
    bad: list[str] = []
    for name, opt, net in (("d", step.opt_d, step.d), ("g", step.opt_g, step.g)):
        real = opt.step

        def checked(*a: Any, _real: Any = real, _name: str = name, _net: Any = net, **k: Any) -> Any:
            params = [p for p in _net.parameters()]
            if _name == "d":
                loss = step.critic_loss(*batch)
            else:
                loss = step.generator_loss(*batch)[0]
            want = torch.autograd.grad(loss, params, allow_unused=True)
            for p, w in zip(params, want):
                w = torch.zeros_like(p) if w is None else w
                if not torch.allclose(p.grad if p.grad is not None else torch.zeros_like(p), w, atol=1e-6):
                    bad.append(_name)
                    break
            return _real(*a, **k)
        opt.step = checked
    for _ in range(3):
        step(*batch)
    assert bad == []


# -- baselines ---------------------------------------------------------------------------------------------------------


def test_lr_finetune_trains_on_lr_faces_and_scores_over_eval_factors(hr_run: Any, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutants: the LR-fine-tuned baseline trained on the HR faces; its epochs scored at factor 1 alone."""
    cfg0, data, hr = hr_run
    cfg = config.from_dict({**cfg0.to_dict(), "stage1": {**cfg0.to_dict()["stage1"], "augment": False},
                            "degrade": {**cfg0.to_dict()["degrade"], "factors": [4]},
                            "baselines": {**cfg0.to_dict()["baselines"], "lr_finetune_epochs": 1}})
    inputs: list[np.ndarray] = []
    real_tensor, real_acc = train_mod._tensor, train_mod._mean_acc
    factors_seen: list[tuple[int, ...]] = []

    def tensor(pixels: np.ndarray) -> torch.Tensor:
        inputs.append(np.array(pixels, dtype=np.float32))
        return real_tensor(pixels)

    def acc(model: Any, split: Any, factors: Any, bs: int) -> float:
        factors_seen.append(tuple(factors))
        return real_acc(model, split, factors, bs)

    monkeypatch.setattr(train_mod, "_tensor", tensor)
    monkeypatch.setattr(train_mod, "_mean_acc", acc)
    assert train_mod.train_lr_finetune(cfg, data, hr, tmp_path, resume=False) is not None
    hr_faces = {data.train.images[i].astype(np.float32).tobytes() for i in range(len(data.train.labels))}
    rows = [r for a in inputs for r in a]
    assert rows and not any(r.tobytes() in hr_faces for r in rows)
    assert factors_seen == [tuple(cfg.eval.factors)]


def test_image_sr_leaves_the_hr_model_under_it_as_it_was(hr_run: Any, tmp_path: Path) -> None:
    """Mutants: the HR model under the SR network trained with it, or left in training mode (its BatchNorm
    statistics then drift while the SR model is scored)."""
    cfg0, data, hr = hr_run
    cfg = config.from_dict({**cfg0.to_dict(), "baselines": {**cfg0.to_dict()["baselines"], "image_sr_epochs": 1}})
    out = train_mod.train_image_sr(cfg, data, hr, tmp_path, resume=False)
    assert out is not None
    before, after = _fer_state(hr), _fer_state(out)
    assert before.keys() == after.keys()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


# -- what the evaluation writes ------------------------------------------------------------------------------------


def test_evaluate_all_writes_results_json_for_the_split_it_scored(hr_run: Any, tmp_path: Path) -> None:
    """Mutants: results.json named after its protocol; each result's ``split`` key always "val"."""
    import json
    import shutil

    cfg, data, hr = hr_run
    (tmp_path / "models").mkdir()
    shutil.copy(hr, tmp_path / "models" / "hr.pt")
    res = train_mod.evaluate_all(cfg, data, tmp_path, split="test")
    written = json.loads((tmp_path / "eval" / "test" / "results.json").read_text())
    assert set(written) == {"hr"} == set(res)
    assert written["hr"]["split"] == "test" and written["hr"]["method"] == "hr"
    assert written["hr"]["checkpoint"] == "hr.pt"
    assert sorted(written["hr"]["factors"], key=int) == [str(f) for f in sorted(cfg.eval.factors)]
