"""Tests that kill hand-made mutants (round 70, task K70j) of the model-conversion and check scripts, second pass:
scripts/hr_recipes.py (the rule's --min-gain used and recorded, the reference left out of the comparison, one seed's
spread left empty, the recorded command, every log of a resumed run read, a bad seed or evaluation file refused with
a message, the evaluation's two decimals, the best and last epochs read by epoch number), scripts/arm64_cpu.py (an
--out folder refused before measuring, the /proc/cpuinfo processors numbered from 0, the emulator not started when
the bind mount fails, each Arm run compared with the x86 run of its own file, every factor's logits and disagreement
read, the INT8 drop's line, the run table), scripts/convert_blazeface.py (the numpy reference run op by op with old
files' op codes and typed constants, its depthwise convolution, a CONV_2D without bias, ADD's fused activation,
CONCATENATION's axis, the anchor axis of RESHAPE; edit_graph's output-count check and the converter's batch-1 inner
shapes dropped; main's metadata per variant and its check before the file is written), scripts/verify_yunet.py (a
file ONNX Runtime cannot load), scripts/camera_gap.py (factors and qualities refused below 1, the split, model and
percentages recorded) and scripts/onnx_val.sh (a failing export stops the script, the evaluated file is the exported
one in a temporary folder that is removed, two threads, a run folder holding '='). Tiny synthetic arrays, graphs,
logs and result files, a fake .tflite, fake commands and temporary folders only."""
from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from _faces import blob_face
from _scripts import load_script
from test_mutants68j import Tree, _opt

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# scripts/hr_recipes.py
# ---------------------------------------------------------------------------------------------
def _hr() -> ModuleType:
    return load_script("scripts/hr_recipes.py", "hr_recipes_70j")


def _eval(path: Path, acc: float) -> Path:
    path.write_text(json.dumps({"split": "val", "factors": {"1": {"accuracy": acc}}}))
    return path


def _log(path: Path, vals: list[float]) -> Path:
    path.write_text("".join(
        f"12:00:00 INFO trainer.runner: stage1 epoch {i}/{len(vals)}: {{'loss': 0.9, 'epoch': {i}, "
        f"'val_score': {v}, 'seconds': 10.0}}\n" for i, v in enumerate(vals, 1)))
    return path


def test_hr_recipes_applies_and_records_the_min_gain_asked_and_leaves_the_reference_out(tmp_path: Path) -> None:
    # kills: summarise called with the default 0.3 instead of --min-gain; the rule's min_gain not recorded;
    # the reference compared with itself; a one-seed recipe given a spread (NaN) instead of None;
    # the recorded command taken from sys.argv when main is given its arguments
    out = tmp_path / "r.json"
    args = ["--json", str(out), "--reference", "base", "--min-gain", "1.0",
            "--eval", f"base:0={_eval(tmp_path / 'b0.json', 0.80)}", "--eval", f"base:1={_eval(tmp_path / 'b1.json', 0.82)}",
            "--eval", f"wide:0={_eval(tmp_path / 'w0.json', 0.816)}"]
    assert _hr().main(args) == 0
    doc = json.loads(out.read_text())
    rec = doc["recipes"]
    assert rec["wide"]["against_reference"] == {"gain": 0.6, "every_seed_above_reference_mean": True, "candidate": False}
    assert doc["rule"] == {"reference": "base", "min_gain": 1.0}
    assert "against_reference" not in rec["base"]
    assert rec["wide"]["std"] is None and rec["base"]["std"] == 1.41
    assert doc["command"] == shlex.join(["python", "scripts/hr_recipes.py", *args])
    # the file writes a NaN as null: the spread itself must be None, not NaN (it is printed too)
    one = _hr().summarise({("a", 0): {"val": 80.0}, ("b", 0): {"val": 81.0}, ("b", 1): {"val": 83.0}}, "b", 0.3)
    assert one["a"]["std"] is None and one["b"]["std"] == 1.41


