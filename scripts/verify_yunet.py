"""Check the shipped YuNet-n detector against its recorded origin, or install a downloaded copy.

    python scripts/verify_yunet.py                      # the shipped fsrfer_edge/models/yunet_n.onnx
    python scripts/verify_yunet.py --install yunet_n_dynamic.onnx   # check a download, then copy it in place

The file is ``onnx/yunet_n_dynamic.onnx`` of github.com/ShiqiYu/libfacedetection.train at commit
0047ac24afb1a50a0c6105001c89d1b5b805dbf1 (download it from
https://github.com/ShiqiYu/libfacedetection.train/raw/0047ac24afb1a50a0c6105001c89d1b5b805dbf1/onnx/yunet_n_dynamic.onnx).
Checked: the sha256 recorded in ``fsrfer_edge/models/YUNET_LICENSE.md``, and that ONNX Runtime loads it with
YuNet's input and outputs and runs it on a 64x96 input. Exit status 0 when it passes, 2 when not.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from fsrfer_edge.detection.yunet import (
    DEFAULT_YUNET,
    OUTPUTS,
    YUNET_SHA256,
    YuNetDetector,
)
from fsrfer_edge.errors import FsrferError
from fsrfer_edge.fileio import atomic_write, sha256_file

SOURCE = ("https://github.com/ShiqiYu/libfacedetection.train/raw/0047ac24afb1a50a0c6105001c89d1b5b805dbf1/"
          "onnx/yunet_n_dynamic.onnx")


def check(path: Path) -> list[str]:
    """Problems with ``path`` as the shipped YuNet-n (empty: none)."""
    if not path.is_file():
        return [f"{path} does not exist; download it from {SOURCE}"]
    digest = sha256_file(path)
    problems = [] if digest == YUNET_SHA256 else [f"{path}: sha256 {digest}, expected {YUNET_SHA256} ({SOURCE})"]
    try:
        det = YuNetDetector(path, threads=1)
        try:
            found = det._network(np.zeros((1, 64, 96, 3), np.uint8))
        finally:
            det.close()
        if len(found) != 1:
            problems.append(f"{path}: one input image gave {len(found)} results")
    except FsrferError as exc:
        problems.append(str(exc))
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--install", type=Path, default=None, help="a downloaded yunet_n_dynamic.onnx to check and "
                    f"copy to {DEFAULT_YUNET}")
    args = ap.parse_args(argv)
    path = args.install if args.install is not None else DEFAULT_YUNET
    problems = check(path)
    for p in problems:
        print(f"verify_yunet: {p}", file=sys.stderr)
    if problems:
        return 2
    if args.install is not None and args.install.resolve() != DEFAULT_YUNET.resolve():
        data = args.install.read_bytes()
        atomic_write(DEFAULT_YUNET, lambda f: f.write(data))
        print(f"installed {args.install} as {DEFAULT_YUNET}")
    print(f"{path}: sha256 {YUNET_SHA256}, outputs {', '.join(OUTPUTS)}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
