"""Small inline SVG charts for the report: no JavaScript, no libraries, render anywhere offline."""

from __future__ import annotations

from html import escape
from typing import Sequence

ACCENT = "#b5179e"


def bars(items: Sequence[tuple[str, float]], *, unit: str = "", width: int = 560, bar: int = 18,
         label_width: int = 170, colour: str = ACCENT, fmt: str = "{:,.0f}") -> str:
    """Horizontal bar chart: one labelled bar per (label, value)."""
    if not items:
        return "<p class='muted'>nothing to show</p>"
    top = max(v for _, v in items) or 1
    h = len(items) * (bar + 6) + 4
    rows = []
    for i, (label, value) in enumerate(items):
        y = i * (bar + 6) + 2
        w = max(1, (width - label_width - 80) * value / top)
        text = escape(str(label))
        short = text if len(text) <= 26 else text[:25] + "…"
        rows.append(f"<text x='{label_width - 6}' y='{y + bar - 5}' text-anchor='end'><title>{text}</title>{short}</text>"
                    f"<rect x='{label_width}' y='{y}' width='{w:.1f}' height='{bar}' rx='3' fill='{colour}'/>"
                    f"<text x='{label_width + w + 6:.1f}' y='{y + bar - 5}' class='v'>{fmt.format(value)}{unit}</text>")
    return (f"<svg viewBox='0 0 {width} {h}' width='100%' style='max-width:{width}px' role='img' class='chart' preserveAspectRatio='xMinYMin meet'>"
            + "".join(rows) + "</svg>")


def histogram(values: Sequence[float], bins: int = 12, *, width: int = 560, height: int = 160, label: str = "") -> str:
    if not values:
        return "<p class='muted'>nothing to show</p>"
    lo, hi = min(values), max(values)
    if hi == lo:
        hi = lo + 1
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / (hi - lo) * bins))] += 1
    top = max(counts)
    bw = (width - 40) / bins
    rects = []
    for i, c in enumerate(counts):
        bh = (height - 40) * c / top
        x = 30 + i * bw
        rects.append(f"<rect x='{x:.1f}' y='{height - 24 - bh:.1f}' width='{bw - 2:.1f}' height='{bh:.1f}' fill='{ACCENT}'>"
                     f"<title>{lo + i * (hi - lo) / bins:,.0f}–{lo + (i + 1) * (hi - lo) / bins:,.0f}: {c:,}</title></rect>")
    axis = (f"<text x='30' y='{height - 6}'>{lo:,.0f}</text><text x='{width - 10}' y='{height - 6}' text-anchor='end'>"
            f"{hi:,.0f} {escape(label)}</text>")
    return f"<svg viewBox='0 0 {width} {height}' width='100%' style='max-width:{width}px' role='img' class='chart'>{''.join(rects)}{axis}</svg>"
