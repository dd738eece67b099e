"""Multi-process training with PyTorch DistributedDataParallel, launched by ``torchrun``.

Not launched by torchrun (no ``WORLD_SIZE`` > 1 in the environment), every helper here is a no-op
that returns its input unchanged, so the single-process trainer runs exactly the code it ran before.

Under torchrun with N processes:

- Every rank draws the same per-epoch random stream (see :mod:`trainer.runner`), so every rank builds
  the same shuffled global batch of B faces, with the same augmentation and degradation, and keeps
  its own contiguous block of B/N rows (:func:`shard_slice`). DDP averages the gradients. With
  BatchNorm statistics synchronised across ranks (:func:`wrap_ddp`), an N-process run computes the same
  updates as one process with batch B, up to float summation order.
- Rank 0 alone writes files (checkpoints, feature caches, evaluation) and evaluates; the other ranks
  wait at a barrier and get the validation score by broadcast, so all ranks keep the same best weights
  and stop at the same epoch.
- Device: CPU processes join with gloo (BatchNorm synchronised by :class:`GlooSyncBatchNorm`); GPU
  processes with NCCL, one GPU each (``cuda:LOCAL_RANK``, ``torch.nn.SyncBatchNorm``, DDP
  ``device_ids``). Collectives of this module put their tensors where the backend needs them.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import os
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch
from torch import nn

from fsrfer_edge.errors import BackendUnavailable, ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long ranks wait at a barrier while rank 0 works alone (feature extraction, evaluation).
DEFAULT_TIMEOUT_MIN = 60.0


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, number of processes, backend ("" when single-process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r}; expected an integer (torchrun sets it)") from None


def _initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def context() -> DistContext:
    """The current process's :class:`DistContext` (single-process when no group is initialised)."""
    if not _initialized():
        return DistContext()
    d = torch.distributed
    return DistContext(d.get_rank(), d.get_world_size(), _env_int("LOCAL_RANK", 0), str(d.get_backend()))


def init_from_env(device: str = "cpu", timeout_min: float = DEFAULT_TIMEOUT_MIN) -> DistContext:
    """Join the process group torchrun set up (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...).

    Args:
        device: "cpu" (backend gloo) or "cuda" (backend NCCL, one GPU per process: ``cuda:LOCAL_RANK``).
        timeout_min: how long a rank waits at a collective, e.g. while rank 0 extracts features alone.

    Returns:
        The context; single-process (and nothing initialised) when ``WORLD_SIZE`` is unset or 1.

    Raises:
        ConfigError: a malformed torchrun environment or an unknown device.
        BackendUnavailable: torch.distributed, gloo, NCCL or CUDA missing for what was asked.
    """
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"received device {device!r}; expected 'cpu' (gloo) or 'cuda' (NCCL)")
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistContext()
    if _initialized():
        return context()
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} with WORLD_SIZE={world}; expected 0 <= RANK < WORLD_SIZE (launch with torchrun)")
    if not torch.distributed.is_available():
        raise BackendUnavailable("WORLD_SIZE > 1 but this torch build has no torch.distributed; install a torch "
                                 "wheel with distributed support or run one process")
    d = torch.distributed
    if device == "cuda":
        if not (torch.cuda.is_available() and d.is_nccl_available()):
            raise BackendUnavailable("device 'cuda' needs CUDA and NCCL; none found. Use device 'cpu' (gloo)")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPUs are visible; "
                              "use --nproc_per_node <= the number of GPUs")
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    else:
        if not d.is_gloo_available():
            raise BackendUnavailable("this torch build has no gloo backend for CPU training; use device 'cuda' (NCCL)")
        backend = "gloo"
    d.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_min))
    log.debug("rank %d/%d (local %d) joined with %s", rank, world, local_rank, backend)
    return DistContext(rank, world, local_rank, backend)


def cleanup() -> None:
    """Leave the process group (no-op when single-process)."""
    if _initialized():
        torch.distributed.destroy_process_group()


