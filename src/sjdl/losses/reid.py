"""Re-identification losses: batch-hard triplet (Eq. 2) and identity cross-entropy (Eq. 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._dtype import full_precision as _full
from ._dtype import no_autocast


def euclidean_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances sqrt(clamp(|x|^2 + |y|^2 - 2 x.y, 1e-12)), shape (N, M)."""
    d2 = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1).unsqueeze(0) - 2 * x @ y.t()
    return d2.clamp(min=1e-12).sqrt()


def triplet_loss(features: torch.Tensor, pids: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss, Eq. 2: mean_i [max_p D(i,p) - min_n D(i,n) + M]_+ .

    D is the Euclidean distance of unnormalised features; positives include the anchor itself
    (distance ~1e-6, so it never wins the max over a real positive). Anchors without any
    negative in the batch contribute 0. Normalisation: mean over the N anchors.
    """
    with no_autocast(features):  # autocast would run the matmul in fp16 again
        features = _full(features)
        dist = euclidean_distance(features, features)
    same = pids.view(-1, 1) == pids.view(1, -1)
    d_ap = dist.masked_fill(~same, float("-inf")).amax(1)
    d_an = dist.masked_fill(same, float("inf")).amin(1)
    has_neg = torch.isfinite(d_an)
    losses = F.relu(d_ap - torch.where(has_neg, d_an, d_ap) + margin)
    return torch.where(has_neg, losses, torch.zeros_like(losses)).mean()


def id_loss(logits: torch.Tensor, pids: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Identity loss, Eq. 3: softmax cross-entropy averaged over the batch (optional smoothing)."""
    return F.cross_entropy(_full(logits), pids, label_smoothing=label_smoothing)


def consistency_loss(foggy_feat: torch.Tensor, clear_feat: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between the L2-normalised embeddings of foggy images and of
    their clear twins (in [0, 4]; 0 = fog does not move the embedding); gradient into both."""
    with no_autocast(foggy_feat):
        a = F.normalize(_full(foggy_feat), dim=1)
        b = F.normalize(_full(clear_feat), dim=1)
        return (a - b).pow(2).sum(1).mean()
