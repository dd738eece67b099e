"""What an exported model says about itself, stored as ONNX metadata (and in engine sidecars).

The exporter writes a :class:`ModelInfo` under the metadata key ``fsrfer``; every runtime backend
reads it back, so preprocessing, class names and tensor names are never hard-coded at run time.
"""
from __future__ import annotations

import dataclasses
import json
import reprlib
import unicodedata
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

# Limits on what a model's metadata may hold, far beyond any real model, so that a crafted or damaged file (a model
# downloaded or handed over) is refused before it makes the SDK allocate gigabytes or print pages of text.
#: The side of the model's square input. Face models take 48 to 224; the dry run at load time and each batch
#: allocate ``max_batch * channels * side**2`` floats (a graph with a dynamic height and width would take any side):
#: 64 x 3 x 1024**2 float32 is 805 MB, a side of 100000 would be 40 GB for one face.
MAX_INPUT_SIZE = 1024
#: Classes a model may name (expression models have 7 or 8; ImageNet has 1000).
MAX_CLASSES = 10_000
#: Characters in a class name (one is printed beside each face by fsrfer-demo and fsrfer-crowd).
MAX_CLASS_NAME_CHARS = 256
#: Characters of the metadata's JSON text (fsrfer-export writes under 1 KB; MAX_CLASSES names of the longest
#: allowed are 2.6 MB): a longer text is refused before it is parsed.
MAX_METADATA_CHARS = 1 << 22
#: Characters a printed name may not hold beside the control characters (Unicode category Cc, which includes the
#: ESC of terminal escape sequences and C1's CSI): line and paragraph separators and the bidirectional overrides,
#: which make a terminal show text other than what is there.
_UNPRINTABLE = frozenset("\u2028\u2029\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


#: The fields that hold text; the names among them may not be empty either.
_STRING_FIELDS = ("method", "input_name", "output_name", "input_dtype", "precision", "int8_scheme", "checkpoint_sha256")
_NAME_FIELDS = ("method", "input_name", "output_name")


def _control_character(text: str) -> str:
    """The first character of ``text`` that a terminal would not print as itself (a control character, a line
    separator, a bidirectional override) or that no UTF-8 file can hold (a lone surrogate, from a JSON "\\ud800":
    labels files and configs written from the metadata would fail half-way), "" when none."""
    return next((c for c in text if c in _UNPRINTABLE or unicodedata.category(c) in ("Cc", "Cs")), "")


def _classes_problem(classes: Any) -> str:
    """What is wrong with the class names ("" when nothing) beyond :func:`preprocessing_problems`: too many, one too
    long, or one holding a control character, which a CLI printing it would send to the terminal as it is."""
    if not isinstance(classes, tuple):
        return ""
    if len(classes) > MAX_CLASSES:
        return f"classes: {len(classes)} names; expected at most {MAX_CLASSES} (MAX_CLASSES)"
    for i, name in enumerate(classes):
        if not isinstance(name, str):
            continue
        if len(name) > MAX_CLASS_NAME_CHARS:
            return (f"classes[{i}] is {reprlib.repr(name)}, {len(name)} characters; expected at most "
                    f"{MAX_CLASS_NAME_CHARS} (MAX_CLASS_NAME_CHARS)")
        bad = _control_character(name)
        if bad:
            return (f"classes[{i}] is {reprlib.repr(name)}, which holds the control character or lone surrogate "
                    f"{bad!r}; expected a printable class name")
    return ""


def _preprocessing_limits(pre: Preprocessing) -> list[str]:
    """What of ``pre`` is past the limits on a model's metadata (:data:`MAX_INPUT_SIZE`, :data:`MAX_CLASSES`...)."""
    out = []
    size = pre.input_size
    if isinstance(size, int) and size > MAX_INPUT_SIZE:
        out.append(f"input_size={size}; expected at most {MAX_INPUT_SIZE} (MAX_INPUT_SIZE): every batch would hold "
                   f"{size}x{size} pixels per face")
    problem = _classes_problem(pre.classes)
    return out + ([problem] if problem else [])


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
    else:
        out += _preprocessing_limits(info.preprocessing)
    for name in _STRING_FIELDS:
        value = getattr(info, name)
        if not isinstance(value, str):
            out.append(f"field {name!r} is {reprlib.repr(value)}; expected a string")
        elif name in _NAME_FIELDS and not value:
            out.append(f"field {name!r} is ''; expected a non-empty string")
        elif _control_character(value):
            out.append(f"field {name!r} is {reprlib.repr(value)}, which holds the control character or lone "
                       f"surrogate {_control_character(value)!r}; expected printable text")
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
        if isinstance(text, (str, bytes)) and len(text) > MAX_METADATA_CHARS:  # refused before json allocates it
            raise ModelError(f"{source}: fsrfer metadata is {len(text)} characters long; expected at most "
                             f"{MAX_METADATA_CHARS} (MAX_METADATA_CHARS), far more than fsrfer-export writes. Export "
                             "the model again with fsrfer-export")
        try:
            d = loads_json(text)
        except InputError as exc:  # a key given twice
            raise ModelError(f"{source}: fsrfer metadata has a {exc}. Export the model again with fsrfer-export") \
                from exc
        # ValueError: not JSON, or an integer of more digits than Python converts; RecursionError: nested too deep
        except (ValueError, RecursionError) as exc:
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
