"""Bad inputs a new user meets: each gets the package's own error (or a one-line CLI error, exit code 2),
never a traceback, a foreign exception or a silent wrong answer, and leaves no partial file behind.

The matrix covers arrays, model files, checkpoints, training configs, command-line arguments, images and
videos. Everything is tiny (the models of tests/_onnx_models.py, configs as dicts) so that it runs in CI.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from fsrfer_edge import Recognizer  # noqa: E402
from fsrfer_edge.errors import ConfigError, DataError, FsrferError, InputError, ModelError  # noqa: E402

try:  # tests/ as a package or as a plain directory on sys.path
    from ._onnx_models import edit_metadata, make_tiny_onnx
except ImportError:
    from _onnx_models import edit_metadata, make_tiny_onnx  # type: ignore[no-redef]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_onnx(tmp_path_factory.mktemp("bad") / "tiny.onnx")


@pytest.fixture(scope="module")
def rec(model: Path) -> Iterator[Recognizer]:
    with Recognizer(model, threads=1) as r:
        yield r


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp") or ".staging-" in p.name]


def run_cli(main: Callable[[Optional[Sequence[str]]], int], argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run a console entry point in-process; it must exit 2 with exactly one error line and no traceback."""
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        rc = exc.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert rc == 2, f"exit code {rc}; stderr: {err}"
    assert "Traceback" not in err + out, err
    assert len(errors) == 1, err
    assert not err.lstrip().startswith("usage:"), err  # one line, not argparse's usage dump
    return errors[0]


# ---------------------------------------------------------------------------------------------
# Arrays given to Recognizer.predict / predict_logits
# ---------------------------------------------------------------------------------------------
_FACE = np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8)
_MASK = np.zeros((40, 40), bool)
_MASK[3, 4] = True

BAD_FACES = [
    ([], "empty batch"),
    (_FACE.astype(np.int64), "dtype int64"),
    (_FACE > 100, "dtype bool"),
    (_FACE > 100, "image.astype(np.uint8) * 255"),  # a mask: scaled, not made 0/1 grey levels
    (_FACE.astype(np.complex64), "dtype complex64"),
    ("face.png", "expected a numpy array"),
    (None, "expected a numpy array"),
    ([_FACE, "x"], "face 1 is a str"),
    (np.zeros((2, 2, 40, 40, 3), np.uint8), "shape (2, 2, 40, 40, 3)"),
    (np.zeros((40, 40, 4), np.uint8), "drop an alpha channel"),
    ([np.zeros((40, 40, 2), np.uint8)], "2 channels"),
    (np.zeros((2, 1, 48, 48), np.uint8), "channels-first (CxHxW): pass face[0]"),
    ([np.zeros((3, 40, 40), np.uint8)], "np.moveaxis(face, 0, -1)"),
    ([np.zeros((0, 40), np.uint8)], "0-size"),
    (np.full((40, 40), np.nan, np.float32), "NaN or infinite"),
    (np.full((40, 40), np.inf, np.float64), "NaN or infinite"),
    (np.full((40, 40), 300.0, np.float32), r"expected floats in [0, 255]"),
    (np.full((40, 40), 1e30, np.float64), r"expected floats in [0, 255]"),
    (np.full((40, 40), 3.4e38, np.float32), r"expected floats in [0, 255]"),
    (np.full((40, 40), -0.5, np.float32), r"expected floats in [0, 255]"),
    (_FACE / 255.0, "scaled to [0, 1]"),
    (np.ma.masked_array(_FACE, mask=_MASK), "1 masked pixel"),
    ([np.ma.masked_array(_FACE.astype(np.float32), mask=_MASK)], "1 masked pixel"),
    (np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), (20000, 20000), (0, 0)), "the limits are"),
]


@pytest.mark.parametrize("faces, words", BAD_FACES, ids=[w for _, w in BAD_FACES])
def test_bad_faces(rec: Recognizer, faces: Any, words: str) -> None:
    with pytest.raises(InputError) as err:
        rec.predict(faces)
    assert words in str(err.value) and "expected" in str(err.value)


@pytest.mark.parametrize("batch, words", [
    (np.zeros((2, 1, 48, 48), np.float64), "dtype float64"),
    (np.zeros((2, 1, 32, 32), np.float32), "shape (2, 1, 32, 32)"),
    (np.zeros((0, 1, 48, 48), np.float32), "empty batch"),
    (np.full((2, 1, 48, 48), np.nan, np.float32), "NaN"),
    ([[0.0]], "received a list"),
    (np.ma.masked_array(np.zeros((2, 1, 48, 48), np.float32), mask=np.ones((2, 1, 48, 48), bool)), "masked"),
])
def test_bad_prepared_batches(rec: Recognizer, batch: Any, words: str) -> None:
    with pytest.raises(InputError, match=None) as err:
        rec.predict_logits(batch)
    assert words in str(err.value)


# ---------------------------------------------------------------------------------------------
# Model files
# ---------------------------------------------------------------------------------------------
def _raw_meta(path: Path, text: str) -> Path:
    import onnx

    proto = onnx.load(str(path))
    next(p for p in proto.metadata_props if p.key == "fsrfer").value = text
    onnx.save(proto, str(path))
    return path


def _nan_weights(path: Path) -> Path:
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    for init in proto.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size > 1:
            init.CopyFrom(numpy_helper.from_array(np.full_like(arr, np.nan), init.name))
    onnx.save(proto, str(path))
    return path


