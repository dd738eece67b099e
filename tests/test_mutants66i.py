"""Tests that kill hand-made mutants the rest of the suite let through (round 66i: the ONNX Runtime backend, CPU
counting and fork safety).

Round 64 covered parts of the core runtime. This round covers fsrfer_edge/backends/onnxruntime_backend.py (the
default intra-op threads shared between sessions, the CUDA provider's place and device id, session options: one
inter-op thread, spinning off, the MAX_THREADS bound; "auto" spelled out falling back to the CPU with a warning;
absolute external data locations and sibling folders that share the model folder's name; protobuf nesting; a second
graph input and the input dtype against the metadata; ONNX Runtime's own exception classes while running),
fsrfer_edge/cpus.py (hybrid v1 + v2 quotas, a cpuset-only v1 hierarchy, escaped blanks in mountinfo, the first
cgroup2 mount, a cgroup outside the mount's view or climbing out with .., the CPU set) and fsrfer_edge/forking.py
(every renewal of an object runs in the child). No torch: the ONNX models are built with onnx.helper or as raw
protobuf bytes; no GPU: the CUDA provider is a fake onnxruntime module's name.
"""
from __future__ import annotations

import os
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge import cpus
from fsrfer_edge.backends import onnxruntime_backend as ob
from fsrfer_edge.errors import InputError, ModelError
from fsrfer_edge.metadata import ModelInfo
from _onnx_models import make_flat_onnx

_INFO = ModelInfo()


def _fake_ort(*available: str) -> Any:
    return types.SimpleNamespace(get_available_providers=lambda: list(available))


