"""Leftovers of a review: fsrfer-serve's --instances had no bound (0 or 10**6 reached the server, one Recognizer
each), write_triton_repo and write_deepstream wrote into the current folder for out_dir="", and a detector's
min_score could be lowered to or under its weak_score, which then silently added no weak detections."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.detection.pyramid import PyramidDetector
from fsrfer_edge.errors import ConfigError, InputError
from fsrfer_edge.serving import cli as serve_cli
from fsrfer_edge.serving import server as server_mod

# -- fsrfer-serve --instances / serve(instances=) ---------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", str(10**6), str(server_mod.MAX_INSTANCES + 1)])
def test_serve_cli_refuses_instances_out_of_range_before_anything_starts(
        value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    started: list[Any] = []
    monkeypatch.setattr(serve_cli, "serve", lambda *a, **k: started.append(k))
    assert serve_cli.main(["--instances", value]) == 2
    err = capsys.readouterr().err
    assert f"--instances={value}" in err and f"1 to {server_mod.MAX_INSTANCES}" in err
    assert started == []  # refused by the CLI itself, not by serve() as instances=


def test_serve_cli_takes_instances_in_range_and_says_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []
    monkeypatch.setattr(serve_cli, "serve", lambda *a, **k: started.append(k["instances"]))
    for value in (1, server_mod.MAX_INSTANCES):
        assert serve_cli.main(["--instances", str(value)]) == 0
    assert started == [1, server_mod.MAX_INSTANCES]
    help_text = " ".join(serve_cli.build_parser().format_help().split())
    assert f"one Recognizer each, 1 to {server_mod.MAX_INSTANCES}" in help_text


@pytest.mark.parametrize("instances", [10**6, server_mod.MAX_INSTANCES + 1])
def test_serve_refuses_absurd_instances_before_the_environment_is_checked(
        instances: int, monkeypatch: pytest.MonkeyPatch) -> None:
    def environment() -> None:
        raise RuntimeError("serve() went on to start the server")

    monkeypatch.setattr(server_mod, "check_environment", environment)
    with pytest.raises(ConfigError, match=rf"instances={instances}; expected an integer from 1 to "
                                          rf"{server_mod.MAX_INSTANCES}"):
        server_mod.serve(instances=instances)
    with pytest.raises(RuntimeError, match="went on"):  # the bound itself is taken
        server_mod.serve(instances=server_mod.MAX_INSTANCES)


# -- out_dir="" of write_triton_repo and write_deepstream -------------------------------------------

@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx", reason="onnx not installed (pip install -e '.[export]')")
    pytest.importorskip("torch", reason="torch is needed to make the tiny test models")
    from _onnx_models import make_tiny_onnx

    return make_tiny_onnx(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.mark.parametrize("out_dir", ["", "  "])
def test_write_triton_repo_refuses_an_empty_out_dir(out_dir: str, tiny_onnx: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.serving import write_triton_repo

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=rf"out_dir={out_dir!r}: received an empty path; expected"):
        write_triton_repo(out_dir, onnx_path=tiny_onnx)
    assert list(tmp_path.iterdir()) == []  # nothing written into the current folder


@pytest.mark.parametrize("out_dir", ["", "  "])
def test_write_deepstream_refuses_an_empty_out_dir(out_dir: str, tiny_onnx: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.export.deepstream import write_deepstream

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=rf"out_dir={out_dir!r}: received an empty path; expected"):
        write_deepstream(out_dir, tiny_onnx)
    assert list(tmp_path.iterdir()) == []


# -- min_score under weak_score ---------------------------------------------------------------------

class _NoNetwork(PyramidDetector):
    """A pyramid detector that never runs: only its score thresholds are used."""

    name = "thresholds"
    n_points = 1

    def __init__(self) -> None:
        super().__init__(min_score=0.5, min_face=8.0, iou=0.3, max_cover=0.7, level_step=4.0, max_input=1536,
                         face_px=24.0, size_slack=1.5, size_multiple=32, coarsest=640)

    def _network(self, batch: np.ndarray) -> list:  # pragma: no cover - never called
        raise AssertionError


def test_min_score_at_or_under_a_weak_score_already_set_is_refused() -> None:
    det = _NoNetwork()
    with pytest.raises(InputError, match=r"weak_score=.*threshold"):  # this order was refused already
        det.weak_score = 0.5
    det.weak_score = 0.2
    for low in (0.2, 0.1):  # weak detections would score from 0.2 up to under 0.2 or 0.1: none at all
        with pytest.raises(InputError, match=rf"min_score={low}.*weak_score \(0\.2\)"):
            det.min_score = low
        assert det.min_score == 0.5  # left as it was
    det.min_score = 0.3  # still over it: taken
    det.weak_score = None
    det.min_score = 0.1  # no weak detections asked for: any threshold


def test_score_sweep_clears_a_weak_score_for_its_thresholds_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's score sweep sets min_score to each threshold: with a weak_score set, a threshold at or under
    it is now refused, and weak boxes would have been counted as detections. The sweep clears it meanwhile."""
    from fsrfer_edge import crowd_bench

    det = _NoNetwork()
    det.weak_score = 0.2
    seen: list[tuple[float, Any]] = []

    class Analyzer:
        detector, min_score, margin = det, 0.9, 0.0

        def _detect(self, img: np.ndarray) -> list:
            seen.append((det.min_score, det.weak_score))
            return []
    monkeypatch.setattr(crowd_bench, "evaluate", lambda *a, **k: {})
    monkeypatch.setattr(crowd_bench, "_sweep_row", lambda ev, dets, t: {})
    photo = ("blank", np.zeros((4, 4, 3), np.uint8), np.zeros((0, 4)))
    crowd_bench.score_sweep(Analyzer(), [], (0.1, 0.6), photos=[photo])  # type: ignore[arg-type]
    assert seen == [(0.1, None), (0.6, None)]
    assert det.min_score == 0.5 and det.weak_score == 0.2  # restored, in an order the setters take


def test_write_deepstream_refuses_build_options_without_an_engine(tiny_onnx: Path, tmp_path: Path) -> None:
    """workspace_mb and timing_cache set TensorRT's build of the engine; without engine=True nothing is built and
    they were silently ignored. The export CLI passes them only with --deepstream-engine."""
    from fsrfer_edge.export.deepstream import write_deepstream

    for kwargs in ({"workspace_mb": 2048}, {"timing_cache": tmp_path / "t.cache"},
                   {"workspace_mb": 2048, "timing_cache": tmp_path / "t.cache"}):
        with pytest.raises(ConfigError, match=r"given with engine=False.*expected engine=True"):
            write_deepstream(tmp_path / "ds", tiny_onnx, **kwargs)  # type: ignore[arg-type]
        assert not (tmp_path / "ds").exists()
    assert write_deepstream(tmp_path / "ds", tiny_onnx).is_file()  # neither given: the folder is written
