"""Collect a run's evaluation into results/ and regenerate the README's results table from it.

    python scripts/report.py --run runs/ferplus --split test --name ferplus [--onnx NAME=PATH ...]

Writes results/<name>/<split>.json (per method, per factor: accuracy, macro-F1, confusion matrix),
results/<name>/<split>_accuracy_vs_factor.png and <split>_confusion_x4.png, then rewrites the README
block between ``<!-- results:<name>:<split> -->`` and ``<!-- /results -->`` from that JSON alone.
``--readme-only`` rewrites the README from the committed JSON without needing the run; ``--plots-only``
redraws the two plots from it (legends use the README's method names, each method keeps one colour in
every plot, the x axis shows the measured factors only, confusion matrices carry a colour bar).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LABELS = {
    "hr": "HR model on bicubic LR input",
    "lr_finetune": "LR-fine-tuned model",
    "image_sr": "image SR + HR model",
    "fsrfer_no_reweight": "FSR-FER without re-weighting",
    "fsrfer_no_adversarial": "FSR-FER without adversarial loss",
    "fsrfer_no_reweight_no_adversarial": "FSR-FER without re-weighting and adversarial loss",
    "fsrfer": "**FSR-FER (full)**",
    "fsrfer_onnx_fp32": "FSR-FER, ONNX FP32 (ONNX Runtime CPU)",
    "fsrfer_onnx_fp16": "FSR-FER, ONNX FP16 (ONNX Runtime CPU)",
    "fsrfer_onnx_int8-s8s8": "FSR-FER, INT8 s8s8 for TensorRT (ONNX Runtime CPU)",
    "fsrfer_onnx_int8-u8s8": "FSR-FER, INT8 u8s8 (ONNX Runtime CPU)",
}


#: One colour per method, the same in every plot (tab10/tab20 colours; the ONNX rows are shades of FSR-FER's).
COLOURS = {
    "hr": "#7f7f7f",
    "lr_finetune": "#ff7f0e",
    "image_sr": "#2ca02c",
    "fsrfer_no_reweight": "#9467bd",
    "fsrfer_no_adversarial": "#8c564b",
    "fsrfer_no_reweight_no_adversarial": "#e377c2",
    "fsrfer": "#1f77b4",
    "fsrfer_onnx_fp32": "#17becf",
    "fsrfer_onnx_fp16": "#aec7e8",
    "fsrfer_onnx_int8-s8s8": "#393b79",
    "fsrfer_onnx_int8-u8s8": "#6b6ecf",
}
SIZE_PX = {"1": "48", "2": "24", "3": "16", "4": "12", "6": "8", "8": "6"}


def legend_name(method: str) -> str:
    """The method's name as the README's tables print it (without Markdown emphasis)."""
    return LABELS.get(method, method).replace("**", "")


def plot_accuracy(results: dict, path: Path, title: str) -> None:
    """Accuracy against face size, one line per method in its fixed colour; the x axis has the measured
    factors only (no ticks at sizes nobody evaluated)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    factors = sorted({f for r in results.values() for f in r["factors"]}, key=int)
    pos = {f: i for i, f in enumerate(factors)}
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    order = [m for m in LABELS if m in results] + [m for m in results if m not in LABELS]
    for m in order:
        fs = [f for f in factors if f in results[m]["factors"]]
        ax.plot([pos[f] for f in fs], [100 * results[m]["factors"][f]["accuracy"] for f in fs], marker="o",
                color=COLOURS.get(m), label=legend_name(m), linewidth=2.2 if m == "fsrfer" else 1.3,
                linestyle="--" if "_onnx_" in m else "-")
    ax.set_xticks(range(len(factors)), [f"x{f}\n{SIZE_PX.get(f, '?')} px" for f in factors])
    ax.set_xlabel("down-sample factor and face size")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(conf: list, classes: list, path: Path, title: str) -> None:
    """Row-normalised confusion matrix (% of each true class) with its colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.asarray(conf, float)
    norm = 100 * m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.2, 5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=100)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{norm[i, j]:.0f}", ha="center", va="center",
                    color="white" if norm[i, j] > 50 else "black", fontsize=8)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="% of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(results: dict, out: Path, name: str, split: str) -> list[Path]:
    """The accuracy-vs-factor plot and FSR-FER's x4 confusion matrix, from the results JSON alone."""
    from fsrfer_edge.preprocessing import CLASSES

    acc = out / f"{split}_accuracy_vs_factor.png"
    plot_accuracy(results, acc, f"{name}: {split} accuracy against face size")
    made = [acc]
    if "fsrfer" in results and "4" in results["fsrfer"]["factors"]:
        conf = out / f"{split}_confusion_x4.png"
        plot_confusion(results["fsrfer"]["factors"]["4"]["confusion"], list(CLASSES), conf,
                       f"{legend_name('fsrfer')} at x4 (12 px), {name} {split}")
        made.append(conf)
    return made