def _make(kind: str, model: Path, d: Path) -> Path:
    """A broken model file of the given kind, made from the tiny model."""
    copy = d / "m.onnx"
    if kind not in ("missing", "dir", "fifo", "loop", "dangling"):
        copy.write_bytes(model.read_bytes())
    if kind == "missing":
        return d / "missing.onnx"
    if kind == "suffix":
        return Path(copy.replace(d / "model.tflite"))
    if kind == "dir":
        (d / "dir.onnx").mkdir()
        return d / "dir.onnx"
    if kind == "fifo":
        os.mkfifo(d / "fifo.onnx")
        return d / "fifo.onnx"
    if kind == "loop":
        os.symlink(d / "loop.onnx", d / "loop.onnx")
        return d / "loop.onnx"
    if kind == "dangling":
        os.symlink(d / "gone.onnx", d / "dangling.onnx")
        return d / "dangling.onnx"
    if kind == "empty":
        copy.write_bytes(b"")
    elif kind == "garbage":
        copy.write_bytes(os.urandom(4096))
    elif kind == "truncated":
        copy.write_bytes(model.read_bytes()[:2000])
    elif kind == "nometa":
        return make_tiny_onnx(d / "nometa.onnx", metadata=False)
    elif kind == "meta_not_json":
        _raw_meta(copy, "{not json")
    elif kind == "meta_list":
        _raw_meta(copy, "[1, 2]")
    elif kind == "meta_newer":
        edit_metadata(copy, lambda m: m.update(format_version=99))
    elif kind == "precision":
        edit_metadata(copy, lambda m: m.update(precision="fp8"))
    elif kind == "std0":
        edit_metadata(copy, lambda m: m["preprocessing"].update(std=0))
    elif kind == "mean_nan":
        edit_metadata(copy, lambda m: m["preprocessing"].update(mean=float("nan")))
    elif kind == "kernel":
        edit_metadata(copy, lambda m: m["preprocessing"].update(resize_kernel="lanczos"))
    elif kind == "size0":
        edit_metadata(copy, lambda m: m["preprocessing"].update(input_size=0))
    elif kind == "size_mismatch":
        edit_metadata(copy, lambda m: m["preprocessing"].update(input_size=32))
    elif kind == "classes":
        edit_metadata(copy, lambda m: m["preprocessing"].update(classes=["a", "b", "c"]))
    elif kind == "input_name":
        edit_metadata(copy, lambda m: m.update(input_name="images"))
    elif kind == "dtype":
        edit_metadata(copy, lambda m: m.update(input_dtype="uint8"))
    elif kind == "nan":
        _nan_weights(copy)
    elif kind == "runtime":
        _failing_graph(copy)
    return copy


def _failing_graph(path: Path) -> Path:
    """A graph that loads and matches its metadata but fails when run (a Reshape to a wrong size)."""
    import onnx
    from onnx import TensorProto, helper

    from fsrfer_edge.metadata import METADATA_KEY, ModelInfo

    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [3, 7])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["faces", "shape"], ["logits"])], "broken",
        [helper.make_tensor_value_info("faces", TensorProto.FLOAT, ["N", 1, 48, 48])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 7])], [shape])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, ModelInfo().to_json()
    onnx.save(proto, str(path))
    return path


BAD_MODELS = [
    ("missing", "does not exist"), ("suffix", "suffix '.tflite'"), ("dir", "is a directory"),
    ("fifo", "FIFO"), ("loop", "symbolic link loop"), ("dangling", "broken symbolic link"),
    ("empty", "could not be loaded"), ("garbage", "could not be loaded"), ("truncated", "could not be loaded"),
    ("nometa", "no 'fsrfer' metadata"), ("meta_not_json", "not valid JSON"), ("meta_list", "JSON object"),
    ("meta_newer", "newer"), ("precision", "fp8"), ("std0", "std=0"), ("mean_nan", "mean=nan"),
    ("kernel", "resize_kernel='lanczos'"), ("size0", "input_size=0"), ("size_mismatch", "metadata implies"),
    ("classes", "3 classes"), ("input_name", "'images'"), ("dtype", "metadata says uint8"), ("nan", "NaN"),
    ("runtime", "failed to run the model"),
]


@pytest.mark.parametrize("kind, words", BAD_MODELS, ids=[k for k, _ in BAD_MODELS])
def test_bad_model_files(model: Path, tmp_path: Path, kind: str, words: str) -> None:
    if kind == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this OS")
    path = _make(kind, model, tmp_path)
    with pytest.raises(ModelError) as err:
        Recognizer(path, threads=1)
    assert words in str(err.value), str(err.value)


# ---------------------------------------------------------------------------------------------
# Checkpoints (torch)
# ---------------------------------------------------------------------------------------------
class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("this must never run",))


def _checkpoint(kind: str, d: Path) -> Path:
    import torch

    from trainer import checkpoint
    from trainer.models import InferenceModel

    from fsrfer_edge.preprocessing import Preprocessing

    p = d / f"{kind}.pt"
    spec = {"method": "fsrfer", "backbone": "tiny"}
    good = checkpoint.model_payload(InferenceModel(spec), spec, Preprocessing(), {})
    if kind == "missing":
        return d / "nothing.pt"
    if kind == "garbage":
        p.write_bytes(os.urandom(1000))
    elif kind == "memo":  # pickle's LONG_BINGET first: the legacy unpickler raises KeyError, not a load error
        p.write_bytes(bytes.fromhex("6a1b198fe8") + bytes(64))
    elif kind == "pickle":
        torch.save({"format": checkpoint.FORMAT, "kind": "model", "x": _Evil()}, p)
    elif kind == "truncated":
        checkpoint.save(p, good)
        p.write_bytes(p.read_bytes()[:3000])
    elif kind == "not_fsrfer":
        torch.save({"weights": torch.zeros(3)}, p)
    elif kind == "state":
        checkpoint.save(p, {"kind": "state", "epoch": 1})
    elif kind == "spec":
        checkpoint.save(p, {**good, "spec": {"method": "fsrfer", "backbone": "resnet18_half"}})
    elif kind == "preprocessing":
        checkpoint.save(p, {**good, "preprocessing": {**Preprocessing().to_dict(), "std": 0.0}})
    return p


