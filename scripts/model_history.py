"""A checkpoint's training history as a result file, so that figures read from it can be cited.

    python scripts/model_history.py                      # the shipped default.pt -> results/default_model/history.json
    python scripts/model_history.py --checkpoint RUN/models/fsrfer.pt --out FILE

Writes the checkpoint's ``meta.history`` (per epoch: each weighted loss term, the re-weighting's mean
``w_mean``, the val score, seconds), ``meta.pretrain_history`` and ``meta.losses`` (the weights), with each
term's share of G's loss at every GAN epoch (``shares``: term / ``g_loss``), the checkpoint's sha256 and
this command. Nothing is computed that the checkpoint does not hold.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
#: The loss terms of a GAN epoch in trainer.train's history (``g_loss`` is their sum).
TERMS = ("rec", "kd", "head", "adv", "ce", "at", "nce")


def history_doc(meta: dict[str, Any]) -> dict[str, Any]:
    """The result file's body from a checkpoint's ``meta``.

    Raises:
        SystemExit: the checkpoint has no training history.
    """
    history = meta.get("history") or []
    if not history:
        raise SystemExit("error: the checkpoint has no meta.history; expected a trainer checkpoint of a finished run")
    shares = []
    for row in history:
        g = row.get("g_loss")
        shares.append({"epoch": row.get("epoch"),
                       **({t: row[t] / g for t in TERMS if t in row} if g else {})})
    return {"name": meta.get("name"), "config": (meta.get("config") or {}).get("name"),
            "losses": meta.get("losses"), "history": history,
            "pretrain_history": meta.get("pretrain_history") or [], "shares_of_g_loss": shares}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=REPO / "fsrfer_edge" / "models" / "default.pt")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "default_model" / "history.json")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from fsrfer_edge.fileio import sha256_file, write_json
    from trainer import checkpoint

    ckpt = checkpoint.load(args.checkpoint, kind="model")
    try:
        doc = history_doc(ckpt.get("meta", {}))
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    path = args.checkpoint.resolve()
    doc.update(checkpoint=str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
               sha256=sha256_file(path),
               command="python " + shlex.join(["scripts/model_history.py", *(argv if argv is not None else sys.argv[1:])]))
    write_json(args.out, doc)
    print(f"wrote {args.out}: {len(doc['history'])} epochs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
