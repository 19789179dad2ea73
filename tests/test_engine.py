import json

import pytest
import torch
from safetensors.torch import load_file

from sjdl.config import load_config
from sjdl.engine import NonFiniteLossError, Trainer, build_optimizer, build_scheduler, lr_factor
from sjdl.engine import train as train_run
from sjdl.engine.trainer import JointForward

from .conftest import tiny_train_config

# spec §4: learning rate during each (1-based) epoch of the released schedule
LR_TABLE = {
    1: 1.09e-5,
    2: 2.08e-5,
    9: 9.01e-5,
    10: 1e-4,
    19: 1e-4,
    20: 6e-5,
    29: 6e-5,
    30: 3.6e-5,
    44: 3.6e-5,
    45: 2.16e-5,
    60: 1.296e-5,
    75: 7.776e-6,
    90: 4.666e-6,
    105: 2.799e-6,
    119: 2.799e-6,
}


def test_lr_per_epoch_equals_the_spec_table():
    cfg = load_config()
    for epoch, lr in LR_TABLE.items():
        assert 1e-4 * lr_factor(epoch) == pytest.approx(lr, rel=1e-3)
    official = load_config(overrides=["preset=official"]).train
    assert 1e-4 * lr_factor(120, steps=official.steps) == pytest.approx(1.680e-6, rel=1e-3)
    opt = build_optimizer(torch.nn.Linear(2, 2), cfg.train)
    sched = build_scheduler(opt, cfg.train)
    seen = {}
    for epoch in range(1, 121):
        seen[epoch] = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
    for epoch, lr in LR_TABLE.items():
        assert seen[epoch] == pytest.approx(lr, rel=1e-3)


def _cfg(root, *extra):
    return tiny_train_config(
        root,
        "train.epochs=2",
        "train.log_every=1",
        "train.val_ids=1",
        "train.warmup_epochs=1",
        "data.pad=2",
        *extra,
    )


def _weights(run):
    return load_file(str(run / "checkpoints" / "last.safetensors"))


def test_resume_gives_identical_weights(fvrid, tmp_path):
    train_run(_cfg(fvrid), tmp_path / "straight", log=lambda *a: None)
    train_run(_cfg(fvrid, "train.epochs=1"), tmp_path / "split", log=lambda *a: None)
    resumed = _cfg(fvrid)  # epochs=2 again, continuing the 1-epoch run
    train_run(resumed, tmp_path / "split", resume=True, log=lambda *a: None)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "split" / "checkpoints" / "best.safetensors").is_file()
    assert "lr" in (tmp_path / "split" / "metrics.jsonl").read_text()


def test_interrupt_writes_resumable_checkpoint(fvrid, tmp_path, monkeypatch):
    calls = {"n": 0}
    orig = Trainer._step

    def flaky(self, batch, real):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return orig(self, batch, real)

    monkeypatch.setattr(Trainer, "_step", flaky)
    with pytest.raises(KeyboardInterrupt):
        train_run(_cfg(fvrid), tmp_path / "run", log=lambda *a: None)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last_state.pt", weights_only=True)
    assert state["epoch"] == 0 and state["step_in_epoch"] == 1
    assert "interrupted" in (tmp_path / "run" / "train.log").read_text()
    monkeypatch.setattr(Trainer, "_step", orig)
    summary = train_run(_cfg(fvrid), tmp_path / "run", resume=True, log=lambda *a: None)
    assert summary["epochs"] == 2


def test_non_finite_losses_are_skipped_then_stop(fvrid, tmp_path, monkeypatch):
    from sjdl.losses import LossComposer

    orig = LossComposer.supervised

    def nan_loss(self, out, pids, clear, out_clear=None, pairs=None):
        terms = orig(self, out, pids, clear, out_clear, pairs)
        terms["total"] = terms["total"] * float("nan")
        return terms

    monkeypatch.setattr(LossComposer, "supervised", nan_loss)
    with pytest.raises(NonFiniteLossError, match="2 consecutive steps had a non-finite loss"):
        train_run(_cfg(fvrid, "train.max_bad_steps=2"), tmp_path / "run", log=lambda *a: None)
    assert "non-finite loss, step skipped" in (tmp_path / "run" / "train.log").read_text()


@pytest.mark.parametrize(
    ("method", "real_every", "expect"),
    [
        ("baseline", 1, {"syn/triplet", "syn/id"}),
        ("jdl", 1, {"syn/restoration"}),
        ("sjdl_wo_sc", 1, {"real/dark_channel", "real/id"}),
        ("sjdl", 2, {"real/self_constraint"}),
    ],
)
def test_methods_train_the_right_terms(fvrid, tmp_path, method, real_every, expect):
    cfg = _cfg(
        fvrid,
        f"method={method}",
        f"train.real_every={real_every}",
        "train.epochs=1",
        "train.val_ids=0",
    )
    train_run(cfg, tmp_path / "run", log=lambda *a: None)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["kind"] == "train"]
    keys = set().union(*(r.keys() for r in steps))
    assert expect <= keys
    if method in ("baseline", "jdl"):
        assert not any(k.startswith("real/") for k in keys)
    if method == "sjdl_wo_sc":
        assert "real/self_constraint" not in keys
    if real_every == 2:  # real batches on global steps 0, 2, ... (logged as steps 1, 3, ...)
        with_real = [r["step"] for r in steps if "real/total" in r]
        assert with_real and all(s % 2 == 1 for s in with_real)
    assert not (tmp_path / "run" / "checkpoints" / "best.safetensors").exists()  # no val split


