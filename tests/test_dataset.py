import pytest
import torch

from sjdl.config import load_config
from sjdl.data import BadImageLog, eval_loader, read_fvrid, train_loader
from sjdl.data.io import ImageReadError

from .conftest import write_image


def _cfg(*overrides):
    return load_config(
        overrides=[
            "data.size_train=[64,32]",
            "data.size_test=[64,32]",
            "data.num_ids=2",
            "data.num_instances=2",
            "data.workers=0",
            *overrides,
        ]
    )


def test_train_batches_pair_foggy_and_clear(fvrid):
    data = read_fvrid(fvrid)
    loader = train_loader(data.train, _cfg().data, seed=0)
    batch = next(iter(loader))
    assert batch["img"].shape == batch["clear"].shape == (4, 3, 64, 32)
    assert batch["img"].min() >= 0 and batch["img"].max() <= 1
    assert batch["pid"].tolist().count(batch["pid"][0].item()) == 2
    assert batch["skipped"] == []


def test_workers_do_not_change_batches(fvrid):
    data = read_fvrid(fvrid)
    runs = []
    for workers in (0, 2):
        loader = train_loader(data.train, _cfg(f"data.workers={workers}").data, seed=3)
        loader.batch_sampler.set_epoch(1)
        runs.append([b["index"].tolist() for b in loader])
    assert runs[0] == runs[1] and runs[0]


def test_unreadable_image_is_skipped_counted_or_fatal(fvrid):
    data = read_fvrid(fvrid)
    bad = data.query[0].path
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")  # a JPEG header and nothing else
    log = BadImageLog()
    n_items = 0
    with pytest.warns(UserWarning, match="skipped unreadable image: .*cannot read image"):
        for batch in eval_loader(data.query, _cfg().data, batch_size=3):
            log.update(batch)
            n_items += len(batch.get("pid", []))
    assert n_items == len(data.query) - 1
    assert (
        log.summary().startswith("1 unreadable image(s) skipped, e.g. ")
        and str(bad) in log.summary()
    )
    with pytest.raises(ImageReadError, match=str(bad.name)):
        list(eval_loader(data.query, _cfg("data.strict=true").data, batch_size=3))


def test_unreadable_clear_partner_is_named_not_its_foggy_image(fvrid):
    data = read_fvrid(fvrid)
    rec = data.train[0]
    rec.clear.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    log = BadImageLog()
    with pytest.warns(UserWarning, match="skipped unreadable image"):
        for batch in eval_loader(data.train[:3], _cfg().data, with_clear=True, batch_size=3):
            log.update(batch)
    assert list(log.skipped) == [str(rec.clear)] and str(rec.path) not in log.summary()


def test_size_mismatch_between_partners_is_reported(fvrid):
    data = read_fvrid(fvrid)
    write_image(data.train[0].clear, size=(10, 10))
    with pytest.raises(ImageReadError, match="differs from its clear partner"):
        list(eval_loader(data.train, _cfg("data.strict=true").data, with_clear=True))


def test_fog_on_the_fly_makes_foggy_from_clear(fvrid):
    data = read_fvrid(fvrid)
    cfg = _cfg("data.fog_on_the_fly=true", "data.hflip=0", "data.pad=0")
    batch = next(iter(train_loader(data.train, cfg.data)))
    # fog brightens dark pixels towards the airlight (>= 0.5) and never changes geometry
    diff = (batch["foggy"] - batch["clear"]).abs().mean()
    assert diff > 0.05
    dark = batch["clear"] < 0.2
    assert (batch["foggy"][dark] > batch["clear"][dark]).float().mean() > 0.9


def test_firm_input_separates_reid_and_restoration_inputs(small_cfg):
    from sjdl.models import build_model

    model = build_model(small_cfg(), 3).train()
    x = torch.rand(2, 3, 64, 64)
    seen = {}
    orig = model.firm.forward
    model.firm.forward = lambda foggy, *a: (
        seen.setdefault("x", foggy) is not None and orig(foggy, *a)
    )
    erased = x.clone()
    erased[:, :, :10] = 0.5
    model(erased, firm_input=x)
    assert torch.equal(seen["x"], x)
