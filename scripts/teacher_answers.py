"""Precompute a teacher's answers on the training faces, for ``stage1.distill_from: FILE.npz``.

    python scripts/teacher_answers.py --config configs/ferplus_soft_aug_long_enskdc.yaml \
        --out /work/runs/ens6_answers.npz CHECKPOINT [CHECKPOINT ...]

Each checkpoint's FER network answers every face of the config's training split (after ``data.limit_train``,
as fsrfer-train loads it) as the test-time flip does, and several make an ensemble (the mean of their
softmaxes): the teacher ``stage1.distill_from: A.pt,B.pt,...`` would be, but on the unaugmented faces and
once, so distilling it costs no teacher forwards while training (six teachers through the flip made a CPU
epoch about 4.6 times one without them, 388 s against 84 s: results/ferplus/hr_distill_history.json). The file records the faces' SHA-256; training refuses it for other
faces. It holds answers about FER2013 faces, so it stays outside the checkout like the data.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="model checkpoints (.pt) whose FER networks answer")
    ap.add_argument("--config", required=True, help="the training config whose training split is answered")
    ap.add_argument("--data", help="data path (default: the config's)")
    ap.add_argument("--out", required=True, help="the answers file to write (.npz)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    args = ap.parse_args(argv)
    import torch

    from fsrfer_edge.errors import FsrferError
    from trainer.config import load as load_config, resolve_data_path
    from trainer.train import _checkpoint_path, load_data, teacher_answers, write_answers

    if not args.out.endswith(".npz"):
        ap.error(f"--out {args.out}: expected an .npz path (stage1.distill_from tells answers from checkpoints by it)")
    torch.set_num_threads(args.threads)
    try:
        cfg = load_config(args.config)
        data = load_data(cfg, resolve_data_path(cfg, args.data, args.config))
        paths = [_checkpoint_path("checkpoint", c) for c in args.checkpoints]
        t0 = time.perf_counter()
        log_probs = teacher_answers(paths, data.train.images)
        write_answers(Path(args.out), log_probs, data.train.images, list(args.checkpoints))
    except FsrferError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    agree = float((log_probs.argmax(1) == data.train.labels).mean())
    print(f"wrote {args.out}: {len(log_probs)} training faces, {len(paths)} teacher(s), "
          f"{100 * agree:.2f}% agree with the majority labels, {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
