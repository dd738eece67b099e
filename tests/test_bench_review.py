"""fsrfer-bench review: messages and checks a user meets (tiny ONNX model, CPU)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from fsrfer_edge import bench

try:  # tests/ as a package or as a plain directory on sys.path
    from ._onnx_models import make_tiny_onnx
except ImportError:
    from _onnx_models import make_tiny_onnx  # type: ignore[no-redef]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_onnx(tmp_path_factory.mktemp("bench_review") / "tiny.onnx")


@pytest.fixture()
def plain_data(tmp_path: Path) -> Path:
    """A plain archive: images and labels, no ``orig_row`` (so no FER2013/FER+ labels to choose between)."""
    g = np.random.default_rng(0)
    path = tmp_path / "faces.npz"
    np.savez(path, images=g.integers(0, 256, (6, 48, 48), dtype=np.uint8), labels=g.integers(0, 7, 6))
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = bench.main(argv)
    except SystemExit as exc:
        rc = exc.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    return rc, out, err


def _no_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the timings started before the arguments were checked")

    monkeypatch.setattr(bench, "measure_latency", fail)


@pytest.mark.parametrize("labels", ["ferplus", "fer2013"])
def test_labels_on_a_plain_archive_are_refused_not_ignored(labels: str, model: Path, plain_data: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """--labels ferplus on an archive without orig_row scored the archive's own labels ("npz") and exited 0."""
    _no_timings(monkeypatch)
    out = tmp_path / "b.json"
    rc, _, err = _run(["--model", str(model), "--batch-sizes", "1", "--data", str(plain_data), "--labels", labels,
                       "--json", str(out), "-q"], capsys)
    assert rc == 2 and "Traceback" not in err, (rc, err)
    assert f"--labels {labels}" in err and "orig_row" in err and "drop --labels" in err, err
    assert not out.exists()


