"""Tests that kill hand-made mutants (round 68, task K68g) of the JPEG and enlargement experiment scripts whose result
files the README, docs/experiments.md and docs/crowd.md read: scripts/jpeg_crops.py (the rule's tie to the smaller
sigma, its loss bound, the val pick kept on test, each row at its own quality, the changed faces counted, adoption at
the least gain), scripts/jpeg_frame_calibration.py (the rule's rise bound, the crops area-shrunk and logits asked at
their factor), scripts/jpeg_quality_calibration.py (the quality read on a 48 px crop, (b)'s bicubic crops, the maps
each method takes, each fitted quality's maps from its own crops), scripts/jpeg_flat_blocks.py (the crop test's
flat-block switch, area shrinks, the clean frames' counts and keys, the rule's clean-frame part, the crop marks that
differ), scripts/jpeg_frame_reads.py (frames read and read right, the gray copies), scripts/jpeg_detection.py (the
offset cut off the grid, right quality over the marked crops, each row at its quality), scripts/camera_gap.py (each
row's kernel and quality, the (c) row, quality 100 allowed), scripts/enlarging_kernels.py (each way its own kernel,
the area shrink to round(48 / f)), scripts/linear_enlarging_rule.py (min_max, each kind its kernel, each blur its
sigma) and scripts/enlarged_confidence.py (the estimate for unmarked and marked input-size crops, its floor at x1,
whole grey levels, logits at their factor, the rule over x2..x8). Tiny synthetic faces and frames, a tiny .npz in
tmp_path, fakes for the model where the script's arithmetic is the point, the shipped model on one thread elsewhere."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from _faces import blob_face
from _scripts import load_script

REPO = Path(__file__).resolve().parents[1]


def _script(name: str) -> ModuleType:
    return load_script(f"scripts/{name}.py", f"{name}_68g")


def _faces(n: int = 4, side: int = 48) -> np.ndarray:
    return np.stack([blob_face(side, s) for s in range(n)])


@pytest.fixture()
def tiny_npz(tmp_path: Path) -> Path:
    """A plain archive of 8 blob faces: 4 val, 2 train, 2 test (its own labels)."""
    path = tmp_path / "faces.npz"
    np.savez(path, images=_faces(8), labels=np.arange(8) % 7,
             split=np.array(["val"] * 4 + ["train"] * 2 + ["test"] * 2))
    return path


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


class _FakeFn:
    """A logits function that records the factor it was asked at and the inputs it was given."""

    def __init__(self) -> None:
        self.factors: list[Any] = []
        self.inputs: list[np.ndarray] = []

    def __call__(self, x: np.ndarray, factor: Any) -> np.ndarray:
        self.factors.append(factor)
        self.inputs.append(np.array(x))
        return np.zeros((len(x), 7))


# ---------------------------------------------------------------------------------------------- scripts/jpeg_crops.py

def _crops_acc(off: float, cands: dict[str, float]) -> tuple[dict, dict]:
    mod = _script("jpeg_crops")
    rows = [r for r, _, _ in mod.ROWS]
    acc = {k: {r: {str(f): v for f in mod.FACTORS} for r in rows} for k, v in {"off": off, **cands}.items()}
    changed = {k: {r: {str(f): 0 if r in mod.CLEAN else 3 for f in mod.FACTORS} for r in rows} for k in cands}
    return acc, changed


def test_jpeg_crops_breaks_a_tie_to_the_smaller_sigma():
    # kills: the tie-break key without its minus (the larger sigma picked)
    mod = _script("jpeg_crops")
    acc, changed = _crops_acc(50.0, {"sigma 0.4": 52.0, "sigma 0.6": 52.0, "sigma 0.5": 51.0})
    assert mod.select(acc, changed)[2] == "sigma 0.4"


def test_jpeg_crops_allows_a_jpeg_row_exactly_the_bound_below_off():
    # kills: ">=" made ">" in the loss constraint
    mod = _script("jpeg_crops")
    acc, changed = _crops_acc(50.0, {"sigma 0.5": 52.0})
    acc["sigma 0.5"]["area + JPEG q75"]["2"] = acc["off"]["area + JPEG q75"]["2"] - mod.MAX_JPEG_LOSS
    score, ok, pick = mod.select(acc, changed)
    assert ok["sigma 0.5"] and pick == "sigma 0.5"


def test_jpeg_crops_keeps_the_val_pick_on_test_even_where_it_breaks_the_constraints():
    # kills: the early return for ``fixed`` removed (test split re-picks)
    mod = _script("jpeg_crops")
    acc, changed = _crops_acc(50.0, {"sigma 0.6": 49.0})
    score, ok, pick = mod.select(acc, changed, fixed="sigma 0.6")
    assert pick == "sigma 0.6" and not ok["sigma 0.6"] and score["sigma 0.6"] == 49.0


def _fake_recognizer(preds: list[np.ndarray]) -> type:
    from fsrfer_edge import Preprocessing

    class Fake:
        def __init__(self, model: Any, threads: Any = None) -> None:
            self.info = SimpleNamespace(input_dtype="float32", preprocessing=Preprocessing())

        def __enter__(self) -> "Fake":
            return self

        def __exit__(self, *a: Any) -> None:
            return None

        def predict_logits(self, x: np.ndarray) -> np.ndarray:
            # a class from each input's mean: faces whose pixels differ tend to get other classes
            cls = (np.abs(x).reshape(len(x), -1).mean(axis=1) * 1e4).astype(np.int64) % 7
            preds.append(cls)
            return np.eye(7)[cls]

    return Fake


def _spy_lr_crops(monkeypatch) -> list[tuple[int, str, Any]]:
    """trainer.evaluate.lr_crops, recording each call's (factor, kernel, quality); returns the record."""
    import trainer.evaluate as ev

    calls: list[tuple[int, str, Any]] = []
    real = ev.lr_crops

    def lr_crops(images, factor, kernel, quality=None):
        calls.append((factor, kernel, quality))
        return real(images, factor, kernel, quality)

    monkeypatch.setattr(ev, "lr_crops", lr_crops)
    return calls


