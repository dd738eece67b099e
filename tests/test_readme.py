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
