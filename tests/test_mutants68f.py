"""Tests that kill hand-made mutants (round 68, task K68f) of the experiment-summary and refresh scripts whose
outputs docs/experiments.md and the README read: scripts/refresh_protocols.sh (each network's (a) file checked
before its (b) and (c) files are written, the baseline's old files kept when it is not given or fails, nothing
moved when a step fails, the dependent scripts run after), scripts/early_g_summary.py (rows per seed, the spread
the sample standard deviation, "minus" rows with their sign), scripts/hr_recipes.py, scripts/hr_ensemble.py,
scripts/route_hr_seeds.py, scripts/route_hr_report.py (the routing rule's checks), scripts/sweep_stage2.py
(each variant's overrides merged into stage 2) and scripts/soup.py (the averaged state dict). Tiny synthetic result files, temporary copies of the repository
files a script needs and fake steps on PATH only."""
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


# ---------------------------------------------------------------------------------------------
# scripts/refresh_protocols.sh, on a temporary copy with its steps faked
# ---------------------------------------------------------------------------------------------
FAKE_EVAL = """#!{exe} -S
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
opt = lambda name: args[args.index(name) + 1]
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write("eval " + " ".join(args) + "\\n")
plan = json.loads(Path(os.environ["FAKE_PLAN"]).read_text())
ckpt, protocol = Path(opt("--checkpoint")).name, opt("--protocol")
acc = plan[ckpt].get(protocol)
if acc is None:
    print("fsrfer-eval: error: boom", file=sys.stderr)
    sys.exit(1)
Path(opt("--json")).write_text(json.dumps({{"n": plan[ckpt].get("n", 10), "protocol": protocol, "checkpoint": opt("--checkpoint"),
    "factors": {{f: {{"accuracy": a}} for f, a in acc.items()}}}}))
"""

STEP = """import sys
with open({log!r}, "a") as f:
    f.write("step " + " ".join(sys.argv) + "\\n")
"""

EARLY_G = """from pathlib import Path
def extract_hr(src, dst, cfg):
    Path(dst).write_text("hr of " + str(src))
"""


def _acc(a1: float, a2: float) -> dict[str, float]:
    return {"1": a1, "2": a2}


#: Each network's committed (a) file (results/default_model/NAME.json), n = 10 faces.
COMMITTED = {"test": _acc(0.8, 0.6), "hr_test": _acc(0.9, 0.7), "baseline_test": _acc(0.7, 0.5)}


def _committed(acc: dict[str, float]) -> dict[str, Any]:
    return {"n": 10, "factors": {f: {"accuracy": a} for f, a in acc.items()}}


@pytest.fixture()
def refresh_repo(tmp_path: Path):
    """A copy of scripts/refresh_protocols.sh among stubs of what it calls; returns a runner."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "refresh_protocols.sh", root / "scripts")
    log = tmp_path / "calls.log"
    for name in ("ship_default.py", "plot_default_model.py", "targets.py", "readme_tables.py"):
        (root / "scripts" / name).write_text(STEP.format(log=str(log)))
    (root / "scripts" / "early_g.py").write_text(EARLY_G)
    (root / "trainer").mkdir()
    (root / "trainer" / "__init__.py").write_text("")
    (root / "trainer" / "checkpoint.py").write_text("def load(path, kind):\n    return {'meta': {'config': {}}}\n")
    (root / "trainer" / "config.py").write_text("def from_dict(d):\n    return d\n")
    (root / "fsrfer_edge" / "models").mkdir(parents=True)
    (root / "fsrfer_edge" / "models" / "default.onnx").write_bytes(b"onnx")
    (root / "fsrfer_edge" / "models" / "default.pt").write_bytes(b"pt")
    out = root / "results" / "default_model"
    out.mkdir(parents=True)
    for name in ("test", "hr_test", "baseline_test"):
        (out / f"{name}.json").write_text(json.dumps(_committed(COMMITTED[name])))
        for p in ("small", "camera"):
            (out / f"{name}_{p}.json").write_text(json.dumps({"old": True}))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "fer2013.npz").write_bytes(b"faces")
    (tmp_path / "base.pt").write_bytes(b"base")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "fsrfer-eval").write_text(FAKE_EVAL.format(exe=sys.executable))
    (bin_dir / "fsrfer-eval").chmod(0o755)
    os.symlink(sys.executable, bin_dir / "python")
    plan_path = tmp_path / "plan.json"

    def run(plan: dict[str, dict[str, Any]], *args: str) -> subprocess.CompletedProcess:
        plan_path.write_text(json.dumps(plan))
        if log.exists():
            log.unlink()
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_LOG": str(log),
               "FAKE_PLAN": str(plan_path), "FSRFER_DATA": str(tmp_path / "data")}
        return subprocess.run(["bash", str(root / "scripts" / "refresh_protocols.sh"), *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=60)

    run.out = out  # type: ignore[attr-defined]
    run.log = log  # type: ignore[attr-defined]
    run.base = tmp_path / "base.pt"  # type: ignore[attr-defined]
    return run


def _good(**extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every network gives its committed (a) file; (b) and (c) differ by network and protocol."""
    plan = {ck: {"resized": COMMITTED[name], "small": _acc(0.7, 0.5 + i / 100), "camera": _acc(0.6, 0.4 + i / 100)}
            for i, (ck, name) in enumerate((("default.onnx", "test"), ("hr.pt", "hr_test"), ("base.pt", "baseline_test")))}
    for k, v in extra.items():
        plan[k] = {**plan[k], **v}
    return plan