def test_jpeg_crops_runs_each_row_at_its_quality_and_counts_the_faces_a_candidate_changes(tiny_npz, tmp_path,
                                                                                        monkeypatch):
    # kills: a row's quality changed (q75 row saved at 70); changed = all faces instead of those whose pixels differ
    pytest.importorskip("PIL")
    import fsrfer_edge
    import trainer.evaluate as ev

    mod = _script("jpeg_crops")
    real = ev.lr_crops
    calls = _spy_lr_crops(monkeypatch)
    monkeypatch.setattr(fsrfer_edge, "Recognizer", _fake_recognizer([]))
    out = tmp_path / "r.json"
    model = REPO / "fsrfer_edge" / "models" / "default.onnx"
    assert mod.main(["--data", str(tiny_npz), "--json", str(out), "--model", str(model)]) == 0
    doc = json.loads(out.read_text())
    want = [(f, kernel, q) for _, kernel, q in mod.ROWS for f in mod.FACTORS]
    assert calls == want
    for name, _, q in mod.ROWS:
        if q is not None:
            assert name.startswith(f"area + JPEG q{q}")
    from fsrfer_edge import Corrections, Preprocessing

    pre = Preprocessing()
    for (row, kernel, q) in mod.ROWS:
        for f in mod.FACTORS:
            crops = list(real(np.load(tiny_npz)["images"][:4], f, kernel, q))
            base = pre.to_pixels(crops, corrections=Corrections(soften_jpeg=0.0))
            for name, sigma in ((mod.name_of(s), s) for s in mod.SIGMAS):
                px = pre.to_pixels(crops, corrections=Corrections(soften_jpeg=sigma))
                n = int((px != base).reshape(len(px), -1).any(axis=1).sum())
                assert doc["changed"][name][row][str(f)] == n, (name, row, f)
    assert all(v == 0 for k in doc["changed"] for r in mod.CLEAN for v in doc["changed"][k][r].values())


