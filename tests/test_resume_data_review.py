"""fsrfer-train --resume after the data archive was written again at the same path with other faces: a stopped
stage was carried on on the new faces, and stage 2's feature cache (keyed by the data's path and face count)
reused features of the old ones. Tiny .npz archives of random faces, tiny models, the CPU."""
import json
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")

from fsrfer_edge.errors import ConfigError  # noqa: E402
from trainer import checkpoint, config  # noqa: E402
from trainer import train as train_mod  # noqa: E402
from trainer.cli import train_main  # noqa: E402
from trainer.train import load_data, run_pipeline, train_stage1, train_stage2  # noqa: E402

from test_trainer_inputs import _error_line, tiny  # noqa: E402

SPLIT = np.array(["train"] * 24 + ["val"] * 8 + ["test"] * 8)


def _write_npz(path, seed):
    """A plain archive of 40 random 48x48 faces (24 train, 8 val, 8 test); ``seed`` draws other faces."""
    rng = np.random.default_rng(seed)
    np.savez(path, images=rng.integers(0, 256, (40, 48, 48)).astype(np.uint8), labels=np.arange(40) % 7,
             split=SPLIT)


def _cfg(npz, **over):
    return config.from_dict(tiny(data={"synthetic": 0, "path": str(npz)}, **over))


def _stopped_stage1(tmp_path):
    """Stage 1 (3 epochs) stopped after one, on the faces of seed 0; returns (config, the archive, its state)."""
    npz = tmp_path / "faces.npz"
    _write_npz(npz, 0)
    cfg = _cfg(npz, stage1={"epochs": 3})
    assert train_stage1(cfg, load_data(cfg, npz), tmp_path, resume=False, stop_after=1) is None
    return cfg, npz, tmp_path / "state" / "stage1.pt"


def test_a_stopped_stage_is_not_resumed_on_other_faces_at_the_same_path(tmp_path):
    cfg, npz, state = _stopped_stage1(tmp_path)
    first = load_data(cfg, npz)
    _write_npz(npz, 1)  # the archive written again: the same path, the same count, other faces
    other = load_data(cfg, npz)
    with pytest.raises(ConfigError) as exc:
        train_stage1(cfg, other, tmp_path, resume=True)
    then = first.sha256
    assert checkpoint.load(state, kind="state")["settings"]["data_sha256"] == then
    assert other.source == first.source and other.sha256 != then
    msg = str(exc.value)
    assert "\n" not in msg
    assert re.search(r"stage1\.pt \(stage1, stopped after epoch 1\), but it was started with other settings "
                     rf"\(data_sha256: '{then}' in the stopped stage, '{other.sha256}' now\)", msg), msg
    assert checkpoint.load(state, kind="state")["epoch"] == 1  # not carried on
    # the faces it started on, written again: it carries on
    _write_npz(npz, 0)
    assert train_stage1(cfg, load_data(cfg, npz), tmp_path, resume=True, stop_after=1) is None
    assert checkpoint.load(state, kind="state")["epoch"] == 2


def test_fsrfer_train_resume_on_other_faces_is_refused_in_one_line_before_config_json_changes(tmp_path, capsys):
    cfg, npz, state = _stopped_stage1(tmp_path)
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump(cfg.to_dict()))
    (tmp_path / "config.json").write_text(json.dumps({"marker": 1}))
    _write_npz(npz, 1)
    capsys.readouterr()
    assert train_main(["--config", str(conf), "--out", str(tmp_path), "--steps", "stage1", "--resume"]) == 2
    line = _error_line(capsys)
    assert "stage1.pt (stage1, stopped after epoch 1)" in line and "data_sha256: '" in line, line
    assert json.loads((tmp_path / "config.json").read_text()) == {"marker": 1}
    assert checkpoint.load(state, kind="state")["epoch"] == 1


