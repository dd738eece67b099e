"""Comparisons of two finished training runs, shared by the DDP (CPU) and GPU tests."""
from pathlib import Path

import numpy as np

from trainer import checkpoint


def states(out: Path) -> dict:
    """Every tensor of every training state (modules only), flattened: {file/module/key: tensor}."""
    flat = {}
    for p in sorted((out / "state").glob("*.pt")):
        for m, sd in checkpoint.load(p, kind="state")["modules"].items():
            for k, v in sd.items():
                flat[f"{p.name}/{m}/{k}"] = v
    return flat


def files(d: Path) -> list[str]:
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())


def assert_same_training(ref: Path, out: Path, atol: float, loss_rtol: float) -> None:
    """``out`` wrote the same files as ``ref``, its weights match within ``atol`` (and training really
    moved them: a comparison of untrained models proves nothing), and its stage-1 losses match."""
    assert files(out) == files(ref)  # no per-rank or leftover temporary files
    a, b = states(ref), states(out)
    assert a.keys() == b.keys() and any(k.startswith("fsrfer.gan.pt/d/") for k in a)
    diffs = {k: float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point()}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= atol, f"{worst}: max abs diff {diffs[worst]:.3g} > {atol}"
    g = checkpoint.load(out / "state" / "fsrfer.gan.pt", kind="state")["modules"]["g"]
    assert float(g["proj.weight"].abs().max()) > 100 * atol
    h0 = checkpoint.load(ref / "models" / "hr.pt")["meta"]["history"]
    h1 = checkpoint.load(out / "models" / "hr.pt")["meta"]["history"]
    np.testing.assert_allclose([e["loss"] for e in h1], [e["loss"] for e in h0], rtol=loss_rtol)
