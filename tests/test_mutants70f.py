"""Tests that kill hand-made mutants (round 70, task K70f) of the JPEG and camera-degradation scripts, a second pass
after round 68: scripts/jpeg_crops.py (a --pick-from pick that is no candidate refused, a non-float32 model refused,
each candidate's accuracy from the base predictions of its own, off's accuracy, the val pick kept on test, the
command written), scripts/jpeg_frame_calibration.py (the face set into mirrored surroundings at its offset, the
crops' own marks, each batch's own offsets, the rule's fall and 75 bounds, the frame method given the frames' marks,
the small-JPEG-maps side passed on only with its flag), scripts/jpeg_quality_calibration.py (per_quality maps only for
marked crops, the quality read at the model's side, the rule's quality rise and its fall and quality-50 bounds, the
cells' marked / read_own / read_within_5 over the marked crops), scripts/jpeg_flat_blocks.py (wrong reads never
counting a None, the rule's strict gain, its tie of wrong reads, its lost part, the crops area-shrunk, the command
written) and scripts/jpeg_detection.py (the enlarged rows from x2 only, each with its own kernel at 48 px, right
quality only at the qualities the reader knows, the offset row saved at 50, the command written). Tiny synthetic
faces, a tiny .npz in tmp_path, fakes for the model and the heavy parts where the script's arithmetic is the point."""
from __future__ import annotations

import io
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from _faces import blob_face
from _scripts import load_script
from test_mutants68g import _FakeFn


def _script(name: str) -> ModuleType:
    return load_script(f"scripts/{name}.py", f"{name}_70f")


def _faces(n: int = 4, side: int = 48) -> np.ndarray:
    return np.stack([blob_face(side, s) for s in range(n)])


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


def _npz(path: Path, val_labels: list[int]) -> Path:
    """A plain archive of blob faces: len(val_labels) val faces with those labels, 2 train, 2 test."""
    n = len(val_labels)
    np.savez(path, images=_faces(n + 4), labels=np.array(val_labels + [0, 1, 2, 3]),
             split=np.array(["val"] * n + ["train"] * 2 + ["test"] * 2))
    return path


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    """A stand-in model file (only hashed and named by the scripts whose model is faked)."""
    path = tmp_path / "m.onnx"
    path.write_bytes(b"not a model")
    return path


# ---------------------------------------------------------------------------------------------- scripts/jpeg_crops.py

class _SigmaPre:
    """A preprocessing whose pixels say which candidate changed a face: sigma s changes face i where (i + 10 s) is
    even, to the value s; off leaves every face at 0."""

    def to_pixels(self, crops: list, corrections: Any = None) -> np.ndarray:
        s = float(corrections.soften_jpeg)
        px = np.zeros((len(crops), 1, 2, 2), np.float32)
        for i in range(len(crops)):
            if s > 0 and (i + round(10 * s)) % 2 == 0:
                px[i] = s
        return px

    def normalize(self, px: np.ndarray) -> np.ndarray:
        return px


def _predict(x: np.ndarray) -> np.ndarray:
    """The fake model's class of each input: 10 x its first value, mod 7 (off: 0; sigma 0.4: 4; 0.5: 5 ...)."""
    return np.rint(x.reshape(len(x), -1)[:, 0] * 10).astype(np.int64) % 7


def _sigma_recognizer(dtype: str = "float32") -> type:
    class Fake:
        def __init__(self, model: Any, threads: Any = None) -> None:
            self.info = SimpleNamespace(input_dtype=dtype, preprocessing=_SigmaPre())

        def __enter__(self) -> "Fake":
            return self

        def __exit__(self, *a: Any) -> None:
            return None

        def predict_logits(self, x: np.ndarray) -> np.ndarray:
            return np.eye(7)[_predict(x)]

    return Fake


