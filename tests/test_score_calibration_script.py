"""scripts/score_calibration.py's rules and noise floor."""
from __future__ import annotations

import numpy as np
import pytest

from _scripts import load_script


@pytest.fixture(scope="module")
def mod():
    return load_script("scripts/score_calibration.py", "score_calibration")


def _cells(mod, small, camera, resized=None):
    """Cells with each method's error per factor: ``small``/``camera`` map method -> one value or six."""
    out = {}
    for p, given in (("small", small), ("camera", camera), ("resized", resized or small)):
        out[p] = {}
        for k, f in enumerate(mod.FACTORS):
            out[p][str(f)] = {m: float(np.broadcast_to(given[m], (6,))[k]) for m in mod.METHODS}
    return out


def test_the_logistic_rule_needs_the_bound_at_every_size_the_lead_and_the_camera_condition(mod):
    good = {"score": 10.0, "one_for_all": 5.0, "per_size": 3.5, "logistic": 2.0}
    cam = {"score": 7.0, "one_for_all": 7.0, "per_size": 6.0, "logistic": 4.0}
    assert mod.decide(_cells(mod, good, cam), "logistic")["chosen"] == "logistic"
    over = dict(good, logistic=[2, 2, 2, 3.01, 2, 2])                       # over the bound at one size
    assert mod.decide(_cells(mod, over, cam), "logistic")["chosen"] is None
    d = mod.decide(_cells(mod, dict(good, logistic=2.5, one_for_all=3.0), cam), "logistic")  # lead 0.5 < 1
    assert d["logistic"]["lead_over_one_for_all_b"] == 0.5 and d["chosen"] is None
    worse_cam = dict(cam, logistic=7.5)
    assert mod.decide(_cells(mod, good, worse_cam), "logistic")["chosen"] is None
    above_score = dict(good, score=[10, 10, 10, 10, 10, 1.5])              # the score better at one size
    assert mod.decide(_cells(mod, above_score, cam), "logistic")["chosen"] is None


def test_the_first_rule_falls_back_to_one_temperature_only_when_that_meets_the_bound(mod):
    cam = {"score": 7.0, "one_for_all": 6.0, "per_size": 6.0, "logistic": 4.0}
    per_fails = {"score": 10.0, "one_for_all": 2.5, "per_size": [1, 1, 1, 3.5, 1, 1], "logistic": 2.0}
    assert mod.decide(_cells(mod, per_fails, cam), "per_size")["chosen"] == "one_for_all"
    both_fail = dict(per_fails, one_for_all=3.2)
    assert mod.decide(_cells(mod, both_fail, cam), "per_size")["chosen"] is None


def test_the_noise_floor_is_small_for_many_faces_and_larger_for_few(mod):
    rng = np.random.default_rng(0)
    many, few = rng.uniform(0.3, 0.95, 20000), rng.uniform(0.3, 0.95, 300)
    assert mod.noise_floor(many, rng) < 1.0 < mod.noise_floor(few, rng)


def test_without_an_output_it_says_what_to_give(mod, capsys):
    with pytest.raises(SystemExit):
        mod.main([])
    assert "give --json, --write-calibration or both" in capsys.readouterr().err


def test_variants_need_a_result_file_and_no_calibration_output(mod, capsys):
    with pytest.raises(SystemExit):
        mod.main(["--variants", "a.onnx", "--write-calibration", "x.json"])
    assert "--variants takes --json and no --write-calibration" in capsys.readouterr().err


def test_calibration_files_key_their_sizes_as_the_sdk_reads_a_crop():
    from trainer.evaluate import sdk_factor

    assert [sdk_factor(f, 48, 48) for f in (1, 2, 3, 4, 6, 8)] == [1, 2, 3, 4, 6, 8]   # the shipped 48 px model
    assert sdk_factor(4, 48, 64) == pytest.approx(64 / 12)     # a 64 px model reads a 12 px crop as x5.33
    assert sdk_factor(60, 48, 48) == 48                         # a crop keeps at least one pixel


@pytest.fixture(scope="module")
def qmod():
    return load_script("scripts/jpeg_quality_calibration.py", "jpeg_quality_calibration")


def test_a_marked_crop_takes_the_fitted_quality_nearest_the_one_read_ties_to_the_lower(qmod):
    read = np.array([0, 20, 30, 40, 45, 55, 60, 65, 80])
    assert qmod.nearest_fitted(read).tolist() == [0, 30, 30, 30, 50, 50, 50, 70, 70]


