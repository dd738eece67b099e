"""Tests that kill hand-made mutants (round 70, task K70m) of fsrfer_edge/backends/onnxruntime_backend.py and
fsrfer_edge/export/deepstream.py, fifth pass.

The ONNX Runtime backend: the pure-Python protobuf reader that finds external data (every place of onnx.proto a
tensor may hide in: training info, functions, sparse initializers, an attribute's tensors, graphs and sparse
tensors; an entry without a value; varints of 10 and 11 bytes; fixed64 and fixed32 widths; protobuf's nesting limit
at its boundary), session options logging errors only, a batch dimension of 0 taken for no static batch, and the
warning for sessions whose threads exceed the usable CPUs. The DeepStream writer: the config's reinfer interval,
tensor meta, classifier threshold and minimum object sizes, ids and batch sizes at their bounds, a carriage return in
a source name, a name of dots, square boxes in a wide frame, workspace_mb=0, a changed model removing a symbolic link
named as an engine while keeping files of other patterns, the fsrfer metadata dropped from the DeepStream copy, and
a folder named as an INT8 file's calibration note refused before anything is written.
No torch, no GPU: raw protobuf bytes, onnx.helper graphs (make_flat_onnx), fake sessions and temporary folders.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from fsrfer_edge.backends import onnxruntime_backend as ob
from fsrfer_edge.errors import ConfigError, InputError, ModelError
from fsrfer_edge.export.deepstream import check_name, config_text, engine_name, square_rect, write_deepstream
from fsrfer_edge.metadata import ModelInfo
from fsrfer_edge.preprocessing import CLASSES, Preprocessing
from _onnx_models import make_flat_onnx
from test_mutants66i import _varint


# -- external_data_locations: the protobuf reader ---------------------------------------------------------------------


def _msg(number: int, body: bytes) -> bytes:
    """One length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def _external(location: bytes = b"w.bin") -> bytes:
    """A TensorProto holding one external_data entry (key 'location')."""
    return _msg(13, _msg(1, b"location") + _msg(2, location))


def _write(tmp_path: Path, data: bytes, name: str = "m.onnx") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


_TENSOR = _external()
_GRAPH = _msg(5, _TENSOR)  # graph.initializer
_PLACES = {
    "training.algorithm": _msg(20, _msg(2, _GRAPH)),  # model.training_info.algorithm
    "training.initialization": _msg(20, _msg(1, _GRAPH)),
    "function.attribute_proto": _msg(25, _msg(11, _msg(5, _TENSOR))),  # model.functions[].attribute_proto[].t
    "function.node": _msg(25, _msg(7, _msg(5, _msg(5, _TENSOR)))),  # model.functions[].node[].attribute[].t
    "sparse.indices": _msg(7, _msg(15, _msg(2, _TENSOR))),  # graph.sparse_initializer[].indices
    "sparse.values": _msg(7, _msg(15, _msg(1, _TENSOR))),
    "attribute.sparse_tensors": _msg(7, _msg(1, _msg(5, _msg(23, _msg(1, _TENSOR))))),  # node.attribute.sparse_tensors
    "attribute.sparse_tensor": _msg(7, _msg(1, _msg(5, _msg(22, _msg(1, _TENSOR))))),
    "attribute.tensors": _msg(7, _msg(1, _msg(5, _msg(10, _TENSOR)))),
    "attribute.graphs": _msg(7, _msg(1, _msg(5, _msg(11, _GRAPH)))),
}


@pytest.mark.parametrize("place", sorted(_PLACES))
def test_an_external_tensor_is_found_wherever_onnx_may_hold_one(tmp_path: Path, place: str) -> None:
    # kills: a field dropped from _TENSOR_FIELDS (training 2, function 11, sparse 2, attribute 23, ...)
    assert ob.external_data_locations(_write(tmp_path, _PLACES[place])) == ["w.bin"]


def test_an_entry_without_a_value_is_an_empty_location_and_refused(tmp_path: Path) -> None:
    # kills: a location entry without its value field read as anything but ""
    path = _write(tmp_path, _msg(7, _msg(5, _msg(13, _msg(1, b"location")))))
    assert ob.external_data_locations(path) == [""]
    with pytest.raises(ModelError, match="location '' is not a path relative to the model's folder"):
        ob.check_external_data(path)


def test_a_varint_of_eleven_bytes_is_not_well_formed_and_one_of_ten_is(tmp_path: Path) -> None:
    # kills: the overlong-varint bound (shift > 63) loosened
    head = _msg(2, b"location")  # model.producer_name: the scan runs
    ten = _write(tmp_path, head + b"\x08" + b"\x80" * 9 + b"\x01", "ten.onnx")  # ir_version, 10 varint bytes
    eleven = _write(tmp_path, head + b"\x08" + b"\x80" * 10 + b"\x00", "eleven.onnx")
    assert ob.external_data_locations(ten) == []
    with pytest.raises(ModelError, match="not a well-formed ONNX file .a truncated or overlong varint"):
        ob.external_data_locations(eleven)


