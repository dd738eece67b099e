"""scripts/arm64_cpu.py: the Arm /proc/cpuinfo it binds, the emulator's command line, and the rule's verdict."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _scripts import load_script

pytest.importorskip("onnxruntime")
arm = load_script("scripts/arm64_cpu.py", "arm64_cpu")


def test_each_cpu_gets_an_arm_cpuinfo_with_its_features() -> None:
    a57, n1 = arm.cpuinfo("cortex-a57", cores=2), arm.cpuinfo("neoverse-n1", cores=1)
    assert a57.count("processor\t: ") == 2 and "CPU part\t: 0xd07" in a57 and "asimddp" not in a57
    assert "asimddp" in n1 and "CPU part\t: 0xd0c" in n1
    assert "sve" in arm.cpuinfo("max").split() and "i8mm" in arm.cpuinfo("max").split()


def test_the_emulator_command_binds_the_cpuinfo_and_passes_the_python_path(tmp_path: Path) -> None:
    cmd = arm.prefix(Path("/q/qemu-aarch64-static"), Path("/root64"), Path("/site64"), "neoverse-n1", tmp_path / "ci")
    assert cmd[:3] == ["unshare", "-m", "sh"] and f"mount --bind {tmp_path / 'ci'} /proc/cpuinfo" in cmd[4]
    assert cmd[6:] == ["/q/qemu-aarch64-static", "-L", "/root64", "-cpu", "neoverse-n1", "-E",
                       f"PYTHONPATH=/site64:{arm.REPO}"]


def _logits(top: np.ndarray) -> np.ndarray:
    out = np.zeros((len(top), 3), np.float32)
    out[np.arange(len(top)), top] = 1.0
    return out


def test_the_verdict_reads_disagreement_with_x86_and_the_int8_drop_on_arm() -> None:
    n = 500
    labels = np.zeros(n, np.int64)
    good = np.where(np.arange(n) < 450, 0, 1)  # 90%
    runs = {name: {"logits": {"x1": _logits(good)}} for name, _, _ in arm.RUNS}
    s = arm.summarise(labels, runs, [1])
    assert s["verdict"] == {"worst_disagreement_percent": 0.0, "worst_int8_drop_points": 0.0, "problem": False}
    flipped = good.copy()
    flipped[:5] = 2  # 5 of 500 answers differ from x86: 1%, on the line; and 1.0 point below Arm's FP32
    runs["int8 max"] = {"logits": {"x1": _logits(flipped)}}
    s = arm.summarise(labels, runs, [1])
    assert s["disagreement_with_x86"]["int8 max"] == {"1": 1.0} and s["int8_drop_vs_arm_fp32"]["int8 max"] == {"1": 1.0}
    assert s["verdict"]["problem"]  # the drop is over 0.5
    assert s["accuracy"]["int8 max"] == {"1": 89.0} and s["accuracy"]["fp32 x86"] == {"1": 90.0}


def test_the_script_says_what_it_needs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    q = tmp_path / "qemu"
    q.write_text("")
    code = arm.main(["--qemu", str(q), "--sysroot", str(tmp_path), "--site", str(tmp_path),
                     "--out", str(tmp_path / "o.json")])
    assert code == 2 and "expected an aarch64 python3.11 in --sysroot" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()
