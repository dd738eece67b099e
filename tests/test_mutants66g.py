"""Behaviour checks that a seventh hand-made mutation test (round 66, task K66g: reading frames and images, box geometry
and the crowd analyzer's crops, factors and filters) found no test for: each test here fails on one small,
plausible change to the library code that the rest of the suite let through."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.detection import Detection, FaceDetector, frames
from fsrfer_edge.detection.frames import read_image
from test_mutants64b import _Fixed  # a plug-in detector giving the same boxes in every frame

RED, GREEN, BLUE = (220, 30, 10), (20, 200, 40), (5, 60, 230)


def _colour_bars() -> np.ndarray:
    """A 6x9 RGB image of three vertical bars: red, green, blue (left to right)."""
    img = np.zeros((6, 9, 3), np.uint8)
    img[:, :3], img[:, 3:6], img[:, 6:] = RED, GREEN, BLUE
    return img


# -- read_image: colours come back in RGB order, whatever the file's mode ---------------------------------------------
def test_read_image_gives_rgb_in_rgb_order_for_rgb_palette_and_rgba_files(tmp_path: Path) -> None:
    pil = pytest.importorskip("PIL.Image")
    bars = _colour_bars()
    pil.fromarray(bars).save(tmp_path / "rgb.png")
    pil.fromarray(bars).convert("P", palette=pil.Palette.ADAPTIVE, colors=4).save(tmp_path / "palette.png")
    rgba = np.concatenate([bars, np.full((6, 9, 1), 255, np.uint8)], axis=2)
    pil.fromarray(rgba).save(tmp_path / "rgba.png")
    for name in ("rgb.png", "palette.png", "rgba.png"):
        got = read_image(tmp_path / name)
        assert got.shape == (6, 9, 3), name
        np.testing.assert_array_equal(got[0, [0, 4, 8]], [RED, GREEN, BLUE], err_msg=name)


def test_read_image_without_pillow_gives_rgb_in_rgb_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenCV reads BGR: the fallback turns it to RGB, as Pillow's reading gives."""
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "bars.png"
    cv2.imwrite(str(path), np.ascontiguousarray(_colour_bars()[:, :, ::-1]))
    real = frames.optional_module
    monkeypatch.setattr(frames, "optional_module", lambda name: None if name.startswith("PIL") else real(name))
    np.testing.assert_array_equal(frames.read_image(path)[0, [0, 4, 8]], [RED, GREEN, BLUE])


def test_float_pixels_in_range_are_rounded_not_truncated(tmp_path: Path) -> None:
    pil = pytest.importorskip("PIL.Image")
    pixels = np.array([[100.7, 100.4], [0.6, 254.5]], np.float32)
    pil.fromarray(pixels).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif")[:, :, 0], [[101, 100], [1, 254]])


