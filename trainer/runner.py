"""One resumable epoch loop for every training in the project (stage 1, stage 2, baselines).

After each epoch the runner writes a training-state checkpoint atomically: module and optimiser
states, the epoch, the history, and the best-on-validation weights. Each epoch's randomness is derived
from (seed, stage, epoch) alone, so a run killed after epoch k and resumed gives the same weights as an
uninterrupted run.

Under torchrun (:mod:`trainer.distributed`) every rank runs this loop in step: rank 0 alone writes the
state and evaluates, and broadcasts the score and the decision to stop, so all ranks keep the same best
weights; on resume all ranks read the same state file (OUT must be on a filesystem every node sees).

States are saved with CPU tensors whatever device trains (:func:`trainer.checkpoint.to_cpu`), and loading
copies them into the modules where they are (optimiser states follow their parameters), so a run can be
resumed on another device. Only on the CPU is a resumed run bit-identical to an uninterrupted one; GPU
kernels (cuDNN's algorithm choice) may differ in the last bits.

A state also holds the settings its model's weights depend on (``settings``): a stage is not resumed under
others (ConfigError naming them), so a model never records settings it was only partly trained with. A setting
that a state lacks (an option added to the trainer since it was written) had its default then. A state also
names the models its stage starts from (``starts_from``: the HR model's weights SHA-256 for stage 2 and the
baselines): a stage is not resumed from another one.

A diverged training stops (:class:`TrainingDiverged`) at the end of the epoch whose loss or weights are not finite
(a learning rate far too high), before that epoch is saved or evaluated: the state keeps the last finished epoch
and no model is written from the diverged weights. The check costs one look per epoch: the epoch's statistics
(sums kept on the device, read once) and the modules' weights; under DDP every rank stops after the same epoch.
"""
from __future__ import annotations

import copy
import logging
import math
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from fsrfer_edge.errors import ConfigError, FsrferError, ModelError

from . import checkpoint, distributed

log = logging.getLogger(__name__)

TrainEpoch = Callable[[int, np.random.Generator], dict[str, float]]
Evaluate = Callable[[], float]


class TrainingDiverged(FsrferError):
    """A training's loss or weights became non-finite (NaN or inf): the run stops before saving that epoch."""


def cosine_lr(base: float, epoch: int, step: int, steps_per_epoch: int, epochs: int, warmup_epochs: float = 0.0) -> float:
    """Cosine decay from ``base`` to 0 over all steps, with optional linear warm-up (never above ``base``:
    the last warm-up step may end past ``warmup_epochs`` when that is not a whole number of steps)."""
    t = epoch + step / max(1, steps_per_epoch)
    if warmup_epochs and t < warmup_epochs:
        return base * min(1.0, (t + 1.0 / max(1, steps_per_epoch)) / warmup_epochs)
    return 0.5 * base * (1 + math.cos(math.pi * min(t, epochs) / max(epochs, 1e-9)))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


def differences(then: Any, now: Any, where: str = "", source: str = "in the model") -> list[str]:
    """``"key: THEN SOURCE, NOW now"`` for each setting (dotted key) that differs between two nested dicts."""
    if isinstance(then, dict) and isinstance(now, dict):
        return [d for k in sorted(set(then) | set(now))
                for d in differences(then.get(k), now.get(k), f"{where}{k}.", source)]
    return [] if then == now else [f"{where.rstrip('.')}: {then!r} {source}, {now!r} now"]


def with_defaults(saved: Any, now: Any, defaults: Any) -> Any:
    """``saved`` (nested dicts) with each key that it lacks but ``now`` has taken from ``defaults``, where that has
    it: a setting added to the trainer after a state was written had its default value then. Keys that ``saved``
    has are kept as they are (a saved value that differs from today's still differs)."""
    if not (isinstance(saved, dict) and isinstance(now, dict) and isinstance(defaults, dict)):
        return saved
    out = dict(saved)
    for k, v in now.items():
        if k not in saved:
            if k in defaults:
                out[k] = copy.deepcopy(defaults[k])
        else:
            out[k] = with_defaults(saved[k], v, defaults.get(k))
    return out


def listed(diffs: list[str]) -> str:
    """The first few of :func:`differences`, for a message."""
    return "; ".join(diffs[:5]) + ("; ..." if len(diffs) > 5 else "")


def time_is_up(deadline: Optional[float], before: str) -> bool:
    """Whether the time budget's ``deadline`` (time.monotonic()) has passed; if so, says that the run stops before
    ``before`` starts. Rank 0's clock decides, so that all ranks stop at the same point."""
    if deadline is None or not distributed.broadcast(time.monotonic() > deadline):
        return False
    if distributed.is_main():
        log.warning("time budget spent: stopped before %s; continue with --resume", before)
    return True


