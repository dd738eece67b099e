"""A regular install (``pip install .``, a wheel) carries the whole package, and a user's type checker sees its types.

Every other test runs on the editable install, which reads the checkout itself: a file that setup.py does not
ship (a new sub-package, a data file outside ``package_data``) would only fail for users. Here the wheel is built
from the tracked files alone (in a copy, so the checkout gets no build/ folder) and compared with them. The
package is typed (mypy-clean); without ``py.typed`` (PEP 561) a user's mypy or pyright read every fsrfer_edge name
as Any, so a user script is checked against the unpacked wheel and its revealed types are read.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fsrfer_edge", "trainer")


def _tracked(*paths: str) -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs the git checkout to list the tracked files")
    out = subprocess.run(["git", "ls-files", "--", *paths], cwd=REPO, capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in _tracked("setup.py", "README.md", *PACKAGES):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation builds with this environment's setuptools: bdist_wheel is in setuptools from 70.1,
    # before that in the wheel package (a venv made by python -m venv on Python <= 3.11 has neither).
    if importlib.util.find_spec("setuptools.command.bdist_wheel") is None and importlib.util.find_spec("wheel") is None:
        pytest.skip("building the wheel needs setuptools >= 70.1 or the wheel package: pip install 'setuptools>=70.1'")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", str(src), "-w", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout}\n{done.stderr}"
    (found,) = out.glob("fsrfer_edge-*.whl")
    return found


def test_the_wheel_holds_every_tracked_file_of_the_packages(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in _tracked(*PACKAGES) if name not in names]
    assert not missing, f"setup.py does not ship these tracked files: {missing}"
    assert "fsrfer_edge/py.typed" in names


def test_a_users_type_checker_sees_the_sdks_types(wheel: Path, tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    user = tmp_path / "user.py"
    user.write_text("import numpy as np\n"
                    "from fsrfer_edge import Recognizer\n"
                    "r = Recognizer()\n"
                    "reveal_type(r.predict(np.zeros((2, 12, 12), np.uint8)))\n")
    # Run from tmp_path with the unpacked wheel on the path, as site-packages is for a user: mypy follows an
    # installed package there only where it carries py.typed.
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--strict", "--no-error-summary",
                           user.name], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert 'Revealed type is "builtins.list[fsrfer_edge.recognizer.Prediction]"' in done.stdout \
        or 'Revealed type is "list[fsrfer_edge.recognizer.Prediction]"' in done.stdout, done.stdout + done.stderr
    assert "error" not in done.stdout, done.stdout
