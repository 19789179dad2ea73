"""A self-contained ``report.html``: tables plus pictures linked by relative path (no server)."""

from __future__ import annotations

import datetime
import html
import os
from pathlib import Path

from ..storage import write_atomic

STYLE = """body{font-family:sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 10px;
text-align:right}th{background:#eee}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:4px 0}figure{margin:1em 0}
figcaption{color:#555;font-size:90%}.note{color:#555}"""


def format_value(v) -> str:
    if isinstance(v, float):
        return f"{100 * v:.2f}" if abs(v) <= 1 else f"{v:.2f}"
    return str(v)


def metrics_table(rows: dict[str, dict], keys: list[str]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) for a {row name: metrics} mapping; fractions shown in percent."""
    header = [""] + keys
    body = [[name] + [format_value(m.get(k, "")) for k in keys] for name, m in rows.items()]
    return header, body


def write_report(
    path: str | Path,
    title: str,
    tables: list[tuple[str, list[str], list[list]]],
    figures: list[tuple[str, Path]],
    notes: list[str] = (),
) -> Path:
    """Write ``path``; pictures are referenced relative to it so the folder can be moved."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{e(title)}</h1>",
        f"<p class='note'>written {datetime.datetime.now():%Y-%m-%d %H:%M}</p>",
    ]
    for caption, header, rows in tables:
        parts.append(
            f"<h2>{e(caption)}</h2><table><tr>"
            + "".join(f"<th>{e(str(h))}</th>" for h in header)
            + "</tr>"
        )
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    for note in notes:
        parts.append(f"<p class='note'>{e(note)}</p>")
    for caption, fig in figures:
        rel = os.path.relpath(fig, path.parent)
        parts.append(
            f"<figure><a href='{e(rel)}'><img src='{e(rel)}' alt='{e(caption)}'></a>"
            f"<figcaption>{e(caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    return write_atomic(path, "\n".join(parts))
