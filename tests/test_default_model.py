"""The shipped default model: loads with no arguments, stays small, and keeps its published accuracy."""
import json
from pathlib import Path

import numpy as np
import pytest

from fsrfer_edge import Recognizer
from fsrfer_edge.recognizer import DEFAULT_MODEL
from _scripts import load_script

pytest.importorskip("onnxruntime")
REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "results" / "default_model" / "test.json"


def test_default_model_is_shipped_small_and_documented():
    models = DEFAULT_MODEL.parent
    assert DEFAULT_MODEL.is_file(), f"{DEFAULT_MODEL} is missing: run scripts/ship_default.py"
    size = DEFAULT_MODEL.stat().st_size + (models / "default.pt").stat().st_size
    limit = load_script("scripts/ship_default.py", "ship_default").LIMIT_BYTES
    assert limit == 30_000_000 and size <= limit, f"{size / 1e6:.2f} MB; issue 12's package budget is 30 MB (30 million bytes)"
    card = (models / "MODEL_CARD.md").read_text()
    assert "FER2013" in card and "licence" in card.lower()


def test_recognizer_with_no_arguments_predicts():
    faces = [np.random.default_rng(i).integers(0, 256, (s, s), dtype=np.uint8) for i, s in enumerate((12, 24, 48))]
    with Recognizer() as rec:
        preds = rec.predict(faces)
    assert [p.label in rec.classes for p in preds] == [True] * 3
    assert rec.info.method == "fsrfer" and rec.info.precision == "fp32"


@pytest.mark.data
def test_default_model_reproduces_its_published_ferplus_test_accuracy(shared_data):
    from fsrfer_edge.preprocessing import degrade
    from trainer.data import load_dataset

    published = json.loads(PUBLISHED.read_text())
    test = load_dataset(shared_data / "fer2013.npz", labels="ferplus").subset("test")
    with Recognizer(threads=2) as rec:
        for factor in (1, 4):
            lr = np.clip(degrade(test.images, factor), 0, 255)
            pred = np.concatenate([rec.predict_logits(rec.info.preprocessing.normalize(lr[i:i + 512])[:, None]).argmax(1)
                                   for i in range(0, len(lr), 512)])
            acc = float((pred == test.labels).mean())
            assert abs(acc - published["factors"][str(factor)]["accuracy"]) <= 0.001, (factor, acc)


def test_the_model_card_says_what_the_model_was_trained_on():
    mod = load_script("scripts/ship_default.py", "ship_default")
    soft = mod.describe_labels({"data": {"labels": "ferplus", "soft_labels": True},
                                "stage1": {"rotate": 15.0, "scale": 0.15}})
    assert soft.startswith("the FER+ vote distributions as soft targets")
    assert soft.endswith("augmented with rotation up to +-15 degrees and zoom 0.85-1.15")
    assert mod.describe_labels({"data": {"labels": "ferplus"}}) == \
        "FER+ majority labels (Microsoft FER+, MIT-licensed labels)"
    assert mod.describe_labels({"data": {"labels": "fer2013"}, "stage1": {"scale": 0.1}}) == \
        "their original FER2013 labels, augmented with zoom 0.9-1.1"


