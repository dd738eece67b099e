"""Names and text that end up in paths and in generated text files: no predictable names in the shared temporary
folder, no names that leave their folder, no text that injects lines or keys into a generated config."""
from __future__ import annotations

import configparser
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest

from fsrfer_edge.errors import ConfigError, ModelError
from fsrfer_edge.metadata import ModelInfo
from fsrfer_edge.serving import cli as serve_cli
from fsrfer_edge.serving import server as server_mod
from fsrfer_edge.serving.triton_repo import _quote


# ---------------------------------------------------------------------------------------------
# fsrfer-serve -q: tritonserver's log in a private folder, never through a planted symlink
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder all users share, as tempfile.gettempdir() gives it."""
    folder = tmp_path / "shared-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners and modes")
def test_quiet_log_is_in_a_private_folder_not_at_a_planted_symlink(tmp_path: Path, shared: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (shared / "fsrfer-serve-18123.log").symlink_to(victim)  # another user's trap at the old, predictable name
    got: dict[str, Any] = {}

    def fake_serve(*args: Any, **kw: Any) -> None:  # tritonserver opens --log-file itself, truncating it
        got.update(kw)
        with open(kw["log_file"], "w") as f:
            f.write("tritonserver log\n")
        kw["on_ready"]()

    monkeypatch.setattr(serve_cli, "serve", fake_serve)
    assert serve_cli.main(["-q", "--http-port", "18123"]) == 0
    assert victim.read_text() == "precious\n"
    log = Path(got["log_file"])
    folder = log.parent
    assert folder.parent == shared and folder != shared
    st = os.lstat(folder)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()
    assert log.read_text() == "tritonserver log\n"
    assert f"tritonserver's log in {log}" in capsys.readouterr().out
    # a second run reuses its own folder
    assert serve_cli.main(["-q", "--http-port", "18123"]) == 0 and Path(got["log_file"]) == log


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners and modes")
def test_quiet_log_refuses_a_planted_folder(tmp_path: Path, shared: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (shared / serve_cli.quiet_log_folder().name).symlink_to(elsewhere)  # a link in its place: not followed
    monkeypatch.setattr(serve_cli, "serve", lambda *a, **kw: pytest.fail("served despite a planted folder"))
    assert serve_cli.main(["-q"]) == 2
    err = capsys.readouterr().err
    assert "--log-file" in err and "symlink" in err
    assert not list(elsewhere.iterdir())


# ---------------------------------------------------------------------------------------------
# Triton model names: serve() and ServerProcess refuse what PyTriton would put outside its model store
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".", "..", "é", "a/b", "", "a\nb", "x\0"])
def test_serve_refuses_model_names_before_anything_starts(name: str) -> None:
    with pytest.raises(ConfigError, match="model_name"):
        server_mod.serve(None, model_name=name)
    with pytest.raises(ConfigError, match="model_name"):
        server_mod.ServerProcess(model_name=name)


# ---------------------------------------------------------------------------------------------
# config.pbtxt and labels.txt of a Triton repository
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["a\0b", "a\x01b\x7f", 'q"\\\n\r\t'])
def test_protobuf_strings_hold_no_control_characters(text: str) -> None:
    """Triton's C++ text-format tokenizer ends a string at NUL (Python's parser does not, so the staged check
    passes): every control character is escaped."""
    quoted = _quote(text)
    assert not any(ord(c) < 0x20 or c == "\x7f" for c in quoted)
    text_format = pytest.importorskip("google.protobuf.text_format")
    pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    config = pb2.ModelConfig()
    text_format.Parse(f"name: {quoted}", config)
    assert config.name == text


@pytest.mark.parametrize("bad", ["happy\nsad", "\ud800"])
def test_triton_repo_refuses_class_names_its_text_files_cannot_hold(tmp_path: Path, bad: str) -> None:
    """A line break would shift labels.txt against the outputs; a lone surrogate (JSON "\\ud800") cannot be written
    as UTF-8 and failed with a bare UnicodeEncodeError half-way through staging."""
    pytest.importorskip("onnx")
    pytest.importorskip("torch")
    from _onnx_models import edit_metadata, make_tiny_onnx

    from fsrfer_edge.serving import write_triton_repo

    model = make_tiny_onnx(tmp_path / "tiny.onnx")

    def edit(doc: dict[str, Any]) -> None:
        doc["preprocessing"]["classes"][0] = bad

    edit_metadata(model, edit)
    with pytest.raises(ModelError, match="surrogate|control character|line break"):
        write_triton_repo(tmp_path / "repo", onnx_path=model)
    assert not (tmp_path / "repo").exists() and not list(tmp_path.glob(".repo.staging-*"))


# ---------------------------------------------------------------------------------------------
# DeepStream's config: a model's input name cannot add keys, nor commands to the trtexec line
# ---------------------------------------------------------------------------------------------


def _keys(text: str) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return dict(parser["property"])


def test_deepstream_trtexec_line_quotes_the_input_name() -> None:
    """The INT8 config's comment holds a trtexec command to paste into a shell: a model's input name with spaces or
    shell syntax stays one argument, and runs nothing."""
    import shlex

    from fsrfer_edge.export.deepstream import config_text

    evil = "faces x;$(touch pwned)"
    info = ModelInfo(precision="int8", int8_scheme="s8s8", input_name=evil)
    text = config_text(info, "m.onnx", "m_labels.txt")
    keys = _keys(text)
    assert keys["network-mode"] == "1"
    assert all(not line or line.startswith("#") or line == "[property]" or "=" in line for line in text.split("\n"))
    line = next(x for x in text.splitlines() if "trtexec" in x and "--onnx" in x)
    args = shlex.split(line.lstrip("# "))  # the command as a shell reads it: the name stays one argument
    assert args[0] == "trtexec" and len(args) == 8
    assert "$(touch pwned)" in args[4] and args[4].startswith("--minShapes=")
    plain = config_text(ModelInfo(precision="int8", int8_scheme="s8s8"), "m.onnx", "m_labels.txt")
    assert "--minShapes=faces:1x" in plain  # a plain name is written as before, unquoted


def test_serve_cli_names_the_check_as_before_for_whitespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    shared = tmp_path / "my tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.setattr(serve_cli, "serve", lambda *a, **kw: pytest.fail("served"))
    assert serve_cli.main(["-q"]) == 2
    assert "whitespace" in capsys.readouterr().err
    assert not list(shared.iterdir())  # nothing made there


def test_deepstream_refuses_text_no_utf8_file_holds(tmp_path: Path) -> None:
    """A lone surrogate in a class name (JSON "\\ud800") failed with a bare UnicodeEncodeError after NAME.onnx was
    written; now a ModelError, before anything is written."""
    pytest.importorskip("onnx")
    pytest.importorskip("torch")
    from _onnx_models import edit_metadata, make_tiny_onnx

    from fsrfer_edge.export.deepstream import write_deepstream

    model = make_tiny_onnx(tmp_path / "tiny.onnx")

    def edit(doc: dict[str, Any]) -> None:
        doc["preprocessing"]["classes"][0] = "\ud800"

    edit_metadata(model, edit)
    with pytest.raises(ModelError, match="surrogate"):
        write_deepstream(tmp_path / "ds", model)
    assert not (tmp_path / "ds").exists()
