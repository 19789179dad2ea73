"""Issue 17, hostile configs and state (items 8, 10, 11, 17, 19): a YAML "billion laughs" in
a config file or checkpoint header, out-of-range values, changed keys on ``--resume``,
absurd export sizes and header counts, absent CUDA devices, damaged state, manifest, lock
and config files. Each is a one-line error naming the file, key or flag, at once."""

from __future__ import annotations

import json
import shutil

import torch

from .cases_checkpoint import rewrite_checkpoint
from .cases_config import _bad_value
from .world import Snapshot, case, refused

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)
QUICK = 60  # seconds: a refusal must not take longer (the old code never returned)


@case("config")
def case_config_billion_laughs(w):
    cfg = w.new("laughs.yaml")
    cfg.write_text(LAUGHS)
    out = w.new("run")
    r = w.sjdl(*w.train_args(w.base_data), "--config", cfg, "-o", out, timeout=QUICK)
    return refused(r, names=(cfg.name, "aliases expand"), leftovers=(out,))


@case("config")
def case_checkpoint_header_billion_laughs(w):
    ckpt = rewrite_checkpoint(w, "laughs.safetensors", lambda m: m.update(config=LAUGHS))
    r = w.sjdl("export", "--checkpoint", ckpt, "-o", w.new("m.onnx"), timeout=QUICK)
    return refused(r, names=(ckpt.name, "aliases expand"))


@case("config")
def case_override_nested_too_deep(w):
    out = w.new("run")
    deep = "train.steps=" + "[" * 3000 + "]" * 3000
    r = w.sjdl(*w.train_args(w.base_data), deep, "-o", out, timeout=QUICK)
    return refused(r, names=("train.steps", "nested deeper"), leftovers=(out,))


@case("config")
def case_config_file_utf16(w):
    cfg = w.new("utf16.yaml")
    cfg.write_bytes("train:\n  lr: 0.01\n".encode("utf-16"))
    out = w.new("run")
    r = w.sjdl(*w.train_args(w.base_data), "--config", cfg, "-o", out)
    return refused(r, names=(cfg.name, "UTF-16"), leftovers=(out,))


@case("config")
def case_config_file_binary(w):
    cfg = w.new("binary.yaml")
    cfg.write_bytes(bytes(range(256)))
    out = w.new("run")
    r = w.sjdl(*w.train_args(w.base_data), "--config", cfg, "-o", out)
    return refused(r, names=(cfg.name,), leftovers=(out,))


RANGE_CASES = {
    "gamma_negative": "train.gamma=-1",
    "lambda_restoration_negative": "loss.lambda_restoration=-1",
    "label_smoothing_two": "loss.label_smoothing=2",
    "dc_patch_zero": "loss.dc_patch=0",
    "size_train_one_pixel": "data.size_train=[1,1]",
    "lr_inf": "train.lr=inf",
    "lr_nan": "train.lr=nan",
    "num_instances_huge": "data.num_instances=100000",
    "warmup_factor_zero": "train.warmup_factor=0",
    "seed_negative": "train.seed=-1",
}


def _range_case(name: str, override: str) -> None:
    def fn(w):
        return _bad_value(w, override.split("=")[0], override)

    fn.__name__ = f"case_{name}"
    case("config")(fn)


for _name, _override in RANGE_CASES.items():
    _range_case(_name, _override)


@case("config")
def case_num_instances_above_any_identity(w):
    """4 images per training identity, K = 5: refused at dataset load."""
    return _bad_value(w, "data.num_instances", "data.num_instances=5")


@case("resume")
def case_resume_changed_lr(w):
    run = w.copy_run()
    intact = Snapshot(run)
    r = w.sjdl("train", "--resume", run, "train.lr=0.05")
    return refused(r, names=("train.lr", "0.05"), intact=intact)


@case("resume")
def case_resume_with_output(w):
    run, other = w.copy_run(), w.new("other")
    r = w.sjdl("train", "--resume", run, "-o", other)
    return refused(r, names=("--resume", "-o"), intact=Snapshot(run), leftovers=(other,))