def test_resize_without_opencv_rounds_to_the_nearest_level(monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.preprocessing import resize

    frame = np.zeros((2, 2, 3), np.uint8)
    frame[:, 1] = 255
    exact = np.moveaxis(resize(np.moveaxis(frame, -1, 0), (3, 5), kernel="bilinear", antialias=True), 0, -1)
    assert (np.abs(exact - np.rint(exact)) > 0.01).any() and (exact % 1 >= 0.5).any()  # rounding matters here
    real = frames.optional_module
    monkeypatch.setattr(frames, "optional_module", lambda name: None if name == "cv2" else real(name))
    np.testing.assert_array_equal(frames.resize_rgb(frame, 3, 5), np.clip(np.rint(exact), 0, 255).astype(np.uint8))


def test_write_image_without_pillow_keeps_the_colours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cv2 = pytest.importorskip("cv2")
    real = frames.optional_module
    monkeypatch.setattr(frames, "optional_module", lambda name: None if name.startswith("PIL") else real(name))
    path = frames.write_image(tmp_path / "out.png", _colour_bars())
    np.testing.assert_array_equal(cv2.imread(str(path))[:, :, ::-1], _colour_bars())


def test_a_two_page_tiff_is_read_as_its_first_page_with_a_warning(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    pil = pytest.importorskip("PIL.Image")
    first, second = np.full((8, 8, 3), 40, np.uint8), np.full((8, 8, 3), 200, np.uint8)
    pil.fromarray(first).save(tmp_path / "two.tif", save_all=True, append_images=[pil.fromarray(second)])
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge"):
        np.testing.assert_array_equal(read_image(tmp_path / "two.tif"), first)
    assert "holds 2 frames" in caplog.text


# -- VideoFrames: the frames read, the truncation rule at its bounds, the frame rate ---------------------------------
class _Cap:
    """A video of ``n`` decodable frames for VideoFrames (the first is passed to it, as video_frames reads it)."""

    def __init__(self, n: int) -> None:
        self.left = n - 1

    def read(self) -> tuple[bool, Any]:
        self.left -= 1
        return (self.left >= 0, np.zeros((4, 6, 3), np.uint8) if self.left >= 0 else None)

    def release(self) -> None:
        pass


@pytest.mark.parametrize("decodable, in_header, truncated", [(8, 10, True), (9, 10, False), (18, 20, False),
                                                             (17, 20, True)])
def test_a_video_is_truncated_when_over_a_tenth_and_at_least_two_of_its_frames_are_missing(
        decodable: int, in_header: int, truncated: bool) -> None:
    from fsrfer_edge.crowd import VideoFrames

    video = VideoFrames(_Cap(decodable), np.zeros((4, 6, 3), np.uint8), "video v.avi", 25.0, in_header)
    assert len(list(video)) == decodable
    assert (video.decoded, video.truncated) == (decodable, truncated)


def test_video_frames_reports_the_files_frame_rate(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    from fsrfer_edge.crowd import video_frames

    path = tmp_path / "v.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 7.0, (16, 12))
    if not out.isOpened():
        pytest.skip("this OpenCV cannot write MJPG AVI files")
    for _ in range(3):
        out.write(np.full((12, 16, 3), 90, np.uint8))
    out.release()
    video = video_frames(path)
    try:
        assert (video.fps, video.frames_in_header, video.frame_size) == (7.0, 3, (12, 16))
    finally:
        video.close()


# -- box geometry ------------------------------------------------------------------------------------------------------
def test_overlapping_iou_finds_a_wide_box_starting_left_of_the_box_it_overlaps() -> None:
    from fsrfer_edge.detection.base import box_iou, overlapping_iou

    a = np.array([[10, 0, 20, 10]], float)
    b = np.array([[0, 0, 15, 10], [12, 0, 14, 10], [30, 0, 40, 10]], float)
    rows, cols, iou = overlapping_iou(a, b)
    assert (rows.tolist(), cols.tolist()) == ([0, 0], [0, 1])
    np.testing.assert_allclose(iou, box_iou(a, b)[0, :2])


def test_overlapping_iou_lists_its_pairs_in_row_major_order() -> None:
    from fsrfer_edge.detection.base import box_iou, overlapping_iou

    a = np.array([[0, 0, 10, 10], [2, 2, 12, 12]], float)
    b = np.array([[1, 1, 11, 11], [3, 0, 13, 10]], float)
    rows, cols, iou = overlapping_iou(a, b)
    assert (rows.tolist(), cols.tolist()) == ([0, 0, 1, 1], [0, 1, 0, 1])
    np.testing.assert_allclose(iou, box_iou(a, b).ravel())


def test_a_detection_of_exactly_one_pixel_is_kept() -> None:
    from fsrfer_edge.detection.base import clean_detections

    found = clean_detections([Detection((2, 3, 3, 4), 0.9), Detection((5, 5, 5.5, 9), 0.9)], (10, 10, 3), "t")
    assert [d.box for d in found] == [(2.0, 3.0, 3.0, 4.0)]


def test_a_frame_of_exactly_the_pixel_limit_is_accepted() -> None:
    from fsrfer_edge.detection.base import MAX_FRAME_PIXELS, check_frame_size
    from fsrfer_edge.errors import InputError

    check_frame_size(8192, 8192)  # the documented limit: 8192 x 8192
    assert MAX_FRAME_PIXELS == 8192 * 8192
    with pytest.raises(InputError):
        check_frame_size(8192, 8193)


# -- crowd: the crop, its side and the factor the group shares read, the filters ---------------------------------------
def test_a_crop_past_the_right_edge_of_a_wide_frame_repeats_its_last_column() -> None:
    from fsrfer_edge.crowd import crop_face

    frame = np.zeros((10, 30, 3), np.uint8)
    frame[:, :, 0] = np.arange(30, dtype=np.uint8)[None, :]  # red: the column's index
    frame[:, :, 1] = np.arange(10, dtype=np.uint8)[:, None]  # green: the row's index
    crop = crop_face(frame, (22, 2, 30, 10), 0.25)  # the square: x 20..32, y 0..12
    assert crop.shape == (12, 12, 3)
    assert crop[0, :, 0].tolist() == list(range(20, 30)) + [29, 29]
    assert crop[:, 0, 1].tolist() == list(range(10)) + [9, 9]


def test_the_analyzers_own_margin_sizes_the_crops_and_their_factors(rec: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer
    sides: list[tuple[int, ...]] = []
    real = rec.predict

    def predict(crops: list[np.ndarray], **kw: Any) -> Any:
        sides.extend(c.shape for c in crops)
        return real(crops, **kw)

    monkeypatch.setattr(rec, "predict", predict)
    with CrowdAnalyzer(rec, _Fixed([Detection((20, 20, 36, 36), 0.9)]), margin=0.5, groups=None) as crowd:
        result = crowd.analyze(np.full((60, 60, 3), 90, np.uint8))
        factors = crowd.factors(result.faces)
    assert sides == [(32, 32, 3)]  # a 16 px box with half its side added on each side
    assert factors == [rec.info.preprocessing.input_size / 32]


def test_given_boxes_on_a_wide_frame_are_checked_against_its_width(rec: Any) -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer

    with CrowdAnalyzer(rec, _Fixed([]), groups=None) as crowd:
        faces = crowd.analyze(np.full((30, 80, 3), 90, np.uint8), boxes=[(40, 5, 60, 25)]).faces
    assert [f.box for f in faces] == [(40.0, 5.0, 60.0, 25.0)]


def test_a_face_of_exactly_min_size_is_kept(rec: Any) -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer
    det = _Fixed([Detection((0, 0, 12, 8), 0.9), Detection((20, 0, 31.5, 11.5), 0.9)])
    with CrowdAnalyzer(rec, det, min_size=12, groups=None) as crowd:
        faces = crowd.analyze(np.full((20, 40, 3), 90, np.uint8)).faces
    assert [f.size_px for f in faces] == [12.0]


def test_a_coasting_face_half_out_of_the_frame_is_still_recognised_and_one_wholly_out_is_gone(rec: Any) -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer
    leaving = _Leaving([(20, 10, 40, 30), (10, 10, 30, 30), (0, 10, 20, 30)])  # 10 px a frame, then missed
    with CrowdAnalyzer(rec, leaving, groups=None) as crowd:
        results = list(crowd.analyze_stream([np.full((40, 60, 3), 90, np.uint8)] * 5, track=True))
    assert [(f.box, f.detected) for f in results[3].faces] == [((-10.0, 10.0, 10.0, 30.0), False)]  # half inside
    assert results[4].faces == ()


class _Leaving(FaceDetector):
    """A face walking out of the frame to the left: its boxes, then nothing."""

    name = "leaving"

    def __init__(self, boxes: list[tuple[float, float, float, float]]) -> None:
        super().__init__()
        self.boxes = iter(boxes)

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        box = next(self.boxes, None)
        return [] if box is None else [Detection(box, 0.9)]


def test_a_tall_coasting_face_mostly_out_of_the_frame_is_gone(rec: Any) -> None:
    """The share inside is read from the box's own width and height (here 0.4 of a 10x20 box: under half)."""
    from fsrfer_edge.crowd import CrowdAnalyzer

    leaving = _Leaving([(12, 10, 22, 30), (6, 10, 16, 30), (0, 10, 10, 30)])
    with CrowdAnalyzer(rec, leaving, groups=None) as crowd:
        results = list(crowd.analyze_stream([np.full((40, 60, 3), 90, np.uint8)] * 4, track=True))
    assert len(results[2].faces) == 1 and results[3].faces == ()  # predicted at (-6, 10, 4, 30)



def test_the_detector_and_the_recogniser_both_get_the_frames_colours_in_rgb_order(
        rec: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.crowd import CrowdAnalyzer
    seen: dict[str, Any] = {}

    class Looking(FaceDetector):
        name = "looking"

        def _detect(self, frame: np.ndarray) -> list[Detection]:
            seen["detector"] = frame[0, 0].tolist()
            return [Detection((0, 0, 10, 10), 0.9)]

    real = rec.predict

    def predict(crops: list[np.ndarray], **kw: Any) -> Any:
        seen["recogniser"] = crops[0][0, 0].tolist()
        return real(crops, **kw)

    monkeypatch.setattr(rec, "predict", predict)
    with CrowdAnalyzer(rec, Looking(), margin=0.0, groups=None) as crowd:
        crowd.analyze(np.broadcast_to(np.array(RED, np.uint8), (20, 20, 3)).copy())
    assert seen == {"detector": list(RED), "recogniser": list(RED)}
