"""Two CPU processes with gloo: the ranks' weights stay identical after a few iterations."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from sjdl.config import load_config


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, root, out):
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    torch.set_num_threads(1)
    from sjdl.engine import Trainer
    from sjdl.engine.distributed import cleanup

    from .conftest import tiny_train_config

    cfg = tiny_train_config(root, "train.epochs=1", "train.sync_bn=true", "train.real_every=2")
    trainer = Trainer(cfg, f"{out}/run", log=lambda *a: None)
    trainer.fit()
    # parameters must agree; BN running statistics are per rank between DDP's broadcasts
    params = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    torch.save(params, f"{out}/rank{rank}.pt")
    cleanup(trainer.dist)


@pytest.mark.slow
def test_two_process_gloo_ranks_stay_identical(tmp_path):
    from .conftest import make_fvrid

    root = make_fvrid(tmp_path / "data", train_ids=(3, 7, 9, 11), per_id=4)
    mp.spawn(_worker, args=(2, _free_port(), str(root), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert len(a) > 90  # every parameter tensor of ResNet-18 + FIRM + heads
    assert len(a) > 90  # every parameter tensor of ResNet-18 + FIRM + heads
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # rank 0 wrote the checkpoint, and training really moved the weights away from the init
    from sjdl.engine.setup import seed_everything
    from sjdl.models import build_model
    from sjdl.models.io import read_checkpoint

    saved, meta = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert torch.equal(saved["cfsm.conv1.weight"], a["cfsm.conv1.weight"])
    seed_everything(0)
    fresh = build_model(
        load_config(overrides=["model.backbone=resnet18"]),
        int(meta["num_syn_ids"]),
        int(meta["num_real_ids"]),
    )
    assert not torch.equal(fresh.cfsm.conv1.weight, a["cfsm.conv1.weight"])
