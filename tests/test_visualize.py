import torch

from sjdl.evaluation.visualize import BLUE, GREEN, RED, THUMB, rank_list, restoration_row

from .conftest import write_image


def test_rank_list_borders_mark_correct_and_wrong(tmp_path):
    q = write_image(tmp_path / "q.jpg", size=(40, 20))
    gallery = [write_image(tmp_path / f"g{i}.jpg", size=(30, 30), seed=i) for i in range(3)]
    img = rank_list(q, gallery, [True, False, True], [0.1, 0.2, 0.3])
    assert img.width == 4 * THUMB[0] + 3 * 4  # query + 3 thumbnails with gaps
    step = THUMB[0] + 4
    assert [img.getpixel((k * step + 1, 1)) for k in range(4)] == [BLUE, GREEN, RED, GREEN]


def test_restoration_row_has_three_panels_with_clear():
    t = torch.rand(3, 16, 16)
    assert restoration_row(t, t, t, 20.0).width == 3 * THUMB[0] + 2 * 4
    assert restoration_row(t, t).width == 2 * THUMB[0] + 4


def test_restoration_below_its_input_is_outlined_red():
    t = torch.full((3, 16, 16), 0.5)
    worse = restoration_row(t, t, t, psnr=12.0, input_psnr=15.0)
    better = restoration_row(t, t, t, psnr=18.0, input_psnr=15.0)
    x = THUMB[0] + 4 + 1  # the restored panel's border
    assert worse.getpixel((x, 1)) == RED and better.getpixel((x, 1)) != RED
