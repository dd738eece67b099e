"""scripts/route_hr_seeds.py: the second rule of the bn_route config, applied to paired seed reports."""
from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from _scripts import load_script


def _script() -> ModuleType:
    return load_script("scripts/route_hr_seeds.py", "route_hr_seeds_script")


@pytest.mark.parametrize("diffs, verdict", [
    ([0.6, 0.5, 0.7, 0.4], "candidate default"),
    ([0.6, 0.1, 0.2, 0.3], "ahead in every seed, within noise"),
    ([1.9, -0.1, 0.6, 0.5], "not ahead in every seed"),
])
def test_rule_verdicts(diffs: list[float], verdict: str) -> None:
    s = _script().summarize([{"seed": i, "difference": d} for i, d in enumerate(diffs)], 0.5)
    assert s["verdict"].startswith(verdict)
    assert s["mean_difference"] == pytest.approx(sum(diffs) / len(diffs), abs=1e-3)


def test_reads_the_pairs_and_refuses_a_missing_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _script()
    monkeypatch.setattr(mod, "RESULTS", tmp_path)
    monkeypatch.setattr(mod, "REPO", tmp_path)
    for name, v in {"route_hr_train_val": 66.5, "route_hr_bn_val": 66.0,
                    "route_hr_train_seed1_val": 66.2, "route_hr_bn_seed1_val": 66.3}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({"checks": {"mean_x2_x8": {"routed": v}}}))
    out = tmp_path / "out.json"
    assert mod.main(["--seeds", "0", "1", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [r["difference"] for r in doc["per_seed"]] == [0.5, -0.1]
    assert doc["summary"]["verdict"].startswith("not ahead")
    assert mod.main(["--seeds", "0", "2", "--out", str(tmp_path / "o2.json")]) == 2
    assert not (tmp_path / "o2.json").exists()
