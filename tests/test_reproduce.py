"""scripts/reproduce.sh through scripts/device_reproduce.sh, as a lent GPU machine runs it, on a copy of
this checkout: a full run and the shipped default's chain (`default`) with tiny configs on a small data
set in the real files' format, stopped at the time budget and continued, then collected into another copy.
About a minute and a half on a 2-core CPU."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from trainer.synthetic import make_faces

REPO = Path(__file__).resolve().parents[1]

FULL = """name: ci_full
seed: 0
threads: 2
data: {labels: ferplus}
model: {backbone: tiny, head_hidden: 32}
stage1: {epochs: 15, batch_size: 32, lr: 0.05}
stage2: {pretrain_epochs: 1, epochs: 1, batch_size: 32, generator_blocks: 1, generator_growth: 16,
         critic_hidden: 32, critic_layers: 2}
baselines: {lr_finetune_epochs: 1, image_sr_epochs: 1, image_sr_width: 8, image_sr_blocks: 2}
eval: {batch_size: 128}
"""
# the shipped default's stage 2 (early G from the stem, FiLM, camera-like degradations), small
EARLY_G = """name: ci_g
seed: 0
threads: 2
data: {labels: ferplus, soft_labels: true}
model: {backbone: tiny, head_hidden: 32}
degrade: {kernels: [box, bilinear, bicubic], jpeg_prob: 0.5, jpeg_quality: [30, 95]}
stage2: {feature_level: layer2, generator_start: stem, scale_aware: true, copy_batchnorm: train,
         generator_blocks: 1, generator_growth: 16, critic_hidden: 32, critic_layers: 2, pretrain_epochs: 1,
         epochs: 1, batch_size: 32, losses: {distill: 1.0, reconstruction: 3000.0}, ablations: []}
