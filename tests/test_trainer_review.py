"""fsrfer-train after a review: a stopped stage resumed after an upgrade that added config keys, stage 2 resumed
against another HR model, --config naming a folder, and a time budget that counts from the command's start."""
import time

import pytest

torch = pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")

from fsrfer_edge.errors import ConfigError  # noqa: E402
from trainer import checkpoint, config  # noqa: E402
from trainer.cli import train_main  # noqa: E402
from trainer.train import _runner, hr_identity, load_data, run_pipeline, train_stage1  # noqa: E402

from test_trainer_inputs import _error_line, config_file, tiny  # noqa: E402


def _edit_state(path, edit):
    st = checkpoint.load(path, kind="state")
    edit(st)
    checkpoint.save(path, st)


def test_a_stage_stopped_before_an_upgrade_that_added_keys_resumes_after_it(tmp_path):
    """A state written before stage1.mixup and data.soft_labels existed lacks them: they were their defaults then.
    Refused before ("stage1.mixup: None in the stopped stage, 0.0 now"); a key set away from its default now, or a
    saved value that differs, is still refused."""
    cfg = config.from_dict(tiny(data={"synthetic": 80}, stage1={"epochs": 3}))
    data = load_data(cfg, None)
    state = tmp_path / "state" / "stage1.pt"
    assert train_stage1(cfg, data, tmp_path, resume=False, stop_after=1) is None

    def older(st):
        del st["settings"]["stage1"]["mixup"], st["settings"]["data"]["soft_labels"]

    _edit_state(state, older)
    assert train_stage1(cfg, data, tmp_path, resume=True, stop_after=1) is None
    assert checkpoint.load(state, kind="state")["epoch"] == 2
    _edit_state(state, older)
    with pytest.raises(ConfigError, match=r"stage1\.mixup: 0\.0 in the stopped stage, 0\.2 now"):
        mixup = config.from_dict(tiny(data={"synthetic": 80}, stage1={"epochs": 3, "mixup": 0.2}))
        train_stage1(mixup, data, tmp_path, resume=True)
    _edit_state(state, lambda st: st["settings"]["stage1"].update(lr=0.5))
    with pytest.raises(ConfigError, match=r"stage1\.lr: 0\.5 in the stopped stage, 0\.05 now"):
        train_stage1(cfg, data, tmp_path, resume=True)
    assert checkpoint.load(state, kind="state")["epoch"] == 2


def test_stage2_is_not_resumed_against_another_hr_model(tmp_path):
    cfg = config.from_dict(tiny(data={"synthetic": 80}, degrade={"factors": [1, 4]}, eval={"factors": [1, 4]},
                                stage2={"pretrain_epochs": 2, "epochs": 2, "ablations": []}))
    data = load_data(cfg, None)
    steps = ("stage1", "stage2")
    assert not run_pipeline(cfg, data, tmp_path, steps=steps, stop_after=1)  # stage 1 done, pre-training stopped
    hr, state = tmp_path / "models" / "hr.pt", tmp_path / "state" / "fsrfer.pretrain.pt"
    fer = checkpoint.load_model(hr)[0].fer
    assert checkpoint.load(state, kind="state")["starts_from"] == {"HR model": checkpoint.weights_sha256(fer)}
    # the HR model trained again (another draw, the same settings): stage 2's G was fitted to the old one
    original = hr.read_bytes()
    ck = checkpoint.load(hr, kind="model")
    name = next(k for k, v in ck["state_dict"].items() if v.is_floating_point())
    ck["state_dict"][name] = ck["state_dict"][name] + 0.01
    checkpoint.save(hr, ck)
    with pytest.raises(ConfigError) as e:
        run_pipeline(cfg, data, tmp_path, resume=True, steps=steps, stop_after=1)
    said = str(e.value)
    assert "fsrfer.pretrain" in said and "started from another HR model" in said and "move" in said, said
    assert checkpoint.load(state, kind="state")["epoch"] == 1
    # the HR model it started from: it carries on (pre-training ends, the GAN phase stops after an epoch)
    hr.write_bytes(original)
    assert not run_pipeline(cfg, data, tmp_path, resume=True, steps=steps, stop_after=1)
    gan = tmp_path / "state" / "fsrfer.gan.pt"
    assert checkpoint.load(state, kind="state")["epoch"] == 2 and checkpoint.load(gan, kind="state")["epoch"] == 1
    # the check that runs where a stage resumes (EpochRunner.run), for an HR model stage 1 trained in that call
    other = hr_identity(fer)[::-1]
    with pytest.raises(ConfigError, match="started from another HR model"):
        _runner(cfg, tmp_path, "fsrfer.gan", "fsrfer", {}, {}, 0, other).check_settings()
    # states from before the HR model was recorded: resumable, whatever HR model is there
    for p in (state, gan):
        _edit_state(p, lambda st: st.pop("starts_from"))
        _runner(cfg, tmp_path, p.stem, "fsrfer", {}, {}, 0, other).check_settings()
    assert checkpoint.load(gan, kind="state")["epoch"] == 1


def test_a_config_that_is_a_folder_is_said_to_be_one(tmp_path, capsys):
    assert train_main(["--config", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    line = _error_line(capsys)
    assert "is a folder" in line and "expected a YAML config file" in line and "does not exist" not in line, line
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.yaml")


def test_the_time_budget_counts_from_the_commands_start(tmp_path, capsys, monkeypatch):
    """Reading the data counts: a budget spent while the data loads stops stage 1 after its first epoch."""
    import trainer.train

    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", (lambda real: lambda: real() + clock[0])(time.monotonic))
    real_load = trainer.train.load_data

    def slow_load(*args, **kwargs):
        clock[0] += 120.0  # two minutes go by while the data loads
        return real_load(*args, **kwargs)

    monkeypatch.setattr(trainer.train, "load_data", slow_load)
    out = tmp_path / "run"
    cfg = config_file(tmp_path / "c.yaml", data={"synthetic": 80}, stage1={"epochs": 3})
    args = ["--config", cfg, "--out", str(out), "--steps", "stage1"]
    assert train_main(args + ["--time-budget", "1"]) == 3
    assert checkpoint.load(out / "state" / "stage1.pt", kind="state")["epoch"] == 1
    with pytest.raises(SystemExit):
        train_main(["--help"])
    assert "reading the data" in " ".join(capsys.readouterr().out.split())
