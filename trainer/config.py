"""Training configuration: YAML files with strict keys (a misspelled option is an error, not ignored)."""
from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
from pathlib import Path
from typing import Any, Optional, Sequence, Type, TypeVar

from fsrfer_edge.errors import ConfigError, one_line
from fsrfer_edge.fileio import as_path, file_problem
from fsrfer_edge.preprocessing import FACTORS

T = TypeVar("T")


@dataclasses.dataclass
class DataConfig:
    path: str = "../shared/data/fer2013.npz"  # relative paths resolve against the config file's repo
    labels: str = "ferplus"  # ferplus | fer2013 (for ../shared/data); ignored by other formats
    limit_train: int = 0  # 0 = all; else a seeded subset (short runs, CI)
    limit_eval: int = 0
    synthetic: int = 0  # >0: ignore path, use this many procedurally drawn faces (tests, offline demos)
    # Train stage 1 and the LR-fine-tuned baseline on the FER+ vote distributions instead of the majority
    # label (accuracy is still measured against the majority label).
    soft_labels: bool = False


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
    # With augment: each face rotated by up to +-rotate degrees and zoomed by 1 +- scale (0 = off), in
    # stage 1, the LR-fine-tuned baseline and stage 2 alike (an improvement that is not the method's).
    rotate: float = 0.0
    scale: float = 0.0
    # With augment: random erasing (Zhong et al., 2020; torchvision's RandomErasing draw), the probability that
    # a face gets a rectangle of 2-33% of its area replaced by noise; 0 = off. Used where rotate is.
    erase: float = 0.0
    # Mixup (Zhang et al., 2018) in stage 1 only: each batch of augmented HR faces is blended with a shuffled
    # copy of itself, x = lam x + (1 - lam) x[perm], lam ~ Beta(mixup, mixup), and so are its targets (the
    # vote distributions, or the two labels' losses); 0 = off (the random stream is then the plain one). Not in
    # the LR-fine-tuned baseline, stage 2 or the SWA epochs below.
    mixup: float = 0.0
    # A model checkpoint (fsrfer-train's models/*.pt, or the shipped fsrfer_edge/models/default.pt) whose
    # FER network stage 1 starts from instead of random weights, e.g. the FER+ HR model fine-tuned on the
    # FER2013 labels (configs/fer2013_from_ferplus.yaml); relative paths are from the repository root.
    init: str = ""
    # The SHA-256 of init's FER network weights (trainer.checkpoint.weights_sha256, which the trained model's
    # meta.stage1_init records): when set, any other network is refused. Pins a config whose init is a file
    # that changes, such as the shipped default, to the network it was run from; "" = not checked.
    init_fer_sha256: str = ""
    # Stochastic weight averaging (Izmailov et al., 2018): after the epochs above (0 with an init), this many
    # more at the constant rate swa_lr; the weights at the end of each are averaged and BatchNorm's
    # statistics recomputed on the training faces. The averaged network is the stage's model.
    swa_epochs: int = 0
    swa_lr: float = 0.01
    # Self-distillation from a test-time flip: a frozen teacher, the FER network of the model checkpoint
    # distill_from (e.g. the one stage 1 starts from), answers each augmented training face as the
    # exported --flip graph would (the mean of its softmaxes on the face and its mirror image,
    # fsrfer_edge.export.onnx_export.flip_average), and the network is also pulled towards that answer
    # with weight distill (KL at distill_temperature, times T^2). The flip then costs nothing at run time.
    # 0 = off; relative paths are from the repository root. The SWA epochs, if any, train without it. Several
    # checkpoints, comma-separated, make an ensemble teacher (the mean of their flip-averaged softmaxes). One
    # .npz instead holds such a teacher's answers precomputed on the unaugmented training faces
    # (scripts/teacher_answers.py): no teacher forwards while training; each augmented face is distilled
    # towards its clean face's answer, as it is trained on its clean face's votes (not with mixup).
    distill_from: str = ""
    distill: float = 0.0
    distill_temperature: float = 2.0


