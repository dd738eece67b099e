"""How well a group's expression shares are estimated from its faces' outputs, per face size (docs/crowd.md,
"The group's expression when its faces are small"; the rule there was written before this script).

The shipped model's probabilities for FER+ faces as small crops (protocols (b) and (c)); groups drawn from them
in three scenarios (natural, shifted class shares, one dominant class); four estimates of the group's class
shares (counted labels, mean probabilities, and both adjusted by the model's confusions at each face's size,
``fsrfer_edge.groups``); distance to the true shares.

    python scripts/group_estimates.py --split val --json results/crowd/group_estimates_val.json
    python scripts/group_estimates.py --split test --json results/crowd/group_estimates_test.json
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fsrfer_edge.errors import InputError  # noqa: E402
from fsrfer_edge.groups import GroupCalibration, simplex_least_squares, stratified_picks  # noqa: E402

FACTORS = (1, 2, 3, 4, 6, 8)
PROTOCOLS = ("small", "camera")
SCENARIOS = ("natural", "shifted", "dominant")
ESTIMATES = ("counts", "mean_probs", "adjusted_counts", "adjusted_probs")
DOMINANT_SHARE = 0.6
DECISION_GROUP = 30
#: Resampled sets of matrices in a written calibration (what GroupCalibration.interval uses).
RESAMPLES = 200


def _shown(path: str) -> str:
    """A path as result files show it: relative to the repository when inside it, else as given."""
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else path


def draw_group(rng: np.random.Generator, pool: np.ndarray, labels: np.ndarray, scenario: str, n: int,
               classes: int) -> np.ndarray:
    """Indices (n,) of one group's faces from ``pool`` (indices into ``labels``) under ``scenario``."""
    if scenario == "natural":
        return rng.choice(pool, size=n, replace=len(pool) < n)
    by_class = [pool[labels[pool] == c] for c in range(classes)]
    if scenario == "shifted":
        cls = rng.choice(classes, size=n, p=rng.dirichlet(np.ones(classes)))
        return np.array([rng.choice(by_class[c]) for c in cls])
    if scenario == "dominant":
        d = int(rng.integers(classes))
        from_d = rng.random(n) < DOMINANT_SHARE
        return np.where(from_d, rng.choice(by_class[d], size=n), rng.choice(pool, size=n))
    raise ValueError(f"scenario {scenario!r}; expected one of {SCENARIOS}")


