"""Install an exported model as the SDK's default (``Recognizer()`` with no arguments) with its model card.

    fsrfer-eval --checkpoint engines/ferplus.fp32.onnx --data ../shared/data/fer2013.npz --labels ferplus \
        --split test --json results/default_model/test.json
    python scripts/ship_default.py --onnx engines/ferplus.fp32.onnx \
        --checkpoint runs/ferplus/models/fsrfer.pt --eval results/default_model/test.json --chosen "..."

(``scripts/ship_early_g.sh`` runs the whole sequence for an early-G run: export, the three protocols,
the equal-budget baseline on the same test faces, shipping and the regenerated tables.) With
``--eval-small`` and ``--eval-camera`` the card shows protocols (b) and (c) beside (a).

Copies the FP32 ONNX model to fsrfer_edge/models/default.onnx and writes the checkpoint to default.pt in
its compressed form (``trainer.checkpoint.save(compress=True)``: float tensors as byte planes, deflated;
``trainer.checkpoint.load`` restores them bit for bit), refuses if together they exceed 30 MB (30 million
bytes, the strict reading, as ``scripts/targets.py``), and writes
fsrfer_edge/models/MODEL_CARD.md from the evaluation JSON (fsrfer-eval on the test split).

What ships, how it was trained and how it was chosen: the generated MODEL_CARD.md.

    python scripts/ship_default.py --refresh-accuracy results/default_model

rewrites only the card's accuracy section from that folder's test.json, test_small.json and test_camera.json
(after a change of the SDK's preprocessing, which protocols (b) and (c) go through).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEST = REPO / "fsrfer_edge" / "models"
#: Issue 12's package budget ("ONNX plus checkpoint at most 30 MB"), read strictly: 30 million bytes, not 30 MiB
#: (scripts/targets.py, scripts/package_size.py and tests/test_default_model.py read it from here).
LIMIT_BYTES = 30_000_000


PROTOCOLS = (("resized", "(a) down-sampled by the factor (anti-aliased) and resized back to 48 px, the tables' protocol"),
             ("small", "(b) the small crop given to `Recognizer`, which resizes it"),
             ("camera", "(c) a camera-like crop: area down-sampling and JPEG quality 50, given as a small crop"))


def describe_g(spec: dict, s2: dict) -> str:
    """One sentence on where G reads and what it is, from the checkpoint's spec and stage-2 config."""
    gen = spec.get("generator") or {}
    level = spec.get("feature_level") or s2.get("feature_level", "embedding")
    blocks, growth = gen.get("blocks", s2.get("generator_blocks", "?")), gen.get("growth", s2.get("generator_growth", "?"))
    start = gen.get("start") or s2.get("generator_start")
    if start and start != level:
        text = (f"G reads the frozen trunk's `{start}` output and reproduces the HR model's `{level}` map through "
                f"trainable copies of the stages between (initialised from the HR model) and {blocks} dense "
                f"block(s) of growth {growth}")
    else:
        text = f"G on the `{level}` features, {blocks} dense block(s) of growth {growth}"
    if gen.get("scale_aware"):
        text += ("; scale-aware: FiLM conditions G on the down-sample factor, which the graph estimates from the "
                 "image itself" if spec.get("factor_estimator") else "; scale-aware: FiLM on the down-sample factor")
    if spec.get("factor_estimator_pixels"):
        text += (" (its statistics on the image rounded to whole grey levels, so a face resized in float and the "
                 "same face stored as uint8 get the same factor)")
    if gen.get("batchnorm") == "train":
        text += "; the copies' BatchNorm statistics were re-estimated on the mixed-factor training faces"
    elif gen.get("batchnorm") == "per_factor":
        text += "; the copies keep BatchNorm statistics per training factor, interpolated in log2 of the factor"
    if spec.get("route_hr_below"):
        text += (f"; routed: each face whose factor is below x{float(spec['route_hr_below']):.3g} (a face that was not "
                 "down-sampled) goes through the frozen HR stages instead of G, so it gets exactly the HR model's "
                 "answer, and every other face through G")
    return text


def describe_degradations(cfg: dict) -> str:
    deg = cfg.get("degrade") or {}
    factors = ", ".join(f"x{f}" for f in deg.get("factors", [])) or "the configured factors"
    kernels = deg.get("kernels", ["bicubic"])
    text = f"low-resolution versions at {factors}, down-sampled with {'/'.join(kernels)}"
    extra = []
    if deg.get("jpeg_prob"):
        lo, hi = deg.get("jpeg_quality", [30, 90])
        extra.append(f"JPEG quality {lo}-{hi} (p {deg['jpeg_prob']:g})")
    if deg.get("noise_prob"):
        extra.append(f"noise (p {deg['noise_prob']:g})")
    if deg.get("blur_prob"):
        extra.append(f"blur (p {deg['blur_prob']:g})")
    return text + (", with " + ", ".join(extra) if extra else "")


