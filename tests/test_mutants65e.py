"""Tests that kill hand-made mutants the rest of the suite let through (round 65e: resuming a killed training run,
and its schedule).

Each test checks a behaviour a user depends on without noticing at once when it broke: that a resumed run keeps the
history, the best-so-far score and the best weights of the epochs before the kill; that a checkpoint keeps what
``save``'s options promise (deflate without byte planes, byte planes for every float width, state dicts with their
``_metadata`` when tensors come off another device); that the HR model's identity covers its BatchNorm statistics;
and that the time budget counts minutes and lets each call make progress. The runner tests use a toy module and a
scripted validation score, so they run in well under a second.
"""
from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

from trainer import checkpoint, config  # noqa: E402
from trainer.runner import EpochRunner, TrainingDiverged  # noqa: E402
from trainer.train import load_data, run_pipeline, train_stage1  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

def _cfg(**over: Any) -> config.TrainConfig:
    d = {**config.load(REPO / "configs" / "tiny.yaml").to_dict(), "device": "cpu"}
    over = {"data": {"synthetic": 80}, **over}
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) else v
    return config.from_dict(d)


# -- EpochRunner: what a resume restores -------------------------------------------------------------------------

SCORES = [0.5, 0.9, 0.3, 0.4]  # the val score after each epoch: the best is epoch 2, before the kill below


def _toy_run(state: Path, stop_after: int | None = None, resume: bool = False
             ) -> tuple[EpochRunner, torch.nn.Linear, dict[int, dict[str, torch.Tensor]]]:
    """A 4-epoch run of a Linear layer under SGD with momentum; returns the runner, the layer and the weights after
    each epoch (as evaluated)."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    runner = EpochRunner("toy", state, {"lin": lin}, {"opt": opt}, epochs=len(SCORES), seed=1)
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def train_epoch(epoch: int, rng: np.random.Generator) -> dict[str, float]:
        x = torch.from_numpy(rng.normal(size=(4, 3)).astype(np.float32))
        loss = lin(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    def evaluate() -> float:
        seen[runner.epoch + 1] = {k: v.clone() for k, v in lin.state_dict().items()}
        return SCORES[runner.epoch]

    runner.run(train_epoch, evaluate, resume=resume, stop_after=stop_after)
    return runner, lin, seen


def test_a_resumed_run_keeps_the_history_and_the_best_epoch_from_before_the_kill(tmp_path: Path) -> None:
    """Mutants: the history, or the best-so-far score, not restored on resume (or only the last epoch's history
    saved): the resumed run's model then records half a history, or ships epoch 4's weights (score 0.4) over epoch
    2's (0.9) because 0.3 > -inf made epoch 3 "the best"."""
    full, full_lin, full_seen = _toy_run(tmp_path / "full.pt")
    assert _toy_run(tmp_path / "cut.pt", stop_after=2)[0].epoch == 2
    resumed, lin, seen = _toy_run(tmp_path / "cut.pt", resume=True)
    assert [h["val_score"] for h in resumed.history] == SCORES
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.best_score == full.best_score == 0.9
    assert torch.equal(seen[4]["weight"], full_seen[4]["weight"])  # the same run: optimiser and randomness restored
    resumed.load_best()
    assert all(torch.equal(v, full_seen[2][k]) for k, v in lin.state_dict().items())
    st = checkpoint.load(tmp_path / "cut.pt", kind="state")
    assert len(st["history"]) == 4 and st["best_score"] == 0.9


def test_the_best_weights_are_a_copy_not_the_weights_that_train_on(tmp_path: Path) -> None:
    """Mutant: best_state kept as the live state dict (no copy): on the CPU its tensors are the module's own, so
    load_best() put back the last epoch's weights, and the state saved them as the best."""
    runner, lin, seen = _toy_run(tmp_path / "s.pt")
    assert not torch.equal(seen[2]["weight"], seen[4]["weight"])
    st = checkpoint.load(tmp_path / "s.pt", kind="state")
    assert torch.equal(st["best_state"]["lin"]["weight"], seen[2]["weight"])
    runner.load_best()
    assert torch.equal(lin.weight.detach(), seen[2]["weight"])


def test_a_non_finite_weight_in_any_tensor_of_a_module_stops_the_run(tmp_path: Path) -> None:
    """Mutant: only the first floating tensor of each module looked at: an overflowed bias (or BatchNorm statistic)
    after a finite loss was saved and trained on."""
    lin = torch.nn.Linear(2, 2)

    def epoch(e: int, rng: np.random.Generator) -> dict[str, float]:
        if e == 1:
            with torch.no_grad():
                lin.bias[1] = float("nan")
        return {"loss": 1.0}

    runner = EpochRunner("toy", tmp_path / "toy.pt", {"lin": lin}, {}, epochs=3, seed=0)
    with pytest.raises(TrainingDiverged, match=r"^toy: training diverged in epoch 2 of 3: not finite: weights of lin"):
        runner.run(epoch, lambda: 0.5)
    assert int(checkpoint.load(tmp_path / "toy.pt", kind="state")["epoch"]) == 1


