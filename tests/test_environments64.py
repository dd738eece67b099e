"""Unusual runtime environments that containers and shared servers give: no home folder (HOME unset and a user id
with no passwd entry, as OpenShift's random UIDs), and a stdout that cannot encode every character (a C locale
without UTF-8 mode, PYTHONIOENCODING=utf-8 with file names that are not UTF-8). Each case runs in a child process
with that environment, as a user's container would run the command."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# Run ``module:function`` as its console script would, in a child with no home folder: HOME unset and
# pwd.getpwuid failing as for a user id without a passwd entry (Path.home() raises RuntimeError there).
_NO_HOME = textwrap.dedent("""
    import os, pwd, sys
    def _no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")
    pwd.getpwuid = _no_entry
    os.environ.pop("HOME", None)
""")

_RUN_MAIN = textwrap.dedent("""
    from importlib import import_module
    target, *args = sys.argv[1:]
    module, function = target.split(":")
    sys.argv = [module] + args
    sys.exit(getattr(import_module(module), function)())
""")


def _env(**changes: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _run(prelude: str, target: str, *args: str | bytes, cwd: Path, **env: str | None
         ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", prelude + _RUN_MAIN, target, *args], cwd=cwd, env=_env(**env),
                          capture_output=True, timeout=60)


def _no_traceback(proc: subprocess.CompletedProcess[bytes]) -> None:
    assert b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")


def _png(path: Path) -> Path:
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)).save(path)
    return path


# --- no home folder ---------------------------------------------------------------------------------------------

def test_engines_list_without_home_names_the_variable(tmp_path: Path) -> None:
    """fsrfer-engines with no --dir, where there is no home folder for the default cache: a one-line error naming
    FSRFER_ENGINE_DIR and --dir, not Path.home()'s RuntimeError traceback."""
    proc = _run(_NO_HOME, "fsrfer_edge.engines_cli:main", cwd=tmp_path, FSRFER_ENGINE_DIR=None, HOME=None)
    _no_traceback(proc)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert err.startswith("fsrfer-engines: error:") and len(err.strip().splitlines()) == 1, err
    assert "FSRFER_ENGINE_DIR" in err and "--dir" in err and "HOME" in err


def test_engines_list_without_home_with_the_variable_works(tmp_path: Path) -> None:
    """The way out the error names works: FSRFER_ENGINE_DIR set, no home folder needed."""
    cache = tmp_path / "engines"
    cache.mkdir()
    proc = _run(_NO_HOME, "fsrfer_edge.engines_cli:main", cwd=tmp_path, FSRFER_ENGINE_DIR=str(cache), HOME=None)
    _no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().startswith(f"{cache}: 0 engine file(s)")


