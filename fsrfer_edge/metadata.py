"""What an exported model says about itself, stored as ONNX metadata (and in engine sidecars).

The exporter writes a :class:`ModelInfo` under the metadata key ``fsrfer``; every runtime backend
reads it back, so preprocessing, class names and tensor names are never hard-coded at run time.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from .errors import ModelError
from .preprocessing import FACTORS, Preprocessing

METADATA_KEY = "fsrfer"
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
INPUT_DTYPES = ("float32", "uint8")
#: Q/DQ flavours of an int8 model (``int8_scheme``; empty when unknown, and for the other precisions).
INT8_SCHEMES = ("s8s8", "u8s8")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


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
        if not _positive_int(version):
            raise ModelError(f"{source}: fsrfer metadata format_version is {version!r}; expected an integer >= 1")
        if version > FORMAT_VERSION:  # before the fields: a newer format may have others
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
            kw = dict(d)
            factors = kw.get("factors", FACTORS)
            if not isinstance(factors, (list, tuple)) or not all(_positive_int(f) for f in factors):
                raise ModelError(f"{source}: fsrfer metadata factors is {factors!r}; expected a list of positive "
                                 "integers, e.g. [1, 2, 4]")
            kw["preprocessing"] = Preprocessing.from_dict(dict(pre))
            kw["factors"] = tuple(factors)
            info = cls(**kw)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: invalid fsrfer metadata ({exc})") from exc
        for name in ("method", "input_name", "output_name", "input_dtype", "precision", "int8_scheme",
                     "checkpoint_sha256"):
            value = getattr(info, name)
            if not isinstance(value, str):
                raise ModelError(f"{source}: fsrfer metadata field {name!r} is {value!r}; expected a string")
        if info.precision not in PRECISIONS:
            raise ModelError(f"{source}: precision {info.precision!r} is not one of {PRECISIONS}")
        if info.input_dtype not in INPUT_DTYPES:
            raise ModelError(f"{source}: input_dtype {info.input_dtype!r} is not one of {INPUT_DTYPES}")
        if info.int8_scheme not in (("",) + INT8_SCHEMES if info.precision == "int8" else ("",)):
            raise ModelError(f"{source}: int8_scheme {info.int8_scheme!r} with precision {info.precision!r}; expected "
                             f"'' or one of {list(INT8_SCHEMES)} for precision 'int8', '' for the others")
        return info

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "ModelInfo":
        try:
            d = json.loads(text)
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