def test_a_resumed_stage1_ends_with_the_last_epochs_weights_of_a_straight_run(tmp_path: Path) -> None:
    """Mutants: the optimiser's momentum not restored on resume, or the epoch's random stream drawn from the epochs
    run in this call (epoch 0's again). The resume test in test_trainer.py compares the best epoch's weights, which
    on its tiny data is often the first epoch, before the kill; the state's last weights show every epoch."""
    cfg = _cfg(stage1={"epochs": 2})
    data = load_data(cfg, None)
    train_stage1(cfg, data, tmp_path / "full", resume=False)
    assert train_stage1(cfg, data, tmp_path / "cut", resume=False, stop_after=1) is None
    assert train_stage1(cfg, data, tmp_path / "cut", resume=True) is not None
    a, b = (checkpoint.load(p / "state" / "stage1.pt", kind="state") for p in (tmp_path / "full", tmp_path / "cut"))
    assert a["epoch"] == b["epoch"] == 2
    assert all(torch.equal(v, b["modules"]["fer"][k]) for k, v in a["modules"]["fer"].items())
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]


# -- checkpoint: what save() promises ----------------------------------------------------------------------------


def test_to_cpu_moves_every_tensor_of_a_mixed_state_dict_and_keeps_its_metadata(monkeypatch: pytest.MonkeyPatch
                                                                                ) -> None:
    """Mutants: a dict left as it was when any (not every) tensor is on the CPU already, so a GPU tensor beside a
    CPU one (an optimiser's step counter) reached the file; a state dict copied as a plain dict, without the
    ``_metadata`` (module versions) that load_state_dict reads. A "meta" tensor stands in for a GPU one."""
    real_cpu = torch.Tensor.cpu

    def cpu(self: torch.Tensor) -> torch.Tensor:
        return torch.full(tuple(self.shape), 7.0) if self.device.type == "meta" else real_cpu(self)

    monkeypatch.setattr(torch.Tensor, "cpu", cpu)
    sd = torch.nn.BatchNorm1d(2).state_dict()
    sd["on_gpu"] = torch.empty(2, device="meta")
    out = checkpoint.to_cpu({"modules": sd, "steps": [torch.ones(1), torch.empty(1, device="meta")]})
    moved = out["modules"]
    assert isinstance(moved, collections.OrderedDict) and moved is not sd
    assert all(v.device.type == "cpu" for v in moved.values())
    assert torch.equal(moved["on_gpu"], torch.full((2,), 7.0)) and moved["running_mean"] is sd["running_mean"]
    assert getattr(moved, "_metadata", None) == getattr(sd, "_metadata")
    assert [t.device.type for t in out["steps"]] == ["cpu", "cpu"]
    assert sd["on_gpu"].device.type == "meta"  # the caller's dict is left alone


def test_compress_without_byte_planes_only_deflates(tmp_path: Path) -> None:
    """Mutant: byte_planes=False ignored (planes written whenever compress): a bare torch.load then sees planes
    instead of tensors, and the file claims version 2, which an older trainer refuses."""
    import zipfile

    tensors = {"w": torch.randn(4, 5), "h": torch.randn(3).half()}
    path = tmp_path / "deflated.pt"
    checkpoint.save(path, {"kind": "state", "t": tensors}, compress=True, byte_planes=False)
    with zipfile.ZipFile(path) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
    raw = torch.load(path, weights_only=True)
    assert raw["version"] == 1
    assert all(isinstance(raw["t"][k], torch.Tensor) and torch.equal(raw["t"][k], v) for k, v in tensors.items())
    back = checkpoint.load(path, kind="state")
    assert all(torch.equal(back["t"][k], v) for k, v in tensors.items())


def test_every_float_width_of_two_bytes_or_more_is_stored_as_byte_planes(tmp_path: Path) -> None:
    """Mutant: half and bfloat16 tensors (2 bytes) left interleaved: still lossless, but save()'s promise (every
    float tensor as byte planes, what package_size.py measures) broken for the FP16 weights of a shipped model."""
    tensors = {"f16": torch.randn(6).half(), "bf16": torch.randn(6).bfloat16(), "f64": torch.randn(2).double(),
               "u8": torch.arange(3, dtype=torch.uint8)}
    path = tmp_path / "planes.pt"
    checkpoint.save(path, {"kind": "state", "t": tensors}, compress=True)
    raw = torch.load(path, weights_only=True)["t"]
    for k, size in (("f16", 2), ("bf16", 2), ("f64", 8)):
        assert isinstance(raw[k], dict) and raw[k][checkpoint.BYTE_PLANES] == 1, k
        assert tuple(raw[k]["planes"].shape) == (size, tensors[k].numel()), k
    assert torch.equal(raw["u8"], tensors["u8"])
    back = checkpoint.load(path, kind="state")["t"]
    assert all(back[k].dtype == v.dtype and torch.equal(back[k], v) for k, v in tensors.items())


