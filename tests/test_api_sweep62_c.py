"""Bad inputs to the public API of the exporter (onnx_export, quantize, calib, check, engine, trt_check) and of the
ONNX Runtime backend, found by a sweep: each is refused with the package's own error, saying what was received
and what was expected (not a TypeError, KeyError or numpy error, a string read as true, or a check that passes
because it compared nothing)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from _onnx_models import make_tiny_onnx  # noqa: E402

from fsrfer_edge.backends import onnxruntime_backend as orb  # noqa: E402
from fsrfer_edge.errors import ConfigError, InputError, ModelError  # noqa: E402
from fsrfer_edge.export import calib, check, engine, onnx_export, quantize, trt_check  # noqa: E402
from fsrfer_edge.engine_cache import EngineKey  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_onnx(tmp_path_factory.mktemp("sweep62c") / "tiny.onnx")


@pytest.fixture(scope="module")
def info(tiny: Path):
    return onnx_export.read_model_info(tiny)


def _faces(n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (48, 48), dtype=np.uint8) for _ in range(n)]


# -- onnx_export ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["uint8_input", "flip"])
@pytest.mark.parametrize("bad", ["no", None, 1])
def test_export_onnx_refuses_flags_that_are_not_bools(tmp_path: Path, flag: str, bad: object) -> None:
    out = tmp_path / "m.onnx"
    with pytest.raises(InputError, match=f"{flag}="):
        onnx_export.export_onnx(tmp_path / "missing.pt", out, **{flag: bad})
    assert not out.exists()


@pytest.mark.parametrize("bad", ["no", -1, 1.5, True, [2]])
def test_ort_session_refuses_threads_that_are_not_a_count(tiny: Path, bad: object) -> None:
    with pytest.raises(InputError, match="threads="):
        onnx_export.ort_session(tiny, threads=bad)
    with pytest.raises(InputError, match="threads="):
        check.onnx_runner(tiny, threads=bad)


@pytest.mark.parametrize("bad", [{"a": 1}, {1: "a"}, "ab", None])
def test_set_metadata_props_refuses_entries_that_are_not_strings(tiny: Path, bad: object) -> None:
    model = onnx_export.load_onnx(tiny)
    with pytest.raises(InputError, match="metadata"):
        onnx_export.set_metadata_props(model, bad)  # type: ignore[arg-type]


def test_save_onnx_refuses_a_path_in_place_of_the_model(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="ModelProto"):
        onnx_export.save_onnx(str(tiny), tmp_path / "out.onnx")  # type: ignore[arg-type]
    assert not (tmp_path / "out.onnx").exists()


# -- quantize -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["per_channel", "quantize_head", "float_image_conv", "quantize_film"])
def test_quantize_int8_refuses_flags_that_are_not_bools(tiny: Path, info, tmp_path: Path, flag: str) -> None:
    inputs = calib.to_model_input(check.random_pixels(info, 4), info)
    with pytest.raises(InputError, match=f"{flag}='no'"):
        quantize.quantize_int8(tiny, tmp_path / "q.onnx", inputs, scheme="u8s8", **{flag: "no"})
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("bad", [None, 3, ["/trunk/", 3], [["/trunk/"]]])
def test_keep_float_that_is_not_a_list_of_prefixes_is_a_config_error(tiny: Path, info, tmp_path: Path,
                                                                     bad: object) -> None:
    inputs = calib.to_model_input(check.random_pixels(info, 4), info)
    with pytest.raises(ConfigError, match="keep_float"):
        quantize.quantize_int8(tiny, tmp_path / "q.onnx", inputs, scheme="u8s8", keep_float=bad)  # type: ignore
    with pytest.raises(ConfigError, match="prefix"):
        quantize.prefixed_nodes(onnx_export.load_onnx(tiny), bad)  # type: ignore[arg-type]


# -- calib ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [4, None, "1,2,4", 2.0])
def test_calibration_factors_that_are_not_a_list_are_input_errors(tmp_path: Path, bad: object) -> None:
    np.savez(tmp_path / "f.npz", images=np.stack(_faces()))
    with pytest.raises(InputError, match="factors"):
        calib.mix_factors(_faces(), bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="factors"):
        calib.calibration_faces(tmp_path / "f.npz", 4, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["no", -1, 1.5, True, None])
def test_mix_factors_refuses_a_seed_that_is_not_a_count(bad: object) -> None:
    with pytest.raises(InputError, match="seed"):
        calib.mix_factors(_faces(), [1, 2], seed=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [None, "7", 0, math.nan, True])
def test_load_labelled_refuses_a_class_count_that_is_not_a_positive_integer(tmp_path: Path, bad: object) -> None:
    np.savez(tmp_path / "f.npz", images=np.stack(_faces()), labels=np.arange(4))
    with pytest.raises(InputError, match="classes="):
        calib.load_labelled(tmp_path / "f.npz", classes=bad)  # type: ignore[arg-type]


# -- check ----------------------------------------------------------------------------------------------------------

def test_check_step_with_an_unknown_precision_names_the_known_ones(tiny: Path, info) -> None:
    run = check.onnx_runner(tiny)
    with pytest.raises(InputError, match="precision 'FP16'.*fp32"):
        check.check_step("s", run, run, "FP16", check.random_pixels(info, 2))


@pytest.mark.parametrize("bad", [[[1.0, 2.0]], np.zeros(5, np.float32), np.zeros((2, 1, 24, 24), np.float32)])
def test_runners_refuse_pixels_that_are_not_a_batch_of_the_model_size(tiny: Path, info, bad: object) -> None:
    with pytest.raises(InputError, match=r"\(N, 1, 48, 48\)"):
        check.onnx_runner(tiny)(bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"\(N, 1, 48, 48\)"):
        check.check_step("s", check.onnx_runner(tiny), check.onnx_runner(tiny), "fp32", bad)  # type: ignore


@pytest.mark.parametrize("bad", [0, -1, None, True, "8"])
def test_onnx_runner_refuses_a_batch_size_that_is_not_positive(tiny: Path, bad: object) -> None:
    with pytest.raises(InputError, match="batch_size="):
        check.onnx_runner(tiny, batch_size=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("field, bad", [("max_abs", -1.0), ("max_abs", math.nan), ("max_abs", "1e-3"),
                                        ("max_abs", True), ("min_agreement", 1.5), ("min_agreement", math.nan),
                                        ("min_agreement", None), ("count_ties", "no")])
def test_tolerance_refuses_fields_out_of_range(field: str, bad: object) -> None:
    fields = {"max_abs": 1e-3, "min_agreement": 0.9, "count_ties": False, field: bad}
    with pytest.raises(InputError, match=f"{field}="):
        check.Tolerance(**fields)  # type: ignore[arg-type]


def test_tolerance_takes_an_infinite_logit_limit() -> None:
    assert check.Tolerance(max_abs=math.inf, min_agreement=0.9).max_abs == math.inf


TABLE = {"fp32": {"x1": 50.0, "mean": 50.0}, "int8": {"x1": 40.0, "mean": 40.0}}


@pytest.mark.parametrize("bad", [math.nan, -1.0, "2", True, None])
def test_accuracy_gate_refuses_a_drop_limit_that_is_not_a_number_of_points(bad: object) -> None:
    with pytest.raises(InputError, match="max_int8_drop="):
        check.accuracy_gate(TABLE, "fp32", ["int8"], bad)  # type: ignore[arg-type]


def test_accuracy_gate_refuses_a_reference_the_table_lacks_and_a_force_that_is_not_a_bool() -> None:
    with pytest.raises(InputError, match="reference 'FP32'.*fp32"):
        check.accuracy_gate(TABLE, "FP32", ["int8"], 2.0)
    with pytest.raises(InputError, match="force="):
        check.accuracy_gate(TABLE, "fp32", ["int8"], 2.0, force="no")  # type: ignore[arg-type]


def test_accuracy_table_refuses_labels_of_another_length_and_no_factors(tiny: Path, info) -> None:
    runners = {"fp32": check.onnx_runner(tiny)}
    images = np.stack(_faces())
    with pytest.raises(InputError, match="labels"):
        check.accuracy_table(runners, images, np.arange(3), info, [1])
    with pytest.raises(InputError, match="labels"):
        check.accuracy_table(runners, images, None, info, [1])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="factors"):
        check.accuracy_table(runners, images, np.arange(4), info, [])


# -- trt_check ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["tensorrt-10.1", (), None])
def test_trt_check_tables_that_are_not_a_list_of_names_are_config_errors(tiny: Path, bad: object) -> None:
    with pytest.raises(ConfigError, match="tables"):
        trt_check.check_file(tiny, bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tables"):
        trt_check.opset_range(bad)  # type: ignore[arg-type]


# -- engine ---------------------------------------------------------------------------------------------------------

def test_engine_path_for_a_missing_onnx_file_is_a_model_error(tmp_path: Path) -> None:
    key = EngineKey("10.1.0", "8.7", "fp16", 1, 8, 32, "dev")
    with pytest.raises(ModelError, match="missing.onnx"):
        engine.engine_path_for(tmp_path / "missing.onnx", tmp_path, key)


# -- ONNX Runtime backend -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [None, "1", -1, 1.5, True])
def test_backend_refuses_a_device_that_is_not_an_index(tiny: Path, bad: object) -> None:
    with pytest.raises(InputError, match="device="):
        orb.resolve_providers("cpu", device=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="device="):
        orb.OnnxRuntimeBackend(tiny, providers="cpu", device=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["no", None, 0])
def test_backend_refuses_a_spinning_flag_that_is_not_a_bool(tiny: Path, bad: object) -> None:
    with pytest.raises(InputError, match="spinning="):
        orb.make_session_options(spinning=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="spinning="):
        orb.OnnxRuntimeBackend(tiny, providers="cpu", spinning=bad)  # type: ignore[arg-type]


def test_backend_refuses_more_sessions_than_it_could_ever_use(tiny: Path) -> None:
    with pytest.raises(InputError, match="sessions="):
        orb.OnnxRuntimeBackend(tiny, providers="cpu", sessions=10**12)


def test_validate_refuses_an_any_size_flag_that_is_not_a_bool(tiny: Path, info) -> None:
    with orb.OnnxRuntimeBackend(tiny, providers="cpu") as backend:
        batch = calib.to_model_input(check.random_pixels(info, 2), info)
        with pytest.raises(InputError, match="any_size="):
            backend.validate(batch, any_size="no")  # type: ignore[arg-type]
        assert backend.validate(batch, any_size=True).shape == batch.shape
