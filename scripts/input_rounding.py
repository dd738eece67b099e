"""How much each model's answer depends on differences below one grey level: float inputs against the same
inputs rounded to whole grey levels, face by face.

    python scripts/input_rounding.py --model fsrfer=fsrfer_edge/models/default.pt \
        --model lr_finetune=RUN/models/lr_finetune.pt --model hr=RUN/models/hr.pt \
        --json results/ferplus/input_rounding_val.json

Protocol (a) resizes each down-sampled face back to 48 px in float, as ``fsrfer-eval`` does; an app that
resizes a small crop to 48 px itself usually stores whole grey levels (uint8), and an INT8 file whose
input is quantized rounds it too (``scripts/int8_sensitivity.py``). For every checkpoint (PyTorch, the
true factor given to a scale-aware model, and for a model with a factor estimator also the factor it
estimates, as its exported graph runs) and factor this compares the two on the FER+ ``--split``:
``changed`` % of faces whose top-1 class differs, ``kl`` (nats x 1000) and ``points_lost`` (float minus
rounded accuracy). Accuracy only, no timing.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


def rounded(x: Any, pre: Any) -> Any:
    """Normalised inputs ``x`` with their pixels rounded to whole grey levels (what a uint8 image holds)."""
    import numpy as np

    return pre.normalize(np.clip(np.rint((x * pre.std + pre.mean) * 255.0), 0, 255))


def estimated(model: Any, x: Any) -> tuple[Any, Any]:
    """Logits with the model's own factor estimate (as its exported graph runs), and that estimate."""
    import numpy as np
    import torch

    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return model(t).numpy(), model.factor_estimator(t).numpy()


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, metavar="NAME=CHECKPOINT")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013.npz")
    ap.add_argument("--split", default="val")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args(argv)
    import numpy as np
    import torch

    from fsrfer_edge.fileio import check_output_path, files_problem, write_json
    from fsrfer_edge.preprocessing import FACTORS
    from int8_sensitivity import compare
    from trainer import checkpoint
    from trainer.data import load_dataset
    from trainer.evaluate import protocol_inputs, torch_logits_fn

    models = dict(m.split("=", 1) for m in args.model if "=" in m)
    if len(models) != len(args.model):
        print("error: --model takes NAME=CHECKPOINT", file=sys.stderr)
        return 2
    problem = files_problem(args.data, *models.values())
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    check_output_path(args.json, "--json", json_output=True)
    torch.set_num_threads(args.threads)
    part = load_dataset(args.data, labels="ferplus").subset(args.split)
    images, labels = part.images, part.labels.astype(np.int64)
    rows: dict[str, Any] = {}
    for name, path in models.items():
        model, pre, _ = checkpoint.load_model(Path(path))
        fn = torch_logits_fn(model)

        estimator = getattr(model, "factor_estimator", None)
        per, per_est = {}, {}
        for f in FACTORS:
            xs = [protocol_inputs(images[s:s + 256], int(f), pre) for s in range(0, len(images), 256)]
            a = np.concatenate([fn(x, int(f)) for x in xs])
            b = np.concatenate([fn(rounded(x, pre), int(f)) for x in xs])
            per[str(f)] = compare(a, b, labels)
            if estimator is not None:
                ea = zip(*(estimated(model, x) for x in xs))
                eb = zip(*(estimated(model, rounded(x, pre)) for x in xs))
                (la, fa), (lb, fb) = [tuple(np.concatenate(v) for v in e) for e in (ea, eb)]
                per_est[str(f)] = {**compare(la, lb, labels), "mean_estimated_factor": round(float(fa.mean()), 3),
                                   "mean_estimated_factor_rounded": round(float(fb.mean()), 3)}
        rows[name] = {"checkpoint": str(path), "true_factor": per}
        if per_est:
            rows[name]["estimated_factor"] = per_est
        print(f"{name:12s} " + "  ".join(f"x{f} changed {v['flips']:.2f} kl {v['kl']:.1f}" for f, v in per.items()),
              flush=True)
        for f, v in per_est.items():
            print(f"  estimated factor, x{f}: changed {v['flips']:.2f} kl {v['kl']:.1f}, mean estimate "
                  f"{v['mean_estimated_factor']} -> {v['mean_estimated_factor_rounded']} rounded", flush=True)
    command = " ".join(["python scripts/input_rounding.py",
                        *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))])
    write_json(args.json, {"command": command, "split": args.split, "n": int(len(labels)), "models": rows})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