def test_hr_recipes_main_joins_every_log_of_a_resumed_run(tmp_path: Path) -> None:
    # kills: only the last of a run's comma-separated logs read (the resumed run then looks unfinished)
    first = tmp_path / "a.log"
    first.write_text("".join(f"12:00:00 INFO trainer.runner: stage1 epoch {i}/3: {{'loss': 0.9, 'epoch': {i}, "
                             f"'val_score': {v}, 'seconds': 10.0}}\n" for i, v in ((1, 0.5), (2, 0.9))))
    second = tmp_path / "b.log"
    second.write_text("12:00:00 INFO trainer.runner: stage1 epoch 3/3: {'loss': 0.9, 'epoch': 3, 'val_score': 0.7, "
                      "'seconds': 10.0}\n")
    out = tmp_path / "r.json"
    assert _hr().main(["--json", str(out), "--reference", "base", "--log", f"base:0={first},{second}"]) == 0
    run = json.loads(out.read_text())["runs"]["base:0"]
    assert run["log"]["epochs"] == 3 and run["log"]["best_epoch"] == 2 and run["val"] == 90.0


def test_hr_recipes_keeps_two_decimals_of_an_evaluation(tmp_path: Path) -> None:
    # kills: the evaluation's accuracy rounded to one decimal
    assert _hr().eval_accuracy(_eval(tmp_path / "e.json", 0.8846)) == 88.46


def test_hr_recipes_refuses_a_seed_that_is_not_a_number_and_an_evaluation_that_is_not_json(tmp_path: Path) -> None:
    # kills: the seed's isdigit check dropped (a ValueError traceback); ValueError (bad JSON) not caught
    hr = _hr()
    with pytest.raises(SystemExit, match="expected RECIPE:SEED=PATH"):
        hr.main(["--json", str(tmp_path / "o.json"), "--reference", "b", "--log", f"b:x={tmp_path / 'a.log'}"])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match="expected an fsrfer-eval --json file"):
        hr.eval_accuracy(bad)
    assert not (tmp_path / "o.json").exists()


def test_hr_epoch_summary_reads_epochs_by_number_not_by_order_or_count() -> None:
    # kills: the last ten taken in the dict's order, not the epochs' order; the last epoch taken as epochs[len]
    hr = _hr()
    epochs = {e: (float(e), 1.0) for e in range(12, 0, -1)}  # given newest first
    got = hr.epoch_summary(epochs, 12)
    assert got["last_10_val"] == [3.0, 12.0] and got["last_val"] == 12.0 and got["best_epoch"] == 12
    later = hr.epoch_summary({3: (70.0, 1.0), 4: (60.0, 1.0)}, 4)  # a log kept from epoch 3 on only
    assert later["last_val"] == 60.0 and later["best_epoch"] == 3 and not later["finished"]


# ---------------------------------------------------------------------------------------------
# scripts/arm64_cpu.py
# ---------------------------------------------------------------------------------------------
def _arm() -> ModuleType:
    pytest.importorskip("onnxruntime")
    return load_script("scripts/arm64_cpu.py", "arm64_cpu_70j")


def _onehot(top: np.ndarray, value: float = 1.0) -> np.ndarray:
    out = np.zeros((len(top), 3), np.float32)
    out[np.arange(len(top)), top] = value
    return out


def test_arm_script_refuses_an_output_folder_before_measuring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # kills: the --out check dropped (minutes of emulation, then nowhere to write)
    arm = _arm()
    for f in ("qemu", "data.npz", "usr/bin/python3.11"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("")
    (tmp_path / "onnxruntime").mkdir()
    measured: list[Any] = []
    monkeypatch.setattr(arm, "measure", lambda *a: measured.append(a) or 0)
    args = ["--qemu", str(tmp_path / "qemu"), "--sysroot", str(tmp_path), "--site", str(tmp_path),
            "--data", str(tmp_path / "data.npz")]
    assert arm.main([*args, "--out", str(tmp_path)]) == 2 and "is a directory" in capsys.readouterr().err
    assert measured == []
    assert arm.main([*args, "--out", str(tmp_path / "o.json")]) == 0 and len(measured) == 1


def test_arm_cpuinfo_numbers_its_processors_from_0() -> None:
    # kills: processors numbered 1..cores
    info = _arm().cpuinfo("cortex-a57", cores=3)
    assert [ln.split(":")[1].strip() for ln in info.splitlines() if ln.startswith("processor")] == ["0", "1", "2"]


def test_arm_runs_are_named_by_their_file_and_cpu_and_cover_every_emulated_cpu() -> None:
    # kills: a run measuring another file or CPU than its name says (the verdict reads runs by name)
    arm = _arm()
    for name, key, cpu in arm.RUNS:
        assert name == f"{key} {cpu or 'x86'}"
    assert {cpu for _, key, cpu in arm.RUNS if key == "int8" and cpu} == set(arm.CPUS)
    assert {key for _, key, cpu in arm.RUNS if cpu is None} == {"fp32", "int8"}


def test_arm_emulator_is_not_started_when_the_cpuinfo_bind_fails(tmp_path: Path) -> None:
    # kills: `mount ... ; exec` (the emulator run on the host's x86 /proc/cpuinfo, where ONNX Runtime crashes)
    import os

    arm = _arm()
    cmd = arm.prefix(Path("/q/qemu"), Path("/root64"), Path("/site64"), "max", tmp_path / "ci")
    assert cmd[:2] == ["unshare", "-m"]
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "mount").write_text('#!/bin/sh\nexit "$FAKE_MOUNT_RC"\n')
    (fake / "mount").chmod(0o755)
    for rc in ("1", "0"):
        marker = tmp_path / f"ran{rc}"
        env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}", "FAKE_MOUNT_RC": rc}
        # the command without `unshare -m` (no root here), the emulator replaced by touch
        r = subprocess.run(cmd[2:6] + ["touch", str(marker)], env=env, capture_output=True, timeout=30)
        assert (r.returncode == 0) == (rc == "0") and marker.exists() == (rc == "0")