# -- default_threads: a quota's CPUs shared between sessions, at least 1 each --------------------------------------
def test_default_threads_shares_the_usable_cpus_between_sessions_at_least_one_each(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ob, "usable_cpus", lambda: 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert ob.default_threads() == 2
    assert ob.default_threads(2) == 1
    assert ob.default_threads(4) == 1  # more sessions than CPUs: still one thread each, never 0


# -- resolve_providers: CUDA first, with the device asked for ------------------------------------------------------
@pytest.mark.parametrize("choice", [None, "auto", "cuda"])
def test_the_cuda_provider_comes_first_with_the_device_asked_for(choice: Any) -> None:
    ort = _fake_ort("CUDAExecutionProvider", "CPUExecutionProvider")
    assert ob.resolve_providers(choice, device=3, ort=ort) == [
        ("CUDAExecutionProvider", {"device_id": 3}), "CPUExecutionProvider"]


# -- make_session_options: one inter-op thread, spinning off as "0", MAX_THREADS itself allowed ---------------------
class _Options:
    def __init__(self) -> None:
        self.intra_op_num_threads = 0  # ONNX Runtime's own defaults
        self.inter_op_num_threads = 0
        self.entries: dict[str, str] = {}

    def add_session_config_entry(self, key: str, value: str) -> None:
        self.entries[key] = value


_ORT_OPTS: Any = types.SimpleNamespace(SessionOptions=_Options)


def test_threads_given_set_intra_op_threads_and_one_inter_op_thread() -> None:
    opts = ob.make_session_options(3, ort=_ORT_OPTS)
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (3, 1)
    opts = ob.make_session_options(ob.MAX_THREADS, ort=_ORT_OPTS)  # the documented bound is allowed
    assert opts.intra_op_num_threads == ob.MAX_THREADS
    with pytest.raises(InputError, match="threads=1025"):
        ob.make_session_options(ob.MAX_THREADS + 1, ort=_ORT_OPTS)


def test_a_quota_sets_intra_op_threads_and_one_inter_op_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ob, "usable_cpus", lambda: 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    opts = ob.make_session_options(None, ort=_ORT_OPTS)
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (2, 1)


def test_spinning_false_turns_spinning_off_and_true_leaves_the_default() -> None:
    assert ob.make_session_options(1, ort=_ORT_OPTS, spinning=False).entries == {
        "session.intra_op.allow_spinning": "0"}
    assert ob.make_session_options(1, ort=_ORT_OPTS).entries == {}


# -- check_external_data: absolute locations, a sibling folder sharing the folder's name as a prefix ------------------
def _external_model(folder: Path, location: str) -> Path:
    """An ONNX model (one Add) whose initializer names ``location`` as its external data file (16 bytes)."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    w = TensorProto()
    w.name, w.data_type, w.data_location = "w", TensorProto.FLOAT, TensorProto.EXTERNAL
    w.dims.extend([4])
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        entry = w.external_data.add()
        entry.key, entry.value = k, v
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_an_absolute_location_is_refused_even_inside_the_models_folder(tmp_path: Path) -> None:
    folder = tmp_path / "dl"
    path = _external_model(folder, str(folder.resolve() / "weights.bin"))
    (folder / "weights.bin").write_bytes(bytes(16))
    with pytest.raises(ModelError, match="is not a path relative to the model's folder"):
        ob.check_external_data(path)
    _external_model(folder, "weights.bin")
    ob.check_external_data(path)  # the same file named relative to the folder is fine


def test_a_sibling_folder_whose_name_starts_with_the_models_folder_is_outside(tmp_path: Path) -> None:
    (tmp_path / "dl2").mkdir()
    (tmp_path / "dl2" / "secret.bin").write_bytes(bytes(16))
    path = _external_model(tmp_path / "dl", "../dl2/secret.bin")
    with pytest.raises(ModelError, match="leads outside the model's folder"):
        ob.check_external_data(path)


# -- check_providers_started: "auto" spelled out falls back with a warning, as None does ----------------------------
@pytest.mark.parametrize("choice", [None, "auto"])
def test_auto_spelled_out_falls_back_to_the_cpu_with_a_warning(choice: Any, caplog: pytest.LogCaptureFixture) -> None:
    session = types.SimpleNamespace(get_providers=lambda: ["CPUExecutionProvider"])
    asked: list[Any] = [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    ob.check_providers_started(session, asked, choice, "m.onnx")  # no BackendUnavailable
    assert any("could not start CUDAExecutionProvider" in r.getMessage() for r in caplog.records)


# -- check_session_io: a second graph input, an input dtype the metadata does not name -------------------------------
def _io(name: str, type_: str, shape: list[Any]) -> Any:
    return types.SimpleNamespace(name=name, type=type_, shape=shape)


def _session(inputs: list[Any], outputs: list[Any]) -> Any:
    return types.SimpleNamespace(get_inputs=lambda: inputs, get_outputs=lambda: outputs)


_PRE = _INFO.preprocessing
_FACES = _io(_INFO.input_name, "tensor(float)", ["batch", _PRE.channels, _PRE.input_size, _PRE.input_size])
_LOGITS = _io(_INFO.output_name, "tensor(float)", ["batch", len(_INFO.classes)])


def test_the_session_io_of_a_well_formed_graph_passes() -> None:
    assert ob.check_session_io(_session([_FACES], [_LOGITS]), _INFO, "m.onnx") is None


def test_a_graph_with_a_second_input_is_refused() -> None:
    extra = _io("scale", "tensor(float)", [1])
    with pytest.raises(ModelError, match=r"needs inputs \['scale'\] besides"):
        ob.check_session_io(_session([_FACES, extra], [_LOGITS]), _INFO, "m.onnx")


@pytest.mark.parametrize("type_", ["tensor(uint8)", "tensor(float16)"])
def test_an_input_dtype_the_metadata_does_not_name_is_refused(type_: str) -> None:
    faces = _io(_INFO.input_name, type_, list(_FACES.shape))
    with pytest.raises(ModelError, match=rf"has type {type_.replace('(', '[(]').replace(')', '[)]')}, but metadata"):
        ob.check_session_io(_session([faces], [_LOGITS]), _INFO, "m.onnx")


# -- cpus: cgroup quotas -------------------------------------------------------------------------------------------
@pytest.fixture()
def fake(fake_cgroup: Any) -> Any:
    """conftest's fake_cgroup: a fake /proc/self and cgroup root; the CPU set says 8 CPUs, the machine 64."""
    return fake_cgroup


def test_a_hybrid_host_takes_the_smaller_of_the_v1_and_v2_quotas(fake: Any) -> None:
    fake("1:cpu,cpuacct:/k\n0::/u\n", {"cpu,cpuacct/k/cpu.cfs_quota_us": "600000",
                                      "cpu,cpuacct/k/cpu.cfs_period_us": "100000", "u/cpu.max": "200000 100000"})
    assert cpus.cpu_quota() == 2.0
    assert cpus.usable_cpus() == 2


def test_a_cpuset_only_v1_hierarchy_is_not_taken_for_the_cpu_controller(fake: Any) -> None:
    """v1 with the cpuset controller in a hierarchy of its own (listed first) and cpu,cpuacct in another: the quota
    is the cpu hierarchy's, read at the cpu controller's cgroup (/k), not at the cpuset one's (/s)."""
    mountinfo = ("40 25 0:30 / @ROOT@/cpuset rw - cgroup cgroup rw,cpuset\n"
                 "41 25 0:31 / @ROOT@/mycpu rw - cgroup cgroup rw,cpu,cpuacct\n")
    files = {f"{folder}/{name}": value for folder, quota in (("mycpu/k", "300000"), ("mycpu/s", "100000"),
                                                             ("cpuset/k", "100000"), ("cpuset/s", "100000"))
             for name, value in (("cpu.cfs_quota_us", quota), ("cpu.cfs_period_us", "100000"))}
    fake("6:cpuset:/s\n5:cpu,cpuacct:/k\n", files, mountinfo)
    assert cpus.usable_cpus() == 3


def test_a_mount_point_with_a_blank_is_unescaped_from_mountinfo(fake: Any) -> None:
    fake("0::/a\n", {"my cg/a/cpu.max": "300000 100000"},
         mountinfo="30 25 0:26 / @ROOT@/my\\040cg rw - cgroup2 cgroup2 rw\n")
    assert cpus.usable_cpus() == 3


def test_the_first_cgroup2_mount_is_the_one_used(fake: Any) -> None:
    fake("0::/a\n", {"first/a/cpu.max": "200000 100000", "second/a/cpu.max": "500000 100000"},
         mountinfo="30 25 0:26 / @ROOT@/first rw - cgroup2 cgroup2 rw\n"
                   "31 25 0:27 / @ROOT@/second rw - cgroup2 cgroup2 rw\n")
    assert cpus.usable_cpus() == 2


def test_a_cgroup_outside_the_mounts_view_reads_the_mount_point(fake: Any) -> None:
    """A mount rooted at /pod1: a process in the sibling cgroup /pod12/c (outside that view, though its name starts
    with the root's) is limited by the mount point's quota, not by a folder beneath it."""
    fake("0::/pod12/c\n", {"mnt/cpu.max": "200000 100000", "mnt/2/c/cpu.max": "100000 100000"},
         mountinfo="30 25 0:26 /pod1 @ROOT@/mnt rw - cgroup2 cgroup2 rw\n")
    assert cpus.usable_cpus() == 2


def test_a_cgroup_path_climbing_out_with_dotdot_reads_only_the_mount_point(fake: Any) -> None:
    """A cgroup namespace shows a cgroup outside it as /../name: nothing outside the mount may be read for it."""
    fake("0::/../other\n", {"mnt/cpu.max": "300000 100000", "other/cpu.max": "100000 100000"},
         mountinfo="30 25 0:26 / @ROOT@/mnt rw - cgroup2 cgroup2 rw\n")
    assert cpus.usable_cpus() == 3


def test_the_cpu_set_counts_not_the_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5, 9}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(cpus, "PROC_SELF", str(tmp_path / "missing"))
    assert cpus.usable_cpus() == 3