def describe_labels(cfg: dict) -> str:
    """The training targets and the stage-1 augmentation, from the checkpoint's training config."""
    data, s1 = cfg.get("data", {}), cfg.get("stage1", {})
    if data.get("labels", "ferplus") == "fer2013":
        text = "their original FER2013 labels"
    elif data.get("soft_labels"):
        text = ("the FER+ vote distributions as soft targets (Microsoft FER+, MIT-licensed labels; accuracy is "
                "against the majority labels)")
    else:
        text = "FER+ majority labels (Microsoft FER+, MIT-licensed labels)"
    aug = []
    if s1.get("rotate"):
        aug.append(f"rotation up to +-{s1['rotate']:g} degrees")
    if s1.get("scale"):
        aug.append(f"zoom {1 - s1['scale']:g}-{1 + s1['scale']:g}")
    return text + (", augmented with " + " and ".join(aug) if aug else "")


def stage1_source(hr: dict, hr_path: Path) -> tuple[dict, Path]:
    """The checkpoint that trained ``hr``'s network: ``hr`` itself, or, for a network copied out of another
    checkpoint (``scripts/early_g.py``'s ``RUN/models/hr.pt``, whose metadata is the stage-2 run's), the
    file its ``meta.extracted_from`` names, followed to the end and checked by sha256; SystemExit otherwise."""
    from fsrfer_edge.fileio import sha256_file
    from trainer import checkpoint

    seen = {hr_path.resolve()}
    while (src := hr.get("meta", {}).get("extracted_from")) is not None:
        path = Path(src["checkpoint"])
        if not path.is_file() or sha256_file(path) != src["sha256"] or path.resolve() in seen:
            raise SystemExit(f"error: {hr_path}'s network was copied from {path}, which is "
                             + ("missing" if not path.is_file() else "a loop" if path.resolve() in seen else
                                "not the file it was copied from (sha256 differs)")
                             + "; pass the stage-1 run's models/hr.pt as --hr-checkpoint")
        seen.add(path.resolve())
        hr, hr_path = checkpoint.load(path, kind="model"), path
    if hr.get("meta", {}).get("name") != "hr" or not hr["meta"].get("history"):
        raise SystemExit(f"error: {hr_path} is not a stage-1 run's checkpoint (meta.name 'hr' with its training "
                         "history); pass the stage-1 run's models/hr.pt as --hr-checkpoint")
    return hr, hr_path


def hr_provenance(ckpt: dict, hr: dict, hr_path: Path) -> dict:
    """What the frozen HR network is, checked: every tensor of the HR checkpoint must be in the shipped
    checkpoint under the same name with the same value (the frozen trunk and head), and its config, seed,
    epochs and val score are those of the checkpoint that trained it (:func:`stage1_source`); else SystemExit."""
    import torch

    ours, theirs = ckpt["state_dict"], hr["state_dict"]
    wrong = [k for k, v in theirs.items() if k not in ours or not torch.equal(ours[k], v)]
    if not theirs or wrong:
        raise SystemExit(f"error: {hr_path} is not this model's frozen HR network: {len(wrong)} of its {len(theirs)} "
                         f"tensors differ or are missing (first: {wrong[:1]})")
    hr, hr_path = stage1_source(hr, hr_path)
    cfg = hr.get("meta", {}).get("config", {})
    return {"config": cfg.get("name", "?"), "seed": cfg.get("seed", "?"),
            "epochs": cfg.get("stage1", {}).get("epochs", "?"), "val": hr.get("meta", {}).get("best_val_score"),
            "tensors": len(theirs), "cfg": cfg}