def test_arm_compares_each_arm_run_with_the_x86_run_of_its_own_file() -> None:
    # kills: every Arm run compared with x86's FP32 run
    arm = _arm()
    labels = np.zeros(200, np.int64)
    fp32 = np.zeros(200, np.int64)
    int8 = fp32.copy()
    int8[:4] = 1  # x86's INT8 answers 2% of faces differently from its FP32; Arm's INT8 answers as x86's INT8
    runs = {name: {"logits": {"x1": _onehot(int8 if key == "int8" else fp32)}} for name, key, _ in arm.RUNS}
    s = arm.summarise(labels, runs, [1])
    assert s["disagreement_with_x86"] == {n: {"1": 0.0} for n in ("fp32 cortex-a57", "int8 cortex-a57",
                                                                   "int8 neoverse-n1", "int8 max")}
    assert set(s["max_logit_difference_with_x86"].values()) == {0.0}
    assert s["verdict"]["worst_disagreement_percent"] == 0.0


def test_arm_reads_every_factor_and_the_int8_drop_is_allowed_on_its_line() -> None:
    # kills: the logit difference read at the first factor only; the worst disagreement taken as a run's best
    # factor; `drop > 0.5` made >=
    arm = _arm()
    labels = np.zeros(200, np.int64)
    good = np.zeros(200, np.int64)
    runs: dict[str, Any] = {name: {"logits": {"x1": _onehot(good), "x2": _onehot(good)}} for name, _, _ in arm.RUNS}
    at_x2 = good.copy()
    at_x2[:3] = 1  # 1.5% of faces differ from x86 at x2 only: over the 1% line
    runs["int8 neoverse-n1"] = {"logits": {"x1": _onehot(good), "x2": _onehot(at_x2, 2.5)}}
    s = arm.summarise(labels, runs, [1, 2])
    assert s["disagreement_with_x86"]["int8 neoverse-n1"] == {"1": 0.0, "2": 1.5}
    assert s["max_logit_difference_with_x86"]["int8 neoverse-n1"] == 2.5
    assert s["verdict"]["worst_disagreement_percent"] == 1.5 and s["verdict"]["problem"]
    one = good.copy()
    one[0] = 1  # one face of 200 lost on Arm's INT8: 0.5 points, on the line; 0.5% disagreement
    runs = {name: {"logits": {"x1": _onehot(one if name == "int8 max" else good)}} for name, _, _ in arm.RUNS}
    s = arm.summarise(labels, runs, [1])
    assert s["verdict"] == {"worst_disagreement_percent": 0.5, "worst_int8_drop_points": 0.5, "problem": False}


# ---------------------------------------------------------------------------------------------
# scripts/convert_blazeface.py
# ---------------------------------------------------------------------------------------------
def _conv() -> ModuleType:
    return load_script("scripts/convert_blazeface.py", "convert_blazeface_70j")


def _opts(**values: Any) -> Any:
    return SimpleNamespace(**{k: (lambda v=v: v) for k, v in values.items()})


