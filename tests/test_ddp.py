"""Multi-process training (DDP over gloo, 2 CPU processes under torchrun) against one process.

Tolerance: the 2-process run must give the single-process weights within ``ATOL`` (max abs diff over
every tensor of every training state: trunk, head, BatchNorm running statistics, G, D). The runs see the
same global batches, augmentations, LR factors and WGAN-div interpolation weights; what differs is float
summation order (BatchNorm statistics summed per rank then across ranks, gradients averaged by DDP), about
1e-7 per step. Measured here: 1.2e-7 after 8 stage-1 and 12 stage-2 steps; without synchronised
BatchNorm the same comparison gives 1.7e-2, so the tolerance tells the two apart. Dropout is 0 in this test: its
masks are drawn per rank and cannot match one process's.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")

from fsrfer_edge.errors import ConfigError  # noqa: E402
from trainer import checkpoint, config, distributed  # noqa: E402
from training_checks import assert_same_training  # noqa: E402
from trainer.train import load_data, run_pipeline  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ATOL = 1e-5

needs_gloo = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="this torch build has no torch.distributed with the gloo backend")

CONFIG = {
    "name": "ddp_test", "seed": 0, "threads": 1, "device": "cpu",  # gloo; GPUs: tests/test_train_device.py
    "data": {"synthetic": 200},  # 140 training faces: 4 global batches of 32 per epoch
    "model": {"backbone": "tiny", "head_hidden": 32, "dropout": 0.0},
    "stage1": {"epochs": 2, "batch_size": 32, "lr": 0.05},
    "stage2": {"pretrain_epochs": 1, "epochs": 2, "batch_size": 32, "generator_blocks": 1, "generator_growth": 16,
               "critic_hidden": 32, "critic_layers": 2, "ablations": []},
    "baselines": {"run": []},
    "eval": {"batch_size": 128},
}

# Launched by torchrun in place of `-m trainer.cli`: records every file each rank moves into place
# (all of the trainer's writes are atomic: temporary file + os.replace), then runs the CLI.
RECORDING_LAUNCHER = """
import os, sys
log = open(os.environ["WRITES_LOG"] + ".rank" + os.environ["RANK"], "w")
_replace = os.replace
def replace(src, dst, *a, **kw):
    log.write(os.fspath(dst) + "\\n")
    log.flush()
    return _replace(src, dst, *a, **kw)
os.replace = replace
from trainer.cli import train_main
sys.exit(train_main())
"""


def _torchrun(args, tmp_path, **env):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    """The reference: one process, global batch 32."""
    tmp = tmp_path_factory.mktemp("single")
    cfg_path = tmp / "ddp.yaml"
    cfg_path.write_text(yaml.safe_dump(CONFIG))
    cfg = config.load(cfg_path)
    threads = torch.get_num_threads()
    try:
        assert run_pipeline(cfg, load_data(cfg, None), tmp / "out", steps=("stage1", "stage2"))
    finally:
        torch.set_num_threads(threads)
    return cfg_path, tmp / "out"


@needs_gloo
def test_two_processes_match_one_and_resume_with_one_writer(single_run, tmp_path):
    cfg_path, ref = single_run
    out = tmp_path / "ddp"
    common = ["--config", str(cfg_path), "--out", str(out), "--steps", "stage1,stage2"]
    # 1) Stopped by the time budget after stage 1's first epoch (exit 3 from every rank).
    r = _torchrun(["-m", "trainer.cli", *common, "--time-budget", "1e-6"], tmp_path)
    assert "stopped early" in r.stderr, r.stdout + r.stderr
    assert checkpoint.load(out / "state" / "stage1.pt", kind="state")["epoch"] == 1
    assert not (out / "models").exists()
    # 2) Resumed under torchrun to the end, recording which rank writes what.
    launcher = tmp_path / "launch.py"
    launcher.write_text(RECORDING_LAUNCHER)
    writes = tmp_path / "writes"
    r = _torchrun([str(launcher), *common, "--resume"], tmp_path, WRITES_LOG=str(writes))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "done: models in" in r.stdout

    # One writer: rank 1 moved no file into place; rank 0 wrote every state and model.
    assert Path(f"{writes}.rank1").read_text() == ""
    written = {Path(p).relative_to(out).as_posix() for p in Path(f"{writes}.rank0").read_text().split()}
    assert {"state/stage1.pt", "models/hr.pt", "state/fsrfer.pretrain.pt", "state/fsrfer.gan.pt",
            "models/fsrfer.pt", "cache/train_features.npz", "cache/val_features.npz"} <= written
    # Same files, and the same weights as the single process within float summation order; metrics
    # all-reduced (the losses match).
    assert_same_training(ref, out, ATOL, loss_rtol=1e-5)


# -- the helpers, single-process and without a process group -------------------------------------

def test_helpers_are_no_ops_in_one_process():
    assert distributed.context() == distributed.DistContext() and not distributed.context().distributed
    assert distributed.is_main() and distributed.world_size() == 1
    assert distributed.shard_slice(32) == slice(None)
    stats = {"loss": 1.5}
    assert distributed.all_reduce_mean(stats) is stats
    assert distributed.all_reduce_sum([1.0, 2]) == [1.0, 2]
    assert distributed.broadcast(7) == 7
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    assert distributed.wrap_ddp(m) is m and type(m[1]) is torch.nn.BatchNorm2d
    assert distributed.main_first(lambda: 3) == 3
    distributed.check_global_batch(30, 10, "stage1.batch_size")  # nothing to check in one process


def test_init_from_env_without_torchrun_is_single_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init_from_env() == distributed.DistContext()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE='two'"):
        distributed.init_from_env()
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(ConfigError, match="device 'gpu'"):
        distributed.init_from_env("gpu")


def test_global_batch_must_split_over_the_processes(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    with pytest.raises(ConfigError, match="stage1.batch_size = 30 does not split over 4 processes"):
        distributed.check_global_batch(30, 1000, "stage1.batch_size")
    with pytest.raises(ConfigError, match="fewer than one global batch"):
        distributed.check_global_batch(32, 20, "stage1.batch_size")
    distributed.check_global_batch(32, 1000, "stage1.batch_size")


@pytest.mark.parametrize("offset,size,total", [(0, 16, 32), (16, 16, 32), (8, 8, 32), (96, 32, 128)])
def test_shard_rand_generator_gives_the_single_process_draws(offset, size, total):
    """The WGAN-div interpolation weights of rows offset..offset+size of a global batch are the ones a
    single process draws for those rows, and the default generator ends where it would."""
    torch.manual_seed(123)
    full = torch.rand(total, 1)
    after = torch.rand(5)
    torch.manual_seed(123)
    g = distributed.shard_rand_generator(offset, total)
    assert torch.equal(torch.rand(size, 1, generator=g), full[offset:offset + size])
    assert torch.equal(torch.rand(5), after)