def test_jpeg_crops_adopts_at_exactly_the_least_gain(tiny_npz, tmp_path, monkeypatch):
    # kills: "gain >= MIN_GAIN" made ">" in the written "adopted"
    import fsrfer_edge

    mod = _script("jpeg_crops")
    monkeypatch.setattr(fsrfer_edge, "Recognizer", _fake_recognizer([]))
    gain = {"g": 0.0}
    monkeypatch.setattr(mod, "select", lambda acc, changed, fixed=None: (
        {"off": 1.0, "sigma 0.4": 1.0 + gain["g"]}, {"off": True, "sigma 0.4": True}, "sigma 0.4"))
    model = REPO / "fsrfer_edge" / "models" / "default.onnx"
    for g, adopted in ((mod.MIN_GAIN, True), (mod.MIN_GAIN - 0.5, False)):
        gain["g"] = g
        out = tmp_path / f"r{g}.json"
        mod.main(["--data", str(tiny_npz), "--json", str(out), "--model", str(model)])
        doc = json.loads(out.read_text())
        assert doc["gain_over_off"] == round(g, 3) and doc["adopted"] is adopted


# ------------------------------------------------------------------------------------ scripts/jpeg_frame_calibration.py

def test_the_frame_rule_allows_a_factor_rising_exactly_the_bound():
    # kills: "rise <= RISE" made "<"
    mod = _script("jpeg_frame_calibration")
    cells = {"50": {str(f): {"today": 4.0, "frame": 2.0} for f in mod.FACTORS},
             "75": {str(f): {"today": 3.0, "frame": 3.0} for f in mod.FACTORS}}
    cells["50"]["2"] = {"today": 0.0, "frame": mod.RISE}
    d = mod.decide(cells)
    assert d["worst_rise_at_50"] == mod.RISE and d["adopted"]


def test_frame_data_area_shrinks_the_faces_and_asks_the_logits_at_the_factor():
    # kills: the factor not passed on to the logits function; the faces bicubic-shrunk instead of area-shrunk
    pytest.importorskip("PIL")
    from fsrfer_edge import Preprocessing
    from trainer.evaluate import lr_crops

    mod = _script("jpeg_frame_calibration")
    pre, fn = Preprocessing(), _FakeFn()
    images = _faces(3)
    offsets = np.array([[0, 0], [3, 5], [7, 1]])
    z, own, framed = mod.frame_data(fn, pre, images, 3, 50, offsets)
    assert z.shape == (3, 7) and fn.factors == [3]
    crops, marked = mod.frame_crops(lr_crops(images, 3, "box"), 50, offsets)
    np.testing.assert_array_equal(fn.inputs[0], pre.normalize(pre.to_pixels(list(crops))))
    assert framed.tolist() == marked.tolist() and framed.all()


# ---------------------------------------------------------------------------------- scripts/jpeg_quality_calibration.py

def test_the_quality_is_read_on_a_48_px_crop_and_not_on_a_larger_one():
    # kills: "<= 48" made "< 48" (the protocols' x1 crops never read)
    pytest.importorskip("PIL")
    mod = _script("jpeg_quality_calibration")
    assert mod.read_quality(_jpeg(blob_face(48), 50)) == 50
    big = np.kron(blob_face(32), np.ones((2, 2), np.uint8))[:56, :56]
    assert mod.read_quality(_jpeg(np.ascontiguousarray(big), 50)) is None
    # session 69: the side is the model's (a 64 px model reads a 56 px crop), not always 48
    assert mod.read_quality(_jpeg(np.ascontiguousarray(big), 50), 64) == 50
    assert mod.read_quality(_jpeg(blob_face(48), 50), 40) is None


def test_crops_data_gives_protocol_b_its_bicubic_crops_and_the_logits_their_factor():
    # kills: the clean crops shrunk by the box kernel; the factor not passed on
    from fsrfer_edge import Preprocessing
    from trainer.evaluate import lr_crops

    mod = _script("jpeg_quality_calibration")
    pre, fn = Preprocessing(), _FakeFn()
    images = _faces(3)
    z, marks, read = mod.crops_data(fn, pre, images, 4, None)
    assert fn.factors == [4] and not marks.any() and (read == 0).all()
    np.testing.assert_array_equal(fn.inputs[0], pre.normalize(pre.to_pixels(list(lr_crops(images, 4, "bicubic")))))


