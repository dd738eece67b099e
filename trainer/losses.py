"""Stage-2 losses: WGAN-div critic/generator terms, feature and head-activation reconstruction,
classification-aware re-weighting. Each is a small function so tests can check values directly."""
from __future__ import annotations

import math

import torch
from torch import nn

from fsrfer_edge.errors import InputError


def reweight(probs_true: torch.Tensor, power: float = 2.0) -> torch.Tensor:
    """Classification-aware weight w = (1.5 - p_true)^power (the paper's power 2: in [0.25, 2.25]); no gradient
    flows through it."""
    return (1.5 - probs_true.detach()) ** power


def true_class_prob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)


def weighted_mean(values: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (values * w).mean()


def feature_mse(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error over feature dimensions: shape (N,)."""
    return ((y - target) ** 2).flatten(1).mean(1)


def attention_map(fmap: torch.Tensor) -> torch.Tensor:
    """Spatial attention of a feature map (N, C, H, W): the channel mean of the squared map, flattened and
    L2-normalised per face, shape (N, H*W) (Zagoruyko & Komodakis, "Paying more attention to attention")."""
    return nn.functional.normalize(fmap.pow(2).mean(1).flatten(1), dim=1)


def attention_transfer(maps: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """Per-face sum over levels of the mean squared difference of the attention maps: shape (N,)."""
    if len(maps) != len(targets) or not maps:
        raise ValueError(f"attention transfer needs one target per map; got {len(maps)} maps, {len(targets)} targets")
    return sum(((attention_map(m) - attention_map(t)) ** 2).mean(1) for m, t in zip(maps, targets))  # type: ignore[return-value]


def cross_resolution_nce(emb: torch.Tensor, emb_hr: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-face InfoNCE that ties each LR face's embedding to its own HR face's (the Octuplet-loss lead of
    METHOD.md, as a batch contrast): cosine similarities of every row of ``emb`` to every row of ``emb_hr``,
    divided by ``temperature``, and the cross-entropy of picking the row's own HR face among the batch's.
    Shape (N,); ``emb_hr`` is a fixed target (no gradient flows into it)."""
    if emb.shape != emb_hr.shape or emb.dim() != 2:
        raise ValueError(f"cross-resolution NCE needs two (N, D) embeddings of one shape; got {tuple(emb.shape)} "
                         f"and {tuple(emb_hr.shape)}")
    z = nn.functional.normalize(emb, dim=1)
    t = nn.functional.normalize(emb_hr.detach(), dim=1)
    logits = z @ t.T / temperature
    return nn.functional.cross_entropy(logits, torch.arange(len(z), device=z.device), reduction="none")


def wgan_div_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, w: torch.Tensor,
                     k: float = 2.0, p: float = 6.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-div gradient term k * mean(w * ||grad D(x_hat)||^p) on interpolates x_hat of real and fake
    (as in the authors' code).

    The interpolation weights are drawn on the CPU (``generator``, else the default CPU generator) and
    then moved to ``real``'s device: the same draws on every device, and the DDP shard generators of
    :func:`trainer.distributed.shard_rand_generator` (CPU) keep working on GPUs."""
    a = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=generator, dtype=real.dtype).to(real.device)
    x_hat = (a * real + (1 - a) * fake).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norm_p = grad.flatten(1).norm(2, dim=1) ** p
    return k * weighted_mean(norm_p, w)


def critic_loss(d_real: torch.Tensor, d_fake: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """WGAN critic loss (WGAN-div sign convention: real scores low, generated high)."""
    return weighted_mean(d_real, w) - weighted_mean(d_fake, w)


def generator_adversarial(d_fake: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return weighted_mean(d_fake, w)


def distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """Per-sample KL(teacher || student) of the temperature-softened class distributions, times T^2
    (Hinton et al.), shape (N,)."""
    t = float(temperature)
    log_p_s = torch.log_softmax(student_logits / t, dim=1)
    log_p_t = torch.log_softmax(teacher_logits / t, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(1) * t * t


def flip_teacher_logits(logits: torch.Tensor, mirrored_logits: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """Logits whose softmax at ``temperature`` is the mean of the two faces' (a face and its mirror image)
    softmaxes at that temperature: the test-time flip's answer, as a :func:`distillation` teacher."""
    t = float(temperature)
    both = torch.stack([torch.log_softmax(logits / t, dim=1), torch.log_softmax(mirrored_logits / t, dim=1)])
    return t * (torch.logsumexp(both, dim=0) - math.log(2.0))


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy against target distributions (N, K), e.g. the FER+ annotators' votes: the mean, or
    one value per sample with ``reduction="none"``."""
    if reduction not in ("mean", "none"):  # a string compare per step: anything else was silently the mean
        raise InputError(f"received reduction={reduction!r}; expected 'mean' or 'none'")
    per_sample = -(targets * torch.log_softmax(logits, dim=1)).sum(1)
    return per_sample if reduction == "none" else per_sample.mean()


def smoothed(targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Target distributions (N, K) with label smoothing, as for hard labels: (1 - s) t + s / K."""
    return targets * (1 - smoothing) + smoothing / targets.shape[1]
