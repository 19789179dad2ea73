"""Evaluation: ranking metrics, distances, re-ranking, restoration quality, pictures, report."""

from .distance import pairwise_distance
from .quality import QualityMeter, psnr, ssim
from .ranking import RankingResult, evaluate_ranking
from .rerank import k_reciprocal_rerank

__all__ = [
    "QualityMeter",
    "RankingResult",
    "evaluate_ranking",
    "k_reciprocal_rerank",
    "pairwise_distance",
    "psnr",
    "ssim",
]
