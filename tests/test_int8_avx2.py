"""scripts/int8_avx2.py: the probe tells the two int8 kernels apart, workers run natively or through an emulator
command, and the rule's verdict reads the right differences."""
from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest
from _onnx_models import make_tiny_onnx
from _scripts import load_script

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
avx2 = load_script("scripts/int8_avx2.py", "int8_avx2")


def test_the_probe_gives_the_exact_or_the_saturated_sum() -> None:
    assert avx2.PROBE_SATURATED == 32767 * 32 < avx2.PROBE_EXACT
    assert avx2.probe() in (avx2.PROBE_EXACT, avx2.PROBE_SATURATED)


def test_a_worker_runs_natively_and_through_an_emulator_command(tmp_path: Path) -> None:
    model = make_tiny_onnx(tmp_path / "tiny.onnx")
    x = np.random.default_rng(0).normal(size=(5, 1, 48, 48)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", x1=x, x4=x[::-1])
    native = avx2.run_worker(model, tmp_path / "inputs.npz", tmp_path / "a.npz", 1, None)
    # A stand-in for qemu: it drops "-cpu CPU" and runs the rest, as the emulator runs the program it is given.
    fake = tmp_path / "fake-qemu"
    fake.write_text("#!/bin/sh\nshift 2\nexec \"$@\"\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    emulated = avx2.run_worker(model, tmp_path / "inputs.npz", tmp_path / "b.npz", 1, fake)
    assert sorted(native["logits"]) == ["x1", "x4"] and native["logits"]["x1"].shape[0] == 5
    np.testing.assert_array_equal(native["logits"]["x4"], emulated["logits"]["x4"])
    np.testing.assert_array_equal(native["logits"]["x1"][::-1], native["logits"]["x4"])
    assert native["probe"] == emulated["probe"]
    broken = tmp_path / "broken-qemu"
    broken.write_text('#!/bin/sh\necho "qemu: TCG doesn\'t support requested feature" >&2\necho boom >&2\nexit 3\n')
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(avx2.FsrferError, match=r"failed \(3\): boom$"):  # the emulator's CPUID warnings left out
        avx2.run_worker(model, tmp_path / "inputs.npz", tmp_path / "c.npz", 1, broken)


def _run(correct: np.ndarray, classes: int = 3) -> dict[str, np.ndarray]:
    """Logits whose top-1 class is 0 where ``correct`` and 1 elsewhere (every label is 0)."""
    logits = np.zeros((len(correct), classes), np.float32)
    logits[np.arange(len(correct)), np.where(correct, 0, 1)] = 1.0
    return logits


def test_the_verdict_reads_losses_against_fp32_and_against_the_native_run() -> None:
    n, factors = 1000, [1, 8]
    labels = np.zeros(n, np.int64)
    right = np.arange(n) < 900  # 90.0%
    fp32 = {"logits": {"x1": _run(right), "x8": _run(right)}}
    native = {"logits": {"x1": _run(right), "x8": _run(np.arange(n) < 896)}}  # 0.4 below FP32 at x8
    emulated = {"logits": {"x1": _run(np.arange(n) < 897), "x8": _run(np.arange(n) < 896)}}  # 0.3 below native at x1
    summary = avx2.summarise(labels, {"fp32": fp32, "int8 native": native, "int8 emulated": emulated}, factors)
    assert summary["accuracy"]["int8 emulated"] == {"1": 89.7, "8": 89.6}
    assert summary["drops"]["int8 emulated"] == {"vs_fp32": {"1": 0.3, "8": 0.4}, "vs_native": {"1": 0.3, "8": 0.0}}
    assert summary["agreement"]["int8 emulated"] == {"1": 99.7, "8": 100.0}
    assert avx2.verdict(summary, "int8 emulated") == {"worst_drop_vs_fp32": 0.4, "worst_drop_vs_native": 0.3,
                                                      "problem": False}  # both at or under their lines
    emulated["logits"]["x1"] = _run(np.arange(n) < 896)
    summary = avx2.summarise(labels, {"fp32": fp32, "int8 native": native, "int8 emulated": emulated}, factors)
    assert avx2.verdict(summary, "int8 emulated")["problem"]  # 0.4 below the native run: over 0.3
    emulated["logits"]["x1"] = _run(right)
    emulated["logits"]["x8"] = _run(np.arange(n) < 894)
    native["logits"]["x8"] = _run(np.arange(n) < 894)
    summary = avx2.summarise(labels, {"fp32": fp32, "int8 native": native, "int8 emulated": emulated}, factors)
    assert avx2.verdict(summary, "int8 emulated") == {"worst_drop_vs_fp32": 0.6, "worst_drop_vs_native": 0.0,
                                                      "problem": True}  # over the INT8 line


def test_the_script_says_what_it_needs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert avx2.main(["--qemu", str(tmp_path / "no-qemu"), "--out", str(tmp_path / "o.json")]) == 2
    assert "expected the qemu-x86_64-static binary" in capsys.readouterr().err
    qemu = tmp_path / "qemu"
    qemu.write_text("")
    assert avx2.main(["--qemu", str(qemu), "--data", str(tmp_path / "none.npz"), "--out", str(tmp_path / "o.json")]) == 2
    assert "expected the FER2013 archive" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()
