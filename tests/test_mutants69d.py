"""Tests that kill hand-made mutants (round 69, task K69d) of the trainer's epoch runner, its multi-process helpers
and the stage-2 losses: trainer/runner.py (a third pass: the cosine schedule's warm-up hand-over and its floor past
the last epoch, settings messages, nested defaults, sections and starting models a state lacks, a runner without
settings, ties keeping the earlier epoch, a runner called again, a fresh run over an old state, statistics dicts
reused by the epoch function, each stage's own random stream), trainer/distributed.py (a third pass: an NCCL group
with a LOCAL_RANK past the GPUs, a group already joined, barriers and DDP that name the GPU, the synchronised
BatchNorm's eps, momentum and cumulative average, the objects the conversion keeps, its gradients over the global
batch, plain BatchNorm in one process or when not asked to synchronise) and trainer/losses.py (the WGAN-div penalty's
gradient into the critic and its draws in the inputs' dtype, the contrast's normalised embeddings, the refusals of
attention transfer and the contrast, the documented defaults). Toy modules, scripted validation scores, simulated
ranks and recorded collectives only: no process group is started."""
from __future__ import annotations

import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.needs("torch")
torch = pytest.importorskip("torch")

from fsrfer_edge.errors import ConfigError  # noqa: E402
from trainer import distributed, losses  # noqa: E402
from trainer.runner import EpochRunner, cosine_lr, differences, listed, time_is_up  # noqa: E402


# -- runner: the schedule and the settings messages -------------------------------------------------------------

