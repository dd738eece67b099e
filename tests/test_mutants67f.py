"""Round 67f of hand-made mutation testing: a second pass over the trainer's command lines, its config and its
data-parallel helpers (trainer/cli.py, trainer/config.py, trainer/distributed.py), aimed at what round 65h
(tests/test_mutants65h.py) left untouched: fsrfer-train's defaults and resume hints (--out, a relative --data,
--steps, --seed and --dist-timeout bounds, Ctrl-C, rank-0-only logging), fsrfer-eval's defaults and result
JSON, the config's type and range checks, and torchrun's environment, timeouts and rank arithmetic (simulated
ranks and a recorded init_process_group: no processes are started)."""
import argparse
import datetime
import json
import logging
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")

from fsrfer_edge.errors import ConfigError  # noqa: E402
from trainer import config, distributed  # noqa: E402
from trainer.cli import _setup_logging, eval_main, positive_minutes, train_main  # noqa: E402

CONFIG = {"name": "m67f", "seed": 5, "threads": 1, "device": "cpu", "data": {"synthetic": 40},
          "model": {"backbone": "tiny", "head_hidden": 16}}


# -- fsrfer-train (run_pipeline and load_data replaced by a recorder) -------------------------------------

@pytest.fixture
def recorded(monkeypatch):
    from test_mutants65h import record_run

    return record_run(monkeypatch)


def _cfg_file(tmp_path, **over):
    p = tmp_path / "repo" / "configs" / "c.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump({**CONFIG, **over}))
    return p


def test_a_relative_data_path_is_from_the_current_folder_not_the_repository(recorded, tmp_path, monkeypatch):
    cfg = _cfg_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert train_main(["--config", str(cfg), "--out", str(tmp_path / "o"), "--data", "faces.npz"]) == 0
    assert recorded["data_path"] == tmp_path / "faces.npz"
    assert recorded["cfg"].data.path == str(tmp_path / "faces.npz")  # recorded as used: absolute


def test_the_default_out_folder_is_runs_slash_the_configs_name_and_the_hint_names_it(recorded, tmp_path,
                                                                                   monkeypatch, capsys):
    cfg = _cfg_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    recorded["done"] = False
    assert train_main(["--config", str(cfg)]) == 3
    assert recorded["out"] == Path("runs/m67f")
    err = capsys.readouterr().err
    assert "--resume --out runs/m67f" in err  # resuming must find the same folder


def test_resume_of_a_folder_without_state_warns_on_rank_zero(recorded, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="trainer"):
        assert train_main(["--config", str(_cfg_file(tmp_path)), "--out", str(tmp_path / "new"), "--resume"]) == 0
    assert "nothing to resume" in caplog.text


def test_ctrl_c_exits_130_and_says_how_to_go_on(recorded, tmp_path, capsys):
    recorded["raise"] = KeyboardInterrupt()
    assert train_main(["--config", str(_cfg_file(tmp_path)), "--out", str(tmp_path / "o")]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume" in err


def test_a_trailing_comma_in_steps_is_not_an_unknown_step(recorded, tmp_path):
    assert train_main(["--config", str(_cfg_file(tmp_path)), "--out", str(tmp_path / "o"), "--steps", "stage1,"]) == 0
    assert recorded["steps"] == ("stage1",)


@pytest.mark.parametrize("flag, value", [("--seed", str(2**63)), ("--dist-timeout", "1e9"), ("--dist-timeout", "0")])
def test_out_of_range_seed_and_dist_timeout_are_refused(recorded, tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as e:
        train_main(["--config", str(_cfg_file(tmp_path)), "--out", str(tmp_path / "o"), flag, value])
    assert e.value.code == 2 and flag in capsys.readouterr().err
    assert "cfg" not in recorded


@pytest.mark.parametrize("text", ["inf", "0", "-1", "nan", "x"])
def test_time_budget_must_be_finite_positive_minutes(text):
    with pytest.raises(argparse.ArgumentTypeError):
        positive_minutes(text)
    assert positive_minutes("0.5") == 0.5


def test_only_rank_zero_logs_progress(monkeypatch):
    got = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: got.append(kw))
    _setup_logging(False, 1)
    _setup_logging(False, 0)
    _setup_logging(True, None)
    assert [kw["level"] for kw in got] == [logging.WARNING, logging.INFO, logging.DEBUG]
    assert "[rank 1]" in got[0]["format"]


# -- fsrfer-eval ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_pt(tmp_path_factory):
    from test_mutants65h import make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("m67f"), n_test=5)  # 5 test faces, 6 val: which split was read


