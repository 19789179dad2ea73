import pytest
import torch
from torch import nn

from sjdl.data.records import DatasetError, ImageRecord, with_clear_twins
from sjdl.evaluation.adapt import reestimate_bn


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x, restore=True):
        return self.conv(self.bn(x))


def test_bn_statistics_become_the_average_over_the_given_images_and_the_model_is_kept():
    model = _Net().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [torch.full((4, 3, 8, 8), 0.2), torch.full((4, 3, 8, 8), 0.6)]
    batches = [b + 0.01 * torch.randn_like(b) for b in batches]
    adapted, seen = reestimate_bn(model, batches)
    assert seen == 8 and not adapted.training
    mean = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    assert torch.allclose(adapted.bn.running_mean, mean, atol=1e-5)
    assert adapted.bn.momentum == model.bn.momentum == 0.1
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # unchanged
    assert torch.equal(adapted.conv.weight, model.conv.weight)  # only statistics move


def test_bn_reestimation_needs_batches_and_batchnorm():
    with pytest.raises(ValueError, match="no batch of at least 2 images"):
        reestimate_bn(_Net(), [torch.rand(1, 3, 8, 8)])
    with pytest.raises(ValueError, match="no BatchNorm"):
        reestimate_bn(nn.Conv2d(3, 3, 1), [torch.rand(2, 3, 8, 8)])


def test_clear_twins_add_each_clear_partner_as_a_training_image_of_its_id(tmp_path):
    recs = [ImageRecord(tmp_path / "f1.jpg", 3, 0, tmp_path / "c1.jpg")]
    recs.append(ImageRecord(tmp_path / "f2.jpg", 4, 1, tmp_path / "c2.jpg"))
    out = with_clear_twins(recs)
    assert out[:2] == recs and [(r.path.name, r.pid, r.camid) for r in out[2:]] == [
        ("c1.jpg", 3, 0),
        ("c2.jpg", 4, 1),
    ]
    with pytest.raises(DatasetError, match="clear partners"):
        with_clear_twins([ImageRecord(tmp_path / "r.jpg", 1, 0)])


def test_fog_augmentation_refogs_from_the_clear_partner_with_its_probability(tmp_path):
    from sjdl.data.dataset import ReIDDataset
    from sjdl.data.transforms import PairedTransform

    from .conftest import write_image

    write_image(tmp_path / "f.png", (32, 32), value=(40, 40, 40))
    write_image(tmp_path / "c.png", (32, 32), value=(40, 40, 40))
    rec = ImageRecord(tmp_path / "f.png", 0, 0, tmp_path / "c.png")
    tf = PairedTransform((32, 32))
    off = ReIDDataset([rec], tf, augment=(("uniform",), 0.0, (2.0, 3.0), (0.9, 1.0)))[0]
    on = ReIDDataset([rec], tf, augment=(("uniform",), 1.0, (2.0, 3.0), (0.9, 1.0)))[0]
    assert torch.equal(off["foggy"], off["clear"])  # p = 0: the stored image
    assert float(on["foggy"].mean()) > float(on["clear"].mean()) + 0.3  # thick bright fog
    assert float(on["foggy"][:, 0].mean()) > float(on["foggy"][:, -1].mean())  # far = top
