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
    "imagenet": "ImageNet features, no ReID training",
    "clear_reid": "ReID trained on clear",
    "dcp_reid": "DCP defog + clear ReID",
    "firm_reid": "FIRM defog + clear ReID",
    "baseline": "Baseline (trained on fog)",
    "baseline_clear": "Baseline on foggy + clear twins",
    "baseline_aug": "Baseline + fog-kind augmentation",
    "jdl": "JDL",
    "sjdl_wo_sc": "SJDL w/o SC",
    "sjdl": "SJDL",
    "sjdl_aug": "SJDL + fog-kind augmentation",
    "baseline_cons": "Baseline + clear-twin embedding consistency",
    "clear_cons": "Baseline on foggy + clear twins + consistency",
    "sjdl_dsbn": "SJDL, own BN for real images",
    "sjdl_clear": "SJDL on foggy + clear twins",
    "baseline_2x": "Baseline, twice the steps (as many as with clear twins)",
    "sjdl_clear_cons": "SJDL on foggy + clear twins + consistency",
    "recommended": "Recommended: foggy + clear twins + consistency (preset=recommended)",
    "baseline_4x": "Baseline, four times the steps",
    "recommended_2x": "Recommended, twice the epochs",
    "sjdl_detach": "SJDL, no restoration gradient into CFSM",
    "sjdl_grad01": "SJDL, restoration gradient into CFSM x0.1",
    "recommended_pairs": "Recommended, clear twins in their foggy images' batch",
    "sjdl_affine": "SJDL, FIRM as per-pixel gain and offset",
    "sjdl_affine2": "SJDL, FIRM gain and offset at 1/2 resolution",
    "sjdl_affine4": "SJDL, FIRM gain and offset at 1/4 resolution",
    "sjdl_affine4_every5": "SJDL, gain and offset at 1/4, a real batch every 5th step",
    "sjdl_affine4_every5_rb0": "the same, FIRM without ResBlocks",
    "sjdl_affine4_every5_half": "the same, FIRM on every 2nd training image",
}
ADAPT_LABELS = {"train": "BN re-estimated on train images", "gallery": "BN re-estimated on gallery"}
COLORS = {  # one colour per row, the same in every panel
    "imagenet": (0, 0, 0),
    "clear_reid": (127, 127, 127),
    "dcp_reid": (188, 189, 34),
    "firm_reid": (23, 190, 207),
    "baseline": (31, 119, 180),
    "baseline_clear": (255, 187, 120),
    "baseline_aug": (44, 160, 44),
    "jdl": (255, 127, 14),
    "sjdl_wo_sc": (148, 103, 189),
    "sjdl": (214, 39, 40),
    "sjdl_aug": (140, 86, 75),
    "baseline_cons": (23, 190, 207),
    "clear_cons": (188, 189, 34),
    "sjdl_dsbn": (127, 127, 127),
    "sjdl_clear": (120, 0, 60),
    "baseline_2x": (0, 60, 120),
    "sjdl_clear_cons": (90, 20, 20),
    "recommended": (227, 119, 194),
    "baseline_4x": (0, 30, 70),
    "recommended_2x": (150, 60, 130),
    "sjdl_detach": (255, 152, 150),
    "sjdl_grad01": (196, 156, 148),
    "recommended_pairs": (250, 170, 230),
    "sjdl_affine": (255, 200, 0),
    "sjdl_affine2": (200, 140, 0),
    "sjdl_affine4": (130, 90, 0),
    "sjdl_affine4_every5": (90, 60, 0),
    "sjdl_affine4_every5_rb0": (60, 40, 0),
    "sjdl_affine4_every5_half": (170, 120, 40),
}


def label(row: str) -> str:
    """A row's name for tables: ``kind+bn_src`` reads "<kind>, BN re-estimated on <src>"."""
    kind, _, adapt = row.partition("+bn_")
    return LABELS.get(kind, kind) + (f", {ADAPT_LABELS[adapt]}" if adapt else "")


def color(row: str) -> tuple[int, int, int]:
    kind, _, adapt = row.partition("+bn_")
    r, g, b = COLORS.get(kind, (0, 0, 0))
    if adapt:  # lighter shade of the trained row's colour
        f = 0.55 if adapt == "gallery" else 0.3
        r, g, b = (int(c + (255 - c) * f) for c in (r, g, b))
    return r, g, b


SUMMARY_FIELDS = ["density", "test", "row", "seeds", "mAP_mean", "mAP_std", "R1_mean", "R1_std"]
SUMMARY_FIELDS += ["mAP_low", "mAP_high", "dmAP", "dmAP_low", "dmAP_high", "dR1", "dR1_low"]
SUMMARY_FIELDS += ["dR1_high", "dmAP_imagenet", "dmAP_imagenet_low", "dmAP_imagenet_high"]
SUMMARY_FIELDS += ["PSNR", "SSIM", "seed_dmAP", "below_input"]
UNSEEN = "unseen"  # the mean over the unseen fog kinds, as one test