def test_fsrfer_eval_defaults_to_the_test_split_and_the_resized_protocol_and_names_its_inputs(tiny_pt, tmp_path):
    out = tmp_path / "e.json"
    assert eval_main(["--checkpoint", str(tiny_pt / "m.pt"), "--data", str(tiny_pt / "faces.npz"),
                      "--factors", "2", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["split"] == "test" and res["n"] == 5
    assert res["protocol"] == "resized"
    assert res["checkpoint"] == str(tiny_pt / "m.pt") and res["data"] == str(tiny_pt / "faces.npz")


def test_eval_limit_takes_a_seeded_subset_spread_over_the_split(tiny_pt, tmp_path, monkeypatch):
    import trainer.evaluate as evaluate

    picked = []

    def fake_evaluate(fn, images, labels, factors, pre, protocol):
        picked.append(images[:, 0, 0].tolist())
        return {"n": len(labels), "factors": {"1": {"accuracy": 0.0}}}

    monkeypatch.setattr(evaluate, "evaluate_fn", fake_evaluate)
    data = tmp_path / "ordered.npz"  # face i is all grey level i: which faces were scored is visible
    np.savez(data, images=np.repeat(np.arange(40, dtype=np.uint8), 48 * 48).reshape(40, 48, 48),
             labels=np.arange(40) % 7, split=np.array(["test"] * 40))
    for _ in range(2):
        assert eval_main(["--checkpoint", str(tiny_pt / "m.pt"), "--data", str(data), "--limit", "10",
                          "--json", str(tmp_path / "e.json")]) == 0
    assert picked[0] == picked[1]  # seeded: the same faces every time
    assert len(set(picked[0])) == 10 and max(picked[0]) >= 10  # not simply the split's first faces


# -- config ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("over, words", [
    ({"stage1": {"epochs": 2.5}}, "stage1.epochs"),  # int() would silently make it 2
    ({"stage1": {"augment": 1}}, "stage1.augment"),
    ({"name": 5}, "config.name"),
    ({"degrade": {"factors": [True, 2]}}, "degrade.factors"),
    ({"stage1": {"lr": 0}}, "stage1.lr"),
    ({"stage1": {"lr": float("nan")}}, "stage1.lr"),
    ({"degrade": {"jpeg_quality": [0, 90]}}, "jpeg_quality"),
    ({"degrade": {"blur_prob": 1.5}}, "blur_prob"),
    ({"model": {"dropout": 1.5}}, "model.dropout"),
    ({"eval": {"split": "dev"}}, "eval.split"),
    ({"eval": {"factors": []}}, "eval.factors"),
    ({"baselines": {"run": ["srgan"]}}, "baselines.run"),
    ({"stage1": {"distill_from": "teacher.pt"}}, "stage1.distill"),  # a teacher without a weight: unused
])
def test_bad_values_are_refused_naming_the_option(over, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        config.from_dict(over)


# -- distributed: torchrun's environment (init_process_group recorded, not run) ------------------------------

@pytest.fixture
def torchrun_env(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend, **kw: calls.append((backend, kw)))
    monkeypatch.setattr(distributed, "_initialized", lambda: False)
    for k, v in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)
    return calls


def test_init_from_env_reads_rank_and_joins_with_the_timeout_in_minutes(torchrun_env):
    ctx = distributed.init_from_env("cpu", 5.0)
    assert ctx == distributed.DistContext(rank=1, world_size=2, local_rank=0, backend="gloo")
    assert ctx.distributed
    assert torchrun_env == [("gloo", {"timeout": datetime.timedelta(minutes=5)})]


def test_a_rank_outside_the_world_is_refused(torchrun_env, monkeypatch):
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ConfigError, match="RANK=2"):
        distributed.init_from_env("cpu")
    assert torchrun_env == []


def test_empty_torchrun_variables_are_single_process(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "")
    assert distributed.init_from_env("cpu") == distributed.DistContext()


def _ranks(monkeypatch, r, w):
    monkeypatch.setattr(distributed, "rank", lambda: r)
    monkeypatch.setattr(distributed, "world_size", lambda: w)


def test_other_ranks_run_after_rank_zero(monkeypatch):
    events = []
    monkeypatch.setattr(distributed, "barrier", lambda: events.append("barrier"))
    _ranks(monkeypatch, 1, 2)
    assert distributed.main_first(lambda: events.append("fn") or 7) == 7
    assert events == ["barrier", "fn"]  # rank 0's cache is written before the others read it
    events.clear()
    _ranks(monkeypatch, 0, 2)
    distributed.main_first(lambda: events.append("fn"))
    assert events == ["fn", "barrier"]


@pytest.mark.parametrize("n, w", [(10, 3), (7, 2), (5, 4)])
def test_every_row_goes_to_exactly_one_rank_when_n_does_not_divide(monkeypatch, n, w):
    rows = []
    for r in range(w):
        _ranks(monkeypatch, r, w)
        rows += list(range(n))[distributed.shard_slice(n)]
    assert rows == list(range(n))


def test_one_process_keeps_its_random_stream(monkeypatch):
    torch.manual_seed(11)
    want = torch.rand(4)
    torch.manual_seed(11)
    distributed.seed_torch_per_rank()  # single-process: a no-op
    assert torch.equal(torch.rand(4), want)


def test_a_ranks_stream_follows_the_epochs_seed(monkeypatch):
    _ranks(monkeypatch, 1, 2)
    draws = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        distributed.seed_torch_per_rank()
        draws.append(torch.rand(4))
    assert not torch.equal(draws[0], draws[1])  # else every epoch would draw the same dropout masks


def test_sums_over_ranks_are_exact_for_large_counts(monkeypatch):
    _ranks(monkeypatch, 0, 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: t.mul_(2))
    assert distributed.all_reduce_sum([2**25 + 1, 0.1]) == [2**26 + 2, 0.2]


def test_rank_zero_takes_part_in_a_broadcast(monkeypatch):
    sent = []
    monkeypatch.setattr(torch.distributed, "broadcast_object_list", lambda box, src: sent.append((list(box), src)))
    _ranks(monkeypatch, 0, 2)
    assert distributed.broadcast(0.75) == 0.75
    assert sent == [([0.75], 0)]  # else the other ranks would wait for it forever


def test_a_cpu_run_under_an_nccl_group_is_refused(monkeypatch):
    _ranks(monkeypatch, 0, 2)
    monkeypatch.setattr(torch.distributed, "get_backend", lambda *a: "nccl")
    with pytest.raises(ConfigError, match="expected gloo"):
        distributed.check_device("cpu")
    distributed.check_device("cuda")