def rank() -> int:
    return torch.distributed.get_rank() if _initialized() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if _initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and when single-process): the one process that writes files and logs progress."""
    return rank() == 0


def _nccl() -> bool:
    return _initialized() and str(torch.distributed.get_backend()) == "nccl"


def _comm_device() -> torch.device:
    """Where tensors for a collective must live: this rank's GPU under NCCL, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if _nccl() else torch.device("cpu")


def check_device(device: str) -> None:
    """Under torchrun, the training device must match the process group's backend (cpu: gloo,
    cuda: NCCL); nothing to check in one process.

    Raises:
        ConfigError: they do not match (join with ``init_from_env(device)`` for the same device).
    """
    if world_size() == 1:
        return
    backend = str(torch.distributed.get_backend())
    expected = "nccl" if device == "cuda" else "gloo"
    if backend != expected:
        raise ConfigError(f"training device {device!r} under a {backend} process group; expected {expected} "
                          f"for {device!r}: join with init_from_env({device!r}) (fsrfer-train does)")


def barrier() -> None:
    if world_size() > 1:
        if _nccl():  # name the GPU, else NCCL guesses one (and warns)
            torch.distributed.barrier(device_ids=[torch.cuda.current_device()])
        else:
            torch.distributed.barrier()


def main_first(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0, then (after a barrier) on the other ranks: rank 0 writes a cache that
    the others then read instead of computing it again."""
    if world_size() == 1:
        return fn()
    if is_main():
        out = fn()
        barrier()
        return out
    barrier()
    return fn()


def broadcast(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (a picklable value: a score, a flag)."""
    if world_size() == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum over ranks (float64); unchanged when single-process."""
    if world_size() == 1:
        return list(values)
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
    torch.distributed.all_reduce(t)
    return t.tolist()


def all_reduce_mean(stats: dict[str, float]) -> dict[str, float]:
    """Per-key mean over ranks of per-rank metrics (equal shards: the global mean); unchanged when
    single-process. Every rank must pass the same keys."""
    if world_size() == 1:
        return stats
    keys = list(stats)  # the same order on every rank: the same code made the dict
    sums = all_reduce_sum([stats[k] for k in keys])
    return {k: s / world_size() for k, s in zip(keys, sums)}


# ---------------------------------------------------------------------------------------------
# Sharding a global batch
# ---------------------------------------------------------------------------------------------


def check_global_batch(batch_size: int, n: int, what: str) -> None:
    """Under DDP the global batch must split evenly and the data must fill at least one batch.

    Raises:
        ConfigError: ``batch_size`` not a multiple of the number of processes, or fewer than
            ``batch_size`` training faces.
    """
    w = world_size()
    if w == 1:
        return
    if batch_size % w:
        raise ConfigError(f"{what} = {batch_size} does not split over {w} processes; expected a multiple of {w} "
                          "(each process takes batch_size / nproc faces of every global batch)")
    if n < batch_size:
        raise ConfigError(f"{n} training faces are fewer than one global batch ({what} = {batch_size}); "
                          "use a smaller batch or more data")


def shard_slice(n: int) -> slice:
    """This rank's rows of a global batch of ``n`` rows: the contiguous block ``[r*n/N, (r+1)*n/N)``;
    all rows (``slice(None)``) when single-process."""
    w = world_size()
    if w == 1:
        return slice(None)
    r = rank()
    return slice(r * n // w, (r + 1) * n // w)


def shard_rand_generator(offset: int, total: int) -> torch.Generator:
    """A generator that gives this rank the draws a single process would give rows
    ``offset..offset+k`` of a ``torch.rand(total, ...)`` call, and advances the default CPU generator
    past all ``total`` draws as that call would.

    Relies on CPU ``torch.rand`` drawing one value per element in order (checked in tests/test_ddp.py),
    and on the default generator being in the same state on every rank (runner.py seeds it per epoch).
    """
    g = torch.Generator()
    g.set_state(torch.default_generator.get_state())
    if offset:
        torch.rand(offset, generator=g)
    torch.rand(total)  # keep the default stream where a single process would have it
    return g


def seed_torch_per_rank() -> None:
    """Give each rank its own torch random stream (dropout masks), derived from the epoch's seed.

    Without it every rank would draw the same dropout masks for its block of the batch. No-op when
    single-process.
    """
    if world_size() > 1:
        torch.manual_seed(int(np.random.default_rng([torch.initial_seed(), rank()]).integers(2**63)))


# ---------------------------------------------------------------------------------------------
# DDP and synchronised BatchNorm
# ---------------------------------------------------------------------------------------------


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable: the gradient of a sum is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        torch.distributed.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad


class GlooSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are over the global batch (all ranks), on CPU.

    ``torch.nn.SyncBatchNorm`` only runs on GPUs. Same parameters and buffers as BatchNorm2d (so
    checkpoints do not change); in eval mode, or single-process, it is plain BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float64)
        # Two passes (mean, then centred squares), accumulated in float64 like the single-process
        # CPU kernel, so the statistics match it closely.
        s = _AllReduceSum.apply(torch.cat([x.sum(dims, dtype=torch.float64), count]))  # type: ignore[no-untyped-call]
        n = s[-1].detach()
        mean = s[:-1] / n
        xc = x - mean.to(x.dtype).view(shape)
        var = _AllReduceSum.apply((xc * xc).sum(dims, dtype=torch.float64)) / n  # type: ignore[no-untyped-call]
        y = xc * torch.rsqrt(var + self.eps).to(x.dtype).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        rm, rv, nbt = self.running_mean, self.running_var, self.num_batches_tracked
        if self.track_running_stats and rm is not None and rv is not None and nbt is not None:
            with torch.no_grad():
                nbt.add_(1)
                m = (1.0 / float(nbt)) if self.momentum is None else self.momentum
                rm.mul_(1 - m).add_(m * mean.to(x.dtype))
                rv.mul_(1 - m).add_(m * (var * n / max(float(n) - 1, 1.0)).to(x.dtype))
        return y


def _convert_batchnorm(module: nn.Module, cuda: bool) -> nn.Module:
    """Replace every BatchNorm2d by a synchronised one, reusing its Parameter and buffer objects (an
    optimiser built before still holds them)."""
    if cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)  # type: ignore[no-untyped-call]
    if type(module) is nn.BatchNorm2d:
        bn = GlooSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        if module.affine:
            bn.weight, bn.bias = module.weight, module.bias
        bn.running_mean, bn.running_var = module.running_mean, module.running_var
        bn.num_batches_tracked = module.num_batches_tracked
        bn.train(module.training)
        return bn
    for name, child in module.named_children():
        new = _convert_batchnorm(child, cuda)
        if new is not child:
            setattr(module, name, new)
    return module


def wrap_ddp(module: nn.Module, sync_batchnorm: bool = True) -> nn.Module:
    """The module wrapped in DistributedDataParallel (gradients averaged over ranks), BatchNorm
    synchronised across ranks; the module itself when single-process.

    The module's own submodules are converted in place, so keep using the unwrapped module for
    ``state_dict()``, evaluation and saving; use the returned one for training forwards.

    Args:
        module: a module whose parameters are on CPU (gloo) or on this rank's GPU (NCCL).
        sync_batchnorm: synchronise BatchNorm statistics (global-batch statistics; needed for a run
            to match the single-process run).
    """
    if world_size() == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    params = list(module.parameters())
    cuda = bool(params) and params[0].is_cuda
    if sync_batchnorm:
        _convert_batchnorm(module, cuda)
    device_ids = [torch.cuda.current_device()] if cuda else None
    return DistributedDataParallel(module, device_ids=device_ids)
