"""Write a short test video, for the tests of the crowd path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    """``frames`` (HxWx3 uint8 RGB) as an MJPG .avi at 5 frames/s; skips the test where OpenCV cannot write one."""
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (frames[0].shape[1], frames[0].shape[0]))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG .avi files")
    for f in frames:
        writer.write(np.ascontiguousarray(f[:, :, ::-1]))
    writer.release()
    return path


def count_frames(path: Path) -> int:
    """The frames OpenCV decodes from the video at ``path``."""
    cv2 = pytest.importorskip("cv2")
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n