def test_jpeg_crops_scores_each_candidate_from_off_s_predictions_and_off_by_its_right_answers(tmp_path, model_file,
                                                                                          monkeypatch):
    # kills: pred = base (not a copy: a candidate starts from the one before's predictions); off's accuracy from
    # base != labels
    pytest.importorskip("PIL")
    import fsrfer_edge

    mod = _script("jpeg_crops")
    monkeypatch.setattr(fsrfer_edge, "Recognizer", _sigma_recognizer())
    labels = [5, 5, 4, 0]
    data = _npz(tmp_path / "f.npz", labels)
    out = tmp_path / "val.json"
    assert mod.main(["--data", str(data), "--json", str(out), "--model", str(model_file)]) == 0
    doc = json.loads(out.read_text())
    pre, y = _SigmaPre(), np.array(labels)
    for name, sigma in [("off", 0.0)] + [(mod.name_of(s), s) for s in mod.SIGMAS]:
        pred = _predict(pre.to_pixels([None] * 4, SimpleNamespace(soften_jpeg=sigma)))
        want = round(100.0 * float((pred == y).mean()), 2)
        for row, _, _ in mod.ROWS:
            assert set(doc["accuracy"][name][row].values()) == {want}, (name, row)
    assert doc["accuracy"]["sigma 0.5"]["area"]["1"] != doc["accuracy"]["sigma 0.4"]["area"]["1"]
    # every candidate changes 2 faces of each row, clean ones too: none meets the constraints, none is picked
    assert doc["changed"]["sigma 0.4"]["area"]["2"] == 2 and doc["pick"] is None and doc["gain_over_off"] is None
    assert doc["ok"] == {"off": True, **{mod.name_of(s): False for s in mod.SIGMAS}} and doc["adopted"] is False
    assert doc["command"] == f"python scripts/jpeg_crops.py --json {out}"


def test_jpeg_crops_on_test_runs_off_and_the_val_pick_only_and_keeps_that_pick(tmp_path, model_file, monkeypatch):
    # kills: fixed=None on a --pick-from run (the test split re-picks: None here); every candidate run whatever the
    # pick; the command written with --split whatever the split
    pytest.importorskip("PIL")
    import fsrfer_edge

    mod = _script("jpeg_crops")
    monkeypatch.setattr(fsrfer_edge, "Recognizer", _sigma_recognizer())
    data = _npz(tmp_path / "f.npz", [5, 5, 4, 0])
    val = tmp_path / "val.json"
    val.write_text(json.dumps({"pick": "sigma 0.6"}))
    out = tmp_path / "test.json"
    assert mod.main(["--data", str(data), "--split", "test", "--pick-from", str(val), "--json", str(out),
                     "--model", str(model_file)]) == 0
    doc = json.loads(out.read_text())
    assert doc["candidates"] == {"sigma 0.6": {"soften_jpeg": 0.6}} and set(doc["accuracy"]) == {"off", "sigma 0.6"}
    assert doc["pick"] == "sigma 0.6" and not doc["ok"]["sigma 0.6"]          # kept, though it breaks the constraints
    assert doc["gain_over_off"] == round(doc["score"]["sigma 0.6"] - doc["score"]["off"], 3)
    assert doc["split"] == "test" and doc["n"] == 2
    assert doc["command"] == f"python scripts/jpeg_crops.py --json {out} --split test --pick-from {val}"


def test_jpeg_crops_refuses_a_val_pick_that_is_not_one_of_its_candidates(tmp_path, model_file, monkeypatch):
    # kills: the check of the val file's pick removed (a KeyError, or a None pick, instead of the message)
    import fsrfer_edge

    mod = _script("jpeg_crops")
    monkeypatch.setattr(fsrfer_edge, "Recognizer", _sigma_recognizer())
    data = _npz(tmp_path / "f.npz", [5, 5, 4, 0])
    for pick in ("sigma 0.9", None):
        val = tmp_path / "val.json"
        val.write_text(json.dumps({"pick": pick}))
        with pytest.raises(SystemExit, match="is not one of this script's candidates"):
            mod.main(["--data", str(data), "--split", "test", "--pick-from", str(val),
                      "--json", str(tmp_path / "t.json"), "--model", str(model_file)])
        assert not (tmp_path / "t.json").exists()