def test_the_quality_the_script_reads_is_the_one_the_sdk_marks_by(qmod):
    import io

    from PIL import Image

    from fsrfer_edge.preprocessing import Preprocessing

    from _faces import blob_face

    crops = []
    for q in (30, 70, 95):
        buf = io.BytesIO()
        Image.fromarray(blob_face(24)).save(buf, "JPEG", quality=q)
        crops.append(np.asarray(Image.open(io.BytesIO(buf.getvalue()))))
    marks: list[bool] = []
    Preprocessing().to_pixels(crops, jpeg=marks)
    assert [qmod.read_quality(c) for c in crops] == [30, 70, None] and marks == [True, True, False]


def test_the_quality_rule_needs_the_fall_and_no_rise(qmod):
    def means(q50, per):
        return {str(q): {"base": 4.0, "q50": q50, "per_quality": per} for q in qmod.QUALITIES}

    at50 = {str(f): {"q50": 2.0, "per_quality": 2.0} for f in qmod.FACTORS}
    assert qmod.decide(means(3.0, 2.4), at50)["adopted"]
    assert not qmod.decide(means(3.0, 2.6), at50)["adopted"]                        # falls by 0.4 only
    worse_at_50 = dict(at50, **{"4": {"q50": 2.0, "per_quality": 2.4}})
    assert not qmod.decide(means(3.0, 2.4), worse_at_50)["adopted"]


@pytest.fixture(scope="module")
def fmod():
    return load_script("scripts/jpeg_frame_calibration.py", "jpeg_frame_calibration")


def test_a_face_is_cut_back_out_of_its_jpeg_frame_where_it_was_set_and_only_aligned_crops_mark_themselves(fmod):
    pytest.importorskip("PIL")
    from fsrfer_edge.preprocessing import jpeg_quality

    from _faces import blob_face

    small = np.stack([blob_face(16, s) for s in range(3)])
    offsets = np.array([[0, 0], [3, 5], [7, 1]])
    crops, framed = fmod.frame_crops(small, 50, offsets)
    assert crops.shape == small.shape and framed.all()
    assert np.abs(crops.astype(int) - small).mean() < 6                # the same face, JPEG's error apart
    assert [jpeg_quality(c) for c in crops] == [50, None, None]        # on the grid only at offset (0, 0)


def test_the_frame_rule_needs_the_fall_at_50_and_no_rise(fmod):
    def cells(today, frame, today75=3.0, frame75=3.0):
        return {"50": {str(f): {"today": today, "frame": frame} for f in fmod.FACTORS},
                "75": {str(f): {"today": today75, "frame": frame75} for f in fmod.FACTORS}}

    assert fmod.decide(cells(4.0, 2.5))["adopted"]
    assert not fmod.decide(cells(4.0, 3.1))["adopted"]                                  # falls by 0.9
    assert not fmod.decide(cells(4.0, 2.5, frame75=3.4))["adopted"]                     # 75 rises by 0.4
    c = cells(4.0, 2.5)
    c["50"]["8"] = {"today": 2.0, "frame": 2.4}
    assert not fmod.decide(c)["adopted"]                                                # one size rises by 0.4


def test_the_enlarged_crops_rule_needs_the_fall_and_no_rise_at_48_px():
    emod = load_script("scripts/enlarged_confidence.py", "enlarged_confidence")

    def cells(today, est, rise_a=0.0, rise_c=0.0):
        a = {str(f): {"today": today, "estimate": est} for f in emod.FACTORS}
        a["1"] = {"today": 1.0, "estimate": 1.0 + rise_a}
        return {"a": a, "c": {"1": {"today": 2.0, "estimate": 2.0 + rise_c}}}

    assert emod.decide(cells(9.0, 3.0), "estimate")["met"]
    assert not emod.decide(cells(9.0, 6.5), "estimate")["met"]                     # falls by 2.5
    assert not emod.decide(cells(9.0, 3.0, rise_a=0.4), "estimate")["met"]
    assert not emod.decide(cells(9.0, 3.0, rise_c=0.4), "estimate")["met"]


