"""Tests that kill hand-made mutants (round 70, task K70a) of the two "finished before" records session 69 added:
scripts/done_stamp.py (a stamp's schema, a package the stamp does not record, a stamp missing its fields) and
the finished()/stamp() parts of scripts/reproduce.sh (a stamp that no longer matches removed before the target
runs again; every code pattern, data file and config a target's stamp lists, and the outputs it records), and
fsrfer-train --resume's evaluation reuse in trainer/train.py (each field of evaluation_key: labels, data source,
model contents, torch version, device type; what _sources_sha256 hashes; a record without outputs or fields;
every protocol's results file recorded; the reused results are the first protocol's as a new evaluation's are).
reproduce.sh runs as a temporary copy among fake commands (tests/test_mutants68j.py's repro_tree); the trainer's
tests use one tiny stage-1 run on 40 random faces, copied per test, on the CPU."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from _scripts import load_script
from test_done_stamp import _targets_run
from test_mutants68j import Tree, _repro_env, repro_tree

ds = load_script("scripts/done_stamp.py", "done_stamp_70a")


# ---------------------------------------------------------------------------------------------
# scripts/done_stamp.py
# ---------------------------------------------------------------------------------------------
@pytest.fixture()
def stamped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with an input and an output and a stamp written for them, made the current folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yaml").write_text("x: 1\n")
    (tmp_path / "res.json").write_text("{}")
    assert ds.main(["write", "stamp.json", "--inputs", "cfg.yaml", "--outputs", "res.json"]) == 0
    assert ds.main(["check", "stamp.json", "--inputs", "cfg.yaml"]) == 0
    return tmp_path


def _edit_stamp(tree: Path, edit: Any) -> None:
    rec = json.loads((tree / "stamp.json").read_text())
    edit(rec)
    (tree / "stamp.json").write_text(json.dumps(rec))


def test_a_complete_stamp_of_another_schema_runs_the_step_again(stamped: Path, capsys) -> None:
    # kills: the schema check dropped (every other field of a done-stamp/0 record still read)
    _edit_stamp(stamped, lambda r: r.update(schema="done-stamp/0"))
    assert ds.main(["check", "stamp.json", "--inputs", "cfg.yaml"]) == 1
    assert "is not a readable stamp" in capsys.readouterr().err


def test_a_package_the_stamp_does_not_record_is_a_difference(stamped: Path, capsys) -> None:
    # kills: versions compared only over the packages the old stamp names (a stamp written before Pillow was
    # added to PACKAGES would match whatever Pillow is installed now)
    _edit_stamp(stamped, lambda r: r["versions"].pop("pillow"))
    assert ds.main(["check", "stamp.json", "--inputs", "cfg.yaml"]) == 1
    assert "installed pillow differ(s)" in capsys.readouterr().err


@pytest.mark.parametrize("edit", [lambda r: r.pop("outputs"), lambda r: r["inputs"].pop("files"),
                                  lambda r: r.update(inputs=[])])
def test_a_stamp_missing_a_field_is_unreadable_not_a_traceback(stamped: Path, capsys, edit) -> None:
    # kills: KeyError left out of the unreadable-stamp exceptions
    _edit_stamp(stamped, edit)
    assert ds.main(["check", "stamp.json", "--inputs", "cfg.yaml"]) == 1
    assert "is not a readable stamp" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# scripts/reproduce.sh: finished() and stamp()
# ---------------------------------------------------------------------------------------------
@pytest.fixture()
def repro(tmp_path: Path) -> Tree:
    t = repro_tree(tmp_path)
    # code the stamps list that the fake tree does not have: a subpackage of the SDK, setup.py
    (t.root / "fsrfer_edge" / "sub").mkdir(parents=True)
    (t.root / "fsrfer_edge" / "__init__.py").write_text("")
    (t.root / "fsrfer_edge" / "sub" / "mod.py").write_text("x = 1\n")
    (t.root / "setup.py").write_text("# setup\n")
    return t


def _append(p: Path) -> None:
    p.write_text(p.read_text() + "# changed\n")


@pytest.mark.parametrize("what, change", [
    ("an SDK subpackage", lambda t: _append(t.root / "fsrfer_edge" / "sub" / "mod.py")),  # kills: fsrfer_edge/*.py
    ("a Python script", lambda t: _append(t.root / "scripts" / "report.py")),  # kills: scripts/*.py left out of CODE
    ("setup.py", lambda t: _append(t.root / "setup.py")),  # kills: setup.py left out of CODE
    ("the FER2013 archive", lambda t: (t.tmp / "data" / "fer2013.npz").write_bytes(b"y")),  # kills: fer2013.npz not an input
])
def test_reproduce_runs_both_full_targets_again_when_code_or_faces_change(repro: Tree, what: str, change) -> None:
    env = _repro_env(repro)
    assert repro.run("reproduce.sh", "ferplus", "fer2013", env=env).returncode == 0
    repro.clear()
    assert repro.run("reproduce.sh", "ferplus", "fer2013", env=env).returncode == 0 and _targets_run(repro) == []
    change(repro)
    repro.clear()
    r = repro.run("reproduce.sh", "ferplus", "fer2013", env=env)
    assert r.returncode == 0, r.stderr
    assert _targets_run(repro) == ["ferplus", "fer2013"], what


@pytest.mark.parametrize("what, change", [
    ("the early G's config", lambda t: (t.root / "configs" / "g_cfg.yaml").write_text("name: g2\n")),  # kills: G config not an input
    ("the FER+ labels", lambda t: (t.tmp / "data" / "ferplus_labels.npz").write_bytes(b"y")),  # kills: data not inputs of default
    ("the FER2013 archive", lambda t: (t.tmp / "data" / "fer2013.npz").write_bytes(b"y")),
])
def test_reproduce_runs_default_again_when_its_config_or_data_change(repro: Tree, what: str, change) -> None:
    env = _repro_env(repro)
    assert repro.run("reproduce.sh", "default", env=env).returncode == 0
    repro.clear()
    change(repro)
    r = repro.run("reproduce.sh", "default", env=env)
    assert r.returncode == 0, r.stderr
    assert _targets_run(repro) == ["default"], what


def test_reproduce_stamps_record_every_output_a_target_wrote(repro: Tree) -> None:
    # kills: an output pattern (a results file, the early G's evaluation) left out of stamp()'s outputs
    env = _repro_env(repro)
    assert repro.run("reproduce.sh", "ferplus", "default", env=env).returncode == 0
    runs = repro.tmp / "runs"
    rec = json.loads((runs / "ferplus" / "reproduced.json").read_text())
    want = {f"{runs}/ferplus/models/m.pt", f"{runs}/ferplus/eval/val/results.json", "results/ferplus/val.json",
            "results/ferplus/test.json", "results/ferplus/val_accuracy_vs_factor.png",
            "results/ferplus/test_accuracy_vs_factor.png",
            *(f"results/ferplus/test_onnx_{v}.json" for v in ("fp32", "fp16", "int8-s8s8", "int8-u8s8"))}
    assert set(rec["outputs"]) == want
    rec = json.loads((runs / "default" / "reproduced.json").read_text())
    assert {f"{runs}/default/g/eval/val/results.json", f"{runs}/default/g/models/fsrfer.pt",
            f"{runs}/default/ship/models/fsrfer.pt", f"{runs}/default/hr/models/m.pt"} <= set(rec["outputs"])


def test_reproduce_removes_a_stamp_that_no_longer_matches_before_running_the_target(repro: Tree) -> None:
    # kills: finished() keeping a stamp that did not match (a target stopped under a changed config, the change
    # taken back: the old stamp matched again and the half-remade target was skipped)
    env = _repro_env(repro)
    stamp = repro.tmp / "runs" / "ferplus" / "reproduced.json"
    cfg = repro.root / "configs" / "ferplus.yaml"
    assert repro.run("reproduce.sh", "ferplus", env=env).returncode == 0 and stamp.is_file()
    old = cfg.read_text()
    cfg.write_text("name: other\n")
    repro.clear()
    r = repro.run("reproduce.sh", "ferplus", env=env, plan={"rc": {"fsrfer-train": [3]}})
    assert r.returncode == 3 and "running the step again" in r.stderr
    assert not stamp.exists()
    cfg.write_text(old)
    repro.clear()
    r = repro.run("reproduce.sh", "ferplus", env=env)
    assert r.returncode == 0, r.stderr
    assert _targets_run(repro) == ["ferplus"] and stamp.is_file()


# ---------------------------------------------------------------------------------------------
# trainer/train.py: the evaluation record of fsrfer-train --resume
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny finished stage-1 run with its val evaluation (resized and small protocols), made once."""
    pytest.importorskip("torch")
    pytest.importorskip("yaml")
    from test_resume_data_review import _cfg, _write_npz
    from trainer.train import load_data, run_pipeline

    tmp = tmp_path_factory.mktemp("run70a")
    npz = tmp / "faces.npz"
    _write_npz(npz, 0)
    cfg = _cfg(npz)
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, protocols=("resized", "small"), factors=(1, 2)))
    data = load_data(cfg, npz)
    out = tmp / "run"
    assert run_pipeline(cfg, data, out, steps=("stage1", "eval"))
    return {"cfg": cfg, "data": data, "out": out}


