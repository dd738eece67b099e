"""Compare stage-2 settings on a finished stage 1 (uses the run's HR model and cached features).

    python scripts/sweep_stage2.py --config configs/ferplus_short.yaml --run runs/ferplus_short \
        --json results/ferplus_short/stage2_sweep.json

Each variant overrides stage-2 options (see VARIANTS) and is scored by mean val accuracy over the
evaluation factors, plus accuracy at x1 (G must not hurt HR faces). Choices are made on val only.
"""
from __future__ import annotations

import argparse
import logging
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS: dict[str, dict] = {
    "default": {},
    "no_gan_phase": {"epochs": 0},
    "adv_1e-2": {"losses": {"adversarial": 1e-2}},
    "adv_1e-4": {"losses": {"adversarial": 1e-4}},
    "head_10": {"losses": {"head": 10.0}},
    "head_0": {"losses": {"head": 0.0}},
    "rec_0.1": {"losses": {"reconstruction": 0.1}},
    "ce_0.1": {"losses": {"cross_entropy": 0.1}},
    "g_big": {"generator_blocks": 5, "generator_growth": 128},
    "lr_1e-3": {"lr_g": 1e-3, "lr_d": 1e-3},
    "long": {"pretrain_epochs": 10, "epochs": 30},
    # G on the third stage's 6x6 map, with the frozen fourth stage, pool and head above it.
    "layer3": {"feature_level": "layer3", "generator_blocks": 2, "generator_growth": 32},
    "layer3_head_10": {"feature_level": "layer3", "generator_blocks": 2, "generator_growth": 32,
                       "losses": {"head": 10.0}},
    # Shorter schedules for the map levels (an epoch costs far more than on the embedding).
    "layer3_short": {"feature_level": "layer3", "generator_blocks": 2, "generator_growth": 32,
                     "pretrain_epochs": 3, "epochs": 8},
    "layer2_short": {"feature_level": "layer2", "generator_blocks": 2, "generator_growth": 32,
                     "pretrain_epochs": 3, "epochs": 8},
    # On configs/ferplus.yaml (G already on layer3): a label term, a larger G, a longer GAN phase.
    "ce_1": {"losses": {"cross_entropy": 1.0}},
    "g_wide": {"generator_blocks": 4, "generator_growth": 64},
    "gan_20": {"epochs": 20},
}


def _best(path: Path) -> float | None:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True).get("meta", {}).get("best_val_score")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--run", required=True, help="run directory with models/hr.pt and cache/")
    ap.add_argument("--json", required=True)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    unknown = [n for n in args.variants.split(",") if n not in VARIANTS]
    if unknown:  # before any variant trains: a misspelt name must not cost the runs before it
        ap.error(f"--variants: unknown {', '.join(map(repr, unknown))}; expected names from: {', '.join(VARIANTS)}")
    import torch

    from trainer import config
    from trainer.evaluate import write_json
    from trainer.train import load_data, train_stage2, evaluate_fn, torch_logits_fn, checkpoint, PRE

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    base = config.load(args.config)
    data = load_data(base, config.resolve_data_path(base, None, args.config))
    run = Path(args.run)
    results = {}
    for name in args.variants.split(","):
        over = VARIANTS[name]
        s2 = base.stage2.to_dict() if hasattr(base.stage2, "to_dict") else dataclasses.asdict(base.stage2)
        for k, v in over.items():
            s2[k] = {**s2[k], **v} if isinstance(v, dict) else v
        cfg = config.from_dict({**base.to_dict(), "stage2": s2})
        with tempfile.TemporaryDirectory() as d:
            out = Path(d)
            (out / "models").mkdir()
            shutil.copy(run / "models" / "hr.pt", out / "models" / "hr.pt")
            # Shared, not copied: feature caches are keyed by model, data and level, and a map-level
            # cache is gigabytes.
            (out / "cache").symlink_to((run / "cache").resolve(), target_is_directory=True)
            t = time.time()
            path = train_stage2(cfg, data, out / "models" / "hr.pt", out, "fsrfer", cfg.stage2.losses, resume=False)
            model, pre, _ = checkpoint.load_model(path)
            res = evaluate_fn(torch_logits_fn(model), data.val.images, data.val.labels, tuple(cfg.eval.factors), PRE)
            best = _best(path)
        results[name] = {"override": over, "best_epoch_val_score": best, "mean_accuracy": res["mean_accuracy"], "seconds": round(time.time() - t, 1),
                         "accuracy": {f: v["accuracy"] for f, v in res["factors"].items()}}
        print(f"{name:14s} mean {100 * res['mean_accuracy']:.2f}  " +
              " ".join(f"x{f}:{100 * v['accuracy']:.1f}" for f, v in res["factors"].items()), flush=True)
        write_json(args.json, {"config": args.config, "run": args.run, "split": "val", "variants": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