@dataclasses.dataclass
class DegradeConfigYaml:
    factors: tuple[int, ...] = FACTORS
    blur_prob: float = 0.0
    noise_prob: float = 0.0
    jpeg_prob: float = 0.0
    # Down-sampling kernels drawn per face (box = area averaging, as camera pipelines do).
    kernels: tuple[str, ...] = ("bicubic",)
    jpeg_quality: tuple[int, ...] = (30, 90)
    # Faces drawn at factor 1 stay the HR face (no blur, noise or JPEG), as a full-resolution crop is.
    clean_x1: bool = False


@dataclasses.dataclass
class LossConfig:
    """Stage-2 loss terms; a weight of 0 switches a term off (ablations)."""

    adversarial: float = 1e-3
    reconstruction: float = 1.0
    head: float = 1.0
    cross_entropy: float = 0.0  # computed but not used in the authors' code
    # The cross-entropy term's targets: "majority" labels, or the FER+ annotators' "votes" (needs
    # data.soft_labels; smoothed by stage1.label_smoothing), the targets the LR-fine-tuned baseline gets.
    cross_entropy_targets: str = "majority"
    # Distillation: the frozen head's output on the HR features as a soft target for its output on G's.
    distill: float = 0.0
    distill_temperature: float = 2.0
    # The distillation target: the frozen head's answer on the HR face ("plain"), or the mean of its answers
    # on the HR face and its mirror image ("flip": the test-time flip's answer, ~0.6 points better at x1 on
    # FER+ val, at no cost at run time). Only an early G (stage2.generator_start) sees the HR faces.
    distill_teacher: str = "plain"
    # Distillation weighted by each face's down-sample factor: faces down-sampled by distill_from_factor or
    # more get the weight distill_high instead of distill (distill 10 for every face lifted x8 and cost a
    # little at every other factor: docs/experiments.md, "kd10"). 0: off. Needs stage2.scale_aware (the step
    # knows each face's factor) and distill > 0.
    distill_from_factor: int = 0
    distill_high: float = 0.0
    # Attention transfer (Zagoruyko & Komodakis, ICLR 2017; the "teaching where to look" lead of
    # METHOD.md): at every stage boundary inside an early G (layer1 and layer2 for G from the stem to
    # layer3), the spatial attention of G's map on the LR face (the channel mean of the squared map,
    # flattened, L2-normalised) is pulled towards the frozen HR stages' on the HR face; the term is
    # attention / 2 times the sum over those levels of the mean squared difference (the AT code's beta / 2,
    # which uses beta 1000). Re-weighted as the other terms. 0: off. Needs stage2.generator_start.
    attention: float = 0.0
    # Cross-resolution contrast (the Octuplet-loss lead of METHOD.md, as InfoNCE over the batch): the frozen
    # trunk's pooled embedding of G's map on each LR face is pulled towards its own HR face's embedding and
    # pushed from the batch's other HR faces (cosine similarity / contrastive_temperature, cross-entropy of
    # the face's own HR face). Re-weighted as the other terms. 0: off.
    contrastive: float = 0.0
    contrastive_temperature: float = 0.1
    reweight: bool = True  # classification-aware re-weighting w = (1.5 - p_true)^reweight_power
    # The re-weighting's power: 2 (the paper's) spans weights 0.25..2.25; a higher power leans harder on the
    # faces the frozen model gets wrong (4: 0.06..5.06).
    reweight_power: float = dataclasses.field(default=2.0, metadata={"range": (0.5, 8)})
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
    # Where G works: "embedding" (the pooled trunk output) or a stage's output map ("layer3", "layer2"; the
    # last stage's, "layer4" for the resnet18 layouts, has only pooling and the head above it), with the
    # frozen rest of the trunk and the head above it.
    feature_level: str = "embedding"
    generator_blocks: int = 3
    generator_growth: int = 64
    # Where G starts: "" = at feature_level (G on that map only); "stem", "layer1" ... = earlier,
    # with trainable copies of the stages up to feature_level (initialised from the HR model), trained
    # on images instead of cached features.
    generator_start: str = ""
    # FiLM after each copied stage, conditioned on the face's down-sample factor (needs generator_start).
    scale_aware: bool = False
    # Where FiLM sits (with scale_aware): "blocks", after every copied residual block, or "stages", only after
    # each copied stage's last block (half the float element-wise ops on the maps, which an INT8 file keeps
    # in float between its quantized convolutions). Not with a gated G.
    film_at: str = "blocks"
    # > 0: a gated G (needs scale_aware): the copied stages stay frozen, each convolution gets a low-rank
    # residual of this fraction of its channels, and every learned change is scaled by a gate of the
    # face's factor that is 0 at x1 (adapter_gate), so an HR face gets exactly the HR network. 0: the
    # copies themselves train.
    adapter_width: float = dataclasses.field(default=0.0, metadata={"range": (0, 1)})
    # > 0: the residuals' width in the blocks of the last copied stage (the one ending at feature_level)
    # instead of adapter_width; 1.0 makes each of their residuals as wide as the convolution itself.
    adapter_top_width: float = dataclasses.field(default=0.0, metadata={"range": (0, 1)})
    # How the gated G's change grows with the factor f: "log2" (log2 f) or "step" (min(1, log2 f)).
    adapter_gate: str = "log2"
    # G's optimiser in the GAN phase: "adam" (beta1 0, beta2 0.9, as the authors' code and WGAN critics
    # use) or "sgd", the LR-fine-tuned baseline's (Nesterov momentum stage1.momentum, weight decay
    # stage1.weight_decay, linear warm-up over min(1, epochs / 10) epochs, then cosine) at lr_g. The
    # critic keeps Adam either way; pre-training keeps Adam at pretrain_lr.
    g_optimizer: str = "adam"
    # With Adam: epochs of linear warm-up of G's rate at the start of the GAN phase (then cosine, as before).
    # The GAN phase starts a fresh Adam at the full lr_g right after pre-training's rate has decayed to 0;
    # 0 (the default) starts at full rate, as G always has. "sgd" has its own warm-up (above).
    gan_warmup: float = 0.0
    # The copied stages' BatchNorm statistics: "hr" keeps the HR model's (FiLM shifts per factor), "train"
    # re-estimates them on the mixed-factor batches as the LR-fine-tuned baseline does, "per_factor" keeps
    # statistics per training factor, interpolated in log2 of the face's factor (needs scale_aware).
    # Needs generator_start; not with a gated G.
    copy_batchnorm: str = "hr"
    # Route HR faces through the frozen HR stages (spec route_hr_below sqrt(2), InferenceModel.routed) and
    # train G only on the down-sampled faces it will serve (degrade.factors without 1; the factor
    # estimator is still fitted on every factor). Needs scale_aware; not with a gated G.
    route_hr: bool = False
    critic_hidden: int = 256
    critic_layers: int = 3
    losses: LossConfig = dataclasses.field(default_factory=LossConfig)
    ablations: tuple[str, ...] = ("no_reweight", "no_adversarial")


