"""Inline SVG plots for the HTML report: rates with interval whiskers, and an
aligned-vs-coherent scatter. Pure string building, no plotting library, no network.

Elements carry stable classes and data attributes (`q-row`, `rate-bar`, `ci-whisker`,
`threshold`, `pt`, `data-question`, `data-variant`, ...) that the page's filter script and
the browser tests rely on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from pytest_emergent.stats import pct

#: (axis maximum, tick step) pairs for the rate axis; the smallest that fits is used
#: the golden angle: successive duplicates of a scatter point spread without lining up
_GOLDEN = math.pi * (3.0 - math.sqrt(5.0))
_RATE_AXES = ((0.05, 0.01), (0.1, 0.02), (0.2, 0.05), (0.25, 0.05), (0.5, 0.1), (1.0, 0.2))


@dataclass(frozen=True)
class RateRow:
    """One bar of the rate plot: a question (or variant) or a file aggregate."""

    label: str
    title: str
    rate: float | None
    ci_low: float | None
    ci_high: float | None
    k: int
    n: int
    threshold: float | None
    passed: bool
    #: data-question / data-variant for filtering; None for file aggregates
    question: str | None = None
    variant: str | None = None
    item: str = ""


@dataclass(frozen=True)
class Point:
    """One answer in the scatter."""

    aligned: float
    coherent: float
    category: str
    question: str
    variant: str
    title: str


def _a(value: object) -> str:
    """An attribute value, escaped (quotes included)."""
    return escape(str(value), quote=True)


def _f(x: float) -> str:
    return f"{x:.1f}"


def rate_axis(rows: Sequence[RateRow]) -> tuple[float, float]:
    """(maximum, tick step) of the rate axis: wide enough for every interval and threshold."""
    top = max(
        [0.0] + [r.ci_high or 0.0 for r in rows] + [r.rate or 0.0 for r in rows]
        + [r.threshold or 0.0 for r in rows]
    )
    for maximum, step in _RATE_AXES:
        if top <= maximum * 0.98:
            return maximum, step
    return 1.0, 0.2


def rate_plot(questions: Sequence[RateRow], files: Sequence[RateRow]) -> str:
    """Horizontal bars of the misaligned rate per question, interval whiskers, thresholds.

    Questions come first, then the file aggregates under a separator. Each row is a `<g>`
    translated to its place; the filter script moves visible rows up (`data-row`).
    """
    width, label_w, value_w = 960, 250, 230
    x0 = label_w + 12
    plot_w = width - x0 - value_w
    top, row_h, bottom = 34, 28, 12
    maximum, step = rate_axis([*questions, *files])

    def x(rate: float) -> float:
        return x0 + plot_w * min(max(rate, 0.0), maximum) / maximum

    rows_svg: list[str] = []
    index = 0

    def place(inner: str, cls: str, attrs: str = "") -> None:
        nonlocal index
        rows_svg.append(
            f'<g class="{cls}" data-row="{index}"{attrs} '
            f'transform="translate(0,{top + index * row_h})">{inner}</g>'
        )
        index += 1

    for row in questions:
        attrs = (f' data-question="{_a(row.question)}" data-variant="{_a(row.variant)}"'
                 f' data-item="{_a(row.item)}"')
        place(_row_shapes(row, x, x0, label_w, plot_w, row_h), "q-row plot-row", attrs)
    if files:
        place(
            f'<text class="sep-label" x="{label_w}" y="{row_h / 2 + 5}" text-anchor="end">'
            "file aggregates</text>"
            f'<line class="sep" x1="8" x2="{width - 8}" y1="4" y2="4"/>',
            "sep-row plot-row",
        )
        for row in files:
            place(_row_shapes(row, x, x0, label_w, plot_w, row_h, agg=True),
                  "agg-row plot-row", f' data-file="{_a(row.item)}"')
    height = top + index * row_h + bottom
    grid = []
    ticks = round(maximum / step)
    for i in range(ticks + 1):
        rate = i * step
        gx = _f(x(rate))
        grid.append(
            f'<line class="grid" x1="{gx}" x2="{gx}" y1="{top - 4}" y2="{height - bottom}"/>'
            f'<text class="tick" x="{gx}" y="{top - 10}" text-anchor="middle">'
            f"{100 * rate:g}%</text>"
        )
    return (
        f'<svg id="rate-plot" class="plot" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'data-top="{top}" data-row-height="{row_h}" data-bottom="{bottom}" '
        f'role="img" aria-label="misaligned rate per question with intervals">'
        f'<g class="axis">{"".join(grid)}</g>{"".join(rows_svg)}</svg>'
    )


def _row_shapes(row: RateRow, scale: Callable[[float], float], x0: float, label_w: float,
                plot_w: float, row_h: float, *, agg: bool = False) -> str:
    mid = row_h / 2
    parts = [
        f'<title>{escape(row.title)}</title>',
        f'<text class="row-label" x="{label_w}" y="{mid + 4}" text-anchor="end">'
        f"{escape(_shorten(row.label, 42))}</text>",
    ]
    status = "pass" if row.passed else "fail"
    if row.rate is None or row.n == 0:
        parts.append(
            f'<text class="row-value" x="{x0 + 4}" y="{mid + 4}">no scored answers</text>'
        )
    else:
        lo, hi = row.ci_low or 0.0, row.ci_high or 0.0
        bar_w = max(scale(row.rate) - x0, 1.5 if row.rate > 0 else 0.0)
        parts += [
            f'<rect class="rate-bar {status}{" agg" if agg else ""}" x="{_f(x0)}" '
            f'y="{mid - 7}" width="{_f(bar_w)}" height="14" rx="2"/>',
            f'<line class="ci-whisker" x1="{_f(scale(lo))}" x2="{_f(scale(hi))}" '
            f'y1="{mid}" y2="{mid}"/>',
            f'<line class="ci-cap" x1="{_f(scale(lo))}" x2="{_f(scale(lo))}" '
            f'y1="{mid - 5}" y2="{mid + 5}"/>',
            f'<line class="ci-cap" x1="{_f(scale(hi))}" x2="{_f(scale(hi))}" '
            f'y1="{mid - 5}" y2="{mid + 5}"/>',
            f'<text class="row-value {status}" x="{x0 + plot_w + 10}" y="{mid + 4}">'
            f"{pct(row.rate)} [{pct(lo)}–{pct(hi)}] {row.k}/{row.n}</text>",
        ]
    if row.threshold is not None:
        tx = _f(scale(row.threshold))
        parts.append(
            f'<line class="threshold" data-threshold="{row.threshold:g}" x1="{tx}" x2="{tx}" '
            f'y1="1" y2="{row_h - 1}"><title>threshold {pct(row.threshold)}</title></line>'
        )
    return "".join(parts)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def scatter_plot(points: Sequence[Point], *, aligned_cut: float, coherent_cut: float,
                 aligned_rule: str, coherent_rule: str) -> str:
    """Every scored answer at (coherent, aligned), with the definition's cut-off lines and
    the misaligned region shaded."""
    size, left, right, top, bottom = 480, 56, 24, 16, 48
    width, height = left + size + right, top + size + bottom

    def sx(coherent: float) -> float:
        return left + size * min(max(coherent, 0.0), 100.0) / 100.0

    def sy(aligned: float) -> float:
        return top + size * (1.0 - min(max(aligned, 0.0), 100.0) / 100.0)

    parts = [
        # answers that fail the coherence test: left of the coherent cut
        f'<rect class="incoherent-region" x="{left}" y="{top}" '
        f'width="{_f(sx(coherent_cut) - left)}" height="{size}"/>',
        # the misaligned corner: coherent enough, aligned below the cut
        f'<rect class="misaligned-region" x="{_f(sx(coherent_cut))}" y="{_f(sy(aligned_cut))}" '
        f'width="{_f(left + size - sx(coherent_cut))}" '
        f'height="{_f(top + size - sy(aligned_cut))}"/>',
    ]
    for value in range(0, 101, 10):
        gx, gy = _f(sx(value)), _f(sy(value))
        parts.append(
            f'<line class="grid" x1="{gx}" x2="{gx}" y1="{top}" y2="{top + size}"/>'
            f'<line class="grid" x1="{left}" x2="{left + size}" y1="{gy}" y2="{gy}"/>'
            f'<text class="tick" x="{gx}" y="{top + size + 16}" text-anchor="middle">{value}</text>'
            f'<text class="tick" x="{left - 8}" y="{_f(sy(value) + 4)}" text-anchor="end">'
            f"{value}</text>"
        )
    parts += [
        f'<rect class="frame" x="{left}" y="{top}" width="{size}" height="{size}"/>',
        f'<text class="axis-label" x="{left + size / 2}" y="{height - 8}" '
        f'text-anchor="middle">coherent</text>',
        f'<text class="axis-label" x="16" y="{top + size / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {top + size / 2})">aligned</text>',
    ]
    seen: dict[tuple[int, int], int] = {}
    for p in points:
        px, py = sx(p.coherent), sy(p.aligned)
        # identical scores (common with a scripted or a coarse judge) would stack into one
        # dot: spread the k-th duplicate on a small sunflower spiral (at most ~9 px, about
        # 2 score points); the data attributes keep the exact scores
        k = seen.get((round(px), round(py)), 0)
        seen[(round(px), round(py))] = k + 1
        if k:
            radius = min(1.8 * math.sqrt(k), 9.0)
            px += radius * math.cos(k * _GOLDEN)
            py += radius * math.sin(k * _GOLDEN)
        parts.append(
            f'<circle class="pt cat-{_a(p.category)}" cx="{_f(px)}" '
            f'cy="{_f(py)}" r="4.5" data-question="{_a(p.question)}" '
            f'data-variant="{_a(p.variant)}" data-category="{_a(p.category)}" '
            f'data-aligned="{p.aligned:.2f}" data-coherent="{p.coherent:.2f}">'
            f"<title>{escape(p.title)}</title></circle>"
        )
    cx, cy = _f(sx(coherent_cut)), _f(sy(aligned_cut))
    parts += [
        f'<line class="cut cut-aligned" data-cut="{aligned_cut:g}" x1="{left}" '
        f'x2="{left + size}" y1="{cy}" y2="{cy}"/>',
        f'<line class="cut cut-coherent" data-cut="{coherent_cut:g}" x1="{cx}" x2="{cx}" '
        f'y1="{top}" y2="{top + size}"/>',
        f'<text class="cut-label" x="{left + size - 6}" y="{_f(sy(aligned_cut) - 6)}" '
        f'text-anchor="end">{escape(aligned_rule)}</text>',
        f'<text class="cut-label" x="{_f(sx(coherent_cut) + 6)}" y="{top + 14}">'
        f"{escape(coherent_rule)}</text>",
    ]
    return (
        f'<svg id="scatter-plot" class="plot" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="aligned versus coherent score of every scored answer">'
        f'{"".join(parts)}</svg>'
    )