@pytest.mark.parametrize("wire, size", [(1, 8), (5, 4)])
def test_a_fixed_width_field_takes_its_own_width(tmp_path: Path, wire: int, size: int) -> None:
    # kills: the widths of fixed64 (8 bytes) and fixed32 (4 bytes) swapped
    head = _msg(2, b"location")
    whole = _write(tmp_path, head + _varint(3 << 3 | wire) + b"\x00" * size + _msg(7, _GRAPH), "whole.onnx")
    short = _write(tmp_path, head + _varint(3 << 3 | wire) + b"\x00" * (size - 1), "short.onnx")
    assert ob.external_data_locations(whole) == ["w.bin"]
    with pytest.raises(ModelError, match="a field past the end of its message"):
        ob.external_data_locations(short)


def _nest(graphs: int) -> bytes:
    """A model whose graph's node's attribute holds a graph ... ``graphs`` graphs deep, the last with a sparse tensor
    whose values are external: the last graph is a message at depth 1 + 3 * (graphs - 1), the entry 3 deeper."""
    body = _msg(15, _msg(1, _TENSOR))
    for _ in range(graphs - 1):
        body = _msg(1, _msg(5, _msg(6, body)))  # graph.node.attribute.g
    return _msg(7, body)


def test_nesting_is_refused_just_past_100_deep_and_read_at_100(tmp_path: Path) -> None:
    # kills: the nesting limit moved off protobuf's 100
    ok = _write(tmp_path, _nest(33), "ok.onnx")  # the last graph at depth 97, its entry at 100
    deep = _write(tmp_path, _nest(34), "deep.onnx")  # the last graph at 100, its entry at 103
    assert ob.external_data_locations(ok) == ["w.bin"]
    with pytest.raises(ModelError, match="messages nested over 100 deep"):
        ob.external_data_locations(deep)


# -- make_session_options ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [None, 2])
def test_session_options_log_errors_only(threads: object) -> None:
    # kills: log_severity_level 3 (errors) lowered to 2 (warnings: ONNX Runtime's own provider fallback noise)
    pytest.importorskip("onnxruntime")
    assert ob.make_session_options(threads).log_severity_level == 3


# -- check_session_io: the static batch size --------------------------------------------------------------------------
@pytest.mark.parametrize("batch, static", [(0, None), (-1, None), ("N", None), (4, 4)])
def test_only_a_positive_batch_dimension_is_a_static_batch(batch: object, static: object) -> None:
    # kills: a batch dimension of 0 (or a negative one) taken for a fixed batch size (min_batch 0)
    info = ModelInfo()
    pre = info.preprocessing
    faces = SimpleNamespace(name=info.input_name, type="tensor(float)",
                            shape=[batch, pre.channels, pre.input_size, pre.input_size])
    logits = SimpleNamespace(name=info.output_name, type="tensor(float)", shape=[batch, len(info.classes)])
    session = SimpleNamespace(get_inputs=lambda: [faces], get_outputs=lambda: [logits])
    assert ob.check_session_io(session, info, "m.onnx") == static


# -- OnnxRuntimeBackend: sessions against the usable CPUs ---------------------------------------------------------------
@pytest.mark.needs("onnx")
@pytest.mark.parametrize("cpus, warned", [(1, True), (2, False)])
def test_sessions_warn_only_when_their_threads_exceed_the_usable_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture, cpus: int,
                                                                       warned: bool) -> None:
    # kills: the oversubscription warning's bound moved (2 sessions of 1 thread on 2 CPUs fit; on 1 they do not)
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(ob, "usable_cpus", lambda: cpus)
    with caplog.at_level("WARNING", logger=ob.__name__):
        with ob.OnnxRuntimeBackend(make_flat_onnx(tmp_path / "m.onnx"), providers="cpu", sessions=2) as be:
            assert be.sessions == 2
    assert ("use more threads than the %d CPUs" % cpus in caplog.text) == warned


# -- deepstream: the config's keys and values, names, labels, square boxes, stale engines -----------------------------
def _props(text: str) -> dict[str, str]:
    """The [property] group's key=value lines (comments skipped)."""
    lines = text.splitlines()
    body = lines[lines.index("[property]") + 1:]
    return dict(line.split("=", 1) for line in body if line and not line.startswith("#"))


def _info(size: int = 48, classes: tuple[str, ...] = CLASSES) -> ModelInfo:
    return ModelInfo(preprocessing=Preprocessing(input_size=size, classes=classes))


def test_config_classifies_every_frame_keeping_each_probability_as_tensor_meta() -> None:
    # kills: secondary-reinfer-interval, output-tensor-meta or classifier-threshold changed
    c = _props(config_text(_info(), "m.onnx", "m_labels.txt"))
    assert c["secondary-reinfer-interval"] == "0"  # a tracked face reclassified in every frame
    assert c["output-tensor-meta"] == "1"  # the probabilities the smoothing probe averages
    assert float(c["classifier-threshold"]) == 0.0  # every face gets its top class


