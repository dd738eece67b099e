"""Tests that kill hand-made mutants (round 70, task K70k) of the SDK's support modules: the measured files kept
beside models (fsrfer_edge/sidecars.py: what a damaged file's error says was expected, which of a model's names is
looked for first, beside a model and beside a cached engine's ONNX file, each place and file tried once, engine
sidecars that are JSON but no object, bytes as text, the fields an unknown one is refused for, an array passed where a
file was expected), fsrfer-engines (fsrfer_edge/engines_cli.py: its exit status and what its errors say when the folder
cannot be read, --dir is missing or a near version is refused; a staging folder's size with a symlink in it) and
fsrfer_edge/forking.py (objects left to the parent outlive the interpreter's exit). A fourth pass after rounds 64, 66
and 68. Plain files stand in for engines; nothing here needs TensorRT or a GPU."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

from fsrfer_edge.errors import ModelError

# -- the measured files kept beside a model (fsrfer_edge/sidecars.py) ---------------------------------------------
_CLASSES = ("neutral", "happy")
_CKPT = "ab" * 32


def _groups(checkpoint: str = _CKPT, factor: float = 1.0) -> Any:
    """A two-class group calibration measured at one face-size factor on ``checkpoint``."""
    from fsrfer_edge.groups import GroupCalibration

    eye = np.eye(len(_CLASSES))[None]
    return GroupCalibration(_CLASSES, (factor,), eye, eye, (5, 5), checkpoint)


def _find(model: Optional[Path], load: Any = None) -> Any:
    from fsrfer_edge import sidecars
    from fsrfer_edge.groups import GroupCalibration

    return sidecars.find(model, _CLASSES, _CKPT, ".groups.json", load or GroupCalibration.load, "group calibration")


@pytest.fixture()
def packaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The package's measured files replaced by an empty folder (the test's own files only)."""
    from fsrfer_edge import sidecars

    folder = tmp_path / "packaged"
    folder.mkdir()
    monkeypatch.setattr(sidecars, "PACKAGED", folder)
    return folder