def test_jpeg_crops_refuses_a_model_that_does_not_take_float32(tmp_path, model_file, monkeypatch):
    # kills: the float32-input check removed (the normalised faces given to a quantised-input model)
    import fsrfer_edge

    mod = _script("jpeg_crops")
    monkeypatch.setattr(fsrfer_edge, "Recognizer", _sigma_recognizer("uint8"))
    data = _npz(tmp_path / "f.npz", [5, 5, 4, 0])
    with pytest.raises(SystemExit, match="expected a float32-input model"):
        mod.main(["--data", str(data), "--json", str(tmp_path / "r.json"), "--model", str(model_file)])


# ------------------------------------------------------------------------------------ scripts/jpeg_frame_calibration.py

def test_a_face_is_set_into_its_mirrored_surroundings_at_its_offset(monkeypatch):
    # kills: the frame padded with the face's edge repeated once more (np.pad's "reflect", not "symmetric"); the
    # offset's pixels padded after the face instead of before it
    pytest.importorskip("PIL")
    from PIL import Image

    mod = _script("jpeg_frame_calibration")
    frames: list[np.ndarray] = []
    real = Image.fromarray
    monkeypatch.setattr(Image, "fromarray", lambda a, *args, **kw: frames.append(np.array(a)) or real(a, *args, **kw))
    small = _faces(2, 16)
    mod.frame_crops(small, 50, np.array([[2, 5], [0, 3]]))
    b = mod.BORDER
    for face, frame, (dy, dx) in zip(small, frames, [(2, 5), (0, 3)]):
        assert frame.shape == (16 + 2 * b + dy, 16 + 2 * b + dx)
        np.testing.assert_array_equal(frame[b + dy:b + dy + 16, b + dx:b + dx + 16], face)   # the face at its offset
        np.testing.assert_array_equal(frame[b + dy - 1, b + dx:b + dx + 16], face[0])         # mirrored: its edge row
        np.testing.assert_array_equal(frame[b + dy:b + dy + 16, b + dx - 1], face[:, 0])      # and column once more
        np.testing.assert_array_equal(frame[b + dy + 16, b + dx:b + dx + 16], face[-1])


def test_frame_data_gives_each_crop_its_own_mark_and_each_batch_its_own_offsets():
    # kills: the crops' own marks replaced by their frames' marks; every batch cut at the first batch's offsets
    pytest.importorskip("PIL")
    from fsrfer_edge import Preprocessing
    from trainer.evaluate import lr_crops

    mod = _script("jpeg_frame_calibration")
    pre, fn = Preprocessing(), _FakeFn()
    images = _faces(3)
    offsets = np.array([[0, 0], [3, 5], [7, 1]])
    z, own, framed = mod.frame_data(fn, pre, images, 3, 50, offsets, batch=2)
    crops, marked = mod.frame_crops(lr_crops(images, 3, "box"), 50, offsets)
    flags: list[bool] = []
    want = pre.normalize(pre.to_pixels(list(crops), jpeg=flags))
    np.testing.assert_array_equal(np.concatenate(fn.inputs), want)
    assert fn.factors == [3, 3] and z.shape == (3, 7)
    assert own.tolist() == flags and framed.tolist() == marked.tolist()
    assert framed.all() and not own.all()                         # off the grid the crop does not mark itself


def _frame_cells(mod: ModuleType, today: float, frame: float, today75: float, frame75: float) -> dict:
    return {"50": {str(f): {"today": today, "frame": frame} for f in mod.FACTORS},
            "75": {str(f): {"today": today75, "frame": frame75} for f in mod.FACTORS}}


def test_the_frame_rule_adopts_at_exactly_the_least_fall_and_exactly_the_75_bound():
    # kills: "fall >= GAIN" made ">"; "rise75 <= RISE_AT_75" made "<"
    mod = _script("jpeg_frame_calibration")
    d = mod.decide(_frame_cells(mod, 4.0, 4.0 - mod.GAIN, 0.0, 0.0))
    assert d["mean_fall_at_50"] == mod.GAIN and d["adopted"]
    d = mod.decide(_frame_cells(mod, 4.0, 2.0, 0.0, mod.RISE_AT_75))
    assert d["mean_rise_at_75"] == mod.RISE_AT_75 and d["adopted"]
    assert not mod.decide(_frame_cells(mod, 4.0, 2.0, 0.0, mod.RISE_AT_75 + 0.25))["adopted"]