class _Maps:
    def __init__(self, value: float) -> None:
        self.value = value

    def confidence(self, z: np.ndarray, f: np.ndarray, marks: Any = None) -> np.ndarray:
        out = np.full(len(z), self.value)
        return out if marks is None else np.where(marks, self.value + 100, out)


def test_each_method_takes_its_maps():
    # kills: q50's marked crops given the quality-30 maps
    mod = _script("jpeg_quality_calibration")
    maps = {"base": _Maps(1.0), 30: _Maps(3.0), 50: _Maps(5.0), 70: _Maps(7.0)}
    marks = np.array([False, True, True, True])
    read = np.array([0, 25, 55, 90])
    got = mod.confidences(maps, np.zeros((4, 7)), marks, read, 2)
    assert got["base"].tolist() == [1.0] * 4
    assert got["q50"].tolist() == [5.0, 105.0, 105.0, 105.0]
    assert got["per_quality"].tolist() == [1.0, 103.0, 105.0, 107.0]


def test_each_fitted_quality_takes_maps_from_its_own_crops(monkeypatch):
    # kills: every fitted quality's maps fitted on the quality-50 crops
    mod = _script("jpeg_quality_calibration")
    seen: list[np.ndarray] = []

    class Base:
        def with_jpeg(self, z, labels, min_faces):
            seen.append(np.concatenate([z[f] for f in mod.FACTORS]))
            return len(seen)

    monkeypatch.setattr(mod, "fits", lambda *a: {"logistic": Base()})
    n = 6
    small = {f: np.zeros((n, 7)) for f in mod.FACTORS}
    jpeg = {q: {f: (np.full((n, 7), float(q)), np.ones(n, bool), np.zeros(n, int)) for f in mod.FACTORS}
            for q in mod.FITTED}
    out = mod.fit_maps(small, jpeg, np.zeros(n, int), np.ones(n, bool), ["c"] * 7)
    assert [float(s.mean()) for s in seen] == [float(q) for q in mod.FITTED]
    assert [out[q] for q in mod.FITTED] == [1, 2, 3]


# ----------------------------------------------------------------------------------------- scripts/jpeg_flat_blocks.py

def test_the_flat_crop_test_turns_the_flat_block_tolerance_on_for_crops_and_restores_it(monkeypatch):
    # kills: the patched _dc_qualities passing on the default (False) instead of True
    from fsrfer_edge import preprocessing

    mod = _script("jpeg_flat_blocks")
    calls: list[bool] = []
    fake = lambda blocks, unclipped, flat_blocks=False: calls.append(flat_blocks)  # noqa: E731
    monkeypatch.setattr(preprocessing, "_dc_qualities", fake)
    with mod.flat_crop_test():
        preprocessing._dc_qualities(None, None)
    assert calls == [True] and preprocessing._dc_qualities is fake


def test_clean_frames_are_area_shrunk_by_each_factor_and_counted_by_the_new_test(monkeypatch):
    # kills: shrinks by another kernel; read_new counting the old reads; the as-is frame left out of the shrinks
    pytest.importorskip("PIL")
    mod = _script("jpeg_flat_blocks")
    img = np.random.default_rng(0).integers(0, 256, (24, 36)).astype(np.uint8)
    half = mod.shrunk(img, 2)
    assert half.shape == (12, 18)
    assert np.abs(half.astype(float) - img.reshape(12, 2, 18, 2).mean(axis=(1, 3))).max() <= 1.0
    shapes: list[tuple[int, ...]] = []
    monkeypatch.setattr(mod, "both_reads", lambda frame: shapes.append(frame.shape) or (None, 50))
    result = mod.clean({"a": img})
    assert list(result["reads"]["a"]) == ["1", "2", "3"] and shapes == [(24, 36), (12, 18), (8, 12)]
    assert (result["frames"], result["read_old"], result["read_new"]) == (3, 0, 3)


