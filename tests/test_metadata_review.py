"""Review of model metadata validation: ModelInfo built directly, variant_info, duplicate JSON keys."""
from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from fsrfer_edge.errors import InputError, ModelError
from fsrfer_edge.metadata import ModelInfo
from fsrfer_edge.preprocessing import Preprocessing

# -- ModelInfo built directly -----------------------------------------------------------------------------


@pytest.mark.parametrize("change, match", [
    ({"preprocessing": {"input_size": 0}}, r"preprocessing is a dict .*; expected a Preprocessing"),
    ({"factors": ()}, r"factors is \[\]; expected a list of positive integers"),
    ({"factors": (0, 2)}, r"factors is \[0, 2\]; expected a list of positive integers"),
    ({"factors": (-1,)}, r"factors is \[-1\]; expected a list of positive integers"),
    ({"factors": (4, 2, 1)}, r"factors is \[4, 2, 1\]; expected .*distinct, in increasing order"),
    ({"factors": (1, 2, 2)}, r"factors is \[1, 2, 2\]; expected .*distinct, in increasing order"),
    ({"factors": (1.0, 2)}, r"factors is \[1.0, 2\]; expected a list of positive integers"),
    ({"factors": "124"}, r"factors is '124'; expected a list of positive integers"),
    ({"precision": "fp8"}, r"precision 'fp8' is not one of \['fp32', 'fp16', 'int8'\]"),
    ({"precision": "FP16"}, r"precision 'FP16' is not one of"),
    ({"input_dtype": "int8"}, r"input_dtype 'int8' is not one of \['float32', 'uint8'\]"),
    ({"int8_scheme": "u8s8"}, r"int8_scheme 'u8s8' with precision 'fp32'; expected"),
    ({"precision": "int8", "int8_scheme": "s8u8"}, r"int8_scheme 's8u8' with precision 'int8'; expected"),
    ({"method": 3}, r"field 'method' is 3; expected a string"),
    ({"input_name": ""}, r"field 'input_name' is ''; expected a non-empty string"),
    ({"output_name": None}, r"field 'output_name' is None; expected a string"),
    ({"checkpoint_sha256": b"ab"}, r"field 'checkpoint_sha256' is b'ab'; expected a string"),
    ({"format_version": 0}, r"format_version is 0; expected an integer >= 1"),
    ({"format_version": 2}, r"format_version is 2; expected at most 1"),
])
def test_model_info_built_directly_is_checked(change: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match):
        ModelInfo(**change)


def test_model_info_preprocessing_is_checked_when_built_directly() -> None:
    for bad in ({"input_size": 0}, {"input_size": -48}, {"classes": ()}, {"classes": ("a", "a")}):
        with pytest.raises(InputError, match="expected"):
            ModelInfo(preprocessing=Preprocessing(**bad))


def test_valid_model_infos_are_still_accepted() -> None:
    assert ModelInfo().factors == (1, 2, 3, 4, 6, 8)
    assert ModelInfo(factors=[1, 2]) == ModelInfo(factors=(1, 2))  # a list is kept as the tuple it means
    assert ModelInfo(precision="int8", int8_scheme="u8s8", factors=(1, 2), checkpoint_sha256="ab" * 32).factors
    assert ModelInfo(precision="fp16", input_dtype="uint8", method="hr").precision == "fp16"
    info = ModelInfo(factors=(2, 8))
    assert ModelInfo.from_json(info.to_json()) == info


def test_model_info_from_metadata_reports_the_same_checks_as_a_model_error() -> None:
    for change, match in (({"factors": [2, 1]}, r"factors is \[2, 1\]; expected"), ({"factors": []}, "factors is"),
                          ({"method": ""}, "'method' is ''; expected"), ({"precision": "fp8"}, "'fp8' is not one of")):
        with pytest.raises(ModelError, match=r"m\.onnx: fsrfer metadata .*" + match):
            ModelInfo.from_dict({**ModelInfo().to_dict(), **change}, "m.onnx")


# -- variant_info -----------------------------------------------------------------------------------------


def test_variant_info_refuses_unknown_fields_naming_them() -> None:
    from fsrfer_edge.export.onnx_export import variant_info

    with pytest.raises(InputError, match=r"unknown ModelInfo field\(s\) \['precison'\].*expected.*'precision'"):
        variant_info(ModelInfo(), precison="fp16")


