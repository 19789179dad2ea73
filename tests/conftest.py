import pytest
import torch

from sjdl.config import load_config


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def small_cfg():
    """A small, fast configuration (ResNet-18) for model tests."""

    def make(*overrides):
        return load_config(overrides=["model.backbone=resnet18", *overrides])

    return make
