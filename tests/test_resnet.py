import pytest
import torch
from safetensors.torch import save_file

from sjdl.models import ResNet, count_parameters, load_pretrained, read_state_dict

# torchvision's published parameter counts minus the ImageNet fc layer (512/2048 x 1000 + 1000)
TORCHVISION_PARAMS_WITHOUT_FC = {
    "resnet18": 11_689_512 - 513_000,
    "resnet34": 21_797_672 - 513_000,
    "resnet50": 25_557_032 - 2_049_000,
    "resnet50_ibn_a": 25_557_032 - 2_049_000,  # IBN swaps BN affine for IN affine 1:1
}


@pytest.mark.parametrize("arch", list(TORCHVISION_PARAMS_WITHOUT_FC))
def test_parameter_counts_match_torchvision(arch):
    assert count_parameters(ResNet(arch)) == TORCHVISION_PARAMS_WITHOUT_FC[arch]


def test_state_dict_uses_torchvision_key_names():
    keys = ResNet("resnet50").state_dict().keys()
    # torchvision resnet50 has 320 state-dict entries; we have all but fc.weight and fc.bias
    assert len(keys) == 318
    for k in (
        "conv1.weight",
        "bn1.num_batches_tracked",
        "layer1.0.downsample.0.weight",
        "layer2.3.bn3.running_var",
        "layer4.2.conv3.weight",
        "layer4.0.downsample.1.bias",
    ):
        assert k in keys
    ibn = ResNet("resnet50_ibn_a").state_dict().keys()
    assert "layer3.5.bn1.IN.weight" in ibn and "layer3.5.bn1.BN.running_mean" in ibn
    assert "layer4.0.bn1.weight" in ibn and "layer4.0.bn1.IN.weight" not in ibn


@pytest.mark.parametrize(("last_stride", "size"), [(1, (16, 8)), (2, (8, 4))])
def test_last_stride(last_stride, size):
    net = ResNet("resnet18", last_stride).eval()
    x = net.maxpool(net.relu(net.bn1(net.conv1(torch.rand(1, 3, 256, 128)))))
    for i in range(1, 5):
        x = getattr(net, f"layer{i}")(x)
    assert tuple(x.shape[-2:]) == size


def _torchvision_like_file(tmp_path, arch="resnet18", fmt="pth"):
    src = ResNet(arch)
    for p in src.parameters():
        torch.nn.init.normal_(p)
    state = dict(src.state_dict())
    width = 512 if arch in ("resnet18", "resnet34") else 2048
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, width), torch.zeros(1000)
    path = tmp_path / f"w.{fmt}"
    if fmt == "pth":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return src, path


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_torchvision_key_round_trip(tmp_path, fmt):
    src, path = _torchvision_like_file(tmp_path, fmt=fmt)
    dst = ResNet("resnet18")
    report = load_pretrained(dst, path)
    assert report.missing == [] and report.mismatched == []
    assert report.unexpected == ["fc.bias", "fc.weight"]
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_load_reports_missing_and_mismatched(tmp_path):
    _, path = _torchvision_like_file(tmp_path, arch="resnet18")
    report = load_pretrained(ResNet("resnet34"), path)  # deeper net: extra blocks missing
    assert any(k.startswith("layer1.2.") for k in report.missing)
    assert report.loaded and "loaded" in report.summary()
    _, path50 = _torchvision_like_file(tmp_path, arch="resnet50")
    report = load_pretrained(ResNet("resnet18"), path50)
    assert any(
        m.startswith("layer1.0.conv1.weight: file (64, 64, 1, 1)") for m in report.mismatched
    )


def test_reading_weights_never_unpickles_objects(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "obj": ValueError("not a tensor")}, path)
    with pytest.raises(ValueError, match="evil.pth: cannot read as a weights-only torch file"):
        read_state_dict(path)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        read_state_dict(tmp_path / "absent.pth")


def test_wrapped_and_prefixed_state_dicts(tmp_path):
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"module.conv1.weight": torch.ones(64, 3, 7, 7)}}, path)
    assert list(read_state_dict(path)) == ["conv1.weight"]