def test_a_garbage_checkpoint_is_one_error_without_torchs_pickle_protocol_warning(tmp_path: Path) -> None:
    """Bytes that start like a pickle of protocol 14 made torch warn "Detected pickle protocol 14 in the checkpoint
    ... please file an issue" before the ModelError: noise, and advice a user should not follow."""
    pytest.importorskip("torch")
    import warnings

    from trainer import checkpoint

    p = tmp_path / "garbage.pt"
    p.write_bytes(b"\x80\x0e" + bytes(64))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(ModelError, match="not a PyTorch file"):
            checkpoint.load(p)
    assert not [w for w in seen if "pickle protocol" in str(w.message)], [str(w.message) for w in seen]


@pytest.mark.parametrize("kind, words", [
    ("missing", "does not exist"), ("garbage", "not a PyTorch file"), ("memo", "not a PyTorch file"),
    ("pickle", "pickled Python object (print)"),
    ("truncated", "truncated, corrupt"), ("not_fsrfer", "not an fsrfer checkpoint"), ("state", "'state' checkpoint"),
    ("spec", "do not fit together"), ("preprocessing", "do not fit together"),
])
def test_bad_checkpoints(tmp_path: Path, kind: str, words: str, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    from trainer import checkpoint

    path = _checkpoint(kind, tmp_path)
    with pytest.raises(ModelError) as err:
        checkpoint.load_model(path)
    msg = str(err.value)
    assert words in msg and "\n" not in msg and str(path) in msg, msg  # one line naming the file
    assert "this must never run" not in capsys.readouterr().out


def test_checkpoint_refusal_through_fsrfer_eval_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    from trainer.cli import eval_main

    data = tmp_path / "faces.npz"
    np.savez(data, images=np.zeros((4, 48, 48), np.uint8), labels=np.zeros(4, np.int64))
    line = run_cli(eval_main, ["--checkpoint", str(_checkpoint("pickle", tmp_path)), "--data", str(data),
                               "--json", str(tmp_path / "e.json")], capsys)
    assert "pickled Python object" in line and not (tmp_path / "e.json").exists()


# ---------------------------------------------------------------------------------------------
# Training configs: every problem listed, before anything runs
# ---------------------------------------------------------------------------------------------
BAD_CONFIGS = [
    ({"stage1": {"epochs": -1}}, "stage1.epochs = -1"),
    ({"stage1": {"lr": float("nan")}}, "stage1.lr = nan"),
    ({"stage1": {"lr": 0}}, "stage1.lr = 0"),
    ({"stage1": {"batch_size": 0}}, "stage1.batch_size = 0"),
    ({"stage2": {"batch_size": -8}}, "stage2.batch_size = -8"),
    ({"threads": -1}, "threads = -1"),
    ({"data": {"limit_train": -5}}, "data.limit_train = -5"),
    ({"data": {"synthetic": -100}}, "data.synthetic = -100"),
    ({"degrade": {"blur_prob": 1.5}}, "degrade.blur_prob = 1.5"),
    ({"eval": {"factors": [0, 2]}}, "eval.factors"),
    ({"stage2": {"lr_g": float("inf")}}, "stage2.lr_g = inf"),
    ({"stage1": {"epoch": 3}}, "unknown option"),
    ({"stage1": {"epochs": "ten"}}, "expected a number"),
    ({"stage1": {"epochs": 2.5}}, "expected an integer"),
    ({"stage1": 5}, "expected a mapping"),
    ({"device": "tpu"}, "device must be one of"),
]


@pytest.mark.parametrize("doc, words", BAD_CONFIGS, ids=[w for _, w in BAD_CONFIGS])
def test_bad_configs(doc: dict[str, Any], words: str) -> None:
    pytest.importorskip("torch")
    from trainer import config

    with pytest.raises(ConfigError) as err:
        config.from_dict(doc)
    assert words in str(err.value), str(err.value)


def test_config_lists_every_problem_at_once() -> None:
    pytest.importorskip("torch")
    from trainer import config

    with pytest.raises(ConfigError) as err:
        config.from_dict({"stage1": {"epochs": -1, "lr": float("nan"), "batch_size": 0}, "threads": -2,
                          "bogus": 1})
    msg = str(err.value)
    assert "5 problems" in msg and all(w in msg for w in ("epochs", "lr", "batch_size", "threads", "bogus"))


def test_fsrfer_train_refuses_a_bad_config_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("yaml")
    from trainer.cli import train_main

    cfg = tmp_path / "bad.yaml"
    cfg.write_text("name: bad\ndata: {synthetic: 16}\nstage1: {epochs: -3, lr: .nan, batch_size: 0}\n")
    line = run_cli(train_main, ["--config", str(cfg), "--out", str(tmp_path / "run")], capsys)
    assert "3 problems" in line and not (tmp_path / "run").exists()


def test_resume_removes_files_a_killed_run_left(tmp_path: Path) -> None:
    from fsrfer_edge.fileio import remove_partial_writes

    state = tmp_path / "run" / "state"
    state.mkdir(parents=True)
    (state / "stage1.pt").write_bytes(b"kept")
    half = state / ".stage1.pt.k3j_x1.tmp"  # what atomic_write leaves when killed with -9
    half.write_bytes(b"half")
    others = [state / ".cache.tmp", state / ".Other.X1Y2.tmp"]  # not atomic_write's names: another program's
    for o in others:
        o.write_bytes(b"theirs")
    assert remove_partial_writes(tmp_path / "run") == [half]
    assert not half.exists() and (state / "stage1.pt").read_bytes() == b"kept"
    assert all(o.read_bytes() == b"theirs" for o in others)


# ---------------------------------------------------------------------------------------------
# Command-line arguments: one line, exit code 2, no partial output
# ---------------------------------------------------------------------------------------------
def test_cli_bench_bad_arguments(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge import bench

    (tmp_path / "file.txt").write_text("x")
    cases = [
        (["--batch-sizes", "0", "--json", str(tmp_path / "b.json")], "expected integers >= 1"),
        (["--batch-sizes", "1", "--json", str(tmp_path)], "is a directory"),
        (["--batch-sizes", "1", "--json", str(tmp_path / "file.txt" / "b.json")], "is a file, not a folder"),
        (["--batch-sizes", "1", "--labels", "affectnet", "--json", str(tmp_path / "b.json")], "invalid choice"),
        (["--batch-sizes", "1", "--overhead-reps", "0", "--overhead-batch", "4", "--json", str(tmp_path / "b.json")],
         "repetitions >= 1"),
        (["--batch-sizes", "1", "--overhead-batch", "-3", "--json", str(tmp_path / "b.json")], "expected a batch >= 1"),
        (["--batch-sizes", "1", "--threads", "-1", "--json", str(tmp_path / "b.json")], "threads=-1"),
        (["--batch-sizes", "1", "--data", str(tmp_path / "none.npz"), "--json", str(tmp_path / "b.json")],
         "does not exist"),
    ]
    for argv, words in cases:
        line = run_cli(bench.main, ["--model", str(model), "--iters", "1", "--warmup", "0", "--overhead-batch", "0",
                                    *argv], capsys)
        assert words in line, line
    assert not (tmp_path / "b.json").exists() and not _leftovers(tmp_path)


def test_cli_eval_bad_output_paths(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trainer.cli import eval_main

    data = tmp_path / "faces.npz"
    np.savez(data, images=np.zeros((4, 48, 48), np.uint8), labels=np.zeros(4, np.int64))
    (tmp_path / "file.txt").write_text("x")
    for target, words in ((tmp_path, "is a directory"), (tmp_path / "file.txt" / "e.json", "is a file")):
        line = run_cli(eval_main, ["--checkpoint", str(model), "--data", str(data), "--json", str(target)], capsys)
        assert words in line
    line = run_cli(eval_main, ["--checkpoint", str(model), "--data", str(data), "--json", str(tmp_path / "e.json"),
                               "--split", "nope"], capsys)
    assert "invalid choice" in line
    for extra, words in ((["--limit", "-5"], "--limit -5"), (["--threads", "-2"], "--threads -2; expected an integer from 1 to 1024")):
        line = run_cli(eval_main, ["--checkpoint", str(model), "--data", str(data), "--json", str(tmp_path / "e.json"),
                                   *extra], capsys)
        assert words in line
    assert not (tmp_path / "e.json").exists()


def test_cli_train_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    from trainer.cli import train_main

    (tmp_path / "file.txt").write_text("x")
    assert "unknown step" in run_cli(train_main, ["--config", "configs/tiny.yaml", "--steps", "stage9"], capsys)
    assert "does not exist" in run_cli(train_main, ["--config", str(tmp_path / "none.yaml")], capsys)
    line = run_cli(train_main, ["--config", str(Path(__file__).parents[1] / "configs" / "tiny.yaml"),
                                "--out", str(tmp_path / "file.txt")], capsys)
    assert "is a file" in line


def test_cli_export_bad_arguments(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge.export import cli as export_cli

    assert "does not exist" in run_cli(export_cli.main, [str(tmp_path / "none.pt")], capsys)
    assert "--eval-data" in run_cli(export_cli.main, [str(model), "--engine", "--labels", "ferplus"], capsys)
    assert "--engine" in run_cli(export_cli.main, [str(model)], capsys)
    ckpt = str(Path(__file__).parents[1] / "fsrfer_edge" / "models" / "default.pt")
    out = ["--out-dir", str(tmp_path / "o")]
    assert "without folders" in run_cli(export_cli.main, [ckpt, "--name", "a/b", *out], capsys)
    assert "--calib-size -4" in run_cli(export_cli.main, [ckpt, "--int8", "--calib", "x.npz", "--calib-size", "-4",
                                                          *out], capsys)
    assert "--eval-size -3" in run_cli(export_cli.main, [ckpt, "--eval-data", "x.npz", "--eval-size", "-3", *out], capsys)
    assert not (tmp_path / "o").exists()


def test_export_engine_on_a_machine_without_tensorrt_still_writes_the_onnx_repository(
        model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge.errors import BackendUnavailable
    from fsrfer_edge.export import cli as export_cli
    from fsrfer_edge.export.engine import import_tensorrt

    try:
        import_tensorrt()
    except BackendUnavailable:
        pass
    else:
        pytest.skip("TensorRT is installed here: the engine would be built")
    repo = tmp_path / "repo"
    line = run_cli(export_cli.main, [str(model), "--engine", "--triton-repo", str(repo), "-q"], capsys)
    assert "ONNX model only" in line
    assert (repo / "fsrfer_onnx" / "1" / "model.onnx").is_file() and (repo / "fsrfer_onnx" / "config.pbtxt").is_file()


def test_cli_serve_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge.serving import cli as serve_cli

    assert "expected a TCP port" in run_cli(serve_cli.main, ["--http-port", "0"], capsys)
    assert "invalid int value" in run_cli(serve_cli.main, ["--http-port", "eighty"], capsys)


def test_cli_without_torch_names_the_extra(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from trainer.cli import train_main

    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    line = run_cli(train_main, ["--config", "configs/tiny.yaml"], capsys)
    assert "pip install torch==2.13.0, then pip install -e '.[train]'" in line


# ---------------------------------------------------------------------------------------------
# Images and videos (CrowdAnalyzer and fsrfer-crowd)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crowd(rec: Recognizer) -> Any:
    from fsrfer_edge.crowd import CrowdAnalyzer
    from fsrfer_edge.detection import Detection, FaceDetector

    class OneBox(FaceDetector):
        def _detect(self, frame: np.ndarray) -> list[Detection]:
            return [Detection((4.0, 4.0, 36.0, 36.0), 0.9)]

    return CrowdAnalyzer(rec, OneBox())  # one face, so that no detector model is needed


@pytest.mark.parametrize("frame, words", [
    (np.full((40, 40, 3), 0.5), "scaled to [0, 1]"),
    (np.full((40, 40, 3), 256.0), "expected floats in [0, 255]"),
    (np.full((40, 40, 3), np.nan), "NaN"),
    (np.zeros((40, 40, 3), np.int32), "dtype int32"),
    (np.ma.masked_array(np.zeros((40, 40, 3), np.uint8), mask=np.ones((40, 40, 3), bool)), "masked"),
    (np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), (20000, 20000, 3), (0, 0, 0)), "the limits are"),
])
def test_bad_frames(crowd: Any, frame: np.ndarray, words: str) -> None:
    with pytest.raises(InputError) as err:
        crowd.analyze(frame)
    assert words in str(err.value)


def test_float_frame_in_range_equals_uint8(crowd: Any) -> None:
    frame = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    a, b = crowd.analyze(frame), crowd.analyze(frame.astype(np.float32))
    assert [f.label for f in a.faces] == [f.label for f in b.faces]


@pytest.mark.parametrize("kind", ["missing", "text", "truncated", "video_junk"])
def test_bad_image_and_video_files(crowd: Any, tmp_path: Path, kind: str) -> None:
    path = tmp_path / ("clip.mp4" if kind == "video_junk" else "photo.png")
    if kind == "text":
        path.write_text("not an image")
    elif kind == "truncated":
        pil = pytest.importorskip("PIL.Image")
        pil.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:60])
    elif kind == "video_junk":
        pytest.importorskip("cv2")
        path.write_bytes(b"\x00" * 4096)
    with pytest.raises(FsrferError):
        if kind == "video_junk":
            list(crowd.analyze_stream(path))
        else:
            crowd.analyze(path)


def test_cli_crowd_bad_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("PIL.Image")
    from fsrfer_edge import crowd_cli

    (tmp_path / "file.txt").write_text("x")
    missing = run_cli(crowd_cli.main, [str(tmp_path / "none.png"), "--out", str(tmp_path / "o.png")], capsys)
    assert "does not exist" in missing
    assert not (tmp_path / "o.png").exists() and not _leftovers(tmp_path)


def test_data_errors_are_data_errors(tmp_path: Path) -> None:
    from fsrfer_edge.ferplus import load_labelled_faces

    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((3, 48, 48), np.float32), labels=np.zeros(3, np.int64))
    with pytest.raises(DataError, match="expected \\(N, H, W\\) uint8"):
        load_labelled_faces(bad)
    with pytest.raises(InputError, match="labels='affectnet'"):
        load_labelled_faces(bad, "affectnet")


@pytest.mark.parametrize("prog, argv", [
    ("demo", ["--factors", "0"]), ("demo", ["--nonsense"]), ("crowd", ["x.png", "--out", "o.png", "--scale", "many"]),
    ("crowd", []), ("bench", ["--iters"]), ("export", []), ("export", ["m.pt", "--opset", "x"]),
    ("crowd-bench", ["--scenes", "x"]), ("crowd-bench", ["--nonsense"]),
])
def test_usage_errors_are_one_line(prog: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """argparse's usage errors: one line (not the usage block), exit code 2, for every command."""
    import importlib

    module = {"demo": "fsrfer_edge.demo", "crowd": "fsrfer_edge.crowd_cli", "bench": "fsrfer_edge.bench",
              "export": "fsrfer_edge.export.cli", "crowd-bench": "fsrfer_edge.crowd_bench"}[prog]
    run_cli(importlib.import_module(module).main, argv, capsys)


@pytest.mark.parametrize("flag", ["--out", "--json"])
@pytest.mark.parametrize("where", ["dir", "under_file", "refuses_files"])
def test_cli_crowd_output_paths_refused_before_work(tmp_path: Path, flag: str, where: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    pil = pytest.importorskip("PIL.Image")
    from fsrfer_edge import crowd_cli

    if where == "refuses_files" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc: a folder that refuses new files even to root (os.access says yes to root) is Linux's")

    image = tmp_path / "in.png"
    pil.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    (tmp_path / "file.txt").write_text("x")
    folder = tmp_path / "d.png" if flag == "--out" else tmp_path / "d.json"
    folder.mkdir()
    name = "o.png" if flag == "--out" else "o.json"
    bad = {"dir": folder, "under_file": tmp_path / "file.txt" / name, "refuses_files": Path("/proc") / name}[where]
    argv = [str(image), "--out", str(tmp_path / "o.png"), "--json", str(tmp_path / "o.json")]
    argv[argv.index(flag) + 1] = str(bad)
    line = run_cli(crowd_cli.main, argv, capsys)
    assert flag in line and not (tmp_path / "o.png").exists() and not (tmp_path / "o.json").exists()
    assert where != "refuses_files" or "is not writable" in line


def test_fsrfer_train_resume_removes_a_killed_writes_leftover(tmp_path: Path) -> None:
    """kill -9 during a checkpoint write leaves state/.NAME.*.tmp; --resume removes it (the weights were
    already right: the rename never happened)."""
    pytest.importorskip("torch")
    pytest.importorskip("yaml")
    from trainer.cli import train_main

    cfg = tmp_path / "t.yaml"
    cfg.write_text("name: t\nthreads: 1\ndata: {synthetic: 64}\nmodel: {backbone: tiny, head_hidden: 8}\n"
                   "stage1: {epochs: 1, batch_size: 32}\n")
    leftover = tmp_path / "run" / "state" / ".stage1.pt.x1y2z3.tmp"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a checkpoint")
    assert train_main(["--config", str(cfg), "--out", str(tmp_path / "run"), "--resume", "--steps", "stage1"]) == 0
    assert not leftover.exists() and (tmp_path / "run" / "state" / "stage1.pt").is_file()


def test_train_cli_budget_resume_interrupt_and_data_are_what_they_say(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("yaml")
    import trainer.train
    from trainer.cli import train_main
    from trainer.synthetic import make_faces

    cfg = tmp_path / "t.yaml"
    cfg.write_text("name: t\nthreads: 1\ndata: {synthetic: 64}\nmodel: {backbone: tiny, head_hidden: 8}\n"
                   "stage1: {epochs: 1, batch_size: 32}\n")
    base = ["--config", str(cfg), "--steps", "stage1"]
    # A time budget of zero or less is no budget at all: refused, not read as "no limit" or "stop at once".
    for bad in ("0", "-1", "nan", "inf", "soon"):
        with pytest.raises(SystemExit) as exit_info:
            train_main([*base, "--out", str(tmp_path / "b"), "--time-budget", bad])
        assert exit_info.value.code == 2 and "expected a number of minutes > 0" in capsys.readouterr().err
    # --data overrides the config's synthetic faces; --resume with nothing to resume says so.
    seen: dict[str, object] = {}

    def fake_pipeline(cfg: object, data: object, out: object, **kw: object) -> bool:
        seen.update(data=data, out=out)
        return True

    monkeypatch.setattr(trainer.train, "run_pipeline", fake_pipeline)
    imgs, labels = make_faces(60, seed=1)
    npz = tmp_path / "faces.npz"
    np.savez(npz, images=imgs, labels=labels.astype(np.int8), split=np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 10))
    with caplog.at_level("WARNING", logger="trainer"):
        assert train_main([*base, "--out", str(tmp_path / "typo"), "--resume", "--data", str(npz)]) == 0
    assert "nothing to resume in" in caplog.text and str(tmp_path / "typo") in caplog.text
    assert str(npz) in seen["data"].source and len(seen["data"].train.labels) == 40  # type: ignore[attr-defined]
    # Ctrl-C: one line that says how to go on, no traceback.

    def interrupted(*a: object, **k: object) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.train, "run_pipeline", interrupted)
    assert train_main([*base, "--out", str(tmp_path / "cut")]) == 130
    err = capsys.readouterr().err
    assert "fsrfer-train: interrupted" in err and "--resume" in err and "--out" in err and "Traceback" not in err


def test_any_garbage_checkpoint_is_a_model_error(tmp_path: Path) -> None:
    """Random bytes break PyTorch's unpickler in many ways (an IndexError once in CI); each is a ModelError."""
    pytest.importorskip("torch")
    import numpy as np

    from trainer import checkpoint

    rng = np.random.default_rng(0)
    path = tmp_path / "garbage.pt"
    for _ in range(300):
        path.write_bytes(rng.integers(0, 256, int(rng.integers(1, 2000)), dtype=np.uint8).tobytes())
        with pytest.raises(ModelError, match="could not be read|not an fsrfer checkpoint"):
            checkpoint.load_model(path)


def test_files_problem_names_the_first_unreadable_input(tmp_path: Path) -> None:
    from fsrfer_edge.fileio import files_problem

    ok = tmp_path / "ok.npz"
    ok.write_bytes(b"x")
    assert files_problem(ok) == ""
    assert files_problem(ok, tmp_path / "gone.pt", tmp_path) == f"{tmp_path / 'gone.pt'} does not exist"
    assert files_problem(ok, tmp_path).startswith(f"{tmp_path} ") and "director" in files_problem(tmp_path)


# ---------------------------------------------------------------------------------------------
# Model metadata fields, and fsrfer-crowd-bench's options, outputs and interruptions
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, match", [
    ({"factors": "24"}, "factors is '24'; expected a list of positive integers"),
    ({"factors": [0, -3]}, "expected a list of positive integers"),
    ({"factors": [2.0, 4]}, "expected a list of positive integers"),
    ({"int8_scheme": "xyz", "precision": "int8"}, "int8_scheme 'xyz' with precision 'int8'; expected '' or one of"),
    ({"int8_scheme": "u8s8"}, "int8_scheme 'u8s8' with precision 'fp32'; expected"),
    ({"format_version": -3}, "format_version is -3; expected an integer >= 1"),
    ({"format_version": "2"}, "format_version is '2'; expected an integer >= 1"),
])
def test_model_info_fields_are_checked(change: dict[str, Any], match: str) -> None:
    from fsrfer_edge.metadata import ModelInfo

    with pytest.raises(ModelError, match=match):
        ModelInfo.from_dict({**ModelInfo().to_dict(), **change}, "m.onnx")
    for scheme in ("", "s8s8", "u8s8"):  # what the exporter writes
        assert ModelInfo.from_dict({**ModelInfo().to_dict(), "precision": "int8", "int8_scheme": scheme}).factors
    assert ModelInfo.from_dict(ModelInfo().to_dict()) == ModelInfo()


