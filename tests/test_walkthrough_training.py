"""A new user's walk through the README's training -> evaluation -> export path: what went wrong on the way
(tiny synthetic runs, CPU)."""
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")

from trainer import config  # noqa: E402
from trainer.cli import eval_main, train_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def tiny_config(path: Path, **over) -> str:
    """configs/tiny.yaml on the CPU, small: 200 faces, one stage-1 epoch, one thread."""
    d = {**config.load(REPO / "configs" / "tiny.yaml").to_dict(), "device": "cpu", "threads": 1}
    over = {"data": {"synthetic": 200}, "stage1": {"epochs": 1},
            "stage2": {"pretrain_epochs": 1, "epochs": 1, "ablations": []}, **over}
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) else v
    path.write_text(yaml.safe_dump(d))
    return str(path)


def _error_line(capsys, prog: str = "fsrfer-train") -> str:
    (line,) = [s for s in capsys.readouterr().err.splitlines() if s.startswith(f"{prog}: error")]
    return line


def test_a_step_refused_for_want_of_the_hr_model_writes_no_config_json(tmp_path, capsys):
    """`--steps stage2` (or eval) where OUT has no models/hr.pt is refused; it must not first create OUT with a
    config.json (a run that never ran), nor rewrite a run's config.json with the settings it refused."""
    cfg = tiny_config(tmp_path / "c.yaml")
    fresh = tmp_path / "fresh"
    assert train_main(["--config", cfg, "--out", str(fresh), "--steps", "stage2"]) == 2
    assert "hr.pt not found" in _error_line(capsys)
    assert not (fresh / "config.json").exists()

    run = tmp_path / "run"
    assert train_main(["--config", cfg, "--out", str(run), "--steps", "stage1"]) == 0
    before = (run / "config.json").read_text()
    (run / "models" / "hr.pt").rename(tmp_path / "hr_aside.pt")  # moved aside, as a refusal message advises
    capsys.readouterr()
    assert train_main(["--config", cfg, "--out", str(run), "--seed", "1", "--steps", "stage2,eval"]) == 2
    assert "hr.pt not found" in _error_line(capsys)
    assert (run / "config.json").read_text() == before


@pytest.mark.parametrize("steps", ["", ","])
def test_no_steps_is_a_usage_error_naming_the_option(tmp_path, capsys, steps):
    """An empty --steps ran nothing and then said 'stage 1 model ... not found; run the stage1 step first'."""
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        train_main(["--config", str(REPO / "configs" / "tiny.yaml"), "--out", str(out), "--steps", steps])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--steps" in err and "stage1" in err and "hr.pt" not in err, err
    assert not out.exists()


def test_a_training_state_given_for_a_model_says_where_the_models_are(tmp_path, capsys):
    """fsrfer-eval (and fsrfer-export, fsrfer-demo through the same loader) on a run's state/*.pt: say which file
    to pass instead."""
    cfg = tiny_config(tmp_path / "c.yaml")
    run = tmp_path / "run"
    assert train_main(["--config", cfg, "--out", str(run), "--steps", "stage1"]) == 0
    capsys.readouterr()
    state = run / "state" / "stage1.pt"
    assert eval_main(["--checkpoint", str(state), "--data", str(tmp_path / "unused.npz"),
                      "--json", str(tmp_path / "e.json")]) == 2
    line = _error_line(capsys, "fsrfer-eval")
    assert str(state) in line and "'state' checkpoint" in line and "--resume" in line and "models/" in line, line


def test_a_training_state_given_to_fsrfer_export_says_where_the_models_are(tmp_path, capsys):
    pytest.importorskip("onnx")
    from fsrfer_edge.export.cli import main as export_main

    cfg = tiny_config(tmp_path / "c.yaml")
    run = tmp_path / "run"
    assert train_main(["--config", cfg, "--out", str(run), "--steps", "stage1"]) == 0
    capsys.readouterr()
    assert export_main([str(run / "state" / "stage1.pt"), "--out-dir", str(tmp_path / "engines")]) == 2
    line = _error_line(capsys, "fsrfer-export")
    assert "models/" in line and "--resume" in line, line
    assert not (tmp_path / "engines").exists()


def test_engine_without_tensorrt_says_the_onnx_file_to_copy_is_not_written_yet(tmp_path, capsys, monkeypatch):
    """`fsrfer-export runs/NAME/models/fsrfer.pt --engine` where TensorRT is missing stops before writing anything,
    but said only 'copy fsrfer.fp32.onnx to the Jetson/GPU machine': a file that this run did not write."""
    pytest.importorskip("onnx")
    from fsrfer_edge.export import engine
    from fsrfer_edge.export.cli import main as export_main

    def no_tensorrt(onnx=None):
        raise engine._no_tensorrt("not in this test", onnx)

    monkeypatch.setattr(engine, "import_tensorrt", no_tensorrt)
    cfg = tiny_config(tmp_path / "c.yaml")
    run = tmp_path / "run"
    assert train_main(["--config", cfg, "--out", str(run), "--steps", "stage1"]) == 0
    capsys.readouterr()
    out = tmp_path / "engines"
    assert export_main([str(run / "models" / "hr.pt"), "--out-dir", str(out), "--engine"]) == 2
    line = _error_line(capsys, "fsrfer-export")
    assert "Nothing was written" in line and "leave out --engine" in line and str(out / "hr.fp32.onnx") in line, line
    assert not out.exists()