class _MarkCal:
    """Maps whose confidence of a crop is 1 where it is given the JPEG maps (its mark), else 0."""

    def confidence(self, z: np.ndarray, f: np.ndarray, marks: Any = None) -> np.ndarray:
        return np.zeros(len(z)) if marks is None else np.asarray(marks, dtype=np.float64)


def test_the_frame_study_gives_the_frame_method_the_frames_marks_and_the_small_maps_side_with_its_flag(
        tmp_path, model_file, monkeypatch):
    # kills: "frame" confidences from the crops' own marks; crops_marked from the frames' marks; the faces' side
    # passed to the maps' fit without --small-jpeg-maps
    import trainer.evaluate as ev

    mod = _script("jpeg_frame_calibration")
    n = 8
    images, labels = _faces(n, 16), np.arange(n) % 7
    own = np.arange(n) % 4 == 0                                   # 2 of 8 crops mark themselves
    framed = np.arange(n) % 4 != 3                                # 6 of 8 frames are marked
    monkeypatch.setattr(ev, "onnx_logits_fn", lambda model, threads=None: (None, SimpleNamespace(classes="abcdefg")))
    monkeypatch.setattr(mod, "study_faces", lambda args, split: (images, labels))
    monkeypatch.setattr(mod, "crops_data", lambda fn, pre, imgs, f, q: (np.zeros((n, 7)), np.zeros(n, bool), None))
    sides: list[int] = []
    monkeypatch.setattr(mod, "shipped_kind", lambda *a: sides.append(a[-1]) or _MarkCal())
    monkeypatch.setattr(mod, "frame_data", lambda fn, pre, imgs, f, q, offsets: (np.eye(7)[labels], own, framed))
    for flag, side in (([], 0), (["--small-jpeg-maps"], 16)):
        sides.clear()
        out = tmp_path / f"r{side}.json"
        assert mod.main(["--model", str(model_file), "--json", str(out)] + flag) == 0
        doc = json.loads(out.read_text())
        assert sides == [side, side] and doc["small_jpeg_maps"] is bool(flag)
        assert doc["command"].endswith(" --small-jpeg-maps") is bool(flag)
        cell = doc["cells"]["50"]["2"]
        assert (cell["mean_today"], cell["mean_frame"]) == (25.0, 75.0)
        assert (cell["crops_marked"], cell["frames_marked"], cell["accuracy"]) == (25.0, 75.0, 100.0)


# ---------------------------------------------------------------------------------- scripts/jpeg_quality_calibration.py

class _Maps:
    def __init__(self, value: float, jpeg: float = 100.0) -> None:
        self.value, self.jpeg = value, jpeg

    def confidence(self, z: np.ndarray, f: np.ndarray, marks: Any = None) -> np.ndarray:
        out = np.full(len(z), self.value)
        return out if marks is None else np.where(marks, self.value + self.jpeg, out)


def test_per_quality_maps_go_to_marked_crops_only_whatever_quality_is_read():
    # kills: per_quality's rows chosen by the quality read alone (an unmarked crop given JPEG maps)
    mod = _script("jpeg_quality_calibration")
    maps = {"base": _Maps(1.0), 30: _Maps(3.0), 50: _Maps(5.0), 70: _Maps(7.0)}
    got = mod.confidences(maps, np.zeros((3, 7)), np.array([False, True, False]), np.array([55, 55, 30]), 4)
    assert got["per_quality"].tolist() == [1.0, 105.0, 1.0] and got["q50"].tolist() == [5.0, 105.0, 5.0]


class _FactorMaps:
    """Maps whose confidence of a crop is the factor it is asked at, recorded."""

    def __init__(self) -> None:
        self.factors: list[float] = []

    def confidence(self, z: np.ndarray, f: np.ndarray, marks: Any = None) -> np.ndarray:
        self.factors += [float(v) for v in f]
        return np.asarray(f, dtype=np.float64)