def _reference(**opts: Any) -> Any:
    conv = _conv()
    ref = object.__new__(conv.TFLiteReference)
    ref.tfl = SimpleNamespace(Padding=SimpleNamespace(SAME=0, VALID=1),
                              ActivationFunctionType=SimpleNamespace(NONE=0, RELU=1, RELU6=3),
                              Conv2DOptions=None, DepthwiseConv2DOptions=None, AddOptions=None, ConcatenationOptions=None,
                              ReshapeOptions=None)
    ref._options = lambda op, cls: _opts(**opts)
    return ref


def test_reference_depthwise_conv_matches_direct_loops_and_refuses_a_depth_multiplier() -> None:
    # kills: the bias dropped, the kernel's rows and columns swapped, the depth-multiplier check dropped
    from fsrfer_edge.errors import ModelError

    ref = _reference(StrideH=2, StrideW=1, Padding=1, FusedActivationFunction=0)  # VALID
    rng = np.random.default_rng(3)
    x, w, b = rng.normal(size=(1, 5, 4, 2)), rng.normal(size=(1, 3, 3, 2)), rng.normal(size=2)
    want = np.zeros((1, 2, 2, 2))
    for i in range(2):
        for j in range(2):
            want[0, i, j] = (x[0, 2 * i:2 * i + 3, j:j + 3] * w[0]).sum(axis=(0, 1)) + b
    np.testing.assert_allclose(ref._depthwise(None, [x, w, b]), want, atol=1e-12)
    with pytest.raises(ModelError, match="depth multiplier"):
        ref._depthwise(None, [x, np.concatenate([w, w], axis=3), np.concatenate([b, b])])


def test_reference_conv_takes_a_missing_bias_as_none() -> None:
    # kills: the `x[2] is not None` guard dropped (a CONV_2D without bias input fails)
    ref = _reference(DilationHFactor=1, DilationWFactor=1, StrideH=1, StrideW=1, Padding=1, FusedActivationFunction=0)
    x, w = np.ones((1, 2, 2, 1)), np.full((1, 1, 1, 1), 3.0)
    np.testing.assert_array_equal(ref._conv(None, [x, w, None]), np.full((1, 2, 2, 1), 3.0))


def test_reference_add_applies_its_fused_activation_and_concat_its_axis() -> None:
    # kills: ADD's fused RELU dropped; CONCATENATION on the last axis whatever the op's axis
    a, b = np.array([[[-2.0, 1.0]]]), np.array([[[0.5, 0.5]]])
    np.testing.assert_array_equal(_reference(FusedActivationFunction=1)._add(None, [a, b]), [[[0.0, 1.5]]])
    got = _reference(Axis=1, FusedActivationFunction=0)._concat(None, [np.zeros((1, 2, 16)), np.ones((1, 3, 16))])
    assert got.shape == (1, 5, 16) and got[0, 2:].min() == 1.0


def test_reference_reshape_lets_the_anchor_count_follow_the_input_size() -> None:
    # kills: the free dimension put on the values axis instead of the anchors axis
    ref = _reference()
    x = np.arange(1 * 4 * 8 * 32, dtype=np.float64).reshape(1, 4, 8, 32)  # twice the native 4x4 input
    got = ref._reshape(None, [x, np.array([1, 32, 16], np.int32)])  # the graph's shape for the native input
    assert got.shape == (1, 64, 16)
    np.testing.assert_array_equal(got.ravel(), x.ravel())