def trained_with(cfg: dict, hr: dict | None) -> str:
    """The card's sentence on which configs trained the shipped model."""
    if hr is None:
        return (f"Trained with `configs/{cfg.get('name', '?')}.yaml`; the full training config is in `default.pt`'s\n"
                "  metadata (`meta.config`).")
    labels = "FER+" if hr["cfg"].get("data", {}).get("labels", "ferplus") == "ferplus" else "FER2013"
    val = f", {100 * hr['val']:.2f}% on {labels} val" if hr.get("val") is not None else ""
    return (f"Stage 1 (the frozen trunk and head): `configs/{hr['config']}.yaml`, seed {hr['seed']}, {hr['epochs']} "
            f"epochs{val} (checked: its {hr['tensors']} tensors are the shipped ones). Stage 2 (G and the\n"
            f"  factor estimator): `configs/{cfg.get('name', '?')}.yaml`, seed {cfg.get('seed', '?')}, on that frozen "
            "network; `default.pt`'s metadata (`meta.config`) is the stage-2 run's config (its `stage1` block did not\n"
            "  train this model).")


#: Where the card's accuracy section starts; ``--refresh-accuracy`` rewrites the card from here on.
ACCURACY_HEADING = "## Accuracy on the FER+ test split"


def _shown(path: Path) -> str:
    """A path as the card names it: relative to the checkout, or as it is when outside."""
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


def accuracy_section(evals: dict, eval_path: Path) -> str:
    """The card's accuracy section: one column per protocol evaluated, (a)'s macro-F1, how to reproduce."""
    size = {"1": 48, "2": 24, "3": 16, "4": 12, "6": 8, "8": 6}
    ev = evals["resized"]
    factors = sorted(ev["factors"], key=int)
    shown = [(p, text) for p, text in PROTOCOLS if p in evals]
    head = "| factor | " + " | ".join(f"{p[1][:3]} accuracy (%)" for p in shown) + " | (a) macro-F1 (%) |"
    rule = "|---|" + "---:|" * (len(shown) + 1)
    rows = "\n".join(f"| x{f} ({size.get(f, '?')} px) | "
                     + " | ".join(f"{100 * evals[p]['factors'][f]['accuracy']:.2f}" for p, _ in shown)
                     + f" | {100 * ev['factors'][f]['macro_f1']:.2f} |" for f in factors)
    legend = "\n".join(f"- {text}: `{_shown(eval_path.parent / evals[p]['_file'])}`" for p, text in shown)
    return f"""{ACCURACY_HEADING} ({ev['n']} faces), per down-sample factor

How a low-resolution test face reaches the model:
{legend}

{head}
{rule}
{rows}

Reproduce: `fsrfer-eval --checkpoint fsrfer_edge/models/default.onnx --data ../shared/data/fer2013.npz --labels ferplus --split test --json OUT.json` (add `--protocol small` or `--protocol camera` for (b) and (c))
"""


def card(info: dict, evals: dict, ckpt: dict, eval_path: Path, chosen: str, hr: dict | None = None,
         sizes: dict | None = None) -> str:
    pre = info["preprocessing"]
    meta = ckpt.get("meta", {})
    cfg = meta.get("config", {})
    spec = ckpt.get("spec", {})
    s2 = cfg.get("stage2", {})
    return f"""# Model card: fsrfer-edge default model

Generated by `scripts/ship_default.py` from `{_shown(eval_path)}`; do not edit by hand.

- **Method**: FSR-FER (feature super-resolution with a GAN; {info['method']}), one fused network
  trunk -> G -> head, one model for every down-sample factor; no face image is ever reconstructed.
- **Backbone**: `{spec.get('backbone', cfg.get('model', {}).get('backbone', '?'))}`, frozen after stage 1 (trunk and head); {describe_g(spec, s2)}.
  {trained_with(cfg, hr)}
- **How it was chosen**: {chosen}
- **Input**: {pre['channels']} x {pre['input_size']} x {pre['input_size']} gray face crop, pixel/255 normalised with mean
  {pre['mean']} and std {pre['std']}, resized with an anti-aliased {pre['resize_kernel']} kernel (the SDK does this).
- **Classes**: {', '.join(pre['classes'])}.
- **Precision**: {info['precision']} ONNX (`default.onnx`); checkpoint `default.pt` (weights only, float tensors stored as byte planes; read it with `trainer.checkpoint.load`).{size_line(sizes)}
{SIDECARS}
- **Training data**: FER2013 images (ICML 2013 challenge) with {describe_labels(hr["cfg"] if hr else cfg)}, `train` split,
  and {describe_degradations(cfg)}; model selection on `val`.
- **Licence caveat**: FER2013 has no explicit licence and is distributed for research; these weights were
  trained on it. Check that your use is allowed before deploying them.

{accuracy_section(evals, eval_path)}"""