def tv_distance(est: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Total variation distance of each row pair, in points of the group (half the L1 distance x 100)."""
    return 50.0 * np.abs(est - true).sum(-1)


def dominant_agrees(est: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Whether each row's largest estimated share is a largest true share (ties in the truth all count)."""
    pick = est.argmax(-1)
    return np.take_along_axis(true, pick[:, None], -1)[:, 0] >= true.max(-1) - 1e-12


def estimates(cal: GroupCalibration, probs: np.ndarray, factors: np.ndarray) -> dict[str, np.ndarray]:
    """The four estimates for G groups at once: ``probs`` (G, N, C), ``factors`` (G, N) -> name -> (G, C)."""
    c = probs.shape[-1]
    counts = np.eye(c)[probs.argmax(-1)].mean(1)
    mean = probs.mean(1)
    m_p = np.stack([cal.matrix(f, "probs") for f in factors])
    m_c = np.stack([cal.matrix(f, "counts") for f in factors])
    return {"counts": counts, "mean_probs": mean,
            "adjusted_counts": simplex_least_squares(m_c, counts, tol=1e-9),
            "adjusted_probs": simplex_least_squares(m_p, mean, tol=1e-9)}


def bootstrap_interval(cal: GroupCalibration, probs: np.ndarray, factors: np.ndarray | Sequence[float],
                       level: float = 0.9, resamples: int = 200, seed: int = 0, kind: str = "probs",
                       matrices: Optional[Sequence[GroupCalibration]] = None) -> tuple[np.ndarray, np.ndarray]:
    """A bootstrap interval of a group's shares (the interval rule's candidate; not in the SDK, which the rule's
    val run did not admit): its faces resampled with replacement (each with its own factor) ``resamples`` times,
    the estimate of each, and per class the percentiles that leave ``(1 - level) / 2`` on each side. Returns
    (low, high), each (C,). Seeded. It does not see the error of the matrices themselves, unless ``matrices``
    gives one calibration per resample (:func:`resampled_calibrations`): the r-th resample is solved with the r-th."""
    from fsrfer_edge.groups import KINDS, _checked_group, _factor_weights

    if not 0 < level < 1 or resamples < 2:
        raise InputError(f"level={level!r}, resamples={resamples!r}; expected 0 < level < 1 and resamples >= 2")
    if kind not in KINDS:
        raise InputError(f"kind {kind!r}; expected one of {KINDS}")
    p, f = _checked_group(probs, factors, len(cal.classes))
    if not len(p):
        raise InputError("an empty group has no class shares")
    idx = np.random.default_rng(seed).integers(0, len(p), size=(resamples, len(p)))
    observed = p if kind == "probs" else np.eye(p.shape[1])[p.argmax(1)]
    weights = _factor_weights(cal.factors, np.maximum(f, 1.0))
    if matrices is None:
        m = np.tensordot(weights[idx].mean(1), getattr(cal, kind), axes=1)   # (R, C, C)
    else:
        if len(matrices) != resamples:
            raise InputError(f"{len(matrices)} sets of matrices for {resamples} resamples; expected one each")
        m = np.einsum("rf,rfij->rij", weights[idx].mean(1), np.stack([getattr(c, kind) for c in matrices]))
    shares = simplex_least_squares(m, observed[idx].mean(1))                # (R, C)
    tail = (1.0 - level) / 2
    return np.quantile(shares, tail, axis=0), np.quantile(shares, 1.0 - tail, axis=0)


def resampled_calibrations(probs: dict[int, np.ndarray], labels: np.ndarray, classes: Sequence[str], rows: np.ndarray,
                           resamples: int = 200, seed: int = 0) -> list[GroupCalibration]:
    """``resamples`` calibrations, each fitted on ``rows`` (faces of ``probs[f]`` (N, C) per factor, ``labels``
    (N,)) resampled with replacement within each class (``fsrfer_edge.groups.stratified_picks``, as
    ``GroupCalibration.fit(resamples=...)`` does)."""
    return [GroupCalibration.fit({f: p[pick] for f, p in probs.items()}, {f: labels[pick] for f in probs}, classes)
            for pick in stratified_picks(labels, resamples, seed, rows)]


def interval_hits(cal: GroupCalibration, probs: np.ndarray, factors: np.ndarray, true: np.ndarray,
                  matrices: Optional[Sequence[GroupCalibration]] = None) -> tuple[np.ndarray, np.ndarray]:
    """For G groups (``probs`` (G, N, C), ``factors`` (G, N), ``true`` (G, C)): whether each class's true share lies
    in the group's :func:`bootstrap_interval` (G, C), and each interval's width (G, C). A calibration that holds
    resampled matrices (the shipped kind) gives the SDK's own ``GroupCalibration.interval`` instead."""
    if cal.resampled is not None:
        lo, hi = map(np.stack, zip(*(cal.interval(p, f) for p, f in zip(probs, factors))))
        return (true >= lo - 1e-9) & (true <= hi + 1e-9), hi - lo
    lo, hi = map(np.stack, zip(*(bootstrap_interval(cal, p, f, matrices=matrices) for p, f in zip(probs, factors))))
    return (true >= lo - 1e-9) & (true <= hi + 1e-9), hi - lo


#: The interval rule's bar: coverage of the nominal 90% intervals, in %.
INTERVAL_COVERAGE_BAR = 85.0


def interval_decision(rows: dict[str, Any]) -> dict[str, Any]:
    """The interval rule's decision: coverage in the mixed row of groups of DECISION_GROUP, averaged over the
    scenarios, at least INTERVAL_COVERAGE_BAR under every protocol."""
    cov = {p: round(float(np.mean([rows[p][str(DECISION_GROUP)][s]["mixed"]["adjusted_probs"]["coverage"]
                                   for s in SCENARIOS])), 2) for p in PROTOCOLS}
    return {"mean_coverage_over_scenarios": cov, "bar": INTERVAL_COVERAGE_BAR,
            "adopted": all(v >= INTERVAL_COVERAGE_BAR for v in cov.values())}


def decision(rows: dict[str, Any]) -> dict[str, Any]:
    """The rule's decision from a val result's rows: which adjusted estimate (if any) has the lowest distance in
    the mixed row of groups of DECISION_GROUP, averaged over the scenarios, below both unadjusted ones under
    every protocol."""
    mean = {p: {e: float(np.mean([rows[p][str(DECISION_GROUP)][s]["mixed"][e]["tv"] for s in SCENARIOS]))
                for e in ESTIMATES} for p in PROTOCOLS}
    passes = {e: all(mean[p][e] < min(mean[p]["counts"], mean[p]["mean_probs"]) for p in PROTOCOLS)
              for e in ("adjusted_probs", "adjusted_counts")}
    pick: Optional[str] = "adjusted_probs" if passes["adjusted_probs"] else None
    if passes["adjusted_counts"] and (pick is None or all(mean[p]["adjusted_counts"] < mean[p]["adjusted_probs"]
                                                          for p in PROTOCOLS)):
        pick = "adjusted_counts"
    return {"mean_tv_over_scenarios": {p: {e: round(v, 2) for e, v in m.items()} for p, m in mean.items()},
            "passes": passes, "adopted": pick}


def model_probs(model: Any, images: np.ndarray, protocol: str, factor: int) -> np.ndarray:
    """Probabilities (N, C) of faces as small crops under ``protocol`` at ``factor``; ``model`` is
    ``trainer.evaluate.onnx_logits_fn``'s (logits function, preprocessing)."""
    from fsrfer_edge.preprocessing import softmax
    from trainer.evaluate import protocol_logits

    fn, pre = model
    return softmax(protocol_logits(fn, images, factor, pre, protocol, 512)).astype(np.float64)


def study(probs: dict[str, dict[int, np.ndarray]], labels: np.ndarray,
          folds: Sequence[tuple[np.ndarray, GroupCalibration]],
          classes: int, group_sizes: Sequence[int], groups: int, seed: int, intervals: bool = False,
          matrices: Optional[Sequence[Sequence[GroupCalibration]]] = None) -> dict[str, Any]:
    """rows[protocol][group size][scenario][size row][estimate] = {"tv", "tv_sd", "dominant"}; ``folds`` pairs
    each pool of faces the groups are drawn from with the calibration fitted without them; the groups of a cell
    are split evenly between the folds, and the same groups (faces, factors) serve every protocol. With
    ``intervals``, the adjusted mean probabilities also get "coverage" and "interval_width" (:func:`interval_hits`;
    with ``matrices``, one list of resampled calibrations per fold, the intervals resample the matrices too)."""
    rng = np.random.default_rng(seed)
    rows: dict[str, Any] = {p: {} for p in PROTOCOLS}
    for n in group_sizes:
        for p in PROTOCOLS:
            rows[p][str(n)] = {s: {} for s in SCENARIOS}
        for s in SCENARIOS:
            for size in [f"x{f}" for f in FACTORS] + ["mixed"]:
                acc: dict[str, dict[str, list[np.ndarray]]] = {p: {e: [] for e in ESTIMATES} for p in PROTOCOLS}
                dom: dict[str, dict[str, list[np.ndarray]]] = {p: {e: [] for e in ESTIMATES} for p in PROTOCOLS}
                hits: dict[str, list[np.ndarray]] = {p: [] for p in PROTOCOLS}
                widths: dict[str, list[np.ndarray]] = {p: [] for p in PROTOCOLS}
                for k, (pool, cal) in enumerate(folds):
                    g = groups // len(folds) + (k < groups % len(folds))
                    idx = np.stack([draw_group(rng, pool, labels, s, n, classes) for _ in range(g)])
                    fac = (rng.choice(FACTORS, size=idx.shape) if size == "mixed"
                           else np.full(idx.shape, int(size[1:])))
                    true = np.eye(classes)[labels[idx]].mean(1)
                    for p in PROTOCOLS:
                        stack = np.stack([probs[p][f] for f in FACTORS])            # (F, N_faces, C)
                        grp = stack[np.searchsorted(FACTORS, fac), idx]               # (g, n, C)
                        for e, est in estimates(cal, grp, fac.astype(np.float64)).items():
                            acc[p][e].append(tv_distance(est, true))
                            dom[p][e].append(dominant_agrees(est, true))
                        if intervals:
                            h, w = interval_hits(cal, grp, fac.astype(np.float64), true,
                                                 None if matrices is None else matrices[k])
                            hits[p].append(h)
                            widths[p].append(w)
                for p in PROTOCOLS:
                    rows[p][str(n)][s][size] = {e: {"tv": round(float(np.concatenate(acc[p][e]).mean()), 2),
                                                    "tv_sd": round(float(np.concatenate(acc[p][e]).std()), 2),
                                                    "dominant": round(100 * float(np.concatenate(dom[p][e]).mean()), 1)}
                                                for e in ESTIMATES}
                    if intervals:
                        rows[p][str(n)][s][size]["adjusted_probs"].update(
                            coverage=round(100 * float(np.concatenate(hits[p]).mean()), 1),
                            interval_width=round(100 * float(np.concatenate(widths[p]).mean()), 2))
                print(f"n={n} {s:8s} {size:5s} " + "  ".join(
                    f"{p}: " + " ".join(f"{e}={rows[p][str(n)][s][size][e]['tv']:.1f}" for e in ESTIMATES)
                    for p in PROTOCOLS), flush=True)
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "fsrfer_edge" / "models" / "default.onnx"))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fer2013.npz"))
    ap.add_argument("--split", default="val", choices=("val", "test"),
                    help="val: two-fold cross-fitted on val; test: groups from test, matrices from all of val")
    ap.add_argument("--group-sizes", default="10,30,100")
    ap.add_argument("--groups", type=int, default=1000, help="groups per cell (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--fit-protocols", default="small",
                    help="the crops the matrices are measured on, pooled: small (protocol (b), the default), camera "
                         "((c)) or small,camera")
    ap.add_argument("--intervals", action="store_true",
                    help="also measure the coverage and width of bootstrap_interval (nominal 90%%)")
    ap.add_argument("--interval-matrices", action="store_true",
                    help="with --intervals: resample the val faces behind the matrices too (200 sets per fold)")
    ap.add_argument("--json", help="the study's result file")
    ap.add_argument("--write-calibration", metavar="PATH",
                    help="write the model's group calibration (matrices from --fit-protocols crops of all of FER+ val) "
                         "to PATH, e.g. fsrfer_edge/models/default.groups.json or MODEL.groups.json beside your "
                         "model; without --json, nothing else is run")
    args = ap.parse_args(argv)
    if args.json is None and args.write_calibration is None:
        ap.error("give --json, --write-calibration or both")
    try:
        sizes = tuple(int(v) for v in args.group_sizes.split(","))
    except ValueError:
        raise SystemExit(f"--group-sizes {args.group_sizes!r}: expected comma-separated integers")
    if any(v < 1 for v in sizes) or args.groups < 2:
        raise SystemExit("--group-sizes must be >= 1 and --groups >= 2")
    fit_protocols = tuple(args.fit_protocols.split(","))
    if not fit_protocols or any(p not in PROTOCOLS for p in fit_protocols) \
            or len(set(fit_protocols)) < len(fit_protocols):
        raise SystemExit(f"--fit-protocols {args.fit_protocols!r}: expected distinct names among {PROTOCOLS}")
    from fsrfer_edge.ferplus import load_labelled_faces
    from fsrfer_edge.fileio import sha256_file, write_json

    from trainer.evaluate import onnx_logits_fn, sdk_factor

    model = onnx_logits_fn(args.model, threads=args.threads)
    val = load_labelled_faces(args.data, "ferplus", "val")
    val_probs = {p: {f: model_probs(model, val.images, p, f) for f in FACTORS}
                 for p in (PROTOCOLS if args.split == "val" else fit_protocols)}
    names = list(model[1].classes)
    c = len(names)

    def fit(rows: np.ndarray, resamples: int = 0) -> GroupCalibration:
        """Matrices from val faces ``rows``, each as a crop of every fit protocol, pooled (with ``resamples``
        resampled sets too, seed 0)."""
        return GroupCalibration.fit({f: np.concatenate([val_probs[p][f][rows] for p in fit_protocols])
                                     for f in FACTORS},
                                    {f: np.tile(val.labels[rows], len(fit_protocols)) for f in FACTORS}, names,
                                    resamples=resamples)

    crops = " + ".join({"small": "protocol (b) small crops", "camera": "protocol (c) camera-like crops"}[p]
                       for p in fit_protocols)
    if args.write_calibration:
        from fsrfer_edge.metadata import ModelInfo
        import onnx

        info = ModelInfo.from_props({p.key: p.value for p in onnx.load(args.model, load_external_data=False)
                                     .metadata_props}, source=args.model)
        fitted = fit(np.arange(len(val.labels)), RESAMPLES)
        full = dataclasses.replace(fitted, factors=tuple(sdk_factor(int(f), val.images.shape[-1],
                                                                    model[1].input_size) for f in fitted.factors),
                                   checkpoint_sha256=info.checkpoint_sha256, source=(
            f"python scripts/group_estimates.py --model {_shown(args.model)}"
            f"{'' if fit_protocols == ('small',) else ' --fit-protocols ' + args.fit_protocols} --write-calibration "
            f"{args.write_calibration}: FER+ val ({len(val.labels)} faces), {crops}, model sha256 "
            f"{sha256_file(args.model)}"))
        full.save(args.write_calibration)
        print("wrote", args.write_calibration)
        if args.json is None:
            return 0
    if args.split == "val":
        labels, probs = val.labels, val_probs
        halves = np.array_split(np.random.default_rng(args.seed).permutation(len(labels)), 2)
        folds = [(halves[k], fit(halves[1 - k])) for k in range(2)]
    else:
        test = load_labelled_faces(args.data, "ferplus", "test")
        labels = test.labels
        probs = {p: {f: model_probs(model, test.images, p, f) for f in FACTORS} for p in PROTOCOLS}
        folds = [(np.arange(len(labels)), fit(np.arange(len(val.labels))))]
    if args.interval_matrices and not args.intervals:
        raise SystemExit("--interval-matrices goes with --intervals")
    matrices = None
    if args.interval_matrices and args.split == "test":  # the shipped kind: matrices resampled from all of val
        folds = [(pool, fit(np.arange(len(val.labels)), RESAMPLES)) for pool, _ in folds]
    elif args.interval_matrices:  # each fold's matrices come from the other half: resample that half
        matrices = [resampled_calibrations({f: np.concatenate([val_probs[p][f] for p in fit_protocols])
                                            for f in FACTORS},
                                           np.tile(val.labels, len(fit_protocols)), names,
                                           np.concatenate([halves[1 - k] + j * len(val.labels)
                                                           for j in range(len(fit_protocols))]),
                                           seed=args.seed + 1 + k)
                    for k in range(2)]
    rows = study(probs, labels, folds, c, sizes, args.groups, args.seed, args.intervals, matrices)
    cmd = (f"python scripts/group_estimates.py --split {args.split}"
           + ("" if fit_protocols == ("small",) else f" --fit-protocols {args.fit_protocols}")
           + (" --intervals" if args.intervals else "") + (" --interval-matrices" if args.interval_matrices else "")
           + ("" if args.groups == 1000 else f" --groups {args.groups}")
           + ("" if args.group_sizes == "10,30,100" else f" --group-sizes {args.group_sizes}") + f" --json {args.json}")
    doc: dict[str, Any] = {
        "command": cmd, "model": {"path": _shown(args.model), "sha256": sha256_file(args.model)},
        "split": args.split, "n_faces": int(len(labels)), "classes": names, "factors": list(FACTORS),
        "group_sizes": list(sizes), "groups_per_cell": args.groups, "seed": args.seed,
        "dominant_share": DOMINANT_SHARE, "load_average": list(os.getloadavg()),
        "note": "tv: mean total variation distance between estimated and true class shares, in points of the "
                f"group; dominant: % of groups whose largest estimated share is a largest true share. Matrices "
                f"from {crops} of FER+ val (cross-fitted halves on val)",
        "fit_protocols": list(fit_protocols),
        "rows": rows}
    if args.split == "val":
        doc["decision"] = decision(rows)
        print("decision:", doc["decision"])
        if args.intervals:
            doc["interval_decision"] = interval_decision(rows)
            print("interval decision:", doc["interval_decision"])
    write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
