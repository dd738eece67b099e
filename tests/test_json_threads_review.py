"""Review: the package's own JSON files are read with loads_json (a key given twice is refused, not silently the
last value), and fsrfer-bench / fsrfer-crowd-bench take --threads as fsrfer-crowd and fsrfer-demo do (0: ONNX
Runtime's default, the same as leaving it out). CPU only; no model is run."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from fsrfer_edge import engine_cache
from fsrfer_edge.engine_cache import EngineKey
from fsrfer_edge.errors import EngineError, InputError, ModelError
from fsrfer_edge.metadata import ModelInfo


def _duplicate_first_key(text: str, key: str, value: Any) -> str:
    """``text`` (a JSON object) with ``key`` given once more, before its own entry."""
    assert text.lstrip().startswith("{")
    return text.replace("{", "{" + json.dumps(key) + ": " + json.dumps(value) + ", ", 1)


# -- 1. one JSON reader ------------------------------------------------------------------------------------------
def _engine(folder: Path) -> Path:
    onnx = folder / "face.onnx"
    onnx.write_bytes(b"onnx")
    sha = hashlib.sha256(onnx.read_bytes()).hexdigest()
    key = EngineKey("10.3.0.26", "8.7", "fp16", 1, 8, 64, device="orin-16sm-61g")
    path = folder / key.filename(engine_cache.model_stem(onnx), sha)
    path.write_bytes(b"plan")
    engine_cache.write_sidecar(path, key, sha, ModelInfo(precision="fp16"), extra=engine_cache.source_record(onnx))
    return path


def test_engine_sidecar_with_a_key_given_twice_is_corrupt(tmp_path: Path) -> None:
    """A sidecar holding "onnx_sha256" twice was read with the last value, as if the file were sound."""
    engine = _engine(tmp_path)
    side = engine_cache.sidecar_path(engine)
    assert engine_cache.read_sidecar(engine)["onnx_sha256"]  # sound as written
    side.write_text(_duplicate_first_key(side.read_text(), "onnx_sha256", "0" * 64))
    with pytest.raises(EngineError, match=r"corrupt .*duplicate key 'onnx_sha256'.*rebuild the engine"):
        engine_cache.read_sidecar(engine)


def test_engine_sidecar_nested_too_deep_is_corrupt(tmp_path: Path) -> None:
    """JSON nested beyond Python's recursion limit raised a bare RecursionError out of read_sidecar."""
    engine = _engine(tmp_path)
    engine_cache.sidecar_path(engine).write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(EngineError, match="corrupt"):
        engine_cache.read_sidecar(engine)


def _crowd_report() -> dict[str, Any]:
    return {"config": {}, "accuracy": None,
            "detection": {"bins": [{"bin": "6-8", "faces": 3, "recall": 0.5}], "overall": {"faces": 3, "recall": 0.5}}}


def test_crowd_bench_table_of_a_report_with_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    """--table printed the second of two "detection" objects as if the report were sound."""
    from fsrfer_edge import crowd_bench

    report = tmp_path / "report.json"
    report.write_text(json.dumps(_crowd_report()))
    assert "| all | 3 | 50.0% |" in crowd_bench.report_tables(report)  # sound as written
    report.write_text(_duplicate_first_key(report.read_text(), "detection", _crowd_report()["detection"]))
    with pytest.raises(InputError, match=r"not a readable benchmark report \(duplicate key 'detection'.*fsrfer-crowd"):
        crowd_bench.report_tables(report)
    report.write_text("[" * 200_000 + "]" * 200_000)  # was a bare RecursionError
    with pytest.raises(InputError, match="not a readable benchmark report"):
        crowd_bench.report_tables(report)


def test_blazeface_metadata_with_a_key_given_twice_is_malformed() -> None:
    from fsrfer_edge.detection.blazeface import METADATA_KEY, AnchorLayout

    doc = {"input_size": 256, "strides": [16, 32], "anchors_per_cell": [2, 6]}
    AnchorLayout.from_metadata({METADATA_KEY: json.dumps(doc)}, "det.onnx")  # sound as written
    twice = _duplicate_first_key(json.dumps(doc), "input_size", 128)
    with pytest.raises(ModelError, match=r"det\.onnx: 'fsrfer_detector' metadata is malformed \(duplicate key"):
        AnchorLayout.from_metadata({METADATA_KEY: twice}, "det.onnx")


