"""data.twins_in_batch: the clear twins join their foggy images' batch, so the consistency term
uses rows of the same forward instead of a second one."""

from types import SimpleNamespace

import pytest
import torch

from sjdl.config import ConfigError, load_config
from sjdl.engine import train as train_run
from sjdl.engine.steps import join_twins
from sjdl.losses import LossComposer

from .conftest import make_fvrid, tiny_train_config

SUPERVISED = LossComposer.supervised  # the real one, before a test wraps it


def test_join_twins_puts_each_twin_n_rows_after_its_foggy_image():
    foggy = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 3, 2, 2)
    clear = foggy + 10
    batch = {"img": foggy - 1, "foggy": foggy, "clear": clear, "pid": torch.tensor([4, 4, 7])}
    batch["path"] = ["a", "b", "c"]
    out = join_twins(batch)
    assert out["twins"] == 3
    assert torch.equal(out["img"], torch.cat([foggy - 1, clear]))  # the twin is a ReID image
    assert torch.equal(out["foggy"], torch.cat([foggy, clear]))  # ... FIRM's input
    assert torch.equal(out["clear"], torch.cat([clear, clear]))  # ... and its own target
    assert out["pid"].tolist() == [4, 4, 7, 4, 4, 7] and out["path"] == list("abcabc")
    with pytest.raises(ValueError, match="clear partners"):
        join_twins({"img": foggy, "foggy": foggy, "pid": batch["pid"]})


def test_in_batch_pairs_give_the_consistency_of_a_separate_twin_forward():
    torch.manual_seed(0)
    cfg = load_config(overrides=["method=baseline", "loss.lambda_consistency=1.0"]).loss
    comp = LossComposer(cfg, "baseline")
    feat = torch.randn(8, 16)
    pids = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    out = SimpleNamespace(global_feat=feat, bn_feat=feat, logits={}, restored=None)
    joined = comp.supervised(out, pids, None, pairs=4)["consistency"]
    half = SimpleNamespace(global_feat=feat[:4], bn_feat=feat[:4], logits={}, restored=None)
    twin = SimpleNamespace(global_feat=feat[4:], bn_feat=feat[4:], logits={})
    separate = comp.supervised(half, pids[:4], None, twin)["consistency"]
    assert float(joined) == pytest.approx(float(separate)) and float(joined) > 0


def _calls(tmp_path, monkeypatch, *extra):
    """(ids in the batch, pairs, separate twin forward?) per supervised step of a 1-epoch run."""
    calls, supervised = [], SUPERVISED

    def spy(self, out, pids, clear, out_clear=None, pairs=None):
        calls.append((pids.tolist(), pairs, out_clear is not None))
        return supervised(self, out, pids, clear, out_clear, pairs)

    monkeypatch.setattr(LossComposer, "supervised", spy)
    root = make_fvrid(tmp_path / "data", train_ids=(3, 7, 9, 11))
    cfg = tiny_train_config(
        root,
        "method=baseline",
        "train.epochs=1",
        "train.val_ids=0",
        "train.warmup_epochs=1",
        "data.clear_twins=true",
        "loss.lambda_consistency=1.0",
        *extra,
    )
    train_run(cfg, tmp_path / "run", log=lambda *a: None)
    return calls


def test_training_with_twins_in_batch_needs_one_forward_per_step(tmp_path, monkeypatch):
    joined = _calls(tmp_path / "a", monkeypatch, "data.twins_in_batch=true")
    records = _calls(tmp_path / "b", monkeypatch)
    assert joined and records, (len(joined), len(records))
    for pids, pairs, separate in joined:  # P x K = 2 x 2 foggy images + their 4 twins
        assert len(pids) == 8 and pairs == 4 and not separate and pids[:4] == pids[4:]
    for pids, pairs, separate in records:  # twins as records: a second forward for the pairs
        assert len(pids) == 4 and pairs is None and separate
    # twins as records double the records (up to 2x the steps an epoch); in the batch they
    # leave the step count as the foggy images alone give it
    assert len(joined) < len(records) <= 2 * len(joined)


def test_twins_in_batch_needs_clear_twins():
    with pytest.raises(ConfigError, match="data.twins_in_batch=true needs data.clear_twins"):
        load_config(overrides=["data.twins_in_batch=true"])