@pytest.mark.parametrize("changes, match", [
    ({"precision": "fp8"}, "precision 'fp8' is not one of"),
    ({"precision": "fp16", "int8_scheme": "u8s8"}, "int8_scheme 'u8s8' with precision 'fp16'"),
    ({"factors": (8, 1)}, r"factors is \[8, 1\]"),
])
def test_variant_info_checks_its_result(changes: dict[str, Any], match: str) -> None:
    from fsrfer_edge.export.onnx_export import variant_info

    with pytest.raises(InputError, match=match):
        variant_info(ModelInfo(), **changes)


def test_variant_info_still_makes_variants() -> None:
    from fsrfer_edge.export.onnx_export import variant_info

    base = ModelInfo(checkpoint_sha256="ab" * 32)
    out = variant_info(base, precision="int8", int8_scheme="s8s8")
    assert (out.precision, out.int8_scheme, out.checkpoint_sha256) == ("int8", "s8s8", base.checkpoint_sha256)
    with pytest.raises(InputError, match="received a dict; expected a ModelInfo"):
        variant_info({"precision": "fp32"}, precision="fp16")  # type: ignore[arg-type]


# -- duplicate keys in the package's JSON files -----------------------------------------------------------


def test_json_reader_refuses_duplicate_keys_naming_them() -> None:
    from fsrfer_edge.fileio import loads_json

    assert loads_json('{"a": 1, "b": {"c": [1, {"d": 2}]}}') == {"a": 1, "b": {"c": [1, {"d": 2}]}}
    with pytest.raises(InputError, match=r"x\.json: duplicate key 'a' in a JSON object"):
        loads_json('{"a": 1, "a": 2}', "x.json")
    with pytest.raises(InputError, match="duplicate key 'd'"):  # nested objects too
        loads_json('{"a": 1, "b": [{"d": 1, "d": 1}]}')
    with pytest.raises(ValueError):  # not JSON at all: json's own error
        loads_json("{")


def _duplicated_first_key(text: str, value: Any) -> str:
    """``text`` (a JSON object) with its first key given once more, first, with ``value``."""
    doc = json.loads(text)
    first = next(iter(doc))
    return "{" + json.dumps(first) + ": " + json.dumps(value) + ", " + text.lstrip()[1:]


def test_model_metadata_with_a_duplicate_key_is_refused() -> None:
    text = ModelInfo().to_json().replace('"precision": "fp32"', '"precision": "int8", "precision": "fp32"')
    assert text.count('"precision"') == 2
    with pytest.raises(ModelError, match=r"m\.onnx: fsrfer metadata .*duplicate key 'precision'"):
        ModelInfo.from_json(text, "m.onnx")


def test_score_calibration_with_a_duplicate_key_is_refused(tmp_path: Path) -> None:
    from fsrfer_edge.confidence import ScoreCalibration
    from fsrfer_edge.sidecars import PACKAGED

    text = (PACKAGED / "default.scores.json").read_text()
    path = tmp_path / "m.scores.json"
    path.write_text(_duplicated_first_key(text, "0" * 64))
    ScoreCalibration.from_dict(json.loads(path.read_text()))  # the last value alone is a valid file
    with pytest.raises(ModelError, match=r"m\.scores\.json.*duplicate key 'checkpoint_sha256'"):
        ScoreCalibration.load(path)


def test_engine_sidecar_with_a_duplicate_key_is_not_followed(tmp_path: Path) -> None:
    from fsrfer_edge import sidecars
    from fsrfer_edge.engine_cache import sidecar_path

    engine = tmp_path / "m.fp16.0123abcd.trt10.engine"
    model = tmp_path / "src" / "m.onnx"
    host = socket.gethostname()
    sidecar_path(engine).write_text('{"source_path": "/elsewhere/x.onnx", "source_path": %s, "source_host": %s}'
                                    % (json.dumps(str(model)), json.dumps(host)))
    assert sidecars._engine_source(engine) is None


def test_checkpoint_factors_in_any_order_or_repeated_give_the_increasing_set() -> None:
    from fsrfer_edge.export.onnx_export import checkpoint_factors

    ckpt = {"meta": {"config": {"degrade": {"factors": [4, 2, 8, 2]}}}}
    assert checkpoint_factors(ckpt) == (2, 4, 8)
    assert checkpoint_factors({"meta": {"factors": [3, 1]}}) == (1, 3)
