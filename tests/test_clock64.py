"""--time-budget and recorded durations use a monotonic clock: a wall-clock step (NTP, a VM resumed after a suspend,
an administrator setting the date) neither ends a training run early nor lets it run past its budget, and no epoch
records a negative or inflated number of seconds."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("torch")

from trainer import runner  # noqa: E402


def test_a_wall_clock_step_does_not_end_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    deadline = time.monotonic() + 60  # a minute left, as train_all computes it
    monkeypatch.setattr(time, "time", lambda: 4e9)  # the wall clock jumps about 70 years ahead
    assert not runner.time_is_up(deadline, "the next stage")


def test_train_all_budget_counts_on_the_monotonic_clock() -> None:
    import inspect

    from trainer import cli, train

    # started (fsrfer-train, scripts/early_g.py) and the deadline are monotonic readings: no time.time() beside them
    for module in (cli, train, runner):
        source = inspect.getsource(module)
        assert "time.time()" not in source, f"{module.__name__} still reads the wall clock for a duration"
