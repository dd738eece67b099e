"""scripts/done_stamp.py (a record that a step finished, checked against what the step read and wrote) and its
use by scripts/reproduce.sh: a target that finished is skipped whole on a later run, and run again when its
config, data, code, settings or outputs changed. reproduce.sh runs as a temporary copy among fake fsrfer-*
commands (tests/test_mutants68j.py's Tree); tiny files in temporary folders only."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from _scripts import load_script
from test_mutants68j import Tree, _repro_env, repro_tree

ds = load_script("scripts/done_stamp.py", "done_stamp_test")


@pytest.fixture()
def tree(tmp_path: Path, monkeypatch) -> Path:
    """A folder with a config, code and a step's outputs, made the current folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "code" / "pkg").mkdir(parents=True)
    (tmp_path / "code" / "a.py").write_text("a = 1\n")
    (tmp_path / "code" / "pkg" / "b.py").write_text("b = 2\n")
    (tmp_path / "cfg.yaml").write_text("x: 1\n")
    (tmp_path / "out" / "models").mkdir(parents=True)
    (tmp_path / "out" / "models" / "m.pt").write_bytes(b"weights")
    (tmp_path / "res.json").write_text("{}")
    return tmp_path


INPUTS = ["cfg.yaml", "code/**/*.py"]
OUTPUTS = ["out", "res.json"]


def _write(*env: str) -> int:
    return ds.main(["write", "stamp.json", "--inputs", *INPUTS, "--outputs", *OUTPUTS, *[f"--env={e}" for e in env]])


def _check(*env: str, inputs: list[str] = INPUTS) -> int:
    return ds.main(["check", "stamp.json", "--inputs", *inputs, *[f"--env={e}" for e in env]])


def test_a_stamp_matches_until_anything_it_records_changes(tree: Path, capsys) -> None:
    assert _check() == 1 and capsys.readouterr().err == ""  # no stamp: the step never finished, nothing to say
    assert _write("threads=2") == 0
    rec = json.loads((tree / "stamp.json").read_text())
    assert rec["schema"] == "done-stamp/1"
    assert sorted(rec["inputs"]["files"]) == ["cfg.yaml", "code/a.py", "code/pkg/b.py"]  # ** spans folders
    assert sorted(rec["outputs"]) == ["out/models/m.pt", "res.json"]  # a folder: every file under it
    assert rec["env"] == {"threads": "2"} and set(rec["versions"]) == set(ds.PACKAGES)
    assert {"torch", "onnxruntime", "pillow"} <= set(ds.PACKAGES)  # the results depend on them
    assert _check("threads=2") == 0


@pytest.mark.parametrize("change, said", [
    (lambda t: (t / "cfg.yaml").write_text("x: 2\n"), "input cfg.yaml changed"),
    (lambda t: (t / "code" / "pkg" / "b.py").unlink(), "input code/pkg/b.py is gone"),
    (lambda t: (t / "code" / "pkg" / "c.py").write_text(""), "input code/pkg/c.py is new"),
    (lambda t: (t / "out" / "models" / "m.pt").write_bytes(b"other"), "output out/models/m.pt changed"),
    (lambda t: (t / "res.json").unlink(), "output res.json is gone"),
    (lambda t: (t / "stamp.json").write_text("{not json"), "is not a readable stamp"),
    (lambda t: (t / "stamp.json").write_text("[]"), "is not a readable stamp"),
    (lambda t: (t / "stamp.json").write_text('{"schema": "done-stamp/0"}'), "is not a readable stamp"),
])
def test_a_changed_input_or_output_or_an_unreadable_stamp_runs_the_step_again(tree: Path, capsys, change, said) -> None:
    assert _write() == 0
    change(tree)
    assert _check() == 1
    err = capsys.readouterr().err
    assert said in err and "running the step again" in err


def test_other_settings_patterns_or_package_versions_run_the_step_again(tree: Path, capsys, monkeypatch) -> None:
    assert _write("threads=2", "export_args=") == 0
    assert _check("threads=4", "export_args=") == 1 and "threads differ(s)" in capsys.readouterr().err
    assert _check("threads=2") == 1 and "export_args" in capsys.readouterr().err  # a setting left out
    assert _check("threads=2", "export_args=", inputs=["cfg.yaml"]) == 1
    assert "inputs named differ" in capsys.readouterr().err
    assert _check("threads=2", "export_args=") == 0
    monkeypatch.setattr(ds, "versions", lambda: {**{p: "1" for p in ds.PACKAGES}, "torch": "0.0"})
    assert _check("threads=2", "export_args=") == 1 and "installed" in capsys.readouterr().err