def table(results: dict, caption: str) -> str:
    factors = sorted({f for r in results.values() for f in r["factors"]}, key=int)
    size = {"1": "48", "2": "24", "3": "16", "4": "12", "6": "8", "8": "6"}
    head = "| method | " + " | ".join(f"x{f} ({size.get(f, '?')} px)" for f in factors) + " | mean |"
    rows = [head, "|---|" + "---:|" * (len(factors) + 1)]
    order = [m for m in LABELS if m in results] + [m for m in results if m not in LABELS]
    for m in order:
        r = results[m]
        cells = [f"{100 * r['factors'][f]['accuracy']:.2f}" if f in r["factors"] else "" for f in factors]
        rows.append(f"| {LABELS.get(m, m)} | " + " | ".join(cells) + f" | {100 * r['mean_accuracy']:.2f} |")
    return caption + "\n\n" + "\n".join(rows) + "\n"


def update_readme(name: str, split: str, results: dict, source: Path) -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    start, end = f"<!-- results:{name}:{split} -->", "<!-- /results -->"
    n = next(iter(results.values()))["n"]
    caption = (f"Accuracy (%) on the {split} split ({n} faces), from `{source.relative_to(REPO)}` "
               f"(regenerate: `python scripts/report.py --readme-only --name {name} --split {split}`).")
    block = f"{start}\n{table(results, caption)}{end}"
    pat = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pat.search(text):
        raise SystemExit(f"README.md has no block {start} ... {end}; add one where the table should go")
    readme.write_text(pat.sub(lambda _: block, text))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="run directory written by fsrfer-train")
    ap.add_argument("--name", required=True, help="results/<name>/")
    ap.add_argument("--split", default="test")
    ap.add_argument("--onnx", action="append", default=[], metavar="METHOD=FILE.json",
                    help="add an fsrfer-eval JSON (e.g. an FP16/INT8 export) as a row")
    ap.add_argument("--readme-only", action="store_true")
    ap.add_argument("--plots-only", action="store_true",
                    help="redraw results/<name>/<split>_*.png from the committed JSON (no run needed)")
    args = ap.parse_args(argv)
    from fsrfer_edge.fileio import write_json

    out = REPO / "results" / args.name
    dest = out / f"{args.split}.json"
    if args.plots_only:
        for p in write_plots(json.loads(dest.read_text()), out, args.name, args.split):
            print(f"wrote {p.relative_to(REPO)}")
        return 0
    if not args.readme_only:
        if not args.run:
            ap.error("--run is required unless --readme-only or --plots-only")
        results = json.loads((Path(args.run) / "eval" / args.split / "results.json").read_text())
        for item in args.onnx:
            method, _, path = item.partition("=")
            results[method] = json.loads(Path(path).read_text())
        write_json(dest, results)
        write_plots(results, out, args.name, args.split)
    results = json.loads(dest.read_text())
    update_readme(args.name, args.split, results, dest)
    print(table(results, f"{args.name} {args.split}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