def test_trt_operator_table_with_a_key_given_twice_is_refused(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.export import trt_check

    text = (trt_check.TABLE_DIR / "tensorrt-8.5.json").read_text()
    (tmp_path / "t.json").write_text(_duplicate_first_key(text, "tensorrt", "99.0"))
    monkeypatch.setattr(trt_check, "TABLE_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"t\.json: duplicate key 'tensorrt'"):
        trt_check.load_table("t")


# -- 2. --threads 0 in the benchmarks ----------------------------------------------------------------------------
def _crowd_threads_message(value: int) -> str:
    """What fsrfer-crowd (and fsrfer-demo) say of ``--threads value``."""
    import argparse

    from fsrfer_edge import crowd_cli

    args = argparse.Namespace(min_score=None, min_face=8.0, margin=None, sessions=None, threads=value)
    with pytest.raises(InputError) as err:
        crowd_cli.check_shared_options(args)
    return str(err.value)


class _Stop(InputError):
    pass


@pytest.mark.parametrize("value", [-1, 1025])
def test_bench_threads_out_of_range_says_what_fsrfer_crowd_says(value: int) -> None:
    from fsrfer_edge import bench

    args = bench.build_parser().parse_args(["--threads", str(value), "--json", "b.json"])
    with pytest.raises(InputError) as err:
        bench.check_options(args)
    assert str(err.value) == _crowd_threads_message(value)


def test_bench_threads_0_is_onnx_runtimes_default_as_when_left_out(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """fsrfer-bench --threads 0 was refused, where fsrfer-crowd and fsrfer-demo take it for ONNX Runtime's
    default; the run must get what it gets without --threads (None)."""
    from fsrfer_edge import bench

    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    seen: list[Any] = []

    def fake_run(*args: Any, **kwargs: Any) -> None:
        seen.append(kwargs["threads"])
        raise _Stop("stop here")

    monkeypatch.setattr(bench, "run_bench", fake_run)
    for extra in ([], ["--threads", "0"], ["--threads", "3"]):
        rc = bench.main(["--model", str(model), "--batch-sizes", "1", "--json", str(tmp_path / "b.json"), *extra])
        err = capsys.readouterr().err
        assert rc == 2 and "stop here" in err, err
    assert seen == [None, None, 3]
    for backend in ("tensorrt", "onnxruntime"):  # 0 asks for nothing: no refusal with TensorRT either
        bench.check_options(bench.build_parser().parse_args(["--threads", "0", "--backend", backend, "--json", "b"]))
    assert "default, or 0:" in " ".join(bench.build_parser().format_help().split())


def _crowd_bench_args(*extra: str) -> Any:
    from fsrfer_edge import crowd_bench

    return crowd_bench.build_parser().parse_args(["--out", "c.json", *extra])


@pytest.mark.parametrize("value", [-1, 1025])
def test_crowd_bench_threads_out_of_range_says_what_fsrfer_crowd_says(value: int) -> None:
    from fsrfer_edge import crowd_bench

    with pytest.raises(InputError) as err:
        crowd_bench.check_options(_crowd_bench_args("--threads", str(value)))
    assert str(err.value) == _crowd_threads_message(value)


def test_crowd_bench_threads_0_is_onnx_runtimes_default_as_when_left_out(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge import crowd_bench

    class Pool:
        labelled = False

    seen: list[Any] = []

    def fake_compare(specs: Any, job: Any, *args: Any, **kwargs: Any) -> None:
        seen.append(job.threads)
        raise _Stop("stop here")

    monkeypatch.setattr(crowd_bench, "public_domain_faces", lambda: Pool())
    monkeypatch.setattr(crowd_bench, "compare", fake_compare)
    for extra in ([], ["--threads", "0"], ["--threads", "2"]):
        rc = crowd_bench.main(["--no-data", "--detector", "opencv", "--out", str(tmp_path / "c.json"), *extra])
        err = capsys.readouterr().err
        assert rc == 2 and "stop here" in err, err
    assert seen == [None, None, 2]
    assert "default, or 0:" in " ".join(crowd_bench.build_parser().format_help().split())