baselines: {run: [lr_finetune], lr_finetune_epochs: 2}
eval: {split: val, batch_size: 128, protocols: [resized, small, camera]}
"""


def _copy_checkout(dst: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if not name or name.startswith("fsrfer_edge/models/default."):  # the chain writes its own
            continue
        src = REPO / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            (dst / name).write_bytes(src.read_bytes())
    (dst / "configs" / "ci_full.yaml").write_text(FULL)
    (dst / "configs" / "ci_g.yaml").write_text(EARLY_G)
    with open(dst / "docs" / "experiments.md", "a") as f:  # where the full runs' blocks live
        f.write("\n<!-- results:ci_full:val -->\n<!-- /results -->\n<!-- results:ci_full:test -->\n<!-- /results -->\n")
    return dst


def _write_data(d: Path, n: int = 600) -> None:
    """fer2013.npz and ferplus_labels.npz as ../shared/data has them, with drawn faces."""
    images, labels = make_faces(n, seed=1)
    rng = np.random.default_rng(0)
    votes = np.zeros((n, 10), np.uint8)
    col_of = {c: i for i, c in enumerate((6, 3, 5, 4, 0, 1, 2))}
    votes[np.arange(n), [col_of[int(c)] for c in labels]] = 7
    votes[np.arange(n), rng.integers(0, 7, n)] += 3
    split = np.array(["train"] * (n - 200) + ["val"] * 100 + ["test"] * 100)
    d.mkdir(parents=True)
    rows = np.arange(n, dtype=np.int32)
    np.savez(d / "fer2013.npz", images=images, labels=labels.astype(np.int8), split=split, orig_row=rows)
    np.savez(d / "ferplus_labels.npz", orig_row=rows, votes=votes, labels=labels.astype(np.int8), split=split)


def _device_call(repo: Path, tmp: Path, pack: Path, out: str, run_min: str, *names: str) -> subprocess.CompletedProcess:
    # As on the lent machine, the package's fsrfer-* commands are not on PATH (only a python that imports it):
    # the script makes them from setup.py's entry points.
    bin_ = tmp / "bin"
    if not bin_.is_dir():
        bin_.mkdir()
        (bin_ / "python3").symlink_to(sys.executable)
    env = {**os.environ, "DATA_PACK": str(pack), "RESULTS_DIR": str(tmp / out), "WORK": str(tmp / "w"),
           "RUN_MIN": run_min, "DEFAULT_HR_CONFIG": "configs/ci_full.yaml", "DEFAULT_G_CONFIG": "configs/ci_g.yaml",
           "PATH": f"{bin_}:/usr/bin:/bin"}
    return subprocess.run(["bash", "scripts/device_reproduce.sh", *names], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=900)


def test_reproduce_runs_there_stops_at_the_budget_continues_and_comes_back(tmp_path):
    repo = _copy_checkout(tmp_path / "there")
    _write_data(tmp_path / "data")
    pack = tmp_path / "pack"
    dd = [sys.executable, str(REPO / "scripts" / "device_data.py"), "pack", str(tmp_path / "data" / "fer2013.npz")]
    # without the test rows: refused before anything runs (reproduce.sh reports the test split)
    subprocess.run([*dd, str(tmp_path / "pack_no_test")], check=True, capture_output=True)
    (tmp_path / "pack_no_test" / "ferplus_labels.npz").write_bytes((tmp_path / "data" / "ferplus_labels.npz").read_bytes())
    r = _device_call(repo, tmp_path, tmp_path / "pack_no_test", "out0", "5", "ci_full")
    assert r.returncode == 2 and "--with-test" in r.stderr
    assert not (tmp_path / "w" / "runs").exists()

    subprocess.run([*dd, str(pack), "--with-test"], check=True, capture_output=True)
    (pack / "ferplus_labels.npz").write_bytes((tmp_path / "data" / "ferplus_labels.npz").read_bytes())
    # a budget of a second or two (whole seconds, so at least one is left when training starts): training stops
    # at an epoch end, in stage 1 or, on a fast machine, a later stage; the call says to call again
    r = _device_call(repo, tmp_path, pack, "out1", "0.02", "ci_full", "default")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "make the same call again" in r.stdout
    assert {"fsrfer-train", "fsrfer-eval", "fsrfer-export", "fsrfer-bench"} <= {p.name for p in (tmp_path / "w" / "bin").iterdir()}
    with tarfile.open(tmp_path / "out1" / "results.tar.gz") as t:
        assert "logs/reproduce.log" in t.getnames()
        assert "stopped at the time budget" in t.extractfile("logs/reproduce.log").read().decode()
    # the same call again, with time enough: it continues to the end of both targets
    r = _device_call(repo, tmp_path, pack, "out2", "10", "ci_full", "default")
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    log = (tmp_path / "w" / "logs" / "reproduce.log").read_text()
    # The stopped work continued instead of starting over: the second call's ci_full part either resumes the stage
    # the budget stopped, or, where the budget ran out between models (a fast machine trains stage 1 within it),
    # starts with the one the first call stopped before, or, where it ran out between steps, trains nothing again
    # before its next step.
    first, second = log.split("exited 3", 1)
    ci_full = second.split("done: models in", 1)[0]
    started = re.search(r"(\w+)[.\w]* epoch 1/\d+", ci_full)
    assert (re.search(r"\w+: resumed after epoch \d+ ", ci_full) or not started
            or started.group(1) in re.findall(r"stopped before (\w+)", first)), ci_full
    out = tmp_path / "out2"
    with tarfile.open(out / "results.tar.gz") as t:
        names = set(t.getnames())
    for f in ("results/ci_full/test.json", "results/ci_full/test_onnx_int8-u8s8.json", "README.md", "docs/experiments.md",
              "results/default_model/test_camera.json", "results/default_model/baseline_test_small.json",
              "results/default_model/reproduced_val.json", "fsrfer_edge/models/MODEL_CARD.md"):
        assert f in names, f
    assert (out / "default.onnx").is_file() and (out / "default.pt").is_file()
    assert "Reproduced by bash scripts/reproduce.sh default" in (repo / "fsrfer_edge" / "models" / "MODEL_CARD.md").read_text()
    # the same call once more: both targets finished, and nothing they depend on changed, so neither trains,
    # evaluates or exports again
    r = _device_call(repo, tmp_path, pack, "out3", "10", "ci_full", "default")
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    third = (tmp_path / "w" / "logs" / "reproduce.log").read_text().split("exited 0", 1)[1]
    assert "ci_full: finished before" in third and "default: finished before" in third, third
    assert "epoch" not in third and "export" not in third.lower().replace("export_args", ""), third

    # here: collected into another copy, whose docs then carry the run's tables
    here = _copy_checkout(tmp_path / "here")
    r = subprocess.run(["bash", "scripts/device_reproduce.sh", "collect", str(out)], cwd=here, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (here / "results" / "ci_full" / "test_onnx_fp16.json").is_file()
    assert (here / "fsrfer_edge" / "models" / "default.onnx").read_bytes() == (out / "default.onnx").read_bytes()
    experiments = (here / "docs" / "experiments.md").read_text()
    block = experiments.split("<!-- results:ci_full:test -->")[1].split("<!-- /results -->")[0]
    assert "FSR-FER, INT8 u8s8" in block


def test_collect_refuses_a_tarball_with_other_paths(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "evil.py").write_text("x")
    with tarfile.open(out / "results.tar.gz", "w:gz") as t:
        t.add(tmp_path / "evil.py", arcname="fsrfer_edge/evil.py")
    r = subprocess.run(["bash", "scripts/device_reproduce.sh", "collect", str(out)], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "unexpected paths" in r.stderr
    assert not (REPO / "fsrfer_edge" / "evil.py").exists()


@pytest.mark.parametrize("args, msg", [(["nosuchconfig"], "configs/nosuchconfig.yaml is missing"),
                                       (["default"], "nope.yaml is missing")])
def test_reproduce_checks_every_target_before_it_starts(tmp_path, args, msg):
    _write_data(tmp_path / "data", n=250)
    env = {**os.environ, "FSRFER_DATA": str(tmp_path / "data"), "RUNS": str(tmp_path / "runs"),
           "DEFAULT_G_CONFIG": "nope.yaml"}
    r = subprocess.run(["bash", "scripts/reproduce.sh", *args], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and msg in r.stderr
    assert not (tmp_path / "runs").exists()
    r = subprocess.run(["bash", "scripts/reproduce.sh", "ferplus"], cwd=REPO, capture_output=True, text=True,
                       env={**env, "FSRFER_DATA": str(tmp_path / "nodata")}, timeout=60)
    assert r.returncode == 2 and "fer2013.npz is missing" in r.stderr
