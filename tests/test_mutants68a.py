"""Tests that kill hand-made mutants (round 68, task K68a) of what a lent GPU machine runs: scripts/device_runs.sh
(every job checked before any starts, a test evaluation refused on a pack without the test rows, the HR network,
data, budget and the tree's code reaching each job, the gpu-marked tests only, a broken pack stopping the call
with its log packed, each run's config in the tarball), scripts/device_reproduce.sh (only this call's files
packed, packed again after reproduce.sh's exit, its exit status passed on (3 = continue), the budget reaching
reproduce.sh, a new default only; and `collect`: logs not unpacked, both model files replaced, targets then
tables regenerated, a near-miss path refused), scripts/device_data.py (--with-test keeps the test rows),
scripts/device_report.py (failed gpu tests counted, the GPU and versions read, a log without a summary refused)
and scripts/early_g.py (seed 0 overriding the config's, the run resumed with its budget, an extracted HR network
kept, nothing written at the budget, the JSON of the config's split with protocols (b) and (c)). Fake pythons,
a fake reproduce.sh and tiny synthetic arrays in temporary folders only."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from _scripts import load_script

REPO = Path(__file__).resolve().parents[1]


def _data() -> ModuleType:
    return load_script("scripts/device_data.py", "device_data_68a")


def _report() -> ModuleType:
    return load_script("scripts/device_report.py", "device_report_68a")


def _write_fer(path: Path) -> np.ndarray:
    """A tiny fer2013.npz (8 faces of 6x5, two of them test rows); returns its images."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (8, 6, 5), dtype=np.uint8)
    split = np.array(["train", "test", "val", "train", "train", "test", "val", "train"])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=images, labels=np.arange(8, dtype=np.int8) % 7, split=split,
             orig_row=np.arange(8, dtype=np.int32))
    return images


def _names(tarball: Path) -> set[str]:
    with tarfile.open(tarball) as t:
        return set(t.getnames())


# ---------------------------------------------------------------------------------------------------------------
# scripts/device_runs.sh, each step's python a fake (PYTHON) that records its arguments and environment

FAKE_RUNS_PYTHON = """#!{exe}
import json, os, subprocess, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({{"args": args, "pythonpath": os.environ.get("PYTHONPATH", "")}}) + "\\n")
def opt(name):
    return args[args.index(name) + 1]
if args[:1] == ["-"] and len(args) > 1:  # a check with arguments: the real interpreter
    sys.exit(subprocess.run([sys.executable, *args], stdin=sys.stdin).returncode)
elif args[:1] == ["-"]:
    print("checks ran")
elif args[:2] == ["-m", "pytest"]:
    print("2 passed")
elif args[:1] == ["scripts/device_data.py"]:
    if os.environ.get("FAKE_UNPACK_FAILS"):
        print("broken pack: images.xz is truncated")
        sys.exit(1)
    Path(args[3]).parent.mkdir(parents=True, exist_ok=True)
    Path(args[3]).write_bytes(b"faces")
else:  # -m trainer.cli or scripts/early_g.py
    out = Path(opt("--out"))
    if out.name == os.environ.get("FAKE_FAILS"):
        print("Traceback: the run failed")
        sys.exit(1)
    if out.name == os.environ.get("FAKE_STOPS"):  # fsrfer-train stopped at its budget
        sys.exit(3)
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text("{{}}")
    if args[:2] == ["-m", "trainer.cli"]:
        (out / "models" / "hr.pt").write_text("hr")
    else:
        (out / "models" / "fsrfer.pt").write_text("g")
        (out / "eval" / "val").mkdir(parents=True, exist_ok=True)
        (out / "eval" / "val" / "results.json").write_text("{{}}")
        Path(opt("--json")).write_text("{{}}")
"""


