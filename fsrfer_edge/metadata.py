"""What an exported model says about itself, stored as ONNX metadata (and in engine sidecars).

The exporter writes a :class:`ModelInfo` under the metadata key ``fsrfer``; every runtime backend
reads it back, so preprocessing, class names and tensor names are never hard-coded at run time.
"""
from __future__ import annotations

import dataclasses
import json
import reprlib
from types import SimpleNamespace
from typing import Any, Mapping

from .errors import InputError, ModelError
from .fileio import loads_json
from .preprocessing import FACTORS, Preprocessing

METADATA_KEY = "fsrfer"
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
INPUT_DTYPES = ("float32", "uint8")
#: Q/DQ flavours of an int8 model (``int8_scheme``; empty when unknown, and for the other precisions).
INT8_SCHEMES = ("s8s8", "u8s8")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


#: The fields that hold text; the names among them may not be empty either.
_STRING_FIELDS = ("method", "input_name", "output_name", "input_dtype", "precision", "int8_scheme", "checkpoint_sha256")
_NAME_FIELDS = ("method", "input_name", "output_name")


def _version_problem(version: Any) -> str:
    """What is wrong with a ``format_version`` ("" when nothing)."""
    if not _positive_int(version):
        return f"format_version is {version!r}; expected an integer >= 1"
    if version > FORMAT_VERSION:
        return (f"format_version is {version}; expected at most {FORMAT_VERSION}, the newest this fsrfer-edge "
                "understands: upgrade fsrfer-edge")
    return ""


def _factors_problem(factors: Any) -> str:
    """What is wrong with ``factors`` ("" when nothing): they name the down-sample factors a model was trained for,
    each once, smallest first, as the score and group calibrations list theirs."""
    shown = list(factors) if isinstance(factors, (list, tuple)) else factors
    if not isinstance(factors, (list, tuple)) or not factors or not all(_positive_int(f) for f in factors):
        return f"factors is {shown!r}; expected a list of positive integers, e.g. [1, 2, 4]"
    if list(factors) != sorted(set(factors)):
        return f"factors is {shown!r}; expected a list of positive integers, each distinct, in increasing order"
    return ""


def model_info_problems(fields: Mapping[str, Any]) -> list[str]:
    """What is wrong with the fields of a :class:`ModelInfo` (a mapping of every field name to its value), one message
    per problem (empty: valid): the checks of both a ModelInfo built in code and one read from a model's metadata."""
    info = SimpleNamespace(**fields)
    out: list[str] = []
    if not isinstance(info.preprocessing, Preprocessing):
        pre = info.preprocessing
        out.append(f"preprocessing is a {type(pre).__name__} ({reprlib.repr(pre)}); expected a Preprocessing")
    for name in _STRING_FIELDS:
        value = getattr(info, name)
        if not isinstance(value, str):
            out.append(f"field {name!r} is {value!r}; expected a string")
        elif name in _NAME_FIELDS and not value:
            out.append(f"field {name!r} is ''; expected a non-empty string")
    if isinstance(info.precision, str) and info.precision not in PRECISIONS:
        out.append(f"precision {info.precision!r} is not one of {list(PRECISIONS)}")
    if isinstance(info.input_dtype, str) and info.input_dtype not in INPUT_DTYPES:
        out.append(f"input_dtype {info.input_dtype!r} is not one of {list(INPUT_DTYPES)}")
    if isinstance(info.int8_scheme, str) and isinstance(info.precision, str) and info.precision in PRECISIONS \
            and info.int8_scheme not in (("",) + INT8_SCHEMES if info.precision == "int8" else ("",)):
        out.append(f"int8_scheme {info.int8_scheme!r} with precision {info.precision!r}; expected '' or one of "
                   f"{list(INT8_SCHEMES)} for precision 'int8', '' for the others")
    out += [p for p in (_factors_problem(info.factors), _version_problem(info.format_version)) if p]
    return out


