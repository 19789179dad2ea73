"""Bad configuration values: each should stop ``sjdl train`` (or ``eval``) with a one-line
error naming the key, before any run folder is made. The data are real, so a value that is
not checked trains (exit 0) and shows up as silent-wrong."""

from __future__ import annotations

from .world import Outcome, World, case, refused


def _shared_data(w: World):
    """One read-only data tree for the config cases (none of them should get to it)."""
    if "cfg-data" not in w._cache:
        w._cache["cfg-data"] = w.data("cfg-data")
    return w._cache["cfg-data"]


def _bad_value(w: World, key: str, *overrides: str) -> Outcome:
    out = w.new("run")
    r = w.sjdl(*w.train_args(_shared_data(w)), *overrides, "-o", out)
    return refused(r, names=(key,), leftovers=(out,))


@case("config")
def case_epochs_zero(w):
    return _bad_value(w, "train.epochs", "train.epochs=0")


@case("config")
def case_epochs_negative(w):
    return _bad_value(w, "train.epochs", "train.epochs=-1")


@case("config")
def case_lr_negative(w):
    return _bad_value(w, "train.lr", "train.lr=-1")


@case("config")
def case_lr_not_a_number(w):
    return _bad_value(w, "train.lr", "train.lr=abc")


@case("config")
def case_workers_negative(w):
    return _bad_value(w, "data.workers", "data.workers=-1")


@case("config")
def case_num_instances_zero(w):
    return _bad_value(w, "data.num_instances", "data.num_instances=0")


@case("config")
def case_val_ids_negative(w):
    return _bad_value(w, "train.val_ids", "train.val_ids=-3")


@case("config")
def case_max_steps_negative(w):
    return _bad_value(w, "train.max_steps_per_epoch", "train.max_steps_per_epoch=-1")


@case("config")
def case_hflip_probability_above_one(w):
    return _bad_value(w, "data.hflip", "data.hflip=2")


@case("config")
def case_real_batch_size_negative(w):
    """Unlabelled real images use random batches of data.real_batch_size (README)."""
    return _bad_value(
        w, "data.real_batch_size", "data.real_labelled=false", "data.real_batch_size=-4"
    )


@case("config")
def case_image_size_zero(w):
    return _bad_value(w, "data.size_train", "data.size_train=[0,32]")


@case("config")
def case_device_unknown(w):
    return _bad_value(w, "tpu", "train.device=tpu")


@case("config", fast=True)
def case_unknown_key_typo(w):
    return _bad_value(w, "train.epoch", "train.epoch=3")


@case("config")
def case_method_unknown(w):
    return _bad_value(w, "method", "method=nonsense")


@case("config")
def case_test_batch_size_zero(w):
    """eval without a checkpoint evaluates a fresh model: no training needed to reach it."""
    data, out = _shared_data(w), w.new("eval")
    args = [a for a in w.train_args(data) if a != "train"]
    r = w.sjdl("eval", *args, "test.batch_size=0", "-o", out)
    return refused(r, names=("test.batch_size",), leftovers=(out,))


@case("config")
def case_yaml_broken(w):
    cfg = w.new("bad.yaml")
    cfg.write_text("train:\n  epochs: [1, 2\nmodel: {backbone: resnet18\n")
    out = w.new("run")
    r = w.sjdl("train", "-c", cfg, f"data.root={_shared_data(w)}", "-o", out)
    return refused(r, names=(cfg.name,), leftovers=(out,))


@case("config")
def case_yaml_unknown_key(w):
    cfg = w.new("typo.yaml")
    cfg.write_text("train:\n  epoch: 3\n")
    out = w.new("run")
    r = w.sjdl("train", "-c", cfg, *w.train_args(_shared_data(w))[1:], "-o", out)
    return refused(r, names=("epoch",), leftovers=(out,))


@case("config")
def case_config_file_missing(w):
    cfg, out = w.new("nowhere.yaml"), w.new("run")
    r = w.sjdl("train", "-c", cfg, *w.train_args(_shared_data(w))[1:], "-o", out)
    return refused(r, names=(cfg.name,), leftovers=(out,))
