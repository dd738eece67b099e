"""fsrfer-train and fsrfer-eval on inputs and runs that must be refused or stopped cleanly: a stopped stage resumed
under other settings, models of other settings read or evaluated, SIGTERM, an interrupted feature cache, the time
budget at a stage's end, --data, and out-of-range options. Each refusal is one line, exit 2."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")

from fsrfer_edge.errors import ConfigError, DataError  # noqa: E402
from trainer import checkpoint, config  # noqa: E402
from trainer.cli import eval_main, train_main  # noqa: E402
from trainer.models import InferenceModel  # noqa: E402
from trainer.train import (cached_features, load_data, run_pipeline, spec_for, train_lr_finetune,  # noqa: E402
                           train_stage1)

REPO = Path(__file__).resolve().parents[1]


def tiny(**over):
    """configs/tiny.yaml as a dict, on the CPU, small: 200 faces, one stage-1 epoch, a short stage 2."""
    d = {**config.load(REPO / "configs" / "tiny.yaml").to_dict(), "device": "cpu"}
    over = {"data": {"synthetic": 200}, "stage1": {"epochs": 1},
            "stage2": {"pretrain_epochs": 1, "epochs": 1, "ablations": []}, **over}
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) else v
    return d


def config_file(path, **over):
    path.write_text(yaml.safe_dump(tiny(**over)))
    return str(path)


def test_a_stopped_stage_is_not_resumed_under_other_settings(tmp_path):
    cfg = config.from_dict(tiny(stage1={"epochs": 3}))
    data = load_data(cfg, None)
    assert train_stage1(cfg, data, tmp_path, resume=False, stop_after=1) is None
    for change, said in (({"stage1": {"epochs": 5, "lr": 0.5}}, "stage1.epochs: 3 in the stopped stage, 5 now"),
                         ({"stage1": {"epochs": 3}, "model": {"head_hidden": 16}},
                          "model.head_hidden: 32 in the stopped stage, 16 now")):
        with pytest.raises(ConfigError, match=said):  # not carried on, nor a raw size-mismatch RuntimeError
            train_stage1(config.from_dict(tiny(**change)), data, tmp_path, resume=True)
    assert not (tmp_path / "models" / "hr.pt").exists()
    # the settings it was started with: it carries on
    assert train_stage1(cfg, data, tmp_path, resume=True, stop_after=1) is None
    assert checkpoint.load(tmp_path / "state" / "stage1.pt", kind="state")["epoch"] == 2


def test_a_stopped_stage_is_not_resumed_under_other_eval_factors(tmp_path):
    """eval.factors pick the best epoch of stage 2 and the baselines, but were not among the settings a stopped
    stage compares: resumed under others, its best epoch was chosen by two measures. Stage 1 picks on HR faces alone
    (not refused), and a state written before eval.factors were recorded still resumes."""
    over = {"stage1": {"epochs": 2}, "baselines": {"lr_finetune_epochs": 3}}
    cfg = config.from_dict(tiny(**over))
    other = config.from_dict(tiny(**over, eval={"factors": [4, 1]}))
    data = load_data(cfg, None)
    assert train_stage1(cfg, data, tmp_path, resume=False, stop_after=1) is None
    hr = train_stage1(other, data, tmp_path, resume=True)
    assert hr is not None
    assert train_lr_finetune(cfg, data, hr, tmp_path, resume=False, stop_after=1) is None
    with pytest.raises(ConfigError, match=r"lr_finetune\.pt \(lr_finetune, stopped after epoch 1\), but it was "
                                          r"started with other settings \(eval\.factors: \[1, 2, 3, 4, 6, 8\] in "
                                          r"the stopped stage, \[1, 4\] now\)"):
        train_lr_finetune(other, data, hr, tmp_path, resume=True)
    state = tmp_path / "state" / "lr_finetune.pt"
    assert checkpoint.load(state, kind="state")["epoch"] == 1
    # the same factors in another order give the same mean: not a change
    reordered = config.from_dict(tiny(**over, eval={"factors": [8, 6, 4, 3, 2, 1]}))
    assert train_lr_finetune(reordered, data, hr, tmp_path, resume=True, stop_after=1) is None
    # a state from before eval.factors were recorded: not recorded, not compared
    st = checkpoint.load(state, kind="state")
    del st["settings"]["eval"]
    checkpoint.save(state, st)
    assert train_lr_finetune(other, data, hr, tmp_path, resume=True) is not None
    assert checkpoint.load(state, kind="state")["epoch"] == 3


def test_the_val_feature_cache_is_made_again_for_other_eval_factors(tmp_path):
    """Stage 2's val features are cached under a key without eval.factors: a run with a factor the cache did not
    hold failed with KeyError in its first evaluation."""
    cfg = config.from_dict(tiny())
    trunk = InferenceModel(spec_for(cfg, "hr")).fer.trunk
    path, images = tmp_path / "val_features.npz", np.zeros((4, 48, 48), np.uint8)
    assert sorted(cached_features(path, trunk, images, (1, 2), "key|val", cfg)) == [1, 2]
    assert {1, 4} <= set(cached_features(path, trunk, images, (1, 4), "key|val", cfg))
    assert sorted(cached_features(path, trunk, images, (4,), "key|val", cfg)) == [1, 4]  # held: read, not made


def _error_line(capsys):
    (line,) = [s for s in capsys.readouterr().err.splitlines() if s.startswith("fsrfer-train: error")]
    return line


def test_models_of_other_settings_are_neither_read_nor_evaluated_without_resume(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = config_file(tmp_path / "c.yaml")
    assert train_main(["--config", cfg, "--out", str(out), "--steps", "stage1"]) == 0
    hr = out / "models" / "hr.pt"
    (out / "models" / "lr_finetune.pt").write_bytes(hr.read_bytes())  # a seed-0 model beside it
    before = hr.stat().st_mtime_ns, (out / "config.json").read_text()
    capsys.readouterr()
    # stage 2 would start from the seed-0 HR model
    assert train_main(["--config", cfg, "--out", str(out), "--seed", "1", "--steps", "stage2"]) == 2
    line = _error_line(capsys)
    assert f"stage 2 and the baselines would start from {hr}, but" in line and "seed: 0 in the model, 1 now" in line
    assert "its step 'stage1' without --resume" in line and not (out / "cache").exists()
    # a new HR model would be listed beside the seed-0 one: refused before anything trains
    assert train_main(["--config", cfg, "--out", str(out), "--seed", "1", "--steps", "stage1,eval"]) == 2
    line = _error_line(capsys)
    assert "the evaluation would include" in line and "lr_finetune.pt" in line and "seed: 0 in the model, 1 now" in line
    assert (hr.stat().st_mtime_ns, (out / "config.json").read_text()) == before and not (out / "eval").exists()


def test_sigterm_takes_the_ctrl_c_path(tmp_path):
    """SIGTERM while a checkpoint is half written: exit 130, the partial file removed, how to go on said."""
    out = tmp_path / "run"
    code = """import os, signal, sys, time