def _fake_tflite(monkeypatch: pytest.MonkeyPatch, conv: ModuleType, tmp_path: Path) -> Any:
    """A reference interpreter over a fake three-op .tflite: t3 = RELU(t0 input), t4 = PAD(t3, t5 int32),
    t2 = DEQUANTIZE(t1 float16); outputs t4 and t2. Each op code is held where an old file holds it: in
    DeprecatedBuiltinCode, with BuiltinCode 0 (ADD)."""
    def arr(a: np.ndarray) -> Any:
        return SimpleNamespace(DataAsNumpy=lambda: np.frombuffer(a.tobytes(), np.uint8))

    pads = np.array([[0, 0], [1, 0], [0, 2], [0, 0]], np.int32)
    half = np.array([[0.5, -1.25]], np.float16)
    # tensor: (buffer, TFLite type, shape); buffers: 0 empty (activations), 1 the fp16 weights, 2 the paddings
    tensors = {0: (0, 0, [1, 2, 2, 1]), 1: (1, 1, [1, 2]), 2: (0, 0, [1, 2]), 3: (0, 0, [1, 2, 2, 1]),
               4: (0, 0, [1, 3, 4, 1]), 5: (2, 2, [4, 2]), 6: (3, 0, [4])}  # 6: an empty buffer
    buffers = {0: SimpleNamespace(DataAsNumpy=lambda: 0), 1: arr(half), 2: arr(pads), 3: arr(np.zeros(0, np.float32))}
    codes = {"DEQUANTIZE": 6, "RELU": 19, "PAD": 34}
    ops = [("RELU", [0], 3), ("PAD", [3, 5], 4), ("DEQUANTIZE", [1], 2)]
    graph = SimpleNamespace(
        Inputs=lambda k: 0, Outputs=lambda k: [4, 2][k], OutputsLength=lambda: 2, OperatorsLength=lambda: len(ops),
        Operators=lambda i: SimpleNamespace(OpcodeIndex=lambda: i, InputsAsNumpy=lambda: np.array(ops[i][1]),
                                            Outputs=lambda k: ops[i][2]),
        Tensors=lambda i: SimpleNamespace(Buffer=lambda: tensors[i][0], Type=lambda: tensors[i][1], Name=lambda: f"t{i}",
                                          ShapeAsNumpy=lambda: np.array(tensors[i][2])))
    model = SimpleNamespace(Subgraphs=lambda k: graph, SubgraphsLength=lambda: 1, Buffers=lambda b: buffers[b],
                            OperatorCodes=lambda i: SimpleNamespace(BuiltinCode=lambda: 0,
                                                                    DeprecatedBuiltinCode=lambda: codes[ops[i][0]]))
    tfl = SimpleNamespace(Model=SimpleNamespace(GetRootAsModel=lambda buf, off: model),
                          BuiltinOperator=type("BuiltinOperator", (), {"ADD": 0, **codes}))
    monkeypatch.setattr(conv, "require", lambda *a: tfl)
    path = tmp_path / "fake.tflite"
    path.write_bytes(b"x")
    return conv.TFLiteReference(path)


def test_reference_runs_a_graph_op_by_op_reading_old_op_codes_and_typed_constants(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # kills: the op code read from BuiltinCode only (old files keep it in DeprecatedBuiltinCode); a constant's
    # TFLite type read as another numpy dtype (INT32 as int64, FLOAT16 as float32); DEQUANTIZE not to float64;
    # an empty buffer read as a constant
    ref = _fake_tflite(monkeypatch, _conv(), tmp_path)
    image = np.array([-1.0, 2.0, 0.5, -0.5]).reshape(1, 2, 2, 1)
    padded, weights = ref.run(image)
    want = np.zeros((1, 3, 4, 1))
    want[0, 1:, :2, 0] = [[0.0, 2.0], [0.5, 0.0]]
    np.testing.assert_array_equal(padded, want)
    np.testing.assert_array_equal(weights, [[0.5, -1.25]])
    assert weights.dtype == np.float64
    assert ref._constant(0) is None and ref._constant(6) is None  # no buffer, an empty one: not a constant


@pytest.mark.needs("onnx")
def test_edit_graph_drops_the_converters_batch_1_shapes_of_inner_tensors() -> None:
    # kills: the converter's value_info kept (its batch-1 shapes then fix the outputs' inferred shapes)
    from onnx import TensorProto, helper

    from test_mutants68h import _converted_like

    m = _converted_like()
    m.graph.value_info.append(helper.make_tensor_value_info("up", TensorProto.FLOAT, [1, 3, 8, 12]))
    g = _conv().edit_graph(m).graph
    assert all(v.type.tensor_type.shape.dim[0].dim_value != 1 for v in g.value_info)
    assert [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in g.output] == \
        [["N", "anchors", 16], ["N", "anchors", 1]]


@pytest.mark.needs("onnx")
def test_edit_graph_refuses_a_graph_without_two_outputs() -> None:
    # kills: the output-count check dropped (the outputs would be renamed by position, one left over)
    from onnx import TensorProto, helper

    from fsrfer_edge.errors import ModelError

    outs = ["a", "b", "c"]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], [o]) for o in outs], "three",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, 3, 4, 4]) for o in outs])
    with pytest.raises(ModelError, match="expected 1 and 2"):
        _conv().edit_graph(helper.make_model(graph))