def _doc(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _evals(log: Path) -> list[str]:
    return [ln for ln in log.read_text().splitlines() if ln.startswith("eval ")] if log.exists() else []


def _steps(log: Path) -> list[str]:
    return [Path(ln.split()[1]).name for ln in log.read_text().splitlines() if ln.startswith("step ")] \
        if log.exists() else []


NAMES = ("test", "hr_test", "baseline_test")
SHOWN = {"test": "fsrfer_edge/models/default.onnx", "hr_test": "fsrfer_edge/models/default.pt (its frozen HR network)"}


def test_refresh_writes_each_networks_b_and_c_files_then_the_dependent_scripts(refresh_repo) -> None:
    # kills: the measured protocol not passed on, the checkpoint shown as another, (a) run under (b), dependents
    # dropped, each network's (a) compared with another's file or exactly (the baseline's is the same to the face)
    plan = _good(**{"base.pt": {"resized": _acc(0.70000001, 0.49999999)}})
    r = refresh_repo(plan, str(refresh_repo.base))
    assert r.returncode == 0, r.stderr
    out = refresh_repo.out
    for name, ck in zip(NAMES, ("default.onnx", "hr.pt", "base.pt")):
        for p in ("small", "camera"):
            doc = _doc(out / f"{name}_{p}.json")
            assert doc["protocol"] == p and doc["factors"] == {f: {"accuracy": a} for f, a in plan[ck][p].items()}
            assert doc["checkpoint"] == SHOWN.get(name, str(refresh_repo.base))
            assert doc["command"] == "bash scripts/refresh_protocols.sh"
            assert f"wrote results/default_model/{name}_{p}.json" in r.stdout
    evals = _evals(refresh_repo.log)
    for ck in ("default.onnx", "hr.pt", "base.pt"):
        mine = [e for e in evals if f"{ck} --data" in e]
        assert [e.split("--protocol ")[1].split()[0] for e in mine] == ["resized", "small", "camera"]
        assert all("--labels ferplus --split test" in e for e in mine)
    assert all(f"--data {refresh_repo.base.parent / 'data' / 'fer2013.npz'}" in e for e in evals)
    # the committed (a) files are only read
    assert all(_doc(out / f"{n}.json") == _committed(COMMITTED[n]) for n in NAMES)
    assert _steps(refresh_repo.log) == ["ship_default.py", "plot_default_model.py", "targets.py", "readme_tables.py"]
    assert "--refresh-accuracy results/default_model" in refresh_repo.log.read_text()


def test_refresh_stops_before_the_dependent_scripts_when_a_move_fails(refresh_repo) -> None:
    # `mv "$f" "$OUT/" && echo` under set -e: a failed move went unnoticed and the card, targets and README were
    # regenerated from a mix of new and old files; now the script stops with 1 and names the file
    blocked = refresh_repo.out / "test_small.json"
    blocked.unlink()
    blocked.mkdir()  # mv cannot put a file over a folder
    r = refresh_repo(_good())
    assert r.returncode == 1 and "could not move" in r.stderr and "test_small.json" in r.stderr, r.stderr
    assert _steps(refresh_repo.log) == []


def test_refresh_without_a_baseline_keeps_the_baselines_files(refresh_repo) -> None:
    # kills: the baseline's old (b)/(c) files removed or rewritten when no BASELINE_CHECKPOINT is given
    r = refresh_repo(_good())
    assert r.returncode == 0, r.stderr
    out = refresh_repo.out
    assert all(_doc(out / f"baseline_test_{p}.json") == {"old": True} for p in ("small", "camera"))
    assert all("old" not in _doc(out / f"{n}_{p}.json") for n in NAMES[:2] for p in ("small", "camera"))
    assert "were measured before this change and stay as they are" in r.stderr
    assert not any("base.pt" in e for e in _evals(refresh_repo.log))
    assert _steps(refresh_repo.log)[-1] == "readme_tables.py"


@pytest.mark.parametrize("base", [
    {"resized": _acc(0.7, 0.4)},  # one face of ten different at x2
    {"resized": _acc(0.35, 0.25), "n": 20},  # the same count of faces right, out of twice as many faces
])
def test_refresh_keeps_the_baselines_files_when_its_a_file_does_not_match(refresh_repo, base) -> None:
    # kills: same_accuracy always true or blind to the number of faces; (b)/(c) written for a network (a) refuses
    r = refresh_repo(_good(**{"base.pt": base}), str(refresh_repo.base))
    assert r.returncode == 0, r.stderr
    assert "does not give results/default_model/baseline_test.json under protocol (a)" in r.stderr
    assert all(_doc(refresh_repo.out / f"baseline_test_{p}.json") == {"old": True} for p in ("small", "camera"))
    assert [e for e in _evals(refresh_repo.log) if "base.pt" in e and "--protocol resized" not in e] == []
    assert "old" not in _doc(refresh_repo.out / "test_small.json")


def test_refresh_writes_none_of_a_baselines_files_when_one_of_its_steps_fails(refresh_repo) -> None:
    # kills: the staged baseline files not removed after its camera run fails (half its files replaced)
    r = refresh_repo(_good(**{"base.pt": {"camera": None}}), str(refresh_repo.base))
    assert r.returncode == 0, r.stderr
    assert all(_doc(refresh_repo.out / f"baseline_test_{p}.json") == {"old": True} for p in ("small", "camera"))
    assert all("old" not in _doc(refresh_repo.out / f"{n}_{p}.json") for n in NAMES[:2] for p in ("small", "camera"))


@pytest.mark.parametrize("ck, broken", [
    ("hr.pt", {"camera": None}),  # the HR network's last step fails
    ("default.onnx", {"resized": _acc(0.8, 0.7)}),  # the shipped graph does not give its (a) file
])
def test_refresh_writes_nothing_when_the_shipped_networks_do_not_both_pass(refresh_repo, ck, broken) -> None:
    # kills: `|| exit 1` dropped after either shipped network; files written straight into results/ (half moved)
    r = refresh_repo(_good(**{ck: broken}), str(refresh_repo.base))
    assert r.returncode != 0
    assert all(_doc(refresh_repo.out / f"{n}_{p}.json") == {"old": True} for n in NAMES for p in ("small", "camera"))
    assert _steps(refresh_repo.log) == []
    assert "wrote" not in r.stdout


def test_refresh_refuses_extra_arguments_and_a_missing_baseline(refresh_repo, tmp_path) -> None:
    # kills: the argument count check loosened; the baseline checkpoint not checked before anything runs
    r = refresh_repo(_good(), str(refresh_repo.base), "more")
    assert r.returncode == 2 and "usage: bash scripts/refresh_protocols.sh" in r.stderr
    r = refresh_repo(_good(), str(tmp_path / "nope.pt"))
    assert r.returncode == 2 and f"error: {tmp_path / 'nope.pt'} is missing" in r.stderr
    assert _evals(refresh_repo.log) == []


# ---------------------------------------------------------------------------------------------
# scripts/early_g_summary.py: rows per seed, paired "minus" rows
# ---------------------------------------------------------------------------------------------
def _summary():
    return load_script("scripts/early_g_summary.py", "early_g_summary_68f")


def _run_dir(root: Path, name: str, files: dict[str, dict[str, dict[str, float]]], seed: int | None = None) -> Path:
    """A run folder with eval/val/FILE = {model: {"factors": {f: {"accuracy": a}}}} and, given, config.json."""
    run = root / name
    (run / "eval" / "val").mkdir(parents=True)
    if seed is not None:
        (run / "config.json").write_text(json.dumps({"seed": seed}))
    for fname, models in files.items():
        (run / "eval" / "val" / fname).write_text(json.dumps(
            {m: {"factors": {f: {"accuracy": a} for f, a in acc.items()}} for m, acc in models.items()}))
    return run


def test_summary_takes_the_seed_from_config_json_before_the_folder_name(tmp_path: Path) -> None:
    # kills: config.json not read (the folder's _s<N> suffix taken instead)
    run = _run_dir(tmp_path, "long_s9", {"results.json": {"fsrfer": {"2": 0.5}}}, seed=3)
    assert _summary().run_seed(run) == 3
    assert list(_summary().collect([("g", run)], "val")["g/fsrfer"]["runs"]["resized"]) == ["3"]


def test_summary_reads_each_protocols_own_file(tmp_path: Path) -> None:
    # kills: results_small.json and results_camera.json read as each other's protocol
    run = _run_dir(tmp_path, "r", {"results.json": {"fsrfer": {"2": 0.5}}, "results_small.json": {"fsrfer": {"2": 0.4}},
                                   "results_camera.json": {"fsrfer": {"2": 0.3}}}, seed=0)
    runs = _summary().collect([("g", run)], "val")["g/fsrfer"]["runs"]
    assert runs == {"resized": {"0": {"2": 50.0}}, "small": {"0": {"2": 40.0}}, "camera": {"0": {"2": 30.0}}}


def test_summary_refuses_one_seed_given_twice_by_two_run_folders(tmp_path: Path) -> None:
    # kills: the duplicate-seed check of run folders dropped (a seed would silently replace the other's row)
    a = _run_dir(tmp_path, "a", {"results.json": {"fsrfer": {"2": 0.5}}}, seed=1)
    b = _run_dir(tmp_path, "b", {"results.json": {"fsrfer": {"2": 0.6}}}, seed=1)
    with pytest.raises(SystemExit, match=r"g/fsrfer \(resized\): seed 1 twice"):
        _summary().collect([("g", a), ("g", b)], "val")


def test_paired_and_overall_leave_out_the_reference_row_and_its_missing_protocols() -> None:
    # kills: the reference row paired with itself; a protocol the reference lacks taken into "overall"
    rows = {"g/fsrfer": {"runs": {"resized": {"0": {"2": 70.0}, "1": {"2": 72.0}},
                                  "small": {"0": {"2": 10.0}, "1": {"2": 10.0}}}},
            "g/lr": {"runs": {"resized": {"0": {"2": 68.0}, "1": {"2": 71.0}}}}}
    mod = _summary()
    assert list(mod.paired(rows, "g/lr")) == ["g/fsrfer"]
    ov = mod.overall(rows, "g/lr")
    assert list(ov) == ["g/fsrfer"]
    assert ov["g/fsrfer"]["protocols"] == ["resized"] and ov["g/fsrfer"]["by_seed"] == {"0": 2.0, "1": 1.0}
    assert ov["g/fsrfer"]["mean"] == 1.5 and ov["g/fsrfer"]["std"] == 0.71  # the sample standard deviation
    # the "minus" row: the baseline against the method is negative
    assert mod.overall(rows, "g/fsrfer")["g/lr"]["mean"] == -1.5


def test_paired_compares_at_the_factors_both_rows_have() -> None:
    # a reference row evaluated at fewer factors stopped paired() with a bare KeyError; overall() already read
    # only what both rows have
    rows = {"g/fsrfer": {"runs": {"resized": {"0": {"2": 70.0, "4": 60.0}, "1": {"2": 72.0, "4": 61.0}}}},
            "g/lr": {"runs": {"resized": {"0": {"2": 68.0}, "1": {"2": 71.0}}}}}
    diff = _summary().paired(rows, "g/lr")["g/fsrfer"]["resized"]
    assert diff["mean"] == {"2": 1.5} and diff["std"] == {"2": 0.71}


def test_summary_kept_rows_are_those_of_the_prefix_exactly(tmp_path: Path) -> None:
    # kills: --kept LABEL=FILE:long also taking the rows of "longer/..."
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"split": "val", "rows": {
        "long/fsrfer": {"runs": {"resized": {"0": {"2": 80.0}}}},
        "longer/fsrfer_x": {"runs": {"resized": {"0": {"2": 1.0}}}}}}))
    label, rows = _summary().kept_runs(f"g={old}:long", "val")
    assert label == "g" and rows == {"g/fsrfer": {"runs": {"resized": {"0": {"2": 80.0}}}, "cost": {}}}


