"""Copy the installed tensorrt-stubs into .typings/ so mypy can use them (CI and developers).

tensorrt-stubs installs ``tensorrt/__init__.pyi`` without a ``py.typed`` marker, so mypy ignores it,
and its generated stubs contain a few lines that are not valid Python (plugin methods with a parameter
named ``in``; a non-default parameter after defaults). We copy them, mend those lines mechanically and
point mypy's ``mypy_path`` at the copy. Errors *inside* the stubs are silenced in mypy.ini; calls from
our code into TensorRT are checked against them.
"""
from __future__ import annotations

import re
import shutil
import sys
from importlib.util import find_spec
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEST = REPO / ".typings"


def main() -> int:
    spec = find_spec("tensorrt_stubs")
    if spec is None or spec.origin is None:
        print("tensorrt-stubs is not installed: pip install --no-deps tensorrt-stubs", file=sys.stderr)
        return 1
    site = Path(spec.origin).parent.parent
    shutil.rmtree(DEST, ignore_errors=True)
    for pkg in ("tensorrt", "tensorrt_bindings"):
        src = site / pkg
        if not (src / "__init__.pyi").is_file():
            print(f"expected stub package {src} from tensorrt-stubs; not found", file=sys.stderr)
            return 1
        shutil.copytree(src, DEST / pkg, ignore=shutil.ignore_patterns("*.py", "*.so", "__pycache__"))
    for pyi in DEST.rglob("*.pyi"):
        text = pyi.read_text()
        text = re.sub(r"\b(self(?:: \w+)?, )in: ", r"\1in_: ", text)  # `in` is a keyword
        text = re.sub(r"(= None, channel_axis: int)\)", r"\1 = ...)", text)  # non-default after defaults
        pyi.write_text(text)
    print(f"TensorRT stubs ready in {DEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
