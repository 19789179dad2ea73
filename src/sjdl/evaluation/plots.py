"""Small line plots drawn with Pillow (no plotting library needed): loss and metric curves."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from ..storage import save_pil

COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189)]


def line_plot(
    series: dict[str, list[tuple[float, float]]],
    path: str | Path,
    title: str = "",
    xlabel: str = "",
    size=(480, 300),
) -> Path:
    """One PNG with a line per series (name -> [(x, y), ...]); axes scaled to the data."""
    w, h = size
    left, right, top, bottom = 56, 12, 24, 36
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    pts = [p for s in series.values() for p in s]
    d.text((left, 4), title, fill=(0, 0, 0))
    if pts:
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
        y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

        def px(x, y):
            return (
                left + (x - x0) / (x1 - x0) * (w - left - right),
                h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom),
            )

        d.rectangle([left, top, w - right, h - bottom], outline=(150, 150, 150))
        for frac in (0.0, 0.5, 1.0):
            y = y0 + frac * (y1 - y0)
            d.text((2, px(x0, y)[1] - 6), f"{y:.3g}", fill=(80, 80, 80))
        d.text((left, h - bottom + 4), f"{x0:g}", fill=(80, 80, 80))
        d.text((w - right - 30, h - bottom + 4), f"{x1:g}", fill=(80, 80, 80))
        d.text(((w - len(xlabel) * 6) // 2, h - 16), xlabel, fill=(0, 0, 0))
        for i, (name, s) in enumerate(series.items()):
            color = COLORS[i % len(COLORS)]
            if len(s) > 1:
                d.line([px(x, y) for x, y in s], fill=color, width=2)
            for x, y in s:
                cx, cy = px(x, y)
                d.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=color)
            d.text((w - right - 150, top + 4 + 12 * i), name, fill=color)
    return save_pil(img, Path(path))