@pytest.mark.needs("torch")
def test_training_cost_counts_the_pretraining_epochs_too(tmp_path: Path) -> None:
    # kills: pretrain_history left out of a model's epochs and seconds
    from trainer import checkpoint

    path = tmp_path / "m.pt"
    checkpoint.save(path, {"kind": "model", "spec": {}, "preprocessing": {}, "state_dict": {},
                           "meta": {"config": {"device": "cpu"}, "pretrain_history": [{"seconds": 1.5}],
                                    "history": [{"seconds": 2.0}, {"seconds": 3.0}]}})
    assert _summary().training_cost(path) == {"epochs": 3, "seconds": 6.5, "device": "cpu"}


# ---------------------------------------------------------------------------------------------
# scripts/hr_recipes.py and scripts/hr_ensemble.py
# ---------------------------------------------------------------------------------------------
def _hr():
    return load_script("scripts/hr_recipes.py", "hr_recipes_68f")


def _log(path: Path, vals: list[float], start: int = 1, of: int | None = None) -> Path:
    of = of or start + len(vals) - 1
    path.write_text("".join(
        f"12:00:00 INFO trainer.runner: stage1 epoch {i}/{of}: {{'loss': 0.9, 'epoch': {i}, 'val_score': {v}, "
        f"'seconds': 10.0}}\n" for i, v in enumerate(vals, start)))
    return path


