"""Tests that kill hand-made mutants of the trainer's config, command lines and data-parallel helpers
(trainer/config.py, trainer/cli.py, trainer/distributed.py): options that must reach the run, the result
JSON fsrfer-eval writes, exit codes, and the DDP helpers' rank arithmetic (simulated ranks, no processes)."""
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")

from fsrfer_edge.errors import ConfigError  # noqa: E402
from trainer import config, distributed  # noqa: E402
from trainer.cli import eval_main, train_main  # noqa: E402

CONFIG = {"name": "m65h", "seed": 5, "threads": 1, "device": "cpu", "data": {"synthetic": 40},
          "model": {"backbone": "tiny", "head_hidden": 16}}


# -- fsrfer-train: what reaches the run (run_pipeline replaced by a recorder) ---------------------------

@pytest.fixture
def recorded(monkeypatch):
    return record_run(monkeypatch)


def record_run(monkeypatch):
    """train_main's run_pipeline and load_data replaced: records what reaches them; returns ``done`` (or raises
    ``raise`` where a test sets one)."""
    import trainer.train as train

    calls: dict = {"done": True, "raise": None}

    def load_data(cfg, path):
        calls["data_path"] = path
        return "DATA"

    def run_pipeline(cfg, data, out, **kw):
        calls.update(cfg=cfg, out=out, **kw)
        if calls["raise"] is not None:
            raise calls["raise"]
        return calls["done"]

    monkeypatch.setattr(train, "load_data", load_data)
    monkeypatch.setattr(train, "run_pipeline", run_pipeline)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return calls


def _cfg_file(tmp_path, **over):
    p = tmp_path / "configs" / "c.yaml"
    p.parent.mkdir(exist_ok=True)
    p.write_text(yaml.safe_dump({**CONFIG, **over}))
    return p


def test_seed_zero_on_the_command_line_overrides_a_config_seed(recorded, tmp_path):
    assert train_main(["--config", str(_cfg_file(tmp_path)), "--out", str(tmp_path / "o"), "--seed", "0"]) == 0
    assert recorded["cfg"].seed == 0
    assert train_main(["--config", str(_cfg_file(tmp_path)), "--out", str(tmp_path / "o")]) == 0
    assert recorded["cfg"].seed == 5


def test_train_options_reach_the_run(recorded, tmp_path):
    cfg = _cfg_file(tmp_path, device="cuda")  # --device cpu must win over the config's (absent) GPU
    out = tmp_path / "elsewhere"
    data = tmp_path / "faces.npz"
    assert train_main(["--config", str(cfg), "--out", str(out), "--resume", "--time-budget", "2.5", "--device", "cpu",
                       "--data", str(data), "--steps", "stage1"]) == 0
    assert recorded["out"] == out and recorded["resume"] is True and recorded["time_budget_min"] == 2.5
    assert recorded["steps"] == ("stage1",)
    c = recorded["cfg"]
    assert c.device == "cpu"
    assert c.data.synthetic == 0 and c.data.path == os.path.abspath(data)  # --data replaces the synthetic faces
    assert recorded["data_path"] == Path(os.path.abspath(data))
    assert train_main(["--config", str(_cfg_file(tmp_path)), "--out", str(out)]) == 0
    assert recorded["resume"] is False and recorded["time_budget_min"] is None
    assert recorded["cfg"].data.synthetic == 40 and recorded["data_path"] is None


def test_train_exit_codes_and_final_line(recorded, tmp_path, capsys):
    args = ["--config", str(_cfg_file(tmp_path)), "--out", str(tmp_path / "o")]
    recorded["done"] = False
    assert train_main(args) == 3
    assert "stopped early; continue with: " in capsys.readouterr().err
    recorded["done"] = True
    assert train_main([*args, "--steps", "stage1,eval-test"]) == 0
    assert "evaluation in" in capsys.readouterr().out
    assert train_main([*args, "--steps", "stage1"]) == 0
    assert "evaluation in" not in capsys.readouterr().out