class EpochRunner:
    """Runs ``epochs`` epochs of ``train_epoch`` with evaluation, checkpointing and resume.

    Args:
        name: stage name, used in logs and to seed the stage's randomness.
        state_path: where the training state is kept.
        modules: the modules whose weights are trained and saved.
        optimizers: their optimisers (states are saved too).
        epochs: total number of epochs.
        seed: the run's seed.
        settings: what the weights depend on (plain data); kept in the state, and a resumed state with
            other settings is refused (ConfigError) instead of carried on.
        defaults: ``settings`` as the default config gives them: what a state written before a setting
            existed is compared as (see :func:`with_defaults`).
        starts_from: the models the stage starts from, each a description (e.g. "HR model") and an
            identity of its weights (a SHA-256); kept in the state, and a resumed state that started from
            another is refused (ConfigError). States without the record resume (not compared).
        diverged_hint: what to do when the training diverges (the learning rates to lower, how to start the
            stage again), appended to :class:`TrainingDiverged`'s message.
    """

    def __init__(self, name: str, state_path: Path, modules: dict[str, nn.Module],
                 optimizers: dict[str, torch.optim.Optimizer], epochs: int, seed: int,
                 settings: Optional[dict[str, Any]] = None, defaults: Optional[dict[str, Any]] = None,
                 starts_from: Optional[dict[str, str]] = None, diverged_hint: str = "") -> None:
        self.name = name
        self.state_path = Path(state_path)
        self.modules = modules
        self.optimizers = optimizers
        self.epochs = epochs
        self.seed = seed
        self.settings = settings
        self.defaults = defaults
        self.starts_from = starts_from
        self.diverged_hint = diverged_hint
        self.history: list[dict[str, float]] = []
        self.best_score = -math.inf
        self.best_state: dict[str, dict[str, torch.Tensor]] = {}
        self.epoch = 0
        self.epochs_run = 0  # trained by the latest run(); 0: its caller may start more whatever the time budget

    # -- state ----------------------------------------------------------------------------
    def _save(self) -> None:
        if not distributed.is_main():
            return
        checkpoint.save(self.state_path, {
            "kind": "state", "stage": self.name, "settings": self.settings, "epoch": self.epoch,
            **({"starts_from": self.starts_from} if self.starts_from else {}),
            "history": self.history, "best_score": self.best_score, "best_state": self.best_state,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
        })

    def check_settings(self) -> dict[str, Any]:
        """The stopped stage's state, read: ConfigError if it was started with other settings."""
        st = checkpoint.load(self.state_path, kind="state")
        saved = st.get("settings")
        now = self.settings
        if saved and now:  # a section a state lacks was not recorded when it was written (eval): not compared
            now = {k: v for k, v in now.items() if k in saved}
            # a key a section lacks is an option added since: it had its default then
            saved = with_defaults(saved, now, self.defaults or {})
        diffs = differences(saved, now, source="in the stopped stage") if saved and self.settings else []
        if diffs:
            raise ConfigError(f"--resume would carry on {self.state_path} ({self.name}, stopped after epoch "
                              f"{int(st['epoch'])}), but it was started with other settings ({listed(diffs)}). "
                              "Resume with the settings it was started with, train into a new --out, or move "
                              f"{self.state_path} aside to start {self.name} again")
        self._check_starts_from(st)
        return st

    def _check_starts_from(self, st: dict[str, Any]) -> None:
        """ConfigError if the stopped stage started from another model than it would now (an HR model trained
        again since); a state without the record (written before it was kept) is not compared."""
        then = st.get("starts_from")
        if not isinstance(then, dict) or not self.starts_from:
            return
        for what, digest in self.starts_from.items():
            if what in then and then[what] != digest:
                model = self.name.split(".")[0]  # fsrfer.pretrain and fsrfer.gan are stages of fsrfer
                states = sorted({self.state_path.name} | {p.name for p in self.state_path.parent.glob(f"{model}.*.pt")})
                raise ConfigError(
                    f"--resume would carry on {self.state_path} ({self.name}, stopped after epoch {int(st['epoch'])}), "
                    f"but it started from another {what} (weights SHA-256 "
                    f"{str(then[what])[:12]}... then, {digest[:12]}... now: it was trained again since). Put back "
                    f"the {what} it started from, or move {', '.join(states)} in {self.state_path.parent} aside to "
                    f"train {model} again from this one")

    def _load(self) -> None:
        st = self.check_settings()
        for k, m in self.modules.items():
            m.load_state_dict(st["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(st["optimizers"][k])
        self.epoch, self.history = int(st["epoch"]), list(st["history"])
        self.best_score, self.best_state = float(st["best_score"]), st["best_state"]
        log.info("%s: resumed after epoch %d from %s", self.name, self.epoch, self.state_path)

    def _check_finite(self, stats: dict[str, float]) -> None:
        """TrainingDiverged if the epoch just trained left a non-finite statistic (its losses, summed over the
        epoch: one bad step shows) or non-finite weights in a module (a last step that overflowed). Every rank
        stops: the flag is summed over ranks. Called before the epoch is evaluated or saved."""
        bad = [f"{k} {v}" for k, v in stats.items() if isinstance(v, float) and not math.isfinite(v)]
        for k, m in self.modules.items():
            tensors = [t for t in m.state_dict().values() if t.is_floating_point()]
            if tensors and not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
                bad.append(f"weights of {k}")
        if not distributed.all_reduce_sum([float(bool(bad))])[0]:
            return
        if self.epoch:
            kept = (f"Nothing of epoch {self.epoch + 1} was saved: {self.state_path} keeps epoch {self.epoch}, the "
                    "last finished one, and no model was written from the diverged weights.")
        else:
            kept = "No epoch of it finished, so it saved no state and no model."
        raise TrainingDiverged(
            f"{self.name}: training diverged in epoch {self.epoch + 1} of {self.epochs}: not finite: "
            f"{', '.join(bad) if bad else 'the loss or weights on another rank'}; expected finite losses and "
            f"weights. {kept} {self.diverged_hint}".rstrip())

    def epoch_rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(self.name.encode()), epoch])

    # -- loop -----------------------------------------------------------------------------
    def run(self, train_epoch: TrainEpoch, evaluate: Evaluate, resume: bool = False,
            stop_after: Optional[int] = None, deadline: Optional[float] = None) -> bool:
        """Train to the last epoch. Returns True when finished, False when stopped early
        (``stop_after`` epochs run in this call, or the ``deadline`` (time.monotonic()) passed); the state
        is saved either way and a later call with ``resume=True`` continues."""
        if resume and distributed.broadcast(self.state_path.is_file()):
            if not self.state_path.is_file():
                raise ModelError(f"rank {distributed.rank()}: {self.state_path} exists on rank 0 but not here; "
                                 "the output directory must be on a filesystem shared by every node")
            self._load()
        self.epochs_run = 0
        from tqdm.auto import tqdm

        main = distributed.is_main()
        bar = tqdm(total=self.epochs, initial=self.epoch, desc=self.name, unit="epoch", leave=False,
                   disable=None if main else True)
        while self.epoch < self.epochs:
            t0 = time.monotonic()
            rng = self.epoch_rng(self.epoch)
            torch.manual_seed(int(rng.integers(2**31)))
            for m in self.modules.values():
                m.train()
            stats = dict(train_epoch(self.epoch, rng))
            try:
                self._check_finite(stats)
            except TrainingDiverged:
                bar.close()  # before the error is reported
                raise
            for m in self.modules.values():
                m.eval()
            score = distributed.broadcast(float(evaluate()) if main else math.nan)
            stats.update(epoch=self.epoch + 1, val_score=score, seconds=round(time.monotonic() - t0, 2))
            self.history.append(stats)
            if score > self.best_score:
                self.best_score = score
                # kept in CPU memory (a copy, not the live tensors), whatever device trains
                self.best_state = {k: copy.deepcopy(checkpoint.to_cpu(m.state_dict())) for k, m in self.modules.items()}
            self.epoch += 1
            self._save()
            bar.update(1)
            bar.set_postfix(val=f"{score:.4f}", best=f"{self.best_score:.4f}")
            log.info("%s epoch %d/%d: %s", self.name, self.epoch, self.epochs,
                     {k: round(v, 4) if isinstance(v, float) else v for k, v in stats.items()})
            self.epochs_run += 1
            # Rank 0's clock decides, so that all ranks stop after the same epoch.
            if self.epoch < self.epochs and distributed.broadcast(
                    (stop_after is not None and self.epochs_run >= stop_after)
                    or (deadline is not None and time.monotonic() > deadline)):
                bar.close()
                if main:
                    log.warning("%s: stopped after epoch %d of %d; continue with --resume", self.name, self.epoch,
                                self.epochs)
                return False
        bar.close()
        return True

    def load_best(self) -> None:
        """Load the best-on-validation weights into the modules."""
        for k, m in self.modules.items():
            if k in self.best_state:
                m.load_state_dict(self.best_state[k])