def test_a_state_written_before_the_data_was_fingerprinted_resumes(tmp_path):
    """Not recorded, not compared: such a state resumes (on whatever faces are at the path, as before)."""
    cfg, npz, state = _stopped_stage1(tmp_path)
    st = checkpoint.load(state, kind="state")
    del st["settings"]["data_sha256"]
    checkpoint.save(state, st)
    _write_npz(npz, 1)
    assert train_stage1(cfg, load_data(cfg, npz), tmp_path, resume=True, stop_after=1) is None
    assert checkpoint.load(state, kind="state")["epoch"] == 2


def test_stage2_feature_cache_is_not_reused_for_other_faces_at_the_same_path(tmp_path, monkeypatch):
    npz = tmp_path / "faces.npz"
    _write_npz(npz, 0)
    cfg = _cfg(npz, degrade={"factors": [1, 4]}, eval={"factors": [1, 4]},
               stage2={"pretrain_epochs": 1, "epochs": 0, "ablations": []})
    data = load_data(cfg, npz)
    assert run_pipeline(cfg, data, tmp_path, steps=("stage1",))
    hr = tmp_path / "models" / "hr.pt"
    calls = []
    extract = train_mod.extract_features

    def counted(trunk, images, *args, **kw):
        calls.append(images.copy())
        return extract(trunk, images, *args, **kw)

    monkeypatch.setattr(train_mod, "extract_features", counted)
    assert train_stage2(cfg, data, hr, tmp_path / "a", "fsrfer", cfg.stage2.losses, resume=False) is not None
    assert len(calls) == 2  # train and val features, extracted once
    assert train_stage2(cfg, data, hr, tmp_path / "a", "fsrfer_again", cfg.stage2.losses, resume=False) is not None
    assert len(calls) == 2  # the same faces: the cache serves them
    _write_npz(npz, 1)
    other = load_data(cfg, npz)
    assert train_stage2(cfg, other, hr, tmp_path / "a", "fsrfer_other", cfg.stage2.losses, resume=False) is not None
    assert len(calls) == 4, "features of the old faces were reused for the new ones"
    assert np.array_equal(calls[2], other.train.images) and np.array_equal(calls[3], other.val.images)
    state = checkpoint.load(tmp_path / "a" / "state" / "fsrfer_other.pretrain.pt", kind="state")
    assert state["settings"]["data_sha256"] == other.sha256


def test_a_finished_model_of_other_faces_is_not_kept_nor_started_from(tmp_path):
    """--resume kept hr.pt trained on the old faces and trained stage 2 from it on the new ones. A model from before
    the fingerprint was recorded is kept as before."""
    npz = tmp_path / "faces.npz"
    _write_npz(npz, 0)
    cfg = _cfg(npz, stage2={"pretrain_epochs": 1, "epochs": 0, "ablations": []})
    out = tmp_path / "run"
    assert run_pipeline(cfg, load_data(cfg, npz), out, steps=("stage1",))
    hr = out / "models" / "hr.pt"
    assert checkpoint.load(hr, kind="model")["meta"]["data_sha256"] == load_data(cfg, npz).sha256
    _write_npz(npz, 1)
    other = load_data(cfg, npz)
    for resume, said in ((True, "--resume would keep"), (False, "stage 2 and the baselines would start from")):
        steps = ("stage1", "stage2") if resume else ("stage2",)
        with pytest.raises(ConfigError, match=rf"{said} .*hr\.pt, but it was trained with other settings "
                                              rf"\(data_sha256: '[0-9a-f]{{64}}' in the model, '{other.sha256}' now\)"):
            run_pipeline(cfg, other, out, resume=resume, steps=steps)
    assert not (out / "models" / "fsrfer.pt").exists()
    ck = checkpoint.load(hr, kind="model")
    del ck["meta"]["data_sha256"]
    checkpoint.save(hr, ck)
    assert run_pipeline(cfg, other, out, resume=True, steps=("stage1", "stage2"))
