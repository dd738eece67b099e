"""benchmarks/sessions.py: every file and configuration timed each round; the ratios and the rule's verdict."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import pytest

from tests._scripts import load_script

pytest.importorskip("onnx")
sessions = load_script("benchmarks/sessions.py", "sessions_bench")


def make_timer(int8_gain: float, sessions_gain: dict[str, list[float]]) -> Any:
    """faces/s: FP32 1000 at batch 64 for one 2-thread session; INT8 ``int8_gain`` times that; two 1-thread
    sessions ``sessions_gain[file][round]`` times their file's one-session figure."""
    calls: list[tuple[str, int, int]] = []

    def timer(model: Path, threads: int, n: int, batches: Sequence[int], warmup: int, iters: int) -> dict[int, Any]:
        kind = "int8" if "int8" in model.name else "fp32"
        rnd = len(calls) // 4                           # four timings a round
        calls.append((kind, threads, n))
        base = 1000.0 * (int8_gain if kind == "int8" else 1.0) * (sessions_gain[kind][rnd] if n == 2 else 1.0)
        return {b: {"throughput_fps": base * b / 64, "p50_ms": 1.0, "load_before": 0.1} for b in batches}

    timer.calls = calls  # type: ignore[attr-defined]
    return timer


def copy_int8(fp32: Path, dst: Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
    shutil.copyfile(fp32, dst)
    return {"made_by": "a copy (test)"}


@pytest.mark.parametrize("gains, advised", [({"fp32": [1.0, 1.1, 1.02], "int8": [1.3, 1.2, 1.25]}, True),
                                            ({"fp32": [0.9, 0.95, 1.2], "int8": [1.3, 1.2, 1.25]}, False)])
def test_ratios_and_the_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gains: dict[str, list[float]],
                             advised: bool) -> None:
    monkeypatch.setattr(sessions.edge_budget, "make_int8", copy_int8)
    data = tmp_path / "fer2013.npz"
    data.write_bytes(b"")
    out = tmp_path / "s.json"
    timer = make_timer(2.5, gains)
    assert sessions.main(["--data", str(data), "--rounds", "3", "--batch-sizes", "8,64", "--out", str(out)],
                         timer=timer) == 0
    assert len(timer.calls) == 12 and {(t, n) for _, t, n in timer.calls} == {(2, 1), (1, 2)}
    doc = json.loads(out.read_text())
    r = doc["two_sessions_1_thread_vs_one_session_2_threads"]
    assert r["fp32"]["64"]["median_of_rounds"] == sorted(gains["fp32"])[1]
    assert r["int8"]["64"]["per_round"] == [round(v, 3) for v in gains["int8"]]
    assert doc["int8_vs_fp32"]["one_session_2_threads"]["64"]["median_of_rounds"] == 2.5
    assert doc["advised"] is advised
    assert doc["median_fps"]["fp32/one_session_2_threads"]["8"] == 125.0


def test_bad_options_are_refused_before_anything_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sessions.edge_budget, "make_int8", lambda *a, **k: pytest.fail("made an INT8 file"))
    data = tmp_path / "fer2013.npz"
    data.write_bytes(b"")
    assert sessions.main(["--data", str(data), "--rounds", "0", "--out", str(tmp_path / "s.json")]) == 2
    assert "expected rounds" in capsys.readouterr().err
    assert sessions.main(["--data", str(tmp_path / "none.npz"), "--out", str(tmp_path / "s.json")]) == 2
    assert "expected fer2013.npz" in capsys.readouterr().err
    assert not (tmp_path / "s.json").exists()
