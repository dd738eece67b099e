"""Console entry points: ``fsrfer-train`` and ``fsrfer-eval``."""
from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from fsrfer_edge.backends.onnxruntime_backend import MAX_THREADS
from fsrfer_edge.errors import (BackendUnavailable, CliParser, FsrferError, cli_main, expand_home, one_line, require,
                                 sigterm_interrupts)
from fsrfer_edge.fileio import check_distinct_files, check_output_path, write_json
from fsrfer_edge.preprocessing import FACTORS
from fsrfer_edge.ferplus import FERPLUS_FILE

log = logging.getLogger("trainer")


def _setup_logging(verbose: bool, rank: Optional[int] = None) -> None:
    """``rank``: under torchrun, only rank 0 logs progress; the others log warnings and errors."""
    level = logging.DEBUG if verbose else logging.INFO
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if rank is not None:
        level = level if rank == 0 else logging.WARNING
        fmt = f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, datefmt="%H:%M:%S")


def _factors(text: str) -> tuple[int, ...]:
    try:
        fs = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,2,3,4,6,8; got {text!r}")
    if not fs or min(fs) < 1:
        raise argparse.ArgumentTypeError(f"factors must be integers >= 1; got {text!r}")
    return fs


def positive_minutes(text: str) -> float:
    """argparse type of --time-budget: minutes > 0 (leaving the option out is no limit)."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not v > 0 or math.isinf(v):  # NaN fails the comparison
        raise argparse.ArgumentTypeError(f"expected a number of minutes > 0 (leave it out for no limit); got {text!r}")
    return v


#: The longest --dist-timeout (minutes): ranks waiting longer than a week for rank 0 are stuck, not slow.
MAX_DIST_TIMEOUT_MIN = 7 * 24 * 60.0


def _refuse_empty_paths(ap: argparse.ArgumentParser, args: argparse.Namespace, **expected: str) -> None:
    """An empty path option (``--data "$DATA"`` with the variable unset) is an error, not the current folder nor
    the option left out. ``expected``: per option's dest, what it takes."""
    for dest, what in expected.items():
        value = getattr(args, dest)
        if value is not None and not value.strip():
            ap.error(f"--{dest} {value!r} is an empty path; expected {what}")


def add_sdk_faces_args(ap: argparse.ArgumentParser) -> None:
    """The options of the scripts that give FER+ faces to the SDK as an app would (scripts/app_inputs.py,
    scripts/contrast_floor.py): --model, --data, --split, --threads, --json."""
    repo = Path(__file__).resolve().parents[1]
    ap.add_argument("--model", default=str(repo / "fsrfer_edge" / "models" / "default.onnx"),
                    help="an exported fsrfer ONNX file with float32 input (default: the shipped default)")
    ap.add_argument("--data", default=str(repo.parent / "shared" / "data" / "fer2013.npz"),
                    help="fer2013.npz beside ferplus_labels.npz (default: ../shared/data/fer2013.npz)")
    ap.add_argument("--split", default="val", choices=("val", "test"), help="FER+ split (default val)")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    ap.add_argument("--json", required=True, help="where to write the result file")


def _require_training_libraries(prog: str) -> bool:
    """torch and PyYAML (the ``train`` extra), or one line naming the extra and False."""
    try:
        require("torch", "train", f"{prog}")
        require("yaml", "train", f"{prog}")
    except BackendUnavailable as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return False
    return True


