"""Tests that kill hand-made mutants (round 69, task K69b) of the OpenCV Haar-cascade detector
(fsrfer_edge/detection/opencv.py: its option checks, the one equalisation table of a tiled frame, the size-ordered
merging scores that drop a box lying inside a larger one), the YuNet detector (fsrfer_edge/detection/yunet.py: the
decoder's clipping and cell checks, the model checks made when it is loaded, its documented plan), the CPU count
(fsrfer_edge/cpus.py: odd mountinfo lines, cgroup paths and cpu.max files, a failing CPU-set call) and the FER+
label loading (fsrfer_edge/ferplus.py: the split the labelled faces name, faces that are not uint8). Tiny synthetic
frames, fake cascades, tiny ONNX graphs, fake /proc and cgroup trees and tiny .npz archives only."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.errors import DataError, InputError, ModelError


# -- OpenCV cascade ----------------------------------------------------------------------------------------------------
class _Cascade:
    """Stands in for cv2.CascadeClassifier: records the gray images and options it is given; its first call answers
    ``first`` (x, y, w, h), every later call nothing."""

    def __init__(self, first: "list[tuple[int, int, int, int]]") -> None:
        self.first = first
        self.calls: list[tuple[np.ndarray, dict[str, Any]]] = []

    def detectMultiScale(self, gray: np.ndarray, **options: Any) -> Any:  # OpenCV's name
        self.calls.append((gray.copy(), options))
        rects = self.first if len(self.calls) == 1 else []
        return np.array(rects, dtype=np.int32).reshape(-1, 4)


def _opencv(**options: Any) -> Any:
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "CascadeClassifier"):
        pytest.skip(f"OpenCV {cv2.__version__} has no cascade classifier")
    from fsrfer_edge.detection.opencv import OpenCVDetector

    return OpenCVDetector(**options)


def test_opencv_takes_min_neighbors_zero_and_passes_it_on() -> None:
    # mutant: min_neighbors < 1 refused (the documented range is >= 0: every raw window, no grouping)
    with _opencv(min_face=24, min_neighbors=0) as det:
        det._cascade = cascade = _Cascade([])
        assert det.detect(np.zeros((40, 60, 3), np.uint8)) == []
    assert cascade.calls[0][1]["minNeighbors"] == 0
    with pytest.raises(InputError, match="min_neighbors=-1"):
        _opencv(min_neighbors=-1)


@pytest.mark.parametrize("scale_factor", [1.0, 1.005])
def test_opencv_refuses_a_scale_factor_that_would_not_step_the_cascade(scale_factor: float) -> None:
    # mutant: scale_factor checked from 1.0 up: 1.0 (a pyramid that never shrinks) got past the check
    with pytest.raises(InputError, match="scale_factor="):
        _opencv(scale_factor=scale_factor)
    _opencv(scale_factor=1.01).close()  # the smallest step allowed


@pytest.mark.parametrize("cascade", ["", "   ", "\t\n"])
def test_opencv_refuses_a_blank_cascade_path_as_an_input_error(cascade: str) -> None:
    # mutant: only "" refused: a path of blanks went on to OpenCV and came back as a ModelError about a file
    with pytest.raises(InputError, match="cascade="):
        _opencv(cascade=cascade)


def test_opencv_tiles_share_the_equalisation_table_of_the_whole_enlarged_frame() -> None:
    """Mutants: the table counted from blocks padded to a full tile (the zeros beyond the frame counted as black
    pixels), the coarsest level's table used, or each tile equalised on its own: the tiles of a frame with no black
    pixel were not equalised as the one pass over the whole enlarged frame equalised it."""
    cv2 = pytest.importorskip("cv2")
    from fsrfer_edge.detection.frames import resize_rgb
    from fsrfer_edge.detection.opencv import equalize_lut

    rng = np.random.default_rng(0)
    frame = np.zeros((200, 400, 3), np.uint8)
    frame[:, :200] = 50  # a flat dark left half (no black pixel), bright noise on the right
    frame[:, 200:] = rng.integers(150, 256, (200, 200, 1))
    with _opencv(min_face=8, max_input=576) as det:
        fine = det.plan(200, 400)[0]
        assert len(fine.tiles) > 1 and fine.size[0] % 576  # tiled, and the last row of blocks is not full
        det._cascade = cascade = _Cascade([])
        assert det.detect(frame) == []
    whole = cv2.cvtColor(resize_rgb(frame, *fine.size), cv2.COLOR_RGB2GRAY)  # the enlarged frame in one go
    lut = equalize_lut(np.bincount(whole.reshape(-1), minlength=256))
    th, tw = fine.tile
    for (y, x), (gray, _) in zip(fine.tiles, cascade.calls):
        want = cv2.LUT(whole[y:y + th, x:x + tw], lut)
        got = gray[:want.shape[0], :want.shape[1]]
        # each tile is resized from the frame on its own: a pixel or two at its border differ, nothing else
        assert np.abs(got.astype(int) - want).mean() < 1.0, (y, x)


@pytest.mark.parametrize("rects", [
    [(130, 130, 30, 30), (100, 100, 120, 120)],  # an eye inside its face, the eye reported first
    [(180, 95, 40, 40), (100, 100, 200, 30)],  # a wide box (another cascade's shape) holding most of a square one
])
def test_opencv_tiled_drops_a_box_lying_mostly_inside_a_larger_one(rects: "list[tuple[int, int, int, int]]") -> None:
    """Mutants: every box given the same merging score, the score counted from a box's shorter side, or boxes
    inside others kept (max_cover 1): on a tiled frame the smaller box came back beside the larger one, where the
    cascade's own grouping drops it within one pass."""
    with _opencv(min_face=8, max_input=576) as det:
        assert len(det.plan(200, 400)) > 1
        det._cascade = _Cascade(rects)  # the first tile (the finest level's top left) answers both
        found = det.detect(np.zeros((200, 400, 3), np.uint8))
    x, y, w, h = rects[1]
    assert [d.box for d in found] == [pytest.approx((x / 3, y / 3, (x + w) / 3, (y + h) / 3))]
    assert found[0].score == 1.0


