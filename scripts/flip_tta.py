"""Would a left-right flip at test time help? Accuracy per factor of a checkpoint's FSR-FER model and of
its frozen HR model, each as is and with the flip average (softmax of the face and of its mirror image,
averaged), on one split, protocol (a) (down-sample, resize back to 48 px).

Issue 12 admits a test-time trick only folded into the exported graph with its cost measured. Folded in,
the flip doubles the batch the network sees, so it costs about twice the compute; this script measures
what it would buy before anyone pays for it.

    python scripts/flip_tta.py --json results/ferplus/flip_tta_val.json
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from fsrfer_edge.preprocessing import softmax  # noqa: E402  (the SDK's own, as Recognizer uses it)

LogitsFn = Callable[..., np.ndarray]
DEFAULT_CHECKPOINT = REPO / "fsrfer_edge" / "models" / "default.pt"


def with_flip(fn: LogitsFn) -> LogitsFn:
    """The mean of ``fn``'s class probabilities on each face and on its left-right mirror image, as log
    probabilities (so argmax and the evaluation are unchanged). Faces are (N, 1, H, W)."""
    def flipped(x: np.ndarray, factor: int = 1) -> np.ndarray:
        p = softmax(fn(x, factor)) + softmax(fn(np.ascontiguousarray(x[..., ::-1]), factor))
        return np.log(p / 2)

    return flipped


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                    help="an fsrfer checkpoint (default: the shipped default); its FER network is the HR model")
    ap.add_argument("--data", help="data path (overrides the checkpoint's config)")
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--json", required=True)
    ap.add_argument("--extra", metavar="NAME=CHECKPOINT", action="append", default=[],
                    help="also evaluate another model checkpoint (e.g. an equal-budget LR-fine-tuned baseline) "
                         "as the row NAME; may repeat")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: leave a core to a training)")
    args = ap.parse_args(argv)
    extra = []
    for item in args.extra:
        name, _, path = item.partition("=")
        if not name or not path or name in ("hr", "fsrfer") or not Path(path).is_file():
            raise SystemExit(f"--extra {item!r}: expected NAME=CHECKPOINT with an existing checkpoint file and a "
                             "NAME other than hr and fsrfer")
        extra.append((name, Path(path)))
    import torch

    torch.set_num_threads(args.threads)
    from fsrfer_edge.fileio import sha256_file, write_json
    from trainer import checkpoint
    from trainer import config as config_mod
    from trainer.evaluate import evaluate_fn, torch_logits_fn
    from trainer.train import PRE, load_data

    sys.path.insert(0, str(REPO / "scripts"))
    from early_g import extract_hr

    ckpt = Path(args.checkpoint).resolve()
    model, _, saved = checkpoint.load_model(ckpt)
    if "config" not in saved.get("meta", {}):
        raise SystemExit(f"{ckpt}: no training config in its meta; expected a checkpoint from fsrfer-train")
    cfg = config_mod.from_dict(saved["meta"]["config"])
    data = load_data(cfg, config_mod.resolve_data_path(cfg, args.data, str(REPO / "configs" / "x.yaml")))
    split = getattr(data, args.split)
    with tempfile.TemporaryDirectory() as tmp:
        extract_hr(ckpt, Path(tmp) / "hr.pt", cfg)
        hr, _, _ = checkpoint.load_model(Path(tmp) / "hr.pt")
    factors = tuple(cfg.eval.factors)
    rows: dict[str, Any] = {}
    models = [("hr", hr), ("fsrfer", model)] + [(name, checkpoint.load_model(path)[0]) for name, path in extra]
    for name, m in models:
        fn = torch_logits_fn(m.eval())
        for variant, f in (("plain", fn), ("flip", with_flip(fn))):
            res = evaluate_fn(f, split.images, split.labels, factors, PRE)
            rows.setdefault(name, {})[variant] = {k: round(100 * v["accuracy"], 2) for k, v in res["factors"].items()}
            print(f"{name:7s} {variant:5s} " + " ".join(f"x{k}:{v:.2f}" for k, v in rows[name][variant].items()),
                  flush=True)
        rows[name]["gain"] = {k: round(rows[name]["flip"][k] - rows[name]["plain"][k], 2) for k in rows[name]["plain"]}
    write_json(args.json, {
        "command": "python scripts/flip_tta.py --json " + args.json
                   + ("" if args.split == "val" else f" --split {args.split}")
                   + ("" if ckpt == DEFAULT_CHECKPOINT else " --checkpoint CHECKPOINT")
                   + "".join(f" --extra {name}=CHECKPOINT" for name, _ in extra),
        "extra": {name: {"path": str(path), "sha256": sha256_file(path)} for name, path in extra},
        "checkpoint": {"path": os.path.relpath(ckpt, REPO), "sha256": sha256_file(ckpt)},
        "split": args.split, "protocol": "resized", "n": int(len(split.labels)),
        "note": "accuracy % per factor; flip: softmax averaged over the face and its mirror image; the true "
                "factor is given to a scale-aware G (its graph would estimate it; a mirror image has the "
                "same statistics). Folded into a graph the flip doubles the batch: about 2x the compute.",
        "load_average": list(os.getloadavg()), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