def test_a_non_zero_rank_exits_3_when_the_run_stopped_early(recorded, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(distributed, "init_from_env", lambda *a, **k: distributed.DistContext(1, 2, 1, "gloo"))
    args = ["--config", str(_cfg_file(tmp_path)), "--out", str(tmp_path / "o")]
    recorded["done"] = False
    assert train_main(args) == 3
    recorded["done"] = True
    assert train_main(args) == 0
    assert capsys.readouterr().out == ""  # rank 0 reports for all


# -- fsrfer-eval: the result JSON ------------------------------------------------------------------------

def make_tiny_run(d, n_test=6):
    """In folder ``d``: ``m.pt``, a seeded tiny HR model, and ``faces.npz``, 6 val faces and ``n_test`` test faces
    with random labels; returns ``d``."""
    from fsrfer_edge.preprocessing import Preprocessing
    from trainer import checkpoint
    from trainer.models import InferenceModel

    torch.manual_seed(0)
    m = InferenceModel({"method": "hr", "backbone": "tiny"}).eval()
    checkpoint.save(d / "m.pt", checkpoint.model_payload(m, m.spec, Preprocessing(), {"name": "tiny"}))
    rng = np.random.default_rng(0)
    n = 6 + n_test
    np.savez(d / "faces.npz", images=rng.integers(0, 256, (n, 48, 48), dtype=np.uint8),
             labels=rng.integers(0, 7, n).astype(np.int64), split=np.array(["val"] * 6 + ["test"] * n_test))
    return d


@pytest.fixture(scope="module")
def tiny_pt(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("m65h"))


def test_fsrfer_eval_json_has_the_asked_factors_protocol_and_the_datas_own_labels(tiny_pt, tmp_path):
    out = tmp_path / "e.json"
    assert eval_main(["--checkpoint", str(tiny_pt / "m.pt"), "--data", str(tiny_pt / "faces.npz"), "--split", "val",
                      "--factors", "1,3", "--protocol", "small", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert list(res["factors"]) == ["1", "3"] and res["protocol"] == "small"
    assert res["labels"] == "npz" and res["split"] == "val" and res["n"] == 6  # a plain .npz: its own labels
    for v in res["factors"].values():
        assert 0 <= v["accuracy"] <= 1 and 0 <= v["macro_f1"] <= 1
    assert res["mean_accuracy"] == pytest.approx(np.mean([v["accuracy"] for v in res["factors"].values()]))


def test_fsrfer_eval_refuses_factor_zero(tiny_pt, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        eval_main(["--checkpoint", str(tiny_pt / "m.pt"), "--data", str(tiny_pt / "faces.npz"),
                   "--factors", "0,2", "--json", str(tmp_path / "e.json")])
    assert e.value.code == 2 and "factors must be integers >= 1" in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()


# -- config ---------------------------------------------------------------------------------------------

def test_ablations_change_exactly_their_terms():
    base = config.LossConfig(adversarial=0.01, reweight=True, gan="wgan_div", distill=0.5)
    a = config.ablated(base, "no_reweight")
    assert (a.reweight, a.adversarial, a.gan) == (False, 0.01, "wgan_div")
    a = config.ablated(base, "no_adversarial")
    assert (a.reweight, a.adversarial, a.gan) == (True, 0.0, "none")
    a = config.ablated(base, "no_reweight_no_adversarial")
    assert (a.reweight, a.adversarial, a.gan, a.distill) == (False, 0.0, "none", 0.5)


def test_defaults_that_decide_what_a_run_trains_and_reports():
    c = config.from_dict({})
    assert c.eval.split == "val"  # the test split only on request (eval-test)
    assert c.stage2.losses.reweight is True and c.stage2.losses.adversarial == 1e-3
    assert c.stage2.losses.gan == "wgan_div"


def test_a_nested_option_reaches_its_dataclass_with_the_fields_type():
    c = config.from_dict({"stage1": {"epochs": 3.0, "lr": 1}, "stage2": {"losses": {"reweight": False}}})
    assert c.stage1.epochs == 3 and type(c.stage1.epochs) is int
    assert c.stage1.lr == 1.0 and type(c.stage1.lr) is float
    assert c.stage2.losses.reweight is False


@pytest.mark.parametrize("over, words", [
    ({"stage2": {"scale_aware": True, "generator_start": "layer1", "feature_level": "layer3",
                 "losses": {"distill": 1.0, "distill_high": 2.0, "distill_from_factor": 1}}}, "distill_from_factor"),
    ({"stage2": {"losses": {"distill_temperature": 0}}}, "distill_temperature"),
    ({"stage1": {"distill_temperature": 0.0}}, "distill_temperature"),
    ({"eval": {"protocols": []}}, "eval.protocols"),
    ({"degrade": {"factors": [1]}, "stage2": {"scale_aware": True, "generator_start": "layer1",
                                              "feature_level": "layer3", "route_hr": True}}, "route_hr"),
])
def test_invalid_combinations_are_refused(over, words):
    with pytest.raises(ConfigError, match=words):
        config.from_dict(over)


def test_a_relative_data_path_is_from_the_repository_root_above_configs(tmp_path):
    cfg = config.from_dict({"data": {"path": "data/x.npz"}})
    got = config.resolve_data_path(cfg, None, str(tmp_path / "configs" / "c.yaml"))
    assert got == tmp_path.resolve() / "data" / "x.npz"
    assert config.resolve_data_path(cfg, "y.npz", str(tmp_path / "configs" / "c.yaml")) == Path("y.npz")


# -- distributed, with simulated ranks ------------------------------------------------------------------

def _ranks(monkeypatch, r, w):
    monkeypatch.setattr(distributed, "rank", lambda: r)
    monkeypatch.setattr(distributed, "world_size", lambda: w)


def test_world_size_one_is_single_process(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    assert distributed.init_from_env("cpu") == distributed.DistContext()
    assert not distributed._initialized()


def test_only_rank_zero_is_main(monkeypatch):
    _ranks(monkeypatch, 1, 2)
    assert distributed.is_main() is False
    _ranks(monkeypatch, 0, 2)
    assert distributed.is_main() is True


def test_shards_split_a_batch_into_disjoint_blocks(monkeypatch):
    rows = []
    for r in range(3):
        _ranks(monkeypatch, r, 3)
        rows += list(range(12))[distributed.shard_slice(12)]
    assert rows == list(range(12))


def test_metrics_are_averaged_over_ranks(monkeypatch):
    _ranks(monkeypatch, 0, 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: t.mul_(2))  # two ranks with equal values
    assert distributed.all_reduce_mean({"loss": 1.5, "acc": 0.25}) == {"loss": 1.5, "acc": 0.25}


def test_each_rank_gets_its_own_dropout_stream(monkeypatch):
    draws = []
    for r in (0, 1):
        torch.manual_seed(123)
        _ranks(monkeypatch, r, 2)
        distributed.seed_torch_per_rank()
        draws.append(torch.rand(4))
    assert not torch.equal(draws[0], draws[1])


def test_shard_generator_leaves_the_default_stream_where_one_process_would(monkeypatch):
    torch.manual_seed(7)
    full = torch.rand(10)
    after = torch.rand(3)
    torch.manual_seed(7)
    _ranks(monkeypatch, 1, 2)
    g = distributed.shard_rand_generator(4, 10)
    assert torch.equal(torch.rand(6, generator=g), full[4:])
    assert torch.equal(torch.rand(3), after)


def test_global_batch_must_fit_the_data(monkeypatch):
    _ranks(monkeypatch, 0, 2)
    distributed.check_global_batch(16, 16, "b")
    with pytest.raises(ConfigError, match="fewer than one global batch"):
        distributed.check_global_batch(16, 10, "b")


def test_synced_batchnorm_keeps_mode_and_unbiased_running_variance(monkeypatch):
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.BatchNorm2d(3))
    conv = torch.nn.Sequential(torch.nn.BatchNorm2d(3)).eval()
    conv = distributed._convert_batchnorm(conv, False)
    assert isinstance(conv[0], distributed.GlooSyncBatchNorm) and not conv[0].training
    conv.train()
    _ranks(monkeypatch, 0, 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: t)  # the other rank contributes nothing
    x = torch.randn(4, 3, 5, 5)
    y = conv(x)
    ref = plain(x)
    assert torch.allclose(y, ref, atol=1e-5)
    assert torch.allclose(conv[0].running_var, plain[0].running_var, atol=1e-6)
    assert torch.allclose(conv[0].running_mean, plain[0].running_mean, atol=1e-6)


def test_dataclass_replace_keeps_nested_config():  # sanity for the recorder tests above
    c = config.from_dict({"data": {"synthetic": 3}})
    assert dataclasses.replace(c, seed=1).data.synthetic == 3