def test_train_cli_without_data_root_points_to_readme():
    from typer.testing import CliRunner

    from sjdl.cli import app

    result = CliRunner().invoke(app, ["train", "--config", "fvrid_syn"])
    assert result.exit_code == 2 and "data.root is not set" in result.stderr
    assert "Data layout" in result.stderr


def test_run_logger_writes_text_jsonl_and_tensorboard(tmp_path):
    from sjdl.engine.logger import RunLogger, read_metrics

    log = RunLogger(tmp_path, enabled=True, tensorboard=True)
    log.line("hello")
    log.scalars(3, {"loss": 1.5, "lr": 1e-4})
    log.images(3, "val/restored", torch.rand(2, 3, 8, 8))
    log.close()
    assert "hello" in (tmp_path / "train.log").read_text()
    assert read_metrics(tmp_path) == [{"kind": "train", "step": 3, "loss": 1.5, "lr": 1e-4}]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    silent = RunLogger(tmp_path / "other", enabled=False)
    silent.line("x")
    assert not (tmp_path / "other").exists()


def test_unreadable_training_images_are_counted_per_epoch(fvrid, tmp_path):
    victim = sorted((fvrid / "FVRID_syn" / "train_foggy").iterdir())[0]
    victim.write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match="skipped unreadable image"):
        train_run(_cfg(fvrid, "train.val_ids=0"), tmp_path / "run", log=lambda *a: None)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "epoch 1: 1 unreadable image(s) skipped, e.g." in log and victim.name in log
    with pytest.raises(Exception, match="cannot read image"):
        train_run(
            _cfg(fvrid, "train.val_ids=0", "data.strict=true"),
            tmp_path / "strict",
            log=lambda *a: None,
        )


def test_real_batches_can_leave_bn_running_statistics_to_the_synthetic_ones():
    from torch import nn

    from sjdl.engine.trainer import JointForward

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x, firm_input=None, heads=()):
            return self.bn(x)

    syn, real = torch.zeros(4, 3, 2, 2), torch.full((4, 3, 2, 2), 10.0)
    stats = {}
    for keep_real in (True, False):
        net = Net().train()
        JointForward(net, False, real_bn_stats=keep_real)(syn, syn, real, real)
        stats[keep_real] = net.bn.running_mean.clone()
        assert net.bn.momentum == 0.1  # restored after the real forward
    assert torch.allclose(stats[False], torch.zeros(3))  # only the all-zero syn batch counted
    assert torch.allclose(stats[True], torch.full((3,), 1.0))  # 0.9 * 0 + 0.1 * 10


def test_dsbn_keeps_the_real_stream_out_of_the_synthetic_bn_and_inference():
    from sjdl.config import load_config
    from sjdl.models import build_model
    from sjdl.models.dsbn import DualBatchNorm

    cfg = load_config(overrides=["model.backbone=resnet18", "model.dsbn=true", "method=sjdl"])
    model = build_model(cfg, num_syn_ids=3).train()
    duals = [m for m in model.modules() if isinstance(m, DualBatchNorm)]
    assert len(duals) == 21 and all(m.domain == "syn" for m in duals)  # 20 in ResNet-18 + neck
    assert model.firm is not None and not any(
        isinstance(m, DualBatchNorm) for m in model.firm.modules()
    )
    syn, real = torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64) * 0.2 + 0.8
    first = duals[0]
    JointForward(model, False)(syn, syn, real, real)
    assert all(m.domain == "syn" for m in duals)  # restored after the real forward
    # the real batch moved only the real copy's statistics, and its affine parameters are its own
    assert not torch.equal(first.real.running_mean, first.syn.running_mean)
    assert first.real.weight is not first.syn.weight
    x = torch.rand(2, 3, 64, 64)
    before = model.extract_features(x)
    for m in duals:  # inference never reads the real domain's BN
        m.real.running_mean.add_(5.0)
        m.real.weight.data.mul_(3.0)
    assert torch.equal(model.extract_features(x), before)
    keys = model.state_dict().keys()
    assert "cfsm.bn1.syn.weight" in keys and "cfsm.bn1.real.running_var" in keys


def test_consistency_term_is_zero_for_identical_twins_and_trains_both_forwards():
    from types import SimpleNamespace

    from sjdl.config import load_config
    from sjdl.losses import LossComposer
    from sjdl.losses.reid import consistency_loss

    a = torch.randn(6, 8, requires_grad=True)
    assert float(consistency_loss(a, a.detach().clone()).detach()) == pytest.approx(0, abs=1e-7)
    b = -a.detach().clone()
    assert float(consistency_loss(a, b).detach()) == pytest.approx(4.0)  # opposite directions
    cfg = load_config(overrides=["method=baseline", "loss.lambda_consistency=0.5"]).loss
    comp = LossComposer(cfg, "baseline")
    out = SimpleNamespace(global_feat=a, bn_feat=a, logits={}, restored=None)
    twin = SimpleNamespace(global_feat=b.requires_grad_(True), bn_feat=b, logits={})
    pids = torch.tensor([0, 0, 1, 1, 2, 2])
    terms = comp.supervised(out, pids, None, twin)
    assert float(terms["consistency"].detach()) == pytest.approx(2.0)
    terms["consistency"].backward()
    assert a.grad.abs().sum() > 0 and twin.global_feat.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="clear twins"):
        comp.supervised(out, pids, None)