@dataclasses.dataclass
class BaselineConfig:
    lr_finetune_epochs: int = 10
    lr_finetune_lr: float = 0.01
    # > 0: the LR-fine-tuned baseline also distils the frozen HR model's answer on each face's HR original
    # (KL at stage2.losses.distill_temperature, times T^2), the term FSR-FER's stage 2 has. 0: plain.
    lr_finetune_distill: float = dataclasses.field(default=0.0, metadata={"range": (0, math.inf)})  # not "*lr_*"
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
    # How LR test faces reach the model (trainer.evaluate.PROTOCOLS): resized back (the tables' protocol),
    # small crops through the SDK's preprocessing, camera-like crops (area down-sampling + JPEG).
    protocols: tuple[str, ...] = ("resized",)


@dataclasses.dataclass
class TrainConfig:
    name: str = "run"
    seed: int = dataclasses.field(default=0, metadata={"range": (0, 2**63 - 1)})  # a signed 64-bit integer
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


def _build(cls: Type[T], d: Any, where: str, problems: Optional[list[str]] = None) -> T:
    """Build the dataclass ``cls`` from a mapping, checking keys and types.

    With ``problems`` given, each problem is appended to it (the field keeps its default) and building
    carries on, so that one run lists every problem; without it the first problem raises ConfigError.
    """
    collect: list[str] = [] if problems is None else problems
    start = len(collect)
    if not isinstance(d, dict):
        collect.append(f"{where}: expected a mapping, got {type(d).__name__}")
        d = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - set(fields))
    if unknown:
        collect.append(f"{where}: unknown option(s) {unknown}; valid options are {sorted(fields)}")
    kw: dict[str, Any] = {}
    for name, value in d.items():
        if name not in fields:
            continue
        f = fields[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        problem = ""
        if dataclasses.is_dataclass(default):
            kw[name] = _build(type(default), value, f"{where}.{name}", collect)
        elif isinstance(default, tuple):
            if not isinstance(value, (list, tuple)):
                problem = f"{where}.{name}: expected a list, got {value!r}"
            else:
                items, problem = _list_items(tuple(value), default, f"{where}.{name}")
                if not problem:
                    kw[name] = items
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                problem = f"{where}.{name}: expected true/false, got {value!r}"
            else:
                kw[name] = value
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problem = f"{where}.{name}: expected a number, got {value!r}"
            elif isinstance(default, int) and not float(value).is_integer():
                problem = f"{where}.{name}: expected an integer, got {value!r}"
            else:
                kw[name] = type(default)(value)
        elif not isinstance(value, str):
            problem = f"{where}.{name}: expected a string, got {value!r}"
        else:
            kw[name] = value
        if problem:
            collect.append(problem)
    if problems is None and len(collect) > start:
        raise ConfigError(_joined(collect, where))
    return cls(**kw)


def _list_items(value: tuple[Any, ...], default: tuple[Any, ...], where: str) -> tuple[tuple[Any, ...], str]:
    """The items of a list option, of the kind of its default's items (integers: whole numbers, not true/false;
    text: strings), and "" or the problem."""
    if default and isinstance(default[0], int):
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer() for v in value):
            return value, f"{where}: expected a list of integers, got {list(value)!r}"
        return tuple(int(v) for v in value), ""
    if default and isinstance(default[0], str) and not all(isinstance(v, str) for v in value):
        return value, f"{where}: expected a list of names (strings), got {list(value)!r}"
    return value, ""


