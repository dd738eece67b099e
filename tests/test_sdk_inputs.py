"""SDK and CLI inputs the audit found mishandled: --json over the model or the data, graphs with a fixed batch
size, absurd thread counts, factors too large for the faces, and malformed provider entries. Each is refused
before any work with the package's own error (a one-line CLI error, exit code 2), or handled."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("torch")  # make_tiny_onnx exports with it

from fsrfer_edge import Recognizer, bench  # noqa: E402
from fsrfer_edge.backends.onnxruntime_backend import (MAX_THREADS, OnnxRuntimeBackend,  # noqa: E402
                                                      make_session_options, resolve_providers)
from fsrfer_edge.errors import InputError  # noqa: E402

try:  # tests/ as a package or as a plain directory on sys.path
    from ._onnx_models import make_tiny_onnx
except ImportError:
    from _onnx_models import make_tiny_onnx  # type: ignore[no-redef]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sdk_inputs")
    return {"dynamic": make_tiny_onnx(d / "tiny.onnx"), "fixed8": make_tiny_onnx(d / "fixed8.onnx", static_batch=8)}


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    g = np.random.default_rng(0)
    path = tmp_path / "faces.npz"
    np.savez(path, images=g.integers(0, 256, (6, 48, 48), dtype=np.uint8), labels=g.integers(0, 7, 6))
    return path


def _one_error_line(main: Callable[[Optional[Sequence[str]]], int], argv: list[str],
                    capsys: pytest.CaptureFixture[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def _refuse_opening_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the Recognizer was opened before the arguments were checked")

    monkeypatch.setattr(bench, "Recognizer", fail)


# -- 1. --json over an input ---------------------------------------------------------------------
@pytest.mark.parametrize("victim", ["--model", "--data"])
def test_bench_json_that_would_overwrite_the_model_or_data_is_refused(models: dict[str, Path], data: Path, victim: str,
                                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "victim.onnx"
    model.write_bytes(models["dynamic"].read_bytes())
    target = model if victim == "--model" else data
    before = target.read_bytes()
    _refuse_opening_the_model(monkeypatch)
    err = _one_error_line(bench.main, ["--model", str(model), "--data", str(data), "--batch-sizes", "1",
                                       "--json", str(target)], capsys)
    assert f"is the same file as {victim}" in err
    assert target.read_bytes() == before


@pytest.mark.parametrize("victim", ["--checkpoint", "--data"])
def test_eval_json_that_would_overwrite_the_checkpoint_or_data_is_refused(models: dict[str, Path], data: Path,
                                                                          victim: str, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from trainer.cli import eval_main

    model = tmp_path / "v.onnx"
    model.write_bytes(models["dynamic"].read_bytes())
    target = model if victim == "--checkpoint" else data
    before = target.read_bytes()
    err = _one_error_line(eval_main, ["--checkpoint", str(model), "--data", str(data), "--json", str(target)], capsys)
    assert f"is the same file as {victim}" in err
    assert target.read_bytes() == before


# -- 2. graphs with a fixed batch size ------------------------------------------------------------
@pytest.mark.parametrize("n", [3, 9])
def test_fixed_batch_backend_refuses_a_batch_it_cannot_take(models: dict[str, Path], n: int) -> None:
    with OnnxRuntimeBackend(models["fixed8"], providers="cpu", threads=1) as be:
        assert be.min_batch == be.max_batch == 8
        with pytest.raises(InputError, match=f"batch of {n}; .*takes exactly 8 faces at a time"):
            be.infer(np.zeros((n, 1, 48, 48), np.float32))


def test_recognizer_still_pads_and_splits_for_a_fixed_batch_model(models: dict[str, Path]) -> None:
    x = np.random.default_rng(0).standard_normal((20, 1, 48, 48)).astype(np.float32)
    with Recognizer(models["fixed8"], threads=1) as fixed, Recognizer(models["dynamic"], threads=1) as dynamic:
        want = dynamic.predict_logits(x)  # same seed, same weights
        for n in (3, 8, 20):
            np.testing.assert_allclose(fixed.predict_logits(x[:n]), want[:n], rtol=1e-4, atol=1e-4)
        assert len(fixed.predict(np.zeros((5, 48, 48), np.uint8))) == 5


def test_bench_measures_the_overhead_of_a_fixed_batch_model_at_its_batch(models: dict[str, Path]) -> None:
    doc = bench.run_bench(models["fixed8"], [1, 8], warmup=0, iters=1, threads=1, overhead_batch=64, overhead_reps=1)
    ov = doc["overhead"]
    assert ov["batch_size"] == 8 and ov["sdk_p50_ms"] > 0 and ov["bare_p50_ms"] > 0
    assert ov["note"] == "measured at batch 8, not the requested 64: the model takes exactly 8 faces at a time"
    assert "SDK overhead at batch 8" in bench.format_summary(doc)


# -- 3. threads ------------------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [MAX_THREADS + 1, 2 ** 31, np.int64(3_000_000_000)])
def test_threads_above_the_bound_are_input_errors(models: dict[str, Path], threads: int) -> None:
    with pytest.raises(InputError, match=f"expected an integer from 1 to {MAX_THREADS}"):
        make_session_options(threads)
    with pytest.raises(InputError, match="threads="):
        Recognizer(models["dynamic"], threads=threads)
    make_session_options(MAX_THREADS)  # the bound itself is accepted


def test_bench_threads_above_the_bound_is_one_line(models: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    err = _one_error_line(bench.main, ["--model", str(models["dynamic"]), "--batch-sizes", "1", "--threads",
                                       "3000000000", "--json", str(tmp_path / "b.json")], capsys)
    assert f"threads=3000000000; expected an integer from 1 to {MAX_THREADS}" in err
    assert not (tmp_path / "b.json").exists()


# -- 4. factors ------------------------------------------------------------------------------------
def test_bench_refuses_a_factor_too_large_for_the_faces_before_the_timings(
        models: dict[str, Path], data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _refuse_opening_the_model(monkeypatch)
    err = _one_error_line(bench.main, ["--model", str(models["dynamic"]), "--batch-sizes", "1", "--data", str(data),
                                       "--factors", "1,49", "--json", str(tmp_path / "b.json")], capsys)
    assert "factor 49 on 48x48 faces leaves less than one pixel" in err
    assert not (tmp_path / "b.json").exists()


# -- 5. providers ----------------------------------------------------------------------------------
@pytest.mark.parametrize("entry", [("CPUExecutionProvider",), ("CPUExecutionProvider", None),
                                   ["CPUExecutionProvider", {}], ("CPUExecutionProvider", {}, {})])
def test_malformed_provider_entries_are_input_errors(models: dict[str, Path], entry: Any) -> None:
    with pytest.raises(InputError, match=r"expected a provider name or a \(name, options dict\) pair"):
        resolve_providers([entry])
    with pytest.raises(InputError, match="providers entry"):
        Recognizer(models["dynamic"], providers=[entry], threads=1)
    assert resolve_providers([("CPUExecutionProvider", {}), "CPUExecutionProvider"]) == \
        [("CPUExecutionProvider", {}), "CPUExecutionProvider"]


def test_distinct_files_compare_outputs_with_inputs_and_each_other_only(tmp_path: Path) -> None:
    from fsrfer_edge.fileio import check_distinct_files

    a, b = tmp_path / "a.npz", tmp_path / "b.json"
    check_distinct_files([("--model", a), ("--data", a), ("--json", b)], inputs=2)  # two inputs may be one file
    check_distinct_files([("--model", a), ("--data", None), ("--json", b)], inputs=2)
    with pytest.raises(InputError, match=r"--json .*a\.npz is the same file as --data .*a\.npz"):
        check_distinct_files([("--model", b), ("--data", a), ("--json", a)], inputs=2)
    with pytest.raises(InputError, match="--json .* is the same file as --out"):
        check_distinct_files([("the input", a), ("--out", b), ("--json", b)])