def test_the_weights_digest_covers_batchnorm_statistics() -> None:
    """Mutant: the digest over parameters alone: an HR model retrained so that only its BatchNorm statistics
    differ (update_bn, weight averaging) passed for the one stage 2 started from."""
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(2)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), bn)
    before = checkpoint.weights_sha256(net)
    twin = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    twin.load_state_dict(net.state_dict())
    assert checkpoint.weights_sha256(twin) == before  # the same network, another object: the same digest
    assert bn.running_mean is not None
    with torch.no_grad():
        bn.running_mean.add_(0.5)
    assert checkpoint.weights_sha256(net) != before


# -- the time budget ---------------------------------------------------------------------------------------------


def test_the_time_budget_is_in_minutes(tmp_path: Path) -> None:
    """Mutant: time_budget_min read as seconds: a run started 10 s ago with a budget of a minute stopped after its
    first epoch instead of finishing."""
    cfg = _cfg(stage1={"epochs": 2})
    data = load_data(cfg, None)
    assert run_pipeline(cfg, data, tmp_path, steps=("stage1",), time_budget_min=1.0, started=time.monotonic() - 10)
    assert checkpoint.load(tmp_path / "state" / "stage1.pt", kind="state")["epoch"] == 2


def test_a_call_whose_budget_is_spent_before_it_starts_still_trains_an_epoch(tmp_path: Path) -> None:
    """Mutant: the budget checked before the first model of a call too: a call that starts past its budget (reading
    the data took it all) trained nothing, so --resume with that budget never got anywhere."""
    cfg = _cfg(stage1={"epochs": 2})
    data = load_data(cfg, None)
    past = time.monotonic() - 120  # the budget of a minute was spent before training began
    assert not run_pipeline(cfg, data, tmp_path, steps=("stage1",), time_budget_min=1.0, started=past)
    assert checkpoint.load(tmp_path / "state" / "stage1.pt", kind="state")["epoch"] == 1
    assert run_pipeline(cfg, data, tmp_path, resume=True, steps=("stage1",), time_budget_min=1.0, started=past)
    assert checkpoint.load(tmp_path / "state" / "stage1.pt", kind="state")["epoch"] == 2


def test_weight_averaging_starts_on_resume_when_stage1_finished_in_an_earlier_call(tmp_path: Path) -> None:
    """Mutant: the budget checked before stage 1's weight-averaging epochs even when stage 1 trained nothing in this
    call: once stage 1 ended past the budget, every later call with a budget stopped there, and SWA never started."""
    cfg = _cfg(stage1={"epochs": 1, "swa_epochs": 1, "swa_lr": 0.01})
    data = load_data(cfg, None)
    past = time.monotonic() - 1.0
    assert train_stage1(cfg, data, tmp_path, resume=False, deadline=past) is None  # stage 1 ended past the budget
    assert not (tmp_path / "state" / "stage1_swa.pt").exists()
    path = train_stage1(cfg, data, tmp_path, resume=True, deadline=past)  # the next call: SWA trains its epoch
    assert path is not None and checkpoint.load(path, kind="model")["meta"]["swa"]["epochs"] == 1


def test_the_gan_phase_starts_on_resume_when_pre_training_finished_in_an_earlier_call(tmp_path: Path) -> None:
    """Mutant: the budget checked before stage 2's GAN phase even when pre-training trained nothing in this call:
    once pre-training ended past the budget, every later call with a budget stopped there."""
    from trainer.train import train_stage2

    cfg = _cfg(stage1={"epochs": 0}, degrade={"factors": [1, 4]}, eval={"factors": [1, 4]},
               stage2={"pretrain_epochs": 1, "epochs": 1, "ablations": []})
    data = load_data(cfg, None)
    hr = train_stage1(cfg, data, tmp_path, resume=False)  # an untrained HR model is enough here
    assert hr is not None
    past = time.monotonic() - 1.0
    assert train_stage2(cfg, data, hr, tmp_path, "fsrfer", cfg.stage2.losses, False, deadline=past) is None
    assert not (tmp_path / "state" / "fsrfer.gan.pt").exists()  # pre-training ended past the budget
    path = train_stage2(cfg, data, hr, tmp_path, "fsrfer", cfg.stage2.losses, True, deadline=past)
    assert path is not None and checkpoint.load(tmp_path / "state" / "fsrfer.gan.pt", kind="state")["epoch"] == 1
