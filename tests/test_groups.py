"""Group estimates corrected for the model's confusions (fsrfer_edge.groups) and the study script's parts."""
from __future__ import annotations

import dataclasses
import importlib.util
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.errors import InputError, ModelError
from fsrfer_edge.groups import GroupCalibration, project_simplex, simplex_least_squares

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("a", "b", "c")


def _script():
    spec = importlib.util.spec_from_file_location("group_estimates", REPO / "scripts" / "group_estimates.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_project_simplex_lands_on_the_simplex_and_is_the_nearest_point():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(200, 4)) * 2
    q = project_simplex(v)
    assert np.allclose(q.sum(1), 1) and q.min() >= 0
    # nearest: no point of a fine grid of the simplex is closer
    grid = np.array([c for c in itertools.product(np.linspace(0, 1, 11), repeat=4) if abs(sum(c) - 1) < 1e-9])
    for row, proj in zip(v[:20], q[:20]):
        assert np.sum((row - proj) ** 2) <= np.min(np.sum((grid - row) ** 2, axis=1)) + 1e-12
    on = rng.dirichlet(np.ones(4), size=5)
    assert np.allclose(project_simplex(on), on)  # points already on it stay


def test_simplex_least_squares_meets_the_optimality_conditions():
    rng = np.random.default_rng(1)
    m = rng.dirichlet(np.ones(5), size=(30, 5)).transpose(0, 2, 1)
    b = rng.dirichlet(np.ones(5), size=30) * 1.3 - 0.1     # often off the reachable set: active bounds
    q = simplex_least_squares(m, b)
    grad = np.einsum("nki,nk->ni", m, np.einsum("nkc,nc->nk", m, q) - b)
    assert np.allclose(q.sum(1), 1) and q.min() >= 0
    some_bound = False
    for g, x in zip(grad, q):
        active = x > 1e-9
        lam = g[active].mean()
        assert np.allclose(g[active], lam, atol=1e-6)          # equal on the support
        assert np.all(g[~active] >= lam - 1e-6)                # no gain from moving mass to a zero entry
        some_bound |= bool((~active).any())
    assert some_bound


def test_simplex_least_squares_recovers_reachable_shares_exactly():
    rng = np.random.default_rng(2)
    m = 0.6 * np.eye(4) + 0.4 * rng.dirichlet(np.ones(4), size=4).T
    q = rng.dirichlet(np.ones(4))
    assert np.allclose(simplex_least_squares(m, m @ q), q, atol=1e-7)


def test_simplex_least_squares_does_not_stop_at_a_vertex_short_of_the_optimum():
    # two classes: the optimum is the clipped projection on the segment; momentum that overshoots a vertex used to
    # project back onto it twice running, which stopped the solver there ([1, 0] instead of [0.9705, 0.0295])
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = rng.dirichlet(np.ones(2), size=2).T
        b = rng.dirichlet(np.ones(2) * 0.3) * 1.2 - 0.05
        d = m[:, 0] - m[:, 1]
        x = float(np.clip(d @ (b - m[:, 1]) / (d @ d), 0, 1))
        assert simplex_least_squares(m, b) == pytest.approx([x, 1 - x], abs=1e-6), (m.tolist(), b.tolist())


def _faces_with_confusion(m: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Faces whose probabilities are exactly column j of m for class j."""
    y = np.repeat(np.arange(m.shape[1]), per_class)
    return m[:, y].T.copy(), y


def _noise_free_group(mats: dict[float, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """30 faces (20, 6 and 4 of the three classes), each class half at factor 1 and half at 4, whose probabilities
    are exactly their class's column of that factor's matrix: (probs, factors, labels)."""
    y = np.repeat(np.arange(3), [20, 6, 4])
    f = np.tile([1.0, 4.0], 15)
    return np.stack([mats[fi][:, yi] for fi, yi in zip(f, y)]), f, y


def _calibration() -> tuple[GroupCalibration, dict[float, np.ndarray]]:
    mats = {1.0: np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]),
            4.0: np.array([[0.6, 0.3, 0.3], [0.2, 0.5, 0.2], [0.2, 0.2, 0.5]])}
    probs, labels = {}, {}
    for f, m in mats.items():
        probs[f], labels[f] = _faces_with_confusion(m, 10)
    return GroupCalibration.fit(probs, labels, CLASSES), mats


def test_fit_measures_the_confusions_and_interpolates_between_sizes():
    cal, mats = _calibration()
    assert cal.factors == (1.0, 4.0) and cal.n == (10, 10, 10)
    assert np.allclose(cal.matrix(np.array([1.0]), "probs"), mats[1.0])
    assert np.allclose(cal.matrix(np.array([4.0]), "probs"), mats[4.0])
    assert np.allclose(cal.matrix(np.array([2.0]), "probs"), (mats[1.0] + mats[4.0]) / 2)   # halfway in log2
    assert np.allclose(cal.matrix(np.array([16.0]), "probs"), mats[4.0])                    # clamped
    assert np.allclose(cal.matrix(np.array([1.0, 4.0]), "probs"), (mats[1.0] + mats[4.0]) / 2)  # a group's mean
    assert np.allclose(cal.matrix(np.array([4.0]), "counts"), np.eye(3))  # every face's largest is its class


def test_estimate_undoes_the_confusion_of_each_faces_size():
    cal, mats = _calibration()
    # each class half at 1 and half at 4: the group's sizes independent of its classes, as the estimate assumes
    y = np.repeat(np.arange(3), [40, 14, 6])
    f = np.tile([1.0, 4.0], 30)
    probs = np.stack([mats[fi][:, yi] for fi, yi in zip(f, y)])
    true = np.bincount(y, minlength=3) / 60
    est = cal.estimate(probs, f)
    assert np.allclose(est, true, atol=1e-6)
    assert np.abs(probs.mean(0) - true).sum() > 0.1            # the plain mean is off
    # crops larger than the model (factor < 1) count as factor 1
    assert np.allclose(cal.estimate(probs[f == 1.0], np.full(int((f == 1).sum()), 0.5)),
                       np.bincount(y[f == 1.0], minlength=3) / (f == 1).sum(), atol=1e-6)


@pytest.mark.parametrize("probs,factors,match", [
    (np.zeros((0, 3)), np.zeros(0), "empty group"),
    (np.full((2, 4), 0.25), np.ones(2), r"expected probabilities \(N, 3\)"),
    (np.full((2, 3), 1 / 3), np.ones(3), r"factors \(N,\)"),
    (np.full((2, 3), np.nan), np.ones(2), "finite"),
    (np.full((2, 3), 1 / 3), np.array([1.0, 0.0]), "factors > 0"),
])
def test_estimate_refuses_bad_groups(probs, factors, match):
    cal, _ = _calibration()
    with pytest.raises(InputError, match=match):
        cal.estimate(probs, factors)


def test_fit_refuses_a_class_without_faces_and_mismatched_factors():
    p, y = _faces_with_confusion(np.eye(3), 5)
    keep = y != 2
    with pytest.raises(InputError, match="every class needs labelled faces"):
        GroupCalibration.fit({1.0: p[keep]}, {1.0: y[keep]}, CLASSES)
    with pytest.raises(InputError, match="same factors"):
        GroupCalibration.fit({1.0: p}, {2.0: y}, CLASSES)


@pytest.mark.parametrize("change,match", [
    (lambda p, y: (p, np.where(y == 0, -1, y)), r"labels must be integers 0\.\.2"),
    (lambda p, y: (p, y.astype(float)), r"labels must be integers 0\.\.2"),
    (lambda p, y: (np.log(p + 1e-3), y), "probabilities .rows of non-negative numbers summing to 1"),
    (lambda p, y: (np.where(p > 0.5, np.nan, p), y), "probabilities .rows of non-negative numbers summing to 1"),
])
def test_fit_refuses_bad_labels_and_logits_with_input_errors(change, match):
    p, y = _faces_with_confusion(np.full((3, 3), 1 / 3) * 0.4 + np.eye(3) * 0.6, 5)
    p, y = change(p, y)
    with pytest.raises(InputError, match=match):
        GroupCalibration.fit({1.0: p}, {1.0: y}, CLASSES)


def test_round_trip_and_corrupt_tables():
    cal, _ = _calibration()
    back = GroupCalibration.from_dict(cal.to_dict())
    assert back.classes == cal.classes and back.factors == cal.factors and np.allclose(back.probs, cal.probs)
    d = cal.to_dict()
    d["probs"] = d["probs"][:1]
    with pytest.raises(ModelError, match="columns summing to 1"):
        GroupCalibration.from_dict(d)
    with pytest.raises(ModelError, match="expected classes"):
        GroupCalibration.from_dict({"classes": ["a"]})


def test_study_groups_and_measures():
    mod = _script()
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(3), 50)
    pool = np.arange(0, 150, 2)                    # half the faces
    nat = mod.draw_group(rng, pool, labels, "natural", 30, 3)
    assert len(set(nat.tolist())) == 30 and set(nat.tolist()) <= set(pool.tolist())   # without replacement
    dom = np.stack([mod.draw_group(rng, pool, labels, "dominant", 200, 3) for _ in range(20)])
    top = np.array([np.bincount(labels[g], minlength=3).max() / 200 for g in dom])
    assert abs(top.mean() - (0.6 + 0.4 / 3)) < 0.03  # 60% from one class, the rest as they come
    shifted = mod.draw_group(rng, pool, labels, "shifted", 30, 3)
    assert set(shifted.tolist()) <= set(pool.tolist())
    with pytest.raises(ValueError, match="scenario"):
        mod.draw_group(rng, pool, labels, "odd", 3, 3)
    assert np.allclose(mod.tv_distance(np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]])), 100)
    assert mod.dominant_agrees(np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]),
                               np.array([[0.5, 0.5, 0.0], [0.2, 0.7, 0.1]])).tolist() == [True, False]


def _rows(mod, tv):
    """Result rows with tv[protocol][estimate] in every scenario of the decision's cell."""
    return {p: {str(mod.DECISION_GROUP): {s: {"mixed": {e: {"tv": tv[p][e]} for e in mod.ESTIMATES}}
                                          for s in mod.SCENARIOS}} for p in mod.PROTOCOLS}


def test_decision_follows_the_rule():
    mod = _script()
    both = {"counts": 30, "mean_probs": 28, "adjusted_counts": 25, "adjusted_probs": 20}
    d = mod.decision(_rows(mod, {"small": both, "camera": both}))
    assert d["adopted"] == "adjusted_probs" and d["passes"] == {"adjusted_probs": True, "adjusted_counts": True}
    counts_lower = dict(both, adjusted_counts=18)
    assert mod.decision(_rows(mod, {"small": counts_lower, "camera": counts_lower}))["adopted"] == "adjusted_counts"
    # lower under one protocol only: not adopted
    worse = dict(both, adjusted_probs=29, adjusted_counts=29)
    assert mod.decision(_rows(mod, {"small": both, "camera": worse}))["adopted"] is None


# --------------------------------------------------------------------------------------------
# The crowd summary's shares
# --------------------------------------------------------------------------------------------
class _Spy(GroupCalibration):
    """A calibration that records the factors it was given."""

    def estimate(self, probs, factors, kind="probs"):
        self.seen.append(np.asarray(factors, float).copy())  # type: ignore[attr-defined]
        return super().estimate(probs, factors, kind)


def _model_classes():
    from fsrfer_edge import Recognizer

    with Recognizer(threads=1) as rec:
        return rec.classes, rec.info.checkpoint_sha256


def _flat_calibration(classes, sha, cls=GroupCalibration):
    c = len(classes)
    eye = np.stack([np.eye(c), 0.5 * np.eye(c) + 0.5 / c])
    cal = cls(tuple(classes), (1.0, 8.0), eye, eye, (1,) * c, sha)
    object.__setattr__(cal, "seen", [])
    return cal


def test_summarize_adds_shares_from_each_faces_frame_probs():
    from fsrfer_edge.crowd import FaceResult, summarize

    classes = ("a", "b", "c")
    eye = np.stack([np.eye(3)])
    cal = GroupCalibration(classes, (1.0,), eye, eye)
    tracked = FaceResult((0, 0, 10, 10), 0.9, 10, "a", 0, np.array([0.8, 0.1, 0.1], np.float32), track_id=1,
                         frame_probs=np.array([0.1, 0.8, 0.1], np.float32))
    plain = FaceResult((0, 0, 10, 10), 0.9, 10, "c", 2, np.array([0.0, 0.0, 1.0], np.float32))
    s = summarize([tracked, plain], classes, cal, [1.0, 1.0])
    assert s.shares == pytest.approx({"a": 0.05, "b": 0.4, "c": 0.55}, abs=1e-6)  # the frame's own, not the track's
    assert s.to_dict()["shares"] == pytest.approx({"a": 0.05, "b": 0.4, "c": 0.55}, abs=1e-4)
    assert summarize([plain], classes).shares is None and "shares" not in summarize([plain], classes).to_dict()
    assert summarize([], classes, cal, []).shares is None


def test_the_analyzer_gives_each_face_its_crops_factor():
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer

    with Recognizer(threads=1, spinning=False) as rec:
        cal = _flat_calibration(rec.classes, rec.info.checkpoint_sha256, _Spy)
        frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
        with CrowdAnalyzer(rec, margin=0.0, groups=cal, min_face=12) as a:
            r = a.analyze(frame, boxes=[(10, 10, 22, 22), (40, 40, 136, 136), (60, 0, 84, 16)])
        assert np.allclose(cal.seen[-1], [48 / 12, 48 / 96, 48 / 24])  # model side / square crop side
        assert r.summary.shares is not None and sum(r.summary.shares.values()) == pytest.approx(1)
        with CrowdAnalyzer(rec, groups=None, min_face=12) as a:
            assert a.analyze(frame, boxes=[(10, 10, 22, 22)]).summary.shares is None


def test_the_shipped_model_finds_its_calibration_and_others_are_refused(tmp_path, caplog):
    pytest.importorskip("onnxruntime")
    import shutil

    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer
    from fsrfer_edge.groups import PACKAGED, calibration_for

    with Recognizer(threads=1, spinning=False) as rec:
        shipped = GroupCalibration.load(PACKAGED / "default.groups.json")
        with CrowdAnalyzer(rec, min_face=12) as a:                  # "auto"
            assert a.groups is not None and np.allclose(a.groups.probs, shipped.probs)
        other = _flat_calibration(rec.classes, "0" * 64)
        with pytest.raises(ModelError, match="measured on checkpoint 000000000000"):
            CrowdAnalyzer(rec, groups=other, min_face=12)
        other.save(tmp_path / "other.groups.json")
        with pytest.raises(ModelError, match="does not belong"):
            CrowdAnalyzer(rec, groups=tmp_path / "other.groups.json", min_face=12)
        with pytest.raises(InputError, match="expected 'auto', None"):
            CrowdAnalyzer(rec, groups=3, min_face=12)
        info = rec.info
    # a copy of the model under another name: no file beside it, the packaged one by its checkpoint
    model = tmp_path / "mine.int8-u8s8.onnx"
    shutil.copy(PACKAGED / "default.onnx", model)
    assert calibration_for(model, info.classes, info.checkpoint_sha256) is not None
    assert calibration_for(model, info.classes, "f" * 64) is None
    # one beside it wins; a corrupt one beside it is skipped with a warning
    mine = _flat_calibration(info.classes, info.checkpoint_sha256)
    mine.save(tmp_path / "mine.groups.json")
    assert np.allclose(calibration_for(model, info.classes, info.checkpoint_sha256).probs, mine.probs)
    (tmp_path / "mine.groups.json").write_text("{not json")
    with caplog.at_level("WARNING"):
        found = calibration_for(model, info.classes, info.checkpoint_sha256)
    assert np.allclose(found.probs, shipped.probs) and "not a readable group calibration" in caplog.text


def test_a_dotted_model_name_finds_its_calibration_from_every_variant_and_engine(tmp_path, caplog):
    from fsrfer_edge.groups import calibration_for

    sha = "1" * 64
    cal, _ = _calibration()
    cal = GroupCalibration(cal.classes, cal.factors, cal.probs, cal.counts, cal.n, sha)
    cal.save(tmp_path / "fer.v2.groups.json")                               # MODEL.groups.json for fer.v2.onnx
    GroupCalibration(cal.classes, cal.factors, cal.counts, cal.counts, cal.n, "2" * 64).save(
        tmp_path / "fer.groups.json")                                       # another model's, named up to a dot
    for name in ("fer.v2.onnx", "fer.v2.fp16.onnx", "fer.v2.int8-u8s8.onnx",
                 "fer.v2.int8.1a2b3c4d.trt10.3.0.26.sm87.orin-16sm-61g.b1-32-128.engine"):
        with caplog.at_level("WARNING"):
            found = calibration_for(tmp_path / name, CLASSES, sha)
        assert found is not None and np.allclose(found.probs, cal.probs), name
    assert "fer.groups.json" not in caplog.text                             # not a candidate of fer.v2's files


def test_a_refused_calibration_says_what_was_expected():
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer

    with Recognizer(threads=1, spinning=False) as rec:
        other = _flat_calibration(rec.classes, "0" * 64)
        with pytest.raises(ModelError) as err:
            CrowdAnalyzer(rec, groups=other, min_face=12)
    msg = str(err.value)
    assert "calibration  " not in msg and "--write-calibration" in msg and "groups=None" in msg
    cal, _ = _calibration()
    d = cal.to_dict()
    d["probs"][0][0][0] += 0.5                                  # right shape, a column summing to 1.5
    with pytest.raises(ModelError, match=r"got shape \(2, 3, 3\), column sums 1\.000 to 1\.500"):
        GroupCalibration.from_dict(d)


def test_a_tally_over_parts_is_the_estimate_of_them_all():
    from fsrfer_edge.groups import GroupTally

    cal, mats = _calibration()
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.ones(3), size=40)
    f = rng.choice([1.0, 2.0, 4.0, 8.0], size=40)
    for kind in ("probs", "counts"):
        tally = GroupTally(cal, kind)
        assert tally.shares() is None
        for part in np.array_split(np.arange(40), [0, 7, 7, 25]):   # empty parts too
            tally.add(p[part], f[part])
        assert tally.n == 40
        assert np.allclose(tally.shares(), cal.estimate(p, f, kind), atol=1e-9)
    with pytest.raises(InputError, match="kind"):
        GroupTally(cal, "votes")
    with pytest.raises(InputError, match="finite"):
        GroupTally(cal).add(np.full((1, 3), np.nan), [1.0])
    with pytest.raises(InputError, match="not logits"):
        GroupTally(cal).add(np.array([[2.0, -1.0, 0.5]]), [1.0])


def test_the_exact_and_iterative_solvers_agree_singular_and_at_vertices_too():
    from fsrfer_edge.groups import _exact_simplex_least_squares, _iterative_simplex_least_squares

    rng = np.random.default_rng(6)
    m = rng.dirichlet(np.ones(6), size=(200, 6)).transpose(0, 2, 1)
    m[:50, :, 1] = m[:50, :, 0]                                  # two classes alike: singular systems
    b = rng.dirichlet(np.ones(6) * 0.3, size=200) * 1.2 - 0.05   # often outside: optima on faces and vertices
    exact = _exact_simplex_least_squares(m, b)
    slow = _iterative_simplex_least_squares(m, b, 1e-12, 200000)
    obj = lambda q: np.sum((np.einsum("nkc,nc->nk", m, q) - b) ** 2, axis=1)  # noqa: E731
    assert np.allclose(exact.sum(1), 1) and exact.min() >= 0
    assert np.all(obj(exact) <= obj(slow) + 1e-10)               # never worse than the iterative answer
    unique = np.arange(200) >= 50                                # where the optimum is unique, the same point
    assert np.allclose(exact[unique], slow[unique], atol=1e-6)
    assert (exact == 0).any()                                    # some optima on the simplex's boundary


def test_the_exact_solver_broadcasts_one_matrix_over_many_groups_as_the_iterative_one_does():
    # m (..., K, C) and b (..., K) broadcast against each other: one calibration's matrix for a batch of groups
    # (the iterative solver, and numpy's matmul, always allowed it; the exact one failed on a concatenate)
    from fsrfer_edge.groups import _iterative_simplex_least_squares

    rng = np.random.default_rng(7)
    m = rng.dirichlet(np.ones(4), size=4).T                                   # (K, C), one matrix
    b = rng.dirichlet(np.ones(4), size=(2, 5))                                # (2, 5, K), a batch of groups
    one_by_one = np.stack([[simplex_least_squares(m, row) for row in part] for part in b])
    assert simplex_least_squares(m, b).shape == (2, 5, 4)
    assert np.allclose(simplex_least_squares(m, b), one_by_one, atol=1e-9)
    assert np.allclose(simplex_least_squares(m, b), _iterative_simplex_least_squares(m, b, 1e-13, 100000), atol=1e-6)
    ms = np.stack([m, m[::-1]])                                                # (2, K, C) matrices, one b
    assert np.allclose(simplex_least_squares(ms, b[0, 0]),
                       [simplex_least_squares(m, b[0, 0]), simplex_least_squares(m[::-1], b[0, 0])], atol=1e-9)


def test_the_exact_solver_holds_a_large_batch_in_bounded_memory():
    # every support's KKT system of every problem at once is (n, 2^C - 1, C + 1, C + 1): 1000 groups of 10 classes
    # would take gigabytes; the batch is solved in parts instead
    import tracemalloc

    rng = np.random.default_rng(8)
    m = rng.dirichlet(np.ones(7), size=(2000, 7)).transpose(0, 2, 1)
    b = rng.dirichlet(np.ones(7), size=2000)
    first = simplex_least_squares(m[:5], b[:5])
    tracemalloc.start()
    try:
        q = simplex_least_squares(m, b)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 80e6, f"{peak / 1e6:.0f} MB"                              # all at once: about 230 MB
    assert np.allclose(q[:5], first, atol=1e-12) and np.allclose(q.sum(1), 1)


def test_the_interval_holds_the_estimate_narrows_with_more_faces_and_is_seeded():
    mod = _script()
    cal, mats = _calibration()
    probs, f, y = _noise_free_group(mats)
    lo, hi = mod.bootstrap_interval(cal, probs, f)
    est = cal.estimate(probs, f)
    assert np.all(lo <= est + 1e-9) and np.all(est <= hi + 1e-9) and np.all(hi - lo > 0)
    big_lo, big_hi = mod.bootstrap_interval(cal, np.tile(probs, (10, 1)), np.tile(f, 10))  # ten times the faces
    assert np.all(big_hi - big_lo < hi - lo)
    again = mod.bootstrap_interval(cal, probs, f)
    assert np.array_equal(again[0], lo) and np.array_equal(again[1], hi)
    wider = mod.bootstrap_interval(cal, probs, f, level=0.99)
    assert np.all(wider[0] <= lo + 1e-12) and np.all(wider[1] >= hi - 1e-12)
    with pytest.raises(InputError, match="level"):
        mod.bootstrap_interval(cal, probs, f, level=1.5)
    with pytest.raises(InputError, match="empty group"):
        mod.bootstrap_interval(cal, np.zeros((0, 3)), np.zeros(0))


def test_the_study_counts_interval_hits_and_decides_by_the_bar():
    mod = _script()
    cal, mats = _calibration()
    probs, f, y = _noise_free_group(mats)
    true = np.bincount(y, minlength=3) / 30
    hits, widths = mod.interval_hits(cal, probs[None], f[None], np.stack([true]))
    assert hits.all() and np.all(widths > 0)                        # the truth is the noise-free estimate here
    hits, _ = mod.interval_hits(cal, probs[None], f[None], np.array([[0.0, 0.0, 1.0]]))
    assert not hits[0, 2]
    rows = {p: {str(mod.DECISION_GROUP): {s: {"mixed": {"adjusted_probs": {"coverage": c}}} for s in mod.SCENARIOS}}
            for p, c in (("small", 90.0), ("camera", 84.9))}
    d = mod.interval_decision(rows)
    assert d["adopted"] is False and d["mean_coverage_over_scenarios"] == {"small": 90.0, "camera": 84.9}
    rows["camera"] = rows["small"]
    assert mod.interval_decision(rows)["adopted"] is True


def test_intervals_with_resampled_matrices():
    mod = _script()
    cal, mats = _calibration()
    probs, f, y = _noise_free_group(mats)
    same = [cal] * 200                                      # the same matrices every time: the plain interval
    assert all(np.array_equal(a, b) for a, b in zip(mod.bootstrap_interval(cal, probs, f, matrices=same),
                                                    mod.bootstrap_interval(cal, probs, f)))
    with pytest.raises(InputError, match="one each"):
        mod.bootstrap_interval(cal, probs, f, matrices=same[:3])
    # resampled within each class: every class keeps its faces' number, so every fit succeeds
    rng = np.random.default_rng(7)
    labels = np.repeat(np.arange(3), [30, 3, 10])
    p = {1.0: rng.dirichlet(np.ones(3), size=43), 4.0: rng.dirichlet(np.ones(3), size=43)}
    sets = mod.resampled_calibrations(p, labels, CLASSES, np.arange(43), resamples=20, seed=1)
    assert len(sets) == 20 and all(s.n == (30, 3, 10) for s in sets)
    assert not np.allclose(sets[0].probs, sets[1].probs)     # the sets differ
    again = mod.resampled_calibrations(p, labels, CLASSES, np.arange(43), resamples=20, seed=1)
    assert np.array_equal(again[5].probs, sets[5].probs)     # seeded


def _resampled_calibration(resamples: int = 50):
    rng = np.random.default_rng(8)
    labels = np.repeat(np.arange(3), [30, 8, 12])
    base = {1.0: np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]),
            4.0: np.array([[0.6, 0.3, 0.3], [0.2, 0.5, 0.2], [0.2, 0.2, 0.5]])}
    probs = {f: np.stack([rng.dirichlet(40 * m[:, y]) for y in labels]) for f, m in base.items()}
    return GroupCalibration.fit(probs, {f: labels for f in probs}, CLASSES, resamples=resamples, seed=3), probs, labels


