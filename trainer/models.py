"""Networks: FER backbones (a small registry), head, feature generator G, critic D, image SR net.

Every trained artefact, whatever the method, is served as an :class:`InferenceModel`:
``image -> [image SR] -> trunk -> [G] -> head -> logits``, which is what ``fsrfer-eval`` evaluates and
``fsrfer-export`` fuses into one ONNX graph.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, Optional, Sequence, cast

import torch
from torch import nn

from fsrfer_edge.errors import ConfigError
from fsrfer_edge.preprocessing import FACTORS

# ---------------------------------------------------------------------------------------------
# Backbones
# ---------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.short(x))


class ResNetTrunk(nn.Module):
    """ResNet for small gray faces: 3x3 stem (stride 1 or 2), no max-pool, global average pool.

    Output: the pooled embedding (N, widths[-1]), the feature FSR-FER super-resolves.
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...], depths: tuple[int, ...], stem_stride: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stem_stride, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        layers = []
        c = widths[0]
        for i, (w, d) in enumerate(zip(widths, depths)):
            for j in range(d):
                layers.append(BasicBlock(c, w, 2 if (j == 0 and i > 0) else 1))
                c = w
        self.layers = nn.Sequential(*layers)
        self.feature_dim = c
        # Index into ``layers`` after which each stage's output is available, by feature level name.
        # The last stage's map (e.g. "layer4") is a level too: G there has only pooling and the head above it.
        ends = [sum(depths[:i + 1]) for i in range(len(depths))]
        self.level_ends = {f"layer{i + 1}": e for i, e in enumerate(ends)}
        self.level_channels = {f"layer{i + 1}": widths[i] for i in range(len(widths))}
        # Where an early G may start (DeepGenerator): the stem's output, or any stage's but the last.
        self.start_ends = {"stem": 0, **{k: e for k, e in list(self.level_ends.items())[:-1]}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x)).mean(dim=(2, 3))

    def _level_end(self, level: str) -> int:
        if level not in self.level_ends:
            raise ConfigError(f"unknown feature level {level!r}; expected 'embedding' or one of {sorted(self.level_ends)}")
        return self.level_ends[level]

    def forward_to(self, x: torch.Tensor, level: str) -> torch.Tensor:
        """The trunk's feature map at ``level`` (e.g. ``"layer3"``: the output of the third stage;
        ``"stem"``: the stem's output)."""
        return self.forward_maps(x, [level])[0]

    def forward_maps(self, x: torch.Tensor, levels: Sequence[str]) -> list[torch.Tensor]:
        """The trunk's maps at each of ``levels`` (``"stem"`` or stage names, in any order), from one pass."""
        ends = [0 if level == "stem" else self._level_end(level) for level in levels]
        fmap = self.stem(x)
        maps = {0: fmap}
        # Sequential's __getitem__ is typed Sequential | Module (a slice gives a Sequential)
        for i, block in enumerate(cast(nn.Sequential, self.layers[:max(ends, default=0)])):
            fmap = block(fmap)
            maps[i + 1] = fmap
        return [maps[e] for e in ends]

    def forward_from(self, fmap: torch.Tensor, level: str) -> torch.Tensor:
        """The rest of the trunk after ``level``, down to the pooled embedding."""
        return self.layers[self._level_end(level):](fmap).mean(dim=(2, 3))


_BACKBONES: dict[str, Callable[[int], ResNetTrunk]] = {
    # 0.31 GMAC/face at 48x48: full width, the default before resnet18_half (304 faces/s FP32, 1,241 INT8 u8s8 on a
    # 2-core CPU, measured then).
    "resnet18": lambda c: ResNetTrunk(c, (64, 128, 256, 512), (2, 2, 2, 2), stem_stride=2),
    # 1.25 GMAC/face: full-resolution stem, for a GPU.
    "resnet18_s1": lambda c: ResNetTrunk(c, (64, 128, 256, 512), (2, 2, 2, 2), stem_stride=1),
    # Half width: ~4x fewer MACs and parameters than resnet18 (2.8 M params, ~11 MB FP32), so the
    # shipped ONNX model plus checkpoint stay small and stage 1 trains on a 2-core CPU.
    "resnet18_half": lambda c: ResNetTrunk(c, (32, 64, 128, 256), (2, 2, 2, 2), stem_stride=2),
    # Cheaper still, for CPU experiments.
    "resnet10_half": lambda c: ResNetTrunk(c, (32, 64, 128, 256), (1, 1, 1, 1), stem_stride=2),
    # For tests: trains in seconds.
    "tiny": lambda c: ResNetTrunk(c, (8, 16), (1, 1), stem_stride=2),
}