@pytest.mark.needs("onnx")
def test_convert_main_records_the_asked_variant_and_checks_before_writing(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the default variant's layout recorded for --variant; the file written before the check passes;
    # the source's sha256 left out; the check run at another input size or tolerance
    import onnx
    from onnx import TensorProto, helper

    from fsrfer_edge.errors import ModelError

    conv = _conv()
    src = tmp_path / "face_detection_full_range.tflite"
    src.write_bytes(b"tflite bytes")
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["out"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3])])
    checks: list[tuple[int, float]] = []
    decoded: list[tuple[Path, str]] = []
    monkeypatch.setattr(conv, "source_tflite", lambda variant: (src, "0.6.0"))
    monkeypatch.setattr(conv, "convert", lambda path: helper.make_model(graph))
    monkeypatch.setattr(conv, "edit_graph", lambda model: model)
    monkeypatch.setattr(conv.importlib.metadata, "version", lambda name: "9.9")
    monkeypatch.setattr(conv, "check", lambda data, path, size, atol: checks.append((size, atol)) or {})
    monkeypatch.setattr(conv, "check_decoding", lambda path, variant: decoded.append((path, variant)) or {})
    out = tmp_path / "bf.onnx"
    assert conv.main(["--variant", "full_range", "--out", str(out), "--atol", "0.01"]) == 0
    meta = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["fsrfer_detector"])
    v = conv.VARIANTS["full_range"]
    assert (meta["variant"], meta["input_size"], meta["strides"], meta["anchors_per_cell"], meta["face_px"]) == \
        ("full_range", v["input_size"], v["strides"], v["anchors_per_cell"], v["face_px"])
    assert meta["source"]["sha256"] == hashlib.sha256(b"tflite bytes").hexdigest()
    assert checks == [(v["input_size"], 0.01)] and decoded == [(out, "full_range")]

    def failing(data: bytes, path: Path, size: int, atol: float) -> dict[str, Any]:
        raise ModelError("differs")

    monkeypatch.setattr(conv, "check", failing)
    other = tmp_path / "bad.onnx"
    assert conv.main(["--variant", "back", "--out", str(other)]) == 2
    assert not other.exists() and len(decoded) == 1


# ---------------------------------------------------------------------------------------------
# scripts/verify_yunet.py
# ---------------------------------------------------------------------------------------------
@pytest.mark.needs("onnxruntime")
def test_verify_yunet_reports_a_file_onnx_runtime_cannot_load(tmp_path: Path) -> None:
    # kills: the load error swallowed (only the sha256 problem reported)
    mod = load_script("scripts/verify_yunet.py", "verify_yunet_70j")
    bad = tmp_path / "yunet_n_dynamic.onnx"
    bad.write_bytes(b"not a model")
    problems = mod.check(bad)
    assert len(problems) == 2 and "sha256" in problems[0] and "could not be loaded" in problems[1]


# ---------------------------------------------------------------------------------------------
# scripts/camera_gap.py
# ---------------------------------------------------------------------------------------------
def _camera_gap() -> ModuleType:
    return load_script("scripts/camera_gap.py", "camera_gap_70j")


@pytest.mark.parametrize("args", [["--factors", "0"], ["--qualities", "0"], ["--factors", "2,x"]])
def test_camera_gap_refuses_a_factor_or_quality_below_1_and_non_integers(tmp_path: Path, args: list[str]) -> None:
    # kills: factor 0 allowed; quality 0 allowed; (the non-integer message)
    with pytest.raises(SystemExit, match="expected"):
        _camera_gap().main([*args, "--data", str(tmp_path / "none.npz"), "--json", str(tmp_path / "g.json")])
    assert not (tmp_path / "g.json").exists()


