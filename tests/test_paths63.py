"""File paths a real user has: spaces, non-ASCII names, "~", very long names, folders that refuse new files.

Each entry point either works as with a plain ASCII path, or fails with an fsrfer error naming the path and what to
do (never a raw OSError, never a folder literally named "~" in the current folder).
"""
from __future__ import annotations

import fnmatch
import shutil
import sys
from pathlib import Path

import pytest

from fsrfer_edge import engine_cache
from fsrfer_edge.engine_cache import EngineKey
from fsrfer_edge.errors import ConfigError

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "fsrfer_edge" / "models" / "default.onnx"
NAME_MAX = 255


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $HOME, and a fresh current folder apart from it (where a literal "~" folder would appear)."""
    h = tmp_path / "home dir"
    h.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.chdir(cwd)
    return h


def _model(folder: Path, name: str = "m.onnx") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(DEFAULT_MODEL, folder / name))


# ------------------------------------------------------------------------------------------------ engine cache


def test_engine_dir_variable_with_tilde_is_the_home_folder(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSRFER_ENGINE_DIR", "~/engines")  # as a systemd unit or docker ENV gives it: not expanded
    assert engine_cache.default_cache_dir() == home / "engines"


@pytest.mark.parametrize("stem", ["é" * 100, "a" * 240, "face[v2]*?" + "x" * 180])
def test_engine_name_of_a_long_model_name_fits_the_file_system(tmp_path: Path, stem: str) -> None:
    key = EngineKey("10.3.0.26", "8.7", "fp16", 1, 32, 128, "nvidia-geforce-rtx-4090-laptop-gpu-76sm-16g")
    sha = "1a2b3c4d" + "0" * 56
    name = key.filename(stem, sha)
    # the sidecar's temporary file (.NAME.json.XXXXXXXX.tmp) must fit NAME_MAX too
    assert len(f".{name}.json.12345678.tmp".encode()) <= NAME_MAX
    name.encode("utf-8")  # cut at a character boundary
    assert fnmatch.fnmatchcase(name, engine_cache.engine_pattern(stem, sha, "10.3.0.26", "8.7"))
    # the engine and its sidecar can be written there
    engine = tmp_path / name
    engine.write_bytes(b"plan")
    onnx = pytest.importorskip("onnx")
    from fsrfer_edge.export.onnx_export import read_model_info

    engine_cache.write_sidecar(engine, key, sha, read_model_info(onnx.load(str(DEFAULT_MODEL))))
    assert engine_cache.read_sidecar(engine)["key"] == key


def test_engine_names_of_short_model_names_are_unchanged() -> None:
    key = EngineKey("10.3.0.26", "8.7", "fp16", 1, 32, 128, "orin-16sm-61g")
    expected = "face.fp16.1a2b3c4d.trt10.3.0.26.sm87.orin-16sm-61g.b1-32-128.engine"
    assert key.filename("face", "1a2b3c4d" + "0" * 56) == expected


# ------------------------------------------------------------------------------------------------ Triton repository


def test_triton_repo_source_name_with_a_newline(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from fsrfer_edge.serving import write_triton_repo

    src = _model(tmp_path / "in", "a\nb.onnx")
    out = write_triton_repo(tmp_path / "repo", onnx_path=src)
    text = (out / "fsrfer_onnx" / "config.pbtxt").read_text(encoding="utf-8")
    assert all(line.startswith("#") for line in text.splitlines()[:2])
    assert 'name: "fsrfer_onnx"' in text


def test_triton_repo_with_spaces_and_non_ascii(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from fsrfer_edge.serving import write_triton_repo

    src = _model(tmp_path / "Données" / "モデル", "my model.onnx")
    out = write_triton_repo(tmp_path / "repo dir" / "Données", onnx_path=src, model_name="表情")
    assert (out / "表情_onnx" / "1" / "model.onnx").read_bytes() == DEFAULT_MODEL.read_bytes()
    assert 'name: "表情_onnx"' in (out / "表情_onnx" / "config.pbtxt").read_text(encoding="utf-8")


def test_triton_repo_model_name_too_long_for_a_folder_name(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from fsrfer_edge.serving import write_triton_repo

    with pytest.raises(ConfigError, match="model_name.*bytes"):
        write_triton_repo(tmp_path / "repo", onnx_path=_model(tmp_path), model_name="a" * 251)
    assert not (tmp_path / "repo").exists()


def test_triton_repo_folder_with_a_long_name(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from fsrfer_edge.serving import write_triton_repo

    out = write_triton_repo(tmp_path / ("r" * 250), onnx_path=_model(tmp_path))
    assert (out / "fsrfer_onnx" / "config.pbtxt").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_triton_repo_tilde_is_refused_not_made_in_the_current_folder(home: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from fsrfer_edge.serving import write_triton_repo

    with pytest.raises(ConfigError, match=r"expanduser"):
        write_triton_repo("~/repo", onnx_path=_model(tmp_path))
    assert not Path("~").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc refuses new files on Linux")
def test_triton_repo_in_a_folder_that_refuses_new_files(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from fsrfer_edge.serving import write_triton_repo

    with pytest.raises(ConfigError, match="/proc"):
        write_triton_repo("/proc/fsrfer-repo-test", onnx_path=_model(tmp_path))


# ------------------------------------------------------------------------------------------------ fsrfer-serve


@pytest.mark.parametrize("option", ["log_file", "workspace"])
def test_serve_refuses_whitespace_pytriton_splits_at(tmp_path: Path, option: str) -> None:
    from fsrfer_edge.serving import server

    with pytest.raises(ConfigError, match=f"{option}.*whitespace"):
        server.serve(DEFAULT_MODEL, **{option: tmp_path / "with space" / "x"})  # type: ignore[arg-type]


def test_serve_refuses_a_default_workspace_with_whitespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.serving import server

    monkeypatch.setenv("PYTRITON_HOME", str(tmp_path / "py triton"))
    with pytest.raises(ConfigError, match="PYTRITON_HOME"):
        server.serve(DEFAULT_MODEL)


@pytest.mark.parametrize("option", ["log_file", "workspace"])
def test_serve_refuses_an_unexpanded_tilde(home: Path, option: str) -> None:
    from fsrfer_edge.serving import server

    with pytest.raises(ConfigError, match="expanduser"):
        server.serve(DEFAULT_MODEL, **{option: "~/x"})  # type: ignore[arg-type]
    assert not Path("~").exists()


def test_serve_cli_expands_tilde_in_its_path_options(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.serving import cli

    home = home.with_name("home")  # no space: PyTriton cannot take a log file with one (refused)
    monkeypatch.setenv("HOME", str(home))
    seen: dict[str, object] = {}
    monkeypatch.setattr(cli, "serve", lambda model, **kw: seen.update(model=model, **kw))
    assert cli.main(["--model=~/m.onnx", "--log-file=~/logs/t.log", "--workspace=~/ws"]) == 0
    assert seen["model"] == home / "m.onnx"
    assert seen["log_file"] == home / "logs" / "t.log"
    assert seen["workspace"] == home / "ws"
    assert not Path("~").exists()


# ------------------------------------------------------------------------------------------------ the other CLIs


def test_demo_expands_tilde_in_its_path_options(home: Path) -> None:
    pytest.importorskip("onnxruntime")
    from PIL import Image
    import numpy as np

    from fsrfer_edge import demo

    _model(home / "models")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(home / "in.png")
    demo.main(["~/in.png", "--model=~/models/m.onnx", "--factors", "1", "--out=~/o.png", "--json=~/o.json"])
    assert (home / "o.png").is_file() and (home / "o.json").is_file()
    assert not Path("~").exists()


def test_crowd_expands_tilde_in_its_path_options(home: Path) -> None:
    pytest.importorskip("onnxruntime")
    from PIL import Image
    import numpy as np

    from fsrfer_edge import crowd_cli

    _model(home / "Données")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(home / "in.png")
    assert crowd_cli.main(["~/in.png", "--model=~/Données/m.onnx", "--out=~/c.png", "--json=~/c.json"]) == 0
    assert (home / "c.png").is_file() and (home / "c.json").is_file()
    assert not Path("~").exists()


def test_bench_expands_tilde_in_its_path_options(home: Path) -> None:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import bench

    _model(home / "with space")
    assert bench.main(["--model=~/with space/m.onnx", "--batch-sizes", "1", "--warmup", "0", "--iters", "1",
                       "--overhead-reps", "1", "--json=~/b.json", "-q"]) == 0
    assert (home / "b.json").is_file()
    assert not Path("~").exists()


def test_engines_cli_expands_tilde_in_dir(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fsrfer_edge import engines_cli

    (home / "engines").mkdir()
    assert engines_cli.main(["--dir=~/engines"]) == 0
    assert str(home / "engines") in capsys.readouterr().out



def test_serve_cli_quiet_log_in_a_temporary_folder_with_spaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import tempfile

    from fsrfer_edge.serving import cli

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "t m p"))
    monkeypatch.setattr(cli, "serve", lambda model, **kw: None)
    assert cli.main(["-q"]) == 2
    err = capsys.readouterr().err
    assert "--log-file" in err and "TMPDIR" in err


def test_crowd_video_output_with_a_long_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("cv2")
    import numpy as np
    from _video import count_frames, write_video

    from fsrfer_edge import crowd_cli

    monkeypatch.chdir(tmp_path)
    write_video(tmp_path / "in vidéo.mp4", [np.full((64, 64, 3), 90, np.uint8)] * 3)
    out = tmp_path / ("é" * 123 + ".mp4")  # 250 bytes: a valid name, its temporary file's must be too
    assert crowd_cli.main(["in vidéo.mp4", "--out", str(out), "--max-frames", "2"]) == 0
    assert count_frames(out) == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_server_process_command_line_with_a_leading_dash_and_tilde(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.serving import cli, server

    monkeypatch.chdir(tmp_path)
    (tmp_path / "~").mkdir()
    for model in ("-lead.onnx", "~/m.onnx"):  # a file beginning with "-", a folder literally named "~" here
        proc = server.ServerProcess(model, model_name="-x", python=sys.executable)
        args = cli.build_parser().parse_args(proc.command(tmp_path / "ws")[3:])
        assert args.model == tmp_path / model
        assert args.model_name == "-x"


def test_export_staging_folder_of_a_long_model_name(tmp_path: Path) -> None:
    name = "é" * 125  # 250 bytes: a model file NAME.onnx of it is too long already, but NAME.fp16 ... are not
    stage = engine_cache.make_staging_folder(tmp_path, name)
    assert stage.parent == tmp_path and stage.name.startswith(".é")
    assert [p for p, _ in engine_cache.dead_staging_folders(tmp_path)] == []  # this process's: alive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc refuses new files on Linux")
def test_export_staging_folder_in_a_folder_that_refuses_new_files() -> None:
    from fsrfer_edge.errors import InputError

    with pytest.raises(InputError, match="/proc"):
        engine_cache.make_staging_folder("/proc", "face")


# ------------------------------------------------------------------------------------------------ one place for "~"
def test_every_cli_path_option_expands_tilde_through_one_function(home: Path) -> None:
    """fsrfer-export's, fsrfer-crowd-bench's and the trainer's path options (cli_path, expand_home) expand a leading
    ~ as the other commands' do: --out-dir=~/x made ./~/x."""
    import argparse

    from fsrfer_edge.errors import cli_path, expand_home
    from fsrfer_edge.export.cli import build_parser as export_parser

    assert cli_path("~/x") == home / "x" and expand_home("~/x") == str(home / "x")
    assert expand_home("a/~/x") == "a/~/x" and cli_path("./~/x") == Path("./~/x")  # only a leading one
    with pytest.raises(argparse.ArgumentTypeError, match="empty path"):
        cli_path(" ")
    args = export_parser().parse_args(["m.pt", "--out-dir=~/engines"])
    assert args.out_dir == home / "engines"
    from fsrfer_edge.crowd_bench import build_parser as crowd_bench_parser

    assert crowd_bench_parser().parse_args(["--out=~/b.json"]).out == home / "b.json"
    assert not (Path.cwd() / "~").exists()


def test_write_deepstream_refuses_an_unexpanded_tilde_as_write_triton_repo_does(home: Path) -> None:
    from fsrfer_edge.export.deepstream import write_deepstream

    with pytest.raises(ConfigError, match=r"out_dir='~/ds' starts with '~'.*expanduser"):
        write_deepstream("~/ds", DEFAULT_MODEL)
    assert list(Path.cwd().iterdir()) == []


def test_names_derived_from_a_long_name_fit_a_file_name(tmp_path: Path) -> None:
    """atomic_write's temporary file added 14 bytes to the name: a valid 250-byte output name failed after the work."""
    from fsrfer_edge.fileio import TEMP_NAME_BYTES, short_name, write_json

    assert short_name("é" * 150) == "é" * (TEMP_NAME_BYTES // 2) and short_name("face") == "face"
    out = write_json(tmp_path / ("r" * 245 + ".json"), {"ok": 1})
    assert out.read_text().strip().startswith("{") and [p.name for p in tmp_path.iterdir()] == [out.name]