@case("checkpoint")
def case_export_size_zero(w):
    out = w.new("m.onnx")
    r = w.sjdl("export", "--checkpoint", w.ckpt, "-o", out, "--size", "0", "0")
    return refused(r, names=("--size",), leftovers=(out,))


@case("checkpoint")
def case_export_size_huge(w):
    out = w.new("m.onnx")
    r = w.sjdl("export", "--checkpoint", w.ckpt, "-o", out, "--size", "100000", "100000")
    return refused(r, names=("--size",), leftovers=(out,))


@case("checkpoint")
def case_export_restoration_size_odd(w):
    out = w.new("m.onnx")
    r = w.sjdl("export", "--checkpoint", w.ckpt, "-o", out, "--restoration", "--size", "33", "47")
    return refused(r, names=("--size", "32"), leftovers=(out,))


@case("checkpoint")
def case_header_absurd_num_syn_ids(w):
    ckpt = rewrite_checkpoint(w, "ids.safetensors", lambda m: m.update(num_syn_ids="10" * 8))
    r = w.sjdl("export", "--checkpoint", ckpt, "-o", w.new("m.onnx"), timeout=QUICK)
    return refused(r, names=(ckpt.name, "num_syn_ids"))


@case("checkpoint")
def case_header_absurd_size_test(w):
    def huge(meta):
        meta["config"] = meta["config"].replace("- 32\n", "- 200000\n")

    ckpt = rewrite_checkpoint(w, "size.safetensors", huge)
    r = w.sjdl("export", "--checkpoint", ckpt, "-o", w.new("m.onnx"), timeout=QUICK)
    return refused(r, names=(ckpt.name, "data.size"))


@case("checkpoint")
def case_eval_device_cuda_absent(w):
    """cuda:99: absent on this machine whether or not it has a GPU."""
    out = w.new("eval")
    r = w.sjdl("eval", "--checkpoint", w.ckpt, "--device", "cuda:99", "-o", out)
    return refused(r, names=("--device", "cuda:99"))


@case("checkpoint")
def case_train_device_cuda_absent(w):
    out = w.new("run")
    r = w.sjdl(*w.train_args(w.base_data), "train.device=cuda:99", "-o", out)
    return refused(r, names=("train.device", "cuda:99"), leftovers=(out,))


@case("resume")
def case_resume_state_missing_keys(w):
    run = w.copy_run()
    path = run / "checkpoints" / "last_state.pt"
    st = torch.load(path, weights_only=True)
    del st["optimizer"], st["rng"]
    torch.save(st, path)
    r = w.sjdl("train", "--resume", run, "train.epochs=2")
    return refused(r, names=("last_state.pt", "optimizer"))


@case("resume")
def case_resume_state_wrong_types(w):
    run = w.copy_run()
    path = run / "checkpoints" / "last_state.pt"
    st = torch.load(path, weights_only=True)
    st["epoch"], st["global_step"] = "one", [2]
    torch.save(st, path)
    r = w.sjdl("train", "--resume", run, "train.epochs=2")
    return refused(r, names=("last_state.pt", "epoch"))


@case("index")
def case_manifest_is_a_list(w):
    idx = w.copy_index()
    (idx / "manifest.json").write_text(json.dumps([1, 2, 3]))
    query = next((w.base_data / "FVRID_syn" / "query_foggy").iterdir())
    r = w.sjdl("search", query, "--index", idx, "--png", w.new("r.png"))
    return refused(r, names=("manifest.json",))


@case("index")
def case_index_lock_is_a_folder(w):
    idx = w.copy_index()
    lock = idx.with_name(idx.name + ".lock")
    lock.mkdir()
    query = next((w.base_data / "FVRID_syn" / "query_foggy").iterdir())
    intact = Snapshot(idx)
    r = w.sjdl("index", "add", idx, query)
    res = refused(r, names=(lock.name,), intact=intact)
    shutil.rmtree(lock, ignore_errors=True)
    return res
