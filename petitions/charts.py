"""Charts drawn on the server as inline SVG: no script, no download, no style attributes.

Colours and fonts come from classes styled in `static/admin.css`; every bar has a
`<title>` (a tooltip, and what a screen reader says), and the caller shows the
same figures in a table beside the chart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date

from markupsafe import Markup, escape

_SVG_OPEN = (
    '<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {w} {h}" '
    'width="100%" role="img" aria-label="{label}">'
)


def nice_ceiling(value: float) -> int:
    """The smallest of 1, 2, 5 x 10^k that is at least `value` (and at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return int(step * power)
    return int(10 * power)  # not reached


def _n(value: float) -> str:
    """Coordinates with at most two decimals: short SVG."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _label(value: int) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 10_000:
        return f"{value / 1_000:g}k"
    return f"{value:,}"


def daily_columns(days: Sequence[tuple[date, int]], label: str) -> Markup:
    """One column per day, with a scale on the left and a date every week."""
    width, height = 720, 220
    left, right, top, bottom = 44, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = nice_ceiling(max((n for _, n in days), default=0))
    parts = [_SVG_OPEN.format(w=width, h=height, label=escape(label))]
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{_n(y)}" y2="{_n(y)}"/>'
            f'<text class="axis" x="{left - 6}" y="{_n(y + 4)}" text-anchor="end">'
            f"{_label(round(top_value * fraction))}</text>"
        )
    step = plot_w / max(len(days), 1)
    gap = min(2.0, step * 0.2)
    for i, (day, n) in enumerate(days):
        x = left + i * step
        h = plot_h * n / top_value
        parts.append(
            f'<rect class="bar" x="{_n(x + gap / 2)}" y="{_n(top + plot_h - h)}" '
            f'width="{_n(max(step - gap, 0.5))}" height="{_n(h)}">'
            f"<title>{day:%d %b %Y}: {n:,}</title></rect>"
        )
        if (len(days) - 1 - i) % 7 == 0:  # a date a week, ending on the last day
            parts.append(
                f'<text class="axis" x="{_n(x + step / 2)}" y="{height - 8}" '
                f'text-anchor="middle">{day.day} {day:%b}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def horizontal_bars(items: Sequence[tuple[str, int]], label: str) -> Markup:
    """One labelled bar per item (such as countries), longest first as given."""
    width, row, label_w, value_w = 720, 24, 190, 70
    height = max(len(items), 1) * row + 4
    top_value = max((n for _, n in items), default=0) or 1
    bar_room = width - label_w - value_w
    parts = [_SVG_OPEN.format(w=width, h=height, label=escape(label))]
    for i, (name, n) in enumerate(items):
        y = i * row + 2
        w = bar_room * n / top_value
        shown = name if len(name) <= 28 else name[:27] + "…"
        parts.append(
            f'<text class="label" x="{label_w - 8}" y="{y + 16}" text-anchor="end">'
            f"{escape(shown)}</text>"
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{_n(max(w, 1))}" '
            f'height="{row - 6}"><title>{escape(name)}: {n:,}</title></rect>'
            f'<text class="value" x="{_n(label_w + w + 6)}" y="{y + 16}">{n:,}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def stacked_bar(parts_: Sequence[tuple[str, str, int]], label: str) -> Markup:
    """One bar split into (name, css class, count) parts, with a legend under it."""
    width, height, bar_h = 720, 64, 28
    total = sum(n for _, _, n in parts_) or 1
    parts = [_SVG_OPEN.format(w=width, h=height, label=escape(label))]
    x = 0.0
    for name, css, n in parts_:
        w = width * n / total
        if n:
            parts.append(
                f'<rect class="part {css}" x="{_n(x)}" y="0" width="{_n(w)}" height="{bar_h}">'
                f"<title>{escape(name)}: {n:,}</title></rect>"
            )
        x += w
    legend_x = 0
    for name, css, n in parts_:
        text = f"{name} {n:,}"
        parts.append(
            f'<rect class="part {css}" x="{legend_x}" y="{bar_h + 14}" width="12" height="12"/>'
            f'<text class="label" x="{legend_x + 17}" y="{bar_h + 24}">{escape(text)}</text>'
        )
        legend_x += 30 + 8 * len(text)
    parts.append("</svg>")
    return Markup("".join(parts))