#: The card's line on the files measured for the model that ship beside it (README "The SDK", docs/crowd.md).
SIDECARS = ("- **Beside it**: `default.scores.json`, the confidence maps (`Prediction.confidence`: a map of the label's "
            "score per face size, maps of their own for JPEG-compressed faces, and a size estimate for crops an app "
            "enlarged itself, and terms for tracked faces; fitted on FER+ val by `scripts/score_calibration.py --jpeg "
            "--write-calibration`, `scripts/enlarged_confidence.py --write-calibration` and `scripts/track_maps.py "
            "--write-calibration`), and `default.groups.json`, the group-share "
            "matrices (`CrowdSummary.shares`; `scripts/group_estimates.py --write-calibration`); both name the "
            "checkpoint the model was exported from (`checkpoint_sha256`, as `default.onnx`'s metadata does), which "
            "`Recognizer` and `CrowdAnalyzer` check before using them.")


def size_line(sizes: dict | None) -> str:
    if not sizes:
        return ""
    total = sum(sizes.values())
    return ("\n- **Size**: " + " + ".join(f"`{k}` {v / 1e6:.2f} MB" for k, v in sizes.items())
            + f" = {total / 1e6:.2f} MB (budget {LIMIT_BYTES / 1e6:g} MB, million bytes).")


def load_eval(path: Path, onnx_path: Path, protocol: str) -> dict:
    """The fsrfer-eval JSON at ``path``, checked to be ``onnx_path`` on FER+ test under ``protocol``."""
    from fsrfer_edge.fileio import loads_json

    ev = loads_json(path.read_text(), source=str(path))  # a key twice: refused
    evaluated = Path(ev.get("checkpoint", ""))
    if not evaluated.is_absolute():
        evaluated = REPO / evaluated
    if not evaluated.is_file() or evaluated.read_bytes() != onnx_path.read_bytes():
        raise SystemExit(f"error: {path} evaluates {ev.get('checkpoint')!r}, not {onnx_path}: run fsrfer-eval on "
                         "the model you ship")
    if (ev.get("labels"), ev.get("split")) != ("ferplus", "test"):
        raise SystemExit(f"error: {path} is on {ev.get('labels')}/{ev.get('split')}; the model card needs ferplus/test")
    if ev.get("protocol", "resized") != protocol:
        raise SystemExit(f"error: {path} is protocol {ev.get('protocol')!r}, expected {protocol!r}")
    ev["_file"] = path.name
    return ev


def refreshed_card(text: str, results_dir: Path) -> str:
    """A card's text with its accuracy section rendered again from ``results_dir``'s test.json, test_small.json
    and test_camera.json (each checked to evaluate the shipped default.onnx); SystemExit with the reason when
    they cannot be read or evaluate something else."""
    if ACCURACY_HEADING not in text:
        raise SystemExit(f"error: the card has no '{ACCURACY_HEADING}' section to refresh")
    onnx_path = DEST / "default.onnx"
    if not (results_dir / "test.json").is_file():
        raise SystemExit(f"error: {results_dir / 'test.json'} is missing; expected fsrfer-eval's JSON of {onnx_path} "
                         "on FER+ test (and test_small.json, test_camera.json beside it)")
    evals = {"resized": load_eval(results_dir / "test.json", onnx_path, "resized")}
    for protocol in ("small", "camera"):
        if (results_dir / f"test_{protocol}.json").is_file():
            evals[protocol] = load_eval(results_dir / f"test_{protocol}.json", onnx_path, protocol)
    return text[:text.index(ACCURACY_HEADING)] + accuracy_section(evals, (results_dir / "test.json").resolve())