def _check_keys(d: Mapping[Any, Any], fields: set[str], what: str, source: str) -> None:
    """Refuse metadata with a field missing (every exporter version writes all of them, so a missing one would
    only be filled in silently with a default: another normalisation, another input name) or an unknown one."""
    missing = sorted(fields - set(d))
    unknown = sorted(map(repr, set(d) - fields))
    if missing:
        raise ModelError(f"{source}: fsrfer metadata {what}has no {missing}; expected every field of "
                         f"{sorted(fields)}, as fsrfer-export writes them. Export the model again with fsrfer-export")
    if unknown:
        raise ModelError(f"{source}: fsrfer metadata {what}has unknown keys [{', '.join(unknown)}]; expected the "
                         f"fields {sorted(fields)}. A newer fsrfer-export may have written it: upgrade fsrfer-edge")


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Self-description of an exported fused model.

    ``input_dtype`` is ``float32`` (normalised NCHW input) or ``uint8`` (raw pixels NCHW; the graph
    normalises). ``precision`` is a property of the file: ``fp32``, ``fp16`` or ``int8`` (Q/DQ);
    ``int8_scheme`` tells which Q/DQ flavour: ``s8s8`` (symmetric, for TensorRT) or ``u8s8``
    (asymmetric uint8 activations, fast on ONNX Runtime CPU).
    """

    preprocessing: Preprocessing = Preprocessing()
    method: str = "fsrfer"
    input_name: str = "faces"
    output_name: str = "logits"
    input_dtype: str = "float32"
    precision: str = "fp32"
    int8_scheme: str = ""
    factors: tuple[int, ...] = FACTORS
    checkpoint_sha256: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.factors, list):  # the same factors, kept as the (hashable) tuple the field holds
            object.__setattr__(self, "factors", tuple(self.factors))
        problems = model_info_problems({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        if problems:
            raise InputError("invalid model info: " + "; ".join(problems))

    @property
    def classes(self) -> tuple[str, ...]:
        return self.preprocessing.classes

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["preprocessing"] = self.preprocessing.to_dict()
        d["factors"] = list(self.factors)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "model") -> "ModelInfo":
        if not isinstance(d, Mapping):  # dict() would take [] or key/value pairs and fill in every default
            raise ModelError(f"{source}: fsrfer metadata must be a JSON object, got {type(d).__name__}")
        version = d.get("format_version", FORMAT_VERSION)
        if not _positive_int(version):  # before the fields: a newer format may have others
            raise ModelError(f"{source}: fsrfer metadata {_version_problem(version)}")
        if version > FORMAT_VERSION:
            raise ModelError(
                f"{source}: metadata format {version} is newer than this fsrfer_edge "
                f"understands ({FORMAT_VERSION}); upgrade fsrfer-edge"
            )
        _check_keys(d, {f.name for f in dataclasses.fields(cls)}, "", source)
        pre = d["preprocessing"]
        if not isinstance(pre, Mapping):
            raise ModelError(f"{source}: fsrfer metadata preprocessing is {pre!r}; expected a JSON object")
        _check_keys(pre, {f.name for f in dataclasses.fields(Preprocessing)}, "preprocessing ", source)
        try:
            kw = dict(d, preprocessing=Preprocessing.from_dict(dict(pre)))
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: invalid fsrfer metadata ({exc})") from exc
        problems = model_info_problems(kw)  # the checks of __post_init__, each message after the source
        if problems:
            raise ModelError(f"{source}: fsrfer metadata " + "; ".join(problems))
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "ModelInfo":
        try:
            d = loads_json(text)
        except InputError as exc:  # a key given twice
            raise ModelError(f"{source}: fsrfer metadata has a {exc}. Export the model again with fsrfer-export") \
                from exc
        except (json.JSONDecodeError, RecursionError) as exc:  # RecursionError: arrays nested too deep
            raise ModelError(f"{source}: fsrfer metadata is not valid JSON ({exc})") from exc
        if not isinstance(d, dict):
            raise ModelError(f"{source}: fsrfer metadata must be a JSON object, got {type(d).__name__}")
        return cls.from_dict(d, source)

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> "ModelInfo":
        """Read from ONNX ``metadata_props`` (or ONNX Runtime's ``custom_metadata_map``)."""
        if METADATA_KEY not in props:
            raise ModelError(
                f"{source} has no '{METADATA_KEY}' metadata: it was not written by fsrfer-export. "
                "Export it with fsrfer-export (from an fsrfer checkpoint): the SDK reads the input size and "
                "preprocessing from that metadata"
            )
        return cls.from_json(props[METADATA_KEY], source)
