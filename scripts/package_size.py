"""The shipped checkpoint's size in each form ``trainer.checkpoint.save`` can write, beside the graph's.

    python scripts/package_size.py --json results/package_size.json

Writes, for ``fsrfer_edge/models/default.pt`` (or ``--checkpoint``): the checkpoint stored as torch writes
it, deflated, and deflated after the byte planes (``compress=True``, the shipped form); the ONNX graph's
size; each total against issue 12's 30 MB package budget (30 million bytes). Each form is loaded back and
checked bit for bit against the checkpoint, so a size here is of a form that restores the same weights.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "fsrfer_edge" / "models"
sys.path.insert(0, str(REPO / "scripts"))
from ship_default import LIMIT_BYTES as BUDGET_BYTES  # noqa: E402


def measure(ckpt_path: Path, onnx_path: Path) -> dict[str, Any]:
    import torch

    from trainer import checkpoint

    ckpt = checkpoint.load(ckpt_path, kind="model")
    payload = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    forms = {"stored": lambda p: checkpoint.save(p, payload),
             "deflated": lambda p: checkpoint.save(p, payload, compress=True, byte_planes=False),
             "byte_planes_deflated": lambda p: checkpoint.save(p, payload, compress=True)}
    graph = onnx_path.stat().st_size
    out: dict[str, Any] = {"checkpoint": ckpt_path.name, "graph": onnx_path.name, "graph_bytes": graph,
                           "budget_bytes": BUDGET_BYTES, "forms": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, write in forms.items():
            p = Path(tmp) / f"{name}.pt"
            write(p)
            back = checkpoint.load(p, kind="model")["state_dict"]
            same = all(torch.equal(v, back[k]) and v.dtype == back[k].dtype for k, v in ckpt["state_dict"].items())
            size = p.stat().st_size
            out["forms"][name] = {"checkpoint_bytes": size, "package_bytes": size + graph,
                                  "within_budget": size + graph <= BUDGET_BYTES, "restores_bit_for_bit": same}
    out["shipped_checkpoint_bytes"] = ckpt_path.stat().st_size
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=MODELS / "default.pt")
    ap.add_argument("--onnx", type=Path, default=MODELS / "default.onnx")
    ap.add_argument("--json", type=Path, help="write the sizes here")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from fsrfer_edge.fileio import write_json

    doc = measure(args.checkpoint, args.onnx)
    doc["command"] = "python scripts/package_size.py" + (f" --json {args.json}" if args.json else "")
    for name, f in doc["forms"].items():
        print(f"{name:22s} checkpoint {f['checkpoint_bytes'] / 1e6:6.2f} MB  package {f['package_bytes'] / 1e6:6.2f} MB"
              f"  {'within' if f['within_budget'] else 'over'} {BUDGET_BYTES / 1e6:g} MB")
    if args.json:
        write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