def test_the_flat_blocks_rule_needs_no_clean_frame_read(monkeypatch, tmp_path):
    # kills: the clean frames' part dropped from "adopted"
    pytest.importorskip("skimage")
    mod = _script("jpeg_flat_blocks")
    monkeypatch.setattr(mod, "held_out_photos", lambda: {"p": np.zeros((8, 8), np.uint8)})
    monkeypatch.setattr(mod.jpeg_frame_reads, "photos", lambda: {})
    monkeypatch.setattr(mod, "held_out", lambda photos: {"reads": {}, "frames": 2, "read_old": 1, "read_new": 2,
                                                         "lost": 0, "wrong_old": 0, "wrong_new": 0})
    for read_new, adopted in ((0, True), (1, False)):
        monkeypatch.setattr(mod, "clean", lambda photos, r=read_new: {"reads": {}, "frames": 3, "read_old": 0,
                                                                      "read_new": r})
        out = tmp_path / f"f{read_new}.json"
        assert mod.main(["--json", str(out), "--no-crops"]) == 0
        assert json.loads(out.read_text())["adopted"] is adopted


def test_the_crop_marks_count_every_crop_whose_read_changed(tiny_npz, monkeypatch):
    # kills: "changed" counted as the difference of the marked counts (a crop read at another quality missed)
    from fsrfer_edge import preprocessing

    mod = _script("jpeg_flat_blocks")

    @contextlib.contextmanager
    def reads_40():
        with monkeypatch.context() as m:
            m.setattr(preprocessing, "jpeg_quality", lambda img: 40)
            yield

    monkeypatch.setattr(mod, "flat_crop_test", reads_40)
    args = SimpleNamespace(data=str(tiny_npz), split="val", limit=0)
    out = mod.crop_marks(args)
    assert list(out) == ["clean"] + [str(q) for q in mod.CROP_QUALITIES]
    assert out["30"]["1"] == {"marked_old": 100.0, "marked_new": 100.0, "changed": 4, "n": 4}  # read 30, then 40
    assert out["40"]["1"]["changed"] == 0 and out["clean"]["1"]["changed"] == 4


# ----------------------------------------------------------------------------------------- scripts/jpeg_frame_reads.py

