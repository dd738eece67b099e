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

from trainer.evaluate import METHOD_NAMES, method_name, plot_accuracy, plot_confusion  # noqa: E402

#: README table names: the plots' names, with the full method in bold.
LABELS = {m: f"**{n}**" if m == "fsrfer" else n for m, n in METHOD_NAMES.items()}


def write_plots(results: dict, out: Path, name: str, split: str) -> list[Path]:
    """The accuracy-vs-factor plot and FSR-FER's x4 confusion matrix, from the results JSON alone."""
    from fsrfer_edge.preprocessing import CLASSES

    acc = out / f"{split}_accuracy_vs_factor.png"
    plot_accuracy(results, acc, f"{name}: {split} accuracy against face size")
    made = [acc]
    if "fsrfer" in results and "4" in results["fsrfer"]["factors"]:
        conf = out / f"{split}_confusion_x4.png"
        plot_confusion(results["fsrfer"]["factors"]["4"]["confusion"], list(CLASSES), conf,
                       f"{method_name('fsrfer')} at x4 (12 px), {name} {split}")
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


#: The markdown files that may hold a results block, searched in this order.
RESULT_DOCS = ("README.md", "docs/experiments.md")


def update_readme(name: str, split: str, results: dict, source: Path) -> None:
    """Rewrite the ``results:<name>:<split>`` block in whichever of RESULT_DOCS holds it."""
    start, end = f"<!-- results:{name}:{split} -->", "<!-- /results -->"
    n = next(iter(results.values()))["n"]
    caption = (f"Accuracy (%) on the {split} split ({n} faces), from `{source.relative_to(REPO)}` "
               f"(regenerate: `python scripts/report.py --readme-only --name {name} --split {split}`).")
    block = f"{start}\n{table(results, caption)}{end}"
    pat = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    for doc in RESULT_DOCS:
        path = REPO / doc
        text = path.read_text() if path.is_file() else ""
        if pat.search(text):
            from fsrfer_edge.fileio import atomic_write

            new = pat.sub(lambda _: block, text)
            atomic_write(path, lambda f: f.write(new.encode()))
            return
    raise SystemExit(f"none of {', '.join(RESULT_DOCS)} has a block {start} ... {end}; add one where the table should go")


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
