"""The DeepStream folder: an nvinfer secondary-classifier config whose numbers reproduce the SDK's model input."""
from __future__ import annotations

import configparser
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx not installed (pip install -e '.[export]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e '.[cpu]')")
pytest.importorskip("torch", reason="torch is needed to make the tiny test models")

from _onnx_models import edit_metadata, make_tiny_onnx  # noqa: E402

from fsrfer_edge.errors import ConfigError, ModelError  # noqa: E402
from fsrfer_edge.export import cli, read_model_info  # noqa: E402
from fsrfer_edge.export.deepstream import (CALIB_NOTE, DEEPSTREAM_KEY, PROBS, normalisation, with_probabilities,  # noqa: E402
                                           write_deepstream)
from fsrfer_edge.export.onnx_export import load_onnx  # noqa: E402
from fsrfer_edge.preprocessing import CLASSES, Preprocessing  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {"fp32": make_tiny_onnx(d / "tiny.onnx"), "u8": make_tiny_onnx(d / "tiny_u8.onnx", input_dtype="uint8")}


def _config(folder: Path, name: str = "fsrfer") -> dict[str, str]:
    """The [property] group as nvinfer's GKeyFile reads it (keys as written, no interpolation)."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive in GKeyFile
    parser.read(folder / f"config_infer_{name}.txt", encoding="utf-8")
    assert parser.sections() == ["property"]
    return dict(parser["property"])


@pytest.mark.parametrize("mean,std", [(0.5, 0.25), (0.0, 1.0), (0.485, 0.229)])
def test_normalisation_is_the_sdks_for_every_grey_level(mean: float, std: float) -> None:
    pre = Preprocessing(mean=mean, std=std)
    scale, offset = normalisation(pre)
    x = np.arange(256, dtype=np.float32)
    np.testing.assert_allclose(scale * (x - offset), pre.normalize(x), rtol=0, atol=2e-6)


def test_probabilities_are_the_softmax_of_the_models_logits(models: dict[str, Path]) -> None:
    model = load_onnx(models["fp32"])
    info = read_model_info(model)
    ds = with_probabilities(model, info)
    assert [o.name for o in ds.graph.output] == [PROBS] and [i.name for i in ds.graph.input] == ["faces"]
    assert DEEPSTREAM_KEY in {p.key for p in ds.metadata_props}
    x = np.random.default_rng(0).normal(size=(5, 1, 48, 48)).astype(np.float32)
    logits = ort.InferenceSession(str(models["fp32"]), providers=["CPUExecutionProvider"]).run(None, {"faces": x})[0]
    probs = ort.InferenceSession(ds.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"faces": x})[0]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert len(model.graph.output) == 1 and model.graph.output[0].name == "logits"  # the source is left as it was


def test_uint8_input_models_are_refused(models: dict[str, Path]) -> None:
    model = load_onnx(models["u8"])
    with pytest.raises(ModelError, match="uint8 pixels; nvinfer feeds"):
        with_probabilities(model, read_model_info(model))


def test_config_feeds_the_model_what_the_sdk_feeds_it(models: dict[str, Path], tmp_path: Path) -> None:
    """Emulate nvinfer on a 48x48 face with the written config's numbers: the probabilities are the SDK's."""
    from fsrfer_edge import Recognizer

    config = write_deepstream(tmp_path / "ds", models["fp32"], "expr", batch_size=16, gie_id=3, operate_on_gie_id=1)
    assert config == tmp_path / "ds" / "config_infer_expr.txt"
    c = _config(tmp_path / "ds", "expr")
    assert (c["process-mode"], c["network-type"], c["gie-unique-id"], c["operate-on-gie-id"]) == ("2", "1", "3", "1")
    assert (c["onnx-file"], c["labelfile-path"], c["output-blob-names"]) == ("expr.onnx", "expr_labels.txt", PROBS)
    assert (c["batch-size"], c["model-engine-file"]) == ("16", "expr.onnx_b16_gpu0_fp16.engine")
    assert (c["infer-dims"], c["model-color-format"]) == ("1;48;48", "2")
    assert (c["scaling-compute-hw"], c["scaling-filter"], c["maintain-aspect-ratio"]) == ("1", "2", "0")
    assert "int8-calib-file" not in c and not list((tmp_path / "ds").glob("*calib*"))
    assert (tmp_path / "ds" / "expr_labels.txt").read_text().splitlines() == [";".join(CLASSES)]
    face = np.random.default_rng(1).integers(40, 220, size=(48, 48)).astype(np.uint8)
    x = float(c["net-scale-factor"]) * (face.astype(np.float32) - float(c["offsets"]))  # nvinfer's formula
    sess = ort.InferenceSession(str(tmp_path / "ds" / c["onnx-file"]), providers=["CPUExecutionProvider"])
    probs = sess.run(None, {sess.get_inputs()[0].name: x[None, None].astype(np.float32)})[0][0]
    with Recognizer(models["fp32"], corrections={"contrast_floor": 0}) as rec:
        sdk = rec.predict([face])[0]
    np.testing.assert_allclose(probs, sdk.probs, atol=1e-5)


def test_rewriting_a_changed_model_removes_the_engines_nvinfer_built_from_the_old_one(
        models: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    write_deepstream(folder, models["fp32"])
    engines = [folder / "fsrfer.onnx_b64_gpu0_fp16.engine", folder / "fsrfer.onnx_b16_gpu1_int8.engine"]
    for e in engines:
        e.write_bytes(b"plan")
    (folder / "mine.txt").write_text("a user's file")
    write_deepstream(folder, models["fp32"])  # the same model: its engines stay
    assert all(e.exists() for e in engines)
    other = make_tiny_onnx(tmp_path / "other.onnx", seed=5)
    write_deepstream(folder, other)
    assert not any(e.exists() for e in engines) and (folder / "mine.txt").exists()


def test_models_nvinfer_cannot_take_are_refused(models: dict[str, Path], tmp_path: Path) -> None:
    def renamed(d: dict) -> dict:  # metadata naming an input the graph does not have
        d["input_name"] = "pixels"
        return d

    bad = edit_metadata(make_tiny_onnx(tmp_path / "renamed.onnx"), renamed)
    with pytest.raises(ModelError, match="expected exactly 'pixels'"):
        write_deepstream(tmp_path / "ds", bad)
    with pytest.raises(ConfigError, match="gie_id=1 is the detector's own id"):
        write_deepstream(tmp_path / "ds", models["fp32"], gie_id=1)
    with pytest.raises(ConfigError, match="batch_size=0"):
        write_deepstream(tmp_path / "ds", models["fp32"], batch_size=0)
    with pytest.raises(ConfigError, match="name='a/b'"):
        write_deepstream(tmp_path / "ds", models["fp32"], "a/b")
    assert not (tmp_path / "ds").exists()  # nothing written for a refused call


def test_fsrfer_export_writes_the_folder_from_an_onnx_file(models: dict[str, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([str(models["fp32"]), "--deepstream", str(tmp_path / "ds"), "--deepstream-batch", "8",
                     "--name", "faces"]) == 0
    assert "DeepStream classifier" in capsys.readouterr().out
    assert _config(tmp_path / "ds", "faces")["batch-size"] == "8"
    assert cli.main([str(models["fp32"]), "--deepstream-batch", "8", "--engine"]) == 2
    assert "--deepstream-batch 8 sets the batch of --deepstream DIR" in capsys.readouterr().err
    assert cli.main([str(models["u8"]), "--deepstream", str(tmp_path / "u8")]) == 2
    assert "uint8 pixels; nvinfer feeds" in capsys.readouterr().err
    inside = tmp_path / "ds" / "faces.onnx"  # the DeepStream copy given back as the source: never overwritten
    before = inside.read_bytes()
    assert cli.main([str(inside), "--deepstream", str(tmp_path / "ds"), "--name", "faces"]) == 2
    assert "would replace" in capsys.readouterr().err and inside.read_bytes() == before


@pytest.mark.parametrize("scheme", ["s8s8", "u8s8"])
def test_int8_files_tensorrt_takes_get_an_int8_engine_and_others_are_refused(tmp_path: Path, scheme: str) -> None:
    def int8(d: dict) -> dict:
        d.update(precision="int8", int8_scheme=scheme)
        return d

    model = edit_metadata(make_tiny_onnx(tmp_path / f"tiny.int8-{scheme}.onnx"), int8)
    if scheme == "u8s8":
        with pytest.raises(ModelError, match="TensorRT takes the s8s8 file"):
            write_deepstream(tmp_path / "ds", model)
        return
    write_deepstream(tmp_path / "ds", model, batch_size=32)
    c = _config(tmp_path / "ds")
    assert (c["network-mode"], c["model-engine-file"]) == ("1", "fsrfer.onnx_b32_gpu0_int8.engine")
    # nvinfer sets TensorRT's INT8 flag only when this file exists; TensorRT ignores calibrators for Q/DQ graphs
    assert (tmp_path / "ds" / c["int8-calib-file"]).read_text() == CALIB_NOTE
    text = (tmp_path / "ds" / "config_infer_fsrfer.txt").read_text()
    assert ("--minShapes=faces:1x1x48x48 --optShapes=faces:32x1x48x48 --maxShapes=faces:32x1x48x48 "
            "--saveEngine=fsrfer.onnx_b32_gpu0_int8.engine") in text


def test_engines_beside_a_freshly_written_onnx_file_are_removed(models: dict[str, Path], tmp_path: Path) -> None:
    """An engine whose ONNX file is gone was built from some earlier model: nvinfer would load it (the config names
    it) instead of building one from the new file."""
    folder = tmp_path / "ds"
    folder.mkdir()
    stale = folder / "fsrfer.onnx_b64_gpu0_fp16.engine"
    stale.write_bytes(b"plan of a model deleted since")
    other = folder / "other.onnx_b64_gpu0_fp16.engine"
    other.write_bytes(b"plan")
    write_deepstream(folder, models["fp32"])
    assert not stale.exists() and other.exists()


def test_write_deepstream_never_replaces_its_own_source(models: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    folder.mkdir()
    source = folder / "fsrfer.onnx"
    source.write_bytes(models["fp32"].read_bytes())
    with pytest.raises(ConfigError, match="would replace"):
        write_deepstream(folder, source)
    assert source.read_bytes() == models["fp32"].read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["fsrfer.onnx"]


@pytest.mark.parametrize("sub", ["", "sub"])
def test_an_output_folder_that_is_a_file_is_refused_with_a_config_error(models: dict[str, Path], tmp_path: Path,
                                                                         sub: str) -> None:
    """A file as the folder (or above it) raised a bare FileExistsError / NotADirectoryError from mkdir."""
    blocker = tmp_path / "ds"
    blocker.write_bytes(b"not a folder")
    with pytest.raises(ConfigError, match="is a file; expected a folder"):
        write_deepstream(blocker / sub if sub else blocker, models["fp32"])
    assert blocker.read_bytes() == b"not a folder"


def test_deepstream_options_are_refused_before_any_other_output(models: dict[str, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A model nvinfer cannot take, or a --name it cannot hold, was refused only after the Triton repository (or a
    checkpoint's whole export) had been written; --deepstream-batch 64 alone was taken silently."""
    repo, ds = tmp_path / "repo", tmp_path / "ds"
    assert cli.main([str(models["u8"]), "--triton-repo", str(repo), "--deepstream", str(ds)]) == 2
    assert "uint8 pixels; nvinfer feeds" in capsys.readouterr().err
    assert not repo.exists() and not ds.exists()
    ckpt, out = tmp_path / "tiny.pt", tmp_path / "out"
    ckpt.write_bytes(b"never read")
    assert cli.main([str(ckpt), "--out-dir", str(out), "--deepstream", str(ds), "--name", "my model"]) == 2
    assert "name='my model'" in capsys.readouterr().err
    assert not out.exists() and not ds.exists()
    assert cli.main([str(models["fp32"]), "--engine", "--deepstream-batch", "64"]) == 2
    assert "--deepstream-batch 64 sets the batch of --deepstream DIR" in capsys.readouterr().err


@pytest.mark.parametrize("stem", ["two\nlines", "bytes\udcff"])
def test_the_source_file_name_cannot_break_the_config(models: dict[str, Path], tmp_path: Path, stem: str) -> None:
    """The config's comment names the source file: a line break in it made a line GKeyFile refuses, a name that is
    not UTF-8 failed after the ONNX file had been replaced."""
    try:
        source = tmp_path / f"{stem}.onnx"
        source.write_bytes(models["fp32"].read_bytes())
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system does not take that name")
    config = write_deepstream(tmp_path / "ds", source)
    text = config.read_text(encoding="utf-8")
    assert all(line.startswith("#") for line in text.split("[property]")[0].splitlines())
    assert _config(tmp_path / "ds")["onnx-file"] == "fsrfer.onnx"


def _s8s8(tmp_path: Path) -> Path:
    def int8(d: dict) -> dict:
        d.update(precision="int8", int8_scheme="s8s8")
        return d

    return edit_metadata(make_tiny_onnx(tmp_path / "tiny.int8-s8s8.onnx"), int8)


@pytest.mark.parametrize("version", ["8.5.2.2", "10.3.0.26", "11.1.0.10"])
def test_deepstream_engine_of_an_s8s8_file_is_built_as_nvinfer_loads_it(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         version: str) -> None:
    """Against the version-faithful TensorRT fakes: the engine the config names, batches 1..batch-size."""
    from test_tensorrt_versions import FakeGpu

    gpu = FakeGpu(monkeypatch, version)
    config = write_deepstream(tmp_path / "ds", _s8s8(tmp_path), batch_size=16, engine=True)
    c = _config(config.parent)
    plan = config.parent / c["model-engine-file"]
    assert c["model-engine-file"] == "fsrfer.onnx_b16_gpu0_int8.engine" and plan.is_file()
    spec, = gpu.trt.log["built"]
    assert json.loads(plan.read_bytes()) == spec
    assert (spec["input"], spec["outputs"], spec["min"], spec["opt"], spec["max"], spec["chw"]) == \
        ("faces", [PROBS], 1, 16, 16, [1, 48, 48])
    if version.startswith("11"):  # no precision flags: types from the file
        assert spec["strongly_typed"] and not {"FP16", "INT8"} & set(spec["flags"])
    else:  # what nvinfer sets only with a calibration file
        assert not spec["strongly_typed"] and {"FP16", "INT8"} <= set(spec["flags"])


def test_deepstream_engine_is_refused_where_nvinfer_builds_or_tensorrt_is_missing(
        models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from fsrfer_edge.errors import BackendUnavailable

    with pytest.raises(ConfigError, match="nvinfer builds its FP16 engine itself"):
        write_deepstream(tmp_path / "fp32", models["fp32"], engine=True)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt fails, as on a machine without it
    with pytest.raises(BackendUnavailable):
        write_deepstream(tmp_path / "none", _s8s8(tmp_path), engine=True)
    assert not (tmp_path / "fp32").exists() and not (tmp_path / "none").exists()  # refused before any write
    assert cli.main([str(models["fp32"]), "--engine", "--deepstream-engine"]) == 2
    assert "--deepstream-engine builds the engine of --deepstream DIR; pass it too" in capsys.readouterr().err
    assert cli.main([str(models["fp32"]), "--deepstream", str(tmp_path / "cli"), "--deepstream-engine"]) == 2
    assert "nvinfer builds its FP16 engine itself" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()


@pytest.mark.parametrize("box,expected", [
    ((100, 50, 16, 20, 640, 480), (98, 50, 20, 20)),     # narrower than tall: widened about its centre
    ((0, 10, 10, 30, 640, 480), (0, 10, 30, 30)),        # at the left edge: moved inside, still square
    ((630, 470, 12, 8, 640, 480), (628, 468, 12, 12)),   # past the frame's corner: inside, side the box's larger
    ((10, 0, 300, 600, 640, 480), (0, 0, 480, 480)),     # larger than the frame: the frame's smaller side
])
def test_square_rect_gives_a_square_inside_the_frame(box: tuple, expected: tuple) -> None:
    from fsrfer_edge.export.deepstream import square_rect

    x, y, w, h = square_rect(*box)
    assert (x, y, w, h) == pytest.approx(expected)
    assert w == h and 0 <= x and 0 <= y and x + w <= box[4] and y + h <= box[5]


def test_square_rect_takes_numpy_numbers() -> None:
    """A box from a float32 array (a detector's output, or cv2's) was refused as "not a finite number"; the SDK's
    other checks take numpy numbers (detection.pyramid.check_number)."""
    from fsrfer_edge.export.deepstream import square_rect

    box = np.array([100, 50, 16, 20], dtype=np.float32)
    got = square_rect(*box, np.int64(640), np.int64(480))
    assert got == pytest.approx((98, 50, 20, 20)) and all(type(v) is float for v in got)


@pytest.mark.parametrize("bad", [(0, 0, 0, 10, 640, 480), (0, 0, 10, 10, 0, 480), (float("nan"), 0, 10, 10, 640, 480),
                                 (True, 0, 10, 10, 640, 480), ("1", 0, 10, 10, 640, 480)])
def test_square_rect_refuses_what_is_not_a_box(bad: tuple) -> None:
    from fsrfer_edge.errors import InputError
    from fsrfer_edge.export.deepstream import square_rect

    with pytest.raises(InputError, match="expected finite numbers"):
        square_rect(*bad)


def test_a_failed_deepstream_engine_build_leaves_the_folder_as_it_was(models: dict[str, Path], tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The ONNX copy was written, and the engines of the folder's earlier model removed, before the build: a build
    that failed left the new s8s8 file beside the earlier export's FP16 config (nvinfer then fails to build it)."""
    from test_tensorrt_versions import FakeGpu

    from fsrfer_edge.errors import EngineError
    from fsrfer_edge.export import engine as engine_module

    ds = tmp_path / "ds"
    write_deepstream(ds, models["fp32"], batch_size=16)
    (ds / "fsrfer.onnx_b16_gpu0_fp16.engine").write_bytes(b"nvinfer's engine of the FP32 copy")
    before = {p.name: p.read_bytes() for p in ds.iterdir()}
    FakeGpu(monkeypatch, "10.3.0.26")

    def fails(*args: object, **kwargs: object) -> None:
        raise EngineError("TensorRT failed to build an engine from fsrfer.onnx; the log above says why")

    monkeypatch.setattr(engine_module, "_build_serialized", fails)
    with pytest.raises(EngineError, match="failed to build"):
        write_deepstream(ds, _s8s8(tmp_path), batch_size=16, engine=True)
    assert {p.name: p.read_bytes() for p in ds.iterdir()} == before


def test_a_built_deepstream_engine_survives_the_removal_of_stale_engines(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Built before the folder changes, the engine must still be written after the earlier model's are removed."""
    from test_tensorrt_versions import FakeGpu

    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "fsrfer.onnx").write_bytes(b"an earlier model")
    (ds / "fsrfer.onnx_b16_gpu0_int8.engine").write_bytes(b"its engine")
    gpu = FakeGpu(monkeypatch, "10.3.0.26")
    config = write_deepstream(ds, _s8s8(tmp_path), batch_size=16, engine=True)
    spec, = gpu.trt.log["built"]
    assert json.loads((config.parent / _config(ds)["model-engine-file"]).read_bytes()) == spec
    assert sorted(p.name for p in ds.iterdir()) == ["config_infer_fsrfer.txt", "fsrfer.onnx",
                                                    "fsrfer.onnx_b16_gpu0_int8.engine", "fsrfer_int8_calib.txt",
                                                    "fsrfer_labels.txt"]


class _Node:
    """A GList node as pyds binds it: ``data`` and ``next`` (None at the end)."""

    def __init__(self, items: list) -> None:
        self.data, self.next = items[0], (_Node(items[1:]) if len(items) > 1 else None)


def _snippet_from_the_docs(monkeypatch: pytest.MonkeyPatch, section: str, **pyds_names: object) -> tuple:
    """The Python block of docs/deepstream.md's ``section``, run against fake ``pyds`` (the names given, the meta
    casts as identity, ``gst_buffer_get_nvds_batch_meta`` reading the batches registered) and ``Gst`` modules; returns
    the probe it adds, its pad name and user data, the batches, the Gst fake and the block's namespace."""
    import re
    import sys
    import types
    from types import SimpleNamespace

    text = (Path(__file__).resolve().parents[1] / "docs" / "deepstream.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text.split(f"## {section}", 1)[1], re.S)
    assert code is not None
    pyds = types.ModuleType("pyds")
    same = SimpleNamespace(cast=lambda data: data)
    for meta in ("NvDsFrameMeta", "NvDsObjectMeta", "NvDsUserMeta", "NvDsInferTensorMeta"):
        setattr(pyds, meta, same)
    batches: dict[int, object] = {}
    pyds.gst_buffer_get_nvds_batch_meta = batches.__getitem__  # type: ignore[attr-defined]
    for name, value in pyds_names.items():
        setattr(pyds, name, value)
    gst = SimpleNamespace(PadProbeReturn=SimpleNamespace(DROP=0, OK=1), PadProbeType=SimpleNamespace(BUFFER=16))
    repository = types.ModuleType("gi.repository")
    repository.Gst = gst  # type: ignore[attr-defined]
    gi = types.ModuleType("gi")
    gi.repository = repository  # type: ignore[attr-defined]
    for name, module in (("pyds", pyds), ("gi", gi), ("gi.repository", repository)):
        monkeypatch.setitem(sys.modules, name, module)
    added: list[tuple] = []
    sgie = SimpleNamespace(get_static_pad=lambda name: SimpleNamespace(add_probe=lambda *a: added.append((name, *a))))
    namespace: dict = {"sgie": sgie, "print_face": print}
    exec(compile(code.group(1), "docs/deepstream.md", "exec"), namespace)
    (pad, kind, probe, user_data), = added
    assert kind == gst.PadProbeType.BUFFER
    return probe, pad, user_data, batches, gst, namespace


def _probe_from_the_docs(monkeypatch: pytest.MonkeyPatch) -> tuple:
    """docs/deepstream.md's pad probe ("Square boxes"); returns a runner of one frame's objects, its user data, the
    Gst fake and the namespace the snippet defined."""
    from types import SimpleNamespace

    probe, pad, user_data, batches, gst, namespace = _snippet_from_the_docs(monkeypatch, "Square boxes")
    assert pad == "sink"

    def run(objects: list) -> object:
        buffer = object()
        batches[hash(buffer)] = SimpleNamespace(frame_meta_list=_Node([SimpleNamespace(obj_meta_list=_Node(objects))]))
        return probe(None, SimpleNamespace(get_buffer=lambda: buffer), user_data)

    return run, user_data, gst, namespace


def test_the_docs_pad_probe_squares_only_the_face_detectors_faces(monkeypatch: pytest.MonkeyPatch) -> None:
    """It squared every object of the frame (another detector's people, the face detector's other classes), and a
    box of no width (nvinfer's detectors clip boxes to 0) raised in the probe, which PyGObject turns into
    GST_PAD_PROBE_DROP (0): the whole batch dropped."""
    from types import SimpleNamespace

    from fsrfer_edge.export.deepstream import square_rect

    run, frame_size, gst, ns = _probe_from_the_docs(monkeypatch)
    gie, face = 1, 0  # the config's operate-on-gie-id, and its operate-on-class-ids comment

    def obj(component: int, class_id: int, box: tuple) -> SimpleNamespace:
        return SimpleNamespace(unique_component_id=component, class_id=class_id,
                               rect_params=SimpleNamespace(**dict(zip(("left", "top", "width", "height"), box))))

    def box(o: SimpleNamespace) -> tuple:
        r = o.rect_params
        return r.left, r.top, r.width, r.height

    objects = [obj(gie, face, (100.0, 50.0, 16.0, 20.0)), obj(3, face, (200.0, 40.0, 30.0, 90.0)),
               obj(gie, face + 1, (400.0, 40.0, 30.0, 90.0))]
    assert run(objects) == gst.PadProbeReturn.OK
    assert box(objects[0]) == square_rect(100.0, 50.0, 16.0, 20.0, *frame_size)
    assert [box(o) for o in objects[1:]] == [(200.0, 40.0, 30.0, 90.0), (400.0, 40.0, 30.0, 90.0)]
    empty = [obj(gie, face, (300.0, 60.0, 0.0, 12.0)), obj(gie, face, (500.0, 60.0, 14.0, 10.0))]
    assert run(empty) == gst.PadProbeReturn.OK  # not an exception: PyGObject would return DROP for it
    assert box(empty[0]) == (300.0, 60.0, 0.0, 12.0)
    assert box(empty[1]) == square_rect(500.0, 60.0, 14.0, 10.0, *frame_size)  # the next face is still squared
    assert (ns["FACE_GIE_ID"], ns["FACE_CLASS_ID"]) == (gie, face)  # named in the snippet, for the reader to set


def test_the_docs_smoothing_probe_averages_each_tracked_face_over_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/deepstream.md's probe ("A face's expression over frames") against stand-ins for pyds and Gst: it reads
    each face's 7 probabilities from the expression classifier's tensor meta (not another GIE's) through a ctypes
    pointer, and reports the mean smooth_sequence gives over the frames of that (source, object_id)."""
    import ctypes
    from types import SimpleNamespace

    from fsrfer_edge.tracking import smooth_sequence

    tensor_type = "NVDSINFER_TENSOR_OUTPUT_META"
    probe, pad, _, batches, gst, namespace = _snippet_from_the_docs(
        monkeypatch, "A face's expression over frames",
        NvDsMetaType=SimpleNamespace(NVDSINFER_TENSOR_OUTPUT_META=tensor_type),
        get_nvds_LayerInfo=lambda tensor, i: tensor.layers[i], get_ptr=ctypes.addressof)
    assert pad == "src" and namespace["CLASSES"] == list(CLASSES)

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 2, 7)) * 2
    probs = (np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)).astype(np.float32)  # 4 frames, 2 faces
    seen: list[tuple] = []
    keep: list = []  # the ctypes buffers stay alive while the probe reads them

    def user(gie: int, p: np.ndarray) -> SimpleNamespace:
        buf = (ctypes.c_float * 7)(*p)
        keep.append(buf)
        return SimpleNamespace(base_meta=SimpleNamespace(meta_type=tensor_type), user_meta_data=SimpleNamespace(
            unique_id=gie, layers=[SimpleNamespace(buffer=buf)]))

    for t in range(4):
        objects = [SimpleNamespace(object_id=10 + k, obj_user_meta_list=_Node(
            [user(5, np.full(7, 1 / 7)), user(2, probs[t, k])])) for k in range(2)]  # another GIE's tensor first
        buffer = object()
        batches[hash(buffer)] = SimpleNamespace(frame_meta_list=_Node([SimpleNamespace(
            source_id=0, frame_num=t, obj_meta_list=_Node(objects))]))
        assert probe(None, SimpleNamespace(get_buffer=lambda: buffer),
                     lambda f, o, label, mean: seen.append((t, o.object_id, label, mean))) == gst.PadProbeReturn.OK
    assert [(t, i) for t, i, _, _ in seen] == [(t, 10 + k) for t in range(4) for k in range(2)]
    for t, i, label, mean in seen:
        expected = smooth_sequence(probs[:t + 1], 2.0)[i - 10]
        np.testing.assert_allclose(mean, expected, atol=1e-6)
        assert label == CLASSES[int(expected.argmax())]


def test_the_docs_frame_confidence_is_the_sdk_s_map_at_the_squared_box_s_size() -> None:
    """docs/deepstream.md's "A face's confidence in one frame" block: the shipped calibration's map of one frame's
    probabilities at 48 over the box's side (in the camera's pixels with ``scale``)."""
    import re
    from types import SimpleNamespace

    from fsrfer_edge.confidence import ScoreCalibration
    from fsrfer_edge.sidecars import PACKAGED

    text = (Path(__file__).resolve().parents[1] / "docs" / "deepstream.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text.split("## A face's confidence in one frame and over frames", 1)[1],
                     re.S)
    assert code is not None
    namespace: dict = {}
    exec(compile(code.group(1), "docs/deepstream.md", "exec"), namespace)
    cal = ScoreCalibration.load(PACKAGED / "default.scores.json")
    probs = np.array([0.0, 0.0, 0.1, 0.7, 0.1, 0.05, 0.05], np.float32)  # a softmax in float32 can hold zeros
    box = SimpleNamespace(rect_params=SimpleNamespace(width=12.0, height=12.0))
    want = cal.confidence(np.log(np.maximum(probs, 1e-30))[None], 4.0)[0]
    assert namespace["frame_confidence"](box, probs) == pytest.approx(want)
    enlarged = SimpleNamespace(rect_params=SimpleNamespace(width=36.0, height=36.0))  # a muxer's 3x of a 12 px face
    assert namespace["frame_confidence"](enlarged, probs, scale=1 / 3) == pytest.approx(want)
    assert namespace["frame_confidence"](enlarged, probs) != pytest.approx(want)
    # the smoother's mean: its frame's map where its frames repeat each other, the spread's terms where they differ
    from fsrfer_edge.tracking import ExpressionSmoother

    smoother = ExpressionSmoother()
    for frame in range(3):
        mean = smoother.update("face", probs, frame)
    assert smoother.spread("face") == pytest.approx(0.0, abs=1e-6)
    assert namespace["mean_confidence"](box, mean, smoother.spread("face")) == pytest.approx(want, rel=1e-5)
    other = np.array([0.0, 0.0, 0.5, 0.3, 0.1, 0.05, 0.05], np.float32)
    mean = smoother.update("face", other, 3)
    g = smoother.spread("face")
    assert g > 0
    assert namespace["mean_confidence"](box, mean, g) == pytest.approx(
        cal.track_confidence(mean[None], [g], 4.0)[0])