def test_fit_keeps_resampled_matrices_that_round_trip_and_match_the_studys():
    from fsrfer_edge.groups import stratified_picks

    cal, probs, labels = _resampled_calibration()
    assert cal.resampled.shape == (50, 2, 3, 3) and np.allclose(cal.resampled.sum(2), 1)
    first = GroupCalibration.fit({f: p[stratified_picks(labels, 1, 3)[0]] for f, p in probs.items()},
                                 {f: labels[stratified_picks(labels, 1, 3)[0]] for f in probs}, CLASSES)
    assert np.allclose(cal.resampled[0], first.probs)                  # set r: the r-th stratified resample
    back = GroupCalibration.from_dict(cal.to_dict())
    assert np.allclose(back.resampled, cal.resampled, atol=1e-6)        # float32 in the file
    assert isinstance(cal.to_dict()["resampled"]["float32_base64"], str)
    d = cal.to_dict()
    d["resampled"]["float32_base64"] = d["resampled"]["float32_base64"][:-8]
    with pytest.raises(ModelError, match="expected resampled as"):
        GroupCalibration.from_dict(d)
    with pytest.raises(InputError, match="same faces"):
        GroupCalibration.fit(probs, {1.0: labels, 4.0: labels[::-1]}, CLASSES, resamples=5)


