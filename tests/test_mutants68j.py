"""Tests that kill hand-made mutants (round 68, task K68j) of the pipeline's shell scripts and report generator:
scripts/reproduce.sh (targets run once each and in order, fer2013's own labels, the test split evaluated for
every export, a failing or budget-stopped step ending the pipeline with its status, the time budget shared by
the training commands, the `default` chain's resume and its FSRFER_HR), scripts/report.py (the run's split,
--onnx rows keyed by their method, plots from the new results, the block found in docs/experiments.md, the
table's order and cells), scripts/early_g_seeds.sh, scripts/onnx_val.sh, scripts/device_check.sh (a failing
step recorded, the runbook going on, one JSON), scripts/min_versions.sh and scripts/test_runtime_only.sh
(their argument and venv checks). Each script runs as a temporary copy among fake fsrfer-* commands and stub
scripts that log their arguments; tiny synthetic JSON in temporary folders only."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from _scripts import load_script

REPO = Path(__file__).resolve().parents[1]

#: One fake for every command and stub script: logs [name, *args] as a JSON line, then acts by name.
FAKE = r'''#!{exe} -S
import json, os, sys
from pathlib import Path
name, args = Path(sys.argv[0]).name, sys.argv[1:]
log = Path(os.environ["FAKE_LOG"])
with open(log, "a") as f:
    f.write(json.dumps([name, *args]) + "\n")
plan = json.loads(Path(os.environ["FAKE_PLAN"]).read_text()) if os.environ.get("FAKE_PLAN") else {{}}
calls = sum(1 for ln in log.read_text().splitlines() if json.loads(ln)[0] == name)
opt = lambda o: args[args.index(o) + 1]
def touch(p, text="x"):
    Path(p).parent.mkdir(parents=True, exist_ok=True)
    Path(p).write_text(text)
if name == "fsrfer-train" and "--out" in args:  # a run's folder as training and evaluation leave it
    touch(Path(opt("--out")) / "models" / "m.pt", "m")
    touch(Path(opt("--out")) / "eval" / "val" / "results.json", "{{}}")
if name == "report.py" and "--readme-only" not in args:
    touch(Path("results") / opt("--name") / (opt("--split") + ".json"), "{{}}")
    touch(Path("results") / opt("--name") / (opt("--split") + "_accuracy_vs_factor.png"), "png")
if name == "ship_early_g.sh":  # what the ship writes
    for v in ("", "_small", "_camera", "_fp16", "_int8-s8s8", "_int8-u8s8"):
        for who in ("", "baseline_", "hr_"):
            touch(Path("results") / "default_model" / (who + "test" + v + ".json"), "{{}}")
    for f in ("default.onnx", "default.pt", "MODEL_CARD.md"):
        touch(Path("fsrfer_edge") / "models" / f, f)
if name == "fsrfer-train" and os.environ.get("FAKE_NOW"):
    now = Path(os.environ["FAKE_NOW"])
    now.write_text(str(int(now.read_text()) + plan.get("train_secs", 0)))
if name == "fsrfer-export" and "--name" in args:
    for v in ("fp32", "fp16", "int8-s8s8", "int8-u8s8"):
        touch(Path(opt("--out-dir")) / f"{{opt('--name')}}.{{v}}.onnx")
if name == "fsrfer-export" and "--engine" in args:
        touch(Path(opt("--out-dir")) / (Path(args[0]).name.replace(".onnx", "").replace("-s8s8", "") + ".sm90.engine"))
if name == "fsrfer-eval":
    touch(opt("--json"), json.dumps({{"n": 5}}))
if name == "fsrfer-bench":
    touch(opt("--json"), json.dumps({{"latency": [{{"batch_size": 1, "p50_ms": 1.5, "p99_ms": 2.0, "throughput_fps": 600}}],
                                     "accuracy": {{"per_factor": {{"4": 0.5}}}}, "providers": ["CPUExecutionProvider"]}}))
if name == "early_g.py":
    out = Path(opt("--out"))
    if out.name not in plan.get("unfinished", []):
        touch(out / "eval" / "val" / "results.json", "{{}}")
        touch(out / "config.json", json.dumps({{"seed": plan.get("seed", 0)}}))
        touch(out / "models" / "hr.pt", "hr")
        touch(out / "models" / "fsrfer.pt", "g")
        if "--json" in args:
            touch(opt("--json"), "{{}}")
if name in ("fit_factor_estimator.py", "route_hr.py"):
    touch(opt("--out"), name)
sys.exit(plan.get("rc", {{}}).get(name, [0] * calls)[calls - 1] if calls <= len(plan.get("rc", {{}}).get(name, [])) else 0)
'''

SHELL_STUB = '#!/usr/bin/env bash\nexec "$FAKE_BIN/fake" "$(basename "$0")" "$@"\n'

FAKE_DATE = '#!/usr/bin/env bash\nif [ "${1:-}" = +%s ] && [ -n "${FAKE_NOW:-}" ]; then cat "$FAKE_NOW"; else exec /bin/date "$@"; fi\n'


class Tree:
    """A temporary repository root with copies of the named scripts, stubs and fake commands on PATH."""

    def __init__(self, tmp: Path, scripts: tuple[str, ...], stubs: tuple[str, ...] = (), commands: tuple[str, ...] = ()):
        self.root, self.tmp = tmp / "repo", tmp
        (self.root / "scripts").mkdir(parents=True)
        for s in scripts:
            shutil.copy(REPO / "scripts" / s, self.root / "scripts" / s)
        self.bin = tmp / "bin"
        self.bin.mkdir()
        fake = FAKE.format(exe=sys.executable)
        (self.bin / "fake").write_text(fake)
        for name in commands:
            (self.bin / name).write_text(fake)
            (self.bin / name).chmod(0o755)
        for name in stubs:  # scripts run as `python scripts/NAME` or `bash scripts/NAME`
            p = self.root / "scripts" / name
            if name.endswith(".sh"):
                p.write_text(f'exec {sys.executable} -S "$FAKE_BIN/fake.py" "$@"\n')
            else:
                p.write_text(fake)
        # a stub run as a file keeps its own name: give the .sh stubs a named copy to exec
        (self.bin / "fake.py").write_text(fake.replace("Path(sys.argv[0]).name", "'ship_early_g.sh'"))
        (self.bin / "date").write_text(FAKE_DATE)
        (self.bin / "date").chmod(0o755)
        if not (self.bin / "python").exists():
            os.symlink(sys.executable, self.bin / "python")
        self.log = tmp / "calls.log"
        self.plan = tmp / "plan.json"
        self.now = tmp / "now"

    def run(self, script: str, *args: str, plan: dict[str, Any] | None = None, env: dict[str, str] | None = None,
            now: int | None = None) -> subprocess.CompletedProcess:
        self.plan.write_text(json.dumps(plan or {}))
        e = {**os.environ, "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}", "FAKE_LOG": str(self.log),
             "FAKE_PLAN": str(self.plan), "FAKE_BIN": str(self.bin), **(env or {})}
        for k in ("FSRFER_TIME_BUDGET", "FSRFER_HR", "FSRFER_EXPORT_ARGS"):
            if k not in (env or {}):
                e.pop(k, None)
        if now is not None:
            self.now.write_text(str(now))
            e["FAKE_NOW"] = str(self.now)
        return subprocess.run(["bash", str(self.root / "scripts" / script), *args], cwd=self.tmp, env=e,
                              capture_output=True, text=True, timeout=60)

    def calls(self, name: str | None = None) -> list[list[str]]:
        if not self.log.exists():
            return []
        rows = [json.loads(ln) for ln in self.log.read_text().splitlines()]
        return [r for r in rows if name is None or r[0] == name]

    def clear(self) -> None:
        if self.log.exists():
            self.log.unlink()


def _opt(call: list[str], o: str) -> str:
    return call[call.index(o) + 1]


# ---------------------------------------------------------------------------------------------
# scripts/reproduce.sh, its commands faked
# ---------------------------------------------------------------------------------------------
REPRO_STUBS = ("report.py", "early_g.py", "fit_factor_estimator.py", "route_hr.py", "ship_early_g.sh")


def repro_tree(tmp_path: Path) -> Tree:
    """A temporary tree for reproduce.sh (and the real done_stamp.py) among its faked commands, with its configs, a
    fake trainer.data that logs the faces it is asked for, and a data folder."""
    t = Tree(tmp_path, ("reproduce.sh", "done_stamp.py"), REPRO_STUBS, ("fsrfer-train", "fsrfer-export", "fsrfer-eval"))
    for n in ("ferplus", "fer2013", "hr_cfg", "g_cfg"):
        (t.root / "configs").mkdir(exist_ok=True)
        (t.root / "configs" / f"{n}.yaml").write_text("name: x\n")
    (t.root / "trainer").mkdir()
    (t.root / "trainer" / "__init__.py").write_text("")
    (t.root / "trainer" / "data.py").write_text(
        "import json, os, sys\nfrom types import SimpleNamespace\n"
        "def load_dataset(path, labels):\n"
        "    with open(os.environ['FAKE_LOG'], 'a') as f:\n"
        "        f.write(json.dumps(['faces', path, labels, sys.argv[3]]) + '\\n')\n"
        "    return SimpleNamespace(images=[1], labels=[2], split=['train'])\n")
    (t.tmp / "data").mkdir()
    for f in ("fer2013.npz", "ferplus_labels.npz"):
        (t.tmp / "data" / f).write_bytes(b"x")
    return t


@pytest.fixture()
def repro(tmp_path: Path) -> Tree:
    return repro_tree(tmp_path)


def _repro_env(t: Tree, **extra: str) -> dict[str, str]:
    return {"FSRFER_DATA": str(t.tmp / "data"), "RUNS": str(t.tmp / "runs"), "DEFAULT_HR_CONFIG": "configs/hr_cfg.yaml",
            "DEFAULT_G_CONFIG": "configs/g_cfg.yaml", **extra}


def test_reproduce_full_runs_each_target_once_in_order_with_its_labels_and_the_test_split(repro: Tree) -> None:
    # kills: fer2013 labelled ferplus, eval-test step dropped, an export left out, eval on val, report splits swapped,
    # --resume dropped, the default targets changed, a target run twice
    r = repro.run("reproduce.sh", env=_repro_env(repro))
    assert r.returncode == 0, r.stderr
    seen = [c[0] for c in repro.calls()]
    per_target = ["fsrfer-train", "report.py", "fsrfer-train", "faces", "fsrfer-export", *["fsrfer-eval"] * 4, "report.py"]
    assert seen == per_target * 2
    trains = repro.calls("fsrfer-train")
    assert [_opt(c, "--out") for c in trains] == [str(repro.tmp / "runs" / n) for n in ("ferplus", "ferplus", "fer2013", "fer2013")]
    assert all("--resume" in c for c in trains)
    assert ["--steps" in c for c in trains] == [False, True] * 2 and _opt(trains[1], "--steps") == "eval-test"
    assert "--time-budget" not in sum(trains, [])
    assert [c[2] for c in repro.calls("faces")] == ["ferplus", "fer2013"]
    evals = repro.calls("fsrfer-eval")
    assert {_opt(c, "--split") for c in evals} == {"test"}
    assert [_opt(c, "--labels") for c in evals] == ["ferplus"] * 4 + ["fer2013"] * 4
    assert [_opt(c, "--checkpoint") for c in evals[:4]] == [f"engines/ferplus.{v}.onnx" for v in ("fp32", "fp16", "int8-s8s8", "int8-u8s8")]
    assert [_opt(c, "--json") for c in evals[4:]] == [f"results/fer2013/test_onnx_{v}.json" for v in ("fp32", "fp16", "int8-s8s8", "int8-u8s8")]
    reports = repro.calls("report.py")
    assert [(_opt(c, "--name"), _opt(c, "--split")) for c in reports] == [("ferplus", "val"), ("ferplus", "test"),
                                                                          ("fer2013", "val"), ("fer2013", "test")]
    assert "--onnx" not in reports[0]
    onnx = [reports[3][i + 1] for i, a in enumerate(reports[3]) if a == "--onnx"]
    assert onnx == [f"fsrfer_onnx_{v}=results/fer2013/test_onnx_{v}.json" for v in ("fp32", "fp16", "int8-s8s8", "int8-u8s8")]
    export = repro.calls("fsrfer-export")[1]
    assert export[1] == str(repro.tmp / "runs" / "fer2013" / "models" / "fsrfer.pt")
    assert _opt(export, "--calib") == _opt(export, "--eval-data") == str(repro.tmp / "runs" / "fer2013_faces.npz")


def test_reproduce_names_one_target_and_passes_export_args_on(repro: Tree) -> None:
    # kills: the named targets ignored (NAMES always the default), FSRFER_EXPORT_ARGS dropped
    r = repro.run("reproduce.sh", "fer2013", env=_repro_env(repro, FSRFER_EXPORT_ARGS="--no-simplify"))
    assert r.returncode == 0, r.stderr
    assert {_opt(c, "--out") for c in repro.calls("fsrfer-train")} == {str(repro.tmp / "runs" / "fer2013")}
    (export,) = repro.calls("fsrfer-export")
    assert "--no-simplify" in export


@pytest.mark.parametrize("rc", [1, 3])
@pytest.mark.parametrize("which", [1, 2])
def test_reproduce_stops_at_a_failing_or_budget_stopped_training_step(repro: Tree, rc: int, which: int) -> None:
    # kills: train()'s failure status ignored (|| true), rc 3 not turned into the stop message, a failing first
    # call followed by the report/eval-test steps
    rcs = [0] * (which - 1) + [rc]
    r = repro.run("reproduce.sh", "ferplus", env=_repro_env(repro), plan={"rc": {"fsrfer-train": rcs}})
    assert r.returncode == rc
    assert len(repro.calls("fsrfer-train")) == which
    assert len(repro.calls("report.py")) == which - 1
    assert not repro.calls("fsrfer-export")
    assert ("stopped at the time budget" in r.stderr) == (rc == 3)


def test_reproduce_stops_when_an_export_or_eval_fails(repro: Tree) -> None:
    # kills: set -e dropped (a failed export's evaluation run on stale files, the test report written anyway)
    r = repro.run("reproduce.sh", "ferplus", env=_repro_env(repro), plan={"rc": {"fsrfer-eval": [0, 2]}})
    assert r.returncode == 2
    assert len(repro.calls("fsrfer-eval")) == 2
    assert [_opt(c, "--split") for c in repro.calls("report.py")] == ["val"]


@pytest.mark.parametrize("missing", ["configs/nope.yaml", "data", "g_cfg", "hr_cfg"])
def test_reproduce_checks_everything_before_any_step(repro: Tree, missing: str) -> None:
    # kills: a missing config, data file or default-chain config found only after earlier targets ran
    env = _repro_env(repro)
    names = ["ferplus", "default"]
    if missing == "configs/nope.yaml":
        names.append("nope")
    elif missing == "data":
        (repro.tmp / "data" / "ferplus_labels.npz").unlink()
    else:
        (repro.root / "configs" / f"{missing}.yaml").unlink()
    r = repro.run("reproduce.sh", *names, env=env)
    assert r.returncode == 2 and "error:" in r.stderr
    assert repro.calls() == []


def test_reproduce_default_with_fsrfer_hr_checks_that_file_instead_of_the_hr_config(repro: Tree) -> None:
    # kills: FSRFER_HR's file not checked (or the HR config checked although FSRFER_HR names the network)
    (repro.root / "configs" / "hr_cfg.yaml").unlink()
    r = repro.run("reproduce.sh", "default", env=_repro_env(repro, FSRFER_HR=str(repro.tmp / "none.pt")))
    assert r.returncode == 2 and "none.pt is missing" in r.stderr and repro.calls() == []
    (repro.tmp / "none.pt").write_text("hr")
    r = repro.run("reproduce.sh", "default", env=_repro_env(repro, FSRFER_HR=str(repro.tmp / "none.pt")))
    assert r.returncode == 0, r.stderr
    assert repro.calls("fsrfer-train") == []  # no stage 1 when FSRFER_HR names the network
    (g,) = repro.calls("early_g.py")
    assert _opt(g, "--hr") == str(repro.tmp / "none.pt")
    # a path with a space: checked and passed whole (the check's word splitting refused it as two missing files)
    spaced = repro.tmp / "hr net.pt"
    spaced.write_text("hr")
    r = repro.run("reproduce.sh", "default", env=_repro_env(repro, FSRFER_HR=str(spaced)))
    assert r.returncode == 0, r.stderr
    assert _opt(repro.calls("early_g.py")[-1], "--hr") == str(spaced)


@pytest.mark.parametrize("budget", ["0", "-1", "soon"])
def test_reproduce_refuses_a_budget_that_is_not_positive_minutes(repro: Tree, budget: str) -> None:
    # kills: the budget check dropped (`m + 0 <= 0` as `< 0`)
    r = repro.run("reproduce.sh", "ferplus", env=_repro_env(repro, FSRFER_TIME_BUDGET=budget))
    assert r.returncode == 2 and "expected minutes > 0" in r.stderr
    assert repro.calls() == []


def test_reproduce_shares_the_budget_between_training_commands_and_stops_when_it_is_spent(repro: Tree) -> None:
    # kills: the budget not passed to fsrfer-train, each command given the whole budget again, the deadline
    # rounded down, `left -gt 0` as `-ge 0` (a command started with no time left)
    env = _repro_env(repro, FSRFER_TIME_BUDGET="2")
    r = repro.run("reproduce.sh", "ferplus", env=env, plan={"train_secs": 90}, now=1000)
    assert r.returncode == 0, r.stderr
    assert "no time left before fsrfer-train" not in r.stderr
    first, second = repro.calls("fsrfer-train")
    assert float(_opt(first, "--time-budget")) == pytest.approx(2.0)
    assert float(_opt(second, "--time-budget")) == pytest.approx(0.5)
    assert [c[0] for c in repro.calls()][:3] == ["fsrfer-train", "report.py", "fsrfer-train"]
    # the clock now stands at the deadline: nothing is started again (the finished target's stamp removed, as
    # after a change to its inputs, so that it runs again)
    repro.clear()
    (repro.tmp / "runs" / "ferplus" / "reproduced.json").unlink()
    r = repro.run("reproduce.sh", "ferplus", env=env, plan={"train_secs": 120}, now=1000)
    assert r.returncode == 3 and "no time left before fsrfer-train" in r.stderr
    assert len(repro.calls("fsrfer-train")) == 1
    # a budget in fractions of a minute rounds its deadline up to the next whole second
    repro.clear()
    r = repro.run("reproduce.sh", "ferplus", env={**env, "FSRFER_TIME_BUDGET": "0.001"}, now=1000)
    assert float(_opt(repro.calls("fsrfer-train")[0], "--time-budget")) == pytest.approx(1 / 60, abs=1e-3)


def test_reproduce_default_chain_trains_stage1_passes_its_hr_and_ships_with_the_runs_seed(repro: Tree) -> None:
    # kills: stage 1 trained without --steps stage1 or into another folder, early_g.py given another HR file or
    # split of steps, the ship steps' order, the seed not read from config.json, ship_early_g.sh given other folders
    env = _repro_env(repro)
    r = repro.run("reproduce.sh", "default", env=env, plan={"seed": 7})
    assert r.returncode == 0, r.stderr
    runs = repro.tmp / "runs" / "default"
    assert [c[0] for c in repro.calls()] == ["fsrfer-train", "early_g.py", "fit_factor_estimator.py", "route_hr.py",
                                             "ship_early_g.sh"]
    (train,) = repro.calls("fsrfer-train")
    assert _opt(train, "--config") == "configs/hr_cfg.yaml" and _opt(train, "--steps") == "stage1"
    assert _opt(train, "--out") == str(runs / "hr")
    (g,) = repro.calls("early_g.py")
    assert _opt(g, "--hr") == str(runs / "hr" / "models" / "hr.pt") and _opt(g, "--config") == "configs/g_cfg.yaml"
    assert _opt(g, "--steps") == "stage2,baselines,eval" and _opt(g, "--out") == str(runs / "g")
    assert _opt(g, "--json") == "results/default_model/reproduced_val.json"
    (est,) = repro.calls("fit_factor_estimator.py")
    assert est[1] == str(runs / "g" / "models" / "fsrfer.pt") and "--round-input" in est
    ship = runs / "ship" / "models"
    assert (ship / "fsrfer.pt").read_text() == "route_hr.py" and (ship / "hr.pt").read_text() == "hr"
    assert not (ship / "routed.pt").exists()
    (s,) = repro.calls("ship_early_g.sh")
    assert s[1:3] == [str(runs / "ship"), str(runs / "g")]
    assert "seed 7," in s[3] and "configs/g_cfg.yaml" in s[3] and "configs/hr_cfg.yaml" in s[3]


def test_reproduce_default_resumes_without_fitting_again_and_stops_where_early_g_did_not_finish(repro: Tree) -> None:
    # kills: the `fsrfer.pt exists` skip inverted or dropped, the unfinished early G not stopping the chain,
    # the budget not passed to early_g.py
    env = _repro_env(repro, FSRFER_HR="configs/hr_cfg.yaml")
    r = repro.run("reproduce.sh", "default", env=env, plan={"unfinished": ["g"]})
    assert r.returncode == 3 and "stopped at the time budget" in r.stderr
    assert [c[0] for c in repro.calls()] == ["early_g.py"]
    repro.clear()
    assert repro.run("reproduce.sh", "default", env=env).returncode == 0
    repro.clear()
    (repro.tmp / "runs" / "default" / "reproduced.json").unlink()  # as after a ship that failed
    r = repro.run("reproduce.sh", "default", env={**env, "FSRFER_TIME_BUDGET": "1"}, now=500)
    assert r.returncode == 0, r.stderr
    assert [c[0] for c in repro.calls()] == ["early_g.py", "ship_early_g.sh"]
    assert float(_opt(repro.calls("early_g.py")[0], "--time-budget")) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# scripts/report.py, with its REPO pointed at a temporary tree and its plots recorded
# ---------------------------------------------------------------------------------------------
def _res(acc: dict[str, float], n: int = 10, mean: float | None = None) -> dict[str, Any]:
    return {"n": n, "mean_accuracy": sum(acc.values()) / len(acc) if mean is None else mean,
            "factors": {f: {"accuracy": a, "confusion": [[int(100 * a)]]} for f, a in acc.items()}}


@pytest.fixture()
def report(tmp_path: Path, monkeypatch):
    mod = load_script("scripts/report.py", "report_68j")
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text("intro\n<!-- results:other:test -->\nkeep\n<!-- /results -->\n")
    (root / "docs" / "experiments.md").write_text(
        "a\n<!-- results:run:val -->\nold val\n<!-- /results -->\nmiddle\n<!-- results:run:test -->\nold\n<!-- /results -->\nend\n")
    monkeypatch.setattr(mod, "REPO", root)
    plots: list[tuple[str, Any]] = []
    monkeypatch.setattr(mod, "plot_accuracy",  # a copy: what the plot was drawn from at the time
                        lambda results, path, title: plots.append(("acc", json.loads(json.dumps(results)), Path(path).name)))
    monkeypatch.setattr(mod, "plot_confusion", lambda conf, classes, path, title: plots.append(("conf", conf, Path(path).name)))
    mod.plots = plots
    mod.root = root
    return mod


def _run_dir(tmp: Path, split: str, results: dict[str, Any]) -> Path:
    d = tmp / "run" / "eval" / split
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(results))
    return tmp / "run"


def test_report_collects_the_runs_split_adds_onnx_rows_by_method_and_plots_the_new_results(report, tmp_path) -> None:
    # kills: the run read at another split, an --onnx row keyed by its path or dropped, the JSON not written,
    # plots drawn from the stale committed JSON, the x4 confusion matrix from another factor
    run = _run_dir(tmp_path, "test", {"fsrfer": _res({"2": 0.8, "4": 0.6}), "hr": _res({"2": 0.7, "4": 0.5})})
    _run_dir(tmp_path / "other", "val", {"fsrfer": _res({"2": 0.1, "4": 0.1})})
    out = report.root / "results" / "run"
    out.mkdir(parents=True)
    (out / "test.json").write_text(json.dumps({"stale": _res({"2": 0.0})}))
    onnx = tmp_path / "int8.json"
    onnx.write_text(json.dumps(_res({"2": 0.75, "4": 0.55})))
    assert report.main(["--run", str(run), "--name", "run", "--onnx", f"fsrfer_onnx_int8-u8s8={onnx}"]) == 0
    doc = json.loads((out / "test.json").read_text())
    assert sorted(doc) == ["fsrfer", "fsrfer_onnx_int8-u8s8", "hr"]
    assert doc["fsrfer_onnx_int8-u8s8"]["factors"]["4"]["accuracy"] == 0.55
    (_, plotted, acc_name), (_, conf, conf_name) = report.plots
    assert sorted(plotted) == sorted(doc) and acc_name == "test_accuracy_vs_factor.png"
    assert conf == [[60]] and conf_name == "test_confusion_x4.png"
    text = (report.root / "docs" / "experiments.md").read_text()
    block = text.split("<!-- results:run:test -->")[1].split("<!-- /results -->")[0]
    assert "| **FSR-FER" in block and "| 80.00 | 60.00 | 70.00 |" in block
    assert f"| {report.LABELS['fsrfer_onnx_int8-u8s8']} | 75.00 | 55.00 | 65.00 |" in block
    assert "on the test split (10 faces), from `results/run/test.json`" in block
    assert "old val" in text and text.startswith("a\n") and text.endswith("end\n") and "middle" in text
    assert "keep" in (report.root / "README.md").read_text()


def test_report_val_split_writes_its_own_files_and_block(report, tmp_path) -> None:
    # kills: --split ignored for the run's folder, the JSON name, the plots or the README block
    run = _run_dir(tmp_path, "val", {"hr": _res({"1": 0.9, "4": 0.3}, n=7)})
    assert report.main(["--run", str(run), "--name", "run", "--split", "val"]) == 0
    assert (report.root / "results" / "run" / "val.json").is_file()
    assert not (report.root / "results" / "run" / "test.json").exists()
    assert [p[2] for p in report.plots] == ["val_accuracy_vs_factor.png"]  # no fsrfer: no confusion matrix
    text = (report.root / "docs" / "experiments.md").read_text()
    block = text.split("<!-- results:run:val -->")[1].split("<!-- /results -->")[0]
    assert "on the val split (7 faces)" in block and "old val" not in block
    assert "\nold\n" in text.split("<!-- results:run:test -->")[1]


def test_report_plots_only_and_readme_only_use_the_committed_json(report, tmp_path) -> None:
    # kills: --plots-only going on to the README (or asking for --run), --readme-only needing --run
    out = report.root / "results" / "run"
    out.mkdir(parents=True)
    (out / "test.json").write_text(json.dumps({"fsrfer": _res({"4": 0.25})}))
    before = (report.root / "docs" / "experiments.md").read_text()
    assert report.main(["--name", "run", "--plots-only"]) == 0
    assert [p[0] for p in report.plots] == ["acc", "conf"]
    assert (report.root / "docs" / "experiments.md").read_text() == before
    report.plots.clear()
    assert report.main(["--name", "run", "--readme-only"]) == 0
    assert report.plots == []
    assert "25.00" in (report.root / "docs" / "experiments.md").read_text()
    with pytest.raises(SystemExit):
        report.main(["--name", "run"])


def test_report_refuses_a_name_without_a_block(report) -> None:
    # kills: the missing block passed over silently
    with pytest.raises(SystemExit, match="has a block <!-- results:nope:test -->"):
        report.update_readme("nope", "test", {"hr": _res({"1": 0.5})}, report.root / "results" / "x.json")


def test_report_table_orders_methods_and_factors_and_leaves_unmeasured_cells_empty(report) -> None:
    # kills: factors sorted as strings, the method order taken from the file, a missing factor's cell as 0 or
    # a KeyError, the mean recomputed from the cells, the separator one column short, the face size wrong
    results = {"extra": _res({"2": 0.5}, mean=0.11), "fsrfer": _res({"2": 0.6, "12": 0.4}), "hr": _res({"2": 0.9, "4": 0.8})}
    lines = report.table(results, "cap").splitlines()
    assert lines[0] == "cap" and lines[1] == ""
    assert lines[2] == "| method | x2 (24 px) | x4 (12 px) | x12 (? px) | mean |"
    assert lines[3] == "|---|---:|---:|---:|---:|"
    names = [ln.split(" | ")[0] for ln in lines[4:]]
    assert names == [f"| {report.method_name('hr')}", f"| **{report.method_name('fsrfer')}**", "| extra"]
    assert lines[6] == "| extra | 50.00 |  |  | 11.00 |"
    assert lines[5].endswith("| 60.00 |  | 40.00 | 50.00 |")


# ---------------------------------------------------------------------------------------------
# scripts/early_g_seeds.sh and scripts/onnx_val.sh
# ---------------------------------------------------------------------------------------------
@pytest.fixture()
def seeds(tmp_path: Path) -> Tree:
    t = Tree(tmp_path, ("early_g_seeds.sh",), ("early_g.py", "early_g_summary.py"))
    (t.root / "configs").mkdir()
    for suffix in ("", "_nofilm", "_stem"):
        (t.root / "configs" / f"short{suffix}.yaml").write_text("x: 1\n")
    return t


def test_early_g_seeds_runs_each_variant_per_seed_and_summarises_every_run(seeds: Tree) -> None:
    # kills: a variant's config or folder swapped, the seed not passed, the budget dropped, a seed's rows left out
    runs = str(seeds.tmp / "runs")
    r = seeds.run("early_g_seeds.sh", "3 5", runs, "7.5", "configs/short.yaml", "out.json")
    assert r.returncode == 0, r.stdout + r.stderr
    g = seeds.calls("early_g.py")
    assert [(_opt(c, "--config"), _opt(c, "--seed"), Path(_opt(c, "--out")).name) for c in g] == [
        (f"configs/short{v}.yaml", s, f"short_seed{s}{v}") for s in ("3", "5") for v in ("", "_nofilm", "_stem")]
    assert {_opt(c, "--time-budget") for c in g} == {"7.5"}
    assert [_opt(c, "--steps") for c in g[:3]] == ["stage2,ablations,baselines,eval", "stage2,eval", "stage2,eval"]
    (summary,) = seeds.calls("early_g_summary.py")
    assert _opt(summary, "--json") == "out.json"
    assert summary[-6:] == [f"{label}={runs}/short_seed{s}{v}" for s in ("3", "5")
                            for label, v in (("early_g", ""), ("no_film", "_nofilm"), ("stem", "_stem"))]


@pytest.mark.parametrize("unfinished", ["short_seed0", "short_seed0_nofilm", "short_seed0_stem"])
def test_early_g_seeds_stops_at_an_unfinished_run_without_a_summary(seeds: Tree, unfinished: str) -> None:
    # kills: an unfinished run's check dropped or pointed at another folder (the summary written from half the runs)
    r = seeds.run("early_g_seeds.sh", "0 1", str(seeds.tmp / "runs"), "", "configs/short.yaml",
                  plan={"unfinished": [unfinished]})
    assert r.returncode == 0 and "not finished" in r.stdout
    assert Path(_opt(seeds.calls("early_g.py")[-1], "--out")).name == unfinished
    assert seeds.calls("early_g_summary.py") == []
    assert all("--time-budget" not in c for c in seeds.calls("early_g.py"))  # no budget given: none passed


def test_early_g_seeds_refuses_a_config_without_its_variants(seeds: Tree) -> None:
    # kills: the variants' check dropped
    (seeds.root / "configs" / "short_stem.yaml").unlink()
    r = seeds.run("early_g_seeds.sh", "0", str(seeds.tmp / "runs"), "", "configs/short.yaml")
    assert r.returncode == 2 and "short_stem.yaml" in r.stderr and seeds.calls() == []


@pytest.fixture()
def onnx_val(tmp_path: Path) -> Tree:
    t = Tree(tmp_path, ("onnx_val.sh",), (), ("fsrfer-export", "fsrfer-eval"))
    for run in ("a", "b"):
        (tmp_path / run / "models").mkdir(parents=True)
        (tmp_path / run / "models" / "fsrfer.pt").write_text("m")
    return t


@pytest.mark.parametrize(("protocol", "suffix"), [(None, ""), ("small", "_small"), ("camera", "_camera")])
def test_onnx_val_evaluates_each_run_on_ferplus_val_with_the_protocol(onnx_val: Tree, protocol, suffix) -> None:
    # kills: the suffix for resized, another split or labels, the protocol not passed on, a run's label swapped
    args = (["--protocol", protocol] if protocol else []) + [f"x={onnx_val.tmp}/a", f"y={onnx_val.tmp}/b"]
    r = onnx_val.run("onnx_val.sh", *args, env={"FSRFER_DATA": "d"})
    assert r.returncode == 0, r.stderr
    exports = onnx_val.calls("fsrfer-export")
    assert [(c[1], _opt(c, "--name")) for c in exports] == [(f"{onnx_val.tmp}/a/models/fsrfer.pt", "x"),
                                                             (f"{onnx_val.tmp}/b/models/fsrfer.pt", "y")]
    evals = onnx_val.calls("fsrfer-eval")
    assert [Path(_opt(c, "--checkpoint")).name for c in evals] == ["x.fp32.onnx", "y.fp32.onnx"]
    assert [_opt(c, "--json") for c in evals] == [f"results/ferplus/onnx_val/{n}{suffix}.json" for n in "xy"]
    assert {(_opt(c, "--split"), _opt(c, "--labels"), _opt(c, "--protocol"), _opt(c, "--data")) for c in evals} == {
        ("val", "ferplus", protocol or "resized", "d/fer2013.npz")}


@pytest.mark.parametrize("bad", ["noequals", "z={tmp}/missing", "={tmp}/a", "../x={tmp}/a", "a/b={tmp}/a", "..={tmp}/a",
                                 "a b={tmp}/a"])
def test_onnx_val_checks_every_item_before_exporting_any(onnx_val: Tree, bad: str) -> None:
    # kills: the items checked inside the export loop (the first run exported before a bad one is refused)
    r = onnx_val.run("onnx_val.sh", f"x={onnx_val.tmp}/a", bad.format(tmp=onnx_val.tmp))
    assert r.returncode == 2 and "expected LABEL=RUN_DIR" in r.stderr
    assert onnx_val.calls() == []
    assert onnx_val.run("onnx_val.sh").returncode == 2


@pytest.mark.parametrize("args", [["--protocol", "bicubic"], ["--protocol"], ["--protocol", ""]])
def test_onnx_val_refuses_an_unknown_protocol_before_exporting(onnx_val: Tree, args: list[str]) -> None:
    # session 69: an unknown protocol was found by fsrfer-eval after the first run's export (minutes)
    r = onnx_val.run("onnx_val.sh", *args, f"x={onnx_val.tmp}/a")
    assert r.returncode == 2 and "expected resized, small or camera" in r.stderr
    assert onnx_val.calls() == []


# ---------------------------------------------------------------------------------------------
# scripts/device_check.sh with a fake python for its heavy steps
# ---------------------------------------------------------------------------------------------
FAKE_PY = r'''#!/usr/bin/env bash
# the versions, variants and pytest steps and the TensorRT probe faked; the final JSON step real
if [ "${1:-}" = -c ]; then [ -n "${FAKE_TRT:-}" ]; exit; fi
if [ "${1:-}" = -m ]; then
  xml=""; prev=""; for a in "$@"; do [ "$prev" = --junitxml ] && xml=$a; prev=$a; done
  printf '%s\n' '<testsuites><testsuite tests="5" failures="1" errors="0" skipped="2"/></testsuites>' > "$xml"
  echo "pytest ENGINE=$FSRFER_TEST_ENGINE ONNX=$FSRFER_TEST_ONNX DATA=$FSRFER_TEST_DATA" >> "$FAKE_LOG.env"
  exit 1
fi
script=$(cat)
case $script in
  *"fsrfer-device-check/1"*) exec {exe} "$@" <<< "$script" ;;
  *"convert_fp16"*) echo x > "$2/default.fp16.onnx"; echo x > "$2/default.int8-s8s8.onnx"; exit 0 ;;
  *) echo '{"python": "3"}' > "$2"; exit 0 ;;
esac
'''


@pytest.fixture()
def device(tmp_path: Path) -> Tree:
    t = Tree(tmp_path, ("device_check.sh",), (), ("fsrfer-export", "fsrfer-bench"))
    (t.bin / "fakepy").write_text(FAKE_PY.replace("{exe}", sys.executable))
    (t.bin / "fakepy").chmod(0o755)
    return t


@pytest.mark.parametrize("trt", [False, True])
def test_device_check_records_a_failing_step_goes_on_and_writes_one_json(device: Tree, trt: bool) -> None:
    # kills: a step's exit status recorded after its echo (always 0), the runbook stopping at a failed step,
    # the bench JSON's model name cut wrong, the junit counts' keys, the engines built or benched without
    # TensorRT, the data not passed to the benchmarks, the INT8 engine not given to the gpu tests
    out = device.tmp / "out"
    env = {"PYTHON": str(device.bin / "fakepy"), **({"FAKE_TRT": "1"} if trt else {})}
    r = device.run("device_check.sh", "faces.npz", str(out), plan={"rc": {"fsrfer-export": [4, 0]}}, env=env)
    assert r.returncode == 0, r.stderr
    assert "check-fp16 failed (exit 4)" in r.stdout
    doc = json.loads((out / "device_check.json").read_text())
    steps = {"versions": 0, "variants": 0, "check-fp16": 4, "check-int8-s8s8": 0, "gpu-tests": 1,
             "bench-default.fp16-onnxruntime": 0, "bench-default.int8-s8s8-onnxruntime": 0}
    if trt:
        steps.update({"engine-fp16": 0, "engine-int8-s8s8": 0, "bench-default.fp16.sm90": 0, "bench-default.int8.sm90": 0})
    assert doc["steps"] == steps
    assert doc["versions"] == {"python": "3"}
    assert doc["gpu_tests"] == {"tests": 5, "failures": 1, "errors": 0, "skipped": 2}
    assert sorted(doc["models"]) == sorted(k[len("bench-"):] for k in steps if k.startswith("bench-"))
    assert doc["models"]["default.fp16-onnxruntime"]["latency"] == [{"batch_size": 1, "p50_ms": 1.5, "p99_ms": 2.0, "throughput_fps": 600}]
    assert doc["models"]["default.fp16-onnxruntime"]["accuracy_per_factor"] == {"4": 0.5}
    benches = device.calls("fsrfer-bench")
    assert all(_opt(c, "--data") == "faces.npz" for c in benches)
    ort = [c for c in benches if "--backend" in c]
    assert len(ort) == 2 and {_opt(c, "--batch-sizes") for c in ort} == {"1,8,32"}
    env_line = Path(f"{device.log}.env").read_text()
    if trt:
        assert f"ENGINE={out}/default.int8.sm90.engine ONNX={out}/default.int8-s8s8.onnx DATA=faces.npz" in env_line
        assert {_opt(c, "--batch-sizes") for c in benches if "--backend" not in c} == {"1,8,32,128"}
    else:
        assert "ENGINE= ONNX= DATA=faces.npz" in env_line
        assert not any("--engine" in c for c in device.calls("fsrfer-export"))


# ---------------------------------------------------------------------------------------------
# scripts/min_versions.sh and scripts/test_runtime_only.sh: their checks before the package index
# ---------------------------------------------------------------------------------------------
def test_min_versions_refuses_an_unknown_venv_and_skips_a_missing_python38(tmp_path: Path) -> None:
    # kills: an unknown name passed over (the run said to pass), a missing python3.8 failing the run
    t = Tree(tmp_path, ("min_versions.sh",))
    r = t.run("min_versions.sh", "py39", env={"MINVER_DIR": str(tmp_path / "v")})
    assert r.returncode == 2 and "unknown venv 'py39'" in r.stderr and "all checks passed" not in r.stdout
    r = t.run("min_versions.sh", "py38", env={"MINVER_DIR": str(tmp_path / "v"), "PYTHON38": str(tmp_path / "none"),
                                              "PATH": f"{t.bin}:/usr/bin:/bin"})
    assert r.returncode == 0 and "no Python 3.8 found" in r.stdout and "all checks passed" in r.stdout
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("importable", ["torch", "onnxsim", ""])
def test_runtime_only_refuses_a_venv_with_the_train_or_export_extras(tmp_path: Path, importable: str) -> None:
    # kills: the import check inverted or a module of the three left out, pytest run on the wrong folder
    t = Tree(tmp_path, ("test_runtime_only.sh",))
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text(
        f'#!/usr/bin/env bash\necho "$*" >> {tmp_path}/venv.log\n'
        f'if [ "$1" = -c ]; then [ "$2" = "import {importable or "none"}" ]; exit; fi\nexit 0\n')
    (venv / "python").chmod(0o755)
    r = t.run("test_runtime_only.sh", "-x", env={"RUNTIME_VENV": str(tmp_path / "venv")})
    log = (tmp_path / "venv.log").read_text().splitlines()
    assert log[0] == "-m pip install -q -e .[cpu,crowd,demo,dev]"
    if importable:
        assert r.returncode == 1 and f"{importable} is importable" in r.stderr
        assert not any(ln.startswith("-m pytest") for ln in log)
    else:
        assert r.returncode == 0, r.stderr
        assert log[-1] == "-m pytest -q -p no:cacheprovider -rs -x tests/"
