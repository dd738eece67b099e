"""Model, metadata and sidecar files from an untrusted source (a download, a file handed over): a crafted or broken
file is refused with an FsrferError saying what was found and what was expected; never a raw traceback, a hang,
unbounded memory, or terminal escape sequences passed on to whatever prints a class name."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fsrfer_edge import fileio, metadata, sidecars
from fsrfer_edge.confidence import ScoreCalibration
from fsrfer_edge.errors import ModelError
from fsrfer_edge.metadata import ModelInfo
from fsrfer_edge.recognizer import resolve_model_path

from _threads import call_in_thread

PACKAGED = Path(__file__).resolve().parents[1] / "fsrfer_edge" / "models"


def _metadata(**pre: object) -> dict:
    d = ModelInfo().to_dict()
    d["preprocessing"].update(pre)
    return d


def _refused(text: str) -> str:
    with pytest.raises(ModelError) as caught:
        ModelInfo.from_json(text, "dl/model.onnx")
    assert str(caught.value).startswith("dl/model.onnx")
    return str(caught.value)


# -- metadata -----------------------------------------------------------------------------------------------------
def test_metadata_with_an_integer_past_pythons_digit_limit_is_a_model_error():
    # json.loads raises a plain ValueError ("Exceeds the limit (4300 digits)"), not a JSONDecodeError
    text = json.dumps(ModelInfo().to_dict()).replace('"format_version": 1', '"format_version": 1' + "0" * 5000)
    assert "not valid JSON" in _refused(text)


@pytest.mark.parametrize("label", ["\x1b[2Jhappy", "hap\npy", "happy\x9b31m", "happy\x00", "\u202eyppah"])
def test_class_names_with_control_characters_are_refused_shown_escaped(label):
    classes = list(ModelInfo().classes)
    classes[3] = label
    msg = _refused(json.dumps(_metadata(classes=classes)))
    assert label not in msg and repr(label) in msg and "control character" in msg
    assert "\x1b" not in msg and "\n" not in msg


def test_text_fields_with_control_characters_are_refused():
    d = ModelInfo().to_dict()
    d["checkpoint_sha256"] = "\x1b]0;pwned\x07" + "a" * 54  # printed (first 12 characters) by sidecar warnings
    msg = _refused(json.dumps(d))
    assert "checkpoint_sha256" in msg and "\x1b" not in msg


def test_valid_non_ascii_class_names_are_kept():
    classes = ("wütend", "嫌悪", "страх", "happy", "sad", "surprise", "neutral")
    info = ModelInfo.from_json(json.dumps(_metadata(classes=list(classes))), "m.onnx")
    assert info.classes == classes


@pytest.mark.parametrize("size", [100_000, 10**12, None])
def test_an_absurd_input_size_is_refused_before_anything_is_allocated(size):
    size = metadata.MAX_INPUT_SIZE + 1 if size is None else size
    # a graph with dynamic height and width passes check_session_io; its dry run would allocate size**2 floats
    msg = _refused(json.dumps(_metadata(input_size=size)))
    assert str(size) in msg and str(metadata.MAX_INPUT_SIZE) in msg


def test_the_largest_input_size_is_accepted():
    info = ModelInfo.from_json(json.dumps(_metadata(input_size=metadata.MAX_INPUT_SIZE)), "m.onnx")
    assert info.preprocessing.input_size == metadata.MAX_INPUT_SIZE


def test_too_many_classes_are_refused():
    msg = _refused(json.dumps(_metadata(classes=[f"c{i}" for i in range(metadata.MAX_CLASSES + 1)])))
    assert str(metadata.MAX_CLASSES + 1) in msg and str(metadata.MAX_CLASSES) in msg
    assert len(msg) < 2000  # the message does not list them all


def test_an_overlong_class_name_is_refused_with_a_short_message():
    classes = list(ModelInfo().classes)
    classes[0] = "x" * 10**6
    msg = _refused(json.dumps(_metadata(classes=classes)))
    assert str(metadata.MAX_CLASS_NAME_CHARS) in msg and len(msg) < 2000


def test_oversized_metadata_text_is_refused_unparsed(monkeypatch):
    monkeypatch.setattr(metadata, "MAX_METADATA_CHARS", 100)
    msg = _refused(ModelInfo().to_json())
    assert "100" in msg


# -- sidecars -------------------------------------------------------------------------------------------------------
def _returns_within(fn, seconds: float, unblock=None):
    """(finished, result or exception) of ``fn`` on a daemon thread; ``unblock`` frees a thread stuck in a read."""
    finished, out = call_in_thread(fn, seconds, unblock)
    return finished, out.get("value", out.get("error"))


def _unblock_fifo(path: Path):
    def unblock():
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    return unblock


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_sidecar_that_is_a_fifo_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "model.scores.json"
    os.mkfifo(fifo)
    finished, value = _returns_within(lambda: ScoreCalibration.load(fifo), 5, _unblock_fifo(fifo))
    assert finished, "ScoreCalibration.load waited for a writer on a FIFO"
    assert isinstance(value, ModelError) and "FIFO" in str(value) and str(fifo) in str(value)


@pytest.mark.skipif(not os.path.exists("/dev/zero") or sys.platform == "win32", reason="needs /dev/zero")
def test_a_sidecar_linked_to_dev_zero_is_refused_without_reading_it(tmp_path):
    link = tmp_path / "model.scores.json"
    link.symlink_to("/dev/zero")
    # in a child with 1 GiB of address space: reading /dev/zero whole would otherwise take all of the memory
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from fsrfer_edge.confidence import ScoreCalibration\n"
            "try:\n    ScoreCalibration.load(sys.argv[1])\n"
            "except BaseException as e:\n    print(type(e).__name__, e)\n")
    done = subprocess.run([sys.executable, "-c", code, str(link)], capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("ModelError") and "device" in done.stdout, done.stdout + done.stderr


def test_an_oversized_sidecar_is_refused_and_skipped_by_auto(tmp_path, monkeypatch, caplog):
    src = PACKAGED / "default.scores.json"
    scores = tmp_path / "model.scores.json"
    shutil.copy(src, scores)
    assert ScoreCalibration.load(scores).classes  # valid under the real cap
    monkeypatch.setattr(fileio, "MAX_SIDECAR_BYTES", src.stat().st_size - 1)
    with pytest.raises(ModelError, match=r"bytes.*expected at most") as caught:
        ScoreCalibration.load(scores)
    assert str(scores) in str(caught.value)
    found = sidecars.find(tmp_path / "model.onnx", ModelInfo().classes, "", ".scores.json", ScoreCalibration.load,
                          "score calibration")
    assert found is None and "expected at most" in caplog.text


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_an_engine_whose_cache_sidecar_is_a_fifo_is_looked_beside_without_waiting(tmp_path):
    from fsrfer_edge.engine_cache import sidecar_path

    engine = tmp_path / "model.fp16.0123abcd.trt10.engine"
    engine.write_bytes(b"x")
    os.mkfifo(sidecar_path(engine))
    finished, value = _returns_within(lambda: sidecars.besides(engine, ".scores.json"), 5,
                                      _unblock_fifo(sidecar_path(engine)))
    assert finished, "besides() waited for a writer on the engine's FIFO sidecar"
    assert value == [tmp_path / "model.fp16.0123abcd.trt10.scores.json", tmp_path / "model.scores.json"]


# -- the model path itself ----------------------------------------------------------------------------------------
@pytest.mark.skipif(not os.path.exists("/dev/zero") or sys.platform == "win32", reason="needs /dev/zero")
def test_a_model_path_linked_to_dev_zero_is_refused(tmp_path):
    link = tmp_path / "model.onnx"
    link.symlink_to("/dev/zero")
    with pytest.raises(ModelError, match="device"):
        resolve_model_path(link)
    with pytest.raises(ModelError, match="suffix"):
        resolve_model_path("/dev/zero")


def test_a_sidecar_path_that_is_a_folder_is_refused_as_one(tmp_path):
    folder = tmp_path / "model.scores.json"
    folder.mkdir()
    with pytest.raises(ModelError, match=r"(?i)directory"):
        ScoreCalibration.load(folder)


# -- ONNX external data ---------------------------------------------------------------------------------------------
def _external_model(folder: Path, location: str) -> Path:
    """A one-Add ONNX model whose weight is read from the external data file ``location`` (16 bytes)."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    w = TensorProto()
    w.name, w.data_type, w.data_location = "w", TensorProto.FLOAT, TensorProto.EXTERNAL
    w.dims.extend([4])
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        entry = w.external_data.add()
        entry.key, entry.value = k, v
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    # in an If's branch too: external data may sit in any nested graph
    inner = helper.make_graph([helper.make_node("Constant", [], ["c"], value=w)], "inner", [],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [4])])
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    graph = helper.make_graph([helper.make_node("If", ["cond"], ["c"], then_branch=inner, else_branch=inner),
                               helper.make_node("Add", ["x", "c"], ["y"])], "g", [x], [y], [cond])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def old_onnxruntime(monkeypatch):
    """ONNX Runtime before 1.24 (setup.py allows 1.16 on) reads external data wherever its location points; a stand-in
    InferenceSession says whether the SDK let it open the file."""
    ort = pytest.importorskip("onnxruntime")
    opened: list = []

    class Opened(Exception):
        pass

    def session(path, *args, **kwargs):
        opened.append(path)
        raise Opened(path)

    monkeypatch.setattr(ort, "InferenceSession", session)
    return opened


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink", "fifo", "dev_zero"])
def test_external_data_outside_the_models_folder_is_refused_before_onnxruntime_reads_it(tmp_path, where,
                                                                                        old_onnxruntime):
    from fsrfer_edge.backends.onnxruntime_backend import load_session

    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(16))
    folder = tmp_path / "dl"
    location = {"parent": "../secret.bin", "absolute": str(secret)}.get(where, "weights.bin")
    path = _external_model(folder, location)
    if where == "symlink":
        (folder / location).symlink_to(secret)
    elif where == "dev_zero":
        if not os.path.exists("/dev/zero"):
            pytest.skip("needs /dev/zero")
        (folder / location).symlink_to("/dev/zero")
    elif where == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs on this platform")
        os.mkfifo(folder / location)
    with pytest.raises(ModelError, match="external data") as caught:
        load_session(path, providers="cpu")
    assert repr(location) in str(caught.value) and str(path) in str(caught.value)
    assert old_onnxruntime == []