def test_the_sdk_interval_is_the_studys_and_needs_resampled_matrices():
    mod = _script()
    cal, probs, labels = _resampled_calibration()
    faces = np.concatenate([probs[1.0][:10], probs[4.0][20:40]])
    f = np.array([1.0] * 10 + [4.0] * 20)
    sets = [dataclasses.replace(cal, probs=r, resampled=None) for r in cal.resampled]
    want = mod.bootstrap_interval(cal, faces, f, resamples=50, matrices=sets)
    got = cal.interval(faces, f)
    assert np.allclose(got[0], want[0]) and np.allclose(got[1], want[1])
    est = cal.estimate(faces, f)
    assert np.all(got[0] <= est + 0.05) and np.all(est <= got[1] + 0.05)
    plain = dataclasses.replace(cal, resampled=None)
    with pytest.raises(ModelError, match="no resampled matrices"):
        plain.interval(faces, f)
    with pytest.raises(InputError, match="level"):
        cal.interval(faces, f, level=0)


def test_the_analyzer_gives_an_interval_of_a_frames_shares_when_asked():
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.crowd import CrowdAnalyzer

    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    with Recognizer(threads=1, spinning=False) as rec, CrowdAnalyzer(rec, margin=0.0, min_face=12) as a:
        r = a.analyze(frame, boxes=[(10, 10, 22, 22), (40, 40, 88, 88), (100, 20, 124, 44)])
        iv = a.shares_interval(r)
        assert list(iv) == list(r.summary.shares)
        assert all(0 <= lo <= hi <= 1 for lo, hi in iv.values()) and any(hi - lo > 0 for lo, hi in iv.values())
        assert iv == a.shares_interval(r)                                   # seeded
    with Recognizer(threads=1, spinning=False) as rec, CrowdAnalyzer(rec, groups=None, min_face=12) as a:
        assert a.shares_interval(a.analyze(frame, boxes=[(10, 10, 22, 22)])) is None


