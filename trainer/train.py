"""The FSR-FER pipeline: stage 1 (HR FER model), stage 2 (feature SR GAN) with ablations, baselines,
and per-factor evaluation. Every step writes its model checkpoint to ``OUT/models/`` and is skipped
when that file exists; every training is resumable per epoch (see :mod:`trainer.runner`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Optional, cast

import numpy as np
import torch
from torch import nn

from fsrfer_edge.errors import ConfigError, DataError, ModelError
from fsrfer_edge.fileio import FolderInUse, atomic_write, folder_lock, remove_partial_writes, sha256_file
from fsrfer_edge.preprocessing import Preprocessing

from . import checkpoint, distributed, losses
from .config import LossConfig, TrainConfig, ablated, resolve_device
from .evaluate import degraded_inputs, evaluate_fn, torch_logits_fn, write_json
from .models import (DeepGenerator, FeatureCritic, Head, InferenceModel, LevelHead, ResNetTrunk,
                     SpatialFeatureCritic, create_generator)
from .runner import EpochRunner, cosine_lr, differences, listed, set_lr, time_is_up

log = logging.getLogger(__name__)

PRE = Preprocessing()


@dataclasses.dataclass
class Split:
    images: np.ndarray  # (N, 48, 48) uint8
    labels: np.ndarray  # (N,) int64
    targets: Optional[np.ndarray] = None  # (N, 7) float32 soft labels (FER+ votes), when data.soft_labels

    def take(self, idx: np.ndarray) -> "Split":
        return Split(self.images[idx], self.labels[idx], None if self.targets is None else self.targets[idx])


@dataclasses.dataclass
class Data:
    train: Split
    val: Split
    test: Split
    source: str

    @functools.cached_property
    def sha256(self) -> str:
        """SHA-256 of the faces, labels and vote distributions the run trains on and picks its epochs by (the
        train and val splits, as loaded: after ``data.limit_*``): what a stopped stage's state, a finished model
        and stage 2's feature cache record of the data, so that an archive written again at the same path, with
        other faces, is told apart. Computed once per :class:`Data` (well under a second for all of FER2013)."""
        import hashlib

        h = hashlib.sha256()
        for name, split in (("train", self.train), ("val", self.val)):
            for what, a in (("images", split.images), ("labels", split.labels), ("targets", split.targets)):
                if a is None:
                    continue
                a = np.ascontiguousarray(a)  # the bytes in C order, with dtype and shape: one reading per array
                h.update(f"{name}.{what}|{a.dtype.str}|{a.shape}|".encode())
                h.update(a.data)
        return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def load_data(cfg: TrainConfig, path: Optional[Path]) -> Data:
    """Load the configured data set and apply the configured subset limits."""
    if cfg.data.synthetic:
        from .synthetic import make_faces

        if cfg.data.soft_labels:
            raise DataError("data.soft_labels needs the FER+ votes; synthetic faces have none")

        n = cfg.data.synthetic
        imgs, labels = make_faces(n, seed=cfg.seed)
        a, b = int(0.7 * n), int(0.85 * n)
        if b == a:
            raise DataError(f"data.synthetic: {n} faces leave the val split empty (faces are split 70/15/15% into "
                            "train, val and test, and val chooses the models); expected at least 4 faces")
        splits = {"train": Split(imgs[:a], labels[:a]), "val": Split(imgs[a:b], labels[a:b]),
                  "test": Split(imgs[b:], labels[b:])}
        source = f"synthetic({n}, seed={cfg.seed})"
    else:
        from .data import load_dataset, npz_path

        if path is None or not path.exists():
            raise DataError(f"data not found at {path}; pass --data PATH (e.g. ../shared/data/fer2013.npz) "
                            "or set data.synthetic in the config")
        kw = {"labels": cfg.data.labels} if npz_path(path) is not None else {}  # a folder holding fer2013.npz too
        fs = load_dataset(path, **kw)
        splits = {}
        if cfg.data.soft_labels and fs.targets is None:
            raise DataError(f"data.soft_labels is set but {path} comes with no vote distributions; soft labels "
                            "need the FER+ votes (ferplus_labels.npz with a 'votes' array, data.labels: ferplus)")
        for name in ("train", "val", "test"):
            sub = fs.subset(name)
            targets = sub.targets if cfg.data.soft_labels else None
            splits[name] = Split(sub.images, sub.labels.astype(np.int64), targets)
        if len(splits["val"].labels) == 0:
            raise DataError(f"{path} has no 'val' split; one is needed to choose models")
        source = str(path)
    for name, limit in (("train", cfg.data.limit_train), ("val", cfg.data.limit_eval), ("test", cfg.data.limit_eval)):
        s = splits[name]
        if limit and len(s.labels) > limit:
            idx = np.sort(np.random.default_rng([cfg.seed, 7]).choice(len(s.labels), limit, replace=False))
            splits[name] = s.take(idx)
    for name, s in splits.items():
        if s.images.ndim != 3 or s.images.shape[1:] != (PRE.input_size, PRE.input_size):
            raise DataError(f"{source}: {name} images have shape {s.images.shape}; expected (N, "
                            f"{PRE.input_size}, {PRE.input_size}) gray faces")
    log.info("data %s: train %d, val %d, test %d", source, len(splits["train"].labels),
             len(splits["val"].labels), len(splits["test"].labels))
    return Data(splits["train"], splits["val"], splits["test"], source)


def _degrade_cfg(cfg: TrainConfig, factors: Optional[tuple[int, ...]] = None) -> Any:
    """The trainer's DegradeConfig from the YAML ``degrade`` section (``factors`` overrides)."""
    from .degrade import DegradeConfig

    d = cfg.degrade
    return DegradeConfig(factors=tuple(factors or d.factors), blur_prob=d.blur_prob, noise_prob=d.noise_prob,
                         jpeg_prob=d.jpeg_prob, jpeg_quality=(d.jpeg_quality[0], d.jpeg_quality[-1]),
                         kernels=tuple(d.kernels), clean_x1=d.clean_x1)