#: G's optimisers in the GAN phase (``stage2.g_optimizer``).
G_OPTIMIZERS = ("adam", "sgd")

# Range rules, first match wins, by the option's dotted path (fnmatch pattern), so that options added
# later are checked too: (pattern, low, high, low_open, expectation). An option no rule names must be
# finite and >= 0 (no option of this trainer takes a negative number). A field may instead carry
# ``dataclasses.field(metadata={"range": (low, high)})``. Lists of numbers are checked item by item.
_INF = math.inf
RANGE_RULES: tuple[tuple[str, float, float, bool, str], ...] = (
    ("*batch_size", 1, _INF, False, "an integer >= 1"),
    ("*epochs", 0, _INF, False, "an integer >= 0"),
    ("*factors", 1, _INF, False, "integers >= 1"),
    ("*lr", 0, _INF, True, "a finite number > 0"),
    ("*lr_*", 0, _INF, True, "a finite number > 0"),
    ("*_prob", 0, 1, False, "a probability in [0, 1]"),
    ("*quality", 1, 100, False, "JPEG qualities in [1, 100]"),
    ("*momentum", 0, 1, False, "a number in [0, 1]"),
    ("*dropout", 0, 1, False, "a number in [0, 1]"),
    ("*label_smoothing", 0, 1, False, "a number in [0, 1]"),
    ("*temperature", 0, _INF, True, "a finite number > 0"),
    ("*.losses.div_*", 0, _INF, True, "a finite number > 0"),
    ("*_hidden", 1, _INF, False, "an integer >= 1"),
    ("*_blocks", 1, _INF, False, "an integer >= 1"),
    ("*_growth", 1, _INF, False, "an integer >= 1"),
    ("*_layers", 1, _INF, False, "an integer >= 1"),
    ("*_width", 1, _INF, False, "an integer >= 1"),
)


