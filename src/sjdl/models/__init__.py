"""Models: ResNet backbones, FIRM, the DCN neck and the SJDL network (CFSM, ReIDM, heads)."""

from __future__ import annotations

from .firm import FIRM
from .resnet import LoadReport, ResNet, load_pretrained, read_state_dict
from .sjdl import SJDL, SJDLOutput, count_parameters


def build_model(cfg, num_syn_ids: int, num_real_ids: int = 0) -> SJDL:
    """Build the network described by ``cfg`` (a ``sjdl.config.Config``).

    ``method: baseline`` builds no FIRM. ``num_real_ids = 0`` (unlabelled real data) builds no
    real ID head. ImageNet weights are loaded from ``cfg.model.pretrained`` when it is set.
    """
    m = cfg.model
    model = SJDL(
        backbone=m.backbone,
        last_stride=m.last_stride,
        split=m.split,
        neck=m.neck,
        num_syn_ids=num_syn_ids,
        num_real_ids=num_real_ids,
        with_firm=cfg.method != "baseline",
        firm_res_blocks=m.firm.res_blocks,
        firm_output=m.firm.output,
        firm_width=m.firm.width,
        firm_cfsm_grad=m.firm.cfsm_grad,
        firm_scale=m.firm.scale,
        firm_train_stride=m.firm.train_stride,
        normalize=m.normalize,
        retrieval_feature=cfg.test.feature,
    )
    if m.pretrained:
        model.pretrained_report = model.load_pretrained(m.pretrained)
    if m.dsbn:  # after the ImageNet weights: both domains start from them
        from .dsbn import convert_dsbn

        convert_dsbn(model.cfsm)
        convert_dsbn(model.reidm)
    return model


__all__ = [
    "FIRM",
    "SJDL",
    "LoadReport",
    "ResNet",
    "SJDLOutput",
    "build_model",
    "count_parameters",
    "load_pretrained",
    "read_state_dict",
]