def test_every_method_asks_its_maps_at_the_crops_factor():
    # kills: the factors given to the maps as 1 (every crop scored by the x1 map)
    mod = _script("jpeg_quality_calibration")
    maps = {"base": _FactorMaps(), 30: _FactorMaps(), 50: _FactorMaps(), 70: _FactorMaps()}
    got = mod.confidences(maps, np.zeros((2, 7)), np.array([True, False]), np.array([70, 0]), 6)
    assert all(c.tolist() == [6.0, 6.0] for c in got.values())
    assert maps[70].factors == [6.0] and set(maps["base"].factors) == {6.0}


def test_crops_data_reads_the_quality_at_the_model_s_input_side():
    # kills: the quality read at the default 48 px side (a 64 px model's 56 px marked crops read as none)
    pytest.importorskip("PIL")
    from fsrfer_edge import Preprocessing

    mod = _script("jpeg_quality_calibration")
    pre, fn = Preprocessing(input_size=64), _FakeFn()
    big = np.stack([np.kron(blob_face(28, s), np.ones((2, 2), np.uint8)) for s in range(2)])   # 56 px faces
    z, marks, read = mod.crops_data(fn, pre, big, 1, 50)
    assert marks.all() and read.tolist() == [50, 50]


def _quality_means(mod: ModuleType, q50: float, per: float) -> dict:
    return {str(q): {"base": 4.0, "q50": q50, "per_quality": per} for q in mod.QUALITIES}


def test_the_quality_rule_refuses_one_quality_that_rises_and_adopts_at_the_exact_bounds():
    # kills: a quality's rise taken as q50 - per_quality (its fall); "fall >= GAIN" made ">"; "rise50 <=" made "<"
    mod = _script("jpeg_quality_calibration")
    at50 = {str(f): {"q50": 2.0, "per_quality": 2.0} for f in mod.FACTORS}
    means = _quality_means(mod, 4.0, 3.0)
    means["20"] = {"base": 4.0, "q50": 2.0, "per_quality": 2.5}             # 0.5 worse at one quality
    d = mod.decide(means, at50)
    assert d["worst_quality_rise"] == 0.5 and d["mean_fall"] >= mod.GAIN and not d["adopted"]
    d = mod.decide(_quality_means(mod, 4.0, 4.0 - mod.GAIN), at50)
    assert d["mean_fall"] == mod.GAIN and d["adopted"]
    d = mod.decide(_quality_means(mod, 4.0, 3.0), dict(at50, **{"3": {"q50": 0.0, "per_quality": mod.RISE_AT_50}}))
    assert d["worst_rise_at_50"] == mod.RISE_AT_50 and d["adopted"]