def _eval(path: Path, acc: float) -> Path:
    path.write_text(json.dumps({"split": "val", "factors": {"1": {"accuracy": acc}}}))
    return path


def test_hr_log_keeps_the_first_of_tied_best_epochs_and_reports_the_last_epoch() -> None:
    # kills: the last of tied epochs kept (the trainer keeps the first); the last epoch's figure read from the best
    hr = _hr()
    got = hr.epoch_summary({1: (80.0, 1.0), 2: (85.0, 1.0), 3: (85.0, 1.0), 4: (70.0, 1.0)}, 4)
    assert got["best_epoch"] == 2 and got["best_val"] == 85.0 and got["last_val"] == 70.0


def test_hr_log_later_file_wins_for_a_repeated_epoch(tmp_path: Path) -> None:
    # kills: the first log's line of an epoch kept when a resumed run logged it again
    first = _log(tmp_path / "a.log", [0.5, 0.6], of=3)
    second = _log(tmp_path / "b.log", [0.9, 0.7], start=2, of=3)
    got = _hr().parse_logs([first, second])
    assert got["best_epoch"] == 2 and got["best_val"] == 90.0 and got["epochs"] == 3 and got["finished"]


def test_hr_recipes_rule_at_its_lines_and_the_sample_spread(tmp_path: Path) -> None:
    # kills: `gain >= min_gain` made strict; `v > reference mean` made >=; the spread as the population std
    out = tmp_path / "r.json"
    args = ["--json", str(out), "--reference", "base", "--min-gain", "0.5",
            "--eval", f"base:0={_eval(tmp_path / 'b0.json', 0.80)}", "--eval", f"base:1={_eval(tmp_path / 'b1.json', 0.82)}",
            "--eval", f"edge:0={_eval(tmp_path / 'e0.json', 0.815)}", "--eval", f"edge:1={_eval(tmp_path / 'e1.json', 0.815)}",
            "--eval", f"tie:0={_eval(tmp_path / 't0.json', 0.81)}", "--eval", f"tie:1={_eval(tmp_path / 't1.json', 0.85)}"]
    assert _hr().main(args) == 0
    rec = json.loads(out.read_text())["recipes"]
    assert rec["base"]["mean"] == 81.0 and rec["base"]["std"] == 1.41
    assert rec["edge"]["against_reference"] == {"gain": 0.5, "every_seed_above_reference_mean": True, "candidate": True}
    assert rec["tie"]["against_reference"]["every_seed_above_reference_mean"] is False  # 81.0 is not above 81.0
    assert rec["tie"]["against_reference"]["candidate"] is False