def refresh_accuracy(results_dir: Path) -> int:
    """Rewrite the shipped card's accuracy section (:func:`refreshed_card`), leaving the rest of it as it is: for a
    change of the SDK's preprocessing, which protocols (b) and (c) go through, re-measured with fsrfer-eval."""
    path = DEST / "MODEL_CARD.md"
    try:
        text = refreshed_card(path.read_text(), results_dir)
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    from fsrfer_edge.fileio import atomic_write

    atomic_write(path, lambda f: f.write(text.encode()))
    print(f"refreshed the accuracy section of {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refresh-accuracy", type=Path, metavar="RESULTS_DIR",
                    help="only rewrite the shipped card's accuracy section from this folder's test*.json")
    ap.add_argument("--onnx", type=Path, help="FP32 ONNX from fsrfer-export (may already be default.onnx); required")
    ap.add_argument("--checkpoint", type=Path, help="required")
    ap.add_argument("--eval", type=Path, help="fsrfer-eval JSON of --onnx on the test split; required")
    ap.add_argument("--eval-small", type=Path, help="the same with --protocol small")
    ap.add_argument("--eval-camera", type=Path, help="the same with --protocol camera")
    ap.add_argument("--hr-checkpoint", type=Path,
                    help="the frozen HR network's checkpoint (a run's models/hr.pt): checked against the shipped "
                         "trunk and head, and named on the card with its config, seed and epochs")
    ap.add_argument("--chosen", help="one or two sentences for the card: how this model was chosen; required")
    ap.add_argument("--results-dir", type=Path,
                    help="also write the evaluation JSONs here as test.json, test_small.json, test_camera.json, "
                         "naming the shipped default.onnx (the same bytes) as the evaluated file")
    args = ap.parse_args(argv)
    if args.refresh_accuracy is not None:
        return refresh_accuracy(args.refresh_accuracy)
    missing = [f"--{k}" for k in ("onnx", "checkpoint", "eval", "chosen") if getattr(args, k) is None]
    if missing:
        ap.error(f"{', '.join(missing)} required (or --refresh-accuracy RESULTS_DIR alone)")
    sys.path.insert(0, str(REPO))
    import onnx

    from fsrfer_edge.fileio import atomic_write, atomic_write_bytes, loads_json
    from fsrfer_edge.metadata import METADATA_KEY
    from trainer import checkpoint

    ckpt = checkpoint.load(args.checkpoint, kind="model")
    try:
        hr = (None if args.hr_checkpoint is None
              else hr_provenance(ckpt, checkpoint.load(args.hr_checkpoint, kind="model"), args.hr_checkpoint))
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:  # the shipped form, measured before anything is installed
        small = Path(tmp) / "default.pt"
        checkpoint.save(small, {k: v for k, v in ckpt.items() if k not in ("format", "version")}, compress=True)
        ckpt_bytes = small.read_bytes()
    total = args.onnx.stat().st_size + len(ckpt_bytes)
    if total > LIMIT_BYTES:
        print(f"error: model + compressed checkpoint are {total / 1e6:.2f} MB; the shipped default may take "
              f"{LIMIT_BYTES / 1e6:g} MB", file=sys.stderr)
        return 2
    props = {p.key: p.value for p in onnx.load(str(args.onnx), load_external_data=False).metadata_props}
    info = loads_json(props[METADATA_KEY], source=f"{args.onnx} metadata {METADATA_KEY!r}")  # a key twice: refused
    try:
        evals = {"resized": load_eval(args.eval, args.onnx, "resized")}
        for protocol, path in (("small", args.eval_small), ("camera", args.eval_camera)):
            if path is not None:
                evals[protocol] = load_eval(path, args.onnx, protocol)
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    for protocol, ev in evals.items():  # the card has one row per (a) factor, a column per protocol
        lacking = sorted(set(evals["resized"]["factors"]) - set(ev["factors"]), key=int)
        if lacking:
            print(f"error: {ev['_file']} ({protocol}) lacks factor(s) {', '.join(lacking)} that "
                  f"{evals['resized']['_file']} has; evaluate every protocol at the same factors", file=sys.stderr)
            return 2
    # The card is rendered before anything is installed: a card that cannot be written leaves the old default.
    docs, eval_path = {}, args.eval.resolve()
    if args.results_dir is not None:
        shipped = (DEST / "default.onnx").relative_to(REPO).as_posix()
        for protocol, ev in evals.items():
            name = "test.json" if protocol == "resized" else f"test_{protocol}.json"
            doc = {k: v for k, v in ev.items() if k != "_file"}
            doc.update(checkpoint=shipped, evaluated_as=str(ev["checkpoint"]))
            docs[name] = doc
            ev["_file"] = name
        eval_path = (args.results_dir / "test.json").resolve()
    sizes = {"default.onnx": args.onnx.stat().st_size, "default.pt": len(ckpt_bytes)}
    text = card(info, evals, ckpt, eval_path, args.chosen, hr, sizes)
    DEST.mkdir(exist_ok=True)
    if args.onnx.resolve() != (DEST / "default.onnx").resolve():
        atomic_write(DEST / "default.onnx", lambda f: f.write(args.onnx.read_bytes()))
    atomic_write_bytes(DEST / "default.pt", ckpt_bytes)
    if docs:
        from fsrfer_edge.fileio import write_json

        for name, doc in docs.items():
            write_json(args.results_dir / name, doc)
    atomic_write(DEST / "MODEL_CARD.md", lambda f: f.write(text.encode()))
    print(f"shipped {total / 1e6:.2f} MB to {DEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
