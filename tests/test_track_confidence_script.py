"""scripts/track_confidence.py's cells and rule."""
from __future__ import annotations

import numpy as np
import pytest

from _scripts import load_script


@pytest.fixture(scope="module")
def mod():
    return load_script("scripts/track_confidence.py", "track_confidence")


def _cells(mod, clean_map, one=2.0, score=5.0, cam_map=3.0, cam_score=4.0):
    def row(m, s):
        return {str(f): {"one_frame_map": one, **{str(k): {"map": m(f, k), "score": s} for k in mod.COUNTS}}
                for f in mod.FACTORS}
    return {"clean": row(clean_map, score), "camera": row(lambda f, k: cam_map, cam_score)}


def test_the_rule_holds_the_map_within_one_frame_plus_slack_at_every_size_and_count(mod):
    assert mod.decide(_cells(mod, lambda f, k: 2.9))["adopted"]
    off = mod.decide(_cells(mod, lambda f, k: 3.1 if (f, k) == (8, 4) else 2.0))  # one cell over 2.0 + 1.0
    assert not off["clean_within_one_frame_plus_slack"] and not off["adopted"]
    assert mod.decide(_cells(mod, lambda f, k: 9.0 if k == 1 else 2.0))["adopted"]   # k = 1 is one frame: not read
    assert not mod.decide(_cells(mod, lambda f, k: 2.5, score=2.4))["adopted"]       # worse than the score
    assert not mod.decide(_cells(mod, lambda f, k: 2.5, cam_map=4.0))["adopted"]     # camera: not under the score


def test_a_cell_reads_the_track_mean_after_each_count(mod):
    from fsrfer_edge.confidence import ScoreCalibration

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 400)
    logits = rng.normal(size=(8, 400, 7))
    logits[:, np.arange(400), labels] += 1.5
    same = ScoreCalibration(tuple("abcdefg"), "logistic", (1.0,), ((1.0, 0.0),))   # the identity: map = score
    c = mod.cell(logits, labels, same, 2.0, 2.0)
    assert set(c) == {"one_frame_map", "1", "2", "4", "8"}
    for k in ("1", "2", "4", "8"):
        assert c[k]["map"] == pytest.approx(c[k]["score"], abs=0.02)
    assert c["8"]["accuracy"] > c["1"]["accuracy"]        # averaging frames of independent noise helps
