"""Bad-input sweep (62 d) of the benchmarks, the crowd/engines CLIs and the serving layer: each value below used to
raise a bare numpy/Python error, hang on to a wrong result, or be silently "fixed"; now it is an InputError or
ConfigError that names it, before any work."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from fsrfer_edge import bench, crowd_bench, engines_cli
from fsrfer_edge.crowd import CrowdAnalyzer
from fsrfer_edge.detection import Detection, FaceDetector
from fsrfer_edge.errors import ConfigError, InputError
from fsrfer_edge.recognizer import Recognizer
from fsrfer_edge.serving import ServerProcess
from fsrfer_edge.serving import cli as serve_cli
from fsrfer_edge.serving import server as server_mod
from _onnx_models import make_tiny_onnx


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_onnx(tmp_path_factory.mktemp("sweep62d") / "tiny.onnx")


@pytest.fixture(scope="module")
def rec(tiny_model: Path) -> Iterator[Recognizer]:
    with Recognizer(tiny_model, threads=1) as r:
        yield r


class _OneBox(FaceDetector):
    name = "one-box"

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        return [Detection((8, 8, 40, 40), 0.9)]


# -- bench -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, name", [({"batch_size": 0}, "batch_size"), ({"iters": 0}, "iters"),
                                          ({"warmup": -1}, "warmup"), ({"iters": True}, "iters")])
def test_measure_latency_refuses_bad_counts(rec: Recognizer, kwargs: dict[str, Any], name: str) -> None:
    """iters=0 raised numpy's IndexError from the percentile of no timings; warmup=-1 passed silently."""
    args = {"batch_size": 1, "warmup": 0, "iters": 1, **kwargs}
    with pytest.raises(InputError, match=f"{name}=.*expected an integer >= "):
        bench.measure_latency(rec, **args)


@pytest.mark.parametrize("kwargs, name", [({"batch_size": 0}, "batch_size"), ({"reps": 0}, "reps"),
                                          ({"warmup": -1}, "warmup")])
def test_measure_overhead_refuses_bad_counts(rec: Recognizer, kwargs: dict[str, Any], name: str) -> None:
    """reps=0 raised IndexError; batch_size=-1 was silently measured at batch 1."""
    args = {"batch_size": 1, "reps": 1, "warmup": 0, **kwargs}
    with pytest.raises(InputError, match=f"{name}=.*expected an integer >= "):
        bench.measure_overhead(rec, **args)


@pytest.mark.parametrize("chunk", [0, -1])
def test_measure_accuracy_refuses_a_chunk_below_one(rec: Recognizer, chunk: int) -> None:
    """chunk=-1 scored no face at all and reported accuracy 0.0; chunk=0 raised range()'s ValueError."""
    images, labels = np.zeros((2, 48, 48), np.uint8), np.zeros(2, np.int64)
    with pytest.raises(InputError, match=f"chunk={chunk}; expected an integer >= 1"):
        bench.measure_accuracy(rec, images, labels, factors=(2,), chunk=chunk)
    with pytest.raises(InputError, match=f"chunk={chunk}; expected an integer >= 1"):
        bench.measure_confidence(rec, images, labels, factors=(2,), chunk=chunk)


def test_run_bench_does_not_replace_max_batch_zero(tiny_model: Path) -> None:
    """max_batch=0 was silently taken as "not given" (the largest batch size)."""
    with pytest.raises(InputError, match="max_batch=0"):
        bench.run_bench(tiny_model, [1], warmup=0, iters=1, overhead_batch=None, max_batch=0)


# -- crowd_bench -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("repeats", [0, -1])
def test_measure_fps_refuses_repeats_below_one(rec: Recognizer, repeats: int) -> None:
    """repeats=0 raised UnboundLocalError after a warm-up frame."""
    scene = crowd_bench.Scene(np.zeros((64, 64, 3), np.uint8), np.zeros((0, 4)), np.zeros(0, np.int64), "plain", 0)
    with CrowdAnalyzer(rec, _OneBox()) as analyzer:
        with pytest.raises(InputError, match=f"repeats={repeats}; expected an integer >= 1"):
            crowd_bench.measure_fps(analyzer, scene, repeats)


def test_make_scenes_refuses_a_negative_count() -> None:
    pool = crowd_bench.FacePool(np.zeros((1, 48, 48), np.uint8), np.full(1, -1), "test")
    with pytest.raises(InputError, match="n_scenes=-1; expected an integer >= 0"):
        crowd_bench.make_scenes(pool, -1, n_faces=1, size=(64, 64))
    assert crowd_bench.make_scenes(pool, 0, n_faces=1, size=(64, 64)) == []


@pytest.mark.parametrize("n", [0, -1])
def test_public_domain_faces_refuses_no_variants(n: int) -> None:
    pytest.importorskip("skimage")
    with pytest.raises(InputError, match=f"n_variants={n}; expected an integer >= 1"):
        crowd_bench.public_domain_faces(n)


@pytest.mark.parametrize("mp", [0.0, -1.0, math.nan, math.inf])
def test_big_frame_refuses_a_size_that_is_no_photo(mp: float) -> None:
    """-1 raised math's "domain error", NaN and inf raised from int(), 0 gave a 0x0 frame."""
    with pytest.raises(InputError, match="megapixels=.*expected"):
        crowd_bench.big_frame(mp)


def test_crowd_bench_refuses_an_infinite_min_face_before_starting_workers(tmp_path: Path, tiny_model: Path,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """--min-face inf passed the check and reached each detector's worker process, which refused it as
    "min_face=inf; expected a finite number >= 1.0"."""
    def no_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr(crowd_bench, "compare", no_run)
    out = tmp_path / "r.json"
    rc = crowd_bench.main(["--no-data", "--model", str(tiny_model), "--min-face", "inf", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists()
    assert err.count("\n") == 0 and "--min-face" in err and "inf" in err, err


# -- engines_cli -----------------------------------------------------------------------------------------------


def test_engines_refuses_an_empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """--dir "" (an unset shell variable) listed, and with --prune pruned, the current folder."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        engines_cli.main(["--dir", "", "--prune"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--dir" in err and "received an empty path ''" in err and "Traceback" not in err


# -- serving ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    ({"http_port": -1}, "http_port=-1; expected a TCP port"), ({"grpc_port": 70000}, "grpc_port=70000"),
    ({"metrics_port": "8002"}, "metrics_port='8002'"), ({"startup_timeout_s": math.nan}, "startup_timeout_s=nan"),
    ({"startup_timeout_s": 0}, "startup_timeout_s=0"), ({"startup_timeout_s": "30"}, "startup_timeout_s='30'")])
def test_server_process_refuses_bad_ports_and_timeouts(kwargs: dict[str, Any], match: str) -> None:
    """These were accepted and failed only once the child process had started (or, NaN, waited no time)."""
    with pytest.raises(ConfigError, match=match):
        ServerProcess(**kwargs)


@pytest.mark.parametrize("n", [0, -1])
def test_free_ports_refuses_no_ports(n: int) -> None:
    with pytest.raises(ConfigError, match=f"n={n}; expected an integer >= 1"):
        server_mod.free_ports("127.0.0.1", n)


def test_serve_refuses_a_negative_log_verbose_before_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(server_mod, "Recognizer", no_loading)
    monkeypatch.setattr(server_mod, "check_environment", lambda: {})
    assert serve_cli.main(["--log-verbose", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--log-verbose -1" in err and "Traceback" not in err, err
    with pytest.raises(ConfigError, match="log_verbose=-1; expected an integer >= 0"):
        server_mod.serve(log_verbose=-1)
