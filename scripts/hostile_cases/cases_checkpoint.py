"""Bad checkpoints: truncated, pickled (a pickle that would leave a marker file if it were
ever executed), wrong header, broken YAML in the header, id counts that do not fit, a
``torch.save``d model as ``model.pretrained``, truncated or pickled training states."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .world import Outcome, Snapshot, World, case, refused


class _Marker:
    """Unpickling this creates a file: if the file exists, a pickle was executed."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def hostile_pickle(w: World, name: str) -> tuple[Path, Path]:
    marker, f = w.new("PICKLE-RAN"), w.new(name)
    f.write_bytes(pickle.dumps({"model": _Marker(marker)}))
    return f, marker


def _no_pickle_ran(result: Outcome, marker: Path) -> Outcome:
    if marker.exists():
        return Outcome("silent-wrong", f"a pickle was EXECUTED (it made {marker.name})")
    return result


def rewrite_checkpoint(w: World, name: str, meta_change=None, tensor_change=None) -> Path:
    """A copy of the base checkpoint with its header (metadata) or a tensor changed."""
    with safe_open(str(w.ckpt), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    if meta_change:
        meta_change(meta)
    if tensor_change:
        tensor_change(tensors)
    out = w.new(name)
    save_file(tensors, str(out), metadata=meta)
    return out


def _eval_refuses(w: World, ckpt: Path, marker: Path | None = None) -> Outcome:
    out = w.new("eval")
    intact = Snapshot(ckpt) if ckpt.exists() else None
    r = w.sjdl("eval", "--checkpoint", ckpt, f"data.root={w.base_data}", "-o", out)
    res = refused(r, names=(ckpt.name,), intact=intact)
    return _no_pickle_ran(res, marker) if marker else res


@case("checkpoint")
def case_eval_truncated_checkpoint(w):
    ckpt = w.new("trunc.safetensors")
    ckpt.write_bytes(w.ckpt.read_bytes()[: 1 << 20])
    return _eval_refuses(w, ckpt)


@case("checkpoint")
def case_eval_pickle_as_checkpoint(w):
    ckpt, marker = hostile_pickle(w, "model.safetensors")
    return _eval_refuses(w, ckpt, marker)


@case("checkpoint")
def case_eval_foreign_header(w):
    def foreign(meta):
        meta["format"] = "pt"

    return _eval_refuses(w, rewrite_checkpoint(w, "foreign.safetensors", foreign))


@case("checkpoint")
def case_eval_header_broken_yaml(w):
    def broken(meta):
        meta["config"] = "model: {backbone: [resnet18\n  train: : :"

    return _eval_refuses(w, rewrite_checkpoint(w, "yaml.safetensors", broken))


@case("checkpoint")
def case_eval_header_id_count_mismatch(w):
    def more_ids(meta):
        meta["num_syn_ids"] = "99"

    return _eval_refuses(w, rewrite_checkpoint(w, "ids.safetensors", more_ids))


@case("checkpoint")
def case_eval_missing_weight(w):
    def drop_one(tensors):
        tensors.pop(next(iter(sorted(tensors))))

    return _eval_refuses(w, rewrite_checkpoint(w, "short.safetensors", tensor_change=drop_one))


@case("checkpoint")
def case_eval_checkpoint_missing(w):
    return _eval_refuses(w, w.new("nowhere.safetensors"))


@case("checkpoint")
def case_eval_checkpoint_empty_folder(w):
    folder = w.new("empty-run")
    folder.mkdir()
    return _eval_refuses(w, folder)


def _pretrained_refused(w: World, path: Path, marker: Path | None = None) -> Outcome:
    out = w.new("run")
    intact = Snapshot(path) if path.exists() else None
    r = w.sjdl(*w.train_args(w.base_data), f"model.pretrained={path}", "-o", out)
    res = refused(r, names=(path.name,), intact=intact, leftovers=(out / "checkpoints",))
    return _no_pickle_ran(res, marker) if marker else res


@case("checkpoint")
def case_pretrained_truncated_safetensors(w):
    p = w.new("backbone.safetensors")
    p.write_bytes(w.ckpt.read_bytes()[:5000])
    return _pretrained_refused(w, p)


@case("checkpoint")
def case_pretrained_torch_save_model(w):
    """A whole nn.Module saved with torch.save (a pickle of classes, not a state dict)."""
    p = w.new("resnet18_full.pth")
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()), p)
    return _pretrained_refused(w, p)


@case("checkpoint")
def case_pretrained_hostile_pickle(w):
    p, marker = hostile_pickle(w, "resnet18.pth")
    return _pretrained_refused(w, p, marker)


@case("checkpoint")
def case_pretrained_unrelated_state_dict(w):
    """A real state dict whose keys fit nothing in the model."""
    p = w.new("other.pth")
    torch.save({"encoder.weight": torch.zeros(4, 4)}, p)
    res = _pretrained_refused(w, p)
    notice = [ln for ln in w.runs[-1].out.splitlines() if "loaded 0 tensors" in ln]
    if res.outcome == "silent-wrong" and notice:
        res.detail = f"exit 0, trained from scratch after only a notice: {notice[0].strip()}"
    return res


@case("checkpoint")
def case_pretrained_missing_file(w):
    return _pretrained_refused(w, w.new("resnet50.pth"))


def _resume_refused(w: World, breaker) -> Outcome:
    run = w.copy_run()
    state = run / "checkpoints" / "last_state.pt"
    marker = breaker(state)
    intact = Snapshot(run / "checkpoints" / "last.safetensors", run / "config.yaml")
    r = w.sjdl("train", "--resume", run)
    res = refused(r, names=("last_state.pt",), intact=intact)
    return _no_pickle_ran(res, marker) if marker else res


@case("checkpoint")
def case_resume_truncated_state(w):
    def cut(state: Path):
        with state.open("r+b") as f:
            f.truncate(state.stat().st_size // 3)

    return _resume_refused(w, cut)


@case("checkpoint")
def case_resume_hostile_pickle_state(w):
    def swap(state: Path):
        p, marker = hostile_pickle(w, "evil.pt")
        shutil.copyfile(p, state)
        return marker

    return _resume_refused(w, swap)


@case("checkpoint")
def case_resume_not_a_run(w):
    folder = w.new("not-a-run")
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    intact = Snapshot(folder)
    r = w.sjdl("train", "--resume", folder)
    return refused(r, names=(folder.name,), intact=intact)
