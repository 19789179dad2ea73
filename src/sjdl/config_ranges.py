"""The allowed range of every numeric configuration key, in one table; device names.

``RANGES`` maps each int/float key of ``sjdl.config.Config`` (and each int-list key, whose
items are checked) to its bounds; a test makes sure no numeric key is missing, so a new key
cannot skip it. Floats must also be finite (``nan``/``inf`` are refused). Checks that relate
keys (``model.firm.width`` even, FIRM sizes multiples of 32) stay in ``config.validate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names the key and what is allowed."""


BIG = 10**9  # "no real limit" for counts, still far below anything that overflows


@dataclass(frozen=True)
class Range:
    lo: float
    hi: float
    lo_open: bool = False  # lo itself is not allowed
    hi_open: bool = False
    note: str = ""

    def ok(self, v: float) -> bool:
        if isinstance(v, float) and not math.isfinite(v):
            return False
        above = v > self.lo if self.lo_open else v >= self.lo
        below = v < self.hi if self.hi_open else v <= self.hi
        return above and below

    def describe(self, noun: str) -> str:
        lo, hi = _num(self.lo), _num(self.hi)
        if self.hi == BIG:
            text = f"{noun} {'>' if self.lo_open else '>='} {lo}"
        else:
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            text = f"{noun} in {left}{lo}, {hi}{right}"
        return text + (f" ({self.note})" if self.note else "")


def _num(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def at_least(lo, note: str = "", hi=BIG) -> Range:
    return Range(lo, hi, note=note)


def positive(note: str = "", hi=BIG) -> Range:
    return Range(0, hi, lo_open=True, note=note)


PROBABILITY = Range(0, 1, note="a probability")
MIN_SIDE, MAX_SIDE = 32, 4096  # the backbones' stride is 32: a smaller side leaves < 1 cell
SIDE = Range(MIN_SIDE, MAX_SIDE, note="pixels; the backbone's stride is 32")
WEIGHT = at_least(0.0, "a loss weight; 0 turns the term off", hi=1e9)

RANGES: dict[str, Range] = {
    "model.last_stride": Range(1, 2),
    "model.firm.res_blocks": Range(0, 16),  # 0: no ResBlocks (a speed option)
    "model.firm.width": Range(2, 1024, note="an even number of channels"),
    "model.firm.cfsm_grad": Range(0.0, 1e6, note="0 = no restoration gradient into CFSM"),
    "model.firm.train_stride": Range(1, 64, note="FIRM restores every N-th training image"),
    "data.size_train": SIDE,
    "data.size_test": SIDE,
    "data.num_ids": Range(2, 4096, note="P of the P x K sampler; triplets need 2"),
    "data.num_instances": Range(2, 1024, note="K of the P x K sampler; triplets need 2"),
    "data.real_batch_size": Range(0, 65536, note="0 = P x K"),
    "data.hflip": PROBABILITY,
    "data.pad": Range(0, 1024, note="pixels"),
    "data.random_erasing": PROBABILITY,
    "data.workers": Range(0, 256),
    "data.cache_mb": Range(0, 1 << 20),
    "loss.triplet_margin": Range(0.0, 100.0),
    "loss.label_smoothing": Range(0.0, 1.0, hi_open=True),
    "loss.lambda_restoration": WEIGHT,
    "loss.lambda_ce": WEIGHT,
    "loss.lambda_dc": WEIGHT,
    "loss.lambda_tv": WEIGHT,
    "loss.lambda_sc": WEIGHT,
    "loss.dc_patch": Range(1, 255, note="an odd patch side in pixels"),
    "loss.lambda_consistency": WEIGHT,
    "data.fog_augment_p": PROBABILITY,
    "data.fog_augment_beta": Range(0.0, 100.0, note="the fog's extinction coefficient"),
    "train.epochs": at_least(1, hi=100_000),
    "train.lr": positive(hi=10.0),
    "train.weight_decay": Range(0.0, 1.0),
    "train.warmup_epochs": Range(0, 100_000, note="0 = no warm-up"),
    "train.warmup_factor": Range(0.0, 1.0, lo_open=True),
    "train.steps": Range(1, 100_000, note="epochs at which the LR drops"),
    "train.gamma": Range(0.0, 1.0, lo_open=True, note="the LR factor at each step"),
    "train.real_every": at_least(1),
    "train.seed": Range(0, 2**32 - 1),
    "train.max_bad_steps": at_least(1),
    "train.firm_lr_mult": positive(hi=1e6),
    "train.val_ids": at_least(0, "0 = no validation split"),
    "train.eval_every": at_least(1),
    "train.max_steps_per_epoch": at_least(0, "0 = the full epoch"),
    "train.log_every": at_least(1),
    "test.batch_size": Range(1, 65536),
}


def numeric_problem(flat: dict[str, Any], types: dict[str, Any]) -> tuple[str, str] | None:
    """(key, message) for the first numeric value outside its range, else None. ``flat``:
    dotted key -> value; ``types``: dotted key -> 'int' | 'float' (a list: its items)."""
    for key, kind in types.items():
        value = flat[key]
        rng = RANGES.get(key)
        if rng is None:  # a new numeric key without a range: caught by the tests
            raise KeyError(f"{key}: no range declared in sjdl/config_ranges.py")
        items = value if isinstance(value, list) else [value]
        if not all(rng.ok(v) for v in items):
            noun = {"int": "an integer", "float": "a number"}[kind]
            if isinstance(value, list):
                noun = noun.split()[1] + "s each"
            return key, f"{key}: got {value!r}, expected {rng.describe(noun)}"
    return None


DEVICE_HELP = "expected auto, cpu, cuda, cuda:N or mps"


def check_device_name(name: str, key: str = "train.device"):
    """The torch.device of a device name (``auto`` -> cpu here), without asking whether the
    device exists (a checkpoint trained on CUDA still loads on a CPU machine)."""
    import torch

    if name == "auto":
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{key}: got {name!r}, {DEVICE_HELP}") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{key}: got {name!r}, {DEVICE_HELP}")
    return dev


def resolve_device(name: str = "auto", key: str = "train.device"):
    """``auto`` -> CUDA when available, else CPU; ``cuda``/``cuda:N``/``mps`` only when this
    machine has that device (else a ConfigError naming ``key``)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = check_device_name(name, key)
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{key}: {name} asked for, but this machine has no CUDA device")
        if dev.index is not None and dev.index >= count:
            raise ConfigError(
                f"{key}: {name} asked for, but this machine has {count} CUDA device(s) "
                f"(cuda:0..cuda:{count - 1})"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{key}: {name} asked for, but MPS is not available here")
    return dev


NATIVE_BF16 = ("avx512_bf16", "amx_tile")  # torch.cpu._is_<name>_supported


def check_cpu_bf16(key: str = "train.cpu_amp") -> None:
    """A ConfigError naming ``key`` unless this CPU computes bfloat16 natively (AVX512-BF16 or
    AMX): without them bfloat16 convolutions run many times slower than float32's."""
    import torch

    native = [getattr(torch.cpu, f"_is_{k}_supported", lambda: False) for k in NATIVE_BF16]
    if not any(f() for f in native):
        raise ConfigError(
            f"{key}: this CPU has no AVX512-BF16 or AMX instructions, so bfloat16 training "
            'would run far slower than float32 (README "Performance"); leave it off here'
        )