def test_rewriting_the_maps_keeps_the_files_size_estimate(mod, tmp_path):
    from fsrfer_edge.confidence import ScoreCalibration

    cal = ScoreCalibration(("a", "b"), "logistic", (1.0, 2.0), ((1.0, 0.0), (1.0, -1.0)), source="maps")
    path = tmp_path / "m.scores.json"
    assert mod._keep_size_estimate(cal, str(path)) == cal                          # no file yet
    cal.__class__(**{**cal.__dict__, "size_weights": (1.0,) * 7, "source": "maps; size_weights: fitted"}).save(path)
    kept = mod._keep_size_estimate(cal, str(path))
    assert kept.size_weights == (1.0,) * 7 and kept.source == "maps; size_weights: fitted"


def test_the_small_jpeg_maps_take_every_compressed_crop_only_where_crops_are_under_one_block(mod):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    z = {f: rng.normal(0, 2, (400, 3)) for f in mod.FACTORS}
    none = {f: (z[f] * 0.5, np.zeros(400, bool)) for f in mod.FACTORS}          # no crop marks itself
    keep = np.ones(400, bool)
    plain = mod.shipped_kind(z, none, labels, keep, ["a", "b", "c"])
    small = mod.shipped_kind(z, none, labels, keep, ["a", "b", "c"], small_jpeg_side=48)
    assert plain.jpeg_params is None                                            # nothing marked: no JPEG maps
    k8 = mod.FACTORS.index(8)
    assert small.jpeg_params is not None and small.jpeg_params[k8] != small.params[k8]   # 6 px: its own map
    assert [small.jpeg_params[k] == small.params[k] for k in range(len(mod.FACTORS)) if k != k8] == [True] * 5


@pytest.fixture(scope="module")
def kmod():
    pytest.importorskip("cv2")
    pytest.importorskip("PIL")
    return load_script("scripts/enlarging_kernels.py", "enlarging_kernels")


def test_the_kernels_rule_needs_the_ways_fall_and_no_rise_elsewhere(kmod):
    def cells(shipped, mixed, a_rise=0.0, rise_1=0.0, rise_c=0.0):
        rows = {w: {str(f): {"today": 8.0, "shipped": shipped, "mixed": mixed, "held_out": mixed}
                    for f in kmod.FACTORS if f > 1} for w in kmod.WAYS}
        rows["a"] = {str(f): {"today": 8.0, "shipped": 2.0, "mixed": 2.0 + a_rise, "held_out": 2.0}
                     for f in kmod.FACTORS}
        rows["a"]["1"] = {"today": 1.0, "shipped": 1.0, "mixed": 1.0 + rise_1, "held_out": 1.0}
        rows["c"] = {"1": {"today": 2.0, "shipped": 2.0, "mixed": 2.0 + rise_c, "held_out": 2.0}}
        return rows

    assert kmod.decide(cells(3.0, 2.4))["met"]
    assert not kmod.decide(cells(3.0, 2.6))["met"]                                     # falls by 0.4
    assert not kmod.decide(cells(3.0, 2.4, a_rise=0.4))["met"]
    assert not kmod.decide(cells(3.0, 2.4, rise_1=0.4))["met"]
    assert not kmod.decide(cells(3.0, 2.4, rise_c=0.4))["met"]


def test_each_way_enlarges_area_shrunk_faces_back_to_their_size_and_sharpening_adds_detail(kmod):
    rng = np.random.default_rng(0)
    faces = rng.uniform(0, 255, (3, 48, 48)).astype(np.float32)
    out = {w: kmod.app_enlarged(faces, 4, w) for w in kmod.WAYS}
    for w, x in out.items():
        assert x.shape == (3, 48, 48) and x.dtype == np.uint8, w
    lap = {w: float(np.abs(np.diff(x.astype(float), 2, axis=-1)).mean()) for w, x in out.items()}
    assert lap["cv2_cubic_sharpened"] > 1.3 * lap["cv2_cubic"]
    assert lap["pil_bilinear"] < lap["cv2_cubic"]                                    # the softest of them


def test_the_estimates_fit_recovers_linear_weights(kmod):
    rng = np.random.default_rng(1)
    w = np.array([0.5, -0.2, 0.1])
    parts = []
    for f in (1.0, 2.0, 4.0):
        x = rng.normal(size=(50, 3))
        x[:, 0] = (np.log2(f) - x[:, 1:] @ w[1:]) / w[0]
        parts.append((x, f))
    assert np.allclose(kmod.fit_weights(parts), w)