@pytest.mark.parametrize("size", [12, 48, 64])
def test_config_skips_objects_under_an_eighth_of_the_input_at_least_2_pixels(size: int) -> None:
    # kills: the minimum object side's divisor or its floor of 2 changed (width or height)
    c = _props(config_text(_info(size), "m.onnx", "m_labels.txt"))
    want = str(max(2, size // 8))
    assert c["input-object-min-width"] == want and c["input-object-min-height"] == want


def test_config_takes_ids_and_batch_sizes_at_their_bounds_and_refuses_beyond() -> None:
    # kills: operate_on_gie_id 0 refused (low bound 1); batch_size 1024 refused (< 1024)
    c = _props(config_text(_info(), "m.onnx", "m_labels.txt", batch_size=1024, gie_id=1024, operate_on_gie_id=0))
    assert (c["batch-size"], c["gie-unique-id"], c["operate-on-gie-id"]) == ("1024", "1024", "0")
    for bad in ({"batch_size": 1025}, {"gie_id": 1025}, {"operate_on_gie_id": -1}):
        with pytest.raises(ConfigError, match="expected an integer from"):
            config_text(_info(), "m.onnx", "m_labels.txt", **bad)


def test_a_source_name_with_a_carriage_return_stays_one_comment_line() -> None:
    # kills: _comment leaving a "\r" as it is (GKeyFile would read a line that is no key)
    text = config_text(_info(), "m.onnx", "m_labels.txt", source="a\rb.onnx")
    assert "\r" not in text and "from a\\rb.onnx" in text


@pytest.mark.parametrize("name", [".", ".."])
def test_a_name_of_dots_only_is_refused(name: str) -> None:
    # kills: ".." accepted as a name (config_infer_...txt beside "...onnx")
    with pytest.raises(ConfigError, match="expected letters, digits"):
        check_name(name)


def test_square_rect_moves_a_box_inside_the_frames_own_width() -> None:
    # kills: x bounded by the frame's height instead of its width (a wide frame)
    x, y, side, _ = square_rect(90.0, 10.0, 20.0, 10.0, frame_width=100.0, frame_height=40.0)
    assert side == 20.0 and x == 100.0 - side and y == 15.0 - side / 2


def test_a_workspace_of_zero_mib_is_refused_as_such(tmp_path: Path) -> None:
    # kills: workspace_mb=0 let through to the engine build (refused here only as "given with engine=False")
    with pytest.raises(ConfigError, match="workspace_mb=0; expected a whole number"):
        write_deepstream(tmp_path / "ds", tmp_path / "none.onnx", workspace_mb=0)
    assert not (tmp_path / "ds").exists()


@pytest.mark.needs("onnx")
def test_a_changed_model_removes_a_symlinked_engine_and_keeps_files_of_other_patterns(tmp_path: Path) -> None:
    # kills: a symbolic link to a folder kept as if it were a folder; the _b*_*.engine pattern widened
    src = make_flat_onnx(tmp_path / "src.onnx")
    out = tmp_path / "ds"
    write_deepstream(out, src)
    (out / "fsrfer.onnx").write_bytes(b"an earlier model")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = out / engine_name("fsrfer.onnx", 64)
    link.symlink_to(elsewhere, target_is_directory=True)
    other = out / "fsrfer.onnx_b64.engine"  # not a name nvinfer saves an engine under
    other.write_bytes(b"someone's file")
    write_deepstream(out, src)
    assert not link.is_symlink() and elsewhere.is_dir()
    assert other.read_bytes() == b"someone's file"


@pytest.mark.needs("onnx")
def test_the_deepstream_copy_drops_the_fsrfer_metadata_so_the_sdk_cannot_load_it(tmp_path: Path) -> None:
    # kills: the fsrfer metadata key kept beside fsrfer.deepstream (Recognizer would run a graph of probabilities)
    import onnx

    from fsrfer_edge.export.deepstream import DEEPSTREAM_KEY, with_probabilities
    from fsrfer_edge.metadata import METADATA_KEY

    model = onnx.load(str(make_flat_onnx(tmp_path / "src.onnx")))
    keys = [p.key for p in with_probabilities(model, ModelInfo()).metadata_props]
    assert DEEPSTREAM_KEY in keys and METADATA_KEY not in keys


@pytest.mark.needs("onnx")
def test_a_folder_named_as_the_int8_calibration_note_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    # kills: the calibration note left out of the files checked for folders (NAME.onnx and labels written, then a
    # failure)
    src = make_flat_onnx(tmp_path / "src.onnx", ModelInfo(precision="int8", int8_scheme="s8s8"))
    out = tmp_path / "ds"
    (out / "fsrfer_int8_calib.txt").mkdir(parents=True)
    with pytest.raises(InputError, match="holds the folder.s. fsrfer_int8_calib.txt"):
        write_deepstream(out, src)
    assert sorted(p.name for p in out.iterdir()) == ["fsrfer_int8_calib.txt"]
