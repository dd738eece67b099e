"""Tests that kill hand-made mutants (round 70, task K70l) of the trainer's multi-process helpers
(trainer/distributed.py: the device names init_from_env accepts, the gloo and NCCL checks made before joining, the
source rank of a broadcast, the divisor of a mean over ranks, where collective tensors live) and of the detector
pyramid (fsrfer_edge/detection/pyramid.py: a bool given for a number option, max_input rounded to the size multiple,
the tiles' overlap, a tile past the frame, faces on the frame's last edges, tiles sent to the network two at a time,
keypoints mapped back per axis, a session closed in its own process). Simulated ranks with recorded collectives (no
process group is joined) and pyramid detectors whose "network" answers fixed boxes, on tiny synthetic frames."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fsrfer_edge.detection.pyramid import PyramidDetector
from fsrfer_edge.errors import BackendUnavailable, ConfigError, InputError

try:
    import torch

    from trainer import distributed
except ImportError:  # the pyramid tests below still run; the distributed ones carry needs("torch")
    torch = distributed = None  # type: ignore[assignment]


# -- trainer/distributed.py (simulated ranks, recorded collectives: no process group is joined) --------------------
def _ranks(monkeypatch: pytest.MonkeyPatch, r: int, w: int) -> None:
    monkeypatch.setattr(distributed, "rank", lambda: r)
    monkeypatch.setattr(distributed, "world_size", lambda: w)


@pytest.mark.needs("torch")
@pytest.mark.parametrize("device", ["mps", "cuda:0", "CPU", ""])
def test_an_unknown_training_device_is_refused_even_in_one_process(device: str, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    # mutant: another device name let through (single-process: it came back as a plain context, unchecked)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match=r"expected 'cpu' \(gloo\) or 'cuda' \(NCCL\)"):
        distributed.init_from_env(device)


@pytest.mark.needs("torch")
def test_mean_over_ranks_divides_by_the_number_of_processes_not_of_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: sums divided by the number of keys (the same as the world size with two metrics on two ranks)
    _ranks(monkeypatch, 0, 4)
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: t.mul_(4))  # four ranks with equal values
    assert distributed.all_reduce_mean({"loss": 1.5}) == {"loss": 1.5}
    assert distributed.all_reduce_mean({"a": 1.0, "b": 2.0, "c": 0.5}) == {"a": 1.0, "b": 2.0, "c": 0.5}


@pytest.mark.needs("torch")
def test_every_rank_receives_its_broadcast_from_rank_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: src=rank() (each rank "sent" its own value: the ranks disagree on the score, or hang)
    sent: list[Any] = []

    def from_rank_zero(box: list, src: int) -> None:
        sent.append(src)
        box[0] = "rank 0's"

    monkeypatch.setattr(torch.distributed, "broadcast_object_list", from_rank_zero)
    _ranks(monkeypatch, 1, 2)
    assert distributed.broadcast("rank 1's") == "rank 0's"
    assert sent == [0]


@pytest.mark.needs("torch")
def test_collective_tensors_go_to_this_ranks_gpu_under_nccl_and_stay_on_the_cpu_under_gloo(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: the CPU whatever the backend (NCCL refuses CPU tensors: every all_reduce_sum failed on GPUs)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(distributed, "_nccl", lambda: True)
    assert distributed._comm_device() == torch.device("cuda", 1)
    monkeypatch.setattr(distributed, "_nccl", lambda: False)
    assert distributed._comm_device() == torch.device("cpu")


@pytest.fixture
def torchrun_cpu(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """torchrun's environment for rank 1 of 2; init_process_group recorded, not run."""
    calls: list[Any] = []
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend, **kw: calls.append(backend))
    monkeypatch.setattr(distributed, "_initialized", lambda: False)
    for k, v in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(k, v)
    return calls


