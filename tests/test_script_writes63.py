"""The research and benchmark scripts write their result, report, table, plot and model files atomically
(``fsrfer_edge.fileio``): a script killed mid-write leaves no half-written file in results/, README.md or the
package. Direct writes are allowed only into a temporary folder or in the short list below, each with its reason."""
from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
from _scripts import REPO, load_script

FOLDERS = ("scripts", "benchmarks")

#: callee -> index of the argument naming the file written (None: the receiver, ``path.write_text(...)``)
MODULE_WRITERS = {
    "json.dump": 1, "pickle.dump": 1, "np.save": 0, "np.savez": 0, "np.savez_compressed": 0, "np.savetxt": 0,
    "torch.save": 1, "onnx.save": 1, "onnx.save_model": 1, "csv.writer": 0,
    "shutil.copy": 1, "shutil.copy2": 1, "shutil.copyfile": 1, "shutil.copytree": 1, "shutil.move": 1,
}
METHOD_WRITERS = {".write_text": None, ".write_bytes": None, ".savefig": 0, ".to_csv": 0, ".tofile": 0}
ATOMIC = {"atomic_write", "atomic_write_bytes", "write_json"}

#: (file, enclosing function, writer) -> why its direct write is not a result file
ALLOWED = {
    ("scripts/device_data.py", "pack", ".write_bytes"): "own write-then-rename: a .part file, then os.replace",
    ("scripts/device_data.py", "pack", "np.savez_compressed"): "own write-then-rename: a .part file, then os.replace",
    ("scripts/device_data.py", "unpack", "np.savez"): "own write-then-rename: a .part file, then os.replace",
    ("scripts/edge_budget.py", "make_int8", "np.savez"): "scratch calibration faces beside dst, which every "
                                                         "caller puts in a temporary folder; read back at once",
    ("scripts/int8_avx2.py", "worker", "np.savez"): "worker's logits into run_worker's temporary file, read back",
    ("scripts/int8_avx2.py", "make_inputs", "np.savez"): "scratch inputs in the caller's temporary folder",
    ("scripts/int8_sensitivity.py", "faces_and_calibration", "np.savez"): "scratch in the caller's temporary folder",
    ("scripts/prepare_trt_stubs.py", "main", ".write_text"): "developer stubs in .typings/, removed and rebuilt "
                                                             "whole on every run; not a result",
    ("scripts/prepare_trt_stubs.py", "main", "shutil.copytree"): "as above",
    ("benchmarks/stage2_step.py", "main", ".write_text"): "--worker's answer into run_worker's temporary file, "
                                                          "read back at once",
    ("benchmarks/container_threads.py", "child", ".write_text"): "a PID into a cgroup's cgroup.procs (a kernel "
                                                                 "control file, not a result)",
    ("benchmarks/container_threads.py", "make_group", ".write_text"): "a cgroup's CPU quota into its kernel "
                                                                      "control files, not a result",
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def _writer(call: ast.Call) -> Optional[tuple[str, Optional[ast.AST]]]:
    """(writer's name, the expression naming the file it writes) of a call that writes a file, else None."""
    func = call.func
    name = _dotted(func).replace("numpy.", "np.")
    if name in MODULE_WRITERS:
        i = MODULE_WRITERS[name]
        return name, call.args[i] if len(call.args) > i else None
    if isinstance(func, ast.Attribute) and f".{func.attr}" in METHOD_WRITERS:
        j = METHOD_WRITERS[f".{func.attr}"]
        return f".{func.attr}", func.value if j is None else (call.args[j] if len(call.args) > j else None)
    is_open = isinstance(func, ast.Name) and func.id == "open"
    receiver = func.value if isinstance(func, ast.Attribute) else None  # path.open("w")
    if is_open or (isinstance(func, ast.Attribute) and func.attr == "open"):
        at = 1 if is_open else 0
        mode = next((k.value for k in call.keywords if k.arg == "mode"), call.args[at] if len(call.args) > at else None)
        if mode is None or (not is_open and not isinstance(mode, ast.Constant)):  # Image.open(buf): not a mode
            return None
        if not isinstance(mode, ast.Constant) or not isinstance(mode.value, str) or set(mode.value) & set("wax+"):
            return "open(w)", (call.args[0] if call.args else None) if is_open else receiver
    return None


def _names(node: Optional[ast.AST]) -> set[str]:
    return set() if node is None else {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _own_nodes(fn: ast.AST) -> Iterator[ast.AST]:
    """The nodes of ``fn`` (a function or module) outside the functions defined in it."""
    for child in ast.iter_child_nodes(fn):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield child
            yield from _own_nodes(child)


def _temporary_names(fn: ast.AST) -> set[str]:
    """Names in ``fn`` bound to a temporary folder (``with TemporaryDirectory() as tmp``, ``mkdtemp()``) or to an
    expression made from one (``tmp = Path(tmp_name)``, ``info = tmp / "x"``)."""
    names: set[str] = set()
    for node in _own_nodes(fn):
        if isinstance(node, ast.With):
            for item in node.items:
                if "TemporaryDirectory" in ast.unparse(item.context_expr) and item.optional_vars is not None:
                    names |= _names(item.optional_vars)
        if isinstance(node, ast.Assign) and "mkdtemp(" in ast.unparse(node.value):
            names |= {n for t in node.targets for n in _names(t)}
    assigns = [n for n in _own_nodes(fn) if isinstance(n, (ast.Assign, ast.AnnAssign)) and n.value is not None]
    grown = True
    while grown:
        grown = False
        for a in assigns:
            if _names(a.value) & names:
                targets = a.targets if isinstance(a, ast.Assign) else [a.target]
                new = {n for t in targets for n in _names(t)} - names
                if new:
                    names |= new
                    grown = True
    return names


def direct_writes(path: Path) -> Iterator[tuple[str, int, str]]:
    """(enclosing function, line, writer) of each direct file write in ``path`` outside a temporary folder and
    outside what is handed to an atomic writer (``atomic_write(p, lambda f: fig.savefig(f, ...))``)."""
    tree = ast.parse(path.read_text(), str(path))

    def visit(node: ast.AST, fn: str, temporary: set[str], atomic: bool) -> Iterator[tuple[str, int, str]]:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            fn, temporary = node.name, temporary | _temporary_names(node)
        if isinstance(node, ast.Call):
            found = _writer(node)
            if found is not None and not atomic and not (_names(found[1]) & temporary):
                yield fn, node.lineno, found[0]
            if _dotted(node.func).split(".")[-1] in ATOMIC:
                atomic = True
        for child in ast.iter_child_nodes(node):
            yield from visit(child, fn, temporary, atomic)

    yield from visit(tree, "<module>", _temporary_names(tree), False)


def test_scripts_write_their_files_atomically_or_into_a_temporary_folder() -> None:
    found: dict[tuple[str, str, str], list[int]] = {}
    for folder in FOLDERS:
        for path in sorted((REPO / folder).glob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for fn, line, writer in direct_writes(path):
                found.setdefault((rel, fn, writer), []).append(line)
    direct = {f"{rel}:{lines[0]} {fn}: {writer}" for (rel, fn, writer), lines in found.items()
              if (rel, fn, writer) not in ALLOWED}
    assert not direct, ("direct writes of result files (a killed run leaves them half-written); write them with "
                        "fsrfer_edge.fileio.atomic_write/write_json, or allow-list them with a reason: "
                        f"{sorted(direct)}")
    stale = set(ALLOWED) - set(found)
    assert not stale, f"allow-list entries that match no write any more; remove them: {sorted(stale)}"


def test_the_scan_finds_direct_writes(tmp_path: Path) -> None:
    src = tmp_path / "s.py"
    src.write_text(
        "import json, tempfile\n"
        "def bad(p, doc, fig):\n"
        "    with open(p, 'w') as f:\n        json.dump(doc, f)\n"
        "    p.write_text('x')\n    fig.savefig(p, dpi=1)\n"
        "def good(p, doc, fig):\n"
        "    atomic_write(p, lambda f: fig.savefig(f, format='png'))\n"
        "    with tempfile.TemporaryDirectory() as t:\n        q = Path(t) / 'a'\n        q.write_text('x')\n"
        "    with open(p) as f:\n        f.read()\n"
        "def other(t, a):\n    np.savez(t, a=a)\n")  # t: a temporary folder in good only
    found = sorted(w for _, _, w in direct_writes(src))
    assert found == [".savefig", ".write_text", "json.dump", "np.savez", "open(w)"]
    assert {fn for fn, _, _ in direct_writes(src)} == {"bad", "other"}


def test_plot_that_fails_mid_write_leaves_the_earlier_plot_and_no_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    mod = load_script("scripts/plot_default_model.py", "plot_default_model_w63")
    monkeypatch.setattr(mod, "FOLDER", tmp_path)
    monkeypatch.setattr(mod, "REPO", tmp_path)
    (tmp_path / "test.json").write_text(json.dumps({"factors": {"1": {"accuracy": 0.5}, "2": {"accuracy": 0.4}}}))
    assert mod.main() == 0
    png = (tmp_path / "test_protocols.png").read_bytes()
    assert png.startswith(b"\x89PNG")

    def killed(self: Any, fname: Any, *args: Any, **kwargs: Any) -> None:  # part of the file written, then stopped
        if hasattr(fname, "write"):
            fname.write(b"\x89PNG half")
        else:
            Path(fname).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", killed)
    with pytest.raises(KeyboardInterrupt):
        mod.main()
    assert (tmp_path / "test_protocols.png").read_bytes() == png
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.json", "test_protocols.png"]


def test_trt_op_tables_keep_their_formatting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = load_script("scripts/trt_op_tables.py", "trt_op_tables_w63")
    # the committed tables are in the script's own format (indent 1, sorted keys, a final newline)
    for committed in sorted(mod.OUT.glob("*.json")):
        text = committed.read_text()
        assert json.dumps(json.loads(text), indent=1, sort_keys=True) + "\n" == text

    def git(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        out = "| Operator | Supported |\n|---|---|\n| Abs | Y | FP32, FP16 | |\n" if cmd[3] == "show" else "abc123\n"
        return subprocess.CompletedProcess(cmd, 0, out, "")

    monkeypatch.setattr(mod, "OUT", tmp_path / "trt_ops")
    monkeypatch.setattr(mod, "REPO", tmp_path)
    monkeypatch.setattr(mod.subprocess, "run", git)
    assert mod.main(["unused"]) == 0
    for name in mod.TABLES:
        text = (tmp_path / "trt_ops" / f"{name}.json").read_text()
        doc = json.loads(text)
        assert doc["operators"] == {"Abs": {"supported": True, "types": ["FP32", "FP16"], "restrictions": ""}}
        assert text == json.dumps(doc, indent=1, sort_keys=True) + "\n"