def test_cosine_warmup_hands_over_at_its_end_is_capped_at_base_and_the_rate_stays_zero_after_the_last_epoch() -> None:
    # R1 (t <= warmup): at t == warmup_epochs the cosine has taken over
    assert cosine_lr(1.0, 1, 0, 10, 4, warmup_epochs=1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    # R2 (no min): the last warm-up step of a warm-up of half an epoch in 3 steps ends past it: capped at base
    assert cosine_lr(1.0, 0, 1, 3, 4, warmup_epochs=0.5) == 1.0
    # R3 (no min(t, epochs)): past the last epoch the rate stays 0 instead of rising again
    assert cosine_lr(1.0, 5, 0, 10, 4) == pytest.approx(0.0, abs=1e-12)


def test_differences_name_keys_only_one_side_has_by_their_dotted_path() -> None:
    # R4 (keys of both sides only): a setting only now has is a difference too
    got = differences({"s": {"a": 1}}, {"s": {"a": 1, "b": 2}, "t": 3})
    assert got == ["s.b: None in the model, 2 now", "t: None in the model, 3 now"]


def test_listed_shows_five_differences_and_marks_only_more() -> None:
    # R8 (four shown), R9 (">= 5": "..." after exactly five)
    diffs = [f"k{i}" for i in range(6)]
    assert listed(diffs[:5]) == "k0; k1; k2; k3; k4"
    assert listed(diffs) == "k0; k1; k2; k3; k4; ..."


def test_time_is_up_only_once_the_deadline_has_passed() -> None:
    # R10 (deadline compared the wrong way)
    assert not time_is_up(None, "x")
    assert not time_is_up(time.monotonic() + 3600, "x")
    assert time_is_up(time.monotonic() - 1, "x")


# -- runner: what a resume compares ----------------------------------------------------------------------------

def _state(tmp_path: Path, **kw: Any) -> Path:
    """A state of one finished epoch of a toy stage, written with ``kw`` (settings, starts_from)."""
    r = EpochRunner("toy", tmp_path / "toy.pt", {"lin": torch.nn.Linear(2, 1)}, {}, epochs=1, seed=0, **kw)
    r.run(lambda e, rng: {"loss": 1.0}, lambda: 0.5)
    return tmp_path / "toy.pt"


def _check(path: Path, **kw: Any) -> dict[str, Any]:
    return EpochRunner("toy", path, {"lin": torch.nn.Linear(2, 1)}, {}, epochs=2, seed=0, **kw).check_settings()


def test_a_nested_setting_added_since_the_state_was_written_is_compared_as_its_default(tmp_path: Path) -> None:
    # R7 (defaults only at the top level), R12 (defaults ignored)
    path = _state(tmp_path, settings={"stage2": {"lr": 0.1}})
    defaults = {"stage2": {"lr": 0.2, "new": 5}}
    assert _check(path, settings={"stage2": {"lr": 0.1, "new": 5}}, defaults=defaults)["epoch"] == 1
    with pytest.raises(ConfigError, match=r"stage2\.new: 5 in the stopped stage, 6 now"):
        _check(path, settings={"stage2": {"lr": 0.1, "new": 6}}, defaults=defaults)


def test_a_settings_section_the_state_lacks_is_not_compared(tmp_path: Path) -> None:
    # R11 (every section of today's settings compared): an "eval" section added since does not block a resume
    path = _state(tmp_path, settings={"stage1": {"lr": 0.1}})
    assert _check(path, settings={"stage1": {"lr": 0.1}, "eval": {"factors": [2]}})["epoch"] == 1
    with pytest.raises(ConfigError, match=r"stage1\.lr: 0\.1 in the stopped stage, 0\.3 now"):
        _check(path, settings={"stage1": {"lr": 0.3}, "eval": {"factors": [2]}})


def test_a_runner_without_settings_resumes_a_state_that_has_them(tmp_path: Path) -> None:
    # R27 (saved settings compared with None)
    path = _state(tmp_path, settings={"stage1": {"lr": 0.1}})
    assert _check(path)["epoch"] == 1


def test_starts_from_compares_only_the_models_both_name_and_refuses_another_digest(tmp_path: Path) -> None:
    # R13 (a model the state has no record of refused), R28 (a runner without starts_from), R14 (record not saved)
    path = _state(tmp_path, starts_from={"HR model": "a" * 64})
    assert _check(path, starts_from={"HR model": "a" * 64, "teacher": "b" * 64})["epoch"] == 1
    assert _check(path)["epoch"] == 1
    with pytest.raises(ConfigError, match=r"started from another HR model \(weights SHA-256 aaaaaaaaaaaa\.\.\. then, "
                                          r"cccccccccccc\.\.\. now"):
        _check(path, starts_from={"HR model": "c" * 64})


# -- runner: the loop ------------------------------------------------------------------------------------------

def test_a_tie_on_validation_keeps_the_earlier_epochs_weights(tmp_path: Path) -> None:
    # R20 (score >= best): the later of two equal epochs became the best
    lin = torch.nn.Linear(2, 1)
    scores = iter([0.5, 0.5, 0.2])

    def train_epoch(e: int, rng: np.random.Generator) -> dict[str, float]:
        with torch.no_grad():
            lin.bias.fill_(float(e + 1))  # the bias says which epoch the weights are from
        return {}

    runner = EpochRunner("toy", tmp_path / "t.pt", {"lin": lin}, {}, epochs=3, seed=0)
    assert runner.run(train_epoch, lambda: next(scores))
    runner.load_best()
    assert float(lin.bias.detach()) == 1.0 and runner.best_score == 0.5


def test_a_runner_called_again_counts_only_that_calls_epochs_for_stop_after(tmp_path: Path) -> None:
    # R16 (epochs_run not reset per call): the second call stopped after one epoch
    runner = EpochRunner("toy", tmp_path / "t.pt", {"lin": torch.nn.Linear(2, 1)}, {}, epochs=4, seed=0)
    assert runner.run(lambda e, rng: {}, lambda: 0.0, stop_after=2) is False
    assert runner.run(lambda e, rng: {}, lambda: 0.0, stop_after=2) is True
    assert runner.epoch == 4 and runner.epochs_run == 2


def test_a_run_without_resume_starts_again_over_an_old_state(tmp_path: Path) -> None:
    # R26 (resume flag ignored): a fresh run silently carried on (here: found nothing to do) from the old state
    lin = torch.nn.Linear(2, 1)
    EpochRunner("toy", tmp_path / "t.pt", {"lin": lin}, {}, epochs=2, seed=0).run(lambda e, rng: {}, lambda: 0.0)
    trained: list[int] = []
    runner = EpochRunner("toy", tmp_path / "t.pt", {"lin": lin}, {}, epochs=2, seed=0)
    runner.run(lambda e, rng: trained.append(e) or {}, lambda: 0.0)
    assert trained == [0, 1] and [h["epoch"] for h in runner.history] == [1, 2]


def test_each_epochs_history_is_its_own_even_when_train_epoch_reuses_one_dict(tmp_path: Path) -> None:
    # R32 (the returned dict kept as it is): every history entry became the last epoch's
    shared: dict[str, float] = {}

    def train_epoch(e: int, rng: np.random.Generator) -> dict[str, float]:
        shared["loss"] = float(e)
        return shared

    runner = EpochRunner("toy", tmp_path / "t.pt", {"lin": torch.nn.Linear(2, 1)}, {}, epochs=2, seed=0)
    runner.run(train_epoch, lambda: 0.0)
    assert [(h["loss"], h["epoch"]) for h in runner.history] == [(0.0, 1), (1.0, 2)]


def test_each_stage_draws_its_own_epoch_stream_from_one_seed(tmp_path: Path) -> None:
    # R24 (the stage's name left out of the seed): stage 2's pre-training and GAN phase drew the same batches
    def draws(name: str) -> np.ndarray:
        return EpochRunner(name, tmp_path / "t.pt", {}, {}, epochs=1, seed=3).epoch_rng(0).random(4)

    assert np.array_equal(draws("fsrfer.gan"), draws("fsrfer.gan"))
    assert not np.array_equal(draws("fsrfer.gan"), draws("fsrfer.pretrain"))


# -- distributed: joining, barriers (recorded, no process group) ------------------------------------------------

@pytest.fixture
def nccl_env(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """torchrun's environment for rank 1 of 2 with two visible GPUs; init_process_group and set_device recorded."""
    calls: list[Any] = []
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend, **kw: calls.append(backend))
    monkeypatch.setattr(distributed, "_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.append(("set_device", i)))
    monkeypatch.setattr(torch.distributed, "is_nccl_available", lambda: True)
    for k, v in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(k, v)
    return calls


def test_a_local_rank_past_the_visible_gpus_is_refused(nccl_env: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # D3 (local_rank > count): LOCAL_RANK equal to the GPU count set a device that does not exist
    assert distributed.init_from_env("cuda") == distributed.DistContext(1, 2, 1, "nccl")
    assert nccl_env == [("set_device", 1), "nccl"]
    nccl_env.clear()
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(ConfigError, match="LOCAL_RANK=2 but only 2 GPUs"):
        distributed.init_from_env("cuda")
    assert nccl_env == []


def test_a_group_already_joined_is_not_joined_again_and_its_context_has_the_local_rank(
        nccl_env: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # D4 (init_process_group called again), D19 (context's local rank read as 0)
    monkeypatch.setattr(distributed, "_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_backend", lambda *a: "gloo")
    assert distributed.init_from_env("cpu") == distributed.DistContext(1, 2, 1, "gloo")
    assert nccl_env == []


def test_an_nccl_barrier_names_this_ranks_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # D6 (barrier without device_ids under NCCL)
    seen: list[Any] = []
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "_nccl", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    monkeypatch.setattr(torch.distributed, "barrier", lambda **kw: seen.append(kw))
    distributed.barrier()
    assert seen == [{"device_ids": [3]}]


# -- distributed: synchronised BatchNorm (simulated ranks) -----------------------------------------------------

def _two_ranks(monkeypatch: pytest.MonkeyPatch, reduce: Any = None) -> None:
    monkeypatch.setattr(distributed, "rank", lambda: 0)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", reduce or (lambda t: t.mul_(2)))  # two equal shards


def test_conversion_keeps_eps_momentum_and_the_parameter_and_buffer_objects() -> None:
    # D16 (eps and momentum reset), D21 (new weight and bias: an optimiser built before trains stale ones),
    # D22 (a new num_batches_tracked)
    bn = torch.nn.BatchNorm2d(3, eps=0.5, momentum=0.3)
    new = distributed._convert_batchnorm(torch.nn.Sequential(bn), False)[0]
    assert isinstance(new, distributed.GlooSyncBatchNorm)
    assert (new.eps, new.momentum) == (0.5, 0.3)
    assert new.weight is bn.weight and new.bias is bn.bias and new.num_batches_tracked is bn.num_batches_tracked


@pytest.mark.parametrize("eps, momentum", [(0.5, None), (1e-5, 0.3)])
def test_synced_batchnorm_matches_batchnorm_over_the_global_batch_with_its_eps_and_momentum(
        monkeypatch: pytest.MonkeyPatch, eps: float, momentum: float | None) -> None:
    # D15 (eps left out of the normalisation), D13 (momentum None not a cumulative average)
    torch.manual_seed(0)
    sync = distributed.GlooSyncBatchNorm(2, eps=eps, momentum=momentum).train()
    plain = torch.nn.BatchNorm2d(2, eps=eps, momentum=momentum).train()
    _two_ranks(monkeypatch)
    for _ in range(3):
        x = torch.randn(3, 2, 2, 2)
        torch.testing.assert_close(sync(x), plain(torch.cat([x, x]))[:3])
    torch.testing.assert_close(sync.running_mean, plain.running_mean)
    torch.testing.assert_close(sync.running_var, plain.running_var)


def test_synced_batchnorm_gradients_are_those_of_batchnorm_over_the_global_batch(monkeypatch: pytest.MonkeyPatch
                                                                                  ) -> None:
    # D24 (no gradient through the batch mean), D25 (the statistics' gradients not summed over ranks)
    torch.manual_seed(0)
    x, c = torch.randn(3, 2, 2, 2), torch.randn(3, 2, 2, 2)
    _two_ranks(monkeypatch)
    xs = x.clone().requires_grad_(True)
    (distributed.GlooSyncBatchNorm(2).train()(xs) * c).sum().backward()
    xp = torch.cat([x, x]).requires_grad_(True)
    (torch.nn.BatchNorm2d(2).train()(xp) * torch.cat([c, c])).sum().backward()
    assert xs.grad is not None and xp.grad is not None
    torch.testing.assert_close(xs.grad, xp.grad[:3])


def test_synced_batchnorm_in_one_process_is_plain_batchnorm(monkeypatch: pytest.MonkeyPatch) -> None:
    # D20 (the synchronised path taken in one process: a collective without a group)
    def no_collective(t: Any) -> None:
        raise AssertionError("all_reduce called in one process")

    monkeypatch.setattr(torch.distributed, "all_reduce", no_collective)
    torch.manual_seed(0)
    x = torch.randn(4, 2, 3, 3)
    torch.testing.assert_close(distributed.GlooSyncBatchNorm(2).train()(x), torch.nn.BatchNorm2d(2).train()(x))


def test_wrap_ddp_without_sync_batchnorm_keeps_plain_batchnorm(monkeypatch: pytest.MonkeyPatch) -> None:
    # D18 (BatchNorm converted whatever sync_batchnorm says)
    import torch.nn.parallel

    wrapped: list[Any] = []
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel",
                        lambda m, device_ids: wrapped.append((m, device_ids)) or m)
    for sync, kind in ((False, torch.nn.BatchNorm2d), (True, distributed.GlooSyncBatchNorm)):
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
        assert distributed.wrap_ddp(net, sync_batchnorm=sync) is net
        assert type(net[1]) is kind
    assert [d for _, d in wrapped] == [None, None]


def test_wrap_ddp_on_a_gpu_names_this_ranks_device_and_uses_torchs_sync_batchnorm(monkeypatch: pytest.MonkeyPatch
                                                                                     ) -> None:
    # D23 (no device_ids for a module on a GPU: DDP then guesses, or spreads it over every visible GPU)
    import torch.nn.parallel

    class OnGpu(torch.nn.Sequential):  # parameters that say they are on a GPU (none is needed here)
        def parameters(self, recurse: bool = True) -> Any:
            yield SimpleNamespace(is_cuda=True)

    wrapped: list[Any] = []
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel",
                        lambda m, device_ids: wrapped.append(device_ids) or m)
    net = OnGpu(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    out = distributed.wrap_ddp(net)
    assert wrapped == [[1]]
    assert type(out[1]) is torch.nn.SyncBatchNorm


# -- losses ----------------------------------------------------------------------------------------------------

def test_wgan_div_penalty_sends_gradient_into_the_critics_weights() -> None:
    # L4 (create_graph=False): the penalty was a constant for the critic's optimiser
    critic = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    real, fake = torch.randn(5, 4), torch.randn(5, 4)
    pen = losses.wgan_div_penalty(critic, real, fake, torch.ones(5), generator=torch.Generator().manual_seed(0))
    pen.backward()
    weights = [critic[0].weight, critic[0].bias, critic[2].weight]  # the last bias does not move D's gradient
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in weights)


def test_wgan_div_penalty_draws_its_interpolation_weights_in_the_inputs_dtype() -> None:
    # L5 (weights drawn in float32 for float64 features): other draws than a float64 run documents
    critic = lambda x: 0.5 * (x ** 2).sum(1)  # noqa: E731  gradient x: the penalty reads the interpolate
    real, fake, w = torch.ones(3, 2, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.float64), torch.ones(3)
    a = torch.rand(3, 1, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    want = 2.0 * ((a[:, 0] * math.sqrt(2.0)) ** 6).mean()
    got = losses.wgan_div_penalty(critic, real, fake, w, generator=torch.Generator().manual_seed(4))
    assert got.dtype == torch.float64
    torch.testing.assert_close(got.detach(), want)


def test_cross_resolution_nce_compares_directions_not_lengths() -> None:
    # L13 (the LR embeddings not normalised): a longer embedding made its own match look surer
    torch.manual_seed(0)
    e, hr = torch.randn(4, 6), torch.randn(4, 6)
    torch.testing.assert_close(losses.cross_resolution_nce(3.0 * e, hr, 0.5), losses.cross_resolution_nce(e, hr, 0.5))


def test_attention_transfer_and_the_contrast_refuse_what_they_cannot_compare() -> None:
    # L1 (no maps: a loss of int 0 instead of an error), L3 (3-D embeddings taken)
    with pytest.raises(ValueError, match="0 maps, 0 targets"):
        losses.attention_transfer([], [])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        losses.cross_resolution_nce(torch.ones(2, 3, 4), torch.ones(2, 3, 4), 0.1)


def test_loss_defaults_are_the_documented_ones() -> None:
    # L10 (distillation's T), L11 (the flip teacher's T), L16 (WGAN-div p): k=2, p=6 and T=2 when not given
    torch.manual_seed(0)
    s, t = torch.randn(3, 7), torch.randn(3, 7)
    torch.testing.assert_close(losses.distillation(s, t), losses.distillation(s, t, 2.0))
    torch.testing.assert_close(losses.flip_teacher_logits(s, t), losses.flip_teacher_logits(s, t, 2.0))
    real, fake, w = torch.randn(4, 3), torch.randn(4, 3), torch.ones(4)
    critic = lambda x: (x ** 2).sum(1)  # noqa: E731
    got = losses.wgan_div_penalty(critic, real, fake, w, generator=torch.Generator().manual_seed(1))
    want = losses.wgan_div_penalty(critic, real, fake, w, 2.0, 6.0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, want)


def test_the_critic_loss_weights_the_real_scores_as_well_as_the_generated_ones() -> None:
    # L21 (the HR features' scores unweighted): the re-weighting reached only half of the critic's loss
    d_real, d_fake, w = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0]), torch.tensor([2.0, 0.25])
    torch.testing.assert_close(losses.critic_loss(d_real, d_fake, w), torch.tensor((2.0 - 0.5) / 2 - (1.0 + 0.75) / 2))


def test_feature_mse_sends_gradient_into_the_generated_features() -> None:
    # L20 (the error detached): G got no gradient from the reconstruction and head terms
    y, t = torch.tensor([[1.0, 3.0]], requires_grad=True), torch.tensor([[0.0, 1.0]])
    losses.feature_mse(y, t).sum().backward()
    assert y.grad is not None
    torch.testing.assert_close(y.grad, torch.tensor([[1.0, 2.0]]))  # d/dy mean((y - t)^2) = (y - t) for 2 dims
