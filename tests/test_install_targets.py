"""Install targets (issue 13, defects 3, 5 and 6): what setup.py declares for JetPack 5, JetPack 6 and
desktop GPUs, and that the runtime package needs no Python newer than 3.8 (JetPack 5's Python).

These are static checks: no Jetson is at hand, so the declared requirements are evaluated for each
target's Python with ``packaging`` (the library pip resolves with), and the runtime's source is
checked with vermin (as scripts/test.sh does) and with Python 3.8's grammar.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("packaging")
from packaging.requirements import Requirement  # noqa: E402
from packaging.specifiers import SpecifierSet  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: Marker environments of the targets: JetPack 5 (L4T R35, Python 3.8) and JetPack 6 (L4T R36, 3.10).
JETPACK5 = {"python_version": "3.8", "python_full_version": "3.8.10"}
JETPACK6 = {"python_version": "3.10", "python_full_version": "3.10.12"}
VERMIN = [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())"]


@pytest.fixture(scope="module")
def setup_kwargs() -> dict[str, Any]:
    """The keyword arguments setup.py passes to setuptools.setup (nothing is built)."""
    import setuptools

    captured: dict[str, Any] = {}
    code = compile((REPO / "setup.py").read_text(), str(REPO / "setup.py"), "exec")
    real, cwd = setuptools.setup, os.getcwd()
    setuptools.setup = lambda **kw: captured.update(kw)  # type: ignore[assignment]
    os.chdir(REPO)  # setup.py reads README.md relative to itself
    try:
        exec(code, {"__name__": "__main__", "__file__": str(REPO / "setup.py")})
    finally:
        setuptools.setup = real  # type: ignore[assignment]
        os.chdir(cwd)
    return captured


def _requirements(kw: dict[str, Any], extra: str, env: dict[str, str]) -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in kw["install_requires"] + kw["extras_require"][extra]]
    return {r.name: r for r in reqs if r.marker is None or r.marker.evaluate(env)}


def test_3_python_38_is_allowed(setup_kwargs: dict[str, Any]) -> None:
    assert SpecifierSet(setup_kwargs["python_requires"]).contains("3.8.10")


def test_3_runtime_package_needs_no_python_newer_than_38() -> None:
    for path in sorted((REPO / "fsrfer_edge").rglob("*.py")):
        src = path.read_text()
        ast.parse(src, str(path), feature_version=(3, 8))  # no match statements, parenthesised with-items...
        if src.strip():
            assert "from __future__ import annotations" in src, f"{path}: annotations would be evaluated on 3.8"
    if subprocess.run(VERMIN + ["--version"], capture_output=True, check=False).returncode != 0:
        pytest.skip("vermin is not installed (it is in the dev extra: pip install vermin)")
    out = subprocess.run(VERMIN + ["-t=3.8-", "--no-tips", "--violations", "fsrfer_edge"], cwd=REPO,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr



#: Built-in types that only Python 3.9 (PEP 585) lets a program subscript at run time.
PEP585 = {"tuple", "list", "dict", "set", "frozenset", "type"}
#: Names that only Python 3.10 (PEP 604) lets a program join with ``|`` at run time.
PEP604 = PEP585 | {"int", "float", "str", "bytes", "bool", "object"}


def runtime_type_syntax(src: str) -> list[int]:
    """Lines of ``src`` that evaluate ``tuple[...]``-style generics or ``int | None``-style unions at run time
    (outside annotations, which ``from __future__ import annotations`` leaves unevaluated): Python 3.8 raises
    TypeError there when the module is imported, and neither its grammar nor vermin notices a module-level
    type alias such as ``Item = tuple[str, int]``."""
    tree = ast.parse(src)
    in_annotation: set[int] = set()
    for node in ast.walk(tree):
        notes = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs + [node.args.vararg, node.args.kwarg]
            notes = [a.annotation for a in args if a is not None] + [node.returns]
        elif isinstance(node, ast.AnnAssign):
            notes = [node.annotation]
        for note in notes:
            if note is not None:
                in_annotation.update(id(n) for n in ast.walk(note))

    def typeish(n: ast.AST) -> bool:
        return ((isinstance(n, ast.Name) and n.id in PEP604) or (isinstance(n, ast.Constant) and n.value is None)
                or (isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id in PEP585))

    bad = []
    for node in ast.walk(tree):
        if id(node) in in_annotation:
            continue
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in PEP585:
            bad.append(node.lineno)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and (typeish(node.left) or typeish(node.right)):
            bad.append(node.lineno)
    return bad


def test_3_runtime_package_evaluates_no_type_syntax_newer_than_38() -> None:
    assert runtime_type_syntax("Item = tuple[str, int]\nx: tuple[int, ...] = ()\ndef f(a: list[int]) -> dict[str, int]: ...\n"
                               "y = isinstance(1, int | None)\nz = 3 | 4\n") == [1, 4]
    found = {str(p.relative_to(REPO)): lines for p in sorted((REPO / "fsrfer_edge").rglob("*.py"))
             if (lines := runtime_type_syntax(p.read_text()))}
    assert not found, f"Python 3.8 cannot import these (line numbers): {found}; use typing.Tuple/Optional/Union"

def test_5_jetson_extra_can_build_engines_on_the_device(setup_kwargs: dict[str, Any]) -> None:
    for env in (JETPACK5, JETPACK6):
        reqs = _requirements(setup_kwargs, "jetson", env)
        assert "onnx" in reqs, "building an engine on the device reads the model with onnx"
        assert "onnxruntime" in reqs  # the FP16 converter for first-use builds, and the fallback backend
    assert "export/trt_ops/*.json" in setup_kwargs["package_data"]["fsrfer_edge"]


def test_6_cuda_python_is_pinned_to_the_drivers_cuda_major(setup_kwargs: dict[str, Any]) -> None:
    # JetPack 6 and desktop CUDA 12 drivers: cuda-python 12.x, never 13.x (which needs a CUDA 13 driver).
    for extra in ("tensorrt", "jetson"):
        spec = _requirements(setup_kwargs, extra, JETPACK6)["cuda-python"].specifier
        assert spec.contains("12.9.10") and not spec.contains("13.0.0"), (extra, spec)
    # JetPack 5 (CUDA 11.4, Python 3.8): no cuda-python wheel installs there; pycuda builds against it.
    jp5 = _requirements(setup_kwargs, "jetson", JETPACK5)
    assert "cuda-python" not in jp5 and "pycuda" in jp5
    spec13 = Requirement(setup_kwargs["extras_require"]["cuda13"][0]).specifier
    assert spec13.contains("13.4.4") and not spec13.contains("14.0.0")
