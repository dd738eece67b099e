"""State that must stay bounded over a long run (days on a camera): per-face and per-stream state."""
from __future__ import annotations

import numpy as np
import pytest

from fsrfer_edge.errors import InputError
from fsrfer_edge.tracking import ExpressionSmoother

P = np.array([0.7, 0.2, 0.1])


def test_smoother_stream_whose_frame_numbers_restart_without_reset_stays_bounded() -> None:
    # a looping file or a camera that reconnected without an EOS (no reset(stream)): its frame numbers start again
    # at 0 and never pass the highest seen before, so its faces were never forgotten: one more set per loop
    s = ExpressionSmoother(max_age=5)
    fresh = ExpressionSmoother(max_age=5)
    for loop in range(30):
        for frame in range(40):
            key = ("cam", loop, frame // 10)  # nvtracker gives new object ids as faces come and go
            out = s.update(key, P if frame % 2 else P[::-1], frame, stream="cam")
            if loop == 29:
                np.testing.assert_allclose(out, fresh.update(key, P if frame % 2 else P[::-1], frame), atol=1e-6)
        assert len(s) <= 3, f"loop {loop}: {len(s)} faces kept"


def test_smoother_restart_still_refuses_a_face_of_the_old_numbers_until_max_age_frames_pass() -> None:
    s = ExpressionSmoother(max_age=3)
    for frame in range(10):
        s.update("old", P, frame, stream="file")
    s.update("new", P, 0, stream="file")  # the numbers started again
    with pytest.raises(InputError, match="reset"):  # still refused so soon after: frames in order
        s.update("old", P, 1, stream="file")
    for frame in range(1, 6):
        s.update("new", P, frame, stream="file")
    assert len(s) == 1  # "old" forgotten: its stream went on for more than max_age frames since
