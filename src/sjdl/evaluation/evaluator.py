"""Feature extraction over loaders and the query/gallery evaluation of a model."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..data.dataset import raise_if_strict
from ..data.io import ImageReadError
from .distance import pairwise_distance
from .quality import QualityMeter
from .ranking import RankingResult, evaluate_ranking
from .rerank import k_reciprocal_rerank


@dataclass
class Features:
    feats: torch.Tensor
    pids: torch.Tensor
    camids: torch.Tensor
    indices: torch.Tensor  # positions in the record list (unreadable images are missing)


@dataclass
class RestorationSample:
    foggy: torch.Tensor
    restored: torch.Tensor
    clear: torch.Tensor | None
    psnr: float | None
    path: str
    input_psnr: float | None = None  # the foggy input's own PSNR against the clear image


@dataclass
class EvalResult:
    ranking: RankingResult
    distmat: torch.Tensor
    query: Features
    gallery: Features
    quality: dict = field(default_factory=dict)
    samples: list[RestorationSample] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def metrics(self) -> dict:
        q = self.quality  # the inputs' own PSNR keeps its name; the rest is of J_enh
        quality = {k if k.startswith("input_") else f"restored_{k}": v for k, v in q.items()}
        return {**self.ranking.as_dict(), **quality}


@torch.no_grad()
def extract_features(
    model,
    loader,
    device,
    flip: bool = False,
    restore: bool = False,
    quality: QualityMeter | None = None,
    samples: list | None = None,
    max_samples: int = 8,
    progress: Callable[[int], None] | None = None,
    skipped: list | None = None,
) -> Features:
    """Embeddings of every image in ``loader`` (model in eval mode: FIRM not run for them).

    ``flip`` averages the embeddings of the image and its mirror. With ``restore``, FIRM
    also restores each batch and PSNR/SSIM of J_enh vs the clear target go to ``quality``;
    the first ``max_samples`` restorations are kept in ``samples`` for pictures.
    """
    model.eval()
    out_f, out_p, out_c, out_i = [], [], [], []
    strict, unreadable = getattr(loader.dataset, "strict", False), []
    for batch in loader:
        raise_if_strict(batch, strict)
        unreadable += [p for p, _ in batch.get("skipped", [])]
        if "img" not in batch:
            continue
        x = batch["img"].to(device, non_blocking=True)
        f = model.extract_features(x)
        if flip:
            f = (f + model.extract_features(x.flip(-1))) / 2
        out_f.append(f.float().cpu())
        out_p.append(batch["pid"])
        out_c.append(batch["camid"])
        out_i.append(batch["index"])
        if restore and model.firm is not None:
            _restore_batch(model, x, batch, quality, samples, max_samples, loader)
        if progress:
            progress(len(x))
    if skipped is not None:
        skipped += unreadable
    if not out_f:
        example = f", e.g. {unreadable[0]}" if unreadable else ""
        raise ImageReadError(
            f"none of the {len(unreadable)} evaluation images could be read{example}"
        )
    return Features(torch.cat(out_f), torch.cat(out_p), torch.cat(out_c), torch.cat(out_i))


def _restore_batch(model, x, batch, quality, samples, max_samples, loader):
    _, j_enh = model.restore(x)
    j_enh = j_enh.float().clamp(0, 1).cpu()
    clear = batch.get("clear")
    foggy = batch["img"]
    psnrs = inputs = None
    if quality is not None and clear is not None:
        psnrs = quality.update(j_enh, clear, foggy)
        inputs = quality.input_psnr[-len(psnrs) :]  # the inputs' PSNR, computed once there
    if samples is not None:
        for k in range(len(j_enh)):
            if len(samples) >= max_samples:
                break
            rec = loader.dataset.records[int(batch["index"][k])]
            samples.append(
                RestorationSample(
                    batch["img"][k],
                    j_enh[k],
                    None if clear is None else clear[k],
                    None if psnrs is None else psnrs[k],
                    str(rec.path),
                    None if inputs is None else inputs[k],
                )
            )


def evaluate(
    model,
    query_loader,
    gallery_loader,
    device,
    test_cfg,
    rerank: bool | None = None,
    flip: bool | None = None,
    restore: bool = True,
    progress=None,
    max_samples: int = 8,
) -> EvalResult:
    """Extract query and gallery features, rank, and (optionally) score restorations.

    The embedding is ``test_cfg.feature`` (pre- or post-BNNeck) whatever the model was built
    with; ``rerank`` / ``flip`` default to ``test_cfg.rerank`` / ``test_cfg.flip``.
    """
    rerank = test_cfg.rerank if rerank is None else rerank
    flip = test_cfg.flip if flip is None else flip
    with _retrieval_feature(model, test_cfg.feature):
        meter, samples, skipped = QualityMeter(), [], []
        size_ok = all(s % 32 == 0 for s in query_loader.dataset.transform.size)
        restore = restore and size_ok and getattr(model, "firm", None) is not None
        common = {
            "device": device,
            "flip": flip,
            "restore": restore,
            "quality": meter,
            "progress": progress,
            "skipped": skipped,
            "max_samples": max_samples,
        }
        q = extract_features(model, query_loader, samples=samples, **common)
        g = extract_features(model, gallery_loader, samples=[], **common)
    if rerank:
        dist = k_reciprocal_rerank(q.feats, g.feats, metric=test_cfg.metric)
    else:
        dist = pairwise_distance(q.feats, g.feats, test_cfg.metric, test_cfg.normalize)
    ranking = evaluate_ranking(dist, q.pids, g.pids, q.camids, g.camids)
    return EvalResult(ranking, dist, q, g, meter.result(), samples, skipped)


@contextlib.contextmanager
def _retrieval_feature(model, feature: str):
    """Embed with ``feature`` (pre/post BNNeck) for the duration, then restore the model's."""
    built_with = getattr(model, "retrieval_feature", None)
    if built_with is not None:
        model.retrieval_feature = feature
    try:
        yield
    finally:
        if built_with is not None:
            model.retrieval_feature = built_with