def test_hr_recipes_takes_the_evaluation_file_over_the_logs_best_epoch(tmp_path: Path) -> None:
    # kills: the log's best epoch taken as the run's figure where an evaluation file is given too
    out = tmp_path / "r.json"
    assert _hr().main(["--json", str(out), "--reference", "base", "--log", f"base:0={_log(tmp_path / 'b.log', [0.8])}",
                       "--eval", f"base:0={_eval(tmp_path / 'b.json', 0.79)}"]) == 0
    run = json.loads(out.read_text())["runs"]["base:0"]
    assert run["val"] == 79.0 and run["source"] == "eval" and run["log"]["best_val"] == 80.0


def test_hr_recipes_runs_from_takes_only_the_named_recipe(tmp_path: Path) -> None:
    # kills: FILE:base also taking the runs of "base_wide"
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"runs": {"base:0": {"val": 88.0}, "base_wide:0": {"val": 90.0}}}))
    assert set(_hr().recorded_runs(f"{first}:base")) == {("base", 0)}
    # a path holding a colon: read whole where it is a file, else split at the last colon (it was split at the first)
    odd = tmp_path / "run:2026-12-04.json"
    odd.write_text(first.read_text())
    assert set(_hr().recorded_runs(str(odd))) == {("base", 0), ("base_wide", 0)}
    assert set(_hr().recorded_runs(f"{odd}:base_wide")) == {("base_wide", 0)}