@pytest.mark.parametrize("flag, value", [("--threads", "1"), ("--sessions", "2"), ("--providers", "cpu")])
def test_onnx_runtime_options_with_backend_tensorrt_name_the_flag(flag: str, value: str, model: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """--backend tensorrt --threads 1 said "providers=, threads= and sessions= apply ..." (keyword names, not the
    command line's flags), and only after the data had been read."""
    rc, _, err = _run(["--model", str(model), "--batch-sizes", "1", "--backend", "tensorrt", flag, value,
                       "--json", str(tmp_path / "b.json"), "-q"], capsys)
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (rc, err)
    assert f"{flag} applies to ONNX Runtime only" in err and "--backend tensorrt" in err, err


def test_onnx_runtime_options_with_an_engine_name_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    rc, _, err = _run(["--model", str(engine), "--batch-sizes", "1", "--threads", "2",
                       "--json", str(tmp_path / "b.json"), "-q"], capsys)
    assert rc == 2 and "--threads applies to ONNX Runtime only" in err and "TensorRT engine" in err, err


def test_an_engine_with_backend_onnxruntime_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It said "pass backend='tensorrt'", a keyword, to a user of the command line."""
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    rc, _, err = _run(["--model", str(engine), "--batch-sizes", "1", "--backend", "onnxruntime",
                       "--json", str(tmp_path / "b.json"), "-q"], capsys)
    assert rc == 2 and "--backend onnxruntime" in err and "TensorRT engine" in err and "backend=" not in err, err


def test_summary_says_why_the_overhead_batch_is_not_the_one_asked(model: Path) -> None:
    """A model with a fixed batch of 8 printed "SDK overhead at batch 8" after the default --overhead-batch 64,
    with the reason only in the JSON's overhead.note."""
    doc = {"model": "m.onnx", "backend": "onnxruntime", "providers": ["CPUExecutionProvider"], "threads": 1,
           "sessions": 1, "latency": [], "accuracy": None, "load_average": {},
           "overhead": {"batch_size": 8, "overhead_pct": 5.0, "overhead_pct_min": 4.0, "target_pct": 10.0,
                        "note": "measured at batch 8, not the requested 64: the model takes exactly 8 faces at a time"}}
    text = bench.format_summary(doc)
    assert "not the requested 64: the model takes exactly 8 faces at a time" in text, text


def test_device_on_a_cpu_only_run_is_refused(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """--device 3 on ONNX Runtime's CPU provider was ignored, and the JSON recorded "device": 3 beside CPU timings."""
    _no_timings(monkeypatch)
    out = tmp_path / "b.json"
    rc, _, err = _run(["--model", str(model), "--batch-sizes", "1", "--providers", "cpu", "--device", "3",
                       "--json", str(out), "-q"], capsys)
    assert rc == 2 and "--device 3" in err and "CPU" in err and "Traceback" not in err, (rc, err)
    assert not out.exists()


def test_device_0_on_the_cpu_still_runs(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b.json"
    rc, _, err = _run(["--model", str(model), "--batch-sizes", "1", "--iters", "1", "--warmup", "0",
                       "--overhead-batch", "0", "--providers", "cpu", "--json", str(out), "-q"], capsys)
    assert rc == 0, err
    assert json.loads(out.read_text())["device"] == 0


# ---------------------------------------------------------------------------------------------
# fsrfer-crowd-bench
# ---------------------------------------------------------------------------------------------
def _crowd(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from fsrfer_edge import crowd_bench

    try:
        rc = crowd_bench.main(argv)
    except SystemExit as exc:
        rc = exc.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    return rc, out, err


def _no_crowd_work(monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge import crowd_bench

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(crowd_bench, "report_tables", fail)
    monkeypatch.setattr(crowd_bench, "compare", fail)
    monkeypatch.setattr(crowd_bench, "public_domain_faces", fail)
    monkeypatch.setattr(crowd_bench, "load_test_faces", fail)


@pytest.mark.parametrize("extra, flag", [(["--out", "OUT"], "--out"), (["--scenes", "3"], "--scenes"),
                                         (["--no-data"], "--no-data"), (["--size", "64x64"], "--size")])
def test_crowd_table_with_run_options_is_refused_not_ignored(extra: list[str], flag: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """--table REPORT --out NEW.json printed the old report's tables, wrote nothing and exited 0."""
    _no_crowd_work(monkeypatch)
    report = tmp_path / "report.json"
    report.write_text("{}")
    out = tmp_path / "new.json"
    rc, _, err = _crowd(["--table", str(report), *[str(out) if a == "OUT" else a for a in extra]], capsys)
    assert rc == 2 and "Traceback" not in err, (rc, err)
    assert flag in err and "--table" in err, err
    assert not out.exists()


def test_crowd_no_data_with_data_is_refused_not_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """--no-data --data DIR ran on the public-domain face without a word about DIR."""
    _no_crowd_work(monkeypatch)
    out = tmp_path / "c.json"
    rc, _, err = _crowd(["--no-data", "--data", str(tmp_path), "--out", str(out)], capsys)
    assert rc == 2 and "--no-data" in err and "--data" in err and "Traceback" not in err, (rc, err)
    assert not out.exists()


def test_crowd_fps_size_without_a_timing_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """--fps-size 320x240 --fps-repeats 0 timed nothing, and the report carried no speed to show it."""
    _no_crowd_work(monkeypatch)
    rc, _, err = _crowd(["--no-data", "--fps-repeats", "0", "--fps-size", "320x240", "--out", str(tmp_path / "c.json")],
                        capsys)
    assert rc == 2 and "--fps-size" in err and "--fps-repeats 0" in err, (rc, err)


def test_summary_of_a_tensorrt_run_does_not_name_onnx_runtime_threads() -> None:
    """A TensorRT run's summary said "(threads=ONNX Runtime's default)"."""
    doc = {"model": "m.engine", "backend": "tensorrt", "providers": ["TensorRT"], "threads": None, "sessions": 1,
           "latency": [], "accuracy": None, "load_average": {}, "overhead": None}
    first = bench.format_summary(doc).splitlines()[0]
    assert "ONNX Runtime" not in first and "threads" not in first, first
    doc.update(backend="onnxruntime", providers=["CPUExecutionProvider"], model="m.onnx")
    assert "threads=ONNX Runtime's default" in bench.format_summary(doc).splitlines()[0]


def test_sessions_with_cuda_providers_names_the_flags(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """--sessions 2 --providers cuda said "pass providers='cpu' with it", a keyword, after the data was read."""
    monkeypatch.setattr(bench, "Recognizer", lambda *a, **k: pytest.fail("the model was opened"))
    rc, _, err = _run(["--model", str(model), "--batch-sizes", "1", "--sessions", "2", "--providers", "cuda",
                       "--json", str(tmp_path / "b.json"), "-q"], capsys)
    assert rc == 2 and "--sessions 2" in err and "--providers cuda" in err and "providers=" not in err, err


def test_crowd_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A worker's error quoting ONNX Runtime's multi-line message came out on several lines."""
    from fsrfer_edge import crowd_bench
    from fsrfer_edge.errors import DataError

    def fail(*args: object, **kwargs: object) -> None:
        raise DataError("detector yunet: [ONNXRuntimeError] : 10 : INVALID_GRAPH :\n  Load model failed\n")

    monkeypatch.setattr(crowd_bench, "compare", fail)
    rc, _, err = _crowd(["--no-data", "--scenes", "1", "--faces", "2", "--size", "64x64", "--fps-repeats", "0",
                         "--score-sweep=", "--out", str(tmp_path / "c.json")], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("fsrfer-crowd-bench: error: detector yunet:") and "Load model failed" in err, err


def test_crowd_rounds_without_a_timing_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """--rounds 5 --fps-repeats 0 timed nothing, and the comparison recorded "rounds": 5."""
    _no_crowd_work(monkeypatch)
    rc, _, err = _crowd(["--no-data", "--fps-repeats", "0", "--rounds", "5", "--compare", "opencv",
                         "--out", str(tmp_path / "c.json")], capsys)
    assert rc == 2 and "--rounds 5" in err and "--fps-repeats 0" in err, (rc, err)


def test_crowd_comparison_without_a_timing_records_no_rounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """With --fps-repeats 0 no speed round runs, yet the comparison said "rounds": 3 (the --rounds default)."""
    from fsrfer_edge import crowd_bench

    seen: list[int] = []

    def fake(specs: list, job: object, rounds: int, big_photo: object) -> list[dict]:
        seen.append(rounds)
        return [{"config": {"detector": s.name, "detector_min_score": 0.5, "margin": 0.0},
                 "detection": {"bins": [{"bin": "8-12", "recall": 0.5}]}, "accuracy": None} for s in specs]

    monkeypatch.setattr(crowd_bench, "compare", fake)
    out = tmp_path / "c.json"
    rc, _, err = _crowd(["--no-data", "--detector", "yunet", "--compare", "opencv", "--fps-repeats", "0",
                         "--score-sweep=", "--out", str(out)], capsys)
    assert rc == 0, err
    assert json.loads(out.read_text())["comparison"]["rounds"] == 0