@pytest.mark.parametrize("doc", [[], [("method", "fsrfer")], None, "{}"], ids=["list", "pairs", "none", "str"])
def test_model_info_that_is_not_a_json_object_is_refused(doc: Any) -> None:
    from fsrfer_edge.metadata import ModelInfo

    with pytest.raises(ModelError, match="m.onnx: fsrfer metadata must be a JSON object"):
        ModelInfo.from_dict(doc, "m.onnx")


def test_model_info_preprocessing_that_is_not_a_json_object_is_refused() -> None:
    from fsrfer_edge.metadata import ModelInfo

    with pytest.raises(ModelError, match="preprocessing is \\[\\]; expected a JSON object"):
        ModelInfo.from_dict({**ModelInfo().to_dict(), "preprocessing": []}, "m.onnx")


def test_model_info_json_nested_too_deep_is_a_model_error() -> None:
    from fsrfer_edge.metadata import ModelInfo

    with pytest.raises(ModelError, match="not valid JSON"):
        ModelInfo.from_json("[" * 100_000 + "]" * 100_000, "m.onnx")


def _no_work(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the benchmark started work before refusing its options")


@pytest.fixture()
def bench(monkeypatch: pytest.MonkeyPatch) -> Any:
    """fsrfer_edge.crowd_bench, failing the test if a run loads faces or starts a worker."""
    from fsrfer_edge import crowd_bench

    for name in ("load_test_faces", "public_domain_faces", "compare"):
        monkeypatch.setattr(crowd_bench, name, _no_work)
    return crowd_bench


@pytest.mark.parametrize("argv, match", [
    (["--margins", "0,5"], "--margins=5.0; expected a finite number in"),
    (["--score-sweep", "0.5,2"], "--score-sweep [2.0]; expected detection score thresholds in [0, 1]"),
    (["--seed", "-1"], "--seed -1; expected an integer >= 0"),
    (["--size", "100000x100000"], "megapixels"),
    (["--fps-size", "9000x9000"], "megapixels"),
    (["--detector", "yunet,opencv"], "expected one detector name"),
    # these were refused only by the worker processes, after the data was loaded and the workers started
    (["--margin", "5"], "--margin=5.0; expected a finite number in"),
    (["--min-score", "2"], "--min-score 2.0; expected"),
    (["--min-score", "nan"], "--min-score nan; expected"),
    (["--min-face", "0"], "--min-face 0.0; expected"),
    (["--threads", "-1"], "--threads=-1; expected"),
])
def test_crowd_bench_options_refused_before_work(bench: Any, tmp_path: Path, argv: list[str], match: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    line = run_cli(bench.main, ["--no-data", *argv, "--out", str(tmp_path / "o.json")], capsys)
    assert match in line and not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("report", ["[1, 2]", '{"detection": {"bins": [], "overall": null}}', "3", "{"])
def test_crowd_bench_table_of_a_json_that_is_not_a_report(tmp_path: Path, report: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge import crowd_bench

    (tmp_path / "r.json").write_text(report)
    assert "expected a JSON report written by" in run_cli(crowd_bench.main, ["--table", str(tmp_path / "r.json")],
                                                         capsys)


def test_crowd_bench_outputs_checked_before_work(bench: Any, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """--out (and --save-scene) may not overwrite the data, the models or each other, nor be a folder."""
    for name in ("fer2013.npz", "ferplus_labels.npz", "m.onnx", "d.onnx", "s.png"):
        (tmp_path / name).write_bytes(b"keep")
    (tmp_path / "folder").mkdir()
    base = ["--data", str(tmp_path), "--model", str(tmp_path / "m.onnx"), "--detector-model", str(tmp_path / "d.onnx")]
    for out in ("fer2013.npz", "ferplus_labels.npz", "m.onnx", "d.onnx"):
        line = run_cli(bench.main, [*base, "--out", str(tmp_path / out)], capsys)
        assert "would overwrite it" in line
    line = run_cli(bench.main, ["--no-data", "--save-scene", str(tmp_path / "s.png"), "--out", str(tmp_path / "s.png")],
                   capsys)
    assert "--out" in line and "--save-scene" in line
    assert "is a directory" in run_cli(bench.main, ["--no-data", "--out", str(tmp_path / "folder")], capsys)
    (tmp_path / "shots.png").mkdir()
    assert "is a directory" in run_cli(bench.main, ["--no-data", "--save-scene", str(tmp_path / "shots.png"),
                                                    "--out", str(tmp_path / "o.json")], capsys)
    assert all((tmp_path / n).read_bytes() == b"keep" for n in ("fer2013.npz", "ferplus_labels.npz", "m.onnx",
                                                                  "d.onnx", "s.png"))


@pytest.mark.parametrize("failure", [KeyboardInterrupt, DataError])
def test_crowd_bench_failed_run_writes_no_scene(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, failure: type,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """--save-scene is written only once the run has succeeded; Ctrl-C is one line and exit code 130."""
    pytest.importorskip("skimage")
    from fsrfer_edge import crowd_bench

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise failure("the run failed")

    monkeypatch.setattr(crowd_bench, "compare", fail)
    argv = ["--no-data", "--size", "128x96", "--save-scene", str(tmp_path / "s.png"), "--out", str(tmp_path / "o.json")]
    if failure is DataError:
        assert "the run failed" in run_cli(crowd_bench.main, argv, capsys)
    else:
        assert crowd_bench.main(argv) == 130
        err = capsys.readouterr().err
        assert err.strip() == "fsrfer-crowd-bench: interrupted; no report was written"
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "o.json").exists()


def test_crowd_bench_sigterm_is_an_interruption(tmp_path: Path) -> None:
    """kill (SIGTERM) ends fsrfer-crowd-bench as Ctrl-C does: its workers are ended, one line, exit code 130."""
    import subprocess
    import sys

    code = ("import os, signal, sys\n"
            "from fsrfer_edge import crowd_bench\n"
            "crowd_bench.compare = lambda *a, **k: (os.kill(os.getpid(), signal.SIGTERM), signal.pause())\n"
            "sys.exit(crowd_bench.main(sys.argv[1:]))\n")
    pytest.importorskip("skimage")
    run = subprocess.run([sys.executable, "-c", code, "--no-data", "--out", str(tmp_path / "o.json")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 130 and "interrupted" in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_crowd_bench_workers_end_at_once_when_the_run_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """compare ends its worker processes on an exception (Ctrl-C included), without waiting for them."""
    import multiprocessing
    import time

    from fsrfer_edge import crowd_bench

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(crowd_bench, "_reply", interrupted)
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        crowd_bench.compare([crowd_bench.DetectorSpec("opencv", 12)], crowd_bench.Job(None, None, 1))
    assert time.perf_counter() - t0 < 5 and not multiprocessing.active_children()


def test_atomic_writes_read_the_umask_without_setting_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Setting the umask to 0 for a moment made a file another thread of the app created then world-writable."""
    import os

    from fsrfer_edge.fileio import write_json

    status = Path("/proc/self/status")
    if not status.is_file() or "Umask:" not in status.read_text():
        pytest.skip("this system does not tell the umask without setting it")
    previous = os.umask(0o027)
    try:
        set_to: list[int] = []
        real_umask = os.umask
        monkeypatch.setattr(os, "umask", lambda mask: set_to.append(mask) or real_umask(mask))
        out = write_json(tmp_path / "x.json", {"a": 1})
        monkeypatch.undo()
        assert set_to == [], "the process umask was changed"
        assert out.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(previous)


@pytest.mark.parametrize("channels", [1.0, 3.0, np.True_], ids=["float1", "float3", "npbool"])
def test_preprocessing_channels_that_are_not_integers_are_refused(channels: Any) -> None:
    # 1.0 == 1, so a float (a hand-edited metadata JSON) passed the check and failed later in to_pixels with
    # numpy's TypeError ("'float' object cannot be interpreted as an integer").
    from fsrfer_edge.preprocessing import Preprocessing

    with pytest.raises(InputError, match="channels="):
        Preprocessing(channels=channels)
    assert Preprocessing(channels=np.int64(3)).channels == 3  # numpy integers stay accepted


@pytest.mark.parametrize("dtype, out", [(np.float16, np.float32), (np.float32, np.float32),
                                        (np.float64, np.float64), (np.int64, np.float64)])
def test_softmax_keeps_a_models_float32_and_a_callers_float64(dtype: Any, out: Any) -> None:
    from fsrfer_edge.preprocessing import softmax

    logits = np.array([[1, 2, 3], [0, 0, 0]], dtype=dtype)
    p = softmax(logits)
    assert p.dtype == out  # as its docstring says (scripts/int8_sensitivity.py casts to float64 for the precision)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("shape", [(5,), (), (1, 1, 20, 20)], ids=["1d", "0d", "4d"])
@pytest.mark.parametrize("fn", ["undo_pixel_repetition", "undo_linear_enlarging"])
def test_correction_steps_refuse_a_crop_of_the_wrong_rank(fn: str, shape: tuple[int, ...]) -> None:
    # An IndexError / ValueError ("not enough values to unpack") before: not the package's own error.
    from fsrfer_edge import preprocessing

    with pytest.raises(InputError, match=r"expected \(C, H, W\) or \(H, W\)"):
        getattr(preprocessing, fn)(np.zeros(shape, dtype=np.float32))


def test_jpeg_quality_refuses_masked_pixels_as_jpeg_frame_quality_does() -> None:
    # The mask was dropped silently and the hidden values read as pixels.
    from fsrfer_edge.preprocessing import jpeg_quality

    crop = np.ma.masked_array(np.full((16, 16), 128.0), mask=np.zeros((16, 16), bool))
    assert jpeg_quality(crop) == jpeg_quality(crop.data)  # nothing masked: read as the plain array
    crop[3, 4] = np.ma.masked
    with pytest.raises(InputError, match="masked pixel"):
        jpeg_quality(crop)