def _runs_env(tmp_path: Path, jobs: str, **extra: str) -> dict[str, str]:
    fake = tmp_path / "python"
    if not fake.exists():
        fake.write_text(FAKE_RUNS_PYTHON.format(exe=sys.executable))
        fake.chmod(0o755)
    pack = tmp_path / "pack"
    pack.mkdir(exist_ok=True)
    (pack / "ferplus_labels.npz").write_bytes(b"votes of this pack")
    (tmp_path / "hr.pt").write_text("the carried HR network")
    return {**os.environ, "PYTHON": str(fake), "FAKE_LOG": str(tmp_path / "calls.log"), "DATA_PACK": str(pack),
            "RESULTS_DIR": str(tmp_path / "out"), "WORK": str(tmp_path / "w"), "HR_CKPT": str(tmp_path / "hr.pt"),
            "RUN_MIN": "1.5", "JOBS": jobs, "PYTHONPATH": str(tmp_path / "elsewhere"),
            **extra}


def _device_runs(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "scripts/device_runs.sh"], check=False, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def _calls(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "calls.log").read_text().splitlines()]


def _opt(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize("ferplus", ["", "elsewhere.npz"])
def test_device_runs_refuses_missing_ferplus_labels_before_anything_starts(tmp_path, ferplus):
    # session 69 (note68's item): the labels' copy went unchecked; the jobs failed after the data was unpacked
    env = _runs_env(tmp_path, "configs/tiny.yaml:0")
    (tmp_path / "pack" / "ferplus_labels.npz").unlink()
    if ferplus:
        env["FERPLUS"] = str(tmp_path / ferplus)
    r = _device_runs(env)
    assert r.returncode == 2 and "expected the FER+ labels" in r.stderr
    assert not (tmp_path / "calls.log").exists() and not (tmp_path / "w").exists()
    if ferplus:  # FERPLUS naming a file that is there is enough
        (tmp_path / ferplus).write_bytes(b"votes")
        assert _device_runs(env).returncode == 0


def test_device_runs_gives_each_job_the_carried_hr_network_the_data_its_budget_and_this_trees_code(tmp_path):
    # kills: --hr "$HR_CKPT" dropped (the shipped default's HR network), --data/--time-budget dropped, the
    # PYTHONPATH export dropped, FERPLUS copied from the wrong name, `-m gpu` dropped, config.json not packed
    r = _device_runs(_runs_env(tmp_path, "configs/tiny.yaml:0 configs/tiny.yaml:2:stage1,stage2,eval"))
    assert r.returncode == 0, r.stderr
    w = tmp_path / "w"
    calls = _calls(tmp_path)
    g = [c["args"] for c in calls if c["args"][:1] == ["scripts/early_g.py"]]
    s1 = [c["args"] for c in calls if c["args"][:2] == ["-m", "trainer.cli"]]
    assert len(g) == 1 and len(s1) == 1
    assert _opt(g[0], "--hr") == str(tmp_path / "hr.pt")
    assert "--hr" not in s1[0]  # a stage-1 job trains its own
    for args, name in ((g[0], "tiny_s0"), (s1[0], "tiny_s2")):
        assert _opt(args, "--data") == str(w / "data" / "fer2013.npz")
        assert _opt(args, "--time-budget") == "1.5"
        assert _opt(args, "--out") == str(w / "runs" / name)
    assert _opt(g[0], "--json") == str(w / "res" / "tiny_s0.json")
    for c in calls:  # every step imports this tree's package first, before what the caller's PYTHONPATH names
        if c["args"][:1] != ["-"] or len(c["args"]) == 1:  # (a check of the jobs' arguments imports from its cwd)
            assert c["pythonpath"].split(":")[0] == str(REPO), c
    assert (w / "data" / "ferplus_labels.npz").read_bytes() == b"votes of this pack"
    pytest_call = [c["args"] for c in calls if c["args"][:2] == ["-m", "pytest"]]
    assert len(pytest_call) == 1 and _opt(pytest_call[0][2:], "-m") == "gpu"
    assert {"tests/test_tensorrt_gpu.py", "tests/test_train_device.py"} <= set(pytest_call[0])
    names = _names(tmp_path / "out" / "results.tar.gz")
    assert {"runs/tiny_s0/config.json", "runs/tiny_s2/config.json", "runs/tiny_s0/eval/val/results.json",
            "logs/pytest_gpu.log", "logs/unpack.log"} <= names


def test_device_runs_stops_at_a_broken_pack_and_still_returns_its_log(tmp_path):
    # kills: the unpack's `exit 1` dropped (jobs train on no data), its `pack` dropped (nothing comes back)
    r = _device_runs(_runs_env(tmp_path, "configs/tiny.yaml:0", FAKE_UNPACK_FAILS="1"))
    assert r.returncode == 1
    assert "broken pack" in r.stdout
    assert not (tmp_path / "w" / "runs").exists()
    assert not any(c["args"][:1] == ["scripts/early_g.py"] for c in _calls(tmp_path))
    names = _names(tmp_path / "out" / "results.tar.gz")
    assert {"logs/unpack.log", "logs/checks.log"} <= names


def test_device_runs_exits_1_naming_a_failed_job_after_packing_its_log(tmp_path):
    # a job that failed (a traceback) showed only in its log: the call exited 0, as after a clean run. Now 1, the
    # job named on stderr, its log packed; a stage-1 job stopped at its budget (exit 3) is not a failure
    r = _device_runs(_runs_env(tmp_path, "configs/tiny.yaml:0 configs/tiny.yaml:1 configs/tiny.yaml:2:stage1",
                               FAKE_FAILS="tiny_s1", FAKE_STOPS="tiny_s2"))
    assert r.returncode == 1, r.stderr
    assert "failed: tiny_s1 (exit 1, logs/tiny_s1.log)" in r.stderr
    assert "tiny_s0" not in r.stderr.split("failed:")[1] and "tiny_s2" not in r.stderr.split("failed:")[1]
    names = _names(tmp_path / "out" / "results.tar.gz")
    assert {"logs/tiny_s1.log", "runs/tiny_s0/eval/val/results.json"} <= names
    (tmp_path / "stopped").mkdir()
    r = _device_runs(_runs_env(tmp_path / "stopped", "configs/tiny.yaml:0 configs/tiny.yaml:2:stage1",
                               FAKE_STOPS="tiny_s2"))
    assert r.returncode == 0 and "failed" not in r.stderr, r.stderr


def test_device_runs_trains_stage1_jobs_without_an_hr_checkpoint(tmp_path):
    # kills: the HR_CKPT check skipped for stage2 jobs instead of stage1 ones (a screen of HR recipes refused)
    env = _runs_env(tmp_path, "configs/tiny.yaml:3:stage1 configs/tiny.yaml:4:stage1,stage2,eval")
    del env["HR_CKPT"]
    r = _device_runs(env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "tiny_s3.hr.pt").read_text() == "hr"
    assert (tmp_path / "out" / "tiny_s4.hr.pt").read_text() == "hr"


@pytest.mark.parametrize("jobs", ["configs/tiny.yaml", "configs/tiny.yaml:", "configs/tiny.yaml::stage2"])
def test_device_runs_refuses_a_job_without_a_seed(tmp_path, jobs):
    # kills: the seed's pattern ^[0-9]+$ loosened to ^[0-9]*$ (a job with --seed '' fails only once started)
    r = _device_runs(_runs_env(tmp_path, f"configs/tiny.yaml:1 {jobs}"))
    assert r.returncode == 2 and "expected CONFIG:SEED" in r.stderr
    assert not (tmp_path / "w").exists()


@pytest.mark.needs("torch", "yaml")
def test_device_runs_refuses_a_test_evaluation_on_a_pack_without_the_test_rows(tmp_path):
    # the defect of round 68a (/work/notes/fix68a.patch): the pack's test rows unpack as zeros, and a job with
    # eval-test (or eval of a config whose eval.split is test) ran on them and reported their accuracy
    fer = tmp_path / "data" / "fer2013.npz"
    _write_fer(fer)
    env = _runs_env(tmp_path, "")
    _data().main(["pack", str(fer), env["DATA_PACK"]])
    test_cfg = tmp_path / "tiny_test.yaml"
    test_cfg.write_text((REPO / "configs" / "tiny.yaml").read_text() + "  split: test\n")
    for jobs in ("configs/tiny.yaml:0 configs/tiny.yaml:1:stage2,eval-test", f"{test_cfg}:0"):
        r = _device_runs({**env, "JOBS": jobs})
        assert r.returncode == 2 and "--with-test" in r.stderr, (jobs, r.stderr)
        assert not (tmp_path / "w").exists()  # refused before anything started
    r = _device_runs({**env, "JOBS": "configs/tiny.yaml:0 configs/tiny.yaml:1:stage2,baselines,eval"})
    assert r.returncode == 0, r.stderr  # val only: the pack serves
    shutil.rmtree(tmp_path / "w")
    _data().main(["pack", str(fer), env["DATA_PACK"], "--with-test"])
    r = _device_runs({**env, "JOBS": f"configs/tiny.yaml:1:stage2,eval-test {test_cfg}:0"})
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------------------------------------------
# scripts/device_reproduce.sh in a small tree of its own, with a fake scripts/reproduce.sh

FAKE_REPRODUCE = """#!/usr/bin/env bash
echo "reproduce $* budget=$FSRFER_TIME_BUDGET data=$FSRFER_DATA runs=$RUNS"
touch reproduce_ran
mkdir -p results/new && echo '{"new": true}' > results/new/val.json
echo "a new table" >> README.md
if [ -n "${FAKE_DEFAULT:-}" ]; then echo onnx > fsrfer_edge/models/default.onnx; fi
exit "${FAKE_RC:-0}"
"""


def _tree(root: Path) -> Path:
    """A tree with device_reproduce.sh, device_data.py, setup.py and a fake reproduce.sh; its files written
    before the call are an hour old."""
    (root / "scripts").mkdir(parents=True)
    for f in ("scripts/device_reproduce.sh", "scripts/device_data.py", "setup.py"):
        shutil.copy(REPO / f, root / f)
    (root / "scripts" / "reproduce.sh").write_text(FAKE_REPRODUCE)
    for f, text in (("results/old/val.json", "{}"), ("README.md", "readme\n"), ("docs/experiments.md", "x\n"),
                    ("fsrfer_edge/models/MODEL_CARD.md", "card\n"), ("fsrfer_edge/models/default.pt", "old pt"),
                    ("fsrfer_edge/models/default.onnx", "old onnx")):
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text(text)
        os.utime(root / f, (1e9, 1e9))
    return root


def _reproduce_call(root: Path, tmp_path: Path, pack: Path, out: str, **extra: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "python"  # the real one, but for the seconds-long imports of the checks (torch, onnxsim)
    fake.write_text(f'#!/bin/sh\ncase "$2" in *onnxsim*|*torch*) exit 0 ;; esac\nexec "{sys.executable}" "$@"\n')
    fake.chmod(0o755)
    env = {**os.environ, "DATA_PACK": str(pack), "RESULTS_DIR": str(tmp_path / out), "WORK": str(tmp_path / "w"),
           "RUN_MIN": "0.5", "PYTHON": str(fake), **extra}
    return subprocess.run(["bash", "scripts/device_reproduce.sh", "ci"], check=False, cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)


def test_device_reproduce_packs_this_calls_files_after_the_run_and_passes_its_exit_status_on(tmp_path):
    # kills: the --with-test check's `exit 2` dropped, `-newer "$STAMP"` dropped (every file of results/ packed),
    # rc read after the echo (0 instead of 3), `exit "$rc"` as 0, the pack after reproduce.sh dropped,
    # FSRFER_TIME_BUDGET not passed, the default copied whether or not this call wrote it
    root = _tree(tmp_path / "there")
    fer = tmp_path / "data" / "fer2013.npz"
    images = _write_fer(fer)
    pack = tmp_path / "pack"
    _data().main(["pack", str(fer), str(pack)])
    (pack / "ferplus_labels.npz").write_bytes(b"votes")
    r = _reproduce_call(root, tmp_path, pack, "out0")
    assert r.returncode == 2 and "--with-test" in r.stderr
    assert not (root / "reproduce_ran").exists()
    assert "logs/checks.log" in _names(tmp_path / "out0" / "results.tar.gz")

    _data().main(["pack", str(fer), str(pack), "--with-test"])
    r = _reproduce_call(root, tmp_path, pack, "out1", FAKE_RC="3")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "make the same call again" in r.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "w" / "data" / "fer2013.npz")["images"], images)
    assert (tmp_path / "w" / "data" / "ferplus_labels.npz").read_bytes() == b"votes"
    out = tmp_path / "out1"
    with tarfile.open(out / "results.tar.gz") as t:
        names = set(t.getnames())
        log = t.extractfile("logs/reproduce.log").read().decode()  # type: ignore[union-attr]
    assert {"results/new/val.json", "README.md", "logs/reproduce.log", "logs/checks.log"} <= names
    assert not {"results/old/val.json", "docs/experiments.md", "fsrfer_edge/models/MODEL_CARD.md"} & names
    assert "reproduce ci budget=0.5 data=" + str(tmp_path / "w" / "data") in log
    assert "reproduce.sh ci exited 3" in log  # packed after reproduce.sh's end, not only by the packer
    assert not (out / "default.pt").exists() and not (out / "default.onnx").exists()

    r = _reproduce_call(root, tmp_path, pack, "out2", FAKE_DEFAULT="1")
    assert r.returncode == 0 and "collect FILES_AT" in r.stdout
    assert (tmp_path / "out2" / "default.onnx").read_text() == "onnx\n"
    assert not (tmp_path / "out2" / "default.pt").exists()  # the old one stays here
    r = _reproduce_call(root, tmp_path, pack, "out3", FAKE_RC="1")
    assert r.returncode == 1 and "failed (exit 1)" in r.stdout


