"""fsrfer-train --resume on a run whose evaluation is already there: it is not made again while the record beside
it (OUT/eval/<split>/evaluated.json) says it was made of the same models, faces, settings, code, torch and device,
and its results files are as written; anything else evaluates again, and an evaluation that did not finish leaves
no record. Tiny .npz archives of random faces, tiny models, the CPU."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.needs("torch", "yaml")

torch = pytest.importorskip("torch")
pytest.importorskip("yaml")

from trainer import train as train_mod  # noqa: E402
from trainer.train import EVALUATED, load_data, run_pipeline  # noqa: E402

from test_resume_data_review import _cfg, _write_npz  # noqa: E402


@pytest.fixture()
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A finished stage-1 run with its val evaluation; ``evals`` counts evaluate_fn's calls from here on."""
    npz = tmp_path / "faces.npz"
    _write_npz(npz, 0)
    cfg = _cfg(npz)
    data = load_data(cfg, npz)
    out = tmp_path / "run"
    assert run_pipeline(cfg, data, out, steps=("stage1", "eval"))
    return {"cfg": cfg, "data": data, "out": out, "npz": npz, "evals": count_evaluations(monkeypatch),
            "d": out / "eval" / cfg.eval.split}


def count_evaluations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one at each call of trainer.train.evaluate_fn from here on."""
    calls: list[int] = []
    real = train_mod.evaluate_fn

    def counted(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(train_mod, "evaluate_fn", counted)
    return calls


def _again(run: dict[str, Any], cfg: Any = None, data: Any = None, resume: bool = True,
           steps: tuple[str, ...] = ("stage1", "eval")) -> int:
    """Run the pipeline again; the number of evaluate_fn calls it made."""
    before = len(run["evals"])
    assert run_pipeline(cfg or run["cfg"], data or run["data"], run["out"], resume=resume, steps=steps)
    return len(run["evals"]) - before


def test_a_resumed_finished_run_keeps_its_evaluation(run: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    d = run["d"]
    rec = json.loads((d / EVALUATED).read_text())
    assert set(rec["key"]["models"]) == {"hr.pt"} and rec["key"]["split"] == "val"
    from importlib import metadata

    try:
        pillow = metadata.version("pillow")
    except metadata.PackageNotFoundError:
        pillow = None
    assert rec["key"]["torch"] == torch.__version__ and rec["key"]["pillow"] == pillow
    assert rec["key"]["numpy"] == np.__version__
    assert set(rec["outputs"]) == {"results.json"}
    results = (d / "results.json").read_text()
    with caplog.at_level(logging.INFO, logger="trainer"):
        assert _again(run) == 0
    assert "evaluation on val skipped" in caplog.text
    assert (d / "results.json").read_text() == results
    assert train_mod.evaluate_all(run["cfg"], run["data"], run["out"], reuse=True) == json.loads(results)
    assert _again(run, resume=False, steps=("eval",)) > 0  # without --resume: evaluated as before


@pytest.mark.parametrize("change", ["results edited", "results removed", "record removed", "record damaged",
                                    "a model added", "other factors", "another protocol", "other code", "other faces"])
def test_anything_the_evaluation_depends_on_changed_evaluates_again(run: dict[str, Any], change: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    d, cfg, data = run["d"], run["cfg"], run["data"]
    if change == "results edited":
        (d / "results.json").write_text((d / "results.json").read_text().replace("accuracy", "accuracy "))
    elif change == "results removed":
        (d / "results.json").unlink()
    elif change == "record removed":
        (d / EVALUATED).unlink()
    elif change == "record damaged":
        (d / EVALUATED).write_text("[1]")
    elif change == "a model added":
        shutil.copy(run["out"] / "models" / "hr.pt", run["out"] / "models" / "lr_finetune.pt")
    elif change in ("other factors", "another protocol"):
        import dataclasses

        ev = (dataclasses.replace(cfg.eval, factors=(1, 2)) if change == "other factors" else
              dataclasses.replace(cfg.eval, protocols=(*cfg.eval.protocols, "small")))
        cfg = dataclasses.replace(cfg, eval=ev)
    elif change == "other code":
        monkeypatch.setattr(train_mod, "_sources_sha256", lambda: "0" * 64)
    elif change == "other faces":  # the same train and val faces, other test faces: only eval-test runs again
        assert _again(run, steps=("stage1", "eval-test")) > 0
        data = type(data)(data.train, data.val, data.test.take(np.arange(len(data.test.images))[::-1]), data.source)
        assert _again(run, data=data, steps=("stage1", "eval-test")) > 0
        assert _again(run, data=data, steps=("stage1", "eval-test")) == 0
        return
    n = _again(run, cfg=cfg, data=data)
    assert n > 0
    rec = json.loads((d / EVALUATED).read_text())
    if change == "a model added":
        assert set(rec["key"]["models"]) == {"hr.pt", "lr_finetune.pt"}
    assert _again(run, cfg=cfg, data=data) == 0  # and then kept


def test_an_evaluation_that_did_not_finish_leaves_no_record(run: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("killed")

    shutil.copy(run["out"] / "models" / "hr.pt", run["out"] / "models" / "lr_finetune.pt")
    monkeypatch.setattr(train_mod, "evaluate_fn", fails)
    with pytest.raises(RuntimeError):
        run_pipeline(run["cfg"], run["data"], run["out"], resume=True, steps=("stage1", "eval"))
    assert not (run["d"] / EVALUATED).exists()


def test_a_kept_evaluation_draws_a_plot_removed_since_and_leaves_the_others(run: dict[str, Any]) -> None:
    d = run["d"]
    plot = d / "accuracy_vs_factor.png"
    drawn = plot.stat().st_mtime_ns
    assert _again(run) == 0 and plot.stat().st_mtime_ns == drawn  # kept as it was: not drawn again
    plot.unlink()
    assert _again(run) == 0  # kept evaluation: no model evaluated again...
    assert plot.is_file() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # ...but its plot drawn again