from trainer import checkpoint, cli
write = checkpoint.atomic_write
def killed(path, fn):
    def half(f):
        f.write(b"half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)
    return write(path, half)
checkpoint.atomic_write = killed
sys.exit(cli.train_main(sys.argv[1:]))
"""
    r = subprocess.run([sys.executable, "-c", code, "--config", config_file(tmp_path / "c.yaml"), "--out", str(out),
                        "--steps", "stage1"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 130, r.stderr[-2000:]
    assert "fsrfer-train: interrupted" in r.stderr and "--resume" in r.stderr
    assert [p for p in out.rglob("*") if p.is_file() and p.name != "config.json"] == []


def test_an_interrupted_feature_cache_leaves_no_partial_file(tmp_path, monkeypatch):
    cfg = config.from_dict(tiny())
    trunk = InferenceModel(spec_for(cfg, "hr")).fer.trunk

    def interrupted(file, **arrays):  # Ctrl-C part-way through writing the archive (to a path or a file)
        if isinstance(file, (str, os.PathLike)):
            Path(file).write_bytes(b"PK half an archive")
        else:
            file.write(b"PK half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    path = tmp_path / "cache" / "train_features.npz"
    with pytest.raises(KeyboardInterrupt):
        cached_features(path, trunk, np.zeros((4, 48, 48), np.uint8), (1,), "key", cfg)
    assert list(path.parent.iterdir()) == []


def _weights(path):
    return checkpoint.load(path, kind="model")["state_dict"]


def test_the_time_budget_stops_before_the_next_model_and_the_gan_phase(tmp_path):
    cfg = config.from_dict(tiny())
    data = load_data(cfg, None)
    assert run_pipeline(cfg, data, tmp_path / "full", steps=("stage1", "stage2"))
    cut = tmp_path / "cut"
    tiny_budget = 1e-9  # minutes: spent by the end of the first epoch
    # stage 1's only epoch ends past the deadline: nothing of stage 2 starts (no feature extraction)
    assert not run_pipeline(cfg, data, cut, steps=("stage1", "stage2"), time_budget_min=tiny_budget)
    assert (cut / "models" / "hr.pt").is_file() and not (cut / "cache").exists()
    assert not (cut / "state" / "fsrfer.pretrain.pt").exists()
    # pre-training's only epoch ends past it: the GAN phase does not start
    assert not run_pipeline(cfg, data, cut, resume=True, steps=("stage1", "stage2"), time_budget_min=tiny_budget)
    assert (cut / "state" / "fsrfer.pretrain.pt").is_file() and not (cut / "state" / "fsrfer.gan.pt").exists()
    assert run_pipeline(cfg, data, cut, resume=True, steps=("stage1", "stage2"))
    a, b = _weights(tmp_path / "full" / "models" / "fsrfer.pt"), _weights(cut / "models" / "fsrfer.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_data_is_recorded_and_resuming_on_other_data_is_refused(tmp_path, capsys, monkeypatch):
    from trainer.synthetic import make_faces

    for name, seed in (("a.npz", 1), ("b.npz", 2)):
        images, labels = make_faces(60, seed=seed)
        np.savez(tmp_path / name, images=images, labels=labels.astype(np.int8),
                 split=np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 10))
    out, cfg = tmp_path / "run", config_file(tmp_path / "c.yaml")
    monkeypatch.chdir(tmp_path)  # a relative --data is recorded as the file it names
    assert train_main(["--config", cfg, "--data", "a.npz", "--out", str(out), "--steps", "stage1"]) == 0
    assert config.from_dict(yaml.safe_load((out / "config.json").read_text())).data.path == str(tmp_path / "a.npz")
    capsys.readouterr()
    assert train_main(["--config", cfg, "--data", "b.npz", "--out", str(out), "--steps", "stage1", "--resume"]) == 2
    assert f"data.path: '{tmp_path / 'a.npz'}' in the model, '{tmp_path / 'b.npz'}' now" in _error_line(capsys)


@pytest.mark.parametrize("change, said", [
    ({"eval": {"split": "tset"}}, "eval.split must be one of ['train', 'val', 'test'], got 'tset'"),
    ({"eval": {"factors": []}}, "eval.factors must list at least one down-sample factor"),
    ({"seed": 10**20}, "seed = 100000000000000000000; expected a number in [0, 9223372036854775807]"),
])
def test_config_values_that_would_fail_late_are_refused_when_read(change, said):
    with pytest.raises(ConfigError) as e:
        config.from_dict(tiny(**change))
    assert said in str(e.value)
    config.from_dict(tiny(seed=2**63 - 1))  # the largest seed torch takes as a signed 64-bit integer


def test_too_few_synthetic_faces_for_a_val_split_are_refused():
    with pytest.raises(DataError, match="3 faces leave the val split empty.*expected at least 4"):
        load_data(config.from_dict(tiny(data={"synthetic": 3})), None)
    assert len(load_data(config.from_dict(tiny(data={"synthetic": 4})), None).val.labels) == 1


def test_out_of_range_seed_and_threads_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train_main(["--config", config_file(tmp_path / "c.yaml"), "--seed", str(10**20)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--seed 100000000000000000000: expected an integer >= 0 and < 2**63" in err
    for model in ("m.pt", "m.onnx"):  # the same bounds for both kinds of model
        assert eval_main(["--checkpoint", str(tmp_path / model), "--data", str(tmp_path / "d.npz"), "--threads", "-1",
                          "--json", str(tmp_path / "e.json")]) == 2
        err = capsys.readouterr().err
        assert "--threads -1; expected an integer from 1 to 1024, or 0 for the library's default" in err, err


def test_the_baselines_distillation_temperature_decides_its_weights() -> None:
    """stage2.losses.distill_temperature is the LR-fine-tuned baseline's when it distils, and only then."""
    from trainer import config
    from trainer.train import _settings_for

    d = config.load("configs/tiny.yaml").to_dict()
    d["baselines"]["lr_finetune_distill"] = 1.0
    warm = json.loads(json.dumps(d))
    warm["stage2"]["losses"]["distill_temperature"] = d["stage2"]["losses"]["distill_temperature"] + 2.0
    assert _settings_for("lr_finetune", d) != _settings_for("lr_finetune", warm)
    d["baselines"]["lr_finetune_distill"] = warm["baselines"]["lr_finetune_distill"] = 0.0
    assert _settings_for("lr_finetune", d) == _settings_for("lr_finetune", warm)


def test_eval_json_may_not_overwrite_the_ferplus_labels_beside_the_data(tmp_path, capsys):
    data, labels = tmp_path / "fer2013.npz", tmp_path / "ferplus_labels.npz"
    data.write_bytes(b"not read: refused before")
    labels.write_bytes(b"the FER+ votes")
    assert eval_main(["--checkpoint", str(tmp_path / "m.onnx"), "--data", str(data), "--json", str(labels)]) == 2
    assert "is the same file as the FER+ labels" in capsys.readouterr().err
    assert labels.read_bytes() == b"the FER+ votes"


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf", "1e+300"])
def test_a_dist_timeout_that_is_not_a_positive_number_is_a_usage_error(tmp_path, capsys, value):
    """Under torchrun it became a timedelta: NaN raised ValueError, a negative one made every connect time out, 1e300
    overflowed it (OverflowError, a traceback)."""
    with pytest.raises(SystemExit) as e:
        train_main(["--config", config_file(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"),
                    "--dist-timeout", value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"--dist-timeout {value}: expected a number of minutes > 0" in err, err


def test_a_config_that_is_not_text_is_a_one_line_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"name: caf\xe9\nseed: 0\n")  # Latin-1, not UTF-8 (or a binary file passed by mistake)
    assert train_main(["--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    line = _error_line(capsys)
    assert str(cfg) in line and "not UTF-8 text" in line, line


def test_a_refused_resume_leaves_the_runs_config_json_as_it_was(tmp_path, capsys):
    """config.json says what the run trains with (reproduce.sh and scripts/early_g_summary.py read its seed): a
    --resume that a stopped stage refuses must not rewrite it with the settings it refused."""
    out, cfg = tmp_path / "run", config_file(tmp_path / "c.yaml", stage1={"epochs": 2})
    args = ["--config", cfg, "--out", str(out), "--steps", "stage1"]
    assert train_main(args + ["--time-budget", "1e-9"]) == 3  # stopped after stage 1's first epoch
    before = (out / "config.json").read_text()
    capsys.readouterr()
    assert train_main(args + ["--resume", "--seed", "1"]) == 2
    assert "seed: 0 in the stopped stage, 1 now" in _error_line(capsys)
    assert (out / "config.json").read_text() == before
    assert train_main(args + ["--resume"]) == 0 and (out / "models" / "hr.pt").is_file()


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n"])
def test_an_empty_config_file_is_refused_not_read_as_every_default(tmp_path, text):
    """An empty config (a failed copy) trained every default: a full run on the config's synthetic faces, unasked."""
    from fsrfer_edge.errors import ConfigError
    from trainer import config

    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"c\.yaml is empty \(or only comments\); expected YAML options"):
        config.load(path)