@pytest.mark.needs("torch")
def test_hr_ensemble_flip_is_the_mean_of_the_face_and_its_mirror_on_the_asked_split(tmp_path, monkeypatch) -> None:
    # kills: the flipped answer alone taken for "with the flip"; faces of another split taken in
    import numpy as np
    import torch
    from types import SimpleNamespace

    import trainer.checkpoint
    import trainer.data
    import trainer.evaluate

    ens = load_script("scripts/hr_ensemble.py", "hr_ensemble_68f")
    rng = np.random.default_rng(0)
    images = rng.normal(size=(40, 1, 1, 3)).astype(np.float32)
    labels = rng.integers(0, 3, 40)
    split = np.array(["val", "test"] * 20)
    weights = [torch.tensor([[3.0, 0.0, 1.0], [0.0, 2.0, -1.0], [1.0, 1.0, 0.0]]),
               torch.tensor([[-1.0, 2.0, 0.5], [2.0, 0.0, 1.0], [0.0, -2.0, 3.0]])]

    class Fer(torch.nn.Module):
        def __init__(self, w: torch.Tensor) -> None:
            super().__init__()
            self.w = w

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1) @ self.w

    ckpts = {}
    for i, w in enumerate(weights):
        ckpts[f"m{i}.pt"] = SimpleNamespace(fer=Fer(w))
        (tmp_path / f"m{i}.pt").write_bytes(b"x")
    (tmp_path / "fer.npz").write_bytes(b"x")
    monkeypatch.setattr(trainer.checkpoint, "load_model", lambda p: (ckpts[Path(p).name], None, None))
    monkeypatch.setattr(trainer.data, "load_dataset", lambda path, **kw: SimpleNamespace(
        images=images, labels=labels, split=split))
    monkeypatch.setattr(trainer.evaluate, "protocol_inputs", lambda faces, factor, pre: faces)
    out = tmp_path / "e.json"
    assert ens.main([f"a={tmp_path / 'm0.pt'}", f"b={tmp_path / 'm1.pt'}", "--data", str(tmp_path / "fer.npz"),
                     "--json", str(out), "--threads", "1"]) == 0
    doc = json.loads(out.read_text())
    x, y = torch.from_numpy(images[split == "val"]), labels[split == "val"]
    plain = [ens.softmax((x.flatten(1) @ w).numpy()) for w in weights]
    mirror = [ens.softmax((x.flip(3).flatten(1) @ w).numpy()) for w in weights]
    assert doc["n"] == 20
    assert doc["plain"] == ens.ensemble_accuracies(plain, y)
    assert doc["flip"] == ens.ensemble_accuracies([(p + q) / 2 for p, q in zip(plain, mirror)], y)
    assert doc["flip"] != ens.ensemble_accuracies(mirror, y)  # the inputs tell the two apart


# ---------------------------------------------------------------------------------------------
# scripts/route_hr_seeds.py and scripts/route_hr_report.py
# ---------------------------------------------------------------------------------------------
def _seeds():
    return load_script("scripts/route_hr_seeds.py", "route_hr_seeds_68f")


def test_route_seeds_rule_at_its_lines_and_the_sample_spread() -> None:
    # kills: a tie counted as ahead; the +0.5 line made strict; the spread as the population std
    mod = _seeds()
    rows = lambda diffs: [{"seed": i, "difference": d} for i, d in enumerate(diffs)]  # noqa: E731
    assert mod.summarize(rows([0.5, 0.5]), 0.5)["verdict"] == "candidate default"
    tie = mod.summarize(rows([1.0, 0.0, 1.0]), 0.5)
    assert tie["ahead_in_every_seed"] is False and tie["verdict"].startswith("not ahead")
    assert mod.summarize(rows([0.4, 0.6]), 0.5)["sd_difference"] == 0.141


def _route_report():
    return load_script("scripts/route_hr_report.py", "route_hr_report_68f")


def _cells(x1: float, rest: float, **cells: float) -> dict[str, dict[str, float]]:
    got = {p: {"1": x1, "2": rest, "4": rest} for p in ("resized", "small", "camera")}
    for k, v in cells.items():
        p, f = k.split("_x")
        got[p][f] = v
    return got


def test_route_report_checks_at_their_lines() -> None:
    # kills: x1 gap's sign flipped; camera's x1 in the x1 check; <= made < on either line; the worst drop a min
    acc = {"hr": _cells(80.3, 50.0), "routed": _cells(80.0, 60.0, camera_x1=70.0, small_x4=59.9),
           "unrouted": _cells(70.0, 60.0, camera_x1=70.2)}
    c = _route_report().checks(acc)
    assert c["x1_below_hr"] == {"resized": 0.3, "small": 0.3} and c["x1_met"] is True
    assert c["worst_drop"] == {"cell": "camera x1", "points": 0.2} and c["drop_met"] is True
    acc["routed"]["small"]["1"] = 79.9
    acc["unrouted"]["camera"]["1"] = 70.3
    c = _route_report().checks(acc)
    assert c["x1_met"] is False and c["drop_met"] is False and c["worst_drop"]["points"] == 0.3


