import pytest
import torch
from safetensors.torch import load_file

from sjdl.config import load_config
from sjdl.models import SJDL, build_model
from sjdl.models import weights as bundled
from sjdl.models.mobilenet import _flat_to_nested, canonical_keys


def _nested_to_flat(key: str) -> str:
    """Inverse of the layout conversion, to write a file in the older flat layout."""
    parts = key.split(".")
    if len(parts) < 5 or parts[2] != "conv":
        return key
    block = int(parts[1])
    rest = ".".join(parts[3:])
    table = {"0.0": 0, "0.1": 1, "1": 3, "2": 4} if block == 1 else {}
    if block > 1:
        table = {"0.0": 0, "0.1": 1, "1.0": 3, "1.1": 4, "2": 6, "3": 7}
    for prefix in sorted(table, key=len, reverse=True):
        if rest.startswith(prefix + "."):
            tail = rest[len(prefix) + 1 :]
            return ".".join([*parts[:3], str(table[prefix]), tail])
    return key


def _bundled_state():
    return load_file(str(bundled.WEIGHTS_DIR / bundled.BUNDLED["mobilenet_v2"][0]))


def test_bundled_weights_load_completely_into_every_split():
    state = _bundled_state()
    for split in ("conv2", "conv3", "conv4", "conv5"):
        model = SJDL("mobilenet_v2", 1, split, num_syn_ids=3)
        report = model.load_pretrained("imagenet")
        assert (len(report.loaded), report.missing, report.unexpected) == (312, [], [])
        view = model.backbone().state_dict()
        key = "features.17.conv.2.weight"  # the last projection conv, in ReIDM or CFSM
        assert torch.equal(view[key], state[key])


def test_flat_and_nested_layouts_give_identical_weights(tmp_path):
    state = _bundled_state()
    flat = {_nested_to_flat(k): v for k, v in state.items()}
    assert "features.2.conv.7.weight" in flat and "features.1.conv.4.weight" in flat
    assert canonical_keys(flat).keys() == state.keys()
    assert _flat_to_nested("features.5.conv.3.weight") == "features.5.conv.1.0.weight"
    assert _flat_to_nested("features.0.0.weight") == "features.0.0.weight"
    torch.save(flat, tmp_path / "flat.pt")
    torch.save(state, tmp_path / "nested.pth")
    a = SJDL("mobilenet_v2", 2, "conv2", num_syn_ids=3)
    b = SJDL("mobilenet_v2", 2, "conv2", num_syn_ids=3)
    ra, rb = (
        a.load_pretrained(str(tmp_path / "flat.pt")),
        b.load_pretrained(str(tmp_path / "nested.pth")),
    )
    assert len(ra.loaded) == len(rb.loaded) == 312 and not ra.missing and not rb.missing
    sa, sb = a.backbone().state_dict(), b.backbone().state_dict()
    for (ka, va), (kb, vb) in zip(sa.items(), sb.items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka


def test_missing_and_unexpected_keys_are_reported(tmp_path):
    state = _bundled_state()
    del state["features.18.1.weight"]
    state["classifier.1.weight"] = torch.zeros(10, 1280)
    torch.save(state, tmp_path / "partial.pth")
    report = SJDL("mobilenet_v2", 2, num_syn_ids=3).load_pretrained(str(tmp_path / "partial.pth"))
    assert report.missing == ["features.18.1.weight"]
    assert report.unexpected == ["classifier.1.weight"]


@pytest.mark.parametrize(
    "split,last_stride,cfsm_shape,reid_dim",
    [
        ("conv2", 2, (24, 16, 16), 1280),
        ("conv3", 2, (32, 8, 8), 1280),
        ("conv4", 1, (96, 4, 4), 1280),
        ("conv5", 1, (1280, 4, 4), 1280),
        ("conv5", 2, (1280, 2, 2), 1280),
    ],
)
def test_split_shapes_and_full_resolution_firm(split, last_stride, cfsm_shape, reid_dim):
    model = SJDL("mobilenet_v2", last_stride, split, num_syn_ids=5).train()
    x = torch.rand(2, 3, 64, 64)
    f_c, f1 = model.cfsm(x)
    assert tuple(f_c.shape[1:]) == cfsm_shape
    assert tuple(f1.shape[1:]) == (24, 16, 16)  # FIRM's skip: the stride-4 layer1 output
    out = model(x)
    assert out.global_feat.shape == (2, reid_dim) and out.logits["syn"].shape == (2, 5)
    for img in out.restored:
        assert (
            img.shape == x.shape
            and float(img.detach().min()) >= 0
            and float(img.detach().max()) <= 1
        )


def test_last_stride_one_doubles_the_final_map():
    x = torch.rand(1, 3, 64, 64)
    maps = []
    for stride in (1, 2):
        model = SJDL("mobilenet_v2", stride, "conv2", num_syn_ids=2)
        maps.append(model.reidm.layer4(model.reidm.layer3(model.reidm.layer2(model.cfsm(x)[0]))))
    assert maps[0].shape[-1] == 2 * maps[1].shape[-1] == 4


def test_imagenet_value_selects_verified_bundled_file(tmp_path, monkeypatch):
    cfg = load_config(overrides=["model.backbone=mobilenet_v2", "model.pretrained=imagenet"])
    assert build_model(cfg, 3).pretrained_report.path.endswith("mobilenet_v2_imagenet.safetensors")
    damaged = tmp_path / bundled.BUNDLED["mobilenet_v2"][0]
    data = bytearray((bundled.WEIGHTS_DIR / damaged.name).read_bytes())
    data[-1] ^= 1
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(bundled, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        bundled.resolve_pretrained("imagenet", "mobilenet_v2")
    with pytest.raises(FileNotFoundError, match="no bundled ImageNet weights for resnet50"):
        bundled.resolve_pretrained("imagenet", "resnet50")