@pytest.mark.needs("onnxruntime")
def test_camera_gap_records_the_split_asked_the_models_sha256_and_percentages(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the split recorded as val whatever was asked; the model's sha256 left out; fractions written as %
    from fsrfer_edge.fileio import sha256_file

    data = tmp_path / "faces.npz"
    np.savez(data, images=np.stack([blob_face(48, s) for s in range(5)]), labels=np.arange(5) % 7,
             split=np.array(["val"] * 3 + ["test"] * 2))
    import trainer.evaluate as ev

    real = ev.evaluate_fn
    accs: list[float] = []

    def evaluate_fn(*a: Any, **k: Any) -> dict[str, Any]:  # the real evaluation, its accuracy set per row
        res = real(*a, **k)
        accs.append(0.375 + 0.125 * len(accs))
        return {**res, "factors": {"2": {**res["factors"]["2"], "accuracy": accs[-1]}}}

    monkeypatch.setattr(ev, "evaluate_fn", evaluate_fn)
    out = tmp_path / "g.json"
    model = REPO / "fsrfer_edge" / "models" / "default.onnx"
    assert _camera_gap().main(["--data", str(data), "--split", "test", "--factors", "2", "--qualities", "50",
                               "--model", str(model), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["split"] == "test" and doc["n"] == 2
    assert doc["model"] == {"path": "fsrfer_edge/models/default.onnx", "sha256": sha256_file(model)}
    assert [r["accuracy"]["2"] for r in doc["rows"]] == [37.5, 50.0, 62.5]


# ---------------------------------------------------------------------------------------------
# scripts/onnx_val.sh, its commands faked
# ---------------------------------------------------------------------------------------------
@pytest.fixture()
def onnx_val_tree(tmp_path: Path) -> Tree:
    t = Tree(tmp_path, ("onnx_val.sh",), (), ("fsrfer-export", "fsrfer-eval"))
    for run in ("a", "b"):
        (tmp_path / run / "models").mkdir(parents=True)
        (tmp_path / run / "models" / "fsrfer.pt").write_text("m")
    return t


def test_onnx_val_evaluates_the_exported_file_in_a_temporary_folder_it_removes(onnx_val_tree: Tree) -> None:
    # kills: the export written elsewhere than the folder evaluated; the temporary folder left behind; threads
    t = onnx_val_tree
    r = t.run("onnx_val.sh", f"x={t.tmp}/a", f"y={t.tmp}/b", env={"FSRFER_DATA": "d"})
    assert r.returncode == 0, r.stderr
    exports, evals = t.calls("fsrfer-export"), t.calls("fsrfer-eval")
    dirs = {_opt(c, "--out-dir") for c in exports}
    assert len(dirs) == 1
    tmp = dirs.pop()
    assert [_opt(c, "--checkpoint") for c in evals] == [f"{tmp}/x.fp32.onnx", f"{tmp}/y.fp32.onnx"]
    assert not Path(tmp).exists() and not (t.root / "results" / "ferplus" / "onnx_val" / "x.fp32.onnx").exists()
    assert {_opt(c, "--threads") for c in evals} == {"2"}
    assert (t.root / "results" / "ferplus" / "onnx_val" / "y.json").is_file()


def test_onnx_val_labels_a_run_whose_folder_holds_an_equals_sign_by_the_text_before_the_first(
        onnx_val_tree: Tree) -> None:
    # kills: the label cut at the last '=' in the export loop (the check loop cut at the first)
    t = onnx_val_tree
    run = t.tmp / "r=1"
    (run / "models").mkdir(parents=True)
    (run / "models" / "fsrfer.pt").write_text("m")
    r = t.run("onnx_val.sh", f"x={run}")
    assert r.returncode == 0, r.stderr
    assert [(c[1], _opt(c, "--name")) for c in t.calls("fsrfer-export")] == [(f"{run}/models/fsrfer.pt", "x")]
    assert [_opt(c, "--json") for c in t.calls("fsrfer-eval")] == ["results/ferplus/onnx_val/x.json"]


def test_onnx_val_stops_at_a_failing_export(onnx_val_tree: Tree) -> None:
    # kills: `set -e` dropped (the previous export's or no file evaluated after a failed export)
    t = onnx_val_tree
    r = t.run("onnx_val.sh", f"x={t.tmp}/a", f"y={t.tmp}/b", plan={"rc": {"fsrfer-export": [0, 3]}})
    assert r.returncode == 3
    assert [_opt(c, "--name") for c in t.calls("fsrfer-export")] == ["x", "y"]
    assert [Path(_opt(c, "--json")).name for c in t.calls("fsrfer-eval")] == ["x.json"]



def test_onnx_val_refuses_a_label_given_twice_before_any_export(onnx_val_tree: Tree) -> None:
    # noticed by round 70j: the second run's results overwrote the first's under the one label
    t = onnx_val_tree
    r = t.run("onnx_val.sh", f"x={t.tmp}/a", f"y={t.tmp}/b", f"x={t.tmp}/b")
    assert r.returncode == 2 and "label x given twice" in r.stderr
    assert t.calls("fsrfer-export") == [] and t.calls("fsrfer-eval") == []
    r = t.run("onnx_val.sh", f"x={t.tmp}/a", f"x.1={t.tmp}/b")  # a label that only starts like another is its own
    assert r.returncode == 0, r.stderr
