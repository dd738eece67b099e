"""A diverged training (non-finite loss or weights, e.g. a learning rate far too high) stops at the end of the
epoch with one clear error, before that epoch's state or any model is written."""
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from trainer import checkpoint, config  # noqa: E402
from trainer.cli import train_main  # noqa: E402
from trainer.runner import EpochRunner, TrainingDiverged  # noqa: E402
from trainer.train import load_data, train_image_sr, train_lr_finetune, train_stage1, train_stage2  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def tiny_cfg(**over):
    d = {**config.load(REPO / "configs" / "tiny.yaml").to_dict(), "device": "cpu"}
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) else v
    return config.from_dict(d)


def _finite(state_dict):
    return all(bool(torch.isfinite(t).all()) for t in state_dict.values() if t.is_floating_point())


def test_cli_stage1_with_a_huge_rate_stops_in_one_line_and_keeps_the_last_good_epoch(tmp_path, capsys):
    text = (REPO / "configs" / "tiny.yaml").read_text()
    text = text.replace("synthetic: 1000", "synthetic: 200").replace("epochs: 25", "epochs: 3")
    cfg_path = tmp_path / "diverges.yaml"
    cfg_path.write_text(text.replace("lr: 0.05", "lr: 1000.0"))
    out = tmp_path / "run"
    assert train_main(["--config", str(cfg_path), "--out", str(out), "--steps", "stage1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("fsrfer-train: error: stage1: training diverged in epoch 2 of 3"), err
    assert "stage1.lr (now 1000.0)" in err and "new --out" in err and "stage1.pt" in err, err
    assert not (out / "models" / "hr.pt").exists()  # no model from the diverged weights
    st = checkpoint.load(out / "state" / "stage1.pt", kind="state")  # epoch 1's state, not the NaN one
    assert int(st["epoch"]) == 1 and _finite(st["modules"]["fer"])
    # as the message says, --resume refuses the stopped stage under a lower rate (it was started with another)
    lower = tmp_path / "lower.yaml"
    lower.write_text(text.replace("lr: 0.05", "lr: 0.01"))
    assert train_main(["--config", str(lower), "--out", str(out), "--steps", "stage1", "--resume"]) == 2
    assert "stage1.lr: 1000.0 in the stopped stage, 0.01 now" in capsys.readouterr().err


@pytest.fixture(scope="module")
def hr_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("hr")
    cfg = tiny_cfg(data={"synthetic": 100}, stage1={"epochs": 0})  # an untrained HR model is enough here
    data = load_data(cfg, None)
    return out, data, train_stage1(cfg, data, out, resume=False)


CASES = {
    "fsrfer.pretrain": ({"stage2": {"pretrain_epochs": 3, "epochs": 0, "pretrain_lr": 1e6}}, "stage2.pretrain_lr"),
    "fsrfer.gan": ({"stage2": {"pretrain_epochs": 0, "epochs": 3, "lr_g": 1e6, "lr_d": 1e6}}, "stage2.lr_g"),
    "lr_finetune": ({"baselines": {"lr_finetune_epochs": 3, "lr_finetune_lr": 1e6}}, "baselines.lr_finetune_lr"),
    "image_sr": ({"baselines": {"image_sr_epochs": 3, "image_sr_lr": 1e6}}, "baselines.image_sr_lr"),
}


@pytest.mark.parametrize("stage", sorted(CASES))
def test_every_training_loop_stops_on_divergence_without_writing_its_model(hr_run, tmp_path, stage):
    hr_out, data, hr = hr_run
    over, rate = CASES[stage]
    cfg = tiny_cfg(data={"synthetic": 100}, stage1={"epochs": 0}, **over)
    model = stage.split(".")[0]
    train = {"fsrfer": lambda: train_stage2(cfg, data, hr, tmp_path, "fsrfer", cfg.stage2.losses, False),
             "lr_finetune": lambda: train_lr_finetune(cfg, data, hr, tmp_path, False),
             "image_sr": lambda: train_image_sr(cfg, data, hr, tmp_path, False)}[model]
    with pytest.raises(TrainingDiverged, match=rf"^{stage}: training diverged in epoch (\d) of 3") as info:
        train()
    assert rate in str(info.value)
    assert not (tmp_path / "models" / f"{model}.pt").exists()
    epoch = int(str(info.value).split("epoch ")[1].split(" ")[0])
    state = tmp_path / "state" / f"{stage}.pt"
    if epoch == 1:
        assert not state.exists() and "No epoch of it finished" in str(info.value)
    else:
        st = checkpoint.load(state, kind="state")
        assert int(st["epoch"]) == epoch - 1
        assert all(_finite(sd) for sd in st["modules"].values())


def test_stage1_weight_averaging_stops_on_divergence(hr_run, tmp_path):
    _, data, _ = hr_run
    cfg = tiny_cfg(data={"synthetic": 100}, stage1={"epochs": 0, "swa_epochs": 2, "swa_lr": 1e6})
    with pytest.raises(TrainingDiverged, match=r"^stage1_swa: training diverged .*stage1\.swa_lr"):
        train_stage1(cfg, data, tmp_path, resume=False)
    assert not (tmp_path / "models" / "hr.pt").exists()


def test_runner_catches_weights_that_went_non_finite_under_a_finite_loss(tmp_path):
    lin = torch.nn.Linear(2, 2)
    runner = EpochRunner("toy", tmp_path / "toy.pt", {"lin": lin}, {}, epochs=3, seed=0)

    def epoch(e, rng):
        if e == 1:
            with torch.no_grad():
                lin.weight[0, 0] = float("inf")  # the last step's update overflowed; its loss was still finite
        return {"loss": 1.0}

    with pytest.raises(TrainingDiverged, match=r"^toy: training diverged in epoch 2 of 3: .*lin") as info:
        runner.run(epoch, lambda: 0.5)
    assert "toy.pt" in str(info.value) and "epoch 1" in str(info.value)
    st = checkpoint.load(tmp_path / "toy.pt", kind="state")
    assert int(st["epoch"]) == 1 and len(st["history"]) == 1 and _finite(st["modules"]["lin"])
