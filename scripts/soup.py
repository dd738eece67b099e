"""Average the weights of FSR-FER checkpoints that share one network and one initialisation (a uniform
"model soup", Wortsman et al., 2022): e.g. stage-2 runs of the same seed under different loss weights or
rates, whose G copies all start from the same HR stages and whose new layers start from the same draw.
The soup costs nothing at run time (one network, the same graph).

    python scripts/soup.py A/models/fsrfer.pt B/models/fsrfer.pt C/models/fsrfer.pt \\
        --estimator-from A/models/fsrfer_est.pt --out SOUP/models/fsrfer_est.pt

Floating-point parameters and buffers (BatchNorm statistics too) are averaged; integer buffers
(``num_batches_tracked``) are taken from the first checkpoint. The frozen HR network is the same in every
ingredient (checked: a soup of different HR networks is refused). ``--estimator-from`` takes the fitted
factor estimator (image statistics only, independent of G) and its spec keys from that checkpoint, so the
soup exports to one graph as the ingredient did. The soup's ``meta.soup`` lists the ingredients and their
SHA-256.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Spec keys that belong to the factor estimator, not to the network the ingredients share.
ESTIMATOR_KEYS = ("factor_estimator", "factor_estimator_pixels")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def soup_state(states: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """The uniform average of state dicts with the same keys and shapes (see the module's docstring)."""
    import torch

    first = states[0]
    for st, name in zip(states[1:], names[1:]):
        if st.keys() != first.keys():
            missing = sorted(set(first) ^ set(st))[:5]
            raise SystemExit(f"{name}: its weights are not {names[0]}'s network (keys differ: {missing}); expected "
                             "checkpoints of one network")
        for k, v in st.items():
            if v.shape != first[k].shape:
                raise SystemExit(f"{name}: {k} has shape {tuple(v.shape)}, {names[0]} {tuple(first[k].shape)}")
    frozen = [k for k in first if k.startswith("fer.")]
    for st, name in zip(states[1:], names[1:]):
        if not all(torch.equal(st[k], first[k]) for k in frozen):
            raise SystemExit(f"{name}: its frozen HR network differs from {names[0]}'s; a soup needs one HR network")
    out: dict[str, Any] = {}
    for k, v in first.items():
        if v.is_floating_point():
            out[k] = torch.stack([st[k].double() for st in states]).mean(0).to(v.dtype)
        else:
            out[k] = v.clone()
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", type=Path, help="fsrfer model checkpoints of one network (two or more)")
    ap.add_argument("--out", required=True, type=Path, help="the soup's checkpoint")
    ap.add_argument("--estimator-from", type=Path,
                    help="a checkpoint whose fitted factor estimator (and its spec keys) the soup takes")
    args = ap.parse_args(argv)
    if len(args.checkpoints) < 2:
        raise SystemExit(f"received {len(args.checkpoints)} checkpoint; a soup needs two or more")
    from fsrfer_edge.errors import FsrferError
    from trainer import checkpoint
    from trainer.models import InferenceModel
    from fsrfer_edge.preprocessing import Preprocessing

    try:
        ckpts = [checkpoint.load(p, kind="model") for p in args.checkpoints]
        est = checkpoint.load(args.estimator_from, kind="model") if args.estimator_from else None
    except FsrferError as exc:
        raise SystemExit(str(exc)) from None
    names = [str(p) for p in args.checkpoints]
    base = {k: v for k, v in ckpts[0]["spec"].items() if k not in ESTIMATOR_KEYS}
    for c, name in zip(ckpts[1:], names[1:]):
        other = {k: v for k, v in c["spec"].items() if k not in ESTIMATOR_KEYS}
        if other != base:
            diff = sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k))
            raise SystemExit(f"{name}: its network spec differs from {names[0]}'s in {diff}; expected one network")
    state = soup_state([c["state_dict"] for c in ckpts], names)
    spec = dict(ckpts[0]["spec"])
    meta = dict(ckpts[0].get("meta") or {})
    if est is not None:
        spec.update({k: est["spec"][k] for k in ESTIMATOR_KEYS if k in est["spec"]})
        for k, v in est["state_dict"].items():
            if k.startswith("factor_estimator."):
                state[k] = v.clone()
        if "factor_estimator" in (est.get("meta") or {}):
            meta["factor_estimator"] = est["meta"]["factor_estimator"]
    meta["soup"] = {"ingredients": [{"path": n, "sha256": _sha256(p)} for n, p in zip(names, args.checkpoints)],
                    "estimator_from": ({"path": str(args.estimator_from), "sha256": _sha256(args.estimator_from)}
                                       if args.estimator_from else None)}
    model = InferenceModel(spec)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise SystemExit(f"the soup's weights do not fit its spec ({' '.join(str(exc).split())[:300]})") from None
    pre = Preprocessing.from_dict(ckpts[0]["preprocessing"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(args.out, checkpoint.model_payload(model.eval(), spec, pre, meta), compress=True)
    print(f"wrote {args.out}: the mean of {len(names)} checkpoints" + (f", estimator from {args.estimator_from}"
                                                                       if est is not None else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
