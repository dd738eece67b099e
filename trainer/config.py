"""Training configuration: YAML files with strict keys (a misspelled option is an error, not ignored)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional, Type, TypeVar

from fsrfer_edge.errors import ConfigError
from fsrfer_edge.preprocessing import FACTORS

T = TypeVar("T")


@dataclasses.dataclass
class DataConfig:
    path: str = "../shared/data/fer2013.npz"  # relative paths resolve against the config file's repo
    labels: str = "ferplus"  # ferplus | fer2013 (for ../shared/data); ignored by other formats
    limit_train: int = 0  # 0 = all; else a seeded subset (short runs, CI)
    limit_eval: int = 0
    synthetic: int = 0  # >0: ignore path, use this many procedurally drawn faces (tests, offline demos)


@dataclasses.dataclass
class ModelConfig:
    backbone: str = "resnet18_half"
    head_hidden: int = 256
    dropout: float = 0.3


@dataclasses.dataclass
class Stage1Config:
    epochs: int = 40
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    augment: bool = True


@dataclasses.dataclass
class DegradeConfigYaml:
    factors: tuple[int, ...] = FACTORS
    blur_prob: float = 0.0
    noise_prob: float = 0.0
    jpeg_prob: float = 0.0


@dataclasses.dataclass
class LossConfig:
    """Stage-2 loss terms; a weight of 0 switches a term off (ablations)."""

    adversarial: float = 1e-3
    reconstruction: float = 1.0
    head: float = 1.0
    cross_entropy: float = 0.0  # computed but not used in the authors' code
    reweight: bool = True  # classification-aware re-weighting w = (1.5 - p_true)^2
    gan: str = "wgan_div"  # wgan_div | none
    div_k: float = 2.0
    div_p: float = 6.0


@dataclasses.dataclass
class Stage2Config:
    pretrain_epochs: int = 5
    epochs: int = 20
    batch_size: int = 128
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    pretrain_lr: float = 1e-3
    # Where G works: "embedding" (the pooled trunk output) or a stage's output map ("layer3", "layer2"),
    # with the frozen rest of the trunk and the head above it.
    feature_level: str = "embedding"
    generator_blocks: int = 3
    generator_growth: int = 64
    critic_hidden: int = 256
    critic_layers: int = 3
    losses: LossConfig = dataclasses.field(default_factory=LossConfig)
    ablations: tuple[str, ...] = ("no_reweight", "no_adversarial")


@dataclasses.dataclass
class BaselineConfig:
    lr_finetune_epochs: int = 10
    lr_finetune_lr: float = 0.01
    image_sr_epochs: int = 10
    image_sr_lr: float = 1e-3
    image_sr_width: int = 32
    image_sr_blocks: int = 6
    run: tuple[str, ...] = ("lr_finetune", "image_sr")


@dataclasses.dataclass
class EvalConfig:
    factors: tuple[int, ...] = FACTORS
    split: str = "val"
    batch_size: int = 256


@dataclasses.dataclass
class TrainConfig:
    name: str = "run"
    seed: int = 0
    threads: int = 0  # 0 = torch default (CPU threads per process)
    device: str = "auto"  # auto | cpu | cuda; auto = cuda when torch sees a GPU, else cpu (see resolve_device)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    stage1: Stage1Config = dataclasses.field(default_factory=Stage1Config)
    degrade: DegradeConfigYaml = dataclasses.field(default_factory=DegradeConfigYaml)
    stage2: Stage2Config = dataclasses.field(default_factory=Stage2Config)
    baselines: BaselineConfig = dataclasses.field(default_factory=BaselineConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _build(cls: Type[T], d: Any, where: str) -> T:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown}; valid options are {sorted(fields)}")
    kw: dict[str, Any] = {}
    for name, value in d.items():
        f = fields[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            kw[name] = _build(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple):
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{where}.{name}: expected a list, got {value!r}")
            kw[name] = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{name}: expected true/false, got {value!r}")
            kw[name] = value
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}.{name}: expected a number, got {value!r}")
            if isinstance(default, int) and not isinstance(default, bool) and not float(value).is_integer():
                raise ConfigError(f"{where}.{name}: expected an integer, got {value!r}")
            kw[name] = type(default)(value)
        else:
            if not isinstance(value, str):
                raise ConfigError(f"{where}.{name}: expected a string, got {value!r}")
            kw[name] = value
    return cls(**kw)


def from_dict(d: dict[str, Any], where: str = "config") -> TrainConfig:
    cfg = _build(TrainConfig, d, where)
    _validate(cfg, where)
    return cfg


def load(path: str | Path) -> TrainConfig:
    """Load a YAML config.

    Raises:
        ConfigError: file missing, not YAML, unknown option, or a value of the wrong type.
    """
    import yaml  # train extra

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist; see configs/ for examples")
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from exc
    return from_dict(d, str(p))


DEVICES = ("auto", "cpu", "cuda")


def _validate(cfg: TrainConfig, where: str) -> None:
    from .models import list_backbones

    if cfg.device not in DEVICES:
        raise ConfigError(f"{where}: device must be one of {list(DEVICES)}, got {cfg.device!r} (under torchrun, "
                          "'cuda' gives each process its own GPU, cuda:LOCAL_RANK)")
    if cfg.model.backbone not in list_backbones():
        raise ConfigError(f"{where}: model.backbone {cfg.model.backbone!r} is not one of {list_backbones()}")
    if cfg.data.labels not in ("ferplus", "fer2013"):
        raise ConfigError(f"{where}: data.labels must be 'ferplus' or 'fer2013', got {cfg.data.labels!r}")
    if cfg.stage2.losses.gan not in ("wgan_div", "none"):
        raise ConfigError(f"{where}: stage2.losses.gan must be 'wgan_div' or 'none', got {cfg.stage2.losses.gan!r}")
    for f in (*cfg.degrade.factors, *cfg.eval.factors):
        if f < 1:
            raise ConfigError(f"{where}: down-sample factors must be integers >= 1, got {f}")
    if cfg.stage2.feature_level not in ("embedding", "layer1", "layer2", "layer3"):
        raise ConfigError(f"{where}: stage2.feature_level must be 'embedding', 'layer1', 'layer2' or 'layer3', "
                          f"got {cfg.stage2.feature_level!r}")
    bad = set(cfg.stage2.ablations) - set(ABLATIONS)
    if bad:
        raise ConfigError(f"{where}: unknown stage2.ablations {sorted(bad)}; valid: {sorted(ABLATIONS)}")
    bad = set(cfg.baselines.run) - {"lr_finetune", "image_sr"}
    if bad:
        raise ConfigError(f"{where}: unknown baselines.run {sorted(bad)}; valid: ['image_sr', 'lr_finetune']")


#: Stage-2 ablations: name -> changes to the loss config.
ABLATIONS: dict[str, dict[str, Any]] = {
    "no_reweight": {"reweight": False},
    "no_adversarial": {"adversarial": 0.0, "gan": "none"},
    "no_reweight_no_adversarial": {"reweight": False, "adversarial": 0.0, "gan": "none"},
}


def ablated(losses: LossConfig, name: str) -> LossConfig:
    return dataclasses.replace(losses, **ABLATIONS[name])


def resolve_device(device: str) -> str:
    """The device a run trains on: "cpu" or "cuda", from a config value or ``--device``.

    Args:
        device: "auto" (cuda when torch sees a GPU, else cpu), "cpu" or "cuda".

    Returns:
        "cpu" or "cuda". Under torchrun, "cuda" means one GPU per process (cuda:LOCAL_RANK, NCCL).

    Raises:
        ConfigError: an unknown device, or "cuda" asked for where torch sees no GPU.
    """
    if device not in DEVICES:
        raise ConfigError(f"received device {device!r}; expected one of {list(DEVICES)}")
    import torch

    cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if cuda else "cpu"
    if device == "cuda" and not cuda:
        why = "this torch build has no CUDA support" if torch.version.cuda is None else \
            "no GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
        raise ConfigError(f"device 'cuda' was asked for but torch.cuda.is_available() is False: {why}; "
                          "use device 'cpu' (or 'auto'), or install a CUDA build of torch on a machine with a GPU")
    return device


def resolve_data_path(cfg: TrainConfig, override: Optional[str], config_path: Optional[str]) -> Optional[Path]:
    """The data path: ``--data`` if given, else the config's, relative to the repository root."""
    if cfg.data.synthetic:
        return None
    raw = override or cfg.data.path
    p = Path(raw)
    if not p.is_absolute() and not override and config_path is not None:
        p = Path(config_path).resolve().parent.parent / p  # configs/ lives in the repo root
    return p
