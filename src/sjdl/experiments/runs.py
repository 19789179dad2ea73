"""Building blocks shared by the demo, the calibration and the study: train a run, evaluate
a model on the clear and the foggy test images, measure restorations of real foggy crops."""

from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch

from ..config import Config, flat_dict, load_config
from ..data import PairedTransform, eval_loader
from ..data.io import read_image
from ..engine import train
from ..engine.rundir import FINISHED
from ..evaluation.evaluator import EvalResult, evaluate
from ..evaluation.quality import QualityMeter, haze_statistics
from ..models import build_model
from ..models.io import CHECKPOINT_NAMES, load_model
from ..storage import sha256_file, sha256_json, write_atomic


def train_run(cfg: Config, run_dir: Path, log=print, progress=None, overwrite=False) -> float:
    """Train ``cfg`` into ``run_dir``; returns the wall-clock seconds it took. ``overwrite``
    replaces an earlier run's own files there (its finished.json first), else such a folder
    is refused. At the end, ``finished.json`` records the seconds and the code."""
    t = time.perf_counter()
    train(cfg, run_dir, log=log, progress=progress, overwrite=overwrite)
    seconds = time.perf_counter() - t
    record = {"seconds": seconds, "code": code_fingerprint()}  # see finished_run
    write_atomic(run_dir / FINISHED, json.dumps(record))
    return seconds


def config_change(run_dir: Path, cfg: Config) -> str | None:
    """The first key whose value in ``run_dir``'s config.yaml differs from ``cfg`` (the run's
    own paths aside: its folder may have been moved), as "key=old -> new"; None if none."""
    old = flat_dict(load_config(text=(run_dir / "config.yaml").read_text()).to_dict())
    new = flat_dict(cfg.to_dict())
    moved = ("data.root", "train.output_dir")
    diff = [k for k in new if old.get(k) != new[k] and k not in moved]
    return f"{diff[0]}={old.get(diff[0])!r} -> {new[diff[0]]!r}" if diff else None


@functools.cache
def code_fingerprint() -> str:
    """sha256 over the package's Python sources (what code trained a run)."""
    root = Path(__file__).resolve().parents[1]
    return sha256_json(
        [[p.relative_to(root).as_posix(), sha256_file(p)] for p in sorted(root.rglob("*.py"))]
    )


def finished_run(run_dir: Path, cfg: Config) -> tuple[float | None, str]:
    """(training seconds, "") when ``run_dir`` holds a training of ``cfg`` that ran to its end
    with this code, else (None, why it cannot be reused)."""
    try:
        text = (run_dir / FINISHED).read_bytes()
    except OSError:
        return None, "no finished training there"
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    try:
        change = config_change(run_dir, cfg)
    except (OSError, ValueError):
        return None, "its config.yaml is missing or damaged"
    seconds = record.get("seconds") if isinstance(record, dict) else None
    if type(seconds) not in (int, float) or not 0 <= seconds < math.inf:
        return None, f"its {FINISHED} is damaged"
    if change:
        return None, f"its config differs ({change})"
    if not any((run_dir / "checkpoints" / n).is_file() for n in CHECKPOINT_NAMES):
        return None, "its checkpoint is gone"
    if record.get("code") != code_fingerprint():
        return None, "it was trained by other code"
    return float(seconds), ""


def load_run(run_dir: Path, device) -> tuple[torch.nn.Module, Config]:
    """The run's selected checkpoint (``best``, else ``last``) in eval mode, and its config."""
    model, cfg, _ = load_model(run_dir, device)
    return model.eval(), cfg


def imagenet_model(cfg: Config, device) -> torch.nn.Module:
    """``cfg``'s backbone with its ImageNet weights and no ReID training, as ImageNet trained
    it (last stride 2); retrieval uses the GAP feature (before the untrained BNNeck)."""
    cfg = load_config(
        text=cfg.to_yaml(),
        overrides=["method=baseline", "test.feature=pre_bn", "model.last_stride=2"],
    )
    return build_model(cfg, num_syn_ids=1).to(device).eval()


def clear_records(records):
    """The same test records, reading their clear partners instead of the foggy images; the
    clear image is also the restoration target (how much FIRM changes an image without fog)."""
    missing = [r.path for r in records if r.clear is None]
    if missing:
        raise ValueError(f"{missing[0]}: no clear partner, cannot evaluate on clear images")
    return [replace(r, path=r.clear) for r in records]


def evaluate_test(model, cfg: Config, query, gallery, device, progress=None) -> EvalResult:
    """Rank ``query`` against ``gallery`` (and score FIRM's restorations where clear targets
    exist), with the test settings of ``cfg``."""
    bs = cfg.test.batch_size
    ql = eval_loader(query, cfg.data, bs, device, with_clear=True)
    gl = eval_loader(gallery, cfg.data, bs, device, with_clear=True)
    return evaluate(
        model, ql, gl, device, cfg.test, cfg.test.rerank, cfg.test.flip, progress=progress
    )


def result_row(model_name: str, test: str, result: EvalResult) -> dict:
    """One row of a results table: mAP/R1/R5 in percent, PSNR (dB)/SSIM of J_enh, the foggy
    inputs' own PSNR and how many of the ``restored`` images are below their input's, or None
    (no FIRM)."""
    m = result.ranking.as_dict()
    q = result.quality
    return {
        "model": model_name,
        "test": test,
        "mAP": 100 * m["mAP"],
        "R1": 100 * m["R1"],
        "R5": 100 * m["R5"],
        "PSNR": q.get("PSNR"),
        "SSIM": q.get("SSIM"),
        "input_PSNR": q.get("input_PSNR"),
        "below_input": q.get("below_input"),
        "restored": q.get("num_images"),
    }


def input_quality(cfg: Config, records) -> dict:
    """PSNR/SSIM of the foggy test images themselves against their clear partners (the
    number a restoration has to beat), at the test size."""
    meter = QualityMeter()
    for batch in eval_loader(records, cfg.data, cfg.test.batch_size, with_clear=True):
        if "img" in batch:
            meter.update(batch["img"], batch["clear"])
    return meter.result()


def sample_records(records, n: int):
    """``n`` records spread evenly over the list (deterministic)."""
    step = max(1, len(records) // n)
    return records[::step][:n]


@torch.no_grad()
def restore_real(model, cfg: Config, records, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(foggy, J_enh) of real foggy crops at the test size, both in [0, 1] on the CPU."""
    tf = PairedTransform(tuple(cfg.data.size_test))
    foggy = torch.stack([tf(read_image(r.path))[1] for r in records])
    out = []
    for chunk in foggy.split(cfg.test.batch_size):
        out.append(model.restore(chunk.to(device))[1].float().clamp(0, 1).cpu())
    return foggy, torch.cat(out)


def real_statistics(foggy: torch.Tensor, restored: torch.Tensor | None) -> dict:
    """Haze and artefact statistics of the input crops and (when given) their restorations."""
    stats = {f"input_{k}": v for k, v in haze_statistics(foggy).items()}
    if restored is not None:
        stats.update({f"restored_{k}": v for k, v in haze_statistics(restored).items()})
    return stats
