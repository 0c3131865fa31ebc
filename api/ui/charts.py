"""Small inline SVG charts: no plotting library on the request path, and text a browser scales."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from optimizer.cockpit import Uplift
from optimizer.ports.cockpit import DayCounts

SERIES = (("decisions", "#5b6b7f"), ("contacts", "#1f77b4"), ("conversions", "#2ca02c"))


def daily_chart(days: Sequence[DayCounts], *, width: int = 420, height: int = 150) -> str:
    """Decisions, contacts and conversions per day as lines, with the days below."""
    left, right, top, bottom = 36, 24, 10, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([1, *(int(getattr(d, name)) for d in days for name, _ in SERIES)])
    step = plot_w / max(1, len(days) - 1)

    def x(i: int) -> float:
        return left + i * step

    def y(v: int) -> float:
        return top + plot_h * (1 - v / peak)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="per day">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#999"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" font-size="10" '
        f'data-metric="chart.peak" data-value="{peak}">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" font-size="10">0</text>',
    ]
    for name, colour in SERIES:
        points = " ".join(f"{x(i):.1f},{y(getattr(d, name)):.1f}" for i, d in enumerate(days))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}">'
            f"<title>{name}</title></polyline>"
        )
    for i, d in enumerate(days):
        if len(days) <= 8 or i % max(1, len(days) // 7) == 0 or i == len(days) - 1:
            parts.append(
                f'<text x="{x(i):.1f}" y="{height - 6}" text-anchor="middle" font-size="10">'
                f"{escape(d.day.strftime('%d %b'))}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def uplift_chart(value: Uplift, *, width: int = 240, height: int = 40) -> str:
    """The uplift as a point with its 95 % interval on an axis through zero."""
    if value.difference is None or value.low is None or value.high is None:
        return ""
    reach = max(abs(value.low), abs(value.high), 0.01) * 1.15
    middle = width / 2

    def x(v: float) -> float:
        return middle + v / reach * (width / 2 - 10)

    colour = "#2ca02c" if value.low > 0 else "#d62728" if value.high < 0 else "#777"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="uplift interval">'
        f'<line x1="{middle}" y1="4" x2="{middle}" y2="{height - 14}" stroke="#999" '
        'stroke-dasharray="3,2"/>'
        f'<line x1="{x(value.low):.1f}" y1="14" x2="{x(value.high):.1f}" y2="14" '
        f'stroke="{colour}" stroke-width="3"/>'
        f'<circle cx="{x(value.difference):.1f}" cy="14" r="4" fill="{colour}"/>'
        f'<text x="{middle}" y="{height - 2}" text-anchor="middle" font-size="10">0</text>'
        "</svg>"
    )