def test_cpu_inference_and_crowd_need_no_home(tmp_path: Path) -> None:
    """Recognizer() on the CPU and fsrfer-crowd on a small image run with no home folder at all."""
    script = _NO_HOME + textwrap.dedent("""
        import numpy as np
        from fsrfer_edge import Recognizer
        with Recognizer() as rec:
            print(rec.predict(np.zeros((2, 48, 48), np.uint8))[0].label)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env(HOME=None), capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    out = tmp_path / "crowd.png"
    proc = _run(_NO_HOME, "fsrfer_edge.crowd_cli:main", str(_png(tmp_path / "in.png")), "--out", str(out),
                cwd=tmp_path, HOME=None)
    _no_traceback(proc)
    assert proc.returncode == 0 and out.is_file()


def test_default_cache_dir_without_home_is_a_config_error(tmp_path: Path) -> None:
    script = _NO_HOME + textwrap.dedent("""
        from fsrfer_edge import engine_cache
        from fsrfer_edge.errors import FsrferError
        for value in (None, "~/engines"):
            if value is None:
                os.environ.pop("FSRFER_ENGINE_DIR", None)
            else:
                os.environ["FSRFER_ENGINE_DIR"] = value
            try:
                got = engine_cache.default_cache_dir()
            except FsrferError as exc:
                assert "FSRFER_ENGINE_DIR" in str(exc), exc
            else:
                raise SystemExit(f"no error for FSRFER_ENGINE_DIR={value!r}: {got}")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env(HOME=None), capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace") + proc.stdout.decode(errors="replace")


# --- a stdout that cannot encode every character ------------------------------------------------------------------

def test_crowd_prints_a_file_name_that_is_not_utf8_under_pythonioencoding(tmp_path: Path) -> None:
    """PYTHONIOENCODING=utf-8 (a common Dockerfile line) makes stdout strict; a file name that is not UTF-8 (a
    Latin-1 é from an old share) reaches Python as a surrogate escape: "wrote NAME" must not end a finished run with
    a UnicodeEncodeError traceback and status 1 (the output was written). The name is printed as its own bytes."""
    src = _png(tmp_path / "in.png")
    out = os.fsencode(tmp_path) + b"/out\xe9.png"
    proc = _run("import sys\n", "fsrfer_edge.crowd_cli:main", str(src), "--out", out, cwd=tmp_path,
                PYTHONIOENCODING="utf-8")
    _no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    assert os.path.isfile(out)
    assert b"wrote " + out in proc.stdout


@pytest.mark.needs("onnx")
@pytest.mark.skipif(not hasattr(os, "fsencode"), reason="POSIX file names")
def test_demo_prints_non_ascii_labels_to_an_ascii_stdout(tmp_path: Path) -> None:
    """LC_ALL=C without UTF-8 mode gives an ASCII stdout: a model whose class names are not ASCII must not end
    fsrfer-demo with a UnicodeEncodeError traceback half-way (no PNG written); the names are escaped."""
    pytest.importorskip("skimage", reason="fsrfer-demo's sample image")
    from _onnx_models import make_tiny_onnx
    import onnx

    from fsrfer_edge.metadata import METADATA_KEY, ModelInfo
    from fsrfer_edge.preprocessing import Preprocessing

    model = make_tiny_onnx(tmp_path / "umlaut.onnx", metadata=False)
    info = ModelInfo(preprocessing=Preprocessing(classes=tuple(f"\u00e9{i}" for i in range(7))))
    proto = onnx.load(str(model))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, info.to_json()
    onnx.save(proto, str(model))
    out = tmp_path / "demo.png"
    proc = _run("import sys\n", "fsrfer_edge.demo:main", "--model", str(model), "--out", str(out), cwd=tmp_path,
                LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONIOENCODING=None, PYTHONCOERCECLOCALE="0")
    _no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    assert b"\\xe9" in proc.stdout  # the label, escaped


# --- the current folder deleted -----------------------------------------------------------------------------------

_CWD_GONE = textwrap.dedent("""
    import os, sys, tempfile
    _gone = tempfile.mkdtemp(dir=os.environ["C64_TMP"])
    os.chdir(_gone)
    os.rmdir(_gone)
""")


def test_relative_output_in_a_deleted_current_folder_says_so(tmp_path: Path) -> None:
    """A command started in a folder that was removed since (a build folder cleaned under a shell): a relative
    --out names no folder; the error says that, not that "the folder . is not writable"."""
    src = _png(tmp_path / "in.png")
    proc = _run(_CWD_GONE, "fsrfer_edge.crowd_cli:main", str(src), "--out", "rel.png", cwd=tmp_path,
                C64_TMP=str(tmp_path))
    _no_traceback(proc)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "current folder" in err and "no longer exists" in err and "absolute path" in err, err
    # an absolute --out still works there
    out = tmp_path / "abs.png"
    proc = _run(_CWD_GONE, "fsrfer_edge.crowd_cli:main", str(src), "--out", str(out), cwd=tmp_path,
                C64_TMP=str(tmp_path))
    assert proc.returncode == 0 and out.is_file(), proc.stderr
