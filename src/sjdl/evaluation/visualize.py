"""Pictures: rank lists (green = correct, red = wrong), restoration grids, contact sheets."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageOps

from ..data.io import open_image, to_uint8
from ..storage import save_pil

GREEN, RED, BLUE, GREY = (30, 170, 60), (210, 40, 40), (40, 90, 200), (120, 120, 120)
THUMB = (96, 96)  # width, height of one thumbnail cell
BORDER, CAPTION = 4, 16


def _open(path: str | Path, unreadable: list[str] | None) -> Image.Image:
    """The image at ``path``, or a grey "unreadable" tile when it is gone or damaged (its
    path is then added to ``unreadable``)."""
    try:
        with open_image(path) as im:
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        if unreadable is not None:
            unreadable.append(str(path))
        tile = Image.new("RGB", (THUMB[0] - 2 * BORDER, THUMB[1] - 2 * BORDER), (200, 200, 200))
        ImageDraw.Draw(tile).text((4, THUMB[1] // 2 - 10), "unreadable", fill=(0, 0, 0))
        return tile


def _thumb(
    img: Image.Image | torch.Tensor | str | Path,
    color,
    caption: str,
    unreadable: list[str] | None = None,
) -> Image.Image:
    if isinstance(img, str | Path):
        img = _open(img, unreadable)
    elif isinstance(img, torch.Tensor):
        img = Image.fromarray(to_uint8(img))
    img = ImageOps.pad(img, (THUMB[0] - 2 * BORDER, THUMB[1] - 2 * BORDER), color=(255, 255, 255))
    cell = Image.new("RGB", (THUMB[0], THUMB[1] + CAPTION), "white")
    cell.paste(Image.new("RGB", THUMB, color), (0, 0))
    cell.paste(img, (BORDER, BORDER))
    ImageDraw.Draw(cell).text((3, THUMB[1] + 2), caption, fill=(0, 0, 0))
    return cell


def _row(cells: list[Image.Image], gap: int = 4, title: str | None = None) -> Image.Image:
    top = CAPTION if title else 0
    w = sum(c.width for c in cells) + gap * (len(cells) - 1)
    h = max(c.height for c in cells) + top
    row = Image.new("RGB", (w, h), "white")
    if title:
        ImageDraw.Draw(row).text((2, 2), title, fill=(0, 0, 0))
    x = 0
    for c in cells:
        row.paste(c, (x, top))
        x += c.width + gap
    return row


def rank_list(
    query_path,
    gallery_paths,
    correct,
    distances,
    title: str | None = None,
    unreadable: list[str] | None = None,
):
    """Query (blue border) then its top-k gallery images, distance under each. An image
    that cannot be read (deleted or damaged since it was indexed) is a grey tile, and its
    path is added to ``unreadable`` when given."""
    cells = [_thumb(query_path, BLUE, "query", unreadable)]
    flags = correct if correct is not None else [None] * len(gallery_paths)  # None: unknown
    cells += [
        _thumb(p, GREY if ok is None else (GREEN if ok else RED), f"{i + 1}: {d:.3f}", unreadable)
        for i, (p, ok, d) in enumerate(zip(gallery_paths, flags, distances, strict=True))
    ]
    return _row(cells, title=title)


def stack(rows: list[Image.Image], gap: int = 6) -> Image.Image:
    """Rows one under another (a contact sheet)."""
    w = max(r.width for r in rows)
    sheet = Image.new("RGB", (w, sum(r.height for r in rows) + gap * (len(rows) - 1)), "white")
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height + gap
    return sheet


def restoration_row(
    foggy,
    restored,
    clear=None,
    psnr: float | None = None,
    title: str | None = None,
    input_psnr: float | None = None,
) -> Image.Image:
    """foggy | restored (J_enh) | clear when present; PSNRs against the clear image when given,
    the restored one outlined red when it is below its input's."""
    label = "restored" if psnr is None else f"restored {psnr:.1f} dB"
    worse = psnr is not None and input_psnr is not None and psnr < input_psnr
    foggy_label = "foggy" if input_psnr is None else f"foggy {input_psnr:.1f} dB"
    cells = [_thumb(foggy, GREY, foggy_label), _thumb(restored, RED if worse else GREY, label)]
    if clear is not None:
        cells.append(_thumb(clear, GREY, "clear"))
    return _row(cells, title=title)


def save_rank_lists(
    result, query_records, gallery_records, out_dir: Path, num_queries: int = 8, top_k: int = 10
) -> list[Path]:
    """One PNG per query (the first ``num_queries``) and ``rank_lists.png`` with all of them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    q, g, dist = result.query, result.gallery, result.distmat
    rows, paths = [], []
    for n in range(min(num_queries, len(q.pids))):
        keep = ~((g.pids == q.pids[n]) & (g.camids == q.camids[n]))
        cand = torch.nonzero(keep).flatten()
        order = cand[torch.sort(dist[n, cand], stable=True).indices[:top_k]]
        qrec = query_records[int(q.indices[n])]
        grecs = [gallery_records[int(g.indices[j])] for j in order]
        row = rank_list(
            qrec.path,
            [r.path for r in grecs],
            [bool(g.pids[j] == q.pids[n]) for j in order],
            [float(dist[n, j]) for j in order],
            title=qrec.path.name,
        )
        path = out_dir / f"rank_{n:03d}_{qrec.path.stem}.png"
        save_pil(row, path)
        rows.append(row)
        paths.append(path)
    if rows:
        save_pil(stack(rows), out_dir / "rank_lists.png")
        paths.append(out_dir / "rank_lists.png")
    return paths


def save_restoration_grid(samples, path: Path) -> Path | None:
    """foggy | restored | clear rows for the kept samples, as one PNG."""
    if not samples:
        return None
    rows = [
        restoration_row(s.foggy, s.restored, s.clear, s.psnr, Path(s.path).name, s.input_psnr)
        for s in samples
    ]
    return save_pil(stack(rows), path)


def comparison_sheet(columns: list[tuple[str, torch.Tensor]]) -> Image.Image:
    """Rows of images side by side: ``columns`` = [(caption, (N, 3, H, W) in [0, 1]), ...]."""
    n = len(columns[0][1])
    rows = [_row([_thumb(imgs[i], GREY, label) for label, imgs in columns]) for i in range(n)]
    return stack(rows)