def test_the_frame_reads_count_frames_read_and_those_read_at_their_quality(monkeypatch, tmp_path):
    # kills: read_right counting every frame read
    pytest.importorskip("skimage")
    mod = _script("jpeg_frame_reads")
    monkeypatch.setattr(mod, "photos", lambda: {"a": np.zeros((8, 8), np.uint8), "b": np.zeros((8, 8, 3), np.uint8)})
    monkeypatch.setattr(mod, "read_at", lambda img, q: None if q == 20 else (q + 5 if q == 50 else q))
    out = tmp_path / "r.json"
    assert mod.main(["--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    n = len(mod.QUALITIES)
    assert (doc["frames"], doc["read"], doc["read_right"]) == (2 * n, 2 * (n - 1), 2 * (n - 2))
    assert doc["photos"]["b"]["shape"] == [8, 8, 3] and doc["photos"]["a"]["read"]["50"] == 55


def test_the_frame_reads_photos_add_a_gray_copy_of_each_colour_one():
    # kills: the gray copy made of the gray photo instead of the colour ones
    pytest.importorskip("skimage")
    mod = _script("jpeg_frame_reads")
    photos = mod.photos()
    assert set(photos) == {"astronaut", "astronaut (gray)", "coffee", "coffee (gray)", "chelsea", "chelsea (gray)",
                           "camera"}
    assert all(v.ndim == 2 for k, v in photos.items() if k.endswith("(gray)") or k == "camera")


# -------------------------------------------------------------------------------------------- scripts/jpeg_detection.py

def test_jpeg_detection_cuts_off_the_grid_and_scores_each_row_at_its_quality(tiny_npz, tmp_path, monkeypatch):
    # kills: offsets from 0 (the cut on the grid); right_quality over every crop; every JPEG row saved at 50
    pytest.importorskip("cv2")
    pytest.importorskip("PIL")
    from fsrfer_edge.preprocessing import jpeg_quality
    from trainer.evaluate import lr_crops

    mod = _script("jpeg_detection")

    class LowRng:
        def integers(self, lo, hi, size):
            return np.full(size, lo)

    real_rng = np.random.default_rng
    monkeypatch.setattr(np.random, "default_rng", lambda seed=None: LowRng() if seed == 0 else real_rng(seed))
    out = tmp_path / "d.json"
    assert mod.main(["--data", str(tiny_npz), "--faces", "2", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert all(v == 0.0 for v in doc["marked"]["area + JPEG q50, cut at an offset"].values())
    images = np.load(tiny_npz)["images"][4:6]
    for q in (90, 75, 50, 30):
        for f in mod.FACTORS:
            found = [jpeg_quality(c) for c in lr_crops(images, f, "box", q)]
            hits = [r for r in found if r is not None]
            want = round(100.0 * float(np.mean([r == q for r in hits])), 1) if hits else None
            if q in doc["qualities_tested"]:
                assert doc["right_quality"][f"area + JPEG q{q}"][str(f)] == want, (q, f)
            assert doc["marked"][f"area + JPEG q{q}"][str(f)] == round(100.0 * len(hits) / len(found), 1)


# ----------------------------------------------------------------------------------------------- scripts/camera_gap.py

def test_camera_gap_marks_quality_50_as_protocol_c():
    # kills: the "(c)" label on another quality
    mod = _script("camera_gap")
    assert [name for name, _, _ in mod.steps((90, 50, 30))] == [
        "bicubic (b)", "area", "area + JPEG q90", "area + JPEG q50 (c)", "area + JPEG q30"]


def test_camera_gap_runs_each_row_at_its_kernel_and_quality_and_allows_quality_100(tiny_npz, tmp_path, monkeypatch,
                                                                                    capsys):
    # kills: the rows' crops made at another quality than their own; quality 100 refused
    pytest.importorskip("onnxruntime")
    mod = _script("camera_gap")
    calls = _spy_lr_crops(monkeypatch)
    out = tmp_path / "g.json"
    mod.main(["--data", str(tiny_npz), "--factors", "2", "--qualities", "100,50", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["kernel"], r["jpeg_quality"]) for r in rows] == [("bicubic", None), ("box", None), ("box", 100),
                                                                ("box", 50)]
    assert calls == [(2, k, q) for _, k, q in mod.steps((100, 50))]
    # session 69: the recorded command is the one run (it named --json and --split only), and the run says so
    doc = json.loads(out.read_text())
    assert doc["command"] == f"python scripts/camera_gap.py --data {tiny_npz} --factors 2 --qualities 100,50 --json {out}"
    assert f"wrote {out}" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="qualities in 1..100"):
        mod.main(["--data", str(tiny_npz), "--qualities", "101", "--json", str(out)])


# ----------------------------------------------------------------------------------------- scripts/enlarging_kernels.py

def test_each_app_way_is_its_own_kernel_after_an_area_shrink_to_the_rounded_side():
    # kills: pil_lanczos given PIL's bicubic; cv2_lanczos4 given OpenCV's cubic; the shrunk side n // f + 1
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("PIL")
    mod = _script("enlarging_kernels")
    faces = np.random.default_rng(0).uniform(0, 255, (2, 48, 48)).astype(np.float32)
    out = {w: mod.app_enlarged(faces, 4, w) for w in mod.WAYS}
    for i, a in enumerate(mod.WAYS):
        for b in mod.WAYS[i + 1:]:
            assert not np.array_equal(out[a], out[b]), (a, b)
    face = np.clip(np.rint(faces[0]), 0, 255).astype(np.uint8)
    for f, side in ((4, 12), (3, 16)):
        small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(mod.app_enlarged(faces[:1], f, "cv2_lanczos4")[0],
                                      cv2.resize(small, (48, 48), interpolation=cv2.INTER_LANCZOS4))


# -------------------------------------------------------------------------------------- scripts/linear_enlarging_rule.py

def test_min_max_is_the_least_and_the_most_of_any_order():
    # kills: the first and last value taken for the least and the most
    mod = _script("linear_enlarging_rule")
    assert mod.min_max([3.0, 1.25, 2.0]) == [1.25, 3.0] and mod.min_max([]) is None


def test_train_crops_enlarge_with_each_kinds_kernel_and_blur_at_each_sigma():
    # kills: every kind enlarged bilinearly; every blur at sigma 1
    cv2 = pytest.importorskip("cv2")
    mod = _script("linear_enlarging_rule")
    face = blob_face(48)
    kinds = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
    got = list(mod.train_crops(cv2, face[None], [12], kinds))
    assert [(k, s) for k, _, s in got] == [("linear", 12), ("cubic", 12)] + [("gaussian blur", None)] * len(mod.BLURS)
    small = cv2.resize(face, (12, 12), interpolation=cv2.INTER_AREA)
    for (kind, crop, _), interp in zip(got, kinds.values()):
        np.testing.assert_array_equal(crop, cv2.resize(small, (48, 48), interpolation=interp).astype(np.float32))
    for (_, crop, _), sigma in zip(got[2:], mod.BLURS):
        np.testing.assert_array_equal(crop, cv2.GaussianBlur(face, (0, 0), sigma).astype(np.float32))


# --------------------------------------------------------------------------------------- scripts/enlarged_confidence.py

def test_the_estimate_is_read_for_input_size_crops_unmarked_or_marked_too_and_floored_at_x1():
    # kills: "marked_too | unmarked" made "&"; ">= input" made ">"; the estimate's floor at 1 dropped
    mod = _script("enlarged_confidence")
    d = {"sides": np.array([48, 24, 48, 48]), "marks": np.array([False, False, True, False]),
         "features": np.array([[2.0], [2.0], [2.0], [-1.0]])}
    rows = np.arange(4)
    w = np.array([1.0])
    assert mod.factors_of(d, rows, 48, None, 8.0).tolist() == [1.0, 2.0, 1.0, 1.0]
    assert mod.factors_of(d, rows, 48, w, 8.0).tolist() == [4.0, 2.0, 4.0, 1.0]
    assert mod.factors_of(d, rows, 48, w, 8.0, marked_too=False).tolist() == [4.0, 2.0, 1.0, 1.0]
    assert mod.factors_of(d, rows, 48, w * 2, 8.0).tolist() == [8.0, 2.0, 8.0, 1.0]


def test_enlarged_crops_are_whole_grey_levels_rounded_to_the_nearest():
    # kills: the bicubic values truncated instead of rounded
    from fsrfer_edge.preprocessing import degrade

    mod = _script("enlarged_confidence")
    faces = _faces(2)
    out = mod.enlarged(faces, 3)
    assert out.dtype == np.uint8
    assert np.abs(out - np.clip(degrade(faces, 3), 0, 255)).max() <= 0.5 + 1e-4


def test_sdk_data_asks_the_logits_at_the_crops_factor():
    # kills: the factor not passed on to the logits function
    from fsrfer_edge import Preprocessing

    mod = _script("enlarged_confidence")
    fn = _FakeFn()
    d = mod.sdk_data(fn, Preprocessing(), _faces(2, 16), 3)
    assert fn.factors == [3] and d["sides"].tolist() == [16, 16] and d["features"].shape == (2, 7)


def test_the_enlarged_crops_rule_means_the_fall_over_x2_to_x8_only():
    # kills: x1 taken into the mean fall
    mod = _script("enlarged_confidence")
    a = {str(f): {"today": 9.0, "estimate": 9.0 - mod.GAIN} for f in mod.FACTORS}
    a["1"] = {"today": 1.0, "estimate": 1.0}
    d = mod.decide({"a": a, "c": {"1": {"today": 2.0, "estimate": 2.0}}}, "estimate")
    assert d["mean_fall_x2_x8"] == mod.GAIN and d["met"]