@cli_main
def train_main(argv: Optional[Sequence[str]] = None) -> int:
    started = time.monotonic()  # --time-budget counts from here: importing torch and reading the data count too
    if not _require_training_libraries("fsrfer-train"):
        return 2
    from .train import DEFAULT_STEPS, STEPS

    ap = CliParser(prog="fsrfer-train", description="Train FSR-FER (stage 1, stage 2, ablations, "
                                 "baselines) and evaluate every model per down-sample factor. Several processes "
                                 "(DistributedDataParallel): torchrun --nproc_per_node=N -m trainer.cli ARGS "
                                 "(see docs/ddp.md).")
    ap.add_argument("--config", type=expand_home, required=True, help="YAML config, e.g. configs/tiny.yaml")
    ap.add_argument("--data", type=expand_home, help="data path (overrides the config, synthetic faces included): "
                    "../shared/data/fer2013.npz, fer2013.csv, a RAF-DB root, a folder-per-class tree or a plain .npz "
                    "(images, labels, optional split)")
    ap.add_argument("--out", type=expand_home, help="output directory (default runs/<config name>)")
    ap.add_argument("--resume", action="store_true", help="continue a stopped run from its last checkpoints")
    ap.add_argument("--seed", type=int, metavar="N", help="override the config's seed (every step)")
    ap.add_argument("--steps", default=",".join(DEFAULT_STEPS),
                    help=f"comma-separated subset of {','.join(STEPS)} (default: all but eval-test)")
    ap.add_argument("--time-budget", type=positive_minutes, metavar="MIN",
                    help="stop cleanly at the first epoch end after MIN minutes, or before the next model or "
                    "evaluation once they have passed (continue later with --resume). The minutes count from the "
                    "command's start, reading the data included; the epoch under way when they run out is "
                    "finished first")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"),
                    help="train on this device (overrides the config's 'device', default auto: cuda when torch "
                    "sees a GPU, else cpu). Under torchrun, cuda = one GPU per process (cuda:LOCAL_RANK) with NCCL, "
                    "cpu = gloo")
    ap.add_argument("--dist-timeout", type=float, default=60.0, metavar="MIN",
                    help="under torchrun: how long ranks wait while rank 0 works alone (feature extraction, "
                    "evaluation) before giving up (default 60)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    _refuse_empty_paths(ap, args, data="a data path, or leave --data out for the config's data",
                        out="a folder, or leave --out out for runs/<config name>")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        ap.error(f"--seed {args.seed}: expected an integer >= 0 and < 2**63")
    if not 0 < args.dist_timeout <= MAX_DIST_TIMEOUT_MIN:  # NaN fails the comparison; 1e300 overflows a timedelta
        ap.error(f"--dist-timeout {args.dist_timeout:g}: expected a number of minutes > 0 and at most "
                 f"{MAX_DIST_TIMEOUT_MIN:g} (a week)")
    steps = tuple(s for s in args.steps.split(",") if s)
    if not steps:  # else nothing would run, and the run would stop at the missing stage-1 model
        ap.error(f"--steps {args.steps!r} names no step; expected a comma-separated subset of {','.join(STEPS)}, "
                 "or leave it out for all but eval-test")
    bad = set(steps) - set(STEPS)
    if bad:
        ap.error(f"unknown step(s) {sorted(bad)}; expected a subset of {list(STEPS)}")
    import dataclasses

    from . import config, distributed

    tag = ""
    out: Optional[Path] = None  # known once the config is read
    try:
        with sigterm_interrupts():  # SIGTERM (kill, a job scheduler) takes the Ctrl-C path below
            cfg = config.load(args.config)
            # "auto" is settled here, once, so that every rank trains on the same kind of device and the
            # run's config.json says which.
            cfg = dataclasses.replace(cfg, device=config.resolve_device(args.device or cfg.device))
            if args.seed is not None:
                cfg = dataclasses.replace(cfg, seed=args.seed)
            if args.data:  # overrides the config, its synthetic faces too; recorded (config.json, models) as used
                cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=os.path.abspath(args.data),
                                                                        synthetic=0))
            ctx = distributed.init_from_env(cfg.device, args.dist_timeout)  # single-process unless run by torchrun
            tag = f" [rank {ctx.rank}]" if ctx.distributed else ""
            _setup_logging(args.verbose, ctx.rank if ctx.distributed else None)
            from .train import load_data, run_pipeline

            out = Path(args.out or f"runs/{cfg.name}")
            if out.exists() and not out.is_dir():
                raise FsrferError(f"--out {out} is a file; expected a folder for the run (it is created if missing)")
            check_output_path(out / "config.json", "--out")
            if args.resume and ctx.rank == 0 and not (out / "state").is_dir():
                # a mistyped --out would otherwise look like a resumed run (a killed run's half-written files go
                # in run_pipeline, under the folder's lock, whether it resumes or not)
                log.warning("--resume: nothing to resume in %s (no state/ folder from an earlier run); "
                            "starting a new run there", out)
            data = load_data(cfg, config.resolve_data_path(cfg, None, args.config))
            done = run_pipeline(cfg, data, out, resume=args.resume, steps=steps, time_budget_min=args.time_budget,
                                started=started)
    except FsrferError as exc:
        resume = f"; once fixed, {_continue_with(argv, args, out, tag)}" if isinstance(exc, OSError) and out else ""
        print(f"fsrfer-train: error{tag}: {one_line(exc)}{resume}", file=sys.stderr)  # a WriteError: resumable
        return 2
    except BrokenPipeError:  # stdout's or stderr's reader went: cli_main ends quietly
        raise
    except OSError as exc:  # the disk, not the run's data or config: a folder that cannot be made, an I/O error
        resume = f"; once fixed, {_continue_with(argv, args, out, tag)}" if out else ""
        print(f"fsrfer-train: error{tag}: {_disk_error(exc)}{resume}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: every finished epoch is checkpointed, so say how to go on
        print(f"fsrfer-train: interrupted{tag}; the epoch under way is lost, the finished ones are kept. "
              f"{_continue_with(argv, args, out, tag)}", file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()
    if ctx.rank != 0:  # rank 0 reports for all
        return 0 if done else 3
    if not done:
        print(f"stopped early; {_continue_with(argv, args, out, tag)}", file=sys.stderr)
        return 3
    evaluated = "eval" in steps or "eval-test" in steps  # else OUT/eval was not made (or is an earlier run's)
    print(f"done: models in {out / 'models'}" + (f", evaluation in {out / 'eval'}" if evaluated else ""))
    return 0


def _disk_error(exc: OSError) -> str:
    """One line for an OSError of the disk that is not one of the package's own errors: the file, what went wrong."""
    where = f"{exc.filename}: " if exc.filename else ""
    why = exc.strerror or one_line(exc)
    return (f"a file could not be read or written ({where}{why}); check the disk (free space, permissions), "
            "then try again")


def _continue_with(argv: Optional[Sequence[str]], args: argparse.Namespace, out: Optional[Path], tag: str) -> str:
    """The command that resumes this run: the same arguments (seed, steps, data, device, time budget), so that
    the run goes on as it began."""
    if tag:
        return "continue with: the same torchrun command with --resume"
    same = list(sys.argv[1:] if argv is None else argv)
    same += [] if "--resume" in same else ["--resume"]
    same += [] if args.out or out is None else ["--out", str(out)]
    return "continue with: fsrfer-train " + shlex.join(same)


@cli_main
def eval_main(argv: Optional[Sequence[str]] = None) -> int:
    ap = CliParser(prog="fsrfer-eval", description="Evaluate a checkpoint (.pt, any method) or an "
                                 "exported model (.onnx, on ONNX Runtime CPU) per down-sample factor.")
    ap.add_argument("--checkpoint", type=expand_home, required=True, help="model checkpoint from fsrfer-train (.pt) or fsrfer-export (.onnx)")
    ap.add_argument("--data", type=expand_home, required=True, help="data path, e.g. ../shared/data/fer2013.npz")
    ap.add_argument("--labels", choices=("ferplus", "fer2013"),
                    help="label set for .npz data (fer2013.npz, or a folder holding it; default ferplus); other data "
                    "is scored with its own labels")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--factors", type=_factors, default=FACTORS, help="e.g. 1,2,3,4,6,8")
    ap.add_argument("--protocol", default="resized", choices=("resized", "small", "camera"),
                    help="how LR faces reach the model: resized back to the model size (the tables' protocol), "
                         "small crops through the SDK's preprocessing, or camera-like crops (area down-sampling "
                         "and JPEG quality 50)")
    ap.add_argument("--limit", type=int, default=0, help="evaluate on a seeded subset of this many faces (default 0: "
                    "every face of the split)")
    ap.add_argument("--threads", type=int, default=0,
                    help=f"CPU threads, 1 to {MAX_THREADS} (default 0: the library's default)")
    ap.add_argument("--json", type=expand_home, required=True, help="output JSON path")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    _refuse_empty_paths(ap, args, checkpoint="a .pt or .onnx file", data="a data path, e.g. ../shared/data/fer2013.npz")
    _setup_logging(args.verbose)
    try:
        check_output_path(args.json, "--json")
        data_path = Path(args.data)
        from .data import npz_path  # no torch

        npz = npz_path(data_path)
        if npz is None and args.labels:  # a CSV, RAF-DB or image folder has one label set: its own
            raise FsrferError(f"--labels {args.labels} applies to .npz data (fer2013.npz, or a folder holding it); "
                              f"{data_path} is not, and is scored with its own labels: leave --labels out")
        labels_file = npz.with_name(FERPLUS_FILE) if npz else None  # read beside the data for the FER+ labels
        check_distinct_files([("--checkpoint", args.checkpoint), ("--data", args.data), ("the FER+ labels", labels_file),
                              ("--json", args.json)], inputs=3)
        if args.limit < 0:
            raise FsrferError(f"--limit {args.limit}; expected 0 (every face) or a positive number of faces")
        if not 0 <= args.threads <= MAX_THREADS:  # the .onnx path's bounds, for a .pt checkpoint too
            raise FsrferError(f"--threads {args.threads}; expected an integer from 1 to {MAX_THREADS}, or 0 for the "
                              "library's default")
        if Path(args.checkpoint).suffix != ".onnx":
            require("torch", "train", "evaluating a .pt checkpoint (an exported .onnx model needs only onnxruntime)")
        import numpy as np

        from .data import load_dataset
        from .evaluate import evaluate_fn, onnx_logits_fn, torch_logits_fn

        path = Path(args.checkpoint)
        if path.suffix == ".onnx":
            fn, pre = onnx_logits_fn(path, args.threads or None)
        else:
            from . import checkpoint

            if args.threads:
                import torch

                torch.set_num_threads(args.threads)
            model, pre, _ = checkpoint.load_model(path)
            fn = torch_logits_fn(model)
        kw = {"labels": args.labels or "ferplus"} if npz else {}
        fs = load_dataset(data_path, **kw)
        if args.split not in fs.splits:  # subset()'s own message speaks to library users (take())
            raise FsrferError(f"{data_path} has no faces in split {args.split!r} (with {fs.source} labels); "
                              f"splits present: {list(fs.splits)}: pass one of them with --split")
        fs = fs.subset(args.split)
        images, labels = fs.images, fs.labels.astype(np.int64)
        if args.limit and args.limit < len(labels):
            idx = np.sort(np.random.default_rng(0).choice(len(labels), args.limit, replace=False))
            images, labels = images[idx], labels[idx]
        res = evaluate_fn(fn, images, labels, args.factors, pre, protocol=args.protocol)
        # The labels scored against, as loaded: a plain .npz has its own ("npz"), whatever --labels says.
        res.update(checkpoint=str(path), data=str(data_path), labels=fs.source, split=args.split)
        write_json(args.json, res)
    except FsrferError as exc:
        print(f"fsrfer-eval: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise
    except OSError as exc:
        print(f"fsrfer-eval: error: {_disk_error(exc)}", file=sys.stderr)
        return 2
    print(f"{res['n']} {args.split} faces, {res['labels']} labels: "
          + " ".join(f"x{f}: {100 * v['accuracy']:.2f}%" for f, v in res["factors"].items()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train_main())