def test_a_measured_file_that_is_not_utf8_is_a_model_error_saying_what_writes_it(
        tmp_path: Path, packaged: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Mutant S4: the error for a damaged file no longer said what file was expected (JSON written by
    # GroupCalibration.save); find() skips such a file with a warning naming it
    from fsrfer_edge.groups import GroupCalibration

    path = tmp_path / "face.groups.json"
    path.write_bytes(b"\xff\xfe\x00{")
    with pytest.raises(ModelError, match=r"face\.groups\.json: not a readable group calibration \(JSON written by "
                                         r"GroupCalibration\.save\): "):
        GroupCalibration.load(path)
    with caplog.at_level("WARNING", logger="fsrfer_edge.sidecars"):
        assert _find(tmp_path / "face.onnx") is None
    assert "group calibration skipped: " in caplog.text and "face.groups.json" in caplog.text


def test_a_variants_own_measured_file_is_taken_before_its_base_models(tmp_path: Path, packaged: Path) -> None:
    # Mutant S9: the base model's name (fer) was looked for before the variant's own (fer.fp16), so the FP16 file's
    # own measurements were shadowed by the FP32 model's
    from fsrfer_edge import sidecars

    model = tmp_path / "fer.fp16.onnx"
    assert sidecars.model_names(model) == ["fer.fp16", "fer"]
    _groups(factor=2.0).save(tmp_path / "fer.fp16.groups.json")
    _groups(factor=1.0).save(tmp_path / "fer.groups.json")
    found = _find(model)
    assert found is not None and found.factors == (2.0,)


def test_an_engine_beside_its_onnx_file_lists_each_place_once(tmp_path: Path) -> None:
    # Mutant S13: an engine built beside its ONNX file listed every name twice (beside itself, and beside the file
    # its sidecar names: the same folder), so a damaged file there was read and warned about twice
    from test_mutants66f import _engine, _key

    from fsrfer_edge import sidecars

    onnx = tmp_path / "fer.onnx"
    onnx.write_bytes(b"model")
    engine = _engine(tmp_path, onnx, _key())
    out = sidecars.besides(engine, ".groups.json")
    assert len(out) == len(set(out)) and tmp_path / "fer.groups.json" in out


def test_a_file_beside_a_model_in_the_packages_folder_is_read_once(packaged: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    # Mutant S15: a file beside the model that is also among the package's files (a model of the package's own
    # folder) was a candidate twice: read twice, and its mismatch warned about twice
    from fsrfer_edge.groups import GroupCalibration

    path = _groups("cd" * 32).save(packaged / "face.groups.json")
    reads: list[Path] = []

    def load(p: Path) -> Any:
        reads.append(p)
        return GroupCalibration.load(p)

    with caplog.at_level("WARNING", logger="fsrfer_edge.sidecars"):
        assert _find(packaged / "face.onnx", load) is None
    assert reads == [path] and caplog.text.count("skipped") == 1


def test_text_value_refuses_bytes() -> None:
    # Mutant S19: bytes were taken as text (str(b'happy') is "b'happy'", a class name no model has)
    from fsrfer_edge.sidecars import text_value

    assert text_value(np.str_("happy")) == "happy"
    with pytest.raises(TypeError, match="a bytes"):
        text_value(b"happy")


def test_refuse_unknown_fields_names_the_expected_ones() -> None:
    # Mutant S20: the unknown-field error no longer named the fields expected (only the misspelt one)
    from fsrfer_edge.groups import GroupCalibration
    from fsrfer_edge.sidecars import refuse_unknown_fields

    with pytest.raises(ModelError, match=r"unknown field\(s\) \['factor'\]; expected only \['classes', 'factors', "):
        refuse_unknown_fields(GroupCalibration, {"classes": [], "factor": 1}, "group calibration")


def test_resolve_refuses_an_array_as_another_type(tmp_path: Path) -> None:
    # Mutant S24: resolve compared the value with 'auto' before checking it is a str, so an array passed by mistake
    # raised numpy's "truth value of an array is ambiguous" instead of saying what was expected
    from fsrfer_edge import sidecars
    from fsrfer_edge.errors import InputError
    from fsrfer_edge.groups import GroupCalibration

    with pytest.raises(InputError, match="groups is a ndarray; expected 'auto', None, a GroupCalibration or the path"):
        sidecars.resolve(np.zeros(3), GroupCalibration, tmp_path / "face.onnx", _CLASSES, _CKPT, ".groups.json",
                         "group calibration", "groups", "python scripts/groups.py")


@pytest.mark.parametrize("text", ["[]", '["source_path"]', "3", '"/models/fer.onnx"', "null"])
def test_an_engine_sidecar_that_is_json_but_no_object_is_skipped_in_the_search(tmp_path: Path, text: str) -> None:
    # Mutant S25: a sidecar holding a JSON array, number, string or null was read as an object (AttributeError:
    # groups='auto' on that engine crashed instead of looking beside it only)
    from fsrfer_edge import sidecars
    from fsrfer_edge.engine_cache import sidecar_path

    engine = tmp_path / "m.fp16.0123abcd.trt10.engine"
    engine.write_bytes(b"not an engine")
    sidecar_path(engine).write_text(text)
    assert sidecars.besides(engine, ".groups.json") == [tmp_path / "m.fp16.0123abcd.trt10.groups.json",
                                                        tmp_path / "m.groups.json"]


def test_a_cached_engine_of_a_variant_looks_beside_its_onnx_file_under_the_base_models_name(tmp_path: Path) -> None:
    # Mutant S26: beside the ONNX file its sidecar names, only that file's own name was looked for (fer.fp16), so an
    # FP16 model's engine in the cache never found the fer.groups.json measured for the model it is a variant of
    from test_mutants66f import _engine, _key

    from fsrfer_edge import sidecars

    onnx = tmp_path / "models" / "fer.fp16.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(b"model")
    engine = _engine(tmp_path / "cache", onnx, _key())
    out = sidecars.besides(engine, ".groups.json")
    assert out[-2:] == [tmp_path / "models" / "fer.fp16.groups.json", tmp_path / "models" / "fer.groups.json"]


# -- fsrfer-engines (fsrfer_edge/engines_cli.py) --------------------------------------------------------------------
_TRT = ["--tensorrt-version", "10.3.0.26"]


@pytest.fixture()
def stale_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A folder with a stale 3 MiB engine (its sidecar lost) and a killed export's 1 MiB staging folder."""
    from test_mutants64d import _stale_folder

    return _stale_folder(tmp_path)


@pytest.mark.parametrize("step", ["list_engines", "prune"])
def test_fsrfer_engines_exits_2_with_a_message_when_the_folder_cannot_be_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], step: str) -> None:
    # Mutants E3: an OSError while listing (a folder it may not read) went up as a traceback; E5: one while pruning
    # exited 1, not the documented 2
    from fsrfer_edge import engine_cache, engines_cli

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(engine_cache, step, fail)
    assert engines_cli.main(["--dir", str(tmp_path), "--prune", *_TRT]) == 2
    assert f"fsrfer-engines: error: [Errno 13] Permission denied: '{tmp_path}'" in capsys.readouterr().err


def test_fsrfer_engines_counts_a_staging_folders_symlink_not_its_target(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, stale_folder: tuple[Path, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    # Mutant E4: a staging folder's size followed its symlinks (a link to a big file elsewhere counted that file,
    # which --prune does not free)
    from fsrfer_edge import engines_cli

    _, stage = stale_folder
    big = tmp_path_factory.mktemp("outside") / "big.bin"
    with open(big, "wb") as f:
        f.truncate(8 << 20)
    (stage / "link.bin").symlink_to(big)
    assert engines_cli.main(["--dir", str(tmp_path), *_TRT]) == 0
    assert f"{stage.name}/ (1.0 MiB): stale" in capsys.readouterr().out


def test_fsrfer_engines_refuses_a_missing_dir_saying_what_folder_was_expected(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Mutant E11: the error for a --dir that does not exist no longer said which folders hold engines
    from fsrfer_edge import engines_cli

    with pytest.raises(SystemExit) as exc:
        engines_cli.main(["--dir", str(tmp_path / "nowhere"), *_TRT])
    assert exc.value.code == 2
    assert (f"--dir {tmp_path / 'nowhere'} does not exist; expected a folder of engines (the cache, or the --out-dir "
            "of fsrfer-export --engine)") in capsys.readouterr().err


def test_fsrfer_engines_refusing_a_near_version_says_nothing_was_removed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Mutant E14: the refusal of 10.3.0 beside engines of 10.3.0.26 no longer said that nothing was removed
    from test_mutants68k import _cache_with

    from fsrfer_edge import engines_cli

    cache, (engine,) = _cache_with(tmp_path, "10.3.0.26")
    with pytest.raises(SystemExit) as exc:
        engines_cli.main(["--dir", str(cache), "--tensorrt-version", "10.3.0", "--prune"])
    assert exc.value.code == 2 and engine.exists()
    err = capsys.readouterr().err
    assert "--tensorrt-version 10.3.0 is not what this folder's engines record, but 10.3.0.26 is the same release" in err
    assert "prints it on the device (nothing was removed)" in err


# -- forking: what a forked child keeps of its parent's objects (fsrfer_edge/forking.py) ------------------------------
_NOISY = """
import os
from fsrfer_edge.forking import leave_to_parent
class Noisy:
    def __del__(self, write=os.write):
        write(1, b"destructor ran\\n")
leave_to_parent(Noisy(), Noisy())
print("end", flush=True)
"""


def test_objects_left_to_the_parent_are_not_destroyed_even_at_the_interpreters_exit() -> None:
    # Mutant F2: the list holding them got no extra reference, so the interpreter's exit (which clears module
    # globals) ran their destructors: a CUDA stream's or an ONNX Runtime session's, in a forked child
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", _NOISY], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "end\n"