def test_external_data_inside_the_models_folder_still_loads(tmp_path):
    onnx = pytest.importorskip("onnx")
    from fsrfer_edge.backends.onnxruntime_backend import load_session

    proto = onnx.load(str(PACKAGED / "default.onnx"))
    path = tmp_path / "dl" / "model.onnx"
    path.parent.mkdir()
    onnx.save(proto, str(path), save_as_external_data=True, location="model.data")
    assert (tmp_path / "dl" / "model.data").stat().st_size > path.stat().st_size  # the weights are outside it
    session, info = load_session(path, providers="cpu")
    assert session.get_inputs()[0].name == info.input_name


def test_a_model_that_mentions_location_but_has_no_external_data_loads(tmp_path, old_onnxruntime):
    from fsrfer_edge.backends.onnxruntime_backend import external_data_locations

    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(PACKAGED / "default.onnx"))
    proto.graph.node[0].name = "location"  # the word alone is no external data
    path = tmp_path / "model.onnx"
    onnx.save(proto, str(path))
    assert external_data_locations(path) == []


def test_the_recognizer_refuses_external_data_outside_the_folder_for_any_backend(tmp_path):
    path = _external_model(tmp_path / "dl", "../secret.bin")
    (tmp_path / "secret.bin").write_bytes(bytes(16))
    with pytest.raises(ModelError, match=r"external data location '\.\./secret\.bin' leads outside"):
        resolve_model_path(path)  # before a backend is chosen: TensorRT's ONNX parser reads the file too


def test_a_truncated_model_is_refused_by_the_scan_as_not_well_formed(tmp_path):
    path = _external_model(tmp_path, "weights.bin")
    data = path.read_bytes()
    path.write_bytes(data[:data.index(b"location") + len("location") + 2])
    with pytest.raises(ModelError, match="not a well-formed ONNX file"):
        resolve_model_path(path)


def test_an_oversized_engine_sidecar_is_refused_unread(tmp_path, monkeypatch):
    """engine_cache.read_sidecar read the whole file (a huge or endless one into memory): the cap of the other
    sidecars applies, and the engine is refused as having a corrupt sidecar."""
    from fsrfer_edge.engine_cache import read_sidecar, sidecar_path
    from fsrfer_edge.errors import EngineError

    engine = tmp_path / "model.fp16.0123abcd.trt10.engine"
    engine.write_bytes(b"x")
    sidecar_path(engine).write_text("{}" + " " * 100)
    monkeypatch.setattr(fileio, "MAX_SIDECAR_BYTES", 64)
    with pytest.raises(EngineError, match="corrupt.*expected at most 64"):
        read_sidecar(engine)