def test_route_report_drops_leave_out_only_x1_under_a_and_b_and_the_mean_leaves_out_x1() -> None:
    # kills: camera's x1 left out of the drops (its faces are 48 px crops that G still serves); x1 in the mean
    acc = {"hr": _cells(80.0, 50.0), "routed": _cells(80.0, 60.0, camera_x1=50.0, small_x4=57.0),
           "unrouted": _cells(10.0, 60.0, camera_x1=51.0, small_x4=57.0)}
    c = _route_report().checks(acc)
    assert c["worst_drop"] == {"cell": "camera x1", "points": 1.0}
    assert c["mean_x2_x8"] == {"unrouted": 59.5, "routed": 59.5}


def test_route_report_run_says_a_failed_step() -> None:
    # kills: a step's failure with exit status 1 taken for success
    with pytest.raises(SystemExit, match=r"failed \(exit 1\): it broke"):
        _route_report()._run([sys.executable, "-c", "import sys; sys.stderr.write('it broke\\n'); sys.exit(1)"])


def test_route_report_evaluates_each_model_and_protocol_once_and_reuses_what_is_there(tmp_path, monkeypatch) -> None:
    # kills: evaluations already in --work run again; a protocol or checkpoint not passed on
    mod = _route_report()
    calls: list[list[str]] = []

    def fake(cmd: list[str]) -> None:
        calls.append(cmd)
        opt = lambda k: cmd[cmd.index(k) + 1]  # noqa: E731
        acc = {"unrouted": 0.5, "routed": 0.6, "hr": 0.7}[Path(opt("--checkpoint")).stem.split(".")[0]]
        Path(opt("--json")).write_text(json.dumps({"n": 4, "factors": {"2": {"accuracy": acc + 0.01 * len(opt("--protocol"))}}}))

    monkeypatch.setattr(mod, "_run", fake)
    (tmp_path / "hr_val_camera.json").write_text(json.dumps({"n": 4, "factors": {"2": {"accuracy": 0.25}}}))
    files = {m: tmp_path / f"{m}.x" for m in ("unrouted", "routed", "hr")}
    got = mod.evaluate(files, "d.npz", "val", 2, tmp_path)
    assert len(calls) == 8 and got["hr"]["camera"] == {"2": 25.0} and got["n"] == 4
    assert got["routed"]["small"] == {"2": 65.0} and got["unrouted"]["resized"] == {"2": 57.0}
    assert all(c[:2] == ["fsrfer-eval", "--checkpoint"] and "--split" in c and c[c.index("--split") + 1] == "val"
               for c in calls)
    calls.clear()
    assert mod.evaluate(files, "d.npz", "val", 2, tmp_path) == got and calls == []


@pytest.mark.needs("torch")
@pytest.mark.parametrize("routes", [False, True])
def test_route_report_prepares_the_other_graph_from_the_checkpoint(tmp_path, monkeypatch, routes) -> None:
    # kills: --below 0 given for the wrong checkpoint; a routed checkpoint exported as the unrouted graph
    import trainer.checkpoint

    mod = _route_report()
    calls: list[list[str]] = []
    monkeypatch.setattr(mod, "_run", calls.append)
    spec = {"route_hr_below": 2 ** 0.5} if routes else {}
    monkeypatch.setattr(trainer.checkpoint, "load_model", lambda p: (None, None, {"spec": spec}))
    (tmp_path / "hr.pt").write_bytes(b"hr")  # already there: not made again
    src = tmp_path / "g.pt"
    files = mod.prepare(src, tmp_path)
    other = tmp_path / ("unrouted.pt" if routes else "routed.pt")
    assert calls[0][1:] == ["scripts/route_hr.py", str(src), "--out", str(other)] + (["--below", "0"] if routes else [])
    exports = {c[c.index("--name") + 1]: c[1] for c in calls[1:]}
    assert exports == ({"unrouted": str(other), "routed": str(src)} if routes else
                       {"unrouted": str(src), "routed": str(other)})
    assert files["hr"] == tmp_path / "hr.pt"