def test_a_corrupt_resampled_field_is_a_model_error_that_says_what_was_expected():
    cal, _, _ = _resampled_calibration(5)
    d = cal.to_dict()
    s, shape = d["resampled"]["float32_base64"], d["resampled"]["shape"]
    bad = [{"shape": shape, "float32_base64": s[:40] + "!!!!" + s[40:]},       # junk characters: not skipped
           {"shape": [-1] + shape[1:], "float32_base64": s},                 # a negative size: not inferred
           {"shape": shape, "float32_base64": s[:-8]},                       # truncated
           {"shape": shape, "float32_base64": s[:-1]},
           {"shape": shape}, [1, 2], {"shape": shape, "float32_base64": 5}]
    for r in bad:
        with pytest.raises(ModelError, match="resampled"):
            GroupCalibration.from_dict(dict(d, resampled=r))
    neg = cal.resampled.copy()
    neg[0, 0, 0, 0] = -0.5
    # says what is wrong, not the shape alone
    with pytest.raises(ModelError, match="smallest entry -0.5"):
        dataclasses.replace(cal, resampled=neg)


def test_calibrations_compare_by_value_and_hash():
    cal, _, _ = _resampled_calibration(5)
    back = GroupCalibration.from_dict(cal.to_dict())
    assert back == GroupCalibration.from_dict(cal.to_dict()) and hash(back) == hash(cal)
    assert back != dataclasses.replace(back, resampled=None) and cal != back   # float32 in the file
    assert len({back, GroupCalibration.from_dict(cal.to_dict())}) == 1


