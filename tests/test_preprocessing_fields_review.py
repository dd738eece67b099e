"""Review: a model's preprocessing is read whole or refused (never a field filled in with its default), and
fsrfer-demo gives --threads to the face detector as fsrfer-crowd does. Each test failed before its fix."""
import dataclasses

import numpy as np
import pytest

from fsrfer_edge.errors import InputError, ModelError
from fsrfer_edge.preprocessing import Preprocessing

FIELDS = [f.name for f in dataclasses.fields(Preprocessing)]


# -- Preprocessing.from_dict ---------------------------------------------------------------------------


@pytest.mark.parametrize("drop", FIELDS)
def test_preprocessing_missing_a_field_is_refused_not_defaulted(drop: str) -> None:
    """Every file this project wrote holds all six fields (to_dict since the first version); a missing mean, std or
    input size would have run the model on other inputs than it was trained on, without a word."""
    d = Preprocessing(mean=0.4, std=0.3).to_dict()
    del d[drop]
    with pytest.raises(InputError, match=rf"preprocessing has no \['{drop}'\].*expected every field.*again") as err:
        Preprocessing.from_dict(d)
    assert all(name in str(err.value) for name in FIELDS)  # the fields expected are named


def test_preprocessing_that_is_not_a_mapping_is_refused_naming_what_it_got() -> None:
    with pytest.raises(InputError, match=r"preprocessing is a str \('mean'\); expected a dict"):
        Preprocessing.from_dict("mean")  # type: ignore[arg-type]


def test_complete_preprocessing_still_round_trips() -> None:
    pre = Preprocessing(input_size=32, channels=3, mean=0.45, std=0.2, resize_kernel="bilinear",
                        classes=("a", "b", "c"))
    assert Preprocessing.from_dict(pre.to_dict()) == pre


def test_the_shipped_model_still_loads() -> None:
    from fsrfer_edge.metadata import ModelInfo

    onnx = pytest.importorskip("onnx")
    from fsrfer_edge.recognizer import DEFAULT_MODEL

    props = {p.key: p.value for p in onnx.load(str(DEFAULT_MODEL), load_external_data=False).metadata_props}
    assert ModelInfo.from_props(props).preprocessing == Preprocessing()


# -- the trainer's checkpoint loader --------------------------------------------------------------------


def _checkpoint(tmp_path, edit):
    torch = pytest.importorskip("torch")
    from trainer import checkpoint
    from trainer.models import InferenceModel

    spec = {"method": "fsrfer", "backbone": "tiny"}
    torch.manual_seed(0)
    payload = checkpoint.model_payload(InferenceModel(spec).eval(), spec, Preprocessing(mean=0.4), {})
    edit(payload)
    path = tmp_path / "m.pt"
    checkpoint.save(path, payload)
    return checkpoint, path


@pytest.mark.parametrize("drop", ["mean", "std", "input_size", "classes"])
def test_checkpoint_preprocessing_missing_a_field_is_refused_naming_file_and_field(tmp_path, drop: str) -> None:
    checkpoint, path = _checkpoint(tmp_path, lambda p: p["preprocessing"].pop(drop))
    with pytest.raises(ModelError, match=rf"{path.name}.*preprocessing has no \['{drop}'\]") as err:
        checkpoint.load_model(path)
    assert "fsrfer-train" in str(err.value)  # what to do


def test_checkpoint_without_preprocessing_is_refused_saying_so(tmp_path) -> None:
    checkpoint, path = _checkpoint(tmp_path, lambda p: p.pop("preprocessing"))
    with pytest.raises(ModelError, match=rf"{path.name} has no 'preprocessing'.*fsrfer-train"):
        checkpoint.load_model(path)


def test_complete_checkpoint_still_loads_its_own_preprocessing(tmp_path) -> None:
    checkpoint, path = _checkpoint(tmp_path, lambda p: None)
    assert checkpoint.load_model(path)[1] == Preprocessing(mean=0.4)


def test_the_shipped_checkpoint_still_loads() -> None:
    pytest.importorskip("torch")
    from trainer import checkpoint
    from fsrfer_edge.recognizer import DEFAULT_MODEL

    assert checkpoint.load_model(DEFAULT_MODEL.with_suffix(".pt"))[1] == Preprocessing()


# -- fsrfer-demo --threads -----------------------------------------------------------------------------


@pytest.mark.parametrize("detector, threads, expected", [
    ("yunet", "3", 3), ("blazeface", "2", 2), ("auto", "2", 2), ("yunet", "0", None), ("yunet", None, None),
    ("opencv", "2", None),  # OpenCV's cascade takes no threads (create_detector refuses them), as in fsrfer-crowd
])
def test_demo_gives_threads_to_the_detector_as_fsrfer_crowd_does(tmp_path, monkeypatch, capsys, detector, threads,
                                                                 expected) -> None:
    pytest.importorskip("onnxruntime")
    import fsrfer_edge.demo as demo
    from fsrfer_edge.detection.frames import write_image

    seen: list = []

    class Detector:
        name, min_score, min_face = "stub", 0.5, 8.0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def create_detector(name, **kw):
        seen.append((name, kw.get("threads", "not given")))
        return Detector()

    monkeypatch.setattr(demo, "create_detector", create_detector)
    monkeypatch.setattr(demo, "default_margin", lambda det: 0.0)
    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: ([], {"detect_ms": 0.0, "predict_ms": {}}))
    img = tmp_path / "in.png"
    write_image(img, np.full((32, 32, 3), 90, np.uint8))
    argv = [str(img), "--out", str(tmp_path / "o.png"), "--detector", detector]
    argv += ["--threads", threads] if threads is not None else []
    assert demo.main(argv) == 0, capsys.readouterr().err
    assert seen == [(detector, expected)]