@pytest.fixture()
def run(finished_run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A copy of the finished run; ``evals`` counts evaluate_fn's calls."""
    from test_evaluation_reuse import count_evaluations
    from trainer import train as train_mod

    out = tmp_path / "run"
    shutil.copytree(finished_run["out"], out)
    cfg = finished_run["cfg"]
    return {**finished_run, "out": out, "evals": count_evaluations(monkeypatch), "d": out / "eval" / cfg.eval.split, "mod": train_mod}


def _evaluated(run: dict[str, Any], cfg: Any = None, data: Any = None) -> int:
    """evaluate_all(reuse=True) once; the number of evaluate_fn calls it made."""
    before = len(run["evals"])
    run["mod"].evaluate_all(cfg or run["cfg"], data or run["data"], run["out"], split=run["cfg"].eval.split, reuse=True)
    return len(run["evals"]) - before


@pytest.mark.needs("torch", "yaml")
def test_the_finished_run_is_kept_as_it_is(run: dict[str, Any]) -> None:
    assert _evaluated(run) == 0


@pytest.mark.needs("torch", "yaml")
def test_other_labels_of_the_same_faces_evaluate_again(run: dict[str, Any]) -> None:
    # kills: the faces' hash leaving the labels out (FER+ and FER2013 labels are the same images)
    data = run["data"]
    val = data.val
    relabelled = dataclasses.replace(data, val=type(val)(val.images, (val.labels + 1) % 7, val.targets))
    assert _evaluated(run, data=relabelled) > 0
    assert _evaluated(run, data=relabelled) == 0


@pytest.mark.needs("torch", "yaml")
def test_the_same_faces_from_another_source_evaluate_again_and_name_it(run: dict[str, Any]) -> None:
    # kills: the data source left out of the key (the kept results would name the old source)
    data = dataclasses.replace(run["data"], source="elsewhere")
    assert _evaluated(run, data=data) > 0
    results = json.loads((run["d"] / "results.json").read_text())
    assert {r["data"] for r in results.values()} == {"elsewhere"}


@pytest.mark.needs("torch", "yaml")
def test_a_model_written_again_with_other_weights_of_the_same_size_evaluates_again(run: dict[str, Any]) -> None:
    # kills: models recorded by name and size instead of SHA-256
    import torch
    from trainer import checkpoint

    p = run["out"] / "models" / "hr.pt"
    size = p.stat().st_size
    ck = checkpoint.load(p)
    sd = next(v for v in ck.values() if isinstance(v, dict) and any(isinstance(t, torch.Tensor) for t in v.values()))
    name = next(k for k, t in sd.items() if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > 1)
    sd[name] = sd[name] + 0.5
    checkpoint.save(p, ck)
    assert p.stat().st_size == size  # the same size: only the contents tell it apart
    assert _evaluated(run) > 0


@pytest.mark.needs("torch", "yaml")
def test_another_torch_build_evaluates_again(run: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: torch's version cut to its major (or minor) number in the key
    import torch

    monkeypatch.setattr(torch, "__version__", f"{torch.__version__}.post7")
    assert _evaluated(run) > 0


@pytest.mark.needs("torch", "yaml")
def test_the_key_names_the_device_type_the_run_evaluates_on(run: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: cfg.device ("auto") recorded instead of the device it resolves to
    import torch

    mod, cfg = run["mod"], run["cfg"]
    here = mod.evaluation_key(cfg, run["data"], run["out"], "val")
    assert here["device"] == mod.train_device(cfg).type
    assert mod._evaluated_before(run["d"], here)
    monkeypatch.setattr(mod, "train_device", lambda c: torch.device("cuda", 0))
    there = mod.evaluation_key(cfg, run["data"], run["out"], "val")
    assert there["device"] == "cuda" and not mod._evaluated_before(run["d"], there)


@pytest.mark.needs("torch", "yaml")
@pytest.mark.parametrize("record", [{"outputs": {}}, {"outputs": None}, {}, {"key": None}])
def test_a_record_without_outputs_or_fields_evaluates_again(run: dict[str, Any], record: dict[str, Any]) -> None:
    # kills: an empty outputs list taken as all outputs intact; KeyError left out of the unreadable-record exceptions
    mod, d = run["mod"], run["d"]
    rec = json.loads((d / mod.EVALUATED).read_text())
    rec.update(record)
    if "key" not in record and "outputs" not in record:
        rec.pop("outputs")
    (d / mod.EVALUATED).write_text(json.dumps(rec))
    assert _evaluated(run) > 0
    assert _evaluated(run) == 0


@pytest.mark.needs("torch", "yaml")
def test_every_protocols_results_file_is_recorded_and_checked(run: dict[str, Any]) -> None:
    # kills: only the first protocol's results file recorded in evaluated.json
    mod, d = run["mod"], run["d"]
    assert set(json.loads((d / mod.EVALUATED).read_text())["outputs"]) == {"results.json", "results_small.json"}
    (d / "results_small.json").write_text((d / "results_small.json").read_text().replace("accuracy", "accuracy "))
    assert _evaluated(run) > 0


@pytest.mark.needs("torch", "yaml")
def test_kept_results_are_the_first_protocols_as_a_new_evaluations_are(run: dict[str, Any]) -> None:
    # kills: the reuse path returning the first listed protocol's file where "resized" is listed later
    mod, cfg = run["mod"], run["cfg"]
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, protocols=("small", "resized")))
    fresh = mod.evaluate_all(cfg, run["data"], run["out"], split="val", reuse=True)
    n = len(run["evals"])
    kept = mod.evaluate_all(cfg, run["data"], run["out"], split="val", reuse=True)
    assert len(run["evals"]) == n
    assert kept == fresh == json.loads((run["d"] / "results.json").read_text())


@pytest.mark.needs("torch", "yaml")
def test_sources_hash_covers_both_packages_subfolders_and_contents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the SDK's sources left out; top-level files only (glob for rglob); sizes and names without contents
    pytest.importorskip("torch")
    import fsrfer_edge
    from trainer import train as train_mod

    files = {"trainer/train.py": "t = 1\n", "trainer/sub/x.py": "x = 1\n",
             "fsrfer_edge/__init__.py": "", "fsrfer_edge/sub/y.py": "y = 1\n"}
    for f, text in files.items():
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text(text)
    monkeypatch.setattr(train_mod, "__file__", str(tmp_path / "trainer" / "train.py"))
    monkeypatch.setattr(fsrfer_edge, "__file__", str(tmp_path / "fsrfer_edge" / "__init__.py"))
    first = train_mod._sources_sha256()
    assert train_mod._sources_sha256() == first
    seen = {first}
    for f in ("fsrfer_edge/sub/y.py", "trainer/sub/x.py"):
        (tmp_path / f).write_text((tmp_path / f).read_text().replace("1", "2"))  # the same size, other contents
        h = train_mod._sources_sha256()
        assert h not in seen, f
        seen.add(h)
    (tmp_path / "fsrfer_edge" / "__pycache__").mkdir()
    (tmp_path / "fsrfer_edge" / "__pycache__" / "z.py").write_text("z = 1\n")
    assert train_mod._sources_sha256() == h  # bytecode caches are not sources
