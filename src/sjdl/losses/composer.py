"""The one place where loss terms are chosen per method and weighted by lambda (Eqs. 5, 11)."""

from __future__ import annotations

import torch

from .reid import consistency_loss, id_loss, triplet_loss
from .restoration import (
    color_entropy_loss,
    dark_channel_loss,
    restoration_loss,
    self_constraint_loss,
    total_variation_loss,
)

# which terms each method trains with (paper Table 4)
RESTORE_SUPERVISED = {"jdl", "sjdl_wo_sc", "sjdl"}
USES_REAL = {"sjdl_wo_sc", "sjdl"}
USES_SC = {"sjdl"}


def _restored_rows(out) -> slice:
    """The batch rows ``out.restored`` belongs to (``model.firm.train_stride``); all rows for
    an output that does not say."""
    return getattr(out, "restored_rows", slice(None))


class LossComposer:
    """Weighted loss terms for a synthetic (supervised) or real (unsupervised) batch.

    Each call returns a dict of already weighted scalar terms plus ``total`` (their sum).
    ``out`` is a model output with ``global_feat``, ``bn_feat``, ``logits``, ``restored`` and
    optionally ``restored_rows`` (the batch rows FIRM restored: targets and inputs are taken
    from them; every row when absent).
    """

    def __init__(self, loss_cfg, method: str, firm_output: str = "unit"):
        self.cfg = loss_cfg
        self.method = method
        self.tanh_output = firm_output == "tanh"

    @property
    def uses_real(self) -> bool:
        return self.method in USES_REAL

    def _reid_terms(self, out, pids: torch.Tensor, head: str) -> dict[str, torch.Tensor]:
        feat = out.global_feat if self.cfg.triplet_feature == "pre_bn" else out.bn_feat
        terms = {"triplet": triplet_loss(feat, pids, self.cfg.triplet_margin)}
        if head in out.logits:
            terms["id"] = id_loss(out.logits[head], pids, self.cfg.label_smoothing)
        return terms

    @staticmethod
    def _total(terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        terms["total"] = torch.stack(list(terms.values())).sum()
        return terms

    @property
    def uses_consistency(self) -> bool:
        return self.cfg.lambda_consistency > 0

    def supervised(
        self, out, pids: torch.Tensor, clear: torch.Tensor | None, out_clear=None, pairs=None
    ):
        """Eq. 5: L_Tri + L_ID + lambda_1 L_DFs on a synthetic batch with clear targets, plus
        (loss.lambda_consistency > 0, not in the paper) the foggy/clear-twin embedding
        consistency, ``out_clear`` being the clear twins' forward, or, with ``pairs`` = n, rows
        n.. 2n of the batch being the twins of rows 0.. n (data.twins_in_batch)."""
        terms = self._reid_terms(out, pids, "syn")
        if self.uses_consistency:
            feat = out.global_feat
            if pairs is not None:
                foggy, twin = feat[:pairs], feat[pairs : 2 * pairs]
            elif out_clear is not None:
                foggy, twin = feat, out_clear.global_feat
            else:
                raise ValueError("loss.lambda_consistency > 0 needs the clear twins' forward")
            terms["consistency"] = self.cfg.lambda_consistency * consistency_loss(foggy, twin)
        if self.method in RESTORE_SUPERVISED:
            if out.restored is None or clear is None:
                raise ValueError(f"method {self.method} needs restored images and clear targets")
            terms["restoration"] = self.cfg.lambda_restoration * restoration_loss(
                out.restored, clear[_restored_rows(out)]
            )
        return self._total(terms)

    def unsupervised(self, out, foggy: torch.Tensor, pids: torch.Tensor | None = None):
        """Eq. 11 (+ ReID terms when the real batch is labelled) on J_enh of every real image."""
        if not self.uses_real:
            raise ValueError(f"method {self.method} trains on synthetic data only")
        terms = self._reid_terms(out, pids, "real") if pids is not None else {}
        j_enh = out.restored[1]
        j_unit = (j_enh + 1) / 2 if self.tanh_output else j_enh
        c = self.cfg
        # the released code's L_CE (hard histogram) and L_SC (detached) give no gradient
        j_ce = j_unit if c.ce_grad else j_unit.detach()
        terms["color_entropy"] = c.lambda_ce * color_entropy_loss(j_ce)
        terms["dark_channel"] = c.lambda_dc * dark_channel_loss(j_unit, c.dc_patch)
        terms["total_variation"] = c.lambda_tv * total_variation_loss(j_unit)
        if self.method in USES_SC:
            j_sc = j_enh if c.sc_grad else j_enh.detach()
            rows = foggy[_restored_rows(out)]  # model.firm.train_stride: the rows FIRM restored
            terms["self_constraint"] = c.lambda_sc * self_constraint_loss(j_sc, rows, c.sc_mode)
        return self._total(terms)