@pytest.mark.needs("torch")
def test_a_cpu_run_without_gloo_is_refused_before_joining(torchrun_cpu: list[Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: the gloo check dropped (init_process_group then failed deep inside torch, or hung)
    monkeypatch.setattr(torch.distributed, "is_gloo_available", lambda: False)
    with pytest.raises(BackendUnavailable, match="no gloo backend"):
        distributed.init_from_env("cpu")
    assert torchrun_cpu == []


@pytest.mark.needs("torch")
def test_a_gpu_run_without_nccl_is_refused_before_joining(torchrun_cpu: list[Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: only CUDA checked (a torch build with CUDA but no NCCL went on to init_process_group("nccl"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: torchrun_cpu.append(("set_device", i)))
    monkeypatch.setattr(torch.distributed, "is_nccl_available", lambda: False)
    with pytest.raises(BackendUnavailable, match="needs CUDA and NCCL"):
        distributed.init_from_env("cuda")
    assert torchrun_cpu == []


# -- fsrfer_edge/detection/pyramid.py (a "network" answering fixed boxes) ------------------------------------------
class _Boxes(PyramidDetector):
    """A pyramid detector whose network answers ``rows`` (x0, y0, x1, y1, score, in tile pixels) on every tile, each
    with one keypoint at its box's centre; or, with ``rows`` None, the bounding box of each tile's bright pixels.
    It records the number of tiles of each network call."""

    name, n_points = "boxes70l", 1

    def __init__(self, rows: Any = None, **options: Any) -> None:
        kw: dict[str, Any] = dict(min_score=0.5, min_face=24.0, iou=0.3, max_cover=0.7, level_step=4.0,
                                  max_input=1536, face_px=24.0, size_slack=1.5, size_multiple=32, coarsest=640)
        kw.update(options)
        super().__init__(**kw)
        self.rows, self.batches = rows, []  # type: ignore[var-annotated]

    def _network(self, batch: np.ndarray) -> list:
        self.batches.append(len(batch))
        out = []
        for tile in batch:
            if self.rows is not None:
                rows = np.array(self.rows, float).reshape(-1, 5)
            else:
                ys, xs = np.nonzero(tile[..., 0] > 128)
                rows = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, 0.9]] if len(ys) else [], float)
                rows = rows.reshape(-1, 5)
            b, s = rows[:, :4], rows[:, 4]
            out.append((b.copy(), s.copy(), ((b[:, :2] + b[:, 2:]) / 2)[:, None, :]))
        return out


def test_a_bool_is_not_taken_for_a_number_option() -> None:
    # mutant: the bool check dropped from check_number (min_face=True read as 1 frame pixel)
    with pytest.raises(InputError, match="min_face=True"):
        _Boxes(min_face=True)


def test_max_input_is_rounded_down_to_the_size_multiple() -> None:
    # mutant: max_input kept as given (tiles of 150 pixels, not a multiple of 32: the network refuses them)
    det = _Boxes(max_input=150)
    assert det.max_input == 128
    assert all(side % 32 == 0 and side <= 128 for lv in det.plan(200, 300) for side in lv.tile)


def test_tiles_overlap_by_one_and_a_half_of_the_largest_face_of_their_level() -> None:
    # mutant: the overlap one largest face (face_px * level_step), without the half for the size slack
    det = _Boxes(max_input=512)
    (level, *_) = det.plan(1000, 1000)
    xs = sorted({x for _, x in level.tiles})
    assert len(xs) > 1
    overlaps = [level.tile[1] - (b - a) for a, b in zip(xs, xs[1:])]
    assert min(overlaps) >= 24 * 4.0 * 1.5


def test_a_tile_beyond_the_frame_is_black() -> None:
    # mutant: an empty crop (tile past the frame's bottom edge) sent to the resize instead of a black tile
    from fsrfer_edge.detection.pyramid import Level

    det = _Boxes()
    level = Level(1.0, (40, 40), (32, 32), ((0, 0), (40, 0)))
    out, *_ = det._tile_pixels(np.full((40, 40, 3), 255, np.uint8), level, 40, 0)
    assert out.shape == (32, 32, 3) and not out.any()


def test_keypoints_map_back_with_each_axis_own_scale() -> None:
    # mutant: keypoints scaled by (sy, sx) instead of (sx, sy): a 1-row frame at a quarter scale stays 1 row high,
    # so its x step is 4 frame pixels and its y step 1
    frame = np.zeros((1, 800, 3), np.uint8)
    frame[0, 200:300] = 255
    det = _Boxes(min_face=96.0)
    assert [lv.size for lv in det.plan(1, 800)] == [(1, 200)]
    (found,) = det.detect(frame)
    assert found.box == pytest.approx((200, 0, 300, 1), abs=4.0)
    assert found.keypoints[0] == pytest.approx(((found.box[0] + found.box[2]) / 2, 0.5))


def test_a_face_touching_the_frames_bottom_and_right_edges_is_kept() -> None:
    # mutant: the bottom (or right) edge of the last tile row taken for an edge shared with a neighbour
    det = _Boxes([[34, 40, 64, 64, 0.9]])
    assert [d.box for d in det.detect(np.zeros((64, 64, 3), np.uint8))] == [(34.0, 40.0, 64.0, 64.0)]


def test_tiles_go_to_the_network_two_full_tiles_of_pixels_at_a_time() -> None:
    # mutant: one full tile's pixels per call (twice the calls of a many-tile level)
    det = _Boxes([], max_input=128, min_face=8.0)
    level = det.plan(200, 300)[0]
    assert level.tile == (128, 128) and len(level.tiles) > 2
    det.detect(np.zeros((200, 300, 3), np.uint8))
    assert det.batches[:len(level.tiles) // 2] == [2] * (len(level.tiles) // 2)


def test_closing_in_the_process_that_opened_the_session_does_not_leave_it_to_a_parent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # mutant: the pid test turned round (the owner's session pinned for ever, a forked child's destroyed)
    from fsrfer_edge.detection import pyramid

    left: list[Any] = []
    monkeypatch.setattr(pyramid, "leave_to_parent", lambda *objs: left.extend(objs))
    det = _Boxes()
    det._session = session = object()
    det._close()
    assert left == [] and det._session is None
    det._session, det._pid = session, det._pid + 1  # as in a forked child
    det._close()
    assert left == [session] and det._session is None
