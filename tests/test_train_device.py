"""Where the trainer trains: the ``device`` option (config key and ``--device``), and GPU training.

The CPU tests run everywhere. The ``gpu`` tests skip with a reason where torch sees no GPU (or fewer
than two, for NCCL):

- one process on one GPU: the tiny pipeline runs on ``cuda``, stops and resumes, writes checkpoints
  whose tensors are on the CPU, and its first stage-1 epoch has the CPU run's loss (same initial
  weights, same batches) within ``GPU_VS_CPU_RTOL``;
- two processes under torchrun with NCCL (one GPU each) against one GPU process: every tensor of every
  training state within ``NCCL_ATOL``. Two NCCL ranks cannot share one GPU (NCCL refuses a duplicate
  GPU in a communicator), so this test needs two GPUs. TF32 is switched off for both runs
  (``NVIDIA_TF32_OVERRIDE=0``): TF32 convolutions round to ~1e-3, which would drown the comparison.

Measured on a lent NVIDIA H200 (cuDNN's TF32 convolutions allowed, as by default), 2026-12-04, two runs:
the first-epoch loss on the GPU differed from the CPU's by under 1e-6 relative
(``results/device/h200_checks.json``), so ``GPU_VS_CPU_RTOL`` is 1e-4 (it was 1e-2 before any GPU ran it). ``NCCL_ATOL`` is still unmeasured:
the lent machine has one GPU, and the NCCL test needs two.
"""
import json
import shlex
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
from trainer.cli import train_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GPU_VS_CPU_RTOL = 1e-4
NCCL_ATOL = 1e-4

CONFIG = {
    "name": "device_test", "seed": 0, "threads": 1,
    "data": {"synthetic": 200},  # 140 training faces: 4 global batches of 32 per epoch
    "model": {"backbone": "tiny", "head_hidden": 32, "dropout": 0.0},  # dropout masks differ per device
    "stage1": {"epochs": 2, "batch_size": 32, "lr": 0.05},
    "stage2": {"pretrain_epochs": 1, "epochs": 2, "batch_size": 32, "generator_blocks": 1, "generator_growth": 16,
               "critic_hidden": 32, "critic_layers": 2, "ablations": []},
    "baselines": {"run": [], "lr_finetune_epochs": 1, "image_sr_epochs": 1, "image_sr_width": 8, "image_sr_blocks": 2},
    "eval": {"batch_size": 128, "factors": [1, 4]},
}


def _write_config(path, **over):
    path.write_text(yaml.safe_dump({**CONFIG, **over}))
    return path


def _no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# -- the option -------------------------------------------------------------------------------

def test_device_option_is_validated():
    assert config.from_dict({}).device == "auto"
    for d in ("auto", "cpu", "cuda"):
        assert config.from_dict({"device": d}).device == d
    with pytest.raises(ConfigError, match=r"device must be one of \['auto', 'cpu', 'cuda'\], got 'gpu'"):
        config.from_dict({"device": "gpu"})
    with pytest.raises(ConfigError, match="device: expected a string"):
        config.from_dict({"device": 0})


def test_auto_resolves_to_what_torch_sees(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.resolve_device("auto") == "cuda"
    _no_cuda(monkeypatch)
    assert config.resolve_device("auto") == "cpu"
    assert config.resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="received device 'cuda:0'"):
        config.resolve_device("cuda:0")


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch, tmp_path, capsys):
    _no_cuda(monkeypatch)
    with pytest.raises(ConfigError, match=r"device 'cuda' was asked for but torch.cuda.is_available\(\) is False"):
        config.resolve_device("cuda")
    # through the CLI: from the config, and from --device overriding a config that says cpu
    for cfg_device, flag in (("cuda", []), ("cpu", ["--device", "cuda"])):
        cfg = _write_config(tmp_path / f"{cfg_device}.yaml", device=cfg_device)
        assert train_main(["--config", str(cfg), "--out", str(tmp_path / "out"), *flag]) == 2
        err = capsys.readouterr().err
        assert "error: device 'cuda' was asked for" in err and "use device 'cpu'" in err, err
    assert not (tmp_path / "out").exists()  # refused before any work


def test_device_flag_overrides_the_config(monkeypatch, tmp_path):
    _no_cuda(monkeypatch)
    cfg = _write_config(tmp_path / "c.yaml", device="cuda", stage1={**CONFIG["stage1"], "epochs": 1})
    out = tmp_path / "out"
    assert train_main(["--config", str(cfg), "--out", str(out), "--device", "cpu", "--steps", "stage1"]) == 0
    assert json.loads((out / "config.json").read_text())["device"] == "cpu"  # the resolved device is recorded
    assert checkpoint.load(out / "models" / "hr.pt")["meta"]["config"]["device"] == "cpu"


def test_seed_flag_overrides_the_config(monkeypatch, tmp_path, capsys):
    _no_cuda(monkeypatch)
    cfg = _write_config(tmp_path / "c.yaml", stage1={**CONFIG["stage1"], "epochs": 1})
    out = tmp_path / "out"
    assert train_main(["--config", str(cfg), "--out", str(out), "--seed", "7", "--steps", "stage1"]) == 0
    assert json.loads((out / "config.json").read_text())["seed"] == 7
    assert checkpoint.load(out / "models" / "hr.pt")["meta"]["config"]["seed"] == 7
    with pytest.raises(SystemExit):
        train_main(["--config", str(cfg), "--out", str(tmp_path / "neg"), "--seed", "-1"])
    assert "--seed -1: expected an integer >= 0" in capsys.readouterr().err
    assert not (tmp_path / "neg").exists()


