"""The README's SDK example runs as written."""
import re
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_sdk_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md has no python example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(line.split()[0] in {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"} for line in lines)


def test_readme_command_table_names_only_real_options():
    """Every --option in the README's command-line table is one its command accepts."""
    import shutil
    import subprocess

    text = README.read_text()
    table = text[text.index("## Command-line tools"):].split("\n\n")[1]
    rows = [r.split("`")[1] for r in table.splitlines() if r.startswith("| `fsrfer")]
    assert len(rows) >= 8
    for cmd in rows:
        prog = cmd.split()[0]
        if shutil.which(prog) is None:
            pytest.skip(f"{prog} is not installed (pip install -e .)")
        usage = subprocess.run([prog, "--help"], capture_output=True, text=True, timeout=120).stdout
        unknown = [f for f in re.findall(r"--[a-z0-9-]+", cmd) if f not in usage]
        assert not unknown, f"README lists {unknown} for {prog}, which its --help does not know"
