"""Stage 2 with an early G, and the equal-budget LR-fine-tuned baseline, from an existing HR model.

Takes the frozen HR model (trunk and head) out of a trained checkpoint (default: the shipped default
model, whose HR part is the full FER+ run's stage 1, trained with configs/ferplus.yaml), writes it as
OUT/models/hr.pt, then runs the config's stage 2 (and ablations), baselines and evaluation with
``fsrfer-train``'s own pipeline (``--resume`` semantics: a killed run continues; ``--time-budget``
stops cleanly), so stage 1 is not retrained. Finally copies the evaluation JSON to ``--json`` (protocol (a)
as ``results``, (b) and (c) as ``results_small`` and ``results_camera`` where the config evaluates them).

    python scripts/early_g.py --config configs/ferplus_early_g.yaml --out /tmp/runs/early_g \\
        --json results/ferplus/early_g_val.json --time-budget 60
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from trainer.cli import positive_minutes  # noqa: E402  (fsrfer-train's own check; imports no torch)


def extract_hr(src: Path, dst: Path, cfg: object) -> None:
    """Write ``dst``, an 'hr' model with the FER network (trunk and head) of checkpoint ``src``."""
    from fsrfer_edge.fileio import sha256_file
    from trainer import checkpoint
    from trainer.models import InferenceModel
    from trainer.train import PRE, load_fer, spec_for

    model = InferenceModel(spec_for(cfg, "hr"))  # type: ignore[arg-type]
    model.fer.load_state_dict(load_fer(src).fer.state_dict())
    meta = {"name": "hr", "config": cfg.to_dict(), "history": [], "best_val_score": None,  # type: ignore[attr-defined]
            "extracted_from": {"checkpoint": str(src), "sha256": sha256_file(src)}}
    dst.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(dst, checkpoint.model_payload(model.eval(), model.spec, PRE, meta))


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--hr", default=str(REPO / "fsrfer_edge" / "models" / "default.pt"),
                    help="checkpoint whose FER network is the frozen HR model (default: the shipped default)")
    ap.add_argument("--data", help="data path (overrides the config)")
    ap.add_argument("--out", required=True, help="run folder (outside the checkout; resumable)")
    ap.add_argument("--steps", default="stage2,ablations,baselines,eval")
    ap.add_argument("--seed", type=int, help="override the config's seed (stage 2 and baselines)")
    ap.add_argument("--time-budget", type=positive_minutes, metavar="MIN", help="minutes > 0 (default: no limit)")
    ap.add_argument("--json", help="copy OUT/eval/<split>/results.json here when finished (not written where the "
                    "run has no evaluation)")
    args = ap.parse_args(argv)
    started = time.monotonic()  # --time-budget counts from here, as fsrfer-train's: reading the data counts too
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    import dataclasses

    from trainer import config as config_mod
    from trainer.train import load_data, run_pipeline

    from fsrfer_edge.errors import FsrferError, one_line

    try:
        cfg = config_mod.load(args.config)
        if args.seed is not None:
            cfg = dataclasses.replace(cfg, seed=args.seed)
        if args.data:  # recorded (config.json, models) as used, as fsrfer-train --data records it
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=os.path.abspath(args.data),
                                                                    synthetic=0))
        out = Path(args.out)
        hr = out / "models" / "hr.pt"
        if not hr.is_file():
            extract_hr(Path(args.hr), hr, cfg)
        data = load_data(cfg, config_mod.resolve_data_path(cfg, args.data, args.config))
        done = run_pipeline(cfg, data, out, resume=True, steps=tuple(args.steps.split(",")),
                            time_budget_min=args.time_budget, started=started)
    except FsrferError as exc:  # a bad config, checkpoint or data set: one line, as fsrfer-train says it
        print(f"early_g.py: error: {one_line(exc)}", file=sys.stderr)
        return 2
    if not done:
        print(f"stopped at the time budget; run the same command again to continue ({out})")
        return 0
    ev = out / "eval" / cfg.eval.split
    if args.json and not (ev / "results.json").is_file():  # --steps without eval (e.g. stage2 alone): none to copy
        print(f"early_g.py: no evaluation to copy ({ev / 'results.json'} is not there; --steps {args.steps}): "
              f"--json {args.json} not written", file=sys.stderr)
    elif args.json:
        from fsrfer_edge.fileio import write_json

        doc = {"config": cfg.to_dict(), "hr_checkpoint": args.hr, "results": json.loads((ev / "results.json").read_text())}
        for p in ("small", "camera"):  # protocols (b) and (c), where the config evaluates them
            if (ev / f"results_{p}.json").is_file():
                doc[f"results_{p}"] = json.loads((ev / f"results_{p}.json").read_text())
        write_json(Path(args.json), doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