# -- forking: every renewal registered for an object runs in the child ----------------------------------------------
class _Thing:
    pass


def test_every_renewal_registered_for_an_object_runs_in_a_forked_child(monkeypatch: pytest.MonkeyPatch) -> None:
    import weakref

    from fsrfer_edge import forking

    monkeypatch.setattr(forking, "_RENEWALS", weakref.WeakKeyDictionary())  # none of the suite's live objects
    ran: list[str] = []
    thing = _Thing()
    forking.renew_in_child(thing, lambda obj: ran.append("pool"))
    forking.renew_in_child(thing, lambda obj: ran.append("lock"))
    forking._after_fork_in_child()  # what os.register_at_fork runs in the child
    assert ran == ["pool", "lock"]



# -- the backend: ONNX Runtime's own exception classes (not RuntimeErrors) while running --------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48x48 float -> 7 logits fsrfer ONNX file (Flatten, MatMul) with a dynamic batch axis."""
    pytest.importorskip("onnxruntime")
    return make_flat_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx", _INFO)


def _faces(n: int) -> np.ndarray:
    return np.random.default_rng(n).random((n, _PRE.channels, _PRE.input_size, _PRE.input_size), dtype=np.float32)


def test_an_onnxruntime_failure_while_running_is_a_model_error(tiny: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    fail = ort.capi.onnxruntime_pybind11_state.Fail  # not a RuntimeError subclass

    class Failing:
        def run(self, *args: Any) -> Any:
            raise fail("a kernel failed")

    be = ob.OnnxRuntimeBackend(tiny, providers="cpu")
    with be:
        real, be._session = be._session, Failing()
        try:
            with pytest.raises(ModelError, match=r"failed to run the model on a valid batch.*Fail: a kernel failed"):
                be.infer(_faces(2))
        finally:
            be._session = real


# -- external_data_locations: a file nested deeper than protobuf's limit is refused as ONNX Runtime refuses it ---------
def _varint(n: int) -> bytes:
    """``n`` as a protobuf varint."""
    out = b""
    while True:
        out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return out


def _message(number: int, body: bytes) -> bytes:
    """One length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def _nested(levels: int) -> bytes:
    """A model whose graph holds a node whose attribute holds a graph ... ``levels`` times, then an external tensor."""
    body = _message(5, _message(13, _message(1, b"location") + _message(2, b"w.bin")))  # graph.initializer
    for _ in range(levels):
        body = _message(1, _message(5, _message(6, body)))  # graph.node.attribute.g
    return _message(7, body)  # model.graph


def test_a_model_nested_deeper_than_protobufs_limit_is_not_well_formed(tmp_path: Path) -> None:
    shallow, deep = tmp_path / "shallow.onnx", tmp_path / "deep.onnx"
    shallow.write_bytes(_nested(3))
    deep.write_bytes(_nested(40))  # 3 messages a level: past 100
    assert ob.external_data_locations(shallow) == ["w.bin"]
    with pytest.raises(ModelError, match="not a well-formed ONNX file .messages nested over 100 deep"):
        ob.external_data_locations(deep)
