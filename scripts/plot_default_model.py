"""Plot the shipped model, its equal-budget LR-fine-tuned baseline and the frozen HR model on FER+ test,
accuracy against the down-sample factor, one panel per protocol, from results/default_model/*.json.

    python scripts/plot_default_model.py      # writes results/default_model/test_protocols.png
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "results" / "default_model"
PROTOCOLS = (("resized", "(a) resized back"), ("small", "(b) small crops"), ("camera", "(c) camera-like crops"))
MODELS = (("", "shipped FSR-FER", "C0"), ("baseline_", "LR-fine-tuned (equal budget)", "C1"), ("hr_", "HR model", "C7"))


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PROTOCOLS), figsize=(13, 4), sharey=True)
    drawn = 0
    for ax, (protocol, title) in zip(axes, PROTOCOLS):
        suffix = "" if protocol == "resized" else f"_{protocol}"
        for prefix, label, colour in MODELS:
            path = FOLDER / f"{prefix}test{suffix}.json"
            if not path.is_file():
                continue
            factors = sorted(json.loads(path.read_text())["factors"].items(), key=lambda kv: int(kv[0]))
            ax.plot([int(f) for f, _ in factors], [100 * v["accuracy"] for _, v in factors], "o-", label=label, color=colour)
            drawn += 1
        ax.set_title(title)
        ax.set_xlabel("down-sample factor (48 px / factor)")
        ax.set_xticks([1, 2, 3, 4, 6, 8])
        ax.grid(alpha=0.3)
    if not drawn:
        print(f"error: no result files in {FOLDER}; run scripts/ship_early_g.sh first", file=sys.stderr)
        return 2
    axes[0].set_ylabel("FER+ test accuracy (%)")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    out = FOLDER / "test_protocols.png"
    from fsrfer_edge.fileio import atomic_write

    atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=110))
    print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
