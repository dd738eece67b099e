"""The user's path end to end on CPU: train (tiny config) -> fsrfer-export (FP32, FP16, INT8 both
schemes) -> Recognizer on every file -> fsrfer-eval on the ONNX file."""
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxsim")

from fsrfer_edge import Recognizer  # noqa: E402
from fsrfer_edge.errors import InputError  # noqa: E402
from fsrfer_edge.export.cli import main as export_main  # noqa: E402
from trainer.cli import eval_main, train_main  # noqa: E402
from trainer.synthetic import make_faces  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    run = tmp / "run"
    assert train_main(["--config", str(REPO / "configs" / "tiny.yaml"), "--out", str(run),
                       "--steps", "stage1,stage2"]) == 0
    imgs, labels = make_faces(300, seed=11)
    data = tmp / "faces.npz"
    np.savez(data, images=imgs, labels=labels, split=np.array(["train"] * 150 + ["val"] * 150))
    out = tmp / "engines"
    rc = export_main([str(run / "models" / "fsrfer.pt"), "--out-dir", str(out), "--name", "tiny", "--fp16",
                      "--int8", "--calib", str(data), "--calib-size", "70", "--eval-data", str(data),
                      "--max-int8-drop", "5", "-q"])
    assert rc == 0
    return out, data  # 70 calibration faces: not a multiple of the reader's batch of 32


def test_export_writes_every_precision_with_a_report(exported):
    out, _ = exported
    names = sorted(p.name for p in out.iterdir())
    assert names == ["tiny.fp16.onnx", "tiny.fp32.onnx", "tiny.int8-s8s8.onnx", "tiny.int8-u8s8.onnx",
                     "tiny.report.json", "tiny.scores.json"]  # the confidence maps, from --eval-data
    report = json.loads((out / "tiny.report.json").read_text())
    text = json.dumps(report)
    assert "max_abs_diff" in text  # PyTorch vs ONNX difference is reported


@pytest.mark.parametrize("name", ["fp32", "fp16", "int8-s8s8", "int8-u8s8"])
def test_every_export_runs_through_the_recognizer(exported, name):
    out, _ = exported
    faces = [np.random.default_rng(i).integers(0, 256, (s, s + 3), dtype=np.uint8) for i, s in enumerate((12, 30, 48, 64))]
    with Recognizer(out / f"tiny.{name}.onnx", backend="onnxruntime") as rec:
        assert rec.info.precision == name.split("-")[0]
        preds = rec.predict(faces)
        assert len(preds) == 4
        for face, p in zip(faces, preds):  # order is the input order
            alone = rec.predict(face)[0]
            assert alone.index == p.index
            np.testing.assert_allclose(alone.probs, p.probs, atol=1e-4)
            assert p.label == rec.info.classes[p.index] and abs(float(p.probs.sum()) - 1) < 1e-4
        with pytest.raises(InputError):
            rec.predict([])


def test_int8_agrees_with_fp32_on_faces(exported):
    out, data = exported
    imgs = np.load(data)["images"][150:]
    with Recognizer(out / "tiny.fp32.onnx") as a, Recognizer(out / "tiny.int8-u8s8.onnx") as b:
        pa = np.array([p.index for p in a.predict(imgs)])
        pb = np.array([p.index for p in b.predict(imgs)])
    assert (pa == pb).mean() > 0.8


def test_fsrfer_eval_on_the_onnx_export(exported, tmp_path):
    out, data = exported
    js = tmp_path / "e.json"
    assert eval_main(["--checkpoint", str(out / "tiny.int8-u8s8.onnx"), "--data", str(data), "--split", "val",
                      "--factors", "1,4", "--json", str(js)]) == 0
    res = json.loads(js.read_text())
    assert set(res["factors"]) == {"1", "4"} and res["n"] == 150