def test_an_input_pattern_may_match_nothing_until_a_file_appears_there(tree: Path, capsys) -> None:
    assert ds.main(["write", "stamp.json", "--inputs", "cfg.yaml", "none/*.py", "--outputs", "res.json"]) == 0
    assert ds.main(["check", "stamp.json", "--inputs", "cfg.yaml", "none/*.py"]) == 0
    (tree / "none").mkdir()
    (tree / "none" / "n.py").write_text("")
    assert ds.main(["check", "stamp.json", "--inputs", "cfg.yaml", "none/*.py"]) == 1
    assert "none/n.py is new" in capsys.readouterr().err


@pytest.mark.parametrize("argv, said", [
    (["write", "stamp.json", "--inputs", "cfg.yaml", "--outputs", "res.json", "missing/*"], "--outputs missing/* matches no file"),
    (["write", "stamp.json", "--inputs", "cfg.yaml", "--outputs", "res.json", "--env", "novalue"], "expected NAME=VALUE"),
    (["write", "stamp.json", "--inputs", "cfg.yaml", "--outputs", "res.json", "--env", "=v"], "expected NAME=VALUE"),
    (["write", "stamp.json", "--inputs", "cfg.yaml"], "write needs --outputs"),
    (["check", "stamp.json", "--inputs", "cfg.yaml", "--outputs", "res.json"], "--outputs is for write"),
])
def test_bad_usage_exits_2_and_writes_no_stamp(tree: Path, capsys, argv, said) -> None:
    with pytest.raises(SystemExit) as exc:
        ds.main(argv)
    assert exc.value.code == 2 and said in capsys.readouterr().err
    assert not (tree / "stamp.json").exists()


def test_paths_that_exist_are_themselves_not_globs_and_caches_are_left_out(tree: Path) -> None:
    d = tree / "runs[1]"  # as a glob, [1] would mean the character 1 (runs1)
    (d / "__pycache__").mkdir(parents=True)
    (d / "__pycache__" / "x.pyc").write_bytes(b"c")
    (d / "m.pt").write_bytes(b"m")
    (tree / "runs1").mkdir()
    (tree / "runs1" / "other.pt").write_bytes(b"o")
    assert ds.matched("runs[1]") == ["runs[1]/m.pt"]
    assert ds.matched("runs[1]/m.pt") == ["runs[1]/m.pt"]
    assert ds.matched("runs?") == []  # a glob matches files only: the folder runs1 is not one


# ---------------------------------------------------------------------------------------------
# scripts/reproduce.sh: targets skipped while their stamps match
# ---------------------------------------------------------------------------------------------
@pytest.fixture()
def repro(tmp_path: Path) -> Tree:
    return repro_tree(tmp_path)


def _targets_run(t: Tree) -> list[str]:
    """The targets whose training ran, in order (a full run's first fsrfer-train call, the default's early G)."""
    out = []
    for c in t.calls():
        if c[0] == "fsrfer-train" and "--steps" not in c:
            out.append(Path(c[c.index("--out") + 1]).name)
        elif c[0] == "early_g.py":
            out.append("default")
    return out


def test_reproduce_skips_finished_targets_and_resumes_where_it_stopped(repro: Tree) -> None:
    env = _repro_env(repro)
    # the second target stops at the time budget: the first one's stamp is written, the second's is not
    r = repro.run("reproduce.sh", "ferplus", "fer2013", env=env, plan={"rc": {"fsrfer-train": [0, 0, 3]}})
    assert r.returncode == 3
    assert (repro.tmp / "runs" / "ferplus" / "reproduced.json").is_file()
    assert not (repro.tmp / "runs" / "fer2013" / "reproduced.json").exists()
    repro.clear()
    r = repro.run("reproduce.sh", "ferplus", "fer2013", env=env)
    assert r.returncode == 0, r.stderr
    assert _targets_run(repro) == ["fer2013"]  # ferplus: no training, evaluation or export again
    assert "ferplus: finished before" in r.stderr and "skipped" in r.stderr
    readme = [c for c in repro.calls("report.py") if "--readme-only" in c]
    assert [(c[c.index("--name") + 1], c[c.index("--split") + 1]) for c in readme] == [("ferplus", "val"), ("ferplus", "test")]
    assert [c[c.index("--json") + 1] for c in repro.calls("fsrfer-eval")] == [
        f"results/fer2013/test_onnx_{v}.json" for v in ("fp32", "fp16", "int8-s8s8", "int8-u8s8")]
    # both finished: a third run does nothing but the README blocks
    repro.clear()
    assert repro.run("reproduce.sh", "ferplus", "fer2013", env=env).returncode == 0
    assert {c[0] for c in repro.calls()} == {"report.py"} and _targets_run(repro) == []