def test_fit_with_resamples_and_no_factors_is_an_input_error():
    with pytest.raises(InputError):
        GroupCalibration.fit({}, {}, CLASSES, resamples=5)


def test_the_interval_of_a_large_group_holds_no_resampled_copy_of_its_faces():
    import tracemalloc

    cal, probs, _ = _resampled_calibration(50)
    faces = np.concatenate([probs[1.0]] * 200)                                # 10,000 faces
    f = np.linspace(1.0, 4.0, len(faces))
    tracemalloc.start()
    try:
        cal.interval(faces, f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2.5 * 50 * len(faces) * 8, peak         # the (R, N) picks and their counts; not (R, N, C) copies


def test_a_tally_takes_a_frame_without_faces_given_as_empty_lists() -> None:
    # add() says N may be 0; a frame's faces collected into plain lists are [] then, not an (0, C) array
    from fsrfer_edge.groups import GroupTally

    cal, _ = _calibration()
    tally = GroupTally(cal)
    none: Any = []
    tally.add(none, [])
    assert tally.n == 0 and tally.shares() is None
    tally.add(np.array([[0.8, 0.1, 0.1]]), [1.0])
    tally.add(none, [])
    shares = tally.shares()
    assert tally.n == 1 and shares is not None and np.allclose(shares, cal.estimate(np.array([[0.8, 0.1, 0.1]]), [1.0]))
    with pytest.raises(InputError, match="empty group"):
        cal.estimate(none, [])
    with pytest.raises(InputError, match=r"factors \(N,\)"):
        tally.add(none, [1.0])                              # no faces, one factor: still a mismatch


@pytest.mark.parametrize("factors", [[], [0.0], [-2.0], [np.nan], [1.0, np.inf]])
def test_matrix_refuses_factors_it_cannot_read_instead_of_giving_nan(factors: list) -> None:
    cal, _ = _calibration()
    with pytest.raises(InputError, match="factor"):
        cal.matrix(np.array(factors))


@pytest.mark.parametrize("level", ["0.9", None, True, [0.9]])
def test_the_interval_refuses_a_level_that_is_not_a_number_with_an_input_error(level: Any) -> None:
    cal, probs, _ = _resampled_calibration(5)
    with pytest.raises(InputError, match="level"):
        cal.interval(probs[1.0][:10], np.ones(10), level=level)


def test_the_documented_video_tally_takes_a_frame_without_faces() -> None:
    # docs/crowd.md: tally.add(own_probs(r.faces), crowd.factors(r.faces)) for every frame, faces or none
    from fsrfer_edge.crowd import own_probs
    from fsrfer_edge.groups import GroupTally

    cal, _ = _calibration()
    tally = GroupTally(cal)
    tally.add(own_probs([]), [])
    assert tally.n == 0 and tally.shares() is None
    assert own_probs([]).shape == (0, 0)