def list_backbones() -> list[str]:
    return sorted(_BACKBONES)


def create_trunk(name: str, in_channels: int = 1) -> ResNetTrunk:
    """Create a backbone trunk by registry name (see :func:`list_backbones`)."""
    if name not in _BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; expected one of {list_backbones()}")
    return _BACKBONES[name](in_channels)


# ---------------------------------------------------------------------------------------------
# Head, generator, critic, image SR
# ---------------------------------------------------------------------------------------------


class Head(nn.Module):
    """Classifier on the embedding: FC -> ReLU -> dropout -> FC. ``activation()`` is the hidden
    layer the head-activation ("perceptual") loss compares."""

    def __init__(self, feature_dim: int, hidden: int, num_classes: int, dropout: float = 0.3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(feature_dim, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def embed(self, f: torch.Tensor) -> torch.Tensor:
        """The embedding the head reads: ``f`` itself (:class:`LevelHead` pools a map to it)."""
        return f

    def activation(self, f: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc1(f))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.activation(f)))


class FERNet(nn.Module):
    """Trunk + head: the stage-1 model (and the LR-fine-tuned baseline)."""

    def __init__(self, backbone: str, num_classes: int = 7, in_channels: int = 1, head_hidden: int = 256,
                 dropout: float = 0.3) -> None:
        super().__init__()
        self.trunk = create_trunk(backbone, in_channels)
        self.head = Head(self.trunk.feature_dim, head_hidden, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


class DenseResidualBlock(nn.Module):
    """ESRGAN's residual dense block: each layer sees all earlier outputs. On vectors (linear layers)
    or, with ``spatial``, on feature maps (3x3 convolutions, fused by a 1x1 convolution to keep G small)."""

    def __init__(self, dim: int, growth: int, layers: int = 4, res_scale: float = 0.2, spatial: bool = False) -> None:
        super().__init__()
        layer: Callable[[int, int], nn.Module] = (lambda i, o: nn.Conv2d(i, o, 3, 1, 1)) if spatial else nn.Linear
        fuse: Callable[[int, int], nn.Module] = (lambda i, o: nn.Conv2d(i, o, 1)) if spatial else nn.Linear
        self.fcs = nn.ModuleList(layer(dim + i * growth, growth) for i in range(layers))
        self.out = fuse(dim + layers * growth, dim)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for fc in self.fcs:
            feats.append(nn.functional.leaky_relu(fc(torch.cat(feats, 1)), 0.2))
        return x + self.res_scale * self.out(torch.cat(feats, 1))


class FeatureGenerator(nn.Module):
    """G: maps the embedding of an LR face towards the embedding of its HR original.

    Residual-in-residual dense blocks as in the authors' ESRGAN-style generator, on the pooled
    embedding instead of a 128x128 map, with a global skip connection. The last layer starts at
    zero, so an untrained G is the identity and leaves the frozen model's HR accuracy intact.
    """

    def __init__(self, dim: int, blocks: int = 3, growth: int = 64, res_scale: float = 0.2) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(DenseResidualBlock(dim, growth, 4, res_scale) for _ in range(blocks)))
        self.proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj.weight)
        if self.proj.bias is not None:
            nn.init.zeros_(self.proj.bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f + self.proj(self.blocks(f))


class SpatialFeatureGenerator(nn.Module):
    """G on a spatial feature map (e.g. the third stage's output, C x 6 x 6): residual dense blocks of
    3x3 convolutions with a global skip, as in the authors' generator on their 128x128 map. The last
    layer starts at zero, so an untrained G is the identity."""

    def __init__(self, channels: int, blocks: int = 2, growth: int = 32, res_scale: float = 0.2) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(DenseResidualBlock(channels, growth, 4, res_scale, spatial=True)
                                      for _ in range(blocks)))
        self.proj = nn.Conv2d(channels, channels, 3, 1, 1)
        nn.init.zeros_(self.proj.weight)
        if self.proj.bias is not None:
            nn.init.zeros_(self.proj.bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f + self.proj(self.blocks(f))


FACTOR_FEATURES = 3  # (1, log2 f, (log2 f)^2): smooth in the factor, so unseen factors (x5) interpolate


def factor_features(factor: torch.Tensor) -> torch.Tensor:
    """(N,) down-sample factors (1 = HR) -> (N, 3) conditioning features for FiLM."""
    lf = torch.log2(factor.float().clamp(min=1.0))[:, None]
    return torch.cat([lf * 0.0 + 1.0, lf, lf * lf], 1)  # not ones_like: no ConstantOfShape in the graph


class FactorBatchNorm(nn.Module):
    """BatchNorm with statistics per down-sample factor (resolution-specific BatchNorm), one affine.

    Holds running statistics for each anchor factor (``anchors``, the factors G trains on), all starting
    at the HR model's (a BatchNorm2d's state loads into every anchor). In training, each face is
    normalised with the batch statistics of the faces at its own factor, and that factor's running
    statistics follow them. In evaluation each face's statistics are interpolated linearly in log2 of
    its factor between the two nearest anchors (clamped to the first and last), so a factor the graph
    only estimates (1.25, 5) gets statistics between its neighbours'. The faces' factors are set before
    each forward (``factor``), by :class:`DeepGenerator`. Under DDP each rank uses its own batch
    statistics (not synchronised, unlike BatchNorm2d there), and in the graph it cannot be folded into
    the convolution before it.
    """

    # buffers (register_buffer): declared so that the type checker reads them as tensors, not Tensor | Module
    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, channels: int, anchors: tuple[int, ...], eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.anchors = tuple(float(a) for a in anchors)  # constants, not state: the exported graph holds them
        self.register_buffer("running_mean", torch.zeros(len(anchors), channels))
        self.register_buffer("running_var", torch.ones(len(anchors), channels))
        self.factor: Optional[torch.Tensor] = None

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, anchors: tuple[int, ...]) -> "FactorBatchNorm":
        m = cls(bn.num_features, anchors, bn.eps, 0.1 if bn.momentum is None else bn.momentum)
        m.load_state_dict(bn.state_dict(), strict=False)
        return m

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # a BatchNorm2d's statistics (C,) load into every anchor (K, C); its num_batches_tracked is dropped
        for name in ("running_mean", "running_var"):
            v = state_dict.get(prefix + name)
            if v is not None and v.dim() == 1:
                state_dict[prefix + name] = v[None].expand(len(self.anchors), -1).clone()
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def weights(self, factor: torch.Tensor) -> torch.Tensor:
        """(N, K) interpolation weights of each face's factor over the anchors (rows sum to 1)."""
        a = [math.log2(v) for v in self.anchors]
        lf = torch.log2(factor.float().clamp(min=1.0)).clamp(max=a[-1])[:, None]
        # spacing to the anchor below and above (1 where there is none: unused)
        left = torch.tensor([1.0] + [a[i] - a[i - 1] for i in range(1, len(a))], device=factor.device)
        right = torch.tensor([a[i + 1] - a[i] for i in range(len(a) - 1)] + [1.0], device=factor.device)
        d = lf - torch.tensor(a, device=factor.device)[None, :]
        return torch.where(d >= 0, torch.relu(1 - d / right), torch.relu(1 + d / left))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor is None:
            raise ConfigError("FactorBatchNorm needs each face's factor (set by the scale-aware G)")
        w = self.weights(self.factor.to(x.device))
        mean, var = w @ self.running_mean, w @ self.running_var
        if self.training:
            exact = w > 0.999  # training faces sit on anchors: batch statistics of their factor's faces
            for k in range(len(self.anchors)):
                rows = exact[:, k]
                if not bool(rows.any()):
                    continue
                idx = rows.nonzero()[:, 0]
                xs = x[idx]
                m, v = xs.mean((0, 2, 3)), xs.var((0, 2, 3), unbiased=False)
                mean = mean.index_put((idx,), m.expand(len(idx), -1))
                var = var.index_put((idx,), v.expand(len(idx), -1))
                n = xs.numel() / xs.shape[1]
                with torch.no_grad():
                    self.running_mean[k].mul_(1 - self.momentum).add_(self.momentum * m)
                    self.running_var[k].mul_(1 - self.momentum).add_(self.momentum * v * n / max(n - 1, 1))
        scale = self.weight[None] * torch.rsqrt(var + self.eps)
        return x * scale[:, :, None, None] + (self.bias[None] - mean * scale)[:, :, None, None]


