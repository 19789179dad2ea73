"""Typed configuration: dataclass sections, YAML files, dotted overrides and presets.

Resolution order (later wins): built-in defaults -> preset (``paper`` | ``official`` |
``printed`` | ``recommended``) ->
YAML file -> ``key=value`` overrides. The preset is read from the overrides first, then the
YAML file, so ``preset=official`` on the command line switches every preset-controlled key
while explicit YAML/command-line values still win.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from .config_ranges import (  # noqa: F401 (re-exported)
    MIN_SIDE,
    ConfigError,
    check_cpu_bf16,
    check_device_name,
    numeric_problem,
    resolve_device,
)
from .config_values import _field_types, _flatten, _set, parse_overrides  # noqa: F401
from .config_yaml import MAX_CHARS, YamlError, YamlLimitError, safe_load

PRESETS = ("paper", "official", "printed", "recommended")
METHODS = ("baseline", "jdl", "sjdl_wo_sc", "sjdl")
FogKind = Literal["uniform", "patchy", "scatter", "tinted"]  # data/fog_kinds.py


@dataclass
class FIRMConfig:
    """Fog-free image reconstruction module (spec §2.2)."""

    res_blocks: int = 1  # ResBlocks per stage: 1 as released, 2 in the paper text, 0 a speed option
    # unit: (tanh+1)/2 in [0,1]; tanh: raw, as released; residual: clamp(I + tanh, 0, 1),
    # final convs zero-initialised so FIRM starts as the identity (README: restoration);
    # affine: clamp(gain * I + offset, 0, 1), per-pixel gain and offset (models/firm.py)
    output: Literal["unit", "tanh", "residual", "affine"] = "unit"
    # not in the paper, a speed option: with output=affine, FIRM predicts the gain and offset at
    # 1/scale resolution and upsamples them (1 = full resolution, as released; 2 or 4)
    scale: Literal[1, 2, 4] = 1
    width: int = 64  # channels after the first stage (64 as released); smaller = faster on CPU
    # not in the paper: scale of the restoration losses' gradient into CFSM (1 = joint
    # training as published; 0 = FIRM learns on CFSM features it cannot change)
    cfsm_grad: float = 1.0
    # not in the paper, a speed option: in training FIRM restores every N-th image of each batch
    # (rows 0, N, 2N, ...; with P x K batches and N = K one image per id); 1 = every image, as
    # released. Evaluation, restoration and `sjdl defog` always restore every image.
    train_stride: int = 1


@dataclass
class ModelConfig:
    backbone: Literal["resnet18", "resnet34", "resnet50", "resnet50_ibn_a", "mobilenet_v2"] = (
        "resnet50"
    )
    # local torchvision-format .pth/.safetensors, or "imagenet" = the bundled MobileNetV2
    # weights (sjdl/weights/NOTICE.md); never downloaded
    pretrained: str = ""
    last_stride: int = 1
    split: Literal["conv2", "conv3", "conv4", "conv5"] = "conv2"  # CFSM = stem .. this block
    neck: Literal["bnneck", "dcn_attention"] = "bnneck"
    normalize: Literal["imagenet", "none"] = "imagenet"  # applied inside the model, ReID path
    firm: FIRMConfig = field(default_factory=FIRMConfig)
    # not in the paper: domain-specific BatchNorm, the real stream with its own statistics and
    # affine parameters in CFSM and ReIDM (models/dsbn.py); inference uses the synthetic ones
    dsbn: bool = False


@dataclass
class DataConfig:
    root: str = ""
    dataset: Literal["fvrid", "veri", "folder", "demo"] = "fvrid"
    syn_dir: str = "FVRID_syn"
    real_dir: str = "FVRID_real"
    test_set: Literal["syn", "real"] = "syn"  # which query/gallery pair evaluates the model
    real_labelled: bool = True
    size_train: list[int] = field(default_factory=lambda: [384, 384])
    size_test: list[int] = field(default_factory=lambda: [384, 384])
    num_ids: int = 6  # P of the PxK sampler
    num_instances: int = 6  # K of the PxK sampler
    real_batch_size: int = 0  # unlabelled real batches; 0 = P x K like the synthetic batch
    hflip: float = 0.5
    pad: int = 10
    random_erasing: float = 0.0
    workers: int = 2
    # decoded images kept in memory, MB per run shared out among the loading processes
    # (data/cache.py; exact: the decoder's own pixels); 0 = decode every time
    cache_mb: int = 512
    strict: bool = False
    fog_on_the_fly: bool = False
    # fog augmentation: with probability fog_augment_p a synthetic training image is re-fogged
    # from its clear partner with a kind drawn from fog_augment (data/fog_kinds.py), beta in
    # fog_augment_beta, the built-in depth; [] = off
    fog_augment: list[FogKind] = field(default_factory=list)
    fog_augment_p: float = 0.5
    fog_augment_beta: list[float] = field(default_factory=lambda: [0.4, 1.6])
    # the clear partners of the synthetic training images are ReID training images too
    clear_twins: bool = False
    # not in the paper, a speed option for data.clear_twins: each batch holds P x K foggy images
    # and their clear twins (2 P K images) instead of twins as separate records, so the
    # consistency term needs no second forward (engine/steps.py join_twins)
    twins_in_batch: bool = False


@dataclass
class LossConfig:
    triplet_margin: float = 0.3
    triplet_feature: Literal["pre_bn", "post_bn"] = "pre_bn"
    label_smoothing: float = 0.0
    lambda_restoration: float = 1.0  # lambda_1, Eq. 5
    # Eq. 11 weights chosen by benchmarks/calibrate_eq11.py (README "Calibrating Eq. 11"); the
    # paper's printed ones (L_CE 1, lambda_4 300, spectrum form) are `preset=printed`
    lambda_ce: float = 0.001  # colour entropy weight, Eq. 11
    lambda_dc: float = 1e-6  # lambda_2 (on per-image sums: its effect grows with the pixels)
    lambda_tv: float = 1e-6  # lambda_3 (likewise)
    lambda_sc: float = 0.01  # lambda_4
    # not in the paper: weight of the consistency between a synthetic foggy image's embedding
    # and its clear twin's (losses/reid.py consistency_loss); 0 = off
    lambda_consistency: float = 0.0
    dc_patch: int = 35
    sc_mode: Literal["spectrum", "phase"] = "phase"
    ce_grad: bool = True  # False: L_CE is logged but gives no gradient (released hard histogram)
    sc_grad: bool = True  # False: L_SC is logged but gives no gradient (released .detach())


@dataclass
class TrainConfig:
    epochs: int = 120
    lr: float = 1e-4
    weight_decay: float = 5e-4
    warmup_epochs: int = 10
    warmup_factor: float = 0.01
    steps: list[int] = field(default_factory=lambda: [20, 30, 45, 60, 75, 90, 105])
    gamma: float = 0.6
    real_every: int = 1  # a real batch every N iterations (5 = released schedule)
    # whether real batches update BatchNorm running statistics (released code: they do)
    real_bn_stats: bool = True
    amp: bool = True  # fp16 autocast + GradScaler on CUDA; ignored on CPU
    # bfloat16 autocast on CPU (changes numerics; off = float32): pays where the CPU has
    # AVX512-BF16 or AMX (README "Performance"), refused on CPUs without them
    cpu_amp: bool = False
    channels_last: bool = False
    # CPU, glibc: large blocks from the heap and freed memory kept for the next step instead
    # of fresh pages from the kernel each step (engine/memory.py; the same values; peak memory
    # up to ~8 % higher); false gives freed memory back to the system at once
    reuse_freed_memory: bool = True
    seed: int = 0
    device: str = "auto"
    output_dir: str = "runs/sjdl"
    max_bad_steps: int = 10
    firm_lr_mult: float = 1.0  # FIRM's LR = train.lr x this (FIRM starts from scratch)
    select_on_test: bool = False
    val_ids: int = 0  # train ids held out for model selection (0 = no validation split)
    eval_every: int = 1  # validate every N epochs (when there is a validation split)
    max_steps_per_epoch: int = 0  # 0 = the sampler's full epoch; >0 caps it (quick runs)
    log_every: int = 20  # iterations between log lines / TensorBoard points
    sync_bn: bool = False  # SyncBatchNorm under DistributedDataParallel
    tensorboard: bool = True  # write TensorBoard logs when the package is installed


@dataclass
class TestConfig:
    feature: Literal["post_bn", "pre_bn"] = "post_bn"
    metric: Literal["euclidean", "cosine"] = "euclidean"
    normalize: bool = False
    flip: bool = False
    rerank: bool = False
    batch_size: int = 64


@dataclass
class Config:
    preset: Literal["paper", "official", "printed", "recommended"] = "paper"
    method: Literal["baseline", "jdl", "sjdl_wo_sc", "sjdl"] = "sjdl"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# What `preset: official` changes (spec §1.2, §2.2, §3, §4, §9); everything else is shared.
PRESET_VALUES: dict[str, dict[str, Any]] = {
    "paper": {},
    "official": {
        "model.backbone": "resnet50_ibn_a",
        "model.last_stride": 2,
        "model.neck": "dcn_attention",
        "model.normalize": "none",
        "model.firm.output": "tanh",
        "loss.triplet_feature": "post_bn",
        "loss.lambda_ce": 1.0,
        "loss.lambda_dc": 1e-5,  # Wdc, Wtv: the released code's only real-image gradients
        "loss.lambda_tv": 1e-5,
        "loss.ce_grad": False,
        "loss.lambda_sc": 0.01,
        "loss.sc_mode": "phase",
        "loss.sc_grad": False,
        "data.hflip": 0.0,
        "data.pad": 0,
        "train.real_every": 5,
        "train.steps": [20, 30] + list(range(45, 256, 15)),
        "test.feature": "pre_bn",
    },
    # the paper's printed Eq. 11 weights, with working gradients (README: why not the default)
    "printed": {
        "loss.lambda_ce": 1.0,
        "loss.lambda_dc": 1e-5,
        "loss.lambda_tv": 1e-5,
        "loss.lambda_sc": 300.0,
        "loss.sc_mode": "spectrum",
    },
    # the recipe chosen on the development split for fog no training saw (README "Development
    # split"): each foggy training image's clear twin is also a ReID training image of its id,
    # and a foggy image's embedding is pulled to its twin's. Joint defogging did not add to it
    # there, so it trains the ReID network alone (method=sjdl with this preset adds FIRM).
    # Train it twice as long as a Baseline schedule (README "The chosen length on the test
    # split"); a preset sets values, not lengths relative to the config it is applied to.
    "recommended": {
        "method": "baseline",
        "data.clear_twins": True,
        "loss.lambda_consistency": 1.0,
    },
}


CONFIG_DIR = Path(__file__).parent / "configs"


def resolve_config_path(path: str | Path) -> Path:
    """A file path, or the name of a bundled config (``fvrid_syn``, ``fvrid_real``, ...)."""
    path = Path(path)
    if path.is_file():
        return path
    bundled = CONFIG_DIR / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if bundled.is_file():
        return bundled
    names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config file not found: {path} (bundled configs: {names})")


def read_config_text(path: Path) -> str:
    """A config file as text: UTF-8 (a BOM is fine); binary or UTF-16 files are refused."""
    try:
        with open(path, "rb") as f:
            data = f.read(4 * MAX_CHARS + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror or e})") from None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise ConfigError(f"{path}: a UTF-16 text file; save the config as UTF-8")
    if b"\x00" in data:
        raise ConfigError(f"{path}: a binary file, not a YAML config")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}); "
            "save the config as UTF-8"
        ) from None


def _parse_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = safe_load(text) or {}
    except YamlLimitError as e:
        raise ConfigError(f"{source}: refused: {e}") from None
    except YamlError as e:
        raise ConfigError(f"{source}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level")
    return _flatten(data)


def load_config(
    path: str | Path | None = None, overrides: typing.Iterable[str] = (), text: str | None = None
) -> Config:
    """Build a validated Config from defaults, a preset, an optional YAML file (or YAML
    ``text``, e.g. the config stored in a checkpoint) and overrides."""
    if text is not None:
        file_values = _parse_yaml(text, "config text")
    elif path:
        resolved = resolve_config_path(path)
        file_values = _parse_yaml(read_config_text(resolved), str(resolved))
    else:
        file_values = {}
    cli_values = parse_overrides(overrides)
    preset = cli_values.get("preset", file_values.get("preset", "paper"))
    if preset not in PRESETS:
        raise ConfigError(f"preset: got {preset!r}, expected one of {', '.join(PRESETS)}")
    cfg = Config()
    for values in (PRESET_VALUES[preset], file_values, cli_values):
        for key, value in values.items():
            _set(cfg, key, value)
    validate(cfg)
    return cfg


def numeric_keys(cls: type = None, prefix: str = "") -> dict[str, str]:
    """Dotted key -> 'int' | 'float' for every numeric key (lists: their item type)."""
    out: dict[str, str] = {}
    for name, tp in _field_types(cls or Config).items():
        if dataclasses.is_dataclass(tp):
            out.update(numeric_keys(tp, f"{prefix}{name}."))
            continue
        item = get_args(tp)[0] if get_origin(tp) is list else tp
        if item in (int, float):
            out[f"{prefix}{name}"] = item.__name__
    return out


def validate(cfg: Config) -> None:
    """Every numeric key within its declared range (``config_ranges.RANGES``), then the
    checks that relate keys."""
    problem = numeric_problem(_flatten(cfg.to_dict()), numeric_keys())
    if problem:
        raise ConfigError(problem[1])
    for name in ("size_train", "size_test"):
        size = getattr(cfg.data, name)
        if len(size) != 2:
            raise ConfigError(f"data.{name}: got {size}, expected [height, width]")
        if cfg.method != "baseline" and (size[0] % MIN_SIDE or size[1] % MIN_SIDE):
            raise ConfigError(
                f"data.{name}: got {size}, expected multiples of {MIN_SIDE} (FIRM, the "
                f"restoration branch of method={cfg.method}, needs them)"
            )
    if cfg.model.neck == "dcn_attention" and cfg.model.backbone in (
        "resnet18",
        "resnet34",
        "mobilenet_v2",
    ):
        raise ConfigError("model.neck=dcn_attention needs a 2048-channel backbone (resnet50*)")
    if cfg.model.firm.scale > 1 and cfg.model.firm.output != "affine":
        raise ConfigError(
            f"model.firm.scale={cfg.model.firm.scale} needs model.firm.output=affine (got "
            f"{cfg.model.firm.output}): only a gain and an offset are predicted at low resolution"
        )
    if cfg.data.twins_in_batch and not cfg.data.clear_twins:
        raise ConfigError("data.twins_in_batch=true needs data.clear_twins=true (it places them)")
    if cfg.model.firm.width % 2:
        raise ConfigError(f"model.firm.width: got {cfg.model.firm.width}, expected an even number")
    if cfg.loss.dc_patch % 2 == 0:
        raise ConfigError(f"loss.dc_patch: got {cfg.loss.dc_patch}, expected an odd number")
    beta = cfg.data.fog_augment_beta
    if len(beta) != 2 or beta[0] > beta[1]:
        raise ConfigError(
            f"data.fog_augment_beta: got {cfg.data.fog_augment_beta}, expected [low, high] "
            "with low <= high"
        )
    check_device_name(cfg.train.device)


def flat_dict(d: dict) -> dict:
    """A nested dict (``Config.to_dict()``) as {"section.key": value}."""
    return _flatten(d)
