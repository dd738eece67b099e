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


@pytest.fixture(scope="module")
def tmod():
    return load_script("scripts/track_maps.py", "track_maps")


def _map_cells(tmod, cand, one=2.0):
    return {r: {row: {str(f): {"one_frame_map": one, **{str(k): {"candidate": cand(r, f, k)} for k in tmod.COUNTS}}
                      for f in tmod.FACTORS} for row in ("clean", "camera")} for r in tmod.REGIMES}


def test_the_spread_rule_bounds_the_mean_over_sizes_and_each_size(tmod):
    assert tmod.decide(_map_cells(tmod, lambda r, f, k: 2.9))["adopted"]
    assert not tmod.decide(_map_cells(tmod, lambda r, f, k: 3.1))["adopted"]                 # mean 1.1 over
    one_size = tmod.decide(_map_cells(tmod, lambda r, f, k: 4.6 if (r, f, k) == ("drift", 8, 2) else 2.0))
    assert one_size["worst_size_over_one_frame"] == pytest.approx(2.6) and not one_size["adopted"]
    assert tmod.decide(_map_cells(tmod, lambda r, f, k: 9.0 if k == 1 else 2.0))["adopted"]  # k = 1: not read


def test_track_features_are_the_trackers_mean_and_repeated_frames_have_no_spread(tmod):
    from fsrfer_edge.tracking import smooth_sequence

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=(4, 6))
    f = tmod.track_features(probs, 2.0)
    assert np.allclose(f["mean"], smooth_sequence(probs, 2.0), atol=1e-6)
    w = 0.5 ** (np.arange(3, -1, -1) / 2.0)
    assert f["n_eff"][0] == pytest.approx(w.sum() ** 2 / (w ** 2).sum())
    assert (f["sigma"] > 0).all() and (f["g"] > 0).all()
    still = tmod.track_features(np.repeat(probs[:1], 4, axis=0), 2.0)
    assert np.allclose(still["sigma"], 0.0, atol=1e-6) and np.allclose(still["g"], 0.0, atol=1e-6)
    assert np.allclose(still["mean"], probs[0])


def test_the_regimes_frames(tmod):
    rng = np.random.default_rng(0)
    assert (tmod.sequences("still", 5, rng) == 0).all()
    assert (tmod.sequences("moving", 5, rng) == np.arange(tmod.FRAMES)[:, None]).all()
    half = tmod.sequences("half_still", 2000, rng)
    steps = half[1:] == half[:-1]
    assert (half[0] == 0).all() and 0.45 < steps.mean() < 0.55
    assert ((half[1:] == half[:-1]) | (half[1:] == np.arange(1, tmod.FRAMES)[:, None])).all()


def test_the_spread_fit_recovers_its_terms(tmod):
    rng = np.random.default_rng(2)
    n = 20000
    offset, z, g = rng.normal(size=n), rng.normal(size=n), rng.uniform(0, 1, n)
    p = 1 / (1 + np.exp(-(offset + 1.5 * g - 0.7 * g * z)))
    right = (rng.random(n) < p).astype(float)
    assert np.allclose(tmod.fit_cd(offset, z, g, right), [1.5, -0.7], atol=0.2)