# ---------------------------------------------------------------------------------------------
# scripts/sweep_stage2.py: each variant's overrides on the config's stage 2, scored on val
# ---------------------------------------------------------------------------------------------
@pytest.mark.needs("torch", "yaml")
def test_sweep_merges_each_variants_losses_into_the_configs_and_scores_on_val(tmp_path, monkeypatch) -> None:
    # kills: a variant's losses replacing the config's others (or the config's winning), the test split scored
    import dataclasses
    from types import SimpleNamespace

    import trainer.train
    from trainer import config

    mod = load_script("scripts/sweep_stage2.py", "sweep_stage2_68f")
    cfg_path = str(REPO / "configs" / "tiny.yaml")
    base = config.load(cfg_path)
    base = config.from_dict({**base.to_dict(), "stage2": {**dataclasses.asdict(base.stage2), "losses": {
        **dataclasses.asdict(base.stage2.losses), "adversarial": 0.125, "head": 2.5}}})
    monkeypatch.setattr(config, "load", lambda path: base)
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "models" / "hr.pt").write_text("hr")
    (run / "cache").mkdir()
    (run / "cache" / "feat.npy").write_text("f")
    data = SimpleNamespace(val=SimpleNamespace(images="val faces", labels="val labels"),
                           test=SimpleNamespace(images="test faces", labels="test labels"))
    monkeypatch.setattr(trainer.train, "load_data", lambda cfg, path: data)
    trained: dict[str, Any] = {}

    def train_stage2(cfg, data_, hr, out, name, losses, resume):
        assert hr.read_text() == "hr" and (out / "cache" / "feat.npy").is_file()
        trained[str(len(trained))] = cfg.stage2
        (out / "models" / "fsrfer.pt").write_text("g")
        return out / "models" / "fsrfer.pt"

    scores = iter([0.5, 0.75])

    def evaluate_fn(fn, images, labels, factors, pre):
        assert (images, labels) == ("val faces", "val labels")
        s = next(scores)
        return {"mean_accuracy": s, "factors": {f: {"accuracy": s + 0.01 * f} for f in factors}}

    monkeypatch.setattr(trainer.train, "train_stage2", train_stage2)
    monkeypatch.setattr(trainer.train, "evaluate_fn", evaluate_fn)
    monkeypatch.setattr(trainer.train, "torch_logits_fn", lambda m: m)
    monkeypatch.setattr(trainer.train, "checkpoint", SimpleNamespace(load_model=lambda p: ("model", None, None)))
    monkeypatch.setattr(mod, "_best", lambda p: 0.4)
    out = tmp_path / "sweep.json"
    assert mod.main(["--config", cfg_path, "--run", str(run), "--json", str(out), "--variants", "head_10,g_big"]) == 0
    assert trained["0"].losses == dataclasses.replace(base.stage2.losses, head=10.0)
    assert trained["0"].generator_blocks == base.stage2.generator_blocks
    assert trained["1"].losses == base.stage2.losses
    assert (trained["1"].generator_blocks, trained["1"].generator_growth) == (5, 128)
    doc = json.loads(out.read_text())
    assert doc["split"] == "val" and sorted(doc["variants"]) == ["g_big", "head_10"]
    got = doc["variants"]["g_big"]
    assert got["mean_accuracy"] == 0.75 and got["best_epoch_val_score"] == 0.4
    assert got["override"] == {"generator_blocks": 5, "generator_growth": 128}
    assert got["accuracy"] == {str(f): 0.75 + 0.01 * f for f in base.eval.factors}


# ---------------------------------------------------------------------------------------------
# scripts/soup.py: the average of state dicts
# ---------------------------------------------------------------------------------------------
@pytest.mark.needs("torch")
def test_soup_state_keeps_dtypes_takes_integer_buffers_from_the_first_and_checks_keys() -> None:
    # kills: integer buffers from the last ingredient; the mean left in float64; a missing key let through
    import torch

    soup = load_script("scripts/soup.py", "soup_68f")
    states = [{"g.w": torch.tensor([1.0, 2.0]), "g.n": torch.tensor(3), "fer.w": torch.tensor([0.5])},
              {"g.w": torch.tensor([2.0, 4.0]), "g.n": torch.tensor(7), "fer.w": torch.tensor([0.5])},
              {"g.w": torch.tensor([6.0, 3.0]), "g.n": torch.tensor(9), "fer.w": torch.tensor([0.5])}]
    got = soup.soup_state(states, ["a", "b", "c"])
    assert got["g.w"].dtype == torch.float32 and torch.equal(got["g.w"], torch.tensor([3.0, 3.0]))
    assert int(got["g.n"]) == 3 and torch.equal(got["fer.w"], torch.tensor([0.5]))
    with pytest.raises(SystemExit, match="keys differ"):
        soup.soup_state([states[0], {**states[1], "g.extra": torch.zeros(1)}], ["a", "b"])
    with pytest.raises(SystemExit, match=r"b: g.w has shape \(3,\)"):
        soup.soup_state([states[0], {**states[1], "g.w": torch.zeros(3)}], ["a", "b"])