def test_opencv_equalisation_table_counts_the_frames_last_column() -> None:
    # mutant: the histogram's blocks stepped over range(0, w - 1): a level one pixel wider than a block lost its
    # last column, and a white edge on a black frame was equalised to black
    frame = np.zeros((200, 577, 3), np.uint8)
    frame[:, -1] = 255
    with _opencv(min_face=24, max_input=576) as det:
        fine = det.plan(200, 577)[0]
        assert fine.size == (200, 577) and len(det.plan(200, 577)) > 1  # no enlarging; tiled
        det._cascade = cascade = _Cascade([])
        det.detect(frame)
    (y, x), (gray, _) = fine.tiles[-1], cascade.calls[len(fine.tiles) - 1]
    assert y == 0 and int(gray[0, 576 - x]) == 255 and int(gray[0, 0]) == 0


# -- YuNet: the decoder ------------------------------------------------------------------------------------------------
def _yunet_outputs(height: int, width: int) -> "dict[str, np.ndarray]":
    """All-zero YuNet outputs for a (height, width) input: no cell scores anything."""
    from fsrfer_edge.detection.yunet import STRIDES

    return {f"{kind}_{s}": np.zeros(((height // s) * (width // s), n), np.float32)
            for s in STRIDES for kind, n in (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10))}


def test_yunet_decode_refuses_an_objectness_output_of_the_wrong_cell_count() -> None:
    # mutant: only cls_S's cell count checked: an obj_S of another grid was read past or short of its cells
    from fsrfer_edge.detection.yunet import decode

    out = _yunet_outputs(64, 96)
    out["obj_16"] = np.zeros((len(out["obj_16"]) + 6, 1), np.float32)
    with pytest.raises(ModelError, match="not YuNet"):
        decode(out, 64, 96, 0.5)


@pytest.mark.parametrize("cls, obj", [(0.64, 1.5), (1.5, 0.64)])
def test_yunet_decode_clips_class_and_objectness_scores_to_one(cls: float, obj: float) -> None:
    # mutants: cls or obj not clipped to [0, 1]: an output over 1 gave a score of sqrt(0.96), not sqrt(0.64 * 1)
    from fsrfer_edge.detection.yunet import decode

    out = _yunet_outputs(64, 96)
    out["cls_32"][0], out["obj_32"][0] = cls, obj
    _, scores, _ = decode(out, 64, 96, 0.5)
    assert scores.tolist() == [pytest.approx(0.8)]


def test_yunet_decode_clips_a_huge_log_size_to_a_finite_box() -> None:
    # mutant: the width's log size not clipped: exp(1000) made an infinite box where the limit gives a finite one
    from fsrfer_edge.detection.yunet import _LOG_SIZE_LIMIT, decode

    out = _yunet_outputs(64, 96)
    out["cls_8"][0] = out["obj_8"][0] = 1.0
    out["bbox_8"][0] = [0.0, 0.0, 1000.0, 1000.0]
    boxes, _, _ = decode(out, 64, 96, 0.5)
    half = np.exp(_LOG_SIZE_LIMIT) * 8 / 2
    np.testing.assert_allclose(boxes, [[-half, -half, half, half]])


# -- YuNet: the model checks when it is loaded -------------------------------------------------------------------------
def _yunet_like(path: Path, input_name: str, shape: "list[Any]") -> Path:
    """A tiny ONNX file with YuNet's twelve output names, each an Identity of one input of the given name and shape."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from fsrfer_edge.detection.yunet import OUTPUTS

    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in OUTPUTS]
    nodes = [helper.make_node("Identity", [input_name], [o]) for o in OUTPUTS]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs), opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.needs("onnx")
def test_a_yunet_model_whose_input_is_not_named_input_is_refused(tmp_path: Path) -> None:
    # mutant: only the outputs checked: a model fed by another name loaded, and every detect() failed in ONNX Runtime
    pytest.importorskip("onnxruntime")
    from fsrfer_edge.detection.yunet import YuNetDetector

    with pytest.raises(ModelError, match="expected YuNet's input 'input'"):
        YuNetDetector(_yunet_like(tmp_path / "x.onnx", "pixels", ["N", 3, "H", "W"]), threads=1)
    YuNetDetector(_yunet_like(tmp_path / "ok.onnx", "input", ["N", 3, "H", "W"]), threads=1).close()


@pytest.mark.needs("onnx")
def test_a_yunet_model_with_a_fixed_batch_size_is_refused(tmp_path: Path) -> None:
    # mutant: only H and W checked for a fixed size: a model of batch 1 loaded, and a frame cut into tiles (which go
    # in batches) failed at run time
    pytest.importorskip("onnxruntime")
    from fsrfer_edge.detection.yunet import YuNetDetector

    with pytest.raises(ModelError, match="dynamic"):
        YuNetDetector(_yunet_like(tmp_path / "b1.onnx", "input", [1, 3, "H", "W"]), threads=1)


def test_yunet_default_plan_is_the_documented_one() -> None:
    """Mutants: the tile limit 2048 instead of 1536, face_px 32: docs/crowd.md says YuNet enlarges the frame 3x (24
    network pixels for an 8 px face), cuts a level larger than 1536 px a side into tiles, and runs a coarser pass at
    a quarter of that (0.75x)."""
    pytest.importorskip("onnxruntime")
    from fsrfer_edge.detection.yunet import YuNetDetector

    with YuNetDetector(threads=1) as det:
        finest, coarse = det.plan(480, 640)
    assert (finest.scale, finest.size) == (3.0, (1440, 1920)) and coarse.scale == 0.75
    assert max(finest.tile) <= 1536 and len(finest.tiles) > 1 and len(coarse.tiles) == 1


@pytest.mark.parametrize("coarsest", [16, 31])
def test_yunet_refuses_a_coarsest_level_under_its_32_pixel_grid(coarsest: int) -> None:
    # mutant: coarsest checked from 1 up: a coarsest level under one 32-pixel network cell got past the check
    pytest.importorskip("onnxruntime")
    from fsrfer_edge.detection.yunet import YuNetDetector

    with pytest.raises(InputError, match="coarsest="):
        YuNetDetector(coarsest=coarsest, threads=1)
    YuNetDetector(coarsest=32, threads=1).close()


# -- cpus: odd kernel files and a failing CPU-set call ----------------------------------------------------------------
@pytest.fixture()
def fake_proc(fake_cgroup: Any) -> Any:
    """conftest's fake_cgroup (a fake /proc/self and cgroup root; the CPU set says 8 CPUs, the machine 64), giving
    back fsrfer_edge.cpus."""
    from fsrfer_edge import cpus

    def make(cgroup: str, files: "dict[str, str]", mountinfo: str = "") -> Any:
        fake_cgroup(cgroup, files, mountinfo)
        return cpus
    return make


@pytest.mark.parametrize("odd_line", [
    "30 25 0:26 / - cgroup2 cgroup2 rw",  # four fields before the separator: no mount point
    "31 25 0:27 / @ROOT@/v1 rw - cgroup cgroup",  # a cgroup v1 line without its super options
])
def test_a_short_mountinfo_line_is_skipped_not_raised_on(fake_proc: Any, odd_line: str) -> None:
    # mutants: lines of 4 fields before " - " or 2 after let through: unpacking the mount point (or reading the
    # options) raised out of usable_cpus(), which is documented never to raise
    cpus = fake_proc("0::/a\n", {"mnt/a/cpu.max": "300000 100000"},
                     mountinfo=f"{odd_line}\n30 25 0:26 / @ROOT@/mnt rw - cgroup2 cgroup2 rw\n")
    assert cpus.cpu_quota() == 3.0 and cpus.usable_cpus() == 3  # the good line after it is still read


def test_a_cpu_max_of_three_fields_is_no_limit(fake_proc: Any) -> None:
    # mutant: any cpu.max of two fields or more read: a third field made _ratio() raise a TypeError
    cpus = fake_proc("0::/a\n", {"a/cpu.max": "100000 100000 1\n"})
    assert cpus.cpu_quota() is None and cpus.usable_cpus() == 8


def test_a_cgroup_path_that_is_not_absolute_is_not_read(fake_proc: Any) -> None:
    # mutant: the leading "/" not required: a malformed "0::a" line read the quota of a folder it does not name
    cpus = fake_proc("0::a\n", {"a/cpu.max": "100000 100000"})
    assert cpus.cpu_quota() is None and cpus.usable_cpus() == 8


def test_a_failing_cpu_set_call_falls_back_to_the_machines_count(fake_proc: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: only AttributeError caught: an OSError from sched_getaffinity (a sandbox's seccomp filter) raised
    def refuse(pid: int) -> "set[int]":
        raise PermissionError(1, "Operation not permitted")

    cpus = fake_proc("0::/a\n", {"a/cpu.max": "200000 100000"})
    monkeypatch.setattr(os, "sched_getaffinity", refuse, raising=False)
    assert cpus.usable_cpus() == 2  # the quota still binds
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert cpus.usable_cpus() == 1


def test_no_cpu_set_and_an_unknown_cpu_count_is_one_cpu(fake_proc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: os.cpu_count() taken as it is: None (a platform that cannot tell) made usable_cpus() raise a TypeError
    cpus = fake_proc("0::/\n", {})
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert cpus.usable_cpus() == 1


# -- FER+ label loading ------------------------------------------------------------------------------------------------
def _fer_pair(tmp_path: Path) -> Path:
    """fer2013.npz (six 4x4 faces, own labels 0..5, splits, orig_row 10..15) and ferplus_labels.npz beside it, whose
    labels differ from the archive's own (6 - own, and -1: no majority, for orig_row 12)."""
    from fsrfer_edge.ferplus import FERPLUS_FILE

    split = np.array(["train", "train", "val", "test", "test", "test"])
    orig = np.arange(10, 16)
    np.savez(tmp_path / "fer2013.npz", images=np.arange(6 * 16, dtype=np.uint8).reshape(6, 4, 4),
             labels=np.arange(6), split=split, orig_row=orig)
    np.savez(tmp_path / FERPLUS_FILE, orig_row=orig[::-1], labels=np.array([1, 2, 3, -1, 5, 6]), split=split[::-1])
    return tmp_path / "fer2013.npz"


def test_labelled_faces_name_the_split_they_hold(tmp_path: Path) -> None:
    # mutant: the split's name not recorded: faces of the test split said "all" (and so did the reports naming it)
    from fsrfer_edge.ferplus import load_labelled_faces

    path = _fer_pair(tmp_path)
    train = load_labelled_faces(path, "ferplus", split="train")
    assert (train.split, train.labels.tolist()) == ("train", [6, 5])
    test = load_labelled_faces(path, "fer2013", split="test")
    assert test.split == "test" and test.images.tolist() == np.arange(48, 96).reshape(3, 4, 4).tolist()
    assert load_labelled_faces(path, "fer2013", split=None).split == "all"


@pytest.mark.parametrize("images", [np.zeros((2, 4, 4), np.float32), np.zeros((2, 4, 4), np.int16)])
def test_faces_that_are_not_uint8_are_a_data_error(tmp_path: Path, images: np.ndarray) -> None:
    # mutant: only the images' rank checked: float or 16-bit faces went on to preprocessing as if they were 0-255
    from fsrfer_edge.ferplus import load_labelled_faces

    path = tmp_path / "plain.npz"
    np.savez(path, images=images, labels=np.array([0, 1]))
    with pytest.raises(DataError, match=f"'images' is {images.dtype} of shape .*expected \\(N, H, W\\) uint8"):
        load_labelled_faces(path)
