"""The study's summary: mean ± std per row and test set, paired differences to Baseline with
bootstrap intervals (from the saved per-query arrays), a Markdown/CSV table and a bar chart."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..evaluation.statistics import Interval, bootstrap_mean, mean_std, paired_difference
from ..storage import save_pil, write_atomic
from .study_plan import query_file

LABELS = {
    "clear_reid": "ReID trained on clear",
    "dcp_reid": "DCP defog + clear ReID",
    "firm_reid": "FIRM defog + clear ReID",
    "baseline": "Baseline (trained on fog)",
    "jdl": "JDL",
    "sjdl_wo_sc": "SJDL w/o SC",
    "sjdl": "SJDL",
}
COLORS = {  # one colour per row, the same in every panel
    "clear_reid": (127, 127, 127),
    "dcp_reid": (188, 189, 34),
    "firm_reid": (23, 190, 207),
    "baseline": (31, 119, 180),
    "jdl": (255, 127, 14),
    "sjdl_wo_sc": (148, 103, 189),
    "sjdl": (214, 39, 40),
}
TABLE4 = ("baseline", "jdl", "sjdl_wo_sc", "sjdl")
TABLE3 = ("clear_reid", "dcp_reid", "firm_reid", "baseline", "sjdl")
SUMMARY_FIELDS = ["density", "test", "row", "seeds", "mAP_mean", "mAP_std", "R1_mean", "R1_std"]
SUMMARY_FIELDS += ["mAP_low", "mAP_high", "dmAP", "dmAP_low", "dmAP_high", "dR1", "dR1_low"]
SUMMARY_FIELDS += ["dR1_high", "PSNR", "SSIM"]


def per_query(out: Path, row: str, density: str, test: str, seeds, metric: str) -> np.ndarray:
    """(S, Q) per-query ``AP`` or ``R1`` of a row over ``seeds`` (the saved arrays)."""
    return np.stack(
        [np.load(query_file(out, row, density, test, s))[metric] for s in seeds]
    ).astype(np.float64)


def _float(v: str) -> float | None:
    return float(v) if v not in ("", None) else None


def summarize(out: Path, table: list[dict], settings) -> list[dict]:
    """One summary row per (density, test, row) of ``settings`` present in ``table``, over
    the seeds of ``settings``."""
    seeds = {str(x) for x in settings.seeds}
    table = [r for r in table if r["seed"] in seeds]
    rows = []
    for density in settings.densities:
        for test in ("foggy", "clear"):
            of = {}
            for r in table:
                if (r["density"], r["test"]) == (density, test):
                    of.setdefault(r["row"], []).append(r)
            base = {r["seed"] for r in of.get("baseline", [])}
            for row in settings.rows:
                mine = of.get(row)
                if not mine:
                    continue
                seeds = sorted({r["seed"] for r in mine}, key=int)
                s = {"density": density, "test": test, "row": row, "seeds": len(seeds)}
                for m in ("mAP", "R1"):
                    s[f"{m}_mean"], s[f"{m}_std"] = mean_std([float(r[m]) for r in mine])
                ap = per_query(out, row, density, test, seeds, "AP")
                ci = bootstrap_mean(ap, settings.resamples).scaled(100)
                s["mAP_low"], s["mAP_high"] = ci.low, ci.high
                common = [x for x in seeds if x in base]
                if row != "baseline" and common:
                    for m in ("mAP", "R1"):
                        key = "AP" if m == "mAP" else "R1"
                        a = per_query(out, row, density, test, common, key)
                        b = per_query(out, "baseline", density, test, common, key)
                        d = paired_difference(a, b, settings.resamples).scaled(100)
                        s[f"d{m}"], s[f"d{m}_low"], s[f"d{m}_high"] = d.value, d.low, d.high
                for m in ("PSNR", "SSIM"):
                    vals = [v for v in (_float(r[m]) for r in mine) if v is not None]
                    s[m] = float(np.mean(vals)) if vals else None
                rows.append(s)
    return rows


def _f(v, digits=2) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def _pm(s: dict, m: str) -> str:
    """mean ± std over seeds (just the mean for one seed)."""
    mean = _f(s[f"{m}_mean"])
    return mean if s["seeds"] < 2 else f"{mean} ± {_f(s[f'{m}_std'])}"


def _ci(s: dict, m: str) -> str:
    if s.get(f"d{m}") is None:
        return "–"
    return f"{s[f'd{m}']:+.2f} [{s[f'd{m}_low']:+.2f}, {s[f'd{m}_high']:+.2f}]"


def glance(summary: list[dict]) -> list[str]:
    """One line per row: per density, foggy-test mAP, its difference to Baseline [95% CI]
    and clear-test mAP (the README's table)."""
    densities = list(dict.fromkeys(s["density"] for s in summary))
    by = {(s["row"], s["density"], s["test"]): s for s in summary}
    head, rule = "| row |", "|---|"
    for d in densities:
        head += f" {d} fog: foggy test | ΔmAP vs Baseline [95% CI] | clear test |"
        rule += "---|---|---|"
    lines = ["\n### At a glance: mAP (%), mean ± std over seeds\n", head, rule]
    for row in dict.fromkeys(s["row"] for s in summary):
        cells = [LABELS.get(row, row)]
        for d in densities:
            foggy, clear = by.get((row, d, "foggy")), by.get((row, d, "clear"))
            cells += [_pm(foggy, "mAP") if foggy else "–", _ci(foggy, "mAP") if foggy else "–"]
            cells.append(_pm(clear, "mAP") if clear else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(summary: list[dict], input_quality: dict, header: str = "") -> str:
    lines = [header] if header else []
    lines += glance(summary) if summary else []
    for title, names in (("Table 4 (ablation)", TABLE4), ("Table 3 (strategies)", TABLE3)):
        body = [s for s in summary if s["row"] in names]
        if not body:
            continue
        lines += [
            f"\n### {title}\n",
            "| fog | test | row | seeds | mAP | R1 | ΔmAP vs Baseline [95% CI] "
            "| ΔR1 vs Baseline [95% CI] | PSNR (dB) | SSIM |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in body:
            lines.append(
                f"| {s['density']} | {s['test']} | {LABELS[s['row']]} | {s['seeds']} "
                f"| {_pm(s, 'mAP')} | {_pm(s, 'R1')} | {_ci(s, 'mAP')} | {_ci(s, 'R1')} "
                f"| {_f(s['PSNR'])} | {_f(s['SSIM'], 3)} |"
            )
    if input_quality:
        lines.append("\nFoggy test images themselves against their clear partners: ")
        lines[-1] += "; ".join(
            f"{d} fog PSNR {_f(q.get('PSNR'))} dB, SSIM {_f(q.get('SSIM'), 3)}"
            for d, q in input_quality.items()
        )
    return "\n".join(lines) + "\n"


def write_summary(out: Path, summary: list[dict], input_quality: dict, header: str) -> list[Path]:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, SUMMARY_FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for s in summary:
        writer.writerow({k: ("" if s.get(k) is None else s.get(k)) for k in SUMMARY_FIELDS})
    paths = [write_atomic(out / "summary.csv", buf.getvalue().encode())]
    text = markdown(summary, input_quality, header)
    paths.append(write_atomic(out / "summary.md", text.encode()))
    paths.append(bar_chart(summary, out / "study.png"))
    return paths


# -- the chart (Pillow, like evaluation/plots.py) ------------------------------------------
PANEL_W, PANEL_H, PAD = 230, 190, 34


def _panel(d: ImageDraw.ImageDraw, x0: int, y0: int, title: str, bars, order) -> None:
    """Bars (row -> Interval) with whiskers in a box at (x0, y0); own y scale, 0 included."""
    d.text((x0 + 4, y0 + 2), title, fill=(0, 0, 0))
    top, bottom, left = y0 + 18, y0 + PANEL_H - 8, x0 + 40
    vals = [v for i in bars.values() for v in (i.low, i.high, 0.0) if np.isfinite(v)]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1

    def y(v):
        return bottom - (v - lo) / (hi - lo) * (bottom - top)

    d.rectangle([left, top, x0 + PANEL_W - 4, bottom], outline=(160, 160, 160))
    for v in (lo, 0.0, hi):
        d.text((x0 + 2, y(v) - 6), f"{v:.3g}", fill=(80, 80, 80))
    d.line([left, y(0.0), x0 + PANEL_W - 4, y(0.0)], fill=(120, 120, 120))
    slot = (PANEL_W - 48) / max(1, len(order))
    for k, row in enumerate(order):
        if row not in bars:
            continue
        iv, color = bars[row], COLORS.get(row, (0, 0, 0))
        bx = left + 4 + k * slot
        if np.isfinite(iv.value):
            y1, y2 = sorted((y(iv.value), y(0.0)))
            d.rectangle([bx, y1, bx + slot * 0.7, y2], fill=color)
        if np.isfinite(iv.low) and np.isfinite(iv.high):
            cx = bx + slot * 0.35
            d.line([cx, y(iv.low), cx, y(iv.high)], fill=(0, 0, 0), width=2)
            for v in (iv.low, iv.high):
                d.line([cx - 4, y(v), cx + 4, y(v)], fill=(0, 0, 0), width=2)


def bar_chart(summary: list[dict], path: Path) -> Path:
    """Top: mAP per row with its 95 % bootstrap interval; bottom: mAP minus Baseline's with
    the paired interval; one column per (fog density, test images)."""
    groups = list(dict.fromkeys((s["density"], s["test"]) for s in summary))
    order = list(dict.fromkeys(s["row"] for s in summary))
    legend_h = 14 * len(order) + 10
    w = max(1, len(groups)) * PANEL_W + 20
    img = Image.new("RGB", (w, 2 * PANEL_H + PAD + legend_h), "white")
    d = ImageDraw.Draw(img)
    title = "mAP (%) and difference to Baseline; whiskers: 95% bootstrap CI"
    d.text((10, 4), title, fill=(0, 0, 0))
    for g, (density, test) in enumerate(groups):
        mine = {s["row"]: s for s in summary if (s["density"], s["test"]) == (density, test)}
        top = {r: Interval(s["mAP_mean"], s["mAP_low"], s["mAP_high"]) for r, s in mine.items()}
        diff = {
            r: Interval(s["dmAP"], s["dmAP_low"], s["dmAP_high"])
            for r, s in mine.items()
            if s.get("dmAP") is not None
        }
        x0 = 10 + g * PANEL_W
        _panel(d, x0, 18, f"mAP: {density} fog, {test} test", top, order)
        _panel(d, x0, 18 + PANEL_H + 8, f"mAP - Baseline: {density}, {test}", diff, order)
    ly = 2 * PANEL_H + PAD
    for k, row in enumerate(order):
        color = COLORS.get(row, (0, 0, 0))
        d.rectangle([10, ly + 14 * k + 2, 20, ly + 14 * k + 12], fill=color)
        d.text((26, ly + 14 * k), LABELS.get(row, row), fill=(0, 0, 0))
    return save_pil(img, path)
