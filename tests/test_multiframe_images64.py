"""An animated GIF or WebP, or a multi-page TIFF, given as an image was read as its first frame without a word: the
user who expected every frame analysed is told, once per read, how many there are and how to analyse them all."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

from fsrfer_edge.detection.frames import read_image  # noqa: E402


def _frames(n: int) -> list:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)) for _ in range(n)]


@pytest.mark.parametrize("name", ["anim.gif", "pages.tif"])
def test_a_file_of_several_frames_is_read_as_its_first_with_a_warning(tmp_path: Path, name: str,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    frames = _frames(3)
    path = tmp_path / name
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge"):
        got = read_image(path)
    assert got.shape == (32, 32, 3)
    assert "3 frames" in caplog.text and "first" in caplog.text and str(path) in caplog.text


def test_a_single_frame_file_reads_without_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "one.gif"
    _frames(1)[0].save(path)
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge"):
        read_image(path)
    assert not caplog.records