#: Changes made one after the other to a tree where both targets finished, with the targets each makes run again.
CHANGES = [
    ("the config of ferplus", lambda t: (t.root / "configs" / "ferplus.yaml").write_text("name: y\n"), ["ferplus"]),
    ("the data", lambda t: (t.tmp / "data" / "ferplus_labels.npz").write_bytes(b"y"), ["ferplus", "fer2013"]),
    ("trainer code", lambda t: (t.root / "trainer" / "data.py").write_text(
        (t.root / "trainer" / "data.py").read_text() + "# changed\n"), ["ferplus", "fer2013"]),
    ("a new script", lambda t: (t.root / "scripts" / "new.sh").write_text(""), ["ferplus", "fer2013"]),
    ("a result removed", lambda t: (t.root / "results" / "fer2013" / "test_onnx_int8-u8s8.json").unlink(), ["fer2013"]),
    ("a model changed", lambda t: (t.tmp / "runs" / "ferplus" / "models" / "m.pt").write_text("other"), ["ferplus"]),
    ("an evaluation removed", lambda t: (t.tmp / "runs" / "fer2013" / "eval" / "val" / "results.json").unlink(), ["fer2013"]),
    ("a plot removed", lambda t: (t.root / "results" / "ferplus" / "val_accuracy_vs_factor.png").unlink(), ["ferplus"]),
    # exported files are not kept between a lent machine's calls: their absence is no reason to start over
    ("the exports removed", lambda t: [p.unlink() for p in (t.root / "engines").glob("ferplus.*")], []),
]


def test_reproduce_runs_a_target_again_when_what_it_depends_on_changed(repro: Tree) -> None:
    env = _repro_env(repro)
    assert repro.run("reproduce.sh", "ferplus", "fer2013", env=env).returncode == 0
    for what, change, again in CHANGES:
        change(repro)
        repro.clear()
        r = repro.run("reproduce.sh", "ferplus", "fer2013", env=env)
        assert r.returncode == 0, (what, r.stderr)
        assert _targets_run(repro) == again, what
        assert ("running the step again" in r.stderr) == bool(again), what


@pytest.mark.parametrize("var", ["FSRFER_EXPORT_ARGS", "FSRFER_THREADS"])
def test_reproduce_runs_targets_again_under_other_settings(repro: Tree, var: str) -> None:
    assert repro.run("reproduce.sh", "ferplus", env=_repro_env(repro)).returncode == 0
    repro.clear()
    r = repro.run("reproduce.sh", "ferplus", env=_repro_env(repro, **{var: "--no-simplify" if "ARGS" in var else "7"}))
    assert r.returncode == 0, r.stderr
    assert _targets_run(repro) == ["ferplus"]


def test_reproduce_default_is_skipped_once_shipped_and_runs_again_on_another_hr(repro: Tree) -> None:
    env = _repro_env(repro)
    assert repro.run("reproduce.sh", "default", env=env).returncode == 0
    rec = json.loads((repro.tmp / "runs" / "default" / "reproduced.json").read_text())
    assert {"fsrfer_edge/models/MODEL_CARD.md",
            "results/default_model/reproduced_val.json", "results/default_model/test_camera.json",
            "results/default_model/baseline_test_small.json", "results/default_model/hr_test.json",
            "results/default_model/test_int8-u8s8.json"} <= set(rec["outputs"])
    assert any(f.startswith(str(repro.tmp / "runs" / "default" / "hr" / "models")) for f in rec["outputs"])
    repro.clear()
    r = repro.run("reproduce.sh", "default", env=env)
    assert r.returncode == 0 and repro.calls() == [] and "default: finished before" in r.stderr
    # not kept by a lent machine between calls: no reason to start over
    (repro.root / "fsrfer_edge" / "models" / "default.onnx").unlink()
    assert repro.run("reproduce.sh", "default", env=env).returncode == 0 and repro.calls() == []
    # another default's card (a default shipped since by other means): the chain runs again
    (repro.root / "fsrfer_edge" / "models" / "MODEL_CARD.md").write_text("other")
    assert repro.run("reproduce.sh", "default", env=env).returncode == 0
    assert _targets_run(repro) == ["default"]
    repro.clear()
    (repro.tmp / "hr.pt").write_text("hr")
    r = repro.run("reproduce.sh", "default", env=_repro_env(repro, FSRFER_HR=str(repro.tmp / "hr.pt")))
    assert r.returncode == 0, r.stderr
    assert _targets_run(repro) == ["default"] and repro.calls("fsrfer-train") == []
