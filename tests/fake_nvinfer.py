"""Version-faithful fake of what Gst-nvinfer does with a ``config_infer_*.txt`` and the files it names.

DeepStream 6.2, 8.0 and 9.1, re-implemented from their sources (nothing here runs DeepStream):

- :class:`GKeyFile`: GLib's key-file parser and getters exactly as nvinfer calls them (``G_KEY_FILE_NONE``):
  ``#`` comment lines, ``[group]`` lines, ``key=value`` lines; ``;``-separated lists with ``\\`` escapes;
  ``g_key_file_get_integer`` (C ``strtol``; trailing white space, and anything after it, is ignored),
  ``g_key_file_get_double`` (C-locale ``strtod``; *no* trailing character allowed, not even a space),
  ``g_key_file_get_boolean`` (``true``/``false``/``1``/``0`` only, trailing white space allowed).
- :func:`parse_config_file`: ``gst_nvinfer_parse_config_file`` and ``gst_nvinfer_parse_props`` /
  ``gst_nvinfer_parse_other_attribute``: which keys each version knows, what an unknown key does (a
  warning on stderr, parsing goes on), the range checks and their messages, C integer conversions
  (``guint`` fields), paths resolved against the config file's folder (``get_absolute_file_path``),
  ``float`` narrowing of ``net-scale-factor``/``offsets``/``classifier-threshold``.
- :func:`init_context`: the checks ``NvDsInferContextImpl::initialize`` makes that depend only on our files
  (the ONNX's inputs/outputs read with ``onnx``, ``infer-dims``, colour format vs channels, offsets vs
  channels, the labels file), and the engine file nvinfer serialises a build to
  (``<onnx path>_b<batch>_gpu<id>_<mode>.engine``, the mode actually built after INT8/FP16 fall-backs).
- :func:`min_object_size`: the minimum object size ``gst_nvinfer_start`` enforces per version and platform.

Not modelled: TensorRT itself (deserialising or building an engine), element properties set by an application
(``is_prop_set``: they override the file), YAML configs, detector ``[class-attrs-*]`` groups.

Sources. Each rule cites ``FILE 6.2:L 8.0:L 9.1:L`` (one number when all agree):

- DS 6.2: github.com/hiennguyen9874/deepstream-sources @ 3b4e4ce4a9c224f6413121ffab3f5cde06163f52
  ("update deepstream 6.2 source code from docker image, format all"), files under ``sources/``. NVIDIA's
  text, re-formatted with clang-format: its line numbers are the mirror's, not NVIDIA's.
- DS 8.0: github.com/levipereira/deepstream_8.0_plugins @ 6ddf18dc70e71ffdbc7215e7a3028fe21da6be05 (these
  files are byte-identical to its commit 41e90067 "Original Source").
- DS 9.1: github.com/NVIDIA/DeepStream tag v9.1.0 (581889df47d6181110c758c10b872ca833a835e3), plugin and
  library files under ``src/``.
- FILE names: PP = gst-plugins/gst-nvinfer/gstnvinfer_property_parser.cpp, PH = its .h,
  GST = gst-plugins/gst-nvinfer/gstnvinfer.cpp, GSTH = gstnvinfer.h;
  CTX = libs/nvdsinfer/nvdsinfer_context_impl.cpp (9.1: src/utils/nvdsinfer/), MB = .../nvdsinfer_model_builder.cpp,
  MBH = .../nvdsinfer_model_builder.h, FU = .../nvdsinfer_func_utils.cpp,
  OUT = .../nvdsinfer_context_impl_output_parsing.cpp; CH = includes/nvdsinfer_context.h, IH = includes/nvdsinfer.h,
  BST = includes/nvbufsurftransform.h, BS = includes/nvbufsurface.h.
- GLIB: github.com/GNOME/glib glib/gkeyfile.c at tags 2.64.6 (ddf2d4c7; Ubuntu 20.04, DS 6.2) and 2.80.0
  (763cc3b2; Ubuntu 24.04, DS 8.0/9.x), cited ``gkeyfile.c 2.64.6:L 2.80.0:L``. Every function used here was
  compared between the two: they differ only in memory handling, not in what they accept. g_ascii_strtod is
  ``strtod_l`` in the C locale (glib/gstrfuncs.c 2.80.0:688).
"""
from __future__ import annotations

import errno
import math
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

VERSIONS = ("6.2", "8.0", "9.1")
PathLike = Union[str, "os.PathLike[str]"]


# ---------------------------------------------------------------------------------------------------------------
# Platforms
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Platform:
    """Where nvinfer runs: the compiler's ``__aarch64__`` and what ``NvBufSurfaceGetDeviceInfo`` reports."""

    name: str
    aarch64: bool
    #: NvBufSurfaceDriverType: "UNKNOWN", "NVGPU" (Jetson's iGPU driver) or "RM" (OpenRM). BS 8.0:686-688 9.1:711-713.
    driver: str


#: x86_64 dGPU. Its driver is not nvgpu (nvgpu is Jetson's iGPU driver; BS 8.0:1060-1066 "determine if the system
#: is using 'nvgpu' or an OpenRM-based driver"): RM assumed, anything but NVGPU behaves the same here.
DGPU = Platform("dGPU x86_64", aarch64=False, driver="RM")
#: Arm64 server dGPU (SBSA): compiled with __aarch64__, not the nvgpu driver.
SBSA = Platform("dGPU aarch64 (SBSA)", aarch64=True, driver="RM")
#: Jetson with the nvgpu driver (Orin, JetPack 5/6).
JETSON = Platform("Jetson (nvgpu driver)", aarch64=True, driver="NVGPU")
#: Jetson Thor (JetPack 7) if it reports OpenRM: not verified in any source read for this fake.
JETSON_OPENRM = Platform("Jetson with OpenRM driver (unverified)", aarch64=True, driver="RM")
PLATFORMS = (DGPU, SBSA, JETSON, JETSON_OPENRM)


def _check_version(version: str) -> str:
    if version not in VERSIONS:
        raise ValueError(f"version {version!r}; the fake knows {VERSIONS}")
    return version


def _line(version: str, v62: Any, v80: Any, v91: Any) -> Any:
    return {"6.2": v62, "8.0": v80, "9.1": v91}[version]


# ---------------------------------------------------------------------------------------------------------------
# C helpers
# ---------------------------------------------------------------------------------------------------------------
_SPACE = " \t\n\v\f\r"  # g_ascii_isspace / C-locale isspace


def _f32(x: float) -> float:
    """A C ``float`` (the init params' fields are float: CH 6.2:293,301,321 8.0:301,309,329 9.1:308,316,336)."""
    if math.isnan(x) or math.isinf(x):
        return x
    try:
        return struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def _guint(x: int) -> int:
    return x & 0xFFFFFFFF