def test_the_quality_study_counts_marks_and_reads_over_the_marked_crops(tmp_path, model_file, monkeypatch):
    # kills: read_own over every crop; read_within_5 "<= 5" made "< 5"; marked counted from the reads; val's data
    # made at the fitted qualities only
    import trainer.evaluate as ev

    mod = _script("jpeg_quality_calibration")
    n = 8
    images, labels = _faces(n, 16), np.arange(n) % 7
    marks = np.arange(n) % 4 != 3                                # 6 of 8 marked
    offs = np.array([0, 5, -5, 0, 10, 0, 0, 0])

    def crops_data(fn, pre, imgs, f, q):
        if q is None:
            return np.zeros((n, 7)), np.zeros(n, bool), np.zeros(n, np.int64)
        read = np.where(marks, q + offs, 0)
        read[5] = 0                                              # a marked crop whose quality is not read
        return np.eye(7)[labels], marks, read

    monkeypatch.setattr(ev, "onnx_logits_fn", lambda model, threads=None: (None, SimpleNamespace(classes="abcdefg")))
    monkeypatch.setattr(mod, "study_faces", lambda args, split: (images, labels))
    monkeypatch.setattr(mod, "crops_data", crops_data)
    maps = {"base": _Maps(0.5), 30: _Maps(0.3, 0.1), 50: _Maps(0.5, 0.1), 70: _Maps(0.7, 0.1)}
    monkeypatch.setattr(mod, "fit_maps", lambda *a: maps)
    out = tmp_path / "q.json"
    assert mod.main(["--model", str(model_file), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert list(doc["cells"]) == [str(q) for q in mod.QUALITIES]
    cell = doc["cells"]["40"]["2"]
    # marked crops: 0 (read 40), 1 (45), 2 (35), 4 (50), 5 (none read), 6 (40)
    assert cell["marked"] == 75.0 and cell["accuracy"] == 100.0
    assert cell["read_own"] == round(100 * 2 / 6, 2) and cell["read_within_5"] == round(100 * 4 / 6, 2)


# ----------------------------------------------------------------------------------------- scripts/jpeg_flat_blocks.py

def test_held_out_counts_reads_lost_and_wrong_and_never_a_none_as_wrong(monkeypatch):
    # kills: wrong_old / wrong_new counting a frame not read (None) as a wrong read
    mod = _script("jpeg_flat_blocks")
    reads = {20: (None, None), 25: (None, 25), 30: (30, 35), 35: (40, 35)}        # the others read right by both
    monkeypatch.setattr(mod, "decoded", lambda img, q: q)
    monkeypatch.setattr(mod, "both_reads", lambda q: reads.get(q, (q, q)))
    r = mod.held_out({"p": np.zeros((8, 8), np.uint8)})
    n = len(mod.QUALITIES)
    assert r["reads"]["p"]["25"] == [None, 25] and r["frames"] == n
    assert (r["read_old"], r["read_new"]) == (n - 3, n - 2)          # old misses 20, 25, 35; new misses 20, 30
    assert (r["lost"], r["wrong_old"], r["wrong_new"]) == (1, 1, 1)


def _flat_main(mod: ModuleType, monkeypatch, tmp_path: Path, held: dict, name: str, *extra: str) -> dict:
    monkeypatch.setattr(mod, "held_out_photos", lambda: {"p": np.zeros((8, 8), np.uint8)})
    monkeypatch.setattr(mod.jpeg_frame_reads, "photos", lambda: {})
    monkeypatch.setattr(mod, "held_out", lambda photos: {"reads": {}, "frames": 4, **held})
    monkeypatch.setattr(mod, "clean", lambda photos: {"reads": {}, "frames": 3, "read_old": 0, "read_new": 0})
    out = tmp_path / f"{name}.json"
    assert mod.main(["--json", str(out), "--no-crops", *extra]) == 0
    return json.loads(out.read_text()) | {"out": str(out)}


def test_the_flat_blocks_rule_needs_more_reads_no_loss_and_no_more_wrong_ones(monkeypatch, tmp_path):
    # kills: "read_new > read_old" made ">="; "wrong_new <= wrong_old" made "<"; the "lost == 0" part dropped
    pytest.importorskip("skimage")
    mod = _script("jpeg_flat_blocks")
    good = {"read_old": 1, "read_new": 2, "lost": 0, "wrong_old": 1, "wrong_new": 1}
    assert _flat_main(mod, monkeypatch, tmp_path, good, "a")["adopted"] is True            # as many wrong: fine
    assert _flat_main(mod, monkeypatch, tmp_path, good | {"read_new": 1}, "b")["adopted"] is False
    assert _flat_main(mod, monkeypatch, tmp_path, good | {"read_new": 3, "lost": 1}, "c")["adopted"] is False


def test_the_flat_blocks_command_names_no_crops_the_split_and_the_limit(monkeypatch, tmp_path):
    # kills: --no-crops or --limit left out of the command written
    pytest.importorskip("skimage")
    mod = _script("jpeg_flat_blocks")
    held = {"read_old": 1, "read_new": 2, "lost": 0, "wrong_old": 0, "wrong_new": 0}
    doc = _flat_main(mod, monkeypatch, tmp_path, held, "a", "--split", "test", "--limit", "3")
    assert doc["command"] == f"python scripts/jpeg_flat_blocks.py --json {doc['out']} --no-crops --split test --limit 3"
    assert "crops" not in doc and "split" not in doc


def test_the_crop_marks_are_read_on_area_shrunk_crops(tmp_path, monkeypatch):
    # kills: the crops shrunk by the bicubic kernel
    import trainer.evaluate as ev

    mod = _script("jpeg_flat_blocks")
    calls: list[tuple] = []
    real = ev.lr_crops
    monkeypatch.setattr(ev, "lr_crops", lambda images, f, kernel, q=None: calls.append((f, kernel, q))
                        or real(images, f, kernel, q))
    monkeypatch.setattr(mod, "CROP_QUALITIES", (50,))
    monkeypatch.setattr(mod, "CROP_FACTORS", (2,))
    args = SimpleNamespace(data=str(_npz(tmp_path / "f.npz", [0, 1])), split="val", limit=0)
    out = mod.crop_marks(args)
    assert calls == [(2, "box", None), (2, "box", 50)]
    assert out["50"]["2"]["n"] == 2 and out["50"]["2"]["marked_old"] == 100.0


# -------------------------------------------------------------------------------------------- scripts/jpeg_detection.py

def test_jpeg_detection_enlarges_from_x2_each_with_its_kernel_to_48_px_and_writes_its_command(tmp_path, monkeypatch):
    # kills: the enlarged rows also at x1; the bicubic and lanczos rows' kernels swapped; enlarged to 47 px; right
    # quality written for q90 (a quality the reader does not know); the offset row saved at 75 or its border the
    # crop's edge repeated (not mirrored); --faces left out of the command
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("PIL")
    import trainer.degrade as dg

    mod = _script("jpeg_detection")
    resized: list[tuple] = []
    real_resize = cv2.resize
    monkeypatch.setattr(cv2, "resize", lambda img, size, interpolation=None: resized.append((size, interpolation))
                        or real_resize(img, size, interpolation=interpolation))
    jpeg_q: list[list[int]] = []
    jpeg_in: list[np.ndarray] = []
    real_jpeg = dg._jpeg
    monkeypatch.setattr(dg, "_jpeg", lambda small, qs: jpeg_q.append(sorted(set(int(q) for q in qs)))
                        or jpeg_in.append(np.array(small)) or real_jpeg(small, qs))
    out = tmp_path / "d.json"
    assert mod.main(["--data", str(_npz(tmp_path / "f.npz", [0, 1, 2])), "--faces", "2", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    kinds = ("bilinear", "bicubic", "lanczos")
    for name in kinds:
        assert list(doc["marked"][f"area, enlarged to 48 px ({name})"]) == [str(f) for f in mod.FACTORS if f > 1]
    interps = [cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4]
    assert resized == [((48, 48), i) for f in mod.FACTORS if f > 1 for i in interps for _ in range(2)]
    assert "area + JPEG q90" not in doc["right_quality"] and "area + JPEG q30" in doc["right_quality"]
    assert jpeg_q == [[q] for f in mod.FACTORS for q in (90, 75, 50, 30, 50)]     # the offset row at 50
    from trainer.evaluate import lr_crops

    area = lr_crops(np.load(tmp_path / "f.npz")["images"][3:5], 4, "box")          # the offset row's frame at x4:
    framed = jpeg_in[5 * mod.FACTORS.index(4) + 4]                                  # the crop in mirrored surroundings
    np.testing.assert_array_equal(framed, np.pad(area, ((0, 0), (16, 16), (16, 16)), mode="reflect"))
    assert doc["command"] == f"python scripts/jpeg_detection.py --json {out} --faces 2"


def test_jpeg_detection_writes_marked_shares_to_a_tenth_and_right_quality_over_the_marked(tmp_path, monkeypatch):
    # kills: the marked share rounded to a whole per cent
    pytest.importorskip("cv2")
    pytest.importorskip("PIL")
    from fsrfer_edge import preprocessing

    mod = _script("jpeg_detection")
    calls = {"n": 0}

    def one_in_three(crop: np.ndarray) -> Any:          # of each row's 3 crops, the first read at 50
        calls["n"] += 1
        return 50 if calls["n"] % 3 == 1 else None

    monkeypatch.setattr(preprocessing, "jpeg_quality", one_in_three)
    data = tmp_path / "f.npz"
    np.savez(data, images=_faces(4), labels=np.zeros(4, int), split=np.array(["val"] + ["train"] * 3))
    out = tmp_path / "d.json"
    assert mod.main(["--data", str(data), "--faces", "3", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert {v for row in doc["marked"].values() for v in row.values()} == {round(100 / 3, 1)}
    assert set(doc["right_quality"]["area + JPEG q50"].values()) == {100.0}
    assert set(doc["right_quality"]["area + JPEG q30"].values()) == {0.0}