def _batches(n: int, bs: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled index batches; the last incomplete batch is dropped (BatchNorm needs > 1 sample)."""
    perm = rng.permutation(n)
    if n < bs:
        return [perm]
    return [perm[i:i + bs] for i in range(0, n - bs + 1, bs)]


def _tensor(pixels: np.ndarray) -> torch.Tensor:
    """Pixel values (N,H,W) in [0,255] -> normalised (N,1,H,W) float32 tensor (same code as runtime)."""
    return torch.from_numpy(PRE.normalize(pixels)[:, None])


def train_device(cfg: TrainConfig) -> torch.device:
    """The device this process trains on: the CPU, or its GPU (``cuda:LOCAL_RANK`` under torchrun,
    selected by :func:`trainer.distributed.init_from_env`).

    Data order, augmentation and degradation stay on the CPU (numpy, seeded per epoch), so they do not
    depend on the device; batches, models and losses live on the device.

    Raises:
        ConfigError: ``cfg.device`` is "cuda" where torch sees no GPU, or does not match the process
            group's backend under torchrun.
    """
    name = resolve_device(cfg.device)
    distributed.check_device(name)
    return torch.device("cuda", torch.cuda.current_device()) if name == "cuda" else torch.device("cpu")


def _mean_acc(model: nn.Module, split: Split, factors: tuple[int, ...], bs: int) -> float:
    return evaluate_fn(torch_logits_fn(model), split.images, split.labels, factors, PRE, bs)["mean_accuracy"]


# ---------------------------------------------------------------------------------------------
# Stage 1 and the LR-fine-tuned baseline
# ---------------------------------------------------------------------------------------------


def _augment(cfg: TrainConfig, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The training augmentation of HR faces (``stage1.augment``, ``stage1.rotate``, ``stage1.scale``,
    ``stage1.erase``)."""
    from .degrade import augment_hr

    s1 = cfg.stage1
    return augment_hr(images, rng, rotate=s1.rotate, scale=s1.scale, erase=s1.erase) if s1.augment else images


def _classifier_epoch(model: nn.Module, opt: torch.optim.Optimizer, split: Split, cfg: TrainConfig, epochs: int,
                      lr: float, lr_inputs: bool, dev: torch.device, teacher: Optional[nn.Module | CachedAnswers] = None,
                      constant_lr: bool = False, distill: Optional[tuple[float, float]] = None,
                      mixup: float = 0.0) -> Any:
    """One classifier epoch (stage 1, the LR-fine-tuned baseline). ``teacher``: a frozen model whose
    answer on each HR face (after augmentation) the model's answer on its input (the LR version, with
    ``lr_inputs``) is distilled towards, with ``distill`` = (weight, temperature); by default the
    LR-fine-tuned baseline's (``baselines.lr_finetune_distill``, ``stage2.losses.distill_temperature``).
    The rate follows a cosine over ``epochs`` unless ``constant_lr`` (weight averaging, ``stage1.swa_epochs``).
    ``mixup`` > 0 blends each (global) batch with a shuffled copy of itself (``stage1.mixup``, :func:`mix_batch`)."""
    from .degrade import random_lr

    ce = nn.CrossEntropyLoss(label_smoothing=cfg.stage1.label_smoothing)
    smooth = cfg.stage1.label_smoothing
    dcfg = _degrade_cfg(cfg)
    distributed.check_global_batch(cfg.stage1.batch_size, len(split.labels), "stage1.batch_size")
    kd_weight, kd_temperature = distill or (cfg.baselines.lr_finetune_distill, cfg.stage2.losses.distill_temperature)

    def train_epoch(epoch: int, rng: np.random.Generator) -> dict[str, float]:
        distributed.seed_torch_per_rank()  # DDP: each rank its own dropout masks
        batches = _batches(len(split.labels), cfg.stage1.batch_size, rng)
        # Sums stay on the device (no wait for the GPU at every step); float64 sums of the same
        # products in the same order as Python floats would give.
        tot = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        n = 0
        for step, idx in enumerate(batches):
            set_lr(opt, lr if constant_lr else
                   cosine_lr(lr, epoch, step, len(batches), epochs, warmup_epochs=min(1.0, epochs / 10)))
            imgs = _augment(cfg, split.images[idx], rng)
            pix = random_lr(imgs, dcfg, rng)[0] if lr_inputs else imgs.astype(np.float32)
            lam, perm = mix_batch(len(idx), mixup, rng)
            if perm is not None:
                pix = lam * pix + (1.0 - lam) * pix[perm]
            # DDP: every rank prepares the whole global batch (the random stream of one process) and
            # trains on its block of rows; all rows when single-process.
            rows = distributed.shard_slice(len(idx))
            x, y = _tensor(pix[rows]).to(dev), torch.from_numpy(split.labels[idx][rows]).to(dev)
            logits = model(x)
            if split.targets is None:
                loss = ce(logits, y)
                if perm is not None:
                    loss = lam * loss + (1.0 - lam) * ce(logits, torch.from_numpy(split.labels[idx][perm][rows]).to(dev))
            else:  # soft labels (the annotators' votes), smoothed like the hard ones
                votes = split.targets[idx]
                if perm is not None:
                    votes = lam * votes + (1.0 - lam) * votes[perm]
                t = torch.from_numpy(np.ascontiguousarray(votes[rows], dtype=np.float32)).to(dev)
                loss = losses.soft_cross_entropy(logits, losses.smoothed(t, smooth))
            if isinstance(teacher, CachedAnswers):  # the clean faces' answers (no mixup: config check)
                t_logits = teacher.lookup(idx[rows], dev)
            elif teacher is not None:
                with torch.no_grad():
                    # Stage 1's input is the HR face itself: the teacher reads the same tensor.
                    t_logits = teacher(_tensor(imgs[rows].astype(np.float32)).to(dev) if lr_inputs else x)
            if teacher is not None:
                kd = losses.distillation(logits, t_logits, kd_temperature).mean()
                loss = loss + kd_weight * kd
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.detach().double() * len(y)
            correct += (logits.argmax(1) == y).sum()
            n += len(y)
        all_tot, all_correct, all_n = distributed.all_reduce_sum([tot.item(), int(correct.item()), n])
        return {"loss": all_tot / all_n, "train_acc": all_correct / all_n}

    return train_epoch


def mix_batch(n: int, alpha: float, rng: np.random.Generator) -> tuple[float, Optional[np.ndarray]]:
    """Mixup's draw for a batch of ``n``: (lam ~ Beta(alpha, alpha), a permutation of the rows), or
    (1.0, None) without drawing anything when ``alpha`` is 0 (the random stream stays the plain one)."""
    if alpha <= 0.0:
        return 1.0, None
    return float(rng.beta(alpha, alpha)), rng.permutation(n)


def _sgd(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.stage1.momentum,
                           weight_decay=cfg.stage1.weight_decay, nesterov=True)


def spec_for(cfg: TrainConfig, method: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"method": method, "backbone": cfg.model.backbone, "head_hidden": cfg.model.head_hidden,
                            "dropout": cfg.model.dropout, "num_classes": len(PRE.classes), "in_channels": PRE.channels}
    if method == "fsrfer":
        spec["generator"] = {"blocks": cfg.stage2.generator_blocks, "growth": cfg.stage2.generator_growth}
        if cfg.stage2.generator_start:
            spec["generator"].update(start=cfg.stage2.generator_start, scale_aware=cfg.stage2.scale_aware)
            if cfg.stage2.copy_batchnorm != "hr":  # older checkpoints' specs stay as they were
                spec["generator"]["batchnorm"] = cfg.stage2.copy_batchnorm
            if cfg.stage2.copy_batchnorm == "per_factor":  # statistics for each factor G trains on
                spec["generator"]["batchnorm_anchors"] = sorted(set(cfg.degrade.factors) | {1})
            if cfg.stage2.film_at != "blocks":  # older checkpoints' specs stay as they were
                spec["generator"]["film_at"] = cfg.stage2.film_at
            if cfg.stage2.route_hr:
                spec["route_hr_below"] = math.sqrt(2.0)
            if cfg.stage2.adapter_width:
                spec["generator"].update(adapter_width=cfg.stage2.adapter_width, gate=cfg.stage2.adapter_gate)
                if cfg.stage2.adapter_top_width:
                    spec["generator"]["adapter_top_width"] = cfg.stage2.adapter_top_width
        if cfg.stage2.feature_level != "embedding":
            spec["feature_level"] = cfg.stage2.feature_level
    if method == "image_sr":
        spec["sr"] = {"width": cfg.baselines.image_sr_width, "blocks": cfg.baselines.image_sr_blocks}
    return spec


def _save_model(out: Path, name: str, model: InferenceModel, cfg: TrainConfig, runner: Optional[EpochRunner],
                extra: Optional[dict[str, Any]] = None) -> Path:
    path = out / "models" / f"{name}.pt"
    meta = {"name": name, "config": cfg.to_dict(), "history": runner.history if runner else [],
            "best_val_score": runner.best_score if runner else None, **(extra or {})}
    data_sha256 = (runner.settings or {}).get("data_sha256") if runner else None
    if data_sha256:  # the data it was trained on (Data.sha256), which check_same_settings compares
        meta["data_sha256"] = data_sha256
    if distributed.is_main():
        checkpoint.save(path, checkpoint.model_payload(model, model.spec, PRE, meta))
        log.info("wrote %s", path)
    distributed.barrier()  # the other ranks may read it next (stage 2 loads hr.pt)
    return path


def _runner(cfg: TrainConfig, out: Path, stage: str, model: str, modules: dict[str, nn.Module],
            optimizers: dict[str, torch.optim.Optimizer], epochs: int, hr_fer: Optional[str] = None,
            data_sha256: Optional[str] = None) -> EpochRunner:
    """The runner of ``stage`` (its state: OUT/state/STAGE.pt), a stage of model ``model``: the state keeps the
    settings that decide that model's weights (:func:`_settings_for`), and --resume refuses it under others (a
    setting the state lacks, an option added since it was written, counts as its default).

    ``hr_fer``: for a model that starts from the HR model (stage 2, the baselines), the weights SHA-256 of its
    FER network (:func:`hr_identity`); the state keeps it, and --resume refuses it against another HR model (one
    trained again since: G, or the fine-tuned copy, was fitted to the old one).

    Beside them, for every model but the HR one, ``eval.factors``: the val score that picks the best epoch is the
    mean accuracy over those factors, so a stage resumed under others would choose among its epochs by two measures
    (stage 1 scores HR faces alone). They are not among a finished model's settings (:func:`check_same_settings`):
    evaluating it, or keeping it, at other factors is sound; only a stage half-trained under one measure is not.
    Sorted: their order does not change the mean. States from before they were recorded resume (not compared).

    ``data_sha256``: the data's fingerprint (:attr:`Data.sha256`), kept among the settings as ``data_sha256``: the
    data's path alone does not tell an archive written again there, with other faces, from the one the stage
    started on. A state written before it was recorded lacks the key and resumes (not compared); without
    ``data_sha256`` (a caller that checks the other settings alone) the state's own is kept: not compared either."""
    settings = _stage_settings(model, cfg)
    state = out / "state" / f"{stage}.pt"
    if data_sha256 is None and state.is_file():
        with contextlib.suppress(ModelError):  # an unreadable state is reported where the stage reads it
            saved = checkpoint.load(state, kind="state").get("settings")
            data_sha256 = saved.get("data_sha256") if isinstance(saved, dict) else None
    if data_sha256:
        settings["data_sha256"] = data_sha256
    return EpochRunner(stage, state, modules, optimizers, epochs, cfg.seed,
                       settings, _stage_settings(model, TrainConfig()), {"HR model": hr_fer} if hr_fer else None,
                       _diverged_hint(cfg, out, stage, model))


def _rates_of(cfg: TrainConfig, stage: str) -> list[tuple[str, float]]:
    """The config's learning rates that ``stage`` trains with, by dotted key."""
    if stage == "stage1":
        return [("stage1.lr", cfg.stage1.lr)]
    if stage == "stage1_swa":
        return [("stage1.swa_lr", cfg.stage1.swa_lr)]
    if stage.endswith(".pretrain"):
        return [("stage2.pretrain_lr", cfg.stage2.pretrain_lr)]
    if stage.endswith(".gan"):
        return [("stage2.lr_g", cfg.stage2.lr_g), ("stage2.lr_d", cfg.stage2.lr_d)]
    if stage == "lr_finetune":
        return [("baselines.lr_finetune_lr", cfg.baselines.lr_finetune_lr)]
    if stage == "image_sr":
        return [("baselines.image_sr_lr", cfg.baselines.image_sr_lr)]
    return []


def _diverged_hint(cfg: TrainConfig, out: Path, stage: str, model: str) -> str:
    """What to do when ``stage`` diverges (:class:`trainer.runner.TrainingDiverged`): lower its learning rates, and
    train it again from the start (every state of ``model`` carries the rates among its settings, so --resume refuses
    them under lower ones)."""
    rates = " and ".join(f"{k} (now {v!r})" for k, v in _rates_of(cfg, stage)) or "the learning rate"
    states = (["stage1.pt", "stage1_swa.pt"] if model == "hr" else [f"{model}.pretrain.pt", f"{model}.gan.pt"]
              if model.startswith("fsrfer") else [f"{model}.pt"])
    return (f"The learning rate is likely too high: lower {rates} in the config, then train into a new --out, or "
            f"here with --resume after moving {' and '.join(states)} (where present) out of {out / 'state'} (--resume "
            "refuses a stage stopped under another rate; it keeps the finished models that the change leaves alone)")


def _stage_settings(model: str, cfg: TrainConfig) -> dict[str, Any]:
    """What a stage of ``model`` keeps in its state and compares on --resume (see :func:`_runner`)."""
    settings = _settings_for(model, cfg.to_dict())
    if model != "hr":
        settings["eval"] = {"factors": sorted(cfg.eval.factors)}
    return settings


def hr_identity(fer: nn.Module) -> str:
    """What stage 2 and the baselines record of the HR model they start from: its FER network's weights SHA-256
    (:func:`trainer.checkpoint.weights_sha256`; a re-stored file of the same network is the same model)."""
    return checkpoint.weights_sha256(fer)


def train_stage1(cfg: TrainConfig, data: Data, out: Path, resume: bool, stop_after: Optional[int] = None,
                 deadline: Optional[float] = None) -> Optional[Path]:
    """Train the HR FER model. Returns the model checkpoint path, or None if stopped early."""
    dev = train_device(cfg)
    torch.manual_seed(cfg.seed)  # initial weights must not depend on what ran before (resume)
    model = InferenceModel(spec_for(cfg, "hr")).to(dev)  # made on the CPU: the same weights on every device
    init = stage1_init(cfg, model) if cfg.stage1.init else None
    opt = _sgd(model.fer, cfg, cfg.stage1.lr)
    runner = _runner(cfg, out, "stage1", "hr", {"fer": model.fer}, {"opt": opt}, cfg.stage1.epochs,
                     data_sha256=data.sha256)
    teacher, taught = stage1_teacher(cfg, dev, data.train)
    step = _classifier_epoch(distributed.wrap_ddp(model.fer), opt, data.train, cfg, cfg.stage1.epochs, cfg.stage1.lr,
                             lr_inputs=False, dev=dev, teacher=teacher,
                             distill=(cfg.stage1.distill, cfg.stage1.distill_temperature), mixup=cfg.stage1.mixup)
    if not runner.run(step, lambda: _mean_acc(model, data.val, (1,), cfg.eval.batch_size), resume, stop_after, deadline):
        return None
    runner.load_best()
    extra: dict[str, Any] = {"stage1_init": init} if init else {}
    if taught:
        extra["stage1_distill"] = taught
    if cfg.stage1.swa_epochs:
        if runner.epochs_run and time_is_up(deadline, "stage1_swa"):  # stage 1 ended past the budget
            return None
        swa_runner = _stage1_swa(cfg, data, model, out, resume, stop_after, deadline, dev)
        if swa_runner is None:
            return None
        runner = swa_runner
        extra["swa"] = {"epochs": cfg.stage1.swa_epochs, "lr": cfg.stage1.swa_lr}
    return _save_model(out, "hr", model.eval(), cfg, runner, extra or None)


def _stage1_swa(cfg: TrainConfig, data: Data, model: InferenceModel, out: Path, resume: bool,
                stop_after: Optional[int], deadline: Optional[float], dev: torch.device) -> Optional[EpochRunner]:
    """``stage1.swa_epochs`` epochs at the constant ``stage1.swa_lr`` from ``model``'s weights, averaging the
    weights at the end of each (``torch.optim.swa_utils``); after each epoch the average gets BatchNorm
    statistics recomputed on the (unaugmented) training faces and is scored on val. Leaves the best-scoring
    average in ``model.fer``; returns the runner (its history), or None if stopped early."""
    from torch.optim.swa_utils import AveragedModel, update_bn

    avg = AveragedModel(model.fer)
    opt = _sgd(model.fer, cfg, cfg.stage1.swa_lr)
    runner = _runner(cfg, out, "stage1_swa", "hr", {"fer": model.fer, "swa": avg}, {"opt": opt}, cfg.stage1.swa_epochs,
                     data_sha256=data.sha256)
    epoch_fn = _classifier_epoch(distributed.wrap_ddp(model.fer), opt, data.train, cfg, cfg.stage1.swa_epochs,
                                 cfg.stage1.swa_lr, lr_inputs=False, dev=dev, constant_lr=True)

    def step(epoch: int, rng: np.random.Generator) -> dict[str, float]:
        stats = epoch_fn(epoch, rng)
        avg.update_parameters(model.fer)
        return stats

    def evaluate() -> float:
        # BatchNorm statistics of the averaged weights: the plain mean over the (unaugmented) training faces.
        imgs, bs = data.train.images, cfg.eval.batch_size
        with torch.no_grad():
            update_bn((_tensor(imgs[s:s + bs].astype(np.float32)) for s in range(0, len(imgs), bs)), avg.module, dev)
        return _mean_acc(avg.module, data.val, (1,), cfg.eval.batch_size)

    if not runner.run(step, evaluate, resume, stop_after, deadline):
        return None
    runner.load_best()
    model.fer.load_state_dict(avg.module.state_dict())
    return runner


def _checkpoint_path(option: str, value: str, expected: str = "a model checkpoint (models/*.pt of a run, "
                     "or fsrfer_edge/models/default.pt)") -> Path:
    """A config option's model checkpoint path (relative: from the repository root), which must exist."""
    path = Path(value)
    if not path.is_absolute():
        path = Path(__file__).resolve().parents[1] / path
    if not path.is_file():
        raise DataError(f"{option}: {path} does not exist; expected {expected}")
    return path


def ensemble_teacher(paths: list[Path]) -> nn.Module:
    """The FER networks of ``paths``, frozen, answering as the test-time flip does (the mean of each one's
    softmaxes on a face and its mirror image), as log-probabilities; several make an ensemble (the mean of
    the members' flip-averaged softmaxes)."""
    from fsrfer_edge.export.onnx_export import flip_average

    members = [flip_average(load_fer(p).fer.eval().requires_grad_(False), PRE.input_size) for p in paths]
    return members[0] if len(members) == 1 else _MeanOfLogProbs(members)


ANSWERS_FORMAT = "fsrfer-teacher-answers/1"


def faces_sha256(images: np.ndarray) -> str:
    """SHA-256 of a face array's bytes (C order): what ties teacher answers to the faces they answer."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


class CachedAnswers:
    """A teacher's answers precomputed on the unaugmented training faces (``scripts/teacher_answers.py``):
    log-probabilities, one row per face of the training split, looked up by the batch's face indices. The
    teacher then answers an augmented face with its clean face's answer, as the votes do."""

    def __init__(self, log_probs: torch.Tensor) -> None:
        self.log_probs = log_probs

    def lookup(self, idx: np.ndarray, dev: torch.device) -> torch.Tensor:
        return self.log_probs[torch.from_numpy(np.asarray(idx, dtype=np.int64))].to(dev)


def teacher_answers(paths: list[Path], images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """:func:`ensemble_teacher`'s answers (log-probabilities, float32 (N, classes)) on ``images`` as they
    are (uint8 (N, 48, 48) faces, no augmentation), on the CPU."""
    teacher = ensemble_teacher(paths)
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            out.append(teacher(_tensor(images[i:i + batch_size].astype(np.float32))).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, len(PRE.classes)), np.float32)


def write_answers(path: Path, log_probs: np.ndarray, images: np.ndarray, members: list[str]) -> Path:
    """Write teacher answers for :func:`load_answers` (atomically: no half-written file is left)."""
    import io

    from fsrfer_edge.fileio import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, format=np.array(ANSWERS_FORMAT), log_probs=log_probs.astype(np.float32),
             faces_sha256=np.array(faces_sha256(images)), members=np.array(members))
    return atomic_write_bytes(path, buf.getvalue())