def _factor_batchnorm(module: nn.Module, anchors: tuple[int, ...]) -> list[FactorBatchNorm]:
    """Replace every BatchNorm2d under ``module`` by a :class:`FactorBatchNorm` of its state; returns them."""
    made: list[FactorBatchNorm] = []
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            fbn = FactorBatchNorm.from_batchnorm(child, anchors)
            setattr(module, name, fbn)
            made.append(fbn)
        else:
            made += _factor_batchnorm(child, anchors)
    return made


class FiLM(nn.Module):
    """Feature-wise scale and shift from the down-sample factor, starting at the identity."""

    def __init__(self, channels: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(FACTOR_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, 2 * channels))
        last = cast(nn.Linear, self.net[2])  # Sequential's [i] is typed Module
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.net(factor_features(factor)).chunk(2, dim=1)
        return x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


class FactorEstimator(nn.Module):
    """Each face's down-sample factor estimated from the (normalised) model input itself.

    Three statistics of the image, log mean |Laplacian|, log mean |gradient| and log standard
    deviation, with their squares, map linearly to log2 of the factor; the weights are fitted by
    least squares on degraded training faces (:func:`trainer.train.fit_factor_estimator`). A face
    down-sampled and resized back loses its high frequencies, which is what these measure; the fit
    is of the same kind of faces G is trained on (kernels, JPEG, noise, blur). With it in the fused
    graph a scale-aware G needs no second input: small crops (resized to the input size by the SDK)
    and crops an app already resized are treated alike. Until fitted it refuses to run.
    """

    N_WEIGHTS = 7
    EPS = 1e-6
    # buffers (register_buffer): declared so that the type checker reads them as tensors, not Tensor | Module
    weights: torch.Tensor
    fitted: torch.Tensor
    log2_max: torch.Tensor
    laplacian: torch.Tensor

    def __init__(self, max_factor: float = 8.0, pixels: Optional[tuple[float, float]] = None) -> None:
        """``pixels``: (scale, offset) with ``pixel = x * scale + offset`` in [0, 255] (the preprocessing's
        255 * std and 255 * mean). Given, the statistics are computed on the image rounded to whole grey
        levels, so a float input and the same image stored as uint8 get the same estimate (spec key
        ``factor_estimator_pixels``; results/ferplus/factor_estimator_rounding_val.json)."""
        super().__init__()
        self.pixels = (float(pixels[0]), float(pixels[1])) if pixels is not None else None
        self.register_buffer("weights", torch.zeros(self.N_WEIGHTS))
        self.register_buffer("fitted", torch.zeros(()))
        self.register_buffer("log2_max", torch.tensor(math.log2(max_factor)))
        lap = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
        self.register_buffer("laplacian", lap[None, None])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) normalised faces -> (N, 7) regression features."""
        g = x.mean(1, keepdim=True)
        if self.pixels is not None:
            scale, offset = self.pixels
            g = (torch.round(g * scale + offset) - offset) / scale
        lap = torch.nn.functional.conv2d(g, self.laplacian).abs().mean((1, 2, 3))
        grad = (g[..., :, 1:] - g[..., :, :-1]).abs().mean((1, 2, 3)) + \
            (g[..., 1:, :] - g[..., :-1, :]).abs().mean((1, 2, 3))
        centred = g - g.mean((2, 3), keepdim=True)
        std = (centred * centred).mean((1, 2, 3)).sqrt()
        s = torch.log(torch.stack([lap, grad, std], 1) + self.EPS)
        return torch.cat([s[:, :1] * 0.0 + 1.0, s, s * s], 1)  # not ones_like: no ConstantOfShape in the graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the ignore: torch.jit does not list is_tracing in __all__, and the function is unannotated
        if (not torch.jit.is_tracing()  # type: ignore[attr-defined, no-untyped-call]
                and not torch.onnx.is_in_onnx_export() and float(self.fitted) == 0.0):
            raise ConfigError("the factor estimator is not fitted; run trainer.train.fit_factor_estimator "
                              "(scripts/fit_factor_estimator.py for an existing checkpoint)")
        return torch.pow(2.0, self.log2_factor(self.features(x)))

    def log2_factor(self, features: torch.Tensor) -> torch.Tensor:
        """log2 of the factor from :meth:`features`, within [0, log2(max_factor)]."""
        return (features @ self.weights).clamp(min=0.0).minimum(self.log2_max)


#: How a gated G's change grows with the factor f: ``log2`` (0 at x1, 1 at x2, 3 at x8) or ``step``
#: (min(1, log2 f): 0 at x1, 1 from x2 on, so FiLM alone tells the factors x2..x8 apart).
GATES = ("log2", "step")
#: What a deep G's copies do with their BatchNorm statistics: keep the HR model's, re-estimate them on
#: the mixed-factor batches, or keep them per training factor (:class:`FactorBatchNorm`).
COPY_BATCHNORM = ("hr", "train", "per_factor")
#: Where a scale-aware deep G applies FiLM: after every copied block, or after each copied stage's last block.
FILM_AT = ("blocks", "stages")


def hr_gate(factor: torch.Tensor, shape: str = "log2") -> torch.Tensor:
    """(N,) factors -> (N, 1, 1, 1): how much of the learned change a gated G applies (:data:`GATES`),
    0 at factor 1, so that for an HR face it is exactly the HR network."""
    g = torch.log2(factor.float().clamp(min=1.0))[:, None, None, None]
    return g.clamp(max=1.0) if shape == "step" else g


class LowRankConv(nn.Module):
    """A low-rank residual beside a frozen 3x3 convolution: 3x3 to ``rank`` channels, then 1x1 back,
    the second starting at zero (so the sum starts as the frozen convolution)."""

    def __init__(self, conv: nn.Conv2d, rank: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(conv.in_channels, rank, 3, conv.stride, 1, bias=False)  # type: ignore[arg-type]
        self.up = nn.Conv2d(rank, conv.out_channels, 1, bias=False)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


class BlockAdapter(nn.Module):
    """:class:`LowRankConv` residuals for a frozen :class:`BasicBlock`'s two convolutions, scaled per face
    by ``gate`` (:func:`hr_gate`): at gate 0, :meth:`forward` is the block itself. The block is passed
    in, not held, so its weights are stored once (in :class:`DeepGenerator`'s ``stages``)."""

    def __init__(self, block: BasicBlock, width: float) -> None:
        super().__init__()
        self.a1 = LowRankConv(block.conv1, max(1, round(block.conv1.out_channels * width)))
        self.a2 = LowRankConv(block.conv2, max(1, round(block.conv2.out_channels * width)))

    def forward(self, block: BasicBlock, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        y = torch.relu(block.bn1(block.conv1(x) + gate * self.a1(x)))
        return torch.relu(block.bn2(block.conv2(y) + gate * self.a2(y)) + block.short(x))


class DeepGenerator(nn.Module):
    """G that starts early: from the frozen trunk's map at ``start`` (``"stem"``, ``"layer1"``, ...) up to
    the map at ``level`` whose HR version it must match.

    It holds trainable copies of the trunk's stages between the two levels (initialised from the HR
    model by :meth:`init_from`, so an untrained G reproduces the HR model), optionally a FiLM layer after
    each copied block conditioned on the face's down-sample factor (``scale_aware``; ``film_at="stages"``:
    only after each copied stage's last block), and ``blocks``
    residual dense blocks at ``level`` (zero-initialised last projection). The BatchNorm statistics of
    the copies stay those of the HR model (``train()`` keeps them in eval mode): their affine weights
    train, and the factor-dependent shift is FiLM's job. With ``batchnorm="train"`` they train as the
    LR-fine-tuned baseline's do instead: batch statistics in training, running statistics re-estimated
    on the mixed-factor batches. With ``batchnorm="per_factor"`` (needs ``scale_aware``) each copy's
    BatchNorm keeps statistics per factor of ``batchnorm_anchors`` (the training factors;
    :class:`FactorBatchNorm`).

    With ``adapter_width`` > 0 (a *gated* G; needs ``scale_aware``) the copies stay frozen at the HR
    weights and each block's convolutions get low-rank residuals of that fraction of their channels
    (:class:`BlockAdapter`); those residuals, FiLM's scale and shift and the dense blocks' output are all
    multiplied by a gate of the face's factor that is 0 at factor 1 (``gate``, :data:`GATES`), so for an
    HR face G is exactly the HR network, whatever training did, at a fraction of the copies' compute.
    ``adapter_top_width`` (> 0) sets a different width for the blocks of the top stage (the one ending at
    ``level``); at 1.0 each of their residuals is as wide as the convolution it sits beside.
    """

    def __init__(self, trunk: "ResNetTrunk", start: str, level: str, blocks: int = 1, growth: int = 32,
                 scale_aware: bool = False, adapter_width: float = 0.0, gate: str = "log2",
                 adapter_top_width: float = 0.0, batchnorm: str = "hr",
                 batchnorm_anchors: tuple[int, ...] = FACTORS, film_at: str = "blocks") -> None:
        super().__init__()
        if film_at not in FILM_AT:
            raise ConfigError(f"film_at: received {film_at!r}; expected one of {FILM_AT}")
        if film_at != "blocks" and adapter_width:
            raise ConfigError("a gated G (adapter_width > 0) has FiLM after every block; film_at must be 'blocks'")
        if batchnorm not in COPY_BATCHNORM:
            raise ConfigError(f"batchnorm: received {batchnorm!r}; expected one of {COPY_BATCHNORM}")
        if batchnorm == "per_factor" and not scale_aware:
            raise ConfigError("batchnorm 'per_factor' needs scale_aware: its statistics are chosen by the face's factor")
        if batchnorm != "hr" and adapter_width:
            raise ConfigError("a gated G (adapter_width > 0) keeps its copies frozen, BatchNorm statistics included; "
                              f"batchnorm {batchnorm!r} would change what it computes at factor 1")
        self.batchnorm = batchnorm
        if start not in trunk.start_ends or level not in trunk.level_ends or \
                trunk.start_ends[start] >= trunk.level_ends[level]:
            raise ConfigError(f"a deep G needs a start level before its target level; got from {start!r} to {level!r} "
                              f"(levels in order: {['stem', *trunk.level_ends]}; G cannot start at the last)")
        lo, hi = trunk.start_ends[start], trunk.level_ends[level]
        self.start, self.level, self.scale_aware = start, level, bool(scale_aware)
        if adapter_width and not scale_aware:
            raise ConfigError("a gated G (adapter_width > 0) needs scale_aware: its gate is the face's factor")
        for name, width in (("adapter_width", adapter_width), ("adapter_top_width", adapter_top_width)):
            if not 0.0 <= width <= 1.0:
                raise ConfigError(f"{name}: received {width!r}; expected a fraction in [0, 1]")
        if adapter_top_width and not adapter_width:
            raise ConfigError("adapter_top_width needs adapter_width > 0: it widens a gated G's top stage")
        if gate not in GATES:
            raise ConfigError(f"gate: received {gate!r}; expected one of {GATES}")
        self.adapter_width, self.gate = float(adapter_width), gate
        self.stages = nn.ModuleList(copy.deepcopy(trunk.layers[i]) for i in range(lo, hi))
        chans = [cast(BasicBlock, blk).bn2.num_features for blk in self.stages]  # the trunk's blocks
        self.adapter_top_width = float(adapter_top_width) or self.adapter_width
        ends = [0, *trunk.level_ends.values()]
        top_lo = ends[ends.index(hi) - 1] - lo  # the first copied block of the stage ending at ``level``
        self.adapters = nn.ModuleList(
            BlockAdapter(cast(BasicBlock, blk), self.adapter_top_width if i >= top_lo else self.adapter_width)
            for i, blk in enumerate(self.stages)) if self.adapter_width else None
        if self.adapters is not None:
            self.stages.requires_grad_(False)
        # FiLM after every copied block, or (film_at "stages") only after each stage's last block: half the
        # float element-wise ops on the maps, which the INT8 file cannot quantize cheaply.
        stage_ends = {e - lo for e in trunk.level_ends.values() if lo < e <= hi}
        self.film_at = film_at
        self._film_blocks = [i for i in range(len(chans)) if film_at == "blocks" or i + 1 in stage_ends]
        self.films = nn.ModuleList(FiLM(chans[i]) for i in self._film_blocks) if self.scale_aware else None
        self.factor_bns = (_factor_batchnorm(self.stages, tuple(sorted(set(batchnorm_anchors) | {1})))
                           if batchnorm == "per_factor" else [])
        self.refine = SpatialFeatureGenerator(chans[-1], blocks, growth) if blocks else None
        # The stage boundaries inside G (e.g. layer1 and layer2 for G from the stem to layer3): with
        # ``keep_taps`` set, forward keeps G's map at each (after FiLM) in ``taps``, for attention transfer
        # from the HR trunk's maps at the same levels (stage2.losses.attention).
        self.tap_levels = [k for k, e in trunk.level_ends.items() if lo < e < hi]
        self._tap_blocks = [trunk.level_ends[k] - lo for k in self.tap_levels]
        self.keep_taps = False
        self.taps: list[torch.Tensor] = []

    def init_from(self, trunk: "ResNetTrunk") -> None:
        """Copy the HR trunk's weights into the stages (what an untrained deep G starts from)."""
        lo = trunk.start_ends[self.start]
        for i, stage in enumerate(self.stages):
            stage.load_state_dict(trunk.layers[lo + i].state_dict())

    def train(self, mode: bool = True) -> "DeepGenerator":
        super().train(mode)
        if self.batchnorm == "hr":
            for m in self.stages.modules():
                # _BatchNorm: also torch.nn.SyncBatchNorm, which DDP on GPUs puts in BatchNorm2d's place
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, fmap: torch.Tensor, factor: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.scale_aware and factor is None:
            raise ConfigError("this G is scale-aware: it needs each face's down-sample factor (1 = 48 px)")
        if self.adapters is not None:
            assert factor is not None and self.films is not None
            gate = hr_gate(factor, self.gate)
            for stage, adapter, film in zip(self.stages, self.adapters, self.films):
                fmap = adapter(stage, fmap, gate)
                fmap = fmap + gate * (film(fmap, factor) - fmap)
            return fmap if self.refine is None else fmap + gate * (self.refine(fmap) - fmap)
        for bn in self.factor_bns:
            bn.factor = factor
        self.taps = []
        for i, stage in enumerate(self.stages):
            fmap = stage(fmap)
            if self.films is not None and i in self._film_blocks:
                fmap = self.films[self._film_blocks.index(i)](fmap, factor)
            if self.keep_taps and i + 1 in self._tap_blocks:
                self.taps.append(fmap)
        return fmap if self.refine is None else self.refine(fmap)


class SpatialFeatureCritic(nn.Module):
    """D on feature maps: 3x3 convolutions with LeakyReLU, one strided, then a linear score; no
    normalisation (as WGAN-div requires)."""

    def __init__(self, channels: int, hidden: int = 64, size: int = 6) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, hidden, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(hidden * ((size + 1) // 2) ** 2, 1),
        )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f).squeeze(1)


class LevelHead(nn.Module):
    """The frozen rest of the FER model above a feature level: trunk tail -> pool -> head. Has the
    ``forward``/``activation`` pair that stage 2's losses use, so G can work on any level."""

    def __init__(self, fer: "FERNet", level: str) -> None:
        super().__init__()
        self.fer, self.level = fer, level

    def embed(self, fmap: torch.Tensor) -> torch.Tensor:
        return fmap if self.level == "embedding" else self.fer.trunk.forward_from(fmap, self.level)

    def activation(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.fer.head.activation(self.embed(fmap))

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.fer.head(self.embed(fmap))


class FeatureCritic(nn.Module):
    """D: a WGAN critic on embeddings, without normalisation (as WGAN-div requires)."""

    def __init__(self, dim: int, hidden: int = 256, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        c = dim
        for _ in range(layers):
            mods += [nn.Linear(c, hidden), nn.LeakyReLU(0.2)]
            c = hidden
        mods.append(nn.Linear(c, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f).squeeze(1)


class ImageSR(nn.Module):
    """Image super-resolution baseline (VDSR-style): restores the bicubic-upsampled LR face at the
    model's input size with a residual CNN. Works for every factor, like FSR-FER's G."""

    def __init__(self, channels: int = 1, width: int = 32, blocks: int = 6) -> None:
        super().__init__()
        self.inp = nn.Conv2d(channels, width, 3, 1, 1)
        body: list[nn.Module] = []
        for _ in range(blocks):
            body += [nn.Conv2d(width, width, 3, 1, 1), nn.ReLU()]
        self.body = nn.Sequential(*body)
        self.out = nn.Conv2d(width, channels, 3, 1, 1)
        nn.init.zeros_(self.out.weight)
        if self.out.bias is not None:
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(self.body(torch.relu(self.inp(x))))


# ---------------------------------------------------------------------------------------------
# The served model
# ---------------------------------------------------------------------------------------------

METHODS = ("hr", "lr_finetune", "image_sr", "fsrfer")


class InferenceModel(nn.Module):
    """``[image SR] -> trunk -> [G] -> head``: one network per method, and what gets exported."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        method = spec.get("method")
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; expected one of {METHODS}")
        self.spec = dict(spec)
        self.fer = FERNet(spec["backbone"], spec.get("num_classes", 7), spec.get("in_channels", 1),
                          spec.get("head_hidden", 256), spec.get("dropout", 0.3))
        self.sr: Optional[ImageSR] = ImageSR(spec.get("in_channels", 1), **spec.get("sr", {})) if method == "image_sr" else None
        # Where G works: "embedding" (the pooled feature) or a stage's output map, e.g. "layer3".
        self.level = str(spec.get("feature_level", "embedding"))
        self.generator: Optional[nn.Module] = None
        if method == "fsrfer":
            self.generator = create_generator(self.fer.trunk, self.level, spec.get("generator", {}))
        # Where G reads the trunk: its own level, or an earlier one for a deep G.
        self.start = self.generator.start if isinstance(self.generator, DeepGenerator) else self.level
        #: True when the G is scale-aware: forward() takes each face's down-sample factor, or estimates
        #: it with ``factor_estimator`` (present when the spec says ``factor_estimator: true``).
        self.scale_aware = bool(getattr(self.generator, "scale_aware", False))
        pixels = spec.get("factor_estimator_pixels")
        self.factor_estimator: Optional[FactorEstimator] = \
            FactorEstimator(pixels=tuple(pixels) if pixels else None) \
            if self.scale_aware and spec.get("factor_estimator") else None
        #: Faces whose factor is below this go through the frozen HR stages instead of G (0: every face
        #: through G). See :meth:`routed`.
        self.route_hr_below = float(spec.get("route_hr_below", 0.0) or 0.0)
        if self.route_hr_below:
            if not self.scale_aware or not isinstance(self.generator, DeepGenerator):
                raise ConfigError("route_hr_below needs a scale-aware G that starts early (stage2.generator_start "
                                  "and scale_aware): the route is chosen by each face's factor, and the frozen HR "
                                  "stages it takes are the ones G copies")
            if not 1.0 < self.route_hr_below <= 2.0:
                raise ConfigError(f"route_hr_below: received {self.route_hr_below!r}; expected a factor in (1, 2] "
                                  "(sqrt(2): halfway between x1 and x2 in log2)")

    def forward(self, x: torch.Tensor, factor: Optional[torch.Tensor] = None) -> torch.Tensor:
        if factor is None and self.factor_estimator is not None:
            factor = self.factor_estimator(x)
        if self.sr is not None:
            x = self.sr(x)
        trunk = self.fer.trunk
        if self.generator is None:
            return self.fer.head(trunk(x))
        if self.level == "embedding":
            return self.fer.head(self.generator(trunk(x)))
        fmap = trunk.forward_to(x, self.start)
        if self.route_hr_below:
            assert factor is not None
            y = self.routed(fmap, factor)
        else:
            y = self.generator(fmap, factor) if isinstance(self.generator, DeepGenerator) else self.generator(fmap)
        return self.fer.head(trunk.forward_from(y, self.level))

    def routed(self, fmap: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        """The map at ``level``: the frozen HR stages for each face whose factor is below
        ``route_hr_below`` (an HR face gets exactly the HR model's answer), G for the others.

        Each face takes one path, so the cost per face is that of one path. In the graph: NonZero on a
        float mask (TensorRT's NonZero takes FP32/FP16), Gather of each path's faces, and a ScatterND that
        puts the two paths' maps back in input order (its data is the concatenated maps themselves, every
        row overwritten: no ConstantOfShape). Either path may get no faces."""
        trunk = self.fer.trunk
        assert isinstance(self.generator, DeepGenerator)
        hr = (factor < self.route_hr_below).to(fmap.dtype)
        i_hr = torch.nonzero(hr).flatten()
        i_g = torch.nonzero(1.0 - hr).flatten()
        lo, hi = trunk.start_ends[self.start], trunk.level_ends[self.level]
        y_hr = trunk.layers[lo:hi](fmap.index_select(0, i_hr))
        y_g = self.generator(fmap.index_select(0, i_g), factor.index_select(0, i_g))
        both = torch.cat([y_hr, y_g])
        return both.index_put((torch.cat([i_hr, i_g]),), both)


def create_generator(trunk: ResNetTrunk, level: str, options: dict[str, Any]) -> nn.Module:
    """G for a feature level: a vector generator on the embedding, a convolutional one on a map."""
    if level == "embedding":
        return FeatureGenerator(trunk.feature_dim, **options)
    if level not in trunk.level_channels:
        raise ConfigError(f"unknown feature level {level!r}; expected 'embedding' or one of {sorted(trunk.level_channels)}")
    opts = dict(options)
    start = opts.pop("start", "") or level
    if start != level or opts.get("scale_aware"):
        return DeepGenerator(trunk, start, level, **opts)
    opts.pop("scale_aware", None)
    return SpatialFeatureGenerator(trunk.level_channels[level], **opts)
