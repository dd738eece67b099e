"""Regenerate fsrfer_edge/export/trt_ops/*.json from onnx-tensorrt's operator tables (docs/operators.md).

Usage: python scripts/trt_op_tables.py ONNX_TENSORRT_GIT_DIR

The git directory is a clone (or bare mirror) of https://github.com/onnx/onnx-tensorrt; each table is
read with ``git show REF:docs/operators.md`` at the release branch named below, and the JSON records
the repository, the ref, its commit and the path, so anyone can re-check a table against its source.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "fsrfer_edge" / "export" / "trt_ops"
#: table name -> (onnx-tensorrt release branch, TensorRT versions it describes, opset range).
#: 8.5-GA says "TensorRT 8.5 supports operators up to Opset 17"; 10.1-GA says "opset 9 to opset 20".
TABLES = {
    "tensorrt-8.5": ("release/8.5-GA", "8.5 (JetPack 5)", (1, 17)),
    "tensorrt-10.1": ("release/10.1-GA", "10.x (JetPack 6 ships 10.3; 10.1 is the newest table published)", (9, 20)),
}
#: Type names the tables misspell, as the parser's types are read (upstream typos, kept out of the JSON): 10.1-GA's
#: ConstantOfShape row says "INF64" for INT64 (release/10.1-GA docs/operators.md).
TYPOS = {"INF64": "INT64"}
ROW = re.compile(r"^\|\s*([A-Za-z0-9_]+)\s*\|\s*(Y|N)[^|]*\|?\s*([^|]*)\|?\s*(.*?)\s*\|?\s*$")


def parse(markdown: str) -> dict[str, dict[str, object]]:
    ops: dict[str, dict[str, object]] = {}
    for line in markdown.splitlines():
        m = ROW.match(line.strip())
        if not m or m.group(1) in ("Operator",):
            continue
        name, supported, types, restrictions = m.groups()
        ops[name] = {"supported": supported == "Y",
                     "types": [TYPOS.get(t.strip(), t.strip()) for t in types.split(",") if t.strip()],
                     "restrictions": restrictions.strip(" |")}
    return ops


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    from fsrfer_edge.fileio import atomic_write

    git = argv[0]
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (ref, versions, (lo, hi)) in TABLES.items():
        text = subprocess.run(["git", "-C", git, "show", f"{ref}:docs/operators.md"], check=True,
                              capture_output=True, text=True).stdout
        commit = subprocess.run(["git", "-C", git, "rev-parse", ref], check=True, capture_output=True,
                                text=True).stdout.strip()
        doc = {"source": {"repository": "https://github.com/onnx/onnx-tensorrt", "ref": ref, "commit": commit,
                          "path": "docs/operators.md"},
               "tensorrt": versions, "opset": {"min": lo, "max": hi}, "operators": parse(text)}
        path = OUT / f"{name}.json"
        body = json.dumps(doc, indent=1, sort_keys=True) + "\n"  # the committed tables: indent 1, not write_json's 2
        atomic_write(path, lambda f: f.write(body.encode()))
        print(f"{path.relative_to(REPO)}: {len(doc['operators'])} operators from {ref} ({commit[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