def load_answers(path: Path, train: Split) -> tuple[CachedAnswers, dict[str, Any]]:
    """Teacher answers written by ``scripts/teacher_answers.py``, checked against the training faces.

    Raises:
        DataError: not such a file, or made for other faces (another data file, split or ``data.limit_train``).
    """
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            fmt, log_probs = str(z["format"]), np.asarray(z["log_probs"], dtype=np.float32)
            made_for, members = str(z["faces_sha256"]), [str(m) for m in z["members"]]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"stage1.distill_from: {path} is not a teacher-answers file ({type(exc).__name__}: {exc}); "
                        "expected an .npz written by scripts/teacher_answers.py") from exc
    n = len(train.labels)
    if fmt != ANSWERS_FORMAT or log_probs.ndim != 2 or log_probs.shape[1] != len(PRE.classes):
        raise DataError(f"stage1.distill_from: {path} has format {fmt!r} and answers of shape {log_probs.shape}; "
                        f"expected {ANSWERS_FORMAT!r} with (N, {len(PRE.classes)}) log-probabilities")
    if log_probs.shape[0] != n or made_for != faces_sha256(train.images):
        raise DataError(f"stage1.distill_from: {path} answers {log_probs.shape[0]} other training faces than this run's "
                        f"{n} (another data file, split or data.limit_train); remake it with scripts/teacher_answers.py "
                        "for this config")
    if not np.isfinite(log_probs).all():
        raise DataError(f"stage1.distill_from: {path} holds non-finite answers; remake it")
    return CachedAnswers(torch.from_numpy(log_probs)), {"sha256": sha256_file(path), "members": members,
                                                         "teacher": "answers on the unaugmented faces"}


def stage1_teacher(cfg: TrainConfig, dev: torch.device, train: Optional[Split] = None
                   ) -> tuple[Optional[nn.Module | CachedAnswers], Optional[dict[str, Any]]]:
    """``stage1.distill_from``'s FER network, frozen, answering as the test-time flip does (the mean of its
    softmaxes on each face and its mirror image, as log-probabilities), and what to record of it in the
    model's metadata; (None, None) without one. Several checkpoints (comma-separated) make an ensemble
    teacher: the mean of the members' flip-averaged softmaxes, as log-probabilities. An ``.npz`` holds such
    a teacher's answers precomputed on ``train``'s unaugmented faces (:func:`load_answers`).

    Raises:
        DataError: a checkpoint is missing or unreadable, or the answers file does not fit ``train``.
    """
    if not cfg.stage1.distill_from:
        return None, None
    record: dict[str, Any] = {"path": cfg.stage1.distill_from, "weight": cfg.stage1.distill,
                              "temperature": cfg.stage1.distill_temperature}
    if cfg.stage1.distill_from.endswith(".npz"):
        if train is None:
            raise ValueError("stage1_teacher: an answers file needs the training split")
        path = _checkpoint_path("stage1.distill_from", cfg.stage1.distill_from,
                                "a teacher-answers file written by scripts/teacher_answers.py")
        answers, made = load_answers(path, train)
        log.info("stage 1 distils the answers in %s (weight %g, T %g)", cfg.stage1.distill_from,
                 cfg.stage1.distill, cfg.stage1.distill_temperature)
        return answers, {**record, **made}
    names = [v.strip() for v in cfg.stage1.distill_from.split(",")]
    paths = [_checkpoint_path("stage1.distill_from", v) for v in names]
    teacher = ensemble_teacher(paths).to(dev)
    log.info("stage 1 distils %s with the test-time flip (weight %g, T %g)", ", ".join(map(str, paths)),
             cfg.stage1.distill, cfg.stage1.distill_temperature)
    if len(paths) == 1:
        record.update(sha256=sha256_file(paths[0]), teacher="flip average")
    else:
        record.update(members=[{"path": n, "sha256": sha256_file(p)} for n, p in zip(names, paths)],
                      teacher=f"mean of {len(paths)} flip averages")
    return teacher, record


