"""scripts/score_reliability.py's measures."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mod():
    spec = importlib.util.spec_from_file_location("score_reliability", REPO / "scripts" / "score_reliability.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def test_calibration_error_is_zero_when_scores_match_accuracy_and_grows_with_the_gap(mod):
    score = np.repeat([0.55, 0.85], 20)
    right = np.concatenate([np.arange(20) < 11, np.arange(20) < 17]).astype(float)  # 55% and 85% right
    assert mod.expected_calibration_error(score, right) == pytest.approx(0.0, abs=1e-9)
    assert mod.expected_calibration_error(score, np.ones(40)) == pytest.approx(100 * (0.45 + 0.15) / 2)


def test_reliability_bins_cover_every_score_once(mod):
    score = np.array([0.0, 0.29, 0.3, 0.5, 0.69, 0.7, 0.9, 1.0])
    right = np.array([0, 1, 1, 0, 1, 1, 1, 1], float)
    rows = mod.reliability(score, right)
    assert [r["n"] for r in rows] == [2, 1, 2, 1, 2]
    assert rows[0]["accuracy"] == 50.0 and rows[-1]["mean_score"] == 95.0
    assert mod.reliability(np.array([0.95]), np.ones(1))[0] == {"bin": [0.0, 0.3], "n": 0, "mean_score": None,
                                                               "accuracy": None}


def test_summary_reads_the_label_and_the_annotators_share(mod):
    probs = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1]])
    votes = np.array([[0.8, 0.2, 0.0], [0.5, 0.4, 0.1]])
    s = mod.summary(probs, np.array([0, 0]), votes)
    assert s["accuracy"] == 50.0 and s["mean_score"] == 65.0
    assert s["vote_share_of_label"] == 60.0                     # 0.8 for label 0, 0.4 for label 1
    assert s["mean_abs_score_minus_vote_share"] == 15.0         # |0.7-0.8| and |0.6-0.4|
