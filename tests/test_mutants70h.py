"""Tests that kill hand-made mutants (round 70, task K70h) of the benchmarks and small report scripts, a second pass
after round 68: benchmarks/stage2_step.py (its worker: the steps timed after the warm-up, the config's rates, batch,
factors and feature levels, the threads; refusals of bad counts before any work, the --worker mode, the command, the
config and the load average before and after the rounds recorded), benchmarks/linear_precheck.py (its worker's warm
call and medians in milliseconds, each batch's pixels for the check, the model timed only when asked; the batches it
builds; the worker's command; refusals before the worktree; the load average at each round's start and the options
recorded), scripts/bench_backbones.py (the threads given to torch and ONNX Runtime, the warm-up inference run, the
versions recorded), scripts/min_versions.sh (both venvs in order, each with its pinned versions, the egg-info put
back, a failing check failing the run), scripts/trt_op_tables.py (a failing git read writes no table),
scripts/estimator_contrast.py (scale_contrast's rounding about each face's mean; main's command, data, factors and
refusal of a checkpoint without an estimator), scripts/factor_estimator_report.py (--split, several protocols, a
missing file refused) and scripts/score_reliability.py (main: every protocol and factor, softmax scores, the record
and the refusal of data without votes). Tiny synthetic configs, reports and arrays, fake workers, clocks, sessions
and pythons only."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from _scripts import REPO, load_script


# ==================================================================================================================
# benchmarks/stage2_step.py
# ==================================================================================================================
def _s2() -> ModuleType:
    return load_script("benchmarks/stage2_step.py", "stage2_step_70h")


TINY_CONFIG = """name: tiny70h
model:
  backbone: tiny
  head_hidden: 8
stage2:
  feature_level: layer2
  generator_start: stem
  scale_aware: {scale_aware}
  copy_batchnorm: train
  generator_blocks: 1
  generator_growth: 4
  batch_size: 7
  lr_g: 0.003
  lr_d: 0.0007
