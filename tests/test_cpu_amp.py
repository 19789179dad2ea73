"""``train.cpu_amp``: bfloat16 autocast for CPU training, refused on CPUs that lack native
bfloat16 (where it would run many times slower), off by default."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from sjdl.config import ConfigError, load_config
from sjdl.engine import train as train_run

from .conftest import cli, make_fvrid, one_line_error, tiny_train_config

QUIET = {"log": lambda *a: None}


@pytest.fixture
def data(tmp_path):
    return make_fvrid(tmp_path / "data", train_ids=(3, 7, 9, 11))


def _cfg(root, *extra):
    return tiny_train_config(
        root, "train.epochs=1", "train.val_ids=0", "method=sjdl", "train.log_every=1", *extra
    )


def _cpu_has_bf16(monkeypatch, native: bool):
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: native)


def test_off_by_default():
    assert load_config("demo").train.cpu_amp is False
    assert load_config().train.cpu_amp is False


def test_refused_before_anything_is_written_on_a_cpu_without_native_bfloat16(
    data, tmp_path, monkeypatch
):
    _cpu_has_bf16(monkeypatch, False)
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="train.cpu_amp: this CPU has no AVX512-BF16 or AMX"):
        train_run(_cfg(data, "train.cpu_amp=true"), run, **QUIET)
    assert not run.exists()
    small = ("data.num_ids=2", "data.num_instances=2", "model.backbone=resnet18")
    result = cli("train", "-o", tmp_path / "cli", f"data.root={data}", *small, "train.cpu_amp=true")
    one_line_error(result, "train.cpu_amp", "AVX512-BF16")
    assert not (tmp_path / "cli").exists()


def test_trains_in_bfloat16_and_keeps_float32_weights(data, tmp_path, monkeypatch):
    """The forward runs in bfloat16 (CFSM's output is bfloat16 during training steps), the
    weights and the checkpoint stay float32, every logged loss is finite; evaluation and
    validation run in float32."""
    _cpu_has_bf16(monkeypatch, True)
    seen = []

    def hook(module, _args, out):
        if type(module).__name__ == "CFSM" and torch.is_grad_enabled():
            seen.append(out[0].dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    run = tmp_path / "bf16"
    try:
        train_run(_cfg(data, "train.cpu_amp=true"), run, **QUIET)
    finally:
        handle.remove()
    assert seen and set(seen) == {torch.bfloat16}
    saved = load_file(run / "checkpoints" / "last.safetensors")
    assert {t.dtype for t in saved.values() if t.is_floating_point()} == {torch.float32}
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["kind"] == "train"]
    assert losses and all(math.isfinite(v) for v in losses)