def _gint(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x >= 1 << 31 else x


def _strtol(s: str) -> tuple[int, int, bool]:
    """C ``strtol(s, &end, 10)`` on a 64-bit long: (value, end index, ERANGE)."""
    i = 0
    while i < len(s) and s[i] in _SPACE:
        i += 1
    m = re.compile(r"[+-]?[0-9]+").match(s, i)
    if not m:
        return 0, 0, False  # no conversion: end = start of the string
    v = int(m.group(0))
    lo, hi = -(1 << 63), (1 << 63) - 1
    if v < lo or v > hi:
        return (lo if v < 0 else hi), m.end(), True
    return v, m.end(), False


_STRTOD = re.compile(
    r"[+-]?(?:"
    r"0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?"
    r"|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?"
    r"|[nN][aA][nN](?:\([0-9A-Za-z_]*\))?"
    r")")


def _strtod(s: str) -> tuple[float, int]:
    """glibc ``strtod`` in the C locale (what g_ascii_strtod calls): (value, end index; 0 = no conversion)."""
    i = 0
    while i < len(s) and s[i] in _SPACE:
        i += 1
    m = _STRTOD.match(s, i)
    if not m:
        return 0.0, 0
    text = m.group(0)
    body = text.lstrip("+-")
    sign = -1.0 if text.startswith("-") else 1.0
    low = body.lower()
    if low.startswith("inf"):
        return sign * math.inf, m.end()
    if low.startswith("nan"):
        return math.nan, m.end()
    if low.startswith("0x"):
        try:
            return sign * float.fromhex(body), m.end()
        except (OverflowError, ValueError):
            return sign * math.inf, m.end()
    return sign * float(body), m.end()


# ---------------------------------------------------------------------------------------------------------------
# GKeyFile
# ---------------------------------------------------------------------------------------------------------------
class GError(Exception):
    """A GError of domain G_KEY_FILE_ERROR (or G_FILE_ERROR when the file cannot be read)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class GKeyFile:
    """GLib's GKeyFile as loaded with ``G_KEY_FILE_NONE`` (comments are dropped, not kept)."""

    #: key_file->list_separator = ';' (gkeyfile.c 2.64.6:636 2.80.0:637).
    LIST_SEPARATOR = ";"

    def __init__(self) -> None:
        # group name -> list of (key, value) in file order (duplicates kept, as g_key_file_get_keys lists them)
        self._pairs: dict[str, list[tuple[str, str]]] = {}
        # group name -> key -> value: the lookup map, the last duplicate wins (g_hash_table_replace in
        # g_key_file_add_key_value_pair, gkeyfile.c 2.64.6:3988 2.80.0:4026)
        self._lookup: dict[str, dict[str, str]] = {}
        self._current: str | None = None
        self._start: str | None = None

    # -- loading ---------------------------------------------------------------------------------------------
    @classmethod
    def load_from_file(cls, path: PathLike) -> GKeyFile:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise GError("G_FILE_ERROR", f"{e.strerror}") from e
        kf = cls()
        kf.load_from_data(data)
        return kf

    def load_from_data(self, data: bytes | str) -> None:
        """g_key_file_parse_data + the final flush (gkeyfile.c 2.64.6:1457 2.80.0:1476): lines end at ``\\n``;
        one ``\\r`` before it is dropped; a last line without ``\\n`` is parsed as it is (its ``\\r`` kept)."""
        text = data.decode("utf-8", errors="surrogateescape") if isinstance(data, bytes) else data
        lines = text.split("\n")
        for n, line in enumerate(lines):
            last = n == len(lines) - 1
            if not last and line.endswith("\r"):
                line = line[:-1]
            if line == "":
                continue  # blank line: a comment, dropped without KEEP_COMMENTS
            self._parse_line(line)

    def _parse_line(self, line: str) -> None:
        """g_key_file_parse_line (gkeyfile.c 2.64.6:1245 2.80.0:1256): leading white space skipped, then a
        comment (``#`` or nothing: 2.64.6:4124 2.80.0:4167), a group, or a key=value pair; anything else fails."""
        start = line.lstrip(_SPACE)
        if start == "" or start[0] == "#":
            return
        if self._line_is_group(start):
            self._parse_group(start)
        elif "=" in start and start[0] != "=":  # g_key_file_line_is_key_value_pair 2.64.6:4224 2.80.0:4281
            self._parse_key_value_pair(start)
        else:
            raise GError("G_KEY_FILE_ERROR_PARSE",
                         f"Key file contains line \u201c{line}\u201d which is not a key-value pair, group, or comment")

    @staticmethod
    def _line_is_group(line: str) -> bool:
        """g_key_file_line_is_group (2.64.6:4196 2.80.0:4253): ``[``, up to the first ``]``, then only spaces/tabs."""
        if not line.startswith("["):
            return False
        close = line.find("]", 1)
        return close != -1 and line[close + 1:].strip(" \t") == ""

    def _parse_group(self, line: str) -> None:
        """g_key_file_parse_group (2.64.6:1309 2.80.0:1320) + g_key_file_is_group_name (2.64.6:4130 2.80.0:4173)."""
        name = line[1:line.rfind("]")]
        if not name or any(c in "[]" or ord(c) < 32 or ord(c) == 127 for c in name):
            raise GError("G_KEY_FILE_ERROR_PARSE", f"Invalid group name: {name}")
        if name not in self._pairs:  # an existing group becomes current again (g_key_file_add_group)
            self._pairs[name] = []
            self._lookup[name] = {}
            if self._start is None:
                self._start = name
        self._current = name

    def _parse_key_value_pair(self, line: str) -> None:
        """g_key_file_parse_key_value_pair (2.64.6:1342 2.80.0:1353): the key is chomped of trailing white space
        and checked by g_key_file_is_key_name (2.64.6:4148 2.80.0:4190); the value loses its LEADING white space
        only: trailing spaces stay in the value."""
        if self._current is None:
            raise GError("G_KEY_FILE_ERROR_GROUP_NOT_FOUND", "Key file does not start with a group")
        eq = line.index("=")
        key = line[:eq].rstrip(_SPACE)
        value = line[eq + 1:].lstrip(_SPACE)
        base = key.split("[", 1)[0]
        locale = None
        if not base or any(c in "=]" for c in base) or key.startswith(" ") or base.endswith(" "):
            raise GError("G_KEY_FILE_ERROR_PARSE", f"Invalid key name: {key}")
        if "[" in key:
            m = re.fullmatch(r"[^\[\]=]+\[([0-9A-Za-z_.@-]+)\]", key)
            if not m:
                raise GError("G_KEY_FILE_ERROR_PARSE", f"Invalid key name: {key}")
            locale = m.group(1)
        if self._current == self._start and key == "Encoding" and value.upper() != "UTF-8":
            raise GError("G_KEY_FILE_ERROR_UNKNOWN_ENCODING",
                         f"Key file contains unsupported encoding \u201c{value}\u201d")
        if locale is not None:
            # a translation: kept only if the process locale is "interesting" (g_get_language_names); nvinfer
            # never asks for one. Dropped here, as in the C locale.
            return
        self._pairs[self._current].append((key, value))
        self._lookup[self._current][key] = value

    # -- queries ---------------------------------------------------------------------------------------------
    def has_group(self, group: str) -> bool:
        return group in self._pairs

    def groups(self) -> list[str]:
        return list(self._pairs)

    def has_key(self, group: str, key: str) -> bool:
        return key in self._lookup.get(group, {})

    def get_keys(self, group: str) -> list[str]:
        """g_key_file_get_keys (2.64.6:1631 2.80.0:1648): every key line in file order, duplicates included."""
        if group not in self._pairs:
            raise GError("G_KEY_FILE_ERROR_GROUP_NOT_FOUND", f"Key file does not have group \u201c{group}\u201d")
        return [k for k, _ in self._pairs[group]]

    def set_integer(self, group: str, key: str, value: int) -> None:
        self._pairs.setdefault(group, []).append((key, str(value)))
        self._lookup.setdefault(group, {})[key] = str(value)

    def remove_key(self, group: str, key: str) -> None:
        self._pairs[group] = [(k, v) for k, v in self._pairs[group] if k != key]
        self._lookup[group].pop(key, None)

    def get_value(self, group: str, key: str) -> str:
        """g_key_file_get_value (2.64.6:1804 2.80.0:1821): the raw text after ``=`` (the last duplicate)."""
        if group not in self._pairs:
            raise GError("G_KEY_FILE_ERROR_GROUP_NOT_FOUND", f"Key file does not have group \u201c{group}\u201d")
        if key not in self._lookup[group]:
            raise GError("G_KEY_FILE_ERROR_KEY_NOT_FOUND",
                         f"Key file does not have key \u201c{key}\u201d in group \u201c{group}\u201d")
        return self._lookup[group][key]

    def _unescape(self, value: str, pieces: bool) -> str | list[str]:
        """g_key_file_parse_value_as_string (2.64.6:4242 2.80.0:4299): ``\\s \\n \\t \\r \\\\`` (and ``\\;`` in a
        list); the list is split at unescaped ``;``, an empty last piece dropped (``1;2;`` has two)."""
        out: list[str] = []
        result: list[str] = []
        i = 0
        while i < len(value):
            c = value[i]
            if c == "\\":
                i += 1
                if i >= len(value):
                    raise GError("G_KEY_FILE_ERROR_INVALID_VALUE", "Key file contains escape character at end of line")
                e = value[i]
                if e in "sntr\\":
                    out.append({"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}[e])
                elif pieces and e == self.LIST_SEPARATOR:
                    out.append(e)
                else:
                    raise GError("G_KEY_FILE_ERROR_INVALID_VALUE",
                                 f"Key file contains invalid escape sequence \u201c\\{e}\u201d")
            elif pieces and c == self.LIST_SEPARATOR:
                result.append("".join(out))
                out = []
            else:
                out.append(c)
            i += 1
        if not pieces:
            return "".join(out)
        if out:
            result.append("".join(out))
        return result

    @staticmethod
    def _check_utf8(key: str, value: str) -> None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise GError("G_KEY_FILE_ERROR_UNKNOWN_ENCODING",
                         f"Key file contains key \u201c{key}\u201d with value \u201c{value}\u201d which is not UTF-8")

    def get_string(self, group: str, key: str) -> str:
        """g_key_file_get_string (2.64.6:1913 2.80.0:1930)."""
        value = self.get_value(group, key)
        self._check_utf8(key, value)
        try:
            return self._unescape(value, False)  # type: ignore[return-value]
        except GError:
            raise GError("G_KEY_FILE_ERROR_INVALID_VALUE",
                         f"Key file contains key \u201c{key}\u201d which has a value that cannot be interpreted.")

    def get_string_list(self, group: str, key: str) -> list[str]:
        """g_key_file_get_string_list (2.64.6:2025 2.80.0:2042)."""
        value = self.get_value(group, key)
        self._check_utf8(key, value)
        try:
            return self._unescape(value, True)  # type: ignore[return-value]
        except GError:
            raise GError("G_KEY_FILE_ERROR_INVALID_VALUE",
                         f"Key file contains key \u201c{key}\u201d which has a value that cannot be interpreted.")

    @staticmethod
    def parse_value_as_integer(value: str) -> int:
        """g_key_file_parse_value_as_integer (2.64.6:4432 2.80.0:4501): strtol; the character after the number
        must be the end or white space (so ``2 # FP16`` is 2); out of a C int's range fails."""
        v, end, erange = _strtol(value)
        if value == "" or (end < len(value) and value[end] not in _SPACE):
            raise GError("G_KEY_FILE_ERROR_INVALID_VALUE",
                         f"Value \u201c{value}\u201d cannot be interpreted as a number.")
        if erange or _gint(v) != v:
            raise GError("G_KEY_FILE_ERROR_INVALID_VALUE", f"Integer value \u201c{value}\u201d out of range")
        return v

    @staticmethod
    def parse_value_as_double(value: str) -> float:
        """g_key_file_parse_value_as_double (2.64.6:4483 2.80.0:4552): g_ascii_strtod must consume the WHOLE
        value: ``0.5 `` (a trailing space) fails."""
        v, end = _strtod(value)
        if end != len(value) or end == 0:
            raise GError("G_KEY_FILE_ERROR_INVALID_VALUE",
                         f"Value \u201c{value}\u201d cannot be interpreted as a float number.")
        return v

    @staticmethod
    def parse_value_as_boolean(value: str) -> bool:
        """g_key_file_parse_value_as_boolean (2.64.6:4516 2.80.0:4585): ``true``/``1``/``false``/``0``,
        case-sensitive, trailing white space ignored."""
        v = value.rstrip(_SPACE)
        if v in ("true", "1"):
            return True
        if v in ("false", "0"):
            return False
        raise GError("G_KEY_FILE_ERROR_INVALID_VALUE", f"Value \u201c{value}\u201d cannot be interpreted as a boolean.")

    def _get_parsed(self, group: str, key: str, parse: Callable[[str], Any]) -> Any:
        """The value parsed, a bad one re-worded with key and group (get_integer's and get_double's message)."""
        value = self.get_value(group, key)
        try:
            return parse(value)
        except GError:
            raise GError("G_KEY_FILE_ERROR_INVALID_VALUE",
                         f"Key file contains key \u201c{key}\u201d in group \u201c{group}\u201d which has a value that "
                         "cannot be interpreted.")

    def get_integer(self, group: str, key: str) -> int:
        """g_key_file_get_integer (2.64.6:2701 2.80.0:2712): a bad value is re-worded with key and group."""
        return int(self._get_parsed(group, key, self.parse_value_as_integer))

    def get_double(self, group: str, key: str) -> float:
        """g_key_file_get_double (2.64.6:3070 2.80.0:3081): the same re-wording."""
        return float(self._get_parsed(group, key, self.parse_value_as_double))

    def get_boolean(self, group: str, key: str) -> bool:
        """g_key_file_get_boolean (2.64.6:2485 2.80.0:2499): its message names no group."""
        value = self.get_value(group, key)
        try:
            return self.parse_value_as_boolean(value)
        except GError:
            raise GError("G_KEY_FILE_ERROR_INVALID_VALUE",
                         f"Key file contains key \u201c{key}\u201d which has a value that cannot be interpreted.")

    def get_integer_list(self, group: str, key: str) -> list[int]:
        """g_key_file_get_integer_list (2.64.6:2954 2.80.0:2965): each piece as an integer, raw error text."""
        return [self.parse_value_as_integer(p) for p in self.get_string_list(group, key)]

    def get_double_list(self, group: str, key: str) -> list[float]:
        """g_key_file_get_double_list (2.64.6:3167 2.80.0:3178): each piece must be a whole double, so
        ``127.5 ;127.5`` fails (a space before ``;``) while ``127.5; 127.5`` passes (strtod skips leading space)."""
        return [self.parse_value_as_double(p) for p in self.get_string_list(group, key)]


# ---------------------------------------------------------------------------------------------------------------
# What nvinfer parses into
# ---------------------------------------------------------------------------------------------------------------
#: NvDsInferNetworkMode (CH 6.2:116-118 8.0:122-125 9.1:129-132): BEST (3) is not in 6.2.
NETWORK_MODES = {"6.2": {0: "fp32", 1: "int8", 2: "fp16"},
                 "8.0": {0: "fp32", 1: "int8", 2: "fp16", 3: "best"},
                 "9.1": {0: "fp32", 1: "int8", 2: "fp16", 3: "best"}}
#: NvDsInferNetworkType (CH 6.2:124-142 8.0:132-150 9.1:139-157).
NETWORK_TYPES = {0: "Detector", 1: "Classifier", 2: "Segmentation", 3: "InstanceSegmentation", 100: "Other"}
#: model-color-format -> NvDsInferFormat (PP 6.2:720-739 8.0:835-854 9.1:840-859).
COLOR_FORMATS = {0: "RGB", 1: "BGR", 2: "GRAY"}
#: NvBufSurfTransform_Compute (BST 6.2:43-47 8.0:50-54 9.1:55-59) and _Inter (BST 6.2:77-89 8.0:88-100 9.1:93-105).
COMPUTE_MODES = {0: "Default", 1: "GPU", 2: "VIC"}
FILTERS = {0: "Nearest", 1: "Bilinear", 2: "Algo1", 3: "Algo2", 4: "Algo3", 5: "Algo4", 6: "Default"}
#: NVDSINFER_MAX_BATCH_SIZE (CH 6.2:106 8.0:107 9.1:112), _MAX_CHANNELS (CH 6.2:100 8.0:101 9.1:106), _PATH_MAX.
MAX_BATCH_SIZE, MAX_CHANNELS, PATH_MAX = 1024, 4, 4096


@dataclass
class InitParams:
    """The NvDsInferContextInitParams fields the config fills (CH), with C types applied."""

    uniqueID: int = 0
    gpuID: int = 0
    maxBatchSize: int = 0
    networkMode: int = 0  # ResetInitParams: FP32
    networkType: int = 0  # Detector
    networkInputFormat: str = "RGB"  # PP 6.2:532 8.0:575 9.1:580
    networkScaleFactor: float = 1.0
    offsets: list[float] = field(default_factory=list)
    inferInputDims: tuple[int, int, int] = (0, 0, 0)
    onnxFilePath: str = ""
    modelEngineFilePath: str = ""
    labelsFilePath: str = ""
    int8CalibrationFilePath: str = ""
    meanImageFilePath: str = ""
    outputLayerNames: list[str] = field(default_factory=list)
    classifierThreshold: float = 0.0
    useDLA: bool = False
    dlaCore: int = -1
    useStronglyTyped: bool = False
    other: dict[str, Any] = field(default_factory=dict)


@dataclass
class Element:
    """The GstNvInfer fields the config fills (GSTH), with gst_nvinfer_init's defaults (GST 6.2:89-101,394-414
    8.0:87-99,389-410 9.1:96-110,417-440)."""

    unique_id: int = 15
    process_full_frame: bool = True
    max_batch_size: int = 1
    gpu_id: int = 0
    interval: int = 0
    operate_on_gie_id: int = -1
    operate_on_class_ids: list[bool] = field(default_factory=list)
    filter_out_class_ids: set[int] = field(default_factory=set)
    classifier_type: str | None = None
    classifier_async_mode: bool = False
    secondary_reinfer_interval: int = 0
    maintain_aspect_ratio: bool = False
    symmetric_padding: bool = False
    min_input_object_width: int = 0
    min_input_object_height: int = 0
    max_input_object_width: int = 0
    max_input_object_height: int = 0
    compute_mode: int = 0  # NvBufSurfTransformCompute_Default (GST 6.2:413 8.0:409 9.1:439)
    transform_filter: int = 6  # NvBufSurfTransformInter_Default (GST 6.2:414 8.0:410 9.1:440)
    output_tensor_meta: bool = False
    crop_objects_to_roi_boundary: bool = False
    input_tensor_from_meta: bool = False


#: DEFAULT_REINFER_INTERVAL = G_MAXINT (GST 6.2:69 8.0:68 9.1:77); the parser sets it before the keys
#: (PP 6.2:529-530 8.0:572-573 9.1:577-578).
DEFAULT_REINFER_INTERVAL = 2 ** 31 - 1


@dataclass
class ParseResult:
    version: str
    platform: Platform
    config: Path
    ok: bool
    init: InitParams
    element: Element
    stderr: list[str]
    stdout: list[str]
    keys: list[str]

    @property
    def unknown_keys(self) -> list[str]:
        return [m.group(1) for line in self.stderr
                for m in [re.match(r"Unknown or legacy key specified '(.*)' for group \[property\]$", line)] if m]

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr if line.startswith(("Error", "Failed", "** ERROR", "Could not"))]


class _Abort(Exception):
    """``goto done`` in the parser."""


# ---------------------------------------------------------------------------------------------------------------
# gst_nvinfer_parse_config_file
# ---------------------------------------------------------------------------------------------------------------
PROPERTY = "property"  # CONFIG_GROUP_PROPERTY (PH 6.2:29 8.0:30 9.1:35)


def get_absolute_file_path(cfg_file_path: PathLike, file_path: str) -> str | None:
    """get_absolute_file_path (PP 6.2:30-78 8.0:37-88 9.1:42-93): None where the C returns FALSE.

    - ``/abs``: realpath of it; if it does not exist (ENOENT) the C copies an UNINITIALISED buffer (6.2:40-48
      8.0:48-57 9.1:53-62): undefined; the fake returns the path unresolved.
    - relative: realpath(config)'s folder + ``/`` + the text (6.2:52-63 8.0:60-71 9.1:65-76), then realpath of
      that; if it does not exist (ENOENT) the joined path is used as it is (6.2:66-72 8.0:74-82 9.1:79-87).
    """
    if file_path.startswith("/"):
        try:
            return os.path.realpath(file_path, strict=True)[:PATH_MAX - 1]
        except FileNotFoundError:
            return file_path[:PATH_MAX - 1]
        except OSError:
            return None
    try:
        abs_cfg = os.path.realpath(os.fspath(cfg_file_path), strict=True)
    except OSError:
        return None
    joined = abs_cfg[:abs_cfg.rfind("/") + 1] + file_path
    try:
        return os.path.realpath(joined, strict=True)[:PATH_MAX - 1]
    except FileNotFoundError:
        return joined[:PATH_MAX - 1]
    except OSError as e:
        if e.errno == errno.ENOENT:
            return joined[:PATH_MAX - 1]
        return None


class _Parser:
    def __init__(self, version: str, platform: Platform, cfg: Path) -> None:
        self.v, self.platform, self.cfg = version, platform, cfg
        self.init, self.el = InitParams(), Element()
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        # the C's GError *error: set by a getter and checked by CHECK_ERROR after it; a key whose branch has no
        # CHECK_ERROR (disable-output-host-copy, PP 8.0:1240-1243 9.1:1245-1248) leaves it set for the next one.
        self.error: GError | None = None
        self.kf = GKeyFile()

    def printerr(self, text: str) -> None:
        self.stderr.extend(text.rstrip("\n").split("\n"))

    # -- GError plumbing ----------------------------------------------------------------------------------------
    def get(self, fn: Callable[..., Any], key: str, default: Any) -> Any:
        try:
            return fn(PROPERTY, key)
        except GError as e:
            if self.error is None:
                self.error = e
            return default

    def check_error(self) -> None:
        """CHECK_ERROR / CHECK_STR_ERROR (PP 6.2:20-24 8.0:20-31 9.1:25-36)."""
        if self.error is not None:
            self.printerr(f"Error while parsing config file: {self.error.message}")
            raise _Abort

    def fail(self, text: str) -> None:
        self.printerr(text)
        raise _Abort

    def integer(self, key: str) -> int:
        v = self.get(self.kf.get_integer, key, 0)
        self.check_error()
        return v

    def boolean(self, key: str) -> bool:
        v = self.get(self.kf.get_boolean, key, False)
        self.check_error()
        return v

    def double(self, key: str) -> float:
        v = self.get(self.kf.get_double, key, 0.0)
        self.check_error()
        return v

    def string(self, key: str) -> str:
        v = self.get(self.kf.get_string, key, None)
        self.check_error()
        return v

    def path(self, key: str, what: str) -> str:
        s = self.string(key)
        p = get_absolute_file_path(self.cfg, s)
        if p is None:
            self.fail(f"Error: Could not parse {what}")
        return p  # type: ignore[return-value]

    def int_list(self, key: str) -> list[int]:
        v = self.get(self.kf.get_integer_list, key, [])
        self.check_error()
        return v

    def double_list(self, key: str) -> list[float]:
        v = self.get(self.kf.get_double_list, key, [])
        self.check_error()
        return v

    def string_list(self, key: str) -> list[str]:
        v = self.get(self.kf.get_string_list, key, [])
        self.check_error()
        return v

    # -- gst_nvinfer_parse_props (PP 6.2:498-1128 8.0:542-1268 9.1:547-1316) -------------------------------------
    def parse_props(self) -> None:
        kf, ip, el, v = self.kf, self.init, self.el, self.v
        # Legacy is-classifier -> network-type (PP 6.2:510-524 8.0:553-567 9.1:558-572).
        if kf.has_key(PROPERTY, "is-classifier") and not kf.has_key(PROPERTY, "network-type"):
            value = self.boolean("is-classifier")
            kf.remove_key(PROPERTY, "is-classifier")
            kf.set_integer(PROPERTY, "network-type", 1 if value else 0)
        keys = kf.get_keys(PROPERTY)
        el.secondary_reinfer_interval = DEFAULT_REINFER_INTERVAL
        ip.networkInputFormat = "RGB"
        new8 = v in ("8.0", "9.1")
        for key in keys:
            if key == "gie-unique-id":  # PP 6.2:534-547 8.0:577-591 9.1:582-596
                ip.uniqueID = _guint(self.integer(key))
                if ip.uniqueID <= 0:  # unsigned: only 0 fails; -1 wraps to 4294967295 and passes
                    self.fail(f"Error: gie-unique-id ({_gint(el.unique_id)}) should be > 0")  # prints the ELEMENT's id
                el.unique_id = ip.uniqueID
            elif key == "labelfile-path":  # PP 6.2:548-558 8.0:592-603 9.1:597-608
                ip.labelsFilePath = self.path(key, "labels file path")
            elif key == "gpu-id":  # PP 6.2:559-579 8.0:604-626 9.1:609-631; the device-count check is `&& 0`
                ip.gpuID = _guint(self.integer(key))
                el.gpu_id = ip.gpuID
            elif key == "enable-dla":
                if self.boolean(key):
                    ip.useDLA = True
            elif key == "use-dla-core":
                ip.dlaCore = self.integer(key)
            elif new8 and key in ("auto-inc-mem", "max-gpu-mem-per"):  # PP 8.0:637-646 9.1:642-651
                ip.other[key] = self.integer(key)
            elif key == "tensor-meta-pool-size":
                ip.other[key] = _guint(self.integer(key))
            elif key == "batch-size":  # PP 6.2:593-608 8.0:652-668 9.1:657-673
                ip.maxBatchSize = _guint(self.integer(key))
                if ip.maxBatchSize <= 0 or ip.maxBatchSize > MAX_BATCH_SIZE:
                    # the message prints the ELEMENT's batch size (default 1), not the config's
                    self.fail(f"Error: batch-size({_gint(el.max_batch_size)}) should be in the range "
                              f"[1,{MAX_BATCH_SIZE}]")
                el.max_batch_size = ip.maxBatchSize
            elif key == "force-implicit-batch-dim":
                ip.other[key] = self.boolean(key)
            elif key == "workspace-size":
                ws = self.integer(key)
                if _guint(ws) <= 0:
                    self.stdout.append("Info: workspace-size is 0, will use default size")
                ip.other[key] = ws
            elif key == "infer-dims":  # PP 6.2:623-637 8.0:684-699 9.1:689-704
                dims = self.int_list(key)
                if len(dims) != 3:
                    self.fail(f"Error. 'infer-dims' array length is {len(dims)}. Should be 3 as [c;h;w] order.")
                ip.inferInputDims = (_guint(dims[0]), _guint(dims[1]), _guint(dims[2]))
            elif key == "network-mode":  # PP 6.2:638-654 8.0:700-717 9.1:705-722
                val = _guint(self.integer(key))
                if val not in NETWORK_MODES[v]:
                    self.fail(f"Error. Invalid value for 'network-mode':'{_gint(val)}'")
                ip.networkMode = val
            elif key == "model-engine-file":  # PP 6.2:655-667 8.0:718-731 9.1:723-736
                ip.modelEngineFilePath = self.path(key, "model engine file path")
            elif key == "int8-calib-file":  # PP 6.2:668-678 8.0:732-743 9.1:737-748
                ip.int8CalibrationFilePath = self.path(key, "INT8 calibration file path")
            elif key == "output-blob-names":  # PP 6.2:679-686 8.0:744-751 9.1:749-756
                ip.outputLayerNames = self.string_list(key)
            elif new8 and key in ("dump-input-tensor", "dump-output-tensor", "overwrite-input-tensor",
                                  "overwrite-output-tensor"):  # PP 8.0:752-771
                ip.other[key] = self.integer(key)
            elif new8 and key == "ip-tensor-file":
                ip.other[key] = self.path(key, "Input Tensor file path")
            elif new8 and key == "op-tensor-files":
                files = self.string_list(key)
                resolved = [get_absolute_file_path(self.cfg, f) for f in files]
                if any(r is None for r in resolved):
                    self.fail("Error: Could not parse output Tensor file path")
                ip.other[key] = resolved
            elif key in ("output-io-formats", "layer-device-precision"):
                ip.other[key] = self.string_list(key)
            elif key == "network-type":  # PP 6.2:701-719 8.0:816-834 9.1:821-839
                val = _guint(self.integer(key))
                if val not in NETWORK_TYPES:
                    self.fail(f"Error. Invalid value for 'network-type':'{_gint(val)}'")
                ip.networkType = val
            elif key == "model-color-format":  # PP 6.2:720-739 8.0:835-854 9.1:840-859
                val = _guint(self.integer(key))
                if val not in COLOR_FORMATS:
                    self.fail(f"Error. Invalid value for 'model-color-format':'{_gint(val)}'")
                ip.networkInputFormat = COLOR_FORMATS[val]
            elif key == "net-scale-factor":  # PP 6.2:740-743 8.0:855-859 9.1:860-864; stored as float
                ip.networkScaleFactor = _f32(self.double(key))
            elif key == "offsets":  # PP 6.2:744-760 8.0:860-877 9.1:865-882; stored as float
                offs = self.double_list(key)
                if len(offs) > MAX_CHANNELS:
                    self.fail(f"Error. Maximum  length of {MAX_CHANNELS} is allowed for 'offsets'")
                ip.offsets = [_f32(o) for o in offs]
            elif key == "mean-file":
                ip.meanImageFilePath = self.path(key, "mean image file path")
            elif key == "custom-lib-path":
                ip.other[key] = self.path(key, "custom library path")
            elif key in ("parse-bbox-func-name", "parse-bbox-instance-mask-func-name", "engine-create-func-name",
                         "parse-classifier-func-name", "custom-network-config", "uff-input-blob-name",
                         "tlt-model-key") or (new8 and key == "parse-segmentation-func-name"):
                ip.other[key] = self.string(key)
            elif key in ("model-file", "proto-file", "uff-file", "tlt-encoded-model"):
                what = {"model-file": "model file path", "proto-file": "prototxt file path",
                        "uff-file": "UFF file path", "tlt-encoded-model": "TLT encoded model file path"}[key]
                ip.other[key] = self.path(key, what)
            elif key in ("input-dims", "uff-input-dims"):  # PP 6.2:849-931 8.0:981-1056 9.1:986-1061
                if not kf.has_key(PROPERTY, "infer-dims"):
                    self.printerr("Warning: 'input-dims' parameter has been deprecated. Use 'infer-dims' instead.")
                    dims = self.int_list(key)
                    if len(dims) != 4:
                        self.fail(f"Error. '{key}' array length is {len(dims)}. Should be 4[a;b;c;ORDER].")
                    if dims[3] not in (0, 1, 2):
                        self.fail(f"Error. Invalid value for '{key}', UFF input order :'{dims[3]}'")
                    ip.inferInputDims = (_guint(dims[0]), _guint(dims[1]), _guint(dims[2]))
                else:
                    self.printerr(f"Warning: Ignoring '{key}' parameter since 'infer-dims' has been set.")
            elif key in ("network-input-order", "uff-input-order", "segmentation-output-order", "cluster-mode"):
                val = self.integer(key)
                allowed = {"network-input-order": (0, 1), "uff-input-order": (0, 1, 2),
                           "segmentation-output-order": (0, 1), "cluster-mode": (0, 1, 2, 3, 4)}[key]
                if key == "cluster-mode" and val < 0:
                    self.fail(f"Error: Negative value specified for cluster-mode({val})")
                if val not in allowed:
                    self.fail(f"Error. Invalid value for '{key}':'{val}'")
                ip.other[key] = val
            elif key == "onnx-file":  # PP 6.2:996-1006 8.0:1122-1133 9.1:1127-1138
                ip.onnxFilePath = self.path(key, "ONNX file path")
            elif key == "num-detected-classes":
                val = self.integer(key)
                if val < 0:
                    self.fail(f"Error: Negative value specified for num-detected-classes({val})")
                ip.other[key] = val
            elif key == "enable-dbscan":
                self.printerr("Warn: 'enable-dbscan' parameter has been deprecated. Use 'cluster-mode' instead.")
                ip.other[key] = self.boolean(key)
            elif key in ("classifier-threshold", "segmentation-threshold"):
                # PP 6.2:1063-1084 8.0:1190-1212 9.1:1195-1217
                val = _f32(self.double(key))
                if val < 0:
                    self.fail(f"Error: Negative value specified for {key}({val:.2f})")
                if key == "classifier-threshold":
                    ip.classifierThreshold = val
                else:
                    ip.other[key] = val
            elif key == "input-tensor-from-meta":
                if self.boolean(key):
                    el.input_tensor_from_meta = True
            elif new8 and key == "disable-output-host-copy":
                # no CHECK_ERROR here (PP 8.0:1240-1243 9.1:1245-1248): a bad value's error waits for the next key
                ip.other[key] = self.get(kf.get_integer, key, 0)
            elif new8 and key == "raw-output-file-write":
                ip.other[key] = self.boolean(key)
            elif v == "9.1" and key in ("strongly-typed", "warmup-engine"):  # PP 9.1:1255-1264
                val = self.boolean(key)
                if key == "strongly-typed":
                    ip.useStronglyTyped = val
                else:
                    ip.other[key] = val
            elif v == "9.1" and key == "stabilize-buffer-count":  # PP 9.1:1265-1270
                ip.other[key] = _guint(self.integer(key))
            elif v == "9.1" and key == "dynamic-properties":  # PP 9.1:1271-1297
                ip.other[key] = self.string(key)
            else:  # `else if (nvinfer)` (PP 6.2:1111-1116 8.0:1250-1255 9.1:1298-1303)
                self.parse_other_attribute(key)

    # -- gst_nvinfer_parse_other_attribute (PP 6.2:291-492 8.0:324-535 9.1:329-540) -------------------------------
    def parse_other_attribute(self, key: str) -> None:
        el = self.el
        if key == "process-mode":  # PP 6.2:301-318 8.0:332-350 9.1:337-355
            val = _guint(self.integer(key))
            if val not in (1, 2):
                self.fail(f"Error: Invalid value for process-mode ({_gint(val)})")
            el.process_full_frame = val == 1
        elif key == "classifier-async-mode":
            if self.boolean(key):
                el.classifier_async_mode = True
        elif key == "classifier-type":  # PP 6.2:324-327 8.0:356-359 9.1:361-364
            el.classifier_type = self.string(key)
        elif key == "interval":
            el.interval = _guint(self.integer(key))
            if _gint(el.interval) < 0:
                self.fail(f"Error: Negative value ({_gint(el.interval)}) specified for interval")
        elif key in ("output-tensor-meta", "output-instance-mask", "crop-objects-to-roi-boundary"):
            val = self.boolean(key)
            if key == "output-tensor-meta" and val:
                el.output_tensor_meta = True
            if key == "crop-objects-to-roi-boundary" and val:
                el.crop_objects_to_roi_boundary = True
        elif key == "secondary-reinfer-interval":  # PP 6.2:348-351 8.0:382-386 9.1:387-391: no range check
            el.secondary_reinfer_interval = _guint(self.integer(key))
        elif key == "maintain-aspect-ratio":  # PP 6.2:352-356 8.0:387-391 9.1:392-396
            if self.boolean(key):
                el.maintain_aspect_ratio = True
        elif key == "symmetric-padding":
            if self.boolean(key):
                el.symmetric_padding = True
        elif key in ("input-object-min-width", "input-object-min-height", "input-object-max-width",
                     "input-object-max-height"):  # PP 6.2:362-399 8.0:397-440 9.1:402-445
            val = _guint(self.integer(key))
            if _gint(val) < 0:
                self.fail(f"Error: Negative value specified for {key}({_gint(val)})")
            setattr(el, {"input-object-min-width": "min_input_object_width",
                         "input-object-min-height": "min_input_object_height",
                         "input-object-max-width": "max_input_object_width",
                         "input-object-max-height": "max_input_object_height"}[key], val)
        elif key == "operate-on-gie-id":  # PP 6.2:400-406 8.0:441-448 9.1:446-453
            el.operate_on_gie_id = self.integer(key)
        elif key == "operate-on-class-ids":
            ids = self.int_list(key)
            el.operate_on_class_ids = [False] * (max(ids, default=-1) + 1)
            for i in ids:
                if i < 0:  # std::vector::at(negative) throws std::out_of_range: the process aborts
                    raise RuntimeError("std::out_of_range in operate-on-class-ids: the process aborts")
                el.operate_on_class_ids[i] = True
        elif key == "filter-out-class-ids":
            el.filter_out_class_ids |= set(self.int_list(key))
        elif key == "scaling-compute-hw":  # PP 6.2:437-454 8.0:480-497 9.1:485-502
            val = _gint(self.integer(key))
            allowed = (0, 1, 2) if self.platform.aarch64 else (0, 1)  # VIC (2) only `#ifdef __aarch64__`
            if val not in allowed:
                self.fail(f"Error. Invalid value for 'scaling-compute-hw':'{val}'")
            el.compute_mode = val
        elif key == "scaling-filter":  # PP 6.2:455-474 8.0:498-517 9.1:503-522
            val = _gint(self.integer(key))
            if val not in FILTERS:
                self.fail(f"Error. Invalid value for 'scaling-filter':'{val}'")
            el.transform_filter = val
        else:  # PP 6.2:480-483 8.0:523-526 9.1:528-531: a warning, and the key is skipped; parsing goes on
            self.printerr(f"Unknown or legacy key specified '{key}' for group [{PROPERTY}]")


def parse_config_file(config: PathLike, version: str, platform: Platform = DGPU) -> ParseResult:
    """``gst_nvinfer_parse_config_file`` (PP 6.2:1131-1259 8.0:1271-1403 9.1:1319-1451) of ``version`` on
    ``platform``: what nvinfer prints (stderr/stdout lines) and what it stores. ``ok`` is False where nvinfer's
    start then fails with "Configuration file parsing failed" (GST 6.2:826-829 8.0:846-851 9.1:1028-1033)."""
    _check_version(version)
    cfg = Path(config)
    p = _Parser(version, platform, cfg)
    ok = False
    keys: list[str] = []
    try:
        try:
            p.kf = GKeyFile.load_from_file(cfg)  # G_KEY_FILE_NONE (PP 6.2:1141 8.0:1282 9.1:1330)
        except GError as e:
            p.fail(f"Failed to load config file: {e.message}")
        if not p.kf.has_group(PROPERTY):
            p.fail(f"Could not find group {PROPERTY}")
        keys = p.kf.get_keys(PROPERTY)
        try:
            p.parse_props()
        except _Abort:
            p.fail(f"Failed to parse group {PROPERTY}")
        # Groups other than [property] are only read for detectors / instance segmentation (PP 6.2:1160
        # 8.0:1302 9.1:1350): a classifier ignores them.
        ok = True
    except _Abort:
        line = _line(version, 1256, 1399, 1447)
        p.printerr(f"** ERROR: <gst_nvinfer_parse_config_file:{line}>: failed")
    return ParseResult(version, platform, cfg, ok, p.init, p.el, p.stderr, p.stdout, keys)


def config_keys(version: str) -> frozenset[str]:
    """Every [property] key ``version`` parses (the branches of parse_props and parse_other_attribute)."""
    _check_version(version)
    base = {
        "gie-unique-id", "labelfile-path", "gpu-id", "enable-dla", "use-dla-core", "tensor-meta-pool-size",
        "batch-size", "force-implicit-batch-dim", "workspace-size", "infer-dims", "network-mode",
        "model-engine-file", "int8-calib-file", "output-blob-names", "output-io-formats", "layer-device-precision",
        "network-type", "model-color-format", "net-scale-factor", "offsets", "mean-file", "custom-lib-path",
        "parse-bbox-func-name", "parse-bbox-instance-mask-func-name", "engine-create-func-name",
        "parse-classifier-func-name", "custom-network-config", "model-file", "proto-file", "uff-file", "input-dims",
        "uff-input-dims", "network-input-order", "uff-input-order", "uff-input-blob-name", "tlt-encoded-model",
        "tlt-model-key", "onnx-file", "num-detected-classes", "enable-dbscan", "cluster-mode",
        "classifier-threshold", "segmentation-threshold", "segmentation-output-order", "input-tensor-from-meta",
        # parse_other_attribute
        "process-mode", "classifier-async-mode", "classifier-type", "interval", "output-tensor-meta",
        "output-instance-mask", "secondary-reinfer-interval", "maintain-aspect-ratio", "symmetric-padding",
        "input-object-min-width", "input-object-min-height", "input-object-max-width", "input-object-max-height",
        "operate-on-gie-id", "operate-on-class-ids", "filter-out-class-ids", "scaling-compute-hw", "scaling-filter",
        "crop-objects-to-roi-boundary",
    }
    if version in ("8.0", "9.1"):
        base |= {"auto-inc-mem", "max-gpu-mem-per", "dump-input-tensor", "dump-output-tensor",
                 "overwrite-input-tensor", "overwrite-output-tensor", "ip-tensor-file", "op-tensor-files",
                 "parse-segmentation-func-name", "disable-output-host-copy", "raw-output-file-write"}
    if version == "9.1":
        base |= {"strongly-typed", "warmup-engine", "stabilize-buffer-count", "dynamic-properties"}
    return frozenset(base)


# ---------------------------------------------------------------------------------------------------------------
# gst_nvinfer_start: the minimum object size
# ---------------------------------------------------------------------------------------------------------------
def min_object_size(version: str, platform: Platform, parsed: ParseResult | Element) -> tuple[int, int]:
    """The (width, height) below which nvinfer skips an object (``should_infer_object``: ``width < min`` is
    skipped, GST 6.2:1583 8.0:1658 9.1:1858), as ``gst_nvinfer_start`` sets it:

    - 6.2: ``MAX(16, configured)`` on every platform: ``#define MIN_INPUT_OBJECT_WIDTH 16`` (GST 6.2:66-67),
      applied at GST 6.2:843-847 "since it will cause hardware scaling issues".
    - 8.0/9.1: ``MAX(1, configured)`` (defines at GST 8.0:65-66 9.1:70-71, applied 8.0:863-867 9.1:1045-1049),
      then raised to 16 only when NvBufSurfaceGetDeviceInfo reports the nvgpu driver AND scaling-compute-hw is
      VIC or Default (GST 8.0:869-885 9.1:1051-1067, printing "Setting min object dimensions as 16x16 instead of
      1x1 to support VIC compute mode.").
    """
    _check_version(version)
    el = parsed.element if isinstance(parsed, ParseResult) else parsed
    w, h = el.min_input_object_width, el.min_input_object_height
    if version == "6.2":
        return max(16, w), max(16, h)
    w, h = max(1, w), max(1, h)
    if platform.driver == "NVGPU" and el.compute_mode in (0, 2):
        w, h = max(16, w), max(16, h)
    return w, h


def start_messages(version: str, platform: Platform, parsed: ParseResult) -> list[str]:
    """What gst_nvinfer_start prints before creating the context, for a parsed config."""
    if not parsed.ok:
        return ["Configuration file parsing failed"]
    if version != "6.2" and platform.driver == "NVGPU" and parsed.element.compute_mode in (0, 2):
        return ["Setting min object dimensions as 16x16 instead of 1x1 to support VIC compute mode."]
    return []


# ---------------------------------------------------------------------------------------------------------------
# NvDsInferContextImpl::initialize: what depends on our files
# ---------------------------------------------------------------------------------------------------------------
def parse_labels_file(path: PathLike) -> list[list[str]]:
    """InferPostprocessor::parseLabelsFile (CTX 6.2:470-501 8.0:541-576 9.1:546-581): one entry per non-empty
    line (``std::getline`` on ``\\n``: a ``\\r`` stays in the last label), split at every ``;``."""
    text = Path(path).read_bytes().decode("utf-8", errors="surrogateescape")
    return [line.split(";") for line in text.split("\n") if line != ""]


@dataclass
class OnnxIO:
    """What TensorRT's ONNX parser gives nvinfer: IO tensors in order (inputs first), with full dims."""

    inputs: list[tuple[str, list[int]]]  # -1 for a dynamic dimension
    outputs: list[tuple[str, list[int]]]


def read_onnx_io(path: PathLike) -> OnnxIO:
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}

    def dims(vi: Any) -> list[int]:
        return [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]

    return OnnxIO([(i.name, dims(i)) for i in model.graph.input if i.name not in inits],
                  [(o.name, dims(o)) for o in model.graph.output])


@dataclass
class InitResult:
    ok: bool
    log: list[str]
    #: The engine file nvinfer deserialised ("" if it built one).
    deserialized: str = ""
    #: The file nvinfer serialises the engine it built to ("" if it deserialised one or failed).
    serialized: str = ""
    #: The precision it built ("fp32"/"fp16"/"int8"/"best").
    built_mode: str = ""
    network: tuple[int, int, int] = (0, 0, 0)  # c, h, w
    scale: float = 1.0
    offsets: list[float] = field(default_factory=list)
    labels: list[list[str]] = field(default_factory=list)
    #: classes per output layer, as the classifier parser reads them (getDimsCHWFromDims: c = d[0]).
    classes_per_output: list[int] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [m for m in self.log if m.startswith("ERROR: ")]


def init_context(parsed: ParseResult, *, fast_int8: bool = True, fast_fp16: bool = True,
                 engine_deserializes: bool = True) -> InitResult:
    """NvDsInferContextImpl::initialize (CTX 6.2:1004-1100 8.0:1227-1400 9.1:1232-1405) for an ONNX classifier,
    as far as our files decide it. ``fast_int8``/``fast_fp16``: what TensorRT's platformHasFastInt8/Fp16 answer;
    ``engine_deserializes``: whether an existing model-engine-file deserialises and matches (TensorRT's business)."""
    v, ip = parsed.version, parsed.init
    r = InitResult(ok=False, log=[])

    def err(msg: str) -> InitResult:
        r.log.append("ERROR: " + msg)
        return r

    def warn(msg: str) -> None:
        r.log.append("WARNING: " + msg)

    def info(msg: str) -> None:
        r.log.append("INFO: " + msg)

    if not parsed.ok:
        return err("Configuration file parsing failed")

    # generateBackendContext (CTX 6.2:1755-1795 8.0:2189-2235 9.1:2268-2314): model-engine-file first
    engine = ip.modelEngineFilePath
    if engine:
        if os.path.isfile(engine) and engine_deserializes:
            info(f"deserialized trt engine from :{engine}")
            r.deserialized = engine
        else:
            if not os.path.isfile(engine):
                # MB 6.2:1271 8.0:1262 9.1:1324
                warn(f"Deserialize engine failed because file path: {engine} open error")
            warn(f"deserialize backend context from engine from file :{engine} failed, try rebuild")
    io: OnnxIO | None = None
    if not r.deserialized:
        # NvDsInferContextImpl::buildModel (CTX 6.2:1700-1752 8.0:2121-2182 9.1:2200-2261)
        info("Trying to create engine from model files")
        if not ip.onnxFilePath:
            return err("build engine file failed")
        if not os.access(ip.onnxFilePath, os.R_OK):  # OnnxModelParser::parseModel (MB 6.2:266-267 8.0:56-58 9.1:74-76)
            err(f"Cannot access ONNX file '{ip.onnxFilePath}'")
            return err("build engine file failed")
        io = read_onnx_io(ip.onnxFilePath)
        # createDynamicParams (MB 6.2:869-900 8.0:759-795 9.1:793-829): with infer-dims the profile's CHW, whose
        # rank must be the model input's minus the batch (MB 6.2:1153 8.0:1115 9.1:1177)
        if all(ip.inferInputDims) and len(io.inputs[0][1]) != 4:
            err("explict dims.nbDims in config does not match model dims.")
            return err("build engine file failed")
        static = io.inputs[0][1][1:]
        if all(ip.inferInputDims) and all(d > 0 for d in static) and tuple(static) != ip.inferInputDims:
            # TensorRT's own check, not nvinfer's: a profile contradicting the ONNX's static input dims does not
            # build (its wording is not reproduced here); nvinfer then reports the failed build
            err(f"TensorRT: profile dims {ip.inferInputDims} differ from the input's static dims {tuple(static)}")
            return err("build engine file failed")
        # configCommonOptions (MB 6.2:978-1060 8.0:906-1015 9.1:963-1076): INT8 (and BEST) need a calibrator, which
        # exists only for an accessible int8-calib-file (CTX 6.2:1709-1713 8.0:2130-2136 9.1:2209-2215)
        mode = NETWORK_MODES[v][ip.networkMode]
        calibrator = bool(ip.int8CalibrationFilePath) and os.access(ip.int8CalibrationFilePath, os.R_OK)
        if mode in ("int8", "best"):
            if not fast_int8:
                warn("INT8 not supported by platform. Trying FP16 mode.")
                mode = "fp16"
            elif not calibrator:
                warn("INT8 calibration file not specified. Trying FP16 mode.")  # MB 6.2:1041 8.0:990 9.1:1050
                mode = "fp16"
        if mode == "fp16" and not fast_fp16:
            warn("FP16 not supported by platform. Using FP32 mode.")  # MB 6.2:1055 8.0:1010 9.1:1071
            mode = "fp32"
        # TrtModelBuilder::buildModel: modelPath = the parser's model name = initParams.onnxFilePath (MBH 6.2:132
        # 8.0:78 9.1:83), i.e. the path get_absolute_file_path made; devId gpu<N> (or dla<N>); the mode built
        # (MB 6.2:713-724 8.0:578-591 9.1:603-616); networkMode2Str (FU 6.2:159-171 8.0:203-219 9.1:208-224).
        dev = f"dla{ip.dlaCore}" if ip.useDLA and ip.dlaCore >= 0 else f"gpu{ip.gpuID}"
        r.serialized = f"{ip.onnxFilePath}_b{ip.maxBatchSize}_{dev}_{mode}.engine"
        r.built_mode = mode
        info(f"serialize cuda engine to file: {r.serialized} successfully")  # CTX 6.2:1726 8.0:2155 9.1:2234
        # checkBackendParams: an output-blob-names entry the engine lacks only warns (CTX 6.2:1661 8.0:2076 9.1:2155)
        for name in ip.outputLayerNames:
            if name not in [o for o, _ in io.outputs]:
                warn(f"Could not find output layer '{name}' in engine")
    elif ip.onnxFilePath and os.path.isfile(ip.onnxFilePath):
        io = read_onnx_io(ip.onnxFilePath)  # the engine was built from it: same IO (assumed)
    if io is None:
        return err("Infer Context initialize inference info failed")

    # initInferenceInfo (CTX 6.2:947-1001 8.0:1162-1224 9.1:1167-1229): tensor 0 is the image input, CHW after
    # the batch (6.2:966,983 8.0:1183,1201 9.1:1188,1206); network size from infer-dims if all set, else the model
    in_dims = io.inputs[0][1][1:]
    if len(in_dims) != 3:
        err("Infer Context default input_layer is not a image[CHW]")
        return err("Infer Context initialize inference info failed")
    r.network = ip.inferInputDims if all(ip.inferInputDims) else (in_dims[0], in_dims[1], in_dims[2])
    c = r.network[0]

    # preparePreprocess (CTX 6.2:838-900 8.0:1039-1113 9.1:1044-1118)
    fmt = ip.networkInputFormat
    if fmt in ("RGB", "BGR") and c != 3:  # CTX 6.2:849 8.0:1052 9.1:1057
        err("RGB/BGR input format specified but network input channels is not 3")
        return err("Infer Context prepare preprocessing resource failed.")
    if fmt == "GRAY" and c != 1:  # CTX 6.2:857 8.0:1061 9.1:1066
        err("GRAY input format specified but network input channels is not 1.")
        return err("Infer Context prepare preprocessing resource failed.")
    r.scale = ip.networkScaleFactor
    if ip.networkScaleFactor > 0.0:  # CTX 6.2:875 8.0:1080 9.1:1085
        # setScaleOffsets refuses a count other than the channels (CTX 6.2:108-118 8.0:125-139 9.1:130-144), so
        # allocateResource's "Number of offsets(%d) not equal to number of input channels(%d)" (CTX 6.2:225
        # 8.0:265 9.1:270) cannot be reached from a config: this message comes first
        if ip.offsets and len(ip.offsets) != c:
            err("Preprocessor set scale and offsets failed.")
            return err("Infer Context prepare preprocessing resource failed.")
        r.offsets = list(ip.offsets)
    # else: offsets are ignored (and scale 1.0 is not applied either): y = x

    # preparePostprocess -> InferPostprocessor::initResource: the labels file (CTX 6.2:514-516 8.0:604-608 9.1:609-613)
    if ip.labelsFilePath:
        if not os.path.isfile(ip.labelsFilePath):
            err(f"Could not open labels file:{ip.labelsFilePath}")
            err(f"parse label file:{ip.labelsFilePath} failed")
            return err("Infer Context prepare postprocessing resource failed.")
        r.labels = parse_labels_file(ip.labelsFilePath)
    # the classifier reads each output layer's dims after the batch as CHW: classes = d[0] (OUT 6.2:586 8.0:625
    # 9.1:641, IH 6.2:117 8.0:128 9.1:133; SplitFullDims FU 6.2:90 8.0:111 9.1:116)
    r.classes_per_output = [d[1] if len(d) > 1 else 1 for _, d in io.outputs]
    r.ok = True
    return r