"""


@pytest.mark.needs("torch")
@pytest.mark.parametrize("scale_aware", [True, False])
def test_stage2_step_worker_times_the_steps_after_warmup_with_the_configs_rates_batch_and_levels(
        scale_aware: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: a warm-up step timed (i > warmup) or the warm-up steps not run; the threads not set; G's and D's rates
    # swapped or betas left out; the batch size not the config's; the factors dropped for a scale-aware G (or given
    # to one that is not); the LR features taken at G's output level and the HR ones at its start
    import torch

    from trainer import train

    s2 = _s2()
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(scale_aware=str(scale_aware).lower()))
    clock = SimpleNamespace(now=0.0)
    durations = iter([100.0, 100.0, 1.0, 30.0, 2.0])  # two warm-up steps, then the three timed
    seen: dict[str, Any] = {"calls": []}

    class FakeStep:
        def __init__(self, head: Any, g: Any, d: Any, losses: Any, opt_g: Any, opt_d: Any) -> None:
            seen.update(g=g, opt_g=opt_g, opt_d=opt_d, losses=losses)
            self.factor: Any = "unset"

        def __call__(self, f_lr: Any, f_hr: Any, labels: Any) -> None:
            seen["calls"].append((tuple(f_lr.shape), tuple(f_hr.shape), tuple(labels.shape), self.factor))
            clock.now += next(durations)

    monkeypatch.setattr(train, "Stage2Step", FakeStep)
    monkeypatch.setattr(s2, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    monkeypatch.setattr(sys, "path", list(sys.path))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = s2.worker(REPO, config, 3, 2, 1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert got == {"median_s": 2.0, "steps": 3}
    assert len(seen["calls"]) == 5
    g_group, d_group = seen["opt_g"].param_groups[0], seen["opt_d"].param_groups[0]
    assert (g_group["lr"], d_group["lr"]) == (0.003, 0.0007)
    assert g_group["betas"] == d_group["betas"] == (0.0, 0.9)
    assert {id(p) for p in g_group["params"]} == {id(p) for p in seen["g"].parameters()}
    from trainer.models import FERNet

    trunk = FERNet("tiny").trunk
    x = torch.zeros(1, 1, 48, 48)
    stem, level = tuple(trunk.forward_to(x, "stem").shape[1:]), tuple(trunk.forward_to(x, "layer2").shape[1:])
    assert stem != level
    f_lr, f_hr, labels, factor = seen["calls"][-1]
    assert (f_lr, f_hr, labels) == ((7, *stem), (7, *level), (7,))
    if scale_aware:
        assert factor.dtype == torch.float32 and factor.tolist() == [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 1.0]
    else:
        assert factor is None


@pytest.mark.parametrize("bad", [["--steps", "0"], ["--rounds", "0"], ["--warmup", "-1"]])
def test_stage2_step_refuses_bad_counts_before_any_work(bad: list[str], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: "< 1" loosened to "< 0" for --steps or --rounds, the --warmup check dropped, the check made after the
    # worktree is added; and (the accepted case) "< 1" tightened to "<= 1" or --warmup 0 refused
    s2 = _s2()
    calls: list[list[str]] = []

    def run(cmd: list[str], **kw: Any) -> Any:
        calls.append(cmd)
        return SimpleNamespace(returncode=1, stderr="no such revision", stdout="")

    monkeypatch.setattr(s2, "subprocess", SimpleNamespace(run=run))
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(SystemExit, match="--steps and --rounds must be >= 1, --warmup >= 0"):
        s2.main([*bad, "--out", str(tmp_path / "s2.json")])
    assert calls == []
    with pytest.raises(SystemExit, match="git worktree add failed: no such revision"):  # accepted: on to git
        s2.main(["--steps", "1", "--rounds", "1", "--warmup", "0", "--out", str(tmp_path / "s2.json")])
    assert len(calls) == 1


def test_stage2_step_records_the_command_the_config_and_the_load_average_before_and_after_the_rounds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the command read from sys.argv when main() is given its arguments; the config recorded absolute when in
    # the repository (or relative outside); the end load average taken at the start (or both before the rounds)
    s2 = _s2()
    workers: list[str] = []

    def run_worker(src: Path, config: Path, steps: int, warmup: int, threads: int) -> dict[str, Any]:
        workers.append(str(config))
        return {"median_s": 0.1, "steps": steps}

    monkeypatch.setattr(s2, "subprocess", SimpleNamespace(run=lambda *a, **k: SimpleNamespace(returncode=0, stderr="")))
    monkeypatch.setattr(s2, "run_worker", run_worker)
    monkeypatch.setitem(sys.modules, "edge_budget", SimpleNamespace(loadavg=lambda: [float(len(workers))] * 3))
    monkeypatch.setattr(sys, "path", list(sys.path))
    out = tmp_path / "s2.json"
    argv = ["--rounds", "2", "--threads", "1", "--out", str(out)]
    assert s2.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["command"] == "python benchmarks/stage2_step.py " + " ".join(argv)
    assert doc["config"] == s2.CONFIG and workers[0] == str(REPO / s2.CONFIG)
    assert doc["load_average"] == {"start": [0.0] * 3, "end": [4.0] * 3}
    assert doc["cpu_count"] == os.cpu_count()
    outside = tmp_path / "c.yaml"
    outside.write_text("name: c\n")
    assert s2.main(["--rounds", "1", "--config", str(outside), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["config"] == str(outside) and workers[-1] == str(outside)


def test_stage2_step_worker_mode_writes_the_workers_answer_with_its_options(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: --worker's options passed to worker() in another order; its answer not written to --out
    s2 = _s2()
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(s2, "worker", lambda *a: seen.append(a) or {"median_s": 0.5, "steps": a[2]})
    out = tmp_path / "one.json"
    assert s2.main(["--worker", str(tmp_path), "--config", str(tmp_path / "c.yaml"), "--steps", "3", "--warmup", "1",
                    "--threads", "4", "--out", str(out)]) == 0
    assert seen == [(tmp_path, tmp_path / "c.yaml", 3, 1, 4)]
    assert json.loads(out.read_text()) == {"median_s": 0.5, "steps": 3}


def test_stage2_step_run_worker_names_a_worker_that_wrote_nothing(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: a missing answer file read after exit 0 (a FileNotFoundError for the message); silent stderr's fallback
    s2 = _s2()
    monkeypatch.setattr(s2.subprocess, "run", lambda cmd, **kw: SimpleNamespace(returncode=0, stderr="  \n"))
    with pytest.raises(RuntimeError, match=r"\(exit 0\): no output"):
        s2.run_worker(tmp_path, tmp_path / "c.yaml", 1, 0, 1)


def test_stage2_step_workers_read_a_relative_config_from_the_callers_folder(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # a defect (fix: /work/notes/fix70h.patch): a relative --config passed on as typed to workers that run in their own
    # source trees, so the "before" worker read the older revision's copy of the config (or none)
    s2 = _s2()
    seen: dict[str, Any] = {}

    def run(cmd: list[str], **kw: Any) -> Any:
        seen.update(config=cmd[cmd.index("--config") + 1], cwd=kw["cwd"])
        Path(cmd[cmd.index("--out") + 1]).write_text(json.dumps({"median_s": 0.1, "steps": 1}))
        return SimpleNamespace(returncode=0, stderr="")

    monkeypatch.setattr(s2.subprocess, "run", run)
    monkeypatch.chdir(tmp_path)
    s2.run_worker(tmp_path / "before", Path("configs") / "c.yaml", 1, 0, 1)
    assert seen["cwd"] == str(tmp_path / "before")
    assert Path(seen["cwd"]) / seen["config"] == tmp_path / "configs" / "c.yaml"


# ==================================================================================================================
# benchmarks/linear_precheck.py
# ==================================================================================================================
def _lp() -> ModuleType:
    return load_script("benchmarks/linear_precheck.py", "linear_precheck_70h")


@pytest.mark.parametrize("model_time", [False, True])
def test_linear_precheck_worker_times_medians_in_ms_after_a_warm_call(model_time: bool,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the untimed warm call dropped; a mean for the median; seconds for milliseconds; one repeat too few; the
    # check fed (N, H, W) pixels rather than (N, 1, H, W); the model timed when not asked; the threads not passed on;
    # the check timed on prepare
    import fsrfer_edge
    from fsrfer_edge import preprocessing

    lp = _lp()
    clock = SimpleNamespace(now=0.0)
    rng = np.random.default_rng(0)
    batch = {"a": rng.integers(0, 256, (3, 48, 48), dtype=np.uint8), "b": rng.integers(0, 256, (3, 48, 48), dtype=np.uint8)}
    # per function: the warm call (slow), then the three timed calls
    durations = {"prepare a": iter([100.0, 0.001, 0.009, 0.005]), "prepare b": iter([100.0, 0.002, 0.004, 0.003, 7.0]),
                 "check": iter([50.0, 0.01, 0.05, 0.03, 50.0, 0.2, 0.1, 0.3]),
                 "model": iter([9.0, 0.02, 0.07, 0.04])}
    seen: dict[str, Any] = {"check_shapes": set()}

    class FakeRecognizer:
        def __init__(self, threads: int) -> None:
            seen["threads"] = threads

        def __enter__(self) -> "FakeRecognizer":
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

        def prepare(self, b: np.ndarray) -> str:
            name = "a" if b is batch["a"] else "b"
            clock.now += next(durations[f"prepare {name}"])
            return f"x {name}"

        def predict_logits(self, x: str) -> None:
            seen["model_input"] = x
            clock.now += next(durations["model"])

    def check(pixels: np.ndarray) -> bool:
        seen["check_shapes"].add(pixels.shape)
        clock.now += next(durations["check"])
        return False

    monkeypatch.setattr(fsrfer_edge, "Recognizer", FakeRecognizer)
    monkeypatch.setattr(preprocessing, "any_linear_enlarging", check)
    monkeypatch.setattr(lp, "batches", lambda data, n: batch)
    monkeypatch.setattr(lp, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    monkeypatch.setattr(sys, "path", list(sys.path))
    out = lp.worker(lp.REPO, Path("unused.npz"), 3, 3, 5, model_time)
    assert seen["threads"] == 5 and seen["check_shapes"] == {(3, 1, 48, 48)}
    assert out["prepare_ms"] == pytest.approx({"a": 5.0, "b": 3.0})
    assert out["check_ms"] == pytest.approx({"a": 30.0, "b": 200.0})
    if model_time:
        assert out["model_ms"] == pytest.approx(40.0) and seen["model_input"] == "x b"
    else:
        assert "model_ms" not in out and "model_input" not in seen


def test_linear_precheck_batches_shrink_val_faces_by_area_and_enlarge_them_back_each_way(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: another split or labels; more faces than --batch; the faces shrunk to another size or by another
    # interpolation; a kind enlarged with another kind's flag; the names
    import cv2

    from fsrfer_edge import ferplus

    lp = _lp()
    faces = np.random.default_rng(1).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(ferplus, "load_labelled_faces",
                        lambda data, labels, split: seen.append((data, labels, split)) or SimpleNamespace(images=faces))
    got = lp.batches(Path("d.npz"), 3)
    assert seen == [(Path("d.npz"), "ferplus", "val")]
    assert list(got) == ["as they are"] + [f"{k} from x{f}" for f in (2, 4, 8) for k in ("bicubic", "lanczos", "bilinear")]
    np.testing.assert_array_equal(got["as they are"], faces[:3])
    for f in (2, 4, 8):
        small = [cv2.resize(im, (48 // f, 48 // f), interpolation=cv2.INTER_AREA) for im in faces[:3]]
        for kind, flag in (("bicubic", cv2.INTER_CUBIC), ("lanczos", cv2.INTER_LANCZOS4), ("bilinear", cv2.INTER_LINEAR)):
            want = np.stack([cv2.resize(s, (48, 48), interpolation=flag) for s in small])
            np.testing.assert_array_equal(got[f"{kind} from x{f}"], want)


def test_linear_precheck_run_worker_passes_the_options_and_reads_the_last_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: an option left out or swapped; --model-time passed always or never; the first output line read (a
    # library's own print before the answer); a failed worker read as an answer
    lp = _lp()
    seen: list[list[str]] = []
    rc = {"rc": 0}

    def run(cmd: list[str], **kw: Any) -> Any:
        seen.append(cmd)
        return SimpleNamespace(returncode=rc["rc"], stdout='a warning\n{"prepare_ms": {"x": 1.5}}\n', stderr="boom")

    monkeypatch.setattr(lp, "subprocess", SimpleNamespace(run=run))
    args = SimpleNamespace(data=Path("/data/d.npz"), batch=8, repeats=4, threads=3)
    assert lp.run_worker(Path("/src"), args, model_time=True) == {"prepare_ms": {"x": 1.5}}
    cmd = seen[-1]
    assert [cmd[cmd.index(o) + 1] for o in ("--worker", "--data", "--batch", "--repeats", "--threads")] == \
        ["/src", "/data/d.npz", "8", "4", "3"]
    assert "--model-time" in cmd
    lp.run_worker(Path("/src"), args, model_time=False)
    assert "--model-time" not in seen[-1]
    rc["rc"] = 1
    with pytest.raises(SystemExit, match="worker for /src failed: boom"):
        lp.run_worker(Path("/src"), args, model_time=False)


def test_linear_precheck_workers_read_a_relative_data_path_from_the_callers_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a defect (fix: /work/notes/fix70h.patch): main checks a relative --data in the caller's folder, then passes it
    # on as typed to workers that run in the temporary folder, where it names another file (or none)
    lp = _lp()
    seen: dict[str, Any] = {}

    def run(cmd: list[str], **kw: Any) -> Any:
        seen.update(data=cmd[cmd.index("--data") + 1], cwd=kw["cwd"])
        return SimpleNamespace(returncode=0, stdout="{}", stderr="")

    monkeypatch.setattr(lp, "subprocess", SimpleNamespace(run=run))
    monkeypatch.chdir(tmp_path)
    lp.run_worker(Path("/src"), SimpleNamespace(data=Path("data") / "fer2013.npz", batch=8, repeats=4, threads=3), False)
    assert Path(seen["cwd"]) / seen["data"] == tmp_path / "data" / "fer2013.npz"


def test_linear_precheck_refuses_missing_data_and_a_bad_out_before_the_worktree(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the data check dropped (git and the workers run, to fail later); --out not checked before the rounds
    from fsrfer_edge.errors import InputError

    lp = _lp()
    calls: list[Any] = []
    monkeypatch.setattr(lp, "subprocess", SimpleNamespace(run=lambda *a, **k: calls.append(a) or
                                                         SimpleNamespace(returncode=1, stderr="unknown revision")))
    with pytest.raises(SystemExit, match="does not exist"):
        lp.main(["--data", str(tmp_path / "none.npz"), "--out", str(tmp_path / "o.json")])
    data = tmp_path / "fer2013.npz"
    data.write_bytes(b"not read")
    with pytest.raises(InputError, match="is a directory"):
        lp.main(["--data", str(data), "--out", str(tmp_path)])
    assert calls == []


def test_linear_precheck_records_each_rounds_load_options_machine_and_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the load average read once (or at a round's end), the 5- for the 1-minute one, unrounded; an option
    # recorded with another's value; the machine left out; the command read from sys.argv
    from fsrfer_edge import bench

    lp = _lp()
    data = tmp_path / "fer2013.npz"
    data.write_bytes(b"not read: the workers are fakes")
    n = {"workers": 0}

    def run_worker(src: Path, args: Any, model_time: bool) -> dict[str, Any]:
        n["workers"] += 1
        doc: dict[str, Any] = {"prepare_ms": {"x": 1.0}, "check_ms": {"x": 0.1}}
        if model_time:
            doc["model_ms"] = 10.0
        return doc

    monkeypatch.setattr(lp, "subprocess", SimpleNamespace(run=lambda *a, **k: SimpleNamespace(returncode=0, stderr="")))
    monkeypatch.setattr(lp, "run_worker", run_worker)
    monkeypatch.setattr(lp, "os", SimpleNamespace(getloadavg=lambda: (n["workers"] + 0.12345, 9.0, 9.0)))
    monkeypatch.setattr(bench, "machine_info", lambda: {"cpu": "fake"})
    out = tmp_path / "lp.json"
    argv = ["--data", str(data), "--rounds", "3", "--batch", "7", "--repeats", "5", "--threads", "1",
            "--before", "abc", "--out", str(out)]
    assert lp.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["load_1min"] == [0.12, 2.12, 4.12] == [r["load_1min"] for r in doc["raw_rounds"]]
    assert (doc["before"], doc["batch"], doc["rounds"], doc["repeats"], doc["threads"]) == ("abc", 7, 3, 5, 1)
    assert doc["machine"] == {"cpu": "fake"}
    assert doc["command"] == "python benchmarks/linear_precheck.py " + " ".join(argv)


# ==================================================================================================================
# scripts/bench_backbones.py
# ==================================================================================================================
@pytest.mark.needs("torch")
@pytest.mark.needs("onnx")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the script's TorchScript export (dynamo=False)
def test_bench_backbones_gives_the_threads_to_both_runtimes_warms_the_session_and_records_versions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: --threads not given to torch or to ONNX Runtime's session; the untimed warm-up run dropped; the threads,
    # torch or onnxruntime versions recorded wrong; the backbones not split on commas
    import onnxruntime as ort
    import torch

    bb = load_script("scripts/bench_backbones.py", "bench_backbones_70h")
    seen: dict[str, Any] = {"torch_threads": [], "sessions": []}
    real_session = ort.InferenceSession

    class Session:
        def __init__(self, path: str, so: Any, providers: list[str]) -> None:
            self.inner = real_session(path, so, providers=providers)
            self.runs: list[tuple[int, ...]] = []
            seen["sessions"].append((so.intra_op_num_threads, providers, self.runs))

        def run(self, names: Any, feed: dict[str, np.ndarray]) -> Any:
            self.runs.append(feed["faces"].shape)
            return self.inner.run(names, feed)

    monkeypatch.setattr(ort, "InferenceSession", Session)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen["torch_threads"].append(n))
    out = tmp_path / "bb.json"
    assert bb.main(["--json", str(out), "--backbones", "tiny,tiny", "--threads", "3"]) == 0
    doc = json.loads(out.read_text())
    assert seen["torch_threads"] == [3]
    assert [(s[0], s[1]) for s in seen["sessions"]] == [(3, ["CPUExecutionProvider"])] * 2
    assert all(s[2] == [(64, 1, 48, 48)] * 6 for s in seen["sessions"])
    assert (doc["threads"], doc["torch"], doc["onnxruntime"]) == (3, torch.__version__, ort.__version__)
    assert list(doc["backbones"]) == ["tiny"] and doc["machine"]


# ==================================================================================================================
# scripts/min_versions.sh
# ==================================================================================================================
#: A python for min_versions.sh: logs its arguments; `-m venv DIR` makes DIR/bin/python a copy of itself; the editable
#: install rewrites the checkout's egg-info (as setuptools does); a call matching $FAKE_FAIL fails.
FAKE_PYTHON = r'''#!/usr/bin/env bash
echo "$(basename "$(dirname "$(dirname "$0")")") $*" >> "$FAKE_LOG"
if [ "${1:-}" = -m ] && [ "${2:-}" = venv ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; fi
if [ "${1:-}" = -m ] && [ "${2:-}" = pip ] && [ -d "${!#}/fsrfer_edge.egg-info" ]; then
    echo rewritten > "${!#}/fsrfer_edge.egg-info/PKG-INFO"
fi
if [ -n "${FAKE_FAIL:-}" ] && [[ "$*" == *"$FAKE_FAIL"* ]]; then exit 1; fi
exit 0
'''


def _min_versions(tmp_path: Path, *args: str, fail: str = "") -> tuple[subprocess.CompletedProcess[str], list[str]]:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "scripts" / "min_versions.sh", root / "scripts")
    (root / "fsrfer_edge.egg-info").mkdir(exist_ok=True)
    (root / "fsrfer_edge.egg-info" / "PKG-INFO").write_text("as it was\n")
    for v in ("py38", "py311"):  # a "system" python of each version, in a folder named for its log lines
        (tmp_path / "sys" / v / "bin").mkdir(parents=True, exist_ok=True)
        py = tmp_path / "sys" / v / "bin" / "python"
        py.write_text(FAKE_PYTHON)
        py.chmod(0o755)
    log = tmp_path / "py.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "FAKE_LOG": str(log), "FAKE_FAIL": fail, "MINVER_DIR": str(tmp_path / "venvs"),
           "PYTHON38": str(tmp_path / "sys" / "py38" / "bin" / "python"),
           "PYTHON311": str(tmp_path / "sys" / "py311" / "bin" / "python")}
    r = subprocess.run(["bash", str(root / "scripts" / "min_versions.sh"), *args], env=env, capture_output=True,
                       text=True, timeout=60)
    return r, log.read_text().splitlines() if log.exists() else []


def test_min_versions_makes_both_venvs_in_order_with_their_pinned_versions_and_puts_the_egg_info_back(
        tmp_path: Path) -> None:
    # kills: the default list losing a venv or its order; a pinned version changed; wheels-only dropped; the
    # repository installed with its dependencies; onnxruntime installed with its own (numpy >= 1.24.2 on 3.11); the
    # demo's Pillow 9.0.0 step skipped; the venvs made outside MINVER_DIR; the egg-info not put back
    r, log = _min_versions(tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("min_versions: all checks passed")
    root = tmp_path / "repo"
    venvs = tmp_path / "venvs"
    assert log[:3] == ["py38 -c ", "py38 -c ", f"py38 -m venv {venvs / 'py38'}"]  # found, then its venv first
    assert f"py38 -m pip install -q --no-deps -e {root}" in log
    assert ("py38 -m pip install -q --only-binary=:all: numpy==1.22.0 onnxruntime==1.16.0 "
            "opencv-python-headless==4.5.1.48 pillow==9.2.0 scikit-image==0.19.0 pytest>=7") in log
    demo = log.index("py38 -m pip install -q --only-binary=:all: --no-deps pillow==9.0.0")
    assert log[demo + 1] == "py38 -m pytest -q -p no:cacheprovider tests/test_demo.py tests/test_crowd_review62.py"
    tests = [ln for ln in log if " -m pytest -q -p no:cacheprovider -rs " in ln]
    assert [ln.split()[0] for ln in tests] == ["py38", "py311"]
    assert "tests/test_recognizer*.py" in tests[0] and "tests/test_untrusted_files64.py" in tests[0]
    first_311 = next(i for i, ln in enumerate(log) if ln.startswith("py311"))
    assert first_311 > demo and log[first_311] == f"py311 -m venv {venvs / 'py311'}"
    assert ("py311 -m pip install -q --only-binary=:all: numpy==1.23.2 opencv-python-headless==4.5.5.64 "
            "pillow==9.2.0 scikit-image==0.20.0 pytest>=7 coloredlogs flatbuffers packaging protobuf sympy") in log
    assert "py311 -m pip install -q --only-binary=:all: --no-deps onnxruntime==1.16.0" in log
    assert (root / "fsrfer_edge.egg-info" / "PKG-INFO").read_text() == "as it was\n"
    r, log = _min_versions(tmp_path, "py311 py38")  # as named, in that order
    assert r.returncode == 0 and log[0] == f"py311 -m venv {venvs / 'py311'}" and log[-1].startswith("py38 ")


@pytest.mark.parametrize("fail", ["-m pytest -q -p no:cacheprovider -rs", "-m pip install -q --only-binary"])
def test_min_versions_stops_at_a_failing_check_or_install(fail: str, tmp_path: Path) -> None:
    # kills: set -e (or the whole set -euo pipefail line) dropped: a failing test run or install said to pass
    r, log = _min_versions(tmp_path, "py311", fail=fail)
    assert r.returncode != 0 and "all checks passed" not in r.stdout
    assert fail in log[-1]


# ==================================================================================================================
# scripts/trt_op_tables.py
# ==================================================================================================================
def test_trt_op_tables_write_no_table_when_git_cannot_read_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: check=True dropped on git show or rev-parse (an empty table or an empty commit written)
    mod = load_script("scripts/trt_op_tables.py", "trt_op_tables_70h")

    for failing in ("show", "rev-parse"):
        def git(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
            done = subprocess.CompletedProcess(cmd, 128 if cmd[3] == failing else 0,
                                               "| Abs | Y | FP32 | |\n" if cmd[3] == "show" else "abc\n", "fatal")
            if kwargs.get("check"):
                done.check_returncode()
            return done

        out = tmp_path / failing
        monkeypatch.setattr(mod, "OUT", out)
        monkeypatch.setattr(mod, "REPO", tmp_path)
        monkeypatch.setattr(mod.subprocess, "run", git)
        with pytest.raises(subprocess.CalledProcessError):
            mod.main(["/onnx-tensorrt"])
        assert list(out.glob("*.json")) == []


# ==================================================================================================================
# scripts/estimator_contrast.py
# ==================================================================================================================
def _ec() -> ModuleType:
    return load_script("scripts/estimator_contrast.py", "estimator_contrast_70h")


def test_scale_contrast_rounds_to_nearest_about_each_faces_own_mean() -> None:
    # kills: floor (astype) for rint; one mean over all faces for each face's own
    ec = _ec()
    faces = np.array([[[0, 100], [200, 255]], [[10, 10], [10, 50]]], dtype=np.uint8)
    got = ec.scale_contrast(faces, 0.25)
    # face 0 about its mean 138.75: 104.06, 129.06, 154.06, 167.81; face 1 about 20: 17.5 (x3), 27.5 (to even)
    np.testing.assert_array_equal(got, np.array([[[104, 129], [154, 168]], [[18, 18], [18, 28]]], dtype=np.uint8))
    assert got.dtype == np.uint8


class _EstModel:
    route_hr_below = 1.5

    def __init__(self) -> None:
        self.factor_estimator = object()
        self.evaluated = False

    def eval(self) -> "_EstModel":
        self.evaluated = True
        return self


@pytest.mark.needs("torch")
def test_estimator_contrast_main_records_the_command_options_and_reads_the_split(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the command's --split / --protocol / --contrasts added when default (or left out when not); the
    # ferplus labels or the split not used; the SDK's factors, the protocol or the contrasts not passed on; the
    # model not put in eval mode; the routing threshold, n, the checksum or the load average recorded wrong
    import torch

    from trainer import checkpoint, data

    ec = _ec()
    ckpt, npz = tmp_path / "m.pt", tmp_path / "d.npz"
    ckpt.write_bytes(b"checkpoint bytes")
    npz.write_bytes(b"npz")
    model = _EstModel()
    seen: dict[str, Any] = {}
    faces = SimpleNamespace(images=np.zeros((3, 48, 48), np.uint8), labels=np.zeros(3, np.int64))

    def load_dataset(path: Path, **kw: Any) -> Any:
        seen["load"] = (path, kw)
        return SimpleNamespace(subset=lambda split: seen.update(split=split) or faces)

    def contrast_rows(m: Any, pre: Any, images: Any, labels: Any, contrasts: Any, factors: Any, protocol: str) -> Any:
        seen["rows"] = (m, pre, contrasts, factors, protocol)
        return [{"contrast": c} for c in contrasts]

    monkeypatch.setattr(checkpoint, "load_model", lambda path: (model, "PRE", {}))
    monkeypatch.setattr(data, "load_dataset", load_dataset)
    monkeypatch.setattr(ec, "contrast_rows", contrast_rows)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.update(threads=n))
    out = tmp_path / "o.json"
    common = ["--checkpoint", str(ckpt), "--data", str(npz), "--json", str(out)]
    assert ec.main(common + ["--split", "test", "--protocol", "camera", "--contrasts", "0.5", "--threads", "1"]) == 0
    doc = json.loads(out.read_text())
    assert doc["command"] == f"python scripts/estimator_contrast.py --json {out} --split test --protocol camera --contrasts 0.5"
    assert seen["load"] == (npz, {"labels": "ferplus"}) and seen["split"] == "test" and seen["threads"] == 1
    assert seen["rows"] == (model, "PRE", (0.5,), [1, 2, 3, 4, 6, 8], "camera") and model.evaluated
    assert (doc["split"], doc["n"], doc["protocol"], doc["route_hr_below"]) == ("test", 3, "camera", 1.5)
    assert doc["checkpoint_sha256"] == hashlib.sha256(b"checkpoint bytes").hexdigest()
    assert doc["rows"] == [{"contrast": 0.5}] and len(doc["load_average_at_end"]) == 3
    assert ec.main(common) == 0  # the defaults: none of them in the command
    assert json.loads(out.read_text())["command"] == f"python scripts/estimator_contrast.py --json {out}"
    assert seen["split"] == "val" and seen["rows"][2:] == (ec.CONTRASTS, [1, 2, 3, 4, 6, 8], "small")


@pytest.mark.needs("torch")
def test_estimator_contrast_refuses_a_checkpoint_without_an_estimator_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # kills: the estimator check dropped (or inverted); the output written anyway
    from trainer import checkpoint, data

    ec = _ec()
    ckpt, npz = tmp_path / "m.pt", tmp_path / "d.npz"
    ckpt.write_bytes(b"c")
    npz.write_bytes(b"d")
    model = _EstModel()
    model.factor_estimator = None  # type: ignore[assignment]
    monkeypatch.setattr(checkpoint, "load_model", lambda path: (model, "PRE", {}))
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("data loaded for a refused checkpoint"))
    out = tmp_path / "o.json"
    assert ec.main(["--checkpoint", str(ckpt), "--data", str(npz), "--json", str(out), "--threads", "2"]) == 2
    assert "has no factor estimator" in capsys.readouterr().err and not out.exists()


# ==================================================================================================================
# scripts/factor_estimator_report.py
# ==================================================================================================================
@pytest.mark.needs("torch")
def test_factor_estimator_report_reads_the_splits_results_for_several_protocols_and_refuses_a_missing_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: eval/val read whatever --split says; a row per report rather than per protocol; the accuracy rounded to
    # another precision; a missing estimated file read (a traceback) rather than refused
    from trainer import checkpoint

    rep = load_script("scripts/factor_estimator_report.py", "factor_estimator_report_70h")
    monkeypatch.setattr(checkpoint, "load", lambda path, kind: {"meta": {"factor_estimator": {"fit": 1}}})
    run = tmp_path / "run"
    (run / "config.json").parent.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"name": "r"}))
    for split, acc in (("val", 0.1), ("test", 0.61237)):
        (run / "eval" / split).mkdir(parents=True)
        for name in ("results.json", "results_camera.json"):
            a = acc if name == "results.json" else acc / 2
            (run / "eval" / split / name).write_text(json.dumps({"fsrfer": {"factors": {"4": {"accuracy": a}}}}))
    est_r, est_c = tmp_path / "r.json", tmp_path / "c.json"
    est_r.write_text(json.dumps({"factors": {"4": {"accuracy": 0.5}}}))
    est_c.write_text(json.dumps({"factors": {"4": {"accuracy": 0.25}}}))
    out = tmp_path / "o.json"
    common = ["--run", str(run), "--checkpoint", str(tmp_path / "c.pt"), "--json", str(out)]
    assert rep.main([f"resized={est_r}", f"camera={est_c}", "--split", "test", *common]) == 0
    doc = json.loads(out.read_text())
    assert doc["split"] == "test"
    assert doc["accuracy"] == {
        "resized": {"true_factor": {"4": 61.24}, "estimated_factor": {"4": 50.0}, "estimated_minus_true": {"4": -11.24}},
        "camera": {"true_factor": {"4": 30.62}, "estimated_factor": {"4": 25.0}, "estimated_minus_true": {"4": -5.62}}}
    with pytest.raises(SystemExit, match="PROTOCOL=FILE"):
        rep.main([f"resized={tmp_path / 'missing.json'}", *common])


# ==================================================================================================================
# scripts/score_reliability.py
# ==================================================================================================================
def _sr() -> ModuleType:
    return load_script("scripts/score_reliability.py", "score_reliability_70h")


def test_score_reliability_main_scores_every_protocol_and_factor_on_softmax_and_records_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: a protocol or factor left out, or another batch; logits scored without softmax; the FER+ labels not asked
    # for; the --model or --threads not passed on; the command's --split inverted; the model's path, checksum, n,
    # factors, ECE bins or load average recorded wrong
    from fsrfer_edge.confidence import ECE_BINS
    from trainer import data, evaluate

    sr = _sr()
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx bytes")
    labels = np.array([0, 1, 1, 0])
    votes = np.array([[0.7, 0.3], [0.4, 0.6], [0.1, 0.9], [1.0, 0.0]])
    faces = SimpleNamespace(images=np.zeros((4, 48, 48), np.uint8), labels=labels, targets=votes)
    seen: dict[str, Any] = {"calls": []}

    def load_npz(path: str, labels: str) -> Any:
        seen["load"] = (path, labels)
        return SimpleNamespace(subset=lambda split: seen.update(split=split) or faces)

    def protocol_logits(fn: Any, images: Any, f: int, pre: Any, p: str, batch: int) -> np.ndarray:
        seen["calls"].append((fn, f, pre, p, batch))
        return np.tile([[np.log(3.0), 0.0]], (4, 1))  # softmax: label 0 at 0.75 for every face

    monkeypatch.setattr(data, "load_npz", load_npz)
    monkeypatch.setattr(evaluate, "onnx_logits_fn", lambda path, threads: seen.update(model=(path, threads)) or ("FN", "PRE"))
    monkeypatch.setattr(evaluate, "protocol_logits", protocol_logits)
    out = tmp_path / "o.json"
    assert sr.main(["--model", str(model), "--data", "d.npz", "--split", "val", "--threads", "2", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert seen["load"] == ("d.npz", "ferplus") and seen["split"] == "val" and seen["model"] == (str(model), 2)
    assert seen["calls"] == [("FN", f, "PRE", p, 512) for p in ("small", "camera") for f in (1, 2, 3, 4, 6, 8)]
    assert doc["command"] == f"python scripts/score_reliability.py --json {out} --split val"
    assert doc["model"] == {"path": os.path.relpath(model, sr.REPO), "sha256": hashlib.sha256(b"onnx bytes").hexdigest()}
    assert (doc["split"], doc["n"], doc["factors"], doc["ece_bins"]) == ("val", 4, [1, 2, 3, 4, 6, 8], ECE_BINS)
    assert len(doc["load_average"]) == 3
    cell = doc["rows"]["camera"]["8"]
    assert set(doc["rows"]["small"]) == set(doc["rows"]["camera"]) == {"1", "2", "3", "4", "6", "8"}
    assert (cell["accuracy"], cell["mean_score"], cell["vote_share_of_label"]) == (50.0, 75.0, 55.0)
    assert sr.main(["--model", str(model), "--data", "d.npz", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["command"] == f"python scripts/score_reliability.py --json {out}"
    assert seen["split"] == "test"


def test_score_reliability_refuses_data_without_votes_before_loading_the_model(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the votes check dropped (a crash on None later, after the model is loaded)
    from trainer import data, evaluate

    sr = _sr()
    faces = SimpleNamespace(images=np.zeros((1, 48, 48), np.uint8), labels=np.zeros(1, np.int64), targets=None)
    monkeypatch.setattr(data, "load_npz", lambda path, labels: SimpleNamespace(subset=lambda split: faces))
    monkeypatch.setattr(evaluate, "onnx_logits_fn", lambda *a, **k: pytest.fail("model loaded without votes"))
    with pytest.raises(SystemExit, match="no FER\\+ votes"):
        sr.main(["--data", "d.npz", "--json", str(tmp_path / "o.json")])
    assert not (tmp_path / "o.json").exists()


# --- refused before the worktree (noticed by round 70h) ---

def test_stage2_step_refuses_a_missing_config_before_the_worktree(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    s2 = _s2()
    calls: list[Any] = []
    monkeypatch.setattr(s2, "subprocess", SimpleNamespace(run=lambda *a, **k: calls.append(a)))
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(SystemExit, match="--config .*none.yaml does not exist; expected a trainer config"):
        s2.main(["--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "s2.json")])
    assert calls == []


@pytest.mark.parametrize("bad", [["--rounds", "0"], ["--repeats", "0"], ["--batch", "0"], ["--threads", "0"]])
def test_linear_precheck_refuses_counts_under_one_before_the_worktree(
        bad: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    lp = _lp()
    calls: list[Any] = []
    monkeypatch.setattr(lp, "subprocess", SimpleNamespace(run=lambda *a, **k: calls.append(a)))
    data = tmp_path / "fer2013.npz"
    data.write_bytes(b"not read")
    with pytest.raises(SystemExit) as exc:
        lp.main([*bad, "--data", str(data), "--out", str(tmp_path / "o.json")])
    assert exc.value.code == 2 and calls == [] and f"{bad[0]} 0" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()