def test_a_run_stopped_by_its_budget_names_the_command_that_continues_it(monkeypatch, tmp_path, capsys):
    _no_cuda(monkeypatch)
    cfg = _write_config(tmp_path / "c.yaml", stage1={**CONFIG["stage1"], "epochs": 2})
    out = tmp_path / "out dir"
    args = ["--config", str(cfg), "--out", str(out), "--seed", "7", "--steps", "stage1", "--time-budget", "1e-6"]
    assert train_main(args) == 3
    hint = capsys.readouterr().err.split("continue with: ")[1].strip()
    again = shlex.split(hint)
    assert again[0] == "fsrfer-train" and again[1:] == [*args, "--resume"]   # seed and steps kept, path quoted
    assert train_main(again[1:]) == 0                                       # and it finishes the run
    assert json.loads((out / "config.json").read_text())["seed"] == 7


def test_device_must_match_the_process_group(monkeypatch):
    distributed.check_device("cuda")  # one process: nothing to match
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_backend", lambda *a: "gloo")
    distributed.check_device("cpu")
    with pytest.raises(ConfigError, match="training device 'cuda' under a gloo process group; expected nccl"):
        distributed.check_device("cuda")


def test_to_cpu_keeps_cpu_objects_as_they_are():
    sd = torch.nn.BatchNorm2d(3).state_dict()
    assert checkpoint.to_cpu(sd) is sd and hasattr(sd, "_metadata")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1, momentum=0.9).state_dict()
    assert checkpoint.to_cpu(opt) is opt
    payload = {"a": [1, (torch.zeros(1), "x")], "b": None}
    assert checkpoint.to_cpu(payload) is payload


# -- on GPUs ------------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA GPU")


def _all_tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _all_tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _all_tensors(v)


@pytest.mark.gpu
@needs_cuda
def test_tiny_training_on_one_gpu(tmp_path):
    cfg = _write_config(tmp_path / "c.yaml", baselines={**CONFIG["baselines"], "run": ["lr_finetune", "image_sr"]})
    gpu, cpu = tmp_path / "gpu", tmp_path / "cpu"
    args = ["--config", str(cfg), "--steps", "stage1,stage2,baselines,eval"]
    # Stopped after stage 1's first epoch, then resumed on the GPU (optimiser states go back to the GPU).
    assert train_main([*args, "--out", str(gpu), "--device", "cuda", "--time-budget", "1e-6"]) == 3
    assert train_main([*args, "--out", str(gpu), "--device", "cuda", "--resume"]) == 0
    assert json.loads((gpu / "config.json").read_text())["device"] == "cuda"
    names = {p.stem for p in (gpu / "models").glob("*.pt")}
    assert names == {"hr", "fsrfer", "lr_finetune", "image_sr"}
    # Every checkpoint holds CPU tensors only: it loads where there is no GPU.
    for p in [*(gpu / "models").glob("*.pt"), *(gpu / "state").glob("*.pt")]:
        tensors = list(_all_tensors(torch.load(p, weights_only=True)))
        assert tensors and all(t.device.type == "cpu" for t in tensors), p
    model, _, _ = checkpoint.load_model(gpu / "models" / "fsrfer.pt")
    assert next(model.parameters()).device.type == "cpu"
    res = json.loads((gpu / "eval" / "val" / "results.json").read_text())
    assert set(res) == names and all(0.0 <= r["mean_accuracy"] <= 1.0 for r in res.values())
    g = checkpoint.load(gpu / "state" / "fsrfer.gan.pt", kind="state")["modules"]["g"]
    assert float(g["proj.weight"].abs().max()) > 1e-3  # G trained
    # Same initial weights and batches as on the CPU: the first epoch's loss agrees up to float rounding.
    assert train_main(["--config", str(cfg), "--steps", "stage1", "--out", str(cpu), "--device", "cpu"]) == 0
    h_gpu = checkpoint.load(gpu / "models" / "hr.pt")["meta"]["history"]
    h_cpu = checkpoint.load(cpu / "models" / "hr.pt")["meta"]["history"]
    print(f"GPU vs CPU first-epoch loss: {h_gpu[0]['loss']!r} vs {h_cpu[0]['loss']!r}, "
          f"relative difference {abs(h_gpu[0]['loss'] - h_cpu[0]['loss']) / abs(h_cpu[0]['loss']):.2e}")
    assert h_gpu[0]["loss"] == pytest.approx(h_cpu[0]["loss"], rel=GPU_VS_CPU_RTOL)


def _train_subprocess(launcher, args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NVIDIA_TF32_OVERRIDE": "0",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, *launcher, "-m", "trainer.cli", *args], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_nccl_available()),
                    reason="this torch build has no NCCL backend")
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs one GPU per process: fewer than 2 GPUs visible")
@needs_cuda  # the closest skip is reported first
def test_two_gpu_processes_with_nccl_match_one_gpu(tmp_path):
    cfg = _write_config(tmp_path / "c.yaml")
    common = ["--config", str(cfg), "--steps", "stage1,stage2", "--device", "cuda"]
    one, two = tmp_path / "one", tmp_path / "two"
    _train_subprocess([], [*common, "--out", str(one)])
    r = _train_subprocess(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
                          [*common, "--out", str(two)])
    assert "done: models in" in r.stdout
    assert_same_training(one, two, NCCL_ATOL, loss_rtol=1e-4)