def per_query(out: Path, row: str, density: str, tests, seeds, metric: str) -> np.ndarray:
    """(S, K, Q) per-query ``AP`` or ``R1`` of a row over ``seeds`` and the K ``tests``
    (a name or a list of names; the saved arrays)."""
    tests = [tests] if isinstance(tests, str) else list(tests)
    return np.stack(
        [
            np.stack([np.load(query_file(out, row, density, t, s))[metric] for t in tests])
            for s in seeds
        ]
    ).astype(np.float64)


def _float(v: str) -> float | None:
    return float(v) if v not in ("", None) else None


def _tests(table: list[dict]) -> list[tuple[str, list[str]]]:
    """(name, test sets) in table order: foggy, clear, each unseen kind, then their mean."""
    present = list(dict.fromkeys(r["test"] for r in table))
    kinds = [t for t in present if t not in ("foggy", "clear")]
    out = [(t, [t]) for t in ("foggy", "clear") if t in present]
    out += [(k, [k]) for k in kinds]
    return out + ([(UNSEEN, kinds)] if kinds else [])


def _against(out, row, ref, density, sets, seeds, settings) -> dict:
    """Paired differences of ``row`` to ``ref`` over the common ``seeds``: mAP and R1 (and
    per-seed mAP differences) against Baseline, mAP against ImageNet features."""
    fields = {}
    for metric in ("AP", "R1") if ref == "baseline" else ("AP",):
        a = per_query(out, row, density, sets, seeds, metric)
        b = per_query(out, ref, density, sets, seeds, metric)
        d = paired_difference(a, b, settings.resamples).scaled(100)
        name = "dmAP_imagenet" if ref == "imagenet" else ("dmAP" if metric == "AP" else "dR1")
        fields.update({name: d.value, f"{name}_low": d.low, f"{name}_high": d.high})
        if ref == "baseline" and metric == "AP":  # per-seed differences (few seeds: show them)
            diffs = 100 * np.nanmean((a - b).reshape(len(seeds), -1), axis=1)
            fields["seed_dmAP"] = " ".join(f"{v:+.2f}" for v in diffs)
    return fields


def summarize(out: Path, table: list[dict], settings) -> list[dict]:
    """One summary row per (density, test, row) of ``settings`` present in ``table``, over
    the seeds of ``settings``; test "unseen" is the mean over the unseen fog kinds, with
    intervals that resample the same queries jointly across kinds and seeds."""
    seeds = {str(x) for x in settings.seeds}
    table = [r for r in table if r["seed"] in seeds and r["test"] in settings.tests]
    rows = []
    for density in settings.densities:
        for test, sets in _tests(table):
            of: dict[str, dict[str, list[dict]]] = {}
            for r in table:
                if r["density"] == density and r["test"] in sets:
                    of.setdefault(r["row"], {}).setdefault(r["seed"], []).append(r)
            of = {k: {x: v for x, v in d.items() if len(v) == len(sets)} for k, d in of.items()}
            for row in settings.rows:
                mine = of.get(row)
                if not mine:
                    continue
                seeds_ = sorted(mine, key=int)
                s = {"density": density, "test": test, "row": row, "seeds": len(seeds_)}
                for m in ("mAP", "R1"):
                    per_seed = [np.mean([float(r[m]) for r in mine[x]]) for x in seeds_]
                    s[f"{m}_mean"], s[f"{m}_std"] = mean_std(per_seed)
                ap = per_query(out, row, density, sets, seeds_, "AP")
                ci = bootstrap_mean(ap, settings.resamples).scaled(100)
                s["mAP_low"], s["mAP_high"] = ci.low, ci.high
                for ref in ("baseline", "imagenet"):
                    common = [x for x in seeds_ if x in of.get(ref, {})]
                    if row != ref and common:
                        s.update(_against(out, row, ref, density, sets, common, settings))
                for m in ("PSNR", "SSIM"):
                    vals = [_float(r[m]) for x in seeds_ for r in mine[x]]
                    vals = [v for v in vals if v is not None]
                    s[m] = float(np.mean(vals)) if vals else None
                s["below_input"] = _below(test, [r for x in seeds_ for r in mine[x]])
                rows.append(s)
    return rows