def _rule(path: str, field: "dataclasses.Field[Any]") -> tuple[float, float, bool, str]:
    if "range" in field.metadata:
        lo, hi = field.metadata["range"]  # as given: a float bound would round 2**63 - 1 up to 2**63
        return lo, hi, False, f"a number in [{lo}, {hi}]"
    for pattern, lo, hi, low_open, text in RANGE_RULES:
        if fnmatch.fnmatchcase(path, pattern):
            return lo, hi, low_open, text
    return 0, _INF, False, "a finite number >= 0"


def range_problems(obj: Any, where: str, prefix: str = "") -> list[str]:
    """Every numeric option of a config (dataclass tree) outside its range, one message each."""
    out: list[str] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out += range_problems(value, where, f"{path}.")
            continue
        items = value if isinstance(value, tuple) else (value,)
        numbers = [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not numbers:
            continue
        lo, hi, low_open, text = _rule(f"config.{path}", f)
        bad = [v for v in numbers if not math.isfinite(v) or v < lo or v > hi or (low_open and v <= lo)]
        if bad:
            shown = value if isinstance(value, tuple) else value
            out.append(f"{where}: {path} = {shown!r}; expected {text}")
    return out


def _joined(problems: Sequence[str], where: str) -> str:
    if len(problems) == 1:
        return problems[0]
    body = "; ".join(f"({i}) {p.replace(where + ': ', '', 1)}" for i, p in enumerate(problems, 1))
    return f"{where}: {len(problems)} problems: {body}"


def from_dict(d: dict[str, Any], where: str = "config") -> TrainConfig:
    """Build and validate a config; every problem (keys, types, ranges, choices) is listed in one ConfigError."""
    problems: list[str] = []
    cfg = _build(TrainConfig, d, where, problems)
    problems += range_problems(cfg, where)
    problems += validate_problems(cfg, where)
    if problems:
        raise ConfigError(_joined(problems, where))
    return cfg


def load(path: str | Path) -> TrainConfig:
    """Load a YAML config.

    Raises:
        ConfigError: file missing, empty, not YAML, unknown option, or a value of the wrong type.
        InputError: ``path`` is not a path (None, a number, an empty string).
    """
    import yaml  # train extra

    p = as_path(path, "config path")
    if p.is_dir():
        raise ConfigError(f"config file {p} is a folder; expected a YAML config file, e.g. configs/tiny.yaml "
                          "(see configs/ for the others)")
    problem = file_problem(p)  # missing, a broken link, a FIFO...
    if problem:
        raise ConfigError(f"config file {p} {problem}; expected a YAML config file, see configs/ for examples")
    try:
        d = yaml.load(p.read_text(), Loader=_unique_keys_loader(yaml))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({one_line(exc)})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected a YAML config") from exc
    if d is None:  # an empty file (a failed copy, a truncated write) would train every default: a full run, unasked
        raise ConfigError(f"config file {p} is empty (or only comments); expected YAML options, e.g. a copy of "
                          "configs/tiny.yaml (see configs/ for the others)")
    return from_dict(d, str(p))


def _unique_keys_loader(yaml: Any) -> Any:
    """PyYAML's SafeLoader, except that a key given twice in one mapping is an error: PyYAML keeps the last,
    so a second ``stage1:`` block would silently drop every option of the first."""
    class UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]  # yaml is Any here: subclassing Any
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice in one mapping (the second would replace the "
                        "first); expected each option once", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


DEVICES = ("auto", "cpu", "cuda")
#: The splits ``eval.split`` may name.
EVAL_SPLITS = ("train", "val", "test")


def _validate(cfg: TrainConfig, where: str) -> None:
    """Raise one ConfigError listing every problem of :func:`validate_problems`."""
    problems = validate_problems(cfg, where)
    if problems:
        raise ConfigError(_joined(problems, where))


def validate_problems(cfg: TrainConfig, where: str) -> list[str]:
    """Choices and cross-option rules (ranges: :func:`range_problems`); one message per problem."""
    problems: list[str] = []
    from .models import COPY_BATCHNORM, FILM_AT, GATES, list_backbones

    if cfg.device not in DEVICES:
        problems.append(f"{where}: device must be one of {list(DEVICES)}, got {cfg.device!r} (under torchrun, "
                        "'cuda' gives each process its own GPU, cuda:LOCAL_RANK)")
    if cfg.model.backbone not in list_backbones():
        problems.append(f"{where}: model.backbone {cfg.model.backbone!r} is not one of {list_backbones()}")
    if cfg.data.labels not in ("ferplus", "fer2013"):
        problems.append(f"{where}: data.labels must be 'ferplus' or 'fer2013', got {cfg.data.labels!r}")
    if not 0.0 <= cfg.stage1.erase <= 1.0:
        problems.append(f"{where}: stage1.erase must be a probability in [0, 1], got {cfg.stage1.erase!r}")
    if cfg.stage1.mixup < 0.0:
        problems.append(f"{where}: stage1.mixup must be a Beta concentration >= 0 (0 = off), got {cfg.stage1.mixup!r}")
    if cfg.stage1.init_fer_sha256 and not (cfg.stage1.init and re.fullmatch(r"[0-9a-f]{64}", cfg.stage1.init_fer_sha256)):
        problems.append(f"{where}: stage1.init_fer_sha256 must be 64 lower-case hex digits and needs stage1.init, got "
                        f"{cfg.stage1.init_fer_sha256!r} with init {cfg.stage1.init!r}")
    if bool(cfg.stage1.distill) != bool(cfg.stage1.distill_from):
        problems.append(f"{where}: stage1.distill ({cfg.stage1.distill!r}) and stage1.distill_from "
                        f"({cfg.stage1.distill_from!r}) go together: a teacher checkpoint and a weight > 0, or neither")
    teachers = [v.strip() for v in cfg.stage1.distill_from.split(",")]
    if any(v.endswith(".npz") for v in teachers) and (len(teachers) > 1 or cfg.stage1.mixup):
        problems.append(f"{where}: stage1.distill_from {cfg.stage1.distill_from!r}: an answers file (.npz) stands alone "
                        f"(no other teachers beside it) and does not go with stage1.mixup ({cfg.stage1.mixup!r}): its "
                        "answers are the clean faces', not the blended ones")
    if cfg.stage2.losses.gan not in ("wgan_div", "none"):
        problems.append(f"{where}: stage2.losses.gan must be 'wgan_div' or 'none', got {cfg.stage2.losses.gan!r}")
    start = cfg.stage2.generator_start
    order = ("stem", "layer1", "layer2", "layer3", "layer4", "embedding")
    if start and (start not in order[:4] or cfg.stage2.feature_level in ("embedding", start)
                  or cfg.stage2.feature_level not in order
                  or order.index(start) >= order.index(cfg.stage2.feature_level)):
        problems.append(f"{where}: stage2.generator_start must be '', 'stem', 'layer1', 'layer2' or 'layer3' and before "
                        f"stage2.feature_level (a map); got {start!r} with {cfg.stage2.feature_level!r}")
    if cfg.stage2.losses.distill_teacher not in ("plain", "flip"):
        problems.append(f"{where}: stage2.losses.distill_teacher must be 'plain' or 'flip', got "
                        f"{cfg.stage2.losses.distill_teacher!r}")
    elif cfg.stage2.losses.distill_teacher == "flip" and not (start and cfg.stage2.losses.distill):
        problems.append(f"{where}: stage2.losses.distill_teacher 'flip' needs stage2.generator_start (G on images) and "
                        f"stage2.losses.distill > 0, got {start!r} and {cfg.stage2.losses.distill}")
    lc = cfg.stage2.losses
    if (lc.distill_from_factor or lc.distill_high) and not (
            lc.distill_from_factor >= 2 and lc.distill_high and lc.distill and cfg.stage2.scale_aware):
        problems.append(f"{where}: stage2.losses.distill_from_factor ({lc.distill_from_factor!r}, a factor >= 2) and "
                        f"distill_high ({lc.distill_high!r}, > 0) go together, beside distill > 0 ({lc.distill!r}) "
                        f"and stage2.scale_aware ({cfg.stage2.scale_aware!r}: each face's factor)")
    if cfg.stage2.losses.attention and (not start or cfg.stage2.adapter_width):
        problems.append(f"{where}: stage2.losses.attention needs stage2.generator_start and no adapter_width (it "
                        "matches the maps of G's own copied stages)")
    elif cfg.stage2.losses.attention and order.index(cfg.stage2.feature_level) - order.index(start) < 2:
        problems.append(f"{where}: stage2.losses.attention needs a stage boundary inside G: generator_start "
                        f"{start!r} is right below feature_level {cfg.stage2.feature_level!r}")
    if cfg.stage2.scale_aware and not start:
        problems.append(f"{where}: stage2.scale_aware needs stage2.generator_start (FiLM follows the copied stages)")
    if cfg.stage2.film_at not in FILM_AT:
        problems.append(f"{where}: stage2.film_at must be one of {list(FILM_AT)}, got {cfg.stage2.film_at!r}")
    elif cfg.stage2.film_at != "blocks" and (not cfg.stage2.scale_aware or cfg.stage2.adapter_width):
        problems.append(f"{where}: stage2.film_at {cfg.stage2.film_at!r} needs stage2.scale_aware (it places FiLM) and no "
                        "adapter_width (a gated G has FiLM after every block)")
    ce_targets = cfg.stage2.losses.cross_entropy_targets
    if ce_targets not in ("majority", "votes"):
        problems.append(f"{where}: stage2.losses.cross_entropy_targets must be 'majority' or 'votes', got {ce_targets!r}")
    elif ce_targets == "votes" and not (cfg.data.soft_labels and cfg.stage2.losses.cross_entropy):
        problems.append(f"{where}: stage2.losses.cross_entropy_targets 'votes' needs data.soft_labels: true and "
                        f"stage2.losses.cross_entropy > 0, got {cfg.data.soft_labels} and {cfg.stage2.losses.cross_entropy}")
    if cfg.stage2.copy_batchnorm not in COPY_BATCHNORM:
        problems.append(f"{where}: stage2.copy_batchnorm must be one of {list(COPY_BATCHNORM)}, got {cfg.stage2.copy_batchnorm!r}")
    elif cfg.stage2.copy_batchnorm != "hr" and (not start or cfg.stage2.adapter_width):
        problems.append(f"{where}: stage2.copy_batchnorm {cfg.stage2.copy_batchnorm!r} needs stage2.generator_start and "
                        "no adapter_width (a gated G's copies stay the HR network)")
    elif cfg.stage2.copy_batchnorm == "per_factor" and not cfg.stage2.scale_aware:
        problems.append(f"{where}: stage2.copy_batchnorm 'per_factor' needs stage2.scale_aware (statistics per factor)")
    if cfg.stage2.route_hr and (not cfg.stage2.scale_aware or cfg.stage2.adapter_width):
        problems.append(f"{where}: stage2.route_hr needs stage2.scale_aware (the route is chosen by each face's factor) "
                        "and no adapter_width (a gated G is the HR network at x1 already)")
    elif cfg.stage2.route_hr and not [f for f in cfg.degrade.factors if f != 1]:
        problems.append(f"{where}: stage2.route_hr trains G on degrade.factors other than 1; got {list(cfg.degrade.factors)}")
    if cfg.stage2.g_optimizer not in G_OPTIMIZERS:
        problems.append(f"{where}: stage2.g_optimizer must be one of {list(G_OPTIMIZERS)}, got {cfg.stage2.g_optimizer!r}")
    if cfg.stage2.gan_warmup and (cfg.stage2.g_optimizer != "adam" or cfg.stage2.gan_warmup > cfg.stage2.epochs):
        problems.append(f"{where}: stage2.gan_warmup ({cfg.stage2.gan_warmup!r}) needs g_optimizer 'adam' (sgd has its "
                        f"own warm-up) and at most stage2.epochs ({cfg.stage2.epochs}) epochs")
    if cfg.stage2.adapter_gate not in GATES:
        problems.append(f"{where}: stage2.adapter_gate must be one of {list(GATES)}, got {cfg.stage2.adapter_gate!r}")
    if cfg.stage2.adapter_width and not cfg.stage2.scale_aware:
        problems.append(f"{where}: stage2.adapter_width needs stage2.scale_aware (a gated G's gate is the face's factor)")
    if cfg.stage2.adapter_top_width and not cfg.stage2.adapter_width:
        problems.append(f"{where}: stage2.adapter_top_width needs stage2.adapter_width > 0 (it widens a gated G's top stage)")
    if cfg.stage2.feature_level not in ("embedding", "layer1", "layer2", "layer3", "layer4"):
        problems.append(f"{where}: stage2.feature_level must be 'embedding' or a stage's map, 'layer1' to 'layer4', "
                        f"got {cfg.stage2.feature_level!r}")
    bad = set(cfg.stage2.ablations) - set(ABLATIONS)
    if bad:
        problems.append(f"{where}: unknown stage2.ablations {sorted(bad)}; valid: {sorted(ABLATIONS)}")
    if cfg.eval.split not in EVAL_SPLITS:
        problems.append(f"{where}: eval.split must be one of {list(EVAL_SPLITS)}, got {cfg.eval.split!r}")
    if not cfg.eval.factors:
        problems.append(f"{where}: eval.factors must list at least one down-sample factor (integers >= 1), got []")
    bad = set(cfg.eval.protocols) - {"resized", "small", "camera"}
    if bad or not cfg.eval.protocols:
        problems.append(f"{where}: eval.protocols must list some of ['resized', 'small', 'camera'], got "
                        f"{list(cfg.eval.protocols)}")
    bad = set(cfg.baselines.run) - {"lr_finetune", "image_sr"}
    if bad:
        problems.append(f"{where}: unknown baselines.run {sorted(bad)}; valid: ['image_sr', 'lr_finetune']")
    return problems


#: Stage-2 ablations: name -> changes to the loss config.
ABLATIONS: dict[str, dict[str, Any]] = {
    "no_reweight": {"reweight": False},
    "no_adversarial": {"adversarial": 0.0, "gan": "none"},
    "no_reweight_no_adversarial": {"reweight": False, "adversarial": 0.0, "gan": "none"},
}


def ablated(losses: LossConfig, name: str) -> LossConfig:
    """``losses`` with the ablation ``name`` (a key of :data:`ABLATIONS`) applied.

    Raises:
        ConfigError: on an unknown ablation.
    """
    if not isinstance(name, str) or name not in ABLATIONS:
        raise ConfigError(f"received ablation {name!r}; expected one of {sorted(ABLATIONS)}")
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
