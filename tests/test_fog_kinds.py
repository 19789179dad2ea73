import csv

import pytest
import torch

from sjdl.data.fog import add_fog, builtin_depth, sample_fog_params
from sjdl.data.fog_kinds import (
    FOG_KINDS,
    UNSEEN_KINDS,
    gaussian_blur,
    random_kind_fog,
    render_fog,
    sample_kind_params,
    smooth_field,
)

from .conftest import cli, one_line_error


def _checker(h=64, w=64):
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((x + y) % 2).float().expand(3, h, w).clone()


def test_uniform_kind_is_the_homogeneous_model_with_the_same_draws():
    assert sample_fog_params(3, "train/a.jpg", (0.4, 1.6), (0.5, 1.0), "uniform").params == {}
    p = sample_fog_params(3, "train/a.jpg", (0.4, 1.6), (0.5, 1.0), "patchy")
    q = sample_fog_params(3, "train/a.jpg", (0.4, 1.6), (0.5, 1.0))
    assert (p.beta, p.airlight) == (q.beta, q.airlight)  # a kind draws after beta and A
    clear, depth = torch.rand(3, 32, 48), builtin_depth(32, 48)
    assert torch.equal(
        render_fog(clear, depth, 1.2, 0.8, "uniform", {}), add_fog(clear, depth, 1.2, 0.8)
    )


def test_patchy_fog_varies_along_a_row_where_the_homogeneous_one_cannot():
    black, depth = torch.zeros(3, 48, 64), builtin_depth(48, 64)  # I = A (1 - t) shows t
    params = {"strength": 0.8, "cells": 4.0, "field_seed": 7.0}
    uniform = render_fog(black, depth, 1.5, 1.0, "uniform", {})
    patchy = render_fog(black, depth, 1.5, 1.0, "patchy", params)
    assert float(uniform[0, 20].std()) < 1e-6 and float(patchy[0, 20].std()) > 0.02
    field = smooth_field(48, 64, 4, 7)
    assert abs(float(field.mean())) < 1e-5 and float(field.abs().max()) == pytest.approx(1)
    assert torch.equal(field, smooth_field(48, 64, 4, 7))  # seeded


def test_scatter_blurs_texture_and_leaves_flat_images_as_the_homogeneous_model():
    depth = builtin_depth(64, 64)
    checker = _checker()
    uniform = render_fog(checker, depth, 1.5, 0.7, "uniform", {})
    scatter = render_fog(checker, depth, 1.5, 0.7, "scatter", {"sigma": 0.03})
    detail = lambda x: float((x[:, :, 1:] - x[:, :, :-1]).abs().mean())  # noqa: E731
    assert detail(scatter) < 0.7 * detail(uniform)
    flat = torch.full((3, 64, 64), 0.3)
    same = render_fog(flat, depth, 1.5, 0.7, "scatter", {"sigma": 0.03})
    assert torch.allclose(same, render_fog(flat, depth, 1.5, 0.7, "uniform", {}), atol=1e-5)
    assert torch.allclose(gaussian_blur(torch.ones(1, 3, 5, 5), 3.0), torch.ones(1, 3, 5, 5))


def test_tinted_fog_attenuates_blue_more_and_colours_the_airlight():
    depth = builtin_depth(32, 32)
    grey = torch.full((3, 32, 32), 0.2)
    out = render_fog(grey, depth, 1.0, 0.9, "tinted", {"q": 1.0, "tint": 0.0})
    r, g, b = (float(out[c].mean()) for c in range(3))
    assert r < g < b  # shorter wavelength, thicker fog: more airlight in blue
    warm = render_fog(torch.zeros(3, 32, 32), depth, 3.0, 0.9, "tinted", {"q": 0.0, "tint": 0.2})
    assert float(warm[0].mean()) > float(warm[2].mean())


def test_kind_parameters_are_in_their_documented_ranges_and_random_fog_keeps_to_its_kinds():
    draws = iter([0.0, 0.999, 0.5] * 4)
    p = sample_kind_params("patchy", lambda: next(draws))
    assert 0.5 <= p["strength"] <= 0.9 and p["cells"] in (3.0, 4.0, 5.0)
    with pytest.raises(ValueError, match="unknown fog kind 'smog'"):
        sample_kind_params("smog", lambda: 0.5)
    gen = torch.Generator().manual_seed(0)
    clear = torch.rand(3, 32, 32)
    kinds = {
        random_kind_fog(clear, builtin_depth(32, 32), ["tinted"], (1, 2), (0.5, 1), gen)[1]
        for _ in range(5)
    }
    assert kinds == {"tinted"} and set(UNSEEN_KINDS) < set(FOG_KINDS)


def test_sjdl_fog_kind_is_recorded_in_the_manifest(tmp_path):
    from PIL import Image

    src = tmp_path / "clear" / "train"
    src.mkdir(parents=True)
    Image.new("RGB", (40, 32), (90, 120, 60)).save(src / "0001_c001_0.png")
    result = cli("fog", tmp_path / "clear", tmp_path / "out", "--kind", "scatter", "--workers", 1)
    assert result.exit_code == 0, result.output
    with (tmp_path / "out" / "fog_manifest.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["kind"] == "scatter" and row["params"].startswith("sigma=")
    one_line_error(cli("fog", tmp_path / "clear", tmp_path / "o2", "--kind", "smog"), "'smog'")
    assert not (tmp_path / "o2").exists()
