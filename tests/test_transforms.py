import torch

from sjdl.data import PairedTransform
from sjdl.data.transforms import ERASE_FILL, random_erase, resize


def test_paired_augmentation_keeps_pixel_exact_correspondence():
    tf = PairedTransform((32, 16), hflip=0.5, pad=4)
    for seed in range(20):
        clear = torch.rand(3, 40, 20)
        foggy = clear * 0.5 + 0.25  # any pixel-wise function of the clear image
        gen = torch.Generator().manual_seed(seed)
        reid, f, c = tf(foggy, clear, gen)
        inside = (c != 0).any(0)  # zero padding is the same for both, elsewhere f = c/2 + 1/4
        assert torch.allclose(f[:, inside], c[:, inside] * 0.5 + 0.25, atol=1e-6)
        assert torch.equal(reid, f) and f.shape == (3, 32, 16)


def test_flip_and_crop_really_happen():
    img = torch.arange(3 * 8 * 8, dtype=torch.float32).view(3, 8, 8) / 192
    outs = {
        tuple(
            PairedTransform((8, 8), hflip=0.5, pad=2)(img, None, torch.Generator().manual_seed(s))[
                1
            ]
            .flatten()
            .tolist()
        )
        for s in range(30)
    }
    assert len(outs) > 5  # different flips / offsets
    flipped = PairedTransform((8, 8), hflip=1.0)(img)[1]
    assert torch.equal(flipped, img.flip(-1))


def test_random_erasing_touches_only_the_reid_input():
    tf = PairedTransform((32, 32), erasing=1.0)
    img = torch.rand(3, 32, 32)
    reid, foggy, clear = tf(img, img.clone(), torch.Generator().manual_seed(0))
    assert torch.equal(foggy, img) and torch.equal(clear, img)
    erased = (reid != img).any(0)
    assert erased.any()
    fill = torch.tensor(ERASE_FILL).view(3, 1)
    assert torch.allclose(reid[:, erased], fill.expand(3, int(erased.sum())))


def test_resize_identity_and_range():
    img = torch.rand(3, 20, 10)
    assert resize(img, (20, 10)) is img
    out = resize(img, (7, 5))
    assert out.shape == (3, 7, 5) and out.min() >= 0 and out.max() <= 1
    assert random_erase(torch.rand(3, 1, 1)).shape == (3, 1, 1)  # too small: unchanged