def _below(test: str, rows: list[dict]) -> str | None:
    """ "n of N": restorations further from the clear image than their foggy input, summed
    over seeds (and unseen kinds); None on clear images (the input is the target itself), for
    rows that do not restore and for tables written before the count was kept."""
    counts = [(r.get("below_input") or "", r.get("restored") or "") for r in rows]
    if test == "clear" or not counts or any("" in c for c in counts):
        return None
    return f"{sum(int(b) for b, _ in counts)} of {sum(int(n) for _, n in counts)}"


def _f(v, digits=2) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def _pm(s: dict, m: str) -> str:
    """mean ± std over seeds (just the mean for one seed)."""
    mean = _f(s[f"{m}_mean"])
    return mean if s["seeds"] < 2 else f"{mean} ± {_f(s[f'{m}_std'])}"


def _ci(s: dict | None, m: str) -> str:
    """``m`` is mAP, R1 (difference to Baseline) or mAP_imagenet (to ImageNet features)."""
    key = "dmAP_imagenet" if m == "mAP_imagenet" else f"d{m}"
    if s is None or s.get(key) is None:
        return "–"
    return f"{s[key]:+.2f} [{s[f'{key}_low']:+.2f}, {s[f'{key}_high']:+.2f}]"


def glance(summary: list[dict]) -> list[str]:
    """Per density, one line per row: mAP on the training fog (and its difference to
    Baseline), on clear images, and on the unseen fog kinds (mean over kinds; differences to
    Baseline and to ImageNet features) — the README's table."""
    by = {(s["row"], s["density"], s["test"]): s for s in summary}
    lines = ["\n### At a glance: mAP (%), mean ± std over seeds; Δ: paired, [95% CI]\n"]
    for d in dict.fromkeys(s["density"] for s in summary):
        lines += [
            f"\n{d} fog (training fog and the foggy test images):\n",
            "| row | foggy test | Δ vs Baseline | clear test | Δ vs Baseline | unseen fog "
            "| Δ vs Baseline | Δ vs ImageNet |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in dict.fromkeys(s["row"] for s in summary if s["density"] == d):
            f, c, u = (by.get((row, d, t)) for t in ("foggy", "clear", UNSEEN))
            cells = [label(row)]
            cells += [_pm(f, "mAP") if f else "–", _ci(f, "mAP")]
            cells += [_pm(c, "mAP") if c else "–", _ci(c, "mAP")]
            cells += [_pm(u, "mAP") if u else "–", _ci(u, "mAP"), _ci(u, "mAP_imagenet")]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(summary: list[dict], input_quality: dict, header: str = "") -> str:
    lines = [header] if header else []
    lines += glance(summary) if summary else []
    if summary:
        lines += [
            "\n### Every row and test set\n",
            "| fog | test | row | seeds | mAP | R1 | ΔmAP vs Baseline [95% CI] "
            "| per-seed ΔmAP | ΔR1 vs Baseline [95% CI] | ΔmAP vs ImageNet [95% CI] "
            "| PSNR (dB) | SSIM | restorations below their input |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in summary:
            lines.append(
                f"| {s['density']} | {s['test']} | {label(s['row'])} | {s['seeds']} "
                f"| {_pm(s, 'mAP')} | {_pm(s, 'R1')} | {_ci(s, 'mAP')} "
                f"| {s.get('seed_dmAP') or '–'} | {_ci(s, 'R1')} | {_ci(s, 'mAP_imagenet')} "
                f"| {_f(s['PSNR'])} | {_f(s['SSIM'], 3)} | {s.get('below_input') or '–'} |"
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
        iv, colour = bars[row], color(row)
        bx = left + 4 + k * slot
        if np.isfinite(iv.value):
            y1, y2 = sorted((y(iv.value), y(0.0)))
            d.rectangle([bx, y1, bx + slot * 0.7, y2], fill=colour)
        if np.isfinite(iv.low) and np.isfinite(iv.high):
            cx = bx + slot * 0.35
            d.line([cx, y(iv.low), cx, y(iv.high)], fill=(0, 0, 0), width=2)
            for v in (iv.low, iv.high):
                d.line([cx - 4, y(v), cx + 4, y(v)], fill=(0, 0, 0), width=2)


def bar_chart(summary: list[dict], path: Path) -> Path:
    """Top: mAP per row with its 95 % bootstrap interval; bottom: mAP minus Baseline's with
    the paired interval; one column per (fog density, test images)."""
    shown = ("foggy", "clear", UNSEEN)  # the per-kind panels are in the tables
    groups = list(dict.fromkeys((s["density"], s["test"]) for s in summary if s["test"] in shown))
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
        d.rectangle([10, ly + 14 * k + 2, 20, ly + 14 * k + 12], fill=color(row))
        d.text((26, ly + 14 * k), label(row), fill=(0, 0, 0))
    return save_pil(img, path)
