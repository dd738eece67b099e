"""A fake camera for the CLI tests of Ctrl-C and SIGTERM: cv2.VideoCapture of a camera (endless frames) that sends
this process a signal at one of its reads."""
from __future__ import annotations

import os
import signal
from typing import Any, Optional

import numpy as np


class SignalCamera:
    """cv2.VideoCapture of camera ``source`` (an int) giving ``frame`` forever; at read ``at`` it sends this process
    ``signum``. Set through :func:`fake_camera`, which also resets ``reads``."""

    signum = signal.SIGINT
    at = 4
    reads = 0
    frame = np.full((48, 48, 3), 100, np.uint8)

    def __init__(self, source: Any, *args: Any) -> None:
        assert isinstance(source, int), source

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, Any]:
        type(self).reads += 1
        if type(self).reads == self.at:
            os.kill(os.getpid(), self.signum)
        return True, self.frame.copy()

    def get(self, prop: int) -> float:
        return 10.0

    def release(self) -> None:
        pass


def fake_camera(monkeypatch: Any, cv2: Any, signum: int = signal.SIGINT, at: int = 4,
                frame: Optional[np.ndarray] = None) -> type[SignalCamera]:
    """Make ``cv2.VideoCapture`` a :class:`SignalCamera` sending ``signum`` at read ``at``, for this test."""
    monkeypatch.setattr(SignalCamera, "signum", signum)
    monkeypatch.setattr(SignalCamera, "at", at)
    monkeypatch.setattr(SignalCamera, "reads", 0)
    if frame is not None:
        monkeypatch.setattr(SignalCamera, "frame", frame)
    monkeypatch.setattr(cv2, "VideoCapture", SignalCamera)
    return SignalCamera