class _MeanOfLogProbs(nn.Module):
    """An ensemble of modules that answer log-probabilities: the log of the mean of their probabilities."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.stack([m(x) for m in self.members])
        return torch.logsumexp(logp, dim=0) - math.log(len(self.members))


def stage1_init(cfg: TrainConfig, model: InferenceModel) -> dict[str, Any]:
    """Load ``stage1.init``'s FER network into ``model.fer`` (a resumed run then restores its own state over
    it). Returns the checkpoint's path, its file's SHA-256 and its FER network's weights SHA-256 for the model's
    metadata.

    Raises:
        DataError: the checkpoint is missing or unreadable.
        ConfigError: its FER network is not the config's (another backbone, head or class count), or not the
            network ``stage1.init_fer_sha256`` names.
    """
    path = _checkpoint_path("stage1.init", cfg.stage1.init)
    src = load_fer(path).fer.state_dict()
    own = model.fer.state_dict()
    wrong = sorted(k for k in set(src) | set(own) if k not in src or k not in own or src[k].shape != own[k].shape)
    if wrong:
        raise ConfigError(f"stage1.init: the FER network in {path.name} does not match model.backbone "
                          f"{cfg.model.backbone!r} / head_hidden {cfg.model.head_hidden} ({len(wrong)} tensors differ, "
                          f"e.g. {wrong[:3]}); expected a checkpoint trained with the same model section")
    model.fer.load_state_dict(src)
    digest = checkpoint.weights_sha256(model.fer)
    want = cfg.stage1.init_fer_sha256
    if want and digest != want:
        raise ConfigError(f"stage1.init: the FER network in {path} has weights SHA-256 {digest}; this config was run "
                          f"from {want} (stage1.init_fer_sha256). Give stage1.init a checkpoint of that network "
                          "(the config's header says which commit's file it is: git show COMMIT:PATH > FILE)")
    log.info("stage 1 starts from %s's FER network", path)
    return {"path": cfg.stage1.init, "sha256": sha256_file(path), "fer_sha256": digest}


def load_fer(path: Path) -> InferenceModel:
    model, _, _ = checkpoint.load_model(path)
    return model  # type: ignore[return-value]


def train_lr_finetune(cfg: TrainConfig, data: Data, hr_path: Path, out: Path, resume: bool,
                      stop_after: Optional[int] = None, deadline: Optional[float] = None) -> Optional[Path]:
    """Baseline (b): the HR model fine-tuned on mixed-factor LR inputs."""
    dev = train_device(cfg)
    torch.manual_seed(cfg.seed)
    model = InferenceModel(spec_for(cfg, "lr_finetune"))
    model.fer.load_state_dict(load_fer(hr_path).fer.state_dict())
    hr_fer = hr_identity(model.fer)
    model.to(dev)
    epochs, lr = cfg.baselines.lr_finetune_epochs, cfg.baselines.lr_finetune_lr
    opt = _sgd(model.fer, cfg, lr)
    runner = _runner(cfg, out, "lr_finetune", "lr_finetune", {"fer": model.fer}, {"opt": opt}, epochs, hr_fer,
                     data.sha256)
    teacher = load_fer(hr_path).fer.to(dev).eval().requires_grad_(False) if cfg.baselines.lr_finetune_distill else None
    step = _classifier_epoch(distributed.wrap_ddp(model.fer), opt, data.train, cfg, epochs, lr, lr_inputs=True, dev=dev,
                             teacher=teacher)
    evaluate = lambda: _mean_acc(model, data.val, tuple(cfg.eval.factors), cfg.eval.batch_size)  # noqa: E731
    if not runner.run(step, evaluate, resume, stop_after, deadline):
        return None
    runner.load_best()
    return _save_model(out, "lr_finetune", model.eval(), cfg, runner)


# ---------------------------------------------------------------------------------------------
# Baseline (c): image super-resolution + the frozen HR model
# ---------------------------------------------------------------------------------------------


def train_image_sr(cfg: TrainConfig, data: Data, hr_path: Path, out: Path, resume: bool,
                   stop_after: Optional[int] = None, deadline: Optional[float] = None) -> Optional[Path]:
    from .degrade import random_lr

    dev = train_device(cfg)
    torch.manual_seed(cfg.seed)
    model = InferenceModel(spec_for(cfg, "image_sr"))
    model.fer.load_state_dict(load_fer(hr_path).fer.state_dict())
    hr_fer = hr_identity(model.fer)
    model.to(dev)
    model.fer.eval().requires_grad_(False)
    sr = model.sr
    assert sr is not None  # method image_sr always has one
    epochs, lr = cfg.baselines.image_sr_epochs, cfg.baselines.image_sr_lr
    opt = torch.optim.Adam(sr.parameters(), lr=lr)
    dcfg = _degrade_cfg(cfg)
    sr_net = distributed.wrap_ddp(sr)
    distributed.check_global_batch(cfg.stage1.batch_size, len(data.train.labels), "stage1.batch_size")

    def train_epoch(epoch: int, rng: np.random.Generator) -> dict[str, float]:
        batches = _batches(len(data.train.labels), cfg.stage1.batch_size, rng)
        tot = torch.zeros((), dtype=torch.float64, device=dev)
        for step, idx in enumerate(batches):
            set_lr(opt, cosine_lr(lr, epoch, step, len(batches), epochs))
            hr = data.train.images[idx]
            lr_pix = random_lr(hr, dcfg, rng)[0]
            # MSE, not L1: with L1 on mixed factors (factor 1 included) the zero-initialised residual
            # stays at the identity (measured: no change in x4 pixel error), MSE learns.
            rows = distributed.shard_slice(len(idx))
            x, target = _tensor(lr_pix[rows]).to(dev), _tensor(hr[rows].astype(np.float32)).to(dev)
            loss = nn.functional.mse_loss(sr_net(x), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
            opt.step()
            tot += loss.detach().double()
        return distributed.all_reduce_mean({"mse": tot.item() / len(batches)})

    runner = _runner(cfg, out, "image_sr", "image_sr", {"sr": sr}, {"opt": opt}, epochs, hr_fer, data.sha256)
    evaluate = lambda: _mean_acc(model, data.val, tuple(cfg.eval.factors), cfg.eval.batch_size)  # noqa: E731
    if not runner.run(train_epoch, evaluate, resume, stop_after, deadline):
        return None
    runner.load_best()
    return _save_model(out, "image_sr", model.eval(), cfg, runner)


# ---------------------------------------------------------------------------------------------
# Stage 2: features, G and D
# ---------------------------------------------------------------------------------------------


def extract_features(trunk: ResNetTrunk, images: np.ndarray, factors: tuple[int, ...], bs: int = 256,
                     cfg: Optional[TrainConfig] = None, seed: int = 0, level: str = "embedding") -> dict[int, np.ndarray]:
    """Features of every face at every factor, from the frozen trunk: {factor: (N, D) float32} for the
    embedding, {factor: (N, C, H, W)} for a stage's map (``level``, e.g. "layer3").

    Stage 2 trains on these instead of images. That is equivalent to training on images because the
    trunk is frozen (eval mode) and each face's LR version is fixed per factor; with blur/noise/JPEG
    extras configured, one seeded realisation per face and factor is cached.
    """
    from .degrade import random_lr

    trunk.eval()
    dev = next(trunk.parameters()).device  # the trunk's device; the features come back to the CPU
    feats: dict[int, np.ndarray] = {}
    for f in factors:
        dcfg = None
        if cfg is not None and f > 1 and (cfg.degrade.blur_prob or cfg.degrade.noise_prob or cfg.degrade.jpeg_prob):
            dcfg = _degrade_cfg(cfg, (f,))
        rng = np.random.default_rng([seed, f])
        chunks = []
        for s in range(0, len(images), bs):
            part = images[s:s + bs]
            if dcfg is None:
                x = torch.from_numpy(degraded_inputs(part, f, PRE))
            else:
                x = _tensor(random_lr(part, dcfg, rng)[0])
            with torch.no_grad():
                x = x.to(dev)
                chunks.append((trunk(x) if level == "embedding" else trunk.forward_to(x, level)).cpu().numpy())
        feats[f] = np.concatenate(chunks).astype(np.float32)
    return feats


def cached_features(path: Path, trunk: ResNetTrunk, images: np.ndarray, factors: tuple[int, ...], key: str,
                    cfg: TrainConfig, level: str = "embedding") -> dict[int, np.ndarray]:
    """Features from ``path`` if it was made for ``key`` (HR model hash + data + degradation) and holds every one
    of ``factors`` (each factor's features depend on the key and that factor alone), else computed and written
    atomically. The factors are not in the key: the val cache's are ``eval.factors``, which a run may change."""
    if path.is_file():
        with np.load(path) as z:
            if str(z["key"]) == key and all(f"f{int(f)}" in z.files for f in factors):
                return {int(k[1:]): z[k] for k in z.files if k.startswith("f")}
    t0 = time.monotonic()
    feats = extract_features(trunk, images, factors, cfg=cfg, seed=cfg.seed, level=level)
    log.info("extracted %d x %d features in %.1f s", len(images), len(factors), time.monotonic() - t0)
    # atomic_write's temporary file is removed if the write is interrupted (and by --resume after a kill -9)
    # (cast: numpy's stub takes a ** dict's values for its allow_pickle flag too)
    arrays = cast("dict[str, Any]", {f"f{k}": v for k, v in feats.items()})
    atomic_write(path, lambda f: np.savez(f, key=np.array(key), **arrays))
    return feats


class Stage2Step:
    """One stage-2 training step: a critic step then a generator step on a batch of features.

    G runs once per step: the critic step reads G's output detached, and the generator step
    differentiates the same output after the critic's update
    (G's weights do not change in between, so a second forward would give the same map; WGAN steps are
    usually taken this way). Where G's copied BatchNorm layers train (``stage2.copy_batchnorm``), the one
    forward updates their running statistics as the two forwards of the paper's step did (the momentum
    applied twice: :func:`_bn_as_twice`), so the trained model is the same up to rounding. In G's loss
    the frozen layers above G run once on G's output and once on the HR features, shared by the
    re-weighting and every term. ``tests/test_early_g.py`` checks the step against the two-forward one,
    weight for weight.

    Exposed as a class so tests can check that every loss term is used (gradients reach G, the critic's
    loss changes, re-weighting changes the loss).
    """

    def __init__(self, head: Head | LevelHead, g: nn.Module, d: nn.Module, loss_cfg: LossConfig,
                 opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer) -> None:
        self.head, self.g, self.d, self.cfg, self.opt_g, self.opt_d = head, g, d, loss_cfg, opt_g, opt_d
        self.factor: Optional[torch.Tensor] = None  # each face's factor, for a scale-aware G (set per batch)
        # each face's (smoothed) vote distribution, for cross_entropy_targets "votes" (set per batch)
        self.targets: Optional[torch.Tensor] = None
        # the frozen HR stages' maps of the HR faces at an early G's stage boundaries, for the attention
        # term (set per batch)
        self.hr_maps: Optional[list[torch.Tensor]] = None
        # distillation target logits (stage2.losses.distill_teacher "flip"; set per batch); None: the
        # frozen head's answer on the HR features
        self.teacher: Optional[torch.Tensor] = None

    @property
    def adversarial(self) -> bool:
        return bool(self.cfg.adversarial) and self.cfg.gan != "none"

    def generate(self, f_lr: torch.Tensor) -> torch.Tensor:
        return self.g(f_lr) if self.factor is None else self.g(f_lr, self.factor)

    def weights(self, y_gen: torch.Tensor, labels: torch.Tensor, logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Each face's weight from the frozen head's answer on G's output (``logits``, when computed already)."""
        if not self.cfg.reweight:
            return torch.ones(len(labels), device=labels.device)
        with torch.no_grad():
            z = self.head(y_gen) if logits is None else logits.detach()
            return losses.reweight(losses.true_class_prob(z, labels), self.cfg.reweight_power)

    def _top(self, f: torch.Tensor) -> tuple[torch.Tensor, Head | LevelHead]:
        """The frozen embedding of a map (or the features themselves) and the classifier that reads it."""
        head = self.head
        return head.embed(f), getattr(getattr(head, "fer", None), "head", head)

    def generator_loss(self, f_lr: torch.Tensor, f_hr: torch.Tensor, labels: torch.Tensor,
                       y: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, dict[str, float]]:
        """G's loss; ``y``: G's output on ``f_lr`` when the step computed it already."""
        c = self.cfg
        y = self.generate(f_lr) if y is None else y
        emb, cls = self._top(y)
        uses_logits = c.reweight or c.cross_entropy or c.distill
        logits = cls(emb) if uses_logits else None
        w = self.weights(y, labels, logits)
        with torch.no_grad():
            needs_hr = c.head or (c.distill and self.teacher is None) or c.contrastive
            emb_hr = self._top(f_hr)[0] if needs_hr else None
        terms: dict[str, torch.Tensor] = {}
        if self.adversarial:
            terms["adv"] = c.adversarial * losses.generator_adversarial(self.d(y), w)
        if c.reconstruction:
            terms["rec"] = c.reconstruction * losses.weighted_mean(losses.feature_mse(y, f_hr), w)
        if c.head:
            assert emb_hr is not None
            h_hr = cls.activation(emb_hr).detach()
            terms["head"] = c.head * losses.weighted_mean(losses.feature_mse(cls.activation(emb), h_hr), w)
        if c.cross_entropy:
            assert logits is not None
            if c.cross_entropy_targets == "votes":
                if self.targets is None:
                    raise ConfigError("stage2.losses.cross_entropy_targets 'votes' needs the faces' vote distributions")
                ce = losses.soft_cross_entropy(logits, self.targets, reduction="none")
            else:
                ce = nn.functional.cross_entropy(logits, labels, reduction="none")
            terms["ce"] = c.cross_entropy * losses.weighted_mean(ce, w)
        if c.distill:
            # The frozen head's own answer on the HR features (or the flip's, self.teacher) as a soft target
            # for its answer on G's.
            assert logits is not None
            t = c.distill_temperature
            teacher = cls(emb_hr).detach() if self.teacher is None else self.teacher
            kd = losses.distillation(logits, teacher, t)
            if c.distill_from_factor:  # each face's weight by its factor (validated: a scale-aware G has them)
                if self.factor is None:
                    raise ConfigError("stage2.losses.distill_from_factor needs each face's factor (stage2.scale_aware)")
                terms["kd"] = losses.weighted_mean(kd * torch.where(self.factor >= c.distill_from_factor,
                                                                    c.distill_high, c.distill).to(kd.dtype), w)
            else:
                terms["kd"] = c.distill * losses.weighted_mean(kd, w)
        if c.attention:
            # G's own maps from this step's forward (DDP: .module); a G with taps is a DeepGenerator
            taps = cast(DeepGenerator, getattr(self.g, "module", self.g)).taps
            if self.hr_maps is None or not taps:
                raise ConfigError("stage2.losses.attention needs an early G that keeps its maps and the HR faces' maps")
            terms["at"] = c.attention / 2 * losses.weighted_mean(losses.attention_transfer(taps, self.hr_maps), w)
        if c.contrastive:
            assert emb_hr is not None
            nce = losses.cross_resolution_nce(emb.flatten(1), emb_hr.flatten(1), c.contrastive_temperature)
            terms["nce"] = c.contrastive * losses.weighted_mean(nce, w)
        total = sum(terms.values(), torch.zeros((), device=f_lr.device))
        return total, {k: v.item() for k, v in terms.items()} | {"w_mean": float(w.mean())}

    def critic_loss(self, f_lr: torch.Tensor, f_hr: torch.Tensor, labels: torch.Tensor,
                    shard: Optional[tuple[int, int]] = None, fake: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``shard``: (offset, global batch size) of these rows under DDP, so that the penalty's random
        interpolation weights are those one process would draw for these rows. ``fake``: G's output on
        ``f_lr`` when the step computed it already (detached here)."""
        if fake is None:
            with torch.no_grad():
                fake = self.generate(f_lr)
        fake = fake.detach()
        w = self.weights(fake, labels)
        loss = losses.critic_loss(self.d(f_hr), self.d(fake), w)
        gen = None if shard is None else distributed.shard_rand_generator(*shard)
        return loss + losses.wgan_div_penalty(self.d, f_hr, fake, w, self.cfg.div_k, self.cfg.div_p, generator=gen)

    def __call__(self, f_lr: torch.Tensor, f_hr: torch.Tensor, labels: torch.Tensor,
                 shard: Optional[tuple[int, int]] = None) -> dict[str, float]:
        stats: dict[str, float] = {}
        with _bn_as_twice(self.g, self.adversarial):  # the paper's step runs G twice when the critic steps
            y = self.generate(f_lr)
        if self.adversarial:
            ld = self.critic_loss(f_lr, f_hr, labels, shard, fake=y)
            self.opt_d.zero_grad(set_to_none=True)
            ld.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
            self.opt_d.step()
            stats["d_loss"] = ld.item()
        lg, parts = self.generator_loss(f_lr, f_hr, labels, y=y)
        self.opt_g.zero_grad(set_to_none=True)
        lg.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
        self.opt_g.step()
        return stats | parts | {"g_loss": lg.item()}


@contextlib.contextmanager
def _bn_as_twice(g: nn.Module, twice: bool) -> Iterator[None]:
    """While G runs once, each of its BatchNorm layers that trains updates its running statistics as two
    forwards on the same batch would: momentum m applied twice is 1 - (1 - m)^2 applied once (both
    forwards see the same batch statistics), and the batch count advances by two. Layers in eval mode
    (the HR model's statistics kept) and ``twice=False`` are left alone. Exact while every face's
    output uses its batch's statistics: per-factor BatchNorm (``copy_batchnorm: per_factor``) reads
    running statistics for a factor between its anchors, and its anchors are the training factors
    (``spec_for``), so no training face is between them."""
    # duck-typed: torch's _BatchNorm layers and FactorBatchNorm (a Module's attributes type as Tensor | Module)
    bns: list[Any] = [m for m in g.modules() if twice and m.training and getattr(m, "momentum", None) is not None
                      and getattr(m, "running_mean", None) is not None]
    for m in g.modules():
        if twice and m.training and isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats \
                and m.momentum is None:
            raise ConfigError("a BatchNorm layer of G averages its statistics cumulatively (momentum None); "
                              "stage 2 expects the HR model's layers, with a momentum")
    saved = [m.momentum for m in bns]
    for m, mom in zip(bns, saved):
        m.momentum = 1.0 - (1.0 - mom) ** 2
    try:
        yield
        for m in bns:
            if isinstance(getattr(m, "num_batches_tracked", None), torch.Tensor):
                m.num_batches_tracked.add_(1)  # the second forward's count
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom


def _feature_val_score(head: nn.Module, g: nn.Module, feats: dict[int, np.ndarray], labels: np.ndarray,
                       factors: tuple[int, ...]) -> float:
    accs = []
    dev = next(g.parameters()).device
    with torch.no_grad():
        for f in factors:
            pred = np.concatenate([head(g(torch.from_numpy(feats[f][s:s + 512]).to(dev))).argmax(1).cpu().numpy()
                                   for s in range(0, len(labels), 512)])
            accs.append(float((pred == labels).mean()))
    return float(np.mean(accs))


class Batch(NamedTuple):
    """One stage-2 batch."""

    f_lr: torch.Tensor  # G's input features
    f_hr: torch.Tensor  # the HR features G must match
    labels: torch.Tensor
    factor: Optional[torch.Tensor] = None  # each face's factor, for a scale-aware G
    targets: Optional[torch.Tensor] = None  # each face's smoothed vote distribution (cross_entropy_targets "votes")
    hr_maps: Optional[list[torch.Tensor]] = None  # the HR maps at an early G's stage boundaries (attention)
    teacher: Optional[torch.Tensor] = None  # distillation target logits other than the head's on f_hr


def _vote_targets(cfg: TrainConfig, loss_cfg: LossConfig, split: Split, idx: np.ndarray,
                  dev: torch.device) -> Optional[torch.Tensor]:
    """The faces' smoothed vote distributions when the stage-2 step's cross-entropy term (``loss_cfg``,
    what the step itself is given) wants them, else None."""
    if not loss_cfg.cross_entropy or loss_cfg.cross_entropy_targets != "votes" or split.targets is None:
        return None
    return losses.smoothed(torch.from_numpy(split.targets[idx]), cfg.stage1.label_smoothing).to(dev)


@dataclasses.dataclass
class GParts:
    """G and D as trained (``g``, ``d``), as stepped (``g_net``, ``d_net``: DDP-wrapped under torchrun),
    and the frozen layers above G (``head``)."""

    g: nn.Module
    d: nn.Module
    g_net: nn.Module
    d_net: nn.Module
    head: LevelHead


def train_stage2(cfg: TrainConfig, data: Data, hr_path: Path, out: Path, name: str, loss_cfg: LossConfig,
                 resume: bool, stop_after: Optional[int] = None, deadline: Optional[float] = None) -> Optional[Path]:
    """Train G (and D) on cached features of the frozen HR model; save the fused FSR-FER model.

    A G that starts below its feature level (``stage2.generator_start``) trains on images instead:
    see :func:`train_stage2_deep`."""
    if cfg.stage2.generator_start:
        return train_stage2_deep(cfg, data, hr_path, out, name, loss_cfg, resume, stop_after, deadline)
    dev = train_device(cfg)
    fer = load_fer(hr_path).fer.to(dev).eval().requires_grad_(False)
    hr_fer = hr_identity(fer)
    s2 = cfg.stage2
    level = s2.feature_level
    # the data's fingerprint too: an archive written again at the same path holds other faces
    key = f"{sha256_file(hr_path)}|{data.source}|{data.sha256}|{len(data.train.labels)}|{cfg.degrade}"
    key += "" if level == "embedding" else f"|{level}"
    train_factors = tuple(sorted(set(cfg.degrade.factors) | {1}))
    eval_factors = tuple(cfg.eval.factors)
    tag = "" if level == "embedding" else f"_{level}"
    # DDP: rank 0 extracts and writes the caches, then the other ranks read them.
    ftr = distributed.main_first(lambda: cached_features(
        out / "cache" / f"train_features{tag}.npz", fer.trunk, data.train.images, train_factors, key, cfg, level))
    fval = distributed.main_first(lambda: cached_features(
        out / "cache" / f"val_features{tag}.npz", fer.trunk, data.val.images, eval_factors, key + "|val",
        dataclasses.replace(cfg, degrade=dataclasses.replace(cfg.degrade, blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0)),
        level))
    head = LevelHead(fer, level)
    torch.manual_seed(cfg.seed)
    g = create_generator(fer.trunk, level, {"blocks": s2.generator_blocks, "growth": s2.generator_growth})
    d: nn.Module
    if level == "embedding":
        d = FeatureCritic(fer.trunk.feature_dim, s2.critic_hidden, s2.critic_layers)
    else:
        c, h = ftr[1].shape[1], ftr[1].shape[2]
        d = SpatialFeatureCritic(c, hidden=64, size=h)
    # made on the CPU, then moved: the same initial weights on every device
    g.to(dev)
    d.to(dev)
    labels = data.train.labels
    n, bs = len(labels), s2.batch_size
    distributed.check_global_batch(bs, n, "stage2.batch_size")
    g_net, d_net = distributed.wrap_ddp(g), distributed.wrap_ddp(d)  # g, d themselves when single-process
    all_factors = np.array(train_factors)
    stack = np.stack([ftr[f] for f in train_factors])  # (F, N, D)

    def sample(rng: np.random.Generator, idx: np.ndarray, rows: slice) -> Batch:
        # Each face in the global batch gets its own random factor: one G for every factor. The
        # cache stays in CPU memory; only this rank's rows of the batch go to the device.
        fi = rng.integers(0, len(all_factors), len(idx))
        fi, idx = fi[rows], idx[rows]
        return Batch(torch.from_numpy(stack[fi, idx]).to(dev), torch.from_numpy(ftr[1][idx]).to(dev),
                     torch.from_numpy(labels[idx]).to(dev), targets=_vote_targets(cfg, loss_cfg, data.train, idx, dev))

    val_score = lambda: _feature_val_score(head, g, fval, data.val.labels, eval_factors)  # noqa: E731
    runners = _train_g(cfg, out, name, loss_cfg, GParts(g, d, g_net, d_net, head), sample, val_score, n, dev,
                       resume, stop_after, deadline, hr_fer, data.sha256)
    if runners is None:
        return None
    pre, gan = runners
    model = InferenceModel(spec_for(cfg, "fsrfer"))
    model.fer.load_state_dict(fer.state_dict())
    assert model.generator is not None  # method fsrfer always has one
    model.generator.load_state_dict(g.state_dict())
    return _save_model(out, name, model.eval(), cfg, gan if s2.epochs else pre,
                       {"losses": dataclasses.asdict(loss_cfg), "pretrain_history": pre.history})


def _train_g(cfg: TrainConfig, out: Path, name: str, loss_cfg: LossConfig, parts: GParts,
             sample: Any, val_score: Any, n: int, dev: torch.device, resume: bool,
             stop_after: Optional[int], deadline: Optional[float],
             hr_fer: Optional[str] = None, data_sha256: Optional[str] = None
             ) -> Optional[tuple[EpochRunner, EpochRunner]]:
    """Stage 2's two phases, for G on cached features and for an early G on images alike: G pre-trained
    alone with the feature MSE (as the authors' code does), then critic and generator steps with every
    configured loss, re-weighted. ``sample(rng, idx, rows)`` gives a :data:`Batch`. ``hr_fer``: the HR
    model's identity (:func:`hr_identity`), and ``data_sha256``, the data's (:attr:`Data.sha256`), kept in both
    phases' states. Returns the two runners
    (pre-training, GAN), or None when stopped early."""
    s2, g = cfg.stage2, parts.g
    bs = s2.batch_size

    def run_g(f_lr: torch.Tensor, factor: Optional[torch.Tensor]) -> torch.Tensor:
        return parts.g_net(f_lr) if factor is None else parts.g_net(f_lr, factor)

    opt_p = torch.optim.Adam(g.parameters(), lr=s2.pretrain_lr)

    def pre_epoch(epoch: int, rng: np.random.Generator) -> dict[str, float]:
        g.train()
        batches = _batches(n, bs, rng)
        tot = torch.zeros((), dtype=torch.float64, device=dev)
        for step, idx in enumerate(batches):
            set_lr(opt_p, cosine_lr(s2.pretrain_lr, epoch, step, len(batches), s2.pretrain_epochs))
            b = sample(rng, idx, distributed.shard_slice(len(idx)))
            loss = losses.feature_mse(run_g(b.f_lr, b.factor), b.f_hr).mean()
            opt_p.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
            opt_p.step()
            tot += loss.detach().double()
        g.eval()
        return distributed.all_reduce_mean({"mse": tot.item() / max(1, len(batches))})

    pre = _runner(cfg, out, f"{name}.pretrain", name, {"g": g}, {"opt": opt_p}, s2.pretrain_epochs, hr_fer,
                  data_sha256)
    if s2.pretrain_epochs and not pre.run(pre_epoch, val_score, resume, stop_after, deadline):
        return None
    if s2.epochs and pre.epochs_run and time_is_up(deadline, f"{name}.gan"):  # pre-training ended past the budget
        return None
    # G: the authors' Adam, or the LR-fine-tuned baseline's SGD with its warm-up (stage2.g_optimizer)
    sgd = s2.g_optimizer == "sgd"
    opt_g = _sgd(g, cfg, s2.lr_g) if sgd else torch.optim.Adam(g.parameters(), lr=s2.lr_g, betas=(0.0, 0.9))
    warmup_g = min(1.0, s2.epochs / 10) if sgd else s2.gan_warmup
    opt_d = torch.optim.Adam(parts.d.parameters(), lr=s2.lr_d, betas=(0.0, 0.9))
    step = Stage2Step(parts.head, parts.g_net, parts.d_net, loss_cfg, opt_g, opt_d)

    def gan_epoch(epoch: int, rng: np.random.Generator) -> dict[str, float]:
        g.train()
        batches = _batches(n, bs, rng)
        acc: dict[str, float] = {}
        for i, idx in enumerate(batches):
            set_lr(opt_g, cosine_lr(s2.lr_g, epoch, i, len(batches), s2.epochs, warmup_epochs=warmup_g))
            set_lr(opt_d, cosine_lr(s2.lr_d, epoch, i, len(batches), s2.epochs))
            rows = distributed.shard_slice(len(idx))
            b = sample(rng, idx, rows)
            step.factor, step.targets, step.hr_maps, step.teacher = b.factor, b.targets, b.hr_maps, b.teacher
            shard = None if distributed.world_size() == 1 else (rows.start, len(idx))
            for k, v in step(b.f_lr, b.f_hr, b.labels, shard).items():
                acc[k] = acc.get(k, 0.0) + v / len(batches)
        g.eval()
        return distributed.all_reduce_mean(acc)

    gan = _runner(cfg, out, f"{name}.gan", name, {"g": g, "d": parts.d}, {"g": opt_g, "d": opt_d}, s2.epochs,
                  hr_fer, data_sha256)
    if s2.epochs:
        if not gan.run(gan_epoch, val_score, resume, stop_after, deadline):
            return None
        gan.load_best()
    return pre, gan


def train_stage2_deep(cfg: TrainConfig, data: Data, hr_path: Path, out: Path, name: str, loss_cfg: LossConfig,
                      resume: bool, stop_after: Optional[int] = None,
                      deadline: Optional[float] = None) -> Optional[Path]:
    """Stage 2 with a G that starts below its feature level (:class:`trainer.models.DeepGenerator`).

    G's copies of the trunk's stages make the features it reads depend on training, so nothing is
    cached: each step degrades augmented HR faces (each its own factor and, with the degrade extras,
    kernel, blur, noise and JPEG), reads the frozen trunk's map at G's start on the LR faces and at the
    feature level on the HR faces, and takes the usual stage-2 steps (pre-training with the feature
    MSE, then critic and generator steps with every configured loss and the re-weighting). One epoch
    costs about what an LR fine-tuning epoch costs, so ``pretrain_epochs + epochs`` is the budget to
    compare with ``baselines.lr_finetune_epochs``.
    """
    from .degrade import random_lr

    dev = train_device(cfg)
    s2 = cfg.stage2
    torch.manual_seed(cfg.seed)
    model = InferenceModel(spec_for(cfg, "fsrfer"))
    model.fer.load_state_dict(load_fer(hr_path).fer.state_dict())
    hr_fer = hr_identity(model.fer)
    g = model.generator
    assert isinstance(g, DeepGenerator)  # a deep G (spec_for gives it a start)
    g.init_from(model.fer.trunk)
    model.to(dev)
    fer = model.fer.eval().requires_grad_(False)
    level, start = model.level, model.start
    head = LevelHead(fer, level)
    c, h = _map_shape(fer.trunk, level)
    d = SpatialFeatureCritic(c, hidden=64, size=h).to(dev)
    dcfg = _degrade_cfg(cfg)
    # Routed (stage2.route_hr): G serves only down-sampled faces, so it trains only on them.
    g_dcfg = _degrade_cfg(cfg, tuple(f for f in cfg.degrade.factors if f != 1)) if s2.route_hr else dcfg
    labels_all = data.train.labels
    n, bs = len(labels_all), s2.batch_size
    distributed.check_global_batch(bs, n, "stage2.batch_size")
    g_net, d_net = distributed.wrap_ddp(g), distributed.wrap_ddp(d)
    eval_factors = tuple(cfg.eval.factors)
    # Attention transfer: G keeps its maps at its stage boundaries; the HR faces' maps at the same
    # levels come from the same pass of the frozen trunk as the feature-level map.
    taps = list(g.tap_levels) if loss_cfg.attention else []
    g.keep_taps = bool(taps)
    flip_teacher = bool(loss_cfg.distill) and loss_cfg.distill_teacher == "flip"

    def sample(rng: np.random.Generator, idx: np.ndarray, rows: slice) -> Batch:
        hr = _augment(cfg, data.train.images[idx], rng)
        lr, factors = random_lr(hr, g_dcfg, rng)
        with torch.no_grad():
            f_lr = fer.trunk.forward_to(_tensor(lr[rows]).to(dev), start)
            *hr_maps, f_hr = fer.trunk.forward_maps(_tensor(hr[rows].astype(np.float32)).to(dev), [*taps, level])
            teacher = None
            if flip_teacher:  # the test-time flip's answer on each HR face
                mirrored = fer.trunk.forward_to(_tensor(hr[rows, :, ::-1].astype(np.float32)).to(dev), level)
                teacher = losses.flip_teacher_logits(head(f_hr), head(mirrored), loss_cfg.distill_temperature)
        factor = torch.from_numpy(factors[rows]).to(dev) if s2.scale_aware else None
        return Batch(f_lr, f_hr, torch.from_numpy(labels_all[idx][rows]).to(dev), factor,
                     _vote_targets(cfg, loss_cfg, data.train, idx[rows], dev), hr_maps or None, teacher)

    val_score = lambda: _mean_acc(model, data.val, eval_factors, cfg.eval.batch_size)  # noqa: E731
    runners = _train_g(cfg, out, name, loss_cfg, GParts(g, d, g_net, d_net, head), sample, val_score, n, dev,
                       resume, stop_after, deadline, hr_fer, data.sha256)
    g.keep_taps, g.taps = False, []
    if runners is None:
        return None
    pre, gan = runners
    if not s2.epochs and s2.pretrain_epochs:
        pre.load_best()
    extra: dict[str, Any] = {"losses": dataclasses.asdict(loss_cfg), "pretrain_history": pre.history}
    if s2.scale_aware:  # the fused graph estimates each face's factor from the image (one input)
        extra["factor_estimator"] = fit_factor_estimator(model, data.train.images, data.val.images, dcfg, cfg.seed)
        model.to(dev)
    return _save_model(out, name, model.eval(), cfg, gan if s2.epochs else pre, extra)


def estimator_faces(images: np.ndarray, dcfg: Any, seed: int, split: str, n: int = 6000) -> tuple[np.ndarray, np.ndarray]:
    """The faces :func:`fit_factor_estimator` fits on (``split="train"``) or reports on (``"val"``): up to ``n``
    of ``images``, each degraded once as stage 2 degrades faces; (float pixel values, factors)."""
    from .degrade import random_lr

    rng = np.random.default_rng([seed, {"train": 11, "val": 12}[split]])
    idx = rng.choice(len(images), min(n, len(images)), replace=False)
    return random_lr(images[idx], dcfg, rng)


def fit_factor_estimator(model: InferenceModel, train_images: np.ndarray, val_images: np.ndarray, dcfg: Any,
                         seed: int, n: int = 6000, round_pixels: Optional[Preprocessing] = None) -> dict[str, Any]:
    """Fit (or add and fit) a scale-aware model's :class:`~trainer.models.FactorEstimator`.

    Least squares of log2(factor) on the estimator's image statistics, over ``n`` training faces each
    degraded as stage 2 degrades them (``dcfg``: factors, kernels, JPEG, noise, blur; one draw per face).
    The model's spec gets ``factor_estimator: true`` so that checkpoints rebuild it. Returns the
    estimator's error on ``val_images`` degraded the same way: per factor, the mean estimated factor
    and the mean absolute error of log2(factor). With ``round_pixels`` (the model's preprocessing) the
    model gets a new estimator that computes its statistics on whole grey levels (spec
    ``factor_estimator_pixels``), replacing any it had.
    """
    from .models import FactorEstimator

    if not model.scale_aware:
        raise ConfigError("only a scale-aware G (stage2.scale_aware) uses a factor estimator")
    if round_pixels is not None:  # a new estimator on whole grey levels (FactorEstimator ``pixels``)
        pixels = (255.0 * float(round_pixels.std), 255.0 * float(round_pixels.mean))
        model.factor_estimator = FactorEstimator(float(max(dcfg.factors)), pixels)
        model.spec["factor_estimator"] = True
        model.spec["factor_estimator_pixels"] = list(pixels)
    if model.factor_estimator is None:
        model.factor_estimator = FactorEstimator(float(max(dcfg.factors)))
        model.spec["factor_estimator"] = True
    est = model.factor_estimator.to(torch.device("cpu"))

    def draw(images: np.ndarray, split: str) -> tuple[torch.Tensor, np.ndarray]:
        lr, factors = estimator_faces(images, dcfg, seed, split, n)
        with torch.no_grad():
            return est.features(_tensor(lr)).double(), factors

    x, f = draw(train_images, "train")
    y = torch.from_numpy(np.log2(f.astype(np.float64)))
    w = torch.linalg.lstsq(x, y[:, None]).solution[:, 0]
    est.weights.copy_(w.float())
    est.fitted.fill_(1.0)
    xv, fv = draw(val_images, "val")
    with torch.no_grad():
        pred = est.log2_factor(xv.float()).numpy()
    report = {}
    for factor in sorted(set(int(v) for v in fv)):
        m = fv == factor
        report[str(factor)] = {"mean_estimate": round(float(np.mean(2.0 ** pred[m])), 3),
                               "mae_log2": round(float(np.mean(np.abs(pred[m] - np.log2(factor)))), 3),
                               "faces": int(m.sum())}
    log.info("factor estimator on val: %s", ", ".join(f"x{k} -> {v['mean_estimate']:.2f} (MAE log2 {v['mae_log2']:.2f})"
                                                       for k, v in report.items()))
    return report


def _map_shape(trunk: ResNetTrunk, level: str) -> tuple[int, int]:
    """(channels, side) of the trunk's map at ``level`` for a model-size face."""
    dev = next(trunk.parameters()).device
    with torch.no_grad():
        m = trunk.forward_to(torch.zeros(1, PRE.channels, PRE.input_size, PRE.input_size, device=dev), level)
    return int(m.shape[1]), int(m.shape[2])


# ---------------------------------------------------------------------------------------------
# The whole pipeline
# ---------------------------------------------------------------------------------------------

STEPS = ("stage1", "stage2", "ablations", "baselines", "eval", "eval-test")
#: What runs by default: everything but the test-split evaluation, which is asked for explicitly
#: (the test split is reported once per released model; choices are made on val).
DEFAULT_STEPS = STEPS[:-1]


def _settings_for(name: str, d: dict[str, Any]) -> dict[str, Any]:
    """The parts of a config (as a dict) that decide model ``name``'s weights (the data's path among them,
    unless the faces are drawn, ``data.synthetic``)."""
    data = {k: v for k, v in d["data"].items() if k != "path" or not d["data"]["synthetic"]}
    base = {"seed": d["seed"], "model": d["model"], "stage1": d["stage1"], "data": data}
    if name == "hr":
        return base
    base["degrade"] = d["degrade"]
    if name.startswith("fsrfer"):
        return {**base, "stage2": {k: v for k, v in d["stage2"].items() if k != "ablations"}}
    prefix = "lr_finetune_" if name == "lr_finetune" else "image_sr_"
    out = {**base, "baselines": {k: v for k, v in d["baselines"].items() if k.startswith(prefix)}}
    if name == "lr_finetune" and d["baselines"]["lr_finetune_distill"]:  # its distillation's temperature is stage 2's
        out["stage2"] = {"losses": {"distill_temperature": d["stage2"]["losses"]["distill_temperature"]}}
    return out


def _step_of(name: str) -> str:
    """The step that trains model ``name`` (OUT/models/NAME.pt)."""
    if name == "hr":
        return "stage1"
    if name.startswith("fsrfer"):
        return "stage2" if name == "fsrfer" else "ablations"
    return "baselines"


def check_same_settings(path: Path, name: str, cfg: TrainConfig, use: str = "--resume would keep",
                        data_sha256: Optional[str] = None) -> None:
    """A finished model that a run keeps (--resume), starts from (the HR model) or evaluates must have been
    trained with today's settings; ``use`` says which, for the message.

    Compares the settings that decide its weights (see :func:`_settings_for`; the model's saved config
    is completed with today's defaults, so keys added since do not count as changes, unless their
    default differs from the value now set), and the data's fingerprint (``data_sha256``, :attr:`Data.sha256`)
    with the one the model records (models from before it was recorded: not compared).

    Raises:
        ConfigError: the model was trained with other settings, naming each one.
    """
    from . import config

    meta = checkpoint.load(path, kind="model").get("meta", {})
    saved = meta.get("config")
    if not saved:
        return  # models from before configs were recorded: nothing to compare
    then = config.from_dict(saved, where=str(path)).to_dict()
    diffs = differences(_settings_for(name, then), _settings_for(name, cfg.to_dict()))
    if data_sha256 and meta.get("data_sha256"):  # the same path may hold other faces since
        diffs += differences({"data_sha256": meta["data_sha256"]}, {"data_sha256": data_sha256})
    if diffs:
        raise ConfigError(f"{use} {path}, but it was trained with other settings ({listed(diffs)}). Train into a "
                          f"new --out, or train it again here: its step '{_step_of(name)}' without --resume, or "
                          f"move {path} and its state files aside")


def check_models_used(cfg: TrainConfig, out: Path, trains: list[str], resume: bool, steps: tuple[str, ...],
                      data_sha256: Optional[str] = None) -> None:
    """Before anything trains: every finished model in OUT/models that the run keeps (``resume``), starts from
    (the HR model) or evaluates, and does not train again itself, must have been trained with ``cfg``'s
    settings and on the data of fingerprint ``data_sha256`` (:func:`check_same_settings`). ``trains``: the models
    the steps train."""
    uses = dict.fromkeys(trains, "--resume would keep") if resume else {}
    if set(trains) - {"hr"} and "hr" not in trains:
        uses["hr"] = "stage 2 and the baselines would start from"
    if "eval" in steps or "eval-test" in steps:
        for p in (out / "models").glob("*.pt"):
            if resume or p.stem not in trains:
                uses.setdefault(p.stem, "the evaluation would include")
    for name in sorted(uses, key=lambda n: (n != "hr", n)):
        p = out / "models" / f"{name}.pt"
        if distributed.broadcast(p.is_file()):  # rank 0's view, on every rank
            check_same_settings(p, name, cfg, uses[name], data_sha256)


@contextlib.contextmanager
def _run_folder(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock (:func:`fsrfer_edge.fileio.folder_lock`, rank 0) while the run writes there, and remove,
    under it, what a run killed mid-write (kill -9) left there, whether this one resumes it or starts again:
    ConfigError while another live run holds the folder (two runs would overwrite each other's states)."""
    with contextlib.ExitStack() as stack:
        busy: Optional[str] = None
        if distributed.is_main():
            try:
                stack.enter_context(folder_lock(out))
            except FolderInUse as exc:
                busy = exc.holder or "unknown"
        busy = distributed.broadcast(busy)
        if busy is not None:
            raise ConfigError(f"--out {out} is in use by another fsrfer-train run ({busy}); expected one run per "
                              "folder: wait for it to finish (then --resume continues it), or train into another --out")
        # only in a run's folder: a new --out (~) keeps other programs' hidden .tmp files
        if distributed.is_main() and ((out / "state").is_dir() or (out / "config.json").is_file()):
            for p in remove_partial_writes(out, locked=True):
                log.info("removed %s, a file left half-written by an earlier run that was killed", p)
        yield


def run_pipeline(cfg: TrainConfig, data: Data, out: Path, resume: bool = False, steps: tuple[str, ...] = DEFAULT_STEPS,
                 stop_after: Optional[int] = None, time_budget_min: Optional[float] = None,
                 started: Optional[float] = None) -> bool:
    """Run the configured steps. Returns True when everything finished, False when stopped early: at an epoch
    end (``stop_after`` epochs of a stage in this call, or the time budget spent), or, the budget spent once this
    call has trained something, before the next model (or stage 1's SWA epochs, or stage 2's GAN phase) or the
    evaluation starts: a call with any budget makes progress. ``time_budget_min`` counts from ``started``
    (a time.monotonic() reading, not the wall clock, which may step; fsrfer-train passes its own start, so that
    reading the data counts) or, without it, from now."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = train_device(cfg)  # fails here, before any work, when the device cannot be had
    if distributed.is_main():
        what = "cpu" if dev.type == "cpu" else f"cuda ({torch.cuda.get_device_name(dev)}; one GPU per process)"
        log.info("training on %s, %d process(es)", what, distributed.world_size())
    deadline = (time.monotonic() if started is None else started) + 60 * time_budget_min if time_budget_min else None
    models = out / "models"
    hr = models / "hr.pt"
    jobs: list[tuple[str, Any]] = []
    if "stage2" in steps:
        jobs.append(("fsrfer", lambda: train_stage2(cfg, data, hr, out, "fsrfer", cfg.stage2.losses, resume, stop_after, deadline)))
    if "ablations" in steps:
        for ab in cfg.stage2.ablations:
            jobs.append((f"fsrfer_{ab}", lambda ab=ab: train_stage2(cfg, data, hr, out, f"fsrfer_{ab}",
                                                                    ablated(cfg.stage2.losses, ab), resume, stop_after, deadline)))
    if "baselines" in steps:
        if "lr_finetune" in cfg.baselines.run:
            jobs.append(("lr_finetune", lambda: train_lr_finetune(cfg, data, hr, out, resume, stop_after, deadline)))
        if "image_sr" in cfg.baselines.run:
            jobs.append(("image_sr", lambda: train_image_sr(cfg, data, hr, out, resume, stop_after, deadline)))
    check_models_used(cfg, out, (["hr"] if "stage1" in steps else []) + [name for name, _ in jobs], resume, steps,
                      data.sha256)
    if resume:  # a stopped stage that would refuse these settings does so before config.json records them
        # The HR model's identity, read once where --resume keeps hr.pt: a stage started from another HR model is
        # refused here (without hr.pt, stage 1 trains it first and the stage refuses when it starts).
        hr_fer: Optional[str] = None
        for name in (["hr"] if "stage1" in steps else []) + [name for name, _ in jobs]:
            stages = ["stage1", "stage1_swa"] if name == "hr" else [f"{name}.pretrain", f"{name}.gan"] \
                if name.startswith("fsrfer") else [name]
            for stage in stages:
                if not distributed.broadcast((models / f"{name}.pt").is_file()) and \
                        distributed.broadcast((out / "state" / f"{stage}.pt").is_file()):
                    if name != "hr" and hr_fer is None and distributed.broadcast(hr.is_file()):
                        hr_fer = hr_identity(load_fer(hr).fer)  # kept by --resume: what the stage would start from
                    _runner(cfg, out, stage, name, {}, {}, 0, None if name == "hr" else hr_fer,
                            data.sha256).check_settings()
    if "stage1" not in steps and not hr.is_file():  # refused before config.json records settings nothing used
        raise DataError(f"stage 1 model {hr} not found; run the 'stage1' step first")
    out.mkdir(parents=True, exist_ok=True)
    with _run_folder(out):
        if distributed.is_main():
            write_json(out / "config.json", cfg.to_dict())
        trained = False  # whether this call has started a model yet: past the budget, no other starts after it

        def run_job(name: str, job: Any) -> bool:
            """Train model ``name`` unless --resume keeps it (checked above); False when the run stopped early."""
            nonlocal trained
            if resume and distributed.broadcast((models / f"{name}.pt").is_file()):
                return True
            if trained and time_is_up(deadline, name):
                return False
            trained = True
            return job() is not None

        if "stage1" in steps and not run_job("hr", lambda: train_stage1(cfg, data, out, resume, stop_after, deadline)):
            return False
        if not hr.is_file():
            raise DataError(f"stage 1 model {hr} not found; run the 'stage1' step first")
        if not all(run_job(name, job) for name, job in jobs):  # all() stops at the first that stopped early
            return False
        if trained and ("eval" in steps or "eval-test" in steps) and time_is_up(deadline, "the evaluation"):
            return False
        if "eval" in steps and distributed.is_main():
            evaluate_all(cfg, data, out, split=cfg.eval.split, reuse=resume)
        if "eval-test" in steps and distributed.is_main():
            evaluate_all(cfg, data, out, split="test", reuse=resume)
        distributed.barrier()
        return True


#: OUT/eval/<split>/EVALUATED: what the evaluation there was made of (:func:`evaluation_key`) and the SHA-256 of each
#: results file it wrote; written last, removed before an evaluation starts.
EVALUATED = "evaluated.json"


def _sources_sha256() -> str:
    """SHA-256 of the trainer's and the SDK's Python sources: what evaluated numbers depend on beside the models,
    the faces and the settings."""
    import hashlib

    import fsrfer_edge

    h = hashlib.sha256()
    for root in (Path(__file__).resolve().parent, Path(fsrfer_edge.__file__).resolve().parent):
        for p in sorted(root.rglob("*.py")):
            if "__pycache__" not in p.parts:
                h.update(f"{p.relative_to(root.parent).as_posix()}|{p.stat().st_size}|".encode())
                h.update(p.read_bytes())
    return h.hexdigest()


def evaluation_key(cfg: TrainConfig, data: Data, out: Path, split: str) -> dict[str, Any]:
    """Everything an evaluation of OUT/models on ``data``'s ``split`` depends on: the split, the eval settings, its
    faces and labels (SHA-256) and where they came from (results name it), every model file (SHA-256), the code
    (:func:`_sources_sha256`), torch's, numpy's and Pillow's versions (Pillow encodes protocol (c)'s JPEG) and the
    device type."""
    import hashlib

    s = getattr(data, split)
    h = hashlib.sha256()
    for what, a in (("images", s.images), ("labels", s.labels)):
        a = np.ascontiguousarray(a)
        h.update(f"{what}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.data)
    return {"split": split, "eval": cfg.to_dict()["eval"], "faces_sha256": h.hexdigest(), "data": data.source,
            "models": {p.name: sha256_file(p) for p in sorted((out / "models").glob("*.pt"))},
            "sources_sha256": _sources_sha256(), "torch": torch.__version__, "numpy": np.__version__,
            "pillow": _version("pillow"), "device": train_device(cfg).type}


def _version(name: str) -> Optional[str]:
    """The installed version of package ``name``; None where it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _results_file(d: Path, protocol: str) -> Path:
    return d / ("results.json" if protocol == "resized" else f"results_{protocol}.json")


def _evaluated_before(d: Path, key: dict[str, Any]) -> bool:
    """Whether OUT/eval/<split> holds an evaluation made of ``key`` whose results files are as it wrote them."""
    try:
        rec = json.loads((d / EVALUATED).read_text())
        return bool(rec["key"] == key and rec["outputs"] and
                    all((d / name).is_file() and sha256_file(d / name) == digest
                        for name, digest in rec["outputs"].items()))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _plot_evaluation(cfg: TrainConfig, results: dict[str, Any], d: Path, split: str,
                     missing_only: bool = False) -> None:
    """OUT/eval/<split>'s plots of ``results`` (the first protocol's): accuracy against factor, and FSR-FER's x4
    confusion matrix where there is one. ``missing_only``: draw only those not there (a kept evaluation leaves its
    plots as they are, byte for byte)."""
    from .evaluate import plot_accuracy, plot_confusion

    if not results:
        return
    acc, conf = d / "accuracy_vs_factor.png", d / "confusion_x4_fsrfer.png"
    if not (missing_only and acc.is_file()):
        plot_accuracy(results, acc, f"{cfg.name}: {split} accuracy vs factor")
    if "fsrfer" in results and "4" in results["fsrfer"]["factors"] and not (missing_only and conf.is_file()):
        plot_confusion(results["fsrfer"]["factors"]["4"]["confusion"], PRE.classes, conf, "FSR-FER at x4 (12 px)")


def evaluate_all(cfg: TrainConfig, data: Data, out: Path, split: str = "val", reuse: bool = False) -> dict[str, Any]:
    """Evaluate every model in OUT/models on ``split``; write OUT/eval/<split>/*.json and plots, and last
    OUT/eval/<split>/evaluated.json (:data:`EVALUATED`). ``reuse`` (fsrfer-train --resume): where that record says
    the results there were made of the same models, faces, settings, code, torch and device type
    (:func:`evaluation_key`) and they are as it wrote them, return them without evaluating again (drawing a plot
    removed since)."""
    s = getattr(data, split)
    results: dict[str, Any] = {}
    order = ["hr", "lr_finetune", "image_sr", "fsrfer_no_reweight_no_adversarial", "fsrfer_no_reweight",
             "fsrfer_no_adversarial", "fsrfer"]
    paths = sorted((out / "models").glob("*.pt"), key=lambda p: order.index(p.stem) if p.stem in order else 99)
    dev = train_device(cfg)
    d = out / "eval" / split
    key = evaluation_key(cfg, data, out, split)
    first = "resized" if "resized" in cfg.eval.protocols else cfg.eval.protocols[0]
    if reuse and _evaluated_before(d, key):
        log.info("evaluation on %s skipped: %s holds it for these models, faces, settings and code (remove its %s "
                 "to evaluate again)", split, d, EVALUATED)
        kept = cast("dict[str, Any]", json.loads(_results_file(d, first).read_text()))
        _plot_evaluation(cfg, kept, d, split, missing_only=True)  # a plot removed since is drawn again
        return kept
    (d / EVALUATED).unlink(missing_ok=True)
    by_protocol: dict[str, dict[str, Any]] = {pr: {} for pr in cfg.eval.protocols}
    for p in paths:
        model, pre, ckpt = checkpoint.load_model(p)  # loaded on the CPU, evaluated on the training device
        model.to(dev)
        for protocol, res_p in by_protocol.items():
            res = evaluate_fn(torch_logits_fn(model), s.images, s.labels, tuple(cfg.eval.factors), pre,
                              cfg.eval.batch_size, protocol)
            res.update(method=p.stem, checkpoint=p.name, split=split, data=data.source)
            res_p[p.stem] = res
    for protocol, res_p in by_protocol.items():
        # results.json: the tables' protocol; the others beside it, named by protocol.
        write_json(_results_file(d, protocol), res_p)
    results = by_protocol[first]
    _plot_evaluation(cfg, results, d, split)
    for m, r in results.items():
        log.info("%-32s %s", m, " ".join(f"x{f}:{100 * v['accuracy']:.1f}" for f, v in r["factors"].items()))
    write_json(d / EVALUATED, {"key": key, "outputs": {_results_file(d, pr).name: sha256_file(_results_file(d, pr))
                                                       for pr in by_protocol}})
    return results