def test_ship_early_g_checks_its_inputs_before_touching_anything(tmp_path):
    """`keep` for the baseline needs the committed baseline test files; a missing one stops the script
    before any export or evaluation, and names what is missing."""
    import shutil
    import subprocess

    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    for name in ("fsrfer.pt", "hr.pt"):
        (run / "models" / name).write_bytes(b"")
    data = tmp_path / "data"
    data.mkdir()
    (data / "fer2013.npz").write_bytes(b"")
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "ship_early_g.sh", repo / "scripts")
    out = repo / "results" / "default_model"
    out.mkdir(parents=True)
    env = {"PATH": "/usr/bin:/bin", "FSRFER_DATA": str(data)}
    cmd = ["bash", str(repo / "scripts" / "ship_early_g.sh"), str(run), "keep", "chosen"]
    (out / "baseline_test.json").write_text("{}")
    (out / "baseline_test_small.json").write_text("{}")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "baseline_test_camera.json is missing" in r.stderr
    r = subprocess.run(["bash", str(repo / "scripts" / "ship_early_g.sh"), str(run), str(tmp_path / "base"), "x"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "lr_finetune.pt is missing" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["baseline_test.json", "baseline_test_small.json"]


def test_the_model_card_says_when_hr_faces_take_the_hr_stages():
    mod = load_script("scripts/ship_default.py", "ship_default")
    g = {"generator": {"start": "stem", "scale_aware": True}, "feature_level": "layer3", "factor_estimator": True}
    assert "routed" not in mod.describe_g(g, {}) and "BatchNorm" not in mod.describe_g(g, {})
    bn = {**g, "generator": {**g["generator"], "batchnorm": "train"}}
    assert "BatchNorm statistics were re-estimated on the mixed-factor training faces" in mod.describe_g(bn, {})
    assert "below x1.41 (a face that was not down-sampled) goes through the frozen HR stages" in \
        mod.describe_g({**g, "route_hr_below": 2 ** 0.5}, {})
    assert "whole grey levels" not in mod.describe_g(g, {})
    assert "rounded to whole grey levels" in mod.describe_g({**g, "factor_estimator_pixels": [63.75, 127.5]}, {})


@pytest.mark.needs("torch")
def test_the_model_card_names_the_frozen_hr_network_only_when_it_is_the_shipped_one(tmp_path):
    import torch

    from trainer import checkpoint
    from trainer.models import InferenceModel
    from trainer.train import PRE

    from trainer import config as config_mod
    from trainer.train import spec_for

    mod = load_script("scripts/ship_default.py", "ship_default")
    stage2_cfg = config_mod.load(REPO / "configs" / "tiny.yaml")
    torch.manual_seed(0)
    hr = InferenceModel(spec_for(stage2_cfg, "hr")).eval()
    meta = {"name": "hr", "best_val_score": 0.8973, "config": {"name": "hr_cfg", "seed": 1, "stage1": {"epochs": 120}},
            "history": [{"epoch": 1}]}
    hr_ckpt = checkpoint.model_payload(hr, hr.spec, PRE, meta)
    shipped = {"state_dict": {**hr_ckpt["state_dict"], "generator.w": torch.zeros(2)}}
    info = mod.hr_provenance(shipped, hr_ckpt, tmp_path / "hr.pt")
    assert info == {"config": "hr_cfg", "seed": 1, "epochs": 120, "val": 0.8973, "tensors": len(hr_ckpt["state_dict"]),
                    "cfg": meta["config"]}
    text = mod.trained_with({"name": "stage2_cfg", "seed": 0}, info)
    assert "on FER2013 val" in mod.trained_with({}, {**info, "cfg": {"data": {"labels": "fer2013"}}})
    assert "Stage 1 (the frozen trunk and head): `configs/hr_cfg.yaml`, seed 1, 120 epochs, 89.73% on FER+ val" in text
    assert "`configs/stage2_cfg.yaml`, seed 0" in text and "did not" in text
    assert mod.trained_with({"name": "c"}, None).startswith("Trained with `configs/c.yaml`")
    other = {"state_dict": {k: v + 1 if v.is_floating_point() else v for k, v in hr_ckpt["state_dict"].items()}}
    with pytest.raises(SystemExit, match="is not this model's frozen HR network"):
        mod.hr_provenance(other, hr_ckpt, tmp_path / "hr.pt")
    assert "30.00 MB (budget 30 MB" in mod.size_line({"a": 10_000_000, "b": 20_000_000})
    # A stage-2 run's RUN/models/hr.pt (scripts/early_g.py) is a copy whose metadata is the stage-2 config: the
    # card follows it to the stage-1 checkpoint it was copied from, and refuses when that file changed.
    src, copy = tmp_path / "s1" / "hr.pt", tmp_path / "run" / "models" / "hr.pt"
    src.parent.mkdir()
    checkpoint.save(src, checkpoint.model_payload(hr, hr.spec, PRE, meta))
    load_script("scripts/early_g.py", "early_g").extract_hr(src, copy, stage2_cfg)
    copied = checkpoint.load(copy, kind="model")
    assert copied["meta"]["config"]["name"] == stage2_cfg.name
    info = mod.hr_provenance({"state_dict": copied["state_dict"]}, copied, copy)
    assert (info["config"], info["seed"], info["epochs"], info["val"]) == ("hr_cfg", 1, 120, 0.8973)
    checkpoint.save(src, checkpoint.model_payload(hr, hr.spec, PRE, {**meta, "best_val_score": 0.5}))
    with pytest.raises(SystemExit, match="sha256 differs"):
        mod.hr_provenance({"state_dict": copied["state_dict"]}, copied, copy)
    with pytest.raises(SystemExit, match="not a stage-1 run's checkpoint"):
        mod.stage1_source({"meta": {"name": "fsrfer"}}, tmp_path / "x.pt")


@pytest.mark.needs("torch")
def test_package_size_measures_each_checkpoint_form_and_the_planes_are_smallest(tmp_path):
    import torch

    from trainer import checkpoint
    from trainer.models import InferenceModel
    from trainer.train import PRE

    torch.manual_seed(0)
    m = InferenceModel({"method": "hr", "backbone": "tiny"}).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    ckpt, graph = tmp_path / "m.pt", tmp_path / "m.onnx"
    checkpoint.save(ckpt, checkpoint.model_payload(m, m.spec, PRE, {"name": "m"}))
    graph.write_bytes(b"x" * 1000)
    doc = load_script("scripts/package_size.py", "package_size").measure(ckpt, graph)
    forms = doc["forms"]
    assert all(f["restores_bit_for_bit"] for f in forms.values())
    sizes = [forms[k]["checkpoint_bytes"] for k in ("stored", "deflated", "byte_planes_deflated")]
    assert sizes == sorted(sizes, reverse=True) and sizes[2] < sizes[1] < sizes[0]
    assert forms["stored"]["package_bytes"] == sizes[0] + 1000 and doc["budget_bytes"] == 30_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.pt"]


@pytest.mark.needs("torch")
def test_ship_default_measures_the_compressed_checkpoint_and_refuses_over_budget(tmp_path, capsys):
    from trainer import checkpoint
    from trainer.models import InferenceModel
    from trainer.train import PRE

    mod = load_script("scripts/ship_default.py", "ship_default")
    mod.DEST = tmp_path / "dest"
    m = InferenceModel({"method": "hr", "backbone": "tiny"}).eval()
    ckpt = tmp_path / "m.pt"
    checkpoint.save(ckpt, checkpoint.model_payload(m, m.spec, PRE, {"name": "m"}))
    small = tmp_path / "small.pt"
    checkpoint.save(small, checkpoint.model_payload(m, m.spec, PRE, {"name": "m"}), compress=True)
    graph = tmp_path / "m.onnx"
    with open(graph, "wb") as f:  # a sparse stand-in: the budget is checked before the graph is read
        f.truncate(mod.LIMIT_BYTES - small.stat().st_size + 1)
    args = ["--onnx", str(graph), "--checkpoint", str(ckpt), "--eval", str(tmp_path / "none.json"), "--chosen", "x"]
    assert mod.main(args) == 2
    assert f"compressed checkpoint are {(mod.LIMIT_BYTES + 1) / 1e6:.2f} MB" in capsys.readouterr().err
    assert not mod.DEST.exists()  # refused before anything was installed


@pytest.mark.needs("torch")
def test_model_history_writes_each_terms_share_of_g_loss(tmp_path):
    mod = load_script("scripts/model_history.py", "model_history")
    meta = {"name": "fsrfer", "config": {"name": "cfg"}, "losses": {"adversarial": 0.001},
            "history": [{"epoch": 1, "rec": 6.0, "kd": 1.5, "adv": -0.5, "g_loss": 7.0, "w_mean": 1.05}],
            "pretrain_history": [{"epoch": 1, "mse": 0.002}]}
    doc = mod.history_doc(meta)
    assert doc["shares_of_g_loss"] == [{"epoch": 1, "rec": 6.0 / 7.0, "kd": 1.5 / 7.0, "adv": -0.5 / 7.0}]
    assert doc["history"] == meta["history"] and doc["config"] == "cfg" and doc["pretrain_history"][0]["mse"] == 0.002
    with pytest.raises(SystemExit, match="no meta.history"):
        mod.history_doc({"name": "hr"})
    out = tmp_path / "h.json"
    assert mod.main(["--out", str(out)]) == 0  # the shipped default.pt
    written = json.loads(out.read_text())
    assert written["sha256"] and written["history"] and written["command"].startswith("python scripts/model_history.py")


def test_the_model_cards_accuracy_section_is_the_one_its_result_files_give(tmp_path):
    """``ship_default.py --refresh-accuracy`` renders the same card from results/default_model; a changed file changes it."""
    import json

    mod = load_script("scripts/ship_default.py", "ship_default")
    card = (REPO / "fsrfer_edge" / "models" / "MODEL_CARD.md").read_text()
    results = REPO / "results" / "default_model"
    assert mod.refreshed_card(card, results) == card
    for name in ("test.json", "test_small.json", "test_camera.json"):
        (tmp_path / name).write_text((results / name).read_text())
    doc = json.loads((tmp_path / "test_small.json").read_text())
    doc["factors"]["4"]["accuracy"] = 0.1234
    (tmp_path / "test_small.json").write_text(json.dumps(doc))
    changed = mod.refreshed_card(card, tmp_path)
    assert "| 12.34 |" in changed and changed[:changed.index(mod.ACCURACY_HEADING)] == card[:card.index(mod.ACCURACY_HEADING)]
    with pytest.raises(SystemExit, match="test.json is missing"):
        mod.refreshed_card(card, tmp_path / "nowhere")


@pytest.mark.needs("torch")
def test_the_model_card_names_the_files_beside_the_model_and_they_match_its_checkpoint():
    import re

    from fsrfer_edge.confidence import ScoreCalibration
    from fsrfer_edge.groups import GroupCalibration
    from fsrfer_edge.metadata import ModelInfo

    mod = load_script("scripts/ship_default.py", "ship_default")
    card = (DEFAULT_MODEL.parent / "MODEL_CARD.md").read_text()
    assert mod.SIDECARS in card
    named = re.findall(r"`(default\.\w+\.json)`", mod.SIDECARS)
    assert named == ["default.scores.json", "default.groups.json"]
    import onnx

    info = ModelInfo.from_props({p.key: p.value for p in onnx.load(str(DEFAULT_MODEL), load_external_data=False)
                                 .metadata_props}, source=str(DEFAULT_MODEL))
    for name, kind in zip(named, (ScoreCalibration, GroupCalibration)):
        assert kind.load(DEFAULT_MODEL.parent / name).checkpoint_sha256 == info.checkpoint_sha256