def _collect_tree(root: Path) -> Path:
    _tree(root)
    for name in ("targets", "readme_tables"):
        (root / "scripts" / f"{name}.py").write_text(f"open('regenerated.txt', 'a').write('{name}\\n')\n")
    return root


def _files_at(d: Path, members: dict[str, str]) -> Path:
    d.mkdir(parents=True)
    with tarfile.open(d / "results.tar.gz", "w:gz") as t:
        for name, text in members.items():
            f = d / "member"
            f.write_text(text)
            t.add(f, arcname=name)
            f.unlink()
    return d


def test_collect_unpacks_results_not_logs_replaces_both_models_and_regenerates_targets_then_tables(tmp_path):
    # kills: logs/ extracted into the checkout, default.pt/.onnx swapped or not copied, targets.py or
    # readme_tables.py not run (or tables before targets), the file count taking logs in
    here = _collect_tree(tmp_path / "here")
    src = _files_at(tmp_path / "files", {"results/x/val.json": '{"x": 1}', "README.md": "new readme\n",
                                         "docs/experiments.md": "new\n", "logs/reproduce.log": "log\n"})
    (src / "default.onnx").write_text("new onnx")
    (src / "default.pt").write_text("new pt")
    r = subprocess.run(["bash", "scripts/device_reproduce.sh", "collect", str(src)], check=False, cwd=here, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (here / "results" / "x" / "val.json").read_text() == '{"x": 1}'
    assert (here / "README.md").read_text() == "new readme\n"
    assert not (here / "logs").exists()
    assert (here / "fsrfer_edge" / "models" / "default.onnx").read_text() == "new onnx"
    assert (here / "fsrfer_edge" / "models" / "default.pt").read_text() == "new pt"
    assert not list((here / "fsrfer_edge" / "models").glob("*.part"))
    assert (here / "regenerated.txt").read_text() == "targets\nreadme_tables\n"
    assert "unpacked 3 files" in r.stdout


def test_collect_refuses_a_missing_tarball_and_a_near_miss_path_before_regenerating_anything(tmp_path):
    # kills: the missing-tarball check dropped, the `$` after README\.md dropped in the allowed paths
    here = _collect_tree(tmp_path / "here")
    (tmp_path / "empty").mkdir()
    for src, msg in ((tmp_path / "empty", "results.tar.gz is missing"),
                     (_files_at(tmp_path / "files", {"README.md.sh": "rm -rf /\n", "results/a.json": "{}"}),
                      "unexpected paths")):
        r = subprocess.run(["bash", "scripts/device_reproduce.sh", "collect", str(src)], check=False, cwd=here,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and msg in r.stderr, r.stderr
    assert not (here / "README.md.sh").exists() and not (here / "results" / "a.json").exists()
    assert not (here / "regenerated.txt").exists()


# ---------------------------------------------------------------------------------------------------------------
# scripts/device_data.py

def test_device_data_with_test_packs_every_row(tmp_path):
    # kills: --with-test ignored (keep always split != test): reproduce.sh's test split would be zeros
    fer = tmp_path / "fer2013.npz"
    images = _write_fer(fer)
    mod = _data()
    assert mod.main(["pack", str(fer), str(tmp_path / "pack"), "--with-test"]) == 0
    assert np.load(tmp_path / "pack" / "meta.npz")["keep"].all()
    mod.main(["unpack", str(tmp_path / "pack"), str(tmp_path / "out.npz")])
    np.testing.assert_array_equal(np.load(tmp_path / "out.npz")["images"], images)


# ---------------------------------------------------------------------------------------------------------------
# scripts/device_report.py

CHECKS = ("Mon Dec  7 10:00:00 UTC 2026\nGPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)\n"
          "torch 2.11.0+cu130 cuda 13.0 gpu NVIDIA H100 80GB HBM3\ncuda-bindings 13.3.1\n"
          "memory layer cuda-python identity DeviceIdentity(compute_capability='9.0', name='NVIDIA H100 80GB HBM3', "
          "multiprocessors=132, memory_gib=79) key nvidia-h100-132sm-79g\n")


def _call(d: Path, tests: str) -> Path:
    (d / "logs").mkdir(parents=True)
    (d / "logs" / "checks.log").write_text(CHECKS)
    (d / "logs" / "pytest_gpu.log").write_text(tests)
    return d


def test_device_report_counts_failed_gpu_tests_and_reads_the_gpu_and_versions(tmp_path):
    # kills: `failed` dropped from the counted outcomes, the GPU line's name or the versions read from the wrong
    # field, the command naming CALL_DIR0
    a = _call(tmp_path / "a", "FAILED tests/test_train_device.py::test_x - AssertionError\n"
                              "===== 1 failed, 3 passed, 2 skipped in 4.20s =====\n")
    b = _call(tmp_path / "b", "===== 4 passed, 1 error in 1.00s =====\n")
    out = tmp_path / "r.json"
    assert _report().main([str(a), str(b), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["command"] == f"python scripts/device_report.py CALL_DIR1 CALL_DIR2 --json {out}"
    first, second = doc["calls"]
    assert first["call"] == "a" and second["call"] == "b"
    assert first["gpu_tests"]["failed"] == 1 and first["gpu_tests"]["passed"] == 3 and first["gpu_tests"]["skipped"] == 2
    assert second["gpu_tests"]["error"] == 1 and second["gpu_tests"]["passed"] == 4
    assert first["gpu"] == "NVIDIA H100 80GB HBM3"
    assert first["torch"] == "2.11.0+cu130" and first["cuda_bindings"] == "13.3.1"
    assert first["cuda_layer"]["memory_gib"] == 79 and first["cuda_layer"]["compute_capability"] == "9.0"


def test_device_report_refuses_a_test_log_without_a_summary(tmp_path):
    # kills: the "no pytest summary line" check dropped (an IndexError, or a call of a killed pytest read as empty)
    d = _call(tmp_path / "c", "tests/test_tensorrt_gpu.py ...\n")
    with pytest.raises(SystemExit, match="no pytest summary line"):
        _report().main([str(d), "--json", str(tmp_path / "r.json")])
    assert not (tmp_path / "r.json").exists()


# ---------------------------------------------------------------------------------------------------------------
# scripts/early_g.py, its training pipeline replaced by recorders

@pytest.fixture()
def early_g(tmp_path, monkeypatch) -> tuple[ModuleType, dict[str, Any]]:
    import trainer.train

    mod = load_script("scripts/early_g.py", "early_g_68a")
    seen: dict[str, Any] = {"extracted": 0, "done": True}

    def extract(src, dst, cfg):
        seen["extracted"] += 1
        seen["hr_src"] = src

    def run(cfg, data, out, **kw):
        seen.update(cfg=cfg, out=out, **kw)
        if seen["done"] and "eval" in kw["steps"]:
            ev = out / "eval" / cfg.eval.split
            ev.mkdir(parents=True, exist_ok=True)
            for p in ("", "_small", "_camera"):
                (ev / f"results{p}.json").write_text(json.dumps({"protocol": p.strip("_") or "resized"}))
        return seen["done"]

    monkeypatch.setattr(mod, "extract_hr", extract)
    monkeypatch.setattr(trainer.train, "load_data", lambda c, path: "data")
    monkeypatch.setattr(trainer.train, "run_pipeline", run)
    (tmp_path / "g.yaml").write_text("name: g\nseed: 5\ndata: {synthetic: 200}\nmodel: {backbone: tiny, head_hidden: 16}\n"
                                     "eval: {split: test}\n")
    return mod, seen


@pytest.mark.needs("torch", "yaml")
def test_early_g_takes_seed_0_over_the_configs_and_resumes_with_its_budget(tmp_path, early_g):
    # kills: `if args.seed is not None` as `if args.seed` (a device job's seed 0 ran the config's seed 5),
    # resume=False, the time budget or the steps not passed on
    mod, seen = early_g
    assert mod.main(["--config", str(tmp_path / "g.yaml"), "--seed", "0", "--out", str(tmp_path / "run"),
                     "--hr", str(tmp_path / "hr.pt"), "--steps", "stage2,eval", "--time-budget", "2.5"]) == 0
    assert seen["cfg"].seed == 0
    assert seen["resume"] is True and seen["time_budget_min"] == 2.5 and seen["steps"] == ("stage2", "eval")
    assert seen["hr_src"] == tmp_path / "hr.pt" and seen["extracted"] == 1
    mod.main(["--config", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "run2")])
    assert seen["cfg"].seed == 5 and seen["steps"] == ("stage2", "ablations", "baselines", "eval")


@pytest.mark.needs("torch", "yaml")
def test_early_g_keeps_an_extracted_hr_network_and_writes_no_json_at_the_budget(tmp_path, early_g, capsys):
    # kills: the HR network extracted again over a resumed run's, the `return 0` at the budget dropped (a
    # stale or missing results.json read), the JSON written before the run finished
    mod, seen = early_g
    (tmp_path / "run" / "models").mkdir(parents=True)
    (tmp_path / "run" / "models" / "hr.pt").write_text("extracted by the first call")
    seen["done"] = False
    out = tmp_path / "res.json"
    assert mod.main(["--config", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "run"), "--json", str(out)]) == 0
    assert seen["extracted"] == 0
    assert not out.exists() and "stopped at the time budget" in capsys.readouterr().out


@pytest.mark.needs("torch", "yaml")
def test_early_g_json_holds_the_configs_split_and_protocols_b_and_c(tmp_path, early_g):
    # kills: eval/<split> read as eval/val, the keys results_small/results_camera or hr_checkpoint renamed
    mod, _ = early_g
    out = tmp_path / "res.json"
    hr = str(tmp_path / "carried_hr.pt")
    assert mod.main(["--config", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "run"), "--json", str(out),
                     "--hr", hr]) == 0
    doc = json.loads(out.read_text())
    assert doc["hr_checkpoint"] == hr and doc["config"]["eval"]["split"] == "test"
    assert doc["results"] == {"protocol": "resized"}
    assert doc["results_small"] == {"protocol": "small"} and doc["results_camera"] == {"protocol": "camera"}


@pytest.mark.needs("torch", "yaml")
def test_early_g_json_without_an_eval_step_is_skipped_not_a_traceback(tmp_path, early_g, capsys):
    # device_runs.sh passes --json to every job; a job CONFIG:SEED:stage2 (train a model to keep, evaluate later)
    # ended in a FileNotFoundError traceback after its training, for want of OUT/eval/<split>/results.json
    mod, _ = early_g
    out = tmp_path / "res.json"
    assert mod.main(["--config", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "run"), "--json", str(out),
                     "--steps", "stage2"]) == 0
    assert not out.exists()
    err = capsys.readouterr().err
    assert "no evaluation to copy" in err and str(out) in err
